//! The browser driver: carries out the engine's actions (fetch for the companion's JSON calls,
//! XMLHttpRequest for parts, WebCrypto for fingerprints, Web Locks for claims, `localStorage` for
//! resume records), and feeds results, the time, one timer and online/offline changes back. It is
//! the browser's counterpart of `ferry-sim`, the other driver of the same engine.
//!
//! Everything lives in one [`Shared`]; callbacks (requests, the timer, window listeners) hold a
//! `Weak` to it, so dropping the last `Client` frees the driver, cancels its timer and removes its
//! listeners.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use ferry_core::json::{FromJson, ToJson as _};
use ferry_core::protocol::{
    CompanionConfig, CreateUpload, CreateUploads, PartList, PartsSigned, StoredObject,
    UploadCreated, UploadsCreated, complete_path,
};
use ferry_core::sorted::SortedMap;
use ferry_core::{
    Action, BatchedFile, Call, Claim, Engine, EngineConfig, Event, Failure, FileId, Instant,
    PutTarget, UploadError,
};
use futures_channel::oneshot;
use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use wasm_bindgen_futures::spawn_local;
use web_sys::{Blob, File, XmlHttpRequest};

use crate::client::{ClientEvent, FileProgress, Rate};
use crate::describe;
use crate::hashing;
use crate::http::{Answer, CompanionHeaders, call, read_answer};
use crate::locks;
use crate::resume::{self, Record};
use crate::speed::Speedometer;
use crate::xhr::{EtagFrom, PutRequest};

pub(crate) type Listener = Rc<dyn Fn(&ClientEvent)>;
pub(crate) type ProgressCallback = Rc<RefCell<dyn FnMut(FileProgress, Rate)>>;
pub(crate) type Outcome = Result<StoredObject, UploadError>;

pub(crate) fn now() -> Instant {
    Instant::from_unix_millis(js_sys::Date::now() as u64)
}

pub(crate) fn now_secs() -> u64 {
    now().unix_millis() / 1000
}

/// One add: the file's bytes and what its caller waits for.
pub(crate) struct Tracked {
    pub file: File,
    /// `file.size()`, read once: for a file on disk each read asks the browser to check it.
    pub size: u64,
    /// The upload that answers it: its own, or the one it joined.
    pub upload: FileId,
    /// User metadata for the object.
    pub metadata: SortedMap<String, String>,
    pub on_progress: ProgressCallback,
    /// How many parts a resumed upload kept.
    pub resumed: Rc<Cell<Option<u32>>>,
    /// Retries already announced with [`ClientEvent::Retry`].
    pub retries_seen: Cell<u32>,
    pub done: Option<oneshot::Sender<Outcome>>,
}

/// What the driver keeps for a live upload beyond the engine's state.
struct Named {
    /// The File it reads, to recognise the same object added again without reading it.
    file: File,
    key: String,
    /// Where its resume record lives (a claimed, resumable upload).
    record: Option<String>,
    /// The fingerprint's lock, released when the upload ends.
    _lock: Option<locks::Held>,
    meter: Speedometer,
}

pub(crate) struct Driver {
    pub engine: Engine,
    pub files: SortedMap<FileId, Tracked>,
    /// Live uploads that have a fingerprint.
    named: SortedMap<FileId, Named>,
    /// Running PUTs, so a stopped part's request can be aborted; the number tells a request from
    /// a later one for the same part.
    running: SortedMap<(FileId, u32), (u64, XmlHttpRequest)>,
    next_request: u64,
    /// The engine's next timer; dropping it cancels it.
    timer: Option<(Instant, Timeout)>,
    _window: [EventListener; 2],
}

/// A client's state, shared by its clones and reached weakly from its callbacks.
pub(crate) struct Shared {
    pub endpoint: String,
    /// Headers sent to the companion (e.g. `Authorization`).
    pub headers: Rc<CompanionHeaders>,
    pub driver: RefCell<Driver>,
    pub listeners: RefCell<Vec<Listener>>,
}

