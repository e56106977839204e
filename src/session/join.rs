//! The `Joining` state and its handlers: the tip, a zero block or a self-add with a fresh key per
//! attempt, and the join's answer that starts the live call (trusting the server's tip, as every
//! first join does). Failures and retries (chain race, transient errors, flood waits, SSRC
//! clashes) go through the retry policy; a retry starts again from the tip.

use std::collections::VecDeque;

use rand_core::CryptoRngCore;

use super::live::Live;
use super::{Ctx, Exit, Flow, JoinFailure, Purpose, Request, ServerBlock, SessionConfig, SubChain, Update};
use crate::call::Call;
use crate::chain::{build_zero_block, UnverifiedTip};
use crate::crypto::PrivateKey;
use crate::error::ErrorKind;
use crate::wire::{Block, GroupState, Permissions};

/// A join in flight, with what arrived meanwhile.
#[derive(Debug, Default)]
pub(super) struct Joining {
    pub(super) buffered: VecDeque<Update>,
    pub(super) buffered_bytes: usize,
}

/// What a join's answer starts: the live call, the server's chain (sub-chain 0 from our block
/// on, and what came along) and the updates kept while joining, for the session to feed to it.
pub(super) struct Joined {
    pub(super) live: Box<Live>,
    pub(super) server: Vec<Update>,
    pub(super) buffered: VecDeque<Update>,
}

/// The request that starts a join attempt: the tip of sub-chain 0.
pub(super) fn tip_request() -> Request {
    Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 }
}

/// Splits a tip answer into sub-chain 0's blocks (the tip) and the other updates.
pub(super) fn split_tip(updates: Vec<Update>) -> (Option<Vec<ServerBlock>>, Vec<Update>) {
    let mut tip = None;
    let mut rest = Vec::new();
    for u in updates {
        match u {
            Update::ChainBlocks { sub_chain: SubChain::Blocks, blocks, .. } if tip.is_none() => tip = Some(blocks),
            other => rest.push(other),
        }
    }
    (tip, rest)
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

    /// The first attempt: a join fetches the tip; a create (`Some(join)`) sends
    /// `createConferenceCall`, with our zero block if `join`.
    pub(super) fn start(&mut self, ctx: &mut Ctx<'_>, create: Option<bool>, rng: &mut impl CryptoRngCore) -> Flow {
        match create {
            None => ctx.send_join(tip_request(), Purpose::JoinTip { attempt: 0 }),
            Some(false) => {
                let request = Request::CreateConference { public_key: None, block: None };
                ctx.send_join(request, Purpose::Create { attempt: 0, key: None })
            }
            Some(true) => {
                let key = PrivateKey::generate(rng);
                let state = GroupState {
                    participants: vec![ctx.me(&key)],
                    external_permissions: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
                };
                let block = ctx
                    .build(|rng| build_zero_block(state.clone(), &key, rng), rng)
                    .map_err(|e| failed(JoinFailure::InvalidResponse(e.to_string())))?;
                let public_key = Some(key.public_key());
                let purpose = Purpose::Create { attempt: 0, key: Some(Box::new(key)) };
                ctx.send_join(Request::CreateConference { public_key, block: Some(block) }, purpose)
            }
        }
    }

    /// The tip of attempt `attempt` (sub-chain 0's blocks of the answer, `None` if it had none):
    /// a zero block on an empty chain, else a self-add on the tip, with a fresh key.
    pub(super) fn on_tip(
        &mut self,
        ctx: &mut Ctx<'_>,
        attempt: u32,
        tip: Option<Vec<ServerBlock>>,
        rng: &mut impl CryptoRngCore,
    ) -> Flow {
        let Some(blocks) = tip else {
            return Err(failed(JoinFailure::InvalidResponse("no sub-chain 0 in the tip response".into())));
        };
        // A fresh key per attempt: a key is never reused (replay windows are keyed by key).
        let key = PrivateKey::generate(rng);
        let block = match blocks.last() {
            // The chain is empty: the first joiner sends the zero block to joinGroupCall of THIS
            // call (never createConferenceCall, which would make a second conference).
            None => {
                let state = GroupState {
                    participants: vec![ctx.me(&key)],
                    external_permissions: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
                };
                ctx.build(|rng| build_zero_block(state.clone(), &key, rng), rng)
            }
            // The join's trust on first use: the tip is the server's word.
            Some(last) => {
                let me = ctx.me(&key);
                UnverifiedTip::from_server_block(last)
                    .and_then(|t| ctx.build(|rng| t.build_self_add(me.clone(), &key, rng), rng))
            }
        };
        let built = block.and_then(|b| b.decode().map(|d| (d.height, b)));
        match built {
            Ok((height, block)) => {
                let public_key = key.public_key();
                let purpose = Purpose::Join { attempt, key: Box::new(key), height };
                ctx.send_join(Request::Join { public_key, block }, purpose)
            }
            // An entry of the tip whose key no one can use (issue 30 item 1): a member may remove
            // it, so try again on a newer tip; if it stays, fail naming it.
            Err(e) if e.kind() == ErrorKind::SharedSecret && e.participant().is_some() => {
                let user_id = e.participant().unwrap_or_default();
                let next = attempt.saturating_add(1);
                if next >= ctx.config.max_attempts {
                    return Err(failed(JoinFailure::UnusableKey { user_id }));
                }
                let at = ctx.now.saturating_add(super::policy::backoff(ctx.config, attempt));
                let purpose = Purpose::JoinTip { attempt: next };
                ctx.outbox.schedule(at, super::Action::Resend { request: tip_request(), purpose });
                Ok(())
            }
            Err(e) => Err(failed(JoinFailure::InvalidResponse(format!("cannot build on the tip: {e}")))),
        }
    }

    /// The join (or create-with-join) answer: sub-chain 0 holds our own block (at the height we
    /// built it for), possibly followed by later blocks; broadcasts may come along. A join the
    /// server accepted but whose answer we cannot use fails, and we leave the media call the
    /// server put us in (no ghost member).
    pub(super) fn on_joined(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: PrivateKey,
        height: i32,
        updates: Vec<Update>,
        rng: &mut impl CryptoRngCore,
    ) -> Flow<Joined> {
        let accepted =
            |reason: &str| Exit::JoinFailed { reason: JoinFailure::InvalidResponse(reason.into()), accepted: true };
        let mut chain = None;
        let mut rest = Vec::new();
        for u in updates {
            match u {
                Update::ChainBlocks { sub_chain: SubChain::Blocks, blocks, next_offset } if chain.is_none() => {
                    chain = Some((blocks, next_offset))
                }
                other => rest.push(other),
            }
        }
        let Some((blocks, next_offset)) = chain else {
            return Err(accepted("no sub-chain 0 in the join response"));
        };
        let ours = blocks.iter().position(|b| Block::decode_server(b).is_ok_and(|d| d.height == height));
        let Some((index, ours)) = ours.and_then(|i| Some((i, blocks.get(i)?))) else {
            return Err(accepted("the join response does not hold our block"));
        };
        let first = next_offset.saturating_sub(i32::try_from(blocks.len()).unwrap_or(i32::MAX));
        let our_offset = first.saturating_add(i32::try_from(index).unwrap_or(i32::MAX));
        if our_offset < 0 {
            return Err(accepted("negative offsets in the join response"));
        }
        let mut call = Call::new(ctx.user_id, key, ours, rng).map_err(|e| accepted(&format!("our block: {e}")))?;
        call.set_max_held_broadcasts(ctx.config.max_held_broadcasts());
        let mut live = Box::new(Live::new(call, ctx.config));
        live.blocks.set_next(our_offset.saturating_add(1));
        ctx.outbox.poll(SubChain::Blocks).at = Some(ctx.now.saturating_add(ctx.config.poll_interval_ms));
        // The broadcast sub-chain's offset is learnt by a poll at -1 unless the response has it.
        ctx.outbox.poll(SubChain::Broadcasts).at = Some(ctx.now);
        let mut server = vec![Update::ChainBlocks { sub_chain: SubChain::Blocks, blocks, next_offset }];
        server.extend(rest);
        Ok(Joined { live, server, buffered: std::mem::take(&mut self.buffered) })
    }
}

