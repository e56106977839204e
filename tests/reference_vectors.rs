//! Conformance with the reference implementation: every vector in `vectors/` (or
//! `$CONFCHAIN_VECTORS`) must pass. Each test prints `<file>: N passed` (see `--nocapture`).

mod common;

use common::{hex, hex32, load, report, ReplayRng};
use confchain::chain::{build_zero_block, Chain, UnverifiedTip};
use confchain::crypto::{self, PrivateKey, PublicKey};
use confchain::wire::{self, Block, Change, GroupParticipant, GroupState};
use confchain::ErrorKind;
use confchain::Permissions;
use serde_json::Value;

/// The `keys` section of a vector file: (user_id, private key).
fn keys_of(v: &Value) -> Vec<(i64, PrivateKey)> {
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["user_id"].as_i64().unwrap(), PrivateKey::from_slice(&hex(&k["private_key"])).unwrap()))
        .collect()
}

fn state_from_json(v: &Value) -> GroupState {
    GroupState {
        participants: v["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| GroupParticipant {
                user_id: p["user_id"].as_i64().unwrap(),
                public_key: PublicKey::from_bytes(hex32(&p["public_key"])),
                flags: Permissions::from_bits_retain(p["flags"].as_i64().unwrap() as i32),
                version: p["version"].as_i64().unwrap() as i32,
            })
            .collect(),
        external_permissions: Permissions::from_bits_retain(v["external_permissions"].as_i64().unwrap() as i32),
    }
}

/// The codeless kinds, by the reference's message.
fn kind_of_message(message: &str) -> ErrorKind {
    let table: &[(&str, ErrorKind)] = &[
        ("Trying to apply local block", ErrorKind::NotFromServer),
        ("Block is too short", ErrorKind::Parse),
        ("Not enough data to read", ErrorKind::Parse),
        ("Too much data to fetch", ErrorKind::Parse),
        ("Expected magic", ErrorKind::Parse),
        ("Unknown constructor", ErrorKind::Parse),
        ("Wrong vector length", ErrorKind::Parse),
        ("Shared key is already set", ErrorKind::SharedKeyAlreadySet),
        ("Unknown public key", ErrorKind::UnknownPublicKey),
        ("Failed to decrypt", ErrorKind::Decrypt),
        ("Message is already processed", ErrorKind::Replay),
        ("Message is too old", ErrorKind::Replay),
        ("Packet is encrypted by us", ErrorKind::OwnPacket),
        ("Wrong signature", ErrorKind::WrongSignature),
        ("Participant not found", ErrorKind::ParticipantNotFound),
        ("Packet too small", ErrorKind::InvalidPacket),
        ("Unencrypted prefix size is too large", ErrorKind::InvalidPacket),
        ("Unsupported protocol version", ErrorKind::InvalidPacket),
        ("Reserved part of head is not zero", ErrorKind::InvalidPacket),
        ("Too many active epochs", ErrorKind::InvalidPacket),
        ("Unencrypted header length is too large", ErrorKind::InvalidInput),
        ("Failed to compute modulo inverse", ErrorKind::SharedSecret),
        ("Failed to compute shared secret", ErrorKind::SharedSecret),
    ];
    table
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map(|(_, k)| *k)
        .unwrap_or_else(|| panic!("no kind known for reference message {message:?}"))
}

/// Checks an error against the vector's `{error, message}`: same code, or same codeless kind, and
/// the same message text.
pub fn assert_error(got: &confchain::Error, code: &str, message: &str, what: &str) {
    if code.is_empty() {
        assert_eq!(got.code(), None, "{what}: expected a codeless error, got {got:?}");
        assert_eq!(got.kind(), kind_of_message(message), "{what}: {got:?}");
    } else {
        assert_eq!(got.code(), Some(code), "{what}: {got:?}");
    }
    assert_eq!(got.message(), message, "{what}");
}

