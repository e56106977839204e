//! Python module of confchain (`import confchain`), built with pyo3 and maturin.
//!
//! Errors raise `confchain.ConfchainError` with `code` (the reference's number, e.g. 204, and 100
//! for every error the reference reports without a code), `name` (`INVALID_BLOCK__HEIGHT_MISMATCH`,
//! or confchain's kind name such as `REPLAY` for codeless errors) and `message`.
//!
//! Everything that computes (signatures, key derivation, packet crypto, block building) releases
//! the GIL, so other Python threads run meanwhile.

use engine::p2p::{Callee, Caller, DhConfig, DhKey, PrimeCache};
use engine::{build_zero_block, GroupParticipant, GroupState, Permissions};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

mod frame;
mod sources;

create_exception!(confchain, ConfchainError, PyException, "An error of confchain: `code`, `name`, `message`.");

fn err(e: engine::Error) -> PyErr {
    Python::with_gil(|py| {
        let exc = ConfchainError::new_err(e.to_string());
        let value = exc.value(py);
        let _ = value.setattr("code", e.numeric_code());
        let _ = value.setattr("name", e.kind().name());
        let _ = value.setattr("message", e.message());
        exc
    })
}

fn bytes<'py>(py: Python<'py>, v: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, v)
}

/// A deterministic CSPRNG (ChaCha20) seeded with 32 bytes (`Rng.from_os()` uses `os.urandom`).
/// Its state (the key, which regenerates every secret it produced, and the buffered output) is
/// wiped when the object is freed.
#[pyclass(module = "confchain")]
struct Rng(ChaCha20Rng);

#[pymethods]
impl Rng {
    #[new]
    fn new(seed: &[u8]) -> PyResult<Self> {
        let mut seed: [u8; 32] =
            seed.try_into().map_err(|_| pyo3::exceptions::PyValueError::new_err("seed must be 32 bytes"))?;
        let rng = Rng(ChaCha20Rng::from_seed(seed));
        zeroize::Zeroize::zeroize(&mut seed);
        Ok(rng)
    }
}

impl Drop for Rng {
    fn drop(&mut self) {
        // rand_chacha's RNG has no zeroize: overwrite it whole, in place, with the state of the
        // all-zero seed (nothing buffered), volatile so that the dead store is kept.
        // SAFETY: `self.0` is a valid, aligned place; ChaCha20Rng has no drop glue to skip.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::write_volatile(&mut self.0, ChaCha20Rng::from_seed([0; 32]))
        };
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// A time argument in milliseconds: a non-negative integer below 2**64. Anything else is refused
/// naming the argument (pyo3 names it only for type errors): a `TypeError` for a float (NaN and
/// infinities included), a string or None, a `ValueError` for a negative or too large int.
#[derive(Clone, Copy)]
struct Millis(u64);

impl<'py> FromPyObject<'py> for Millis {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        if !ob.is_instance_of::<pyo3::types::PyInt>() {
            let kind = ob.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            return Err(pyo3::exceptions::PyTypeError::new_err(format!("expected an int of milliseconds, got {kind}")));
        }
        ob.extract::<u64>().map(Millis).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "now_ms: expected 0 <= now_ms < 2**64 milliseconds, got {ob}"
            ))
        })
    }
}

/// The most items one list argument may hold (blocks of an update).
const MAX_ITEMS: usize = 65_536;

/// An Ed25519 identity key.
#[pyclass(module = "confchain")]
#[derive(Clone)]
struct PrivateKey(engine::PrivateKey);

#[pymethods]
impl PrivateKey {
    /// A fresh key from `rng`.
    #[staticmethod]
    fn generate(rng: &mut Rng) -> Self {
        PrivateKey(engine::PrivateKey::generate(&mut rng.0))
    }

    /// From the 32-byte seed.
    #[staticmethod]
    fn from_bytes(seed: &[u8]) -> PyResult<Self> {
        engine::PrivateKey::from_slice(seed).map(PrivateKey).map_err(err)
    }

    /// The 32-byte public key.
    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, self.0.public_key().as_bytes())
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.0)
    }
}

/// A participant: user id, public key, permission flags (1 add, 2 remove, 4 set value), version.
#[pyclass(module = "confchain", get_all, set_all)]
#[derive(Clone)]
struct Participant {
    user_id: i64,
    public_key: Vec<u8>,
    flags: i32,
    version: i32,
}

#[pymethods]
impl Participant {
    #[new]
    #[pyo3(signature = (user_id, public_key, flags = 3, version = 0))]
    fn new(user_id: i64, public_key: Vec<u8>, flags: i32, version: i32) -> Self {
        Participant { user_id, public_key, flags, version }
    }

    fn __repr__(&self) -> String {
        format!("Participant(user_id={}, flags={}, version={})", self.user_id, self.flags, self.version)
    }

    fn __eq__(&self, other: &Participant) -> bool {
        (self.user_id, &self.public_key, self.flags, self.version)
            == (other.user_id, &other.public_key, other.flags, other.version)
    }
}

impl Participant {
    fn to_core(&self) -> PyResult<GroupParticipant> {
        let key: [u8; 32] = self
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("public_key must be 32 bytes"))?;
        Ok(GroupParticipant {
            user_id: self.user_id,
            public_key: engine::PublicKey::from_bytes(key),
            flags: Permissions::from_bits_retain(self.flags),
            version: self.version,
        })
    }

    fn from_core(p: &GroupParticipant) -> Self {
        Participant {
            user_id: p.user_id,
            public_key: p.public_key.as_bytes().to_vec(),
            flags: p.flags.bits(),
            version: p.version,
        }
    }
}

fn state(participants: Vec<Participant>, external_permissions: i32) -> PyResult<GroupState> {
    Ok(GroupState {
        participants: participants.iter().map(Participant::to_core).collect::<PyResult<_>>()?,
        external_permissions: Permissions::from_bits_retain(external_permissions),
    })
}

/// A decoded participant block (server or plain form).
#[pyclass(module = "confchain")]
struct Block(engine::Block);

#[pymethods]
impl Block {
    /// Decodes a block in server or plain form.
    #[staticmethod]
    fn decode(data: &[u8]) -> PyResult<Self> {
        match engine::decode_any(data).map_err(err)?.1 {
            engine::Object::Block(b) => Ok(Block(b)),
            engine::Object::Broadcast(_) => Err(pyo3::exceptions::PyValueError::new_err("a broadcast, not a block")),
        }
    }

