//! The simulated world: its members (sessions, incarnations, what each was told) and their
//! actions (start, join, leave, remove, re-key, permissions, packets, messages, crashes, going
//! offline), and what the members read from their sessions.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::api::{Request, RequestId, Response, SubChain, Update};
use crate::call::Call;
use crate::error::ErrorKind;
use crate::frame::{AudioLevel, Codec};
use crate::server::hostile::{HostileServer, Hostility, OUTSIDER};
use crate::server::Server;
use crate::session::{Session, SessionConfig, SessionEvent, SessionState};
use crate::wire::{Block, Permissions};

use super::{Failure, Faults, Report, ServerSetup, SimConfig, MAX_BROADCAST_POLLS_PER_SECOND, MAX_REQUESTS_PER_SECOND};

pub(super) struct Member {
    pub(super) user_id: i64,
    pub(super) session: Option<Session>,
    /// Bumped at each crash: messages for an older incarnation are lost.
    pub(super) generation: u64,
    pub(super) offline_until: u64,
    /// Heights whose block this incarnation applied (at most once each).
    pub(super) applied: HashSet<i32>,
    /// The height of the block that removed this incarnation, once it did.
    pub(super) removed_at: Option<i32>,
    /// Which session object this is (bumped whenever a new `Session` is made).
    pub(super) incarnation: u64,
    /// Times of this member's requests in the last second.
    pub(super) recent_requests: VecDeque<u64>,
    /// Times of this member's broadcast polls (sub-chain 1) in the last second.
    pub(super) recent_broadcast_polls: VecDeque<u64>,
    /// Requests of this incarnation sent and not answered: id → (sent at, silenced at, method).
    pub(super) outstanding: BTreeMap<RequestId, (u64, Option<u64>, &'static str)>,
    /// Flood waits this incarnation was told of: method → end (ms).
    pub(super) flood_until: HashMap<&'static str, u64>,
    /// Since when this member's session has been `Left` (continuously).
    pub(super) left_since: Option<u64>,
    /// Since when this member's call has blacked out H.264 (continuously).
    pub(super) blackout_since: Option<u64>,
    /// When this incarnation last sent `getGroupParticipants`.
    pub(super) last_lookup: Option<u64>,
}

pub(super) const TRANSCRIPT: usize = 40;

/// Every third member behaves as the official apps do about H.264 blackouts (never avoids or
/// ends one: [`SessionConfig::end_video_blackouts`] off); the others end them.
pub(super) fn member_config(i: usize) -> SessionConfig {
    SessionConfig { end_video_blackouts: i % 3 != 2, ..SessionConfig::default() }
}

/// An H.264 access unit as encoders emit it (4-byte start codes: SPS, PPS, an IDR slice), with
/// `payload` after the slice header; no start code can appear in it (bytes 0 and 1 are mapped).
pub(super) fn h264_frame(payload: &[u8]) -> Vec<u8> {
    let mut f =
        vec![0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0x88, 0x84];
    f.extend(payload.iter().map(|b| b | 2));
    f
}

/// Whether a session is in the call or on its way in or out (the application leaves it alone).
pub(super) fn busy(state: SessionState) -> bool {
    matches!(state, SessionState::Joined | SessionState::Joining | SessionState::Resyncing | SessionState::Leaving)
}

/// Outsider calls kept to try on members' packets.
pub(super) const OUTSIDERS: usize = 8;

pub(super) struct World {
    pub(super) rng: ChaCha20Rng,
    pub(super) faults: Faults,
    pub(super) setup: ServerSetup,
    pub(super) now: u64,
    pub(super) server: HostileServer,
    /// The honest chain's block hashes, by height (the ground truth).
    pub(super) honest: Vec<[u8; 32]>,
    /// Hashes of the refused blocks the hostile server forged.
    pub(super) forged: HashSet<[u8; 32]>,
    /// The outsider's view of each forged block: the key it would read with.
    pub(super) outsiders: VecDeque<Call>,
    /// Chain participants (user, key) not in the media call, since when.
    pub(super) absent_since: HashMap<(i64, [u8; 32]), u64>,
    /// Since when a poisoned entry (a key no one can use, issue 30 item 1) has been in the chain
    /// while some caught-up member could remove it (continuously), by user.
    pub(super) poisoned_since: HashMap<i64, u64>,
    /// Joiners' attacks already counted.
    pub(super) attacks_seen: usize,
    /// Since when some caught-up member told that the user left has been able to remove it
    /// (continuously), by user.
    pub(super) remover_since: HashMap<i64, u64>,
    /// Members (index, incarnation) pushed that a user left the media call, by user.
    pub(super) told_left: HashMap<i64, HashSet<(usize, u64)>>,
    pub(super) incarnations: u64,
    pub(super) members: Vec<Member>,
    pub(super) network: BTreeMap<(u64, u64), Message>,
    pub(super) sequence: u64,
    pub(super) report: Report,
    pub(super) transcript: VecDeque<String>,
    pub(super) step: u64,
    pub(super) seed: u64,
    /// Whether the run's network and server let a round complete promptly (see
    /// `World::check_round`): decided once from the configuration.
    pub(super) prompt_rounds: bool,
    /// The server's tip height and since when every participant of it has been a caught-up
    /// member (continuously).
    pub(super) round_since: Option<(i32, u64)>,
    /// Messages sent, by (sender, random_id).
    pub(super) messages: HashMap<(i64, i64), Sent>,
    /// The participation (its date) that added each chain entry (user, key), from the joins the
    /// server accepted (entries of the current chain only).
    pub(super) entry_dates: HashMap<(i64, [u8; 32]), i32>,
    /// What each member (index, incarnation) was told of a user's participations (records pushed
    /// or answered to it), by user.
    pub(super) told: HashMap<(usize, u64, i64), Told>,
    /// Removals the application chose (index, incarnation, target): not prunes.
    pub(super) chosen_removals: HashSet<(usize, u64, i64)>,
    /// Each member's `Session::poll_timeout`, once read since its session was last touched
    /// ([`World::touch`]): the clock asks for every member's at every event.
    pub(super) timers: Vec<Option<Option<u64>>>,
}

/// What a member was told of one user's participations, by date.
#[derive(Default)]
pub(super) struct Told {
    /// Dates of the participations it was told ended (`left` records), with the user's keys in
    /// the member's chain each time it was told (none: no entry).
    pub(super) left: BTreeMap<i32, std::collections::BTreeSet<Option<[u8; 32]>>>,
    /// Dates of the participations it was told of as going on, and when it was first told.
    pub(super) joined: BTreeMap<i32, u64>,
}

/// Whether a run lets every round complete promptly once everyone is caught up: no push lost,
/// no request failed, no partition, crash or flood wait (pushes may be delayed and reordered),
/// and no hostility but junk in sub-chain 1 ([`Hostility::junk_pages`],
/// [`Hostility::member_junk`]), which must not hold a round up.
pub(super) fn prompt_rounds(config: &SimConfig) -> bool {
    let (f, h) = (config.faults, config.server.hostility);
    f.drop_push == 0
        && f.fail_request == 0
        && f.partition == 0
        && f.crash == 0
        && config.server.behaviour.flood_per_mille == 0
        && h == Hostility { junk_pages: h.junk_pages, member_junk: h.member_junk, ..Hostility::none() }
}

/// A message sent, and who got it.
pub(super) struct Sent {
    pub(super) json: String,
    pub(super) at: u64,
    pub(super) expected: HashSet<i64>,
    pub(super) received: HashSet<i64>,
}

/// How long a message may take on a reliable network before its absence is a failure.
pub(super) const MESSAGE_DEADLINE_MS: u64 = 2_000;

impl World {
    pub(super) fn new(config: &SimConfig) -> World {
        let members = (1..=config.members)
            .map(|i| Member {
                user_id: i as i64,
                session: None,
                generation: 0,
                offline_until: 0,
                applied: HashSet::new(),
                removed_at: None,
                incarnation: 0,
                recent_requests: VecDeque::new(),
                recent_broadcast_polls: VecDeque::new(),
                outstanding: BTreeMap::new(),
                flood_until: HashMap::new(),
                left_since: None,
                blackout_since: None,
                last_lookup: None,
            })
            .collect();
        let server = Server::with_behaviour(config.server.behaviour, config.seed);
        World {
            rng: ChaCha20Rng::seed_from_u64(config.seed),
            faults: config.faults,
            setup: config.server,
            now: 0,
            server: HostileServer::new(server, config.server.hostility, config.seed),
            honest: Vec::new(),
            forged: HashSet::new(),
            outsiders: VecDeque::new(),
            absent_since: HashMap::new(),
            poisoned_since: HashMap::new(),
            attacks_seen: 0,
            remover_since: HashMap::new(),
            told_left: HashMap::new(),
            incarnations: 0,
            members,
            network: BTreeMap::new(),
            sequence: 0,
            report: Report::default(),
            transcript: VecDeque::new(),
            step: 0,
            seed: config.seed,
            prompt_rounds: prompt_rounds(config),
            round_since: None,
            messages: HashMap::new(),
            entry_dates: HashMap::new(),
            told: HashMap::new(),
            chosen_removals: HashSet::new(),
            timers: vec![None; config.members],
        }
    }

