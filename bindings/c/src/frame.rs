//! The media frame layer as Telegram's apps (tgcalls) write it, on the call and on the media
//! handles: the codec's clear prefix, H.264 start codes widened and ciphertexts with a start code
//! re-encrypted, the Opus level trailer. Frames are written into the caller's buffer (no
//! allocation per frame), and the pure helpers give what tgcalls passes to `call_encrypt`.
//!
//! Codecs are the `CONFCHAIN_CODEC_*` constants (`confchain_frame_codec_from_payload_type` maps
//! an RTP payload type as tgcalls does). A frame is dropped with `CONFCHAIN_KIND_FRAME_START_CODE`
//! (every H.264 attempt put a start code in the ciphertext) or `CONFCHAIN_KIND_FRAME_EMPTY` (a
//! decrypted frame with an empty plaintext), besides every error of `confchain_call_encrypt` /
//! `confchain_call_decrypt`; on error nothing is written to the output buffer.

use engine::frame::{self, AudioLevel, Codec, FrameDecryptor, FrameEncryptor, ReceivedFrame, SentFrame};

use crate::call::confchain_call;
use crate::error::{guard, invalid, OrCode};
use crate::keys::confchain_rng;
use crate::media::{
    confchain_media_decryptor, confchain_media_encryptor, confchain_media_max_packet_size, Sink, SCRATCH,
};
use crate::memory::{handle, handle_mut, input, out};
use crate::session::{confchain_session, session_call};
use crate::sources::{self, confchain_source, confchain_source_table};

// The constants are literals for cbindgen; a test holds them to the core's.

// Codecs (`codec` arguments).
/// Opus (payload type 111): the frame and a level trailer, encrypted whole.
pub const CONFCHAIN_CODEC_OPUS: i32 = 0;
/// VP8 (payload type 100): 10 bytes in clear on a key frame, 1 on a delta frame.
pub const CONFCHAIN_CODEC_VP8: i32 = 1;
/// H.264 (payload type 104): start codes, NAL headers, SPS/PPS/SEI and the first slice header in
/// clear; no start code in the ciphertext.
pub const CONFCHAIN_CODEC_H264: i32 = 2;
/// Any other payload type (VP9, AV1, ...): the audio path on send, the raw path on receive.
pub const CONFCHAIN_CODEC_UNKNOWN: i32 = 3;

/// tgcalls' RTP payload type of Opus.
pub const CONFCHAIN_PAYLOAD_TYPE_OPUS: u8 = 111;
/// tgcalls' RTP payload type of VP8.
pub const CONFCHAIN_PAYLOAD_TYPE_VP8: u8 = 100;
/// tgcalls' RTP payload type of VP9 (an unknown codec to the frame layer).
pub const CONFCHAIN_PAYLOAD_TYPE_VP9: u8 = 102;
/// tgcalls' RTP payload type of H.264.
pub const CONFCHAIN_PAYLOAD_TYPE_H264: u8 = 104;

/// The channel of camera and microphone (every app).
pub const CONFCHAIN_CHANNEL_MAIN: i32 = 0;
/// The screencast channel of iOS and TDLib clients (Desktop and Android use 0).
pub const CONFCHAIN_CHANNEL_SCREENCAST: i32 = 1;
/// H.264 encryptions before a frame is dropped.
pub const CONFCHAIN_FRAME_MAX_ATTEMPTS: u32 = 4;

/// What an encryption did.
#[repr(C)]
pub struct confchain_sent_frame {
    /// Bytes of the (widened) frame left in clear at the packet's start.
    pub clear_prefix: usize,
    /// Encryptions made, at least 1; more when H.264 ciphertexts with a start code were discarded
    /// (each consumed a sequence number).
    pub attempts: u32,
}

/// What a decryption found.
#[repr(C)]
pub struct confchain_received_frame {
    /// 1 when an Opus frame carried the level trailer (then `level` and `speech` are set), else 0.
    pub has_level: u8,
    /// The sender's audio level: 0 (loud) ..= 127 (silent).
    pub level: u8,
    /// 1 when the sender's voice activity detection saw speech.
    pub speech: u8,
}

