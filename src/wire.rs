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

/// What a participant (or, as a group's external permissions, anyone else) may do: a set of
/// permission bits, as the `flags` word of a participant carries them on the wire.
///
/// Decoded values keep every bit they had (a chain refuses a state with bits outside
/// [`Permissions::ALL`] with `INVALID_BLOCK__INVALID_GROUP_STATE`).
///
/// ```
/// use confchain::Permissions;
/// let p = Permissions::ADD_USERS | Permissions::REMOVE_USERS;
/// assert!(p.contains(Permissions::ADD_USERS));
/// assert!(!p.contains(Permissions::SET_VALUE));
/// assert_eq!(p.bits(), 3);
/// assert_eq!(format!("{p:?}"), "Permissions(add+remove)");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permissions(i32);

impl Permissions {
    /// No permission.
    pub const NONE: Permissions = Permissions(0);
    /// May add users (bit 0; as external permission: users may add themselves).
    pub const ADD_USERS: Permissions = Permissions(1);
    /// May remove users (bit 1).
    pub const REMOVE_USERS: Permissions = Permissions(2);
    /// May set key/value entries (bit 2).
    pub const SET_VALUE: Permissions = Permissions(4);
    /// All three.
    pub const ALL: Permissions = Permissions(7);

    /// The set with exactly these bits, valid or not (as decoded from the wire).
    pub const fn from_bits_retain(bits: i32) -> Self {
        Permissions(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> i32 {
        self.0
    }

    /// Whether every permission of `other` is in `self`.
    pub const fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit outside [`Permissions::ALL`] is set.
    pub const fn is_valid(self) -> bool {
        self.0 & !Permissions::ALL.0 == 0
    }

    /// A short human-readable name such as `add+remove`, `none`, or `add+0x10` for unknown bits.
    pub fn name(self) -> String {
        let mut parts: Vec<String> = [(1, "add"), (2, "remove"), (4, "set_value")]
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| (*n).to_owned())
            .collect();
        if !self.is_valid() {
            parts.push(format!("{:#x}", self.0 & !Permissions::ALL.0));
        }
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join("+")
        }
    }
}

impl std::ops::BitOr for Permissions {
    type Output = Permissions;
    fn bitor(self, rhs: Permissions) -> Permissions {
        Permissions(self.0 | rhs.0)
    }
}

impl std::ops::BitAnd for Permissions {
    type Output = Permissions;
    fn bitand(self, rhs: Permissions) -> Permissions {
        Permissions(self.0 & rhs.0)
    }
}

impl std::fmt::Debug for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Permissions({})", self.name())
    }
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

/// The form of `bytes` if they start with the constructor of a block or broadcast (plain, or
/// server form: plus one); `None` for anything else (a call packet, say).
pub fn form_of(bytes: &[u8]) -> Option<Form> {
    let magic = first_u32(bytes)?;
    if is_plain_magic(magic) {
        Some(Form::Plain)
    } else if is_plain_magic(magic.wrapping_sub(1)) {
        Some(Form::Server)
    } else {
        None
    }
}

fn first_u32(bytes: &[u8]) -> Option<u32> {
    let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(head))
}

/// The two encodings of blocks and broadcasts: what a client sends (plain) and what the server
/// returns (server form: the constructor id plus one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// As built by clients and taken by the API methods.
    Plain,
    /// As returned by getGroupCallChainBlocks and carried by updates.
    Server,
}

/// A decoded block or broadcast (see [`decode_any`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a transient decode result: boxing would allocate per block
pub enum Object {
    /// A participant block.
    Block(Block),
    /// An emoji-verification broadcast.
    Broadcast(Broadcast),
}

/// Decodes a block or a broadcast in either form, and tells which form it was: the one place
/// tools (the CLI's inspect, the C and Python bindings) turn unknown bytes into a typed object.
/// Input that starts with no known constructor (plain or server) fails with a parse error.
///
/// ```
/// use confchain::wire::{decode_any, Form, Object};
/// let err = decode_any(b"\x00\x00\x00\x00").unwrap_err();
/// assert_eq!(err.kind(), confchain::ErrorKind::Parse);
/// ```
pub fn decode_any(bytes: &[u8]) -> Result<(Form, Object)> {
    let magic = first_u32(bytes).ok_or_else(|| Error::new(ErrorKind::Parse, "Block is too short"))?;
    let form = form_of(bytes)
        .ok_or_else(|| Error::new(ErrorKind::Parse, format!("Unknown constructor found 0x{magic:08x} at 0")))?;
    let plain_magic = if form == Form::Server { magic.wrapping_sub(1) } else { magic };
    let object = match (form, plain_magic) {
        (Form::Plain, id::BLOCK) => Object::Block(Block::decode(bytes)?),
        (Form::Server, id::BLOCK) => Object::Block(Block::decode_server(bytes)?),
        (Form::Plain, _) => Object::Broadcast(Broadcast::decode(bytes)?),
        (Form::Server, _) => Object::Broadcast(Broadcast::decode_server(bytes)?),
    };
    Ok((form, object))
}

