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
mod http;
#[cfg(feature = "leptos")]
pub mod leptos;
mod locks;
mod resume;
mod speed;
mod xhr;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::UploadError;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

pub use crate::client::{
    AddOptions as ClientAddOptions, Client, ClientEvent, FileProgress, Rate, SchedulerView,
    Unfinished, UploadHandle,
};
pub use crate::http::HeaderSource;
pub use ferry_core::protocol::StoredObject;
pub use ferry_core::{EngineConfig, FileId, FileState, FixedSlots, Order, SlotRule};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `createUploader(options)`. */
export interface UploaderOptions {
  /** Base URL of the companion; "" or omitted for the page's own origin. */
  endpoint?: string;
  /**
   * Headers sent with every call to the companion, e.g. `{ Authorization: "Bearer ..." }`; or a
   * function called before every call that returns them (or a Promise of them). After a 401 it
   * is called once more with `{ refresh: true }` and the call is tried again, so a token that
   * expires during a long upload can be replaced. Aborts use fresh headers too.
   */
  headers?: Record<string, string> | ((context: { refresh: boolean }) => Record<string, string> | Promise<Record<string, string>>);
  /** Part PUTs at once over all files; by default 5, or 3 while a file over 65 MiB is active. */
  slots?: number;
  /** Files prepared ahead (upload created, first URLs signed); 10 by default. */
  triggers?: number;
  /** Part PUTs at once for one file; 3 by default. */
  perFile?: number;
  /** Retries of a failed part or call; 3 by default. */
  retries?: number;
  /** Delay before the first retry, doubled for each next one (with jitter); 1000 by default. */
  retryDelayMs?: number;
  /** Part size asked of the companion for new uploads (raised to the store's rules); the companion's own by default. */
  partSize?: number;
  /** Which queued file goes first among equal priorities: in the order added (default), or the smallest. */
  order?: "fifo" | "smallest-first";
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

/** Progress of one file, in bytes. */
export interface UploadProgress {
  /** The upload's id, as `Upload.id`. */
  id: number;
  /** Bytes sent so far (`confirmed + inFlight`). */
  loaded: number;
  /** Size of the file. */
  total: number;
  /** Bytes in parts the store has acknowledged; never goes back. */
  confirmed: number;
  /** Bytes sent for parts still running; drops when a part fails. */
  inFlight: number;
  /** Retries spent so far. */
  retries: number;
  /** Whether parts go through the companion because the store cannot be reached. */
  fallback: boolean;
  /** Whether the upload waits out an outage (the store or the companion does not answer). */
  waiting: boolean;
  /** Bytes per second over the last few seconds; 0 until measured. */
  speed: number;
  /** Seconds left at that speed; null until measured. */
  eta: number | null;
}

/** What `uploader.stats()` tells about the scheduler. */
export interface UploaderStats {
  /** Part PUTs running now. */
  slotsBusy: number;
  /** Part PUTs the slot rule allows now. */
  slots: number;
  /** Files waiting for the outer layer. */
  queued: number;
  /** Files taken by the outer layer: fingerprinted, created, uploading. */
  prepared: number;
  companionCalls: number;
  puts: number;
  retries: number;
  /** Adds that joined an upload of the same file instead of sending it again. */
  joined: number;
  /** Bytes per second over every running upload. */
  speed: number;
  /** Seconds until the files taken are sent, at that speed; null until measured. */
  eta: number | null;
}

/** An upload left unfinished (by a closed page, or a failure), as its resume record keeps it. */
export interface UnfinishedUpload {
  /** What `uploader.discard(id)` takes. */
  id: string;
  name: string;
  size: number;
  /** Bytes the store already holds. */
  confirmed: number;
  /** Seconds since the record was last written. */
  age: number;
}

/** The stored object. */
export interface UploadResult {
  /** Object key, chosen by the companion. */
  key: string;
  /** The store's ETag of the object. */
  etag: string;
  /** Size in bytes. */
  size: number;
  /** Where the companion serves the object (a path on the companion). */
  location: string;
}

/** The events of `uploader.on(name, listener)`, by name. */
export interface UploaderEvents {
  progress: UploadProgress;
  /** A part is stored. */
  part: { id: number; part: number; etag: string };
  /** A part or call failed and will be tried again. */
  retry: { id: number; retries: number };
  /** A reloaded upload continued, keeping the parts the store already held. */
  resumed: { id: number; partsKept: number };
  /**
   * The store or the companion stopped answering and the upload waits, spending no retries and
   * probing with capped backoff (`waiting: true`); or it answers again and the upload goes on
   * by itself (`waiting: false`).
   */
  waiting: { id: number; waiting: boolean };
  /** The same file is already on its way in this page (upload `upload`): this add shares it. */
  joined: { id: number; upload: number };
  complete: { id: number; result: UploadResult };
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

/// The uploader's options but `headers`, which may be a function and is read apart.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Options {
    #[serde(default)]
    endpoint: String,
    slots: Option<usize>,
    triggers: Option<usize>,
    per_file: Option<usize>,
    retries: Option<u32>,
    retry_delay_ms: Option<u64>,
    part_size: Option<u64>,
    #[serde(default)]
    order: OrderJs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum OrderJs {
    #[default]
    Fifo,
    SmallestFirst,
}

impl Options {
    fn engine_config(&self) -> EngineConfig {
        let defaults = EngineConfig::default();
        let mut config = EngineConfig {
            triggers: self.triggers.unwrap_or(defaults.triggers).max(1),
            per_file: self.per_file.unwrap_or(defaults.per_file).max(1),
            part_size: self.part_size.filter(|&size| size > 0),
            order: match self.order {
                OrderJs::Fifo => Order::Fifo,
                OrderJs::SmallestFirst => Order::SmallestFirst,
            },
            ..defaults
        };
        if let Some(slots) = self.slots {
            config.slot_rule = Arc::new(FixedSlots(slots.max(1)));
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgressJs {
    id: f64,
    loaded: f64,
    total: f64,
    confirmed: f64,
    in_flight: f64,
    retries: u32,
    fallback: bool,
    waiting: bool,
    speed: f64,
    eta: Option<f64>,
}

impl ProgressJs {
    fn new(id: FileId, progress: &FileProgress, rate: Rate) -> Self {
        Self {
            id: id.0 as f64,
            loaded: progress.loaded() as f64,
            total: progress.size as f64,
            confirmed: progress.confirmed as f64,
            in_flight: progress.in_flight as f64,
            retries: progress.retries,
            fallback: progress.fallback,
            waiting: progress.waiting,
            speed: rate.bytes_per_sec,
            eta: rate.eta_secs,
        }
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
    let fixed: BTreeMap<String, String> =
        serde_wasm_bindgen::from_value(headers).map_err(|err| {
            JsError::new(&format!(
                "bad uploader options: headers must be an object of strings or a function: {err}"
            ))
        })?;
    Ok(HeaderSource::Fixed(fixed.into_iter().collect()))
}

fn to_js(value: &impl Serialize) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("plain data serialises")
}

/// Listeners by event name, each with the number that unsubscribes it.
type Listeners = Rc<RefCell<BTreeMap<String, Vec<(u64, js_sys::Function)>>>>;

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
                let options: Options = serde_wasm_bindgen::from_value(given)
                    .map_err(|err| JsError::new(&format!("bad uploader options: {err}")))?;
                (options, header_source(headers)?)
            }
            None => (Options::default(), HeaderSource::Fixed(Vec::new())),
        };
        let client =
            Client::with_header_source(&options.endpoint, options.engine_config(), headers);
        let listeners: Listeners = Rc::default();
        let dispatch = listeners.clone();
        client.on_event(move |event| {
            let (name, payload) = match event {
                ClientEvent::Progress { id, progress, rate } => {
                    ("progress", to_js(&ProgressJs::new(*id, progress, *rate)))
                }
                ClientEvent::Part { id, part, etag } => (
                    "part",
                    to_js(&serde_json::json!({"id": id.0, "part": part, "etag": etag})),
                ),
                ClientEvent::Retry { id, retries } => (
                    "retry",
                    to_js(&serde_json::json!({"id": id.0, "retries": retries})),
                ),
                ClientEvent::Resumed { id, parts_kept } => (
                    "resumed",
                    to_js(&serde_json::json!({"id": id.0, "partsKept": parts_kept})),
                ),
                ClientEvent::Waiting { id, waiting } => (
                    "waiting",
                    to_js(&serde_json::json!({"id": id.0, "waiting": waiting})),
                ),
                ClientEvent::Joined { id, upload } => (
                    "joined",
                    to_js(&serde_json::json!({"id": id.0, "upload": upload.0})),
                ),
                ClientEvent::Complete { id, object } => (
                    "complete",
                    to_js(&serde_json::json!({"id": id.0, "result": object})),
                ),
                ClientEvent::Error { id, error } => {
                    let payload = js_sys::Object::new();
                    let _ = js_sys::Reflect::set(&payload, &"id".into(), &(id.0 as f64).into());
                    let _ = js_sys::Reflect::set(&payload, &"error".into(), &js_error(error));
                    ("error", payload.into())
                }
            };
            let callbacks: Vec<js_sys::Function> = dispatch
                .borrow()
                .get(name)
                .map(|entries| {
                    entries
                        .iter()
                        .map(|(_, callback)| callback.clone())
                        .collect()
                })
                .unwrap_or_default();
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
        let metadata = match option("metadata").map(serde_wasm_bindgen::from_value) {
            None => BTreeMap::new(),
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
                    &to_js(&ProgressJs::new(id, &progress, rate)),
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
        let done = wasm_bindgen_futures::future_to_promise(async move {
            let result = handle.done().await;
            drop(aborted);
            result
                .map(|object| to_js(&object))
                .map_err(|error| js_error(&error))
        });
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
            return Err(JsError::new(&format!("unknown event {name:?}")));
        }
        let listener: js_sys::Function = listener
            .dyn_into()
            .map_err(|_| JsError::new("the listener must be a function"))?;
        let number = self.next_listener.get();
        self.next_listener.set(number + 1);
        self.listeners
            .borrow_mut()
            .entry(name.clone())
            .or_default()
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
        let view = self.client.scheduler();
        to_js(&serde_json::json!({
            "slotsBusy": view.running,
            "slots": view.slots,
            "queued": view.queued,
            "prepared": view.live,
            "companionCalls": view.companion_calls,
            "puts": view.puts,
            "retries": view.retries,
            "joined": view.joined,
            "speed": view.rate.bytes_per_sec,
            "eta": view.rate.eta_secs,
        }))
        .unchecked_into()
    }

    /// Uploads left unfinished by earlier visits or failures (their resume records), oldest
    /// first: adding the same file continues one; `discard(id)` gives it up.
    pub fn unfinished(&self) -> UnfinishedJs {
        let entries: Vec<serde_json::Value> = Client::unfinished()
            .into_iter()
            .map(|entry| {
                serde_json::json!({
                    "id": entry.id,
                    "name": entry.name,
                    "size": entry.size,
                    "confirmed": entry.confirmed,
                    "age": entry.age_secs,
                })
            })
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
