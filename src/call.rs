//! The call object: one participant's view of a conference call for its whole duration.
//!
//! ```text
//!            server-form blocks                    server-form broadcasts
//!                   │                                       │
//!                   ▼                                       ▼
//!   Call::apply_block(bytes, now, rng) ──▶ Chain    Call::receive_broadcast(bytes, now)
//!        │ opens an epoch (height, hash, group key)          │
//!        │ starts a verification round (commit)               ▼
//!        ▼                                            Verification ──▶ poll_outbound()
//!   epochs (<= 15; the previous ones live 10 s) ──▶ encrypt / decrypt packets
//!                                                     poll_event(), poll_timeout()
//! ```
//!
//! Sans-IO: the caller passes the time (`now`, milliseconds of a monotonic clock of its choosing)
//! and an RNG into every call that needs them, and pulls outputs (broadcasts to send, events).
//! Nothing here reads a clock, draws OS randomness or touches the network.
//!
//! Failure policy: a block that fails validation is rejected with its error and the call stays
//! exactly as it was (the reference instead marks the whole call failed); see SPEC.md §8.1.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use rand_core::CryptoRngCore;

use crate::chain::{Chain, GroupKey};
use crate::crypto::{PrivateKey, PublicKey};
use crate::error::{Error, ErrorKind, Result};
use crate::packet::{self, EpochKey};
use crate::verification::{Phase, Verification, VerificationResult};
use crate::wire::{Block, GroupParticipant, GroupState};

/// How long the previous epoch stays usable after a new block, in milliseconds.
pub const EPOCH_GRACE_MS: u64 = 10_000;
/// Sequence numbers remembered per (sender, channel).
pub const REPLAY_WINDOW: usize = 1024;
/// Most verifying keys cached (decompressed Ed25519 points of packet senders).
const MAX_CACHED_KEYS: usize = 4 * crate::limits::MAX_PARTICIPANTS;

/// One epoch: the key of one block, usable while the block is current and for
/// [`EPOCH_GRACE_MS`] after the next one.
#[derive(Clone)]
struct Epoch {
    height: i32,
    key: EpochKey,
    fingerprint: String,
    state: Arc<GroupState>,
    retire_at: Option<u64>,
}

/// What happened, for the application to act on (pull with [`Call::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A block was applied; a new epoch is open if we are still a participant.
    BlockApplied {
        /// Its height.
        height: i32,
    },
    /// The block at `height` no longer lists us: we can no longer encrypt.
    Removed {
        /// Height of the block that removed us.
        height: i32,
    },
    /// An old epoch was dropped.
    EpochExpired {
        /// Its height.
        height: i32,
    },
    /// Emoji verification completed for the block at `height`.
    VerificationDone {
        /// The result (emoji hash; [`VerificationResult::emojis`]).
        result: VerificationResult,
    },
}

/// The replay state of one (sender, channel): the reference's set of seen sequence numbers.
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
            if self.seen.len() > REPLAY_WINDOW || u64::from(min) + (REPLAY_WINDOW as u64) < u64::from(seqno) {
                self.seen.pop_first();
            } else {
                break;
            }
        }
    }

    /// Number of remembered sequence numbers.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// One participant's conference call. Cloning gives an independent copy (e.g. to try a block
/// speculatively); both copies hold the same key, so only one of them may send packets.
///
/// ```
/// use confchain::chain::build_zero_block;
/// use confchain::wire::{to_server_form, GroupParticipant, GroupState};
/// use confchain::{Call, PrivateKey};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
/// let (a, b) = (PrivateKey::generate(&mut rng), PrivateKey::generate(&mut rng));
/// let member = |id, key: &PrivateKey| GroupParticipant { user_id: id, public_key: key.public_key(), flags: 3, version: 0 };
/// let state = GroupState { participants: vec![member(1, &a), member(2, &b)], external_permissions: 0 };
/// let block = to_server_form(&build_zero_block(state, &a, &mut rng)?)?;
///
/// let mut alice = Call::new(1, a, &block, &mut rng)?;
/// let mut bob = Call::new(2, b, &block, &mut rng)?;
/// let now = 1_000; // ms, from the caller's monotonic clock
/// let packet = alice.encrypt(1, b"frame", 0, now, &mut rng)?;
/// assert_eq!(bob.decrypt(1, 1, &packet, now)?, b"frame");
/// // A replayed packet is refused.
/// assert_eq!(bob.decrypt(1, 1, &packet, now).unwrap_err().kind(), confchain::ErrorKind::Replay);
/// # Ok::<(), confchain::Error>(())
/// ```
#[derive(Clone)]
pub struct Call {
    user_id: i64,
    key: PrivateKey,
    chain: Chain,
    epochs: VecDeque<Epoch>,
    seqnos: Vec<u32>,
    seen: HashMap<(PublicKey, i32), ReplayWindow>,
    verifying_keys: HashMap<PublicKey, VerifyingKey>,
    verification: Verification,
    events: VecDeque<Event>,
    removed_at: Option<i32>,
    verified_height: Option<i32>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("user_id", &self.user_id)
            .field("height", &self.chain.height())
            .field("epochs", &self.epochs.iter().map(|e| e.height).collect::<Vec<_>>())
            .field("member", &self.is_member())
            .finish_non_exhaustive()
    }
}

