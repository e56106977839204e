//! One participant's call: blocks, packets, messages, verification, events and timers.

use engine::{build_zero_block, Call, CallEvent, GroupParticipant, GroupState, Permissions, UnverifiedTip};

use crate::error::{guard, invalid, kind_constant, OrCode};
use crate::keys::{confchain_private_key, confchain_rng};
use crate::memory::{confchain_bytes, free_handle, handle, handle_mut, input, list, out, to_bytes};

// Events (`confchain_event.kind`).
/// A block passed the chain rules and was applied.
pub const CONFCHAIN_EVENT_BLOCK_APPLIED: i32 = 1;
/// The block at `height` removed us.
pub const CONFCHAIN_EVENT_REMOVED: i32 = 2;
/// The block at `height` lists us but our key cannot be read (`error_kind` says why).
pub const CONFCHAIN_EVENT_KEY_UNAVAILABLE: i32 = 3;
/// The epoch of the block at `height` was forgotten.
pub const CONFCHAIN_EVENT_EPOCH_EXPIRED: i32 = 4;
/// Emoji verification completed for the block at `height`.
pub const CONFCHAIN_EVENT_VERIFICATION_DONE: i32 = 5;
/// `confchain_call_resync` adopted the server's tip at `height` on trust (not verified).
pub const CONFCHAIN_EVENT_TIP_ADOPTED: i32 = 6;

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

/// One participant's call.
pub struct confchain_call(pub(crate) Call);

pub(crate) unsafe fn state(
    participants: *const confchain_participant,
    n: usize,
    external_permissions: i32,
) -> Result<GroupState, i32> {
    let list = list(participants, n, "participants")?;
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
        let out_block = out(out_block)?;
        let state = state(participants, participants_len, external_permissions)?;
        let block = build_zero_block(state, &handle(key)?.0, &mut handle_mut(rng)?.0).or_code()?;
        *out_block = to_bytes(block.into_bytes());
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
        let out_block = out(out_block)?;
        let tip = UnverifiedTip::from_server_block(input(previous_block, previous_block_len)?).or_code()?;
        let me = state(handle(self_participant)?, 1, 0)?.participants.remove(0);
        let block = tip.build_self_add(me, &handle(key)?.0, &mut handle_mut(rng)?.0).or_code()?;
        *out_block = to_bytes(block.into_bytes());
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
        let out_call = out(out_call)?;
        let block = input(last_block, last_block_len)?;
        let call = Call::new(user_id, handle(key)?.0.clone(), block, &mut handle_mut(rng)?.0).or_code()?;
        *out_call = Box::into_raw(Box::new(confchain_call(call)));
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
        let out_height = out(out_height)?;
        *out_height = handle(call)?.0.height();
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
        let out_count = out(out_count)?;
        *out_count = handle(call)?.0.participants().len();
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
        let out_participant = out(out_participant)?;
        let p = handle(call)?.0.participants().get(index).ok_or_else(|| invalid("participant index"))?;
        *out_participant = confchain_participant {
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
        let out_block = out(out_block)?;
        let state = state(participants, participants_len, external_permissions)?;
        let block = handle(call)?.0.build_change_state(state, &mut handle_mut(rng)?.0).or_code()?;
        *out_block = to_bytes(block.into_bytes());
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
        let out_packet = out(out_packet)?;
        let data = input(data, data_len)?;
        let call = handle_mut(call)?;
        let packet = call.0.encrypt(channel_id, data, clear_prefix_len, now_ms, &mut handle_mut(rng)?.0).or_code()?;
        *out_packet = to_bytes(packet);
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
        let out_data = out(out_data)?;
        let packet = input(packet, packet_len)?;
        let data = handle_mut(call)?.0.decrypt(user_id, packet, now_ms).or_code()?;
        *out_data = to_bytes(data);
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
        let out_state = out(out_state)?;
        let call = &handle(call)?.0;
        let result = call.verification_result();
        *out_state = confchain_verification_state {
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
        let out_text = out(out_text)?;
        let text = handle(call)?.0.emojis().map(|e| e.concat()).unwrap_or_default();
        *out_text = to_bytes(text.into_bytes());
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
        let out_text = out(out_text)?;
        let words = handle(call)?.0.verification_words().join(" ");
        *out_text = to_bytes(words.into_bytes());
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
        let out_text = out(out_text)?;
        let bytes = input(block, block_len)?;
        let engine::Object::Block(block) = engine::decode_any(bytes).or_code()?.1 else {
            return Err(invalid("a broadcast, not a block"));
        };
        let ids: Vec<String> = UnverifiedTip::from_block(block.clone())
            .map(|c| c.participants().iter().map(|p| format!("{}(flags={})", p.user_id, p.flags.bits())).collect())
            .unwrap_or_default();
        let text = format!(
            "Block(height={}, hash={}, changes={}, participants=[{}])",
            block.height,
            block.hash().iter().map(|b| format!("{b:02x}")).collect::<String>(),
            block.changes.len(),
            ids.join(", ")
        );
        *out_text = to_bytes(text.into_bytes());
        Ok(())
    })
}

