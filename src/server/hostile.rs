//! A hostile server: the [`Server`] model wrapped by an adversary that controls every answer and
//! every push, as a compromised or malicious server would (issue 23). It cannot sign as a member,
//! but it can:
//!
//! * relay blocks the chain rules refuse, as pushes, as the tip and at the end of a join response
//!   ([`HostileServer::forge`]): an
//!   outsider ([`OUTSIDER`]) adds itself on top of the real tip, either granting itself
//!   permissions an external signer may not grant (`NO_PERMISSIONS`) or signing in a member's
//!   name (`INVALID_SIGNATURE`); both blocks are internally consistent, so a client that trusts
//!   them without the rules (`UnverifiedTip`, `Call::resync`) hands the outsider the
//!   group key;
//! * forge tips: answer `offset = -1` (and pages reaching the tip) with the forged block;
//! * answer polls with gaps (a page starting after the offset asked), with the last block only,
//!   or withhold offsets (`blocks: []` with `next_offset` jumping ahead);
//! * replay old pushes and reorder pushes (hold them back past later ones);
//! * stay silent: never answer a request (having acted on it or not);
//! * write junk into sub-chain 1 (issue 30): full pages of it to a member's broadcast polls
//!   (random bytes, and well-formed broadcasts for the current height with bad signatures),
//!   pushed to the others too, so that the offset moves and nothing is delivered
//!   ([`Hostility::junk_pages`]); and, before a new block, commits and reveals for its height
//!   under participants' ids, signed by another key or garbage, enough to fill what a member
//!   holds per (height, user, kind) ([`Hostility::member_junk`]);
//! * delay notices (issue 30 items 5 and 6): hold a `left` record back until its subject
//!   rejoined, then deliver it; drop a member from the media call and tell no one, itself
//!   included, until it rejoined; push a false `left` about a member still in the call
//!   ([`Hostility::late_notices`]).
//!
//! Everything is drawn from one seeded ChaCha20 RNG: the same seed and requests give the same
//! answers. The honest chain underneath only ever holds blocks that pass the rules, so
//! [`HostileServer::server`] is the ground truth a test compares members with (its sub-chain 1
//! holds the junk the adversary wrote, where every member reads it). [`HostileServer::played`]
//! counts the attacks of issue 30 played.

use std::collections::{BTreeMap, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::{Pushes, Server};
use crate::api::CallParticipant;
use crate::api::{Request, Response, SubChain, Update};
use crate::chain::{shared_key_changes, UnverifiedTip};
use crate::crypto::PrivateKey;
use crate::limits::HELD_BROADCASTS_PER_SENDER;
use crate::wire::{to_server_form, Block, Broadcast, BroadcastPayload, GroupParticipant, Permissions, StateProof};

/// The user id of the outsider whose key the hostile server slips into forged blocks.
pub const OUTSIDER: i64 = 666_000_666;

/// How often each hostile behaviour happens, in parts per thousand of the requests handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Hostility {
    /// A refused block is forged on top of the tip and pushed to every member.
    pub refused_push: u32,
    /// While a forged block sits on top of the tip, a tip request (or a page reaching the tip) is
    /// answered with it.
    pub forged_tip: u32,
    /// A page of sub-chain 0 or 1 starts after the offset asked (a gap).
    pub gap: u32,
    /// A poll is answered with the last entry only, whatever its offset.
    pub last_only: u32,
    /// A poll starts an episode of [`WITHHOLD_MS`] during which every poll of that user and
    /// sub-chain is answered with no entries and a `next_offset` jumping past the offset asked.
    pub withhold: u32,
    /// An old push is replayed to its recipient.
    pub replay: u32,
    /// A request's pushes are held back and delivered after later ones.
    pub reorder: u32,
    /// A request is never answered (the server acts on it half of the time).
    pub silent: u32,
    /// A joiner with the call's link (a new user id from [`ATTACKERS`] on) self-adds with a key no
    /// one can use ([`poisoned_self_add`], garbage key headers half the time): the rules accept it,
    /// and no block keeping the entry can be built until a member removes it (issue 30 item 1).
    pub poisoned_key: u32,
    /// A joiner self-adds lowering the external permissions to none, which would lock the call to
    /// every later join for good (issue 30 item 2); the honest model refuses it.
    pub lowered_permissions: u32,
    /// A member's broadcast poll (sub-chain 1, offset 0 or more) starts an episode of
    /// [`JUNK_MS`] during which every broadcast poll of that member is answered with a full page
    /// (`limit` entries) of new junk written into sub-chain 1 (random bytes, and well-formed
    /// broadcasts for the current height with bad signatures), pushed to the other members too:
    /// each page moves the offset ahead and delivers nothing (issue 30 item 8).
    pub junk_pages: u32,
    /// A new block: before it is pushed, junk commits and reveals for its height under the ids of
    /// up to [`MEMBER_JUNK_USERS`] of its participants ([`HELD_BROADCASTS_PER_SENDER`] of each kind, signed by the outsider or
    /// garbage) are written into sub-chain 1 and pushed, ahead of the members' real ones: a member
    /// that has not applied the block holds them, and each member's real broadcast must displace
    /// them (issue 30 item 7, SPEC §7.2).
    pub member_junk: u32,
    /// A `left` record the server pushes is held back (per recipient) until its subject rejoined
    /// (a later participation), then delivered (and the rejoin's `joined` record withheld from
    /// that recipient), or dropped after [`LATE_MS`]; a `joined` record
    /// comes with a false `left` record about another member still in the call, pushed to every
    /// member, that member included, and (as often again) with another member dropped from the
    /// media call, every notice of it held back until it rejoined (issue 30 items 5 and 6).
    pub late_notices: u32,
}

