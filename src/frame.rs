//! Media frames as Telegram's apps write them: the codec-aware layer around call packets.
//!
//! The calls library of Telegram's apps (tgcalls) never hands a raw encoded frame to the packet
//! encryption: it lays the frame out first, so that what an SFU and the receiving WebRTC must read
//! stays in the packet's clear prefix, and the receiver can take the speaker's level from the
//! frame itself. This module is that layer, byte for byte (SPEC.md "Media frames"):
//!
//! | codec | sent plaintext | clear prefix | received |
//! |---|---|---|---|
//! | Opus, and every payload type tgcalls does not know (VP9, AV1, ...) | `frame \|\| 01 \|\| speech << 7 \| level` | 0 | Opus: the trailer stripped (2 bytes, or 1 when bit 0 of the flags byte is clear), its level reported; others: as decrypted |
//! | VP8 | the frame | 10 bytes of a key frame (P bit clear), 1 of a delta frame | as decrypted |
//! | H.264 | every 3-byte start code up to the first slice widened to 4 | start codes, NAL headers, SPS/PPS/SEI whole, the first slice header up to its `pic_parameter_set_id` plus a byte | as decrypted |
//!
//! An H.264 packet must not contain a NAL start code after its clear prefix (WebRTC's packetizer
//! would split the frame there): each of up to [`MAX_ATTEMPTS`] encryptions is checked, each
//! consuming a sequence number, and a frame whose every attempt failed is dropped with
//! [`ErrorKind::FrameStartCode`]. Nothing is ever sent or
//! delivered in clear: every failure is an error and leaves the output buffer as it was.
//!
//! The functions here are pure (no keys): [`plaintext_into`] shows what goes into the packet,
//! [`is_valid_encrypted`] is the start-code check, [`strip_received`] the receive side. The
//! methods that encrypt and decrypt frames are on [`crate::Call`] (`encrypt_frame`,
//! `decrypt_frame`) and on the media handles.
//!
//! ```
//! use confchain::frame::{self, AudioLevel, Codec};
//! // An Opus packet gets the level trailer and no clear prefix.
//! let mut plain = Vec::new();
//! let prefix = frame::plaintext_into(Codec::Opus, b"opus", AudioLevel { level: 30, speech: true }, &mut plain);
//! assert_eq!((prefix, plain.as_slice()), (0, &b"opus\x01\x9e"[..]));
//! // An H.264 IDR frame with 3-byte start codes: widened, SPS and PPS in clear.
//! let idr = [0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88, 0x84, 0x21, 0xa0];
//! let mut plain = Vec::new();
//! let prefix = frame::plaintext_into(Codec::H264, &idr, AudioLevel::default(), &mut plain);
//! assert_eq!(plain, [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21, 0xa0]);
//! assert_eq!(prefix, 16 + 4); // up to the slice's NAL header, then its header bytes and one more
//! ```

use memchr::memmem;

use crate::error::{Error, ErrorKind, Result};
use crate::packet::Plaintext;

/// How tgcalls classifies a payload type, which decides the frame's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus audio (payload type 111): the level trailer, no clear prefix.
    Opus,
    /// VP8 video (payload type 100).
    Vp8,
    /// H.264 video (payload type 104).
    H264,
    /// Any other payload type (VP9 = 102, AV1, ...): sent as audio is (with a trailer), received
    /// as decrypted (nothing stripped), exactly as tgcalls does.
    Unknown,
}

/// The payload types tgcalls assigns (`assignPayloadTypes`): Opus 111; video from 100 upward in
/// the order VP8, VP9, H.264, each followed by its RTX type, when the encoder offers all three.
pub mod payload_type {
    /// Opus.
    pub const OPUS: u8 = 111;
    /// VP8.
    pub const VP8: u8 = 100;
    /// VP9 (mapped to [`super::Codec::Unknown`], as tgcalls does).
    pub const VP9: u8 = 102;
    /// H.264.
    pub const H264: u8 = 104;
}

impl Codec {
    /// The codec tgcalls maps a payload type to: 111 Opus, 100 VP8, 104 H.264, anything else
    /// unknown. An application whose SDP negotiated other numbers maps by the codec's name.
    pub fn from_payload_type(payload_type: u8) -> Codec {
        match payload_type {
            payload_type::OPUS => Codec::Opus,
            payload_type::VP8 => Codec::Vp8,
            payload_type::H264 => Codec::H264,
            _ => Codec::Unknown,
        }
    }

