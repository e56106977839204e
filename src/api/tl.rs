//! The API messages in Telegram's TL (layer 228 and later): the `phone.*` functions a session's
//! [`Request`]s become, and the `Updates` / `Bool` / `rpc_error` results they get back.
//!
//! ```text
//!  Request + Context ─▶ encode_request ─▶ function bytes ─▶ (MTProto) ─▶ decode_request   (server)
//!  Vec<Update>       ─▶ encode_updates ─▶ Updates bytes  ─▶ (MTProto) ─▶ decode_result    (client)
//! ```
//!
//! A session's [`Request`] names only what the protocol decides (keys, blocks, offsets); the
//! [`Context`] adds what the application owns: the call (`InputGroupCall`), whom to join as, the
//! media stack's `params` JSON, `random_id`, the media `source`. MTProto libraries serialize the
//! functions with their own generated code; this codec is for applications that speak raw MTProto,
//! for the server model's TL front (`confchain::server::tl`, feature `testkit`) and for tests that check a library's bytes.
//!
//! Decoding is bounded: every length and count is checked against the bytes that remain, nothing
//! recurses, and an unknown constructor is an error, never a panic.

use crate::api::{
    CallIdentity, CallParticipant, MediaSources, ParticipantSources, Request, ServerBlock, SourceGroup, SourceLookup,
    SubChain, Update, VideoSources,
};
use crate::crypto::PublicKey;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::{MAX_GROUP_SOURCES, MAX_LOOKUP_BATCH, MAX_SOURCE_GROUPS};
use crate::tl::{Reader, Writer};
use crate::wire::{capacity, PlainBlock};

/// The smallest encoding of an update this codec reads: `updateGroupCallConnection` with no
/// flags and an empty `dataJSON` (constructor, flags, `dataJSON`, empty `bytes`). A vector of
/// updates reserves no more entries than the bytes left can hold at this size (an entry takes
/// 72 bytes of memory: at most 4.5 times the input, SPEC.md §10).
const MIN_UPDATE_BYTES: usize = 16;
/// The smallest encoding of a block in a vector: an empty TL `bytes`.
const MIN_BLOCK_BYTES: usize = 4;
/// The smallest encoding of a `groupCallParticipant`: constructor, flags, `peerUser`, `date`,
/// `source`.
const MIN_PARTICIPANT_BYTES: usize = 28;

/// Constructor ids of the functions and types this codec reads and writes.
pub mod id {
    /// `phone.getGroupCallChainBlocks`.
    pub const GET_GROUP_CALL_CHAIN_BLOCKS: u32 = 0xee9f88a6;
    /// `phone.createConferenceCall`.
    pub const CREATE_CONFERENCE_CALL: u32 = 0x7d0444bb;
    /// `phone.joinGroupCall`.
    pub const JOIN_GROUP_CALL: u32 = 0x8fb53057;
    /// `phone.deleteConferenceCallParticipants`.
    pub const DELETE_CONFERENCE_CALL_PARTICIPANTS: u32 = 0x8ca60525;
    /// `phone.sendConferenceCallBroadcast`.
    pub const SEND_CONFERENCE_CALL_BROADCAST: u32 = 0xc6701900;
    /// `phone.sendGroupCallEncryptedMessage`.
    pub const SEND_GROUP_CALL_ENCRYPTED_MESSAGE: u32 = 0xe5afa56d;
    /// `phone.leaveGroupCall`.
    pub const LEAVE_GROUP_CALL: u32 = 0x500377f9;
    /// `inputGroupCall`.
    pub const INPUT_GROUP_CALL: u32 = 0xd8aa840f;
    /// `inputGroupCallSlug`.
    pub const INPUT_GROUP_CALL_SLUG: u32 = 0xfe06823f;
    /// `inputGroupCallInviteMessage`.
    pub const INPUT_GROUP_CALL_INVITE_MESSAGE: u32 = 0x8c10603f;
    /// `inputPeerEmpty`.
    pub const INPUT_PEER_EMPTY: u32 = 0x7f3b18ea;
    /// `inputPeerSelf`.
    pub const INPUT_PEER_SELF: u32 = 0x7da07ec9;
    /// `inputPeerChat`.
    pub const INPUT_PEER_CHAT: u32 = 0x35a95cb9;
    /// `inputPeerUser`.
    pub const INPUT_PEER_USER: u32 = 0xdde8a54c;
    /// `inputPeerChannel`.
    pub const INPUT_PEER_CHANNEL: u32 = 0x27bcbbfc;
    /// `peerUser`.
    pub const PEER_USER: u32 = 0x59511722;
    /// `peerChat`.
    pub const PEER_CHAT: u32 = 0x36c6019a;
    /// `peerChannel`.
    pub const PEER_CHANNEL: u32 = 0xa2a5371e;
    /// `dataJSON`.
    pub const DATA_JSON: u32 = 0x7d748d04;
    /// `vector`.
    pub const VECTOR: u32 = 0x1cb5c415;
    /// `boolTrue`.
    pub const BOOL_TRUE: u32 = 0x997275b5;
    /// `boolFalse`.
    pub const BOOL_FALSE: u32 = 0xbc799737;
    /// `rpc_error`.
    pub const RPC_ERROR: u32 = 0x2144ca19;
    /// `updates`.
    pub const UPDATES: u32 = 0x74ae4240;
    /// `updatesCombined`.
    pub const UPDATES_COMBINED: u32 = 0x725b04c3;
    /// `updateShort`.
    pub const UPDATE_SHORT: u32 = 0x78d4dec1;
    /// `updatesTooLong`.
    pub const UPDATES_TOO_LONG: u32 = 0xe317af7e;
    /// `updateGroupCallChainBlocks`.
    pub const UPDATE_GROUP_CALL_CHAIN_BLOCKS: u32 = 0xa477288f;
    /// `updateGroupCallEncryptedMessage`.
    pub const UPDATE_GROUP_CALL_ENCRYPTED_MESSAGE: u32 = 0xc957a766;
    /// `updateGroupCall`.
    pub const UPDATE_GROUP_CALL: u32 = 0x9d2216e0;
    /// `updateGroupCallParticipants`.
    pub const UPDATE_GROUP_CALL_PARTICIPANTS: u32 = 0xf2ebdb4e;
    /// `updateGroupCallConnection`.
    pub const UPDATE_GROUP_CALL_CONNECTION: u32 = 0x0b783982;
    /// `groupCall`.
    pub const GROUP_CALL: u32 = 0xefb2b617;
    /// `groupCallDiscarded`.
    pub const GROUP_CALL_DISCARDED: u32 = 0x7780bcb4;
    /// `groupCallParticipant`.
    pub const GROUP_CALL_PARTICIPANT: u32 = 0x2a3dc7ac;
    /// `groupCallParticipantVideo`.
    pub const GROUP_CALL_PARTICIPANT_VIDEO: u32 = 0x67753ac8;
    /// `groupCallParticipantVideoSourceGroup`.
    pub const GROUP_CALL_PARTICIPANT_VIDEO_SOURCE_GROUP: u32 = 0xdcb118b7;
    /// `phone.getGroupParticipants`.
    pub const GET_GROUP_PARTICIPANTS: u32 = 0xc558d8ab;
    /// `phone.groupParticipants`.
    pub const GROUP_PARTICIPANTS: u32 = 0xf47751b6;
}

/// `InputGroupCall`: how a request names the call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InputGroupCall {
    /// `inputGroupCall(id, access_hash)`: the call's identity, once known.
    Id(CallIdentity),
    /// `inputGroupCallSlug(slug)`: the slug of an invite link (`t.me/call/<slug>`).
    Slug(String),
    /// `inputGroupCallInviteMessage(msg_id)`: the message that invited us.
    InviteMessage(i32),
}

