//! Replay protection of call packets: the reference's set of seen sequence numbers per
//! (sender key, channel).

use std::collections::BTreeSet;

use crate::error::{Error, ErrorKind, Result};
use crate::limits::REPLAY_WINDOW;

/// The replay state of one (sender, channel): the sequence numbers seen, at most
/// [`REPLAY_WINDOW`] of them and none more than [`REPLAY_WINDOW`] behind the newest.
#[derive(Default, Debug, Clone)]
pub struct ReplayWindow {
    seen: BTreeSet<u32>,
}

impl ReplayWindow {
    /// Fails if `seqno` is older than the smallest remembered or was already seen.
    pub fn check(&self, seqno: u32) -> Result<()> {
        match self.seen.first() {
            Some(&min) if seqno < min => Err(Error::new(ErrorKind::Replay, "Message is too old")),
            _ if self.seen.contains(&seqno) => Err(Error::new(ErrorKind::Replay, "Message is already processed")),
            _ => Ok(()),
        }
    }

    /// Records an accepted `seqno`, forgetting the smallest while more than [`REPLAY_WINDOW`] are
    /// remembered or the smallest is more than [`REPLAY_WINDOW`] behind `seqno`.
    pub fn mark(&mut self, seqno: u32) {
        self.seen.insert(seqno);
        while let Some(&min) = self.seen.first() {
            if self.seen.len() > REPLAY_WINDOW || u64::from(min).saturating_add(REPLAY_WINDOW as u64) < u64::from(seqno) {
                self.seen.pop_first();
            } else {
                break;
            }
        }
    }

    /// Number of remembered sequence numbers.
    // Without `hazmat` nothing in the library calls this: for hazmat users inspecting a window.
    #[cfg(feature = "hazmat")]
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    // Without `hazmat` nothing in the library calls this: for hazmat users inspecting a window.
    #[cfg(feature = "hazmat")]
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
