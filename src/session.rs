//! The session: a sans-IO client of one conference call over Telegram's `phone.*` API, for the
//! whole lifecycle (create or join, sync both sub-chains, recover, remove, message, leave, rejoin).
//!
//! ```text
//!            join() / create()                          leave()
//!  Idle ─────────────────────▶ Joining ──ok──▶ Joined ─────────▶ Leaving ──▶ Left
//!   ▲   (tip, build, joinGroupCall;  │            │  ▲ resync in place
//!   │    CONF_WRITE_CHAIN_INVALID:   │            │  └─(a block refused: refetch the tip)
//!   │    new tip, new key, backoff)  │ error      │ a block removes us, GROUPCALL_FORBIDDEN
//!   │                                ▼            ▼
//!   └──────────── join() ──────── Failed      Removed ─── join() (new key) ──▶ Joining
//! ```
//!
//! Driven like quinn-proto's `Connection`: the application takes requests with
//! [`Session::poll_request`] and performs them with its MTProto client (each [`Request`] maps to one
//! TL method, see its docs), feeds back results with [`Session::handle_response`] and pushed updates
//! with [`Session::handle_update`], calls [`Session::handle_timeout`] at [`Session::poll_timeout`],
//! and reads what happened with [`Session::poll_event`]. Time (`now`, milliseconds) and randomness
//! are passed in; nothing here touches the network or a clock. Media stays on the [`Call`]
//! ([`Session::call_mut`]).
//!
//! The rules, and where they improve on tdlib, are in SPEC.md §15.

use std::collections::{BTreeMap, HashSet, VecDeque};

use rand_core::CryptoRngCore;

use crate::call::{Call, Event};
use crate::chain::{build_zero_block, UnverifiedTip};
use crate::crypto::PrivateKey;
use crate::error::{Error, ErrorKind, Result};
use crate::wire::{Broadcast, GroupParticipant, GroupState, Permissions};

pub use crate::api::{Request, RequestId, Response, SubChain, Update};

/// Why a join (or create) ended without joining.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinFailure {
    /// Another block kept winning the height: `CONF_WRITE_CHAIN_INVALID` after every attempt.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
    },
    /// The server refused with this error (`GROUPCALL_FORBIDDEN`, `GROUPCALL_INVALID`, ...).
    Api(String),
    /// The server's answer was unusable (no tip, a tip we cannot build on, a join response whose
    /// first block does not list us).
    InvalidResponse(String),
}

/// What happened, for the application (pull with [`Session::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// `createConferenceCall` without joining succeeded; the chain is empty until someone joins.
    Created,
    /// We are in the call at this height (after a join, a create with join, or a rejoin).
    Joined {
        /// Height of the last block applied.
        height: i32,
    },
    /// The join ended without joining.
    JoinFailed {
        /// Why.
        reason: JoinFailure,
    },
    /// A new block gave us a new key (or none: `fingerprint` is `None` while we hold no key).
    KeyChanged {
        /// Height of the block.
        height: i32,
        /// Fingerprint of the new key.
        fingerprint: Option<String>,
    },
    /// The chain's participants changed (sorted user ids): what to show as the call's members.
    ParticipantsChanged {
        /// The participants.
        user_ids: Vec<i64>,
    },
    /// A verification round started for a new block (the words are known at once).
    VerificationStarted {
        /// Height of the block.
        height: i32,
        /// Its 24 verification words.
        words: Vec<&'static str>,
    },
    /// The round for this block completed: everyone sees these emojis.
    VerificationDone {
        /// Height of the block.
        height: i32,
        /// The four emojis.
        emojis: [&'static str; 4],
    },
    /// A `groupCallMessage` arrived (deduplicated by sender and `random_id`).
    MessageReceived {
        /// The sender.
        from: i64,
        /// The JSON text.
        json: String,
    },
    /// A block removed us (or the server says we are no longer in the call): encrypting has
    /// stopped; call [`Session::join`] to rejoin with a new key.
    Removed {
        /// The height of the block that removed us, if a block did.
        height: Option<i32>,
    },
    /// We left (after [`Session::leave`]).
    Left,
    /// Something the application should log (a refused block, a dropped message, a request
    /// that failed for good).
    Error {
        /// What happened.
        message: String,
    },
}

/// The session's state (see the module diagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Not in a call (new, or after a failed create).
    Idle,
    /// Creating or joining: requests in flight.
    Joining,
    /// In the call.
    Joined,
    /// A refused block made us refetch the tip; the call is kept and resynced in place.
    Resyncing,
    /// Removed from the call; [`Session::join`] rejoins.
    Removed,
    /// Leaving (the request is in flight).
    Leaving,
    /// Left.
    Left,
    /// The last join failed; [`Session::join`] tries again.
    Failed,
}

/// What a session holds, in counts ([`Session::footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Requests sent and not answered.
    pub requests_in_flight: usize,
    /// Requests not taken by the application yet.
    pub queued_requests: usize,
    /// Sends waiting for their retry time.
    pub retries: usize,
    /// Updates kept while joining.
    pub buffered_updates: usize,
    /// Blocks kept beyond a gap, both sub-chains together (at most `4 · max_buffered_updates`
    /// each).
    pub early_blocks: usize,
    /// Message ids remembered for deduplication.
    pub remembered_messages: usize,
    /// Events not taken by the application yet.
    pub events: usize,
}