/// `InputPeer`: whom to join as (`join_as`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InputPeer {
    /// `inputPeerSelf`: the user the connection is logged in as (what conference calls use).
    #[default]
    SelfUser,
    /// `inputPeerUser(user_id, access_hash)`.
    User {
        /// `user_id`.
        user_id: i64,
        /// `access_hash`.
        access_hash: i64,
    },
    /// `inputPeerChannel(channel_id, access_hash)`.
    Channel {
        /// `channel_id`.
        channel_id: i64,
        /// `access_hash`.
        access_hash: i64,
    },
    /// `inputPeerChat(chat_id)`.
    Chat {
        /// `chat_id`.
        chat_id: i64,
    },
    /// `inputPeerEmpty`.
    Empty,
}

/// What a function needs beyond the session's [`Request`]: the application's part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The call every function but `createConferenceCall` names.
    pub call: Option<InputGroupCall>,
    /// `joinGroupCall.join_as`.
    pub join_as: InputPeer,
    /// The media stack's `params` JSON (`DataJSON.data`) for `joinGroupCall` and a joining
    /// `createConferenceCall`.
    pub params: String,
    /// `createConferenceCall.random_id` (a fresh random number per new call).
    pub random_id: i32,
    /// `leaveGroupCall.source`: our audio SSRC.
    pub source: i32,
    /// `joinGroupCall.invite_hash` (flags.1).
    pub invite_hash: Option<String>,
    /// `muted` (flags.0) of create and join.
    pub muted: bool,
    /// `video_stopped` (flags.2) of create and join.
    pub video_stopped: bool,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            call: None,
            join_as: InputPeer::SelfUser,
            params: "{}".to_owned(),
            random_id: 0,
            source: 0,
            invite_hash: None,
            muted: false,
            video_stopped: false,
        }
    }
}

/// One update of an `Updates` result, as far as a conference cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlUpdate {
    /// An update for the session, about `call` (check it is yours before feeding it).
    Session {
        /// The call it is about (`updateGroupCall`: the call's own identity).
        call: InputGroupCall,
        /// The update.
        update: Update,
    },
    /// `updateGroupCallConnection(presentation, params)`: for the application's media stack.
    Connection {
        /// `presentation`: the screen-sharing connection.
        presentation: bool,
        /// The transport parameters JSON (`DataJSON.data`).
        params: String,
    },
}

/// The result of a function, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `Updates` (`updates`, `updatesCombined`, `updateShort`, `updatesTooLong`).
    Updates(Vec<TlUpdate>),
    /// `Bool`.
    Bool(bool),
    /// `rpc_error(error_code, error_message)`.
    Error {
        /// `error_code` (400, 403, 420, 500, ...).
        code: i32,
        /// `error_message` (`FLOOD_WAIT_30`, `GROUPCALL_FORBIDDEN`, ...).
        message: String,
    },
    /// `phone.groupParticipants`: the answer of a [`SourceLookup`].
    Participants(GroupParticipants),
}

/// `phone.groupParticipants(count, participants, next_offset, chats, users, version)`, as far as
/// the SSRC table cares: `chats`, `users` and `version`, which follow, are not read (a `User`
/// needs the whole schema; MTProto libraries parse those).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupParticipants {
    /// `count`: the call's participant count.
    pub count: i32,
    /// The participants who are users, with their sources.
    pub participants: Vec<ParticipantSources>,
    /// `next_offset`.
    pub next_offset: String,
}

impl TlUpdate {
    /// The call identity the update names: `updateGroupCall`'s own, or the `inputGroupCall` of
    /// the others; `None` for a slug, an invite message or `updateGroupCallConnection`.
    pub fn call_identity(&self) -> Option<CallIdentity> {
        match self {
            TlUpdate::Session { update: Update::GroupCall { call, .. }, .. } => Some(*call),
            TlUpdate::Session { call: InputGroupCall::Id(call), .. } => Some(*call),
            _ => None,
        }
    }
}

impl Answer {
    /// The first call identity the updates name: what a create's result (or that of a join by
    /// slug or invite message) tells about the call; `None` for `Bool` and `rpc_error`.
    pub fn call_named(&self) -> Option<CallIdentity> {
        match self {
            Answer::Updates(all) => all.iter().find_map(TlUpdate::call_identity),
            _ => None,
        }
    }

    /// The session's [`Response`](crate::api::Response), and the updates it does not take
    /// (`updateGroupCallConnection`). Every [`TlUpdate::Session`] goes into the response whatever
    /// call it names: use [`Answer::into_response_for`] wherever the connection may carry
    /// updates about another call (a user's connection always may). `rpc_error` `-503` (Telegram's
    /// "Timeout": no answer in time) becomes `TIMEOUT`, as the adapters map it.
    pub fn into_response(self) -> (crate::api::Response, Vec<TlUpdate>) {
        self.split(|_| true)
    }

    /// [`Answer::into_response`] for the call `call`: a [`TlUpdate::Session`] about any other
    /// call (or naming it only by slug or invite message) goes with the updates the session does
    /// not take, so that it can neither rename nor end the session's call.
    pub fn into_response_for(self, call: &CallIdentity) -> (crate::api::Response, Vec<TlUpdate>) {
        self.split(|u| u.call_identity() == Some(*call))
    }

    fn split(self, ours: impl Fn(&TlUpdate) -> bool) -> (crate::api::Response, Vec<TlUpdate>) {
        use crate::api::Response;
        match self {
            Answer::Bool(_) => (Response::Ok(Vec::new()), Vec::new()),
            // A lookup's answer: its participants, as an update of the call asked about.
            Answer::Participants(GroupParticipants { participants, .. }) => {
                (Response::Ok(vec![Update::Participants { participants }]), Vec::new())
            }
            Answer::Error { code: -503, .. } => (Response::Error("TIMEOUT".into()), Vec::new()),
            Answer::Error { message, .. } => (Response::Error(message.into()), Vec::new()),
            Answer::Updates(all) => {
                let mut session = Vec::new();
                let mut other = Vec::new();
                for u in all {
                    match u {
                        u if !ours(&u) => other.push(u),
                        TlUpdate::Session { update, .. } => session.push(update),
                        u => other.push(u),
                    }
                }
                (Response::Ok(session), other)
            }
        }
    }
}

fn parse_error(what: &str) -> Error {
    Error::new(ErrorKind::Parse, what)
}

fn write_input_group_call(w: &mut Writer, call: &InputGroupCall) {
    match call {
        InputGroupCall::Id(c) => {
            w.u32(id::INPUT_GROUP_CALL);
            w.i64(c.id);
            w.i64(c.access_hash);
        }
        InputGroupCall::Slug(s) => {
            w.u32(id::INPUT_GROUP_CALL_SLUG);
            w.bytes(s.as_bytes());
        }
        InputGroupCall::InviteMessage(m) => {
            w.u32(id::INPUT_GROUP_CALL_INVITE_MESSAGE);
            w.i32(*m);
        }
    }
}

fn read_input_group_call(r: &mut Reader<'_>) -> Result<InputGroupCall> {
    match r.u32()? {
        id::INPUT_GROUP_CALL => Ok(InputGroupCall::Id(CallIdentity { id: r.i64()?, access_hash: r.i64()? })),
        id::INPUT_GROUP_CALL_SLUG => Ok(InputGroupCall::Slug(string(r)?)),
        id::INPUT_GROUP_CALL_INVITE_MESSAGE => Ok(InputGroupCall::InviteMessage(r.i32()?)),
        _ => Err(r.error("Unknown InputGroupCall constructor")),
    }
}

fn write_input_peer(w: &mut Writer, peer: &InputPeer) {
    match *peer {
        InputPeer::SelfUser => w.u32(id::INPUT_PEER_SELF),
        InputPeer::Empty => w.u32(id::INPUT_PEER_EMPTY),
        InputPeer::Chat { chat_id } => {
            w.u32(id::INPUT_PEER_CHAT);
            w.i64(chat_id);
        }
        InputPeer::User { user_id, access_hash } => {
            w.u32(id::INPUT_PEER_USER);
            w.i64(user_id);
            w.i64(access_hash);
        }
        InputPeer::Channel { channel_id, access_hash } => {
            w.u32(id::INPUT_PEER_CHANNEL);
            w.i64(channel_id);
            w.i64(access_hash);
        }
    }
}

