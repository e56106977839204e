//! `confchain bench`: the standard workloads, timed on this machine.

use crate::Failure;

/// Arguments of `bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Print a JSON list of {"name", "ops_per_s"} objects.
    #[arg(long)]
    json: bool,
    /// Shorter measurements (under a minute in all).
    #[arg(long)]
    quick: bool,
}

pub fn run(_args: Args) -> Result<(), Failure> {
    Err(Failure::bad("not implemented yet"))
}
