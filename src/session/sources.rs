//! Who sends on each SSRC of the call (SPEC.md §18.1): the session keeps one
//! [`SourceTable`] and one [`LookupScheduler`] per call, fed with every participant record (pushed
//! updates, the join's answer, lookup answers), and asks `phone.getGroupParticipants` about the
//! SSRCs media threads report unknown. It also remembers our own participation, so that a late
//! notice about an earlier one does not end the current one (issue 30 item 5).
//!
//! ```text
//!  Update::Participants ─▶ CallSources::note ─▶ SourceTable::apply ─▶ SourceMapped / SourceUnmapped
//!  media threads: Session::source_map().get(ssrc), misses and stale SSRCs (a mapped sender's
//!  key that does not open the frame: checked, still mapped) ─▶ run_lookups (each tick)
//!     ─▶ LookupScheduler ─▶ Request::GetGroupParticipants (outbox, RequestKind's flood wait)
//!     ─▶ on_lookup: apply the answer, on_answer / on_failure ─▶ SourceUnresolved
//! ```

use super::*;
use crate::sources::{LookupEvent, LookupId, LookupScheduler, SourceChange, SourceMap, SourceTable};

/// The call's sources: the table, its lookups, and our own participation.
#[derive(Debug)]
pub(super) struct CallSources {
    table: SourceTable,
    lookups: LookupScheduler,
    /// Our participation as the server last told it (its `source` and `date`), if it did.
    me: Option<CallParticipant>,
}

impl CallSources {
    /// No sources yet; the table holds up to `participants` participants.
    pub(super) fn new(participants: usize) -> Self {
        CallSources { table: SourceTable::with_capacity(participants), lookups: LookupScheduler::default(), me: None }
    }

    /// Participant records: each goes to the table (in order); a record of ours that has not
    /// left is our current participation, unless it is older than the one we know (a late
    /// record of an earlier participation must not hide the current one's end).
    pub(super) fn note(&mut self, me: i64, participants: &[CallParticipant], events: &mut VecDeque<SessionEvent>) {
        for p in participants.iter().filter(|p| p.user_id == me && !p.left) {
            if self.me.as_ref().is_none_or(|known| !p.is_older_than(known)) {
                self.me = Some(p.clone());
            }
        }
        source_events(events, self.table.apply(participants));
    }

    /// Whether the table knows a later participation of the record's user: the record (a late
    /// `left`, say) is about one that already ended.
    pub(super) fn is_superseded(&self, record: &CallParticipant) -> bool {
        self.table.participation(record.user_id).is_some_and(|current| record.is_older_than(current))
    }

    /// Whether a record of ours names our current participation (or we were not told which it
    /// is): a late notice that an earlier participation left must not end this one.
    pub(super) fn is_current_participation(&self, record: &CallParticipant) -> bool {
        self.me.as_ref().is_none_or(|me| me.same_participation(record))
    }
}

impl Session {
    /// Who sends on each SSRC of the call, for media threads (`Send + Sync`, lock-free reads):
    /// give it to [`crate::MediaDecryptor::decrypt_frame_from_source_into`]. The session keeps it
    /// up to date from participant updates, the join's answer and its own lookups of the SSRCs
    /// that readers report unknown; it is emptied on each join and when the call ends. The same
    /// map for the session's whole life: take it once.
    pub fn source_map(&self) -> SourceMap {
        self.sources.table.map()
    }

    /// A new join, or the call's end: every mapping goes, answers to earlier lookups are ignored,
    /// our participation is forgotten.
    pub(super) fn reset_sources(&mut self) {
        self.sources.lookups.reset();
        self.sources.me = None;
        let changes = self.sources.table.clear();
        source_events(&mut self.events, changes);
    }

    /// On each tick in the call: the SSRCs readers reported unknown or stale are queued, those
    /// that waited too long given up, and a due lookup leaves through the outbox (not during its
    /// kind's flood wait: the scheduler holds it).
    pub(super) fn run_lookups(&mut self) {
        if !matches!(self.phase, Phase::Live(_)) {
            return;
        }
        let now = self.now;
        let CallSources { table, lookups, .. } = &mut self.sources;
        let map = table.map();
        for (ssrc, source) in map.take_stale() {
            // Checked, not unmapped: any member can send a frame that the sender's key does not
            // open on any SSRC (its own, or another's replayed).
            if table.get(ssrc) == Some(source) {
                lookups.note_stale(ssrc, now);
            }
        }
        for ssrc in map.take_misses() {
            lookups.note_unknown(ssrc, table, now);
        }
        lookups.handle_timeout(now);
        if self.outbox.flood_until(RequestKind::GetGroupParticipants) <= now {
            if let Some((id, lookup)) = self.sources.lookups.poll_lookup(now) {
                self.ctx().send(Request::GetGroupParticipants { sources: lookup.sources }, Purpose::Lookup { id });
            }
        }
        self.lookup_events();
    }

    /// A lookup's outcome: its records go to the table; the SSRCs it did not name are given up.
    /// A failure queues them again, after the flood wait if there is one.
    pub(super) fn on_lookup(&mut self, id: LookupId, outcome: Outcome) {
        let now = self.now;
        match outcome {
            Ok(updates) => {
                for update in updates {
                    if let Update::Participants { participants } = update {
                        self.sources.note(self.user_id, &participants, &mut self.events);
                    }
                }
                self.sources.lookups.on_answer(id, &self.sources.table, now);
            }
            Err(error) => {
                let retry_at = match error {
                    ApiError::FloodWait { .. } => self.outbox.flood_until(RequestKind::GetGroupParticipants).max(now),
                    _ => now,
                };
                self.sources.lookups.on_failure(id, retry_at);
            }
        }
        self.lookup_events();
    }

    /// When the lookups next have work (in the call only): an SSRC's deadline, or the next send,
    /// never before the end of a flood wait on lookups (`run_lookups` holds the send until then,
    /// so a due send must not keep the session's timer in the past: a loop). The deadlines do
    /// not wait for the flood's end.
    pub(super) fn lookups_timeout(&self) -> Option<u64> {
        if !matches!(self.phase, Phase::Live(_)) {
            return None;
        }
        let (deadline, send) = self.sources.lookups.timeouts();
        let send = send.map(|t| t.max(self.outbox.flood_until(RequestKind::GetGroupParticipants)));
        [deadline, send].into_iter().flatten().min()
    }

    /// The SSRCs given up, but not the checks of a mapping given up (the SSRC stays mapped).
    fn lookup_events(&mut self) {
        while let Some(LookupEvent::Unresolved { ssrc, reason }) = self.sources.lookups.poll_event() {
            if self.sources.table.get(ssrc).is_none() {
                self.events.push_back(SessionEvent::SourceUnresolved { ssrc, reason });
            }
        }
    }
}

/// The table's changes as session events.
fn source_events(events: &mut VecDeque<SessionEvent>, changes: Vec<SourceChange>) {
    events.extend(changes.into_iter().map(|c| match c {
        SourceChange::Mapped { ssrc, source, previous } => SessionEvent::SourceMapped { ssrc, source, previous },
        SourceChange::Unmapped { ssrc, source } => SessionEvent::SourceUnmapped { ssrc, source },
    }));
}
