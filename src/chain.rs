//! The participant-block chain (sub-chain 0 of a conference call), with the client's rules.
//!
//! ```text
//!  server-form bytes ─▶ Block::decode_server ─▶ Chain::apply_block ─▶ height, hash, GroupState,
//!                                               (all-or-nothing)      SharedKey, group key
//!  GroupState + signer + rng ─▶ Chain::build_* ─▶ plain-form bytes to send
//!
//!  the server's last block ─▶ UnverifiedTip (consistent, verified against nothing)
//!                               ├─▶ build_self_add (a join: the members check it)
//!                               └─▶ Call::from_tip / Call::resync / Chain::trust_tip (trusted, explicitly)
//! ```
//!
//! [`Chain::apply`] checks every rule of SPEC.md §4 and either accepts the block, replacing the
//! state, or returns the reference's error and leaves the chain exactly as it was. The builders run
//! the very same transition on the signer's behalf, so a block the builder returns is one every
//! client accepts, and a change the signer may not make is refused before anything is signed.

use std::sync::Arc;

use rand_core::CryptoRngCore;

use crate::crypto::{self, PrivateKey, PublicKey, Secret};
use crate::error::{Error, ErrorKind, Result};
use crate::wire::{Block, Change, GroupParticipant, GroupState, KeyHeaders, Permissions, PlainBlock, SharedKey, StateProof};

/// The state a block at height 0 is checked against: nobody is a participant and anyone may do
/// anything (so the zero block can set the first group state and its key).
fn genesis_state() -> GroupState {
    GroupState { participants: vec![], external_permissions: Permissions::ALL }
}

/// The "is a participant" mark added to a member's permission bits while validating.
const IS_PARTICIPANT: i32 = 1 << 30;
const ADD: i32 = Permissions::ADD_USERS.bits();
const REMOVE: i32 = Permissions::REMOVE_USERS.bits();
const SET_VALUE: i32 = Permissions::SET_VALUE.bits();
const ALL: i32 = Permissions::ALL.bits();

/// Key/value hash of an empty store (what the first blocks carry in their proof).
pub const EMPTY_KV_HASH: [u8; 32] = [
    0xdf, 0x3f, 0x61, 0x98, 0x04, 0xa9, 0x2f, 0xdb, 0x40, 0x57, 0x19, 0x2d, 0xc4, 0x3d, 0xd7, 0x48, 0xea, 0x77, 0x8a,
    0xdc, 0x52, 0xbc, 0x49, 0x8c, 0xe8, 0x05, 0x24, 0xc0, 0x14, 0xb8, 0x11, 0x19,
];

/// A 32-byte group key (one epoch's key). Zeroized on drop, redacted in `Debug`.
pub type GroupKey = Secret<32>;

/// The accepted state of a participant chain.
///
/// ```
/// use confchain::{build_zero_block, Chain, GroupParticipant, GroupState, Permissions, PrivateKey};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
/// let alice = PrivateKey::generate(&mut rng);
/// let me = GroupParticipant { user_id: 1, public_key: alice.public_key(), flags: Permissions::ALL, version: 0 };
/// let zero = build_zero_block(GroupState { participants: vec![me], external_permissions: Permissions::NONE }, &alice, &mut rng)?;
///
/// let mut chain = Chain::empty();
/// chain.apply(&zero.to_server_form())?;
/// assert_eq!(chain.height(), 0);
/// let key = chain.group_key(1, &alice)?;
/// // The same block again is refused, and the chain is unchanged.
/// let err = chain.apply(&zero.to_server_form()).unwrap_err();
/// assert_eq!(err.code(), Some("INVALID_BLOCK__HEIGHT_MISMATCH"));
/// assert_eq!(chain.group_key(1, &alice)?, key);
/// # Ok::<(), confchain::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Chain {
    height: i32,
    hash: [u8; 32],
    prev_hash: [u8; 32],
    kv_hash: [u8; 32],
    group_state: Arc<GroupState>,
    shared_key: Arc<SharedKey>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::empty()
    }
}

/// The permissions a key holds in a state: its participant flags plus [`IS_PARTICIPANT`], or the
/// state's external permissions.
fn permissions_in(state: &GroupState, key: &PublicKey) -> i32 {
    match state.participant_by_key(key) {
        Some(p) => (p.flags.bits() & ALL) | IS_PARTICIPANT,
        None => state.external_permissions.bits() & ALL,
    }
}

