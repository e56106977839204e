//! Python module of confchain (`import confchain`), built with pyo3 and maturin.
//!
//! Errors raise `confchain.ConfchainError` with `code` (the reference's number, e.g. 204), `name`
//! (`INVALID_BLOCK__HEIGHT_MISMATCH`, or confchain's kind name for codeless errors) and `message`.

use engine::chain::{build_zero_block, Chain};
use engine::wire::{self, GroupParticipant, GroupState};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

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
#[pyclass(module = "confchain")]
struct Rng(ChaCha20Rng);

#[pymethods]
impl Rng {
    #[new]
    fn new(seed: &[u8]) -> PyResult<Self> {
        let seed: [u8; 32] =
            seed.try_into().map_err(|_| pyo3::exceptions::PyValueError::new_err("seed must be 32 bytes"))?;
        Ok(Rng(ChaCha20Rng::from_seed(seed)))
    }
}

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
            flags: self.flags,
            version: self.version,
        })
    }

    fn from_core(p: &GroupParticipant) -> Self {
        Participant {
            user_id: p.user_id,
            public_key: p.public_key.as_bytes().to_vec(),
            flags: p.flags,
            version: p.version,
        }
    }
}

fn state(participants: Vec<Participant>, external_permissions: i32) -> PyResult<GroupState> {
    Ok(GroupState {
        participants: participants.iter().map(Participant::to_core).collect::<PyResult<_>>()?,
        external_permissions,
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
        let plain = if wire::is_server_form(data) { wire::from_server_form(data).map_err(err)? } else { data.to_vec() };
        engine::Block::decode(&plain).map(Block).map_err(err)
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
        let chain = Chain::from_block(self.0.clone()).map_err(err)?;
        Ok(chain.participants().iter().map(Participant::from_core).collect())
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
    Ok(bytes(py, &wire::to_server_form(data).map_err(err)?))
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
    let block = build_zero_block(state(participants, external_permissions)?, &key.0, &mut rng.0).map_err(err)?;
    Ok(bytes(py, &block))
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
    let chain = Chain::from_server_block(last_block).map_err(err)?;
    let block = chain.build_self_add(me.to_core()?, &key.0, &mut rng.0).map_err(err)?;
    Ok(bytes(py, &block))
}

/// One participant's conference call.
#[pyclass(module = "confchain")]
struct Call(engine::Call);

#[pymethods]
impl Call {
    /// Creates the call from the last block (server form).
    #[new]
    fn new(user_id: i64, key: &PrivateKey, last_block: &[u8], rng: &mut Rng) -> PyResult<Self> {
        engine::Call::new(user_id, key.0.clone(), last_block, &mut rng.0).map(Call).map_err(err)
    }

    /// Applies the next block (server form); on error the call is unchanged.
    fn apply_block(&mut self, block: &[u8], now_ms: u64, rng: &mut Rng) -> PyResult<()> {
        self.0.apply_block(block, now_ms, &mut rng.0).map_err(err)
    }

    /// Encrypts a packet; `data[:clear_prefix_len]` stays in clear.
    #[pyo3(signature = (channel, data, now_ms, rng, clear_prefix_len = 0))]
    fn encrypt<'py>(
        &mut self,
        py: Python<'py>,
        channel: i32,
        data: &[u8],
        now_ms: u64,
        rng: &mut Rng,
        clear_prefix_len: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let p = self.0.encrypt(channel, data, clear_prefix_len, now_ms, &mut rng.0).map_err(err)?;
        Ok(bytes(py, &p))
    }

    /// Decrypts a packet from `user_id`.
    fn decrypt<'py>(
        &mut self,
        py: Python<'py>,
        user_id: i64,
        channel: i32,
        packet: &[u8],
        now_ms: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(bytes(py, &self.0.decrypt(user_id, channel, packet, now_ms).map_err(err)?))
    }

    /// Encrypts a sendGroupCallEncryptedMessage payload (JSON text).
    fn encrypt_message<'py>(
        &mut self,
        py: Python<'py>,
        json: &str,
        now_ms: u64,
        rng: &mut Rng,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(bytes(py, &self.0.encrypt_message(json, now_ms, &mut rng.0).map_err(err)?))
    }

    /// Decrypts an encrypted message into its JSON text.
    fn decrypt_message(&mut self, user_id: i64, message: &[u8], now_ms: u64) -> PyResult<String> {
        self.0.decrypt_message(user_id, message, now_ms).map_err(err)
    }

    /// Broadcasts to send with sendConferenceCallBroadcast (plain form).
    fn pull_outbound<'py>(&mut self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.0.poll_outbound().iter().map(|b| bytes(py, b)).collect()
    }

    /// Takes a broadcast (server form).
    fn receive_broadcast(&mut self, message: &[u8]) -> PyResult<()> {
        self.0.receive_broadcast(message).map_err(err)
    }

    /// A block setting a new state with a fresh key.
    fn build_change_state<'py>(
        &self,
        py: Python<'py>,
        participants: Vec<Participant>,
        external_permissions: i32,
        rng: &mut Rng,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let block = self.0.build_change_state(state(participants, external_permissions)?, &mut rng.0).map_err(err)?;
        Ok(bytes(py, &block))
    }

    /// A block removing the given users.
    fn build_remove<'py>(&self, py: Python<'py>, user_ids: Vec<i64>, rng: &mut Rng) -> PyResult<Bound<'py, PyBytes>> {
        Ok(bytes(py, &self.0.build_remove(&user_ids, &mut rng.0).map_err(err)?))
    }

    /// A block re-keying the group.
    fn build_rekey<'py>(&self, py: Python<'py>, rng: &mut Rng) -> PyResult<Bound<'py, PyBytes>> {
        Ok(bytes(py, &self.0.build_rekey(&mut rng.0).map_err(err)?))
    }

    /// Drops epochs whose grace period ended.
    fn handle_timeout(&mut self, now_ms: u64) {
        self.0.handle_timeout(now_ms)
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

#[pymodule]
fn _confchain(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ConfchainError", m.py().get_type::<ConfchainError>())?;
    m.add_class::<Rng>()?;
    m.add_class::<PrivateKey>()?;
    m.add_class::<Participant>()?;
    m.add_class::<Block>()?;
    m.add_class::<Call>()?;
    m.add_function(wrap_pyfunction!(to_server_form, m)?)?;
    m.add_function(wrap_pyfunction!(create_zero_block, m)?)?;
    m.add_function(wrap_pyfunction!(create_self_add_block, m)?)?;
    Ok(())
}
