//! The upload engine: a two-layer scheduler with retry, told what happened and saying what to do.
//!
//! - **Lazy source.** Queued files cost an entry in an ordered index (rank and size), not a state
//!   object; a file gets its state only when the outer layer takes it.
//! - **Outer layer** ([`EngineConfig::triggers`]). Up to N files are live: fingerprinted (so the
//!   same file added twice, in this page or another tab, is uploaded once), their upload created,
//!   their first batch of part URLs signed, the next batch fetched before the current one runs
//!   out. Live states never exceed N, whatever the queue's length.
//! - **Inner layer** ([`EngineConfig::slot_rule`]). A gatekeeper over all part PUTs, with a
//!   per-file cap ([`EngineConfig::per_file`]). When a slot frees, the next signed part starts.
//! - **Retry** ([`crate::retry::verdict`]). Every failure gets one verdict: spend an attempt and
//!   back off, wait out an outage for free, sign again, or fail. A stalled part is aborted and
//!   retried; while offline, or while a host's circuit breaker is open, nothing starts; a file
//!   whose direct PUTs keep failing at the network level sends its parts through the companion.
//!
//! It never performs I/O, reads no clock and draws no randomness of its own: time comes in as
//! `now`, jitter from [`EngineConfig::seed`]. It starts knowing nothing of the companion: its
//! limits are fetched ([`Action::FetchConfig`]) once a file waits. A driver calls, in a loop:
//!
//! 1. commands from the application: [`Engine::add`], [`Engine::pause`], [`Engine::cancel`], ...;
//! 2. [`Engine::poll_action`] until it returns `None`, carrying out each [`Action`];
//! 3. the `handle_*` method matching each finished action, as results arrive;
//! 4. [`Engine::poll_event`] to learn which files finished, failed, resumed or joined;
//! 5. [`Engine::poll_timeout`] to know when to call [`Engine::handle_timeout`].
//!
//! One file's path: `add` (queued) → taken: [`Action::Fingerprint`] → [`Action::Claim`] (for a
//! multipart upload) → [`Action::Create`], or [`Action::ListParts`] for a resume record →
//! [`Action::Sign`] batches and [`Action::Put`]s → [`Action::Complete`] → [`Event::Done`].
//!
//! Getters (`progress`, `running_puts`, `stats`, ...) may be called at any time.

mod upload;
mod vocabulary;

use std::collections::VecDeque;

use self::upload::{CallGate, Live, Phase, Running, Upload, Waiting, localized};
pub use self::vocabulary::{
    Action, BatchedFile, Call, Claim, Event, FileId, FileSpec, FileState, Progress, PutTarget,
    RunningPart, Snapshot, Stats,
};
use crate::adapt::Adaptive;
use crate::breaker::Breaker;
use crate::checksum::{Checksum, ChecksumAlgorithm, ChecksumType};
use crate::error::UploadError;
use crate::plan::{Plan, UploadMode};
use crate::protocol::{
    BatchCreated, CompanionConfig, SignParts, SignedPart, SignedUrl, StoredObject, StoredPart,
    UploadCreated, UploadsCreated,
};
use crate::retry::{Failure, Verdict, verdict};
use crate::schedule::{EngineConfig, Rank};
use crate::sorted::SortedMap;
use crate::text;
use crate::time::{Instant, Rng};

#[derive(Debug)]
struct Queued {
    rank: Rank,
    size: u64,
    paused: bool,
    /// Its type, while the companion's allowed types are unknown.
    unchecked_type: Option<String>,
}

/// The breaker key of calls and fallback PUTs to the companion.
const COMPANION: &str = "companion";

/// The engine. See the module documentation for the call order.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    /// What `GET /api/config` answered; `None` until it did.
    companion: Option<CompanionConfig>,
    config_call: CallGate,
    rng: Rng,
    next_id: u64,
    /// Files waiting, best first; paused ones are held aside in `queued` only.
    line: SortedMap<(Rank, FileId), ()>,
    queued: SortedMap<FileId, Queued>,
    live: SortedMap<FileId, Live>,
    /// Live uploads by fingerprint: the same file added again joins the upload.
    by_key: SortedMap<String, FileId>,
    /// Files that joined another's upload, and that upload.
    joined: SortedMap<FileId, FileId>,
    breakers: SortedMap<String, Breaker>,
    paused_all: bool,
    online: bool,
    /// The latest `now` any call brought.
    now: Instant,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Slots and part sizes that follow the measured link; `None` keeps the configured ones.
    adaptive: Option<Adaptive>,
}

