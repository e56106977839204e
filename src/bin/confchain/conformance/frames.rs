//! The frame checks (`frame.*`): the media frame layer of Telegram's apps (`confchain::frame`,
//! SPEC "Media frames") as a peer implements it. Every case of `vectors/frames/` (made by running
//! tgcalls' own code) through the pure operations, then frames between confchain and the peer in
//! a call, both ways. A deviation is explained by recomputing the expected bytes under each known
//! mistake of an implementation in the field; the same models make `--serve --deviate` deviant.

use std::path::Path;

use confchain::frame::{self, AudioLevel, Codec};
use serde_json::{json, Map, Value};

use super::checks::{self, describe, hex_field, need, ok, Check, Conf, Run, Stop, PEER_USER};
use super::peer::Answer;
use super::{Deviation, Outcome};

// ---------------------------------------------------------------------------------------------
// Known mistakes: their causes, and the bytes each one gives

/// VP8 or H.264 laid out with nothing in clear (tweb).
pub const CAUSE_VIDEO_NO_PREFIX: &str =
    "video sent with no codec prefix: the whole frame is encrypted, nothing stays in clear \
     for the SFU and the receiving depacketizer (tweb)";
/// H.264 with its 3-byte start codes left as they are.
pub const CAUSE_NO_WIDENING: &str = "H.264 3-byte start codes are not widened to 4 bytes (tgcalls before May 2025, \
     Android before its refactor, iOS June-November 2025): the receiving WebRTC rebuilds them as 4, so the \
     authenticated clear prefix no longer matches";
/// ntgcalls' `uint8_t` widening offsets.
pub const CAUSE_WIDEN_UINT8: &str =
    "H.264 start-code widening offsets kept in a uint8: a 3-byte start code past offset \
     255 is widened at the wrong place (ntgcalls)";
/// No `ValidateEncryptedFrame`, no retry.
pub const CAUSE_NO_VALIDATION: &str = "H.264 packets are not checked for a NAL start code after the clear prefix and \
     not re-encrypted (no validation/retry: tgcalls before June 2025, Android before its refactor, tweb)";
/// A start-code search that also finds a code ending at the packet's last byte.
pub const CAUSE_STRICT_SEARCH: &str = "the start-code check also counts a code whose 01 is the packet's last byte \
     (MadelineProto's strpos; WebRTC's scan stops before it): extra attempts, frames dropped that tgcalls sends";
/// The fourth invalid packet sent instead of dropping the frame.
pub const CAUSE_SEND_INVALID: &str =
    "a frame whose 4 encryptions all hold a start code is sent anyway (tgcalls drops it)";
/// A failed encryption retried.
pub const CAUSE_RETRY_FAILURE: &str = "a failed encryption is retried (tgcalls drops the frame at once)";
/// Media in clear.
pub const CAUSE_CLEAR: &str = "media sent in clear when it cannot be encrypted (no active epoch, or the encryption \
     failed; MadelineProto): tgcalls drops the frame";
/// The level byte of the audio trailer.
pub const CAUSE_LEVEL_BYTE: &str = "the audio trailer does not carry the sender's level and speech flag (tweb always \
     writes 01 00, MadelineProto 01 94)";
/// Unknown payload types without the trailer.
pub const CAUSE_UNKNOWN_NO_TRAILER: &str = "payload types tgcalls does not know (VP9, AV1, ...) are encrypted without \
     the audio trailer (MadelineProto); tgcalls appends 01 and the level to them as to Opus";
/// The receiver keeps the Opus trailer.
pub const CAUSE_KEEP_TRAILER: &str =
    "the receiver does not strip the Opus trailer (the decoder gets the 2 trailer bytes, the level is lost)";
/// Always 2 bytes stripped.
pub const CAUSE_STRIP_ALWAYS_2: &str =
    "the receiver strips 2 bytes whatever bit 0 of the flags byte says (tgcalls strips 1 when it is clear)";
/// April 2025's receiver.
pub const CAUSE_STRIP_5: &str = "the receiver strips 5 bytes (tgcalls of April 2025, e87034d)";
/// A trailer stripped from video.
pub const CAUSE_STRIP_VIDEO: &str =
    "the receiver strips a trailer from a payload type that is not Opus (tgcalls delivers those as decrypted)";
/// Undecryptable frames played.
pub const CAUSE_PLAYS_UNDECRYPTABLE: &str =
    "undecryptable frames are played (passed on unchanged instead of dropped; tweb)";
/// Android's refactor on a trailer-only Opus frame.
pub const CAUSE_DROP_TRAILER_ONLY: &str = "an Opus frame that is only its trailer is dropped and its level not \
     reported (Android's refactor c8480176); tgcalls delivers it empty with its level";
/// The level read but not reported.
pub const CAUSE_LEVEL_NOT_REPORTED: &str =
    "the receiver strips the Opus trailer but does not report the level it carries (none, or another)";
/// Levels in f64.
pub const CAUSE_LEVEL_F64: &str =
    "the level is computed in f64 (tgcalls computes 20·log10 and the power of 10 in f32, \
     which differs at the values nearest to 10^(-k/20))";

