//! Media handles: a frame encryptor and decryptor that media threads hold, `Send + Sync`, with
//! `&self` methods, while the signalling thread applies blocks to the [`Call`](crate::Call).
//!
//! ```text
//!  signalling thread: Call::apply_block ──▶ new epoch set ──(pointer swap)──▶ Snapshot (Arc)
//!                                                                            ▲        ▲
//!  media threads:  MediaEncryptor::encrypt_into ─ reads the snapshot ────────┘        │
//!                  MediaDecryptor::decrypt_into ─ reads the snapshot, then the replay ┘
//!                                                  shard of the sender (16 shards)
//! ```
//!
//! No lock is held while the call applies a block: the call builds the new snapshot first and
//! only swaps a pointer under a write lock that readers hold for the time of an `Arc` clone.
//! Sequence numbers are atomics shared with the call; replay windows and decompressed sender keys
//! live in 16 shards chosen by the sender's key, so different senders rarely contend. Epoch expiry
//! is evaluated against the caller's `now` (the snapshot carries each epoch's deadline), so a
//! handle never uses an epoch past its grace period even if the signalling thread has not run
//! `handle_timeout` yet. Behaviour is exactly the call's packet path: the same codec, the same
//! replay windows, the same checks in the same order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chacha20::rand_core::{SeedableRng as _, TryRng as _};
use chacha20::ChaCha20Rng;
use rand_core::CryptoRngCore;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::crypto::{PreparedKey, PrivateKey, PublicKey};
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{self, AudioLevel, Codec, ReceivedFrame, SentFrame};
use crate::limits::{MAX_CACHED_KEYS, MAX_CHANNEL, MAX_PREPARED_KEYS};
use crate::packet::{self, EpochKey, Plaintext};
use crate::replay::ReplayWindow;
use crate::sources::{Source, SourceMap};
use crate::wire::GroupState;

/// Number of replay shards.
const SHARDS: usize = 16;

/// One epoch as the media path sees it.
#[derive(Clone)]
pub(crate) struct SnapEpoch {
    pub(crate) height: i32,
    pub(crate) key: EpochKey,
    pub(crate) state: Arc<GroupState>,
    pub(crate) retire_at: Option<u64>,
}

/// The epochs of a call at one moment, and whether we may encrypt.
pub(crate) struct Snapshot {
    /// Oldest first; the retiring ones have a deadline, never later than a newer one's.
    pub(crate) epochs: Vec<SnapEpoch>,
    /// `Ok` while we hold the current key; else the error encrypting gives.
    pub(crate) can_encrypt: Result<()>,
}

impl Snapshot {
    /// The epochs still usable at `now` (deadline after `now`), oldest first.
    pub(crate) fn live(&self, now: u64) -> &[SnapEpoch] {
        let start = self.epochs.iter().position(|e| e.retire_at.is_none_or(|t| t > now)).unwrap_or(self.epochs.len());
        self.epochs.get(start..).unwrap_or_default()
    }
}

/// Replay windows and prepared keys of the senders of one shard.
#[derive(Default, Clone)]
struct Shard {
    windows: HashMap<(PublicKey, i32), ReplayWindow>,
    /// Senders' keys, decompressed and (the first [`MAX_PREPARED_KEYS`] / [`SHARDS`]) with their
    /// verification tables; shared with the verifications running on them.
    keys: HashMap<PublicKey, Arc<PreparedKey>>,
    /// How many of `keys` have tables.
    tables: usize,
}

/// What a call shares with its media handles.
pub(crate) struct Shared {
    user_id: i64,
    snapshot: RwLock<Arc<Snapshot>>,
    seqnos: Box<[AtomicU32]>,
    shards: [Mutex<Shard>; SHARDS],
    /// Set once by [`Shared::close`]; never cleared.
    closed: AtomicBool,
}

