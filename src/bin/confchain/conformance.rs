//! `confchain conformance`: the conformance kit of the protocol. Drives peers (any implementation
//! behind a thin adapter speaking `conformance/PROTOCOL.md` on stdin/stdout) through the vectors of
//! `vectors/` and through mixed conferences whose other members are confchain, with confchain as
//! the oracle of the reference's behaviour. `--serve` makes confchain itself such a peer.

mod checks;
mod frames;
mod peer;
mod serve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

pub use peer::PROTOCOL_VERSION;

use crate::Failure;

/// Arguments of `conformance`.
#[derive(clap::Args)]
pub struct Args {
    /// A peer command, run with `sh -c` (repeatable): each is checked on its own.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Print the results as one JSON document.
    #[arg(long)]
    json: bool,
    /// Write one self-contained reproducer per deviation into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Only this check, or this group of checks (`mixed`, `vector.invalid_blocks`; repeatable).
    #[arg(long = "only")]
    only: Vec<String>,
    /// Vector directory (default: `$CONFCHAIN_VECTORS`, else `./vectors`, else the crate's).
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// Milliseconds to wait for each answer of a peer.
    #[arg(long, default_value_t = 20_000)]
    timeout_ms: u64,
    /// Seed of the oracle's randomness (the same seed gives the same requests).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// List the checks and exit.
    #[arg(long)]
    list: bool,
    /// Be a peer instead of a runner: serve the peer protocol with confchain on stdin/stdout.
    #[arg(long)]
    serve: bool,
    /// With --serve: behave like another implementation (comma-separated; `--deviate help` lists them).
    #[arg(long, value_delimiter = ',', requires = "serve")]
    deviate: Vec<String>,
}

/// How one check ended for one peer.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Same behaviour as the reference.
    Pass,
    /// One of the behaviours a documented difference allows (the reference's or confchain's,
    /// SPEC §11): passed, and the report says which one the peer showed.
    Documented(String),
    /// The peer cannot express the check (an operation or capability it does not have).
    Skip(String),
    /// The peer behaved differently from the reference.
    Deviation(Deviation),
    /// confchain itself (the oracle) failed where it must not: a bug of confchain, not the peer's.
    OracleFailure(String),
}

/// A difference from the reference's behaviour.
#[derive(Debug, Clone)]
pub struct Deviation {
    /// The step of the check that differs.
    pub step: String,
    /// What the reference does (as confchain, the oracle, does it).
    pub expected: String,
    /// What the peer did.
    pub got: String,
    /// What the peer's result is explained by, when the runner could tell (e.g. the hash of the
    /// block re-encoded without permission bit 2).
    pub cause: Option<String>,
}

/// The result of one check.
struct Record {
    check: String,
    rule: String,
    outcome: Outcome,
    transcript: Vec<Value>,
}

/// Whether `--only pattern` selects the check `name`: the check itself or a group it belongs to.
fn selects(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches(['.', '*']);
    name == pattern || name.strip_prefix(pattern).is_some_and(|rest| rest.starts_with('.'))
}

