//! Outbound operations: what each request in flight is for, its deadline and generation, the
//! timer table of what is scheduled (retries, join attempts, pruning), and the flood waits per
//! request kind.
//!
//! Everything scheduled or in flight belongs to one *generation* (one attempt at being in the
//! call: a join, a create, a leave, a terminal state each start a new one). A response, a
//! deadline or a timer of an older generation does nothing, except that a join the server
//! accepted after we left is answered with another `leaveGroupCall` (no ghost member).

use std::collections::BTreeMap;

use crate::api::{Request, RequestId, RequestKind};
use crate::crypto::PrivateKey;
use crate::wire::PlainBlock;

/// What an in-flight request was for.
#[derive(Debug)]
pub(crate) enum Op {
    /// The tip fetch that starts join attempt `attempt`.
    JoinTip { attempt: u32 },
    /// joinGroupCall (or createConferenceCall with join) of an attempt, with its key and the
    /// height of the block we sent.
    Join { attempt: u32, key: Box<PrivateKey>, height: i32, create: bool },
    /// createConferenceCall without join.
    CreateOnly,
    /// A poll of one sub-chain.
    Poll { sub: crate::api::SubChain },
    /// A broadcast send.
    Broadcast { block: Vec<u8>, attempt: u32 },
    /// An encrypted message send.
    Message { encrypted: Vec<u8>, attempt: u32 },
    /// A removal, a prune (`kick: false` with users) or a re-key (`kick` with no users, as tdlib's ban of users already gone; never rebuilt).
    Delete { user_ids: Vec<i64>, kick: bool, attempt: u32, rebuild: bool },
    /// leaveGroupCall: after [`crate::session::Session::leave`] (`then_left`), or after a removal,
    /// an end or a ghost join (nothing follows).
    Leave { then_left: bool },
}

/// A request in flight.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) op: Op,
    /// The request's kind (flood waits are per kind).
    pub(crate) kind: RequestKind,
    pub(crate) generation: u64,
    pub(crate) deadline: u64,
}

/// Something to do at a time.
#[derive(Debug)]
pub(crate) enum Action {
    /// Start join attempt `attempt`.
    JoinAttempt { attempt: u32, create: bool },
    /// Send this request again (after a backoff or a flood wait).
    Resend { request: Request, op: Op },
    /// Rebuild and send a removal.
    Remove { user_ids: Vec<i64>, kick: bool, attempt: u32 },
    /// Prune the users who left.
    Prune,
    /// Re-key away from the block at this height, whose hash blacks out H.264.
    EndBlackout { height: i32 },
    /// Remove the entries whose keys no one can use (issue 30 item 1).
    RemoveUnusable,
}

/// A scheduled action.
#[derive(Debug)]
pub(crate) struct Timer {
    pub(crate) at: u64,
    pub(crate) generation: u64,
    pub(crate) action: Action,
}

/// The table of requests in flight and of timers.
#[derive(Debug, Default)]
pub(crate) struct Ops {
    pub(crate) in_flight: BTreeMap<RequestId, InFlight>,
    pub(crate) timers: Vec<Timer>,
    /// Until when each request kind waits (FLOOD_WAIT_X), by [`RequestKind::ALL`] index.
    flood_until: [u64; 7],
}

fn index(kind: RequestKind) -> usize {
    RequestKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Ops {
    /// The end of the flood wait of `kind` (0 if none was ever asked).
    pub(crate) fn flood_until(&self, kind: RequestKind) -> u64 {
        self.flood_until.get(index(kind)).copied().unwrap_or(0)
    }

    /// No request of `kind` before `until`.
    pub(crate) fn set_flood(&mut self, kind: RequestKind, until: u64) {
        if let Some(slot) = self.flood_until.get_mut(index(kind)) {
            *slot = (*slot).max(until);
        }
    }

    /// Schedules `action` at `at` in `generation`.
    pub(crate) fn schedule(&mut self, at: u64, generation: u64, action: Action) {
        self.timers.push(Timer { at, generation, action });
    }

    /// Removes and returns the timers due at `now` (in time order); drops those of other
    /// generations.
    pub(crate) fn take_due(&mut self, now: u64, generation: u64) -> Vec<Action> {
        self.timers.retain(|t| t.generation == generation);
        let (mut due, later): (Vec<Timer>, Vec<Timer>) =
            std::mem::take(&mut self.timers).into_iter().partition(|t| t.at <= now);
        self.timers = later;
        due.sort_by_key(|t| t.at);
        due.into_iter().map(|t| t.action).collect()
    }

    /// Removes and returns the requests whose deadline passed at `now`.
    pub(crate) fn take_expired(&mut self, now: u64) -> Vec<(RequestId, InFlight)> {
        let ids: Vec<RequestId> = self.in_flight.iter().filter(|(_, f)| f.deadline <= now).map(|(id, _)| *id).collect();
        ids.into_iter().filter_map(|id| self.in_flight.remove(&id).map(|f| (id, f))).collect()
    }

    /// The earliest timer or deadline of `generation` (stale requests keep their deadline: a
    /// ghost join is still answered).
    pub(crate) fn next_deadline(&self, generation: u64) -> Option<u64> {
        let timers = self.timers.iter().filter(|t| t.generation == generation).map(|t| t.at);
        timers.chain(self.in_flight.values().map(|f| f.deadline)).min()
    }

    /// The users a removal of `generation` is in flight or scheduled for (a prune skips them: one
    /// removal with its bounded retries at a time, however often the server says they left).
    pub(crate) fn removing(&self, generation: u64) -> std::collections::HashSet<i64> {
        let ids = |op: &Op| match op {
            Op::Delete { user_ids, .. } => user_ids.clone(),
            _ => Vec::new(),
        };
        let flying = self.in_flight.values().filter(|f| f.generation == generation).flat_map(|f| ids(&f.op));
        let timers = self.timers.iter().filter(|t| t.generation == generation).flat_map(|t| match &t.action {
            Action::Remove { user_ids, .. } => user_ids.clone(),
            Action::Resend { op, .. } => ids(op),
            Action::JoinAttempt { .. } | Action::Prune | Action::EndBlackout { .. } | Action::RemoveUnusable => {
                Vec::new()
            }
        });
        flying.chain(timers).collect()
    }

    /// Forgets the timers of older generations.
    pub(crate) fn drop_stale_timers(&mut self, generation: u64) {
        self.timers.retain(|t| t.generation == generation);
    }
}

/// A removal's block (a helper to keep `Op` and `Request` in step).
pub(crate) fn delete_request(user_ids: Vec<i64>, block: PlainBlock, kick: bool) -> Request {
    Request::DeleteParticipants { user_ids, block, kick }
}
