//! Media frames: the layer Telegram's apps (tgcalls) put between WebRTC's encoder and the call's
//! packets (`engine::frame`), on `Call`, `Session` and the media handles (each operation written
//! once, `frame_ops!`), and its pure helpers.
//!
//! A codec is given by name (`"opus"`, `"vp8"`, `"h264"`, `"unknown"`), by a MIME type
//! (`"video/H264"`; anything but Opus, VP8 and H.264 is unknown) or by tgcalls' payload
//! type (111, 100, 104; any other number is `"unknown"`). An audio level is the trailer's level
//! (0 loud ..= 127 silent) with a separate speech flag. A dropped frame is an error
//! (`FRAME__START_CODE`, `FRAME__EMPTY`, or whatever the packet layer refused); nothing is ever
//! returned in the clear.

use engine::frame::{self as fr, AudioLevel, Codec, FrameDecryptor, FrameEncryptor};
use wasm_bindgen::prelude::*;

use crate::args::{bytes, time, type_error};
use crate::sources::{self, SourceTable};
use crate::{bad, err, set, Call, Rng, Session};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** A codec as tgcalls classifies it ("unknown": VP9, AV1, anything else). */
export type Codec = "opus" | "vp8" | "h264" | "unknown";
/** What encryptFrameDetailed did: attempts > 1 are H.264 retries (a start code in the ciphertext). */
export interface SentFrame { packet: Uint8Array; clearPrefix: number; attempts: number }
/** A decrypted frame: level (0 loud ..= 127 silent) and speech are null without a level trailer. */
export interface ReceivedFrame { data: Uint8Array; level: number | null; speech: boolean | null }
/** What tgcalls passes to call_encrypt: the bytes and how many stay in clear. */
export interface FramePlaintext { data: Uint8Array; clearPrefix: number }
"#;

/// A codec from its name or tgcalls' payload type.
pub(crate) fn codec_of(v: &JsValue) -> Result<Codec, JsValue> {
    if let Some(name) = v.as_string() {
        // A MIME type ("audio/opus", "video/VP9") maps as tgcalls maps codecs: anything but Opus,
        // VP8 and H.264 is unknown. A bare name must be one of the four (a typo is not "unknown").
        let c = Codec::from_name(&name);
        if name.contains('/') || c != Codec::Unknown || name.eq_ignore_ascii_case("unknown") {
            return Ok(c);
        }
        return Err(bad(&format!("codec: expected opus, vp8, h264, unknown or a MIME type, got {name:?}")));
    }
    match v.as_f64() {
        Some(n) if n.fract() == 0.0 && (0.0..=127.0).contains(&n) => Ok(Codec::from_payload_type(n as u8)),
        Some(n) => Err(bad(&format!("codec: a payload type is an integer 0..=127, got {n}"))),
        None => Err(type_error("codec", "a codec name or a payload type", v)),
    }
}

/// The level 0..=127 (0 when undefined; bits above 0x7f are dropped, as tgcalls does) and the
/// speech flag (false when undefined).
fn level_of(level: Option<f64>, speech: Option<bool>) -> Result<AudioLevel, JsValue> {
    let level = match level {
        None => 0,
        Some(n) if n.fract() == 0.0 && (0.0..=255.0).contains(&n) => n as u8,
        Some(n) => return Err(bad(&format!("level: expected an integer 0..=255, got {n}"))),
    };
    Ok(AudioLevel { level, speech: speech.unwrap_or(false) })
}

/// `{data, level, speech}`: `level`/`speech` are null without a level trailer.
pub(crate) fn received(data: &[u8], info: &fr::ReceivedFrame) -> JsValue {
    let o = js_sys::Object::new();
    set(&o, "data", crate::bytes_value(data));
    set(&o, "level", info.level.map_or(JsValue::NULL, |l| l.level.into()));
    set(&o, "speech", info.level.map_or(JsValue::NULL, |l| l.speech.into()));
    o.into()
}

