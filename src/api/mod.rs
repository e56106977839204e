//! The API messages of a conference call: the requests a client sends (`phone.*` methods), the
//! updates the server pushes, and the outcome of a request. Both the client ([`crate::session`])
//! and the server model (`confchain::server`, feature `testkit`) speak them; neither owns them.

pub mod tl;

use crate::crypto::PublicKey;
use crate::wire::PlainBlock;
pub use crate::wire::ServerBlock;

/// Identifies a request until its response comes back.
pub type RequestId = u64;

/// The two sub-chains of `getGroupCallChainBlocks` / `updateGroupCallChainBlocks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubChain {
    /// Sub-chain 0: participant blocks.
    Blocks = 0,
    /// Sub-chain 1: emoji-verification broadcasts.
    Broadcasts = 1,
}

impl SubChain {
    /// The `sub_chain_id` on the wire.
    pub fn id(self) -> i32 {
        self as i32
    }

    /// The sub-chain with this `sub_chain_id`, if any.
    pub fn from_id(id: i32) -> Option<SubChain> {
        match id {
            0 => Some(SubChain::Blocks),
            1 => Some(SubChain::Broadcasts),
            _ => None,
        }
    }
}

/// A request for the application to send. Each variant is one TL method of layer 230; the
/// `call: InputGroupCall` argument is the application's (the session serves one call). With
/// grammers-tl-types, for example:
///
/// | variant | TL method (grammers-tl-types) |
/// | --- | --- |
/// | `GetChainBlocks` | `functions::phone::GetGroupCallChainBlocks { call, sub_chain_id, offset, limit }` |
/// | `CreateConference` | `functions::phone::CreateConferenceCall { join: block.is_some(), public_key, block, random_id, params, .. }` |
/// | `Join` | `functions::phone::JoinGroupCall { call, join_as: inputPeerSelf, public_key, block, params, .. }` |
/// | `DeleteParticipants` | `functions::phone::DeleteConferenceCallParticipants { only_left: !kick, kick, call, ids, block }` |
/// | `SendBroadcast` | `functions::phone::SendConferenceCallBroadcast { call, block }` |
/// | `SendEncryptedMessage` | `functions::phone::SendGroupCallEncryptedMessage { call, encrypted_message }` |
/// | `Leave` | `functions::phone::LeaveGroupCall { call, source }` |
/// | `GetGroupParticipants` | `functions::phone::GetGroupParticipants { call, ids: vec![], sources, offset: "", limit }` |
///
/// `int256` arguments are the 32 bytes of the public key; `bytes` arguments are the bytes given.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `phone.getGroupCallChainBlocks(call, sub_chain_id, offset, limit)`; `offset = -1, limit = 1`
    /// asks for the last block.
    GetChainBlocks {
        /// Which sub-chain.
        sub_chain: SubChain,
        /// First offset wanted, or -1 for the last one.
        offset: i32,
        /// Most blocks wanted.
        limit: i32,
    },
    /// `phone.createConferenceCall(join = block.is_some(), public_key, block, ...)`: a new
    /// conference, joined at once with our zero block, or "create only" (the chain stays empty).
    CreateConference {
        /// Our public key (with `block`).
        public_key: Option<PublicKey>,
        /// The zero block (plain form), when joining on create.
        block: Option<PlainBlock>,
    },
    /// `phone.joinGroupCall(call, public_key, block, ...)`.
    Join {
        /// Our new public key.
        public_key: PublicKey,
        /// The zero block (empty chain) or our self-add block, plain form.
        block: PlainBlock,
    },
    /// `phone.deleteConferenceCallParticipants(only_left = !kick, kick, call, ids, block)`.
    DeleteParticipants {
        /// The users to remove.
        user_ids: Vec<i64>,
        /// The block removing them, plain form.
        block: PlainBlock,
        /// A ban (`kick`) rather than pruning users who left (`only_left`).
        kick: bool,
    },
    /// `phone.sendConferenceCallBroadcast(call, block)`: an emoji-verification broadcast, plain form.
    SendBroadcast {
        /// The broadcast.
        block: Vec<u8>,
    },
    /// `phone.sendGroupCallEncryptedMessage(call, encrypted_message)`.
    SendEncryptedMessage {
        /// The encrypted `groupCallMessage` JSON.
        encrypted_message: Vec<u8>,
    },
    /// `phone.leaveGroupCall(call, source)`.
    Leave,
    /// `phone.getGroupParticipants(call, ids: [], sources, offset: "", limit: len(sources))`: who
    /// sends on these SSRCs (a [`SourceLookup`]); the answer (`phone.groupParticipants`) is given
    /// back as [`Update::Participants`].
    GetGroupParticipants {
        /// The SSRCs (TL `int`s as unsigned), at most
        /// [`MAX_LOOKUP_BATCH`](crate::limits::MAX_LOOKUP_BATCH).
        sources: Vec<u32>,
    },
}

