//! The HTTP API of DESIGN.md: config, create, batched sign, list parts, complete, abort, files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_core::protocol::{
    BatchCreated, BatchRefusal, COMPLETE_SINGLE_PATH, CompanionConfig, CompleteUpload,
    CreateUpload, CreateUploads, ErrorBody, PartList, PartsSigned, Relayed, SignParts, SignedPart,
    SignedUrl, StoredObject, UploadCreated, UploadsCreated,
};
use ferry_core::{Plan, UploadMode};
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{Auth, AuthError};
use crate::keys::{KeyError, object_key, owner_of_key, owner_segment};
use crate::metrics::Metrics;
use crate::processing::{Finished, Processing, animation_key, thumbnail_key};
use crate::store::{ObjectHead, Store, StoreError};
use crate::streaming::{MinRate, TooSlow};
use crate::token::{Claims, TokenError, TokenKey};
use ferry_core::checksum::{Checksum, ChecksumAlgorithm, ChecksumType};

/// Most parts one sign call may ask for. Clients ask for a few dozen at a time; the cap keeps one
/// call's answer small.
pub const MAX_PARTS_PER_SIGN: usize = 1000;
/// Most files one batch create may carry: clients send a few dozen, and the JSON body limit
/// holds a hundred with their names and metadata.
pub const MAX_FILES_PER_BATCH: usize = 100;
/// Largest file sent as a POST form: a form's progress is only heard at its end, and the store
/// may hold a form's file in memory.
pub const MAX_FORM_BYTES: u64 = 1024 * 1024;
/// Longest content type accepted (S3 has no limit of its own; a real one is under 100 bytes).
const MAX_CONTENT_TYPE_BYTES: usize = 255;

/// Everything a request needs; the companion keeps no per-upload state.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub tokens: TokenKey,
    pub advertised: CompanionConfig,
    pub key_prefix: String,
    pub token_lifetime: Duration,
    /// How long a download link that complete returns works, with authentication on.
    pub download_link_lifetime: Duration,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    /// The slowest a streamed body may arrive on the fallback routes.
    pub min_body_rate: MinRate,
    /// Work after upload (previews, webhook), when configured.
    pub processing: Option<Processing>,
    /// Whether the store takes presigned POST forms and checks the checksum in them.
    pub post_forms: bool,
}

impl AppState {
    fn url_lifetime(&self) -> Duration {
        Duration::from_secs(self.advertised.url_lifetime_secs)
    }

    /// The token's claims, if it is genuine, unexpired, for this upload and this caller.
    fn verify(
        &self,
        headers: &HeaderMap,
        token: &str,
        upload_id: Option<&str>,
    ) -> Result<Claims, ApiError> {
        let owner = self.auth.owner(headers)?;
        let claims = self.tokens.verify(token, unix_now())?;
        Self::check_claims(claims, &owner, upload_id)
    }

    /// As [`Self::verify`], but an expired token is still taken: aborting is harmless and only
    /// frees the store, and nobody else could ever abort the upload.
    fn verify_for_abort(
        &self,
        headers: &HeaderMap,
        token: &str,
        upload_id: &str,
    ) -> Result<Claims, ApiError> {
        let owner = self.auth.owner(headers)?;
        let claims = self.tokens.verify_signature(token)?;
        Self::check_claims(claims, &owner, Some(upload_id))
    }

    fn check_claims(
        claims: Claims,
        owner: &str,
        upload_id: Option<&str>,
    ) -> Result<Claims, ApiError> {
        if claims.upload_id.as_deref() != upload_id {
            return Err(ApiError::TokenMismatch);
        }
        if claims.owner != owner {
            return Err(ApiError::NotYourUpload);
        }
        Ok(claims)
    }

    /// Where the object is served. With authentication on, the path carries a signed link that
    /// works without credentials until it expires, so it can go in an `<img src>` or an email.
    fn download_location(&self, key: &str) -> String {
        let path = location(key);
        if !self.auth.is_enabled() {
            return path;
        }
        let expires = unix_now() + self.download_link_lifetime.as_secs();
        let signature = self.tokens.sign_link(key, expires);
        format!("{path}?expires={expires}&signature={signature}")
    }

    fn conditional_writes(&self) -> bool {
        self.advertised.conditional_writes
    }

    /// An upload is stored: its job goes to the processing queue, if there is one.
    fn finished(&self, claims: &Claims, etag: &str, size: u64) {
        if let Some(processing) = &self.processing {
            processing.submit(Finished {
                key: claims.key.clone(),
                size,
                etag: etag.to_owned(),
                owner: claims.owner.clone(),
            });
        }
    }
}

/// `Path`, `Query` and `Json` whose refusals answer the JSON error body like every other refusal.
pub struct ApiPath<T>(pub T);
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The JSON routes that create, sign and finish uploads: admission control and a timeout guard
/// them.
pub fn upload_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/uploads", post(create))
        .route("/api/uploads/batch", post(create_batch))
        .route("/api/uploads/{id}/sign", post(sign))
        .route("/api/uploads/{id}/parts", get(list_parts))
        .route("/api/uploads/{id}", axum::routing::delete(abort))
}

