//! An embedded S3-compatible store: the `s3s` framework in front of files on disk.
//!
//! It behaves as S3 does where Ferry relies on it: SigV4 header and presigned-URL auth with expiry
//! (checked by s3s), ETags on parts and objects, ListParts with ETags and pagination, a Complete
//! that checks ETags, order and the minimum part size and leaves the upload alive when it refuses,
//! GET with Range, DeleteObject, S3's checksums (CRC32C, CRC64NVME, SHA-256: a body is checked as it streams to
//! disk and dropped when it differs, a multipart upload's are combined on Complete; see
//! [`checksum`]), and CORS that exposes `ETag` and the checksums to the browser.
//!
//! Durability: every write lands in a fresh data file that is fsynced, and becomes visible only
//! when a small JSON pointer naming it is renamed into place (see [`disk`]). A crash never leaves
//! a half-written object or part visible.

mod checksum;
mod disk;
mod s3;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::checksum::ChecksumAlgorithm;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::cors::{Any, CorsLayer};

pub use crate::s3::FerryStore;

/// S3's own minimum size of every part but the last.
pub const S3_MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// How the embedded store is set up.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Folder that holds buckets, objects and multipart uploads.
    pub root: PathBuf,
    /// Access key id that signed requests must use.
    pub access_key: String,
    /// Secret key that signs requests.
    pub secret_key: String,
    /// Smallest size of every part but the last that Complete accepts (`EntityTooSmall` below).
    pub min_part_size: u64,
    /// Time to send a request's headers, counted from when the connection is ready for them:
    /// a keep-alive connection left idle this long is closed ([`IDLE_TIMEOUT`] by default).
    pub idle_timeout: Duration,
}

/// How long a connection may wait for its next request's headers. A client that leaves its
/// keep-alive connections open (one S3 client in the bench held 20,000) cannot use up the
/// store's file descriptors, which it needs for the files it stores.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections open at once; beyond, new ones wait in the kernel's listen queue, and the
/// descriptors left over go to the files being read and written.
const MAX_CONNECTIONS: usize = 4_096;

/// A store listening on a socket, serving until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    config: StoreConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let store = FerryStore::open(&config.root, config.min_part_size)?;
    let service = {
        let mut builder = S3ServiceBuilder::new(store);
        builder.set_auth(SimpleAuth::from_single(
            config.access_key.clone(),
            config.secret_key.clone(),
        ));
        builder.build()
    };
    let service = tower::ServiceBuilder::new().layer(cors()).service(service);
    let service = TowerToHyperService::new(service);

    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.idle_timeout);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.as_mut() => break,
        };
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(err) => {
                    // Out of file descriptors: wait for some to close rather than spin.
                    tracing::warn!(%err, "store: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let connection = http.serve_connection(TokioIo::new(socket), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Creates `bucket` under `root` directly on disk (no request, so no signature needed).
pub async fn create_bucket(root: &std::path::Path, bucket: &str) -> std::io::Result<()> {
    disk::Disk::open(root)?
        .create_bucket(bucket)
        .await
        .map(drop)
}

/// Binds `addr` and serves the store on a background task; returns the bound address.
pub async fn spawn(addr: SocketAddr, config: StoreConfig) -> std::io::Result<SocketAddr> {
    // Open once here so a bad root fails the caller, not the background task.
    FerryStore::open(&config.root, config.min_part_size)?;
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = serve(listener, config, std::future::pending()).await {
            tracing::error!(%err, "store stopped");
        }
    });
    Ok(bound)
}

/// Browsers PUT parts straight to the store, and read the part's ETag (and checksum) from the
/// response: S3 stores need a CORS rule that exposes them, and so does this one. Any request
/// header is allowed, `x-amz-checksum-*` included.
fn cors() -> CorsLayer {
    use http::{HeaderName, Method, header};
    let checksums = ChecksumAlgorithm::ALL
        .map(|algorithm| HeaderName::from_static(algorithm.header()))
        .into_iter()
        .chain([HeaderName::from_static("x-amz-checksum-type")]);
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::HEAD,
        ])
        .allow_headers(Any)
        .expose_headers(
            [header::ETAG, header::RETRY_AFTER]
                .into_iter()
                .chain(checksums)
                .collect::<Vec<_>>(),
        )
        .max_age(std::time::Duration::from_secs(3600))
}
