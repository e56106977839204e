//! What the session tells the application: [`SessionEvent`]s, typed (no strings to parse).

use crate::api::{ApiError, CallIdentity, RequestKind};
use crate::error::Error;
use crate::sources::{Source, UnresolvedReason};

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
    /// the oldest active one ([`crate::CallEvent::VideoBlackout`]). With
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
    /// `ssrc` is now `source`'s (a participant record named it: an update, the join's answer,
    /// or a lookup's answer); `previous` is whose it was, if anyone's (an SSRC moved to a new
    /// participation). [`crate::session::Session::source_map`] has it already.
    SourceMapped {
        /// The SSRC.
        ssrc: u32,
        /// Its sender now.
        source: Source,
        /// Its sender before.
        previous: Option<Source>,
    },
    /// `ssrc` is nobody's any more (its participant left, stopped that media, or the call ended).
    SourceUnmapped {
        /// The SSRC.
        ssrc: u32,
        /// Whose it was.
        source: Source,
    },
    /// Frames came on `ssrc`, which no participant record names, and the session gave it up:
    /// its frames are dropped ([`crate::ErrorKind::FrameUnknownSource`]) until a record names it.
    SourceUnresolved {
        /// The SSRC.
        ssrc: u32,
        /// Why.
        reason: UnresolvedReason,
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

impl std::fmt::Display for JoinFailure {
    /// A stable name, then the detail: `retries_exhausted: 5 attempts`, `flood_wait: 100000 s`,
    /// `api: GROUPCALL_FORBIDDEN`, `invalid_response: ...`, `unusable_key: user 7`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinFailure::RetriesExhausted { attempts } => write!(f, "retries_exhausted: {attempts} attempts"),
            JoinFailure::FloodWait { seconds } => write!(f, "flood_wait: {seconds} s"),
            JoinFailure::Api(e) => write!(f, "api: {e}"),
            JoinFailure::InvalidResponse(why) => write!(f, "invalid_response: {why}"),
            JoinFailure::UnusableKey { user_id } => write!(f, "unusable_key: user {user_id}"),
        }
    }
}

impl EndReason {
    /// A stable name: `discarded`, `join_missing` or `call_invalid`.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Discarded => "discarded",
            EndReason::JoinMissing => "join_missing",
            EndReason::CallInvalid => "call_invalid",
        }
    }
}

impl std::fmt::Display for EndReason {
    /// [`EndReason::name`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for SendFailure {
    /// `api: ` and the server's error (`api: FLOOD_WAIT_30`), or `local: ` and what failed here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::Api(e) => write!(f, "api: {e}"),
            SendFailure::Local(e) => write!(f, "local: {e}"),
        }
    }
}

/// The stable name of a request kind, as the bindings spell it (`send_broadcast`, ...).
fn request_name(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::GetChainBlocks => "get_chain_blocks",
        RequestKind::CreateConference => "create_conference",
        RequestKind::Join => "join",
        RequestKind::DeleteParticipants => "delete_participants",
        RequestKind::SendBroadcast => "send_broadcast",
        RequestKind::SendEncryptedMessage => "send_encrypted_message",
        RequestKind::Leave => "leave",
        RequestKind::GetGroupParticipants => "get_group_participants",
    }
}

