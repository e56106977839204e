//! Leaving and ending: `leave()`, removals, the end of the call, and joins accepted after the session moved on.

use crate::common::*;

#[test]
fn leaving() {
    let mut net = conference(&[1, 2]);
    net.s(2).leave(0);
    net.pump();
    assert_eq!(net.s(2).state(), SessionState::Left);
    assert!(net.events(2).contains(&SessionEvent::Left));
    assert!(net.s(2).call().is_none());
}

#[test]
fn removal_then_rejoin_with_a_new_key() {
    let mut net = conference(&[1, 2, 3]);
    let (now, mut r) = (net.now, rng(11));
    net.s(1).remove(&[2], true, now, &mut r).unwrap();
    let (id, req) = request(net.s(1));
    let Request::DeleteParticipants { kick: true, ref user_ids, .. } = req else { panic!("{req:?}") };
    assert_eq!(user_ids, &vec![2]);
    let (resp, pushes) = net.server.handle(1, &req);
    net.s(1).handle_response(id, resp, now, &mut r);
    for (to, u) in pushes {
        net.s(to).handle_update(u, now, &mut r);
    }
    net.pump();
    // Bob was not pushed the block (no longer a member): his next poll is refused.
    net.advance_to(now + 10_000);
    assert_eq!(net.s(2).state(), SessionState::Removed);
    assert!(net.events(2).iter().any(|e| matches!(e, SessionEvent::Removed { .. })));
    let old_key = net.s(2).call().unwrap().public_key();
    net.join(2);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    assert_ne!(net.s(2).call().unwrap().public_key(), old_key);
    net.advance_to(net.now + 10_000);
    assert_eq!(net.height(2), net.server.height());
    assert_eq!(net.s(2).call().unwrap().key_fingerprint(), net.s(3).call().unwrap().key_fingerprint());
    // Removing someone already gone sends nothing (unless it is a ban).
    let now = net.now;
    net.s(1).remove(&[42], false, now, &mut r).unwrap();
    assert!(net.s(1).poll_request().is_none());
}

#[test]
fn a_block_that_removes_us_is_reported() {
    let mut net = conference(&[1, 2]);
    let (now, mut r) = (net.now, rng(12));
    // The block removing bob reaches him (a push sent before the server dropped him).
    let block = net.s(1).call().unwrap().build_remove(&[2], &mut r).unwrap();
    let server_form = block.to_server_form();
    net.s(2).handle_update(blocks_update(0, &[server_form], 3), now, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Removed);
    assert!(net.events(2).contains(&SessionEvent::Removed { height: Some(2) }));
    assert!(net.s(2).call_mut().unwrap().encrypt(0, b"x", 0, now, &mut r).is_err());
}

