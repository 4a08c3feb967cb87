//! Resume records in `localStorage`: one per file fingerprint, holding the engine's snapshot of
//! its multipart upload. Every failure here (no storage, quota, broken JSON, no WebCrypto) means
//! "no resume", never a failed upload.

use ferry_core::Snapshot;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::File;

/// How much of each end of the file goes into the fingerprint.
const EDGE: f64 = 64.0 * 1024.0;
const PREFIX: &str = "ferry:v1:";

/// Identifies a file across reloads and tabs: name, size, type, lastModified, and a hash of its
/// first and last 64 KiB, so another file with the same name and size is not mistaken for it.
pub async fn fingerprint(file: &File) -> Option<String> {
    let size = file.size();
    let head = digest(&file.slice_with_f64_and_f64(0.0, EDGE.min(size)).ok()?).await?;
    let tail = digest(
        &file
            .slice_with_f64_and_f64((size - EDGE).max(0.0), size)
            .ok()?,
    )
    .await?;
    Some(format!(
        "{PREFIX}{size}:{}:{head}:{tail}:{}:{}",
        file.last_modified(),
        file.type_(),
        file.name()
    ))
}

/// SHA-256 of a blob, by WebCrypto: the bytes stay in JS memory.
async fn digest(blob: &web_sys::Blob) -> Option<String> {
    let buffer = JsFuture::from(blob.array_buffer()).await.ok()?;
    let subtle = web_sys::window()?.crypto().ok()?.subtle();
    let hash = JsFuture::from(
        subtle
            .digest_with_str_and_buffer_source("SHA-256", buffer.unchecked_ref())
            .ok()?,
    )
    .await
    .ok()?;
    let bytes = js_sys::Uint8Array::new(&hash).to_vec();
    Some(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The record for `key`, if there is one that can still be used at `now_secs`. A broken or
/// expired record is removed.
pub fn load(key: &str, now_secs: u64) -> Option<Snapshot> {
    let storage = storage()?;
    let text = storage.get_item(key).ok()??;
    match serde_json::from_str::<Snapshot>(&text) {
        Ok(snapshot) if snapshot.expires_at > now_secs => Some(snapshot),
        _ => {
            let _ = storage.remove_item(key);
            None
        }
    }
}

pub fn save(key: &str, snapshot: &Snapshot) {
    if let (Some(storage), Ok(text)) = (storage(), serde_json::to_string(snapshot)) {
        // A full storage only costs the ability to resume.
        let _ = storage.set_item(key, &text);
    }
}

pub fn remove(key: &str) {
    if let Some(storage) = storage() {
        let _ = storage.remove_item(key);
    }
}

/// Every record, for a banner that lists unfinished uploads: `(key, file name)`.
pub fn unfinished() -> Vec<(String, String)> {
    let Some(storage) = storage() else {
        return Vec::new();
    };
    let count = storage.length().unwrap_or(0);
    (0..count)
        .filter_map(|index| storage.key(index).ok().flatten())
        .filter(|key| key.starts_with(PREFIX))
        .map(|key| {
            let name = key.splitn(8, ':').nth(7).unwrap_or_default().to_owned();
            (key, name)
        })
        .collect()
}

/// Where aborts that could not reach the companion wait to be sent again.
const DEFERRED_ABORTS: &str = "ferry:aborts";

fn write_deferred(urls: &[String]) {
    let Some(storage) = storage() else {
        return;
    };
    if urls.is_empty() {
        let _ = storage.remove_item(DEFERRED_ABORTS);
    } else if let Ok(text) = serde_json::to_string(urls) {
        let _ = storage.set_item(DEFERRED_ABORTS, &text);
    }
}

/// The abort calls (their URLs, which carry the upload token) still to be sent.
pub fn deferred_aborts() -> Vec<String> {
    storage()
        .and_then(|storage| storage.get_item(DEFERRED_ABORTS).ok()?)
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Keeps an abort to send again later.
pub fn defer_abort(url: &str) {
    let mut urls = deferred_aborts();
    if !urls.iter().any(|kept| kept == url) {
        urls.push(url.to_owned());
        write_deferred(&urls);
    }
}

/// An abort went through, or can never: it is not sent again.
pub fn forget_abort(url: &str) {
    let urls = deferred_aborts();
    if urls.iter().any(|kept| kept == url) {
        write_deferred(
            &urls
                .into_iter()
                .filter(|kept| kept != url)
                .collect::<Vec<_>>(),
        );
    }
}
