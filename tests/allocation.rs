//! Allocation is bounded by the input (SPEC.md §10): decoding hostile blocks and broadcasts never
//! allocates more than a small multiple of the bytes given, whatever the counts inside claim.
//! Measured with a counting global allocator (per thread, so parallel tests do not interfere).
//!
//! The one place outside the C binding with `unsafe`: a global allocator implements an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use confchain::wire::id;
use confchain::{Block, Broadcast};

struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + new_size));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated (in total, freed or not) while running `f`.
fn allocated_by(f: impl FnOnce()) -> usize {
    let before = ALLOCATED.with(Cell::get);
    f();
    ALLOCATED.with(Cell::get) - before
}

fn le(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// A server-form block prefix up to the changes vector, then `body`, padded with zeros to `size`.
fn block(body: &[u8], size: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&le(id::BLOCK + 1));
    b.extend_from_slice(&[0; 64]);
    b.extend_from_slice(&le(0));
    b.extend_from_slice(&[0; 32]);
    b.extend_from_slice(body);
    b.resize(size, 0);
    b
}

const SIZE: usize = 10_000;
/// The bound SPEC.md §10 states: 8 bytes of memory per input byte, plus a little for the error.
const BOUND: usize = 8 * SIZE + 4096;

#[test]
fn hostile_counts_allocate_in_proportion_to_the_input() {
    let n = (SIZE - 200) as u32; // every count passes "count <= bytes left"
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("changes", block(&le(n), SIZE)),
        ("participants", block(&[le(1), le(id::CHANGE_SET_GROUP_STATE), le(id::GROUP_STATE), le(n)].concat(), SIZE)),
        (
            "shared key recipients",
            block(
                &[&le(1)[..], &le(id::CHANGE_SET_SHARED_KEY), &le(id::SHARED_KEY), &[0; 32], &[0; 4], &le(n)].concat(),
                SIZE,
            ),
        ),
        (
            "shared key headers",
            block(
                &[&le(1)[..], &le(id::CHANGE_SET_SHARED_KEY), &le(id::SHARED_KEY), &[0; 32], &[0; 4], &le(0), &le(n)]
                    .concat(),
                SIZE,
            ),
        ),
    ];
    for (what, input) in cases {
        let mut result = None;
        let used = allocated_by(|| result = Some(Block::decode_server(&input)));
        assert!(result.unwrap().is_err(), "{what}: hostile input must not decode");
        assert!(used <= BOUND, "{what}: {used} bytes allocated for a {SIZE}-byte input (bound {BOUND})");
    }
}

#[test]
fn oversized_broadcasts_are_not_copied() {
    let mut input = vec![0u8; 1 << 20];
    input[..4].copy_from_slice(&le(id::NONCE_COMMIT + 1));
    let mut result = None;
    let used = allocated_by(|| result = Some(Broadcast::decode_server(&input)));
    let err = result.unwrap().unwrap_err();
    assert_eq!(err.message(), "Too much data to fetch at 144");
    assert!(used < 4096, "{used} bytes allocated for a 1 MiB broadcast");
}