fn read_input_peer(r: &mut Reader<'_>) -> Result<InputPeer> {
    match r.u32()? {
        id::INPUT_PEER_SELF => Ok(InputPeer::SelfUser),
        id::INPUT_PEER_EMPTY => Ok(InputPeer::Empty),
        id::INPUT_PEER_CHAT => Ok(InputPeer::Chat { chat_id: r.i64()? }),
        id::INPUT_PEER_USER => Ok(InputPeer::User { user_id: r.i64()?, access_hash: r.i64()? }),
        id::INPUT_PEER_CHANNEL => Ok(InputPeer::Channel { channel_id: r.i64()?, access_hash: r.i64()? }),
        _ => Err(r.error("Unknown InputPeer constructor")),
    }
}

/// A `Peer`: (is a user, id).
fn read_peer(r: &mut Reader<'_>) -> Result<(bool, i64)> {
    match r.u32()? {
        id::PEER_USER => Ok((true, r.i64()?)),
        id::PEER_CHAT | id::PEER_CHANNEL => Ok((false, r.i64()?)),
        _ => Err(r.error("Unknown Peer constructor")),
    }
}

fn string(r: &mut Reader<'_>) -> Result<String> {
    Ok(String::from_utf8_lossy(r.bytes()?).into_owned())
}

fn write_data_json(w: &mut Writer, data: &str) {
    w.u32(id::DATA_JSON);
    w.bytes(data.as_bytes());
}

fn read_data_json(r: &mut Reader<'_>) -> Result<String> {
    r.expect_constructor(id::DATA_JSON)?;
    string(r)
}

fn block_arg(r: &mut Reader<'_>) -> Result<PlainBlock> {
    let bytes = r.bytes()?;
    PlainBlock::from_plain_bytes(bytes.to_vec()).map_err(|_| Error::new(ErrorKind::InvalidInput, "BLOCK_INVALID"))
}

fn need_call(ctx: &Context) -> Result<&InputGroupCall> {
    ctx.call.as_ref().ok_or_else(|| Error::new(ErrorKind::InvalidInput, "the context names no call"))
}

/// The function bytes of `request` (the boxed `phone.*` method), with the application's part
/// from `ctx`. Fails only when `ctx.call` is missing for a function that names the call.
pub fn encode_request(request: &Request, ctx: &Context) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    let media_flags = u32::from(ctx.muted) | u32::from(ctx.video_stopped) << 2;
    match request {
        Request::GetChainBlocks { sub_chain, offset, limit } => {
            w.u32(id::GET_GROUP_CALL_CHAIN_BLOCKS);
            write_input_group_call(&mut w, need_call(ctx)?);
            w.i32(sub_chain.id());
            w.i32(*offset);
            w.i32(*limit);
        }
        Request::CreateConference { public_key, block, .. } => {
            w.u32(id::CREATE_CONFERENCE_CALL);
            // join, public_key, block and params share flags.3: all four or none.
            let joining = match (public_key, block) {
                (Some(k), Some(b)) => Some((k, b)),
                _ => None,
            };
            w.u32(media_flags | u32::from(joining.is_some()) << 3);
            w.i32(ctx.random_id);
            if let Some((key, block)) = joining {
                w.raw(key.as_bytes());
                w.bytes(block.as_bytes());
                write_data_json(&mut w, &ctx.params);
            }
        }
        Request::Join { public_key, block } => {
            w.u32(id::JOIN_GROUP_CALL);
            w.u32(media_flags | u32::from(ctx.invite_hash.is_some()) << 1 | 1 << 3);
            write_input_group_call(&mut w, need_call(ctx)?);
            write_input_peer(&mut w, &ctx.join_as);
            if let Some(hash) = &ctx.invite_hash {
                w.bytes(hash.as_bytes());
            }
            w.raw(public_key.as_bytes());
            w.bytes(block.as_bytes());
            write_data_json(&mut w, &ctx.params);
        }
        Request::DeleteParticipants { user_ids, block, kick } => {
            w.u32(id::DELETE_CONFERENCE_CALL_PARTICIPANTS);
            w.u32(if *kick { 1 << 1 } else { 1 });
            write_input_group_call(&mut w, need_call(ctx)?);
            w.u32(id::VECTOR);
            w.u32(u32::try_from(user_ids.len()).unwrap_or(u32::MAX));
            for u in user_ids {
                w.i64(*u);
            }
            w.bytes(block.as_bytes());
        }
        Request::SendBroadcast { block } => {
            w.u32(id::SEND_CONFERENCE_CALL_BROADCAST);
            write_input_group_call(&mut w, need_call(ctx)?);
            w.bytes(block);
        }
        Request::SendEncryptedMessage { encrypted_message } => {
            w.u32(id::SEND_GROUP_CALL_ENCRYPTED_MESSAGE);
            write_input_group_call(&mut w, need_call(ctx)?);
            w.bytes(encrypted_message);
        }
        Request::Leave => {
            w.u32(id::LEAVE_GROUP_CALL);
            write_input_group_call(&mut w, need_call(ctx)?);
            w.i32(ctx.source);
        }
        Request::GetGroupParticipants { sources } => {
            return encode_source_lookup(&SourceLookup { sources: sources.clone() }, ctx);
        }
    }
    Ok(w.into_bytes())
}

/// Reads function bytes back into the session's [`Request`] and the application's part
/// (`call` is `None` for `createConferenceCall`). A block argument that is not a plain-form block
/// fails with [`ErrorKind::InvalidInput`] (`BLOCK_INVALID`); anything else malformed, or another
/// function, with [`ErrorKind::Parse`]. Trailing bytes are an error. `params` is empty for a
/// function that carries none.
pub fn decode_request(bytes: &[u8]) -> Result<(Request, Context)> {
    let mut r = Reader::new(bytes);
    let mut ctx = Context { params: String::new(), ..Context::default() };
    let request = match r.u32()? {
        id::GET_GROUP_CALL_CHAIN_BLOCKS => {
            ctx.call = Some(read_input_group_call(&mut r)?);
            let sub = r.i32()?;
            let sub_chain = SubChain::from_id(sub).ok_or_else(|| r.error("Unknown sub_chain_id"))?;
            Request::GetChainBlocks { sub_chain, offset: r.i32()?, limit: r.i32()? }
        }
        id::CREATE_CONFERENCE_CALL => {
            let flags = r.flags()?;
            (ctx.muted, ctx.video_stopped) = (flags & 1 != 0, flags & 1 << 2 != 0);
            ctx.random_id = r.i32()?;
            if flags & 1 << 3 != 0 {
                let key = PublicKey::from_bytes(r.array()?);
                let block = block_arg(&mut r)?;
                ctx.params = read_data_json(&mut r)?;
                Request::CreateConference { public_key: Some(key), block: Some(block) }
            } else {
                Request::CreateConference { public_key: None, block: None }
            }
        }
        id::JOIN_GROUP_CALL => {
            let flags = r.flags()?;
            (ctx.muted, ctx.video_stopped) = (flags & 1 != 0, flags & 1 << 2 != 0);
            ctx.call = Some(read_input_group_call(&mut r)?);
            ctx.join_as = read_input_peer(&mut r)?;
            if flags & 1 << 1 != 0 {
                ctx.invite_hash = Some(string(&mut r)?);
            }
            if flags & 1 << 3 == 0 {
                // A join without a key and block is a plain (unencrypted) group call's.
                return Err(r.error("joinGroupCall without public_key and block"));
            }
            let public_key = PublicKey::from_bytes(r.array()?);
            let block = block_arg(&mut r)?;
            ctx.params = read_data_json(&mut r)?;
            Request::Join { public_key, block }
        }
        id::DELETE_CONFERENCE_CALL_PARTICIPANTS => {
            let flags = r.flags()?;
            ctx.call = Some(read_input_group_call(&mut r)?);
            r.expect_constructor(id::VECTOR)?;
            let n = r.vec_len()?;
            let mut user_ids = Vec::with_capacity(n.min(r.remaining() / 8));
            for _ in 0..n {
                user_ids.push(r.i64()?);
            }
            let block = block_arg(&mut r)?;
            // Exactly one of only_left (flags.0) and kick (flags.1): the two removals differ.
            let kick = match flags & 3 {
                1 => false,
                2 => true,
                _ => return Err(r.error("deleteConferenceCallParticipants needs one of only_left and kick")),
            };
            Request::DeleteParticipants { user_ids, block, kick }
        }
        id::SEND_CONFERENCE_CALL_BROADCAST => {
            ctx.call = Some(read_input_group_call(&mut r)?);
            Request::SendBroadcast { block: r.bytes()?.to_vec() }
        }
        id::SEND_GROUP_CALL_ENCRYPTED_MESSAGE => {
            ctx.call = Some(read_input_group_call(&mut r)?);
            Request::SendEncryptedMessage { encrypted_message: r.bytes()?.to_vec() }
        }
        id::LEAVE_GROUP_CALL => {
            ctx.call = Some(read_input_group_call(&mut r)?);
            ctx.source = r.i32()?;
            Request::Leave
        }
        id::GET_GROUP_PARTICIPANTS => {
            let (SourceLookup { sources }, call) = decode_source_lookup(bytes)?;
            ctx.call = Some(call);
            return Ok((Request::GetGroupParticipants { sources }, ctx));
        }
        other => return Err(parse_error(&format!("Unknown function {other:#010x}"))),
    };
    r.finish()?;
    Ok((request, ctx))
}

