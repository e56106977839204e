//! Who sent a frame (SPEC §18): the SSRC → sender table a media stack decrypts through, fed
//! with participant records (`updateGroupCallParticipants`, a `phone.groupParticipants`
//! answer), standalone or the session's own (`confchain_session_source_map`), and frames
//! decrypted by their RTP SSRC on a call, a session and a media decryptor.
//!
//! A table handle follows the handle rule (one thread at a time); a view
//! (`confchain_session_source_map`, `confchain_source_table_view`) is read-only and may be read
//! from any threads at once (lock-free), while the session or the table it shares applies
//! updates. An SSRC no record maps fails with `CONFCHAIN_KIND_FRAME_UNKNOWN_SOURCE` (no key is
//! tried) and is kept for a lookup: the session looks up its own map's misses
//! (`CONFCHAIN_REQUEST_GET_GROUP_PARTICIPANTS`); a standalone table's are taken with
//! `confchain_source_table_take_misses`.

use engine::api::{CallParticipant, MediaSources, SourceGroup, VideoSources};
use engine::limits::{MAX_GROUP_SOURCES, MAX_REPORTED_MISSES, MAX_SOURCE_GROUPS};
use engine::session::Update;
use engine::sources::{MediaKind, Source, SourceMap, SourceTable};

use crate::call::confchain_call;
use crate::error::{guard, invalid};
use crate::frame::{confchain_received_frame, decrypt_frame, Sender};
use crate::media::confchain_media_decryptor;
use crate::memory::{free_handle, handle, handle_mut, list, out};
use crate::session::{confchain_session, confchain_updates, session_call};

/// A source's media (`confchain_source.kind`): the microphone (`source`, or a camera's
/// `audio_source`).
pub const CONFCHAIN_MEDIA_KIND_AUDIO: i32 = 1;
/// The camera (`video` source groups).
pub const CONFCHAIN_MEDIA_KIND_VIDEO: i32 = 2;
/// The screencast (`presentation` source groups).
pub const CONFCHAIN_MEDIA_KIND_SCREENCAST: i32 = 3;
/// The screencast's audio (`presentation.audio_source`).
pub const CONFCHAIN_MEDIA_KIND_SCREENCAST_AUDIO: i32 = 4;
/// The most SSRCs `confchain_source_table_take_misses` returns at once (its buffer's size).
pub const CONFCHAIN_MAX_REPORTED_MISSES: usize = 64;

/// One participant record: a `groupCallParticipant` of a user, with its sources. SSRCs are the
/// TL `int`s' 32 bits (0: none).
#[repr(C)]
pub struct confchain_participant_record {
    /// The participant's user id (`peer`).
    pub user_id: i64,
    /// 1: the participation named by `source` (and `date`) has ended.
    pub left: u8,
    /// When the participation began (Unix seconds; 0: not known).
    pub date: i32,
    /// The `version` of the update that carried it (0: not known).
    pub version: i32,
    /// `source`: the audio SSRC, which names the participation.
    pub source: u32,
    /// The camera's SSRCs (`video.source_groups`, every group's in order; NULL when `video_len`
    /// is 0: no camera). At most 64.
    pub video: *const u32,
    /// Their number.
    pub video_len: usize,
    /// `video.audio_source` (0: none).
    pub video_audio: u32,
    /// The screencast's SSRCs (`presentation.source_groups`, as `video`).
    pub presentation: *const u32,
    /// Their number.
    pub presentation_len: usize,
    /// `presentation.audio_source` (0: none).
    pub presentation_audio: u32,
}

/// The sender of an SSRC.
#[repr(C)]
pub struct confchain_source {
    /// Its user id.
    pub user_id: i64,
    /// What it carries: a `CONFCHAIN_MEDIA_KIND_*`.
    pub kind: i32,
}

