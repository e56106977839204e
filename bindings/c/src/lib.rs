//! C ABI of confchain, mirroring the call section of the reference's `e2e_api.h`.
//!
//! Conventions (see `include/confchain.h`):
//! * Every function returns `int32_t`: 0 on success, else the reference's numeric error code
//!   (e.g. 204 for `INVALID_BLOCK__HEIGHT_MISMATCH`; 100 `UNKNOWN_ERROR` for every error the
//!   reference reports without a code). `confchain_last_error` copies the message of the calling
//!   thread's last error and `confchain_last_error_kind` its finer kind (`CONFCHAIN_KIND_REPLAY`,
//!   `CONFCHAIN_KIND_PARSE`, ...), which tells apart what the numeric code cannot.
//! * Thread safety: handles are not internally locked. A handle may be used from any thread, but
//!   not from two threads at once (guard it with a mutex, or give each thread its own); distinct
//!   handles are independent. The last error is per thread.
//! * Inputs are `(pointer, length)` pairs and stay owned by the caller. Outputs of variable size are
//!   `confchain_bytes`, allocated here and released with `confchain_bytes_free`; handles are
//!   released with their `_free` function. Null handles and pointers are refused (kind
//!   `CONFCHAIN_KIND_INVALID_INPUT`).
//! * Time is passed as milliseconds of the caller's monotonic clock; randomness comes from a
//!   `confchain_rng` the caller seeds with 32 bytes from its own CSPRNG. confchain itself never
//!   reads a clock or OS randomness.
//! * No panic crosses the boundary: every entry point catches unwinding and reports code 100.
//!
//! This crate is the one place where confchain uses `unsafe`: to read the caller's pointers.
#![allow(clippy::missing_safety_doc, non_camel_case_types)]

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::slice;

use engine::p2p::{Callee, Caller, DhConfig, DhKey, PrimeCache};
use engine::{
    build_zero_block, Call, Chain, Error, ErrorKind, Event, GroupParticipant, GroupState, Permissions, PrivateKey,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

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

// Events (`confchain_event.kind`).
/// A block was applied (or adopted by resync).
pub const CONFCHAIN_EVENT_BLOCK_APPLIED: i32 = 1;
/// The block at `height` removed us.
pub const CONFCHAIN_EVENT_REMOVED: i32 = 2;
/// The block at `height` lists us but our key cannot be read (`error_kind` says why).
pub const CONFCHAIN_EVENT_KEY_UNAVAILABLE: i32 = 3;
/// The epoch of the block at `height` was forgotten.
pub const CONFCHAIN_EVENT_EPOCH_EXPIRED: i32 = 4;
/// Emoji verification completed for the block at `height`.
pub const CONFCHAIN_EVENT_VERIFICATION_DONE: i32 = 5;

thread_local! {
    static LAST_ERROR: RefCell<(i32, String)> = const { RefCell::new((0, String::new())) };
}

/// The C constant of an error kind.
fn kind_constant(kind: ErrorKind) -> i32 {
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
        coded => coded.numeric_code(),
    }
}

/// One event of a call (see the `CONFCHAIN_EVENT_*` constants).
#[repr(C)]
pub struct confchain_event {
    /// Which event.
    pub kind: i32,
    /// The block height it is about.
    pub height: i32,
    /// For `CONFCHAIN_EVENT_KEY_UNAVAILABLE`: the error kind of the cause; else 0.
    pub error_kind: i32,
}

/// A one-to-one call, calling side.
pub struct confchain_p2p_caller(Caller);
/// A one-to-one call, called side.
pub struct confchain_p2p_callee(Callee);
/// The agreed key of a one-to-one call.
pub struct confchain_p2p_key(DhKey);

/// Owned bytes returned by confchain; free with `confchain_bytes_free`.
#[repr(C)]
pub struct confchain_bytes {
    /// The bytes (null when `len` is 0).
    pub data: *mut u8,
    /// Their number.
    pub len: usize,
}

/// A participant as the C API sees it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct confchain_participant {
    /// Telegram user id.
    pub user_id: i64,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Permission bits: 1 add users, 2 remove users, 4 set value.
    pub flags: i32,
    /// Protocol version.
    pub version: i32,
}

/// The verification state of the current block.
#[repr(C)]
pub struct confchain_verification_state {
    /// Height of the block being verified.
    pub height: i32,
    /// 1 once every participant has revealed, else 0.
    pub has_emoji_hash: u8,
    /// The emoji hash (valid when `has_emoji_hash`).
    pub emoji_hash: [u8; 64],
}

/// A deterministic CSPRNG (ChaCha20) seeded by the caller.
pub struct confchain_rng(ChaCha20Rng);
/// An Ed25519 private key.
pub struct confchain_private_key(PrivateKey);
/// One participant's call.
pub struct confchain_call(Call);

fn fail(code: i32, kind: i32, message: String) -> i32 {
    LAST_ERROR.with(|e| *e.borrow_mut() = (kind, message));
    code
}

fn from_error(e: Error) -> i32 {
    fail(e.numeric_code(), kind_constant(e.kind()), e.to_string())
}

fn invalid(what: &str) -> i32 {
    fail(CONFCHAIN_UNKNOWN_ERROR, CONFCHAIN_KIND_INVALID_INPUT, format!("invalid input: {what}"))
}

/// Runs `f`, turning errors and panics into codes.
fn guard(f: impl FnOnce() -> Result<(), i32>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CONFCHAIN_OK,
        Ok(Err(code)) => code,
        Err(_) => fail(CONFCHAIN_UNKNOWN_ERROR, CONFCHAIN_KIND_PANIC, "internal panic".into()),
    }
}

trait OrCode<T> {
    fn or_code(self) -> Result<T, i32>;
}

impl<T> OrCode<T> for engine::Result<T> {
    fn or_code(self) -> Result<T, i32> {
        self.map_err(from_error)
    }
}

unsafe fn input<'a>(data: *const u8, len: usize) -> Result<&'a [u8], i32> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(invalid("null input with non-zero length"));
    }
    Ok(slice::from_raw_parts(data, len))
}

unsafe fn handle<'a, T>(p: *const T) -> Result<&'a T, i32> {
    p.as_ref().ok_or_else(|| invalid("null handle"))
}

unsafe fn handle_mut<'a, T>(p: *mut T) -> Result<&'a mut T, i32> {
    p.as_mut().ok_or_else(|| invalid("null handle"))
}

unsafe fn out<'a, T>(p: *mut T) -> Result<&'a mut T, i32> {
    p.as_mut().ok_or_else(|| invalid("null output pointer"))
}

/// Drops a handle made by `Box::into_raw` (null is fine).
unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        drop(Box::from_raw(p));
    }
}

fn to_bytes(v: Vec<u8>) -> confchain_bytes {
    let mut b = v.into_boxed_slice();
    let out = confchain_bytes { data: if b.is_empty() { ptr::null_mut() } else { b.as_mut_ptr() }, len: b.len() };
    std::mem::forget(b);
    out
}