fn write_call_of(w: &mut Writer, call: &CallIdentity) {
    write_input_group_call(w, &InputGroupCall::Id(*call));
}

fn write_update(w: &mut Writer, call: &CallIdentity, update: &Update) {
    match update {
        Update::ChainBlocks { sub_chain, blocks, next_offset } => {
            w.u32(id::UPDATE_GROUP_CALL_CHAIN_BLOCKS);
            write_call_of(w, call);
            w.i32(sub_chain.id());
            w.u32(id::VECTOR);
            w.u32(u32::try_from(blocks.len()).unwrap_or(u32::MAX));
            for b in blocks {
                w.bytes(b);
            }
            w.i32(*next_offset);
        }
        Update::EncryptedMessage { from, encrypted_message } => {
            w.u32(id::UPDATE_GROUP_CALL_ENCRYPTED_MESSAGE);
            write_call_of(w, call);
            w.u32(id::PEER_USER);
            w.i64(*from);
            w.bytes(encrypted_message);
        }
        Update::GroupCall { call: this, discarded, invite_link } => {
            w.u32(id::UPDATE_GROUP_CALL);
            w.u32(0);
            if *discarded {
                w.u32(id::GROUP_CALL_DISCARDED);
                w.i64(this.id);
                w.i64(this.access_hash);
                w.i32(0); // duration
            } else {
                w.u32(id::GROUP_CALL);
                // conference (flags.14), invite_link (flags.16)
                w.u32(1 << 14 | u32::from(invite_link.is_some()) << 16);
                w.i64(this.id);
                w.i64(this.access_hash);
                w.i32(0); // participants_count
                w.i32(0); // unmuted_video_limit
                w.i32(0); // version
                if let Some(link) = invite_link {
                    w.bytes(link.as_bytes());
                }
            }
        }
        Update::Participants { participants } => {
            w.u32(id::UPDATE_GROUP_CALL_PARTICIPANTS);
            write_call_of(w, call);
            w.u32(id::VECTOR);
            w.u32(u32::try_from(participants.len()).unwrap_or(u32::MAX));
            for p in participants {
                write_participant(w, p);
            }
            w.i32(participants.first().map_or(0, |p| p.version)); // version
        }
    }
}

/// `updates(updates, users: [], chats: [], date, seq: 0)` carrying `updates` about `call` (the
/// `call` argument of each update but `updateGroupCall`, which names its own).
pub fn encode_updates(call: &CallIdentity, updates: &[Update], date: i32) -> Vec<u8> {
    encode_updates_with(call, updates, &[], date)
}

/// [`encode_updates`] followed by `updateGroupCallConnection(presentation: false, params)` for
/// each of `connections` (what a join's result carries for the media stack).
pub fn encode_updates_with(call: &CallIdentity, updates: &[Update], connections: &[&str], date: i32) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(id::UPDATES);
    w.u32(id::VECTOR);
    let n = updates.len().saturating_add(connections.len());
    w.u32(u32::try_from(n).unwrap_or(u32::MAX));
    for u in updates {
        write_update(&mut w, call, u);
    }
    for params in connections {
        w.u32(id::UPDATE_GROUP_CALL_CONNECTION);
        w.u32(0);
        write_data_json(&mut w, params);
    }
    for _ in 0..2 {
        // users, chats
        w.u32(id::VECTOR);
        w.u32(0);
    }
    w.i32(date);
    w.i32(0);
    w.into_bytes()
}

/// `updates` with one `updateGroupCallParticipants(call, participants, version)` carrying each
/// participant's sources (what [`encode_updates`] writes without them).
pub fn encode_participants(
    call: &CallIdentity,
    participants: &[ParticipantSources],
    version: i32,
    date: i32,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(id::UPDATES);
    w.u32(id::VECTOR);
    w.u32(1);
    w.u32(id::UPDATE_GROUP_CALL_PARTICIPANTS);
    write_call_of(&mut w, call);
    write_participants(&mut w, participants);
    w.i32(version);
    for _ in 0..2 {
        // users, chats
        w.u32(id::VECTOR);
        w.u32(0);
    }
    w.i32(date);
    w.i32(0);
    w.into_bytes()
}

fn write_participants(w: &mut Writer, participants: &[ParticipantSources]) {
    w.u32(id::VECTOR);
    w.u32(u32::try_from(participants.len()).unwrap_or(u32::MAX));
    for p in participants {
        write_participant(w, p);
    }
}

/// `phone.groupParticipants(count, participants, next_offset, chats: [], users: [], version)`:
/// the answer of a [`SourceLookup`], as the server model gives it.
pub fn encode_group_participants(answer: &GroupParticipants, version: i32) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(id::GROUP_PARTICIPANTS);
    w.i32(answer.count);
    write_participants(&mut w, &answer.participants);
    w.bytes(answer.next_offset.as_bytes());
    for _ in 0..2 {
        // chats, users
        w.u32(id::VECTOR);
        w.u32(0);
    }
    w.i32(version);
    w.into_bytes()
}

/// The function bytes of `lookup`: `phone.getGroupParticipants(call, ids: [], sources,
/// offset: "", limit: sources.len())`. Fails only when `ctx.call` is missing.
pub fn encode_source_lookup(lookup: &SourceLookup, ctx: &Context) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.u32(id::GET_GROUP_PARTICIPANTS);
    write_input_group_call(&mut w, need_call(ctx)?);
    w.u32(id::VECTOR);
    w.u32(0); // ids
    w.u32(id::VECTOR);
    let n = u32::try_from(lookup.sources.len()).unwrap_or(u32::MAX);
    w.u32(n);
    for s in &lookup.sources {
        w.u32(*s);
    }
    w.bytes(b""); // offset
    w.u32(n); // limit
    Ok(w.into_bytes())
}