pub(crate) fn codec(c: i32) -> Result<Codec, i32> {
    match c {
        CONFCHAIN_CODEC_OPUS => Ok(Codec::Opus),
        CONFCHAIN_CODEC_VP8 => Ok(Codec::Vp8),
        CONFCHAIN_CODEC_H264 => Ok(Codec::H264),
        CONFCHAIN_CODEC_UNKNOWN => Ok(Codec::Unknown),
        _ => Err(invalid(&format!("codec {c} is not a CONFCHAIN_CODEC_* constant"))),
    }
}

fn codec_constant(c: Codec) -> i32 {
    match c {
        Codec::Opus => CONFCHAIN_CODEC_OPUS,
        Codec::Vp8 => CONFCHAIN_CODEC_VP8,
        Codec::H264 => CONFCHAIN_CODEC_H264,
        _ => CONFCHAIN_CODEC_UNKNOWN,
    }
}

/// The level as tgcalls takes it: only the low 7 bits are sent (`level & 0x7f`).
fn level(level: u8, speech: u8) -> AudioLevel {
    AudioLevel { level, speech: speech != 0 }
}

unsafe fn write_sent(info: *mut confchain_sent_frame, s: &SentFrame) {
    if let Some(info) = info.as_mut() {
        *info = confchain_sent_frame { clear_prefix: s.clear_prefix, attempts: s.attempts };
    }
}

unsafe fn write_received(info: *mut confchain_received_frame, r: &ReceivedFrame) {
    if let Some(info) = info.as_mut() {
        *info = match r.level {
            Some(l) => confchain_received_frame { has_level: 1, level: l.level, speech: u8::from(l.speech) },
            None => confchain_received_frame { has_level: 0, level: 0, speech: 0 },
        };
    }
}

/// The `CONFCHAIN_CODEC_*` of an RTP payload type as tgcalls maps it: 111 Opus, 100 VP8,
/// 104 H.264, anything else `CONFCHAIN_CODEC_UNKNOWN`.
#[no_mangle]
pub extern "C" fn confchain_frame_codec_from_payload_type(payload_type: u8) -> i32 {
    codec_constant(Codec::from_payload_type(payload_type))
}

/// The name of a codec: "opus", "vp8", "h264" or "unknown" (static, never freed).
#[no_mangle]
pub extern "C" fn confchain_frame_codec_name(codec: i32) -> *const std::ffi::c_char {
    let name: &'static std::ffi::CStr = match codec {
        CONFCHAIN_CODEC_OPUS => c"opus",
        CONFCHAIN_CODEC_VP8 => c"vp8",
        CONFCHAIN_CODEC_H264 => c"h264",
        _ => c"unknown",
    };
    name.as_ptr()
}

/// The largest plaintext a frame of `frame_len` bytes becomes (H.264 start codes widened, the Opus
/// trailer): a buffer this large always fits `confchain_frame_plaintext`.
#[no_mangle]
pub extern "C" fn confchain_frame_max_plaintext_size(frame_len: usize) -> usize {
    // A start code takes 3 bytes and the next one is searched after it: at most one widening per
    // 3 bytes; the trailer is 2.
    frame_len.saturating_add(frame_len / 3).saturating_add(2)
}

/// The largest packet a frame of `frame_len` bytes can become: the output buffer of the
/// `*_encrypt_frame` functions must hold this much.
#[no_mangle]
pub extern "C" fn confchain_frame_max_packet_size(frame_len: usize) -> usize {
    confchain_media_max_packet_size(confchain_frame_max_plaintext_size(frame_len))
}

/// The largest frame a packet of `packet_len` bytes can deliver: the output buffer of the
/// `*_decrypt_frame` functions must hold this much (the packet's own length always does).
#[no_mangle]
pub extern "C" fn confchain_frame_max_frame_size(packet_len: usize) -> usize {
    crate::media::confchain_media_max_frame_size(packet_len)
}

