//! WebAssembly bindings of confchain for Node and browsers (wasm-bindgen). `Uint8Array` in and
//! out, errors as `ConfchainError` (a JS `Error` subclass with `code`, `name`, `message`).
#![allow(clippy::new_without_default)]

mod args;
mod frame;
mod sources;

use args::{bytes, bytes32, time, Budget};
use engine::{GroupParticipant, GroupState, Permissions};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/errors.js")]
extern "C" {
    type ConfchainError;
    #[wasm_bindgen(constructor)]
    fn new(code: i32, kind: &str, message: &str) -> ConfchainError;
}

fn err(e: engine::Error) -> JsValue {
    ConfchainError::new(e.numeric_code(), e.kind().name(), e.message()).into()
}

fn bad(message: &str) -> JsValue {
    ConfchainError::new(100, "INVALID_INPUT", message).into()
}

/// A deterministic CSPRNG (ChaCha20) seeded with 32 bytes (`Rng.fromCrypto()` in the JS entry
/// seeds it from `crypto.getRandomValues`). Its state (the key, which regenerates every secret
/// it produced, and the buffered output) is wiped by `free()`.
///
/// The state lives in a box of its own: wasm-bindgen's `free()` moves the object out of its cell
/// before dropping it, so only state behind a pointer is wiped where it lived.
#[wasm_bindgen]
pub struct Rng(Box<ChaCha20Rng>);

#[wasm_bindgen]
impl Rng {
    /// From a 32-byte seed (copied straight into the RNG; the copy on the way is wiped).
    #[wasm_bindgen(constructor)]
    pub fn new(#[wasm_bindgen(unchecked_param_type = "Uint8Array")] seed: &JsValue) -> Result<Rng, JsValue> {
        let mut seed = bytes32(seed, "seed")?;
        let rng = Rng(Box::new(ChaCha20Rng::from_seed(seed)));
        zeroize::Zeroize::zeroize(&mut seed);
        Ok(rng)
    }
}

impl Drop for Rng {
    fn drop(&mut self) {
        // rand_chacha's RNG has no zeroize: overwrite it whole, in place, with the state of the
        // all-zero seed (nothing buffered), volatile so that the dead store is kept.
        // SAFETY: `*self.0` is a valid, aligned place; ChaCha20Rng has no drop glue to skip.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::write_volatile(&mut *self.0, ChaCha20Rng::from_seed([0; 32]))
        };
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// An Ed25519 identity key.
#[wasm_bindgen]
pub struct PrivateKey(engine::PrivateKey);

#[wasm_bindgen]
impl PrivateKey {
    /// A fresh key.
    pub fn generate(rng: &mut Rng) -> PrivateKey {
        PrivateKey(engine::PrivateKey::generate(&mut *rng.0))
    }

    /// From its 32-byte seed.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] seed: &JsValue,
    ) -> Result<PrivateKey, JsValue> {
        let mut seed = bytes32(seed, "seed")?;
        let key = engine::PrivateKey::from_slice(&seed).map(PrivateKey).map_err(err);
        zeroize::Zeroize::zeroize(&mut seed);
        key
    }

    /// The 32-byte public key.
    #[wasm_bindgen(getter, js_name = publicKey)]
    pub fn public_key(&self) -> Vec<u8> {
        self.0.public_key().as_bytes().to_vec()
    }
}

fn state(user_ids: &[i64], public_keys: &[u8], flags: &[i32], external: i32) -> Result<GroupState, JsValue> {
    if public_keys.len() != 32 * user_ids.len() || flags.len() != user_ids.len() {
        return Err(bad("participants: one 32-byte key and one flags value per user id"));
    }
    let participants = user_ids
        .iter()
        .zip(public_keys.chunks_exact(32))
        .zip(flags)
        .map(|((id, key), f)| GroupParticipant {
            user_id: *id,
            public_key: engine::PublicKey::from_bytes(key.try_into().unwrap_or([0; 32])),
            flags: Permissions::from_bits_retain(*f),
            version: 0,
        })
        .collect();
    Ok(GroupState { participants, external_permissions: Permissions::from_bits_retain(external) })
}

/// The zero block for createConferenceCall (plain form); participants as parallel arrays (the JS
/// entry takes `[{userId, publicKey, flags}]`).
#[wasm_bindgen(js_name = createZeroBlockRaw)]
pub fn create_zero_block(
    key: &PrivateKey,
    user_ids: &[i64],
    public_keys: &[u8],
    flags: &[i32],
    external_permissions: i32,
    rng: &mut Rng,
) -> Result<Vec<u8>, JsValue> {
    let state = state(user_ids, public_keys, flags, external_permissions)?;
    Ok(engine::build_zero_block(state, &key.0, &mut *rng.0).map_err(err)?.into_bytes())
}

/// The self-add block for joinGroupCall, built on the last block (server form).
#[wasm_bindgen(js_name = createSelfAddBlock)]
pub fn create_self_add_block(
    key: &PrivateKey,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] last_block: &JsValue,
    user_id: i64,
    flags: i32,
    rng: &mut Rng,
) -> Result<Vec<u8>, JsValue> {
    let last_block = bytes(last_block, "lastBlock")?;
    let me = GroupParticipant {
        user_id,
        public_key: key.0.public_key(),
        flags: Permissions::from_bits_retain(flags),
        version: 0,
    };
    let tip = engine::UnverifiedTip::from_server_block(&last_block).map_err(err)?;
    Ok(tip.build_self_add(me, &key.0, &mut *rng.0).map_err(err)?.into_bytes())
}

