//! Fuzzed broadcasts (raw bytes, and mutations of valid commits) into a call: never panics, and a
//! refused broadcast does not change the verification state.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

static FIXTURE: OnceLock<common::Fixture> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let fx = FIXTURE.get_or_init(common::fixture);
    let mut bob = fx.bob.clone();
    let phase = bob.verification_phase();
    if bob.receive_broadcast(data).is_err() {
        assert_eq!(bob.verification_phase(), phase);
    }
    // Structure-aware: a valid commit with the input XORed over it.
    if let Some(first) = data.first() {
        let mut b = fx.broadcasts[*first as usize % fx.broadcasts.len()].clone();
        for (i, x) in data.iter().skip(1).enumerate() {
            if let Some(byte) = b.get_mut(i) {
                *byte ^= x;
            }
        }
        let mut bob = fx.bob.clone();
        let _ = bob.receive_broadcast(&b);
        for valid in &fx.broadcasts {
            let _ = bob.receive_broadcast(valid);
        }
        let _ = bob.poll_outbound();
    }
});
