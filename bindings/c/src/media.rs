//! Media handles for media threads (thread-safe): frames encrypted and decrypted into the
//! caller's buffers.

use std::cell::RefCell;
use std::ptr;

use engine::{MediaDecryptor, MediaEncryptor};

use crate::call::confchain_call;
use crate::error::{guard, invalid, OrCode};
use crate::keys::confchain_rng;
use crate::memory::{free_handle, handle, handle_mut, input, out};

/// Encrypts our frames; safe to call from any thread, concurrently.
pub struct confchain_media_encryptor(pub(crate) MediaEncryptor);
/// Decrypts other members' frames; safe to call from any thread, concurrently.
pub struct confchain_media_decryptor(pub(crate) MediaDecryptor);

thread_local! {
    /// Per-thread scratch buffer: the media path allocates only when a frame is larger than any
    /// before it on this thread.
    pub(crate) static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The caller's output buffer of a media function, checked before anything is consumed (a
/// sequence number drawn, a packet marked in the replay window): a buffer that cannot hold the
/// largest possible result, or a null `out_len`, is refused while the input can still be retried.
pub(crate) struct Sink<'a> {
    buf: *mut u8,
    cap: usize,
    len: &'a mut usize,
}

impl<'a> Sink<'a> {
    /// Checks `out_len` and that `cap` bytes at `buf` hold `needed`; else `*out_len` (when not
    /// null) gets `needed`, the size to retry with.
    pub(crate) unsafe fn new(buf: *mut u8, cap: usize, out_len: *mut usize, needed: usize) -> Result<Sink<'a>, i32> {
        let len = out(out_len)?;
        *len = needed;
        if cap < needed {
            return Err(invalid("output buffer too small (*out_len is the size needed)"));
        }
        if buf.is_null() && cap > 0 {
            return Err(invalid("null output buffer with non-zero capacity"));
        }
        Ok(Sink { buf, cap, len })
    }

    /// Copies `result` into the buffer and its length into `*out_len`.
    pub(crate) unsafe fn deliver(self, result: &[u8]) -> Result<(), i32> {
        *self.len = result.len();
        if result.len() > self.cap {
            // Unreachable when `needed` was a true bound; refused rather than overflowing.
            return Err(invalid("output buffer too small (*out_len is the size needed)"));
        }
        if !result.is_empty() {
            ptr::copy_nonoverlapping(result.as_ptr(), self.buf, result.len());
        }
        Ok(())
    }
}

/// The largest packet a frame of `frame_len` bytes can become (15 epochs, largest padding): a
/// buffer this large always fits.
#[no_mangle]
pub extern "C" fn confchain_media_max_packet_size(frame_len: usize) -> usize {
    frame_len.saturating_add(4 + 15 * 64 + 16 + 31 + 8 + 64 + 4)
}

/// What every packet holds besides the frame: head, MAC, least padding, channel and sequence
/// number, signature and trailer (padding is at least 16 bytes; the epochs are not counted).
const MIN_PACKET_OVERHEAD: usize = 4 + 16 + 16 + 8 + 64 + 4;

/// The largest frame a packet of `packet_len` bytes can hold: a buffer this large always fits
/// what `confchain_media_decrypt` delivers.
#[no_mangle]
pub extern "C" fn confchain_media_max_frame_size(packet_len: usize) -> usize {
    packet_len.saturating_sub(MIN_PACKET_OVERHEAD)
}

/// A frame encryptor for media threads, sharing `call`'s sequence numbers and seeing its epoch
/// changes at once; its RNG is seeded with 32 bytes from `rng`. Free with
/// `confchain_media_encryptor_free` (it may outlive the call).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_media_encryptor(
    call: *const confchain_call,
    rng: *mut confchain_rng,
    out_encryptor: *mut *mut confchain_media_encryptor,
) -> i32 {
    guard(|| {
        let out_encryptor = out(out_encryptor)?;
        let e = handle(call)?.0.media_encryptor(&mut handle_mut(rng)?.0);
        *out_encryptor = Box::into_raw(Box::new(confchain_media_encryptor(e)));
        Ok(())
    })
}

/// A frame decryptor for media threads, sharing `call`'s replay windows and epochs.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_media_decryptor(
    call: *const confchain_call,
    out_decryptor: *mut *mut confchain_media_decryptor,
) -> i32 {
    guard(|| {
        let out_decryptor = out(out_decryptor)?;
        let d = handle(call)?.0.media_decryptor();
        *out_decryptor = Box::into_raw(Box::new(confchain_media_decryptor(d)));
        Ok(())
    })
}

