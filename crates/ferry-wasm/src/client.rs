//! The browser driver: carries out the engine's actions with fetch and XMLHttpRequest and feeds
//! the results back. This is the Rust API (used by the Leptos demo); `lib.rs` wraps it for JS.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use ferry_core::protocol::{
    CompanionConfig, CreateUpload, PartsSigned, StoredObject, UploadCreated,
};
use ferry_core::{Action, Engine, EngineConfig, Event, FileId, FileSpec, UploadError};
use futures_channel::oneshot;
use wasm_bindgen_futures::spawn_local;
use web_sys::{File, XmlHttpRequest};

use crate::http::call;
use crate::xhr::PutRequest;

/// A file's progress, in bytes. `confirmed` counts parts the store acknowledged; `in_flight` the
/// bytes sent for parts still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileProgress {
    pub size: u64,
    pub confirmed: u64,
    pub in_flight: u64,
}

impl FileProgress {
    /// Everything sent so far, confirmed or not.
    pub fn loaded(&self) -> u64 {
        self.confirmed + self.in_flight
    }
}

/// A queued upload: its id for [`Client::pause`], [`Client::resume`] and [`Client::cancel`], and
/// its outcome.
pub struct UploadHandle {
    pub id: FileId,
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
}

type ProgressCallback = Rc<RefCell<dyn FnMut(FileProgress)>>;

struct Tracked {
    file: File,
    on_progress: ProgressCallback,
    done: Option<oneshot::Sender<Result<StoredObject, UploadError>>>,
}

struct Driver {
    engine: Engine,
    files: HashMap<FileId, Tracked>,
    /// Running PUTs, so a failing or cancelled file can stop its other parts.
    running: HashMap<(FileId, u32), XmlHttpRequest>,
}

/// Uploads files through a companion. Cheap to clone: clones share one engine, so every upload
/// started from any clone goes through the same scheduler.
#[derive(Clone)]
pub struct Client {
    endpoint: Rc<str>,
    driver: Rc<RefCell<Option<Driver>>>,
}