/// Complete: admission control and a JSON body limit, but no short timeout, as the store may take
/// a while to assemble a large object.
pub fn finishing_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/uploads/{id}/complete", post(complete))
        .route(COMPLETE_SINGLE_PATH, post(complete_single))
}

/// The fallback routes that stream part bytes: admission control, but no JSON body limit and no
/// short timeout.
pub fn streaming_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/uploads/{id}/parts/{part}",
            axum::routing::put(put_part),
        )
        .route("/api/objects", axum::routing::put(put_object))
}

/// Routes anyone may call at any rate: configuration, downloads, health and metrics.
pub fn open_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/config", get(config))
        .route("/api/files/{*key}", get(file))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// Why a request was refused. The body is an [`ErrorBody`]; internals never reach the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// The body is not the JSON asked for: malformed (400), of the wrong shape (422), too large
    /// (413) or not declared JSON (415).
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    #[error("the file is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("files of type {0:?} are not accepted")]
    TypeNotAllowed(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the upload token is for another upload")]
    TokenMismatch,
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    #[error("this upload belongs to someone else")]
    NotYourUpload,
    #[error("part {part} is outside 1..={count}")]
    PartOutOfRange { part: u32, count: u32 },
    #[error("the body must be exactly {expected} bytes (Content-Length), not {given:?}")]
    WrongLength { expected: u64, given: Option<u64> },
    #[error("{0}")]
    BadKey(#[from] KeyError),
    #[error("the download link is not valid: {0}")]
    BadLink(TokenError),
    #[error("this file belongs to someone else")]
    NotYourFile,
    #[error("a sign call may ask for at most {max} parts, not {given}")]
    TooManyParts { given: usize, max: usize },
    #[error("a batch may create 1 to {max} uploads, not {given}")]
    TooManyFiles { given: usize, max: usize },
    #[error("a file of {size} bytes goes in {parts} parts: create it alone (POST /api/uploads)")]
    NotSingle { size: u64, parts: u32 },
    #[error("part {part} was never uploaded")]
    PartMissing { part: u32 },
    #[error("the store holds part {part} with another ETag than the one given")]
    PartEtagMismatch { part: u32 },
    #[error("{what} must carry a {algorithm} checksum (base64 of its digest)")]
    ChecksumRequired {
        what: String,
        algorithm: ChecksumAlgorithm,
    },
    #[error("the store holds part {part} with another checksum than the one given")]
    PartChecksumMismatch { part: u32 },
    #[error("the store holds the object with checksum {stored}, not {expected}: it was removed")]
    ObjectChecksumMismatch { expected: String, stored: String },
    #[error("part {part} is {stored} bytes where the plan says {planned}: the upload was aborted")]
    PartSizeMismatch {
        part: u32,
        planned: u64,
        stored: u64,
    },
    #[error(
        "the store assembled {stored} bytes where the plan says {planned}: the object was removed"
    )]
    ObjectSizeMismatch { planned: u64, stored: u64 },
    #[error("the upload is finished: its object is stored and cannot be written again")]
    AlreadyStored,
    #[error("the upload is gone, and no object matches the parts given")]
    UploadGone,
    #[error("no {0} of this object: not made yet, or not an image or video")]
    NoPreview(&'static str),
    #[error(transparent)]
    TooSlow(#[from] TooSlow),
    #[error("the companion is busy; try again shortly")]
    Busy,
    #[error("the request took longer than the companion allows")]
    TimedOut,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Axum's refusals of a body, path or query keep their status and message, in our error body.
macro_rules! rejected {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                Self::Rejected {
                    status: rejection.status(),
                    message: rejection.body_text(),
                }
            }
        }
    )*};
}
rejected!(JsonRejection, PathRejection, QueryRejection);

