//! The shapes JavaScript sees: options read from it, and the values and events given to it.
//! Their TypeScript declarations are generated from these types (tsify), so the `.d.ts` cannot
//! drift from what the code reads and writes. Values go out through [`to_js`], as JSON would
//! write them (`null` for a missing value, numbers for sizes), which the `Option` fields declare.

use ferry_core::ChecksumType;
use ferry_core::protocol::StoredObject;
use ferry_core::{FileId, Order};
use serde::{Deserialize, Serialize};
use tsify::Tsify;
use wasm_bindgen::JsValue;

use crate::client::{FileProgress, Rate, SchedulerView, Unfinished};

/// `value` as a plain JavaScript value, as JSON would write it.
pub fn to_js(value: &impl Serialize) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("plain data serialises")
}

/// The settings of `createUploader(options)` (with `headers`, which may be a function and is
/// read apart: see `UploaderOptions`).
#[derive(Debug, Default, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct UploaderSettings {
    /// Base URL of the companion; "" or omitted for the page's own origin.
    #[serde(default)]
    #[tsify(optional)]
    pub endpoint: String,
    /// Part PUTs at once over all files; by default 5, or 3 while a file over 65 MiB is active,
    /// then following the measured link. Given, it is kept as it is.
    #[tsify(optional)]
    pub slots: Option<usize>,
    /// Whether slots, the per-file cap and the part size of new files follow the measured
    /// goodput (more PUTs while they raise it, fewer on 503s and stalls, up to 6); true by
    /// default, off when `slots` or `partSize` is given.
    #[tsify(optional)]
    pub adaptive: Option<bool>,
    /// Files prepared ahead (fingerprinted, upload created, first URLs signed); 10 by default.
    #[tsify(optional)]
    pub triggers: Option<usize>,
    /// Part PUTs at once for one file; 3 by default.
    #[tsify(optional)]
    pub per_file: Option<usize>,
    /// Retries of a failed part or call; 3 by default.
    #[tsify(optional)]
    pub retries: Option<u32>,
    /// Delay before the first retry, doubled for each next one (with jitter); 1000 by default.
    #[tsify(optional)]
    pub retry_delay_ms: Option<u64>,
    /// Part size asked of the companion for new uploads (raised to the store's rules); the
    /// companion's own by default.
    #[tsify(optional)]
    pub part_size: Option<u64>,
    /// Which queued file goes first among equal priorities: in the order added (default), or
    /// the smallest.
    #[serde(default)]
    #[tsify(optional)]
    pub order: UploadOrder,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Tsify)]
#[serde(rename_all = "kebab-case")]
pub enum UploadOrder {
    #[default]
    Fifo,
    SmallestFirst,
}

impl From<UploadOrder> for Order {
    fn from(order: UploadOrder) -> Self {
        match order {
            UploadOrder::Fifo => Order::Fifo,
            UploadOrder::SmallestFirst => Order::SmallestFirst,
        }
    }
}

/// Progress of one file, in bytes.
#[derive(Debug, Serialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct UploadProgress {
    /// The upload's id, as `Upload.id`.
    pub id: f64,
    /// Bytes sent so far (`confirmed + inFlight`).
    pub loaded: f64,
    /// Size of the file.
    pub total: f64,
    /// Bytes in parts the store has acknowledged; never goes back.
    pub confirmed: f64,
    /// Bytes sent for parts still running; drops when a part fails.
    pub in_flight: f64,
    /// Retries spent so far.
    pub retries: u32,
    /// Whether parts go through the companion because the store cannot be reached.
    pub fallback: bool,
    /// Whether the upload waits out an outage (the store or the companion does not answer).
    pub waiting: bool,
    /// Bytes per second over the last few seconds; 0 until measured.
    pub speed: f64,
    /// Seconds left at that speed; null until measured.
    #[tsify(type = "number | null")]
    pub eta: Option<f64>,
}