/// The layouts an implementation in the field gives a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// tgcalls' (confchain's).
    Reference,
    /// tweb: video with no clear prefix.
    VideoNoPrefix,
    /// No start-code widening.
    NoWidening,
    /// ntgcalls: widening offsets in a `uint8_t`.
    WidenUint8,
}

/// What goes into the packet encryption for `frame` under `layout`: `(data, clear prefix)`.
pub fn layout(layout: Layout, codec: Codec, frame: &[u8], level: AudioLevel) -> (Vec<u8>, usize) {
    let mut data = Vec::new();
    let prefix = frame::plaintext_into(codec, frame, level, &mut data);
    match (layout, codec) {
        (Layout::VideoNoPrefix, Codec::Vp8 | Codec::H264) => (frame.to_vec(), 0),
        (Layout::NoWidening, Codec::H264) => {
            let widened = data.len().saturating_sub(frame.len());
            (frame.to_vec(), prefix.saturating_sub(widened).min(frame.len()))
        }
        (Layout::WidenUint8, Codec::H264) => (widen_uint8(frame, &short_start_codes(frame)), prefix),
        _ => (data, prefix),
    }
}

/// The start offsets of the 3-byte start codes tgcalls widens: those of the NALs up to and
/// including the first slice, as WebRTC's scan finds them (a `00 00 01` whose `01` is not the
/// frame's last byte; 4 bytes when a `00` precedes it).
pub fn short_start_codes(frame: &[u8]) -> Vec<usize> {
    let mut codes = Vec::new();
    let mut i = 0usize;
    while i.saturating_add(3) < frame.len() {
        if frame.get(i..i + 3) == Some(&[0, 0, 1][..]) {
            let short = i == 0 || frame.get(i - 1) != Some(&0);
            codes.push((if short { i } else { i - 1 }, i + 3, short));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &(start, payload, short)) in codes.iter().enumerate() {
        if short {
            out.push(start);
        }
        let end = codes.get(k + 1).map_or(frame.len(), |c| c.0);
        if end > payload && matches!(frame.get(payload).map(|b| b & 0x1f), Some(1 | 5)) {
            break;
        }
    }
    out
}

/// ntgcalls' widening (`calculateH264FramePlaintextHeaderSize`): the offsets, and the copy's
/// running offset, are `uint8_t`, so a code past offset 255 is widened at `offset % 256`.
pub fn widen_uint8(frame: &[u8], codes: &[usize]) -> Vec<u8> {
    let n = codes.len();
    let mut out = vec![0u8; frame.len() + n];
    let mut offset = 0usize;
    for (i, &code) in codes.iter().enumerate() {
        let index = code % 256;
        if index > offset {
            if let (Some(dst), Some(src)) = (out.get_mut(offset + i..index + i), frame.get(offset..index)) {
                dst.copy_from_slice(src);
            }
        }
        if let Some(b) = out.get_mut(index + i) {
            *b = 0;
        }
        offset = index;
    }
    if offset < frame.len() {
        if let (Some(dst), Some(src)) = (out.get_mut(offset + n..), frame.get(offset..)) {
            dst.copy_from_slice(src);
        }
    }
    out
}

/// The start-code checks of the implementations in the field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Validation {
    /// tgcalls' `ValidateEncryptedFrame` (confchain's `is_valid_encrypted`).
    Reference,
    /// No check at all.
    None,
    /// A plain substring search that also finds a code ending at the last byte.
    Strict,
}

/// Whether `packet` passes `validation` for `codec`.
pub fn valid(validation: Validation, codec: Codec, packet: &[u8], prefix: usize) -> bool {
    match validation {
        Validation::Reference => frame::is_valid_encrypted(codec, packet, prefix),
        Validation::None => true,
        Validation::Strict => {
            codec != Codec::H264
                || prefix >= packet.len()
                || !packet.get(prefix.saturating_sub(2)..).unwrap_or_default().windows(3).any(|w| w == [0, 0, 1])
        }
    }
}

/// How a sender treats the packet encryption's results.
#[derive(Clone, Copy, Debug)]
pub struct SendRules {
    /// The start-code check.
    pub validation: Validation,
    /// Sends the frame's layout in clear when the encryption fails.
    pub clear_on_failure: bool,
    /// Sends the last packet when every attempt was rejected.
    pub send_invalid: bool,
    /// Retries after a failed encryption.
    pub retry_failure: bool,
}

impl SendRules {
    /// tgcalls'.
    pub const REFERENCE: SendRules = SendRules {
        validation: Validation::Reference,
        clear_on_failure: false,
        send_invalid: false,
        retry_failure: false,
    };
}

/// The send loop over a tgcalls-style callback whose results are `outputs` in turn (empty, or
/// past the end: a failure): how many calls it makes, and the packet sent (`None`: dropped).
pub fn send(
    rules: SendRules,
    codec: Codec,
    data: &[u8],
    prefix: usize,
    outputs: &[Vec<u8>],
) -> (usize, Option<Vec<u8>>) {
    let attempts = if codec == Codec::H264 { frame::MAX_ATTEMPTS as usize } else { 1 };
    let mut last = None;
    for i in 0..attempts {
        let out = outputs.get(i).cloned().unwrap_or_default();
        if out.is_empty() {
            if rules.retry_failure && i + 1 < attempts {
                continue;
            }
            return (i + 1, rules.clear_on_failure.then(|| data.to_vec()));
        }
        if valid(rules.validation, codec, &out, prefix) {
            return (i + 1, Some(out));
        }
        last = Some(out);
    }
    (attempts, if rules.send_invalid { last } else { None })
}

