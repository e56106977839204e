//! The outbox's pace and its bound on queued messages (issue 35, SPEC.md §15.2): whatever the
//! application queued while the server was silent leaves at `max_requests_per_second` after a
//! burst of at most `max_request_burst`, and a message beyond `max_queued_messages` is refused
//! with `OUTBOX_FULL`, never dropped silently.

use std::collections::VecDeque;

use confchain::server::Server;
use confchain::session::{Request, RequestId, RequestKind, Response, Session, SessionConfig, SessionEvent, Update};
use confchain::ErrorKind;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

const MESSAGE: &str = r#"{"_":"groupCallMessage","random_id":"1","message":{}}"#;

/// The `session` fuzz target's fixture: a conference of users 2 and 3 on the server model.
fn fuzz_world() -> Server {
    let mut rng = rng(7);
    let mut server = Server::new();
    let mut sessions = vec![Session::new(2, SessionConfig::default()).unwrap()];
    sessions.push(Session::new(3, SessionConfig::default()).unwrap());
    sessions[0].create(true, 0, &mut rng).unwrap();
    for round in 0..4 {
        if round == 1 {
            sessions[1].join(0, &mut rng).unwrap();
        }
        if round == 2 {
            let _ = sessions[0].rekey(None, &mut rng);
        }
        for _ in 0..20 {
            for i in 0..sessions.len() {
                let user = sessions[i].user_id();
                while let Some((id, request)) = sessions[i].poll_request() {
                    let (response, pushes) = server.handle(user, &request);
                    sessions[i].handle_response(id, response, 0, &mut rng);
                    for (to, update) in pushes {
                        if let Some(s) = sessions.iter_mut().find(|s| s.user_id() == to) {
                            s.handle_update(update, 0, &mut rng);
                        }
                    }
                }
            }
        }
    }
    server
}

/// The fuzz input `crash-b8a138306d08dc8088ed8f8339ed469a2a150baf` of the `session` target
/// (`cargo fuzz fmt`; fuzz/corpus/session holds it too), one token per op: `m<from>` a pushed
/// empty message, `r<pick>h` / `r<pick>e` an honest / empty answer to the request at `pick`
/// (modulo those waiting), `s<n>` n calls of `send_message`, `w<ms>` a wait, `x<user>k` a ban.
/// Its seed was 7762155560412624384. With the server mostly silent the application sends 109
/// messages over six virtual minutes; the honest answer at the end used to let every deferred
/// and retried message out in the same second (more than 100 requests).
const ISSUE_35_SCRIPT: &str = "m72 r255h r13h s2 w65315 s14 x37k r13e s4 w34695 s18 w34695 w34695 s25 w60803 s3 \
                               w47031 s6 w36743 w9095 s33 w60803 s3 w47031 s1 r0h";

/// Replays a script the way the fuzz target does, returning the times of every request (and
/// whether an application call made it) and what `send_message` returned.
fn replay(script: &str, seed: u64, config: SessionConfig) -> (Vec<(u64, bool)>, Vec<confchain::Result<()>>, Session) {
    let mut server = fuzz_world();
    let mut rng = rng(seed);
    let mut session = Session::new(1, config).unwrap();
    let mut now: u64 = 1_000;
    session.join(now, &mut rng).unwrap();
    let mut outstanding: VecDeque<(RequestId, Request)> = VecDeque::new();
    let mut sent = Vec::new();
    let mut results = Vec::new();
    let mut drain = |session: &mut Session, now: u64, by_application: bool, outstanding: &mut VecDeque<_>| {
        while let Some(request) = session.poll_request() {
            sent.push((now, by_application));
            if outstanding.len() == 64 {
                outstanding.pop_front();
            }
            outstanding.push_back(request);
        }
    };
    for token in script.split_whitespace() {
        let (op, arg) = token.split_at(1);
        let number = |s: &str| s.trim_end_matches(['h', 'e', 'k']).parse::<u64>().unwrap();
        let mut by_application = false;
        match op {
            "m" => {
                let update = Update::EncryptedMessage { from: (number(arg) % 4) as i64, encrypted_message: vec![] };
                session.handle_update(update, now, &mut rng);
            }
            "r" if !outstanding.is_empty() => {
                let i = number(arg) as usize % outstanding.len();
                let (id, request) = outstanding.remove(i).unwrap();
                if arg.ends_with('h') {
                    let (response, pushes) = server.handle(1, &request);
                    session.handle_response(id, response, now, &mut rng);
                    for (to, update) in pushes {
                        if to == 1 {
                            session.handle_update(update, now, &mut rng);
                        }
                    }
                } else {
                    session.handle_response(id, Response::Ok(Vec::new()), now, &mut rng);
                }
            }
            "r" => {}
            "s" => {
                by_application = true;
                for _ in 0..number(arg) {
                    results.push(session.send_message(MESSAGE, now, &mut rng));
                    drain(&mut session, now, true, &mut outstanding);
                }
            }
            "w" => {
                now += number(arg);
                for _ in 0..4 {
                    if session.poll_timeout().is_some_and(|t| t <= now) {
                        session.handle_timeout(now, &mut rng);
                    }
                }
            }
            "x" => {
                by_application = true;
                let _ = session.remove(&[(number(arg) % 5) as i64], arg.ends_with('k'), now, &mut rng);
            }
            other => panic!("unknown op {other}"),
        }
        drain(&mut session, now, by_application, &mut outstanding);
        while session.poll_event().is_some() {}
    }
    (sent, results, session)
}

