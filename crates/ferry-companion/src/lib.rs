//! The companion: an axum service that creates multipart uploads and signs URLs, so the browser
//! can PUT straight to the store without ever seeing its credentials.
//!
//! It keeps no state per upload: everything a later call needs comes back in the signed upload
//! token ([`token`]), so any number of companions can serve the same uploads.

pub mod admission;
pub mod api;
pub mod auth;
pub mod config;
pub mod credentials;
pub mod janitor;
pub mod keys;
pub mod metrics;
pub mod processing;
pub mod s3xml;
pub mod server;
pub mod store;
pub mod streaming;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use ferry_core::StoreLimits;
use ferry_core::protocol::CompanionConfig;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

pub use crate::config::Config;
use crate::processing::{Processing, ProcessingConfig, WebhookConfig};
use crate::store::{Store, StoreConfig};

/// Largest JSON body accepted on the create, sign and abort routes (a sign call for the most
/// parts it may ask for is under 10 KiB).
const JSON_BODY_LIMIT: usize = 256 * 1024;
/// Largest Complete body: 10,000 parts of about 60 bytes each (`{"part":10000,"etag":"\"..\""}`),
/// with room for stores whose ETags are longer than an MD5.
const COMPLETE_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// How long browsers may cache a preflight answer (Chromium caps it at 2 hours).
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(7_200);

/// The key prefix as a folder: `uploads` would otherwise also cover `uploads-private/...`.
fn key_prefix(configured: &str) -> String {
    if configured.is_empty() || configured.ends_with('/') {
        configured.to_owned()
    } else {
        format!("{configured}/")
    }
}

/// The connection limits `config` asks for.
pub fn connection_limits(config: &Config) -> server::ConnectionLimits {
    server::ConnectionLimits {
        header_timeout: Duration::from_secs(config.header_timeout.max(1)),
        max_connections: config.max_connections,
    }
}

/// A companion ready to serve: its router, and the store it talks to.
#[derive(Debug)]
pub struct Companion {
    pub router: Router,
    pub store: StoreConfig,
    /// The shared state, for the janitor.
    pub state: Arc<api::AppState>,
}

/// The serve path: refuses an unsafe configuration, connects to the store (starting the
/// embedded one when no endpoint is configured), checks the bucket and builds the app. Fails
/// with a message a person can act on.
pub async fn build(config: &Config) -> Result<Companion, String> {
    // Refused before anything starts.
    auth(config)?;
    let store = connect_store(config).await?;
    let state = state(config, &store)?;
    state.store.check_bucket().await.map_err(|err| {
        format!(
            "bucket {:?} at {} cannot be used: {err}. Create it, or check the credentials and FERRY_S3_REGION.",
            store.bucket, store.endpoint
        )
    })?;
    Ok(Companion {
        router: app(config, state.clone())?,
        store,
        state,
    })
}

/// Who may call, as configured; refuses to listen beyond loopback without it unless anonymous
/// uploads are allowed.
fn auth(config: &Config) -> Result<auth::Auth, String> {
    let rs256_key = match &config.jwt_rs256_public_key {
        Some(path) => Some(
            std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?,
        ),
        None => None,
    };
    let auth = auth::Auth::new(
        &config.auth_tokens,
        config.jwt_hs256_secret.as_deref(),
        rs256_key.as_deref(),
        config.jwt_issuer.as_deref(),
        config.jwt_audience.as_deref(),
    )?;
    if !auth.is_enabled() && !config.allow_anonymous && !config.listen.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {} without authentication: set FERRY_AUTH_TOKENS or FERRY_JWT_HS256_SECRET / \
             FERRY_JWT_RS256_PUBLIC_KEY, or FERRY_ALLOW_ANONYMOUS=true to let anyone upload",
            config.listen
        ));
    }
    Ok(auth)
}

