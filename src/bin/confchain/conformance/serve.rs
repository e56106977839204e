//! `confchain conformance --serve`: confchain itself as a peer of the conformance protocol, and with
//! `--deviate` a deliberately deviant one (to prove the runner finds each kind of deviation).

use std::collections::HashMap;
use std::io::{BufRead, Write};

use confchain::chain::Chain;
use confchain::{wire, Block, Call, Change, Form, GroupParticipant, GroupState, Permissions, PrivateKey, PublicKey};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use serde_json::{json, Map, Value};

use confchain::frame::{AudioLevel, Codec};

use super::{checks, frames, PROTOCOL_VERSION};

/// The deviations `--deviate` can inject (each one a behaviour seen in another implementation).
pub const DEVIATIONS: &[(&str, &str)] = &[
    ("drop-flag-bit-2", "re-encode a block dropping permission bit 2 (set value) before hashing it"),
    ("lose-early-broadcasts", "drop broadcasts that arrive before their block"),
    (
        "no-off-curve-header",
        "build no key header for a participant key that is not a curve point, though blocks listing one are applied (tweb: \"invalid key\")",
    ),
    ("accept-plain-form", "accept plain-form blocks where server form is required (tweb)"),
    ("accept-unsigned-first", "accept a first block that has no signer key, signed by its first participant (tweb)"),
    ("accept-negative-flags", "read a negative `#` flags field as a bit mask instead of refusing it (tweb)"),
    ("build-without-rights", "build and sign a change-state block whatever the member's permissions (tweb)"),
    ("no-broadcast-errors", "report no broadcast error: every broadcast is accepted (tweb's receiveInbound)"),
    ("video-no-prefix", "frames: encrypt VP8 and H.264 whole, with no clear prefix (tweb)"),
    (
        "no-widening",
        "frames: leave H.264 3-byte start codes unwidened (tgcalls before May 2025, Android before its refactor)",
    ),
    ("widen-uint8", "frames: keep H.264 widening offsets in a uint8 (ntgcalls)"),
    ("no-validation", "frames: send H.264 packets without the start-code check and retry"),
    ("clear-without-epoch", "frames: send the frame in clear when it cannot be encrypted (MadelineProto)"),
    ("keep-trailer", "frames: deliver Opus frames without stripping the trailer"),
    ("play-undecryptable", "frames: pass a frame that does not decrypt on unchanged (tweb)"),
    ("fixed-level-byte", "frames: write the audio trailer as 01 00 whatever the level (tweb)"),
    ("strict-start-code-search", "frames: count a start code ending at the packet's last byte (MadelineProto)"),
    ("drop-trailer-only", "frames: drop an Opus frame that is only its trailer (Android's refactor)"),
    ("levels-f64", "frames: compute the audio level conversions in f64"),
    (
        "fail-call-on-removal",
        "the reference's own behaviour (tde2e, tweb): refuse the block that removes us with CALL_FAILED and fail the call (a documented difference: passes)",
    ),
];

/// The frame deviations (they change the frame operations only).
const FRAME_DEVIATIONS: &[&str] = &[
    "video-no-prefix",
    "no-widening",
    "widen-uint8",
    "no-validation",
    "clear-without-epoch",
    "keep-trailer",
    "play-undecryptable",
    "fixed-level-byte",
    "strict-start-code-search",
    "drop-trailer-only",
];

/// The operations the built-in peer implements.
const OPS: &[&str] = &[
    "create",
    "join",
    "start",
    "apply_block",
    "check_block",
    "receive_broadcast",
    "pull_outbound",
    "state",
    "build_change_state",
    "encrypt",
    "decrypt",
    "encrypt_message",
    "decrypt_message",
    "frame_layout",
    "frame_send",
    "frame_validate",
    "frame_receive",
    "level_to_byte",
    "level_from_byte",
    "encrypt_frame",
    "decrypt_frame",
];

/// Bytes the caller recorded, then a seeded stream (so `rng` in a request replays a vector).
struct PeerRng {
    recorded: Vec<u8>,
    pos: usize,
    rest: ChaCha20Rng,
}

