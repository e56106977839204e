//! `confchain demo`: a whole conference in memory, with a tiny in-process "server" that orders
//! blocks and relays broadcasts and packets as Telegram's server does.

use std::time::Instant;

use confchain::{
    build_zero_block, wire, Call, CallEvent, Chain, Error, GroupParticipant, GroupState, Permissions, PlainBlock,
    PrivateKey, UnverifiedTip,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{json, Value};

use crate::Failure;

const ADD_REMOVE: Permissions = Permissions::from_bits_retain(3);

/// Arguments of `demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Number of members (3 to 26).
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Seed of the deterministic RNG (same seed, same run).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print machine-readable events (one JSON object per line) instead of the timeline.
    #[arg(long)]
    json: bool,
}

const NAMES: [&str; 26] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "ken", "lena", "mallory",
    "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "ursula", "victor", "walter", "xena", "yann", "zoe",
];

/// The in-process server: orders blocks (sub-chain 0) and keeps broadcasts (sub-chain 1).
struct Server {
    chain: Chain,
    blocks: Vec<Vec<u8>>,
    broadcasts: Vec<Vec<u8>>,
}

impl Server {
    /// Accepts a plain-form block if it extends the chain (as the real server checks), stores
    /// it in server form.
    fn submit_block(&mut self, plain: &PlainBlock) -> Result<(), Error> {
        let server = plain.to_server_form();
        self.chain.apply(&server)?;
        self.blocks.push(server);
        Ok(())
    }

    fn last_block(&self) -> &[u8] {
        self.blocks.last().map(Vec::as_slice).unwrap_or_default()
    }
}

struct Member {
    name: &'static str,
    user_id: i64,
    key: PrivateKey,
    call: Option<Call>,
    next_block: usize,
    next_broadcast: usize,
}

#[derive(Default)]
struct Stats {
    sent: u64,
    received: u64,
    rejected: u64,
    bytes: u64,
}

struct Demo {
    rng: ChaCha20Rng,
    server: Server,
    members: Vec<Member>,
    now: u64,
    json: bool,
    stats: Stats,
    step_stats: Stats,
}

fn fail(what: &str, e: Error) -> Failure {
    Failure::bad(format!("demo failed while {what}: {e}"))
}

impl Demo {
    fn emit(&self, v: Value) {
        if self.json {
            outln!("{v}");
        }
    }

    fn say(&self, line: impl AsRef<str>) {
        if !self.json {
            outln!("{}", line.as_ref());
        }
    }

    fn member(&self, name: &str) -> usize {
        self.members.iter().position(|m| m.name == name).unwrap_or(0)
    }

    /// Every member with a call catches up with the server: blocks first, then broadcasts,
    /// relaying outbound broadcasts until nobody has anything left to say.
    fn sync(&mut self, skip: Option<usize>) -> Result<(), Failure> {
        for (i, m) in self.members.iter_mut().enumerate() {
            if Some(i) == skip {
                continue;
            }
            let Some(call) = m.call.as_mut() else { continue };
            while m.next_block < self.server.blocks.len() {
                call.apply_block(&self.server.blocks[m.next_block], self.now, &mut self.rng)
                    .map_err(|e| fail("applying a block", e))?;
                m.next_block += 1;
            }
        }
        loop {
            let mut any = false;
            for (i, m) in self.members.iter_mut().enumerate() {
                if Some(i) == skip {
                    continue;
                }
                if let Some(call) = m.call.as_mut() {
                    for b in call.poll_outbound() {
                        self.server.broadcasts.push(wire::to_server_form(&b).map_err(|e| fail("relaying", e))?);
                        any = true;
                    }
                }
            }
            for (i, m) in self.members.iter_mut().enumerate() {
                if Some(i) == skip {
                    continue;
                }
                let Some(call) = m.call.as_mut() else { continue };
                while m.next_broadcast < self.server.broadcasts.len() {
                    // Broadcasts of older blocks are ignored by the call; errors here are real bugs.
                    call.receive_broadcast(&self.server.broadcasts[m.next_broadcast])
                        .map_err(|e| fail("receiving a broadcast", e))?;
                    m.next_broadcast += 1;
                }
            }
            if !any {
                break;
            }
        }
        Ok(())
    }

