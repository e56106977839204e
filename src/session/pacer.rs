//! The outbox's pace: every request the session queues passes a token bucket driven by the
//! caller's time (no clock is read), so that whatever piled up while the server was silent or
//! flood-waiting (deferred and retried messages, broadcasts, polls, join attempts, removals) leaves
//! at a bounded rate, not in one burst (issue 35).
//!
//! The bucket is a GCRA ("virtual scheduling"): a request may leave at `now` when the theoretical
//! arrival time `tat` is at most `now + tolerance`; leaving moves `tat` to `max(tat, now) +
//! interval`. With `interval = 1000 / per_second` ms and `tolerance = (burst - 1) * interval`, at
//! most `burst` requests leave at one instant, and at most `burst + per_second` within any one
//! second. Requests that must wait keep their order within two classes: the protocol's own
//! (polls, broadcasts, joins, removals) leave before messages, so a queue of messages never delays
//! the chain.

use std::collections::VecDeque;

use crate::api::RequestId;

/// Which queue a waiting request is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Polls, broadcasts, join attempts, removals, re-keys: the protocol's own.
    Protocol,
    /// `groupCallMessage`s of the application.
    Message,
}

/// The token bucket and the requests waiting for it.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval_ms: u64,
    tolerance_ms: u64,
    /// Theoretical arrival time of the next request.
    tat: u64,
    protocol: VecDeque<RequestId>,
    messages: VecDeque<RequestId>,
}

impl Pacer {
    /// A full bucket of `burst` requests refilled at `per_second` (both at least 1).
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        let interval_ms = 1_000u64.checked_div(u64::from(per_second.max(1))).unwrap_or(1_000).max(1);
        let tolerance_ms = interval_ms.saturating_mul(u64::from(burst.max(1)).saturating_sub(1));
        Pacer { interval_ms, tolerance_ms, tat: 0, protocol: VecDeque::new(), messages: VecDeque::new() }
    }

    fn allowed(&self, now: u64) -> bool {
        self.tat <= now.saturating_add(self.tolerance_ms)
    }

    /// Takes a token at `now` whether or not one is free (for the few requests that may not wait:
    /// a leave); later requests wait the longer.
    pub(crate) fn charge(&mut self, now: u64) {
        self.tat = self.tat.max(now).saturating_add(self.interval_ms);
    }

    /// Queues a request (by id: the outbox holds it) behind those of its class.
    pub(crate) fn push(&mut self, class: Class, id: RequestId) {
        match class {
            Class::Protocol => self.protocol.push_back(id),
            Class::Message => self.messages.push_back(id),
        }
    }

    /// Puts a request back at the head of its class (one that left during its kind's flood
    /// wait: it leaves first, at the pace, once the wait ended).
    pub(crate) fn push_front(&mut self, class: Class, id: RequestId) {
        match class {
            Class::Protocol => self.protocol.push_front(id),
            Class::Message => self.messages.push_front(id),
        }
    }

    /// The next request allowed to leave at `now` (the protocol's first), taking its token.
    pub(crate) fn pop(&mut self, now: u64) -> Option<RequestId> {
        if self.is_empty() || !self.allowed(now) {
            return None;
        }
        self.charge(now);
        self.protocol.pop_front().or_else(|| self.messages.pop_front())
    }

    /// When the next waiting request may leave (`None` when none waits).
    pub(crate) fn next_release(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.tat.saturating_sub(self.tolerance_ms))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.protocol.is_empty() && self.messages.is_empty()
    }

    /// Requests waiting.
    pub(crate) fn len(&self) -> usize {
        self.protocol.len().saturating_add(self.messages.len())
    }

    /// Keeps the waiting requests `keep` accepts (the others are forgotten).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(RequestId) -> bool) {
        self.protocol.retain(|id| keep(*id));
        self.messages.retain(|id| keep(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer_with(n: usize, per_second: u32, burst: u32) -> Pacer {
        let mut p = Pacer::new(per_second, burst);
        for i in 0..n {
            p.push(Class::Message, i as RequestId);
        }
        p
    }

    /// Releases at every millisecond from 0 to `until`, returning the release times.
    fn drain(p: &mut Pacer, until: u64) -> Vec<u64> {
        let mut times = Vec::new();
        for now in 0..=until {
            while p.pop(now).is_some() {
                times.push(now);
            }
        }
        times
    }

    #[test]
    fn a_full_bucket_sends_a_burst_then_the_rate() {
        let mut p = pacer_with(100, 10, 20);
        let times = drain(&mut p, 10_000);
        assert_eq!(times.len(), 100);
        assert_eq!(times.iter().filter(|t| **t == 0).count(), 20);
        // Then one every 100 ms.
        assert_eq!(times[20], 100);
        assert_eq!(times[21], 200);
        assert_eq!(times[99], 8_000);
    }

    #[test]
    fn no_second_holds_more_than_burst_plus_rate() {
        for (per_second, burst) in [(10, 20), (1, 1), (50, 50), (7, 3)] {
            let mut p = pacer_with(500, per_second, burst);
            let times = drain(&mut p, 100_000);
            let most = times.iter().map(|t| times.iter().filter(|u| **u >= *t && **u < t + 1_000).count()).max();
            assert!(most.unwrap_or(0) <= (per_second + burst) as usize, "{per_second}/s burst {burst}: {most:?}");
        }
    }

    #[test]
    fn the_protocol_goes_before_messages_and_next_release_is_exact() {
        let mut p = Pacer::new(10, 1);
        p.push(Class::Message, 1);
        p.push(Class::Protocol, 2);
        assert_eq!(p.next_release(), Some(0));
        assert_eq!(p.pop(0), Some(2));
        assert_eq!(p.next_release(), Some(100));
        assert!(p.pop(99).is_none());
        assert_eq!(p.pop(100), Some(1));
        assert_eq!(p.next_release(), None);
        // An idle bucket refills: a burst is allowed again later.
        assert!(p.allowed(5_000));
    }

    #[test]
    fn a_charged_token_delays_the_queue() {
        let mut p = pacer_with(1, 10, 1);
        p.charge(0);
        assert!(p.pop(0).is_none());
        assert!(p.pop(100).is_some());
    }
}
