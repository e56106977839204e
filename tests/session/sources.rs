//! Who sends on each SSRC (SPEC.md §18.1): the session's source map, fed by participant updates,
//! the join's answer and its own `getGroupParticipants` lookups (paced, flood waits respected,
//! answers of an earlier participation ignored).

use confchain::api::{CallParticipant, MediaSources};
use confchain::sources::{MediaKind, Source, UnresolvedReason};
use confchain::ErrorKind;

use crate::common::*;

fn audio(net: &Net, user: i64) -> u32 {
    net.server.participation(user).unwrap().source()
}

/// Each member learns the sources of those who join after it from the "joined" pushes, and its
/// own from the join's answer; the changes are told as events.
#[test]
fn participant_updates_fill_the_source_map() {
    let mut net = conference_with_participants(&[1, 2, 3]);
    let (bob, carol) = (audio(&net, 2), audio(&net, 3));
    let map = net.s(1).source_map();
    assert_eq!(map.get(bob), Some(Source { user_id: 2, kind: MediaKind::Audio }));
    assert_eq!(map.get(carol + 1), Some(Source { user_id: 3, kind: MediaKind::Video }));
    assert_eq!(net.s(3).source_map().get(carol), Some(Source { user_id: 3, kind: MediaKind::Audio }));
    // Carol leaves: her sources go, with an event each.
    net.s(3).leave(0);
    net.pump();
    assert_eq!(map.get(carol), None);
    let unmapped = net.events(1).into_iter().filter(|e| matches!(e, SessionEvent::SourceUnmapped { .. })).count();
    assert_eq!(unmapped, 2);
    // Leaving empties the leaver's map.
    assert!(net.s(3).source_map().is_empty());
}

/// A member who joined later does not know the earlier members' SSRCs: a frame on one fails with
/// the typed reason, is reported, and the next tick looks it up (one `getGroupParticipants`); the
/// answer maps it.
#[test]
fn an_unknown_ssrc_is_looked_up_once() {
    let mut net = conference_with_participants(&[1, 2]);
    let mut r = rng(340);
    let alice = audio(&net, 1);
    let map = net.s(2).source_map();
    let miss = map.sender(alice).unwrap_err();
    assert_eq!(miss.kind(), ErrorKind::FrameUnknownSource);
    map.sender(alice).unwrap_err(); // reported once
    net.s(2).handle_timeout(1, &mut r);
    let lookups: Vec<_> =
        drain(net.s(2)).into_iter().filter(|(_, q)| matches!(q, Request::GetGroupParticipants { .. })).collect();
    let [(id, lookup)] = &lookups[..] else { panic!("{lookups:?}") };
    assert_eq!(lookup, &Request::GetGroupParticipants { sources: vec![alice] });
    let (answer, _) = net.server.handle(2, lookup);
    net.respond(2, *id, answer);
    assert_eq!(map.get(alice), Some(Source { user_id: 1, kind: MediaKind::Audio }));
    let mapped = SessionEvent::SourceMapped {
        ssrc: alice,
        source: Source { user_id: 1, kind: MediaKind::Audio },
        previous: None,
    };
    assert!(net.events(2).contains(&mapped));
}

