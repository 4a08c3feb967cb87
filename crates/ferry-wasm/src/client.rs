//! The Rust API of Ferry in the browser (used by the Leptos demo; `lib.rs` wraps it for
//! JavaScript): [`Client`] queues files on one engine and hands back an [`UploadHandle`] per add
//! at once. The driver behind it (`driver.rs`) carries out the engine's actions.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ferry_core::protocol::StoredObject;
use ferry_core::sorted::SortedMap;
use ferry_core::{Engine, EngineConfig, FileId, FileSpec, UploadError};
use futures_channel::oneshot;
use web_sys::File;

use crate::driver::{Shared, Tracked};
use crate::http::{CompanionHeaders, HeaderSource};
use crate::resume;
use crate::speed::Speedometer;

pub use crate::resume::Unfinished;

/// A file's progress, as the engine reports it: `confirmed` bytes never go back, `in_flight`
/// bytes drop when a part stops; `loaded()` is both.
pub type FileProgress = ferry_core::Progress;

/// How fast an upload goes, measured over the last few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rate {
    pub bytes_per_sec: f64,
    /// Seconds left at that speed; `None` while no speed is known.
    pub eta_secs: Option<f64>,
}

impl Rate {
    pub(crate) fn of(meter: &Speedometer, progress: &FileProgress, now_ms: f64) -> Self {
        Self {
            bytes_per_sec: meter.bytes_per_sec(now_ms),
            eta_secs: meter.eta_secs(now_ms, progress.size.saturating_sub(progress.loaded())),
        }
    }
}

/// One add of a file: its id for [`Client::pause`], [`Client::resume`] and [`Client::cancel`],
/// and its outcome.
pub struct UploadHandle {
    pub id: FileId,
    /// How many parts a resumed upload found already stored (`None` if it started afresh).
    pub resumed: Rc<Cell<Option<u32>>>,
    finished: oneshot::Receiver<Result<StoredObject, UploadError>>,
}

impl UploadHandle {
    /// Waits for the upload to end.
    pub async fn done(self) -> Result<StoredObject, UploadError> {
        self.finished.await.unwrap_or(Err(UploadError::Cancelled))
    }
}

/// What the scheduler is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SchedulerView {
    /// Part PUTs running now (slots busy).
    pub running: usize,
    /// Part PUTs the slot rule allows now.
    pub slots: usize,
    /// Files taken by the outer layer: being prepared or uploading.
    pub live: usize,
    /// Files waiting.
    pub queued: usize,
    pub companion_calls: u64,
    pub puts: u64,
    pub retries: u64,
    /// Adds that joined an upload of the same file.
    pub joined: u64,
    /// Over every upload running.
    pub rate: Rate,
}

/// Something that happened to an add, for listeners registered with [`Client::on_event`].
#[derive(Debug, Clone)]
pub enum ClientEvent {
    Progress {
        id: FileId,
        progress: FileProgress,
        rate: Rate,
    },
    /// A part is stored.
    Part {
        id: FileId,
        part: u32,
        etag: String,
    },
    /// A part or call failed and will be tried again; `retries` counts the file's retries so far.
    Retry {
        id: FileId,
        retries: u32,
    },
    /// A resumed upload kept this many parts the store already held.
    Resumed {
        id: FileId,
        parts_kept: u32,
    },
    /// The upload waits out an outage of the store or the companion (`waiting: true`), or goes
    /// on after it (`waiting: false`).
    Waiting {
        id: FileId,
        waiting: bool,
    },
    /// The file is the one `upload` already sends: this add shares that upload.
    Joined {
        id: FileId,
        upload: FileId,
    },
    Complete {
        id: FileId,
        object: StoredObject,
    },
    Error {
        id: FileId,
        error: UploadError,
    },
}

impl ClientEvent {
    /// The name listeners subscribe to it by (`uploader.on(name, ..)`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Progress { .. } => "progress",
            Self::Part { .. } => "part",
            Self::Retry { .. } => "retry",
            Self::Resumed { .. } => "resumed",
            Self::Waiting { .. } => "waiting",
            Self::Joined { .. } => "joined",
            Self::Complete { .. } => "complete",
            Self::Error { .. } => "error",
        }
    }
}

/// How to add a file.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// Higher goes first among queued files.
    pub priority: i32,
    /// User metadata stored on the object (`x-amz-meta-*`).
    pub metadata: SortedMap<String, String>,
}

/// Uploads files through a companion. Cheap to clone: clones share one engine, so every upload
/// started from any clone goes through the same scheduler.
#[derive(Clone)]
pub struct Client {
    shared: Rc<Shared>,
}

impl Client {
    /// A client for the companion at `endpoint` (`""` for the page's own origin).
    pub fn new(endpoint: &str) -> Self {
        Self::with_config(endpoint, EngineConfig::default())
    }

    /// A client with its own scheduler settings.
    pub fn with_config(endpoint: &str, config: EngineConfig) -> Self {
        Self::with_header_source(endpoint, config, HeaderSource::Fixed(Vec::new()))
    }

