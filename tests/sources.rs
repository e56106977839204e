//! Who sent this frame (issue 34): the SSRC table, its shared map, the lookup scheduler and the
//! frame API by SSRC. Each test names the harm it rules out.

mod common;

use confchain::api::{MediaSources, ParticipantSources, SourceGroup, VideoSources};
use confchain::frame::{AudioLevel, Codec};
use confchain::limits::{
    LOOKUP_DEADLINE_MS, LOOKUP_INTERVAL_MS, MAX_LOOKUP_BATCH, MAX_PENDING_LOOKUPS, MAX_SOURCES_PER_PARTICIPANT,
    MAX_SOURCE_PARTICIPANTS,
};
use confchain::sources::{
    LookupEvent, LookupScheduler, MediaKind, Source, SourceChange, SourceTable, UnresolvedReason,
};
use confchain::ErrorKind;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn video(ssrcs: &[u32], audio_source: Option<u32>) -> VideoSources {
    VideoSources {
        endpoint: "e".into(),
        source_groups: vec![SourceGroup { semantics: "SIM".into(), sources: ssrcs.to_vec() }],
        audio_source,
    }
}

fn record(user_id: i64, audio: u32, cam: &[u32], screen: Option<(&[u32], u32)>) -> ParticipantSources {
    ParticipantSources {
        user_id,
        left: false,
        sources: MediaSources {
            audio,
            video: (!cam.is_empty()).then(|| video(cam, None)),
            presentation: screen.map(|(s, a)| video(s, Some(a))),
        },
        ..ParticipantSources::default()
    }
}

fn left(user_id: i64, audio: u32) -> ParticipantSources {
    ParticipantSources { left: true, ..record(user_id, audio, &[], None) }
}

fn src(user_id: i64, kind: MediaKind) -> Option<Source> {
    Some(Source { user_id, kind })
}

#[test]
fn records_map_every_kind_and_the_shared_map_sees_them() {
    let mut t = SourceTable::new();
    let map = t.map();
    let changes = t.apply(&[record(7, 100, &[200, 201], Some((&[300], 301)))]);
    assert_eq!(changes.len(), 5);
    for (ssrc, kind) in [
        (100, MediaKind::Audio),
        (200, MediaKind::Video),
        (201, MediaKind::Video),
        (300, MediaKind::Screencast),
        (301, MediaKind::ScreencastAudio),
    ] {
        assert_eq!(t.get(ssrc), src(7, kind));
        assert_eq!(map.get(ssrc), src(7, kind), "media threads see what the table holds");
    }
    assert_eq!(map.get(0), None, "0 is no source");
    // The same record again changes nothing.
    assert!(t.apply(&[record(7, 100, &[200, 201], Some((&[300], 301)))]).is_empty());
    // Video stopped: its SSRCs are no longer the member's.
    let changes = t.apply(&[record(7, 100, &[], Some((&[300], 301)))]);
    assert_eq!(changes.len(), 2);
    assert!(changes
        .iter()
        .all(|c| matches!(c, SourceChange::Unmapped { source, .. } if source.kind == MediaKind::Video)));
    assert_eq!(map.get(200), None);
}

/// A late leave of an earlier participation must not silence a member who rejoined (the
/// py-tgcalls failure: later joiners stay silent), and a rejoin moves an SSRC another
/// participation had.
#[test]
fn leave_ends_only_its_participation_and_rejoin_moves_ssrcs() {
    let mut t = SourceTable::new();
    t.apply(&[record(1, 10, &[11], None), record(2, 20, &[], None)]);
    // User 1 rejoins with a new audio SSRC; the old leave arrives after.
    t.apply(&[record(1, 12, &[11], None)]);
    assert_eq!(t.get(10), None);
    assert!(t.apply(&[left(1, 10)]).is_empty(), "a stale leave changes nothing");
    assert_eq!(t.get(12), src(1, MediaKind::Audio));
    // User 3 gets SSRC 20 (the server reused it): it moves, and says from whom.
    let changes = t.apply(&[record(3, 20, &[], None)]);
    assert_eq!(
        changes,
        vec![SourceChange::Mapped {
            ssrc: 20,
            source: Source { user_id: 3, kind: MediaKind::Audio },
            previous: src(2, MediaKind::Audio)
        }]
    );
    // User 2's leave names the SSRC it no longer has: user 3 keeps it, and user 2's other
    // sources go.
    t.apply(&[record(2, 20, &[21], None)]);
    assert_eq!(t.get(20), src(2, MediaKind::Audio));
    t.apply(&[record(3, 20, &[], None)]);
    let changes = t.apply(&[left(2, 20)]);
    assert_eq!(
        changes,
        vec![SourceChange::Unmapped { ssrc: 21, source: Source { user_id: 2, kind: MediaKind::Video } }]
    );
    assert_eq!(t.get(20), src(3, MediaKind::Audio));
    // User 1's real leave removes all its sources.
    let changes = t.apply(&[left(1, 12)]);
    assert_eq!(changes.len(), 2);
    assert_eq!((t.get(11), t.get(12)), (None, None));
    assert_eq!(t.clear().len(), 1);
    assert!(t.map().is_empty());
}

