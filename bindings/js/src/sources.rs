//! Who sent a frame (`engine::sources`): the SSRC table the browser transform reads to find a
//! frame's sender from its RTP SSRC (`getMetadata().synchronizationSource`), fed with
//! participants as MTProto libraries give them, for decryption by SSRC on `Call`, `Session` and
//! `MediaDecryptor` (`decryptFrameFromSource`, with the other frame operations in `frame`). An
//! SSRC the table does not map fails with `FRAME__UNKNOWN_SOURCE` and is kept for
//! `takeMisses()` (what to look up with `phone.getGroupParticipants`).

use engine::api::{MediaSources, ParticipantSources, SourceGroup, VideoSources};
use engine::limits::{MAX_GROUP_SOURCES, MAX_SOURCE_GROUPS};
use engine::sources::{self as src, MediaKind, Source, SourceChange};
use wasm_bindgen::prelude::*;

use crate::args::{get, items, type_error, user_id};
use crate::{bad, set};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** What a source carries. */
export type MediaKind = "audio" | "video" | "screencast" | "screencastAudio";
/** The sender of an SSRC. */
export interface Source { userId: bigint; kind: MediaKind }
/** One SSRC that changed: now `userId`'s (previousUserId: whose it was), or nobody's (unmapped). */
export interface SourceChange { ssrc: number; userId: bigint; kind: MediaKind; unmapped: boolean; previousUserId?: bigint }
/** A groupCallParticipantVideo as mtcute gives it. */
export interface ParticipantVideo { endpoint?: string; sourceGroups: { semantics?: string; sources: number[] }[]; audioSource?: number }
/** A participant with its sources (mtcute's groupCallParticipant with the user id taken out). */
export interface ParticipantRecord { userId: bigint; left?: boolean; date?: number; source: number; video?: ParticipantVideo; presentation?: ParticipantVideo }
/** A decrypted frame and who sent it. */
export interface SourcedFrame extends ReceivedFrame { userId: bigint; kind: MediaKind }
"#;

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Screencast => "screencast",
        MediaKind::ScreencastAudio => "screencastAudio",
    }
}

/// An SSRC: a number 0..=2^32-1, or a negative 32-bit one (a TL `int` as mtcute gives it).
pub(crate) fn ssrc(v: &JsValue, field: &str) -> Result<u32, JsValue> {
    let n = v.as_f64().ok_or_else(|| type_error(field, "a number", v))?;
    if n.fract() != 0.0 || !(f64::from(i32::MIN)..=f64::from(u32::MAX)).contains(&n) {
        return Err(bad(&format!("{field}: expected a 32-bit SSRC, got {n}")));
    }
    Ok(if n < 0.0 { (n as i32).cast_unsigned() } else { n as u32 })
}

fn video(v: &JsValue, field: &str) -> Result<Option<VideoSources>, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    let mut source_groups = Vec::new();
    for (i, g) in
        items(&get(v, "sourceGroups"), &format!("{field}.sourceGroups"))?.iter().enumerate().take(MAX_SOURCE_GROUPS)
    {
        let f = format!("{field}.sourceGroups[{i}].sources");
        let sources = items(&get(g, "sources"), &f)?
            .iter()
            .take(MAX_GROUP_SOURCES)
            .map(|s| ssrc(s, &f))
            .collect::<Result<_, _>>()?;
        source_groups.push(SourceGroup { semantics: get(g, "semantics").as_string().unwrap_or_default(), sources });
    }
    let audio = get(v, "audioSource");
    let audio_source = if audio.is_undefined() || audio.is_null() {
        None
    } else {
        Some(ssrc(&audio, &format!("{field}.audioSource"))?)
    };
    Ok(Some(VideoSources { endpoint: get(v, "endpoint").as_string().unwrap_or_default(), source_groups, audio_source }))
}

/// A participant record from mtcute's `groupCallParticipant` fields with the user id: `{userId,
/// left, source, date, video, presentation}` (what the session's participant updates and the
/// `SourceTable` take).
pub(crate) fn record(p: &JsValue, field: &str) -> Result<ParticipantSources, JsValue> {
    let audio = get(p, "source");
    let sources = MediaSources {
        audio: if audio.is_undefined() { 0 } else { ssrc(&audio, &format!("{field}.source"))? },
        video: video(&get(p, "video"), &format!("{field}.video"))?,
        presentation: video(&get(p, "presentation"), &format!("{field}.presentation"))?,
    };
    Ok(ParticipantSources {
        user_id: user_id(&get(p, "userId"), &format!("{field}.userId"))?,
        left: get(p, "left").as_bool().unwrap_or(false),
        date: get(p, "date")
            .as_f64()
            .filter(|d| d.fract() == 0.0 && d.abs() <= f64::from(i32::MAX))
            .map_or(0, |d| d as i32),
        version: 0,
        sources,
    })
}

