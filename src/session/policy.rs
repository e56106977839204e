//! The one retry policy: what a failed request leads to, as a pure function of its purpose, its
//! attempt, the server's error and the configuration ([`retry`]). No handler keeps its own copy;
//! the table test below is the policy at a glance.
//!
//! | purpose             | leaves the call on (`Exit`)            | retried on                                  | at most             |
//! |---------------------|----------------------------------------|---------------------------------------------|---------------------|
//! | join (tip or block) | never (the join fails)                 | flood wait, chain race, transient, SSRC     | `max_attempts`      |
//! | create with join    | never (the join fails)                 | flood wait                                  | `max_attempts`      |
//! | create alone        | never (the create fails)               | never                                       |                     |
//! | poll                | forbidden, join missing, call invalid  | by the poll schedule, not here              |                     |
//! | removal, prune      | forbidden, join missing, call invalid  | flood wait; chain race, transient (refetch) | `max_attempts`      |
//! | re-key              | forbidden, join missing, call invalid  | never (a newer block re-keys anyway)        |                     |
//! | broadcast           | forbidden, join missing, call invalid  | flood wait, transient                       | until the round ends |
//! | message             | forbidden, join missing, call invalid  | flood wait, transient                       | `max_send_attempts` |
//! | leave               | never                                  | never (any answer ends it)                  |                     |
//!
//! A retry waits the backoff (`backoff_ms` doubling per attempt up to `max_backoff_ms`), or the
//! flood wait if longer; a flood wait beyond `max_flood_wait_s` is not waited out.

use super::config::SessionConfig;
use super::events::EndReason;
use super::outbox::Goal;
use super::Exit;
use crate::api::{ApiError, RequestKind};

/// What a failed request leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A new attempt after `after_ms`; `refetch`: poll sub-chain 0 first (another block won the
    /// height: the rebuilt block goes on top of it).
    Retry { after_ms: u64, refetch: bool },
    /// The operation fails.
    GiveUp(GiveUp),
    /// The error takes us out of the call (removed, or the call ended).
    Exit(Exit),
}

/// Why an operation was given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// The server's error (for a poll: the poll schedule asks again).
    Error(ApiError),
    /// A join's flood wait longer than `max_flood_wait_s`, in seconds.
    FloodTooLong { seconds: u32 },
    /// A join ran out of attempts (this many).
    Exhausted { attempts: u32 },
}

