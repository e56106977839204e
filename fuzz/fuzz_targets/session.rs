//! Structure-aware: one `Session` (user 1) joins a real conference held by the server model and
//! is then driven by an `Arbitrary` script of responses (honest, errors of every kind, crafted
//! pages), pushed updates (blocks and broadcasts from the real chain, mutated; messages; the
//! call's end; participant updates), timeouts and application actions. Invariants: no panic; the
//! footprint stays within the configuration's bounds; the session never sends more than
//! `MAX_REQUESTS_PER_SECOND` requests in one virtual second on its own (application actions
//! aside): a hot loop fails.
#![no_main]

use std::collections::VecDeque;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use confchain::api::{CallIdentity, CallParticipant, Request, RequestId, Response, SubChain, Update};
use confchain::server::hostile::poisoned_self_add;
use confchain::server::Server;
use confchain::session::{Session, SessionConfig, SessionState};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// The simulator's bound (`confchain::sim::MAX_REQUESTS_PER_SECOND`).
const MAX_REQUESTS_PER_SECOND: usize = 100;
/// Requests kept to answer; older ones are never answered (a silent server).
const OUTSTANDING: usize = 64;

#[derive(Arbitrary, Debug)]
enum Error {
    FloodWait(u16),
    PremiumFloodWait(u16),
    ChainRace,
    Forbidden,
    JoinMissing,
    CallInvalid,
    SsrcDuplicate,
    Timeout,
    Internal,
    Other,
}

impl Error {
    fn text(&self) -> String {
        match self {
            Error::FloodWait(s) => format!("FLOOD_WAIT_{s}"),
            Error::PremiumFloodWait(s) => format!("FLOOD_PREMIUM_WAIT_{s}"),
            Error::ChainRace => "CONF_WRITE_CHAIN_INVALID".into(),
            Error::Forbidden => "GROUPCALL_FORBIDDEN".into(),
            Error::JoinMissing => "GROUPCALL_JOIN_MISSING".into(),
            Error::CallInvalid => "GROUPCALL_INVALID".into(),
            Error::SsrcDuplicate => "GROUPCALL_SSRC_DUPLICATE_MUCH".into(),
            Error::Timeout => "TIMEOUT".into(),
            Error::Internal => "INTERNAL_SERVER_ERROR".into(),
            Error::Other => "PEER_ID_INVALID".into(),
        }
    }
}

