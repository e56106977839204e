//! The session (a sans-IO client over the phone.* API), its requests, updates and events, and the
//! server model.

use std::ffi::c_char;
use std::ptr;

use engine::Call;

use crate::error::{from_error, guard, invalid, OrCode};
use crate::keys::confchain_rng;
use crate::memory::{
    confchain_bytes, confchain_bytes_free, free_handle, handle, handle_mut, ids_free, ids_out, input, list, out,
    to_bytes,
};

use engine::api::ApiError;
#[cfg(feature = "testkit")]
use engine::server::Server;
use engine::session::{
    EventField, Request, Response, Session, SessionConfig, SessionEvent, SessionState, SubChain, Update,
};

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
/// `phone.getGroupParticipants(call, ids: [], sources, offset: "", limit)`: the SSRCs to look up
/// are in `user_ids` (each 0..=2^32-1, as RTP carries them; the TL `int`s are their low 32 bits).
pub const CONFCHAIN_REQUEST_GET_GROUP_PARTICIPANTS: i32 = 8;

/// Session events (`confchain_session_event.kind`, the core's `EventDescription::code`): the
/// call was created without joining; `user_ids` holds `[id, access_hash]` when the response
/// named the call, `text` the invite link (may be empty).
pub const CONFCHAIN_SESSION_CREATED: i32 = 1;
/// Joined at `height`.
pub const CONFCHAIN_SESSION_JOINED: i32 = 2;
/// The join failed; `text` says why: a stable name, then the detail (`retries_exhausted: 5
/// attempts`, `flood_wait: 100000 s`, `api: GROUPCALL_FORBIDDEN`, `invalid_response: ...`,
/// `unusable_key: user 7`).
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
/// dropped, a send given up (`send_broadcast not sent: api: FLOOD_WAIT_30`), a block whose key
/// we cannot read).
pub const CONFCHAIN_SESSION_ERROR: i32 = 11;
/// The call ended (`text`: `discarded`, `join_missing` or `call_invalid`); encryption stopped.
pub const CONFCHAIN_SESSION_ENDED: i32 = 12;
/// Failed closed: the server's chain holds a block at `height` our rules refuse (`text` says
/// which rule); the call and its media handles are closed. Only a new join continues.
pub const CONFCHAIN_SESSION_CHAIN_REJECTED: i32 = 13;
/// The call's identity: `user_ids` holds `[id, access_hash]`, `text` the invite link (may be empty).
pub const CONFCHAIN_SESSION_CALL_IDENTITY: i32 = 14;
/// The call's epochs black out H.264 video, or will once the block at `height` is the oldest
/// (SPEC §17.6); `text` is "now" or "ahead". The session re-keys it away by itself.
pub const CONFCHAIN_SESSION_VIDEO_BLACKOUT: i32 = 15;
/// The chain holds an entry whose key no one can use (a poisoned self-add): `from_id` is its user
/// id, `height` where it was seen. A member with the remove permission removes it by itself.
pub const CONFCHAIN_SESSION_UNUSABLE_KEY: i32 = 16;
/// An SSRC of the call is now a participant's (SPEC §18): `from_id` is its user id, `text` the
/// media kind and the SSRC (`audio: 1000`; kinds `audio`, `video`, `screencast`,
/// `screencast_audio`).
pub const CONFCHAIN_SESSION_SOURCE_MAPPED: i32 = 17;
/// An SSRC is nobody's any more (its participant left or stopped that media, or the call ended):
/// `from_id` is whose it was, `text` as for SOURCE_MAPPED.
pub const CONFCHAIN_SESSION_SOURCE_UNMAPPED: i32 = 18;
/// Frames came on an SSRC no participant record names and the session gave it up: `text` is the
/// reason and the SSRC (`not_in_call: 1234`; reasons `deadline`, `not_in_call`, `pending_full`).
pub const CONFCHAIN_SESSION_SOURCE_UNRESOLVED: i32 = 19;

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
    /// DELETE_PARTICIPANTS: the user ids; GET_GROUP_PARTICIPANTS: the SSRCs.
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
pub struct confchain_session(pub(crate) Session);
/// A list of updates (a response's, or pushes with their recipients).
pub struct confchain_updates(pub(crate) Vec<(i64, Update)>);
/// The in-memory model of Telegram's server for one conference (a test double; only in a library
/// built with the `testkit` feature, declared when `CONFCHAIN_TESTKIT` is defined).
#[cfg(feature = "testkit")]
pub struct confchain_server(pub(crate) Server);

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
        Request::GetGroupParticipants { sources } => {
            out.kind = CONFCHAIN_REQUEST_GET_GROUP_PARTICIPANTS;
            (out.user_ids, out.user_ids_len) = ids_out(sources.into_iter().map(i64::from).collect());
        }
        _ => {}
    }
    out
}

