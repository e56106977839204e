//! Who sent a frame (`engine::sources`): the SSRC table, fed with participants as Telethon and
//! Pyrogram give them, for decryption by RTP SSRC (`Call.decrypt_frame_from_source`), or the
//! session's own (`Session.source_map()`), fed by the session's participant updates.
//!
//! A participant record is the tuple `(user_id, left, source, video, presentation, date,
//! version)`, every field after `left` optional from the end: `(user_id, left)` is a record
//! with no sources. `SourceTable.apply` and `update_participants` take the same records.

use engine::api::{CallParticipant, MediaSources, SourceGroup, VideoSources};
use engine::limits::{MAX_GROUP_SOURCES, MAX_SOURCE_GROUPS};
use engine::sources::{self as src, MediaKind, SourceChange};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

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

/// A participant record: `(user_id, left, source, video, presentation, date, version)`, the
/// fields after `left` optional from the end (`(user_id, left)` has no sources). `source` is the
/// audio SSRC (0: none), `video` / `presentation` None or `([ssrcs of each source group],
/// audio_source or None)`, `date` the participation's start (Unix seconds, 0: not known),
/// `version` the update's (0: not known).
pub(crate) struct Record(pub(crate) CallParticipant);

impl<'py> FromPyObject<'py> for Record {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        let t = ob.downcast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(
                "a participant record is a tuple (user_id, left, source, video, presentation, date, version)",
            )
        })?;
        if !(2..=7).contains(&t.len()) {
            return Err(PyValueError::new_err(format!(
                "a participant record has 2 to 7 fields (user_id, left, source, video, presentation, date, version), got {}",
                t.len()
            )));
        }
        // A field the tuple leaves out, or None, is the field's default.
        let field = |i: usize| t.get_item(i).ok().filter(|v| !v.is_none());
        let mut p = CallParticipant::new(t.get_item(0)?.extract()?, t.get_item(1)?.extract()?);
        p.sources = MediaSources {
            audio: field(2).map(|v| v.extract()).transpose()?.map(ssrc).transpose()?.unwrap_or(0),
            video: video(field(3).map(|v| v.extract()).transpose()?)?,
            presentation: video(field(4).map(|v| v.extract()).transpose()?)?,
        };
        p.date = field(5).map(|v| v.extract()).transpose()?.unwrap_or(0);
        p.version = field(6).map(|v| v.extract()).transpose()?.unwrap_or(0);
        Ok(Record(p))
    }
}

/// The SSRC → sender table of one call, or a read-only view of the one a session keeps
/// (`Session.source_map()`). `apply([record])` takes participant records (see `Record`);
/// `get(ssrc)` is `(user_id, kind)` or None, `kind` one of "audio", "video", "screencast",
/// "screencast_audio".
#[pyclass(module = "confchain")]
pub(crate) struct SourceTable {
    /// The table this object owns (unused in a view).
    table: src::SourceTable,
    /// The session's map, for a view (`apply` refuses: the session applies its updates).
    shared: Option<src::SourceMap>,
}

impl SourceTable {
    /// A read-only view of a session's map.
    pub(crate) fn view(map: src::SourceMap) -> SourceTable {
        SourceTable { table: src::SourceTable::new(), shared: Some(map) }
    }

    /// The map frames are decrypted through (lock-free to read).
    pub(crate) fn map(&self) -> src::SourceMap {
        self.shared.clone().unwrap_or_else(|| self.table.map())
    }
}

#[pymethods]
impl SourceTable {
    /// An empty table holding up to `capacity` participants (default 1,000: five times the
    /// default call size limit; a session's own table follows its `call_size_limit`): past it
    /// the participant updated least recently is forgotten.
    #[new]
    #[pyo3(signature = (capacity = None))]
    fn new(capacity: Option<usize>) -> Self {
        let table = capacity.map_or_else(src::SourceTable::new, src::SourceTable::with_capacity);
        SourceTable { table, shared: None }
    }

    /// Applies participant records in order; returns what changed: `[(ssrc, user_id, kind,
    /// unmapped, previous_user_id)]`. A view of a session's map raises (the session applies its
    /// own participant updates).
    #[allow(clippy::type_complexity)]
    fn apply(&mut self, participants: Vec<Record>) -> PyResult<Vec<(u32, i64, &'static str, bool, Option<i64>)>> {
        if self.shared.is_some() {
            return Err(PyValueError::new_err(
                "apply: this is the session's map; the session applies its participant updates",
            ));
        }
        let records: Vec<CallParticipant> = participants.into_iter().map(|r| r.0).collect();
        Ok(self
            .table
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
        self.map().get(ssrc).map(|s| (s.user_id, kind_name(s.kind)))
    }

    /// The SSRCs frames came on that the table did not map, since the last call (to look up; a
    /// session's map is looked up by the session: leave its misses to it).
    fn take_misses(&self) -> Vec<u32> {
        self.map().take_misses()
    }

    fn __len__(&self) -> usize {
        self.map().len()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SourceTable>()
}
