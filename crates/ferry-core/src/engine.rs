//! The upload engine: a two-layer scheduler with retry, told what happened and saying what to do.
//!
//! - **Lazy source.** Queued files cost an entry in an ordered index (rank and size), not a state
//!   object; a file gets its state only when the outer layer takes it.
//! - **Outer layer** ([`EngineConfig::triggers`]). Up to N files are live: their upload created,
//!   their first batch of part URLs signed, the next batch fetched before the current one runs
//!   out. Live states never exceed N, whatever the queue's length.
//! - **Inner layer** ([`EngineConfig::slot_rule`]). A gatekeeper over all part PUTs, with a
//!   per-file cap ([`EngineConfig::per_file`]). When a slot frees, the next signed part starts.
//! - **Retry** ([`RetryPolicy`]). Failed parts and companion calls wait a jittered backoff; an
//!   expired URL is signed again for free; a stalled part is aborted and retried; while offline,
//!   or while a host's circuit breaker is open, failures spend no attempt; a file whose direct
//!   PUTs keep failing at the network level sends its parts through the companion.
//!
//! It never performs I/O, reads no clock and draws no randomness of its own: time comes in as
//! `now`, jitter from [`EngineConfig::seed`]. A driver calls, in a loop:
//!
//! 1. commands from the application: [`Engine::add`], [`Engine::pause`], [`Engine::cancel`], ...;
//! 2. [`Engine::poll_action`] until it returns `None`, carrying out each [`Action`];
//! 3. the `handle_*` method matching each finished action, as results arrive;
//! 4. [`Engine::poll_event`] to learn which files finished, failed or resumed;
//! 5. [`Engine::poll_timeout`] to know when to call [`Engine::handle_timeout`].
//!
//! Getters (`progress`, `running_puts`, `stats`, ...) may be called at any time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::breaker::Breaker;
use crate::error::UploadError;
use crate::plan::{Plan, UploadMode};
use crate::protocol::{
    CompanionConfig, CompleteUpload, CompletedPart, SignParts, SignedPart, SignedUrl, StoredObject,
    StoredPart, UploadCreated,
};
use crate::retry::{Class, Failure, classify};
use crate::schedule::{EngineConfig, Rank};
use crate::time::{Instant, Rng};

/// A file to upload, as the engine needs it: its bytes, name and type stay with the driver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileSpec {
    pub size: u64,
    /// Checked against the companion's allowed types; not kept.
    pub content_type: String,
    /// Higher goes first; equal priorities follow [`EngineConfig::order`].
    pub priority: i32,
}

/// The engine's name for a file it was given; ids grow in the order files were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u64);

/// Where a part's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutTarget {
    /// Straight to the store, with a presigned URL.
    Direct(SignedUrl),
    /// Through the companion (`PUT /api/uploads/{id}/parts/{n}?token=`, or
    /// `PUT /api/objects?token=` for a single PUT): the fallback when the store cannot be reached.
    Companion {
        upload_id: Option<String>,
        token: String,
    },
}

/// Which call to the companion a result is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Create,
    Sign,
    ListParts,
    Complete,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `POST /api/uploads` with the file's name, size and type; answer with
    /// [`Engine::handle_created`] or [`Engine::handle_call_failed`].
    Create { file: FileId },
    /// `GET /api/uploads/{upload_id}/parts?token=` for a resumed file; answer with
    /// [`Engine::handle_listed`].
    ListParts {
        file: FileId,
        upload_id: String,
        token: String,
    },
    /// `POST /api/uploads/{upload_id}/sign`; answer with [`Engine::handle_signed`].
    Sign {
        file: FileId,
        upload_id: String,
        request: SignParts,
    },
    /// PUT the file's bytes in `range` to `target`; answer with [`Engine::handle_put_done`] or
    /// [`Engine::handle_put_failed`], and report progress with [`Engine::handle_put_progress`].
    Put {
        file: FileId,
        part: u32,
        range: Range<u64>,
        target: PutTarget,
    },
    /// `POST /api/uploads/{upload_id}/complete`; answer with [`Engine::handle_completed`].
    Complete {
        file: FileId,
        upload_id: String,
        request: CompleteUpload,
    },
    /// Abort these running PUTs of the file; nothing to answer.
    StopPuts { file: FileId, parts: Vec<u32> },
    /// `DELETE /api/uploads/{upload_id}?token=`; nothing to answer: the file was cancelled (or
    /// its create answered too late). A driver keeps an abort that could not reach the
    /// companion and sends it again when it can.
    Abort {
        file: FileId,
        upload_id: String,
        token: String,
    },
}

/// Something the application may want to know. Every file added gets exactly one `Done` or
/// `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Done {
        file: FileId,
        object: StoredObject,
    },
    Failed {
        file: FileId,
        error: UploadError,
    },
    /// A resumed file kept these many parts the store already held.
    Resumed {
        file: FileId,
        parts_kept: u32,
    },
    /// The file waits out an outage (`waiting: true`: the store or the companion does not
    /// answer; nothing is spent), or it got an answer again and goes on (`waiting: false`).
    Waiting {
        file: FileId,
        waiting: bool,
    },
}

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Waiting for the outer layer to take it.
    Queued,
    /// Its upload is being created.
    Creating,
    /// A resumed file: the parts the store holds are being listed.
    Listing,
    /// Its parts are going out.
    Uploading,
    /// Every part is stored; the upload is being completed.
    Completing,
}