fn shard_of(key: &PublicKey) -> usize {
    usize::from(key.as_bytes().first().copied().unwrap_or(0)) % SHARDS
}

fn closed() -> Error {
    Error::new(ErrorKind::CallClosed, "the call is closed (left, removed, ended or its chain rejected)")
}

fn poisoned() -> Error {
    Error::new(ErrorKind::InvalidInput, "a media thread panicked while holding the call's state")
}

impl Shared {
    pub(crate) fn new(user_id: i64) -> Self {
        Shared {
            user_id,
            snapshot: RwLock::new(Arc::new(Snapshot { epochs: Vec::new(), can_encrypt: Ok(()) })),
            seqnos: (0..=MAX_CHANNEL).map(|_| AtomicU32::new(0)).collect(),
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            closed: AtomicBool::new(false),
        }
    }

    /// Closes the call for good: every later encrypt and decrypt, by the call or by any media
    /// handle, fails with [`ErrorKind::CallClosed`]; the published epochs (and their keys) go.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let snapshot = Arc::new(Snapshot { epochs: Vec::new(), can_encrypt: Err(closed()) });
        match self.snapshot.write() {
            Ok(mut slot) => *slot = snapshot,
            Err(poison) => *poison.into_inner() = snapshot,
        }
    }

    /// Whether [`Shared::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// `Err(CallClosed)` once closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(closed());
        }
        Ok(())
    }

    /// Publishes a new snapshot (a pointer swap), then drops the keys of senders no epoch has any
    /// more and prepares those of the newest epoch's participants (a key's tables are built once,
    /// when it enters the call: its first packet and the verification rounds find them ready);
    /// nothing once closed.
    pub(crate) fn publish(&self, snapshot: Snapshot) {
        if self.is_closed() {
            return;
        }
        self.prune_keys(&snapshot.epochs);
        if let Some(newest) = snapshot.epochs.last() {
            for p in newest.state.participants.iter().filter(|p| p.user_id != self.user_id) {
                // A key that is not a point is refused by every verification anyway.
                let _ = self.prepared_key(&p.public_key);
            }
        }
        let snapshot = Arc::new(snapshot);
        match self.snapshot.write() {
            Ok(mut slot) => *slot = snapshot,
            Err(poison) => *poison.into_inner() = snapshot,
        }
    }

    /// An independent copy (for `Call`'s hazmat `Clone`).
    #[cfg(feature = "hazmat")]
    pub(crate) fn deep_clone(&self) -> Shared {
        let shards = std::array::from_fn(|i| {
            let copy = self.shards.get(i).and_then(|s| s.lock().ok()).map(|s| s.clone()).unwrap_or_default();
            Mutex::new(copy)
        });
        Shared {
            user_id: self.user_id,
            snapshot: RwLock::new(self.snapshot()),
            seqnos: self.seqnos.iter().map(|s| AtomicU32::new(s.load(Ordering::Relaxed))).collect(),
            shards,
            closed: AtomicBool::new(self.is_closed()),
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poison) => poison.into_inner().clone(),
        }
    }

    /// The next sequence number of `channel`.
    pub(crate) fn next_seqno(&self, channel: i32) -> Result<u32> {
        packet::validate_channel(channel)?;
        let slot = usize::try_from(channel)
            .ok()
            .and_then(|c| self.seqnos.get(c))
            .ok_or_else(|| Error::bare(ErrorKind::InvalidCallChannelId))?;
        let previous = slot
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_add(1))
            .map_err(|_| Error::new(ErrorKind::LimitExceeded, "Seqno overflow"))?;
        Ok(previous.saturating_add(1))
    }

    /// The send path: one packet of `plaintext` on `channel` for the epochs live at `now`, signed
    /// with `key`, appended to `out`. Checks come before the sequence number is taken, in the
    /// reference's order (prefix size, our key, channel).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encrypt_into(
        &self,
        snapshot: &Snapshot,
        key: &PrivateKey,
        channel: i32,
        plaintext: &impl Plaintext,
        now: u64,
        rng: &mut impl CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        packet::check_clear_prefix(plaintext.total_len(), plaintext.clear_prefix_len())?;
        snapshot.can_encrypt.clone()?;
        let seqno = self.next_seqno(channel)?;
        let epochs = snapshot.live(now).iter().map(|e| &e.key);
        packet::encrypt_plaintext_into(epochs, key, channel, seqno, plaintext, rng, out)
    }

    /// The prepared key of a sender (cached in its shard; its tables are built outside the lock).
    pub(crate) fn prepared_key(&self, key: &PublicKey) -> Result<Arc<PreparedKey>> {
        let shard_lock = self.shards.get(shard_of(key)).ok_or_else(poisoned)?;
        let with_tables = {
            let shard = shard_lock.lock().map_err(|_| poisoned())?;
            if let Some(k) = shard.keys.get(key) {
                return Ok(k.clone());
            }
            shard.tables < MAX_PREPARED_KEYS / SHARDS
        };
        let wrong = |_| Error::new(ErrorKind::WrongSignature, "Wrong signature");
        let prepared = Arc::new(
            if with_tables { PreparedKey::new(key) } else { PreparedKey::without_tables(key) }.map_err(wrong)?,
        );
        let mut shard = shard_lock.lock().map_err(|_| poisoned())?;
        if let Some(k) = shard.keys.get(key) {
            return Ok(k.clone()); // another thread prepared it meanwhile
        }
        if shard.keys.len() >= MAX_CACHED_KEYS / SHARDS {
            shard.keys.clear();
            shard.tables = 0;
        }
        if prepared.has_tables() {
            if shard.tables >= MAX_PREPARED_KEYS / SHARDS {
                // Filled meanwhile: keep the bound (the verdicts are the same without tables).
                return Ok(prepared);
            }
            shard.tables = shard.tables.saturating_add(1);
        }
        shard.keys.insert(*key, prepared.clone());
        Ok(prepared)
    }

    /// The prepared key of a sender if the packet path already cached it (nothing is built).
    pub(crate) fn cached_prepared_key(&self, key: &PublicKey) -> Option<Arc<PreparedKey>> {
        self.shards.get(shard_of(key))?.lock().ok()?.keys.get(key).cloned()
    }

    /// Drops the cached keys (and tables) of senders that are in none of `epochs`' group states:
    /// a member's tables go when the last epoch it belongs to does.
    fn prune_keys(&self, epochs: &[SnapEpoch]) {
        let mut members: Option<std::collections::HashSet<&PublicKey>> = None;
        for shard in &self.shards {
            let Ok(mut shard) = shard.lock() else { continue };
            if shard.keys.is_empty() {
                continue;
            }
            let members = members.get_or_insert_with(|| {
                epochs.iter().flat_map(|e| e.state.participants.iter().map(|p| &p.public_key)).collect()
            });
            shard.keys.retain(|key, _| members.contains(key));
            shard.tables = shard.keys.values().filter(|k| k.has_tables()).count();
        }
    }

    /// Accepts `seqno` from (`sender`, `channel`) once.
    fn accept(&self, sender: PublicKey, channel: i32, seqno: u32) -> Result<()> {
        let mut shard = self.shards.get(shard_of(&sender)).ok_or_else(poisoned)?.lock().map_err(|_| poisoned())?;
        let window = shard.windows.entry((sender, channel)).or_default();
        window.check(seqno)?;
        window.mark(seqno);
        Ok(())
    }

    /// The receive path over `epochs` (the caller's live epochs), with the shared replay state.
    pub(crate) fn decrypt_into(
        &self,
        epochs: &[SnapEpoch],
        sender_user_id: i64,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let start = out.len();
        let lookup = |hash: &[u8; 32]| epochs.iter().find(|e| &e.key.hash == hash).map(|e| (&e.key, &*e.state));
        let opened = packet::decrypt_into(packet, self.user_id, sender_user_id, lookup, |k| self.prepared_key(k), out)?;
        if let Err(e) = self.accept(opened.sender, opened.channel, opened.seqno) {
            packet::discard_from(out, start);
            return Err(e);
        }
        Ok(())
    }
}