fn may_change_shared_key(perms: i32) -> bool {
    perms & IS_PARTICIPANT != 0 && perms & (ADD | REMOVE) != 0
}

fn no_permissions(what: &str) -> Error {
    Error::new(ErrorKind::NoPermissions, what)
}

/// Structural rules of a group state: flags within bits 0..2, unique user ids and keys.
///
/// Uniqueness is checked by sorting (O(n log n), no hashing of attacker-chosen keys).
pub fn validate_group_state(state: &GroupState) -> Result<()> {
    let bad = |m: &str| Error::new(ErrorKind::InvalidGroupState, m);
    if state.participants.iter().any(|p| !p.flags.is_valid()) {
        return Err(bad("invalid permissions"));
    }
    validate_external_permissions(state)?;
    let mut ids: Vec<i64> = state.participants.iter().map(|p| p.user_id).collect();
    if has_duplicates(&mut ids) {
        return Err(bad("duplicate user_id"));
    }
    let mut keys: Vec<&PublicKey> = state.participants.iter().map(|p| &p.public_key).collect();
    if has_duplicates(&mut keys) {
        return Err(bad("duplicate public_key"));
    }
    Ok(())
}

fn validate_external_permissions(state: &GroupState) -> Result<()> {
    if !state.external_permissions.is_valid() {
        return Err(Error::new(ErrorKind::InvalidGroupState, "invalid external permissions"));
    }
    Ok(())
}

/// Sorts `items` and tells whether two are equal.
fn has_duplicates<T: Ord>(items: &mut [T]) -> bool {
    items.sort_unstable();
    items.windows(2).any(|w| matches!(w, [a, b] if a == b))
}

/// A shared key must name every participant exactly once, with one header each. `state` must be
/// valid ([`validate_group_state`]).
pub fn validate_shared_key(key: &SharedKey, state: &GroupState) -> Result<()> {
    if key.is_empty() {
        return Ok(());
    }
    let bad = |m: &str| Error::new(ErrorKind::InvalidSharedSecret, m);
    if key.dest_user_id.len() != key.dest_header.len() {
        return Err(bad("different number of users and headers"));
    }
    if key.dest_user_id.len() != state.participants.len() {
        return Err(bad("wrong number of users"));
    }
    // Headers in the participants' order (as builders write them): the participants' user ids
    // are distinct (the state was validated), so nothing else needs checking.
    if key.dest_user_id.iter().eq(state.participants.iter().map(|p| &p.user_id)) {
        return Ok(());
    }
    let mut ids = key.dest_user_id.clone();
    if has_duplicates(&mut ids) {
        return Err(bad("duplicate users"));
    }
    if !state.participants.iter().all(|p| ids.binary_search(&p.user_id).is_ok()) {
        return Err(bad("unknown user_id"));
    }
    Ok(())
}

/// Participants as (user_id, key, flags), sorted by identity (user_id, key).
fn by_identity(state: &GroupState) -> Vec<(i64, &PublicKey, i32)> {
    let mut v: Vec<_> = state.participants.iter().map(|p| (p.user_id, &p.public_key, p.flags.bits())).collect();
    v.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    v
}

/// Who may change the group state from `old` to `new`, given the signer's permissions in `old`.
/// Participants are identified by (user_id, public_key); the two sorted lists are walked together.
fn check_group_change(old: &GroupState, new: &GroupState, perms: i32) -> Result<()> {
    // The same participants as before (a re-key): nothing is added, removed or changed, and the
    // list is as valid as when the state it comes from was applied. Linear time, no sorting.
    let unchanged = new.participants == old.participants;
    if unchanged {
        validate_external_permissions(new)?;
    } else {
        validate_group_state(new)?;
    }
    if !old.external_permissions.bits() & new.external_permissions.bits() != 0 {
        return Err(no_permissions("Can't increase external permissions"));
    }
    if unchanged {
        return Ok(());
    }
    let (old_ids, new_ids) = (by_identity(old), by_identity(new));
    let (mut removed, mut added, mut changed, mut granted) = (false, false, false, 0);
    let (mut i, mut j) = (0, 0);
    loop {
        match (old_ids.get(i), new_ids.get(j)) {
            (Some(o), Some(n)) if (o.0, o.1) == (n.0, n.1) => {
                if o.2 != n.2 {
                    changed = true;
                    granted |= n.2 & !o.2;
                }
                i = i.saturating_add(1);
                j = j.saturating_add(1);
            }
            (Some(o), Some(n)) if (o.0, o.1) < (n.0, n.1) => {
                removed = true;
                i = i.saturating_add(1);
            }
            (Some(_), None) => {
                removed = true;
                i = i.saturating_add(1);
            }
            (_, Some(n)) => {
                added = true;
                granted |= n.2;
                j = j.saturating_add(1);
            }
            (None, None) => break,
        }
    }
    let may_add = perms & ADD != 0;
    let may_remove = perms & REMOVE != 0;
    if removed && !may_remove {
        return Err(no_permissions("Can't remove users"));
    }
    if (added && !may_add) || (changed && !(may_add && may_remove)) {
        return Err(no_permissions("Can't add users"));
    }
    if granted & !(perms & ALL) != 0 {
        return Err(no_permissions("Can't give more permissions than we have"));
    }
    Ok(())
}

