//! The API TL codec (`confchain::api::tl`) and the server model's TL front against a hostile
//! server or peer: declared lengths and counts larger than the input, nesting, negative flags,
//! trailing bytes, updates about another call, error codes, and the flags that must go together
//! (`createConferenceCall`'s shared flags.3, exactly one of `only_left` / `kick`).

use confchain::api::tl::{
    decode_request, decode_result, decode_source_lookup, encode_group_participants, encode_participants,
    encode_request, encode_rpc_error, encode_source_lookup, encode_updates, id, Answer, Context, GroupParticipants,
    InputGroupCall, TlUpdate,
};
use confchain::api::{
    ApiError, CallIdentity, MediaSources, ParticipantSources, Request, Response, SourceGroup, SourceLookup, SubChain,
    Update, VideoSources,
};
use confchain::server::tl::TlFront;
use confchain::server::Server;
use confchain::session::{Session, SessionConfig, SessionState};
use confchain::ErrorKind;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const CALL: CallIdentity = CallIdentity { id: 10, access_hash: 20 };
const OTHER: CallIdentity = CallIdentity { id: 11, access_hash: 20 };

/// Little-endian TL words, written by hand (what a hostile server sends).
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A short-form TL string.
    fn str(&mut self, s: &[u8]) -> &mut Self {
        assert!(s.len() < 254);
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }
    fn call(&mut self, c: &CallIdentity) -> &mut Self {
        self.u32(id::INPUT_GROUP_CALL).i64(c.id).i64(c.access_hash)
    }
    fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// `updates(updates: [..], users: [], chats: [], date, seq)` around `body` (n updates).
fn updates(n: u32, body: &[u8]) -> Vec<u8> {
    let mut w = W::default();
    w.u32(id::UPDATES).u32(id::VECTOR).u32(n).raw(body);
    w.u32(id::VECTOR).u32(0).u32(id::VECTOR).u32(0).i32(0).i32(0);
    w.bytes()
}

fn parse_err(bytes: &[u8]) {
    match decode_result(bytes) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Parse, "{e:?}"),
        Ok(a) => panic!("accepted: {a:?}"),
    }
}

#[test]
fn declared_lengths_beyond_the_input_are_errors() {
    // rpc_error whose message claims 2^24 - 1 bytes (long form), 2^56 - 1 (8-byte form), 200.
    for len in [&[0xfe, 0xff, 0xff, 0xff][..], &[0xff; 8][..], &[200, b'A', b'B', b'C'][..]] {
        let mut w = W::default();
        w.u32(id::RPC_ERROR).i32(420).raw(len).raw(&[0; 8]);
        parse_err(&w.bytes());
    }
    // The same inside an updateShort's invite link, slug, block and encrypted message.
    let mut w = W::default();
    w.u32(id::UPDATE_SHORT).u32(id::UPDATE_GROUP_CALL_ENCRYPTED_MESSAGE);
    w.u32(id::INPUT_GROUP_CALL_SLUG).raw(&[0xfe, 0xff, 0xff, 0x7f]);
    parse_err(&w.bytes());
    let mut w = W::default();
    w.u32(id::UPDATE_SHORT).u32(id::UPDATE_GROUP_CALL_ENCRYPTED_MESSAGE).call(&CALL);
    w.u32(id::PEER_USER).i64(1).raw(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]).i32(0);
    parse_err(&w.bytes());
}