/// The store to talk to: the configured endpoint with its credentials (fixed, or the AWS
/// chain), or the embedded store, started now.
pub async fn connect_store(config: &Config) -> Result<StoreConfig, String> {
    let Some(endpoint) = &config.s3_endpoint else {
        return start_embedded_store(config).await;
    };
    let credentials = match (&config.access_key_id, &config.secret_access_key) {
        (Some(access_key), Some(secret_key)) => {
            credentials::fixed(access_key, secret_key, config.session_token.as_deref())
        }
        (None, None) => {
            credentials::from_aws_chain(Duration::from_secs(config.url_lifetime)).await?
        }
        _ => {
            return Err(
                "give both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither to use the AWS credential chain"
                    .into(),
            );
        }
    };
    Ok(StoreConfig {
        endpoint: endpoint.clone(),
        bucket: config.s3_bucket.clone(),
        region: config.s3_region.clone(),
        path_style: config.s3_path_style,
        credentials,
    })
}

/// What every route shares, made from the configuration: no I/O beyond reading a key file.
pub fn state(config: &Config, store: &StoreConfig) -> Result<Arc<api::AppState>, String> {
    let secret = match &config.secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "FERRY_SECRET is not set: tokens are signed with a random secret and die with this process"
            );
            rand::random::<[u8; 32]>().to_vec()
        }
    };
    Ok(Arc::new(api::AppState {
        store: Store::new(store)?,
        tokens: token::TokenKey::new(&secret),
        advertised: CompanionConfig {
            limits: StoreLimits {
                min_part_size: config.min_part_size,
                ..StoreLimits::S3
            },
            preferred_part_size: config.part_size,
            max_file_size: config.max_file_size,
            allowed_types: config.allowed_types.clone(),
            url_lifetime_secs: config.url_lifetime,
            // The embedded store always refuses to overwrite when asked.
            conditional_writes: config.s3_conditional_writes || config.s3_endpoint.is_none(),
            complete_single_puts: config.previews || config.webhook_url.is_some(),
            previews: config.previews,
            checksum: config.checksum.0,
            create_batch: api::MAX_FILES_PER_BATCH as u32,
        },
        key_prefix: key_prefix(&config.key_prefix),
        token_lifetime: Duration::from_secs(config.token_lifetime),
        download_link_lifetime: Duration::from_secs(config.download_link_lifetime),
        auth: auth(config)?,
        metrics: Arc::new(metrics::Metrics::default()),
        min_body_rate: streaming::MinRate {
            bytes_per_sec: config.min_body_rate,
            window: Duration::from_secs(config.body_rate_window.max(1)),
        },
        processing: processing(config, store)?,
        // The embedded store takes forms (s3s checks their policy; it checks the checksum).
        post_forms: config.s3_post_forms || config.s3_endpoint.is_none(),
    }))
}

/// The queue and workers after upload, started when previews or a webhook are configured.
fn processing(config: &Config, store: &StoreConfig) -> Result<Option<Processing>, String> {
    let webhook = match (&config.webhook_url, &config.webhook_secret) {
        (Some(url), Some(secret)) => Some(WebhookConfig {
            url: url.clone(),
            secret: secret.clone(),
            attempts: config.webhook_attempts,
            first_retry: Duration::from_secs(1),
        }),
        (Some(_), None) => {
            return Err(
                "FERRY_WEBHOOK_URL needs FERRY_WEBHOOK_SECRET: the backend must be able to tell the companion's calls from anyone's"
                    .into(),
            );
        }
        (None, _) => None,
    };
    if !config.previews && webhook.is_none() {
        return Ok(None);
    }
    let processing = ProcessingConfig {
        previews: config.previews,
        workers: config.processing_workers,
        queue: config.processing_queue,
        thumbnail_size: config.thumbnail_size,
        max_image_bytes: config.max_image_size,
        max_video_bytes: config.max_video_size,
        ffmpeg: config.ffmpeg.clone(),
        webhook,
    };
    Ok(Some(Processing::start(processing, Store::new(store)?)))
}