unsafe fn state(
    participants: *const confchain_participant,
    n: usize,
    external_permissions: i32,
) -> Result<GroupState, i32> {
    let list = if n == 0 {
        &[][..]
    } else if participants.is_null() {
        return Err(invalid("null participants"));
    } else {
        slice::from_raw_parts(participants, n)
    };
    Ok(GroupState {
        participants: list
            .iter()
            .map(|p| GroupParticipant {
                user_id: p.user_id,
                public_key: engine::PublicKey::from_bytes(p.public_key),
                flags: Permissions::from_bits_retain(p.flags),
                version: p.version,
            })
            .collect(),
        external_permissions: Permissions::from_bits_retain(external_permissions),
    })
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

/// Frees bytes returned by confchain (a null `data` is fine).
#[no_mangle]
pub unsafe extern "C" fn confchain_bytes_free(bytes: confchain_bytes) {
    if !bytes.data.is_null() {
        drop(Box::from_raw(ptr::slice_from_raw_parts_mut(bytes.data, bytes.len)));
    }
}

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

/// The zero block for createConferenceCall (plain form).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_create_zero_block(
    key: *const confchain_private_key,
    participants: *const confchain_participant,
    participants_len: usize,
    external_permissions: i32,
    rng: *mut confchain_rng,
    out_block: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let state = state(participants, participants_len, external_permissions)?;
        let block = build_zero_block(state, &handle(key)?.0, &mut handle_mut(rng)?.0).or_code()?;
        *out(out_block)? = to_bytes(block.into_bytes());
        Ok(())
    })
}

/// The self-add block for joinGroupCall, built on the last block (server form).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_create_self_add_block(
    key: *const confchain_private_key,
    previous_block: *const u8,
    previous_block_len: usize,
    self_participant: *const confchain_participant,
    rng: *mut confchain_rng,
    out_block: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let chain = Chain::from_server_block(input(previous_block, previous_block_len)?).or_code()?;
        let me = state(handle(self_participant)?, 1, 0)?.participants.remove(0);
        let block = chain.build_self_add(me, &handle(key)?.0, &mut handle_mut(rng)?.0).or_code()?;
        *out(out_block)? = to_bytes(block.into_bytes());
        Ok(())
    })
}

/// Creates a call from the last block (server form). Draws the verification nonce from `rng`.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_create(
    user_id: i64,
    key: *const confchain_private_key,
    last_block: *const u8,
    last_block_len: usize,
    rng: *mut confchain_rng,
    out_call: *mut *mut confchain_call,
) -> i32 {
    guard(|| {
        let block = input(last_block, last_block_len)?;
        let call = Call::new(user_id, handle(key)?.0.clone(), block, &mut handle_mut(rng)?.0).or_code()?;
        *out(out_call)? = Box::into_raw(Box::new(confchain_call(call)));
        Ok(())
    })
}

/// Frees a call.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_free(call: *mut confchain_call) {
    free_handle(call)
}

/// Applies the next block (server form). On error the call is unchanged.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_apply_block(
    call: *mut confchain_call,
    block: *const u8,
    block_len: usize,
    now_ms: u64,
    rng: *mut confchain_rng,
) -> i32 {
    guard(|| {
        let block = input(block, block_len)?;
        handle_mut(call)?.0.apply_block(block, now_ms, &mut handle_mut(rng)?.0).or_code()
    })
}

/// Height of the last applied block.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_get_height(call: *const confchain_call, out_height: *mut i32) -> i32 {
    guard(|| {
        *out(out_height)? = handle(call)?.0.height();
        Ok(())
    })
}

/// Number of participants of the current state (call_get_state).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_get_participant_count(
    call: *const confchain_call,
    out_count: *mut usize,
) -> i32 {
    guard(|| {
        *out(out_count)? = handle(call)?.0.participants().len();
        Ok(())
    })
}

/// The `index`-th participant of the current state.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_get_participant(
    call: *const confchain_call,
    index: usize,
    out_participant: *mut confchain_participant,
) -> i32 {
    guard(|| {
        let p = handle(call)?.0.participants().get(index).ok_or_else(|| invalid("participant index"))?;
        *out(out_participant)? = confchain_participant {
            user_id: p.user_id,
            public_key: *p.public_key.as_bytes(),
            flags: p.flags.bits(),
            version: p.version,
        };
        Ok(())
    })
}

/// A block setting a new state with a fresh key (call_create_change_state_block).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_create_change_state_block(
    call: *const confchain_call,
    participants: *const confchain_participant,
    participants_len: usize,
    external_permissions: i32,
    rng: *mut confchain_rng,
    out_block: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let state = state(participants, participants_len, external_permissions)?;
        let block = handle(call)?.0.build_change_state(state, &mut handle_mut(rng)?.0).or_code()?;
        *out(out_block)? = to_bytes(block.into_bytes());
        Ok(())
    })
}

/// Encrypts a packet; the first `clear_prefix_len` bytes of `data` stay in clear.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_call_encrypt(
    call: *mut confchain_call,
    channel_id: i32,
    data: *const u8,
    data_len: usize,
    clear_prefix_len: usize,
    now_ms: u64,
    rng: *mut confchain_rng,
    out_packet: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let data = input(data, data_len)?;
        let call = handle_mut(call)?;
        let packet = call.0.encrypt(channel_id, data, clear_prefix_len, now_ms, &mut handle_mut(rng)?.0).or_code()?;
        *out(out_packet)? = to_bytes(packet);
        Ok(())
    })
}

/// Decrypts a packet from `user_id` (the channel is the one inside the packet).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_decrypt(
    call: *mut confchain_call,
    user_id: i64,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_data: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let packet = input(packet, packet_len)?;
        let data = handle_mut(call)?.0.decrypt(user_id, packet, now_ms).or_code()?;
        *out(out_data)? = to_bytes(data);
        Ok(())
    })
}

/// Takes one outbound broadcast (plain form, for sendConferenceCallBroadcast); sets `*out_has` to
/// 0 when there is none.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_pull_outbound_message(
    call: *mut confchain_call,
    out_has: *mut u8,
    out_message: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let call = handle_mut(call)?;
        let has = out(out_has)?;
        let message = out(out_message)?;
        let mut pending = call.0.poll_outbound();
        *has = u8::from(!pending.is_empty());
        *message = if pending.is_empty() { to_bytes(vec![]) } else { to_bytes(pending.remove(0)) };
        // Anything else goes back in front of the queue for the next pull.
        call.0.requeue_outbound(pending);
        Ok(())
    })
}

/// Takes a broadcast (server form, sub-chain 1) (call_receive_inbound_message).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_receive_inbound_message(
    call: *mut confchain_call,
    message: *const u8,
    message_len: usize,
) -> i32 {
    guard(|| {
        let message = input(message, message_len)?;
        handle_mut(call)?.0.receive_broadcast(message).or_code()
    })
}

