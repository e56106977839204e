//! Typed protocol messages: participant blocks, their changes, group state, shared keys, state
//! proofs and the emoji-verification broadcasts.
//!
//! ```text
//!  server bytes ──from_server_form──▶ plain bytes ──Block::decode──▶ Block (unverified)
//!                                                                      │ chain::Chain::apply
//!                                                                      ▼
//!                                                                 accepted state
//! ```
//!
//! Decoding follows the reference parser field by field, so a malformed input fails with the same
//! message at the same offset. Encoding is canonical: the block's flags keep only bit 0 and the
//! state proof's only bits 0 and 1, and padding is zero. The block hash and every signature are
//! computed over this canonical encoding, never over the received bytes.

use crate::crypto::PublicKey;
use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::tl::{Reader, Writer};

/// Constructor ids (as the little-endian `u32` written on the wire).
pub mod id {
    /// `e2e.chain.block`
    pub const BLOCK: u32 = 0x639a_3db6;
    /// `e2e.chain.changeNoop`
    pub const CHANGE_NOOP: u32 = 0xdeb4_a41b;
    /// `e2e.chain.changeSetValue`
    pub const CHANGE_SET_VALUE: u32 = 0xfe01_39cc;
    /// `e2e.chain.changeSetGroupState`
    pub const CHANGE_SET_GROUP_STATE: u32 = 0x2cf1_7146;
    /// `e2e.chain.changeSetSharedKey`
    pub const CHANGE_SET_SHARED_KEY: u32 = 0x987a_2158;
    /// `e2e.chain.groupParticipant`
    pub const GROUP_PARTICIPANT: u32 = 0x18f3_971f;
    /// `e2e.chain.groupState`
    pub const GROUP_STATE: u32 = 0x1ddc_7584;
    /// `e2e.chain.sharedKey`
    pub const SHARED_KEY: u32 = 0x8a84_7e7f;
    /// `e2e.chain.stateProof`
    pub const STATE_PROOF: u32 = 0xd6b6_79e6;
    /// `e2e.chain.groupBroadcastNonceCommit`
    pub const NONCE_COMMIT: u32 = 0xd151_2ae7;
    /// `e2e.chain.groupBroadcastNonceReveal`
    pub const NONCE_REVEAL: u32 = 0x83f4_f9d8;
    /// `e2e.callPacket`: the magic inside packet MACs.
    pub const CALL_PACKET: u32 = 0x40a6_bee9;
    /// `e2e.callPacketLargeMsgId`: the magic inside packet signatures.
    pub const CALL_PACKET_LARGE_MSG_ID: u32 = 0x1ce5_6c2d;
}

/// Participant permission bits (the participant's `flags` word).
pub mod permissions {
    /// May add users.
    pub const ADD_USERS: i32 = 1;
    /// May remove users.
    pub const REMOVE_USERS: i32 = 2;
    /// May set key/value entries.
    pub const SET_VALUE: i32 = 4;
    /// All three.
    pub const ALL: i32 = 7;
}

fn is_plain_magic(magic: u32) -> bool {
    matches!(magic, id::BLOCK | id::NONCE_COMMIT | id::NONCE_REVEAL)
}

/// Turns a server-form block or broadcast (constructor id + 1) into plain form, as the reference
/// does: input of fewer than 4 bytes is "too short", a plain id is refused.
pub fn from_server_form(bytes: &[u8]) -> Result<Vec<u8>> {
    let magic = first_u32(bytes).ok_or_else(|| Error::new(ErrorKind::Parse, "Block is too short"))?;
    if is_plain_magic(magic) {
        return Err(Error::new(ErrorKind::NotFromServer, "Trying to apply local block, not from server"));
    }
    Ok(with_magic(magic.wrapping_sub(1), bytes))
}

/// Turns a plain-form block or broadcast into server form (constructor id + 1).
pub fn to_server_form(bytes: &[u8]) -> Result<Vec<u8>> {
    let magic = first_u32(bytes).ok_or_else(|| Error::new(ErrorKind::Parse, "Block is too short"))?;
    Ok(with_magic(magic.wrapping_add(1), bytes))
}

/// `bytes` with its first four bytes replaced by `magic`.
fn with_magic(magic: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(bytes.get(4..).unwrap_or_default());
    out
}

/// Whether `bytes` carries a server-form constructor of a block or broadcast.
pub fn is_server_form(bytes: &[u8]) -> bool {
    first_u32(bytes).is_some_and(|m| is_plain_magic(m.wrapping_sub(1)) && !is_plain_magic(m))
}

fn first_u32(bytes: &[u8]) -> Option<u32> {
    let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(head))
}

