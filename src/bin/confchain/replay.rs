//! `confchain replay`: apply a sequence of blocks and report the state after each.

use std::io::{IsTerminal, Write};

use confchain::chain::{Chain, UnverifiedTip};
use confchain::{wire, Block, PrivateKey};
use serde_json::{json, Value};

use crate::{input, Failure};

/// Arguments of `replay`.
#[derive(clap::Args)]
pub struct Args {
    /// File of blocks: one hex/base64 block per line, or a JSON array of them (or an object with a
    /// `blocks` array, as a getGroupCallChainBlocks dump). `-` reads stdin.
    file: String,
    /// Our user id, to derive the group key after each block (needs --key).
    #[arg(long = "as", requires = "key")]
    user_id: Option<i64>,
    /// Our Ed25519 private key (64 hex digits).
    #[arg(long, requires = "user_id")]
    key: Option<String>,
    /// Print one JSON object per block instead of text.
    #[arg(long)]
    json: bool,
}

fn read_blocks(text: &str) -> Result<Vec<String>, Failure> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let v: Value = serde_json::from_str(trimmed).map_err(|e| Failure::bad(format!("bad JSON: {e}")))?;
        let list = match &v {
            Value::Array(a) => a,
            Value::Object(o) => o
                .get("blocks")
                .and_then(Value::as_array)
                .ok_or_else(|| Failure::bad("JSON object has no `blocks` array"))?,
            _ => return Err(Failure::bad("expected a JSON array of blocks")),
        };
        return list
            .iter()
            .map(|x| {
                x.as_str().map(str::to_owned).ok_or_else(|| Failure::bad("blocks must be strings (hex or base64)"))
            })
            .collect();
    }
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect())
}

pub fn run(args: Args) -> Result<(), Failure> {
    let text = if args.file == "-" { input::text("-")? } else { input::read_file(&args.file)? };
    let blocks = read_blocks(&text)?;
    if blocks.is_empty() {
        return Err(Failure::bad("no blocks in the input"));
    }
    let me = match (&args.user_id, &args.key) {
        (Some(uid), Some(k)) => Some((*uid, PrivateKey::from_bytes(&input::key32(k, "--key")?))),
        _ => None,
    };
    let progress = blocks.len() >= 100 && std::io::stderr().is_terminal();
    let mut chain: Option<Chain> = None;
    // Whether the current state came through the rules from the zero block, or rests on a first
    // block taken on trust (a dump that starts mid-chain; every later block is checked against it).
    let mut verified = true;
    for (i, text) in blocks.iter().enumerate() {
        let bytes = input::decode(text).map_err(|f| Failure::bad(format!("block #{i}: {}", f_message(&f))))?;
        let result = match chain.as_mut() {
            Some(c) => c.apply(&bytes),
            None => {
                // The first block starts the chain: from scratch at height 0, else as a single block.
                let first = Block::decode_server(&bytes);
                match first {
                    Ok(b) if b.height == 0 => {
                        let mut c = Chain::empty();
                        let r = c.apply_block(b);
                        chain = Some(c);
                        r
                    }
                    // A dump that starts mid-chain: its first block is trusted, as a join trusts it.
                    Ok(b) => UnverifiedTip::from_block(b).map(|tip| {
                        verified = false;
                        chain = Some(Chain::trust_tip(tip));
                    }),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            if progress {
                eprintln!();
            }
            let height = wire::from_server_form(&bytes).ok().and_then(|p| Block::decode(&p).ok()).map(|b| b.height);
            let at = height.map(|h| format!(" (height {h})")).unwrap_or_default();
            return Err(Failure::bad(format!("block #{i}{at} rejected: {} ({})", e.kind().name(), e.message())));
        }
        let Some(c) = chain.as_ref() else { continue };
        let key = me.as_ref().map(|(uid, k)| match c.group_key(*uid, k) {
            Ok(key) => key.fingerprint(),
            Err(e) => format!("none ({})", e.kind().name()),
        });
        let members: Vec<i64> = c.participants().iter().map(|p| p.user_id).collect();
        if args.json {
            let v = json!({
                "index": i, "height": c.height(), "hash": hex::encode(c.hash()),
                "members": members, "group_version": c.group_version(),
                "external_permissions": c.group_state().external_permissions.bits(),
                "key_fingerprint": key, "verified_from_zero_block": verified,
            });
            outln!("{v}");
        } else {
            let key = key.map(|k| format!(" key={k}")).unwrap_or_default();
            let trust = if verified || i > 0 { "" } else { " (taken on trust: the dump starts mid-chain)" };
            outln!(
                "#{i} height={} hash={} members={members:?} version={}{key}{trust}",
                c.height(),
                &hex::encode(c.hash())[..16],
                c.group_version()
            );
        }
        if progress {
            let done = (i + 1) * 40 / blocks.len();
            eprint!("\r[{}{}] {}/{}", "#".repeat(done), " ".repeat(40 - done), i + 1, blocks.len());
            let _ = std::io::stderr().flush();
        }
    }
    if progress {
        eprintln!();
    }
    Ok(())
}

fn f_message(f: &Failure) -> String {
    f.message.clone()
}
