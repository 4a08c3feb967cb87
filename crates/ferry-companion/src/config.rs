//! Settings: flags, environment variables and a TOML file. Every flag has an environment variable
//! and a file key of the same meaning (the flag's name with `_`: `--s3-endpoint`,
//! `FERRY_S3_ENDPOINT`, `s3_endpoint = ...`); names may grow but never change. A flag wins over
//! the environment, which wins over the file, which wins over the defaults.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use ferry_core::ChecksumAlgorithm;
use ferry_core::plan::{DEFAULT_PREFERRED_PART_SIZE, MIB, TIB};
use serde::{Serialize, Serializer};
use url::Url;

#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "ferry-companion",
    version,
    about = "Creates multipart uploads and signs URLs for Ferry clients"
)]
pub struct Config {
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<Command>,

    /// TOML file of settings, one key per flag (`s3_endpoint = "https://..."`); flags and
    /// environment variables win over it.
    #[arg(long, env = "FERRY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

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
    #[serde(serialize_with = "hidden")]
    pub access_key_id: Option<String>,

    /// Secret access key for the store.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    #[serde(serialize_with = "hidden")]
    pub secret_access_key: Option<String>,

    /// Session token of temporary credentials given with the two above.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    #[serde(serialize_with = "hidden")]
    pub session_token: Option<String>,

    /// Secret that signs upload tokens; share it between companions behind one load balancer.
    /// Without it a random secret is made at start, and tokens die with the process.
    #[arg(long, env = "FERRY_SECRET", hide_env_values = true)]
    #[serde(serialize_with = "hidden")]
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
    #[serde(serialize_with = "hidden_list")]
    pub auth_tokens: Vec<String>,

    /// Secret of HS256 JWTs whose `sub` is the owner.
    #[arg(long, env = "FERRY_JWT_HS256_SECRET", hide_env_values = true)]
    #[serde(serialize_with = "hidden")]
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

    /// Offer browsers presigned POST forms for files up to 1 MiB (no CORS preflight: one request
    /// per small file), with checksums on. The store must take forms and check the checksum in
    /// them: AWS S3 and Garage do; moto and R2 do not. The embedded store always does.
    #[arg(long, env = "FERRY_S3_POST_FORMS", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_post_forms: bool,

    /// The checksum every part and object carries, computed by the client before its URL is
    /// signed and verified by the store: `crc32c` (full-object), `crc64nvme` (full-object),
    /// `sha256` (composite) or `off`. AWS S3 and MinIO take all three; R2 takes `crc64nvme` (or
    /// composite CRC32C, which Ferry does not send); B2 takes none: `off`.
    #[arg(long, env = "FERRY_CHECKSUM", default_value = "crc32c", value_parser = parse_checksum)]
    pub checksum: Checksum,

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

    /// Make previews of finished uploads: a JPEG thumbnail of images and, with ffmpeg, a JPEG
    /// thumbnail and a short GIF of videos, stored beside the object.
    #[arg(long, env = "FERRY_PREVIEWS", default_value_t = false, action = clap::ArgAction::Set)]
    pub previews: bool,

    /// Workers that process finished uploads (previews, webhook).
    #[arg(long, env = "FERRY_PROCESSING_WORKERS", default_value_t = 2)]
    pub processing_workers: usize,

    /// Finished uploads that may wait for a worker; beyond, their jobs are dropped and counted.
    #[arg(long, env = "FERRY_PROCESSING_QUEUE", default_value_t = 256)]
    pub processing_queue: usize,

    /// Longest side of a thumbnail, in pixels.
    #[arg(long, env = "FERRY_THUMBNAIL_SIZE", default_value_t = 320)]
    pub thumbnail_size: u32,

    /// Largest image a thumbnail is made of, in bytes.
    #[arg(long, env = "FERRY_MAX_IMAGE_SIZE", default_value_t = 64 * MIB)]
    pub max_image_size: u64,

    /// Largest video a preview is made of, in bytes (it is copied to a scratch folder first).
    #[arg(long, env = "FERRY_MAX_VIDEO_SIZE", default_value_t = 2 * 1024 * MIB)]
    pub max_video_size: u64,

    /// The ffmpeg binary that makes video previews; without one, videos get none.
    #[arg(long, env = "FERRY_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,

    /// URL the companion POSTs to when an upload is stored (JSON, signed with --webhook-secret).
    #[arg(long, env = "FERRY_WEBHOOK_URL")]
    pub webhook_url: Option<Url>,

    /// Secret of the webhook's `Ferry-Signature` (HMAC-SHA256).
    #[arg(long, env = "FERRY_WEBHOOK_SECRET", hide_env_values = true)]
    #[serde(serialize_with = "hidden")]
    pub webhook_secret: Option<String>,

    /// Tries of one webhook delivery, 1, 2, 4, ... seconds apart, before it is given up (at most
    /// 12).
    #[arg(long, env = "FERRY_WEBHOOK_ATTEMPTS", default_value_t = 6)]
    pub webhook_attempts: u32,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Abort multipart uploads older than --janitor-age under the key prefix, once, and exit.
    Janitor,
    /// Print the settings in effect as TOML (secrets hidden), and exit: checks a config file.
    Config,
}