fn vectors_dir(arg: Option<PathBuf>) -> PathBuf {
    if let Some(d) = arg {
        return d;
    }
    if let Some(d) = std::env::var_os("CONFCHAIN_VECTORS") {
        return PathBuf::from(d);
    }
    let local = PathBuf::from("vectors");
    if local.join("tde2e").is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

pub fn run(args: Args) -> Result<(), Failure> {
    if args.serve {
        if args.deviate.iter().any(|d| d == "help") {
            for (name, what) in serve::DEVIATIONS {
                outln!("{name:24} {what}");
            }
            return Ok(());
        }
        return serve::serve(args.deviate, args.seed);
    }
    let vectors = vectors_dir(args.vectors.clone());
    let all = checks::all(&vectors).map_err(Failure::bad)?;
    let selected: Vec<&checks::Check> =
        all.iter().filter(|c| args.only.is_empty() || args.only.iter().any(|p| selects(p, &c.name))).collect();
    if args.list {
        for c in &selected {
            outln!("{:48} {}", c.name, c.rule);
        }
        return Ok(());
    }
    if args.peers.is_empty() {
        return Err(Failure::usage("give at least one --peer 'COMMAND' (or --serve to be one)"));
    }
    if selected.is_empty() {
        return Err(Failure::usage("no check matches --only"));
    }
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let mut documents = Vec::new();
    let mut deviations_total = 0usize;
    let mut broken_peers = 0usize;
    let mut oracle_failures = 0usize;
    for command in &args.peers {
        // One hello first, to name the peer (and fail early when it cannot start at all).
        let implementation = match peer::Peer::start(command, timeout) {
            Ok(p) => p.implementation(),
            Err(peer::Broken(e)) => {
                broken_peers = broken_peers.saturating_add(1);
                if args.json {
                    documents.push(json!({ "peer": command, "error": e }));
                } else {
                    outln!("peer {command}: cannot run: {e}");
                }
                continue;
            }
        };
        let mut records = Vec::new();
        for check in &selected {
            let seed = args.seed ^ checks::name_hash(&check.name);
            let (outcome, transcript) = match peer::Peer::start(command, timeout) {
                Err(peer::Broken(e)) => (
                    Outcome::Deviation(Deviation {
                        step: "start".into(),
                        expected: "the peer starts and answers hello".into(),
                        got: e,
                        cause: None,
                    }),
                    Vec::new(),
                ),
                Ok(mut p) => {
                    let outcome = match (check.run)(&mut p, seed) {
                        Ok(o) => o,
                        Err(checks::Stop::Broken(e)) => Outcome::Deviation(Deviation {
                            step: "protocol".into(),
                            expected: "an answer to every request".into(),
                            got: e,
                            cause: None,
                        }),
                        Err(checks::Stop::Skip(why)) => Outcome::Skip(why),
                        Err(checks::Stop::Deviation(d)) => Outcome::Deviation(d),
                        Err(checks::Stop::Oracle(e)) => Outcome::OracleFailure(e),
                    };
                    (outcome, std::mem::take(&mut p.transcript))
                }
            };
            records.push(Record { check: check.name.clone(), rule: check.rule.clone(), outcome, transcript });
        }
        let deviations: Vec<&Record> = records.iter().filter(|r| matches!(r.outcome, Outcome::Deviation(_))).collect();
        deviations_total = deviations_total.saturating_add(deviations.len());
        oracle_failures = oracle_failures
            .saturating_add(records.iter().filter(|r| matches!(r.outcome, Outcome::OracleFailure(_))).count());
        if let Some(dir) = &args.report {
            for r in &deviations {
                write_reproducer(dir, command, &implementation, r, &args, &vectors)?;
            }
        }
        if args.json {
            documents.push(json!({
                "peer": command,
                "implementation": implementation,
                "passed": records.iter().filter(|r| matches!(r.outcome, Outcome::Pass | Outcome::Documented(_))).count(),
                "skipped": records.iter().filter(|r| matches!(r.outcome, Outcome::Skip(_))).count(),
                "deviations": deviations.len(),
                "checks": records.iter().map(record_json).collect::<Vec<_>>(),
            }));
        } else {
            print_table(command, &implementation, &records);
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&json!({ "peers": documents })).unwrap_or_default());
    }
    if oracle_failures > 0 {
        return Err(Failure::bad(format!(
            "the oracle (confchain) failed in {oracle_failures} check(s): a confchain bug"
        )));
    }
    if broken_peers > 0 {
        return Err(Failure::bad(format!("{broken_peers} peer(s) could not be run")));
    }
    if deviations_total > 0 {
        return Err(Failure::bad(format!("{deviations_total} deviation(s) from the reference")));
    }
    Ok(())
}

fn record_json(r: &Record) -> Value {
    match &r.outcome {
        Outcome::Pass => json!({ "check": r.check, "rule": r.rule, "result": "pass" }),
        Outcome::Documented(shown) => json!({ "check": r.check, "rule": r.rule, "result": "pass", "shown": shown }),
        Outcome::Skip(why) => json!({ "check": r.check, "rule": r.rule, "result": "skip", "reason": why }),
        Outcome::OracleFailure(e) => {
            json!({ "check": r.check, "rule": r.rule, "result": "oracle-failure", "error": e })
        }
        Outcome::Deviation(d) => json!({
            "check": r.check, "rule": r.rule, "result": "deviation",
            "step": d.step, "expected": d.expected, "got": d.got, "cause": d.cause,
        }),
    }
}

