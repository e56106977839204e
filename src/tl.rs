//! A bounded reader and a writer for the small subset of TL that the protocol uses.
//!
//! The [`Reader`] never reads past its slice and never allocates on the strength of a length it
//! has not checked against what remains. Its error messages and positions match the reference
//! parser's (`Not enough data to read at 340`, `Too much data to fetch at 700`, ...), so a rejected
//! input is reported exactly as the official clients report it.

use crate::error::{Error, ErrorKind, Result};

/// Reads TL values from a byte slice. Every read either succeeds or returns a [`ErrorKind::Parse`]
/// error naming the byte offset, as the reference does.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    canonical: bool,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, positioned at its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, canonical: true }
    }

    /// Whether everything read so far is exactly what [`Writer`] writes for the values read:
    /// minimal `bytes` lengths, zero padding and no flag bits the reader ignores (see
    /// [`Reader::flags_within`]). Decoding is as lenient as the reference's; this says when
    /// re-encoding what was decoded would give the input back.
    pub fn is_canonical(&self) -> bool {
        self.canonical
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Current offset from the start of the input.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// A parse error at the current position.
    pub fn error(&self, what: &str) -> Error {
        Error::new(ErrorKind::Parse, format!("{what} at {}", self.pos))
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| self.error("Not enough data to read"))?;
        self.pos = self.pos.saturating_add(n);
        Ok(out)
    }

    /// Takes a fixed-size array (`int256`, `int512`, ...).
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A little-endian `int`.
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    /// A little-endian `int` read as unsigned (constructor ids, `#` flags).
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `long`.
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A `#` flags word; negative values are rejected as the reference does.
    pub fn flags(&mut self) -> Result<u32> {
        let v = self.i32()?;
        if v < 0 {
            return Err(self.error("Variable of type # can't be negative"));
        }
        Ok(v as u32)
    }

    /// A `#` flags word of which only the bits in `known` mean anything: the others are
    /// accepted (as the reference does) but make the input non-canonical.
    pub fn flags_within(&mut self, known: u32) -> Result<u32> {
        let v = self.flags()?;
        self.canonical &= v & !known == 0;
        Ok(v)
    }

    /// Checks a boxed object's constructor id.
    pub fn expect_constructor(&mut self, id: u32) -> Result<()> {
        let got = self.i32()?;
        if got as u32 != id {
            return Err(self.error(&format!("Wrong constructor {got} found instead of {}", id as i32)));
        }
        Ok(())
    }

    /// TL `bytes`/`string`: a short (1-byte) or long (`0xfe` + 3 bytes, `0xff` + 7 bytes) length,
    /// the data, and padding to a multiple of four (padding content is not checked).
    #[allow(clippy::arithmetic_side_effects)] // lengths below 2^56 checked against the input first
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let first = self.pos;
        let [kind, b1, b2, b3] = self.array::<4>()?;
        let (len, data_start, padded_end) = match kind {
            254 => {
                let len = usize::from(b1) | usize::from(b2) << 8 | usize::from(b3) << 16;
                (len, first + 4, first + 4 + len.div_ceil(4) * 4)
            }
            255 => {
                let more = self.array::<4>()?;
                let len = u64::from_le_bytes([b1, b2, b3, more[0], more[1], more[2], more[3], 0]);
                // Anything this long cannot fit in the input; reject before doing arithmetic on it.
                if len > self.remaining() as u64 {
                    return Err(self.error("Not enough data to read"));
                }
                let len = len as usize;
                (len, first + 8, first + 8 + len.div_ceil(4) * 4)
            }
            short => {
                let len = usize::from(short);
                (len, first + 1, first + 4 + (len & !3))
            }
        };
        if padded_end > self.buf.len() {
            return Err(self.error("Not enough data to read"));
        }
        let out = self.buf.get(data_start..data_start + len).ok_or_else(|| self.error("Not enough data to read"))?;
        let minimal = match kind {
            254 => len >= 254,
            255 => len >= 1 << 24,
            _ => true,
        };
        let padding = self.buf.get(data_start + len..padded_end).unwrap_or_default();
        self.canonical &= minimal && padding.iter().all(|&b| b == 0);
        self.pos = padded_end;
        Ok(out)
    }

    /// The count of a bare `vector`; rejected when larger than the bytes that remain (so a hostile
    /// count can never make the caller allocate more than the input could hold).
    pub fn vec_len(&mut self) -> Result<usize> {
        let n = self.u32()?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if self.remaining() < n {
            return Err(self.error("Wrong vector length"));
        }
        Ok(n)
    }

    /// Fails unless the whole input was consumed.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.error("Too much data to fetch"));
        }
        Ok(())
    }
}

