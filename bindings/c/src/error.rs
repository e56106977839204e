//! Errors across the boundary: the numeric codes and finer kinds, the calling thread's last
//! error, and `guard`, which turns errors and panics into codes.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use engine::{Error, ErrorKind};

/// Success.
pub const CONFCHAIN_OK: i32 = 0;
/// The reference's code for every error without a code name.
pub const CONFCHAIN_UNKNOWN_ERROR: i32 = 100;

// Error kinds (`confchain_last_error_kind`): the numeric code for coded errors, and one constant
// per codeless kind.
/// No error.
pub const CONFCHAIN_KIND_NONE: i32 = 0;
/// Malformed TL.
pub const CONFCHAIN_KIND_PARSE: i32 = 1001;
/// A plain-form block or broadcast where the server form was expected.
pub const CONFCHAIN_KIND_NOT_FROM_SERVER: i32 = 1002;
/// No signer key and no participant to default to.
pub const CONFCHAIN_KIND_UNKNOWN_PUBLIC_KEY: i32 = 1003;
/// A shared key is already set.
pub const CONFCHAIN_KIND_SHARED_KEY_ALREADY_SET: i32 = 1004;
/// A size limit was exceeded.
pub const CONFCHAIN_KIND_LIMIT_EXCEEDED: i32 = 1005;
/// Authenticated decryption failed.
pub const CONFCHAIN_KIND_DECRYPT: i32 = 1006;
/// A malformed call packet.
pub const CONFCHAIN_KIND_INVALID_PACKET: i32 = 1007;
/// A packet claims to be ours.
pub const CONFCHAIN_KIND_OWN_PACKET: i32 = 1008;
/// A replayed or too old packet.
pub const CONFCHAIN_KIND_REPLAY: i32 = 1009;
/// The user is not a participant.
pub const CONFCHAIN_KIND_PARTICIPANT_NOT_FOUND: i32 = 1010;
/// An invalid argument (null pointer, bad size, ...).
pub const CONFCHAIN_KIND_INVALID_INPUT: i32 = 1011;
/// The group key cannot be recovered from the shared key.
pub const CONFCHAIN_KIND_INVALID_SHARED_KEY: i32 = 1012;
/// A packet signature does not verify.
pub const CONFCHAIN_KIND_WRONG_SIGNATURE: i32 = 1013;
/// A one-to-one call's Diffie-Hellman check failed.
pub const CONFCHAIN_KIND_DH_CHECK: i32 = 1014;
/// A shared secret cannot be computed with a public key.
pub const CONFCHAIN_KIND_SHARED_SECRET: i32 = 1015;
/// We hold no key for the current block (encrypting resumes after a later block).
pub const CONFCHAIN_KIND_KEY_UNAVAILABLE: i32 = 1016;
/// A panic was caught (a bug in confchain).
pub const CONFCHAIN_KIND_PANIC: i32 = 1017;
/// The call was closed (left, removed, ended, failed closed or dropped): it and every media handle
/// taken from it refuse to encrypt, decrypt or build.
pub const CONFCHAIN_KIND_CALL_CLOSED: i32 = 1018;
/// A media frame dropped on send: every H.264 encryption (`CONFCHAIN_FRAME_MAX_ATTEMPTS`) put a
/// NAL start code in the ciphertext (`FRAME__START_CODE`).
pub const CONFCHAIN_KIND_FRAME_START_CODE: i32 = 1019;
/// A media frame dropped on receive: its plaintext is empty (`FRAME__EMPTY`; tgcalls drops it).
pub const CONFCHAIN_KIND_FRAME_EMPTY: i32 = 1020;
/// A session's outbox holds its most undelivered messages: the message was refused (send it again
/// later).
pub const CONFCHAIN_KIND_OUTBOX_FULL: i32 = 1021;
/// A media frame dropped on receive: its RTP SSRC maps to no member (not known yet, or stale;
/// `FRAME__UNKNOWN_SOURCE`).
pub const CONFCHAIN_KIND_FRAME_UNKNOWN_SOURCE: i32 = 1022;
/// A session call made in a state that does not allow it (`SESSION__WRONG_STATE`: e.g. sending a
/// message outside the call, joining while in it).
pub const CONFCHAIN_KIND_SESSION_WRONG_STATE: i32 = 1023;

