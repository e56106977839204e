//! confchain: the sans-IO core of Telegram's end-to-end encrypted conference calls
//! ("group calls v2"), interoperable byte for byte with the reference implementation `tde2e`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod call;
pub mod chain;
pub mod crypto;
pub mod error;
pub mod limits;
pub mod packet;
pub mod tl;
pub mod verification;
pub mod wire;

pub use call::{Call, Event};
pub use chain::Chain;
pub use crypto::{PrivateKey, PublicKey, Secret};
pub use error::{Error, ErrorKind, Result};
pub use wire::{Block, Broadcast, Change, GroupParticipant, GroupState, SharedKey, StateProof};