/// Server form (constructor id + 1) of a plain-form block or broadcast.
#[wasm_bindgen(js_name = toServerForm)]
pub fn to_server_form(#[wasm_bindgen(unchecked_param_type = "Uint8Array")] data: &JsValue) -> Result<Vec<u8>, JsValue> {
    engine::to_server_form(&bytes(data, "bytes")?).map_err(err)
}

/// The library version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// One participant's conference call.
#[wasm_bindgen]
pub struct Call(engine::Call);

#[wasm_bindgen]
impl Call {
    /// Creates the call from the last block (server form).
    #[wasm_bindgen(constructor)]
    pub fn new(
        user_id: i64,
        key: &PrivateKey,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] last_block: &JsValue,
        rng: &mut Rng,
    ) -> Result<Call, JsValue> {
        let last_block = bytes(last_block, "lastBlock")?;
        engine::Call::new(user_id, key.0.clone(), &last_block, &mut *rng.0).map(Call).map_err(err)
    }

    /// Applies the next block (server form).
    #[wasm_bindgen(js_name = applyBlock)]
    pub fn apply_block(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] block: &JsValue,
        now_ms: f64,
        rng: &mut Rng,
    ) -> Result<(), JsValue> {
        let (block, now) = (bytes(block, "block")?, time(now_ms, "nowMs")?);
        self.0.apply_block(&block, now, &mut *rng.0).map_err(err)
    }

    /// Adopts the server's last block in place (keeps key, sequence numbers, replay windows).
    pub fn resync(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] last_block: &JsValue,
        now_ms: f64,
        rng: &mut Rng,
    ) -> Result<(), JsValue> {
        let (block, now) = (bytes(last_block, "lastBlock")?, time(now_ms, "nowMs")?);
        let tip = engine::UnverifiedTip::from_server_block(&block).map_err(err)?;
        self.0.resync(tip, now, &mut *rng.0).map_err(err)
    }

    /// Encrypts a packet; `data[0..clearPrefixLen]` stays in clear.
    pub fn encrypt(
        &mut self,
        channel: i32,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] data: &JsValue,
        now_ms: f64,
        rng: &mut Rng,
        clear_prefix_len: Option<usize>,
    ) -> Result<Vec<u8>, JsValue> {
        let (data, now) = (bytes(data, "data")?, time(now_ms, "nowMs")?);
        self.0.encrypt(channel, &data, clear_prefix_len.unwrap_or(0), now, &mut *rng.0).map_err(err)
    }

    /// Decrypts a packet from `userId`.
    pub fn decrypt(
        &mut self,
        user_id: i64,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] packet: &JsValue,
        now_ms: f64,
    ) -> Result<Vec<u8>, JsValue> {
        let (packet, now) = (bytes(packet, "packet")?, time(now_ms, "nowMs")?);
        self.0.decrypt(user_id, &packet, now).map_err(err)
    }

    /// Encrypts a sendGroupCallEncryptedMessage payload (JSON text).
    #[wasm_bindgen(js_name = encryptMessage)]
    pub fn encrypt_message(&mut self, json: &str, now_ms: f64, rng: &mut Rng) -> Result<Vec<u8>, JsValue> {
        self.0.encrypt_message(json, time(now_ms, "nowMs")?, &mut *rng.0).map_err(err)
    }

    /// Decrypts an encrypted message into its JSON text.
    #[wasm_bindgen(js_name = decryptMessage)]
    pub fn decrypt_message(
        &mut self,
        user_id: i64,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] message: &JsValue,
        now_ms: f64,
    ) -> Result<String, JsValue> {
        let (message, now) = (bytes(message, "message")?, time(now_ms, "nowMs")?);
        self.0.decrypt_message(user_id, &message, now).map_err(err)
    }

    /// Broadcasts to send with sendConferenceCallBroadcast (plain form).
    #[wasm_bindgen(js_name = pullOutbound)]
    pub fn pull_outbound(&mut self) -> js_sys::Array {
        self.0.poll_outbound().into_iter().map(|b| JsValue::from(js_sys::Uint8Array::from(&b[..]))).collect()
    }

    /// Takes a broadcast (server form).
    #[wasm_bindgen(js_name = receiveBroadcast)]
    pub fn receive_broadcast(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] message: &JsValue,
    ) -> Result<(), JsValue> {
        self.0.receive_broadcast(&bytes(message, "message")?).map_err(err)
    }

    /// A block removing the given users (plain form).
    #[wasm_bindgen(js_name = buildRemove)]
    pub fn build_remove(&self, user_ids: &[i64], rng: &mut Rng) -> Result<Vec<u8>, JsValue> {
        Ok(self.0.build_remove(user_ids, &mut *rng.0).map_err(err)?.into_bytes())
    }

    /// A block setting a new state with a fresh key (participants as parallel arrays; plain form).
    #[wasm_bindgen(js_name = buildChangeStateRaw)]
    pub fn build_change_state(
        &self,
        user_ids: &[i64],
        public_keys: &[u8],
        flags: &[i32],
        external_permissions: i32,
        rng: &mut Rng,
    ) -> Result<Vec<u8>, JsValue> {
        let state = state(user_ids, public_keys, flags, external_permissions)?;
        Ok(self.0.build_change_state(state, &mut *rng.0).map_err(err)?.into_bytes())
    }

    /// A block re-keying the group (plain form).
    #[wasm_bindgen(js_name = buildRekey)]
    pub fn build_rekey(&self, rng: &mut Rng) -> Result<Vec<u8>, JsValue> {
        Ok(self.0.build_rekey(&mut *rng.0).map_err(err)?.into_bytes())
    }

    /// Forgets epochs whose grace period ended.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64) -> Result<(), JsValue> {
        self.0.handle_timeout(time(now_ms, "nowMs")?);
        Ok(())
    }

    /// The next instant (ms) `handleTimeout` has work, or undefined.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.0.poll_timeout().map(|t| t as f64)
    }

    /// The next event as `{kind, height, error?}`, or undefined.
    #[wasm_bindgen(js_name = pollEvent)]
    pub fn poll_event(&mut self) -> JsValue {
        let Some(e) = self.0.poll_event() else { return JsValue::UNDEFINED };
        let (kind, height, error) = match e {
            engine::CallEvent::BlockApplied { height } => ("block_applied", height, None),
            engine::CallEvent::Removed { height } => ("removed", height, None),
            engine::CallEvent::KeyUnavailable { height, error } => {
                ("key_unavailable", height, Some(error.kind().name()))
            }
            engine::CallEvent::EpochExpired { height } => ("epoch_expired", height, None),
            engine::CallEvent::VerificationDone { result } => ("verification_done", result.height, None),
            engine::CallEvent::TipAdopted { height } => ("tip_adopted", height, None),
            _ => ("other", 0, None),
        };
        let o = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&o, &"kind".into(), &kind.into());
        let _ = js_sys::Reflect::set(&o, &"height".into(), &height.into());
        if let Some(e) = error {
            let _ = js_sys::Reflect::set(&o, &"error".into(), &e.into());
        }
        o.into()
    }

    /// Height of the last applied block.
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> i32 {
        self.0.height()
    }

    /// Heights of the active epochs, ascending.
    #[wasm_bindgen(getter, js_name = activeEpochs)]
    pub fn active_epochs(&self) -> Vec<i32> {
        self.0.active_epochs()
    }

    /// Whether the last block lists us.
    #[wasm_bindgen(getter, js_name = isMember)]
    pub fn is_member(&self) -> bool {
        self.0.is_member()
    }

    /// Participants' user ids.
    #[wasm_bindgen(getter)]
    pub fn participants(&self) -> Vec<i64> {
        self.0.participants().iter().map(|p| p.user_id).collect()
    }

    /// Fingerprint of the current key.
    #[wasm_bindgen(getter, js_name = keyFingerprint)]
    pub fn key_fingerprint(&self) -> Option<String> {
        self.0.key_fingerprint()
    }

    /// The four emojis once verification completed.
    #[wasm_bindgen(getter)]
    pub fn emojis(&self) -> Option<Vec<String>> {
        self.0.emojis().map(|e| e.iter().map(|s| (*s).to_owned()).collect())
    }

    /// The 24 verification words.
    #[wasm_bindgen(getter, js_name = verificationWords)]
    pub fn verification_words(&self) -> Vec<String> {
        self.0.verification_words().iter().map(|s| (*s).to_owned()).collect()
    }
}