#[test]
fn primitives() {
    let v = load("tde2e/primitives.json");
    let mut n = 0;
    for k in v["keys"].as_array().unwrap() {
        let sk = PrivateKey::from_slice(&hex(&k["private_key"])).unwrap();
        assert_eq!(sk.public_key().as_bytes().to_vec(), hex(&k["public_key"]));
        n += 1;
    }
    for s in v["shared_secret"].as_array().unwrap() {
        let sk = PrivateKey::from_slice(&hex(&s["private_key"])).unwrap();
        let pk = PublicKey::from_bytes(hex32(&s["public_key"]));
        assert_eq!(sk.shared_secret(&pk).unwrap().expose().to_vec(), hex(&s["shared_secret"]));
        n += 1;
    }
    for s in v["signatures"].as_array().unwrap() {
        let sk = PrivateKey::from_slice(&hex(&s["private_key"])).unwrap();
        let msg = hex(&s["message"]);
        let sig = sk.sign(&msg);
        assert_eq!(sig.to_vec(), hex(&s["signature"]));
        sk.public_key().verify(&msg, &sig).unwrap();
        n += 1;
    }
    for s in v["kdf_expand"].as_array().unwrap() {
        assert_eq!(crypto::kdf(&hex(&s["secret"]), &hex(&s["label"])).expose().to_vec(), hex(&s["hmac_sha512"]));
        n += 1;
    }
    for s in v["encrypt_data"].as_array().unwrap() {
        let (data, secret, extra) = (hex(&s["data"]), hex(&s["secret"]), hex(&s["extra"]));
        let (enc, id) = crypto::encrypt_data_with_prefix(&data, &secret, &extra, &hex(&s["rng"])).unwrap();
        assert_eq!(enc, hex(&s["encrypted"]));
        assert_eq!(id.to_vec(), hex(&s["large_msg_id"]));
        let (dec, id2) = crypto::decrypt_data(&enc, &secret, &extra).unwrap();
        assert_eq!((dec, id2), (data, id));
        n += 1;
    }
    for s in v["decrypt_data_failures"].as_array().unwrap() {
        let err = crypto::decrypt_data(&hex(&s["encrypted"]), &hex(&s["secret"]), &hex(&s["extra"])).unwrap_err();
        assert_error(&err, "", s["message"].as_str().unwrap(), s["name"].as_str().unwrap());
        n += 1;
    }
    for s in v["encrypt_header"].as_array().unwrap() {
        let header = hex32(&s["header"]);
        let (msg, secret) = (hex(&s["encrypted_message"]), hex(&s["secret"]));
        let enc = crypto::encrypt_header(&header, &msg, &secret).unwrap();
        assert_eq!(enc.to_vec(), hex(&s["encrypted_header"]));
        assert_eq!(crypto::decrypt_header(&enc, &msg, &secret).unwrap().expose(), &header);
        n += 1;
    }
    report("primitives.json (keys, secrets, signatures, kdf, encrypt_data, headers)", n);
}

/// Shared secrets with ANY 32 bytes as the public key: on-curve, off-curve (the twist),
/// identity, zero, -1, non-canonical and sign-bit encodings give the reference's bytes or errors.
#[test]
fn shared_secrets_any_key() {
    let v = load("tde2e/shared_secrets_any_key.json");
    let mut n = 0;
    for (i, s) in v.as_array().unwrap().iter().enumerate() {
        let sk = PrivateKey::from_slice(&hex(&s["private_key"])).unwrap();
        let pk = PublicKey::from_bytes(hex32(&s["public_key"]));
        let got = sk.shared_secret(&pk);
        match s.get("shared_secret") {
            Some(expected) => assert_eq!(got.unwrap().expose().to_vec(), hex(expected), "entry {i}"),
            None => assert_error(&got.unwrap_err(), "", s["error"].as_str().unwrap(), &format!("entry {i}")),
        }
        n += 1;
    }
    report("shared_secrets_any_key.json", n);
}