impl UploadProgress {
    pub fn new(id: FileId, progress: &FileProgress, rate: Rate) -> Self {
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

/// The stored object.
#[derive(Debug, Serialize, Tsify)]
pub struct UploadResult {
    /// Object key, chosen by the companion.
    pub key: String,
    /// The store's ETag of the object.
    pub etag: String,
    /// Size in bytes.
    pub size: f64,
    /// Where the companion serves the object (a path on the companion, or a signed link).
    pub location: String,
    /// The object's checksum, as the store verified it; `null` with checksums off.
    pub checksum: Option<UploadChecksum>,
}

/// A checksum as S3 states it.
#[derive(Debug, Serialize, Tsify)]
pub struct UploadChecksum {
    #[tsify(type = "\"crc32c\" | \"crc64nvme\" | \"sha256\"")]
    pub algorithm: String,
    /// `FULL_OBJECT`: of the whole object's bytes; `COMPOSITE`: of its parts' checksums.
    #[serde(rename = "type")]
    #[tsify(type = "\"FULL_OBJECT\" | \"COMPOSITE\"")]
    pub kind: String,
    /// Base64 of the digest (`-N` after a composite one of N parts).
    pub value: String,
}

impl From<&StoredObject> for UploadResult {
    fn from(object: &StoredObject) -> Self {
        Self {
            key: object.key.clone(),
            etag: object.etag.clone(),
            size: object.size as f64,
            location: object.location.clone(),
            checksum: object.checksum.as_ref().map(|checksum| UploadChecksum {
                algorithm: checksum.algorithm.name().to_owned(),
                kind: match checksum.kind {
                    ChecksumType::FullObject => "FULL_OBJECT",
                    ChecksumType::Composite => "COMPOSITE",
                }
                .to_owned(),
                value: checksum.value.clone(),
            }),
        }
    }
}

/// What `uploader.stats()` tells about the scheduler.
#[derive(Debug, Serialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct UploaderStats {
    /// Part PUTs running now.
    pub slots_busy: usize,
    /// Part PUTs the slot rule allows now.
    pub slots: usize,
    /// Files waiting for the outer layer.
    pub queued: usize,
    /// Files taken by the outer layer: fingerprinted, created, uploading.
    pub prepared: usize,
    pub companion_calls: f64,
    pub puts: f64,
    pub retries: f64,
    /// Adds that joined an upload of the same file instead of sending it again.
    pub joined: f64,
    /// Bytes per second over every running upload.
    pub speed: f64,
    /// Seconds until the files taken are sent, at that speed; null until measured.
    #[tsify(type = "number | null")]
    pub eta: Option<f64>,
}

impl From<SchedulerView> for UploaderStats {
    fn from(view: SchedulerView) -> Self {
        Self {
            slots_busy: view.running,
            slots: view.slots,
            queued: view.queued,
            prepared: view.live,
            companion_calls: view.companion_calls as f64,
            puts: view.puts as f64,
            retries: view.retries as f64,
            joined: view.joined as f64,
            speed: view.rate.bytes_per_sec,
            eta: view.rate.eta_secs,
        }
    }
}

/// An upload left unfinished (by a closed page, or a failure), as its resume record keeps it.
#[derive(Debug, Serialize, Tsify)]
pub struct UnfinishedUpload {
    /// What `uploader.discard(id)` takes.
    pub id: String,
    pub name: String,
    pub size: f64,
    /// Bytes the store already holds.
    pub confirmed: f64,
    /// Seconds since the record was last written.
    pub age: f64,
}

impl From<Unfinished> for UnfinishedUpload {
    fn from(entry: Unfinished) -> Self {
        Self {
            id: entry.id,
            name: entry.name,
            size: entry.size as f64,
            confirmed: entry.confirmed as f64,
            age: entry.age_secs as f64,
        }
    }
}

/// `part`: a part is stored.
#[derive(Debug, Serialize, Tsify)]
pub struct PartEvent {
    pub id: f64,
    pub part: u32,
    pub etag: String,
}

/// `retry`: a part or call failed and will be tried again.
#[derive(Debug, Serialize, Tsify)]
pub struct RetryEvent {
    pub id: f64,
    pub retries: u32,
}

/// `resumed`: a reloaded upload continued, keeping the parts the store already held.
#[derive(Debug, Serialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct ResumedEvent {
    pub id: f64,
    pub parts_kept: u32,
}

/// `waiting`: the store or the companion stopped answering and the upload waits, spending no
/// retries and probing with capped backoff (`waiting: true`); or it answers again and the upload
/// goes on by itself (`waiting: false`).
#[derive(Debug, Serialize, Tsify)]
pub struct WaitingEvent {
    pub id: f64,
    pub waiting: bool,
}

/// `joined`: the same file is already on its way in this page (upload `upload`); this add
/// shares it.
#[derive(Debug, Serialize, Tsify)]
pub struct JoinedEvent {
    pub id: f64,
    pub upload: f64,
}

/// `complete`: the upload is stored.
#[derive(Debug, Serialize, Tsify)]
pub struct CompleteEvent {
    pub id: f64,
    pub result: UploadResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_every_option_and_refuse_an_unknown_order() {
        let settings: UploaderSettings = serde_json::from_str(
            r#"{"endpoint":"https://c.example","slots":4,"perFile":2,"partSize":8388608,"order":"smallest-first","unknown":1}"#,
        )
        .unwrap();
        assert_eq!(settings.endpoint, "https://c.example");
        assert_eq!((settings.slots, settings.per_file), (Some(4), Some(2)));
        assert_eq!(settings.part_size, Some(8 << 20));
        assert_eq!(Order::from(settings.order), Order::SmallestFirst);
        let defaults: UploaderSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(Order::from(defaults.order), Order::Fifo);
        let err = serde_json::from_str::<UploaderSettings>(r#"{"order":"largest-first"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("largest-first"), "{err}");
    }
}
