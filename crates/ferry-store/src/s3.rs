//! The S3 operations Ferry uses, one `S3` trait method each, on top of [`Disk`].

use std::path::Path;

use ferry_core::checksum::{Checksum, ChecksumType};
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::checksum::{self, BodyCheck, Fields, s3_algorithm, s3_type, stated};
use crate::disk::{Disk, UploadMeta, WriteError, Written};

/// Part numbers S3 accepts.
const PART_NUMBERS: std::ops::RangeInclusive<i32> = 1..=10_000;
/// ListParts answers at most this many parts a page, as S3 does.
const MAX_PARTS_PER_PAGE: usize = 1000;
const MAX_UPLOADS_PER_PAGE: usize = 1000;

/// The embedded store's `S3` implementation.
#[derive(Debug)]
pub struct FerryStore {
    disk: Disk,
    min_part_size: u64,
}

impl FerryStore {
    pub fn open(root: &Path, min_part_size: u64) -> std::io::Result<Self> {
        Ok(Self {
            disk: Disk::open(root)?,
            min_part_size,
        })
    }

    fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.disk.bucket_exists(bucket) {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }

    async fn require_object(&self, bucket: &str, key: &str) -> S3Result<crate::disk::ObjectMeta> {
        self.require_bucket(bucket)?;
        let meta = self.disk.object(bucket, key).await.map_err(internal)?;
        meta.ok_or_else(|| s3_error!(NoSuchKey))
    }

    async fn require_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> S3Result<UploadMeta> {
        self.require_bucket(bucket)?;
        match self
            .disk
            .upload(bucket, upload_id)
            .await
            .map_err(internal)?
        {
            Some(upload) if upload.key == key => Ok(upload),
            _ => Err(s3_error!(NoSuchUpload)),
        }
    }
}

fn internal(err: std::io::Error) -> S3Error {
    tracing::error!(%err, "store: disk error");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        "the store could not read or write its disk",
    )
}

fn write_failed(err: WriteError<s3s::StdError>) -> S3Error {
    match err {
        WriteError::Io(err) => internal(err),
        WriteError::Body(err) => S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            format!("request body ended early: {err}"),
        ),
    }
}

/// Keeps written bytes only if they have the checksum the client stated: a body that does not
/// leaves no object and no part behind.
async fn verified(written: Written, check: Option<&BodyCheck>) -> S3Result<Written> {
    match check.map_or(Ok(()), |check| check.verify(&written)) {
        Ok(()) => Ok(written),
        Err(err) => {
            written.discard().await;
            Err(err)
        }
    }
}

/// S3 answers with the checksum a GET or HEAD reads only when asked to, and never for a range.
fn checksum_answered(mode: Option<&ChecksumMode>, ranged: bool) -> bool {
    mode.is_some_and(|mode| mode.as_str() == ChecksumMode::ENABLED) && !ranged
}

fn timestamp(unix: u64) -> Timestamp {
    Timestamp::from(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
}

/// S3 keeps metadata names lower-case.
fn user_metadata(metadata: Option<Metadata>) -> std::collections::BTreeMap<String, String> {
    metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect()
}

/// S3's conditional write: `If-None-Match: *` stores only if no object has the key. Other
/// conditions are not conditional writes S3 supports.
/// Whether a write is a POST form upload (its body is `multipart/form-data`).
fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"))
}

fn only_if_absent(condition: Option<&ETagCondition>) -> S3Result<bool> {
    match condition {
        None => Ok(false),
        Some(ETagCondition::Any) => Ok(true),
        Some(ETagCondition::ETag(_)) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on a write takes only *"
        )),
    }
}

fn object_exists() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::PreconditionFailed,
        "an object with this key exists (If-None-Match: *)",
    )
}

fn etag_value(etag: &ETag) -> &str {
    etag.value().trim_matches('"')
}