impl Hostility {
    /// No hostility: an honest server.
    pub fn none() -> Self {
        Hostility::default()
    }

    /// Every hostile behaviour, often enough to meet each many times in a few hundred steps.
    pub fn all() -> Self {
        Hostility {
            refused_push: 15,
            forged_tip: 500,
            gap: 60,
            last_only: 60,
            withhold: 60,
            replay: 40,
            reorder: 40,
            silent: 20,
            poisoned_key: 4,
            lowered_permissions: 4,
            junk_pages: 10,
            member_junk: 50,
            late_notices: 50,
        }
    }

    /// Only the attacks of joiners with the call's link (issue 30 items 1 and 2).
    pub fn joiners() -> Self {
        Hostility { poisoned_key: 10, lowered_permissions: 10, ..Hostility::none() }
    }

    /// Only the junk in sub-chain 1 (issue 30 items 7 and 8): every broadcast poll answered with
    /// full pages of junk for a while, junk under members' ids before half the blocks.
    pub fn junk() -> Self {
        Hostility { junk_pages: 1000, member_junk: 500, ..Hostility::none() }
    }

    /// Only the delayed and false `left` notices (issue 30 items 5 and 6).
    pub fn notices() -> Self {
        Hostility { late_notices: 500, ..Hostility::none() }
    }

    /// Only the attack of issue 23 item 1: refused blocks pushed and served as the tip.
    pub fn refused_blocks() -> Self {
        Hostility { refused_push: 15, forged_tip: 1000, ..Hostility::none() }
    }

    /// Only the liveness attacks: gaps, last-only pages, withheld offsets, silence.
    pub fn stalls() -> Self {
        Hostility { gap: 100, last_only: 100, withhold: 150, silent: 30, ..Hostility::none() }
    }
}

/// A refused block the hostile server made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forged {
    /// Its height (one above the real tip when it was made).
    pub height: i32,
    /// Its hash (as a chain that adopted it would hold it).
    pub hash: [u8; 32],
    /// The block, server form.
    pub block: Vec<u8>,
}

/// How long a withholding episode lasts (ms).
pub const WITHHOLD_MS: u64 = 5_000;

/// The first user id of the joiners the adversary sends with the call's link (each attack a new
/// one: a kick bans the last).
pub const ATTACKERS: i64 = 666_000_700;

/// A joiner's attack the hostile server made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinerAttack {
    /// A self-add with a key no one can use, accepted at this height.
    PoisonedKey {
        /// The attacker's user id.
        user_id: i64,
        /// The height of its block.
        height: i32,
    },
    /// A self-add lowering the external permissions, and whether the server accepted it.
    LoweredPermissions {
        /// The attacker's user id.
        user_id: i64,
        /// Whether the (honest) server accepted it: it must not.
        accepted: bool,
    },
}

/// How long a junk-page episode lasts (ms).
pub const JUNK_MS: u64 = 5_000;

/// Participants under whose ids junk precedes a block ([`Hostility::member_junk`]), at most
/// (chosen at random: the cost stays bounded in large calls).
pub const MEMBER_JUNK_USERS: usize = 4;

/// How long a `left` record is held back at most, waiting for its subject to rejoin (ms).
pub const LATE_MS: u64 = 60_000;

