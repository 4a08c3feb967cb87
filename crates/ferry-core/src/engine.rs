//! The upload engine: a two-layer scheduler that is told what happened and says what to do next.
//!
//! - **Lazy source.** Queued files cost an entry in an ordered index (rank and size), not a state
//!   object; a file gets its state only when the outer layer takes it.
//! - **Outer layer** ([`EngineConfig::triggers`]). Up to N files are live: their upload created,
//!   their first batch of part URLs signed, the next batch fetched before the current one runs
//!   out. Live states never exceed N, whatever the queue's length.
//! - **Inner layer** ([`EngineConfig::slot_rule`]). A gatekeeper over all part PUTs, with a
//!   per-file cap ([`EngineConfig::per_file`]). When a slot frees, the next signed part starts.
//!
//! It never performs I/O. A driver (the browser driver in ferry-wasm, the simulator, a test)
//! calls, in a loop:
//!
//! 1. commands from the application: [`Engine::add`], [`Engine::pause`], [`Engine::cancel`], ...;
//! 2. [`Engine::poll_action`] until it returns `None`, carrying out each [`Action`];
//! 3. the `handle_*` method matching each finished action, as results arrive;
//! 4. [`Engine::poll_event`] to learn which files finished or failed.
//!
//! Getters (`progress`, `running_puts`, `stats`, ...) may be called at any time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Range;

use crate::error::UploadError;
use crate::plan::{Plan, UploadMode};
use crate::protocol::{
    CompanionConfig, CompleteUpload, CompletedPart, SignParts, SignedPart, SignedUrl, StoredObject,
    UploadCreated,
};
use crate::schedule::{EngineConfig, Rank};

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

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `POST /api/uploads` with the file's name, size and type; answer with
    /// [`Engine::handle_created`] or [`Engine::handle_call_failed`].
    Create { file: FileId },
    /// `POST /api/uploads/{upload_id}/sign`; answer with [`Engine::handle_signed`].
    Sign {
        file: FileId,
        upload_id: String,
        request: SignParts,
    },
    /// PUT the file's bytes in `range` to `url`; answer with [`Engine::handle_put_done`] or
    /// [`Engine::handle_put_failed`], and report progress with [`Engine::handle_put_progress`].
    Put {
        file: FileId,
        part: u32,
        range: Range<u64>,
        url: SignedUrl,
    },
    /// `POST /api/uploads/{upload_id}/complete`; answer with [`Engine::handle_completed`].
    Complete {
        file: FileId,
        upload_id: String,
        request: CompleteUpload,
    },
    /// Abort every PUT still running for the file; nothing to answer.
    StopPuts { file: FileId },
    /// `DELETE /api/uploads/{upload_id}?token=`; nothing to answer: the file has already failed
    /// or been cancelled, and a failed abort only leaves parts for the store's lifecycle rules.
    Abort {
        file: FileId,
        upload_id: String,
        token: String,
    },
}

/// A file reached its end. Every file added gets exactly one.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Done { file: FileId, object: StoredObject },
    Failed { file: FileId, error: UploadError },
}

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Waiting for the outer layer to take it.
    Queued,
    /// Its upload is being created.
    Creating,
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
}

/// Counters over the engine's life, for benchmarks and the demo's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Calls to the companion asked for: create, sign, complete, abort.
    pub companion_calls: u64,
    /// Part PUTs started.
    pub puts: u64,
    /// The most files live at once.
    pub peak_live: usize,
}

#[derive(Debug)]
struct Queued {
    rank: Rank,
    size: u64,
    paused: bool,
}

#[derive(Debug)]
struct Running {
    sent: u64,
    url: SignedUrl,
}

#[derive(Debug)]
struct Upload {
    /// `None` for a single PUT.
    upload_id: Option<String>,
    key: String,
    token: String,
    location: String,
    plan: Plan,
    /// Signed parts not started yet, in part order.
    signed: VecDeque<SignedPart>,
    /// The next part number that has not been asked to be signed.
    next_to_sign: u32,
    signing: bool,
    running: BTreeMap<u32, Running>,
    /// ETags of confirmed parts, by part number.
    etags: BTreeMap<u32, String>,
    confirmed: u64,
}

impl Upload {
    /// Puts running parts back in line, ahead of the others (their URLs are still good).
    fn stop_running(&mut self) {
        let stopped = std::mem::take(&mut self.running);
        for (part, running) in stopped.into_iter().rev() {
            self.signed.push_front(SignedPart {
                part,
                url: running.url,
            });
        }
    }
}

#[derive(Debug)]
struct Live {
    rank: Rank,
    size: u64,
    state: FileState,
    paused: bool,
    /// Set once the companion answered the create.
    upload: Option<Upload>,
}

