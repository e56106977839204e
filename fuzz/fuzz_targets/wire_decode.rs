//! Any bytes: decode as a block, a broadcast (plain and server form) and a packet. Whatever
//! decodes must re-encode canonically and decode again to the same value, and be reported as
//! canonical exactly when it is its own re-encoding.
#![no_main]

use confchain::wire::{Block, Broadcast, Form};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((block, canonical)) = Block::decode_canonical(data, Form::Plain) {
        assert_eq!(canonical, block.encode() == data);
        let again = Block::decode(&block.encode()).expect("canonical encoding decodes");
        assert_eq!(again, block);
        assert_eq!(again.encode(), block.encode());
    }
    if let Ok(block) = Block::decode_server(data) {
        assert_eq!(Block::decode(&block.encode()).expect("decodes"), block);
    }
    for b in [Broadcast::decode(data), Broadcast::decode_server(data)].into_iter().flatten() {
        assert_eq!(Broadcast::decode(&b.encode()).expect("decodes"), b);
    }
    if let Ok(p) = confchain::packet::parse(data) {
        assert!(p.epoch_count <= confchain::limits::MAX_EPOCHS);
        assert_eq!(p.headers.len(), 32 * p.epoch_count);
    }
});
