//! The live call: both sub-chains through [`SubSync`] and the chain rules, polls with gap
//! backoff, recovery from a refused push (refetch from our own next height), and the ways out of
//! the call (fail closed, removed, ended), each of which closes the call.

use super::*;

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
                        self.end(EndReason::Discarded);
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
                        self.fail_closed(height, error);
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
        s.poll_at = Some(s.poll_at.map_or(at, |t| t.min(at)));
    }

    /// Schedules a poll of `sub` at `at` (or earlier, if one is scheduled earlier).
    pub(super) fn schedule_poll(&mut self, sub: SubChain, at: u64) {
        if let Phase::Live(live) = &mut self.phase {
            let s = live.sync(sub);
            s.poll_at = Some(s.poll_at.map_or(at, |t| t.min(at)));
        }
    }

    /// Sends the polls that are due (and not in flight, nor in a flood wait).
    pub(super) fn fire_polls(&mut self) {
        let now = self.now;
        let flood = self.ops.flood_until(RequestKind::GetChainBlocks);
        for sub in [SubChain::Blocks, SubChain::Broadcasts] {
            let Phase::Live(live) = &mut self.phase else { return };
            let s = live.sync(sub);
            if s.poll_in_flight.is_some() || s.poll_at.is_none_or(|t| t > now) {
                continue;
            }
            if flood > now {
                s.poll_at = Some(flood);
                continue;
            }
            s.poll_at = None;
            s.last_poll = Some(now);
            let (offset, limit) = match s.next() {
                Some(o) => (o, self.config.poll_limit),
                None => (-1, 1),
            };
            let id = self.send(Request::GetChainBlocks { sub_chain: sub, offset, limit }, Op::Poll { sub });
            if let Phase::Live(live) = &mut self.phase {
                live.sync(sub).poll_in_flight = id;
            }
        }
    }

    pub(super) fn on_poll(&mut self, sub: SubChain, response: Response, rng: &mut impl CryptoRngCore) {
        let now = self.now;
        let Phase::Live(live) = &mut self.phase else { return };
        live.sync(sub).poll_in_flight = None;
        let before = live.sync_ref(sub).next();
        match response {
            Response::Ok(updates) => {
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
                        return self.removed(None);
                    }
                    if live.gap_answers >= MAX_GAP_ANSWERS {
                        // The server answers as to a non-member (the last block only, whatever
                        // the offset): it no longer holds us in the call.
                        return self.end(EndReason::JoinMissing);
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
                } else if live.resyncing && sub == SubChain::Blocks && live.blocks.poll_at.is_none() {
                    // Recovering and the server withheld the block: ask again, with backoff.
                    self.gap_poll(sub);
                }
            }
            Response::Error(e) => {
                let error = e;
                if self.on_fatal(&error) {
                    return;
                }
                if let ApiError::FloodWait { seconds } = error {
                    // Polls wait it out, at most `max_flood_wait_s` (then ask again: a server
                    // that still wants us to wait says so again; one request costs little).
                    let ms = u64::from(seconds.min(self.config.max_flood_wait_s)).saturating_mul(1_000);
                    self.ops.set_flood(RequestKind::GetChainBlocks, now.saturating_add(ms));
                }
                let Phase::Live(live) = &mut self.phase else { return };
                if live.resyncing || live.sync_ref(sub).held().0 > 0 {
                    self.gap_poll(sub);
                }
            }
        }
        if let Phase::Live(live) = &mut self.phase {
            let s = live.sync(sub);
            if s.poll_at.is_none() && s.poll_in_flight.is_none() {
                s.poll_at = Some(now.saturating_add(self.config.poll_interval_ms));
            }
        }
    }

    // ---- leaving the call ----

    /// Fails closed: the server's chain holds a block our rules refuse. The media call is left
    /// too: a member that can no longer encrypt or decrypt must not stay in it as a ghost (the
    /// others then prune it from the chain); a rejoin drops the leave if it is still unsent.
    pub(super) fn fail_closed(&mut self, height: i32, error: Error) {
        let Some(call) = self.close_call() else { return };
        self.new_generation();
        self.phase = Phase::ChainRejected(call);
        self.events.push_back(SessionEvent::ChainRejected { height, error });
        self.send(Request::Leave, Op::Leave { then_left: false });
    }

    /// We are no longer in the call: close, tell, and leave the media call as tdlib does.
    pub(super) fn removed(&mut self, height: Option<i32>) {
        let Some(call) = self.close_call() else { return };
        self.new_generation();
        self.phase = Phase::Removed(call);
        self.events.push_back(SessionEvent::Removed { height });
        self.send(Request::Leave, Op::Leave { then_left: false });
    }

    /// The call ended for us.
    pub(super) fn end(&mut self, reason: EndReason) {
        let joining = matches!(self.phase, Phase::Joining(_));
        let call = self.close_call();
        if call.is_none() && !joining {
            return;
        }
        self.new_generation();
        self.phase = Phase::Ended(call);
        self.events.push_back(SessionEvent::Ended { reason });
        if reason == EndReason::JoinMissing {
            self.send(Request::Leave, Op::Leave { then_left: false });
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