/// What tgcalls passes to `call_encrypt` for a frame (no keys involved): the data into `out_buf`
/// of capacity `out_cap` (at least `confchain_frame_max_plaintext_size(frame_len)`), its size
/// into `*out_len` and the clear prefix size into `*out_clear_prefix`. `level` is 0 (loud) ..= 127
/// (silent; only the low 7 bits are sent, as tgcalls does) and `speech` 0 or 1; both only go into the Opus (and unknown codec) trailer.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_frame_plaintext(
    codec: i32,
    frame: *const u8,
    frame_len: usize,
    level: u8,
    speech: u8,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    out_clear_prefix: *mut usize,
) -> i32 {
    guard(|| {
        let prefix_out = out(out_clear_prefix)?;
        let sink = Sink::new(out_buf, out_cap, out_len, confchain_frame_max_plaintext_size(frame_len))?;
        let (codec, level, frame) = (self::codec(codec)?, self::level(level, speech), input(frame, frame_len)?);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            let prefix = frame::plaintext_into(codec, frame, level, &mut s);
            sink.deliver(&s)?;
            *prefix_out = prefix;
            Ok(())
        })
    })
}

/// tgcalls' ValidateEncryptedFrame: `*out_valid` = 0 when an H.264 packet carries a NAL start
/// code after its clear prefix of `clear_prefix` bytes (WebRTC's packetizer would split it),
/// else 1 (always 1 for the other codecs).
#[no_mangle]
pub unsafe extern "C" fn confchain_frame_is_valid_encrypted(
    codec: i32,
    packet: *const u8,
    packet_len: usize,
    clear_prefix: usize,
    out_valid: *mut u8,
) -> i32 {
    guard(|| {
        let valid = out(out_valid)?;
        let (codec, packet) = (self::codec(codec)?, input(packet, packet_len)?);
        *valid = u8::from(frame::is_valid_encrypted(codec, packet, clear_prefix));
        Ok(())
    })
}

/// The receive side after a bare decryption, in place: strips the Opus trailer from the `len`
/// bytes at `data` (`*out_len` gets the frame's new length) and reports its level into `*info`
/// (may be null). Video frames are left as they are.
#[no_mangle]
pub unsafe extern "C" fn confchain_frame_strip_received(
    codec: i32,
    data: *mut u8,
    len: usize,
    out_len: *mut usize,
    info: *mut confchain_received_frame,
) -> i32 {
    guard(|| {
        let new_len = out(out_len)?;
        let codec = self::codec(codec)?;
        let plain = input(data.cast_const(), len)?;
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            s.extend_from_slice(plain);
            let level = frame::strip_received(codec, &mut s);
            // Stripping only shortens: the frame is the first `s.len()` bytes of the input.
            *new_len = s.len().min(len);
            write_received(info, &ReceivedFrame { level });
            zeroize::Zeroize::zeroize(&mut *s);
            Ok(())
        })
    })
}

/// The trailer's level byte: `speech << 7 | level & 0x7f`.
#[no_mangle]
pub extern "C" fn confchain_audio_level_to_byte(level: u8, speech: u8) -> u8 {
    AudioLevel { level, speech: speech != 0 }.to_byte()
}

/// The level (0 loud ..= 127 silent) of a linear amplitude as tgcalls computes it
/// (`-20 log10(linear)` clamped; 127 for 0 or less).
#[no_mangle]
pub extern "C" fn confchain_audio_level_from_linear(linear: f32) -> u8 {
    AudioLevel::from_linear(linear, false).level
}

/// The level of a 16-bit peak amplitude, as tgcalls computes it (`peak / 4000` as linear).
#[no_mangle]
pub extern "C" fn confchain_audio_level_from_peak(peak: u16) -> u8 {
    AudioLevel::from_peak(peak, false).level
}

/// The linear amplitude tgcalls reports for a received level: `10^(-level/20)`.
#[no_mangle]
pub extern "C" fn confchain_audio_level_to_linear(level: u8) -> f32 {
    AudioLevel { level: level & 0x7f, speech: false }.to_linear()
}

/// Whose frame a decryption opens: a member's, or the member a table maps an RTP SSRC to (who
/// it was goes to `*out_source`, when not null).
pub(crate) enum Sender {
    /// A user id.
    User(i64),
    /// An SSRC of a table, and where to write its sender.
    Source(*const confchain_source_table, u32, *mut confchain_source),
}