/// The typed request a C request describes (what the server model takes).
#[cfg(feature = "testkit")]
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
            let ids = list(r.user_ids, r.user_ids_len, "user_ids")?.to_vec();
            Request::DeleteParticipants { user_ids: ids, block: block()?, kick: r.kick != 0 }
        }
        CONFCHAIN_REQUEST_SEND_BROADCAST => Request::SendBroadcast { block: data },
        CONFCHAIN_REQUEST_SEND_ENCRYPTED_MESSAGE => Request::SendEncryptedMessage { encrypted_message: data },
        CONFCHAIN_REQUEST_LEAVE => Request::Leave,
        CONFCHAIN_REQUEST_GET_GROUP_PARTICIPANTS => {
            let ids = list(r.user_ids, r.user_ids_len, "user_ids")?;
            let sources = ids
                .iter()
                .map(|s| u32::try_from(*s).map_err(|_| invalid("user_ids: an SSRC out of range")))
                .collect::<Result<_, _>>()?;
            Request::GetGroupParticipants { sources }
        }
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
    confchain_session_new_with_config(user_id, ptr::null(), 0, out_session)
}

/// One field of a session's configuration (SPEC.md §15), by the name of `SessionConfig`'s field:
/// `{"call_size_limit", 1000}` (the app config's `conference_call_size_limit`), `{"prune_left",
/// 0}` (flags are 0 or 1).
#[repr(C)]
pub struct confchain_config_value {
    /// The field's name, NUL-terminated.
    pub name: *const c_char,
    /// Its value.
    pub value: u64,
}

/// A session for `user_id` with the default configuration changed by `config_len` fields
/// (`config` may be NULL when it is 0). An unknown name or a value out of its field's range fails
/// with `CONFCHAIN_KIND_INVALID_INPUT` and a message naming it; no session is made.
#[no_mangle]
pub unsafe extern "C" fn confchain_session_new_with_config(
    user_id: i64,
    config: *const confchain_config_value,
    config_len: usize,
    out_session: *mut *mut confchain_session,
) -> i32 {
    guard(|| {
        let out_session = out(out_session)?;
        let mut c = SessionConfig::default();
        for field in list(config, config_len, "config")? {
            if field.name.is_null() {
                return Err(invalid("null config name"));
            }
            let name = std::ffi::CStr::from_ptr(field.name).to_str().map_err(|_| invalid("config name: not UTF-8"))?;
            c.set(name, field.value).map_err(from_error)?;
        }
        let session = Session::new(user_id, c).map_err(from_error)?;
        *out_session = Box::into_raw(Box::new(confchain_session(session)));
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
        let ids = list(user_ids, user_ids_len, "user_ids")?;
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
        let out_updates = out(out_updates)?;
        *out_updates = Box::into_raw(Box::new(confchain_updates(Vec::new())));
        Ok(())
    })
}

/// Frees a list of updates.
#[no_mangle]
pub unsafe extern "C" fn confchain_updates_free(updates: *mut confchain_updates) {
    free_handle(updates)
}

/// Adds an `updateGroupCallChainBlocks(sub_chain, blocks, next_offset)`: `blocks[i]` of
/// `lens[i]` bytes, server form. At most `CONFCHAIN_MAX_LIST_LEN` blocks of at most 16 MiB each
/// (the largest block TL can frame); anything larger is refused and the list is unchanged.
/// `sub_chain` is 0 (blocks) or 1 (broadcasts): an update of another sub-chain is none of the
/// session's, and nothing is added (0 is returned).
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
        let updates = handle_mut(updates)?;
        let (ptrs, lens) = (list(blocks, count, "blocks")?, list(lens, count, "lens")?);
        if let Some(n) = lens.iter().find(|n| **n > engine::limits::MAX_BLOCK_SIZE) {
            return Err(invalid(&format!("a block of {n} bytes, at most {}", engine::limits::MAX_BLOCK_SIZE)));
        }
        let blocks = ptrs.iter().zip(lens).map(|(p, n)| Ok(input(*p, *n)?.into())).collect::<Result<_, i32>>()?;
        if let Some(sub_chain) = SubChain::from_id(sub_chain) {
            updates.0.push((0, Update::ChainBlocks { sub_chain, blocks, next_offset }));
        }
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
        let out_len = out(out_len)?;
        let out_recipient = out(out_recipient)?;
        let u = &handle(updates)?.0;
        *out_len = u.len();
        *out_recipient = u.get(index).map_or(0, |(to, _)| *to);
        Ok(())
    })
}