/// Memory: a hostile server sending any number of participants with any number of sources
/// cannot make the table hold more than its bounds.
#[test]
fn the_table_is_bounded_whatever_the_server_sends() {
    let mut t = SourceTable::new();
    let many: Vec<u32> = (1..=500).collect();
    let records: Vec<ParticipantSources> = (0..3 * MAX_SOURCE_PARTICIPANTS as i64)
        .map(|u| {
            let base = u as u32 * 1_000 + 1;
            let cam: Vec<u32> = many.iter().map(|x| base + x).collect();
            record(u, base, &cam, None)
        })
        .collect();
    t.apply(&records);
    assert!(t.participants() <= MAX_SOURCE_PARTICIPANTS);
    assert!(t.len() <= MAX_SOURCE_PARTICIPANTS * MAX_SOURCES_PER_PARTICIPANT);
    // The newest participants are the ones kept.
    let last = 3 * MAX_SOURCE_PARTICIPANTS as i64 - 1;
    assert_eq!(t.get(last as u32 * 1_000 + 1), src(last, MediaKind::Audio));
    assert_eq!(t.map().len(), t.len());
}

fn arb_record() -> impl Strategy<Value = ParticipantSources> {
    (0i64..8, any::<bool>(), 0u32..24, prop::collection::vec(0u32..24, 0..24), prop::option::of((0u32..24, 0u32..24)))
        .prop_map(|(user, l, audio, cam, screen)| {
            let mut r =
                record(user, audio, &cam, screen.map(|(s, a)| (vec![s], a)).as_ref().map(|(s, a)| (&s[..], *a)));
            r.left = l;
            r
        })
}

