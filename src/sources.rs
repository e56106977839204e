//! Who sends on an RTP SSRC: the table from media sources to the member whose key opens their
//! frames, the lock-free handle media threads read it through, and the scheduler of
//! `phone.getGroupParticipants` lookups for SSRCs nobody has told us about yet.
//!
//! ```text
//!  participant records ─▶ SourceTable::apply ─▶ SourceChange records (for events)
//!  (updates, lookup answers)      │
//!                                 └─ publish (pointer swap) ─▶ SourceMap ◀─ media threads: get(ssrc)
//!                                                                 │ unknown SSRCs reported
//!  LookupScheduler ◀── note_unknown(ssrc, now) ◀── take_misses() ─┘
//!        └─▶ poll_lookup(now) ─▶ SourceLookup (phone.getGroupParticipants) ─▶ answer ─▶ apply, on_answer
//! ```
//!
//! Everything here is bounded whatever a hostile server sends: at most
//! [`MAX_SOURCES_PER_PARTICIPANT`] SSRCs per participant and [`MAX_SOURCE_PARTICIPANTS`]
//! participants (the one updated least recently is forgotten past it); at most
//! [`MAX_PENDING_LOOKUPS`] SSRCs wait for a lookup, at most one lookup goes out per
//! [`LOOKUP_INTERVAL_MS`], and an SSRC waits at most [`LOOKUP_DEADLINE_MS`] before it is given up
//! with a typed reason. Time is passed in (`now`, milliseconds); nothing here reads a clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::api::{ParticipantSources, SourceLookup};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::{
    LOOKUP_DEADLINE_MS, LOOKUP_INTERVAL_MS, LOOKUP_NEGATIVE_MS, MAX_LOOKUP_BATCH, MAX_PENDING_LOOKUPS,
    MAX_REPORTED_MISSES, MAX_SOURCES_PER_PARTICIPANT, MAX_SOURCE_PARTICIPANTS,
};

/// What a source carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    /// The microphone (`groupCallParticipant.source`).
    Audio,
    /// The camera (`video` source groups).
    Video,
    /// The screencast (`presentation` source groups).
    Screencast,
    /// The screencast's audio (`presentation.audio_source`).
    ScreencastAudio,
}

impl MediaKind {
    /// A stable name: `audio`, `video`, `screencast` or `screencast_audio`.
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Screencast => "screencast",
            MediaKind::ScreencastAudio => "screencast_audio",
        }
    }
}

/// The sender of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// The member's user id: the key that opens the frames.
    pub user_id: i64,
    /// What the source carries.
    pub kind: MediaKind,
}

/// How the table changed: one record per SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceChange {
    /// `ssrc` is now `source`'s; `previous` is whose it was (an SSRC moved to a new participation,
    /// or changed kind), if anyone's.
    Mapped {
        /// The SSRC.
        ssrc: u32,
        /// Its sender now.
        source: Source,
        /// Its sender before.
        previous: Option<Source>,
    },
    /// `ssrc` is nobody's any more (its participant left, stopped that media, or was forgotten).
    Unmapped {
        /// The SSRC.
        ssrc: u32,
        /// Whose it was.
        source: Source,
    },
}

/// The SSRCs of one participant record, with their kinds: audio, camera, screencast, screencast
/// audio, in that order; 0 ("none") and repeats skipped, at most [`MAX_SOURCES_PER_PARTICIPANT`].
pub fn sources_of(record: &ParticipantSources) -> Vec<(u32, MediaKind)> {
    let s = &record.sources;
    let mut all = vec![(s.audio, MediaKind::Audio)];
    for (video, kind, audio_kind) in [
        (&s.video, MediaKind::Video, MediaKind::Audio),
        (&s.presentation, MediaKind::Screencast, MediaKind::ScreencastAudio),
    ] {
        if let Some(v) = video {
            all.extend(v.source_groups.iter().flat_map(|g| g.sources.iter().map(move |&x| (x, kind))));
            all.extend(v.audio_source.map(|a| (a, audio_kind)));
        }
    }
    let mut out: Vec<(u32, MediaKind)> = Vec::with_capacity(all.len().min(MAX_SOURCES_PER_PARTICIPANT));
    for (ssrc, kind) in all {
        if out.len() == MAX_SOURCES_PER_PARTICIPANT {
            break;
        }
        if ssrc != 0 && !out.iter().any(|(s, _)| *s == ssrc) {
            out.push((ssrc, kind));
        }
    }
    out
}