impl RngCore for PeerRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest.iter_mut() {
            match self.recorded.get(self.pos) {
                Some(r) => {
                    *b = *r;
                    self.pos = self.pos.saturating_add(1);
                }
                None => {
                    let mut one = [0u8; 1];
                    self.rest.fill_bytes(&mut one);
                    *b = one[0];
                }
            }
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for PeerRng {}

/// One member the peer plays.
struct Member {
    user_id: i64,
    key: PrivateKey,
    call: Option<Call>,
}

struct Server {
    deviate: Vec<String>,
    members: HashMap<String, Member>,
    stream: ChaCha20Rng,
}

type Reply = Result<Value, confchain::Error>;

fn err(kind: confchain::ErrorKind, message: &str) -> confchain::Error {
    confchain::Error::new(kind, message)
}

fn bad_input(message: &str) -> confchain::Error {
    err(confchain::ErrorKind::InvalidInput, message)
}

fn bytes_arg(req: &Value, key: &str) -> Result<Vec<u8>, confchain::Error> {
    let s = req.get(key).and_then(Value::as_str).ok_or_else(|| bad_input(&format!("missing {key}")))?;
    hex::decode(s).map_err(|_| bad_input(&format!("{key} is not hex")))
}

fn opt_bytes_arg(req: &Value, key: &str) -> Result<Option<Vec<u8>>, confchain::Error> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => bytes_arg(req, key).map(Some),
    }
}

fn int_arg(req: &Value, key: &str) -> Result<i64, confchain::Error> {
    req.get(key).and_then(Value::as_i64).ok_or_else(|| bad_input(&format!("missing integer {key}")))
}

/// Reads a `participants` array of the protocol.
pub fn participants_arg(v: &Value) -> Result<Vec<GroupParticipant>, confchain::Error> {
    let list = v.as_array().ok_or_else(|| bad_input("participants must be an array"))?;
    list.iter()
        .map(|p| {
            let key: [u8; 32] =
                bytes_arg(p, "public_key")?.try_into().map_err(|_| bad_input("public_key: 32 bytes"))?;
            Ok(GroupParticipant {
                user_id: int_arg(p, "user_id")?,
                public_key: PublicKey::from_bytes(key),
                flags: Permissions::from_bits_retain(int_arg(p, "flags")? as i32),
                version: int_arg(p, "version")? as i32,
            })
        })
        .collect()
}

/// Writes participants as the protocol does.
pub fn participants_json(list: &[GroupParticipant]) -> Value {
    Value::Array(
        list.iter()
            .map(|p| {
                json!({
                    "user_id": p.user_id,
                    "public_key": hex::encode(p.public_key.as_bytes()),
                    "flags": p.flags.bits(),
                    "version": p.version,
                })
            })
            .collect(),
    )
}

/// The error object of the protocol for a confchain error.
pub fn error_json(e: &confchain::Error) -> Value {
    json!({ "code": e.code().unwrap_or(""), "name": e.kind().name(), "message": e.message() })
}

impl Server {
    fn has(&self, deviation: &str) -> bool {
        self.deviate.iter().any(|d| d == deviation)
    }

    fn rng(&mut self, req: &Value) -> Result<PeerRng, confchain::Error> {
        let recorded = opt_bytes_arg(req, "rng")?.unwrap_or_default();
        let mut seed = [0u8; 32];
        self.stream.fill_bytes(&mut seed);
        Ok(PeerRng { recorded, pos: 0, rest: ChaCha20Rng::from_seed(seed) })
    }