/// A block or broadcast in server form (its constructor id + 1), as the server returns it in
/// `updateGroupCallChainBlocks` and what [`crate::Call::apply_block`] and
/// [`crate::Call::receive_broadcast`] take (it dereferences to its bytes). Unchecked: the call
/// checks it when it applies it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServerBlock(Vec<u8>);

impl ServerBlock {
    /// Wraps server-form bytes (as the server sent them).
    pub fn new(bytes: Vec<u8>) -> Self {
        ServerBlock(bytes)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for ServerBlock {
    fn from(bytes: Vec<u8>) -> Self {
        ServerBlock(bytes)
    }
}

impl From<&[u8]> for ServerBlock {
    fn from(bytes: &[u8]) -> Self {
        ServerBlock(bytes.to_vec())
    }
}

impl From<ServerBlock> for Vec<u8> {
    fn from(block: ServerBlock) -> Self {
        block.0
    }
}

impl AsRef<[u8]> for ServerBlock {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for ServerBlock {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A block in plain form, as this client builds it for createConferenceCall, joinGroupCall and
/// deleteConferenceCallParticipants. Its own type so that it cannot be mistaken for the server-form
/// bytes that [`crate::Call::apply_block`] takes: the server returns it in server form
/// ([`PlainBlock::to_server_form`] gives those bytes, e.g. for tests and in-memory servers).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PlainBlock(Vec<u8>);

impl PlainBlock {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        PlainBlock(bytes)
    }

    /// Wraps plain-form bytes built elsewhere (stored, or received through a binding), checking
    /// that they decode as a plain-form block.
    pub fn from_plain_bytes(bytes: Vec<u8>) -> Result<Self> {
        Block::decode(&bytes)?;
        Ok(PlainBlock(bytes))
    }

    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes to send, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The same block in server form, as getGroupCallChainBlocks will return it.
    pub fn to_server_form(&self) -> Vec<u8> {
        let magic = first_u32(&self.0).unwrap_or(id::BLOCK);
        with_magic(magic.wrapping_add(1), &self.0)
    }

    /// The decoded block.
    pub fn decode(&self) -> Result<Block> {
        Block::decode(&self.0)
    }
}

impl AsRef<[u8]> for PlainBlock {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for PlainBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlainBlock({} bytes, hash {})", self.0.len(), crate::crypto::hex4(&crate::crypto::sha256(&self.0)))
    }
}

/// Capacity to reserve for `n` decoded elements of at least `min_size` encoded bytes each when
/// `remaining` bytes are left: never more than the input could hold, whatever the count claims.
pub(crate) fn capacity(n: usize, remaining: usize, min_size: usize) -> usize {
    n.min(remaining.checked_div(min_size).unwrap_or(remaining))
}

/// One member of the group: user id, identity key, permissions and protocol version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupParticipant {
    /// Telegram user id.
    pub user_id: i64,
    /// Ed25519 identity key.
    pub public_key: PublicKey,
    /// What the participant may do (the `flags` word on the wire).
    pub flags: Permissions,
    /// The participant's protocol version; the group's is the minimum, clamped to 0..=255.
    pub version: i32,
}

impl GroupParticipant {
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.expect_constructor(id::GROUP_PARTICIPANT)?;
        let user_id = r.i64()?;
        let public_key = PublicKey::from_bytes(r.array()?);
        let flags = Permissions::from_bits_retain(r.flags()? as i32);
        let version = r.i32()?;
        Ok(GroupParticipant { user_id, public_key, flags, version })
    }

    fn encode(&self, w: &mut Writer) {
        w.u32(id::GROUP_PARTICIPANT);
        w.i64(self.user_id);
        w.raw(self.public_key.as_bytes());
        w.i32(self.flags.bits());
        w.i32(self.version);
    }
}

