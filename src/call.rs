//! The call object: one participant's view of a conference call for its whole duration.
//!
//! ```text
//!            server-form blocks                    server-form broadcasts
//!                   │                                       │
//!                   ▼                                       ▼
//!   Call::apply_block(bytes, now, rng) ──▶ Chain    Call::receive_broadcast(bytes)
//!        │ retires the current epoch (10 s grace)           │
//!        │ opens the block's epoch, if we can read its key  ▼
//!        │ starts a verification round (commit)     Verification ──▶ poll_outbound()
//!        ▼
//!   epochs (<= 15) ──▶ encrypt / decrypt packets     poll_event(), poll_timeout(), handle_timeout()
//! ```
//!
//! Sans-IO: the caller passes the time (`now`, milliseconds of a monotonic clock of its choosing)
//! and an RNG into every call that needs them, and pulls outputs (broadcasts to send, events).
//! Nothing here reads a clock, draws OS randomness or touches the network.
//!
//! Failure policy (SPEC.md §8.1): a block that is invalid for the chain is rejected with its error
//! and the call stays exactly as it was. A block that is valid for the chain is always applied,
//! even when we cannot read our key in it: the previous epoch then starts its grace period as
//! after any block, we hold no current key ([`CallEvent::KeyUnavailable`]; encrypting fails with
//! [`ErrorKind::KeyUnavailable`]) until a later block gives us one.

use std::collections::VecDeque;
use std::sync::Arc;

use rand_core::CryptoRngCore;

use crate::chain::{Chain, GroupKey, UnverifiedTip};
use crate::crypto::{PrivateKey, PublicKey};
use crate::epochs::Epochs;
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{self, AudioLevel, Codec, ReceivedFrame, SentFrame};
use crate::media::{MediaDecryptor, MediaEncryptor, Shared, SnapEpoch, Snapshot};
use crate::packet::Plaintext;
use crate::verification::{Verification, VerificationPhase, VerificationResult};
use crate::wire::{Block, GroupParticipant, GroupState, Permissions, PlainBlock};

/// What happened, for the application to act on (pull with [`Call::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEvent {
    /// A block passed every rule of the chain from our verified state and was applied; a new
    /// epoch is open if we hold its key.
    BlockApplied {
        /// Its height.
        height: i32,
    },
    /// [`Call::resync`] adopted the server's tip **on trust**, without verifying it (an
    /// [`UnverifiedTip`]), as a first join does; a new epoch is open if we hold its key. Never
    /// reported as [`CallEvent::BlockApplied`]: what the call verified and what it took on the
    /// server's word stay apart.
    TipAdopted {
        /// The tip's height.
        height: i32,
    },
    /// The block at `height` no longer lists us: we can no longer encrypt.
    Removed {
        /// Height of the block that removed us.
        height: i32,
    },
    /// The block at `height` is valid and lists us, but our group key cannot be read from it
    /// (a garbage key header, a state with no shared key, ...). The previous epoch is retiring
    /// and we hold no current key: encrypting fails with [`ErrorKind::KeyUnavailable`] until a
    /// later block gives us a key.
    KeyUnavailable {
        /// Height of the block.
        height: i32,
        /// Why the key could not be read.
        error: Error,
    },
    /// An old epoch was dropped.
    EpochExpired {
        /// Its height.
        height: i32,
    },
    /// The active epochs black out H.264 video (`now`), or will once the block at `height` is the
    /// oldest active one: every H.264 packet would hold a NAL start code right after its clear
    /// prefix (an epoch hash starting `01`, `00 01` or `00 00 01`, about 1 block in 256), so
    /// [`Call::encrypt_frame`] drops every H.264 frame ([`ErrorKind::FrameStartCode`]), as the
    /// official apps do, for as long as that epoch is listed. Reported when the block is applied,
    /// before it bites: a re-key now (the session does it by itself) replaces it, and the older
    /// epochs' grace periods end about when its own does. VP8 and audio are unaffected.
    VideoBlackout {
        /// Height of the current block.
        height: i32,
        /// Whether H.264 is blacked out already ([`Call::video_blackout`]).
        now: bool,
    },
    /// Emoji verification completed for the block at `height`.
    VerificationDone {
        /// The result (emoji hash; [`VerificationResult::emojis`]).
        result: VerificationResult,
    },
}

