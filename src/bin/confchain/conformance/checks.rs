//! The checks: vectors a peer can replay, and mixed conferences with confchain as the oracle.

use std::path::Path;

use confchain::chain::Chain;
use confchain::{wire, Call, GroupParticipant, GroupState, Permissions, PrivateKey, PublicKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{json, Map, Value};

use super::peer::{Answer, Broken, Peer, PeerError};
use super::serve::{participants_arg, participants_json};
use super::{Deviation, Outcome};

/// Why a check stopped before its end.
pub enum Stop {
    /// The peer broke the protocol (crash, hang, garbage).
    Broken(String),
    /// The peer cannot express the check.
    Skip(String),
    /// The peer deviates from the reference.
    Deviation(Deviation),
    /// confchain itself failed where it must not: a bug of the oracle, never the peer's.
    Oracle(String),
}

impl From<Broken> for Stop {
    fn from(b: Broken) -> Self {
        Stop::Broken(b.0)
    }
}

impl From<confchain::Error> for Stop {
    fn from(e: confchain::Error) -> Self {
        Stop::Oracle(e.to_string())
    }
}

pub(super) type Run = Box<dyn Fn(&mut Peer, u64) -> Result<Outcome, Stop>>;

/// One check: a name, the rule it exercises, and what it does to a peer given a seed.
pub struct Check {
    /// Stable name (`vector.invalid_blocks.12`, `mixed.join-set-value-rights`).
    pub name: String,
    /// The rule exercised (SPEC section and wording).
    pub rule: String,
    /// Runs the check.
    pub run: Run,
}

/// A stable 64-bit hash of a check name (FNV-1a), mixed into the seed.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

pub(super) fn deviation(step: impl Into<String>, expected: impl Into<String>, got: impl Into<String>) -> Stop {
    Stop::Deviation(Deviation { step: step.into(), expected: expected.into(), got: got.into(), cause: None })
}

/// A deviation in the hash of `block` (server form): the peer's value is tested against known
/// mistakes, and the one it matches becomes the cause.
fn hash_deviation(step: impl Into<String>, block: &[u8], expected: &[u8], got: &[u8]) -> Stop {
    let cause = diagnose_hash(block, got);
    Stop::Deviation(Deviation { step: step.into(), expected: hex::encode(expected), got: hex::encode(got), cause })
}

const CAUSE_FLAG_BIT_2: &str =
    "the block is re-encoded without permission bit 2 (set value) of its participants before hashing (§2.2, §2.5)";

/// Which known mistake gives `got` as the hash of `block` (server form), if any.
fn diagnose_hash(block: &[u8], got: &[u8]) -> Option<String> {
    let decoded = wire::Block::decode_server(block).ok()?;
    let mask = |s: &mut GroupState| {
        for p in &mut s.participants {
            p.flags = Permissions::from_bits_retain(p.flags.bits() & 3);
        }
    };
    let mut masked = decoded.clone();
    for c in &mut masked.changes {
        if let confchain::Change::SetGroupState(s) = c {
            mask(s);
        }
    }
    if let Some(s) = &mut masked.state_proof.group_state {
        mask(s);
    }
    if masked != decoded && masked.hash().as_slice() == got {
        return Some(CAUSE_FLAG_BIT_2.into());
    }
    if confchain::crypto::sha256(block).as_slice() == got {
        return Some(
            "the hash covers the server-form bytes as received, not the plain canonical form (§2.3, §3)".into(),
        );
    }
    None
}

pub(super) fn need(p: &Peer, ops: &[&str]) -> Result<(), Stop> {
    for op in ops {
        if !p.supports(op) {
            return Err(Stop::Skip(format!("no `{op}` operation")));
        }
    }
    Ok(())
}

fn need_cap(p: &Peer, cap: &str, why: &str) -> Result<(), Stop> {
    if p.can(cap) {
        Ok(())
    } else {
        Err(Stop::Skip(why.to_owned()))
    }
}

/// Calls `op` and requires success.
pub(super) fn ok(p: &mut Peer, op: &str, args: Value, step: &str) -> Result<Map<String, Value>, Stop> {
    match p.call(op, args)? {
        Answer::Ok(m) => Ok(m),
        Answer::Refused(e) => Err(deviation(step, "accepted", e.to_string())),
        Answer::Unsupported => Err(Stop::Skip(format!("no `{op}` operation"))),
    }
}

/// "refused CODE: message", naming the code (or the kind of a codeless error) once.
pub(super) fn describe(e: &confchain::Error) -> String {
    let label = e.code().unwrap_or(e.kind().name());
    if e.message().starts_with(label) {
        format!("refused: {}", e.message())
    } else {
        format!("refused {label}: {}", e.message())
    }
}

/// Whether the peer's error is the reference's: the same code when the reference has one, else
/// the same kind name when the peer gives one.
fn same_error(got: &PeerError, expected: &confchain::Error) -> bool {
    match expected.code() {
        Some(code) => got.code == code,
        None => got.code.is_empty() && (got.name.is_empty() || got.name == expected.kind().name()),
    }
}

const CAUSE_OTHER_CODE: &str =
    "refuses, but with another code than the reference's (the refusal is right; the rule it names differs)";

/// Calls `op` and requires the reference's refusal. A refusal with another code is named as such.
fn refused(p: &mut Peer, op: &str, args: Value, step: &str, expected: &confchain::Error) -> Result<(), Stop> {
    if !p.reports_errors(op) {
        return Err(Stop::Skip(format!("the peer does not report errors of `{op}`")));
    }
    match p.call(op, args)? {
        Answer::Ok(_) => Err(deviation(step, describe(expected), "accepted")),
        Answer::Refused(e) if same_error(&e, expected) => Ok(()),
        Answer::Refused(e) => Err(Stop::Deviation(Deviation {
            step: step.into(),
            expected: describe(expected),
            got: e.to_string(),
            cause: Some(CAUSE_OTHER_CODE.into()),
        })),
        Answer::Unsupported => Err(Stop::Skip(format!("no `{op}` operation"))),
    }
}

/// [`refused`] for a block (server form expected) on top of `last`: when the peer accepts it,
/// the block is read again under each known mistake, and the one under which the reference
/// accepts it too is the cause.
fn block_refused(
    p: &mut Peer,
    op: &str,
    args: Value,
    step: &str,
    expected: &confchain::Error,
    last: Option<&[u8]>,
    block: &[u8],
) -> Result<(), Stop> {
    refused(p, op, args, step, expected).map_err(|stop| match stop {
        Stop::Deviation(mut d) if d.got == "accepted" => {
            d.cause = diagnose_acceptance(last, block);
            Stop::Deviation(d)
        }
        other => other,
    })
}

/// Known mistakes in reading a block, as `--deviate` names them, with the cause the report gives.
pub(super) const CAUSE_PLAIN_FORM: &str =
    "plain-form (local) blocks are accepted where the server form is required (§2.3: NOT_FROM_SERVER)";
pub(super) const CAUSE_UNSIGNED_FIRST: &str = "a first block without signature_public_key is accepted, its signer \
     taken from its first participant (§4.2 4: Unknown public key)";
pub(super) const CAUSE_NEGATIVE_FLAGS: &str =
    "a negative `#` flags field is read as a bit mask instead of refused (§2.4: Variable of type # can't be negative)";

pub(super) const CAUSE_BUILD_WITHOUT_RIGHTS: &str = "a member without the rights builds (and signs) a change the \
     chain refuses: the builder does not check its own permissions (§4.2 7.3; the reference refuses \
     NO_PERMISSIONS: Can't remove users)";
pub(super) const CAUSE_NO_OFF_CURVE_HEADER: &str = "no key header can be built for a participant key that is not \
     a curve point (tweb: \"invalid key\"), though blocks listing one are applied (§3, §5.2)";

/// Which known mistake makes `block` (on `last`; None: the empty chain) acceptable, if any.
fn diagnose_acceptance(last: Option<&[u8]>, block: &[u8]) -> Option<String> {
    if wire::form_of(block) == Some(wire::Form::Plain)
        && wire::to_server_form(block).is_ok_and(|b| oracle_check(last, &b).is_ok())
    {
        return Some(CAUSE_PLAIN_FORM.into());
    }
    if last.is_none() && signed_by_first_participant(block).is_some() {
        return Some(CAUSE_UNSIGNED_FIRST.into());
    }
    if clear_negative_flags(block).is_some_and(|b| oracle_check(last, &b).is_ok()) {
        return Some(CAUSE_NEGATIVE_FLAGS.into());
    }
    None
}

/// A first block (server form) without signer key, decoded, when its signature verifies under
/// the key of the first participant it lists (what a reader that takes the signer from there sees).
pub(super) fn signed_by_first_participant(block: &[u8]) -> Option<wire::Block> {
    let decoded = wire::Block::decode_server(block).ok()?;
    if decoded.signature_public_key.is_some() {
        return None;
    }
    let listed = decoded.changes.iter().find_map(|c| match c {
        confchain::Change::SetGroupState(s) => s.participants.first(),
        _ => None,
    });
    let first = listed.or_else(|| decoded.state_proof.group_state.as_ref().and_then(|s| s.participants.first()))?;
    first.public_key.verify(&decoded.signing_bytes(), &decoded.signature).ok()?;
    Some(decoded)
}

/// The block with bit 31 of every negative `#` flags field cleared (what a reader that takes the
/// field as a bit mask of its known flags sees), when it has one.
pub(super) fn clear_negative_flags(block: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = block.to_vec();
    for _ in 0..16 {
        let e = match wire::Block::decode_server(&bytes) {
            Ok(_) => return (bytes != block).then_some(bytes),
            Err(e) => e,
        };
        let at = e.message().strip_prefix("Variable of type # can't be negative at ")?;
        let end: usize = at.parse().ok()?;
        let high = bytes.get_mut(end.checked_sub(1)?)?;
        *high &= 0x7f;
    }
    None
}

pub(super) fn hex_field(m: &Map<String, Value>, key: &str, step: &str) -> Result<Vec<u8>, Stop> {
    let s = m.get(key).and_then(Value::as_str).ok_or_else(|| deviation(step, format!("a hex `{key}`"), "none"))?;
    hex::decode(s).map_err(|_| deviation(step, format!("a hex `{key}`"), format!("{s:?}")))
}

fn vector_hex(v: &Value, key: &str) -> Result<Vec<u8>, String> {
    let s = v.get(key).and_then(Value::as_str).ok_or_else(|| format!("vector field {key} missing"))?;
    hex::decode(s).map_err(|_| format!("vector field {key} is not hex"))
}

// ---------------------------------------------------------------------------------------------
// Vectors

pub(super) fn load(dir: &Path, rel: &str) -> Result<Value, String> {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("bad JSON in {}: {e}", path.display()))
}