/// One participation: the record that named it last (its audio SSRC and `date`: what a leave
/// names and what a late record is older than; without its sources) and its sources.
#[derive(Clone, Debug)]
struct Participation {
    record: ParticipantSources,
    sources: Vec<(u32, MediaKind)>,
    /// When it was last updated (the table's counter): the least recent is forgotten first.
    touched: u64,
}

/// The SSRC → sender table, kept by the signalling side from participant records. Media threads
/// read it through a [`SourceMap`] ([`SourceTable::map`]), which each [`SourceTable::apply`]
/// updates.
#[derive(Debug)]
pub struct SourceTable {
    by_ssrc: HashMap<u32, Source>,
    by_user: HashMap<i64, Participation>,
    /// Each participant by when it was last updated (its `touched`), least recent first: who is
    /// forgotten past the capacity, found without a scan.
    recency: BTreeMap<u64, i64>,
    counter: u64,
    /// Most participants held ([`SourceTable::with_capacity`]).
    capacity: usize,
    map: SourceMap,
}

/// A clone is an independent table with its own [`SourceMap`] (holding the same mappings):
/// what one applies, the other's readers do not see.
impl Clone for SourceTable {
    fn clone(&self) -> Self {
        let map = SourceMap::new();
        map.publish(self.by_ssrc.clone());
        SourceTable {
            by_ssrc: self.by_ssrc.clone(),
            by_user: self.by_user.clone(),
            recency: self.recency.clone(),
            counter: self.counter,
            capacity: self.capacity,
            map,
        }
    }
}

impl Default for SourceTable {
    fn default() -> Self {
        SourceTable::new()
    }
}

impl SourceTable {
    /// An empty table holding up to [`MAX_SOURCE_PARTICIPANTS`] participants.
    pub fn new() -> Self {
        SourceTable::with_capacity(MAX_SOURCE_PARTICIPANTS)
    }

    /// An empty table holding up to `participants` participants (at least one): past it, the
    /// participant updated least recently is forgotten. A session sizes it from its call size
    /// limit (`SessionConfig::max_source_participants`).
    ///
    /// ```
    /// use confchain::sources::SourceTable;
    ///
    /// let table = SourceTable::with_capacity(5_000);
    /// assert_eq!(table.capacity(), 5_000);
    /// assert!(table.is_empty());
    /// ```
    pub fn with_capacity(participants: usize) -> Self {
        SourceTable {
            by_ssrc: HashMap::new(),
            by_user: HashMap::new(),
            recency: BTreeMap::new(),
            counter: 0,
            capacity: participants.max(1),
            map: SourceMap::new(),
        }
    }

    /// Most participants held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The shared handle media threads read: it and its clones see what each
    /// [`SourceTable::apply`] publishes.
    pub fn map(&self) -> SourceMap {
        self.map.clone()
    }

    /// The sender of `ssrc`, if known.
    pub fn get(&self, ssrc: u32) -> Option<Source> {
        self.by_ssrc.get(&ssrc).copied()
    }

    /// How many SSRCs are mapped.
    pub fn len(&self) -> usize {
        self.by_ssrc.len()
    }

    /// Whether no SSRC is mapped.
    pub fn is_empty(&self) -> bool {
        self.by_ssrc.is_empty()
    }

    /// How many participants have sources.
    pub fn participants(&self) -> usize {
        self.by_user.len()
    }

    /// Applies participant records in order (an `updateGroupCallParticipants`, or the answer of a
    /// lookup), then publishes the new table to the [`SourceMap`] once. A record that has not
    /// `left` is the participant's whole current state: its SSRCs replace the ones it had (an
    /// SSRC another participant had moves, and says from whom). A `left` record ends the
    /// participation it names ([`ParticipantSources::same_participation`]: its audio SSRC, and its
    /// `date` where known), and only that one: a late leave of an earlier participation leaves a
    /// rejoined member's sources alone, even when the rejoin got the same SSRC back. A record of
    /// a participation older than the one the participant's sources came from
    /// ([`ParticipantSources::is_older_than`]: an earlier `date`) changes nothing. Returns one
    /// change per SSRC.
    pub fn apply(&mut self, records: &[ParticipantSources]) -> Vec<SourceChange> {
        let mut changes = Vec::new();
        for record in records {
            self.apply_one(record, &mut changes);
        }
        if !changes.is_empty() {
            self.map.publish(self.by_ssrc.clone());
        }
        changes
    }