// ---- the session (sans-IO client over the phone.* API) and the server model ----

use engine::session as sess;

fn set(o: &js_sys::Object, key: &str, value: JsValue) {
    let _ = js_sys::Reflect::set(o, &key.into(), &value);
}

fn bytes_value(b: &[u8]) -> JsValue {
    js_sys::Uint8Array::from(b).into()
}

/// A request as a plain object: `{id, kind, subChain?, offset?, limit?, publicKey?, block?,
/// userIds?, kick?, encryptedMessage?}`; `kind` names the TL method.
fn request_value(id: u64, r: &sess::Request) -> JsValue {
    let o = js_sys::Object::new();
    set(&o, "id", JsValue::from_f64(id as f64));
    let kind = match r {
        sess::Request::GetChainBlocks { sub_chain, offset, limit } => {
            set(&o, "subChain", sub_chain.id().into());
            set(&o, "offset", (*offset).into());
            set(&o, "limit", (*limit).into());
            "get_chain_blocks"
        }
        sess::Request::CreateConference { public_key, block } => {
            if let Some(k) = public_key {
                set(&o, "publicKey", bytes_value(k.as_bytes()));
            }
            if let Some(b) = block {
                set(&o, "block", bytes_value(b.as_bytes()));
            }
            "create_conference"
        }
        sess::Request::Join { public_key, block } => {
            set(&o, "publicKey", bytes_value(public_key.as_bytes()));
            set(&o, "block", bytes_value(block.as_bytes()));
            "join"
        }
        sess::Request::DeleteParticipants { user_ids, block, kick } => {
            let ids: js_sys::Array = user_ids.iter().map(|u| JsValue::from(*u)).collect();
            set(&o, "userIds", ids.into());
            set(&o, "block", bytes_value(block.as_bytes()));
            set(&o, "kick", (*kick).into());
            "delete_participants"
        }
        sess::Request::SendBroadcast { block } => {
            set(&o, "block", bytes_value(block));
            "send_broadcast"
        }
        sess::Request::SendEncryptedMessage { encrypted_message } => {
            set(&o, "encryptedMessage", bytes_value(encrypted_message));
            "send_encrypted_message"
        }
        sess::Request::Leave => "leave",
        sess::Request::GetGroupParticipants { sources } => {
            let list: js_sys::Array = sources.iter().map(|s| JsValue::from(*s)).collect();
            set(&o, "sources", list.into());
            "get_group_participants"
        }
        _ => "unknown",
    };
    set(&o, "kind", kind.into());
    o.into()
}

