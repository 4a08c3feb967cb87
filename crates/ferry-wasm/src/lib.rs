//! Ferry in the browser: direct multipart uploads to S3-compatible storage.
//!
//! From JavaScript:
//!
//! ```js
//! import init, { createUploader } from "ferry-wasm";
//! await init();
//! const uploader = createUploader({ endpoint: "https://companion.example" });
//! const upload = uploader.add(file, { priority: 1 });
//! uploader.on("progress", ({ id, loaded, total }) => console.log(id, loaded / total));
//! const { key, etag, size } = await upload.done;
//! ```
//!
//! From Rust (Leptos and other wasm crates), use [`Client`] directly.

mod client;
mod driver;
mod hash_worker;
mod hashing;
mod http;
mod js;
mod json;
#[cfg(feature = "leptos")]
pub mod leptos;
mod locks;
mod resume;
mod speed;
mod xhr;

#[cfg(all(
    feature = "small-allocator",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::UploadError;
use ferry_core::sorted::SortedMap;
use wasm_bindgen::prelude::*;

use crate::js::{
    CompleteEvent, JoinedEvent, PartEvent, ResumedEvent, RetryEvent, UnfinishedUpload,
    UploadProgress, UploadResult, UploaderSettings, UploaderStats, WaitingEvent,
};
use crate::json::to_js;

pub use crate::client::{
    AddOptions as ClientAddOptions, Client, ClientEvent, FileProgress, Rate, SchedulerView,
    Unfinished, UploadHandle,
};
pub use crate::http::HeaderSource;
pub use ferry_core::protocol::StoredObject;
pub use ferry_core::{EngineConfig, FileId, FileState, FixedSlots, Order, RunningPart, SlotRule};

// What JavaScript passes or receives that tsify cannot declare: functions and JS objects. The
// plain shapes (`UploaderSettings`, `UploadProgress`, `UploadResult`, `UploaderStats`, the event
// payloads) are generated from `js.rs`.
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `createUploader(options)`. */
export interface UploaderOptions extends UploaderSettings {
  /**
   * Headers sent with every call to the companion, e.g. `{ Authorization: "Bearer ..." }`; or a
   * function called before every call that returns them (or a Promise of them). After a 401 it
   * is called once more with `{ refresh: true }` and the call is tried again, so a token that
   * expires during a long upload can be replaced. Aborts use fresh headers too.
   */
  headers?: Record<string, string> | ((context: { refresh: boolean }) => Record<string, string> | Promise<Record<string, string>>);
}

/** Options of `uploader.add(file, options)`. */
export interface AddOptions {
  /** Higher goes first among queued files; 0 by default. */
  priority?: number;
  /** Aborting it cancels the upload (its Promise rejects with code `Cancelled`). */
  signal?: AbortSignal;
  /** Stored with the object as `x-amz-meta-<name>` (names: letters, digits, `-`, `_`; 2 KiB in all). */
  metadata?: Record<string, string>;
  /** Called as bytes go out. */
  onProgress?: (progress: UploadProgress) => void;
}

/** Options of `uploader.upload(file, options)`. */
export type UploadOptions = AddOptions;

/** The events of `uploader.on(name, listener)`, by name. */
export interface UploaderEvents {
  progress: UploadProgress;
  part: PartEvent;
  retry: RetryEvent;
  resumed: ResumedEvent;
  waiting: WaitingEvent;
  joined: JoinedEvent;
  complete: CompleteEvent;
  error: { id: number; error: import("./index").FerryError };
}
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "UploaderOptions")]
    pub type UploaderOptions;
    #[wasm_bindgen(typescript_type = "AddOptions")]
    pub type AddOptions;
    #[wasm_bindgen(typescript_type = "Promise<UploadResult>")]
    pub type UploadPromise;
    #[wasm_bindgen(typescript_type = "keyof UploaderEvents")]
    pub type EventName;
    #[wasm_bindgen(typescript_type = "(event: any) => void")]
    pub type Listener;
    #[wasm_bindgen(typescript_type = "() => void")]
    pub type Unsubscribe;
    #[wasm_bindgen(typescript_type = "UploaderStats")]
    pub type StatsJs;
    #[wasm_bindgen(typescript_type = "UnfinishedUpload[]")]
    pub type UnfinishedJs;
}

#[wasm_bindgen(module = "/js/ferry-error.js")]
extern "C" {
    /// The JS class of every error Ferry hands to JavaScript.
    #[wasm_bindgen(extends = js_sys::Error)]
    type FerryError;
    #[wasm_bindgen(constructor)]
    fn new(code: &str, message: &str) -> FerryError;
}

