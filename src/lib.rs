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
//! ([`Call::poll_event`]). Blocks to send are built by [`build_zero_block`],
//! [`UnverifiedTip::build_self_add`] (a join, on the server's tip: the one state confchain takes on
//! trust, and only where the API says so) and the `build_*` methods of [`Call`]; they come out as
//! [`PlainBlock`]s (what the API methods take), while everything the server returns is server
//! form (`&[u8]`). Time (`now`, in milliseconds) and randomness (`&mut impl CryptoRngCore`) are
//! always passed in. One-to-one calls are in [`p2p`]. The protocol and every rule are described in
//! `SPEC.md`; the README has a complete example (compiled as a doctest).
//!
//! The known-answer internals (TL codec, crypto compositions, packet codec, the verification
//! state machine) are public only with the `hazmat` feature, for conformance tests and fuzzing:
//! with them a caller could pick sequence numbers or skip replay checks. The test doubles (the
//! server model `server`, its hostile variant and the simulator `sim`) are in the build only
//! with the `testkit` feature.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::arithmetic_side_effects
    )
)]

/// Declares modules that are public only with the `hazmat` feature.
macro_rules! hazmat_modules {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[cfg(feature = "hazmat")]
        pub mod $name;
        #[cfg(not(feature = "hazmat"))]
        mod $name;
    )*};
}

hazmat_modules! {
    chain;
    crypto;
    packet;
    tl;
    verification;
    replay;
}

pub mod api;
mod call;
mod emoji;
mod epochs;
mod error;
pub mod frame;
pub mod limits;
mod media;
pub mod p2p;
#[cfg(feature = "testkit")]
pub mod server;
pub mod session;
#[cfg(feature = "testkit")]
pub mod sim;
pub mod sources;
pub mod wire;

pub use call::{Call, CallEvent};
pub use chain::{build_zero_block, Chain, GroupKey, UnverifiedTip};
pub use crypto::{PrivateKey, PublicKey, Secret};
pub use emoji::{emoji_table, emojis_from_hash};
pub use error::{Error, ErrorKind, Result};
pub use media::{MediaDecryptor, MediaEncryptor};
pub use verification::{verification_words, VerificationPhase, VerificationResult};
pub use wire::{
    decode_any, to_server_form, Block, Broadcast, BroadcastPayload, Change, Form, GroupParticipant, GroupState,
    KeyHeaders, Object, Permissions, PlainBlock, ServerBlock, SharedKey, StateProof,
};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
