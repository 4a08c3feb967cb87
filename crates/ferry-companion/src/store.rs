//! The companion's side of S3: rusty-s3 signs every call (sans-IO), reqwest sends the ones the
//! companion makes itself, and the browser gets presigned URLs for the rest.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::s3xml;
use ferry_core::checksum::{Checksum, ChecksumAlgorithm, ChecksumType};
use ferry_core::protocol::{CompletedPart, StoredPart};
use rusty_s3::actions::CreateMultipartUpload;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::credentials::SharedCredentials;
use url::Url;

const CONTENT_LENGTH: &str = "content-length";
const IF_NONE_MATCH: &str = "if-none-match";
const CHECKSUM_ALGORITHM: &str = "x-amz-checksum-algorithm";
const CHECKSUM_TYPE: &str = "x-amz-checksum-type";
const SDK_CHECKSUM_ALGORITHM: &str = "x-amz-sdk-checksum-algorithm";
/// Asks HEAD for the object's checksum.
const CHECKSUM_MODE: &str = "x-amz-checksum-mode";

/// Lifetime of the URLs the companion signs for its own calls.
const OWN_CALL_LIFETIME: Duration = Duration::from_secs(60);

/// Where the store is and how to sign for it.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub endpoint: Url,
    pub bucket: String,
    pub region: String,
    pub path_style: bool,
    pub credentials: SharedCredentials,
}

/// `x-amz-meta-<name>` headers for user metadata.
fn metadata_headers(metadata: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    metadata
        .iter()
        .map(|(name, value)| {
            (
                format!("x-amz-meta-{}", name.to_ascii_lowercase()),
                value.clone(),
            )
        })
        .collect()
}

/// What a HEAD of an object tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: String,
    pub content_type: String,
    /// User metadata (`x-amz-meta-*`), names without the prefix.
    pub metadata: BTreeMap<String, String>,
    /// The checksum the store keeps for the object, if any.
    pub checksum: Option<Checksum>,
}

/// A multipart upload the store still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: jiff::Timestamp,
}

/// An error from the store, with S3's code when it sent one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store answered with an S3 error.
    #[error("the store answered {status} {code}: {message}")]
    S3 {
        status: u16,
        code: String,
        message: String,
    },
    /// The store could not be reached, or answered with something that is not S3.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct Store {
    bucket: Bucket,
    /// Read for every signature: the AWS chain may swap them for fresh ones.
    credentials: SharedCredentials,
    http: reqwest::Client,
    /// For the fallback's streamed PUTs: no total timeout, as a slow link may need long for a
    /// part; a connection that stalls is still cut.
    streaming: reqwest::Client,
}