    fn member_name(req: &Value) -> Result<String, confchain::Error> {
        req.get("member").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| bad_input("missing member"))
    }

    fn new_member(&mut self, req: &Value) -> Result<(String, i64, PrivateKey), confchain::Error> {
        let name = Self::member_name(req)?;
        let user_id = int_arg(req, "user_id")?;
        let key = match opt_bytes_arg(req, "private_key")? {
            Some(k) => PrivateKey::from_slice(&k)?,
            None => {
                let mut seed = [0u8; 32];
                self.stream.fill_bytes(&mut seed);
                PrivateKey::from_bytes(&seed)
            }
        };
        Ok((name, user_id, key))
    }

    fn call_of(&mut self, req: &Value) -> Result<&mut Call, confchain::Error> {
        let name = Self::member_name(req)?;
        self.members
            .get_mut(&name)
            .and_then(|m| m.call.as_mut())
            .ok_or_else(|| bad_input(&format!("member {name} has no call yet")))
    }

    /// The bytes a deviant peer would make of a received server-form block.
    fn ingest(&self, server: &[u8]) -> Result<Vec<u8>, confchain::Error> {
        let mut bytes = server.to_vec();
        if self.has("accept-plain-form") && wire::form_of(&bytes) == Some(Form::Plain) {
            bytes = wire::to_server_form(&bytes)?;
        }
        if self.has("accept-negative-flags") {
            if let Some(read) = checks::clear_negative_flags(&bytes) {
                bytes = read;
            }
        }
        Ok(bytes)
    }

    /// A chain started from one block, as a deviant peer would start it.
    fn chain_from(&self, server: &[u8]) -> Result<Chain, confchain::Error> {
        let bytes = self.ingest(server)?;
        if !self.has("drop-flag-bit-2") {
            return confchain::UnverifiedTip::from_server_block(&bytes).map(Chain::trust_tip);
        }
        let mut block = Block::decode_server(&bytes)?;
        let mask = |s: &mut GroupState| {
            for p in &mut s.participants {
                p.flags = Permissions::from_bits_retain(p.flags.bits() & 3);
            }
        };
        for c in &mut block.changes {
            if let Change::SetGroupState(s) = c {
                mask(s);
            }
        }
        if let Some(s) = &mut block.state_proof.group_state {
            mask(s);
        }
        confchain::UnverifiedTip::from_block(block).map(Chain::trust_tip)
    }

    fn handle(&mut self, op: &str, req: &Value) -> Option<Reply> {
        Some(match op {
            "create" => self.create(req),
            "join" => self.join(req),
            "start" => self.start(req),
            "apply_block" => self.apply_block(req),
            "check_block" => self.check_block(req),
            "receive_broadcast" => self.receive_broadcast(req),
            "pull_outbound" => self
                .call_of(req)
                .map(|c| json!({ "broadcasts": c.poll_outbound().iter().map(hex::encode).collect::<Vec<_>>() })),
            "state" => self.state(req),
            "build_change_state" => self.build_change_state(req),
            "encrypt" => self.encrypt(req),
            "decrypt" => self.decrypt(req),
            "encrypt_message" => self.encrypt_message(req),
            "decrypt_message" => self.decrypt_message(req),
            "frame_layout" => self.frame_layout(req),
            "frame_send" => self.frame_send(req),
            "frame_validate" => self.frame_validate(req),
            "frame_receive" => self.frame_receive(req),
            "level_to_byte" => level_to_byte(req, self.has("levels-f64")),
            "level_from_byte" => level_from_byte(req, self.has("levels-f64")),
            "encrypt_frame" => self.encrypt_frame(req),
            "decrypt_frame" => self.decrypt_frame(req),
            _ => return None,
        })
    }

    fn create(&mut self, req: &Value) -> Reply {
        let (name, user_id, key) = self.new_member(req)?;
        let flags = req.get("flags").and_then(Value::as_i64).unwrap_or(7) as i32;
        let external = req.get("external_permissions").and_then(Value::as_i64).unwrap_or(3) as i32;
        let me = GroupParticipant {
            user_id,
            public_key: key.public_key(),
            flags: Permissions::from_bits_retain(flags),
            version: req.get("version").and_then(Value::as_i64).unwrap_or(0) as i32,
        };
        let state =
            GroupState { participants: vec![me], external_permissions: Permissions::from_bits_retain(external) };
        let mut rng = self.rng(req)?;
        let block = confchain::build_zero_block(state, &key, &mut rng)?;
        let public_key = hex::encode(key.public_key().as_bytes());
        self.members.insert(name, Member { user_id, key, call: None });
        Ok(json!({ "public_key": public_key, "block": hex::encode(block.as_bytes()) }))
    }

    fn join(&mut self, req: &Value) -> Reply {
        let (name, user_id, key) = self.new_member(req)?;
        let last = bytes_arg(req, "last_block")?;
        let chain = self.chain_from(&last)?;
        let flags = req.get("flags").and_then(Value::as_i64).unwrap_or(3) as i32;
        let me = GroupParticipant {
            user_id,
            public_key: key.public_key(),
            flags: Permissions::from_bits_retain(flags),
            version: req.get("version").and_then(Value::as_i64).unwrap_or(0) as i32,
        };
        let mut rng = self.rng(req)?;
        let block = chain.build_self_add(me, &key, &mut rng)?;
        let public_key = hex::encode(key.public_key().as_bytes());
        self.members.insert(name, Member { user_id, key, call: None });
        Ok(json!({ "public_key": public_key, "block": hex::encode(block.as_bytes()) }))
    }

    fn start(&mut self, req: &Value) -> Reply {
        let (name, user_id, key) = self.new_member(req)?;
        let last = bytes_arg(req, "last_block")?;
        let chain = self.chain_from(&last)?;
        let mut rng = self.rng(req)?;
        let call = Call::from_chain(user_id, key.clone(), chain, &mut rng)?;
        let public_key = hex::encode(key.public_key().as_bytes());
        self.members.insert(name, Member { user_id, key, call: Some(call) });
        Ok(json!({ "public_key": public_key }))
    }

    fn apply_block(&mut self, req: &Value) -> Reply {
        let name = Self::member_name(req)?;
        let block = bytes_arg(req, "block")?;
        let now = req.get("now").and_then(Value::as_u64).unwrap_or(0);
        let mut rng = self.rng(req)?;
        let bytes = self.ingest(&block)?;
        let first = self.members.get(&name).is_some_and(|m| m.call.is_none());
        if first {
            // The first block after create/join is the one the server returned: the call starts there.
            let chain = self.chain_from(&block)?;
            let m = self.members.get_mut(&name).ok_or_else(|| bad_input("unknown member"))?;
            m.call = Some(Call::from_chain(m.user_id, m.key.clone(), chain, &mut rng)?);
            return Ok(json!({}));
        }
        let fail_on_removal = self.has("fail-call-on-removal");
        let call = self.call_of(req)?;
        call.apply_block(&bytes, now, &mut rng)?;
        if fail_on_removal && !call.is_member() {
            call.close();
            return Err(confchain::Error::new(confchain::ErrorKind::CallFailed, "NOT_PARTICIPANT"));
        }
        Ok(json!({}))
    }

    fn check_block(&mut self, req: &Value) -> Reply {
        let block = bytes_arg(req, "block")?;
        let last = opt_bytes_arg(req, "last_block")?;
        if self.has("accept-unsigned-first") && last.is_none() {
            if let Some(decoded) = checks::signed_by_first_participant(&self.ingest(&block)?) {
                return Ok(json!({ "height": decoded.height, "hash": hex::encode(decoded.hash()) }));
            }
        }
        let mut chain = match last {
            Some(last) => self.chain_from(&last)?,
            None => Chain::empty(),
        };
        let bytes = self.ingest(&block)?;
        chain.apply(&bytes)?;
        Ok(json!({ "height": chain.height(), "hash": hex::encode(chain.hash()) }))
    }

    fn receive_broadcast(&mut self, req: &Value) -> Reply {
        let bytes = bytes_arg(req, "broadcast")?;
        let lose = self.has("lose-early-broadcasts");
        let silent = self.has("no-broadcast-errors");
        let call = self.call_of(req)?;
        if silent {
            let _ = call.receive_broadcast(&bytes);
            return Ok(json!({}));
        }
        if lose {
            if let Ok(b) = wire::Broadcast::decode_server(&bytes) {
                if b.chain_height > call.height() {
                    return Ok(json!({}));
                }
            }
        }
        call.receive_broadcast(&bytes)?;
        Ok(json!({}))
    }

    fn state(&mut self, req: &Value) -> Reply {
        let call = self.call_of(req)?;
        Ok(json!({
            "height": call.height(),
            "hash": hex::encode(call.chain().hash()),
            "participants": participants_json(call.participants()),
            "is_member": call.is_member(),
            "emojis": call.emojis().map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            "words": call.verification_words(),
            "key_fingerprint": call.key_fingerprint(),
        }))
    }

    fn build_change_state(&mut self, req: &Value) -> Reply {
        let participants = participants_arg(req.get("participants").unwrap_or(&Value::Null))?;
        let external = int_arg(req, "external_permissions")? as i32;
        let mut rng = self.rng(req)?;
        let (no_off_curve, without_rights) = (self.has("no-off-curve-header"), self.has("build-without-rights"));
        let name = Self::member_name(req)?;
        let key = self.members.get(&name).map(|m| m.key.clone());
        let call = self.call_of(req)?;
        let state = GroupState { participants, external_permissions: Permissions::from_bits_retain(external) };
        if no_off_curve && state.participants.iter().any(|p| p.public_key.verifying_key().is_err()) {
            return Err(err(confchain::ErrorKind::InvalidInput, "invalid key"));
        }
        match call.build_change_state(state.clone(), &mut rng) {
            Err(e) if without_rights && e.kind() == confchain::ErrorKind::NoPermissions => {
                // Built and signed with no permission check, as a builder that does not run the rules.
                let key = key.ok_or_else(|| bad_input("unknown member"))?;
                let chain = call.chain();
                let mut block = Block {
                    signature: [0; 64],
                    prev_block_hash: *chain.hash(),
                    changes: confchain::chain::shared_key_changes(state, &mut rng)?,
                    height: chain.height().saturating_add(1),
                    state_proof: confchain::StateProof {
                        kv_hash: *chain.kv_hash(),
                        group_state: None,
                        shared_key: None,
                    },
                    signature_public_key: Some(key.public_key()),
                };
                block.signature = key.sign(&block.signing_bytes());
                Ok(json!({ "block": hex::encode(block.encode()) }))
            }
            other => Ok(json!({ "block": hex::encode(other?.as_bytes()) })),
        }
    }

    fn encrypt(&mut self, req: &Value) -> Reply {
        let data = bytes_arg(req, "data")?;
        let channel = int_arg(req, "channel")?;
        let channel = i32::try_from(channel).map_err(|_| bad_input("channel out of range"))?;
        let now = req.get("now").and_then(Value::as_u64).unwrap_or(0);
        let mut rng = self.rng(req)?;
        let fail_on_removal = self.has("fail-call-on-removal");
        let call = self.call_of(req)?;
        if fail_on_removal && call.is_closed() {
            return Err(confchain::Error::new(confchain::ErrorKind::CallFailed, "the call failed"));
        }
        let packet = call.encrypt(channel, &data, 0, now, &mut rng)?;
        Ok(json!({ "packet": hex::encode(packet) }))
    }

    fn decrypt(&mut self, req: &Value) -> Reply {
        let packet = bytes_arg(req, "packet")?;
        let sender = int_arg(req, "user_id")?;
        let now = req.get("now").and_then(Value::as_u64).unwrap_or(0);
        let call = self.call_of(req)?;
        let data = call.decrypt(sender, &packet, now)?;
        Ok(json!({ "data": hex::encode(data) }))
    }

    fn encrypt_message(&mut self, req: &Value) -> Reply {
        let text = req.get("text").and_then(Value::as_str).ok_or_else(|| bad_input("missing text"))?.to_owned();
        let now = req.get("now").and_then(Value::as_u64).unwrap_or(0);
        let mut rng = self.rng(req)?;
        let call = self.call_of(req)?;
        let message = call.encrypt_message(&text, now, &mut rng)?;
        Ok(json!({ "message": hex::encode(message) }))
    }

    fn decrypt_message(&mut self, req: &Value) -> Reply {
        let message = bytes_arg(req, "message")?;
        let sender = int_arg(req, "user_id")?;
        let now = req.get("now").and_then(Value::as_u64).unwrap_or(0);
        let call = self.call_of(req)?;
        let text = call.decrypt_message(sender, &message, now)?;
        Ok(json!({ "text": text }))
    }
}