    fn active(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| self.members[i].call.as_ref().is_some_and(Call::is_member)).collect()
    }

    /// Each active member sends one audio frame (channel 1, 4-byte clear prefix) and one encrypted
    /// message; every other active member decrypts both.
    fn traffic(&mut self) -> Result<(), Failure> {
        let active = self.active();
        for &s in &active {
            let mut frame = vec![0u8; 160];
            self.rng.fill_bytes(&mut frame);
            let text = format!(
                "{{\"_\":\"groupCallMessage\",\"from\":\"{}\",\"height\":{}}}",
                self.members[s].name,
                self.server.chain.height()
            );
            let (now, rng) = (self.now, &mut self.rng);
            let call = self.members[s].call.as_mut().ok_or_else(|| Failure::bad("no call"))?;
            let p1 = call.encrypt(1, &frame, 4, now, rng).map_err(|e| fail("encrypting", e))?;
            let p2 = call.encrypt_message(&text, now, rng).map_err(|e| fail("encrypting a message", e))?;
            let sender = self.members[s].user_id;
            self.step_stats.sent += 2;
            for &r in &active {
                if r == s {
                    continue;
                }
                let call = self.members[r].call.as_mut().ok_or_else(|| Failure::bad("no call"))?;
                let got = call.decrypt(sender, &p1, now).map_err(|e| fail("decrypting a frame", e))?;
                let msg = call.decrypt_message(sender, &p2, now).map_err(|e| fail("decrypting a message", e))?;
                if got != frame || msg != text {
                    return Err(Failure::bad("decrypted payload differs"));
                }
                self.step_stats.received += 2;
                self.step_stats.bytes += (p1.len() + p2.len()) as u64;
            }
        }
        Ok(())
    }

    fn report(&mut self, title: &str) -> Result<(), Failure> {
        self.traffic()?;
        let active = self.active();
        let height = self.server.chain.height();
        let emojis: Vec<String> = active
            .iter()
            .filter_map(|&i| self.members[i].call.as_ref().and_then(Call::emojis))
            .map(|e| e.concat())
            .collect();
        if emojis.len() != active.len() || emojis.windows(2).any(|w| w[0] != w[1]) {
            return Err(Failure::bad(format!("emoji verification did not complete identically at height {height}")));
        }
        let fingerprints: Vec<(String, String)> = active
            .iter()
            .map(|&i| {
                let m = &self.members[i];
                (m.name.to_owned(), m.call.as_ref().and_then(Call::key_fingerprint).unwrap_or_default())
            })
            .collect();
        let first = active.first().and_then(|&i| self.members[i].call.as_ref());
        let words = first.map(|c| c.verification_words()).unwrap_or_default();
        let epochs = first.map(Call::active_epochs).unwrap_or_default();
        let names: Vec<&str> = active.iter().map(|&i| self.members[i].name).collect();
        self.say(format!("[t={:>5.1}s] height {height}: {title}", self.now as f64 / 1000.0));
        let same_key = fingerprints.windows(2).all(|w| w[0].1 == w[1].1);
        let keys: Vec<String> = fingerprints.iter().map(|(n, f)| format!("{n}={f}")).collect();
        self.say(format!("           members  : {}{}", keys.join(" "), if same_key { "" } else { "  (MISMATCH)" }));
        self.say(format!("           epochs   : {epochs:?} active"));
        self.say(format!(
            "           emojis   : {}  (all {} agree)",
            emojis.first().map(String::as_str).unwrap_or("-"),
            emojis.len()
        ));
        self.say(format!("           words    : {} ...", words.iter().take(6).copied().collect::<Vec<_>>().join(" ")));
        let st = std::mem::take(&mut self.step_stats);
        self.say(format!("           packets  : {} sent, {} received, {} rejected", st.sent, st.received, st.rejected));
        self.emit(json!({
            "event": "block", "t_ms": self.now, "height": height, "title": title, "members": names,
            "key_fingerprints": fingerprints.iter().map(|(n, f)| json!({"member": n, "fingerprint": f})).collect::<Vec<_>>(),
            "epochs": epochs, "emojis": emojis.first(), "words": words,
            "packets": {"sent": st.sent, "received": st.received, "rejected": st.rejected},
        }));
        if !same_key {
            return Err(Failure::bad("members derived different group keys"));
        }
        self.stats.sent += st.sent;
        self.stats.received += st.received;
        self.stats.rejected += st.rejected;
        self.stats.bytes += st.bytes;
        Ok(())
    }

    fn join(&mut self, i: usize, flags: Permissions) -> Result<(), Failure> {
        let m = &self.members[i];
        let me = GroupParticipant { user_id: m.user_id, public_key: m.key.public_key(), flags, version: 0 };
        let tip = UnverifiedTip::from_server_block(self.server.last_block())
            .map_err(|e| fail("reading the last block", e))?;
        let block = tip.build_self_add(me, &m.key, &mut self.rng).map_err(|e| fail("building a self-add", e))?;
        self.server.submit_block(&block).map_err(|e| fail("submitting a join", e))?;
        let call = Call::new(m.user_id, m.key.clone(), self.server.last_block(), &mut self.rng)
            .map_err(|e| fail("creating a call", e))?;
        let m = &mut self.members[i];
        m.call = Some(call);
        m.next_block = self.server.blocks.len();
        m.next_broadcast = self.server.broadcasts.len();
        self.sync(None)
    }

    fn note(&mut self, what: &str, value: Value) {
        self.say(format!("           {what}"));
        self.emit(json!({"event": "note", "t_ms": self.now, "what": what, "detail": value}));
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    if !(3..=NAMES.len()).contains(&args.members) {
        return Err(Failure::usage(format!("--members must be between 3 and {}", NAMES.len())));
    }
    let started = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
    let members: Vec<Member> = NAMES[..args.members]
        .iter()
        .enumerate()
        .map(|(i, name)| Member {
            name,
            user_id: 1000 + i as i64 + 1,
            key: PrivateKey::generate(&mut rng),
            call: None,
            next_block: 0,
            next_broadcast: 0,
        })
        .collect();
    let mut d = Demo {
        rng,
        server: Server { chain: Chain::empty(), blocks: vec![], broadcasts: vec![] },
        members,
        now: 0,
        json: args.json,
        stats: Stats::default(),
        step_stats: Stats::default(),
    };
    d.say(format!("confchain demo: {} members, seed {}\n", args.members, args.seed));

    // 1. alice creates the call (createConferenceCall): all permissions, open to self-joins.
    let alice = &d.members[0];
    let state = GroupState {
        participants: vec![GroupParticipant {
            user_id: alice.user_id,
            public_key: alice.key.public_key(),
            flags: Permissions::ALL,
            version: 0,
        }],
        external_permissions: Permissions::ADD_USERS | Permissions::REMOVE_USERS,
    };
    let zero = build_zero_block(state, &alice.key, &mut d.rng).map_err(|e| fail("building the zero block", e))?;
    d.server.submit_block(&zero).map_err(|e| fail("creating the call", e))?;
    let call = Call::new(d.members[0].user_id, d.members[0].key.clone(), d.server.last_block(), &mut d.rng)
        .map_err(|e| fail("creating alice's call", e))?;
    d.members[0].call = Some(call);
    d.members[0].next_block = 1;
    d.sync(None)?;
    d.report("alice creates the call")?;

    // 2. everyone else joins, one by one (joinGroupCall with a self-add block).
    for i in 1..args.members {
        d.now += 2_000;
        d.join(i, ADD_REMOVE)?;
        let title = format!("{} joins", d.members[i].name);
        d.report(&title)?;
    }

    // 3. alice removes the last member (deleteConferenceCallParticipants).
    d.now += 2_000;
    let victim = args.members - 1;
    let victim_uid = d.members[victim].user_id;
    let block =
        d.members[0].call.as_ref().ok_or_else(|| Failure::bad("no call"))?.build_remove(&[victim_uid], &mut d.rng);
    d.server.submit_block(&block.map_err(|e| fail("building a removal", e))?).map_err(|e| fail("removing", e))?;
    d.sync(None)?;
    let title = format!("alice removes {}", d.members[victim].name);
    d.report(&title)?;
    let removed = d.members[victim].call.as_mut().ok_or_else(|| Failure::bad("no call"))?;
    let events: Vec<CallEvent> = std::iter::from_fn(|| removed.poll_event()).collect();
    let was_removed = events.iter().any(|e| matches!(e, CallEvent::Removed { .. }));
    let err = removed.encrypt(1, b"still here?", 0, d.now, &mut d.rng).err();
    let name = d.members[victim].name;
    d.note(
        &format!(
            "{name} saw the removal: {was_removed}; encrypting now fails with {}",
            err.as_ref().map(|e| e.kind().name()).unwrap_or("nothing (unexpected)")
        ),
        json!({"member": name, "removed_event": was_removed, "encrypt_error": err.map(|e| e.to_string())}),
    );
    // After the grace period the removed member cannot read the group any more.
    d.now += 11_000;
    let s = d.member("alice");
    let (now, rng) = (d.now, &mut d.rng);
    let p = d.members[s].call.as_mut().ok_or_else(|| Failure::bad("no call"))?.encrypt(1, b"secret plans", 0, now, rng);
    let p = p.map_err(|e| fail("encrypting", e))?;
    let sender = d.members[s].user_id;
    let res = d.members[victim].call.as_mut().ok_or_else(|| Failure::bad("no call"))?.decrypt(sender, &p, now);
    d.stats.sent += 1;
    d.stats.rejected += u64::from(res.is_err());
    let outcome = res.err().map(|e| e.kind().name().to_owned()).unwrap_or_else(|| "DECRYPTED (unexpected)".into());
    d.note(
        &format!("11 s later, {name} tries alice's next packet: {outcome}"),
        json!({"member": name, "result": outcome}),
    );
    if outcome != "DECRYPT__UNKNOWN_EPOCH" {
        return Err(Failure::bad("a removed member could still decrypt after the grace period"));
    }
    d.members[victim].call = None;

    // 4. bob leaves and rejoins with a new key (his self-add replaces his old entry).
    d.now += 2_000;
    let b = d.member("bob");
    d.members[b].call = None;
    d.members[b].key = PrivateKey::generate(&mut d.rng);
    d.join(b, ADD_REMOVE)?;
    d.report("bob rejoins with a new key")?;

    // 5. alice re-keys; one member lags behind and keeps sending in the old epoch during the grace period.
    d.now += 2_000;
    let block = d.members[0].call.as_ref().ok_or_else(|| Failure::bad("no call"))?.build_rekey(&mut d.rng);
    d.server.submit_block(&block.map_err(|e| fail("building a re-key", e))?).map_err(|e| fail("re-keying", e))?;
    let c = *d.active().iter().rfind(|&&i| i != 0).ok_or_else(|| Failure::bad("nobody to lag"))?;
    let lagging = d.members[c].name;
    d.sync(Some(c))?;
    let (now, rng) = (d.now + 3_000, &mut d.rng);
    let stale =
        d.members[c].call.as_mut().ok_or_else(|| Failure::bad("no call"))?.encrypt(1, b"old epoch", 0, now, rng);
    let stale = stale.map_err(|e| fail("encrypting", e))?;
    let lagging_uid = d.members[c].user_id;
    let res = d.members[0].call.as_mut().ok_or_else(|| Failure::bad("no call"))?.decrypt(lagging_uid, &stale, now);
    d.step_stats.sent += 1;
    d.step_stats.received += u64::from(res.is_ok());
    d.note(
        &format!("3 s into the grace period alice still reads {lagging}'s old-epoch packet: {}", res.is_ok()),
        json!({"member": lagging, "grace_decrypt_ok": res.is_ok()}),
    );
    if res.is_err() {
        return Err(Failure::bad("grace period packet was rejected"));
    }
    d.now += 3_000;
    d.sync(None)?;
    d.report(&format!("alice re-keys ({lagging} catches up 3 s late)"))?;
    // The same stale packet once the grace period is over: rejected.
    d.now += 11_000;
    let res = d.members[0].call.as_mut().ok_or_else(|| Failure::bad("no call"))?.decrypt(lagging_uid, &stale, d.now);
    let outcome = res.err().map(|e| e.kind().name().to_owned()).unwrap_or_else(|| "DECRYPTED".into());
    d.stats.rejected += 1;
    d.note(&format!("after the grace period the old-epoch packet is rejected: {outcome}"), json!({"result": outcome}));
    if outcome != "DECRYPT__UNKNOWN_EPOCH" {
        return Err(Failure::bad("an expired epoch still decrypted"));
    }

    // 6. alice closes the call to new self-joins.
    d.now += 2_000;
    let mut state = d.server.chain.group_state().clone();
    state.external_permissions = Permissions::NONE;
    let block =
        d.members[0].call.as_ref().ok_or_else(|| Failure::bad("no call"))?.build_change_state(state, &mut d.rng);
    d.server.submit_block(&block.map_err(|e| fail("building a state change", e))?).map_err(|e| fail("closing", e))?;
    d.sync(None)?;
    d.report("alice closes the call to new self-joins")?;

    // 7. A one-to-one call (requestCall / acceptCall / confirmCall) between alice and bob.
    one_to_one(&mut d)?;

    // Throughput: the only part that depends on the machine rather than the seed.
    let (elapsed, n, bytes) = throughput(&mut d)?;
    let total = started.elapsed();
    d.say(format!(
        "\nsummary: {} blocks, {} packets sent, {} decrypted, {} rejected as expected; all members agreed on every key and every emoji.",
        d.server.blocks.len(),
        d.stats.sent,
        d.stats.received,
        d.stats.rejected
    ));
    let pps = n as f64 / elapsed;
    d.say(format!(
        "throughput: {:.0} packets/s encrypt+decrypt of 1 KiB frames ({:.1} MB/s), whole demo {:.2} s",
        pps,
        bytes as f64 / elapsed / 1e6,
        total.as_secs_f64()
    ));
    d.emit(json!({"event": "summary", "blocks": d.server.blocks.len(), "packets_sent": d.stats.sent,
        "packets_received": d.stats.received, "packets_rejected": d.stats.rejected,
        "throughput_packets_per_s": pps, "seconds": total.as_secs_f64()}));
    Ok(())
}