/// Tunables; the defaults follow tdlib where it is sound (SPEC.md §15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Poll period of each sub-chain while nothing arrives (tdlib: 10 s).
    pub poll_interval_ms: u64,
    /// Page size of polls (tdlib: 100); a full page is followed by another poll at once.
    pub poll_limit: i32,
    /// Attempts of a join (or removal) against `CONF_WRITE_CHAIN_INVALID` (tdlib: unlimited).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `max_backoff_ms` (tdlib: none).
    pub backoff_ms: u64,
    /// Longest retry delay.
    pub max_backoff_ms: u64,
    /// Attempts of a broadcast or message send on transient errors.
    pub max_send_attempts: u32,
    /// Largest `groupCallMessage` JSON sent or accepted, in bytes.
    pub max_message_bytes: usize,
    /// Updates (and messages) kept while a join is in flight or a gap is being filled.
    pub max_buffered_updates: usize,
    /// Message `(sender, random_id)` pairs remembered for deduplication.
    pub max_remembered_messages: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            poll_interval_ms: 10_000,
            poll_limit: 100,
            max_attempts: 8,
            backoff_ms: 250,
            max_backoff_ms: 8_000,
            max_send_attempts: 5,
            max_message_bytes: 8_192,
            max_buffered_updates: 256,
            max_remembered_messages: 4_096,
        }
    }
}

/// What an in-flight request was for.
#[derive(Clone, Debug)]
enum Pending {
    /// The tip fetch that starts a join attempt.
    JoinTip { attempt: u32 },
    /// joinGroupCall (or createConferenceCall with join) of an attempt, with its key.
    Join { attempt: u32, key: Box<PrivateKey>, create: bool },
    /// createConferenceCall without join.
    CreateOnly,
    /// A poll of one sub-chain (offset -1 learns the next offset).
    Poll { sub: SubChain, generation: u64 },
    /// The tip fetch after a refused block.
    ResyncTip { generation: u64 },
    /// A broadcast send.
    Broadcast { block: Vec<u8>, attempt: u32, generation: u64 },
    /// An encrypted message send.
    Message { encrypted: Vec<u8>, attempt: u32, generation: u64 },
    /// A removal.
    Delete { user_ids: Vec<i64>, kick: bool, attempt: u32, generation: u64 },
    /// leaveGroupCall.
    Leave,
}

/// A send to retry at `at`.
#[derive(Clone, Debug)]
enum Retry {
    Join { attempt: u32, create: bool },
    Broadcast { block: Vec<u8>, attempt: u32 },
    Message { encrypted: Vec<u8>, attempt: u32 },
    Delete { user_ids: Vec<i64>, kick: bool, attempt: u32 },
}

/// One sub-chain's sync state.
#[derive(Clone, Debug, Default)]
struct Sync {
    /// The offset of the next block we expect; `None` until known.
    next_offset: Option<i32>,
    poll_in_flight: bool,
    poll_at: Option<u64>,
    /// Updates that arrived beyond a gap, by their first offset (applied once the gap is filled).
    early: BTreeMap<i32, Vec<Vec<u8>>>,
}

/// Both sub-chains' sync state.
#[derive(Clone, Debug, Default)]
struct Syncs {
    blocks: Sync,
    broadcasts: Sync,
}

impl Syncs {
    fn get(&self, sub: SubChain) -> &Sync {
        match sub {
            SubChain::Blocks => &self.blocks,
            SubChain::Broadcasts => &self.broadcasts,
        }
    }

    fn get_mut(&mut self, sub: SubChain) -> &mut Sync {
        match sub {
            SubChain::Blocks => &mut self.blocks,
            SubChain::Broadcasts => &mut self.broadcasts,
        }
    }
}

/// A sans-IO client of one conference call (see the module docs).
///
/// ```
/// use confchain::session::{Request, Response, Session, SessionConfig, SessionEvent, SessionState, Update};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
/// let mut s = Session::new(7, SessionConfig::default());
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
    state: SessionState,
    call: Option<Call>,
    /// Bumped whenever the call is replaced: responses of older generations are ignored.
    generation: u64,
    next_id: RequestId,
    outgoing: VecDeque<(RequestId, Request)>,
    pending: BTreeMap<RequestId, Pending>,
    retries: Vec<(u64, Retry)>,
    sync: Syncs,
    /// Updates and messages that arrived while joining.
    buffered: VecDeque<Update>,
    events: VecDeque<SessionEvent>,
    seen_messages: HashSet<(i64, i64)>,
    seen_order: VecDeque<(i64, i64)>,
    participants: Vec<i64>,
    verified_height: Option<i32>,
    /// The height whose verification words were last announced.
    announced_height: Option<i32>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("state", &self.state)
            .field("height", &self.call.as_ref().map(Call::height))
            .field("offsets", &[self.sync.blocks.next_offset, self.sync.broadcasts.next_offset])
            .finish_non_exhaustive()
    }
}

