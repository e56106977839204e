//! The session, one scripted conversation per rule (SPEC.md §15), written as request/response
//! transcripts against the server model, plus a property test of random deliveries.

use confchain::server::Server;
use confchain::session::{
    JoinFailure, Request, RequestId, Response, Session, SessionConfig, SessionEvent, SessionState, SubChain, Update,
};
use confchain::UnverifiedTip;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// `CONFCHAIN_CASES` raises the number of random delivery scripts (default 32).
fn cases() -> u32 {
    std::env::var("CONFCHAIN_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Sessions and the server model, with pushes delivered at once unless held.
struct Net {
    server: Server,
    sessions: Vec<Session>,
    rng: ChaCha20Rng,
    now: u64,
}

impl Net {
    fn new(server: Server, users: &[i64]) -> Net {
        let sessions = users.iter().map(|u| Session::new(*u, SessionConfig::default())).collect();
        Net { server, sessions, rng: rng(7), now: 0 }
    }

    fn index(&self, user: i64) -> usize {
        self.sessions.iter().position(|s| s.user_id() == user).unwrap()
    }

    /// Runs every pending request of every session through the server until all is quiet.
    fn pump(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.sessions.len() {
                while let Some((id, request)) = self.sessions[i].poll_request() {
                    any = true;
                    let from = self.sessions[i].user_id();
                    let (response, pushes) = self.server.handle(from, &request);
                    self.sessions[i].handle_response(id, response, self.now, &mut self.rng);
                    for (to, update) in pushes {
                        let j = self.index(to);
                        self.sessions[j].handle_update(update, self.now, &mut self.rng);
                    }
                }
            }
            if !any {
                break;
            }
        }
    }

    /// Advances time to `t`, firing due timers, pumping after each.
    fn advance_to(&mut self, t: u64) {
        loop {
            let next = self.sessions.iter().filter_map(Session::poll_timeout).min();
            match next {
                Some(at) if at <= t => {
                    self.now = self.now.max(at);
                    for i in 0..self.sessions.len() {
                        self.sessions[i].handle_timeout(self.now, &mut self.rng);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = t;
    }

    fn s(&mut self, user: i64) -> &mut Session {
        let i = self.index(user);
        &mut self.sessions[i]
    }

    fn events(&mut self, user: i64) -> Vec<SessionEvent> {
        let s = self.s(user);
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn join(&mut self, user: i64) {
        let (now, rng) = (self.now, &mut self.rng);
        let i = self.sessions.iter().position(|s| s.user_id() == user).unwrap();
        self.sessions[i].join(now, rng).unwrap();
        self.pump();
    }

    fn update(&mut self, user: i64, u: Update) {
        let i = self.index(user);
        self.sessions[i].handle_update(u, self.now, &mut self.rng);
    }

    fn respond(&mut self, user: i64, id: RequestId, response: Response) {
        let i = self.index(user);
        self.sessions[i].handle_response(id, response, self.now, &mut self.rng);
    }

    fn timeout(&mut self, user: i64) {
        let i = self.index(user);
        self.sessions[i].handle_timeout(self.now, &mut self.rng);
    }

    fn height(&self, user: i64) -> i32 {
        self.sessions[self.index(user)].call().map_or(-1, |c| c.height())
    }
}

/// Takes the one pending request of a session.
fn request(s: &mut Session) -> (RequestId, Request) {
    let r = s.poll_request().expect("a request");
    assert!(s.poll_request().is_none(), "exactly one request");
    r
}

/// Takes the pending requests of a session and returns its poll of sub-chain 0.
fn blocks_poll(s: &mut Session) -> (RequestId, Request) {
    std::iter::from_fn(|| s.poll_request())
        .find(|(_, r)| matches!(r, Request::GetChainBlocks { sub_chain: SubChain::Blocks, .. }))
        .expect("a poll of sub-chain 0")
}

fn blocks_update(sub: i32, blocks: &[Vec<u8>], next_offset: i32) -> Update {
    Update::ChainBlocks { sub_chain_id: sub, blocks: blocks.to_vec(), next_offset }
}

#[test]
fn creator_joins_on_create() {
    let mut net = Net::new(Server::new(), &[1]);
    let mut r = rng(1);
    net.s(1).create(true, 0, &mut r).unwrap();
    let (id, req) = request(net.s(1));
    let Request::CreateConference { public_key: Some(_), block: Some(block) } = &req else { panic!("{req:?}") };
    let (response, _) = net.server.handle(1, &req);
    assert_eq!(UnverifiedTip::from_server_block(&block.to_server_form()).unwrap().height(), 0);
    net.s(1).handle_response(id, response, 0, &mut r);
    assert_eq!(net.s(1).state(), SessionState::Joined);
    let events = net.events(1);
    assert!(events.contains(&SessionEvent::Joined { height: 0 }), "{events:?}");
    assert!(events.contains(&SessionEvent::ParticipantsChanged { user_ids: vec![1] }));
    assert!(events.iter().any(|e| matches!(e, SessionEvent::VerificationStarted { height: 0, .. })));
}

/// pytgcalls #332: an invitee that reads an empty chain must NOT create a second conference; it
/// sends the zero block to joinGroupCall of the same call.
#[test]
fn empty_tip_as_invitee_sends_the_zero_block_to_join() {
    let mut net = Net::new(Server::new(), &[1, 2]);
    let mut r = rng(2);
    net.s(1).create(false, 0, &mut r).unwrap();
    net.pump();
    assert_eq!(net.events(1), vec![SessionEvent::Created]);
    assert_eq!(net.s(1).state(), SessionState::Idle);
    net.s(2).join(0, &mut r).unwrap();
    let (id, req) = request(net.s(2));
    assert_eq!(req, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 });
    let (response, _) = net.server.handle(2, &req);
    assert_eq!(response, Response::Ok(vec![blocks_update(0, &[], 0)]));
    net.s(2).handle_response(id, response, 0, &mut r);
    let (id, req) = request(net.s(2));
    let Request::Join { block, .. } = &req else { panic!("never createConferenceCall: {req:?}") };
    assert_eq!(block.decode().unwrap().height, 0, "the zero block");
    let (response, _) = net.server.handle(2, &req);
    net.s(2).handle_response(id, response, 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    assert_eq!(net.server.height(), 0);
}

/// Two first joiners race with zero blocks: the loser gets CONF_WRITE_CHAIN_INVALID, waits, fetches
/// the new tip and joins on top of it with a new key.
#[test]
fn race_lost_then_won() {
    let mut net = Net::new(Server::existing(), &[1, 2]);
    let mut r = rng(3);
    net.s(1).join(0, &mut r).unwrap();
    net.s(2).join(0, &mut r).unwrap();
    // Both read the empty tip.
    let (id1, tip1) = request(net.s(1));
    let (id2, tip2) = request(net.s(2));
    let (a, _) = net.server.handle(1, &tip1);
    let (b, _) = net.server.handle(2, &tip2);
    net.s(1).handle_response(id1, a, 0, &mut r);
    net.s(2).handle_response(id2, b, 0, &mut r);
    let (id1, join1) = request(net.s(1));
    let (id2, join2) = request(net.s(2));
    let Request::Join { public_key: first_key, .. } = &join2 else { panic!() };
    let first_key = *first_key;
    // 1 wins the height.
    let (ok, _) = net.server.handle(1, &join1);
    net.s(1).handle_response(id1, ok, 0, &mut r);
    let (lost, _) = net.server.handle(2, &join2);
    assert_eq!(lost, Response::Error("CONF_WRITE_CHAIN_INVALID".into()));
    net.s(2).handle_response(id2, lost, 0, &mut r);
    assert!(net.s(2).poll_request().is_none(), "no retry without backoff");
    let retry_at = net.s(2).poll_timeout().unwrap();
    assert!(retry_at >= SessionConfig::default().backoff_ms);
    net.s(2).handle_timeout(retry_at, &mut r);
    let (id, tip) = request(net.s(2));
    assert_eq!(tip, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 });
    let (resp, _) = net.server.handle(2, &tip);
    net.s(2).handle_response(id, resp, retry_at, &mut r);
    let (id, join) = request(net.s(2));
    let Request::Join { public_key, block } = &join else { panic!() };
    assert_ne!(*public_key, first_key, "a fresh key per attempt");
    assert_eq!(block.decode().unwrap().height, 1, "a self-add on the winner's block");
    net.now = retry_at;
    let (resp, pushes) = net.server.handle(2, &join);
    net.s(2).handle_response(id, resp, retry_at, &mut r);
    for (to, u) in pushes {
        net.s(to).handle_update(u, retry_at, &mut r);
    }
    net.pump();
    assert_eq!((net.height(1), net.height(2)), (1, 1));
    assert_eq!(net.s(1).call().unwrap().key_fingerprint(), net.s(2).call().unwrap().key_fingerprint());
}

#[test]
fn retries_are_bounded_with_growing_backoff() {
    let config = SessionConfig { max_attempts: 4, ..SessionConfig::default() };
    let mut s = Session::new(5, config);
    let mut r = rng(4);
    let mut server = Server::existing();
    s.join(0, &mut r).unwrap();
    let mut now = 0;
    let mut waits = Vec::new();
    loop {
        let Some((id, req)) = s.poll_request() else {
            match s.poll_timeout() {
                Some(at) if s.state() == SessionState::Joining => {
                    waits.push(at - now);
                    now = at;
                    s.handle_timeout(now, &mut r);
                    continue;
                }
                _ => break,
            }
        };
        let response = match req {
            Request::GetChainBlocks { .. } => server.handle(5, &req).0,
            Request::Join { .. } => Response::Error("CONF_WRITE_CHAIN_INVALID".into()),
            other => panic!("{other:?}"),
        };
        s.handle_response(id, response, now, &mut r);
    }
    assert_eq!(waits, vec![250, 500, 1000], "backoff doubles");
    assert_eq!(s.state(), SessionState::Failed);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(events, vec![SessionEvent::JoinFailed { reason: JoinFailure::RetriesExhausted { attempts: 4 } }]);
    // Any other error ends the attempt at once with its reason.
    let mut s = Session::new(5, SessionConfig::default());
    s.join(0, &mut r).unwrap();
    let (id, _) = request(&mut s);
    s.handle_response(id, Response::Error("GROUPCALL_INVALID".into()), 0, &mut r);
    assert_eq!(s.poll_event(), Some(SessionEvent::JoinFailed { reason: JoinFailure::Api("GROUPCALL_INVALID".into()) }));
}

/// A conference of `n` members joined one after the other through the server.
fn conference(users: &[i64]) -> Net {
    let mut net = Net::new(Server::new(), users);
    let mut r = rng(9);
    net.s(users[0]).create(true, 0, &mut r).unwrap();
    net.pump();
    for u in &users[1..] {
        net.join(*u);
    }
    for u in users {
        net.events(*u);
    }
    net
}

/// A re-key block built by member `by` on its current state (plain form, not sent yet).
fn rekey_block(net: &mut Net, by: i64) -> confchain::PlainBlock {
    let i = net.index(by);
    net.sessions[i].call().unwrap().build_rekey(&mut net.rng).unwrap()
}

/// Sends a re-key by `by` (who must be at the tip) to the server; `by` learns of it from the
/// response, everyone else's push is lost. Returns its server form.
fn silent_rekey(net: &mut Net, by: i64) -> Vec<u8> {
    let block = rekey_block(net, by);
    let req = Request::DeleteParticipants { user_ids: vec![], block: block.clone(), kick: false };
    let (resp, _lost) = net.server.handle(by, &req);
    let Response::Ok(updates) = resp else { panic!("{resp:?}") };
    let (now, i) = (net.now, net.index(by));
    for u in updates {
        net.sessions[i].handle_update(u, now, &mut net.rng);
    }
    block.to_server_form()
}

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
    assert!(net.events(2).iter().all(|e| !matches!(e, SessionEvent::Error { .. })));
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
    small.sessions[1] = Session::new(2, config);
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

#[test]
fn updates_during_the_join_are_kept() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(8);
    let mut carol = Session::new(3, SessionConfig::default());
    carol.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut carol);
    let (resp, _) = net.server.handle(3, &tip);
    carol.handle_response(id, resp, 0, &mut r);
    let (id, join) = request(&mut carol);
    let (resp, pushes) = net.server.handle(3, &join);
    net.sessions.push(carol);
    for (to, u) in pushes {
        net.update(to, u); // the others apply carol's block
    }
    // Before carol's join response arrives, alice re-keys and the push reaches carol first.
    let block = rekey_block(&mut net, 1);
    let (ok, pushes) = net.server.handle(1, &Request::DeleteParticipants { user_ids: vec![], block, kick: false });
    let Response::Ok(own) = ok else { panic!("{ok:?}") };
    for u in own {
        net.update(1, u); // alice learns of her block from the response
    }
    for (to, u) in pushes {
        net.s(to).handle_update(u, 0, &mut r);
    }
    assert_eq!(net.s(3).state(), SessionState::Joining);
    net.s(3).handle_response(id, resp, 0, &mut r);
    assert_eq!(net.height(3), net.server.height(), "the early update was applied after the join");
    assert_eq!(net.s(3).call().unwrap().key_fingerprint(), net.s(1).call().unwrap().key_fingerprint());
}

#[test]
fn a_refused_block_triggers_a_resync_that_keeps_the_key() {
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
    assert!(events.iter().any(|e| matches!(e, SessionEvent::Error { .. })), "{events:?}");
    let (id, tip) = request(net.s(2));
    assert_eq!(tip, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 });
    // Meanwhile the real chain moved on.
    silent_rekey(&mut net, 1);
    silent_rekey(&mut net, 1);
    let (resp, _) = net.server.handle(2, &tip);
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

#[test]
fn removal_then_rejoin_with_a_new_key() {
    let mut net = conference(&[1, 2, 3]);
    let (now, mut r) = (net.now, rng(11));
    net.s(1).remove(&[2], true, now, &mut r).unwrap();
    let (id, req) = request(net.s(1));
    let Request::DeleteParticipants { kick: true, ref user_ids, .. } = req else { panic!("{req:?}") };
    assert_eq!(user_ids, &vec![2]);
    let (resp, pushes) = net.server.handle(1, &req);
    net.s(1).handle_response(id, resp, now, &mut r);
    for (to, u) in pushes {
        net.s(to).handle_update(u, now, &mut r);
    }
    net.pump();
    // Bob was not pushed the block (no longer a member): his next poll is refused.
    net.advance_to(now + 10_000);
    assert_eq!(net.s(2).state(), SessionState::Removed);
    assert!(net.events(2).iter().any(|e| matches!(e, SessionEvent::Removed { .. })));
    let old_key = net.s(2).call().unwrap().public_key();
    net.join(2);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    assert_ne!(net.s(2).call().unwrap().public_key(), old_key);
    net.advance_to(net.now + 10_000);
    assert_eq!(net.height(2), net.server.height());
    assert_eq!(net.s(2).call().unwrap().key_fingerprint(), net.s(3).call().unwrap().key_fingerprint());
    // Removing someone already gone sends nothing (unless it is a ban).
    let now = net.now;
    net.s(1).remove(&[42], false, now, &mut r).unwrap();
    assert!(net.s(1).poll_request().is_none());
}

#[test]
fn a_block_that_removes_us_is_reported() {
    let mut net = conference(&[1, 2]);
    let (now, mut r) = (net.now, rng(12));
    // The block removing bob reaches him (a push sent before the server dropped him).
    let block = net.s(1).call().unwrap().build_remove(&[2], &mut r).unwrap();
    let server_form = block.to_server_form();
    net.s(2).handle_update(blocks_update(0, &[server_form], 3), now, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Removed);
    assert!(net.events(2).contains(&SessionEvent::Removed { height: Some(2) }));
    assert!(net.s(2).call_mut().unwrap().encrypt(0, b"x", 0, now, &mut r).is_err());
}

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
fn transient_errors_are_retried() {
    let mut net = conference(&[1, 2]);
    let (now, mut r) = (net.now, rng(14));
    net.s(1).send_message(r#"{"random_id":"1"}"#, now, &mut r).unwrap();
    let (id, req) = request(net.s(1));
    net.s(1).handle_response(id, Response::Error("FLOOD_WAIT_3".into()), now, &mut r);
    let at = net.s(1).poll_timeout().unwrap();
    net.s(1).handle_timeout(at, &mut r);
    let (_, again) = request(net.s(1));
    assert_eq!(again, req, "the same encrypted message is sent again");
}

#[test]
fn verification_completes_for_everyone() {
    let mut net = conference(&[1, 2, 3]);
    net.advance_to(net.now + 1);
    let emojis: Vec<_> = [1, 2, 3].iter().map(|u| net.s(*u).call().unwrap().emojis()).collect();
    assert!(emojis[0].is_some());
    assert!(emojis.windows(2).all(|w| w[0] == w[1]), "{emojis:?}");
}

#[test]
fn leaving() {
    let mut net = conference(&[1, 2]);
    net.s(2).leave(0);
    net.pump();
    assert_eq!(net.s(2).state(), SessionState::Left);
    assert!(net.events(2).contains(&SessionEvent::Left));
    assert!(net.s(2).call().is_none());
}

// ---- property test: random deliveries against the server model ----

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