    /// A client that sends `headers` (such as `Authorization`) with every call to the companion.
    pub fn with_headers(
        endpoint: &str,
        config: EngineConfig,
        headers: Vec<(String, String)>,
    ) -> Self {
        Self::with_header_source(endpoint, config, HeaderSource::Fixed(headers))
    }

    /// A client that asks `headers` for the headers of every call to the companion.
    pub fn with_header_source(endpoint: &str, config: EngineConfig, headers: HeaderSource) -> Self {
        Self {
            shared: Shared::new(endpoint, config, CompanionHeaders::new(headers)),
        }
    }

    /// Calls `listener` for every [`ClientEvent`] of every add of this client.
    pub fn on_event(&self, listener: impl Fn(&ClientEvent) + 'static) {
        self.shared.listeners.borrow_mut().push(Rc::new(listener));
    }

    /// Uploads `file`, calling `on_progress` as bytes go out; resolves with the stored object.
    pub async fn upload(
        &self,
        file: File,
        on_progress: impl FnMut(FileProgress, Rate) + 'static,
    ) -> Result<StoredObject, UploadError> {
        self.add(file, AddOptions::default(), on_progress)
            .done()
            .await
    }

    /// Queues `file` and returns its handle at once; the scheduler starts it when the outer
    /// layer has room. The same file already on its way in this page is not sent twice: this
    /// add joins it. A file with a resume record continues its upload.
    pub fn add(
        &self,
        file: File,
        options: AddOptions,
        on_progress: impl FnMut(FileProgress, Rate) + 'static,
    ) -> UploadHandle {
        let (done, finished) = oneshot::channel();
        let resumed = Rc::new(Cell::new(None));
        let size = file.size() as u64;
        let spec = FileSpec {
            size,
            content_type: file.type_(),
            priority: options.priority,
        };
        let mut id = FileId(0);
        self.shared.with_driver(|driver| {
            id = driver.engine.add(spec);
            let tracked = Tracked {
                file,
                size,
                upload: id,
                metadata: options.metadata,
                on_progress: Rc::new(RefCell::new(on_progress)),
                resumed: resumed.clone(),
                retries_seen: Cell::new(0),
                done: Some(done),
            };
            driver.files.insert(id, tracked);
        });
        UploadHandle {
            id,
            resumed,
            finished,
        }
    }

    /// Stops starting parts of the file and aborts its running ones; [`Client::resume`] sends them
    /// again.
    pub fn pause(&self, id: FileId) {
        self.shared.with_engine(|engine| engine.pause(id));
    }

    pub fn resume(&self, id: FileId) {
        self.shared.with_engine(|engine| engine.resume(id));
    }

    /// Ends this add; an upload no other add waits for is aborted on the store.
    pub fn cancel(&self, id: FileId) {
        self.shared.with_engine(|engine| engine.cancel(id));
    }

    pub fn pause_all(&self) {
        self.shared.with_engine(Engine::pause_all);
    }

    pub fn resume_all(&self) {
        self.shared.with_engine(Engine::resume_all);
    }

    pub fn cancel_all(&self) {
        self.shared.with_engine(Engine::cancel_all);
    }

    /// Every part PUT running now, for displays.
    pub fn running_parts(&self) -> Vec<ferry_core::RunningPart> {
        self.shared.driver.borrow().engine.running_parts()
    }

    /// The files being prepared by the outer layer now (fingerprinted, created, listed).
    pub fn preparing(&self) -> Vec<FileId> {
        self.shared.driver.borrow().engine.preparing()
    }

    /// The next `count` files in line, in the order the scheduler will take them.
    pub fn next_in_line(&self, count: usize) -> Vec<FileId> {
        self.shared.driver.borrow().engine.next_in_line(count)
    }

    /// What the companion said of itself (`GET /api/config`), once it answered.
    pub fn companion(&self) -> Option<ferry_core::protocol::CompanionConfig> {
        self.shared.driver.borrow().engine.companion().cloned()
    }

    /// What the scheduler is doing now.
    pub fn scheduler(&self) -> SchedulerView {
        let driver = self.shared.driver.borrow();
        let engine = &driver.engine;
        let stats = engine.stats();
        SchedulerView {
            running: engine.running_puts(),
            slots: engine.slots(),
            live: engine.live_files(),
            queued: engine.queued_files(),
            companion_calls: stats.companion_calls,
            puts: stats.puts,
            retries: stats.retries,
            joined: stats.joined,
            rate: driver.rate(),
        }
    }

    /// Uploads left unfinished by earlier visits (or failed in this one), oldest first.
    pub fn unfinished() -> Vec<Unfinished> {
        resume::unfinished(js_sys::Date::now() as u64 / 1000)
    }

    /// Aborts the unfinished upload `id` (from [`Client::unfinished`]) on the store and forgets
    /// it; a running upload of it is cancelled.
    pub fn discard(&self, id: &str) {
        self.shared.discard(id);
    }
}