/// `{packet, clearPrefix, attempts}`.
fn sent(packet: &[u8], info: &fr::SentFrame) -> JsValue {
    let o = js_sys::Object::new();
    set(&o, "packet", crate::bytes_value(packet));
    set(&o, "clearPrefix", JsValue::from_f64(info.clear_prefix as f64));
    set(&o, "attempts", info.attempts.into());
    o.into()
}

/// `encryptFrame` and `encryptFrameDetailed` of every class: the packet and what the encryption did.
fn encrypt(
    keys: impl FrameEncryptor,
    channel: i32,
    codec: &JsValue,
    frame: &JsValue,
    now_ms: f64,
    (level, speech): (Option<f64>, Option<bool>),
) -> Result<(Vec<u8>, fr::SentFrame), JsValue> {
    let (c, frame, now, l) =
        (codec_of(codec)?, bytes(frame, "frame")?, time(now_ms, "nowMs")?, level_of(level, speech)?);
    let mut out = Vec::new();
    let info = keys.encrypt_frame_into(channel, c, &frame, l, now, &mut out).map_err(err)?;
    Ok((out, info))
}

/// `decryptFrame` of every class: `{data, level, speech}`.
fn decrypt(
    keys: impl FrameDecryptor,
    sender: i64,
    codec: &JsValue,
    packet: &JsValue,
    now_ms: f64,
) -> Result<JsValue, JsValue> {
    let (c, packet, now) = (codec_of(codec)?, bytes(packet, "packet")?, time(now_ms, "nowMs")?);
    let mut out = Vec::new();
    let info = keys.decrypt_frame_into(sender, c, &packet, now, &mut out).map_err(err)?;
    Ok(received(&out, &info))
}

/// `decryptFrameFromSource` of every class: `{data, level, speech, userId, kind}` for the sender
/// `table` maps `ssrc` to (`SourceMap::decrypt_from`: an unknown SSRC throws
/// `FRAME__UNKNOWN_SOURCE` before any key is tried; a frame the sender's key does not open
/// reports the mapping as possibly stale).
fn decrypt_from_source(
    keys: impl FrameDecryptor,
    table: &SourceTable,
    ssrc: u32,
    codec: &JsValue,
    packet: &JsValue,
    now_ms: f64,
) -> Result<JsValue, JsValue> {
    let (c, packet, now) = (codec_of(codec)?, bytes(packet, "packet")?, time(now_ms, "nowMs")?);
    let mut out = Vec::new();
    let (source, info) = table
        .map()
        .decrypt_from(ssrc, |sender| keys.decrypt_frame_into(sender, c, &packet, now, &mut out))
        .map_err(err)?;
    let o = received(&out, &info);
    sources::set_source(o.unchecked_ref(), &source);
    Ok(o)
}

impl Call {
    /// The call the frame operations run on.
    fn call(&mut self) -> Result<&mut engine::Call, JsValue> {
        Ok(&mut self.0)
    }
}

impl Session {
    /// The session's call, for the frame operations (`INVALID_INPUT` when not in a call).
    fn call(&mut self) -> Result<&mut engine::Call, JsValue> {
        self.0.call_mut().ok_or_else(|| bad("not in a call"))
    }
}