/// The codec, frame and level arguments of a frame operation.
fn frame_arg(req: &Value) -> Result<(Codec, Vec<u8>, AudioLevel), confchain::Error> {
    let codec = Codec::from_name(req.get("codec").and_then(Value::as_str).ok_or_else(|| bad_input("missing codec"))?);
    let frame = bytes_arg(req, "frame")?;
    let level = AudioLevel {
        level: u8::try_from(req.get("level").and_then(Value::as_u64).unwrap_or(0) & 0x7f).unwrap_or(0),
        speech: req.get("speech").and_then(Value::as_bool).unwrap_or(false),
    };
    Ok((codec, frame, level))
}

fn codec_arg(req: &Value) -> Result<Codec, confchain::Error> {
    Ok(Codec::from_name(req.get("codec").and_then(Value::as_str).ok_or_else(|| bad_input("missing codec"))?))
}

fn level_json(level: Option<AudioLevel>) -> (Value, Value) {
    match level {
        Some(l) => (json!(l.level), json!(l.speech)),
        None => (Value::Null, Value::Null),
    }
}

fn level_to_byte(req: &Value, in_f64: bool) -> Reply {
    let linear = match req.get("linear_f32_bits").and_then(Value::as_str) {
        Some(bits) => f32::from_bits(u32::from_str_radix(bits, 16).map_err(|_| bad_input("bad linear_f32_bits"))?),
        None => req.get("linear").and_then(Value::as_f64).ok_or_else(|| bad_input("missing linear"))? as f32,
    };
    let speech = req.get("speech").and_then(Value::as_bool).unwrap_or(false);
    if in_f64 {
        return Ok(json!({ "byte": frames::level_to_byte_f64(linear, speech) }));
    }
    Ok(json!({ "byte": AudioLevel::from_linear(linear, speech).to_byte() }))
}

