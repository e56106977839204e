//! Emoji verification: the commit/reveal round every participant runs after every block, and the
//! fingerprints shown to people (four emojis, 24 verification words).
//!
//! ```text
//!  new block (height h, hash H) ──▶ Commit phase: send commit(SHA-256(nonce)), collect commits
//!        all participants committed ──▶ Reveal phase: send reveal(nonce), collect reveals
//!        all participants revealed  ──▶ Done: emoji_hash = HMAC-SHA512(sorted nonces, H)
//! ```
//!
//! Broadcasts travel through the server (sub-chain 1 of getGroupCallChainBlocks), our own included:
//! a participant counts its own commit only when the server echoes it back. Broadcasts for older
//! heights are ignored; those for the next [`HELD_BROADCAST_HEIGHTS`] heights are held until their
//! block (at most [`HELD_BROADCASTS_PER_SENDER`] per height, user and kind, where one signed with
//! the user's current key displaces one that is not, and [`MAX_HELD_BROADCASTS`] in all, where a
//! current participant's broadcast displaces one of a sender who is not); those further ahead are
//! ignored (the session fetches them again once its blocks caught up).

use std::collections::{BTreeMap, HashMap};

use rand_core::CryptoRngCore;

use crate::crypto::{self, PrivateKey, PublicKey, Secret};
use crate::emoji::emojis_from_hash;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::{HELD_BROADCASTS_PER_SENDER, HELD_BROADCAST_HEIGHTS, MAX_HELD_BROADCASTS};
use crate::wire::{Broadcast, BroadcastPayload, GroupState};


const WORD_DATA: &str = include_str!("data/bip39_english.txt");

/// The BIP-39 English word list (2048 words).
pub fn word_list() -> impl Iterator<Item = &'static str> {
    WORD_DATA.lines()
}

/// The word list, split once (a lookup by index must not walk the text every time).
fn words_table() -> &'static [&'static str] {
    static TABLE: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| word_list().collect())
}

fn word(i: usize) -> &'static str {
    words_table().get(i).copied().unwrap_or("?")
}

/// The 24 verification words of a block hash: 11-bit indices read least-significant bit first
/// from `HMAC-SHA512("MnemonicVerificationWords", block_hash)`.
#[allow(clippy::arithmetic_side_effects)] // bit indices below 264
pub fn verification_words(block_hash: &[u8; 32]) -> Vec<&'static str> {
    let h = crypto::hmac_sha512(b"MnemonicVerificationWords", &[block_hash]);
    let bit = |i: usize| h.expose().get(i / 8).map_or(0, |b| usize::from((b >> (i % 8)) & 1));
    (0..24).map(|w| word((0..11).fold(0, |acc, k| acc | bit(11 * w + k) << k))).collect()
}

/// Where the round for the current block stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerificationPhase {
    /// Collecting commits.
    Commit,
    /// Collecting reveals.
    Reveal,
    /// Every participant revealed; the emoji hash is known.
    Done,
}

/// The outcome of a completed round.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationResult {
    /// Height of the block verified.
    pub height: i32,
    /// `HMAC-SHA512(concatenation of all nonces sorted bytewise, block hash)`.
    pub emoji_hash: [u8; 64],
}

impl VerificationResult {
    /// The four emojis shown to people.
    pub fn emojis(&self) -> [&'static str; 4] {
        emojis_from_hash(&self.emoji_hash)
    }
}

impl std::fmt::Debug for VerificationResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerificationResult(height {}, {})", self.height, self.emojis().concat())
    }
}

/// One participant's emoji-verification state machine (sans-IO).
#[derive(Debug, Clone)]
pub struct Verification {
    user_id: i64,
    height: i32,
    block_hash: [u8; 32],
    phase: VerificationPhase,
    nonce: Secret<32>,
    participants: HashMap<i64, PublicKey>,
    commits: HashMap<i64, [u8; 32]>,
    reveals: BTreeMap<i64, [u8; 32]>,
    sent_reveal: bool,
    participating: bool,
    result: Option<VerificationResult>,
    held: BTreeMap<i32, Vec<Broadcast>>,
    held_count: usize,
    /// Most broadcasts held for future heights in all ([`MAX_HELD_BROADCASTS`] unless set).
    max_held: usize,
    outbound: Vec<Vec<u8>>,
    /// The call's cache of prepared sender keys (its packet path's), if any: a broadcast whose
    /// sender's key is there is verified from its tables (same verdicts, SPEC.md §7.2).
    keys: KeySource,
}

