//! The outbox: every request the session makes, from its id to its answer, and every deadline
//! but the call's epochs. One table holds the requests in flight with their [`Purpose`] and the
//! request itself (a retry sends that same request again, never one rebuilt from a copy); the
//! queue of requests released by the pace ([`Pacer`]); the timers of what is scheduled (retries,
//! join attempts, pruning); each sub-chain's next poll; and the flood waits per request kind.
//! [`Outbox::next_deadline`] is the earliest of them all.
//!
//! Everything scheduled or in flight belongs to one *generation* (one attempt at being in the
//! call: a join, a create, a leave, a terminal state each start a new one). A response, a
//! deadline or a timer of an older generation does nothing, except that a join the server
//! accepted after we left is answered with another `leaveGroupCall` (no ghost member).

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::pacer::{Class, Pacer};
use crate::api::{Request, RequestId, RequestKind, SubChain};
use crate::crypto::PrivateKey;
use crate::sources::LookupId;

/// What a request is for: one variant per purpose, each with what its answer needs.
#[derive(Debug)]
pub(crate) enum Purpose {
    /// The tip fetch that starts join attempt `attempt`.
    JoinTip { attempt: u32 },
    /// `joinGroupCall` of an attempt, with its key and the height of the block we sent.
    Join { attempt: u32, key: Box<PrivateKey>, height: i32 },
    /// `createConferenceCall`: with our key when our zero block goes along (create and join),
    /// without when the chain stays empty.
    Create { attempt: u32, key: Option<Box<PrivateKey>> },
    /// A poll of one sub-chain.
    Poll { sub: SubChain },
    /// A removal that bans (`kick`), rebuilt on a lost race.
    Removal { attempt: u32 },
    /// A removal of users who left (`only_left`), rebuilt on a lost race.
    Prune { attempt: u32 },
    /// A re-key or a change of permissions (sent as a removal with `kick`; never rebuilt).
    Rekey,
    /// A broadcast (commit or reveal) of the verification round.
    Broadcast { attempt: u32 },
    /// An encrypted message of the application.
    Message { attempt: u32 },
    /// `leaveGroupCall`: after [`crate::session::Session::leave`] (`then_left`), or after a
    /// removal, an end or a ghost join (nothing follows); sent again after a transient error or a
    /// flood wait (`attempt`), so that the server does not keep a ghost member.
    Leave { then_left: bool, attempt: u32 },
    /// `getGroupParticipants` by sources: lookup `id` of the call's SSRC table.
    Lookup { id: LookupId },
}

/// A [`Purpose`] without its data, for the retry policy ([`super::policy::retry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Goal {
    /// The tip fetch or the join of a join attempt.
    Join,
    /// `createConferenceCall` with our zero block (create and join).
    Create,
    /// `createConferenceCall` alone.
    CreateOnly,
    Poll,
    Removal,
    Prune,
    Rekey,
    Broadcast,
    Message,
    Leave,
    Lookup,
}

impl Purpose {
    /// What the retry policy needs of it.
    pub(crate) fn goal(&self) -> Goal {
        match self {
            Purpose::JoinTip { .. } | Purpose::Join { .. } => Goal::Join,
            Purpose::Create { key: Some(_), .. } => Goal::Create,
            Purpose::Create { key: None, .. } => Goal::CreateOnly,
            Purpose::Poll { .. } => Goal::Poll,
            Purpose::Removal { .. } => Goal::Removal,
            Purpose::Prune { .. } => Goal::Prune,
            Purpose::Rekey => Goal::Rekey,
            Purpose::Broadcast { .. } => Goal::Broadcast,
            Purpose::Message { .. } => Goal::Message,
            Purpose::Leave { .. } => Goal::Leave,
            Purpose::Lookup { .. } => Goal::Lookup,
        }
    }

    /// The attempt this request is (0 for purposes that are never retried).
    pub(crate) fn attempt(&self) -> u32 {
        match self {
            Purpose::JoinTip { attempt }
            | Purpose::Join { attempt, .. }
            | Purpose::Create { attempt, .. }
            | Purpose::Removal { attempt }
            | Purpose::Prune { attempt }
            | Purpose::Broadcast { attempt }
            | Purpose::Message { attempt }
            | Purpose::Leave { attempt, .. } => *attempt,
            Purpose::Poll { .. } | Purpose::Rekey | Purpose::Lookup { .. } => 0,
        }
    }

    /// Whether a success puts us in the media call (a join, or a create with join): one accepted
    /// after we left is answered with a leave.
    pub(crate) fn joins(&self) -> bool {
        matches!(self, Purpose::Join { .. } | Purpose::Create { key: Some(_), .. })
    }
}