#[test]
fn counts_beyond_the_input_are_errors_without_allocating() {
    // updates: a vector of u32::MAX updates.
    parse_err(&updates(u32::MAX, &[]));
    // updateGroupCallChainBlocks with u32::MAX blocks, then u32::MAX / 4 + 1 (a count that fits
    // in the bytes left only if each block took less than one byte).
    for n in [u32::MAX, 0x4000_0000] {
        let mut w = W::default();
        w.u32(id::UPDATE_GROUP_CALL_CHAIN_BLOCKS).call(&CALL).i32(0).u32(id::VECTOR).u32(n).i32(0);
        parse_err(&updates(1, &w.bytes()));
    }
    // Many empty blocks that do fit: each takes four bytes, and all are read.
    let mut w = W::default();
    w.u32(id::UPDATE_GROUP_CALL_CHAIN_BLOCKS).call(&CALL).i32(0).u32(id::VECTOR).u32(1000);
    for _ in 0..1000 {
        w.u32(0);
    }
    w.i32(1000);
    let Answer::Updates(u) = decode_result(&updates(1, &w.bytes())).unwrap() else { panic!() };
    assert!(
        matches!(&u[..], [TlUpdate::Session { update: Update::ChainBlocks { blocks, .. }, .. }] if blocks.len() == 1000)
    );
    // updateGroupCallParticipants with u32::MAX participants.
    let mut w = W::default();
    w.u32(id::UPDATE_GROUP_CALL_PARTICIPANTS).call(&CALL).u32(id::VECTOR).u32(u32::MAX).i32(0);
    parse_err(&updates(1, &w.bytes()));
    // A participant's video with u32::MAX source groups, and a group with 2^30 sources (whose
    // byte size overflows 32 bits).
    for (groups, sources) in [(u32::MAX, 0), (1, 0x4000_0000), (1, u32::MAX)] {
        let mut w = W::default();
        w.u32(id::UPDATE_GROUP_CALL_PARTICIPANTS).call(&CALL).u32(id::VECTOR).u32(1);
        w.u32(id::GROUP_CALL_PARTICIPANT).u32(1 << 6).u32(id::PEER_USER).i64(5).i32(0).i32(0);
        w.u32(id::GROUP_CALL_PARTICIPANT_VIDEO).u32(0).str(b"e").u32(id::VECTOR).u32(groups);
        w.u32(id::GROUP_CALL_PARTICIPANT_VIDEO_SOURCE_GROUP).str(b"SIM").u32(id::VECTOR).u32(sources);
        w.i32(0).i32(0);
        parse_err(&updates(1, &w.bytes()));
    }
    // A deleteConferenceCallParticipants with u32::MAX ids.
    let mut w = W::default();
    w.u32(id::DELETE_CONFERENCE_CALL_PARTICIPANTS).u32(1).call(&CALL).u32(id::VECTOR).u32(u32::MAX).i64(1);
    assert!(decode_request(&w.bytes()).is_err());
}

#[test]
fn nothing_nests() {
    // updateShort whose update is an Updates, and updates inside updates: unknown constructors.
    let inner = updates(0, &[]);
    let mut w = W::default();
    w.u32(id::UPDATE_SHORT).raw(&inner).i32(0);
    parse_err(&w.bytes());
    parse_err(&updates(1, &inner));
    // A thousand nested updateShort: rejected at the second, no recursion.
    let mut w = W::default();
    for _ in 0..1000 {
        w.u32(id::UPDATE_SHORT);
    }
    parse_err(&w.bytes());
}

#[test]
fn negative_flags_and_trailing_bytes_are_errors() {
    let mut w = W::default();
    w.u32(id::UPDATE_GROUP_CALL_PARTICIPANTS).call(&CALL).u32(id::VECTOR).u32(1);
    w.u32(id::GROUP_CALL_PARTICIPANT).i32(-1).u32(id::PEER_USER).i64(5).i32(0).i32(0).i32(0);
    parse_err(&updates(1, &w.bytes()));
    let mut w = W::default();
    w.u32(id::UPDATE_SHORT).u32(id::UPDATE_GROUP_CALL).i32(i32::MIN);
    parse_err(&w.bytes());
    // Trailing bytes after each kind of result.
    let good = encode_updates(
        &CALL,
        &[Update::ChainBlocks { sub_chain: SubChain::Blocks, blocks: vec![], next_offset: 0 }],
        0,
    );
    for valid in [good, encode_rpc_error(400, "X"), id::BOOL_TRUE.to_le_bytes().to_vec()] {
        assert!(decode_result(&valid).is_ok());
        let mut long = valid.clone();
        long.extend_from_slice(&[0; 4]);
        parse_err(&long);
    }
}