use args::{get, int, items, type_error, user_id};

#[wasm_bindgen(typescript_custom_section)]
const SESSION_CONFIG: &'static str = r#"
/** A session's configuration (SPEC.md §15): SessionConfig's fields in camelCase, defaults in brackets. */
export interface SessionConfig {
  /** Poll period of each sub-chain while nothing arrives, ms (10,000; 1 s to 1 hour). */
  pollIntervalMs?: number;
  /** Page size of polls (100; 1 to 1,000). */
  pollLimit?: number;
  /** Attempts of a join or removal against CONF_WRITE_CHAIN_INVALID (8; 1 to 1,000). */
  maxAttempts?: number;
  /** First retry delay, ms (250; at least 1). */
  backoffMs?: number;
  /** Longest retry delay, ms (8,000; backoffMs to 1 hour). */
  maxBackoffMs?: number;
  /** Attempts of a broadcast or message on transient errors (5; 1 to 1,000). */
  maxSendAttempts?: number;
  /** Largest groupCallMessage JSON sent or accepted (8,192; 1 byte to 1 MiB). */
  maxMessageBytes?: number;
  /** Updates kept while a join is in flight, blocks held beyond a gap (256; 1 to 65,536). */
  maxBufferedUpdates?: number;
  /** Bytes of those (4 MiB; 1 KiB to 256 MiB). */
  maxBufferedBytes?: number;
  /** Messages remembered for deduplication (4,096; at most 1,048,576). */
  maxRememberedMessages?: number;
  /** Deadline of every request, ms (30,000; 1 s to 1 hour). */
  requestTimeoutMs?: number;
  /** Longest FLOOD_WAIT a join or send waits out, s (60; at most 1 day). */
  maxFloodWaitS?: number;
  /** Remove chain participants the server says left the call (true). */
  pruneLeft?: boolean;
  /** Most random delay before pruning, ms (2,000; at most 1 minute). */
  maxPruneDelayMs?: number;
  /** Avoid and end H.264 blackouts (true). */
  endVideoBlackouts?: boolean;
  /** Pace of the outbox (10; 1 to 50). */
  maxRequestsPerSecond?: number;
  /** Requests let out at once after a quiet spell (20; 1 to 50). */
  maxRequestBurst?: number;
  /** Messages held undelivered before sendMessage refuses (64; 1 to 4,096). */
  maxQueuedMessages?: number;
  /** The largest call: the app config's conference_call_size_limit (200; 2 to 10,000). */
  callSizeLimit?: number;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// A `SessionConfig` object from JavaScript (read by `args::session_config`).
    #[wasm_bindgen(typescript_type = "SessionConfig")]
    pub type SessionConfigObject;
}

/// `{subChain, blocks, nextOffset}` (updateGroupCallChainBlocks) or `{from, encryptedMessage}`;
/// `field` names it in errors. Checked whole before anything is copied past `budget`. `None`:
/// an update of a sub-chain other than 0 and 1, none of the session's.
fn update_of(v: &JsValue, field: &str, budget: &mut Budget) -> Result<Option<sess::Update>, JsValue> {
    if !v.is_object() {
        return Err(type_error(field, "an update object", v));
    }
    let sub = get(v, "subChain");
    if !sub.is_undefined() {
        let sub_chain_id = int(&sub, &format!("{field}.subChain"))?;
        let next_offset = int(&get(v, "nextOffset"), &format!("{field}.nextOffset"))?;
        let blocks = items(&get(v, "blocks"), &format!("{field}.blocks"))?
            .iter()
            .enumerate()
            .map(|(i, b)| budget.bytes(b, &format!("{field}.blocks[{i}]")).map(sess::ServerBlock::from))
            .collect::<Result<_, _>>()?;
        let sub_chain = sess::SubChain::from_id(sub_chain_id);
        return Ok(sub_chain.map(|sub_chain| sess::Update::ChainBlocks { sub_chain, blocks, next_offset }));
    }
    if let Some(u) = call_update_of(v, field)? {
        return Ok(Some(u));
    }
    let from = get(v, "from");
    if from.is_undefined() {
        return Err(type_error(field, "{subChain, blocks, nextOffset} or {from, encryptedMessage}", v));
    }
    let from = user_id(&from, &format!("{field}.from"))?;
    let encrypted_message = budget.bytes(&get(v, "encryptedMessage"), &format!("{field}.encryptedMessage"))?;
    Ok(Some(sess::Update::EncryptedMessage { from, encrypted_message }))
}