/// Where [`Verification`] takes prepared keys from.
#[derive(Clone, Default)]
struct KeySource(Option<std::sync::Arc<crate::media::Shared>>);

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySource({})", if self.0.is_some() { "call's key cache" } else { "none" })
    }
}

impl KeySource {
    /// Verifies with the sender's prepared key when the call's cache has one (the call prepares
    /// its participants' keys as they enter it), else with the key's bytes; the same verdicts
    /// either way. Broadcasts never build tables themselves: the cache bounds them.
    fn verify(&self, key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        match self.0.as_ref().and_then(|cache| cache.cached_prepared_key(key)) {
            Some(prepared) => prepared.verify(message, signature),
            None => key.verify(message, signature),
        }
    }
}

impl Verification {
    /// A state machine for `user_id`, before any block.
    pub fn new(user_id: i64) -> Self {
        Verification {
            user_id,
            height: -1,
            block_hash: [0; 32],
            phase: VerificationPhase::Commit,
            nonce: Secret::from_bytes([0; 32]),
            participants: HashMap::new(),
            commits: HashMap::new(),
            reveals: BTreeMap::new(),
            sent_reveal: false,
            participating: false,
            result: None,
            held: BTreeMap::new(),
            held_count: 0,
            max_held: MAX_HELD_BROADCASTS,
            outbound: Vec::new(),
            keys: KeySource::default(),
        }
    }

    /// Holds at most `max` broadcasts for future heights in all (the session derives it from the
    /// call size limit: [`crate::session::SessionConfig::max_held_broadcasts`]).
    pub(crate) fn set_max_held(&mut self, max: usize) {
        self.max_held = max;
    }

    /// Verifies broadcasts with the prepared keys of `cache` (the call's packet-path cache).
    pub(crate) fn use_key_cache(&mut self, cache: std::sync::Arc<crate::media::Shared>) {
        self.keys = KeySource(Some(cache));
    }

    /// Starts the round for a new block: draws a 32-byte nonce from `rng`, queues our commit if we
    /// are a participant of the block (replacing anything not yet pulled) and processes broadcasts
    /// held for this height.
    pub fn on_block(
        &mut self,
        height: i32,
        block_hash: [u8; 32],
        state: &GroupState,
        key: &PrivateKey,
        rng: &mut impl CryptoRngCore,
    ) {
        self.nonce = Secret::random(rng);
        self.height = height;
        self.block_hash = block_hash;
        self.phase = VerificationPhase::Commit;
        self.participants = state.participants.iter().map(|p| (p.user_id, p.public_key)).collect();
        self.commits.clear();
        self.reveals.clear();
        self.sent_reveal = false;
        self.result = None;
        // Only a participant of the block takes part (the reference also broadcasts a commit after
        // being removed, which every other member then rejects).
        let me = key.public_key();
        self.participating = state.participants.iter().any(|p| p.user_id == self.user_id && p.public_key == me);
        self.outbound.clear();
        if self.participating {
            let commit = self.sign(BroadcastPayload::Commit(crypto::sha256(self.nonce.expose())), key);
            self.outbound.push(commit);
        }
        // Held broadcasts for this height are processed now; older ones can never apply.
        let mut later = self.held.split_off(&height);
        let current = later.remove(&height).unwrap_or_default();
        self.held = later;
        self.held_count = self.held.values().map(Vec::len).sum();
        for b in current {
            // A held broadcast that fails is dropped, as the reference does.
            let _ = self.process(b);
        }
        self.maybe_reveal(key);
    }

    fn sign(&self, payload: BroadcastPayload, key: &PrivateKey) -> Vec<u8> {
        let mut b = Broadcast {
            signature: [0; 64],
            user_id: self.user_id,
            chain_height: self.height,
            chain_hash: self.block_hash,
            payload,
        };
        b.signature = key.sign(&b.signing_bytes());
        b.encode()
    }