/// What the reference does with `block` on top of `last` (None: the empty chain).
fn oracle_check(last: Option<&[u8]>, block: &[u8]) -> Result<Chain, confchain::Error> {
    let mut chain = match last {
        Some(l) => confchain::UnverifiedTip::from_server_block(l).map(Chain::trust_tip)?,
        None => Chain::empty(),
    };
    chain.apply(block)?;
    Ok(chain)
}

/// A block-validity case: `block` on top of `last`, expected to fail with `error`/`message` (or to
/// be accepted when `error` is None).
struct BlockCase {
    last: Option<Vec<u8>>,
    block: Vec<u8>,
    error: Option<(String, String)>,
    hash: Option<Vec<u8>>,
    /// The reference's own refusal where it differs from confchain's (a documented difference,
    /// SPEC §11): either refusal passes, and the report says which one the peer showed.
    reference: Option<PeerError>,
}

/// A refusal of a documented difference: confchain's (`ours`) or the reference's (`theirs`), told
/// apart by code and kind, or by message for a peer that names no kind. Another codeless refusal
/// without a kind still refuses the block as the rule asks; a refusal with another code or kind is
/// a deviation.
fn documented_refusal(got: &PeerError, ours: &confchain::Error, theirs: &PeerError) -> Result<Outcome, Stop> {
    let shows = |code: &str, kind: &str, message: &str| {
        got.code == code && (got.name == kind || (got.name.is_empty() && got.message.starts_with(message)))
    };
    let our_message = ours.message().split(':').next().unwrap_or_default();
    if shows(ours.code().unwrap_or(""), ours.kind().name(), our_message) {
        return Ok(Outcome::Documented(format!("confchain's behaviour: {}", describe(ours))));
    }
    if shows(&theirs.code, &theirs.name, &theirs.message) {
        return Ok(Outcome::Documented(format!("the reference's behaviour: {got}")));
    }
    if got.code.is_empty() && got.name.is_empty() {
        return Ok(Outcome::Documented(format!("another refusal without code or kind: {got}")));
    }
    Err(deviation(
        "check_block",
        format!("{} (confchain) or {theirs} (the reference)", describe(ours)),
        got.to_string(),
    ))
}

fn block_case_check(name: String, rule: String, case: BlockCase) -> Result<Check, String> {
    // The oracle must agree with the vector first: otherwise it is confchain's bug, not the peer's.
    let oracle = oracle_check(case.last.as_deref(), &case.block);
    match (&oracle, &case.error) {
        (Ok(chain), None) => {
            if let Some(h) = &case.hash {
                if chain.hash().as_slice() != h.as_slice() {
                    return Err(format!("{name}: confchain's hash differs from the vector's"));
                }
            }
        }
        (Err(e), Some((code, message))) => {
            let code_ok = e.code().unwrap_or("") == code.as_str();
            if !code_ok || !e.message().starts_with(message.split(" at ").next().unwrap_or(message)) {
                return Err(format!("{name}: confchain gives {e}, the vector {code} {message}"));
            }
        }
        (Ok(_), Some((code, message))) => {
            return Err(format!("{name}: confchain accepts, the vector says {code} {message}"))
        }
        (Err(e), None) => return Err(format!("{name}: confchain refuses ({e}), the vector accepts")),
    }
    let expected = oracle.map(|c| (c.height(), *c.hash()));
    // A rule naming a documented difference (SPEC §11: confchain's own limits) accepts any refusal.
    let documented = rule
        .split_once("documented difference: ")
        .map(|(_, d)| d.split(')').next().unwrap_or(d).to_owned())
        .filter(|_| expected.is_err());
    let run: Run = Box::new(move |p, _seed| {
        need(p, &["check_block"])?;
        let args = json!({
            "last_block": case.last.as_ref().map(hex::encode),
            "block": hex::encode(&case.block),
        });
        if let (Err(e), Some(theirs)) = (&expected, &case.reference) {
            if !p.reports_errors("check_block") {
                return Err(Stop::Skip("the peer does not report errors of `check_block`".into()));
            }
            return match p.call("check_block", args)? {
                Answer::Ok(_) => Err(deviation(
                    "check_block",
                    format!("{} (confchain) or {theirs} (the reference)", describe(e)),
                    "accepted",
                )),
                Answer::Refused(got) => documented_refusal(&got, e, theirs),
                Answer::Unsupported => Err(Stop::Skip("no `check_block` operation".into())),
            };
        }
        if let (Some(difference), Err(e)) = (&documented, &expected) {
            if !p.reports_errors("check_block") {
                return Err(Stop::Skip("the peer does not report errors of `check_block`".into()));
            }
            return match p.call("check_block", args)? {
                Answer::Refused(got) => Ok(Outcome::Documented(format!("{got} (documented difference: {difference})"))),
                Answer::Ok(_) => Err(deviation("check_block", format!("{} (or any refusal)", describe(e)), "accepted")),
                Answer::Unsupported => Err(Stop::Skip("no `check_block` operation".into())),
            };
        }
        match &expected {
            Err(e) => block_refused(p, "check_block", args, "check_block", e, case.last.as_deref(), &case.block)?,
            Ok((height, hash)) => {
                let m = ok(p, "check_block", args, "check_block")?;
                if let Some(h) = m.get("hash").and_then(Value::as_str) {
                    if h != hex::encode(hash) {
                        let got = hex::decode(h).unwrap_or_default();
                        return Err(hash_deviation("hash of the applied block", &case.block, hash, &got));
                    }
                }
                if let Some(got) = m.get("height").and_then(Value::as_i64) {
                    if got != i64::from(*height) {
                        return Err(deviation("height of the applied block", height.to_string(), got.to_string()));
                    }
                }
            }
        }
        Ok(Outcome::Pass)
    });
    Ok(Check { name, rule, run })
}

fn error_of(v: &Value) -> Option<(String, String)> {
    let message = v.get("message").and_then(Value::as_str)?;
    let code = v.get("error").and_then(Value::as_str).unwrap_or("");
    Some((code.to_owned(), message.to_owned()))
}