/// A file's progress. `confirmed` counts parts the store acknowledged with an ETag and never goes
/// back; `in_flight` counts bytes sent for running parts and drops when a part stops or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub state: FileState,
    pub paused: bool,
    pub size: u64,
    pub confirmed: u64,
    pub in_flight: u64,
    /// Retries spent on this file's parts and calls.
    pub retries: u32,
    /// Whether its parts go through the companion.
    pub fallback: bool,
    /// Whether it waits out an outage of the store or the companion.
    pub waiting: bool,
}

/// A part PUT in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningPart {
    pub file: FileId,
    pub part: u32,
    pub sent: u64,
    pub size: u64,
}

impl Progress {
    /// Everything sent so far, confirmed or not.
    pub fn loaded(&self) -> u64 {
        self.confirmed + self.in_flight
    }
}

/// Counters over the engine's life, for benchmarks and the demo's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Calls to the companion asked for: create, list, sign, complete, abort.
    pub companion_calls: u64,
    /// Part PUTs started.
    pub puts: u64,
    /// Retries after failures (parts and calls).
    pub retries: u64,
    /// Parts whose URL was signed again because it expired.
    pub resigns: u64,
    /// The most files live at once.
    pub peak_live: usize,
}

/// What a client keeps to resume a multipart upload after a reload: the upload and the parts it
/// saw confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub upload_id: String,
    pub key: String,
    pub token: String,
    pub location: String,
    pub part_size: u64,
    pub part_count: u32,
    /// When the token stops being accepted (Unix seconds): the record is useless after.
    pub expires_at: u64,
    pub parts: Vec<StoredPart>,
}

#[derive(Debug)]
struct Queued {
    rank: Rank,
    size: u64,
    paused: bool,
    resume: Option<Box<Snapshot>>,
}

#[derive(Debug)]
struct Waiting {
    /// `None` until signed, or after the URL expired.
    url: Option<SignedUrl>,
    attempts: u32,
    ready_at: Instant,
}

#[derive(Debug)]
struct Running {
    sent: u64,
    url: Option<SignedUrl>,
    host: String,
    attempts: u32,
    last_progress: Instant,
}

#[derive(Debug)]
struct Upload {
    /// `None` for a single PUT.
    upload_id: Option<String>,
    key: String,
    token: String,
    location: String,
    expires_at: u64,
    plan: Plan,
    waiting: BTreeMap<u32, Waiting>,
    /// Parts in the sign call in flight.
    signing: Vec<u32>,
    running: BTreeMap<u32, Running>,
    /// ETags of confirmed parts, by part number.
    etags: BTreeMap<u32, String>,
    confirmed: u64,
    /// Parts go through the companion.
    fallback: bool,
    /// When to try direct PUTs again while on the fallback: the store may answer again.
    fallback_until: Instant,
    /// How long the last stay on the fallback was; each next one doubles, up to a cap.
    fallback_period: std::time::Duration,
    /// Network failures of direct PUTs in a row.
    network_failures: u32,
    /// Outage failures of PUTs in a row: the backoff of the probes.
    outages: u32,
}

/// The first stay on the companion route before direct PUTs are tried again, and the longest.
const FIRST_FALLBACK_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);
const MAX_FALLBACK_PERIOD: std::time::Duration = std::time::Duration::from_secs(300);

/// A URL's expiry moved to the local clock: the companion's clock and the browser's may
/// disagree, the lifetime it gave does not.
fn localized(mut url: SignedUrl, now: Instant) -> SignedUrl {
    if let Some(lifetime) = url.expires_in {
        url.expires_at = now.unix_millis() / 1000 + lifetime;
    }
    url
}

impl Upload {
    fn new(created: &UploadCreated, plan: Plan, now: Instant) -> Self {
        let waiting = (1..=plan.part_count)
            .map(|part| {
                let url = (part == 1)
                    .then(|| created.url.clone().map(|url| localized(url, now)))
                    .flatten();
                (
                    part,
                    Waiting {
                        url,
                        attempts: 0,
                        ready_at: now,
                    },
                )
            })
            .collect();
        Self {
            upload_id: created.upload_id.clone(),
            key: created.key.clone(),
            token: created.token.clone(),
            location: created.location.clone(),
            expires_at: created.expires_at,
            plan,
            waiting,
            signing: Vec::new(),
            running: BTreeMap::new(),
            etags: BTreeMap::new(),
            confirmed: 0,
            fallback: false,
            fallback_until: now,
            fallback_period: std::time::Duration::ZERO,
            network_failures: 0,
            outages: 0,
        }
    }

    /// Sends the parts through the companion for a while; direct PUTs are tried again after it.
    fn switch_to_fallback(&mut self, now: Instant) {
        self.fallback = true;
        self.fallback_period =
            (self.fallback_period * 2).clamp(FIRST_FALLBACK_PERIOD, MAX_FALLBACK_PERIOD);
        self.fallback_until = now + self.fallback_period;
    }

    /// Back to direct PUTs.
    fn leave_fallback(&mut self) {
        self.fallback = false;
        self.network_failures = 0;
    }

    /// Puts running parts back in line, ready at once (their URLs are still good).
    fn stop_running(&mut self, now: Instant) -> Vec<u32> {
        let stopped = std::mem::take(&mut self.running);
        let parts = stopped.keys().copied().collect();
        for (part, running) in stopped {
            let waiting = Waiting {
                url: running.url,
                attempts: running.attempts,
                ready_at: now,
            };
            self.waiting.insert(part, waiting);
        }
        parts
    }