/// The kind of a [`Request`] (its TL method): flood waits apply per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RequestKind {
    /// `getGroupCallChainBlocks`.
    GetChainBlocks,
    /// `createConferenceCall`.
    CreateConference,
    /// `joinGroupCall`.
    Join,
    /// `deleteConferenceCallParticipants`.
    DeleteParticipants,
    /// `sendConferenceCallBroadcast`.
    SendBroadcast,
    /// `sendGroupCallEncryptedMessage`.
    SendEncryptedMessage,
    /// `leaveGroupCall`.
    Leave,
    /// `getGroupParticipants`: a [`SourceLookup`] (who sends on these SSRCs).
    GetGroupParticipants,
}

impl RequestKind {
    /// Every kind, in declaration order.
    pub const ALL: [RequestKind; 8] = [
        RequestKind::GetChainBlocks,
        RequestKind::CreateConference,
        RequestKind::Join,
        RequestKind::DeleteParticipants,
        RequestKind::SendBroadcast,
        RequestKind::SendEncryptedMessage,
        RequestKind::Leave,
        RequestKind::GetGroupParticipants,
    ];

    /// The TL method's name (`phone.getGroupCallChainBlocks`, ...).
    pub fn method(self) -> &'static str {
        match self {
            RequestKind::GetChainBlocks => "phone.getGroupCallChainBlocks",
            RequestKind::CreateConference => "phone.createConferenceCall",
            RequestKind::Join => "phone.joinGroupCall",
            RequestKind::DeleteParticipants => "phone.deleteConferenceCallParticipants",
            RequestKind::SendBroadcast => "phone.sendConferenceCallBroadcast",
            RequestKind::SendEncryptedMessage => "phone.sendGroupCallEncryptedMessage",
            RequestKind::Leave => "phone.leaveGroupCall",
            RequestKind::GetGroupParticipants => "phone.getGroupParticipants",
        }
    }
}

impl Request {
    /// The request's kind (its TL method).
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::GetChainBlocks { .. } => RequestKind::GetChainBlocks,
            Request::CreateConference { .. } => RequestKind::CreateConference,
            Request::Join { .. } => RequestKind::Join,
            Request::DeleteParticipants { .. } => RequestKind::DeleteParticipants,
            Request::SendBroadcast { .. } => RequestKind::SendBroadcast,
            Request::SendEncryptedMessage { .. } => RequestKind::SendEncryptedMessage,
            Request::Leave => RequestKind::Leave,
            Request::GetGroupParticipants { .. } => RequestKind::GetGroupParticipants,
        }
    }
}

/// A pushed update, or one carried by a response's `Updates`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Update {
    /// `updateGroupCallChainBlocks(call, sub_chain_id, blocks, next_offset)`: `blocks[i]` has offset
    /// `next_offset - len(blocks) + i`; server form. (An update of any other `sub_chain_id` is
    /// no update of the session's: the adapters leave it out.)
    ChainBlocks {
        /// Which sub-chain (`sub_chain_id` 0: blocks, 1: broadcasts).
        sub_chain: SubChain,
        /// The blocks or broadcasts, server form.
        blocks: Vec<ServerBlock>,
        /// The offset after the last one.
        next_offset: i32,
    },
    /// `updateGroupCallEncryptedMessage(call, from_id, encrypted_message)`.
    EncryptedMessage {
        /// The sender's user id (`from_id`).
        from: i64,
        /// The encrypted message.
        encrypted_message: Vec<u8>,
    },
    /// `updateGroupCall(call: groupCall | groupCallDiscarded)`: the call's real identity (a join by
    /// link or invite message learns it here; a create response carries it), or its end.
    GroupCall {
        /// `inputGroupCall(id, access_hash)` of the call.
        call: CallIdentity,
        /// `groupCallDiscarded`: the call has ended for everyone.
        discarded: bool,
        /// `groupCall.invite_link`, where present.
        invite_link: Option<String>,
    },
    /// `updateGroupCallParticipants(call, participants, version)`: who is in the media call now,
    /// and who left it (`groupCallParticipant.left`).
    Participants {
        /// One entry per participant the update names.
        participants: Vec<CallParticipant>,
    },
}