/// One value an event carries, for the bindings ([`SessionEvent::describe`]). Each binding maps
/// these few kinds of value onto its own event shape once (C: `height`, `from_id`, `text`,
/// `user_ids`; Python and JavaScript: named fields), so a new event is one edit here.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventField {
    /// The block height the event is about.
    Height(i32),
    /// A user: a message's sender, the owner of an unusable key.
    User(i64),
    /// User ids: the chain's participants, sorted.
    UserIds(Vec<i64>),
    /// The call's identity (bindings carry it as the user ids `[id, access_hash]`).
    Call(CallIdentity),
    /// A key's fingerprint.
    Fingerprint(String),
    /// Text: a message's JSON, an invite link, or a reason or error with a stable name first
    /// (never Rust's `Debug` output).
    Text(String),
    /// The 24 verification words.
    Words(Vec<&'static str>),
    /// The four emojis.
    Emojis([&'static str; 4]),
    /// Whether H.264 frames are dropped already (`now`) or will be (`ahead`).
    Now(bool),
}

/// A [`SessionEvent`] described for the bindings: its stable name and number, and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventDescription {
    /// The stable name: `created`, `call_identity`, `joined`, `join_failed`, `key_changed`,
    /// `participants_changed`, `verification_started`, `verification_done`, `video_blackout`,
    /// `message_received`, `chain_rejected`, `unusable_key`, `source_mapped`, `source_unmapped`,
    /// `source_unresolved`, `removed`, `ended`, `left`, or
    /// `error` for what is only worth logging (a refused push, a key we cannot read, a dropped
    /// message, a send given up).
    pub name: &'static str,
    /// The stable number (the C binding's `CONFCHAIN_SESSION_*`).
    pub code: i32,
    /// The values it carries; a value the event does not have (no invite link, no key, a
    /// removal by the server rather than a block) is left out.
    pub fields: Vec<EventField>,
}

impl SessionEvent {
    /// The event as the bindings pass it on: one description instead of a mapping per binding.
    ///
    /// ```
    /// use confchain::session::{EventField, SessionEvent};
    /// let d = SessionEvent::Joined { height: 3 }.describe();
    /// assert_eq!((d.name, d.code, d.fields), ("joined", 2, vec![EventField::Height(3)]));
    /// ```
    pub fn describe(self) -> EventDescription {
        use EventField::{Call, Emojis, Fingerprint, Height, Now, Text, User, UserIds, Words};
        let (name, code, fields) = match self {
            SessionEvent::Created { call, invite_link } => {
                ("created", 1, call.map(Call).into_iter().chain(invite_link.map(Text)).collect())
            }
            SessionEvent::Joined { height } => ("joined", 2, vec![Height(height)]),
            SessionEvent::JoinFailed { reason } => ("join_failed", 3, vec![Text(reason.to_string())]),
            SessionEvent::KeyChanged { height, fingerprint } => {
                ("key_changed", 4, [Height(height)].into_iter().chain(fingerprint.map(Fingerprint)).collect())
            }
            SessionEvent::ParticipantsChanged { user_ids } => ("participants_changed", 5, vec![UserIds(user_ids)]),
            SessionEvent::VerificationStarted { height, words } => {
                ("verification_started", 6, vec![Height(height), Words(words)])
            }
            SessionEvent::VerificationDone { height, emojis } => {
                ("verification_done", 7, vec![Height(height), Emojis(emojis)])
            }
            SessionEvent::MessageReceived { from, json } => ("message_received", 8, vec![User(from), Text(json)]),
            SessionEvent::Removed { height } => ("removed", 9, height.map(Height).into_iter().collect()),
            SessionEvent::Left => ("left", 10, vec![]),
            SessionEvent::BlockRefused { height, error } => {
                ("error", 11, vec![Height(height), Text(format!("block refused: {error}"))])
            }
            SessionEvent::KeyUnavailable { height, error } => {
                ("error", 11, vec![Height(height), Text(format!("no key: {error}"))])
            }
            SessionEvent::MessageDropped { from, error } => {
                ("error", 11, vec![User(from), Text(format!("message dropped: {error}"))])
            }
            SessionEvent::SendFailed { kind, reason } => {
                ("error", 11, vec![Text(format!("{} not sent: {reason}", request_name(kind)))])
            }
            SessionEvent::Ended { reason } => ("ended", 12, vec![Text(reason.name().to_owned())]),
            SessionEvent::ChainRejected { height, error } => {
                ("chain_rejected", 13, vec![Height(height), Text(error.to_string())])
            }
            SessionEvent::CallIdentity { call, invite_link } => {
                ("call_identity", 14, [Call(call)].into_iter().chain(invite_link.map(Text)).collect())
            }
            SessionEvent::VideoBlackout { height, now } => ("video_blackout", 15, vec![Height(height), Now(now)]),
            SessionEvent::UnusableKey { user_id, height } => ("unusable_key", 16, vec![User(user_id), Height(height)]),
            SessionEvent::SourceMapped { ssrc, source, .. } => {
                ("source_mapped", 17, vec![User(source.user_id), Text(format!("{}: {ssrc}", source.kind.name()))])
            }
            SessionEvent::SourceUnmapped { ssrc, source } => {
                ("source_unmapped", 18, vec![User(source.user_id), Text(format!("{}: {ssrc}", source.kind.name()))])
            }
            SessionEvent::SourceUnresolved { ssrc, reason } => {
                ("source_unresolved", 19, vec![Text(format!("{}: {ssrc}", reason.name()))])
            }
        };
        EventDescription { name, code, fields }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn reasons_read_as_a_stable_name_then_the_detail() {
        let texts = |e: SessionEvent| e.describe().fields;
        let join = |reason| texts(SessionEvent::JoinFailed { reason });
        assert_eq!(join(JoinFailure::FloodWait { seconds: 9 }), vec![EventField::Text("flood_wait: 9 s".into())]);
        assert_eq!(
            join(JoinFailure::Api(ApiError::Forbidden)),
            vec![EventField::Text("api: GROUPCALL_FORBIDDEN".into())]
        );
        assert_eq!(
            texts(SessionEvent::SendFailed {
                kind: RequestKind::SendBroadcast,
                reason: SendFailure::Local(Error::new(ErrorKind::InvalidInput, "no right"))
            }),
            vec![EventField::Text("send_broadcast not sent: local: no right".into())]
        );
        assert_eq!(
            texts(SessionEvent::Ended { reason: EndReason::JoinMissing }),
            vec![EventField::Text("join_missing".into())]
        );
    }

    #[test]
    fn values_an_event_lacks_are_left_out() {
        let d = SessionEvent::Removed { height: None }.describe();
        assert_eq!((d.name, d.code, d.fields), ("removed", 9, vec![]));
        let d = SessionEvent::KeyChanged { height: 4, fingerprint: None }.describe();
        assert_eq!(d.fields, vec![EventField::Height(4)]);
    }
}