/// The most requests within one second (`t - 1000 < u <= t`) among `times`.
fn most_in_one_second(times: &[u64]) -> usize {
    times.iter().map(|t| times.iter().filter(|u| **u <= *t && u.saturating_add(1_000) > *t).count()).max().unwrap_or(0)
}

#[test]
fn the_burst_of_issue_35_leaves_at_the_pace() {
    let config = SessionConfig::default();
    let bound = (config.max_request_burst + config.max_requests_per_second) as usize;
    let (sent, results, session) = replay(ISSUE_35_SCRIPT, 7_762_155_560_412_624_384, config.clone());
    assert_eq!(results.len(), 109);
    // The fuzz target's invariant (requests the session sent on its own, at most 100 a second) ...
    let own: Vec<u64> = sent.iter().filter(|(_, app)| !app).map(|(t, _)| *t).collect();
    assert!(most_in_one_second(&own) <= 100, "{} of its own in one second", most_in_one_second(&own));
    // ... and the pace itself: every request, the application's too, within burst + rate.
    let all: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
    assert!(most_in_one_second(&all) <= bound, "{} requests in one second", most_in_one_second(&all));
    // The server was silent: messages piled up to the bound, and the rest were refused with a
    // typed error, not dropped.
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.kind(), ErrorKind::OutboxFull, "{e}");
            assert_eq!(e.kind().name(), "OUTBOX_FULL");
        }
    }
    assert!(results.iter().any(Result::is_err), "the outbox filled up");
    assert!(session.queued_messages() <= config.max_queued_messages);
}

#[test]
fn the_same_script_with_a_generous_outbox_is_still_paced() {
    let config = SessionConfig { max_queued_messages: 4_096, ..SessionConfig::default() };
    let (sent, results, _) = replay(ISSUE_35_SCRIPT, 7_762_155_560_412_624_384, config);
    assert!(results.iter().all(Result::is_ok), "nothing refused below the bound");
    let all: Vec<u64> = sent.iter().map(|(t, _)| *t).collect();
    assert!(most_in_one_second(&all) <= 30, "{} requests in one second", most_in_one_second(&all));
}

/// A member of a fresh conference (user 1 creates, joins and settles at time 0).
fn joined(config: SessionConfig) -> (Server, Session, ChaCha20Rng) {
    let mut rng = rng(1);
    let mut server = Server::new();
    let mut s = Session::new(1, config).unwrap();
    s.create(true, 0, &mut rng).unwrap();
    for _ in 0..10 {
        while let Some((id, request)) = s.poll_request() {
            let (response, pushes) = server.handle(1, &request);
            s.handle_response(id, response, 0, &mut rng);
            for (_, update) in pushes {
                s.handle_update(update, 0, &mut rng);
            }
        }
    }
    assert!(s.call().is_some());
    while s.poll_event().is_some() {}
    (server, s, rng)
}

#[test]
fn a_full_outbox_refuses_messages_until_some_are_delivered() {
    let config = SessionConfig { max_queued_messages: 5, ..SessionConfig::default() };
    let (mut server, mut s, mut rng) = joined(config);
    for _ in 0..5 {
        s.send_message(MESSAGE, 10, &mut rng).unwrap();
    }
    let err = s.send_message(MESSAGE, 10, &mut rng).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutboxFull);
    assert_eq!(s.queued_messages(), 5);
    // One is delivered: there is room for one more.
    let (id, request) = std::iter::from_fn(|| s.poll_request())
        .find(|(_, r)| matches!(r, Request::SendEncryptedMessage { .. }))
        .unwrap();
    let (response, _) = server.handle(1, &request);
    s.handle_response(id, response, 20, &mut rng);
    assert_eq!(s.queued_messages(), 4);
    s.send_message(MESSAGE, 20, &mut rng).unwrap();
    assert_eq!(s.send_message(MESSAGE, 20, &mut rng).unwrap_err().kind(), ErrorKind::OutboxFull);
}

