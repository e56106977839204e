//! Carries a [`confchain::session::Session`] over [grammers](https://codeberg.org/Lonami/grammers)
//! (`grammers-tl-types` and `grammers-mtsender` 0.11, the versions the tests pin).
//!
//! The session decides what to send; a [`Conference`] turns each [`Request`] into grammers' own
//! function object ([`Function`], filling `call`, `join_as`, `params`, `random_id`, `source` and
//! the flags), and the outcome of `client.invoke(..)` back into the session's [`Response`]:
//! `Updates` into [`Update`]s, `InvocationError::Rpc` into the API error string
//! (`FLOOD_WAIT_30`), a transport failure into `TIMEOUT`. Pushed updates go through
//! [`Conference::route`]: the call's updates to the session, `updateGroupCallConnection` to the
//! application's media stack.
//!
//! What stays the application's: the MTProto connection (a logged-in grammers client), the media
//! stack and its `params` JSON, showing the emojis, and when to rejoin (see the example
//! `grammers_join`).

use confchain::api::{
    ApiError, CallIdentity, MediaSources, ParticipantSources, Request, Response, ServerBlock, SourceGroup, SubChain,
    Update, VideoSources,
};
use confchain::session::SessionConfig;
use confchain::sources::SourceTable;
use grammers_mtsender::InvocationError;
use grammers_tl_types as tl;
use tl::RemoteCall;

/// Sends a grammers function: implement it for your client (`grammers_client::Client::invoke`
/// has this shape) or for a test double.
pub trait Invoke {
    /// Sends `request` and waits for its result.
    fn invoke<R: RemoteCall + Send + Sync>(
        &self,
        request: &R,
    ) -> impl std::future::Future<Output = Result<R::Return, InvocationError>>;
}

/// The session's configuration with what Telegram's app config sets, from `help.getAppConfig`:
/// the call size limit (`conference_call_size_limit`, brought into the session's range, 2 to
/// 10,000), the defaults otherwise. `Session::new(me, session_config(&client).await?)`.
pub async fn session_config(client: &impl Invoke) -> Result<SessionConfig, InvocationError> {
    let app = client.invoke(&tl::functions::help::GetAppConfig { hash: 0 }).await?;
    Ok(app_session_config(&app))
}

/// [`session_config`] of a `help.appConfig` already fetched.
pub fn app_session_config(app: &tl::enums::help::AppConfig) -> SessionConfig {
    let mut config = SessionConfig::default();
    let tl::enums::help::AppConfig::Config(app) = app else { return config };
    let tl::enums::Jsonvalue::JsonObject(object) = &app.config else { return config };
    for tl::enums::JsonobjectValue::JsonObjectValue(item) in &object.value {
        if item.key == "conference_call_size_limit" {
            if let tl::enums::Jsonvalue::JsonNumber(n) = &item.value {
                if n.value.is_finite() {
                    // In range after the clamp: the cast neither wraps nor saturates.
                    config.call_size_limit = n.value.clamp(2.0, 10_000.0) as usize;
                }
            }
            break;
        }
    }
    config
}

/// One of the eight functions, as grammers' object.
#[derive(Clone, Debug, PartialEq)]
pub enum Function {
    /// `phone.getGroupCallChainBlocks`.
    GetChainBlocks(tl::functions::phone::GetGroupCallChainBlocks),
    /// `phone.createConferenceCall`.
    Create(tl::functions::phone::CreateConferenceCall),
    /// `phone.joinGroupCall`.
    Join(tl::functions::phone::JoinGroupCall),
    /// `phone.deleteConferenceCallParticipants`.
    Delete(tl::functions::phone::DeleteConferenceCallParticipants),
    /// `phone.sendConferenceCallBroadcast`.
    Broadcast(tl::functions::phone::SendConferenceCallBroadcast),
    /// `phone.sendGroupCallEncryptedMessage` (a `Bool` result).
    Message(tl::functions::phone::SendGroupCallEncryptedMessage),
    /// `phone.leaveGroupCall`.
    Leave(tl::functions::phone::LeaveGroupCall),
    /// `phone.getGroupParticipants` by sources (a `phone.groupParticipants` result, given to the
    /// session as the `updateGroupCallParticipants` it amounts to).
    Participants(tl::functions::phone::GetGroupParticipants),
}