impl Shared {
    pub fn new(endpoint: &str, config: EngineConfig, headers: CompanionHeaders) -> Rc<Self> {
        Rc::new_cyclic(|weak: &Weak<Shared>| {
            let window = web_sys::window().expect("ferry-wasm runs in a window");
            let listener = |name: &'static str, online: bool| {
                let weak = weak.clone();
                EventListener::new(&window, name, move |_| {
                    let Some(shared) = weak.upgrade() else { return };
                    shared.with_engine(|engine| engine.handle_online(online, now()));
                    if online {
                        shared.send_deferred_aborts();
                    }
                })
            };
            let config = EngineConfig {
                // Jitter must differ between browsers, or retries would stay in step.
                seed: (js_sys::Math::random() * u64::MAX as f64) as u64,
                ..config
            };
            let mut engine = Engine::new(config);
            engine.handle_online(window.navigator().on_line(), now());
            Shared {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                headers: Rc::new(headers),
                driver: RefCell::new(Driver {
                    engine,
                    files: SortedMap::new(),
                    named: SortedMap::new(),
                    running: SortedMap::new(),
                    next_request: 0,
                    timer: None,
                    _window: [listener("online", true), listener("offline", false)],
                }),
                listeners: RefCell::new(Vec::new()),
            }
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// Tells every listener, outside any borrow: a listener may call back into the client.
    pub fn emit(&self, event: ClientEvent) {
        let listeners = self.listeners.borrow().clone();
        for listener in listeners {
            listener(&event);
        }
    }

    /// Feeds something to the engine, then runs whatever it asks for next.
    pub fn with_engine(self: &Rc<Self>, feed: impl FnOnce(&mut Engine)) {
        self.with_driver(|driver| feed(&mut driver.engine));
    }

    pub fn with_driver(self: &Rc<Self>, feed: impl FnOnce(&mut Driver)) {
        feed(&mut self.driver.borrow_mut());
        self.pump();
    }

    /// Runs every action the engine has, settles every finished add, and arms the next timer.
    pub fn pump(self: &Rc<Self>) {
        let mut announced = Vec::new();
        let mut settled = Vec::new();
        {
            let mut driver = self.driver.borrow_mut();
            let driver = &mut *driver;
            while let Some(action) = driver.engine.poll_action(now()) {
                self.execute(driver, action);
            }
            while let Some(event) = driver.engine.poll_event() {
                self.settle(driver, event, &mut announced, &mut settled);
            }
            self.arm_timer(driver);
        }
        // Outside the borrow: a listener or waiter may start another upload right away.
        for event in announced {
            self.emit(event);
        }
        for (done, outcome) in settled {
            let _ = done.send(outcome);
        }
    }

    fn settle(
        &self,
        driver: &mut Driver,
        event: Event,
        announced: &mut Vec<ClientEvent>,
        settled: &mut Vec<(oneshot::Sender<Outcome>, Outcome)>,
    ) {
        let (file, outcome) = match event {
            Event::Done { file, object } => (file, Ok(object)),
            Event::Failed { file, error } => (file, Err(error)),
            Event::Resumed { file, parts_kept } => {
                if let Some(tracked) = driver.files.get(&file) {
                    tracked.resumed.set(Some(parts_kept));
                }
                return announced.push(ClientEvent::Resumed {
                    id: file,
                    parts_kept,
                });
            }
            Event::Waiting { file, waiting } => {
                return announced.push(ClientEvent::Waiting { id: file, waiting });
            }
            Event::Joined { file, upload } => {
                if let Some(tracked) = driver.files.get_mut(&file) {
                    tracked.upload = upload;
                }
                return announced.push(ClientEvent::Joined { id: file, upload });
            }
        };
        if let Some(mut tracked) = driver.files.remove(&file) {
            driver.end_upload(tracked.upload, &outcome);
            announced.push(match &outcome {
                Ok(object) => ClientEvent::Complete {
                    id: file,
                    object: object.clone(),
                },
                Err(error) => ClientEvent::Error {
                    id: file,
                    error: error.clone(),
                },
            });
            if let Some(done) = tracked.done.take() {
                settled.push((done, outcome));
            }
        }
    }

    fn arm_timer(self: &Rc<Self>, driver: &mut Driver) {
        let next = driver.engine.poll_timeout();
        if driver.timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        driver.timer = next.map(|at| {
            let weak = Rc::downgrade(self);
            let delay = at.saturating_since(now()).as_millis().min(u32::MAX as u128) as u32;
            let timeout = Timeout::new(delay, move || {
                let Some(shared) = weak.upgrade() else { return };
                shared.driver.borrow_mut().timer = None;
                shared.with_engine(|engine| engine.handle_timeout(now()));
            });
            (at, timeout)
        });
    }

    /// Makes a companion call, feeds its answer (or failure) to the driver, and then reports
    /// the progress of the `files` the call is for.
    fn companion_call<T: FromJson + 'static>(
        self: &Rc<Self>,
        files: Vec<FileId>,
        method: &'static str,
        path: String,
        body: Option<String>,
        feed: impl FnOnce(&mut Driver, Result<T, Failure>) + 'static,
    ) {
        let read = move |driver: &mut Driver, answer: Result<Answer, Failure>| {
            feed(driver, answer.and_then(read_answer));
        };
        self.call_then(files, method, path, body, Box::new(read));
    }

    /// [`Self::companion_call`]'s call, the same for every answer type.
    fn call_then(
        self: &Rc<Self>,
        files: Vec<FileId>,
        method: &'static str,
        path: String,
        body: Option<String>,
        feed: Box<FeedAnswer>,
    ) {
        let weak = Rc::downgrade(self);
        let url = self.url(&path);
        let headers = self.headers.clone();
        spawn_local(async move {
            let answer = call(method, &url, &headers, body).await;
            let Some(shared) = weak.upgrade() else { return };
            shared.with_driver(|driver| feed(driver, answer));
            for file in files {
                shared.report_progress(file);
            }
        });
    }

    /// A call for `file`: its answer goes to `feed`, its failure to the engine as `kind`.
    fn file_call<T: FromJson + 'static>(
        self: &Rc<Self>,
        file: FileId,
        kind: Call,
        method: &'static str,
        path: String,
        body: Option<String>,
        feed: impl FnOnce(&mut Driver, T) + 'static,
    ) {
        self.companion_call(
            vec![file],
            method,
            path,
            body,
            move |driver, answer| match answer {
                Ok(value) => feed(driver, value),
                Err(failure) => driver.engine.handle_call_failed(file, kind, failure, now()),
            },
        );
    }