/// An SSRC → sender table (`confchain_source_table_new`), or a read-only view of one
/// (`confchain_session_source_map`, `confchain_source_table_view`).
pub struct confchain_source_table {
    /// The table this handle owns (None for a view).
    table: Option<SourceTable>,
    /// The map frames are decrypted through: the table's, or the one a view shares.
    pub(crate) map: SourceMap,
}

impl confchain_source_table {
    fn owned(table: SourceTable) -> Self {
        confchain_source_table { map: table.map(), table: Some(table) }
    }

    fn view(map: SourceMap) -> Self {
        confchain_source_table { table: None, map }
    }
}

fn kind_constant(kind: MediaKind) -> i32 {
    match kind {
        MediaKind::Audio => CONFCHAIN_MEDIA_KIND_AUDIO,
        MediaKind::Video => CONFCHAIN_MEDIA_KIND_VIDEO,
        MediaKind::Screencast => CONFCHAIN_MEDIA_KIND_SCREENCAST,
        _ => CONFCHAIN_MEDIA_KIND_SCREENCAST_AUDIO,
    }
}

pub(crate) unsafe fn write_source(out_source: *mut confchain_source, s: Source) {
    if let Some(o) = out_source.as_mut() {
        *o = confchain_source { user_id: s.user_id, kind: kind_constant(s.kind) };
    }
}

/// A camera's or screencast's SSRCs as source groups of at most `MAX_GROUP_SOURCES` (the table
/// reads only the SSRCs).
unsafe fn video(ssrcs: *const u32, len: usize, audio: u32, what: &str) -> Result<Option<VideoSources>, i32> {
    let max = MAX_SOURCE_GROUPS * MAX_GROUP_SOURCES;
    if len > max {
        return Err(invalid(&format!("{what}: {len} SSRCs, at most {max}")));
    }
    let ssrcs = list(ssrcs, len, what)?;
    if ssrcs.is_empty() && audio == 0 {
        return Ok(None);
    }
    let source_groups = ssrcs
        .chunks(MAX_GROUP_SOURCES)
        .map(|g| SourceGroup { semantics: String::new(), sources: g.to_vec() })
        .collect();
    Ok(Some(VideoSources { endpoint: String::new(), source_groups, audio_source: (audio != 0).then_some(audio) }))
}

unsafe fn records(records: *const confchain_participant_record, count: usize) -> Result<Vec<CallParticipant>, i32> {
    list(records, count, "records")?
        .iter()
        .map(|r| {
            let sources = MediaSources {
                audio: r.source,
                video: video(r.video, r.video_len, r.video_audio, "video")?,
                presentation: video(r.presentation, r.presentation_len, r.presentation_audio, "presentation")?,
            };
            Ok(CallParticipant { user_id: r.user_id, left: r.left != 0, date: r.date, version: r.version, sources })
        })
        .collect()
}

/// An empty SSRC table holding up to 1,000 participants (five times the default call size
/// limit; the session's own table follows its `call_size_limit`): past it the participant
/// updated least recently is forgotten.
#[no_mangle]
pub unsafe extern "C" fn confchain_source_table_new(out_table: *mut *mut confchain_source_table) -> i32 {
    guard(|| {
        *out(out_table)? = Box::into_raw(Box::new(confchain_source_table::owned(SourceTable::new())));
        Ok(())
    })
}

/// An empty SSRC table holding up to `participants` participants (at least one).
#[no_mangle]
pub unsafe extern "C" fn confchain_source_table_with_capacity(
    participants: usize,
    out_table: *mut *mut confchain_source_table,
) -> i32 {
    guard(|| {
        let table = SourceTable::with_capacity(participants);
        *out(out_table)? = Box::into_raw(Box::new(confchain_source_table::owned(table)));
        Ok(())
    })
}

/// Frees a table or a view (a view's session or table is unaffected).
#[no_mangle]
pub unsafe extern "C" fn confchain_source_table_free(table: *mut confchain_source_table) {
    free_handle(table)
}