/// The receive rules of the implementations in the field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Receive {
    /// tgcalls'.
    Reference,
    /// Nothing stripped.
    KeepTrailer,
    /// A failed decryption passes the packet on.
    PlayUndecryptable,
    /// Android's refactor: an Opus frame that is only its trailer is dropped, no level.
    DropTrailerOnly,
}

/// What a receiver delivers from `decrypted` (empty: the decryption failed) of `packet`: the
/// frame (`None`: dropped) and the level it reports.
pub fn receive(rule: Receive, codec: Codec, decrypted: &[u8], packet: &[u8]) -> (Option<Vec<u8>>, Option<AudioLevel>) {
    if decrypted.is_empty() {
        return (if rule == Receive::PlayUndecryptable { Some(packet.to_vec()) } else { None }, None);
    }
    let mut out = decrypted.to_vec();
    if rule == Receive::KeepTrailer {
        return (Some(out), None);
    }
    let level = frame::strip_received(codec, &mut out);
    if rule == Receive::DropTrailerOnly && codec == Codec::Opus && out.is_empty() {
        return (None, None);
    }
    (Some(out), level)
}

/// The trailer's level byte from a linear level, computed in f64 (a mistake).
pub fn level_to_byte_f64(linear: f32, speech: bool) -> u8 {
    let x = f64::from(linear);
    let level = if x > 0.0 { (-(20.0 * x.log10())).clamp(0.0, 127.0) as u8 } else { 127 };
    (u8::from(speech) << 7) | level
}

/// The linear level of a trailer byte, computed in f64 then rounded (a mistake).
pub fn level_from_byte_f64(byte: u8) -> f32 {
    10f64.powf(-f64::from(byte & 0x7f) / 20.0) as f32
}

/// Which known mistake gives `(got, got_prefix)` as the layout of `frame`.
fn diagnose_layout(codec: Codec, frame: &[u8], level: AudioLevel, got: &[u8], got_prefix: usize) -> Option<String> {
    for (l, cause) in [
        (Layout::VideoNoPrefix, CAUSE_VIDEO_NO_PREFIX),
        (Layout::WidenUint8, CAUSE_WIDEN_UINT8),
        (Layout::NoWidening, CAUSE_NO_WIDENING),
    ] {
        if layout(l, codec, frame, level) == (got.to_vec(), got_prefix) {
            return Some(cause.into());
        }
    }
    if matches!(codec, Codec::Opus | Codec::Unknown) && got_prefix == 0 {
        if got.len() == frame.len() + 2 && got.starts_with(frame) && got.get(frame.len()) == Some(&1) {
            return Some(CAUSE_LEVEL_BYTE.into());
        }
        if codec == Codec::Unknown && got == frame {
            return Some(CAUSE_UNKNOWN_NO_TRAILER.into());
        }
    }
    None
}

/// Which known mistake gives `got` (calls, packet sent) from the outputs.
fn diagnose_send(
    codec: Codec,
    data: &[u8],
    prefix: usize,
    outputs: &[Vec<u8>],
    got: &(usize, Option<Vec<u8>>),
) -> Option<String> {
    let r = SendRules::REFERENCE;
    for (rules, cause) in [
        (SendRules { validation: Validation::None, ..r }, CAUSE_NO_VALIDATION),
        (SendRules { validation: Validation::Strict, ..r }, CAUSE_STRICT_SEARCH),
        (SendRules { clear_on_failure: true, ..r }, CAUSE_CLEAR),
        (SendRules { send_invalid: true, ..r }, CAUSE_SEND_INVALID),
        (SendRules { retry_failure: true, ..r }, CAUSE_RETRY_FAILURE),
    ] {
        if send(rules, codec, data, prefix, outputs) == *got {
            return Some(cause.into());
        }
    }
    if got.1.as_deref() == Some(data) {
        // The frame's layout itself went out: in clear.
        return Some(CAUSE_CLEAR.into());
    }
    None
}

