//! Who sent a frame (`engine::sources`): the SSRC table, fed with participants as Telethon and
//! Pyrogram give them, for decryption by RTP SSRC (`Call.decrypt_frame_from_source`).

use engine::api::{MediaSources, ParticipantSources, SourceGroup, VideoSources};
use engine::limits::{MAX_GROUP_SOURCES, MAX_SOURCE_GROUPS};
use engine::sources::{self as src, MediaKind, Source, SourceChange};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// `(source_groups, audio_source)`: the SSRC lists of a `groupCallParticipantVideo`'s groups.
type VideoArg = (Vec<Vec<i64>>, Option<i64>);

/// `(frame, level, speech, user_id, kind)`.
pub(crate) type Sourced<'py> = (Bound<'py, PyBytes>, Option<u8>, Option<bool>, i64, &'static str);

pub(crate) fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Screencast => "screencast",
        MediaKind::ScreencastAudio => "screencast_audio",
    }
}

/// An SSRC: 0..=2^32-1, or a negative 32-bit TL `int` as the libraries give it.
fn ssrc(v: i64) -> PyResult<u32> {
    if let Ok(n) = u32::try_from(v) {
        return Ok(n);
    }
    i32::try_from(v).map(i32::cast_unsigned).map_err(|_| PyValueError::new_err(format!("not a 32-bit SSRC: {v}")))
}

fn video(v: Option<VideoArg>) -> PyResult<Option<VideoSources>> {
    let Some((groups, audio)) = v else { return Ok(None) };
    let source_groups = groups
        .into_iter()
        .take(MAX_SOURCE_GROUPS)
        .map(|g| {
            let sources = g.into_iter().take(MAX_GROUP_SOURCES).map(ssrc).collect::<PyResult<_>>()?;
            Ok(SourceGroup { semantics: String::new(), sources })
        })
        .collect::<PyResult<_>>()?;
    Ok(Some(VideoSources { endpoint: String::new(), source_groups, audio_source: audio.map(ssrc).transpose()? }))
}

/// The SSRC → sender table of one call. `apply([(user_id, left, source, video, presentation)])`
/// with `video` / `presentation` None or `([ssrcs of each source group], audio_source or None)`;
/// `get(ssrc)` is `(user_id, kind)` or None, `kind` one of "audio", "video", "screencast",
/// "screencast_audio".
#[pyclass(module = "confchain")]
pub(crate) struct SourceTable(pub(crate) src::SourceTable);

#[pymethods]
impl SourceTable {
    #[new]
    fn new() -> Self {
        SourceTable(src::SourceTable::new())
    }

    /// Applies participant records in order; returns what changed: `[(ssrc, user_id, kind,
    /// unmapped, previous_user_id)]`.
    #[allow(clippy::type_complexity)]
    fn apply(
        &mut self,
        participants: Vec<(i64, bool, i64, Option<VideoArg>, Option<VideoArg>)>,
    ) -> PyResult<Vec<(u32, i64, &'static str, bool, Option<i64>)>> {
        let records = participants
            .into_iter()
            .map(|(user_id, left, audio, v, p)| {
                let sources = MediaSources { audio: ssrc(audio)?, video: video(v)?, presentation: video(p)? };
                Ok(ParticipantSources { user_id, left, sources, ..ParticipantSources::default() })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(self
            .0
            .apply(&records)
            .into_iter()
            .map(|c| match c {
                SourceChange::Mapped { ssrc, source, previous } => (
                    ssrc,
                    source.user_id,
                    kind_name(source.kind),
                    false,
                    previous.map(|p| p.user_id).filter(|u| *u != source.user_id),
                ),
                SourceChange::Unmapped { ssrc, source } => (ssrc, source.user_id, kind_name(source.kind), true, None),
            })
            .collect())
    }

    /// `(user_id, kind)` of `ssrc`, or None.
    fn get(&self, ssrc: u32) -> Option<(i64, &'static str)> {
        self.0.get(ssrc).map(|s| (s.user_id, kind_name(s.kind)))
    }

    /// The SSRCs frames came on that the table did not map, since the last call (to look up).
    fn take_misses(&self) -> Vec<u32> {
        self.0.map().take_misses()
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }
}

/// The sender of `ssrc` in `table` (an unknown SSRC raises `FRAME__UNKNOWN_SOURCE` and is kept
/// for `take_misses`).
pub(crate) fn sender(table: &SourceTable, ssrc: u32) -> PyResult<Source> {
    table.0.map().sender(ssrc).map_err(crate::err)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SourceTable>()
}