/// A request in the outbox.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) purpose: Purpose,
    /// The request as sent (a retry sends it again).
    pub(crate) request: Request,
    pub(crate) generation: u64,
    /// [`WAITING`] until the pace lets it out.
    pub(crate) deadline: u64,
}

/// The deadline of a request still waiting for the outbox's pace: its deadline starts when it
/// leaves.
const WAITING: u64 = u64::MAX;

/// Something to do at a time.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send this request again (after a backoff or a flood wait), for `purpose` (its attempt
    /// counted on): a join attempt is its tip fetch, [`Purpose::JoinTip`] (the join block is built
    /// on the tip it answers), a create with join the same request with the same key (the server
    /// refused it: nothing was created with that key).
    Resend { request: Request, purpose: Purpose },
    /// Rebuild and send a removal (`kick`) or a prune.
    Remove { user_ids: Vec<i64>, kick: bool, attempt: u32 },
    /// Prune the users who left.
    Prune,
    /// Re-key away from the block at this height, whose hash blacks out H.264.
    EndBlackout { height: i32 },
    /// Remove the entries whose keys no one can use (issue 30 item 1).
    RemoveUnusable,
    /// Send our broadcasts of the round at this height again, if it has not completed.
    Rebroadcast { height: i32 },
}

/// A scheduled action.
#[derive(Debug)]
pub(crate) struct Timer {
    pub(crate) at: u64,
    pub(crate) generation: u64,
    pub(crate) action: Action,
}

/// One sub-chain's poll: when it is due, if scheduled, and the one in flight.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PollTimer {
    pub(crate) at: Option<u64>,
    pub(crate) in_flight: Option<RequestId>,
}

/// How a response's id stands in the outbox.
pub(crate) enum Answered {
    /// Not sent yet: it cannot have been answered.
    Unsent,
    /// Unknown (answered already, past its deadline).
    Unknown,
    /// In flight: here it is, out of the table.
    Entry(Entry),
}

/// The requests, their queue, the timers and the flood waits (see the module docs).
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Bumped by a join, a create, a leave and every terminal state: what belongs to an older
    /// generation never fires.
    pub(crate) generation: u64,
    next_id: RequestId,
    /// Requests sent or waiting for the pace, by id.
    entries: BTreeMap<RequestId, Entry>,
    /// Requests the pace let out, for [`crate::session::Session::poll_request`].
    ready: VecDeque<(RequestId, Request)>,
    /// The ids waiting for the pace.
    pacer: Pacer,
    /// Ids the pace let out while their kind was in a flood wait (it came while they waited):
    /// they wait for its end, keeping their id (a poll in flight, a lookup, stay what they are).
    parked: Vec<(u64, RequestId)>,
    /// The longest a request is parked (`max_flood_wait_s`).
    max_park_ms: u64,
    /// Requests whose kind's flood wait would park them longer: they fail.
    refused: Vec<Entry>,
    timers: Vec<Timer>,
    /// Each sub-chain's next poll (sub-chain 0, then 1).
    polls: [PollTimer; 2],
    /// Until when each request kind waits (FLOOD_WAIT_X), by [`RequestKind::ALL`] index.
    flood_until: [u64; RequestKind::ALL.len()],
    timeout_ms: u64,
}

/// The pace's queue a request waits in: the application's messages after the protocol's own.
fn class(purpose: &Purpose) -> Class {
    if matches!(purpose, Purpose::Message { .. }) {
        Class::Message
    } else {
        Class::Protocol
    }
}

