//! Keeping up with the chain: polls, gaps, pages, duplicates and overlaps, last-block-only answers, held updates.

use crate::common::*;

#[test]
fn gap_is_filled_by_a_poll_and_early_blocks_are_kept() {
    let mut net = conference(&[1, 2]);
    silent_rekey(&mut net, 1);
    silent_rekey(&mut net, 1);
    // Bob missed offset 2 and gets offset 3: a gap. Nothing is applied, a poll from 2 goes out.
    let push = blocks_update(0, &net.server.blocks()[3..4], 4);
    let mut r = rng(5);
    net.s(2).handle_update(push, 0, &mut r);
    assert_eq!(net.height(2), 1);
    let (id, poll) = request(net.s(2));
    assert_eq!(poll, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: 2, limit: 100 });
    // The poll returns only offset 2 (say the page was cut); the kept block 3 follows it.
    let page = Response::Ok(vec![blocks_update(0, &net.server.blocks()[2..3], 3)]);
    net.s(2).handle_response(id, page, 0, &mut r);
    assert_eq!(net.height(2), 3);
    assert_eq!(net.s(2).next_offset(SubChain::Blocks), Some(4));
}

#[test]
fn duplicates_and_overlaps_apply_only_the_new_tail() {
    let mut net = conference(&[1, 2]);
    silent_rekey(&mut net, 1);
    silent_rekey(&mut net, 1);
    let mut r = rng(6);
    let all = net.server.blocks().to_vec();
    // An overlapping update [1, 2, 3) when 2 is expected: only 2 is new.
    net.s(2).handle_update(blocks_update(0, &all[1..3], 3), 0, &mut r);
    assert_eq!(net.height(2), 2);
    // The same again: ignored. Then [2, 3, 4): only 3 is new.
    net.s(2).handle_update(blocks_update(0, &all[1..3], 3), 0, &mut r);
    net.s(2).handle_update(blocks_update(0, &all[2..4], 4), 0, &mut r);
    assert_eq!(net.height(2), 3);
    let applied: Vec<i32> = net
        .events(2)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::KeyChanged { height, .. } => Some(height),
            _ => None,
        })
        .collect();
    assert_eq!(applied, vec![2, 3], "each block applied exactly once");
    let faults = |e: &SessionEvent| {
        matches!(
            e,
            SessionEvent::BlockRefused { .. } | SessionEvent::MessageDropped { .. } | SessionEvent::SendFailed { .. }
        )
    };
    assert!(!net.events(2).iter().any(faults));
}

#[test]
fn a_full_page_is_followed_by_another_poll_at_once() {
    let mut net = conference(&[1, 2]);
    for _ in 0..3 {
        silent_rekey(&mut net, 1);
    }
    let mut r = rng(7);
    // Bob's poll timer fires: he asks from offset 2.
    let at = net.s(2).poll_timeout().unwrap();
    net.s(2).handle_timeout(at, &mut r);
    let (id, poll) = blocks_poll(net.s(2));
    assert_eq!(poll, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: 2, limit: 100 });
    // A page as long as the limit means more may follow: with limit 100 we fake one by answering
    // for a session configured with limit 2.
    let _ = id;
    let config = SessionConfig { poll_limit: 2, ..SessionConfig::default() };
    let mut small = Net::new(Server::new(), &[1, 2]);
    small.sessions[1] = Session::new(2, config).unwrap();
    small.s(1).create(true, 0, &mut r).unwrap();
    small.pump();
    small.join(2);
    for _ in 0..3 {
        silent_rekey(&mut small, 1);
    }
    let at = small.s(2).poll_timeout().unwrap();
    small.s(2).handle_timeout(at, &mut r);
    let (id, poll) = blocks_poll(small.s(2));
    assert_eq!(poll, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: 2, limit: 2 });
    let (resp, _) = small.server.handle(2, &poll);
    small.s(2).handle_response(id, resp, at, &mut r);
    let (_, next) = blocks_poll(small.s(2));
    assert_eq!(next, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: 4, limit: 2 }, "at once");
}

#[test]
fn polls_every_ten_seconds_and_reach_the_tip() {
    let mut net = conference(&[1, 2, 3]);
    silent_rekey(&mut net, 1);
    silent_rekey(&mut net, 1);
    let tip = net.server.height();
    assert!(net.height(3) < tip);
    net.advance_to(net.now + 10_000);
    for u in [1, 2, 3] {
        assert_eq!(net.height(u), tip, "user {u}");
    }
    let f: Vec<_> = [1, 2, 3].iter().map(|u| net.s(*u).call().unwrap().key_fingerprint()).collect();
    assert!(f.windows(2).all(|w| w[0] == w[1]));
}

/// Issue 23 item 6: a server answering every poll with a gap gets polls with a growing delay,
/// never a hot loop; a full page re-polls at once only if it advanced the offset.
#[test]
fn gap_answers_back_off() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(24);
    let mut polls = 0;
    let mut now = net.now;
    let end = now + 60_000;
    while now <= end {
        for (id, req) in drain(net.s(2)) {
            if let Request::GetChainBlocks { sub_chain, offset, .. } = req {
                polls += 1;
                let answer = blocks_update(sub_chain.id(), &[], offset.max(0) + 5);
                net.s(2).handle_response(id, Response::Ok(vec![answer]), now, &mut r);
            }
        }
        match net.s(2).poll_timeout() {
            Some(t) if t <= end => {
                assert!(t >= now, "no timer in the past");
                now = t.max(now);
                net.s(2).handle_timeout(now, &mut r);
            }
            _ => break,
        }
    }
    assert!(polls <= 30, "{polls} polls in 60 s");
    assert_eq!(net.s(2).state(), SessionState::Joined);
}