impl ApiError {
    /// The status and body this refusal answers.
    fn answer(&self) -> (StatusCode, ErrorBody) {
        let (status, code) = match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest".to_owned()),
            Self::Rejected { status, .. } => (*status, "BadRequest".to_owned()),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "TooLarge".to_owned()),
            Self::TypeNotAllowed(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "TypeNotAllowed".to_owned(),
            ),
            Self::Token(TokenError::Expired) => (StatusCode::FORBIDDEN, "TokenExpired".to_owned()),
            Self::Token(_) => (StatusCode::FORBIDDEN, "BadToken".to_owned()),
            Self::TokenMismatch => (StatusCode::FORBIDDEN, "TokenMismatch".to_owned()),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized".to_owned()),
            Self::NotYourUpload => (StatusCode::FORBIDDEN, "NotYourUpload".to_owned()),
            Self::PartOutOfRange { .. } => (StatusCode::FORBIDDEN, "PartOutOfRange".to_owned()),
            Self::WrongLength { .. } => (StatusCode::BAD_REQUEST, "WrongLength".to_owned()),
            Self::BadKey(_) => (StatusCode::BAD_REQUEST, "BadKey".to_owned()),
            Self::BadLink(TokenError::Expired) => (StatusCode::FORBIDDEN, "LinkExpired".to_owned()),
            Self::BadLink(_) => (StatusCode::FORBIDDEN, "BadLink".to_owned()),
            Self::NotYourFile => (StatusCode::FORBIDDEN, "NotYourFile".to_owned()),
            Self::TooManyParts { .. } => (StatusCode::BAD_REQUEST, "TooManyParts".to_owned()),
            Self::TooManyFiles { .. } => (StatusCode::BAD_REQUEST, "TooManyFiles".to_owned()),
            Self::NotSingle { .. } => (StatusCode::BAD_REQUEST, "NotSingle".to_owned()),
            Self::PartMissing { .. }
            | Self::PartEtagMismatch { .. }
            | Self::PartChecksumMismatch { .. } => {
                (StatusCode::BAD_REQUEST, "InvalidPart".to_owned())
            }
            Self::ChecksumRequired { .. } => {
                (StatusCode::BAD_REQUEST, "ChecksumRequired".to_owned())
            }
            Self::ObjectChecksumMismatch { .. } => {
                (StatusCode::BAD_REQUEST, "BadDigest".to_owned())
            }
            Self::PartSizeMismatch { .. } => (StatusCode::BAD_REQUEST, "SizeMismatch".to_owned()),
            Self::ObjectSizeMismatch { .. } => (StatusCode::CONFLICT, "SizeMismatch".to_owned()),
            Self::AlreadyStored => (StatusCode::CONFLICT, "AlreadyStored".to_owned()),
            Self::UploadGone => (StatusCode::NOT_FOUND, "NoSuchUpload".to_owned()),
            Self::NoPreview(_) => (StatusCode::NOT_FOUND, "NoPreview".to_owned()),
            Self::TooSlow(_) => (StatusCode::REQUEST_TIMEOUT, "TooSlow".to_owned()),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "Busy".to_owned()),
            Self::TimedOut => (StatusCode::REQUEST_TIMEOUT, "TimedOut".to_owned()),
            // The store's answers (EntityTooSmall, InvalidPart, NoSuchUpload, InternalError,
            // SlowDown) pass through with their status and S3 code, so the client can say what
            // the store said and retry what can be retried. Only a store that did not answer at
            // all is a 502: an outage, which clients wait out.
            Self::Store(StoreError::S3 { status, code, .. }) => (
                StatusCode::from_u16(*status)
                    .ok()
                    .filter(|status| status.is_client_error() || status.is_server_error())
                    .filter(|status| *status != StatusCode::BAD_GATEWAY)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code.clone(),
            ),
            Self::Store(StoreError::Unavailable(_)) => {
                (StatusCode::BAD_GATEWAY, "StoreUnavailable".to_owned())
            }
        };
        let message = match self {
            Self::Store(StoreError::S3 { message, .. }) if status.is_client_error() => {
                format!("the store refused: {message}")
            }
            // What went wrong inside stays in the log.
            Self::Store(_) => "the store did not answer as expected".to_owned(),
            other => other.to_string(),
        };
        (status, ErrorBody { code, message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.answer();
        let mut response = (status, Json(body)).into_response();
        if let Self::Busy = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
            .extensions_mut()
            .insert(Refusal(self.to_string().into()));
        response
    }
}

/// Ends a request that runs longer than `limit` with 408 `TimedOut`.
pub async fn time_limit(
    State(limit): State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    tokio::time::timeout(limit, next.run(request))
        .await
        .unwrap_or_else(|_| ApiError::TimedOut.into_response())
}

/// Why a request was refused, in full: carried from [`ApiError`] to [`log_refusals`].
#[derive(Debug, Clone)]
pub struct Refusal(pub Arc<str>);

/// Logs every refusal once, in the request's span: failures of the companion or the store as
/// errors, the client's own mistakes and a busy gate at debug level.
pub async fn log_refusals(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(Refusal(reason)) = response.extensions().get::<Refusal>() {
        let status = response.status();
        // A full admission gate is the companion working as meant under load (and counted in
        // /metrics): a line per refusal would flood the log just then.
        if status.is_server_error() && status != axum::http::StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = status.as_u16(), %reason, "refused");
        } else {
            tracing::debug!(status = status.as_u16(), %reason, "refused");
        }
    }
    response
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Characters kept as they are in a key's path segments.
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the companion serves an object.
fn location(key: &str) -> String {
    let encoded: Vec<String> = key
        .split('/')
        .map(|segment| utf8_percent_encode(segment, KEY_SEGMENT).to_string())
        .collect();
    format!("/api/files/{}", encoded.join("/"))
}

async fn config(State(state): State<Arc<AppState>>) -> Json<CompanionConfig> {
    Json(state.advertised.clone())
}

async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Result<Json<CreateUpload>, JsonRejection>,
) -> Result<Json<UploadCreated>, ApiError> {
    let owner = state.auth.owner(&headers)?;
    let Json(request) = request?;
    create_upload(&state, owner, request, Batched::No)
        .await
        .map(Json)
}

