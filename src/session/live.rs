//! The live call: both sub-chains through [`SubSync`] and the chain rules, polls with gap
//! backoff, recovery from a refused push (refetch from our own next height), and the call's
//! events turned into session events after each batch (a block that removed us leaves the call).

use super::*;

/// In the call.
pub(super) struct Live {
    pub(super) call: Call,
    pub(super) blocks: SubSync,
    pub(super) broadcasts: SubSync,
    /// Recovering from a refused push (state `Resyncing`).
    pub(super) resyncing: bool,
    /// Consecutive poll answers of sub-chain 0 that left a gap.
    pub(super) gap_answers: u32,
    /// The height whose verification words were last announced.
    pub(super) announced_height: Option<i32>,
    pub(super) verified_height: Option<i32>,
    /// Users that left the media call, to prune (bounded, deduplicated).
    pub(super) prune: BTreeSet<i64>,
    /// The chain key of each user whose departure we saw (bounded like `prune`): a prune removes
    /// that entry only, never a newer one of the same user (a rejoin; issue 30 item 6).
    pub(super) left_keys: std::collections::BTreeMap<i64, crate::crypto::PublicKey>,
    pub(super) prune_scheduled: bool,
    /// Participants' keys found usable (rebuilt per height from the participants: bounded).
    pub(super) usable_keys: BTreeSet<crate::crypto::PublicKey>,
    /// Entries whose keys no one can use, already told (issue 30 item 1).
    pub(super) unusable: BTreeSet<(i64, crate::crypto::PublicKey)>,
    pub(super) unusable_scheduled: bool,
    /// The sub-chain 1 offset we stopped at for a broadcast too far ahead, and our height then
    /// (issue 30 item 3).
    pub(super) ahead_stop: Option<(i32, i32)>,
}

impl Live {
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
}

impl Session {
    pub(super) fn process_updates(&mut self, updates: Vec<Update>, source: Source, rng: &mut impl CryptoRngCore) {
        for u in updates {
            match u {
                Update::ChainBlocks { sub_chain, blocks, next_offset } => {
                    self.chain_blocks(sub_chain, blocks, next_offset, source, rng)
                }
                Update::EncryptedMessage { from, encrypted_message } => self.message(from, &encrypted_message),
                Update::GroupCall { call, discarded, invite_link } => {
                    // A call's identity never changes: once known, an updateGroupCall naming
                    // another call (one connection carries all of the account's calls) is not
                    // about this one and may neither rename nor end it.
                    if self.identity.is_some_and(|known| known != call) {
                        continue;
                    }
                    if self.identity != Some(call) || (invite_link.is_some() && self.invite_link != invite_link) {
                        self.identity = Some(call);
                        if invite_link.is_some() {
                            self.invite_link = invite_link.clone();
                        }
                        self.events.push_back(SessionEvent::CallIdentity { call, invite_link });
                    }
                    if discarded {
                        self.exit(Exit::Ended(EndReason::Discarded));
                    }
                }
                Update::Participants { participants } => self.note_participants(&participants, rng),
            }
        }
        self.after_batch();
    }

    /// One `updateGroupCallChainBlocks`: applies what extends our chain, holds what lies beyond a
    /// gap, and schedules the poll that fills a gap (with a growing delay).
    pub(super) fn chain_blocks(
        &mut self,
        sub: SubChain,
        blocks: Vec<ServerBlock>,
        next_offset: i32,
        source: Source,
        rng: &mut impl CryptoRngCore,
    ) {
        let Phase::Live(live) = &mut self.phase else { return };
        let run = match live.sync(sub).receive(blocks.into_iter().map(ServerBlock::into_bytes).collect(), next_offset) {
            Receive::Old => return,
            Receive::Gap => return self.gap_poll(sub),
            Receive::Apply(run) => run,
        };
        if !self.apply_run(sub, run, source, rng) {
            return;
        }
        // Held runs that now connect (they arrived as pushes).
        loop {
            let Phase::Live(live) = &mut self.phase else { return };
            let Some(run) = live.sync(sub).take_connected() else { break };
            if !self.apply_run(sub, run, Source::Push, rng) {
                return;
            }
        }
        if let Phase::Live(live) = &mut self.phase {
            if live.sync_ref(sub).held().0 > 0 {
                self.gap_poll(sub);
            }
        }
    }