/// Takes the outcome of request `id`: success when `error_len` is 0 (with the `updates` the
/// result carried, NULL for none), else the API error string of `error_len` bytes (e.g.
/// "CONF_WRITE_CHAIN_INVALID", or a transport failure such as "TIMEOUT"; at most 4,096 bytes),
/// sorted here into its kind (`FLOOD_WAIT_30` is a flood wait of 30 s).
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
        } else if error_len > 4096 {
            return Err(invalid(&format!("error string of {error_len} bytes, at most 4096")));
        } else {
            Response::Error(ApiError::parse(&*String::from_utf8_lossy(input(error, error_len)?)))
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
        let out_has = out(out_has)?;
        let out_at_ms = out(out_at_ms)?;
        let at = handle(session)?.0.poll_timeout();
        *out_has = u8::from(at.is_some());
        *out_at_ms = at.unwrap_or(0);
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
        if let Some(d) = event.map(SessionEvent::describe) {
            e.kind = d.code;
            for field in d.fields {
                match field {
                    EventField::Height(h) => e.height = h,
                    EventField::User(u) => e.from_id = u,
                    EventField::UserIds(ids) => (e.user_ids, e.user_ids_len) = ids_out(ids),
                    EventField::Call(c) => (e.user_ids, e.user_ids_len) = ids_out(vec![c.id, c.access_hash]),
                    EventField::Fingerprint(t) | EventField::Text(t) => e.text = text(t),
                    EventField::Words(words) => e.text = text(words.join(" ")),
                    EventField::Emojis(emojis) => e.text = text(emojis.concat()),
                    EventField::Now(now) => e.text = text(if now { "now" } else { "ahead" }.to_owned()),
                    _ => {}
                }
            }
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
        let out_state = out(out_state)?;
        let out_height = out(out_height)?;
        let s = &handle(session)?.0;
        *out_state = match s.state() {
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
        *out_height = s.call().map_or(-1, Call::height);
        Ok(())
    })
}

pub(crate) fn session_call(s: &mut confchain_session) -> Result<&mut Call, i32> {
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
        let out_packet = out(out_packet)?;
        let data = input(data, data_len)?;
        let call = session_call(handle_mut(session)?)?;
        let packet = call.encrypt(channel_id, data, clear_prefix_len, now_ms, &mut handle_mut(rng)?.0).or_code()?;
        *out_packet = to_bytes(packet);
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
        let out_data = out(out_data)?;
        let packet = input(packet, packet_len)?;
        let data = session_call(handle_mut(session)?)?.decrypt(user_id, packet, now_ms).or_code()?;
        *out_data = to_bytes(data);
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
        let out_text = out(out_text)?;
        let text = handle(session)?.0.call().and_then(Call::emojis).map(|e| e.concat()).unwrap_or_default();
        *out_text = to_bytes(text.into_bytes());
        Ok(())
    })
}

/// The server model: a call that a create starts (`existing` 0) or one created without joining.
#[cfg(feature = "testkit")]
#[no_mangle]
pub unsafe extern "C" fn confchain_server_new(existing: u8, out_server: *mut *mut confchain_server) -> i32 {
    guard(|| {
        let out_server = out(out_server)?;
        let server = if existing != 0 { Server::existing() } else { Server::new() };
        *out_server = Box::into_raw(Box::new(confchain_server(server)));
        Ok(())
    })
}

/// Frees a server model.
#[cfg(feature = "testkit")]
#[no_mangle]
pub unsafe extern "C" fn confchain_server_free(server: *mut confchain_server) {
    free_handle(server)
}

/// Handles `request` from `from_user_id`: `*out_response` gets the response's updates (empty on
/// error), `*out_error` the error string (empty on success), `*out_pushes` the updates to deliver
/// with their recipients (`confchain_updates_get`). Free all three.
#[cfg(feature = "testkit")]
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
        let out_response = out(out_response)?;
        let out_error = out(out_error)?;
        let out_pushes = out(out_pushes)?;
        let request = request_in(handle(request)?)?;
        let (response, pushes) = handle_mut(server)?.0.handle(from_user_id, &request);
        let (updates, error) = match response {
            Response::Ok(list) => (list.into_iter().map(|u| (0, u)).collect(), String::new()),
            Response::Error(e) => (Vec::new(), e.to_string()),
        };
        *out_response = Box::into_raw(Box::new(confchain_updates(updates)));
        *out_error = to_bytes(error.into_bytes());
        *out_pushes = Box::into_raw(Box::new(confchain_updates(pushes)));
        Ok(())
    })
}
