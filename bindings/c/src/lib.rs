//! C ABI of confchain, mirroring the call section of the reference's `e2e_api.h`.
//!
//! Conventions (see `include/confchain.h`):
//! * Every function returns `int32_t`: 0 on success, else the reference's numeric error code
//!   (e.g. 204 for `INVALID_BLOCK__HEIGHT_MISMATCH`, 101 for codeless errors, 102 for invalid
//!   arguments). `confchain_last_error` copies the message of the calling thread's last error.
//! * Inputs are `(pointer, length)` pairs and stay owned by the caller. Outputs of variable size are
//!   `confchain_bytes`, allocated here and released with `confchain_bytes_free`; handles are
//!   released with their `_free` function. Null handles and pointers are refused with 102.
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

use engine::chain::{build_zero_block, Chain};
use engine::wire::{GroupParticipant, GroupState};
use engine::{Call, Error, ErrorKind, PrivateKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Success.
pub const CONFCHAIN_OK: i32 = 0;
/// A panic was caught (a bug): `UNKNOWN_ERROR`.
pub const CONFCHAIN_UNKNOWN_ERROR: i32 = 100;
/// An argument is invalid (null pointer, bad size): `INVALID_INPUT`.
pub const CONFCHAIN_INVALID_INPUT: i32 = 102;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

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

fn fail(code: i32, message: String) -> i32 {
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
    code
}

fn from_error(e: Error) -> i32 {
    fail(e.numeric_code(), e.to_string())
}

fn invalid(what: &str) -> i32 {
    fail(CONFCHAIN_INVALID_INPUT, format!("INVALID_INPUT: {what}"))
}

/// Runs `f`, turning errors and panics into codes.
fn guard(f: impl FnOnce() -> Result<(), i32>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CONFCHAIN_OK,
        Ok(Err(code)) => code,
        Err(_) => fail(CONFCHAIN_UNKNOWN_ERROR, "UNKNOWN_ERROR: internal panic".into()),
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
                flags: p.flags,
                version: p.version,
            })
            .collect(),
        external_permissions,
    })
}

/// Copies the calling thread's last error message (UTF-8, NUL-terminated, truncated to `cap`)
/// into `buf`; returns the full message length (without NUL).
#[no_mangle]
pub unsafe extern "C" fn confchain_last_error(buf: *mut u8, cap: usize) -> usize {
    LAST_ERROR.with(|e| {
        let e = e.borrow();
        if !buf.is_null() && cap > 0 {
            let n = e.len().min(cap - 1);
            ptr::copy_nonoverlapping(e.as_ptr(), buf, n);
            *buf.add(n) = 0;
        }
        e.len()
    })
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
        *out(out_block)? = to_bytes(block);
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
        *out(out_block)? = to_bytes(block);
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
            flags: p.flags,
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
        *out(out_block)? = to_bytes(block);
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

/// Decrypts a packet from `user_id`.
#[no_mangle]
pub unsafe extern "C" fn confchain_call_decrypt(
    call: *mut confchain_call,
    user_id: i64,
    channel_id: i32,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_data: *mut confchain_bytes,
) -> i32 {
    guard(|| {
        let packet = input(packet, packet_len)?;
        let data = handle_mut(call)?.0.decrypt(user_id, channel_id, packet, now_ms).or_code()?;
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
        let plain = if engine::wire::is_server_form(bytes) {
            engine::wire::from_server_form(bytes).or_code()?
        } else {
            bytes.to_vec()
        };
        let block = engine::Block::decode(&plain).or_code()?;
        let ids: Vec<String> = Chain::from_block(block.clone())
            .map(|c| c.participants().iter().map(|p| format!("{}(flags={})", p.user_id, p.flags)).collect())
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

/// The name of a numeric error code (`INVALID_BLOCK__HEIGHT_MISMATCH` for 204); static, never freed.
#[no_mangle]
pub extern "C" fn confchain_error_name(code: i32) -> *const std::ffi::c_char {
    let name: &'static std::ffi::CStr = match code {
        0 => c"OK",
        100 => c"UNKNOWN_ERROR",
        101 => c"ANY",
        102 => c"INVALID_INPUT",
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
        _ => c"UNKNOWN_ERROR",
    };
    let _ = ErrorKind::Parse;
    name.as_ptr()
}