/// Reads `phone.getGroupParticipants` bytes back (the server model's side): the lookup and the
/// call. Only lookups by source are read: `ids` must be empty, `offset` empty, and at most
/// [`MAX_LOOKUP_BATCH`] sources are named (Telegram's apps ask for a few at a time); anything
/// else is an error. Trailing bytes are an error.
pub fn decode_source_lookup(bytes: &[u8]) -> Result<(SourceLookup, InputGroupCall)> {
    let mut r = Reader::new(bytes);
    r.expect_constructor(id::GET_GROUP_PARTICIPANTS)?;
    let call = read_input_group_call(&mut r)?;
    r.expect_constructor(id::VECTOR)?;
    if r.u32()? != 0 {
        return Err(r.error("Lookups by peer are not supported"));
    }
    r.expect_constructor(id::VECTOR)?;
    let n = r.vec_len()?;
    if n > MAX_LOOKUP_BATCH {
        return Err(r.error("Too many sources"));
    }
    let mut sources = Vec::with_capacity(n);
    for _ in 0..n {
        sources.push(r.i32()?.cast_unsigned());
    }
    if !r.bytes()?.is_empty() {
        return Err(r.error("Lookups with an offset are not supported"));
    }
    r.i32()?; // limit
    r.finish()?;
    Ok((SourceLookup { sources }, call))
}

/// `boolTrue` / `boolFalse`.
pub fn encode_bool(value: bool) -> Vec<u8> {
    (if value { id::BOOL_TRUE } else { id::BOOL_FALSE }).to_le_bytes().to_vec()
}

/// `rpc_error(error_code, error_message)`.
pub fn encode_rpc_error(code: i32, message: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(id::RPC_ERROR);
    w.i32(code);
    w.bytes(message.as_bytes());
    w.into_bytes()
}

/// The `error_code` Telegram uses for an error message: 420 for flood waits, 403 for
/// `GROUPCALL_FORBIDDEN`, 500 for internal failures, 400 otherwise.
pub fn error_code(message: &str) -> i32 {
    if message.starts_with("FLOOD_WAIT_") || message.starts_with("FLOOD_PREMIUM_WAIT_") {
        420
    } else if message == "GROUPCALL_FORBIDDEN" {
        403
    } else if message.starts_with("INTERNAL") || message.starts_with("RPC_CALL_FAIL") {
        500
    } else {
        400
    }
}

/// A `groupCallParticipantVideo`, keeping at most [`MAX_SOURCE_GROUPS`] groups of at most
/// [`MAX_GROUP_SOURCES`] SSRCs (the rest is read and ignored).
fn read_participant_video(r: &mut Reader<'_>) -> Result<VideoSources> {
    r.expect_constructor(id::GROUP_CALL_PARTICIPANT_VIDEO)?;
    let flags = r.flags()?;
    let endpoint = string(r)?;
    r.expect_constructor(id::VECTOR)?;
    let groups = r.vec_len()?;
    let mut source_groups = Vec::with_capacity(groups.min(MAX_SOURCE_GROUPS));
    for _ in 0..groups {
        r.expect_constructor(id::GROUP_CALL_PARTICIPANT_VIDEO_SOURCE_GROUP)?;
        let semantics = string(r)?;
        r.expect_constructor(id::VECTOR)?;
        let n = r.vec_len()?;
        let mut sources = Vec::with_capacity(n.min(MAX_GROUP_SOURCES));
        for _ in 0..n {
            let ssrc = r.i32()?.cast_unsigned();
            if sources.len() < MAX_GROUP_SOURCES {
                sources.push(ssrc);
            }
        }
        if source_groups.len() < MAX_SOURCE_GROUPS {
            source_groups.push(SourceGroup { semantics, sources });
        }
    }
    let audio_source = if flags & 1 << 1 != 0 { Some(r.i32()?.cast_unsigned()) } else { None };
    Ok(VideoSources { endpoint, source_groups, audio_source })
}

fn write_participant_video(w: &mut Writer, video: &VideoSources) {
    w.u32(id::GROUP_CALL_PARTICIPANT_VIDEO);
    w.u32(u32::from(video.audio_source.is_some()) << 1);
    w.bytes(video.endpoint.as_bytes());
    w.u32(id::VECTOR);
    w.u32(u32::try_from(video.source_groups.len()).unwrap_or(u32::MAX));
    for g in &video.source_groups {
        w.u32(id::GROUP_CALL_PARTICIPANT_VIDEO_SOURCE_GROUP);
        w.bytes(g.semantics.as_bytes());
        w.u32(id::VECTOR);
        w.u32(u32::try_from(g.sources.len()).unwrap_or(u32::MAX));
        for s in &g.sources {
            w.u32(*s);
        }
    }
    if let Some(a) = video.audio_source {
        w.u32(a);
    }
}

/// A `groupCallParticipant` (a user) with its date and sources.
fn write_participant(w: &mut Writer, p: &ParticipantSources) {
    let MediaSources { audio, video, presentation } = &p.sources;
    w.u32(id::GROUP_CALL_PARTICIPANT);
    w.u32(u32::from(p.left) << 1 | u32::from(video.is_some()) << 6 | u32::from(presentation.is_some()) << 14);
    w.u32(id::PEER_USER);
    w.i64(p.user_id);
    w.i32(p.date);
    w.u32(*audio);
    if let Some(v) = video {
        write_participant_video(w, v);
    }
    if let Some(v) = presentation {
        write_participant_video(w, v);
    }
}

/// A `groupCallParticipant`: the participant with its sources, if it is a user.
fn read_participant(r: &mut Reader<'_>) -> Result<Option<ParticipantSources>> {
    r.expect_constructor(id::GROUP_CALL_PARTICIPANT)?;
    let flags = r.flags()?;
    let (is_user, peer_id) = read_peer(r)?;
    let date = r.i32()?;
    if flags & 1 << 3 != 0 {
        r.i32()?; // active_date
    }
    let audio = r.i32()?.cast_unsigned();
    if flags & 1 << 7 != 0 {
        r.i32()?; // volume
    }
    if flags & 1 << 11 != 0 {
        r.bytes()?; // about
    }
    if flags & 1 << 13 != 0 {
        r.i64()?; // raise_hand_rating
    }
    let video = if flags & 1 << 6 != 0 { Some(read_participant_video(r)?) } else { None };
    let presentation = if flags & 1 << 14 != 0 { Some(read_participant_video(r)?) } else { None };
    if flags & 1 << 16 != 0 {
        r.i64()?; // paid_stars_total
    }
    let sources = MediaSources { audio, video, presentation };
    let left = flags & 1 << 1 != 0;
    Ok(is_user.then_some(CallParticipant { user_id: peer_id, left, date, version: 0, sources }))
}

/// A vector of `groupCallParticipant`s: the users among them.
fn read_participants(r: &mut Reader<'_>) -> Result<Vec<ParticipantSources>> {
    r.expect_constructor(id::VECTOR)?;
    let n = r.vec_len()?;
    let mut participants = Vec::with_capacity(capacity(n, r.remaining(), MIN_PARTICIPANT_BYTES));
    for _ in 0..n {
        participants.extend(read_participant(r)?);
    }
    Ok(participants)
}

/// A `GroupCall`: its identity, whether it was discarded, its invite link.
fn read_group_call(r: &mut Reader<'_>) -> Result<Update> {
    match r.u32()? {
        id::GROUP_CALL_DISCARDED => {
            let call = CallIdentity { id: r.i64()?, access_hash: r.i64()? };
            r.i32()?; // duration
            Ok(Update::GroupCall { call, discarded: true, invite_link: None })
        }
        id::GROUP_CALL => {
            let flags = r.flags()?;
            let call = CallIdentity { id: r.i64()?, access_hash: r.i64()? };
            r.i32()?; // participants_count
            if flags & 1 << 3 != 0 {
                r.bytes()?; // title
            }
            for bit in [4, 5, 7, 10] {
                // stream_dc_id, record_start_date, schedule_date, unmuted_video_count
                if flags & 1 << bit != 0 {
                    r.i32()?;
                }
            }
            r.i32()?; // unmuted_video_limit
            r.i32()?; // version
            let invite_link = if flags & 1 << 16 != 0 { Some(string(r)?) } else { None };
            if flags & 1 << 20 != 0 {
                r.i64()?; // send_paid_messages_stars
            }
            if flags & 1 << 21 != 0 {
                read_peer(r)?; // default_send_as
            }
            Ok(Update::GroupCall { call, discarded: false, invite_link })
        }
        _ => Err(r.error("Unknown GroupCall constructor")),
    }
}