    fn maybe_reveal(&mut self, key: &PrivateKey) {
        if self.participating && self.phase == VerificationPhase::Reveal && !self.sent_reveal {
            self.sent_reveal = true;
            let reveal = self.sign(BroadcastPayload::Reveal(*self.nonce.expose()), key);
            self.outbound.push(reveal);
        }
    }

    /// Takes a server-form broadcast (sub-chain 1). Older heights are ignored (`Ok`), later ones
    /// held until their block. Queues our reveal once every commit is in.
    pub fn receive(&mut self, server_bytes: &[u8], key: &PrivateKey) -> Result<()> {
        let b = Broadcast::decode_server(server_bytes)?;
        if b.chain_height < self.height {
            return Ok(());
        }
        if b.chain_height > self.height {
            return self.hold(b);
        }
        self.process(b)?;
        self.maybe_reveal(key);
        Ok(())
    }

    /// Holds a broadcast for a later height, if it can still matter (see the module docs).
    fn hold(&mut self, b: Broadcast) -> Result<()> {
        let ahead = i64::from(b.chain_height).saturating_sub(i64::from(self.height));
        if ahead > i64::from(HELD_BROADCAST_HEIGHTS) {
            return Ok(());
        }
        let full = || Error::new(ErrorKind::LimitExceeded, "too many broadcasts held for future blocks");
        if self.held_count >= self.max_held && !self.evict_for(b.user_id) {
            return Err(full());
        }
        let current_key = self.participants.get(&b.user_id).copied();
        let same_height = self.held.entry(b.chain_height).or_default();
        let is_commit = matches!(b.payload, BroadcastPayload::Commit(_));
        let same_slot = |h: &Broadcast| h.user_id == b.user_id && matches!(h.payload, BroadcastPayload::Commit(_)) == is_commit;
        let same_sender = same_height.iter().filter(|h| same_slot(h)).count();
        if same_sender >= HELD_BROADCASTS_PER_SENDER {
            // The slot is full. Future broadcasts cannot be authenticated yet, but one signed
            // with the sender's current key is the member's own (unless its key changes at that
            // height): it displaces one that is not, so junk under a member's id cannot crowd out
            // its real broadcast (issue 30 item 7). At most one verification per held broadcast of
            // the slot, only when it is full.
            let signed = |h: &Broadcast, key: &PublicKey| key.verify(&h.signing_bytes(), &h.signature).is_ok();
            let key = current_key.filter(|k| signed(&b, k)).ok_or_else(full)?;
            let junk = same_height.iter().rposition(|h| same_slot(h) && !signed(h, &key)).ok_or_else(full)?;
            same_height.remove(junk);
            same_height.push(b);
            return Ok(());
        }
        same_height.push(b);
        self.held_count = self.held_count.saturating_add(1);
        Ok(())
    }

    /// When the held broadcasts are full: makes room for a broadcast of `user_id` if it is a
    /// participant now, by dropping the newest held broadcast (furthest height first) of a sender
    /// who is not. Senders of future broadcasts cannot be authenticated yet, so junk under many
    /// made-up user ids could otherwise crowd out a genuine member's early commit; each sender
    /// is bounded per height and kind, so what members hold stays bounded too.
    fn evict_for(&mut self, user_id: i64) -> bool {
        if !self.participants.contains_key(&user_id) {
            return false;
        }
        let participants = &self.participants;
        for list in self.held.values_mut().rev() {
            if let Some(i) = list.iter().rposition(|h| !participants.contains_key(&h.user_id)) {
                list.remove(i);
                self.held_count = self.held_count.saturating_sub(1);
                return true;
            }
        }
        false
    }