    /// The Complete call, once every part is confirmed (multipart uploads only).
    fn complete(&self, file: FileId) -> Option<Action> {
        let finished = self.etags.len() as u32 == self.plan.part_count;
        let upload_id = self.upload_id.clone().filter(|_| finished)?;
        let parts = self
            .etags
            .iter()
            .map(|(&part, etag)| CompletedPart {
                part,
                etag: etag.clone(),
            })
            .collect();
        Some(Action::Complete {
            file,
            upload_id,
            request: CompleteUpload {
                token: self.token.clone(),
                parts,
            },
        })
    }

    fn target(&self, url: Option<SignedUrl>) -> PutTarget {
        match url {
            Some(url) if !self.fallback => PutTarget::Direct(url),
            _ => PutTarget::Companion {
                upload_id: self.upload_id.clone(),
                token: self.token.clone(),
            },
        }
    }
}

/// The companion's state for one file's calls: in flight, or waiting out a backoff.
#[derive(Debug, Default)]
struct CallGate {
    in_flight: bool,
    attempts: u32,
    /// Outage failures in a row: the backoff of the probes, which spend no attempt.
    outages: u32,
    ready_at: Instant,
}

#[derive(Debug)]
struct Live {
    rank: Rank,
    size: u64,
    state: FileState,
    paused: bool,
    upload: Option<Upload>,
    resume: Option<Box<Snapshot>>,
    call: CallGate,
    retries: u32,
    /// Waiting out an outage (told with [`Event::Waiting`]).
    waiting: bool,
}

impl Live {
    /// Marks the file as waiting out an outage or not, telling the application on a change.
    fn set_waiting(&mut self, file: FileId, waiting: bool, events: &mut VecDeque<Event>) {
        if self.waiting != waiting {
            self.waiting = waiting;
            events.push_back(Event::Waiting { file, waiting });
        }
    }
}

/// The breaker key of calls and fallback PUTs to the companion.
const COMPANION: &str = "companion";

/// The engine. See the module documentation for the call order.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    companion: CompanionConfig,
    rng: Rng,
    next_id: u64,
    /// Files waiting, best first; paused ones are held aside in `queued` only.
    line: BTreeSet<(Rank, FileId)>,
    queued: BTreeMap<FileId, Queued>,
    live: BTreeMap<FileId, Live>,
    breakers: BTreeMap<String, Breaker>,
    paused_all: bool,
    online: bool,
    /// The latest `now` any call brought.
    now: Instant,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
}

/// The host of a URL, for the circuit breaker.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