/// The membership of the call: participants in order, and what non-members may do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GroupState {
    /// Participants, in the order the block lists them.
    pub participants: Vec<GroupParticipant>,
    /// Permissions of anyone not in `participants` (bit 0 lets users add themselves).
    pub external_permissions: Permissions,
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
        // A participant is at least 4 + 8 + 32 + 4 + 4 bytes.
        let mut participants = Vec::with_capacity(capacity(n, r.remaining(), 52));
        for _ in 0..n {
            participants.push(GroupParticipant::decode(r)?);
        }
        let external_permissions = Permissions::from_bits_retain(r.i32()?);
        Ok(GroupState { participants, external_permissions })
    }

    fn encode(&self, w: &mut Writer) {
        w.u32(id::GROUP_STATE);
        w.u32(self.participants.len() as u32);
        for p in &self.participants {
            p.encode(w);
        }
        w.i32(self.external_permissions.bits());
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
    pub dest_header: KeyHeaders,
}

/// The per-member key headers of a [`SharedKey`], in one buffer: a block of N members decodes
/// with two allocations instead of N, and each header costs its bytes plus one offset.
///
/// ```
/// use confchain::KeyHeaders;
/// let mut h: KeyHeaders = [&[1u8; 32][..], &[2u8; 3][..]].into_iter().collect();
/// assert_eq!(h.len(), 2);
/// assert_eq!(h.get(1), Some(&[2u8; 3][..]));
/// h.set(0, b"x");
/// assert_eq!(h.iter().collect::<Vec<_>>(), [&b"x"[..], &[2u8; 3][..]]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyHeaders {
    bytes: Vec<u8>,
    /// Where each header ends in `bytes`.
    ends: Vec<usize>,
}

impl KeyHeaders {
    /// No headers, with room for `count` of them and `bytes` bytes in all.
    pub fn with_capacity(count: usize, bytes: usize) -> Self {
        KeyHeaders { bytes: Vec::with_capacity(bytes), ends: Vec::with_capacity(count) }
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`-th header.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let start = match i.checked_sub(1) {
            Some(prev) => *self.ends.get(prev)?,
            None => 0,
        };
        self.bytes.get(start..*self.ends.get(i)?)
    }

    /// The headers in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }

    /// Appends a header.
    pub fn push(&mut self, header: &[u8]) {
        self.bytes.extend_from_slice(header);
        self.ends.push(self.bytes.len());
    }

    /// Replaces the `i`-th header (rebuilding the buffer); false if there is none.
    pub fn set(&mut self, i: usize, header: &[u8]) -> bool {
        if i >= self.len() {
            return false;
        }
        let old = std::mem::take(self);
        for (j, h) in old.iter().enumerate() {
            self.push(if j == i { header } else { h });
        }
        true
    }
}

impl<'a> FromIterator<&'a [u8]> for KeyHeaders {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Self {
        let mut h = KeyHeaders::default();
        for header in iter {
            h.push(header);
        }
        h
    }
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
        let mut dest_user_id = Vec::with_capacity(capacity(n, r.remaining(), 8));
        for _ in 0..n {
            dest_user_id.push(r.i64()?);
        }
        let n = r.vec_len()?;
        // A header is at least 4 bytes (an empty TL string); its bytes are copied as read, into
        // one buffer (at most what remains of the input).
        let mut dest_header = KeyHeaders::with_capacity(capacity(n, r.remaining(), 4), r.remaining());
        for _ in 0..n {
            dest_header.push(r.bytes()?);
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
        for h in self.dest_header.iter() {
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
        let flags = r.flags_within(0b11)?;
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
        Block::decode_canonical(bytes, Form::Plain).map(|(block, _)| block)
    }

    /// Decodes a block in `form`, in place (the server form's constructor is the plain one plus
    /// one), and tells whether `bytes` are exactly its canonical encoding
    /// in that form: minimal `bytes` lengths, zero padding, no flag bits that are ignored. Such
    /// input is accepted either way, as the reference accepts it. The reference signs and hashes the
    /// canonical encoding of what it decoded; when the input already is that encoding, its bytes
    /// can be signed and hashed as they are, with no re-encoding (what `Chain::apply` does).
    ///
    /// ```
    /// use confchain::wire::{Block, Form};
    /// # let block = Block { signature: [0; 64], prev_block_hash: [0; 32], changes: vec![], height: 0,
    /// #     state_proof: Default::default(), signature_public_key: None };
    /// let bytes = block.encode();
    /// assert_eq!(Block::decode_canonical(&bytes, Form::Plain).unwrap(), (block, true));
    /// ```
    pub fn decode_canonical(bytes: &[u8], form: Form) -> Result<(Self, bool)> {
        if bytes.len() > limits::MAX_BLOCK_SIZE {
            return Err(limit("block", bytes.len(), limits::MAX_BLOCK_SIZE));
        }
        let mut r = Reader::new(bytes);
        let magic = r.u32()?.wrapping_sub(u32::from(form == Form::Server));
        if magic != id::BLOCK {
            return Err(Error::new(
                ErrorKind::Parse,
                format!("Expected magic 0x{:08x}, but received 0x{magic:08x}", id::BLOCK),
            ));
        }
        let signature = r.array()?;
        let flags = r.flags_within(1)?;
        let prev_block_hash = r.array()?;
        let n = r.vec_len()?;
        // A change is at least 4 + 32 bytes (a noop); decoded ones may be larger in memory, but
        // each holds no more than its own encoded bytes.
        let mut changes = Vec::with_capacity(capacity(n, r.remaining(), 36));
        for _ in 0..n {
            changes.push(Change::decode(&mut r)?);
        }
        let height = r.i32()?;
        let state_proof = StateProof::decode(&mut r)?;
        let signature_public_key = if flags & 1 != 0 { Some(PublicKey::from_bytes(r.array()?)) } else { None };
        r.finish()?;
        Ok((Block { signature, prev_block_hash, changes, height, state_proof, signature_public_key }, r.is_canonical()))
    }

    /// Decodes a server-form block (what getGroupCallChainBlocks and updates carry).
    pub fn decode_server(bytes: &[u8]) -> Result<Self> {
        Block::decode_server_canonical(bytes).map(|(block, _)| block)
    }

    /// [`Block::decode_server`], telling whether the input is canonical (as
    /// [`Block::decode_canonical`] does).
    pub(crate) fn decode_server_canonical(bytes: &[u8]) -> Result<(Self, bool)> {
        if bytes.len() > limits::MAX_BLOCK_SIZE {
            return Err(limit("block", bytes.len(), limits::MAX_BLOCK_SIZE));
        }
        let magic = first_u32(bytes).ok_or_else(|| Error::new(ErrorKind::Parse, "Block is too short"))?;
        if is_plain_magic(magic) {
            return Err(Error::new(ErrorKind::NotFromServer, "Trying to apply local block, not from server"));
        }
        Block::decode_canonical(bytes, Form::Server)
    }

    /// The canonical plain-form encoding (what a client sends, and what the hash covers).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(&self.signature)
    }