/// Reads one update, appending what it gives to `out` (nothing or one).
fn read_update(r: &mut Reader<'_>, out: &mut Vec<TlUpdate>) -> Result<()> {
    let update = match r.u32()? {
        id::UPDATE_GROUP_CALL_CHAIN_BLOCKS => {
            let call = read_input_group_call(r)?;
            let sub_chain_id = r.i32()?;
            r.expect_constructor(id::VECTOR)?;
            let n = r.vec_len()?;
            let mut blocks = Vec::with_capacity(capacity(n, r.remaining(), MIN_BLOCK_BYTES));
            for _ in 0..n {
                blocks.push(ServerBlock::from(r.bytes()?));
            }
            let next_offset = r.i32()?;
            match SubChain::from_id(sub_chain_id) {
                Some(sub_chain) => {
                    TlUpdate::Session { call, update: Update::ChainBlocks { sub_chain, blocks, next_offset } }
                }
                // Another sub-chain: none of the session's.
                None => return Ok(()),
            }
        }
        id::UPDATE_GROUP_CALL_ENCRYPTED_MESSAGE => {
            let call = read_input_group_call(r)?;
            let (is_user, from) = read_peer(r)?;
            let encrypted_message = r.bytes()?.to_vec();
            if !is_user {
                // Only users are members: a chat or channel with the same number is not one.
                return Ok(());
            }
            TlUpdate::Session { call, update: Update::EncryptedMessage { from, encrypted_message } }
        }
        id::UPDATE_GROUP_CALL => {
            let flags = r.flags()?;
            if flags & 1 << 1 != 0 {
                read_peer(r)?;
            }
            let update = read_group_call(r)?;
            let Update::GroupCall { call, .. } = &update else { return Ok(()) };
            TlUpdate::Session { call: InputGroupCall::Id(*call), update }
        }
        id::UPDATE_GROUP_CALL_PARTICIPANTS => {
            let call = read_input_group_call(r)?;
            let mut participants = read_participants(r)?;
            let version = r.i32()?;
            for p in &mut participants {
                p.version = version;
            }
            TlUpdate::Session { call, update: Update::Participants { participants } }
        }
        id::UPDATE_GROUP_CALL_CONNECTION => {
            let flags = r.flags()?;
            TlUpdate::Connection { presentation: flags & 1 != 0, params: read_data_json(r)? }
        }
        other => return Err(parse_error(&format!("Unknown Update constructor {other:#010x}"))),
    };
    out.push(update);
    Ok(())
}

fn read_updates_vector(r: &mut Reader<'_>) -> Result<Vec<TlUpdate>> {
    r.expect_constructor(id::VECTOR)?;
    let n = r.vec_len()?;
    let mut out = Vec::with_capacity(capacity(n, r.remaining(), MIN_UPDATE_BYTES));
    for _ in 0..n {
        read_update(r, &mut out)?;
    }
    Ok(out)
}

/// `users` and `chats` of an `Updates`: this codec reads only empty ones (a `User` or `Chat`
/// needs the whole schema; MTProto libraries parse those).
fn read_empty_vector(r: &mut Reader<'_>) -> Result<()> {
    r.expect_constructor(id::VECTOR)?;
    if r.u32()? != 0 {
        return Err(r.error("Users and chats are not supported"));
    }
    Ok(())
}