impl Engine {
    /// An engine for a companion that announced `companion` at `GET /api/config`.
    pub fn new(config: EngineConfig, companion: CompanionConfig) -> Self {
        Self {
            rng: Rng::new(config.seed),
            config,
            companion,
            next_id: 0,
            line: BTreeSet::new(),
            queued: BTreeMap::new(),
            live: BTreeMap::new(),
            breakers: BTreeMap::new(),
            paused_all: false,
            online: true,
            now: Instant::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    // ---- getters ----

    pub fn progress(&self, file: FileId) -> Option<Progress> {
        if let Some(queued) = self.queued.get(&file) {
            return Some(Progress {
                state: FileState::Queued,
                paused: queued.paused,
                size: queued.size,
                confirmed: 0,
                in_flight: 0,
                retries: 0,
                waiting: false,
                fallback: false,
            });
        }
        let live = self.live.get(&file)?;
        let upload = live.upload.as_ref();
        Some(Progress {
            state: live.state,
            paused: live.paused,
            size: live.size,
            confirmed: upload.map_or(0, |upload| upload.confirmed),
            in_flight: upload.map_or(0, |upload| upload.running.values().map(|r| r.sent).sum()),
            retries: live.retries,
            fallback: upload.is_some_and(|upload| upload.fallback),
            waiting: live.waiting,
        })
    }

    /// Part PUTs in flight over all files.
    pub fn running_puts(&self) -> usize {
        self.live
            .values()
            .filter_map(|live| live.upload.as_ref())
            .map(|upload| upload.running.len())
            .sum()
    }

    /// Every part PUT in flight: file, part, bytes sent and part size, for displays.
    pub fn running_parts(&self) -> Vec<RunningPart> {
        self.live
            .iter()
            .filter_map(|(&file, live)| Some((file, live.upload.as_ref()?)))
            .flat_map(|(file, upload)| {
                upload.running.iter().map(move |(&part, running)| {
                    let range = upload.plan.part_range(part);
                    RunningPart {
                        file,
                        part,
                        sent: running.sent,
                        size: range.end - range.start,
                    }
                })
            })
            .collect()
    }

    /// Part PUTs in flight for one file.
    pub fn running_puts_of(&self, file: FileId) -> usize {
        self.live
            .get(&file)
            .and_then(|live| live.upload.as_ref())
            .map_or(0, |upload| upload.running.len())
    }

    /// How many part PUTs the slot rule allows now.
    pub fn slots(&self) -> usize {
        self.config
            .slot_rule
            .slots(&mut self.live.values().map(|live| live.size))
    }

    /// Files with a state of their own (never more than [`EngineConfig::triggers`]).
    pub fn live_files(&self) -> usize {
        self.live.len()
    }

    /// Files waiting for the outer layer, paused ones included.
    pub fn queued_files(&self) -> usize {
        self.queued.len()
    }

    /// Files not yet finished.
    pub fn unfinished(&self) -> usize {
        self.live.len() + self.queued.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What to keep to resume the file's multipart upload later; `None` until it is created, and
    /// for single PUTs.
    pub fn snapshot(&self, file: FileId) -> Option<Snapshot> {
        let upload = self.live.get(&file)?.upload.as_ref()?;
        Some(Snapshot {
            upload_id: upload.upload_id.clone()?,
            key: upload.key.clone(),
            token: upload.token.clone(),
            location: upload.location.clone(),
            part_size: upload.plan.part_size,
            part_count: upload.plan.part_count,
            expires_at: upload.expires_at,
            parts: upload
                .etags
                .iter()
                .map(|(&part, etag)| {
                    let range = upload.plan.part_range(part);
                    StoredPart {
                        part,
                        size: range.end - range.start,
                        etag: etag.clone(),
                    }
                })
                .collect(),
        })
    }

    // ---- commands ----

    /// Queues a file. A file the companion would refuse fails at once, before any request.
    pub fn add(&mut self, spec: FileSpec) -> FileId {
        self.enqueue(spec, None)
    }

    /// Queues a file that may continue the upload `snapshot` describes: when its turn comes the
    /// engine lists the parts the store holds, keeps those whose number, size and ETag agree with
    /// the snapshot, and uploads the rest. If the upload is gone, the file starts afresh.
    pub fn add_resumed(&mut self, spec: FileSpec, snapshot: Snapshot) -> FileId {
        self.enqueue(spec, Some(Box::new(snapshot)))
    }

    fn enqueue(&mut self, spec: FileSpec, resume: Option<Box<Snapshot>>) -> FileId {
        let file = FileId(self.next_id);
        self.next_id += 1;
        if let Some(error) = self.refusal(&spec) {
            self.events.push_back(Event::Failed { file, error });
            return file;
        }
        let rank = Rank::new(self.config.order, spec.priority, spec.size, file.0);
        self.line.insert((rank, file));
        self.queued.insert(
            file,
            Queued {
                rank,
                size: spec.size,
                paused: false,
                resume,
            },
        );
        file
    }

    fn refusal(&self, spec: &FileSpec) -> Option<UploadError> {
        let max = self.companion.max_file_size;
        if spec.size > max {
            return Some(UploadError::TooLarge {
                size: spec.size,
                max,
            });
        }
        let allowed = &self.companion.allowed_types;
        if !allowed.is_empty() && !allowed.contains(&spec.content_type) {
            return Some(UploadError::TypeNotAllowed {
                content_type: spec.content_type.clone(),
            });
        }
        None
    }

    /// Stops starting anything for the file; its running PUTs are aborted and will be sent again
    /// on resume.
    pub fn pause(&mut self, file: FileId) {
        if let Some(queued) = self.queued.get_mut(&file) {
            queued.paused = true;
            self.line.remove(&(queued.rank, file));
        } else if let Some(live) = self.live.get_mut(&file) {
            live.paused = true;
            stop(&mut self.actions, &mut self.breakers, file, live, self.now);
        }
    }

    pub fn resume(&mut self, file: FileId) {
        if let Some(queued) = self.queued.get_mut(&file) {
            if queued.paused {
                queued.paused = false;
                self.line.insert((queued.rank, file));
            }
        } else if let Some(live) = self.live.get_mut(&file) {
            live.paused = false;
        }
    }

    /// Stops every running PUT and starts nothing until [`Engine::resume_all`].
    pub fn pause_all(&mut self) {
        self.paused_all = true;
        for (&file, live) in &mut self.live {
            stop(&mut self.actions, &mut self.breakers, file, live, self.now);
        }
    }

    pub fn resume_all(&mut self) {
        self.paused_all = false;
    }

    /// Ends the file: running PUTs are aborted and the multipart upload with them.
    pub fn cancel(&mut self, file: FileId) {
        if let Some(queued) = self.queued.remove(&file) {
            self.line.remove(&(queued.rank, file));
            self.events.push_back(Event::Failed {
                file,
                error: UploadError::Cancelled,
            });
        } else if self.live.contains_key(&file) {
            self.fail(file, UploadError::Cancelled);
        }
    }

    pub fn cancel_all(&mut self) {
        let files: Vec<FileId> = self
            .queued
            .keys()
            .chain(self.live.keys())
            .copied()
            .collect();
        for file in files {
            self.cancel(file);
        }
    }

    // ---- events from the driver ----

    /// The browser went offline or came back. Offline, nothing starts, and network failures
    /// spend no attempt.
    pub fn handle_online(&mut self, online: bool, now: Instant) {
        self.tick(now);
        self.online = online;
        if online {
            // Back online: what waits out the outage goes at once rather than at its next probe.
            for live in self.live.values_mut().filter(|live| live.waiting) {
                live.call.ready_at = live.call.ready_at.min(now);
                if let Some(upload) = live.upload.as_mut() {
                    for waiting in upload.waiting.values_mut() {
                        waiting.ready_at = waiting.ready_at.min(now);
                    }
                }
            }
        }
    }

    pub fn handle_created(&mut self, file: FileId, created: UploadCreated, now: Instant) {
        self.tick(now);
        self.companion_answered(file);
        let Some(live) = self
            .live
            .get_mut(&file)
            .filter(|live| live.state == FileState::Creating)
        else {
            // Cancelled (or failed) while the create was on its way: nothing may stay behind.
            self.abort_created(file, created);
            return;
        };
        live.call = CallGate::default();
        let size = live.size;
        let plan = Plan::with_part_size(size, created.part_size)
            .ok()
            .filter(|plan| plan.mode == created.mode && plan.part_count == created.part_count);
        let fits = match plan.map(|plan| plan.mode) {
            Some(UploadMode::Multipart) => true,
            Some(UploadMode::Single) => created.url.is_some(),
            None => false,
        };
        if !fits {
            let message = format!(
                "{} parts of {} bytes ({:?}, URL given: {}) do not cut {size} bytes",
                created.part_count,
                created.part_size,
                created.mode,
                created.url.is_some()
            );
            self.abort_created(file, created);
            self.fail(file, UploadError::BadPlan(message));
            return;
        }
        live.upload = Some(Upload::new(&created, plan.expect("checked above"), now));
        live.state = FileState::Uploading;
    }

    /// Aborts the multipart upload a create answer made for a file that will not use it.
    fn abort_created(&mut self, file: FileId, created: UploadCreated) {
        if let Some(upload_id) = created.upload_id {
            self.stats.companion_calls += 1;
            self.actions.push_back(Action::Abort {
                file,
                upload_id,
                token: created.token,
            });
        }
    }

    /// The parts the store holds for a resumed file.
    pub fn handle_listed(&mut self, file: FileId, listed: Vec<StoredPart>, now: Instant) {
        self.tick(now);
        self.companion_answered(file);
        let Some(live) = self
            .live
            .get_mut(&file)
            .filter(|live| live.state == FileState::Listing)
        else {
            return;
        };
        live.call = CallGate::default();
        let snapshot = live.resume.take().expect("a listing file has a snapshot");
        let Ok(plan) = Plan::with_part_size(live.size, snapshot.part_size)
            .map_err(drop)
            .and_then(|plan| {
                if plan.part_count == snapshot.part_count {
                    Ok(plan)
                } else {
                    Err(())
                }
            })
        else {
            live.state = FileState::Creating;
            return;
        };
        let created = UploadCreated {
            upload_id: Some(snapshot.upload_id.clone()),
            key: snapshot.key.clone(),
            token: snapshot.token.clone(),
            part_size: snapshot.part_size,
            part_count: snapshot.part_count,
            mode: UploadMode::Multipart,
            url: None,
            expires_at: snapshot.expires_at,
            location: snapshot.location.clone(),
        };
        let mut upload = Upload::new(&created, plan, now);
        let unquote = |etag: &str| etag.trim_matches('"').to_owned();
        for part in &listed {
            let expected_size = (1..=plan.part_count).contains(&part.part).then(|| {
                let range = plan.part_range(part.part);
                range.end - range.start
            });
            let agrees = expected_size == Some(part.size)
                && snapshot.parts.iter().any(|kept| {
                    kept.part == part.part
                        && kept.size == part.size
                        && unquote(&kept.etag) == unquote(&part.etag)
                });
            if agrees && upload.waiting.remove(&part.part).is_some() {
                upload.confirmed += part.size;
                upload.etags.insert(part.part, part.etag.clone());
            }
        }
        let parts_kept = upload.etags.len() as u32;
        live.upload = Some(upload);
        live.state = FileState::Uploading;
        self.events.push_back(Event::Resumed { file, parts_kept });
    }

    pub fn handle_signed(&mut self, file: FileId, parts: Vec<SignedPart>, now: Instant) {
        self.tick(now);
        self.companion_answered(file);
        let Some(live) = self.live.get_mut(&file) else {
            return;
        };
        // Only an answer to the sign call in flight counts; a late one must not touch the gate
        // of a Complete that may be running now.
        let Some(upload) = live
            .upload
            .as_mut()
            .filter(|upload| live.state == FileState::Uploading && !upload.signing.is_empty())
        else {
            return;
        };
        live.call = CallGate::default();
        upload.signing.clear();
        for signed in parts {
            if let Some(waiting) = upload.waiting.get_mut(&signed.part) {
                waiting.url = Some(localized(signed.url, now));
            }
        }
    }

    pub fn handle_put_progress(&mut self, file: FileId, part: u32, sent: u64, now: Instant) {
        self.tick(now);
        if let Some(running) = self
            .uploading(file)
            .and_then(|upload| upload.running.get_mut(&part))
            && sent > running.sent
        {
            running.sent = sent;
            running.last_progress = now;
        }
    }

    pub fn handle_put_done(&mut self, file: FileId, part: u32, etag: String, now: Instant) {
        self.tick(now);
        let Some(upload) = self.uploading(file) else {
            return;
        };
        let Some(running) = upload.running.remove(&part) else {
            // A part stopped by pause or a stall that finished anyway: it will be sent again.
            return;
        };
        let host = running.host;
        upload.network_failures = 0;
        upload.outages = 0;
        let range = upload.plan.part_range(part);
        upload.confirmed += range.end - range.start;
        upload.etags.insert(part, etag);
        let single = (upload.plan.mode == UploadMode::Single).then(|| StoredObject {
            key: upload.key.clone(),
            etag: upload.etags[&1].clone(),
            size: upload.plan.size,
            location: upload.location.clone(),
        });
        self.breakers.entry(host).or_default().on_answer();
        if let Some(live) = self.live.get_mut(&file) {
            live.set_waiting(file, false, &mut self.events);
        }
        if let Some(object) = single {
            self.live.remove(&file);
            self.events.push_back(Event::Done { file, object });
        }
    }

    pub fn handle_put_failed(&mut self, file: FileId, part: u32, failure: Failure, now: Instant) {
        if self.stored_by_an_earlier_attempt(file, &failure) {
            return self.handle_put_done(file, part, String::new(), now);
        }
        self.tick(now);
        let online = self.online;
        let Some(live) = self
            .live
            .get_mut(&file)
            .filter(|live| live.state == FileState::Uploading)
        else {
            return;
        };
        let upload = live
            .upload
            .as_mut()
            .expect("uploading files have an upload");
        let Some(running) = upload.running.remove(&part) else {
            return;
        };
        let breaker = self.breakers.entry(running.host.clone()).or_default();
        breaker.on_outcome(&failure, online, now);
        let network = failure.status.is_none();
        let outage = failure.is_outage();
        if outage && upload.fallback && !network {
            // The companion answered that it cannot reach the store either: the store is down
            // for everyone, not just for this browser, so the direct route is as good.
            upload.leave_fallback();
        }
        let mut waiting = Waiting {
            url: running.url,
            attempts: running.attempts,
            ready_at: now,
        };
        let verdict = match classify(&failure) {
            Class::Resign => {
                self.stats.resigns += 1;
                waiting.url = None;
                Ok(waiting)
            }
            Class::Retry => {
                let switched = network && online && !upload.fallback && {
                    upload.network_failures += 1;
                    upload.network_failures >= self.config.retry.fallback_after
                };
                if switched {
                    // The store cannot be reached from here: go through the companion, afresh
                    // the first time (later stays keep what was spent, or a part refused on
                    // both routes would never run out of attempts).
                    if upload.fallback_period.is_zero() {
                        for waiting in upload.waiting.values_mut() {
                            waiting.attempts = 0;
                        }
                        waiting.attempts = 0;
                    }
                    upload.switch_to_fallback(now);
                    Ok(waiting)
                } else if outage {
                    // An outage is the network's or the store's fault, not the part's: it is
                    // waited out, probing with capped backoff (a tripped breaker or being
                    // offline holds the probes back too), and spends nothing.
                    upload.outages += 1;
                    waiting.ready_at = now
                        + self.config.retry.probe_delay(
                            upload.outages,
                            failure.retry_after,
                            &mut self.rng,
                        );
                    Ok(waiting)
                } else if waiting.attempts >= self.config.retry.retries {
                    Err(part_error(part, failure))
                } else {
                    waiting.attempts += 1;
                    live.retries += 1;
                    self.stats.retries += 1;
                    waiting.ready_at = now
                        + self.config.retry.delay(
                            waiting.attempts,
                            failure.retry_after,
                            &mut self.rng,
                        );
                    Ok(waiting)
                }
            }
            Class::Fatal => Err(part_error(part, failure)),
        };
        match verdict {
            Ok(waiting) => {
                upload.waiting.insert(part, waiting);
                if outage {
                    live.set_waiting(file, true, &mut self.events);
                }
            }
            Err(error) => self.fail(file, error),
        }
    }

    /// A single PUT refused because its object exists: the key is this upload's own and its URL
    /// binds the size and type, so the object is this file, stored by an attempt whose answer
    /// was lost (its ETag with it).
    fn stored_by_an_earlier_attempt(&self, file: FileId, failure: &Failure) -> bool {
        let exists = matches!(
            (failure.status, failure.code.as_str()),
            (Some(412), _) | (Some(409), "AlreadyStored")
        );
        exists
            && self
                .live
                .get(&file)
                .and_then(|live| live.upload.as_ref())
                .is_some_and(|upload| upload.plan.mode == UploadMode::Single)
    }

    pub fn handle_completed(&mut self, file: FileId, object: StoredObject, now: Instant) {
        self.tick(now);
        self.companion_answered(file);
        if self
            .live
            .get(&file)
            .is_some_and(|live| live.state == FileState::Completing)
        {
            self.live.remove(&file);
            self.events.push_back(Event::Done { file, object });
        }
    }

    /// A call to the companion failed: it is retried after a backoff when that can help.
    pub fn handle_call_failed(&mut self, file: FileId, call: Call, failure: Failure, now: Instant) {
        self.tick(now);
        let online = self.online;
        let Some(live) = self.live.get_mut(&file) else {
            return;
        };
        let expected = match call {
            Call::Create => live.state == FileState::Creating,
            Call::ListParts => live.state == FileState::Listing,
            Call::Sign => live
                .upload
                .as_ref()
                .is_some_and(|upload| !upload.signing.is_empty()),
            Call::Complete => live.state == FileState::Completing,
        };
        if !expected {
            return;
        }
        live.call.in_flight = false;
        if let Some(upload) = live.upload.as_mut() {
            upload.signing.clear();
        }
        let breaker = self.breakers.entry(COMPANION.to_owned()).or_default();
        breaker.on_outcome(&failure, online, now);
        let network = failure.status.is_none();
        if call == Call::ListParts && !network && classify(&failure) == Class::Fatal {
            // The upload is gone or the record is stale: start afresh, never fail for it.
            live.resume = None;
            live.state = FileState::Creating;
            return;
        }
        // An outage is waited out, probing with capped backoff, and spends nothing.
        let outage = failure.is_outage();
        let fatal = classify(&failure) == Class::Fatal;
        let retry = !fatal && (outage || live.call.attempts < self.config.retry.retries);
        if !retry {
            // A Complete refused for good (the parts cannot make the object) leaves nothing to
            // continue: its upload is aborted. Anything else, retries that ran out included,
            // keeps it for a retry.
            let refused = fatal && call == Call::Complete;
            self.end(file, UploadError::from_call(failure), refused);
            return;
        }
        let retry = &self.config.retry;
        let wait = if outage {
            live.call.outages += 1;
            live.set_waiting(file, true, &mut self.events);
            retry.probe_delay(live.call.outages, failure.retry_after, &mut self.rng)
        } else {
            live.call.attempts += 1;
            live.retries += 1;
            self.stats.retries += 1;
            retry.delay(live.call.attempts, failure.retry_after, &mut self.rng)
        };
        live.call.ready_at = now + wait;
    }

    /// Time passed: stalled parts are aborted and retried.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        let stall_after = self.config.retry.stall_after;
        let stalled: Vec<(FileId, u32)> = self
            .live
            .iter()
            .filter_map(|(&file, live)| Some((file, live.upload.as_ref()?)))
            .flat_map(|(file, upload)| {
                upload
                    .running
                    .iter()
                    .filter(|(_, running)| {
                        now.saturating_since(running.last_progress) >= stall_after
                    })
                    .map(move |(&part, _)| (file, part))
            })
            .collect();
        for (file, part) in stalled {
            self.actions.push_back(Action::StopPuts {
                file,
                parts: vec![part],
            });
            // No progress is no answer: the host, not the part, is the suspect.
            let failure = Failure::network(format!("no progress for {} s", stall_after.as_secs()));
            self.handle_put_failed(file, part, failure, now);
        }
    }

    // ---- actions for the driver ----

    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        self.tick(now);
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        if !self.paused_all && self.online {
            self.take_files();
            self.end_fallback_stays(now);
            self.call_companion(now);
            self.sign_ahead(now);
            self.start_puts(now);
        }
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] should be called next: a backoff ends, a breaker lets its
    /// probe through, or a running part would count as stalled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stall_after = self.config.retry.stall_after;
        let mut deadlines: Vec<Instant> = Vec::new();
        for live in self.live.values() {
            if !live.call.in_flight {
                deadlines.push(live.call.ready_at);
            }
            if let Some(upload) = &live.upload {
                deadlines.extend(upload.waiting.values().map(|waiting| waiting.ready_at));
                if upload.fallback {
                    deadlines.push(upload.fallback_until);
                }
                deadlines.extend(
                    upload
                        .running
                        .values()
                        .map(|running| running.last_progress + stall_after),
                );
            }
        }
        deadlines.extend(self.breakers.values().filter_map(Breaker::reopens_at));
        deadlines.into_iter().filter(|&at| at > self.now).min()
    }