/// One member of the group: user id, identity key, permissions and protocol version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupParticipant {
    /// Telegram user id.
    pub user_id: i64,
    /// Ed25519 identity key.
    pub public_key: PublicKey,
    /// Permission bits (see [`permissions`]).
    pub flags: i32,
    /// The participant's protocol version; the group's is the minimum, clamped to 0..=255.
    pub version: i32,
}

impl GroupParticipant {
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.expect_constructor(id::GROUP_PARTICIPANT)?;
        let user_id = r.i64()?;
        let public_key = PublicKey::from_bytes(r.array()?);
        let flags = r.flags()? as i32;
        let version = r.i32()?;
        Ok(GroupParticipant { user_id, public_key, flags, version })
    }

    fn encode(&self, w: &mut Writer) {
        w.u32(id::GROUP_PARTICIPANT);
        w.i64(self.user_id);
        w.raw(self.public_key.as_bytes());
        w.i32(self.flags);
        w.i32(self.version);
    }
}

/// The membership of the call: participants in order, and what non-members may do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GroupState {
    /// Participants, in the order the block lists them.
    pub participants: Vec<GroupParticipant>,
    /// Permissions of anyone not in `participants` (bit 0 lets users add themselves).
    pub external_permissions: i32,
}

impl GroupState {
    /// The group's protocol version: the minimum participant version clamped to 0..=255, 0 when empty.
    pub fn version(&self) -> i32 {
        self.participants.iter().map(|p| p.version).min().unwrap_or(0).clamp(0, 255)
    }

    /// The participant with this user id.
    pub fn participant(&self, user_id: i64) -> Option<&GroupParticipant> {
        self.participants.iter().find(|p| p.user_id == user_id)
    }

    /// The participant with this key.
    pub fn participant_by_key(&self, key: &PublicKey) -> Option<&GroupParticipant> {
        self.participants.iter().find(|p| &p.public_key == key)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.expect_constructor(id::GROUP_STATE)?;
        let n = r.vec_len()?;
        if n > limits::MAX_PARTICIPANTS {
            return Err(limit("participants", n, limits::MAX_PARTICIPANTS));
        }
        let mut participants = Vec::with_capacity(n);
        for _ in 0..n {
            participants.push(GroupParticipant::decode(r)?);
        }
        let external_permissions = r.i32()?;
        Ok(GroupState { participants, external_permissions })
    }

    fn encode(&self, w: &mut Writer) {
        w.u32(id::GROUP_STATE);
        w.u32(self.participants.len() as u32);
        for p in &self.participants {
            p.encode(w);
        }
        w.i32(self.external_permissions);
    }
}

/// The group key, encrypted once and made readable by each participant through a per-member header.
///
/// The all-default value is the reference's "empty" shared key (no key set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SharedKey {
    /// Public half of the ephemeral Ed25519 key used for the per-member shared secrets.
    pub ek: PublicKey,
    /// `encrypt_data(raw_key, one_time_secret)`.
    pub encrypted_shared_key: Vec<u8>,
    /// Who each header is for.
    pub dest_user_id: Vec<i64>,
    /// `encrypt_header(one_time_secret, encrypted_shared_key, shared_secret(ek, member))` per member.
    pub dest_header: Vec<Vec<u8>>,
}

impl SharedKey {
    /// Whether this is the empty shared key (what a group-state change leaves behind).
    pub fn is_empty(&self) -> bool {
        *self == SharedKey::default()
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.expect_constructor(id::SHARED_KEY)?;
        let ek = PublicKey::from_bytes(r.array()?);
        let encrypted_shared_key = r.bytes()?.to_vec();
        let n = r.vec_len()?;
        if n > limits::MAX_PARTICIPANTS {
            return Err(limit("shared key recipients", n, limits::MAX_PARTICIPANTS));
        }
        let mut dest_user_id = Vec::with_capacity(n);
        for _ in 0..n {
            dest_user_id.push(r.i64()?);
        }
        let n = r.vec_len()?;
        if n > limits::MAX_PARTICIPANTS {
            return Err(limit("shared key headers", n, limits::MAX_PARTICIPANTS));
        }
        let mut dest_header = Vec::with_capacity(n);
        for _ in 0..n {
            dest_header.push(r.bytes()?.to_vec());
        }
        Ok(SharedKey { ek, encrypted_shared_key, dest_user_id, dest_header })
    }

    fn encode(&self, w: &mut Writer) {
        w.u32(id::SHARED_KEY);
        w.raw(self.ek.as_bytes());
        w.bytes(&self.encrypted_shared_key);
        w.u32(self.dest_user_id.len() as u32);
        for u in &self.dest_user_id {
            w.i64(*u);
        }
        w.u32(self.dest_header.len() as u32);
        for h in &self.dest_header {
            w.bytes(h);
        }
    }
}