/// Whether an API error is worth retrying (the request may well succeed later).
fn is_transient(error: &str) -> bool {
    const TRANSIENT: [&str; 7] =
        ["FLOOD_WAIT", "INTERNAL", "RPC_CALL_FAIL", "RPC_MCGET_FAIL", "TIMEOUT", "NETWORK", "-503"];
    TRANSIENT.iter().any(|p| error.starts_with(p))
}

fn is_chain_race(error: &str) -> bool {
    error.starts_with("CONF_WRITE_CHAIN_INVALID")
}

fn is_forbidden(error: &str) -> bool {
    error.starts_with("GROUPCALL_FORBIDDEN")
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

impl Session {
    /// A session for `user_id`, not in any call yet.
    pub fn new(user_id: i64, config: SessionConfig) -> Self {
        Session {
            user_id,
            config,
            state: SessionState::Idle,
            call: None,
            generation: 0,
            next_id: 1,
            outgoing: VecDeque::new(),
            pending: BTreeMap::new(),
            retries: Vec::new(),
            sync: Syncs::default(),
            buffered: VecDeque::new(),
            events: VecDeque::new(),
            seen_messages: HashSet::new(),
            seen_order: VecDeque::new(),
            participants: Vec::new(),
            verified_height: None,
            announced_height: None,
        }
    }

    // ---- the application's side ----

    /// Creates a new conference (`createConferenceCall`). With `join`, our zero block goes with it
    /// and the response starts the call; without, the chain stays empty and whoever joins first
    /// (us included, with [`Session::join`]) sends the zero block to `joinGroupCall`.
    pub fn create(&mut self, join: bool, _now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.check_can_join()?;
        if !join {
            self.state = SessionState::Joining;
            self.send(Request::CreateConference { public_key: None, block: None }, Pending::CreateOnly);
            return Ok(());
        }
        self.state = SessionState::Joining;
        self.start_join_attempt(0, true, rng);
        Ok(())
    }

    /// Joins the existing call (or rejoins after a removal, a failure or leaving), always with a
    /// new key: fetches the tip, then sends a zero block (empty chain) or a self-add block to
    /// `joinGroupCall`, retrying with a new tip on `CONF_WRITE_CHAIN_INVALID`.
    pub fn join(&mut self, _now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        self.check_can_join()?;
        self.state = SessionState::Joining;
        self.start_join_attempt(0, false, rng);
        Ok(())
    }

    /// Leaves the call (`leaveGroupCall`). No block is sent: the others prune us.
    pub fn leave(&mut self, _now: u64) {
        if matches!(self.state, SessionState::Left | SessionState::Leaving) {
            return;
        }
        self.reset_call();
        self.state = SessionState::Leaving;
        self.send(Request::Leave, Pending::Leave);
    }

    /// Removes participants (`deleteConferenceCallParticipants`): `kick` bans them, otherwise they
    /// are users who already left. Users not in the chain are skipped; if none is left and this is
    /// not a ban, nothing is sent. Rebuilt on `CONF_WRITE_CHAIN_INVALID` (bounded, after the newer
    /// block arrived).
    pub fn remove(&mut self, user_ids: &[i64], kick: bool, _now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        if self.state != SessionState::Joined {
            return Err(Error::new(ErrorKind::InvalidInput, "not in the call"));
        }
        if user_ids.contains(&self.user_id) {
            return Err(Error::new(ErrorKind::InvalidInput, "to remove ourselves, leave"));
        }
        self.send_removal(user_ids.to_vec(), kick, 0, rng)
    }

    /// Re-keys the group, or gives `user_id` new permissions (`Some((user_id, permissions))`):
    /// a block with the same members and a fresh key. The API has no method of its own for this;
    /// the block travels in `deleteConferenceCallParticipants` with no ids (*inferred* to be
    /// accepted like any block that extends the chain). Not retried on a lost race: a newer block
    /// re-keys anyway.
    pub fn rekey(&mut self, permissions: Option<(i64, Permissions)>, rng: &mut impl CryptoRngCore) -> Result<()> {
        if self.state != SessionState::Joined {
            return Err(Error::new(ErrorKind::InvalidInput, "not in the call"));
        }
        let call = self.call.as_ref().ok_or_else(|| Error::new(ErrorKind::InvalidInput, "not in the call"))?;
        let block = match permissions {
            None => call.build_rekey(rng)?,
            Some((user_id, p)) => call.build_set_permissions(user_id, p, rng)?,
        };
        let generation = self.generation;
        let attempt = self.config.max_attempts; // no rebuild
        self.send(
            Request::DeleteParticipants { user_ids: Vec::new(), block, kick: false },
            Pending::Delete { user_ids: Vec::new(), kick: false, attempt, generation },
        );
        Ok(())
    }

    /// Counts of what the session holds (to check that memory stays bounded).
    pub fn footprint(&self) -> Footprint {
        Footprint {
            requests_in_flight: self.pending.len(),
            queued_requests: self.outgoing.len(),
            retries: self.retries.len(),
            buffered_updates: self.buffered.len(),
            early_blocks: [&self.sync.blocks, &self.sync.broadcasts]
                .iter()
                .map(|s| s.early.values().map(Vec::len).sum::<usize>())
                .sum(),
            remembered_messages: self.seen_order.len(),
            events: self.events.len(),
        }
    }

    /// Sends a `groupCallMessage` (JSON text) with `sendGroupCallEncryptedMessage`.
    pub fn send_message(&mut self, json: &str, now: u64, rng: &mut impl CryptoRngCore) -> Result<()> {
        if json.len() > self.config.max_message_bytes {
            return Err(Error::new(ErrorKind::LimitExceeded, "message too large"));
        }
        let call = self.call.as_mut().ok_or_else(|| Error::new(ErrorKind::InvalidInput, "not in the call"))?;
        let encrypted = call.encrypt_message(json, now, rng)?;
        let generation = self.generation;
        self.send(
            Request::SendEncryptedMessage { encrypted_message: encrypted.clone() },
            Pending::Message { encrypted, attempt: 0, generation },
        );
        Ok(())
    }

    /// The next request to send, with its id (pass the id back with the response).
    pub fn poll_request(&mut self) -> Option<(RequestId, Request)> {
        self.outgoing.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next instant [`Session::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let polls = [&self.sync.blocks, &self.sync.broadcasts].into_iter().filter_map(|s| s.poll_at);
        let retries = self.retries.iter().map(|(at, _)| *at);
        let call = self.call.as_ref().and_then(Call::poll_timeout);
        polls.chain(retries).chain(call).min()
    }

    /// Runs what is due at `now`: polls, retries, epoch expiry.
    pub fn handle_timeout(&mut self, now: u64, rng: &mut impl CryptoRngCore) {
        if let Some(call) = self.call.as_mut() {
            call.handle_timeout(now);
        }
        self.drain_call_events();
        for sub in [SubChain::Blocks, SubChain::Broadcasts] {
            if self.sync.get(sub).poll_at.is_some_and(|t| t <= now) {
                self.sync.get_mut(sub).poll_at = None;
                self.poll(sub);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.retries).into_iter().partition(|(at, _)| *at <= now);
        self.retries = later;
        for (_, retry) in due {
            match retry {
                Retry::Join { attempt, create } => {
                    if self.state == SessionState::Joining {
                        self.start_join_attempt(attempt, create, rng);
                    }
                }
                Retry::Broadcast { block, attempt } => self.send_broadcast(block, attempt),
                Retry::Message { encrypted, attempt } => {
                    let generation = self.generation;
                    self.send(
                        Request::SendEncryptedMessage { encrypted_message: encrypted.clone() },
                        Pending::Message { encrypted, attempt, generation },
                    );
                }
                Retry::Delete { user_ids, kick, attempt } => {
                    if let Err(e) = self.send_removal(user_ids, kick, attempt, rng) {
                        self.log(format!("removal failed: {e}"));
                    }
                }
            }
        }
    }

    /// Takes the outcome of request `id`. Unknown ids (e.g. of a call since replaced) are ignored.
    pub fn handle_response(&mut self, id: RequestId, response: Response, now: u64, rng: &mut impl CryptoRngCore) {
        let Some(pending) = self.pending.remove(&id) else { return };
        let joining = matches!(pending, Pending::JoinTip { .. } | Pending::Join { .. } | Pending::CreateOnly);
        if joining && self.state != SessionState::Joining {
            return; // a join the application abandoned (it left meanwhile)
        }
        match (pending, response) {
            (Pending::JoinTip { attempt }, Response::Ok(updates)) => self.on_join_tip(attempt, updates, rng),
            (Pending::Join { key, .. }, Response::Ok(updates)) => self.on_joined(&key, updates, now, rng),
            // createConferenceCall is never retried: a lost response may hide a created conference,
            // and a second create would make a second one.
            (Pending::Join { create: true, .. }, Response::Error(e)) => self.fail_join(JoinFailure::Api(e)),
            (Pending::Join { attempt, .. }, Response::Error(e)) if is_chain_race(&e) || is_transient(&e) => {
                self.retry_join(attempt, false, now);
            }
            (Pending::JoinTip { attempt }, Response::Error(e)) if is_transient(&e) => {
                self.retry_join(attempt, false, now)
            }
            (Pending::JoinTip { .. } | Pending::Join { .. }, Response::Error(e)) => self.fail_join(JoinFailure::Api(e)),
            (Pending::CreateOnly, Response::Ok(_)) => {
                self.state = SessionState::Idle;
                self.events.push_back(SessionEvent::Created);
            }
            (Pending::CreateOnly, Response::Error(e)) => self.fail_join(JoinFailure::Api(e)),
            (Pending::Poll { sub, generation }, response) => {
                if generation == self.generation {
                    self.sync.get_mut(sub).poll_in_flight = false;
                }
                match response {
                    Response::Ok(updates) if generation == self.generation => {
                        self.process_updates(updates, true, now, rng);
                        self.arm_poll(sub, now);
                    }
                    Response::Error(e) if generation == self.generation && is_forbidden(&e) => self.on_forbidden(),
                    _ => {
                        if generation == self.generation {
                            self.arm_poll(sub, now);
                        }
                    }
                }
            }
            (Pending::ResyncTip { generation }, Response::Ok(updates)) if generation == self.generation => {
                self.on_resync_tip(updates, now, rng)
            }
            (Pending::ResyncTip { generation }, Response::Error(e)) if generation == self.generation => {
                if is_forbidden(&e) {
                    self.on_forbidden();
                } else {
                    // Try again at the next poll time.
                    self.state = SessionState::Joined;
                    self.arm_poll(SubChain::Blocks, now);
                }
            }
            (Pending::Broadcast { block, attempt, generation }, response) if generation == self.generation => {
                match response {
                    Response::Ok(updates) => self.process_updates(updates, false, now, rng),
                    Response::Error(e) if is_forbidden(&e) => self.on_forbidden(),
                    Response::Error(e)
                        if is_transient(&e) && attempt.saturating_add(1) < self.config.max_send_attempts =>
                    {
                        let at = now.saturating_add(self.backoff(attempt));
                        self.retries.push((at, Retry::Broadcast { block, attempt: attempt.saturating_add(1) }));
                    }
                    Response::Error(e) => self.log(format!("broadcast not sent: {e}")),
                }
            }
            (Pending::Message { encrypted, attempt, generation }, Response::Error(e))
                if generation == self.generation =>
            {
                if is_forbidden(&e) {
                    self.on_forbidden();
                } else if is_transient(&e) && attempt.saturating_add(1) < self.config.max_send_attempts {
                    let at = now.saturating_add(self.backoff(attempt));
                    self.retries.push((at, Retry::Message { encrypted, attempt: attempt.saturating_add(1) }));
                } else {
                    self.log(format!("message not sent: {e}"));
                }
            }
            (Pending::Delete { user_ids, kick, attempt, generation }, response) if generation == self.generation => {
                match response {
                    Response::Ok(updates) => self.process_updates(updates, false, now, rng),
                    Response::Error(e) if is_forbidden(&e) => self.on_forbidden(),
                    Response::Error(e)
                        if (is_chain_race(&e) || is_transient(&e))
                            && attempt.saturating_add(1) < self.config.max_attempts =>
                    {
                        // Someone else's block won: fetch it, rebuild once it is applied.
                        self.poll(SubChain::Blocks);
                        let at = now.saturating_add(self.backoff(attempt));
                        self.retries.push((at, Retry::Delete { user_ids, kick, attempt: attempt.saturating_add(1) }));
                    }
                    Response::Error(e) => self.log(format!("removal failed: {e}")),
                }
            }
            (Pending::Leave, _) => {
                self.state = SessionState::Left;
                self.events.push_back(SessionEvent::Left);
            }
            _ => {}
        }
    }

    /// Takes a pushed update. Updates arriving while a join is in flight are kept and processed
    /// once the join completes.
    pub fn handle_update(&mut self, update: Update, now: u64, rng: &mut impl CryptoRngCore) {
        match self.state {
            SessionState::Joining if self.buffered.len() < self.config.max_buffered_updates => {
                self.buffered.push_back(update);
            }
            SessionState::Joined | SessionState::Resyncing | SessionState::Removed => {
                self.process_updates(vec![update], false, now, rng)
            }
            _ => {}
        }
    }

    // ---- reading ----

    /// The session's state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Our user id.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// The call, once joined (media: `encrypt`/`decrypt` on it).
    pub fn call(&self) -> Option<&Call> {
        self.call.as_ref()
    }

    /// The call, mutably (media encryption and decryption).
    pub fn call_mut(&mut self) -> Option<&mut Call> {
        self.call.as_mut()
    }

    /// The next offset expected on a sub-chain, once known.
    pub fn next_offset(&self, sub: SubChain) -> Option<i32> {
        self.sync.get(sub).next_offset
    }

    /// Requests sent and not answered yet.
    pub fn requests_in_flight(&self) -> usize {
        self.pending.len()
    }

    // ---- join ----

    fn check_can_join(&self) -> Result<()> {
        match self.state {
            SessionState::Idle | SessionState::Removed | SessionState::Left | SessionState::Failed => Ok(()),
            _ => Err(Error::new(ErrorKind::InvalidInput, "already joining or in the call")),
        }
    }

    fn start_join_attempt(&mut self, attempt: u32, create: bool, rng: &mut impl CryptoRngCore) {
        if create {
            let key = PrivateKey::generate(rng);
            let state = GroupState {
                participants: vec![self.me(&key)],
                external_permissions: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
            };
            match build_zero_block(state, &key, rng) {
                Ok(block) => {
                    let public_key = Some(key.public_key());
                    self.send(
                        Request::CreateConference { public_key, block: Some(block) },
                        Pending::Join { attempt, key: Box::new(key), create: true },
                    );
                }
                Err(e) => self.fail_join(JoinFailure::InvalidResponse(e.to_string())),
            }
            return;
        }
        let request = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 };
        self.send(request, Pending::JoinTip { attempt });
    }

    fn me(&self, key: &PrivateKey) -> GroupParticipant {
        GroupParticipant {
            user_id: self.user_id,
            public_key: key.public_key(),
            flags: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
            version: 0,
        }
    }

    fn on_join_tip(&mut self, attempt: u32, updates: Vec<Update>, rng: &mut impl CryptoRngCore) {
        let mut tip = None;
        for u in updates {
            match u {
                Update::ChainBlocks { sub_chain_id: 0, blocks, .. } => tip = Some(blocks),
                other => {
                    if self.buffered.len() < self.config.max_buffered_updates {
                        self.buffered.push_back(other);
                    }
                }
            }
        }
        let Some(blocks) = tip else {
            return self.fail_join(JoinFailure::InvalidResponse("no sub-chain 0 in the tip response".into()));
        };
        // A fresh key per attempt: a key is never reused (replay windows are keyed by key).
        let key = PrivateKey::generate(rng);
        let block = match blocks.last() {
            // The chain is empty: the first joiner sends the zero block to joinGroupCall of THIS
            // call (never createConferenceCall, which would make a second conference).
            None => {
                let state = GroupState {
                    participants: vec![self.me(&key)],
                    external_permissions: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
                };
                build_zero_block(state, &key, rng)
            }
            Some(last) => {
                UnverifiedTip::from_server_block(last).and_then(|t| t.build_self_add(self.me(&key), &key, rng))
            }
        };
        match block {
            Ok(block) => {
                let public_key = key.public_key();
                self.send(
                    Request::Join { public_key, block },
                    Pending::Join { attempt, key: Box::new(key), create: false },
                );
            }
            Err(e) => self.fail_join(JoinFailure::InvalidResponse(format!("cannot build on the tip: {e}"))),
        }
    }

    fn retry_join(&mut self, attempt: u32, create: bool, now: u64) {
        let next = attempt.saturating_add(1);
        if next >= self.config.max_attempts {
            return self.fail_join(JoinFailure::RetriesExhausted { attempts: next });
        }
        let at = now.saturating_add(self.backoff(attempt));
        self.retries.push((at, Retry::Join { attempt: next, create }));
    }

    fn fail_join(&mut self, reason: JoinFailure) {
        self.state = SessionState::Failed;
        self.buffered.clear();
        self.events.push_back(SessionEvent::JoinFailed { reason });
    }

    /// The join (or create-with-join) response: sub-chain 0 starts with our own block.
    fn on_joined(&mut self, key: &PrivateKey, updates: Vec<Update>, now: u64, rng: &mut impl CryptoRngCore) {
        let mut chain = None;
        let mut rest = Vec::new();
        for u in updates {
            match u {
                Update::ChainBlocks { sub_chain_id: 0, blocks, next_offset } if chain.is_none() => {
                    chain = Some((blocks, next_offset))
                }
                other => rest.push(other),
            }
        }
        let Some((blocks, next_offset)) = chain else {
            return self.fail_join(JoinFailure::InvalidResponse("no sub-chain 0 in the join response".into()));
        };
        let Some(first) = blocks.first() else {
            return self.fail_join(JoinFailure::InvalidResponse("no blocks in the join response".into()));
        };
        let call = match Call::new(self.user_id, key.clone(), first, rng) {
            Ok(c) => c,
            Err(e) => return self.fail_join(JoinFailure::InvalidResponse(format!("our block: {e}"))),
        };
        self.reset_call();
        self.call = Some(call);
        self.state = SessionState::Joined;
        let first_offset = next_offset.saturating_sub(i32::try_from(blocks.len()).unwrap_or(i32::MAX));
        self.sync.get_mut(SubChain::Blocks).next_offset = Some(first_offset.saturating_add(1));
        self.sync.get_mut(SubChain::Broadcasts).next_offset = None;
        // The rest of sub-chain 0 goes through the normal path (offsets filter duplicates).
        let mut all = vec![Update::ChainBlocks { sub_chain_id: 0, blocks, next_offset }];
        all.extend(rest);
        all.extend(self.buffered.drain(..));
        self.process_updates(all, false, now, rng);
        let height = self.call.as_ref().map_or(-1, Call::height);
        self.events.push_back(SessionEvent::Joined { height });
        for sub in [SubChain::Blocks, SubChain::Broadcasts] {
            if self.sync.get(sub).next_offset.is_none() {
                self.poll(sub);
            } else {
                self.arm_poll(sub, now);
            }
        }
        self.after_batch();
    }

    fn reset_call(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.call = None;
        self.sync = Syncs::default();
        self.retries.retain(|(_, r)| matches!(r, Retry::Join { .. }));
        self.verified_height = None;
        self.announced_height = None;
    }

    // ---- sync ----

    fn poll(&mut self, sub: SubChain) {
        let s = self.sync.get_mut(sub);
        if s.poll_in_flight {
            return;
        }
        s.poll_in_flight = true;
        s.poll_at = None;
        let (offset, limit) = match s.next_offset {
            Some(o) => (o, self.config.poll_limit),
            None => (-1, 1),
        };
        let generation = self.generation;
        self.send(Request::GetChainBlocks { sub_chain: sub, offset, limit }, Pending::Poll { sub, generation });
    }

    fn arm_poll(&mut self, sub: SubChain, now: u64) {
        let live = matches!(self.state, SessionState::Joined | SessionState::Resyncing);
        if live && self.call.is_some() && !self.sync.get(sub).poll_in_flight {
            self.sync.get_mut(sub).poll_at = Some(now.saturating_add(self.config.poll_interval_ms));
        }
    }

    fn process_updates(&mut self, updates: Vec<Update>, from_poll: bool, now: u64, rng: &mut impl CryptoRngCore) {
        for u in updates {
            match u {
                Update::ChainBlocks { sub_chain_id, blocks, next_offset } => {
                    let Some(sub) = SubChain::from_id(sub_chain_id) else { continue };
                    if next_offset < 0 || self.call.is_none() {
                        continue;
                    }
                    let full = from_poll && i32::try_from(blocks.len()).is_ok_and(|n| n >= self.config.poll_limit);
                    self.chain_blocks(sub, blocks, next_offset, now, rng);
                    if full {
                        self.poll(sub);
                    }
                }
                Update::EncryptedMessage { from, encrypted_message } => self.message(from, &encrypted_message, now),
                // Not handled yet (issue 24): the call's identity and end, participants' updates.
                Update::GroupCall { .. } | Update::Participants { .. } => {}
            }
        }
        self.after_batch();
    }

    /// One `updateGroupCallChainBlocks`: applies the new tail, buffers what lies beyond a gap.
    fn chain_blocks(
        &mut self,
        sub: SubChain,
        blocks: Vec<Vec<u8>>,
        next_offset: i32,
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) {
        let len = i32::try_from(blocks.len()).unwrap_or(i32::MAX);
        let first = next_offset.saturating_sub(len);
        let s = self.sync.get_mut(sub);
        let expected = *s.next_offset.get_or_insert(first);
        if next_offset <= expected {
            return; // a duplicate, or old
        }
        if first > expected {
            // A gap: keep these for when it is filled (bounded), and fetch from what we expect.
            let held: usize = s.early.values().map(Vec::len).sum();
            if held.saturating_add(blocks.len()) <= self.config.max_buffered_updates.saturating_mul(4) {
                s.early.insert(first, blocks);
            }
            self.poll(sub);
            return;
        }
        // Only the blocks at offsets >= expected are new.
        let skip = usize::try_from(expected.saturating_sub(first)).unwrap_or(0);
        for b in blocks.into_iter().skip(skip) {
            self.apply_one(sub, &b, now, rng);
        }
        self.sync.get_mut(sub).next_offset = Some(next_offset);
        self.arm_poll(sub, now);
        // Held updates that now connect.
        loop {
            let s = self.sync.get_mut(sub);
            let Some(expected) = s.next_offset else { break };
            let Some((&start, _)) = s.early.iter().next() else { break };
            let Some(held) = s.early.remove(&start) else { break };
            let end = start.saturating_add(i32::try_from(held.len()).unwrap_or(i32::MAX));
            if start > expected {
                s.early.insert(start, held);
                break;
            }
            if end > expected {
                self.chain_blocks(sub, held, end, now, rng);
            }
        }
    }

    fn apply_one(&mut self, sub: SubChain, bytes: &[u8], now: u64, rng: &mut impl CryptoRngCore) {
        let Some(call) = self.call.as_mut() else { return };
        match sub {
            SubChain::Broadcasts => {
                // Broadcasts that do not apply (older rounds, duplicates) are routine: not logged.
                let _ = call.receive_broadcast(bytes);
            }
            SubChain::Blocks => {
                if self.state == SessionState::Resyncing {
                    return;
                }
                if let Err(e) = call.apply_block(bytes, now, rng) {
                    self.log(format!("block refused ({e}); refetching the tip"));
                    self.state = SessionState::Resyncing;
                    let generation = self.generation;
                    let request = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 };
                    self.send(request, Pending::ResyncTip { generation });
                }
            }
        }
    }

    fn on_resync_tip(&mut self, updates: Vec<Update>, now: u64, rng: &mut impl CryptoRngCore) {
        let tip = updates.into_iter().find_map(|u| match u {
            Update::ChainBlocks { sub_chain_id: 0, blocks, next_offset } => Some((blocks, next_offset)),
            _ => None,
        });
        self.state = SessionState::Joined;
        let Some((blocks, next_offset)) = tip else { return };
        let (Some(last), Some(call)) = (blocks.last(), self.call.as_mut()) else { return };
        match UnverifiedTip::from_server_block(last).and_then(|tip| call.resync(tip, now, rng)) {
            Ok(()) => {
                self.sync.get_mut(SubChain::Blocks).next_offset = Some(next_offset);
                self.sync.get_mut(SubChain::Blocks).early.clear();
            }
            Err(e) => self.log(format!("cannot resync: {e}")),
        }
        self.after_batch();
        self.arm_poll(SubChain::Blocks, now);
    }

    /// The server says we are no longer in the call (GROUPCALL_FORBIDDEN).
    fn on_forbidden(&mut self) {
        if matches!(self.state, SessionState::Joined | SessionState::Resyncing) {
            self.state = SessionState::Removed;
            self.events.push_back(SessionEvent::Removed { height: None });
            for s in [&mut self.sync.blocks, &mut self.sync.broadcasts] {
                s.poll_at = None;
            }
        }
    }

    fn message(&mut self, from: i64, encrypted: &[u8], now: u64) {
        let Some(call) = self.call.as_mut() else { return };
        let json = match call.decrypt_message(from, encrypted, now) {
            Ok(j) => j,
            // Our own echo, a replay or an old epoch: not for us to show.
            Err(e) if matches!(e.kind(), ErrorKind::OwnPacket | ErrorKind::Replay) => return,
            Err(e) => return self.log(format!("message from {from} dropped: {e}")),
        };
        if json.len() > self.config.max_message_bytes {
            return self.log(format!("message from {from} dropped: too large"));
        }
        if let Some(id) = random_id(&json) {
            if !self.seen_messages.insert((from, id)) {
                return;
            }
            self.seen_order.push_back((from, id));
            while self.seen_order.len() > self.config.max_remembered_messages {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen_messages.remove(&old);
                }
            }
        }
        self.events.push_back(SessionEvent::MessageReceived { from, json });
    }

    /// After a batch: the call's events become session events, outbound broadcasts are sent.
    fn after_batch(&mut self) {
        self.drain_call_events();
        let Some(call) = self.call.as_mut() else { return };
        let outbound = call.poll_outbound();
        for b in outbound {
            self.send_broadcast(b, 0);
        }
    }

    fn drain_call_events(&mut self) {
        let Some(call) = self.call.as_mut() else { return };
        let mut events = Vec::new();
        while let Some(e) = call.poll_event() {
            events.push(e);
        }
        let (current, fingerprint) = (call.height(), call.key_fingerprint());
        let mut removed = None;
        for e in events {
            match e {
                Event::BlockApplied { height } | Event::TipAdopted { height } => {
                    let fingerprint = if height == current { fingerprint.clone() } else { None };
                    self.events.push_back(SessionEvent::KeyChanged { height, fingerprint });
                }
                Event::Removed { height } => removed = Some(height),
                Event::KeyUnavailable { height, error } => {
                    self.log(format!("no key for the block at height {height}: {}", error.message()))
                }
                Event::VerificationDone { result } if self.verified_height != Some(result.height) => {
                    self.verified_height = Some(result.height);
                    self.events
                        .push_back(SessionEvent::VerificationDone { height: result.height, emojis: result.emojis() });
                }
                _ => {}
            }
        }
        // Participants and verification words change only with the block: looked at once per
        // new height, not on every batch of broadcasts.
        if self.announced_height != Some(current) {
            self.announced_height = Some(current);
            if let Some(call) = self.call.as_ref() {
                let mut participants: Vec<i64> = call.participants().iter().map(|p| p.user_id).collect();
                participants.sort_unstable();
                if participants != self.participants {
                    self.participants = participants.clone();
                    self.events.push_back(SessionEvent::ParticipantsChanged { user_ids: participants });
                }
                let words = call.verification_words();
                self.events.push_back(SessionEvent::VerificationStarted { height: current, words });
            }
        }
        if let Some(height) = removed {
            if self.state != SessionState::Removed {
                self.state = SessionState::Removed;
                self.events.push_back(SessionEvent::Removed { height: Some(height) });
                for s in [&mut self.sync.blocks, &mut self.sync.broadcasts] {
                    s.poll_at = None;
                }
            }
        }
    }

    // ---- sending ----

    fn send(&mut self, request: Request, pending: Pending) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.pending.insert(id, pending);
        self.outgoing.push_back((id, request));
    }

    fn send_broadcast(&mut self, block: Vec<u8>, attempt: u32) {
        // A broadcast about a block we have moved past is pointless: drop it.
        let current = self.call.as_ref().map(Call::height);
        if let Ok(b) = Broadcast::decode(&block) {
            if Some(b.chain_height) != current {
                return;
            }
        }
        let generation = self.generation;
        self.send(Request::SendBroadcast { block: block.clone() }, Pending::Broadcast { block, attempt, generation });
    }

    fn send_removal(
        &mut self,
        user_ids: Vec<i64>,
        kick: bool,
        attempt: u32,
        rng: &mut impl CryptoRngCore,
    ) -> Result<()> {
        let call = self.call.as_ref().ok_or_else(|| Error::new(ErrorKind::InvalidInput, "not in the call"))?;
        let present: Vec<i64> =
            user_ids.iter().copied().filter(|u| call.participants().iter().any(|p| p.user_id == *u)).collect();
        if present.is_empty() && !kick {
            return Ok(()); // already gone: nothing to send
        }
        let block = if present.is_empty() { call.build_rekey(rng)? } else { call.build_remove(&present, rng)? };
        let generation = self.generation;
        self.send(
            Request::DeleteParticipants { user_ids: user_ids.clone(), block, kick },
            Pending::Delete { user_ids, kick, attempt, generation },
        );
        Ok(())
    }

    fn backoff(&self, attempt: u32) -> u64 {
        let factor = 1u64.checked_shl(attempt.min(20)).unwrap_or(u64::MAX);
        self.config.backoff_ms.saturating_mul(factor).min(self.config.max_backoff_ms)
    }

    fn log(&mut self, message: String) {
        self.events.push_back(SessionEvent::Error { message });
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