/// A read-only view of the session's SSRC map, live: the session fills it from participant
/// updates, its join's answer and its lookups, and empties it when it leaves the call. Free
/// with `confchain_source_table_free` (any time; the session keeps its map).
#[no_mangle]
pub unsafe extern "C" fn confchain_session_source_map(
    session: *const confchain_session,
    out_view: *mut *mut confchain_source_table,
) -> i32 {
    guard(|| {
        let map = handle(session)?.0.source_map();
        *out(out_view)? = Box::into_raw(Box::new(confchain_source_table::view(map)));
        Ok(())
    })
}

/// A read-only view of `table` (or of the map `table` views), for media threads: any number of
/// threads may read through views at once while the table's owner applies records.
#[no_mangle]
pub unsafe extern "C" fn confchain_source_table_view(
    table: *const confchain_source_table,
    out_view: *mut *mut confchain_source_table,
) -> i32 {
    guard(|| {
        let map = handle(table)?.map.clone();
        *out(out_view)? = Box::into_raw(Box::new(confchain_source_table::view(map)));
        Ok(())
    })
}

/// Applies `count` participant records in order (an `updateGroupCallParticipants`, or a
/// lookup's answer); `*out_changes` (may be null) gets how many SSRCs changed. A view is
/// refused (the session applies its own updates: give them to it with
/// `confchain_updates_add_participants`).
#[no_mangle]
pub unsafe extern "C" fn confchain_source_table_apply(
    table: *mut confchain_source_table,
    records: *const confchain_participant_record,
    count: usize,
    out_changes: *mut usize,
) -> i32 {
    guard(|| {
        let Some(table) = handle_mut(table)?.table.as_mut() else {
            return Err(invalid("a view of a map: its session or table applies the records"));
        };
        let changes = table.apply(&self::records(records, count)?).len();
        if let Some(o) = out_changes.as_mut() {
            *o = changes;
        }
        Ok(())
    })
}

/// The sender of `ssrc`: `*out_found` 1 and `*out_source` set, or `*out_found` 0.
#[no_mangle]
pub unsafe extern "C" fn confchain_source_table_get(
    table: *const confchain_source_table,
    ssrc: u32,
    out_source: *mut confchain_source,
    out_found: *mut u8,
) -> i32 {
    guard(|| {
        let (map, found, source) = (&handle(table)?.map, out(out_found)?, out(out_source)?);
        *found = 0;
        if let Some(s) = map.get(ssrc) {
            *found = 1;
            write_source(source, s);
        }
        Ok(())
    })
}

/// How many SSRCs are mapped.
#[no_mangle]
pub unsafe extern "C" fn confchain_source_table_len(table: *const confchain_source_table, out_len: *mut usize) -> i32 {
    guard(|| {
        *out(out_len)? = handle(table)?.map.len();
        Ok(())
    })
}

/// Takes the SSRCs frames came on that the table did not map, since the last call (to look up
/// with `phone.getGroupParticipants`): into `out_ssrcs` of capacity `cap`, at least
/// `CONFCHAIN_MAX_REPORTED_MISSES` (refused before anything is taken); `*out_len` gets their
/// number. A session's map is looked up by the session: leave its misses to it.
#[no_mangle]
pub unsafe extern "C" fn confchain_source_table_take_misses(
    table: *const confchain_source_table,
    out_ssrcs: *mut u32,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let (map, len) = (&handle(table)?.map, out(out_len)?);
        *len = 0;
        if cap < MAX_REPORTED_MISSES || out_ssrcs.is_null() {
            return Err(invalid("take_misses: a buffer of at least CONFCHAIN_MAX_REPORTED_MISSES SSRCs"));
        }
        let misses = map.take_misses();
        let n = misses.len().min(cap);
        std::ptr::copy_nonoverlapping(misses.as_ptr(), out_ssrcs, n);
        *len = n;
        Ok(())
    })
}