/// Every `confchain_*_encrypt_frame`: the output checked first, then the arguments, then the
/// handle (`keys`), and the packet written into the caller's buffer through the thread's
/// scratch buffer.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn encrypt_frame<K: FrameEncryptor>(
    keys: impl FnOnce() -> Result<K, i32>,
    channel_id: i32,
    codec: i32,
    (level, speech): (u8, u8),
    (frame, frame_len): (*const u8, usize),
    now_ms: u64,
    (out_buf, out_cap, out_len): (*mut u8, usize, *mut usize),
    info: *mut confchain_sent_frame,
) -> i32 {
    guard(|| {
        let sink = Sink::new(out_buf, out_cap, out_len, confchain_frame_max_packet_size(frame_len))?;
        let (codec, level, frame) = (self::codec(codec)?, self::level(level, speech), input(frame, frame_len)?);
        let keys = keys()?;
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            let sent = keys.encrypt_frame_into(channel_id, codec, frame, level, now_ms, &mut s).or_code()?;
            sink.deliver(&s)?;
            write_sent(info, &sent);
            Ok(())
        })
    })
}

/// Every `confchain_*_decrypt_frame` and `_decrypt_frame_from_source`: the output checked first
/// (before the packet is decrypted or marked as seen), then the arguments and the handle
/// (`keys`); for a source, its sender (`SourceMap::decrypt_from`: an unknown SSRC fails before
/// any key is tried, a frame the sender's key does not open reports the mapping as possibly
/// stale). The frame does not stay behind in the thread's scratch buffer.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn decrypt_frame<K: FrameDecryptor>(
    keys: impl FnOnce() -> Result<K, i32>,
    sender: Sender,
    codec: i32,
    (packet, packet_len): (*const u8, usize),
    now_ms: u64,
    (out_buf, out_cap, out_len): (*mut u8, usize, *mut usize),
    info: *mut confchain_received_frame,
) -> i32 {
    guard(|| {
        let sink = Sink::new(out_buf, out_cap, out_len, confchain_frame_max_frame_size(packet_len))?;
        let (codec, packet, keys) = (self::codec(codec)?, input(packet, packet_len)?, keys()?);
        let decrypt = |user, s: &mut Vec<u8>| keys.decrypt_frame_into(user, codec, packet, now_ms, s);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            let result = match sender {
                Sender::User(user) => decrypt(user, &mut s).or_code().map(|r| (r, None)),
                Sender::Source(table, ssrc, out_source) => {
                    let map = &sources::table(table)?.map;
                    map.decrypt_from(ssrc, |user| decrypt(user, &mut s))
                        .or_code()
                        .map(|(source, r)| (r, Some((out_source, source))))
                }
            }
            .and_then(|(r, source)| {
                sink.deliver(&s)?;
                write_received(info, &r);
                if let Some((out_source, source)) = source {
                    sources::write_source(out_source, source);
                }
                Ok(())
            });
            zeroize::Zeroize::zeroize(&mut *s);
            result
        })
    })
}

/// Encrypts a media frame as tgcalls does (codec prefix, H.264 start codes widened and
/// ciphertexts with a start code re-encrypted, Opus trailer with `level` 0..=127 and `speech`)
/// into `out_buf` of capacity `out_cap`, at least `confchain_frame_max_packet_size(frame_len)`;
/// `*out_len` gets the packet's size and `*info` (may be null) the clear prefix and attempts. A
/// smaller buffer or a null `out_len` is refused before a sequence number is drawn.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_call_encrypt_frame(
    call: *mut confchain_call,
    channel_id: i32,
    codec: i32,
    level: u8,
    speech: u8,
    frame: *const u8,
    frame_len: usize,
    now_ms: u64,
    rng: *mut confchain_rng,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    info: *mut confchain_sent_frame,
) -> i32 {
    let keys = || Ok((&mut handle_mut(call)?.0, &mut handle_mut(rng)?.0));
    encrypt_frame(
        keys,
        channel_id,
        codec,
        (level, speech),
        (frame, frame_len),
        now_ms,
        (out_buf, out_cap, out_len),
        info,
    )
}

/// Decrypts a media frame from `sender_user_id` into `out_buf` of capacity `out_cap`, at least
/// `confchain_frame_max_frame_size(packet_len)` (the packet's length always is): the Opus trailer
/// is stripped and reported in `*info` (may be null). `*out_len` gets the frame's size. A smaller
/// buffer or a null `out_len` is refused before the packet is decrypted or marked as seen.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_call_decrypt_frame(
    call: *mut confchain_call,
    sender_user_id: i64,
    codec: i32,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    info: *mut confchain_received_frame,
) -> i32 {
    let keys = || Ok(&mut handle_mut(call)?.0);
    let sender = Sender::User(sender_user_id);
    decrypt_frame(keys, sender, codec, (packet, packet_len), now_ms, (out_buf, out_cap, out_len), info)
}

