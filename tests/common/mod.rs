//! Helpers shared by the integration tests: vector loading and a replaying RNG.
#![allow(dead_code)]

use std::path::PathBuf;

use rand_core::{CryptoRng, RngCore};
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