impl Function {
    /// Sends it with `client`: the updates of the result (none for a `Bool`).
    pub async fn invoke<C: Invoke>(&self, client: &C) -> Result<Vec<tl::enums::Update>, InvocationError> {
        Ok(match self {
            Function::GetChainBlocks(f) => updates_of(client.invoke(f).await?),
            Function::Create(f) => updates_of(client.invoke(f).await?),
            Function::Join(f) => updates_of(client.invoke(f).await?),
            Function::Delete(f) => updates_of(client.invoke(f).await?),
            Function::Broadcast(f) => updates_of(client.invoke(f).await?),
            Function::Message(f) => {
                client.invoke(f).await?;
                Vec::new()
            }
            Function::Leave(f) => updates_of(client.invoke(f).await?),
            Function::Participants(f) => {
                let tl::enums::phone::GroupParticipants::Participants(answer) = client.invoke(f).await?;
                let update = tl::types::UpdateGroupCallParticipants {
                    call: f.call.clone(),
                    participants: answer.participants,
                    version: 0, // a lookup's answer is not an update of the list
                };
                vec![tl::enums::Update::GroupCallParticipants(update)]
            }
        })
    }

    /// grammers' serialization of the function (what goes on the wire).
    pub fn to_bytes(&self) -> Vec<u8> {
        use tl::Serializable;
        match self {
            Function::GetChainBlocks(f) => f.to_bytes(),
            Function::Create(f) => f.to_bytes(),
            Function::Join(f) => f.to_bytes(),
            Function::Delete(f) => f.to_bytes(),
            Function::Broadcast(f) => f.to_bytes(),
            Function::Message(f) => f.to_bytes(),
            Function::Leave(f) => f.to_bytes(),
            Function::Participants(f) => f.to_bytes(),
        }
    }
}

/// The updates inside an `Updates` result.
pub fn updates_of(result: tl::enums::Updates) -> Vec<tl::enums::Update> {
    match result {
        tl::enums::Updates::Updates(u) => u.updates,
        tl::enums::Updates::Combined(u) => u.updates,
        tl::enums::Updates::UpdateShort(u) => vec![u.update],
        _ => Vec::new(),
    }
}

/// The API error of a failed invocation, built from grammers' typed error: an `rpc_error` from
/// its name and value (grammers splits `FLOOD_WAIT_30` into name `FLOOD_WAIT` and value 30), and
/// anything that got no answer from Telegram as a transient `TIMEOUT`, Telegram's own
/// `-503 Timeout` (the server did not answer in time) among them.
pub fn api_error(error: &InvocationError) -> ApiError {
    match error {
        InvocationError::Rpc(e) if e.code == -503 || e.name.eq_ignore_ascii_case("timeout") => {
            ApiError::Transient("TIMEOUT".to_owned())
        }
        InvocationError::Rpc(e) => ApiError::from_rpc(&e.name, e.value),
        _ => ApiError::Transient("TIMEOUT".to_owned()),
    }
}

/// The API error's text for a failed invocation (for logs; the session takes [`api_error`]):
/// `rpc_error`s by their name with the value joined back (`FLOOD_WAIT_30`), and anything that got
/// no answer from Telegram as `TIMEOUT`.
pub fn error_string(error: &InvocationError) -> String {
    match error {
        InvocationError::Rpc(e) if e.code == -503 || e.name.eq_ignore_ascii_case("timeout") => "TIMEOUT".to_owned(),
        InvocationError::Rpc(e) => match e.value {
            Some(v) => format!("{}_{v}", e.name),
            None => e.name.clone(),
        },
        _ => "TIMEOUT".to_owned(),
    }
}

/// Where a pushed update goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Routed {
    /// To the session (`Session::handle_update`).
    Session(Update),
    /// `updateGroupCallConnection`: to the media stack.
    Connection {
        /// The transport parameters JSON.
        params: String,
        /// The screen-sharing connection.
        presentation: bool,
    },
    /// Not about this call.
    Other(Box<tl::enums::Update>),
}

/// One conference call carried by grammers: the application's part of every function, and the
/// call's identity once known.
#[derive(Clone, Debug)]
pub struct Conference {
    /// The call (`inputGroupCall`, or a slug / invite message before the identity is known).
    pub call: Option<tl::enums::InputGroupCall>,
    /// `join_as` (default `inputPeerSelf`).
    pub join_as: tl::enums::InputPeer,
    /// The media stack's join JSON.
    pub params: String,
    /// `createConferenceCall.random_id`: one per new call, so a retried create is the same create.
    pub random_id: i32,
    /// `leaveGroupCall.source`: our audio SSRC.
    pub source: i32,
    /// `joinGroupCall.invite_hash`.
    pub invite_hash: Option<String>,
    /// Join muted.
    pub muted: bool,
    /// Join with video stopped.
    pub video_stopped: bool,
    /// Who sends on each SSRC of the call: every `updateGroupCallParticipants` about the call is
    /// applied to it, with grammers' own `source`, `video` and `presentation`. Media threads read
    /// it through `sources.map()` (`MediaDecryptor::decrypt_frame_from_source_into`).
    pub sources: SourceTable,
}

