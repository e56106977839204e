//! The API's TL decoding (`confchain::api::tl`): any bytes as a function's result (`updates`,
//! `updatesCombined`, `updateShort`, `updatesTooLong`, `boolTrue`/`boolFalse`, `rpc_error`, with
//! every update the codec reads, and `phone.groupParticipants`) and as a function (the server
//! model's side, `phone.getGroupParticipants` lookups included). Invariants: never
//! panics; no single allocation while decoding is larger than `ALLOCATION_FACTOR` times the input
//! (plus a constant): a count field that makes the decoder reserve more than the bytes left can
//! hold is a crash at any input size (fuzz/ci.sh also runs it with `-malloc_limit_mb`); a request
//! that decodes re-encodes to bytes that decode to the same request.
#![no_main]
// A counting global allocator implements an unsafe trait (as tests/allocation.rs does).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use confchain::api::tl::{
    decode_request, decode_result, decode_source_lookup, encode_request, encode_source_lookup, Answer, Context,
};
use libfuzzer_sys::fuzz_target;

/// The largest allocation may be this many times the input: a `Vec<Vec<u8>>` of blocks reserved
/// at one entry per 4 bytes left is 6 times (24 bytes an entry); lossy UTF-8 is 3 times.
const ALLOCATION_FACTOR: usize = 8;
/// Plus this many bytes (small vectors, error messages).
const ALLOCATION_SLACK: usize = 1_024;

/// The largest single allocation (or reallocation) since the last reset.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Largest;

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// Runs `f`, failing if it allocated more than the input allows at once.
fn bounded<T>(what: &str, data: &[u8], f: impl FnOnce() -> T) -> T {
    LARGEST.store(0, Ordering::Relaxed);
    let out = f();
    let largest = LARGEST.load(Ordering::Relaxed);
    let bound = data.len().saturating_mul(ALLOCATION_FACTOR).saturating_add(ALLOCATION_SLACK);
    assert!(largest <= bound, "{what} of {} bytes allocated {largest} bytes at once (bound {bound})", data.len());
    out
}

fuzz_target!(|data: &[u8]| {
    let result = bounded("decode_result", data, || decode_result(data));
    if let Ok(Answer::Error { message, .. }) = &result {
        assert!(message.len() <= data.len().saturating_mul(3));
    }
    let request = bounded("decode_request", data, || decode_request(data));
    if let Ok((req, ctx)) = request {
        if let Ok(again) = encode_request(&req, &ctx) {
            let (req2, _) = decode_request(&again).expect("a re-encoded request decodes");
            assert_eq!(req2, req);
        }
    }
    if let Ok((lookup, call)) = bounded("decode_source_lookup", data, || decode_source_lookup(data)) {
        let ctx = Context { call: Some(call), ..Context::default() };
        let again = encode_source_lookup(&lookup, &ctx).expect("a lookup with its call encodes");
        assert_eq!(decode_source_lookup(&again).expect("a re-encoded lookup decodes").0, lookup);
    }
});
