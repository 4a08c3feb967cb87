//! Resume records in `localStorage`: one per file fingerprint, holding the engine's snapshot of
//! its multipart upload (or, for a while after it was stored, its object, for another tab that
//! waited to upload the same file). Every failure here (no storage, quota, broken JSON, no
//! WebCrypto) means "no resume", never a failed upload.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::rc::Rc;

use ferry_core::json::{Fields, FromJson, Object, ToJson};
use ferry_core::protocol::StoredObject;
use ferry_core::{Claim, Snapshot};
use futures_channel::oneshot;
use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
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
    // Whole numbers as integers: the text an f64's Display gave them, without its formatter.
    Some(format!(
        "{PREFIX}{}:{}:{head}:{tail}:{}:{}",
        size as u64,
        file.last_modified() as i64,
        file.type_(),
        file.name()
    ))
}

/// Whether `key` is a fingerprint of a file's bytes (made by [`fingerprint`]), the only kind of
/// name that may hold a lock or a record across pages.
pub fn is_fingerprint(key: &str) -> bool {
    key.starts_with(PREFIX)
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

/// How long a finished upload's record stays, for a tab that waited for this one.
const STORED_RECORD_SECS: u64 = 3_600;

/// What `localStorage` keeps under a file's fingerprint: `{ stored, expiresAt }`, or the
/// snapshot's fields with `savedAt`.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// The file was stored: a tab that waited for the one uploading it takes the result.
    Stored {
        stored: StoredObject,
        expires_at: u64,
    },
    /// A multipart upload to continue, and when it was written (Unix seconds; 0 in records
    /// written before it was kept).
    Uploading { snapshot: Snapshot, saved_at: u64 },
}

impl Record {
    /// Reads a record; a broken or expired one is none. Both shapes have `expiresAt`, only a
    /// stored one `stored`.
    pub fn parse(text: &str, now_secs: u64) -> Option<Self> {
        let json = crate::json::parse(text).ok()?;
        let fields = Fields::of(&json).ok()?;
        let expires_at: u64 = fields.required("expiresAt").ok()?;
        if expires_at <= now_secs {
            return None;
        }
        Some(match fields.optional("stored").ok()? {
            Some(stored) => Record::Stored { stored, expires_at },
            None => Record::Uploading {
                snapshot: Snapshot::from_json(&json).ok()?,
                saved_at: fields.or_default("savedAt").ok()?,
            },
        })
    }

    fn to_text(&self) -> String {
        match self {
            Record::Stored { stored, expires_at } => Object::new()
                .field("stored", stored.to_json())
                .field("expiresAt", expires_at.to_json()),
            Record::Uploading { snapshot, saved_at } => {
                snapshot.json_fields().field("savedAt", saved_at.to_json())
            }
        }
        .done()
        .to_text()
    }

    /// What a tab that took the fingerprint's lock continues from: a record left by a tab it
    /// waited for (stored, or an upload that tab left unfinished by closing), or its own
    /// unfinished upload. A stored record it did not wait for is from an earlier visit: the
    /// file is uploaded again.
    pub fn claim(record: Option<Self>, waited: bool) -> Claim {
        match record {
            Some(Record::Stored { stored, .. }) if waited => Claim::Stored(stored),
            Some(Record::Uploading { snapshot, .. }) => Claim::Resume(snapshot),
            _ => Claim::Fresh,
        }
    }
}

/// The record under `key`, if there is one that can still be used at `now_secs`. A broken or
/// expired record is removed.
pub fn load(key: &str, now_secs: u64) -> Option<Record> {
    let storage = storage()?;
    let text = storage.get_item(key).ok()??;
    let record = Record::parse(&text, now_secs);
    if record.is_none() {
        let _ = storage.remove_item(key);
    }
    record
}

fn write(key: &str, record: &Record) {
    if let Some(storage) = storage() {
        let text = record.to_text();
        // A full storage only costs the ability to resume.
        let _ = storage.set_item(key, &text);
    }
}

/// Keeps the upload's snapshot, to continue it after a reload.
pub fn save(key: &str, snapshot: &Snapshot, now_secs: u64) {
    let record = Record::Uploading {
        snapshot: snapshot.clone(),
        saved_at: now_secs,
    };
    write(key, &record);
}

/// Keeps the stored object for a while, for a tab waiting to upload the same file.
pub fn save_stored(key: &str, object: &StoredObject, now_secs: u64) {
    let record = Record::Stored {
        stored: object.clone(),
        expires_at: now_secs + STORED_RECORD_SECS,
    };
    write(key, &record);
}

/// How long a tab that waited for another tab's lock gives that tab's stored object to arrive.
const HANDOFF_MS: u32 = 2_000;

