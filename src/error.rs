//! The one error type of confchain.
//!
//! Every failure is an [`Error`]: a [`ErrorKind`] plus a human-readable message. Where the reference
//! implementation (`tde2e`) has an error code, [`Error::code`] returns its name (for example
//! `INVALID_BLOCK__HEIGHT_MISMATCH`) and [`Error::numeric_code`] its number; the reference's codeless
//! failures (parse errors, "Shared key is already set", replayed packets, ...) get a distinct
//! [`ErrorKind`] of their own so callers can still match on them.

use std::fmt;

/// What went wrong, in protocol terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `INVALID_BLOCK` (200): a block that cannot start a chain (negative height).
    InvalidBlock,
    /// `INVALID_BLOCK__NO_CHANGES` (201).
    NoChanges,
    /// `INVALID_BLOCK__INVALID_SIGNATURE` (202): a block or broadcast signature does not verify.
    InvalidSignature,
    /// `INVALID_BLOCK__HASH_MISMATCH` (203).
    HashMismatch,
    /// `INVALID_BLOCK__HEIGHT_MISMATCH` (204).
    HeightMismatch,
    /// `INVALID_BLOCK__INVALID_STATE_PROOF__GROUP` (205).
    InvalidStateProofGroup,
    /// `INVALID_BLOCK__INVALID_STATE_PROOF__SECRET` (206).
    InvalidStateProofSecret,
    /// `INVALID_BLOCK__NO_PERMISSIONS` (207).
    NoPermissions,
    /// `INVALID_BLOCK__INVALID_GROUP_STATE` (208).
    InvalidGroupState,
    /// `INVALID_BLOCK__INVALID_SHARED_SECRET` (209).
    InvalidSharedSecret,
    /// `INVALID_CALL_GROUP_STATE__NOT_PARTICIPANT` (300): our key is not in the group.
    NotParticipant,
    /// `INVALID_CALL_GROUP_STATE__WRONG_USER_ID` (301): our key is in the group under another user id.
    WrongUserId,
    /// `DECRYPT__UNKNOWN_EPOCH` (400).
    DecryptUnknownEpoch,
    /// `ENCRYPT__UNKNOWN_EPOCH` (401): no epoch to encrypt with (e.g. we were removed).
    EncryptUnknownEpoch,
    /// `INVALID_BROADCAST__IN_FUTURE` (500).
    BroadcastInFuture,
    /// `INVALID_BROADCAST__NOT_IN_COMMIT` (501).
    BroadcastNotInCommit,
    /// `INVALID_BROADCAST__NOT_IN_REVEAL` (502).
    BroadcastNotInReveal,
    /// `INVALID_BROADCAST__UNKNOWN_USER_ID` (503).
    BroadcastUnknownUserId,
    /// `INVALID_BROADCAST__ALREADY_APPLIED` (504).
    BroadcastAlreadyApplied,
    /// `INVALID_BROADCAST__INVALID_REVEAL` (505).
    BroadcastInvalidReveal,
    /// `INVALID_BROADCAST__INVALID_BLOCK_HASH` (506).
    BroadcastInvalidBlockHash,
    /// `INVALID_CALL_CHANNEL_ID` (600).
    InvalidCallChannelId,
    /// `CALL_FAILED` (601).
    CallFailed,
    /// `CALL_KEY_ALREADY_USED` (602).
    CallKeyAlreadyUsed,

    // ---- codeless kinds (the reference's API reports these as UNKNOWN_ERROR = 100 with a message) ----
    /// Malformed TL: truncated input, trailing bytes, unknown constructor, bad lengths.
    Parse,
    /// A plain-form block or broadcast where the server form was expected.
    NotFromServer,
    /// The block has no signer key and the current state has no participant to default to.
    UnknownPublicKey,
    /// A `SetSharedKey` change while a shared key is already set.
    SharedKeyAlreadySet,
    /// A size limit of confchain was exceeded (see `limits`).
    LimitExceeded,
    /// Authenticated decryption failed (MAC mismatch, bad prefix, bad sizes).
    Decrypt,
    /// A call packet is malformed (too small, bad header, bad version, too many epochs).
    InvalidPacket,
    /// A call packet claims to be ours.
    OwnPacket,
    /// A call packet was already processed, or is older than the replay window.
    Replay,
    /// The named user (or key) is not a participant.
    ParticipantNotFound,
    /// A caller-supplied argument is invalid (wrong key size, prefix longer than data, ...).
    InvalidInput,
    /// The group key could not be recovered from the shared key.
    InvalidSharedKey,
    /// An Ed25519 signature does not verify where the reference reports it without a code (call
    /// packets); blocks and broadcasts report [`ErrorKind::InvalidSignature`] instead.
    WrongSignature,
    /// We hold no key for the current block: it lists us, but our key header could not be read
    /// (see [`crate::CallEvent::KeyUnavailable`]). Encrypting resumes once a later block gives us a key.
    KeyUnavailable,
    /// A shared secret cannot be computed with a public key ("Failed to compute modulo inverse",
    /// "Failed to compute shared secret").
    SharedSecret,
    /// A one-to-one call's Diffie-Hellman check failed (configuration, range, hash, fingerprint).
    DhCheck,
    /// The call was closed ([`crate::Call::close`]: left, removed, ended, its chain rejected, or
    /// dropped): it and every media handle taken from it refuse to encrypt, decrypt or build.
    CallClosed,
    /// An H.264 frame was dropped: each of its [`crate::frame::MAX_ATTEMPTS`] encryptions put a NAL
    /// start code (`00 00 01`) in the ciphertext, which WebRTC's packetizer would split the frame
    /// at (confchain's own name, `FRAME__START_CODE`; tgcalls drops such a frame silently).
    FrameStartCode,
    /// A frame decrypted to nothing: the official apps treat an empty result as a failure and
    /// drop the frame (confchain's own name, `FRAME__EMPTY`).
    FrameEmpty,
    /// The session's outbox holds `SessionConfig::max_queued_messages` undelivered messages
    /// already: the message is refused (not queued, not dropped later); send it again once some
    /// were delivered or given up ([`crate::session::Session::queued_messages`]).
    OutboxFull,
    /// A frame came on an RTP SSRC the source table ([`crate::sources`]) does not map to a
    /// member (not known yet, or stale: its participant left or moved it): it is dropped, never
    /// tried against every key (confchain's own name, `FRAME__UNKNOWN_SOURCE`).
    FrameUnknownSource,
    /// A session call made in a state that does not allow it (`SESSION__WRONG_STATE`): sending a
    /// message, removing or re-keying outside the call, joining while joining, in the call or
    /// leaving. The message names the call and the state ([`crate::session::Session::state`]).
    WrongState,
}