    /// The current participation of `user_id` (its last record that has not left), if known.
    pub fn participation(&self, user_id: i64) -> Option<&ParticipantSources> {
        self.by_user.get(&user_id).map(|p| &p.record)
    }

    /// Forgets everything (the call ended or was left), publishing the empty table.
    pub fn clear(&mut self) -> Vec<SourceChange> {
        let mut changes: Vec<SourceChange> =
            self.by_ssrc.iter().map(|(&ssrc, &source)| SourceChange::Unmapped { ssrc, source }).collect();
        changes.sort_by_key(|c| match c {
            SourceChange::Mapped { ssrc, .. } | SourceChange::Unmapped { ssrc, .. } => *ssrc,
        });
        self.by_ssrc.clear();
        self.by_user.clear();
        self.recency.clear();
        self.map.publish(HashMap::new());
        changes
    }

    fn apply_one(&mut self, record: &ParticipantSources, changes: &mut Vec<SourceChange>) {
        let user_id = record.user_id;
        let held = self.by_user.get(&user_id).map(|p| &p.record);
        if held.is_some_and(|held| record.is_older_than(held)) {
            // A late record of an earlier participation: it undoes nothing.
            return;
        }
        if record.left {
            if held.is_some_and(|held| held.same_participation(record)) {
                self.remove_user(user_id, changes);
            }
            return;
        }
        let new = sources_of(record);
        // Make room before a newcomer: the participant updated least recently is forgotten.
        if !self.by_user.contains_key(&user_id) && self.by_user.len() >= self.capacity {
            if let Some((_, &oldest)) = self.recency.first_key_value() {
                self.remove_user(oldest, changes);
            }
        }
        // The sources it no longer has.
        if let Some(old) = self.by_user.get(&user_id) {
            let gone: Vec<u32> =
                old.sources.iter().map(|(s, _)| *s).filter(|s| !new.iter().any(|(n, _)| n == s)).collect();
            for ssrc in gone {
                if let Some(source) = self.by_ssrc.remove(&ssrc) {
                    changes.push(SourceChange::Unmapped { ssrc, source });
                }
            }
        }
        for &(ssrc, kind) in &new {
            let source = Source { user_id, kind };
            let previous = self.by_ssrc.insert(ssrc, source);
            if previous == Some(source) {
                continue;
            }
            if let Some(prev) = previous.filter(|p| p.user_id != user_id) {
                // The SSRC moves: it is no longer the other participant's.
                // Its participation keeps its name (its audio SSRC), so that its leave still
                // ends what remains of it.
                if let Some(other) = self.by_user.get_mut(&prev.user_id) {
                    other.sources.retain(|(s, _)| *s != ssrc);
                }
            }
            changes.push(SourceChange::Mapped { ssrc, source, previous });
        }
        self.counter = self.counter.saturating_add(1);
        let named = ParticipantSources {
            user_id,
            left: false,
            date: record.date,
            version: record.version,
            sources: crate::api::MediaSources { audio: record.sources.audio, ..Default::default() },
        };
        let participation = Participation { record: named, sources: new, touched: self.counter };
        if let Some(before) = self.by_user.insert(user_id, participation) {
            self.recency.remove(&before.touched);
        }
        self.recency.insert(self.counter, user_id);
    }

    /// Unmaps `ssrc` if it is still `source`'s, publishing the change; it can then be looked up
    /// again. For a table kept by hand: the session does not unmap on a stale report (a frame
    /// that `source`'s key does not open may be another member's, sent on that SSRC), it checks
    /// the mapping with a lookup ([`LookupScheduler::note_stale`]).
    pub fn unmap_stale(&mut self, ssrc: u32, source: Source) -> Vec<SourceChange> {
        if self.by_ssrc.get(&ssrc) != Some(&source) {
            return Vec::new();
        }
        self.by_ssrc.remove(&ssrc);
        if let Some(p) = self.by_user.get_mut(&source.user_id) {
            p.sources.retain(|(s, _)| *s != ssrc);
        }
        self.map.publish(self.by_ssrc.clone());
        vec![SourceChange::Unmapped { ssrc, source }]
    }