/// Issue 23 item 2: GROUPCALL_FORBIDDEN stops encryption (the call, its media handles, queued
/// messages) and leaves the media call.
#[test]
fn forbidden_closes_the_call_and_its_media_handles() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(21);
    let encryptor = net.s(2).call().unwrap().media_encryptor(&mut r);
    let mut out = Vec::new();
    encryptor.encrypt_into(0, b"frame", 0, 0, &mut out).unwrap();
    net.s(2).send_message(r#"{"random_id":"5"}"#, 0, &mut r).unwrap();
    let (id, _) = request(net.s(2));
    net.s(2).handle_response(id, Response::Error("GROUPCALL_FORBIDDEN".into()), 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Removed);
    assert!(net.events(2).contains(&SessionEvent::Removed { height: None }));
    let kind = encryptor.encrypt_into(0, b"frame", 0, 0, &mut out).unwrap_err().kind();
    assert_eq!(kind, confchain::ErrorKind::CallClosed);
    assert!(net.s(2).call_mut().unwrap().encrypt(0, b"x", 0, 0, &mut r).is_err());
    assert!(net.s(2).send_message(r#"{"random_id":"6"}"#, 0, &mut r).is_err());
    let sent: Vec<_> = drain(net.s(2)).into_iter().map(|(_, r)| r).collect();
    assert_eq!(sent, vec![Request::Leave], "leaveGroupCall, and nothing else");
}

/// Issue 23 item 2: a media encryptor taken before leaving refuses after it (and after the call
/// is dropped); a removal by a block closes the call and leaves the media call.
#[test]
fn leaving_removal_and_dropping_close_every_handle() {
    let mut net = conference(&[1, 2, 3]);
    let mut r = rng(22);
    let encryptor = net.s(2).call().unwrap().media_encryptor(&mut r);
    net.s(2).leave(0);
    let mut out = Vec::new();
    let err = encryptor.encrypt_into(0, b"an hour later", 0, 3_600_000, &mut out).unwrap_err();
    assert_eq!(err.kind(), confchain::ErrorKind::CallClosed);
    assert_eq!(err.kind().name(), "CALL_CLOSED");
    // Removal by a block.
    let decryptor = net.s(3).call().unwrap().media_decryptor();
    let block = net.s(1).call().unwrap().build_remove(&[3], &mut r).unwrap().to_server_form();
    let h = net.height(3);
    net.s(3).handle_update(blocks_update(0, &[block], h + 2), 0, &mut r);
    assert_eq!(net.s(3).state(), SessionState::Removed);
    assert!(decryptor.is_closed());
    assert!(drain(net.s(3)).iter().any(|(_, r)| *r == Request::Leave), "removal leaves the media call");
    // A dropped call closes its handles.
    let i = net.index(1);
    let encryptor = net.sessions[i].call().unwrap().media_encryptor(&mut r);
    net.sessions.remove(i);
    assert_eq!(encryptor.encrypt_into(0, b"x", 0, 0, &mut out).unwrap_err().kind(), confchain::ErrorKind::CallClosed);
}

/// Issue 23 item 8: a join retry scheduled before `leave()` dies with its attempt: it never fires
/// inside the next join.
#[test]
fn a_retry_scheduled_before_leave_does_not_fire_in_the_next_join() {
    let mut net = conference(&[1]);
    let mut r = rng(26);
    let mut s = Session::new(2, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, net.server.handle(2, &tip).0, 0, &mut r);
    let (id, _) = request(&mut s);
    s.handle_response(id, Response::Error("CONF_WRITE_CHAIN_INVALID".into()), 0, &mut r);
    let retry_at = s.poll_timeout().unwrap();
    s.leave(0);
    for (id, _) in drain(&mut s) {
        s.handle_response(id, Response::Ok(vec![]), 0, &mut r);
    }
    s.join(1, &mut r).unwrap();
    let first = drain(&mut s);
    assert_eq!(first.len(), 1, "one tip fetch");
    s.handle_timeout(retry_at + 1, &mut r);
    assert!(s.poll_request().is_none(), "the old attempt's retry is gone");
    let _ = net.events(1);
}

/// JOIN_MISSING, GROUPCALL_INVALID and a discarded call end the call: a distinct state and event,
/// encryption stops.
#[test]
fn the_end_of_the_call_is_distinct_from_removal_and_leaving() {
    for (error, reason) in [
        ("GROUPCALL_JOIN_MISSING", confchain::session::EndReason::JoinMissing),
        ("GROUPCALL_INVALID", confchain::session::EndReason::CallInvalid),
    ] {
        let mut net = conference(&[1, 2]);
        let mut r = rng(31);
        let t = net.s(2).poll_timeout().unwrap();
        net.s(2).handle_timeout(t, &mut r);
        let (id, _) = blocks_poll(net.s(2));
        net.s(2).handle_response(id, Response::Error(error.into()), t, &mut r);
        assert_eq!(net.s(2).state(), SessionState::Ended);
        assert!(net.events(2).contains(&SessionEvent::Ended { reason }));
        assert!(net.s(2).call().unwrap().is_closed());
    }
    let mut net = conference(&[1, 2]);
    let mut r = rng(32);
    let call = confchain::session::CallIdentity { id: 77, access_hash: -3 };
    net.s(2).handle_update(Update::GroupCall { call, discarded: true, invite_link: None }, 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Ended);
    let events = net.events(2);
    assert!(events.contains(&SessionEvent::Ended { reason: confchain::session::EndReason::Discarded }));
    assert_eq!(net.s(2).call_identity(), Some(call));
    assert!(net.s(2).call().unwrap().is_closed());
}

/// Leave while a join is in flight: when the server accepts the join after `leave()`, the session
/// leaves again, so no ghost member stays.
#[test]
fn a_join_accepted_after_leave_is_left_again() {
    let mut net = conference(&[1]);
    let mut r = rng(34);
    let mut s = Session::new(2, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, net.server.handle(2, &tip).0, 0, &mut r);
    let (join_id, join) = request(&mut s);
    s.leave(0);
    let (leave_id, leave) = request(&mut s);
    assert_eq!(leave, Request::Leave);
    // The transport reorders: the leave is processed first, then the join.
    let (left, _) = net.server.handle(2, &leave);
    let (joined, _) = net.server.handle(2, &join);
    s.handle_response(leave_id, left, 0, &mut r);
    assert_eq!(s.state(), SessionState::Left);
    s.handle_response(join_id, joined, 0, &mut r);
    let (_, again) = request(&mut s);
    assert_eq!(again, Request::Leave, "the ghost is removed");
    net.server.handle(2, &again);
    assert!(!net.server.members().any(|u| u == 2));
    assert_eq!(s.state(), SessionState::Left);
}

/// A last-block-only answer whose block no longer lists our key: we were removed (a lost push).
#[test]
fn a_last_block_without_us_means_removed() {
    let mut net = conference(&[1, 2, 3]);
    let mut r = rng(42);
    silent_rekey(&mut net, 1);
    let block = net.s(1).call().unwrap().build_remove(&[2], &mut r).unwrap();
    let req = Request::DeleteParticipants { user_ids: vec![2], block, kick: false };
    let (resp, _lost) = net.server.handle(1, &req);
    net.respond(1, 0, resp);
    let t = net.s(2).poll_timeout().unwrap();
    net.s(2).handle_timeout(t, &mut r);
    let (id, _) = blocks_poll(net.s(2));
    let all = net.server.blocks();
    let last = blocks_update(0, &all[all.len() - 1..], all.len() as i32);
    net.s(2).handle_response(id, Response::Ok(vec![last]), t, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Removed);
    assert!(net.s(2).call().unwrap().is_closed());
}

/// `updateGroupCallParticipants` saying that we left: the server dropped us from the media call.
#[test]
fn told_that_we_left_ends_the_call() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(43);
    let me = confchain::session::CallParticipant::new(2, true);
    net.s(2).handle_update(Update::Participants { participants: vec![me] }, 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Ended);
    assert!(net.s(2).call().unwrap().is_closed());
}

/// Issue 30 item 5: a late "you left" notice ends a fresh rejoin. The server drops Bob from the
/// media call and its notice to him is delayed; his next request gets `GROUPCALL_JOIN_MISSING`,
/// he ends and rejoins (a new participation: the same lowest free SSRC, a later date); then the
/// old notice arrives. It names the earlier participation: the new one goes on.
#[test]
fn a_late_notice_of_an_earlier_participation_does_not_end_a_rejoin() {
    let mut net = conference_with_participants(&[1, 2]);
    let mut r = rng(305);
    let pushes = net.server.drop_from_media(2);
    let (late, others): (Vec<_>, Vec<_>) = pushes.into_iter().partition(|(to, _)| *to == 2);
    for (to, update) in others {
        net.update(to, update);
    }
    net.s(2).send_message(r#"{"random_id":"5"}"#, 0, &mut r).unwrap();
    net.pump();
    assert_eq!(net.s(2).state(), SessionState::Ended);
    net.join(2);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    net.events(2);
    for (_, update) in late {
        net.update(2, update);
    }
    assert_eq!(net.s(2).state(), SessionState::Joined, "{:?}", net.events(2));
    // A notice about the current participation still ends it.
    let now = net.server.participation(2).cloned().unwrap();
    let left = confchain::session::CallParticipant { left: true, ..now };
    net.update(2, Update::Participants { participants: vec![left] });
    assert_eq!(net.s(2).state(), SessionState::Ended);
}

/// Review of issue 30 item 5's check: a late "joined" record of our *earlier* participation
/// (delivered after the rejoin, e.g. buffered while joining) must not become our participation:
/// otherwise the server dropping the current one (a "left" record naming it) goes unheeded and
/// the session stays `Joined` in a call the server no longer has it in.
#[test]
fn a_late_record_of_an_earlier_participation_does_not_hide_the_current_ones_end() {
    let mut net = conference_with_participants(&[1, 2]);
    let mut r = rng(306);
    let earlier = net.server.participation(2).cloned().unwrap();
    net.server.drop_from_media(2);
    net.s(2).send_message(r#"{"random_id":"6"}"#, 0, &mut r).unwrap();
    net.pump();
    assert_eq!(net.s(2).state(), SessionState::Ended);
    net.join(2);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    let now = net.server.participation(2).cloned().unwrap();
    assert!(!now.same_participation(&earlier), "a new participation (a later date)");
    net.update(2, Update::Participants { participants: vec![earlier] });
    assert_eq!(net.s(2).state(), SessionState::Joined);
    let left = confchain::session::CallParticipant { left: true, ..now };
    net.update(2, Update::Participants { participants: vec![left] });
    assert_eq!(net.s(2).state(), SessionState::Ended, "{:?}", net.events(2));
}

/// A join that passed its deadline, then failed for good, but that the server accepted after all:
/// the late answer is met with `leaveGroupCall`.
#[test]
fn a_join_accepted_after_its_deadline_is_left_when_out_of_the_call() {
    let mut net = conference(&[1]);
    let mut r = rng(39);
    let config = SessionConfig { max_attempts: 1, ..SessionConfig::default() };
    let mut s = Session::new(2, config.clone()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, net.server.handle(2, &tip).0, 0, &mut r);
    let (join_id, join) = request(&mut s);
    s.handle_timeout(config.request_timeout_ms, &mut r);
    assert_eq!(s.state(), SessionState::Failed);
    let (late, _) = net.server.handle(2, &join);
    s.handle_response(join_id, late, config.request_timeout_ms + 1, &mut r);
    assert_eq!(request(&mut s).1, Request::Leave);
}

/// A removal queues `leaveGroupCall`; a rejoin before the application sent it drops it, so it can
/// never remove the new participant.
#[test]
fn a_rejoin_drops_an_unsent_leave() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(41);
    net.s(2).send_message(r#"{"random_id":"9"}"#, 0, &mut r).unwrap();
    let (id, _) = request(net.s(2));
    net.s(2).handle_response(id, Response::Error("GROUPCALL_FORBIDDEN".into()), 0, &mut r);
    net.s(2).join(0, &mut r).unwrap();
    let queued: Vec<_> = drain(net.s(2)).into_iter().map(|(_, r)| r).collect();
    assert_eq!(queued, vec![Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 }]);
}

/// A leave lost to the network (found at 200 members by the simulation's *ghost member*: a
/// `leaveGroupCall` answered `TIMEOUT` was never sent again, and the server kept the member in the
/// media call): the session is left whatever the answer, and sends the leave again after a
/// transient error, at most `max_send_attempts` times; a new join drops it.
#[test]
fn a_leave_lost_to_the_network_is_sent_again() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(2401);
    net.s(2).leave(0);
    let leaves = |net: &mut Net, at: u64, answer: &str, r: &mut ChaCha20Rng| {
        net.s(2).handle_timeout(at, r);
        let mut n = 0;
        for (id, q) in drain(net.s(2)) {
            if q == Request::Leave {
                n += 1;
                net.s(2).handle_response(id, Response::Error(answer.into()), at, r);
            }
        }
        n
    };
    assert_eq!(leaves(&mut net, 0, "TIMEOUT", &mut r), 1);
    assert_eq!(net.s(2).state(), SessionState::Left);
    let mut sent = 1;
    let mut t = 0;
    while t < 120_000 {
        t += 100;
        sent += leaves(&mut net, t, "TIMEOUT", &mut r);
    }
    assert_eq!(sent, SessionConfig::default().max_send_attempts, "sent again, bounded");
    assert!(net.server.members().any(|u| u == 2), "(the server never saw any of them)");
    // Answered at last: nothing more. And a join drops a pending one.
    let mut net = conference(&[1, 2]);
    net.s(2).leave(0);
    assert_eq!(leaves(&mut net, 0, "TIMEOUT", &mut r), 1);
    net.join(2);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    let mut t = net.now;
    while t < net.now + 60_000 {
        t += 100;
        assert_eq!(leaves(&mut net, t, "TIMEOUT", &mut r), 0, "a leave after the rejoin would end it");
    }
}