    /// The canonical encoding with the signature zeroed: the message that is signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        self.encode_with(&[0u8; 64])
    }

    /// The signed message of a block from its encoding, in either form, when that encoding is
    /// canonical ([`Block::decode_canonical`] said so): the bytes with the plain constructor and
    /// the signature zeroed, copied instead of re-encoded.
    pub(crate) fn signing_bytes_of(canonical: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(canonical.len());
        out.extend_from_slice(&id::BLOCK.to_le_bytes());
        out.extend_from_slice(&[0; 64]);
        out.extend_from_slice(canonical.get(SIGNATURE_OFFSET + 64..).unwrap_or_default());
        out
    }

    fn encode_with(&self, signature: &[u8; 64]) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.u32(id::BLOCK);
        w.raw(signature);
        w.u32(u32::from(self.signature_public_key.is_some()));
        w.raw(&self.prev_block_hash);
        w.u32(self.changes.len() as u32);
        for c in &self.changes {
            c.encode(&mut w);
        }
        w.i32(self.height);
        self.state_proof.encode(&mut w);
        if let Some(k) = &self.signature_public_key {
            w.raw(k.as_bytes());
        }
        w.into_bytes()
    }

    /// SHA-256 of the canonical encoding.
    pub fn hash(&self) -> [u8; 32] {
        crate::crypto::sha256(&self.encode())
    }
}

/// Size of an encoded broadcast: constructor, signature, user id, height, hash, value.
pub const BROADCAST_SIZE: usize = 4 + 64 + 8 + 4 + 32 + 32;

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

    /// Decodes a server-form broadcast (sub-chain 1 of getGroupCallChainBlocks). Whatever the
    /// input's size, at most one byte more than a broadcast is copied: the parser never reads
    /// further, so the outcome (and error message) is the same as for the whole input.
    pub fn decode_server(bytes: &[u8]) -> Result<Self> {
        let head = bytes.get(..BROADCAST_SIZE + 1).unwrap_or(bytes);
        Broadcast::decode(&from_server_form(head)?)
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
    Error::new(ErrorKind::LimitExceeded, format!("{what} too large: {got} > {max}"))
}