    fn remove_user(&mut self, user_id: i64, changes: &mut Vec<SourceChange>) {
        if let Some(p) = self.by_user.remove(&user_id) {
            self.recency.remove(&p.touched);
            for (ssrc, _) in p.sources {
                if let Some(source) = self.by_ssrc.remove(&ssrc) {
                    changes.push(SourceChange::Unmapped { ssrc, source });
                }
            }
        }
    }
}

/// The shared, read-mostly view of a [`SourceTable`] for media threads (`Send + Sync`, cheap
/// to clone). Reading never takes a lock: the table publishes a new snapshot by swapping a
/// pointer (`arc-swap`), and a reader sees either the old or the new one. An SSRC a reader does
/// not find is reported ([`SourceMap::report_unknown`]) for the signalling side to look up
/// ([`SourceMap::take_misses`]); that report takes a short lock, at most
/// [`MAX_REPORTED_MISSES`] SSRCs wait in it.
#[derive(Clone, Debug)]
pub struct SourceMap {
    inner: Arc<MapInner>,
}

#[derive(Debug)]
struct MapInner {
    snapshot: ArcSwap<HashMap<u32, Source>>,
    misses: Mutex<Vec<u32>>,
    stale: Mutex<Vec<(u32, Source)>>,
}

impl SourceMap {
    /// An empty map (a [`SourceTable`] makes its own: use [`SourceTable::map`]).
    fn new() -> Self {
        SourceMap {
            inner: Arc::new(MapInner {
                snapshot: ArcSwap::from_pointee(HashMap::new()),
                misses: Mutex::new(Vec::new()),
                stale: Mutex::new(Vec::new()),
            }),
        }
    }

    fn publish(&self, table: HashMap<u32, Source>) {
        self.inner.snapshot.store(Arc::new(table));
    }

    /// The sender of `ssrc` in the latest published table (lock-free).
    pub fn get(&self, ssrc: u32) -> Option<Source> {
        self.inner.snapshot.load().get(&ssrc).copied()
    }

    /// The sender of `ssrc`, or, for an SSRC the table does not map, the frame's typed drop
    /// ([`ErrorKind::FrameUnknownSource`]) after reporting it ([`SourceMap::report_unknown`]):
    /// what every decryption by SSRC starts with.
    pub fn sender(&self, ssrc: u32) -> Result<Source> {
        self.get(ssrc).ok_or_else(|| {
            self.report_unknown(ssrc);
            Error::new(ErrorKind::FrameUnknownSource, format!("no member sends on SSRC {ssrc}"))
        })
    }

    /// Runs `decrypt` for the sender of `ssrc` (its user id) and returns that sender with what
    /// `decrypt` returned: what every decryption by SSRC is, on a media decryptor or a call. An
    /// SSRC the map does not know fails as [`SourceMap::sender`] does, before `decrypt` runs (no
    /// key is tried); a failure that says the frame is not that sender's (`WRONG_SIGNATURE`, or
    /// a sender no longer in the call) is reported as a possibly stale mapping
    /// ([`SourceMap::report_stale`]).
    pub fn decrypt_from<T>(&self, ssrc: u32, decrypt: impl FnOnce(i64) -> Result<T>) -> Result<(Source, T)> {
        let source = self.sender(ssrc)?;
        let opened = decrypt(source.user_id).inspect_err(|e| {
            // Not that sender's frame: the SSRC may have moved to a participation whose record
            // was missed (SSRC reuse); the session looks it up again.
            if matches!(e.kind(), ErrorKind::WrongSignature | ErrorKind::ParticipantNotFound) {
                self.report_stale(ssrc, source);
            }
        })?;
        Ok((source, opened))
    }

    /// How many SSRCs the latest published table maps.
    pub fn len(&self) -> usize {
        self.inner.snapshot.load().len()
    }

    /// Whether the latest published table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Notes that a frame came on `ssrc`, which the table does not know: the signalling side
    /// takes it with [`SourceMap::take_misses`] and looks it up. Repeats are kept once; past
    /// [`MAX_REPORTED_MISSES`] waiting SSRCs, further ones are not kept (they are reported
    /// again by their next frame).
    pub fn report_unknown(&self, ssrc: u32) {
        if let Ok(mut misses) = self.inner.misses.lock() {
            if misses.len() < MAX_REPORTED_MISSES && !misses.contains(&ssrc) {
                misses.push(ssrc);
            }
        }
    }