proptest! {
    /// Consistency under any sequence of records: each SSRC has one sender, each participant at
    /// most `MAX_SOURCES_PER_PARTICIPANT`, the shared map equals the table, the change records
    /// replayed give the same table, and no more participants are held than the table's capacity
    /// (small ones here, so that forgetting the least recent is exercised).
    #[test]
    fn any_records_keep_the_table_consistent(
        batches in prop::collection::vec(prop::collection::vec(arb_record(), 1..4), 1..20),
        capacity in 1usize..10,
    ) {
        let mut t = SourceTable::with_capacity(capacity);
        let map = t.map();
        let mut replay = std::collections::HashMap::new();
        for batch in &batches {
            for c in t.apply(batch) {
                match c {
                    SourceChange::Mapped { ssrc, source, previous } => {
                        prop_assert_eq!(replay.insert(ssrc, source), previous);
                    }
                    SourceChange::Unmapped { ssrc, source } => {
                        prop_assert_eq!(replay.remove(&ssrc), Some(source));
                    }
                }
            }
            for ssrc in 0..24 {
                prop_assert_eq!(map.get(ssrc), t.get(ssrc));
                prop_assert_eq!(replay.get(&ssrc).copied(), t.get(ssrc));
            }
            prop_assert!(t.get(0).is_none());
            prop_assert!(t.participants() <= capacity);
        }
        let mut per_user = std::collections::HashMap::<i64, usize>::new();
        for ssrc in 0..24 {
            if let Some(s) = t.get(ssrc) {
                *per_user.entry(s.user_id).or_default() += 1;
            }
        }
        prop_assert!(per_user.values().all(|n| *n <= MAX_SOURCES_PER_PARTICIPANT));
    }

    /// No request storm, no unbounded wait: whatever SSRCs frames arrive on and whenever (unknown
    /// ones, and mapped ones whose sender's key did not open them, checked),
    /// at most one lookup goes out per `LOOKUP_INTERVAL_MS`, each names at most
    /// `MAX_LOOKUP_BATCH` distinct SSRCs, at most `MAX_PENDING_LOOKUPS` wait, and every unknown
    /// SSRC is resolved or given up with a reason within `LOOKUP_DEADLINE_MS` of its first frame.
    #[test]
    fn lookups_are_rate_limited_bounded_and_end(
        frames in prop::collection::vec((any::<u32>(), 0u64..300, 0u8..4), 1..400),
        answer_every in 1usize..4,
    ) {
        let mut t = SourceTable::new();
        let mut s = LookupScheduler::new();
        let mut now = 0u64;
        let mut sent_at = Vec::new();
        let mut waiting = std::collections::HashMap::<u32, u64>::new();
        let mut in_flight = None;
        for (i, (raw, dt, what)) in frames.iter().enumerate() {
            now += dt;
            let ssrc = raw % 512 + 1; // repeats are likely: dedupe is exercised
            if t.get(ssrc).is_none() {
                s.note_unknown(ssrc, &t, now);
                if s.is_pending(ssrc) {
                    waiting.entry(ssrc).or_insert(now);
                }
            } else if *what == 0 {
                // A frame the mapped sender's key did not open: the mapping is checked.
                s.note_stale(ssrc, now);
                if s.is_pending(ssrc) {
                    waiting.entry(ssrc).or_insert(now);
                }
            }
            prop_assert!(s.pending() <= MAX_PENDING_LOOKUPS);
            if let Some((id, lookup)) = s.poll_lookup(now) {
                prop_assert!(lookup.sources.len() <= MAX_LOOKUP_BATCH);
                let mut d = lookup.sources.clone();
                d.sort_unstable();
                d.dedup();
                prop_assert_eq!(d.len(), lookup.sources.len(), "no SSRC twice in a lookup");
                sent_at.push(now);
                in_flight = Some((id, lookup));
            }
            if i % answer_every == 0 {
                if let Some((id, lookup)) = in_flight.take() {
                    // The server knows the even SSRCs (user = ssrc).
                    let known: Vec<ParticipantSources> = lookup.sources.iter().filter(|x| *x % 2 == 0)
                        .map(|x| record(i64::from(*x), *x, &[], None)).collect();
                    t.apply(&known);
                    s.on_answer(id, &t, now);
                }
            }
            s.handle_timeout(now);
            while let Some(LookupEvent::Unresolved { ssrc, .. }) = s.poll_event() {
                waiting.remove(&ssrc);
            }
            waiting.retain(|ssrc, _| s.is_pending(*ssrc));
            for (ssrc, since) in &waiting {
                prop_assert!(now < since + LOOKUP_DEADLINE_MS, "SSRC {} waited from {} to {}", ssrc, since, now);
            }
        }
        for w in sent_at.windows(2) {
            prop_assert!(w[1] - w[0] >= LOOKUP_INTERVAL_MS, "lookups at {} and {}", w[0], w[1]);
        }
    }
}

#[test]
fn answers_of_another_lookup_or_generation_are_ignored() {
    let t = SourceTable::new();
    let mut s = LookupScheduler::new();
    s.note_unknown(5, &t, 0);
    let (old, _) = s.poll_lookup(0).unwrap();
    s.reset();
    assert_eq!(s.pending(), 0);
    assert!(!s.on_answer(old, &t, 10), "an earlier generation's answer");
    s.note_unknown(6, &t, 10);
    let (id, lookup) = s.poll_lookup(LOOKUP_INTERVAL_MS).unwrap();
    assert_eq!(lookup.sources, vec![6]);
    assert_ne!(id, old);
    assert!(!s.on_answer(old, &t, 20));
    assert!(!s.on_failure(old, 20));
    assert!(s.on_answer(id, &t, 20));
    assert_eq!(s.poll_event(), Some(LookupEvent::Unresolved { ssrc: 6, reason: UnresolvedReason::NotInCall }));
    // Not asked about again soon: no storm for an SSRC nobody sends on.
    s.note_unknown(6, &t, 30);
    assert_eq!(s.pending(), 0);
}