#[test]
fn messages_waiting_for_a_retry_count_and_are_given_up_loudly() {
    let config = SessionConfig { max_queued_messages: 3, max_send_attempts: 2, ..SessionConfig::default() };
    let (_, mut s, mut rng) = joined(config);
    for _ in 0..3 {
        s.send_message(MESSAGE, 10, &mut rng).unwrap();
    }
    let ids: Vec<RequestId> = std::iter::from_fn(|| s.poll_request()).map(|(id, _)| id).collect();
    for id in ids {
        s.handle_response(id, Response::Error("INTERNAL_SERVER_ERROR".into()), 10, &mut rng);
    }
    // Waiting for their retry: still held, still counted.
    assert_eq!(s.queued_messages(), 3);
    assert_eq!(s.send_message(MESSAGE, 10, &mut rng).unwrap_err().kind(), ErrorKind::OutboxFull);
    // The retries fail too: each is given up with an event, and the outbox empties.
    let mut now = 10;
    for _ in 0..20 {
        now += 1_000;
        s.handle_timeout(now, &mut rng);
        let ids: Vec<RequestId> = std::iter::from_fn(|| s.poll_request()).map(|(id, _)| id).collect();
        for id in ids {
            s.handle_response(id, Response::Error("INTERNAL_SERVER_ERROR".into()), now, &mut rng);
        }
    }
    let failed = std::iter::from_fn(|| s.poll_event())
        .filter(|e| matches!(e, SessionEvent::SendFailed { kind: RequestKind::SendEncryptedMessage, .. }))
        .count();
    assert_eq!(failed, 3);
    assert_eq!(s.queued_messages(), 0);
    s.send_message(MESSAGE, now, &mut rng).unwrap();
}

#[test]
fn requests_beyond_the_burst_wait_for_poll_timeout() {
    let config = SessionConfig { max_queued_messages: 100, ..SessionConfig::default() };
    let (burst, per_second) = (config.max_request_burst as usize, config.max_requests_per_second as u64);
    let (_, mut s, mut rng) = joined(config);
    // Polls fire at 60 s (the next ones at 70 s); at 65 s the bucket is full again.
    s.handle_timeout(60_000, &mut rng);
    while s.poll_request().is_some() {}
    let now = 65_000;
    for _ in 0..50 {
        s.send_message(MESSAGE, now, &mut rng).unwrap();
    }
    let first = std::iter::from_fn(|| s.poll_request()).count();
    assert_eq!(first, burst, "a burst at once");
    assert_eq!(s.footprint().queued_requests, 50 - burst);
    // The rest at the pace, each when poll_timeout says.
    let mut released = Vec::new();
    let mut t = now;
    while released.len() < 50 - burst {
        let next = s.poll_timeout().unwrap();
        assert!(next > t && next <= t + 1_000 / per_second, "{next} after {t}");
        t = next;
        s.handle_timeout(t, &mut rng);
        released.extend(std::iter::from_fn(|| s.poll_request()).map(|_| t));
    }
    assert_eq!(released.last().copied(), Some(now + (50 - burst) as u64 * (1_000 / per_second)));
}

#[test]
fn the_deadline_starts_when_a_request_leaves() {
    let config = SessionConfig { max_queued_messages: 100, request_timeout_ms: 1_000, ..SessionConfig::default() };
    let (_, mut s, mut rng) = joined(config);
    s.handle_timeout(60_000, &mut rng);
    while s.poll_request().is_some() {}
    for _ in 0..30 {
        s.send_message(MESSAGE, 65_000, &mut rng).unwrap();
    }
    while s.poll_request().is_some() {}
    // The last one leaves at 66,000 ms; its deadline is 67,000 ms, not 66,000.
    let mut now = 65_000;
    let mut last = None;
    while now < 66_000 {
        now = s.poll_timeout().unwrap().min(66_000);
        s.handle_timeout(now, &mut rng);
        if let Some((id, _)) = std::iter::from_fn(|| s.poll_request()).last() {
            last = Some((id, now));
        }
    }
    let (id, left_at) = last.unwrap();
    assert_eq!(left_at, 66_000);
    s.handle_timeout(66_500, &mut rng);
    assert!(!std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, SessionEvent::SendFailed { .. })));
    // Still in flight: a response is taken.
    let before = s.requests_in_flight();
    s.handle_response(id, Response::Ok(Vec::new()), 66_600, &mut rng);
    assert_eq!(s.requests_in_flight(), before - 1);
}

#[test]
fn a_leave_does_not_wait_for_the_pace() {
    let config = SessionConfig { max_queued_messages: 100, ..SessionConfig::default() };
    let (_, mut s, mut rng) = joined(config);
    for _ in 0..60 {
        s.send_message(MESSAGE, 60_000, &mut rng).unwrap();
    }
    while s.poll_request().is_some() {}
    s.leave(60_000);
    assert!(matches!(s.poll_request(), Some((_, Request::Leave))));
    // What waited for the pace belonged to the call: gone with it.
    assert_eq!(s.footprint().queued_requests, 0);
    assert_eq!(s.queued_messages(), 0);
}

#[test]
fn the_pace_and_the_outbox_are_validated() {
    for config in [
        SessionConfig { max_requests_per_second: 0, ..SessionConfig::default() },
        SessionConfig { max_requests_per_second: 51, ..SessionConfig::default() },
        SessionConfig { max_request_burst: 0, ..SessionConfig::default() },
        SessionConfig { max_request_burst: 51, ..SessionConfig::default() },
        SessionConfig { max_queued_messages: 0, ..SessionConfig::default() },
        SessionConfig { max_queued_messages: 4_097, ..SessionConfig::default() },
    ] {
        let err = Session::new(1, config).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