/// Files of one part each, created and signed in one call: each gets the answer its own create
/// would have had, so one refused file fails no other.
async fn create_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Result<Json<CreateUploads>, JsonRejection>,
) -> Result<Json<UploadsCreated>, ApiError> {
    let owner = state.auth.owner(&headers)?;
    let Json(request) = request?;
    let given = request.files.len();
    if !(1..=MAX_FILES_PER_BATCH).contains(&given) {
        return Err(ApiError::TooManyFiles {
            given,
            max: MAX_FILES_PER_BATCH,
        });
    }
    let mut uploads = Vec::with_capacity(given);
    for file in request.files {
        uploads.push(
            match create_upload(&state, owner.clone(), file, Batched::Yes).await {
                Ok(created) => BatchCreated::Created(created),
                Err(refusal) => {
                    let (status, error) = refusal.answer();
                    BatchCreated::Refused(BatchRefusal {
                        status: status.as_u16(),
                        code: error.code,
                        message: error.message,
                    })
                }
            },
        );
    }
    Ok(Json(UploadsCreated { uploads }))
}

/// Whether a create came in a batch, which takes only files of one part: their create asks
/// nothing of the store, so a batch answers at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batched {
    Yes,
    No,
}

async fn create_upload(
    state: &AppState,
    owner: String,
    request: CreateUpload,
    batched: Batched,
) -> Result<UploadCreated, ApiError> {
    let policy = &state.advertised;
    if request.size > policy.max_file_size {
        return Err(ApiError::TooLarge {
            size: request.size,
            max: policy.max_file_size,
        });
    }
    check_content_type(&request.content_type)?;
    if !policy.allowed_types.is_empty() && !policy.allowed_types.contains(&request.content_type) {
        return Err(ApiError::TypeNotAllowed(request.content_type));
    }
    // The companion's store calls and tokens take a `BTreeMap`; the protocol's map is the
    // wasm package's smaller one.
    let metadata: BTreeMap<String, String> = request.metadata.clone().into_iter().collect();
    check_metadata(&metadata)?;
    let preferred = request.part_size.unwrap_or(policy.preferred_part_size);
    let plan =
        Plan::new(request.size, preferred, &policy.limits).map_err(|_| ApiError::TooLarge {
            size: request.size,
            max: policy.limits.max_object_size,
        })?;
    if batched == Batched::Yes && plan.mode == UploadMode::Multipart {
        return Err(ApiError::NotSingle {
            size: request.size,
            parts: plan.part_count,
        });
    }
    let key = object_key(&state.key_prefix, &owner, &request.name);
    let algorithm = policy.checksum;
    let (upload_id, url) = match plan.mode {
        UploadMode::Single => {
            let checksum = match algorithm {
                Some(algorithm) => Some((
                    algorithm,
                    checked_checksum(algorithm, request.checksum.as_deref(), "a single PUT")?,
                )),
                None => None,
            };
            let checksum = checksum
                .as_ref()
                .map(|(algorithm, value)| (*algorithm, value.as_str()));
            // A form only with a checksum the store checks: it is what keeps a replayed form
            // from storing other bytes, where a PUT has `If-None-Match`.
            let form = checksum
                .filter(|_| request.form && state.post_forms && request.size <= MAX_FORM_BYTES);
            let (url, headers, form) = match form {
                Some(checksum) => {
                    let (url, fields) = state.store.sign_post_object(
                        &key,
                        request.size,
                        state.url_lifetime(),
                        &request.content_type,
                        &metadata,
                        checksum,
                    );
                    (url, BTreeMap::new(), fields)
                }
                None => {
                    let (url, headers) = state.store.sign_put_object(
                        &key,
                        request.size,
                        state.url_lifetime(),
                        &request.content_type,
                        &metadata,
                        state.conditional_writes(),
                        checksum,
                    );
                    (url, headers, BTreeMap::new())
                }
            };
            let url = SignedUrl {
                url: url.to_string(),
                headers: headers.into_iter().collect(),
                expires_at: unix_now() + policy.url_lifetime_secs,
                expires_in: Some(policy.url_lifetime_secs),
                form: form.into_iter().collect(),
            };
            (None, Some(url))
        }
        UploadMode::Multipart => {
            let upload_id = state
                .store
                .create_multipart_upload(&key, &request.content_type, &metadata, algorithm)
                .await?;
            (Some(upload_id), None)
        }
    };
    let claims = Claims {
        upload_id: upload_id.clone(),
        key: key.clone(),
        size: request.size,
        part_size: plan.part_size,
        owner,
        expires_at: unix_now() + state.token_lifetime.as_secs(),
        // A single PUT may have to go through the companion, which must sign the same headers.
        metadata: if upload_id.is_none() {
            metadata
        } else {
            Default::default()
        },
        content_type: if upload_id.is_none() {
            request.content_type.clone()
        } else {
            String::new()
        },
        checksum: algorithm,
    };
    state.metrics.created();
    Ok(UploadCreated {
        upload_id,
        location: state.download_location(&key),
        key,
        token: state.tokens.sign(&claims),
        part_size: plan.part_size,
        part_count: plan.part_count,
        mode: plan.mode,
        url,
        expires_at: claims.expires_at,
    })
}

