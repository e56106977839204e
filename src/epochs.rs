//! The epochs of a call: one per block whose group key we hold, the current one and those in
//! their grace period.
//!
//! ```text
//!  block h applied ──▶ every epoch without a deadline gets retire_at = now + EPOCH_GRACE_MS
//!                 └──▶ epoch h opens (if we hold its key) and is the current one
//!  handle_timeout(now) ──▶ epochs with retire_at <= now are forgotten (the reference's
//!                          `forget_at <= now`), as are the oldest retiring ones beyond MAX_EPOCHS
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use crate::chain::GroupKey;
use crate::limits::{EPOCH_GRACE_MS, MAX_EPOCHS};
use crate::packet::EpochKey;
use crate::wire::GroupState;

/// One epoch: the key of one block, usable while the block is current and for
/// [`EPOCH_GRACE_MS`] after the next one.
#[cfg_attr(feature = "hazmat", derive(Clone))]
pub(crate) struct Epoch {
    pub(crate) height: i32,
    pub(crate) key: EpochKey,
    pub(crate) fingerprint: String,
    pub(crate) state: Arc<GroupState>,
    retire_at: Option<u64>,
}

impl Epoch {
    /// When the epoch is forgotten, once it is retiring.
    pub(crate) fn retire_at(&self) -> Option<u64> {
        self.retire_at
    }
}

/// The active epochs, oldest first.
#[derive(Default)]
#[cfg_attr(feature = "hazmat", derive(Clone))]
pub(crate) struct Epochs {
    list: VecDeque<Epoch>,
}

impl Epochs {
    /// Starts the grace period of every epoch that has none yet (the current one). Saturating:
    /// a `now` near `u64::MAX` still gives a deadline, never a wrapped one.
    pub(crate) fn retire_current(&mut self, now: u64) {
        for e in self.list.iter_mut().filter(|e| e.retire_at.is_none()) {
            e.retire_at = Some(now.saturating_add(EPOCH_GRACE_MS));
        }
    }

    /// Opens the epoch of the block at `height` (hash `hash`) with its group key.
    pub(crate) fn open(&mut self, height: i32, hash: [u8; 32], key: &GroupKey, state: Arc<GroupState>) {
        self.list.push_back(Epoch {
            height,
            key: EpochKey::new(hash, key),
            fingerprint: key.fingerprint(),
            state,
            retire_at: None,
        });
    }

    /// Forgets epochs whose grace period is over at `now` (`retire_at <= now`) and the oldest
    /// retiring ones beyond [`MAX_EPOCHS`]; returns the heights forgotten, oldest first.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<i32> {
        let mut gone = Vec::new();
        while let Some(front) = self.list.front() {
            let Some(t) = front.retire_at else { break };
            if t > now && self.list.len() <= MAX_EPOCHS {
                break;
            }
            gone.push(front.height);
            self.list.pop_front();
        }
        gone
    }

    /// The earliest instant at which [`Epochs::expire`] has work.
    pub(crate) fn deadline(&self) -> Option<u64> {
        self.list.iter().filter_map(|e| e.retire_at).min()
    }

    /// The current epoch: the newest, if it is not retiring.
    pub(crate) fn current(&self) -> Option<&Epoch> {
        self.list.back().filter(|e| e.retire_at.is_none())
    }

    /// Every active epoch, oldest first.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &Epoch> + Clone {
        self.list.iter()
    }
}
