//! Explicit size limits. Every one accepts everything the reference produces in practice (and every
//! reference vector); anything larger is refused with [`crate::ErrorKind::LimitExceeded`] before
//! any work or allocation proportional to it.

/// Largest encoded block accepted (plain or server form).
pub const MAX_BLOCK_SIZE: usize = 8 << 20;
/// Most participants in a group state (and recipients of a shared key).
pub const MAX_PARTICIPANTS: usize = 10_000;
/// Most changes in one block.
pub const MAX_CHANGES: usize = 1_024;
