//! confchain: the sans-IO core of Telegram's end-to-end encrypted conference calls
//! ("group calls v2"), interoperable byte for byte with the reference implementation `tde2e`.
//!
//! ```text
//!  bytes from the server ─▶ wire (decode) ─▶ chain (validate, apply) ─▶ call (epochs, packets)
//!                                                                        └─▶ verification (emojis)
//! ```
//!
//! Start with [`Call`]: create it from the last block of a call, feed it blocks
//! ([`Call::apply_block`]) and broadcasts ([`Call::receive_broadcast`]), encrypt and decrypt
//! packets, and pull what it wants sent ([`Call::poll_outbound`]) and what happened
//! ([`Call::poll_event`]). Blocks to send are built by [`chain::build_zero_block`],
//! [`Chain::build_self_add`] and the `build_*` methods of [`Call`]. Time (`now`, in milliseconds)
//! and randomness (`&mut impl CryptoRngCore`) are always passed in. The protocol and every rule
//! are described in `SPEC.md`; the README has a complete example (compiled as a doctest).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::unreachable)
)]

pub mod call;
pub mod chain;
pub mod crypto;
pub mod error;
pub mod limits;
pub mod p2p;
pub mod packet;
pub mod tl;
pub mod verification;
pub mod wire;

pub use call::{Call, Event};
pub use chain::Chain;
pub use crypto::{PrivateKey, PublicKey, Secret};
pub use error::{Error, ErrorKind, Result};
pub use wire::{Block, Broadcast, Change, GroupParticipant, GroupState, SharedKey, StateProof};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