/// The host of a URL, for the circuit breaker.
fn host_of(url: &str) -> String {
    let rest = text::split_once(url, "://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

impl Engine {
    /// An engine that knows nothing of its companion yet: it asks for its limits
    /// ([`Action::FetchConfig`]) when the first file is added.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            rng: Rng::new(config.seed),
            adaptive: config.adapt.map(Adaptive::new),
            config,
            companion: None,
            config_call: CallGate::default(),
            next_id: 0,
            line: SortedMap::new(),
            queued: SortedMap::new(),
            live: SortedMap::new(),
            by_key: SortedMap::new(),
            joined: SortedMap::new(),
            breakers: SortedMap::new(),
            paused_all: false,
            online: true,
            now: Instant::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    // ---- getters ----

    /// The upload a file's add is answered by: its own, or the one it joined.
    /// The live upload a file's add is answered by: its own, or the one it joined. `None` once
    /// the add ended, even if the upload it started goes on for others.
    fn upload_of(&self, file: FileId) -> Option<FileId> {
        let upload = self.joined.get(&file).copied().unwrap_or(file);
        self.live
            .get(&upload)
            .is_some_and(|live| live.handles.contains(&file))
            .then_some(upload)
    }

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
        let live = self.live.get(&self.upload_of(file)?)?;
        let upload = live.phase.upload();
        Some(Progress {
            state: live.phase.state(),
            paused: live.paused,
            size: live.size,
            confirmed: upload.map_or(0, |upload| upload.confirmed),
            in_flight: upload.map_or(0, Upload::in_flight),
            retries: live.retries,
            fallback: upload.is_some_and(|upload| upload.fallback),
            waiting: live.waiting,
        })
    }

    /// The adds an upload answers (the file itself and those that joined it); empty once it
    /// ended. Drivers report progress to each.
    pub fn handles(&self, file: FileId) -> &[FileId] {
        self.live
            .get(&file)
            .map_or(&[], |live| live.handles.as_slice())
    }

    /// Part PUTs in flight over all files.
    pub fn running_puts(&self) -> usize {
        self.uploads().map(|(_, upload)| upload.running.len()).sum()
    }

    fn uploads(&self) -> impl Iterator<Item = (FileId, &Upload)> {
        self.live
            .iter()
            .filter_map(|(&file, live)| Some((file, live.phase.upload()?)))
    }

    /// Every part PUT in flight: file, part, bytes sent and part size, for displays.
    pub fn running_parts(&self) -> Vec<RunningPart> {
        self.uploads()
            .flat_map(|(file, upload)| {
                upload.running.iter().map(move |(&part, running)| {
                    let range = upload.plan.part_range(part);
                    RunningPart {
                        file,
                        part,
                        sent: running.sent,
                        size: range.end - range.start,
                        retries: running.attempts + u32::from(running.retried_at_once),
                    }
                })
            })
            .collect()
    }

    /// The next `count` files the outer layer will take, in order.
    pub fn next_in_line(&self, count: usize) -> Vec<FileId> {
        self.line
            .iter()
            .take(count)
            .map(|(&(_, file), _)| file)
            .collect()
    }

    /// Files the outer layer is preparing: taken, and being fingerprinted, claimed, created or
    /// listed, with no part out yet.
    pub fn preparing(&self) -> Vec<FileId> {
        self.live
            .iter()
            .filter(|(_, live)| {
                matches!(
                    live.phase.state(),
                    FileState::Preparing | FileState::Creating | FileState::Listing
                )
            })
            .map(|(&file, _)| file)
            .collect()
    }

    /// Part PUTs in flight for one file.
    pub fn running_puts_of(&self, file: FileId) -> usize {
        self.upload_of(file)
            .and_then(|upload| self.live.get(&upload)?.phase.upload())
            .map_or(0, |upload| upload.running.len())
    }

    /// How many part PUTs may run now: the slot rule's count, moved by what the adaptive policy
    /// measured.
    pub fn slots(&self) -> usize {
        let rule = self.rule_slots();
        self.adaptive
            .as_ref()
            .map_or(rule, |adaptive| adaptive.slots(rule))
    }

    /// How many part PUTs one file may run now: every slot while part sizes are a guess (one
    /// multipart upload is live then).
    pub fn per_file(&self) -> usize {
        let per_file = self.config.per_file;
        if self.guessing_part_sizes() {
            return self.slots();
        }
        self.adaptive.as_ref().map_or(per_file, |adaptive| {
            adaptive.per_file(per_file, self.rule_slots())
        })
    }

    /// Whether part sizes follow the link and no part was measured yet.
    fn guessing_part_sizes(&self) -> bool {
        self.config.part_size.is_none() && self.adaptive.as_ref().is_some_and(Adaptive::unmeasured)
    }

    fn rule_slots(&self) -> usize {
        self.config
            .slot_rule
            .slots(&mut self.live.values().map(|live| live.size))
    }

    /// Files with a state of their own (never more than [`EngineConfig::triggers`]).
    pub fn live_files(&self) -> usize {
        self.live.len()
    }

    /// Files whose fingerprint was asked for and not yet answered.
    pub fn fingerprinting(&self) -> usize {
        self.live
            .values()
            .filter(|live| matches!(live.phase, Phase::Fingerprinting))
            .count()
    }

    /// Files waiting for the outer layer, paused ones included.
    pub fn queued_files(&self) -> usize {
        self.queued.len()
    }

    /// Files not yet finished.
    pub fn unfinished(&self) -> usize {
        self.live
            .values()
            .map(|live| live.handles.len())
            .sum::<usize>()
            + self.queued.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The part size to ask of the companion for a new upload of `size` bytes: the configured
    /// one, else what the adaptive policy measured; `None` takes the companion's own.
    pub fn part_size_for(&self, size: u64) -> Option<u64> {
        // A file of one part stays one: the adaptive size is for multipart uploads.
        if !self.resumable(size) {
            return self.config.part_size;
        }
        self.config.part_size.or_else(|| {
            let last = self.line.is_empty();
            self.adaptive
                .as_ref()?
                .part_size(size, self.rule_slots(), last)
        })
    }

    /// The companion's limits, once it told them.
    pub fn companion(&self) -> Option<&CompanionConfig> {
        self.companion.as_ref()
    }

    /// What to keep to resume the file's multipart upload later; `None` until it is created, and
    /// for single PUTs.
    pub fn snapshot(&self, file: FileId) -> Option<Snapshot> {
        let upload = self.live.get(&self.upload_of(file)?)?.phase.upload()?;
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
                        checksum: upload.checksums.get(&part).cloned(),
                    }
                })
                .collect(),
            checksum: upload.algorithm,
        })
    }

    // ---- commands ----

    /// Queues a file and names it. A file the companion refuses (too large, a type it does not
    /// take) fails before any request about it: at once if its limits are known, else when they
    /// arrive.
    pub fn add(&mut self, spec: FileSpec) -> FileId {
        let file = FileId(self.next_id);
        self.next_id += 1;
        let unchecked_type = match &self.companion {
            Some(companion) => {
                if let Some(error) = refusal(companion, spec.size, &spec.content_type) {
                    self.events.push_back(Event::Failed { file, error });
                    return file;
                }
                None
            }
            None => Some(spec.content_type),
        };
        let rank = Rank::new(self.config.order, spec.priority, spec.size, file.0);
        self.line.insert((rank, file), ());
        self.queued.insert(
            file,
            Queued {
                rank,
                size: spec.size,
                paused: false,
                unchecked_type,
            },
        );
        file
    }

    /// Stops starting anything for the file (for every add of it); its running PUTs are aborted
    /// and will be sent again on resume.
    pub fn pause(&mut self, file: FileId) {
        if let Some(queued) = self.queued.get_mut(&file) {
            queued.paused = true;
            self.line.remove(&(queued.rank, file));
        } else if let Some(upload) = self.upload_of(file)
            && let Some(live) = self.live.get_mut(&upload)
        {
            live.paused = true;
            stop(
                &mut self.actions,
                &mut self.breakers,
                &mut self.adaptive,
                upload,
                live,
                self.now,
            );
        }
    }

    pub fn resume(&mut self, file: FileId) {
        if let Some(queued) = self.queued.get_mut(&file) {
            if queued.paused {
                queued.paused = false;
                self.line.insert((queued.rank, file), ());
            }
        } else if let Some(upload) = self.upload_of(file)
            && let Some(live) = self.live.get_mut(&upload)
        {
            live.paused = false;
        }
    }

    /// Stops every running PUT and starts nothing until [`Engine::resume_all`].
    pub fn pause_all(&mut self) {
        self.paused_all = true;
        for (&file, live) in &mut self.live {
            stop(
                &mut self.actions,
                &mut self.breakers,
                &mut self.adaptive,
                file,
                live,
                self.now,
            );
        }
    }

    pub fn resume_all(&mut self) {
        self.paused_all = false;
        // The pause is no measure of the link.
        if let Some(adaptive) = &mut self.adaptive {
            adaptive.reset(self.now);
        }
    }

    /// Ends this add of the file. An upload other adds of the same file still wait for goes on
    /// for them; otherwise its running PUTs are aborted and the multipart upload with them.
    pub fn cancel(&mut self, file: FileId) {
        if let Some(queued) = self.queued.remove(&file) {
            self.line.remove(&(queued.rank, file));
            self.events.push_back(Event::Failed {
                file,
                error: UploadError::Cancelled,
            });
            return;
        }
        let Some(upload) = self.upload_of(file) else {
            // Ended already: nothing more to tell it.
            return;
        };
        let live = self
            .live
            .get_mut(&upload)
            .expect("upload_of finds live uploads");
        if live.handles.len() > 1 {
            live.handles.retain(|&handle| handle != file);
            self.joined.remove(&file);
            self.events.push_back(Event::Failed {
                file,
                error: UploadError::Cancelled,
            });
        } else {
            self.end(upload, UploadError::Cancelled, true);
        }
    }

    pub fn cancel_all(&mut self) {
        let queued: Vec<FileId> = self.queued.keys().copied().collect();
        for file in queued {
            self.cancel(file);
        }
        let live: Vec<FileId> = self.live.keys().copied().collect();
        for file in live {
            self.end(file, UploadError::Cancelled, true);
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
            self.config_call.ready_at = self.config_call.ready_at.min(now);
            for live in self.live.values_mut().filter(|live| live.waiting) {
                live.call.ready_at = live.call.ready_at.min(now);
                if let Some(upload) = live.phase.upload_mut() {
                    for waiting in upload.waiting.values_mut() {
                        waiting.ready_at = waiting.ready_at.min(now);
                    }
                }
            }
        }
    }

    /// The companion's limits: files it would refuse fail now, the others can be taken.
    pub fn handle_config(&mut self, companion: CompanionConfig, now: Instant) {
        self.tick(now);
        self.companion_reached();
        self.config_call = CallGate::default();
        let refused: Vec<(FileId, UploadError)> = self
            .queued
            .iter_mut()
            .filter_map(|(&file, queued)| {
                let content_type = queued.unchecked_type.take()?;
                Some((file, refusal(&companion, queued.size, &content_type)?))
            })
            .collect();
        for (file, error) in refused {
            if let Some(queued) = self.queued.remove(&file) {
                self.line.remove(&(queued.rank, file));
            }
            self.events.push_back(Event::Failed { file, error });
        }
        self.companion = Some(companion);
    }

    /// `GET /api/config` failed: retried as any call, but a companion that never answered is
    /// more likely a wrong address than an outage, so no answer spends attempts too. When it
    /// cannot succeed, every file waiting for it fails with its error (the next add asks again).
    pub fn handle_config_failed(&mut self, failure: Failure, now: Instant) {
        self.tick(now);
        if !self.config_call.in_flight {
            return;
        }
        self.config_call.in_flight = false;
        self.breakers
            .get_or_insert_with(COMPANION.to_owned(), Breaker::default)
            .on_outcome(&failure, self.online, now);
        let gate = &mut self.config_call;
        let retries = self.config.retry.retries;
        let verdict = match verdict(&failure, gate.attempts, &self.config.retry) {
            Verdict::WaitOut if gate.attempts >= retries => Verdict::Fail { refused: false },
            verdict => verdict,
        };
        let wait = match verdict {
            Verdict::Spend | Verdict::Resign | Verdict::WaitOut => {
                gate.attempts += 1;
                self.stats.retries += 1;
                self.config
                    .retry
                    .delay(gate.attempts, failure.retry_after, &mut self.rng)
            }
            Verdict::Fail { .. } => {
                self.config_call = CallGate::default();
                let error = UploadError::from_call(failure);
                for (file, queued) in std::mem::take(&mut self.queued) {
                    self.line.remove(&(queued.rank, file));
                    self.events.push_back(Event::Failed {
                        file,
                        error: error.clone(),
                    });
                }
                return;
            }
        };
        gate.ready_at = now + wait;
    }

    /// The file's fingerprint (`None`: it has none, so nothing can join it). Another upload of
    /// the same fingerprint in this page takes the file in; otherwise a multipart upload claims
    /// the fingerprint ([`Action::Claim`]) and a single PUT is created.
    pub fn handle_fingerprinted(&mut self, file: FileId, key: Option<String>, now: Instant) {
        self.tick(now);
        if !self
            .live
            .get(&file)
            .is_some_and(|live| matches!(live.phase, Phase::Fingerprinting))
        {
            return;
        }
        let same = key
            .as_ref()
            .and_then(|key| self.by_key.get(key))
            .copied()
            .filter(|upload| self.live.contains_key(upload));
        if let Some(upload) = same {
            let joining = self.live.remove(&file).expect("checked above");
            let owner = self.live.get_mut(&upload).expect("checked above");
            for &handle in &joining.handles {
                owner.handles.push(handle);
                self.joined.insert(handle, upload);
                self.events.push_back(Event::Joined {
                    file: handle,
                    upload,
                });
                if owner.waiting {
                    self.events.push_back(Event::Waiting {
                        file: handle,
                        waiting: true,
                    });
                }
            }
            self.stats.joined += 1;
            return;
        }
        let resumable = self.resumable(self.live[&file].size);
        let live = self.live.get_mut(&file).expect("checked above");
        match key {
            Some(key) => {
                self.by_key.insert(key.clone(), file);
                live.key = Some(key.clone());
                if resumable {
                    live.phase = Phase::Claiming;
                    self.actions.push_back(Action::Claim { file, key });
                } else {
                    live.phase = Phase::Creating;
                }
            }
            None => live.phase = Phase::Creating,
        }
    }

    /// The file's fingerprint is this page's: it starts afresh, continues a resume record, or
    /// is done already (another page stored it while this one waited).
    pub fn handle_claimed(&mut self, file: FileId, claim: Claim, now: Instant) {
        self.tick(now);
        let Some(live) = self
            .live
            .get_mut(&file)
            .filter(|live| matches!(live.phase, Phase::Claiming))
        else {
            return;
        };
        match claim {
            Claim::Fresh => live.phase = Phase::Creating,
            Claim::Resume(snapshot) => live.phase = Phase::Listing(Box::new(snapshot)),
            Claim::Stored(object) => self.finish(file, object),
        }
    }

    pub fn handle_created(&mut self, file: FileId, created: UploadCreated, now: Instant) {
        self.tick(now);
        self.companion_answered(file);
        let Some(live) = self
            .live
            .get_mut(&file)
            .filter(|live| matches!(live.phase, Phase::Creating))
        else {
            // Cancelled (or failed) while the create was on its way: nothing may stay behind.
            self.abort_created(file, created);
            return;
        };
        live.call = CallGate::default();
        let size = live.size;
        let plan = Plan::with_part_size(size, created.part_size)
            .ok()
            .filter(|plan| plan.mode == created.mode && plan.part_count == created.part_count)
            .filter(|plan| plan.mode == UploadMode::Multipart || created.url.is_some());
        let Some(plan) = plan else {
            let message = format!(
                "{} parts of {} bytes ({:?}, URL given: {}) do not cut {size} bytes",
                created.part_count,
                created.part_size,
                created.mode,
                created.url.is_some()
            );
            self.abort_created(file, created);
            self.end(file, UploadError::BadPlan(message), false);
            return;
        };
        let upload = Upload::new(&created, plan, now, live.algorithm, live.checksum.clone());
        live.phase = Phase::Uploading(upload);
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

    /// The parts the store holds for a resumed file: those whose number, size and ETag agree
    /// with the resume record are kept, the rest uploaded. A record that does not fit the file
    /// starts it afresh.
    pub fn handle_listed(&mut self, file: FileId, listed: Vec<StoredPart>, now: Instant) {
        self.tick(now);
        self.companion_answered(file);
        let Some(live) = self
            .live
            .get_mut(&file)
            .filter(|live| matches!(live.phase, Phase::Listing(_)))
        else {
            return;
        };
        live.call = CallGate::default();
        let Phase::Listing(snapshot) = std::mem::replace(&mut live.phase, Phase::Creating) else {
            unreachable!("checked above")
        };
        let Some(plan) = Plan::with_part_size(live.size, snapshot.part_size)
            .ok()
            .filter(|plan| {
                plan.mode == UploadMode::Multipart && plan.part_count == snapshot.part_count
            })
            .filter(|_| snapshot.checksum == live.algorithm)
        else {
            return;
        };
        let mut upload = Upload::resumed(&snapshot, plan, now);
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
            if !agrees || !upload.waiting.contains_key(&part.part) {
                continue;
            }
            match upload.algorithm {
                // Kept once the local bytes hash to the store's checksum (a part the store
                // holds without one proves nothing, and is sent again).
                Some(_) if part.checksum.is_some() => {
                    upload.unverified.insert(part.part, part.clone());
                }
                Some(_) => {}
                None => upload.keep(part),
            }
        }
        let verified = upload.unverified.is_empty();
        let parts_kept = upload.etags.len() as u32;
        live.phase = Phase::Uploading(upload);
        if verified {
            live.tell(Event::Resumed { file, parts_kept }, &mut self.events);
        }
    }

    /// The checksums of the file's bytes an [`Action::Hash`] asked for, in its order. A resumed
    /// part whose bytes hash to the store's checksum is kept; the others are signed with theirs.
    pub fn handle_hashed(&mut self, file: FileId, values: Vec<String>, now: Instant) {
        self.tick(now);
        let Some(live) = self.live.get_mut(&file) else {
            return;
        };
        if let Phase::Creating = live.phase {
            if live.hashing {
                live.hashing = false;
                live.checksum = values.into_iter().next();
            }
            return;
        }
        let Phase::Uploading(upload) = &mut live.phase else {
            return;
        };
        let hashed = std::mem::take(&mut upload.hashing);
        let verifying = !upload.unverified.is_empty();
        for (part, value) in hashed.into_iter().zip(values) {
            if let Some(stored) = upload.unverified.remove(&part)
                && stored.checksum.as_deref() == Some(value.as_str())
            {
                upload.keep(&stored);
            }
            upload.checksums.insert(part, value);
        }
        if verifying && upload.unverified.is_empty() {
            let parts_kept = upload.etags.len() as u32;
            live.tell(Event::Resumed { file, parts_kept }, &mut self.events);
        }
    }

    /// The file's bytes could not be read: it fails. Its multipart upload is kept, as after any
    /// failure on the way, for a retry once the file can be read.
    pub fn handle_hash_failed(&mut self, file: FileId, message: String, now: Instant) {
        self.tick(now);
        self.end(file, UploadError::Unreadable { message }, false);
    }

    pub fn handle_signed(&mut self, file: FileId, parts: Vec<SignedPart>, now: Instant) {
        self.tick(now);
        self.companion_answered(file);
        let Some(live) = self.live.get_mut(&file) else {
            return;
        };
        // Only an answer to the sign call in flight counts; a late one must not touch the gate
        // of a Complete that may be running now.
        let Phase::Uploading(upload) = &mut live.phase else {
            return;
        };
        if upload.signing.is_empty() {
            return;
        }
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
        let Some(Phase::Uploading(upload)) = self.live.get_mut(&file).map(|live| &mut live.phase)
        else {
            return;
        };
        let range = upload.plan.part_range(part);
        let Some(running) = upload.running.get_mut(&part) else {
            return;
        };
        if sent <= running.sent {
            return;
        }
        let added = sent - running.sent;
        running.sent = sent;
        running.last_progress = now;
        // Progress heard only at the end (a browser that reports once) says nothing of the
        // request's overhead.
        if running.first_byte.is_none() && sent < range.end - range.start {
            running.first_byte = Some(now);
        }
        if let Some(adaptive) = &mut self.adaptive {
            let epoch = adaptive.epoch();
            if running.counted.0 != epoch {
                running.counted = (epoch, 0);
            }
            if adaptive.on_bytes(added, now) {
                running.counted.1 += added;
            }
        }
    }

    pub fn handle_put_done(&mut self, file: FileId, part: u32, etag: String, now: Instant) {
        self.tick(now);
        // A single PUT is the object, unless the companion wants to hear of it (a Complete,
        // issued with the other companion calls).
        let completes_itself = !self
            .companion
            .as_ref()
            .is_some_and(|companion| companion.complete_single_puts);
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
        let measured = (
            range.end - range.start,
            running.sent,
            running.started,
            running.first_byte,
        );
        upload.confirmed += range.end - range.start;
        upload.etags.insert(part, etag);
        let single =
            (upload.plan.mode == UploadMode::Single && completes_itself).then(|| StoredObject {
                key: upload.key.clone(),
                etag: upload.etags[&1].clone(),
                size: upload.plan.size,
                location: upload.location.clone(),
                // The store took the PUT only with the checksum its URL binds.
                checksum: upload.algorithm.zip(upload.checksums.get(&1)).map(
                    |(algorithm, value)| Checksum {
                        algorithm,
                        kind: ChecksumType::FullObject,
                        value: value.clone(),
                    },
                ),
            });
        if let Some(adaptive) = &mut self.adaptive {
            // A form reports no progress: its bytes count when it ends.
            let (size, sent, started, first_byte) = measured;
            adaptive.on_bytes(size.saturating_sub(sent), now);
            adaptive.on_part_done(size, started, first_byte, now);
        }
        self.breakers
            .get_or_insert_with(host, Breaker::default)
            .on_answer();
        if let Some(live) = self.live.get_mut(&file) {
            live.set_waiting(file, false, &mut self.events);
        }
        if let Some(object) = single {
            self.finish(file, object);
        }
    }

    pub fn handle_put_failed(&mut self, file: FileId, part: u32, failure: Failure, now: Instant) {
        if self.stored_by_an_earlier_attempt(file, &failure) {
            return self.handle_put_done(file, part, String::new(), now);
        }
        self.tick(now);
        let online = self.online;
        let rule = self.rule_slots();
        let Some(live) = self.live.get_mut(&file) else {
            return;
        };
        let Phase::Uploading(upload) = &mut live.phase else {
            return;
        };
        let Some(running) = upload.running.remove(&part) else {
            return;
        };
        let breaker = self
            .breakers
            .get_or_insert_with(running.host.clone(), Breaker::default);
        breaker.on_outcome(&failure, online, now);
        let network = failure.status.is_none();
        if let Some(adaptive) = &mut self.adaptive {
            adaptive.take_back(running.counted);
            if failure.asks_for_less_load() {
                adaptive.on_overload(rule, now);
            } else if network && online {
                adaptive.on_drop();
            }
        }
        let mut waiting = Waiting {
            url: running.url,
            attempts: running.attempts,
            retried_at_once: running.retried_at_once,
            ready_at: now,
        };
        let retry = &self.config.retry;
        let verdict = verdict(&failure, waiting.attempts, retry);
        // A form is a shortcut, not the only way: a store that refuses one for any reason but
        // its bytes gets the file through the companion's route instead.
        let form_refused = waiting.url.as_ref().is_some_and(SignedUrl::is_form)
            && verdict == (Verdict::Fail { refused: true })
            && !failure.is_digest_mismatch();
        if form_refused {
            waiting.url = None;
            upload.waiting.insert(part, waiting);
            return;
        }
        // A one-off failure (a dropped connection, an internal error) is sent again at once, the
        // first time: waiting would only idle the slot. It spends nothing, and the backoff
        // starts at its first step if the part fails again. Offline, there is nothing to gain.
        let at_once = online && !waiting.retried_at_once && failure.is_one_off();
        if at_once {
            waiting.retried_at_once = true;
        }
        let mut waits_out = false;
        match verdict {
            Verdict::Resign => {
                self.stats.resigns += 1;
                waiting.url = None;
            }
            Verdict::WaitOut => {
                let switch = network && online && !upload.fallback && {
                    upload.network_failures += 1;
                    upload.network_failures >= retry.fallback_after
                };
                if switch {
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
                } else if at_once {
                    self.stats.retried_at_once += 1;
                } else {
                    if upload.fallback && !network {
                        // The companion answered that it cannot reach the store either: the
                        // store is down for everyone, not just for this browser, so the direct
                        // route is as good.
                        upload.leave_fallback();
                    }
                    // A tripped breaker or being offline holds the probes back too.
                    upload.outages += 1;
                    waiting.ready_at =
                        now + retry.probe_delay(upload.outages, failure.retry_after, &mut self.rng);
                    waits_out = true;
                }
            }
            Verdict::Spend if at_once => {
                self.stats.retried_at_once += 1;
            }
            Verdict::Spend => {
                waiting.attempts += 1;
                live.retries += 1;
                self.stats.retries += 1;
                waiting.ready_at =
                    now + retry.delay(waiting.attempts, failure.retry_after, &mut self.rng);
            }
            Verdict::Fail { .. } => {
                // Bytes that never matched their checksum, however often sent: the file changed
                // under the upload, so nothing stored of it can be trusted.
                let abort = failure.is_digest_mismatch();
                return self.end(file, part_error(part, failure), abort);
            }
        }
        upload.waiting.insert(part, waiting);
        if waits_out {
            live.set_waiting(file, true, &mut self.events);
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
                .and_then(|live| live.phase.upload())
                .is_some_and(|upload| upload.plan.mode == UploadMode::Single)
    }

    pub fn handle_completed(&mut self, file: FileId, object: StoredObject, now: Instant) {
        self.tick(now);
        self.companion_answered(file);
        if self
            .live
            .get(&file)
            .is_some_and(|live| matches!(live.phase, Phase::Completing(_)))
        {
            self.finish(file, object);
        }
    }

    /// A call to the companion failed: it is retried after a backoff when that can help.
    pub fn handle_call_failed(&mut self, file: FileId, call: Call, failure: Failure, now: Instant) {
        self.tick(now);
        if self.live.contains_key(&file) {
            self.breakers
                .get_or_insert_with(COMPANION.to_owned(), Breaker::default)
                .on_outcome(&failure, self.online, now);
        }
        self.call_failed(file, call, &failure, now);
    }

    /// The answer to an [`Action::CreateBatch`] of `files` (in the action's order): each file
    /// created or refused on its own. An answer without one entry per file fails the batch.
    pub fn handle_batch_answered(
        &mut self,
        files: &[FileId],
        answer: Result<UploadsCreated, Failure>,
        now: Instant,
    ) {
        match answer {
            Ok(answer) if answer.uploads.len() == files.len() => {
                for (&file, created) in files.iter().zip(answer.uploads) {
                    match created {
                        BatchCreated::Created(created) => self.handle_created(file, created, now),
                        BatchCreated::Refused(refusal) => {
                            self.handle_call_failed(file, Call::Create, refusal.into(), now)
                        }
                    }
                }
            }
            Ok(answer) => {
                let failure = Failure {
                    status: Some(200),
                    code: "BadAnswer".into(),
                    message: format!(
                        "{} answers to a batch of {} files",
                        answer.uploads.len(),
                        files.len()
                    ),
                    retry_after: None,
                };
                self.handle_batch_failed(files, failure, now);
            }
            Err(failure) => self.handle_batch_failed(files, failure, now),
        }
    }

    /// An [`Action::CreateBatch`] failed as a whole: one failed call, each of its files retried
    /// as its own create would be.
    pub fn handle_batch_failed(&mut self, files: &[FileId], failure: Failure, now: Instant) {
        self.tick(now);
        self.breakers
            .get_or_insert_with(COMPANION.to_owned(), Breaker::default)
            .on_outcome(&failure, self.online, now);
        for &file in files {
            self.call_failed(file, Call::Create, &failure, now);
        }
        // Each file drew its own jitter: they go again together, as one batch, at the latest.
        let again = files
            .iter()
            .filter_map(|file| self.live.get(file))
            .map(|live| live.call.ready_at)
            .max();
        for file in files {
            if let (Some(live), Some(again)) = (self.live.get_mut(file), again) {
                live.call.ready_at = again;
            }
        }
    }

    /// What a failed call means for `file` (the breaker already heard of it).
    fn call_failed(&mut self, file: FileId, call: Call, failure: &Failure, now: Instant) {
        let Some(live) = self.live.get_mut(&file) else {
            return;
        };
        let expected = match (call, &mut live.phase) {
            (Call::Create, Phase::Creating)
            | (Call::ListParts, Phase::Listing(_))
            | (Call::Complete, Phase::Completing(_)) => true,
            (Call::Sign, Phase::Uploading(upload)) => {
                !std::mem::take(&mut upload.signing).is_empty()
            }
            _ => false,
        };
        if !expected {
            return;
        }
        live.call.in_flight = false;
        let retry = &self.config.retry;
        // A call's `BadDigest` is the store's word on bytes it already holds (the object's
        // checksum at Complete): sending the call again cannot change them.
        let verdict = match verdict(failure, live.call.attempts, retry) {
            _ if failure.is_digest_mismatch() => Verdict::Fail { refused: true },
            verdict => verdict,
        };
        let wait = match verdict {
            Verdict::Fail { refused: true } if call == Call::ListParts => {
                // The upload is gone or the record is stale: start afresh, never fail for it.
                live.phase = Phase::Creating;
                return;
            }
            Verdict::Fail { refused } => {
                // A Complete refused for good (the parts cannot make the object) leaves nothing
                // to continue: its upload is aborted. Anything else, retries that ran out
                // included, keeps it for a retry.
                let abort = refused && call == Call::Complete;
                return self.end(file, UploadError::from_call(failure.clone()), abort);
            }
            Verdict::WaitOut => {
                live.call.outages += 1;
                live.set_waiting(file, true, &mut self.events);
                retry.probe_delay(live.call.outages, failure.retry_after, &mut self.rng)
            }
            // A call's URL is the companion's, which never expires: a 403 there is spent.
            Verdict::Spend | Verdict::Resign => {
                live.call.attempts += 1;
                live.retries += 1;
                self.stats.retries += 1;
                retry.delay(live.call.attempts, failure.retry_after, &mut self.rng)
            }
        };
        live.call.ready_at = now + wait;
    }

    /// Time passed: stalled parts are aborted and retried.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        let stall_after = self.config.retry.stall_after;
        let stalled: Vec<(FileId, u32)> = self
            .uploads()
            .flat_map(|(file, upload)| {
                upload
                    .running
                    .iter()
                    .filter(move |&(&part, running)| {
                        now >= upload.stalls_at(part, running, stall_after)
                    })
                    .map(move |(&part, _)| (file, part))
            })
            .collect();
        for (file, part) in stalled {
            let rule = self.rule_slots();
            if let Some(adaptive) = &mut self.adaptive {
                adaptive.on_overload(rule, now);
            }
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
            self.fetch_config(now);
            self.take_files();
            self.end_fallback_stays(now);
            self.call_companion(now);
            self.hash_ahead();
            self.sign_ahead(now);
            // Decide first, so PUTs start under the count just decided.
            self.adapt(now);
            self.start_puts(now);
            self.note_busy(now);
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
        if self.companion.is_none() && !self.config_call.in_flight && !self.queued.is_empty() {
            deadlines.push(self.config_call.ready_at);
        }
        for live in self.live.values() {
            if !live.call.in_flight {
                deadlines.push(live.call.ready_at);
            }
            if let Some(upload) = live.phase.upload() {
                deadlines.extend(upload.waiting.values().map(|waiting| waiting.ready_at));
                if upload.fallback {
                    deadlines.push(upload.fallback_until);
                }
                deadlines.extend(
                    upload
                        .running
                        .iter()
                        .map(|(&part, running)| upload.stalls_at(part, running, stall_after)),
                );
            }
        }
        deadlines.extend(self.breakers.values().filter_map(Breaker::reopens_at));
        if self.running_puts() > 0 {
            let adaptive = self.adaptive.as_ref();
            deadlines.extend(adaptive.and_then(|adaptive| adaptive.next_deadline(self.now)));
        }
        deadlines.into_iter().filter(|&at| at > self.now).min()
    }

    // ---- internals ----

    fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Whether a file of `size` bytes goes as a multipart upload, by the companion's plan.
    fn resumable(&self, size: u64) -> bool {
        let Some(companion) = &self.companion else {
            return false;
        };
        let preferred = self
            .config
            .part_size
            .unwrap_or(companion.preferred_part_size);
        Plan::new(size, preferred, &companion.limits)
            .is_ok_and(|plan| plan.mode == UploadMode::Multipart)
    }

    /// The companion answered: it is reachable.
    fn companion_reached(&mut self) {
        self.breakers
            .get_or_insert_with(COMPANION.to_owned(), Breaker::default)
            .on_answer();
    }

    /// The companion answered a call of `file`: it is reachable, and the file no longer waits.
    fn companion_answered(&mut self, file: FileId) {
        self.companion_reached();
        if let Some(live) = self.live.get_mut(&file) {
            live.call.outages = 0;
            live.set_waiting(file, false, &mut self.events);
        }
    }

    fn uploading(&mut self, file: FileId) -> Option<&mut Upload> {
        match &mut self.live.get_mut(&file)?.phase {
            Phase::Uploading(upload) => Some(upload),
            _ => None,
        }
    }

    /// Removes a live file, and what named it, for good.
    fn remove_live(&mut self, file: FileId) -> Option<Live> {
        let live = self.live.remove(&file)?;
        if let Some(key) = &live.key
            && self.by_key.get(key) == Some(&file)
        {
            self.by_key.remove(key);
        }
        for handle in &live.handles {
            self.joined.remove(handle);
        }
        Some(live)
    }

    /// The file's object is stored: every add of it is done.
    fn finish(&mut self, file: FileId, object: StoredObject) {
        if let Some(live) = self.remove_live(file) {
            live.tell(Event::Done { file, object }, &mut self.events);
        }
    }

    /// Ends a live file with `error`, aborting its multipart upload on the store if `abort`.
    fn end(&mut self, file: FileId, error: UploadError, abort: bool) {
        let Some(live) = self.remove_live(file) else {
            return;
        };
        if let Some(upload) = live.phase.upload() {
            if !upload.running.is_empty() {
                for running in upload.running.values() {
                    self.breakers
                        .get_or_insert_with(running.host.clone(), Breaker::default)
                        .on_abandon();
                }
                let parts = upload.running.keys().copied().collect();
                self.actions.push_back(Action::StopPuts { file, parts });
            }
            // A cancelled upload, or one whose Complete was refused, is aborted on the store:
            // nothing can continue it. One that failed on its way is kept, with its resume
            // record, so that trying again continues where it stopped; the companion's janitor
            // sweeps it if nobody does.
            if let Some(upload_id) = upload.upload_id.clone().filter(|_| abort) {
                self.stats.companion_calls += 1;
                self.actions.push_back(Action::Abort {
                    file,
                    upload_id,
                    token: upload.token.clone(),
                });
            }
        }
        live.tell(Event::Failed { file, error }, &mut self.events);
    }

    /// Asks for the companion's limits once a file waits for them.
    fn fetch_config(&mut self, now: Instant) {
        let breaker = self
            .breakers
            .get_or_insert_with(COMPANION.to_owned(), Breaker::default);
        if self.companion.is_some()
            || self.queued.is_empty()
            || !self.config_call.ready(now)
            || !breaker.allows(now)
        {
            return;
        }
        breaker.on_start(now);
        self.config_call.in_flight = true;
        self.stats.companion_calls += 1;
        self.actions.push_back(Action::FetchConfig);
    }

    /// The outer layer: takes the best queued files while there is room, and asks for their
    /// fingerprints. Files wait until the companion's limits are known.
    fn take_files(&mut self) {
        if self.companion.is_none() {
            return;
        }
        let batch = self.create_batch();
        while let Some((&(rank, file), _)) = self.line.first_key_value() {
            let resumable = self.resumable(self.queued[&file].size);
            // Files of one part are created in batches: twice a batch of them may be live, so
            // one batch is made while the last one's PUTs run.
            let limit = match batch {
                Some(batch) if !resumable => self.config.triggers.max(2 * batch),
                _ => self.config.triggers,
            };
            if self.live.len() >= limit.max(1) {
                break;
            }
            self.line.pop_first();
            let queued = self
                .queued
                .remove(&file)
                .expect("every file in line is queued");
            let live = Live::new(file, rank, queued.size, self.algorithm(), !resumable);
            self.live.insert(file, live);
            self.actions
                .push_back(Action::Fingerprint { file, resumable });
        }
        self.stats.peak_live = self.stats.peak_live.max(self.live.len());
    }

    /// Create, list and complete calls whose turn has come.
    fn call_companion(&mut self, now: Instant) {
        let complete_single_puts = self
            .companion
            .as_ref()
            .is_some_and(|companion| companion.complete_single_puts);
        let batch_limit = self.create_batch();
        let mut batch = Vec::new();
        // Until a part was measured, a new upload's part size is a guess: one multipart upload
        // is created with it (and may use every slot), the next ones once its parts measured.
        let guessing = self.guessing_part_sizes();
        let mut guessed = guessing
            && self.live.values().any(|live| {
                !live.single
                    && !live.paused
                    && match live.phase {
                        Phase::Creating => live.call.in_flight,
                        Phase::Fingerprinting | Phase::Claiming => false,
                        Phase::Listing(_) | Phase::Uploading(_) | Phase::Completing(_) => true,
                    }
            });
        let breaker = self
            .breakers
            .get_or_insert_with(COMPANION.to_owned(), Breaker::default);
        for (&file, live) in &mut self.live {
            if live.paused || !live.call.ready(now) || !breaker.allows(now) {
                continue;
            }
            if let Phase::Uploading(upload) = &live.phase
                && (upload.upload_id.is_some() || complete_single_puts)
                && upload.finished()
            {
                live.phase.start_completing();
            }
            let action = match &live.phase {
                // A single PUT's URL binds its checksum: the file is hashed before its create.
                Phase::Creating
                    if live.single && live.algorithm.is_some() && live.checksum.is_none() =>
                {
                    let Some(algorithm) = live.algorithm.filter(|_| !live.hashing) else {
                        continue;
                    };
                    live.hashing = true;
                    self.actions.push_back(Action::Hash {
                        file,
                        algorithm,
                        parts: vec![(1, 0..live.size)],
                    });
                    continue;
                }
                Phase::Creating if live.single && batch_limit.is_some() => {
                    batch.push(file);
                    continue;
                }
                Phase::Creating if guessed && !live.single => continue,
                Phase::Creating => {
                    guessed |= guessing && !live.single;
                    Action::Create {
                        file,
                        checksum: live.checksum.clone(),
                    }
                }
                Phase::Listing(snapshot) => Action::ListParts {
                    file,
                    upload_id: snapshot.upload_id.clone(),
                    token: snapshot.token.clone(),
                },
                Phase::Completing(upload) => upload.complete(file),
                Phase::Fingerprinting | Phase::Claiming | Phase::Uploading(_) => continue,
            };
            breaker.on_start(now);
            live.call.in_flight = true;
            self.stats.companion_calls += 1;
            self.actions.push_back(action);
        }
        if let Some(limit) = batch_limit {
            self.create_in_batches(batch, limit, now);
        }
    }

    /// Files of one part ready to be created, in batches of `limit`. A full batch goes at once;
    /// a short one waits for more files while a batch is on its way (files hashed one by one
    /// gather behind it, as Nagle's rule gathers bytes) or while enough created files wait for
    /// a slot.
    fn create_in_batches(&mut self, ready: Vec<FileId>, limit: usize, now: Instant) {
        let batch_on_its_way = self.live.values().any(|live| {
            live.single && live.call.in_flight && matches!(live.phase, Phase::Creating)
        });
        let waiting_for_a_slot = self
            .live
            .values()
            .filter(|live| match &live.phase {
                Phase::Uploading(upload) => {
                    upload.plan.mode == UploadMode::Single
                        && upload.running.is_empty()
                        && !upload.finished()
                }
                _ => false,
            })
            .count();
        let short_waits = batch_on_its_way || waiting_for_a_slot >= self.slots();
        for chunk in ready.chunks(limit) {
            if chunk.len() < limit && short_waits {
                break;
            }
            let breaker = self
                .breakers
                .get_or_insert_with(COMPANION.to_owned(), Breaker::default);
            if !breaker.allows(now) {
                break;
            }
            breaker.on_start(now);
            let files = chunk
                .iter()
                .map(|&file| {
                    let live = self.live.get_mut(&file).expect("ready files are live");
                    live.call.in_flight = true;
                    BatchedFile {
                        file,
                        checksum: live.checksum.clone(),
                    }
                })
                .collect();
            self.stats.companion_calls += 1;
            self.actions.push_back(Action::CreateBatch { files });
        }
    }

    /// How many files of one part one create call takes, when both this engine and the
    /// companion create in batches.
    fn create_batch(&self) -> Option<usize> {
        let offered = self.companion.as_ref()?.create_batch;
        let limit = self.config.create_batch.min(offered) as usize;
        (limit > 1).then_some(limit)
    }

    /// Files whose stay on the companion route is over try direct PUTs again (a longer stay
    /// follows if they still fail); before signing, so their parts get URLs.
    fn end_fallback_stays(&mut self, now: Instant) {
        for live in self.live.values_mut() {
            if let Some(upload) = live.phase.upload_mut()
                && upload.fallback
                && now >= upload.fallback_until
            {
                upload.leave_fallback();
            }
        }
    }

    /// The checksum the companion asks for, once it told.
    fn algorithm(&self) -> Option<ChecksumAlgorithm> {
        self.companion
            .as_ref()
            .and_then(|companion| companion.checksum)
    }

    /// Hashes parts ahead of signing, so a freed slot never waits for a hash: a resumed file's
    /// parts the store holds first (to know which to keep), then enough waiting parts for the
    /// next sign batches. Batches start at one part and double up to a sign batch.
    fn hash_ahead(&mut self) {
        let ahead = self.per_file() + self.config.sign_batch.max(1) as usize;
        let max_batch = self.config.sign_batch.max(1) as usize;
        for (&file, live) in &mut self.live {
            let Phase::Uploading(upload) = &mut live.phase else {
                continue;
            };
            let Some(algorithm) = upload.algorithm else {
                continue;
            };
            if live.paused || !upload.hashing.is_empty() {
                continue;
            }
            let hashed_ahead = upload
                .waiting
                .keys()
                .filter(|part| upload.checksums.contains_key(part))
                .count();
            let unhashed = |part: &&u32| !upload.checksums.contains_key(part);
            let parts: Vec<u32> = if upload.unverified.is_empty() {
                if hashed_ahead >= ahead {
                    continue;
                }
                upload
                    .waiting
                    .keys()
                    .filter(unhashed)
                    .copied()
                    .take(upload.hash_batch)
                    .collect()
            } else {
                upload
                    .unverified
                    .keys()
                    .filter(unhashed)
                    .copied()
                    .take(upload.hash_batch)
                    .collect()
            };
            if parts.is_empty() {
                continue;
            }
            upload.hash_batch = (upload.hash_batch * 2).min(max_batch);
            let parts_with_ranges = parts
                .iter()
                .map(|&part| (part, upload.plan.part_range(part)))
                .collect();
            upload.hashing = parts;
            self.actions.push_back(Action::Hash {
                file,
                algorithm,
                parts: parts_with_ranges,
            });
        }
    }

    /// Asks for the next batch of URLs while the file still has signed parts to run, so a
    /// finishing part never waits for a signature. Expired URLs are signed again here too.
    fn sign_ahead(&mut self, now: Instant) {
        let low_water = self.per_file();
        let batch = self.config.sign_batch.max(1) as usize;
        let margin = self.config.retry.resign_margin;
        let breaker = self
            .breakers
            .get_or_insert_with(COMPANION.to_owned(), Breaker::default);
        for (&file, live) in &mut self.live {
            if live.paused || !live.call.ready(now) {
                continue;
            }
            let Phase::Uploading(upload) = &mut live.phase else {
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
                .filter(|&(&part, waiting)| waiting.url.is_none() && upload.signable(part))
                .map(|(&part, _)| part)
                .take(batch)
                .collect();
            if parts.is_empty() || ready >= low_water || !breaker.allows(now) {
                continue;
            }
            breaker.on_start(now);
            upload.signing = parts.clone();
            self.stats.companion_calls += 1;
            let checksums = parts
                .iter()
                .filter_map(|part| upload.checksums.get(part).cloned())
                .collect();
            self.actions.push_back(Action::Sign {
                file,
                upload_id,
                request: SignParts {
                    token: upload.token.clone(),
                    parts,
                    checksums,
                },
            });
        }
    }

    /// Lets the adaptive policy decide at an epoch's end, before PUTs start.
    fn adapt(&mut self, now: Instant) {
        let rule = self.rule_slots();
        if let Some(adaptive) = &mut self.adaptive {
            adaptive.decide(rule, now);
        }
    }

    /// Tells the adaptive policy how busy the slots are once PUTs started.
    fn note_busy(&mut self, now: Instant) {
        if self.adaptive.is_none() {
            return;
        }
        let (rule, running) = (self.rule_slots(), self.running_puts());
        let unstarted = !self.line.is_empty()
            || self.live.values().any(|live| {
                live.phase
                    .upload()
                    .is_none_or(|upload| !upload.waiting.is_empty())
            });
        if let Some(adaptive) = &mut self.adaptive {
            adaptive.note_busy(rule, running, unstarted, now);
        }
    }

    /// The inner layer: fills free slots with ready parts, best-ranked file first.
    fn start_puts(&mut self, now: Instant) {
        let per_file = self.per_file();
        let mut free = self.slots().saturating_sub(self.running_puts());
        if free == 0 {
            return;
        }
        let margin = self.config.retry.resign_margin;
        let fresh = |waiting: &Waiting| {
            waiting
                .url
                .as_ref()
                .is_some_and(|url| Instant::from_unix_secs(url.expires_at) >= now + margin)
        };
        // Ordered as the line is, by the same map type: a sort would be 3 KB of wasm of its own.
        let mut order = SortedMap::new();
        for (&file, live) in self.live.iter() {
            if matches!(live.phase, Phase::Uploading(_)) && !live.paused {
                order.insert((live.rank, file), ());
            }
        }
        for ((_, file), ()) in order {
            let Some(Phase::Uploading(upload)) =
                self.live.get_mut(&file).map(|live| &mut live.phase)
            else {
                continue;
            };
            while free > 0 && upload.running.len() < per_file {
                // The lowest-numbered part that may go now, with a URL that will not expire first
                // (single PUTs whose URL expired go through the companion).
                let single = upload.plan.mode == UploadMode::Single;
                let next = upload.waiting.iter().find_map(|(&part, waiting)| {
                    let routable = upload.fallback || fresh(waiting) || single;
                    (waiting.ready_at <= now && routable).then_some(part)
                });
                let Some(part) = next else { break };
                let waiting = &upload.waiting[&part];
                let url = fresh(waiting).then(|| waiting.url.clone()).flatten();
                let target = upload.target(part, url.clone());
                let host = match &target {
                    PutTarget::Direct(url) => host_of(&url.url),
                    PutTarget::Companion { .. } => COMPANION.to_owned(),
                };
                let breaker = self
                    .breakers
                    .get_or_insert_with(host.clone(), Breaker::default);
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
                        retried_at_once: waiting.retried_at_once,
                        last_progress: now,
                        started: now,
                        first_byte: None,
                        counted: (0, 0),
                    },
                );
            }
            if free == 0 {
                break;
            }
        }
    }
}

/// Why the companion would refuse a file, by the limits it announced.
fn refusal(companion: &CompanionConfig, size: u64, content_type: &str) -> Option<UploadError> {
    let max = companion.max_file_size;
    if size > max {
        return Some(UploadError::TooLarge { size, max });
    }
    let allowed = &companion.allowed_types;
    if !allowed.is_empty() && !allowed.iter().any(|allowed| allowed == content_type) {
        return Some(UploadError::TypeNotAllowed {
            content_type: content_type.to_owned(),
        });
    }
    None
}

/// Aborts a live file's running PUTs and puts their parts back in line.
fn stop(
    actions: &mut VecDeque<Action>,
    breakers: &mut SortedMap<String, Breaker>,
    adaptive: &mut Option<Adaptive>,
    file: FileId,
    live: &mut Live,
    now: Instant,
) {
    if let Some(upload) = live.phase.upload_mut()
        && !upload.running.is_empty()
    {
        for running in upload.running.values() {
            breakers
                .get_or_insert_with(running.host.clone(), Breaker::default)
                .on_abandon();
        }
        let (parts, counted) = upload.stop_running(now);
        if let Some(adaptive) = adaptive {
            for counted in counted {
                adaptive.take_back(counted);
            }
        }
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