/// The verification state of the current block.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_get_verification_state(
    call: *const confchain_call,
    out_state: *mut confchain_verification_state,
) -> i32 {
    guard(|| {
        let call = &handle(call)?.0;
        let result = call.verification_result();
        *out(out_state)? = confchain_verification_state {
            height: call.height(),
            has_emoji_hash: u8::from(result.is_some()),
            emoji_hash: result.map(|r| r.emoji_hash).unwrap_or([0; 64]),
        };
        Ok(())
    })
}

/// The four emojis (UTF-8, concatenated) once verification completed; empty before.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_get_emojis(call: *const confchain_call, out_text: *mut confchain_bytes) -> i32 {
    guard(|| {
        let text = handle(call)?.0.emojis().map(|e| e.concat()).unwrap_or_default();
        *out(out_text)? = to_bytes(text.into_bytes());
        Ok(())
    })
}

/// The 24 verification words of the current block, separated by spaces (UTF-8).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_get_verification_words(
    call: *const confchain_call,
    out_text: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let words = handle(call)?.0.verification_words().join(" ");
        *out(out_text)? = to_bytes(words.into_bytes());
        Ok(())
    })
}

/// A readable description of a block (server or plain form) (call_describe_block).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_describe_block(
    block: *const u8,
    block_len: usize,
    out_text: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let bytes = input(block, block_len)?;
        let engine::Object::Block(block) = engine::decode_any(bytes).or_code()?.1 else {
            return Err(invalid("a broadcast, not a block"));
        };
        let ids: Vec<String> = Chain::from_block(block.clone())
            .map(|c| c.participants().iter().map(|p| format!("{}(flags={})", p.user_id, p.flags.bits())).collect())
            .unwrap_or_default();
        let text = format!(
            "Block(height={}, hash={}, changes={}, participants=[{}])",
            block.height,
            block.hash().iter().map(|b| format!("{b:02x}")).collect::<String>(),
            block.changes.len(),
            ids.join(", ")
        );
        *out(out_text)? = to_bytes(text.into_bytes());
        Ok(())
    })
}

/// A readable description of a call (call_describe).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_describe(call: *const confchain_call, out_text: *mut confchain_bytes) -> i32 {
    guard(|| {
        let c = &handle(call)?.0;
        let text = format!(
            "Call(user_id={}, height={}, member={}, epochs={:?}, participants={:?}, key={})",
            c.user_id(),
            c.height(),
            c.is_member(),
            c.active_epochs(),
            c.participants().iter().map(|p| p.user_id).collect::<Vec<_>>(),
            c.key_fingerprint().unwrap_or_default()
        );
        *out(out_text)? = to_bytes(text.into_bytes());
        Ok(())
    })
}

/// Applies the server's last block in place, keeping our key, sequence numbers and replay windows
/// (after a refused or missed block; see SPEC.md §8.1).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_resync(
    call: *mut confchain_call,
    last_block: *const u8,
    last_block_len: usize,
    now_ms: u64,
    rng: *mut confchain_rng,
) -> i32 {
    guard(|| {
        let block = input(last_block, last_block_len)?;
        handle_mut(call)?.0.resync(block, now_ms, &mut handle_mut(rng)?.0).or_code()
    })
}

/// Whether the last block lists us (1) or removed us (0); and whether we hold its key.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_is_member(
    call: *const confchain_call,
    out_member: *mut u8,
    out_has_key: *mut u8,
) -> i32 {
    guard(|| {
        let c = &handle(call)?.0;
        *out(out_member)? = u8::from(c.is_member());
        *out(out_has_key)? = u8::from(c.has_current_key());
        Ok(())
    })
}

/// Takes the next event; sets `*out_has` to 0 when there is none.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_poll_event(
    call: *mut confchain_call,
    out_has: *mut u8,
    out_event: *mut confchain_event,
) -> i32 {
    guard(|| {
        let call = handle_mut(call)?;
        let (has, slot) = (out(out_has)?, out(out_event)?);
        let event = call.0.poll_event();
        *has = u8::from(event.is_some());
        *slot = match event {
            None => confchain_event { kind: 0, height: 0, error_kind: 0 },
            Some(Event::BlockApplied { height }) => {
                confchain_event { kind: CONFCHAIN_EVENT_BLOCK_APPLIED, height, error_kind: 0 }
            }
            Some(Event::Removed { height }) => confchain_event { kind: CONFCHAIN_EVENT_REMOVED, height, error_kind: 0 },
            Some(Event::KeyUnavailable { height, error }) => confchain_event {
                kind: CONFCHAIN_EVENT_KEY_UNAVAILABLE,
                height,
                error_kind: kind_constant(error.kind()),
            },
            Some(Event::EpochExpired { height }) => {
                confchain_event { kind: CONFCHAIN_EVENT_EPOCH_EXPIRED, height, error_kind: 0 }
            }
            Some(Event::VerificationDone { result }) => {
                confchain_event { kind: CONFCHAIN_EVENT_VERIFICATION_DONE, height: result.height, error_kind: 0 }
            }
            Some(_) => confchain_event { kind: 0, height: 0, error_kind: 0 },
        };
        Ok(())
    })
}

/// The next instant (ms) `confchain_call_handle_timeout` has work; `*out_has` 0 when none.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_poll_timeout(
    call: *const confchain_call,
    out_has: *mut u8,
    out_at_ms: *mut u64,
) -> i32 {
    guard(|| {
        let at = handle(call)?.0.poll_timeout();
        *out(out_has)? = u8::from(at.is_some());
        *out(out_at_ms)? = at.unwrap_or(0);
        Ok(())
    })
}

/// Forgets epochs whose grace period is over at `now_ms`.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_handle_timeout(call: *mut confchain_call, now_ms: u64) -> i32 {
    guard(|| {
        handle_mut(call)?.0.handle_timeout(now_ms);
        Ok(())
    })
}

/// Encrypts a `sendGroupCallEncryptedMessage` payload (UTF-8 JSON text).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_encrypt_message(
    call: *mut confchain_call,
    json: *const u8,
    json_len: usize,
    now_ms: u64,
    rng: *mut confchain_rng,
    out_message: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let text = std::str::from_utf8(input(json, json_len)?).map_err(|_| invalid("message is not UTF-8"))?;
        let m = handle_mut(call)?.0.encrypt_message(text, now_ms, &mut handle_mut(rng)?.0).or_code()?;
        *out(out_message)? = to_bytes(m);
        Ok(())
    })
}

