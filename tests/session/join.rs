//! Joining: creating the call, the first joiners' race, join retries, updates during the join, rejoins.

use crate::common::*;

#[test]
fn creator_joins_on_create() {
    let mut net = Net::new(Server::new(), &[1]);
    let mut r = rng(1);
    net.s(1).create(true, 0, &mut r).unwrap();
    let (id, req) = request(net.s(1));
    let Request::CreateConference { public_key: Some(_), block: Some(block) } = &req else { panic!("{req:?}") };
    let (response, _) = net.server.handle(1, &req);
    assert_eq!(UnverifiedTip::from_server_block(&block.to_server_form()).unwrap().height(), 0);
    net.s(1).handle_response(id, response, 0, &mut r);
    assert_eq!(net.s(1).state(), SessionState::Joined);
    let events = net.events(1);
    assert!(events.contains(&SessionEvent::Joined { height: 0 }), "{events:?}");
    assert!(events.contains(&SessionEvent::ParticipantsChanged { user_ids: vec![1] }));
    assert!(events.iter().any(|e| matches!(e, SessionEvent::VerificationStarted { height: 0, .. })));
}

/// pytgcalls #332: an invitee that reads an empty chain must NOT create a second conference; it
/// sends the zero block to joinGroupCall of the same call.
#[test]
fn empty_tip_as_invitee_sends_the_zero_block_to_join() {
    let mut net = Net::new(Server::new(), &[1, 2]);
    let mut r = rng(2);
    net.s(1).create(false, 0, &mut r).unwrap();
    net.pump();
    assert_eq!(net.events(1), vec![SessionEvent::Created { call: None, invite_link: None }]);
    assert_eq!(net.s(1).state(), SessionState::Idle);
    net.s(2).join(0, &mut r).unwrap();
    let (id, req) = request(net.s(2));
    assert_eq!(req, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 });
    let (response, _) = net.server.handle(2, &req);
    assert_eq!(response, Response::Ok(vec![blocks_update(0, &[], 0)]));
    net.s(2).handle_response(id, response, 0, &mut r);
    let (id, req) = request(net.s(2));
    let Request::Join { block, .. } = &req else { panic!("never createConferenceCall: {req:?}") };
    assert_eq!(block.decode().unwrap().height, 0, "the zero block");
    let (response, _) = net.server.handle(2, &req);
    net.s(2).handle_response(id, response, 0, &mut r);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    assert_eq!(net.server.height(), 0);
}

/// Two first joiners race with zero blocks: the loser gets CONF_WRITE_CHAIN_INVALID, waits, fetches
/// the new tip and joins on top of it with a new key.
#[test]
fn race_lost_then_won() {
    let mut net = Net::new(Server::existing(), &[1, 2]);
    let mut r = rng(3);
    net.s(1).join(0, &mut r).unwrap();
    net.s(2).join(0, &mut r).unwrap();
    // Both read the empty tip.
    let (id1, tip1) = request(net.s(1));
    let (id2, tip2) = request(net.s(2));
    let (a, _) = net.server.handle(1, &tip1);
    let (b, _) = net.server.handle(2, &tip2);
    net.s(1).handle_response(id1, a, 0, &mut r);
    net.s(2).handle_response(id2, b, 0, &mut r);
    let (id1, join1) = request(net.s(1));
    let (id2, join2) = request(net.s(2));
    let Request::Join { public_key: first_key, .. } = &join2 else { panic!() };
    let first_key = *first_key;
    // 1 wins the height.
    let (ok, _) = net.server.handle(1, &join1);
    net.s(1).handle_response(id1, ok, 0, &mut r);
    let (lost, _) = net.server.handle(2, &join2);
    assert_eq!(lost, Response::Error("CONF_WRITE_CHAIN_INVALID".into()));
    net.s(2).handle_response(id2, lost, 0, &mut r);
    assert!(net.s(2).poll_request().is_none(), "no retry without backoff");
    let retry_at = net.s(2).poll_timeout().unwrap();
    assert!(retry_at >= SessionConfig::default().backoff_ms);
    net.s(2).handle_timeout(retry_at, &mut r);
    let (id, tip) = request(net.s(2));
    assert_eq!(tip, Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 });
    let (resp, _) = net.server.handle(2, &tip);
    net.s(2).handle_response(id, resp, retry_at, &mut r);
    let (id, join) = request(net.s(2));
    let Request::Join { public_key, block } = &join else { panic!() };
    assert_ne!(*public_key, first_key, "a fresh key per attempt");
    assert_eq!(block.decode().unwrap().height, 1, "a self-add on the winner's block");
    net.now = retry_at;
    let (resp, pushes) = net.server.handle(2, &join);
    net.s(2).handle_response(id, resp, retry_at, &mut r);
    for (to, u) in pushes {
        net.s(to).handle_update(u, retry_at, &mut r);
    }
    net.pump();
    assert_eq!((net.height(1), net.height(2)), (1, 1));
    assert_eq!(net.s(1).call().unwrap().key_fingerprint(), net.s(2).call().unwrap().key_fingerprint());
}