impl Store {
    pub fn new(config: &StoreConfig) -> Result<Self, String> {
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            config.endpoint.clone(),
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|err| format!("bad store endpoint or bucket name: {err:?}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|err| err.to_string())?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|err| err.to_string())?;
        Ok(Self {
            bucket,
            credentials: config.credentials.clone(),
            http,
            streaming,
        })
    }

    /// The credentials to sign with now.
    fn credentials(&self) -> Credentials {
        self.credentials
            .read()
            .expect("a signer never panics holding the lock")
            .clone()
    }

    /// Creates the bucket (the embedded store starts empty); one that already exists is fine.
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        let credentials = self.credentials();
        let action = rusty_s3::actions::CreateBucket::new(&self.bucket, &credentials);
        let url = action.sign(OWN_CALL_LIFETIME);
        match self.send(self.http.put(url).body(action.body())).await {
            Err(StoreError::S3 { code, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            other => other.map(drop),
        }
    }

    /// Fails unless the bucket exists and the credentials may use it.
    pub async fn check_bucket(&self) -> Result<(), StoreError> {
        let credentials = self.credentials();
        let url = self
            .bucket
            .head_bucket(Some(&credentials))
            .sign(OWN_CALL_LIFETIME);
        self.send(self.http.head(url)).await.map(drop)
    }

    /// With `checksum`, every part must carry that algorithm's checksum, and the object's is
    /// of the algorithm's type (full-object or composite).
    pub async fn create_multipart_upload(
        &self,
        key: &str,
        content_type: &str,
        metadata: &BTreeMap<String, String>,
        checksum: Option<ChecksumAlgorithm>,
    ) -> Result<String, StoreError> {
        let credentials = self.credentials();
        let mut action = self.bucket.create_multipart_upload(Some(&credentials), key);
        let mut headers = metadata_headers(metadata);
        if !content_type.is_empty() {
            headers.insert("content-type".to_owned(), content_type.to_owned());
        }
        if let Some(algorithm) = checksum {
            headers.insert(
                CHECKSUM_ALGORITHM.to_owned(),
                algorithm.s3_name().to_owned(),
            );
            headers.insert(
                CHECKSUM_TYPE.to_owned(),
                algorithm.multipart_type().s3_name().to_owned(),
            );
        }
        for (name, value) in &headers {
            action.headers_mut().insert(name.clone(), value.clone());
        }
        let url = action.sign(OWN_CALL_LIFETIME);
        let mut request = self.http.post(url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let body = self.send(request).await?;
        let parsed = CreateMultipartUpload::parse_response(&body).map_err(unexpected)?;
        Ok(parsed.upload_id().to_owned())
    }

    /// Every part the store holds for the upload, following every page.
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>, StoreError> {
        let credentials = self.credentials();
        let mut parts = Vec::new();
        let mut marker = None;
        loop {
            let mut action = self.bucket.list_parts(Some(&credentials), key, upload_id);
            if let Some(marker) = marker {
                action.set_part_number_marker(marker);
            }
            let body = self
                .send(self.http.get(action.sign(OWN_CALL_LIFETIME)))
                .await?;
            let page = parse_list_parts(&body)
                .ok_or_else(|| unexpected("a ListParts answer without its fields"))?;
            parts.extend(page.parts);
            match page.next_marker {
                Some(next) if next > marker.unwrap_or(0) => marker = Some(next),
                Some(_) => return Err(unexpected("ListParts did not move past its marker")),
                None => return Ok(parts),
            }
        }
    }

    /// Completes with the parts given, in order; returns the object's ETag. With `if_absent`, the
    /// store refuses (412 `PreconditionFailed`) when an object already has the key. Each part's
    /// checksum goes in the list, and a full-object checksum in its header: the store refuses
    /// (`BadDigest`) to assemble an object whose bytes have another.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&Checksum>,
        if_absent: bool,
    ) -> Result<String, StoreError> {
        let credentials = self.credentials();
        let mut action = self.bucket.complete_multipart_upload(
            Some(&credentials),
            key,
            upload_id,
            parts.iter().map(|part| part.etag.as_str()),
        );
        let mut headers = BTreeMap::new();
        if if_absent {
            headers.insert(IF_NONE_MATCH.to_owned(), "*".to_owned());
        }
        // A composite value (`...-N`) is the store's to compute from the parts' checksums.
        if let Some(checksum) =
            checksum.filter(|checksum| checksum.kind == ChecksumType::FullObject)
        {
            headers.insert(
                checksum.algorithm.header().to_owned(),
                checksum.value.clone(),
            );
            headers.insert(CHECKSUM_TYPE.to_owned(), checksum.kind.s3_name().to_owned());
        }
        for (name, value) in &headers {
            action.headers_mut().insert(name.clone(), value.clone());
        }
        let url = action.sign(OWN_CALL_LIFETIME);
        let algorithm = checksum.map(|checksum| checksum.algorithm);
        let mut request = self.http.post(url).body(complete_body(parts, algorithm));
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let answer = self.send(request).await?;
        // S3 may answer 200 and still report an error in the body.
        if let Some(error) = s3_error(200, &answer) {
            return Err(error);
        }
        s3xml::read::<s3xml::Completed>(&answer)
            .map(|completed| completed.etag)
            .map_err(unexpected)
    }

    pub async fn abort_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        let credentials = self.credentials();
        let url = self
            .bucket
            .abort_multipart_upload(Some(&credentials), key, upload_id)
            .sign(OWN_CALL_LIFETIME);
        self.send(self.http.delete(url)).await.map(drop)
    }

    /// Every multipart upload in progress under `prefix`, following every page.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<PendingUpload>, StoreError> {
        let credentials = self.credentials();
        let mut uploads = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            // rusty-s3 has no ListMultipartUploads: it is a GET on the bucket with `uploads`, which
            // ListObjectsV2's action signs once its own query is replaced.
            let mut action = self.bucket.list_objects_v2(Some(&credentials));
            let query = action.query_mut();
            query.remove("list-type");
            query.remove("encoding-type");
            query.insert("uploads", "");
            query.insert("prefix", prefix.to_owned());
            if let Some((key, upload_id)) = &markers {
                query.insert("key-marker", key.clone());
                query.insert("upload-id-marker", upload_id.clone());
            }
            let body = self
                .send(self.http.get(action.sign(OWN_CALL_LIFETIME)))
                .await?;
            let page: s3xml::UploadsPage = s3xml::read(&body).map_err(unexpected)?;
            for upload in page.uploads {
                let initiated = upload
                    .initiated
                    .trim()
                    .parse::<jiff::Timestamp>()
                    .map_err(|err| unexpected(format!("a ListMultipartUploads date: {err}")))?;
                uploads.push(PendingUpload {
                    key: upload.key,
                    upload_id: upload.upload_id,
                    initiated,
                });
            }
            let truncated = page.is_truncated;
            let next = (page.next_key_marker, page.next_upload_id_marker);
            match next {
                (Some(key), Some(upload_id))
                    if truncated && markers.as_ref() != Some(&(key.clone(), upload_id.clone())) =>
                {
                    markers = Some((key, upload_id));
                }
                _ if truncated => {
                    return Err(unexpected(
                        "ListMultipartUploads did not move past its markers",
                    ));
                }
                _ => return Ok(uploads),
            }
        }
    }

    /// A URL the browser PUTs part `part` of exactly `length` bytes to: the length is signed, so a
    /// store that checks signatures refuses a body of any other size.
    /// With `checksum`, the signature covers its header too (returned, for the browser to send):
    /// the store takes only the bytes that have it.
    pub fn sign_upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u16,
        length: u64,
        lifetime: Duration,
        checksum: Option<(ChecksumAlgorithm, &str)>,
    ) -> (Url, BTreeMap<String, String>) {
        let credentials = self.credentials();
        let mut action = self
            .bucket
            .upload_part(Some(&credentials), key, part, upload_id);
        let headers = checksum_headers(checksum);
        for (name, value) in &headers {
            action.headers_mut().insert(name.clone(), value.clone());
        }
        action
            .headers_mut()
            .insert(CONTENT_LENGTH, length.to_string());
        (action.sign(lifetime), headers)
    }

    /// A URL the browser PUTs a whole small file of exactly `length` bytes to, and the headers it
    /// must send with it. The signature covers the length, the content type, the metadata and,
    /// with `if_absent`, `If-None-Match: *`, so the URL can neither store another size nor
    /// overwrite the object once it is there. The length is left out of the headers returned:
    /// the browser sets it itself.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is a header the signature binds"
    )]
    pub fn sign_put_object(
        &self,
        key: &str,
        length: u64,
        lifetime: Duration,
        content_type: &str,
        metadata: &BTreeMap<String, String>,
        if_absent: bool,
        checksum: Option<(ChecksumAlgorithm, &str)>,
    ) -> (Url, BTreeMap<String, String>) {
        let credentials = self.credentials();
        let mut headers = metadata_headers(metadata);
        if !content_type.is_empty() {
            headers.insert("content-type".to_owned(), content_type.to_owned());
        }
        headers.extend(checksum_headers(checksum));
        if if_absent {
            headers.insert(IF_NONE_MATCH.to_owned(), "*".to_owned());
        }
        let mut action = self.bucket.put_object(Some(&credentials), key);
        for (name, value) in &headers {
            action.headers_mut().insert(name.clone(), value.clone());
        }
        action
            .headers_mut()
            .insert(CONTENT_LENGTH, length.to_string());
        (action.sign(lifetime), headers)
    }

    /// A presigned POST form (S3's POST Object, SigV4) for a file of one part: its policy binds
    /// the bucket, the key, the exact length, the content type, the metadata and the checksum
    /// (stores that take it in a form check it, so a replayed form can only store the same
    /// bytes), and expires with `lifetime`. A browser sends it as a `FormData` with no header of
    /// its own: a CORS-simple request, with no preflight.
    pub fn sign_post_object(
        &self,
        key: &str,
        length: u64,
        lifetime: Duration,
        content_type: &str,
        metadata: &BTreeMap<String, String>,
        checksum: (ChecksumAlgorithm, &str),
    ) -> (Url, BTreeMap<String, String>) {
        use base64::Engine as _;
        use hmac::{Hmac, Mac};
        let credentials = self.credentials();
        let now = time::OffsetDateTime::now_utc();
        let date = format!(
            "{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let stamp = format!(
            "{date}T{:02}{:02}{:02}Z",
            now.hour(),
            now.minute(),
            now.second()
        );
        let expires = now + lifetime;
        let expiration = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
            expires.year(),
            u8::from(expires.month()),
            expires.day(),
            expires.hour(),
            expires.minute(),
            expires.second()
        );
        let region = self.bucket.region();
        let credential = format!("{}/{date}/{region}/s3/aws4_request", credentials.key());
        let (algorithm, value) = checksum;
        let mut fields = metadata_headers(metadata);
        fields.insert("bucket".to_owned(), self.bucket.name().to_owned());
        fields.insert("key".to_owned(), key.to_owned());
        if !content_type.is_empty() {
            fields.insert("Content-Type".to_owned(), content_type.to_owned());
        }
        fields.insert(algorithm.header().to_owned(), value.to_owned());
        fields.insert(
            "x-amz-checksum-algorithm".to_owned(),
            algorithm.s3_name().to_owned(),
        );
        fields.insert("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned());
        fields.insert("x-amz-credential".to_owned(), credential);
        fields.insert("x-amz-date".to_owned(), stamp);
        if let Some(token) = credentials.token() {
            fields.insert("x-amz-security-token".to_owned(), token.to_owned());
        }
        // Every field is a condition of its own, with the exact length besides.
        let mut conditions: Vec<serde_json::Value> = fields
            .iter()
            .map(|(name, value)| serde_json::json!({ name: value }))
            .collect();
        conditions.push(serde_json::json!(["content-length-range", length, length]));
        let policy = serde_json::json!({ "expiration": expiration, "conditions": conditions });
        let policy = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
        let hmac = |key: &[u8], data: &str| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
            mac.update(data.as_bytes());
            mac.finalize().into_bytes().to_vec()
        };
        let signing_key = ["s3", "aws4_request"].iter().fold(
            hmac(
                &hmac(format!("AWS4{}", credentials.secret()).as_bytes(), &date),
                region,
            ),
            |key, part| hmac(&key, part),
        );
        fields.insert("policy".to_owned(), policy.clone());
        fields.insert(
            "x-amz-signature".to_owned(),
            hex::encode(hmac(&signing_key, &policy)),
        );
        (self.bucket.object_url(""), fields)
    }

    /// Deletes an object: for one the store assembled unlike the plan.
    pub async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        let credentials = self.credentials();
        let url = self
            .bucket
            .delete_object(Some(&credentials), key)
            .sign(OWN_CALL_LIFETIME);
        self.send(self.http.delete(url)).await.map(drop)
    }

    /// The object's size, ETag, type, metadata and checksum, or `None` if there is no such
    /// object.
    pub async fn head_object(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let credentials = self.credentials();
        let mut action = self.bucket.head_object(Some(&credentials), key);
        action.headers_mut().insert(CHECKSUM_MODE, "ENABLED");
        let url = action.sign(OWN_CALL_LIFETIME);
        let request = self.http.head(url).header(CHECKSUM_MODE, "ENABLED");
        let response = request.send().await.map_err(unreachable)?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => {
                let headers = response.headers();
                let header = |name| {
                    headers
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned)
                };
                let size =
                    header(reqwest::header::CONTENT_LENGTH).and_then(|value| value.parse().ok());
                let metadata = headers
                    .iter()
                    .filter_map(|(name, value)| {
                        let name = name.as_str().strip_prefix("x-amz-meta-")?;
                        Some((name.to_owned(), value.to_str().ok()?.to_owned()))
                    })
                    .collect();
                Ok(size
                    .zip(header(reqwest::header::ETAG))
                    .map(|(size, etag)| ObjectHead {
                        size,
                        etag,
                        content_type: header(reqwest::header::CONTENT_TYPE).unwrap_or_default(),
                        metadata,
                        checksum: checksum_of(headers),
                    }))
            }
            status => Err(StoreError::S3 {
                status,
                code: format!("Http{status}"),
                message: "HEAD failed".into(),
            }),
        }
    }

    /// The whole object, if it is at most `max` bytes: for making a thumbnail.
    pub async fn get_object(&self, key: &str, max: u64) -> Result<bytes::Bytes, StoreError> {
        let response = self.get(key).await?;
        if response.content_length().is_some_and(|length| length > max) {
            return Err(unexpected(format!("the object is over {max} bytes")));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            body.extend_from_slice(&chunk.map_err(unreachable)?);
            if body.len() as u64 > max {
                return Err(unexpected(format!("the object is over {max} bytes")));
            }
        }
        Ok(body.into())
    }

    /// Streams the object into the file at `path`: for ffmpeg, which reads files.
    pub async fn download(&self, key: &str, path: &std::path::Path) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        let response = self.get(key).await?;
        let write_failed =
            |err: std::io::Error| unexpected(format!("cannot write {}: {err}", path.display()));
        let mut file = tokio::fs::File::create(path).await.map_err(write_failed)?;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            file.write_all(&chunk.map_err(unreachable)?)
                .await
                .map_err(write_failed)?;
        }
        file.flush().await.map_err(write_failed)
    }

    async fn get(&self, key: &str) -> Result<reqwest::Response, StoreError> {
        let url = self.sign_get_object(key, OWN_CALL_LIFETIME);
        let response = self.streaming.get(url).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(response);
        }
        let body = response.text().await.map_err(unreachable)?;
        Err(s3_error(status, &body).unwrap_or_else(|| unexpected(format!("GET answered {status}"))))
    }

    /// Stores `body` at `key`, replacing what is there: the companion's own objects (previews).
    pub async fn put_object(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), StoreError> {
        let (url, headers) = self.sign_put_object(
            key,
            body.len() as u64,
            OWN_CALL_LIFETIME,
            content_type,
            &BTreeMap::new(),
            false,
            None,
        );
        let length = body.len() as u64;
        self.put_streamed(url, length, &headers, body.into())
            .await
            .map(drop)
    }

    /// A URL that reads the object (Range requests work on it).
    pub fn sign_get_object(&self, key: &str, lifetime: Duration) -> Url {
        let credentials = self.credentials();
        self.bucket
            .get_object(Some(&credentials), key)
            .sign(lifetime)
    }

    /// PUTs a streamed body of `length` bytes to a presigned `url`; returns the store's ETag. The
    /// companion's fallback for browsers that cannot reach the store: bytes pass through, never
    /// held whole.
    pub async fn put_streamed(
        &self,
        url: Url,
        length: u64,
        headers: &BTreeMap<String, String>,
        body: reqwest::Body,
    ) -> Result<String, StoreError> {
        let mut request = self
            .streaming
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, length);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.map_err(unreachable)?;
        match etag {
            Some(etag) if (200..300).contains(&status) => Ok(etag),
            _ => Err(s3_error(status, &body)
                .unwrap_or_else(|| unexpected(format!("PUT answered {status} without an ETag")))),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<String, StoreError> {
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(unreachable)?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(s3_error(status, &body).unwrap_or_else(|| StoreError::S3 {
                status,
                code: format!("Http{status}"),
                message: "the store answered without an S3 error body".to_owned(),
            }))
        }
    }
}