impl Live {
    /// The join's last step, once the server's chain and the updates kept while joining went
    /// through: the broadcast poll waits its interval if the answer told its offset, and the
    /// application hears that we joined.
    pub(super) fn started(&mut self, ctx: &mut Ctx<'_>) {
        if self.broadcasts.next().is_some() {
            ctx.outbox.poll(SubChain::Broadcasts).at = Some(ctx.now.saturating_add(ctx.config.poll_interval_ms));
        }
        let height = self.call.height();
        ctx.events.push_back(super::SessionEvent::Joined { height });
    }
}

fn failed(reason: JoinFailure) -> Exit {
    Exit::JoinFailed { reason, accepted: false }
}

/// The bytes an update holds (for the bound on buffered updates).
fn update_bytes(u: &Update) -> usize {
    match u {
        Update::ChainBlocks { blocks, .. } => blocks.iter().map(|b| b.len()).sum(),
        Update::EncryptedMessage { encrypted_message, .. } => encrypted_message.len(),
        Update::GroupCall { invite_link, .. } => invite_link.as_ref().map_or(0, String::len),
        Update::Participants { participants } => {
            participants.iter().map(participant_bytes).fold(0, usize::saturating_add)
        }
    }
}

/// The bytes a participant record holds: the record, and its sources' endpoint names and source
/// groups (a hostile server chooses their sizes).
fn participant_bytes(p: &crate::api::CallParticipant) -> usize {
    let video = |v: &crate::api::VideoSources| {
        let groups = v.source_groups.iter().map(|g| {
            std::mem::size_of_val(g)
                .saturating_add(g.semantics.len())
                .saturating_add(std::mem::size_of_val(&g.sources[..]))
        });
        groups.fold(v.endpoint.len(), usize::saturating_add)
    };
    let sources = [&p.sources.video, &p.sources.presentation].into_iter().flatten().map(video);
    sources.fold(std::mem::size_of_val(p), usize::saturating_add)
}