    /// Applies blocks at the next offset, one by one through the chain rules. Whether all were.
    pub(super) fn apply_run(
        &mut self,
        sub: SubChain,
        run: Vec<Vec<u8>>,
        source: Source,
        rng: &mut impl CryptoRngCore,
    ) -> bool {
        let now = self.now;
        let Phase::Live(live) = &mut self.phase else { return false };
        for bytes in run {
            if sub == SubChain::Broadcasts {
                // A broadcast too far ahead of our height for the call to hold (or beyond its
                // bound on held broadcasts) is about blocks we have not fetched yet: stop at it,
                // catch up on blocks and fetch it again (issue 30 item 3), once per offset and
                // height of ours (a junk height never stalls the sub-chain for long).
                let (offset, height) = (live.broadcasts.next(), live.call.height());
                let ahead = Broadcast::decode_server(&bytes).is_ok_and(|b| {
                    i64::from(b.chain_height)
                        > i64::from(height).saturating_add(i64::from(crate::limits::HELD_BROADCAST_HEIGHTS))
                });
                let stopped_here = offset.is_some() && live.ahead_stop == offset.map(|o| (o, height));
                let result = if ahead { Ok(()) } else { live.call.receive_broadcast(&bytes) };
                let full = result.is_err_and(|e| e.kind() == ErrorKind::LimitExceeded);
                if (ahead || full) && !stopped_here {
                    live.ahead_stop = offset.map(|o| (o, height));
                    self.schedule_poll(SubChain::Blocks, now);
                    self.gap_poll(SubChain::Broadcasts);
                    return false;
                }
                // Broadcasts that do not apply (older rounds, duplicates) are routine.
                live.broadcasts.advance();
                live.broadcasts.gap_delay = 0;
                continue;
            }
            match live.call.apply_block(&bytes, now, rng) {
                Ok(()) => {
                    live.blocks.advance();
                    live.blocks.gap_delay = 0;
                    live.resyncing = false;
                }
                Err(error) => {
                    let height = live.call.height().saturating_add(1);
                    if source == Source::Server {
                        self.exit(Exit::ChainRejected { height, error });
                        return false;
                    }
                    // A refused push: never adopted; refetch from our own next height.
                    live.blocks.clear_held();
                    if !live.resyncing {
                        live.resyncing = true;
                        self.events.push_back(SessionEvent::BlockRefused { height, error });
                    }
                    self.gap_poll(SubChain::Blocks);
                    return false;
                }
            }
        }
        true
    }

    /// Schedules the poll that fills a gap (or recovers): at once the first time, then after a
    /// delay doubling from 1 s to the poll interval; never earlier than an already scheduled one,
    /// nor within [`MIN_GAP_POLL_SPACING_MS`] of the last poll of the sub-chain.
    pub(super) fn gap_poll(&mut self, sub: SubChain) {
        let (now, interval) = (self.now, self.config.poll_interval_ms);
        let Phase::Live(live) = &mut self.phase else { return };
        let s = live.sync(sub);
        let spaced = s.last_poll.map_or(0, |t| t.saturating_add(MIN_GAP_POLL_SPACING_MS));
        let at = now.saturating_add(s.gap_delay).max(spaced);
        s.gap_delay = s.gap_delay.saturating_mul(2).clamp(1_000, interval);
        self.outbox.poll_by(sub, at);
    }

    /// Schedules a poll of `sub` at `at` (or earlier, if one is scheduled earlier).
    pub(super) fn schedule_poll(&mut self, sub: SubChain, at: u64) {
        if matches!(self.phase, Phase::Live(_)) {
            self.outbox.poll_by(sub, at);
        }
    }

    /// Sends the polls that are due (and not in flight, nor in a flood wait).
    pub(super) fn fire_polls(&mut self) {
        let now = self.now;
        let flood = self.outbox.flood_until(RequestKind::GetChainBlocks);
        for sub in [SubChain::Blocks, SubChain::Broadcasts] {
            let Phase::Live(live) = &mut self.phase else { return };
            let poll = self.outbox.poll(sub);
            if poll.in_flight.is_some() || poll.at.is_none_or(|t| t > now) {
                continue;
            }
            if flood > now {
                poll.at = Some(flood);
                continue;
            }
            poll.at = None;
            let s = live.sync(sub);
            s.last_poll = Some(now);
            let (offset, limit) = match s.next() {
                Some(o) => (o, self.config.poll_limit),
                None => (-1, 1),
            };
            let id = self.send(Request::GetChainBlocks { sub_chain: sub, offset, limit }, Purpose::Poll { sub });
            if matches!(self.phase, Phase::Live(_)) {
                self.outbox.poll(sub).in_flight = id;
            }
        }
    }

