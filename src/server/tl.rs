//! The server model's TL front: it takes the function bytes an MTProto library serialized
//! (`phone.createConferenceCall`, `phone.joinGroupCall`, ...), answers through [`Server::handle`]
//! and gives back the result bytes that library parses (`Updates`, `Bool` or `rpc_error`), and the
//! pushes as `Updates` bytes. With it a test drives whole conferences through a library's own
//! serializer and parser with no network.
//!
//! ```
//! use confchain::api::tl::{decode_result, encode_request, Answer, Context, InputGroupCall};
//! use confchain::api::{CallIdentity, Request, SubChain};
//! use confchain::server::tl::TlFront;
//! use confchain::server::Server;
//!
//! let call = CallIdentity { id: 1, access_hash: 2 };
//! let front = TlFront::new(call);
//! let mut server = Server::existing();
//! let ctx = Context { call: Some(InputGroupCall::Id(call)), ..Context::default() };
//! let poll = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 };
//! let (result, _pushes) = front.handle(&mut server, 7, &encode_request(&poll, &ctx)?);
//! assert!(matches!(decode_result(&result)?, Answer::Updates(_)));
//! # Ok::<(), confchain::Error>(())
//! ```
//!
//! What it adds to the model, as Telegram does: the request must name this call (its
//! `inputGroupCall`, or the slug of its invite link), else `GROUPCALL_INVALID`; the result of a
//! create or a join carries `updateGroupCall` (the call's identity and invite link) and
//! `updateGroupCallConnection` (the media transport's `params`); `sendGroupCallEncryptedMessage`
//! answers `Bool`; errors are `rpc_error` with Telegram's codes (420 for flood waits); bytes that
//! do not decode get `INPUT_FETCH_ERROR`, a block that is no block `BLOCK_INVALID`. Every
//! `updateGroupCall` (results and pushes, [`TlFront::pushes`]) names the front's call and link,
//! whatever identity the model's behaviour has.

use crate::api::tl::{
    decode_request, encode_bool, encode_rpc_error, encode_updates, encode_updates_with, error_code, InputGroupCall,
};
use crate::api::{CallIdentity, Request, Response, Update};
use crate::error::ErrorKind;
use crate::server::Server;

/// Pushes in TL: (recipient user id, `Updates` bytes).
pub type TlPushes = Vec<(i64, Vec<u8>)>;

/// How the front presents the call (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlFront {
    /// The call's `inputGroupCall(id, access_hash)`.
    pub call: CallIdentity,
    /// Its invite link (`https://t.me/call/<slug>`): requests may name the call by the slug.
    pub invite_link: String,
    /// The `updateGroupCallConnection.params` JSON a join's result carries.
    pub connection_params: String,
    /// `date` of every `Updates`.
    pub date: i32,
}

impl TlFront {
    /// A front for the call `call`, with invite link `https://t.me/call/call<id>`.
    pub fn new(call: CallIdentity) -> Self {
        TlFront {
            call,
            invite_link: format!("https://t.me/call/call{}", call.id),
            connection_params: r#"{"transport":{"ufrag":"model","pwd":"model","fingerprints":[],"candidates":[]}}"#
                .to_owned(),
            date: 1_700_000_000,
        }
    }

    fn slug(&self) -> &str {
        self.invite_link.rsplit('/').next().unwrap_or_default()
    }

    fn names_this_call(&self, call: Option<&InputGroupCall>) -> bool {
        match call {
            None => true, // createConferenceCall names none
            Some(InputGroupCall::Id(c)) => *c == self.call,
            Some(InputGroupCall::Slug(s)) => s == self.slug(),
            // The model sends no invite messages: only a link or the identity names the call.
            Some(InputGroupCall::InviteMessage(_)) => false,
        }
    }

    /// The model's `updateGroupCall` names the call as this front presents it, identity and
    /// link (whatever [`Behaviour::identity`](crate::server::Behaviour::identity) says): a client
    /// must never learn an identity or slug the front then refuses.
    fn present(&self, update: Update) -> Update {
        match update {
            Update::GroupCall { discarded, .. } => Update::GroupCall {
                call: self.call,
                discarded,
                invite_link: (!discarded).then(|| self.invite_link.clone()),
            },
            u => u,
        }
    }

    /// The model's pushes (from [`Server::handle`], [`Server::discard`],
    /// [`Server::drop_from_media`]) as `Updates` bytes about this front's call.
    pub fn pushes(&self, pushes: crate::server::Pushes) -> TlPushes {
        pushes.into_iter().map(|(to, u)| (to, encode_updates(&self.call, &[self.present(u)], self.date))).collect()
    }

    fn error(message: &str) -> (Vec<u8>, TlPushes) {
        (encode_rpc_error(error_code(message), message), Vec::new())
    }