/// The media encryptor's own CSPRNG: ChaCha20 keyed with 32 bytes from the caller's RNG.
///
/// Its key regenerates every one-time secret it ever drew, and through them the packets they
/// protect. So: the state and the output buffer wipe themselves on drop (`chacha20`'s
/// `ChaCha20Rng` with its `zeroize` feature; `rand_chacha`'s does not), and after every packet the
/// key is replaced by 32 bytes of its own output ([`MediaRng::ratchet`], "fast key erasure"), so
/// not even the live state can regenerate a secret already used. The encryptor keeps it boxed:
/// moving the encryptor moves a pointer, not a copy of the state.
pub(crate) struct MediaRng(ChaCha20Rng);

impl MediaRng {
    pub(crate) fn from_seed(seed: &Zeroizing<[u8; 32]>) -> Self {
        MediaRng(ChaCha20Rng::from_seed(**seed))
    }

    /// Re-keys from its own output; the previous state is wiped as it is dropped.
    pub(crate) fn ratchet(&mut self) {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(self, &mut *seed);
        *self = MediaRng::from_seed(&seed);
    }
}

impl rand_core::RngCore for MediaRng {
    fn next_u32(&mut self) -> u32 {
        let Ok(v) = self.0.try_next_u32();
        v
    }

    fn next_u64(&mut self) -> u64 {
        let Ok(v) = self.0.try_next_u64();
        v
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let Ok(()) = self.0.try_fill_bytes(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for MediaRng {}

// The ChaCha20 state and its output buffer wipe themselves on drop (checked at compile time).
impl ZeroizeOnDrop for MediaRng {}
const _: fn() = || {
    fn wiped_on_drop<T: ZeroizeOnDrop>() {}
    wiped_on_drop::<ChaCha20Rng>();
};

/// Encrypts our own frames from any thread (`Send + Sync`, `&self`), with its own RNG.
///
/// ```
/// use confchain::{build_zero_block, Call, GroupParticipant, GroupState, Permissions, PrivateKey};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
/// let (a, b) = (PrivateKey::generate(&mut rng), PrivateKey::generate(&mut rng));
/// let member = |id, key: &PrivateKey| GroupParticipant { user_id: id, public_key: key.public_key(), flags: Permissions::ALL, version: 0 };
/// let state = GroupState { participants: vec![member(1, &a), member(2, &b)], external_permissions: Permissions::NONE };
/// let zero = build_zero_block(state, &a, &mut rng)?.to_server_form();
/// let alice = Call::new(1, a, &zero, &mut rng)?;
/// let bob = Call::new(2, b, &zero, &mut rng)?;
///
/// let encryptor = alice.media_encryptor(&mut rng); // seeded from our CSPRNG
/// let decryptor = bob.media_decryptor();
/// let (mut packet, mut frame) = (Vec::with_capacity(256), Vec::with_capacity(64));
/// std::thread::scope(|s| {
///     s.spawn(|| encryptor.encrypt_into(0, b"HDRopus", 3, 1_000, &mut packet)).join().unwrap()
/// })?;
/// decryptor.decrypt_into(1, &packet, 1_000, &mut frame)?;
/// assert_eq!(frame, b"HDRopus");
/// # Ok::<(), confchain::Error>(())
/// ```
pub struct MediaEncryptor {
    shared: Arc<Shared>,
    key: PrivateKey,
    rng: Mutex<Box<MediaRng>>,
}

// Its secrets (the private key and the RNG) wipe themselves on drop.
impl ZeroizeOnDrop for MediaEncryptor {}

impl std::fmt::Debug for MediaEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaEncryptor").field("user_id", &self.shared.user_id).finish_non_exhaustive()
    }
}

impl frame::FrameEncryptor for &MediaEncryptor {
    fn encrypt_frame_into(
        self,
        channel: i32,
        codec: Codec,
        frame: &[u8],
        level: AudioLevel,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<SentFrame> {
        MediaEncryptor::encrypt_frame_into(self, channel, codec, frame, level, now, out)
    }
}

impl frame::FrameDecryptor for &MediaDecryptor {
    fn decrypt_frame_into(
        self,
        sender_user_id: i64,
        codec: Codec,
        packet: &[u8],
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<ReceivedFrame> {
        MediaDecryptor::decrypt_frame_into(self, sender_user_id, codec, packet, now, out)
    }
}

impl MediaEncryptor {
    pub(crate) fn new(shared: Arc<Shared>, key: PrivateKey, rng: &mut impl CryptoRngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *seed);
        MediaEncryptor { shared, key, rng: Mutex::new(Box::new(MediaRng::from_seed(&seed))) }
    }