    #[getter]
    fn height(&self) -> i32 {
        self.0.height
    }

    /// SHA-256 of the canonical encoding.
    #[getter]
    fn hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.0.hash())
    }

    #[getter]
    fn prev_block_hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.0.prev_block_hash)
    }

    /// The participants after this block (when the block is self-consistent).
    #[getter]
    fn participants(&self) -> PyResult<Vec<Participant>> {
        let tip = engine::UnverifiedTip::from_block(self.0.clone()).map_err(err)?;
        Ok(tip.participants().iter().map(Participant::from_core).collect())
    }

    /// The canonical plain-form encoding.
    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.0.encode())
    }

    fn __repr__(&self) -> String {
        format!("Block(height={}, changes={})", self.0.height, self.0.changes.len())
    }
}

/// Server form (constructor id + 1) of a plain-form block or broadcast.
#[pyfunction]
fn to_server_form<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(bytes(py, &engine::to_server_form(data).map_err(err)?))
}

/// The zero block for createConferenceCall (plain form).
#[pyfunction]
fn create_zero_block<'py>(
    py: Python<'py>,
    key: &PrivateKey,
    participants: Vec<Participant>,
    external_permissions: i32,
    rng: &mut Rng,
) -> PyResult<Bound<'py, PyBytes>> {
    let state = state(participants, external_permissions)?;
    let block = py.allow_threads(|| build_zero_block(state, &key.0, &mut rng.0)).map_err(err)?;
    Ok(bytes(py, block.as_bytes()))
}

/// The self-add block for joinGroupCall, built on the last block (server form).
#[pyfunction]
fn create_self_add_block<'py>(
    py: Python<'py>,
    key: &PrivateKey,
    last_block: &[u8],
    me: &Participant,
    rng: &mut Rng,
) -> PyResult<Bound<'py, PyBytes>> {
    let me = me.to_core()?;
    let block = py
        .allow_threads(|| engine::UnverifiedTip::from_server_block(last_block)?.build_self_add(me, &key.0, &mut rng.0))
        .map_err(err)?;
    Ok(bytes(py, block.as_bytes()))
}

/// One participant's conference call.
#[pyclass(module = "confchain")]
struct Call(engine::Call);

#[pymethods]
impl Call {
    /// Creates the call from the last block (server form).
    #[new]
    fn new(py: Python<'_>, user_id: i64, key: &PrivateKey, last_block: &[u8], rng: &mut Rng) -> PyResult<Self> {
        let key = key.0.clone();
        py.allow_threads(|| engine::Call::new(user_id, key, last_block, &mut rng.0)).map(Call).map_err(err)
    }

    /// Applies the next block (server form). A block invalid for the chain raises and changes
    /// nothing; a valid block we cannot read our key from is applied (see `poll_event`).
    fn apply_block(&mut self, py: Python<'_>, block: &[u8], now_ms: Millis, rng: &mut Rng) -> PyResult<()> {
        py.allow_threads(|| self.0.apply_block(block, now_ms.0, &mut rng.0)).map_err(err)
    }

    /// A thread-safe frame encryptor sharing this call's sequence numbers; seeded from `rng`.
    fn media_encryptor(&self, rng: &mut Rng) -> MediaEncryptor {
        MediaEncryptor(self.0.media_encryptor(&mut rng.0))
    }

    /// A thread-safe frame decryptor sharing this call's replay windows.
    fn media_decryptor(&self) -> MediaDecryptor {
        MediaDecryptor(self.0.media_decryptor())
    }

    /// Whether the next block would be accepted, without applying it.
    fn check_block(&self, py: Python<'_>, block: &[u8]) -> PyResult<()> {
        py.allow_threads(|| self.0.check_block(block)).map_err(err)
    }

    /// Adopts the server's last block in place, trusting it as creating a call does ("tip_adopted"; a
    /// block that directly follows ours is checked by the rules instead), keeping key, sequence numbers
    /// and replay windows. An explicit decision, never the answer to a refused block.
    fn resync(&mut self, py: Python<'_>, last_block: &[u8], now_ms: Millis, rng: &mut Rng) -> PyResult<()> {
        py.allow_threads(|| self.0.resync(engine::UnverifiedTip::from_server_block(last_block)?, now_ms.0, &mut rng.0))
            .map_err(err)
    }

    /// The next event, or None.
    fn poll_event(&mut self) -> Option<Event> {
        self.0.poll_event().map(Event::from_core)
    }

