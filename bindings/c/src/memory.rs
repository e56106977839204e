//! Memory across the boundary: reading the caller's pointers (inputs, handles, outputs) and
//! handing out bytes and id lists that the caller frees.

use std::ptr;
use std::slice;

use crate::error::invalid;

/// Owned bytes returned by confchain; free with `confchain_bytes_free`.
#[repr(C)]
pub struct confchain_bytes {
    /// The bytes (null when `len` is 0).
    pub data: *mut u8,
    /// Their number.
    pub len: usize,
}

/// The most items a caller's array may hold (participants, user ids, blocks of an update): a
/// larger count is refused as invalid input rather than trusted for an allocation.
pub const CONFCHAIN_MAX_LIST_LEN: usize = 65536;

/// The caller's `len` bytes at `data` (a length no object can have is refused).
pub(crate) unsafe fn input<'a>(data: *const u8, len: usize) -> Result<&'a [u8], i32> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(invalid("null input with non-zero length"));
    }
    if isize::try_from(len).is_err() {
        return Err(invalid("input length larger than any object"));
    }
    Ok(slice::from_raw_parts(data, len))
}

/// The caller's array of `n` items at `p`, at most [`CONFCHAIN_MAX_LIST_LEN`] (`what` names it).
pub(crate) unsafe fn list<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T], i32> {
    if n == 0 {
        return Ok(&[]);
    }
    if n > CONFCHAIN_MAX_LIST_LEN {
        return Err(invalid(&format!("{what}: {n} items, at most {CONFCHAIN_MAX_LIST_LEN}")));
    }
    if p.is_null() {
        return Err(invalid(&format!("null {what}")));
    }
    Ok(slice::from_raw_parts(p, n))
}

pub(crate) unsafe fn handle<'a, T>(p: *const T) -> Result<&'a T, i32> {
    p.as_ref().ok_or_else(|| invalid("null handle"))
}

pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T) -> Result<&'a mut T, i32> {
    p.as_mut().ok_or_else(|| invalid("null handle"))
}

pub(crate) unsafe fn out<'a, T>(p: *mut T) -> Result<&'a mut T, i32> {
    p.as_mut().ok_or_else(|| invalid("null output pointer"))
}

/// Drops a handle made by `Box::into_raw` (null is fine).
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        drop(Box::from_raw(p));
    }
}

pub(crate) fn to_bytes(v: Vec<u8>) -> confchain_bytes {
    let mut b = v.into_boxed_slice();
    let out = confchain_bytes { data: if b.is_empty() { ptr::null_mut() } else { b.as_mut_ptr() }, len: b.len() };
    std::mem::forget(b);
    out
}

/// Frees bytes returned by confchain (a null `data` is fine).
#[no_mangle]
pub unsafe extern "C" fn confchain_bytes_free(bytes: confchain_bytes) {
    if !bytes.data.is_null() {
        drop(Box::from_raw(ptr::slice_from_raw_parts_mut(bytes.data, bytes.len)));
    }
}

pub(crate) fn ids_out(ids: Vec<i64>) -> (*mut i64, usize) {
    if ids.is_empty() {
        return (ptr::null_mut(), 0);
    }
    let mut b = ids.into_boxed_slice();
    let out = (b.as_mut_ptr(), b.len());
    std::mem::forget(b);
    out
}

pub(crate) unsafe fn ids_free(p: *mut i64, n: usize) {
    if !p.is_null() {
        drop(Box::from_raw(ptr::slice_from_raw_parts_mut(p, n)));
    }
}