/// Decrypts an encrypted message from `user_id` into its UTF-8 JSON text.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_decrypt_message(
    call: *mut confchain_call,
    user_id: i64,
    message: *const u8,
    message_len: usize,
    now_ms: u64,
    out_json: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let m = input(message, message_len)?;
        let text = handle_mut(call)?.0.decrypt_message(user_id, m, now_ms).or_code()?;
        *out(out_json)? = to_bytes(text.into_bytes());
        Ok(())
    })
}

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
        let config = dh_config(g, input(p, p_len)?)?;
        let caller = Caller::new(config, &mut handle_mut(rng)?.0);
        *out(out_caller)? = Box::into_raw(Box::new(confchain_p2p_caller(caller)));
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
        let c = &handle(caller)?.0;
        *out(out_g_a_hash)? = c.g_a_hash();
        *out(out_g_a)? = to_bytes(c.g_a());
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
        let confirmation = handle(caller)?.0.on_accepted(input(g_b, g_b_len)?).or_code()?;
        *out(out_key)? = Box::into_raw(Box::new(confchain_p2p_key(confirmation.key)));
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
        let config = dh_config(g, input(p, p_len)?)?;
        let hash: [u8; 32] = input(g_a_hash, 32)?.try_into().map_err(|_| invalid("g_a_hash"))?;
        let callee = Callee::new(config, hash, &mut handle_mut(rng)?.0);
        *out(out_callee)? = Box::into_raw(Box::new(confchain_p2p_callee(callee)));
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
        *out(out_g_b)? = to_bytes(handle(callee)?.0.g_b());
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
        let key = handle(callee)?.0.on_confirmed(input(g_a, g_a_len)?, key_fingerprint).or_code()?;
        *out(out_key)? = Box::into_raw(Box::new(confchain_p2p_key(key)));
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
        let k = &handle(key)?.0;
        *out(out_fingerprint)? = k.fingerprint();
        *out(out_emojis)? = to_bytes(k.emojis().concat().into_bytes());
        *out(out_key)? = to_bytes(k.key().expose().to_vec());
        Ok(())
    })
}

/// Frees (and zeroizes) a one-to-one key.
#[no_mangle]
pub unsafe extern "C" fn confchain_p2p_key_free(key: *mut confchain_p2p_key) {
    free_handle(key)
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
        _ => c"UNKNOWN_ERROR",
    };
    name.as_ptr()
}

// ---- the session (a sans-IO client over the phone.* API) and the server model ----

use engine::server::Server;
use engine::session::{Request, Response, Session, SessionConfig, SessionEvent, SessionState, SubChain, Update};

/// `phone.getGroupCallChainBlocks(sub_chain, offset, limit)`.
pub const CONFCHAIN_REQUEST_GET_CHAIN_BLOCKS: i32 = 1;
/// `phone.createConferenceCall(join = has_public_key, public_key, block)`.
pub const CONFCHAIN_REQUEST_CREATE_CONFERENCE: i32 = 2;
/// `phone.joinGroupCall(public_key, block)`.
pub const CONFCHAIN_REQUEST_JOIN: i32 = 3;
/// `phone.deleteConferenceCallParticipants(only_left = !kick, kick, ids, block)`.
pub const CONFCHAIN_REQUEST_DELETE_PARTICIPANTS: i32 = 4;
/// `phone.sendConferenceCallBroadcast(block)`.
pub const CONFCHAIN_REQUEST_SEND_BROADCAST: i32 = 5;
/// `phone.sendGroupCallEncryptedMessage(encrypted_message = data)`.
pub const CONFCHAIN_REQUEST_SEND_ENCRYPTED_MESSAGE: i32 = 6;
/// `phone.leaveGroupCall`.
pub const CONFCHAIN_REQUEST_LEAVE: i32 = 7;

/// Session events (`confchain_session_event.kind`).
pub const CONFCHAIN_SESSION_CREATED: i32 = 1;
/// Joined at `height`.
pub const CONFCHAIN_SESSION_JOINED: i32 = 2;
/// The join failed; `text` says why.
pub const CONFCHAIN_SESSION_JOIN_FAILED: i32 = 3;
/// A block at `height` changed our key; `text` is its fingerprint (empty: no key).
pub const CONFCHAIN_SESSION_KEY_CHANGED: i32 = 4;
/// The participants changed: `user_ids`.
pub const CONFCHAIN_SESSION_PARTICIPANTS_CHANGED: i32 = 5;
/// A verification round started at `height`; `text` holds its 24 words.
pub const CONFCHAIN_SESSION_VERIFICATION_STARTED: i32 = 6;
/// The round at `height` completed; `text` holds the four emojis.
pub const CONFCHAIN_SESSION_VERIFICATION_DONE: i32 = 7;
/// A message from `from_id`; `text` is its JSON.
pub const CONFCHAIN_SESSION_MESSAGE_RECEIVED: i32 = 8;
/// We were removed (`height` -1 when the server told us rather than a block); rejoin with join.
pub const CONFCHAIN_SESSION_REMOVED: i32 = 9;
/// We left.
pub const CONFCHAIN_SESSION_LEFT: i32 = 10;
/// Something to log: `text` (a pushed block refused while the session refetches, a message
/// dropped, a send given up, a block whose key we cannot read).
pub const CONFCHAIN_SESSION_ERROR: i32 = 11;
/// The call ended (`text`: `discarded`, `join_missing` or `call_invalid`); encryption stopped.
pub const CONFCHAIN_SESSION_ENDED: i32 = 12;
/// Failed closed: the server's chain holds a block at `height` our rules refuse (`text` says
/// which rule); the call and its media handles are closed. Only a new join continues.
pub const CONFCHAIN_SESSION_CHAIN_REJECTED: i32 = 13;
/// The call's identity: `user_ids` holds `[id, access_hash]`, `text` the invite link (may be empty).
pub const CONFCHAIN_SESSION_CALL_IDENTITY: i32 = 14;

/// A request to send (see the `CONFCHAIN_REQUEST_*` kinds); free with `confchain_request_free`.
#[repr(C)]
pub struct confchain_request {
    /// Pass it back to `confchain_session_handle_response`.
    pub id: u64,
    /// Which method.
    pub kind: i32,
    /// GET_CHAIN_BLOCKS: 0 (blocks) or 1 (broadcasts).
    pub sub_chain: i32,
    /// GET_CHAIN_BLOCKS: first offset, or -1 for the last block.
    pub offset: i32,
    /// GET_CHAIN_BLOCKS: most blocks.
    pub limit: i32,
    /// CREATE_CONFERENCE (when joining) and JOIN: 1 when `public_key` is set.
    pub has_public_key: u8,
    /// The public key (`int256`).
    pub public_key: [u8; 32],
    /// The block (plain form), the broadcast, or the encrypted message; empty when none.
    pub data: confchain_bytes,
    /// DELETE_PARTICIPANTS: the user ids.
    pub user_ids: *mut i64,
    /// Their number.
    pub user_ids_len: usize,
    /// DELETE_PARTICIPANTS: 1 for a ban (`kick`), 0 for `only_left`.
    pub kick: u8,
}

/// A session event (see the `CONFCHAIN_SESSION_*` kinds); free with `confchain_session_event_free`.
#[repr(C)]
pub struct confchain_session_event {
    /// Which event.
    pub kind: i32,
    /// The block height it is about (-1 when none).
    pub height: i32,
    /// MESSAGE_RECEIVED: the sender.
    pub from_id: i64,
    /// UTF-8 text (see the kinds); empty when none.
    pub text: confchain_bytes,
    /// PARTICIPANTS_CHANGED: the sorted user ids.
    pub user_ids: *mut i64,
    /// Their number.
    pub user_ids_len: usize,
}