    /// The next instant (ms) `handle_timeout` has work, or None.
    fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout()
    }

    /// Whether we hold the key of the last block (and so can encrypt).
    #[getter]
    fn has_current_key(&self) -> bool {
        self.0.has_current_key()
    }

    /// User ids the current verification phase still waits for.
    fn verification_missing(&self) -> Vec<i64> {
        self.0.verification_missing()
    }

    /// Encrypts a packet; `data[:clear_prefix_len]` stays in clear.
    #[pyo3(signature = (channel, data, now_ms, rng, clear_prefix_len = 0))]
    fn encrypt<'py>(
        &mut self,
        py: Python<'py>,
        channel: i32,
        data: &[u8],
        now_ms: Millis,
        rng: &mut Rng,
        clear_prefix_len: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let p =
            py.allow_threads(|| self.0.encrypt(channel, data, clear_prefix_len, now_ms.0, &mut rng.0)).map_err(err)?;
        Ok(bytes(py, &p))
    }

    /// Decrypts a packet from `user_id` (the channel is the one inside the packet).
    fn decrypt<'py>(
        &mut self,
        py: Python<'py>,
        user_id: i64,
        packet: &[u8],
        now_ms: Millis,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let plain = py.allow_threads(|| self.0.decrypt(user_id, packet, now_ms.0)).map_err(err)?;
        Ok(bytes(py, &plain))
    }

    /// Encrypts a media frame as tgcalls does (see `frame_plaintext`): the codec's clear prefix,
    /// H.264 start codes widened and re-encrypted (up to `FRAME_MAX_ATTEMPTS` times) until no start
    /// code follows the prefix, the Opus trailer with `level` (0 loud ..= 127 silent) and
    /// `speech`. `codec` is a name or an RTP payload type. Raises `FRAME__START_CODE` when every
    /// attempt put a start code in the ciphertext (drop the frame).
    #[pyo3(signature = (channel, codec, frame, now_ms, rng, level = 0, speech = false))]
    #[allow(clippy::too_many_arguments)]
    fn encrypt_frame<'py>(
        &mut self,
        py: Python<'py>,
        channel: i32,
        codec: frame::CodecArg,
        frame: &[u8],
        now_ms: Millis,
        rng: &mut Rng,
        level: u8,
        speech: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(self.encrypt_frame_info(py, channel, codec, frame, now_ms, rng, level, speech)?.0)
    }

    /// `encrypt_frame`, returning `(packet, clear_prefix, attempts)`: attempts > 1 when H.264
    /// ciphertexts with a start code were discarded (each consumed a sequence number).
    #[pyo3(signature = (channel, codec, frame, now_ms, rng, level = 0, speech = false))]
    #[allow(clippy::too_many_arguments)]
    fn encrypt_frame_info<'py>(
        &mut self,
        py: Python<'py>,
        channel: i32,
        codec: frame::CodecArg,
        frame: &[u8],
        now_ms: Millis,
        rng: &mut Rng,
        level: u8,
        speech: bool,
    ) -> PyResult<frame::Sent<'py>> {
        frame::encrypt(py, (&mut self.0, &mut rng.0), channel, codec, frame, now_ms.0, (level, speech))
    }

    /// Decrypts a media frame from `sender_user_id`: `(frame, level, speech)`, the Opus trailer
    /// stripped (level and speech None without one, and for video). Raises `FRAME__EMPTY` for an
    /// empty plaintext (tgcalls drops it) and every error of `decrypt`.
    fn decrypt_frame<'py>(
        &mut self,
        py: Python<'py>,
        sender_user_id: i64,
        codec: frame::CodecArg,
        packet: &[u8],
        now_ms: Millis,
    ) -> PyResult<frame::Received<'py>> {
        frame::decrypt(py, &mut self.0, sender_user_id, codec, packet, now_ms.0)
    }

    /// `decrypt_frame` for the member `table` maps `ssrc` to: `(frame, level, speech, user_id,
    /// kind)`. An SSRC the table does not map raises `FRAME__UNKNOWN_SOURCE` (no key is tried).
    fn decrypt_frame_from_source<'py>(
        &mut self,
        py: Python<'py>,
        table: &sources::SourceTable,
        ssrc: u32,
        codec: frame::CodecArg,
        packet: &[u8],
        now_ms: Millis,
    ) -> PyResult<sources::Sourced<'py>> {
        frame::decrypt_from_source(py, &mut self.0, table, ssrc, codec, packet, now_ms.0)
    }

    /// Encrypts a sendGroupCallEncryptedMessage payload (JSON text).
    fn encrypt_message<'py>(
        &mut self,
        py: Python<'py>,
        json: &str,
        now_ms: Millis,
        rng: &mut Rng,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let m = py.allow_threads(|| self.0.encrypt_message(json, now_ms.0, &mut rng.0)).map_err(err)?;
        Ok(bytes(py, &m))
    }

    /// Decrypts an encrypted message into its JSON text.
    fn decrypt_message(&mut self, py: Python<'_>, user_id: i64, message: &[u8], now_ms: Millis) -> PyResult<String> {
        py.allow_threads(|| self.0.decrypt_message(user_id, message, now_ms.0)).map_err(err)
    }

    /// Broadcasts to send with sendConferenceCallBroadcast (plain form).
    fn pull_outbound<'py>(&mut self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.0.poll_outbound().iter().map(|b| bytes(py, b)).collect()
    }

    /// Takes a broadcast (server form).
    fn receive_broadcast(&mut self, py: Python<'_>, message: &[u8]) -> PyResult<()> {
        py.allow_threads(|| self.0.receive_broadcast(message)).map_err(err)
    }

    /// A block setting a new state with a fresh key.
    fn build_change_state<'py>(
        &self,
        py: Python<'py>,
        participants: Vec<Participant>,
        external_permissions: i32,
        rng: &mut Rng,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let state = state(participants, external_permissions)?;
        let block = py.allow_threads(|| self.0.build_change_state(state, &mut rng.0)).map_err(err)?;
        Ok(bytes(py, block.as_bytes()))
    }

    /// A block removing the given users.
    fn build_remove<'py>(&self, py: Python<'py>, user_ids: Vec<i64>, rng: &mut Rng) -> PyResult<Bound<'py, PyBytes>> {
        let block = py.allow_threads(|| self.0.build_remove(&user_ids, &mut rng.0)).map_err(err)?;
        Ok(bytes(py, block.as_bytes()))
    }

    /// A block re-keying the group.
    fn build_rekey<'py>(&self, py: Python<'py>, rng: &mut Rng) -> PyResult<Bound<'py, PyBytes>> {
        let block = py.allow_threads(|| self.0.build_rekey(&mut rng.0)).map_err(err)?;
        Ok(bytes(py, block.as_bytes()))
    }

    /// Drops epochs whose grace period ended.
    fn handle_timeout(&mut self, now_ms: Millis) {
        self.0.handle_timeout(now_ms.0)
    }

    #[getter]
    fn height(&self) -> i32 {
        self.0.height()
    }

    #[getter]
    fn user_id(&self) -> i64 {
        self.0.user_id()
    }

    #[getter]
    fn is_member(&self) -> bool {
        self.0.is_member()
    }

    #[getter]
    fn participants(&self) -> Vec<Participant> {
        self.0.participants().iter().map(Participant::from_core).collect()
    }

    #[getter]
    fn active_epochs(&self) -> Vec<i32> {
        self.0.active_epochs()
    }

    /// The four emojis of the current block, once verification completed (else None).
    #[getter]
    fn emojis(&self) -> Option<Vec<String>> {
        self.0.emojis().map(|e| e.iter().map(|s| s.to_string()).collect())
    }

    /// The emoji hash of the current block, once verification completed (else None).
    #[getter]
    fn emoji_hash<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.0.verification_result().map(|r| bytes(py, &r.emoji_hash))
    }

    /// The 24 verification words of the current block.
    #[getter]
    fn verification_words(&self) -> Vec<String> {
        self.0.verification_words().iter().map(|s| s.to_string()).collect()
    }

    /// A short fingerprint of the current group key (safe to show).
    #[getter]
    fn key_fingerprint(&self) -> Option<String> {
        self.0.key_fingerprint()
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.0)
    }
}