/// The headers of a PUT's checksum: its value, and its algorithm as SDKs name it (some stores,
/// moto among them, keep a checksum only when told the algorithm).
fn checksum_headers(checksum: Option<(ChecksumAlgorithm, &str)>) -> BTreeMap<String, String> {
    let Some((algorithm, value)) = checksum else {
        return BTreeMap::new();
    };
    BTreeMap::from([
        (algorithm.header().to_owned(), value.to_owned()),
        (
            SDK_CHECKSUM_ALGORITHM.to_owned(),
            algorithm.s3_name().to_owned(),
        ),
    ])
}

/// The checksum an answer's headers state (`x-amz-checksum-*`, `x-amz-checksum-type`).
fn checksum_of(headers: &reqwest::header::HeaderMap) -> Option<Checksum> {
    let (algorithm, value) = ChecksumAlgorithm::ALL.into_iter().find_map(|algorithm| {
        let value = headers.get(algorithm.header())?.to_str().ok()?;
        Some((algorithm, value.to_owned()))
    })?;
    let kind = match headers
        .get(CHECKSUM_TYPE)
        .and_then(|value| value.to_str().ok())
    {
        Some("COMPOSITE") => ChecksumType::Composite,
        Some("FULL_OBJECT") => ChecksumType::FullObject,
        // Stores that leave the type out mean it by the value's form.
        _ if value.contains('-') => ChecksumType::Composite,
        _ => ChecksumType::FullObject,
    };
    Some(Checksum {
        algorithm,
        kind,
        value,
    })
}