/// Part `part` of the plan as the store numbers it, and its exact length in bytes.
fn planned_part(plan: &Plan, part: u32) -> Result<(u16, u64), ApiError> {
    let number = u16::try_from(part)
        .ok()
        .filter(|_| (1..=plan.part_count).contains(&part))
        .ok_or(ApiError::PartOutOfRange {
            part,
            count: plan.part_count,
        })?;
    let range = plan.part_range(part);
    Ok((number, range.end - range.start))
}

async fn sign(
    State(state): State<Arc<AppState>>,
    ApiPath(upload_id): ApiPath<String>,
    headers: HeaderMap,
    request: Result<Json<SignParts>, JsonRejection>,
) -> Result<Json<PartsSigned>, ApiError> {
    let Json(request) = request?;
    let claims = state.verify(&headers, &request.token, Some(&upload_id))?;
    if request.parts.len() > MAX_PARTS_PER_SIGN {
        return Err(ApiError::TooManyParts {
            given: request.parts.len(),
            max: MAX_PARTS_PER_SIGN,
        });
    }
    let plan = claims.plan()?;
    if claims.checksum.is_some() && request.checksums.len() != request.parts.len() {
        return Err(ApiError::BadRequest(format!(
            "{} parts and {} checksums: each part needs its checksum",
            request.parts.len(),
            request.checksums.len()
        )));
    }
    // Check every part before signing any: a refused call signs nothing. A part asked for twice
    // is signed once, with its first checksum.
    let mut parts: BTreeMap<u32, (u16, u64, Option<String>)> = BTreeMap::new();
    for (index, &part) in request.parts.iter().enumerate() {
        let (number, length) = planned_part(&plan, part)?;
        let checksum = match claims.checksum {
            Some(algorithm) => {
                let given = request.checksums.get(index).map(String::as_str);
                Some(checked_checksum(algorithm, given, &format!("part {part}"))?)
            }
            None => None,
        };
        parts.entry(part).or_insert((number, length, checksum));
    }
    let expires_at = unix_now() + state.advertised.url_lifetime_secs;
    let urls = parts
        .into_iter()
        .map(|(part, (number, length, checksum))| {
            let (url, headers) = state.store.sign_upload_part(
                &claims.key,
                &upload_id,
                number,
                length,
                state.url_lifetime(),
                claims.checksum.zip(checksum.as_deref()),
            );
            SignedPart {
                part,
                url: SignedUrl {
                    url: url.to_string(),
                    headers: headers.into_iter().collect(),
                    expires_at,
                    expires_in: Some(state.advertised.url_lifetime_secs),
                    form: Default::default(),
                },
            }
        })
        .collect::<Vec<_>>();
    state.metrics.signed(urls.len());
    Ok(Json(PartsSigned { urls }))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: String,
}

async fn list_parts(
    State(state): State<Arc<AppState>>,
    ApiPath(upload_id): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<PartList>, ApiError> {
    let claims = state.verify(&headers, &query.token, Some(&upload_id))?;
    let parts = state.store.list_parts(&claims.key, &upload_id).await?;
    Ok(Json(PartList { parts }))
}

/// S3's ETag of a multipart object: the MD5 of the parts' binary MD5s, then `-` and the count.
/// `None` if an ETag is not an MD5 (some stores make their own).
fn multipart_etag(etags: &[String]) -> Option<String> {
    let mut md5_of_md5s = Md5::new();
    for etag in etags {
        let digest = hex::decode(etag.trim_matches('"')).ok()?;
        if digest.len() != 16 {
            return None;
        }
        md5_of_md5s.update(digest);
    }
    Some(format!(
        "{}-{}",
        hex::encode(md5_of_md5s.finalize()),
        etags.len()
    ))
}

/// Complete: checks what the store holds against the plan before asking it to assemble, and
/// what it assembled after, so the object is exactly the size the token promised.
async fn complete(
    State(state): State<Arc<AppState>>,
    ApiPath(upload_id): ApiPath<String>,
    headers: HeaderMap,
    request: Result<Json<CompleteUpload>, JsonRejection>,
) -> Result<Json<StoredObject>, ApiError> {
    let Json(request) = request?;
    let claims = state.verify(&headers, &request.token, Some(&upload_id))?;
    let plan = claims.plan()?;
    let count = plan.part_count;
    let in_order = request.parts.len() == count as usize
        && request
            .parts
            .iter()
            .zip(1..)
            .all(|(part, expected)| part.part == expected);
    if !in_order {
        return Err(ApiError::BadRequest(format!(
            "complete must list parts 1..={count} in order, each once"
        )));
    }
    if let Some(algorithm) = claims.checksum {
        for part in &request.parts {
            let what = format!("part {}", part.part);
            checked_checksum(algorithm, part.checksum.as_deref(), &what)?;
        }
    }
    let etags: Vec<String> = request.parts.iter().map(|part| part.etag.clone()).collect();
    let stored = match state.store.list_parts(&claims.key, &upload_id).await {
        Ok(stored) => stored,
        Err(err) if finished_before(&err) => {
            return stored_by_an_earlier_complete(&state, claims, &etags).await;
        }
        Err(err) => return Err(err.into()),
    };
    let stored: BTreeMap<u32, _> = stored.into_iter().map(|held| (held.part, held)).collect();
    for (part, given) in (1..=count).zip(&request.parts) {
        let etag = &given.etag;
        let (_, planned) = planned_part(&plan, part)?;
        let Some(held) = stored.get(&part) else {
            return Err(ApiError::PartMissing { part });
        };
        if held.size != planned {
            // Bytes the plan never allowed: the upload cannot become the promised object.
            abort_quietly(&state, &claims.key, &upload_id).await;
            return Err(ApiError::PartSizeMismatch {
                part,
                planned,
                stored: held.size,
            });
        }
        if held.etag.trim_matches('"') != etag.trim_matches('"') {
            return Err(ApiError::PartEtagMismatch { part });
        }
        if held.checksum.is_some() && held.checksum != given.checksum {
            return Err(ApiError::PartChecksumMismatch { part });
        }
    }
    let expected = match claims.checksum {
        Some(algorithm) => Some(expected_checksum(algorithm, &plan, &request)?),
        None => None,
    };
    let etag = match state
        .store
        .complete_multipart_upload(
            &claims.key,
            &upload_id,
            &request.parts,
            expected.as_ref(),
            state.conditional_writes(),
        )
        .await
    {
        Ok(etag) => etag,
        // Another Complete of the same upload finished first.
        Err(err) if finished_before(&err) => {
            return stored_by_an_earlier_complete(&state, claims, &etags).await;
        }
        Err(err) => return Err(err.into()),
    };
    let head = checked_object(&state, &claims, expected.as_ref()).await?;
    state.metrics.completed(head.size);
    state.finished(&claims, &etag, head.size);
    Ok(Json(stored_object(&state, claims.key, etag, &head)))
}

/// The value a client gave for `what`, which must be a checksum of `algorithm`.
fn checked_checksum(
    algorithm: ChecksumAlgorithm,
    given: Option<&str>,
    what: &str,
) -> Result<String, ApiError> {
    given
        .filter(|value| ferry_core::checksum::decode(algorithm, value).is_some())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::ChecksumRequired {
            what: what.to_owned(),
            algorithm,
        })
}