/// One conference session.
pub struct confchain_session(Session);
/// A list of updates (a response's, or pushes with their recipients).
pub struct confchain_updates(Vec<(i64, Update)>);
/// The in-memory model of Telegram's server for one conference (a test double).
pub struct confchain_server(Server);

fn ids_out(ids: Vec<i64>) -> (*mut i64, usize) {
    if ids.is_empty() {
        return (ptr::null_mut(), 0);
    }
    let mut b = ids.into_boxed_slice();
    let out = (b.as_mut_ptr(), b.len());
    std::mem::forget(b);
    out
}

unsafe fn ids_free(p: *mut i64, n: usize) {
    if !p.is_null() {
        drop(Box::from_raw(ptr::slice_from_raw_parts_mut(p, n)));
    }
}

fn request_out(id: u64, r: Request) -> confchain_request {
    let mut out = confchain_request {
        id,
        kind: 0,
        sub_chain: 0,
        offset: 0,
        limit: 0,
        has_public_key: 0,
        public_key: [0; 32],
        data: to_bytes(vec![]),
        user_ids: ptr::null_mut(),
        user_ids_len: 0,
        kick: 0,
    };
    let mut key = |k: engine::PublicKey| {
        (out.has_public_key, out.public_key) = (1, *k.as_bytes());
    };
    match r {
        Request::GetChainBlocks { sub_chain, offset, limit } => {
            out.kind = CONFCHAIN_REQUEST_GET_CHAIN_BLOCKS;
            (out.sub_chain, out.offset, out.limit) = (sub_chain.id(), offset, limit);
        }
        Request::CreateConference { public_key, block } => {
            if let Some(k) = public_key {
                key(k);
            }
            out.kind = CONFCHAIN_REQUEST_CREATE_CONFERENCE;
            out.data = to_bytes(block.map(engine::PlainBlock::into_bytes).unwrap_or_default());
        }
        Request::Join { public_key, block } => {
            key(public_key);
            out.kind = CONFCHAIN_REQUEST_JOIN;
            out.data = to_bytes(block.into_bytes());
        }
        Request::DeleteParticipants { user_ids, block, kick } => {
            out.kind = CONFCHAIN_REQUEST_DELETE_PARTICIPANTS;
            out.data = to_bytes(block.into_bytes());
            (out.user_ids, out.user_ids_len) = ids_out(user_ids);
            out.kick = u8::from(kick);
        }
        Request::SendBroadcast { block } => {
            out.kind = CONFCHAIN_REQUEST_SEND_BROADCAST;
            out.data = to_bytes(block);
        }
        Request::SendEncryptedMessage { encrypted_message } => {
            out.kind = CONFCHAIN_REQUEST_SEND_ENCRYPTED_MESSAGE;
            out.data = to_bytes(encrypted_message);
        }
        Request::Leave => out.kind = CONFCHAIN_REQUEST_LEAVE,
        _ => {}
    }
    out
}

/// The typed request a C request describes.
unsafe fn request_in(r: &confchain_request) -> Result<Request, i32> {
    let data = input(r.data.data, r.data.len)?.to_vec();
    let block = || engine::PlainBlock::from_plain_bytes(data.clone()).or_code();
    let key = engine::PublicKey::from_bytes(r.public_key);
    Ok(match r.kind {
        CONFCHAIN_REQUEST_GET_CHAIN_BLOCKS => {
            let sub_chain = if r.sub_chain == 0 { SubChain::Blocks } else { SubChain::Broadcasts };
            Request::GetChainBlocks { sub_chain, offset: r.offset, limit: r.limit }
        }
        CONFCHAIN_REQUEST_CREATE_CONFERENCE if data.is_empty() => {
            Request::CreateConference { public_key: None, block: None }
        }
        CONFCHAIN_REQUEST_CREATE_CONFERENCE => {
            Request::CreateConference { public_key: Some(key), block: Some(block()?) }
        }
        CONFCHAIN_REQUEST_JOIN => Request::Join { public_key: key, block: block()? },
        CONFCHAIN_REQUEST_DELETE_PARTICIPANTS => {
            let ids = if r.user_ids_len == 0 {
                Vec::new()
            } else if r.user_ids.is_null() {
                return Err(invalid("null user_ids"));
            } else {
                slice::from_raw_parts(r.user_ids, r.user_ids_len).to_vec()
            };
            Request::DeleteParticipants { user_ids: ids, block: block()?, kick: r.kick != 0 }
        }
        CONFCHAIN_REQUEST_SEND_BROADCAST => Request::SendBroadcast { block: data },
        CONFCHAIN_REQUEST_SEND_ENCRYPTED_MESSAGE => Request::SendEncryptedMessage { encrypted_message: data },
        CONFCHAIN_REQUEST_LEAVE => Request::Leave,
        _ => return Err(invalid("request kind")),
    })
}

/// Frees what a request owns (its data and user ids); the struct itself is the caller's.
#[no_mangle]
pub unsafe extern "C" fn confchain_request_free(request: *mut confchain_request) {
    if let Some(r) = request.as_mut() {
        confchain_bytes_free(std::mem::replace(&mut r.data, to_bytes(vec![])));
        ids_free(r.user_ids, r.user_ids_len);
        (r.user_ids, r.user_ids_len) = (ptr::null_mut(), 0);
    }
}

/// A session for `user_id` with the default configuration (SPEC.md §15).
#[no_mangle]
pub unsafe extern "C" fn confchain_session_new(user_id: i64, out_session: *mut *mut confchain_session) -> i32 {
    guard(|| {
        let session = Session::new(user_id, SessionConfig::default()).map_err(|_| invalid("configuration"))?;
        *out(out_session)? = Box::into_raw(Box::new(confchain_session(session)));
        Ok(())
    })
}

/// Frees a session (and its call).
#[no_mangle]
pub unsafe extern "C" fn confchain_session_free(session: *mut confchain_session) {
    free_handle(session)
}

/// createConferenceCall: joining at once (`join` 1) or create only.
#[no_mangle]
pub unsafe extern "C" fn confchain_session_create(
    session: *mut confchain_session,
    join: u8,
    now_ms: u64,
    rng: *mut confchain_rng,
) -> i32 {
    guard(|| handle_mut(session)?.0.create(join != 0, now_ms, &mut handle_mut(rng)?.0).or_code())
}

/// Joins (or rejoins) with a new key.
#[no_mangle]
pub unsafe extern "C" fn confchain_session_join(
    session: *mut confchain_session,
    now_ms: u64,
    rng: *mut confchain_rng,
) -> i32 {
    guard(|| handle_mut(session)?.0.join(now_ms, &mut handle_mut(rng)?.0).or_code())
}

/// Leaves the call.
#[no_mangle]
pub unsafe extern "C" fn confchain_session_leave(session: *mut confchain_session, now_ms: u64) -> i32 {
    guard(|| {
        handle_mut(session)?.0.leave(now_ms);
        Ok(())
    })
}