/// A grammers `groupCallParticipantVideo`'s SSRCs.
fn video_sources(v: &tl::enums::GroupCallParticipantVideo) -> VideoSources {
    let tl::enums::GroupCallParticipantVideo::Video(v) = v;
    VideoSources {
        endpoint: v.endpoint.clone(),
        source_groups: v
            .source_groups
            .iter()
            .map(|g| {
                let tl::enums::GroupCallParticipantVideoSourceGroup::Group(g) = g;
                SourceGroup {
                    semantics: g.semantics.clone(),
                    sources: g.sources.iter().map(|s| s.cast_unsigned()).collect(),
                }
            })
            .collect(),
        audio_source: v.audio_source.map(i32::cast_unsigned),
    }
}

/// A grammers `groupCallParticipant` with its media sources, if it is a user (what
/// [`SourceTable::apply`] takes).
pub fn participant_sources(p: &tl::enums::GroupCallParticipant) -> Option<ParticipantSources> {
    let tl::enums::GroupCallParticipant::Participant(p) = p;
    let sources = MediaSources {
        audio: p.source.cast_unsigned(),
        video: p.video.as_ref().map(video_sources),
        presentation: p.presentation.as_ref().map(video_sources),
    };
    user_of(&p.peer).map(|user_id| ParticipantSources { user_id, left: p.left, date: p.date, version: 0, sources })
}

/// The call's identity in grammers' form.
pub fn input_group_call(call: CallIdentity) -> tl::enums::InputGroupCall {
    tl::types::InputGroupCall { id: call.id, access_hash: call.access_hash }.into()
}

fn identity_of(call: &tl::enums::InputGroupCall) -> Option<CallIdentity> {
    match call {
        tl::enums::InputGroupCall::Call(c) => Some(CallIdentity { id: c.id, access_hash: c.access_hash }),
        _ => None,
    }
}

fn user_of(peer: &tl::enums::Peer) -> Option<i64> {
    match peer {
        tl::enums::Peer::User(u) => Some(u.user_id),
        _ => None,
    }
}

impl Conference {
    /// A conference with `params` and `random_id`; set `call` to join an existing one.
    pub fn new(call: Option<tl::enums::InputGroupCall>, params: String, random_id: i32) -> Self {
        Conference {
            call,
            join_as: tl::enums::InputPeer::PeerSelf,
            params,
            random_id,
            source: 0,
            invite_hash: None,
            muted: false,
            video_stopped: false,
            sources: SourceTable::new(),
        }
    }

    /// The call's identity, once known.
    pub fn identity(&self) -> Option<CallIdentity> {
        self.call.as_ref().and_then(identity_of)
    }

    fn params(&self) -> tl::enums::DataJson {
        tl::types::DataJson { data: self.params.clone() }.into()
    }

    /// grammers' function object for a session request; `None` when the request names the call
    /// and no call is known yet (create it first, or set `call`).
    pub fn function(&self, request: &Request) -> Option<Function> {
        use tl::functions::phone;
        if let Request::CreateConference { public_key, block, .. } = request {
            let joining = public_key.zip(block.as_ref());
            return Some(Function::Create(phone::CreateConferenceCall {
                muted: self.muted,
                video_stopped: self.video_stopped,
                join: joining.is_some(),
                random_id: self.random_id,
                public_key: joining.map(|(k, _)| *k.as_bytes()),
                block: joining.map(|(_, b)| b.as_bytes().to_vec()),
                params: joining.map(|_| self.params()),
            }));
        }
        let call = self.call.clone()?;
        Some(match request {
            Request::GetChainBlocks { sub_chain, offset, limit } => {
                Function::GetChainBlocks(phone::GetGroupCallChainBlocks {
                    call,
                    sub_chain_id: sub_chain.id(),
                    offset: *offset,
                    limit: *limit,
                })
            }
            Request::Join { public_key, block } => Function::Join(phone::JoinGroupCall {
                muted: self.muted,
                video_stopped: self.video_stopped,
                call,
                join_as: self.join_as.clone(),
                invite_hash: self.invite_hash.clone(),
                public_key: Some(*public_key.as_bytes()),
                block: Some(block.as_bytes().to_vec()),
                params: self.params(),
            }),
            Request::DeleteParticipants { user_ids, block, kick } => {
                Function::Delete(phone::DeleteConferenceCallParticipants {
                    only_left: !kick,
                    kick: *kick,
                    call,
                    ids: user_ids.clone(),
                    block: block.as_bytes().to_vec(),
                })
            }
            Request::SendBroadcast { block } => {
                Function::Broadcast(phone::SendConferenceCallBroadcast { call, block: block.clone() })
            }
            Request::SendEncryptedMessage { encrypted_message } => {
                Function::Message(phone::SendGroupCallEncryptedMessage {
                    call,
                    encrypted_message: encrypted_message.clone(),
                })
            }
            Request::Leave => Function::Leave(phone::LeaveGroupCall { call, source: self.source }),
            Request::GetGroupParticipants { sources } => Function::Participants(phone::GetGroupParticipants {
                call,
                ids: Vec::new(),
                sources: sources.iter().map(|s| s.cast_signed()).collect(),
                offset: String::new(),
                limit: i32::try_from(sources.len()).unwrap_or(i32::MAX),
            }),
            // Requests added to the session later have no mapping here yet.
            #[allow(unreachable_patterns)]
            _ => return None,
        })
    }

