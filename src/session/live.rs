//! The `Live` state and its handlers: both sub-chains through [`SubSync`] and the chain rules,
//! polls with gap backoff, recovery from a refused push (refetch from our own next height),
//! messages, who left the media call, and the call's events turned into session events after
//! each batch (a block that removed us leaves the call). Each handler changes only the live call's
//! data and what it reaches through [`Ctx`]; a way out of the call is returned as an [`Exit`].
//! The blocks we make ourselves (removals, prunes, re-keys) are in `changes.rs`.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::CryptoRngCore;

use super::sync::{Receive, SubSync, MIN_GAP_POLL_SPACING_MS};
use super::{
    policy, random_id, Action, ApiError, CallParticipant, Ctx, EndReason, Exit, Flow, Purpose, Request, ServerBlock,
    SessionConfig, SessionEvent, Source, SubChain, Update,
};
use crate::call::{Call, CallEvent};
use crate::crypto::PublicKey;
use crate::error::{Error, ErrorKind};
use crate::wire::{Block, Broadcast, Permissions};

/// In the call.
pub(super) struct Live {
    pub(super) call: Call,
    pub(super) blocks: SubSync,
    pub(super) broadcasts: SubSync,
    /// Recovering from a refused push (state `Resyncing`).
    pub(super) resyncing: bool,
    /// Consecutive poll answers of sub-chain 0 that left a gap.
    gap_answers: u32,
    /// The height whose verification words were last announced.
    announced_height: Option<i32>,
    verified_height: Option<i32>,
    /// Users that left the media call, to prune (bounded, deduplicated).
    pub(super) prune: BTreeSet<i64>,
    /// The chain key of each user whose departure we saw (bounded like `prune`): a prune removes
    /// that entry only, never a newer one of the same user (a rejoin; issue 30 item 6).
    pub(super) left_keys: BTreeMap<i64, PublicKey>,
    pub(super) prune_scheduled: bool,
    /// Participants' keys found usable (rebuilt per height from the participants: bounded).
    usable_keys: BTreeSet<PublicKey>,
    /// Entries whose keys no one can use, already told (issue 30 item 1).
    unusable: BTreeSet<(i64, PublicKey)>,
    pub(super) unusable_scheduled: bool,
    /// The sub-chain 1 offset we stopped at for a broadcast too far ahead, and our height then
    /// (issue 30 item 3).
    ahead_stop: Option<(i32, i32)>,
    /// Our broadcasts of the round at this height (at most a commit and a reveal), sent again
    /// until the round completes, and the delay before the next time.
    own_round: Option<OwnRound>,
}

/// Our broadcasts of one round, sent again until it completes (issue 30 item 4).
struct OwnRound {
    height: i32,
    sent: Vec<Vec<u8>>,
    delay: u64,
}

/// Our broadcasts of a round kept for sending again: a commit and a reveal.
const MAX_OWN_BROADCASTS: usize = 2;

/// The longest delay between two sendings again of our broadcasts of a round (unless the poll
/// interval is longer): a member that never reveals stalls a round for as long as the height
/// stays, and costs each member its commit and reveal once per this delay.
const MAX_REBROADCAST_DELAY_MS: u64 = 600_000;

/// What a poll's answer is measured against: the sub-chain's next offset before it, and what
/// its last block says of us when it lies beyond a gap (sub-chain 0 only).
pub(super) struct PollStart {
    before: Option<i32>,
    gap_tip: Option<bool>,
}

impl Live {
    /// A live call just joined, its sub-chains not synced yet.
    pub(super) fn new(call: Call, config: &SessionConfig) -> Self {
        let (max_blocks, max_bytes) = (config.max_buffered_updates, config.max_buffered_bytes);
        Live {
            call,
            blocks: SubSync::new(max_blocks, max_bytes),
            broadcasts: SubSync::expiring(max_blocks, max_bytes, config.max_held_broadcasts()),
            resyncing: false,
            gap_answers: 0,
            announced_height: None,
            verified_height: None,
            prune: BTreeSet::new(),
            left_keys: BTreeMap::new(),
            prune_scheduled: false,
            usable_keys: BTreeSet::new(),
            unusable: BTreeSet::new(),
            unusable_scheduled: false,
            ahead_stop: None,
            own_round: None,
        }
    }