fn level_from_byte(req: &Value, in_f64: bool) -> Reply {
    let byte = u8::try_from(int_arg(req, "byte")?).map_err(|_| bad_input("byte out of range"))?;
    let linear = if in_f64 { frames::level_from_byte_f64(byte) } else { AudioLevel::from_byte(byte).to_linear() };
    Ok(json!({ "linear": f64::from(linear), "linear_f32_bits": format!("{:08x}", linear.to_bits()) }))
}

impl Server {
    fn frame_layout_rule(&self) -> frames::Layout {
        if self.has("video-no-prefix") {
            frames::Layout::VideoNoPrefix
        } else if self.has("no-widening") {
            frames::Layout::NoWidening
        } else if self.has("widen-uint8") {
            frames::Layout::WidenUint8
        } else {
            frames::Layout::Reference
        }
    }

    fn send_rules(&self) -> frames::SendRules {
        let mut rules = frames::SendRules::REFERENCE;
        if self.has("no-validation") {
            rules.validation = frames::Validation::None;
        } else if self.has("strict-start-code-search") {
            rules.validation = frames::Validation::Strict;
        }
        rules.clear_on_failure = self.has("clear-without-epoch");
        rules
    }

    fn receive_rule(&self) -> frames::Receive {
        if self.has("keep-trailer") {
            frames::Receive::KeepTrailer
        } else if self.has("play-undecryptable") {
            frames::Receive::PlayUndecryptable
        } else if self.has("drop-trailer-only") {
            frames::Receive::DropTrailerOnly
        } else {
            frames::Receive::Reference
        }
    }

