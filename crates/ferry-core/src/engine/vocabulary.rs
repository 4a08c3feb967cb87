//! What the engine and its drivers say to each other: the files, the actions the driver carries
//! out, the events the application hears, and what it may read at any time.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::checksum::ChecksumAlgorithm;
use crate::error::UploadError;
use crate::json::{Fields, FromJson, Json, Object, ToJson};
use crate::protocol::{CompleteUpload, SignParts, SignedUrl, StoredObject, StoredPart};

/// A file to upload, as the engine needs it: its bytes and name stay with the driver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileSpec {
    pub size: u64,
    /// Checked against the companion's allowed types; not kept once checked.
    pub content_type: String,
    /// Higher goes first; equal priorities follow [`EngineConfig::order`](crate::EngineConfig).
    pub priority: i32,
}

/// The engine's name for a file it was given; ids grow in the order files were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u64);

/// Where a part's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutTarget {
    /// Straight to the store, with a presigned URL.
    Direct(SignedUrl),
    /// Through the companion (`PUT /api/uploads/{id}/parts/{n}?token=`, or
    /// `PUT /api/objects?token=` for a single PUT): the fallback when the store cannot be reached.
    /// `checksum` goes in its header (`x-amz-checksum-*`), for the store to verify.
    Companion {
        upload_id: Option<String>,
        token: String,
        checksum: Option<(ChecksumAlgorithm, String)>,
    },
}

/// Which call to the companion a result is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Create,
    Sign,
    ListParts,
    Complete,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `GET /api/config`, once files wait and the companion's limits are unknown; answer with
    /// [`Engine::handle_config`](crate::Engine::handle_config) or
    /// [`Engine::handle_config_failed`](crate::Engine::handle_config_failed).
    FetchConfig,
    /// Name the file so that the same file added again is recognised: answer with
    /// [`Engine::handle_fingerprinted`](crate::Engine::handle_fingerprinted). `resumable`: the
    /// file goes as a multipart upload, so its name must hold across reloads and tabs (a hash
    /// of its bytes); otherwise only this page's adds of the same file need to share it.
    Fingerprint { file: FileId, resumable: bool },
    /// Take the file's `key` for this page, waiting while another page (a tab) holds it, and
    /// read its resume record; answer with
    /// [`Engine::handle_claimed`](crate::Engine::handle_claimed). The driver holds the key
    /// until the file ends.
    Claim { file: FileId, key: String },
    /// Compute `algorithm`'s checksum of each range of the file's bytes, one range at a time;
    /// answer with [`Engine::handle_hashed`](crate::Engine::handle_hashed) (the values in the
    /// order of `parts`) or [`Engine::handle_hash_failed`](crate::Engine::handle_hash_failed).
    Hash {
        file: FileId,
        algorithm: ChecksumAlgorithm,
        parts: Vec<(u32, Range<u64>)>,
    },
    /// `POST /api/uploads` with the file's name, size and type, and `checksum` (a single PUT's,
    /// when checksums are on); answer with
    /// [`Engine::handle_created`](crate::Engine::handle_created) or
    /// [`Engine::handle_call_failed`](crate::Engine::handle_call_failed).
    Create {
        file: FileId,
        checksum: Option<String>,
    },
    /// `POST /api/uploads/batch` creating each file of one part as [`Action::Create`] would,
    /// in one call; answer with
    /// [`Engine::handle_batch_answered`](crate::Engine::handle_batch_answered).
    CreateBatch { files: Vec<BatchedFile> },
    /// `GET /api/uploads/{upload_id}/parts?token=` for a resumed file; answer with
    /// [`Engine::handle_listed`](crate::Engine::handle_listed).
    ListParts {
        file: FileId,
        upload_id: String,
        token: String,
    },
    /// `POST /api/uploads/{upload_id}/sign`; answer with
    /// [`Engine::handle_signed`](crate::Engine::handle_signed).
    Sign {
        file: FileId,
        upload_id: String,
        request: SignParts,
    },
    /// PUT the file's bytes in `range` to `target`; answer with
    /// [`Engine::handle_put_done`](crate::Engine::handle_put_done) or
    /// [`Engine::handle_put_failed`](crate::Engine::handle_put_failed), and report progress with
    /// [`Engine::handle_put_progress`](crate::Engine::handle_put_progress).
    Put {
        file: FileId,
        part: u32,
        range: Range<u64>,
        target: PutTarget,
    },
    /// `POST` to [`complete_path`](crate::protocol::complete_path) of `upload_id` (a single PUT
    /// has none, and is completed only when the companion asks for it); answer with
    /// [`Engine::handle_completed`](crate::Engine::handle_completed).
    Complete {
        file: FileId,
        upload_id: Option<String>,
        request: CompleteUpload,
    },
    /// Abort these running PUTs of the file; nothing to answer.
    StopPuts { file: FileId, parts: Vec<u32> },
    /// `DELETE /api/uploads/{upload_id}?token=`; nothing to answer: the file was cancelled (or
    /// its create answered too late). A driver keeps an abort that could not reach the
    /// companion and sends it again when it can.
    Abort {
        file: FileId,
        upload_id: String,
        token: String,
    },
}

