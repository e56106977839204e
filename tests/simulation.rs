//! Deterministic simulation (SPEC.md §16): many seeds of small conferences under network faults;
//! every invariant after every step, liveness once faults stop, and the same seed gives the same
//! run. `CONFCHAIN_SIM_SEEDS=N` runs N seeds per fault level (default 6), `CONFCHAIN_SIM_STEPS`
//! the steps per run (default 600).

use confchain::sim::{run, Faults, SimConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seeds(faults: Faults, members: usize) {
    let (n, steps) = (env("CONFCHAIN_SIM_SEEDS", 6), env("CONFCHAIN_SIM_STEPS", 600));
    for seed in 0..n {
        let config = SimConfig { members, steps, faults, seed };
        if let Err(failure) = run(&config) {
            panic!("{failure}");
        }
    }
}

#[test]
fn without_faults() {
    seeds(Faults::none(), 6);
}

#[test]
fn light_faults() {
    seeds(Faults::light(), 10);
}

#[test]
fn heavy_faults() {
    seeds(Faults::heavy(), 10);
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig { members: 8, steps: 400, faults: Faults::heavy(), seed: 42 };
    assert_eq!(run(&config), run(&config));
}
