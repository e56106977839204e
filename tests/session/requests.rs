//! Requests in general: transient errors, deadlines and late responses, the configuration's bounds.

use crate::common::*;

#[test]
fn transient_errors_are_retried() {
    let mut net = conference(&[1, 2]);
    let (now, mut r) = (net.now, rng(14));
    net.s(1).send_message(r#"{"random_id":"1"}"#, now, &mut r).unwrap();
    let (id, req) = request(net.s(1));
    net.s(1).handle_response(id, Response::Error("FLOOD_WAIT_3".into()), now, &mut r);
    let at = net.s(1).poll_timeout().unwrap();
    net.s(1).handle_timeout(at, &mut r);
    let (_, again) = request(net.s(1));
    assert_eq!(again, req, "the same encrypted message is sent again");
}

/// Issue 23 item 5: every request has a deadline; past it the session acts as on TIMEOUT, and a
/// late response is ignored. `poll_timeout` includes the deadlines.
#[test]
fn requests_have_deadlines_and_late_responses_are_ignored() {
    let mut r = rng(23);
    let config = SessionConfig::default();
    let mut s = Session::new(5, config.clone()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, _) = request(&mut s);
    assert_eq!(s.poll_timeout(), Some(config.request_timeout_ms));
    s.handle_timeout(config.request_timeout_ms, &mut r);
    assert_eq!(s.requests_in_flight(), 0);
    // The late answer does nothing; the retry comes after the backoff.
    s.handle_response(id, Response::Ok(vec![blocks_update(0, &[], 0)]), config.request_timeout_ms, &mut r);
    assert!(s.poll_request().is_none());
    let at = s.poll_timeout().unwrap();
    s.handle_timeout(at, &mut r);
    assert!(matches!(request(&mut s).1, Request::GetChainBlocks { offset: -1, .. }));
    // A poll that is never answered does not stop the polling.
    let mut net = conference(&[1, 2]);
    let t = net.s(2).poll_timeout().unwrap();
    net.s(2).handle_timeout(t, &mut r);
    let polls = drain(net.s(2));
    assert!(!polls.is_empty());
    net.now = t + config.request_timeout_ms + config.poll_interval_ms;
    net.timeout(2);
    let t = net.s(2).poll_timeout().unwrap();
    net.now = t;
    net.timeout(2);
    assert!(drain(net.s(2)).iter().any(|(_, r)| matches!(r, Request::GetChainBlocks { .. })), "polls again");
}

/// Issue 23 item 6: out-of-range configuration is an error, not a hot loop.
#[test]
fn the_configuration_is_validated() {
    let bad = [
        SessionConfig { poll_limit: 0, ..SessionConfig::default() },
        SessionConfig { poll_interval_ms: 0, ..SessionConfig::default() },
        SessionConfig { max_attempts: 0, ..SessionConfig::default() },
        SessionConfig { backoff_ms: 0, ..SessionConfig::default() },
        SessionConfig { max_backoff_ms: 1, ..SessionConfig::default() },
        SessionConfig { request_timeout_ms: 0, ..SessionConfig::default() },
        SessionConfig { max_buffered_updates: 0, ..SessionConfig::default() },
    ];
    for config in bad {
        let e = Session::new(1, config.clone()).unwrap_err();
        assert_eq!(e.kind(), confchain::ErrorKind::InvalidInput, "{config:?}");
    }
    assert!(Session::new(1, SessionConfig::default()).is_ok());
}
