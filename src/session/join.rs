//! The join planner: the tip, a zero block or a self-add with a fresh key per attempt, retries
//! (chain race, transient errors, flood waits, SSRC clashes), and the join response that starts
//! the live call (trusting the server's tip, as every first join does).

use super::*;

/// A join in flight, with what arrived meanwhile.
#[derive(Debug, Default)]
pub(super) struct Joining {
    pub(super) buffered: VecDeque<Update>,
    pub(super) buffered_bytes: usize,
}

impl Joining {
    /// Keeps an update that arrived while the join is in flight, if it fits the bounds (entries
    /// and bytes); a notice that `me` left is about our participant before this join (a late
    /// notice of a leave): it must not end the new one once joined.
    pub(super) fn buffer(&mut self, update: Update, me: i64, config: &SessionConfig) {
        let update = match update {
            Update::Participants { mut participants } => {
                participants.retain(|p| !(p.user_id == me && p.left));
                Update::Participants { participants }
            }
            other => other,
        };
        let bytes = update_bytes(&update);
        let fits = self.buffered.len() < config.max_buffered_updates
            && self.buffered_bytes.saturating_add(bytes) <= config.max_buffered_bytes;
        if fits {
            self.buffered_bytes = self.buffered_bytes.saturating_add(bytes);
            self.buffered.push_back(update);
        }
    }
}

/// The bytes an update holds (for the bound on buffered updates).
fn update_bytes(u: &Update) -> usize {
    match u {
        Update::ChainBlocks { blocks, .. } => blocks.iter().map(Vec::len).sum(),
        Update::EncryptedMessage { encrypted_message, .. } => encrypted_message.len(),
        Update::GroupCall { invite_link, .. } => invite_link.as_ref().map_or(0, String::len),
        Update::Participants { participants } => participants.len().saturating_mul(16),
    }
}

impl Session {
    pub(super) fn check_can_join(&self, call: &str) -> Result<()> {
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

    pub(super) fn me(&self, key: &PrivateKey) -> GroupParticipant {
        GroupParticipant {
            user_id: self.user_id,
            public_key: key.public_key(),
            flags: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
            version: 0,
        }
    }

    pub(super) fn start_join_attempt(&mut self, attempt: u32, create: bool, rng: &mut impl CryptoRngCore) {
        if !create {
            let request = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 };
            self.send(request, Purpose::JoinTip { attempt });
            return;
        }
        let key = PrivateKey::generate(rng);
        let state = GroupState {
            participants: vec![self.me(&key)],
            external_permissions: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
        };
        match self.build(|rng| build_zero_block(state.clone(), &key, rng), rng) {
            Ok(block) => {
                let public_key = Some(key.public_key());
                let purpose = Purpose::Create { attempt, key: Some(Box::new(key)) };
                self.send(Request::CreateConference { public_key, block: Some(block) }, purpose);
            }
            Err(e) => self.exit(Exit::JoinFailed(JoinFailure::InvalidResponse(e.to_string()))),
        }
    }