/// `confchain_call_encrypt_frame` with the session's call.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_session_encrypt_frame(
    session: *mut confchain_session,
    channel_id: i32,
    codec: i32,
    level: u8,
    speech: u8,
    frame: *const u8,
    frame_len: usize,
    now_ms: u64,
    rng: *mut confchain_rng,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    info: *mut confchain_sent_frame,
) -> i32 {
    let keys = || Ok((session_call(handle_mut(session)?)?, &mut handle_mut(rng)?.0));
    encrypt_frame(
        keys,
        channel_id,
        codec,
        (level, speech),
        (frame, frame_len),
        now_ms,
        (out_buf, out_cap, out_len),
        info,
    )
}

/// `confchain_call_decrypt_frame` with the session's call.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_session_decrypt_frame(
    session: *mut confchain_session,
    sender_user_id: i64,
    codec: i32,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    info: *mut confchain_received_frame,
) -> i32 {
    let keys = || session_call(handle_mut(session)?);
    let sender = Sender::User(sender_user_id);
    decrypt_frame(keys, sender, codec, (packet, packet_len), now_ms, (out_buf, out_cap, out_len), info)
}

/// `confchain_call_encrypt_frame` on a media encryptor: thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_media_encrypt_frame(
    encryptor: *const confchain_media_encryptor,
    channel_id: i32,
    codec: i32,
    level: u8,
    speech: u8,
    frame: *const u8,
    frame_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    info: *mut confchain_sent_frame,
) -> i32 {
    let keys = || Ok(&handle(encryptor)?.0);
    encrypt_frame(
        keys,
        channel_id,
        codec,
        (level, speech),
        (frame, frame_len),
        now_ms,
        (out_buf, out_cap, out_len),
        info,
    )
}

/// `confchain_call_decrypt_frame` on a media decryptor: thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_media_decrypt_frame(
    decryptor: *const confchain_media_decryptor,
    sender_user_id: i64,
    codec: i32,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    info: *mut confchain_received_frame,
) -> i32 {
    let keys = || Ok(&handle(decryptor)?.0);
    let sender = Sender::User(sender_user_id);
    decrypt_frame(keys, sender, codec, (packet, packet_len), now_ms, (out_buf, out_cap, out_len), info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_the_cores() {
        assert_eq!(
            [
                CONFCHAIN_PAYLOAD_TYPE_OPUS,
                CONFCHAIN_PAYLOAD_TYPE_VP8,
                CONFCHAIN_PAYLOAD_TYPE_VP9,
                CONFCHAIN_PAYLOAD_TYPE_H264
            ],
            [frame::payload_type::OPUS, frame::payload_type::VP8, frame::payload_type::VP9, frame::payload_type::H264]
        );
        assert_eq!(
            (CONFCHAIN_CHANNEL_MAIN, CONFCHAIN_CHANNEL_SCREENCAST),
            (frame::CHANNEL_MAIN, frame::CHANNEL_SCREENCAST)
        );
        assert_eq!(CONFCHAIN_FRAME_MAX_ATTEMPTS, frame::MAX_ATTEMPTS);
        for pt in 0..=255u8 {
            let c = confchain_frame_codec_from_payload_type(pt);
            assert_eq!(codec(c).unwrap(), Codec::from_payload_type(pt));
        }
    }

    /// The plaintext bound holds for the worst H.264 frame (a start code every 3 bytes, all
    /// widened) and for Opus (the trailer).
    #[test]
    fn plaintext_bound_holds() {
        let mut out = Vec::new();
        for len in 0..64 {
            let frame: Vec<u8> = (0..len).map(|i| if i % 3 == 2 { 1 } else { 0 }).collect();
            for c in [Codec::Opus, Codec::Vp8, Codec::H264, Codec::Unknown] {
                out.clear();
                frame::plaintext_into(c, &frame, AudioLevel::default(), &mut out);
                assert!(out.len() <= confchain_frame_max_plaintext_size(len), "{c:?} {len}");
            }
        }
    }
}