/// Reads the result of a function: `Updates` (the conference's updates; any other update is an
/// error, as are non-empty `users`/`chats`), `Bool`, `rpc_error`, or `phone.groupParticipants`
/// (read up to `next_offset`; what follows is not read). Trailing bytes are an error.
pub fn decode_result(bytes: &[u8]) -> Result<Answer> {
    let mut r = Reader::new(bytes);
    let answer = match r.u32()? {
        id::BOOL_TRUE => Answer::Bool(true),
        id::BOOL_FALSE => Answer::Bool(false),
        id::RPC_ERROR => Answer::Error { code: r.i32()?, message: string(&mut r)? },
        id::UPDATES_TOO_LONG => Answer::Updates(Vec::new()),
        id::UPDATE_SHORT => {
            let mut updates = Vec::new();
            read_update(&mut r, &mut updates)?;
            r.i32()?; // date
            Answer::Updates(updates)
        }
        kind @ (id::UPDATES | id::UPDATES_COMBINED) => {
            let updates = read_updates_vector(&mut r)?;
            read_empty_vector(&mut r)?;
            read_empty_vector(&mut r)?;
            r.i32()?; // date
            if kind == id::UPDATES_COMBINED {
                r.i32()?; // seq_start
            }
            r.i32()?; // seq
            Answer::Updates(updates)
        }
        id::GROUP_PARTICIPANTS => {
            let count = r.i32()?;
            let participants = read_participants(&mut r)?;
            let next_offset = string(&mut r)?;
            // chats, users and version follow: not read (see `GroupParticipants`).
            return Ok(Answer::Participants(GroupParticipants { count, participants, next_offset }));
        }
        other => return Err(parse_error(&format!("Unknown result constructor {other:#010x}"))),
    };
    r.finish()?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    const CALL: CallIdentity = CallIdentity { id: 0x0102030405060708, access_hash: -2 };

    fn ctx() -> Context {
        Context { call: Some(InputGroupCall::Id(CALL)), ..Context::default() }
    }

    /// The reservation constants are the smallest encodings (issue 30 item 9: a vector of
    /// updates reserved one 72-byte entry per 4 bytes left, 18 times the input).
    #[test]
    fn vectors_reserve_by_the_smallest_encoding_of_an_entry() {
        let connection = encode_updates_with(&CALL, &[], &[""], 0);
        // updates, vector, count, the update, then users, chats, date, seq.
        assert_eq!(connection.len() - 4 * 3 - (8 + 8 + 4 + 4), MIN_UPDATE_BYTES);
        let Ok(Answer::Updates(u)) = decode_result(&connection) else { panic!("decodes") };
        assert!(matches!(&u[..], [TlUpdate::Connection { params, .. }] if params.is_empty()));
        let mut w = Writer::new();
        w.u32(id::GROUP_CALL_PARTICIPANT);
        w.u32(0);
        w.u32(id::PEER_USER);
        w.i64(1);
        w.i32(0);
        w.i32(0);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), MIN_PARTICIPANT_BYTES);
        assert!(read_participant(&mut Reader::new(&bytes)).unwrap().is_some());
        // A participant with its sources takes at most 8 times its smallest encoding.
        assert!(std::mem::size_of::<ParticipantSources>() <= 8 * MIN_PARTICIPANT_BYTES);
        // A hostile count over 1,000 bytes left: at most 62 updates are reserved, not 250.
        assert_eq!(capacity(u32::MAX as usize, 1_000, MIN_UPDATE_BYTES), 62);
        assert!(std::mem::size_of::<TlUpdate>() * 1_000 / MIN_UPDATE_BYTES <= 8 * 1_000);
    }

    #[test]
    fn get_chain_blocks_known_bytes() {
        let req = Request::GetChainBlocks { sub_chain: SubChain::Broadcasts, offset: -1, limit: 1 };
        let bytes = encode_request(&req, &ctx()).unwrap();
        assert_eq!(
            hex(&bytes),
            concat!(
                "a6889fee",         // getGroupCallChainBlocks
                "0f84aad8",         // inputGroupCall
                "0807060504030201", // id
                "feffffffffffffff", // access_hash
                "01000000",
                "ffffffff",
                "01000000" // sub_chain_id, offset, limit
            )
        );
        assert_eq!(decode_request(&bytes).unwrap(), (req, ctx_decoded(ctx())));
    }

    /// What decoding gives back for a context (the params of functions that carry none are empty).
    fn ctx_decoded(c: Context) -> Context {
        Context { params: String::new(), ..c }
    }

    #[test]
    fn leave_and_messages_known_bytes() {
        let c = Context { source: 7, call: Some(InputGroupCall::InviteMessage(9)), ..Context::default() };
        let bytes = encode_request(&Request::Leave, &c).unwrap();
        assert_eq!(hex(&bytes), "f9770350".to_owned() + "3f60108c" + "09000000" + "07000000");
        assert_eq!(decode_request(&bytes).unwrap(), (Request::Leave, ctx_decoded(c)));

        let c = Context { call: Some(InputGroupCall::Slug("abc".into())), ..Context::default() };
        let req = Request::SendEncryptedMessage { encrypted_message: vec![1, 2, 3, 4, 5] };
        let bytes = encode_request(&req, &c).unwrap();
        assert_eq!(hex(&bytes), "6da5afe5".to_owned() + "3f8206fe" + "03616263" + "0501020304050000");
        assert_eq!(decode_request(&bytes).unwrap(), (req, ctx_decoded(c)));
        assert!(encode_request(&Request::Leave, &Context::default()).is_err(), "a call is needed");
    }

    fn zero_block() -> (PublicKey, PlainBlock) {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let key = crate::PrivateKey::generate(&mut rng);
        let me = crate::GroupParticipant {
            user_id: 1,
            public_key: key.public_key(),
            flags: crate::Permissions::ALL,
            version: 0,
        };
        let state = crate::GroupState { participants: vec![me], external_permissions: crate::Permissions::NONE };
        let block = crate::build_zero_block(state, &key, &mut rng).unwrap();
        (key.public_key(), block)
    }

    #[test]
    fn create_shares_flags_3() {
        let (key, block) = zero_block();
        let c = Context { random_id: 0x11223344, params: "{\"ufrag\":1}".into(), muted: true, ..Context::default() };
        let req = Request::CreateConference { public_key: Some(key), block: Some(block.clone()) };
        let bytes = encode_request(&req, &c).unwrap();
        assert_eq!(hex(&bytes[..12]), "bb44047d".to_owned() + "09000000" + "44332211");
        assert_eq!(&bytes[12..44], key.as_bytes());
        let (back, back_ctx) = decode_request(&bytes).unwrap();
        assert_eq!(back, req);
        assert_eq!((back_ctx.params.as_str(), back_ctx.random_id, back_ctx.muted), ("{\"ufrag\":1}", 0x11223344, true));

        // Create only: no flags.3, so no key, block or params at all.
        let only = Request::CreateConference { public_key: None, block: None };
        let bytes = encode_request(&only, &c).unwrap();
        assert_eq!(hex(&bytes), "bb44047d".to_owned() + "01000000" + "44332211");
        assert_eq!(decode_request(&bytes).unwrap().0, only);
    }

    #[test]
    fn join_with_invite_hash_and_delete() {
        let (key, block) = zero_block();
        let c = Context { invite_hash: Some("h".into()), params: "{}".into(), ..ctx() };
        let req = Request::Join { public_key: key, block: block.clone() };
        let bytes = encode_request(&req, &c).unwrap();
        // flags: invite_hash (1) and the shared flags.3.
        assert_eq!(hex(&bytes[..8]), "5730b58f".to_owned() + "0a000000");
        assert_eq!(decode_request(&bytes).unwrap(), (req, c.clone()));

        let del = Request::DeleteParticipants { user_ids: vec![5, -6], block, kick: false };
        let bytes = encode_request(&del, &ctx()).unwrap();
        // only_left (flags.0) for a prune; the ids vector follows the call.
        assert_eq!(hex(&bytes[..8]), "2505a68c".to_owned() + "01000000");
        assert_eq!(hex(&bytes[28..52]), "15c4b51c".to_owned() + "02000000" + "0500000000000000" + "faffffffffffffff");
        assert_eq!(decode_request(&bytes).unwrap().0, del);
    }

    #[test]
    fn bad_requests_are_errors() {
        let (key, block) = zero_block();
        let req = Request::Join { public_key: key, block };
        let bytes = encode_request(&req, &ctx()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode_request(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut long = bytes.clone();
        long.extend_from_slice(&[0; 4]);
        assert!(decode_request(&long).is_err(), "trailing bytes");
        // A block argument that is no block: BLOCK_INVALID, not a parse error.
        let bad = Request::SendBroadcast { block: vec![0xff; 8] };
        let mut b = encode_request(&bad, &ctx()).unwrap();
        b[..4].copy_from_slice(&id::DELETE_CONFERENCE_CALL_PARTICIPANTS.to_le_bytes());
        assert!(decode_request(&b).is_err());
        let mut w = Writer::new();
        w.u32(id::DELETE_CONFERENCE_CALL_PARTICIPANTS);
        w.u32(0);
        write_input_group_call(&mut w, &InputGroupCall::Id(CALL));
        w.u32(id::VECTOR);
        w.u32(0);
        w.bytes(&[1, 2, 3]);
        let e = decode_request(&w.into_bytes()).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::InvalidInput, "BLOCK_INVALID"));
        // A huge ids count cannot allocate.
        let mut w = Writer::new();
        w.u32(id::DELETE_CONFERENCE_CALL_PARTICIPANTS);
        w.u32(0);
        write_input_group_call(&mut w, &InputGroupCall::Id(CALL));
        w.u32(id::VECTOR);
        w.u32(u32::MAX);
        assert!(decode_request(&w.into_bytes()).is_err());
        assert!(decode_request(&0x12345678u32.to_le_bytes()).is_err(), "another function");
    }

    #[test]
    fn updates_round_trip() {
        let updates = vec![
            Update::ChainBlocks {
                sub_chain: SubChain::Blocks,
                blocks: vec![vec![1; 5].into(), vec![].into()],
                next_offset: 2,
            },
            Update::EncryptedMessage { from: 42, encrypted_message: vec![9; 300] },
            Update::GroupCall { call: CALL, discarded: false, invite_link: Some("https://t.me/call/x".into()) },
            Update::GroupCall { call: CALL, discarded: true, invite_link: None },
            Update::Participants {
                participants: vec![
                    CallParticipant { date: 5, version: 2, ..CallParticipant::new(1, false) },
                    CallParticipant { version: 2, ..CallParticipant::new(2, true) },
                ],
            },
        ];
        let bytes = encode_updates_with(&CALL, &updates, &["{\"transport\":{}}"], 1700000000);
        assert_eq!(hex(&bytes[..12]), "4042ae74".to_owned() + "15c4b51c" + "06000000");
        let Answer::Updates(back) = decode_result(&bytes).unwrap() else { panic!("updates") };
        let (mut session, mut other) = (Vec::new(), Vec::new());
        for u in back {
            match u {
                TlUpdate::Session { call, update } => {
                    assert_eq!(call, InputGroupCall::Id(CALL));
                    session.push(update);
                }
                u => other.push(u),
            }
        }
        assert_eq!(session, updates);
        let connection = TlUpdate::Connection { presentation: false, params: "{\"transport\":{}}".into() };
        assert_eq!(other, vec![connection]);
        for cut in 0..bytes.len() {
            assert!(decode_result(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn bool_and_rpc_error() {
        assert_eq!(hex(&encode_bool(true)), "b5757299");
        assert_eq!(decode_result(&encode_bool(false)).unwrap(), Answer::Bool(false));
        let e = encode_rpc_error(420, "FLOOD_WAIT_30");
        assert_eq!(hex(&e[..8]), "19ca4421a4010000");
        assert_eq!(decode_result(&e).unwrap(), Answer::Error { code: 420, message: "FLOOD_WAIT_30".into() });
        assert_eq!(error_code("FLOOD_PREMIUM_WAIT_5"), 420);
        assert_eq!(error_code("GROUPCALL_FORBIDDEN"), 403);
        assert_eq!(error_code("CONF_WRITE_CHAIN_INVALID"), 400);
        let (resp, _) = decode_result(&e).unwrap().into_response();
        assert_eq!(resp, crate::api::Response::Error("FLOOD_WAIT_30".into()));
    }

    #[test]
    fn participants_with_video_and_non_users() {
        // A participant with every optional field, and a channel participant (dropped).
        let mut w = Writer::new();
        w.u32(id::UPDATE_SHORT);
        w.u32(id::UPDATE_GROUP_CALL_PARTICIPANTS);
        write_input_group_call(&mut w, &InputGroupCall::Id(CALL));
        w.u32(id::VECTOR);
        w.u32(2);
        w.u32(id::GROUP_CALL_PARTICIPANT);
        w.u32(1 << 1 | 1 << 3 | 1 << 6 | 1 << 7 | 1 << 11 | 1 << 13 | 1 << 14 | 1 << 16);
        w.u32(id::PEER_USER);
        w.i64(77);
        w.i32(1); // date
        w.i32(2); // active_date
        w.i32(3); // source
        w.i32(4); // volume
        w.bytes(b"about");
        w.i64(5); // raise_hand_rating
        for _ in 0..2 {
            w.u32(id::GROUP_CALL_PARTICIPANT_VIDEO);
            w.u32(1 << 1);
            w.bytes(b"endpoint");
            w.u32(id::VECTOR);
            w.u32(1);
            w.u32(id::GROUP_CALL_PARTICIPANT_VIDEO_SOURCE_GROUP);
            w.bytes(b"SIM");
            w.u32(id::VECTOR);
            w.u32(2);
            w.i32(10);
            w.i32(11);
            w.i32(12); // audio_source
        }
        w.i64(6); // paid_stars_total
        w.u32(id::GROUP_CALL_PARTICIPANT);
        w.u32(0);
        w.u32(id::PEER_CHANNEL);
        w.i64(88);
        w.i32(1);
        w.i32(3);
        w.i32(9); // version
        w.i32(0); // date
        let answer = decode_result(&w.into_bytes()).unwrap();
        let video = VideoSources {
            endpoint: "endpoint".into(),
            source_groups: vec![SourceGroup { semantics: "SIM".into(), sources: vec![10, 11] }],
            audio_source: Some(12),
        };
        let sources = CallParticipant {
            user_id: 77,
            left: true,
            date: 1,
            version: 9,
            sources: MediaSources { audio: 3, video: Some(video.clone()), presentation: Some(video) },
        };
        let call = InputGroupCall::Id(CALL);
        let want = Update::Participants { participants: vec![sources.clone()] };
        assert_eq!(answer, Answer::Updates(vec![TlUpdate::Session { call: call.clone(), update: want }]));
        // What the codec writes reads back the same, in an update and in a lookup's answer.
        let mut in_update = sources.clone();
        in_update.version = 4;
        let bytes = encode_participants(&CALL, std::slice::from_ref(&in_update), 4, 0);
        let Answer::Updates(u) = decode_result(&bytes).unwrap() else { panic!("updates") };
        assert!(matches!(&u[..], [TlUpdate::Session { update: Update::Participants { participants }, .. }]
            if participants == std::slice::from_ref(&in_update)));
        // A lookup's answer has no version (0); it becomes the session's update.
        let mut in_answer = sources;
        in_answer.version = 0;
        let answer = GroupParticipants { count: 3, participants: vec![in_answer.clone()], next_offset: "n".into() };
        let bytes = encode_group_participants(&answer, 1);
        assert_eq!(decode_result(&bytes).unwrap(), Answer::Participants(answer.clone()));
        let want = crate::api::Response::Ok(vec![Update::Participants { participants: vec![in_answer] }]);
        assert_eq!(Answer::Participants(answer).into_response_for(&CALL).0, want);
    }

    /// Negative SSRCs on the wire (TL `int`) are the RTP SSRCs above 2^31; a hostile participant
    /// keeps at most `MAX_SOURCE_GROUPS` groups of at most `MAX_GROUP_SOURCES` sources.
    #[test]
    fn participant_sources_are_bounded() {
        let mut w = Writer::new();
        w.u32(id::UPDATE_SHORT);
        w.u32(id::UPDATE_GROUP_CALL_PARTICIPANTS);
        write_input_group_call(&mut w, &InputGroupCall::Id(CALL));
        w.u32(id::VECTOR);
        w.u32(1);
        w.u32(id::GROUP_CALL_PARTICIPANT);
        w.u32(1 << 6);
        w.u32(id::PEER_USER);
        w.i64(5);
        w.i32(0);
        w.i32(-1); // source: 0xffffffff
        w.u32(id::GROUP_CALL_PARTICIPANT_VIDEO);
        w.u32(0);
        w.bytes(b"e");
        w.u32(id::VECTOR);
        w.u32(100);
        for _ in 0..100 {
            w.u32(id::GROUP_CALL_PARTICIPANT_VIDEO_SOURCE_GROUP);
            w.bytes(b"SIM");
            w.u32(id::VECTOR);
            w.u32(50);
            for i in 0..50 {
                w.i32(i);
            }
        }
        w.i32(0); // version
        w.i32(0); // date
        let Answer::Updates(u) = decode_result(&w.into_bytes()).unwrap() else { panic!("updates") };
        let [TlUpdate::Session { update: Update::Participants { participants }, .. }] = &u[..] else {
            panic!("participants")
        };
        let s = &participants[0].sources;
        assert_eq!(s.audio, u32::MAX);
        let groups = &s.video.as_ref().unwrap().source_groups;
        assert_eq!(groups.len(), MAX_SOURCE_GROUPS);
        assert!(groups.iter().all(|g| g.sources.len() == MAX_GROUP_SOURCES));
    }

    #[test]
    fn source_lookup_known_bytes() {
        let lookup = SourceLookup { sources: vec![1, u32::MAX] };
        let bytes = encode_source_lookup(&lookup, &ctx()).unwrap();
        assert_eq!(
            hex(&bytes),
            concat!(
                "abd858c5",                         // getGroupParticipants
                "0f84aad8",                         // inputGroupCall
                "0807060504030201feffffffffffffff", // id, access_hash
                "15c4b51c00000000",                 // ids: []
                "15c4b51c02000000",                 // sources
                "01000000ffffffff",
                "00000000", // offset ""
                "02000000"  // limit
            )
        );
        assert_eq!(decode_source_lookup(&bytes).unwrap(), (lookup, InputGroupCall::Id(CALL)));
        for cut in 0..bytes.len() {
            assert!(decode_source_lookup(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let many = SourceLookup { sources: vec![7; MAX_LOOKUP_BATCH + 1] };
        assert!(decode_source_lookup(&encode_source_lookup(&many, &ctx()).unwrap()).is_err());
        assert!(encode_source_lookup(&many, &Context::default()).is_err(), "a call is needed");
    }

    #[test]
    fn hostile_results_never_panic() {
        use rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let seed = encode_updates(
            &CALL,
            &[Update::ChainBlocks { sub_chain: SubChain::Broadcasts, blocks: vec![vec![1].into()], next_offset: 1 }],
            0,
        );
        for _ in 0..2000 {
            let mut b = seed.clone();
            let i = (rng.next_u32() as usize) % b.len();
            b[i] = rng.next_u32() as u8;
            let _ = decode_result(&b);
            let _ = decode_request(&b);
        }
    }
}