/// CompleteMultipartUpload's list of parts, each with its `algorithm` checksum when the upload
/// carries checksums.
fn complete_body(parts: &[CompletedPart], algorithm: Option<ChecksumAlgorithm>) -> String {
    let mut body = String::from("<CompleteMultipartUpload>");
    for part in parts {
        body.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
            part.part,
            xml_text(&part.etag)
        ));
        if let (Some(algorithm), Some(value)) = (algorithm, &part.checksum) {
            let element = format!("Checksum{}", algorithm.s3_name());
            body.push_str(&format!("<{element}>{}</{element}>", xml_text(value)));
        }
        body.push_str("</Part>");
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A request that got no answer. The URL is left out: a presigned one is a credential for as long
/// as it lives, and this error ends up in logs.
fn unreachable(err: reqwest::Error) -> StoreError {
    StoreError::Unavailable(err.without_url().to_string())
}

/// An answer that is not what S3 answers: the store is there, but broken, which is no outage.
fn unexpected(err: impl std::fmt::Display) -> StoreError {
    StoreError::S3 {
        status: 500,
        code: "BadStoreAnswer".into(),
        message: format!("the store's answer could not be read: {err}"),
    }
}

/// The store's error document as a [`StoreError`], if the body is one.
fn s3_error(status: u16, body: &str) -> Option<StoreError> {
    let (code, message) = s3xml::error(body)?;
    Some(StoreError::S3 {
        // S3 may answer 200 and report the error in the body: that is a server error.
        status: if status == 200 { 500 } else { status },
        code,
        message,
    })
}