/// `inputGroupCall(id, access_hash)`: the identity every request about a call names once known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallIdentity {
    /// `id`.
    pub id: i64,
    /// `access_hash`.
    pub access_hash: i64,
}

/// One `groupCallParticipant` (of an `updateGroupCallParticipants` or a `phone.groupParticipants`):
/// who, whether they left, which participation this is (`date`, the audio `source`, the update's
/// `version`) and the participation's media sources (what the SSRC table,
/// [`crate::sources::SourceTable`], is fed from). [`CallParticipant::new`] (or `Default`) leaves
/// everything but the user and `left` unknown (0, no sources).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CallParticipant {
    /// The participant's user id (`peer`).
    pub user_id: i64,
    /// `left`: the participation named by `sources.audio` (and `date`) has ended.
    pub left: bool,
    /// `date`: when the participation began (Unix seconds; 0: not known).
    pub date: i32,
    /// The `version` of the update that carried it (0: not known, or a `phone.groupParticipants`).
    pub version: i32,
    /// Its SSRCs; `sources.audio` is the TL `source`, which names the participation.
    pub sources: MediaSources,
}

impl CallParticipant {
    /// A participant with no sources and no date (a test's, or an application's that has only
    /// the user and whether they left).
    pub fn new(user_id: i64, left: bool) -> Self {
        CallParticipant { user_id, left, ..CallParticipant::default() }
    }

    /// The TL `source`: the audio SSRC, which names the participation (0: not known).
    pub fn source(&self) -> u32 {
        self.sources.audio
    }

    /// Whether this record and `other` are the same participation of the same user, as far as
    /// both tell: a different audio `source`, or a different `date`, where both are known, is
    /// another participation (a late notice about an earlier one; issue 30 item 5).
    pub fn same_participation(&self, other: &CallParticipant) -> bool {
        let differ = |a: i64, b: i64| a != 0 && b != 0 && a != b;
        self.user_id == other.user_id
            && !differ(self.source().into(), other.source().into())
            && !differ(self.date.into(), other.date.into())
    }

    /// Whether this record is about a participation older than `other`'s (a late notice that
    /// must not undo a rejoin): an earlier `date`, where both are known. `version` is not
    /// compared: only `versioned` records (flags.5, which this crate does not keep) are ordered
    /// by it in Telegram's apps.
    pub fn is_older_than(&self, other: &CallParticipant) -> bool {
        self.date != 0 && other.date != 0 && self.date < other.date
    }
}

/// The media sources (RTP SSRCs) of one `groupCallParticipant`: what a media stack sees a
/// participant's frames arrive on. SSRCs are the TL `int`s read as unsigned 32-bit numbers (as RTP
/// carries them); `0` is "none", as in Telegram's apps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MediaSources {
    /// `source`: the audio SSRC (0: none).
    pub audio: u32,
    /// `video` (flags.6): the camera's source groups.
    pub video: Option<VideoSources>,
    /// `presentation` (flags.14): the screencast's source groups and its audio.
    pub presentation: Option<VideoSources>,
}

