//! Property tests: random deliveries against the server model, and a hostile server.

use crate::common::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Delivery {
    /// Push the blocks at `[start, end)` (clamped), possibly stale or ahead.
    Push { start: u8, len: u8 },
    /// Answer the oldest pending request (or fail it with a transient error).
    Answer { fail: bool },
    /// A new block appears on the server.
    NewBlock,
    /// Time passes.
    Wait { ms: u16 },
}

fn delivery() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        3 => (0u8..12, 0u8..4).prop_map(|(start, len)| Delivery::Push { start, len }),
        3 => any::<bool>().prop_map(|fail| Delivery::Answer { fail }),
        1 => Just(Delivery::NewBlock),
        2 => (0u16..12_000).prop_map(|ms| Delivery::Wait { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// One session (bob) against a chain alice extends: random pushes (duplicates, overlaps, gaps),
    /// answers in any order, failures and timeouts. Never panics, never applies a block twice, and
    /// once deliveries stop it reaches the server's tip.
    #[test]
    fn random_deliveries_end_at_the_tip(seed in any::<u64>(), script in prop::collection::vec(delivery(), 1..60)) {
        let mut net = conference(&[1, 2]);
        net.rng = rng(seed);
        let mut pending: Vec<(RequestId, Request)> = Vec::new();
        let mut applied = std::collections::HashSet::new();
        let mut check = |net: &mut Net| -> Result<(), TestCaseError> {
            for e in net.events(2) {
                if let SessionEvent::KeyChanged { height, .. } = e {
                    prop_assert!(applied.insert(height), "block {} applied twice", height);
                }
            }
            Ok(())
        };
        for d in script {
            match d {
                Delivery::Push { start, len } => {
                    let all = net.server.blocks().to_vec();
                    let start = usize::from(start).min(all.len());
                    let end = (start + usize::from(len)).min(all.len());
                    let u = blocks_update(0, &all[start..end], end as i32);
                    net.update(2, u);
                }
                Delivery::Answer { fail } => {
                    while let Some(r) = net.s(2).poll_request() {
                        pending.push(r);
                    }
                    if !pending.is_empty() {
                        let k = (net.now as usize) % pending.len();
                        let (id, req) = pending.remove(k);
                        let response = if fail { Response::Error("TIMEOUT".into()) } else { net.server.handle(2, &req).0 };
                        net.respond(2, id, response);
                    }
                }
                Delivery::NewBlock => {
                    silent_rekey(&mut net, 1);
                }
                Delivery::Wait { ms } => {
                    net.now += u64::from(ms);
                    net.timeout(2);
                }
            }
            check(&mut net)?;
        }
        // Deliveries stop: answer what is pending, then let the timers run.
        for (id, req) in pending.drain(..) {
            let response = net.server.handle(2, &req).0;
            net.respond(2, id, response);
        }
        net.pump();
        let t = net.now + 30_000;
        net.advance_to(t);
        check(&mut net)?;
        prop_assert_eq!(net.height(2), net.server.height());
        prop_assert_eq!(net.s(2).state(), SessionState::Joined);
    }
}

#[derive(Clone, Debug)]
enum Hostile {
    /// Push honest blocks `[start, start + len)`, or junk at an offset.
    Push { start: u8, len: u8, junk: bool },
    /// Answer the oldest pending request: honestly, with a gap, with the last block only, with
    /// an outsider's block, or with an error.
    Answer { how: u8 },
    /// A new honest block.
    NewBlock,
    /// Participants or the call's identity.
    Meta { left: bool },
    /// Time passes.
    Wait { ms: u16 },
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        3 => (0u8..12, 0u8..4, any::<bool>()).prop_map(|(start, len, junk)| Hostile::Push { start, len, junk }),
        4 => (0u8..12).prop_map(|how| Hostile::Answer { how }),
        1 => Just(Hostile::NewBlock),
        1 => any::<bool>().prop_map(|left| Hostile::Meta { left }),
        3 => (0u16..20_000).prop_map(|ms| Hostile::Wait { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// One session against a hostile server: gaps, withheld offsets, last-block-only answers,
    /// junk and an outsider's block, every kind of error, silence. It never panics, never adopts
    /// a block the rules refuse (the outsider never enters its chain), sends a bounded number of
    /// requests per virtual second, keeps its footprint bounded, and once it fails closed its call
    /// stays closed. With an honest server afterwards it converges, or fails closed.
    #[test]
    fn a_hostile_server_never_breaks_the_invariants(seed in any::<u64>(), script in prop::collection::vec(hostile(), 1..80)) {
        let mut net = conference(&[1, 2]);
        net.rng = rng(seed);
        let outsider = confchain::PrivateKey::generate(&mut net.rng);
        let mut pending: Vec<(RequestId, Request)> = Vec::new();
        let mut sent: Vec<u64> = Vec::new();
        let config = SessionConfig::default();
        let errors = ["TIMEOUT", "INTERNAL", "FLOOD_WAIT_2", "FLOOD_WAIT_100000", "CONF_WRITE_CHAIN_INVALID", "PEER_ID_INVALID", "GROUPCALL_SSRC_DUPLICATE_MUCH"];
        for step in script {
            while let Some(r) = net.s(2).poll_request() {
                sent.push(net.now);
                pending.push(r);
            }
            match step {
                Hostile::Push { start, len, junk } => {
                    let all = net.server.blocks().to_vec();
                    let start = usize::from(start).min(all.len());
                    let end = (start + usize::from(len)).min(all.len());
                    let mut blocks = all[start..end].to_vec();
                    if junk {
                        for b in &mut blocks {
                            let n = b.len();
                            b[n / 3] ^= 0x21;
                        }
                    }
                    net.update(2, blocks_update(0, &blocks, end as i32));
                }
                Hostile::Answer { how } => {
                    if pending.is_empty() {
                        continue;
                    }
                    let (id, req) = pending.remove(0);
                    let response = match (how, &req) {
                        (0..=4, _) => net.server.handle(2, &req).0,
                        (5, Request::GetChainBlocks { sub_chain, offset, .. }) => {
                            Response::Ok(vec![blocks_update(sub_chain.id(), &[], offset.max(&0) + 7)])
                        }
                        (6, Request::GetChainBlocks { sub_chain: SubChain::Blocks, .. }) => {
                            let all = net.server.blocks();
                            Response::Ok(vec![blocks_update(0, &all[all.len() - 1..], all.len() as i32)])
                        }
                        (7, Request::GetChainBlocks { sub_chain: SubChain::Blocks, .. })
                            if net.s(2).state() == SessionState::Joined || net.s(2).state() == SessionState::Resyncing =>
                        {
                            let h = net.height(2);
                            if net.server.height() == h {
                                let forged = outsider_block(&mut net, &outsider);
                                Response::Ok(vec![blocks_update(0, &[forged], h + 2)])
                            } else {
                                net.server.handle(2, &req).0
                            }
                        }
                        (8, _) => continue, // silence: the deadline ends it
                        (k, _) => Response::Error(errors[usize::from(k) % errors.len()].into()),
                    };
                    net.respond(2, id, response);
                }
                Hostile::NewBlock => {
                    let alice_at_tip = net.height(1) == net.server.height() && net.server.members().any(|u| u == 1);
                    if net.s(1).state() == SessionState::Joined && alice_at_tip {
                        silent_rekey(&mut net, 1);
                    }
                }
                Hostile::Meta { left } => {
                    let p = confchain::session::CallParticipant::new(1, left);
                    net.update(2, Update::Participants { participants: vec![p] });
                }
                Hostile::Wait { ms } => {
                    net.now += u64::from(ms);
                    net.timeout(2);
                }
            }
            // Invariants, every step.
            if let Some(call) = net.s(2).call() {
                prop_assert!(!call.participants().iter().any(|p| p.user_id == 9), "the outsider got in");
            }
            if matches!(net.s(2).state(), SessionState::ChainRejected | SessionState::Removed | SessionState::Ended) {
                prop_assert!(net.s(2).call().is_none_or(|c| c.is_closed()));
            }
            let f = net.s(2).footprint();
            prop_assert!(f.early_blocks <= 2 * config.max_buffered_updates, "{:?}", f);
            prop_assert!(f.requests_in_flight + f.queued_requests <= 64, "{:?}", f);
            prop_assert!(f.retries <= 64, "{:?}", f);
            let now = net.now;
            let recent = sent.iter().filter(|t| **t + 1_000 > now).count();
            prop_assert!(recent <= 24, "{} requests in the last second", recent);
        }
        // An honest server from here on: converge, or stay failed closed.
        for (id, req) in pending.drain(..) {
            let response = net.server.handle(2, &req).0;
            net.respond(2, id, response);
        }
        net.pump();
        let t = net.now + 200_000;
        net.advance_to(t);
        match net.s(2).state() {
            SessionState::Joined => prop_assert_eq!(net.height(2), net.server.height()),
            SessionState::ChainRejected | SessionState::Removed | SessionState::Ended | SessionState::Failed | SessionState::Left => {
                prop_assert!(net.s(2).call().is_none_or(|c| c.is_closed()));
            }
            other => prop_assert!(false, "stuck in {:?}", other),
        }
    }
}