fn index(kind: RequestKind) -> usize {
    RequestKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Outbox {
    /// An empty outbox pacing at `per_second` with bursts of `burst`; every request's deadline is
    /// `timeout_ms` after it leaves; none is parked for a flood wait longer than `max_park_ms`.
    pub(crate) fn new(per_second: u32, burst: u32, timeout_ms: u64, max_park_ms: u64) -> Self {
        Outbox {
            generation: 0,
            next_id: 1,
            entries: BTreeMap::new(),
            ready: VecDeque::new(),
            pacer: Pacer::new(per_second, burst),
            parked: Vec::new(),
            max_park_ms,
            refused: Vec::new(),
            timers: Vec::new(),
            polls: [PollTimer::default(); 2],
            flood_until: [0; RequestKind::ALL.len()],
            timeout_ms,
        }
    }

    // ---- requests ----

    /// Queues a request for the pace (a leave goes at once, taking a token all the same) and
    /// returns its id.
    pub(crate) fn queue(&mut self, request: Request, purpose: Purpose, now: u64) -> RequestId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let generation = self.generation;
        if matches!(purpose, Purpose::Leave { .. }) {
            // No ghost member: a leave does not wait.
            self.pacer.charge(now);
            self.ready.push_back((id, request.clone()));
            let deadline = now.saturating_add(self.timeout_ms);
            self.entries.insert(id, Entry { purpose, request, generation, deadline });
        } else {
            self.pacer.push(class(&purpose), id);
            self.entries.insert(id, Entry { purpose, request, generation, deadline: WAITING });
            self.pace(now);
        }
        id
    }

    /// Lets out what the pace allows at `now`; each request's deadline starts as it leaves. One
    /// whose kind is in a flood wait (a `FLOOD_WAIT_X` answered to another request of its kind
    /// while it waited) is parked until the wait's end instead: nothing of a kind leaves during
    /// its flood wait. At the wait's end, what was parked goes back to the head of the pace's
    /// queue, in its order: it leaves at the pace, not at one instant.
    pub(crate) fn pace(&mut self, now: u64) {
        let (due, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.parked).into_iter().partition(|(at, _)| *at <= now);
        self.parked = waiting;
        for (_, id) in due.into_iter().rev() {
            if let Some(e) = self.entries.get(&id) {
                self.pacer.push_front(class(&e.purpose), id);
            }
        }
        while let Some(id) = self.pacer.pop(now) {
            let Some(e) = self.entries.get_mut(&id) else { continue };
            let until = self.flood_until.get(index(e.request.kind())).copied().unwrap_or(0);
            if until > now.saturating_add(self.max_park_ms) {
                // Longer than any operation waits: it fails as one sent into the wait would.
                if let Some(e) = self.entries.remove(&id) {
                    self.refused.push(e);
                }
                continue;
            }
            if until > now {
                self.parked.push((until, id));
                continue;
            }
            e.deadline = now.saturating_add(self.timeout_ms);
            self.ready.push_back((id, e.request.clone()));
        }
    }

    /// The requests the pace let out into a flood wait of their kind longer than the maximum
    /// wait: out of the table, for the session to fail them.
    pub(crate) fn take_refused(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.refused)
    }

    /// The next request for the application.
    pub(crate) fn pop_ready(&mut self) -> Option<(RequestId, Request)> {
        self.ready.pop_front()
    }

    /// Takes request `id` out of the table, for its answer.
    pub(crate) fn answer(&mut self, id: RequestId) -> Answered {
        match self.entries.get(&id) {
            None => Answered::Unknown,
            Some(e) if e.deadline == WAITING => Answered::Unsent,
            Some(_) => self.entries.remove(&id).map_or(Answered::Unknown, Answered::Entry),
        }
    }

    /// Removes and returns the requests whose deadline passed at `now`.
    pub(crate) fn take_expired(&mut self, now: u64) -> Vec<(RequestId, Entry)> {
        let ids: Vec<RequestId> = self.entries.iter().filter(|(_, e)| e.deadline <= now).map(|(id, _)| *id).collect();
        ids.into_iter().filter_map(|id| self.entries.remove(&id).map(|e| (id, e))).collect()
    }

    /// Starts a new generation: timers of the old one die, requests not taken by the application
    /// yet are dropped, leaves excepted if `keep_leaves`.
    pub(crate) fn new_generation(&mut self, keep_leaves: bool) {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        self.timers.retain(|t| t.generation == generation);
        self.polls = [PollTimer::default(); 2];
        let entries = &mut self.entries;
        self.ready.retain(|(id, r)| {
            let keep = keep_leaves && matches!(r, Request::Leave);
            if !keep {
                entries.remove(id);
            }
            keep
        });
        // Nothing waiting for the pace (or parked) is a leave (leaves go at once).
        self.pacer.retain(|id| {
            entries.remove(&id);
            false
        });
        for (_, id) in self.parked.drain(..) {
            entries.remove(&id);
        }
        self.refused.clear();
    }

    // ---- timers and flood waits ----

    /// Schedules `action` at `at` in the current generation.
    pub(crate) fn schedule(&mut self, at: u64, action: Action) {
        self.timers.push(Timer { at, generation: self.generation, action });
    }

    /// Removes and returns the timers due at `now` (in time order); drops those of other
    /// generations.
    pub(crate) fn take_due(&mut self, now: u64) -> Vec<Action> {
        let generation = self.generation;
        self.timers.retain(|t| t.generation == generation);
        let (mut due, later): (Vec<Timer>, Vec<Timer>) =
            std::mem::take(&mut self.timers).into_iter().partition(|t| t.at <= now);
        self.timers = later;
        due.sort_by_key(|t| t.at);
        due.into_iter().map(|t| t.action).collect()
    }

    /// The poll of `sub`.
    pub(crate) fn poll(&mut self, sub: SubChain) -> &mut PollTimer {
        match sub {
            SubChain::Blocks => &mut self.polls[0],
            SubChain::Broadcasts => &mut self.polls[1],
        }
    }

    /// Schedules a poll of `sub` at `at` (or earlier, if one is scheduled earlier).
    pub(crate) fn poll_by(&mut self, sub: SubChain, at: u64) {
        let p = self.poll(sub);
        p.at = Some(p.at.map_or(at, |t| t.min(at)));
    }

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

    /// The earliest timer, request deadline, release by the pace or poll not in flight (after
    /// the polls' flood wait); 0 while refused requests wait to be failed. Requests of older
    /// generations keep their deadline: a ghost join is still answered.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let generation = self.generation;
        let timers = self.timers.iter().filter(|t| t.generation == generation).map(|t| t.at);
        let deadlines = self.entries.values().map(|e| e.deadline);
        let flood = self.flood_until(RequestKind::GetChainBlocks);
        let polls = self.polls.iter().filter(|p| p.in_flight.is_none()).filter_map(|p| p.at).map(|t| t.max(flood));
        let parked = self.parked.iter().map(|(at, _)| *at);
        // Refused requests are failed by the next entry point: due at once.
        let refused = (!self.refused.is_empty()).then_some(0);
        timers.chain(deadlines).chain(self.pacer.next_release()).chain(parked).chain(polls).chain(refused).min()
    }

    // ---- what is held ----

    /// The users a removal of this generation is in flight or scheduled for (a prune skips them:
    /// one removal with its bounded retries at a time, however often the server says they left).
    pub(crate) fn removing(&self) -> HashSet<i64> {
        let generation = self.generation;
        let ids = |r: &Request| match r {
            Request::DeleteParticipants { user_ids, .. } => user_ids.clone(),
            _ => Vec::new(),
        };
        let flying = self.entries.values().filter(|e| e.generation == generation).flat_map(|e| ids(&e.request));
        let timers = self.timers.iter().filter(|t| t.generation == generation).flat_map(|t| match &t.action {
            Action::Remove { user_ids, .. } => user_ids.clone(),
            Action::Resend { request, .. } => ids(request),
            Action::Prune | Action::EndBlackout { .. } | Action::RemoveUnusable | Action::Rebroadcast { .. } => {
                Vec::new()
            }
        });
        flying.chain(timers).collect()
    }

    /// Whether `request` is on its way in this generation: in flight, waiting for the pace or
    /// parked, or scheduled to be sent again after a backoff or a flood wait.
    pub(crate) fn sending(&self, request: &Request) -> bool {
        let generation = self.generation;
        self.entries.values().any(|e| e.generation == generation && e.request == *request)
            || self.timers.iter().any(|t| {
                t.generation == generation && matches!(&t.action, Action::Resend { request: r, .. } if r == request)
            })
    }

    /// The application's messages held undelivered in this generation: in flight, waiting for
    /// the pace or a retry.
    pub(crate) fn messages(&self) -> usize {
        let generation = self.generation;
        let flying = self
            .entries
            .values()
            .filter(|e| e.generation == generation && matches!(e.purpose, Purpose::Message { .. }));
        let retrying = self.timers.iter().filter(|t| {
            t.generation == generation && matches!(t.action, Action::Resend { purpose: Purpose::Message { .. }, .. })
        });
        flying.count().saturating_add(retrying.count())
    }

    /// Requests sent or waiting for the pace.
    pub(crate) fn in_flight(&self) -> usize {
        self.entries.len()
    }

    /// Requests not taken by the application yet (released, or waiting for the pace).
    pub(crate) fn queued(&self) -> usize {
        self.ready.len().saturating_add(self.pacer.len()).saturating_add(self.parked.len())
    }

    /// Scheduled actions.
    pub(crate) fn timers(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll() -> (Request, Purpose) {
        (
            Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: 0, limit: 1 },
            Purpose::Poll { sub: SubChain::Blocks },
        )
    }

    #[test]
    fn requests_wait_for_the_pace_and_leaves_do_not() {
        let mut o = Outbox::new(1, 1, 30_000, 60_000);
        let (r, p) = poll();
        let first = o.queue(r.clone(), p, 0);
        let (r2, p2) = poll();
        let second = o.queue(r2, p2, 0);
        let leave = o.queue(Request::Leave, Purpose::Leave { then_left: true, attempt: 0 }, 0);
        assert!(matches!(o.answer(second), Answered::Unsent), "not let out yet");
        assert_eq!(o.pop_ready().map(|(id, _)| id), Some(first));
        assert_eq!(o.pop_ready().map(|(id, _)| id), Some(leave), "a leave goes at once");
        assert_eq!(o.pop_ready(), None);
        // The answer takes the request out, with what it was for and the request itself.
        let Answered::Entry(e) = o.answer(first) else { panic!("in flight") };
        assert!(matches!(e.purpose, Purpose::Poll { .. }) && e.request == r);
        assert!(matches!(o.answer(first), Answered::Unknown));
        // The next release, then the deadline of what left.
        assert_eq!(o.next_deadline(), Some(2_000));
        o.pace(2_000);
        assert_eq!(o.pop_ready().map(|(id, _)| id), Some(second));
        assert_eq!(o.take_expired(32_000).len(), 2, "the leave and the second poll");
    }

    /// Found by the 200-member simulation with the real server (*flood wait*): a removal waiting
    /// for the pace left 27 ms after another one was answered `FLOOD_WAIT_27`.
    #[test]
    fn what_waits_for_the_pace_waits_for_a_flood_wait_that_came_meanwhile() {
        let mut o = Outbox::new(1, 1, 30_000, 60_000);
        let (r, p) = poll();
        let first = o.queue(r.clone(), p, 0);
        let second = o.queue(r, Purpose::Poll { sub: SubChain::Blocks }, 0);
        assert_eq!(o.pop_ready().map(|(id, _)| id), Some(first));
        o.set_flood(RequestKind::GetChainBlocks, 5_000);
        o.pace(2_000);
        assert_eq!(o.pop_ready(), None, "the pace lets it out, the flood wait holds it");
        assert!(matches!(o.answer(second), Answered::Unsent), "same id, still waiting");
        assert_eq!(o.next_deadline(), Some(5_000));
        o.pace(5_000);
        assert_eq!(o.pop_ready().map(|(id, _)| id), Some(second));
        // A new generation drops it like anything waiting.
        let (r, p) = poll();
        o.queue(r, p, 6_000);
        o.set_flood(RequestKind::GetChainBlocks, 9_000);
        o.pace(7_000);
        o.new_generation(false);
        assert_eq!((o.queued(), o.in_flight()), (0, 2), "the two sent are left, the parked one is gone");
    }

    /// Review (hostile server): what the pace let out during a flood wait was parked, and the
    /// wait's end released it all at one instant, past the pace (a `FLOOD_WAIT_30` over 30
    /// queued requests at 1 a second: 30 at once, to the server that had just asked us to
    /// slow down). Parked requests go back to the head of the pace's queue.
    #[test]
    fn requests_parked_for_a_flood_wait_leave_at_the_pace_after_it() {
        let mut o = Outbox::new(1, 1, 30_000, 60_000);
        let ids: Vec<RequestId> = (0..40)
            .map(|_| {
                let (r, p) = poll();
                o.queue(r, p, 0)
            })
            .collect();
        assert_eq!(o.pop_ready().map(|(id, _)| id), Some(ids[0]));
        o.set_flood(RequestKind::GetChainBlocks, 30_000);
        let mut released = Vec::new();
        for now in (1..=80).map(|s| s * 1_000) {
            o.pace(now);
            let at_once: Vec<RequestId> = std::iter::from_fn(|| o.pop_ready().map(|(id, _)| id)).collect();
            assert!(now >= 30_000 || at_once.is_empty(), "nothing leaves during the wait");
            assert!(at_once.len() <= 1, "{} requests at {now} ms", at_once.len());
            released.extend(at_once);
        }
        assert_eq!(released, ids[1..], "all of them, in their order");
    }

    #[test]
    fn a_new_generation_drops_what_was_not_taken_and_keeps_leaves_if_asked() {
        let mut o = Outbox::new(10, 20, 30_000, 60_000);
        let leave = o.queue(Request::Leave, Purpose::Leave { then_left: false, attempt: 0 }, 0);
        let (r, p) = poll();
        o.queue(r, p, 0);
        o.schedule(5, Action::Prune);
        o.poll_by(SubChain::Broadcasts, 7);
        o.new_generation(true);
        assert_eq!((o.in_flight(), o.queued(), o.timers()), (1, 1, 0));
        assert_eq!(o.pop_ready().map(|(id, _)| id), Some(leave));
        assert_eq!(o.poll(SubChain::Broadcasts).at, None, "polls belong to their generation");
        o.queue(Request::Leave, Purpose::Leave { then_left: false, attempt: 0 }, 0);
        o.new_generation(false);
        assert_eq!(o.queued(), 0, "a join drops queued leaves too");
    }
}
