//! An in-memory model of what Telegram's server does with one conference call: it orders blocks,
//! keeps both sub-chains with their offsets, answers the requests a [`Session`](crate::session)
//! sends, and pushes updates to the members. Use it to test a client with no network: feed it each
//! request a session emits, give the session the response, and deliver the pushes.
//!
//! ```
//! use confchain::server::Server;
//! use confchain::session::{Session, SessionConfig, SessionState};
//! # use rand_core::SeedableRng;
//! # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let mut server = Server::new();
//! let mut alice = Session::new(1, SessionConfig::default())?;
//! alice.create(true, 0, &mut rng)?;
//! while let Some((id, request)) = alice.poll_request() {
//!     let (response, pushes) = server.handle(1, &request);
//!     alice.handle_response(id, response, 0, &mut rng);
//!     for (to, update) in pushes {
//!         assert_eq!(to, 1); // alice is alone: only her own broadcasts are echoed to her
//!         alice.handle_update(update, 0, &mut rng);
//!     }
//! }
//! assert_eq!(alice.state(), SessionState::Joined);
//! assert_eq!(server.height(), 0);
//! assert!(alice.call().unwrap().emojis().is_some(), "a round of one completes");
//! # Ok::<(), confchain::Error>(())
//! ```
//!
//! What it models (SPEC.md §15 lists the sources; *inferred* marks what no code or document
//! shows): blocks come back in server form (constructor id + 1); a block is accepted only if it
//! extends the current tip and passes every chain rule, else `CONF_WRITE_CHAIN_INVALID`; a join
//! block may only add (or replace) the joiner, leaving the external permissions as they were
//! (*inferred* beyond "only adds the new user"); offsets
//! of sub-chain 0 equal heights; `offset = -1` returns the last block; pages hold at most `limit`
//! entries; join and create responses carry both sub-chains (sub-chain 1 from the broadcasts of the
//! current height, *inferred*); every new block and broadcast is pushed to the joined members,
//! broadcasts to their sender too (*inferred*); encrypted messages are relayed to the other members;
//! non-members get only the last block, and members that were removed get `GROUPCALL_FORBIDDEN`
//! (*documented with low confidence*).
//!
//! With [`Behaviour::real`] it also shows the behaviours of the real server that tdlib and
//! Telegram Desktop handle (issue 24): `FLOOD_WAIT_X` (injected at random and enforced per method,
//! with [`Server::handle_at`]), a ban on `kick` (the banned user's join gets
//! `GROUPCALL_FORBIDDEN`), `GROUPCALL_JOIN_MISSING` for users who left the media call,
//! `updateGroupCallParticipants` pushes (`left` when a member leaves or is dropped), a discarded
//! call ([`Server::discard`]: `updateGroupCall` with `groupCallDiscarded` to everyone, then
//! `GROUPCALL_INVALID`), `updateGroupCall` with the call's identity in join and create responses,
//! recent broadcasts in the join response, and the last block only for a non-member's poll
//! whatever its offset. [`hostile`] wraps the server with a hostile one.

pub mod hostile;
pub mod tl;

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::api::{
    ApiError, CallIdentity, CallParticipant, Request, RequestKind, Response, ServerBlock, SubChain, Update,
};
use crate::chain::Chain;
use crate::wire::{to_server_form, Block, Broadcast};

/// Which real-server behaviours the model shows. The default is the original model (none of
/// them: every test written against it keeps its meaning); [`Behaviour::real`] shows them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Behaviour {
    /// `kick` bans the removed users: their later joins get `GROUPCALL_FORBIDDEN` (until
    /// [`Server::unban`], as the owner may invite them back).
    pub ban_on_kick: bool,
    /// A non-member's poll gets the last block only, whatever its offset (the API documentation
    /// says so and warns that this can create a gap); otherwise `GROUPCALL_FORBIDDEN`.
    pub last_block_to_non_members: bool,
    /// Member-only methods (broadcasts, messages, removals) from a user who is not in the media
    /// call get `GROUPCALL_JOIN_MISSING` (a banned user still gets `GROUPCALL_FORBIDDEN`).
    pub join_missing: bool,
    /// Pushes `updateGroupCallParticipants` to the members when someone joins (`left: false`),
    /// leaves, is dropped from the media call or is removed (`left: true`).
    pub participant_updates: bool,
    /// The call's identity, sent as `updateGroupCall` in join and create responses.
    pub identity: Option<CallIdentity>,
    /// The join response's sub-chain 1 carries up to this many of the latest broadcasts.
    pub recent_broadcasts: usize,
    /// Answers a request with `FLOOD_WAIT_X` with this probability (per thousand; needs
    /// [`Server::handle_at`], which knows the time). Once a method is flood-waited, every request
    /// of that method from that user gets `FLOOD_WAIT_<seconds left>` until the wait ends.
    pub flood_per_mille: u32,
    /// Largest X of an injected `FLOOD_WAIT_X` (at least 1).
    pub flood_max_seconds: u32,
}