thread_local! {
    static LAST_ERROR: RefCell<(i32, String)> = const { RefCell::new((0, String::new())) };
}

/// The C constant of an error kind.
pub(crate) fn kind_constant(kind: ErrorKind) -> i32 {
    use ErrorKind::*;
    match kind {
        Parse => CONFCHAIN_KIND_PARSE,
        NotFromServer => CONFCHAIN_KIND_NOT_FROM_SERVER,
        UnknownPublicKey => CONFCHAIN_KIND_UNKNOWN_PUBLIC_KEY,
        SharedKeyAlreadySet => CONFCHAIN_KIND_SHARED_KEY_ALREADY_SET,
        LimitExceeded => CONFCHAIN_KIND_LIMIT_EXCEEDED,
        Decrypt => CONFCHAIN_KIND_DECRYPT,
        InvalidPacket => CONFCHAIN_KIND_INVALID_PACKET,
        OwnPacket => CONFCHAIN_KIND_OWN_PACKET,
        Replay => CONFCHAIN_KIND_REPLAY,
        ParticipantNotFound => CONFCHAIN_KIND_PARTICIPANT_NOT_FOUND,
        InvalidInput => CONFCHAIN_KIND_INVALID_INPUT,
        InvalidSharedKey => CONFCHAIN_KIND_INVALID_SHARED_KEY,
        WrongSignature => CONFCHAIN_KIND_WRONG_SIGNATURE,
        DhCheck => CONFCHAIN_KIND_DH_CHECK,
        SharedSecret => CONFCHAIN_KIND_SHARED_SECRET,
        KeyUnavailable => CONFCHAIN_KIND_KEY_UNAVAILABLE,
        CallClosed => CONFCHAIN_KIND_CALL_CLOSED,
        FrameStartCode => CONFCHAIN_KIND_FRAME_START_CODE,
        FrameEmpty => CONFCHAIN_KIND_FRAME_EMPTY,
        OutboxFull => CONFCHAIN_KIND_OUTBOX_FULL,
        FrameUnknownSource => CONFCHAIN_KIND_FRAME_UNKNOWN_SOURCE,
        WrongState => CONFCHAIN_KIND_SESSION_WRONG_STATE,
        coded => coded.numeric_code(),
    }
}

pub(crate) fn fail(code: i32, kind: i32, message: String) -> i32 {
    LAST_ERROR.with(|e| *e.borrow_mut() = (kind, message));
    code
}

pub(crate) fn from_error(e: Error) -> i32 {
    fail(e.numeric_code(), kind_constant(e.kind()), e.to_string())
}

pub(crate) fn invalid(what: &str) -> i32 {
    fail(CONFCHAIN_UNKNOWN_ERROR, CONFCHAIN_KIND_INVALID_INPUT, format!("invalid input: {what}"))
}

/// Runs `f`, turning errors and panics into codes.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), i32>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CONFCHAIN_OK,
        Ok(Err(code)) => code,
        Err(_) => fail(CONFCHAIN_UNKNOWN_ERROR, CONFCHAIN_KIND_PANIC, "internal panic".into()),
    }
}

pub(crate) trait OrCode<T> {
    /// The error as a code (and the thread's last error).
    fn or_code(self) -> Result<T, i32>;
}

impl<T> OrCode<T> for engine::Result<T> {
    fn or_code(self) -> Result<T, i32> {
        self.map_err(from_error)
    }
}

/// Copies the calling thread's last error message (UTF-8, NUL-terminated, truncated to `cap`)
/// into `buf`; returns the full message length (without NUL).
#[no_mangle]
pub unsafe extern "C" fn confchain_last_error(buf: *mut u8, cap: usize) -> usize {
    LAST_ERROR.with(|e| {
        let e = &e.borrow().1;
        if !buf.is_null() && cap > 0 {
            let n = e.len().min(cap - 1);
            ptr::copy_nonoverlapping(e.as_ptr(), buf, n);
            *buf.add(n) = 0;
        }
        e.len()
    })
}