/// Removes participants (`kick` 1: ban; 0: users who left).
#[no_mangle]
pub unsafe extern "C" fn confchain_session_remove(
    session: *mut confchain_session,
    user_ids: *const i64,
    user_ids_len: usize,
    kick: u8,
    now_ms: u64,
    rng: *mut confchain_rng,
) -> i32 {
    guard(|| {
        let ids = if user_ids_len == 0 { &[][..] } else { slice::from_raw_parts(handle(user_ids)?, user_ids_len) };
        handle_mut(session)?.0.remove(ids, kick != 0, now_ms, &mut handle_mut(rng)?.0).or_code()
    })
}

/// Sends a `groupCallMessage` (UTF-8 JSON).
#[no_mangle]
pub unsafe extern "C" fn confchain_session_send_message(
    session: *mut confchain_session,
    json: *const u8,
    json_len: usize,
    now_ms: u64,
    rng: *mut confchain_rng,
) -> i32 {
    guard(|| {
        let text = std::str::from_utf8(input(json, json_len)?).map_err(|_| invalid("message is not UTF-8"))?;
        handle_mut(session)?.0.send_message(text, now_ms, &mut handle_mut(rng)?.0).or_code()
    })
}

/// Takes the next request to send; `*out_has` 0 when none.
#[no_mangle]
pub unsafe extern "C" fn confchain_session_poll_request(
    session: *mut confchain_session,
    out_has: *mut u8,
    out_request: *mut confchain_request,
) -> i32 {
    guard(|| {
        let s = handle_mut(session)?;
        let (has, slot) = (out(out_has)?, out(out_request)?);
        match s.0.poll_request() {
            Some((id, r)) => {
                *has = 1;
                *slot = request_out(id, r);
            }
            None => {
                *has = 0;
                *slot = request_out(0, Request::Leave);
                slot.kind = 0;
            }
        }
        Ok(())
    })
}

/// An empty list of updates.
#[no_mangle]
pub unsafe extern "C" fn confchain_updates_new(out_updates: *mut *mut confchain_updates) -> i32 {
    guard(|| {
        *out(out_updates)? = Box::into_raw(Box::new(confchain_updates(Vec::new())));
        Ok(())
    })
}

/// Frees a list of updates.
#[no_mangle]
pub unsafe extern "C" fn confchain_updates_free(updates: *mut confchain_updates) {
    free_handle(updates)
}

/// Adds an `updateGroupCallChainBlocks(sub_chain, blocks, next_offset)`: `blocks[i]` of
/// `lens[i]` bytes, server form.
#[no_mangle]
pub unsafe extern "C" fn confchain_updates_add_chain_blocks(
    updates: *mut confchain_updates,
    sub_chain: i32,
    blocks: *const *const u8,
    lens: *const usize,
    count: usize,
    next_offset: i32,
) -> i32 {
    guard(|| {
        let mut list = Vec::with_capacity(count);
        if count > 0 {
            let (ptrs, lens) =
                (slice::from_raw_parts(handle(blocks)?, count), slice::from_raw_parts(handle(lens)?, count));
            for (p, n) in ptrs.iter().zip(lens) {
                list.push(input(*p, *n)?.to_vec());
            }
        }
        let update = Update::ChainBlocks { sub_chain_id: sub_chain, blocks: list, next_offset };
        handle_mut(updates)?.0.push((0, update));
        Ok(())
    })
}

/// Adds an `updateGroupCallEncryptedMessage(from_id, encrypted_message)`.
#[no_mangle]
pub unsafe extern "C" fn confchain_updates_add_encrypted_message(
    updates: *mut confchain_updates,
    from_id: i64,
    data: *const u8,
    len: usize,
) -> i32 {
    guard(|| {
        let update = Update::EncryptedMessage { from: from_id, encrypted_message: input(data, len)?.to_vec() };
        handle_mut(updates)?.0.push((0, update));
        Ok(())
    })
}

/// Number of updates in a list, and the recipient of the `index`-th (for the server's pushes).
#[no_mangle]
pub unsafe extern "C" fn confchain_updates_get(
    updates: *const confchain_updates,
    index: usize,
    out_len: *mut usize,
    out_recipient: *mut i64,
) -> i32 {
    guard(|| {
        let u = &handle(updates)?.0;
        *out(out_len)? = u.len();
        *out(out_recipient)? = u.get(index).map_or(0, |(to, _)| *to);
        Ok(())
    })
}

/// Takes the outcome of request `id`: success when `error_len` is 0 (with the `updates` the
/// result carried, NULL for none), else the API error string of `error_len` bytes (e.g.
/// "CONF_WRITE_CHAIN_INVALID", or a transport failure such as "TIMEOUT").
#[no_mangle]
pub unsafe extern "C" fn confchain_session_handle_response(
    session: *mut confchain_session,
    id: u64,
    updates: *const confchain_updates,
    error: *const u8,
    error_len: usize,
    now_ms: u64,
    rng: *mut confchain_rng,
) -> i32 {
    guard(|| {
        let response = if error_len == 0 {
            let list = updates.as_ref().map(|u| u.0.iter().map(|(_, u)| u.clone()).collect()).unwrap_or_default();
            Response::Ok(list)
        } else {
            Response::Error(String::from_utf8_lossy(input(error, error_len)?).into_owned())
        };
        handle_mut(session)?.0.handle_response(id, response, now_ms, &mut handle_mut(rng)?.0);
        Ok(())
    })
}

/// Takes pushed updates: all of `updates`, or with `index` >= 0 only the `index`-th.
#[no_mangle]
pub unsafe extern "C" fn confchain_session_handle_updates(
    session: *mut confchain_session,
    updates: *const confchain_updates,
    index: i64,
    now_ms: u64,
    rng: *mut confchain_rng,
) -> i32 {
    guard(|| {
        let list = &handle(updates)?.0;
        let (s, rng) = (handle_mut(session)?, handle_mut(rng)?);
        let chosen: Vec<&Update> = match usize::try_from(index) {
            Ok(i) => list.get(i).map(|(_, u)| u).into_iter().collect(),
            Err(_) => list.iter().map(|(_, u)| u).collect(),
        };
        for u in chosen {
            s.0.handle_update(u.clone(), now_ms, &mut rng.0);
        }
        Ok(())
    })
}

/// Runs what is due at `now_ms` (polls, retries, epoch expiry).
#[no_mangle]
pub unsafe extern "C" fn confchain_session_handle_timeout(
    session: *mut confchain_session,
    now_ms: u64,
    rng: *mut confchain_rng,
) -> i32 {
    guard(|| {
        handle_mut(session)?.0.handle_timeout(now_ms, &mut handle_mut(rng)?.0);
        Ok(())
    })
}

/// The next instant `confchain_session_handle_timeout` has work; `*out_has` 0 when none.
#[no_mangle]
pub unsafe extern "C" fn confchain_session_poll_timeout(
    session: *const confchain_session,
    out_has: *mut u8,
    out_at_ms: *mut u64,
) -> i32 {
    guard(|| {
        let at = handle(session)?.0.poll_timeout();
        *out(out_has)? = u8::from(at.is_some());
        *out(out_at_ms)? = at.unwrap_or(0);
        Ok(())
    })
}