    /// Routes one update. `from_result`: it came in the result of our own request (whose call,
    /// when only a slug or invite message named it, is learned here: the first call identity seen).
    pub fn route(&mut self, update: tl::enums::Update, from_result: bool) -> Routed {
        use tl::enums::Update as U;
        let about = match &update {
            U::GroupCall(u) => Some(match &u.call {
                tl::enums::GroupCall::Call(c) => CallIdentity { id: c.id, access_hash: c.access_hash },
                tl::enums::GroupCall::Discarded(c) => CallIdentity { id: c.id, access_hash: c.access_hash },
            }),
            U::GroupCallChainBlocks(u) => identity_of(&u.call),
            U::GroupCallEncryptedMessage(u) => identity_of(&u.call),
            U::GroupCallParticipants(u) => identity_of(&u.call),
            U::GroupCallConnection(c) => {
                let tl::enums::DataJson::Json(params) = &c.params;
                return Routed::Connection { params: params.data.clone(), presentation: c.presentation };
            }
            _ => None,
        };
        if self.identity().is_none() && from_result {
            if let Some(learned) = about {
                self.call = Some(input_group_call(learned));
            }
        }
        if about.is_none() || about != self.identity() {
            return Routed::Other(Box::new(update));
        }
        let mapped = match update {
            U::GroupCall(u) => match u.call {
                tl::enums::GroupCall::Call(c) => Update::GroupCall {
                    call: CallIdentity { id: c.id, access_hash: c.access_hash },
                    discarded: false,
                    invite_link: c.invite_link,
                },
                tl::enums::GroupCall::Discarded(c) => Update::GroupCall {
                    call: CallIdentity { id: c.id, access_hash: c.access_hash },
                    discarded: true,
                    invite_link: None,
                },
            },
            U::GroupCallChainBlocks(u) => match SubChain::from_id(u.sub_chain_id) {
                Some(sub_chain) => Update::ChainBlocks {
                    sub_chain,
                    blocks: u.blocks.into_iter().map(ServerBlock::from).collect(),
                    next_offset: u.next_offset,
                },
                // Another sub-chain: none of the session's.
                None => return Routed::Other(Box::new(U::GroupCallChainBlocks(u))),
            },
            U::GroupCallEncryptedMessage(u) => match user_of(&u.from_id) {
                Some(from) => Update::EncryptedMessage { from, encrypted_message: u.encrypted_message },
                None => return Routed::Other(Box::new(U::GroupCallEncryptedMessage(u))),
            },
            U::GroupCallParticipants(u) => {
                let mut records: Vec<ParticipantSources> =
                    u.participants.iter().filter_map(participant_sources).collect();
                for r in &mut records {
                    r.version = u.version;
                }
                self.sources.apply(&records);
                Update::Participants { participants: records }
            }
            other => return Routed::Other(Box::new(other)),
        };
        Routed::Session(mapped)
    }

    /// The session's response for an invocation's outcome, and the updates of the result that
    /// are not the session's (`updateGroupCallConnection` first among them) for the application.
    pub fn response(&mut self, outcome: Result<Vec<tl::enums::Update>, InvocationError>) -> (Response, Vec<Routed>) {
        let updates = match outcome {
            Err(e) => return (Response::Error(api_error(&e)), Vec::new()),
            Ok(updates) => updates,
        };
        let mut session = Vec::new();
        let mut other = Vec::new();
        for u in updates {
            match self.route(u, true) {
                Routed::Session(u) => session.push(u),
                r => other.push(r),
            }
        }
        (Response::Ok(session), other)
    }

    /// Sends one request with `client` and returns the session's response and the rest of the
    /// result; `None` when the call is not known yet.
    pub async fn send<C: Invoke>(&mut self, client: &C, request: &Request) -> Option<(Response, Vec<Routed>)> {
        let function = self.function(request)?;
        let outcome = function.invoke(client).await;
        Some(self.response(outcome))
    }
}
