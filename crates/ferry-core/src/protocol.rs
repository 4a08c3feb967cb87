//! The companion's JSON API, shared by the companion and every client. Field names are camelCase
//! on the wire. Times are Unix seconds.

use serde::{Deserialize, Serialize};

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::json::{Fields, FromJson, Json, Object, ToJson};
use crate::plan::{StoreLimits, UploadMode};
use crate::sorted::SortedMap;

/// `GET /api/config`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanionConfig {
    pub limits: StoreLimits,
    /// Part size the companion aims for before the store's rules raise it.
    pub preferred_part_size: u64,
    /// Largest file the companion accepts.
    pub max_file_size: u64,
    /// Content types the companion accepts; empty means any.
    pub allowed_types: Vec<String>,
    /// How long a presigned URL lives.
    pub url_lifetime_secs: u64,
    /// Whether single PUTs and Completes carry `If-None-Match: *`, so the store refuses to
    /// overwrite a finished object (the companion's signed headers take care of it).
    #[serde(default)]
    pub conditional_writes: bool,
    /// Whether the companion acts on every finished upload (previews, a webhook): single PUTs
    /// then end with a Complete too ([`complete_path`]), so it learns of them.
    #[serde(default)]
    pub complete_single_puts: bool,
    /// Whether the companion makes previews (`GET /api/files/{key}/preview`) of stored images
    /// and videos.
    #[serde(default)]
    pub previews: bool,
    /// The checksum every part and object carries, verified by the store (`None`: off). The
    /// client hashes each part before it is signed: the value is part of the signature.
    #[serde(default)]
    pub checksum: Option<ChecksumAlgorithm>,
    /// Most files one `POST /api/uploads/batch` may create ([`CreateUploads`]); 0 when the
    /// companion has no such route.
    #[serde(default)]
    pub create_batch: u32,
}

/// Where a Complete goes: a multipart upload's own route, or the single-PUT one.
pub fn complete_path(upload_id: Option<&str>) -> String {
    match upload_id {
        Some(upload_id) => format!("/api/uploads/{upload_id}/complete"),
        None => COMPLETE_SINGLE_PATH.to_owned(),
    }
}

/// `POST`: a single PUT is stored (same body as a multipart Complete, no parts needed).
pub const COMPLETE_SINGLE_PATH: &str = "/api/objects/complete";

/// `POST /api/uploads`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateUpload {
    pub name: String,
    pub size: u64,
    #[serde(rename = "type", default)]
    pub content_type: String,
    #[serde(default)]
    pub last_modified: Option<f64>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The client's preferred part size; the companion raises it to the store's rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    /// User metadata stored with the object (`x-amz-meta-*`).
    #[serde(default, skip_serializing_if = "SortedMap::is_empty")]
    pub metadata: SortedMap<String, String>,
    /// A single PUT's checksum (of the whole file, by the companion's algorithm): its URL
    /// binds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The client can send a small file as a presigned POST form ([`SignedUrl::form`]): a
    /// browser's form upload needs no CORS preflight. The companion answers one only where its
    /// store takes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub form: bool,
}

/// `POST /api/uploads/batch`: files of one part each, created and their PUTs signed in one call
/// (a small file then costs one companion call shared with many, and its PUT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateUploads {
    pub files: Vec<CreateUpload>,
}

/// The answer to [`CreateUploads`]: one per file, in their order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadsCreated {
    pub uploads: Vec<BatchCreated>,
}

/// A file of a batch: created, or refused as a create of its own would have been; one refused
/// file fails no other. Tagged (`{"created": ..}` or `{"refused": ..}`): told apart by its
/// name, not by trying each shape, which would put serde's buffering of any value in the wasm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BatchCreated {
    Created(UploadCreated),
    Refused(BatchRefusal),
}

/// Why a file of a batch was refused: the status and body its own create would have answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRefusal {
    pub status: u16,
    /// As in [`ErrorBody`].
    pub code: String,
    pub message: String,
}

impl From<BatchRefusal> for crate::retry::Failure {
    fn from(refusal: BatchRefusal) -> Self {
        Self {
            status: Some(refusal.status),
            code: refusal.code,
            message: refusal.message,
            retry_after: None,
        }
    }
}

