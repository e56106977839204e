//! Outcomes of requests: the response (or deadline) of each operation, parsed once into
//! [`ApiError`], and what it means for the join, the live call or the send that made it.

use super::*;

impl Session {
    pub(super) fn handle_outcome(
        &mut self,
        _id: RequestId,
        f: InFlight,
        response: Response,
        rng: &mut impl CryptoRngCore,
    ) {
        if f.generation != self.generation {
            // A join the server accepted after we left: leave again, so no ghost member stays.
            let ghost = matches!(f.op, Op::Join { .. })
                && matches!(response, Response::Ok(_))
                && matches!(self.phase, Phase::Leaving | Phase::Left);
            if ghost {
                self.send(Request::Leave, Op::Leave { then_left: false });
            }
            return;
        }
        let now = self.now;
        match (f.op, response) {
            (Op::JoinTip { attempt }, Response::Ok(updates)) => self.on_join_tip(attempt, updates, rng),
            (Op::Join { key, height, .. }, Response::Ok(updates)) => self.on_joined(*key, height, updates, rng),
            (Op::JoinTip { attempt }, Response::Error(e)) => {
                self.on_join_error(attempt, false, RequestKind::GetChainBlocks, e)
            }
            (Op::Join { attempt, create, .. }, Response::Error(e)) => {
                let kind = if create { RequestKind::CreateConference } else { RequestKind::Join };
                self.on_join_error(attempt, create, kind, e)
            }
            (Op::CreateOnly, Response::Ok(updates)) => {
                self.process_updates(updates, Source::Server, rng);
                self.phase = Phase::Idle;
                let (call, invite_link) = (self.identity, self.invite_link.clone());
                self.events.push_back(SessionEvent::Created { call, invite_link });
            }
            (Op::CreateOnly, Response::Error(e)) => self.fail_join(JoinFailure::Api(e)),
            (Op::Poll { sub }, response) => self.on_poll(sub, response, rng),
            (Op::Broadcast { block, attempt }, Response::Ok(updates)) => {
                let _ = (block, attempt);
                self.process_updates(updates, Source::Push, rng);
            }
            (Op::Broadcast { block, attempt }, Response::Error(e)) => {
                let request = Request::SendBroadcast { block: block.clone() };
                self.on_send_error(request, Op::Broadcast { block, attempt: attempt.saturating_add(1) }, attempt, e);
            }
            (Op::Message { .. }, Response::Ok(updates)) => self.process_updates(updates, Source::Push, rng),
            (Op::Message { encrypted, attempt }, Response::Error(e)) => {
                let request = Request::SendEncryptedMessage { encrypted_message: encrypted.clone() };
                let op = Op::Message { encrypted, attempt: attempt.saturating_add(1) };
                self.on_send_error(request, op, attempt, e);
            }
            (Op::Delete { .. }, Response::Ok(updates)) => self.process_updates(updates, Source::Push, rng),
            (Op::Delete { user_ids, kick, attempt, rebuild }, Response::Error(e)) => {
                let error = e;
                if self.on_fatal(&error) {
                    return;
                }
                let next = attempt.saturating_add(1);
                let retry = rebuild && next < self.config.max_attempts;
                match error {
                    ApiError::FloodWait { seconds } if retry => match self.flood_ms(seconds) {
                        Some(ms) => {
                            self.ops.set_flood(RequestKind::DeleteParticipants, now.saturating_add(ms));
                            let action = Action::Remove { user_ids, kick, attempt: next };
                            let at = now.saturating_add(ms.max(self.backoff(attempt)));
                            self.ops.schedule(at, self.generation, action);
                        }
                        None => self.send_failed(RequestKind::DeleteParticipants, SendFailure::Api(error)),
                    },
                    ApiError::ChainRace | ApiError::Transient(_) if retry => {
                        // Someone else's block won: fetch it, rebuild once it is applied.
                        self.schedule_poll(SubChain::Blocks, now);
                        let at = now.saturating_add(self.backoff(attempt));
                        self.ops.schedule(at, self.generation, Action::Remove { user_ids, kick, attempt: next });
                    }
                    error => self.send_failed(RequestKind::DeleteParticipants, SendFailure::Api(error)),
                }
            }
            (Op::Leave { then_left }, _) => {
                if then_left && matches!(self.phase, Phase::Leaving) {
                    self.phase = Phase::Left;
                    self.events.push_back(SessionEvent::Left);
                }
            }
        }
        self.after_batch();
    }

    /// Errors that take us out of the call, from any request of the live call. Whether it was one.
    pub(super) fn on_fatal(&mut self, error: &ApiError) -> bool {
        match error {
            ApiError::Forbidden => self.removed(None),
            ApiError::JoinMissing => self.end(EndReason::JoinMissing),
            ApiError::CallInvalid => self.end(EndReason::CallInvalid),
            _ => return false,
        }
        true
    }

    /// A broadcast or message send failed: retry (bounded) after a backoff or the flood wait.
    pub(super) fn on_send_error(&mut self, request: Request, op: Op, attempt: u32, error: ApiError) {
        if self.on_fatal(&error) {
            return;
        }
        let kind = request.kind();
        // Every member needs every commit and reveal of the round: a broadcast is resent (with
        // backoff up to `max_backoff_ms`) until the round completes or the height moves, however
        // long the outage (issue 30 item 4; duplicates are harmless: ALREADY_APPLIED). Other sends
        // give up after `max_send_attempts`.
        let persistent = matches!(op, Op::Broadcast { .. });
        let can_retry = persistent || attempt.saturating_add(1) < self.config.max_send_attempts;
        let now = self.now;
        match error {
            ApiError::FloodWait { seconds } if can_retry => match self.flood_ms(seconds) {
                Some(ms) => {
                    self.ops.set_flood(kind, now.saturating_add(ms));
                    // Never sooner than the backoff: a wait of 0 s must not resend at once.
                    let at = now.saturating_add(ms.max(self.backoff(attempt)));
                    self.ops.schedule(at, self.generation, Action::Resend { request, op });
                }
                None => self.send_failed(kind, SendFailure::Api(error)),
            },
            ApiError::Transient(_) if can_retry => {
                let at = now.saturating_add(self.backoff(attempt));
                self.ops.schedule(at, self.generation, Action::Resend { request, op });
            }
            error => self.send_failed(kind, SendFailure::Api(error)),
        }
    }
}