/// The object's checksum the parts make. A full-object one must be the one the client computed
/// from the same parts (it goes to the store, which checks the bytes against it).
fn expected_checksum(
    algorithm: ChecksumAlgorithm,
    plan: &Plan,
    request: &CompleteUpload,
) -> Result<Checksum, ApiError> {
    let parts: Vec<(&str, u64)> = request
        .parts
        .iter()
        .map(|part| {
            let range = plan.part_range(part.part);
            (
                part.checksum.as_deref().unwrap_or_default(),
                range.end - range.start,
            )
        })
        .collect();
    let combined = ferry_core::checksum::object_checksum(algorithm, &parts).ok_or_else(|| {
        ApiError::ChecksumRequired {
            what: "every part".into(),
            algorithm,
        }
    })?;
    match &request.checksum {
        Some(given) if *given != combined => Err(ApiError::BadRequest(format!(
            "the object's checksum {} is not the one its parts make ({})",
            given.value, combined.value
        ))),
        _ => Ok(combined),
    }
}

/// The object the token's upload stored, checked by [`checked`].
async fn checked_object(
    state: &AppState,
    claims: &Claims,
    expected: Option<&Checksum>,
) -> Result<ObjectHead, ApiError> {
    match state.store.head_object(&claims.key).await? {
        Some(head) => checked(state, claims, head, expected).await,
        None => Err(StoreError::S3 {
            status: 500,
            code: "BadStoreAnswer".into(),
            message: "the store completed an object it then did not have".into(),
        }
        .into()),
    }
}

/// `head`, the object the token's upload stored, which must be the planned size and, when the
/// store states a full-object checksum, have the one expected: an object that differs is removed
/// and refused (a store that does not verify checksums itself is checked here).
async fn checked(
    state: &AppState,
    claims: &Claims,
    head: ObjectHead,
    expected: Option<&Checksum>,
) -> Result<ObjectHead, ApiError> {
    let refusal = if head.size != claims.size {
        Some(ApiError::ObjectSizeMismatch {
            planned: claims.size,
            stored: head.size,
        })
    } else {
        match (expected, &head.checksum) {
            (Some(expected), Some(stored))
                if expected.kind == ChecksumType::FullObject
                    && stored.algorithm == expected.algorithm
                    && stored.kind == ChecksumType::FullObject
                    && stored.value != expected.value =>
            {
                Some(ApiError::ObjectChecksumMismatch {
                    expected: expected.value.clone(),
                    stored: stored.value.clone(),
                })
            }
            _ => None,
        }
    };
    if let Some(refusal) = refusal {
        if let Err(err) = state.store.delete_object(&claims.key).await {
            tracing::error!(%err, key = %claims.key, "could not remove an object unlike its plan");
        }
        return Err(refusal);
    }
    Ok(head)
}