/// The kind of the calling thread's last error: its numeric code for coded errors (204, 300, ...),
/// else one of the `CONFCHAIN_KIND_*` constants; 0 before any error.
#[no_mangle]
pub extern "C" fn confchain_last_error_kind() -> i32 {
    LAST_ERROR.with(|e| e.borrow().0)
}

/// The library version, e.g. "0.2.0" (static, never freed).
#[no_mangle]
pub extern "C" fn confchain_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The name of a numeric error code or error kind (`INVALID_BLOCK__HEIGHT_MISMATCH` for 204,
/// `REPLAY` for `CONFCHAIN_KIND_REPLAY`); static, never freed.
#[no_mangle]
pub extern "C" fn confchain_error_name(code: i32) -> *const std::ffi::c_char {
    let name: &'static std::ffi::CStr = match code {
        0 => c"OK",
        100 => c"UNKNOWN_ERROR",
        200 => c"INVALID_BLOCK",
        201 => c"INVALID_BLOCK__NO_CHANGES",
        202 => c"INVALID_BLOCK__INVALID_SIGNATURE",
        203 => c"INVALID_BLOCK__HASH_MISMATCH",
        204 => c"INVALID_BLOCK__HEIGHT_MISMATCH",
        205 => c"INVALID_BLOCK__INVALID_STATE_PROOF__GROUP",
        206 => c"INVALID_BLOCK__INVALID_STATE_PROOF__SECRET",
        207 => c"INVALID_BLOCK__NO_PERMISSIONS",
        208 => c"INVALID_BLOCK__INVALID_GROUP_STATE",
        209 => c"INVALID_BLOCK__INVALID_SHARED_SECRET",
        300 => c"INVALID_CALL_GROUP_STATE__NOT_PARTICIPANT",
        301 => c"INVALID_CALL_GROUP_STATE__WRONG_USER_ID",
        400 => c"DECRYPT__UNKNOWN_EPOCH",
        401 => c"ENCRYPT__UNKNOWN_EPOCH",
        500 => c"INVALID_BROADCAST__IN_FUTURE",
        501 => c"INVALID_BROADCAST__NOT_IN_COMMIT",
        502 => c"INVALID_BROADCAST__NOT_IN_REVEAL",
        503 => c"INVALID_BROADCAST__UNKNOWN_USER_ID",
        504 => c"INVALID_BROADCAST__ALREADY_APPLIED",
        505 => c"INVALID_BROADCAST__INVALID_REVEAL",
        506 => c"INVALID_BROADCAST__INVALID_BLOCK_HASH",
        600 => c"INVALID_CALL_CHANNEL_ID",
        601 => c"CALL_FAILED",
        602 => c"CALL_KEY_ALREADY_USED",
        1001 => c"PARSE",
        1002 => c"NOT_FROM_SERVER",
        1003 => c"UNKNOWN_PUBLIC_KEY",
        1004 => c"SHARED_KEY_ALREADY_SET",
        1005 => c"LIMIT_EXCEEDED",
        1006 => c"DECRYPT",
        1007 => c"INVALID_PACKET",
        1008 => c"OWN_PACKET",
        1009 => c"REPLAY",
        1010 => c"PARTICIPANT_NOT_FOUND",
        1011 => c"INVALID_INPUT",
        1012 => c"INVALID_SHARED_KEY",
        1013 => c"WRONG_SIGNATURE",
        1014 => c"DH_CHECK",
        1015 => c"SHARED_SECRET",
        1016 => c"KEY_UNAVAILABLE",
        1017 => c"PANIC",
        1018 => c"CALL_CLOSED",
        1019 => c"FRAME__START_CODE",
        1020 => c"FRAME__EMPTY",
        1021 => c"OUTBOX_FULL",
        1022 => c"FRAME__UNKNOWN_SOURCE",
        1023 => c"SESSION__WRONG_STATE",
        _ => c"UNKNOWN_ERROR",
    };
    name.as_ptr()
}