/// Updates about another call, or naming the call by slug or invite message, never reach the
/// session through `into_response_for`; the identity a result names is the first one.
#[test]
fn updates_about_another_call_are_set_aside() {
    let mut body = W::default();
    // updateGroupCall: the other call, discarded.
    body.u32(id::UPDATE_GROUP_CALL).u32(0).u32(id::GROUP_CALL_DISCARDED).i64(OTHER.id).i64(OTHER.access_hash).i32(0);
    // Blocks for the other call, for a slug, for an invite message; then ours.
    for call in [
        W::default().call(&OTHER).bytes(),
        W::default().u32(id::INPUT_GROUP_CALL_SLUG).str(b"slug").bytes(),
        W::default().u32(id::INPUT_GROUP_CALL_INVITE_MESSAGE).i32(9).bytes(),
        W::default().call(&CALL).bytes(),
    ] {
        body.u32(id::UPDATE_GROUP_CALL_CHAIN_BLOCKS).raw(&call).i32(0).u32(id::VECTOR).u32(0).i32(7);
    }
    let answer = decode_result(&updates(5, &body.bytes())).unwrap();
    assert_eq!(answer.call_named(), Some(OTHER), "the first identity named");
    let (response, other) = answer.clone().into_response_for(&CALL);
    assert_eq!(
        response,
        Response::Ok(vec![Update::ChainBlocks { sub_chain: SubChain::Blocks, blocks: vec![], next_offset: 7 }])
    );
    assert_eq!(other.len(), 4);
    // The unfiltered form gives all five (its documentation says so).
    let (Response::Ok(all), _) = answer.into_response() else { panic!() };
    assert_eq!(all.len(), 5);
}

/// Telegram's `-503 Timeout` is a transport-like failure (`TIMEOUT`, transient); a flood wait is
/// exactly `FLOOD_WAIT_X`; other errors stay what they are and are not retried as transient.
#[test]
fn error_codes_map_as_the_adapters_do() {
    let timeout = decode_result(&encode_rpc_error(-503, "Timeout")).unwrap();
    let (response, _) = timeout.into_response();
    assert_eq!(response, Response::Error("TIMEOUT".into()));
    let Response::Error(e) = response else { panic!() };
    assert!(ApiError::parse(&e).is_transient());
    let flood = decode_result(&encode_rpc_error(420, "FLOOD_WAIT_30")).unwrap();
    let (Response::Error(e), _) = flood.into_response_for(&CALL) else { panic!() };
    assert_eq!(ApiError::parse(&e), ApiError::FloodWait { seconds: 30 });
    // A hostile X: too long for a u32 is the longest wait (the typed reason still ends the
    // operation); no digits, or signs, are not a flood wait.
    assert_eq!(ApiError::parse("FLOOD_WAIT_99999999999999999999"), ApiError::FloodWait { seconds: u32::MAX });
    assert_eq!(ApiError::parse("FLOOD_PREMIUM_WAIT_4294967296"), ApiError::FloodWait { seconds: u32::MAX });
    for not_flood in ["FLOOD_WAIT_", "FLOOD_WAIT_+5", "FLOOD_WAIT_-5", "FLOOD_WAIT_5s"] {
        assert_eq!(ApiError::parse(not_flood), ApiError::Other(not_flood.into()));
    }
    for unknown in ["PEER_ID_INVALID", "Timeout_not", "FLOOD", "BAD_REQUEST", "GROUPCALL_ALREADY_STARTED"] {
        let (Response::Error(e), _) = decode_result(&encode_rpc_error(400, unknown)).unwrap().into_response() else {
            panic!()
        };
        assert_eq!(e, unknown);
        assert!(!ApiError::parse(&e).is_transient(), "{unknown} is not transient");
    }
}

fn block() -> (confchain::PublicKey, confchain::PlainBlock) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let key = confchain::PrivateKey::generate(&mut rng);
    let me = confchain::GroupParticipant {
        user_id: 1,
        public_key: key.public_key(),
        flags: confchain::Permissions::ALL,
        version: 0,
    };
    let state = confchain::GroupState { participants: vec![me], external_permissions: confchain::Permissions::NONE };
    (key.public_key(), confchain::build_zero_block(state, &key, &mut rng).unwrap())
}