fn invalid_block_checks(list: &Value, prefix: &str, default_rule: &str, out: &mut Vec<Check>) -> Result<(), String> {
    let cases = list.as_array().ok_or_else(|| format!("{prefix}: expected an array"))?;
    for (i, c) in cases.iter().enumerate() {
        let chain: Vec<Vec<u8>> = match c.get("chain").and_then(Value::as_array) {
            Some(a) => a.iter().map(|b| b.as_str().and_then(|s| hex::decode(s).ok())).collect::<Option<_>>(),
            None => Some(Vec::new()),
        }
        .ok_or_else(|| format!("{prefix}.{i}: bad chain"))?;
        let mut block = vector_hex(c, "block")?;
        if let Some(n) = c.get("pad_to").and_then(Value::as_u64) {
            // Zero bytes up to a size (the size limits), so the file need not hold 16 MiB blocks.
            block.resize(usize::try_from(n).map_err(|_| format!("{prefix}.{i}: pad_to too large"))?, 0);
        }
        let case = BlockCase {
            last: chain.last().cloned(),
            block,
            error: error_of(c),
            hash: c.get("hash").and_then(Value::as_str).and_then(|s| hex::decode(s).ok()),
            reference: c.get("reference").and_then(|r| {
                let (code, message) = error_of(r)?;
                let name = r.get("kind").and_then(Value::as_str).unwrap_or("").to_owned();
                Some(PeerError { code, name, message })
            }),
        };
        let what = c.get("name").and_then(Value::as_str).unwrap_or("");
        let rule = c.get("rule").and_then(Value::as_str).unwrap_or(default_rule);
        out.push(block_case_check(format!("{prefix}.{i:02}"), format!("{rule}: {what}"), case)?);
    }
    Ok(())
}

fn chain_checks(dir: &Path, file: &str, out: &mut Vec<Check>) -> Result<(), String> {
    let v = load(dir, &format!("tde2e/{file}.json"))?;
    let steps = v.get("steps").and_then(Value::as_array).ok_or_else(|| format!("{file}: no steps"))?;
    let mut last: Option<Vec<u8>> = None;
    for (i, s) in steps.iter().enumerate() {
        let block = vector_hex(s, "block")?;
        let what = s.get("description").and_then(Value::as_str).unwrap_or("");
        let case = BlockCase {
            last: last.clone(),
            block: block.clone(),
            error: None,
            hash: Some(vector_hex(s, "hash")?),
            reference: None,
        };
        out.push(block_case_check(format!("vector.{file}.{i:02}"), format!("§4.2 apply, §3 hash: {what}"), case)?);
        out.push(hash_by_join_check(
            format!("vector.{file}.{i:02}.join"),
            what,
            block.clone(),
            vector_hex(s, "hash")?,
        )?);
        last = Some(block);
    }
    Ok(())
}

/// The hash of a vector's block as a peer computes it, seen through the `prev_block_hash` of the
/// self-add block it builds on top (for peers that cannot report hashes or check blocks).
fn hash_by_join_check(name: String, what: &str, block: Vec<u8>, hash: Vec<u8>) -> Result<Check, String> {
    let chain = confchain::UnverifiedTip::from_server_block(&block)
        .map(Chain::trust_tip)
        .map_err(|e| format!("{name}: {e}"))?;
    // Where the reference refuses to build a self-add (a call closed to joins), there is nothing to see.
    let joinable = chain.group_state().external_permissions.contains(Permissions::ADD_USERS);
    let rule = format!("§3 hash of a block (as the prev_block_hash of a self-add on it): {what}");
    Ok(Check {
        name,
        rule,
        run: Box::new(move |p, _| {
            need(p, &["join"])?;
            if !joinable {
                return Err(Stop::Skip("the block closes the call to self-joins".into()));
            }
            let args = json!({ "member": "j", "user_id": PEER_USER, "last_block": hex::encode(&block) });
            let m = ok(p, "join", args, "join on the vector's block")?;
            let built = hex_field(&m, "block", "join")?;
            let prev = wire::Block::decode(&built)
                .map_err(|e| deviation("decode the self-add block", "a plain-form block", describe(&e)))?
                .prev_block_hash;
            if prev.as_slice() != hash.as_slice() {
                return Err(hash_deviation("prev_block_hash of the self-add block", &block, &hash, &prev));
            }
            Ok(Outcome::Pass)
        }),
    })
}

fn join_checks(dir: &Path, out: &mut Vec<Check>) -> Result<(), String> {
    let v = load(dir, "tde2e/join.json")?;
    for (i, c) in v.get("self_add").and_then(Value::as_array).cloned().unwrap_or_default().into_iter().enumerate() {
        let args = json!({
            "member": "j", "user_id": c["user_id"], "private_key": c["private_key"], "flags": c["flags"],
            "version": c["version"], "rng": c["rng"], "last_block": c["last_block"],
        });
        let expected = c["block"].as_str().unwrap_or("").to_owned();
        out.push(Check {
            name: format!("vector.join.self_add.{i}"),
            rule: "§4.5 build_self_add, byte for byte from key and rng".into(),
            run: Box::new(move |p, _| {
                need(p, &["join"])?;
                need_cap(p, "keys", "the peer cannot take a given private key")?;
                need_cap(p, "rng", "the peer cannot replay recorded randomness")?;
                let m = ok(p, "join", args.clone(), "join")?;
                let got = hex::encode(hex_field(&m, "block", "join")?);
                if wire::to_server_form(&hex::decode(&got).unwrap_or_default()).map(hex::encode).ok().as_deref()
                    != Some(expected.as_str())
                    && got != expected
                {
                    return Err(deviation("self-add block bytes", expected.clone(), got));
                }
                Ok(Outcome::Pass)
            }),
        });
    }
    for (i, c) in v.get("zero_block").and_then(Value::as_array).cloned().unwrap_or_default().into_iter().enumerate() {
        let args = json!({
            "member": "z", "user_id": c["user_id"], "private_key": c["private_key"], "flags": c["flags"],
            "version": c["version"], "external_permissions": c["external_permissions"], "rng": c["rng"],
        });
        let expected = c["block"].as_str().unwrap_or("").to_owned();
        out.push(Check {
            name: format!("vector.join.zero_block.{i}"),
            rule: "§4.5 build_zero_block, byte for byte from key and rng".into(),
            run: Box::new(move |p, _| {
                need(p, &["create"])?;
                need_cap(p, "keys", "the peer cannot take a given private key")?;
                need_cap(p, "rng", "the peer cannot replay recorded randomness")?;
                let m = ok(p, "create", args.clone(), "create")?;
                let got = hex_field(&m, "block", "create")?;
                let server = wire::to_server_form(&got).map(hex::encode).unwrap_or_default();
                if server != expected && hex::encode(&got) != expected {
                    return Err(deviation("zero block bytes", expected.clone(), hex::encode(got)));
                }
                Ok(Outcome::Pass)
            }),
        });
    }
    Ok(())
}

