//! What the live call sends and receives besides blocks: messages, broadcasts, removals and
//! pruning, and the checks of participants' keys.

use super::*;

impl Session {
    pub(super) fn message(&mut self, from: i64, encrypted: &[u8]) {
        let now = self.now;
        let Phase::Live(live) = &mut self.phase else { return };
        let json = match live.call.decrypt_message(from, encrypted, now) {
            Ok(j) => j,
            // Our own echo, a replay or an old epoch: not for us to show.
            Err(e) if matches!(e.kind(), ErrorKind::OwnPacket | ErrorKind::Replay) => return,
            Err(error) => return self.events.push_back(SessionEvent::MessageDropped { from, error }),
        };
        if json.len() > self.config.max_message_bytes {
            let error = Error::new(ErrorKind::LimitExceeded, "message too large");
            return self.events.push_back(SessionEvent::MessageDropped { from, error });
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

    pub(super) fn broadcast_is_current(&self, block: &[u8]) -> bool {
        let current = self.live_call().map(Call::height);
        Broadcast::decode(block).map_or(true, |b| Some(b.chain_height) == current)
    }

    /// Whether the live call's verification round of its current height completed.
    pub(super) fn round_done(&self) -> bool {
        self.live_call().is_some_and(|c| c.verification_phase() == crate::verification::Phase::Done)
    }

    pub(super) fn send_broadcast(&mut self, block: Vec<u8>) {
        // A broadcast about a block we have moved past is pointless: drop it.
        if self.broadcast_is_current(&block) {
            self.send(Request::SendBroadcast { block }, Purpose::Broadcast { attempt: 0 });
        }
    }

    pub(super) fn send_removal(
        &mut self,
        user_ids: Vec<i64>,
        kick: bool,
        attempt: u32,
        rng: &mut impl CryptoRngCore,
    ) -> Result<()> {
        let unusable = self.unusable_entries();
        let Phase::Live(live) = &self.phase else {
            return Err(wrong_state("a removal", "the call", self.state()));
        };
        let (call, left_keys) = (&live.call, &live.left_keys);
        // A removal of users who left (`only_left`) removes the entry whose departure we saw, not
        // a newer one of the same user (a rejoin whose notice we missed; issue 30 item 6).
        let mut present: Vec<i64> = user_ids
            .iter()
            .copied()
            .filter(|u| {
                call.participants()
                    .iter()
                    .any(|p| p.user_id == *u && (kick || left_keys.get(u).is_none_or(|k| *k == p.public_key)))
            })
            .collect();
        if present.is_empty() && !kick {
            return Ok(()); // already gone: nothing to send
        }
        // Entries whose keys no one can use block every block that keeps them: a removal takes
        // them along (it needs the remove permission anyway; issue 30 item 1).
        let mut user_ids = user_ids;
        for u in unusable {
            if !present.contains(&u) {
                present.push(u);
            }
            if !user_ids.contains(&u) {
                user_ids.push(u);
            }
        }
        let block = if present.is_empty() {
            self.build(|rng| call.build_rekey(rng), rng)?
        } else {
            self.build(|rng| call.build_remove(&present, rng), rng)?
        };
        let purpose = if kick { Purpose::Removal { attempt } } else { Purpose::Prune { attempt } };
        self.send(Request::DeleteParticipants { user_ids, block, kick }, purpose);
        Ok(())
    }

    /// `updateGroupCallParticipants`: who left is pruned (bounded, deduplicated, after a small
    /// random delay so that members do not all race for the same block; not while a removal of
    /// theirs is in flight or scheduled); who is back is not.
    pub(super) fn note_participants(&mut self, participants: &[CallParticipant], rng: &mut impl CryptoRngCore) {
        // About ourselves: the server dropped us from the media call (tdlib leaves, to rejoin).
        let me_left = participants.iter().any(|p| p.user_id == self.user_id && p.left);
        if me_left && matches!(self.phase, Phase::Live(_)) {
            return self.exit(Exit::Ended(EndReason::JoinMissing));
        }
        if !self.config.prune_left {
            return;
        }
        let (me, now, max_delay) = (self.user_id, self.now, self.config.max_prune_delay_ms);
        let max_prune = self.config.max_prune();
        let removing = self.outbox.removing();
        let Phase::Live(live) = &mut self.phase else { return };
        for p in participants {
            if !p.left {
                live.prune.remove(&p.user_id);
                continue;
            }
            let fresh = !removing.contains(&p.user_id);
            let entry = live.call.participants().iter().find(|q| q.user_id == p.user_id).map(|q| q.public_key);
            if let Some(key) = entry.filter(|_| p.user_id != me && fresh && live.prune.len() < max_prune) {
                live.prune.insert(p.user_id);
                live.left_keys.insert(p.user_id, key);
            }
        }
        if !live.prune.is_empty() && !live.prune_scheduled {
            live.prune_scheduled = true;
            let delay = rng.next_u64().checked_rem(max_delay.saturating_add(1)).unwrap_or(0);
            self.outbox.schedule(now.saturating_add(delay), Action::Prune);
        }
    }

    pub(super) fn prune(&mut self, rng: &mut impl CryptoRngCore) {
        let me = self.user_id;
        let Phase::Live(live) = &mut self.phase else { return };
        live.prune_scheduled = false;
        let users: Vec<i64> = std::mem::take(&mut live.prune).into_iter().collect();
        let may_remove =
            live.call.participants().iter().any(|p| p.user_id == me && p.flags.contains(Permissions::REMOVE_USERS));
        if users.is_empty() || !may_remove {
            return;
        }
        if let Err(e) = self.send_removal(users, false, 0, rng) {
            self.send_failed(RequestKind::DeleteParticipants, SendFailure::Local(e));
        }
    }

    /// Whether we hold `permission` in the live call's state.
    pub(super) fn may(&self, permission: Permissions) -> bool {
        let me = self.user_id;
        self.live_call()
            .is_some_and(|c| c.participants().iter().any(|p| p.user_id == me && p.flags.contains(permission)))
    }

    /// The live call's entries (other than us) whose keys no one can use, as last checked.
    pub(super) fn unusable_entries(&self) -> Vec<i64> {
        let Phase::Live(live) = &self.phase else { return Vec::new() };
        let me = self.user_id;
        live.call
            .participants()
            .iter()
            .filter(|p| p.user_id != me && live.unusable.contains(&(p.user_id, p.public_key)))
            .map(|p| p.user_id)
            .collect()
    }

    /// Checks the keys of a new height's participants (each key once): an entry whose key no one
    /// can use is told ([`SessionEvent::UnusableKey`]) and, if we may remove, removed after a
    /// delay spread over members (issue 30 item 1).
    pub(super) fn check_keys(&mut self, height: i32) {
        let me = self.user_id;
        let Phase::Live(live) = &mut self.phase else { return };
        let mut usable = BTreeSet::new();
        let mut found = false;
        for p in live.call.participants() {
            if live.usable_keys.contains(&p.public_key) || p.user_id == me {
                usable.insert(p.public_key);
            } else if live.unusable.contains(&(p.user_id, p.public_key)) {
                found = true;
            } else if p.public_key.is_usable() {
                usable.insert(p.public_key);
            } else {
                found = true;
                live.unusable.insert((p.user_id, p.public_key));
                self.events.push_back(SessionEvent::UnusableKey { user_id: p.user_id, height });
            }
        }
        live.usable_keys = usable;
        let participants = live.call.participants();
        live.unusable.retain(|(u, k)| participants.iter().any(|p| p.user_id == *u && p.public_key == *k));
        // A departure whose entry was replaced (a rejoin) is no longer to prune; its key is kept
        // while the user is in the chain, so that a removal rebuilt later still spares the new
        // entry. Users gone from the chain are forgotten.
        let prune = &mut live.prune;
        live.left_keys.retain(|u, k| {
            if !participants.iter().any(|p| p.user_id == *u && p.public_key == *k) {
                prune.remove(u);
            }
            participants.iter().any(|p| p.user_id == *u)
        });
        if found && !live.unusable_scheduled && self.may(Permissions::REMOVE_USERS) {
            if let Phase::Live(live) = &mut self.phase {
                live.unusable_scheduled = true;
            }
            let delay = self.blackout_delay(height);
            self.outbox.schedule(self.now.saturating_add(delay), Action::RemoveUnusable);
        }
    }

    /// Removes the entries whose keys no one can use, if they are still there and we may.
    pub(super) fn remove_unusable(&mut self, rng: &mut impl CryptoRngCore) {
        let Phase::Live(live) = &mut self.phase else { return };
        live.unusable_scheduled = false;
        let users = self.unusable_entries();
        if users.is_empty() || !self.may(Permissions::REMOVE_USERS) {
            return;
        }
        // Until it is gone, look again later: a removal given up (lost races, a hostile server)
        // must not leave the entry for good, since no other block can be built meanwhile.
        if let Phase::Live(live) = &mut self.phase {
            live.unusable_scheduled = true;
        }
        let at = self.now.saturating_add(self.config.poll_interval_ms);
        self.outbox.schedule(at, Action::RemoveUnusable);
        let removing = self.outbox.removing();
        if users.iter().all(|u| removing.contains(u)) || self.state() != SessionState::Joined {
            return;
        }
        if let Err(e) = self.send_removal(users, true, 0, rng) {
            self.send_failed(RequestKind::DeleteParticipants, SendFailure::Local(e));
        }
    }
}
