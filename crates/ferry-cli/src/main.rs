//! `ferry`: uploads files and folders through a Ferry companion with the same engine as the
//! browser, and load-tests a companion with the real client (`ferry load`).
//!
//! Exit codes: 0 every file stored; 1 some file failed (the others are stored); 2 bad
//! arguments or nothing to upload; 130 interrupted (Ctrl-C; run it again to resume).

mod driver;
mod load;
mod state;
mod upload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use ferry_core::{EngineConfig, FixedSlots};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Uploads files through a Ferry companion"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upload files and folders (recursively).
    Upload(upload::UploadArgs),
    /// Load-test a companion: producers uploading generated files at once, with the latency of
    /// each route and the 503s of admission control.
    Load(load::LoadArgs),
}

/// What every command shares: where the companion is, who we are, and the scheduler's knobs.
#[derive(Debug, Clone, Args)]
struct Client {
    /// The companion's address.
    #[arg(long, env = "FERRY_ENDPOINT", default_value = "http://127.0.0.1:8080")]
    endpoint: url::Url,

    /// A header for every companion call, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    headers: Vec<(String, String)>,

    /// A bearer token for the companion (as `Authorization: Bearer <token>`).
    #[arg(long, env = "FERRY_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Part PUTs running at once, kept as given (default: the seeds' rule, 5, or 3 with a file
    /// over 65 MiB, then following the measured link up to 6).
    #[arg(long)]
    slots: Option<usize>,

    /// Files prepared at once (fingerprinted, created, signed) ahead of free slots.
    #[arg(long, default_value_t = EngineConfig::default().triggers)]
    triggers: usize,

    /// Part size to ask for: bytes, or with a unit (8MiB, 16MB); the companion raises it to the
    /// store's rules.
    #[arg(long, value_parser = parse_size)]
    part_size: Option<u64>,
}

/// A size in bytes, or with a unit (64KiB, 5MiB, 1GiB, 10MB).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 65536, 64KiB, 5MiB)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} (B, KiB, MiB, GiB, kB, MB, GB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not `Name: value`"))?;
    let (name, value) = (name.trim(), value.trim());
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|err| format!("{name:?}: {err}"))?;
    reqwest::header::HeaderValue::from_str(value).map_err(|err| format!("{value:?}: {err}"))?;
    Ok((name.to_owned(), value.to_owned()))
}

impl Client {
    fn connection(&self) -> driver::Connection {
        let mut headers = reqwest::header::HeaderMap::new();
        let bearer = self
            .token
            .as_ref()
            .map(|token| ("authorization".to_owned(), format!("Bearer {token}")));
        for (name, value) in self.headers.iter().cloned().chain(bearer) {
            // Checked by `parse_header`, and a token is a header value like any other.
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
        driver::Connection::new(self.endpoint.clone(), headers)
    }

    fn engine_config(&self) -> EngineConfig {
        let mut config = EngineConfig {
            triggers: self.triggers.max(1),
            part_size: self.part_size,
            seed: rand_seed(),
            ..EngineConfig::default()
        };
        if let Some(slots) = self.slots {
            config.slot_rule = Arc::new(FixedSlots(slots.max(1)));
        }
        // Slots or a part size given on the command line are kept as they are.
        if self.slots.is_some() || self.part_size.is_some() {
            config.adapt = None;
        }
        config
    }
}

/// Jitter differs between runs and processes, as it must for many clients retrying together.
fn rand_seed() -> u64 {
    let time = driver::now().unix_millis();
    time ^ u64::from(std::process::id()).rotate_left(32)
}

/// Where resume records live unless `--state` says otherwise.
fn default_state_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ferry").join("uploads.json")
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Upload(args) => upload::run(args).await,
        Command::Load(args) => load::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("65536"), Ok(65_536));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(
            parse_size("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("MiB").is_err());
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }
}
