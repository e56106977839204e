//! Media handles (SPEC.md §6.6): `Send + Sync`, `&self`, sharing the call's sequence numbers and
//! replay windows, seeing epoch changes at once, stopping at once when our key ends.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use confchain::{ErrorKind, MediaDecryptor, MediaEncryptor, Permissions, PrivateKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[test]
fn handles_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<MediaEncryptor>();
    both::<MediaDecryptor>();
}

/// Many senders, decrypted from two threads at once while the main thread re-keys: each packet is
/// offered to both threads and accepted at most once; every refusal is a replay (a packet older
/// than the first one accepted from its sender is "too old", the reference's window rule, so with
/// reordering a few may be refused by both); nearly all are accepted.
#[test]
fn concurrent_decryption_accepts_each_packet_once() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let keys: Vec<PrivateKey> = (0..12).map(|_| PrivateKey::generate(&mut rng)).collect();
    let state = common::members(&keys, Permissions::ALL);
    let zero = confchain::build_zero_block(state.clone(), &keys[0], &mut rng).unwrap().to_server_form();
    let mut calls: Vec<confchain::Call> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| confchain::Call::new(i as i64 + 1, k.clone(), &zero, &mut rng).unwrap())
        .collect();
    let encryptors: Vec<MediaEncryptor> = calls.iter().map(|c| c.media_encryptor(&mut rng)).collect();
    let mut receiver = calls.remove(0);
    let decryptor = receiver.media_decryptor();
    // 11 senders, 60 packets each, sent over 6 s of virtual time with a re-key every 100 ms of it.
    let mut packets = Vec::new();
    let mut chain = confchain::Chain::empty();
    chain.apply(&zero).unwrap();
    for round in 0..60u64 {
        let now = round * 100;
        for (s, enc) in encryptors.iter().enumerate().skip(1) {
            let mut p = Vec::new();
            enc.encrypt_into(0, format!("{s}:{round}").as_bytes(), 0, now, &mut p).unwrap();
            packets.push((s as i64 + 1, now, p));
        }
        if round % 10 == 9 {
            let b = chain.build_change_state(state.clone(), &keys[0], &mut rng).unwrap().to_server_form();
            chain.apply(&b).unwrap();
            for c in calls.iter_mut() {
                c.apply_block(&b, now, &mut rng).unwrap();
            }
            receiver.apply_block(&b, now, &mut rng).unwrap();
        }
    }
    let accepted = AtomicUsize::new(0);
    let replays = AtomicUsize::new(0);
    let times: Vec<AtomicUsize> = packets.iter().map(|_| AtomicUsize::new(0)).collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut out = Vec::with_capacity(64);
                for (i, (sender, now, p)) in packets.iter().enumerate() {
                    out.clear();
                    match decryptor.decrypt_into(*sender, p, *now, &mut out) {
                        Ok(()) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            times[i].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::Replay, "{e:?}");
                            replays.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    assert!(times.iter().all(|t| t.load(Ordering::Relaxed) <= 1), "a packet was accepted twice");
    let (accepted, replays) = (accepted.into_inner(), replays.into_inner());
    assert_eq!(accepted + replays, 2 * packets.len());
    assert!(accepted >= packets.len() * 95 / 100, "{accepted} of {}", packets.len());
}

#[test]
fn handles_see_new_epochs_and_stop_when_removed() {
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let m = common::two_members(&mut rng);
    let (mut alice, mut bob) = (m.alice, m.bob);
    let bob_enc = bob.media_encryptor(&mut rng);
    let alice_dec = alice.media_decryptor();
    let mut chain = confchain::Chain::empty();
    chain.apply(&m.zero).unwrap();
    let mut packet = Vec::new();
    bob_enc.encrypt_into(1, b"before", 0, 0, &mut packet).unwrap();
    let mut out = Vec::new();
    alice_dec.decrypt_into(2, &packet, 0, &mut out).unwrap();
    assert_eq!(out, b"before");
    // A re-key: the handles list both epochs at once, the old one only during its grace period.
    let rekey = chain.build_change_state(m.state.clone(), &m.alice_key, &mut rng).unwrap().to_server_form();
    chain.apply(&rekey).unwrap();
    alice.apply_block(&rekey, 1_000, &mut rng).unwrap();
    bob.apply_block(&rekey, 1_000, &mut rng).unwrap();
    assert_eq!(alice_dec.live_epochs(1_000), vec![0, 1]);
    assert_eq!(alice_dec.live_epochs(11_000), vec![1], "the grace period ends by the caller's clock");
    // Sequence numbers are shared with the call: a packet from the call after the handle's is new.
    let p2 = bob.encrypt(1, b"from the call", 0, 1_000, &mut rng).unwrap();
    out.clear();
    alice_dec.decrypt_into(2, &p2, 1_000, &mut out).unwrap();
    // Bob is removed: his encryptor stops at once.
    let mut state = m.state.clone();
    state.participants.retain(|p| p.user_id != 2);
    let removal = chain.build_change_state(state, &m.alice_key, &mut rng).unwrap().to_server_form();
    bob.apply_block(&removal, 2_000, &mut rng).unwrap();
    let e = bob_enc.encrypt_into(1, b"after", 0, 2_000, &mut Vec::new()).unwrap_err();
    assert_eq!(e.code(), Some("INVALID_CALL_GROUP_STATE__NOT_PARTICIPANT"));
}

/// Blocks faster than the grace period keep MAX_EPOCHS epochs alive; a media thread encrypting
/// meanwhile must never see the instant when a new epoch is open and the oldest one it pushes out
/// is not yet gone (it once did, and frames failed with "Too many active epochs").
#[test]
fn frames_never_see_more_than_max_epochs() {
    let mut rng = ChaCha20Rng::seed_from_u64(23);
    let m = common::two_members(&mut rng);
    let mut alice = m.alice;
    let mut chain = confchain::Chain::empty();
    chain.apply(&m.zero).unwrap();
    let blocks: Vec<Vec<u8>> = (0..3 * confchain::limits::MAX_EPOCHS)
        .map(|_| {
            let b = chain.build_change_state(m.state.clone(), &m.alice_key, &mut rng).unwrap().to_server_form();
            chain.apply(&b).unwrap();
            b
        })
        .collect();
    let encryptor = alice.media_encryptor(&mut rng);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let media = s.spawn(|| {
            let mut out = Vec::new();
            let mut frames = 0u32;
            while !done.load(Ordering::Relaxed) || frames == 0 {
                out.clear();
                encryptor.encrypt_into(0, b"frame", 0, 0, &mut out).expect("every frame encrypts");
                frames += 1;
            }
        });
        for (i, b) in blocks.iter().enumerate() {
            alice.apply_block(b, 100 * (i as u64 + 1), &mut rng).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        media.join().unwrap();
    });
}