/// What a claimed file continues from.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Nothing: a new upload is created.
    Fresh,
    /// The multipart upload a resume record describes: its stored parts are listed and kept.
    Resume(Snapshot),
    /// Another page finished this file while this one waited for the key: its object.
    Stored(StoredObject),
}

/// Something the application may want to know. Every file added gets exactly one `Done` or
/// `Failed`; a file that joined another's upload gets that upload's events.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Done {
        file: FileId,
        object: StoredObject,
    },
    Failed {
        file: FileId,
        error: UploadError,
    },
    /// A resumed file kept these many parts the store already held.
    Resumed {
        file: FileId,
        parts_kept: u32,
    },
    /// The file waits out an outage (`waiting: true`: the store or the companion does not
    /// answer; nothing is spent), or it got an answer again and goes on (`waiting: false`).
    Waiting {
        file: FileId,
        waiting: bool,
    },
    /// The file is the same as `upload`, already on its way in this page: it joined that upload
    /// instead of making another, and shares its progress and result.
    Joined {
        file: FileId,
        upload: FileId,
    },
}

impl Event {
    /// The same event, told to another file of the same upload.
    pub(super) fn for_file(&self, other: FileId) -> Self {
        let mut event = self.clone();
        match &mut event {
            Event::Done { file, .. }
            | Event::Failed { file, .. }
            | Event::Resumed { file, .. }
            | Event::Waiting { file, .. }
            | Event::Joined { file, .. } => *file = other,
        }
        event
    }
}

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Waiting for the outer layer to take it (or for the companion's limits).
    Queued,
    /// Taken: being fingerprinted, or waiting for another page that uploads the same file.
    Preparing,
    /// Its upload is being created.
    Creating,
    /// A resumed file: the parts the store holds are being listed.
    Listing,
    /// Its parts are going out.
    Uploading,
    /// Every part is stored; the upload is being completed.
    Completing,
}

/// A file's progress. `confirmed` counts parts the store acknowledged with an ETag and never goes
/// back; `in_flight` counts bytes sent for running parts and drops when a part stops or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub state: FileState,
    pub paused: bool,
    pub size: u64,
    pub confirmed: u64,
    pub in_flight: u64,
    /// Retries spent on this file's parts and calls.
    pub retries: u32,
    /// Whether its parts go through the companion.
    pub fallback: bool,
    /// Whether it waits out an outage of the store or the companion.
    pub waiting: bool,
}

impl Progress {
    /// Everything sent so far, confirmed or not.
    pub fn loaded(&self) -> u64 {
        self.confirmed + self.in_flight
    }
}

/// A part PUT in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningPart {
    pub file: FileId,
    pub part: u32,
    pub sent: u64,
    pub size: u64,
    /// Times this part was sent again after a failure (retries spent, and the one at once):
    /// above 0, it is being sent again.
    pub retries: u32,
}

/// A file of an [`Action::CreateBatch`], with its checksum when checksums are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchedFile {
    pub file: FileId,
    pub checksum: Option<String>,
}

/// Counters over the engine's life, for benchmarks and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Calls to the companion asked for: config, create, list, sign, complete, abort.
    pub companion_calls: u64,
    /// Part PUTs started.
    pub puts: u64,
    /// Retries after failures (parts and calls) that spent an attempt.
    pub retries: u64,
    /// Parts sent again at once after a one-off failure, spending nothing.
    pub retried_at_once: u64,
    /// Parts whose URL was signed again because it expired.
    pub resigns: u64,
    /// The most files live at once.
    pub peak_live: usize,
    /// Files that joined an upload of the same file instead of making their own.
    pub joined: u64,
}

/// What a client keeps to resume a multipart upload after a reload: the upload and the parts it
/// saw confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub upload_id: String,
    pub key: String,
    pub token: String,
    pub location: String,
    pub part_size: u64,
    pub part_count: u32,
    /// When the token stops being accepted (Unix seconds): the record is useless after.
    pub expires_at: u64,
    pub parts: Vec<StoredPart>,
    /// The algorithm the upload's parts carry; a companion that changed it since starts afresh.
    #[serde(default)]
    pub checksum: Option<ChecksumAlgorithm>,
}

impl FromJson for Snapshot {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            upload_id: fields.required("uploadId")?,
            key: fields.required("key")?,
            token: fields.required("token")?,
            location: fields.required("location")?,
            part_size: fields.required("partSize")?,
            part_count: fields.required("partCount")?,
            expires_at: fields.required("expiresAt")?,
            parts: fields.required("parts")?,
            checksum: fields.optional("checksum")?,
        })
    }
}

impl Snapshot {
    /// Its fields, for a record that adds its own beside them.
    pub fn json_fields(&self) -> Object {
        Object::new()
            .field("uploadId", self.upload_id.to_json())
            .field("key", self.key.to_json())
            .field("token", self.token.to_json())
            .field("location", self.location.to_json())
            .field("partSize", self.part_size.to_json())
            .field("partCount", self.part_count.to_json())
            .field("expiresAt", self.expires_at.to_json())
            .field("parts", self.parts.to_json())
            .field("checksum", self.checksum.to_json())
    }
}