/// Complete of a single PUT, when the companion acts on finished uploads (previews, webhook):
/// the object the token names must be stored, at the planned size.
async fn complete_single(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Result<Json<CompleteUpload>, JsonRejection>,
) -> Result<Json<StoredObject>, ApiError> {
    let Json(request) = request?;
    let claims = state.verify(&headers, &request.token, None)?;
    let Some(head) = state.store.head_object(&claims.key).await? else {
        return Err(ApiError::PartMissing { part: 1 });
    };
    let head = checked(&state, &claims, head, None).await?;
    state.metrics.completed(head.size);
    state.finished(&claims, &head.etag, head.size);
    Ok(Json(stored_object(
        &state,
        claims.key,
        head.etag.clone(),
        &head,
    )))
}

/// Whether the store says the upload is finished already: gone, or its key taken.
fn finished_before(err: &StoreError) -> bool {
    matches!(err, StoreError::S3 { code, .. } if code == "NoSuchUpload" || code == "PreconditionFailed")
}

/// A Complete asked again after its first try succeeded (its answer lost, or two racing): the
/// object is there, and answers it if it is the one these parts make. Anything else (made-up
/// ETags) is refused.
async fn stored_by_an_earlier_complete(
    state: &AppState,
    claims: Claims,
    etags: &[String],
) -> Result<Json<StoredObject>, ApiError> {
    match state.store.head_object(&claims.key).await? {
        Some(head)
            if head.size == claims.size
                && multipart_etag(etags).as_deref() == Some(head.etag.trim_matches('"')) =>
        {
            Ok(Json(stored_object(
                state,
                claims.key,
                head.etag.clone(),
                &head,
            )))
        }
        _ => Err(ApiError::UploadGone),
    }
}

fn stored_object(state: &AppState, key: String, etag: String, head: &ObjectHead) -> StoredObject {
    StoredObject {
        location: state.download_location(&key),
        key,
        etag,
        size: head.size,
        checksum: head.checksum.clone(),
    }
}

/// Aborts an upload that must not complete; a failure is logged, as the janitor sweeps it later.
async fn abort_quietly(state: &AppState, key: &str, upload_id: &str) {
    match state.store.abort_multipart_upload(key, upload_id).await {
        Ok(()) => state.metrics.aborted(),
        Err(err) => tracing::warn!(%err, %key, "could not abort a refused upload"),
    }
}

async fn abort(
    State(state): State<Arc<AppState>>,
    ApiPath(upload_id): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<StatusCode, ApiError> {
    let claims = state.verify_for_abort(&headers, &query.token, &upload_id)?;
    state
        .store
        .abort_multipart_upload(&claims.key, &upload_id)
        .await?;
    state.metrics.aborted();
    Ok(StatusCode::NO_CONTENT)
}

/// A download link's query, as [`AppState::download_location`] writes it.
#[derive(Debug, Deserialize)]
struct LinkQuery {
    expires: Option<u64>,
    signature: Option<String>,
    /// Which preview `{key}/preview` serves: `thumbnail` (the default, JPEG) or `animation`
    /// (a video's GIF).
    kind: Option<String>,
}

/// Redirects to a presigned GET of exactly one object the companion stored, or of its preview
/// (`{key}/preview`). The key is checked whole before anything is signed; with authentication
/// on, the caller must own the object or hold a link the companion issued for it.
async fn file(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    ApiPath(key): ApiPath<String>,
    ApiQuery(link): ApiQuery<LinkQuery>,
) -> Result<Response, ApiError> {
    // `%2F` would decode to a separator the client hid from the router.
    let raw = uri.path().to_ascii_lowercase();
    if raw.contains("%2f") || raw.contains("%5c") {
        return Err(KeyError::EncodedSeparator.into());
    }
    // A key has exactly three segments under the prefix, so `{key}/preview` is never a key.
    let (key, preview) = match key.strip_suffix("/preview") {
        Some(object) if owner_of_key(&state.key_prefix, object).is_ok() => {
            (object.to_owned(), true)
        }
        _ => (key, false),
    };
    let owner = owner_of_key(&state.key_prefix, &key)?;
    if state.auth.is_enabled() {
        match (link.expires, link.signature) {
            (Some(expires), Some(signature)) => state
                .tokens
                .verify_link(&key, expires, &signature, unix_now())
                .map_err(ApiError::BadLink)?,
            _ => {
                let caller = state.auth.owner(&headers)?;
                if owner_segment(&caller) != owner {
                    return Err(ApiError::NotYourFile);
                }
            }
        }
    }
    let target = if preview {
        let (name, preview_key) = match link.kind.as_deref() {
            None | Some("thumbnail") => ("thumbnail", thumbnail_key(&key)),
            Some("animation") => ("animation", animation_key(&key)),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "no preview kind {other:?}: ask for thumbnail or animation"
                )));
            }
        };
        if state.store.head_object(&preview_key).await?.is_none() {
            return Err(ApiError::NoPreview(name));
        }
        preview_key
    } else {
        key
    };
    let url = state.store.sign_get_object(&target, state.url_lifetime());
    let mut response = Redirect::temporary(url.as_str()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// A content type goes into a signed header: it must be one, printable ASCII without CR or LF.
fn check_content_type(content_type: &str) -> Result<(), ApiError> {
    let printable = content_type
        .bytes()
        .all(|byte| (0x20..0x7f).contains(&byte));
    if printable && content_type.len() <= MAX_CONTENT_TYPE_BYTES {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "the content type must be printable ASCII of at most {MAX_CONTENT_TYPE_BYTES} bytes"
        )))
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    state.store.check_bucket().await?;
    Ok("ok")
}