impl ErrorKind {
    /// The reference's error code name, where it has one.
    pub fn code(self) -> Option<&'static str> {
        use ErrorKind::*;
        Some(match self {
            InvalidBlock => "INVALID_BLOCK",
            NoChanges => "INVALID_BLOCK__NO_CHANGES",
            InvalidSignature => "INVALID_BLOCK__INVALID_SIGNATURE",
            HashMismatch => "INVALID_BLOCK__HASH_MISMATCH",
            HeightMismatch => "INVALID_BLOCK__HEIGHT_MISMATCH",
            InvalidStateProofGroup => "INVALID_BLOCK__INVALID_STATE_PROOF__GROUP",
            InvalidStateProofSecret => "INVALID_BLOCK__INVALID_STATE_PROOF__SECRET",
            NoPermissions => "INVALID_BLOCK__NO_PERMISSIONS",
            InvalidGroupState => "INVALID_BLOCK__INVALID_GROUP_STATE",
            InvalidSharedSecret => "INVALID_BLOCK__INVALID_SHARED_SECRET",
            NotParticipant => "INVALID_CALL_GROUP_STATE__NOT_PARTICIPANT",
            WrongUserId => "INVALID_CALL_GROUP_STATE__WRONG_USER_ID",
            DecryptUnknownEpoch => "DECRYPT__UNKNOWN_EPOCH",
            EncryptUnknownEpoch => "ENCRYPT__UNKNOWN_EPOCH",
            BroadcastInFuture => "INVALID_BROADCAST__IN_FUTURE",
            BroadcastNotInCommit => "INVALID_BROADCAST__NOT_IN_COMMIT",
            BroadcastNotInReveal => "INVALID_BROADCAST__NOT_IN_REVEAL",
            BroadcastUnknownUserId => "INVALID_BROADCAST__UNKNOWN_USER_ID",
            BroadcastAlreadyApplied => "INVALID_BROADCAST__ALREADY_APPLIED",
            BroadcastInvalidReveal => "INVALID_BROADCAST__INVALID_REVEAL",
            BroadcastInvalidBlockHash => "INVALID_BROADCAST__INVALID_BLOCK_HASH",
            InvalidCallChannelId => "INVALID_CALL_CHANNEL_ID",
            CallFailed => "CALL_FAILED",
            CallKeyAlreadyUsed => "CALL_KEY_ALREADY_USED",
            _ => return None,
        })
    }

    /// A stable name for every kind: the reference code where there is one, else a confchain name
    /// such as `PARSE` or `REPLAY`.
    pub fn name(self) -> &'static str {
        use ErrorKind::*;
        if let Some(code) = self.code() {
            return code;
        }
        match self {
            Parse => "PARSE",
            NotFromServer => "NOT_FROM_SERVER",
            UnknownPublicKey => "UNKNOWN_PUBLIC_KEY",
            SharedKeyAlreadySet => "SHARED_KEY_ALREADY_SET",
            LimitExceeded => "LIMIT_EXCEEDED",
            Decrypt => "DECRYPT",
            InvalidPacket => "INVALID_PACKET",
            OwnPacket => "OWN_PACKET",
            Replay => "REPLAY",
            ParticipantNotFound => "PARTICIPANT_NOT_FOUND",
            InvalidInput => "INVALID_INPUT",
            InvalidSharedKey => "INVALID_SHARED_KEY",
            WrongSignature => "WRONG_SIGNATURE",
            SharedSecret => "SHARED_SECRET",
            KeyUnavailable => "KEY_UNAVAILABLE",
            DhCheck => "DH_CHECK",
            CallClosed => "CALL_CLOSED",
            FrameStartCode => "FRAME__START_CODE",
            FrameEmpty => "FRAME__EMPTY",
            OutboxFull => "OUTBOX_FULL",
            FrameUnknownSource => "FRAME__UNKNOWN_SOURCE",
            WrongState => "SESSION__WRONG_STATE",
            _ => "UNKNOWN_ERROR",
        }
    }

    /// The reference's numeric code (`tde2e_api::ErrorCode`). Every kind without a code name maps
    /// to 100 (`UNKNOWN_ERROR`), as the reference's API reports them; [`ErrorKind::name`] tells
    /// them apart.
    pub fn numeric_code(self) -> i32 {
        use ErrorKind::*;
        match self {
            InvalidBlock => 200,
            NoChanges => 201,
            InvalidSignature => 202,
            HashMismatch => 203,
            HeightMismatch => 204,
            InvalidStateProofGroup => 205,
            InvalidStateProofSecret => 206,
            NoPermissions => 207,
            InvalidGroupState => 208,
            InvalidSharedSecret => 209,
            NotParticipant => 300,
            WrongUserId => 301,
            DecryptUnknownEpoch => 400,
            EncryptUnknownEpoch => 401,
            BroadcastInFuture => 500,
            BroadcastNotInCommit => 501,
            BroadcastNotInReveal => 502,
            BroadcastUnknownUserId => 503,
            BroadcastAlreadyApplied => 504,
            BroadcastInvalidReveal => 505,
            BroadcastInvalidBlockHash => 506,
            InvalidCallChannelId => 600,
            CallFailed => 601,
            CallKeyAlreadyUsed => 602,
            _ => UNKNOWN_ERROR,
        }
    }
}

