//! Flood waits (`FLOOD_WAIT_X`): waited out per request kind, or ending the join or the leave at once.

use crate::common::*;

/// FLOOD_WAIT_X: no request of that kind until the wait ends; a wait over the maximum ends the
/// join with a reason that carries X.
#[test]
fn flood_waits_are_waited_out_or_end_the_join() {
    let mut r = rng(30);
    let server = Server::existing();
    let mut s = Session::new(5, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    let mut server = server;
    s.handle_response(id, server.handle(5, &tip).0, 0, &mut r);
    let (id, join) = request(&mut s);
    assert!(matches!(join, Request::Join { .. }));
    s.handle_response(id, Response::Error("FLOOD_WAIT_30".into()), 0, &mut r);
    let mut now;
    let mut join_sent_at = None;
    while join_sent_at.is_none() {
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now, &mut r);
        for (id, req) in drain(&mut s) {
            match req {
                Request::Join { .. } => join_sent_at = Some(now),
                other => s.handle_response(id, server.handle(5, &other).0, now, &mut r),
            }
        }
    }
    assert!(join_sent_at.unwrap() >= 30_000, "no join during the wait: {join_sent_at:?}");
    let mut s = Session::new(5, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, _) = request(&mut s);
    s.handle_response(id, Response::Error("FLOOD_PREMIUM_WAIT_3600".into()), 0, &mut r);
    assert_eq!(s.state(), SessionState::Failed);
    assert_eq!(s.poll_event(), Some(SessionEvent::JoinFailed { reason: JoinFailure::FloodWait { seconds: 3600 } }));
}

/// A flood wait holds for its request kind whatever became of the operation that met it: a
/// re-key told FLOOD_WAIT_30 gives up, and the next re-key waits for the end of the wait.
#[test]
fn a_flood_wait_holds_for_its_kind() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(44);
    net.s(1).rekey(None, &mut r).unwrap();
    let (id, _) = request(net.s(1));
    net.s(1).handle_response(id, Response::Error("FLOOD_WAIT_30".into()), 1_000, &mut r);
    net.s(1).rekey(None, &mut r).unwrap();
    assert!(!drain(net.s(1)).iter().any(|(_, r)| matches!(r, Request::DeleteParticipants { .. })));
    net.s(1).handle_timeout(30_999, &mut r);
    assert!(!drain(net.s(1)).iter().any(|(_, r)| matches!(r, Request::DeleteParticipants { .. })));
    net.s(1).handle_timeout(31_000, &mut r);
    assert!(drain(net.s(1)).iter().any(|(_, r)| matches!(r, Request::DeleteParticipants { .. })));
}

/// Hostile server, flood wait longer than the maximum: after a join failed on it, a new `join()`
/// must not sit in Joining, silent, for the rest of the server's wait (a wait that never ends in
/// practice): it ends at once with the typed reason, as the first one did.
#[test]
fn a_join_inside_a_flood_wait_longer_than_the_maximum_ends_at_once() {
    let mut r = rng(2);
    let mut s = Session::new(3, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, _) = s.poll_request().unwrap();
    s.handle_response(id, Response::Ok(vec![chain(0, vec![], 0)]), 0, &mut r);
    let (id, _) = s.poll_request().unwrap();
    s.handle_response(id, Response::Error("FLOOD_WAIT_100000".into()), 0, &mut r);
    assert_eq!(s.state(), SessionState::Failed);
    events(&mut s);
    // The application tries again a minute later.
    s.join(60_000, &mut r).unwrap();
    let (id, _) = s.poll_request().unwrap();
    s.handle_response(id, Response::Ok(vec![chain(0, vec![], 0)]), 60_000, &mut r);
    let queued = drain(&mut s);
    let stuck = s.state() == SessionState::Joining && queued.is_empty();
    assert!(!stuck, "joining for {:?} ms more with nothing sent", s.poll_timeout().map(|t| t - 60_000));
    assert_eq!(s.state(), SessionState::Failed);
    let e = events(&mut s);
    assert!(
        e.iter().any(|e| matches!(e, SessionEvent::JoinFailed { reason: JoinFailure::FloodWait { seconds } } if *seconds > 86_000)),
        "{e:?}"
    );
}