/// One page of ListParts.
#[derive(Debug, PartialEq)]
struct PartsPage {
    parts: Vec<StoredPart>,
    /// Where the next page starts, when the answer is truncated.
    next_marker: Option<u16>,
}

/// Reads a ListParts answer. Stores disagree on the root element (`ListPartsResult` for AWS,
/// `ListPartsResponse` for moto), which rusty-s3's strict parser refuses; [`s3xml`] does not
/// check it.
fn parse_list_parts(xml: &str) -> Option<PartsPage> {
    let page: s3xml::PartsPage = s3xml::read(xml).ok()?;
    let next_marker = if page.is_truncated {
        Some(page.next_part_number_marker?.trim().parse().ok()?)
    } else {
        None
    };
    let parts = page
        .parts
        .into_iter()
        .map(|mut part| StoredPart {
            checksum: part.checksum(),
            part: part.part_number,
            size: part.size,
            etag: part.etag,
        })
        .collect();
    Some(PartsPage { parts, next_marker })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parts_answers_of_aws_and_moto_are_read() {
        let aws = r#"<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket>
<PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>2</NextPartNumberMarker><MaxParts>2</MaxParts>
<IsTruncated>true</IsTruncated><Part><PartNumber>1</PartNumber><LastModified>x</LastModified>
<ETag>&quot;aa&quot;</ETag><Size>5242880</Size></Part><Part><PartNumber>2</PartNumber>
<ETag>"bb"</ETag><Size>7</Size></Part></ListPartsResult>"#;
        let page = parse_list_parts(aws).unwrap();
        assert_eq!(page.next_marker, Some(2));
        assert_eq!(
            page.parts,
            vec![
                StoredPart {
                    checksum: None,
                    part: 1,
                    size: 5_242_880,
                    etag: "\"aa\"".into()
                },
                StoredPart {
                    checksum: None,
                    part: 2,
                    size: 7,
                    etag: "\"bb\"".into()
                },
            ]
        );
        let moto_empty = "<ListPartsResponse><NextPartNumberMarker>0</NextPartNumberMarker><IsTruncated>false</IsTruncated></ListPartsResponse>";
        // A store (or what answers in its place) that sends nonsense gets no parts kept.
        for hostile in [
            "<ListPartsResult><Part><PartNumber>99999999999</PartNumber><Size>1</Size><ETag>e</ETag></Part></ListPartsResult>",
            "<ListPartsResult><Part><PartNumber>1</PartNumber><Size>-5</Size><ETag>e</ETag></Part></ListPartsResult>",
            "<ListPartsResult><IsTruncated>true</IsTruncated><IsTruncated>false</IsTruncated></ListPartsResult>",
            "<ListPartsResult><IsTruncated>true</IsTruncated></ListPartsResult>",
            "<ListPartsResult><Part><PartNumber>1</PartNumber>",
        ] {
            assert_eq!(parse_list_parts(hostile), None, "{hostile}");
        }
        let empty_marker = "<ListPartsResult><NextPartNumberMarker/><IsTruncated>false</IsTruncated></ListPartsResult>";
        assert_eq!(
            parse_list_parts(empty_marker),
            Some(PartsPage {
                parts: vec![],
                next_marker: None
            }),
            "an empty marker on the last page is no marker"
        );
        assert_eq!(
            parse_list_parts(moto_empty),
            Some(PartsPage {
                parts: vec![],
                next_marker: None
            })
        );
        assert_eq!(
            parse_list_parts(
                "<ListPartsResult><Part><PartNumber>x</PartNumber></Part></ListPartsResult>"
            ),
            None
        );
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_reached_is_logged_without_the_presigned_url() {
        let presigned = "http://127.0.0.1:9/b/k?X-Amz-Credential=AKIA&X-Amz-Signature=abcdef";
        let err = reqwest::get(presigned).await.unwrap_err();
        assert!(
            err.to_string().contains("X-Amz-Signature"),
            "reqwest names the URL"
        );
        let logged = unreachable(err).to_string();
        assert!(
            !logged.contains("X-Amz") && !logged.contains("127.0.0.1:9/b/k"),
            "{logged}"
        );
    }

    #[test]
    fn an_error_in_a_200_answer_is_a_server_error() {
        assert!(matches!(
            s3_error(200, "<Error><Code>InternalError</Code></Error>"),
            Some(StoreError::S3 { status: 500, .. })
        ));
        assert!(matches!(
            s3_error(400, "<Error><Code>EntityTooSmall</Code></Error>"),
            Some(StoreError::S3 { status: 400, .. })
        ));
    }
}
