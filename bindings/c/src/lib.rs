//! C ABI of confchain, mirroring the call section of the reference's `e2e_api.h`.
//!
//! Conventions (see `include/confchain.h`):
//! * Every function returns `int32_t`: 0 on success, else the reference's numeric error code
//!   (e.g. 204 for `INVALID_BLOCK__HEIGHT_MISMATCH`; 100 `UNKNOWN_ERROR` for every error the
//!   reference reports without a code). `confchain_last_error` copies the message of the calling
//!   thread's last error and `confchain_last_error_kind` its finer kind (`CONFCHAIN_KIND_REPLAY`,
//!   `CONFCHAIN_KIND_PARSE`, ...), which tells apart what the numeric code cannot.
//! * Thread safety: handles are not internally locked. A handle may be used from any thread, but
//!   not from two threads at once (guard it with a mutex, or give each thread its own); distinct
//!   handles are independent. The last error is per thread.
//! * Inputs are `(pointer, length)` pairs and stay owned by the caller. Outputs of variable size are
//!   `confchain_bytes`, allocated here and released with `confchain_bytes_free`; handles are
//!   released with their `_free` function. Null handles and pointers are refused (kind
//!   `CONFCHAIN_KIND_INVALID_INPUT`). Arrays hold at most `CONFCHAIN_MAX_LIST_LEN` items.
//! * Outputs are checked before anything is consumed: a null output pointer, or a caller buffer
//!   smaller than the bound of its function (`confchain_media_max_packet_size`,
//!   `confchain_media_max_frame_size`, and for media frames `confchain_frame_max_packet_size`,
//!   `confchain_frame_max_frame_size`), is refused before a sequence number is drawn, a packet
//!   is marked as seen or a queued message or event is taken, so the retry succeeds.
//! * Time is passed as milliseconds of the caller's monotonic clock; randomness comes from a
//!   `confchain_rng` the caller seeds with 32 bytes from its own CSPRNG. confchain itself never
//!   reads a clock or OS randomness.
//! * Media frames (`confchain_*_encrypt_frame`, `confchain_*_decrypt_frame`) are laid out as
//!   Telegram's apps (tgcalls) do: see the frame section of the header; a C++ program built on
//!   tgcalls gets its `e2eEncryptDecrypt` callback from `include/confchain_tgcalls.hpp`.
//! * No panic crosses the boundary: every entry point catches unwinding and reports code 100.
//!
//! This crate is the one place where confchain uses `unsafe`: to read the caller's pointers (and to
//! wipe the RNG's state in place).
#![allow(clippy::missing_safety_doc, non_camel_case_types)]

// One module per concern, in the order of the generated header (cbindgen reads them in this
// order: keep it).
pub mod error;

pub mod memory;

pub mod keys;

pub mod call;

pub mod p2p;

pub mod session;

pub mod media;

pub mod frame;

pub mod sources;
