//! The browser driver: carries out the engine's actions with fetch and XMLHttpRequest, feeds the
//! results, the time, timers and online/offline changes back, and keeps resume records. This is
//! the Rust API (used by the Leptos demo); `lib.rs` wraps it for JavaScript.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use ferry_core::protocol::{
    CompanionConfig, CreateUpload, PartList, PartsSigned, StoredObject, UploadCreated,
};
use ferry_core::{
    Action, Call, Engine, EngineConfig, Event, Failure, FileId, FileSpec, Instant, PutTarget,
    UploadError,
};
use futures_channel::oneshot;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{Blob, File, XmlHttpRequest};

use crate::http::{CompanionHeaders, HeaderSource, call};
use crate::resume;
use crate::xhr::{EtagFrom, PutRequest};

/// A file's progress, as the engine reports it: `confirmed` bytes never go back, `in_flight`
/// bytes drop when a part stops; `loaded()` is both.
pub type FileProgress = ferry_core::Progress;

/// A queued upload: its id for [`Client::pause`], [`Client::resume`] and [`Client::cancel`], and
/// its outcome.
pub struct UploadHandle {
    pub id: FileId,
    /// How many parts a resumed upload found already stored (`None` if it started afresh).
    pub resumed: Rc<RefCell<Option<u32>>>,
    finished: oneshot::Receiver<Result<StoredObject, UploadError>>,
}

impl UploadHandle {
    /// Waits for the upload to end.
    pub async fn done(self) -> Result<StoredObject, UploadError> {
        self.finished.await.unwrap_or(Err(UploadError::Cancelled))
    }
}

/// A snapshot of the scheduler, for displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerView {
    /// Part PUTs running now.
    pub running: usize,
    /// Part PUTs the slot rule allows now.
    pub slots: usize,
    /// Files prepared or uploading (the outer layer).
    pub live: usize,
    /// Files waiting.
    pub queued: usize,
    pub companion_calls: u64,
    pub puts: u64,
    pub retries: u64,
}