    /// `"opus"`, `"vp8"`, `"h264"` or `"unknown"`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
            Codec::Unknown => "unknown",
        }
    }

    /// The codec of a name ([`Codec::name`], or an SDP/MIME name such as `"audio/opus"`,
    /// `"video/H264"`, any case); anything else is [`Codec::Unknown`].
    pub fn from_name(name: &str) -> Codec {
        let name = name.rsplit('/').next().unwrap_or(name);
        if name.eq_ignore_ascii_case("opus") {
            Codec::Opus
        } else if name.eq_ignore_ascii_case("vp8") {
            Codec::Vp8
        } else if name.eq_ignore_ascii_case("h264") {
            Codec::H264
        } else {
            Codec::Unknown
        }
    }
}

/// The channel of the camera and the microphone, in every app.
pub const CHANNEL_MAIN: i32 = 0;
/// The channel of a screencast on iOS and TDLib-based clients (Desktop and Android send it on
/// [`CHANNEL_MAIN`] from a second connection). Receivers accept either: decryption reads the
/// channel from the packet.
pub const CHANNEL_SCREENCAST: i32 = 1;
/// Encryptions of an H.264 frame before it is dropped (tgcalls' 4).
pub const MAX_ATTEMPTS: u32 = 4;

/// The speaker's level as the audio trailer carries it: `level` from 0 (loud) to 127 (silent),
/// in -dB relative to the capture's reference peak, and whether the sender detected speech.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct AudioLevel {
    /// 0 ..= 127 (higher bits are dropped on the wire).
    pub level: u8,
    /// Voice activity.
    pub speech: bool,
}

impl AudioLevel {
    /// Silence: level 127, no speech.
    pub const SILENT: AudioLevel = AudioLevel { level: 127, speech: false };

    /// The trailer byte read back: `level = byte & 0x7f`, `speech = byte >> 7`.
    pub fn from_byte(byte: u8) -> AudioLevel {
        AudioLevel { level: byte & 0x7f, speech: byte & 0x80 != 0 }
    }

    /// The trailer byte: `speech << 7 | level & 0x7f`.
    pub fn to_byte(self) -> u8 {
        (u8::from(self.speech) << 7) | (self.level & 0x7f)
    }

    /// From a linear level (1.0 = the reference peak), as tgcalls does: `-20·log10f(level)`
    /// truncated and clamped to 0..=127; 127 for a level of zero (or less, or NaN). `log10f` is
    /// the one tgcalls' vectors were made with (glibc's, fdlibm's algorithm), computed here the
    /// same way on every target: a platform's own `log10f` lands a level off at values such as
    /// 10^(-12/20) (wasm32's does).
    pub fn from_linear(level: f32, speech: bool) -> AudioLevel {
        let level = if level > 0.0 && level.is_finite() {
            // `as` saturates; the clamp keeps 0..=127.
            (-(20.0 * log10f(level)) as i32).clamp(0, 127) as u8
        } else if level > 0.0 {
            0 // +infinity: as loud as it gets
        } else {
            127
        };
        AudioLevel { level, speech }
    }

    /// From the peak absolute sample of a captured block (16-bit PCM), with tgcalls' reference
    /// peak of 4000 (its noise-suppressed capture path): `from_linear(peak / 4000)`.
    pub fn from_peak(peak: u16, speech: bool) -> AudioLevel {
        AudioLevel::from_linear(f32::from(peak) / 4000.0, speech)
    }

    /// The linear level a receiver reports, as tgcalls does: `powf(10, -level / 20)` (1.0 for
    /// level 0), correctly rounded (taken in f64) as the `powf` of tgcalls' vectors is, on every
    /// target.
    pub fn to_linear(self) -> f32 {
        10f64.powf(f64::from(-f32::from(self.level & 0x7f) / 20.0)) as f32
    }
}

/// fdlibm's `__ieee754_log10f` (glibc's up to 2.39) for finite `x > 0`: `k·log10(2)` plus
/// `log(m)/ln(10)` in f32, with `log(m)` correctly rounded (taken in f64). Bit for bit the
/// `log10f` of tgcalls' level vectors, on every target.
#[allow(clippy::arithmetic_side_effects)] // exponents of an f32
fn log10f(x: f32) -> f32 {
    // fdlibm's constants, by their bits: 1/ln(10), and log10(2) split in a high and a low part.
    const IVLN10: f32 = f32::from_bits(0x3ede_5bd9);
    const LOG10_2HI: f32 = f32::from_bits(0x3e9a_2080);
    const LOG10_2LO: f32 = f32::from_bits(0x3554_27db);
    let mut hx = x.to_bits() as i32;
    let mut k: i32 = 0;
    if hx < 0x0080_0000 {
        // Subnormal: scale by 2^25.
        k -= 25;
        hx = (x * 33_554_432.0).to_bits() as i32;
    }
    k += (hx >> 23) - 127;
    let i = i32::from(k < 0);
    let m = f32::from_bits(((hx & 0x007f_ffff) | ((0x7f - i) << 23)) as u32);
    let y = (k + i) as f32;
    let log_m = f64::from(m).ln() as f32;
    let z = y * LOG10_2LO + IVLN10 * log_m;
    z + y * LOG10_2HI
}