/// Whether we hold the key of the current block.
#[derive(Clone, Debug)]
enum KeyState {
    /// We hold it: the newest epoch is current.
    Current,
    /// The block at this height lists us but we cannot read its key.
    Unavailable { height: i32, error: Error },
    /// The block at this height no longer lists us.
    Removed { height: i32 },
}

/// One participant's conference call.
///
/// A `Call` is deliberately not `Clone` (except with the `hazmat` feature, for fuzzing): two copies
/// would send with the same key and sequence numbers, and every packet of the second would be
/// refused as a replay. To see whether a block would be accepted without applying it, use
/// [`Call::check_block`].
///
/// ```
/// use confchain::{build_zero_block, Call, GroupParticipant, GroupState, Permissions, PrivateKey};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
/// let (a, b) = (PrivateKey::generate(&mut rng), PrivateKey::generate(&mut rng));
/// let member = |id, key: &PrivateKey| GroupParticipant { user_id: id, public_key: key.public_key(), flags: Permissions::ALL, version: 0 };
/// let state = GroupState { participants: vec![member(1, &a), member(2, &b)], external_permissions: Permissions::NONE };
/// let block = build_zero_block(state, &a, &mut rng)?.to_server_form();
///
/// let mut alice = Call::new(1, a, &block, &mut rng)?;
/// let mut bob = Call::new(2, b, &block, &mut rng)?;
/// let now = 1_000; // ms, from the caller's monotonic clock
/// let packet = alice.encrypt(1, b"frame", 0, now, &mut rng)?;
/// assert_eq!(bob.decrypt(1, &packet, now)?, b"frame");
/// // A replayed packet is refused.
/// assert_eq!(bob.decrypt(1, &packet, now).unwrap_err().kind(), confchain::ErrorKind::Replay);
/// # Ok::<(), confchain::Error>(())
/// ```
pub struct Call {
    user_id: i64,
    key: PrivateKey,
    chain: Chain,
    epochs: Epochs,
    key_state: KeyState,
    /// Sequence numbers, replay windows and the published epochs, shared with media handles.
    media: Arc<Shared>,
    verification: Verification,
    events: VecDeque<CallEvent>,
    verified_height: Option<i32>,
    /// Whether the published epochs black out H.264 ([`frame::epochs_block_h264`]).
    video_blackout: bool,
    /// The height [`CallEvent::VideoBlackout`] was last reported for.
    blackout_reported: Option<i32>,
}

/// With `hazmat` (fuzzing), a `Call` can be cloned into an independent copy: its replay windows
/// and sequence numbers are copied, not shared.
#[cfg(feature = "hazmat")]
impl Clone for Call {
    fn clone(&self) -> Self {
        let media = Arc::new(self.media.deep_clone());
        let mut verification = self.verification.clone();
        verification.use_key_cache(media.clone());
        Call {
            user_id: self.user_id,
            key: self.key.clone(),
            chain: self.chain.clone(),
            epochs: self.epochs.clone(),
            key_state: self.key_state.clone(),
            media,
            verification,
            events: self.events.clone(),
            verified_height: self.verified_height,
            video_blackout: self.video_blackout,
            blackout_reported: self.blackout_reported,
        }
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("user_id", &self.user_id)
            .field("height", &self.chain.height())
            .field("epochs", &self.active_epochs())
            .field("key", &self.key_state)
            .finish_non_exhaustive()
    }
}

impl<R: CryptoRngCore> frame::FrameEncryptor for (&mut Call, &mut R) {
    fn encrypt_frame_into(
        self,
        channel: i32,
        codec: Codec,
        frame: &[u8],
        level: AudioLevel,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<SentFrame> {
        Call::encrypt_frame_into(self.0, channel, codec, frame, level, now, self.1, out)
    }
}

impl frame::FrameDecryptor for &mut Call {
    fn decrypt_frame_into(
        self,
        sender_user_id: i64,
        codec: Codec,
        packet: &[u8],
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<ReceivedFrame> {
        Call::decrypt_frame_into(self, sender_user_id, codec, packet, now, out)
    }
}

impl Call {
    /// Creates the call from the last block of the chain (server form, as getGroupCallChainBlocks
    /// or joinGroupCall return it), **trusting it**: [`Call::from_tip`] with
    /// [`UnverifiedTip::from_server_block`]. We must be a participant of that block under
    /// `user_id`, and `key` must be new (a key that sent packets before would restart its
    /// sequence numbers, and its packets would be refused as replays). Draws the verification
    /// nonce (32 bytes) from `rng`.
    pub fn new(user_id: i64, key: PrivateKey, last_block_server: &[u8], rng: &mut impl CryptoRngCore) -> Result<Self> {
        Call::from_tip(user_id, key, UnverifiedTip::from_server_block(last_block_server)?, rng)
    }

