//! Ferry for Leptos pages: an upload as signals.
//!
//! ```ignore
//! use ferry_wasm::{Client, leptos::use_upload};
//! use leptos::prelude::*;
//!
//! #[component]
//! fn Upload(client: StoredValue<Client, LocalStorage>, file: SendWrapper<web_sys::File>) -> impl IntoView {
//!     let upload = use_upload(&client.get_value(), file.take(), 0);
//!     view! {
//!         <progress max="1" value=move || upload.progress.get().map_or(0.0, |p| p.loaded() as f64 / p.size.max(1) as f64) />
//!         {move || match upload.outcome.get() {
//!             Some(Ok(object)) => format!("stored as {}", object.key),
//!             Some(Err(error)) => format!("failed: {error} ({})", error.code()),
//!             None => "uploading".into(),
//!         }}
//!     }
//! }
//! ```

use leptos::prelude::*;
use leptos::task::spawn_local;
use web_sys::File;

use crate::client::AddOptions;
use crate::{Client, FileId, FileProgress, Rate, StoredObject};
use ferry_core::UploadError;

/// One upload's state, as signals a view can read.
#[derive(Debug, Clone, Copy)]
pub struct UploadSignals {
    /// The scheduler's id, for [`Client::pause`], [`Client::resume`] and [`Client::cancel`].
    pub id: ReadSignal<Option<FileId>>,
    /// Bytes confirmed and in flight, retries, state.
    pub progress: ReadSignal<Option<FileProgress>>,
    /// Speed and time left, measured by the client.
    pub rate: ReadSignal<Rate>,
    /// `None` until the upload ends.
    pub outcome: ReadSignal<Option<Result<StoredObject, UploadError>>>,
}

/// Queues `file` on `client` (whose scheduler it shares with every other upload of that client)
/// and returns its state as signals.
pub fn use_upload(client: &Client, file: File, priority: i32) -> UploadSignals {
    let (progress, set_progress) = signal(None);
    let (rate, set_rate) = signal(Rate::default());
    let (outcome, set_outcome) = signal(None);
    let on_progress = move |update: FileProgress, measured: Rate| {
        set_progress.set(Some(update));
        set_rate.set(measured);
    };
    let options = AddOptions {
        priority,
        ..AddOptions::default()
    };
    let handle = client.add(file, options, on_progress);
    let (id, _) = signal(Some(handle.id));
    spawn_local(async move { set_outcome.set(Some(handle.done().await)) });
    UploadSignals {
        id,
        progress,
        rate,
        outcome,
    }
}