/// The outcome of running a block's changes over a state.
struct Transition {
    group_state: Arc<GroupState>,
    shared_key: Arc<SharedKey>,
    has_set_value: bool,
    has_group_change: bool,
    has_shared_key_change: bool,
}

/// How strictly `SetValue` changes are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SetValueRule {
    /// Applying: clients count set-value changes but do not check them (the proof carries the
    /// key/value hash).
    Count,
    /// Building: the signer must hold the set-value permission, as the reference's builder demands.
    RequirePermission,
}

/// Runs `changes` in order, signed by `signer`, over (`group_state`, `shared_key`).
fn run_changes(
    mut group_state: Arc<GroupState>,
    mut shared_key: Arc<SharedKey>,
    changes: Vec<Change>,
    signer: &PublicKey,
    set_value: SetValueRule,
) -> Result<Transition> {
    let (mut has_set_value, mut has_group_change, mut has_shared_key_change) = (false, false, false);
    for change in changes {
        match change {
            Change::Noop { .. } => {}
            Change::SetValue { .. } => {
                has_set_value = true;
                if set_value == SetValueRule::RequirePermission
                    && permissions_in(&group_state, signer) & SET_VALUE == 0
                {
                    return Err(no_permissions("Can't set value"));
                }
            }
            Change::SetGroupState(new) => {
                has_group_change = true;
                check_group_change(&group_state, &new, permissions_in(&group_state, signer))?;
                group_state = Arc::new(new);
                if !may_change_shared_key(permissions_in(&group_state, signer)) {
                    return Err(no_permissions("Can't clear shared key"));
                }
                shared_key = Arc::new(SharedKey::default());
            }
            Change::SetSharedKey(key) => {
                has_shared_key_change = true;
                if !shared_key.is_empty() {
                    return Err(Error::new(ErrorKind::SharedKeyAlreadySet, "Shared key is already set"));
                }
                if !may_change_shared_key(permissions_in(&group_state, signer)) {
                    return Err(no_permissions("Can't set shared key"));
                }
                validate_shared_key(&key, &group_state)?;
                shared_key = Arc::new(key);
            }
        }
    }
    Ok(Transition { group_state, shared_key, has_set_value, has_group_change, has_shared_key_change })
}

/// Whether [`check_proof`] re-checks the final state's structure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FinalCheck {
    /// The state came from the block alone (a chain started from one block): check it.
    Revalidate,
    /// The state came from running the changes, each checked as it was applied: the reference's
    /// final re-check cannot fail and is skipped.
    AlreadyChecked,
}

/// Checks a state proof against the state a block produced.
fn check_proof(t: &Transition, proof: &StateProof, final_check: FinalCheck) -> Result<()> {
    let group = |m: &str| Error::new(ErrorKind::InvalidStateProofGroup, m);
    let secret = |m: &str| Error::new(ErrorKind::InvalidStateProofSecret, m);
    if !t.has_group_change && !t.has_set_value {
        return Err(Error::new(ErrorKind::NoChanges, "There must be at least SetValue or SetGroupState changes"));
    }
    match (&proof.group_state, t.has_group_change) {
        (Some(_), true) => return Err(group("Group state must be omitted when there is a group state change")),
        (None, false) => return Err(group("Group state must be provided when there is no group state change")),
        (Some(s), false) if *s != *t.group_state => return Err(group("group state differs")),
        _ => {}
    }
    let key_omitted = t.has_group_change || t.has_shared_key_change;
    match (&proof.shared_key, key_omitted) {
        (Some(_), true) => return Err(secret("Shared key state must be omitted")),
        (None, false) => return Err(secret("Shared key state must be provided")),
        (Some(k), false) if *k != *t.shared_key => return Err(secret("shared key state differs")),
        _ => {}
    }
    if final_check == FinalCheck::Revalidate {
        validate_group_state(&t.group_state)?;
        validate_shared_key(&t.shared_key, &t.group_state)?;
    }
    Ok(())
}