/// A non-member's poll is answered with the last block only, whatever the offset: the session
/// neither loops nor takes it for the next block.
#[test]
fn last_block_only_answers_neither_loop_nor_are_misread() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(37);
    for _ in 0..3 {
        silent_rekey(&mut net, 1);
    }
    let mut polls = 0;
    let mut now = net.now;
    for _ in 0..200 {
        for (id, req) in drain(net.s(2)) {
            if let Request::GetChainBlocks { sub_chain: SubChain::Blocks, .. } = req {
                polls += 1;
                let all = net.server.blocks();
                let last = blocks_update(0, &all[all.len() - 1..], all.len() as i32);
                net.s(2).handle_response(id, Response::Ok(vec![last]), now, &mut r);
            } else {
                let (resp, _) = net.server.handle(2, &req);
                net.s(2).handle_response(id, resp, now, &mut r);
            }
        }
        let t = net.s(2).poll_timeout().unwrap();
        if t > 60_000 {
            break;
        }
        now = t.max(now);
        net.s(2).handle_timeout(now, &mut r);
    }
    assert!(polls <= 12, "{polls}");
    assert_eq!(net.height(2), 1, "the last block is never applied out of order");
    // Answered as a non-member again and again: the server no longer holds us in the call.
    assert_eq!(net.s(2).state(), SessionState::Ended);
    assert!(net.events(2).contains(&SessionEvent::Ended { reason: confchain::session::EndReason::JoinMissing }));
}

/// Issue 23 item 9: held updates are bounded by entries and bytes, in linear time, and
/// `footprint()` reports them.
#[test]
fn held_updates_are_bounded_by_entries_and_bytes() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(27);
    let config = SessionConfig::default();
    let started = std::time::Instant::now();
    for k in 0..50_000 {
        net.s(2).handle_update(blocks_update(0, &[], 100 + k), 0, &mut r);
        net.s(2).handle_update(blocks_update(0, &[vec![7u8; 64 << 10]], 100_000 + k), 0, &mut r);
    }
    assert!(started.elapsed().as_secs() < 20, "linear time");
    let f = net.s(2).footprint();
    assert!(f.early_blocks <= 2 * config.max_buffered_updates, "{f:?}");
    assert!(f.held_bytes <= 2 * config.max_buffered_bytes, "{f:?}");
    assert!(f.held_bytes > 0);
    assert!(f.queued_requests <= 2, "no flood of polls: {f:?}");
}

/// Review (hostile server): pushes on sub-chain 1 with a bogus newest offset every 100 ms make
/// the member skip to the window's start, and each empty answer below it rewinds: a skip and a
/// rewind per poll, never more than one sub-chain 1 poll a second (the gap polls' spacing and
/// backoff: one every 10 s here), and the member reads on from the server's offset once the
/// lies stop. Not a defect; kept as a regression test.
#[test]
fn lying_offsets_on_sub_chain_1_neither_storm_nor_strand_the_member() {
    let mut r = rng(3204);
    let (mut s, pending) = joined_alone(8, 0, &mut r);
    let mut polls: Vec<(u64, i32)> = Vec::new();
    // Polls of sub-chain 1 are answered with nothing, the server's offset 0; the rest with nothing.
    fn answer(
        s: &mut Session,
        id: RequestId,
        req: &Request,
        now: u64,
        polls: &mut Vec<(u64, i32)>,
        r: &mut ChaCha20Rng,
    ) {
        let mut updates = Vec::new();
        if let Request::GetChainBlocks { sub_chain: SubChain::Broadcasts, offset, .. } = req {
            polls.push((now, *offset));
            updates.push(chain(1, vec![], 0));
        }
        s.handle_response(id, Response::Ok(updates), now, r);
    }
    for (id, req) in pending {
        answer(&mut s, id, &req, 0, &mut polls, &mut r);
    }
    let mut now = 0;
    for k in 0..600 {
        now = k * 100;
        s.handle_update(chain(1, vec![], 1_000_000 + k as i32), now, &mut r);
        s.handle_timeout(now, &mut r);
        for (id, req) in drain(&mut s) {
            answer(&mut s, id, &req, now, &mut polls, &mut r);
        }
    }
    let most = polls.iter().map(|(t, _)| polls.iter().filter(|(u, _)| *u >= *t && *u < t + 1_000).count()).max();
    assert!(most.unwrap_or(0) <= 1, "sub-chain 1 polls within a second: {most:?}");
    assert!(polls.iter().any(|(_, o)| *o > 900_000), "the lies were believed (skipped)");
    // The lies stop: the poll that acts on the last one is answered below it, and the member
    // reads on from the server's offset.
    let (lies, end) = (polls.len(), now + 60_000);
    while let Some(at) = s.poll_timeout().filter(|t| *t <= end) {
        now = at.max(now + 1);
        s.handle_timeout(now, &mut r);
        for (id, req) in drain(&mut s) {
            answer(&mut s, id, &req, now, &mut polls, &mut r);
        }
    }
    let after: Vec<i32> = polls[lies..].iter().map(|(_, o)| *o).collect();
    assert!(after.len() >= 2 && after[1..].iter().all(|o| *o == 0), "{after:?}");
}
