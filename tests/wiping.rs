//! Secrets are wiped before their memory is freed (SPEC.md §12): a global allocator scans every
//! block freed by the test's thread, while armed, for known secret bytes (the seed the media
//! encryptor's RNG was keyed with, a private key's seed) and counts the blocks that still hold them.
//!
//! With `rand_chacha`'s RNG (before issue 23, item 3) the encryptor's freed memory held the ChaCha20
//! key, which regenerates every one-time secret it drew, and so every packet it sent.
//!
//! A global allocator implements an unsafe trait, and reading a block about to be freed is a raw
//! read: this file and `tests/allocation.rs` are the test code with `unsafe`.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use confchain::{build_zero_block, Call, PrivateKey};
use rand_core::{CryptoRng, RngCore, SeedableRng};

struct Scanning;

thread_local! {
    /// The bytes looked for (empty: not armed).
    static NEEDLES: Cell<[[u8; 16]; 8]> = const { Cell::new([[0; 16]; 8]) };
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Freed blocks that held a needle.
    static HITS: Cell<usize> = const { Cell::new(0) };
}

fn holds_a_needle(bytes: &[u8]) -> bool {
    let needles = NEEDLES.with(Cell::get);
    bytes.windows(16).any(|w| needles.iter().any(|n| w == n))
}

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.try_with(Cell::get).unwrap_or(false) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until `System.dealloc`.
            let freed = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if holds_a_needle(freed) {
                let _ = HITS.try_with(|h| h.set(h.get() + 1));
            }
        }
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