impl Chain {
    /// A chain before its first block: height -1, hash all zeros, no participants.
    pub fn empty() -> Self {
        Chain {
            height: -1,
            hash: [0; 32],
            prev_hash: [0; 32],
            kv_hash: EMPTY_KV_HASH,
            group_state: Arc::new(GroupState::default()),
            shared_key: Arc::new(SharedKey::default()),
        }
    }

    /// Adopts a tip the server handed out as accepted state, **without verifying it**: what
    /// [`Call::new`](crate::Call::new) does for the block a call starts from. Use it only where
    /// trusting the server's word is the explicit decision (starting to follow a chain, e.g.
    /// replaying a dump that begins mid-chain); to follow a chain, [`Chain::apply`] every block.
    pub fn trust_tip(tip: UnverifiedTip) -> Self {
        tip.chain
    }

    /// Applies a server-form block (as getGroupCallChainBlocks and updates deliver it).
    /// On error the chain is unchanged.
    pub fn apply(&mut self, server_bytes: &[u8]) -> Result<()> {
        let (block, canonical) = Block::decode_server_canonical(server_bytes)?;
        // What the signature covers and the hash is taken of is the block's canonical encoding:
        // the received bytes themselves when they are canonical (as every client writes them).
        self.apply_signed(block, |block| {
            if canonical {
                Block::signing_bytes_of(server_bytes)
            } else {
                block.signing_bytes()
            }
        })
    }

    /// Applies a decoded block with every client rule. On error the chain is unchanged.
    pub fn apply_block(&mut self, block: Block) -> Result<()> {
        self.apply_signed(block, Block::signing_bytes)
    }

    /// [`Chain::apply_block`], with the block's signed message made by `signing_bytes` once the
    /// cheap checks have passed.
    fn apply_signed(&mut self, block: Block, signing_bytes: impl FnOnce(&Block) -> Vec<u8>) -> Result<()> {
        if self.height.checked_add(1) != Some(block.height) {
            return Err(Error::new(
                ErrorKind::HeightMismatch,
                format!("new_block.height={} != 1 + last_block.height={}", block.height, self.height),
            ));
        }
        if block.prev_block_hash != self.hash {
            return Err(Error::bare(ErrorKind::HashMismatch));
        }
        let group_state = self.state_under(block.height);
        let signer = match (&block.signature_public_key, group_state.participants.first()) {
            (Some(k), _) => *k,
            (None, Some(first)) => first.public_key,
            (None, None) => return Err(Error::new(ErrorKind::UnknownPublicKey, "Unknown public key")),
        };
        let mut bytes = signing_bytes(&block);
        debug_assert_eq!(bytes, block.signing_bytes(), "signed message of {block:?}");
        signer.verify(&bytes, &block.signature).map_err(|e| Error::new(ErrorKind::InvalidSignature, e.message()))?;
        let Block { signature, prev_block_hash, changes, height, state_proof, .. } = block;
        let t = run_changes(group_state, self.shared_key.clone(), changes, &signer, SetValueRule::Count)?;
        check_proof(&t, &state_proof, FinalCheck::AlreadyChecked)?;
        // Accepted: nothing can fail from here on.
        set_signature(&mut bytes, &signature);
        self.prev_hash = prev_block_hash;
        self.hash = crypto::sha256(&bytes);
        self.height = height;
        self.kv_hash = state_proof.kv_hash;
        self.group_state = t.group_state;
        self.shared_key = t.shared_key;
        Ok(())
    }

    /// Height of the next block; none after `i32::MAX`.
    fn next_height(&self) -> Result<i32> {
        self.height.checked_add(1).ok_or_else(|| Error::new(ErrorKind::InvalidInput, "last block height is too high"))
    }

