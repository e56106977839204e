//! `confchain inspect`: decode a block, broadcast or call packet.

use confchain::chain::UnverifiedTip;
use confchain::crypto::{self, PublicKey};
use confchain::packet;
use confchain::wire::{
    self, id, Block, Broadcast, BroadcastPayload, Change, Form, GroupState, Object, SharedKey, StateProof,
};
use serde_json::{json, Value};

use crate::{input, Failure};

/// Arguments of `inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The bytes: hex, base64, @file or - (stdin).
    input: String,
    /// Print JSON instead of a readable tree.
    #[arg(long)]
    json: bool,
    /// An epoch's group key (64 hex digits) to decrypt a call packet with; may be repeated.
    #[arg(long = "key")]
    keys: Vec<String>,
    /// The sender's Ed25519 public key (64 hex digits), to verify a packet's signature.
    #[arg(long)]
    sender_key: Option<String>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let bytes = input::decode(&input::text(&args.input)?)?;
    let value = describe(&bytes, &args)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        print_tree(&value, 0);
    }
    Ok(())
}

fn magic(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// Decodes whatever `bytes` is into a JSON description: a block or broadcast in either form (one
/// library function, `decode_any`, tells which), else a call packet.
pub fn describe(bytes: &[u8], args: &Args) -> Result<Value, Failure> {
    if wire::form_of(bytes).is_none() {
        return describe_packet(bytes, args);
    }
    let (form, object) = wire::decode_any(bytes).map_err(|e| {
        let what =
            if magic(bytes).is_some_and(|m| m == id::BLOCK || m == id::BLOCK + 1) { "block" } else { "broadcast" };
        Failure::bad(format!("not a valid {what}: {e}"))
    })?;
    let form = match form {
        Form::Plain => "plain",
        Form::Server => "server",
    };
    Ok(match object {
        Object::Block(block) => describe_block(&block, form, bytes.len()),
        Object::Broadcast(b) => describe_broadcast(&b, form, bytes.len()),
    })
}

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn group_state(s: &GroupState) -> Value {
    json!({
        "external_permissions": s.external_permissions.bits(),
        "external_permissions_names": s.external_permissions.name(),
        "version": s.version(),
        "participants": s.participants.iter().map(|p| json!({
            "user_id": p.user_id,
            "public_key": h(p.public_key.as_bytes()),
            "flags": p.flags.bits(),
            "permissions": p.flags.name(),
            "version": p.version,
        })).collect::<Vec<_>>(),
    })
}

fn shared_key(k: &SharedKey) -> Value {
    if k.is_empty() {
        return json!("empty");
    }
    json!({
        "ek": h(k.ek.as_bytes()),
        "encrypted_shared_key_bytes": k.encrypted_shared_key.len(),
        "dest_user_id": k.dest_user_id,
        "dest_header_count": k.dest_header.len(),
    })
}

fn proof(p: &StateProof) -> Value {
    json!({
        "kv_hash": h(&p.kv_hash),
        "group_state": p.group_state.as_ref().map(group_state).unwrap_or(json!("omitted")),
        "shared_key": p.shared_key.as_ref().map(shared_key).unwrap_or(json!("omitted")),
    })
}

fn describe_block(b: &Block, form: &str, size: usize) -> Value {
    let changes: Vec<Value> = b
        .changes
        .iter()
        .map(|c| match c {
            Change::Noop { nonce } => json!({"type": "noop", "nonce": h(nonce)}),
            Change::SetValue { key, value } => json!({"type": "set_value", "key": h(key), "value": h(value)}),
            Change::SetGroupState(s) => json!({"type": "set_group_state", "group_state": group_state(s)}),
            Change::SetSharedKey(k) => json!({"type": "set_shared_key", "shared_key": shared_key(k)}),
        })
        .collect();
    let canonical = b.encode();
    let mut v = json!({
        "kind": "block",
        "form": form,
        "size": size,
        "canonical_size": canonical.len(),
        "height": b.height,
        "hash": h(&crypto::sha256(&canonical)),
        "prev_block_hash": h(&b.prev_block_hash),
        "signer": b.signature_public_key.map(|k| h(k.as_bytes())).unwrap_or_else(|| "first participant of the previous state".into()),
        "signature": h(&b.signature),
        "changes": changes,
        "state_proof": proof(&b.state_proof),
    });
    // A block can be read alone: show the state it leads to, when it is self-consistent.
    if let Ok(tip) = UnverifiedTip::from_block(b.clone()) {
        v["resulting_state"] = group_state(tip.group_state());
    }
    if let Some(k) = b.signature_public_key {
        v["signature_valid_for_signer"] = json!(k.verify(&b.signing_bytes(), &b.signature).is_ok());
    }
    v
}

fn describe_broadcast(b: &Broadcast, form: &str, size: usize) -> Value {
    let (kind, field, value) = match &b.payload {
        BroadcastPayload::Commit(x) => ("commit", "nonce_hash", x),
        BroadcastPayload::Reveal(x) => ("reveal", "nonce", x),
    };
    json!({
        "kind": format!("broadcast ({kind})"),
        "form": form,
        "size": size,
        "user_id": b.user_id,
        "chain_height": b.chain_height,
        "chain_hash": h(&b.chain_hash),
        field: h(value),
        "signature": h(&b.signature),
    })
}

fn describe_packet(bytes: &[u8], args: &Args) -> Result<Value, Failure> {
    let p = packet::parse(bytes).map_err(|e| Failure::bad(format!("not a block, broadcast or call packet: {e}")))?;
    let hashes: Vec<String> = (0..p.epoch_count).filter_map(|i| p.epoch_hash(i)).map(|x| h(x)).collect();
    let mut v = json!({
        "kind": "call packet",
        "size": bytes.len(),
        "clear_prefix_len": p.clear_prefix.len(),
        "clear_prefix": h(p.clear_prefix),
        "epoch_count": p.epoch_count,
        "epoch_hashes": hashes,
        "encrypted_body_size": p.body.len(),
    });
    if args.keys.is_empty() {
        return Ok(v);
    }
    let sender = args.sender_key.as_deref().map(|s| input::key32(s, "--sender-key")).transpose()?;
    for key in &args.keys {
        let key = input::key32(key, "--key")?;
        for i in 0..p.epoch_count {
            let (Some(header), Some(split)) = (p.header(i), p.body.len().checked_sub(64)) else { continue };
            let Ok(one_time) = crypto::decrypt_header(header, p.body, &key) else { continue };
            let mut extra = id::CALL_PACKET.to_le_bytes().to_vec();
            extra.extend_from_slice(p.head_and_hashes);
            extra.extend_from_slice(p.clear_prefix);
            let Ok((plain, large_msg_id)) = crypto::decrypt_data(&p.body[..split], one_time.expose(), &extra) else {
                continue;
            };
            if plain.len() < 8 {
                continue;
            }
            let channel = i32::from_le_bytes([plain[0], plain[1], plain[2], plain[3]]);
            let seqno = u32::from_le_bytes([plain[4], plain[5], plain[6], plain[7]]);
            let payload = &plain[8..];
            v["decrypted"] = json!({
                "epoch_index": i,
                "channel": channel,
                "seqno": seqno,
                "payload_size": payload.len(),
                "payload": h(payload),
                "payload_text": std::str::from_utf8(payload).ok(),
            });
            if let Some(sender) = sender {
                let mut msg = id::CALL_PACKET_LARGE_MSG_ID.to_le_bytes().to_vec();
                msg.extend_from_slice(&large_msg_id);
                let sig: [u8; 64] = p.body[split..].try_into().unwrap_or([0; 64]);
                v["decrypted"]["signature_valid"] = json!(PublicKey::from_bytes(sender).verify(&msg, &sig).is_ok());
            }
            return Ok(v);
        }
    }
    v["decrypted"] = json!("no given key opens this packet");
    Ok(v)
}

fn print_tree(v: &Value, indent: usize) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match x {
                    Value::Object(_) => {
                        outln!("{pad}{k}:");
                        print_tree(x, indent + 1);
                    }
                    Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                        outln!("{pad}{k}: ({} items)", items.len());
                        for (i, item) in items.iter().enumerate() {
                            outln!("{pad}  [{i}]");
                            print_tree(item, indent + 2);
                        }
                    }
                    _ => outln!("{pad}{k}: {}", scalar(x)),
                }
            }
        }
        other => outln!("{pad}{}", scalar(other)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}