impl Behaviour {
    /// Every real-server behaviour, with flood waits on 1% of requests of up to 30 s.
    pub fn real() -> Self {
        Behaviour {
            ban_on_kick: true,
            last_block_to_non_members: true,
            join_missing: true,
            participant_updates: true,
            identity: Some(CallIdentity { id: 0x00c0_ffee, access_hash: -0x0123_4567_89ab }),
            recent_broadcasts: 8,
            flood_per_mille: 10,
            flood_max_seconds: 30,
        }
    }
}

/// The server's model of one conference call (see the module docs).
#[derive(Clone, Debug)]
pub struct Server {
    chain: Chain,
    blocks: Vec<Vec<u8>>,
    broadcasts: Vec<Vec<u8>>,
    members: BTreeSet<i64>,
    /// Each member's participation: its `date` (the join's number: the model has no clock) and
    /// sources (the lowest free audio SSRC from [`FIRST_SOURCE`], even, and its camera one above:
    /// a joiner reuses the SSRCs of a member who left).
    participations: BTreeMap<i64, CallParticipant>,
    joins: i32,
    created: bool,
    behaviour: Behaviour,
    banned: BTreeSet<i64>,
    discarded: bool,
    /// Flood waits: (user, kind of request) → the instant (ms) the wait ends.
    flood_until: BTreeMap<(i64, RequestKind), u64>,
    rng: ChaCha20Rng,
}

impl Default for Server {
    fn default() -> Self {
        Server::with_behaviour(Behaviour::default(), 0)
    }
}

/// Updates to push: (recipient user id, update).
pub type Pushes = Vec<(i64, Update)>;

fn error(e: ApiError) -> (Response, Pushes) {
    (Response::Error(e), Vec::new())
}

/// An error the client has no kind for (`BLOCK_INVALID`, `GROUPCALL_ALREADY_STARTED`).
fn other(name: &str) -> ApiError {
    ApiError::Other(name.to_owned())
}

/// `FLOOD_WAIT_X` for a wait of `seconds`.
fn flood(seconds: u64) -> (Response, Pushes) {
    error(ApiError::FloodWait { seconds: u32::try_from(seconds).unwrap_or(u32::MAX) })
}

/// The stored server-form blocks as the API carries them.
fn server_blocks(list: &[Vec<u8>]) -> Vec<ServerBlock> {
    list.iter().map(|b| ServerBlock::from(b.as_slice())).collect()
}

