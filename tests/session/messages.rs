//! Messages and broadcasts: delivery once, verification rounds, resent commits, broadcasts too far ahead.

use crate::common::*;

#[test]
fn messages_are_delivered_once() {
    let mut net = conference(&[1, 2]);
    let (now, mut r) = (net.now, rng(13));
    let json =
        r#"{"_":"groupCallMessage","random_id":"77","message":{"_":"textWithEntities","text":"hi","entities":[]}}"#;
    // Sent twice (an application retry): one MessageReceived.
    net.s(1).send_message(json, now, &mut r).unwrap();
    net.s(1).send_message(json, now, &mut r).unwrap();
    net.pump();
    let got: Vec<_> = net.events(2).into_iter().filter(|e| matches!(e, SessionEvent::MessageReceived { .. })).collect();
    assert_eq!(got, vec![SessionEvent::MessageReceived { from: 1, json: json.to_owned() }]);
    // Too large: refused when sending.
    let big = "x".repeat(SessionConfig::default().max_message_bytes + 1);
    assert!(net.s(1).send_message(&big, now, &mut r).is_err());
}

#[test]
fn verification_completes_for_everyone() {
    let mut net = conference(&[1, 2, 3]);
    net.advance_to(net.now + 1);
    let emojis: Vec<_> = [1, 2, 3].iter().map(|u| net.s(*u).call().unwrap().emojis()).collect();
    assert!(emojis[0].is_some());
    assert!(emojis.windows(2).all(|w| w[0] == w[1]), "{emojis:?}");
}

/// Issue 30 item 4: a commit lost to a short outage. Alice's broadcasts fail with `NETWORK` for
/// 10 s (longer than `max_send_attempts` fast retries): every member needs every commit, so a
/// commit given up stalled the round for everyone. Resent (with backoff) until the round completes
/// or the height moves, it gets through once the network is back.
#[test]
fn a_commit_lost_to_a_short_outage_is_resent_until_the_round_completes() {
    let mut net = conference(&[1, 2]);
    net.broadcast_outage = Some((1, 10_000));
    let mut r = rng(304);
    net.s(2).rekey(None, &mut r).unwrap();
    net.pump();
    assert_eq!(net.height(1), net.height(2));
    net.advance_to(10_000);
    assert!(net.s(1).call().unwrap().emojis().is_none(), "the outage holds the round");
    net.advance_to(60_000);
    let emojis: Vec<_> = [1, 2].iter().map(|u| net.s(*u).call().unwrap().emojis()).collect();
    assert!(emojis[0].is_some() && emojis[0] == emojis[1], "{emojis:?}");
}

/// Issue 30 item 3: a verification deadlock after a lag. Bob is offline for 20 re-keys; back, his
/// broadcast poll lands before his block poll: the broadcasts more than 16 heights ahead of him are
/// dropped, and the sub-chain 1 offset moved past them, so alice's commit of the last height was
/// never fetched again: bob waited in Commit for it, alice in Reveal for his reveal, for good. The
/// session stops at a broadcast too far ahead, catches up on blocks, and fetches it again.
#[test]
fn broadcasts_too_far_ahead_are_fetched_again_once_the_blocks_caught_up() {
    let mut net = conference(&[1, 2]);
    net.advance_to(net.now + 1);
    net.offline = Some(2);
    let mut r = rng(303);
    for _ in 0..20 {
        net.s(1).rekey(None, &mut r).unwrap();
        net.pump();
        // The outbox's pace (issue 35) lets the re-key out.
        let t = net.now + 1_000;
        net.advance_to(t);
    }
    assert_eq!(net.height(1), net.height(2) + 20);
    // Back: both polls are due; the broadcast poll is answered first.
    net.offline = None;
    net.now += 30_000;
    net.timeout(2);
    let mut pending: Vec<(RequestId, Request)> = drain(net.s(2));
    pending.sort_by_key(|(_, q)| !matches!(q, Request::GetChainBlocks { sub_chain: SubChain::Broadcasts, .. }));
    for (id, req) in pending {
        let (response, pushes) = net.server.handle(2, &req);
        net.respond(2, id, response);
        for (to, u) in pushes {
            net.update(to, u);
        }
    }
    net.pump();
    let t = net.now + 60_000;
    net.advance_to(t);
    assert_eq!(net.height(1), net.height(2));
    let emojis: Vec<_> = [1, 2].iter().map(|u| net.s(*u).call().unwrap().emojis()).collect();
    assert!(emojis[0].is_some() && emojis[0] == emojis[1], "{emojis:?}");
}
