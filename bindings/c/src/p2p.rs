//! One-to-one calls: the Diffie-Hellman exchange of the caller and the callee, and the key.

use engine::p2p::{Callee, Caller, DhConfig, DhKey, PrimeCache};

use crate::error::{guard, invalid, OrCode};
use crate::keys::confchain_rng;
use crate::memory::{confchain_bytes, free_handle, handle, handle_mut, input, out, to_bytes};

/// A one-to-one call, calling side.
pub struct confchain_p2p_caller(pub(crate) Caller);
/// A one-to-one call, called side.
pub struct confchain_p2p_callee(pub(crate) Callee);
/// The agreed key of a one-to-one call.
pub struct confchain_p2p_key(pub(crate) DhKey);

fn dh_config(g: i32, p: &[u8]) -> Result<DhConfig, i32> {
    if p.is_empty() {
        return Ok(DhConfig::telegram());
    }
    DhConfig::new(g, p, &mut PrimeCache::new()).or_code()
}

/// Starts a one-to-one call as the caller (requestCall). `p_len` 0 uses Telegram's prime with
/// `g` (messages.getDhConfig); draws the secret exponent from `rng`.
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_caller_new(
    g: i32,
    p: *const u8,
    p_len: usize,
    rng: *mut confchain_rng,
    out_caller: *mut *mut confchain_p2p_caller,
) -> i32 {
    guard(|| {
        let out_caller = out(out_caller)?;
        let config = dh_config(g, input(p, p_len)?)?;
        let caller = Caller::new(config, &mut handle_mut(rng)?.0);
        *out_caller = Box::into_raw(Box::new(confchain_p2p_caller(caller)));
        Ok(())
    })
}

/// `g_a_hash` for requestCall, and `g_a` for confirmCall.
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_caller_g_a(
    caller: *const confchain_p2p_caller,
    out_g_a_hash: *mut [u8; 32],
    out_g_a: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let out_g_a_hash = out(out_g_a_hash)?;
        let out_g_a = out(out_g_a)?;
        let c = &handle(caller)?.0;
        *out_g_a_hash = c.g_a_hash();
        *out_g_a = to_bytes(c.g_a());
        Ok(())
    })
}

/// On phoneCallAccepted: checks `g_b`, gives the key (and its fingerprint for confirmCall).
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_caller_on_accepted(
    caller: *const confchain_p2p_caller,
    g_b: *const u8,
    g_b_len: usize,
    out_key: *mut *mut confchain_p2p_key,
) -> i32 {
    guard(|| {
        let out_key = out(out_key)?;
        let confirmation = handle(caller)?.0.on_accepted(input(g_b, g_b_len)?).or_code()?;
        *out_key = Box::into_raw(Box::new(confchain_p2p_key(confirmation.key)));
        Ok(())
    })
}

/// Frees a caller (its exponent is zeroized).
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_caller_free(caller: *mut confchain_p2p_caller) {
    free_handle(caller)
}

/// Answers a one-to-one call (acceptCall) given the caller's `g_a_hash`; `p_len` 0 uses Telegram's
/// prime.
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_callee_new(
    g: i32,
    p: *const u8,
    p_len: usize,
    g_a_hash: *const u8,
    rng: *mut confchain_rng,
    out_callee: *mut *mut confchain_p2p_callee,
) -> i32 {
    guard(|| {
        let out_callee = out(out_callee)?;
        let config = dh_config(g, input(p, p_len)?)?;
        let hash: [u8; 32] = input(g_a_hash, 32)?.try_into().map_err(|_| invalid("g_a_hash"))?;
        let callee = Callee::new(config, hash, &mut handle_mut(rng)?.0);
        *out_callee = Box::into_raw(Box::new(confchain_p2p_callee(callee)));
        Ok(())
    })
}

/// `g_b` for acceptCall.
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_callee_g_b(
    callee: *const confchain_p2p_callee,
    out_g_b: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let out_g_b = out(out_g_b)?;
        *out_g_b = to_bytes(handle(callee)?.0.g_b());
        Ok(())
    })
}

/// On phoneCall with `g_a` and `key_fingerprint`: checks everything and gives the key.
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_callee_on_confirmed(
    callee: *const confchain_p2p_callee,
    g_a: *const u8,
    g_a_len: usize,
    key_fingerprint: i64,
    out_key: *mut *mut confchain_p2p_key,
) -> i32 {
    guard(|| {
        let out_key = out(out_key)?;
        let key = handle(callee)?.0.on_confirmed(input(g_a, g_a_len)?, key_fingerprint).or_code()?;
        *out_key = Box::into_raw(Box::new(confchain_p2p_key(key)));
        Ok(())
    })
}

/// Frees a callee (its exponent is zeroized).
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_callee_free(callee: *mut confchain_p2p_callee) {
    free_handle(callee)
}

/// The key's fingerprint (confirmCall's `key_fingerprint`), its four emojis (UTF-8, concatenated)
/// and the 256-byte key itself.
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_key_get(
    key: *const confchain_p2p_key,
    out_fingerprint: *mut i64,
    out_emojis: *mut confchain_bytes,
    out_key: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let out_fingerprint = out(out_fingerprint)?;
        let out_emojis = out(out_emojis)?;
        let out_key = out(out_key)?;
        let k = &handle(key)?.0;
        *out_fingerprint = k.fingerprint();
        *out_emojis = to_bytes(k.emojis().concat().into_bytes());
        *out_key = to_bytes(k.key().expose().to_vec());
        Ok(())
    })
}

/// Frees (and zeroizes) a one-to-one key.
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_key_free(key: *mut confchain_p2p_key) {
    free_handle(key)
}
