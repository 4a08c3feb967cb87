//! The companion's JSON API, shared by the companion and every client. Field names are camelCase
//! on the wire. Times are Unix seconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::plan::{StoreLimits, UploadMode};

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
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
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
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working, by the companion's clock (Unix seconds).
    pub expires_at: u64,
    /// How long the URL lives from when it was signed, in seconds: clients count from receipt,
    /// so a client clock that disagrees with the companion's does not matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// A POST form's fields, sent before the file's bytes (the `file` field): when there are
    /// any, the request is `POST url` with a `multipart/form-data` body, not a PUT.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub form: BTreeMap<String, String>,
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
#[serde(rename_all = "camelCase", from = "SignedPartFields")]
pub struct SignedPart {
    pub part: u32,
    #[serde(flatten)]
    pub url: SignedUrl,
}

/// How a [`SignedPart`] is read: its fields named one by one, because reading a flattened
/// struct buffers every value first, which costs the wasm serde's whole buffering machinery.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedPartFields {
    part: u32,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    expires_at: u64,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    form: BTreeMap<String, String>,
}

impl From<SignedPartFields> for SignedPart {
    fn from(fields: SignedPartFields) -> Self {
        Self {
            part: fields.part,
            url: SignedUrl {
                url: fields.url,
                headers: fields.headers,
                expires_at: fields.expires_at,
                expires_in: fields.expires_in,
                form: fields.form,
            },
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes on the wire that the wasm reads without serde's buffering: a signed part's
    /// fields beside its number, and a batch's files tagged by what became of them.
    #[test]
    fn signed_parts_and_batch_answers_keep_their_wire_shape() {
        let part = SignedPart {
            part: 3,
            url: SignedUrl {
                url: "https://store/b/k?partNumber=3".into(),
                headers: BTreeMap::from([("x-amz-checksum-crc32c".into(), "AAAAAA==".into())]),
                expires_at: 1_700_000_000,
                expires_in: Some(900),
                form: BTreeMap::new(),
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
