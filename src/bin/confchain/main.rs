//! `confchain`: a demo of a whole conference, and tools to inspect and replay real chains.
//!
//! Uses only the public library API. Bad input gives one line on stderr and exit code 1 (a rejected
//! block, an undecodable input) or 2 (usage), never a panic.

/// `println!` that ends the process quietly when stdout is closed (e.g. piped into `head`)
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_line(format_args!($($arg)*))
    };
}

/// Writes one line to stdout; exits quietly if the reader went away.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.write_all(b"\n")).is_err() {
        std::process::exit(0);
    }
}

mod bench;
mod conformance;
mod demo;
mod input;
mod inspect;
mod replay;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "confchain",
    version,
    about = "Telegram E2E conference calls: demo, inspect, replay, bench, simulate, conformance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an in-memory conference: joins, removal, rejoin, re-keys, packets, emoji verification.
    Demo(demo::Args),
    /// Decode a block, broadcast or call packet (hex, base64, @file or - for stdin).
    Inspect(inspect::Args),
    /// Apply a sequence of blocks (one per line, or a JSON array) and report the state after each.
    Replay(replay::Args),
    /// Run the standard performance workloads and print ops/s.
    Bench(bench::Args),
    /// Simulate a whole conference under network faults, checking every invariant (deterministic per seed).
    Simulate(simulate::Args),
    /// Check other implementations against the reference's behaviour (see conformance/PROTOCOL.md).
    Conformance(conformance::Args),
}

/// A failure to report: message, and the exit code to use.
pub struct Failure {
    /// What went wrong.
    pub message: String,
    code: u8,
}

impl Failure {
    /// Exit code 1: the input was read but is bad (rejected block, undecodable bytes).
    pub fn bad(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: 1 }
    }

    /// Exit code 2: the command line itself is wrong.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: 2 }
    }
}

impl From<confchain::Error> for Failure {
    fn from(e: confchain::Error) -> Self {
        Failure::bad(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Conformance(a) => conformance::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("confchain: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
