//! The blocks the live call makes itself: removals (bans), prunes of users who left, re-keys and
//! changes of permissions, re-keys away from a video blackout, and removals of entries whose keys
//! no one can use. Handlers of the `Live` state, like those in `live.rs`.

use rand_core::CryptoRngCore;

use super::live::Live;
use super::{Action, Ctx, Purpose, Request, RequestKind, SendFailure};
use crate::error::Result;
use crate::wire::Permissions;

impl Live {
    /// Builds and sends a removal (`kick`: a ban) or a prune of `user_ids` (attempt `attempt`).
    pub(super) fn removal(
        &mut self,
        ctx: &mut Ctx<'_>,
        user_ids: Vec<i64>,
        kick: bool,
        attempt: u32,
        rng: &mut impl CryptoRngCore,
    ) -> Result<()> {
        let unusable = self.unusable_entries(ctx.user_id);
        let (call, left_keys) = (&self.call, &self.left_keys);
        // A removal without a ban (`only_left`: a prune, or the application's) removes the entry
        // it targeted, never a newer one of the same user (a rejoin whose notice we missed, or that
        // came while the request was lost and retried; issue 30 item 6). A ban removes the user.
        let mut present: Vec<i64> = user_ids
            .iter()
            .copied()
            .filter(|u| {
                call.participants()
                    .iter()
                    .any(|p| p.user_id == *u && (kick || left_keys.get(u).is_some_and(|k| *k == p.public_key)))
            })
            .collect();
        if present.is_empty() && !kick {
            return Ok(()); // already gone: nothing to send
        }
        // Entries whose keys no one can use block every block that keeps them: a removal takes
        // them along (it needs the remove permission anyway; issue 30 item 1).
        // The server drops the users named from the media call: a prune names only the entries it
        // removes (a rejoined user is not pruned, in the chain or in the media call).
        let mut user_ids = if kick { user_ids } else { present.clone() };
        for u in unusable {
            if !present.contains(&u) {
                present.push(u);
            }
            if !user_ids.contains(&u) {
                user_ids.push(u);
            }
        }
        let block = if present.is_empty() {
            ctx.build(|rng| call.build_rekey(rng), rng)?
        } else {
            ctx.build(|rng| call.build_remove(&present, rng), rng)?
        };
        let purpose = if kick { Purpose::Removal { attempt } } else { Purpose::Prune { attempt } };
        ctx.send(Request::DeleteParticipants { user_ids, block, kick }, purpose);
        Ok(())
    }

    /// Prunes the users who left (if we may remove).
    pub(super) fn prune(&mut self, ctx: &mut Ctx<'_>, rng: &mut impl CryptoRngCore) {
        self.prune_scheduled = false;
        let users: Vec<i64> = std::mem::take(&mut self.prune).into_iter().collect();
        if users.is_empty() || !self.may(ctx.user_id, Permissions::REMOVE_USERS) {
            return;
        }
        if let Err(e) = self.removal(ctx, users, false, 0, rng) {
            ctx.send_failed(RequestKind::DeleteParticipants, SendFailure::Local(e));
        }
    }

    /// A re-key, or new permissions for a user (see [`super::Session::rekey`]).
    pub(super) fn rekey(
        &mut self,
        ctx: &mut Ctx<'_>,
        permissions: Option<(i64, Permissions)>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<()> {
        let call = &self.call;
        // An entry no one can build a key header for blocks every re-key: a member who may remove
        // re-keys by removing it (issue 30 item 1).
        let unusable = self.unusable_entries(ctx.user_id);
        let may_remove = self.may(ctx.user_id, Permissions::REMOVE_USERS);
        let block = match permissions {
            None if !unusable.is_empty() && may_remove => ctx.build(|rng| call.build_remove(&unusable, rng), rng)?,
            None => ctx.build(|rng| call.build_rekey(rng), rng)?,
            Some((user_id, p)) => ctx.build(|rng| call.build_set_permissions(user_id, p, rng), rng)?,
        };
        // Entries removed along are named, so that the server drops them from the media call too.
        let user_ids = if permissions.is_none() && may_remove { unusable } else { Vec::new() };
        ctx.send(Request::DeleteParticipants { user_ids, block, kick: true }, Purpose::Rekey);
        Ok(())
    }

    /// The block at `height` blacks out H.264: re-key, if nobody did meanwhile and we may.
    pub(super) fn end_blackout(&mut self, ctx: &mut Ctx<'_>, height: i32, rng: &mut impl CryptoRngCore) {
        let may = self.may(ctx.user_id, Permissions::ADD_USERS) || self.may(ctx.user_id, Permissions::REMOVE_USERS);
        if self.call.height() != height || !may || self.resyncing {
            return;
        }
        if let Err(e) = self.rekey(ctx, None, rng) {
            ctx.send_failed(RequestKind::DeleteParticipants, SendFailure::Local(e));
        }
    }

    /// Removes the entries whose keys no one can use, if they are still there and we may.
    pub(super) fn remove_unusable(&mut self, ctx: &mut Ctx<'_>, rng: &mut impl CryptoRngCore) {
        self.unusable_scheduled = false;
        let users = self.unusable_entries(ctx.user_id);
        if users.is_empty() || !self.may(ctx.user_id, Permissions::REMOVE_USERS) {
            return;
        }
        // Until it is gone, look again later: a removal given up (lost races, a hostile server)
        // must not leave the entry for good, since no other block can be built meanwhile.
        self.unusable_scheduled = true;
        let at = ctx.now.saturating_add(ctx.config.poll_interval_ms);
        ctx.outbox.schedule(at, Action::RemoveUnusable);
        let removing = ctx.outbox.removing();
        if users.iter().all(|u| removing.contains(u)) || self.resyncing {
            return;
        }
        if let Err(e) = self.removal(ctx, users, true, 0, rng) {
            ctx.send_failed(RequestKind::DeleteParticipants, SendFailure::Local(e));
        }
    }
}