    /// The state a block at `height` (the next one) is checked against.
    fn state_under(&self, height: i32) -> Arc<GroupState> {
        if height == 0 {
            Arc::new(genesis_state())
        } else {
            self.group_state.clone()
        }
    }

    /// Height of the last applied block (-1 before the first).
    pub fn height(&self) -> i32 {
        self.height
    }

    /// Hash of the last applied block (zeros before the first).
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// Hash of the block before the last one.
    pub fn prev_hash(&self) -> &[u8; 32] {
        &self.prev_hash
    }

    /// The key/value hash the last block committed to.
    pub fn kv_hash(&self) -> &[u8; 32] {
        &self.kv_hash
    }

    /// The current group state.
    pub fn group_state(&self) -> &GroupState {
        &self.group_state
    }

    /// Shared handle to the current group state (cheap to keep per epoch).
    pub fn group_state_arc(&self) -> Arc<GroupState> {
        self.group_state.clone()
    }

    /// The current shared key (empty after a group change until a key is set).
    pub fn shared_key(&self) -> &SharedKey {
        &self.shared_key
    }

    /// The current participants.
    pub fn participants(&self) -> &[GroupParticipant] {
        &self.group_state.participants
    }

    /// The group's protocol version (min participant version, clamped to 0..=255).
    pub fn group_version(&self) -> i32 {
        self.group_state.version()
    }

    /// The permissions `key` holds now, and whether it is a participant.
    pub fn permissions_of(&self, key: &PublicKey) -> (Permissions, bool) {
        let p = permissions_in(&self.group_state, key);
        (Permissions::from_bits_retain(p & ALL), p & IS_PARTICIPANT != 0)
    }

    /// The group key of the current block for the participant `user_id` holding `private_key`:
    /// the raw shared key, or for group version >= 1 `HMAC-SHA512(raw, block_hash)[0..32]`.
    pub fn group_key(&self, user_id: i64, private_key: &PrivateKey) -> Result<GroupKey> {
        let me = self
            .group_state
            .participant_by_key(&private_key.public_key())
            .ok_or_else(|| Error::bare(ErrorKind::NotParticipant))?;
        if me.user_id != user_id {
            return Err(Error::bare(ErrorKind::WrongUserId));
        }
        let raw = decrypt_shared_key(&self.shared_key, user_id, private_key)?;
        if self.group_version() >= 1 {
            return Ok(crypto::hmac_sha512(raw.expose(), &[&self.hash]).first_half());
        }
        Ok(raw)
    }

    /// Builds and signs a block with the given changes on top of this chain. The changes are run
    /// exactly as [`Chain::apply_block`] would run them, so a signer without the needed permissions
    /// is refused here. Returns the plain-form bytes (what the API methods take).
    pub fn build_block(&self, changes: Vec<Change>, signer: &PrivateKey) -> Result<PlainBlock> {
        self.build_block_with_kv(changes, signer, self.kv_hash)
    }

    /// [`Chain::build_block`] with an explicit key/value hash for the proof (set-value blocks: the
    /// client does not hold the key/value store, only its hash; see SPEC.md).
    pub fn build_block_with_kv(
        &self,
        changes: Vec<Change>,
        signer: &PrivateKey,
        kv_hash: [u8; 32],
    ) -> Result<PlainBlock> {
        let height = self.next_height()?;
        let group_state = self.state_under(height);
        let public_key = signer.public_key();
        let t = run_changes(
            group_state,
            self.shared_key.clone(),
            changes.clone(),
            &public_key,
            SetValueRule::RequirePermission,
        )?;
        let state_proof = StateProof {
            kv_hash,
            group_state: (!t.has_group_change).then(|| (*t.group_state).clone()),
            shared_key: (!t.has_group_change && !t.has_shared_key_change).then(|| (*t.shared_key).clone()),
        };
        check_proof(&t, &state_proof, FinalCheck::AlreadyChecked)?;
        let mut block = Block {
            signature: [0; 64],
            prev_block_hash: self.hash,
            changes,
            height,
            state_proof,
            signature_public_key: Some(public_key),
        };
        let mut bytes = block.signing_bytes();
        block.signature = signer.sign(&bytes);
        set_signature(&mut bytes, &block.signature);
        Ok(PlainBlock::new(bytes))
    }

