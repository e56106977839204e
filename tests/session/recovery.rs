//! Recovery from a refused block: fetching from our own height, failing closed, retried fetches.

use crate::common::*;

/// Issue 23: a refused push is never adopted. The session fetches from its own next height and
/// applies what the server's chain holds one by one through the rules, keeping its key.
#[test]
fn a_refused_push_refetches_from_our_own_height_and_keeps_the_key() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(10);
    let key_before = net.s(2).call().unwrap().public_key();
    // A garbage block at the offset bob expects.
    let mut junk = net.server.blocks()[1].clone();
    let n = junk.len();
    junk[n / 2] ^= 0x55;
    net.s(2).handle_update(blocks_update(0, &[junk], 3), 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Resyncing);
    let events = net.events(2);
    assert!(events.iter().any(|e| matches!(e, SessionEvent::BlockRefused { height: 2, .. })), "{events:?}");
    let (id, poll) = request(net.s(2));
    assert_eq!(poll, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: 2, limit: 100 }, "our own height");
    // Meanwhile the real chain moved on.
    silent_rekey(&mut net, 1);
    silent_rekey(&mut net, 1);
    let (resp, _) = net.server.handle(2, &poll);
    net.s(2).handle_response(id, resp, 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    assert_eq!(net.height(2), net.server.height());
    assert_eq!(net.s(2).call().unwrap().public_key(), key_before, "same key");
    net.advance_to(10_000);
    // Packets flow both ways with the same call (no "Message is too old").
    let (now, rr) = (net.now, &mut net.rng);
    let i = net.sessions.iter().position(|s| s.user_id() == 2).unwrap();
    let p = net.sessions[i].call_mut().unwrap().encrypt(0, b"after resync", 0, now, rr).unwrap();
    assert_eq!(net.s(1).call_mut().unwrap().decrypt(2, &p, now).unwrap(), b"after resync");
}