/// The retry policy (see the module docs).
pub(crate) fn retry(goal: Goal, attempt: u32, error: &ApiError, config: &SessionConfig) -> Verdict {
    let in_call = matches!(
        goal,
        Goal::Poll | Goal::Removal | Goal::Prune | Goal::Rekey | Goal::Broadcast | Goal::Message | Goal::Lookup
    );
    if in_call {
        match error {
            ApiError::Forbidden => return Verdict::Exit(Exit::Removed { height: None }),
            ApiError::JoinMissing => return Verdict::Exit(Exit::Ended(EndReason::JoinMissing)),
            ApiError::CallInvalid => return Verdict::Exit(Exit::Ended(EndReason::CallInvalid)),
            _ => {}
        }
    }
    let give_up = Verdict::GiveUp(GiveUp::Error(error.clone()));
    let backoff = backoff(config, attempt);
    let next = attempt.saturating_add(1);
    // A flood wait waited out never retries sooner than the backoff (a wait of 0 s must not
    // retry at once).
    let flood = |seconds: u32| flood_ms(config, seconds).map(|ms| ms.max(backoff));
    match goal {
        Goal::Join | Goal::Create => {
            let after_ms = match error {
                ApiError::FloodWait { seconds } => match flood(*seconds) {
                    Some(ms) => ms,
                    None => return Verdict::GiveUp(GiveUp::FloodTooLong { seconds: *seconds }),
                },
                // createConferenceCall is never retried on anything else: a lost response may
                // hide a created conference, and a second create would make a second one.
                _ if goal == Goal::Create => return give_up,
                ApiError::ChainRace | ApiError::Transient(_) | ApiError::SsrcDuplicate => backoff,
                _ => return give_up,
            };
            if next >= config.max_attempts {
                return Verdict::GiveUp(GiveUp::Exhausted { attempts: next });
            }
            Verdict::Retry { after_ms, refetch: false }
        }
        Goal::Removal | Goal::Prune if next < config.max_attempts => match error {
            ApiError::FloodWait { seconds } => {
                flood(*seconds).map_or(give_up, |after_ms| Verdict::Retry { after_ms, refetch: false })
            }
            // Someone else's block won: fetch it, rebuild once it is applied.
            ApiError::ChainRace | ApiError::Transient(_) => Verdict::Retry { after_ms: backoff, refetch: true },
            _ => give_up,
        },
        // Every member needs every commit and reveal of the round: a broadcast is resent (with
        // backoff up to `max_backoff_ms`) until the round completes or the height moves, however
        // long the outage (issue 30 item 4; duplicates are harmless: ALREADY_APPLIED). Messages
        // give up after `max_send_attempts`.
        Goal::Broadcast | Goal::Message if goal == Goal::Broadcast || next < config.max_send_attempts => match error {
            ApiError::FloodWait { seconds } => {
                flood(*seconds).map_or(give_up, |after_ms| Verdict::Retry { after_ms, refetch: false })
            }
            ApiError::Transient(_) => Verdict::Retry { after_ms: backoff, refetch: false },
            _ => give_up,
        },
        // A leave lost to the network or a flood wait is sent again (bounded), or the server keeps
        // a ghost member in the media call.
        Goal::Leave if next < config.max_send_attempts => match error {
            ApiError::FloodWait { seconds } => {
                flood(*seconds).map_or(give_up, |after_ms| Verdict::Retry { after_ms, refetch: false })
            }
            ApiError::Transient(_) => Verdict::Retry { after_ms: backoff, refetch: false },
            _ => give_up,
        },
        Goal::CreateOnly
        | Goal::Poll
        | Goal::Removal
        | Goal::Prune
        | Goal::Rekey
        | Goal::Broadcast
        | Goal::Message
        | Goal::Leave
        // The lookup scheduler asks again (after a flood wait) within the SSRC's deadline.
        | Goal::Lookup => give_up,
    }
}

/// Until when requests of `kind` wait after a `FLOOD_WAIT_X` at `now`: X seconds, for polls at
/// most `max_flood_wait_s` (then they ask again: a server that still wants us to wait says so
/// again; one request costs little). Recorded whatever became of the request.
pub(crate) fn flood_until(kind: RequestKind, seconds: u32, now: u64, config: &SessionConfig) -> u64 {
    let capped = if kind == RequestKind::GetChainBlocks { seconds.min(config.max_flood_wait_s) } else { seconds };
    now.saturating_add(u64::from(capped).saturating_mul(1_000))
}

/// The delay before attempt `attempt + 1`: `backoff_ms` doubling per attempt, at most
/// `max_backoff_ms`.
pub(crate) fn backoff(config: &SessionConfig, attempt: u32) -> u64 {
    let factor = 1u64.checked_shl(attempt.min(20)).unwrap_or(u64::MAX);
    config.backoff_ms.saturating_mul(factor).min(config.max_backoff_ms)
}