/// An event of a call: `kind` is "block_applied", "removed", "key_unavailable", "epoch_expired"
/// or "verification_done"; `height` the block it is about; `error` the cause's name for
/// "key_unavailable" (else None).
#[pyclass(module = "confchain", get_all)]
struct Event {
    kind: String,
    height: i32,
    error: Option<String>,
}

impl Event {
    fn from_core(e: engine::CallEvent) -> Self {
        let (kind, height, error) = match e {
            engine::CallEvent::BlockApplied { height } => ("block_applied", height, None),
            engine::CallEvent::Removed { height } => ("removed", height, None),
            engine::CallEvent::KeyUnavailable { height, error } => {
                ("key_unavailable", height, Some(error.kind().name().to_owned()))
            }
            engine::CallEvent::EpochExpired { height } => ("epoch_expired", height, None),
            engine::CallEvent::VerificationDone { result } => ("verification_done", result.height, None),
            engine::CallEvent::TipAdopted { height } => ("tip_adopted", height, None),
            _ => ("other", 0, None),
        };
        Event { kind: kind.to_owned(), height, error }
    }
}

#[pymethods]
impl Event {
    fn __repr__(&self) -> String {
        format!("Event({}, height={}, error={:?})", self.kind, self.height, self.error)
    }
}

fn dh_config(g: i32, p: Option<&[u8]>) -> PyResult<DhConfig> {
    match p {
        None => Ok(DhConfig::telegram()),
        Some(p) => DhConfig::new(g, p, &mut PrimeCache::new()).map_err(err),
    }
}

/// A one-to-one call, calling side (requestCall). `p=None` uses Telegram's prime.
#[pyclass(module = "confchain")]
struct P2PCaller(Caller);

#[pymethods]
impl P2PCaller {
    #[new]
    #[pyo3(signature = (rng, g = 3, p = None))]
    fn new(py: Python<'_>, rng: &mut Rng, g: i32, p: Option<&[u8]>) -> PyResult<Self> {
        let config = py.allow_threads(|| dh_config(g, p))?;
        Ok(P2PCaller(py.allow_threads(|| Caller::new(config, &mut rng.0))))
    }

    /// SHA-256(g_a), for requestCall.
    fn g_a_hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.0.g_a_hash())
    }

    /// g_a, for confirmCall.
    fn g_a<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.0.g_a())
    }

    /// On phoneCallAccepted: checks g_b and returns the key.
    fn on_accepted(&self, py: Python<'_>, g_b: &[u8]) -> PyResult<P2PKey> {
        py.allow_threads(|| self.0.on_accepted(g_b)).map(|c| P2PKey(c.key)).map_err(err)
    }
}

/// A one-to-one call, called side (acceptCall).
#[pyclass(module = "confchain")]
struct P2PCallee(Callee);

#[pymethods]
impl P2PCallee {
    #[new]
    #[pyo3(signature = (g_a_hash, rng, g = 3, p = None))]
    fn new(py: Python<'_>, g_a_hash: &[u8], rng: &mut Rng, g: i32, p: Option<&[u8]>) -> PyResult<Self> {
        let hash: [u8; 32] =
            g_a_hash.try_into().map_err(|_| pyo3::exceptions::PyValueError::new_err("g_a_hash must be 32 bytes"))?;
        let config = py.allow_threads(|| dh_config(g, p))?;
        Ok(P2PCallee(py.allow_threads(|| Callee::new(config, hash, &mut rng.0))))
    }

    /// g_b, for acceptCall.
    fn g_b<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, &self.0.g_b())
    }

    /// On phoneCall with g_a and key_fingerprint: checks everything and returns the key.
    fn on_confirmed(&self, py: Python<'_>, g_a: &[u8], key_fingerprint: i64) -> PyResult<P2PKey> {
        py.allow_threads(|| self.0.on_confirmed(g_a, key_fingerprint)).map(P2PKey).map_err(err)
    }
}

/// The agreed key of a one-to-one call.
#[pyclass(module = "confchain")]
struct P2PKey(DhKey);

#[pymethods]
impl P2PKey {
    /// key_fingerprint (for confirmCall).
    #[getter]
    fn fingerprint(&self) -> i64 {
        self.0.fingerprint()
    }

    /// The four emojis both sides show.
    #[getter]
    fn emojis(&self) -> Vec<String> {
        self.0.emojis().iter().map(|e| (*e).to_owned()).collect()
    }

    /// The 256-byte key.
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        bytes(py, self.0.key().expose())
    }
}

// ---- media handles ----

/// Encrypts our frames from any thread (obtained from `Call.media_encryptor(rng)`); the GIL is
/// released while it works, so media threads run in parallel.
#[pyclass(module = "confchain", frozen)]
struct MediaEncryptor(engine::MediaEncryptor);

#[pymethods]
impl MediaEncryptor {
    /// Encrypts a frame; `frame[:clear_prefix_len]` stays in clear.
    #[pyo3(signature = (channel, frame, now_ms, clear_prefix_len = 0))]
    fn encrypt<'py>(
        &self,
        py: Python<'py>,
        channel: i32,
        frame: &[u8],
        now_ms: Millis,
        clear_prefix_len: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        py.allow_threads(|| self.0.encrypt_into(channel, frame, clear_prefix_len, now_ms.0, &mut out)).map_err(err)?;
        Ok(bytes(py, &out))
    }

    /// Encrypts a media frame as `Call.encrypt_frame` does.
    #[pyo3(signature = (channel, codec, frame, now_ms, level = 0, speech = false))]
    #[allow(clippy::too_many_arguments)]
    fn encrypt_frame<'py>(
        &self,
        py: Python<'py>,
        channel: i32,
        codec: frame::CodecArg,
        frame: &[u8],
        now_ms: Millis,
        level: u8,
        speech: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(self.encrypt_frame_info(py, channel, codec, frame, now_ms, level, speech)?.0)
    }

    /// `encrypt_frame`, returning `(packet, clear_prefix, attempts)`.
    #[pyo3(signature = (channel, codec, frame, now_ms, level = 0, speech = false))]
    #[allow(clippy::too_many_arguments)]
    fn encrypt_frame_info<'py>(
        &self,
        py: Python<'py>,
        channel: i32,
        codec: frame::CodecArg,
        frame: &[u8],
        now_ms: Millis,
        level: u8,
        speech: bool,
    ) -> PyResult<frame::Sent<'py>> {
        frame::encrypt(py, &self.0, channel, codec, frame, now_ms.0, (level, speech))
    }
}

