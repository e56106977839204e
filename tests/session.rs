//! The session, one scripted conversation per rule (SPEC.md §15), written as request/response
//! transcripts against the server model, plus a property test of random deliveries.

use confchain::api::ApiError;
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
    /// Broadcasts from this user fail with `NETWORK` before this time (a short outage).
    broadcast_outage: Option<(i64, u64)>,
    /// This user is offline: its requests wait, its pushes are lost, its timers do not run.
    offline: Option<i64>,
}

impl Net {
    fn new(server: Server, users: &[i64]) -> Net {
        let sessions = users.iter().map(|u| Session::new(*u, SessionConfig::default()).unwrap()).collect();
        Net { server, sessions, rng: rng(7), now: 0, broadcast_outage: None, offline: None }
    }

    fn index(&self, user: i64) -> usize {
        self.sessions.iter().position(|s| s.user_id() == user).unwrap()
    }

    /// Runs every pending request of every session through the server until all is quiet.
    fn pump(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.sessions.len() {
                if self.offline == Some(self.sessions[i].user_id()) {
                    continue;
                }
                while let Some((id, request)) = self.sessions[i].poll_request() {
                    any = true;
                    let from = self.sessions[i].user_id();
                    let out = self.broadcast_outage.is_some_and(|(u, until)| u == from && self.now < until);
                    let (response, pushes) = if out && matches!(request, Request::SendBroadcast { .. }) {
                        (Response::Error("NETWORK".into()), Vec::new())
                    } else {
                        self.server.handle(from, &request)
                    };
                    self.sessions[i].handle_response(id, response, self.now, &mut self.rng);
                    for (to, update) in pushes {
                        if self.offline == Some(to) {
                            continue;
                        }
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
            let offline = self.offline;
            let next =
                self.sessions.iter().filter(|s| Some(s.user_id()) != offline).filter_map(Session::poll_timeout).min();
            match next {
                Some(at) if at <= t => {
                    self.now = self.now.max(at);
                    for i in 0..self.sessions.len() {
                        if Some(self.sessions[i].user_id()) != offline {
                            self.sessions[i].handle_timeout(self.now, &mut self.rng);
                        }
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
    let sub_chain = SubChain::from_id(sub).expect("sub-chain 0 or 1");
    Update::ChainBlocks { sub_chain, blocks: blocks.iter().map(|b| b.as_slice().into()).collect(), next_offset }
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
    assert_eq!(net.events(1), vec![SessionEvent::Created { call: None, invite_link: None }]);
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
    let mut s = Session::new(5, config).unwrap();
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
    let mut s = Session::new(5, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, _) = request(&mut s);
    s.handle_response(id, Response::Error("GROUPCALL_INVALID".into()), 0, &mut r);
    assert_eq!(s.poll_event(), Some(SessionEvent::JoinFailed { reason: JoinFailure::Api(ApiError::CallInvalid) }));
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
    // Brought to the tip first: another member may have re-keyed meanwhile (e.g. away from an
    // H.264 blackout, `SessionConfig::end_video_blackouts`).
    let (h, all) = (net.height(by), net.server.blocks().to_vec());
    let next = usize::try_from(h + 1).unwrap();
    if next < all.len() {
        net.update(by, blocks_update(0, &all[next..], all.len() as i32));
    }
    let block = rekey_block(net, by);
    let req = Request::DeleteParticipants { user_ids: vec![], block: block.clone(), kick: true };
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

#[test]
fn updates_during_the_join_are_kept() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(8);
    let mut carol = Session::new(3, SessionConfig::default()).unwrap();
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
    let (ok, pushes) = net.server.handle(1, &Request::DeleteParticipants { user_ids: vec![], block, kick: true });
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

// ---- issue 23: a hostile server; issue 24: the real server's behaviours ----

/// Takes every pending request of a session.
fn drain(s: &mut Session) -> Vec<(RequestId, Request)> {
    std::iter::from_fn(|| s.poll_request()).collect()
}

/// A block at bob's next height signed by an outsider (user 9, never a member) that adds itself
/// with every permission: the chain rules refuse it (server form).
fn outsider_block(net: &mut Net, outsider: &confchain::PrivateKey) -> Vec<u8> {
    use confchain::wire::{to_server_form, Change, GroupParticipant};
    let honest = rekey_block(net, 1);
    let mut b = honest.decode().unwrap();
    for c in &mut b.changes {
        if let Change::SetGroupState(state) = c {
            state.participants.push(GroupParticipant {
                user_id: 9,
                public_key: outsider.public_key(),
                flags: confchain::Permissions::ALL,
                version: 0,
            });
        }
    }
    b.signature_public_key = Some(outsider.public_key());
    b.signature = outsider.sign(&b.signing_bytes());
    let bytes = to_server_form(&b.encode()).unwrap();
    assert!(net.s(2).call().unwrap().check_block(&bytes).is_err(), "the rules refuse it");
    bytes
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

/// Issue 23 item 2: GROUPCALL_FORBIDDEN stops encryption (the call, its media handles, queued
/// messages) and leaves the media call.
#[test]
fn forbidden_closes_the_call_and_its_media_handles() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(21);
    let encryptor = net.s(2).call().unwrap().media_encryptor(&mut r);
    let mut out = Vec::new();
    encryptor.encrypt_into(0, b"frame", 0, 0, &mut out).unwrap();
    net.s(2).send_message(r#"{"random_id":"5"}"#, 0, &mut r).unwrap();
    let (id, _) = request(net.s(2));
    net.s(2).handle_response(id, Response::Error("GROUPCALL_FORBIDDEN".into()), 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Removed);
    assert!(net.events(2).contains(&SessionEvent::Removed { height: None }));
    let kind = encryptor.encrypt_into(0, b"frame", 0, 0, &mut out).unwrap_err().kind();
    assert_eq!(kind, confchain::ErrorKind::CallClosed);
    assert!(net.s(2).call_mut().unwrap().encrypt(0, b"x", 0, 0, &mut r).is_err());
    assert!(net.s(2).send_message(r#"{"random_id":"6"}"#, 0, &mut r).is_err());
    let sent: Vec<_> = drain(net.s(2)).into_iter().map(|(_, r)| r).collect();
    assert_eq!(sent, vec![Request::Leave], "leaveGroupCall, and nothing else");
}

/// Issue 23 item 2: a media encryptor taken before leaving refuses after it (and after the call
/// is dropped); a removal by a block closes the call and leaves the media call.
#[test]
fn leaving_removal_and_dropping_close_every_handle() {
    let mut net = conference(&[1, 2, 3]);
    let mut r = rng(22);
    let encryptor = net.s(2).call().unwrap().media_encryptor(&mut r);
    net.s(2).leave(0);
    let mut out = Vec::new();
    let err = encryptor.encrypt_into(0, b"an hour later", 0, 3_600_000, &mut out).unwrap_err();
    assert_eq!(err.kind(), confchain::ErrorKind::CallClosed);
    assert_eq!(err.kind().name(), "CALL_CLOSED");
    // Removal by a block.
    let decryptor = net.s(3).call().unwrap().media_decryptor();
    let block = net.s(1).call().unwrap().build_remove(&[3], &mut r).unwrap().to_server_form();
    let h = net.height(3);
    net.s(3).handle_update(blocks_update(0, &[block], h + 2), 0, &mut r);
    assert_eq!(net.s(3).state(), SessionState::Removed);
    assert!(decryptor.is_closed());
    assert!(drain(net.s(3)).iter().any(|(_, r)| *r == Request::Leave), "removal leaves the media call");
    // A dropped call closes its handles.
    let i = net.index(1);
    let encryptor = net.sessions[i].call().unwrap().media_encryptor(&mut r);
    net.sessions.remove(i);
    assert_eq!(encryptor.encrypt_into(0, b"x", 0, 0, &mut out).unwrap_err().kind(), confchain::ErrorKind::CallClosed);
}

/// Issue 23 item 5: every request has a deadline; past it the session acts as on TIMEOUT, and a
/// late response is ignored. `poll_timeout` includes the deadlines.
#[test]
fn requests_have_deadlines_and_late_responses_are_ignored() {
    let mut r = rng(23);
    let config = SessionConfig::default();
    let mut s = Session::new(5, config.clone()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, _) = request(&mut s);
    assert_eq!(s.poll_timeout(), Some(config.request_timeout_ms));
    s.handle_timeout(config.request_timeout_ms, &mut r);
    assert_eq!(s.requests_in_flight(), 0);
    // The late answer does nothing; the retry comes after the backoff.
    s.handle_response(id, Response::Ok(vec![blocks_update(0, &[], 0)]), config.request_timeout_ms, &mut r);
    assert!(s.poll_request().is_none());
    let at = s.poll_timeout().unwrap();
    s.handle_timeout(at, &mut r);
    assert!(matches!(request(&mut s).1, Request::GetChainBlocks { offset: -1, .. }));
    // A poll that is never answered does not stop the polling.
    let mut net = conference(&[1, 2]);
    let t = net.s(2).poll_timeout().unwrap();
    net.s(2).handle_timeout(t, &mut r);
    let polls = drain(net.s(2));
    assert!(!polls.is_empty());
    net.now = t + config.request_timeout_ms + config.poll_interval_ms;
    net.timeout(2);
    let t = net.s(2).poll_timeout().unwrap();
    net.now = t;
    net.timeout(2);
    assert!(drain(net.s(2)).iter().any(|(_, r)| matches!(r, Request::GetChainBlocks { .. })), "polls again");
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

/// Issue 23 item 6: out-of-range configuration is an error, not a hot loop.
#[test]
fn the_configuration_is_validated() {
    let bad = [
        SessionConfig { poll_limit: 0, ..SessionConfig::default() },
        SessionConfig { poll_interval_ms: 0, ..SessionConfig::default() },
        SessionConfig { max_attempts: 0, ..SessionConfig::default() },
        SessionConfig { backoff_ms: 0, ..SessionConfig::default() },
        SessionConfig { max_backoff_ms: 1, ..SessionConfig::default() },
        SessionConfig { request_timeout_ms: 0, ..SessionConfig::default() },
        SessionConfig { max_buffered_updates: 0, ..SessionConfig::default() },
    ];
    for config in bad {
        let e = Session::new(1, config.clone()).unwrap_err();
        assert_eq!(e.kind(), confchain::ErrorKind::InvalidInput, "{config:?}");
    }
    assert!(Session::new(1, SessionConfig::default()).is_ok());
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

/// Issue 23 item 8: a join retry scheduled before `leave()` dies with its attempt: it never fires
/// inside the next join.
#[test]
fn a_retry_scheduled_before_leave_does_not_fire_in_the_next_join() {
    let mut net = conference(&[1]);
    let mut r = rng(26);
    let mut s = Session::new(2, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, net.server.handle(2, &tip).0, 0, &mut r);
    let (id, _) = request(&mut s);
    s.handle_response(id, Response::Error("CONF_WRITE_CHAIN_INVALID".into()), 0, &mut r);
    let retry_at = s.poll_timeout().unwrap();
    s.leave(0);
    for (id, _) in drain(&mut s) {
        s.handle_response(id, Response::Ok(vec![]), 0, &mut r);
    }
    s.join(1, &mut r).unwrap();
    let first = drain(&mut s);
    assert_eq!(first.len(), 1, "one tip fetch");
    s.handle_timeout(retry_at + 1, &mut r);
    assert!(s.poll_request().is_none(), "the old attempt's retry is gone");
    let _ = net.events(1);
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

// ---- issue 24 ----

/// FLOOD_WAIT_X: no request of that kind until the wait ends; a wait over the maximum ends the
/// join with a reason that carries X.
#[test]
fn flood_waits_are_waited_out_or_end_the_join() {
    let mut r = rng(30);
    let server = Server::existing();
    let mut s = Session::new(5, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    let mut server = server;
    s.handle_response(id, server.handle(5, &tip).0, 0, &mut r);
    let (id, join) = request(&mut s);
    assert!(matches!(join, Request::Join { .. }));
    s.handle_response(id, Response::Error("FLOOD_WAIT_30".into()), 0, &mut r);
    let mut now;
    let mut join_sent_at = None;
    while join_sent_at.is_none() {
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now, &mut r);
        for (id, req) in drain(&mut s) {
            match req {
                Request::Join { .. } => join_sent_at = Some(now),
                other => s.handle_response(id, server.handle(5, &other).0, now, &mut r),
            }
        }
    }
    assert!(join_sent_at.unwrap() >= 30_000, "no join during the wait: {join_sent_at:?}");
    let mut s = Session::new(5, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, _) = request(&mut s);
    s.handle_response(id, Response::Error("FLOOD_PREMIUM_WAIT_3600".into()), 0, &mut r);
    assert_eq!(s.state(), SessionState::Failed);
    assert_eq!(s.poll_event(), Some(SessionEvent::JoinFailed { reason: JoinFailure::FloodWait { seconds: 3600 } }));
}

/// JOIN_MISSING, GROUPCALL_INVALID and a discarded call end the call: a distinct state and event,
/// encryption stops.
#[test]
fn the_end_of_the_call_is_distinct_from_removal_and_leaving() {
    for (error, reason) in [
        ("GROUPCALL_JOIN_MISSING", confchain::session::EndReason::JoinMissing),
        ("GROUPCALL_INVALID", confchain::session::EndReason::CallInvalid),
    ] {
        let mut net = conference(&[1, 2]);
        let mut r = rng(31);
        let t = net.s(2).poll_timeout().unwrap();
        net.s(2).handle_timeout(t, &mut r);
        let (id, _) = blocks_poll(net.s(2));
        net.s(2).handle_response(id, Response::Error(error.into()), t, &mut r);
        assert_eq!(net.s(2).state(), SessionState::Ended);
        assert!(net.events(2).contains(&SessionEvent::Ended { reason }));
        assert!(net.s(2).call().unwrap().is_closed());
    }
    let mut net = conference(&[1, 2]);
    let mut r = rng(32);
    let call = confchain::session::CallIdentity { id: 77, access_hash: -3 };
    net.s(2).handle_update(Update::GroupCall { call, discarded: true, invite_link: None }, 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Ended);
    let events = net.events(2);
    assert!(events.contains(&SessionEvent::Ended { reason: confchain::session::EndReason::Discarded }));
    assert_eq!(net.s(2).call_identity(), Some(call));
    assert!(net.s(2).call().unwrap().is_closed());
}

/// GROUPCALL_SSRC_DUPLICATE_MUCH on a join means rejoin.
#[test]
fn ssrc_duplicate_rejoins() {
    let mut r = rng(33);
    let mut server = Server::existing();
    let mut s = Session::new(5, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, server.handle(5, &tip).0, 0, &mut r);
    let (id, _) = request(&mut s);
    s.handle_response(id, Response::Error("GROUPCALL_SSRC_DUPLICATE_MUCH".into()), 0, &mut r);
    assert_eq!(s.state(), SessionState::Joining);
    let at = s.poll_timeout().unwrap();
    s.handle_timeout(at, &mut r);
    let (id, tip) = request(&mut s);
    s.handle_response(id, server.handle(5, &tip).0, at, &mut r);
    let (id, join) = request(&mut s);
    let (resp, _) = server.handle(5, &join);
    s.handle_response(id, resp, at, &mut r);
    assert_eq!(s.state(), SessionState::Joined);
}

/// Leave while a join is in flight: when the server accepts the join after `leave()`, the session
/// leaves again, so no ghost member stays.
#[test]
fn a_join_accepted_after_leave_is_left_again() {
    let mut net = conference(&[1]);
    let mut r = rng(34);
    let mut s = Session::new(2, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, net.server.handle(2, &tip).0, 0, &mut r);
    let (join_id, join) = request(&mut s);
    s.leave(0);
    let (leave_id, leave) = request(&mut s);
    assert_eq!(leave, Request::Leave);
    // The transport reorders: the leave is processed first, then the join.
    let (left, _) = net.server.handle(2, &leave);
    let (joined, _) = net.server.handle(2, &join);
    s.handle_response(leave_id, left, 0, &mut r);
    assert_eq!(s.state(), SessionState::Left);
    s.handle_response(join_id, joined, 0, &mut r);
    let (_, again) = request(&mut s);
    assert_eq!(again, Request::Leave, "the ghost is removed");
    net.server.handle(2, &again);
    assert!(!net.server.members().any(|u| u == 2));
    assert_eq!(s.state(), SessionState::Left);
}

/// `updateGroupCall` gives the call's identity (event and accessor); a create carries it.
#[test]
fn the_call_identity_is_surfaced() {
    let mut r = rng(35);
    let mut s = Session::new(1, SessionConfig::default()).unwrap();
    s.create(false, 0, &mut r).unwrap();
    let (id, _) = request(&mut s);
    let call = confchain::session::CallIdentity { id: 10, access_hash: 20 };
    let link = Some("https://t.me/call/abc".to_owned());
    let update = Update::GroupCall { call, discarded: false, invite_link: link.clone() };
    s.handle_response(id, Response::Ok(vec![update]), 0, &mut r);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(events.contains(&SessionEvent::CallIdentity { call, invite_link: link.clone() }));
    assert!(events.contains(&SessionEvent::Created { call: Some(call), invite_link: link.clone() }));
    assert_eq!(s.call_identity(), Some(call));
    assert_eq!(s.invite_link(), link.as_deref());
}

/// The join response may carry later blocks (and broadcasts): they are applied through the rules.
#[test]
fn a_join_response_with_later_blocks_is_applied() {
    let mut net = conference(&[1]);
    let mut r = rng(36);
    let mut s = Session::new(2, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, net.server.handle(2, &tip).0, 0, &mut r);
    let (id, join) = request(&mut s);
    let (resp, pushes) = net.server.handle(2, &join);
    for (to, u) in pushes {
        if to == 1 {
            net.update(1, u);
        }
    }
    silent_rekey(&mut net, 1);
    let Response::Ok(mut updates) = resp else { panic!() };
    // The server's answer holds our block (offset 1) and the re-key after it (offset 2).
    updates.retain(|u| !matches!(u, Update::ChainBlocks { sub_chain: SubChain::Blocks, .. }));
    updates.insert(0, blocks_update(0, &net.server.blocks()[1..3], 3));
    s.handle_response(id, Response::Ok(updates), 0, &mut r);
    assert_eq!(s.state(), SessionState::Joined);
    assert_eq!(s.call().unwrap().height(), 2);
    assert_eq!(s.call().unwrap().key_fingerprint(), net.s(1).call().unwrap().key_fingerprint());
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

/// A last-block-only answer whose block no longer lists our key: we were removed (a lost push).
#[test]
fn a_last_block_without_us_means_removed() {
    let mut net = conference(&[1, 2, 3]);
    let mut r = rng(42);
    silent_rekey(&mut net, 1);
    let block = net.s(1).call().unwrap().build_remove(&[2], &mut r).unwrap();
    let req = Request::DeleteParticipants { user_ids: vec![2], block, kick: false };
    let (resp, _lost) = net.server.handle(1, &req);
    net.respond(1, 0, resp);
    let t = net.s(2).poll_timeout().unwrap();
    net.s(2).handle_timeout(t, &mut r);
    let (id, _) = blocks_poll(net.s(2));
    let all = net.server.blocks();
    let last = blocks_update(0, &all[all.len() - 1..], all.len() as i32);
    net.s(2).handle_response(id, Response::Ok(vec![last]), t, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Removed);
    assert!(net.s(2).call().unwrap().is_closed());
}

/// `updateGroupCallParticipants` saying that we left: the server dropped us from the media call.
#[test]
fn told_that_we_left_ends_the_call() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(43);
    let me = confchain::session::CallParticipant { user_id: 2, left: true };
    net.s(2).handle_update(Update::Participants { participants: vec![me] }, 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Ended);
    assert!(net.s(2).call().unwrap().is_closed());
}

/// Pruning: users who left are removed with `only_left`, bounded, deduplicated, after a small
/// random delay; an option turns it off.
#[test]
fn members_who_left_are_pruned() {
    use confchain::session::CallParticipant;
    let mut net = conference(&[1, 2, 3]);
    let mut r = rng(38);
    let left = |user_id| CallParticipant { user_id, left: true };
    let update = Update::Participants { participants: vec![left(3), left(3), left(42)] };
    net.s(1).handle_update(update.clone(), 0, &mut r);
    net.s(1).handle_update(update, 0, &mut r);
    assert!(net.s(1).poll_request().is_none(), "not at once");
    let at = net.s(1).poll_timeout().unwrap();
    assert!(at <= SessionConfig::default().max_prune_delay_ms);
    net.s(1).handle_timeout(at, &mut r);
    let deletes: Vec<_> =
        drain(net.s(1)).into_iter().filter(|(_, r)| matches!(r, Request::DeleteParticipants { .. })).collect();
    assert_eq!(deletes.len(), 1);
    let Request::DeleteParticipants { user_ids, kick, .. } = &deletes[0].1 else { panic!() };
    assert_eq!((user_ids.as_slice(), *kick), (&[3][..], false));
    // Turned off.
    let mut s = Session::new(1, SessionConfig { prune_left: false, ..SessionConfig::default() }).unwrap();
    s.create(true, 0, &mut r).unwrap();
    let mut server = Server::new();
    while let Some((id, req)) = s.poll_request() {
        let (resp, _) = server.handle(1, &req);
        s.handle_response(id, resp, 0, &mut r);
    }
    s.handle_update(Update::Participants { participants: vec![left(3)] }, 0, &mut r);
    s.handle_timeout(60_000, &mut r);
    assert!(!drain(&mut s).iter().any(|(_, r)| matches!(r, Request::DeleteParticipants { .. })));
}

/// A join that passed its deadline, then failed for good, but that the server accepted after all:
/// the late answer is met with `leaveGroupCall`.
#[test]
fn a_join_accepted_after_its_deadline_is_left_when_out_of_the_call() {
    let mut net = conference(&[1]);
    let mut r = rng(39);
    let config = SessionConfig { max_attempts: 1, ..SessionConfig::default() };
    let mut s = Session::new(2, config.clone()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, net.server.handle(2, &tip).0, 0, &mut r);
    let (join_id, join) = request(&mut s);
    s.handle_timeout(config.request_timeout_ms, &mut r);
    assert_eq!(s.state(), SessionState::Failed);
    let (late, _) = net.server.handle(2, &join);
    s.handle_response(join_id, late, config.request_timeout_ms + 1, &mut r);
    assert_eq!(request(&mut s).1, Request::Leave);
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

// ---- property test: a hostile server ----

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
                    let p = confchain::session::CallParticipant { user_id: 1, left };
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

/// A removal queues `leaveGroupCall`; a rejoin before the application sent it drops it, so it can
/// never remove the new participant.
#[test]
fn a_rejoin_drops_an_unsent_leave() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(41);
    net.s(2).send_message(r#"{"random_id":"9"}"#, 0, &mut r).unwrap();
    let (id, _) = request(net.s(2));
    net.s(2).handle_response(id, Response::Error("GROUPCALL_FORBIDDEN".into()), 0, &mut r);
    net.s(2).join(0, &mut r).unwrap();
    let queued: Vec<_> = drain(net.s(2)).into_iter().map(|(_, r)| r).collect();
    assert_eq!(queued, vec![Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 }]);
}

/// A flood wait holds for its request kind whatever became of the operation that met it: a
/// re-key told FLOOD_WAIT_30 gives up, and the next re-key waits for the end of the wait.
#[test]
fn a_flood_wait_holds_for_its_kind() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(44);
    net.s(1).rekey(None, &mut r).unwrap();
    let (id, _) = request(net.s(1));
    net.s(1).handle_response(id, Response::Error("FLOOD_WAIT_30".into()), 1_000, &mut r);
    net.s(1).rekey(None, &mut r).unwrap();
    assert!(!drain(net.s(1)).iter().any(|(_, r)| matches!(r, Request::DeleteParticipants { .. })));
    net.s(1).handle_timeout(30_999, &mut r);
    assert!(!drain(net.s(1)).iter().any(|(_, r)| matches!(r, Request::DeleteParticipants { .. })));
    net.s(1).handle_timeout(31_000, &mut r);
    assert!(drain(net.s(1)).iter().any(|(_, r)| matches!(r, Request::DeleteParticipants { .. })));
}

/// Issue 24 item 7: a re-key removes nobody, and travels in the form of the one request an
/// official client sends for such a block (tdlib's ban of users already gone): `kick`, never
/// `only_left` with no ids; the block keeps every member and the server model applies it.
#[test]
fn a_rekey_travels_as_a_kick_that_removes_nobody() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(45);
    net.s(1).rekey(None, &mut r).unwrap();
    let (_, req) = request(net.s(1));
    let Request::DeleteParticipants { user_ids, kick, .. } = req else { panic!("{req:?}") };
    assert!(user_ids.is_empty() && kick, "a re-key is sent as kick with no ids");
}