/// Takes the next session event; `*out_has` 0 when none. Free it with
/// `confchain_session_event_free`.
#[no_mangle]
pub unsafe extern "C" fn confchain_session_poll_event(
    session: *mut confchain_session,
    out_has: *mut u8,
    out_event: *mut confchain_session_event,
) -> i32 {
    guard(|| {
        let s = handle_mut(session)?;
        let (has, slot) = (out(out_has)?, out(out_event)?);
        let event = s.0.poll_event();
        *has = u8::from(event.is_some());
        let mut e = confchain_session_event {
            kind: 0,
            height: -1,
            from_id: 0,
            text: to_bytes(vec![]),
            user_ids: ptr::null_mut(),
            user_ids_len: 0,
        };
        let text = |t: String| to_bytes(t.into_bytes());
        match event {
            None => {}
            Some(SessionEvent::Created { invite_link, .. }) => {
                (e.kind, e.text) = (CONFCHAIN_SESSION_CREATED, text(invite_link.unwrap_or_default()))
            }
            Some(SessionEvent::CallIdentity { call, invite_link }) => {
                (e.kind, e.text) = (CONFCHAIN_SESSION_CALL_IDENTITY, text(invite_link.unwrap_or_default()));
                (e.user_ids, e.user_ids_len) = ids_out(vec![call.id, call.access_hash]);
            }
            Some(SessionEvent::Ended { reason }) => {
                let why = match reason {
                    engine::session::EndReason::Discarded => "discarded",
                    engine::session::EndReason::JoinMissing => "join_missing",
                    engine::session::EndReason::CallInvalid => "call_invalid",
                    _ => "ended",
                };
                (e.kind, e.text) = (CONFCHAIN_SESSION_ENDED, text(why.to_owned()))
            }
            Some(SessionEvent::ChainRejected { height, error }) => {
                (e.kind, e.height, e.text) = (CONFCHAIN_SESSION_CHAIN_REJECTED, height, text(error.to_string()))
            }
            Some(SessionEvent::BlockRefused { height, error }) => {
                (e.kind, e.height, e.text) = (CONFCHAIN_SESSION_ERROR, height, text(format!("block refused: {error}")))
            }
            Some(SessionEvent::KeyUnavailable { height, error }) => {
                (e.kind, e.height, e.text) = (CONFCHAIN_SESSION_ERROR, height, text(format!("no key: {error}")))
            }
            Some(SessionEvent::MessageDropped { from, error }) => {
                (e.kind, e.from_id, e.text) = (CONFCHAIN_SESSION_ERROR, from, text(format!("message dropped: {error}")))
            }
            Some(SessionEvent::SendFailed { kind, reason }) => {
                (e.kind, e.text) = (CONFCHAIN_SESSION_ERROR, text(format!("{kind:?} not sent: {reason:?}")))
            }
            Some(SessionEvent::Joined { height }) => (e.kind, e.height) = (CONFCHAIN_SESSION_JOINED, height),
            Some(SessionEvent::JoinFailed { reason }) => {
                (e.kind, e.text) = (CONFCHAIN_SESSION_JOIN_FAILED, text(format!("{reason:?}")))
            }
            Some(SessionEvent::KeyChanged { height, fingerprint }) => {
                (e.kind, e.height, e.text) =
                    (CONFCHAIN_SESSION_KEY_CHANGED, height, text(fingerprint.unwrap_or_default()))
            }
            Some(SessionEvent::ParticipantsChanged { user_ids }) => {
                e.kind = CONFCHAIN_SESSION_PARTICIPANTS_CHANGED;
                (e.user_ids, e.user_ids_len) = ids_out(user_ids);
            }
            Some(SessionEvent::VerificationStarted { height, words }) => {
                (e.kind, e.height, e.text) = (CONFCHAIN_SESSION_VERIFICATION_STARTED, height, text(words.join(" ")))
            }
            Some(SessionEvent::VerificationDone { height, emojis }) => {
                (e.kind, e.height, e.text) = (CONFCHAIN_SESSION_VERIFICATION_DONE, height, text(emojis.concat()))
            }
            Some(SessionEvent::MessageReceived { from, json }) => {
                (e.kind, e.from_id, e.text) = (CONFCHAIN_SESSION_MESSAGE_RECEIVED, from, text(json))
            }
            Some(SessionEvent::Removed { height }) => {
                (e.kind, e.height) = (CONFCHAIN_SESSION_REMOVED, height.unwrap_or(-1))
            }
            Some(SessionEvent::Left) => e.kind = CONFCHAIN_SESSION_LEFT,
            Some(_) => {}
        }
        *slot = e;
        Ok(())
    })
}

/// Frees what an event owns (its text and user ids).
#[no_mangle]
pub unsafe extern "C" fn confchain_session_event_free(event: *mut confchain_session_event) {
    if let Some(e) = event.as_mut() {
        confchain_bytes_free(std::mem::replace(&mut e.text, to_bytes(vec![])));
        ids_free(e.user_ids, e.user_ids_len);
        (e.user_ids, e.user_ids_len) = (ptr::null_mut(), 0);
    }
}

/// The session's state: 0 idle, 1 joining, 2 joined, 3 resyncing, 4 removed, 5 leaving, 6 left,
/// 7 failed, 8 chain rejected (failed closed), 9 ended; and the height of its call (-1 when none).
#[no_mangle]
pub unsafe extern "C" fn confchain_session_get_state(
    session: *const confchain_session,
    out_state: *mut i32,
    out_height: *mut i32,
) -> i32 {
    guard(|| {
        let s = &handle(session)?.0;
        *out(out_state)? = match s.state() {
            SessionState::Idle => 0,
            SessionState::Joining => 1,
            SessionState::Joined => 2,
            SessionState::Resyncing => 3,
            SessionState::Removed => 4,
            SessionState::Leaving => 5,
            SessionState::Left => 6,
            SessionState::Failed => 7,
            SessionState::ChainRejected => 8,
            SessionState::Ended => 9,
            _ => -1,
        };
        *out(out_height)? = s.call().map_or(-1, Call::height);
        Ok(())
    })
}

fn session_call(s: &mut confchain_session) -> Result<&mut Call, i32> {
    s.0.call_mut().ok_or_else(|| invalid("not in a call"))
}

/// Encrypts a media frame with the session's call (as `confchain_call_encrypt`).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_session_encrypt(
    session: *mut confchain_session,
    channel_id: i32,
    data: *const u8,
    data_len: usize,
    clear_prefix_len: usize,
    now_ms: u64,
    rng: *mut confchain_rng,
    out_packet: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let data = input(data, data_len)?;
        let call = session_call(handle_mut(session)?)?;
        let packet = call.encrypt(channel_id, data, clear_prefix_len, now_ms, &mut handle_mut(rng)?.0).or_code()?;
        *out(out_packet)? = to_bytes(packet);
        Ok(())
    })
}