/// Decrypts other members' frames from any thread (obtained from `Call.media_decryptor()`).
#[pyclass(module = "confchain", frozen)]
struct MediaDecryptor(engine::MediaDecryptor);

#[pymethods]
impl MediaDecryptor {
    /// Decrypts a frame from `user_id`.
    fn decrypt<'py>(
        &self,
        py: Python<'py>,
        user_id: i64,
        packet: &[u8],
        now_ms: Millis,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        py.allow_threads(|| self.0.decrypt_into(user_id, packet, now_ms.0, &mut out)).map_err(err)?;
        Ok(bytes(py, &out))
    }

    /// Decrypts a media frame as `Call.decrypt_frame` does: `(frame, level, speech)`.
    fn decrypt_frame<'py>(
        &self,
        py: Python<'py>,
        sender_user_id: i64,
        codec: frame::CodecArg,
        packet: &[u8],
        now_ms: Millis,
    ) -> PyResult<frame::Received<'py>> {
        frame::decrypt(py, &self.0, sender_user_id, codec, packet, now_ms.0)
    }

    /// `Call.decrypt_frame_from_source` without the call.
    fn decrypt_frame_from_source<'py>(
        &self,
        py: Python<'py>,
        table: &sources::SourceTable,
        ssrc: u32,
        codec: frame::CodecArg,
        packet: &[u8],
        now_ms: Millis,
    ) -> PyResult<sources::Sourced<'py>> {
        frame::decrypt_from_source(py, &self.0, table, ssrc, codec, packet, now_ms.0)
    }
}

// ---- the session (sans-IO client over the phone.* API) and the server model ----

use engine::session as sess;

/// A request the session wants sent: `kind` names the TL method ("get_chain_blocks",
/// "create_conference", "join", "delete_participants", "send_broadcast",
/// "send_encrypted_message", "leave", "get_group_participants"); the fields that method takes are
/// set, the rest are None.
#[pyclass(module = "confchain")]
#[derive(Clone)]
struct Request {
    #[pyo3(get)]
    id: u64,
    #[pyo3(get)]
    kind: String,
    #[pyo3(get)]
    sub_chain: Option<i32>,
    #[pyo3(get)]
    offset: Option<i32>,
    #[pyo3(get)]
    limit: Option<i32>,
    public_key: Option<Vec<u8>>,
    block: Option<Vec<u8>>,
    #[pyo3(get)]
    user_ids: Option<Vec<i64>>,
    #[pyo3(get)]
    kick: Option<bool>,
    /// get_group_participants: the SSRCs to look up.
    #[pyo3(get)]
    sources: Option<Vec<u32>>,
    encrypted_message: Option<Vec<u8>>,
    /// The request itself, for the server model (`testkit`).
    #[cfg(feature = "testkit")]
    inner: sess::Request,
}

impl Request {
    fn from_core(id: u64, r: sess::Request) -> Self {
        let mut out = Request {
            id,
            kind: String::new(),
            sub_chain: None,
            offset: None,
            limit: None,
            public_key: None,
            block: None,
            user_ids: None,
            kick: None,
            sources: None,
            encrypted_message: None,
            #[cfg(feature = "testkit")]
            inner: r.clone(),
        };
        let kind = match r {
            sess::Request::GetChainBlocks { sub_chain, offset, limit } => {
                (out.sub_chain, out.offset, out.limit) = (Some(sub_chain.id()), Some(offset), Some(limit));
                "get_chain_blocks"
            }
            sess::Request::CreateConference { public_key, block } => {
                out.public_key = public_key.map(|k| k.as_bytes().to_vec());
                out.block = block.map(engine::PlainBlock::into_bytes);
                "create_conference"
            }
            sess::Request::Join { public_key, block } => {
                out.public_key = Some(public_key.as_bytes().to_vec());
                out.block = Some(block.into_bytes());
                "join"
            }
            sess::Request::DeleteParticipants { user_ids, block, kick } => {
                (out.user_ids, out.block, out.kick) = (Some(user_ids), Some(block.into_bytes()), Some(kick));
                "delete_participants"
            }
            sess::Request::SendBroadcast { block } => {
                out.block = Some(block);
                "send_broadcast"
            }
            sess::Request::SendEncryptedMessage { encrypted_message } => {
                out.encrypted_message = Some(encrypted_message);
                "send_encrypted_message"
            }
            sess::Request::Leave => "leave",
            sess::Request::GetGroupParticipants { sources } => {
                out.sources = Some(sources);
                "get_group_participants"
            }
            _ => "unknown",
        };
        out.kind = kind.to_owned();
        out
    }
}

#[pymethods]
impl Request {
    /// The 32-byte public key (`int256`), for create_conference and join.
    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.public_key.as_deref().map(|b| bytes(py, b))
    }

    /// The block (plain form) for create_conference, join, delete_participants, send_broadcast.
    #[getter]
    fn block<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.block.as_deref().map(|b| bytes(py, b))
    }

    /// For send_encrypted_message.
    #[getter]
    fn encrypted_message<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.encrypted_message.as_deref().map(|b| bytes(py, b))
    }

    fn __repr__(&self) -> String {
        format!("Request(id={}, kind={:?})", self.id, self.kind)
    }
}

/// An update: `Update.chain_blocks(sub_chain, blocks, next_offset)` (updateGroupCallChainBlocks)
/// or `Update.encrypted_message(from_id, data)` (updateGroupCallEncryptedMessage).
#[pyclass(module = "confchain")]
#[derive(Clone)]
struct Update(sess::Update);

