//! Whole conferences carried by grammers with no network: every request is grammers' function
//! object, serialized by grammers (`Serializable`), answered by the server model's TL front from
//! those bytes, and parsed back by grammers (`Deserializable`, `RpcError::from`) into the objects
//! the adapter maps. Versions pinned in Cargo.toml (`=0.11.0`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use confchain::api::tl::{encode_request, Context, InputGroupCall};
use confchain::api::{CallIdentity, Response};
use confchain::server::tl::TlFront;
use confchain::server::Server;
use confchain::session::{Session, SessionConfig, SessionEvent, SessionState};
use confchain_grammers::{error_string, input_group_call, session_config, Conference, Function, Invoke, Routed};
use grammers_mtsender::{InvocationError, RpcError};
use grammers_tl_types as tl;
use rand_core::SeedableRng;
use tl::{Deserializable, RemoteCall, Serializable};

const CALL: CallIdentity = CallIdentity { id: 0x1234_5678, access_hash: -77 };
const RPC_ERROR: u32 = 0x2144ca19;

/// The network: the server model behind its TL front, and the pushes not yet delivered.
struct Net {
    server: Server,
    front: TlFront,
    pending: VecDeque<(i64, Vec<u8>)>,
    functions: Vec<u32>,
}

/// A grammers "client" for one user: serializes with grammers, parses with grammers.
struct FakeClient {
    net: Arc<Mutex<Net>>,
    user: i64,
    inject: Mutex<VecDeque<Result<&'static str, ()>>>,
}

impl FakeClient {
    fn answer(&self, bytes: &[u8]) -> Vec<u8> {
        let mut net = self.net.lock().unwrap();
        net.functions.push(u32::from_le_bytes(bytes[..4].try_into().unwrap()));
        let Net { server, front, pending, .. } = &mut *net;
        let (result, pushes) = front.handle(server, self.user, bytes);
        pending.extend(pushes);
        result
    }
}

impl Invoke for FakeClient {
    fn invoke<R: RemoteCall + Send + Sync>(
        &self,
        request: &R,
    ) -> impl std::future::Future<Output = Result<R::Return, InvocationError>> {
        let client = self;
        let bytes = request.to_bytes(); // grammers' serializer
        let forced = client.inject.lock().unwrap().pop_front();
        let outcome = match forced {
            Some(Err(())) => Err(InvocationError::Dropped("connection lost")),
            Some(Ok(message)) => {
                let rpc = tl::types::RpcError { error_code: 420, error_message: message.into() };
                Err(InvocationError::Rpc(RpcError::from(rpc)))
            }
            None => {
                let result = client.answer(&bytes);
                if u32::from_le_bytes(result[..4].try_into().unwrap()) == RPC_ERROR {
                    // As grammers' sender does with an rpc_result carrying rpc_error.
                    let tl::enums::RpcError::Error(rpc) = tl::enums::RpcError::from_bytes(&result).unwrap();
                    Err(InvocationError::Rpc(RpcError::from(rpc)))
                } else {
                    Ok(R::Return::from_bytes(&result).unwrap()) // grammers' parser
                }
            }
        };
        std::future::ready(outcome)
    }
}

/// The application's part of the functions, as `confchain::api::tl` takes it.
fn context_of(conf: &Conference) -> Context {
    let call = conf.call.as_ref().map(|c| match c {
        tl::enums::InputGroupCall::Call(c) => InputGroupCall::Id(CallIdentity { id: c.id, access_hash: c.access_hash }),
        tl::enums::InputGroupCall::Slug(s) => InputGroupCall::Slug(s.slug.clone()),
        tl::enums::InputGroupCall::InviteMessage(m) => InputGroupCall::InviteMessage(m.msg_id),
    });
    Context {
        call,
        params: conf.params.clone(),
        random_id: conf.random_id,
        source: conf.source,
        invite_hash: conf.invite_hash.clone(),
        muted: conf.muted,
        video_stopped: conf.video_stopped,
        ..Context::default()
    }
}

struct Member {
    client: FakeClient,
    session: Session,
    conf: Conference,
    rng: rand_chacha::ChaCha20Rng,
    events: Vec<SessionEvent>,
    connections: Vec<String>,
    sent: Vec<Function>,
}