    /// Notes that `source`'s key did not open a frame that came on `ssrc`, which the map gives
    /// to `source`: the mapping may be stale (the SSRC moved to a participation whose record
    /// was missed), or another member sent on it. The signalling side takes it with
    /// [`SourceMap::take_stale`] and checks it with a lookup ([`LookupScheduler::note_stale`]),
    /// keeping the mapping until the answer moves it. Bounded and deduplicated as
    /// [`SourceMap::report_unknown`].
    pub fn report_stale(&self, ssrc: u32, source: Source) {
        if let Ok(mut stale) = self.inner.stale.lock() {
            if stale.len() < MAX_REPORTED_MISSES && !stale.iter().any(|(s, _)| *s == ssrc) {
                stale.push((ssrc, source));
            }
        }
    }

    /// The SSRCs reported stale since the last call, with the sender that failed.
    pub fn take_stale(&self) -> Vec<(u32, Source)> {
        self.inner.stale.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default()
    }

    /// The SSRCs reported unknown since the last call, for [`LookupScheduler::note_unknown`].
    pub fn take_misses(&self) -> Vec<u32> {
        self.inner.misses.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default()
    }
}

impl UnresolvedReason {
    /// A stable name: `deadline`, `not_in_call` or `pending_full`.
    pub fn name(self) -> &'static str {
        match self {
            UnresolvedReason::Deadline => "deadline",
            UnresolvedReason::NotInCall => "not_in_call",
            UnresolvedReason::PendingFull => "pending_full",
        }
    }
}

/// Why an unknown SSRC was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnresolvedReason {
    /// No answer named it within [`LOOKUP_DEADLINE_MS`] (no lookup could go out in time, or it
    /// got no answer).
    Deadline,
    /// The lookup's answer did not name it: no participant of the call sends on it (it is not
    /// asked about again for [`LOOKUP_NEGATIVE_MS`]).
    NotInCall,
    /// [`MAX_PENDING_LOOKUPS`] SSRCs were waiting already.
    PendingFull,
}

/// What the scheduler tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LookupEvent {
    /// `ssrc` was given up: frames on it are dropped (typed [`ErrorKind::FrameUnknownSource`])
    /// until a participant record names it.
    Unresolved {
        /// The SSRC.
        ssrc: u32,
        /// Why.
        reason: UnresolvedReason,
    },
}

/// Most events a scheduler keeps unpolled.
pub const MAX_QUEUED_LOOKUP_EVENTS: usize = 4 * MAX_PENDING_LOOKUPS;

/// Names one lookup until its answer comes back: answers naming another generation (an earlier
/// call or participation) or another lookup are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId {
    /// The scheduler's generation when the lookup went out ([`LookupScheduler::reset`]).
    pub generation: u64,
    /// The lookup's number within it.
    pub seq: u64,
}

#[derive(Clone, Debug)]
struct InFlight {
    id: LookupId,
    sources: Vec<u32>,
}

/// Schedules `phone.getGroupParticipants` lookups for SSRCs the table does not know, as
/// tgcalls' `requestMediaChannelDescriptions` makes Telegram's apps do: batched (up to
/// [`MAX_LOOKUP_BATCH`] a lookup, those waiting longest first), deduplicated (an SSRC waiting
/// or asked about is not queued again; one a lookup did not resolve is not asked about again
/// for [`LOOKUP_NEGATIVE_MS`]), rate limited (one lookup in flight, at most one per
/// [`LOOKUP_INTERVAL_MS`]), bounded ([`MAX_PENDING_LOOKUPS`] waiting) and with a deadline
/// ([`LOOKUP_DEADLINE_MS`]); it also checks mappings a frame cast doubt on
/// ([`LookupScheduler::note_stale`]). Pure: the caller passes `now` and sends what
/// [`LookupScheduler::poll_lookup`] gives.
#[derive(Clone, Debug, Default)]
pub struct LookupScheduler {
    generation: u64,
    seq: u64,
    /// Waiting SSRCs, not asked about yet, with when they were first reported.
    queued: BTreeMap<u32, u64>,
    /// The lookup asked and not answered yet, with when each of its SSRCs was first reported.
    in_flight: Option<(InFlight, Vec<u64>)>,
    /// SSRCs not to ask about again before the time given.
    negative: HashMap<u32, u64>,
    next_allowed: u64,
    events: VecDeque<LookupEvent>,
}

