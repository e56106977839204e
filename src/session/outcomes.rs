//! Outcomes of requests: the answer (or deadline) of each request, already typed
//! ([`Outcome`]), and what it means for the join, the live call or the send that made it. A
//! failure goes through the one retry policy ([`policy::retry`]).

use super::policy::{GiveUp, Verdict};
use super::*;

/// A request's answer: its updates, or the server's error (parsed once, where it came in).
pub(super) type Outcome = std::result::Result<Vec<Update>, ApiError>;

impl Session {
    pub(super) fn handle_outcome(&mut self, entry: Entry, outcome: Outcome, rng: &mut impl CryptoRngCore) {
        let Entry { purpose, request, generation, .. } = entry;
        if generation != self.outbox.generation {
            // A join the server accepted after we left: leave again, so no ghost member stays.
            let ghost = purpose.joins() && outcome.is_ok() && matches!(self.phase, Phase::Leaving | Phase::Left);
            if ghost {
                self.send(Request::Leave, Purpose::Leave { then_left: false });
            }
            return;
        }
        match (purpose, outcome) {
            (Purpose::Leave { then_left }, _) => {
                if then_left && matches!(self.phase, Phase::Leaving) {
                    self.phase = Phase::Left;
                    self.events.push_back(SessionEvent::Left);
                }
            }
            (Purpose::Poll { sub }, outcome) => self.on_poll(sub, outcome, rng),
            (Purpose::Lookup { id }, Ok(updates)) => self.on_lookup(id, Ok(updates)),
            (Purpose::JoinTip { attempt }, Ok(updates)) => self.on_join_tip(attempt, updates, rng),
            (Purpose::Join { key, height, .. }, Ok(updates)) => self.on_joined(*key, height, updates, rng),
            (Purpose::Create { key: Some(key), .. }, Ok(updates)) => self.on_joined(*key, 0, updates, rng),
            (Purpose::Create { key: None, .. }, Ok(updates)) => {
                self.process_updates(updates, Source::Server, rng);
                self.phase = Phase::Idle;
                let (call, invite_link) = (self.identity, self.invite_link.clone());
                self.events.push_back(SessionEvent::Created { call, invite_link });
            }
            // Broadcasts, messages, removals: what the answer carries is pushed news.
            (_, Ok(updates)) => self.process_updates(updates, Source::Push, rng),
            (purpose, Err(error)) => self.on_failure(purpose, request, error),
        }
        self.after_batch();
    }

    /// A request of ours failed: the retry policy says what follows.
    fn on_failure(&mut self, purpose: Purpose, request: Request, error: ApiError) {
        let (goal, attempt) = (purpose.goal(), purpose.attempt());
        let next = attempt.saturating_add(1);
        match policy::retry(goal, attempt, &error, &self.config) {
            Verdict::Exit(exit) => self.exit(exit),
            Verdict::Retry { after_ms, refetch } => {
                let at = self.now.saturating_add(after_ms);
                if refetch {
                    self.schedule_poll(SubChain::Blocks, self.now);
                }
                let action = match purpose {
                    Purpose::JoinTip { .. } | Purpose::Join { .. } => {
                        Action::JoinAttempt { attempt: next, create: false }
                    }
                    Purpose::Create { .. } => Action::JoinAttempt { attempt: next, create: true },
                    Purpose::Removal { .. } | Purpose::Prune { .. } => {
                        let kick = matches!(purpose, Purpose::Removal { .. });
                        let Request::DeleteParticipants { user_ids, .. } = request else { return };
                        Action::Remove { user_ids, kick, attempt: next }
                    }
                    Purpose::Broadcast { .. } => {
                        Action::Resend { request, purpose: Purpose::Broadcast { attempt: next } }
                    }
                    Purpose::Message { .. } => Action::Resend { request, purpose: Purpose::Message { attempt: next } },
                    Purpose::Poll { .. } | Purpose::Rekey | Purpose::Leave { .. } | Purpose::Lookup { .. } => return,
                };
                self.outbox.schedule(at, action);
            }
            Verdict::GiveUp(give_up) => match purpose {
                Purpose::JoinTip { .. } | Purpose::Join { .. } | Purpose::Create { .. } => {
                    self.exit(Exit::JoinFailed(match give_up {
                        GiveUp::Error(e) => JoinFailure::Api(e),
                        GiveUp::FloodTooLong { seconds } => JoinFailure::FloodWait { seconds },
                        GiveUp::Exhausted { attempts } => JoinFailure::RetriesExhausted { attempts },
                    }))
                }
                Purpose::Poll { .. } | Purpose::Leave { .. } => {}
                Purpose::Lookup { id } => self.on_lookup(id, Err(error)),
                Purpose::Removal { .. }
                | Purpose::Prune { .. }
                | Purpose::Rekey
                | Purpose::Broadcast { .. }
                | Purpose::Message { .. } => {
                    let error = match give_up {
                        GiveUp::Error(e) => e,
                        GiveUp::FloodTooLong { seconds } => ApiError::FloodWait { seconds },
                        GiveUp::Exhausted { .. } => error,
                    };
                    self.send_failed(request.kind(), SendFailure::Api(error));
                }
            },
        }
    }
}
