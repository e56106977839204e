//! Deterministic simulation (SPEC.md §16): many seeds of small conferences under network faults;
//! every invariant after every step, liveness once faults stop, and the same seed gives the same
//! run. `CONFCHAIN_SIM_SEEDS=N` runs N seeds per fault level (default 6), `CONFCHAIN_SIM_STEPS`
//! the steps per run (default 600).
//!
//! The `real_server_*` and `hostile_server_*` runs meet the real server's behaviours (issue 24)
//! and a hostile server (issue 23). Today's session fails them (each test's doc says which
//! invariant fails, at which seed and step): they are ignored until the session rewrite lands.
//! `the_simulator_catches_*` pin that the failures are real and found by the named invariant.

use confchain::server::hostile::Hostility;
use confchain::server::Behaviour;
use confchain::sim::{run, Faults, ServerSetup, SimConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seeds_with(faults: Faults, members: usize, server: ServerSetup) {
    let (n, steps) = (env("CONFCHAIN_SIM_SEEDS", 6), env("CONFCHAIN_SIM_STEPS", 600));
    for seed in 0..n {
        let config = SimConfig { members, steps, faults, seed, server };
        if let Err(failure) = run(&config) {
            panic!("{failure}");
        }
    }
}

fn seeds(faults: Faults, members: usize) {
    seeds_with(faults, members, ServerSetup::model());
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
    let config = SimConfig { members: 8, steps: 400, faults: Faults::heavy(), seed: 42, server: ServerSetup::model() };
    assert_eq!(run(&config), run(&config));
}

#[test]
fn a_hostile_seed_replays_exactly() {
    let config =
        SimConfig { members: 6, steps: 300, faults: Faults::light(), seed: 42, server: ServerSetup::hostile() };
    assert_eq!(run(&config), run(&config));
}

/// The first failure of a run, or none.
fn first_failure(members: usize, steps: u64, faults: Faults, server: ServerSetup, seeds: u64) -> Option<String> {
    (0..seeds).find_map(|seed| run(&SimConfig { members, steps, faults, seed, server }).err().map(|f| f.to_string()))
}

/// Refused blocks pushed and served as the tip, with nothing else hostile.
fn refused_blocks() -> ServerSetup {
    ServerSetup { behaviour: Behaviour::default(), hostility: Hostility::refused_blocks() }
}

/// Gaps, last-only pages, withheld offsets and silence, with nothing else hostile.
fn stalls() -> ServerSetup {
    ServerSetup { behaviour: Behaviour::default(), hostility: Hostility::stalls() }
}

/// Issue 23 item 1 against today's session: the forged block is refused, the session refetches
/// the tip, the server serves the forged block and `Call::resync` installs it. Found by the
/// chain invariant ("refused block adopted") within the first seed (e.g. seed 0, step ~20 with
/// 5 members); were the chain check absent, the outsider-key check fires on the next packet.
#[test]
#[ignore = "needs session rewrite (issue 23): today's session adopts the refused block (pins the failure)"]
fn the_simulator_catches_an_adopted_refused_block() {
    let failure = first_failure(5, 400, Faults::none(), refused_blocks(), 3).expect("today's session adopts it");
    assert!(failure.contains("issue 23 item 1"), "{failure}");
}

/// Issue 23 items 5 and 6 against today's session: a withheld offset makes it re-poll at once,
/// in a hot loop (request rate), and a poll never answered is awaited for ever (deadline).
#[test]
#[ignore = "needs session rewrite (issue 23): today's session hot-loops and waits for ever (pins the failure)"]
fn the_simulator_catches_stalls_and_hot_loops() {
    let failure = first_failure(5, 400, Faults::none(), stalls(), 3).expect("today's session stalls or loops");
    assert!(failure.contains("issue 23 item 6") || failure.contains("issue 23 item 5"), "{failure}");
}

/// Issue 23 item 1: no member ever adopts a refused block (chain invariant, outsider key).
/// Today: fails at seed 0 ("refused block adopted", see the test above).
#[test]
#[ignore = "needs session rewrite (issue 23)"]
fn hostile_server_refused_blocks_are_never_adopted() {
    seeds_with(Faults::light(), 6, refused_blocks());
}

/// Issue 23 items 5 to 7: gaps, last-only pages, withheld offsets and silence neither stall nor
/// loop. Today: fails at seed 0 (request rate or deadline).
#[test]
#[ignore = "needs session rewrite (issue 23)"]
fn hostile_server_stalls_neither_stall_nor_loop() {
    seeds_with(Faults::light(), 6, stalls());
}

/// The real server without flood waits (so that the other behaviours show).
fn real_without_floods() -> ServerSetup {
    ServerSetup { behaviour: Behaviour { flood_per_mille: 0, ..Behaviour::real() }, hostility: Hostility::none() }
}

/// Issue 24 against today's session: FLOOD_WAIT_X is retried after 250 ms (flood-wait
/// invariant); without flood waits, members who left are never pruned (pruning invariant) and a
/// discarded call leaves everyone joined (call-ended invariant).
#[test]
#[ignore = "needs session rewrite (issue 24): today's session ignores flood waits, prunes no one (pins the failure)"]
fn the_simulator_catches_the_real_servers_behaviours() {
    let failure = first_failure(5, 400, Faults::none(), ServerSetup::real(), 3).expect("flood waits are ignored");
    assert!(failure.contains("issue 24 item 1"), "{failure}");
    // Without flood waits: a removed member's poll answered with the last block only loops
    // (issue 24 item 6), or no one prunes (item 4), or the end is ignored (item 2).
    let failure = first_failure(5, 400, Faults::none(), real_without_floods(), 3).expect("no one prunes");
    assert!(failure.contains("issue 24 item"), "{failure}");
}

/// Issue 24 without flood waits: members prune who left, the call's end takes everyone out.
#[test]
#[ignore = "needs session rewrite (issue 24)"]
fn real_server_without_flood_waits() {
    seeds_with(Faults::light(), 6, real_without_floods());
}

/// Issue 24: flood waits, bans, JOIN_MISSING, participant updates (members prune who left),
/// last-block-only answers to non-members, the call's end. Today: fails (flood wait, pruning,
/// or the call's end).
#[test]
#[ignore = "needs session rewrite (issue 24)"]
fn real_server_behaviours() {
    seeds_with(Faults::light(), 6, ServerSetup::real());
}

/// Everything at once: the real server, hostile while faults last, then honest; every member
/// converges (those that failed closed after rejoining). Today: fails at seed 0.
#[test]
#[ignore = "needs session rewrite (issues 23 and 24)"]
fn hostile_server_everything() {
    seeds_with(Faults::light(), 6, ServerSetup::hostile());
    seeds_with(Faults::heavy(), 6, ServerSetup::hostile());
}