    pub(super) fn on_poll(&mut self, sub: SubChain, outcome: outcomes::Outcome, rng: &mut impl CryptoRngCore) {
        let now = self.now;
        let Phase::Live(live) = &mut self.phase else { return };
        self.outbox.poll(sub).in_flight = None;
        let before = live.sync_ref(sub).next();
        match outcome {
            Ok(updates) => {
                // Another poll at once only after a full page of progress: the offset advanced by
                // `poll_limit` (a page of old blocks with one new one at its end is no progress
                // worth a poll per block at the same instant).
                // What the answer's last block says of us, when it lies beyond a gap.
                let gap_tip = (sub == SubChain::Blocks)
                    .then(|| gap_tip(&updates, before, self.user_id, &live.call.public_key()))
                    .flatten();
                self.process_updates(updates, Source::Server, rng);
                let Phase::Live(live) = &mut self.phase else { return };
                let after = live.sync_ref(sub).next();
                let advanced = after != before;
                let full = before.zip(after).is_some_and(|(b, a)| a.saturating_sub(b) >= self.config.poll_limit);
                if sub == SubChain::Blocks {
                    live.gap_answers =
                        if advanced || gap_tip.is_none() { 0 } else { live.gap_answers.saturating_add(1) };
                    if gap_tip == Some(false) {
                        // The server's last block no longer lists our key: we were removed (only
                        // our own participation ends on this unverified word, as on FORBIDDEN).
                        return self.exit(Exit::Removed { height: None });
                    }
                    if live.gap_answers >= MAX_GAP_ANSWERS {
                        // The server answers as to a non-member (the last block only, whatever
                        // the offset): it no longer holds us in the call.
                        return self.exit(Exit::Ended(EndReason::JoinMissing));
                    }
                }
                if full && sub == SubChain::Broadcasts {
                    // Nothing checks sub-chain 1 entries before they move the offset: a full page
                    // of junk is no progress worth a poll at once (issue 30 item 8). The next page
                    // keeps the 1 s spacing of gap polls.
                    let spaced = live.broadcasts.last_poll.map_or(now, |t| t.saturating_add(MIN_GAP_POLL_SPACING_MS));
                    self.schedule_poll(sub, spaced.max(now));
                } else if full {
                    self.schedule_poll(sub, now);
                } else if live.resyncing && sub == SubChain::Blocks && self.outbox.poll(sub).at.is_none() {
                    // Recovering and the server withheld the block: ask again, with backoff.
                    self.gap_poll(sub);
                }
            }
            Err(error) => {
                if let policy::Verdict::Exit(exit) = policy::retry(Goal::Poll, 0, &error, &self.config) {
                    return self.exit(exit);
                }
                // Given up: the poll schedule asks again (after the flood wait, if one came).
                let Phase::Live(live) = &mut self.phase else { return };
                if live.resyncing || live.sync_ref(sub).held().0 > 0 {
                    self.gap_poll(sub);
                }
            }
        }
        if matches!(self.phase, Phase::Live(_)) {
            let poll = self.outbox.poll(sub);
            if poll.at.is_none() && poll.in_flight.is_none() {
                poll.at = Some(now.saturating_add(self.config.poll_interval_ms));
            }
        }
    }

    /// After a batch: the call's events become session events, outbound broadcasts are sent.
    pub(super) fn after_batch(&mut self) {
        self.drain_call_events();
        let Phase::Live(live) = &mut self.phase else { return };
        for b in live.call.poll_outbound() {
            self.send_broadcast(b);
        }
    }

    /// A delay before re-keying away from a blackout, spread over members (up to
    /// `max_prune_delay_ms`) so that they do not all race for the same height; drawn from our
    /// user id and the height, not from an RNG (there is none here).
    pub(super) fn blackout_delay(&self, height: i32) -> u64 {
        let max = self.config.max_prune_delay_ms.min(2_000);
        let mix = (self.user_id as u64 ^ (height as u64).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mix >> 11).checked_rem(max.saturating_add(1)).unwrap_or(0)
    }

    pub(super) fn drain_call_events(&mut self) {
        let Phase::Live(live) = &mut self.phase else { return };
        let mut events = Vec::new();
        while let Some(e) = live.call.poll_event() {
            events.push(e);
        }
        let (current, fingerprint) = (live.call.height(), live.call.key_fingerprint());
        let mut removed = None;
        let mut blackouts = Vec::new();
        let mut new_height = false;
        for e in events {
            match e {
                CallEvent::BlockApplied { height } => {
                    let fingerprint = if height == current { fingerprint.clone() } else { None };
                    self.events.push_back(SessionEvent::KeyChanged { height, fingerprint });
                }
                CallEvent::Removed { height } => removed = Some(height),
                CallEvent::KeyUnavailable { height, error } => {
                    self.events.push_back(SessionEvent::KeyUnavailable { height, error })
                }
                CallEvent::VideoBlackout { height, now: blackout } => {
                    self.events.push_back(SessionEvent::VideoBlackout { height, now: blackout });
                    blackouts.push(height);
                }
                CallEvent::VerificationDone { result } if live.verified_height != Some(result.height) => {
                    live.verified_height = Some(result.height);
                    self.events
                        .push_back(SessionEvent::VerificationDone { height: result.height, emojis: result.emojis() });
                }
                _ => {}
            }
        }
        // Participants and verification words change only with the block: looked at once per
        // new height, not on every batch of broadcasts.
        if live.announced_height != Some(current) {
            live.announced_height = Some(current);
            let mut participants: Vec<i64> = live.call.participants().iter().map(|p| p.user_id).collect();
            participants.sort_unstable();
            if participants != self.participants {
                self.participants = participants.clone();
                self.events.push_back(SessionEvent::ParticipantsChanged { user_ids: participants });
            }
            let words = live.call.verification_words();
            self.events.push_back(SessionEvent::VerificationStarted { height: current, words });
            new_height = true;
        }
        if self.config.end_video_blackouts {
            for height in blackouts {
                let delay = self.blackout_delay(height);
                self.outbox.schedule(self.now.saturating_add(delay), Action::EndBlackout { height });
            }
        }
        if let Some(height) = removed {
            self.exit(Exit::Removed { height: Some(height) });
        } else if new_height {
            self.check_keys(current);
        }
    }
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