#[test]
fn a_failed_lookup_is_retried_after_its_wait_and_given_up_at_the_deadline() {
    let t = SourceTable::new();
    let mut s = LookupScheduler::new();
    s.note_unknown(9, &t, 0);
    let (id, _) = s.poll_lookup(0).unwrap();
    assert!(s.on_failure(id, 3_000), "FLOOD_WAIT_3");
    assert!(s.poll_lookup(2_999).is_none());
    assert_eq!(s.poll_timeout(), Some(3_000));
    let (id2, l) = s.poll_lookup(3_000).unwrap();
    assert_eq!(l.sources, vec![9]);
    // No answer: given up at the deadline of its first frame.
    s.handle_timeout(LOOKUP_DEADLINE_MS - 1);
    assert_eq!(s.poll_event(), None);
    s.handle_timeout(LOOKUP_DEADLINE_MS);
    assert_eq!(s.poll_event(), Some(LookupEvent::Unresolved { ssrc: 9, reason: UnresolvedReason::Deadline }));
    assert!(!s.on_answer(id2, &t, 9_000), "a late answer is ignored");
    // A full pending set refuses at once, with the reason.
    for x in 1..=MAX_PENDING_LOOKUPS as u32 + 1 {
        s.note_unknown(1_000 + x, &t, 10_000);
    }
    assert_eq!(s.pending(), MAX_PENDING_LOOKUPS);
    assert_eq!(
        s.poll_event(),
        Some(LookupEvent::Unresolved {
            ssrc: 1_000 + MAX_PENDING_LOOKUPS as u32 + 1,
            reason: UnresolvedReason::PendingFull
        })
    );
}

/// The frame API by SSRC finds the sender in the table and never tries every key: a frame on an
/// unknown or stale SSRC fails with `FRAME__UNKNOWN_SOURCE` and is reported for a lookup.
#[test]
fn frames_decrypt_by_ssrc_and_unknown_ssrcs_are_typed() {
    let mut rng = ChaCha20Rng::seed_from_u64(34);
    let m = common::two_members(&mut rng);
    let enc = m.alice.media_encryptor(&mut rng);
    let dec = m.bob.media_decryptor();
    let mut table = SourceTable::new();
    let map = table.map();
    let level = AudioLevel { level: 3, speech: true };
    let packet = enc.encrypt_frame(0, Codec::Opus, b"hello", level, 1_000).unwrap();
    let mut out = Vec::new();
    let e = dec.decrypt_frame_from_source_into(&map, 4242, Codec::Opus, &packet, 1_000, &mut out).unwrap_err();
    assert_eq!((e.kind(), e.kind().name()), (ErrorKind::FrameUnknownSource, "FRAME__UNKNOWN_SOURCE"));
    assert!(out.is_empty());
    assert_eq!(map.take_misses(), vec![4242], "reported for a lookup");
    table.apply(&[record(1, 4242, &[], None)]);
    let (source, frame) =
        dec.decrypt_frame_from_source_into(&map, 4242, Codec::Opus, &packet, 1_000, &mut out).unwrap();
    assert_eq!(source, Source { user_id: 1, kind: MediaKind::Audio });
    assert_eq!((out.as_slice(), frame.level), (&b"hello"[..], Some(level)));
    // The SSRC moves to another member: alice's frames on it no longer open (stale mapping).
    table.apply(&[record(2, 4242, &[], None)]);
    let packet = enc.encrypt_frame(0, Codec::Opus, b"again", level, 1_000).unwrap();
    assert!(dec.decrypt_frame_from_source_into(&map, 4242, Codec::Opus, &packet, 1_000, &mut Vec::new()).is_err());
    // It is reported as stale (once), with the sender whose key failed; unmapping it only undoes
    // that mapping, not a newer one.
    // (Carol, user 3, is not in the call; user 2 would be the receiver himself.)
    table.apply(&[record(3, 4242, &[], None)]);
    let carol = Source { user_id: 3, kind: MediaKind::Audio };
    dec.decrypt_frame_from_source_into(&map, 4242, Codec::Opus, &packet, 1_000, &mut Vec::new()).unwrap_err();
    assert_eq!(map.take_stale(), vec![(4242, carol)]);
    assert!(map.take_misses().is_empty(), "a stale SSRC is not an unknown one");
    let alice = Source { user_id: 1, kind: MediaKind::Audio };
    assert!(table.unmap_stale(4242, alice).is_empty(), "not alice's any more");
    assert_eq!(table.unmap_stale(4242, carol), vec![SourceChange::Unmapped { ssrc: 4242, source: carol }]);
    assert_eq!(map.get(4242), None);
    table.apply(&[record(2, 4242, &[], None)]);
    table.apply(&[left(2, 4242)]);
    let e = dec.decrypt_frame_from_source_into(&map, 4242, Codec::Opus, &packet, 1_000, &mut Vec::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FrameUnknownSource);
}