/// The answer to [`CreateUpload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadCreated {
    /// The multipart upload id; `None` for a single PUT.
    pub upload_id: Option<String>,
    /// The object key the companion chose.
    pub key: String,
    /// The signed upload token every later call carries.
    pub token: String,
    pub part_size: u64,
    pub part_count: u32,
    pub mode: UploadMode,
    /// The presigned PUT of a single-PUT upload.
    pub url: Option<SignedUrl>,
    /// When the token stops being accepted.
    pub expires_at: u64,
    /// Where the companion will serve the object once it is stored.
    pub location: String,
}

/// A presigned request the browser sends as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedUrl {
    pub url: String,
    /// Headers the signature covers; the request must send them unchanged.
    #[serde(default)]
    pub headers: SortedMap<String, String>,
    /// When the URL stops working, by the companion's clock (Unix seconds).
    pub expires_at: u64,
    /// How long the URL lives from when it was signed, in seconds: clients count from receipt,
    /// so a client clock that disagrees with the companion's does not matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// A POST form's fields, sent before the file's bytes (the `file` field): when there are
    /// any, the request is `POST url` with a `multipart/form-data` body, not a PUT.
    #[serde(default, skip_serializing_if = "SortedMap::is_empty")]
    pub form: SortedMap<String, String>,
}

impl SignedUrl {
    pub fn is_form(&self) -> bool {
        !self.form.is_empty()
    }
}

/// `POST /api/uploads/{id}/sign`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignParts {
    pub token: String,
    pub parts: Vec<u32>,
    /// Each part's checksum, in the order of `parts`, when the companion asks for checksums:
    /// each URL binds its part's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<String>,
}

/// A part's signed request: `{ "part": 1, "url": .., "headers": .., .. }`, the part number
/// beside the fields of its [`SignedUrl`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedPart {
    pub part: u32,
    #[serde(flatten)]
    pub url: SignedUrl,
}

/// The answer to [`SignParts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartsSigned {
    pub urls: Vec<SignedPart>,
}

/// A part the store holds, as ListParts reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPart {
    pub part: u32,
    pub size: u64,
    pub etag: String,
    /// The part's checksum, by the upload's algorithm, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// The answer to a part or object sent through the companion (the fallback route for stores
/// whose CORS rule cannot be set): the ETag the store gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    pub etag: String,
}

/// `GET /api/uploads/{id}/parts`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartList {
    pub parts: Vec<StoredPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedPart {
    pub part: u32,
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// `POST /api/uploads/{id}/complete`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteUpload {
    pub token: String,
    pub parts: Vec<CompletedPart>,
    /// The object's checksum the client computed from its parts': the store refuses to
    /// complete an object that has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
}

/// The stored object: the answer to [`CompleteUpload`] and the result of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredObject {
    pub key: String,
    pub etag: String,
    pub size: u64,
    /// Where the companion serves the object (`/api/files/{key}`).
    pub location: String,
    /// The object's checksum, as the store verified it; `None` with checksums off.
    #[serde(default)]
    pub checksum: Option<Checksum>,
}

/// Every error answer of the companion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// A stable code: Ferry's own (`TooLarge`, `BadToken`, ...) or the store's S3 code.
    pub code: String,
    pub message: String,
}

// How the wasm reads and writes these (`crate::json`): by hand, as serde does natively.

impl FromJson for CompanionConfig {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            limits: fields.required("limits")?,
            preferred_part_size: fields.required("preferredPartSize")?,
            max_file_size: fields.required("maxFileSize")?,
            allowed_types: fields.required("allowedTypes")?,
            url_lifetime_secs: fields.required("urlLifetimeSecs")?,
            conditional_writes: fields.or_default("conditionalWrites")?,
            complete_single_puts: fields.or_default("completeSinglePuts")?,
            previews: fields.or_default("previews")?,
            checksum: fields.optional("checksum")?,
            create_batch: fields.or_default("createBatch")?,
        })
    }
}