/// Lookups go one at a time, at most one a second, and wait out their kind's flood wait; an SSRC
/// no participant sends on is given up with a typed reason; `poll_timeout` counts the lookups.
#[test]
fn lookups_are_paced_wait_out_flood_waits_and_give_up_strangers() {
    let mut net = conference_with_participants(&[1, 2]);
    let mut r = rng(341);
    let map = net.s(2).source_map();
    map.report_unknown(77);
    net.s(2).handle_timeout(0, &mut r);
    let (id, _) = std::iter::from_fn(|| net.s(2).poll_request())
        .find(|(_, q)| matches!(q, Request::GetGroupParticipants { .. }))
        .expect("a lookup");
    net.s(2).handle_response(id, Response::Error("FLOOD_WAIT_2".into()), 10, &mut r);
    map.report_unknown(78);
    net.s(2).handle_timeout(1_500, &mut r);
    assert!(drain(net.s(2)).iter().all(|(_, q)| !matches!(q, Request::GetGroupParticipants { .. })), "flood wait");
    assert!(net.s(2).poll_timeout().unwrap() <= 2_010, "the lookups' time counts");
    net.s(2).handle_timeout(2_010, &mut r);
    let (id, lookup) = std::iter::from_fn(|| net.s(2).poll_request())
        .find(|(_, q)| matches!(q, Request::GetGroupParticipants { .. }))
        .expect("the lookup after the wait");
    assert_eq!(lookup, Request::GetGroupParticipants { sources: vec![77, 78] });
    let (answer, _) = net.server.handle(2, &lookup);
    net.s(2).handle_response(id, answer, 2_020, &mut r);
    let unresolved: Vec<_> = net
        .events(2)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::SourceUnresolved { ssrc, reason } => Some((ssrc, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(unresolved, vec![(77, UnresolvedReason::NotInCall), (78, UnresolvedReason::NotInCall)]);
    // Not asked about again at once.
    map.report_unknown(77);
    net.s(2).handle_timeout(3_100, &mut r);
    assert!(drain(net.s(2)).iter().all(|(_, q)| !matches!(q, Request::GetGroupParticipants { .. })));
}

/// The answer to a lookup of an earlier participation is ignored: its records may describe a
/// call we left.
#[test]
fn a_lookup_answer_of_an_earlier_participation_is_ignored() {
    let mut net = conference_with_participants(&[1, 2]);
    let mut r = rng(342);
    let alice = audio(&net, 1);
    let map = net.s(2).source_map();
    map.report_unknown(alice);
    net.s(2).handle_timeout(0, &mut r);
    let (id, lookup) = std::iter::from_fn(|| net.s(2).poll_request())
        .find(|(_, q)| matches!(q, Request::GetGroupParticipants { .. }))
        .expect("a lookup");
    let (answer, _) = net.server.handle(2, &lookup);
    net.s(2).leave(0);
    net.pump();
    net.join(2);
    assert_eq!(net.s(2).state(), SessionState::Joined);
    net.s(2).handle_response(id, answer, 0, &mut r);
    assert_eq!(map.get(alice), None);
    // The same records pushed now are taken.
    let record = net.server.participation(1).cloned().unwrap();
    net.update(2, Update::Participants { participants: vec![record] });
    assert_eq!(map.get(alice), Some(Source { user_id: 1, kind: MediaKind::Audio }));
}

/// Review (hostile member): Carol sends a frame of her own (or replays anyone's) on Bob's SSRC.
/// At Alice it does not open with Bob's key (`WRONG_SIGNATURE`), which is all a receiver can see;
/// that must not unmap Bob's SSRC, or one packet a second from any member would silence Bob for
/// everyone. The mapping stays and is checked with one lookup, whose answer confirms it.
#[test]
fn a_member_cannot_unmap_another_members_ssrc_with_its_own_frames() {
    use confchain::frame::{AudioLevel, Codec};
    let mut net = conference_with_participants(&[1, 2, 3]);
    let mut r = rng(343);
    let ssrc = audio(&net, 2);
    let bob = Source { user_id: 2, kind: MediaKind::Audio };
    let map = net.s(1).source_map();
    assert_eq!(map.get(ssrc), Some(bob));
    let level = AudioLevel { level: 1, speech: true };
    let carols =
        net.s(3).call().unwrap().media_encryptor(&mut r).encrypt_frame(0, Codec::Opus, b"x", level, 0).unwrap();
    let bobs = net.s(2).call().unwrap().media_encryptor(&mut r);
    let dec = net.s(1).call().unwrap().media_decryptor();
    let e = dec.decrypt_frame_from_source_into(&map, ssrc, Codec::Opus, &carols, 0, &mut Vec::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongSignature);
    net.events(1);
    net.s(1).handle_timeout(1, &mut r);
    assert_eq!(map.get(ssrc), Some(bob), "still Bob's: {:?}", net.events(1));
    let frame = bobs.encrypt_frame(0, Codec::Opus, b"hi", level, 1).unwrap();
    let (sender, _) = dec.decrypt_frame_from_source_into(&map, ssrc, Codec::Opus, &frame, 1, &mut Vec::new()).unwrap();
    assert_eq!(sender, bob);
    let lookups: Vec<_> =
        drain(net.s(1)).into_iter().filter(|(_, q)| matches!(q, Request::GetGroupParticipants { .. })).collect();
    let [(id, lookup)] = &lookups[..] else { panic!("one lookup checks the mapping: {lookups:?}") };
    assert_eq!(lookup, &Request::GetGroupParticipants { sources: vec![ssrc] });
    let (answer, _) = net.server.handle(1, lookup);
    net.respond(1, *id, answer);
    assert_eq!(map.get(ssrc), Some(bob));
    let events = net.events(1);
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, SessionEvent::SourceUnmapped { .. } | SessionEvent::SourceUnresolved { .. })),
        "{events:?}"
    );
}