/// Something that happened to an upload, for listeners registered with [`Client::on_event`].
#[derive(Debug, Clone)]
pub enum ClientEvent {
    Progress {
        id: FileId,
        progress: FileProgress,
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
    Complete {
        id: FileId,
        object: StoredObject,
    },
    Error {
        id: FileId,
        error: UploadError,
    },
}

type Listener = Rc<dyn Fn(&ClientEvent)>;

type ProgressCallback = Rc<RefCell<dyn FnMut(FileProgress)>>;

struct Tracked {
    file: File,
    /// Where its resume record lives, when WebCrypto and storage allow one.
    record: Option<String>,
    /// User metadata for the object.
    metadata: BTreeMap<String, String>,
    on_progress: ProgressCallback,
    resumed: Rc<RefCell<Option<u32>>>,
    /// Retries already announced with [`ClientEvent::Retry`].
    retries_seen: std::cell::Cell<u32>,
    done: Option<oneshot::Sender<Result<StoredObject, UploadError>>>,
}

/// The engine's next timer, armed with `setTimeout`.
struct Timer {
    at: Instant,
    handle: i32,
    _callback: Closure<dyn FnMut()>,
}

struct Driver {
    engine: Engine,
    files: HashMap<FileId, Tracked>,
    /// Running PUTs, so a stopped part's request can be aborted; the number tells a request from
    /// a later one for the same part.
    running: HashMap<(FileId, u32), (u64, XmlHttpRequest)>,
    next_request: u64,
    timer: Option<Timer>,
    /// Files up to this size always go as one PUT, which has nothing to resume.
    single_put_limit: u64,
    _online: Closure<dyn FnMut()>,
    _offline: Closure<dyn FnMut()>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        if let Some(timer) = &self.timer {
            window.clear_timeout_with_handle(timer.handle);
        }
        for (name, listener) in [("online", &self._online), ("offline", &self._offline)] {
            let _ =
                window.remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
    }
}

/// A [`Client`] that does not keep the driver alive: what the driver's own window listeners and
/// timer hold, so that dropping the last `Client` frees everything.
struct WeakClient {
    endpoint: Rc<str>,
    headers: Rc<CompanionHeaders>,
    part_size: Option<u64>,
    config: EngineConfig,
    driver: std::rc::Weak<RefCell<Option<Driver>>>,
    listeners: std::rc::Weak<RefCell<Vec<Listener>>>,
    last_add: std::rc::Weak<RefCell<Option<oneshot::Receiver<()>>>>,
    config_waiters: std::rc::Weak<RefCell<Option<Vec<oneshot::Sender<Result<(), UploadError>>>>>>,
}

impl WeakClient {
    fn upgrade(&self) -> Option<Client> {
        Some(Client {
            endpoint: self.endpoint.clone(),
            headers: self.headers.clone(),
            part_size: self.part_size,
            config: self.config.clone(),
            driver: self.driver.upgrade()?,
            listeners: self.listeners.upgrade()?,
            last_add: self.last_add.upgrade()?,
            config_waiters: self.config_waiters.upgrade()?,
        })
    }
}

fn now() -> Instant {
    Instant::from_unix_millis(js_sys::Date::now() as u64)
}

/// Uploads files through a companion. Cheap to clone: clones share one engine, so every upload
/// started from any clone goes through the same scheduler.
#[derive(Clone)]
pub struct Client {
    endpoint: Rc<str>,
    /// Headers sent to the companion (e.g. `Authorization`).
    headers: Rc<CompanionHeaders>,
    /// Part size asked of the companion for new uploads.
    part_size: Option<u64>,
    config: EngineConfig,
    driver: Rc<RefCell<Option<Driver>>>,
    listeners: Rc<RefCell<Vec<Listener>>>,
    /// Done when the latest `add` has queued its file: adds queue in call order.
    last_add: Rc<RefCell<Option<oneshot::Receiver<()>>>>,
    /// While the companion's limits are being fetched: the adds waiting for them.
    config_waiters: Rc<RefCell<Option<Vec<oneshot::Sender<Result<(), UploadError>>>>>>,
}

impl Client {
    fn downgrade(&self) -> WeakClient {
        WeakClient {
            endpoint: self.endpoint.clone(),
            headers: self.headers.clone(),
            part_size: self.part_size,
            config: self.config.clone(),
            driver: Rc::downgrade(&self.driver),
            listeners: Rc::downgrade(&self.listeners),
            last_add: Rc::downgrade(&self.last_add),
            config_waiters: Rc::downgrade(&self.config_waiters),
        }
    }

    /// A client for the companion at `endpoint` (`""` for the page's own origin).
    pub fn new(endpoint: &str) -> Self {
        Self::with_config(endpoint, EngineConfig::default())
    }

    /// A client with its own scheduler settings.
    pub fn with_config(endpoint: &str, config: EngineConfig) -> Self {
        Self::with_headers(endpoint, config, Vec::new())
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
            endpoint: endpoint.trim_end_matches('/').into(),
            headers: Rc::new(CompanionHeaders::new(headers)),
            part_size: None,
            config,
            driver: Rc::new(RefCell::new(None)),
            listeners: Rc::new(RefCell::new(Vec::new())),
            last_add: Rc::new(RefCell::new(None)),
            config_waiters: Rc::new(RefCell::new(None)),
        }
    }

    /// Asks the companion for parts of about `part_size` bytes (it raises them to the store's
    /// rules).
    pub fn with_part_size(mut self, part_size: Option<u64>) -> Self {
        self.part_size = part_size;
        self
    }

    /// Every part PUT running now, for displays.
    pub fn running_parts(&self) -> Vec<ferry_core::RunningPart> {
        self.driver
            .borrow()
            .as_ref()
            .map_or_else(Vec::new, |driver| driver.engine.running_parts())
    }

    /// Calls `listener` for every [`ClientEvent`] of every upload of this client.
    pub fn on_event(&self, listener: impl Fn(&ClientEvent) + 'static) {
        self.listeners.borrow_mut().push(Rc::new(listener));
    }