    /// A block that sets `new_state` with a fresh shared key for all its participants: adding or
    /// removing members (deleteConferenceCallParticipants), permission changes, or a plain re-key
    /// (the same state again). Draws from `rng` in the reference's order (SPEC.md §4.5).
    ///
    /// As in the reference, the key headers are computed before the block's rules are checked: a
    /// participant key with no shared secret fails with [`ErrorKind::SharedSecret`] even for a
    /// signer without the rights, who otherwise gets `INVALID_BLOCK__NO_PERMISSIONS`.
    pub fn build_change_state(
        &self,
        new_state: GroupState,
        signer: &PrivateKey,
        rng: &mut impl CryptoRngCore,
    ) -> Result<PlainBlock> {
        // Key headers first, then the rules, as the reference does (tde2e's
        // Call::build_change_state computes a shared secret with every participant's key, then
        // Blockchain::build_block checks permissions): a participant key with no shared secret
        // (the identity, an order-2 point) fails with SHARED_SECRET whoever signs, and a signer
        // without the rights gets INVALID_BLOCK__NO_PERMISSIONS only over keys that have one.
        let changes = shared_key_changes(new_state, rng)?;
        self.build_block(changes, signer)
    }

    /// The block joinGroupCall sends: the current state with `me` appended (replacing an older
    /// entry with the same user id), and a fresh shared key.
    pub fn build_self_add(
        &self,
        me: GroupParticipant,
        signer: &PrivateKey,
        rng: &mut impl CryptoRngCore,
    ) -> Result<PlainBlock> {
        let mut state = (*self.group_state).clone();
        state.participants.retain(|p| p.user_id != me.user_id);
        state.participants.push(me);
        self.build_change_state(state, signer, rng)
    }

    /// A block with a single `SetValue` change, given the key/value hash after it.
    pub fn build_set_value(
        &self,
        key: &[u8],
        value: &[u8],
        new_kv_hash: [u8; 32],
        signer: &PrivateKey,
    ) -> Result<PlainBlock> {
        let change = Change::SetValue { key: key.to_vec(), value: value.to_vec() };
        self.build_block_with_kv(vec![change], signer, new_kv_hash)
    }
}

/// The last block of a call's chain as the server hands it out (getGroupCallChainBlocks with
/// offset -1, the block joinGroupCall returns): decoded and checked for internal consistency
/// (SPEC.md §4.3: a non-negative height, a group state and shared key that its changes or its
/// proof give, a proof that matches them, a valid state and key), but **verified against no
/// history**. Its signature cannot be checked, because the state it was built on is unknown: it
/// is the server's word for what the call's state is.
///
/// Every first join trusts that word (tdlib's `Call::create` and `create_self_add_block` do the
/// same): there is nothing else to start from. A member that already follows the chain has
/// something better, its own verified state, and takes the next blocks only through the rules
/// ([`Chain::apply`], [`Call::apply_block`](crate::Call::apply_block)). So this type is kept
/// apart from [`Chain`], the accepted state, as openmls keeps a `VerifiableGroupInfo` apart from a
/// verified group: only the entry points that trust the server by design take it,
/// [`Call::from_tip`](crate::Call::from_tip) (and [`Call::new`](crate::Call::new), which decodes
/// one), [`Call::resync`](crate::Call::resync) (reported as
/// [`CallEvent::TipAdopted`](crate::CallEvent::TipAdopted), never as a verified block) and
/// [`Chain::trust_tip`]. What it can safely do on its own is describe the state and build the
/// block that joins it ([`UnverifiedTip::build_self_add`]): that block is checked by the server
/// and by every member against their own chain, so a forged tip only makes the join fail.
///
/// ```
/// use confchain::{build_zero_block, GroupParticipant, GroupState, Permissions, PrivateKey, UnverifiedTip};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
/// let (alice, bob) = (PrivateKey::generate(&mut rng), PrivateKey::generate(&mut rng));
/// let member = |id, key: &PrivateKey| GroupParticipant { user_id: id, public_key: key.public_key(), flags: Permissions::ALL, version: 0 };
/// let zero = build_zero_block(GroupState { participants: vec![member(1, &alice)], external_permissions: Permissions::ALL }, &alice, &mut rng)?;
///
/// // The server's tip: what a join builds on.
/// let tip = UnverifiedTip::from_server_block(&zero.to_server_form())?;
/// assert_eq!((tip.height(), tip.participants().len()), (0, 1));
/// let join = tip.build_self_add(member(2, &bob), &bob, &mut rng)?;
/// # let _ = join;
/// # Ok::<(), confchain::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct UnverifiedTip {
    block: Block,
    chain: Chain,
}