#[pymethods]
impl Update {
    /// At most 65,536 blocks of at most 16 MiB each (the largest block TL can frame); the count
    /// is checked before anything is copied. `sub_chain` is 0 (blocks) or 1 (broadcasts): an
    /// update of another sub-chain is none of the session's (ValueError; the adapters leave it out).
    #[staticmethod]
    fn chain_blocks(sub_chain: i32, blocks: &Bound<'_, PyAny>, next_offset: i32) -> PyResult<Self> {
        let Some(sub) = sess::SubChain::from_id(sub_chain) else {
            return Err(pyo3::exceptions::PyValueError::new_err(format!("sub_chain: {sub_chain}, expected 0 or 1")));
        };
        let wrong =
            |e: PyErr| pyo3::exceptions::PyTypeError::new_err(format!("blocks: expected a list of bytes ({e})"));
        let n = blocks.len().map_err(wrong)?;
        if n > MAX_ITEMS {
            return Err(pyo3::exceptions::PyValueError::new_err(format!("blocks: {n} items, at most {MAX_ITEMS}")));
        }
        let blocks: Vec<Vec<u8>> = blocks.extract().map_err(wrong)?;
        if let Some(b) = blocks.iter().find(|b| b.len() > engine::limits::MAX_BLOCK_SIZE) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "blocks: a block of {} bytes, at most {}",
                b.len(),
                engine::limits::MAX_BLOCK_SIZE
            )));
        }
        let blocks = blocks.into_iter().map(sess::ServerBlock::from).collect();
        Ok(Update(sess::Update::ChainBlocks { sub_chain: sub, blocks, next_offset }))
    }

    #[staticmethod]
    fn encrypted_message(from_id: i64, data: Vec<u8>) -> Self {
        Update(sess::Update::EncryptedMessage { from: from_id, encrypted_message: data })
    }

    fn __repr__(&self) -> String {
        match &self.0 {
            sess::Update::ChainBlocks { sub_chain, blocks, next_offset } => {
                format!("Update.chain_blocks({}, <{} blocks>, {next_offset})", sub_chain.id(), blocks.len())
            }
            sess::Update::EncryptedMessage { from, .. } => format!("Update.encrypted_message({from}, ...)"),
            other => format!("Update({other:?})"),
        }
    }
}

/// A session event: `kind` plus the fields it uses, from the core's one description
/// (`confchain::session::SessionEvent::describe`): "created", "joined", "join_failed",
/// "key_changed", "participants_changed", "verification_started", "verification_done",
/// "message_received", "removed", "left", "ended", "chain_rejected", "call_identity" (`user_ids`
/// = `[id, access_hash]`, `text` = invite link), "video_blackout", "unusable_key", "error".
#[pyclass(module = "confchain", get_all)]
struct SessionEvent {
    kind: String,
    height: Option<i32>,
    fingerprint: Option<String>,
    user_ids: Option<Vec<i64>>,
    words: Option<Vec<String>>,
    emojis: Option<Vec<String>>,
    from_id: Option<i64>,
    text: Option<String>,
}

#[pymethods]
impl SessionEvent {
    fn __repr__(&self) -> String {
        format!("SessionEvent({}, height={:?}, text={:?})", self.kind, self.height, self.text)
    }
}

impl SessionEvent {
    fn from_core(e: sess::SessionEvent) -> Self {
        let mut out = SessionEvent {
            kind: String::new(),
            height: None,
            fingerprint: None,
            user_ids: None,
            words: None,
            emojis: None,
            from_id: None,
            text: None,
        };
        let strings = |v: &[&'static str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let d = e.describe();
        for field in d.fields {
            match field {
                sess::EventField::Height(h) => out.height = Some(h),
                sess::EventField::User(u) => out.from_id = Some(u),
                sess::EventField::UserIds(ids) => out.user_ids = Some(ids),
                sess::EventField::Call(c) => out.user_ids = Some(vec![c.id, c.access_hash]),
                sess::EventField::Fingerprint(f) => out.fingerprint = Some(f),
                sess::EventField::Text(t) => out.text = Some(t),
                sess::EventField::Words(words) => out.words = Some(strings(&words)),
                sess::EventField::Emojis(emojis) => out.emojis = Some(strings(&emojis)),
                sess::EventField::Now(now) => out.text = Some(if now { "now" } else { "ahead" }.to_owned()),
                _ => {}
            }
        }
        out.kind = d.name.to_owned();
        out
    }
}

fn response(updates: Option<Vec<Update>>, error: Option<String>) -> sess::Response {
    match error {
        Some(e) => sess::Response::Error(e.into()),
        None => sess::Response::Ok(updates.unwrap_or_default().into_iter().map(|u| u.0).collect()),
    }
}

/// A sans-IO client of one conference call over Telegram's phone.* API: take requests with
/// `poll_request()`, send them with your MTProto client, give back `handle_response(id, updates=...)`
/// or `handle_response(id, error="CONF_WRITE_CHAIN_INVALID")` (the API error's text, sorted here into
/// its kind; the Telethon and Pyrogram adapters write it from their typed errors), feed pushed updates to
/// `handle_update`, call `handle_timeout(now_ms)` at `poll_timeout()`, read `poll_event()`.
#[pyclass(module = "confchain")]
struct Session(sess::Session);

impl Session {
    /// The session's call, for the media methods.
    fn call(&mut self) -> PyResult<&mut engine::Call> {
        self.0.call_mut().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("not in a call"))
    }
}

#[pymethods]
impl Session {
    /// A session for `user_id`; keywords set its configuration (`SessionConfig`'s fields by name,
    /// e.g. `call_size_limit=1000` from the app config's `conference_call_size_limit`, or
    /// `prune_left=False`); an unknown name or a value out of range raises `ConfchainError`.
    #[new]
    #[pyo3(signature = (user_id, **config))]
    fn new(user_id: i64, config: Option<&Bound<'_, pyo3::types::PyDict>>) -> PyResult<Self> {
        let mut c = sess::SessionConfig::default();
        for (name, value) in config.into_iter().flatten() {
            let name: String = name.extract()?;
            c.set(&name, value.extract::<u64>()?).map_err(err)?;
        }
        sess::Session::new(user_id, c).map(Session).map_err(err)
    }