    /// Creates the call from the server's tip, trusting it: its signature and its history cannot
    /// be checked, so its state is the server's word, as it is for every first join (tdlib's
    /// `Call::create` does the same). From here on the call verifies every block against that
    /// state ([`Call::apply_block`]). What the trust costs: a server that forges the tip can
    /// make us encrypt for a group of its choosing, so the application shows the participants
    /// and the emoji verification ([`Call::emojis`]) compares what every member holds.
    pub fn from_tip(user_id: i64, key: PrivateKey, tip: UnverifiedTip, rng: &mut impl CryptoRngCore) -> Result<Self> {
        Call::from_chain(user_id, key, Chain::trust_tip(tip), rng)
    }

    /// Creates the call from a chain state: one verified block by block ([`Chain::apply`] from
    /// [`Chain::empty`]), or one the caller chose to trust ([`Chain::trust_tip`]). Nothing here
    /// depends on the time: the first epoch lasts until the next block.
    pub fn from_chain(user_id: i64, key: PrivateKey, chain: Chain, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let group_key = chain.group_key(user_id, &key)?;
        let media = Arc::new(Shared::new(user_id));
        let mut verification = Verification::new(user_id);
        verification.use_key_cache(media.clone());
        let mut call = Call {
            user_id,
            key,
            chain,
            epochs: Epochs::default(),
            key_state: KeyState::Current,
            media,
            verification,
            events: VecDeque::new(),
            verified_height: None,
            video_blackout: false,
            blackout_reported: None,
        };
        call.open_epoch(&group_key);
        call.publish();
        call.start_verification(rng);
        Ok(call)
    }

    /// Holds at most `max` emoji-verification broadcasts for heights not applied yet
    /// ([`MAX_HELD_BROADCASTS`](crate::limits::MAX_HELD_BROADCASTS) unless set; the session
    /// derives it from its call size limit).
    pub(crate) fn set_max_held_broadcasts(&mut self, max: usize) {
        self.verification.set_max_held(max);
    }

    /// Publishes the epochs and our key state to the media path (a pointer swap), and reports
    /// when the epoch set starts or stops blacking out H.264.
    fn publish(&mut self) {
        // The epoch set blacks out H.264 now, or the current block will once it is the oldest
        // (found the moment it is applied, so that a re-key can replace it before then).
        self.video_blackout = frame::epochs_block_h264(self.epochs.iter().map(|e| &e.key.hash));
        let height = self.chain.height();
        let ahead = self.epochs.iter().last().is_some_and(|e| frame::hash_blocks_h264(&e.key.hash));
        if (self.video_blackout || ahead) && self.blackout_reported != Some(height) {
            self.blackout_reported = Some(height);
            self.events.push_back(CallEvent::VideoBlackout { height, now: self.video_blackout });
        }
        debug_assert!(self.epochs.iter().len() <= crate::limits::MAX_EPOCHS, "published beyond MAX_EPOCHS");
        let epochs = self
            .epochs
            .iter()
            .map(|e| SnapEpoch {
                height: e.height,
                key: e.key.clone(),
                state: e.state.clone(),
                retire_at: e.retire_at(),
            })
            .collect();
        let can_encrypt = match &self.key_state {
            KeyState::Current => Ok(()),
            KeyState::Removed { height } => Err(Error::new(
                ErrorKind::NotParticipant,
                format!("we are no longer a participant (removed by the block at height {height})"),
            )),
            KeyState::Unavailable { height, error } => Err(Error::new(
                ErrorKind::KeyUnavailable,
                format!("no group key for the block at height {height}: {}", error.message()),
            )),
        };
        self.media.publish(Snapshot { epochs, can_encrypt });
    }

