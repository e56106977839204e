//! `confchain simulate`: a deterministic simulation of a whole conference under network faults,
//! against the server model, the real server's behaviours or a hostile server (see
//! `confchain::sim`).

use std::io::{IsTerminal, Write};
use std::time::Instant;

use confchain::sim::{run_with_progress, Faults, ServerSetup, SimConfig};
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
    /// Server: model (the original model, honest), real (the real server's behaviours: flood
    /// waits, bans, JOIN_MISSING, participant updates, the call's end) or hostile (real, plus
    /// refused blocks, forged tips, gaps, withheld offsets, replays and silence while faults last).
    #[arg(long, default_value = "model")]
    server: String,
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
    let server = ServerSetup::by_name(&args.server)
        .ok_or_else(|| Failure::usage(format!("unknown server {:?} (model, real, hostile)", args.server)))?;
    if args.members == 0 || args.members > 100_000 {
        return Err(Failure::usage("--members must be 1..=100000"));
    }
    let config = SimConfig { members: args.members, steps: args.steps, faults, seed: args.seed, server };
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
                "server": args.server, "silent_requests": report.silent_requests,
                "forged_blocks": report.forged_blocks, "poisoned_keys": report.poisoned_keys,
                "lock_attempts": report.lock_attempts, "junk_pages": report.junk_pages,
                "member_junk": report.member_junk, "late_notices": report.late_notices,
                "false_notices": report.false_notices, "silent_drops": report.silent_drops,
                "flood_waits": report.flood_waits,
                "media_drops": report.media_drops, "outsider_attempts": report.outsider_attempts,
                "blocks": report.blocks, "broadcasts": report.broadcasts, "joins": report.joins,
                "races_lost": report.races_lost, "polls": report.polls,
                "failed_requests": report.failed_requests, "dropped_pushes": report.dropped_pushes,
                "packets": report.packets, "decryptions": report.decryptions, "messages": report.messages,
                "verifications": report.verifications, "crashes": report.crashes,
                "video_blackouts": report.video_blackouts, "h264_blackout_drops": report.h264_blackout_drops,
                "longest_blackout_ms": report.longest_blackout_ms,
                "invariant_checks": report.invariant_checks, "virtual_ms": report.virtual_ms,
                "real_s": real, "converged": true,
            })
        );
        return Ok(());
    }
    outln!(
        "confchain simulate: {} members, {} steps, {} faults, {} server, seed {}",
        args.members,
        args.steps,
        args.faults,
        args.server,
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
    outln!(
        "  H.264 blackouts   {:>8}   frames dropped in them {}, longest {} ms (every 3rd member builds as the official apps do)",
        report.video_blackouts, report.h264_blackout_drops, report.longest_blackout_ms
    );
    if args.server != "model" {
        outln!(
            "  server            forged blocks {}, silent requests {}, flood waits {}, media drops {}",
            report.forged_blocks,
            report.silent_requests,
            report.flood_waits,
            report.media_drops
        );
        outln!("  outsider decryptions tried {} (none read)", report.outsider_attempts);
        outln!(
            "  joiners' attacks  poisoned keys {} (removed), self-adds locking the call {} (refused)",
            report.poisoned_keys,
            report.lock_attempts
        );
        outln!(
            "  sub-chain 1 junk  full pages {}, blocks preceded by junk under members' ids {}",
            report.junk_pages,
            report.member_junk
        );
        outln!(
            "  notices           late 'left' delivered after a rejoin {}, false 'left' {}, silent drops {}",
            report.late_notices,
            report.false_notices,
            report.silent_drops
        );
    }
    outln!("  invariant checks  {:>8}   all held; every member converged once faults stopped", report.invariant_checks);
    outln!("  virtual time {:.1} s, real time {:.2} s", report.virtual_ms as f64 / 1000.0, real);
    Ok(())
}
