//! Fuzzed packets against a call with known epochs, at any caller time: raw bytes, and
//! structure-aware mutations of valid packets (bit flips, truncation, header edits, splicing).
//! Never panics; a failed decrypt changes nothing: when nothing was accepted every valid packet
//! still decrypts afterwards, and otherwise only replays are refused.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use confchain::ErrorKind;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

static FIXTURE: OnceLock<common::Fixture> = OnceLock::new();

#[derive(Arbitrary, Debug)]
enum Mutation {
    Flip { at: u16, bit: u8 },
    Truncate { len: u16 },
    Set { at: u16, value: u8 },
    SetHead { count: u8, version: u8, reserved: u16 },
    SetTrailer { prefix_len: u32 },
    Append { bytes: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Input {
    sender: i64,
    now: u64,
    base: u8,
    mutations: Vec<Mutation>,
    raw: Vec<u8>,
}

fn mutate(packet: &mut Vec<u8>, m: &Mutation) {
    let n = packet.len().max(1);
    match *m {
        Mutation::Flip { at, bit } => {
            if let Some(b) = packet.get_mut(at as usize % n) {
                *b ^= 1 << (bit % 8);
            }
        }
        Mutation::Truncate { len } => packet.truncate(len as usize),
        Mutation::Set { at, value } => {
            if let Some(b) = packet.get_mut(at as usize % n) {
                *b = value;
            }
        }
        Mutation::SetHead { count, version, reserved } => {
            // The head sits after the clear prefix, whose length is the trailer.
            if packet.len() >= 8 {
                let t = packet.len() - 4;
                let prefix = u32::from_le_bytes(packet[t..].try_into().unwrap()) as usize;
                if let Some(h) = packet.get_mut(prefix..prefix + 4) {
                    h[0] = count;
                    h[1] = version;
                    h[2..4].copy_from_slice(&reserved.to_le_bytes());
                }
            }
        }
        Mutation::SetTrailer { prefix_len } => {
            if packet.len() >= 4 {
                let t = packet.len() - 4;
                packet[t..].copy_from_slice(&prefix_len.to_le_bytes());
            }
        }
        Mutation::Append { ref bytes } => packet.extend_from_slice(bytes),
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = FIXTURE.get_or_init(common::fixture);
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else { return };
    let mut bob = fx.bob.clone();
    let now = input.now;
    let raw_ok = bob.decrypt(input.sender, &input.raw, now).is_ok();
    let mut packet = fx.packets[input.base as usize % fx.packets.len()].clone();
    let original = packet.clone();
    for m in input.mutations.iter().take(8) {
        mutate(&mut packet, m);
    }
    let mut out = b"keep".to_vec();
    let result = bob.decrypt_into(input.sender, &packet, now, &mut out);
    match result {
        Ok(()) => {
            // Only the genuine sender's untouched content can be accepted.
            assert_eq!(input.sender, 1);
            let fresh = fx.bob.clone().decrypt(1, &original, 0).unwrap();
            assert_eq!(&out[4..], &fresh[..]);
        }
        Err(_) => assert_eq!(out, b"keep"),
    }
    // Whatever happened, a failed decrypt changed nothing: if nothing was accepted above, every
    // valid packet still decrypts. If a packet was accepted, the only failures allowed are
    // replays: that packet itself, or a lower seqno on its channel ("Message is too old", the
    // reference's window rule). The fixture's packets list every epoch, so any `now` works.
    let consumed_any = raw_ok || result.is_ok();
    for p in &fx.packets {
        if let Err(e) = bob.decrypt(1, p, now) {
            assert!(consumed_any && e.kind() == ErrorKind::Replay, "a valid packet no longer decrypts: {e:?}");
        }
    }
});