impl UploaderSettings {
    fn engine_config(&self) -> EngineConfig {
        let defaults = EngineConfig::default();
        let mut config = EngineConfig {
            triggers: self.triggers.unwrap_or(defaults.triggers).max(1),
            per_file: self.per_file.unwrap_or(defaults.per_file).max(1),
            part_size: self.part_size.filter(|&size| size > 0),
            order: self.order.into(),
            ..defaults
        };
        if let Some(slots) = self.slots {
            config.slot_rule = Arc::new(FixedSlots(slots.max(1)));
        }
        // Slots or a part size the page chose are kept as they are.
        if self.slots.is_some() || config.part_size.is_some() || self.adaptive == Some(false) {
            config.adapt = None;
        }
        if let Some(retries) = self.retries {
            config.retry.retries = retries;
        }
        if let Some(delay) = self.retry_delay_ms {
            config.retry.base_delay = Duration::from_millis(delay);
        }
        config
    }
}

/// `options.headers`: absent, an object of strings, or a function that returns them.
fn header_source(headers: JsValue) -> Result<HeaderSource, JsError> {
    if headers.is_undefined() || headers.is_null() {
        return Ok(HeaderSource::Fixed(Vec::new()));
    }
    if let Some(function) = headers.dyn_ref::<js_sys::Function>() {
        return Ok(HeaderSource::Function(function.clone()));
    }
    let fixed: SortedMap<String, String> = json::from_js(&headers).map_err(|err| {
        JsError::new(&format!(
            "bad uploader options: headers must be an object of strings or a function: {err}"
        ))
    })?;
    Ok(HeaderSource::Fixed(fixed.into_iter().collect()))
}

/// The CRC32C or CRC64NVME of a Blob's bytes, base64 as S3 states it: the full-object checksum
/// `done` reports for a file with these bytes. It reads the Blob as a stream, on the page or in
/// a Worker. (A SHA-256 object checksum is composed from its parts', so it has none.)
#[wasm_bindgen(js_name = checksum, unchecked_return_type = "Promise<string>")]
pub fn checksum(
    blob: web_sys::Blob,
    #[wasm_bindgen(unchecked_param_type = "\"crc32c\" | \"crc64nvme\"")] algorithm: String,
) -> js_sys::Promise {
    promise(Box::pin(async move {
        let refused = |message: &str| JsValue::from(JsError::new(message));
        let parsed = ferry_core::ChecksumAlgorithm::parse(&algorithm)
            .ok_or_else(|| refused(&format!("unknown checksum algorithm \"{algorithm}\"")))?;
        let value = hashing::full_object_crc(&blob, parsed)
            .await
            .map_err(|message| refused(&message))?;
        Ok(value.into())
    }))
}

/// A Promise of `future`. Every Promise of the package is made here, from one boxed future
/// type: `future_to_promise` is compiled anew for each future type, 1.4 KB of wasm each.
fn promise(
    future: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>>,
) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(future)
}

/// What listeners of `event` receive.
fn event_payload(event: &ClientEvent) -> JsValue {
    match event {
        ClientEvent::Progress { id, progress, rate } => {
            to_js(&UploadProgress::new(*id, progress, *rate))
        }
        ClientEvent::Part { id, part, etag } => to_js(&PartEvent {
            id: id.0 as f64,
            part: *part,
            etag: etag.clone(),
        }),
        ClientEvent::Retry { id, retries } => to_js(&RetryEvent {
            id: id.0 as f64,
            retries: *retries,
        }),
        ClientEvent::Resumed { id, parts_kept } => to_js(&ResumedEvent {
            id: id.0 as f64,
            parts_kept: *parts_kept,
        }),
        ClientEvent::Waiting { id, waiting } => to_js(&WaitingEvent {
            id: id.0 as f64,
            waiting: *waiting,
        }),
        ClientEvent::Joined { id, upload } => to_js(&JoinedEvent {
            id: id.0 as f64,
            upload: upload.0 as f64,
        }),
        ClientEvent::Complete { id, object } => to_js(&CompleteEvent {
            id: id.0 as f64,
            result: object.into(),
        }),
        ClientEvent::Error { id, error } => {
            let payload = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&payload, &"id".into(), &(id.0 as f64).into());
            let _ = js_sys::Reflect::set(&payload, &"error".into(), &js_error(error));
            payload.into()
        }
    }
}

/// Listeners by event name, each with the number that unsubscribes it.
type Listeners = Rc<RefCell<SortedMap<String, Vec<(u64, js_sys::Function)>>>>;

/// Uploads files straight to the store through a companion. One uploader schedules all its
/// uploads together; call `.free()` when done with it to release its memory.
#[wasm_bindgen]
pub struct Uploader {
    client: Client,
    listeners: Listeners,
    next_listener: std::cell::Cell<u64>,
}