#[test]
fn retries_are_bounded_with_growing_backoff() {
    let config = SessionConfig { max_attempts: 4, ..SessionConfig::default() };
    let mut s = Session::new(5, config).unwrap();
    let mut r = rng(4);
    let mut server = Server::existing();
    s.join(0, &mut r).unwrap();
    let mut now = 0;
    let mut waits = Vec::new();
    loop {
        let Some((id, req)) = s.poll_request() else {
            match s.poll_timeout() {
                Some(at) if s.state() == SessionState::Joining => {
                    waits.push(at - now);
                    now = at;
                    s.handle_timeout(now, &mut r);
                    continue;
                }
                _ => break,
            }
        };
        let response = match req {
            Request::GetChainBlocks { .. } => server.handle(5, &req).0,
            Request::Join { .. } => Response::Error("CONF_WRITE_CHAIN_INVALID".into()),
            other => panic!("{other:?}"),
        };
        s.handle_response(id, response, now, &mut r);
    }
    assert_eq!(waits, vec![250, 500, 1000], "backoff doubles");
    assert_eq!(s.state(), SessionState::Failed);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(events, vec![SessionEvent::JoinFailed { reason: JoinFailure::RetriesExhausted { attempts: 4 } }]);
    // Any other error ends the attempt at once with its reason.
    let mut s = Session::new(5, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, _) = request(&mut s);
    s.handle_response(id, Response::Error("GROUPCALL_INVALID".into()), 0, &mut r);
    assert_eq!(s.poll_event(), Some(SessionEvent::JoinFailed { reason: JoinFailure::Api(ApiError::CallInvalid) }));
}

#[test]
fn updates_during_the_join_are_kept() {
    let mut net = conference(&[1, 2]);
    let mut r = rng(8);
    let mut carol = Session::new(3, SessionConfig::default()).unwrap();
    carol.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut carol);
    let (resp, _) = net.server.handle(3, &tip);
    carol.handle_response(id, resp, 0, &mut r);
    let (id, join) = request(&mut carol);
    let (resp, pushes) = net.server.handle(3, &join);
    net.sessions.push(carol);
    for (to, u) in pushes {
        net.update(to, u); // the others apply carol's block
    }
    // Before carol's join response arrives, alice re-keys and the push reaches carol first.
    let block = rekey_block(&mut net, 1);
    let (ok, pushes) = net.server.handle(1, &Request::DeleteParticipants { user_ids: vec![], block, kick: true });
    let Response::Ok(own) = ok else { panic!("{ok:?}") };
    for u in own {
        net.update(1, u); // alice learns of her block from the response
    }
    for (to, u) in pushes {
        net.s(to).handle_update(u, 0, &mut r);
    }
    assert_eq!(net.s(3).state(), SessionState::Joining);
    net.s(3).handle_response(id, resp, 0, &mut r);
    assert_eq!(net.height(3), net.server.height(), "the early update was applied after the join");
    assert_eq!(net.s(3).call().unwrap().key_fingerprint(), net.s(1).call().unwrap().key_fingerprint());
}

/// GROUPCALL_SSRC_DUPLICATE_MUCH on a join means rejoin.
#[test]
fn ssrc_duplicate_rejoins() {
    let mut r = rng(33);
    let mut server = Server::existing();
    let mut s = Session::new(5, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, server.handle(5, &tip).0, 0, &mut r);
    let (id, _) = request(&mut s);
    s.handle_response(id, Response::Error("GROUPCALL_SSRC_DUPLICATE_MUCH".into()), 0, &mut r);
    assert_eq!(s.state(), SessionState::Joining);
    let at = s.poll_timeout().unwrap();
    s.handle_timeout(at, &mut r);
    let (id, tip) = request(&mut s);
    s.handle_response(id, server.handle(5, &tip).0, at, &mut r);
    let (id, join) = request(&mut s);
    let (resp, _) = server.handle(5, &join);
    s.handle_response(id, resp, at, &mut r);
    assert_eq!(s.state(), SessionState::Joined);
}