/// The app: the routes with their guards (admission control on the upload routes, a timeout and
/// a body limit on the JSON ones; the streaming fallback may take as long as a slow link needs),
/// metrics by route, a request id on every request and log line, errors logged, and CORS.
/// Synchronous and socket-free: tests drive it with `oneshot`.
pub fn app(config: &Config, state: Arc<api::AppState>) -> Result<Router, String> {
    let metrics = state.metrics.clone();
    let admission = Arc::new(admission::Admission::new(
        config.admission_concurrency,
        config.admission_queue,
        metrics.clone(),
    ));
    let admitted = || axum::middleware::from_fn_with_state(admission.clone(), admission::admit);
    let time_limit = |secs: u64| {
        axum::middleware::from_fn_with_state(Duration::from_secs(secs), api::time_limit)
    };
    let timeout = || time_limit(config.request_timeout);
    let uploads = api::upload_routes()
        .route_layer(admitted())
        .layer(timeout())
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT));
    // Complete has a gate of its own: its bodies and the store's assembly may be slow, and must
    // not starve create and sign.
    let finishing_admission = Arc::new(admission::Admission::new(
        config.admission_concurrency,
        config.admission_queue,
        metrics.clone(),
    ));
    let finishing = api::finishing_routes()
        .route_layer(axum::middleware::from_fn_with_state(
            finishing_admission,
            admission::admit,
        ))
        .layer(time_limit(config.complete_timeout))
        .layer(DefaultBodyLimit::max(COMPLETE_BODY_LIMIT));
    // Slow fallback streams get a gate of their own, so they never starve the JSON calls.
    let streaming_admission = Arc::new(admission::Admission::new(
        config.admission_concurrency,
        config.admission_queue,
        metrics.clone(),
    ));
    let streaming = api::streaming_routes().route_layer(axum::middleware::from_fn_with_state(
        streaming_admission,
        admission::admit,
    ));
    let open = api::open_routes().layer(timeout());
    let mut router = uploads
        .merge(finishing)
        .merge(streaming)
        .merge(open)
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(axum::middleware::from_fn(api::log_refusals))
        .with_state(state);
    if let Some(dir) = &config.static_dir {
        router = router.fallback_service(ServeDir::new(dir));
    }
    // Clients carry their upload token in the request, never in cookies.
    let origins = if config.cors_origins.is_empty() {
        AllowOrigin::any()
    } else {
        let origins = config
            .cors_origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin).map_err(|_| format!("bad CORS origin {origin:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(origins)
    };
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(PREFLIGHT_MAX_AGE);
    let trace = TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
        let id = request
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path())
    });
    Ok(router.layer(
        tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(trace)
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(cors),
    ))
}

/// Starts ferry-store on loopback with fresh credentials that never leave this process, and
/// creates the bucket.
async fn start_embedded_store(config: &Config) -> Result<StoreConfig, String> {
    let access_key = format!("ferry-{}", hex::encode(rand::random::<[u8; 8]>()));
    let secret_key = hex::encode(rand::random::<[u8; 32]>());
    let addr = ferry_store::spawn(
        config.store_listen,
        ferry_store::StoreConfig {
            root: config.data_dir.clone(),
            access_key: access_key.clone(),
            secret_key: secret_key.clone(),
            min_part_size: config.store_min_part_size.unwrap_or(config.min_part_size),
            idle_timeout: ferry_store::IDLE_TIMEOUT,
        },
    )
    .await
    .map_err(|err| {
        format!(
            "the embedded store could not start at {}: {err}",
            config.store_listen
        )
    })?;
    let endpoint: url::Url = format!("http://{addr}")
        .parse()
        .expect("a socket address is a valid URL");
    let store_config = StoreConfig {
        endpoint,
        bucket: config.s3_bucket.clone(),
        region: config.s3_region.clone(),
        path_style: true,
        credentials: credentials::fixed(&access_key, &secret_key, None),
    };
    Store::new(&store_config)?
        .create_bucket()
        .await
        .map_err(|err| format!("the embedded store could not create its bucket: {err}"))?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "embedded store started");
    Ok(store_config)
}
