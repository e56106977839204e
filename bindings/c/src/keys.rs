//! The caller-seeded RNG and Ed25519 private keys.

use std::ptr;
use std::sync::atomic::{compiler_fence, Ordering};

use engine::PrivateKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zeroize::Zeroize;

use crate::error::{guard, invalid, OrCode};
use crate::memory::{free_handle, handle, handle_mut, input, out};

/// A deterministic CSPRNG (ChaCha20) seeded by the caller. Its state (the key, which regenerates
/// every secret it produced, and the buffered output) is wiped when it is freed.
pub struct confchain_rng(pub(crate) ChaCha20Rng);

impl Drop for confchain_rng {
    fn drop(&mut self) {
        // rand_chacha's RNG has no zeroize: overwrite it whole, in place, with the state of the
        // all-zero seed (nothing buffered), volatile so that the dead store is kept.
        // SAFETY: `self.0` is a valid, aligned place; ChaCha20Rng has no drop glue to skip.
        unsafe { ptr::write_volatile(&mut self.0, ChaCha20Rng::from_seed([0; 32])) };
        compiler_fence(Ordering::SeqCst);
    }
}
/// An Ed25519 private key.
pub struct confchain_private_key(pub(crate) PrivateKey);

/// A CSPRNG seeded with 32 bytes from the caller's own randomness source.
#[no_mangle]
pub unsafe extern "C" fn confchain_rng_new(seed: *const u8, out_rng: *mut *mut confchain_rng) -> i32 {
    guard(|| {
        let out_rng = out(out_rng)?;
        let mut seed: [u8; 32] = input(seed, 32)?.try_into().map_err(|_| invalid("seed"))?;
        *out_rng = Box::into_raw(Box::new(confchain_rng(ChaCha20Rng::from_seed(seed))));
        seed.zeroize();
        Ok(())
    })
}

/// Frees (and wipes) an RNG.
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
        let out_key = out(out_key)?;
        let rng = handle_mut(rng)?;
        *out_key = Box::into_raw(Box::new(confchain_private_key(PrivateKey::generate(&mut rng.0))));
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
        let out_key = out(out_key)?;
        let key = PrivateKey::from_slice(input(seed, len)?).or_code()?;
        *out_key = Box::into_raw(Box::new(confchain_private_key(key)));
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
        let out_public = out(out_public)?;
        *out_public = *handle(key)?.0.public_key().as_bytes();
        Ok(())
    })
}

/// Frees (and zeroizes) a private key.
#[no_mangle]
pub unsafe extern "C" fn confchain_private_key_free(key: *mut confchain_private_key) {
    free_handle(key)
}

#[cfg(test)]
mod tests {
    //! Freed memory is scanned: an allocator looks for a seed in every block given back to it.
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Seeds no other test uses: one for the control, one for the handle.
    const CONTROL: [u8; 32] = [0xc1; 32];
    const HANDLE: [u8; 32] = [0x5e; 32];
    /// How many freed blocks held each seed.
    static FREED_WITH: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

    struct Scanning;

    // SAFETY: forwards to the system allocator; reads only the block being freed.
    unsafe impl GlobalAlloc for Scanning {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            let block = std::slice::from_raw_parts(p, layout.size());
            for (seed, count) in [CONTROL, HANDLE].iter().zip(&FREED_WITH) {
                if block.windows(32).any(|w| w == seed) {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
            System.dealloc(p, layout)
        }
    }

    #[global_allocator]
    static SCANNING: Scanning = Scanning;

    #[test]
    fn a_freed_rng_leaves_no_key_behind() {
        // Control: a ChaCha20 RNG freed without wiping leaves its seed (its key) in the block,
        // and the scan sees it.
        let before = FREED_WITH[0].load(Ordering::SeqCst);
        let mut plain = Box::new(ChaCha20Rng::from_seed(CONTROL));
        let _ = rand_core::RngCore::next_u64(&mut *plain);
        drop(plain);
        assert!(FREED_WITH[0].load(Ordering::SeqCst) > before, "the scan does not see an unwiped key");

        // The handle, used and freed, leaves nothing (the seed is passed from the stack).
        let seed = HANDLE;
        let mut rng = ptr::null_mut();
        let mut key = ptr::null_mut();
        unsafe {
            assert_eq!(confchain_rng_new(seed.as_ptr(), &mut rng), 0);
            assert_eq!(confchain_private_key_generate(rng, &mut key), 0);
            confchain_private_key_free(key);
            confchain_rng_free(rng);
        }
        assert_eq!(FREED_WITH[1].load(Ordering::SeqCst), 0, "a freed confchain_rng still held its key");
    }
}