/// Which known mistake gives `got` as what is delivered from `decrypted`.
fn diagnose_receive(
    codec: Codec,
    decrypted: &[u8],
    expected: &Option<Vec<u8>>,
    got: &Option<Vec<u8>>,
) -> Option<String> {
    let got_frame = got.as_deref()?;
    if got == expected {
        // The right frame: only the level differs.
        return (codec == Codec::Opus).then(|| CAUSE_LEVEL_NOT_REPORTED.into());
    }
    if decrypted.is_empty() {
        return Some(CAUSE_PLAYS_UNDECRYPTABLE.into());
    }
    let cut = |n: usize| decrypted.get(..decrypted.len().checked_sub(n)?);
    if codec == Codec::Opus {
        if got_frame == decrypted {
            return Some(CAUSE_KEEP_TRAILER.into());
        }
        if cut(2) == Some(got_frame) {
            return Some(CAUSE_STRIP_ALWAYS_2.into());
        }
        if cut(5) == Some(got_frame) {
            return Some(CAUSE_STRIP_5.into());
        }
    } else if expected.as_deref() == Some(decrypted) && (cut(2) == Some(got_frame) || cut(1) == Some(got_frame)) {
        return Some(CAUSE_STRIP_VIDEO.into());
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn codec_of(v: &Value) -> Codec {
    Codec::from_name(v.get("codec").and_then(Value::as_str).unwrap_or(""))
}

fn hex_of(v: &Value, key: &str) -> Result<Vec<u8>, String> {
    let s = v.get(key).and_then(Value::as_str).ok_or_else(|| format!("vector field {key} missing"))?;
    hex::decode(s).map_err(|_| format!("vector field {key} is not hex"))
}

/// `prefix P, N bytes <hex>` with long hex clipped.
fn show(data: &[u8], prefix: usize) -> String {
    format!("prefix {prefix}, {} bytes {}", data.len(), clip_hex(data))
}

fn clip_hex(data: &[u8]) -> String {
    if data.len() <= 48 {
        hex::encode(data)
    } else {
        format!(
            "{}…{}",
            hex::encode(data.get(..40).unwrap_or_default()),
            hex::encode(data.get(data.len() - 8..).unwrap_or_default())
        )
    }
}

/// Where two byte strings first differ.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
}

fn layout_deviation(
    step: &str,
    codec: Codec,
    frame: &[u8],
    level: AudioLevel,
    expected: (&[u8], usize),
    got: (&[u8], usize),
) -> Stop {
    let at = first_difference(expected.0, got.0);
    Stop::Deviation(Deviation {
        step: step.into(),
        expected: show(expected.0, expected.1),
        got: format!("{} (first difference at byte {at})", show(got.0, got.1)),
        cause: diagnose_layout(codec, frame, level, got.0, got.1),
    })
}

fn opt_hex(m: &Map<String, Value>, key: &str, step: &str) -> Result<Option<Vec<u8>>, Stop> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => hex_field(m, key, step).map(Some),
    }
}

fn level_of(m: &Map<String, Value>) -> Option<AudioLevel> {
    let level = m.get("level").and_then(Value::as_u64)?;
    let speech = m.get("speech").and_then(Value::as_bool).unwrap_or(false);
    // A level past 127 is wrong as reported: kept as 255, never equal to an expected level.
    Some(AudioLevel { level: u8::try_from(level).ok().filter(|l| *l <= 127).unwrap_or(255), speech })
}

fn show_received(frame: &Option<Vec<u8>>, level: Option<AudioLevel>) -> String {
    let f = frame.as_ref().map_or("dropped".to_owned(), |f| format!("{} bytes {}", f.len(), clip_hex(f)));
    match level {
        Some(l) => format!("{f}, level {} speech {}", l.level, l.speech),
        None => format!("{f}, no level"),
    }
}