    /// Encrypts `frame` (its first `clear_prefix_len` bytes stay in clear) on `channel` for every
    /// epoch live at `now`, appending the packet to `out` (no other allocation). Fails as
    /// [`crate::Call::encrypt`] does, at once when our key ended or we were removed.
    pub fn encrypt_into(
        &self,
        channel: i32,
        frame: &[u8],
        clear_prefix_len: usize,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.encrypt_plaintext(channel, &(frame, clear_prefix_len), now, out)
    }

    /// Encrypts one encoded frame of `codec` as Telegram's apps do ([`crate::frame`]): laid out
    /// for the codec (the audio trailer with `level`, VP8's and H.264's clear prefixes, start
    /// codes widened), an H.264 packet re-encrypted while it holds a start code (at most
    /// [`frame::MAX_ATTEMPTS`] times, each with its own sequence number). Appends the packet to
    /// `out` (nothing else is allocated); on any error `out` is left as it was and the frame must
    /// be dropped.
    pub fn encrypt_frame_into(
        &self,
        channel: i32,
        codec: Codec,
        frame: &[u8],
        level: AudioLevel,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<SentFrame> {
        frame::encrypt_with(codec, frame, level, out, |plain, out| self.encrypt_plaintext(channel, plain, now, out))
    }

    /// [`MediaEncryptor::encrypt_frame_into`] into a new buffer.
    pub fn encrypt_frame(
        &self,
        channel: i32,
        codec: Codec,
        frame: &[u8],
        level: AudioLevel,
        now: u64,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encrypt_frame_into(channel, codec, frame, level, now, &mut out)?;
        Ok(out)
    }

    fn encrypt_plaintext(&self, channel: i32, plaintext: &impl Plaintext, now: u64, out: &mut Vec<u8>) -> Result<()> {
        self.shared.check_open()?;
        let snapshot = self.shared.snapshot();
        let mut rng = self.rng.lock().map_err(|_| poisoned())?;
        let result = self.shared.encrypt_into(&snapshot, &self.key, channel, plaintext, now, &mut **rng, out);
        // What this packet drew can no longer be regenerated from the RNG's state.
        rng.ratchet();
        result
    }
}

/// Decrypts other members' frames from any thread (`Send + Sync`, `&self`).
#[derive(Clone)]
pub struct MediaDecryptor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MediaDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaDecryptor").field("user_id", &self.shared.user_id).finish_non_exhaustive()
    }
}

impl MediaDecryptor {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        MediaDecryptor { shared }
    }