/// An entry of a page or push: a real block or broadcast, maybe mutated, raw bytes, or a
/// joiner's self-add on the real tip with a key of small order (issue 30 item 1).
#[derive(Arbitrary, Debug)]
enum Entry {
    Block { index: u8, mutation: Mutation },
    Broadcast { index: u8, mutation: Mutation },
    Raw(Vec<u8>),
    Poisoned { index: u8 },
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    None,
    Flip { at: u16, xor: u8 },
    Truncate { at: u16 },
    Append(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Page {
    sub_chain_id: i8,
    entries: Vec<Entry>,
    /// The entries repeated to fill a page of this many (modulo 1,001: up to the largest page
    /// size a session polls with), or the first 8 of them as they are when 0.
    fill: u16,
    /// Relative to the real chain's length (so that offsets land near the real ones).
    next_offset_delta: i8,
}

#[derive(Arbitrary, Debug)]
enum Answer {
    /// What the server model answers (its pushes to us are delivered too).
    Honest,
    Error(Error),
    Pages(Vec<Page>),
    /// `Ok` with nothing.
    Empty,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Answers one of the requests still waiting.
    Respond {
        pick: u8,
        answer: Answer,
    },
    /// Forgets one request: it is never answered.
    Silence {
        pick: u8,
    },
    Push(Page),
    Message {
        from: u8,
        bytes: Vec<u8>,
    },
    CallEnded {
        discarded: bool,
    },
    Participants(Vec<(u8, bool)>),
    /// Advances virtual time and fires what is due.
    Wait {
        ms: u16,
    },
    Join,
    Leave,
    Remove {
        user: u8,
        kick: bool,
    },
    Rekey,
    SendMessage,
}

#[derive(Arbitrary, Debug)]
struct Script {
    seed: u64,
    ops: Vec<Op>,
}

/// `Session::new` as it is (infallible) or as the session rewrite makes it (a `Result`: the
/// default configuration is valid).
trait IntoSession {
    fn into_session(self) -> Session;
}

impl IntoSession for Session {
    fn into_session(self) -> Session {
        self
    }
}

#[allow(dead_code)]
impl IntoSession for confchain::Result<Session> {
    fn into_session(self) -> Session {
        self.unwrap()
    }
}

fn new_session(user_id: i64) -> Session {
    Session::new(user_id, SessionConfig::default()).into_session()
}

/// A conference of users 2 and 3 on the server model, its blocks and broadcasts, and poisoned
/// self-adds on its tip (users 1 and 4, honest and garbage key headers).
struct World {
    server: Server,
    blocks: Vec<Vec<u8>>,
    broadcasts: Vec<Vec<u8>>,
    poisoned: Vec<Vec<u8>>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut rng = common::rng(7);
        let mut server = Server::new();
        let mut sessions = vec![new_session(2), new_session(3)];
        sessions[0].create(true, 0, &mut rng).unwrap();
        for round in 0..4 {
            if round == 1 {
                sessions[1].join(0, &mut rng).unwrap();
            }
            if round == 2 {
                let _ = sessions[0].rekey(None, &mut rng);
            }
            for _ in 0..20 {
                for i in 0..sessions.len() {
                    let user = sessions[i].user_id();
                    while let Some((id, request)) = sessions[i].poll_request() {
                        let (response, pushes) = server.handle(user, &request);
                        sessions[i].handle_response(id, response, 0, &mut rng);
                        for (to, update) in pushes {
                            if let Some(s) = sessions.iter_mut().find(|s| s.user_id() == to) {
                                s.handle_update(update, 0, &mut rng);
                            }
                        }
                    }
                }
            }
        }
        let (blocks, broadcasts) = (server.blocks().to_vec(), server.broadcasts().to_vec());
        assert!(blocks.len() >= 3 && !broadcasts.is_empty(), "the fixture conference was built");
        let mut tip = confchain::Chain::empty();
        for b in &blocks {
            tip.apply(b).unwrap();
        }
        let poisoned: Vec<Vec<u8>> = [(1, false), (1, true), (4, false), (4, true)]
            .into_iter()
            .filter_map(|(user, garbage)| poisoned_self_add(&tip, user, garbage, &mut rng))
            .map(|b| b.to_server_form())
            .collect();
        assert_eq!(poisoned.len(), 4, "the fixture call lets joiners add themselves");
        World { server, blocks, broadcasts, poisoned }
    })
}

fn mutate(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::None => {}
        Mutation::Flip { at, xor } => {
            if !bytes.is_empty() {
                let i = usize::from(*at) % bytes.len();
                bytes[i] ^= xor | 1;
            }
        }
        Mutation::Truncate { at } => bytes.truncate(usize::from(*at) % (bytes.len() + 1)),
        Mutation::Append(extra) => bytes.extend(extra.iter().take(64)),
    }
    bytes
}

fn page(w: &World, p: &Page) -> Update {
    let size = match usize::from(p.fill) % 1_001 {
        0 => p.entries.len().min(8),
        n => n,
    };
    let blocks: Vec<Vec<u8>> = p
        .entries
        .iter()
        .cycle()
        .take(size)
        .filter_map(|e| match e {
            Entry::Block { index, mutation } => {
                w.blocks.get(usize::from(*index) % w.blocks.len().max(1)).map(|b| mutate(b.clone(), mutation))
            }
            Entry::Broadcast { index, mutation } => {
                let n = w.broadcasts.len().max(1);
                w.broadcasts.get(usize::from(*index) % n).map(|b| mutate(b.clone(), mutation))
            }
            Entry::Raw(bytes) => Some(bytes.iter().take(512).copied().collect()),
            Entry::Poisoned { index } => w.poisoned.get(usize::from(*index) % w.poisoned.len()).cloned(),
        })
        .collect();
    let base = if p.sub_chain_id.rem_euclid(2) == 0 { w.blocks.len() } else { w.broadcasts.len() };
    let next_offset = (base as i32).saturating_add(i32::from(p.next_offset_delta));
    let blocks = blocks.into_iter().map(Into::into).collect();
    match SubChain::from_id(i32::from(p.sub_chain_id)) {
        Some(sub_chain) => Update::ChainBlocks { sub_chain, blocks, next_offset },
        // Another sub-chain's update is none of the session's (adapters leave it out): nothing.
        None => Update::Participants { participants: Vec::new() },
    }
}

