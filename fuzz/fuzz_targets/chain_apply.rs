//! A fixed valid chain, then fuzzed blocks: never panics; a rejected block leaves the state
//! unchanged; an accepted one advances the height by one and keeps the invariants.
#![no_main]

use std::sync::OnceLock;

use confchain::chain::{validate_group_state, validate_shared_key, Chain, UnverifiedTip};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

static FIXTURE: OnceLock<common::Fixture> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let fx = FIXTURE.get_or_init(common::fixture);
    // Starting points: the empty chain, after the first block, after both.
    let mut starts = vec![Chain::empty()];
    let mut c = Chain::empty();
    for b in &fx.blocks {
        c.apply(b).unwrap();
        starts.push(c.clone());
    }
    for start in starts {
        let mut chain = start.clone();
        match chain.apply(data) {
            Err(_) => {
                assert_eq!(chain.height(), start.height());
                assert_eq!(chain.hash(), start.hash());
                assert_eq!(chain.group_state(), start.group_state());
                assert_eq!(chain.shared_key(), start.shared_key());
            }
            Ok(()) => {
                assert_eq!(chain.height(), start.height() + 1);
                validate_group_state(chain.group_state()).unwrap();
                validate_shared_key(chain.shared_key(), chain.group_state()).unwrap();
                // The same block read alone gives the same state.
                let single = UnverifiedTip::from_server_block(data).unwrap();
                assert_eq!(single.hash(), chain.hash());
                assert_eq!(single.group_state(), chain.group_state());
            }
        }
        let _ = UnverifiedTip::from_server_block(data);
    }
});