    // ---- internals ----

    fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// The companion answered a call of `file`: it is reachable, and the file no longer waits.
    fn companion_answered(&mut self, file: FileId) {
        self.breakers
            .entry(COMPANION.to_owned())
            .or_default()
            .on_answer();
        if let Some(live) = self.live.get_mut(&file) {
            live.call.outages = 0;
            live.set_waiting(file, false, &mut self.events);
        }
    }

    fn uploading(&mut self, file: FileId) -> Option<&mut Upload> {
        self.live
            .get_mut(&file)
            .filter(|live| live.state == FileState::Uploading)?
            .upload
            .as_mut()
    }

    fn fail(&mut self, file: FileId, error: UploadError) {
        let cancelled = error == UploadError::Cancelled;
        self.end(file, error, cancelled);
    }

    /// Ends a live file with `error`, aborting its multipart upload on the store if `abort`.
    fn end(&mut self, file: FileId, error: UploadError, abort: bool) {
        let Some(live) = self.live.remove(&file) else {
            return;
        };
        if let Some(upload) = live.upload {
            if !upload.running.is_empty() {
                for running in upload.running.values() {
                    self.breakers
                        .entry(running.host.clone())
                        .or_default()
                        .on_abandon();
                }
                let parts = upload.running.keys().copied().collect();
                self.actions.push_back(Action::StopPuts { file, parts });
            }
            // A cancelled upload, or one whose Complete was refused, is aborted on the store:
            // nothing can continue it. One that failed on its way is kept, with its resume
            // record, so that trying again continues where it stopped; the companion's janitor
            // sweeps it if nobody does.
            if let Some(upload_id) = upload.upload_id.filter(|_| abort) {
                self.stats.companion_calls += 1;
                self.actions.push_back(Action::Abort {
                    file,
                    upload_id,
                    token: upload.token,
                });
            }
        }
        self.events.push_back(Event::Failed { file, error });
    }

