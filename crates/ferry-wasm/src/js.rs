//! The shapes JavaScript sees: options read from it, and the values and events given to it.
//! Their TypeScript declarations are generated from these types (tsify, from their serde
//! attributes), so the `.d.ts` cannot drift from their fields; the wasm reads and writes them by
//! hand (`FromJson`, `ToJson`, then `crate::json`), and the tests check that the hand-written
//! shapes are the declared ones. Values go out as JSON would write them (`null` for a missing
//! value, numbers for sizes), which the `Option` fields declare.

use ferry_core::json::{Fields, FromJson, Json, Object, ToJson};
use ferry_core::protocol::StoredObject;
use ferry_core::{FileId, Order};
use serde::Serialize;
use tsify::Tsify;

use crate::client::{FileProgress, Rate, SchedulerView, Unfinished};

/// The settings of `createUploader(options)` (with `headers`, which may be a function and is
/// read apart: see `UploaderOptions`).
#[derive(Debug, Default, Serialize, Tsify)]
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

#[derive(Debug, Default, Clone, Copy, Serialize, Tsify)]
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
                kind: checksum.kind.s3_name().to_owned(),
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

impl UploaderSettings {
    /// Every option this reads, by its name in JavaScript: only these are looked at.
    pub const FIELDS: [&str; 9] = [
        "endpoint",
        "slots",
        "adaptive",
        "triggers",
        "perFile",
        "retries",
        "retryDelayMs",
        "partSize",
        "order",
    ];
}

impl FromJson for UploaderSettings {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            endpoint: fields.or_default("endpoint")?,
            slots: fields.optional("slots")?,
            adaptive: fields.optional("adaptive")?,
            triggers: fields.optional("triggers")?,
            per_file: fields.optional("perFile")?,
            retries: fields.optional("retries")?,
            retry_delay_ms: fields.optional("retryDelayMs")?,
            part_size: fields.optional("partSize")?,
            order: fields.or_default("order")?,
        })
    }
}

impl FromJson for UploadOrder {
    fn from_json(json: &Json) -> Result<Self, String> {
        match json.as_str() {
            Some("fifo") => Ok(Self::Fifo),
            Some("smallest-first") => Ok(Self::SmallestFirst),
            _ => Err(format!(
                "unknown order {}, expected \"fifo\" or \"smallest-first\"",
                json.to_text()
            )),
        }
    }
}

impl ToJson for UploadProgress {
    fn to_json(&self) -> Json {
        Object::new()
            .field("id", self.id.to_json())
            .field("loaded", self.loaded.to_json())
            .field("total", self.total.to_json())
            .field("confirmed", self.confirmed.to_json())
            .field("inFlight", self.in_flight.to_json())
            .field("retries", self.retries.to_json())
            .field("fallback", self.fallback.to_json())
            .field("waiting", self.waiting.to_json())
            .field("speed", self.speed.to_json())
            .field("eta", self.eta.to_json())
            .done()
    }
}

impl ToJson for UploadResult {
    fn to_json(&self) -> Json {
        Object::new()
            .field("key", self.key.to_json())
            .field("etag", self.etag.to_json())
            .field("size", self.size.to_json())
            .field("location", self.location.to_json())
            .field("checksum", self.checksum.to_json())
            .done()
    }
}

impl ToJson for UploadChecksum {
    fn to_json(&self) -> Json {
        Object::new()
            .field("algorithm", self.algorithm.to_json())
            .field("type", self.kind.to_json())
            .field("value", self.value.to_json())
            .done()
    }
}

impl ToJson for UploaderStats {
    fn to_json(&self) -> Json {
        Object::new()
            .field("slotsBusy", self.slots_busy.to_json())
            .field("slots", self.slots.to_json())
            .field("queued", self.queued.to_json())
            .field("prepared", self.prepared.to_json())
            .field("companionCalls", self.companion_calls.to_json())
            .field("puts", self.puts.to_json())
            .field("retries", self.retries.to_json())
            .field("joined", self.joined.to_json())
            .field("speed", self.speed.to_json())
            .field("eta", self.eta.to_json())
            .done()
    }
}

impl ToJson for UnfinishedUpload {
    fn to_json(&self) -> Json {
        Object::new()
            .field("id", self.id.to_json())
            .field("name", self.name.to_json())
            .field("size", self.size.to_json())
            .field("confirmed", self.confirmed.to_json())
            .field("age", self.age.to_json())
            .done()
    }
}

impl ToJson for PartEvent {
    fn to_json(&self) -> Json {
        Object::new()
            .field("id", self.id.to_json())
            .field("part", self.part.to_json())
            .field("etag", self.etag.to_json())
            .done()
    }
}

impl ToJson for RetryEvent {
    fn to_json(&self) -> Json {
        Object::new()
            .field("id", self.id.to_json())
            .field("retries", self.retries.to_json())
            .done()
    }
}

impl ToJson for ResumedEvent {
    fn to_json(&self) -> Json {
        Object::new()
            .field("id", self.id.to_json())
            .field("partsKept", self.parts_kept.to_json())
            .done()
    }
}

impl ToJson for WaitingEvent {
    fn to_json(&self) -> Json {
        Object::new()
            .field("id", self.id.to_json())
            .field("waiting", self.waiting.to_json())
            .done()
    }
}

