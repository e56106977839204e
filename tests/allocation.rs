//! Allocation is bounded by the input (SPEC.md §10): decoding hostile blocks and broadcasts never
//! allocates more than a small multiple of the bytes given, whatever the counts inside claim.
//! Measured with a counting global allocator (per thread, so parallel tests do not interfere).
//!
//! The one place outside the C binding with `unsafe`: a global allocator implements an unsafe trait.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use confchain::wire::id;
use confchain::{build_zero_block, Block, Broadcast, Call, Permissions, PrivateKey};
use rand_core::SeedableRng;

struct Counting;

thread_local! {
    /// Bytes allocated by this thread, in total.
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    /// Bytes this thread holds now (allocated minus freed).
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn live(delta: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
        live(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + new_size));
        live(new_size as isize - layout.size() as isize);
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

/// The API's TL results too (issue 30 item 9): a vector of updates whose count the bytes left pass
/// reserved one 72-byte entry per 4 bytes, 18 times the input; blocks and participants likewise
/// stay within the bound.
#[test]
fn hostile_api_counts_allocate_in_proportion_to_the_input() {
    use confchain::api::tl::{decode_result, id as tl};
    let n = (SIZE - 200) as u32;
    let call = [&le(tl::INPUT_GROUP_CALL)[..], &[0; 16]].concat();
    let padded = |mut b: Vec<u8>| {
        b.resize(SIZE, 0xff);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("updates", padded([le(tl::UPDATES), le(tl::VECTOR), le(n)].concat())),
        ("combined", padded([le(tl::UPDATES_COMBINED), le(tl::VECTOR), le(n)].concat())),
        (
            "blocks",
            padded(
                [
                    &le(tl::UPDATE_SHORT)[..],
                    &le(tl::UPDATE_GROUP_CALL_CHAIN_BLOCKS),
                    &call,
                    &le(0),
                    &le(tl::VECTOR),
                    &le(n),
                ]
                .concat(),
            ),
        ),
        (
            "participants",
            padded(
                [&le(tl::UPDATE_SHORT)[..], &le(tl::UPDATE_GROUP_CALL_PARTICIPANTS), &call, &le(tl::VECTOR), &le(n)]
                    .concat(),
            ),
        ),
    ];
    for (what, input) in cases {
        let mut result = None;
        let used = allocated_by(|| result = Some(decode_result(&input)));
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

/// Memory of a call, per participant and per sender of replay state, for 10, 100 and 1,000
/// members (printed with `--nocapture`; the numbers in benches/README.md come from here).
#[test]
fn memory_per_participant_and_per_sender() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    // The first verification from a prepared key builds the base point's table (640 KiB, once per
    // process): not a cost of any call, so it is paid before measuring.
    {
        let keys: Vec<PrivateKey> = (0..2).map(|_| PrivateKey::generate(&mut rng)).collect();
        let zero =
            build_zero_block(common::members(&keys, Permissions::ALL), &keys[0], &mut rng).unwrap().to_server_form();
        let mut sender = Call::new(2, keys[1].clone(), &zero, &mut rng).unwrap();
        let packet = sender.encrypt(0, b"frame", 0, 0, &mut rng).unwrap();
        Call::new(1, keys[0].clone(), &zero, &mut rng).unwrap().decrypt(2, &packet, 0).unwrap();
    }
    let mut rows = Vec::new();
    for n in [10usize, 100, 1000] {
        let keys: Vec<PrivateKey> = (0..n).map(|_| PrivateKey::generate(&mut rng)).collect();
        let state = common::members(&keys, Permissions::ALL);
        let zero = build_zero_block(state, &keys[0], &mut rng).unwrap().to_server_form();
        let senders: Vec<Call> = keys
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, k)| Call::new(i as i64 + 1, k.clone(), &zero, &mut rng).unwrap())
            .collect();
        let packets: Vec<Vec<u8>> =
            senders.into_iter().map(|mut c| c.encrypt(0, b"frame", 0, 0, &mut rng).unwrap()).collect();
        let before = LIVE.with(Cell::get);
        let mut call = Call::new(1, keys[0].clone(), &zero, &mut rng).unwrap();
        let call_bytes = LIVE.with(Cell::get) - before;
        let before = LIVE.with(Cell::get);
        for (i, p) in packets.iter().enumerate() {
            call.decrypt(i as i64 + 2, p, 0).unwrap();
        }
        let replay_bytes = LIVE.with(Cell::get) - before;
        let per_member = call_bytes as f64 / n as f64;
        let per_sender = replay_bytes as f64 / (n - 1) as f64;
        rows.push((n, call_bytes, per_member, per_sender));
        // Generous bounds that catch a regression (a copy per epoch, a window per packet). Each
        // participant's key gets its verification tables (40,960 bytes) when it enters the call,
        // up to 512 (`MAX_PREPARED_KEYS`, 32 per shard of the key cache); later ones are verified
        // without.
        let tables = (n - 1).min(512) as f64 * 40_960.0 / n as f64;
        assert!(per_member < 2_000.0 + tables, "{n} members: {per_member} bytes per member");
        assert!(per_sender < 1_500.0, "{n} senders: {per_sender} bytes per sender");
        drop(call);
    }
    for (n, total, per_member, per_sender) in rows {
        println!("{n:>5} members: call {total:>9} bytes ({per_member:.0} per member, key tables included); replay state {per_sender:.0} bytes per sender");
    }
}