/// Adds an `updateGroupCallParticipants` (or a `phone.groupParticipants` answer, as the
/// response to `CONFCHAIN_REQUEST_GET_GROUP_PARTICIPANTS`): `count` participant records. The
/// session keeps their sources in its map (`confchain_session_source_map`).
#[no_mangle]
pub unsafe extern "C" fn confchain_updates_add_participants(
    updates: *mut confchain_updates,
    records: *const confchain_participant_record,
    count: usize,
) -> i32 {
    guard(|| {
        let participants = self::records(records, count)?;
        handle_mut(updates)?.0.push((0, Update::Participants { participants }));
        Ok(())
    })
}

/// The table behind a handle (null refused).
pub(crate) unsafe fn table<'a>(table: *const confchain_source_table) -> Result<&'a confchain_source_table, i32> {
    handle(table)
}

/// `confchain_call_decrypt_frame` for the sender `table` maps `ssrc` to (its user id and kind in
/// `*out_source`, may be null). An SSRC the table does not map fails with
/// `CONFCHAIN_KIND_FRAME_UNKNOWN_SOURCE` at once (no key is tried) and is kept for a lookup.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_call_decrypt_frame_from_source(
    call: *mut confchain_call,
    table: *const confchain_source_table,
    ssrc: u32,
    codec: i32,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    info: *mut confchain_received_frame,
    out_source: *mut confchain_source,
) -> i32 {
    let sender = Sender::Source(table, ssrc, out_source);
    decrypt_frame(
        || Ok(&mut handle_mut(call)?.0),
        sender,
        codec,
        (packet, packet_len),
        now_ms,
        (out_buf, out_cap, out_len),
        info,
    )
}

/// `confchain_call_decrypt_frame_from_source` with the session's call.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_session_decrypt_frame_from_source(
    session: *mut confchain_session,
    table: *const confchain_source_table,
    ssrc: u32,
    codec: i32,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    info: *mut confchain_received_frame,
    out_source: *mut confchain_source,
) -> i32 {
    let sender = Sender::Source(table, ssrc, out_source);
    decrypt_frame(
        || session_call(handle_mut(session)?),
        sender,
        codec,
        (packet, packet_len),
        now_ms,
        (out_buf, out_cap, out_len),
        info,
    )
}

/// `confchain_call_decrypt_frame_from_source` on a media decryptor: thread-safe (read the table
/// through a view from several threads).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn confchain_media_decrypt_frame_from_source(
    decryptor: *const confchain_media_decryptor,
    table: *const confchain_source_table,
    ssrc: u32,
    codec: i32,
    packet: *const u8,
    packet_len: usize,
    now_ms: u64,
    out_buf: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    info: *mut confchain_received_frame,
    out_source: *mut confchain_source,
) -> i32 {
    let sender = Sender::Source(table, ssrc, out_source);
    decrypt_frame(
        || Ok(&handle(decryptor)?.0),
        sender,
        codec,
        (packet, packet_len),
        now_ms,
        (out_buf, out_cap, out_len),
        info,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_the_cores() {
        assert_eq!(CONFCHAIN_MAX_REPORTED_MISSES, MAX_REPORTED_MISSES);
        let kinds = [MediaKind::Audio, MediaKind::Video, MediaKind::Screencast, MediaKind::ScreencastAudio];
        assert_eq!(kinds.map(kind_constant), [1, 2, 3, 4]);
    }

    /// A camera of 64 SSRCs is 8 groups of 8; one more is refused.
    #[test]
    fn video_ssrcs_are_bounded() {
        let ssrcs: Vec<u32> = (1..=65).collect();
        let v = unsafe { video(ssrcs.as_ptr(), 64, 0, "video") }.unwrap().unwrap();
        assert_eq!(v.source_groups.len(), MAX_SOURCE_GROUPS);
        assert!(unsafe { video(ssrcs.as_ptr(), 65, 0, "video") }.is_err());
        assert!(unsafe { video(std::ptr::null(), 0, 0, "video") }.unwrap().is_none());
    }
}