    pub(super) fn sync(&mut self, sub: SubChain) -> &mut SubSync {
        match sub {
            SubChain::Blocks => &mut self.blocks,
            SubChain::Broadcasts => &mut self.broadcasts,
        }
    }

    pub(super) fn sync_ref(&self, sub: SubChain) -> &SubSync {
        match sub {
            SubChain::Blocks => &self.blocks,
            SubChain::Broadcasts => &self.broadcasts,
        }
    }

    // ---- updates ----

    /// One update (pushed, or from an answer of the server's: `source`); `updateGroupCall` is the
    /// session's.
    pub(super) fn on_update(
        &mut self,
        ctx: &mut Ctx<'_>,
        update: Update,
        source: Source,
        rng: &mut impl CryptoRngCore,
    ) -> Flow {
        match update {
            Update::ChainBlocks { sub_chain, blocks, next_offset } => {
                self.chain_blocks(ctx, sub_chain, blocks, next_offset, source, rng)
            }
            Update::EncryptedMessage { from, encrypted_message } => {
                self.message(ctx, from, &encrypted_message);
                Ok(())
            }
            Update::Participants { participants } => self.note_participants(ctx, &participants, rng),
            Update::GroupCall { .. } => Ok(()),
        }
    }

    /// One `updateGroupCallChainBlocks`: applies what extends our chain, holds what lies beyond a
    /// gap, and schedules the poll that fills a gap (with a growing delay).
    fn chain_blocks(
        &mut self,
        ctx: &mut Ctx<'_>,
        sub: SubChain,
        blocks: Vec<ServerBlock>,
        next_offset: i32,
        source: Source,
        rng: &mut impl CryptoRngCore,
    ) -> Flow {
        if sub == SubChain::Broadcasts && source == Source::Server && blocks.is_empty() {
            // Nothing where we asked, and the server's newest entry below it: its offset is ours.
            self.broadcasts.rewind(next_offset);
        }
        let run = match self.sync(sub).receive(blocks.into_iter().map(ServerBlock::into_bytes).collect(), next_offset) {
            Receive::Old => return Ok(()),
            Receive::Gap => {
                self.gap_poll(ctx, sub);
                return Ok(());
            }
            Receive::Apply(run) => run,
        };
        if !self.apply_run(ctx, sub, run, source, rng)? {
            return Ok(());
        }
        // Held runs that now connect (they arrived as pushes).
        while let Some(run) = self.sync(sub).take_connected() {
            if !self.apply_run(ctx, sub, run, Source::Push, rng)? {
                return Ok(());
            }
        }
        if self.sync_ref(sub).held().0 > 0 {
            self.gap_poll(ctx, sub);
        }
        Ok(())
    }