    /// The frame arguments, with the level a deviant sender writes.
    fn frame_arg(&self, req: &Value) -> Result<(Codec, Vec<u8>, AudioLevel), confchain::Error> {
        let (codec, frame, level) = frame_arg(req)?;
        Ok((codec, frame, if self.has("fixed-level-byte") { AudioLevel::default() } else { level }))
    }

    fn frame_layout(&mut self, req: &Value) -> Reply {
        let (codec, frame, level) = self.frame_arg(req)?;
        let (data, prefix) = frames::layout(self.frame_layout_rule(), codec, &frame, level);
        Ok(json!({ "data": hex::encode(data), "prefix": prefix }))
    }

    fn frame_send(&mut self, req: &Value) -> Reply {
        let (codec, frame, level) = self.frame_arg(req)?;
        let outputs = req
            .get("outputs")
            .and_then(Value::as_array)
            .ok_or_else(|| bad_input("missing outputs"))?
            .iter()
            .map(|o| o.as_str().and_then(|s| hex::decode(s).ok()).ok_or_else(|| bad_input("outputs are not hex")))
            .collect::<Result<Vec<_>, _>>()?;
        let (data, prefix) = frames::layout(self.frame_layout_rule(), codec, &frame, level);
        let (calls, sent) = frames::send(self.send_rules(), codec, &data, prefix, &outputs);
        let call = json!({ "data": hex::encode(&data), "prefix": prefix });
        Ok(json!({ "calls": vec![call; calls], "sent": sent.map(hex::encode) }))
    }

    fn frame_validate(&mut self, req: &Value) -> Reply {
        let codec = codec_arg(req)?;
        let packet = bytes_arg(req, "packet")?;
        let prefix = usize::try_from(int_arg(req, "prefix")?).map_err(|_| bad_input("bad prefix"))?;
        Ok(json!({ "valid": frames::valid(self.send_rules().validation, codec, &packet, prefix) }))
    }

    fn frame_receive(&mut self, req: &Value) -> Reply {
        let codec = codec_arg(req)?;
        let decrypted = bytes_arg(req, "decrypted")?;
        let packet = opt_bytes_arg(req, "packet")?.unwrap_or_default();
        let (frame, level) = frames::receive(self.receive_rule(), codec, &decrypted, &packet);
        let (level, speech) = level_json(level);
        Ok(json!({ "frame": frame.map(hex::encode), "level": level, "speech": speech }))
    }