/// The audio SSRC of the first participation ([`Server`] gives the lowest free one).
pub const FIRST_SOURCE: u32 = 1_000;

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Server {
    /// A call that does not exist yet (a create starts it), or, with [`Server::existing`], one
    /// created "create only" whose chain is empty.
    pub fn new() -> Self {
        Server::default()
    }

    /// A conference created without joining: empty chain, anyone with the link may join.
    pub fn existing() -> Self {
        Server { created: true, ..Server::default() }
    }

    /// A call that does not exist yet, with these behaviours; `seed` drives the injected flood
    /// waits (same seed, same run).
    pub fn with_behaviour(behaviour: Behaviour, seed: u64) -> Self {
        Server {
            chain: Chain::empty(),
            blocks: Vec::new(),
            broadcasts: Vec::new(),
            members: BTreeSet::new(),
            participations: BTreeMap::new(),
            joins: 0,
            created: false,
            behaviour,
            banned: BTreeSet::new(),
            discarded: false,
            flood_until: BTreeMap::new(),
            rng: ChaCha20Rng::seed_from_u64(seed),
        }
    }

    /// The behaviours shown.
    pub fn behaviour(&self) -> &Behaviour {
        &self.behaviour
    }

    /// Changes the behaviours (e.g. no flood waits once a test's hostile phase is over).
    pub fn set_behaviour(&mut self, behaviour: Behaviour) {
        self.behaviour = behaviour;
    }

    /// Whether the conference exists (created, with or without a first block).
    pub fn is_created(&self) -> bool {
        self.created
    }

    /// Whether the call was discarded ([`Server::discard`]).
    pub fn is_discarded(&self) -> bool {
        self.discarded
    }

    /// Height of the last block (-1 when empty).
    pub fn height(&self) -> i32 {
        self.chain.height()
    }

    /// The chain state the server holds.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Every block, server form (offset = index).
    pub fn blocks(&self) -> &[Vec<u8>] {
        &self.blocks
    }

    /// Every broadcast, server form.
    pub fn broadcasts(&self) -> &[Vec<u8>] {
        &self.broadcasts
    }

    /// Appends entries to sub-chain 1 as they are, unchecked (what a hostile server writes
    /// there: junk no member sent, [`hostile`]); the update that announces them.
    pub fn append_broadcasts(&mut self, entries: Vec<Vec<u8>>) -> Update {
        let blocks = server_blocks(&entries);
        self.broadcasts.extend(entries);
        Update::ChainBlocks { sub_chain: SubChain::Broadcasts, blocks, next_offset: len_i32(self.broadcasts.len()) }
    }

    /// Users joined to the call (the media session, not the chain).
    pub fn members(&self) -> impl Iterator<Item = i64> + '_ {
        self.members.iter().copied()
    }

    /// Users banned by a `kick` ([`Behaviour::ban_on_kick`]).
    pub fn banned(&self) -> impl Iterator<Item = i64> + '_ {
        self.banned.iter().copied()
    }

    /// Lifts a ban (the owner invites the user back).
    pub fn unban(&mut self, user_id: i64) {
        self.banned.remove(&user_id);
    }

    /// The server drops `user_id` from the media call (network loss, or the media stack left):
    /// it is no longer a member (its member-only requests get `GROUPCALL_JOIN_MISSING` with
    /// [`Behaviour::join_missing`]), and everyone, itself included, is told it left (tdlib
    /// leaves with `need_rejoin` on such an update about itself: "kicked from the call because of
    /// network loss"). Its chain entry stays: the members must prune it.
    pub fn drop_from_media(&mut self, user_id: i64) -> Pushes {
        if !self.members.remove(&user_id) {
            return Vec::new();
        }
        let left = self.end_participations(&[user_id]);
        let mut pushes = self.participants_left(&left);
        if self.behaviour.participant_updates {
            pushes.push((user_id, Update::Participants { participants: left }));
        }
        pushes
    }

    /// Ends the call for everyone (`phone.discardGroupCall`): every member is pushed
    /// `updateGroupCall` with `groupCallDiscarded`; every later request gets `GROUPCALL_INVALID`.
    pub fn discard(&mut self) -> Pushes {
        self.discarded = true;
        let identity = self.behaviour.identity.unwrap_or(CallIdentity { id: 0, access_hash: 0 });
        let update = Update::GroupCall { call: identity, discarded: true, invite_link: None };
        let pushes = self.push_to_members(None, &update);
        self.members.clear();
        self.participations.clear();
        pushes
    }

    /// The flood wait (seconds left) `user_id` is under for requests of `kind` at `now`, if any.
    pub fn flood_wait(&self, user_id: i64, kind: RequestKind, now: u64) -> Option<u64> {
        let until = *self.flood_until.get(&(user_id, kind))?;
        (until > now).then(|| until.saturating_sub(now).div_ceil(1000).max(1))
    }

    /// [`Server::handle`] at a time: enforces and injects flood waits ([`Behaviour::flood_per_mille`]).
    pub fn handle_at(&mut self, from: i64, request: &Request, now: u64) -> (Response, Pushes) {
        let kind = request.kind();
        if let Some(seconds) = self.flood_wait(from, kind, now) {
            return flood(seconds);
        }
        // Leaving is never flood-waited (the model's choice: a client must always be able to go).
        let per_mille = self.behaviour.flood_per_mille;
        if per_mille > 0 && !matches!(request, Request::Leave) && self.rng.next_u32() % 1000 < per_mille {
            let max = u64::from(self.behaviour.flood_max_seconds.max(1));
            let seconds = self.rng.next_u64().checked_rem(max).unwrap_or(0).saturating_add(1);
            self.flood_until.insert((from, kind), now.saturating_add(seconds.saturating_mul(1000)));
            return flood(seconds);
        }
        self.handle(from, request)
    }

    /// Handles one request from user `from`: the response for it, and the updates to push.
    pub fn handle(&mut self, from: i64, request: &Request) -> (Response, Pushes) {
        if self.discarded {
            return error(ApiError::CallInvalid);
        }
        match request {
            Request::GetChainBlocks { sub_chain, offset, limit } => self.get(from, *sub_chain, *offset, *limit),
            Request::CreateConference { block, .. } => {
                if self.created {
                    return error(other("GROUPCALL_ALREADY_STARTED"));
                }
                self.created = true;
                match block {
                    None => (Response::Ok(self.identity_update().into_iter().collect()), Vec::new()),
                    Some(b) => self.join(from, b.as_bytes()),
                }
            }
            Request::Join { block, .. } => {
                if !self.created {
                    return error(ApiError::CallInvalid);
                }
                if self.banned.contains(&from) {
                    return error(ApiError::Forbidden);
                }
                self.join(from, block.as_bytes())
            }
            Request::DeleteParticipants { user_ids, block, kick } => {
                if let Some(refused) = self.refuse_non_member(from) {
                    return refused;
                }
                match self.check_block(block.as_bytes()) {
                    Err(e) => error(e),
                    Ok((server, next)) => {
                        let update = self.commit(server, next);
                        let mut gone = Vec::new();
                        for u in user_ids {
                            if self.members.remove(u) {
                                gone.push(*u);
                            }
                            if *kick && self.behaviour.ban_on_kick {
                                self.banned.insert(*u);
                            }
                        }
                        let mut pushes = self.push_to_members(Some(from), &update);
                        let left = self.end_participations(&gone);
                        pushes.extend(self.participants_left(&left));
                        (Response::Ok(vec![update]), pushes)
                    }
                }
            }
            Request::SendBroadcast { block } => {
                if let Some(refused) = self.refuse_non_member(from) {
                    return refused;
                }
                // The sender must be who it claims (*inferred*: the server knows who sends).
                let Ok(b) = Broadcast::decode(block) else { return error(other("BLOCK_INVALID")) };
                if b.user_id != from {
                    return error(other("BLOCK_INVALID"));
                }
                let Ok(server) = to_server_form(block) else { return error(other("BLOCK_INVALID")) };
                self.broadcasts.push(server.clone());
                let update = Update::ChainBlocks {
                    sub_chain: SubChain::Broadcasts,
                    blocks: vec![server.into()],
                    next_offset: len_i32(self.broadcasts.len()),
                };
                // Everyone, the sender included, gets it by push; the response carries it too.
                let pushes = self.push_to_members(None, &update);
                (Response::Ok(vec![update]), pushes)
            }
            Request::SendEncryptedMessage { encrypted_message } => {
                if let Some(refused) = self.refuse_non_member(from) {
                    return refused;
                }
                let update = Update::EncryptedMessage { from, encrypted_message: encrypted_message.clone() };
                (Response::Ok(Vec::new()), self.push_to_members(Some(from), &update))
            }
            Request::Leave => {
                let pushes = if self.members.remove(&from) {
                    let left = self.end_participations(&[from]);
                    self.participants_left(&left)
                } else {
                    Vec::new()
                };
                (Response::Ok(Vec::new()), pushes)
            }
            Request::GetGroupParticipants { sources } => {
                // The participants sending on any of these SSRCs (`phone.groupParticipants`).
                let participants = self
                    .participations
                    .values()
                    .filter(|p| crate::sources::sources_of(p).iter().any(|(s, _)| sources.contains(s)))
                    .cloned()
                    .collect();
                (Response::Ok(vec![Update::Participants { participants }]), Vec::new())
            }
        }
    }

    /// The refusal of a member-only method from a user who is not in the call, if it is not.
    fn refuse_non_member(&self, from: i64) -> Option<(Response, Pushes)> {
        if self.members.contains(&from) {
            return None;
        }
        let banned = self.banned.contains(&from);
        Some(error(if self.behaviour.join_missing && !banned { ApiError::JoinMissing } else { ApiError::Forbidden }))
    }

    fn get(&self, from: i64, sub: SubChain, offset: i32, limit: i32) -> (Response, Pushes) {
        if !self.created {
            return error(ApiError::CallInvalid);
        }
        let list = match sub {
            SubChain::Blocks => &self.blocks,
            SubChain::Broadcasts => &self.broadcasts,
        };
        let total = list.len();
        let last_only = offset < 0
            || (!self.members.contains(&from)
                && self.behaviour.last_block_to_non_members
                && !self.banned.contains(&from));
        let (start, end) = if last_only {
            (total.saturating_sub(1), total)
        } else {
            if !self.members.contains(&from) {
                // Without `last_block_to_non_members`, or banned: refused.
                return error(ApiError::Forbidden);
            }
            let start = usize::try_from(offset).unwrap_or(0).min(total);
            let n = usize::try_from(limit.max(0)).unwrap_or(0);
            (start, start.saturating_add(n).min(total))
        };
        let blocks = server_blocks(list.get(start..end).unwrap_or_default());
        let update = Update::ChainBlocks { sub_chain: sub, blocks, next_offset: len_i32(end) };
        (Response::Ok(vec![update]), Vec::new())
    }

    /// A join (or create-with-join) block: it must extend the tip and only add the joiner.
    fn join(&mut self, from: i64, plain: &[u8]) -> (Response, Pushes) {
        let (server, next) = match self.check_block(plain) {
            Ok(checked) => checked,
            Err(e) => return error(e),
        };
        // Only the joiner is added (or its older entry replaced): everyone else is unchanged.
        let signer = Block::decode(plain).ok().and_then(|b| b.signature_public_key);
        let others = |c: &Chain| {
            let mut v: Vec<_> = c.participants().iter().filter(|p| p.user_id != from).cloned().collect();
            v.sort_by_key(|p| p.user_id);
            v
        };
        let joiner = next.participants().iter().find(|p| p.user_id == from);
        // Nor the external permissions (issue 30 item 2): the rules let a self-add lower them, and
        // lowered to none they lock the call for good (no one may raise them again). *Inferred*
        // of the real server, as the rest of this check ("only adds the new user"). The zero
        // block sets them.
        let locks = self.chain.height() >= 0
            && next.group_state().external_permissions != self.chain.group_state().external_permissions;
        if locks || others(&self.chain) != others(&next) || joiner.map(|p| Some(p.public_key)) != Some(signer) {
            return error(other("BLOCK_INVALID"));
        }
        let update = self.commit(server, next);
        let mut pushes = self.push_to_members(Some(from), &update);
        let me = self.start_participation(from);
        let joined = Update::Participants { participants: vec![me] };
        if self.behaviour.participant_updates {
            pushes.extend(self.push_to_members(Some(from), &joined));
        }
        self.members.insert(from);
        // The join response: our block (sub-chain 0) and sub-chain 1: with `recent_broadcasts`,
        // the latest broadcasts (the real server's choice is unknown; tdlib handles both), else
        // empty with the next offset (no broadcast can be about the block just added yet).
        let total = self.broadcasts.len();
        let recent = self.broadcasts.get(total.saturating_sub(self.behaviour.recent_broadcasts)..).unwrap_or_default();
        let broadcasts = Update::ChainBlocks {
            sub_chain: SubChain::Broadcasts,
            blocks: server_blocks(recent),
            next_offset: len_i32(total),
        };
        let mut response = vec![update, broadcasts];
        response.extend(self.identity_update());
        // The joiner's own participation (its source and date), as the real join result's
        // `updateGroupCallParticipants` carries it.
        response.extend(self.behaviour.participant_updates.then_some(joined));
        (Response::Ok(response), pushes)
    }

    /// `updateGroupCall` with the call's identity, when the behaviour sends it.
    fn identity_update(&self) -> Option<Update> {
        let call = self.behaviour.identity?;
        Some(Update::GroupCall { call, discarded: false, invite_link: Some("https://t.me/call/model".into()) })
    }

    /// A join (or create) response as the server would write it now: its sub-chain 0 and 1
    /// updates are extended with the blocks and broadcasts committed since it was made (the real
    /// server's join response may carry later blocks; tdlib applies them). Other responses are
    /// returned unchanged.
    pub fn refresh_join_response(&self, response: Response) -> Response {
        let Response::Ok(updates) = response else { return response };
        let refreshed = updates
            .into_iter()
            .map(|u| match u {
                Update::ChainBlocks { sub_chain, mut blocks, next_offset } => {
                    let list = match sub_chain {
                        SubChain::Blocks => &self.blocks,
                        SubChain::Broadcasts => &self.broadcasts,
                    };
                    let from = usize::try_from(next_offset).unwrap_or(usize::MAX);
                    let later = list.get(from..).unwrap_or_default();
                    blocks.extend(server_blocks(later));
                    Update::ChainBlocks { sub_chain, blocks, next_offset: len_i32(from.saturating_add(later.len())) }
                }
                other => other,
            })
            .collect();
        Response::Ok(refreshed)
    }

    /// Whether a plain-form block extends the tip and is valid: its server form and the next state.
    fn check_block(&self, plain: &[u8]) -> Result<(Vec<u8>, Chain), ApiError> {
        let server = to_server_form(plain).map_err(|_| other("BLOCK_INVALID"))?;
        let mut next = self.chain.clone();
        match next.apply(&server) {
            Ok(()) => Ok((server, next)),
            Err(e) if matches!(e.code(), Some("INVALID_BLOCK__HEIGHT_MISMATCH" | "INVALID_BLOCK__HASH_MISMATCH")) => {
                Err(ApiError::ChainRace)
            }
            Err(_) => Err(other("BLOCK_INVALID")),
        }
    }

    /// Appends a checked block; the update that announces it.
    fn commit(&mut self, server: Vec<u8>, next: Chain) -> Update {
        self.chain = next;
        self.blocks.push(server.clone());
        Update::ChainBlocks {
            sub_chain: SubChain::Blocks,
            blocks: vec![server.into()],
            next_offset: len_i32(self.blocks.len()),
        }
    }

    /// A new participation of `from` (a join replaces its earlier one): the next date, the
    /// lowest free audio SSRC and a camera SSRC above it.
    fn start_participation(&mut self, from: i64) -> CallParticipant {
        self.participations.remove(&from);
        self.joins = self.joins.saturating_add(1);
        let taken: BTreeSet<u32> = self.participations.values().map(CallParticipant::source).collect();
        let audio = (0..).map(|k: u32| FIRST_SOURCE.saturating_add(k.saturating_mul(2))).find(|s| !taken.contains(s));
        let audio = audio.unwrap_or(FIRST_SOURCE);
        let video = crate::api::VideoSources {
            endpoint: format!("endpoint-{from}"),
            source_groups: vec![crate::api::SourceGroup {
                semantics: "SIM".into(),
                sources: vec![audio.saturating_add(1)],
            }],
            audio_source: None,
        };
        let sources = crate::api::MediaSources { audio, video: Some(video), presentation: None };
        let p = CallParticipant { user_id: from, left: false, date: self.joins, version: self.joins, sources };
        self.participations.insert(from, p.clone());
        p
    }

    /// Ends these users' participations: their records with `left` (a user with none gets a
    /// bare record).
    fn end_participations(&mut self, users: &[i64]) -> Vec<CallParticipant> {
        users
            .iter()
            .map(|u| {
                let mut p = self.participations.remove(u).unwrap_or_else(|| CallParticipant::new(*u, false));
                p.left = true;
                p
            })
            .collect()
    }

    /// The participation of `user_id`, if it is in the media call.
    pub fn participation(&self, user_id: i64) -> Option<&CallParticipant> {
        self.participations.get(&user_id)
    }

    /// `updateGroupCallParticipants` with these `left` records, to the members (if the
    /// behaviour sends them).
    fn participants_left(&self, left: &[CallParticipant]) -> Pushes {
        if !self.behaviour.participant_updates || left.is_empty() {
            return Vec::new();
        }
        self.push_to_members(None, &Update::Participants { participants: left.to_vec() })
    }

    fn push_to_members(&self, except: Option<i64>, update: &Update) -> Pushes {
        self.members.iter().filter(|m| Some(**m) != except).map(|m| (*m, update.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::hostile::{HostileServer, Hostility, OUTSIDER};
    use super::*;
    use crate::api::ApiError;
    use crate::call::Call;
    use crate::chain::build_zero_block;
    use crate::crypto::PrivateKey;
    use crate::wire::{GroupParticipant, GroupState, Permissions};

    fn me(user_id: i64, key: &PrivateKey) -> GroupParticipant {
        GroupParticipant {
            user_id,
            public_key: key.public_key(),
            flags: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
            version: 0,
        }
    }

    /// A call created by user 1 and joined by the others, on a server with `behaviour`.
    fn call(users: &[i64], behaviour: Behaviour) -> (Server, Vec<PrivateKey>, ChaCha20Rng) {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut server = Server::with_behaviour(behaviour, 3);
        let mut keys = Vec::new();
        for (i, &u) in users.iter().enumerate() {
            let key = PrivateKey::generate(&mut rng);
            let request = if i == 0 {
                let state = GroupState {
                    participants: vec![me(u, &key)],
                    external_permissions: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
                };
                let block = build_zero_block(state, &key, &mut rng).unwrap();
                Request::CreateConference { public_key: Some(key.public_key()), block: Some(block) }
            } else {
                let block = server.chain().build_self_add(me(u, &key), &key, &mut rng).unwrap();
                Request::Join { public_key: key.public_key(), block }
            };
            let (response, _) = server.handle(u, &request);
            assert!(matches!(response, Response::Ok(_)), "{response:?}");
            keys.push(key);
        }
        (server, keys, rng)
    }

    fn err(response: &Response) -> String {
        match response {
            Response::Error(e) => e.to_string(),
            Response::Ok(_) => "ok".to_owned(),
        }
    }

    fn removal(server: &Server, key: &PrivateKey, gone: i64, rng: &mut ChaCha20Rng) -> crate::wire::PlainBlock {
        let mut state = server.chain().group_state().clone();
        state.participants.retain(|p| p.user_id != gone);
        server.chain().build_change_state(state, key, rng).unwrap()
    }

    #[test]
    fn a_kick_bans_and_tells_the_others_until_unbanned() {
        let (mut server, keys, mut rng) = call(&[1, 2, 3], Behaviour::real());
        let bob = server.participation(2).cloned().unwrap();
        let block = removal(&server, &keys[0], 2, &mut rng);
        let (response, pushes) =
            server.handle(1, &Request::DeleteParticipants { user_ids: vec![2], block, kick: true });
        assert_eq!(err(&response), "ok");
        // The participation that ended, with its sources and date.
        let left = Update::Participants { participants: vec![CallParticipant { left: true, ..bob.clone() }] };
        assert!(pushes.contains(&(3, left.clone())) && pushes.contains(&(1, left)), "{pushes:?}");
        let key = PrivateKey::generate(&mut rng);
        let block = server.chain().build_self_add(me(2, &key), &key, &mut rng).unwrap();
        let join = Request::Join { public_key: key.public_key(), block };
        assert_eq!(err(&server.handle(2, &join).0), "GROUPCALL_FORBIDDEN");
        let poll = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: 0, limit: 100 };
        assert_eq!(err(&server.handle(2, &poll).0), "GROUPCALL_FORBIDDEN");
        server.unban(2);
        assert_eq!(err(&server.handle(2, &join).0), "ok");
        // Bob's new participation reuses his SSRCs (the lowest free), with a later date.
        let again = server.participation(2).cloned().unwrap();
        assert_eq!((again.source(), again.date > bob.date), (bob.source(), true));
        // A lookup by source names the participants sending on them.
        let lookup = Request::GetGroupParticipants { sources: vec![bob.source(), 12_345] };
        let (response, _) = server.handle(1, &lookup);
        assert_eq!(response, Response::Ok(vec![Update::Participants { participants: vec![again] }]));
    }

    #[test]
    fn a_dropped_member_gets_join_missing_and_the_last_block_only() {
        let (mut server, _, _) = call(&[1, 2, 3], Behaviour::real());
        let bob = server.participation(2).cloned().unwrap();
        let pushes = server.drop_from_media(2);
        let left = Update::Participants { participants: vec![CallParticipant { left: true, ..bob }] };
        for u in [1, 2, 3] {
            assert!(pushes.contains(&(u, left.clone())), "{u}: {pushes:?}");
        }
        let message = Request::SendEncryptedMessage { encrypted_message: vec![1, 2, 3] };
        assert_eq!(err(&server.handle(2, &message).0), "GROUPCALL_JOIN_MISSING");
        let poll = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: 0, limit: 100 };
        let (response, _) = server.handle(2, &poll);
        let last = server.blocks().last().cloned().unwrap();
        assert_eq!(
            response,
            Response::Ok(vec![Update::ChainBlocks {
                sub_chain: SubChain::Blocks,
                blocks: vec![last.into()],
                next_offset: 3
            }])
        );
        // The original model refuses instead.
        let (mut model, _, _) = call(&[1, 2], Behaviour::default());
        model.drop_from_media(2);
        assert_eq!(err(&model.handle(2, &poll).0), "GROUPCALL_FORBIDDEN");
    }

    #[test]
    fn a_discarded_call_is_pushed_to_everyone_then_invalid() {
        let (mut server, _, _) = call(&[1, 2], Behaviour::real());
        let pushes = server.discard();
        assert_eq!(pushes.len(), 2);
        assert!(pushes.iter().all(|(_, u)| matches!(u, Update::GroupCall { discarded: true, .. })));
        let poll = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 };
        assert_eq!(err(&server.handle(1, &poll).0), "GROUPCALL_INVALID");
        assert_eq!(err(&server.handle(1, &Request::Leave).0), "GROUPCALL_INVALID");
    }

    #[test]
    fn flood_waits_hold_per_method_until_they_end() {
        let (mut server, _, _) = call(&[1], Behaviour::real());
        server.set_behaviour(Behaviour { flood_per_mille: 1000, flood_max_seconds: 5, ..Behaviour::real() });
        let poll = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 };
        let (response, _) = server.handle_at(1, &poll, 1_000);
        let Some(ApiError::FloodWait { seconds }) = Some(ApiError::parse(err(&response))) else { panic!() };
        assert!((1..=5).contains(&seconds));
        assert_eq!(err(&server.handle_at(1, &Request::Leave, 1_000).0), "ok", "leaving is never flood-waited");
        server.set_behaviour(Behaviour { flood_per_mille: 0, ..Behaviour::real() });
        let end = 1_000 + u64::from(seconds) * 1_000;
        assert!(err(&server.handle_at(1, &poll, end - 1).0).starts_with("FLOOD_WAIT_"));
        assert_eq!(err(&server.handle_at(1, &poll, end).0), "ok");
    }

    #[test]
    fn join_responses_carry_the_identity_recent_broadcasts_and_later_blocks() {
        let (mut server, keys, mut rng) = call(&[1], Behaviour::real());
        let key = PrivateKey::generate(&mut rng);
        let block = server.chain().build_self_add(me(2, &key), &key, &mut rng).unwrap();
        let (response, _) = server.handle(2, &Request::Join { public_key: key.public_key(), block });
        let Response::Ok(updates) = &response else { panic!("{response:?}") };
        assert!(updates.iter().any(|u| matches!(u, Update::GroupCall { discarded: false, .. })));
        // A block committed before the response is delivered is in it.
        let rekey = server.chain().build_change_state(server.chain().group_state().clone(), &keys[0], &mut rng);
        let request = Request::DeleteParticipants { user_ids: vec![], block: rekey.unwrap(), kick: false };
        assert_eq!(err(&server.handle(1, &request).0), "ok");
        let Response::Ok(updates) = server.refresh_join_response(response) else { panic!() };
        let Some(Update::ChainBlocks { blocks, next_offset, .. }) = updates.first() else { panic!() };
        assert_eq!((blocks.len(), *next_offset), (2, 3));
    }

    #[test]
    fn the_hostile_server_forges_refused_blocks_the_outsider_can_read() {
        let (server, _, mut rng) = call(&[1, 2], Behaviour::real());
        let mut hostile = HostileServer::new(server, Hostility::refused_blocks(), 9);
        for _ in 0..6 {
            let pushes = hostile.forge();
            assert_eq!(pushes.len(), 2, "pushed to every member");
            let forged = hostile.forged().last().cloned().unwrap();
            assert_eq!(forged.height, 2);
            assert!(hostile.server().chain().clone().apply(&forged.block).is_err(), "the rules refuse it");
            let outsider = Call::new(OUTSIDER, hostile.outsider_key().clone(), &forged.block, &mut rng).unwrap();
            assert!(outsider.has_current_key(), "the outsider holds its key");
            // It is served as the tip.
            let tip = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 };
            let (response, _) = hostile.handle_at(1, &tip, 0);
            let expected = Update::ChainBlocks {
                sub_chain: SubChain::Blocks,
                blocks: vec![forged.block.clone().into()],
                next_offset: 3,
            };
            assert_eq!(response, Some(Response::Ok(vec![expected])));
        }
    }

    #[test]
    fn the_hostile_server_answers_broadcast_polls_with_full_pages_of_junk() {
        let (server, _, _) = call(&[1, 2], Behaviour::real());
        let mut hostile = HostileServer::new(server, Hostility { junk_pages: 1000, ..Hostility::none() }, 9);
        let total = hostile.server().broadcasts().len();
        let offset = i32::try_from(total).unwrap();
        let poll = Request::GetChainBlocks { sub_chain: SubChain::Broadcasts, offset, limit: 10 };
        let (response, pushes) = hostile.handle_at(1, &poll, 0);
        let Some(Response::Ok(updates)) = response else { panic!() };
        let Some(Update::ChainBlocks { blocks, next_offset, .. }) = updates.first() else { panic!() };
        assert_eq!((blocks.len(), *next_offset), (10, offset + 10), "a full page, the offset moved");
        assert_eq!(hostile.server().broadcasts().len(), total + 10, "written into sub-chain 1");
        assert!(pushes.iter().all(|(to, _)| *to == 2) && pushes.len() == 1, "{pushes:?}");
        assert_eq!(hostile.played().junk_pages, 1);
    }

    #[test]
    fn the_hostile_server_delivers_a_left_notice_after_the_rejoin() {
        let (server, _, mut rng) = call(&[1, 2], Behaviour::real());
        let mut hostile = HostileServer::new(server, Hostility { late_notices: 1000, ..Hostility::none() }, 9);
        let before = hostile.server().participation(2).cloned().unwrap();
        assert!(hostile.drop_from_media(2, 0).is_empty(), "every notice of the drop held back");
        let key = PrivateKey::generate(&mut rng);
        let block = hostile.server().chain().build_self_add(me(2, &key), &key, &mut rng).unwrap();
        let (_, pushes) = hostile.handle_at(2, &Request::Join { public_key: key.public_key(), block }, 1_000);
        let late = Update::Participants { participants: vec![CallParticipant { left: true, ..before }] };
        for to in [1, 2] {
            assert!(pushes.contains(&(to, late.clone())), "{to}: {pushes:?}");
        }
        // Alice, told late, is not told of the rejoin by its record.
        let joined = |u: &Update| matches!(u, Update::Participants { participants } if !participants[0].left);
        assert!(!pushes.iter().any(|(to, u)| *to == 1 && joined(u)), "{pushes:?}");
        assert_eq!(hostile.played().late_notices, 2);
    }

    #[test]
    fn the_hostile_server_withholds_offsets_and_stays_silent() {
        let (server, _, _) = call(&[1, 2], Behaviour::default());
        let withhold = Hostility { withhold: 1000, ..Hostility::none() };
        let mut hostile = HostileServer::new(server, withhold, 9);
        let poll = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: 1, limit: 100 };
        for now in [0, 1_000, 4_999] {
            let (response, _) = hostile.handle_at(1, &poll, now);
            let Some(Response::Ok(updates)) = response else { panic!() };
            let Some(Update::ChainBlocks { blocks, next_offset, .. }) = updates.first() else { panic!() };
            assert!(blocks.is_empty() && *next_offset > 1, "{updates:?}");
        }
        hostile.set_hostility(Hostility { silent: 1000, ..Hostility::none() });
        assert_eq!(hostile.handle_at(1, &poll, 6_000).0, None);
        hostile.set_hostility(Hostility::none());
        assert!(matches!(hostile.handle_at(1, &poll, 7_000).0, Some(Response::Ok(_))));
    }
}
