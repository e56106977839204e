//! The session: a sans-IO client of one conference call over Telegram's `phone.*` API, for the
//! whole lifecycle (create or join, sync both sub-chains, recover, remove, prune, message, leave,
//! rejoin).
//!
//! ```text
//!          join() / create()                               leave() (from any state)
//!  Idle ──────────────────▶ Joining ───ok───▶ Joined ──────────────────▶ Leaving ──▶ Left
//!   ▲    tip, build, joinGroupCall;  │          │ ▲
//!   │    CONF_WRITE_CHAIN_INVALID,   │          │ │ a pushed block refused: fetch from our own
//!   │    transient, SSRC_DUPLICATE:  │          ▼ │ next height, apply one by one (backoff)
//!   │    new tip, new key, backoff   │       Resyncing
//!   │                                │          │  the server's own chain holds a refused block
//!   │                       error    ▼          ▼
//!   └──── join() ◀──── Failed    ChainRejected (fail closed)
//!                                Removed   (a block removed us, GROUPCALL_FORBIDDEN; sends Leave)
//!                                Ended     (call discarded, GROUPCALL_JOIN_MISSING / _INVALID)
//!           every terminal state: join() rejoins with a new key (trusting the server's tip)
//!           (a discarded call also ends a join in flight: Joining ──▶ Ended)
//! ```
//!
//! Each state carries what it needs (`Phase`): a join in flight its buffered updates (`Joining`),
//! a live call its [`Call`] and the sync of both sub-chains (`Live`), a terminal state its closed
//! call. **The logic sits on the states**: `Joining` and `Live` own their handlers, which change
//! only their own data and what they reach through a `Ctx` (the outbox, the events, the
//! configuration, `now`), and *return* a way out of the state when there is one (`Flow`, an
//! `Exit` as its error). `Session` feeds each input to the state that takes it and carries out
//! what comes back in one place, `Session::carry_out`, the only place that sets the state. Every
//! way out (failing closed, removed, ended, a failed join, leaving) is one `Exit` with a reason:
//! the call closes ([`Call::close`]: encryption stops at once, in every media handle too), a new
//! generation starts, the terminal state is set, the application is told and, where the server
//! still holds us, `leaveGroupCall` is sent.
//!
//! # Where each behaviour lives
//!
//! | file          | what it owns                                                                   |
//! |---------------|--------------------------------------------------------------------------------|
//! | `mod.rs`      | `Phase`, the application's calls, the inputs fed to the states (updates, answers by purpose, timers), `carry_out`/`exit`, `Ctx` (`send`: the flood-wait gate) |
//! | `join.rs`     | `Joining` and its handlers: the tip, a zero block or self-add, the join's answer that starts `Live` |
//! | `live.rs`     | `Live` and its handlers: both sub-chains through the chain rules, polls, gaps, recovery, messages, who left, the call's events as session events, participants' keys |
//! | `changes.rs`  | `Live`'s own blocks: removals, prunes, re-keys, blackout re-keys, unusable entries |
//! | `outbox.rs`   | requests with their purpose, ids, the pace's queue, generations, flood waits, the timer table (retries and resends, pruning, each sub-chain's next poll) |
//! | `policy.rs`   | the one retry policy: (purpose, attempt, error, config) → retry / give up / exit |
//! | `sync.rs`     | one sub-chain's offsets and gap buffer (tested alone)                          |
//! | `pacer.rs`    | the outbox's token bucket (tested alone)                                       |
//! | `sources.rs`  | the call's SSRC table, its lookups, our own participation (SPEC §18.1)          |
//! | `config.rs`, `events.rs` | validated tunables; typed events                                    |
//!
//! # How one server answer travels
//!
//! A poll's answer crosses four files: `mod.rs` → `outbox.rs` → `live.rs` (→ `sync.rs`, the
//! [`Call`]) → `mod.rs`.
//!
//! ```text
//!  handle_response(id, response, now)                                      mod.rs
//!    ├─ enter: the call's events the application caused (call_mut) drained first
//!    ├─ Response::Error carries the ApiError (parsed at the adapter's boundary)
//!    ├─ outbox.answer(id): the Entry (purpose, request, generation) or nothing     outbox.rs
//!    ├─ a flood wait recorded for the request's kind (policy::flood_until)
//!    └─ handle_outcome: by purpose, to the state's handlers                mod.rs
//!         poll:  Live::poll_answered, each update → Live::on_update            live.rs
//!                  (SubSync::receive, Call::apply_block / receive_broadcast)   sync.rs
//!                after_batch once: Live::drain (call events → SessionEvents,
//!                  our keys checked), Live::send_broadcasts → Ctx::send
//!                Live::polled (next poll, gaps, a server that dropped us)
//!         join:  Joining::on_tip / on_joined → Joined → carry_out(Live)        join.rs
//!         error: policy::retry → a resend timer / an event / carry_out(Exit)   policy.rs
//!         a handler's Err(Exit) → Session::carry_out                           mod.rs
//!  then fire_polls (Live::fire_polls); requests leave through outbox.pace to poll_request.
//! ```
//!
//! `now` takes the same road from [`Session::handle_timeout`]: the call's epochs
//! (`Call::handle_timeout`) and `Live::drain`; request deadlines as a `TIMEOUT` answer
//! (`handle_outcome`); timers due run their `Action` (`Session::run_action`: a resend through
//! `Ctx::send`, or a `Live` handler of `changes.rs`); then the polls due.
//!
//! Driven like quinn-proto's `Connection`: the application takes requests with
//! [`Session::poll_request`] and performs them with its MTProto client (each [`Request`] maps to one
//! TL method, see its docs), feeds back results with [`Session::handle_response`] and pushed updates
//! with [`Session::handle_update`], calls [`Session::handle_timeout`] at [`Session::poll_timeout`],
//! and reads what happened with [`Session::poll_event`]. Time (`now`, milliseconds) and randomness
//! are passed in; nothing here touches the network or a clock. Media stays on the [`Call`]
//! ([`Session::call_mut`], or media handles taken from it).
//!
//! Trust (SPEC.md §15): a join trusts the server's tip, as every first join does; from then on
//! every block goes through the chain rules from our own verified state. A block the rules refuse
//! is never adopted: the session refetches from its own next height, and if the server's chain
//! itself holds the refused block it fails closed ([`SessionEvent::ChainRejected`]).

mod changes;
mod config;
mod events;
mod join;
mod live;
mod outbox;
mod pacer;
mod policy;
mod sources;
mod sync;