/// Writes TL values into a growing buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far.
    // Without `hazmat` nothing in the library calls this: for hazmat users of the writer.
    #[cfg(feature = "hazmat")]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written yet.
    // Without `hazmat` nothing in the library calls this: for hazmat users of the writer.
    #[cfg(feature = "hazmat")]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Raw bytes, no length.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A little-endian `int` (also constructor ids and flags).
    pub fn u32(&mut self, v: u32) {
        self.raw(&v.to_le_bytes());
    }

    /// A little-endian signed `int`.
    pub fn i32(&mut self, v: i32) {
        self.raw(&v.to_le_bytes());
    }

    /// A little-endian `long`.
    pub fn i64(&mut self, v: i64) {
        self.raw(&v.to_le_bytes());
    }

    /// TL `bytes` in canonical form: short length below 254, else `0xfe` + 3 bytes, zero padding.
    ///
    /// Lengths of 2^24 bytes and more use the `0xff` + 7-byte form the reference reader accepts.
    pub fn bytes(&mut self, b: &[u8]) {
        let len = b.len();
        let start = self.buf.len();
        if len < 254 {
            self.buf.push(len as u8);
        } else if len < (1 << 24) {
            let [l0, l1, l2, _] = (len as u32).to_le_bytes();
            self.raw(&[254, l0, l1, l2]);
        } else {
            let [l0, l1, l2, l3, l4, l5, l6, _] = (len as u64).to_le_bytes();
            self.raw(&[255, l0, l1, l2, l3, l4, l5, l6]);
        }
        self.raw(b);
        // Zero padding to a multiple of four from the field's start.
        while !self.buf.len().wrapping_sub(start).is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// Length of `b` once written as TL `bytes`.
// Without `hazmat` nothing in the library calls this: for hazmat users sizing TL bytes (and this module's tests).
#[cfg(any(test, feature = "hazmat"))]
pub fn bytes_len(len: usize) -> usize {
    let header: usize = if len < 254 {
        1
    } else if len < (1 << 24) {
        4
    } else {
        8
    };
    header.saturating_add(len).saturating_add(3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_all_forms() {
        for len in [0usize, 1, 3, 4, 253, 254, 255, 1000, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut w = Writer::new();
            w.bytes(&data);
            w.u32(0xdead_beef);
            let out = w.into_bytes();
            assert_eq!(out.len(), bytes_len(len) + 4);
            let mut r = Reader::new(&out);
            assert_eq!(r.bytes().unwrap(), &data[..]);
            assert_eq!(r.u32().unwrap(), 0xdead_beef);
            r.finish().unwrap();
        }
    }

    #[test]
    fn long_form_is_read() {
        let mut v = vec![255u8, 5, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(b"hello\0\0\0");
        let mut r = Reader::new(&v);
        assert_eq!(r.bytes().unwrap(), b"hello");
        r.finish().unwrap();
    }

    #[test]
    fn canonical_is_what_the_writer_writes() {
        for len in [0usize, 1, 3, 4, 253, 254, 255, 1000] {
            let data = vec![7u8; len];
            let mut w = Writer::new();
            w.bytes(&data);
            w.u32(3);
            let encoded = w.into_bytes();
            let mut r = Reader::new(&encoded);
            assert_eq!(r.bytes().unwrap(), &data[..]);
            assert_eq!(r.flags_within(3).unwrap(), 3);
            assert!(r.is_canonical(), "length {len}");
        }
        // Accepted, but not canonical: a long length for short data, padding that is not zero,
        // a flag bit nobody reads.
        let non_canonical: [&[u8]; 4] =
            [&[254, 1, 0, 0, 9, 0, 0, 0], &[255, 1, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0], &[1, 9, 0, 1], &[4, 0, 0, 0]];
        for (i, input) in non_canonical.iter().enumerate() {
            let mut r = Reader::new(input);
            if i < 3 {
                r.bytes().unwrap();
            } else {
                r.flags_within(3).unwrap();
            }
            r.finish().unwrap();
            assert!(!r.is_canonical(), "case {i}");
        }
    }

    #[test]
    fn errors_name_the_position() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5]);
        r.u32().unwrap();
        assert_eq!(r.u32().unwrap_err().message(), "Not enough data to read at 4");
        assert_eq!(r.finish().unwrap_err().message(), "Too much data to fetch at 4");
        let huge = [0xff, 0xff, 0xff, 0x7f];
        assert_eq!(Reader::new(&huge).vec_len().unwrap_err().message(), "Wrong vector length at 4");
        let long = [255u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(Reader::new(&long).bytes().is_err());
    }
}
