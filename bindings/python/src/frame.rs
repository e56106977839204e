//! The media frame layer (`engine::frame`) for Python: codec arguments, the pure helpers, and the
//! frame operations themselves, written once here for every class that has them (`Call`,
//! `Session`, `MediaEncryptor`, `MediaDecryptor`: each method is a signature and one call).
//!
//! A codec argument is a name (`"opus"`, `"vp8"`, `"h264"`, or an SDP/MIME name such as
//! `"video/H264"`, any case; any other name is the unknown path) or an RTP payload type as tgcalls
//! maps it (111 Opus, 100 VP8, 104 H.264, anything else the unknown path).

use engine::frame::{self, AudioLevel, Codec, FrameDecryptor, FrameEncryptor};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString};

use crate::sources::{kind_name, SourceTable, Sourced};

/// `encrypt_frame_info` of every class: `(packet, clear_prefix, attempts)`, the GIL released.
pub(crate) fn encrypt<'py>(
    py: Python<'py>,
    keys: impl FrameEncryptor + Send,
    channel: i32,
    codec: CodecArg,
    frame: &[u8],
    now: u64,
    (level, speech): (u8, bool),
) -> PyResult<Sent<'py>> {
    let level = self::level(level, speech);
    let mut out = Vec::new();
    let s = py
        .allow_threads(|| keys.encrypt_frame_into(channel, codec.0, frame, level, now, &mut out))
        .map_err(crate::err)?;
    Ok(sent(py, &out, &s))
}

/// `decrypt_frame` of every class: `(frame, level, speech)`, the GIL released.
pub(crate) fn decrypt<'py>(
    py: Python<'py>,
    keys: impl FrameDecryptor + Send,
    sender: i64,
    codec: CodecArg,
    packet: &[u8],
    now: u64,
) -> PyResult<Received<'py>> {
    let mut out = Vec::new();
    let r = py.allow_threads(|| keys.decrypt_frame_into(sender, codec.0, packet, now, &mut out)).map_err(crate::err)?;
    Ok(received(py, &out, r.level))
}

/// `decrypt_frame_from_source` of every class: the frame for the sender `table` maps `ssrc` to
/// (`SourceMap::decrypt_from`: an unknown SSRC raises `FRAME__UNKNOWN_SOURCE` before any key is
/// tried; a frame the sender's key does not open reports the mapping as possibly stale).
pub(crate) fn decrypt_from_source<'py>(
    py: Python<'py>,
    keys: impl FrameDecryptor + Send,
    table: &SourceTable,
    ssrc: u32,
    codec: CodecArg,
    packet: &[u8],
    now: u64,
) -> PyResult<Sourced<'py>> {
    let map = table.map();
    let mut out = Vec::new();
    let (source, r) = py
        .allow_threads(|| {
            map.decrypt_from(ssrc, |sender| keys.decrypt_frame_into(sender, codec.0, packet, now, &mut out))
        })
        .map_err(crate::err)?;
    let (data, level, speech) = received(py, &out, r.level);
    Ok((data, level, speech, source.user_id, kind_name(source.kind)))
}

/// A codec given as a name or as an RTP payload type.
#[derive(Clone, Copy)]
pub(crate) struct CodecArg(pub(crate) Codec);

impl<'py> FromPyObject<'py> for CodecArg {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        if ob.is_instance_of::<PyString>() {
            return Ok(CodecArg(Codec::from_name(&ob.extract::<String>()?)));
        }
        if ob.is_instance_of::<PyInt>() {
            let pt: u8 = ob.extract().map_err(|_| {
                PyValueError::new_err(format!("codec: a payload type is 0 <= pt < 128 (a 7-bit RTP field), got {ob}"))
            })?;
            if pt > 127 {
                return Err(PyValueError::new_err(format!(
                    "codec: a payload type is 0 <= pt < 128 (a 7-bit RTP field), got {pt}"
                )));
            }
            return Ok(CodecArg(Codec::from_payload_type(pt)));
        }
        let kind = ob.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        Err(PyTypeError::new_err(format!("codec: expected a name (str) or a payload type (int), got {kind}")))
    }
}

/// The audio level argument: 0 (loud) ..= 127 (silent); as in tgcalls, only the low 7 bits are
/// sent (`level & 0x7f`).
pub(crate) fn level(level: u8, speech: bool) -> AudioLevel {
    AudioLevel { level, speech }
}

/// `(frame, level, speech)` as the decrypt functions return it: level and speech are None unless
/// an Opus frame carried the level trailer.
pub(crate) type Received<'py> = (Bound<'py, PyBytes>, Option<u8>, Option<bool>);

pub(crate) fn received<'py>(py: Python<'py>, data: &[u8], level: Option<AudioLevel>) -> Received<'py> {
    (PyBytes::new(py, data), level.map(|l| l.level), level.map(|l| l.speech))
}

