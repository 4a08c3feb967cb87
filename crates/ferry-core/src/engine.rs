//! The upload engine: a state machine that is told what happened and says what to do next.
//!
//! It never performs I/O. A driver (the browser driver in ferry-wasm, or a test) calls, in a loop:
//!
//! 1. commands from the application: [`Engine::add`], [`Engine::cancel`];
//! 2. [`Engine::poll_action`] until it returns `None`, executing each [`Action`];
//! 3. the `handle_*` method matching each finished action, as results arrive;
//! 4. [`Engine::poll_event`] to learn which files finished or failed.
//!
//! Getters (`progress`, `running_puts`, ...) may be called at any time.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

use crate::error::UploadError;
use crate::plan::{Plan, UploadMode};
use crate::protocol::{
    CompanionConfig, CompleteUpload, CompletedPart, CreateUpload, SignParts, SignedPart, SignedUrl,
    StoredObject, UploadCreated,
};

/// How many requests the engine runs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Part PUTs in flight over all files.
    pub slots: usize,
    /// Part PUTs in flight for one file.
    pub per_file: usize,
    /// Files prepared at once (upload created, URLs signed).
    pub prepare_ahead: usize,
    /// Parts signed by one call to the companion.
    pub sign_batch: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            slots: 3,
            per_file: 3,
            prepare_ahead: 10,
            sign_batch: 20,
        }
    }
}

/// A file, as the engine knows it: its bytes stay with the driver.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMeta {
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// Milliseconds since the epoch, as `File.lastModified` gives it.
    pub last_modified: Option<f64>,
}

/// The engine's name for a file it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u64);

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `POST /api/uploads`; answer with [`Engine::handle_created`].
    Create { file: FileId, request: CreateUpload },
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
    /// Abort every request still running for the file; nothing to answer.
    StopPuts { file: FileId },
    /// `DELETE /api/uploads/{upload_id}?token=`; nothing to answer: the file has already failed
    /// or been cancelled, and a failed abort only leaves parts for the store's lifecycle rules.
    Abort {
        file: FileId,
        upload_id: String,
        token: String,
    },
}

/// A file reached its end.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Done { file: FileId, object: StoredObject },
    Failed { file: FileId, error: UploadError },
}

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Queued,
    Creating,
    Uploading,
    Completing,
}

/// A file's progress. `confirmed` counts parts the store acknowledged with an ETag and never goes
/// back; `in_flight` counts bytes sent for running parts and drops when a part fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub state: FileState,
    pub size: u64,
    pub confirmed: u64,
    pub in_flight: u64,
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
    /// Running parts and the bytes each has sent.
    running: BTreeMap<u32, u64>,
    /// ETags of confirmed parts, by part number.
    etags: BTreeMap<u32, String>,
    confirmed: u64,
}

#[derive(Debug)]
struct File {
    meta: FileMeta,
    state: FileState,
    upload: Option<Upload>,
}

