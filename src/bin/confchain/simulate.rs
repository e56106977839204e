//! `confchain simulate`: a deterministic simulation of a whole conference under network faults
//! (see `confchain::sim`).

use std::io::{IsTerminal, Write};
use std::time::Instant;

use confchain::sim::{run_with_progress, Faults, SimConfig};
use serde_json::json;

use crate::Failure;

/// Arguments of `simulate`.
#[derive(clap::Args)]
pub struct Args {
    /// Number of members.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Steps of the faulty phase (each: maybe an action, then 50 ms of virtual time).
    #[arg(long, default_value_t = 2_000)]
    steps: u64,
    /// Fault level: none, light or heavy.
    #[arg(long, default_value = "light")]
    faults: String,
    /// Seed: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let faults = Faults::by_name(&args.faults)
        .ok_or_else(|| Failure::usage(format!("unknown fault level {:?} (none, light, heavy)", args.faults)))?;
    if args.members == 0 || args.members > 100_000 {
        return Err(Failure::usage("--members must be 1..=100000"));
    }
    let config = SimConfig { members: args.members, steps: args.steps, faults, seed: args.seed };
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let total = args.steps.max(1);
    let result = run_with_progress(&config, |step, report| {
        if tty {
            let done = (step * 30 / total) as usize;
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r[{}{}] step {step}/{total}, {} blocks, {} packets",
                "#".repeat(done),
                " ".repeat(30 - done.min(30)),
                report.blocks,
                report.packets
            );
            let _ = err.flush();
        }
    });
    if tty {
        eprintln!();
    }
    let real = started.elapsed().as_secs_f64();
    let report = result.map_err(|f| Failure::bad(f.to_string()))?;
    if args.json {
        outln!(
            "{}",
            json!({
                "members": args.members, "steps": args.steps, "faults": args.faults, "seed": args.seed,
                "blocks": report.blocks, "broadcasts": report.broadcasts, "joins": report.joins,
                "races_lost": report.races_lost, "polls": report.polls,
                "failed_requests": report.failed_requests, "dropped_pushes": report.dropped_pushes,
                "packets": report.packets, "decryptions": report.decryptions, "messages": report.messages,
                "verifications": report.verifications, "crashes": report.crashes,
                "invariant_checks": report.invariant_checks, "virtual_ms": report.virtual_ms,
                "real_s": real, "converged": true,
            })
        );
        return Ok(());
    }
    outln!(
        "confchain simulate: {} members, {} steps, {} faults, seed {}",
        args.members,
        args.steps,
        args.faults,
        args.seed
    );
    outln!("  blocks            {:>8}   broadcasts {:>8}", report.blocks, report.broadcasts);
    outln!("  joins             {:>8}   races lost and recovered {}", report.joins, report.races_lost);
    outln!(
        "  polls             {:>8}   failed requests {}, dropped pushes {}",
        report.polls,
        report.failed_requests,
        report.dropped_pushes
    );
    outln!("  packets           {:>8}   decryptions checked {}", report.packets, report.decryptions);
    outln!("  messages          {:>8}   crashes {}", report.messages, report.crashes);
    outln!("  verification rounds completed {}", report.verifications);
    outln!("  invariant checks  {:>8}   all held; every member converged once faults stopped", report.invariant_checks);
    outln!("  virtual time {:.1} s, real time {:.2} s", report.virtual_ms as f64 / 1000.0, real);
    Ok(())
}
