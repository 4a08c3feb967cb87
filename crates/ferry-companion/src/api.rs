//! The HTTP API of DESIGN.md: config, create, batched sign, list parts, complete, abort, files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_core::protocol::{
    CompanionConfig, CompleteUpload, CreateUpload, ErrorBody, PartList, PartsSigned, SignParts,
    SignedPart, SignedUrl, StoredObject, UploadCreated,
};
use ferry_core::{Plan, UploadMode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::auth::{Auth, AuthError};
use crate::keys::object_key;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::token::{Claims, TokenError, TokenKey};

/// Everything a request needs; the companion keeps no per-upload state.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub tokens: TokenKey,
    pub advertised: CompanionConfig,
    pub key_prefix: String,
    pub token_lifetime: Duration,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
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
        if claims.upload_id.as_deref() != upload_id {
            return Err(ApiError::TokenMismatch);
        }
        if claims.owner != owner {
            return Err(ApiError::NotYourUpload);
        }
        Ok(claims)
    }
}

/// The JSON routes that create, sign and finish uploads: admission control and a timeout guard
/// them.
pub fn upload_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/uploads", post(create))
        .route("/api/uploads/{id}/sign", post(sign))
        .route("/api/uploads/{id}/parts", get(list_parts))
        .route("/api/uploads/{id}", axum::routing::delete(abort))
}

/// Complete: admission control and a JSON body limit, but no short timeout, as the store may take
/// a while to assemble a large object.
pub fn finishing_routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/uploads/{id}/complete", post(complete))
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::Rejected {
            status: rejection.status(),
            message: rejection.body_text(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
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
            // The store's own refusals (EntityTooSmall, InvalidPart, NoSuchUpload) pass through
            // with their S3 code, so the client can say what the store said.
            Self::Store(StoreError::S3 { status, code, .. }) if (400..500).contains(status) => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                code.clone(),
            ),
            Self::Store(_) => (StatusCode::BAD_GATEWAY, "StoreUnavailable".to_owned()),
        };
        let message = match &self {
            Self::Store(StoreError::S3 { message, .. }) if status != StatusCode::BAD_GATEWAY => {
                format!("the store refused: {message}")
            }
            Self::Store(err) => {
                tracing::error!(%err, "store call failed");
                "the store did not answer as expected".to_owned()
            }
            other => other.to_string(),
        };
        (status, Json(ErrorBody { code, message })).into_response()
    }
}

fn unix_now() -> u64 {
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
    let policy = &state.advertised;
    if request.size > policy.max_file_size {
        return Err(ApiError::TooLarge {
            size: request.size,
            max: policy.max_file_size,
        });
    }
    if !policy.allowed_types.is_empty() && !policy.allowed_types.contains(&request.content_type) {
        return Err(ApiError::TypeNotAllowed(request.content_type));
    }
    check_metadata(&request.metadata)?;
    let preferred = request.part_size.unwrap_or(policy.preferred_part_size);
    let plan =
        Plan::new(request.size, preferred, &policy.limits).map_err(|_| ApiError::TooLarge {
            size: request.size,
            max: policy.limits.max_object_size,
        })?;
    let key = object_key(&state.key_prefix, &owner, &request.name);
    let (upload_id, url) = match plan.mode {
        UploadMode::Single => {
            let (url, headers) = state.store.sign_put_object(
                &key,
                state.url_lifetime(),
                &request.content_type,
                &request.metadata,
            );
            let url = SignedUrl {
                url: url.to_string(),
                headers,
                expires_at: unix_now() + policy.url_lifetime_secs,
                expires_in: Some(policy.url_lifetime_secs),
            };
            (None, Some(url))
        }
        UploadMode::Multipart => {
            let upload_id = state
                .store
                .create_multipart_upload(&key, &request.content_type, &request.metadata)
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
            request.metadata.clone()
        } else {
            Default::default()
        },
        content_type: if upload_id.is_none() {
            request.content_type.clone()
        } else {
            String::new()
        },
    };
    state.metrics.created();
    Ok(Json(UploadCreated {
        upload_id,
        location: location(&key),
        key,
        token: state.tokens.sign(&claims),
        part_size: plan.part_size,
        part_count: plan.part_count,
        mode: plan.mode,
        url,
        expires_at: claims.expires_at,
    }))
}

/// The number of parts the token's plan has.
fn part_count(claims: &Claims) -> Result<u32, ApiError> {
    Plan::with_part_size(claims.size, claims.part_size)
        .map(|plan| plan.part_count)
        .map_err(|_| ApiError::Token(TokenError::Malformed))
}