fn print_table(command: &str, implementation: &str, records: &[Record]) {
    let passed = records.iter().filter(|r| matches!(r.outcome, Outcome::Pass | Outcome::Documented(_))).count();
    let skipped: Vec<&Record> = records.iter().filter(|r| matches!(r.outcome, Outcome::Skip(_))).collect();
    let deviations: Vec<&Record> = records.iter().filter(|r| matches!(r.outcome, Outcome::Deviation(_))).collect();
    outln!("peer: {implementation}  ({command})");
    outln!("  {:<46} {:>6}", "checks", records.len());
    outln!("  {:<46} {:>6}", "passed", passed);
    outln!("  {:<46} {:>6}", "skipped (not expressible by this peer)", skipped.len());
    outln!("  {:<46} {:>6}", "deviations from the reference", deviations.len());
    for r in &deviations {
        if let Outcome::Deviation(d) = &r.outcome {
            outln!("  DEVIATION {}  [{}]", r.check, r.rule);
            outln!("    step:      {}", d.step);
            outln!("    expected:  {}", d.expected);
            outln!("    peer:      {}", d.got);
            if let Some(c) = &d.cause {
                outln!("    cause:     {c}");
            }
        }
    }
    // The same cause behind several checks is one deviation of the implementation.
    let mut causes: Vec<(String, usize)> = Vec::new();
    for r in &deviations {
        if let Outcome::Deviation(d) = &r.outcome {
            let cause = d.cause.clone().unwrap_or_else(|| r.rule.clone());
            match causes.iter_mut().find(|(c, _)| *c == cause) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => causes.push((cause, 1)),
            }
        }
    }
    if !causes.is_empty() {
        outln!("  deviations by cause:");
        for (cause, n) in causes {
            outln!("    {n:>4} check(s): {cause}");
        }
    }
    for r in records {
        if let Outcome::Documented(shown) = &r.outcome {
            outln!("  documented difference {}: the peer showed {shown}", r.check);
        }
    }
    for r in records {
        if let Outcome::OracleFailure(e) = &r.outcome {
            outln!("  ORACLE FAILURE {} (confchain's own bug, not the peer's): {e}", r.check);
        }
    }
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for r in &skipped {
        if let Outcome::Skip(why) = &r.outcome {
            match reasons.iter_mut().find(|(w, _)| w == why) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => reasons.push((why.clone(), 1)),
            }
        }
    }
    for (why, n) in reasons {
        outln!("  skipped {n:>4}: {why}");
    }
}

/// Quotes a word for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn write_reproducer(
    dir: &Path,
    command: &str,
    implementation: &str,
    r: &Record,
    args: &Args,
    vectors: &Path,
) -> Result<(), Failure> {
    let Outcome::Deviation(d) = &r.outcome else { return Ok(()) };
    let slug: String = format!("{implementation}-{}", r.check)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .collect();
    let case = dir.join(slug);
    std::fs::create_dir_all(&case).map_err(|e| Failure::bad(format!("cannot create {}: {e}", case.display())))?;
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "confchain".into());
    let vectors_abs = std::fs::canonicalize(vectors).unwrap_or_else(|_| vectors.to_path_buf());
    let script = format!(
        "#!/bin/sh\n# Reproduces one deviation of {implementation}: check {check} ({rule}).\n\
         # expected:  {expected}\n# peer:      {got}\n\
         # transcript.jsonl holds every request the runner sent and every answer it got.\n\
         cd {cwd} || exit 2\n\
         exec \"${{CONFCHAIN:-{exe}}}\" conformance --peer {peer} --only {check} --seed {seed} \
         --vectors {vectors} --timeout-ms {timeout}\n",
        check = r.check,
        rule = r.rule,
        expected = d.expected.replace('\n', " "),
        got = d.got.replace('\n', " "),
        exe = exe,
        cwd = sh_quote(&std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| ".".into())),
        peer = sh_quote(command),
        seed = args.seed,
        vectors = sh_quote(&vectors_abs.display().to_string()),
        timeout = args.timeout_ms,
    );
    let write = |name: &str, text: &str| {
        std::fs::write(case.join(name), text).map_err(|e| Failure::bad(format!("cannot write {name}: {e}")))
    };
    write("reproduce.sh", &script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(case.join("reproduce.sh"), std::fs::Permissions::from_mode(0o755));
    }
    let transcript: String = r.transcript.iter().map(|v| format!("{v}\n")).collect();
    write("transcript.jsonl", &transcript)?;
    let summary = json!({
        "peer": command, "implementation": implementation, "check": r.check, "rule": r.rule,
        "step": d.step, "expected": d.expected, "got": d.got,
        "replay": format!("sh {}", case.join("reproduce.sh").display()),
    });
    write("deviation.json", &serde_json::to_string_pretty(&summary).unwrap_or_default())?;
    Ok(())
}