/// Decrypts a media frame from `user_id` with the session's call (as `confchain_call_decrypt`).
#[no_mangle]
pub unsafe extern "C" fn confchain_session_decrypt(
    session: *mut confchain_session,
    user_id: i64,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_data: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let packet = input(packet, packet_len)?;
        let data = session_call(handle_mut(session)?)?.decrypt(user_id, packet, now_ms).or_code()?;
        *out(out_data)? = to_bytes(data);
        Ok(())
    })
}

/// The four emojis (UTF-8, concatenated) of the session's call once verified; empty before.
#[no_mangle]
pub unsafe extern "C" fn confchain_session_get_emojis(
    session: *const confchain_session,
    out_text: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let text = handle(session)?.0.call().and_then(Call::emojis).map(|e| e.concat()).unwrap_or_default();
        *out(out_text)? = to_bytes(text.into_bytes());
        Ok(())
    })
}

/// The server model: a call that a create starts (`existing` 0) or one created without joining.
#[no_mangle]
pub unsafe extern "C" fn confchain_server_new(existing: u8, out_server: *mut *mut confchain_server) -> i32 {
    guard(|| {
        let server = if existing != 0 { Server::existing() } else { Server::new() };
        *out(out_server)? = Box::into_raw(Box::new(confchain_server(server)));
        Ok(())
    })
}

/// Frees a server model.
#[no_mangle]
pub unsafe extern "C" fn confchain_server_free(server: *mut confchain_server) {
    free_handle(server)
}

/// Handles `request` from `from_user_id`: `*out_response` gets the response's updates (empty on
/// error), `*out_error` the error string (empty on success), `*out_pushes` the updates to deliver
/// with their recipients (`confchain_updates_get`). Free all three.
#[no_mangle]
pub unsafe extern "C" fn confchain_server_handle(
    server: *mut confchain_server,
    from_user_id: i64,
    request: *const confchain_request,
    out_response: *mut *mut confchain_updates,
    out_error: *mut confchain_bytes,
    out_pushes: *mut *mut confchain_updates,
) -> i32 {
    guard(|| {
        let request = request_in(handle(request)?)?;
        let (response, pushes) = handle_mut(server)?.0.handle(from_user_id, &request);
        let (updates, error) = match response {
            Response::Ok(list) => (list.into_iter().map(|u| (0, u)).collect(), String::new()),
            Response::Error(e) => (Vec::new(), e),
        };
        *out(out_response)? = Box::into_raw(Box::new(confchain_updates(updates)));
        *out(out_error)? = to_bytes(error.into_bytes());
        *out(out_pushes)? = Box::into_raw(Box::new(confchain_updates(pushes)));
        Ok(())
    })
}

// ---- media handles (thread-safe) ----

use engine::{MediaDecryptor, MediaEncryptor};

/// Encrypts our frames; safe to call from any thread, concurrently.
pub struct confchain_media_encryptor(MediaEncryptor);
/// Decrypts other members' frames; safe to call from any thread, concurrently.
pub struct confchain_media_decryptor(MediaDecryptor);

thread_local! {
    /// Per-thread scratch buffer: the media path allocates only when a frame is larger than any
    /// before it on this thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Copies `scratch` into the caller's buffer, or reports the size needed.
unsafe fn deliver(scratch: &[u8], out: *mut u8, out_cap: usize, out_len: *mut usize) -> Result<(), i32> {
    *self::out(out_len)? = scratch.len();
    if scratch.len() > out_cap {
        return Err(invalid("output buffer too small (*out_len is the size needed)"));
    }
    if !scratch.is_empty() {
        if out.is_null() {
            return Err(invalid("null output buffer"));
        }
        ptr::copy_nonoverlapping(scratch.as_ptr(), out, scratch.len());
    }
    Ok(())
}

/// The largest packet a frame of `frame_len` bytes can become (15 epochs, largest padding): a
/// buffer this large always fits.
#[no_mangle]
pub extern "C" fn confchain_media_max_packet_size(frame_len: usize) -> usize {
    frame_len.saturating_add(4 + 15 * 64 + 16 + 31 + 8 + 64 + 4)
}

/// A frame encryptor for media threads, sharing `call`'s sequence numbers and seeing its epoch
/// changes at once; its RNG is seeded with 32 bytes from `rng`. Free with
/// `confchain_media_encryptor_free` (it may outlive the call).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_media_encryptor(
    call: *const confchain_call,
    rng: *mut confchain_rng,
    out_encryptor: *mut *mut confchain_media_encryptor,
) -> i32 {
    guard(|| {
        let e = handle(call)?.0.media_encryptor(&mut handle_mut(rng)?.0);
        *out(out_encryptor)? = Box::into_raw(Box::new(confchain_media_encryptor(e)));
        Ok(())
    })
}

/// A frame decryptor for media threads, sharing `call`'s replay windows and epochs.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_media_decryptor(
    call: *const confchain_call,
    out_decryptor: *mut *mut confchain_media_decryptor,
) -> i32 {
    guard(|| {
        let d = handle(call)?.0.media_decryptor();
        *out(out_decryptor)? = Box::into_raw(Box::new(confchain_media_decryptor(d)));
        Ok(())
    })
}

/// Encrypts a frame (the first `clear_prefix_len` bytes stay in clear) into `out` (capacity
/// `out_cap`; `confchain_media_max_packet_size(frame_len)` always fits); `*out_len` gets the
/// packet's size. Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_media_encrypt(
    encryptor: *const confchain_media_encryptor,
    channel_id: i32,
    frame: *const u8,
    frame_len: usize,
    clear_prefix_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let (e, frame) = (handle(encryptor)?, input(frame, frame_len)?);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            e.0.encrypt_into(channel_id, frame, clear_prefix_len, now_ms, &mut s).or_code()?;
            deliver(&s, out_buf, out_cap, out_len)
        })
    })
}

/// Decrypts a frame from `user_id` into `out` (capacity `out_cap`; the packet's length always
/// fits); `*out_len` gets the frame's size. Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_media_decrypt(
    decryptor: *const confchain_media_decryptor,
    user_id: i64,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let (d, packet) = (handle(decryptor)?, input(packet, packet_len)?);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            let result = d.0.decrypt_into(user_id, packet, now_ms, &mut s).or_code();
            let delivered = result.and_then(|()| deliver(&s, out_buf, out_cap, out_len));
            // The decrypted frame does not stay behind in the scratch buffer.
            zeroize::Zeroize::zeroize(&mut *s);
            delivered
        })
    })
}

/// Frees an encryptor.
#[no_mangle]
pub unsafe extern "C" fn confchain_media_encryptor_free(encryptor: *mut confchain_media_encryptor) {
    free_handle(encryptor)
}

/// Frees a decryptor.
#[no_mangle]
pub unsafe extern "C" fn confchain_media_decryptor_free(decryptor: *mut confchain_media_decryptor) {
    free_handle(decryptor)
}
