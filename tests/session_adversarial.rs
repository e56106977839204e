//! The session attacked: a hostile server (crafted offsets, overlapping pages, flood waits of
//! every size), an unreliable network and hostile values. Each test names the harm it rules out.

use confchain::api::ApiError;
use confchain::session::{
    JoinFailure, Request, RequestId, Response, Session, SessionConfig, SessionEvent, SessionState, SubChain, Update,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn drain(s: &mut Session) -> Vec<(RequestId, Request)> {
    std::iter::from_fn(|| s.poll_request()).collect()
}

fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn chain(sub: i32, blocks: Vec<Vec<u8>>, next_offset: i32) -> Update {
    let blocks = blocks.into_iter().map(Into::into).collect();
    match SubChain::from_id(sub) {
        Some(sub_chain) => Update::ChainBlocks { sub_chain, blocks, next_offset },
        // Another sub-chain's update is none of the session's (adapters leave it out): nothing.
        None => Update::Participants { participants: Vec::new() },
    }
}

/// A session that joined an empty call alone at `now` (no server model: the answers are ours).
/// Returns it with its pending requests (the broadcast sub-chain's first poll).
fn joined_alone(user: i64, now: u64, r: &mut ChaCha20Rng) -> (Session, Vec<(RequestId, Request)>) {
    let mut s = Session::new(user, SessionConfig::default()).unwrap();
    s.join(now, r).unwrap();
    let (id, _) = s.poll_request().expect("the tip");
    s.handle_response(id, Response::Ok(vec![chain(0, vec![], 0)]), now, r);
    let (id, req) = s.poll_request().expect("the join");
    let Request::Join { block, .. } = req else { panic!("a join: {req:?}") };
    let updates = vec![chain(0, vec![block.to_server_form()], 1)];
    s.handle_response(id, Response::Ok(updates), now, r);
    assert_eq!(s.state(), SessionState::Joined);
    let pending = drain(&mut s);
    (s, pending)
}

/// Answers a pending poll of `sub` (among `pending`) with `response`; whether there was one.
fn answer_poll(
    s: &mut Session,
    pending: &mut Vec<(RequestId, Request)>,
    sub: SubChain,
    response: impl FnOnce(i32) -> Response,
    now: u64,
    r: &mut ChaCha20Rng,
) -> bool {
    let Some(i) =
        pending.iter().position(|(_, q)| matches!(q, Request::GetChainBlocks { sub_chain, .. } if *sub_chain == sub))
    else {
        return false;
    };
    let (id, req) = pending.remove(i);
    let Request::GetChainBlocks { offset, .. } = req else { unreachable!() };
    s.handle_response(id, response(offset), now, r);
    pending.extend(drain(s));
    true
}

/// Hostile server, overlapping pages: every poll of the broadcast sub-chain is answered with a
/// full page (`poll_limit` blocks) of which only the last is new. The page is "full" and the
/// offset "advanced", but by one block: the session must not re-poll at once, or a server makes
/// it send a poll per block at the same instant (a request storm).
#[test]
fn overlapping_full_pages_do_not_make_a_request_storm() {
    let mut r = rng(1);
    let (mut s, mut pending) = joined_alone(1, 0, &mut r);
    // The first poll (offset -1) learns a high offset, so that overlapping pages stay non-negative.
    assert!(answer_poll(
        &mut s,
        &mut pending,
        SubChain::Broadcasts,
        |_| Response::Ok(vec![chain(1, vec![], 1_000)]),
        0,
        &mut r
    ));
    let now = s.poll_timeout().unwrap();
    s.handle_timeout(now, &mut r);
    pending.extend(drain(&mut s));
    let limit = SessionConfig::default().poll_limit;
    let mut polls = 0;
    while answer_poll(
        &mut s,
        &mut pending,
        SubChain::Broadcasts,
        |offset| {
            let page = (0..limit).map(|k| vec![0xB0, k as u8]).collect();
            Response::Ok(vec![chain(1, page, offset + 1)])
        },
        now,
        &mut r,
    ) {
        polls += 1;
        assert!(polls <= 5, "{polls} polls of one sub-chain at the same instant");
    }
    assert_eq!(s.next_offset(SubChain::Broadcasts), Some(1_000 + polls));
}

/// Hostile values: extreme offsets, `u64::MAX` and backwards time never panic, and hold nothing.
#[test]
fn hostile_offsets_and_times_never_panic_nor_hold() {
    let mut r = rng(4);
    let (mut s, mut pending) = joined_alone(5, 0, &mut r);
    for &o in &[i32::MIN, -1, 0, 1, i32::MAX - 1, i32::MAX] {
        for sub in [0, 1, 2, -1, i32::MIN, i32::MAX] {
            s.handle_update(chain(sub, vec![vec![1, 2, 3]], o), 5, &mut r);
            s.handle_update(chain(sub, vec![], o), 5, &mut r);
            s.handle_update(chain(sub, vec![vec![0; 4]; 3], o), 5, &mut r);
        }
    }
    answer_poll(
        &mut s,
        &mut pending,
        SubChain::Broadcasts,
        |_| Response::Ok(vec![chain(1, vec![vec![7]], i32::MAX)]),
        5,
        &mut r,
    );
    assert!(s.footprint().early_blocks <= 2 * SessionConfig::default().max_buffered_updates);
    for now in [u64::MAX - 1, u64::MAX, 3, 0, u64::MAX] {
        s.handle_timeout(now, &mut r);
        for (id, req) in drain(&mut s) {
            let response = match req {
                Request::GetChainBlocks { .. } => {
                    Response::Ok(vec![chain(0, vec![], i32::MAX), chain(1, vec![], i32::MIN)])
                }
                _ => Response::Error("FLOOD_WAIT_4294967295".into()),
            };
            s.handle_response(id, response, now, &mut r);
        }
        let _ = s.send_message(r#"{"random_id":"1"}"#, now, &mut r);
        let _ = s.poll_timeout();
    }
    assert!(
        matches!(s.state(), SessionState::Joined | SessionState::Resyncing | SessionState::Ended),
        "{:?}",
        s.state()
    );
    assert!(ApiError::parse("FLOOD_WAIT_99999999999999999999") != ApiError::FloodWait { seconds: 0 });
}

/// Hostile server, gap pushes between junk broadcasts: anyone's junk broadcast at the next offset
/// advances sub-chain 1 (broadcasts are checked by the call, not by the offset), and a push beyond
/// a gap asks for a poll. Alternating the two at one instant must not buy a poll per push pair:
/// gap polls of a sub-chain stay a few per second whatever arrives.
#[test]
fn junk_and_gap_pushes_do_not_make_a_request_storm() {
    let mut r = rng(5);
    let (mut s, mut pending) = joined_alone(6, 0, &mut r);
    assert!(answer_poll(
        &mut s,
        &mut pending,
        SubChain::Broadcasts,
        |_| Response::Ok(vec![chain(1, vec![], 10)]),
        0,
        &mut r
    ));
    let now = 20_000;
    s.handle_timeout(now, &mut r);
    pending.extend(drain(&mut s));
    // Whatever is pending is answered with nothing new.
    let mut polls = 0;
    for _ in 0..200 {
        while let Some((id, req)) = pending.pop() {
            if let Request::GetChainBlocks { sub_chain: SubChain::Broadcasts, .. } = req {
                polls += 1;
            }
            s.handle_response(id, Response::Ok(vec![]), now, &mut r);
            pending.extend(drain(&mut s));
        }
        let next = s.next_offset(SubChain::Broadcasts).unwrap();
        s.handle_update(chain(1, vec![vec![0xEE; 8]], next + 1), now, &mut r);
        s.handle_update(chain(1, vec![vec![0xEF; 8]], next + 10), now, &mut r);
        pending.extend(drain(&mut s));
    }
    assert!(polls <= 5, "{polls} polls of sub-chain 1 at one instant");
    assert!(s.footprint().early_blocks <= SessionConfig::default().max_buffered_updates);
}

/// Sessions of `users` joined through the server model, one after another, at time 0.
fn conference(users: &[i64], r: &mut ChaCha20Rng) -> (confchain::server::Server, Vec<Session>) {
    let mut server = confchain::server::Server::new();
    let mut sessions: Vec<Session> = Vec::new();
    for (k, &u) in users.iter().enumerate() {
        let mut s = Session::new(u, SessionConfig::default()).unwrap();
        if k == 0 {
            s.create(true, 0, r).unwrap();
        } else {
            s.join(0, r).unwrap();
        }
        sessions.push(s);
        pump(&mut server, &mut sessions, 0, r);
    }
    (server, sessions)
}

/// Runs every pending request through the server until all is quiet.
fn pump(server: &mut confchain::server::Server, sessions: &mut [Session], now: u64, r: &mut ChaCha20Rng) {
    loop {
        let mut any = false;
        for i in 0..sessions.len() {
            while let Some((id, request)) = sessions[i].poll_request() {
                any = true;
                let (response, pushes) = server.handle(sessions[i].user_id(), &request);
                sessions[i].handle_response(id, response, now, r);
                for (to, update) in pushes {
                    if let Some(j) = sessions.iter().position(|s| s.user_id() == to) {
                        sessions[j].handle_update(update, now, r);
                    }
                }
            }
        }
        if !any {
            return;
        }
    }
}

/// Hostile server, participant updates repeated: "user 2 left" pushed ten times a second while
/// every removal loses a race (`CONF_WRITE_CHAIN_INVALID`). One removal of a user is enough at a
/// time: the session must not start a new one (each with its own retries) per update.
#[test]
fn repeated_left_updates_do_not_multiply_removals() {
    let mut r = rng(6);
    let (mut server, mut sessions) = conference(&[1, 2], &mut r);
    assert!(sessions.iter().all(|s| s.state() == SessionState::Joined));
    let mut s = sessions.remove(0);
    drain(&mut s);
    let left = Update::Participants { participants: vec![confchain::session::CallParticipant::new(2, true)] };
    let mut deletes = 0;
    let mut now = 1_000;
    while now < 21_000 {
        s.handle_update(left.clone(), now, &mut r);
        s.handle_timeout(now, &mut r);
        for (id, req) in drain(&mut s) {
            let response = match &req {
                Request::DeleteParticipants { .. } => {
                    deletes += 1;
                    Response::Error("CONF_WRITE_CHAIN_INVALID".into())
                }
                other => server.handle(1, other).0,
            };
            s.handle_response(id, response, now, &mut r);
        }
        now += 100;
    }
    // One removal with its bounded retries (max_attempts 8), perhaps a second after it gave up.
    assert!(deletes <= 2 * SessionConfig::default().max_attempts as usize, "{deletes} removals in 20 s");
}

/// A hostile server and network at random (seeded): junk and gap pushes on both sub-chains,
/// overlapping and empty pages, odd offsets, every error, flood waits of 0 s and of days,
/// silence, and time that jumps. A driver that sleeps until `poll_timeout()` never spins (a
/// timeout that is due is consumed), polls of a sub-chain stay a few per virtual second, and
/// the footprint stays bounded.
#[test]
fn a_random_hostile_server_never_makes_a_hot_loop() {
    use rand_core::RngCore;
    let errors = [
        "TIMEOUT",
        "INTERNAL",
        "FLOOD_WAIT_0",
        "FLOOD_WAIT_1",
        "FLOOD_PREMIUM_WAIT_4294967295",
        "FLOOD_WAIT_99999999999",
        "CONF_WRITE_CHAIN_INVALID",
        "GROUPCALL_SSRC_DUPLICATE_MUCH",
        "PEER_ID_INVALID",
        "",
    ];
    for seed in 0..24u64 {
        let mut r = rng(100 + seed);
        let mut h = rng(200 + seed);
        let (mut s, mut pending) = joined_alone(7, 0, &mut r);
        let mut now = 0u64;
        let mut polls: Vec<(u64, SubChain)> = Vec::new();
        let config = SessionConfig::default();
        for _step in 0..3_000 {
            for (id, req) in drain(&mut s) {
                if let Request::GetChainBlocks { sub_chain, .. } = req {
                    polls.push((now, sub_chain));
                }
                pending.push((id, req));
            }
            match h.next_u32() % 8 {
                // Answer a pending request (any order).
                0..=2 if !pending.is_empty() => {
                    let i = h.next_u32() as usize % pending.len();
                    let (id, req) = pending.remove(i);
                    let response = match (h.next_u32() % 6, &req) {
                        (0, Request::GetChainBlocks { sub_chain, offset, limit }) => {
                            // A page: overlapping, empty, beyond a gap or at an odd offset.
                            let n = (h.next_u32() % (*limit as u32 + 1)) as usize;
                            let page = (0..n).map(|k| vec![0xA0, k as u8, h.next_u32() as u8]).collect();
                            let next = match h.next_u32() % 5 {
                                0 => offset.saturating_add(n as i32),
                                1 => offset.saturating_add(1),
                                2 => offset.saturating_add(h.next_u32() as i32 % 50),
                                3 => i32::MAX,
                                _ => h.next_u32() as i32,
                            };
                            Response::Ok(vec![chain(sub_chain.id(), page, next)])
                        }
                        (1, _) => Response::Ok(vec![]),
                        (2, _) => continue, // silence
                        _ => Response::Error(errors[h.next_u32() as usize % errors.len()].into()),
                    };
                    s.handle_response(id, response, now, &mut r);
                }
                3 | 4 => {
                    let sub = (h.next_u32() % 2) as i32;
                    let next =
                        s.next_offset(if sub == 0 { SubChain::Blocks } else { SubChain::Broadcasts }).unwrap_or(0);
                    let n = (h.next_u32() % 4) as usize;
                    let page = (0..n).map(|k| vec![0xB0, k as u8]).collect();
                    let at = next.saturating_add((h.next_u32() % 6) as i32);
                    s.handle_update(chain(sub, page, at), now, &mut r);
                }
                5 => now = now.saturating_add(u64::from(h.next_u32() % 3_000)),
                _ => {
                    // The driver: sleep until the session's next timeout, run it.
                    let mut spins = 0;
                    while let Some(t) = s.poll_timeout() {
                        if t > now {
                            break;
                        }
                        s.handle_timeout(now, &mut r);
                        spins += 1;
                        assert!(spins < 50, "seed {seed}: poll_timeout {t} stays due at {now} ({:?})", s.state());
                        for (id, req) in drain(&mut s) {
                            if let Request::GetChainBlocks { sub_chain, .. } = req {
                                polls.push((now, sub_chain));
                            }
                            pending.push((id, req));
                        }
                    }
                }
            }
            for sub in [SubChain::Blocks, SubChain::Broadcasts] {
                let recent = polls.iter().filter(|(t, q)| *q == sub && t + 1_000 > now).count();
                assert!(recent <= 8, "seed {seed}: {recent} polls of {sub:?} in the last second ({:?})", s.state());
            }
            let f = s.footprint();
            assert!(f.early_blocks <= 2 * config.max_buffered_updates, "seed {seed}: {f:?}");
            assert!(f.requests_in_flight + f.queued_requests <= 64, "seed {seed}: {f:?}");
            assert!(f.retries <= 64, "seed {seed}: {f:?}");
            if s.state() != SessionState::Joined && s.state() != SessionState::Resyncing {
                break;
            }
        }
    }
}

/// Unreliable network: the server accepts our join but its answer is late. The deadline passes,
/// the session retries with a fresh key on the new tip (which already lists our old key): it must
/// end in the call, listed once with its new key, and the late answer must not make it leave.
#[test]
fn a_lost_join_answer_is_recovered_by_the_next_attempt() {
    let mut r = rng(8);
    let (mut server, mut sessions) = conference(&[1], &mut r);
    let mut s = Session::new(2, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let mut now = 0;
    let mut late = None;
    for _ in 0..200 {
        while let Some((id, req)) = s.poll_request() {
            let (response, pushes) = server.handle(2, &req);
            for (to, u) in pushes {
                if to == 1 {
                    sessions[0].handle_update(u, now, &mut r);
                }
            }
            if matches!(req, Request::Join { .. }) && late.is_none() {
                late = Some((id, response)); // the server took it; the answer comes too late
                continue;
            }
            s.handle_response(id, response, now, &mut r);
        }
        pump(&mut server, &mut sessions, now, &mut r);
        if s.state() == SessionState::Joined {
            break;
        }
        let Some(t) = s.poll_timeout() else { panic!("nothing to wait for in {:?}: {:?}", s.state(), events(&mut s)) };
        now = t.max(now);
        s.handle_timeout(now, &mut r);
    }
    assert_eq!(s.state(), SessionState::Joined, "{:?}", events(&mut s));
    // The late answer of the first attempt changes nothing (no leave: we are in the call).
    let (id, response) = late.expect("a join was lost");
    s.handle_response(id, response, now, &mut r);
    assert_eq!(s.state(), SessionState::Joined);
    assert!(!drain(&mut s).iter().any(|(_, q)| *q == Request::Leave), "a leave would drop our new participant");
    assert!(now <= 60_000, "joined at {now}");
    let key = s.call().unwrap().public_key();
    let listed =
        s.call().unwrap().participants().iter().filter(|p| p.user_id == 2).map(|p| p.public_key).collect::<Vec<_>>();
    assert_eq!(listed, vec![key], "listed once, with the new key");
}

/// Hostile (or broken) server: it accepts the join (`Ok`) but its answer does not hold our block.
/// The join fails, but the server holds us as a member: the session must leave the media call, or
/// it stays a ghost member the application believes gone.
#[test]
fn an_accepted_join_with_an_unusable_answer_is_left() {
    let mut r = rng(9);
    let mut s = Session::new(3, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, _) = s.poll_request().unwrap();
    s.handle_response(id, Response::Ok(vec![chain(0, vec![], 0)]), 0, &mut r);
    let (id, req) = s.poll_request().unwrap();
    assert!(matches!(req, Request::Join { .. }));
    s.handle_response(id, Response::Ok(vec![chain(0, vec![vec![1, 2, 3]], 1)]), 0, &mut r);
    assert_eq!(s.state(), SessionState::Failed);
    assert!(drain(&mut s).iter().any(|(_, q)| *q == Request::Leave), "no leaveGroupCall: a ghost member");
    assert!(s.join(0, &mut r).is_ok(), "the application can try again at once");
}

/// Unreliable network: after a leave, the server's `updateGroupCallParticipants` saying we left
/// arrives late, while the application's rejoin is in flight. It is about the old participant:
/// the new join must not end on it (it would end every quick rejoin).
#[test]
fn a_late_notice_that_we_left_does_not_end_the_rejoin() {
    let mut r = rng(10);
    let (mut s, _) = joined_alone(11, 0, &mut r);
    s.leave(1_000);
    let (id, _) = s.poll_request().unwrap();
    s.handle_response(id, Response::Ok(vec![]), 1_000, &mut r);
    assert_eq!(s.state(), SessionState::Left);
    s.join(1_000, &mut r).unwrap();
    let me_left = Update::Participants { participants: vec![confchain::session::CallParticipant::new(11, true)] };
    s.handle_update(me_left, 1_010, &mut r);
    let (id, _) = s.poll_request().unwrap();
    s.handle_response(id, Response::Ok(vec![chain(0, vec![], 0)]), 1_020, &mut r);
    let (id, req) = s.poll_request().unwrap();
    let Request::Join { block, .. } = req else { panic!("{req:?}") };
    s.handle_response(id, Response::Ok(vec![chain(0, vec![block.to_server_form()], 1)]), 1_030, &mut r);
    assert_eq!(s.state(), SessionState::Joined, "{:?}", events(&mut s));
}

/// Glue that forwards every `updateGroupCall` (or a hostile server): once our call's id is known,
/// the end of another call must not end ours, nor its identity replace ours.
#[test]
fn another_calls_update_is_not_ours() {
    use confchain::session::CallIdentity;
    let mut r = rng(12);
    let (mut s, _) = joined_alone(13, 0, &mut r);
    let ours = CallIdentity { id: 100, access_hash: 1 };
    s.handle_update(Update::GroupCall { call: ours, discarded: false, invite_link: None }, 1, &mut r);
    assert_eq!(s.call_identity(), Some(ours));
    let other = CallIdentity { id: 200, access_hash: 2 };
    s.handle_update(Update::GroupCall { call: other, discarded: true, invite_link: Some("x".into()) }, 2, &mut r);
    assert_eq!(s.state(), SessionState::Joined);
    assert_eq!(s.call_identity(), Some(ours));
    assert_eq!(s.invite_link(), None);
    // Our own call's end does end it.
    s.handle_update(Update::GroupCall { call: ours, discarded: true, invite_link: None }, 3, &mut r);
    assert_eq!(s.state(), SessionState::Ended);
}

/// Unreliable network: a poll of an earlier call generation is answered after a rejoin, with a
/// block the rules would refuse. It belongs to a generation that ended: ignored, neither applied
/// nor taken as the server's chain (no fail closed), and the new call keeps its key.
#[test]
fn a_poll_answer_of_an_earlier_generation_is_ignored() {
    let mut r = rng(14);
    let (mut s, _) = joined_alone(15, 0, &mut r);
    s.handle_timeout(10_000, &mut r);
    let (old_poll, _) = drain(&mut s)
        .into_iter()
        .find(|(_, q)| matches!(q, Request::GetChainBlocks { sub_chain: SubChain::Blocks, .. }))
        .expect("a poll of sub-chain 0");
    s.leave(10_000);
    let (id, _) = s.poll_request().unwrap();
    s.handle_response(id, Response::Ok(vec![]), 10_000, &mut r);
    s.join(10_000, &mut r).unwrap();
    let (id, _) = s.poll_request().unwrap();
    s.handle_response(id, Response::Ok(vec![chain(0, vec![], 0)]), 10_000, &mut r);
    let (id, req) = s.poll_request().unwrap();
    let Request::Join { block, .. } = req else { panic!("{req:?}") };
    s.handle_response(id, Response::Ok(vec![chain(0, vec![block.to_server_form()], 1)]), 10_000, &mut r);
    assert_eq!(s.state(), SessionState::Joined);
    let key = s.call().unwrap().public_key();
    events(&mut s);
    s.handle_response(old_poll, Response::Ok(vec![chain(0, vec![vec![0x55; 200]], 2)]), 10_001, &mut r);
    s.handle_response(old_poll, Response::Error("GROUPCALL_FORBIDDEN".into()), 10_002, &mut r);
    assert_eq!(s.state(), SessionState::Joined);
    assert_eq!(s.call().unwrap().public_key(), key);
    assert_eq!(s.next_offset(SubChain::Blocks), Some(1));
    assert_eq!(events(&mut s), vec![]);
}

/// Runs the sessions' timers every 100 ms from `from` to `to`, pumping the server after each.
fn run(server: &mut confchain::server::Server, sessions: &mut [Session], from: u64, to: u64, r: &mut ChaCha20Rng) {
    let mut now = from;
    while now <= to {
        for s in sessions.iter_mut() {
            s.handle_timeout(now, r);
        }
        pump(server, sessions, now, r);
        now += 100;
    }
}

/// Issue 30 item 1, poisoned key: a joiner self-adds with the identity point as its key (its
/// signature trivially valid, the block accepted by the rules as by the reference's) and garbage
/// key headers. No block that keeps the entry can be built, so every later join, re-key and
/// removal failed for good. A member with the rights removes the entry (a typed event says why),
/// the call gets a usable key again, and the next joiner gets in.
#[test]
fn a_poisoned_key_is_removed_by_a_member_and_joins_work_again() {
    let mut r = rng(301);
    let (mut server, mut sessions) = conference(&[1, 2], &mut r);
    let block = confchain::server::hostile::poisoned_self_add(server.chain(), 9, true, &mut r).expect("poisoned");
    let key = confchain::PublicKey::from_bytes(confchain::server::hostile::UNUSABLE_KEYS[0]);
    let (response, pushes) = server.handle(9, &Request::Join { public_key: key, block });
    assert!(matches!(response, Response::Ok(_)), "the rules accept it: {response:?}");
    for (to, update) in pushes {
        if let Some(s) = sessions.iter_mut().find(|s| s.user_id() == to) {
            s.handle_update(update, 100, &mut r);
        }
    }
    run(&mut server, &mut sessions, 100, 5_000, &mut r);
    let told: Vec<SessionEvent> = sessions.iter_mut().flat_map(events).collect();
    assert!(
        told.iter().any(|e| matches!(e, SessionEvent::UnusableKey { user_id: 9, .. })),
        "a typed event names the poisoned entry: {told:?}"
    );
    assert!(server.chain().participants().iter().all(|p| p.user_id != 9), "the poisoned entry is removed");
    for s in &sessions {
        assert_eq!(s.state(), SessionState::Joined);
        assert!(s.call().unwrap().has_current_key(), "user {} holds the key again", s.user_id());
    }
    // The next joiner gets in.
    let mut carol = Session::new(3, SessionConfig::default()).unwrap();
    carol.join(5_000, &mut r).unwrap();
    sessions.push(carol);
    run(&mut server, &mut sessions, 5_000, 10_000, &mut r);
    assert_eq!(sessions[2].state(), SessionState::Joined, "{:?}", events(&mut sessions[2]));
}

/// Issue 30 item 1, the joiner's side: while a poisoned entry sits in the tip, a self-add cannot
/// be built; the join retries (a member may remove the entry meanwhile) and, if it stays, fails
/// with a reason that names the entry.
#[test]
fn a_join_over_a_poisoned_key_fails_naming_it() {
    let mut r = rng(302);
    let (mut server, _sessions) = conference(&[1], &mut r);
    let block = confchain::server::hostile::poisoned_self_add(server.chain(), 9, false, &mut r).expect("poisoned");
    let key = confchain::PublicKey::from_bytes(confchain::server::hostile::UNUSABLE_KEYS[0]);
    assert!(matches!(server.handle(9, &Request::Join { public_key: key, block }).0, Response::Ok(_)));
    // Alice (who would remove it) is gone: the joiner alone.
    let mut sessions = vec![Session::new(3, SessionConfig::default()).unwrap()];
    sessions[0].join(0, &mut r).unwrap();
    run(&mut server, &mut sessions, 0, 120_000, &mut r);
    let told = events(&mut sessions[0]);
    assert_eq!(sessions[0].state(), SessionState::Failed);
    assert!(told.contains(&SessionEvent::JoinFailed { reason: JoinFailure::UnusableKey { user_id: 9 } }), "{told:?}");
}

/// Issue 30 item 2, locked call: a joiner's self-add that lowers `external_permissions` to none
/// passes the rules (they only forbid raising them), and from then on no one could join, not even
/// members who drop and rejoin; no member can raise them back (the rules forbid it to everyone:
/// the protocol's own attack). The server model refuses a self-add that changes anything but
/// adding the joiner (*inferred* of the real server), so the next joiner gets in.
#[test]
fn a_self_add_lowering_external_permissions_is_refused_and_joins_still_work() {
    use confchain::{GroupParticipant, Permissions, PrivateKey};
    let mut r = rng(303);
    let (mut server, mut sessions) = conference(&[1, 2], &mut r);
    let key = PrivateKey::generate(&mut r);
    let mut state = server.chain().group_state().clone();
    state.external_permissions = Permissions::NONE;
    state.participants.push(GroupParticipant {
        user_id: 9,
        public_key: key.public_key(),
        flags: Permissions::ADD_USERS,
        version: 0,
    });
    let block = server.chain().build_change_state(state.clone(), &key, &mut r).expect("the rules allow it");
    let (response, _) = server.handle(9, &Request::Join { public_key: key.public_key(), block });
    assert_eq!(response, Response::Error("BLOCK_INVALID".into()), "the server refuses a self-add that locks the call");
    // The evidence that no member could undo it: the rules refuse raising the external
    // permissions to anyone, a member with every right included (the reference's check too).
    let owner = PrivateKey::generate(&mut r);
    let me = GroupParticipant { user_id: 1, public_key: owner.public_key(), flags: Permissions::ALL, version: 0 };
    let closed = confchain::GroupState { participants: vec![me], external_permissions: Permissions::NONE };
    let zero = confchain::build_zero_block(closed.clone(), &owner, &mut r).unwrap();
    let mut locked = confchain::Chain::empty();
    locked.apply(&zero.to_server_form()).unwrap();
    let mut raise = closed;
    raise.external_permissions = Permissions::ADD_USERS | Permissions::REMOVE_USERS;
    let e = locked.build_change_state(raise, &owner, &mut r).unwrap_err();
    assert_eq!(e.message(), "INVALID_BLOCK__NO_PERMISSIONS: Can't increase external permissions");
    // The call is not locked: the next joiner gets in.
    let mut carol = Session::new(3, SessionConfig::default()).unwrap();
    carol.join(0, &mut r).unwrap();
    sessions.push(carol);
    run(&mut server, &mut sessions, 0, 2_000, &mut r);
    assert_eq!(sessions[2].state(), SessionState::Joined, "{:?}", events(&mut sessions[2]));
}

/// Issue 30 items 1 and 2 in the hostile server: its joiners make both attacks through the honest
/// model; the poisoned self-add is accepted (the rules accept it) and removed by a member, the
/// self-add lowering the external permissions is refused.
#[test]
fn the_hostile_servers_joiners_attack_and_the_call_survives() {
    use confchain::server::hostile::{HostileServer, Hostility, JoinerAttack};
    let mut r = rng(3012);
    let (server, mut sessions) = conference(&[1, 2], &mut r);
    let mut hostile = HostileServer::new(server, Hostility::none(), 1);
    let lock = hostile.joiner_attack(false, 0);
    assert!(lock.is_empty());
    let poison = hostile.joiner_attack(true, 0);
    let attacks: Vec<JoinerAttack> = hostile.attacks().copied().collect();
    assert!(
        matches!(
            attacks[..],
            [JoinerAttack::LoweredPermissions { accepted: false, .. }, JoinerAttack::PoisonedKey { .. }]
        ),
        "{attacks:?}"
    );
    for (to, update) in poison {
        if let Some(s) = sessions.iter_mut().find(|s| s.user_id() == to) {
            s.handle_update(update, 0, &mut r);
        }
    }
    let mut server = hostile.server().clone();
    run(&mut server, &mut sessions, 0, 5_000, &mut r);
    assert!(server.chain().participants().iter().all(|p| p.public_key.is_usable()), "the poisoned entry is removed");
}

/// Issue 30 item 8, hot loop on sub-chain 1: nothing checks sub-chain 1 entries and each moves the
/// offset, so a server answering every broadcast poll with a full page of new junk was polled
/// again at once, as fast as it answered. Full-page polls of sub-chain 1 keep the 1 s spacing.
#[test]
fn full_pages_of_new_junk_broadcasts_do_not_make_a_hot_loop() {
    let mut r = rng(308);
    let (mut s, mut pending) = joined_alone(1, 0, &mut r);
    assert!(answer_poll(
        &mut s,
        &mut pending,
        SubChain::Broadcasts,
        |_| Response::Ok(vec![chain(1, vec![], 0)]),
        0,
        &mut r
    ));
    let now = s.poll_timeout().unwrap();
    s.handle_timeout(now, &mut r);
    pending.extend(drain(&mut s));
    let limit = SessionConfig::default().poll_limit;
    let mut polls = 0;
    while polls < 50
        && answer_poll(
            &mut s,
            &mut pending,
            SubChain::Broadcasts,
            |offset| {
                let page = (0..limit).map(|k| vec![0xB0, k as u8, (offset % 251) as u8]).collect();
                Response::Ok(vec![chain(1, page, offset + limit)])
            },
            now,
            &mut r,
        )
    {
        polls += 1;
    }
    assert!(polls <= 2, "{polls} polls of sub-chain 1 at one instant");
    // Time goes on: at most about one poll per second.
    let mut t = now;
    let mut later = 0;
    while t < now + 10_000 {
        t += 100;
        s.handle_timeout(t, &mut r);
        pending.extend(drain(&mut s));
        while answer_poll(
            &mut s,
            &mut pending,
            SubChain::Broadcasts,
            |offset| {
                let page = (0..limit).map(|k| vec![0xB0, k as u8, (offset % 251) as u8]).collect();
                Response::Ok(vec![chain(1, page, offset + limit)])
            },
            t,
            &mut r,
        ) {
            later += 1;
            assert!(later < 1_000, "a hot loop");
        }
    }
    assert!(later <= 12, "{later} polls in 10 s");
}