/// An uploader for the companion `options.endpoint`.
#[wasm_bindgen(js_name = createUploader)]
pub fn create_uploader(options: Option<UploaderOptions>) -> Result<Uploader, JsError> {
    Uploader::new(options)
}

#[wasm_bindgen]
impl Uploader {
    #[wasm_bindgen(constructor)]
    pub fn new(options: Option<UploaderOptions>) -> Result<Uploader, JsError> {
        let given = options
            .map(JsValue::from)
            .filter(|options| !options.is_undefined() && !options.is_null());
        let (options, headers) = match given {
            Some(given) => {
                let headers =
                    js_sys::Reflect::get(&given, &"headers".into()).unwrap_or(JsValue::UNDEFINED);
                let options: UploaderSettings =
                    json::from_js_fields(&given, &UploaderSettings::FIELDS)
                        .map_err(|err| JsError::new(&format!("bad uploader options: {err}")))?;
                (options, header_source(headers)?)
            }
            None => (UploaderSettings::default(), HeaderSource::Fixed(Vec::new())),
        };
        let client =
            Client::with_header_source(&options.endpoint, options.engine_config(), headers);
        let listeners: Listeners = Rc::default();
        let dispatch = listeners.clone();
        client.on_event(move |event| {
            // A payload costs dozens of calls into JavaScript, and a file has several events
            // (progress, part, complete) that a bare `add(file).done` never hears.
            let callbacks: Vec<js_sys::Function> = dispatch
                .borrow()
                .get(event.name())
                .map(|entries| {
                    entries
                        .iter()
                        .map(|(_, callback)| callback.clone())
                        .collect()
                })
                .unwrap_or_default();
            if callbacks.is_empty() {
                return;
            }
            let payload = event_payload(event);
            for callback in callbacks {
                let _ = callback.call1(&JsValue::NULL, &payload);
            }
        });
        Ok(Self {
            client,
            listeners,
            next_listener: std::cell::Cell::new(0),
        })
    }

    /// Queues `file` and returns its `Upload` at once; `upload.done` resolves with the stored
    /// object or rejects with a `FerryError`. The same file added again while it is on its way
    /// shares the upload.
    pub fn add(&self, file: web_sys::File, options: Option<AddOptions>) -> Upload {
        let option = |name: &str| {
            options
                .as_ref()
                .and_then(|options| js_sys::Reflect::get(options, &name.into()).ok())
                .filter(|value| !value.is_undefined() && !value.is_null())
        };
        let on_progress =
            option("onProgress").and_then(|callback| callback.dyn_into::<js_sys::Function>().ok());
        let priority = option("priority")
            .and_then(|priority| priority.as_f64())
            .unwrap_or(0.0) as i32;
        let signal =
            option("signal").and_then(|signal| signal.dyn_into::<web_sys::AbortSignal>().ok());
        let metadata = match option("metadata").map(|metadata| json::from_js(&metadata)) {
            None => SortedMap::new(),
            Some(Ok(metadata)) => metadata,
            Some(Err(err)) => {
                let error = UploadError::Companion {
                    status: 400,
                    code: "BadRequest".into(),
                    message: format!("metadata must map names to strings: {err}"),
                };
                return Upload::refused(&self.client, &error);
            }
        };
        let id = Rc::new(std::cell::Cell::new(None));
        let reported = id.clone();
        let report = move |progress: FileProgress, rate: Rate| {
            if let (Some(callback), Some(id)) = (&on_progress, reported.get()) {
                let _ = callback.call1(
                    &JsValue::NULL,
                    &to_js(&UploadProgress::new(id, &progress, rate)),
                );
            }
        };
        let options = ClientAddOptions { priority, metadata };
        let handle = self.client.add(file, options, report);
        id.set(Some(handle.id));
        let upload_id = handle.id;
        // A listener of its own, so one signal can cancel a whole batch; removed when done.
        let aborted = signal.map(|signal| {
            let canceller = self.client.clone();
            if signal.aborted() {
                canceller.cancel(upload_id);
            }
            gloo_events::EventListener::once(&signal, "abort", move |_| canceller.cancel(upload_id))
        });
        let done = promise(Box::pin(async move {
            let result = handle.done().await;
            drop(aborted);
            result
                .map(|object| to_js(&UploadResult::from(&object)))
                .map_err(|error| js_error(&error))
        }));
        Upload {
            client: self.client.clone(),
            id: Some(upload_id),
            done,
        }
    }

    /// Uploads `file`; resolves with `{ key, etag, size, location }`, rejects with a `FerryError`.
    pub fn upload(&self, file: web_sys::File, options: Option<AddOptions>) -> UploadPromise {
        self.add(file, options).done.unchecked_into()
    }