impl Member {
    fn new(net: &Arc<Mutex<Net>>, user: i64, call: Option<tl::enums::InputGroupCall>) -> Member {
        let client = FakeClient { net: net.clone(), user, inject: Mutex::new(VecDeque::new()) };
        Member {
            client,
            session: Session::new(user, SessionConfig::default()).unwrap(),
            conf: Conference::new(call, format!("{{\"ssrc\":{user}}}"), 1000 + user as i32),
            rng: rand_chacha::ChaCha20Rng::seed_from_u64(user as u64),
            events: Vec::new(),
            connections: Vec::new(),
            sent: Vec::new(),
        }
    }

    async fn flush(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some((id, request)) = self.session.poll_request() {
            let function = self.conf.function(&request).expect("the call is known");
            // grammers' bytes are confchain's codec's bytes for the same request and context.
            assert_eq!(function.to_bytes(), encode_request(&request, &context_of(&self.conf)).unwrap());
            self.sent.push(function);
            let (response, other) = self.conf.send(&self.client, &request).await.unwrap();
            for r in other {
                if let Routed::Connection { params, .. } = r {
                    self.connections.push(params);
                }
            }
            self.session.handle_response(id, response, now, &mut self.rng);
            n += 1;
        }
        n
    }

    fn drain(&mut self) {
        while let Some(e) = self.session.poll_event() {
            self.events.push(e);
        }
    }
}