    /// Tells every listener, outside any borrow: a listener may call back into the client.
    fn emit(&self, event: ClientEvent) {
        let listeners = self.listeners.borrow().clone();
        for listener in listeners {
            listener(&event);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// Asks the companion for its limits once; the engine is made from them.
    /// Asks the companion for its limits once, however many adds wait for them: a batch of
    /// thousands of files makes one request, not thousands the browser would refuse.
    async fn ensure_engine(&self) -> Result<(), UploadError> {
        if self.driver.borrow().is_some() {
            return Ok(());
        }
        let waiting = self.config_waiters.borrow_mut().as_mut().map(|waiters| {
            let (tell, told) = oneshot::channel();
            waiters.push(tell);
            told
        });
        if let Some(told) = waiting {
            return told.await.unwrap_or(Err(UploadError::Cancelled));
        }
        *self.config_waiters.borrow_mut() = Some(Vec::new());
        let result = self.start_engine().await;
        for waiter in self.config_waiters.borrow_mut().take().unwrap_or_default() {
            let _ = waiter.send(result.clone());
        }
        result
    }

    async fn start_engine(&self) -> Result<(), UploadError> {
        let config: CompanionConfig = call("GET", &self.url("/api/config"), &self.headers, None)
            .await
            .map_err(UploadError::from_call)?;
        self.send_deferred_aborts();
        let window = web_sys::window().expect("ferry-wasm runs in a window");
        let listener = |online: bool| {
            let client = self.downgrade();
            Closure::<dyn FnMut()>::new(move || {
                if let Some(client) = client.upgrade() {
                    client.with_engine(|engine| engine.handle_online(online, now()));
                    if online {
                        client.send_deferred_aborts();
                    }
                }
            })
        };
        let (on_online, on_offline) = (listener(true), listener(false));
        let _ =
            window.add_event_listener_with_callback("online", on_online.as_ref().unchecked_ref());
        let _ =
            window.add_event_listener_with_callback("offline", on_offline.as_ref().unchecked_ref());
        let engine_config = EngineConfig {
            // Jitter must differ between browsers, or retries would stay in step.
            seed: (js_sys::Math::random() * u64::MAX as f64) as u64,
            ..self.config.clone()
        };
        let single_put_limit = config.limits.min_part_size;
        let mut engine = Engine::new(engine_config, config);
        engine.handle_online(window.navigator().on_line(), now());
        *self.driver.borrow_mut() = Some(Driver {
            single_put_limit,
            engine,
            files: HashMap::new(),
            running: HashMap::new(),
            next_request: 0,
            timer: None,
            _online: on_online,
            _offline: on_offline,
        });
        Ok(())
    }

    /// Uploads `file`, calling `on_progress` as bytes go out; resolves with the stored object.
    pub async fn upload(
        &self,
        file: File,
        on_progress: impl FnMut(FileProgress) + 'static,
    ) -> Result<StoredObject, UploadError> {
        self.add(file, 0, on_progress).await?.done().await
    }

    /// Queues `file` with a `priority` (higher goes first) and returns its handle; the scheduler
    /// starts it when the outer layer has room. A file with a resume record continues its upload.
    pub async fn add(
        &self,
        file: File,
        priority: i32,
        on_progress: impl FnMut(FileProgress) + 'static,
    ) -> Result<UploadHandle, UploadError> {
        self.add_with_metadata(file, priority, BTreeMap::new(), on_progress)
            .await
    }

    /// As [`Client::add`], with user metadata stored on the object (`x-amz-meta-*`).
    pub async fn add_with_metadata(
        &self,
        file: File,
        priority: i32,
        metadata: BTreeMap<String, String>,
        on_progress: impl FnMut(FileProgress) + 'static,
    ) -> Result<UploadHandle, UploadError> {
        self.ensure_engine().await?;
        // Fingerprints are computed side by side, but files join the queue in the order they were
        // added: each add waits for the one before it.
        let (queued, turn) = oneshot::channel::<()>();
        let previous = self.last_add.replace(Some(turn));
        // Only multipart uploads can be resumed: small files skip the fingerprint's hashing.
        let single = self
            .driver
            .borrow()
            .as_ref()
            .is_some_and(|driver| file.size() as u64 <= driver.single_put_limit);
        let record = if single {
            None
        } else {
            resume::fingerprint(&file).await
        };
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let snapshot = record
            .as_deref()
            .and_then(|key| resume::load(key, now().unix_millis() / 1000));
        let (done, finished) = oneshot::channel();
        let resumed = Rc::new(RefCell::new(None));
        let id = {
            let mut guard = self.driver.borrow_mut();
            let driver = guard.as_mut().expect("ensured above");
            let spec = FileSpec {
                size: file.size() as u64,
                content_type: file.type_(),
                priority,
            };
            let id = match snapshot {
                Some(snapshot) => driver.engine.add_resumed(spec, snapshot),
                None => driver.engine.add(spec),
            };
            let tracked = Tracked {
                file,
                record,
                metadata,
                on_progress: Rc::new(RefCell::new(on_progress)),
                resumed: resumed.clone(),
                retries_seen: std::cell::Cell::new(0),
                done: Some(done),
            };
            driver.files.insert(id, tracked);
            id
        };
        // The next add may queue its file now.
        let _ = queued.send(());
        self.pump();
        Ok(UploadHandle {
            id,
            resumed,
            finished,
        })
    }

    /// Stops starting parts of the file and aborts its running ones; [`Client::resume`] sends them
    /// again.
    pub fn pause(&self, id: FileId) {
        self.with_engine(|engine| engine.pause(id));
    }

    pub fn resume(&self, id: FileId) {
        self.with_engine(|engine| engine.resume(id));
    }

    /// Ends the upload; a multipart upload already created is aborted on the store.
    pub fn cancel(&self, id: FileId) {
        self.with_engine(|engine| engine.cancel(id));
    }

    pub fn pause_all(&self) {
        self.with_engine(Engine::pause_all);
    }

    pub fn resume_all(&self) {
        self.with_engine(Engine::resume_all);
    }

    pub fn cancel_all(&self) {
        self.with_engine(Engine::cancel_all);
    }

    /// What the scheduler is doing now.
    pub fn scheduler(&self) -> SchedulerView {
        self.driver
            .borrow()
            .as_ref()
            .map_or_else(SchedulerView::default, |driver| {
                let stats = driver.engine.stats();
                SchedulerView {
                    running: driver.engine.running_puts(),
                    slots: driver.engine.slots(),
                    live: driver.engine.live_files(),
                    queued: driver.engine.queued_files(),
                    companion_calls: stats.companion_calls,
                    puts: stats.puts,
                    retries: stats.retries,
                }
            })
    }

    /// Names of files with an unfinished upload from an earlier visit.
    pub fn unfinished_uploads() -> Vec<String> {
        resume::unfinished()
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }

    /// Runs every action the engine has, settles every finished file, and arms the next timer.
    fn pump(&self) {
        let mut settled = Vec::new();
        let mut announced = Vec::new();
        {
            let mut guard = self.driver.borrow_mut();
            let Some(driver) = guard.as_mut() else { return };
            while let Some(action) = driver.engine.poll_action(now()) {
                self.execute(driver, action);
            }
            while let Some(event) = driver.engine.poll_event() {
                let (file, result) = match event {
                    Event::Done { file, object } => (file, Ok(object)),
                    Event::Failed { file, error } => (file, Err(error)),
                    Event::Resumed { file, parts_kept } => {
                        if let Some(tracked) = driver.files.get(&file) {
                            *tracked.resumed.borrow_mut() = Some(parts_kept);
                        }
                        announced.push(ClientEvent::Resumed {
                            id: file,
                            parts_kept,
                        });
                        continue;
                    }
                    Event::Waiting { file, waiting } => {
                        announced.push(ClientEvent::Waiting { id: file, waiting });
                        continue;
                    }
                };
                if let Some(mut tracked) = driver.files.remove(&file) {
                    // Done or cancelled (and aborted): nothing is left to resume. A failed
                    // upload keeps its record, so adding the file again continues it.
                    let finished =
                        !matches!(&result, Err(error) if *error != UploadError::Cancelled);
                    if let (Some(record), true) = (&tracked.record, finished) {
                        resume::remove(record);
                    }
                    announced.push(match &result {
                        Ok(object) => ClientEvent::Complete {
                            id: file,
                            object: object.clone(),
                        },
                        Err(error) => ClientEvent::Error {
                            id: file,
                            error: error.clone(),
                        },
                    });
                    settled.push((tracked.done.take(), result));
                }
            }
            self.arm_timer(driver);
        }
        // Outside the borrow: a listener or waiter may start another upload right away.
        for event in announced {
            self.emit(event);
        }
        for (done, result) in settled {
            if let Some(done) = done {
                let _ = done.send(result);
            }
        }
    }

    fn arm_timer(&self, driver: &mut Driver) {
        let next = driver.engine.poll_timeout();
        if driver.timer.as_ref().map(|timer| timer.at) == next {
            return;
        }
        let window = web_sys::window().expect("ferry-wasm runs in a window");
        if let Some(timer) = driver.timer.take() {
            window.clear_timeout_with_handle(timer.handle);
        }
        let Some(at) = next else { return };
        let client = self.downgrade();
        let callback = Closure::<dyn FnMut()>::new(move || {
            let Some(client) = client.upgrade() else {
                return;
            };
            if let Some(driver) = client.driver.borrow_mut().as_mut() {
                driver.timer = None;
            }
            client.with_engine(|engine| engine.handle_timeout(now()));
        });
        let delay = at.saturating_since(now()).as_millis().min(i32::MAX as u128) as i32;
        if let Ok(handle) = window.set_timeout_with_callback_and_timeout_and_arguments_0(
            callback.as_ref().unchecked_ref(),
            delay,
        ) {
            driver.timer = Some(Timer {
                at,
                handle,
                _callback: callback,
            });
        }
    }

    /// Makes a companion call and feeds its answer (or failure) to the engine.
    fn companion_call<T: serde::de::DeserializeOwned + 'static>(
        &self,
        file: FileId,
        kind: Call,
        method: &'static str,
        path: String,
        body: Option<String>,
        feed: impl FnOnce(&mut Driver, T) + 'static,
    ) {
        let client = self.clone();
        spawn_local(async move {
            let answer: Result<T, Failure> =
                call(method, &client.url(&path), &client.headers, body).await;
            client.with_driver(|driver| match answer {
                Ok(value) => feed(driver, value),
                Err(failure) => driver.engine.handle_call_failed(file, kind, failure, now()),
            });
            client.report_progress(file);
        });
    }

    fn execute(&self, driver: &mut Driver, action: Action) {
        match action {
            Action::Create { file } => {
                let Some(tracked) = driver.files.get(&file) else {
                    return;
                };
                let request = CreateUpload {
                    name: tracked.file.name(),
                    size: tracked.file.size() as u64,
                    content_type: tracked.file.type_(),
                    last_modified: Some(tracked.file.last_modified()),
                    fingerprint: tracked.record.clone(),
                    part_size: self.part_size,
                    metadata: tracked.metadata.clone(),
                };
                let body = serde_json::to_string(&request).ok();
                self.companion_call(
                    file,
                    Call::Create,
                    "POST",
                    "/api/uploads".into(),
                    body,
                    move |driver, created: UploadCreated| {
                        driver.engine.handle_created(file, created, now());
                        save_record(driver, file);
                    },
                );
            }
            Action::ListParts {
                file,
                upload_id,
                token,
            } => {
                let path = format!(
                    "/api/uploads/{upload_id}/parts?token={}",
                    js_sys::encode_uri_component(&token)
                );
                self.companion_call(
                    file,
                    Call::ListParts,
                    "GET",
                    path,
                    None,
                    move |driver, list: PartList| {
                        driver.engine.handle_listed(file, list.parts, now());
                    },
                );
            }
            Action::Sign {
                file,
                upload_id,
                request,
            } => {
                let body = serde_json::to_string(&request).ok();
                let path = format!("/api/uploads/{upload_id}/sign");
                self.companion_call(
                    file,
                    Call::Sign,
                    "POST",
                    path,
                    body,
                    move |driver, signed: PartsSigned| {
                        driver.engine.handle_signed(file, signed.urls, now());
                    },
                );
            }
            Action::Put {
                file,
                part,
                range,
                target,
            } => self.start_put(driver, file, part, range, target),
            Action::Complete {
                file,
                upload_id,
                request,
            } => {
                let body = serde_json::to_string(&request).ok();
                let path = format!("/api/uploads/{upload_id}/complete");
                self.companion_call(
                    file,
                    Call::Complete,
                    "POST",
                    path,
                    body,
                    move |driver, object: StoredObject| {
                        driver.engine.handle_completed(file, object, now());
                    },
                );
            }
            Action::StopPuts { file, parts } => {
                for part in parts {
                    if let Some((_, xhr)) = driver.running.remove(&(file, part)) {
                        let _ = xhr.abort();
                    }
                }
            }
            Action::Abort {
                upload_id, token, ..
            } => {
                let url = self.url(&format!(
                    "/api/uploads/{upload_id}?token={}",
                    js_sys::encode_uri_component(&token)
                ));
                let headers = self.headers.clone();
                spawn_local(abort_or_defer(url, headers));
            }
        }
    }

    fn start_put(
        &self,
        driver: &mut Driver,
        file: FileId,
        part: u32,
        range: std::ops::Range<u64>,
        target: PutTarget,
    ) {
        let Some(tracked) = driver.files.get(&file) else {
            return;
        };
        let (url, headers, etag_from) = match &target {
            PutTarget::Direct(signed) => {
                (signed.url.clone(), signed.headers.clone(), EtagFrom::Header)
            }
            PutTarget::Companion { upload_id, token } => {
                let token = js_sys::encode_uri_component(token);
                let path = match upload_id {
                    Some(upload_id) => {
                        format!("/api/uploads/{upload_id}/parts/{part}?token={token}")
                    }
                    None => format!("/api/objects?token={token}"),
                };
                (
                    self.url(&path),
                    self.headers.latest().into_iter().collect(),
                    EtagFrom::Json,
                )
            }
        };
        // A part covering the whole file sends the File itself: each `slice()` is a synchronous
        // call into the browser process, which a batch of tiny files pays thousands of times.
        let whole = range.start == 0 && range.end as f64 == tracked.file.size();
        let body = if whole {
            Ok(Blob::from(tracked.file.clone()))
        } else {
            tracked
                .file
                .slice_with_f64_and_f64(range.start as f64, range.end as f64)
        };
        let progress_client = self.clone();
        let request = body.and_then(|body| {
            PutRequest::start(&url, &headers, &body, etag_from, move |sent| {
                progress_client.with_engine(|engine| {
                    engine.handle_put_progress(file, part, sent as u64, now())
                });
                progress_client.report_progress(file);
            })
        });
        let request = match request {
            Ok(request) => request,
            Err(err) => {
                let failure =
                    Failure::network(format!("the browser refused to start the request: {err:?}"));
                driver.engine.handle_put_failed(file, part, failure, now());
                return;
            }
        };
        let through_companion = matches!(target, PutTarget::Companion { .. });
        let number = driver.next_request;
        driver.next_request += 1;
        driver
            .running
            .insert((file, part), (number, request.abort_handle()));
        let client = self.clone();
        spawn_local(async move {
            let mut result = request.finish().await;
            if through_companion
                && let Err(failure) = &result
                && failure.status == Some(401)
            {
                // The companion refused the application's headers: ask for fresh ones, as its
                // JSON calls do, and send the part again with them; nothing is spent.
                result = Err(client.headers.refreshed_for_put(failure).await);
            }
            let current = client.driver.borrow_mut().as_mut().is_some_and(|driver| {
                let current = driver
                    .running
                    .get(&(file, part))
                    .is_some_and(|(running, _)| *running == number);
                if current {
                    driver.running.remove(&(file, part));
                }
                current
            });
            if !current {
                // Aborted on the engine's word: it already put the part back in line.
                return;
            }
            let stored = result.as_ref().ok().cloned();
            client.with_driver(|driver| {
                match result {
                    Ok(etag) => driver.engine.handle_put_done(file, part, etag, now()),
                    Err(failure) => driver.engine.handle_put_failed(file, part, failure, now()),
                }
                save_record(driver, file);
            });
            if let Some(etag) = stored {
                client.emit(ClientEvent::Part {
                    id: file,
                    part,
                    etag,
                });
            }
            client.report_progress(file);
        });
    }

    /// Feeds a result to the engine, then runs whatever it asks for next.
    fn with_engine(&self, feed: impl FnOnce(&mut Engine)) {
        self.with_driver(|driver| feed(&mut driver.engine));
    }

    fn with_driver(&self, feed: impl FnOnce(&mut Driver)) {
        if let Some(driver) = self.driver.borrow_mut().as_mut() {
            feed(driver);
        }
        self.pump();
    }

    fn report_progress(&self, file: FileId) {
        let update = {
            let guard = self.driver.borrow();
            let Some(driver) = guard.as_ref() else { return };
            let (Some(progress), Some(tracked)) =
                (driver.engine.progress(file), driver.files.get(&file))
            else {
                return;
            };
            let new_retry = progress.retries > tracked.retries_seen.replace(progress.retries);
            (tracked.on_progress.clone(), progress, new_retry)
        };
        let (callback, progress, new_retry) = update;
        // Outside the borrow: the callback may call back into the client.
        (callback.borrow_mut())(progress);
        if new_retry {
            self.emit(ClientEvent::Retry {
                id: file,
                retries: progress.retries,
            });
        }
        self.emit(ClientEvent::Progress { id: file, progress });
    }
}

/// Aborts an upload on the store through the companion: a cancelled upload must not leave its
/// parts on the store for the janitor. While the companion cannot be reached, the abort is kept
/// (in `localStorage`, for the next page too) and tried again with backoff, and when the browser
/// comes back online or a client starts.
async fn abort_or_defer(url: String, headers: Rc<CompanionHeaders>) {
    // One loop per abort, however many times it is asked for.
    if !ABORTING.with_borrow_mut(|aborting| aborting.insert(url.clone())) {
        return;
    }
    abort_with_backoff(&url, &headers).await;
    ABORTING.with_borrow_mut(|aborting| aborting.remove(&url));
}

thread_local! {
    /// The aborts being sent or waiting to be sent again, in this page.
    static ABORTING: RefCell<std::collections::HashSet<String>> = RefCell::default();
}

async fn abort_with_backoff(url: &str, headers: &CompanionHeaders) {
    let mut backoff_ms = 1_000;
    loop {
        match call::<()>("DELETE", url, headers, None).await {
            Ok(()) => return resume::forget_abort(url),
            Err(failure) if failure.is_outage() => {
                resume::defer_abort(url);
                sleep_ms(backoff_ms).await;
                backoff_ms = (backoff_ms * 2).min(MAX_ABORT_BACKOFF_MS);
                if !resume::deferred_aborts().iter().any(|kept| kept == url) {
                    // Another attempt (after `online`, or another tab) got it through.
                    return;
                }
            }
            Err(failure) => {
                // Refused (gone already, or a token nobody accepts): nothing left to do.
                resume::forget_abort(url);
                web_sys::console::warn_1(
                    &format!("ferry: abort refused: {}", failure.message).into(),
                );
                return;
            }
        }
    }
}

/// The longest wait between two tries of a deferred abort.
const MAX_ABORT_BACKOFF_MS: i32 = 30_000;

/// Resolves after `ms` milliseconds.
async fn sleep_ms(ms: i32) {
    let timer = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(timer).await;
}

impl Client {
    /// Sends the aborts that could not reach this client's companion before, with this
    /// client's headers (another uploader on the page may talk to another companion).
    fn send_deferred_aborts(&self) {
        let ours = self.url("/api/uploads/");
        for url in resume::deferred_aborts() {
            if url.starts_with(&ours) {
                spawn_local(abort_or_defer(url, self.headers.clone()));
            }
        }
    }
}

/// Writes the file's resume record from the engine's snapshot.
fn save_record(driver: &Driver, file: FileId) {
    let record = driver
        .files
        .get(&file)
        .and_then(|tracked| tracked.record.as_deref());
    if let (Some(record), Some(snapshot)) = (record, driver.engine.snapshot(file)) {
        resume::save(record, &snapshot);
    }
}
