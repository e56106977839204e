//! The caller-seeded RNG and Ed25519 private keys.

use engine::PrivateKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::error::{guard, invalid, OrCode};
use crate::memory::{free_handle, handle, handle_mut, input, out};

/// A deterministic CSPRNG (ChaCha20) seeded by the caller.
pub struct confchain_rng(pub(crate) ChaCha20Rng);
/// An Ed25519 private key.
pub struct confchain_private_key(pub(crate) PrivateKey);

/// A CSPRNG seeded with 32 bytes from the caller's own randomness source.
#[no_mangle]
pub unsafe extern "C" fn confchain_rng_new(seed: *const u8, out_rng: *mut *mut confchain_rng) -> i32 {
    guard(|| {
        let seed: [u8; 32] = input(seed, 32)?.try_into().map_err(|_| invalid("seed"))?;
        *out(out_rng)? = Box::into_raw(Box::new(confchain_rng(ChaCha20Rng::from_seed(seed))));
        Ok(())
    })
}

/// Frees an RNG.
#[no_mangle]
pub unsafe extern "C" fn confchain_rng_free(rng: *mut confchain_rng) {
    free_handle(rng)
}

/// A new private key (key_generate_private_key).
#[no_mangle]
pub unsafe extern "C" fn confchain_private_key_generate(
    rng: *mut confchain_rng,
    out_key: *mut *mut confchain_private_key,
) -> i32 {
    guard(|| {
        let rng = handle_mut(rng)?;
        *out(out_key)? = Box::into_raw(Box::new(confchain_private_key(PrivateKey::generate(&mut rng.0))));
        Ok(())
    })
}

/// A private key from its 32-byte seed.
#[no_mangle]
pub unsafe extern "C" fn confchain_private_key_from_bytes(
    seed: *const u8,
    len: usize,
    out_key: *mut *mut confchain_private_key,
) -> i32 {
    guard(|| {
        let key = PrivateKey::from_slice(input(seed, len)?).or_code()?;
        *out(out_key)? = Box::into_raw(Box::new(confchain_private_key(key)));
        Ok(())
    })
}

/// The 32-byte public key (key_to_public_key).
#[no_mangle]
pub unsafe extern "C" fn confchain_private_key_public(
    key: *const confchain_private_key,
    out_public: *mut [u8; 32],
) -> i32 {
    guard(|| {
        *out(out_public)? = *handle(key)?.0.public_key().as_bytes();
        Ok(())
    })
}

/// Frees (and zeroizes) a private key.
#[no_mangle]
pub unsafe extern "C" fn confchain_private_key_free(key: *mut confchain_private_key) {
    free_handle(key)
}