    /// Applies blocks at the next offset, one by one through the chain rules. Whether all were.
    fn apply_run(
        &mut self,
        ctx: &mut Ctx<'_>,
        sub: SubChain,
        run: Vec<Vec<u8>>,
        source: Source,
        rng: &mut impl CryptoRngCore,
    ) -> Flow<bool> {
        let now = ctx.now;
        for bytes in run {
            if sub == SubChain::Broadcasts {
                // A broadcast too far ahead of our height for the call to hold (or beyond its
                // bound on held broadcasts) is about blocks we have not fetched yet: stop at it,
                // catch up on blocks and fetch it again (issue 30 item 3), once per offset and
                // height of ours (a junk height never stalls the sub-chain for long).
                let (offset, height) = (self.broadcasts.next(), self.call.height());
                let ahead = Broadcast::decode_server(&bytes).is_ok_and(|b| {
                    i64::from(b.chain_height)
                        > i64::from(height).saturating_add(i64::from(crate::limits::HELD_BROADCAST_HEIGHTS))
                });
                let stopped_here = offset.is_some() && self.ahead_stop == offset.map(|o| (o, height));
                let result = if ahead { Ok(()) } else { self.call.receive_broadcast(&bytes) };
                let full = result.is_err_and(|e| e.kind() == ErrorKind::LimitExceeded);
                if (ahead || full) && !stopped_here {
                    self.ahead_stop = offset.map(|o| (o, height));
                    ctx.outbox.poll_by(SubChain::Blocks, now);
                    self.gap_poll(ctx, SubChain::Broadcasts);
                    return Ok(false);
                }
                // Broadcasts that do not apply (older rounds, duplicates) are routine.
                self.broadcasts.advance();
                self.broadcasts.gap_delay = 0;
                continue;
            }
            match self.call.apply_block(&bytes, now, rng) {
                Ok(()) => {
                    self.blocks.advance();
                    self.blocks.gap_delay = 0;
                    self.resyncing = false;
                }
                Err(error) => {
                    let height = self.call.height().saturating_add(1);
                    if source == Source::Server {
                        return Err(Exit::ChainRejected { height, error });
                    }
                    // A refused push: never adopted; refetch from our own next height.
                    self.blocks.clear_held();
                    if !self.resyncing {
                        self.resyncing = true;
                        ctx.events.push_back(SessionEvent::BlockRefused { height, error });
                    }
                    self.gap_poll(ctx, SubChain::Blocks);
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// An encrypted `groupCallMessage`: decrypted, deduplicated by its `random_id`, told.
    fn message(&mut self, ctx: &mut Ctx<'_>, from: i64, encrypted: &[u8]) {
        let json = match self.call.decrypt_message(from, encrypted, ctx.now) {
            Ok(j) => j,
            // Our own echo, a replay or an old epoch: not for us to show.
            Err(e) if matches!(e.kind(), ErrorKind::OwnPacket | ErrorKind::Replay) => return,
            Err(error) => return ctx.events.push_back(SessionEvent::MessageDropped { from, error }),
        };
        if json.len() > ctx.config.max_message_bytes {
            let error = Error::new(ErrorKind::LimitExceeded, "message too large");
            return ctx.events.push_back(SessionEvent::MessageDropped { from, error });
        }
        if let Some(id) = random_id(&json) {
            if !ctx.seen_messages.insert((from, id)) {
                return;
            }
            ctx.seen_order.push_back((from, id));
            while ctx.seen_order.len() > ctx.config.max_remembered_messages {
                if let Some(old) = ctx.seen_order.pop_front() {
                    ctx.seen_messages.remove(&old);
                }
            }
        }
        ctx.events.push_back(SessionEvent::MessageReceived { from, json });
    }

    /// `updateGroupCallParticipants`: who left is pruned (bounded, deduplicated, after a small
    /// random delay so that members do not all race for the same block; not while a removal of
    /// the same entry is in flight or scheduled); who is back is not.
    fn note_participants(
        &mut self,
        ctx: &mut Ctx<'_>,
        participants: &[CallParticipant],
        rng: &mut impl CryptoRngCore,
    ) -> Flow {
        let me = ctx.user_id;
        ctx.sources.note(me, participants, ctx.events);
        // About ourselves: the server dropped us from the media call (tdlib leaves, to rejoin);
        // a late notice about an earlier participation is not about this one (issue 30 item 5).
        if participants.iter().any(|p| p.user_id == me && p.left && ctx.sources.is_current_participation(p)) {
            return Err(Exit::Ended(EndReason::JoinMissing));
        }
        if !ctx.config.prune_left {
            return Ok(());
        }
        let removing = ctx.outbox.removing();
        let max_prune = ctx.config.max_prune();
        for p in participants {
            if !p.left {
                self.prune.remove(&p.user_id);
                continue;
            }
            if ctx.sources.is_superseded(p) {
                // A late notice of a participation that already ended: the user is back.
                continue;
            }
            let entry = self.call.participants().iter().find(|q| q.user_id == p.user_id).map(|q| q.public_key);
            // One removal of an entry at a time, however often the server says it left; a pending
            // removal that targets an earlier entry of the user (a rejoin that left again) is not
            // this departure's: it finds its entry gone and sends nothing.
            let pending_other = |key: &PublicKey| self.left_keys.get(&p.user_id).is_some_and(|k| k != key);
            let fresh = |key: &PublicKey| !removing.contains(&p.user_id) || pending_other(key);
            if let Some(key) = entry.filter(|k| p.user_id != me && fresh(k) && self.prune.len() < max_prune) {
                self.prune.insert(p.user_id);
                self.left_keys.insert(p.user_id, key);
            }
        }
        if !self.prune.is_empty() && !self.prune_scheduled {
            self.prune_scheduled = true;
            let delay = rng.next_u64().checked_rem(ctx.config.max_prune_delay_ms.saturating_add(1)).unwrap_or(0);
            ctx.outbox.schedule(ctx.now.saturating_add(delay), Action::Prune);
        }
        Ok(())
    }

    // ---- polls ----

    /// Schedules the poll that fills a gap (or recovers): at once the first time, then after a
    /// delay doubling from 1 s to the poll interval; never earlier than an already scheduled one,
    /// nor within [`MIN_GAP_POLL_SPACING_MS`] of the last poll of the sub-chain.
    fn gap_poll(&mut self, ctx: &mut Ctx<'_>, sub: SubChain) {
        let s = self.sync(sub);
        let spaced = s.last_poll.map_or(0, |t| t.saturating_add(MIN_GAP_POLL_SPACING_MS));
        let at = ctx.now.saturating_add(s.gap_delay).max(spaced);
        s.gap_delay = s.gap_delay.saturating_mul(2).clamp(1_000, ctx.config.poll_interval_ms);
        ctx.outbox.poll_by(sub, at);
    }

    /// Sends the polls that are due (and not in flight, nor in a flood wait).
    pub(super) fn fire_polls(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let flood = ctx.outbox.flood_until(crate::api::RequestKind::GetChainBlocks);
        for sub in [SubChain::Blocks, SubChain::Broadcasts] {
            let poll = ctx.outbox.poll(sub);
            if poll.in_flight.is_some() || poll.at.is_none_or(|t| t > now) {
                continue;
            }
            if flood > now {
                poll.at = Some(flood);
                continue;
            }
            poll.at = None;
            let s = self.sync(sub);
            // Sub-chain 1: what lies before its window can no longer matter (issue 32).
            s.skip_stale();
            s.last_poll = Some(now);
            let (offset, limit) = match s.next() {
                Some(o) => (o, ctx.config.poll_limit),
                None => (-1, 1),
            };
            let id = ctx.send(Request::GetChainBlocks { sub_chain: sub, offset, limit }, Purpose::Poll { sub });
            ctx.outbox.poll(sub).in_flight = id;
        }
    }

    /// A poll of `sub` was answered (`updates`, or `None` on an error): it is no longer in
    /// flight; what the answer is measured against.
    pub(super) fn poll_answered(
        &mut self,
        ctx: &mut Ctx<'_>,
        sub: SubChain,
        updates: Option<&Vec<Update>>,
    ) -> PollStart {
        ctx.outbox.poll(sub).in_flight = None;
        let before = self.sync_ref(sub).next();
        let gap_tip = updates
            .filter(|_| sub == SubChain::Blocks)
            .and_then(|u| gap_tip(u, before, ctx.user_id, &self.call.public_key()));
        PollStart { before, gap_tip }
    }

    /// After a poll's blocks went through: another poll at once after a full page of progress,
    /// a gap left by a server that no longer holds us, recovery.
    pub(super) fn polled(&mut self, ctx: &mut Ctx<'_>, sub: SubChain, start: PollStart) -> Flow {
        let PollStart { before, gap_tip } = start;
        let now = ctx.now;
        // Another poll at once only after a full page of progress: the offset advanced by
        // `poll_limit` (a page of old blocks with one new one at its end is no progress worth a
        // poll per block at the same instant).
        let after = self.sync_ref(sub).next();
        let advanced = after != before;
        let full = before.zip(after).is_some_and(|(b, a)| a.saturating_sub(b) >= ctx.config.poll_limit);
        if sub == SubChain::Blocks {
            self.gap_answers = if advanced || gap_tip.is_none() { 0 } else { self.gap_answers.saturating_add(1) };
            if gap_tip == Some(false) {
                // The server's last block no longer lists our key: we were removed (only our own
                // participation ends on this unverified word, as on FORBIDDEN).
                return Err(Exit::Removed { height: None });
            }
            if self.gap_answers >= MAX_GAP_ANSWERS {
                // The server answers as to a non-member (the last block only, whatever the
                // offset): it no longer holds us in the call.
                return Err(Exit::Ended(EndReason::JoinMissing));
            }
        }
        if full && sub == SubChain::Broadcasts {
            // Nothing checks sub-chain 1 entries before they move the offset: a full page of junk
            // is no progress worth a poll at once (issue 30 item 8), and one of real broadcasts
            // cannot be told from it before it is read. The next page keeps the 1 s spacing of
            // gap polls; a member far behind skips what can no longer matter instead (the window).
            let spaced = self.broadcasts.last_poll.map_or(now, |t| t.saturating_add(MIN_GAP_POLL_SPACING_MS));
            ctx.outbox.poll_by(sub, spaced.max(now));
        } else if full {
            ctx.outbox.poll_by(sub, now);
        } else if self.resyncing && sub == SubChain::Blocks && ctx.outbox.poll(sub).at.is_none() {
            // Recovering and the server withheld the block: ask again, with backoff.
            self.gap_poll(ctx, sub);
        }
        Ok(())
    }

    /// A poll failed: out of the call on the errors that say so; otherwise the poll schedule
    /// asks again (after the flood wait, if one came).
    pub(super) fn poll_failed(&mut self, ctx: &mut Ctx<'_>, sub: SubChain, error: &ApiError) -> Flow {
        if let policy::Verdict::Exit(exit) = policy::retry(super::outbox::Goal::Poll, 0, error, ctx.config) {
            return Err(exit);
        }
        if self.resyncing || self.sync_ref(sub).held().0 > 0 {
            self.gap_poll(ctx, sub);
        }
        Ok(())
    }

    /// After a poll's answer: the next one after the poll interval, unless one is scheduled.
    pub(super) fn poll_rescheduled(&mut self, ctx: &mut Ctx<'_>, sub: SubChain) {
        let (now, interval) = (ctx.now, ctx.config.poll_interval_ms);
        let poll = ctx.outbox.poll(sub);
        if poll.at.is_none() && poll.in_flight.is_none() {
            poll.at = Some(now.saturating_add(interval));
        }
    }

    // ---- after a batch: the call's events and broadcasts ----

    /// The call's events become session events: keys, verification, participants (once per new
    /// height, then the participants' keys are checked), blackouts (a re-key scheduled), and a
    /// block that removed us leaves the call.
    pub(super) fn drain(&mut self, ctx: &mut Ctx<'_>) -> Flow {
        let mut events = Vec::new();
        while let Some(e) = self.call.poll_event() {
            events.push(e);
        }
        let (current, fingerprint) = (self.call.height(), self.call.key_fingerprint());
        let mut removed = None;
        let mut blackouts = Vec::new();
        let mut new_height = false;
        for e in events {
            match e {
                CallEvent::BlockApplied { height } => {
                    let fingerprint = if height == current { fingerprint.clone() } else { None };
                    ctx.events.push_back(SessionEvent::KeyChanged { height, fingerprint });
                }
                CallEvent::Removed { height } => removed = Some(height),
                CallEvent::KeyUnavailable { height, error } => {
                    ctx.events.push_back(SessionEvent::KeyUnavailable { height, error })
                }
                CallEvent::VideoBlackout { height, now: blackout } => {
                    ctx.events.push_back(SessionEvent::VideoBlackout { height, now: blackout });
                    blackouts.push(height);
                }
                CallEvent::VerificationDone { result } if self.verified_height != Some(result.height) => {
                    self.verified_height = Some(result.height);
                    ctx.events
                        .push_back(SessionEvent::VerificationDone { height: result.height, emojis: result.emojis() });
                }
                _ => {}
            }
        }
        // Participants and verification words change only with the block: looked at once per
        // new height, not on every batch of broadcasts.
        if self.announced_height != Some(current) {
            self.announced_height = Some(current);
            let mut participants: Vec<i64> = self.call.participants().iter().map(|p| p.user_id).collect();
            participants.sort_unstable();
            if participants != *ctx.participants {
                ctx.participants.clone_from(&participants);
                ctx.events.push_back(SessionEvent::ParticipantsChanged { user_ids: participants });
            }
            let words = self.call.verification_words();
            ctx.events.push_back(SessionEvent::VerificationStarted { height: current, words });
            new_height = true;
        }
        if ctx.config.end_video_blackouts {
            for height in blackouts {
                let delay = blackout_delay(ctx, height);
                ctx.outbox.schedule(ctx.now.saturating_add(delay), Action::EndBlackout { height });
            }
        }
        if let Some(height) = removed {
            return Err(Exit::Removed { height: Some(height) });
        }
        if new_height {
            self.check_keys(ctx, current);
        }
        Ok(())
    }

    /// The call's outbound broadcasts (commits and reveals) are sent, and kept to be sent again
    /// while the round has not completed.
    pub(super) fn send_broadcasts(&mut self, ctx: &mut Ctx<'_>) {
        let height = self.call.height();
        for block in self.call.poll_outbound() {
            // A broadcast about a block we have moved past is pointless: drop it.
            if !self.broadcast_is_current(&block) {
                continue;
            }
            if self.own_round.as_ref().is_none_or(|r| r.height != height) {
                let delay = ctx.config.poll_interval_ms;
                self.own_round = Some(OwnRound { height, sent: Vec::new(), delay });
                ctx.outbox.schedule(ctx.now.saturating_add(delay), Action::Rebroadcast { height });
            }
            if let Some(round) = self.own_round.as_mut().filter(|r| r.sent.len() < MAX_OWN_BROADCASTS) {
                round.sent.push(block.clone());
            }
            ctx.send(Request::SendBroadcast { block }, Purpose::Broadcast { attempt: 0 });
        }
    }

    /// Every member needs every commit and reveal of a round, and a member may have missed ours
    /// (a lost push it skipped on sub-chain 1, a server that lost it): while the round at `height`
    /// is ours and has not completed, our broadcasts of it are sent again, after a delay doubling
    /// from the poll interval to [`MAX_REBROADCAST_DELAY_MS`] (duplicates are harmless: a round
    /// takes each once);
    /// a broadcast still on its way (in flight, or waiting for a retry) is not sent twice.
    pub(super) fn rebroadcast(&mut self, ctx: &mut Ctx<'_>, height: i32) {
        let done = self.round_done() || self.call.height() != height;
        let Some(round) = self.own_round.as_mut().filter(|r| r.height == height && !done) else {
            return;
        };
        for block in &round.sent {
            // One on its way already (in flight, or retried until the round ends: the policy)
            // is not sent twice: retry chains would pile up while the network drops them.
            let request = Request::SendBroadcast { block: block.clone() };
            if !ctx.outbox.sending(&request) {
                ctx.send(request, Purpose::Broadcast { attempt: 0 });
            }
        }
        let longest = MAX_REBROADCAST_DELAY_MS.max(ctx.config.poll_interval_ms);
        round.delay = round.delay.saturating_mul(2).min(longest);
        ctx.outbox.schedule(ctx.now.saturating_add(round.delay), Action::Rebroadcast { height });
    }

    pub(super) fn broadcast_is_current(&self, block: &[u8]) -> bool {
        Broadcast::decode(block).map_or(true, |b| b.chain_height == self.call.height())
    }

    /// Whether the verification round of the current height completed.
    pub(super) fn round_done(&self) -> bool {
        self.call.verification_phase() == crate::verification::VerificationPhase::Done
    }

    // ---- participants' keys ----

    /// Whether we (`me`) hold `permission` in the call's state.
    pub(super) fn may(&self, me: i64, permission: Permissions) -> bool {
        self.call.participants().iter().any(|p| p.user_id == me && p.flags.contains(permission))
    }

    /// The entries (other than `me`) whose keys no one can use, as last checked.
    pub(super) fn unusable_entries(&self, me: i64) -> Vec<i64> {
        self.call
            .participants()
            .iter()
            .filter(|p| p.user_id != me && self.unusable.contains(&(p.user_id, p.public_key)))
            .map(|p| p.user_id)
            .collect()
    }

    /// Checks the keys of a new height's participants (each key once): an entry whose key no one
    /// can use is told ([`SessionEvent::UnusableKey`]) and, if we may remove, removed after a
    /// delay spread over members (issue 30 item 1).
    fn check_keys(&mut self, ctx: &mut Ctx<'_>, height: i32) {
        let me = ctx.user_id;
        let mut usable = BTreeSet::new();
        let mut found = false;
        for p in self.call.participants() {
            if self.usable_keys.contains(&p.public_key) || p.user_id == me {
                usable.insert(p.public_key);
            } else if self.unusable.contains(&(p.user_id, p.public_key)) {
                found = true;
            } else if p.public_key.is_usable() {
                usable.insert(p.public_key);
            } else {
                found = true;
                self.unusable.insert((p.user_id, p.public_key));
                ctx.events.push_back(SessionEvent::UnusableKey { user_id: p.user_id, height });
            }
        }
        self.usable_keys = usable;
        let participants = self.call.participants();
        self.unusable.retain(|(u, k)| participants.iter().any(|p| p.user_id == *u && p.public_key == *k));
        // A departure whose entry was replaced (a rejoin) is no longer to prune; its key is kept
        // while the user is in the chain, so that a removal rebuilt later still spares the new
        // entry. Users gone from the chain are forgotten.
        let prune = &mut self.prune;
        self.left_keys.retain(|u, k| {
            if !participants.iter().any(|p| p.user_id == *u && p.public_key == *k) {
                prune.remove(u);
            }
            participants.iter().any(|p| p.user_id == *u)
        });
        if found && !self.unusable_scheduled && self.may(me, Permissions::REMOVE_USERS) {
            self.unusable_scheduled = true;
            let delay = blackout_delay(ctx, height);
            ctx.outbox.schedule(ctx.now.saturating_add(delay), Action::RemoveUnusable);
        }
    }
}

/// A delay before re-keying away from a blackout (or removing an unusable entry), spread over
/// members (up to `max_prune_delay_ms`) so that they do not all race for the same height; drawn
/// from our user id and the height, not from an RNG (there is none here).
fn blackout_delay(ctx: &Ctx<'_>, height: i32) -> u64 {
    let max = ctx.config.max_prune_delay_ms.min(2_000);
    let mix = (ctx.user_id as u64 ^ (height as u64).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mix >> 11).checked_rem(max.saturating_add(1)).unwrap_or(0)
}

/// Consecutive poll answers that leave sub-chain 0's gap unfilled before the session concludes
/// that the server treats it as a non-member (which gets the last block only, whatever the offset).
const MAX_GAP_ANSWERS: u32 = 8;

/// For a poll answer of sub-chain 0 that lies beyond a gap (its first offset after `expected`):
/// whether its last block's new group state, if it sets one, still lists `user_id` with `key`
/// (`None`: no gap, or nothing to tell).
fn gap_tip(updates: &[Update], expected: Option<i32>, user_id: i64, key: &crate::crypto::PublicKey) -> Option<bool> {
    let expected = expected?;
    updates.iter().find_map(|u| match u {
        Update::ChainBlocks { sub_chain: SubChain::Blocks, blocks, next_offset } => {
            let first = next_offset.saturating_sub(i32::try_from(blocks.len()).unwrap_or(i32::MAX));
            if first <= expected || blocks.is_empty() {
                return None;
            }
            let block = Block::decode_server(blocks.last()?).ok()?;
            let state = block.changes.iter().rev().find_map(|c| match c {
                crate::wire::Change::SetGroupState(s) => Some(s),
                _ => None,
            });
            Some(state.is_none_or(|s| s.participants.iter().any(|p| p.user_id == user_id && p.public_key == *key)))
        }
        _ => None,
    })
}