/// A `groupCallParticipantVideo(endpoint, source_groups, audio_source)`, bounded: at most
/// [`MAX_SOURCE_GROUPS`](crate::limits::MAX_SOURCE_GROUPS) groups of at most
/// [`MAX_GROUP_SOURCES`](crate::limits::MAX_GROUP_SOURCES) SSRCs are kept (the official apps
/// send one `SIM` group of up to 3 and a `FID` pair per simulcast layer); the rest is read and
/// ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VideoSources {
    /// `endpoint`: the SFU's name for the stream (what video requests name).
    pub endpoint: String,
    /// `source_groups`.
    pub source_groups: Vec<SourceGroup>,
    /// `audio_source` (flags.1): a presentation's audio SSRC.
    pub audio_source: Option<u32>,
}

/// A `groupCallParticipantVideoSourceGroup(semantics, sources)`: `SIM` (simulcast layers) or
/// `FID` (a stream and its retransmission stream).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceGroup {
    /// `semantics`.
    pub semantics: String,
    /// `sources`.
    pub sources: Vec<u32>,
}

/// One participant with its media sources: the same record as [`CallParticipant`] (the name the
/// SSRC table's API used before the session carried sources).
pub type ParticipantSources = CallParticipant;

/// `phone.getGroupParticipants(call, ids: [], sources, offset: "", limit)`: who sends on these
/// SSRCs (what tgcalls' `requestMediaChannelDescriptions` makes Telegram's apps ask). Built by
/// [`crate::sources::LookupScheduler`]; the answer is a `phone.groupParticipants`
/// ([`tl::Answer::Participants`]). `limit` is the number of sources (each names at most one
/// participant).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceLookup {
    /// The SSRCs, at most [`MAX_LOOKUP_BATCH`](crate::limits::MAX_LOOKUP_BATCH).
    pub sources: Vec<u32>,
}

/// An API error, sorted once where it comes in: adapters build it from their MTProto library's
/// typed error (an RPC error's name and value, or a transport failure), or parse the error string
/// (`From<&str>` / `From<String>`, [`ApiError::parse`]).
///
/// ```
/// use confchain::api::ApiError;
/// assert_eq!(ApiError::parse("FLOOD_WAIT_30"), ApiError::FloodWait { seconds: 30 });
/// assert_eq!(ApiError::parse("FLOOD_PREMIUM_WAIT_5"), ApiError::FloodWait { seconds: 5 });
/// assert_eq!(ApiError::from("CONF_WRITE_CHAIN_INVALID"), ApiError::ChainRace);
/// assert!(ApiError::from("TIMEOUT").is_transient());
/// assert_eq!(ApiError::parse("PEER_ID_INVALID"), ApiError::Other("PEER_ID_INVALID".into()));
/// // The text round-trips: what Display prints parses back to the same error.
/// assert_eq!(ApiError::parse(ApiError::FloodWait { seconds: 7 }.to_string()), ApiError::FloodWait { seconds: 7 });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// `FLOOD_WAIT_X` / `FLOOD_PREMIUM_WAIT_X`: send no request of this kind for `seconds`.
    FloodWait {
        /// X.
        seconds: u32,
    },
    /// `CONF_WRITE_CHAIN_INVALID...`: another block won the height.
    ChainRace,
    /// `GROUPCALL_FORBIDDEN`: we are not (or no longer) a member of the call.
    Forbidden,
    /// `GROUPCALL_JOIN_MISSING`: the server no longer holds our media participant.
    JoinMissing,
    /// `GROUPCALL_INVALID`: the call does not exist (it ended).
    CallInvalid,
    /// `GROUPCALL_SSRC_DUPLICATE_MUCH`: the join's media source clashes; rejoin.
    SsrcDuplicate,
    /// A failure worth retrying: `INTERNAL...`, `RPC_CALL_FAIL`, `RPC_MCGET_FAIL`, `-503`, or a
    /// transport failure the application names (`TIMEOUT`, `NETWORK`).
    Transient(String),
    /// Anything else, as the server named it.
    Other(String),
}

impl ApiError {
    /// Sorts an error into its kind: an error string (`&str`, `String`), or an error already
    /// sorted (returned as it is).
    pub fn parse(error: impl Into<ApiError>) -> ApiError {
        error.into()
    }

