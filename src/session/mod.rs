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
//! Each state carries what it needs (`Phase`): a join in flight its buffered updates, a live
//! call its [`Call`] and the sync of both sub-chains, a terminal state its closed call. Every way
//! out (failing closed, removed, ended, a failed join, leaving) is one function with a reason
//! (`Session::exit` with an `Exit`): it closes the call ([`Call::close`]: encryption stops at
//! once, in every media handle too), starts a new generation, sets the terminal state, tells the
//! application and, where the server still holds us, sends `leaveGroupCall`.
//!
//! # Where each behaviour lives
//!
//! | file          | what it owns                                                                   |
//! |---------------|--------------------------------------------------------------------------------|
//! | `mod.rs`      | `Phase`, the application's calls, the entry points, `send` and `exit`          |
//! | `outbox.rs`   | requests with their purpose, ids, the pace's queue, generations, flood waits, the timer table (retries, join attempts, pruning, each sub-chain's next poll) |
//! | `policy.rs`   | the one retry policy: (purpose, attempt, error, config) → retry / give up / exit |
//! | `outcomes.rs` | an answer (or a deadline) by the request's purpose; failures through the policy |
//! | `join.rs`     | the `Joining` state; the join planner: tip, zero block or self-add, the answer |
//! | `live.rs`     | the `Live` state: both sub-chains through the chain rules, polls, gaps, recovery, the call's events as session events |
//! | `outbound.rs` | messages, broadcasts, removals, pruning, participants' unusable keys           |
//! | `sync.rs`     | one sub-chain's offsets and gap buffer (tested alone)                          |
//! | `pacer.rs`    | the outbox's token bucket (tested alone)                                       |
//! | `config.rs`, `events.rs` | validated tunables; typed events                                    |
//!
//! # How one server answer travels
//!
//! ```text
//!  handle_response(id, response)                                          mod.rs
//!    ├─ Response::Error parsed once into ApiError (the only ApiError::parse)
//!    ├─ outbox.answer(id): the Entry (purpose, request, generation) or nothing     outbox.rs
//!    ├─ a flood wait recorded for the request's kind (policy::flood_until)         policy.rs
//!    └─ handle_outcome(entry, outcome)                                     outcomes.rs
//!         ├─ Ok, by purpose: poll → on_poll / process_updates → SubSync → Call     live.rs
//!         │                  join → on_join_tip / on_joined                        join.rs
//!         ├─ Err: policy::retry → a timer in the outbox / an event / Session::exit
//!         └─ after_batch: the call's events → SessionEvents, broadcasts → send     live.rs
//!  then fire_polls (live.rs); requests leave through outbox.pace to poll_request.
//! ```
//!
//! A deadline takes the same road from [`Session::handle_timeout`] as a `TIMEOUT` error; timers
//! due run their `Action` (`Session::run_action`).
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

mod config;
mod events;
mod join;
mod live;
mod outbound;
mod outbox;
mod outcomes;
mod pacer;
mod policy;
mod sync;

use std::collections::{BTreeSet, HashSet, VecDeque};

use rand_core::CryptoRngCore;

use crate::api::ApiError;
use crate::call::{Call, Event};
use crate::chain::{build_zero_block, UnverifiedTip};
use crate::crypto::PrivateKey;
use crate::error::{Error, ErrorKind, Result};
use crate::wire::{Block, Broadcast, GroupParticipant, GroupState, Permissions, PlainBlock};

pub use self::config::SessionConfig;
pub use self::events::{EndReason, EventDescription, EventField, JoinFailure, SendFailure, SessionEvent};
use self::join::Joining;
use self::live::Live;
use self::outbox::{Action, Answered, Entry, Goal, Outbox, Purpose};
use self::sync::{Receive, SubSync, MIN_GAP_POLL_SPACING_MS};
pub use crate::api::{CallIdentity, CallParticipant, Request, RequestId, RequestKind, Response, SubChain, Update};

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

/// A way out of the call (or out of a join), carried out by [`Session::exit`]: the call closes,
/// a new generation starts, the state becomes the matching terminal one, the application is told,
/// and the server is told we left where it still holds us.
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
    /// The join (or create) failed.
    JoinFailed(JoinFailure),
    /// [`Session::leave`]: `Leaving` until the server answers.
    Leaving,
}