async fn settle(net: &Arc<Mutex<Net>>, members: &mut [&mut Member], now: &mut u64, rounds: usize) {
    for _ in 0..rounds {
        for m in members.iter_mut() {
            m.flush(*now).await;
        }
        let pending: Vec<_> = net.lock().unwrap().pending.drain(..).collect();
        for (to, bytes) in pending {
            // grammers parses the pushed Updates; the adapter routes each update.
            let updates = tl::enums::Updates::from_bytes(&bytes).unwrap();
            assert_eq!(updates.to_bytes(), bytes, "grammers writes back the front's bytes exactly");
            for m in members.iter_mut().filter(|m| m.client.user == to) {
                for u in confchain_grammers::updates_of(updates.clone()) {
                    if let Routed::Session(u) = m.conf.route(u, false) {
                        m.session.handle_update(u, *now, &mut m.rng);
                    }
                }
            }
        }
        *now += 300;
        for m in members.iter_mut() {
            m.session.handle_timeout(*now, &mut m.rng);
            m.drain();
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn conference_over_grammers() {
    let net = Arc::new(Mutex::new(Net {
        server: Server::new(),
        front: TlFront::new(CALL),
        pending: VecDeque::new(),
        functions: Vec::new(),
    }));
    let slug = net.lock().unwrap().front.invite_link.rsplit('/').next().unwrap().to_owned();
    let mut now = 1_000;
    let mut alice = Member::new(&net, 1, None);
    let by_link = tl::types::InputGroupCallSlug { slug }.into();
    let mut bob = Member::new(&net, 2, Some(by_link));
    let mut carol = Member::new(&net, 3, Some(input_group_call(CALL)));

    alice.session.create(true, now, &mut alice.rng).unwrap();
    settle(&net, &mut [&mut alice], &mut now, 3).await;
    assert_eq!(alice.session.state(), SessionState::Joined);
    assert_eq!(alice.conf.identity(), Some(CALL), "the create's result named the call");
    assert!(alice.connections.iter().any(|p| p.contains("transport")), "updateGroupCallConnection reached the app");
    match &alice.sent[0] {
        Function::Create(f) => assert!(f.join && f.params.is_some() && f.public_key.is_some() && f.random_id == 1001),
        other => panic!("{other:?}"),
    }

    bob.session.join(now, &mut bob.rng).unwrap();
    settle(&net, &mut [&mut alice, &mut bob], &mut now, 4).await;
    carol.session.join(now, &mut carol.rng).unwrap();
    settle(&net, &mut [&mut alice, &mut bob, &mut carol], &mut now, 40).await;
    assert_eq!(bob.conf.identity(), Some(CALL), "the join by slug learned the identity");
    for m in [&alice, &bob, &carol] {
        assert_eq!(m.session.state(), SessionState::Joined);
        assert_eq!(m.session.call().unwrap().height(), 2);
    }
    let fp = |m: &Member| m.session.call().unwrap().key_fingerprint();
    assert!(fp(&alice).is_some() && fp(&alice) == fp(&bob) && fp(&bob) == fp(&carol));
    let emojis = |m: &Member| m.session.call().unwrap().emojis().map(|e| e.to_vec());
    assert!(emojis(&alice).is_some() && emojis(&alice) == emojis(&carol));

    alice.session.send_message(r#"{"_":"groupCallMessage","text":"hi"}"#, now, &mut alice.rng).unwrap();
    settle(&net, &mut [&mut alice, &mut bob, &mut carol], &mut now, 3).await;
    for m in [&bob, &carol] {
        assert!(m
            .events
            .iter()
            .any(|e| matches!(e, SessionEvent::MessageReceived { from: 1, json } if json.contains("hi"))));
    }

    // A flood wait and a dropped connection on bob's next two requests.
    bob.client.inject.lock().unwrap().extend([Ok("FLOOD_WAIT_1"), Err(())]);
    alice.session.remove(&[3], true, now, &mut alice.rng).unwrap();
    settle(&net, &mut [&mut alice, &mut bob, &mut carol], &mut now, 60).await;
    assert_eq!(carol.session.state(), SessionState::Removed);
    assert!(alice.sent.iter().any(|f| matches!(f, Function::Delete(d) if d.kick && !d.only_left && d.ids == [3])));
    assert_eq!(alice.session.call().unwrap().height(), 3);
    assert_eq!(bob.session.call().unwrap().height(), 3);
    assert_eq!(fp(&alice), fp(&bob));
    assert!(bob.client.inject.lock().unwrap().is_empty());

    // An update about another call never reaches the session.
    let forged = tl::enums::Update::GroupCallChainBlocks(tl::types::UpdateGroupCallChainBlocks {
        call: input_group_call(CallIdentity { id: CALL.id + 1, access_hash: CALL.access_hash }),
        sub_chain_id: 0,
        blocks: vec![vec![0; 8]],
        next_offset: 9,
    });
    let parsed = tl::enums::Update::from_bytes(&forged.to_bytes()).unwrap();
    assert!(matches!(bob.conf.route(parsed, false), Routed::Other(_)));

    bob.session.leave(now);
    settle(&net, &mut [&mut alice, &mut bob], &mut now, 3).await;
    assert_eq!(bob.session.state(), SessionState::Left);
    assert!(matches!(bob.sent.last(), Some(Function::Leave(_))));

    use tl::functions::phone;
    use tl::Identifiable;
    let seen = net.lock().unwrap().functions.clone();
    for id in [
        phone::CreateConferenceCall::CONSTRUCTOR_ID,
        phone::JoinGroupCall::CONSTRUCTOR_ID,
        phone::GetGroupCallChainBlocks::CONSTRUCTOR_ID,
        phone::SendConferenceCallBroadcast::CONSTRUCTOR_ID,
        phone::SendGroupCallEncryptedMessage::CONSTRUCTOR_ID,
        phone::DeleteConferenceCallParticipants::CONSTRUCTOR_ID,
        phone::LeaveGroupCall::CONSTRUCTOR_ID,
    ] {
        assert!(seen.contains(&id), "{id:#x} crossed as grammers' bytes");
    }
}

#[test]
fn errors_through_grammers_types() {
    for message in [
        "FLOOD_WAIT_30",
        "FLOOD_PREMIUM_WAIT_5",
        "GROUPCALL_FORBIDDEN",
        "GROUPCALL_JOIN_MISSING",
        "GROUPCALL_INVALID",
        "GROUPCALL_SSRC_DUPLICATE_MUCH",
        "CONF_WRITE_CHAIN_INVALID",
    ] {
        let bytes = confchain::api::tl::encode_rpc_error(400, message);
        let tl::enums::RpcError::Error(rpc) = tl::enums::RpcError::from_bytes(&bytes).unwrap();
        let e = InvocationError::Rpc(RpcError::from(rpc));
        assert_eq!(error_string(&e), message);
    }
    // Telegram's -503 "Timeout" is no answer in time: TIMEOUT (transient), as the other adapters
    // map it, not an unknown error that ends the operation. Unknown errors stay what they are.
    for (code, message, want) in [
        (-503, "Timeout", "TIMEOUT"),
        (-503, "Timedout", "TIMEOUT"),
        (400, "PEER_ID_INVALID", "PEER_ID_INVALID"),
        (420, "FLOOD_WAIT_7", "FLOOD_WAIT_7"),
    ] {
        let bytes = confchain::api::tl::encode_rpc_error(code, message);
        let tl::enums::RpcError::Error(rpc) = tl::enums::RpcError::from_bytes(&bytes).unwrap();
        let e = error_string(&InvocationError::Rpc(RpcError::from(rpc)));
        assert_eq!(e, want);
        assert_eq!(confchain::api::ApiError::parse(&e).is_transient(), want != "PEER_ID_INVALID");
    }
    assert_eq!(error_string(&InvocationError::Dropped("gone")), "TIMEOUT");
    assert_eq!(error_string(&InvocationError::Io(std::io::ErrorKind::ConnectionReset.into())), "TIMEOUT");
    let (r, _) = Conference::new(None, "{}".into(), 1).response(Err(InvocationError::Dropped("x")));
    assert_eq!(r, Response::Error("TIMEOUT".into()));
}

#[test]
fn discarded_call_reaches_the_session() {
    let mut conf = Conference::new(Some(input_group_call(CALL)), "{}".into(), 1);
    let ended = tl::enums::Update::GroupCall(tl::types::UpdateGroupCall {
        live_story: false,
        peer: None,
        call: tl::types::GroupCallDiscarded { id: CALL.id, access_hash: CALL.access_hash, duration: 5 }.into(),
    });
    let parsed = tl::enums::Update::from_bytes(&ended.to_bytes()).unwrap();
    assert_eq!(
        conf.route(parsed, false),
        Routed::Session(confchain::api::Update::GroupCall { call: CALL, discarded: true, invite_link: None })
    );
}

/// Updates about another call, or pushes while the call is known only by slug, never reach the
/// session: not a discarded other call (which would end ours), not its blocks.
#[test]
fn other_calls_never_reach_the_session() {
    let other = CallIdentity { id: CALL.id, access_hash: CALL.access_hash + 1 };
    let discarded = |c: CallIdentity| {
        let u = tl::enums::Update::GroupCall(tl::types::UpdateGroupCall {
            live_story: false,
            peer: None,
            call: tl::types::GroupCallDiscarded { id: c.id, access_hash: c.access_hash, duration: 5 }.into(),
        });
        tl::enums::Update::from_bytes(&u.to_bytes()).unwrap()
    };
    let mut known = Conference::new(Some(input_group_call(CALL)), "{}".into(), 1);
    for from_result in [false, true] {
        assert!(matches!(known.route(discarded(other), from_result), Routed::Other(_)));
    }
    assert_eq!(known.identity(), Some(CALL), "the identity is not replaced");
    // Known only by slug: a push names no call of ours and teaches nothing.
    let slug: tl::enums::InputGroupCall = tl::types::InputGroupCallSlug { slug: "abc".into() }.into();
    let mut by_link = Conference::new(Some(slug), "{}".into(), 1);
    assert!(matches!(by_link.route(discarded(other), false), Routed::Other(_)));
    assert_eq!(by_link.identity(), None);
    let (r, _) = by_link.response(Err(InvocationError::Rpc(RpcError::from(tl::types::RpcError {
        error_code: -503,
        error_message: "Timeout".into(),
    }))));
    assert_eq!(r, Response::Error("TIMEOUT".into()));
}

/// Participant updates carry grammers' own `source`, `video` and `presentation` into the
/// conference's SSRC table (issue 34); a leave unmaps its participation's SSRCs.
#[test]
fn participant_sources_reach_the_ssrc_table() {
    use confchain::sources::{MediaKind, Source};
    let group = |semantics: &str, sources: Vec<i32>| -> tl::enums::GroupCallParticipantVideoSourceGroup {
        tl::types::GroupCallParticipantVideoSourceGroup { semantics: semantics.into(), sources }.into()
    };
    let video = |endpoint: &str, groups, audio_source| -> tl::enums::GroupCallParticipantVideo {
        tl::types::GroupCallParticipantVideo {
            paused: false,
            endpoint: endpoint.into(),
            source_groups: groups,
            audio_source,
        }
        .into()
    };
    let participant = |user_id: i64, source: i32, left: bool, v, p| -> tl::enums::GroupCallParticipant {
        tl::types::GroupCallParticipant {
            muted: false,
            left,
            can_self_unmute: true,
            just_joined: false,
            versioned: false,
            min: false,
            muted_by_you: false,
            volume_by_admin: false,
            is_self: false,
            video_joined: false,
            peer: tl::types::PeerUser { user_id }.into(),
            date: 0,
            active_date: None,
            source,
            volume: None,
            about: None,
            raise_hand_rating: None,
            video: v,
            presentation: p,
            paid_stars_total: None,
        }
        .into()
    };
    let update = |participants| {
        let u = tl::enums::Update::GroupCallParticipants(tl::types::UpdateGroupCallParticipants {
            call: input_group_call(CALL),
            participants,
            version: 1,
        });
        tl::enums::Update::from_bytes(&u.to_bytes()).unwrap()
    };
    let mut conf = Conference::new(Some(input_group_call(CALL)), "{}".into(), 1);
    let map = conf.sources.map();
    let cam = video("e", vec![group("SIM", vec![10, 11]), group("FID", vec![10, 12])], None);
    let screen = video("p", vec![group("SIM", vec![20])], Some(21));
    let routed = conf.route(
        update(vec![participant(2, -5, false, Some(cam), Some(screen)), participant(3, 30, false, None, None)]),
        false,
    );
    let Routed::Session(confchain::api::Update::Participants { participants }) = routed else { panic!("{routed:?}") };
    assert_eq!(participants.len(), 2);
    let source = |user_id, kind| Some(Source { user_id, kind });
    assert_eq!(map.get(u32::MAX - 4), source(2, MediaKind::Audio), "a negative TL int is the SSRC above 2^31");
    assert_eq!(map.get(12), source(2, MediaKind::Video));
    assert_eq!(map.get(20), source(2, MediaKind::Screencast));
    assert_eq!(map.get(21), source(2, MediaKind::ScreencastAudio));
    assert_eq!(map.get(30), source(3, MediaKind::Audio));
    conf.route(update(vec![participant(3, 30, true, None, None)]), false);
    assert_eq!(map.get(30), None);
}

#[test]
fn api_errors_are_built_from_the_typed_error() {
    use confchain::api::ApiError;
    use confchain_grammers::api_error;
    for (code, message, want) in [
        (420, "FLOOD_WAIT_7", ApiError::FloodWait { seconds: 7 }),
        (420, "FLOOD_PREMIUM_WAIT_3", ApiError::FloodWait { seconds: 3 }),
        (400, "CONF_WRITE_CHAIN_INVALID", ApiError::ChainRace),
        (403, "GROUPCALL_FORBIDDEN", ApiError::Forbidden),
        (-503, "Timeout", ApiError::Transient("TIMEOUT".into())),
        (400, "PEER_ID_INVALID", ApiError::Other("PEER_ID_INVALID".into())),
    ] {
        let bytes = confchain::api::tl::encode_rpc_error(code, message);
        let tl::enums::RpcError::Error(rpc) = tl::enums::RpcError::from_bytes(&bytes).unwrap();
        assert_eq!(api_error(&InvocationError::Rpc(RpcError::from(rpc))), want, "{message}");
    }
    assert_eq!(api_error(&InvocationError::Dropped("gone")), ApiError::Transient("TIMEOUT".into()));
}

/// Answers `help.getAppConfig` with `config`, serialized and parsed back by grammers.
struct AppConfigClient(tl::enums::Jsonvalue);

impl Invoke for AppConfigClient {
    fn invoke<R: RemoteCall + Send + Sync>(
        &self,
        request: &R,
    ) -> impl std::future::Future<Output = Result<R::Return, InvocationError>> {
        let bytes = request.to_bytes();
        assert_eq!(bytes, tl::functions::help::GetAppConfig { hash: 0 }.to_bytes());
        let answer = tl::enums::help::AppConfig::Config(tl::types::help::AppConfig { hash: 1, config: self.0.clone() });
        std::future::ready(Ok(R::Return::from_bytes(&answer.to_bytes()).unwrap()))
    }
}

/// The call size limit of Telegram's app config reaches the session's configuration (brought into
/// its range); without it, or not a number, the default stays.
#[tokio::test(flavor = "current_thread")]
async fn session_config_from_the_app_config() {
    use tl::enums::{JsonobjectValue, Jsonvalue};
    let app = |pairs: Vec<(&str, Jsonvalue)>| {
        Jsonvalue::JsonObject(tl::types::JsonObject {
            value: pairs
                .into_iter()
                .map(|(key, value)| {
                    JsonobjectValue::JsonObjectValue(tl::types::JsonObjectValue { key: key.into(), value })
                })
                .collect(),
        })
    };
    let number = |value| Jsonvalue::JsonNumber(tl::types::JsonNumber { value });
    let text = Jsonvalue::JsonString(tl::types::JsonString { value: "500".into() });
    let cases = [
        (app(vec![("a", Jsonvalue::JsonNull), ("conference_call_size_limit", number(500.0))]), 500),
        (app(vec![("conference_call_size_limit", number(1e9))]), 10_000),
        (app(vec![("conference_call_size_limit", number(f64::NAN))]), 200),
        (app(vec![("conference_call_size_limit", text)]), 200),
        (app(vec![]), 200),
    ];
    for (config, limit) in cases {
        let config = session_config(&AppConfigClient(config)).await.unwrap();
        assert_eq!(config.call_size_limit, limit);
        Session::new(1, config).unwrap();
    }
}