use std::collections::{HashSet, VecDeque};

use rand_core::CryptoRngCore;

use crate::api::ApiError;
use crate::call::Call;
use crate::crypto::PrivateKey;
use crate::error::{Error, ErrorKind, Result};
use crate::wire::{GroupParticipant, Permissions, PlainBlock};

pub use self::config::SessionConfig;
pub use self::events::{EndReason, EventDescription, EventField, JoinFailure, SendFailure, SessionEvent};
use self::join::{Joined, Joining};
use self::live::Live;
use self::outbox::{Action, Answered, Entry, Outbox, Purpose};
use self::policy::{GiveUp, Verdict};
pub use crate::api::{
    CallIdentity, CallParticipant, Request, RequestId, RequestKind, Response, ServerBlock, SubChain, Update,
};

/// The session's state (see the module diagram); [`Session::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Not in a call (new, or after a create without join).
    Idle,
    /// Creating or joining: requests in flight.
    Joining,
    /// In the call.
    Joined,
    /// In the call, recovering from a refused pushed block: fetching the blocks from our own next
    /// height and applying them one by one (the call keeps its verified state meanwhile).
    Resyncing,
    /// Removed from the call (by a block, or `GROUPCALL_FORBIDDEN`); the call is closed.
    Removed,
    /// Leaving (the request is in flight); the call is closed.
    Leaving,
    /// Left.
    Left,
    /// The last join failed; [`Session::join`] tries again.
    Failed,
    /// Failed closed: the server's chain holds a block our rules refuse; the call is closed.
    ChainRejected,
    /// The call ended (discarded, or the server lost our participant or the call); closed.
    Ended,
}

/// What a session holds, in counts ([`Session::footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Requests sent and not answered (nor past their deadline).
    pub requests_in_flight: usize,
    /// Requests not taken by the application yet (released, or waiting for the outbox's pace).
    pub queued_requests: usize,
    /// Scheduled actions (retries, join attempts, pruning).
    pub retries: usize,
    /// Updates kept while joining (at most `max_buffered_updates`).
    pub buffered_updates: usize,
    /// Blocks held beyond a gap, both sub-chains together (at most `max_buffered_updates` each).
    pub early_blocks: usize,
    /// Bytes of the buffered updates and held blocks (at most `max_buffered_bytes` for the
    /// buffered updates and for each sub-chain).
    pub held_bytes: usize,
    /// Message ids remembered for deduplication.
    pub remembered_messages: usize,
    /// Events not taken by the application yet.
    pub events: usize,
}

/// Where blocks came from: a refused block from the server's own chain (a poll, a join answer)
/// ends trust; a refused push only starts a refetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Push,
    Server,
}

/// The state with its data.
enum Phase {
    Idle,
    Joining(Joining),
    Live(Box<Live>),
    Removed(Box<Call>),
    Leaving,
    Left,
    Failed,
    ChainRejected(Box<Call>),
    Ended(Option<Box<Call>>),
}

/// A way out of the call (or out of a join), carried out by [`Session::carry_out`]: the call
/// closes, a new generation starts, the state becomes the matching terminal one, the application
/// is told, and the server is told we left where it still holds us.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Exit {
    /// Fail closed: the server's chain holds a block (at `height`) our rules refuse. The media
    /// call is left too: a member that can no longer encrypt or decrypt must not stay in it as a
    /// ghost (the others then prune it from the chain); a rejoin drops the leave if still unsent.
    ChainRejected { height: i32, error: Error },
    /// No longer in the call (a block removed us at `height`, or the server said so): tdlib
    /// leaves the media call too.
    Removed { height: Option<i32> },
    /// The call ended for us (left as tdlib does when the server lost our participant).
    Ended(EndReason),
    /// The join (or create) failed; `accepted`: the server accepted it (we are in the media
    /// call, with an answer we cannot use), so we leave again (no ghost member).
    JoinFailed { reason: JoinFailure, accepted: bool },
    /// [`Session::leave`]: `Leaving` until the server answers.
    Leaving,
}

/// What a state's handler returns: it stays (`Ok`), or the session leaves it for good (`Err`,
/// carried out by [`Session::carry_out`]).
type Flow<T = ()> = std::result::Result<T, Exit>;

/// A change of state, carried out by [`Session::carry_out`] (the only place that sets it).
enum Next {
    /// `join()` or `create()`: a join starts (a new generation).
    Joining,
    /// The join's answer started the call.
    Live(Box<Live>),
    /// A create without join completed.
    Created,
    /// The server answered our `leaveGroupCall`.
    Left,
    /// Out of the call or of the join.
    Exit(Exit),
}

/// What the states' handlers reach besides their own data: the session's shared parts (see
/// [`Session::parts`]). Requests leave through [`Ctx::send`] and [`Ctx::send_join`].
struct Ctx<'a> {
    user_id: i64,
    now: u64,
    config: &'a SessionConfig,
    outbox: &'a mut Outbox,
    events: &'a mut VecDeque<SessionEvent>,
    seen_messages: &'a mut HashSet<(i64, i64)>,
    seen_order: &'a mut VecDeque<(i64, i64)>,
    participants: &'a mut Vec<i64>,
    /// Who sends on each SSRC, and our own participation (`sources.rs`).
    sources: &'a mut sources::CallSources,
}

/// How a request stands against its kind's flood wait.
enum Gate {
    /// It may go now.
    Go,
    /// It waits until then (a timer sends it again).
    Wait(u64),
    /// It would wait longer than `max_flood_wait_s` (until then, this many seconds).
    TooLong { until: u64, seconds: u32 },
}

/// Most builds of one block while its hash would black out H.264 (each is 1 in 256).
const BLACKOUT_BUILDS: usize = 8;