    /// Decrypts a packet from `sender_user_id` with the epochs live at `now`, appending
    /// `clear_prefix || payload` to `out` (left as it was on error). The replay windows are the
    /// call's: a packet accepted here is refused as a replay by the call, and the other way round.
    pub fn decrypt_into(&self, sender_user_id: i64, packet: &[u8], now: u64, out: &mut Vec<u8>) -> Result<()> {
        self.shared.check_open()?;
        let snapshot = self.shared.snapshot();
        self.shared.decrypt_into(snapshot.live(now), sender_user_id, packet, out)
    }

    /// Decrypts one frame of `codec` from `sender_user_id` as Telegram's apps do
    /// ([`crate::frame`]): an Opus frame's trailer is stripped and its level returned; an empty
    /// plaintext is refused ([`ErrorKind::FrameEmpty`]). Appends the frame to `out` (left as it
    /// was on error).
    pub fn decrypt_frame_into(
        &self,
        sender_user_id: i64,
        codec: Codec,
        packet: &[u8],
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<ReceivedFrame> {
        frame::decrypt_with(codec, out, |out| self.decrypt_into(sender_user_id, packet, now, out))
    }

    /// Decrypts one frame that came on RTP SSRC `ssrc`, as [`MediaDecryptor::decrypt_frame_into`]
    /// does for the member `sources` maps it to (the SSRC table of the call,
    /// [`crate::sources::SourceTable::map`]); returns that sender with the frame. An SSRC the map
    /// does not know (not yet, or no longer) fails with [`ErrorKind::FrameUnknownSource`] at
    /// once, without trying any key, and is reported to the map for a lookup
    /// ([`SourceMap::report_unknown`]): hold the frame briefly or drop it. A frame the mapped
    /// sender's key does not open (`WRONG_SIGNATURE`, or a sender no longer in the call) is
    /// reported as a possibly stale mapping ([`SourceMap::report_stale`]).
    pub fn decrypt_frame_from_source_into(
        &self,
        sources: &SourceMap,
        ssrc: u32,
        codec: Codec,
        packet: &[u8],
        now: u64,
        out: &mut Vec<u8>,
    ) -> Result<(Source, ReceivedFrame)> {
        sources.decrypt_from(ssrc, |sender| self.decrypt_frame_into(sender, codec, packet, now, out))
    }

    /// [`MediaDecryptor::decrypt_frame_into`] into a new buffer.
    pub fn decrypt_frame(
        &self,
        sender_user_id: i64,
        codec: Codec,
        packet: &[u8],
        now: u64,
    ) -> Result<(Vec<u8>, ReceivedFrame)> {
        let mut out = Vec::new();
        let received = self.decrypt_frame_into(sender_user_id, codec, packet, now, &mut out)?;
        Ok((out, received))
    }

    /// Heights of the epochs live at `now`.
    pub fn live_epochs(&self, now: u64) -> Vec<i32> {
        self.shared.snapshot().live(now).iter().map(|e| e.height).collect()
    }

    /// Whether the call was closed (then every decrypt fails with [`ErrorKind::CallClosed`]).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;

    /// Fast key erasure: after a ratchet the key is 32 bytes of the old stream that were never
    /// handed out, and the old stream (whose key regenerates what was drawn) is gone.
    #[test]
    fn the_media_rng_ratchets_its_key_from_its_own_output() {
        let seed = Zeroizing::new([7u8; 32]);
        let (mut a, mut b) = (MediaRng::from_seed(&seed), MediaRng::from_seed(&seed));
        let (mut x, mut y) = ([0u8; 64], [0u8; 64]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y);
        assert_eq!(x, y, "deterministic from its seed");
        a.ratchet();
        let mut next_key = Zeroizing::new([0u8; 32]);
        b.fill_bytes(&mut *next_key);
        let (mut after, mut expected) = ([0u8; 32], [0u8; 32]);
        a.fill_bytes(&mut after);
        MediaRng::from_seed(&next_key).fill_bytes(&mut expected);
        assert_eq!(after, expected);
        b.fill_bytes(&mut expected);
        assert_ne!(after, expected, "the old stream does not go on");
    }
}