impl LookupScheduler {
    /// A scheduler with nothing waiting, at generation 0.
    pub fn new() -> Self {
        LookupScheduler::default()
    }

    /// Starts a new generation (a new call, or a rejoin): everything waiting is forgotten
    /// without events, and answers to earlier lookups are ignored. The pace holds across
    /// generations: a rejoin does not allow a second lookup within [`LOOKUP_INTERVAL_MS`].
    pub fn reset(&mut self) {
        let (generation, next_allowed) = (self.generation.saturating_add(1), self.next_allowed);
        *self = LookupScheduler { generation, next_allowed, ..LookupScheduler::default() };
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many SSRCs are waiting (queued or asked about).
    pub fn pending(&self) -> usize {
        self.queued.len().saturating_add(self.in_flight.as_ref().map_or(0, |(f, _)| f.sources.len()))
    }

    /// Whether `ssrc` waits for a lookup (queued or asked about).
    pub fn is_pending(&self, ssrc: u32) -> bool {
        self.queued.contains_key(&ssrc) || self.in_flight.as_ref().is_some_and(|(f, _)| f.sources.contains(&ssrc))
    }

    /// Notes a frame on `ssrc`, which `table` does not know, at `now`: queued for a lookup unless
    /// it is known, waiting already, or recently unresolved. Past [`MAX_PENDING_LOOKUPS`] it is
    /// refused ([`UnresolvedReason::PendingFull`]).
    pub fn note_unknown(&mut self, ssrc: u32, table: &SourceTable, now: u64) {
        if table.get(ssrc).is_none() {
            self.queue(ssrc, now);
        }
    }

    /// Notes, at `now`, that the sender the table gives `ssrc` did not open a frame on it
    /// ([`SourceMap::take_stale`]): the mapping is checked by a lookup, as an unknown SSRC is
    /// looked up, and stays until the answer moves the SSRC. One frame that does not open proves
    /// nothing: any member can send its own frames, or replay another's, on any SSRC; unmapping
    /// on it would let one packet a second silence a member for everyone. A check given up
    /// ([`LookupEvent::Unresolved`]) leaves the SSRC mapped: its event concerns an SSRC the table
    /// still maps (the session does not pass those on).
    pub fn note_stale(&mut self, ssrc: u32, now: u64) {
        self.queue(ssrc, now);
    }

    fn queue(&mut self, ssrc: u32, now: u64) {
        if ssrc == 0 || self.is_pending(ssrc) {
            return;
        }
        if self.negative.get(&ssrc).is_some_and(|until| *until > now) {
            return;
        }
        self.negative.remove(&ssrc);
        if self.pending() >= MAX_PENDING_LOOKUPS {
            self.event(ssrc, UnresolvedReason::PendingFull);
            return;
        }
        self.queued.insert(ssrc, now);
    }

    /// The lookup to send now, if one is due: none while one is in flight or within
    /// [`LOOKUP_INTERVAL_MS`] of the last. Send it as `phone.getGroupParticipants` and give its
    /// answer (or failure) back with the id.
    pub fn poll_lookup(&mut self, now: u64) -> Option<(LookupId, SourceLookup)> {
        self.handle_timeout(now);
        if self.in_flight.is_some() || self.queued.is_empty() || now < self.next_allowed {
            return None;
        }
        // The SSRCs waiting longest go first (not the lowest numbers: junk on low SSRCs must not
        // starve a real one past its deadline).
        let mut take: Vec<(u32, u64)> = self.queued.iter().map(|(s, t)| (*s, *t)).collect();
        take.sort_unstable_by_key(|&(s, t)| (t, s));
        take.truncate(MAX_LOOKUP_BATCH);
        for (s, _) in &take {
            self.queued.remove(s);
        }
        self.seq = self.seq.saturating_add(1);
        let id = LookupId { generation: self.generation, seq: self.seq };
        let (sources, since): (Vec<u32>, Vec<u64>) = take.into_iter().unzip();
        self.in_flight = Some((InFlight { id, sources: sources.clone() }, since));
        self.next_allowed = now.saturating_add(LOOKUP_INTERVAL_MS);
        Some((id, SourceLookup { sources }))
    }

    /// The answer of lookup `id`, once applied to `table` ([`SourceTable::apply`]): its SSRCs
    /// the table still does not know are unresolved ([`UnresolvedReason::NotInCall`]). An
    /// answer to another lookup or generation is ignored (returns `false`).
    pub fn on_answer(&mut self, id: LookupId, table: &SourceTable, now: u64) -> bool {
        let Some((flight, _)) = self.in_flight.take_if(|(f, _)| f.id == id) else { return false };
        for ssrc in flight.sources {
            if table.get(ssrc).is_none() {
                self.give_up(ssrc, UnresolvedReason::NotInCall, now);
            }
        }
        true
    }

    /// Lookup `id` failed (an API error or a transport failure): its SSRCs wait again (within
    /// their deadline), no sooner than `retry_at` (a flood wait's end, or `now`). Another lookup
    /// or generation is ignored (returns `false`).
    pub fn on_failure(&mut self, id: LookupId, retry_at: u64) -> bool {
        let Some((flight, since)) = self.in_flight.take_if(|(f, _)| f.id == id) else { return false };
        for (ssrc, t) in flight.sources.into_iter().zip(since) {
            self.queued.insert(ssrc, t);
        }
        self.next_allowed = self.next_allowed.max(retry_at);
        true
    }

    fn give_up(&mut self, ssrc: u32, reason: UnresolvedReason, now: u64) {
        self.event(ssrc, reason);
        if self.negative.len() >= MAX_PENDING_LOOKUPS {
            // Bounded: the entry that expires first goes.
            let first = self.negative.iter().min_by_key(|(_, t)| **t).map(|(s, _)| *s);
            if let Some(first) = first {
                self.negative.remove(&first);
            }
        }
        self.negative.insert(ssrc, now.saturating_add(LOOKUP_NEGATIVE_MS));
    }

    /// Gives up the SSRCs that waited [`LOOKUP_DEADLINE_MS`] since they were first reported by
    /// `now` ([`UnresolvedReason::Deadline`]), asked about or not; a lookup left with none is
    /// forgotten (its late answer is ignored).
    pub fn handle_timeout(&mut self, now: u64) {
        let due = |since: u64| since.saturating_add(LOOKUP_DEADLINE_MS) <= now;
        let mut expired: Vec<u32> = self.queued.iter().filter(|(_, t)| due(**t)).map(|(s, _)| *s).collect();
        for ssrc in &expired {
            self.queued.remove(ssrc);
        }
        if let Some((flight, since)) = &mut self.in_flight {
            let mut kept = (Vec::new(), Vec::new());
            for (ssrc, t) in flight.sources.iter().zip(since.iter()) {
                if due(*t) {
                    expired.push(*ssrc);
                } else {
                    kept.0.push(*ssrc);
                    kept.1.push(*t);
                }
            }
            (flight.sources, *since) = kept;
            if flight.sources.is_empty() {
                self.in_flight = None;
            }
        }
        for ssrc in expired {
            self.event(ssrc, UnresolvedReason::Deadline);
        }
        self.negative.retain(|_, until| *until > now);
    }

    /// When [`LookupScheduler::handle_timeout`] or [`LookupScheduler::poll_lookup`] next has
    /// something to do, if anything waits.
    pub fn poll_timeout(&self) -> Option<u64> {
        let (deadline, send) = self.timeouts();
        [deadline, send].into_iter().flatten().min()
    }

    /// [`LookupScheduler::poll_timeout`] in its two parts: the first SSRC's deadline, and when
    /// the next lookup may be sent (a caller holding sends for a flood wait delays only this).
    pub(crate) fn timeouts(&self) -> (Option<u64>, Option<u64>) {
        let deadlines = self.queued.values().chain(self.in_flight.iter().flat_map(|(_, since)| since)).copied();
        let deadline = deadlines.map(|t| t.saturating_add(LOOKUP_DEADLINE_MS)).min();
        let send = (!self.queued.is_empty() && self.in_flight.is_none()).then_some(self.next_allowed);
        (deadline, send)
    }

    /// Queues an event; past [`MAX_QUEUED_LOOKUP_EVENTS`] unpolled ones, it is not kept (the
    /// SSRC's next frame tells again).
    fn event(&mut self, ssrc: u32, reason: UnresolvedReason) {
        if self.events.len() < MAX_QUEUED_LOOKUP_EVENTS {
            self.events.push_back(LookupEvent::Unresolved { ssrc, reason });
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<LookupEvent> {
        self.events.pop_front()
    }
}