/// A flood wait in ms, or `None` when it is longer than `max_flood_wait_s`.
pub(crate) fn flood_ms(config: &SessionConfig, seconds: u32) -> Option<u64> {
    (seconds <= config.max_flood_wait_s).then(|| u64::from(seconds).saturating_mul(1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_as_a_table() {
        // Defaults: backoff 250 ms doubling to 8 s, 8 attempts, 5 send attempts, 60 s flood waits.
        let c = SessionConfig::default();
        let flood = |seconds| ApiError::FloodWait { seconds };
        let race = ApiError::ChainRace;
        let transient = ApiError::Transient("TIMEOUT".into());
        let other = ApiError::Other("USER_BANNED".into());
        let again = |after_ms| Verdict::Retry { after_ms, refetch: false };
        let refetch = |after_ms| Verdict::Retry { after_ms, refetch: true };
        let fail = |e: &ApiError| Verdict::GiveUp(GiveUp::Error(e.clone()));
        let removed = Verdict::Exit(Exit::Removed { height: None });
        let missing = Verdict::Exit(Exit::Ended(EndReason::JoinMissing));
        let gone = Verdict::Exit(Exit::Ended(EndReason::CallInvalid));
        #[rustfmt::skip]
        let table: Vec<(Goal, u32, ApiError, Verdict)> = vec![
            // Joins: retried with a new tip, bounded by max_attempts; never out of the call.
            (Goal::Join, 0, race.clone(), again(250)),
            (Goal::Join, 2, transient.clone(), again(1_000)),
            (Goal::Join, 0, ApiError::SsrcDuplicate, again(250)),
            (Goal::Join, 0, flood(3), again(3_000)),
            (Goal::Join, 3, flood(0), again(2_000)),
            (Goal::Join, 0, flood(61), Verdict::GiveUp(GiveUp::FloodTooLong { seconds: 61 })),
            (Goal::Join, 7, race.clone(), Verdict::GiveUp(GiveUp::Exhausted { attempts: 8 })),
            (Goal::Join, 7, flood(1), Verdict::GiveUp(GiveUp::Exhausted { attempts: 8 })),
            (Goal::Join, 0, ApiError::Forbidden, fail(&ApiError::Forbidden)),
            (Goal::Join, 0, other.clone(), fail(&other)),
            // A create waits out a flood wait only; alone, never.
            (Goal::Create, 0, flood(2), again(2_000)),
            (Goal::Create, 0, race.clone(), fail(&race)),
            (Goal::Create, 0, transient.clone(), fail(&transient)),
            (Goal::CreateOnly, 0, flood(2), fail(&flood(2))),
            // Polls: out of the call on the three errors; the poll schedule does the rest.
            (Goal::Poll, 0, ApiError::Forbidden, removed.clone()),
            (Goal::Poll, 0, ApiError::JoinMissing, missing.clone()),
            (Goal::Poll, 0, ApiError::CallInvalid, gone.clone()),
            (Goal::Poll, 0, flood(5), fail(&flood(5))),
            // Removals and prunes: rebuilt after the winning block arrived, bounded.
            (Goal::Removal, 0, race.clone(), refetch(250)),
            (Goal::Prune, 1, transient.clone(), refetch(500)),
            (Goal::Removal, 0, flood(4), again(4_000)),
            (Goal::Removal, 0, flood(100), fail(&flood(100))),
            (Goal::Prune, 7, race.clone(), fail(&race)),
            (Goal::Removal, 0, ApiError::Forbidden, removed.clone()),
            (Goal::Removal, 0, other.clone(), fail(&other)),
            // A re-key is never retried (a newer block re-keys anyway).
            (Goal::Rekey, 0, race.clone(), fail(&race)),
            (Goal::Rekey, 0, ApiError::JoinMissing, missing.clone()),
            // Broadcasts: until the round ends; messages: max_send_attempts.
            (Goal::Broadcast, 500, transient.clone(), again(8_000)),
            (Goal::Broadcast, 0, flood(1), again(1_000)),
            (Goal::Broadcast, 0, race.clone(), fail(&race)),
            (Goal::Message, 0, transient.clone(), again(250)),
            (Goal::Message, 4, transient.clone(), fail(&transient)),
            (Goal::Message, 0, flood(0), again(250)),
            (Goal::Message, 0, flood(61), fail(&flood(61))),
            (Goal::Message, 0, ApiError::CallInvalid, gone),
            // A leave: sent again after a transient error or a flood wait, max_send_attempts.
            (Goal::Leave, 0, transient.clone(), again(250)),
            (Goal::Leave, 0, flood(2), again(2_000)),
            (Goal::Leave, 4, transient.clone(), fail(&transient)),
            (Goal::Leave, 0, other.clone(), fail(&other)),
        ];
        for (goal, attempt, error, expected) in table {
            assert_eq!(retry(goal, attempt, &error, &c), expected, "{goal:?} attempt {attempt} on {error:?}");
        }
    }

    #[test]
    fn flood_waits_of_polls_are_capped_and_others_are_not() {
        let c = SessionConfig::default();
        assert_eq!(flood_until(RequestKind::GetChainBlocks, 600, 5, &c), 60_005);
        assert_eq!(flood_until(RequestKind::Join, 600, 5, &c), 600_005);
        assert_eq!(flood_until(RequestKind::Join, u32::MAX, u64::MAX - 1, &c), u64::MAX);
    }
}