    /// The error of an RPC error as MTProto libraries type it: its name without the number
    /// (`FLOOD_WAIT`) and the number (`30`), if the name had one (`FLOOD_WAIT_30`).
    ///
    /// ```
    /// use confchain::api::ApiError;
    /// assert_eq!(ApiError::from_rpc("FLOOD_WAIT", Some(30)), ApiError::FloodWait { seconds: 30 });
    /// assert_eq!(ApiError::from_rpc("GROUPCALL_FORBIDDEN", None), ApiError::Forbidden);
    /// ```
    pub fn from_rpc(name: &str, value: Option<u32>) -> ApiError {
        match value {
            Some(v) => ApiError::sort(&format!("{name}_{v}")),
            None => ApiError::sort(name),
        }
    }

    /// Sorts an error string into its kind.
    fn sort(error: &str) -> ApiError {
        const TRANSIENT: [&str; 6] = ["INTERNAL", "RPC_CALL_FAIL", "RPC_MCGET_FAIL", "TIMEOUT", "NETWORK", "-503"];
        let flood = error.strip_prefix("FLOOD_WAIT_").or_else(|| error.strip_prefix("FLOOD_PREMIUM_WAIT_"));
        // X is digits only; a wait too long for a u32 is the longest wait (it still ends the
        // operation with the typed reason, where a parse failure would make it another error).
        if let Some(x) = flood.filter(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit())) {
            return ApiError::FloodWait { seconds: x.parse().unwrap_or(u32::MAX) };
        }
        match error {
            e if e.starts_with("CONF_WRITE_CHAIN_INVALID") => ApiError::ChainRace,
            "GROUPCALL_FORBIDDEN" => ApiError::Forbidden,
            "GROUPCALL_JOIN_MISSING" => ApiError::JoinMissing,
            "GROUPCALL_INVALID" => ApiError::CallInvalid,
            "GROUPCALL_SSRC_DUPLICATE_MUCH" => ApiError::SsrcDuplicate,
            e if TRANSIENT.iter().any(|p| e.starts_with(p)) => ApiError::Transient(e.to_owned()),
            e => ApiError::Other(e.to_owned()),
        }
    }

    /// Whether the same request may well succeed later (a flood wait, after its wait).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Transient(_) | ApiError::FloodWait { .. })
    }
}

impl From<&str> for ApiError {
    /// Parses an error string (see [`ApiError`]).
    fn from(error: &str) -> ApiError {
        ApiError::sort(error)
    }
}

impl From<String> for ApiError {
    /// Parses an error string (see [`ApiError`]).
    fn from(error: String) -> ApiError {
        ApiError::sort(&error)
    }
}

impl From<&String> for ApiError {
    /// Parses an error string (see [`ApiError`]).
    fn from(error: &String) -> ApiError {
        ApiError::sort(error)
    }
}

impl From<&ApiError> for ApiError {
    /// The same error (so that [`ApiError::parse`] takes an error already sorted).
    fn from(error: &ApiError) -> ApiError {
        error.clone()
    }
}

impl PartialEq<&str> for ApiError {
    /// Whether the error string `other` is this error (once parsed).
    fn eq(&self, other: &&str) -> bool {
        *self == ApiError::sort(other)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::FloodWait { seconds } => write!(f, "FLOOD_WAIT_{seconds}"),
            ApiError::ChainRace => f.write_str("CONF_WRITE_CHAIN_INVALID"),
            ApiError::Forbidden => f.write_str("GROUPCALL_FORBIDDEN"),
            ApiError::JoinMissing => f.write_str("GROUPCALL_JOIN_MISSING"),
            ApiError::CallInvalid => f.write_str("GROUPCALL_INVALID"),
            ApiError::SsrcDuplicate => f.write_str("GROUPCALL_SSRC_DUPLICATE_MUCH"),
            ApiError::Transient(e) | ApiError::Other(e) => f.write_str(e),
        }
    }
}

/// The outcome of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Success, with the updates the result carried (`Updates` results), or none (`Bool`).
    Ok(Vec<Update>),
    /// The API error (`CONF_WRITE_CHAIN_INVALID`, `GROUPCALL_FORBIDDEN`, `FLOOD_WAIT_3`, ...), or a
    /// transport failure the application names (`TIMEOUT`, `NETWORK`): built from the MTProto
    /// library's typed error, or parsed from its text (`Response::Error("TIMEOUT".into())`).
    Error(ApiError),
}