/// The upload engine. See the module documentation for the call order.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    companion: CompanionConfig,
    next_id: u64,
    files: BTreeMap<FileId, File>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Engine {
    /// An engine for a companion that announced `companion` at `GET /api/config`.
    pub fn new(config: EngineConfig, companion: CompanionConfig) -> Self {
        Self {
            config,
            companion,
            next_id: 0,
            files: BTreeMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ---- getters ----

    pub fn progress(&self, file: FileId) -> Option<Progress> {
        let entry = self.files.get(&file)?;
        let (confirmed, in_flight) = entry.upload.as_ref().map_or((0, 0), |upload| {
            (upload.confirmed, upload.running.values().sum())
        });
        Some(Progress {
            state: entry.state,
            size: entry.meta.size,
            confirmed,
            in_flight,
        })
    }

    /// Part PUTs in flight over all files.
    pub fn running_puts(&self) -> usize {
        self.files
            .values()
            .filter_map(|file| file.upload.as_ref())
            .map(|upload| upload.running.len())
            .sum()
    }

    /// Files not yet finished, including queued ones.
    pub fn unfinished(&self) -> usize {
        self.files.len()
    }

    // ---- commands ----

    /// Queues a file. A file the companion would refuse fails at once, before any request.
    pub fn add(&mut self, meta: FileMeta) -> FileId {
        let file = FileId(self.next_id);
        self.next_id += 1;
        if let Some(error) = self.refusal(&meta) {
            self.events.push_back(Event::Failed { file, error });
            return file;
        }
        self.files.insert(
            file,
            File {
                meta,
                state: FileState::Queued,
                upload: None,
            },
        );
        file
    }

    fn refusal(&self, meta: &FileMeta) -> Option<UploadError> {
        let max = self.companion.max_file_size;
        if meta.size > max {
            return Some(UploadError::TooLarge {
                name: meta.name.clone(),
                size: meta.size,
                max,
            });
        }
        let allowed = &self.companion.allowed_types;
        if !allowed.is_empty() && !allowed.iter().any(|t| t == &meta.content_type) {
            return Some(UploadError::TypeNotAllowed {
                name: meta.name.clone(),
                content_type: meta.content_type.clone(),
            });
        }
        None
    }

    /// Stops the file: running PUTs are aborted and the multipart upload with them.
    pub fn cancel(&mut self, file: FileId) {
        if self.files.contains_key(&file) {
            self.fail(file, UploadError::Cancelled);
        }
    }

    // ---- events from the driver ----

    pub fn handle_created(&mut self, file: FileId, mut created: UploadCreated) {
        let Some(entry) = self.files.get_mut(&file) else {
            return;
        };
        if entry.state != FileState::Creating {
            return;
        }
        let size = entry.meta.size;
        let plan = Plan::with_part_size(size, created.part_size)
            .ok()
            .filter(|plan| plan.mode == created.mode && plan.part_count == created.part_count);
        let single_url = created.url.take();
        let first_urls = match (plan.map(|plan| plan.mode), single_url) {
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
        let plan = plan.expect("matched above");
        entry.upload = Some(Upload {
            upload_id: created.upload_id,
            key: created.key,
            token: created.token,
            location: created.location,
            plan,
            next_to_sign: first_urls.len() as u32 + 1,
            signed: first_urls.into(),
            signing: false,
            running: BTreeMap::new(),
            etags: BTreeMap::new(),
            confirmed: 0,
        });
        entry.state = FileState::Uploading;
    }

    pub fn handle_signed(&mut self, file: FileId, parts: Vec<SignedPart>) {
        let Some(upload) = self.live_upload(file) else {
            return;
        };
        upload.signing = false;
        upload.signed.extend(parts);
    }

    pub fn handle_put_progress(&mut self, file: FileId, part: u32, sent: u64) {
        if let Some(upload) = self.live_upload(file)
            && let Some(bytes) = upload.running.get_mut(&part)
        {
            *bytes = sent;
        }
    }

    pub fn handle_put_done(&mut self, file: FileId, part: u32, etag: String) {
        let Some(upload) = self.live_upload(file) else {
            return;
        };
        if upload.running.remove(&part).is_none() {
            return;
        }
        let range = upload.plan.part_range(part);
        upload.confirmed += range.end - range.start;
        upload.etags.insert(part, etag);
        if upload.etags.len() as u32 == upload.plan.part_count
            && upload.plan.mode == UploadMode::Single
        {
            let object = StoredObject {
                key: upload.key.clone(),
                etag: upload.etags[&1].clone(),
                size: upload.plan.size,
                location: upload.location.clone(),
            };
            self.files.remove(&file);
            self.events.push_back(Event::Done { file, object });
        }
    }

    pub fn handle_put_failed(&mut self, file: FileId, part: u32, error: UploadError) {
        let running = self
            .live_upload(file)
            .is_some_and(|upload| upload.running.remove(&part).is_some());
        if running {
            self.fail(file, error);
        }
    }

    pub fn handle_completed(&mut self, file: FileId, object: StoredObject) {
        if self
            .files
            .get(&file)
            .is_some_and(|entry| entry.state == FileState::Completing)
        {
            self.files.remove(&file);
            self.events.push_back(Event::Done { file, object });
        }
    }

    /// A call to the companion (create, sign, complete) failed.
    pub fn handle_call_failed(&mut self, file: FileId, error: UploadError) {
        if self.files.contains_key(&file) {
            self.fail(file, error);
        }
    }

    // ---- actions for the driver ----

    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        self.start_files();
        self.sign_ahead();
        self.start_puts();
        self.complete_finished();
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- internals ----

    fn live_upload(&mut self, file: FileId) -> Option<&mut Upload> {
        self.files
            .get_mut(&file)
            .filter(|entry| entry.state == FileState::Uploading)?
            .upload
            .as_mut()
    }

    fn fail(&mut self, file: FileId, error: UploadError) {
        let Some(entry) = self.files.remove(&file) else {
            return;
        };
        if let Some(upload) = entry.upload {
            if !upload.running.is_empty() {
                self.actions.push_back(Action::StopPuts { file });
            }
            if let Some(upload_id) = upload.upload_id {
                self.actions.push_back(Action::Abort {
                    file,
                    upload_id,
                    token: upload.token,
                });
            }
        }
        self.events.push_back(Event::Failed { file, error });
    }

    fn start_files(&mut self) {
        let preparing = self
            .files
            .values()
            .filter(|file| file.state != FileState::Queued)
            .count();
        let room = self.config.prepare_ahead.saturating_sub(preparing);
        for (&id, file) in self
            .files
            .iter_mut()
            .filter(|(_, file)| file.state == FileState::Queued)
            .take(room)
        {
            file.state = FileState::Creating;
            self.actions.push_back(Action::Create {
                file: id,
                request: CreateUpload {
                    name: file.meta.name.clone(),
                    size: file.meta.size,
                    content_type: file.meta.content_type.clone(),
                    last_modified: file.meta.last_modified,
                    fingerprint: None,
                },
            });
        }
    }

    /// Asks for the next batch of URLs while the file still has signed parts to run, so a
    /// finishing part never waits for a signature.
    fn sign_ahead(&mut self) {
        let per_file = self.config.per_file;
        let batch = self.config.sign_batch.max(1);
        for (&id, file) in &mut self.files {
            let Some(upload) = file
                .upload
                .as_mut()
                .filter(|_| file.state == FileState::Uploading)
            else {
                continue;
            };
            let Some(upload_id) = upload.upload_id.clone() else {
                continue;
            };
            let unsigned = upload.plan.part_count + 1 - upload.next_to_sign;
            if upload.signing || unsigned == 0 || upload.signed.len() > per_file {
                continue;
            }
            let count = unsigned.min(batch);
            let parts: Vec<u32> = (upload.next_to_sign..upload.next_to_sign + count).collect();
            upload.next_to_sign += count;
            upload.signing = true;
            self.actions.push_back(Action::Sign {
                file: id,
                upload_id,
                request: SignParts {
                    token: upload.token.clone(),
                    parts,
                },
            });
        }
    }

    fn start_puts(&mut self) {
        let mut free = self.config.slots.saturating_sub(self.running_puts());
        for (&id, file) in &mut self.files {
            if free == 0 {
                break;
            }
            let Some(upload) = file
                .upload
                .as_mut()
                .filter(|_| file.state == FileState::Uploading)
            else {
                continue;
            };
            while free > 0 && upload.running.len() < self.config.per_file {
                let Some(signed) = upload.signed.pop_front() else {
                    break;
                };
                upload.running.insert(signed.part, 0);
                free -= 1;
                self.actions.push_back(Action::Put {
                    file: id,
                    part: signed.part,
                    range: upload.plan.part_range(signed.part),
                    url: signed.url,
                });
            }
        }
    }

    fn complete_finished(&mut self) {
        for (&id, file) in &mut self.files {
            let Some(upload) = file.upload.as_ref() else {
                continue;
            };
            let finished = file.state == FileState::Uploading
                && upload.etags.len() as u32 == upload.plan.part_count;
            let Some(upload_id) = upload.upload_id.clone().filter(|_| finished) else {
                continue;
            };
            file.state = FileState::Completing;
            self.actions.push_back(Action::Complete {
                file: id,
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