fn frame_args(codec: Codec, frame: &[u8], level: AudioLevel) -> Value {
    json!({ "codec": codec.name(), "frame": hex::encode(frame), "level": level.level, "speech": level.speech })
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

// ---------------------------------------------------------------------------------------------
// Vector checks

fn send_checks(v: &Value, out: &mut Vec<Check>) -> Result<(), String> {
    let cases = v.get("cases").and_then(Value::as_array).ok_or("frames/send.json: no cases")?;
    for c in cases {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
        let codec = codec_of(c);
        let frame = hex_of(c, "frame")?;
        let level = AudioLevel {
            level: u8::try_from(c.get("audio_level").and_then(Value::as_u64).unwrap_or(0) & 0x7f).unwrap_or(0),
            speech: c.get("has_speech").and_then(Value::as_bool).unwrap_or(false),
        };
        let outputs: Vec<Vec<u8>> = c
            .get("fake_outputs")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{name}: no fake_outputs"))?
            .iter()
            .map(|o| o.as_str().and_then(|s| hex::decode(s).ok()).ok_or_else(|| format!("{name}: bad output")))
            .collect::<Result<_, _>>()?;
        let calls = c.get("calls").and_then(Value::as_array).ok_or_else(|| format!("{name}: no calls"))?;
        let first = calls.first().ok_or_else(|| format!("{name}: no call"))?;
        let vector_data = hex_of(first, "data")?;
        let vector_prefix = first.get("prefix").and_then(Value::as_u64).unwrap_or(0) as usize;
        let sent = match c.get("sent") {
            Some(Value::Null) | None => None,
            Some(_) => Some(hex_of(c, "sent")?),
        };
        // The oracle must agree with the vector first.
        let (data, prefix) = layout(Layout::Reference, codec, &frame, level);
        if (data.as_slice(), prefix) != (vector_data.as_slice(), vector_prefix) {
            return Err(format!("frame.send.{name}: confchain's layout differs from the vector's"));
        }
        let expected = send(SendRules::REFERENCE, codec, &data, prefix, &outputs);
        if expected != (calls.len(), sent) {
            return Err(format!("frame.send.{name}: confchain's attempts differ from the vector's"));
        }
        let note = c.get("note").and_then(Value::as_str).unwrap_or("");
        let run: Run = Box::new(move |p, _| {
            let args = frame_args(codec, &frame, level);
            if p.supports("frame_send") {
                let outs: Vec<String> = outputs.iter().map(hex::encode).collect();
                let m = ok(p, "frame_send", with(args, json!({ "outputs": outs })), "frame_send")?;
                let got_calls = m.get("calls").and_then(Value::as_array).cloned().unwrap_or_default();
                let mut seen = Vec::new();
                for (i, call) in got_calls.iter().enumerate() {
                    let step = format!("call {} of the packet encryption", i + 1);
                    let d = call
                        .get("data")
                        .and_then(Value::as_str)
                        .and_then(|s| hex::decode(s).ok())
                        .ok_or_else(|| checks::deviation(&step, "hex `data`", call.to_string()))?;
                    let pr = call.get("prefix").and_then(Value::as_u64).unwrap_or(0) as usize;
                    if (d.as_slice(), pr) != (data.as_slice(), prefix) {
                        return Err(layout_deviation(&step, codec, &frame, level, (&data, prefix), (&d, pr)));
                    }
                    seen.push(());
                }
                let got_sent = opt_hex(&m, "sent", "frame_send")?;
                let got = (seen.len(), got_sent);
                if got != expected {
                    let describe = |(n, s): &(usize, Option<Vec<u8>>)| {
                        let s =
                            s.as_ref().map_or("dropped".to_owned(), |s| match outputs.iter().position(|o| o == s) {
                                Some(k) => format!("sends the packet of call {}", k + 1),
                                None => format!("sends {} bytes {}", s.len(), clip_hex(s)),
                            });
                        format!("{n} call(s), {s}")
                    };
                    return Err(Stop::Deviation(Deviation {
                        step: "attempts and the packet sent".into(),
                        expected: describe(&expected),
                        got: describe(&got),
                        cause: diagnose_send(codec, &data, prefix, &outputs, &got),
                    }));
                }
                return Ok(Outcome::Pass);
            }
            if !p.supports("frame_layout") {
                return Err(Stop::Skip("no `frame_send` or `frame_layout` operation".into()));
            }
            let m = ok(p, "frame_layout", args, "frame_layout")?;
            let d = hex_field(&m, "data", "frame_layout")?;
            let pr = m.get("prefix").and_then(Value::as_u64).unwrap_or(0) as usize;
            if (d.as_slice(), pr) != (data.as_slice(), prefix) {
                return Err(layout_deviation("frame_layout", codec, &frame, level, (&data, prefix), (&d, pr)));
            }
            if p.supports("frame_validate") {
                for (i, o) in outputs.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
                    let args = json!({ "codec": codec.name(), "packet": hex::encode(o), "prefix": prefix });
                    let m = ok(p, "frame_validate", args, "frame_validate")?;
                    let got = m.get("valid").and_then(Value::as_bool);
                    let want = valid(Validation::Reference, codec, o, prefix);
                    if got != Some(want) {
                        let cause = if got == Some(true) {
                            Some(CAUSE_NO_VALIDATION.to_owned())
                        } else if got == Some(valid(Validation::Strict, codec, o, prefix)) {
                            Some(CAUSE_STRICT_SEARCH.to_owned())
                        } else {
                            None
                        };
                        return Err(Stop::Deviation(Deviation {
                            step: format!("frame_validate of output {}", i + 1),
                            expected: want.to_string(),
                            got: format!("{got:?}"),
                            cause,
                        }));
                    }
                }
            }
            Ok(Outcome::Pass)
        });
        out.push(Check { name: format!("frame.send.{name}"), rule: format!("frames §4 send: {note}"), run });
    }
    Ok(())
}

fn receive_checks(v: &Value, out: &mut Vec<Check>) -> Result<(), String> {
    let cases = v.get("cases").and_then(Value::as_array).ok_or("frames/receive.json: no cases")?;
    for c in cases {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
        let codec = codec_of(c);
        let decrypted = hex_of(c, "decrypted")?;
        let packet = hex_of(c, "packet")?;
        let delivered = match c.get("delivered") {
            Some(Value::Null) | None => None,
            Some(_) => Some(hex_of(c, "delivered")?),
        };
        let level = c.get("level").and_then(Value::as_u64).map(|l| AudioLevel {
            level: u8::try_from(l & 0x7f).unwrap_or(0),
            speech: c.get("speech").and_then(Value::as_bool).unwrap_or(false),
        });
        if receive(Receive::Reference, codec, &decrypted, &packet) != (delivered.clone(), level) {
            return Err(format!("frame.receive.{name}: confchain's result differs from the vector's"));
        }
        let note = c.get("note").and_then(Value::as_str).unwrap_or("");
        let run: Run = Box::new(move |p, _| {
            need(p, &["frame_receive"])?;
            let args =
                json!({ "codec": codec.name(), "decrypted": hex::encode(&decrypted), "packet": hex::encode(&packet) });
            let m = ok(p, "frame_receive", args, "frame_receive")?;
            let got = opt_hex(&m, "frame", "frame_receive")?;
            let got_level = level_of(&m);
            if got != delivered || (codec == Codec::Opus && got_level != level) {
                let mut cause = diagnose_receive(codec, &decrypted, &delivered, &got);
                if got.is_none() && delivered.as_deref() == Some(&[][..]) {
                    cause = Some(CAUSE_DROP_TRAILER_ONLY.into());
                }
                return Err(Stop::Deviation(Deviation {
                    step: "frame_receive".into(),
                    expected: show_received(&delivered, level),
                    got: show_received(&got, got_level),
                    cause,
                }));
            }
            Ok(Outcome::Pass)
        });
        out.push(Check { name: format!("frame.receive.{name}"), rule: format!("frames §5 receive: {note}"), run });
    }
    Ok(())
}