/// After waiting for another tab's lock on `key`: resolves once this tab sees that tab's stored
/// object, or after [`HANDOFF_MS`]. Each tab reads its own copy of `localStorage`, which Chromium
/// updates after the write and independently of the lock, so the lock can come first. A tab that
/// crashed or failed stores nothing, and its upload is resumed after the wait.
pub async fn await_stored(key: &str) {
    if is_stored(key) {
        return;
    }
    let Some(window) = web_sys::window() else {
        return;
    };
    let (arrived, wait) = oneshot::channel::<()>();
    let arrived = Rc::new(RefCell::new(Some(arrived)));
    let _on_change = {
        let (arrived, key) = (arrived.clone(), key.to_owned());
        EventListener::new(&window, "storage", move |event| {
            let changed = js_sys::Reflect::get(event, &"key".into()).ok();
            if changed.and_then(|changed| changed.as_string()).as_deref() == Some(key.as_str())
                && is_stored(&key)
            {
                arrived.borrow_mut().take().map(|arrived| arrived.send(()));
            }
        })
    };
    let _deadline = Timeout::new(HANDOFF_MS, move || {
        arrived.borrow_mut().take().map(|arrived| arrived.send(()));
    });
    let _ = wait.await;
}

fn is_stored(key: &str) -> bool {
    matches!(
        load(key, crate::driver::now_secs()),
        Some(Record::Stored { .. })
    )
}

pub fn remove(key: &str) {
    if let Some(storage) = storage() {
        let _ = storage.remove_item(key);
    }
}

/// An unfinished upload a resume record keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The record's key: what `discard` takes.
    pub id: String,
    pub name: String,
    pub size: u64,
    /// Bytes in parts the store confirmed.
    pub confirmed: u64,
    /// Seconds since the record was last written (0 when unknown).
    pub age_secs: u64,
}

impl Unfinished {
    /// The entry for the record `text` under `key`, if it is an unfinished upload.
    pub fn from_record(key: &str, text: &str, now_secs: u64) -> Option<Self> {
        let Some(Record::Uploading { snapshot, saved_at }) = Record::parse(text, now_secs) else {
            return None;
        };
        // `ferry:v1:{size}:{lastModified}:{head}:{tail}:{type}:{name}`; the name may hold `:`.
        let (size, mut rest) = key.strip_prefix(PREFIX)?.split_once(':')?;
        for _ in 0..4 {
            rest = rest.split_once(':')?.1;
        }
        Some(Self {
            id: key.to_owned(),
            name: rest.to_owned(),
            size: size.parse().ok()?,
            confirmed: snapshot.parts.iter().map(|part| part.size).sum(),
            age_secs: if saved_at == 0 {
                0
            } else {
                now_secs.saturating_sub(saved_at)
            },
        })
    }
}

/// Every unfinished upload a record keeps, oldest first.
pub fn unfinished(now_secs: u64) -> Vec<Unfinished> {
    let Some(storage) = storage() else {
        return Vec::new();
    };
    let count = storage.length().unwrap_or(0);
    let mut found: Vec<Unfinished> = Vec::new();
    for key in (0..count).filter_map(|index| storage.key(index).ok().flatten()) {
        if !key.starts_with(PREFIX) {
            continue;
        }
        let Some(text) = storage.get_item(&key).ok().flatten() else {
            continue;
        };
        if let Some(entry) = Unfinished::from_record(&key, &text, now_secs) {
            insert_oldest_first(&mut found, entry);
        }
    }
    found
}

/// Puts `entry` in its place among `found`: oldest first, then by key. Inserted rather than
/// sorted: a page keeps a handful of records, and a sort would be code of its own in the wasm.
fn insert_oldest_first(found: &mut Vec<Unfinished>, entry: Unfinished) {
    fn order(entry: &Unfinished) -> (Reverse<u64>, &str) {
        (Reverse(entry.age_secs), &entry.id)
    }
    let at = found.partition_point(|kept| order(kept) <= order(&entry));
    found.insert(at, entry);
}

/// Where aborts that could not reach the companion wait to be sent again.
const DEFERRED_ABORTS: &str = "ferry:aborts";

fn write_deferred(urls: &[String]) {
    let Some(storage) = storage() else {
        return;
    };
    if urls.is_empty() {
        let _ = storage.remove_item(DEFERRED_ABORTS);
    } else {
        let _ = storage.set_item(DEFERRED_ABORTS, &urls.to_json().to_text());
    }
}