    pub(super) fn on_join_tip(&mut self, attempt: u32, updates: Vec<Update>, rng: &mut impl CryptoRngCore) {
        let mut tip = None;
        let mut rest = Vec::new();
        for u in updates {
            match u {
                Update::ChainBlocks { sub_chain_id: 0, blocks, .. } if tip.is_none() => tip = Some(blocks),
                other => rest.push(other),
            }
        }
        for u in rest {
            self.handle_update(u, self.now, rng);
        }
        if !matches!(self.phase, Phase::Joining(_)) {
            return; // the call ended meanwhile
        }
        let Some(blocks) = tip else {
            return self
                .exit(Exit::JoinFailed(JoinFailure::InvalidResponse("no sub-chain 0 in the tip response".into())));
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
                self.build(|rng| build_zero_block(state.clone(), &key, rng), rng)
            }
            // The join's trust on first use: the tip is the server's word.
            Some(last) => {
                let me = self.me(&key);
                UnverifiedTip::from_server_block(last)
                    .and_then(|t| self.build(|rng| t.build_self_add(me.clone(), &key, rng), rng))
            }
        };
        let built = block.and_then(|b| b.decode().map(|d| (d.height, b)));
        match built {
            Ok((height, block)) => {
                let public_key = key.public_key();
                let purpose = Purpose::Join { attempt, key: Box::new(key), height };
                self.send(Request::Join { public_key, block }, purpose);
            }
            // An entry of the tip whose key no one can use (issue 30 item 1): a member may remove
            // it, so try again on a newer tip; if it stays, fail naming it.
            Err(e) if e.kind() == ErrorKind::SharedSecret && e.participant().is_some() => {
                let user_id = e.participant().unwrap_or_default();
                if attempt.saturating_add(1) >= self.config.max_attempts {
                    self.exit(Exit::JoinFailed(JoinFailure::UnusableKey { user_id }));
                } else {
                    self.retry_join(attempt, false, None);
                }
            }
            Err(e) => {
                self.exit(Exit::JoinFailed(JoinFailure::InvalidResponse(format!("cannot build on the tip: {e}"))))
            }
        }
    }

    pub(super) fn retry_join(&mut self, attempt: u32, create: bool, delay: Option<u64>) {
        let next = attempt.saturating_add(1);
        if next >= self.config.max_attempts {
            return self.exit(Exit::JoinFailed(JoinFailure::RetriesExhausted { attempts: next }));
        }
        let at = self.now.saturating_add(delay.unwrap_or_else(|| policy::backoff(&self.config, attempt)));
        self.outbox.schedule(at, Action::JoinAttempt { attempt: next, create });
    }

    /// A join the server accepted (`Ok`) but whose answer we cannot use: the join fails, and we
    /// leave the media call the server put us in (no ghost member).
    fn fail_accepted_join(&mut self, reason: JoinFailure) {
        self.exit(Exit::JoinFailed(reason));
        self.send(Request::Leave, Purpose::Leave { then_left: false });
    }

    /// The join (or create-with-join) response: sub-chain 0 holds our own block (at the height
    /// we built it for), possibly followed by later blocks; broadcasts may come along.
    pub(super) fn on_joined(
        &mut self,
        key: PrivateKey,
        height: i32,
        updates: Vec<Update>,
        rng: &mut impl CryptoRngCore,
    ) {
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
            return self.fail_accepted_join(JoinFailure::InvalidResponse("no sub-chain 0 in the join response".into()));
        };
        let ours = blocks.iter().position(|b| Block::decode_server(b).is_ok_and(|d| d.height == height));
        let Some((index, ours)) = ours.and_then(|i| Some((i, blocks.get(i)?))) else {
            return self
                .fail_accepted_join(JoinFailure::InvalidResponse("the join response does not hold our block".into()));
        };
        let first = next_offset.saturating_sub(i32::try_from(blocks.len()).unwrap_or(i32::MAX));
        let our_offset = first.saturating_add(i32::try_from(index).unwrap_or(i32::MAX));
        if our_offset < 0 {
            return self
                .fail_accepted_join(JoinFailure::InvalidResponse("negative offsets in the join response".into()));
        }
        let mut call = match Call::new(self.user_id, key, ours, rng) {
            Ok(c) => c,
            Err(e) => return self.fail_accepted_join(JoinFailure::InvalidResponse(format!("our block: {e}"))),
        };
        call.set_max_held_broadcasts(self.config.max_held_broadcasts());
        let buffered = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Joining(j) => j.buffered,
            _ => VecDeque::new(),
        };
        let (max_blocks, max_bytes) = (self.config.max_buffered_updates, self.config.max_buffered_bytes);
        let mut live = Live {
            call,
            blocks: SubSync::new(max_blocks, max_bytes),
            broadcasts: SubSync::new(max_blocks, max_bytes),
            resyncing: false,
            gap_answers: 0,
            announced_height: None,
            verified_height: None,
            prune: BTreeSet::new(),
            left_keys: std::collections::BTreeMap::new(),
            prune_scheduled: false,
            usable_keys: BTreeSet::new(),
            unusable: BTreeSet::new(),
            unusable_scheduled: false,
            ahead_stop: None,
        };
        live.blocks.set_next(our_offset.saturating_add(1));
        self.outbox.poll(SubChain::Blocks).at = Some(self.now.saturating_add(self.config.poll_interval_ms));
        // The broadcast sub-chain's offset is learnt by a poll at -1 unless the response has it.
        self.outbox.poll(SubChain::Broadcasts).at = Some(self.now);
        self.phase = Phase::Live(Box::new(live));
        // The rest of sub-chain 0 is the server's chain: through the rules (offsets filter ours).
        let mut server = vec![Update::ChainBlocks { sub_chain_id: 0, blocks, next_offset }];
        server.extend(rest);
        self.process_updates(server, Source::Server, rng);
        self.process_updates(buffered.into(), Source::Push, rng);
        if let Phase::Live(l) = &mut self.phase {
            if l.broadcasts.next().is_some() {
                self.outbox.poll(SubChain::Broadcasts).at = Some(self.now.saturating_add(self.config.poll_interval_ms));
            }
            let height = l.call.height();
            self.events.push_back(SessionEvent::Joined { height });
        }
    }
}