    /// Forgets member `i`'s timer: its session was (or may have been) called.
    pub(super) fn touch(&mut self, i: usize) {
        self.timers[i] = None;
    }

    /// Member `i`'s session's next timer (read again only after [`World::touch`]).
    pub(super) fn timer(&mut self, i: usize) -> Option<u64> {
        if let Some(t) = self.timers[i] {
            return t;
        }
        let t = self.members[i].session.as_ref().and_then(Session::poll_timeout);
        self.timers[i] = Some(t);
        t
    }

    pub(super) fn note(&mut self, line: String) {
        if self.transcript.len() == TRANSCRIPT {
            self.transcript.pop_front();
        }
        self.transcript.push_back(format!("[{:>4} t={:>7}] {line}", self.step, self.now));
    }

    pub(super) fn server(&self) -> &Server {
        self.server.server()
    }

    pub(super) fn fail(&self, invariant: String) -> Failure {
        Failure { seed: self.seed, step: self.step, invariant, transcript: self.transcript.iter().cloned().collect() }
    }

    pub(super) fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.rng.next_u32() % 1000 < per_mille
    }

    pub(super) fn pick(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.rng.next_u64() % n as u64) as usize
    }

    pub(super) fn act(&mut self) -> Result<(), Failure> {
        let i = self.pick(self.members.len());
        self.touch(i);
        let now = self.now;
        if self.members[i].offline_until > now {
            return Ok(());
        }
        if self.chance(self.faults.crash) && self.members[i].session.is_some() {
            let m = &mut self.members[i];
            m.session = None;
            m.generation += 1;
            m.applied.clear();
            m.removed_at = None;
            m.outstanding.clear();
            self.report.crashes += 1;
            let u = self.members[i].user_id;
            self.note(format!("user {u} crashes (all state lost)"));
            if self.setup.is_real() {
                // The server notices the lost connection and drops it from the media call.
                let pushes = self.server.drop_from_media(u, now);
                self.push_all(pushes);
            }
            return Ok(());
        }
        if self.setup.is_real() && self.chance(self.faults.partition) {
            // The media stack lost the call (network loss): the server drops the member from the
            // media call while its session still believes it is in (GROUPCALL_JOIN_MISSING).
            let u = self.members[i].user_id;
            let pushes = self.server.drop_from_media(u, now);
            if !pushes.is_empty() || self.server().members().all(|m| m != u) {
                self.report.media_drops += 1;
                self.note(format!("the server drops user {u} from the media call"));
            }
            self.push_all(pushes);
            return Ok(());
        }
        if self.chance(self.faults.partition) {
            let until = now + 2_000 + self.rng.next_u64() % 20_000;
            self.members[i].offline_until = until;
            let u = self.members[i].user_id;
            self.note(format!("user {u} offline until {until}"));
            return Ok(());
        }
        let user = self.members[i].user_id;
        let state = self.members[i].session.as_ref().map(Session::state);
        let roll = self.rng.next_u32() % 100;
        match state {
            // Out of the call (new, failed, left, removed, or any state the session adds, such as
            // failing closed or the call's end): the application joins again.
            s if roll < 30 && !s.is_some_and(busy) => {
                self.start(i)?;
            }
            // With the real server: the application leaves while its join is in flight (the
            // join's response may come after; the server must not keep a ghost member).
            Some(SessionState::Joining) if self.setup.is_real() && roll < 5 => {
                if let Some(s) = self.members[i].session.as_mut() {
                    s.leave(now);
                }
                self.note(format!("user {user} leaves while joining"));
            }
            Some(SessionState::Joined) => {
                let joined: Vec<i64> = self.joined_members().into_iter().filter(|u| *u != user).collect();
                match roll {
                    0..=39 => self.send_packet(i)?,
                    40..=54 => self.send_message(i)?,
                    55..=59 if !joined.is_empty() => {
                        let target = joined[self.pick(joined.len())];
                        let kick = self.rng.next_u32().is_multiple_of(2);
                        self.chosen_removals.insert((i, self.members[i].incarnation, target));
                        self.with_session(i, |s, now, rng| s.remove(&[target], kick, now, rng));
                        self.note(format!("user {user} removes {target} (kick {kick})"));
                    }
                    60..=66 => {
                        self.with_session(i, |s, _, rng| s.rekey(None, rng));
                        self.note(format!("user {user} re-keys"));
                    }
                    67..=69 if !joined.is_empty() => {
                        let target = joined[self.pick(joined.len())];
                        // Remove permission is kept (2 or 3), so that someone can always prune
                        // members who are gone and verification can complete.
                        let p = Permissions::from_bits_retain(2 + (self.rng.next_u32() % 2) as i32);
                        self.with_session(i, |s, _, rng| s.rekey(Some((target, p)), rng));
                        self.note(format!("user {user} sets the permissions of {target} to {p:?}"));
                    }
                    70..=71 => {
                        if let Some(s) = self.members[i].session.as_mut() {
                            s.leave(now);
                        }
                        self.note(format!("user {user} leaves"));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        self.flush(i)
    }

    pub(super) fn with_session(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Session, u64, &mut ChaCha20Rng) -> crate::Result<()>,
    ) {
        let now = self.now;
        if let Some(s) = self.members[i].session.as_mut() {
            // Refusals (not in the call, no permission) are part of the game.
            let _ = f(s, now, &mut self.rng);
        }
    }

    /// Creates the call (first action) or joins it, with a new session if needed.
    pub(super) fn start(&mut self, i: usize) -> Result<(), Failure> {
        let now = self.now;
        let user = self.members[i].user_id;
        let m = &mut self.members[i];
        if m.session.as_ref().is_none_or(|s| s.state() == SessionState::Left) {
            m.session = Session::new(user, member_config(i)).ok();
            m.applied.clear();
            // Responses and pushes meant for the session replaced are not for this one.
            m.generation += 1;
            self.incarnations += 1;
            m.incarnation = self.incarnations;
            m.outstanding.clear();
            m.flood_until.clear();
            m.last_lookup = None;
        }
        m.removed_at = None;
        let create = !self.server.server().is_created();
        let Some(s) = m.session.as_mut() else { return Ok(()) };
        let r = if create { s.create(true, now, &mut self.rng) } else { s.join(now, &mut self.rng) };
        if r.is_ok() {
            self.members[i].applied.clear();
            self.note(format!("user {user} {}", if create { "creates the call" } else { "joins" }));
        }
        self.flush(i)
    }

    pub(super) fn joined_members(&self) -> Vec<i64> {
        self.members
            .iter()
            .filter(|m| m.session.as_ref().is_some_and(|s| s.state() == SessionState::Joined))
            .map(|m| m.user_id)
            .collect()
    }

    /// Live, caught-up members: joined, online, at the server's tip.
    pub(super) fn caught_up(&self) -> Vec<usize> {
        let tip = self.server().height();
        (0..self.members.len())
            .filter(|&i| {
                let m = &self.members[i];
                m.offline_until <= self.now
                    && m.session.as_ref().is_some_and(|s| {
                        s.state() == SessionState::Joined
                            && s.call().is_some_and(|c| c.height() == tip && c.has_current_key())
                    })
            })
            .collect()
    }

    pub(super) fn send_packet(&mut self, i: usize) -> Result<(), Failure> {
        let now = self.now;
        let sender = self.members[i].user_id;
        let mut payload = [0u8; 48];
        self.rng.fill_bytes(&mut payload);
        // A frame of each codec in turn, through the frame layer as the official apps lay it out.
        let codec = [Codec::Opus, Codec::Vp8, Codec::H264][(payload[0] % 3) as usize];
        let frame = if codec == Codec::H264 { h264_frame(&payload) } else { payload.to_vec() };
        let level = AudioLevel::from_byte(payload[1]);
        let Some(call) = self.members[i].session.as_mut().and_then(Session::call_mut) else { return Ok(()) };
        let epochs = call.active_epochs();
        let sender_height = call.height();
        let packet = match call.encrypt_frame(0, codec, &frame, level, now, &mut self.rng) {
            Ok(packet) => packet,
            Err(e) if e.kind() == ErrorKind::FrameStartCode => {
                // Only a blackout drops a frame: a start code by chance in 4 ciphertexts of this
                // size is a 1-in-2^90 event.
                if !call.video_blackout() {
                    return Err(self
                        .fail(format!("user {sender}'s H.264 frame dropped outside a blackout (epochs {epochs:?})")));
                }
                self.report.h264_blackout_drops += 1;
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        self.report.packets += 1;
        self.outsider_tries(sender, &packet, "packet")?;
        // Media goes through the SFU: every member gets it now. Caught-up members at the sender's
        // height must read it; removed members must not, once the packet lists no epoch of theirs.
        let caught = self.caught_up();
        // The SSRC it goes out on: the participation's audio SSRC, its camera's for video.
        let ssrc = self.server().participation(sender).map(|p| p.source() + u32::from(codec != Codec::Opus));
        for j in 0..self.members.len() {
            if j == i || self.members[j].offline_until > now {
                continue;
            }
            let removed_at = self.members[j].removed_at;
            self.touch(j);
            let Some(session) = self.members[j].session.as_mut() else { continue };
            let map = session.source_map();
            let Some(call) = session.call_mut() else { continue };
            let same_height = call.height() == sender_height;
            // As a media stack does: by the SSRC, through the session's map. An SSRC the map does
            // not know yet is reported for a lookup (the frame is read by user id meanwhile, so
            // the other invariants still see it); one it gives to someone else is stale.
            let mut out = Vec::new();
            let by_source = ssrc.map(|ssrc| {
                call.media_decryptor().decrypt_frame_from_source_into(&map, ssrc, codec, &packet, now, &mut out)
            });
            let result = match by_source {
                Some(Ok((source, received))) if source.user_id == sender => {
                    self.report.frames_by_source += 1;
                    Ok((out, received))
                }
                other => {
                    match other {
                        Some(Err(e)) if e.kind() == ErrorKind::FrameUnknownSource => {
                            self.report.unknown_source_frames += 1
                        }
                        Some(Ok((source, _))) if source.user_id != sender => self.report.stale_source_frames += 1,
                        Some(Err(_)) if map.get(ssrc.unwrap_or(0)).is_some_and(|s| s.user_id != sender) => {
                            self.report.stale_source_frames += 1
                        }
                        _ => {}
                    }
                    call.decrypt_frame(sender, codec, &packet, now)
                }
            };
            self.report.decryptions += 1;
            let receiver = self.members[j].user_id;
            let must_read = caught.contains(&j) && caught.contains(&i) && same_height;
            let expected_level = (codec == Codec::Opus).then_some(level);
            let read = matches!(&result, Ok((f, r)) if *f == frame && r.level == expected_level);
            if must_read && !read {
                return Err(self.fail(format!(
                    "{codec:?} frame from {sender} (epochs {epochs:?}) not readable by caught-up member {receiver}: {result:?}"
                )));
            }
            if let Some(hr) = removed_at {
                if epochs.iter().all(|e| *e >= hr) && result.is_ok() {
                    return Err(self.fail(format!(
                        "member {receiver}, removed at height {hr}, read a packet of epochs {epochs:?} from {sender}"
                    )));
                }
            }
        }
        Ok(())
    }

    pub(super) fn send_message(&mut self, i: usize) -> Result<(), Failure> {
        let id = self.rng.next_u64() as i64;
        let json = format!(
            r#"{{"_":"groupCallMessage","random_id":"{id}","message":{{"_":"textWithEntities","text":"hi","entities":[]}}}}"#
        );
        let now = self.now;
        let sender = self.members[i].user_id;
        let Some(s) = self.members[i].session.as_mut() else { return Ok(()) };
        if s.send_message(&json, now, &mut self.rng).is_err() {
            return Ok(());
        }
        self.report.messages += 1;
        // Who must receive it: on a reliable network, every other caught-up member at the
        // sender's height (the API has no way to recover a lost message push, so with faults only
        // integrity and deduplication are checked).
        let sender_height = s.call().map(crate::Call::height);
        let reliable = self.faults.drop_push == 0
            && self.faults.fail_request == 0
            && self.faults.partition == 0
            && self.server().behaviour().flood_per_mille == 0
            && self.server.hostility() == Hostility::none();
        let caught = self.caught_up();
        let expected: HashSet<i64> = if reliable && caught.contains(&i) {
            caught
                .iter()
                .filter(|&&j| j != i)
                .filter(|&&j| {
                    self.members[j].session.as_ref().and_then(Session::call).map(crate::Call::height) == sender_height
                })
                .map(|&j| self.members[j].user_id)
                .collect()
        } else {
            HashSet::new()
        };
        self.messages.insert((sender, id), Sent { json, at: now, expected, received: HashSet::new() });
        Ok(())
    }

    /// Sends a member's queued requests into the network.
    /// Sends a member's queued requests into the network, checking the request rate, the flood
    /// waits it was told of, and that the outsider cannot read its encrypted messages.
    pub(super) fn flush(&mut self, i: usize) -> Result<(), Failure> {
        self.touch(i);
        let generation = self.members[i].generation;
        let from = self.members[i].user_id;
        let now = self.now;
        let mut out = Vec::new();
        if let Some(s) = self.members[i].session.as_mut() {
            while let Some((id, request)) = s.poll_request() {
                out.push((id, request));
            }
        }
        for (id, request) in out {
            let method = request.kind().method();
            if matches!(request, Request::GetChainBlocks { .. }) {
                self.report.polls += 1;
            }
            if matches!(request, Request::GetGroupParticipants { .. }) {
                self.report.lookups += 1;
                let last = self.members[i].last_lookup.replace(now);
                if let Some(last) = last.filter(|t| now < t + crate::limits::LOOKUP_INTERVAL_MS) {
                    return Err(self.fail(format!(
                        "lookup rate (issue 34): user {from} sent getGroupParticipants at {now}, \
                         within a second of the one at {last}"
                    )));
                }
            }
            let m = &mut self.members[i];
            if matches!(request, Request::GetChainBlocks { sub_chain: SubChain::Broadcasts, .. }) {
                while m.recent_broadcast_polls.front().is_some_and(|t| *t + 1_000 <= now) {
                    m.recent_broadcast_polls.pop_front();
                }
                m.recent_broadcast_polls.push_back(now);
                if m.recent_broadcast_polls.len() > MAX_BROADCAST_POLLS_PER_SECOND {
                    return Err(self.fail(format!(
                        "broadcast poll rate (issue 30 item 8): user {from} polled sub-chain 1 more than \
                         {MAX_BROADCAST_POLLS_PER_SECOND} times within one second (the last: {request:?}){}",
                        self.junk_note()
                    )));
                }
            }
            let m = &mut self.members[i];
            while m.recent_requests.front().is_some_and(|t| *t + 1_000 <= now) {
                m.recent_requests.pop_front();
            }
            m.recent_requests.push_back(now);
            if m.recent_requests.len() > MAX_REQUESTS_PER_SECOND {
                return Err(self.fail(format!(
                    "request rate (issue 23 item 6, issue 24 item 6): user {from} sent more than {MAX_REQUESTS_PER_SECOND} requests \
                     within one second (the last: {request:?}){}",
                    self.junk_note()
                )));
            }
            if let Some(until) = m.flood_until.get(method).copied().filter(|u| now < *u) {
                return Err(self.fail(format!(
                    "flood wait (issue 24 item 1): user {from} sent {method} at {now} during its flood wait, \
                     which ends at {until}"
                )));
            }
            m.outstanding.insert(id, (now, None, method));
            if let Request::SendEncryptedMessage { encrypted_message } = &request {
                self.outsider_tries(from, encrypted_message, "message")?;
            }
            self.send(Message::ToServer { from, id, request, generation });
        }
        Ok(())
    }

    /// Pushes from the server (outside a request) into the network.
    pub(super) fn push_all(&mut self, pushes: Vec<(i64, Update)>) {
        for (to, update) in pushes {
            let Some(j) = self.index(to) else { continue };
            let generation = self.members[j].generation;
            self.send(Message::Push { to, update, generation });
        }
    }

    /// The outsider tries every forged block's key on a member's packet or message: a member
    /// that encrypts under a key the outsider holds has adopted a block the rules refuse.
    pub(super) fn outsider_tries(&mut self, sender: i64, bytes: &[u8], what: &str) -> Result<(), Failure> {
        let now = self.now;
        for o in self.outsiders.iter_mut() {
            self.report.outsider_attempts += 1;
            if o.decrypt(sender, bytes, now).is_ok() {
                let height = o.height();
                return Err(self.fail(format!(
                    "outsider key (issue 23 item 1): the outsider read a {what} of member {sender} with the key of \
                     the refused block it forged at height {height}"
                )));
            }
        }
        Ok(())
    }

    /// Records what the server did: the honest chain's new block, the hostile server's new forgeries.
    pub(super) fn record_server(&mut self) {
        // Every block committed since (a request may commit two: a member's and, on the
        // hostile server, a joiner's attack right after it).
        let blocks = self.server().blocks();
        let new: Vec<[u8; 32]> = blocks
            .iter()
            .skip(self.honest.len())
            .map(|b| Block::decode_server(b).map(|b| b.hash()).unwrap_or_default())
            .collect();
        self.honest.extend(new);
        let new: Vec<_> = self.server.forged().filter(|f| !self.forged.contains(&f.hash)).cloned().collect();
        for f in new {
            self.forged.insert(f.hash);
            self.report.forged_blocks += 1;
            self.note(format!("the server forges a refused block at height {} and pushes it", f.height));
            let key = self.server.outsider_key().clone();
            if let Ok(call) = Call::new(OUTSIDER, key, &f.block, &mut self.rng) {
                if self.outsiders.len() == OUTSIDERS {
                    self.outsiders.pop_front();
                }
                self.outsiders.push_back(call);
            }
        }
    }

    /// Reads a member's events (checking at-most-once application) and sends its requests.
    pub(super) fn after_session(&mut self, i: usize) -> Result<(), Failure> {
        let mut events = Vec::new();
        if let Some(s) = self.members[i].session.as_mut() {
            while let Some(e) = s.poll_event() {
                events.push(e);
            }
        }
        let user = self.members[i].user_id;
        for e in events {
            match e {
                SessionEvent::KeyChanged { height, .. } if !self.members[i].applied.insert(height) => {
                    return Err(self.fail(format!("user {user} applied the block at height {height} twice")));
                }
                SessionEvent::Joined { height } => {
                    self.report.joins += 1;
                    // A (re)join starts a new call: its blocks start after the join block.
                    self.members[i].applied.clear();
                    self.members[i].applied.insert(height);
                    self.members[i].removed_at = None;
                    self.note(format!("user {user} joined at height {height}"));
                }
                SessionEvent::Removed { height } => {
                    let h = height.unwrap_or_else(|| self.server().height());
                    self.members[i].removed_at = Some(h);
                    self.note(format!("user {user} removed (height {height:?})"));
                }
                SessionEvent::VerificationDone { .. } => self.report.verifications += 1,
                SessionEvent::VideoBlackout { height, now } => {
                    self.report.video_blackouts += 1;
                    self.note(format!("user {user}: the block at height {height} blacks out H.264 (now: {now})"));
                }
                SessionEvent::MessageReceived { from, json } => {
                    let id = json
                        .split("\"random_id\":\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .and_then(|r| r.parse().ok());
                    let Some(sent) = id.and_then(|id| self.messages.get_mut(&(from, id))) else {
                        return Err(self.fail(format!("user {user} received a message {from} never sent: {json}")));
                    };
                    if sent.json != json {
                        return Err(self.fail(format!("user {user} received an altered message from {from}")));
                    }
                    if !sent.received.insert(user) {
                        return Err(self.fail(format!("user {user} received a message from {from} twice")));
                    }
                }
                SessionEvent::JoinFailed { reason } => self.note(format!("user {user} join failed: {reason:?}")),
                _ => {}
            }
        }
        self.flush(i)
    }
}

/// A message in flight.
#[derive(Clone, Debug)]
pub(super) enum Message {
    /// A request on its way to the server.
    ToServer { from: i64, id: RequestId, request: Request, generation: u64 },
    /// A response on its way back (`at`: when the server answered; `method`: what it answers).
    Response { to: i64, id: RequestId, response: Response, generation: u64, at: u64, method: &'static str },
    /// A pushed update.
    Push { to: i64, update: Update, generation: u64 },
}
