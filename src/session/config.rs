//! The session's tunables, validated once by [`crate::session::Session::new`].

use crate::error::{Error, ErrorKind, Result};
use crate::limits::HELD_BROADCAST_HEIGHTS;

fn invalid(why: String) -> Error {
    Error::new(ErrorKind::InvalidInput, why)
}

/// Tunables; the defaults follow tdlib where it is sound (SPEC.md §15). Out-of-range values are
/// refused by [`crate::session::Session::new`] ([`SessionConfig::validate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Poll period of each sub-chain while nothing arrives (tdlib: 10 s); 1 s to 1 hour.
    pub poll_interval_ms: u64,
    /// Page size of polls (tdlib: 100), 1 to 1,000; a full page that advanced the offset is
    /// followed by another poll at once.
    pub poll_limit: i32,
    /// Attempts of a join (or removal) against `CONF_WRITE_CHAIN_INVALID` (tdlib: unlimited); 1 to 1,000.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `max_backoff_ms` (tdlib: none); at least 1 ms.
    pub backoff_ms: u64,
    /// Longest retry delay; at least `backoff_ms`, at most 1 hour.
    pub max_backoff_ms: u64,
    /// Attempts of a broadcast or message send on transient errors; 1 to 1,000.
    pub max_send_attempts: u32,
    /// Largest `groupCallMessage` JSON sent or accepted, in bytes; 1 byte to 1 MiB.
    pub max_message_bytes: usize,
    /// Updates (and messages) kept while a join is in flight, and blocks held beyond a gap per
    /// sub-chain; 1 to 65,536.
    pub max_buffered_updates: usize,
    /// Bytes of those updates (and of the held blocks, per sub-chain); 1 KiB to 256 MiB.
    pub max_buffered_bytes: usize,
    /// Message `(sender, random_id)` pairs remembered for deduplication; at most 1,048,576.
    pub max_remembered_messages: usize,
    /// Deadline of every request: past it the session behaves as if `TIMEOUT` had come back, and a
    /// late response is ignored; 1 s to 1 hour.
    pub request_timeout_ms: u64,
    /// Longest `FLOOD_WAIT_X` (and `FLOOD_PREMIUM_WAIT_X`) a join or send waits out, in seconds;
    /// a longer one ends the operation with a reason that carries X. At most 1 day.
    pub max_flood_wait_s: u32,
    /// Remove chain participants that `updateGroupCallParticipants` says left the call, with
    /// `only_left` (a member's duty, as tdlib does); off for applications that prune themselves.
    pub prune_left: bool,
    /// Most random delay before pruning, so that members do not all race for the same block; at
    /// most 1 minute.
    pub max_prune_delay_ms: u64,
    /// End H.264 blackouts ([`crate::CallEvent::VideoBlackout`]): blocks this session builds are
    /// built again while their hash would black out H.264 video (a few tries: 1 build in 256 needs
    /// a second), and a member with the rights re-keys (after a random delay of at most
    /// `max_prune_delay_ms`) when a block from anyone else would. Off, the session behaves as the
    /// official apps do (which never avoid one).
    pub end_video_blackouts: bool,
    /// Pace of the outbox: requests per second the session lets out once its burst is spent
    /// (SPEC.md §15.2); 1 to 50. Every request waits for it (a leave excepted: it goes at once and
    /// delays the rest), so what piled up during an outage leaves at this rate, not in one burst.
    pub max_requests_per_second: u32,
    /// Requests the outbox lets out at one instant after a quiet spell; 1 to 50. Within any one
    /// second at most `max_request_burst + max_requests_per_second` requests leave (defaults: 30,
    /// a third of the simulator's bound of 100).
    pub max_request_burst: u32,
    /// Messages of the application the session holds undelivered (waiting for the pace, not taken
    /// yet, in flight, or waiting for a retry); `send_message` refuses one more with
    /// [`ErrorKind::OutboxFull`]. 1 to 4,096.
    pub max_queued_messages: usize,
    /// The largest call the application takes part in: `conference_call_size_limit` from
    /// `help.getAppConfig` (200 in the public configs; Telegram Desktop assumes 100 when the key
    /// is missing); 2 to 10,000. The caps that grow with the call are derived from it (SPEC.md
    /// §15): the broadcasts held for future heights ([`SessionConfig::max_held_broadcasts`]), the
    /// users waiting to be pruned ([`SessionConfig::max_prune`]) and the participants of the SSRC
    /// table ([`SessionConfig::max_source_participants`]).
    pub call_size_limit: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            poll_interval_ms: 10_000,
            poll_limit: 100,
            max_attempts: 8,
            backoff_ms: 250,
            max_backoff_ms: 8_000,
            max_send_attempts: 5,
            max_message_bytes: 8_192,
            max_buffered_updates: 256,
            max_buffered_bytes: 4 << 20,
            max_remembered_messages: 4_096,
            request_timeout_ms: 30_000,
            max_flood_wait_s: 60,
            prune_left: true,
            max_prune_delay_ms: 2_000,
            end_video_blackouts: true,
            max_requests_per_second: 10,
            max_request_burst: 20,
            max_queued_messages: 64,
            call_size_limit: 200,
        }
    }
}