#[async_trait::async_trait]
impl S3 for FerryStore {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        if !self.disk.create_bucket(&bucket).await.map_err(internal)? {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket)?;
        // A POST form (s3s checked its policy and signature, and hands it here) never replaces
        // a stored object: a replayed form, or one sent again after its answer was lost, finds
        // the object there, as a PUT with `If-None-Match: *` would.
        let form = is_form(&req.headers);
        let check = checksum::body_check(
            &req.headers,
            input.checksum_algorithm.as_ref(),
            stated!(input),
            req.trailing_headers,
            None,
        )?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let written = self
            .disk
            .write_object_data(&input.bucket, body, check.as_ref().map(|c| c.algorithm))
            .await
            .map_err(write_failed)?;
        let written = verified(written, check.as_ref()).await?;
        let etag = hex::encode(written.md5);
        // One PUT's checksum is of the whole object's bytes.
        let checksum = written.checksum.clone().map(|computed| Checksum {
            algorithm: computed.algorithm,
            kind: ChecksumType::FullObject,
            value: computed.value,
        });
        self.disk
            .commit_object(
                &input.bucket,
                &input.key,
                written,
                etag.clone(),
                checksum.clone(),
                input.content_type,
                user_metadata(input.metadata),
                form || only_if_absent(input.if_none_match.as_ref())?,
            )
            .await
            .map_err(internal)?
            .ok_or_else(object_exists)?;
        let Fields {
            crc32c,
            crc64nvme,
            sha256,
            kind,
        } = Fields::of_object(checksum);
        let mut response = S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag.clone())),
            checksum_crc32c: crc32c,
            checksum_crc64nvme: crc64nvme,
            checksum_sha256: sha256,
            checksum_type: kind,
            ..Default::default()
        });
        if form {
            // s3s answers a form with 204 and no body: the ETag goes in a header, as S3's does.
            let value = http::HeaderValue::from_str(&format!("\"{etag}\""))
                .expect("a quoted hex digest is a header value");
            response.headers.insert(http::header::ETAG, value);
        }
        Ok(response)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let meta = self.require_object(&input.bucket, &input.key).await?;
        let checksum = meta
            .checksum
            .filter(|_| checksum_answered(input.checksum_mode.as_ref(), false));
        let Fields {
            crc32c,
            crc64nvme,
            sha256,
            kind,
        } = Fields::of_object(checksum);
        Ok(S3Response::new(HeadObjectOutput {
            checksum_crc32c: crc32c,
            checksum_crc64nvme: crc64nvme,
            checksum_sha256: sha256,
            checksum_type: kind,
            content_length: Some(meta.size as i64),
            metadata: Some(meta.metadata.into_iter().collect()),
            content_type: meta.content_type,
            e_tag: Some(ETag::Strong(meta.etag)),
            last_modified: Some(timestamp(meta.modified_unix)),
            accept_ranges: Some("bytes".to_owned()),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let meta = self.require_object(&input.bucket, &input.key).await?;
        let checksum = meta
            .checksum
            .clone()
            .filter(|_| checksum_answered(input.checksum_mode.as_ref(), input.range.is_some()));
        let Fields {
            crc32c,
            crc64nvme,
            sha256,
            kind,
        } = Fields::of_object(checksum);
        let (range, content_range) = match input.range {
            None => (0..meta.size, None),
            Some(range) => {
                let range = range.check(meta.size)?;
                let content_range =
                    format!("bytes {}-{}/{}", range.start, range.end - 1, meta.size);
                (range, Some(content_range))
            }
        };
        let mut file = tokio::fs::File::open(self.disk.object_data(&input.bucket, &meta))
            .await
            .map_err(internal)?;
        file.seek(std::io::SeekFrom::Start(range.start))
            .await
            .map_err(internal)?;
        let length = range.end - range.start;
        let body = ReaderStream::with_capacity(file.take(length), 64 * 1024);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some(length as i64),
            content_range,
            checksum_crc32c: crc32c,
            checksum_crc64nvme: crc64nvme,
            checksum_sha256: sha256,
            checksum_type: kind,
            metadata: Some(meta.metadata.clone().into_iter().collect()),
            content_type: meta.content_type,
            e_tag: Some(ETag::Strong(meta.etag)),
            last_modified: Some(timestamp(meta.modified_unix)),
            accept_ranges: Some("bytes".to_owned()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket)?;
        self.disk
            .remove_object(&input.bucket, &input.key)
            .await
            .map_err(internal)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket)?;
        let declared = checksum::declared(
            input.checksum_algorithm.as_ref(),
            input.checksum_type.as_ref(),
        )?;
        let meta = UploadMeta {
            key: input.key.clone(),
            content_type: input.content_type,
            metadata: user_metadata(input.metadata),
            initiated_unix: crate::disk::unix_now(),
            checksum: declared,
        };
        let upload_id = self
            .disk
            .create_upload(&input.bucket, &meta)
            .await
            .map_err(internal)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: declared.map(|declared| s3_algorithm(declared.algorithm)),
            checksum_type: declared.map(|declared| s3_type(declared.kind)),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        if !PART_NUMBERS.contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            ));
        }
        let upload = self
            .require_upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let check = checksum::body_check(
            &req.headers,
            input.checksum_algorithm.as_ref(),
            stated!(input),
            req.trailing_headers,
            upload.checksum,
        )?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let written = self
            .disk
            .write_part_data(
                &input.bucket,
                &input.upload_id,
                body,
                check.as_ref().map(|c| c.algorithm),
            )
            .await
            .map_err(write_failed)?;
        let written = verified(written, check.as_ref()).await?;
        let part = self
            .disk
            .commit_part(
                &input.bucket,
                &input.upload_id,
                input.part_number as u32,
                written,
            )
            .await
            .map_err(internal)?;
        let Fields {
            crc32c,
            crc64nvme,
            sha256,
            ..
        } = Fields::of_part(part.checksum);
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(part.etag)),
            checksum_crc32c: crc32c,
            checksum_crc64nvme: crc64nvme,
            checksum_sha256: sha256,
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload = self
            .require_upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let max_parts = input.max_parts.map_or(MAX_PARTS_PER_PAGE, |max| {
            (max.max(0) as usize).min(MAX_PARTS_PER_PAGE)
        });
        let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let all = self
            .disk
            .parts(&input.bucket, &input.upload_id)
            .await
            .map_err(internal)?;
        let after_marker: Vec<_> = all
            .into_iter()
            .filter(|(number, _)| *number > marker)
            .collect();
        let is_truncated = after_marker.len() > max_parts;
        let page: Vec<Part> = after_marker
            .into_iter()
            .take(max_parts)
            .map(|(number, part)| {
                let Fields {
                    crc32c,
                    crc64nvme,
                    sha256,
                    ..
                } = Fields::of_part(part.checksum);
                Part {
                    part_number: Some(number as i32),
                    size: Some(part.size as i64),
                    e_tag: Some(ETag::Strong(part.etag)),
                    last_modified: Some(timestamp(part.modified_unix)),
                    checksum_crc32c: crc32c,
                    checksum_crc64nvme: crc64nvme,
                    checksum_sha256: sha256,
                    ..Default::default()
                }
            })
            .collect();
        let next_marker = page.last().and_then(|part| part.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts as i32),
            part_number_marker: Some(marker as i32),
            next_part_number_marker: next_marker,
            is_truncated: Some(is_truncated),
            parts: Some(page),
            checksum_algorithm: upload
                .checksum
                .map(|declared| s3_algorithm(declared.algorithm)),
            checksum_type: upload.checksum.map(|declared| s3_type(declared.kind)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let upload = self
            .require_upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let if_absent = only_if_absent(input.if_none_match.as_ref())?;
        let requested = input
            .multipart_upload
            .and_then(|upload| upload.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "You must specify at least one part"
            ));
        }
        let stored = self
            .disk
            .parts(&input.bucket, &input.upload_id)
            .await
            .map_err(internal)?;

        // Every check happens before anything is written: a refused Complete leaves the upload
        // and its parts as they were, so the client can fix the list and try again.
        let mut previous = 0;
        let mut chosen = Vec::with_capacity(requested.len());
        for (index, wanted) in requested.iter().enumerate() {
            let number = wanted
                .part_number
                .ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
            if number <= previous {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "part numbers must be listed in ascending order"
                ));
            }
            previous = number;
            let part = stored
                .iter()
                .find(|(stored_number, _)| *stored_number as i32 == number)
                .map(|(_, part)| part)
                .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
            let etag_matches = wanted
                .e_tag
                .as_ref()
                .is_some_and(|etag| etag_value(etag) == part.etag);
            if !etag_matches {
                return Err(s3_error!(
                    InvalidPart,
                    "the ETag of part {number} does not match"
                ));
            }
            if upload.checksum.is_some() {
                checksum::check_listed_part(number, stated!(wanted), part.checksum.as_ref())?;
            }
            let is_last = index + 1 == requested.len();
            if !is_last && part.size < self.min_part_size {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {number} is {} bytes, under the minimum of {} for every part but the last",
                    part.size,
                    self.min_part_size
                ));
            }
            chosen.push(part);
        }
        // An upload without a checksum makes an object without one, whatever the Complete says.
        let object_checksum = match upload.checksum {
            None => None,
            Some(declared) => {
                let object = checksum::object_checksum(declared, &chosen)?;
                checksum::check_complete(
                    declared,
                    input.checksum_type.as_ref(),
                    stated!(input),
                    &object,
                )?;
                Some(object)
            }
        };

        let sources: Vec<_> = chosen
            .iter()
            .map(|part| self.disk.part_data(&input.bucket, &input.upload_id, part))
            .collect();
        let written = self
            .disk
            .assemble_object(&input.bucket, &sources)
            .await
            .map_err(internal)?;
        let mut md5_of_md5s = Md5::new();
        for part in &chosen {
            md5_of_md5s.update(part.md5);
        }
        let etag = format!("{}-{}", hex::encode(md5_of_md5s.finalize()), chosen.len());
        // A refused Complete keeps the upload, as S3 does: the parts stay until it is aborted.
        self.disk
            .commit_object(
                &input.bucket,
                &input.key,
                written,
                etag.clone(),
                object_checksum.clone(),
                upload.content_type,
                upload.metadata,
                if_absent,
            )
            .await
            .map_err(internal)?
            .ok_or_else(object_exists)?;
        self.disk
            .remove_upload(&input.bucket, &input.upload_id)
            .await
            .map_err(internal)?;
        let Fields {
            crc32c,
            crc64nvme,
            sha256,
            kind,
        } = Fields::of_object(object_checksum);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32c: crc32c,
            checksum_crc64nvme: crc64nvme,
            checksum_sha256: sha256,
            checksum_type: kind,
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.require_upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        self.disk
            .remove_upload(&input.bucket, &input.upload_id)
            .await
            .map_err(internal)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max_uploads = input.max_uploads.map_or(MAX_UPLOADS_PER_PAGE, |max| {
            (max.max(0) as usize).min(MAX_UPLOADS_PER_PAGE)
        });
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let upload_id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let matching: Vec<_> = self
            .disk
            .uploads(&input.bucket)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|(_, upload)| upload.key.starts_with(&prefix))
            .filter(|(upload_id, upload)| {
                key_marker.is_empty()
                    || upload.key > key_marker
                    || (upload.key == key_marker && *upload_id > upload_id_marker)
            })
            .collect();
        let is_truncated = matching.len() > max_uploads;
        let page: Vec<MultipartUpload> = matching
            .into_iter()
            .take(max_uploads)
            .map(|(upload_id, upload)| MultipartUpload {
                key: Some(upload.key),
                upload_id: Some(upload_id),
                initiated: Some(timestamp(upload.initiated_unix)),
                checksum_algorithm: upload
                    .checksum
                    .map(|declared| s3_algorithm(declared.algorithm)),
                checksum_type: upload.checksum.map(|declared| s3_type(declared.kind)),
                ..Default::default()
            })
            .collect();
        let (next_key_marker, next_upload_id_marker) = match page.last() {
            Some(last) if is_truncated => (last.key.clone(), last.upload_id.clone()),
            _ => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max_uploads as i32),
            is_truncated: Some(is_truncated),
            next_key_marker,
            next_upload_id_marker,
            uploads: Some(page),
            ..Default::default()
        }))
    }
}