#[cfg(feature = "testkit")]
fn update_value(u: &sess::Update) -> JsValue {
    let o = js_sys::Object::new();
    match u {
        sess::Update::ChainBlocks { sub_chain, blocks, next_offset } => {
            set(&o, "subChain", sub_chain.id().into());
            let list: js_sys::Array = blocks.iter().map(|b| bytes_value(b)).collect();
            set(&o, "blocks", list.into());
            set(&o, "nextOffset", (*next_offset).into());
        }
        sess::Update::EncryptedMessage { from, encrypted_message } => {
            set(&o, "from", JsValue::from(*from));
            set(&o, "encryptedMessage", bytes_value(encrypted_message));
        }
        sess::Update::Participants { participants } => {
            let list: js_sys::Array = participants.iter().map(sources::record_value).collect();
            set(&o, "participants", list.into());
        }
        other => set(&o, "debug", format!("{other:?}").into()),
    }
    o.into()
}

#[cfg(feature = "testkit")]
fn request_of(v: &JsValue) -> Result<sess::Request, JsValue> {
    if !v.is_object() {
        return Err(type_error("request", "a request object", v));
    }
    let kind = get(v, "kind");
    let kind = kind.as_string().ok_or_else(|| type_error("request.kind", "a string", &kind))?;
    let block = || engine::PlainBlock::from_plain_bytes(bytes(&get(v, "block"), "request.block")?).map_err(err);
    let key = || Ok::<_, JsValue>(engine::PublicKey::from_bytes(bytes32(&get(v, "publicKey"), "request.publicKey")?));
    let int_or = |key: &str, default: i32| match get(v, key) {
        u if u.is_undefined() => Ok(default),
        n => int(&n, &format!("request.{key}")),
    };
    Ok(match kind.as_str() {
        "get_chain_blocks" => sess::Request::GetChainBlocks {
            sub_chain: if get(v, "subChain").as_f64() == Some(0.0) {
                sess::SubChain::Blocks
            } else {
                sess::SubChain::Broadcasts
            },
            offset: int_or("offset", -1)?,
            limit: int_or("limit", 1)?,
        },
        "create_conference" if get(v, "block").is_undefined() => {
            sess::Request::CreateConference { public_key: None, block: None }
        }
        "create_conference" => sess::Request::CreateConference { public_key: Some(key()?), block: Some(block()?) },
        "join" => sess::Request::Join { public_key: key()?, block: block()? },
        "delete_participants" => sess::Request::DeleteParticipants {
            user_ids: items(&get(v, "userIds"), "request.userIds")?
                .iter()
                .enumerate()
                .map(|(i, u)| user_id(u, &format!("request.userIds[{i}]")))
                .collect::<Result<_, _>>()?,
            block: block()?,
            kick: get(v, "kick").as_bool().unwrap_or(false),
        },
        "send_broadcast" => sess::Request::SendBroadcast { block: bytes(&get(v, "block"), "request.block")? },
        "send_encrypted_message" => sess::Request::SendEncryptedMessage {
            encrypted_message: bytes(&get(v, "encryptedMessage"), "request.encryptedMessage")?,
        },
        "leave" => sess::Request::Leave,
        "get_group_participants" => sess::Request::GetGroupParticipants {
            sources: items(&get(v, "sources"), "request.sources")?
                .iter()
                .take(engine::limits::MAX_LOOKUP_BATCH)
                .map(|s| sources::ssrc(s, "request.sources"))
                .collect::<Result<_, _>>()?,
        },
        other => return Err(bad(&format!("request.kind: unknown kind {other:?}"))),
    })
}

/// A sans-IO client of one conference over Telegram's phone.* API (SPEC.md §15).
#[wasm_bindgen]
pub struct Session(sess::Session);

#[wasm_bindgen]
impl Session {
    /// Who sends on each SSRC of the call, as the session keeps it from participant updates (with
    /// their `source`, `video`, `presentation`), its join and its own lookups: a read-only
    /// `SourceTable` for `decryptFrameFromSource` and `MediaTransform.attachReceiver(receiver,
    /// { sources })`. The same map for the session's life.
    #[wasm_bindgen(js_name = sourceMap)]
    pub fn source_map(&self) -> sources::SourceTable {
        sources::SourceTable::view(self.0.source_map())
    }

    /// A session for `userId`; `config` changes its configuration (SPEC.md §15), e.g.
    /// `{ callSizeLimit: 1000 }` from the app config's `conference_call_size_limit`. An unknown
    /// property or a value out of range throws `INVALID_INPUT`.
    #[wasm_bindgen(constructor)]
    pub fn new(user_id: i64, config: Option<SessionConfigObject>) -> Result<Session, JsValue> {
        let config = args::session_config(&config.map_or(JsValue::UNDEFINED, JsValue::from))?;
        sess::Session::new(user_id, config).map(Session).map_err(err)
    }

    /// The session's configuration, every field (camelCase).
    #[wasm_bindgen(getter, unchecked_return_type = "Required<SessionConfig>")]
    pub fn config(&self) -> JsValue {
        let o = js_sys::Object::new();
        let config = self.0.config();
        for name in sess::SessionConfig::FIELDS {
            let value = config.get(name).unwrap_or_default();
            let v: JsValue =
                if sess::SessionConfig::FLAGS.contains(&name) { (value == 1).into() } else { (value as f64).into() };
            set(&o, &args::camel_case(name), v);
        }
        o.into()
    }

    /// createConferenceCall (joining at once unless `join` is false).
    pub fn create(&mut self, join: bool, now_ms: f64, rng: &mut Rng) -> Result<(), JsValue> {
        self.0.create(join, time(now_ms, "nowMs")?, &mut *rng.0).map_err(err)
    }

