//! The conformance kit (`confchain conformance`): the runner against confchain's own peer
//! (`--serve`), against deliberately deviant peers (each deviation found, named, and nothing
//! else), and against broken peers (hung, garbage, silent: the runner never hangs). No Python, no
//! network.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_confchain")
}

fn vectors() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors").display().to_string()
}

fn runner(extra: &[&str]) -> Output {
    let v = vectors();
    let mut args = vec!["conformance", "--vectors", v.as_str()];
    args.extend_from_slice(extra);
    Command::new(exe()).args(&args).stdin(Stdio::null()).output().expect("run confchain")
}

fn serve(deviate: &str) -> String {
    if deviate.is_empty() {
        format!("'{}' conformance --serve", exe())
    } else {
        format!("'{}' conformance --serve --deviate {deviate}", exe())
    }
}

/// The JSON report of one peer.
fn report(peer: &str, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["--json", "--peer", peer];
    args.extend_from_slice(extra);
    let out = runner(&args);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let peer = doc["peers"][0].clone();
    (out, peer)
}

fn deviating(peer: &Value) -> Vec<String> {
    peer["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "deviation")
        .map(|c| c["check"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn confchain_passes_every_check_it_serves() {
    let (out, peer) = report(&serve(""), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let total = peer["checks"].as_array().unwrap().len();
    assert!(total >= 150, "only {total} checks");
    assert_eq!(peer["deviations"], 0, "{peer}");
    // The only skips are vector steps that close the call to self-joins (nothing to join on).
    for c in peer["checks"].as_array().unwrap() {
        if c["result"] == "skip" {
            assert_eq!(c["reason"], "the block closes the call to self-joins", "{c}");
        }
    }
    // Every kind of check ran: the reference's vectors, confchain's rule vectors, mixed conferences.
    for group in [
        "vector.invalid_blocks.",
        "vector.chain_large.",
        "vector.join.",
        "vector.rules.",
        "mixed.",
        "frame.send.",
        "frame.receive.",
        "frame.levels.",
        "frame.live.send.",
        "frame.live.receive.",
    ] {
        assert!(
            peer["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["check"].as_str().unwrap().starts_with(group) && c["result"] == "pass"),
            "no passing check in {group}"
        );
    }
}

#[test]
fn each_injected_deviation_is_found_and_nothing_else() {
    // drop-flag-bit-2 (ntgcalls): every hash of a block listing a member with set-value rights.
    let (out, peer) = report(&serve("drop-flag-bit-2"), &["--only", "mixed"]);
    assert_eq!(out.status.code(), Some(1));
    let found = deviating(&peer);
    assert!(found.contains(&"mixed.join-set-value-rights".to_owned()), "{found:?}");
    assert!(!found.contains(&"mixed.join-plain-rights".to_owned()), "{found:?}");
    assert!(!found.iter().any(|c| c.contains("broadcast") || c.contains("packets")), "{found:?}");
    let check =
        peer["checks"].as_array().unwrap().iter().find(|c| c["check"] == "mixed.join-set-value-rights").unwrap();
    assert!(check["got"].as_str().unwrap().contains("INVALID_BLOCK__HASH_MISMATCH"), "{check}");
    assert!(check["expected"].as_str().unwrap().starts_with("accepted (prev_block_hash "), "{check}");

    // lose-early-broadcasts (ntgcalls): only the check that delivers broadcasts before their block.
    let (_, peer) = report(&serve("lose-early-broadcasts"), &[]);
    assert_eq!(deviating(&peer), ["mixed.broadcasts-before-block"]);

    // tweb's mistakes: each found in exactly its checks, every one named by the same cause.
    for (deviate, checks, cause) in [
        // It applies blocks listing an off-curve key; it cannot build a key header for one.
        ("no-off-curve-header", &["mixed.build-over-off-curve-key"][..], "no key header can be built"),
        ("accept-plain-form", &["vector.invalid_blocks.00", "mixed.plain-form-block"], "plain-form (local) blocks"),
        (
            "accept-unsigned-first",
            &["vector.invalid_blocks.47", "mixed.first-block-without-signer"],
            "a first block without signature_public_key",
        ),
        ("accept-negative-flags", &["vector.rules.blocks.02"], "a negative `#` flags field"),
        ("build-without-rights", &["mixed.permissions-change"], "a member without the rights builds"),
        ("no-broadcast-errors", &["vector.broadcasts"], "broadcast errors are never reported"),
    ] {
        let (out, peer) = report(&serve(deviate), &[]);
        assert_eq!(out.status.code(), Some(1), "{deviate}");
        assert_eq!(deviating(&peer), checks, "{deviate}");
        for c in peer["checks"].as_array().unwrap().iter().filter(|c| c["result"] == "deviation") {
            assert!(c["cause"].as_str().unwrap_or("").starts_with(cause), "{deviate}: {c}");
        }
    }
    let (_, peer) = report(&serve("accept-plain-form"), &["--only", "mixed.plain-form-block"]);
    let check = &peer["checks"][0];
    assert_eq!(check["expected"], "refused NOT_FROM_SERVER: Trying to apply local block, not from server");
    assert_eq!(check["got"], "accepted");
    // The expected text names the code once.
    let (_, peer) = report(&serve("build-without-rights"), &["--only", "mixed.permissions-change"]);
    assert_eq!(peer["checks"][0]["expected"], "refused: INVALID_BLOCK__NO_PERMISSIONS: Can't remove users");

    // Every broadcast outcome is listed, not only the first wrong one.
    let (_, peer) = report(&serve("no-broadcast-errors"), &["--only", "vector.broadcasts"]);
    let got = peer["checks"][0]["got"].as_str().unwrap();
    assert!(got.starts_with("event 0 (reveal during commit phase): accepted;"), "{got}");
    assert!(got.contains("event 8 (local-form commit): accepted") && got.contains("event 29 "), "{got}");
    // A peer that says it does not report broadcast errors is judged on the rest, and passes.
    let hides = format!(
        "{} | sed -u 's/\"errors\":true/\"errors\":{{\"blocks\":true,\"broadcasts\":false}}/'",
        serve("no-broadcast-errors")
    );
    let (out, peer) = report(&hides, &["--only", "vector.broadcasts"]);
    assert!(out.status.success(), "{peer}");
    assert_eq!(peer["checks"][0]["result"], "pass", "{peer}");

    // A refusal with another code is named as such (here every INVALID_SHARED_SECRET answered as
    // a state-proof error).
    let other = format!(
        "{} | sed -u 's/INVALID_BLOCK__INVALID_SHARED_SECRET/INVALID_BLOCK__INVALID_STATE_PROOF__GROUP/g'",
        serve("")
    );
    let (out, peer) = report(&other, &["--only", "vector"]);
    assert_eq!(out.status.code(), Some(1));
    let found = deviating(&peer);
    assert!(found.contains(&"vector.invalid_blocks.28".to_owned()), "{found:?}");
    for c in peer["checks"].as_array().unwrap().iter().filter(|c| c["result"] == "deviation") {
        assert!(c["cause"].as_str().unwrap_or("").starts_with("refuses, but with another code"), "{c}");
    }
}

/// A documented difference accepts either behaviour and says which one the peer showed: the
/// reference fails the call on the block that removes us (CALL_FAILED), confchain applies it.
#[test]
fn the_removal_check_accepts_the_references_behaviour_and_says_so() {
    for (deviate, shown) in [("", "confchain's behaviour"), ("fail-call-on-removal", "the reference's behaviour")] {
        let (out, peer) = report(&serve(deviate), &["--only", "mixed.removal"]);
        assert!(out.status.success(), "{deviate}: {}", String::from_utf8_lossy(&out.stdout));
        let check = &peer["checks"][0];
        assert_eq!(check["result"], "pass", "{deviate}");
        assert!(check["shown"].as_str().unwrap().starts_with(shown), "{deviate}: {check}");
    }
}

/// The size limit is a documented difference too: confchain refuses a block past 2^24 - 1 bytes
/// for its size, the reference fails parsing it; either passes and the report says which, and a
/// refusal for another coded reason is still a deviation.
#[test]
fn the_size_limit_check_accepts_the_references_refusal_and_says_so() {
    let only = ["--only", "vector.rules.blocks.15"];
    let (out, peer) = report(&serve(""), &only);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(peer["checks"][0]["shown"].as_str().unwrap().starts_with("confchain's behaviour"), "{peer}");
    let hello = r#"{"id":1,"ok":{"version":1,"implementation":"tde2e-like","ops":["check_block"],"errors":true}}"#;
    let refusing = |error: &str| {
        format!("read l; echo '{hello}'; head -n 1 > /dev/null; echo '{{\"id\":2,\"error\":{error}}}'; cat > /dev/null")
    };
    let (out, peer) = report(&refusing(r#"{"code":"","name":"","message":"Too much data to fetch at 508"}"#), &only);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(peer["checks"][0]["shown"].as_str().unwrap().starts_with("the reference's behaviour"), "{peer}");
    let (out, peer) =
        report(&refusing(r#"{"code":"INVALID_BLOCK__HASH_MISMATCH","name":"","message":"hash mismatch"}"#), &only);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(deviating(&peer), ["vector.rules.blocks.15"]);
}

/// The frame checks of one peer: (check, result, cause) of each.
fn frame_results(peer: &Value) -> Vec<(String, String, String)> {
    peer["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                c["result"].as_str().unwrap().to_owned(),
                c["cause"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn confchain_passes_every_frame_check() {
    let (out, peer) = report(&serve(""), &["--only", "frame"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let results = frame_results(&peer);
    // Every case of vectors/frames (86 send, 20 receive), the levels, and live frames both ways.
    assert_eq!(results.iter().filter(|r| r.0.starts_with("frame.send.")).count(), 86);
    assert_eq!(results.iter().filter(|r| r.0.starts_with("frame.receive.")).count(), 20);
    assert!(results.len() >= 120, "{}", results.len());
    assert!(results.iter().all(|r| r.1 == "pass"), "{results:?}");
}

#[test]
fn each_frame_deviation_is_found_with_its_cause() {
    // (deviation, how its cause starts, how many checks show it, checks that must be among them)
    let cases: &[(&str, &str, usize, &[&str])] = &[
        (
            "video-no-prefix",
            "video sent with no codec prefix",
            74,
            &["frame.send.vp8-real-key", "frame.send.h264-idr-sps-pps-4byte", "frame.live.send.vp8-key"],
        ),
        (
            "no-widening",
            "H.264 3-byte start codes are not widened",
            16,
            &["frame.send.h264-idr-sps-pps-sei-3byte", "frame.live.send.h264-3byte"],
        ),
        (
            "widen-uint8",
            "H.264 start-code widening offsets kept in a uint8",
            3,
            &[
                "frame.send.h264-large-sei-3byte-past-256",
                "frame.send.h264-x264-idr-sei-0",
                "frame.live.send.h264-past-255",
            ],
        ),
        (
            "no-validation",
            "H.264 packets are not checked",
            13,
            &["frame.send.val-hash-01", "frame.send.val-retry-fourth-attempt"],
        ),
        (
            "clear-without-epoch",
            "media sent in clear",
            5,
            &["frame.send.opus-callback-failure", "frame.send.val-callback-failure-first", "frame.live.no-epoch"],
        ),
        (
            "keep-trailer",
            "the receiver does not strip the Opus trailer",
            11,
            &["frame.receive.opus-level-speech", "frame.live.receive.opus"],
        ),
        (
            "play-undecryptable",
            "undecryptable frames are played",
            4,
            &["frame.receive.opus-callback-failure", "frame.receive.h264-callback-failure", "frame.live.undecryptable"],
        ),
        (
            "fixed-level-byte",
            "the audio trailer does not carry the sender's level",
            9,
            &["frame.send.opus-real-level-speech", "frame.live.send.opus"],
        ),
        (
            "strict-start-code-search",
            "the start-code check also counts a code whose 01 is the packet's last byte",
            1,
            &["frame.send.val-last-three-bytes"],
        ),
        (
            "drop-trailer-only",
            "an Opus frame that is only its trailer is dropped",
            1,
            &["frame.receive.opus-only-trailer"],
        ),
        ("levels-f64", "the level is computed in f64", 2, &["frame.levels.to_byte", "frame.levels.from_byte"]),
    ];
    for (deviation, cause, count, must) in cases {
        let (out, peer) = report(&serve(deviation), &["--only", "frame"]);
        assert_eq!(out.status.code(), Some(1), "{deviation}");
        let found: Vec<_> = frame_results(&peer).into_iter().filter(|r| r.1 == "deviation").collect();
        assert_eq!(found.len(), *count, "{deviation}: {found:?}");
        for (check, _, c) in &found {
            assert!(c.starts_with(cause), "{deviation}: {check} explained as {c:?}");
        }
        for m in *must {
            assert!(found.iter().any(|r| r.0 == *m), "{deviation}: {m} not found in {found:?}");
        }
    }
    // The text report groups them under their one cause.
    let out = runner(&["--only", "frame", "--peer", &serve("widen-uint8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 check(s): H.264 start-code widening offsets kept in a uint8"), "{text}");
}

#[test]
fn frame_layout_and_validate_stand_in_for_frame_send() {
    // A peer over tgcalls-style code may offer only the pure layout and validation operations:
    // confchain's own peer with `frame_send` struck from its hello.
    let only_pure = |deviate: &str| format!("{} | sed -u 's/\"frame_send\",//'", serve(deviate));
    let (out, peer) = report(&only_pure(""), &["--only", "frame.send"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(peer["passed"], 86, "{peer}");
    let (out, peer) = report(&only_pure("no-validation"), &["--only", "frame.send"]);
    assert_eq!(out.status.code(), Some(1));
    let found: Vec<_> = frame_results(&peer).into_iter().filter(|r| r.1 == "deviation").collect();
    assert!(!found.is_empty());
    assert!(found.iter().all(|r| r.2.starts_with("H.264 packets are not checked")), "{found:?}");
}

#[test]
fn a_reproducer_replays_its_deviation_with_one_command() {
    let dir = std::env::temp_dir().join(format!("confchain-kit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.display().to_string();
    let out = runner(&["--peer", &serve("lose-early-broadcasts"), "--report", &d]);
    assert_eq!(out.status.code(), Some(1));
    let cases: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cases.len(), 1, "{cases:?}");
    let case = &cases[0];
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(case.join("deviation.json")).unwrap()).unwrap();
    assert_eq!(summary["check"], "mixed.broadcasts-before-block");
    let transcript = std::fs::read_to_string(case.join("transcript.jsonl")).unwrap();
    assert!(transcript.lines().count() > 10 && transcript.contains("\"receive_broadcast\""));
    // Replays alone, and finds the same deviation again.
    let replay = Command::new("sh").arg(case.join("reproduce.sh")).output().unwrap();
    assert_eq!(replay.status.code(), Some(1));
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(text.contains("DEVIATION mixed.broadcasts-before-block"), "{text}");
    assert!(text.contains("checks                                              1"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_peers_never_hang_the_runner() {
    let started = Instant::now();
    // Hangs without answering hello.
    let out = runner(&["--timeout-ms", "300", "--only", "mixed.packets", "--peer", "sleep 30"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no answer to hello within 300 ms"));
    // Answers garbage.
    let out = runner(&["--only", "mixed.packets", "--peer", "while read l; do echo 'not json'; done"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("is not JSON"));
    // Answers hello, then answers with another request's id.
    let hello = r#"{"id":1,"ok":{"version":1,"implementation":"confused","ops":["join","apply_block"]}}"#;
    let peer = format!("read l; echo '{hello}'; while read l; do echo '{{\"id\":999,\"ok\":{{}}}}'; done");
    let (out, peer) = report(&peer, &["--only", "mixed.join-plain-rights"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(peer["checks"][0]["got"].as_str().unwrap().contains("has the wrong id"), "{peer}");
    // Exits at once.
    let out = runner(&["--only", "mixed.packets", "--peer", "true"]);
    assert_eq!(out.status.code(), Some(1));
    // Answers hello, then hangs on the first operation: a deviation of that check, not a hang.
    let hello = r#"{"id":1,"ok":{"version":1,"implementation":"sleepy","ops":["join","apply_block","check_block"]}}"#;
    let peer = format!("read l; echo '{hello}'; sleep 30");
    let (out, peer) = report(&peer, &["--timeout-ms", "300", "--only", "mixed.join-plain-rights"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(deviating(&peer), ["mixed.join-plain-rights"]);
    assert!(peer["checks"][0]["got"].as_str().unwrap().contains("no answer to join within 300 ms"));
    // Stops reading its stdin while the runner writes a 32 MiB request, and leaves a grandchild
    // behind: the runner times out, and ends the peer's whole process group.
    let pid_file = std::env::temp_dir().join(format!("confchain-kit-pid-{}", std::process::id()));
    let hello = r#"{"id":1,"ok":{"version":1,"implementation":"deaf","ops":["check_block"],"errors":true}}"#;
    let peer = format!("read l; echo '{hello}'; sleep 60 & echo $! > '{}'; wait", pid_file.display());
    let (out, peer) = report(&peer, &["--timeout-ms", "500", "--only", "vector.rules.blocks.15"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(peer["checks"][0]["got"].as_str().unwrap().contains("no answer to check_block within 500 ms"));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    // Gone, or a zombie waiting for a reaper (the runner is not its parent).
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let alive = stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z') && !rest.is_empty());
    assert!(!alive, "the peer's child {pid} outlived the runner");
    let _ = std::fs::remove_file(&pid_file);
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

#[test]
fn a_peer_that_supports_nothing_is_skipped_not_failed() {
    let hello = r#"{"id":1,"ok":{"version":1,"implementation":"empty","ops":[]}}"#;
    let peer = format!("read l; echo '{hello}'; while read l; do echo '{{\"id\":0,\"unsupported\":true}}'; done");
    let (out, peer) = report(&peer, &["--only", "mixed"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(peer["passed"], 0);
    assert_eq!(peer["deviations"], 0);
    assert_eq!(peer["skipped"], peer["checks"].as_array().unwrap().len());
    // A peer speaking another protocol version is refused at hello.
    let hello = r#"{"id":1,"ok":{"version":2,"implementation":"future","ops":[]}}"#;
    let out = runner(&["--only", "mixed", "--peer", &format!("read l; echo '{hello}'; cat >/dev/null")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("protocol version Some(2)"));
}

#[test]
fn list_names_every_check_with_its_rule() {
    let out = runner(&["--list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("mixed.epoch-grace") && l.contains("§5")));
    assert!(text.lines().all(|l| l.contains('§') || l.contains("rule")), "{text}");
    let out = runner(&["--serve", "--deviate", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    // No peer: a usage error, not a silent pass.
    let out = runner(&[]);
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// confchain-made rule vectors (`vectors/rules/blocks.json`): generated here, deterministically, so
// that they can be regenerated (`CONFCHAIN_WRITE_VECTORS=1`) and so that confchain is checked to
// still give every recorded result. They are only as good as confchain's reading of the reference.

mod rules {
    use confchain::chain::Chain;
    use confchain::wire::{self, Block, Change, StateProof};
    use confchain::{build_zero_block, GroupParticipant, GroupState, Permissions, PrivateKey};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use serde_json::{json, Value};

    pub struct Case {
        pub name: &'static str,
        pub rule: &'static str,
        pub chain: Vec<Vec<u8>>,
        pub block: Vec<u8>,
        pub pad_to: Option<usize>,
        /// The reference's own refusal where it differs from confchain's (documented difference):
        /// `(error, kind, message)`.
        pub reference: Option<(&'static str, &'static str, &'static str)>,
    }

    fn key(rng: &mut ChaCha20Rng) -> PrivateKey {
        PrivateKey::generate(rng)
    }

    fn member(id: i64, k: &PrivateKey, flags: i32) -> GroupParticipant {
        GroupParticipant {
            user_id: id,
            public_key: k.public_key(),
            flags: Permissions::from_bits_retain(flags),
            version: 0,
        }
    }

    /// Re-signs a block with `signer` and returns its server form.
    fn signed(block: &Block, signer: &PrivateKey) -> Vec<u8> {
        let mut b = block.clone();
        b.signature = signer.sign(&b.signing_bytes());
        wire::to_server_form(&b.encode()).unwrap()
    }

    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    pub fn cases() -> Vec<Case> {
        let mut rng = ChaCha20Rng::seed_from_u64(26);
        let (a, b) = (key(&mut rng), key(&mut rng));
        let state = GroupState {
            participants: vec![member(1, &a, 3), member(2, &b, 3)],
            external_permissions: Permissions::from_bits_retain(1),
        };
        let zero = build_zero_block(state.clone(), &a, &mut rng).unwrap();
        let zero_s = zero.to_server_form();
        let chain = confchain::UnverifiedTip::from_server_block(&zero_s).map(Chain::trust_tip).unwrap();
        let rekey = chain.build_change_state(state.clone(), &a, &mut rng).unwrap();
        let rekey_s = rekey.to_server_form();
        let mut out = Vec::new();
        let mut case = |name, rule, chain: Vec<Vec<u8>>, block: Vec<u8>, pad_to| {
            out.push(Case { name, rule, chain, block, pad_to, reference: None })
        };

        // §2.4 decoding.
        let mut bad = rekey_s.clone();
        let at = find(&bad[100..], &0xd6b6_79e6u32.to_le_bytes()) + 100;
        bad[at] ^= 1;
        case(
            "wrong constructor of the state proof",
            "§2.4 Wrong constructor X found instead of Y",
            vec![zero_s.clone()],
            bad,
            None,
        );
        let mut bad = rekey_s.clone();
        bad[104..108].copy_from_slice(&1_000_000u32.to_le_bytes());
        case(
            "change count larger than the bytes left",
            "§2.4/§10 Wrong vector length (any vector count)",
            vec![zero_s.clone()],
            bad,
            None,
        );
        let mut bad = rekey_s.clone();
        bad[68..72].copy_from_slice(&0x8000_0001u32.to_le_bytes());
        case("negative block flags", "§2.4 Variable of type # can't be negative", vec![zero_s.clone()], bad, None);
        let mut odd = rekey_s.clone();
        odd[68..72].copy_from_slice(&3u32.to_le_bytes());
        case("unused block flag bit set", "§2.5 canonical form: unused flag bits", vec![zero_s.clone()], odd, None);

        // §2.3 forms.
        case(
            "a broadcast where a block is expected",
            "§2.3/§2.4 Expected magic",
            vec![zero_s.clone()],
            {
                let mut x = rekey_s.clone();
                x[0..4].copy_from_slice(&0xd151_2ae8u32.to_le_bytes());
                x
            },
            None,
        );

        // §4.2 step 1: a chain at i32::MAX accepts nothing.
        let mut top = zero.decode().unwrap();
        top.height = i32::MAX;
        let top_s = signed(&top, &a);
        let mut next = rekey.decode().unwrap();
        next.prev_block_hash = top.clone().hash();
        next.height = i32::MIN;
        case(
            "after height i32::MAX",
            "§4.2 1 HEIGHT_MISMATCH (a chain at i32::MAX accepts nothing)",
            vec![top_s],
            signed(&next, &a),
            None,
        );

        // §4.2 step 4: the signer defaults to the first participant.
        let mut unsigned = rekey.decode().unwrap();
        unsigned.signature_public_key = None;
        case(
            "no signer key: signed by the first participant",
            "§4.2 4 signer = first participant (accepted)",
            vec![zero_s.clone()],
            signed(&unsigned, &a),
            None,
        );
        case(
            "no signer key: signed by the second participant",
            "§4.2 4/5 INVALID_SIGNATURE (signer = first participant)",
            vec![zero_s.clone()],
            signed(&unsigned, &b),
            None,
        );

        // §4.2 step 7: SetValue is not checked by clients.
        let no_rights = GroupState {
            participants: vec![member(1, &a, 3), member(2, &b, 0)],
            external_permissions: Permissions::NONE,
        };
        let z2 = build_zero_block(no_rights, &a, &mut rng).unwrap().to_server_form();
        let c2 = confchain::UnverifiedTip::from_server_block(&z2).map(Chain::trust_tip).unwrap();
        let sv = Block {
            signature: [0; 64],
            prev_block_hash: *c2.hash(),
            // A 32-byte non-zero key: the reference's client aborts on any other (SPEC §11), which
            // would test that abort instead of the rule this case names.
            changes: vec![Change::SetValue { key: [0x6b; 32].to_vec(), value: b"v".to_vec() }],
            height: 1,
            state_proof: StateProof {
                kv_hash: [7; 32],
                group_state: Some(c2.group_state().clone()),
                shared_key: Some(c2.shared_key().clone()),
            },
            signature_public_key: Some(b.public_key()),
        };
        case(
            "set value by a member without set-value rights",
            "§4.2 7 SetValue is counted, not checked (accepted)",
            vec![z2.clone()],
            signed(&sv, &b),
            None,
        );

        // §4.2 step 7: SetSharedKey needs a participant with add or remove.
        let mut only_key = zero.decode().unwrap();
        only_key.changes.retain(|c| matches!(c, Change::SetSharedKey(_)));
        case(
            "first block setting only a shared key",
            "§4.2 7 NO_PERMISSIONS Can't set shared key",
            vec![],
            signed(&only_key, &a),
            None,
        );

        // §4.2 step 3: the first block applies to the ephemeral state (external permissions 7).
        let all = GroupState {
            participants: vec![member(1, &a, 7), member(2, &b, 7)],
            external_permissions: Permissions::ALL,
        };
        case(
            "first block granting every right",
            "§4.2 3 ephemeral state: no participants, external permissions 7 (accepted)",
            vec![],
            build_zero_block(all, &a, &mut rng).unwrap().to_server_form(),
            None,
        );

        // §4.3 starting from a single block.
        let mut neg = rekey.decode().unwrap();
        neg.height = -1;
        case(
            "last block with a negative height",
            "§4.3 INVALID_BLOCK: negative height",
            vec![signed(&neg, &a)],
            rekey_s.clone(),
            None,
        );
        let mut no_group = sv.clone();
        no_group.state_proof.group_state = None;
        case(
            "last block without group state",
            "§4.3 INVALID_STATE_PROOF__GROUP: no group state proof",
            vec![signed(&no_group, &b)],
            rekey_s.clone(),
            None,
        );
        let mut no_key = sv.clone();
        no_key.state_proof.shared_key = None;
        case(
            "last block without shared key",
            "§4.3 INVALID_STATE_PROOF__SECRET: no shared key",
            vec![signed(&no_key, &b)],
            rekey_s.clone(),
            None,
        );

        // §10 the block size limit, at and past its value.
        case(
            "block of 2^24 - 1 bytes (trailing zeros)",
            "§10 MAX_BLOCK_SIZE: at the limit the block is parsed (Too much data)",
            vec![zero_s.clone()],
            rekey_s.clone(),
            Some((1 << 24) - 1),
        );
        case(
            "block of 2^24 bytes",
            "§10/§11 past 2^24 - 1 bytes: refused (documented difference: confchain's own size limit, LIMIT_EXCEEDED; the reference has none and fails parsing the trailing zeros, 'Too much data to fetch'); either refusal passes",
            vec![zero_s.clone()],
            rekey_s.clone(),
            Some(1 << 24),
        );
        // A plain valid block, for reference.
        case("a re-key", "§4.2 (accepted)", vec![zero_s], rekey_s, None);
        // Past the size limit the reference refuses otherwise (it has no limit, SPEC §11): tde2e at
        // tdlib 022d602 answers this codeless parse error.
        for c in out.iter_mut().filter(|c| c.pad_to.is_some_and(|n| n >= 1 << 24)) {
            c.reference = Some(("", "PARSE", "Too much data to fetch"));
        }
        out
    }

    /// The vector file: each case with confchain's result.
    pub fn document() -> Value {
        let cases: Vec<Value> = cases()
            .into_iter()
            .map(|c| {
                let mut block = c.block.clone();
                if let Some(n) = c.pad_to {
                    block.resize(n, 0);
                }
                let mut chain = match c.chain.last() {
                    Some(l) => confchain::UnverifiedTip::from_server_block(l).map(Chain::trust_tip),
                    None => Ok(Chain::empty()),
                };
                let result = chain.as_mut().map_err(|e| e.clone()).and_then(|ch| ch.apply(&block).map(|()| ch.clone()));
                let mut v = json!({
                    "name": c.name,
                    "rule": c.rule,
                    "chain": c.chain.iter().map(hex::encode).collect::<Vec<_>>(),
                    "block": hex::encode(&c.block),
                });
                if let Some(n) = c.pad_to {
                    v["pad_to"] = json!(n);
                }
                if let Some((error, kind, message)) = c.reference {
                    v["reference"] = json!({ "error": error, "kind": kind, "message": message });
                }
                match result {
                    Ok(ch) => {
                        v["error"] = Value::Null;
                        v["hash"] = json!(hex::encode(ch.hash()));
                    }
                    Err(e) => {
                        v["error"] = json!(e.code().unwrap_or(""));
                        v["kind"] = json!(e.kind().name());
                        v["message"] = json!(e.message());
                    }
                }
                v
            })
            .collect();
        json!({
            "about": "confchain-made vectors, one per client rule of SPEC §2-§4 and §10 the reference's vectors do not cover. Each case: start from the last block of `chain` (the empty chain when none), apply `block` (zero-padded to `pad_to` bytes when given); `error`/`kind`/`message` is the refusal, or `hash` the result; `reference`, where given, is the reference's own refusal where it differs from confchain's (a documented difference: either passes). Generated by tests/conformance_kit.rs (CONFCHAIN_WRITE_VECTORS=1); only as good as confchain's reading of the reference.",
            "cases": cases,
        })
    }
}

#[test]
fn rule_vectors_are_confchains_results() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/rules/blocks.json");
    let doc = rules::document();
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("CONFCHAIN_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk =
        std::fs::read_to_string(&path).expect("vectors/rules/blocks.json (CONFCHAIN_WRITE_VECTORS=1 writes it)");
    assert!(
        on_disk == text,
        "vectors/rules/blocks.json is not what confchain gives (CONFCHAIN_WRITE_VECTORS=1 rewrites it)"
    );
    // Every case names its rule, and the file covers refusals and acceptances.
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.iter().all(|c| c["rule"].as_str().unwrap().starts_with('§')));
    for kind in [
        "PARSE",
        "LIMIT_EXCEEDED",
        "INVALID_BLOCK",
        "INVALID_BLOCK__HEIGHT_MISMATCH",
        "INVALID_BLOCK__INVALID_SIGNATURE",
        "INVALID_BLOCK__NO_PERMISSIONS",
    ] {
        assert!(cases.iter().any(|c| c["kind"] == kind), "no case refused with {kind}");
    }
    assert!(cases.iter().filter(|c| c["error"].is_null()).count() >= 4);
}