/// A sans-IO client of one conference call (see the module docs).
///
/// ```
/// use confchain::session::{Request, Response, Session, SessionConfig, SessionEvent, SessionState, SubChain, Update};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
/// let mut s = Session::new(7, SessionConfig::default())?;
/// s.join(0, &mut rng)?;
/// // First the tip: getGroupCallChainBlocks(sub_chain 0, offset -1, limit 1).
/// let (id, req) = s.poll_request().unwrap();
/// assert!(matches!(req, Request::GetChainBlocks { offset: -1, limit: 1, .. }));
/// // An empty chain: the first joiner sends a zero block to joinGroupCall (never a new conference).
/// s.handle_response(id, Response::Ok(vec![Update::ChainBlocks { sub_chain: SubChain::Blocks, blocks: vec![], next_offset: 0 }]), 0, &mut rng);
/// let (id, req) = s.poll_request().unwrap();
/// let Request::Join { block, .. } = req else { panic!("a join") };
/// // The server accepts it and returns it in server form, with the (empty) broadcast sub-chain.
/// let updates = vec![
///     Update::ChainBlocks { sub_chain: SubChain::Blocks, blocks: vec![block.to_server_form().into()], next_offset: 1 },
///     Update::ChainBlocks { sub_chain: SubChain::Broadcasts, blocks: vec![], next_offset: 0 },
/// ];
/// s.handle_response(id, Response::Ok(updates), 10, &mut rng);
/// assert_eq!(s.state(), SessionState::Joined);
/// assert!(std::iter::from_fn(|| s.poll_event()).any(|e| e == SessionEvent::Joined { height: 0 }));
/// # Ok::<(), confchain::Error>(())
/// ```
pub struct Session {
    user_id: i64,
    config: SessionConfig,
    phase: Phase,
    /// Requests, their purposes and generations, timers and flood waits.
    outbox: Outbox,
    events: VecDeque<SessionEvent>,
    seen_messages: HashSet<(i64, i64)>,
    seen_order: VecDeque<(i64, i64)>,
    participants: Vec<i64>,
    /// Who sends on each SSRC, and our own participation (`sources.rs`).
    sources: sources::CallSources,
    identity: Option<CallIdentity>,
    invite_link: Option<String>,
    /// Joins that passed their deadline (the last few): if the server accepted one after all
    /// and we are not in the call, we leave again (no ghost member).
    expired_joins: VecDeque<RequestId>,
    /// The latest time any entry point was given (requests queued by methods without `now`
    /// take their deadline from it).
    now: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("state", &self.state())
            .field("height", &self.call().map(Call::height))
            .field("offsets", &[self.next_offset(SubChain::Blocks), self.next_offset(SubChain::Broadcasts)])
            .finish_non_exhaustive()
    }
}

/// Extracts `"random_id"` (a JSON string or number holding an int64) from a `groupCallMessage`.
/// A deliberately small scanner: confchain has no JSON dependency, and only this field matters.
fn random_id(json: &str) -> Option<i64> {
    let at = json.find("\"random_id\"")?;
    let rest = json.get(at.saturating_add(11)..)?.trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}

/// [`ErrorKind::WrongState`]: `call` needs `needs`, and the session is in `state`.
fn wrong_state(call: &str, needs: &str, state: SessionState) -> Error {
    Error::new(ErrorKind::WrongState, format!("{call} needs {needs}; the session is {state:?}"))
}

impl Session {
    /// A session for `user_id`, not in any call yet. Fails with [`ErrorKind::InvalidInput`] when
    /// a field of `config` is out of its range ([`SessionConfig::validate`]).
    pub fn new(user_id: i64, config: SessionConfig) -> Result<Self> {
        config.validate()?;
        let sources = sources::CallSources::new(config.max_source_participants());
        Ok(Session {
            user_id,
            outbox: Outbox::new(
                config.max_requests_per_second,
                config.max_request_burst,
                config.request_timeout_ms,
                u64::from(config.max_flood_wait_s).saturating_mul(1_000),
            ),
            config,
            phase: Phase::Idle,
            events: VecDeque::new(),
            seen_messages: HashSet::new(),
            seen_order: VecDeque::new(),
            participants: Vec::new(),
            sources,
            identity: None,
            invite_link: None,
            expired_joins: VecDeque::new(),
            now: 0,
        })
    }

    // ---- the application's side ----

    /// Creates a new conference (`createConferenceCall`). With `join`, our zero block goes with it
    /// and the response starts the call; without, the chain stays empty and whoever joins first
    /// (us included, with [`Session::join`]) sends the zero block to `joinGroupCall`. Fails with
    /// [`ErrorKind::WrongState`] while joining, in the call or leaving.
    pub fn create(&mut self, join: bool, now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.tick(now);
        self.check_can_join("create")?;
        // A new conference: a new identity, learnt from the response.
        self.identity = None;
        self.invite_link = None;
        self.carry_out(Next::Joining);
        self.joining(|j, ctx| j.start(ctx, Some(join), rng));
        Ok(())
    }

    /// Joins the existing call (or rejoins after a removal, a failure, an end, leaving or failing
    /// closed), always with a new key: fetches the tip, then sends a zero block (empty chain) or a
    /// self-add block to `joinGroupCall`, retrying with a new tip on `CONF_WRITE_CHAIN_INVALID`.
    ///
    /// **A join trusts the server's tip**, as every first join does (tdlib's too): the last block
    /// cannot be checked against a chain we never followed. From the join on, every block is
    /// checked by the chain rules. After [`SessionEvent::ChainRejected`], calling `join` is the
    /// application's explicit decision to trust the server's chain again.
    ///
    /// Fails with [`ErrorKind::WrongState`] while joining, in the call or leaving.
    pub fn join(&mut self, now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.tick(now);
        self.check_can_join("join")?;
        self.carry_out(Next::Joining);
        self.joining(|j, ctx| j.start(ctx, None, rng));
        Ok(())
    }

    /// Leaves the call (`leaveGroupCall`), from any state: the call is closed at once, whatever
    /// was scheduled or queued is dropped (a join still in flight that the server accepts later
    /// is answered with another `leaveGroupCall`). No block is sent: the others prune us.
    pub fn leave(&mut self, now: u64) {
        self.tick(now);
        self.carry_out(Next::Exit(Exit::Leaving));
    }

    /// Removes participants (`deleteConferenceCallParticipants`): `kick` bans them, otherwise they
    /// are users who already left. Users not in the chain are skipped; if none is left and this is
    /// not a ban, nothing is sent. Rebuilt on `CONF_WRITE_CHAIN_INVALID` (bounded, after the newer
    /// block arrived). Fails with [`ErrorKind::WrongState`] outside [`SessionState::Joined`].
    pub fn remove(&mut self, user_ids: &[i64], kick: bool, now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.tick(now);
        let state = self.state();
        if state != SessionState::Joined {
            return Err(wrong_state("remove", "the call (Joined)", state));
        }
        if user_ids.contains(&self.user_id) {
            return Err(Error::new(ErrorKind::InvalidInput, "to remove ourselves, leave"));
        }
        let (phase, mut ctx) = self.parts();
        let Phase::Live(live) = phase else { return Err(wrong_state("remove", "the call (Joined)", state)) };
        if !kick {
            // A removal without a ban targets the entries the users have now: retried after a
            // rejoin, it spares the new one.
            for p in live.call.participants() {
                if user_ids.contains(&p.user_id) {
                    live.left_keys.insert(p.user_id, p.public_key);
                }
            }
        }
        live.removal(&mut ctx, user_ids.to_vec(), kick, 0, rng)
    }