/// What [`crate::Call::encrypt_frame_into`] and its media-handle twin did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentFrame {
    /// Bytes of the packet left in clear.
    pub clear_prefix: usize,
    /// Encryptions made (each used a sequence number): 1, or more for an H.264 frame whose
    /// earlier ciphertexts held a start code.
    pub attempts: u32,
}

/// What [`crate::Call::decrypt_frame_into`] and its media-handle twin found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReceivedFrame {
    /// The level of an Opus frame that carried one (the trailer's flags byte has bit 0 set).
    pub level: Option<AudioLevel>,
}

/// What encrypts our media frames, for code written once over a call and a media encryptor (the
/// bindings' frame operations): `(&mut Call, &mut rng)` (the call draws the packet's randomness
/// from `rng`) and `&MediaEncryptor` (its own).
pub trait FrameEncryptor {
    /// [`crate::Call::encrypt_frame_into`] or [`crate::MediaEncryptor::encrypt_frame_into`].
    fn encrypt_frame_into(
        self,
        channel: i32,
        codec: Codec,
        frame: &[u8],
        level: AudioLevel,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<SentFrame>;
}

/// What decrypts other members' media frames, for code written once over a call and a media
/// decryptor: `&mut Call` and `&MediaDecryptor`.
pub trait FrameDecryptor {
    /// [`crate::Call::decrypt_frame_into`] or [`crate::MediaDecryptor::decrypt_frame_into`].
    fn decrypt_frame_into(
        self,
        sender_user_id: i64,
        codec: Codec,
        packet: &[u8],
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<ReceivedFrame>;
}

/// Appends what tgcalls hands to the packet encryption for `frame` (the frame laid out for
/// `codec`) to `out`, and returns the clear prefix's size. `level` is used on the audio path only.
pub fn plaintext_into(codec: Codec, frame: &[u8], level: AudioLevel, out: &mut Vec<u8>) -> usize {
    let plain = FramePlaintext::new(codec, frame, level);
    plain.write_clear_prefix(out);
    plain.write_payload(out);
    plain.clear_prefix_len()
}

/// tgcalls' check of an encrypted frame: `false` for an H.264 packet holding a NAL start code
/// (`00 00 01`) at or after two bytes before the end of its clear prefix, except one whose `01` is
/// the packet's last byte (WebRTC's scan stops before it); `true` for every other codec.
pub fn is_valid_encrypted(codec: Codec, packet: &[u8], clear_prefix: usize) -> bool {
    if codec != Codec::H264 || clear_prefix >= packet.len() {
        return true;
    }
    start_codes(packet, clear_prefix.saturating_sub(2)).next().is_none()
}

/// Whether every H.264 packet over these epochs (oldest first, as packets list them) is
/// dropped: the bytes right after the clear prefix, `le32(count) || hashes`, the same in every
/// packet of the epoch set, hold a NAL start code, so no re-encryption can pass
/// [`is_valid_encrypted`] (about 1 epoch in 256, when a hash starts `01`, `00 01` or
/// `00 00 01`; SPEC.md "Media frames"). The official apps send no video for as long as such an
/// epoch is the oldest active one; confchain reports it ([`crate::CallEvent::VideoBlackout`]) and
/// its session ends it with a re-key.
#[allow(clippy::arithmetic_side_effects)] // count <= 15
pub fn epochs_block_h264<'a>(hashes: impl ExactSizeIterator<Item = &'a [u8; 32]>) -> bool {
    let count = hashes.len();
    if count == 0 || count > crate::limits::MAX_EPOCHS {
        return false;
    }
    let mut head = [0u8; 4 + 32 * crate::limits::MAX_EPOCHS];
    head[0] = count as u8;
    for (slot, hash) in head[4..].chunks_exact_mut(32).zip(hashes) {
        slot.copy_from_slice(hash);
    }
    let listed = head.get(..4 + 32 * count).unwrap_or_default();
    memmem::find(listed, b"\x00\x00\x01").is_some()
}

/// Whether a block hash, alone as the only active epoch, would black out H.264
/// ([`epochs_block_h264`]): what a builder avoids by drawing the block's key again.
pub fn hash_blocks_h264(hash: &[u8; 32]) -> bool {
    epochs_block_h264(std::iter::once(hash))
}

/// The receive side of a decrypted frame, in place: for Opus, strips the trailer (2 bytes when
/// bit 0 of the flags byte is set, returning the level; else 1; nothing from a frame shorter than
/// 2 bytes); other codecs are delivered as decrypted.
pub fn strip_received(codec: Codec, plain: &mut Vec<u8>) -> Option<AudioLevel> {
    strip_from(codec, plain, 0)
}

/// [`strip_received`] on `out[start..]`.
fn strip_from(codec: Codec, out: &mut Vec<u8>, start: usize) -> Option<AudioLevel> {
    if codec != Codec::Opus {
        return None;
    }
    let frame = out.get(start..).unwrap_or_default();
    let &[flags, byte] = frame.last_chunk::<2>()?;
    let (strip, level) = if flags & 0x01 != 0 { (2, Some(AudioLevel::from_byte(byte))) } else { (1, None) };
    out.truncate(out.len().saturating_sub(strip));
    level
}

/// The frame layer over a tgcalls-style callback (`data, prefix -> packet`, empty = failure),
/// for conformance tests: what [`crate::Call::encrypt_frame`] does with its own packet
/// encryption. Returns the packet sent, or `None` when the frame is dropped.
#[cfg(feature = "hazmat")]
pub fn encrypt_with_callback(
    codec: Codec,
    frame: &[u8],
    level: AudioLevel,
    mut callback: impl FnMut(&[u8], usize) -> Vec<u8>,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let sent = encrypt_with(codec, frame, level, &mut out, |plain, out| {
        let mut data = Vec::new();
        plain.write_clear_prefix(&mut data);
        plain.write_payload(&mut data);
        let packet = callback(&data, plain.clear_prefix_len());
        if packet.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput, "the callback failed"));
        }
        out.extend_from_slice(&packet);
        Ok(())
    });
    sent.ok().map(|_| out)
}

