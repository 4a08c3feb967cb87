//! The companion: an axum service that creates multipart uploads and signs URLs, so the browser
//! can PUT straight to the store without ever seeing its credentials.
//!
//! It keeps no state per upload: everything a later call needs comes back in the signed upload
//! token ([`token`]), so any number of companions can serve the same uploads.

pub mod api;
pub mod config;
pub mod keys;
pub mod store;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use ferry_core::StoreLimits;
use ferry_core::protocol::CompanionConfig;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;

pub use crate::config::Config;
use crate::store::{Store, StoreConfig};

/// A companion ready to serve: its router, and the store it talks to.
#[derive(Debug)]
pub struct Companion {
    pub router: Router,
    pub store: StoreConfig,
}

/// Sets up the store (starting the embedded one when no endpoint is configured), checks the bucket
/// and builds the router. Fails with a message a person can act on.
pub async fn build(config: &Config) -> Result<Companion, String> {
    let store_config = match &config.s3_endpoint {
        Some(endpoint) => {
            let (Some(access_key), Some(secret_key)) =
                (&config.access_key_id, &config.secret_access_key)
            else {
                return Err("FERRY_S3_ENDPOINT is set, so AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be too".into());
            };
            StoreConfig {
                endpoint: endpoint.clone(),
                bucket: config.s3_bucket.clone(),
                region: config.s3_region.clone(),
                path_style: config.s3_path_style,
                access_key: access_key.clone(),
                secret_key: secret_key.clone(),
            }
        }
        None => start_embedded_store(config).await?,
    };
    let store = Store::new(&store_config)?;
    store.check_bucket().await.map_err(|err| {
        format!(
            "bucket {:?} at {} cannot be used: {err}. Create it, or check the credentials and FERRY_S3_REGION.",
            store_config.bucket, store_config.endpoint
        )
    })?;

    let secret = match &config.secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "FERRY_SECRET is not set: tokens are signed with a random secret and die with this process"
            );
            rand::random::<[u8; 32]>().to_vec()
        }
    };
    let state = api::AppState {
        store,
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
        },
        key_prefix: config.key_prefix.clone(),
        token_lifetime: Duration::from_secs(config.token_lifetime),
    };
    let mut router = api::routes(Arc::new(state)).layer(
        // Clients carry their token in the request, never in cookies: any origin may call.
        CorsLayer::new()
            .allow_origin(Any)
            .allow_methods(Any)
            .allow_headers(Any)
            .expose_headers([axum::http::header::RETRY_AFTER]),
    );
    if let Some(dir) = &config.static_dir {
        router = router.fallback_service(ServeDir::new(dir));
    }
    Ok(Companion {
        router,
        store: store_config,
    })
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
        access_key,
        secret_key,
    };
    Store::new(&store_config)?
        .create_bucket()
        .await
        .map_err(|err| format!("the embedded store could not create its bucket: {err}"))?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "embedded store started");
    Ok(store_config)
}
