//! Ferry in the browser: direct multipart uploads to S3-compatible storage.
//!
//! From JavaScript:
//!
//! ```js
//! import init, { Uploader } from "ferry-wasm";
//! await init();
//! const uploader = new Uploader({ endpoint: "https://companion.example" });
//! const { key, etag, size } = await uploader.upload(file, { onProgress: (p) => console.log(p.loaded / p.total) });
//! ```
//!
//! From Rust (Leptos and other wasm crates), use [`Client`] directly.

mod client;
mod http;
mod resume;
mod xhr;

use ferry_core::UploadError;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

pub use crate::client::{Client, FileProgress, SchedulerView, UploadHandle};
pub use ferry_core::EngineConfig;
pub use ferry_core::FileId;
pub use ferry_core::protocol::StoredObject;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `new Uploader(options)`. */
export interface UploaderOptions {
  /** Base URL of the companion; "" or omitted for the page's own origin. */
  endpoint?: string;
}

/** Progress of one file, in bytes. */
export interface UploadProgress {
  /** Bytes sent so far (`confirmed + inFlight`). */
  loaded: number;
  /** Size of the file. */
  total: number;
  /** Bytes in parts the store has acknowledged; never goes back. */
  confirmed: number;
  /** Bytes sent for parts still running; drops when a part fails. */
  inFlight: number;
}

/** Options of `uploader.upload(file, options)`. */
export interface UploadOptions {
  /** Called as bytes go out. */
  onProgress?: (progress: UploadProgress) => void;
  /** Higher goes first among queued files; 0 by default. */
  priority?: number;
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

/**
 * Every rejection of `upload` is an `Error` with a stable `code`: Ferry's own
 * (`TooLarge`, `TypeNotAllowed`, `CompanionUnreachable`, `NetworkError`, `Cancelled`, ...)
 * or the store's S3 code (`EntityTooSmall`, `AccessDenied`, ...).
 */
export interface FerryError extends Error {
  code: string;
}
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "UploaderOptions")]
    pub type UploaderOptions;
    #[wasm_bindgen(typescript_type = "UploadOptions")]
    pub type UploadOptions;
    #[wasm_bindgen(typescript_type = "Promise<UploadResult>")]
    pub type UploadPromise;
}

#[derive(Debug, Default, Deserialize)]
struct Options {
    #[serde(default)]
    endpoint: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgressJs {
    loaded: f64,
    total: f64,
    confirmed: f64,
    in_flight: f64,
}

/// Uploads files straight to the store through a companion. One uploader schedules all its
/// uploads together; call `.free()` when done with it to release its memory.
#[wasm_bindgen]
pub struct Uploader {
    client: Client,
}

#[wasm_bindgen]
impl Uploader {
    #[wasm_bindgen(constructor)]
    pub fn new(options: Option<UploaderOptions>) -> Result<Uploader, JsError> {
        let options: Options = match options {
            Some(options) if !options.is_undefined() && !options.is_null() => {
                serde_wasm_bindgen::from_value(options.into())
                    .map_err(|err| JsError::new(&format!("bad Uploader options: {err}")))?
            }
            _ => Options::default(),
        };
        Ok(Self {
            client: Client::new(&options.endpoint),
        })
    }

    /// Uploads `file`; resolves with `{ key, etag, size, location }`, rejects with a `FerryError`.
    pub fn upload(&self, file: web_sys::File, options: Option<UploadOptions>) -> UploadPromise {
        let client = self.client.clone();
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
        let promise =
            wasm_bindgen_futures::future_to_promise(async move {
                let report = move |progress: FileProgress| {
                    if let Some(callback) = &on_progress {
                        let value = serde_wasm_bindgen::to_value(&ProgressJs {
                            loaded: progress.loaded() as f64,
                            total: progress.size as f64,
                            confirmed: progress.confirmed as f64,
                            in_flight: progress.in_flight as f64,
                        })
                        .expect("plain numbers serialise");
                        let _ = callback.call1(&JsValue::NULL, &value);
                    }
                };
                let upload = async { client.add(file, priority, report).await?.done().await };
                match upload.await {
                    Ok(object) => Ok(serde_wasm_bindgen::to_value(&object)
                        .expect("strings and numbers serialise")),
                    Err(error) => Err(js_error(&error)),
                }
            });
        promise.unchecked_into()
    }
}

#[wasm_bindgen]
impl Uploader {
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

/// An `Error` with the failure's `code`, as JS callers expect.
pub fn js_error(error: &UploadError) -> JsValue {
    let js = js_sys::Error::new(&error.to_string());
    js.set_name("FerryError");
    let _ = js_sys::Reflect::set(&js, &"code".into(), &error.code().into());
    js.into()
}
