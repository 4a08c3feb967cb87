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
mod http;
#[cfg(feature = "leptos")]
pub mod leptos;
mod resume;
mod xhr;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::UploadError;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

pub use crate::client::{Client, ClientEvent, FileProgress, SchedulerView, UploadHandle};
pub use crate::http::HeaderSource;
pub use ferry_core::protocol::StoredObject;
pub use ferry_core::{EngineConfig, FileId, FileState, FixedSlots, SlotRule};

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
}

impl Options {
    fn engine_config(&self) -> EngineConfig {
        let defaults = EngineConfig::default();
        let mut config = EngineConfig {
            triggers: self.triggers.unwrap_or(defaults.triggers).max(1),
            per_file: self.per_file.unwrap_or(defaults.per_file).max(1),
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
}

impl ProgressJs {
    fn new(id: FileId, progress: &FileProgress) -> Self {
        Self {
            id: id.0 as f64,
            loaded: progress.loaded() as f64,
            total: progress.size as f64,
            confirmed: progress.confirmed as f64,
            in_flight: progress.in_flight as f64,
            retries: progress.retries,
            fallback: progress.fallback,
            waiting: progress.waiting,
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
                ClientEvent::Progress { id, progress } => {
                    ("progress", to_js(&ProgressJs::new(*id, progress)))
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
    /// object or rejects with a `FerryError`.
    pub fn add(&self, file: web_sys::File, options: Option<AddOptions>) -> Upload {
        let option = |name: &str| {
            options
                .as_ref()
                .and_then(|options| js_sys::Reflect::get(options, &name.into()).ok())
        };
        let on_progress =
            option("onProgress").and_then(|callback| callback.dyn_into::<js_sys::Function>().ok());
        let priority = option("priority")
            .and_then(|priority| priority.as_f64())
            .unwrap_or(0.0) as i32;
        let signal =
            option("signal").and_then(|signal| signal.dyn_into::<web_sys::AbortSignal>().ok());
        let metadata: Result<BTreeMap<String, String>, _> = match option("metadata") {
            Some(value) if !value.is_undefined() && !value.is_null() => {
                serde_wasm_bindgen::from_value(value)
            }
            _ => Ok(BTreeMap::new()),
        };
        let state = Rc::new(RefCell::new(UploadState::default()));
        let upload_state = state.clone();
        let client = self.client.clone();
        let shared = state.clone();
        let done = wasm_bindgen_futures::future_to_promise(async move {
            let report = move |progress: FileProgress| {
                if let (Some(callback), Some(id)) = (&on_progress, shared.borrow().id) {
                    let _ = callback.call1(&JsValue::NULL, &to_js(&ProgressJs::new(id, &progress)));
                }
            };
            let metadata = metadata.map_err(|err| {
                js_error(&UploadError::Companion {
                    status: 400,
                    code: "BadRequest".into(),
                    message: format!("metadata must map names to strings: {err}"),
                })
            })?;
            let handle = client
                .add_with_metadata(file, priority, metadata, report)
                .await
                .map_err(|error| js_error(&error))?;
            let id = handle.id;
            let pending = {
                let mut state = state.borrow_mut();
                state.id = Some(id);
                state.pending.take()
            };
            match pending {
                Some(Pending::Cancel) => client.cancel(id),
                Some(Pending::Pause) => client.pause(id),
                None => {}
            }
            // A listener of its own, so one signal can cancel a whole batch.
            let aborted = signal.map(|signal| {
                let canceller = client.clone();
                let on_abort = Closure::<dyn FnMut()>::new(move || canceller.cancel(id));
                if signal.aborted() {
                    client.cancel(id);
                }
                let _ = signal
                    .add_event_listener_with_callback("abort", on_abort.as_ref().unchecked_ref());
                (signal, on_abort)
            });
            let result = handle.done().await;
            if let Some((signal, on_abort)) = aborted {
                let _ = signal.remove_event_listener_with_callback(
                    "abort",
                    on_abort.as_ref().unchecked_ref(),
                );
            }
            result
                .map(|object| to_js(&object))
                .map_err(|error| js_error(&error))
        });
        Upload {
            client: self.client.clone(),
            state: upload_state,
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
        if !["progress", "part", "retry", "resumed", "complete", "error"].contains(&name.as_str()) {
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
}

/// A command given before the upload had its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Pause,
    Cancel,
}

#[derive(Debug, Default)]
struct UploadState {
    id: Option<FileId>,
    pending: Option<Pending>,
}

/// One file's upload: its outcome and its controls.
#[wasm_bindgen]
pub struct Upload {
    client: Client,
    state: Rc<RefCell<UploadState>>,
    done: js_sys::Promise,
}

#[wasm_bindgen]
impl Upload {
    /// Resolves with the stored object; rejects with a `FerryError`.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> UploadPromise {
        self.done.clone().unchecked_into()
    }

    /// The id that events carry, once the upload is queued (`undefined` before).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> Option<f64> {
        self.state.borrow().id.map(|id| id.0 as f64)
    }

    /// Aborts the running parts and starts no more until `resume()`.
    pub fn pause(&self) {
        self.command(Pending::Pause, Client::pause);
    }

    pub fn resume(&self) {
        let id = {
            let mut state = self.state.borrow_mut();
            if state.pending == Some(Pending::Pause) {
                state.pending = None;
            }
            state.id
        };
        if let Some(id) = id {
            self.client.resume(id);
        }
    }

    /// Ends the upload; the multipart upload is aborted on the store.
    pub fn cancel(&self) {
        self.command(Pending::Cancel, Client::cancel);
    }
}

impl Upload {
    fn command(&self, pending: Pending, run: fn(&Client, FileId)) {
        let id = {
            let mut state = self.state.borrow_mut();
            // A cancel given before the id is never undone by a later pause.
            if state.id.is_none() && state.pending != Some(Pending::Cancel) {
                state.pending = Some(pending);
            }
            state.id
        };
        if let Some(id) = id {
            run(&self.client, id);
        }
    }
}

/// An `Error` of class `FerryError` with the failure's `code`, as JS callers expect.
pub fn js_error(error: &UploadError) -> JsValue {
    FerryError::new(error.code(), &error.to_string()).into()
}