/// The upload engine. See the module documentation for the call order.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    companion: CompanionConfig,
    next_id: u64,
    /// Files waiting, best first; paused ones are held aside in `queued` only.
    line: BTreeSet<(Rank, FileId)>,
    queued: HashMap<FileId, Queued>,
    live: BTreeMap<FileId, Live>,
    paused_all: bool,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Engine {
    /// An engine for a companion that announced `companion` at `GET /api/config`.
    pub fn new(config: EngineConfig, companion: CompanionConfig) -> Self {
        Self {
            config,
            companion,
            next_id: 0,
            line: BTreeSet::new(),
            queued: HashMap::new(),
            live: BTreeMap::new(),
            paused_all: false,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    // ---- getters ----

    pub fn companion(&self) -> &CompanionConfig {
        &self.companion
    }

    pub fn progress(&self, file: FileId) -> Option<Progress> {
        if let Some(queued) = self.queued.get(&file) {
            return Some(Progress {
                state: FileState::Queued,
                paused: queued.paused,
                size: queued.size,
                confirmed: 0,
                in_flight: 0,
            });
        }
        let live = self.live.get(&file)?;
        let (confirmed, in_flight) = live.upload.as_ref().map_or((0, 0), |upload| {
            let sent = upload.running.values().map(|running| running.sent).sum();
            (upload.confirmed, sent)
        });
        Some(Progress {
            state: live.state,
            paused: live.paused,
            size: live.size,
            confirmed,
            in_flight,
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

    // ---- commands ----

    /// Queues a file. A file the companion would refuse fails at once, before any request.
    pub fn add(&mut self, spec: FileSpec) -> FileId {
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
            stop(&mut self.actions, file, live);
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
            stop(&mut self.actions, file, live);
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

    pub fn handle_created(&mut self, file: FileId, mut created: UploadCreated) {
        let Some(live) = self.live.get_mut(&file) else {
            return;
        };
        if live.state != FileState::Creating {
            return;
        }
        let size = live.size;
        let plan = Plan::with_part_size(size, created.part_size)
            .ok()
            .filter(|plan| plan.mode == created.mode && plan.part_count == created.part_count);
        let first_urls = match (plan.map(|plan| plan.mode), created.url.take()) {
            (Some(UploadMode::Multipart), _) => Vec::new(),
            (Some(UploadMode::Single), Some(url)) => vec![SignedPart { part: 1, url }],
            (plan_mode, _) => {
                let message = match plan_mode {
                    None => format!(
                        "{} parts of {} bytes ({:?}) do not cut {size} bytes",
                        created.part_count, created.part_size, created.mode
                    ),
                    Some(_) => "a single PUT came without a URL".to_owned(),
                };
                if let Some(upload_id) = created.upload_id {
                    self.stats.companion_calls += 1;
                    self.actions.push_back(Action::Abort {
                        file,
                        upload_id,
                        token: created.token,
                    });
                }
                self.fail(file, UploadError::BadPlan(message));
                return;
            }
        };
        live.upload = Some(Upload {
            upload_id: created.upload_id,
            key: created.key,
            token: created.token,
            location: created.location,
            plan: plan.expect("matched above"),
            next_to_sign: first_urls.len() as u32 + 1,
            signed: first_urls.into(),
            signing: false,
            running: BTreeMap::new(),
            etags: BTreeMap::new(),
            confirmed: 0,
        });
        live.state = FileState::Uploading;
    }

    pub fn handle_signed(&mut self, file: FileId, parts: Vec<SignedPart>) {
        let Some(upload) = self.uploading(file) else {
            return;
        };
        upload.signing = false;
        upload.signed.extend(parts);
    }

    pub fn handle_put_progress(&mut self, file: FileId, part: u32, sent: u64) {
        if let Some(running) = self
            .uploading(file)
            .and_then(|upload| upload.running.get_mut(&part))
        {
            running.sent = sent;
        }
    }

    pub fn handle_put_done(&mut self, file: FileId, part: u32, etag: String) {
        let Some(upload) = self.uploading(file) else {
            return;
        };
        if upload.running.remove(&part).is_none() {
            // A part stopped by pause that finished anyway: it will be sent again.
            return;
        }
        let range = upload.plan.part_range(part);
        upload.confirmed += range.end - range.start;
        upload.etags.insert(part, etag);
        if upload.plan.mode == UploadMode::Single {
            let object = StoredObject {
                key: upload.key.clone(),
                etag: upload.etags[&1].clone(),
                size: upload.plan.size,
                location: upload.location.clone(),
            };
            self.live.remove(&file);
            self.events.push_back(Event::Done { file, object });
        }
    }

    pub fn handle_put_failed(&mut self, file: FileId, part: u32, error: UploadError) {
        let was_running = self
            .uploading(file)
            .is_some_and(|upload| upload.running.remove(&part).is_some());
        if was_running {
            self.fail(file, error);
        }
    }

    pub fn handle_completed(&mut self, file: FileId, object: StoredObject) {
        if self
            .live
            .get(&file)
            .is_some_and(|live| live.state == FileState::Completing)
        {
            self.live.remove(&file);
            self.events.push_back(Event::Done { file, object });
        }
    }

    /// A call to the companion (create, sign, complete) failed.
    pub fn handle_call_failed(&mut self, file: FileId, error: UploadError) {
        if self.live.contains_key(&file) {
            self.fail(file, error);
        }
    }

    // ---- actions for the driver ----

    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        if !self.paused_all {
            self.take_files();
            self.sign_ahead();
            self.start_puts();
        }
        self.complete_finished();
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- internals ----

    fn uploading(&mut self, file: FileId) -> Option<&mut Upload> {
        self.live
            .get_mut(&file)
            .filter(|live| live.state == FileState::Uploading)?
            .upload
            .as_mut()
    }

    fn fail(&mut self, file: FileId, error: UploadError) {
        let Some(live) = self.live.remove(&file) else {
            return;
        };
        if let Some(upload) = live.upload {
            if !upload.running.is_empty() {
                self.actions.push_back(Action::StopPuts { file });
            }
            if let Some(upload_id) = upload.upload_id {
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
            self.live.insert(
                file,
                Live {
                    rank,
                    size: queued.size,
                    state: FileState::Creating,
                    paused: false,
                    upload: None,
                },
            );
            self.stats.companion_calls += 1;
            self.actions.push_back(Action::Create { file });
        }
        self.stats.peak_live = self.stats.peak_live.max(self.live.len());
    }

    /// Asks for the next batch of URLs while the file still has signed parts to run, so a
    /// finishing part never waits for a signature.
    fn sign_ahead(&mut self) {
        let low_water = self.config.per_file;
        let batch = self.config.sign_batch.max(1);
        for (&file, live) in &mut self.live {
            let Some(upload) = live
                .upload
                .as_mut()
                .filter(|_| live.state == FileState::Uploading && !live.paused)
            else {
                continue;
            };
            let Some(upload_id) = upload.upload_id.clone() else {
                continue;
            };
            let unsigned = upload.plan.part_count + 1 - upload.next_to_sign;
            if upload.signing || unsigned == 0 || upload.signed.len() >= low_water {
                continue;
            }
            let count = unsigned.min(batch);
            let parts: Vec<u32> = (upload.next_to_sign..upload.next_to_sign + count).collect();
            upload.next_to_sign += count;
            upload.signing = true;
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

    /// The inner layer: fills free slots with signed parts, best-ranked file first.
    fn start_puts(&mut self) {
        let mut free = self.slots().saturating_sub(self.running_puts());
        if free == 0 {
            return;
        }
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
                let Some(signed) = upload.signed.pop_front() else {
                    break;
                };
                free -= 1;
                self.stats.puts += 1;
                self.actions.push_back(Action::Put {
                    file,
                    part: signed.part,
                    range: upload.plan.part_range(signed.part),
                    url: signed.url.clone(),
                });
                upload.running.insert(
                    signed.part,
                    Running {
                        sent: 0,
                        url: signed.url,
                    },
                );
            }
            if free == 0 {
                break;
            }
        }
    }

    fn complete_finished(&mut self) {
        for (&file, live) in &mut self.live {
            let Some(upload) = live.upload.as_ref() else {
                continue;
            };
            let finished = live.state == FileState::Uploading
                && upload.etags.len() as u32 == upload.plan.part_count;
            let Some(upload_id) = upload.upload_id.clone().filter(|_| finished) else {
                continue;
            };
            live.state = FileState::Completing;
            self.stats.companion_calls += 1;
            self.actions.push_back(Action::Complete {
                file,
                upload_id,
                request: CompleteUpload {
                    token: upload.token.clone(),
                    parts: upload
                        .etags
                        .iter()
                        .map(|(&part, etag)| CompletedPart {
                            part,
                            etag: etag.clone(),
                        })
                        .collect(),
                },
            });
        }
    }
}

/// Aborts a live file's running PUTs and puts their parts back in line.
fn stop(actions: &mut VecDeque<Action>, file: FileId, live: &mut Live) {
    if let Some(upload) = live.upload.as_mut()
        && !upload.running.is_empty()
    {
        upload.stop_running();
        actions.push_back(Action::StopPuts { file });
    }
}
