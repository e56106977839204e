//! Deterministic simulation of a whole conference: many
//! [`Session`](crate::session::Session)s, the [`Server`](crate::server::Server) model, a virtual
//! clock and a faulty network, driven by one seeded RNG. One seed is one run; a failure names its
//! seed, step and invariant with a transcript of the last steps, and re-running the seed
//! reproduces it exactly (in the spirit of FoundationDB's simulation and TigerBeetle's VOPR).
//!
//! ```text
//!  seed ─▶ ChaCha20 ─▶ actions (create, join, leave, remove, re-key, permissions, packets,
//!                       messages, crash + rejoin, go offline)
//!                      faults (delay, reorder, duplicate, drop pushes, transient errors,
//!                       partitions)
//!                      server (the model, the real server's behaviours, or a hostile server:
//!                       refused blocks, forged tips, gaps, withheld offsets, silence, joiners'
//!                       attacks, junk in sub-chain 1, late and false notices, ...)
//!          ───────────▶ invariants after every step; liveness once faults stop
//! ```
//!
//! ```
//! use confchain::sim::{run, Faults, ServerSetup, SimConfig};
//! let config = SimConfig { members: 5, steps: 300, faults: Faults::light(), seed: 7, server: ServerSetup::model() };
//! let report = run(&config)?;
//! assert!(report.blocks > 0 && report.invariant_checks > 0);
//! # Ok::<(), confchain::sim::Failure>(())
//! ```

// The simulator's numbers (counters, indices into its own member list, virtual time starting at 0)
// are its own, never network or caller input: plain arithmetic and indexing are fine here (in
// every file of the simulator).
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

mod invariants;
mod network;
mod world;

use world::World;

use crate::server::hostile::Hostility;
use crate::server::Behaviour;

/// How often each network fault happens (probabilities per message, in parts per thousand).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Largest extra delivery delay, ms (messages also reorder by it).
    pub max_delay_ms: u64,
    /// A push delivered twice.
    pub duplicate: u32,
    /// A push lost (recovered by polling).
    pub drop_push: u32,
    /// A request failed with a transient error (before or after the server saw it).
    pub fail_request: u32,
    /// A member partitioned (offline) for a while, per step.
    pub partition: u32,
    /// A member crashing (losing all state) and later rejoining, per step.
    pub crash: u32,
}

impl Faults {
    /// No fault: immediate, ordered, reliable delivery.
    pub fn none() -> Self {
        Faults { max_delay_ms: 0, duplicate: 0, drop_push: 0, fail_request: 0, partition: 0, crash: 0 }
    }

    /// Occasional faults.
    pub fn light() -> Self {
        Faults { max_delay_ms: 300, duplicate: 20, drop_push: 20, fail_request: 20, partition: 2, crash: 2 }
    }

    /// Frequent faults.
    pub fn heavy() -> Self {
        Faults { max_delay_ms: 3_000, duplicate: 100, drop_push: 150, fail_request: 100, partition: 10, crash: 8 }
    }

    /// By name: `none`, `light` or `heavy`.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Faults::none()),
            "light" => Some(Faults::light()),
            "heavy" => Some(Faults::heavy()),
            _ => None,
        }
    }
}

/// Which server the members meet (SPEC.md §16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerSetup {
    /// The real server's behaviours shown (issue 24). With `participant_updates` on, the
    /// members must prune users who left by themselves (the simulator no longer does it for
    /// them), users are dropped from the media call now and then, and the call is discarded at
    /// the end of the run.
    pub behaviour: Behaviour,
    /// The server's hostility during the faulty phase (issue 23); none once faults stop.
    pub hostility: Hostility,
}

impl ServerSetup {
    /// The original server model, honest.
    pub fn model() -> Self {
        ServerSetup { behaviour: Behaviour::default(), hostility: Hostility::none() }
    }