/// `(packet, clear_prefix, attempts)` as the `encrypt_frame_info` functions return it.
pub(crate) type Sent<'py> = (Bound<'py, PyBytes>, usize, u32);

pub(crate) fn sent<'py>(py: Python<'py>, packet: &[u8], s: &frame::SentFrame) -> Sent<'py> {
    (PyBytes::new(py, packet), s.clear_prefix, s.attempts)
}

/// The codec name tgcalls gives an RTP payload type: "opus" (111), "vp8" (100), "h264" (104),
/// else "unknown" (VP9 102, AV1, ...: the audio path on send, the raw path on receive).
#[pyfunction]
fn codec_from_payload_type(payload_type: CodecArg) -> &'static str {
    payload_type.0.name()
}

/// What tgcalls passes to `call_encrypt` for a frame: `(data, clear_prefix)` (H.264 start codes
/// widened, the Opus trailer appended). No keys involved.
#[pyfunction]
#[pyo3(signature = (codec, frame, level = 0, speech = false))]
fn frame_plaintext<'py>(
    py: Python<'py>,
    codec: CodecArg,
    frame: &[u8],
    level: u8,
    speech: bool,
) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let level = self::level(level, speech);
    let mut out = Vec::with_capacity(frame.len() + 8);
    let prefix = py.allow_threads(|| frame::plaintext_into(codec.0, frame, level, &mut out));
    Ok((PyBytes::new(py, &out), prefix))
}

/// tgcalls' ValidateEncryptedFrame: False when an H.264 packet carries a NAL start code after its
/// clear prefix (the packetizer would split it); True for every other codec.
#[pyfunction]
fn frame_is_valid_encrypted(codec: CodecArg, packet: &[u8], clear_prefix: usize) -> bool {
    frame::is_valid_encrypted(codec.0, packet, clear_prefix)
}

/// The receive side after decryption: `(frame, level, speech)` with the Opus trailer stripped
/// (level and speech None when the trailer has none, and for video).
#[pyfunction]
fn frame_strip_received<'py>(py: Python<'py>, codec: CodecArg, plain: &[u8]) -> Received<'py> {
    let mut v = plain.to_vec();
    let level = frame::strip_received(codec.0, &mut v);
    received(py, &v, level)
}

/// The trailer's level byte: `speech << 7 | level`.
#[pyfunction]
#[pyo3(signature = (level, speech = false))]
fn audio_level_to_byte(level: u8, speech: bool) -> u8 {
    self::level(level, speech).to_byte()
}

/// `(level, speech)` of a trailer byte.
#[pyfunction]
fn audio_level_from_byte(byte: u8) -> (u8, bool) {
    let l = AudioLevel::from_byte(byte);
    (l.level, l.speech)
}

/// The level (0 loud ..= 127 silent) of a linear amplitude as tgcalls computes it:
/// `-20 log10(linear)` clamped, 127 for 0.
#[pyfunction]
fn audio_level_from_linear(linear: f32) -> u8 {
    AudioLevel::from_linear(linear, false).level
}

/// The level of a 16-bit peak amplitude (tgcalls: `from_linear(peak / 4000)`).
#[pyfunction]
fn audio_level_from_peak(peak: u16) -> u8 {
    AudioLevel::from_peak(peak, false).level
}

/// The linear amplitude tgcalls reports for a received level: `10 ** (-level / 20)`.
#[pyfunction]
fn audio_level_to_linear(level: u8) -> f32 {
    self::level(level & 0x7f, false).to_linear()
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("PAYLOAD_TYPE_OPUS", frame::payload_type::OPUS)?;
    m.add("PAYLOAD_TYPE_VP8", frame::payload_type::VP8)?;
    m.add("PAYLOAD_TYPE_VP9", frame::payload_type::VP9)?;
    m.add("PAYLOAD_TYPE_H264", frame::payload_type::H264)?;
    m.add("CHANNEL_MAIN", frame::CHANNEL_MAIN)?;
    m.add("CHANNEL_SCREENCAST", frame::CHANNEL_SCREENCAST)?;
    m.add("FRAME_MAX_ATTEMPTS", frame::MAX_ATTEMPTS)?;
    m.add_function(wrap_pyfunction!(codec_from_payload_type, m)?)?;
    m.add_function(wrap_pyfunction!(frame_plaintext, m)?)?;
    m.add_function(wrap_pyfunction!(frame_is_valid_encrypted, m)?)?;
    m.add_function(wrap_pyfunction!(frame_strip_received, m)?)?;
    m.add_function(wrap_pyfunction!(audio_level_to_byte, m)?)?;
    m.add_function(wrap_pyfunction!(audio_level_from_byte, m)?)?;
    m.add_function(wrap_pyfunction!(audio_level_from_linear, m)?)?;
    m.add_function(wrap_pyfunction!(audio_level_from_peak, m)?)?;
    m.add_function(wrap_pyfunction!(audio_level_to_linear, m)?)?;
    Ok(())
}
