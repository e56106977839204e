//! Helpers shared by the integration tests: vector loading, a replaying RNG and a two-member call.
#![allow(dead_code)]

use std::path::PathBuf;

use confchain::{build_zero_block, Call, GroupParticipant, GroupState, Permissions, PrivateKey};
use rand_core::{CryptoRng, CryptoRngCore, RngCore};
use serde_json::Value;

/// The vector directory: `$CONFCHAIN_VECTORS` or the crate's `vectors/`.
pub fn vectors_dir() -> PathBuf {
    match std::env::var_os("CONFCHAIN_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors"),
    }
}

/// Loads `<dir>/<rel>` as JSON; panics (failing the test) when missing.
pub fn load(rel: &str) -> Value {
    let path = vectors_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("missing vector file {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

pub fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

pub fn hex32(v: &Value) -> [u8; 32] {
    hex(v).try_into().expect("32 bytes")
}

/// An RNG that returns exactly the recorded bytes, and fails the test if asked for more.
pub struct ReplayRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl ReplayRng {
    pub fn new(bytes: Vec<u8>) -> Self {
        ReplayRng { bytes, pos: 0 }
    }

    pub fn exhausted(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

impl RngCore for ReplayRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let end = self.pos + dest.len();
        assert!(end <= self.bytes.len(), "replay RNG exhausted: wanted {} more bytes at {}", dest.len(), self.pos);
        dest.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for ReplayRng {}

/// Prints the per-file summary line the conformance suite promises.
pub fn report(file: &str, passed: usize) {
    println!("{file}: {passed} passed");
}

/// Users 1, 2, ... holding `keys`, all with `flags`; closed to self-joins.
pub fn members(keys: &[PrivateKey], flags: Permissions) -> GroupState {
    GroupState {
        participants: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GroupParticipant { user_id: i as i64 + 1, public_key: k.public_key(), flags, version: 0 })
            .collect(),
        external_permissions: Permissions::NONE,
    }
}

/// Add and remove permissions.
pub const ADD_REMOVE: Permissions = Permissions::from_bits_retain(3);

/// A call of two members (user 1 with key `alice_key`, user 2), both with add+remove permission,
/// created by user 1's zero block.
pub struct TwoMembers {
    pub alice_key: PrivateKey,
    pub state: GroupState,
    pub zero: Vec<u8>,
    pub alice: Call,
    pub bob: Call,
}

pub fn two_members(rng: &mut impl CryptoRngCore) -> TwoMembers {
    let (a, b) = (PrivateKey::generate(rng), PrivateKey::generate(rng));
    let state = GroupState {
        participants: vec![
            GroupParticipant { user_id: 1, public_key: a.public_key(), flags: ADD_REMOVE, version: 0 },
            GroupParticipant { user_id: 2, public_key: b.public_key(), flags: ADD_REMOVE, version: 0 },
        ],
        external_permissions: Permissions::NONE,
    };
    let zero = build_zero_block(state.clone(), &a, rng).unwrap().to_server_form();
    let alice = Call::new(1, a.clone(), &zero, rng).unwrap();
    let bob = Call::new(2, b, &zero, rng).unwrap();
    TwoMembers { alice_key: a, state, zero, alice, bob }
}