/// The attacks of issue 30 the hostile server played, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Played {
    /// Full pages of junk answered to broadcast polls ([`Hostility::junk_pages`]).
    pub junk_pages: u64,
    /// Blocks preceded by junk under their participants' ids ([`Hostility::member_junk`]).
    pub member_junk: u64,
    /// `left` records delivered after their subject rejoined ([`Hostility::late_notices`]).
    pub late_notices: u64,
    /// False `left` records about a member still in the call ([`Hostility::late_notices`]).
    pub false_notices: u64,
    /// Members dropped from the media call with every notice of it held back until they rejoined
    /// ([`Hostility::late_notices`]).
    pub silent_drops: u64,
}

/// Left notices held back at most.
const LATE_KEPT: usize = 64;

/// A `left` record held back.
#[derive(Debug)]
struct Late {
    to: i64,
    update: Update,
    /// The user who left, and the date of the participation that ended.
    subject: i64,
    date: i32,
    held_at: u64,
}

/// Pushes kept for replay.
const REPLAYABLE: usize = 64;
/// Forged blocks kept.
const FORGED_KEPT: usize = 64;

/// The honest [`Server`] model under a hostile relay (see the module docs).
#[derive(Debug)]
pub struct HostileServer {
    server: Server,
    hostility: Hostility,
    rng: ChaCha20Rng,
    outsider: PrivateKey,
    forged: VecDeque<Forged>,
    /// The forged block served as the tip while it sits one above the real tip.
    tip: Option<Forged>,
    recent: VecDeque<(i64, Update)>,
    held: Pushes,
    /// Withholding episodes: (user, sub-chain) → end (ms).
    withholding: BTreeMap<(i64, SubChain), u64>,
    /// The joiners' attacks made (the latest 64).
    attacks: VecDeque<JoinerAttack>,
    next_attacker: i64,
    /// Junk-page episodes: user → end (ms).
    junk_until: BTreeMap<i64, u64>,
    /// `left` records held back until their subject rejoins.
    late: VecDeque<Late>,
    played: Played,
}

