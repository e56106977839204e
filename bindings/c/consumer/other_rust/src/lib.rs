//! A stand-in for another Rust library in the same C program.

/// Sums the bytes of a string built with std (allocations, formatting, a panic handler).
#[no_mangle]
pub extern "C" fn other_rust_value() -> i32 {
    let s = format!("{}-{}", "other", 42);
    s.bytes().map(i32::from).sum()
}