    /// Joins (or rejoins) with a new key.
    pub fn join(&mut self, now_ms: f64, rng: &mut Rng) -> Result<(), JsValue> {
        self.0.join(time(now_ms, "nowMs")?, &mut *rng.0).map_err(err)
    }

    /// Leaves the call.
    pub fn leave(&mut self, now_ms: f64) -> Result<(), JsValue> {
        self.0.leave(time(now_ms, "nowMs")?);
        Ok(())
    }

    /// Sends a groupCallMessage (JSON).
    #[wasm_bindgen(js_name = sendMessage)]
    pub fn send_message(&mut self, json: &str, now_ms: f64, rng: &mut Rng) -> Result<(), JsValue> {
        self.0.send_message(json, time(now_ms, "nowMs")?, &mut *rng.0).map_err(err)
    }

    /// The next request to send, or undefined.
    #[wasm_bindgen(js_name = pollRequest)]
    pub fn poll_request(&mut self) -> JsValue {
        match self.0.poll_request() {
            Some((id, r)) => request_value(id, &r),
            None => JsValue::UNDEFINED,
        }
    }

    /// The outcome of request `id`: `updates` (an array, or undefined for none) on success, or
    /// the API `error` string (sorted here into its kind; the mtcute adapter writes it from
    /// `tl.RpcError`). Every argument is checked first: a malformed one is an error that
    /// leaves the session and the Rng as they were.
    #[wasm_bindgen(js_name = handleResponse)]
    pub fn handle_response(
        &mut self,
        id: f64,
        #[wasm_bindgen(unchecked_param_type = "object[] | undefined")] updates: &JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | undefined")] error: &JsValue,
        now_ms: f64,
        rng: &mut Rng,
    ) -> Result<(), JsValue> {
        let id = time(id, "id")?;
        let now = time(now_ms, "nowMs")?;
        let response = if error.is_undefined() || error.is_null() {
            let list = if updates.is_undefined() || updates.is_null() {
                Vec::new()
            } else {
                let mut budget = Budget::new();
                items(updates, "updates")?
                    .iter()
                    .enumerate()
                    .map(|(i, u)| update_of(u, &format!("updates[{i}]"), &mut budget))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .flatten()
                    .collect()
            };
            sess::Response::Ok(list)
        } else {
            // Its length is checked before the string is copied into the module's memory.
            let e = error.dyn_ref::<js_sys::JsString>().ok_or_else(|| type_error("error", "a string", error))?;
            if e.length() > 4096 {
                return Err(bad(&format!("error: {} characters, at most 4096", e.length())));
            }
            sess::Response::Error(String::from(e).into())
        };
        self.0.handle_response(id, response, now, &mut *rng.0);
        Ok(())
    }

    /// A pushed update (checked whole first, as in `handleResponse`).
    #[wasm_bindgen(js_name = handleUpdate)]
    pub fn handle_update(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "object")] update: &JsValue,
        now_ms: f64,
        rng: &mut Rng,
    ) -> Result<(), JsValue> {
        let now = time(now_ms, "nowMs")?;
        if let Some(u) = update_of(update, "update", &mut Budget::new())? {
            self.0.handle_update(u, now, &mut *rng.0);
        }
        Ok(())
    }

    /// Runs what is due at `nowMs`.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64, rng: &mut Rng) -> Result<(), JsValue> {
        self.0.handle_timeout(time(now_ms, "nowMs")?, &mut *rng.0);
        Ok(())
    }

    /// The next instant `handleTimeout` has work, or undefined.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.0.poll_timeout().map(|t| t as f64)
    }

    /// The next event as `{kind, height?, text?, userIds?, emojis?, from?}`, or undefined.
    #[wasm_bindgen(js_name = pollEvent)]
    pub fn poll_event(&mut self) -> JsValue {
        let Some(e) = self.0.poll_event() else { return JsValue::UNDEFINED };
        let o = js_sys::Object::new();
        let strings =
            |v: &[&'static str]| -> JsValue { v.iter().map(|s| JsValue::from(*s)).collect::<js_sys::Array>().into() };
        let d = e.describe();
        for field in d.fields {
            match field {
                sess::EventField::Height(h) => set(&o, "height", h.into()),
                sess::EventField::User(u) => set(&o, "from", JsValue::from(u)),
                sess::EventField::UserIds(ids) => {
                    set(&o, "userIds", ids.iter().map(|u| JsValue::from(*u)).collect::<js_sys::Array>().into())
                }
                sess::EventField::Call(c) => set(
                    &o,
                    "userIds",
                    [c.id, c.access_hash].iter().map(|u| JsValue::from(*u)).collect::<js_sys::Array>().into(),
                ),
                sess::EventField::Fingerprint(t) | sess::EventField::Text(t) => set(&o, "text", t.into()),
                sess::EventField::Words(words) => set(&o, "words", strings(&words)),
                sess::EventField::Emojis(emojis) => set(&o, "emojis", strings(&emojis)),
                sess::EventField::Now(now) => set(&o, "now", now.into()),
                _ => {}
            }
        }
        let kind = d.name;
        set(&o, "kind", kind.into());
        o.into()
    }

    /// "idle", "joining", "joined", "resyncing", "removed", "leaving", "left", "failed",
    /// "chain_rejected" (failed closed) or "ended".
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        match self.0.state() {
            sess::SessionState::ChainRejected => "chain_rejected".to_owned(),
            s => format!("{s:?}").to_lowercase(),
        }
    }

    /// Height of the call, or -1 before joining.
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> i32 {
        self.0.call().map_or(-1, engine::Call::height)
    }

    /// The four emojis once verified.
    #[wasm_bindgen(getter)]
    pub fn emojis(&self) -> Option<Vec<String>> {
        self.0.call()?.emojis().map(|e| e.iter().map(|s| (*s).to_owned()).collect())
    }

    /// Encrypts a media frame with the session's call.
    pub fn encrypt(
        &mut self,
        channel: i32,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] data: &JsValue,
        now_ms: f64,
        rng: &mut Rng,
    ) -> Result<Vec<u8>, JsValue> {
        let (data, now) = (bytes(data, "data")?, time(now_ms, "nowMs")?);
        let call = self.0.call_mut().ok_or_else(|| bad("not in a call"))?;
        call.encrypt(channel, &data, 0, now, &mut *rng.0).map_err(err)
    }

    /// Decrypts a media frame from `userId` with the session's call.
    pub fn decrypt(
        &mut self,
        user_id: i64,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] packet: &JsValue,
        now_ms: f64,
    ) -> Result<Vec<u8>, JsValue> {
        let (packet, now) = (bytes(packet, "packet")?, time(now_ms, "nowMs")?);
        let call = self.0.call_mut().ok_or_else(|| bad("not in a call"))?;
        call.decrypt(user_id, &packet, now).map_err(err)
    }
}

