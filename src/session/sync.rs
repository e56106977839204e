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
    fn an_unknown_offset_is_learnt_and_hostile_offsets_are_old() {
        let mut s = SubSync::new(10, 1_000);
        assert_eq!(s.receive(vec![b(9)], 10), Receive::Apply(vec![b(9)]));
        assert_eq!(s.next(), Some(9));
        assert_eq!(s.receive(vec![b(1), b(2)], 1), Receive::Old, "negative first offset");
        assert_eq!(s.receive(vec![], i32::MIN), Receive::Old);
    }
}