impl UnverifiedTip {
    /// Decodes a server-form block (the last block getGroupCallChainBlocks returns) and checks it
    /// for internal consistency. Nothing is verified against a history (see the type).
    pub fn from_server_block(bytes: &[u8]) -> Result<Self> {
        UnverifiedTip::from_block(Block::decode_server(bytes)?)
    }

    /// [`UnverifiedTip::from_server_block`] for a block already decoded.
    pub fn from_block(block: Block) -> Result<Self> {
        let chain = chain_from_block(&block)?;
        Ok(UnverifiedTip { block, chain })
    }

    /// The block itself.
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// Its height.
    pub fn height(&self) -> i32 {
        self.chain.height
    }

    /// Its hash (SHA-256 of its canonical encoding).
    pub fn hash(&self) -> &[u8; 32] {
        &self.chain.hash
    }

    /// The hash of the block it claims to follow.
    pub fn prev_hash(&self) -> &[u8; 32] {
        &self.chain.prev_hash
    }

    /// The key/value hash it commits to.
    pub fn kv_hash(&self) -> &[u8; 32] {
        &self.chain.kv_hash
    }

    /// The group state it claims.
    pub fn group_state(&self) -> &GroupState {
        &self.chain.group_state
    }

    /// The shared key it claims.
    pub fn shared_key(&self) -> &SharedKey {
        &self.chain.shared_key
    }

    /// The participants it claims.
    pub fn participants(&self) -> &[GroupParticipant] {
        self.chain.participants()
    }

    /// The group's protocol version in the state it claims.
    pub fn group_version(&self) -> i32 {
        self.chain.group_version()
    }

    /// The block joinGroupCall sends: this state with `me` appended (replacing an older entry
    /// with the same user id), and a fresh shared key ([`Chain::build_self_add`]). Safe on an
    /// unverified tip: the block is checked by the server and by every member.
    pub fn build_self_add(
        &self,
        me: GroupParticipant,
        signer: &PrivateKey,
        rng: &mut impl CryptoRngCore,
    ) -> Result<PlainBlock> {
        self.chain.build_self_add(me, signer, rng)
    }

    /// The adopted state and the block (for [`Call::resync`](crate::Call::resync)).
    pub(crate) fn into_parts(self) -> (Chain, Block) {
        (self.chain, self.block)
    }
}

/// The state a single block leads to, from its changes and its proof (SPEC.md §4.3). Its signature
/// cannot be checked (the previous state is unknown); the block must be internally consistent.
fn chain_from_block(block: &Block) -> Result<Chain> {
    if block.height < 0 {
        return Err(Error::new(ErrorKind::InvalidBlock, "negative height"));
    }
    let mut group_state = (block.height == 0).then(genesis_state);
    let mut shared_key = None;
    let (mut has_set_value, mut has_group_change, mut has_shared_key_change) = (false, false, false);
    for change in &block.changes {
        match change {
            Change::Noop { .. } => {}
            Change::SetValue { .. } => has_set_value = true,
            Change::SetGroupState(s) => {
                group_state = Some(s.clone());
                shared_key = Some(SharedKey::default());
                has_group_change = true;
            }
            Change::SetSharedKey(k) => {
                shared_key = Some(k.clone());
                has_shared_key_change = true;
            }
        }
    }
    if let Some(s) = &block.state_proof.group_state {
        group_state = Some(s.clone());
    }
    if let Some(k) = &block.state_proof.shared_key {
        shared_key = Some(k.clone());
    }
    let group_state =
        group_state.ok_or_else(|| Error::new(ErrorKind::InvalidStateProofGroup, "no group state proof"))?;
    let shared_key = shared_key.ok_or_else(|| Error::new(ErrorKind::InvalidStateProofSecret, "no shared key"))?;
    let t = Transition {
        group_state: Arc::new(group_state),
        shared_key: Arc::new(shared_key),
        has_set_value,
        has_group_change,
        has_shared_key_change,
    };
    check_proof(&t, &block.state_proof, FinalCheck::Revalidate)?;
    Ok(Chain {
        height: block.height,
        hash: block.hash(),
        prev_hash: block.prev_block_hash,
        kv_hash: block.state_proof.kv_hash,
        group_state: t.group_state,
        shared_key: t.shared_key,
    })
}

