//! `confchain bench`: the standard workloads, timed on this machine.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::Failure;

#[path = "../../../benches/workloads.rs"]
mod workloads;

use workloads::{
    decrypt_batch, media_decrypt_threads, media_latency_during_apply, time_for, BlockApply, BlockBuild, CallAtSize,
    FrameDecrypt, FrameEncrypt, MessageDecrypt, PacketDecrypt, PacketEncrypt, Primitives,
    BLOCK_APPLY_FIXED_SHA512_BLOCKS, CALL_SIZE, FRAME_KINDS, GROUP_SIZES, PACKET_FIXED_SHA512_BLOCKS, PACKET_SIZES,
};

/// Arguments of `bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Print a JSON list of {"name", "ops_per_s"} objects.
    #[arg(long)]
    json: bool,
    /// Shorter measurements (under a minute in all).
    #[arg(long)]
    quick: bool,
    /// Only run workloads whose name contains this text (primitives always run: they set the floor).
    filter: Option<String>,
}

/// Names of the primitive workloads, in the order they are measured.
const PRIMITIVES: [&str; 10] = [
    "primitives/ed25519_sign",
    "primitives/ed25519_verify",
    "primitives/ed25519_verify_key_bytes",
    "primitives/x25519_shared_secret",
    "primitives/aes256_cbc_encrypt_64k",
    "primitives/aes256_cbc_decrypt_64k",
    "primitives/hmac_sha256_64k",
    "primitives/sha512_64k",
    "primitives/ed25519_verify_prepared",
    "primitives/ed25519_prepare_key",
];

/// A primitive, by its index in [`PRIMITIVES`].
#[derive(Clone, Copy, PartialEq, Eq)]
struct Prim(usize);

const SIGN: Prim = Prim(0);
const VERIFY: Prim = Prim(1);
const VERIFY_KEY_BYTES: Prim = Prim(2);
const X25519: Prim = Prim(3);
const AES_ENC: Prim = Prim(4);
const AES_DEC: Prim = Prim(5);
const HMAC: Prim = Prim(6);
const SHA512: Prim = Prim(7);
/// Verification with a prepared key (informational: floors keep the plain verification).
const VERIFY_PREPARED: Prim = Prim(8);
const PREPARE_KEY: Prim = Prim(9);

/// Rates (ops/s) of the primitives measured (NaN for the others).
struct Rates([f64; PRIMITIVES.len()]);

impl Rates {
    fn get(&self, p: Prim) -> f64 {
        self.0.get(p.0).copied().unwrap_or(f64::NAN)
    }

    /// The rate of the mean time per op of two measurements.
    fn mean(a: &Rates, b: &Rates) -> Rates {
        let mut r = [f64::NAN; PRIMITIVES.len()];
        for (out, (x, y)) in r.iter_mut().zip(a.0.iter().zip(&b.0)) {
            *out = 2.0 / (1.0 / x + 1.0 / y);
        }
        Rates(r)
    }

    /// Seconds a packet of `size` bytes must spend in its primitives: one signature (or
    /// verification), AES-CBC and HMAC-SHA256 over the payload, and the SHA-512 compressions of
    /// its fixed key derivations.
    fn packet_floor(&self, sig: Prim, aes: Prim, size: usize) -> f64 {
        let per_byte = (1.0 / self.get(aes) + 1.0 / self.get(HMAC)) / 65536.0;
        let fixed = PACKET_FIXED_SHA512_BLOCKS * 128.0 / (self.get(SHA512) * 65536.0);
        1.0 / self.get(sig) + per_byte * size as f64 + fixed
    }

    /// Seconds applying a block of `bytes` must spend in its primitives: the signature's
    /// verification (the signer's key arrives as bytes), which hashes the whole block with
    /// SHA-512, the block's SHA-256 hash, and our key: one shared secret and the 16 SHA-512
    /// compressions that open its header and the key.
    fn block_apply_floor(&self, bytes: usize) -> f64 {
        let per_byte = 1.0 / (self.get(SHA512) * 65536.0) + 1.0 / (self.get(HMAC) * 65536.0);
        1.0 / self.get(VERIFY_KEY_BYTES)
            + bytes as f64 * per_byte
            + 1.0 / self.get(X25519)
            + BLOCK_APPLY_FIXED_SHA512_BLOCKS * 128.0 / (self.get(SHA512) * 65536.0)
    }
}

