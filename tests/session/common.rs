//! Helpers shared by the session tests: the server model wired to sessions ([`Net`]), taking
//! requests, building blocks and chain updates, and a session joined alone with no server.

pub use confchain::api::ApiError;
pub use confchain::server::{Behaviour, Server};
pub use confchain::session::{
    JoinFailure, Request, RequestId, Response, Session, SessionConfig, SessionEvent, SessionState, SubChain, Update,
};
pub use confchain::UnverifiedTip;
pub use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// `CONFCHAIN_CASES` raises the number of random delivery scripts (default 32).
pub fn cases() -> u32 {
    std::env::var("CONFCHAIN_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Sessions and the server model, with pushes delivered at once unless held.
pub struct Net {
    pub server: Server,
    pub sessions: Vec<Session>,
    pub rng: ChaCha20Rng,
    pub now: u64,
    /// Broadcasts from this user fail with `NETWORK` before this time (a short outage).
    pub broadcast_outage: Option<(i64, u64)>,
    /// This user is offline: its requests wait, its pushes are lost, its timers do not run.
    pub offline: Option<i64>,
}

impl Net {
    pub fn new(server: Server, users: &[i64]) -> Net {
        let sessions = users.iter().map(|u| Session::new(*u, SessionConfig::default()).unwrap()).collect();
        Net { server, sessions, rng: rng(7), now: 0, broadcast_outage: None, offline: None }
    }

    pub fn index(&self, user: i64) -> usize {
        self.sessions.iter().position(|s| s.user_id() == user).unwrap()
    }

    /// Runs every pending request of every session through the server until all is quiet.
    pub fn pump(&mut self) {
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
    pub fn advance_to(&mut self, t: u64) {
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

    pub fn s(&mut self, user: i64) -> &mut Session {
        let i = self.index(user);
        &mut self.sessions[i]
    }

    pub fn events(&mut self, user: i64) -> Vec<SessionEvent> {
        let s = self.s(user);
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    pub fn join(&mut self, user: i64) {
        let (now, rng) = (self.now, &mut self.rng);
        let i = self.sessions.iter().position(|s| s.user_id() == user).unwrap();
        self.sessions[i].join(now, rng).unwrap();
        self.pump();
    }

    pub fn update(&mut self, user: i64, u: Update) {
        let i = self.index(user);
        self.sessions[i].handle_update(u, self.now, &mut self.rng);
    }

    pub fn respond(&mut self, user: i64, id: RequestId, response: Response) {
        let i = self.index(user);
        self.sessions[i].handle_response(id, response, self.now, &mut self.rng);
    }

    pub fn timeout(&mut self, user: i64) {
        let i = self.index(user);
        self.sessions[i].handle_timeout(self.now, &mut self.rng);
    }

    pub fn height(&self, user: i64) -> i32 {
        self.sessions[self.index(user)].call().map_or(-1, |c| c.height())
    }
}

/// Takes the one pending request of a session.
pub fn request(s: &mut Session) -> (RequestId, Request) {
    let r = s.poll_request().expect("a request");
    assert!(s.poll_request().is_none(), "exactly one request");
    r
}

/// Takes the pending requests of a session and returns its poll of sub-chain 0.
pub fn blocks_poll(s: &mut Session) -> (RequestId, Request) {
    std::iter::from_fn(|| s.poll_request())
        .find(|(_, r)| matches!(r, Request::GetChainBlocks { sub_chain: SubChain::Blocks, .. }))
        .expect("a poll of sub-chain 0")
}

pub fn blocks_update(sub: i32, blocks: &[Vec<u8>], next_offset: i32) -> Update {
    let sub_chain = SubChain::from_id(sub).expect("sub-chain 0 or 1");
    Update::ChainBlocks { sub_chain, blocks: blocks.iter().map(|b| b.as_slice().into()).collect(), next_offset }
}

/// A conference of `n` members joined one after the other through the server.
pub fn conference(users: &[i64]) -> Net {
    conference_on(Server::new(), users)
}

/// [`conference`] on a server that pushes participant updates (with their sources) and answers
/// `GROUPCALL_JOIN_MISSING` to members it dropped.
pub fn conference_with_participants(users: &[i64]) -> Net {
    let behaviour = Behaviour { participant_updates: true, join_missing: true, ..Behaviour::default() };
    conference_on(Server::with_behaviour(behaviour, 0), users)
}

fn conference_on(server: Server, users: &[i64]) -> Net {
    let mut net = Net::new(server, users);
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
pub fn rekey_block(net: &mut Net, by: i64) -> confchain::PlainBlock {
    let i = net.index(by);
    net.sessions[i].call().unwrap().build_rekey(&mut net.rng).unwrap()
}

/// Sends a re-key by `by` (who must be at the tip) to the server; `by` learns of it from the
/// response, everyone else's push is lost. Returns its server form.
pub fn silent_rekey(net: &mut Net, by: i64) -> Vec<u8> {
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

/// Takes every pending request of a session.
pub fn drain(s: &mut Session) -> Vec<(RequestId, Request)> {
    std::iter::from_fn(|| s.poll_request()).collect()
}

/// A block at bob's next height signed by an outsider (user 9, never a member) that adds itself
/// with every permission: the chain rules refuse it (server form).
pub fn outsider_block(net: &mut Net, outsider: &confchain::PrivateKey) -> Vec<u8> {
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

pub fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

pub fn chain(sub: i32, blocks: Vec<Vec<u8>>, next_offset: i32) -> Update {
    let blocks = blocks.into_iter().map(Into::into).collect();
    match SubChain::from_id(sub) {
        Some(sub_chain) => Update::ChainBlocks { sub_chain, blocks, next_offset },
        // Another sub-chain's update is none of the session's (adapters leave it out): nothing.
        None => Update::Participants { participants: Vec::new() },
    }
}

/// A session that joined an empty call alone at `now` (no server model: the answers are ours).
/// Returns it with its pending requests (the broadcast sub-chain's first poll).
pub fn joined_alone(user: i64, now: u64, r: &mut ChaCha20Rng) -> (Session, Vec<(RequestId, Request)>) {
    joined_alone_with(user, SessionConfig::default(), now, r)
}

/// [`joined_alone`] with `config`.
pub fn joined_alone_with(
    user: i64,
    config: SessionConfig,
    now: u64,
    r: &mut ChaCha20Rng,
) -> (Session, Vec<(RequestId, Request)>) {
    let mut s = Session::new(user, config).unwrap();
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