/// The reference's numeric code for every error without a code name.
pub const UNKNOWN_ERROR: i32 = 100;

/// A confchain error: a kind and a message (the reference's wording where it has one).
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    participant: Option<i64>,
}

impl Error {
    /// An error of `kind` with the given message. Coded kinds prefix the message with the code,
    /// as the reference does (`INVALID_BLOCK__NO_PERMISSIONS: Can't add users`).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match kind.code() {
            Some(code) if message.is_empty() => code.to_owned(),
            Some(code) => format!("{code}: {message}"),
            None => message,
        };
        Error { kind, message, participant: None }
    }

    /// The same error, naming the participant (user id) it is about: a builder that cannot
    /// compute a key header names the entry whose key blocks it (the message stays the
    /// reference's).
    pub fn with_participant(mut self, user_id: i64) -> Self {
        self.participant = Some(user_id);
        self
    }

    /// The participant the error is about, when one is named ([`Error::with_participant`]): for
    /// [`ErrorKind::SharedSecret`] from a builder, the entry whose key no one can use.
    pub fn participant(&self) -> Option<i64> {
        self.participant
    }

    /// An error of `kind` whose message is just its name.
    pub fn bare(kind: ErrorKind) -> Self {
        Error::new(kind, if kind.code().is_some() { "" } else { kind.name() })
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The reference's code name (`INVALID_BLOCK__HASH_MISMATCH`, ...), or `None` for codeless errors.
    pub fn code(&self) -> Option<&'static str> {
        self.kind.code()
    }

    /// The reference's numeric code (see [`ErrorKind::numeric_code`]).
    pub fn numeric_code(&self) -> i32 {
        self.kind.numeric_code()
    }

    /// The full message, as the reference would word it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}: {:?})", self.kind.name(), self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Shorthand for `Result<T, confchain::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coded_messages_carry_the_code() {
        let e = Error::new(ErrorKind::NoPermissions, "Can't add users");
        assert_eq!(e.message(), "INVALID_BLOCK__NO_PERMISSIONS: Can't add users");
        assert_eq!(e.code(), Some("INVALID_BLOCK__NO_PERMISSIONS"));
        assert_eq!(e.numeric_code(), 207);
        assert_eq!(Error::bare(ErrorKind::HashMismatch).message(), "INVALID_BLOCK__HASH_MISMATCH");
        let p = Error::new(ErrorKind::Parse, "Too much data to fetch at 700");
        assert_eq!(p.code(), None);
        assert_eq!(p.kind().name(), "PARSE");
    }
}