const HOUR_MS: u64 = 3_600_000;

impl SessionConfig {
    /// Emoji-verification broadcasts held for heights not applied yet, in all: a commit and a
    /// reveal from every member of a call at [`SessionConfig::call_size_limit`] for each of the
    /// [`HELD_BROADCAST_HEIGHTS`] heights held (6,400 at 200 members).
    pub fn max_held_broadcasts(&self) -> usize {
        let heights = usize::try_from(HELD_BROADCAST_HEIGHTS).unwrap_or(usize::MAX);
        self.call_size_limit.saturating_mul(2).saturating_mul(heights)
    }

    /// Participants the call's SSRC table ([`crate::sources::SourceTable`]) holds: five times
    /// [`SessionConfig::call_size_limit`] (room for those who leave and join meanwhile), and never
    /// fewer than [`crate::limits::MAX_SOURCE_PARTICIPANTS`] (1,000 at the default limit of 200).
    pub fn max_source_participants(&self) -> usize {
        self.call_size_limit.saturating_mul(5).max(crate::limits::MAX_SOURCE_PARTICIPANTS)
    }

    /// Users waiting to be pruned: each is a chain participant, and a chain holds at most
    /// [`SessionConfig::call_size_limit`] of them.
    pub fn max_prune(&self) -> usize {
        self.call_size_limit
    }

    /// Every field's name, as [`SessionConfig::set`] and [`SessionConfig::get`] take it (the
    /// bindings' configuration: Python keywords, JavaScript properties in camelCase, C names).
    pub const FIELDS: [&'static str; 19] = [
        "poll_interval_ms",
        "poll_limit",
        "max_attempts",
        "backoff_ms",
        "max_backoff_ms",
        "max_send_attempts",
        "max_message_bytes",
        "max_buffered_updates",
        "max_buffered_bytes",
        "max_remembered_messages",
        "request_timeout_ms",
        "max_flood_wait_s",
        "prune_left",
        "max_prune_delay_ms",
        "end_video_blackouts",
        "max_requests_per_second",
        "max_request_burst",
        "max_queued_messages",
        "call_size_limit",
    ];