    /// The session's configuration: every `SessionConfig` field by name (flags as bools).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let d = pyo3::types::PyDict::new(py);
        let config = self.0.config();
        for name in sess::SessionConfig::FIELDS {
            let value = config.get(name).unwrap_or_default();
            if sess::SessionConfig::FLAGS.contains(&name) {
                d.set_item(name, value == 1)?;
            } else {
                d.set_item(name, value)?;
            }
        }
        Ok(d)
    }

    /// createConferenceCall, joining at once (`join=True`) or create only.
    #[pyo3(signature = (now_ms, rng, join = true))]
    fn create(&mut self, py: Python<'_>, now_ms: Millis, rng: &mut Rng, join: bool) -> PyResult<()> {
        py.allow_threads(|| self.0.create(join, now_ms.0, &mut rng.0)).map_err(err)
    }

    /// Joins (or rejoins) with a new key.
    fn join(&mut self, py: Python<'_>, now_ms: Millis, rng: &mut Rng) -> PyResult<()> {
        py.allow_threads(|| self.0.join(now_ms.0, &mut rng.0)).map_err(err)
    }

    fn leave(&mut self, now_ms: Millis) {
        self.0.leave(now_ms.0)
    }

    #[pyo3(signature = (user_ids, now_ms, rng, kick = false))]
    fn remove(
        &mut self,
        py: Python<'_>,
        user_ids: Vec<i64>,
        now_ms: Millis,
        rng: &mut Rng,
        kick: bool,
    ) -> PyResult<()> {
        py.allow_threads(|| self.0.remove(&user_ids, kick, now_ms.0, &mut rng.0)).map_err(err)
    }

    fn send_message(&mut self, py: Python<'_>, json: &str, now_ms: Millis, rng: &mut Rng) -> PyResult<()> {
        py.allow_threads(|| self.0.send_message(json, now_ms.0, &mut rng.0)).map_err(err)
    }

    fn poll_request(&mut self) -> Option<Request> {
        self.0.poll_request().map(|(id, r)| Request::from_core(id, r))
    }

    #[pyo3(signature = (id, now_ms, rng, updates = None, error = None))]
    fn handle_response(
        &mut self,
        py: Python<'_>,
        id: u64,
        now_ms: Millis,
        rng: &mut Rng,
        updates: Option<Vec<Update>>,
        error: Option<String>,
    ) {
        let r = response(updates, error);
        py.allow_threads(|| self.0.handle_response(id, r, now_ms.0, &mut rng.0))
    }

    fn handle_update(&mut self, py: Python<'_>, update: Update, now_ms: Millis, rng: &mut Rng) {
        py.allow_threads(|| self.0.handle_update(update.0, now_ms.0, &mut rng.0))
    }

    fn handle_timeout(&mut self, py: Python<'_>, now_ms: Millis, rng: &mut Rng) {
        py.allow_threads(|| self.0.handle_timeout(now_ms.0, &mut rng.0))
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout()
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.0.poll_event().map(SessionEvent::from_core)
    }

    /// "idle", "joining", "joined", "resyncing", "removed", "leaving", "left", "failed",
    /// "chain_rejected" (failed closed) or "ended".
    #[getter]
    fn state(&self) -> &'static str {
        match self.0.state() {
            sess::SessionState::Idle => "idle",
            sess::SessionState::Joining => "joining",
            sess::SessionState::Joined => "joined",
            sess::SessionState::Resyncing => "resyncing",
            sess::SessionState::Removed => "removed",
            sess::SessionState::Leaving => "leaving",
            sess::SessionState::Left => "left",
            sess::SessionState::Failed => "failed",
            sess::SessionState::ChainRejected => "chain_rejected",
            sess::SessionState::Ended => "ended",
            _ => "other",
        }
    }

    #[getter]
    fn user_id(&self) -> i64 {
        self.0.user_id()
    }

    #[getter]
    fn height(&self) -> Option<i32> {
        self.0.call().map(engine::Call::height)
    }

    #[getter]
    fn emojis(&self) -> Option<Vec<String>> {
        self.0.call()?.emojis().map(|e| e.iter().map(|s| (*s).to_owned()).collect())
    }

    #[getter]
    fn key_fingerprint(&self) -> Option<String> {
        self.0.call()?.key_fingerprint()
    }

    /// The session's SSRC → sender map, live (a read-only `SourceTable`: the session fills it
    /// from participant updates, its join's answer and its lookups, and empties it when it
    /// leaves the call). Decrypt by SSRC through it; an SSRC it misses is looked up by the
    /// session (`get_group_participants` requests).
    fn source_map(&self) -> sources::SourceTable {
        sources::SourceTable::view(self.0.source_map())
    }

    /// Encrypts a media frame with the call's current key.
    #[pyo3(signature = (channel, data, now_ms, rng, clear_prefix_len = 0))]
    fn encrypt<'py>(
        &mut self,
        py: Python<'py>,
        channel: i32,
        data: &[u8],
        now_ms: Millis,
        rng: &mut Rng,
        clear_prefix_len: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let call = self.call()?;
        let p =
            py.allow_threads(|| call.encrypt(channel, data, clear_prefix_len, now_ms.0, &mut rng.0)).map_err(err)?;
        Ok(bytes(py, &p))
    }

    /// Decrypts a media frame from `user_id`.
    fn decrypt<'py>(
        &mut self,
        py: Python<'py>,
        user_id: i64,
        packet: &[u8],
        now_ms: Millis,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let call = self.call()?;
        let p = py.allow_threads(|| call.decrypt(user_id, packet, now_ms.0)).map_err(err)?;
        Ok(bytes(py, &p))
    }

    /// Encrypts a media frame with the call's current key, as `Call.encrypt_frame_info` does:
    /// `(packet, clear_prefix, attempts)`.
    #[pyo3(signature = (channel, codec, frame, now_ms, rng, level = 0, speech = false))]
    #[allow(clippy::too_many_arguments)]
    fn encrypt_frame_info<'py>(
        &mut self,
        py: Python<'py>,
        channel: i32,
        codec: frame::CodecArg,
        frame: &[u8],
        now_ms: Millis,
        rng: &mut Rng,
        level: u8,
        speech: bool,
    ) -> PyResult<frame::Sent<'py>> {
        frame::encrypt(py, (self.call()?, &mut rng.0), channel, codec, frame, now_ms.0, (level, speech))
    }

    /// Encrypts a media frame with the call's current key, as `Call.encrypt_frame` does.
    #[pyo3(signature = (channel, codec, frame, now_ms, rng, level = 0, speech = false))]
    #[allow(clippy::too_many_arguments)]
    fn encrypt_frame<'py>(
        &mut self,
        py: Python<'py>,
        channel: i32,
        codec: frame::CodecArg,
        frame: &[u8],
        now_ms: Millis,
        rng: &mut Rng,
        level: u8,
        speech: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(self.encrypt_frame_info(py, channel, codec, frame, now_ms, rng, level, speech)?.0)
    }

    /// Decrypts a media frame from `sender_user_id`, as `Call.decrypt_frame` does.
    fn decrypt_frame<'py>(
        &mut self,
        py: Python<'py>,
        sender_user_id: i64,
        codec: frame::CodecArg,
        packet: &[u8],
        now_ms: Millis,
    ) -> PyResult<frame::Received<'py>> {
        frame::decrypt(py, self.call()?, sender_user_id, codec, packet, now_ms.0)
    }

    /// `Call.decrypt_frame_from_source` with the session's call.
    fn decrypt_frame_from_source<'py>(
        &mut self,
        py: Python<'py>,
        table: &sources::SourceTable,
        ssrc: u32,
        codec: frame::CodecArg,
        packet: &[u8],
        now_ms: Millis,
    ) -> PyResult<sources::Sourced<'py>> {
        frame::decrypt_from_source(py, self.call()?, table, ssrc, codec, packet, now_ms.0)
    }
}

