//! Property test: random delivery (reorder, duplicate, drop) of one sender's packets to another
//! member, checked against a straightforward model of the reference's replay rules.

mod common;

use confchain::limits::REPLAY_WINDOW;
use confchain::{Call, ErrorKind};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn cases() -> u32 {
    std::env::var("CONFCHAIN_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

fn two_calls(seed: u64) -> (Call, Call, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let m = common::two_members(&mut rng);
    (m.alice, m.bob, rng)
}

/// The model: a plain list of remembered seqnos per channel, with the rules written out directly.
#[derive(Default)]
struct Model {
    remembered: Vec<u32>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Accepted,
    TooOld,
    AlreadyProcessed,
}

impl Model {
    fn deliver(&mut self, seqno: u32) -> Outcome {
        if let Some(min) = self.remembered.iter().min() {
            if seqno < *min {
                return Outcome::TooOld;
            }
        }
        if self.remembered.contains(&seqno) {
            return Outcome::AlreadyProcessed;
        }
        self.remembered.push(seqno);
        loop {
            let min = *self.remembered.iter().min().unwrap();
            if self.remembered.len() > REPLAY_WINDOW || (seqno - min) as usize > REPLAY_WINDOW {
                self.remembered.retain(|s| *s != min);
            } else {
                break;
            }
        }
        Outcome::Accepted
    }
}

/// A delivery: which packet (index into the sent list), possibly repeated, in any order.
fn schedule() -> impl Strategy<Value = (u64, Vec<(u8, usize)>, Vec<usize>)> {
    (
        any::<u64>(),
        prop::collection::vec((0u8..3, 1usize..4), 1..400),
        prop::collection::vec(any::<prop::sample::Index>(), 1..600),
    )
        .prop_map(|(seed, sends, picks)| {
            let total: usize = sends.iter().map(|(_, n)| n).sum();
            let order = picks.iter().map(|i| i.index(total)).collect();
            (seed, sends, order)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Through the call, or (`handles`) through a media decryptor on a thread of its own per
    /// half of the deliveries: the same rules either way.
    #[test]
    fn replay_rules_match_the_model((seed, sends, order) in schedule(), handles in any::<bool>()) {
        let (mut alice, mut bob, mut rng) = two_calls(seed);
        let decryptor = bob.media_decryptor();
        // Alice sends bursts on three channels; remember (channel, seqno, payload, packet).
        let mut sent = Vec::new();
        let mut seqnos = [0u32; 3];
        for (channel, n) in sends {
            for _ in 0..n {
                seqnos[channel as usize] += 1;
                let payload = format!("c{channel} s{}", seqnos[channel as usize]).into_bytes();
                let packet = alice.encrypt(i32::from(channel), &payload, 0, 0, &mut rng).unwrap();
                sent.push((channel, seqnos[channel as usize], payload, packet));
            }
        }
        let mut models: [Model; 3] = Default::default();
        let mut accepted = std::collections::HashSet::new();
        for i in order {
            let (channel, seqno, payload, packet) = &sent[i];
            let expected = models[*channel as usize].deliver(*seqno);
            let got = if handles {
                let mut out = Vec::new();
                std::thread::scope(|s| s.spawn(|| decryptor.decrypt_into(1, packet, 0, &mut out)).join().unwrap()).map(|()| out)
            } else {
                bob.decrypt(1, packet, 0)
            };
            match (&expected, &got) {
                (Outcome::Accepted, Ok(p)) => {
                    prop_assert_eq!(p, payload);
                    prop_assert!(accepted.insert((*channel, *seqno)), "accepted twice");
                }
                (Outcome::TooOld, Err(e)) => prop_assert_eq!((e.kind(), e.message()), (ErrorKind::Replay, "Message is too old")),
                (Outcome::AlreadyProcessed, Err(e)) => {
                    prop_assert_eq!((e.kind(), e.message()), (ErrorKind::Replay, "Message is already processed"))
                }
                _ => prop_assert!(false, "packet {:?}/{}: model {:?}, got {:?}", channel, seqno, expected, got),
            }
        }
    }
}

#[test]
fn window_keeps_the_last_1024_and_forgets_far_behind() {
    let (mut alice, mut bob, mut rng) = two_calls(9);
    let packets: Vec<Vec<u8>> = (0..1100).map(|_| alice.encrypt(0, b"x", 0, 0, &mut rng).unwrap()).collect();
    // Deliver 1..=1025 except seqno 1: exactly 1024 remembered, 2 is the smallest.
    for p in &packets[1..1025] {
        bob.decrypt(1, p, 0).unwrap();
    }
    assert_eq!(bob.decrypt(1, &packets[0], 0).unwrap_err().message(), "Message is too old");
    // One more: 1026 pushes out 2.
    bob.decrypt(1, &packets[1025], 0).unwrap();
    assert_eq!(bob.decrypt(1, &packets[1], 0).unwrap_err().message(), "Message is too old");
    assert_eq!(bob.decrypt(1, &packets[2], 0).unwrap_err().message(), "Message is already processed");
}