fn check_chain_file(name: &str) -> usize {
    let v = load(&format!("tde2e/{name}"));
    let keys = keys_of(&v);
    let mut chain = Chain::empty();
    let mut n = 0;
    for (i, step) in v["steps"].as_array().unwrap().iter().enumerate() {
        let what = format!("{name} step {i} ({})", step["description"]);
        let server = hex(&step["block"]);
        let plain = wire::from_server_form(&server).unwrap();

        // Rebuild the block byte for byte from the signer, the intent and the recorded RNG bytes.
        let signer = PrivateKey::from_slice(&hex(&step["signer_private_key"])).unwrap();
        let intent = &step["intent"];
        let mut rng = ReplayRng::new(hex(&step["rng"]));
        let built = match intent["kind"].as_str().unwrap() {
            "set_group_state" => chain.build_change_state(state_from_json(&intent["state"]), &signer, &mut rng),
            "set_value" => {
                // Clients hold only the key/value hash, not the store (SPEC.md §4.5): the new hash
                // is an input of the builder, taken here from the recorded block.
                let kv = Block::decode(&plain).unwrap().state_proof.kv_hash;
                chain.build_set_value(&hex(&intent["key"]), &hex(&intent["value"]), kv, &signer)
            }
            other => panic!("{what}: unknown intent {other}"),
        }
        .unwrap_or_else(|e| panic!("{what}: build failed: {e}"));
        assert!(rng.exhausted(), "{what}: RNG bytes left over");
        assert_eq!(hex::encode(&built), hex::encode(&plain), "{what}: rebuilt block differs");

        chain.apply(&server).unwrap_or_else(|e| panic!("{what}: apply failed: {e}"));
        assert_eq!(i64::from(chain.height()), step["height"].as_i64().unwrap(), "{what}");
        assert_eq!(chain.hash().to_vec(), hex(&step["hash"]), "{what}");
        assert_eq!(*chain.group_state(), state_from_json(&step["state"]), "{what}");
        assert_eq!(i64::from(chain.group_version()), step["group_version"].as_i64().unwrap(), "{what}");
        for gk in step["group_keys"].as_array().unwrap() {
            let uid = gk["user_id"].as_i64().unwrap();
            let (_, sk) = keys.iter().find(|(u, _)| *u == uid).expect("key of member");
            let key = chain.group_key(uid, sk).unwrap_or_else(|e| panic!("{what}: group key of {uid}: {e}"));
            assert_eq!(key.expose().to_vec(), hex(&gk["group_key"]), "{what}: group key of {uid}");
        }
        assert_eq!(step["group_keys"].as_array().unwrap().len(), chain.participants().len(), "{what}");

        // Starting from this single block gives the same state.
        let single = UnverifiedTip::from_server_block(&server).unwrap_or_else(|e| panic!("{what}: from block: {e}"));
        assert_eq!(
            (single.height(), single.hash(), single.group_state()),
            (chain.height(), chain.hash(), chain.group_state())
        );
        n += 1;
    }
    n
}

#[test]
fn chains() {
    for name in [
        "chain_basic_v0.json",
        "chain_basic_v1.json",
        "chain_large.json",
        "chain_random_walk.json",
        "chain_versions.json",
    ] {
        let n = check_chain_file(name);
        report(name, n);
    }
}

#[test]
fn invalid_blocks() {
    let v = load("tde2e/invalid_blocks.json");
    let mut n = 0;
    for case in v.as_array().unwrap() {
        let what = case["name"].as_str().unwrap();
        let mut chain = Chain::empty();
        for b in case["chain"].as_array().unwrap() {
            chain.apply(&hex(b)).unwrap_or_else(|e| panic!("{what}: prefix block rejected: {e}"));
        }
        let before = chain.clone();
        let err = chain.apply(&hex(&case["block"])).expect_err(what);
        assert_error(&err, case["error"].as_str().unwrap(), case["message"].as_str().unwrap(), what);
        assert_eq!(
            (chain.height(), chain.hash(), chain.group_state()),
            (before.height(), before.hash(), before.group_state()),
            "{what}: state changed"
        );
        assert_eq!(chain.shared_key(), before.shared_key(), "{what}");
        n += 1;
    }
    report("invalid_blocks.json", n);
}

#[test]
fn join() {
    let v = load("tde2e/join.json");
    let mut n = 0;
    for case in v["self_add"].as_array().unwrap() {
        let what = case["name"].as_str().unwrap();
        let tip = UnverifiedTip::from_server_block(&hex(&case["last_block"])).unwrap();
        let sk = PrivateKey::from_slice(&hex(&case["private_key"])).unwrap();
        let me = GroupParticipant {
            user_id: case["user_id"].as_i64().unwrap(),
            public_key: sk.public_key(),
            flags: Permissions::from_bits_retain(case["flags"].as_i64().unwrap() as i32),
            version: case["version"].as_i64().unwrap() as i32,
        };
        let mut rng = ReplayRng::new(hex(&case["rng"]));
        let built = tip.build_self_add(me, &sk, &mut rng).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(rng.exhausted(), "{what}");
        assert_eq!(hex::encode(&built), hex::encode(wire::from_server_form(&hex(&case["block"])).unwrap()), "{what}");
        let mut next = Chain::trust_tip(tip);
        next.apply(&built.to_server_form()).unwrap();
        assert_eq!(*next.group_state(), state_from_json(&case["state"]), "{what}");
        n += 1;
    }
    for case in v["zero_block"].as_array().unwrap() {
        let sk = PrivateKey::from_slice(&hex(&case["private_key"])).unwrap();
        let state = GroupState {
            participants: vec![GroupParticipant {
                user_id: case["user_id"].as_i64().unwrap(),
                public_key: sk.public_key(),
                flags: Permissions::from_bits_retain(case["flags"].as_i64().unwrap() as i32),
                version: case["version"].as_i64().unwrap() as i32,
            }],
            external_permissions: Permissions::from_bits_retain(case["external_permissions"].as_i64().unwrap() as i32),
        };
        let mut rng = ReplayRng::new(hex(&case["rng"]));
        let built = build_zero_block(state, &sk, &mut rng).unwrap();
        assert!(rng.exhausted());
        assert_eq!(hex::encode(&built), hex::encode(wire::from_server_form(&hex(&case["block"])).unwrap()));
        n += 1;
    }
    let _ = Change::Noop { nonce: [0; 32] };
    report("join.json", n);
}