/// `deleteConferenceCallParticipants` carries exactly one of `only_left` (flags.0) and `kick`
/// (flags.1): both or neither is refused (the front answers `INPUT_FETCH_ERROR`, nothing changes).
#[test]
fn delete_needs_exactly_one_of_only_left_and_kick() {
    let (_, block) = block();
    let ctx = Context { call: Some(InputGroupCall::Id(CALL)), ..Context::default() };
    for kick in [false, true] {
        let req = Request::DeleteParticipants { user_ids: vec![2], block: block.clone(), kick };
        let bytes = encode_request(&req, &ctx).unwrap();
        let flags = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        assert_eq!(flags, if kick { 2 } else { 1 });
        assert_eq!(decode_request(&bytes).unwrap().0, req);
        for bad in [0u32, 3, 3 | 1 << 9] {
            let mut b = bytes.clone();
            b[4..8].copy_from_slice(&bad.to_le_bytes());
            let e = decode_request(&b).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Parse, "flags {bad}");
            let front = TlFront::new(CALL);
            let mut server = Server::existing();
            let (result, pushes) = front.handle(&mut server, 1, &b);
            assert_eq!(
                decode_result(&result).unwrap(),
                Answer::Error { code: 400, message: "INPUT_FETCH_ERROR".into() }
            );
            assert!(pushes.is_empty());
        }
    }
}

/// `createConferenceCall`: `join`, `public_key`, `block` and `params` share flags.3. A joining
/// create always writes `params`; decoding one without it fails; a plain create carries none.
#[test]
fn create_shares_flags_3() {
    let (key, block) = block();
    let ctx = Context { params: "{\"p\":1}".into(), ..Context::default() };
    let req = Request::CreateConference { public_key: Some(key), block: Some(block.clone()) };
    let bytes = encode_request(&req, &ctx).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()) & 8, 8);
    let tail = {
        let mut w = W::default();
        w.u32(id::DATA_JSON).str(b"{\"p\":1}");
        w.bytes()
    };
    assert!(bytes.ends_with(&tail), "params follow the block");
    // flags.3 set but the params cut off: an error, never a join without params.
    assert!(decode_request(&bytes[..bytes.len() - tail.len()]).is_err());
    // flags.3 clear with the key, block and params present: trailing bytes, an error.
    let mut b = bytes.clone();
    b[4] &= !8;
    assert!(decode_request(&b).is_err());
    // Only one of key and block (the session never asks it): no flags.3 at all, so no join.
    for half in [
        Request::CreateConference { public_key: Some(key), block: None },
        Request::CreateConference { public_key: None, block: Some(block.clone()) },
    ] {
        let bytes = encode_request(&half, &ctx).unwrap();
        assert_eq!(bytes.len(), 12);
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()) & 8, 0);
    }
}

/// Once a session knows its call, an `updateGroupCall` about another call (a discarded one, say)
/// neither renames nor ends it, whether the adapter filtered it or not.
#[test]
fn another_calls_update_group_call_changes_nothing() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let front = TlFront::new(CALL);
    let mut server = Server::new();
    let mut alice = Session::new(1, SessionConfig::default()).unwrap();
    alice.create(true, 0, &mut rng).unwrap();
    let mut ctx = Context::default();
    while let Some((rid, request)) = alice.poll_request() {
        let (result, _) = front.handle(&mut server, 1, &encode_request(&request, &ctx).unwrap());
        let answer = decode_result(&result).unwrap();
        let call = answer.call_named().unwrap_or(CALL);
        ctx.call = Some(InputGroupCall::Id(call));
        let (response, _) = answer.into_response_for(&call);
        alice.handle_response(rid, response, 0, &mut rng);
    }
    assert_eq!((alice.state(), alice.call_identity()), (SessionState::Joined, Some(CALL)));
    while alice.poll_event().is_some() {}

    // Through bytes: the push about the other call is set aside.
    let push = encode_updates(&OTHER, &[Update::GroupCall { call: OTHER, discarded: true, invite_link: None }], 0);
    let (Response::Ok(mine), other) = decode_result(&push).unwrap().into_response_for(&CALL) else { panic!() };
    assert!(mine.is_empty());
    assert_eq!(other.len(), 1);
    // Fed to the session anyway (an adapter that does not filter): ignored.
    for discarded in [true, false] {
        let link = Some("https://t.me/call/other".to_owned());
        alice.handle_update(Update::GroupCall { call: OTHER, discarded, invite_link: link }, 0, &mut rng);
    }
    assert_eq!((alice.state(), alice.call_identity()), (SessionState::Joined, Some(CALL)));
    assert!(alice.poll_event().is_none(), "no event for another call");
    // Our own call's end still ends it.
    alice.handle_update(Update::GroupCall { call: CALL, discarded: true, invite_link: None }, 0, &mut rng);
    assert_eq!(alice.state(), SessionState::Ended);
}