/// The frame operations of a class, written once: `call` for `Call` and `Session` (`&mut self`,
/// `self.call()`, the caller's `rng`), `encryptor` and `decryptor` for the media handles
/// (`&self`, their own randomness); the doc strings are each class's.
macro_rules! frame_ops {
    (call $ty:ident, $enc:literal, $det:literal, $dec:literal, $src:literal) => {
        frame_ops!(@encrypt $ty [&mut self] [rng: &mut Rng,] [(self.call()?, &mut *rng.0)] $enc $det);
        frame_ops!(@decrypt $ty [&mut self] [self.call()?] $dec $src);
    };
    (encryptor $ty:ident, $enc:literal, $det:literal) => {
        frame_ops!(@encrypt $ty [&self] [] [&self.0] $enc $det);
    };
    (decryptor $ty:ident, $dec:literal, $src:literal) => {
        frame_ops!(@decrypt $ty [&self] [&self.0] $dec $src);
    };
    (@encrypt $ty:ident [$($recv:tt)*] [$($rng:tt)*] [$keys:expr] $enc:literal $det:literal) => {
        #[wasm_bindgen]
        impl $ty {
            #[doc = $enc]
            #[wasm_bindgen(js_name = encryptFrame)]
            #[allow(clippy::too_many_arguments)]
            pub fn encrypt_frame(
                $($recv)*,
                channel: i32,
                #[wasm_bindgen(unchecked_param_type = "Codec | number")] codec: &JsValue,
                #[wasm_bindgen(unchecked_param_type = "Uint8Array")] frame: &JsValue,
                now_ms: f64,
                $($rng)*
                level: Option<f64>,
                speech: Option<bool>,
            ) -> Result<Vec<u8>, JsValue> {
                Ok(encrypt($keys, channel, codec, frame, now_ms, (level, speech))?.0)
            }

            #[doc = $det]
            #[wasm_bindgen(js_name = encryptFrameDetailed, unchecked_return_type = "SentFrame")]
            #[allow(clippy::too_many_arguments)]
            pub fn encrypt_frame_detailed(
                $($recv)*,
                channel: i32,
                #[wasm_bindgen(unchecked_param_type = "Codec | number")] codec: &JsValue,
                #[wasm_bindgen(unchecked_param_type = "Uint8Array")] frame: &JsValue,
                now_ms: f64,
                $($rng)*
                level: Option<f64>,
                speech: Option<bool>,
            ) -> Result<JsValue, JsValue> {
                let (packet, info) = encrypt($keys, channel, codec, frame, now_ms, (level, speech))?;
                Ok(sent(&packet, &info))
            }
        }
    };
    (@decrypt $ty:ident [$($recv:tt)*] [$keys:expr] $dec:literal $src:literal) => {
        #[wasm_bindgen]
        impl $ty {
            #[doc = $dec]
            #[wasm_bindgen(js_name = decryptFrame, unchecked_return_type = "ReceivedFrame")]
            pub fn decrypt_frame(
                $($recv)*,
                sender_user_id: i64,
                #[wasm_bindgen(unchecked_param_type = "Codec | number")] codec: &JsValue,
                #[wasm_bindgen(unchecked_param_type = "Uint8Array")] packet: &JsValue,
                now_ms: f64,
            ) -> Result<JsValue, JsValue> {
                decrypt($keys, sender_user_id, codec, packet, now_ms)
            }

            #[doc = $src]
            #[wasm_bindgen(js_name = decryptFrameFromSource, unchecked_return_type = "SourcedFrame")]
            pub fn decrypt_frame_from_source(
                $($recv)*,
                table: &SourceTable,
                ssrc: u32,
                #[wasm_bindgen(unchecked_param_type = "Codec | number")] codec: &JsValue,
                #[wasm_bindgen(unchecked_param_type = "Uint8Array")] packet: &JsValue,
                now_ms: f64,
            ) -> Result<JsValue, JsValue> {
                decrypt_from_source($keys, table, ssrc, codec, packet, now_ms)
            }
        }
    };
}