/// One measured workload.
struct Row {
    name: String,
    ops: f64,
    /// Its time over its floor (the time its primitives take), with the primitive rates measured
    /// around it.
    floor: Option<(f64, Rates)>,
    /// The size of the block it applies.
    block_bytes: Option<usize>,
}

impl Row {
    fn plain(name: String, ops: f64) -> Self {
        Row { name, ops, floor: None, block_bytes: None }
    }

    /// A workload of `ops` per second whose primitives take `floor` seconds at `rates`.
    fn priced(name: String, ops: f64, floor: f64, rates: Rates) -> Self {
        Row { name, ops, floor: Some((1.0 / (ops * floor), rates)), block_bytes: None }
    }
}

/// Measures the primitives in `which` for `budget` each.
fn rates(p: &mut Primitives, which: &[Prim], budget: Duration) -> Rates {
    let mut r = [f64::NAN; PRIMITIVES.len()];
    for &prim in which {
        let rate = match prim {
            SIGN => measure(budget, || p.sign()),
            VERIFY => measure(budget, || p.verify()),
            VERIFY_KEY_BYTES => measure(budget, || p.verify_key_bytes()),
            X25519 => measure(budget, || p.x25519()),
            AES_ENC => measure(budget, || p.aes_cbc_encrypt()),
            AES_DEC => measure(budget, || p.aes_cbc_decrypt()),
            HMAC => measure(budget, || p.hmac_sha256()),
            VERIFY_PREPARED => measure(budget, || p.verify_prepared()),
            PREPARE_KEY => measure(budget, || p.prepare_key()),
            _ => measure(budget, || p.sha512()),
        };
        if let Some(slot) = r.get_mut(prim.0) {
            *slot = rate;
        }
    }
    Rates(r)
}