fn seeds() -> Vec<Vec<u8>> {
    let (key, block) = block();
    let ctx =
        Context { call: Some(InputGroupCall::Slug("s".into())), invite_hash: Some("h".into()), ..Context::default() };
    let mut out = vec![
        encode_updates(
            &CALL,
            &[
                Update::ChainBlocks {
                    sub_chain: SubChain::Broadcasts,
                    blocks: vec![vec![1; 9].into(), vec![].into()],
                    next_offset: 2,
                },
                Update::EncryptedMessage { from: 3, encrypted_message: vec![4; 300] },
                Update::GroupCall { call: CALL, discarded: false, invite_link: Some("l".into()) },
                Update::Participants { participants: vec![confchain::api::CallParticipant::new(1, true)] },
            ],
            0,
        ),
        encode_rpc_error(420, "FLOOD_WAIT_3"),
    ];
    for req in [
        Request::Join { public_key: key, block: block.clone() },
        Request::CreateConference { public_key: Some(key), block: Some(block.clone()) },
        Request::DeleteParticipants { user_ids: vec![1, 2], block, kick: true },
        Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 },
    ] {
        out.push(encode_request(&req, &ctx).unwrap());
    }
    let sources = sourced(5);
    out.push(encode_participants(&CALL, std::slice::from_ref(&sources), 3, 0));
    let answer = GroupParticipants { count: 2, participants: vec![sources], next_offset: "x".into() };
    out.push(encode_group_participants(&answer, 1));
    out.push(encode_source_lookup(&SourceLookup { sources: vec![1, 2, 3] }, &ctx).unwrap());
    out
}

/// A participant with audio, camera and screencast sources.
fn sourced(user_id: i64) -> ParticipantSources {
    let video = |ssrcs: Vec<u32>, audio_source| VideoSources {
        endpoint: "endpoint".into(),
        source_groups: vec![
            SourceGroup { semantics: "SIM".into(), sources: ssrcs.clone() },
            SourceGroup { semantics: "FID".into(), sources: ssrcs.iter().map(|s| s + 1).collect() },
        ],
        audio_source,
    };
    let sources = MediaSources {
        audio: 10,
        video: Some(video(vec![20, 30], None)),
        presentation: Some(video(vec![40], Some(u32::MAX))),
    };
    ParticipantSources { user_id, left: false, sources, ..ParticipantSources::default() }
}

