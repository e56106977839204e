//! Tests of the `confchain` command-line tool (built with `--features cli`).

mod common;

use std::process::{Command, Output, Stdio};

use common::{hex, load};

fn confchain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confchain")).args(args).stdin(Stdio::null()).output().expect("run confchain")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Bad input: exit code 1 or 2, one line on stderr, never a panic.
fn assert_clean_failure(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout: {} stderr: {}", stdout(o), stderr(o));
    let err = stderr(o);
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    if code == 1 {
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

fn tmp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("confchain-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn demo_runs_a_whole_conference_deterministically() {
    let a = confchain(&["demo", "--seed", "7"]);
    assert!(a.status.success(), "{}", stderr(&a));
    let out = stdout(&a);
    for needle in ["alice creates the call", "joins", "removes", "rejoins with a new key", "re-keys", "summary:"] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    assert!(out.contains("DECRYPT__UNKNOWN_EPOCH"));
    assert!(out.contains("one-to-one call") && out.contains("(equal: true)"), "{out}");
    assert!(out.contains("all members agreed on every key and every emoji"));
    let b = confchain(&["demo", "--seed", "7"]);
    let strip = |s: String| s.lines().filter(|l| !l.starts_with("throughput:")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(out), strip(stdout(&b)), "same seed, same run");
    let c = confchain(&["demo", "--seed", "8"]);
    assert_ne!(strip(stdout(&a)), strip(stdout(&c)));
}

#[test]
fn demo_json_is_one_event_per_line() {
    let o = confchain(&["demo", "--members", "3", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let events: Vec<serde_json::Value> =
        stdout(&o).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert!(events.iter().any(|e| e["event"] == "block" && e["height"] == 0));
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert!(summary["packets_received"].as_u64().unwrap() > 0);
    for e in events.iter().filter(|e| e["event"] == "block") {
        let fps: Vec<&serde_json::Value> =
            e["key_fingerprints"].as_array().unwrap().iter().map(|f| &f["fingerprint"]).collect();
        assert!(fps.windows(2).all(|w| w[0] == w[1]), "{e}");
    }
}

#[test]
fn demo_rejects_bad_arguments() {
    assert_clean_failure(&confchain(&["demo", "--members", "2"]), 2);
    assert_clean_failure(&confchain(&["demo", "--members", "many"]), 2);
    assert_clean_failure(&confchain(&["frobnicate"]), 2);
}

#[test]
fn inspect_blocks_broadcasts_and_packets() {
    let chain = load("tde2e/chain_basic_v0.json");
    let block = chain["steps"][1]["block"].as_str().unwrap();
    let o = confchain(&["inspect", block]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("height: 1"));
    assert!(stdout(&o).contains(chain["steps"][1]["hash"].as_str().unwrap()));

    let o = confchain(&["inspect", "--json", block]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "block");
    assert_eq!(v["form"], "server");
    assert_eq!(v["height"], 1);
    assert_eq!(v["hash"], chain["steps"][1]["hash"]);
    assert_eq!(v["signature_valid_for_signer"], true);

    // Plain form, from a file and as base64.
    let plain = confchain::wire::from_server_form(&hex(&chain["steps"][1]["block"])).unwrap();
    let path = tmp_file("plain.hex", &::hex::encode(&plain));
    let o = confchain(&["inspect", "--json", &format!("@{}", path.display())]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["form"], "plain");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
    assert!(confchain(&["inspect", &b64]).status.success());

    let b = load("tde2e/broadcasts.json");
    let commit = b["nonces"][0]["commit"].as_str().unwrap();
    let o = confchain(&["inspect", "--json", commit]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "broadcast (commit)");
    assert_eq!(v["user_id"], b["nonces"][0]["user_id"]);

    let p = load("tde2e/packets.json");
    let d = &p["deterministic"][1];
    let key = d["epochs"][0]["key"].as_str().unwrap();
    let o = confchain(&["inspect", "--json", "--key", key, d["packet"].as_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "call packet");
    assert_eq!(v["clear_prefix_len"], d["unencrypted_prefix_size"]);
    assert_eq!(v["decrypted"]["seqno"], d["seqno"]);
    let data = d["data"].as_str().unwrap();
    let prefix = 2 * d["unencrypted_prefix_size"].as_u64().unwrap() as usize;
    assert_eq!(v["decrypted"]["payload"].as_str().unwrap(), &data[prefix..]);
}

#[test]
fn inspect_rejects_bad_input_cleanly() {
    assert_clean_failure(&confchain(&["inspect", "zz-not-hex-or-base64!"]), 1);
    assert_clean_failure(&confchain(&["inspect", "0102"]), 1);
    let v = load("tde2e/invalid_blocks.json");
    let truncated = v.as_array().unwrap().iter().find(|c| c["name"] == "truncated block").unwrap();
    let o = confchain(&["inspect", truncated["block"].as_str().unwrap()]);
    assert_clean_failure(&o, 1);
    assert!(stderr(&o).contains("Not enough data to read at 340"), "{}", stderr(&o));
    assert_clean_failure(&confchain(&["inspect", "@/nonexistent/file"]), 1);
}

fn chain_file() -> (serde_json::Value, Vec<String>) {
    let v = load("tde2e/chain_basic_v0.json");
    let blocks = v["steps"].as_array().unwrap().iter().map(|s| s["block"].as_str().unwrap().to_owned()).collect();
    (v, blocks)
}

#[test]
fn replay_reports_each_block() {
    let (v, blocks) = chain_file();
    let path = tmp_file("chain.txt", &blocks.join("\n"));
    let key = v["keys"][0]["private_key"].as_str().unwrap();
    let o = confchain(&["replay", path.to_str().unwrap(), "--as", "1001", "--key", key]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), blocks.len());
    assert!(out.lines().all(|l| l.contains(" key=")), "{out}");

    let json = serde_json::to_string(&blocks).unwrap();
    let path = tmp_file("chain.json", &json);
    let o = confchain(&["replay", "--json", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let last: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(last["hash"], v["steps"][7]["hash"]);

    assert!(stdout(&o).lines().all(|l| l.contains("\"verified_from_zero_block\":true")));

    // A dump may start mid-chain: the first block is taken as the starting point, on trust, and
    // says so.
    let path = tmp_file("tail.txt", &blocks[3..].join("\n"));
    let o = confchain(&["replay", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.lines().next().unwrap().ends_with("(taken on trust: the dump starts mid-chain)"), "{out}");
    assert!(!out.lines().skip(1).any(|l| l.contains("on trust")), "{out}");
    let o = confchain(&["replay", "--json", path.to_str().unwrap()]);
    assert!(stdout(&o).lines().all(|l| l.contains("\"verified_from_zero_block\":false")));
}

#[test]
fn replay_stops_at_the_first_rejected_block() {
    let (_, mut blocks) = chain_file();
    blocks.swap(3, 4);
    let path = tmp_file("bad.txt", &blocks.join("\n"));
    let o = confchain(&["replay", path.to_str().unwrap()]);
    assert_clean_failure(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("block #3") && err.contains("INVALID_BLOCK__HEIGHT_MISMATCH"), "{err}");
    assert_eq!(stdout(&o).lines().count(), 3);

    let (_, mut blocks) = chain_file();
    let other = load("tde2e/chain_basic_v1.json");
    blocks[2] = other["steps"][2]["block"].as_str().unwrap().to_owned();
    let path = tmp_file("fork.txt", &blocks.join("\n"));
    let o = confchain(&["replay", path.to_str().unwrap()]);
    assert_clean_failure(&o, 1);
    assert!(stderr(&o).contains("INVALID_BLOCK__HASH_MISMATCH"), "{}", stderr(&o));

    let path = tmp_file("garbage.txt", "not a block\n");
    assert_clean_failure(&confchain(&["replay", path.to_str().unwrap()]), 1);
    assert_clean_failure(&confchain(&["replay", "/nonexistent"]), 1);
    assert_clean_failure(&confchain(&["replay", "x", "--as", "5"]), 2);
}

#[test]
fn bench_prints_named_workloads() {
    let o = confchain(&["bench", "--quick", "--json", "packet_encrypt/16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"packet_encrypt/16"));
    assert!(names.contains(&"primitives/ed25519_sign"));
    assert!(v.as_array().unwrap().iter().all(|x| x["ops_per_s"].as_f64().unwrap() > 0.0));
}

#[test]
fn simulate_is_deterministic_and_reports() {
    let args = ["simulate", "--members", "6", "--steps", "300", "--faults", "heavy", "--seed", "5", "--json"];
    let (a, b) = (confchain(&args), confchain(&args));
    assert!(a.status.success(), "{}", stderr(&a));
    let parse = |o: &Output| -> serde_json::Value { serde_json::from_str(stdout(o).trim()).unwrap() };
    let (mut ja, mut jb) = (parse(&a), parse(&b));
    assert_eq!(ja["converged"], true);
    assert!(ja["blocks"].as_u64().unwrap() > 0 && ja["invariant_checks"].as_u64().unwrap() >= 300);
    // Everything but the real time is the same for the same seed.
    ja["real_s"] = 0.into();
    jb["real_s"] = 0.into();
    assert_eq!(ja, jb);
    let text = confchain(&["simulate", "--members", "3", "--steps", "100", "--faults", "none"]);
    assert!(stdout(&text).contains("all held"), "{}", stdout(&text));
    assert_clean_failure(&confchain(&["simulate", "--faults", "stormy"]), 2);
}

/// Issue 23: `simulate --server hostile` runs the hostile server (forged blocks, silence, gaps,
/// issue 30's attacks) and the real server's behaviours, deterministic by seed, with every
/// invariant held.
#[test]
fn simulate_against_a_hostile_server() {
    let args = ["simulate", "--members", "5", "--steps", "300", "--faults", "light", "--seed", "3", "--server"];
    let run = |server: &str| {
        let out = confchain(&[&args[..], &[server, "--json"]].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        let mut j: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        j["real_s"] = 0.into();
        j
    };
    let (a, b) = (run("hostile"), run("hostile"));
    assert_eq!(a, b, "the same seed replays the same run");
    assert_eq!(a["converged"], true);
    assert!(a["forged_blocks"].as_u64().unwrap() > 0 && a["outsider_attempts"].as_u64().unwrap() > 0, "{a}");
    // Issue 30's attacks are counted (junk in sub-chain 1, late and false notices).
    for counter in ["junk_pages", "member_junk", "late_notices", "false_notices", "silent_drops"] {
        assert!(a[counter].is_u64(), "{counter}: {a}");
    }
    assert_eq!(run("real")["converged"], true);
    assert_clean_failure(&confchain(&["simulate", "--server", "evil"]), 2);
}