impl Client {
    /// A client for the companion at `endpoint` (`""` for the page's own origin).
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').into(),
            driver: Rc::new(RefCell::new(None)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// Asks the companion for its limits once; the engine is made from them.
    async fn ensure_engine(&self) -> Result<(), UploadError> {
        if self.driver.borrow().is_some() {
            return Ok(());
        }
        let config: CompanionConfig = call("GET", &self.url("/api/config"), None::<&()>).await?;
        let mut driver = self.driver.borrow_mut();
        if driver.is_none() {
            *driver = Some(Driver {
                engine: Engine::new(EngineConfig::default(), config),
                files: HashMap::new(),
                running: HashMap::new(),
            });
        }
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

    /// Queues `file` with a `priority` (higher goes first) and returns its handle at once; the
    /// scheduler starts it when the outer layer has room.
    pub async fn add(
        &self,
        file: File,
        priority: i32,
        on_progress: impl FnMut(FileProgress) + 'static,
    ) -> Result<UploadHandle, UploadError> {
        self.ensure_engine().await?;
        let (done, finished) = oneshot::channel();
        let id = {
            let mut guard = self.driver.borrow_mut();
            let driver = guard.as_mut().expect("ensured above");
            let spec = FileSpec {
                size: file.size() as u64,
                content_type: file.type_(),
                priority,
            };
            let id = driver.engine.add(spec);
            driver.files.insert(
                id,
                Tracked {
                    file,
                    on_progress: Rc::new(RefCell::new(on_progress)),
                    done: Some(done),
                },
            );
            id
        };
        self.pump();
        Ok(UploadHandle { id, finished })
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
            .map_or_else(SchedulerView::default, |driver| SchedulerView {
                running: driver.engine.running_puts(),
                slots: driver.engine.slots(),
                live: driver.engine.live_files(),
                queued: driver.engine.queued_files(),
                companion_calls: driver.engine.stats().companion_calls,
                puts: driver.engine.stats().puts,
            })
    }

    /// Runs every action the engine has, then settles every finished file.
    fn pump(&self) {
        let mut settled = Vec::new();
        {
            let mut guard = self.driver.borrow_mut();
            let Some(driver) = guard.as_mut() else { return };
            while let Some(action) = driver.engine.poll_action() {
                self.execute(driver, action);
            }
            while let Some(event) = driver.engine.poll_event() {
                let (file, result) = match event {
                    Event::Done { file, object } => (file, Ok(object)),
                    Event::Failed { file, error } => (file, Err(error)),
                };
                if let Some(mut tracked) = driver.files.remove(&file) {
                    settled.push((tracked.done.take(), result));
                }
            }
        }
        // Outside the borrow: a waiter may start another upload right away.
        for (done, result) in settled {
            if let Some(done) = done {
                let _ = done.send(result);
            }
        }
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
                    fingerprint: None,
                };
                let client = self.clone();
                spawn_local(async move {
                    let answer: Result<UploadCreated, _> =
                        call("POST", &client.url("/api/uploads"), Some(&request)).await;
                    client.with_engine(|engine| match answer {
                        Ok(created) => engine.handle_created(file, created),
                        Err(error) => engine.handle_call_failed(file, error),
                    });
                });
            }
            Action::Sign {
                file,
                upload_id,
                request,
            } => {
                let client = self.clone();
                spawn_local(async move {
                    let url = client.url(&format!("/api/uploads/{upload_id}/sign"));
                    let answer: Result<PartsSigned, _> = call("POST", &url, Some(&request)).await;
                    client.with_engine(|engine| match answer {
                        Ok(signed) => engine.handle_signed(file, signed.urls),
                        Err(error) => engine.handle_call_failed(file, error),
                    });
                });
            }
            Action::Put {
                file,
                part,
                range,
                url,
            } => self.start_put(driver, file, part, range, url),
            Action::Complete {
                file,
                upload_id,
                request,
            } => {
                let client = self.clone();
                spawn_local(async move {
                    let url = client.url(&format!("/api/uploads/{upload_id}/complete"));
                    let answer: Result<StoredObject, _> = call("POST", &url, Some(&request)).await;
                    client.with_engine(|engine| match answer {
                        Ok(object) => engine.handle_completed(file, object),
                        Err(error) => engine.handle_call_failed(file, error),
                    });
                });
            }
            Action::StopPuts { file } => {
                driver.running.retain(|(running_file, _), xhr| {
                    if *running_file == file {
                        let _ = xhr.abort();
                    }
                    *running_file != file
                });
            }
            Action::Abort {
                upload_id, token, ..
            } => {
                let url = self.url(&format!(
                    "/api/uploads/{upload_id}?token={}",
                    js_sys::encode_uri_component(&token)
                ));
                spawn_local(async move {
                    // The file has already failed; a failed abort leaves the parts to the
                    // store's lifecycle rules and to the companion's janitor.
                    if let Err(error) = call::<()>("DELETE", &url, None::<&()>).await {
                        web_sys::console::warn_1(&format!("ferry: abort failed: {error}").into());
                    }
                });
            }
        }
    }

    fn start_put(
        &self,
        driver: &mut Driver,
        file: FileId,
        part: u32,
        range: std::ops::Range<u64>,
        url: ferry_core::protocol::SignedUrl,
    ) {
        let Some(tracked) = driver.files.get(&file) else {
            return;
        };
        let body = tracked
            .file
            .slice_with_f64_and_f64(range.start as f64, range.end as f64);
        let progress_client = self.clone();
        let request = body.and_then(|body| {
            PutRequest::start(&url, &body, move |sent| {
                progress_client
                    .with_engine(|engine| engine.handle_put_progress(file, part, sent as u64));
                progress_client.report_progress(file);
            })
        });
        let request = match request {
            Ok(request) => request,
            Err(err) => {
                let message = format!("the browser refused to start the request: {err:?}");
                driver
                    .engine
                    .handle_put_failed(file, part, UploadError::Network { part, message });
                return;
            }
        };
        driver.running.insert((file, part), request.abort_handle());
        let client = self.clone();
        spawn_local(async move {
            let result = request.finish(part).await;
            if let Some(driver) = client.driver.borrow_mut().as_mut() {
                driver.running.remove(&(file, part));
            }
            client.with_engine(|engine| match result {
                Ok(etag) => engine.handle_put_done(file, part, etag),
                Err(error) => engine.handle_put_failed(file, part, error),
            });
            client.report_progress(file);
        });
    }

    /// Feeds a result to the engine, then runs whatever it asks for next.
    fn with_engine(&self, feed: impl FnOnce(&mut Engine)) {
        if let Some(driver) = self.driver.borrow_mut().as_mut() {
            feed(&mut driver.engine);
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
            let progress = FileProgress {
                size: progress.size,
                confirmed: progress.confirmed,
                in_flight: progress.in_flight,
            };
            (tracked.on_progress.clone(), progress)
        };
        let (callback, progress) = update;
        // Outside the borrow: the callback may call back into the client.
        (callback.borrow_mut())(progress);
    }
}