/// Writes `signature` into an encoded block (whose signature field was zeroed for signing).
fn set_signature(encoded: &mut [u8], signature: &[u8; 64]) {
    let at = crate::wire::SIGNATURE_OFFSET;
    if let Some(field) = encoded.get_mut(at..at + 64) {
        field.copy_from_slice(signature);
    }
}

/// The zero block (what createConferenceCall sends): `state` with a fresh shared key, signed by
/// `signer`, on top of the empty chain.
pub fn build_zero_block(state: GroupState, signer: &PrivateKey, rng: &mut impl CryptoRngCore) -> Result<PlainBlock> {
    Chain::empty().build_change_state(state, signer, rng)
}

/// Groups at least this large build their key headers in parallel (feature `parallel`).
#[cfg(feature = "parallel")]
const PARALLEL_THRESHOLD: usize = 8;

/// The two changes that install `state` with a fresh group key: `SetGroupState(state)` then
/// `SetSharedKey`. Draws, in order: the 32-byte seed of the ephemeral key, the 32-byte raw group
/// key, the 32-byte one-time secret, then the 16 prefix bytes of `encrypt_data`.
pub fn shared_key_changes(state: GroupState, rng: &mut impl CryptoRngCore) -> Result<Vec<Change>> {
    let ek = PrivateKey::generate(rng);
    let raw_key = Secret::<32>::random(rng);
    let one_time = Secret::<32>::random(rng);
    let (encrypted_shared_key, _) = crypto::encrypt_data(raw_key.expose(), one_time.expose(), &[], rng)?;
    // One X25519 per member dominates the cost of a block; with the `parallel` feature large
    // groups spread it over all cores (the RNG draws above are unaffected).
    let header = |p: &GroupParticipant| -> Result<[u8; 32]> {
        let secret = ek.shared_secret(&p.public_key).map_err(|e| e.with_participant(p.user_id))?;
        crypto::encrypt_header(one_time.expose(), &encrypted_shared_key, secret.expose())
    };
    #[cfg(feature = "parallel")]
    let dest_header: Vec<[u8; 32]> = {
        use rayon::prelude::*;
        if state.participants.len() >= PARALLEL_THRESHOLD {
            // Collected in order before looking for errors, so that the error is the first
            // participant's, as in the sequential path (and the reference).
            let headers: Vec<Result<[u8; 32]>> = state.participants.par_iter().map(header).collect();
            headers.into_iter().collect::<Result<_>>()?
        } else {
            state.participants.iter().map(header).collect::<Result<_>>()?
        }
    };
    #[cfg(not(feature = "parallel"))]
    let dest_header: Vec<[u8; 32]> = state.participants.iter().map(header).collect::<Result<_>>()?;
    let dest_header: KeyHeaders = dest_header.iter().map(|h| &h[..]).collect();
    let dest_user_id: Vec<i64> = state.participants.iter().map(|p| p.user_id).collect();
    let key = SharedKey { ek: ek.public_key(), encrypted_shared_key, dest_user_id, dest_header };
    Ok(vec![Change::SetGroupState(state), Change::SetSharedKey(key)])
}

/// Recovers the raw 32-byte group key from a shared key for `user_id`.
pub fn decrypt_shared_key(key: &SharedKey, user_id: i64, private_key: &PrivateKey) -> Result<GroupKey> {
    let i = key
        .dest_user_id
        .iter()
        .position(|u| *u == user_id)
        .ok_or_else(|| Error::new(ErrorKind::InvalidSharedKey, "Could not find user_id in group_shared_key"))?;
    let header = key.dest_header.get(i).ok_or_else(|| Error::new(ErrorKind::InvalidSharedKey, "missing header"))?;
    let secret = private_key.shared_secret(&key.ek)?;
    let one_time = crypto::decrypt_header(header, &key.encrypted_shared_key, secret.expose())?;
    let (raw, _) = crypto::decrypt_data(&key.encrypted_shared_key, one_time.expose(), &[])?;
    let raw = zeroize::Zeroizing::new(raw);
    GroupKey::from_slice(&raw).ok_or_else(|| Error::new(ErrorKind::InvalidSharedKey, "Invalid shared key (size != 32)"))
}