    /// The outer layer: takes the best queued files while there is room.
    fn take_files(&mut self) {
        while self.live.len() < self.config.triggers.max(1) {
            let Some((rank, file)) = self.line.pop_first() else {
                break;
            };
            let queued = self
                .queued
                .remove(&file)
                .expect("every file in line is queued");
            let state = if queued.resume.is_some() {
                FileState::Listing
            } else {
                FileState::Creating
            };
            let live = Live {
                rank,
                size: queued.size,
                state,
                paused: false,
                upload: None,
                resume: queued.resume,
                call: CallGate::default(),
                retries: 0,
                waiting: false,
            };
            self.live.insert(file, live);
        }
        self.stats.peak_live = self.stats.peak_live.max(self.live.len());
    }

    /// Create, list and complete calls whose turn has come.
    fn call_companion(&mut self, now: Instant) {
        let breaker = self.breakers.entry(COMPANION.to_owned()).or_default();
        for (&file, live) in &mut self.live {
            if live.call.in_flight || live.call.ready_at > now || !breaker.allows(now) {
                continue;
            }
            if live.paused {
                continue;
            }
            let action = match live.state {
                FileState::Creating => Action::Create { file },
                FileState::Listing => {
                    let snapshot = live.resume.as_ref().expect("a listing file has a snapshot");
                    Action::ListParts {
                        file,
                        upload_id: snapshot.upload_id.clone(),
                        token: snapshot.token.clone(),
                    }
                }
                FileState::Uploading | FileState::Completing => {
                    let Some(upload) = live.upload.as_ref() else {
                        continue;
                    };
                    let Some(complete) = upload.complete(file) else {
                        continue;
                    };
                    live.state = FileState::Completing;
                    complete
                }
                FileState::Queued => continue,
            };
            breaker.on_start(now);
            live.call.in_flight = true;
            self.stats.companion_calls += 1;
            self.actions.push_back(action);
        }
    }