/// Most builds of one block while its hash would black out H.264 (each is 1 in 256).
const BLACKOUT_BUILDS: usize = 8;

/// A sans-IO client of one conference call (see the module docs).
///
/// ```
/// use confchain::session::{Request, Response, Session, SessionConfig, SessionEvent, SessionState, Update};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
/// let mut s = Session::new(7, SessionConfig::default())?;
/// s.join(0, &mut rng)?;
/// // First the tip: getGroupCallChainBlocks(sub_chain 0, offset -1, limit 1).
/// let (id, req) = s.poll_request().unwrap();
/// assert!(matches!(req, Request::GetChainBlocks { offset: -1, limit: 1, .. }));
/// // An empty chain: the first joiner sends a zero block to joinGroupCall (never a new conference).
/// s.handle_response(id, Response::Ok(vec![Update::ChainBlocks { sub_chain_id: 0, blocks: vec![], next_offset: 0 }]), 0, &mut rng);
/// let (id, req) = s.poll_request().unwrap();
/// let Request::Join { block, .. } = req else { panic!("a join") };
/// // The server accepts it and returns it in server form, with the (empty) broadcast sub-chain.
/// let updates = vec![
///     Update::ChainBlocks { sub_chain_id: 0, blocks: vec![block.to_server_form()], next_offset: 1 },
///     Update::ChainBlocks { sub_chain_id: 1, blocks: vec![], next_offset: 0 },
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
        Ok(Session {
            user_id,
            outbox: Outbox::new(config.max_requests_per_second, config.max_request_burst, config.request_timeout_ms),
            config,
            phase: Phase::Idle,
            events: VecDeque::new(),
            seen_messages: HashSet::new(),
            seen_order: VecDeque::new(),
            participants: Vec::new(),
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
        // A new generation; queued leaves go too (the join replaces our participant on the
        // server; a leave sent after it would remove the new one).
        self.outbox.new_generation(false);
        // A new conference: a new identity, learnt from the response.
        self.identity = None;
        self.invite_link = None;
        self.phase = Phase::Joining(Joining::default());
        if !join {
            self.send(
                Request::CreateConference { public_key: None, block: None },
                Purpose::Create { attempt: 0, key: None },
            );
            return Ok(());
        }
        self.start_join_attempt(0, true, rng);
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
        // A new generation; queued leaves go too (the join replaces our participant on the
        // server; a leave sent after it would remove the new one).
        self.outbox.new_generation(false);
        self.phase = Phase::Joining(Joining::default());
        self.start_join_attempt(0, false, rng);
        Ok(())
    }

    /// Leaves the call (`leaveGroupCall`), from any state: the call is closed at once, whatever
    /// was scheduled or queued is dropped (a join still in flight that the server accepts later
    /// is answered with another `leaveGroupCall`). No block is sent: the others prune us.
    pub fn leave(&mut self, now: u64) {
        self.tick(now);
        self.exit(Exit::Leaving);
    }

    /// Removes participants (`deleteConferenceCallParticipants`): `kick` bans them, otherwise they
    /// are users who already left. Users not in the chain are skipped; if none is left and this is
    /// not a ban, nothing is sent. Rebuilt on `CONF_WRITE_CHAIN_INVALID` (bounded, after the newer
    /// block arrived). Fails with [`ErrorKind::WrongState`] outside [`SessionState::Joined`].
    pub fn remove(&mut self, user_ids: &[i64], kick: bool, now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.tick(now);
        if self.state() != SessionState::Joined {
            return Err(wrong_state("remove", "the call (Joined)", self.state()));
        }
        if user_ids.contains(&self.user_id) {
            return Err(Error::new(ErrorKind::InvalidInput, "to remove ourselves, leave"));
        }
        self.send_removal(user_ids.to_vec(), kick, 0, rng)
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
        let Some(call) = self.live_call().filter(|_| state == SessionState::Joined) else {
            return Err(wrong_state("rekey", "the call (Joined)", state));
        };
        // An entry no one can build a key header for blocks every re-key: a member who may remove
        // re-keys by removing it (issue 30 item 1).
        let unusable = self.unusable_entries();
        let block = match permissions {
            None if !unusable.is_empty() && self.may(Permissions::REMOVE_USERS) => {
                self.build(|rng| call.build_remove(&unusable, rng), rng)?
            }
            None => self.build(|rng| call.build_rekey(rng), rng)?,
            Some((user_id, p)) => self.build(|rng| call.build_set_permissions(user_id, p, rng), rng)?,
        };
        // Entries removed along are named, so that the server drops them from the media call too.
        let user_ids = if permissions.is_none() && self.may(Permissions::REMOVE_USERS) { unusable } else { Vec::new() };
        self.send(Request::DeleteParticipants { user_ids, block, kick: true }, Purpose::Rekey);
        Ok(())
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

    /// The block at `height` blacks out H.264: re-key, if nobody did meanwhile and we may.
    fn end_blackout(&mut self, height: i32, rng: &mut impl CryptoRngCore) {
        let me = self.user_id;
        let Some(call) = self.live_call() else { return };
        let may = call.participants().iter().any(|p| {
            p.user_id == me && (p.flags.contains(Permissions::ADD_USERS) || p.flags.contains(Permissions::REMOVE_USERS))
        });
        if call.height() != height || !may || self.state() != SessionState::Joined {
            return;
        }
        if let Err(e) = self.rekey(None, rng) {
            self.send_failed(RequestKind::DeleteParticipants, SendFailure::Local(e));
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
        let Phase::Live(live) = &mut self.phase else {
            return Err(wrong_state("send_message", "the call (Joined or Resyncing)", state));
        };
        let encrypted = live.call.encrypt_message(json, now, rng)?;
        self.send(Request::SendEncryptedMessage { encrypted_message: encrypted }, Purpose::Message { attempt: 0 });
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
        [self.outbox.next_deadline(), epochs].into_iter().flatten().min()
    }

    /// Runs what is due at `now`: request deadlines (as `TIMEOUT`), polls, retries, epoch expiry.
    pub fn handle_timeout(&mut self, now: u64, rng: &mut impl CryptoRngCore) {
        self.tick(now);
        if let Phase::Live(live) = &mut self.phase {
            live.call.handle_timeout(now);
        }
        self.drain_call_events();
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
        self.tick(now);
        // The one place a server's error is read.
        let outcome = match response {
            Response::Ok(updates) => Ok(updates),
            Response::Error(e) => Err(ApiError::parse(&e)),
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
                        self.send(Request::Leave, Purpose::Leave { then_left: false });
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
        self.tick(now);
        let me = self.user_id;
        match &mut self.phase {
            Phase::Joining(j) if !matches!(update, Update::GroupCall { .. }) => j.buffer(update, me, &self.config),
            _ => self.process_updates(vec![update], Source::Push, rng),
        }
        self.fire_polls();
    }

    // ---- reading ----

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

    // ---- plumbing ----

    fn tick(&mut self, now: u64) {
        self.now = self.now.max(now);
        self.outbox.pace(self.now);
    }

    fn live_call(&self) -> Option<&Call> {
        match &self.phase {
            Phase::Live(l) => Some(&l.call),
            _ => None,
        }
    }

    /// Leaves the call or the join for good ([`Exit`]): the one way out of every state.
    fn exit(&mut self, exit: Exit) {
        let joining = matches!(self.phase, Phase::Joining(_));
        let has_call =
            matches!(self.phase, Phase::Live(_) | Phase::Removed(_) | Phase::ChainRejected(_) | Phase::Ended(Some(_)));
        let leaving = matches!(self.phase, Phase::Leaving | Phase::Left);
        let applies = match &exit {
            Exit::ChainRejected { .. } | Exit::Removed { .. } => has_call,
            Exit::Ended(_) => has_call || joining,
            Exit::JoinFailed(_) => true,
            Exit::Leaving => !leaving,
        };
        if !applies {
            return;
        }
        // Leaving the live state closes the call: encryption stops at once, in every media
        // handle too.
        let call = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Live(live) => Some(Box::new(live.call)),
            Phase::Removed(c) | Phase::ChainRejected(c) | Phase::Ended(Some(c)) => Some(c),
            _ => None,
        }
        .map(|mut c| {
            c.close();
            c
        });
        // Timers of the old generation die; queued requests (leaves excepted) are dropped.
        self.outbox.new_generation(true);
        let (phase, event, leave) = match exit {
            Exit::ChainRejected { height, error } => {
                (call.map(Phase::ChainRejected), Some(SessionEvent::ChainRejected { height, error }), Some(false))
            }
            Exit::Removed { height } => (call.map(Phase::Removed), Some(SessionEvent::Removed { height }), Some(false)),
            Exit::Ended(reason) => {
                let leave = (reason == EndReason::JoinMissing).then_some(false);
                (Some(Phase::Ended(call)), Some(SessionEvent::Ended { reason }), leave)
            }
            Exit::JoinFailed(reason) => (Some(Phase::Failed), Some(SessionEvent::JoinFailed { reason }), None),
            Exit::Leaving => (Some(Phase::Leaving), None, Some(true)),
        };
        self.phase = phase.unwrap_or(Phase::Idle);
        self.events.extend(event);
        if let Some(then_left) = leave {
            self.send(Request::Leave, Purpose::Leave { then_left });
        }
    }

    /// Queues a request for the outbox's pace (a leave goes at once), or defers it to the end of
    /// its kind's flood wait.
    fn send(&mut self, request: Request, purpose: Purpose) -> Option<RequestId> {
        let kind = request.kind();
        let wait = self.outbox.flood_until(kind);
        if wait > self.now {
            let remaining = wait.saturating_sub(self.now);
            // No operation waits longer than the maximum (polls never do: their waits are capped).
            let too_long = remaining > policy::flood_ms(&self.config, self.config.max_flood_wait_s).unwrap_or(0);
            let seconds = u32::try_from(remaining.div_ceil(1_000)).unwrap_or(u32::MAX);
            match purpose {
                // A leave goes anyway: one request, and the server must not keep a ghost member
                // (any answer, another flood wait included, ends it).
                Purpose::Leave { .. } if too_long => {}
                Purpose::JoinTip { .. } | Purpose::Join { .. } | Purpose::Create { .. } if too_long => {
                    self.exit(Exit::JoinFailed(JoinFailure::FloodWait { seconds }));
                    return None;
                }
                Purpose::Broadcast { .. }
                | Purpose::Message { .. }
                | Purpose::Removal { .. }
                | Purpose::Prune { .. }
                | Purpose::Rekey
                    if too_long =>
                {
                    self.send_failed(kind, SendFailure::Api(ApiError::FloodWait { seconds }));
                    return None;
                }
                purpose => {
                    self.outbox.schedule(wait, Action::Resend { request, purpose });
                    return None;
                }
            }
        }
        Some(self.outbox.queue(request, purpose, self.now))
    }

    fn run_action(&mut self, action: Action, rng: &mut impl CryptoRngCore) {
        match action {
            Action::JoinAttempt { attempt, create } => {
                if matches!(self.phase, Phase::Joining(_)) {
                    self.start_join_attempt(attempt, create, rng);
                }
            }
            Action::Resend { request, purpose } => self.resend(request, purpose),
            Action::Remove { user_ids, kick, attempt } => {
                if let Err(e) = self.send_removal(user_ids, kick, attempt, rng) {
                    self.send_failed(RequestKind::DeleteParticipants, SendFailure::Local(e));
                }
            }
            Action::Prune => self.prune(rng),
            Action::EndBlackout { height } => self.end_blackout(height, rng),
            Action::RemoveUnusable => self.remove_unusable(rng),
        }
    }

    /// Sends again what a backoff or a flood wait deferred, if it still makes sense.
    fn resend(&mut self, request: Request, purpose: Purpose) {
        let live = self.live_call().is_some_and(|c| !c.is_closed());
        let ok = match &purpose {
            Purpose::JoinTip { .. } | Purpose::Join { .. } | Purpose::Create { .. } => {
                matches!(self.phase, Phase::Joining(_))
            }
            Purpose::Poll { sub } => {
                // A poll goes through the poll schedule instead.
                if matches!(self.phase, Phase::Live(_)) {
                    self.outbox.poll(*sub).at = Some(self.now);
                }
                false
            }
            Purpose::Broadcast { .. } => match &request {
                Request::SendBroadcast { block } => live && self.broadcast_is_current(block) && !self.round_done(),
                _ => false,
            },
            Purpose::Message { .. } | Purpose::Removal { .. } | Purpose::Prune { .. } | Purpose::Rekey => live,
            Purpose::Leave { .. } => true,
        };
        if ok {
            self.send(request, purpose);
        }
    }

    fn send_failed(&mut self, kind: RequestKind, reason: SendFailure) {
        self.events.push_back(SessionEvent::SendFailed { kind, reason });
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