    /// A frame encryptor for media threads (`Send + Sync`), sharing this call's sequence numbers
    /// and seeing every epoch change at once; its RNG is seeded with 32 bytes from `rng`.
    pub fn media_encryptor(&self, rng: &mut impl CryptoRngCore) -> MediaEncryptor {
        MediaEncryptor::new(self.media.clone(), self.key.clone(), rng)
    }

    /// A frame decryptor for media threads (`Send + Sync`, cheap to clone), sharing this call's
    /// replay windows and seeing every epoch change at once.
    pub fn media_decryptor(&self) -> MediaDecryptor {
        MediaDecryptor::new(self.media.clone())
    }

    fn open_epoch(&mut self, key: &GroupKey) {
        let (height, hash) = (self.chain.height(), *self.chain.hash());
        self.epochs.open(height, hash, key, self.chain.group_state_arc());
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
                self.events.push_back(CallEvent::VerificationDone { result: r.clone() });
            }
        }
    }

    /// Drops epochs whose grace period is over (the reference's `forget_at <= now`), and the
    /// oldest retiring ones beyond [`crate::limits::MAX_EPOCHS`].
    pub fn handle_timeout(&mut self, now: u64) {
        if self.expire_epochs(now) {
            self.publish();
        }
    }

    /// [`Call::handle_timeout`] without publishing; whether any epoch went.
    fn expire_epochs(&mut self, now: u64) -> bool {
        let expired = self.epochs.expire(now);
        let any = !expired.is_empty();
        for height in expired {
            self.events.push_back(CallEvent::EpochExpired { height });
        }
        any
    }