frame_ops!(
    call Call,
    " Encrypts an encoded media frame as tgcalls does (Opus/unknown: level trailer, whole frame
 encrypted; VP8: 10/1 clear bytes; H.264: start codes widened, headers in clear, re-encrypted
 while the ciphertext holds a start code, at most 4 times). Throws `FRAME__START_CODE` when
 every attempt did; the frame is then dropped.",
    " `encryptFrame` that also says what it did: `{packet, clearPrefix, attempts}` (attempts > 1:
 H.264 retries).",
    " Decrypts a media frame from `senderUserId`: `{data, level, speech}` (the Opus path strips the
 level trailer; `level`/`speech` are null without one). Throws when the frame is dropped
 (`FRAME__EMPTY`, unknown epoch, replay, ...).",
    " `decryptFrame` for the member `table` maps `ssrc` to: `{data, level, speech, userId,
 kind}`. An SSRC the table does not map throws `FRAME__UNKNOWN_SOURCE` (no key is tried)."
);

frame_ops!(
    call Session,
    " `Call.encryptFrame` with the session's call (throws `INVALID_INPUT` when not in a call).",
    " `Call.encryptFrameDetailed` with the session's call: `{packet, clearPrefix, attempts}`.",
    " `Call.decryptFrame` with the session's call: `{data, level, speech}`.",
    " `Call.decryptFrameFromSource` with the session's call."
);

frame_ops!(
    encryptor MediaEncryptor,
    " `Call.encryptFrame` without the call.",
    " `Call.encryptFrameDetailed` without the call: `{packet, clearPrefix, attempts}`."
);

frame_ops!(
    decryptor MediaDecryptor,
    " `Call.decryptFrame` without the call: `{data, level, speech}`.",
    " `Call.decryptFrameFromSource` without the call."
);

#[wasm_bindgen]
impl Call {
    /// A frame encryptor sharing this call's epochs and sequence numbers (it follows every block
    /// the call applies); its own RNG is seeded from `rng`.
    #[wasm_bindgen(js_name = mediaEncryptor)]
    pub fn media_encryptor(&self, rng: &mut Rng) -> MediaEncryptor {
        MediaEncryptor(self.0.media_encryptor(&mut *rng.0))
    }

    /// A frame decryptor sharing this call's epochs and replay windows.
    #[wasm_bindgen(js_name = mediaDecryptor)]
    pub fn media_decryptor(&self) -> MediaDecryptor {
        MediaDecryptor(self.0.media_decryptor())
    }
}

/// Encrypts our frames with the call's current epochs (taken with `call.mediaEncryptor(rng)`).
#[wasm_bindgen]
pub struct MediaEncryptor(engine::MediaEncryptor);

#[wasm_bindgen]
impl MediaEncryptor {
    /// `Call.encrypt` without the call: `data[0..clearPrefixLen]` stays in clear.
    pub fn encrypt(
        &self,
        channel: i32,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] data: &JsValue,
        now_ms: f64,
        clear_prefix_len: Option<usize>,
    ) -> Result<Vec<u8>, JsValue> {
        let (data, now) = (bytes(data, "data")?, time(now_ms, "nowMs")?);
        let mut out = Vec::new();
        self.0.encrypt_into(channel, &data, clear_prefix_len.unwrap_or(0), now, &mut out).map_err(err)?;
        Ok(out)
    }
}

/// Decrypts other members' frames with the call's live epochs (taken with `call.mediaDecryptor()`).
#[wasm_bindgen]
pub struct MediaDecryptor(pub(crate) engine::MediaDecryptor);

#[wasm_bindgen]
impl MediaDecryptor {
    /// `Call.decrypt` without the call (the replay windows are the call's).
    pub fn decrypt(
        &self,
        user_id: i64,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] packet: &JsValue,
        now_ms: f64,
    ) -> Result<Vec<u8>, JsValue> {
        let (packet, now) = (bytes(packet, "packet")?, time(now_ms, "nowMs")?);
        let mut out = Vec::new();
        self.0.decrypt_into(user_id, &packet, now, &mut out).map_err(err)?;
        Ok(out)
    }

    /// Heights of the epochs live at `nowMs`.
    #[wasm_bindgen(js_name = liveEpochs)]
    pub fn live_epochs(&self, now_ms: f64) -> Result<Vec<i32>, JsValue> {
        Ok(self.0.live_epochs(time(now_ms, "nowMs")?))
    }

    /// Whether the call was closed (every decrypt then fails with `CALL_CLOSED`).
    #[wasm_bindgen(getter, js_name = isClosed)]
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

// ---- pure helpers (no keys) ----

/// What tgcalls passes to call_encrypt for `frame`: `{data, clearPrefix}` (H.264 start codes
/// widened, the Opus/unknown level trailer appended).
#[wasm_bindgen(js_name = framePlaintext, unchecked_return_type = "FramePlaintext")]
pub fn frame_plaintext(
    #[wasm_bindgen(unchecked_param_type = "Codec | number")] codec: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] frame: &JsValue,
    level: Option<f64>,
    speech: Option<bool>,
) -> Result<JsValue, JsValue> {
    let (c, frame, l) = (codec_of(codec)?, bytes(frame, "frame")?, level_of(level, speech)?);
    let mut out = Vec::new();
    let prefix = fr::plaintext_into(c, &frame, l, &mut out);
    let o = js_sys::Object::new();
    set(&o, "data", crate::bytes_value(&out));
    set(&o, "clearPrefix", JsValue::from_f64(prefix as f64));
    Ok(o.into())
}

/// tgcalls' ValidateEncryptedFrame: false when an H.264 packet holds a NAL start code from two
/// bytes before its clear prefix's end (WebRTC's packetizer would split the frame there); true
/// for every other codec.
#[wasm_bindgen(js_name = isValidEncryptedFrame)]
pub fn is_valid_encrypted_frame(
    #[wasm_bindgen(unchecked_param_type = "Codec | number")] codec: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] packet: &JsValue,
    clear_prefix: f64,
) -> Result<bool, JsValue> {
    let (c, packet) = (codec_of(codec)?, bytes(packet, "packet")?);
    if !(clear_prefix.is_finite() && clear_prefix >= 0.0 && clear_prefix.fract() == 0.0) {
        return Err(bad(&format!("clearPrefix: expected a non-negative integer, got {clear_prefix}")));
    }
    Ok(fr::is_valid_encrypted(c, &packet, clear_prefix as usize))
}

/// The receive side's stripping of a decrypted frame: `{data, level, speech}` (the Opus trailer
/// removed; `level`/`speech` null without a level byte; other codecs unchanged).
#[wasm_bindgen(js_name = stripReceivedFrame, unchecked_return_type = "ReceivedFrame")]
pub fn strip_received_frame(
    #[wasm_bindgen(unchecked_param_type = "Codec | number")] codec: &JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] plaintext: &JsValue,
) -> Result<JsValue, JsValue> {
    let (c, mut plain) = (codec_of(codec)?, bytes(plaintext, "plaintext")?);
    let level = fr::strip_received(c, &mut plain);
    Ok(received(&plain, &fr::ReceivedFrame { level }))
}

/// The canonical name of a codec given by name or payload type ("opus", "vp8", "h264", "unknown").
#[wasm_bindgen(js_name = codecName, unchecked_return_type = "Codec")]
pub fn codec_name(#[wasm_bindgen(unchecked_param_type = "Codec | number")] codec: &JsValue) -> Result<String, JsValue> {
    Ok(codec_of(codec)?.name().to_owned())
}

/// The trailer's level (0 loud ..= 127 silent) of a linear level 0..1 as tgcalls computes it:
/// `clamp(-20·log10(linear), 0, 127)`, 127 for 0.
#[wasm_bindgen(js_name = audioLevelFromLinear)]
pub fn audio_level_from_linear(linear: f32) -> u8 {
    level_of_linear(linear)
}

/// `AudioLevel::from_linear` (the core computes tgcalls' `log10f` bit for bit on every target).
fn level_of_linear(linear: f32) -> u8 {
    AudioLevel::from_linear(linear, false).level
}

/// The level of a peak sample amplitude (`fromLinear(peak / 4000)`, tgcalls' noise-suppression path).
#[wasm_bindgen(js_name = audioLevelFromPeak)]
pub fn audio_level_from_peak(peak: u16) -> u8 {
    level_of_linear(f32::from(peak) / 4000.0)
}

/// The linear level a receiver reports for a trailer's level: `10^(-level/20)`.
#[wasm_bindgen(js_name = audioLevelToLinear)]
pub fn audio_level_to_linear(level: u8) -> f32 {
    AudioLevel { level, speech: false }.to_linear()
}

/// The trailer's byte: `speech << 7 | level & 0x7f`.
#[wasm_bindgen(js_name = audioLevelToByte)]
pub fn audio_level_to_byte(level: u8, speech: bool) -> u8 {
    AudioLevel { level, speech }.to_byte()
}

/// `{level, speech}` of a trailer's byte.
#[wasm_bindgen(js_name = audioLevelFromByte, unchecked_return_type = "{ level: number; speech: boolean }")]
pub fn audio_level_from_byte(byte: u8) -> JsValue {
    let l = AudioLevel::from_byte(byte);
    let o = js_sys::Object::new();
    set(&o, "level", l.level.into());
    set(&o, "speech", l.speech.into());
    o.into()
}