/// `updateGroupCall` gives the call's identity (event and accessor); a create carries it.
#[test]
fn the_call_identity_is_surfaced() {
    let mut r = rng(35);
    let mut s = Session::new(1, SessionConfig::default()).unwrap();
    s.create(false, 0, &mut r).unwrap();
    let (id, _) = request(&mut s);
    let call = confchain::session::CallIdentity { id: 10, access_hash: 20 };
    let link = Some("https://t.me/call/abc".to_owned());
    let update = Update::GroupCall { call, discarded: false, invite_link: link.clone() };
    s.handle_response(id, Response::Ok(vec![update]), 0, &mut r);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(events.contains(&SessionEvent::CallIdentity { call, invite_link: link.clone() }));
    assert!(events.contains(&SessionEvent::Created { call: Some(call), invite_link: link.clone() }));
    assert_eq!(s.call_identity(), Some(call));
    assert_eq!(s.invite_link(), link.as_deref());
}

/// The join response may carry later blocks (and broadcasts): they are applied through the rules.
#[test]
fn a_join_response_with_later_blocks_is_applied() {
    let mut net = conference(&[1]);
    let mut r = rng(36);
    let mut s = Session::new(2, SessionConfig::default()).unwrap();
    s.join(0, &mut r).unwrap();
    let (id, tip) = request(&mut s);
    s.handle_response(id, net.server.handle(2, &tip).0, 0, &mut r);
    let (id, join) = request(&mut s);
    let (resp, pushes) = net.server.handle(2, &join);
    for (to, u) in pushes {
        if to == 1 {
            net.update(1, u);
        }
    }
    silent_rekey(&mut net, 1);
    let Response::Ok(mut updates) = resp else { panic!() };
    // The server's answer holds our block (offset 1) and the re-key after it (offset 2).
    updates.retain(|u| !matches!(u, Update::ChainBlocks { sub_chain: SubChain::Blocks, .. }));
    updates.insert(0, blocks_update(0, &net.server.blocks()[1..3], 3));
    s.handle_response(id, Response::Ok(updates), 0, &mut r);
    assert_eq!(s.state(), SessionState::Joined);
    assert_eq!(s.call().unwrap().height(), 2);
    assert_eq!(s.call().unwrap().key_fingerprint(), net.s(1).call().unwrap().key_fingerprint());
}

/// Review (hostile server): participant records pushed while a join is in flight are kept for
/// after it, within `max_buffered_bytes`. A record's sources (an endpoint name, source groups)
/// are bytes too: a record must not count as 16 bytes whatever it holds, or 256 pushes of
/// one large record each would be kept, far over the bound.
#[test]
fn participant_records_buffered_while_joining_count_their_sources() {
    use confchain::api::{CallParticipant, MediaSources, SourceGroup, VideoSources};
    let mut net = conference(&[1]);
    net.sessions.push(Session::new(2, SessionConfig::default()).unwrap());
    let mut r = rng(345);
    net.s(2).join(0, &mut r).unwrap();
    let config = SessionConfig::default();
    let big = VideoSources {
        endpoint: "e".repeat(256 << 10),
        source_groups: vec![SourceGroup { semantics: "SIM".into(), sources: vec![1, 2, 3] }],
        audio_source: None,
    };
    let record = CallParticipant {
        user_id: 3,
        sources: MediaSources { audio: 9, video: Some(big), presentation: None },
        ..CallParticipant::default()
    };
    for _ in 0..config.max_buffered_updates {
        net.s(2).handle_update(Update::Participants { participants: vec![record.clone()] }, 0, &mut r);
    }
    let f = net.s(2).footprint();
    assert_eq!(net.s(2).state(), SessionState::Joining);
    assert!(
        f.buffered_updates * (256 << 10) <= config.max_buffered_bytes,
        "{} records of 256 KiB kept: {f:?}",
        f.buffered_updates
    );
}