/// The in-memory model of Telegram's server for one conference (a test double; only in a build
/// with the `testkit` feature, `build.sh --testkit`, exported by `testkit.js`).
#[cfg(feature = "testkit")]
#[wasm_bindgen]
pub struct Server(engine::server::Server);

#[cfg(feature = "testkit")]
#[wasm_bindgen]
impl Server {
    /// A call that a create starts.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Server {
        Server(engine::server::Server::new())
    }

    /// A call whose server also pushes `updateGroupCallParticipants` when someone joins or
    /// leaves, and answers a join with the joiner's own participation, each with its sources
    /// (the audio SSRC, the video source group), as the real server does.
    #[wasm_bindgen(js_name = withParticipantUpdates)]
    pub fn with_participant_updates() -> Server {
        let behaviour = engine::server::Behaviour { participant_updates: true, ..Default::default() };
        Server(engine::server::Server::with_behaviour(behaviour, 0))
    }

    /// Handles a request from `from`: `{updates?, error?, pushes: [{to, update}]}`.
    pub fn handle(
        &mut self,
        from: i64,
        #[wasm_bindgen(unchecked_param_type = "object")] request: &JsValue,
    ) -> Result<JsValue, JsValue> {
        let request = request_of(request)?;
        let (response, pushes) = self.0.handle(from, &request);
        let o = js_sys::Object::new();
        match response {
            sess::Response::Ok(updates) => {
                set(&o, "updates", updates.iter().map(update_value).collect::<js_sys::Array>().into())
            }
            sess::Response::Error(e) => set(&o, "error", e.to_string().into()),
        }
        let list: js_sys::Array = pushes
            .iter()
            .map(|(to, u)| {
                let p = js_sys::Object::new();
                set(&p, "to", JsValue::from(*to));
                set(&p, "update", update_value(u));
                JsValue::from(p)
            })
            .collect();
        set(&o, "pushes", list.into());
        Ok(o.into())
    }

    /// Height of the last block.
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> i32 {
        self.0.height()
    }
}

// ---- one-to-one calls ----

use engine::p2p;

fn dh_config(g: i32, p: Option<Vec<u8>>) -> Result<p2p::DhConfig, JsValue> {
    match p {
        None => Ok(p2p::DhConfig::telegram()),
        Some(p) => p2p::DhConfig::new(g, &p, &mut p2p::PrimeCache::new()).map_err(err),
    }
}

/// The calling side of a one-to-one call (requestCall); `p` undefined uses Telegram's prime.
#[wasm_bindgen]
pub struct P2PCaller(p2p::Caller);

#[wasm_bindgen]
impl P2PCaller {
    /// Draws the secret exponent from `rng`.
    #[wasm_bindgen(constructor)]
    pub fn new(rng: &mut Rng, g: Option<i32>, p: Option<Vec<u8>>) -> Result<P2PCaller, JsValue> {
        Ok(P2PCaller(p2p::Caller::new(dh_config(g.unwrap_or(3), p)?, &mut *rng.0)))
    }

    /// SHA-256(g_a), for requestCall.
    #[wasm_bindgen(getter, js_name = gAHash)]
    pub fn g_a_hash(&self) -> Vec<u8> {
        self.0.g_a_hash().to_vec()
    }

    /// g_a, for confirmCall.
    #[wasm_bindgen(getter, js_name = gA)]
    pub fn g_a(&self) -> Vec<u8> {
        self.0.g_a()
    }

    /// On phoneCallAccepted: checks g_b and returns the key.
    #[wasm_bindgen(js_name = onAccepted)]
    pub fn on_accepted(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] g_b: &JsValue,
    ) -> Result<P2PKey, JsValue> {
        self.0.on_accepted(&bytes(g_b, "gB")?).map(|c| P2PKey(c.key)).map_err(err)
    }
}