impl Call {
    /// Creates the call from the last block of the chain (server form, as getGroupCallChainBlocks
    /// returns it). We must be a participant of that block under `user_id`. Draws the verification
    /// nonce (32 bytes) from `rng`.
    pub fn new(user_id: i64, key: PrivateKey, last_block_server: &[u8], rng: &mut impl CryptoRngCore) -> Result<Self> {
        let chain = Chain::from_server_block(last_block_server)?;
        Call::from_chain(user_id, key, chain, rng)
    }

    /// Creates the call from a chain the caller already validated. Nothing here depends on the
    /// time: the first epoch lasts until the next block.
    pub fn from_chain(user_id: i64, key: PrivateKey, chain: Chain, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let group_key = chain.group_key(user_id, &key)?;
        let mut call = Call {
            user_id,
            key,
            chain,
            epochs: VecDeque::new(),
            seqnos: vec![0; packet::MAX_CHANNEL as usize + 1],
            seen: HashMap::new(),
            verifying_keys: HashMap::new(),
            verification: Verification::new(user_id),
            events: VecDeque::new(),
            removed_at: None,
            verified_height: None,
        };
        call.open_epoch(group_key);
        call.start_verification(rng);
        Ok(call)
    }

    fn open_epoch(&mut self, key: GroupKey) {
        self.epochs.push_back(Epoch {
            height: self.chain.height(),
            key: EpochKey::new(*self.chain.hash(), &key),
            fingerprint: key.fingerprint(),
            state: self.chain.group_state_arc(),
            retire_at: None,
        });
    }

    fn start_verification(&mut self, rng: &mut impl CryptoRngCore) {
        let (h, hash) = (self.chain.height(), *self.chain.hash());
        self.verification.on_block(h, hash, self.chain.group_state(), &self.key, rng);
        self.note_verification();
    }

    fn note_verification(&mut self) {
        if let Some(r) = self.verification.result() {
            if self.verified_height != Some(r.height) {
                self.verified_height = Some(r.height);
                self.events.push_back(Event::VerificationDone { result: r.clone() });
            }
        }
    }