/// A readable description of a call (call_describe).
#[no_mangle]
pub unsafe extern "C" fn confchain_call_describe(call: *const confchain_call, out_text: *mut confchain_bytes) -> i32 {
    guard(|| {
        let out_text = out(out_text)?;
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
        *out_text = to_bytes(text.into_bytes());
        Ok(())
    })
}

/// Adopts the server's last block in place, trusting it as creating a call does, keeping our key,
/// sequence numbers and replay windows (`CONFCHAIN_EVENT_TIP_ADOPTED`; a block that directly
/// follows ours is checked by the rules instead). An explicit decision, never the answer to a
/// refused block; see SPEC.md §8.1.
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
        let tip = UnverifiedTip::from_server_block(block).or_code()?;
        handle_mut(call)?.0.resync(tip, now_ms, &mut handle_mut(rng)?.0).or_code()
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
        let out_member = out(out_member)?;
        let out_has_key = out(out_has_key)?;
        let c = &handle(call)?.0;
        *out_member = u8::from(c.is_member());
        *out_has_key = u8::from(c.has_current_key());
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
            Some(CallEvent::BlockApplied { height }) => {
                confchain_event { kind: CONFCHAIN_EVENT_BLOCK_APPLIED, height, error_kind: 0 }
            }
            Some(CallEvent::Removed { height }) => {
                confchain_event { kind: CONFCHAIN_EVENT_REMOVED, height, error_kind: 0 }
            }
            Some(CallEvent::KeyUnavailable { height, error }) => confchain_event {
                kind: CONFCHAIN_EVENT_KEY_UNAVAILABLE,
                height,
                error_kind: kind_constant(error.kind()),
            },
            Some(CallEvent::EpochExpired { height }) => {
                confchain_event { kind: CONFCHAIN_EVENT_EPOCH_EXPIRED, height, error_kind: 0 }
            }
            Some(CallEvent::VerificationDone { result }) => {
                confchain_event { kind: CONFCHAIN_EVENT_VERIFICATION_DONE, height: result.height, error_kind: 0 }
            }
            Some(CallEvent::TipAdopted { height }) => {
                confchain_event { kind: CONFCHAIN_EVENT_TIP_ADOPTED, height, error_kind: 0 }
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
        let out_has = out(out_has)?;
        let out_at_ms = out(out_at_ms)?;
        let at = handle(call)?.0.poll_timeout();
        *out_has = u8::from(at.is_some());
        *out_at_ms = at.unwrap_or(0);
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
        let out_message = out(out_message)?;
        let text = std::str::from_utf8(input(json, json_len)?).map_err(|_| invalid("message is not UTF-8"))?;
        let m = handle_mut(call)?.0.encrypt_message(text, now_ms, &mut handle_mut(rng)?.0).or_code()?;
        *out_message = to_bytes(m);
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
        let out_json = out(out_json)?;
        let m = input(message, message_len)?;
        let text = handle_mut(call)?.0.decrypt_message(user_id, m, now_ms).or_code()?;
        *out_json = to_bytes(text.into_bytes());
        Ok(())
    })
}