/// The receive side over a tgcalls-style callback's result (`decrypted`, empty = failure), for
/// conformance tests: the frame delivered and its level, or `None` when it is dropped.
#[cfg(feature = "hazmat")]
pub fn decrypt_with_callback(codec: Codec, decrypted: &[u8]) -> Option<(Vec<u8>, Option<AudioLevel>)> {
    let mut out = Vec::new();
    let received = decrypt_with(codec, &mut out, |out| {
        out.extend_from_slice(decrypted);
        Ok(())
    });
    received.ok().map(|r| (out, r.level))
}

/// Encrypts `frame` for `codec`: lays it out, then calls `encrypt` (one packet into `out`, one
/// sequence number) until the packet passes [`is_valid_encrypted`], at most [`MAX_ATTEMPTS`]
/// times. An error from `encrypt` ends it at once (never retried), as in tgcalls. On any error
/// `out` is left as it was.
pub(crate) fn encrypt_with(
    codec: Codec,
    frame: &[u8],
    level: AudioLevel,
    out: &mut Vec<u8>,
    mut encrypt: impl FnMut(&FramePlaintext<'_>, &mut Vec<u8>) -> Result<()>,
) -> Result<SentFrame> {
    let plain = FramePlaintext::new(codec, frame, level);
    let clear_prefix = plain.clear_prefix_len();
    let start = out.len();
    for attempts in 1..=MAX_ATTEMPTS {
        if let Err(e) = encrypt(&plain, out) {
            out.truncate(start);
            return Err(e);
        }
        if is_valid_encrypted(codec, out.get(start..).unwrap_or_default(), clear_prefix) {
            return Ok(SentFrame { clear_prefix, attempts });
        }
        out.truncate(start);
    }
    Err(Error::new(
        ErrorKind::FrameStartCode,
        format!("every one of {MAX_ATTEMPTS} encryptions put a NAL start code after the clear prefix"),
    ))
}

/// Decrypts with `decrypt` (which appends `clear_prefix || payload` to `out`) and applies the
/// receive side for `codec`. An empty plaintext is an error, as in the official apps; an Opus
/// frame that held only its trailer is delivered empty, with its level (as tgcalls does).
pub(crate) fn decrypt_with(
    codec: Codec,
    out: &mut Vec<u8>,
    decrypt: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<ReceivedFrame> {
    let start = out.len();
    decrypt(out)?;
    if out.len() == start {
        return Err(Error::new(ErrorKind::FrameEmpty, "the frame decrypted to nothing"));
    }
    Ok(ReceivedFrame { level: strip_from(codec, out, start) })
}

/// A frame laid out for the packet: written straight into it ([`Plaintext`]).
pub(crate) enum FramePlaintext<'a> {
    /// Opus and unknown codecs: the frame and the 2-byte trailer, all encrypted.
    Audio { frame: &'a [u8], trailer: [u8; 2] },
    /// VP8, or an H.264 frame with nothing to widen: the frame as it is.
    Bytes { frame: &'a [u8], clear_prefix: usize },
    /// H.264 with 3-byte start codes to widen, all inside the clear prefix.
    H264(H264Layout<'a>),
}

impl<'a> FramePlaintext<'a> {
    pub(crate) fn new(codec: Codec, frame: &'a [u8], level: AudioLevel) -> Self {
        match codec {
            Codec::Opus | Codec::Unknown => FramePlaintext::Audio { frame, trailer: [0x01, level.to_byte()] },
            Codec::Vp8 => FramePlaintext::Bytes { frame, clear_prefix: vp8_clear_prefix(frame) },
            Codec::H264 => {
                let layout = H264Layout::new(frame);
                if layout.widened == 0 {
                    FramePlaintext::Bytes { frame, clear_prefix: layout.clear_prefix }
                } else {
                    FramePlaintext::H264(layout)
                }
            }
        }
    }
}

impl Plaintext for FramePlaintext<'_> {
    fn clear_prefix_len(&self) -> usize {
        match self {
            FramePlaintext::Audio { .. } => 0,
            FramePlaintext::Bytes { clear_prefix, .. } => *clear_prefix,
            FramePlaintext::H264(l) => l.clear_prefix,
        }
    }

    fn total_len(&self) -> usize {
        match self {
            FramePlaintext::Audio { frame, .. } => frame.len().saturating_add(2),
            FramePlaintext::Bytes { frame, .. } => frame.len(),
            FramePlaintext::H264(l) => l.frame.len().saturating_add(l.widened),
        }
    }

    fn write_clear_prefix(&self, out: &mut Vec<u8>) {
        match self {
            FramePlaintext::Audio { .. } => {}
            FramePlaintext::Bytes { frame, clear_prefix } => {
                out.extend_from_slice(frame.get(..*clear_prefix).unwrap_or_default());
            }
            FramePlaintext::H264(l) => l.write_prefix(out),
        }
    }

    fn write_payload(&self, out: &mut Vec<u8>) {
        match self {
            FramePlaintext::Audio { frame, trailer } => {
                out.extend_from_slice(frame);
                out.extend_from_slice(trailer);
            }
            FramePlaintext::Bytes { frame, clear_prefix } => {
                out.extend_from_slice(frame.get(*clear_prefix..).unwrap_or_default());
            }
            FramePlaintext::H264(l) => out.extend_from_slice(l.frame.get(l.prefix_source_len()..).unwrap_or_default()),
        }
    }
}

/// VP8's clear prefix: 10 bytes of a key frame (P bit, bit 0 of the first byte, clear), capped
/// at the frame; 1 byte of a delta frame; none of an empty frame.
fn vp8_clear_prefix(frame: &[u8]) -> usize {
    match frame.first() {
        None => 0,
        Some(b) if b & 0x01 == 0 => frame.len().min(10),
        Some(_) => 1,
    }
}

/// The start codes of `buf` from `from` on, as WebRTC's NAL scan finds them: every `00 00 01`
/// whose `01` is not the buffer's last byte, as `(start, payload_start)` where `start` includes
/// one more `00` before it (a 4-byte code). Found with a SIMD substring search; the set is the
/// scan's, which skips ahead only past bytes that cannot start a code.
fn start_codes(buf: &[u8], from: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    // A code must end before the last byte: search `buf[from..len - 1]`.
    let end = buf.len().saturating_sub(1);
    let hay = buf.get(from..end).unwrap_or_default();
    memmem::find_iter(hay, b"\x00\x00\x01").map(move |i| {
        let i = i.saturating_add(from);
        let four = i.checked_sub(1).and_then(|j| buf.get(j)) == Some(&0);
        (if four { i.saturating_sub(1) } else { i }, i.saturating_add(3))
    })
}

/// NAL unit types the layout looks at.
mod nal {
    pub const SLICE: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const STAP_A: u8 = 24;
    pub const FU_A: u8 = 28;
}

/// An H.264 access unit laid out as tgcalls does: the NALs up to and including the first slice
/// are examined, their 3-byte start codes widened; the clear prefix covers what WebRTC and the
/// SFU read.
pub(crate) struct H264Layout<'a> {
    frame: &'a [u8],
    /// Clear prefix, in the widened frame, capped at its length.
    clear_prefix: usize,
    /// Start codes widened (each adds a byte, all inside the clear prefix).
    widened: usize,
    /// Start of the last NAL examined: widening happens up to it.
    last_examined: usize,
}

impl<'a> H264Layout<'a> {
    #[allow(clippy::arithmetic_side_effects)] // offsets inside `frame` (+ a few bytes)
    fn new(frame: &'a [u8]) -> Self {
        let mut layout = H264Layout { frame, clear_prefix: 0, widened: 0, last_examined: 0 };
        let mut nalus = start_codes(frame, 0).peekable();
        let mut max_offset = 0usize;
        while let Some((start, payload_start)) = nalus.next() {
            layout.last_examined = start;
            if payload_start - start == 3 {
                layout.widened += 1;
            }
            let mut end = payload_start + 1;
            let header = frame.get(payload_start).copied();
            if header.is_some_and(|h| matches!(h & 0x1f, nal::SLICE | nal::IDR)) {
                // Only the slice header's first bytes matter: its NAL is looked at up to
                // SLICE_WINDOW bytes (the rest of the frame is not scanned again).
                let payload = slice_window(frame, payload_start);
                max_offset = max_offset.max(payload_start + slice_header_bytes(payload));
                break;
            }
            let payload_end = nalus.peek().map_or(frame.len(), |&(next, _)| next);
            let payload = frame.get(payload_start..payload_end).unwrap_or_default();
            if let Some(header) = header {
                match header & 0x1f {
                    nal::FU_A if payload.len() >= 2 => {
                        end = payload_start + 2;
                        let fu = payload.get(1).copied().unwrap_or(0);
                        if fu & 0x80 != 0 && matches!(fu & 0x1f, nal::SLICE | nal::IDR) {
                            end += 4;
                        }
                    }
                    nal::STAP_A if payload.len() >= 3 => {
                        end = payload_start + 3;
                        if payload.get(3).is_some_and(|t| matches!(t & 0x1f, nal::SLICE | nal::IDR)) {
                            end += 4;
                        }
                    }
                    nal::SEI | nal::SPS | nal::PPS => end = payload_end,
                    _ => {}
                }
            }
            max_offset = max_offset.max(end);
        }
        layout.clear_prefix = (max_offset + layout.widened).min(frame.len() + layout.widened);
        layout
    }

    /// Bytes of the original frame the clear prefix holds.
    fn prefix_source_len(&self) -> usize {
        self.clear_prefix.saturating_sub(self.widened)
    }

    /// Appends the clear prefix: the frame's first bytes with a `00` before each widened code.
    fn write_prefix(&self, out: &mut Vec<u8>) {
        let mut from = 0;
        for (start, payload_start) in start_codes(self.frame, 0) {
            if payload_start.saturating_sub(start) == 3 {
                out.extend_from_slice(self.frame.get(from..start).unwrap_or_default());
                out.push(0);
                from = start;
            }
            if start >= self.last_examined {
                break; // (asking for the next code would scan the rest of the frame)
            }
        }
        out.extend_from_slice(self.frame.get(from..self.prefix_source_len()).unwrap_or_default());
    }
}

/// Raw bytes of a slice NAL that decide [`slice_header_bytes`]: it reads at most 34 unescaped
/// bytes, at most 51 raw ones.
const SLICE_WINDOW: usize = 64;

/// The slice NAL whose payload starts at `payload_start`, as [`slice_header_bytes`] needs it: up
/// to the next start code (as WebRTC's scan finds it) if that comes within [`SLICE_WINDOW`]
/// bytes, else its first `SLICE_WINDOW` bytes (which give the same result as the whole NAL).
#[allow(clippy::arithmetic_side_effects)] // offsets inside `frame` plus a window
fn slice_window(frame: &[u8], payload_start: usize) -> &[u8] {
    // A code starting up to 3 bytes past the window still ends the NAL inside it (a 4-byte code's
    // first zero): search a little further, with the frame's own end rule.
    let search_end = frame.len().min(payload_start + SLICE_WINDOW + 4);
    let last = frame.len().saturating_sub(1);
    let hay = frame.get(payload_start..search_end.min(last)).unwrap_or_default();
    let end = match memmem::find(hay, b"\x00\x00\x01") {
        Some(i) => {
            let i = payload_start + i;
            if i > payload_start && frame.get(i - 1) == Some(&0) {
                i - 1
            } else {
                i
            }
        }
        None => frame.len(),
    };
    frame.get(payload_start..end.min(payload_start + SLICE_WINDOW)).unwrap_or_default()
}

/// tgcalls' `calculateSliceHeaderBytesForPpsId`: how many bytes of a slice NAL (header byte
/// included) cover `first_mb_in_slice`, `slice_type` and `pic_parameter_set_id`, plus one: 0 for
/// a NAL shorter than 2 bytes (before or after unescaping), 4 when the three `ue(v)` cannot be
/// read. The bits are counted on the unescaped bytes (RBSP) and applied to the raw NAL, as there.
#[allow(clippy::arithmetic_side_effects)] // bit counts below 200
fn slice_header_bytes(nal: &[u8]) -> usize {
    if nal.len() < 2 {
        return 0;
    }
    // Three ue(v) read at most 3 * 63 bits (a 32nd leading zero fails): the first 34 RBSP bytes
    // decide the result, so only they are unescaped.
    const NEEDED: usize = 34;
    let mut rbsp = [0u8; NEEDED + 1];
    let (mut n, mut i) = (0, 0);
    while i < nal.len() && n < NEEDED {
        let escaped = nal.get(i..i + 3).is_some_and(|w| w == [0, 0, 3]);
        let take = if escaped { 2 } else { 1 };
        for k in 0..take {
            if let (Some(slot), Some(&b)) = (rbsp.get_mut(n), nal.get(i + k)) {
                *slot = b;
                n += 1;
            }
        }
        i += if escaped { 3 } else { 1 };
    }
    if n < 2 {
        return 0;
    }
    let mut bits = BitReader { data: rbsp.get(1..n).unwrap_or_default(), position: 0 };
    for _ in 0..3 {
        if bits.exp_golomb().is_none() {
            return 4;
        }
    }
    1 + bits.position.div_ceil(8) + 1
}

/// WebRTC's `BitstreamReader`, as far as `ue(v)` needs it.
struct BitReader<'a> {
    data: &'a [u8],
    position: usize,
}

#[allow(clippy::arithmetic_side_effects)] // position < 8 * data.len()
impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = self.data.get(self.position / 8)?;
        let bit = byte >> (7 - self.position % 8) & 1;
        self.position += 1;
        Some(bit == 1)
    }

    /// An unsigned Exp-Golomb value; `None` past the data or after 32 leading zeros.
    fn exp_golomb(&mut self) -> Option<u32> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                return None;
            }
        }
        let mut value = 0u32;
        for _ in 0..zeros {
            value = value << 1 | u32::from(self.bit()?);
        }
        Some((1u32 << zeros) + value - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(codec: Codec, frame: &[u8]) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let prefix = plaintext_into(codec, frame, AudioLevel::default(), &mut out);
        (out, prefix)
    }

    #[test]
    fn slice_header_bytes_count_rbsp_bits() {
        // IDR, first_mb 0 ("1"), slice_type 7 ("0001000"), pps 0 ("1"): 9 bits -> 1 + 2 + 1.
        assert_eq!(slice_header_bytes(&[0x65, 0x88, 0x84]), 4);
        // P slice, first_mb 0, slice_type 5 ("00110"), pps 0: 7 bits -> 1 + 1 + 1.
        assert_eq!(slice_header_bytes(&[0x41, 0x9a]), 3);
        assert_eq!(slice_header_bytes(&[0x65]), 0, "a one-byte slice: nothing");
        assert_eq!(slice_header_bytes(&[0x65, 0x00]), 4, "runs out of bits");
        assert_eq!(slice_header_bytes(&[0x65, 0, 0, 0, 0, 0]), 4, "32 leading zeros");
    }

    /// The slice header is read from a window of its NAL, never past the next start code: the
    /// same result as from the whole NAL, for NALs of every length around the window's edge.
    #[test]
    fn the_slice_window_gives_the_whole_nals_result() {
        let mut x = 0x2545_f491_u32;
        let mut byte = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Many zeros: escapes, long ue(v) prefixes and start codes.
            if x.is_multiple_of(3) {
                0
            } else {
                (x >> 8) as u8 % 4
            }
        };
        for len in 0..140usize {
            for _ in 0..40 {
                let mut frame = vec![0, 0, 1, 0x65];
                frame.extend((0..len).map(|_| byte()));
                let whole_end = start_codes(&frame, 3).next().map_or(frame.len(), |(s, _)| s);
                let whole = slice_header_bytes(&frame[3..whole_end]);
                assert_eq!(slice_header_bytes(slice_window(&frame, 3)), whole, "{frame:02x?}");
            }
        }
    }

    #[test]
    fn start_codes_follow_webrtc_scan() {
        let f = [0, 0, 0, 1, 9, 0, 0, 1, 7, 0, 0, 1];
        let found: Vec<_> = start_codes(&f, 0).collect();
        assert_eq!(found, [(0, 4), (5, 8)], "a code whose 01 ends the buffer is not found");
    }

    #[test]
    fn nothing_before_the_first_slice_is_left_unwidened() {
        let f = [0, 0, 1, 9, 0xf0, 0, 0, 1, 0x41, 0x9a, 0x11, 0, 0, 1, 0x41, 0x9a, 0x22];
        let (p, prefix) = plain(Codec::H264, &f);
        // AUD and the first slice widened; the second slice's code is not.
        assert_eq!(p, [0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x41, 0x9a, 0x11, 0, 0, 1, 0x41, 0x9a, 0x22]);
        assert_eq!(prefix, 10 + 3);
    }

    #[test]
    fn frames_without_start_codes_are_sent_whole() {
        assert_eq!(plain(Codec::H264, b"\x65\x88\x84\x00"), (b"\x65\x88\x84\x00".to_vec(), 0));
        assert_eq!(plain(Codec::H264, b""), (vec![], 0));
        assert_eq!(plain(Codec::Vp8, b""), (vec![], 0));
        assert_eq!(plain(Codec::Vp8, b"\x10\x02\x00\x9d").1, 4, "a short key frame is all prefix");
        assert_eq!(plain(Codec::Vp8, b"\x11\x02\x00\x9d").1, 1);
    }

    #[test]
    fn the_start_code_check_starts_two_bytes_before_the_prefix_end() {
        let packet = [7, 0, 0, 1, 5, 5, 5, 5];
        assert!(!is_valid_encrypted(Codec::H264, &packet, 3), "straddles the prefix end");
        assert!(is_valid_encrypted(Codec::H264, &packet, 4), "wholly inside the prefix");
        assert!(is_valid_encrypted(Codec::Vp8, &packet, 0));
        assert!(is_valid_encrypted(Codec::H264, &[5, 5, 0, 0, 1], 0), "01 as the last byte");
    }

    #[test]
    fn the_receiver_strips_per_the_flags_byte() {
        let mut f = b"abc\x01\x9e".to_vec();
        assert_eq!(strip_received(Codec::Opus, &mut f), Some(AudioLevel { level: 30, speech: true }));
        assert_eq!(f, b"abc");
        let mut f = b"ab\x00".to_vec();
        assert_eq!(strip_received(Codec::Opus, &mut f), None, "flags byte 'b': bit 0 clear");
        assert_eq!(f, b"ab");
        let mut f = b"a".to_vec();
        assert_eq!(strip_received(Codec::Opus, &mut f), None);
        assert_eq!(f, b"a");
        let mut f = b"abc\x01\x9e".to_vec();
        assert_eq!(strip_received(Codec::Unknown, &mut f), None);
        assert_eq!(f.len(), 5);
    }

    #[test]
    fn audio_levels_as_tgcalls_computes_them() {
        assert_eq!(AudioLevel::from_linear(1.0, false).level, 0);
        assert_eq!(AudioLevel::from_linear(2.0, false).level, 0);
        assert_eq!(AudioLevel::from_linear(0.5, false).level, 6);
        assert_eq!(AudioLevel::from_linear(0.0, false).level, 127);
        assert_eq!(AudioLevel::from_linear(f32::NAN, false).level, 127);
        assert_eq!(AudioLevel::from_linear(1e-9, false).level, 127);
        assert_eq!(AudioLevel::from_linear(f32::INFINITY, false).level, 0);
        assert_eq!(AudioLevel::from_linear(f32::from_bits(1), false).level, 127, "subnormal");
        // 10^(-12/20): glibc's log10f gives 12 (a platform's own may give 11).
        assert_eq!(AudioLevel::from_linear(10f32.powf(-0.6), false).level, 12);
        assert_eq!(AudioLevel::from_peak(4000, true), AudioLevel { level: 0, speech: true });
        assert_eq!(AudioLevel::from_byte(0xff), AudioLevel { level: 127, speech: true });
        assert!((AudioLevel { level: 20, speech: false }.to_linear() - 0.1).abs() < 1e-6);
    }
}
