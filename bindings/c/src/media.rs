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
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Copies `scratch` into the caller's buffer, or reports the size needed.
unsafe fn deliver(scratch: &[u8], out: *mut u8, out_cap: usize, out_len: *mut usize) -> Result<(), i32> {
    *self::out(out_len)? = scratch.len();
    if scratch.len() > out_cap {
        return Err(invalid("output buffer too small (*out_len is the size needed)"));
    }
    if !scratch.is_empty() {
        if out.is_null() {
            return Err(invalid("null output buffer"));
        }
        ptr::copy_nonoverlapping(scratch.as_ptr(), out, scratch.len());
    }
    Ok(())
}

/// The largest packet a frame of `frame_len` bytes can become (15 epochs, largest padding): a
/// buffer this large always fits.
#[no_mangle]
pub extern "C" fn confchain_media_max_packet_size(frame_len: usize) -> usize {
    frame_len.saturating_add(4 + 15 * 64 + 16 + 31 + 8 + 64 + 4)
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
        let e = handle(call)?.0.media_encryptor(&mut handle_mut(rng)?.0);
        *out(out_encryptor)? = Box::into_raw(Box::new(confchain_media_encryptor(e)));
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
        let d = handle(call)?.0.media_decryptor();
        *out(out_decryptor)? = Box::into_raw(Box::new(confchain_media_decryptor(d)));
        Ok(())
    })
}

/// Encrypts a frame (the first `clear_prefix_len` bytes stay in clear) into `out` (capacity
/// `out_cap`; `confchain_media_max_packet_size(frame_len)` always fits); `*out_len` gets the
/// packet's size. Thread-safe.
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
        let (e, frame) = (handle(encryptor)?, input(frame, frame_len)?);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            e.0.encrypt_into(channel_id, frame, clear_prefix_len, now_ms, &mut s).or_code()?;
            deliver(&s, out_buf, out_cap, out_len)
        })
    })
}

/// Decrypts a frame from `user_id` into `out` (capacity `out_cap`; the packet's length always
/// fits); `*out_len` gets the frame's size. Thread-safe.
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
        let (d, packet) = (handle(decryptor)?, input(packet, packet_len)?);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            let result = d.0.decrypt_into(user_id, packet, now_ms, &mut s).or_code();
            let delivered = result.and_then(|()| deliver(&s, out_buf, out_cap, out_len));
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