/// The sources of participants: counts beyond the input are errors without allocating (in an
/// update and in a lookup's answer); a lookup request names few sources, by source only.
#[test]
fn participant_sources_and_lookups_are_bounded() {
    // phone.groupParticipants with u32::MAX participants, and one whose video claims 2^30 groups.
    let mut w = W::default();
    w.u32(id::GROUP_PARTICIPANTS).i32(1).u32(id::VECTOR).u32(u32::MAX).str(b"");
    parse_err(&w.bytes());
    let mut w = W::default();
    w.u32(id::GROUP_PARTICIPANTS).i32(1).u32(id::VECTOR).u32(1);
    w.u32(id::GROUP_CALL_PARTICIPANT).u32(1 << 14).u32(id::PEER_USER).i64(5).i32(0).i32(0);
    w.u32(id::GROUP_CALL_PARTICIPANT_VIDEO).u32(0).str(b"e").u32(id::VECTOR).u32(0x4000_0000);
    parse_err(&w.bytes());
    // Round trips: the session's update carries the sources (and the update's version).
    let Answer::Updates(u) = decode_result(&seeds()[6]).unwrap() else { panic!() };
    let [TlUpdate::Session { update: Update::Participants { participants }, call }] = &u[..] else { panic!("{u:?}") };
    let versioned = ParticipantSources { version: 3, ..sourced(5) };
    assert_eq!((&participants[..], call), (&[versioned.clone()][..], &InputGroupCall::Id(CALL)));
    let (response, other) = decode_result(&seeds()[6]).unwrap().into_response_for(&CALL);
    assert_eq!(response, Response::Ok(vec![Update::Participants { participants: vec![versioned] }]));
    assert!(other.is_empty());
    // A lookup's answer is the session's participants update.
    let Answer::Participants(p) = decode_result(&seeds()[7]).unwrap() else { panic!() };
    assert_eq!(p.participants, vec![sourced(5)]);
    let want = Response::Ok(vec![Update::Participants { participants: vec![sourced(5)] }]);
    assert_eq!(decode_result(&seeds()[7]).unwrap().into_response(), (want, vec![]));
    // A lookup by peer, with an offset, or naming too many sources is not read.
    let lookup = &seeds()[8];
    assert_eq!(decode_source_lookup(lookup).unwrap().0.sources, vec![1, 2, 3]);
    let mut by_peer = W::default();
    by_peer.u32(id::GET_GROUP_PARTICIPANTS).call(&CALL).u32(id::VECTOR).u32(1).u32(id::INPUT_PEER_SELF);
    by_peer.u32(id::VECTOR).u32(0).str(b"").i32(1);
    assert!(decode_source_lookup(&by_peer.bytes()).is_err());
    let mut offset = W::default();
    offset.u32(id::GET_GROUP_PARTICIPANTS).call(&CALL).u32(id::VECTOR).u32(0).u32(id::VECTOR).u32(0).str(b"o").i32(1);
    assert!(decode_source_lookup(&offset.bytes()).is_err());
    let mut many = W::default();
    many.u32(id::GET_GROUP_PARTICIPANTS).call(&CALL).u32(id::VECTOR).u32(0).u32(id::VECTOR).u32(u32::MAX);
    assert!(decode_source_lookup(&many.bytes()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes never panic either decoder.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_result(&bytes);
        let _ = decode_request(&bytes);
        let _ = decode_source_lookup(&bytes);
    }

    /// Valid messages with a few bytes changed, cut or extended never panic; what still decodes
    /// re-encodes (requests) to something that decodes to the same.
    #[test]
    fn mutated_messages_never_panic(
        which in 0usize..9,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
        word in proptest::option::of(any::<u32>()),
    ) {
        let mut b = seeds()[which].clone();
        for (at, v) in edits {
            let i = at % b.len();
            b[i] = v;
        }
        if let Some(c) = cut {
            b.truncate(c % (b.len() + 1));
        }
        if let Some(w) = word {
            // A count or length word at a word boundary.
            let i = (w as usize % (b.len() / 4 + 1)) * 4;
            if i + 4 <= b.len() {
                b[i..i + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
        let _ = decode_result(&b);
        if let Ok((lookup, call)) = decode_source_lookup(&b) {
            let ctx = Context { call: Some(call), ..Context::default() };
            prop_assert_eq!(decode_source_lookup(&encode_source_lookup(&lookup, &ctx).unwrap()).unwrap().0, lookup);
        }
        if let Ok((req, ctx)) = decode_request(&b) {
            let again = encode_request(&req, &ctx);
            if let Ok(again) = again {
                let (req2, _) = decode_request(&again).unwrap();
                prop_assert_eq!(req2, req);
            }
        }
    }
}

/// `updateGroupCallEncryptedMessage` from a chat or channel whose number is a member's user id is
/// not that member's message: dropped, as the adapters drop it.
#[test]
fn messages_from_non_users_are_dropped() {
    for (peer, kept) in [(id::PEER_USER, true), (id::PEER_CHANNEL, false), (id::PEER_CHAT, false)] {
        let mut w = W::default();
        w.u32(id::UPDATE_GROUP_CALL_ENCRYPTED_MESSAGE).call(&CALL).u32(peer).i64(2).str(b"msg");
        let Answer::Updates(u) = decode_result(&updates(1, &w.bytes())).unwrap() else { panic!() };
        let want = Update::EncryptedMessage { from: 2, encrypted_message: b"msg".to_vec() };
        let want = if kept { vec![TlUpdate::Session { call: InputGroupCall::Id(CALL), update: want }] } else { vec![] };
        assert_eq!(u, want);
    }
}