    /// The fields of [`SessionConfig::FIELDS`] that are flags (0 or 1 to [`SessionConfig::set`]).
    pub const FLAGS: [&'static str; 2] = ["prune_left", "end_video_blackouts"];

    /// Sets the field named `name` ([`SessionConfig::FIELDS`]) to `value` (a flag: 0 or 1). An
    /// unknown name, or a value the field's type cannot hold, fails with
    /// [`ErrorKind::InvalidInput`] and changes nothing; ranges are checked by
    /// [`SessionConfig::validate`] (as [`crate::session::Session::new`] does).
    ///
    /// ```
    /// use confchain::session::SessionConfig;
    ///
    /// let mut config = SessionConfig::default();
    /// config.set("call_size_limit", 1_000)?;
    /// config.set("prune_left", 0)?;
    /// assert_eq!((config.call_size_limit, config.prune_left), (1_000, false));
    /// assert_eq!(config.get("call_size_limit"), Some(1_000));
    /// assert!(config.set("no_such_field", 1).is_err());
    /// assert!(config.set("poll_limit", 1 << 40).is_err());
    /// # Ok::<(), confchain::Error>(())
    /// ```
    pub fn set(&mut self, name: &str, value: u64) -> Result<()> {
        fn int<T: TryFrom<u64>>(name: &str, value: u64) -> Result<T> {
            T::try_from(value).map_err(|_| invalid(format!("SessionConfig: {name} cannot be {value}")))
        }
        fn flag(name: &str, value: u64) -> Result<bool> {
            match value {
                0 | 1 => Ok(value == 1),
                _ => Err(invalid(format!("SessionConfig: {name} is a flag (0 or 1), not {value}"))),
            }
        }
        match name {
            "poll_interval_ms" => self.poll_interval_ms = value,
            "poll_limit" => self.poll_limit = int(name, value)?,
            "max_attempts" => self.max_attempts = int(name, value)?,
            "backoff_ms" => self.backoff_ms = value,
            "max_backoff_ms" => self.max_backoff_ms = value,
            "max_send_attempts" => self.max_send_attempts = int(name, value)?,
            "max_message_bytes" => self.max_message_bytes = int(name, value)?,
            "max_buffered_updates" => self.max_buffered_updates = int(name, value)?,
            "max_buffered_bytes" => self.max_buffered_bytes = int(name, value)?,
            "max_remembered_messages" => self.max_remembered_messages = int(name, value)?,
            "request_timeout_ms" => self.request_timeout_ms = value,
            "max_flood_wait_s" => self.max_flood_wait_s = int(name, value)?,
            "prune_left" => self.prune_left = flag(name, value)?,
            "max_prune_delay_ms" => self.max_prune_delay_ms = value,
            "end_video_blackouts" => self.end_video_blackouts = flag(name, value)?,
            "max_requests_per_second" => self.max_requests_per_second = int(name, value)?,
            "max_request_burst" => self.max_request_burst = int(name, value)?,
            "max_queued_messages" => self.max_queued_messages = int(name, value)?,
            "call_size_limit" => self.call_size_limit = int(name, value)?,
            _ => return Err(invalid(format!("SessionConfig has no field {name:?}"))),
        }
        Ok(())
    }

    /// The value of the field named `name` ([`SessionConfig::FIELDS`]; a flag as 0 or 1), or
    /// `None` for an unknown name.
    pub fn get(&self, name: &str) -> Option<u64> {
        fn wide<T: TryInto<u64>>(value: T) -> u64 {
            value.try_into().unwrap_or(u64::MAX)
        }
        Some(match name {
            "poll_interval_ms" => self.poll_interval_ms,
            "poll_limit" => wide(self.poll_limit),
            "max_attempts" => wide(self.max_attempts),
            "backoff_ms" => self.backoff_ms,
            "max_backoff_ms" => self.max_backoff_ms,
            "max_send_attempts" => wide(self.max_send_attempts),
            "max_message_bytes" => wide(self.max_message_bytes),
            "max_buffered_updates" => wide(self.max_buffered_updates),
            "max_buffered_bytes" => wide(self.max_buffered_bytes),
            "max_remembered_messages" => wide(self.max_remembered_messages),
            "request_timeout_ms" => self.request_timeout_ms,
            "max_flood_wait_s" => wide(self.max_flood_wait_s),
            "prune_left" => u64::from(self.prune_left),
            "max_prune_delay_ms" => self.max_prune_delay_ms,
            "end_video_blackouts" => u64::from(self.end_video_blackouts),
            "max_requests_per_second" => wide(self.max_requests_per_second),
            "max_request_burst" => wide(self.max_request_burst),
            "max_queued_messages" => wide(self.max_queued_messages),
            "call_size_limit" => wide(self.call_size_limit),
            _ => return None,
        })
    }

    /// Checks every field against its range (see each field).
    pub fn validate(&self) -> Result<()> {
        let checks: [(bool, &str); 17] = [
            ((1_000..=HOUR_MS).contains(&self.poll_interval_ms), "poll_interval_ms must be 1 s to 1 hour"),
            ((1..=1_000).contains(&self.poll_limit), "poll_limit must be 1 to 1,000"),
            ((1..=1_000).contains(&self.max_attempts), "max_attempts must be 1 to 1,000"),
            (self.backoff_ms >= 1, "backoff_ms must be at least 1"),
            ((self.backoff_ms..=HOUR_MS).contains(&self.max_backoff_ms), "max_backoff_ms must be backoff_ms to 1 hour"),
            ((1..=1_000).contains(&self.max_send_attempts), "max_send_attempts must be 1 to 1,000"),
            ((1..=1 << 20).contains(&self.max_message_bytes), "max_message_bytes must be 1 to 1 MiB"),
            ((1..=65_536).contains(&self.max_buffered_updates), "max_buffered_updates must be 1 to 65,536"),
            ((1_024..=256 << 20).contains(&self.max_buffered_bytes), "max_buffered_bytes must be 1 KiB to 256 MiB"),
            (self.max_remembered_messages <= 1 << 20, "max_remembered_messages must be at most 1,048,576"),
            ((1_000..=HOUR_MS).contains(&self.request_timeout_ms), "request_timeout_ms must be 1 s to 1 hour"),
            (self.max_flood_wait_s <= 86_400, "max_flood_wait_s must be at most 1 day"),
            (self.max_prune_delay_ms <= 60_000, "max_prune_delay_ms must be at most 1 minute"),
            ((1..=50).contains(&self.max_requests_per_second), "max_requests_per_second must be 1 to 50"),
            ((1..=50).contains(&self.max_request_burst), "max_request_burst must be 1 to 50"),
            ((1..=4_096).contains(&self.max_queued_messages), "max_queued_messages must be 1 to 4,096"),
            ((2..=10_000).contains(&self.call_size_limit), "call_size_limit must be 2 to 10,000"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(Error::new(ErrorKind::InvalidInput, format!("SessionConfig: {why}"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_follow_the_call_size_limit() {
        let config = SessionConfig::default();
        assert_eq!(config.call_size_limit, 200);
        assert_eq!(config.max_held_broadcasts(), 6_400);
        assert_eq!(config.max_prune(), 200);
        let small = SessionConfig { call_size_limit: 100, ..SessionConfig::default() };
        assert_eq!(small.max_held_broadcasts(), 3_200);
        assert!(small.validate().is_ok());
        for limit in [0, 1, 10_001] {
            assert!(SessionConfig { call_size_limit: limit, ..SessionConfig::default() }.validate().is_err());
        }
    }

    /// Every field is reachable by name, both ways, and set changes only the field named.
    #[test]
    fn every_field_by_name() {
        // A field added to the struct fails to compile here until FIELDS, set and get name it.
        let SessionConfig {
            poll_interval_ms: _,
            poll_limit: _,
            max_attempts: _,
            backoff_ms: _,
            max_backoff_ms: _,
            max_send_attempts: _,
            max_message_bytes: _,
            max_buffered_updates: _,
            max_buffered_bytes: _,
            max_remembered_messages: _,
            request_timeout_ms: _,
            max_flood_wait_s: _,
            prune_left: _,
            max_prune_delay_ms: _,
            end_video_blackouts: _,
            max_requests_per_second: _,
            max_request_burst: _,
            max_queued_messages: _,
            call_size_limit: _,
        } = SessionConfig::default();
        let default = SessionConfig::default();
        for name in SessionConfig::FIELDS {
            let value = default.get(name).unwrap_or_else(|| panic!("{name} has no getter"));
            let mut c = default.clone();
            let other = if value == 0 { 1 } else { value - 1 };
            c.set(name, other).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(c.get(name), Some(other), "{name}");
            for rest in SessionConfig::FIELDS.iter().filter(|n| **n != name) {
                assert_eq!(c.get(rest), default.get(rest), "setting {name} changed {rest}");
            }
            c.set(name, value).unwrap();
            assert_eq!(c, default, "{name}");
        }
        let mut c = default.clone();
        for (name, value) in [("prune_left", 2), ("poll_limit", u64::MAX), ("max_attempts", 1 << 32), ("nope", 1)] {
            assert!(c.set(name, value).is_err(), "{name} = {value}");
        }
        assert_eq!(c, default);
        assert_eq!(c.get("nope"), None);
        for flag in SessionConfig::FLAGS {
            assert!(SessionConfig::FIELDS.contains(&flag));
            assert!(c.set(flag, 2).is_err(), "{flag} is a flag");
        }
    }
}