    /// Files whose stay on the companion route is over try direct PUTs again (a longer stay
    /// follows if they still fail); before signing, so their parts get URLs.
    fn end_fallback_stays(&mut self, now: Instant) {
        for live in self.live.values_mut() {
            if let Some(upload) = live.upload.as_mut()
                && upload.fallback
                && now >= upload.fallback_until
            {
                upload.leave_fallback();
            }
        }
    }

    /// Asks for the next batch of URLs while the file still has signed parts to run, so a
    /// finishing part never waits for a signature. Expired URLs are signed again here too.
    fn sign_ahead(&mut self, now: Instant) {
        let low_water = self.config.per_file;
        let batch = self.config.sign_batch.max(1) as usize;
        let margin = self.config.retry.resign_margin;
        let breaker = self.breakers.entry(COMPANION.to_owned()).or_default();
        for (&file, live) in &mut self.live {
            if live.state != FileState::Uploading
                || live.paused
                || live.call.ready_at > now
                || live.call.in_flight
            {
                continue;
            }
            let Some(upload) = live.upload.as_mut() else {
                continue;
            };
            if !upload.signing.is_empty() || upload.fallback {
                continue;
            }
            let Some(upload_id) = upload.upload_id.clone() else {
                continue;
            };
            for waiting in upload.waiting.values_mut() {
                if waiting
                    .url
                    .as_ref()
                    .is_some_and(|url| Instant::from_unix_secs(url.expires_at) < now + margin)
                {
                    waiting.url = None;
                    self.stats.resigns += 1;
                }
            }
            let ready = upload
                .waiting
                .values()
                .filter(|waiting| waiting.url.is_some())
                .count();
            let parts: Vec<u32> = upload
                .waiting
                .iter()
                .filter(|(_, waiting)| waiting.url.is_none())
                .map(|(&part, _)| part)
                .take(batch)
                .collect();
            if parts.is_empty() || ready >= low_water || !breaker.allows(now) {
                continue;
            }
            breaker.on_start(now);
            upload.signing = parts.clone();
            self.stats.companion_calls += 1;
            self.actions.push_back(Action::Sign {
                file,
                upload_id,
                request: SignParts {
                    token: upload.token.clone(),
                    parts,
                },
            });
        }
    }