/// One change carried by a block.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// Does nothing; its nonce makes otherwise equal blocks differ.
    Noop {
        /// Random bytes.
        nonce: [u8; 32],
    },
    /// Sets a key/value entry (clients count it but do not check it).
    SetValue {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Replaces the group state (and clears the shared key).
    SetGroupState(GroupState),
    /// Sets the shared key (only when none is set).
    SetSharedKey(SharedKey),
}

impl Change {
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let ctor = r.u32()?;
        Ok(match ctor {
            id::CHANGE_NOOP => Change::Noop { nonce: r.array()? },
            id::CHANGE_SET_VALUE => {
                let key = r.bytes()?.to_vec();
                let value = r.bytes()?.to_vec();
                Change::SetValue { key, value }
            }
            id::CHANGE_SET_GROUP_STATE => Change::SetGroupState(GroupState::decode(r)?),
            id::CHANGE_SET_SHARED_KEY => Change::SetSharedKey(SharedKey::decode(r)?),
            other => return Err(r.error(&format!("Unknown constructor found 0x{other:08x}"))),
        })
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            Change::Noop { nonce } => {
                w.u32(id::CHANGE_NOOP);
                w.raw(nonce);
            }
            Change::SetValue { key, value } => {
                w.u32(id::CHANGE_SET_VALUE);
                w.bytes(key);
                w.bytes(value);
            }
            Change::SetGroupState(state) => {
                w.u32(id::CHANGE_SET_GROUP_STATE);
                state.encode(w);
            }
            Change::SetSharedKey(key) => {
                w.u32(id::CHANGE_SET_SHARED_KEY);
                key.encode(w);
            }
        }
    }
}

/// What a block claims about the state after it: the key/value hash, and the group state and
/// shared key when the block itself does not set them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StateProof {
    /// Hash of the key/value store.
    pub kv_hash: [u8; 32],
    /// The group state, present iff the block has no `SetGroupState`.
    pub group_state: Option<GroupState>,
    /// The shared key, present iff the block has neither `SetGroupState` nor `SetSharedKey`.
    pub shared_key: Option<SharedKey>,
}

impl StateProof {
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.expect_constructor(id::STATE_PROOF)?;
        let flags = r.flags()?;
        let kv_hash = r.array()?;
        let group_state = if flags & 1 != 0 { Some(GroupState::decode(r)?) } else { None };
        let shared_key = if flags & 2 != 0 { Some(SharedKey::decode(r)?) } else { None };
        Ok(StateProof { kv_hash, group_state, shared_key })
    }

    fn encode(&self, w: &mut Writer) {
        w.u32(id::STATE_PROOF);
        let flags = u32::from(self.group_state.is_some()) | u32::from(self.shared_key.is_some()) << 1;
        w.u32(flags);
        w.raw(&self.kv_hash);
        if let Some(s) = &self.group_state {
            s.encode(w);
        }
        if let Some(k) = &self.shared_key {
            k.encode(w);
        }
    }
}

/// A participant block (`e2e.chain.block`), decoded but not yet validated against any chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    /// Ed25519 signature over the canonical encoding with this field zeroed.
    pub signature: [u8; 64],
    /// Hash of the previous block (zeros before the first).
    pub prev_block_hash: [u8; 32],
    /// The changes, applied in order.
    pub changes: Vec<Change>,
    /// Height; the first block has height 0.
    pub height: i32,
    /// The state after this block.
    pub state_proof: StateProof,
    /// The signer's key; when absent the signer is the first participant of the current state.
    pub signature_public_key: Option<PublicKey>,
}

/// Byte offset of the signature inside an encoded block (right after the constructor).
pub const SIGNATURE_OFFSET: usize = 4;