#[test]
fn the_map_is_send_and_sync_and_misses_are_bounded() {
    fn both<T: Send + Sync>() {}
    both::<confchain::sources::SourceMap>();
    let map = SourceTable::new().map();
    for x in 0..10_000 {
        map.report_unknown(x % 100);
        map.report_unknown(x);
    }
    assert_eq!(map.take_misses().len(), confchain::limits::MAX_REPORTED_MISSES);
    assert!(map.take_misses().is_empty());
}

/// A clone is an independent table: what one applies, the other's readers do not see.
#[test]
fn a_cloned_table_has_its_own_map() {
    let mut a = SourceTable::new();
    a.apply(&[record(1, 5, &[], None)]);
    let mut b = a.clone();
    let (ma, mb) = (a.map(), b.map());
    assert_eq!(mb.get(5), src(1, MediaKind::Audio), "the clone starts with the same mappings");
    b.apply(&[record(2, 6, &[], None)]);
    assert_eq!((ma.get(6), mb.get(6)), (None, src(2, MediaKind::Audio)));
}

/// Review (hostile member): a member sprays junk frames on low SSRCs (each one unknown, each
/// lookup answered "nobody"), faster than lookups drain them. A real late joiner's SSRC, reported
/// first, must still be asked about before its deadline: lookups take the SSRCs waiting longest,
/// not the lowest numbers.
#[test]
fn junk_ssrcs_do_not_starve_an_earlier_unknown_ssrc() {
    let t = SourceTable::new();
    let mut s = LookupScheduler::new();
    let late_joiner = u32::MAX - 7;
    s.note_unknown(late_joiner, &t, 0);
    let mut junk = 1u32;
    let mut asked = false;
    let mut now = 0;
    while now < LOOKUP_DEADLINE_MS {
        for _ in 0..MAX_LOOKUP_BATCH {
            s.note_unknown(junk, &t, now);
            junk += 1;
        }
        if let Some((id, lookup)) = s.poll_lookup(now) {
            asked |= lookup.sources.contains(&late_joiner);
            s.on_answer(id, &t, now + 10);
        }
        now += LOOKUP_INTERVAL_MS;
    }
    assert!(asked, "the late joiner's SSRC was never asked about");
}

fn dated(mut r: ParticipantSources, date: i32) -> ParticipantSources {
    r.date = date;
    r
}

/// Review (hostile or merely late server): the server model gives a rejoin the same lowest free
/// SSRC and a later date, so the audio SSRC alone does not name a participation. A late leave of
/// the earlier one (same SSRC, earlier date) must not end the current one, nor may a late record
/// of the earlier participation bring back its sources.
#[test]
fn late_records_of_an_earlier_participation_change_nothing() {
    let mut t = SourceTable::new();
    t.apply(&[dated(record(1, 10, &[11], None), 100)]);
    // User 1 rejoins: the same audio SSRC, a later date, another camera SSRC.
    t.apply(&[dated(record(1, 10, &[12], None), 200)]);
    assert!(t.apply(&[dated(left(1, 10), 100)]).is_empty(), "a late leave of the earlier participation");
    assert_eq!((t.get(10), t.get(12)), (src(1, MediaKind::Audio), src(1, MediaKind::Video)));
    assert!(t.apply(&[dated(record(1, 10, &[11], None), 100)]).is_empty(), "a late record of the earlier one");
    assert_eq!((t.get(11), t.get(12)), (None, src(1, MediaKind::Video)));
    // The current participation's leave still ends it; unknown dates (0) still match.
    assert_eq!(t.apply(&[dated(left(1, 10), 200)]).len(), 2);
    t.apply(&[record(2, 20, &[], None)]);
    assert_eq!(t.apply(&[dated(left(2, 20), 300)]).len(), 1);
}
