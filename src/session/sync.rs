//! The sync of one sub-chain: the offset of the next block we expect, the blocks that arrived
//! beyond a gap (held, bounded by entries and bytes), and the spacing of gap polls (the polls' times
//! are in the outbox's timer table).
//!
//! ```text
//!  update (blocks, next_offset) ──▶ receive ──▶ Old      (everything before `next`: ignored)
//!                                          ├──▶ Gap      (starts after `next`: held, poll later)
//!                                          └──▶ Apply    (the blocks from `next` on, in order)
//!  each block applied ──▶ advance (next += 1); a refused block stops the run: `next` stays on it
//!  after a run ──▶ take_connected: held blocks that now start at or before `next`
//! ```
//!
//! The offset only moves when the caller reports a block applied ([`SubSync::advance`]): it never
//! passes a block that was not applied. Nothing here knows about the chain rules or the network
//! (the session applies the blocks and sends the polls), so it is tested alone.
//!
//! A sub-chain whose entries expire (sub-chain 1: a broadcast only matters while its round does)
//! has a **window**: only the last `window` entries before the newest offset any update showed can
//! still matter. A member that fell further behind skips to the window's start
//! ([`SubSync::skip_stale`]) instead of paging through what can no longer matter (issue 32: at 200
//! members a member that lost a push could lag by 100,000 broadcasts, paged at 100 a second,
//! longer than the call lasts); what it skipped of a round still running is sent again by its
//! senders until the round completes. A poll answered with nothing and a next offset below ours
//! (a server whose newest entry is below where we skipped to: a bogus offset, or a reset) brings
//! us back to the server's ([`SubSync::rewind`]). Sub-chain 0 has no window: no block is ever skipped.

use std::collections::BTreeMap;

/// What an update means for this sub-chain.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Receive {
    /// Nothing new.
    Old,
    /// It starts beyond the next offset: held (if it fit), the gap is to be filled by a poll.
    Gap,
    /// These blocks, in order, start at the next offset.
    Apply(Vec<Vec<u8>>),
}

/// One sub-chain's sync state.
#[derive(Debug, Default)]
pub(crate) struct SubSync {
    /// The offset of the next block we expect; `None` until known.
    next: Option<i32>,
    /// Runs of blocks beyond a gap, by their first offset.
    held: BTreeMap<i32, Vec<Vec<u8>>>,
    held_blocks: usize,
    held_bytes: usize,
    max_blocks: usize,
    max_bytes: usize,
    /// Entries before `newest - window` can no longer matter (`None`: every entry does).
    window: Option<i32>,
    /// The newest next offset any update showed.
    newest: Option<i32>,
    /// The delay of the next gap poll (0: the first gap polls at once).
    pub(crate) gap_delay: u64,
    /// When the last poll was sent (gap polls keep [`MIN_GAP_POLL_SPACING_MS`] from it).
    pub(crate) last_poll: Option<u64>,
}