/// Why the settings cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    /// A flag or environment variable is wrong, or `--help`/`--version` was asked for: clap
    /// prints it and exits.
    Arguments(clap::Error),
    /// The config file cannot be read, or has a key or value that is not a setting.
    File(String),
}

impl Config {
    /// The settings of this process: its flags and environment, and the config file they name.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    /// The settings for `args` (the program's name first) and this process's environment.
    pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let command = Config::command();
        let matches = command
            .clone()
            .try_get_matches_from(&args)
            .map_err(ConfigError::Arguments)?;
        let Some(path) = matches.get_one::<PathBuf>("config") else {
            return Config::from_arg_matches(&matches).map_err(ConfigError::Arguments);
        };
        // The file's settings become flags placed before the given ones, but only for settings
        // neither a flag nor the environment gave: so they win over defaults and nothing else.
        let mut from_file = Vec::new();
        for (key, value) in read_file(path)? {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == key.as_str() && key != "config")
                .ok_or_else(|| {
                    ConfigError::File(format!(
                        "{}: unknown key `{key}`; the keys are the flags' names with `_` (ferry.example.toml lists them all)",
                        path.display()
                    ))
                })?;
            let values = file_values(&key, &value, arg.get_value_delimiter().is_some())
                .map_err(|problem| ConfigError::File(format!("{}: {problem}", path.display())))?;
            // `ferry-companion config` prints secrets as HIDDEN: a file saved from it would
            // otherwise sign with that word, or let anyone in with it.
            if values.iter().any(|text| text == HIDDEN) {
                return Err(ConfigError::File(format!(
                    "{}: key `{key}` is {HIDDEN:?}, as `ferry-companion config` prints a secret: write the secret itself, or set it in the environment",
                    path.display()
                )));
            }
            let long = arg.get_long().unwrap_or(&key);
            // Each value goes through the setting's own parser alone, so an error names the key.
            let setting = clap::Command::new("file")
                .no_binary_name(true)
                .arg(arg.clone());
            for text in &values {
                if let Err(err) = setting
                    .clone()
                    .try_get_matches_from([format!("--{long}={text}")])
                {
                    let choices: Vec<String> = arg
                        .get_possible_values()
                        .iter()
                        .map(|choice| choice.get_name().to_owned())
                        .collect();
                    let choices = if choices.is_empty() {
                        String::new()
                    } else {
                        format!(" (one of: {})", choices.join(", "))
                    };
                    return Err(ConfigError::File(format!(
                        "{}: key `{key}`: {}{choices}",
                        path.display(),
                        reason(&err, text)
                    )));
                }
            }
            let given = matches!(
                matches.value_source(&key),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            if !given && !values.is_empty() {
                from_file.push(OsString::from(format!("--{long}={}", values.join(","))));
            }
        }
        let program = args
            .first()
            .cloned()
            .unwrap_or_else(|| "ferry-companion".into());
        let merged = std::iter::once(program)
            .chain(from_file)
            .chain(args.into_iter().skip(1));
        let matches = command
            .try_get_matches_from(merged)
            .map_err(ConfigError::Arguments)?;
        Config::from_arg_matches(&matches).map_err(ConfigError::Arguments)
    }
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError::File(format!("cannot read {}: {err}", path.display())))?;
    text.parse::<toml::Table>()
        .map_err(|err| ConfigError::File(format!("{} is not valid TOML: {err}", path.display())))
}

/// A file value as the text a flag would take: scalars as written, arrays for the settings that
/// take lists.
fn file_values(key: &str, value: &toml::Value, is_list: bool) -> Result<Vec<String>, String> {
    let scalar = |value: &toml::Value| match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        other => Err(format!(
            "key `{key}`: a {} is not a value of this setting",
            other.type_str()
        )),
    };
    match value {
        toml::Value::Array(items) if is_list => items.iter().map(scalar).collect(),
        toml::Value::Array(_) => Err(format!("key `{key}` takes one value, not a list")),
        other => scalar(other).map(|text| vec![text]),
    }
}

/// What is wrong with a value, without the flag syntax clap's own message names.
fn reason(err: &clap::Error, value: &str) -> String {
    match std::error::Error::source(err) {
        Some(source) => format!("invalid value {value:?}: {source}"),
        None => {
            let first_line = err.to_string();
            let first_line = first_line.lines().next().unwrap_or_default();
            let first_line = first_line.trim_start_matches("error: ");
            match first_line.split_once(" for '--") {
                Some((invalid, _)) => invalid.to_owned(),
                None => first_line.to_owned(),
            }
        }
    }
}

/// What `ferry-companion config` prints in place of a secret.
const HIDDEN: &str = "(hidden)";

fn hidden<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_some(HIDDEN),
        None => serializer.serialize_none(),
    }
}

fn hidden_list<S: Serializer>(values: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(|_| HIDDEN))
}

/// `--checksum`: an algorithm, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum(pub Option<ChecksumAlgorithm>);

fn parse_checksum(value: &str) -> Result<Checksum, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(Checksum(None));
    }
    ChecksumAlgorithm::parse(value)
        .map(|algorithm| Checksum(Some(algorithm)))
        .ok_or_else(|| format!("{value:?} is none of crc32c, crc64nvme, sha256, off"))
}

impl Serialize for Checksum {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.map_or("off", ChecksumAlgorithm::name))
    }
}