/// Encrypts a frame (the first `clear_prefix_len` bytes stay in clear) into `out_buf` of capacity
/// `out_cap`, which must be at least `confchain_media_max_packet_size(frame_len)`; `*out_len`
/// gets the packet's size. A smaller buffer or a null `out_len` is refused before a sequence
/// number is drawn (`*out_len` then holds the capacity needed). Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_media_encrypt(
    encryptor: *const confchain_media_encryptor,
    channel_id: i32,
    frame: *const u8,
    frame_len: usize,
    clear_prefix_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let sink = Sink::new(out_buf, out_cap, out_len, confchain_media_max_packet_size(frame_len))?;
        let (e, frame) = (handle(encryptor)?, input(frame, frame_len)?);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            e.0.encrypt_into(channel_id, frame, clear_prefix_len, now_ms, &mut s).or_code()?;
            sink.deliver(&s)
        })
    })
}

/// Decrypts a frame from `user_id` into `out_buf` of capacity `out_cap`, which must be at least
/// `confchain_media_max_frame_size(packet_len)` (the packet's length always is); `*out_len` gets
/// the frame's size. A smaller buffer or a null `out_len` is refused before the packet is
/// decrypted or marked as seen (`*out_len` then holds the capacity needed), so the retry is not
/// taken for a replay. Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_media_decrypt(
    decryptor: *const confchain_media_decryptor,
    user_id: i64,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let sink = Sink::new(out_buf, out_cap, out_len, confchain_media_max_frame_size(packet_len))?;
        let (d, packet) = (handle(decryptor)?, input(packet, packet_len)?);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            let result = d.0.decrypt_into(user_id, packet, now_ms, &mut s).or_code();
            let delivered = result.and_then(|()| sink.deliver(&s));
            // The decrypted frame does not stay behind in the scratch buffer.
            zeroize::Zeroize::zeroize(&mut *s);
            delivered
        })
    })
}

/// Frees an encryptor.
#[no_mangle]
pub unsafe extern "C" fn confchain_media_encryptor_free(encryptor: *mut confchain_media_encryptor) {
    free_handle(encryptor)
}

/// Frees a decryptor.
#[no_mangle]
pub unsafe extern "C" fn confchain_media_decryptor_free(decryptor: *mut confchain_media_decryptor) {
    free_handle(decryptor)
}

#[cfg(test)]
mod tests {
    use engine::{build_zero_block, Call, GroupParticipant, GroupState, Permissions, PrivateKey};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    /// The two bounds the buffer checks rely on hold for real packets: with 1 to 15 live epochs,
    /// every padding length and clear prefixes, a packet fits `confchain_media_max_packet_size`
    /// of its frame, and the frame fits `confchain_media_max_frame_size` of its packet.
    #[test]
    fn buffer_bounds_hold_for_real_packets() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let (a, b) = (PrivateKey::generate(&mut rng), PrivateKey::generate(&mut rng));
        let member = |id, key: &PrivateKey| GroupParticipant {
            user_id: id,
            public_key: key.public_key(),
            flags: Permissions::ALL,
            version: 0,
        };
        let state =
            GroupState { participants: vec![member(1, &a), member(2, &b)], external_permissions: Permissions::NONE };
        let zero = build_zero_block(state, &a, &mut rng).unwrap().to_server_form();
        let mut alice = Call::new(1, a, &zero, &mut rng).unwrap();
        let mut bob = Call::new(2, b, &zero, &mut rng).unwrap();
        let (encryptor, decryptor) = (alice.media_encryptor(&mut rng), bob.media_decryptor());
        let (mut packet, mut frame) = (Vec::new(), Vec::new());
        for epochs in 1..=15 {
            assert_eq!(alice.active_epochs().len(), epochs);
            for len in (0..70).chain([1000, 4096]) {
                let data = vec![7u8; len];
                for prefix in [0, len / 2, len] {
                    packet.clear();
                    encryptor.encrypt_into(0, &data, prefix, 1, &mut packet).unwrap();
                    assert!(packet.len() <= confchain_media_max_packet_size(len), "{len} bytes, {epochs} epochs");
                    frame.clear();
                    decryptor.decrypt_into(1, &packet, 1, &mut frame).unwrap();
                    assert_eq!(frame, data);
                    assert!(frame.len() <= confchain_media_max_frame_size(packet.len()), "{len}, {epochs}");
                }
            }
            let rekey = alice.build_rekey(&mut rng).unwrap().to_server_form();
            alice.apply_block(&rekey, 1, &mut rng).unwrap();
            bob.apply_block(&rekey, 1, &mut rng).unwrap();
        }
    }
}