impl ToJson for CreateUpload {
    fn to_json(&self) -> Json {
        Object::new()
            .field("name", self.name.to_json())
            .field("size", self.size.to_json())
            .field("type", self.content_type.to_json())
            .field("lastModified", self.last_modified.to_json())
            .field("fingerprint", self.fingerprint.to_json())
            .some("partSize", self.part_size.map(|size| size.to_json()))
            .some(
                "metadata",
                (!self.metadata.is_empty()).then(|| self.metadata.to_json()),
            )
            .some("checksum", self.checksum.as_ref().map(ToJson::to_json))
            .some("form", self.form.then_some(Json::Bool(true)))
            .done()
    }
}

impl ToJson for CreateUploads {
    fn to_json(&self) -> Json {
        Object::new().field("files", self.files.to_json()).done()
    }
}

impl FromJson for UploadsCreated {
    fn from_json(json: &Json) -> Result<Self, String> {
        Ok(Self {
            uploads: Fields::of(json)?.required("uploads")?,
        })
    }
}

impl FromJson for BatchCreated {
    /// `{"created": ..}` or `{"refused": ..}`, as serde tags the variants.
    fn from_json(json: &Json) -> Result<Self, String> {
        match json {
            Json::Object(fields) if fields.len() == 1 => {
                let (tag, value) = &fields[0];
                match tag.as_str() {
                    "created" => UploadCreated::from_json(value).map(Self::Created),
                    "refused" => BatchRefusal::from_json(value).map(Self::Refused),
                    _ => Err(format!("unknown variant `{tag}`")),
                }
            }
            _ => Err("expected {\"created\": ..} or {\"refused\": ..}".into()),
        }
    }
}

impl FromJson for BatchRefusal {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            status: fields.required("status")?,
            code: fields.required("code")?,
            message: fields.required("message")?,
        })
    }
}

impl FromJson for UploadCreated {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            upload_id: fields.optional("uploadId")?,
            key: fields.required("key")?,
            token: fields.required("token")?,
            part_size: fields.required("partSize")?,
            part_count: fields.required("partCount")?,
            mode: fields.required("mode")?,
            url: fields.optional("url")?,
            expires_at: fields.required("expiresAt")?,
            location: fields.required("location")?,
        })
    }
}

impl FromJson for SignedUrl {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            url: fields.required("url")?,
            headers: fields.or_default("headers")?,
            expires_at: fields.required("expiresAt")?,
            expires_in: fields.optional("expiresIn")?,
            form: fields.or_default("form")?,
        })
    }
}

impl ToJson for SignParts {
    fn to_json(&self) -> Json {
        Object::new()
            .field("token", self.token.to_json())
            .field("parts", self.parts.to_json())
            .some(
                "checksums",
                (!self.checksums.is_empty()).then(|| self.checksums.to_json()),
            )
            .done()
    }
}

impl FromJson for SignedPart {
    /// The part's number beside its URL's fields.
    fn from_json(json: &Json) -> Result<Self, String> {
        Ok(Self {
            part: Fields::of(json)?.required("part")?,
            url: SignedUrl::from_json(json)?,
        })
    }
}

impl FromJson for PartsSigned {
    fn from_json(json: &Json) -> Result<Self, String> {
        Ok(Self {
            urls: Fields::of(json)?.required("urls")?,
        })
    }
}

impl FromJson for StoredPart {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            part: fields.required("part")?,
            size: fields.required("size")?,
            etag: fields.required("etag")?,
            checksum: fields.optional("checksum")?,
        })
    }
}

impl ToJson for StoredPart {
    fn to_json(&self) -> Json {
        Object::new()
            .field("part", self.part.to_json())
            .field("size", self.size.to_json())
            .field("etag", self.etag.to_json())
            .some("checksum", self.checksum.as_ref().map(ToJson::to_json))
            .done()
    }
}

impl FromJson for Relayed {
    fn from_json(json: &Json) -> Result<Self, String> {
        Ok(Self {
            etag: Fields::of(json)?.required("etag")?,
        })
    }
}

impl FromJson for PartList {
    fn from_json(json: &Json) -> Result<Self, String> {
        Ok(Self {
            parts: Fields::of(json)?.required("parts")?,
        })
    }
}