impl HostileServer {
    /// Wraps `server`; `seed` drives every hostile choice.
    pub fn new(server: Server, hostility: Hostility, seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x686f_7374_696c_6521);
        let outsider = PrivateKey::generate(&mut rng);
        HostileServer {
            server,
            hostility,
            rng,
            outsider,
            forged: VecDeque::new(),
            tip: None,
            recent: VecDeque::new(),
            held: Vec::new(),
            withholding: BTreeMap::new(),
            attacks: VecDeque::new(),
            next_attacker: ATTACKERS,
            junk_until: BTreeMap::new(),
            late: VecDeque::new(),
            played: Played::default(),
        }
    }

    /// The attacks of issue 30 played so far (junk pages, junk under members' ids, late and
    /// false notices).
    pub fn played(&self) -> Played {
        self.played
    }

    /// The joiners' attacks made (the latest 64).
    pub fn attacks(&self) -> impl Iterator<Item = &JoinerAttack> {
        self.attacks.iter()
    }

    /// A joiner with the call's link attacks (see [`Hostility::poisoned_key`] and
    /// [`Hostility::lowered_permissions`]) through the honest server; the pushes of an accepted
    /// join.
    pub fn joiner_attack(&mut self, poison: bool, now: u64) -> Pushes {
        let tip = self.server.chain().clone();
        // Only while a member who may remove it is in the call: once every member left, an entry
        // no one can use makes the call unjoinable for everyone (official apps included), which
        // no client can undo (SPEC §12).
        let remover = self.server.members().any(|m| {
            m < ATTACKERS
                && tip.participants().iter().any(|p| p.user_id == m && p.flags.contains(Permissions::REMOVE_USERS))
        });
        if tip.height() < 0 || self.server.is_discarded() || !remover {
            return Vec::new();
        }
        let user_id = self.next_attacker;
        self.next_attacker = self.next_attacker.wrapping_add(1);
        let key = PrivateKey::generate(&mut self.rng);
        let (public_key, block) = if poison {
            let garbage = self.rng.next_u32().is_multiple_of(2);
            let Some(block) = poisoned_self_add(&tip, user_id, garbage, &mut self.rng) else { return Vec::new() };
            (crate::crypto::PublicKey::from_bytes(UNUSABLE_KEYS[0]), block)
        } else {
            let mut state = tip.group_state().clone();
            state.external_permissions = Permissions::NONE;
            state.participants.retain(|p| p.user_id != user_id);
            state.participants.push(GroupParticipant {
                user_id,
                public_key: key.public_key(),
                // The joiner needs a right of its own to set the shared key.
                flags: tip.group_state().external_permissions,
                version: 0,
            });
            let Ok(block) = tip.build_change_state(state, &key, &mut self.rng) else { return Vec::new() };
            (key.public_key(), block)
        };
        let (response, pushes) = self.server.handle_at(user_id, &Request::Join { public_key, block }, now);
        let accepted = matches!(response, Response::Ok(_));
        let attack = if poison {
            if !accepted {
                return Vec::new();
            }
            JoinerAttack::PoisonedKey { user_id, height: self.server.height() }
        } else {
            JoinerAttack::LoweredPermissions { user_id, accepted }
        };
        if self.attacks.len() == FORGED_KEPT {
            self.attacks.pop_front();
        }
        self.attacks.push_back(attack);
        pushes
    }

    /// The honest server underneath (the ground truth).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The honest server underneath, mutably (to discard the call, drop a member, ...).
    pub fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    /// The hostility in force.
    pub fn hostility(&self) -> Hostility {
        self.hostility
    }

    /// Changes the hostility (e.g. [`Hostility::none`] once a test's hostile phase is over; the
    /// forged tip and held pushes are dropped then).
    pub fn set_hostility(&mut self, hostility: Hostility) {
        self.hostility = hostility;
        if hostility == Hostility::none() {
            self.tip = None;
            self.held.clear();
            self.withholding.clear();
            self.junk_until.clear();
            self.late.clear();
        }
    }

    /// The honest server drops `user_id` from the media call ([`Server::drop_from_media`]);
    /// its `left` notices may be held back ([`Hostility::late_notices`]).
    pub fn drop_from_media(&mut self, user_id: i64, now: u64) -> Pushes {
        let pushes = self.server.drop_from_media(user_id);
        self.notices(pushes, now)
    }

    /// The outsider's private key (what the adversary holds: a test tries it on members' packets).
    pub fn outsider_key(&self) -> &PrivateKey {
        &self.outsider
    }

    /// The latest refused blocks made (at most 64).
    pub fn forged(&self) -> impl Iterator<Item = &Forged> {
        self.forged.iter()
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.rng.next_u32() % 1000 < per_mille
    }

    /// Handles a request at `now`: the response (`None`: the server stays silent, never
    /// answering) and the pushes.
    pub fn handle_at(&mut self, from: i64, request: &Request, now: u64) -> (Option<Response>, Pushes) {
        let h = self.hostility;
        if self.chance(h.silent) {
            let acted = self.rng.next_u32().is_multiple_of(2);
            let pushes = if acted { self.server.handle_at(from, request, now).1 } else { Vec::new() };
            return (None, self.relay(pushes));
        }
        let height = self.server.height();
        let (mut response, mut pushes) = self.server.handle_at(from, request, now);
        for poison in [true, false] {
            let rate = if poison { h.poisoned_key } else { h.lowered_permissions };
            if self.chance(rate) {
                pushes.extend(self.joiner_attack(poison, now));
            }
        }
        if self.server.height() > height && self.chance(h.member_junk) {
            // Ahead of the block's push, and so of every real broadcast about it.
            let mut junk = self.member_junk();
            junk.append(&mut pushes);
            pushes = junk;
        }
        if let (Request::GetChainBlocks { sub_chain: SubChain::Broadcasts, offset, limit }, Response::Ok(updates)) =
            (request, &mut response)
        {
            if *offset >= 0 && self.junk_episode(from, now) {
                pushes.extend(self.junk_page(from, *limit, updates));
            }
        }
        let pushes = self.notices(pushes, now);
        let mut pushes = self.relay(pushes);
        let join = matches!(request, Request::Join { .. } | Request::CreateConference { block: Some(_), .. });
        if self.chance(h.refused_push) {
            let forged = self.forge();
            // A join response carries later blocks: the forged one rides along.
            if let (true, Some(tip), Response::Ok(updates)) = (join, self.tip.clone(), &mut response) {
                if let Some(Update::ChainBlocks { blocks, next_offset, .. }) =
                    updates.iter_mut().find(|u| matches!(u, Update::ChainBlocks { sub_chain: SubChain::Blocks, .. }))
                {
                    if *next_offset == tip.height {
                        blocks.push(tip.block.into());
                        *next_offset = next_offset.saturating_add(1);
                    }
                }
            }
            pushes.extend(forged);
        }
        if let (Request::GetChainBlocks { sub_chain, offset, .. }, Response::Ok(updates)) = (request, &mut response) {
            self.withholding.retain(|_, until| *until > now);
            let withheld = if self.withholding.contains_key(&(from, *sub_chain)) {
                true
            } else if *offset >= 0 && self.chance(h.withhold) {
                self.withholding.insert((from, *sub_chain), now.saturating_add(WITHHOLD_MS));
                true
            } else {
                false
            };
            for u in updates.iter_mut() {
                self.distort_page(*sub_chain, *offset, withheld, u);
            }
        }
        (Some(response), pushes)
    }

    /// Whether `from`'s broadcast poll at `now` is in a junk-page episode (or starts one).
    fn junk_episode(&mut self, from: i64, now: u64) -> bool {
        self.junk_until.retain(|_, until| *until > now);
        if self.junk_until.contains_key(&from) {
            return true;
        }
        if !self.server.members().any(|m| m == from) || !self.chance(self.hostility.junk_pages) {
            return false;
        }

        self.junk_until.insert(from, now.saturating_add(JUNK_MS));
        true
    }

    /// Fills the answer to `from`'s broadcast poll up to `limit` entries with new junk written
    /// into sub-chain 1 (if the page reaches its end); the pushes of that junk to the others.
    fn junk_page(&mut self, from: i64, limit: i32, updates: &mut [Update]) -> Pushes {
        let total = self.server.broadcasts().len();
        let Some(Update::ChainBlocks { blocks, next_offset, .. }) =
            updates.iter_mut().find(|u| matches!(u, Update::ChainBlocks { sub_chain: SubChain::Broadcasts, .. }))
        else {
            return Vec::new();
        };
        let limit = usize::try_from(limit.clamp(1, 1_000)).unwrap_or(1);
        if usize::try_from(*next_offset).ok() != Some(total) || blocks.len() >= limit {
            return Vec::new();
        }
        let junk: Vec<Vec<u8>> = (blocks.len()..limit).map(|_| self.junk_entry()).collect();
        let update = self.server.append_broadcasts(junk);
        if let Update::ChainBlocks { blocks: junk, next_offset: next, .. } = &update {
            blocks.extend(junk.iter().cloned());
            *next_offset = *next;
        }
        self.played.junk_pages = self.played.junk_pages.saturating_add(1);
        self.server.members().filter(|m| *m != from).map(|m| (m, update.clone())).collect()
    }

    /// One junk entry of sub-chain 1: random bytes, or a well-formed broadcast for the current
    /// height, under a participant's id or a made-up one, with a bad signature.
    fn junk_entry(&mut self) -> Vec<u8> {
        let tip = self.server.chain();
        let (height, hash) = (tip.height(), *tip.hash());
        let users: Vec<i64> = tip.participants().iter().map(|p| p.user_id).collect();
        let roll = self.rng.next_u32();
        if height < 0 || roll.is_multiple_of(3) {
            let len = usize::try_from(self.rng.next_u32() % 160).unwrap_or(0).saturating_add(1);
            let mut bytes = vec![0u8; len];
            self.rng.fill_bytes(&mut bytes);
            return bytes;
        }
        let pick =
            usize::try_from(self.rng.next_u64().checked_rem(users.len().max(1) as u64).unwrap_or(0)).unwrap_or(0);
        let user = match users.get(pick) {
            Some(u) if roll % 3 == 1 => *u,
            _ => i64::from(self.rng.next_u32()),
        };
        self.bad_broadcast(user, height, hash, roll.is_multiple_of(2))
    }

    /// A broadcast under `user_id` for (`height`, `hash`) that its key did not sign: signed by
    /// the outsider, or a random signature (server form).
    fn bad_broadcast(&mut self, user_id: i64, chain_height: i32, chain_hash: [u8; 32], commit: bool) -> Vec<u8> {
        let mut value = [0u8; 32];
        self.rng.fill_bytes(&mut value);
        let payload = if commit { BroadcastPayload::Commit(value) } else { BroadcastPayload::Reveal(value) };
        let mut b = Broadcast { signature: [0; 64], user_id, chain_height, chain_hash, payload };
        if self.rng.next_u32().is_multiple_of(2) {
            b.signature = self.outsider.sign(&b.signing_bytes());
        } else {
            self.rng.fill_bytes(&mut b.signature);
        }
        to_server_form(&b.encode()).unwrap_or_default()
    }

    /// Junk commits and reveals for the tip's height under the ids of up to
    /// [`MEMBER_JUNK_USERS`] participants, written into sub-chain 1; their pushes to every member.
    fn member_junk(&mut self) -> Pushes {
        let tip = self.server.chain();
        let (height, hash) = (tip.height(), *tip.hash());
        let mut users: Vec<i64> = tip.participants().iter().map(|p| p.user_id).collect();
        while users.len() > MEMBER_JUNK_USERS {
            let drop = self.rng.next_u64().checked_rem(users.len() as u64).unwrap_or(0);
            users.swap_remove(usize::try_from(drop).unwrap_or(0));
        }
        let mut junk = Vec::new();
        for user in users {
            for commit in [true, false] {
                for _ in 0..HELD_BROADCASTS_PER_SENDER {
                    junk.push(self.bad_broadcast(user, height, hash, commit));
                }
            }
        }
        let update = self.server.append_broadcasts(junk);
        self.played.member_junk = self.played.member_junk.saturating_add(1);
        self.server.members().map(|m| (m, update.clone())).collect()
    }

    /// Holds `left` records back and adds false ones ([`Hostility::late_notices`]); releases the
    /// held records whose subject rejoined.
    fn notices(&mut self, pushes: Pushes, now: u64) -> Pushes {
        let rate = self.hostility.late_notices;
        let mut out = self.release_notices(now);
        if rate == 0 {
            out.extend(pushes);
            return out;
        }
        // Those told late of a departure are not told of the rejoin by its record (a lost push):
        // they learn of it from the chain only (issue 30 item 6).
        let told_late: Vec<(i64, i64)> = out
            .iter()
            .filter_map(|(to, u)| match u {
                Update::Participants { participants } => participants.iter().find(|p| p.left).map(|p| (*to, p.user_id)),
                _ => None,
            })
            .collect();
        let mut joined = None;
        for (to, update) in pushes {
            if let Update::Participants { participants } = &update {
                if participants.iter().any(|p| !p.left && told_late.contains(&(to, p.user_id))) {
                    continue;
                }
                joined = joined.or_else(|| participants.iter().find(|p| !p.left).map(|p| p.user_id));
                let left = participants.iter().find(|p| p.left && p.user_id < ATTACKERS && p.date != 0);
                if let Some(p) = left.filter(|_| self.late.len() < LATE_KEPT) {
                    let (subject, date) = (p.user_id, p.date);
                    if self.chance(rate) {
                        self.late.push_back(Late { to, update, subject, date, held_at: now });
                        continue;
                    }
                }
            }
            out.push((to, update));
        }
        if let Some(joiner) = joined {
            if self.chance(rate) {
                out.extend(self.false_notice(joiner));
            }
            if self.chance(rate) {
                self.silent_drop(joiner, now);
            }
        }
        out
    }

    /// Drops a member still in the call other than `joiner` from the media call and holds back
    /// every `left` record about it, to itself included, until it rejoins: it learns of the drop
    /// from `GROUPCALL_JOIN_MISSING`, and of the notice only after its rejoin (issue 30 item 5).
    fn silent_drop(&mut self, joiner: i64, now: u64) {
        let members: Vec<i64> = self.server.members().filter(|m| *m != joiner && *m < ATTACKERS).collect();
        let pick =
            usize::try_from(self.rng.next_u64().checked_rem(members.len().max(1) as u64).unwrap_or(0)).unwrap_or(0);
        let Some(&victim) = members.get(pick) else { return };
        let date = self.server.participation(victim).map_or(0, |p| p.date);
        for (to, update) in self.server.drop_from_media(victim) {
            if self.late.len() < LATE_KEPT {
                self.late.push_back(Late { to, update, subject: victim, date, held_at: now });
            }
        }
        self.played.silent_drops = self.played.silent_drops.saturating_add(1);
    }

    /// The held `left` records whose subject rejoined, to their recipients still in the call
    /// (those held for [`LATE_MS`] are dropped, as lost pushes).
    fn release_notices(&mut self, now: u64) -> Pushes {
        let mut out = Vec::new();
        let server = &self.server;
        let mut released = 0u64;
        self.late.retain(|late| {
            let rejoined = server.participation(late.subject).is_some_and(|p| p.date > late.date);
            if rejoined && server.members().any(|m| m == late.to) {
                out.push((late.to, late.update.clone()));
                released = released.saturating_add(1);
            }
            !rejoined && now < late.held_at.saturating_add(LATE_MS)
        });
        self.played.late_notices = self.played.late_notices.saturating_add(released);
        out
    }

    /// A false `left` record about a member still in the call other than `joiner` (its current
    /// participation, as the server would end it), pushed to every member.
    fn false_notice(&mut self, joiner: i64) -> Pushes {
        let victims: Vec<CallParticipant> = self
            .server
            .members()
            .filter(|m| *m != joiner && *m < ATTACKERS)
            .filter_map(|m| self.server.participation(m).cloned())
            .collect();
        let pick =
            usize::try_from(self.rng.next_u64().checked_rem(victims.len().max(1) as u64).unwrap_or(0)).unwrap_or(0);
        let Some(victim) = victims.get(pick) else { return Vec::new() };
        let update = Update::Participants { participants: vec![CallParticipant { left: true, ..victim.clone() }] };
        self.played.false_notices = self.played.false_notices.saturating_add(1);
        self.server.members().map(|m| (m, update.clone())).collect()
    }

    /// Replays, reorders and records pushes.
    fn relay(&mut self, pushes: Pushes) -> Pushes {
        let h = self.hostility;
        for p in &pushes {
            if self.recent.len() == REPLAYABLE {
                self.recent.pop_front();
            }
            self.recent.push_back(p.clone());
        }
        let mut out = if self.chance(h.reorder) {
            // These go out after the next request's pushes.
            std::mem::replace(&mut self.held, pushes)
        } else {
            let mut out = std::mem::take(&mut self.held);
            out.extend(pushes);
            out
        };
        if self.chance(h.replay) && !self.recent.is_empty() {
            let i =
                usize::try_from(self.rng.next_u64().checked_rem(self.recent.len() as u64).unwrap_or(0)).unwrap_or(0);
            if let Some(old) = self.recent.get(i) {
                out.push(old.clone());
            }
        }
        out
    }

    /// Rewrites a page the honest server gave.
    fn distort_page(&mut self, sub: SubChain, offset: i32, withheld: bool, update: &mut Update) {
        let Update::ChainBlocks { sub_chain, blocks, next_offset } = update else { return };
        if *sub_chain != sub {
            return;
        }
        let h = self.hostility;
        let real_height = self.server.height();
        // A forged block sitting on the real tip is served as the tip (and as the end of pages
        // that reach it).
        if sub == SubChain::Blocks && *next_offset == real_height.saturating_add(1) {
            if let Some(tip) = self.tip.clone().filter(|t| t.height == real_height.saturating_add(1)) {
                if self.chance(h.forged_tip) {
                    if offset < 0 {
                        blocks.clear();
                    }
                    blocks.push(tip.block.into());
                    *next_offset = next_offset.saturating_add(1);
                    return;
                }
            }
        }
        if offset < 0 {
            return;
        }
        if withheld {
            blocks.clear();
            let jump = i32::try_from(self.rng.next_u32() % 8).unwrap_or(0).saturating_add(1);
            *next_offset = offset.saturating_add(jump);
        } else if self.chance(h.last_only) {
            let keep = blocks.len().saturating_sub(1);
            blocks.drain(..keep);
        } else if self.chance(h.gap) && !blocks.is_empty() {
            let skip = usize::try_from(self.rng.next_u64().checked_rem(blocks.len() as u64).unwrap_or(0))
                .unwrap_or(0)
                .saturating_add(1);
            let skip = skip.min(blocks.len());
            blocks.drain(..skip);
        }
    }

    /// Forges a refused block on top of the real tip (see the module docs), pushes it to every
    /// member and serves it as the tip until the real chain moves. Nothing when the chain is
    /// empty.
    pub fn forge(&mut self) -> Pushes {
        let Some(forged) = self.make_refused_block() else { return Vec::new() };
        if self.forged.len() == FORGED_KEPT {
            self.forged.pop_front();
        }
        self.forged.push_back(forged.clone());
        self.tip = Some(forged.clone());
        let update = Update::ChainBlocks {
            sub_chain: SubChain::Blocks,
            blocks: vec![forged.block.into()],
            next_offset: forged.height.saturating_add(1),
        };
        self.server.members().map(|m| (m, update.clone())).collect()
    }

    fn make_refused_block(&mut self) -> Option<Forged> {
        let tip = self.server.chain();
        if tip.height() < 0 {
            return None;
        }
        let height = tip.height().checked_add(1)?;
        let mut state = tip.group_state().clone();
        state.participants.retain(|p| p.user_id != OUTSIDER);
        let member_key = state.participants.first().map(|p| p.public_key);
        // Half the time: the outsider signs as itself and grants itself every permission (an
        // external signer may grant at most the external permissions). Otherwise it claims to be
        // a member (the signature does not verify under that key).
        let as_member = self.rng.next_u32().is_multiple_of(2) && member_key.is_some();
        let flags = if as_member { Permissions::ADD_USERS | Permissions::REMOVE_USERS } else { Permissions::ALL };
        state.participants.push(GroupParticipant {
            user_id: OUTSIDER,
            public_key: self.outsider.public_key(),
            flags,
            version: 0,
        });
        let changes = shared_key_changes(state, &mut self.rng).ok()?;
        let signer = if as_member { member_key? } else { self.outsider.public_key() };
        let mut block = Block {
            signature: [0; 64],
            prev_block_hash: *tip.hash(),
            changes,
            height,
            state_proof: StateProof { kv_hash: *tip.kv_hash(), group_state: None, shared_key: None },
            signature_public_key: Some(signer),
        };
        block.signature = self.outsider.sign(&block.signing_bytes());
        let server = to_server_form(&block.encode()).ok()?;
        // It must be refused by the rules (else it is no attack) and readable alone.
        if tip.clone().apply(&server).is_ok() {
            return None;
        }
        let hash = *UnverifiedTip::from_server_block(&server).ok()?.hash();
        Some(Forged { height, hash, block: server })
    }
}

