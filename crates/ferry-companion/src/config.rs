//! Flags and environment variables. Every flag has an environment variable of the same meaning;
//! names may grow but never change.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ferry_core::plan::{DEFAULT_PREFERRED_PART_SIZE, MIB, TIB};
use url::Url;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferry-companion",
    version,
    about = "Creates multipart uploads and signs URLs for Ferry clients"
)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address the API listens on.
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// S3 endpoint (e.g. https://s3.eu-west-1.amazonaws.com). Without it, the embedded store runs
    /// on loopback with its data under --data-dir.
    #[arg(long, env = "FERRY_S3_ENDPOINT")]
    pub s3_endpoint: Option<Url>,

    /// Bucket that receives uploads.
    #[arg(long, env = "FERRY_S3_BUCKET", default_value = "ferry")]
    pub s3_bucket: String,

    /// Region the store signs for.
    #[arg(long, env = "FERRY_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Path-style URLs (endpoint/bucket/key) instead of virtual-host style: MinIO, R2, moto.
    #[arg(long, env = "FERRY_S3_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_path_style: bool,

    /// Access key id for the store. Without it (and --secret-access-key), a configured endpoint
    /// takes its credentials from the standard AWS chain: profiles (AWS_PROFILE), SSO, web
    /// identity (EKS), container credentials (ECS), instance metadata (EC2), refreshed before
    /// they expire.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,

    /// Secret access key for the store.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,

    /// Session token of temporary credentials given with the two above.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub session_token: Option<String>,

    /// Secret that signs upload tokens; share it between companions behind one load balancer.
    /// Without it a random secret is made at start, and tokens die with the process.
    #[arg(long, env = "FERRY_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Folder of the embedded store's data.
    #[arg(long, env = "FERRY_DATA_DIR", default_value = ".ferry-data")]
    pub data_dir: PathBuf,

    /// Address of the embedded store (port 0 picks a free one).
    #[arg(long, env = "FERRY_STORE_LISTEN", default_value = "127.0.0.1:0")]
    pub store_listen: SocketAddr,

    /// Smallest part the store accepts, as the companion plans with it.
    #[arg(long, env = "FERRY_MIN_PART_SIZE", default_value_t = 5 * MIB)]
    pub min_part_size: u64,

    /// Smallest part the embedded store accepts (defaults to --min-part-size).
    #[arg(long, env = "FERRY_STORE_MIN_PART_SIZE")]
    pub store_min_part_size: Option<u64>,

    /// Part size to aim for before the store's rules raise it.
    #[arg(long, env = "FERRY_PART_SIZE", default_value_t = DEFAULT_PREFERRED_PART_SIZE)]
    pub part_size: u64,

    /// Largest file accepted, in bytes.
    #[arg(long, env = "FERRY_MAX_FILE_SIZE", default_value_t = 5 * TIB)]
    pub max_file_size: u64,

    /// Content types accepted, comma separated; empty accepts any.
    #[arg(long, env = "FERRY_ALLOWED_TYPES", value_delimiter = ',')]
    pub allowed_types: Vec<String>,

    /// Lifetime of presigned URLs, in seconds.
    #[arg(long, env = "FERRY_URL_LIFETIME", default_value_t = 900)]
    pub url_lifetime: u64,

    /// Lifetime of upload tokens, in seconds.
    #[arg(long, env = "FERRY_TOKEN_LIFETIME", default_value_t = 86_400)]
    pub token_lifetime: u64,

    /// Prefix of every object key.
    #[arg(long, env = "FERRY_KEY_PREFIX", default_value = "uploads/")]
    pub key_prefix: String,

    /// Folder of static files served at / (the demo page).
    #[arg(long, env = "FERRY_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Static bearer tokens, as token=owner pairs, comma separated.
    #[arg(
        long,
        env = "FERRY_AUTH_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_tokens: Vec<String>,

    /// Secret of HS256 JWTs whose `sub` is the owner.
    #[arg(long, env = "FERRY_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,

    /// PEM file of the RSA public key of RS256 JWTs whose `sub` is the owner.
    #[arg(long, env = "FERRY_JWT_RS256_PUBLIC_KEY")]
    pub jwt_rs256_public_key: Option<PathBuf>,

    /// The `iss` JWTs must carry, if set.
    #[arg(long, env = "FERRY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The `aud` JWTs must carry, if set.
    #[arg(long, env = "FERRY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Listen beyond loopback without authentication (everyone is `anonymous`).
    #[arg(long, env = "FERRY_ALLOW_ANONYMOUS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_anonymous: bool,

    /// Origins allowed to call the API, comma separated; empty allows any.
    #[arg(long, env = "FERRY_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Requests to the upload routes that run at once.
    #[arg(long, env = "FERRY_ADMISSION_CONCURRENCY", default_value_t = 64)]
    pub admission_concurrency: usize,

    /// Requests to the upload routes that may wait; beyond, 503 with Retry-After.
    #[arg(long, env = "FERRY_ADMISSION_QUEUE", default_value_t = 256)]
    pub admission_queue: usize,

    /// Seconds a JSON request may take.
    #[arg(long, env = "FERRY_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,

    /// Age in seconds after which the janitor aborts a multipart upload.
    #[arg(long, env = "FERRY_JANITOR_AGE", default_value_t = 86_400)]
    pub janitor_age: u64,

    /// Run the janitor every this many seconds while serving; 0 turns it off.
    #[arg(long, env = "FERRY_JANITOR_PERIOD", default_value_t = 3_600)]
    pub janitor_period: u64,

    /// Send `If-None-Match: *` on single PUTs and Completes, so the store never overwrites a
    /// finished object. AWS S3, MinIO, R2, moto and the embedded store support it; turn it off
    /// only for a store that refuses the header.
    #[arg(long, env = "FERRY_S3_CONDITIONAL_WRITES", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_conditional_writes: bool,

    /// Seconds a download link returned by complete works (with authentication on).
    #[arg(long, env = "FERRY_DOWNLOAD_LINK_LIFETIME", default_value_t = 86_400)]
    pub download_link_lifetime: u64,

    /// Seconds a client may take to send a request's headers; a keep-alive connection idle this
    /// long is closed too.
    #[arg(long, env = "FERRY_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,

    /// Connections open at once; beyond, new ones wait in the listen queue.
    #[arg(long, env = "FERRY_MAX_CONNECTIONS", default_value_t = 4_096)]
    pub max_connections: usize,

    /// Slowest a streamed body (the fallback routes) may arrive, in bytes a second averaged over
    /// --body-rate-window; slower gets 408.
    #[arg(long, env = "FERRY_MIN_BODY_RATE", default_value_t = 4_096)]
    pub min_body_rate: u64,

    /// Seconds over which --min-body-rate is measured.
    #[arg(long, env = "FERRY_BODY_RATE_WINDOW", default_value_t = 20)]
    pub body_rate_window: u64,

    /// Seconds a Complete may take, the store's assembly included.
    #[arg(long, env = "FERRY_COMPLETE_TIMEOUT", default_value_t = 300)]
    pub complete_timeout: u64,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Abort multipart uploads older than --janitor-age under the key prefix, once, and exit.
    Janitor,
}