    /// Re-keys the group, or gives `user_id` new permissions (`Some((user_id, permissions))`):
    /// a block with the same members and a fresh key. The API has no method of its own for this;
    /// the block travels in `deleteConferenceCallParticipants` with `kick` and no ids, the form of
    /// the one request an official client sends for a block removing nobody (tdlib's ban of users
    /// already gone re-keys with `kick`; SPEC.md §15). Neither tdlib nor Telegram Desktop re-keys
    /// alone or changes permissions, so acceptance of an empty id list is *inferred*, not observed.
    /// Not retried on a lost race: a newer block re-keys anyway. Fails with
    /// [`ErrorKind::WrongState`] outside [`SessionState::Joined`].
    pub fn rekey(&mut self, permissions: Option<(i64, Permissions)>, rng: &mut impl CryptoRngCore) -> Result<()> {
        let state = self.state();
        let (phase, mut ctx) = self.parts();
        match phase {
            Phase::Live(live) if state == SessionState::Joined => live.rekey(&mut ctx, permissions, rng),
            _ => Err(wrong_state("rekey", "the call (Joined)", state)),
        }
    }

    /// Sends a `groupCallMessage` (JSON text) with `sendGroupCallEncryptedMessage`. The request
    /// leaves at the outbox's pace (`max_requests_per_second`); with `max_queued_messages`
    /// undelivered already the message is refused with [`ErrorKind::OutboxFull`] (nothing is
    /// dropped silently later). Fails with [`ErrorKind::WrongState`] outside the call.
    pub fn send_message(&mut self, json: &str, now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.tick(now);
        if json.len() > self.config.max_message_bytes {
            return Err(Error::new(ErrorKind::LimitExceeded, "message too large"));
        }
        if self.queued_messages() >= self.config.max_queued_messages {
            let max = self.config.max_queued_messages;
            return Err(Error::new(ErrorKind::OutboxFull, format!("{max} messages are waiting to be delivered")));
        }
        let state = self.state();
        let (phase, mut ctx) = self.parts();
        let Phase::Live(live) = phase else {
            return Err(wrong_state("send_message", "the call (Joined or Resyncing)", state));
        };
        let encrypted = live.call.encrypt_message(json, now, rng)?;
        ctx.send(Request::SendEncryptedMessage { encrypted_message: encrypted }, Purpose::Message { attempt: 0 });
        Ok(())
    }