/// The DH exchange of a one-to-one call; both sides must show the same emojis.
fn one_to_one(d: &mut Demo) -> Result<(), Failure> {
    use confchain::p2p::{Callee, Caller, DhConfig};
    let caller = Caller::new(DhConfig::telegram(), &mut d.rng);
    let g_a_hash = caller.g_a_hash();
    let callee = Callee::new(DhConfig::telegram(), g_a_hash, &mut d.rng);
    let confirm = caller.on_accepted(&callee.g_b()).map_err(|e| fail("accepting the call", e))?;
    let key = callee.on_confirmed(&confirm.g_a, confirm.key_fingerprint).map_err(|e| fail("confirming the call", e))?;
    let (a, b) = (confirm.key.emojis().concat(), key.emojis().concat());
    d.say("\none-to-one call: alice calls bob (requestCall → acceptCall → confirmCall)");
    d.say(format!("           requestCall g_a_hash: {}…", &hex::encode(g_a_hash)[..16]));
    d.say(format!("           key fingerprint     : {} (both sides)", confirm.key_fingerprint));
    d.say(format!("           emojis              : alice {a}  bob {b}  (equal: {})", a == b));
    d.emit(json!({"event": "one_to_one", "key_fingerprint": confirm.key_fingerprint, "emojis_caller": a, "emojis_callee": b}));
    if a != b || key.fingerprint() != confirm.key_fingerprint {
        return Err(Failure::bad("one-to-one call: the two sides disagree"));
    }
    Ok(())
}

/// Alice encrypts 1 KiB frames and bob decrypts them for a fixed count.
fn throughput(d: &mut Demo) -> Result<(f64, u64, u64), Failure> {
    let (a, b) = (d.member("alice"), d.member("bob"));
    let sender = d.members[a].user_id;
    let frame = vec![7u8; 1024];
    let mut buf = Vec::with_capacity(2048);
    let mut out = Vec::with_capacity(2048);
    let n = 2_000u64;
    let start = Instant::now();
    for _ in 0..n {
        buf.clear();
        out.clear();
        let (now, rng) = (d.now, &mut d.rng);
        d.members[a]
            .call
            .as_mut()
            .ok_or_else(|| Failure::bad("no call"))?
            .encrypt_into(2, &frame, 0, now, rng, &mut buf)
            .map_err(|e| fail("encrypting", e))?;
        d.members[b]
            .call
            .as_mut()
            .ok_or_else(|| Failure::bad("no call"))?
            .decrypt_into(sender, &buf, now, &mut out)
            .map_err(|e| fail("decrypting", e))?;
    }
    Ok((start.elapsed().as_secs_f64(), n, n * 1024))
}