impl ToJson for CompletedPart {
    fn to_json(&self) -> Json {
        Object::new()
            .field("part", self.part.to_json())
            .field("etag", self.etag.to_json())
            .some("checksum", self.checksum.as_ref().map(ToJson::to_json))
            .done()
    }
}

impl ToJson for CompleteUpload {
    fn to_json(&self) -> Json {
        Object::new()
            .field("token", self.token.to_json())
            .field("parts", self.parts.to_json())
            .some("checksum", self.checksum.as_ref().map(ToJson::to_json))
            .done()
    }
}

impl FromJson for StoredObject {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            key: fields.required("key")?,
            etag: fields.required("etag")?,
            size: fields.required("size")?,
            location: fields.required("location")?,
            checksum: fields.optional("checksum")?,
        })
    }
}

impl ToJson for StoredObject {
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

impl FromJson for ErrorBody {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            code: fields.required("code")?,
            message: fields.required("message")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::checksum::ChecksumType;
    use crate::engine::Snapshot;
    use crate::json::tests::{as_numbers, reads_what_serde_writes, writes_what_serde_writes};
    use crate::plan::StoreLimits;

    fn signed(part: u32, form: bool) -> SignedPart {
        SignedPart {
            part,
            url: SignedUrl {
                url: format!("https://store/b/k?partNumber={part}&x=\"é\""),
                headers: SortedMap::from([("x-amz-checksum-crc32c".into(), "AAAAAA==".into())]),
                expires_at: 1_700_000_000,
                expires_in: part.is_multiple_of(2).then_some(900),
                form: if form {
                    SortedMap::from([
                        ("key".into(), "u/k".into()),
                        ("policy".into(), "e30=".into()),
                    ])
                } else {
                    SortedMap::new()
                },
            },
        }
    }

    fn checksum() -> Checksum {
        Checksum {
            algorithm: ChecksumAlgorithm::Sha256,
            kind: ChecksumType::Composite,
            value: "qUiQTy8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc=-3".into(),
        }
    }

    fn created(multipart: bool) -> UploadCreated {
        UploadCreated {
            upload_id: multipart.then(|| "upload \u{1} id".into()),
            key: "uploads/2026/ü.bin".into(),
            token: "t.o.k".into(),
            part_size: 8 * 1024 * 1024,
            part_count: if multipart { 3 } else { 1 },
            mode: if multipart {
                UploadMode::Multipart
            } else {
                UploadMode::Single
            },
            url: (!multipart).then(|| signed(1, true).url),
            expires_at: 1_800_000_000,
            location: "/api/files/uploads/2026/%C3%BC.bin".into(),
        }
    }

    /// Every answer the wasm reads, as the companion's serde writes it, in each shape.
    #[test]
    fn the_wasm_reads_every_answer_as_the_companion_writes_it() {
        for checksum in [None, Some(ChecksumAlgorithm::Crc64nvme)] {
            reads_what_serde_writes(&CompanionConfig {
                limits: StoreLimits::S3,
                preferred_part_size: 512 * 1024,
                max_file_size: 5 << 40,
                allowed_types: vec!["image/*".into(), "video/mp4".into()],
                url_lifetime_secs: 900,
                conditional_writes: checksum.is_some(),
                complete_single_puts: checksum.is_none(),
                previews: true,
                checksum,
                create_batch: 100,
            });
        }
        reads_what_serde_writes(&created(true));
        reads_what_serde_writes(&created(false));
        reads_what_serde_writes(&UploadsCreated {
            uploads: vec![
                BatchCreated::Created(created(false)),
                BatchCreated::Refused(BatchRefusal {
                    status: 415,
                    code: "TypeNotAllowed".into(),
                    message: "no \"exe\"".into(),
                }),
            ],
        });
        reads_what_serde_writes(&PartsSigned {
            urls: vec![signed(1, false), signed(2, false), signed(3, true)],
        });
        let parts = vec![
            StoredPart {
                part: 1,
                size: 5 << 20,
                etag: "\"e1\"".into(),
                checksum: Some("AAAAAA==".into()),
            },
            StoredPart {
                part: 2,
                size: 7,
                etag: "\"e2\"".into(),
                checksum: None,
            },
        ];
        reads_what_serde_writes(&PartList {
            parts: parts.clone(),
        });
        reads_what_serde_writes(&Relayed {
            etag: "\"abc\"".into(),
        });
        for checksum in [None, Some(checksum())] {
            let object = StoredObject {
                key: "k".into(),
                etag: "\"e-3\"".into(),
                size: 9_007_199_254_740_991,
                location: "/api/files/k".into(),
                checksum,
            };
            reads_what_serde_writes(&object);
            writes_what_serde_writes(&object);
        }
        reads_what_serde_writes(&ErrorBody {
            code: "BadToken".into(),
            message: "expired".into(),
        });
        for checksum in [None, Some(ChecksumAlgorithm::Crc32c)] {
            let snapshot = Snapshot {
                upload_id: "u".into(),
                key: "k".into(),
                token: "t".into(),
                location: "/api/files/k".into(),
                part_size: 5 << 20,
                part_count: 3,
                expires_at: 1_800_000_000,
                parts: parts.clone(),
                checksum,
            };
            reads_what_serde_writes(&snapshot);
            let ours = snapshot.json_fields().done().to_text();
            assert_eq!(serde_json::from_str::<Snapshot>(&ours).unwrap(), snapshot);
            assert_eq!(
                as_numbers(serde_json::from_str(&ours).unwrap()),
                as_numbers(serde_json::to_value(&snapshot).unwrap())
            );
        }
    }

