//! The simulated network: requests, responses and pushes in flight, their delays, losses,
//! duplicates and reordering, delivery to the server and to the members, and the virtual clock.

use rand_core::RngCore;

use crate::api::{ApiError, Request, Response, Update};
use crate::session::Session;

use super::world::{Message, World};
use super::Failure;

/// Most timer firings the clock makes at one instant before it calls the sessions' timers a loop.
const MAX_TIMER_FIRINGS_PER_INSTANT: u32 = 10_000;

impl World {
    pub(super) fn delay(&mut self) -> u64 {
        let max = self.faults.max_delay_ms;
        1 + if max == 0 { 0 } else { self.rng.next_u64() % max }
    }

    pub(super) fn send(&mut self, message: Message) {
        let at = self.now + self.delay();
        self.sequence += 1;
        self.network.insert((at, self.sequence), message);
    }

    /// Delivers everything due within the next `ms` and fires timers.
    pub(super) fn advance(&mut self, ms: u64) -> Result<(), Failure> {
        let end = self.now + ms;
        // Timer firings at one instant: a session whose timer stays due after it fired would
        // spin here for ever (no request leaves, so no rate bound sees it).
        let (mut instant, mut firings) = (self.now, 0u32);
        loop {
            let next_message = self.network.keys().next().map(|(t, _)| *t).filter(|t| *t <= end);
            // An offline member's timers wait until it is back.
            let next_timer = (0..self.members.len())
                .filter_map(|i| Some(self.timer(i)?.max(self.members[i].offline_until)))
                .filter(|t| *t <= end)
                .min();
            let next = match (next_message, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            self.now = self.now.max(next);
            if next_message == Some(next) {
                if let Some((_, message)) = self.network.pop_first() {
                    self.deliver(message)?;
                }
            } else {
                if self.now != instant {
                    (instant, firings) = (self.now, 0);
                }
                firings += 1;
                if firings > MAX_TIMER_FIRINGS_PER_INSTANT {
                    let due: Vec<usize> =
                        (0..self.members.len()).filter(|&i| self.timer(i).is_some_and(|t| t <= instant)).collect();
                    let due: Vec<String> = due
                        .into_iter()
                        .map(|i| {
                            let s = self.members[i].session.as_ref();
                            format!(
                                "user {} ({:?}, timer {:?}, {:?})",
                                self.members[i].user_id,
                                s.map(crate::session::Session::state),
                                self.timers[i],
                                s.map(crate::session::Session::footprint)
                            )
                        })
                        .collect();
                    return Err(self.fail(format!(
                        "timer loop: {MAX_TIMER_FIRINGS_PER_INSTANT} timer firings at {instant} and a timer is still \
                         due then (a session whose `poll_timeout` stays due after `handle_timeout`): {due:?}"
                    )));
                }
                for i in 0..self.members.len() {
                    let now = self.now;
                    let online = self.members[i].offline_until <= now;
                    let due = self.timer(i).is_some_and(|t| t <= now);
                    if due && online {
                        self.touch(i);
                        if let Some(s) = self.members[i].session.as_mut() {
                            s.handle_timeout(now, &mut self.rng);
                        }
                        self.after_session(i)?;
                    }
                }
            }
        }
        self.now = end;
        Ok(())
    }

    pub(super) fn index(&self, user: i64) -> Option<usize> {
        self.members.iter().position(|m| m.user_id == user)
    }

    pub(super) fn deliver(&mut self, message: Message) -> Result<(), Failure> {
        match message {
            Message::ToServer { from, id, request, generation } => {
                let Some(i) = self.index(from) else { return Ok(()) };
                let offline = self.members[i].offline_until > self.now;
                // A request may fail before the server sees it, or after (the response is lost).
                let fail_before = offline || self.chance(self.faults.fail_request / 2);
                let (now, method) = (self.now, request.kind().method());
                if fail_before {
                    self.report.failed_requests += 1;
                    let response = Response::Error("TIMEOUT".into());
                    self.send(Message::Response { to: from, id, response, generation, at: now, method });
                    return Ok(());
                }
                // What the notices' invariants (issue 30 items 5 and 6) compare with.
                let removal = matches!(request, Request::DeleteParticipants { .. });
                let entries_before = if removal { self.entries() } else { Vec::new() };
                let date_before = self.server().participation(from).map(|p| p.date);
                let (response, pushes) = self.server.handle_at(from, &request, now);
                self.record_server();
                if let Request::DeleteParticipants { user_ids, kick, .. } = &request {
                    self.check_rejoiners_kept(i, from, id, &entries_before, user_ids, *kick)?;
                }
                self.note_entry(from, &request, date_before);
                match response {
                    None => {
                        // The server stays silent: this request is never answered.
                        self.report.silent_requests += 1;
                        if self.members[i].generation == generation {
                            if let Some(o) = self.members[i].outstanding.get_mut(&id) {
                                o.1 = Some(now);
                            }
                        }
                        self.note(format!("the server never answers user {from}'s request {id} ({method})"));
                    }
                    Some(mut response) => {
                        if let (Request::Join { .. }, Response::Error(e)) = (&request, &response) {
                            if *e == ApiError::ChainRace {
                                self.report.races_lost += 1;
                            }
                        }
                        if let Response::Error(e) = &response {
                            if matches!(e, ApiError::FloodWait { .. }) {
                                self.report.flood_waits += 1;
                            }
                        }
                        if self.chance(self.faults.fail_request / 2) {
                            self.report.failed_requests += 1;
                            response = Response::Error("TIMEOUT".into());
                        }
                        self.send(Message::Response { to: from, id, response, generation, at: now, method });
                    }
                }
                for (to, update) in pushes {
                    let Some(j) = self.index(to) else { continue };
                    let generation = self.members[j].generation;
                    if self.chance(self.faults.drop_push) {
                        self.report.dropped_pushes += 1;
                        continue;
                    }
                    if self.chance(self.faults.duplicate) {
                        self.send(Message::Push { to, update: update.clone(), generation });
                    }
                    self.send(Message::Push { to, update, generation });
                }
            }
            Message::Response { to, id, mut response, generation, at, method } => {
                let Some(i) = self.index(to) else { return Ok(()) };
                if self.members[i].generation != generation {
                    return Ok(());
                }
                let now = self.now;
                self.members[i].outstanding.remove(&id);
                if let Response::Error(ApiError::FloodWait { seconds }) = response {
                    let until = at + u64::from(seconds) * 1_000;
                    let entry = self.members[i].flood_until.entry(method).or_insert(0);
                    *entry = (*entry).max(until);
                    self.note(format!("user {to} is told FLOOD_WAIT_{seconds} for {method} (until {until})"));
                }
                // The real server writes a join response when it sends it: blocks and broadcasts
                // committed since the join are in it (tdlib applies them).
                let join = matches!(method, "phone.joinGroupCall" | "phone.createConferenceCall");
                if join && self.setup.is_real() {
                    response = self.server().refresh_join_response(response);
                }
                if let Response::Ok(updates) = &response {
                    self.note_told(i, updates);
                }
                if let Some(s) = self.members[i].session.as_mut() {
                    s.handle_response(id, response, now, &mut self.rng);
                }
                self.after_session(i)?;
            }
            Message::Push { to, update, generation } => {
                let Some(i) = self.index(to) else { return Ok(()) };
                if self.members[i].generation != generation || self.members[i].offline_until > self.now {
                    self.report.dropped_pushes += 1;
                    return Ok(());
                }
                let now = self.now;
                if let Update::Participants { participants } = &update {
                    // Who could know that a user left: the pruning invariant asks only them.
                    let incarnation = self.members[i].incarnation;
                    for p in participants.iter().filter(|p| p.left) {
                        self.told_left.entry(p.user_id).or_default().insert((i, incarnation));
                    }
                }
                self.note_told(i, std::slice::from_ref(&update));
                let late = self.late_notice_about_itself(i, &update);
                let before = self.members[i].session.as_ref().map(Session::state);
                if let Some(s) = self.members[i].session.as_mut() {
                    s.handle_update(update, now, &mut self.rng);
                }
                let after = self.members[i].session.as_ref().map(Session::state);
                self.check_late_notice(i, late, before, after)?;
                self.after_session(i)?;
            }
        }
        Ok(())
    }
}