/// The called side of a one-to-one call (acceptCall).
#[wasm_bindgen]
pub struct P2PCallee(p2p::Callee);

#[wasm_bindgen]
impl P2PCallee {
    /// Given the caller's g_a_hash; draws the secret exponent from `rng`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] g_a_hash: &JsValue,
        rng: &mut Rng,
        g: Option<i32>,
        p: Option<Vec<u8>>,
    ) -> Result<P2PCallee, JsValue> {
        let hash = bytes32(g_a_hash, "gAHash")?;
        Ok(P2PCallee(p2p::Callee::new(dh_config(g.unwrap_or(3), p)?, hash, &mut *rng.0)))
    }

    /// g_b, for acceptCall.
    #[wasm_bindgen(getter, js_name = gB)]
    pub fn g_b(&self) -> Vec<u8> {
        self.0.g_b()
    }

    /// On phoneCall with g_a and key_fingerprint: checks everything and returns the key.
    #[wasm_bindgen(js_name = onConfirmed)]
    pub fn on_confirmed(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] g_a: &JsValue,
        key_fingerprint: i64,
    ) -> Result<P2PKey, JsValue> {
        self.0.on_confirmed(&bytes(g_a, "gA")?, key_fingerprint).map(P2PKey).map_err(err)
    }
}

/// The agreed key of a one-to-one call.
#[wasm_bindgen]
pub struct P2PKey(p2p::DhKey);

#[wasm_bindgen]
impl P2PKey {
    /// key_fingerprint, for confirmCall.
    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> i64 {
        self.0.fingerprint()
    }

    /// The four emojis both sides show.
    #[wasm_bindgen(getter)]
    pub fn emojis(&self) -> Vec<String> {
        self.0.emojis().iter().map(|s| (*s).to_owned()).collect()
    }

    /// The 256-byte key.
    pub fn key(&self) -> Vec<u8> {
        self.0.key().expose().to_vec()
    }
}

// ---- for the MTProto adapters (mtcute) ----

/// `{call: {id, accessHash}, discarded, inviteLink?}` (updateGroupCall) or
/// `{participants: [{userId, left, date?, source?, video?, presentation?}]}`
/// (updateGroupCallParticipants); ids are bigints.
fn call_update_of(v: &JsValue, field: &str) -> Result<Option<sess::Update>, JsValue> {
    let participants = get(v, "participants");
    if !participants.is_undefined() {
        let mut out = Vec::new();
        for (i, p) in items(&participants, &format!("{field}.participants"))?.iter().enumerate() {
            out.push(sources::record(p, &format!("{field}.participants[{i}]"))?);
        }
        return Ok(Some(sess::Update::Participants { participants: out }));
    }
    let call = get(v, "call");
    if call.is_object() {
        let call = engine::api::CallIdentity {
            id: user_id(&get(&call, "id"), &format!("{field}.call.id"))?,
            access_hash: user_id(&get(&call, "accessHash"), &format!("{field}.call.accessHash"))?,
        };
        let discarded = get(v, "discarded").as_bool().unwrap_or(false);
        let invite_link = get(v, "inviteLink").as_string();
        return Ok(Some(sess::Update::GroupCall { call, discarded, invite_link }));
    }
    Ok(None)
}

/// The server model's TL front for one call: `handle(server, from, functionBytes)` returns
/// `{result, pushes: [{to, updates}]}`, the bytes an MTProto library serialized in and the
/// `Updates` / `Bool` / `rpc_error` bytes it parses out. Only with the `testkit` feature, as
/// [`Server`].
#[cfg(feature = "testkit")]
#[wasm_bindgen]
pub struct TlFront(engine::server::tl::TlFront);

#[cfg(feature = "testkit")]
#[wasm_bindgen]
impl TlFront {
    /// A front for the call `(id, accessHash)`.
    #[wasm_bindgen(constructor)]
    pub fn new(id: i64, access_hash: i64) -> TlFront {
        TlFront(engine::server::tl::TlFront::new(engine::api::CallIdentity { id, access_hash }))
    }

    /// Answers function bytes from user `from`.
    pub fn handle(
        &self,
        server: &mut Server,
        from: i64,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] function: &JsValue,
    ) -> Result<JsValue, JsValue> {
        let function = bytes(function, "function")?;
        let (result, pushes) = self.0.handle(&mut server.0, from, &function);
        let o = js_sys::Object::new();
        set(&o, "result", bytes_value(&result));
        let list: js_sys::Array = pushes
            .iter()
            .map(|(to, u)| {
                let p = js_sys::Object::new();
                set(&p, "to", JsValue::from(*to));
                set(&p, "updates", bytes_value(u));
                JsValue::from(p)
            })
            .collect();
        set(&o, "pushes", list.into());
        Ok(o.into())
    }

    /// The call's invite link.
    #[wasm_bindgen(getter, js_name = inviteLink)]
    pub fn invite_link(&self) -> String {
        self.0.invite_link.clone()
    }
}

#[wasm_bindgen]
impl Session {
    /// Removes `userIds` (bigints) from the call: a ban (`kick`) or pruning users who left.
    pub fn remove(&mut self, user_ids: Vec<i64>, kick: bool, now_ms: f64, rng: &mut Rng) -> Result<(), JsValue> {
        self.0.remove(&user_ids, kick, time(now_ms, "nowMs")?, &mut *rng.0).map_err(err)
    }
}