/// Freed blocks that still held any half of one of `secrets` (at most 4) while `f` ran.
fn leaks_while(secrets: &[[u8; 32]], f: impl FnOnce()) -> usize {
    assert!((1..=4).contains(&secrets.len()));
    let mut needles = [[0u8; 16]; 8];
    for (i, needle) in needles.iter_mut().enumerate() {
        let s = &secrets[(i / 2) % secrets.len()];
        needle.copy_from_slice(if i % 2 == 0 { &s[..16] } else { &s[16..] });
    }
    NEEDLES.with(|n| n.set(needles));
    HITS.with(|h| h.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    HITS.with(Cell::get)
}

/// An RNG that hands out a known 32-byte ramp first (the seed the encryptor draws), then ChaCha.
struct Known {
    first: Option<[u8; 32]>,
    rest: rand_chacha::ChaCha20Rng,
}

impl RngCore for Known {
    fn next_u32(&mut self) -> u32 {
        self.rest.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.rest.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match self.first.take() {
            Some(seed) if dest.len() == 32 => dest.copy_from_slice(&seed),
            _ => self.rest.fill_bytes(dest),
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Known {}

fn ramp() -> [u8; 32] {
    std::array::from_fn(|i| 0xa0 + i as u8)
}

fn alice_call(rng: &mut rand_chacha::ChaCha20Rng) -> (Call, [u8; 32]) {
    let (a, b) = (PrivateKey::generate(rng), PrivateKey::generate(rng));
    let state = common::members(&[a.clone(), b], confchain::Permissions::ALL);
    let zero = build_zero_block(state, &a, rng).unwrap().to_server_form();
    let seed = *a.to_bytes().expose();
    (Call::new(1, a, &zero, rng).unwrap(), seed)
}

/// The media encryptor's RNG key and its private key are gone from memory it frees, whether it
/// encrypted nothing or many packets.
#[test]
fn a_dropped_media_encryptor_leaves_no_rng_key_in_freed_memory() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(31);
    let (call, private_seed) = alice_call(&mut rng);
    for packets in [0, 1, 50] {
        let mut known = Known { first: Some(ramp()), rest: rand_chacha::ChaCha20Rng::seed_from_u64(32) };
        // Boxed, as bindings and applications that share it hold it: its memory is freed on drop.
        let encryptor = Box::new(call.media_encryptor(&mut known));
        assert!(known.first.is_none(), "the encryptor drew its seed");
        let mut out = Vec::new();
        for i in 0..packets {
            out.clear();
            encryptor.encrypt_into(0, b"frame", 0, i, &mut out).unwrap();
        }
        let hits = leaks_while(&[ramp(), private_seed], || drop(encryptor));
        assert_eq!(hits, 0, "freed memory held the RNG key or the private key after {packets} packets");
    }
}

/// The scan itself works: a freed buffer that held the seed, or half of it, is found.
#[test]
fn the_scan_finds_an_unwiped_secret() {
    let copy = Box::new(ramp());
    assert_eq!(leaks_while(&[ramp()], || drop(copy)), 1);
    let half = ramp()[16..].to_vec();
    assert_eq!(leaks_while(&[[1; 32], [2; 32], [3; 32], ramp()], || drop(half)), 1);
    let wiped = Box::new(zeroize::Zeroizing::new(ramp()));
    assert_eq!(leaks_while(&[ramp()], || drop(wiped)), 0);
}

/// A whole call's private key is wiped when the call is dropped.
#[test]
fn a_dropped_call_leaves_no_private_key_in_freed_memory() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(33);
    let (call, private_seed) = alice_call(&mut rng);
    let call = Box::new(call);
    assert_eq!(leaks_while(&[private_seed], || drop(call)), 0);
}

/// A call's whole life, armed throughout: creating it from the server's block, encrypting and
/// decrypting, a re-key, its epochs expiring, and dropping it. No block freed on the way holds the
/// private key's seed or a group key (the decrypted raw key, its copies, the epoch key state).
///
/// Optimized builds only: unoptimized code leaves copies of secrets on the stack, and a small
/// enum value written into a heap buffer (the call's event queue) carries that stack's stale bytes
/// in its padding; whether a seed shows up there depends on the layout of the test binary (a
/// field added to `Error` made it appear). The README's test command runs this in release.
#[test]
#[cfg_attr(debug_assertions, ignore = "layout-dependent in unoptimized builds: run with --release")]
fn a_calls_life_frees_no_private_key_or_group_key() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(34);
    let (a, b) = (PrivateKey::generate(&mut rng), PrivateKey::generate(&mut rng));
    let state = common::members(&[a.clone(), b.clone()], confchain::Permissions::ALL);
    let zero = build_zero_block(state.clone(), &a, &mut rng).unwrap().to_server_form();
    let mut chain = confchain::Chain::empty();
    chain.apply(&zero).unwrap();
    let rekey = chain.build_change_state(state, &a, &mut rng).unwrap().to_server_form();
    let mut next = chain.clone();
    next.apply(&rekey).unwrap();
    let keys = [*chain.group_key(1, &a).unwrap().expose(), *next.group_key(1, &a).unwrap().expose()];
    let seeds = [*a.to_bytes().expose(), *b.to_bytes().expose()];
    let mut bob = Call::new(2, b, &zero, &mut rng).unwrap();
    bob.apply_block(&rekey, 10, &mut rng).unwrap();
    let life = |rng: &mut rand_chacha::ChaCha20Rng| {
        let mut alice = Call::new(1, a, &zero, rng).unwrap();
        for now in 0..5 {
            let p = alice.encrypt(0, b"frame", 0, now, rng).unwrap();
            bob.decrypt(1, &p, now).unwrap();
        }
        alice.apply_block(&rekey, 10, rng).unwrap();
        alice.handle_timeout(100_000);
        let p = alice.encrypt(0, b"frame", 0, 100_000, rng).unwrap();
        bob.decrypt(1, &p, 100_000).unwrap();
        drop(alice);
    };
    let hits = leaks_while(&[seeds[0], seeds[1], keys[0], keys[1]], || life(&mut rng));
    assert_eq!(hits, 0, "a private key's seed or a group key in freed memory");
}