/// Keys no one can compute a shared secret with: the Ed25519 identity (y = 1: "Failed to compute
/// modulo inverse") and the point of order 2 (y = -1, u = 0: "Failed to compute shared secret").
/// A participant holding one makes every later key-changing block unbuildable (issue 30 item 1).
pub const UNUSABLE_KEYS: [[u8; 32]; 2] = {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut order_two = [0xff; 32];
    order_two[0] = 0xec;
    order_two[31] = 0x7f;
    [identity, order_two]
};

/// The signature that verifies for the identity key over any message: R = identity, S = 0
/// ([S]B = R + [k]A holds for A = identity whatever k).
fn identity_signature() -> [u8; 64] {
    let mut s = [0u8; 64];
    s[0] = 1;
    s
}

/// A poisoned self-add (issue 30 item 1): `user_id` joins on top of `tip` with the identity key
/// (a small-order point) as its public key, signed with the signature that verifies for it. The
/// chain rules accept it, as the reference's do; the key headers of the others are honest or,
/// with `garbage_headers`, random (the members then sit in `KEY_UNAVAILABLE`). From then on no
/// block that keeps the entry can be built. `None` if the tip's external permissions do not let
/// a joiner add itself.
pub fn poisoned_self_add(
    tip: &crate::chain::Chain,
    user_id: i64,
    garbage_headers: bool,
    rng: &mut impl rand_core::CryptoRngCore,
) -> Option<crate::wire::PlainBlock> {
    use crate::wire::Change;
    let poison = crate::crypto::PublicKey::from_bytes(UNUSABLE_KEYS[0]);
    let mut state = tip.group_state().clone();
    state.participants.retain(|p| p.user_id != user_id);
    // The stand-in's header is replaced; the stand-in itself never appears.
    let stand_in = PrivateKey::generate(rng).public_key();
    state.participants.push(GroupParticipant {
        user_id,
        public_key: stand_in,
        flags: state.external_permissions,
        version: 0,
    });
    let mut changes = shared_key_changes(state, rng).ok()?;
    for change in &mut changes {
        match change {
            Change::SetGroupState(s) => {
                for p in s.participants.iter_mut().filter(|p| p.user_id == user_id) {
                    p.public_key = poison;
                }
            }
            Change::SetSharedKey(k) if garbage_headers => {
                let headers: Vec<[u8; 32]> = (0..k.dest_user_id.len())
                    .map(|_| {
                        let mut h = [0u8; 32];
                        rng.fill_bytes(&mut h);
                        h
                    })
                    .collect();
                k.dest_header = headers.iter().map(|h| &h[..]).collect();
            }
            _ => {}
        }
    }
    let mut block = Block {
        signature: [0; 64],
        prev_block_hash: *tip.hash(),
        changes,
        height: tip.height().checked_add(1)?,
        state_proof: StateProof { kv_hash: *tip.kv_hash(), group_state: None, shared_key: None },
        signature_public_key: Some(poison),
    };
    block.signature = identity_signature();
    let plain = crate::wire::PlainBlock::new(block.encode());
    tip.clone().apply(&to_server_form(plain.as_bytes()).ok()?).ok()?;
    Some(plain)
}