/// The abort calls (their URLs, which carry the upload token) still to be sent.
pub fn deferred_aborts() -> Vec<String> {
    storage()
        .and_then(|storage| storage.get_item(DEFERRED_ABORTS).ok()?)
        .and_then(|text| crate::json::read(&text).ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::protocol::StoredPart;

    fn snapshot(expires_at: u64) -> Snapshot {
        Snapshot {
            checksum: None,
            upload_id: "u".into(),
            key: "k".into(),
            token: "t".into(),
            location: "/api/files/k".into(),
            part_size: 5 << 20,
            part_count: 3,
            expires_at,
            parts: vec![
                StoredPart {
                    checksum: None,
                    part: 1,
                    size: 5 << 20,
                    etag: "\"a\"".into(),
                },
                StoredPart {
                    checksum: None,
                    part: 2,
                    size: 5 << 20,
                    etag: "\"b\"".into(),
                },
            ],
        }
    }

    const KEY: &str = "ferry:v1:15728640:1700000000000:aa:bb:video/mp4:holiday: day 1.mp4";

    #[test]
    fn records_written_before_saved_at_still_resume() {
        let old = serde_json::to_string(&snapshot(2_000)).unwrap();
        assert_eq!(
            Record::parse(&old, 1_000),
            Some(Record::Uploading {
                snapshot: snapshot(2_000),
                saved_at: 0
            })
        );
        assert_eq!(Record::parse(&old, 2_000), None, "expired");
        for broken in ["", "{", "null", "[]", "{\"uploadId\": 3}"] {
            assert_eq!(Record::parse(broken, 0), None, "{broken:?}");
        }
    }

    #[test]
    fn a_stored_record_answers_only_a_tab_that_waited() {
        let object = StoredObject {
            checksum: None,
            key: "k".into(),
            etag: "\"e-3\"".into(),
            size: 15 << 20,
            location: "/api/files/k".into(),
        };
        let stored = Record::Stored {
            stored: object.clone(),
            expires_at: 5_000,
        };
        let text = stored.to_text();
        assert_eq!(
            text,
            r#"{"stored":{"key":"k","etag":"\"e-3\"","size":15728640,"location":"/api/files/k","checksum":null},"expiresAt":5000}"#
        );
        let read = Record::parse(&text, 1_000);
        assert_eq!(read, Some(stored.clone()));
        assert_eq!(Record::claim(read, true), Claim::Stored(object));
        assert_eq!(Record::claim(Some(stored), false), Claim::Fresh);
        let uploading = Record::Uploading {
            snapshot: snapshot(2_000),
            saved_at: 10,
        };
        assert_eq!(
            Record::claim(Some(uploading), false),
            Claim::Resume(snapshot(2_000))
        );
        assert_eq!(Record::claim(None, true), Claim::Fresh);
    }

    #[test]
    fn unfinished_uploads_are_listed_oldest_first_then_by_key() {
        let entry = |id: &str, age_secs| Unfinished {
            id: id.into(),
            name: String::new(),
            size: 0,
            confirmed: 0,
            age_secs,
        };
        let given = [
            entry("b", 5),
            entry("a", 60),
            entry("c", 5),
            entry("a2", 5),
            entry("z", 0),
            entry("m", 60),
        ];
        let mut found = Vec::new();
        for entry in given {
            insert_oldest_first(&mut found, entry);
        }
        let ids: Vec<&str> = found.iter().map(|entry| entry.id.as_str()).collect();
        assert_eq!(ids, ["a", "m", "a2", "b", "c", "z"]);
    }

    #[test]
    fn unfinished_uploads_name_their_file_and_bytes() {
        let record = Record::Uploading {
            snapshot: snapshot(9_000),
            saved_at: 1_000,
        };
        let text = record.to_text();
        // As serde wrote it before: the snapshot's fields, then `savedAt`.
        let snapshot_text = serde_json::to_string(&snapshot(9_000)).unwrap();
        let earlier = format!("{},\"savedAt\":1000}}", snapshot_text.trim_end_matches('}'));
        assert_eq!(text, earlier);
        assert_eq!(Record::parse(&text, 1_600), Some(record));
        let entry = Unfinished::from_record(KEY, &text, 1_600).unwrap();
        assert_eq!(
            entry,
            Unfinished {
                id: KEY.into(),
                name: "holiday: day 1.mp4".into(),
                size: 15 << 20,
                confirmed: 10 << 20,
                age_secs: 600,
            }
        );
        let stored = Record::Stored {
            stored: StoredObject {
                checksum: None,
                key: "k".into(),
                etag: String::new(),
                size: 1,
                location: String::new(),
            },
            expires_at: 9_000,
        };
        let text = stored.to_text();
        assert_eq!(
            Unfinished::from_record(KEY, &text, 1_600),
            None,
            "stored is finished"
        );
    }
}