fn expect_of(e: &Value) -> Option<(String, String)> {
    if e["expect"] == "ok" {
        None
    } else {
        Some((e["expect"]["error"].as_str().unwrap().to_owned(), e["expect"]["message"].as_str().unwrap().to_owned()))
    }
}

/// Replays the events of packets.json (calls created where each member first appears), through
/// `Call::encrypt`/`decrypt` or through `MediaEncryptor`/`MediaDecryptor`.
fn packet_events(v: &Value, via_handles: bool) -> usize {
    use confchain::Call;
    let keys = keys_of(v);
    let blocks: Vec<Vec<u8>> = v["blocks"].as_array().unwrap().iter().map(hex).collect();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(7);
    let mut calls: Vec<Call> = Vec::new();
    let mut n = 0;
    for (i, e) in v["events"].as_array().unwrap().iter().enumerate() {
        let what = format!("event {i} ({}, handles: {via_handles})", e["note"]);
        match e["op"].as_str().unwrap() {
            "apply_block" => {
                let block = &blocks[e["block_index"].as_u64().unwrap() as usize];
                for call in &mut calls {
                    call.apply_block(block, 0, &mut rng).unwrap_or_else(|err| panic!("{what}: {err}"));
                }
                let state = UnverifiedTip::from_server_block(block).unwrap();
                for (uid, sk) in &keys {
                    let present = state.group_state().participant(*uid).is_some();
                    if present && !calls.iter().any(|c| c.user_id() == *uid) {
                        calls.push(Call::new(*uid, sk.clone(), block, &mut rng).unwrap());
                    }
                }
            }
            "encrypt" => {
                let sender = e["sender"].as_i64().unwrap();
                let call = calls.iter_mut().find(|c| c.user_id() == sender).unwrap();
                let (channel, data) = (e["channel"].as_i64().unwrap() as i32, hex(&e["data"]));
                let prefix = e["unencrypted_prefix_size"].as_u64().unwrap() as usize;
                let res = if via_handles {
                    let mut out = Vec::new();
                    call.media_encryptor(&mut rng).encrypt_into(channel, &data, prefix, 0, &mut out).map(|()| out)
                } else {
                    call.encrypt(channel, &data, prefix, 0, &mut rng)
                };
                match expect_of(e) {
                    None => {
                        let ours = res.unwrap_or_else(|err| panic!("{what}: {err}"));
                        // Our packet has the reference's layout: same length and header.
                        let theirs = hex(&e["packet"]);
                        assert_eq!(ours.len(), theirs.len(), "{what}");
                        let head = prefix + 4 + 32 * (theirs[prefix] as usize);
                        assert_eq!(ours[..head], theirs[..head], "{what}");
                    }
                    Some((code, message)) => assert_error(&res.unwrap_err(), &code, &message, &what),
                }
            }
            "decrypt" => {
                let receiver = e["receiver"].as_i64().unwrap();
                let call = calls.iter_mut().find(|c| c.user_id() == receiver).unwrap();
                let (sender, packet) = (e["sender"].as_i64().unwrap(), hex(&e["packet"]));
                let res = if via_handles {
                    let mut out = Vec::new();
                    call.media_decryptor().decrypt_into(sender, &packet, 0, &mut out).map(|()| out)
                } else {
                    call.decrypt(sender, &packet, 0)
                };
                match expect_of(e) {
                    None => {
                        assert_eq!(res.unwrap_or_else(|err| panic!("{what}: {err}")), hex(&e["plaintext"]), "{what}")
                    }
                    Some((code, message)) => assert_error(&res.unwrap_err(), &code, &message, &what),
                }
            }
            other => panic!("unknown op {other}"),
        }
        n += 1;
    }
    n
}