/// Runs `op` for about `budget` (at least 3 times) and returns ops/s.
fn measure(budget: Duration, mut op: impl FnMut()) -> f64 {
    op(); // warm up
    let start = Instant::now();
    let mut n = 0u64;
    while n < 3 || start.elapsed() < budget {
        op();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Like [`measure`], each op on a fresh value from `setup`, which is not timed.
fn measure_fresh<T>(budget: Duration, mut setup: impl FnMut() -> T, mut op: impl FnMut(&mut T)) -> f64 {
    let (mut busy, mut n) = (Duration::ZERO, 0u64);
    let start = Instant::now();
    while n < 3 || busy < budget {
        let mut value = setup();
        let t = Instant::now();
        op(&mut value);
        busy += t.elapsed();
        n += 1;
        drop(value);
        if start.elapsed() > budget * 20 {
            break;
        }
    }
    n as f64 / busy.as_secs_f64()
}

pub fn run(args: Args) -> Result<(), Failure> {
    let budget = if args.quick { Duration::from_millis(250) } else { Duration::from_secs(2) };
    let mut results: Vec<Row> = Vec::new();

    let wanted = |name: &str| args.filter.as_deref().is_none_or(|f| name.contains(f));
    // The primitives set the floor of the packet and block-building workloads, so they run
    // whenever those do.
    let packet_names = PACKET_SIZES.iter().flat_map(|s| [format!("packet_encrypt/{s}"), format!("packet_decrypt/{s}")]);
    let build_names = GROUP_SIZES.iter().flat_map(|n| [format!("block_build/{n}"), format!("block_apply/{n}")]);
    let call_names = ["join_apply", "removal_apply", "verification_round", "message_decrypt"]
        .map(|w| format!("call_size/{w}/{CALL_SIZE}"));
    let need_primitives = packet_names
        .chain(build_names)
        .chain(call_names.iter().cloned())
        .chain(PRIMITIVES.iter().map(|p| p.to_string()))
        .any(|n| wanted(&n));
    let budget_p = if need_primitives { budget } else { Duration::ZERO };
    let mut p = Primitives::new();
    let all: Vec<Prim> = (0..PRIMITIVES.len()).map(Prim).collect();
    let primitives = rates(&mut p, &all, budget_p);
    // A workload is priced with its primitives measured right before and right after it (this
    // machine's speed drifts by several percent over a run, so run-wide rates would not do).
    let around = |p: &mut Primitives, need: &[Prim], op: &mut dyn FnMut() -> f64| {
        let before = rates(p, need, budget / 4);
        let ops = op();
        let after = rates(p, need, budget / 4);
        (ops, Rates::mean(&before, &after))
    };

    for size in PACKET_SIZES.into_iter().filter(|s| wanted(&format!("packet_encrypt/{s}"))) {
        let mut w = PacketEncrypt::new(size);
        let (ops, r) = around(&mut p, &[SIGN, AES_ENC, HMAC, SHA512], &mut || measure(budget, || w.run()));
        let floor = r.packet_floor(SIGN, AES_ENC, size);
        results.push(Row::priced(format!("packet_encrypt/{size}"), ops, floor, r));
    }
    for size in PACKET_SIZES.into_iter().filter(|s| wanted(&format!("packet_decrypt/{s}"))) {
        let mut w = PacketDecrypt::new(size);
        let (ops, r) = around(&mut p, &[VERIFY, AES_DEC, HMAC, SHA512], &mut || {
            // Time decryption only: packets are made in untimed batches.
            let (busy, n) = time_for(&mut w, budget, decrypt_batch(size));
            n as f64 / busy.as_secs_f64()
        });
        let floor = r.packet_floor(VERIFY, AES_DEC, size);
        results.push(Row::priced(format!("packet_decrypt/{size}"), ops, floor, r));
    }
    for n in GROUP_SIZES.into_iter().filter(|n| wanted(&format!("block_build/{n}"))) {
        let mut w = BlockBuild::new(n);
        let (ops, r) = around(&mut p, &[X25519, SIGN], &mut || measure(budget, || drop(w.run())));
        // One shared secret per member, the ephemeral key pair (a fixed-base multiplication, priced
        // as a signature) and the block's signature.
        let floor = n as f64 / r.get(X25519) + 2.0 / r.get(SIGN);
        results.push(Row::priced(format!("block_build/{n}"), ops, floor, r));
    }
    for n in GROUP_SIZES.into_iter().filter(|n| wanted(&format!("block_apply/{n}"))) {
        let mut w = BlockApply::new(n);
        let need = [VERIFY_KEY_BYTES, SHA512, HMAC, X25519];
        let (ops, r) = around(&mut p, &need, &mut || measure(budget, || w.run()));
        let floor = r.block_apply_floor(w.block_len());
        results
            .push(Row { block_bytes: Some(w.block_len()), ..Row::priced(format!("block_apply/{n}"), ops, floor, r) });
    }
    // What one client of a call at the real size pays (issue 32): each operation on a fresh call
    // made outside the timed part.
    if call_names.iter().any(|n| wanted(n)) {
        let w = CallAtSize::new(CALL_SIZE);
        let n = w.members();
        let (join_len, removal_len) = w.block_lens();
        let need = [VERIFY, VERIFY_KEY_BYTES, SHA512, HMAC, X25519, AES_DEC];
        for name in call_names.iter().filter(|n| wanted(n)) {
            let (ops, r) = if name.contains("message_decrypt") {
                let mut m = w.message_decrypt();
                around(&mut p, &need, &mut || {
                    let (busy, n) = time_for(&mut m, budget, 256);
                    n as f64 / busy.as_secs_f64()
                })
            } else {
                let before_join = name.contains("join_apply");
                let op = |call: &mut confchain::Call| {
                    if before_join {
                        w.apply_join(call);
                    } else if name.contains("removal_apply") {
                        w.apply_removal(call);
                    } else {
                        w.verification_round(call);
                    }
                };
                around(&mut p, &need, &mut || measure_fresh(budget, || w.fresh(before_join), op))
            };
            let floor = match name.split('/').nth(1) {
                Some("join_apply") => r.block_apply_floor(join_len),
                Some("removal_apply") => r.block_apply_floor(removal_len),
                Some("verification_round") => 2.0 * n as f64 / r.get(VERIFY),
                _ => r.packet_floor(VERIFY, AES_DEC, MessageDecrypt::MESSAGE.len()),
            };
            results.push(Row::priced(name.clone(), ops, floor, r));
        }
    }
    // The frame layer against the bare packet of the same bytes: the two alternate in short
    // slices (five rounds), so drift of the machine's speed hits both alike.
    let mut layer_costs = Vec::new();
    for (name, codec, size) in FRAME_KINDS {
        for dir in ["encrypt", "decrypt"] {
            let full = format!("frame_{dir}/{name}");
            if !wanted(&full) {
                continue;
            }
            let slice = budget / 5;
            let (mut t_frame, mut t_bare, mut n_frame, mut n_bare) = (0f64, 0f64, 0f64, 0f64);
            if dir == "encrypt" {
                let (mut framed, mut bare) =
                    (FrameEncrypt::new(codec, size, false), FrameEncrypt::new(codec, size, true));
                for _ in 0..5 {
                    let r = measure(slice, || framed.run());
                    (t_frame, n_frame) = (t_frame + slice.as_secs_f64(), n_frame + r * slice.as_secs_f64());
                    let r = measure(slice, || bare.run());
                    (t_bare, n_bare) = (t_bare + slice.as_secs_f64(), n_bare + r * slice.as_secs_f64());
                }
            } else {
                let (mut framed, mut bare) =
                    (FrameDecrypt::new(codec, size, false), FrameDecrypt::new(codec, size, true));
                let batch = decrypt_batch(size);
                for _ in 0..5 {
                    let (t, n) = time_for(&mut framed, slice, batch);
                    (t_frame, n_frame) = (t_frame + t.as_secs_f64(), n_frame + n as f64);
                    let (t, n) = time_for(&mut bare, slice, batch);
                    (t_bare, n_bare) = (t_bare + t.as_secs_f64(), n_bare + n as f64);
                }
            }
            let (ops, bare_ops) = (n_frame / t_frame, n_bare / t_bare);
            results.push(Row::plain(full.clone(), ops));
            results.push(Row::plain(format!("frame_{dir}_bare/{name}"), bare_ops));
            layer_costs.push((full, bare_ops / ops - 1.0));
        }
    }
    // Media handles: 100 senders decrypted by 1 and 2 threads (median of three rounds each).
    let per_sender = if args.quick { 20 } else { 100 };
    for threads in [1, 2].into_iter().filter(|t| wanted(&format!("media_decrypt_threads/{t}"))) {
        let mut rounds: Vec<f64> = (0..3).map(|_| media_decrypt_threads(threads, per_sender)).collect();
        rounds.sort_by(f64::total_cmp);
        results.push(Row::plain(format!("media_decrypt_threads/{threads}"), rounds[1]));
    }
    // Latency of frame encryption while blocks of a 1000-member call are applied every 100 ms.
    let mut latencies = Vec::new();
    if wanted("media_latency") {
        let blocks = if args.quick { 5 } else { 20 };
        for (name, locked) in [("media_latency/handles", false), ("media_latency/mutex_call", true)] {
            latencies.push((name, media_latency_during_apply(1000, blocks, 100, locked)));
        }
    }
    for (i, name) in PRIMITIVES.into_iter().enumerate() {
        if need_primitives {
            results.push(Row::plain(name.to_owned(), primitives.get(Prim(i))));
        }
    }

    if args.json {
        let mut list: Vec<_> = results
            .iter()
            .map(|row| {
                let mut o = json!({"name": row.name, "ops_per_s": row.ops});
                if let Some((ratio, rates)) = &row.floor {
                    o["floor_ratio"] = json!(ratio);
                    // The primitive rates it was priced with (compare_openssl.py uses them).
                    let adjacent: serde_json::Map<String, serde_json::Value> = PRIMITIVES
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| rates.get(Prim(*i)).is_finite())
                        .map(|(i, p)| (p.to_string(), json!(rates.get(Prim(i)))))
                        .collect();
                    o["adjacent_primitives"] = json!(adjacent);
                }
                if let Some(b) = row.block_bytes {
                    o["block_bytes"] = json!(b);
                }
                o
            })
            .collect();
        for (name, cost) in &layer_costs {
            list.push(json!({"name": format!("{name}/layer_cost"), "over_bare_packet": cost}));
        }
        for (name, [p50, p99, p999, max]) in &latencies {
            list.push(json!({"name": name, "p50_us": p50, "p99_us": p99, "p999_us": p999, "max_us": max}));
        }
        outln!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
    } else {
        outln!("{:<36} {:>14}  {}", "workload", "ops/s", "time vs. primitive floor");
        for row in &results {
            let r = row.floor.as_ref().map(|(ratio, _)| format!("{ratio:.2}x")).unwrap_or_default();
            outln!("{:<36} {:>14.1}  {r}", row.name, row.ops);
        }
        for (name, cost) in &layer_costs {
            outln!("{name:<36} frame layer over the bare packet of the same bytes: {:+.1}%", cost * 100.0);
        }
        for (name, [p50, p99, p999, max]) in &latencies {
            outln!("{name:<36} frame encryption latency: p50 {p50:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us, max {max:.1} us");
        }
    }
    Ok(())
}