    /// Texts with only the required fields: the defaults FromJson fills in are serde's.
    #[test]
    fn the_wasm_fills_in_absent_fields_as_serde_does() {
        fn same<T>(text: &str)
        where
            T: FromJson + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        {
            let theirs: T = serde_json::from_str(text).unwrap();
            assert_eq!(
                T::from_json(&Json::parse(text).unwrap()).unwrap(),
                theirs,
                "{text}"
            );
        }
        same::<CompanionConfig>(
            r#"{"limits":{"minPartSize":5,"maxPartSize":9,"maxParts":3,"maxObjectSize":27},
                "preferredPartSize":5,"maxFileSize":27,"allowedTypes":[],"urlLifetimeSecs":60}"#,
        );
        same::<SignedPart>(r#"{"part":1,"url":"u","expiresAt":5}"#);
        same::<SignedUrl>(r#"{"url":"u","expiresAt":5,"expiresIn":null}"#);
        same::<UploadCreated>(
            r#"{"key":"k","token":"t","partSize":1,"partCount":1,"mode":"single","expiresAt":1,"location":"l"}"#,
        );
        same::<StoredObject>(r#"{"key":"k","etag":"e","size":1,"location":"l"}"#);
        same::<StoredPart>(r#"{"part":1,"size":1,"etag":"e"}"#);
        same::<Snapshot>(
            r#"{"uploadId":"u","key":"k","token":"t","location":"l","partSize":5,"partCount":2,"expiresAt":9,"parts":[]}"#,
        );
    }

    /// Every call the wasm sends, as the companion's serde reads it, in each shape.
    #[test]
    fn the_wasm_writes_every_call_as_the_companion_reads_it() {
        let bare = CreateUpload {
            name: "a \"b\".txt".into(),
            size: 0,
            content_type: String::new(),
            last_modified: None,
            fingerprint: None,
            part_size: None,
            metadata: SortedMap::new(),
            checksum: None,
            form: false,
        };
        let full = CreateUpload {
            name: "photo 😀.jpg".into(),
            size: 123_456_789,
            content_type: "image/jpeg".into(),
            last_modified: Some(1_700_000_000_123.0),
            fingerprint: Some("ab12".into()),
            part_size: Some(8 << 20),
            metadata: SortedMap::from([("album".into(), "Été".into())]),
            checksum: Some("AAAAAA==".into()),
            form: true,
        };
        writes_what_serde_writes(&bare);
        writes_what_serde_writes(&full);
        writes_what_serde_writes(&CreateUploads {
            files: vec![bare, full],
        });
        writes_what_serde_writes(&SignParts {
            token: "t".into(),
            parts: vec![1, 2],
            checksums: vec![],
        });
        writes_what_serde_writes(&SignParts {
            token: "t".into(),
            parts: vec![3],
            checksums: vec!["AAAAAA==".into()],
        });
        for checksum in [None, Some(checksum())] {
            writes_what_serde_writes(&CompleteUpload {
                token: "t".into(),
                parts: vec![
                    CompletedPart {
                        part: 1,
                        etag: "\"e\"".into(),
                        checksum: None,
                    },
                    CompletedPart {
                        part: 2,
                        etag: "\"f\"".into(),
                        checksum: Some("x".into()),
                    },
                ],
                checksum,
            });
        }
    }

    /// What the wasm refuses to read names the field at fault.
    #[test]
    fn a_broken_answer_names_what_is_wrong() {
        let read = |text: &str| UploadCreated::from_json(&Json::parse(text).unwrap()).unwrap_err();
        assert_eq!(read("[]"), "expected an object");
        assert_eq!(read(r#"{"key":"k"}"#), "missing field `token`");
        let wrong = r#"{"key":"k","token":"t","partSize":-1,"partCount":1,"mode":"single","expiresAt":1,"location":"l"}"#;
        assert_eq!(
            read(wrong),
            "`partSize`: expected a whole number from 0 to 2^53 - 1"
        );
        let mode = wrong.replace("-1", "1").replace("single", "Single");
        assert_eq!(read(&mode), "`mode`: expected \"single\" or \"multipart\"");
        let batch = |text: &str| BatchCreated::from_json(&Json::parse(text).unwrap()).unwrap_err();
        assert_eq!(
            batch(r#"{"status":415,"code":"X","message":""}"#),
            "expected {\"created\": ..} or {\"refused\": ..}"
        );
        assert_eq!(batch(r#"{"accepted":{}}"#), "unknown variant `accepted`");
        let signed = |text: &str| SignedPart::from_json(&Json::parse(text).unwrap()).unwrap_err();
        assert_eq!(signed(r#"{"part":1,"expiresAt":5}"#), "missing field `url`");
        assert_eq!(
            signed(r#"{"part":1,"url":"u","expiresAt":5,"headers":{"a":1}}"#),
            "`headers`: `a`: expected a string"
        );
    }

    /// The shapes on the wire that the wasm reads without serde's buffering: a signed part's
    /// fields beside its number, and a batch's files tagged by what became of them.
    #[test]
    fn signed_parts_and_batch_answers_keep_their_wire_shape() {
        let part = SignedPart {
            part: 3,
            url: SignedUrl {
                url: "https://store/b/k?partNumber=3".into(),
                headers: SortedMap::from([("x-amz-checksum-crc32c".into(), "AAAAAA==".into())]),
                expires_at: 1_700_000_000,
                expires_in: Some(900),
                form: SortedMap::new(),
            },
        };
        let json = serde_json::to_value(&part).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "part": 3,
                "url": "https://store/b/k?partNumber=3",
                "headers": { "x-amz-checksum-crc32c": "AAAAAA==" },
                "expiresAt": 1_700_000_000u64,
                "expiresIn": 900,
            })
        );
        assert_eq!(serde_json::from_value::<SignedPart>(json).unwrap(), part);
        let bare = r#"{"part":1,"url":"u","expiresAt":5}"#;
        let read: SignedPart = serde_json::from_str(bare).unwrap();
        assert_eq!((read.url.headers.len(), read.url.form.len()), (0, 0));
        assert!(serde_json::from_str::<SignedPart>(r#"{"part":1,"expiresAt":5}"#).is_err());

        let refused = BatchCreated::Refused(BatchRefusal {
            status: 415,
            code: "TypeNotAllowed".into(),
            message: "no".into(),
        });
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "refused": { "status": 415, "code": "TypeNotAllowed", "message": "no" }
            })
        );
        assert_eq!(
            serde_json::from_value::<BatchCreated>(json).unwrap(),
            refused
        );
        assert!(
            serde_json::from_str::<BatchCreated>(r#"{"status":415,"code":"X","message":""}"#)
                .is_err(),
            "an answer not tagged is no batch answer"
        );
    }
}