    /// Handles the function bytes `function` from user `from`: the result bytes (`Updates`,
    /// `Bool` or `rpc_error`) and the pushes.
    pub fn handle(&self, server: &mut Server, from: i64, function: &[u8]) -> (Vec<u8>, TlPushes) {
        let (request, ctx) = match decode_request(function) {
            Ok(decoded) => decoded,
            Err(e) if e.kind() == ErrorKind::InvalidInput => return Self::error("BLOCK_INVALID"),
            Err(_) => return Self::error("INPUT_FETCH_ERROR"),
        };
        if !self.names_this_call(ctx.call.as_ref()) {
            return Self::error("GROUPCALL_INVALID");
        }
        let (response, pushes) = server.handle(from, &request);
        let pushes = self.pushes(pushes);
        let mut updates = match response {
            Response::Error(e) => return (Self::error(&e.to_string()).0, pushes),
            Response::Ok(updates) => updates.into_iter().map(|u| self.present(u)).collect::<Vec<_>>(),
        };
        let result = match request {
            Request::SendEncryptedMessage { .. } => encode_bool(true),
            Request::CreateConference { .. } | Request::Join { .. } => {
                if !updates.iter().any(|u| matches!(u, Update::GroupCall { .. })) {
                    let call = Update::GroupCall {
                        call: self.call,
                        discarded: false,
                        invite_link: Some(self.invite_link.clone()),
                    };
                    updates.insert(0, call);
                }
                let joined = !matches!(request, Request::CreateConference { block: None, .. });
                let connection = [self.connection_params.as_str()];
                let connections: &[&str] = if joined { &connection } else { &[] };
                encode_updates_with(&self.call, &updates, connections, self.date)
            }
            _ => encode_updates(&self.call, &updates, self.date),
        };
        (result, pushes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tl::{decode_result, encode_request, Answer, Context, TlUpdate};
    use crate::api::SubChain;
    use crate::session::{Session, SessionConfig, SessionState};
    use rand_core::SeedableRng;

    const CALL: CallIdentity = CallIdentity { id: 10, access_hash: 20 };

    /// Runs a session's requests through bytes until it is idle; the pushes, decoded.
    fn drive(
        front: &TlFront,
        server: &mut Server,
        s: &mut Session,
        ctx: &mut Context,
        rng: &mut rand_chacha::ChaCha20Rng,
    ) -> Vec<(i64, Vec<u8>)> {
        let mut all = Vec::new();
        while let Some((id, request)) = s.poll_request() {
            let bytes = encode_request(&request, ctx).unwrap();
            let (result, pushes) = front.handle(server, s.user_id(), &bytes);
            let answer = decode_result(&result).unwrap();
            // The create's (or a join by link's) result names the call: later requests use it,
            // and only updates about it reach the session.
            let known = match &ctx.call {
                Some(InputGroupCall::Id(c)) => Some(*c),
                _ => answer.call_named(),
            };
            let (response, other) = match known {
                Some(call) => {
                    ctx.call = Some(InputGroupCall::Id(call));
                    answer.into_response_for(&call)
                }
                None => answer.into_response(),
            };
            if matches!(request, Request::Join { .. }) {
                assert!(matches!(other.as_slice(), [TlUpdate::Connection { .. }]), "a join gets its connection");
            }
            s.handle_response(id, response, 0, rng);
            all.extend(pushes);
        }
        all
    }

    #[test]
    fn conference_through_bytes() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let front = TlFront::new(CALL);
        let mut server = Server::new();
        let mut alice = Session::new(1, SessionConfig::default()).unwrap();
        let mut bob = Session::new(2, SessionConfig::default()).unwrap();
        let mut create_ctx = Context { random_id: 99, ..Context::default() };
        alice.create(true, 0, &mut rng).unwrap();
        let pushes = drive(&front, &mut server, &mut alice, &mut create_ctx, &mut rng);
        for (to, bytes) in pushes {
            let (resp, _) = decode_result(&bytes).unwrap().into_response();
            let Response::Ok(us) = resp else { panic!("push") };
            assert_eq!(to, 1);
            us.into_iter().for_each(|u| alice.handle_update(u, 0, &mut rng));
        }
        assert_eq!(alice.state(), SessionState::Joined);

        // Bob joins by the slug of the link.
        let slug = front.slug().to_owned();
        let mut by_link = Context { call: Some(InputGroupCall::Slug(slug)), ..Context::default() };
        bob.join(0, &mut rng).unwrap();
        let pushes = drive(&front, &mut server, &mut bob, &mut by_link, &mut rng);
        assert!(pushes.iter().any(|(to, _)| *to == 1), "alice hears of bob");
        assert_eq!(bob.state(), SessionState::Joined);
        assert_eq!(server.height(), 1);
        assert_eq!(by_link.call, Some(InputGroupCall::Id(CALL)), "the join by link learned the identity");
    }

    /// Hostile bytes from a member: never a panic, and an answer that is an error never changes
    /// the call.
    #[test]
    fn mutated_functions_never_panic_or_corrupt() {
        use rand_core::RngCore;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let front = TlFront::new(CALL);
        let mut server = Server::new();
        let mut alice = Session::new(1, SessionConfig::default()).unwrap();
        alice.create(true, 0, &mut rng).unwrap();
        let mut ctx = Context::default();
        drive(&front, &mut server, &mut alice, &mut ctx, &mut rng);
        let mut bob = Session::new(2, SessionConfig::default()).unwrap();
        bob.join(0, &mut rng).unwrap();
        let mut valid = Vec::new();
        while let Some((id, request)) = bob.poll_request() {
            let bytes = encode_request(&request, &ctx).unwrap();
            valid.push(bytes.clone());
            let (result, _) = front.handle(&mut server, 2, &bytes);
            let (response, _) = decode_result(&result).unwrap().into_response();
            bob.handle_response(id, response, 0, &mut rng);
        }
        for _ in 0..3000 {
            let seed = &valid[(rng.next_u32() as usize) % valid.len()];
            let mut b = seed.clone();
            for _ in 0..1 + rng.next_u32() % 3 {
                let i = (rng.next_u32() as usize) % b.len();
                b[i] = rng.next_u32() as u8;
            }
            if rng.next_u32() % 8 == 0 {
                b.truncate((rng.next_u32() as usize) % b.len());
            }
            let before = (server.height(), server.blocks().len(), server.members().count());
            let (result, _) = front.handle(&mut server, 2, &b);
            if let Answer::Error { .. } = decode_result(&result).unwrap() {
                assert_eq!((server.height(), server.blocks().len(), server.members().count()), before);
            }
        }
    }

    /// With the real server's behaviour (its own identity), the front still presents its call:
    /// the create's result names it, later requests naming it are served, and the end of the call
    /// reaches a client that keeps only updates about its call.
    #[test]
    fn the_front_presents_its_own_identity() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        let front = TlFront::new(CALL);
        let behaviour = crate::server::Behaviour { flood_per_mille: 0, ..crate::server::Behaviour::real() };
        assert_ne!(behaviour.identity, Some(CALL));
        let mut server = Server::with_behaviour(behaviour, 1);
        let mut alice = Session::new(1, SessionConfig::default()).unwrap();
        alice.create(true, 0, &mut rng).unwrap();
        let mut ctx = Context::default();
        drive(&front, &mut server, &mut alice, &mut ctx, &mut rng);
        assert_eq!((alice.state(), alice.call_identity()), (SessionState::Joined, Some(CALL)));
        assert_eq!(alice.invite_link(), Some(front.invite_link.as_str()));
        let poll = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 };
        let (result, _) = front.handle(&mut server, 1, &encode_request(&poll, &ctx).unwrap());
        assert!(matches!(decode_result(&result).unwrap(), Answer::Updates(_)), "the learned identity is served");
        for (to, bytes) in front.pushes(server.discard()) {
            assert_eq!(to, 1);
            let (Response::Ok(us), _) = decode_result(&bytes).unwrap().into_response_for(&CALL) else { panic!() };
            us.into_iter().for_each(|u| alice.handle_update(u, 0, &mut rng));
        }
        assert_eq!(alice.state(), SessionState::Ended);
    }

    #[test]
    fn wrong_call_and_bad_bytes() {
        let front = TlFront::new(CALL);
        let mut server = Server::existing();
        let other =
            Context { call: Some(InputGroupCall::Id(CallIdentity { id: 10, access_hash: 21 })), ..Context::default() };
        let poll = Request::GetChainBlocks { sub_chain: SubChain::Blocks, offset: -1, limit: 1 };
        let (result, _) = front.handle(&mut server, 1, &encode_request(&poll, &other).unwrap());
        assert_eq!(decode_result(&result).unwrap(), Answer::Error { code: 400, message: "GROUPCALL_INVALID".into() });
        let (result, _) = front.handle(&mut server, 1, &[1, 2, 3]);
        assert_eq!(decode_result(&result).unwrap(), Answer::Error { code: 400, message: "INPUT_FETCH_ERROR".into() });
        // A member-only request from a stranger: 403.
        let ctx = Context { call: Some(InputGroupCall::Id(CALL)), ..Context::default() };
        let msg = Request::SendEncryptedMessage { encrypted_message: vec![1] };
        let (result, _) = front.handle(&mut server, 1, &encode_request(&msg, &ctx).unwrap());
        assert_eq!(decode_result(&result).unwrap(), Answer::Error { code: 403, message: "GROUPCALL_FORBIDDEN".into() });
    }
}