    fn process(&mut self, b: Broadcast) -> Result<()> {
        if b.chain_hash != self.block_hash {
            return Err(Error::bare(ErrorKind::BroadcastInvalidBlockHash));
        }
        let expected_phase = match b.payload {
            BroadcastPayload::Commit(_) => (VerificationPhase::Commit, ErrorKind::BroadcastNotInCommit),
            BroadcastPayload::Reveal(_) => (VerificationPhase::Reveal, ErrorKind::BroadcastNotInReveal),
        };
        if self.phase != expected_phase.0 {
            return Err(Error::bare(expected_phase.1));
        }
        let key = *self.participants.get(&b.user_id).ok_or_else(|| Error::bare(ErrorKind::BroadcastUnknownUserId))?;
        self.keys
            .verify(&key, &b.signing_bytes(), &b.signature)
            .map_err(|e| Error::new(ErrorKind::InvalidSignature, e.message()))?;
        match b.payload {
            BroadcastPayload::Commit(hash) => {
                if self.commits.contains_key(&b.user_id) {
                    return Err(Error::bare(ErrorKind::BroadcastAlreadyApplied));
                }
                self.commits.insert(b.user_id, hash);
                if self.commits.len() == self.participants.len() {
                    self.phase = VerificationPhase::Reveal;
                }
            }
            BroadcastPayload::Reveal(nonce) => {
                if self.reveals.contains_key(&b.user_id) {
                    return Err(Error::bare(ErrorKind::BroadcastAlreadyApplied));
                }
                let committed =
                    self.commits.get(&b.user_id).ok_or_else(|| Error::bare(ErrorKind::BroadcastInvalidReveal))?;
                if !bool::from(subtle::ConstantTimeEq::ct_eq(&crypto::sha256(&nonce)[..], &committed[..])) {
                    return Err(Error::bare(ErrorKind::BroadcastInvalidReveal));
                }
                self.reveals.insert(b.user_id, nonce);
                if self.reveals.len() == self.participants.len() {
                    let mut nonces: Vec<[u8; 32]> = self.reveals.values().copied().collect();
                    nonces.sort_unstable();
                    let full: Vec<u8> = nonces.concat();
                    let h = crypto::hmac_sha512(&full, &[&self.block_hash]);
                    self.result = Some(VerificationResult { height: self.height, emoji_hash: *h.expose() });
                    self.phase = VerificationPhase::Done;
                }
            }
        }
        Ok(())
    }

    /// Broadcasts to send with sendConferenceCallBroadcast (plain form), oldest first.
    pub fn pull_outbound(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.outbound)
    }

    /// Puts broadcasts taken with [`Verification::pull_outbound`] back in front of the queue.
    pub fn requeue_outbound(&mut self, mut pending: Vec<Vec<u8>>) {
        pending.append(&mut self.outbound);
        self.outbound = pending;
    }

    /// The current phase.
    pub fn phase(&self) -> VerificationPhase {
        self.phase
    }

    /// Height of the block being verified.
    // Without `hazmat` nothing in the library calls this: for hazmat users inspecting a round.
    #[cfg(feature = "hazmat")]
    pub fn height(&self) -> i32 {
        self.height
    }

    /// The completed result for the current block, if every participant has revealed.
    pub fn result(&self) -> Option<&VerificationResult> {
        self.result.as_ref()
    }

    /// The 24 verification words of the current block.
    pub fn words(&self) -> Vec<&'static str> {
        verification_words(&self.block_hash)
    }

    /// Participants of the current block whose broadcast for the current phase has not arrived
    /// yet (commits in the commit phase, reveals in the reveal phase), by user id; empty once done.
    /// A round that never completes names who is stalling it here.
    pub fn missing(&self) -> Vec<i64> {
        let mut missing: Vec<i64> = match self.phase {
            VerificationPhase::Commit => self.participants.keys().filter(|u| !self.commits.contains_key(u)).copied().collect(),
            VerificationPhase::Reveal => self.participants.keys().filter(|u| !self.reveals.contains_key(u)).copied().collect(),
            VerificationPhase::Done => Vec::new(),
        };
        missing.sort_unstable();
        missing
    }

    /// Number of broadcasts held for future heights.
    // Without `hazmat` nothing in the library calls this: for hazmat users inspecting a round.
    #[cfg(feature = "hazmat")]
    pub fn held_count(&self) -> usize {
        self.held_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_list_has_its_size() {
        assert_eq!(word_list().count(), 2048);
    }
}