/// Issue 23 item 1: the server pushes an outsider's self-add, then serves it as its chain. The
/// session never adopts it: it asks from its own next height (never the tip), and when the
/// server's chain holds the refused block it fails closed: the call and every media handle stop.
#[test]
fn a_refused_block_in_the_servers_chain_fails_closed() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(20);
    let outsider = confchain::PrivateKey::generate(&mut r);
    let forged = outsider_block(&mut net, &outsider);
    let encryptor = net.s(2).call().unwrap().media_encryptor(&mut r);
    let decryptor = net.s(2).call().unwrap().media_decryptor();
    let height = net.height(2);
    // Pushed: refused, not adopted; a poll from our own next height.
    net.s(2).handle_update(blocks_update(0, std::slice::from_ref(&forged), height + 2), 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Resyncing);
    assert_eq!(net.height(2), height);
    let (id, poll) = request(net.s(2));
    assert_eq!(poll, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: height + 1, limit: 100 });
    // The server serves the same block as its chain (and as its tip): fail closed.
    net.s(2).handle_response(id, Response::Ok(vec![blocks_update(0, &[forged], height + 2)]), 0, &mut r);
    // (Offsets of sub-chain 0 are heights: the forged block sits at offset height + 1.)
    assert_eq!(net.s(2).state(), SessionState::ChainRejected);
    let events = net.events(2);
    assert!(
        events.iter().any(|e| matches!(e, SessionEvent::ChainRejected { height: h, .. } if *h == height + 1)),
        "{events:?}"
    );
    assert_eq!(net.height(2), height, "the outsider's block was never applied");
    assert!(!net.s(2).call().unwrap().participants().iter().any(|p| p.user_id == 9));
    // Encryption stopped at once, everywhere; nothing more is sent or scheduled.
    let closed = confchain::ErrorKind::CallClosed;
    let call = net.s(2).call_mut().unwrap();
    assert!(call.is_closed());
    assert_eq!(call.encrypt(0, b"secret", 0, 0, &mut r).unwrap_err().kind(), closed);
    assert_eq!(call.encrypt_message("{}", 0, &mut r).unwrap_err().kind(), closed);
    assert_eq!(call.build_rekey(&mut r).unwrap_err().kind(), closed);
    let mut out = Vec::new();
    assert_eq!(encryptor.encrypt_into(0, b"frame", 0, 0, &mut out).unwrap_err().kind(), closed);
    assert_eq!(decryptor.decrypt_into(1, b"anything", 0, &mut out).unwrap_err().kind(), closed);
    assert!(net.s(2).send_message(r#"{"random_id":"1"}"#, 0, &mut r).is_err());
    // The media call is left (no ghost member), and nothing else is sent or scheduled.
    assert_eq!(request(net.s(2)).1, Request::Leave);
    assert!(net.s(2).poll_request().is_none());
    assert_eq!(net.s(2).poll_timeout(), Some(SessionConfig::default().request_timeout_ms), "the leave's deadline only");
    // Continuing is the application's explicit decision: a rejoin with a new key.
    net.join(2);
    assert_eq!(net.s(2).state(), SessionState::Joined);
}

/// Issue 23 item 7: while recovering, failed fetches are retried with backoff until they succeed;
/// the offset never moves past the unapplied block.
#[test]
fn recovery_retries_until_it_succeeds() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(25);
    let mut junk = net.server.blocks()[1].clone();
    let n = junk.len();
    junk[n / 2] ^= 0x55;
    net.s(2).handle_update(blocks_update(0, &[junk], 3), 0, &mut r);
    silent_rekey(&mut net, 1);
    let mut now = 0;
    let mut waits = Vec::new();
    let mut last_poll = 0;
    while waits.len() < 6 {
        let mut polled = None;
        for (id, req) in drain(net.s(2)) {
            match req {
                Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset, .. } => {
                    assert_eq!(offset, 2, "our own next height, never the tip");
                    polled = Some(id);
                }
                other => {
                    let (resp, _) = net.server.handle(2, &other);
                    net.s(2).handle_response(id, resp, now, &mut r);
                }
            }
        }
        if let Some(id) = polled {
            waits.push(now - last_poll);
            last_poll = now;
            net.s(2).handle_response(id, Response::Error("INTERNAL".into()), now, &mut r);
            assert_eq!(net.s(2).state(), SessionState::Resyncing);
            assert_eq!(net.s(2).next_offset(SubChain::Blocks), Some(2));
        }
        now = net.s(2).poll_timeout().unwrap();
        net.s(2).handle_timeout(now, &mut r);
    }
    waits.remove(0);
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "the delay grows: {waits:?}");
    let (id, poll) = loop {
        if let Some(p) = drain(net.s(2))
            .into_iter()
            .find(|(_, r)| matches!(r, Request::GetChainBlocks { sub_chain: SubChain::Blocks, .. }))
        {
            break p;
        }
        now = net.s(2).poll_timeout().unwrap();
        net.s(2).handle_timeout(now, &mut r);
    };
    let (resp, _) = net.server.handle(2, &poll);
    net.s(2).handle_response(id, resp, now, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    assert_eq!(net.height(2), net.server.height());
}

/// Recovering, the server withholds the refused block's offset (empty pages): the session keeps
/// asking from its own height with backoff, never moves its offset, never adopts anything.
#[test]
fn withheld_blocks_while_recovering_are_asked_again() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(40);
    let mut junk = net.server.blocks()[1].clone();
    let n = junk.len();
    junk[n / 2] ^= 0x55;
    net.s(2).handle_update(blocks_update(0, &[junk], 3), 0, &mut r);
    let mut now = 0;
    let mut polls = 0;
    while now < 30_000 {
        for (id, req) in drain(net.s(2)) {
            if let Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset, .. } = req {
                assert_eq!(offset, 2);
                polls += 1;
                net.s(2).handle_response(id, Response::Ok(vec![blocks_update(0, &[], 2)]), now, &mut r);
            } else {
                let (resp, _) = net.server.handle(2, &req);
                net.s(2).handle_response(id, resp, now, &mut r);
            }
        }
        now = net.s(2).poll_timeout().unwrap().max(now);
        net.s(2).handle_timeout(now, &mut r);
    }
    assert!((4..=20).contains(&polls), "{polls}");
    assert_eq!(net.s(2).state(), SessionState::Resyncing);
    assert_eq!(net.s(2).next_offset(SubChain::Blocks), Some(2));
}