fn level_checks(v: &Value, out: &mut Vec<Check>) -> Result<(), String> {
    let bits = |e: &Value| {
        e.get("linear_f32_bits")
            .and_then(Value::as_str)
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .map(f32::from_bits)
    };
    let mut to_byte = Vec::new();
    for e in v.get("to_byte").and_then(Value::as_array).ok_or("frames/levels.json: no to_byte")? {
        let linear = bits(e).ok_or("levels: bad linear_f32_bits")?;
        let speech = e.get("speech").and_then(Value::as_bool).unwrap_or(false);
        let byte = e.get("byte").and_then(Value::as_u64).ok_or("levels: no byte")?;
        if u64::from(AudioLevel::from_linear(linear, speech).to_byte()) != byte {
            return Err(format!("frame.levels: confchain's byte of {linear:e} differs from the vector's"));
        }
        to_byte.push((linear, speech, byte));
    }
    let mut from_byte = Vec::new();
    for e in v.get("from_byte").and_then(Value::as_array).ok_or("frames/levels.json: no from_byte")? {
        let linear = bits(e).ok_or("levels: bad linear_f32_bits")?;
        let byte = e.get("byte").and_then(Value::as_u64).and_then(|b| u8::try_from(b).ok()).ok_or("levels: no byte")?;
        if AudioLevel::from_byte(byte).to_linear().to_bits() != linear.to_bits() {
            return Err(format!("frame.levels: confchain's linear level of {byte} differs from the vector's"));
        }
        from_byte.push((byte, linear));
    }
    out.push(Check {
        name: "frame.levels.to_byte".into(),
        rule: format!("frames §4.1 the trailer's level byte from a linear level, in f32 ({} values)", to_byte.len()),
        run: Box::new(move |p, _| {
            need(p, &["level_to_byte"])?;
            let mut wrong = Vec::new();
            let mut f64_explains = true;
            for &(linear, speech, byte) in &to_byte {
                let args = json!({ "linear": f64::from(linear), "linear_f32_bits": format!("{:08x}", linear.to_bits()), "speech": speech });
                let m = ok(p, "level_to_byte", args, "level_to_byte")?;
                let got = m.get("byte").and_then(Value::as_u64);
                if got != Some(byte) {
                    f64_explains &= got == Some(u64::from(level_to_byte_f64(linear, speech)));
                    wrong.push((linear, byte, got));
                }
            }
            match wrong.first() {
                None => Ok(Outcome::Pass),
                Some((linear, byte, got)) => Err(Stop::Deviation(Deviation {
                    step: format!("{} of {} levels, first {linear:e}", wrong.len(), to_byte.len()),
                    expected: byte.to_string(),
                    got: got.map_or("none".into(), |g| g.to_string()),
                    cause: f64_explains.then(|| CAUSE_LEVEL_F64.to_owned()),
                })),
            }
        }),
    });
    out.push(Check {
        name: "frame.levels.from_byte".into(),
        rule: "frames §5.1 the linear level a receiver reports from the trailer byte, 10^(-byte/20) in f32".into(),
        run: Box::new(move |p, _| {
            need(p, &["level_from_byte"])?;
            let mut wrong = Vec::new();
            let mut f64_explains = true;
            for &(byte, linear) in &from_byte {
                let m = ok(p, "level_from_byte", json!({ "byte": byte }), "level_from_byte")?;
                let got = m.get("linear").and_then(Value::as_f64).map(|g| g as f32);
                if got.map(f32::to_bits) != Some(linear.to_bits()) {
                    f64_explains &= got.map(f32::to_bits) == Some(level_from_byte_f64(byte).to_bits());
                    wrong.push((byte, linear, got));
                }
            }
            match wrong.first() {
                None => Ok(Outcome::Pass),
                Some((byte, linear, got)) => Err(Stop::Deviation(Deviation {
                    step: format!("{} of {} bytes, first {byte}", wrong.len(), from_byte.len()),
                    expected: format!("{linear:e}"),
                    got: got.map_or("none".into(), |g| format!("{g:e}")),
                    cause: f64_explains.then(|| CAUSE_LEVEL_F64.to_owned()),
                })),
            }
        }),
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Live checks: frames between confchain and the peer in a call

/// The frames sent live: one of each codec and the H.264 layouts that tell mistakes apart.
const LIVE: &[(&str, &str)] = &[
    ("opus", "opus-real-level-speech"),
    ("vp9-unknown", "vp9-unknown-pt102-delta"),
    ("vp8-key", "vp8-real-key"),
    ("vp8-delta", "vp8-real-delta"),
    ("h264-4byte", "h264-idr-sps-pps-4byte"),
    ("h264-3byte", "h264-idr-sps-pps-sei-3byte"),
    ("h264-past-255", "h264-x264-idr-sei-0"),
];

/// The peer's clear prefix as its packet states it (the packet's last 4 bytes).
fn packet_prefix(packet: &[u8]) -> usize {
    packet.last_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b) as usize)
}

fn live_checks(v: &Value, out: &mut Vec<Check>) -> Result<(), String> {
    let cases = v.get("cases").and_then(Value::as_array).ok_or("frames/send.json: no cases")?;
    for &(kind, case) in LIVE {
        let c =
            cases.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(case)).ok_or(format!("no {case}"))?;
        let codec = codec_of(c);
        let frame = hex_of(c, "frame")?;
        let level = if codec == Codec::Opus { AudioLevel { level: 12, speech: true } } else { AudioLevel::default() };
        let (data, prefix) = layout(Layout::Reference, codec, &frame, level);
        let f = frame.clone();
        let d = data.clone();
        out.push(Check {
            name: format!("frame.live.send.{kind}"),
            rule: format!("frames §4 the peer encrypts a {kind} frame ({case}) in a call; confchain decrypts it and checks its layout"),
            run: Box::new(move |p, seed| {
                need(p, &["join", "apply_block", "encrypt_frame"])?;
                let mut conf = Conf::new(seed, 3, 7)?;
                conf.peer_join(p, "p")?;
                let now = conf.now;
                let args = with(frame_args(codec, &f, level), json!({ "member": "p", "channel": frame::CHANNEL_MAIN, "now": now }));
                let m = ok(p, "encrypt_frame", args, "encrypt_frame")?;
                let packet = hex_field(&m, "packet", "encrypt_frame")?;
                let got_prefix = packet_prefix(&packet);
                let plain = match conf.oracle_decrypt(PEER_USER, &packet)? {
                    Ok(plain) => plain,
                    Err(e) => {
                        let cause = (packet == d || packet == f).then(|| CAUSE_CLEAR.to_owned());
                        return Err(Stop::Deviation(Deviation {
                            step: "the reference decrypts the peer's frame".into(),
                            expected: format!("a packet whose plaintext is {}", show(&d, prefix)),
                            got: describe(&e),
                            cause,
                        }));
                    }
                };
                if (plain.as_slice(), got_prefix) != (d.as_slice(), prefix) {
                    return Err(layout_deviation("the plaintext of the peer's packet", codec, &f, level, (&d, prefix), (&plain, got_prefix)));
                }
                if !frame::is_valid_encrypted(codec, &packet, got_prefix) {
                    return Err(Stop::Deviation(Deviation {
                        step: "the peer's H.264 packet".into(),
                        expected: "no NAL start code after the clear prefix".into(),
                        got: "a start code".into(),
                        cause: Some(CAUSE_NO_VALIDATION.into()),
                    }));
                }
                Ok(Outcome::Pass)
            }),
        });
        out.push(Check {
            name: format!("frame.live.receive.{kind}"),
            rule: format!("frames §5 confchain encrypts a {kind} frame ({case}) in a call; the peer decrypts it"),
            run: Box::new(move |p, seed| {
                need(p, &["join", "apply_block", "decrypt_frame"])?;
                let mut conf = Conf::new(seed, 3, 7)?;
                conf.peer_join(p, "p")?;
                let now = conf.now;
                let packet = conf.oracle_encrypt_frame(codec, &frame, level)?;
                let (expected, expected_level) = receive(Receive::Reference, codec, &data, &packet);
                let args = json!({ "member": "p", "user_id": 1001, "codec": codec.name(), "packet": hex::encode(&packet), "now": now });
                let (got_frame, got_level, refusal) = match p.call("decrypt_frame", args)? {
                    Answer::Ok(m) => (opt_hex(&m, "frame", "decrypt_frame")?, level_of(&m), None),
                    Answer::Refused(e) => (None, None, Some(e.to_string())),
                    Answer::Unsupported => return Err(Stop::Skip("no `decrypt_frame` operation".into())),
                };
                if got_frame != expected || (codec == Codec::Opus && got_level != expected_level) {
                    return Err(Stop::Deviation(Deviation {
                        step: "decrypt_frame".into(),
                        expected: show_received(&expected, expected_level),
                        got: refusal.unwrap_or_else(|| show_received(&got_frame, got_level)),
                        cause: diagnose_receive(codec, &data, &expected, &got_frame),
                    }));
                }
                Ok(Outcome::Pass)
            }),
        });
    }
    let (h264, vp8) = {
        let find = |n: &str| {
            cases.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(n)).map(|c| hex_of(c, "frame"))
        };
        (find("h264-idr-sps-pps-sei-3byte").ok_or("no h264 frame")??, find("vp8-real-key").ok_or("no vp8 frame")??)
    };
    out.push(Check {
        name: "frame.live.receive.after-retries".into(),
        rule: "frames §4.4 each H.264 attempt consumes a sequence number: the peer decrypts a frame sent on the third \
               attempt, and the next one"
            .into(),
        run: Box::new(move |p, seed| {
            need(p, &["join", "apply_block", "decrypt_frame"])?;
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            let now = conf.now;
            let (data, prefix) = layout(Layout::Reference, Codec::H264, &h264, AudioLevel::default());
            let mut attempts = Vec::new();
            for _ in 0..3 {
                attempts.push(conf.oracle_encrypt(&data, prefix)?);
            }
            let next = conf.oracle_encrypt_frame(Codec::H264, &h264, AudioLevel::default())?;
            for (step, packet) in [("the third attempt", attempts.pop().unwrap_or_default()), ("the next frame", next)] {
                let args = json!({ "member": "p", "user_id": 1001, "codec": "h264", "packet": hex::encode(&packet), "now": now });
                let m = ok(p, "decrypt_frame", args, &format!("decrypt {step}"))?;
                let got = opt_hex(&m, "frame", "decrypt_frame")?;
                if got.as_deref() != Some(data.as_slice()) {
                    return Err(checks::deviation(format!("decrypt {step}"), show(&data, prefix), show_received(&got, None)));
                }
            }
            Ok(Outcome::Pass)
        }),
    });
    let vp8_frame = vp8.clone();
    out.push(Check {
        name: "frame.live.undecryptable".into(),
        rule: "frames §5 a frame that does not decrypt is dropped, never played".into(),
        run: Box::new(move |p, seed| {
            need(p, &["join", "apply_block", "decrypt_frame"])?;
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            let now = conf.now;
            let mut packet = conf.oracle_encrypt_frame(Codec::Vp8, &vp8_frame, AudioLevel::default())?;
            let middle = packet.len() / 2;
            if let Some(b) = packet.get_mut(middle) {
                *b ^= 0x40;
            }
            let args =
                json!({ "member": "p", "user_id": 1001, "codec": "vp8", "packet": hex::encode(&packet), "now": now });
            match p.call("decrypt_frame", args)? {
                Answer::Refused(_) => Ok(Outcome::Pass),
                Answer::Unsupported => Err(Stop::Skip("no `decrypt_frame` operation".into())),
                Answer::Ok(m) => {
                    let got = opt_hex(&m, "frame", "decrypt_frame")?;
                    if got.is_none() {
                        return Ok(Outcome::Pass);
                    }
                    Err(Stop::Deviation(Deviation {
                        step: "decrypt_frame of a packet with a flipped byte".into(),
                        expected: "refused (the frame is dropped)".into(),
                        got: show_received(&got, None),
                        cause: Some(CAUSE_PLAYS_UNDECRYPTABLE.into()),
                    }))
                }
            }
        }),
    });
    out.push(Check {
        name: "frame.live.no-epoch".into(),
        rule: "frames §4 a member with no active epoch (removed from the call) sends nothing, never the frame in clear"
            .into(),
        run: Box::new(move |p, seed| {
            need(p, &["join", "apply_block", "encrypt_frame"])?;
            let mut conf = Conf::new(seed, 3, 7)?;
            conf.peer_join(p, "p")?;
            conf.remove_peer(p)?;
            let (data, _) = layout(Layout::Reference, Codec::Vp8, &vp8, AudioLevel::default());
            let args = with(
                frame_args(Codec::Vp8, &vp8, AudioLevel::default()),
                json!({ "member": "p", "channel": frame::CHANNEL_MAIN, "now": conf.now }),
            );
            match p.call("encrypt_frame", args)? {
                Answer::Refused(_) => Ok(Outcome::Pass),
                Answer::Unsupported => Err(Stop::Skip("no `encrypt_frame` operation".into())),
                Answer::Ok(m) => {
                    let packet = hex_field(&m, "packet", "encrypt_frame")?;
                    // The frame's layout, or 64 of its bytes past the VP8 clear prefix, in the packet.
                    let sample = vp8.get(10..74).unwrap_or_default();
                    let clear =
                        packet == data || (!sample.is_empty() && packet.windows(sample.len()).any(|w| w == sample));
                    Err(Stop::Deviation(Deviation {
                        step: "encrypt_frame after the removal".into(),
                        expected: "refused (the frame is dropped)".into(),
                        got: format!(
                            "a {}-byte packet{}",
                            packet.len(),
                            if clear { ", the frame in clear" } else { "" }
                        ),
                        cause: clear.then(|| CAUSE_CLEAR.to_owned()),
                    }))
                }
            }
        }),
    });
    Ok(())
}

/// Every frame check, when the vector directory has `frames/`.
pub fn all(dir: &Path, out: &mut Vec<Check>) -> Result<(), String> {
    if !dir.join("frames").is_dir() {
        return Ok(());
    }
    let send_v = checks::load(dir, "frames/send.json")?;
    send_checks(&send_v, out)?;
    receive_checks(&checks::load(dir, "frames/receive.json")?, out)?;
    level_checks(&checks::load(dir, "frames/levels.json")?, out)?;
    live_checks(&send_v, out)
}