async fn sign(
    State(state): State<Arc<AppState>>,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
    request: Result<Json<SignParts>, JsonRejection>,
) -> Result<Json<PartsSigned>, ApiError> {
    let Json(request) = request?;
    let claims = state.verify(&headers, &request.token, Some(&upload_id))?;
    let count = part_count(&claims)?;
    // Check every part before signing any: a refused call signs nothing.
    let parts: Vec<u16> = request
        .parts
        .iter()
        .map(|&part| {
            u16::try_from(part)
                .ok()
                .filter(|_| (1..=count).contains(&part))
                .ok_or(ApiError::PartOutOfRange { part, count })
        })
        .collect::<Result<_, _>>()?;
    let expires_at = unix_now() + state.advertised.url_lifetime_secs;
    let urls = parts
        .into_iter()
        .map(|part| SignedPart {
            part: u32::from(part),
            url: SignedUrl {
                url: state
                    .store
                    .sign_upload_part(&claims.key, &upload_id, part, state.url_lifetime())
                    .to_string(),
                headers: Default::default(),
                expires_at,
                expires_in: Some(state.advertised.url_lifetime_secs),
            },
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
    Path(upload_id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Json<PartList>, ApiError> {
    let claims = state.verify(&headers, &query.token, Some(&upload_id))?;
    let parts = state.store.list_parts(&claims.key, &upload_id).await?;
    Ok(Json(PartList { parts }))
}

async fn complete(
    State(state): State<Arc<AppState>>,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
    request: Result<Json<CompleteUpload>, JsonRejection>,
) -> Result<Json<StoredObject>, ApiError> {
    let Json(request) = request?;
    let claims = state.verify(&headers, &request.token, Some(&upload_id))?;
    let count = part_count(&claims)?;
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
    let etags: Vec<String> = request.parts.into_iter().map(|part| part.etag).collect();
    let etag = match state
        .store
        .complete_multipart_upload(&claims.key, &upload_id, &etags)
        .await
    {
        Ok(etag) => etag,
        // A retried Complete whose first try succeeded: the object is there, with its size.
        Err(StoreError::S3 { code, .. }) if code == "NoSuchUpload" => {
            match state.store.head_object(&claims.key).await? {
                Some((size, etag)) if size == claims.size => etag,
                _ => {
                    return Err(StoreError::S3 {
                        status: 404,
                        code,
                        message: "the upload is gone".into(),
                    }
                    .into());
                }
            }
        }
        Err(err) => return Err(err.into()),
    };
    state.metrics.completed(claims.size);
    Ok(Json(StoredObject {
        location: location(&claims.key),
        key: claims.key,
        etag,
        size: claims.size,
    }))
}

async fn abort(
    State(state): State<Arc<AppState>>,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<StatusCode, ApiError> {
    let claims = state.verify(&headers, &query.token, Some(&upload_id))?;
    state
        .store
        .abort_multipart_upload(&claims.key, &upload_id)
        .await?;
    state.metrics.aborted();
    Ok(StatusCode::NO_CONTENT)
}

async fn file(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    // Only objects Ferry stored: the bucket may hold others that are none of the caller's business.
    if !key.starts_with(&state.key_prefix) {
        let body = ErrorBody {
            code: "NoSuchKey".into(),
            message: "no such upload".into(),
        };
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    let url = state.store.sign_get_object(&key, state.url_lifetime());
    let mut response = Redirect::temporary(url.as_str()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

async fn healthz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    state.store.check_bucket().await?;
    Ok("ok")
}

async fn metrics(
    State(state): State<Arc<AppState>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
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

/// The ETag of a part or object sent through the companion.
#[derive(Debug, serde::Serialize)]
struct Etag {
    etag: String,
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

/// The fallback for a part: the browser cannot reach the store, so the companion streams the
/// bytes there itself.
async fn put_part(
    State(state): State<Arc<AppState>>,
    Path((upload_id, part)): Path<(String, u32)>,
    Query(query): Query<TokenQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Etag>, ApiError> {
    let claims = state.verify(&headers, &query.token, Some(&upload_id))?;
    let plan = Plan::with_part_size(claims.size, claims.part_size)
        .map_err(|_| ApiError::Token(TokenError::Malformed))?;
    let number = u16::try_from(part)
        .ok()
        .filter(|_| (1..=plan.part_count).contains(&part))
        .ok_or(ApiError::PartOutOfRange {
            part,
            count: plan.part_count,
        })?;
    let range = plan.part_range(part);
    let length = exact_length(&headers, range.end - range.start)?;
    let url = state
        .store
        .sign_upload_part(&claims.key, &upload_id, number, state.url_lifetime());
    let stream = reqwest::Body::wrap_stream(body.into_data_stream());
    let etag = state
        .store
        .put_streamed(url, length, &BTreeMap::new(), stream)
        .await?;
    Ok(Json(Etag { etag }))
}

/// The fallback for a single PUT.
async fn put_object(
    State(state): State<Arc<AppState>>,
    Query(query): Query<TokenQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Etag>, ApiError> {
    let claims = state.verify(&headers, &query.token, None)?;
    let length = exact_length(&headers, claims.size)?;
    let (url, metadata) = state.store.sign_put_object(
        &claims.key,
        state.url_lifetime(),
        &claims.content_type,
        &claims.metadata,
    );
    let stream = reqwest::Body::wrap_stream(body.into_data_stream());
    let etag = state
        .store
        .put_streamed(url, length, &metadata, stream)
        .await?;
    Ok(Json(Etag { etag }))
}
