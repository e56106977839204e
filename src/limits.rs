//! Every limit of confchain, in one place, each with the reason it exists.
//!
//! Two kinds of limit live here. Limits of the protocol (channel ids, epochs per packet, the
//! clear prefix, the grace period, the replay window) are the reference's own rules. Limits of
//! confchain's memory (held broadcasts, cached keys) bound what a hostile peer can make a call
//! keep; none of them can refuse a block, packet or broadcast the official clients accept
//! (SPEC.md §10). Parsing needs no count limit at all: every allocation is bounded by the bytes
//! of the input (a vector is only pre-allocated for as many elements as the remaining bytes can
//! hold at the element's minimum encoded size).

/// Largest block accepted (plain or server form): 2^24 - 1 bytes, the largest value of a TL
/// `bytes` field (a one-byte 254 marker and a 24-bit length), which is how every API method and
/// update carries a block. Nothing larger can reach a client through Telegram's API.
pub const MAX_BLOCK_SIZE: usize = (1 << 24) - 1;

/// Highest channel id (channels are 0..=1023, as in the reference).
pub const MAX_CHANNEL: i32 = 1023;
/// Most epochs a packet may list, and a call keeps active (the reference's `MAX_ACTIVE_EPOCHS`).
pub const MAX_EPOCHS: usize = 15;
/// Largest clear prefix of a packet (exclusive bound, as in the reference).
pub const MAX_CLEAR_PREFIX: usize = 1 << 16;

/// How long a replaced epoch stays usable after the block that replaced it, in milliseconds. The
/// reference forgets it once `forget_at <= now`: at exactly this many milliseconds it is gone.
pub const EPOCH_GRACE_MS: u64 = 10_000;
/// Sequence numbers remembered per (sender key, channel), as in the reference.
pub const REPLAY_WINDOW: usize = 1024;

/// How many heights above the current block emoji-verification broadcasts are held for. Only a
/// broadcast for a block we have not applied yet can still matter, and the server relays the
/// blocks a few heights at most ahead of their broadcasts; anything further is dropped (a
/// broadcast for a skipped height could never be processed anyway).
pub const HELD_BROADCAST_HEIGHTS: i32 = 16;
/// Most broadcasts held per (height, user id, commit or reveal): a member's genuine broadcast is
/// still held when junk claiming the same user id arrived first.
pub const HELD_BROADCASTS_PER_SENDER: usize = 4;
/// Most broadcasts held for future heights in total.
pub const MAX_HELD_BROADCASTS: usize = 4_096;

/// Most decompressed Ed25519 keys of packet senders a call caches.
pub const MAX_CACHED_KEYS: usize = 4_096;
/// Most of those keys a call keeps verification tables for (40 KiB each, SPEC.md §6.3): 512, 32 per shard of
/// the key cache, so a call at the size limit (200 members) has a table for every member even when
/// the members' keys spread unevenly over the 16 shards, and a hostile chain listing thousands of
/// senders costs at most ~21 MB of tables. Senders beyond it are verified without tables (same
/// verdicts, the plain speed).
pub const MAX_PREPARED_KEYS: usize = 512;

/// Most source groups kept per `groupCallParticipantVideo` (the official apps send one `SIM`
/// group and one `FID` pair per simulcast layer: 4 at most); more are read and ignored.
pub const MAX_SOURCE_GROUPS: usize = 8;
/// Most SSRCs kept per source group (a `SIM` group lists one per layer, 3 at most; a `FID`
/// group 2); more are read and ignored.
pub const MAX_GROUP_SOURCES: usize = 8;
/// Most SSRCs the source table ([`crate::sources`]) maps to one participant: audio, a camera's
/// 3 layers with their retransmission streams, a screencast's pair and its audio make 10.
/// Further SSRCs of a record are ignored.
pub const MAX_SOURCES_PER_PARTICIPANT: usize = 16;
/// Most participants a source table holds by default ([`crate::sources::SourceTable::new`]): five
/// times the default call size limit (app config `conference_call_size_limit`, 200). A session's
/// table follows its own limit (`SessionConfig::max_source_participants`, never fewer).
/// Past it the participant updated least recently is forgotten (its SSRCs become unknown and are
/// looked up again if they send).
pub const MAX_SOURCE_PARTICIPANTS: usize = 1_000;
/// Most SSRCs asked about in one `phone.getGroupParticipants`.
pub const MAX_LOOKUP_BATCH: usize = 32;
/// Most unknown SSRCs waiting for a lookup (queued or asked about); more are refused at once
/// (`Unresolved { reason: PendingFull }`) and asked about when they send again.
pub const MAX_PENDING_LOOKUPS: usize = 128;
/// Shortest time between two `phone.getGroupParticipants`, in milliseconds: at most one lookup
/// a second whatever frames arrive.
pub const LOOKUP_INTERVAL_MS: u64 = 1_000;
/// How long an unknown SSRC waits for its lookup before it is given up, in milliseconds.
pub const LOOKUP_DEADLINE_MS: u64 = 5_000;
/// How long an SSRC that a lookup did not resolve is not asked about again, in milliseconds.
pub const LOOKUP_NEGATIVE_MS: u64 = 10_000;
/// Most SSRCs media threads report as unknown between two drains of the shared map.
pub const MAX_REPORTED_MISSES: usize = 64;