/// Least time between a poll of a sub-chain and a gap (or recovery) poll after it: whatever
/// arrives (junk broadcasts advance sub-chain 1 and reset the gap delay), gap polls stay at most
/// one per second per sub-chain.
pub(crate) const MIN_GAP_POLL_SPACING_MS: u64 = 1_000;

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl SubSync {
    /// A sub-chain holding at most `max_blocks` blocks and `max_bytes` bytes beyond gaps.
    pub(crate) fn new(max_blocks: usize, max_bytes: usize) -> Self {
        SubSync { max_blocks, max_bytes, ..SubSync::default() }
    }

    /// A sub-chain whose entries expire: only the last `window` before the newest offset matter.
    pub(crate) fn expiring(max_blocks: usize, max_bytes: usize, window: usize) -> Self {
        SubSync { window: Some(len_i32(window)), ..SubSync::new(max_blocks, max_bytes) }
    }

    /// The offset of the next block expected, once known.
    pub(crate) fn next(&self) -> Option<i32> {
        self.next
    }

    /// Sets the next offset (after a join: the offset after our own block).
    pub(crate) fn set_next(&mut self, offset: i32) {
        self.next = Some(offset);
    }

    /// Blocks held beyond gaps, and their bytes.
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.held_blocks, self.held_bytes)
    }

    /// Forgets what is held (e.g. after a refused push: a poll refetches it).
    pub(crate) fn clear_held(&mut self) {
        self.held.clear();
        self.held_blocks = 0;
        self.held_bytes = 0;
    }

    /// Sorts an update: `blocks[i]` has offset `next_offset - len + i`. An unknown next offset is
    /// learnt from the first update (the answer to a poll at offset -1).
    pub(crate) fn receive(&mut self, blocks: Vec<Vec<u8>>, next_offset: i32) -> Receive {
        let first = next_offset.saturating_sub(len_i32(blocks.len()));
        if next_offset < 0 || first < 0 {
            return Receive::Old;
        }
        self.newest = Some(self.newest.map_or(next_offset, |n| n.max(next_offset)));
        let expected = *self.next.get_or_insert(first);
        if next_offset <= expected {
            return Receive::Old;
        }
        if first > expected {
            self.hold(first, blocks);
            return Receive::Gap;
        }
        let skip = usize::try_from(expected.saturating_sub(first)).unwrap_or(usize::MAX);
        Receive::Apply(blocks.into_iter().skip(skip).collect())
    }

    /// One block at the next offset was applied.
    pub(crate) fn advance(&mut self) {
        if let Some(n) = self.next.as_mut() {
            *n = n.saturating_add(1);
        }
    }

    /// With a window: moves the next offset to the window's start when it lies before it,
    /// dropping what is held before it. How many entries were skipped.
    pub(crate) fn skip_stale(&mut self) -> i32 {
        let (Some(window), Some(newest), Some(next)) = (self.window, self.newest, self.next) else {
            return 0;
        };
        let start = newest.saturating_sub(window);
        if next >= start {
            return 0;
        }
        self.next = Some(start);
        let old: Vec<i32> = self
            .held
            .iter()
            .filter(|(&first, run)| first.saturating_add(len_i32(run.len())) <= start)
            .map(|(&first, _)| first)
            .collect();
        for first in old {
            if let Some(run) = self.held.remove(&first) {
                self.held_blocks = self.held_blocks.saturating_sub(run.len());
                self.held_bytes = self.held_bytes.saturating_sub(run.iter().map(Vec::len).sum());
            }
        }
        start.saturating_sub(next)
    }

    /// With a window: the server answered a poll with nothing and a next offset below ours, so
    /// nothing lies where we are (we skipped past its newest entry on a bogus offset, or it
    /// started over): its offset is ours again. Whether it was.
    pub(crate) fn rewind(&mut self, next_offset: i32) -> bool {
        if self.window.is_none() || next_offset < 0 || self.next.is_none_or(|n| next_offset >= n) {
            return false;
        }
        self.next = Some(next_offset);
        self.newest = Some(next_offset);
        self.clear_held();
        true
    }

    /// Keeps a run beyond the gap, if it fits (a run that does not fit is dropped: the poll
    /// that fills the gap fetches it again). Empty runs hold nothing and are not kept.
    fn hold(&mut self, first: i32, blocks: Vec<Vec<u8>>) {
        if blocks.is_empty() || self.held.contains_key(&first) {
            return;
        }
        let bytes: usize = blocks.iter().map(Vec::len).sum();
        let count = self.held_blocks.saturating_add(blocks.len());
        let size = self.held_bytes.saturating_add(bytes);
        if count > self.max_blocks || size > self.max_bytes {
            return;
        }
        self.held_blocks = count;
        self.held_bytes = size;
        self.held.insert(first, blocks);
    }

    /// The held run that now connects to the next offset (its blocks from the next offset on),
    /// dropping runs that are wholly old. `None` when the first held run still lies beyond a gap.
    pub(crate) fn take_connected(&mut self) -> Option<Vec<Vec<u8>>> {
        let expected = self.next?;
        loop {
            let (&start, _) = self.held.iter().next()?;
            if start > expected {
                return None;
            }
            let run = self.held.remove(&start)?;
            self.held_blocks = self.held_blocks.saturating_sub(run.len());
            self.held_bytes = self.held_bytes.saturating_sub(run.iter().map(Vec::len).sum());
            let end = start.saturating_add(len_i32(run.len()));
            if end > expected {
                let skip = usize::try_from(expected.saturating_sub(start)).unwrap_or(usize::MAX);
                return Some(run.into_iter().skip(skip).collect());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn b(n: u8) -> Vec<u8> {
        vec![n; 10]
    }

    #[test]
    fn in_order_duplicates_and_overlaps() {
        let mut s = SubSync::new(100, 10_000);
        s.set_next(2);
        assert_eq!(s.receive(vec![b(1)], 2), Receive::Old);
        assert_eq!(s.receive(vec![b(1), b(2), b(3)], 4), Receive::Apply(vec![b(2), b(3)]));
        s.advance();
        // A refused block: the offset stays on it.
        assert_eq!(s.next(), Some(3));
        assert_eq!(s.receive(vec![b(3)], 4), Receive::Apply(vec![b(3)]));
    }

    #[test]
    fn gaps_are_held_and_connect_later() {
        let mut s = SubSync::new(100, 10_000);
        s.set_next(0);
        assert_eq!(s.receive(vec![b(3), b(4)], 5), Receive::Gap);
        assert_eq!(s.receive(vec![b(7)], 8), Receive::Gap);
        assert_eq!(s.held(), (3, 30));
        assert_eq!(s.take_connected(), None);
        for _ in 0..4 {
            s.advance();
        }
        assert_eq!(s.take_connected(), Some(vec![b(4)]));
        assert_eq!(s.take_connected(), None, "7 is still beyond a gap");
        assert_eq!(s.held(), (1, 10));
    }

    #[test]
    fn held_is_bounded_by_blocks_and_bytes_and_empty_runs_hold_nothing() {
        let mut s = SubSync::new(3, 25);
        s.set_next(0);
        for k in 0..1_000 {
            assert_eq!(s.receive(vec![], 10 + k), Receive::Gap);
        }
        assert_eq!(s.held(), (0, 0));
        assert_eq!(s.receive(vec![b(1), b(2)], 12), Receive::Gap);
        assert_eq!(s.receive(vec![b(3)], 21), Receive::Gap, "over the byte bound: dropped");
        assert_eq!(s.held(), (2, 20));
        let mut t = SubSync::new(3, 1_000);
        t.set_next(0);
        for k in 0..10 {
            t.receive(vec![b(1), b(2)], 10 + 3 * k);
        }
        assert!(t.held().0 <= 3);
    }

    #[test]
    fn an_expiring_sub_chain_skips_what_can_no_longer_matter_and_never_passes_the_server() {
        let mut s = SubSync::expiring(100, 10_000, 10);
        s.set_next(0);
        assert_eq!(s.skip_stale(), 0, "nothing newer known");
        assert_eq!(s.receive(vec![b(1), b(2)], 8), Receive::Gap);
        assert_eq!(s.skip_stale(), 0, "within the window");
        assert_eq!(s.receive(vec![b(3)], 30), Receive::Gap);
        assert_eq!(s.receive(vec![b(4), b(5)], 50), Receive::Gap);
        assert_eq!(s.held(), (5, 50));
        assert_eq!(s.skip_stale(), 40);
        assert_eq!(s.next(), Some(40));
        assert_eq!(s.held(), (2, 20), "what was held before the window is gone");
        assert_eq!(s.receive(vec![b(9)], 41), Receive::Apply(vec![b(9)]));
        // A bogus offset made us skip past the server's newest entry: its empty answer below us
        // brings us back; an answer at or above us, or with entries, does not.
        assert_eq!(s.receive(vec![], 100_000), Receive::Gap);
        assert_eq!(s.skip_stale(), 99_950);
        assert!(!s.rewind(100_000));
        assert!(s.rewind(52));
        assert_eq!((s.next(), s.held()), (Some(52), (0, 0)));
        assert_eq!(s.skip_stale(), 0);
        // Blocks never skip, never rewind.
        let mut t = SubSync::new(100, 10_000);
        t.set_next(0);
        assert_eq!(t.receive(vec![b(1)], 1_000), Receive::Gap);
        assert_eq!(t.skip_stale(), 0);
        assert!(!t.rewind(0));
        assert_eq!(t.next(), Some(0));
    }

    /// Review: offsets at the ends of i32 move the window without overflow, and a server that
    /// lied costs a skip and a rewind, after which the sub-chain reads on from the server's
    /// offset.
    #[test]
    fn extreme_offsets_skip_and_rewind_without_overflow() {
        let mut s = SubSync::expiring(100, 10_000, 6_400);
        s.set_next(10);
        assert_eq!(s.receive(vec![b(1)], i32::MAX), Receive::Gap);
        assert_eq!(s.skip_stale(), i32::MAX - 6_400 - 10);
        assert_eq!(s.held(), (1, 10), "the run at the end is beyond the window's start: kept");
        for _ in 0..10_000 {
            s.advance();
        }
        assert_eq!(s.next(), Some(i32::MAX));
        assert_eq!(s.take_connected(), None, "wholly old now");
        assert_eq!(s.receive(vec![b(2); 3], i32::MAX), Receive::Old);
        assert!(s.rewind(11));
        assert_eq!(s.receive(vec![b(3)], 12), Receive::Apply(vec![b(3)]));
        assert_eq!(s.skip_stale(), 0, "the window is below zero: nothing to skip");
        for bogus in [i32::MIN, -1, -6_400] {
            assert_eq!(s.receive(vec![b(4)], bogus), Receive::Old);
            assert!(!s.rewind(bogus));
        }
        assert_eq!(s.next(), Some(11));
    }

    #[test]
    fn an_unknown_offset_is_learnt_and_hostile_offsets_are_old() {
        let mut s = SubSync::new(10, 1_000);
        assert_eq!(s.receive(vec![b(9)], 10), Receive::Apply(vec![b(9)]));
        assert_eq!(s.next(), Some(9));
        assert_eq!(s.receive(vec![b(1), b(2)], 1), Receive::Old, "negative first offset");
        assert_eq!(s.receive(vec![], i32::MIN), Receive::Old);
    }
}