/// Hostile server, flood wait on leaveGroupCall longer than the maximum: a later `leave()` must not
/// keep the session in Leaving (where `join()` is refused) for the rest of the wait, nor leave a
/// ghost member by never sending the leave: it is sent at once.
#[test]
fn a_leave_inside_a_flood_wait_longer_than_the_maximum_does_not_hang() {
    let mut r = rng(3);
    let (mut s, _) = joined_alone(4, 0, &mut r);
    s.leave(0);
    let (id, req) = s.poll_request().unwrap();
    assert_eq!(req, Request::Leave);
    s.handle_response(id, Response::Error("FLOOD_WAIT_100000".into()), 0, &mut r);
    assert_eq!(s.state(), SessionState::Left);
    // Rejoin, then leave again a minute later.
    let mut s2 = s;
    s2.join(60_000, &mut r).unwrap();
    let (id, _) = s2.poll_request().unwrap();
    s2.handle_response(id, Response::Ok(vec![chain(0, vec![], 0)]), 60_000, &mut r);
    let (id, req) = s2.poll_request().unwrap();
    let Request::Join { block, .. } = req else { panic!() };
    s2.handle_response(id, Response::Ok(vec![chain(0, vec![block.to_server_form()], 1)]), 60_000, &mut r);
    assert_eq!(s2.state(), SessionState::Joined);
    drain(&mut s2);
    s2.leave(61_000);
    let queued = drain(&mut s2);
    // The leave goes at once (no ghost member); any answer ends it.
    let (id, _) = queued.into_iter().find(|(_, q)| *q == Request::Leave).expect("the leave is sent, not deferred");
    s2.handle_response(id, Response::Error("FLOOD_WAIT_100000".into()), 61_000, &mut r);
    assert_eq!(s2.state(), SessionState::Left);
    // Whatever it does, it must be able to join again within the maximum wait.
    let later = 61_000 + 60_000 + 30_000;
    s2.handle_timeout(later, &mut r);
    for (id, _) in drain(&mut s2) {
        s2.handle_response(id, Response::Ok(vec![]), later, &mut r);
    }
    assert!(s2.join(later, &mut r).is_ok(), "state {:?}", s2.state());
}

/// Hostile server, `FLOOD_WAIT_0` on every request: a wait of zero must not turn the bounded
/// retries into a burst at one instant (every join attempt, every resend at once). Retries after
/// a flood wait keep at least the backoff.
#[test]
fn flood_waits_of_zero_do_not_burst() {
    let mut r = rng(16);
    let mut s = Session::new(17, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let mut sent: Vec<u64> = Vec::new();
    let mut now = 0;
    for _ in 0..100 {
        for (id, _) in drain(&mut s) {
            sent.push(now);
            s.handle_response(id, Response::Error("FLOOD_WAIT_0".into()), now, &mut r);
        }
        let Some(t) = s.poll_timeout() else { break };
        now = t.max(now);
        s.handle_timeout(now, &mut r);
    }
    assert_eq!(s.state(), SessionState::Failed);
    let at_once = sent.iter().filter(|t| **t == 0).count();
    assert!(at_once <= 2, "{at_once} requests at the first instant: {sent:?}");
    // A live call's message sends likewise.
    let (mut s, _) = joined_alone(18, 0, &mut r);
    s.send_message(r#"{"random_id":"5"}"#, 0, &mut r).unwrap();
    let mut sends = Vec::new();
    let mut now = 0;
    for _ in 0..100 {
        for (id, req) in drain(&mut s) {
            if matches!(req, Request::SendEncryptedMessage { .. }) {
                sends.push(now);
                s.handle_response(id, Response::Error("FLOOD_WAIT_0".into()), now, &mut r);
            }
        }
        let Some(t) = s.poll_timeout() else { break };
        if t > 60_000 {
            break;
        }
        now = t.max(now);
        s.handle_timeout(now, &mut r);
    }
    let at_once = sends.iter().filter(|t| **t == 0).count();
    assert!(at_once <= 2, "{at_once} sends at the first instant: {sends:?}");
}

/// Review (hostile server): messages waiting for the pace when another message is answered
/// `FLOOD_WAIT_X` with X beyond `max_flood_wait_s` were parked for the whole wait (27 hours
/// here; 68 years for `i32::MAX`), told nothing, and held the queue of unsent messages
/// (`queued_messages`) the whole time, although a message sent after the answer fails at once
/// ([`SessionEvent::SendFailed`]). Parked past the maximum, a request fails the same way.
#[test]
fn requests_that_would_wait_past_the_maximum_for_a_flood_wait_fail_and_are_told() {
    let mut r = rng(36);
    let (mut s, _) = joined_alone(6, 0, &mut r);
    for k in 0..30 {
        s.send_message(&format!(r#"{{"random_id":"{k}"}}"#), 0, &mut r).unwrap();
    }
    let sent = drain(&mut s);
    assert!(sent.iter().all(|(_, q)| matches!(q, Request::SendEncryptedMessage { .. })));
    assert!(sent.len() < 30, "the burst; the rest waits for the pace");
    s.handle_response(sent[0].0, Response::Error("FLOOD_WAIT_100000".into()), 0, &mut r);
    for (id, _) in &sent[1..] {
        s.handle_response(*id, Response::Ok(vec![]), 0, &mut r);
    }
    events(&mut s);
    let mut now = 0;
    while let Some(t) = s.poll_timeout().filter(|t| *t <= 120_000) {
        now = t.max(now + 1);
        s.handle_timeout(now, &mut r);
        assert!(drain(&mut s).iter().all(|(_, q)| !matches!(q, Request::SendEncryptedMessage { .. })));
    }
    let failed = events(&mut s)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                SessionEvent::SendFailed {
                    reason: confchain::session::SendFailure::Api(ApiError::FloodWait { .. }),
                    ..
                }
            )
        })
        .count();
    assert_eq!((failed, s.queued_messages()), (30 - sent.len(), 0), "every message not sent is told, none is held");
}