    /// Calls `listener` for each event named `name`; returns a function that unsubscribes it.
    pub fn on(&self, name: EventName, listener: Listener) -> Result<Unsubscribe, JsError> {
        let name = name
            .as_string()
            .ok_or_else(|| JsError::new("the event name must be a string"))?;
        const EVENTS: [&str; 8] = [
            "progress", "part", "retry", "resumed", "waiting", "joined", "complete", "error",
        ];
        if !EVENTS.contains(&name.as_str()) {
            return Err(JsError::new(&format!("unknown event \"{name}\"")));
        }
        let listener: js_sys::Function = listener
            .dyn_into()
            .map_err(|_| JsError::new("the listener must be a function"))?;
        let number = self.next_listener.get();
        self.next_listener.set(number + 1);
        self.listeners
            .borrow_mut()
            .get_or_insert_with(name.clone(), Vec::new)
            .push((number, listener));
        let listeners = self.listeners.clone();
        let unsubscribe = Closure::once_into_js(move || {
            if let Some(entries) = listeners.borrow_mut().get_mut(&name) {
                entries.retain(|(entry, _)| *entry != number);
            }
        });
        Ok(unsubscribe.unchecked_into())
    }

    /// Aborts every running part and starts nothing until `resumeAll()`.
    #[wasm_bindgen(js_name = pauseAll)]
    pub fn pause_all(&self) {
        self.client.pause_all();
    }

    #[wasm_bindgen(js_name = resumeAll)]
    pub fn resume_all(&self) {
        self.client.resume_all();
    }

    /// Ends every upload; each one's Promise rejects with code `Cancelled`.
    #[wasm_bindgen(js_name = cancelAll)]
    pub fn cancel_all(&self) {
        self.client.cancel_all();
    }

    /// What the scheduler is doing: slots busy, files queued and prepared, calls, retries, and
    /// the speed and time left over every running upload.
    pub fn stats(&self) -> StatsJs {
        to_js(&UploaderStats::from(self.client.scheduler())).unchecked_into()
    }

    /// Uploads left unfinished by earlier visits or failures (their resume records), oldest
    /// first: adding the same file continues one; `discard(id)` gives it up.
    pub fn unfinished(&self) -> UnfinishedJs {
        let entries: Vec<UnfinishedUpload> = Client::unfinished()
            .into_iter()
            .map(UnfinishedUpload::from)
            .collect();
        to_js(&entries).unchecked_into()
    }

    /// Aborts the unfinished upload `id` on the store and removes its resume record (an upload
    /// of it running in this page is cancelled).
    pub fn discard(&self, id: &str) {
        self.client.discard(id);
    }
}

/// One add of a file: its outcome and its controls.
#[wasm_bindgen]
pub struct Upload {
    client: Client,
    /// `None` for an add refused before it was queued.
    id: Option<FileId>,
    done: js_sys::Promise,
}

#[wasm_bindgen]
impl Upload {
    /// Resolves with the stored object; rejects with a `FerryError`.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> UploadPromise {
        self.done.clone().unchecked_into()
    }

    /// The id that events carry.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> Option<f64> {
        self.id.map(|id| id.0 as f64)
    }

    /// Aborts the running parts and starts no more until `resume()`.
    pub fn pause(&self) {
        self.command(Client::pause);
    }

    pub fn resume(&self) {
        self.command(Client::resume);
    }

    /// Ends this add; the multipart upload is aborted on the store unless another add of the
    /// same file still waits for it.
    pub fn cancel(&self) {
        self.command(Client::cancel);
    }
}

impl Upload {
    fn command(&self, run: fn(&Client, FileId)) {
        if let Some(id) = self.id {
            run(&self.client, id);
        }
    }

    /// An add refused before it was queued: its Promise rejects with `error`.
    fn refused(client: &Client, error: &UploadError) -> Self {
        Self {
            client: client.clone(),
            id: None,
            done: js_sys::Promise::reject(&js_error(error)),
        }
    }
}

/// An `Error` of class `FerryError` with the failure's `code`, as JS callers expect.
pub fn js_error(error: &UploadError) -> JsValue {
    FerryError::new(error.code(), &error.to_string()).into()
}

/// What was thrown (by the browser, or by a function of the application's), as text:
/// `NotReadableError: …` for an `Error` (a `DOMException` is one; the hashing Worker tells a
/// read failure by its name), the text of a thrown string. It takes the value or a reference,
/// so `map_err(describe)` needs no closure.
pub(crate) fn describe(thrown: impl AsRef<JsValue>) -> String {
    let thrown = thrown.as_ref();
    if let Some(error) = thrown.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", error.name(), error.message());
    }
    thrown
        .as_string()
        .unwrap_or_else(|| "something that is not an Error was thrown".into())
}