#[test]
fn packets() {
    use confchain::packet::{self, EpochKey};
    use confchain::Secret;
    let v = load("tde2e/packets.json");
    // Every event through the call, then again through the media handles: same outcomes.
    let mut n = packet_events(&v, false);
    n += packet_events(&v, true);
    for (i, d) in v["deterministic"].as_array().unwrap().iter().enumerate() {
        let signer = PrivateKey::from_slice(&hex(&d["signer_private_key"])).unwrap();
        let epochs: Vec<([u8; 32], Secret<32>)> = d["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (hex32(&e["hash"]), Secret::from_bytes(hex32(&e["key"]))))
            .collect();
        let keys: Vec<EpochKey> = epochs.iter().map(|(h, k)| EpochKey::new(*h, k)).collect();
        let mut rng = ReplayRng::new(hex(&d["rng"]));
        let mut out = Vec::new();
        packet::encrypt_into(
            keys.iter(),
            &signer,
            d["channel"].as_i64().unwrap() as i32,
            d["seqno"].as_u64().unwrap() as u32,
            &hex(&d["data"]),
            d["unencrypted_prefix_size"].as_u64().unwrap() as usize,
            &mut rng,
            &mut out,
        )
        .unwrap();
        assert!(rng.exhausted(), "deterministic packet {i}");
        assert_eq!(hex::encode(&out), d["packet"].as_str().unwrap(), "deterministic packet {i}");
        n += 1;
    }
    report("packets.json", n);
}

#[test]
fn broadcasts() {
    use confchain::Call;
    let v = load("tde2e/broadcasts.json");
    let keys = keys_of(&v);
    let blocks: Vec<Vec<u8>> = v["blocks"].as_array().unwrap().iter().map(hex).collect();
    let height = v["height"].as_i64().unwrap() as i32;
    let nonce_of =
        |uid: i64| v["nonces"].as_array().unwrap().iter().find(|x| x["user_id"].as_i64() == Some(uid)).expect("nonce");
    let mut calls: Vec<Call> = Vec::new();
    let mut n = 0;
    for block in &blocks {
        let chain = UnverifiedTip::from_server_block(block).unwrap();
        // The last block's verification nonce is the recorded one; earlier ones are arbitrary.
        let rng_for = |uid: i64| {
            if chain.height() == height {
                ReplayRng::new(hex(&nonce_of(uid)["nonce"]))
            } else {
                ReplayRng::new(vec![0x55; 32])
            }
        };
        for call in &mut calls {
            let mut rng = rng_for(call.user_id());
            call.apply_block(block, 0, &mut rng).unwrap();
        }
        for (uid, sk) in &keys {
            if chain.group_state().participant(*uid).is_some() && !calls.iter().any(|c| c.user_id() == *uid) {
                let mut rng = rng_for(*uid);
                calls.push(Call::new(*uid, sk.clone(), block, &mut rng).unwrap());
            }
        }
    }
    assert_eq!(calls.len(), keys.len());
    for call in &mut calls {
        let uid = call.user_id();
        assert_eq!(call.chain().hash().to_vec(), hex(&v["block_hash"]));
        let out = call.poll_outbound();
        assert_eq!(out.len(), 1);
        assert_eq!(
            hex::encode(wire::to_server_form(&out[0]).unwrap()),
            nonce_of(uid)["commit"].as_str().unwrap(),
            "commit of {uid}"
        );
        n += 1;
    }
    for (i, e) in v["events"].as_array().unwrap().iter().enumerate() {
        let what = format!("event {i} ({})", e["note"]);
        let receiver = e["receiver"].as_i64().unwrap();
        let call = calls.iter_mut().find(|c| c.user_id() == receiver).unwrap();
        let res = call.receive_broadcast(&hex(&e["broadcast"]));
        match expect_of(e) {
            None => {
                res.unwrap_or_else(|err| panic!("{what}: {err}"));
                let got = call.verification_result().map(|r| hex::encode(r.emoji_hash));
                assert_eq!(got.as_deref(), e["emoji_hash"].as_str(), "{what}");
            }
            Some((code, message)) => assert_error(&res.unwrap_err(), &code, &message, &what),
        }
        // Reveals we produce equal the reference's (Ed25519 is deterministic).
        for b in call.poll_outbound() {
            let server = hex::encode(wire::to_server_form(&b).unwrap());
            assert!(
                v["events"].as_array().unwrap().iter().any(|x| x["broadcast"] == server.as_str()),
                "{what}: our reveal is not the reference's"
            );
        }
        n += 1;
    }
    let emojis: Vec<&str> = v["emojis"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    let words: Vec<&str> = v["verification_words"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    for call in &calls {
        assert_eq!(hex::encode(call.verification_result().unwrap().emoji_hash), v["emoji_hash"].as_str().unwrap());
        assert_eq!(call.emojis().unwrap().to_vec(), emojis);
        assert_eq!(call.verification_words(), words);
    }
    report("broadcasts.json", n);
}

#[test]
fn emojis_and_words() {
    use confchain::{emoji_table, emojis_from_hash, verification_words};
    let table = load("tde2e/emoji_table.json");
    let expected: Vec<&str> = table["emojis"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(emoji_table().collect::<Vec<_>>(), expected);
    let v = load("tde2e/primitives.json");
    let mut n = 1;
    for c in v["emoji_fingerprints"].as_array().unwrap() {
        let want: Vec<&str> = c["emojis"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        assert_eq!(emojis_from_hash(&hex(&c["emoji_hash"])).to_vec(), want);
        n += 1;
    }
    for c in v["verification_words"].as_array().unwrap() {
        let want: Vec<&str> = c["words"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        assert_eq!(verification_words(&hex32(&c["block_hash"])), want);
        n += 1;
    }
    report("primitives.json (emoji fingerprints, verification words) + emoji_table.json", n);
}

#[test]
fn one_to_one() {
    use confchain::p2p::{run_checks, Callee, Caller, DhConfig, PrimeCache};
    let v = load("p2p/one_to_one.json");
    let p = hex(&v["dh_prime"]);
    let g = v["g"].as_i64().unwrap() as i32;
    let mut n = 0;
    // The built-in prime is Telegram's: no test needed, and testing it from scratch agrees.
    let config = DhConfig::new(g, &p, &mut PrimeCache::new()).unwrap();
    assert_eq!(config, DhConfig::new(g, &p, &mut PrimeCache::empty()).unwrap());
    assert_eq!(config, DhConfig::telegram());
    for e in v["exchanges"].as_array().unwrap() {
        let caller = Caller::from_exponent(config.clone(), &hex(&e["a"])).unwrap();
        assert_eq!(caller.g_a(), hex(&e["g_a"]));
        assert_eq!(caller.g_a_hash().to_vec(), hex(&e["g_a_hash"]));
        let callee = Callee::from_exponent(config.clone(), caller.g_a_hash(), &hex(&e["b"])).unwrap();
        assert_eq!(callee.g_b(), hex(&e["g_b"]));
        let confirm = caller.on_accepted(&callee.g_b()).unwrap();
        assert_eq!(confirm.key.key().expose().to_vec(), hex(&e["key"]));
        assert_eq!(confirm.key_fingerprint, e["key_fingerprint"].as_i64().unwrap());
        let key = callee.on_confirmed(&confirm.g_a, confirm.key_fingerprint).unwrap();
        assert_eq!(key, confirm.key);
        let emojis: Vec<&str> = e["emojis"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        assert_eq!(key.emojis().to_vec(), emojis);
        assert_eq!(confirm.key.emojis().to_vec(), emojis);
        n += 1;
    }
    for f in v["check_failures"].as_array().unwrap() {
        let what = f["name"].as_str().unwrap();
        let g: i32 = f["g"].as_str().map(|s| s.parse().unwrap()).or(f["g"].as_i64().map(|x| x as i32)).unwrap();
        let hash = hex(&f["g_a_hash"]);
        let err = run_checks(
            g,
            &hex(&f["dh_prime"]),
            &hex(&f["g_a"]),
            &hex(&f["g_b"]),
            (!hash.is_empty()).then_some(&hash[..]),
            &mut PrimeCache::new(),
        )
        .expect_err(what);
        assert_eq!(err.kind(), ErrorKind::DhCheck, "{what}");
        assert_eq!(err.message(), f["message"].as_str().unwrap(), "{what}");
        n += 1;
    }
    report("p2p/one_to_one.json", n);
}