fuzz_target!(|script: Script| {
    let w = world();
    let mut rng = common::rng(script.seed);
    let mut server = w.server.clone();
    let config = SessionConfig::default();
    let mut session = new_session(1);
    let mut now: u64 = 1_000;
    session.join(now, &mut rng).unwrap();
    let mut outstanding: VecDeque<(RequestId, Request)> = VecDeque::new();
    // Times of the requests the session sent on its own (not right after an application action).
    let mut sent: VecDeque<u64> = VecDeque::new();
    let identity = CallIdentity { id: 1, access_hash: 2 };
    for op in script.ops.iter().take(256) {
        let mut by_application = false;
        match op {
            Op::Respond { pick, answer } => {
                if outstanding.is_empty() {
                    continue;
                }
                let i = usize::from(*pick) % outstanding.len();
                let Some((id, request)) = outstanding.remove(i) else { continue };
                let response = match answer {
                    Answer::Honest => {
                        let (response, pushes) = server.handle(1, &request);
                        session.handle_response(id, response, now, &mut rng);
                        for (to, update) in pushes {
                            if to == 1 {
                                session.handle_update(update, now, &mut rng);
                            }
                        }
                        None
                    }
                    Answer::Error(e) => Some(Response::Error(e.text().into())),
                    Answer::Pages(pages) => Some(Response::Ok(pages.iter().take(4).map(|p| page(w, p)).collect())),
                    Answer::Empty => Some(Response::Ok(Vec::new())),
                };
                if let Some(response) = response {
                    session.handle_response(id, response, now, &mut rng);
                }
            }
            Op::Silence { pick } => {
                if !outstanding.is_empty() {
                    let i = usize::from(*pick) % outstanding.len();
                    outstanding.remove(i);
                }
            }
            Op::Push(p) => session.handle_update(page(w, p), now, &mut rng),
            Op::Message { from, bytes } => {
                let update = Update::EncryptedMessage {
                    from: i64::from(*from % 4),
                    encrypted_message: bytes.iter().take(1024).copied().collect(),
                };
                session.handle_update(update, now, &mut rng);
            }
            Op::CallEnded { discarded } => {
                let update = Update::GroupCall { call: identity, discarded: *discarded, invite_link: None };
                session.handle_update(update, now, &mut rng);
            }
            Op::Participants(list) => {
                let participants =
                    list.iter().take(16).map(|(u, left)| CallParticipant::new(i64::from(*u % 5), *left)).collect();
                session.handle_update(Update::Participants { participants }, now, &mut rng);
            }
            Op::Wait { ms } => {
                now = now.saturating_add(u64::from(*ms));
                // Fire what is due (at most a few times: a timer that is always due is a loop the
                // rate bound below catches).
                for _ in 0..4 {
                    if session.poll_timeout().is_some_and(|t| t <= now) {
                        session.handle_timeout(now, &mut rng);
                    }
                }
            }
            Op::Join => {
                by_application = true;
                let _ = session.join(now, &mut rng);
            }
            Op::Leave => {
                by_application = true;
                session.leave(now);
            }
            Op::Remove { user, kick } => {
                by_application = true;
                let _ = session.remove(&[i64::from(*user % 5)], *kick, now, &mut rng);
            }
            Op::Rekey => {
                by_application = true;
                let _ = session.rekey(None, &mut rng);
            }
            Op::SendMessage => {
                by_application = true;
                let json = r#"{"_":"groupCallMessage","random_id":"1","message":{}}"#;
                let _ = session.send_message(json, now, &mut rng);
            }
        }
        while let Some(request) = session.poll_request() {
            if !by_application {
                while sent.front().is_some_and(|t| t.saturating_add(1_000) <= now) {
                    sent.pop_front();
                }
                sent.push_back(now);
                assert!(
                    sent.len() <= MAX_REQUESTS_PER_SECOND,
                    "more than {MAX_REQUESTS_PER_SECOND} requests in one second at {now}: the last {:?}",
                    request.1
                );
            }
            if outstanding.len() == OUTSTANDING {
                outstanding.pop_front();
            }
            outstanding.push_back(request);
        }
        while session.poll_event().is_some() {}
        let f = session.footprint();
        assert!(f.buffered_updates <= config.max_buffered_updates, "{f:?}");
        assert!(f.early_blocks <= config.max_buffered_updates.saturating_mul(8), "{f:?}");
        assert!(f.remembered_messages <= config.max_remembered_messages, "{f:?}");
        assert!(f.requests_in_flight <= 1_000 && f.retries <= 1_000, "{f:?}");
        if let Some(call) = session.call() {
            assert!(call.active_epochs().len() <= confchain::limits::MAX_EPOCHS, "{f:?}");
        }
        let _ = session.state() == SessionState::Joined;
    }
});