    fn encrypt_frame(&mut self, req: &Value) -> Reply {
        let (codec, frame, level) = self.frame_arg(req)?;
        let channel = i32::try_from(int_arg(req, "channel")?).map_err(|_| bad_input("channel out of range"))?;
        let now = req.get("now").and_then(Value::as_u64).unwrap_or(0);
        let mut rng = self.rng(req)?;
        let deviant = self.deviate.iter().any(|d| FRAME_DEVIATIONS.contains(&d.as_str()));
        if !deviant {
            let packet = self.call_of(req)?.encrypt_frame(channel, codec, &frame, level, now, &mut rng)?;
            return Ok(json!({ "packet": hex::encode(packet) }));
        }
        // The deviant send loop, over the call's packet encryption.
        let (data, prefix) = frames::layout(self.frame_layout_rule(), codec, &frame, level);
        let rules = self.send_rules();
        let call = self.call_of(req)?;
        let attempts = if codec == Codec::H264 { confchain::frame::MAX_ATTEMPTS } else { 1 };
        for _ in 0..attempts {
            match call.encrypt(channel, &data, prefix, now, &mut rng) {
                Err(_) if rules.clear_on_failure => return Ok(json!({ "packet": hex::encode(&data) })),
                Err(e) => return Err(e),
                Ok(packet) if frames::valid(rules.validation, codec, &packet, prefix) => {
                    return Ok(json!({ "packet": hex::encode(packet) }))
                }
                Ok(_) => {}
            }
        }
        Err(err(confchain::ErrorKind::FrameStartCode, "every encryption put a NAL start code after the clear prefix"))
    }

    fn decrypt_frame(&mut self, req: &Value) -> Reply {
        let codec = codec_arg(req)?;
        let packet = bytes_arg(req, "packet")?;
        let sender = int_arg(req, "user_id")?;
        let now = req.get("now").and_then(Value::as_u64).unwrap_or(0);
        let rule = self.receive_rule();
        let call = self.call_of(req)?;
        let (frame, level) = match rule {
            frames::Receive::Reference => {
                let (frame, received) = call.decrypt_frame(sender, codec, &packet, now)?;
                (Some(frame), received.level)
            }
            _ => {
                let decrypted = call.decrypt(sender, &packet, now).unwrap_or_default();
                frames::receive(rule, codec, &decrypted, &packet)
            }
        };
        let frame = frame.ok_or_else(|| err(confchain::ErrorKind::FrameEmpty, "the frame is dropped"))?;
        let (level, speech) = level_json(level);
        Ok(json!({ "frame": hex::encode(frame), "level": level, "speech": speech }))
    }
}

/// Serves the peer protocol on stdin/stdout until stdin closes.
pub fn serve(deviate: Vec<String>, seed: u64) -> Result<(), crate::Failure> {
    for d in &deviate {
        if !DEVIATIONS.iter().any(|(name, _)| name == d) {
            let known: Vec<&str> = DEVIATIONS.iter().map(|(n, _)| *n).collect();
            return Err(crate::Failure::usage(format!("unknown deviation {d:?} (known: {})", known.join(", "))));
        }
    }
    let implementation = if deviate.is_empty() {
        "confchain".to_owned()
    } else {
        format!("confchain (deviant: {})", deviate.join(", "))
    };
    let mut server = Server { deviate, members: HashMap::new(), stream: ChaCha20Rng::seed_from_u64(seed) };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Err(e) => {
                json!({ "id": null, "error": { "code": "", "name": "INVALID_INPUT", "message": format!("bad JSON: {e}") } })
            }
            Ok(req) => {
                let id = req.get("id").cloned().unwrap_or(Value::Null);
                let op = req.get("op").and_then(Value::as_str).unwrap_or("");
                if op == "hello" {
                    let mut hello = Map::new();
                    hello.insert("version".into(), json!(PROTOCOL_VERSION));
                    hello.insert("implementation".into(), json!(implementation));
                    hello.insert("ops".into(), json!(OPS));
                    hello.insert("errors".into(), json!(true));
                    hello.insert("keys".into(), json!(true));
                    hello.insert("rng".into(), json!(true));
                    json!({ "id": id, "ok": hello })
                } else {
                    match server.handle(op, &req) {
                        None => json!({ "id": id, "unsupported": true }),
                        Some(Ok(v)) => json!({ "id": id, "ok": v }),
                        Some(Err(e)) => json!({ "id": id, "error": error_json(&e) }),
                    }
                }
            }
        };
        if writeln!(out, "{answer}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}