async fn metrics(
    State(state): State<Arc<AppState>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    let mut text = state.metrics.render();
    if let Some(processing) = &state.processing {
        processing.render(&mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// S3's rule: user metadata, names and values together, fits in 2 KiB.
const MAX_METADATA_BYTES: usize = 2048;

/// Metadata names must be plain header-name characters, values printable ASCII.
fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let total: usize = metadata
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if total > MAX_METADATA_BYTES {
        return Err(ApiError::BadRequest(format!(
            "metadata is {total} bytes, over S3's {MAX_METADATA_BYTES}"
        )));
    }
    for (name, value) in metadata {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        let value_ok = value.bytes().all(|byte| (0x20..0x7f).contains(&byte));
        if !name_ok || !value_ok {
            return Err(ApiError::BadRequest(format!(
                "metadata {name:?} must be a token name with a printable ASCII value"
            )));
        }
    }
    Ok(())
}

/// The request's Content-Length, which must be exactly `expected`: the store needs it up front,
/// and a part of another size would not fit the plan.
fn exact_length(headers: &axum::http::HeaderMap, expected: u64) -> Result<u64, ApiError> {
    let given = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    match given {
        Some(length) if length == expected => Ok(length),
        _ => Err(ApiError::WrongLength { expected, given }),
    }
}

/// The checksum header a fallback body must come with when its upload has an algorithm: the
/// companion passes it on, and the store checks the bytes against it.
fn fallback_checksum(
    claims: &Claims,
    headers: &HeaderMap,
    what: &str,
) -> Result<Option<(ChecksumAlgorithm, String)>, ApiError> {
    let Some(algorithm) = claims.checksum else {
        return Ok(None);
    };
    let given = headers
        .get(algorithm.header())
        .and_then(|value| value.to_str().ok());
    Ok(Some((algorithm, checked_checksum(algorithm, given, what)?)))
}

/// Refuses a fallback write once the object exists: a finished upload is never written again.
async fn refuse_if_stored(state: &AppState, key: &str) -> Result<(), ApiError> {
    match state.store.head_object(key).await? {
        Some(_) => Err(ApiError::AlreadyStored),
        None => Ok(()),
    }
}

/// Streams a fallback body to `url` at no less than the minimum rate: a body that trickles in is
/// cut with 408, so it gives its admission slot back instead of holding it.
async fn stream_to_store(
    state: &AppState,
    url: url::Url,
    length: u64,
    headers: &BTreeMap<String, String>,
    body: axum::body::Body,
) -> Result<String, ApiError> {
    let (stream, slow) = state.min_body_rate.guard(body.into_data_stream());
    let result = state
        .store
        .put_streamed(url, length, headers, reqwest::Body::wrap_stream(stream))
        .await;
    match result {
        Err(_) if slow.tripped() => Err(TooSlow.into()),
        other => Ok(other?),
    }
}

/// The fallback for a part: the browser cannot reach the store, so the companion streams the
/// bytes there itself.
async fn put_part(
    State(state): State<Arc<AppState>>,
    ApiPath((upload_id, part)): ApiPath<(String, u32)>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Relayed>, ApiError> {
    let claims = state.verify(&headers, &query.token, Some(&upload_id))?;
    let (number, planned) = planned_part(&claims.plan()?, part)?;
    let length = exact_length(&headers, planned)?;
    let checksum = fallback_checksum(&claims, &headers, &format!("part {part}"))?;
    refuse_if_stored(&state, &claims.key).await?;
    let (url, signed_headers) = state.store.sign_upload_part(
        &claims.key,
        &upload_id,
        number,
        length,
        state.url_lifetime(),
        checksum
            .as_ref()
            .map(|(algorithm, value)| (*algorithm, value.as_str())),
    );
    let etag = stream_to_store(&state, url, length, &signed_headers, body).await?;
    Ok(Json(Relayed { etag }))
}

/// The fallback for a single PUT.
async fn put_object(
    State(state): State<Arc<AppState>>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Relayed>, ApiError> {
    let claims = state.verify(&headers, &query.token, None)?;
    let length = exact_length(&headers, claims.size)?;
    let checksum = fallback_checksum(&claims, &headers, "a single PUT")?;
    refuse_if_stored(&state, &claims.key).await?;
    let (url, signed_headers) = state.store.sign_put_object(
        &claims.key,
        length,
        state.url_lifetime(),
        &claims.content_type,
        &claims.metadata,
        state.conditional_writes(),
        checksum
            .as_ref()
            .map(|(algorithm, value)| (*algorithm, value.as_str())),
    );
    let etag = stream_to_store(&state, url, length, &signed_headers, body).await?;
    Ok(Json(Relayed { etag }))
}