    /// Counts of what the session holds (to check that memory stays bounded).
    pub fn footprint(&self) -> Footprint {
        let (buffered_updates, buffered_bytes) = match &self.phase {
            Phase::Joining(j) => (j.buffered.len(), j.buffered_bytes),
            _ => (0, 0),
        };
        let (held, held_bytes) = match &self.phase {
            Phase::Live(l) => {
                let (a, b) = (l.blocks.held(), l.broadcasts.held());
                (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
            }
            _ => (0, 0),
        };
        Footprint {
            requests_in_flight: self.outbox.in_flight(),
            queued_requests: self.outbox.queued(),
            retries: self.outbox.timers(),
            buffered_updates,
            early_blocks: held,
            held_bytes: held_bytes.saturating_add(buffered_bytes),
            remembered_messages: self.seen_order.len(),
            events: self.events.len(),
        }
    }

    /// The next request to send, with its id (pass the id back with the response).
    pub fn poll_request(&mut self) -> Option<(RequestId, Request)> {
        self.outbox.pop_ready()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next instant [`Session::handle_timeout`] has work: polls, retries, request deadlines,
    /// epoch expiry.
    pub fn poll_timeout(&self) -> Option<u64> {
        let epochs = self.live_call().and_then(Call::poll_timeout);
        [self.outbox.next_deadline(), epochs, self.lookups_timeout()].into_iter().flatten().min()
    }

    /// Runs what is due at `now`: request deadlines (as `TIMEOUT`), polls, retries, epoch expiry.
    pub fn handle_timeout(&mut self, now: u64, rng: &mut impl CryptoRngCore) {
        self.tick(now);
        self.live(|live, ctx| {
            live.call.handle_timeout(now);
            live.drain(ctx)
        });
        for (id, entry) in self.outbox.take_expired(now) {
            if entry.purpose.joins() {
                if self.expired_joins.len() >= 16 {
                    self.expired_joins.pop_front();
                }
                self.expired_joins.push_back(id);
            }
            self.handle_outcome(entry, Err(ApiError::Transient("TIMEOUT".into())), rng);
        }
        for action in self.outbox.take_due(now) {
            self.run_action(action, rng);
        }
        self.fire_polls();
    }

    /// Takes the outcome of request `id`. Unknown ids (answered already, past their deadline, or
    /// of a generation since ended) are ignored.
    pub fn handle_response(&mut self, id: RequestId, response: Response, now: u64, rng: &mut impl CryptoRngCore) {
        self.enter(now);
        // The one place a server's error is read.
        let outcome = match response {
            Response::Ok(updates) => Ok(updates),
            Response::Error(e) => Err(e),
        };
        let entry = match self.outbox.answer(id) {
            Answered::Entry(entry) => entry,
            Answered::Unsent => return, // not sent yet: it cannot have been answered
            Answered::Unknown => {
                // A join accepted after its deadline while we are out of the call: leave again.
                let out = matches!(self.phase, Phase::Idle | Phase::Failed | Phase::Leaving | Phase::Left);
                if let Some(i) = self.expired_joins.iter().position(|j| *j == id) {
                    self.expired_joins.remove(i);
                    if out && outcome.is_ok() {
                        self.ctx().send(Request::Leave, Purpose::Leave { then_left: false, attempt: 0 });
                    }
                }
                return;
            }
        };
        // A flood wait holds for its kind whatever became of the operation.
        if let Err(ApiError::FloodWait { seconds }) = &outcome {
            let kind = entry.request.kind();
            self.outbox.set_flood(kind, policy::flood_until(kind, *seconds, self.now, &self.config));
        }
        self.handle_outcome(entry, outcome, rng);
        self.fire_polls();
    }

    /// Takes a pushed update. Updates arriving while a join is in flight are kept (bounded by
    /// entries and bytes) and processed once the join completes (except a notice that we left,
    /// which is about our participant before this join); `updateGroupCall` is taken at once in
    /// every state.
    pub fn handle_update(&mut self, update: Update, now: u64, rng: &mut impl CryptoRngCore) {
        self.enter(now);
        self.pushed(update, rng);
        self.after_batch();
        self.fire_polls();
    }

    // ---- reading ----

    /// The configuration the session was made with.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The session's state.
    pub fn state(&self) -> SessionState {
        match &self.phase {
            Phase::Idle => SessionState::Idle,
            Phase::Joining(_) => SessionState::Joining,
            Phase::Live(l) if l.resyncing => SessionState::Resyncing,
            Phase::Live(_) => SessionState::Joined,
            Phase::Removed(_) => SessionState::Removed,
            Phase::Leaving => SessionState::Leaving,
            Phase::Left => SessionState::Left,
            Phase::Failed => SessionState::Failed,
            Phase::ChainRejected(_) => SessionState::ChainRejected,
            Phase::Ended(_) => SessionState::Ended,
        }
    }

    /// Our user id.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// The call: live once joined; after a removal, an end or failing closed, the closed call
    /// (every encrypt and decrypt refuses, see [`Call::is_closed`]).
    pub fn call(&self) -> Option<&Call> {
        match &self.phase {
            Phase::Live(l) => Some(&l.call),
            Phase::Removed(c) | Phase::ChainRejected(c) | Phase::Ended(Some(c)) => Some(c),
            _ => None,
        }
    }

    /// The call, mutably (media encryption and decryption).
    pub fn call_mut(&mut self) -> Option<&mut Call> {
        match &mut self.phase {
            Phase::Live(l) => Some(&mut l.call),
            Phase::Removed(c) | Phase::ChainRejected(c) | Phase::Ended(Some(c)) => Some(c),
            _ => None,
        }
    }

    /// The call's identity (`inputGroupCall(id, access_hash)`), once an `updateGroupCall` told it.
    pub fn call_identity(&self) -> Option<CallIdentity> {
        self.identity
    }

    /// The call's invite link, once an `updateGroupCall` told it.
    pub fn invite_link(&self) -> Option<&str> {
        self.invite_link.as_deref()
    }

    /// The next offset expected on a sub-chain, once known (in the call only).
    pub fn next_offset(&self, sub: SubChain) -> Option<i32> {
        match &self.phase {
            Phase::Live(l) => l.sync_ref(sub).next(),
            _ => None,
        }
    }

    /// Requests sent and not answered yet.
    pub fn requests_in_flight(&self) -> usize {
        self.outbox.in_flight()
    }

    /// The application's messages the session holds undelivered: waiting for the outbox's pace,
    /// not taken yet, in flight, or waiting for a retry (at most `max_queued_messages`).
    pub fn queued_messages(&self) -> usize {
        self.outbox.messages()
    }

    // ---- dispatch: inputs to the state's handlers ----

    fn tick(&mut self, now: u64) {
        self.now = self.now.max(now);
        self.run_lookups();
        self.outbox.pace(self.now);
        // What the pace let out into a flood wait longer than the maximum fails as a request sent
        // into it would (told, never held for the rest of the wait).
        for Entry { purpose, request, generation, .. } in self.outbox.take_refused() {
            if generation == self.outbox.generation {
                let wait = self.outbox.flood_until(request.kind()).saturating_sub(self.now);
                let seconds = u32::try_from(wait.div_ceil(1_000)).unwrap_or(u32::MAX);
                self.failed(purpose, request, ApiError::FloodWait { seconds });
            }
        }
    }

    /// The start of an input: time moves on, and what the application did to the call through
    /// [`Session::call_mut`] since the last input becomes session events first.
    fn enter(&mut self, now: u64) {
        self.tick(now);
        self.live(|live, ctx| live.drain(ctx));
    }

    fn check_can_join(&self, call: &str) -> Result<()> {
        match self.phase {
            Phase::Idle
            | Phase::Removed(_)
            | Phase::Left
            | Phase::Failed
            | Phase::ChainRejected(_)
            | Phase::Ended(_) => Ok(()),
            _ => Err(wrong_state(call, "to be out of the call (not joining, in it or leaving)", self.state())),
        }
    }

    fn live_call(&self) -> Option<&Call> {
        match &self.phase {
            Phase::Live(l) => Some(&l.call),
            _ => None,
        }
    }

    /// The state and what its handlers reach besides it.
    fn parts(&mut self) -> (&mut Phase, Ctx<'_>) {
        let Session {
            user_id,
            config,
            phase,
            outbox,
            events,
            seen_messages,
            seen_order,
            participants,
            now,
            sources,
            ..
        } = self;
        let ctx = Ctx {
            user_id: *user_id,
            now: *now,
            config,
            outbox,
            events,
            seen_messages,
            seen_order,
            participants,
            sources,
        };
        (phase, ctx)
    }

    /// What handlers reach, for the session's own sends and events.
    fn ctx(&mut self) -> Ctx<'_> {
        self.parts().1
    }

    /// Runs a handler of the live call, if in it; an exit it returns is carried out.
    fn live(&mut self, handler: impl FnOnce(&mut Live, &mut Ctx<'_>) -> Flow) {
        let (phase, mut ctx) = self.parts();
        let Phase::Live(live) = phase else { return };
        if let Err(exit) = handler(live, &mut ctx) {
            self.carry_out(Next::Exit(exit));
        }
    }

    /// Runs a handler of the join in flight, if joining; an exit it returns is carried out.
    fn joining(&mut self, handler: impl FnOnce(&mut Joining, &mut Ctx<'_>) -> Flow) {
        let (phase, mut ctx) = self.parts();
        let Phase::Joining(joining) = phase else { return };
        if let Err(exit) = handler(joining, &mut ctx) {
            self.carry_out(Next::Exit(exit));
        }
    }

    /// A pushed update: kept while a join is in flight (`updateGroupCall` excepted), else taken.
    fn pushed(&mut self, update: Update, rng: &mut impl CryptoRngCore) {
        let me = self.user_id;
        match &mut self.phase {
            Phase::Joining(j) if !matches!(update, Update::GroupCall { .. }) => j.buffer(update, me, &self.config),
            _ => self.take_update(update, Source::Push, rng),
        }
    }

    /// One update, to the state that takes it: `updateGroupCall` in every state, the rest in the
    /// call only ([`Live::on_update`]).
    fn take_update(&mut self, update: Update, source: Source, rng: &mut impl CryptoRngCore) {
        match update {
            Update::GroupCall { call, discarded, invite_link } => self.group_call(call, discarded, invite_link),
            update => self.live(|live, ctx| live.on_update(ctx, update, source, rng)),
        }
    }

    /// `updateGroupCall`: the call's identity and invite link; a discarded call ends ours.
    fn group_call(&mut self, call: CallIdentity, discarded: bool, invite_link: Option<String>) {
        // A call's identity never changes: once known, an updateGroupCall naming another call
        // (one connection carries all of the account's calls) is not about this one and may
        // neither rename nor end it.
        if self.identity.is_some_and(|known| known != call) {
            return;
        }
        if self.identity != Some(call) || (invite_link.is_some() && self.invite_link != invite_link) {
            self.identity = Some(call);
            if invite_link.is_some() {
                self.invite_link = invite_link.clone();
            }
            self.events.push_back(SessionEvent::CallIdentity { call, invite_link });
        }
        if discarded {
            self.carry_out(Next::Exit(Exit::Ended(EndReason::Discarded)));
        }
    }

    /// After a batch of updates: the call's events become session events, its outbound
    /// broadcasts are sent ([`Live::drain`], [`Live::send_broadcasts`]).
    fn after_batch(&mut self) {
        self.live(|live, ctx| {
            live.drain(ctx)?;
            live.send_broadcasts(ctx);
            Ok(())
        });
    }

    /// Sends the polls that are due.
    fn fire_polls(&mut self) {
        self.live(|live, ctx| {
            live.fire_polls(ctx);
            Ok(())
        });
    }

    /// An answer (or a deadline, as `TIMEOUT`) to one of our requests, by its purpose. A failure
    /// goes through the one retry policy ([`Session::failed`]).
    fn handle_outcome(&mut self, entry: Entry, outcome: Outcome, rng: &mut impl CryptoRngCore) {
        let Entry { purpose, request, generation, .. } = entry;
        if generation != self.outbox.generation {
            // A join the server accepted after we left: leave again, so no ghost member stays.
            let ghost = purpose.joins() && outcome.is_ok() && matches!(self.phase, Phase::Leaving | Phase::Left);
            if ghost {
                self.ctx().send(Request::Leave, Purpose::Leave { then_left: false, attempt: 0 });
            }
            return;
        }
        match (purpose, outcome) {
            (Purpose::Leave { then_left, attempt }, outcome) => {
                if then_left {
                    self.carry_out(Next::Left);
                }
                // Left whatever the answer; a leave lost to the network or a flood wait is sent
                // again (a join starts a new generation and drops it), or the server would keep a
                // ghost member in the media call.
                if let Err(error) = outcome {
                    let goal = outbox::Goal::Leave;
                    if let Verdict::Retry { after_ms, .. } = policy::retry(goal, attempt, &error, &self.config) {
                        let purpose = Purpose::Leave { then_left: false, attempt: attempt.saturating_add(1) };
                        let at = self.now.saturating_add(after_ms);
                        self.outbox.schedule(at, Action::Resend { request, purpose });
                    }
                }
            }
            (Purpose::Poll { sub }, outcome) => return self.polled(sub, outcome, rng),
            (Purpose::Lookup { id }, Ok(updates)) => self.on_lookup(id, Ok(updates)),
            (Purpose::JoinTip { attempt }, Ok(updates)) => {
                let (tip, rest) = join::split_tip(updates);
                for u in rest {
                    self.pushed(u, rng);
                }
                self.joining(|j, ctx| j.on_tip(ctx, attempt, tip, rng));
            }
            (Purpose::Join { key, height, .. }, Ok(updates)) => return self.joined(*key, height, updates, rng),
            (Purpose::Create { key: Some(key), .. }, Ok(updates)) => return self.joined(*key, 0, updates, rng),
            (Purpose::Create { key: None, .. }, Ok(updates)) => {
                for u in updates {
                    self.take_update(u, Source::Server, rng);
                }
                self.carry_out(Next::Created);
            }
            // Broadcasts, messages, removals: what the answer carries is pushed news.
            (_, Ok(updates)) => {
                for u in updates {
                    self.take_update(u, Source::Push, rng);
                }
            }
            (purpose, Err(error)) => self.failed(purpose, request, error),
        }
        self.after_batch();
    }

    /// A poll's answer: its blocks through the chain rules ([`Live::on_update`]), then what it
    /// tells of the sub-chain's sync ([`Live::polled`]).
    fn polled(&mut self, sub: SubChain, outcome: Outcome, rng: &mut impl CryptoRngCore) {
        let mut before = None;
        self.live(|live, ctx| {
            before = Some(live.poll_answered(ctx, sub, outcome.as_ref().ok()));
            Ok(())
        });
        let Some(before) = before else { return };
        match outcome {
            Ok(updates) => {
                for u in updates {
                    self.take_update(u, Source::Server, rng);
                }
                self.after_batch();
                self.live(|live, ctx| live.polled(ctx, sub, before));
            }
            Err(error) => {
                self.live(|live, ctx| live.poll_failed(ctx, sub, &error));
                self.after_batch();
            }
        }
        self.live(|live, ctx| {
            live.poll_rescheduled(ctx, sub);
            Ok(())
        });
    }

    /// The join's (or create-with-join's) answer: the call starts with the server's chain, then
    /// the updates kept meanwhile, each batch followed by [`Session::after_batch`].
    fn joined(&mut self, key: PrivateKey, height: i32, updates: Vec<Update>, rng: &mut impl CryptoRngCore) {
        let (phase, mut ctx) = self.parts();
        let Phase::Joining(joining) = phase else { return };
        let Joined { live, server, buffered } = match joining.on_joined(&mut ctx, key, height, updates, rng) {
            Ok(joined) => joined,
            Err(exit) => {
                self.carry_out(Next::Exit(exit));
                return self.after_batch();
            }
        };
        self.carry_out(Next::Live(live));
        // The rest of sub-chain 0 is the server's chain: through the rules (offsets filter ours).
        for u in server {
            self.take_update(u, Source::Server, rng);
        }
        self.after_batch();
        for u in buffered {
            self.take_update(u, Source::Push, rng);
        }
        self.after_batch();
        self.live(|live, ctx| {
            live.started(ctx);
            Ok(())
        });
    }

    /// A request of ours failed: the retry policy says what follows.
    fn failed(&mut self, purpose: Purpose, request: Request, error: ApiError) {
        let (goal, attempt) = (purpose.goal(), purpose.attempt());
        let next = attempt.saturating_add(1);
        let now = self.now;
        match policy::retry(goal, attempt, &error, &self.config) {
            Verdict::Exit(exit) => self.carry_out(Next::Exit(exit)),
            Verdict::Retry { after_ms, refetch } => {
                if refetch {
                    self.live(|_, ctx| {
                        ctx.outbox.poll_by(SubChain::Blocks, now);
                        Ok(())
                    });
                }
                let action = match purpose {
                    // A new attempt starts from a new tip.
                    Purpose::JoinTip { .. } | Purpose::Join { .. } => {
                        Action::Resend { request: join::tip_request(), purpose: Purpose::JoinTip { attempt: next } }
                    }
                    Purpose::Create { key, .. } => {
                        Action::Resend { request, purpose: Purpose::Create { attempt: next, key } }
                    }
                    Purpose::Removal { .. } | Purpose::Prune { .. } => {
                        let kick = matches!(purpose, Purpose::Removal { .. });
                        let Request::DeleteParticipants { user_ids, .. } = request else { return };
                        Action::Remove { user_ids, kick, attempt: next }
                    }
                    Purpose::Broadcast { .. } => {
                        Action::Resend { request, purpose: Purpose::Broadcast { attempt: next } }
                    }
                    Purpose::Message { .. } => Action::Resend { request, purpose: Purpose::Message { attempt: next } },
                    Purpose::Poll { .. } | Purpose::Rekey | Purpose::Leave { .. } | Purpose::Lookup { .. } => return,
                };
                self.outbox.schedule(now.saturating_add(after_ms), action);
            }
            Verdict::GiveUp(give_up) => match purpose {
                Purpose::JoinTip { .. } | Purpose::Join { .. } | Purpose::Create { .. } => {
                    let reason = match give_up {
                        GiveUp::Error(e) => JoinFailure::Api(e),
                        GiveUp::FloodTooLong { seconds } => JoinFailure::FloodWait { seconds },
                        GiveUp::Exhausted { attempts } => JoinFailure::RetriesExhausted { attempts },
                    };
                    self.carry_out(Next::Exit(Exit::JoinFailed { reason, accepted: false }))
                }
                Purpose::Poll { .. } | Purpose::Leave { .. } => {}
                Purpose::Lookup { id } => self.on_lookup(id, Err(error)),
                Purpose::Removal { .. }
                | Purpose::Prune { .. }
                | Purpose::Rekey
                | Purpose::Broadcast { .. }
                | Purpose::Message { .. } => {
                    let error = match give_up {
                        GiveUp::Error(e) => e,
                        GiveUp::FloodTooLong { seconds } => ApiError::FloodWait { seconds },
                        GiveUp::Exhausted { .. } => error,
                    };
                    self.ctx().send_failed(request.kind(), SendFailure::Api(error));
                }
            },
        }
    }

    /// A timer is due.
    fn run_action(&mut self, action: Action, rng: &mut impl CryptoRngCore) {
        match action {
            Action::Resend { request, purpose } => self.resend(request, purpose),
            Action::Remove { user_ids, kick, attempt } => self.live(|live, ctx| {
                if let Err(e) = live.removal(ctx, user_ids, kick, attempt, rng) {
                    ctx.send_failed(RequestKind::DeleteParticipants, SendFailure::Local(e));
                }
                Ok(())
            }),
            Action::Prune => self.live(|live, ctx| {
                live.prune(ctx, rng);
                Ok(())
            }),
            Action::EndBlackout { height } => self.live(|live, ctx| {
                live.end_blackout(ctx, height, rng);
                Ok(())
            }),
            Action::RemoveUnusable => self.live(|live, ctx| {
                live.remove_unusable(ctx, rng);
                Ok(())
            }),
            Action::Rebroadcast { height } => self.live(|live, ctx| {
                live.rebroadcast(ctx, height);
                Ok(())
            }),
        }
    }

    /// Sends again what a backoff or a flood wait deferred, if it still makes sense.
    fn resend(&mut self, request: Request, purpose: Purpose) {
        let now = self.now;
        let (phase, mut ctx) = self.parts();
        let live = match phase {
            Phase::Live(l) if !l.call.is_closed() => Some(l),
            _ => None,
        };
        let ok = match &purpose {
            Purpose::JoinTip { .. } | Purpose::Join { .. } | Purpose::Create { .. } => {
                if !matches!(phase, Phase::Joining(_)) {
                    return;
                }
                if let Err(exit) = ctx.send_join(request, purpose) {
                    self.carry_out(Next::Exit(exit));
                }
                return;
            }
            Purpose::Poll { sub } => {
                // A poll goes through the poll schedule instead.
                if matches!(phase, Phase::Live(_)) {
                    ctx.outbox.poll(*sub).at = Some(now);
                }
                false
            }
            Purpose::Broadcast { .. } => match &request {
                Request::SendBroadcast { block } => {
                    live.is_some_and(|l| l.broadcast_is_current(block) && !l.round_done())
                }
                _ => false,
            },
            Purpose::Message { .. } | Purpose::Removal { .. } | Purpose::Prune { .. } | Purpose::Rekey => {
                live.is_some()
            }
            Purpose::Leave { .. } => true,
            // The lookup scheduler asks again by itself.
            Purpose::Lookup { .. } => false,
        };
        if ok {
            ctx.send(request, purpose);
        }
    }

    // ---- the one place the state changes ----

    /// Carries out a change of state (the only place that sets it). An [`Exit`] closes the call
    /// ([`Call::close`]: encryption stops at once, in every media handle too), starts a new
    /// generation (timers of the old one die; queued requests, leaves excepted, are dropped),
    /// sets the terminal state, tells the application and, where the server still holds us,
    /// sends `leaveGroupCall`.
    fn carry_out(&mut self, next: Next) {
        let phase = match next {
            Next::Joining => {
                // A new generation; queued leaves go too (the join replaces our participant on the
                // server; a leave sent after it would remove the new one).
                self.outbox.new_generation(false);
                self.reset_sources();
                Phase::Joining(Joining::default())
            }
            Next::Live(live) => Phase::Live(live),
            Next::Created => {
                let (call, invite_link) = (self.identity, self.invite_link.clone());
                self.events.push_back(SessionEvent::Created { call, invite_link });
                Phase::Idle
            }
            Next::Left => {
                if !matches!(self.phase, Phase::Leaving) {
                    return;
                }
                self.events.push_back(SessionEvent::Left);
                Phase::Left
            }
            Next::Exit(exit) => match self.exit(exit) {
                Some(phase) => phase,
                None => return,
            },
        };
        self.phase = phase;
    }

    /// The terminal state an [`Exit`] leads to, after doing what it says (see
    /// [`Session::carry_out`]); `None` when it does not apply to the current state.
    fn exit(&mut self, exit: Exit) -> Option<Phase> {
        let joining = matches!(self.phase, Phase::Joining(_));
        let has_call =
            matches!(self.phase, Phase::Live(_) | Phase::Removed(_) | Phase::ChainRejected(_) | Phase::Ended(Some(_)));
        let leaving = matches!(self.phase, Phase::Leaving | Phase::Left);
        let applies = match &exit {
            Exit::ChainRejected { .. } | Exit::Removed { .. } => has_call,
            Exit::Ended(_) => has_call || joining,
            Exit::JoinFailed { .. } => true,
            Exit::Leaving => !leaving,
        };
        if !applies {
            return None;
        }
        let call = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Live(live) => Some(Box::new(live.call)),
            Phase::Removed(c) | Phase::ChainRejected(c) | Phase::Ended(Some(c)) => Some(c),
            _ => None,
        }
        .map(|mut c| {
            c.close();
            c
        });
        self.outbox.new_generation(true);
        self.reset_sources();
        let (phase, event, leave) = match exit {
            Exit::ChainRejected { height, error } => {
                (call.map(Phase::ChainRejected), Some(SessionEvent::ChainRejected { height, error }), Some(false))
            }
            Exit::Removed { height } => (call.map(Phase::Removed), Some(SessionEvent::Removed { height }), Some(false)),
            Exit::Ended(reason) => {
                let leave = (reason == EndReason::JoinMissing).then_some(false);
                (Some(Phase::Ended(call)), Some(SessionEvent::Ended { reason }), leave)
            }
            Exit::JoinFailed { reason, accepted } => {
                (Some(Phase::Failed), Some(SessionEvent::JoinFailed { reason }), accepted.then_some(false))
            }
            Exit::Leaving => (Some(Phase::Leaving), None, Some(true)),
        };
        self.events.extend(event);
        if let Some(then_left) = leave {
            self.ctx().send(Request::Leave, Purpose::Leave { then_left, attempt: 0 });
        }
        Some(phase.unwrap_or(Phase::Idle))
    }
}

/// A request's answer: its updates, or the server's error (parsed once, where it came in).
type Outcome = std::result::Result<Vec<Update>, ApiError>;

impl Ctx<'_> {
    /// How a request of `kind` stands against its flood wait.
    fn gate(&self, kind: RequestKind) -> Gate {
        let wait = self.outbox.flood_until(kind);
        if wait <= self.now {
            return Gate::Go;
        }
        let remaining = wait.saturating_sub(self.now);
        // No operation waits longer than the maximum (polls never do: their waits are capped).
        if remaining > policy::flood_ms(self.config, self.config.max_flood_wait_s).unwrap_or(0) {
            let seconds = u32::try_from(remaining.div_ceil(1_000)).unwrap_or(u32::MAX);
            return Gate::TooLong { until: wait, seconds };
        }
        Gate::Wait(wait)
    }

    /// Queues a request of the call (or a leave) for the outbox's pace, or defers it to the end
    /// of its kind's flood wait; one that would wait too long fails ([`SessionEvent::SendFailed`]),
    /// except a leave, which goes anyway: one request, and the server must not keep a ghost
    /// member (any answer, another flood wait included, ends it).
    fn send(&mut self, request: Request, purpose: Purpose) -> Option<RequestId> {
        let (at, seconds) = match self.gate(request.kind()) {
            Gate::Go => return Some(self.outbox.queue(request, purpose, self.now)),
            Gate::Wait(at) => (at, None),
            Gate::TooLong { until, seconds } => (until, Some(seconds)),
        };
        match (purpose, seconds) {
            (purpose @ Purpose::Leave { .. }, Some(_)) => Some(self.outbox.queue(request, purpose, self.now)),
            (Purpose::Poll { sub }, _) => {
                self.outbox.schedule(at, Action::Resend { request, purpose: Purpose::Poll { sub } });
                None
            }
            (purpose, None) => {
                self.outbox.schedule(at, Action::Resend { request, purpose });
                None
            }
            (_, Some(seconds)) => {
                self.send_failed(request.kind(), SendFailure::Api(ApiError::FloodWait { seconds }));
                None
            }
        }
    }

    /// [`Ctx::send`] for a join's requests: one that would wait too long fails the join.
    fn send_join(&mut self, request: Request, purpose: Purpose) -> Flow {
        match self.gate(request.kind()) {
            Gate::Go => {
                self.outbox.queue(request, purpose, self.now);
            }
            Gate::Wait(at) => self.outbox.schedule(at, Action::Resend { request, purpose }),
            Gate::TooLong { seconds, .. } => {
                return Err(Exit::JoinFailed { reason: JoinFailure::FloodWait { seconds }, accepted: false })
            }
        }
        Ok(())
    }

    fn send_failed(&mut self, kind: RequestKind, reason: SendFailure) {
        self.events.push_back(SessionEvent::SendFailed { kind, reason });
    }

    /// Our entry for a new key.
    fn me(&self, key: &PrivateKey) -> GroupParticipant {
        GroupParticipant {
            user_id: self.user_id,
            public_key: key.public_key(),
            flags: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
            version: 0,
        }
    }

    /// Builds a block with `build`, again while its hash would black out H.264 video (at most
    /// [`BLACKOUT_BUILDS`] builds; [`SessionConfig::end_video_blackouts`]).
    fn build<R: CryptoRngCore>(
        &self,
        mut build: impl FnMut(&mut R) -> Result<PlainBlock>,
        rng: &mut R,
    ) -> Result<PlainBlock> {
        let mut block = build(rng)?;
        if self.config.end_video_blackouts {
            for _ in 1..BLACKOUT_BUILDS {
                match block.decode() {
                    Ok(b) if crate::frame::hash_blocks_h264(&b.hash()) => block = build(rng)?,
                    _ => break,
                }
            }
        }
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::random_id;

    #[test]
    fn random_ids_are_read_as_strings_or_numbers() {
        assert_eq!(random_id(r#"{"_":"groupCallMessage","random_id":"-42","message":{}}"#), Some(-42));
        assert_eq!(random_id(r#"{"random_id" : 7}"#), Some(7));
        assert_eq!(random_id(r#"{"_":"groupCallMessage"}"#), None);
        assert_eq!(random_id(r#"{"random_id":"x"}"#), None);
    }
}