    /// The real server's behaviours (flood waits, bans, JOIN_MISSING, participant updates, the
    /// call's end, last-block-only answers to non-members), honest.
    pub fn real() -> Self {
        ServerSetup { behaviour: Behaviour::real(), hostility: Hostility::none() }
    }

    /// The real server's behaviours under every hostile behaviour.
    pub fn hostile() -> Self {
        ServerSetup { behaviour: Behaviour::real(), hostility: Hostility::all() }
    }

    /// By name: `model`, `real` or `hostile`.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "model" => Some(ServerSetup::model()),
            "real" => Some(ServerSetup::real()),
            "hostile" => Some(ServerSetup::hostile()),
            _ => None,
        }
    }

    fn is_real(&self) -> bool {
        self.behaviour.participant_updates
    }
}

/// One run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of members (user ids 1..=members).
    pub members: usize,
    /// Steps of the faulty phase (each: maybe an action, then a slice of virtual time).
    pub steps: u64,
    /// The faults.
    pub faults: Faults,
    /// The seed: same seed, same run.
    pub seed: u64,
    /// The server.
    pub server: ServerSetup,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Blocks on the server at the end.
    pub blocks: u64,
    /// Broadcasts on the server at the end.
    pub broadcasts: u64,
    /// Joins that lost a race (`CONF_WRITE_CHAIN_INVALID`) and were retried.
    pub races_lost: u64,
    /// Joins completed.
    pub joins: u64,
    /// Polls sent.
    pub polls: u64,
    /// Requests failed by the network.
    pub failed_requests: u64,
    /// Pushes dropped.
    pub dropped_pushes: u64,
    /// Packets encrypted, and decryptions checked.
    pub packets: u64,
    /// Decryptions checked.
    pub decryptions: u64,
    /// Encrypted messages sent.
    pub messages: u64,
    /// Verification rounds completed (summed over members).
    pub verifications: u64,
    /// Crashes.
    pub crashes: u64,
    /// Invariant checks made.
    pub invariant_checks: u64,
    /// Requests the server never answered.
    pub silent_requests: u64,
    /// Refused blocks the hostile server forged (pushed and served as the tip).
    pub forged_blocks: u64,
    /// Self-adds with a key no one can use that the hostile server's joiners got into the chain.
    pub poisoned_keys: u64,
    /// Self-adds lowering the external permissions the hostile server's joiners tried.
    pub lock_attempts: u64,
    /// Full pages of junk the hostile server answered to broadcast polls (issue 30 item 8).
    pub junk_pages: u64,
    /// Blocks the hostile server preceded with junk broadcasts under their participants' ids
    /// (issue 30 item 7).
    pub member_junk: u64,
    /// `left` records the hostile server held back and delivered after their subject rejoined
    /// (issue 30 items 5 and 6).
    pub late_notices: u64,
    /// False `left` records about members still in the call the hostile server pushed.
    pub false_notices: u64,
    /// Members the hostile server dropped from the media call telling no one until they
    /// rejoined.
    pub silent_drops: u64,
    /// Flood waits the server imposed.
    pub flood_waits: u64,
    /// Members dropped from the media call by the server.
    pub media_drops: u64,
    /// Decryptions the outsider tried on members' packets and messages (all must fail).
    pub outsider_attempts: u64,
    /// Frames members read by their SSRC through their session's source map.
    pub frames_by_source: u64,
    /// Frames on an SSRC a member's map did not know yet (looked up; read by user id meanwhile).
    pub unknown_source_frames: u64,
    /// Frames on an SSRC a member's map gave to someone else (an SSRC reused by a new
    /// participation whose record the member missed).
    pub stale_source_frames: u64,
    /// `getGroupParticipants` lookups the members sent.
    pub lookups: u64,
    /// Runs that ended with the call locked by a poisoned entry no member was left to remove
    /// (the protocol's own dead end, issue 30 item 1; see `ServerSetup`'s hostile joiners).
    pub locked_calls: u64,
    /// H.264 blackouts reported
    /// ([`SessionEvent::VideoBlackout`](crate::session::SessionEvent::VideoBlackout), summed over
    /// members).
    pub video_blackouts: u64,
    /// H.264 frames dropped because the epochs blacked them out.
    pub h264_blackout_drops: u64,
    /// The longest a member's H.264 video stayed blacked out, ms.
    pub longest_blackout_ms: u64,
    /// Virtual time at the end, ms.
    pub virtual_ms: u64,
}