impl Block {
    /// Decodes a plain-form block, exactly as strictly as the reference: the constructor must be
    /// `e2e.chain.block` and nothing may follow the block.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > limits::MAX_BLOCK_SIZE {
            return Err(limit("block size", bytes.len(), limits::MAX_BLOCK_SIZE));
        }
        let mut r = Reader::new(bytes);
        let magic = r.u32()?;
        if magic != id::BLOCK {
            return Err(Error::new(
                ErrorKind::Parse,
                format!("Expected magic 0x{:08x}, but received 0x{magic:08x}", id::BLOCK),
            ));
        }
        let signature = r.array()?;
        let flags = r.flags()?;
        let prev_block_hash = r.array()?;
        let n = r.vec_len()?;
        if n > limits::MAX_CHANGES {
            return Err(limit("changes", n, limits::MAX_CHANGES));
        }
        let mut changes = Vec::with_capacity(n);
        for _ in 0..n {
            changes.push(Change::decode(&mut r)?);
        }
        let height = r.i32()?;
        let state_proof = StateProof::decode(&mut r)?;
        let signature_public_key = if flags & 1 != 0 { Some(PublicKey::from_bytes(r.array()?)) } else { None };
        r.finish()?;
        Ok(Block { signature, prev_block_hash, changes, height, state_proof, signature_public_key })
    }

    /// Decodes a server-form block (what getGroupCallChainBlocks and updates carry).
    pub fn decode_server(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > limits::MAX_BLOCK_SIZE {
            return Err(limit("block size", bytes.len(), limits::MAX_BLOCK_SIZE));
        }
        Block::decode(&from_server_form(bytes)?)
    }

    /// The canonical plain-form encoding (what a client sends, and what the hash covers).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        self.encode_into(&mut w, &self.signature);
        w.into_bytes()
    }

    /// The canonical encoding with the signature zeroed: the message that is signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        self.encode_into(&mut w, &[0u8; 64]);
        w.into_bytes()
    }

    fn encode_into(&self, w: &mut Writer, signature: &[u8; 64]) {
        w.u32(id::BLOCK);
        w.raw(signature);
        w.u32(u32::from(self.signature_public_key.is_some()));
        w.raw(&self.prev_block_hash);
        w.u32(self.changes.len() as u32);
        for c in &self.changes {
            c.encode(w);
        }
        w.i32(self.height);
        self.state_proof.encode(w);
        if let Some(k) = &self.signature_public_key {
            w.raw(k.as_bytes());
        }
    }

    /// SHA-256 of the canonical encoding.
    pub fn hash(&self) -> [u8; 32] {
        crate::crypto::sha256(&self.encode())
    }
}

/// An emoji-verification broadcast (`groupBroadcastNonceCommit` / `groupBroadcastNonceReveal`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Broadcast {
    /// Ed25519 signature over the canonical encoding with this field zeroed.
    pub signature: [u8; 64],
    /// The sender.
    pub user_id: i64,
    /// The block height the broadcast is about.
    pub chain_height: i32,
    /// The block hash the broadcast is about.
    pub chain_hash: [u8; 32],
    /// The commit (SHA-256 of the nonce) or the reveal (the nonce itself).
    pub payload: BroadcastPayload,
}

/// What a broadcast carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BroadcastPayload {
    /// `nonce_hash`: SHA-256 of the nonce to be revealed.
    Commit([u8; 32]),
    /// `nonce`: the nonce itself.
    Reveal([u8; 32]),
}

impl Broadcast {
    /// Decodes a plain-form broadcast.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let magic = r.u32()?;
        if magic != id::NONCE_COMMIT && magic != id::NONCE_REVEAL {
            return Err(r.error(&format!("Unknown constructor found 0x{magic:08x}")));
        }
        let signature = r.array()?;
        let user_id = r.i64()?;
        let chain_height = r.i32()?;
        let chain_hash = r.array()?;
        let value = r.array()?;
        r.finish()?;
        let payload =
            if magic == id::NONCE_COMMIT { BroadcastPayload::Commit(value) } else { BroadcastPayload::Reveal(value) };
        Ok(Broadcast { signature, user_id, chain_height, chain_hash, payload })
    }

    /// Decodes a server-form broadcast (sub-chain 1 of getGroupCallChainBlocks).
    pub fn decode_server(bytes: &[u8]) -> Result<Self> {
        Broadcast::decode(&from_server_form(bytes)?)
    }

    /// The canonical plain-form encoding (what sendConferenceCallBroadcast takes).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(&self.signature)
    }

    /// The canonical encoding with the signature zeroed: the message that is signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        self.encode_with(&[0u8; 64])
    }

    fn encode_with(&self, signature: &[u8; 64]) -> Vec<u8> {
        let mut w = Writer::with_capacity(148);
        let (magic, value) = match &self.payload {
            BroadcastPayload::Commit(v) => (id::NONCE_COMMIT, v),
            BroadcastPayload::Reveal(v) => (id::NONCE_REVEAL, v),
        };
        w.u32(magic);
        w.raw(signature);
        w.i64(self.user_id);
        w.i32(self.chain_height);
        w.raw(&self.chain_hash);
        w.raw(value);
        w.into_bytes()
    }
}

fn limit(what: &str, got: usize, max: usize) -> Error {
    Error::new(ErrorKind::LimitExceeded, format!("too many {what}: {got} > {max}"))
}