/// `tde2e/broadcasts.json`: three members started with the reference's keys and nonces, then every
/// broadcast event with its outcome, then the emojis.
fn broadcasts_check(dir: &Path, out: &mut Vec<Check>) -> Result<(), String> {
    let v = load(dir, "tde2e/broadcasts.json")?;
    let keys: Vec<(i64, String)> = v["keys"]
        .as_array()
        .ok_or("broadcasts: no keys")?
        .iter()
        .map(|k| (k["user_id"].as_i64().unwrap_or(0), k["private_key"].as_str().unwrap_or("").to_owned()))
        .collect();
    let blocks: Vec<Vec<u8>> = v["blocks"]
        .as_array()
        .ok_or("broadcasts: no blocks")?
        .iter()
        .map(|b| b.as_str().and_then(|s| hex::decode(s).ok()).ok_or("broadcasts: bad block"))
        .collect::<Result<_, _>>()?;
    let height = v["height"].as_i64().unwrap_or(0);
    let nonce =
        |uid: i64| v["nonces"].as_array().and_then(|n| n.iter().find(|x| x["user_id"].as_i64() == Some(uid))).cloned();
    let nonces: Vec<(i64, String, String)> = keys
        .iter()
        .map(|(uid, _)| {
            let n = nonce(*uid).unwrap_or(Value::Null);
            (*uid, n["nonce"].as_str().unwrap_or("").to_owned(), n["commit"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    let events = v["events"].as_array().cloned().ok_or("broadcasts: no events")?;
    // The expected outcome of each event, by the oracle (which must agree with the vector).
    let mut expected_errors = Vec::new();
    for e in &events {
        expected_errors.push(match error_of(&e["expect"]) {
            None => None,
            Some((code, message)) => {
                let text = if code.is_empty() || message.starts_with(&code) {
                    format!("refused: {message}")
                } else {
                    format!("refused {code}: {message}")
                };
                Some((code, text))
            }
        });
    }
    let emojis: String =
        v["emojis"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    out.push(Check {
        name: "vector.broadcasts".into(),
        rule: "§7.1-§7.3 every broadcast outcome of the reference, then its emojis".into(),
        run: Box::new(move |p, _| {
            need(p, &["start", "apply_block", "receive_broadcast", "pull_outbound", "state"])?;
            need_cap(p, "keys", "the peer cannot take a given private key")?;
            need_cap(p, "rng", "the peer cannot replay recorded randomness")?;
            let mut started: Vec<i64> = Vec::new();
            for block in &blocks {
                let chain = confchain::UnverifiedTip::from_server_block(block).map(Chain::trust_tip)?;
                let rng_of = |uid: i64| {
                    if i64::from(chain.height()) == height {
                        nonces.iter().find(|n| n.0 == uid).map(|n| n.1.clone()).unwrap_or_default()
                    } else {
                        "55".repeat(32)
                    }
                };
                for uid in started.clone() {
                    let args = json!({ "member": uid.to_string(), "block": hex::encode(block), "rng": rng_of(uid),
                                       "offset": chain.height().saturating_add(1) });
                    ok(p, "apply_block", args, "apply the vector's block")?;
                }
                for (uid, key) in &keys {
                    if chain.group_state().participant(*uid).is_some() && !started.contains(uid) {
                        let args = json!({ "member": uid.to_string(), "user_id": uid, "private_key": key,
                                           "last_block": hex::encode(block), "rng": rng_of(*uid) });
                        ok(p, "start", args, "start on the vector's block")?;
                        started.push(*uid);
                    }
                }
            }
            for (uid, _, commit) in &nonces {
                let m = ok(p, "pull_outbound", json!({ "member": uid.to_string() }), "pull the commit")?;
                let got: Vec<String> = m
                    .get("broadcasts")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|b| b.as_str().and_then(|s| hex::decode(s).ok()))
                            .filter_map(|b| wire::to_server_form(&b).ok().map(hex::encode))
                            .collect()
                    })
                    .unwrap_or_default();
                if got.first() != Some(commit) {
                    return Err(deviation(format!("commit of {uid} (server form)"), commit.clone(), got.join(" ")));
                }
            }
            // Every event runs and its outcome is listed: one wrong outcome does not hide the next.
            // A peer that does not report broadcast errors is judged on the accepted events only.
            let judge_refusals = p.reports_errors("receive_broadcast");
            let mut wrong: Vec<(String, String, String)> = Vec::new();
            let (mut refusals, mut accepted_refusals) = (0usize, 0usize);
            for (i, (e, expected)) in events.iter().zip(&expected_errors).enumerate() {
                let member = e["receiver"].as_i64().unwrap_or(0).to_string();
                let args = json!({ "member": member, "broadcast": e["broadcast"], "offset": i + 1 });
                let step = format!("event {i} ({})", e["note"].as_str().unwrap_or(""));
                let answer = p.call("receive_broadcast", args)?;
                match (expected, answer) {
                    (_, Answer::Unsupported) => return Err(Stop::Skip("no `receive_broadcast` operation".into())),
                    (None, Answer::Ok(_)) => {}
                    (None, Answer::Refused(got)) => wrong.push((step, "accepted".into(), got.to_string())),
                    (Some(_), Answer::Ok(_)) if !judge_refusals => {}
                    (Some((_, err)), Answer::Ok(_)) => {
                        refusals = refusals.saturating_add(1);
                        accepted_refusals = accepted_refusals.saturating_add(1);
                        wrong.push((step, err.clone(), "accepted".into()));
                    }
                    (Some((code, err)), Answer::Refused(got)) => {
                        refusals = refusals.saturating_add(1);
                        let same = if code.is_empty() { got.code.is_empty() } else { got.code == *code };
                        if !same {
                            wrong.push((step, err.clone(), got.to_string()));
                        }
                    }
                }
                let _ = p.call("pull_outbound", json!({ "member": member }))?;
            }
            for (uid, _, _) in &nonces {
                let s = ok(p, "state", json!({ "member": uid.to_string() }), "state")?;
                let got = match s.get("emojis") {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<String>(),
                    Some(Value::String(x)) => x.clone(),
                    _ => String::new(),
                };
                if got != emojis {
                    wrong.push((format!("emojis of {uid}"), emojis.clone(), got));
                }
            }
            if wrong.is_empty() {
                return Ok(Outcome::Pass);
            }
            let cause =
                (refusals > 0 && accepted_refusals == refusals && wrong.len() == accepted_refusals).then(|| {
                    format!(
                        "broadcast errors are never reported: all {refusals} broadcasts the reference refuses are \
                     accepted (§7.1-§7.3; an adapter that cannot see them says errors.broadcasts false)"
                    )
                });
            let list = |f: &dyn Fn(&(String, String, String)) -> String| {
                wrong.iter().map(|w| format!("{}: {}", w.0, f(w))).collect::<Vec<_>>().join("; ")
            };
            Err(Stop::Deviation(Deviation {
                step: format!(
                    "{} of {} outcomes: {}",
                    wrong.len(),
                    events.len().saturating_add(nonces.len()),
                    wrong.iter().map(|w| w.0.split(" (").next().unwrap_or(&w.0)).collect::<Vec<_>>().join(", ")
                ),
                expected: list(&|w| w.1.clone()),
                got: list(&|w| w.2.clone()),
                cause,
            }))
        }),
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Mixed conferences

/// A conference run by the oracle: the server's chain, confchain members, and peer members.
pub(super) struct Conf {
    rng: ChaCha20Rng,
    server: Chain,
    last: Vec<u8>,
    oracle: Vec<Call>,
    keys: Vec<PrivateKey>,
    peers: Vec<(String, i64)>,
    pub(super) now: u64,
    /// Broadcasts relayed so far: the server's offset in sub-chain 1.
    relayed: u64,
}

pub(super) const PEER_USER: i64 = 42;
/// The most broadcasts one pull may return (the checks apply a handful of blocks).
const MAX_BROADCASTS_PER_PULL: usize = 64;

impl Conf {
    /// A conference created by oracle member 1001 with these flags and external permissions.
    pub(super) fn new(seed: u64, flags: i32, external: i32) -> Result<Conf, Stop> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let key = PrivateKey::generate(&mut rng);
        let me = GroupParticipant {
            user_id: 1001,
            public_key: key.public_key(),
            flags: Permissions::from_bits_retain(flags),
            version: 0,
        };
        let state =
            GroupState { participants: vec![me], external_permissions: Permissions::from_bits_retain(external) };
        let block = confchain::build_zero_block(state, &key, &mut rng)?.to_server_form();
        let mut server = Chain::empty();
        server.apply(&block)?;
        let call = Call::new(1001, key.clone(), &block, &mut rng)?;
        Ok(Conf {
            rng,
            server,
            last: block,
            oracle: vec![call],
            keys: vec![key],
            peers: Vec::new(),
            now: 1_000,
            relayed: 0,
        })
    }

    /// The server accepts a block (plain form) or the oracle fails.
    fn publish(&mut self, plain: &[u8]) -> Result<Vec<u8>, confchain::Error> {
        let server = wire::to_server_form(plain)?;
        self.server.apply(&server)?;
        self.last = server.clone();
        for c in &mut self.oracle {
            c.apply_block(&server, self.now, &mut self.rng)?;
        }
        Ok(server)
    }

    /// An oracle member joins.
    fn oracle_join(&mut self, user_id: i64, flags: i32) -> Result<(), Stop> {
        let key = PrivateKey::generate(&mut self.rng);
        let me = GroupParticipant {
            user_id,
            public_key: key.public_key(),
            flags: Permissions::from_bits_retain(flags),
            version: 0,
        };
        let block = self.server.build_self_add(me, &key, &mut self.rng)?;
        let server = self.publish(block.as_bytes())?;
        self.oracle.push(Call::new(user_id, key.clone(), &server, &mut self.rng)?);
        self.keys.push(key);
        Ok(())
    }

    /// Delivers the server's last block to every peer member.
    fn deliver(&mut self, p: &mut Peer, step: &str) -> Result<(), Stop> {
        let block = hex::encode(&self.last);
        let offset = i64::from(self.server.height()).saturating_add(1);
        for (name, _) in self.peers.clone() {
            ok(p, "apply_block", json!({ "member": name, "block": block, "now": self.now, "offset": offset }), step)?;
        }
        Ok(())
    }

    /// Builds a block by oracle member `by` (index) and publishes it to everyone.
    fn change(&mut self, p: &mut Peer, by: usize, state: GroupState, step: &str) -> Result<(), Stop> {
        let call = self.oracle.get(by).ok_or_else(|| Stop::Oracle("no such oracle member".into()))?;
        let block = call.build_change_state(state, &mut self.rng)?;
        self.publish(block.as_bytes())?;
        self.deliver(p, step)
    }

    /// The peer member `name` joins with its own self-add block, which the server must accept.
    pub(super) fn peer_join(&mut self, p: &mut Peer, name: &str) -> Result<(), Stop> {
        need(p, &["join", "apply_block"])?;
        let m = ok(
            p,
            "join",
            json!({ "member": name, "user_id": PEER_USER, "last_block": hex::encode(&self.last) }),
            "join (build the self-add block)",
        )?;
        let block = hex_field(&m, "block", "join")?;
        let expected_prev = hex::encode(self.server.hash());
        if let Err(e) = wire::to_server_form(&block).and_then(|s| self.server.clone().apply(&s)) {
            let prev = wire::Block::decode(&block).map(|b| b.prev_block_hash).unwrap_or_default();
            let cause = diagnose_hash(&self.last, &prev);
            return Err(Stop::Deviation(Deviation {
                step: "the reference applies the peer's self-add block".into(),
                expected: format!("accepted (prev_block_hash {expected_prev}, the hash of the block joined)"),
                got: format!(
                    "a block with prev_block_hash {}, which the reference refuses ({})",
                    hex::encode(prev),
                    e.message()
                ),
                cause,
            }));
        }
        // A self-add changes nothing but the joiner's own entry (a peer that rewrites the state
        // would otherwise turn the oracle's members out of their own call).
        let mut after = self.server.clone();
        after.apply(&wire::to_server_form(&block)?)?;
        let public_key = hex_field(&m, "public_key", "join")?;
        let mut expected: Vec<GroupParticipant> =
            self.server.participants().iter().filter(|x| x.user_id != PEER_USER).cloned().collect();
        let mine = after
            .participants()
            .last()
            .filter(|x| x.user_id == PEER_USER && x.public_key.as_bytes()[..] == public_key[..]);
        match mine {
            Some(me) => expected.push(me.clone()),
            None => {
                return Err(deviation(
                    "the self-add block lists the joiner last with its key",
                    format!("user {PEER_USER} with public key {}", hex::encode(&public_key)),
                    "another participant list",
                ))
            }
        }
        if after.participants() != expected.as_slice() {
            return Err(deviation(
                "the self-add block changes only the joiner's entry",
                "the other participants unchanged",
                "other participants changed",
            ));
        }
        self.publish(&block)?;
        self.peers.push((name.to_owned(), PEER_USER));
        // The server returns the block to its author too.
        ok(
            p,
            "apply_block",
            json!({
                "member": name,
                "block": hex::encode(&self.last),
                "now": self.now,
                "offset": i64::from(self.server.height()).saturating_add(1),
            }),
            "apply own self-add",
        )?;
        Ok(())
    }

    /// Relays broadcasts (server form) until nobody has anything to send.
    fn pump(&mut self, p: &mut Peer) -> Result<(), Stop> {
        for _round in 0..16 {
            let mut batch: Vec<(Option<String>, Vec<u8>)> = Vec::new();
            for c in &mut self.oracle {
                for b in c.poll_outbound() {
                    batch.push((None, wire::to_server_form(&b)?));
                }
            }
            if p.supports("pull_outbound") {
                for (name, _) in self.peers.clone() {
                    let m = ok(p, "pull_outbound", json!({ "member": name }), "pull_outbound")?;
                    let list = m.get("broadcasts").and_then(Value::as_array).cloned().unwrap_or_default();
                    // A member sends a commit and a reveal per block: a flood is a deviation, not work.
                    if list.len() > MAX_BROADCASTS_PER_PULL {
                        return Err(deviation(
                            "pull_outbound",
                            format!("at most {MAX_BROADCASTS_PER_PULL} broadcasts (a commit and a reveal per block)"),
                            format!("{} broadcasts", list.len()),
                        ));
                    }
                    for b in list {
                        let bytes = b.as_str().and_then(|s| hex::decode(s).ok()).unwrap_or_default();
                        match wire::to_server_form(&bytes) {
                            Ok(s) => batch.push((Some(name.clone()), s)),
                            Err(e) => {
                                return Err(deviation(
                                    "a broadcast of the peer",
                                    "a plain-form broadcast",
                                    describe(&e),
                                ))
                            }
                        }
                    }
                }
            }
            if batch.is_empty() {
                return Ok(());
            }
            self.relay(p, &batch)?;
        }
        Ok(())
    }

    fn relay(&mut self, p: &mut Peer, batch: &[(Option<String>, Vec<u8>)]) -> Result<(), Stop> {
        for (from, b) in batch {
            self.relayed = self.relayed.saturating_add(1);
            for c in &mut self.oracle {
                if let Err(e) = c.receive_broadcast(b) {
                    if from.is_some() {
                        return Err(deviation(
                            "the reference receives the peer's broadcast",
                            "accepted",
                            format!("{} (broadcast {})", describe(&e), hex::encode(b)),
                        ));
                    }
                }
            }
            if p.supports("receive_broadcast") {
                for (name, _) in self.peers.clone() {
                    ok(
                        p,
                        "receive_broadcast",
                        json!({ "member": name, "broadcast": hex::encode(b), "offset": self.relayed }),
                        "receive_broadcast",
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Compares what the peer member reports with the oracle.
    fn compare(&mut self, p: &mut Peer, name: &str, step: &str) -> Result<(), Stop> {
        need(p, &["state"])?;
        self.pump(p)?;
        let s = ok(p, "state", json!({ "member": name }), step)?;
        let oracle = self.oracle.first().ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
        if let Some(h) = s.get("height").and_then(Value::as_i64) {
            if h != i64::from(self.server.height()) {
                return Err(deviation(format!("{step}: height"), self.server.height().to_string(), h.to_string()));
            }
        }
        if let Some(h) = s.get("hash").and_then(Value::as_str) {
            if h != hex::encode(self.server.hash()) {
                return Err(deviation(format!("{step}: chain hash"), hex::encode(self.server.hash()), h));
            }
        }
        if let Some(list) = s.get("participants") {
            let got = participants_arg(list).map_err(|e| deviation(step, "participants", e.to_string()))?;
            let expected = self.server.participants();
            let brief = |l: &[GroupParticipant]| {
                l.iter()
                    .map(|p| format!("{}:{}/v{}", p.user_id, p.flags.bits(), p.version))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            if got != expected {
                return Err(deviation(format!("{step}: participants"), brief(expected), brief(&got)));
            }
        }
        if let Some(m) = s.get("is_member").and_then(Value::as_bool) {
            let expected = self.server.group_state().participant(PEER_USER).is_some();
            if m != expected {
                return Err(deviation(format!("{step}: is_member"), expected.to_string(), m.to_string()));
            }
        }
        if p.supports("pull_outbound") && oracle.verification_result().is_none() {
            let missing = oracle.verification_missing();
            if missing.contains(&PEER_USER) {
                let phase = format!("{:?}", oracle.verification_phase()).to_lowercase();
                if let Some(Stop::Deviation(mut d)) = self.probe_hash(p)? {
                    d.step = format!("{step}: the round stalls; the peer's hash of block {}", self.server.height());
                    return Err(Stop::Deviation(d));
                }
                return Err(deviation(
                    format!("{step}: emoji round of block {}", self.server.height()),
                    "the peer sends its commit and reveal and the round completes".to_string(),
                    format!(
                        "the round stalls in the {phase} phase waiting for the peer (user {PEER_USER}); \
                         every confchain member's broadcast was delivered to it"
                    ),
                ));
            }
        }
        // A member the chain no longer lists takes no part in verification: what it shows is its own.
        let listed = self.server.group_state().participant(PEER_USER).is_some();
        if let Some(Value::Array(words)) = s.get("words") {
            let expected = confchain::verification_words(self.server.hash()).join(" ");
            let got = words.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
            if got != expected {
                return Err(deviation(format!("{step}: verification words of the last block"), expected, got));
            }
        }
        if let (Some(Value::String(got)), Some(expected), true) =
            (s.get("key_fingerprint"), oracle.key_fingerprint(), listed)
        {
            if *got != expected {
                return Err(deviation(format!("{step}: group key fingerprint"), expected, got.clone()));
            }
        }
        if let Some(got) = s.get("emojis").filter(|_| listed) {
            let expected = oracle.emojis().map(|e| e.concat());
            let got = match got {
                Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect::<String>()),
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            };
            if got != expected {
                let show = |e: &Option<String>| e.clone().unwrap_or_else(|| "none (verification not done)".into());
                return Err(deviation(
                    format!("{step}: emojis of block {}", self.server.height()),
                    show(&expected),
                    show(&got),
                ));
            }
        }
        Ok(())
    }

    /// The peer's hash of the last block, seen through a self-add built on it by a fresh member:
    /// a hash deviation (with its cause) when it differs from the reference's.
    fn probe_hash(&mut self, p: &mut Peer) -> Result<Option<Stop>, Stop> {
        if !p.supports("join") {
            return Ok(None);
        }
        let args = json!({ "member": "probe", "user_id": 4242, "last_block": hex::encode(&self.last) });
        let Answer::Ok(m) = p.call("join", args)? else { return Ok(None) };
        let Some(prev) = m
            .get("block")
            .and_then(Value::as_str)
            .and_then(|b| hex::decode(b).ok())
            .and_then(|b| wire::Block::decode(&b).ok())
            .map(|b| b.prev_block_hash)
        else {
            return Ok(None);
        };
        if prev == *self.server.hash() {
            return Ok(None);
        }
        Ok(Some(hash_deviation("hash of the last block", &self.last, self.server.hash(), &prev)))
    }

    fn state_with(&self, f: impl Fn(&mut Vec<GroupParticipant>)) -> GroupState {
        let mut state = self.server.group_state().clone();
        f(&mut state.participants);
        state
    }

    /// The first confchain member.
    fn first_oracle(&mut self) -> Result<&mut Call, Stop> {
        self.oracle.first_mut().ok_or_else(|| Stop::Oracle("no oracle member".into()))
    }

    /// The first confchain member decrypts a packet of `sender` (clear prefix and payload).
    pub(super) fn oracle_decrypt(
        &mut self,
        sender: i64,
        packet: &[u8],
    ) -> Result<Result<Vec<u8>, confchain::Error>, Stop> {
        let now = self.now;
        Ok(self.first_oracle()?.decrypt(sender, packet, now))
    }

    /// The first confchain member encrypts bytes with a clear prefix on the main channel.
    pub(super) fn oracle_encrypt(&mut self, data: &[u8], prefix: usize) -> Result<Vec<u8>, Stop> {
        let call = self.oracle.first_mut().ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
        Ok(call.encrypt(confchain::frame::CHANNEL_MAIN, data, prefix, self.now, &mut self.rng)?)
    }

    /// The first confchain member encrypts a frame on the main channel.
    pub(super) fn oracle_encrypt_frame(
        &mut self,
        codec: confchain::frame::Codec,
        frame: &[u8],
        level: confchain::frame::AudioLevel,
    ) -> Result<Vec<u8>, Stop> {
        let call = self.oracle.first_mut().ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
        Ok(call.encrypt_frame(confchain::frame::CHANNEL_MAIN, codec, frame, level, self.now, &mut self.rng)?)
    }

    /// The first confchain member removes the peer's member from the call.
    pub(super) fn remove_peer(&mut self, p: &mut Peer) -> Result<(), Stop> {
        let state = self.state_with(|l| l.retain(|x| x.user_id != PEER_USER));
        self.change(p, 0, state, "apply the block removing the peer")
    }
}

/// An Ed25519 public key that is not a curve point but gives a shared secret.
fn off_curve_key(rng: &mut ChaCha20Rng) -> Result<PublicKey, Stop> {
    let probe = PrivateKey::generate(rng);
    for i in 2u8..=255 {
        let mut bytes = [0u8; 32];
        bytes[0] = i;
        let key = PublicKey::from_bytes(bytes);
        if key.verifying_key().is_err() && probe.shared_secret(&key).is_ok() {
            return Ok(key);
        }
    }
    Err(Stop::Oracle("no off-curve key found".into()))
}

fn mixed(name: &str, rule: &str, f: impl Fn(&mut Peer, u64) -> Result<(), Stop> + 'static) -> Check {
    Check {
        name: format!("mixed.{name}"),
        rule: rule.to_owned(),
        run: Box::new(move |p, seed| f(p, seed).map(|()| Outcome::Pass)),
    }
}

fn mixed_checks(out: &mut Vec<Check>) {
    out.push(mixed(
        "peer-creates",
        "§4.5 build_zero_block; §4.2 a confchain member joins the peer's call",
        |p, seed| {
            need(p, &["create", "apply_block"])?;
            let m = ok(p, "create", json!({ "member": "p", "user_id": PEER_USER }), "create (zero block)")?;
            let block = hex_field(&m, "block", "create")?;
            let server =
                wire::to_server_form(&block).map_err(|e| deviation("zero block form", "plain form", describe(&e)))?;
            let mut chain = Chain::empty();
            if let Err(e) = chain.apply(&server) {
                return Err(deviation("the reference applies the peer's zero block", "accepted", describe(&e)));
            }
            ok(
                p,
                "apply_block",
                json!({ "member": "p", "block": hex::encode(&server), "offset": 1 }),
                "apply own zero block",
            )?;
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let key = PrivateKey::generate(&mut rng);
            let me = GroupParticipant {
                user_id: 1001,
                public_key: key.public_key(),
                flags: Permissions::from_bits_retain(3),
                version: 0,
            };
            let (perms, _) = chain.permissions_of(&key.public_key());
            if !perms.contains(Permissions::ADD_USERS) {
                return Err(Stop::Skip("the peer's zero block closes the call to self-joins".into()));
            }
            let add = chain.build_self_add(me, &key, &mut rng)?.to_server_form();
            chain.apply(&add)?;
            let call = Call::new(1001, key.clone(), &add, &mut rng)?;
            let mut conf = Conf {
                rng,
                server: chain,
                last: add,
                oracle: vec![call],
                keys: vec![key],
                peers: vec![("p".into(), PEER_USER)],
                now: 1_000,
                relayed: 0,
            };
            conf.deliver(p, "apply a confchain member's self-add")?;
            conf.pump(p)?;
            conf.compare(p, "p", "after the join")
        },
    ));
    for (name, flags, rule) in [
        ("join-plain-rights", 3, "§4.2 hash: join a call whose members have add/remove rights"),
        (
            "join-set-value-rights",
            7,
            "§2.2/§2.5 flag bit 2 (set value) is kept in the hash: join a call whose creator may set values",
        ),
    ] {
        out.push(mixed(name, rule, move |p, seed| {
            let mut conf = Conf::new(seed, flags, 7)?;
            conf.peer_join(p, "p")?;
            conf.pump(p)?;
            conf.compare(p, "p", "after the join")
        }));
    }
    out.push(mixed("set-value-member-joins", "§2.5 a member with flag bit 2 joins after the peer", |p, seed| {
        let mut conf = Conf::new(seed, 3, 7)?;
        conf.peer_join(p, "p")?;
        conf.oracle_join(1002, 7)?;
        conf.deliver(p, "apply the self-add of a member with set-value rights")?;
        conf.pump(p)?;
        conf.compare(p, "p", "after the join")
    }));
    out.push(mixed(
        "verification-in-order",
        "§7.1 emoji round after a re-key, broadcasts after their block",
        |p, seed| {
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.oracle_join(1002, 3)?;
            conf.peer_join(p, "p")?;
            conf.pump(p)?;
            conf.compare(p, "p", "after the join")?;
            let state = conf.server.group_state().clone();
            conf.change(p, 0, state, "apply a re-key")?;
            conf.pump(p)?;
            conf.compare(p, "p", "after the re-key")
        },
    ));
    out.push(mixed(
        "broadcasts-before-block",
        "§7.2 a broadcast up to 16 heights ahead is held until its block arrives",
        |p, seed| {
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.oracle_join(1002, 3)?;
            conf.peer_join(p, "p")?;
            conf.pump(p)?;
            conf.compare(p, "p", "after the join")?;
            let state = conf.server.group_state().clone();
            let block = conf.oracle.first().map(|c| c.build_change_state(state, &mut conf.rng)).transpose()?;
            let block = block.ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
            conf.publish(block.as_bytes())?;
            // The confchain members' commits reach the peer before the block does.
            let mut early = Vec::new();
            for c in &mut conf.oracle {
                for b in c.poll_outbound() {
                    early.push((None, wire::to_server_form(&b)?));
                }
            }
            conf.relay(p, &early)?;
            conf.deliver(p, "apply the re-key after its commits")?;
            conf.pump(p)?;
            conf.compare(p, "p", "after the re-key (commits delivered before the block)").map_err(|stop| match stop {
                Stop::Deviation(mut d) if d.cause.is_none() => {
                    d.cause = Some(
                        "broadcasts that arrive before their block are lost (§7.2: the reference holds them; \
                         mixed.verification-in-order is the same round with the block first)"
                            .into(),
                    );
                    Stop::Deviation(d)
                }
                other => other,
            })
        },
    ));
    out.push(Check {
        name: "mixed.removal".into(),
        rule: "§4.2 removal; §8.1/§11 a removed member cannot encrypt (documented difference: the reference fails the call)".into(),
        run: Box::new(|p, seed| {
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            let state = conf.state_with(|l| l.retain(|x| x.user_id != PEER_USER));
            let call = conf.oracle.first().ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
            let block = call.build_change_state(state, &mut conf.rng)?;
            conf.publish(block.as_bytes())?;
            let args = json!({ "member": "p", "block": hex::encode(&conf.last), "now": conf.now,
                               "offset": i64::from(conf.server.height()).saturating_add(1) });
            // Either behaviour is the protocol's: the reference refuses the block that removes us
            // with CALL_FAILED (NOT_PARTICIPANT) and fails the call; confchain applies it and
            // refuses to encrypt (SPEC §11).
            let fails_the_call = match p.call("apply_block", args)? {
                Answer::Unsupported => return Err(Stop::Skip("no `apply_block` operation".into())),
                Answer::Ok(_) => false,
                Answer::Refused(e) if ["CALL_FAILED", "INVALID_CALL_GROUP_STATE__NOT_PARTICIPANT"].contains(&e.code.as_str()) => true,
                Answer::Refused(e) => {
                    return Err(deviation(
                        "apply the block removing the peer",
                        "accepted (confchain), or refused CALL_FAILED / NOT_PARTICIPANT (the reference)",
                        e.to_string(),
                    ))
                }
            };
            if !fails_the_call {
                conf.compare(p, "p", "after the removal")?;
            }
            if p.supports("encrypt") {
                if !p.reports_errors("encrypt") {
                    return Err(Stop::Skip("the peer does not report errors of `encrypt`".into()));
                }
                let args = json!({ "member": "p", "channel": 1, "data": "00", "now": conf.now });
                match p.call("encrypt", args)? {
                    Answer::Refused(e) if ["CALL_FAILED", "INVALID_CALL_GROUP_STATE__NOT_PARTICIPANT"].contains(&e.code.as_str()) => {}
                    Answer::Unsupported => {}
                    other => {
                        return Err(deviation(
                            "encrypt after removal",
                            "refused NOT_PARTICIPANT (confchain) or CALL_FAILED (the reference)",
                            match other {
                                Answer::Ok(_) => "accepted".to_owned(),
                                Answer::Refused(e) => e.to_string(),
                                Answer::Unsupported => String::new(),
                            },
                        ))
                    }
                }
            }
            Ok(Outcome::Documented(if fails_the_call {
                "the reference's behaviour: the removal fails the call (CALL_FAILED)".into()
            } else {
                "confchain's behaviour (SPEC §11): the removal is applied, encryption refused".into()
            }))
        }),
    });
    out.push(mixed(
        "permissions-change",
        "§4.2 7.3 flags changed by a member with add+remove; the peer loses its rights",
        |p, seed| {
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            let state = conf.state_with(|l| {
                for x in l.iter_mut().filter(|x| x.user_id == PEER_USER) {
                    x.flags = Permissions::NONE;
                }
            });
            conf.change(p, 0, state, "apply the permission change")?;
            conf.compare(p, "p", "after the permission change")?;
            if p.supports("build_change_state") {
                let state = conf.state_with(|l| l.retain(|x| x.user_id != 1001));
                let e = confchain::Error::new(confchain::ErrorKind::NoPermissions, "Can't remove users");
                let step = "a member without rights builds a removal";
                if !p.reports_errors("build_change_state") {
                    return Err(Stop::Skip("the peer does not report errors of `build_change_state`".into()));
                }
                let args = json!({ "member": "p", "participants": participants_json(&state.participants),
                               "external_permissions": state.external_permissions.bits() });
                match p.call("build_change_state", args)? {
                    Answer::Unsupported => {}
                    Answer::Refused(got) if same_error(&got, &e) => {}
                    Answer::Refused(got) => {
                        return Err(Stop::Deviation(Deviation {
                            step: step.into(),
                            expected: describe(&e),
                            got: got.to_string(),
                            cause: Some(CAUSE_OTHER_CODE.into()),
                        }))
                    }
                    Answer::Ok(m) => {
                        // The block the peer built is one its own chain (and everyone's) refuses.
                        let built = hex_field(&m, "block", "build_change_state")?;
                        let applied = wire::to_server_form(&built).and_then(|b| conf.server.clone().apply(&b));
                        let cause = match applied {
                            Err(a) if a.kind() == confchain::ErrorKind::NoPermissions => {
                                Some(CAUSE_BUILD_WITHOUT_RIGHTS.into())
                            }
                            _ => None,
                        };
                        return Err(Stop::Deviation(Deviation {
                            step: step.into(),
                            expected: describe(&e),
                            got: "a block (signed by the peer)".into(),
                            cause,
                        }));
                    }
                }
            }
            Ok(())
        },
    ));
    out.push(mixed(
        "version-change",
        "§4.4 group version 1: the key is re-hashed with every block's hash",
        |p, seed| {
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            let state = conf.state_with(|l| l.iter_mut().for_each(|x| x.version = 1));
            conf.change(p, 0, state, "apply the version change")?;
            conf.pump(p)?;
            conf.compare(p, "p", "after the version change")?;
            packets_both_ways(&mut conf, p, "at group version 1")
        },
    ));
    out.push(mixed(
        "off-curve-key",
        "§3 any 32 bytes are accepted as a participant key (the reference accepts off-curve keys)",
        |p, seed| {
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            let odd = off_curve_key(&mut conf.rng)?;
            let state = conf.state_with(|l| {
                l.push(GroupParticipant { user_id: 1009, public_key: odd, flags: Permissions::NONE, version: 0 })
            });
            conf.change(p, 0, state, "apply a block listing an off-curve key")?;
            conf.compare(p, "p", "after the block")
        },
    ));
    out.push(mixed(
        "build-over-off-curve-key",
        "§4.2/§5.2 a member builds a re-key for a call listing an off-curve key (its key header is computed as for any key)",
        |p, seed| {
            need(p, &["build_change_state"])?;
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            let odd = off_curve_key(&mut conf.rng)?;
            let state = conf.state_with(|l| {
                l.push(GroupParticipant { user_id: 1009, public_key: odd, flags: Permissions::NONE, version: 0 })
            });
            conf.change(p, 0, state, "apply a block listing an off-curve key")?;
            conf.pump(p)?;
            let state = conf.server.group_state().clone();
            let args = json!({ "member": "p", "participants": participants_json(&state.participants),
                               "external_permissions": state.external_permissions.bits() });
            let built = match p.call("build_change_state", args)? {
                Answer::Ok(m) => hex_field(&m, "block", "build_change_state")?,
                Answer::Unsupported => return Err(Stop::Skip("no `build_change_state` operation".into())),
                Answer::Refused(got) => {
                    return Err(Stop::Deviation(Deviation {
                        step: "build a re-key over the off-curve key".into(),
                        expected: "a block with a key header for every participant".into(),
                        got: got.to_string(),
                        cause: Some(CAUSE_NO_OFF_CURVE_HEADER.into()),
                    }))
                }
            };
            if let Err(e) = conf.publish(&built) {
                return Err(deviation("the reference applies the peer's re-key", "accepted", describe(&e)));
            }
            conf.deliver(p, "apply own re-key")?;
            conf.compare(p, "p", "after the re-key")?;
            packets_both_ways(&mut conf, p, "after the re-key")
        },
    ));
    out.push(mixed("plain-form-block", "§2.3 a block must come in server form (NOT_FROM_SERVER)", |p, seed| {
        let mut conf = Conf::new(seed, 3, 7)?;
        conf.peer_join(p, "p")?;
        let state = conf.server.group_state().clone();
        let block = conf.oracle.first().map(|c| c.build_change_state(state, &mut conf.rng)).transpose()?;
        let block = block.ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
        let e =
            confchain::Error::new(confchain::ErrorKind::NotFromServer, "Trying to apply local block, not from server");
        let last = conf.last.clone();
        block_refused(
            p,
            "apply_block",
            json!({ "member": "p", "block": hex::encode(block.as_bytes()), "now": conf.now }),
            "apply a plain-form block",
            &e,
            Some(&last),
            block.as_bytes(),
        )?;
        conf.publish(block.as_bytes())?;
        conf.deliver(p, "apply the same block in server form")?;
        conf.compare(p, "p", "after the block")
    }));
    out.push(mixed(
        "first-block-without-signer",
        "§4.2 4: a first block without signature_public_key has no signer (Unknown public key)",
        |p, seed| {
            need(p, &["check_block"])?;
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let key = PrivateKey::generate(&mut rng);
            let me =
                GroupParticipant { user_id: 1001, public_key: key.public_key(), flags: Permissions::ALL, version: 0 };
            let state = GroupState { participants: vec![me], external_permissions: Permissions::from_bits_retain(3) };
            let plain = confchain::build_zero_block(state, &key, &mut rng)?;
            let mut block = plain.decode()?;
            block.signature_public_key = None;
            let mut encoded = block.encode();
            let signature = key.sign(&block.signing_bytes());
            if let Some(field) = encoded.get_mut(wire::SIGNATURE_OFFSET..wire::SIGNATURE_OFFSET + 64) {
                field.copy_from_slice(&signature);
            }
            let server = wire::to_server_form(&encoded)?;
            let expected = match oracle_check(None, &server) {
                Err(e) => e,
                Ok(_) => return Err(Stop::Oracle("confchain accepts a first block without signer".into())),
            };
            block_refused(
                p,
                "check_block",
                json!({ "last_block": null, "block": hex::encode(&server) }),
                "check the first block",
                &expected,
                None,
                &server,
            )
        },
    ));
    out.push(mixed("packets", "§6 packets between implementations, both ways", |p, seed| {
        let mut conf = Conf::new(seed, 3, 7)?;
        conf.peer_join(p, "p")?;
        packets_both_ways(&mut conf, p, "after the join")
    }));
    out.push(mixed(
        "channel-limit",
        "§6.2/§10 channels 0..=1023: 1023 is used, 1024 is INVALID_CALL_CHANNEL_ID",
        |p, seed| {
            need(p, &["encrypt"])?;
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            let now = conf.now;
            let args = json!({ "member": "p", "channel": 1023, "data": hex::encode(b"top"), "now": now });
            let m = ok(p, "encrypt", args, "encrypt on channel 1023")?;
            let packet = hex_field(&m, "packet", "encrypt")?;
            let oracle = conf.oracle.first_mut().ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
            if let Err(e) = oracle.decrypt(PEER_USER, &packet, now) {
                return Err(deviation("the reference decrypts the channel-1023 packet", "accepted", describe(&e)));
            }
            let e = confchain::Error::bare(confchain::ErrorKind::InvalidCallChannelId);
            let args = json!({ "member": "p", "channel": 1024, "data": hex::encode(b"past"), "now": now });
            refused(p, "encrypt", args, "encrypt on channel 1024", &e)
        },
    ));
    out.push(mixed("messages", "§6.5 encrypted messages between implementations, both ways", |p, seed| {
        need(p, &["encrypt_message", "decrypt_message"])?;
        let mut conf = Conf::new(seed, 3, 7)?;
        conf.peer_join(p, "p")?;
        let now = conf.now;
        let oracle = conf.oracle.first_mut().ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
        let message = oracle.encrypt_message("{\"hello\":1}", now, &mut conf.rng)?;
        let m = ok(
            p,
            "decrypt_message",
            json!({ "member": "p", "user_id": 1001, "message": hex::encode(message), "now": now }),
            "decrypt a confchain message",
        )?;
        let text = m.get("text").and_then(Value::as_str).unwrap_or("");
        if text != "{\"hello\":1}" {
            return Err(deviation("decrypt a confchain message", "{\"hello\":1}", text));
        }
        let m = ok(
            p,
            "encrypt_message",
            json!({ "member": "p", "text": "{\"back\":2}", "now": now }),
            "encrypt a message",
        )?;
        let message = hex_field(&m, "message", "encrypt_message")?;
        match oracle.decrypt_message(PEER_USER, &message, now) {
            Ok(t) if t == "{\"back\":2}" => Ok(()),
            Ok(t) => Err(deviation("the reference decrypts the peer's message", "{\"back\":2}", t)),
            Err(e) => Err(deviation("the reference decrypts the peer's message", "{\"back\":2}", describe(&e))),
        }
    }));
    out.push(mixed(
        "epoch-grace",
        "§5 an old epoch decrypts 9 999 ms after the block replacing it, not 10 000 ms",
        |p, seed| {
            need(p, &["decrypt"])?;
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            let now = conf.now;
            let oracle = conf.oracle.first_mut().ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
            let first = oracle.encrypt(1, b"old epoch 1", 0, now, &mut conf.rng)?;
            let second = oracle.encrypt(1, b"old epoch 2", 0, now, &mut conf.rng)?;
            conf.now = 2_000;
            let state = conf.server.group_state().clone();
            conf.change(p, 0, state, "apply a re-key at 2000 ms")?;
            let m = ok(
                p,
                "decrypt",
                json!({ "member": "p", "user_id": 1001, "packet": hex::encode(first), "now": 11_999 }),
                "decrypt an old-epoch packet at +9999 ms",
            )?;
            if hex_field(&m, "data", "decrypt")? != b"old epoch 1" {
                return Err(deviation("decrypt at +9999 ms", "old epoch 1", "other bytes"));
            }
            let e = confchain::Error::bare(confchain::ErrorKind::DecryptUnknownEpoch);
            refused(
                p,
                "decrypt",
                json!({ "member": "p", "user_id": 1001, "packet": hex::encode(second), "now": 12_000 }),
                "decrypt an old-epoch packet at +10000 ms",
                &e,
            )
        },
    ));
}

fn packets_both_ways(conf: &mut Conf, p: &mut Peer, when: &str) -> Result<(), Stop> {
    if !p.supports("encrypt") && !p.supports("decrypt") {
        return Ok(());
    }
    need(p, &["encrypt", "decrypt"])?;
    let now = conf.now;
    let oracle = conf.oracle.first_mut().ok_or_else(|| Stop::Oracle("no oracle member".into()))?;
    let packet = oracle.encrypt(1, b"from confchain", 0, now, &mut conf.rng)?;
    let m = ok(
        p,
        "decrypt",
        json!({ "member": "p", "user_id": 1001, "packet": hex::encode(packet), "now": now }),
        &format!("decrypt a confchain packet {when}"),
    )?;
    if hex_field(&m, "data", "decrypt")? != b"from confchain" {
        return Err(deviation(format!("decrypt a confchain packet {when}"), "from confchain", "other bytes"));
    }
    let m = ok(
        p,
        "encrypt",
        json!({ "member": "p", "channel": 1, "data": hex::encode(b"from the peer"), "now": now }),
        "encrypt",
    )?;
    let packet = hex_field(&m, "packet", "encrypt")?;
    match oracle.decrypt(PEER_USER, &packet, now) {
        Ok(d) if d == b"from the peer" => Ok(()),
        Ok(_) => {
            Err(deviation(format!("the reference decrypts the peer's packet {when}"), "from the peer", "other bytes"))
        }
        Err(e) => {
            Err(deviation(format!("the reference decrypts the peer's packet {when}"), "from the peer", describe(&e)))
        }
    }
}

/// Every check, in order: vectors of the reference, confchain's rule vectors, mixed conferences.
pub fn all(dir: &Path) -> Result<Vec<Check>, String> {
    let mut out = Vec::new();
    invalid_block_checks(&load(dir, "tde2e/invalid_blocks.json")?, "vector.invalid_blocks", "§4.2", &mut out)?;
    for file in ["chain_basic_v0", "chain_basic_v1", "chain_versions", "chain_random_walk", "chain_large"] {
        chain_checks(dir, file, &mut out)?;
    }
    join_checks(dir, &mut out)?;
    broadcasts_check(dir, &mut out)?;
    let rules = dir.join("rules");
    if rules.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(&rules)
            .map_err(|e| format!("cannot list {}: {e}", rules.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let v = load(dir, &format!("rules/{stem}.json"))?;
            let cases = v.get("cases").cloned().unwrap_or(v);
            invalid_block_checks(&cases, &format!("vector.rules.{stem}"), "rule", &mut out)?;
        }
    }
    mixed_checks(&mut out);
    super::frames::all(dir, &mut out)?;
    Ok(out)
}