    /// Drops epochs whose grace period is over, and the oldest retiring ones beyond
    /// [`packet::MAX_EPOCHS`].
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some(front) = self.epochs.front() {
            let expired = front.retire_at.is_some_and(|t| now > t);
            let too_many = front.retire_at.is_some() && self.epochs.len() > packet::MAX_EPOCHS;
            if !(expired || too_many) {
                break;
            }
            let height = front.height;
            self.epochs.pop_front();
            self.events.push_back(Event::EpochExpired { height });
        }
    }

    /// When [`Call::handle_timeout`] next has work: the earliest retirement deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.epochs.iter().filter_map(|e| e.retire_at.map(|t| t + 1)).min()
    }

    /// Applies the next block (server form). The new block's epoch opens (if we are still a
    /// participant), the previous one starts its grace period, and a verification round begins
    /// (drawing a 32-byte nonce from `rng`). On error nothing changes.
    pub fn apply_block(&mut self, server_bytes: &[u8], now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.handle_timeout(now);
        let block = Block::decode_server(server_bytes)?;
        let mut next = self.chain.clone();
        next.apply_block(block)?;
        let group_key = match next.group_key(self.user_id, &self.key) {
            Ok(k) => Some(k),
            Err(e) if e.kind() == ErrorKind::NotParticipant => None,
            Err(e) => return Err(e),
        };
        // Accepted: from here on nothing fails.
        self.chain = next;
        for e in self.epochs.iter_mut().filter(|e| e.retire_at.is_none()) {
            e.retire_at = Some(now + EPOCH_GRACE_MS);
        }
        let height = self.chain.height();
        self.events.push_back(Event::BlockApplied { height });
        match group_key {
            Some(k) => {
                self.removed_at = None;
                self.open_epoch(k);
            }
            None => {
                self.removed_at = Some(height);
                self.events.push_back(Event::Removed { height });
            }
        }
        self.handle_timeout(now);
        self.start_verification(rng);
        Ok(())
    }

    /// Takes an emoji-verification broadcast (server form, sub-chain 1).
    pub fn receive_broadcast(&mut self, server_bytes: &[u8]) -> Result<()> {
        self.verification.receive(server_bytes, &self.key)?;
        self.note_verification();
        Ok(())
    }

    /// Broadcasts to send with sendConferenceCallBroadcast (plain form).
    pub fn poll_outbound(&mut self) -> Vec<Vec<u8>> {
        self.verification.pull_outbound()
    }

    /// Puts broadcasts taken with [`Call::poll_outbound`] but not sent back in front of the queue
    /// (for callers that send one at a time).
    pub fn requeue_outbound(&mut self, pending: Vec<Vec<u8>>) {
        self.verification.requeue_outbound(pending);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Encrypts a packet for every active epoch. `data[..clear_prefix_len]` stays in clear (e.g.
    /// a media header the SFU reads). Draws the one-time secret (32 bytes) and the prefix bytes
    /// from `rng`.
    pub fn encrypt(
        &mut self,
        channel: i32,
        data: &[u8],
        clear_prefix_len: usize,
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encrypt_into(channel, data, clear_prefix_len, now, rng, &mut out)?;
        Ok(out)
    }

    /// [`Call::encrypt`] appending to a caller-provided buffer (no other allocation on this path).
    pub fn encrypt_into(
        &mut self,
        channel: i32,
        data: &[u8],
        clear_prefix_len: usize,
        now: u64,
        rng: &mut impl CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.handle_timeout(now);
        packet::check_clear_prefix(data.len(), clear_prefix_len)?;
        if let Some(h) = self.removed_at {
            return Err(Error::new(
                ErrorKind::NotParticipant,
                format!("we are no longer a participant (removed by the block at height {h})"),
            ));
        }
        packet::validate_channel(channel)?;
        let slot = self.seqnos.get_mut(channel as usize).ok_or_else(|| Error::bare(ErrorKind::InvalidCallChannelId))?;
        let seqno = slot.checked_add(1).ok_or_else(|| Error::new(ErrorKind::LimitExceeded, "Seqno overflow"))?;
        *slot = seqno;
        let epochs = self.epochs.iter().map(|e| &e.key);
        packet::encrypt_into(epochs, &self.key, channel, seqno, data, clear_prefix_len, rng, out)
    }

    /// Decrypts a packet from `sender_user_id`. `channel` is informational (the reference ignores
    /// it too; the channel inside the packet is authoritative).
    pub fn decrypt(&mut self, sender_user_id: i64, channel: i32, packet: &[u8], now: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.decrypt_into(sender_user_id, channel, packet, now, &mut out)?;
        Ok(out)
    }

    /// [`Call::decrypt`] appending `clear_prefix || payload` to a caller-provided buffer.
    pub fn decrypt_into(
        &mut self,
        sender_user_id: i64,
        channel: i32,
        packet: &[u8],
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let _ = channel;
        self.handle_timeout(now);
        let (clear_prefix, encrypted) = packet::split_trailer(packet)?;
        if sender_user_id == self.user_id {
            return Err(Error::new(ErrorKind::OwnPacket, "Packet is encrypted by us"));
        }
        let p = packet::parse_encrypted(clear_prefix, encrypted)?;
        for i in 0..p.epoch_count {
            let (Some(hash), Some(header)) = (p.epoch_hash(i), p.header(i)) else {
                break;
            };
            let Some(epoch) = self.epochs.iter().find(|e| &e.key.hash == hash) else {
                continue;
            };
            let one_time = epoch.key.header_key.decrypt(header, p.body)?;
            let sender = epoch
                .state
                .participant(sender_user_id)
                .map(|p| p.public_key)
                .ok_or_else(|| Error::new(ErrorKind::ParticipantNotFound, "Participant not found"))?;
            let verifying = self.verifying_key(&sender)?;
            let start = out.len();
            let opened = packet::open_into(&p, &one_time, &verifying, out)?;
            let window = self.seen.entry((sender, opened.channel)).or_default();
            if let Err(e) = window.check(opened.seqno) {
                out.truncate(start);
                return Err(e);
            }
            window.mark(opened.seqno);
            return Ok(());
        }
        Err(Error::bare(ErrorKind::DecryptUnknownEpoch))
    }

    fn verifying_key(&mut self, key: &PublicKey) -> Result<VerifyingKey> {
        if let Some(k) = self.verifying_keys.get(key) {
            return Ok(*k);
        }
        let k = key.verifying_key().map_err(|_| Error::new(ErrorKind::WrongSignature, "Wrong signature"))?;
        if self.verifying_keys.len() >= MAX_CACHED_KEYS {
            self.verifying_keys.clear();
        }
        self.verifying_keys.insert(*key, k);
        Ok(k)
    }

    /// Encrypts a `sendGroupCallEncryptedMessage` payload: the JSON text on channel 0, no clear prefix.
    pub fn encrypt_message(&mut self, json: &str, now: u64, rng: &mut impl CryptoRngCore) -> Result<Vec<u8>> {
        self.encrypt(0, json.as_bytes(), 0, now, rng)
    }

    /// Decrypts an encrypted message from `sender_user_id` into its JSON text.
    pub fn decrypt_message(&mut self, sender_user_id: i64, message: &[u8], now: u64) -> Result<String> {
        let bytes = self.decrypt(sender_user_id, 0, message, now)?;
        String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidInput, "message is not UTF-8"))
    }

    /// Builds a block that sets `new_state` with a fresh key (add/remove members, permissions,
    /// re-key with the same state). Plain form, for deleteConferenceCallParticipants and friends.
    pub fn build_change_state(&self, new_state: GroupState, rng: &mut impl CryptoRngCore) -> Result<Vec<u8>> {
        self.chain.build_change_state(new_state, &self.key, rng)
    }

    /// A block removing the given users (deleteConferenceCallParticipants).
    pub fn build_remove(&self, user_ids: &[i64], rng: &mut impl CryptoRngCore) -> Result<Vec<u8>> {
        let mut state = self.chain.group_state().clone();
        state.participants.retain(|p| !user_ids.contains(&p.user_id));
        self.build_change_state(state, rng)
    }

    /// A block re-keying the current group.
    pub fn build_rekey(&self, rng: &mut impl CryptoRngCore) -> Result<Vec<u8>> {
        self.build_change_state(self.chain.group_state().clone(), rng)
    }

    /// A block setting `flags` as the permissions of `user_id`.
    pub fn build_set_permissions(&self, user_id: i64, flags: i32, rng: &mut impl CryptoRngCore) -> Result<Vec<u8>> {
        let mut state = self.chain.group_state().clone();
        let p = state
            .participants
            .iter_mut()
            .find(|p| p.user_id == user_id)
            .ok_or_else(|| Error::new(ErrorKind::ParticipantNotFound, "Participant not found"))?;
        p.flags = flags;
        self.build_change_state(state, rng)
    }

    /// Our user id.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// Our public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The chain state.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Height of the last applied block.
    pub fn height(&self) -> i32 {
        self.chain.height()
    }

    /// The current participants.
    pub fn participants(&self) -> &[GroupParticipant] {
        self.chain.participants()
    }

    /// Whether the last block lists us.
    pub fn is_member(&self) -> bool {
        self.removed_at.is_none()
    }

    /// Heights of the active epochs, ascending.
    pub fn active_epochs(&self) -> Vec<i32> {
        self.epochs.iter().map(|e| e.height).collect()
    }

    /// Fingerprint (short hash, safe to show) of the current epoch's key.
    pub fn key_fingerprint(&self) -> Option<String> {
        self.epochs.back().filter(|e| e.retire_at.is_none()).map(|e| e.fingerprint.clone())
    }

    /// The current verification phase.
    pub fn verification_phase(&self) -> Phase {
        self.verification.phase()
    }

    /// The completed verification of the current block, if any.
    pub fn verification_result(&self) -> Option<&VerificationResult> {
        self.verification.result()
    }

    /// The four emojis of the current block, once verification completed.
    pub fn emojis(&self) -> Option<[&'static str; 4]> {
        self.verification.result().map(|r| r.emojis())
    }

    /// The 24 verification words of the current block.
    pub fn verification_words(&self) -> Vec<&'static str> {
        self.verification.words()
    }
}