/// A mapping that is really stale (the SSRC moved to a participation whose record we missed) is
/// corrected by the check's answer: the SSRC moves to its new sender.
#[test]
fn a_stale_mapping_is_corrected_by_its_check() {
    let mut net = conference_with_participants(&[1, 2, 3]);
    let mut r = rng(344);
    let map = net.s(1).source_map();
    // Alice's map wrongly gives Carol's SSRC to Bob (a record she missed); frames on it fail.
    let wrong = Source { user_id: 2, kind: MediaKind::Audio };
    let carol = audio(&net, 3);
    let mut record = net.server.participation(2).cloned().unwrap();
    record.sources.audio = carol;
    record.sources.video = None;
    net.update(1, Update::Participants { participants: vec![record] });
    assert_eq!(map.get(carol), Some(wrong));
    map.report_stale(carol, wrong);
    net.s(1).handle_timeout(1, &mut r);
    let lookups: Vec<_> =
        drain(net.s(1)).into_iter().filter(|(_, q)| matches!(q, Request::GetGroupParticipants { .. })).collect();
    let [(id, lookup)] = &lookups[..] else { panic!("{lookups:?}") };
    let (answer, _) = net.server.handle(1, lookup);
    net.respond(1, *id, answer);
    assert_eq!(map.get(carol), Some(Source { user_id: 3, kind: MediaKind::Audio }));
}

/// The SSRC table follows the call size limit: a session configured for calls of 1,000 keeps the
/// sources of 3,000 participants (five times its limit), where the default one (200) keeps the
/// 1,000 updated last; the oldest are forgotten, never more than the bound held.
#[test]
fn the_source_table_follows_the_call_size_limit() {
    let records: Vec<CallParticipant> = (1..=3_000)
        .map(|u| CallParticipant {
            user_id: 100 + u,
            sources: MediaSources { audio: u as u32, ..MediaSources::default() },
            ..CallParticipant::default()
        })
        .collect();
    for (limit, kept) in [(200, 1_000), (1_000, 3_000)] {
        let mut r = rng(341);
        let config = SessionConfig { call_size_limit: limit, ..SessionConfig::default() };
        assert_eq!(config.max_source_participants(), 5 * limit);
        let (mut s, _) = joined_alone_with(1, config, 0, &mut r);
        s.handle_update(Update::Participants { participants: records.clone() }, 0, &mut r);
        let map = s.source_map();
        assert_eq!(map.len(), kept, "limit {limit}");
        assert_eq!(map.get(3_000), Some(Source { user_id: 3_100, kind: MediaKind::Audio }));
        assert_eq!(map.get(1).is_some(), kept == 3_000, "limit {limit}");
    }
}

/// Review: `poll_timeout` held the whole lookup schedule to the end of a lookup flood wait (so
/// that a send it holds back does not keep the timer due), the SSRCs' 5 s deadlines included:
/// an SSRC reported just before a `FLOOD_WAIT_30` was given up when some other timer happened to
/// wake the session (the next poll, up to `poll_interval_ms` later), not at its deadline. Only
/// the send waits for the flood's end.
#[test]
fn a_lookup_flood_wait_does_not_hold_the_ssrcs_deadlines() {
    let mut net = conference_with_participants(&[1, 2]);
    let mut r = rng(342);
    let map = net.s(2).source_map();
    let t0 = net.now;
    map.report_unknown(77);
    net.s(2).handle_timeout(t0, &mut r);
    let (id, _) = std::iter::from_fn(|| net.s(2).poll_request())
        .find(|(_, q)| matches!(q, Request::GetGroupParticipants { .. }))
        .expect("a lookup");
    net.s(2).handle_response(id, Response::Error("FLOOD_WAIT_30".into()), t0 + 10, &mut r);
    let deadline = t0 + confchain::limits::LOOKUP_DEADLINE_MS;
    let at = net.s(2).poll_timeout().unwrap();
    assert!(at <= deadline, "woken at {} ms, the deadline is at {} ms", at - t0, deadline - t0);
    net.s(2).handle_timeout(deadline, &mut r);
    let unresolved = SessionEvent::SourceUnresolved { ssrc: 77, reason: UnresolvedReason::Deadline };
    assert!(net.events(2).contains(&unresolved));
    assert!(net.s(2).poll_timeout().unwrap() > deadline, "not due again");
}