    /// When [`Call::handle_timeout`] next has work: the earliest instant an epoch is forgotten.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.epochs.deadline()
    }

    /// Whether the next block (server form) would be accepted by the chain, without applying it:
    /// the explicit way to try a block (a `Call` cannot be cloned).
    pub fn check_block(&self, server_bytes: &[u8]) -> Result<()> {
        let block = Block::decode_server(server_bytes)?;
        self.chain.clone().apply_block(block)
    }

    /// Applies the next block (server form).
    ///
    /// A block that is invalid for the chain is refused with its error and nothing changes. A
    /// valid block is applied even when our key cannot be read from it: the previous epoch starts
    /// its grace period, the block's epoch opens if we hold its key ([`CallEvent::KeyUnavailable`] or
    /// [`CallEvent::Removed`] otherwise), and a verification round begins (drawing a 32-byte nonce
    /// from `rng`).
    pub fn apply_block(&mut self, server_bytes: &[u8], now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.media.check_open()?;
        self.handle_timeout(now);
        let block = Block::decode_server(server_bytes)?;
        let mut next = self.chain.clone();
        next.apply_block(block)?;
        let height = next.height();
        self.advance(next, CallEvent::BlockApplied { height }, now, rng);
        Ok(())
    }

    /// Adopts the server's tip in place, **trusting it** as [`Call::from_tip`] does, keeping our
    /// key, sequence numbers and replay windows, so our packets keep being accepted. Reported as
    /// [`CallEvent::TipAdopted`], never [`CallEvent::BlockApplied`].
    ///
    /// This is an explicit application decision, never a reaction to a refused block: a member
    /// holds a verified chain, and a block our rules refuse means the server's chain is not one
    /// our verified state allows, so trusting the server's tip then would adopt what the rules
    /// refused (an outsider's self-add, say). It is for the case where the application has
    /// decided to trust the server again as a join does (blocks missed beyond what the server
    /// still returns, a stale call restored) and wants to keep this key; creating a new `Call`
    /// with the same key would restart sequence numbers at 1, and every packet would be refused
    /// as too old.
    ///
    /// The tip must be higher than our block (the same block again is accepted and changes
    /// nothing; anything else lower or equal is [`ErrorKind::InvalidInput`]). A tip that directly
    /// follows our block (height + 1, built on our hash) is not trusted but checked: it is
    /// applied by the chain rules exactly as [`Call::apply_block`] would (reported as
    /// [`CallEvent::BlockApplied`]), or refused with the rules' error and nothing changes.
    /// Everything else is as after [`Call::apply_block`]: the current epoch retires, the tip's
    /// epoch opens if we can read its key, a verification round begins.
    pub fn resync(&mut self, tip: UnverifiedTip, now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.media.check_open()?;
        self.handle_timeout(now);
        if tip.height() == self.chain.height() && tip.hash() == self.chain.hash() {
            return Ok(());
        }
        if tip.height() <= self.chain.height() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("resync needs a block above height {}, got height {}", self.chain.height(), tip.height()),
            ));
        }
        let (trusted, block) = tip.into_parts();
        if self.chain.height().checked_add(1) == Some(block.height) && block.prev_block_hash == *self.chain.hash() {
            let mut next = self.chain.clone();
            next.apply_block(block)?;
            self.advance(next, CallEvent::BlockApplied { height: trusted.height() }, now, rng);
            return Ok(());
        }
        let height = trusted.height();
        self.advance(trusted, CallEvent::TipAdopted { height }, now, rng);
        Ok(())
    }

    /// Moves to `next` (a chain state that passed the rules, or a tip trusted explicitly, as
    /// `how` says: [`CallEvent::BlockApplied`] or [`CallEvent::TipAdopted`]): from here on nothing fails.
    fn advance(&mut self, next: Chain, how: CallEvent, now: u64, rng: &mut impl CryptoRngCore) {
        // As the reference does, the old key starts retiring BEFORE we try to read the new one:
        // a block we cannot read must never leave us encrypting under a key it replaced.
        self.epochs.retire_current(now);
        self.chain = next;
        let height = self.chain.height();
        self.events.push_back(how);
        self.key_state = match self.chain.group_key(self.user_id, &self.key) {
            Ok(key) => {
                self.open_epoch(&key);
                KeyState::Current
            }
            Err(e) if e.kind() == ErrorKind::NotParticipant => {
                self.events.push_back(CallEvent::Removed { height });
                KeyState::Removed { height }
            }
            Err(error) => {
                self.events.push_back(CallEvent::KeyUnavailable { height, error: error.clone() });
                KeyState::Unavailable { height, error }
            }
        };
        // Expire before publishing: media threads must never see the moment when the new epoch
        // is open and the one it pushes beyond MAX_EPOCHS is not yet gone (their frames would
        // fail with "Too many active epochs").
        self.expire_epochs(now);
        self.publish();
        self.start_verification(rng);
    }

    /// Takes an emoji-verification broadcast (server form, sub-chain 1).
    pub fn receive_broadcast(&mut self, server_bytes: &[u8]) -> Result<()> {
        self.media.check_open()?;
        self.verification.receive(server_bytes, &self.key)?;
        self.note_verification();
        Ok(())
    }

    /// Broadcasts to send with sendConferenceCallBroadcast (plain form).
    pub fn poll_outbound(&mut self) -> Vec<Vec<u8>> {
        if self.media.is_closed() {
            return Vec::new();
        }
        self.verification.pull_outbound()
    }

    /// Puts broadcasts taken with [`Call::poll_outbound`] but not sent back in front of the queue
    /// (for callers that send one at a time).
    pub fn requeue_outbound(&mut self, pending: Vec<Vec<u8>>) {
        self.verification.requeue_outbound(pending);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// Encrypts a packet for every active epoch. `data[..clear_prefix_len]` stays in clear (e.g.
    /// a media header the SFU reads). Draws the one-time secret (32 bytes) and the prefix bytes
    /// from `rng`. Fails with [`ErrorKind::NotParticipant`] once we were removed and with
    /// [`ErrorKind::KeyUnavailable`] while we hold no key for the current block.
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
        self.encrypt_plaintext(channel, &(data, clear_prefix_len), now, rng, out)
    }

    /// Encrypts one encoded frame of `codec` as Telegram's apps do ([`crate::frame`]): laid out
    /// for the codec (the audio trailer with `level`, VP8's and H.264's clear prefixes, start
    /// codes widened), an H.264 packet re-encrypted while it holds a start code (at most
    /// [`frame::MAX_ATTEMPTS`] times, each with its own sequence number and secret).
    ///
    /// ```
    /// # use confchain::{build_zero_block, Call, GroupParticipant, GroupState, Permissions, PrivateKey};
    /// use confchain::frame::{AudioLevel, Codec, CHANNEL_MAIN};
    /// # use rand_core::SeedableRng;
    /// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    /// # let (a, b) = (PrivateKey::generate(&mut rng), PrivateKey::generate(&mut rng));
    /// # let member = |id, key: &PrivateKey| GroupParticipant { user_id: id, public_key: key.public_key(), flags: Permissions::ALL, version: 0 };
    /// # let state = GroupState { participants: vec![member(1, &a), member(2, &b)], external_permissions: Permissions::NONE };
    /// # let zero = build_zero_block(state, &a, &mut rng)?.to_server_form();
    /// # let mut alice = Call::new(1, a, &zero, &mut rng)?;
    /// # let mut bob = Call::new(2, b, &zero, &mut rng)?;
    /// let level = AudioLevel { level: 12, speech: true };
    /// let packet = alice.encrypt_frame(CHANNEL_MAIN, Codec::Opus, b"opus frame", level, 1_000, &mut rng)?;
    /// let (frame, received) = bob.decrypt_frame(1, Codec::Opus, &packet, 1_000)?;
    /// assert_eq!((frame.as_slice(), received.level), (&b"opus frame"[..], Some(level)));
    /// # Ok::<(), confchain::Error>(())
    /// ```
    pub fn encrypt_frame(
        &mut self,
        channel: i32,
        codec: Codec,
        frame: &[u8],
        level: AudioLevel,
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encrypt_frame_into(channel, codec, frame, level, now, rng, &mut out)?;
        Ok(out)
    }

    /// [`Call::encrypt_frame`] appending to a caller-provided buffer (no other allocation); on
    /// any error `out` is left as it was and the frame must be dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn encrypt_frame_into(
        &mut self,
        channel: i32,
        codec: Codec,
        frame: &[u8],
        level: AudioLevel,
        now: u64,
        rng: &mut impl CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<SentFrame> {
        frame::encrypt_with(codec, frame, level, out, |plain, out| {
            self.encrypt_plaintext(channel, plain, now, rng, out)
        })
    }

    fn encrypt_plaintext(
        &mut self,
        channel: i32,
        plaintext: &impl Plaintext,
        now: u64,
        rng: &mut impl CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.media.check_open()?;
        self.handle_timeout(now);
        let snapshot = self.media.snapshot();
        self.media.encrypt_into(&snapshot, &self.key, channel, plaintext, now, rng, out)
    }

    /// Decrypts a packet from `sender_user_id`. The channel is the one inside the packet
    /// (authenticated); the reference ignores the channel a transport reports, and so does this.
    pub fn decrypt(&mut self, sender_user_id: i64, packet: &[u8], now: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.decrypt_into(sender_user_id, packet, now, &mut out)?;
        Ok(out)
    }

    /// [`Call::decrypt`] appending `clear_prefix || payload` to a caller-provided buffer (left
    /// as it was on error).
    pub fn decrypt_into(&mut self, sender_user_id: i64, packet: &[u8], now: u64, out: &mut Vec<u8>) -> Result<()> {
        self.media.check_open()?;
        self.handle_timeout(now);
        let snapshot = self.media.snapshot();
        self.media.decrypt_into(snapshot.live(now), sender_user_id, packet, out)
    }

    /// Decrypts one frame of `codec` from `sender_user_id` as Telegram's apps do
    /// ([`crate::frame`]): an Opus frame's trailer is stripped and its level returned; an empty
    /// plaintext is refused ([`ErrorKind::FrameEmpty`]).
    pub fn decrypt_frame(
        &mut self,
        sender_user_id: i64,
        codec: Codec,
        packet: &[u8],
        now: u64,
    ) -> Result<(Vec<u8>, ReceivedFrame)> {
        let mut out = Vec::new();
        let received = self.decrypt_frame_into(sender_user_id, codec, packet, now, &mut out)?;
        Ok((out, received))
    }

    /// [`Call::decrypt_frame`] appending the frame to a caller-provided buffer (left as it was
    /// on error).
    pub fn decrypt_frame_into(
        &mut self,
        sender_user_id: i64,
        codec: Codec,
        packet: &[u8],
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<ReceivedFrame> {
        frame::decrypt_with(codec, out, |out| self.decrypt_into(sender_user_id, packet, now, out))
    }

    /// Encrypts a `sendGroupCallEncryptedMessage` payload: the JSON text on channel 0, no clear prefix.
    pub fn encrypt_message(&mut self, json: &str, now: u64, rng: &mut impl CryptoRngCore) -> Result<Vec<u8>> {
        self.encrypt(0, json.as_bytes(), 0, now, rng)
    }

    /// Decrypts an encrypted message from `sender_user_id` into its JSON text.
    pub fn decrypt_message(&mut self, sender_user_id: i64, message: &[u8], now: u64) -> Result<String> {
        let bytes = self.decrypt(sender_user_id, message, now)?;
        String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidInput, "message is not UTF-8"))
    }

    /// Builds a block that sets `new_state` with a fresh key (add/remove members, permissions,
    /// re-key with the same state), for deleteConferenceCallParticipants and friends.
    pub fn build_change_state(&self, new_state: GroupState, rng: &mut impl CryptoRngCore) -> Result<PlainBlock> {
        self.media.check_open()?;
        self.chain.build_change_state(new_state, &self.key, rng)
    }

    /// A block removing the given users (deleteConferenceCallParticipants). Every one of them must
    /// be a participant ([`ErrorKind::ParticipantNotFound`] otherwise).
    pub fn build_remove(&self, user_ids: &[i64], rng: &mut impl CryptoRngCore) -> Result<PlainBlock> {
        self.media.check_open()?;
        let mut state = self.chain.group_state().clone();
        if let Some(absent) = user_ids.iter().find(|u| state.participant(**u).is_none()) {
            return Err(Error::new(ErrorKind::ParticipantNotFound, format!("user {absent} is not a participant")));
        }
        state.participants.retain(|p| !user_ids.contains(&p.user_id));
        self.build_change_state(state, rng)
    }

    /// A block re-keying the current group.
    pub fn build_rekey(&self, rng: &mut impl CryptoRngCore) -> Result<PlainBlock> {
        self.build_change_state(self.chain.group_state().clone(), rng)
    }

    /// Closes the call for good (the session does it when we leave, are removed, the call ends or
    /// the server's chain holds a block our rules refuse; dropping a `Call` does it too). From then
    /// on every encrypt, decrypt, message, block, broadcast and build refuses with
    /// [`ErrorKind::CallClosed`], and so does every [`MediaEncryptor`] and [`MediaDecryptor`] taken
    /// from it, on any thread; the epoch keys are dropped and no broadcast goes out. Idempotent.
    pub fn close(&mut self) {
        self.media.close();
        self.epochs = Epochs::default();
        let _ = self.verification.pull_outbound();
    }

    /// Whether [`Call::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.media.is_closed()
    }

    /// A block giving `user_id` the permissions `permissions`.
    pub fn build_set_permissions(
        &self,
        user_id: i64,
        permissions: Permissions,
        rng: &mut impl CryptoRngCore,
    ) -> Result<PlainBlock> {
        self.media.check_open()?;
        let mut state = self.chain.group_state().clone();
        let p = state
            .participants
            .iter_mut()
            .find(|p| p.user_id == user_id)
            .ok_or_else(|| Error::new(ErrorKind::ParticipantNotFound, "Participant not found"))?;
        p.flags = permissions;
        self.build_change_state(state, rng)
    }

    /// Whether the active epochs black out H.264 video ([`CallEvent::VideoBlackout`]).
    pub fn video_blackout(&self) -> bool {
        self.video_blackout
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
        !matches!(self.key_state, KeyState::Removed { .. })
    }

    /// Whether we hold the key of the last block (and so can encrypt).
    pub fn has_current_key(&self) -> bool {
        matches!(self.key_state, KeyState::Current)
    }

    /// Heights of the active epochs, ascending.
    pub fn active_epochs(&self) -> Vec<i32> {
        self.epochs.iter().map(|e| e.height).collect()
    }

    /// Fingerprint (short hash, safe to show) of the current epoch's key.
    pub fn key_fingerprint(&self) -> Option<String> {
        self.epochs.current().map(|e| e.fingerprint.clone())
    }

    /// The current verification phase.
    pub fn verification_phase(&self) -> VerificationPhase {
        self.verification.phase()
    }

    /// Participants whose broadcast the current verification phase still waits for (commits, then
    /// reveals), by user id; empty once done: how an application tells a stalled round from a slow
    /// one.
    pub fn verification_missing(&self) -> Vec<i64> {
        self.verification.missing()
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

/// A dropped call closes its media handles: a [`MediaEncryptor`] kept by a media thread never
/// encrypts with the last key of a call the application let go.
impl Drop for Call {
    fn drop(&mut self) {
        self.media.close();
    }
}
