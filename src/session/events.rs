//! What the session tells the application: [`SessionEvent`]s, typed (no strings to parse).

use crate::api::{ApiError, CallIdentity, RequestKind};
use crate::error::Error;

/// Why a join (or create) ended without joining.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinFailure {
    /// Another block kept winning the height (`CONF_WRITE_CHAIN_INVALID`), or the server kept
    /// failing (transient errors, deadlines), after every attempt.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
    },
    /// The server asked for a `FLOOD_WAIT_X` longer than `SessionConfig::max_flood_wait_s`.
    FloodWait {
        /// X, in seconds.
        seconds: u32,
    },
    /// The server refused with this error (`GROUPCALL_FORBIDDEN`, `GROUPCALL_INVALID`, ...).
    Api(ApiError),
    /// The server's answer was unusable (no tip, a tip we cannot build on, a join response that
    /// does not hold our block).
    InvalidResponse(String),
    /// The call's state holds an entry whose key no one can compute a shared secret with (the
    /// identity or another small-order point, issue 30 item 1), so no self-add can be built on
    /// it; the join retried while a member could remove it, and it stayed.
    UnusableKey {
        /// The user id of the entry.
        user_id: i64,
    },
}

/// Why the call ended for us (distinct from being removed and from leaving).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// `updateGroupCall` with `groupCallDiscarded`: the call ended for everyone.
    Discarded,
    /// `GROUPCALL_JOIN_MISSING`: the server no longer holds our media participant (tdlib leaves).
    JoinMissing,
    /// `GROUPCALL_INVALID`: the call no longer exists.
    CallInvalid,
}

/// Why a send (broadcast, message, removal, prune, re-key) was given up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendFailure {
    /// The server's error, after the retries it deserved (a flood wait longer than the maximum
    /// is reported at once, as `ApiError::FloodWait`).
    Api(ApiError),
    /// Building the block failed here (e.g. no permission to remove).
    Local(Error),
}

/// What happened, for the application (pull with [`crate::session::Session::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// `createConferenceCall` without joining succeeded; the chain is empty until someone joins.
    /// Carries what the response told of the new call (from its `updateGroupCall`).
    Created {
        /// `inputGroupCall(id, access_hash)`, if the response carried it.
        call: Option<CallIdentity>,
        /// The invite link, if the response carried one.
        invite_link: Option<String>,
    },
    /// The call's identity, learnt (or its access hash or invite link changed) from
    /// `updateGroupCall`: name it in every later request
    /// ([`crate::session::Session::call_identity`]). Once the call's id is known, updates naming
    /// another call id are ignored; [`crate::session::Session::create`] forgets it.
    CallIdentity {
        /// `inputGroupCall(id, access_hash)`.
        call: CallIdentity,
        /// The invite link, where present.
        invite_link: Option<String>,
    },
    /// We are in the call at this height (after a join, a create with join, or a rejoin).
    Joined {
        /// Height of the last block applied.
        height: i32,
    },
    /// The join ended without joining.
    JoinFailed {
        /// Why.
        reason: JoinFailure,
    },
    /// A new block gave us a new key (or none: `fingerprint` is `None` while we hold no key).
    KeyChanged {
        /// Height of the block.
        height: i32,
        /// Fingerprint of the new key.
        fingerprint: Option<String>,
    },
    /// The block at `height` lists us but our key cannot be read from it: encrypting fails until
    /// a later block gives us a key.
    KeyUnavailable {
        /// Height of the block.
        height: i32,
        /// Why.
        error: Error,
    },
    /// The chain's participants changed (sorted user ids): what to show as the call's members.
    ParticipantsChanged {
        /// The participants.
        user_ids: Vec<i64>,
    },
    /// A verification round started for a new block (the words are known at once).
    VerificationStarted {
        /// Height of the block.
        height: i32,
        /// Its 24 verification words.
        words: Vec<&'static str>,
    },
    /// The round for this block completed: everyone sees these emojis.
    VerificationDone {
        /// Height of the block.
        height: i32,
        /// The four emojis.
        emojis: [&'static str; 4],
    },
    /// The call's epochs black out H.264 video (`now`), or will once the block at `height` is
    /// the oldest active one ([`crate::Event::VideoBlackout`]). With
    /// [`crate::session::SessionConfig::end_video_blackouts`], a member with the rights re-keys
    /// after a short random delay (unless someone did first).
    VideoBlackout {
        /// Height of the block.
        height: i32,
        /// Whether H.264 frames are dropped already.
        now: bool,
    },
    /// A `groupCallMessage` arrived (deduplicated by sender and `random_id`).
    MessageReceived {
        /// The sender.
        from: i64,
        /// The JSON text.
        json: String,
    },
    /// An encrypted message could not be read (not our own echo or a replay, which are silent).
    MessageDropped {
        /// The sender the server named.
        from: i64,
        /// Why.
        error: Error,
    },
    /// A pushed block was refused by the chain rules: the session fetches the blocks from its
    /// own next height and applies them one by one (state `Resyncing`); nothing is trusted.
    BlockRefused {
        /// The height the block claimed to extend to (our height + 1).
        height: i32,
        /// The rule it broke.
        error: Error,
    },
    /// The server's own chain (a poll or join answer) holds a block our rules refuse: the session
    /// **failed closed**. The call is closed (every media handle too), the media call is left
    /// (`leaveGroupCall`, so no ghost member stays) and nothing else is sent; only an explicit [`crate::session::Session::join`] (a new key, trusting the server's tip as
    /// every first join does) continues.
    ChainRejected {
        /// The height of the refused block (our height + 1).
        height: i32,
        /// The rule it broke.
        error: Error,
    },
    /// The chain holds an entry whose key no one can compute a shared secret with (the identity
    /// or another small-order point: a poisoned self-add, issue 30 item 1). The chain rules accept
    /// it, as the reference's do, but no block that keeps it can be built: no join, re-key or
    /// removal succeeds until it is removed. A member with the remove permission removes it
    /// (with `kick`, after a short delay spread over members); the others wait. Told once per
    /// entry.
    UnusableKey {
        /// The user id of the entry.
        user_id: i64,
        /// The height at which it was seen.
        height: i32,
    },
    /// A send was given up.
    SendFailed {
        /// What kind of request.
        kind: RequestKind,
        /// Why.
        reason: SendFailure,
    },
    /// We are no longer in the call: a block removed us (`height`), or the server refused us with
    /// `GROUPCALL_FORBIDDEN` (`None`). Encrypting has stopped (the call is closed) and the session
    /// sent `leaveGroupCall`: tear down the media call. [`crate::session::Session::join`] rejoins
    /// with a new key.
    Removed {
        /// The height of the block that removed us, if a block did.
        height: Option<i32>,
    },
    /// The call ended (discarded, or the server lost our participant or the call): encrypting
    /// has stopped; tear down the media call.
    Ended {
        /// Why.
        reason: EndReason,
    },
    /// We left (after [`crate::session::Session::leave`]).
    Left,
}