/// The in-memory model of Telegram's server for one conference (a test double: no network; only
/// in a module built with the `testkit` feature, as `bindings/python/test.sh` builds it).
/// `handle(from_user_id, request)` returns `(updates, error, pushes)`: the response as the
/// session's `handle_response` takes it, and `[(to_user_id, Update)]` to deliver.
#[cfg(feature = "testkit")]
#[pyclass(module = "confchain")]
struct Server(engine::server::Server);

#[cfg(feature = "testkit")]
#[pymethods]
impl Server {
    /// A call that a create starts (`existing=False`) or one created without joining.
    #[new]
    #[pyo3(signature = (existing = false))]
    fn new(existing: bool) -> Self {
        Server(if existing { engine::server::Server::existing() } else { engine::server::Server::new() })
    }

    #[allow(clippy::type_complexity)]
    fn handle(
        &mut self,
        py: Python<'_>,
        from_user_id: i64,
        request: &Request,
    ) -> (Option<Vec<Update>>, Option<String>, Vec<(i64, Update)>) {
        let (response, pushes) = py.allow_threads(|| self.0.handle(from_user_id, &request.inner));
        let pushes = pushes.into_iter().map(|(to, u)| (to, Update(u))).collect();
        match response {
            sess::Response::Ok(updates) => (Some(updates.into_iter().map(Update).collect()), None, pushes),
            sess::Response::Error(e) => (None, Some(e.to_string()), pushes),
        }
    }

    #[getter]
    fn height(&self) -> i32 {
        self.0.height()
    }
}

#[pymodule]
fn _confchain(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ConfchainError", m.py().get_type::<ConfchainError>())?;
    m.add_class::<Rng>()?;
    m.add_class::<PrivateKey>()?;
    m.add_class::<Participant>()?;
    m.add_class::<Block>()?;
    m.add_class::<Call>()?;
    m.add_class::<Event>()?;
    m.add_class::<P2PCaller>()?;
    m.add_class::<P2PCallee>()?;
    m.add_class::<P2PKey>()?;
    m.add_class::<Session>()?;
    m.add_class::<MediaEncryptor>()?;
    m.add_class::<MediaDecryptor>()?;
    m.add_class::<SessionEvent>()?;
    m.add_class::<Request>()?;
    m.add_class::<Update>()?;
    #[cfg(feature = "testkit")]
    m.add_class::<Server>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(to_server_form, m)?)?;
    m.add_function(wrap_pyfunction!(create_zero_block, m)?)?;
    m.add_function(wrap_pyfunction!(create_self_add_block, m)?)?;
    register_tl(m)?;
    frame::register(m)?;
    sources::register(m)?;
    Ok(())
}

// ---- for the MTProto adapters (confchain.telethon, confchain.pyrogram) ----

/// `Update.group_call`'s form as a function: `updateGroupCall` with `groupCall(id, access_hash,
/// invite_link)` or, when `discarded`, `groupCallDiscarded`.
#[pyfunction]
#[pyo3(signature = (call_id, access_hash, discarded = false, invite_link = None))]
fn update_group_call(call_id: i64, access_hash: i64, discarded: bool, invite_link: Option<String>) -> Update {
    let call = engine::api::CallIdentity { id: call_id, access_hash };
    Update(sess::Update::GroupCall { call, discarded, invite_link })
}

/// `updateGroupCallParticipants` (or a `phone.groupParticipants` answer): one participant record
/// per `groupCallParticipant`, `(user_id, left, source, video, presentation, date, version)`
/// with the fields after `left` optional from the end, as `SourceTable.apply` takes them
/// (`(user_id, left)` pairs are records without sources). The session keeps the sources in its
/// map (`Session.source_map()`).
#[pyfunction]
fn update_participants(participants: Vec<sources::Record>) -> Update {
    let participants = participants.into_iter().map(|r| r.0).collect();
    Update(sess::Update::Participants { participants })
}

/// The server model's TL front for the call `(call_id, access_hash)`: `handle(server,
/// from_user_id, function_bytes)` returns `(result_bytes, [(to_user_id, updates_bytes)])`, the
/// bytes an MTProto library serialized in and the bytes it parses out (`Updates`, `Bool`,
/// `rpc_error`). Only with the `testkit` feature, as [`Server`].
#[cfg(feature = "testkit")]
#[pyclass(module = "confchain")]
struct TlFront(engine::server::tl::TlFront);

#[cfg(feature = "testkit")]
#[pymethods]
impl TlFront {
    #[new]
    fn new(call_id: i64, access_hash: i64) -> Self {
        TlFront(engine::server::tl::TlFront::new(engine::api::CallIdentity { id: call_id, access_hash }))
    }

    #[allow(clippy::type_complexity)]
    fn handle<'py>(
        &self,
        py: Python<'py>,
        server: &mut Server,
        from_user_id: i64,
        function: &[u8],
    ) -> (Bound<'py, PyBytes>, Vec<(i64, Bound<'py, PyBytes>)>) {
        let (result, pushes) = py.allow_threads(|| self.0.handle(&mut server.0, from_user_id, function));
        (bytes(py, &result), pushes.into_iter().map(|(to, u)| (to, bytes(py, &u))).collect())
    }

    /// The call's invite link (a join may name the call by its slug).
    #[getter]
    fn invite_link(&self) -> String {
        self.0.invite_link.clone()
    }

    /// The `updateGroupCallConnection.params` a join's result carries.
    #[getter]
    fn connection_params(&self) -> String {
        self.0.connection_params.clone()
    }
}

fn register_tl(m: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg(feature = "testkit")]
    m.add_class::<TlFront>()?;
    m.add_function(wrap_pyfunction!(update_group_call, m)?)?;
    m.add_function(wrap_pyfunction!(update_participants, m)?)?;
    Ok(())
}