    fn execute(self: &Rc<Self>, driver: &mut Driver, action: Action) {
        match action {
            Action::FetchConfig => {
                let weak = Rc::downgrade(self);
                self.companion_call(
                    Vec::new(),
                    "GET",
                    "/api/config".into(),
                    None,
                    move |driver, answer: Result<CompanionConfig, Failure>| match answer {
                        Ok(config) => {
                            driver.engine.handle_config(config, now());
                            // The companion answers: aborts kept from before can go now.
                            if let Some(shared) = weak.upgrade() {
                                shared.send_deferred_aborts();
                            }
                        }
                        Err(failure) => driver.engine.handle_config_failed(failure, now()),
                    },
                );
            }
            Action::Fingerprint { file, resumable } => self.fingerprint(driver, file, resumable),
            // Only a fingerprint of the bytes names a lock and a record: a page-local name (the
            // file could not be hashed) is another file's on the next visit.
            Action::Claim { file, key } if !resume::is_fingerprint(&key) => {
                driver.engine.handle_claimed(file, Claim::Fresh, now());
            }
            Action::Claim { file, key } => {
                let weak = Rc::downgrade(self);
                spawn_local(async move {
                    let (lock, waited) = locks::acquire(&key).await;
                    if waited {
                        resume::await_stored(&key).await;
                    }
                    let Some(shared) = weak.upgrade() else { return };
                    shared.with_driver(|driver| driver.claimed(file, key, lock, waited));
                });
            }
            Action::Hash {
                file,
                algorithm,
                parts,
            } => {
                let Some(blob) = driver.file_of(file) else {
                    return driver.engine.cancel(file);
                };
                let size = driver.engine.progress(file).map(|progress| progress.size);
                let weak = Rc::downgrade(self);
                spawn_local(async move {
                    let values = hashing::checksums(&blob, size, parts, algorithm).await;
                    let Some(shared) = weak.upgrade() else { return };
                    shared.with_driver(|driver| match values {
                        Ok(values) => driver.engine.handle_hashed(file, values, now()),
                        Err(message) => driver.engine.handle_hash_failed(file, message, now()),
                    });
                });
            }
            Action::Create { file, checksum } => {
                let Some(request) = driver.create_request(file, checksum) else {
                    return driver.engine.cancel(file);
                };
                let body = Some(request.to_json().to_text());
                self.file_call(
                    file,
                    Call::Create,
                    "POST",
                    "/api/uploads".into(),
                    body,
                    move |driver, created: UploadCreated| {
                        driver.engine.handle_created(file, created, now());
                        driver.save_record(file);
                    },
                );
            }
            Action::CreateBatch { files } => {
                let mut batched = Vec::with_capacity(files.len());
                let mut requests = Vec::with_capacity(files.len());
                for BatchedFile { file, checksum } in files {
                    match driver.create_request(file, checksum) {
                        Some(request) => {
                            batched.push(file);
                            requests.push(request);
                        }
                        None => driver.engine.cancel(file),
                    }
                }
                if batched.is_empty() {
                    return;
                }
                let body = Some(CreateUploads { files: requests }.to_json().to_text());
                let files = batched.clone();
                self.companion_call(
                    batched,
                    "POST",
                    "/api/uploads/batch".into(),
                    body,
                    move |driver, answer: Result<UploadsCreated, Failure>| {
                        driver.engine.handle_batch_answered(&files, answer, now());
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
                self.file_call(
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
                let body = Some(request.to_json().to_text());
                let path = format!("/api/uploads/{upload_id}/sign");
                self.file_call(
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
                let body = Some(request.to_json().to_text());
                let path = complete_path(upload_id.as_deref());
                self.file_call(
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
                spawn_local(abort_or_defer(url, self.headers.clone()));
            }
        }
    }

    /// Names the file. The same File object as a live upload's gets that upload's name without
    /// being read; a single PUT needs no more than that; a resumable file is hashed (its name
    /// must hold across reloads and tabs).
    fn fingerprint(self: &Rc<Self>, driver: &mut Driver, file: FileId, resumable: bool) {
        let Some(tracked) = driver.tracked_of(file) else {
            return driver.engine.cancel(file);
        };
        let same_object = driver
            .named
            .values()
            .find(|named| js_sys::Object::is(&named.file, &tracked.file))
            .map(|named| named.key.clone());
        if let Some(key) = same_object.or_else(|| (!resumable).then(|| page_key(file))) {
            return driver.fingerprinted(file, key);
        }
        let blob = tracked.file.clone();
        let weak = Rc::downgrade(self);
        spawn_local(async move {
            let key = resume::fingerprint(&blob)
                .await
                .unwrap_or_else(|| page_key(file));
            if let Some(shared) = weak.upgrade() {
                shared.with_driver(|driver| driver.fingerprinted(file, key));
            }
        });
    }

    fn start_put(
        self: &Rc<Self>,
        driver: &mut Driver,
        file: FileId,
        part: u32,
        range: std::ops::Range<u64>,
        target: PutTarget,
    ) {
        let Some(blob) = driver.file_of(file) else {
            let failure = Failure::network("the file is no longer held by the page");
            return driver.engine.handle_put_failed(file, part, failure, now());
        };
        let mut form = SortedMap::new();
        let (url, headers, etag_from) = match &target {
            PutTarget::Direct(signed) => {
                form.clone_from(&signed.form);
                (signed.url.clone(), signed.headers.clone(), EtagFrom::Header)
            }
            PutTarget::Companion {
                upload_id,
                token,
                checksum,
            } => {
                let token = js_sys::encode_uri_component(token);
                let path = match upload_id {
                    Some(upload_id) => {
                        format!("/api/uploads/{upload_id}/parts/{part}?token={token}")
                    }
                    None => format!("/api/objects?token={token}"),
                };
                let mut headers: SortedMap<_, _> = self.headers.latest().into_iter().collect();
                if let Some((algorithm, value)) = checksum {
                    headers.insert(algorithm.header().to_owned(), value.clone());
                }
                (self.url(&path), headers, EtagFrom::Json)
            }
        };
        let size = driver.engine.progress(file).map(|progress| progress.size);
        let body = part_of(&blob, size, &range);
        let weak = Rc::downgrade(self);
        let request = body.and_then(|body| {
            PutRequest::start(&url, &headers, &form, &body, etag_from, move |sent| {
                if let Some(shared) = weak.upgrade() {
                    shared.with_engine(|engine| {
                        engine.handle_put_progress(file, part, sent as u64, now())
                    });
                    shared.report_progress(file);
                }
            })
        });
        let request = match request {
            Ok(request) => request,
            Err(err) => {
                let failure = Failure::network(format!(
                    "the browser refused to start the request: {}",
                    describe(&err)
                ));
                return driver.engine.handle_put_failed(file, part, failure, now());
            }
        };
        let through_companion = matches!(target, PutTarget::Companion { .. });
        let number = driver.next_request;
        driver.next_request += 1;
        driver
            .running
            .insert((file, part), (number, request.abort_handle()));
        let weak = Rc::downgrade(self);
        let headers = self.headers.clone();
        spawn_local(async move {
            let mut result = request.finish().await;
            if through_companion
                && let Err(failure) = &result
                && failure.status == Some(401)
            {
                // The companion refused the application's headers: ask for fresh ones, as its
                // JSON calls do, and send the part again with them; nothing is spent.
                result = Err(headers.refreshed_for_put(failure).await);
            }
            let Some(shared) = weak.upgrade() else { return };
            let stored = result.as_ref().ok().cloned();
            let mut current = false;
            shared.with_driver(|driver| {
                current = driver
                    .running
                    .get(&(file, part))
                    .is_some_and(|(running, _)| *running == number);
                if !current {
                    // Aborted on the engine's word: it already put the part back in line.
                    return;
                }
                driver.running.remove(&(file, part));
                match result {
                    Ok(etag) => driver.engine.handle_put_done(file, part, etag, now()),
                    Err(failure) => driver.engine.handle_put_failed(file, part, failure, now()),
                }
                driver.save_record(file);
            });
            if let (true, Some(etag)) = (current, stored) {
                shared.emit(ClientEvent::Part {
                    id: file,
                    part,
                    etag,
                });
            }
            if current {
                shared.report_progress(file);
            }
        });
    }

    /// Tells every add the upload `file` answers how far it is.
    pub fn report_progress(&self, file: FileId) {
        let (progress, rate, updates) = {
            let mut driver = self.driver.borrow_mut();
            let driver = &mut *driver;
            let Some(progress) = driver.engine.progress(file) else {
                return;
            };
            let rate = driver
                .named
                .get_mut(&file)
                .map_or_else(Rate::default, |named| {
                    let now_ms = js_sys::Date::now();
                    named.meter.record(now_ms, progress.loaded());
                    Rate::of(&named.meter, &progress, now_ms)
                });
            let updates: Vec<_> = driver
                .engine
                .handles(file)
                .iter()
                .filter_map(|&id| {
                    let tracked = driver.files.get(&id)?;
                    let new_retry =
                        progress.retries > tracked.retries_seen.replace(progress.retries);
                    Some((id, tracked.on_progress.clone(), new_retry))
                })
                .collect();
            (progress, rate, updates)
        };
        // Outside the borrow: the callbacks may call back into the client.
        for (id, callback, new_retry) in updates {
            (callback.borrow_mut())(progress, rate);
            if new_retry {
                self.emit(ClientEvent::Retry {
                    id,
                    retries: progress.retries,
                });
            }
            self.emit(ClientEvent::Progress { id, progress, rate });
        }
    }

    /// Sends the aborts that could not reach this client's companion before, with this
    /// client's headers (another uploader on the page may talk to another companion).
    pub fn send_deferred_aborts(&self) {
        let ours = self.url("/api/uploads/");
        for url in resume::deferred_aborts() {
            if url.starts_with(&ours) {
                spawn_local(abort_or_defer(url, self.headers.clone()));
            }
        }
    }

    /// Aborts the upload a resume record keeps and removes the record; an upload of it running
    /// in this page is cancelled.
    pub fn discard(self: &Rc<Self>, record: &str) {
        let running: Vec<FileId> = {
            let driver = self.driver.borrow();
            driver
                .named
                .iter()
                .filter(|(_, named)| named.record.as_deref() == Some(record))
                .flat_map(|(&upload, _)| driver.engine.handles(upload).to_vec())
                .collect()
        };
        for id in running {
            self.with_engine(|engine| engine.cancel(id));
        }
        if let Some(Record::Uploading { snapshot, .. }) = resume::load(record, now_secs()) {
            let url = self.url(&format!(
                "/api/uploads/{}?token={}",
                snapshot.upload_id,
                js_sys::encode_uri_component(&snapshot.token)
            ));
            spawn_local(abort_or_defer(url, self.headers.clone()));
        }
        resume::remove(record);
    }
}

/// A name for a file only this page's adds of the same File object share.
fn page_key(file: FileId) -> String {
    format!("page:{}", file.0)
}

impl Driver {
    /// What the companion is asked to create for `file` (with a single PUT's `checksum`); an
    /// add that joined the upload goes with the first add's metadata. `None`: the file is gone.
    fn create_request(&self, file: FileId, checksum: Option<String>) -> Option<CreateUpload> {
        let tracked = self.tracked_of(file)?;
        Some(CreateUpload {
            name: tracked.file.name(),
            size: tracked.size,
            content_type: tracked.file.type_(),
            last_modified: Some(tracked.file.last_modified()),
            fingerprint: self
                .named
                .get(&file)
                .map(|named| named.key.clone())
                .filter(|key| resume::is_fingerprint(key)),
            part_size: self.engine.part_size_for(tracked.size),
            metadata: tracked.metadata.clone(),
            checksum,
            // A small file as a POST form is one request: a form needs no CORS preflight.
            form: true,
        })
    }

    /// An add the upload `file` answers: its own, or one that joined it.
    fn tracked_of(&self, file: FileId) -> Option<&Tracked> {
        std::iter::once(&file)
            .chain(self.engine.handles(file))
            .find_map(|id| self.files.get(id))
    }

    /// How fast all running uploads go together, and how long the files taken have left.
    pub fn rate(&self) -> Rate {
        let now_ms = js_sys::Date::now();
        let (speed, remaining) = self
            .named
            .iter()
            .filter_map(|(&upload, named)| Some((named, self.engine.progress(upload)?)))
            .fold((0.0, 0), |(speed, remaining), (named, progress)| {
                (
                    speed + named.meter.bytes_per_sec(now_ms),
                    remaining + progress.size.saturating_sub(progress.loaded()),
                )
            });
        Rate {
            bytes_per_sec: speed,
            eta_secs: (speed > 0.0).then(|| remaining as f64 / speed),
        }
    }

    /// The bytes of the upload `file`: its own add's, or those of an add that joined it.
    fn file_of(&self, file: FileId) -> Option<File> {
        if let Some(named) = self.named.get(&file) {
            return Some(named.file.clone());
        }
        self.engine
            .handles(file)
            .iter()
            .chain([&file])
            .find_map(|id| Some(self.files.get(id)?.file.clone()))
    }

    fn fingerprinted(&mut self, file: FileId, key: String) {
        self.engine
            .handle_fingerprinted(file, Some(key.clone()), now());
        // Joined to another upload, or gone: nothing of its own to name.
        if self.engine.handles(file).first() != Some(&file) {
            return;
        }
        let Some(blob) = self.file_of(file) else {
            return;
        };
        self.named.insert(
            file,
            Named {
                file: blob,
                key,
                record: None,
                _lock: None,
                meter: Speedometer::default(),
            },
        );
    }

    /// The fingerprint's lock is this page's: the claim follows from its record.
    fn claimed(&mut self, file: FileId, key: String, lock: Option<locks::Held>, waited: bool) {
        let Some(named) = self.named.get_mut(&file) else {
            // The upload ended while it waited: the lock goes back at once.
            return;
        };
        let claim = Record::claim(resume::load(&key, now_secs()), waited);
        if !matches!(claim, Claim::Resume(_)) {
            resume::remove(&key);
        }
        named.record = Some(key);
        named._lock = lock;
        self.engine.handle_claimed(file, claim, now());
    }

    /// Writes the upload's resume record from the engine's snapshot.
    fn save_record(&self, file: FileId) {
        let record = self
            .named
            .get(&file)
            .and_then(|named| named.record.as_deref());
        if let (Some(record), Some(snapshot)) = (record, self.engine.snapshot(file)) {
            resume::save(record, &snapshot, now_secs());
        }
    }

    /// Forgets `upload` if it ended (an add that joined it may still wait), leaving its record
    /// as `outcome` says: the stored object for a tab that waits for the same file, nothing for
    /// a cancelled upload, and the resume record of one that failed on its way (adding the file
    /// again continues it). Its lock goes back.
    fn end_upload(&mut self, upload: FileId, outcome: &Outcome) {
        if !self.engine.handles(upload).is_empty() {
            return;
        }
        let Some(named) = self.named.remove(&upload) else {
            return;
        };
        if let Some(record) = &named.record {
            match outcome {
                Ok(object) => resume::save_stored(record, object, now_secs()),
                Err(UploadError::Cancelled) => resume::remove(record),
                Err(_) => {}
            }
        }
    }
}

/// Aborts an upload on the store through the companion: a cancelled upload must not leave its
/// parts on the store for the janitor. While the companion cannot be reached, the abort is kept
/// (in `localStorage`, for the next page too) and tried again with backoff, and when the browser
/// comes back online or a client starts.
async fn abort_or_defer(url: String, headers: Rc<CompanionHeaders>) {
    // One loop per abort, however many times it is asked for.
    if !ABORTING.with_borrow_mut(|aborting| aborting.insert(url.clone(), ()).is_none()) {
        return;
    }
    abort_with_backoff(&url, &headers).await;
    ABORTING.with_borrow_mut(|aborting| aborting.remove(&url));
}

thread_local! {
    /// The aborts being sent or waiting to be sent again, in this page.
    static ABORTING: RefCell<SortedMap<String, ()>> = RefCell::default();
}

/// What a companion call's answer goes to.
type FeedAnswer = dyn FnOnce(&mut Driver, Result<Answer, Failure>);

/// The longest wait between two tries of a deferred abort.
const MAX_ABORT_BACKOFF_MS: u32 = 30_000;

async fn abort_with_backoff(url: &str, headers: &CompanionHeaders) {
    let mut backoff_ms = 1_000;
    loop {
        match call("DELETE", url, headers, None).await {
            Ok(_) => return resume::forget_abort(url),
            Err(failure) if failure.is_outage() => {
                resume::defer_abort(url);
                gloo_timers::future::TimeoutFuture::new(backoff_ms).await;
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

/// The bytes of `file` (of `size` bytes, when known) in `range`: the file itself when the range
/// is all of it, as each `slice()` is a synchronous call into the browser process, which a batch
/// of tiny files would pay thousands of times (once to hash, once to send).
pub(crate) fn part_of(
    file: &Blob,
    size: Option<u64>,
    range: &std::ops::Range<u64>,
) -> Result<Blob, wasm_bindgen::JsValue> {
    if range.start == 0 && Some(range.end) == size {
        return Ok(file.clone());
    }
    file.slice_with_f64_and_f64(range.start as f64, range.end as f64)
}