    /// The inner layer: fills free slots with ready parts, best-ranked file first.
    fn start_puts(&mut self, now: Instant) {
        let mut free = self.slots().saturating_sub(self.running_puts());
        if free == 0 {
            return;
        }
        let margin = self.config.retry.resign_margin;
        let mut order: Vec<(Rank, FileId)> = self
            .live
            .iter()
            .filter(|(_, live)| live.state == FileState::Uploading && !live.paused)
            .map(|(&file, live)| (live.rank, file))
            .collect();
        order.sort_unstable();
        for (_, file) in order {
            let upload = self
                .live
                .get_mut(&file)
                .and_then(|live| live.upload.as_mut())
                .expect("uploading files have an upload");
            while free > 0 && upload.running.len() < self.config.per_file {
                // The lowest-numbered part that may go now, with a URL that will not expire first
                // (single PUTs whose URL expired go through the companion).
                let single = upload.plan.mode == UploadMode::Single;
                let next = upload.waiting.iter().find_map(|(&part, waiting)| {
                    let fresh = waiting
                        .url
                        .as_ref()
                        .is_some_and(|url| Instant::from_unix_secs(url.expires_at) >= now + margin);
                    let routable = upload.fallback || fresh || single;
                    (waiting.ready_at <= now && routable).then_some(part)
                });
                let Some(part) = next else { break };
                let waiting = upload.waiting.get(&part).expect("found above");
                let fresh = waiting
                    .url
                    .as_ref()
                    .is_some_and(|url| Instant::from_unix_secs(url.expires_at) >= now + margin);
                let url = if fresh { waiting.url.clone() } else { None };
                let target = upload.target(url.clone());
                let host = match &target {
                    PutTarget::Direct(url) => host_of(&url.url),
                    PutTarget::Companion { .. } => COMPANION.to_owned(),
                };
                let breaker = self.breakers.entry(host.clone()).or_default();
                if !breaker.allows(now) {
                    break;
                }
                breaker.on_start(now);
                let waiting = upload.waiting.remove(&part).expect("found above");
                free -= 1;
                self.stats.puts += 1;
                self.actions.push_back(Action::Put {
                    file,
                    part,
                    range: upload.plan.part_range(part),
                    target,
                });
                upload.running.insert(
                    part,
                    Running {
                        sent: 0,
                        url,
                        host,
                        attempts: waiting.attempts,
                        last_progress: now,
                    },
                );
            }
            if free == 0 {
                break;
            }
        }
    }
}

/// Aborts a live file's running PUTs and puts their parts back in line.
fn stop(
    actions: &mut VecDeque<Action>,
    breakers: &mut BTreeMap<String, Breaker>,
    file: FileId,
    live: &mut Live,
    now: Instant,
) {
    if let Some(upload) = live.upload.as_mut()
        && !upload.running.is_empty()
    {
        for running in upload.running.values() {
            breakers
                .entry(running.host.clone())
                .or_default()
                .on_abandon();
        }
        let parts = upload.stop_running(now);
        actions.push_back(Action::StopPuts { file, parts });
    }
}

fn part_error(part: u32, failure: Failure) -> UploadError {
    match failure.status {
        None => UploadError::Network {
            part,
            message: failure.message,
        },
        Some(status) => UploadError::Store {
            part,
            status,
            code: failure.code,
            message: failure.message,
        },
    }
}