fn video_value(v: &VideoSources) -> JsValue {
    let o = js_sys::Object::new();
    set(&o, "endpoint", v.endpoint.as_str().into());
    let groups: js_sys::Array = v
        .source_groups
        .iter()
        .map(|g| {
            let go = js_sys::Object::new();
            set(&go, "semantics", g.semantics.as_str().into());
            let list: js_sys::Array = g.sources.iter().map(|s| JsValue::from(*s)).collect();
            set(&go, "sources", list.into());
            JsValue::from(go)
        })
        .collect();
    set(&o, "sourceGroups", groups.into());
    if let Some(a) = v.audio_source {
        set(&o, "audioSource", a.into());
    }
    o.into()
}

/// A participant record as [`record`] reads it: `{userId, left, date, source, video?,
/// presentation?}`.
pub(crate) fn record_value(p: &ParticipantSources) -> JsValue {
    let o = js_sys::Object::new();
    set(&o, "userId", js_sys::BigInt::from(p.user_id).into());
    set(&o, "left", p.left.into());
    set(&o, "date", p.date.into());
    set(&o, "source", p.sources.audio.into());
    if let Some(v) = &p.sources.video {
        set(&o, "video", video_value(v));
    }
    if let Some(v) = &p.sources.presentation {
        set(&o, "presentation", video_value(v));
    }
    o.into()
}

fn source_value(s: &Source) -> js_sys::Object {
    let o = js_sys::Object::new();
    set(&o, "userId", js_sys::BigInt::from(s.user_id).into());
    set(&o, "kind", kind_name(s.kind).into());
    o
}

/// The SSRC → sender table of one call (`confchain::sources::SourceTable`), or a read-only view
/// of the one a session keeps (`Session.sourceMap()`).
#[wasm_bindgen]
pub struct SourceTable {
    table: src::SourceTable,
    /// The session's map, for a view (`apply` refuses: the session applies its updates).
    shared: Option<src::SourceMap>,
}

impl Default for SourceTable {
    fn default() -> Self {
        SourceTable::new(None)
    }
}

impl SourceTable {
    /// A read-only view of a session's map.
    pub(crate) fn view(map: src::SourceMap) -> SourceTable {
        SourceTable { table: src::SourceTable::new(), shared: Some(map) }
    }

    pub(crate) fn map(&self) -> src::SourceMap {
        self.shared.clone().unwrap_or_else(|| self.table.map())
    }
}

#[wasm_bindgen]
impl SourceTable {
    /// An empty table holding up to `capacity` participants (default 1,000: five times the
    /// default call size limit; a session keeps its own table): past it the
    /// participant updated least recently is forgotten.
    #[wasm_bindgen(constructor)]
    pub fn new(capacity: Option<u32>) -> SourceTable {
        let table = capacity.map_or_else(src::SourceTable::new, |c| src::SourceTable::with_capacity(c as usize));
        SourceTable { table, shared: None }
    }

    /// Applies participant records in order (an updateGroupCallParticipants, or the answer of a
    /// lookup): `[{userId, left, source, video?, presentation?}]`. Returns what changed. A view
    /// of a session's map refuses (the session applies its own participant updates).
    #[wasm_bindgen(unchecked_return_type = "SourceChange[]")]
    pub fn apply(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "ParticipantRecord[]")] participants: &JsValue,
    ) -> Result<JsValue, JsValue> {
        if self.shared.is_some() {
            return Err(bad("apply: this is the session's map; the session applies its participant updates"));
        }
        let records = items(participants, "participants")?
            .iter()
            .enumerate()
            .map(|(i, p)| record(p, &format!("participants[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let out = js_sys::Array::new();
        for change in self.table.apply(&records) {
            let (ssrc, source, previous, unmapped) = match change {
                SourceChange::Mapped { ssrc, source, previous } => (ssrc, source, previous, false),
                SourceChange::Unmapped { ssrc, source } => (ssrc, source, None, true),
            };
            let o = source_value(&source);
            set(&o, "ssrc", ssrc.into());
            set(&o, "unmapped", unmapped.into());
            if let Some(p) = previous.filter(|p| p.user_id != source.user_id) {
                set(&o, "previousUserId", js_sys::BigInt::from(p.user_id).into());
            }
            out.push(&o);
        }
        Ok(out.into())
    }

    /// The sender of `ssrc`, or undefined.
    #[wasm_bindgen(unchecked_return_type = "Source | undefined")]
    pub fn get(&self, ssrc: u32) -> JsValue {
        self.map().get(ssrc).map_or(JsValue::UNDEFINED, |s| source_value(&s).into())
    }

    /// The SSRCs frames came on that the table did not map, since the last call (to look up;
    /// a session's map is looked up by the session: leave its misses to it).
    #[wasm_bindgen(js_name = takeMisses)]
    pub fn take_misses(&self) -> Vec<u32> {
        self.map().take_misses()
    }

    /// How many SSRCs are mapped.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        u32::try_from(self.map().len()).unwrap_or(u32::MAX)
    }
}

/// Sets `userId` and `kind` of `source` on a decrypted frame's object.
pub(crate) fn set_source(o: &js_sys::Object, source: &Source) {
    set(o, "userId", js_sys::BigInt::from(source.user_id).into());
    set(o, "kind", kind_name(source.kind).into());
}