impl ToJson for JoinedEvent {
    fn to_json(&self) -> Json {
        Object::new()
            .field("id", self.id.to_json())
            .field("upload", self.upload.to_json())
            .done()
    }
}

impl ToJson for CompleteEvent {
    fn to_json(&self) -> Json {
        Object::new()
            .field("id", self.id.to_json())
            .field("result", self.result.to_json())
            .done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<UploaderSettings, String> {
        UploaderSettings::from_json(&Json::parse(text).unwrap())
    }

    #[test]
    fn settings_read_every_option_and_refuse_an_unknown_order() {
        let read = settings(
            r#"{"endpoint":"https://c.example","slots":4,"adaptive":false,"triggers":20,"perFile":2,"retries":5,"retryDelayMs":250,"partSize":8388608,"order":"smallest-first","unknown":1}"#,
        )
        .unwrap();
        assert_eq!(read.endpoint, "https://c.example");
        assert_eq!(
            (read.slots, read.per_file, read.triggers),
            (Some(4), Some(2), Some(20))
        );
        assert_eq!(
            (read.adaptive, read.retries, read.retry_delay_ms),
            (Some(false), Some(5), Some(250))
        );
        assert_eq!(read.part_size, Some(8 << 20));
        assert_eq!(Order::from(read.order), Order::SmallestFirst);
        let defaults = settings("{}").unwrap();
        assert_eq!((defaults.endpoint.as_str(), defaults.slots), ("", None));
        assert_eq!(Order::from(defaults.order), Order::Fifo);
        let nulls = settings(r#"{"endpoint":null,"slots":null,"order":null}"#).unwrap();
        assert_eq!((nulls.endpoint.as_str(), nulls.slots), ("", None));
        assert_eq!(
            settings(r#"{"order":"largest-first"}"#).unwrap_err(),
            "`order`: unknown order \"largest-first\", expected \"fifo\" or \"smallest-first\""
        );
        assert_eq!(
            settings(r#"{"slots":2.5}"#).unwrap_err(),
            "`slots`: expected a whole number from 0 to 2^53 - 1"
        );
        assert_eq!(
            settings(r#"{"retries":-1}"#).unwrap_err(),
            "`retries`: expected a whole number from 0 to 2^53 - 1"
        );
        assert_eq!(
            settings(r#"{"adaptive":"yes"}"#).unwrap_err(),
            "`adaptive`: expected true or false"
        );
        assert_eq!(settings("[]").unwrap_err(), "expected an object");
    }

    /// The options read are the ones tsify declares, each by its declared name.
    #[test]
    fn settings_read_every_declared_option_by_its_name() {
        let declared =
            Json::parse(&serde_json::to_string(&UploaderSettings::default()).unwrap()).unwrap();
        let Json::Object(fields) = declared else {
            panic!("settings are an object")
        };
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, UploaderSettings::FIELDS);
        for name in UploaderSettings::FIELDS {
            let wrong = format!(r#"{{"{name}":[]}}"#);
            let err = settings(&wrong).unwrap_err();
            assert!(
                err.starts_with(&format!("`{name}`: ")),
                "{name} is not read: {err}"
            );
        }
    }

    /// The hand-written values are the shapes tsify declares (from the serde attributes):
    /// what serde would write, field for field, in order.
    fn declared_shape(value: &(impl ToJson + Serialize)) {
        let declared = Json::parse(&serde_json::to_string(value).unwrap()).unwrap();
        assert_eq!(value.to_json(), declared);
    }

    #[test]
    fn events_and_values_have_their_declared_shapes() {
        let checksum = UploadChecksum {
            algorithm: "crc32c".into(),
            kind: "FULL_OBJECT".into(),
            value: "AAAAAA==".into(),
        };
        for (eta, checksum) in [(Some(2.5), Some(checksum)), (None, None)] {
            declared_shape(&UploadProgress {
                id: 1.0,
                loaded: 10.0,
                total: 20.0,
                confirmed: 5.0,
                in_flight: 5.0,
                retries: 2,
                fallback: false,
                waiting: true,
                speed: 1234.5,
                eta,
            });
            declared_shape(&UploaderStats {
                slots_busy: 3,
                slots: 5,
                queued: 7,
                prepared: 2,
                companion_calls: 4.0,
                puts: 9.0,
                retries: 1.0,
                joined: 0.0,
                speed: 99.5,
                eta,
            });
            let result = UploadResult {
                key: "uploads/a \"b\".txt".into(),
                etag: "\"e\"".into(),
                size: 20.0,
                location: "/api/files/x".into(),
                checksum,
            };
            declared_shape(&result);
            declared_shape(&CompleteEvent { id: 3.0, result });
        }
        declared_shape(&UnfinishedUpload {
            id: "fp".into(),
            name: "n".into(),
            size: 1.0,
            confirmed: 0.0,
            age: 60.0,
        });
        declared_shape(&PartEvent {
            id: 1.0,
            part: 2,
            etag: "e".into(),
        });
        declared_shape(&RetryEvent {
            id: 1.0,
            retries: 3,
        });
        declared_shape(&ResumedEvent {
            id: 1.0,
            parts_kept: 4,
        });
        declared_shape(&WaitingEvent {
            id: 1.0,
            waiting: false,
        });
        declared_shape(&JoinedEvent {
            id: 1.0,
            upload: 2.0,
        });
    }
}