/// A violated invariant: everything needed to reproduce and read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The seed of the run.
    pub seed: u64,
    /// The step at which the invariant failed.
    pub step: u64,
    /// Which invariant, and how.
    pub invariant: String,
    /// The last steps, oldest first.
    pub transcript: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invariant violated at step {} (seed {}): {}", self.step, self.seed, self.invariant)?;
        writeln!(f, "last steps:")?;
        for line in &self.transcript {
            writeln!(f, "  {line}")?;
        }
        write!(f, "reproduce: confchain simulate --seed {} (same members, steps, faults and server)", self.seed)
    }
}

impl std::error::Error for Failure {}

/// Most requests one member may send in one second of virtual time: far above what the actions
/// and timers need, far below a hot loop (issue 23 item 6).
pub const MAX_REQUESTS_PER_SECOND: usize = 100;
/// Most broadcast polls (sub-chain 1) one member may send in one second of virtual time: gap
/// and full-page polls keep 1 s from the last poll of the sub-chain, whatever the page held
/// (issue 30 item 8: a server answering every broadcast poll with a full page of new junk must
/// not be polled again at once). The session's own pace keeps every member under
/// [`MAX_REQUESTS_PER_SECOND`], far above what a hot loop of broadcast polls alone would show; a
/// rejoin's first poll adds one.
pub const MAX_BROADCAST_POLLS_PER_SECOND: usize = 3;
/// How soon a round completes once every participant of the tip is caught up, in a run whose
/// network and server let it (delays and reordering only, no hostility but junk in sub-chain 1:
/// issue 30 item 7), ms.
pub const ROUND_BOUND_MS: u64 = 5_000;
/// A request the server never answered must be given up within this long (its deadline).
pub const REQUEST_DEADLINE_BOUND_MS: u64 = 90_000;
/// Users who left the media call are pruned from the chain within this long of there being a
/// live member able to do it (issue 24 item 4).
pub const PRUNE_BOUND_MS: u64 = 60_000;
/// How soon an entry whose key no one can use must leave the chain once a caught-up member may
/// remove it (issue 30 item 1), ms.
pub const POISON_BOUND_MS: u64 = 60_000;
/// A member whose session left is out of the media call within this long (issue 24 item 3).
pub const GHOST_BOUND_MS: u64 = 60_000;
/// After the call is discarded, every member is out of it within this long (issue 24 item 2).
pub const DISCARD_BOUND_MS: u64 = 30_000;

/// Runs one simulation: the faulty phase, then a calm phase that must converge.
pub fn run(config: &SimConfig) -> Result<Report, Failure> {
    run_with_progress(config, |_, _| {})
}

/// [`run`], calling `progress(step, report so far)` every 100 steps of the faulty phase.
pub fn run_with_progress(config: &SimConfig, mut progress: impl FnMut(u64, &Report)) -> Result<Report, Failure> {
    // Every member checks every signature; each distinct check is computed once.
    let _memo = crate::crypto::memo::enable();
    let mut w = World::new(config);
    for step in 0..config.steps {
        w.step = step;
        w.act()?;
        w.advance(50)?;
        w.check()?;
        if step % 100 == 0 {
            w.report.blocks = w.server.server().blocks().len() as u64;
            progress(step, &w.report);
        }
    }
    w.calm(config.members)?;
    if config.server.is_real() {
        w.discard()?;
    }
    w.report.virtual_ms = w.now;
    Ok(w.report)
}
