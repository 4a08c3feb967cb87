//! The config file: its keys are the flags, it sits below flags and the environment and above the
//! defaults, and a key or value it cannot use stops the start with a message naming it.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use ferry_companion::Config;
use ferry_companion::config::ConfigError;

fn file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn load(args: &[&str]) -> Result<Config, String> {
    Config::load_from(std::iter::once("ferry-companion").chain(args.iter().copied())).map_err(
        |err| match err {
            ConfigError::File(message) => message,
            ConfigError::Arguments(err) => format!("arguments: {err}"),
        },
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn the_file_wins_over_defaults_and_flags_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "s3_bucket = \"from-file\"\nadmission_queue = 7\ns3_path_style = true\n\
         allowed_types = [\"image/png\", \"text/plain\"]\nkey_prefix = \"files/\"\n",
    );
    let config = load(&["--config", path_str(&path), "--s3-bucket", "from-flag"]).unwrap();
    assert_eq!(config.s3_bucket, "from-flag");
    assert_eq!(config.admission_queue, 7);
    assert!(config.s3_path_style);
    assert_eq!(config.allowed_types, ["image/png", "text/plain"]);
    assert_eq!(config.key_prefix, "files/");
    // Untouched settings keep their defaults.
    assert_eq!(config.admission_concurrency, 64);
}

#[test]
fn a_subcommand_takes_the_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "janitor_age = 60\n");
    let config = load(&["--config", path_str(&path), "janitor"]).unwrap();
    assert_eq!(config.janitor_age, 60);
    assert!(matches!(
        config.command,
        Some(ferry_companion::config::Command::Janitor)
    ));
}

/// The environment is the process's: these run the binary, with `config` printing the settings.
fn settings_printed(envs: &[(&str, &str)], args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry-companion"))
        .env_clear()
        .envs(envs.iter().copied())
        .args(args)
        .arg("config")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_environment_wins_over_the_file_and_flags_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "listen = \"127.0.0.1:9001\"\ns3_region = \"file-region\"\nsecret = \"from-file\"\n",
    );
    let printed = settings_printed(
        &[
            ("FERRY_CONFIG", path_str(&path)),
            ("FERRY_LISTEN", "127.0.0.1:9002"),
            ("FERRY_S3_BUCKET", "env-bucket"),
        ],
        &["--s3-bucket", "flag-bucket"],
    );
    let settings: toml::Table = printed.parse().unwrap();
    assert_eq!(settings["listen"].as_str(), Some("127.0.0.1:9002"));
    assert_eq!(settings["s3_bucket"].as_str(), Some("flag-bucket"));
    assert_eq!(settings["s3_region"].as_str(), Some("file-region"));
    // Secrets are never printed.
    assert_eq!(settings["secret"].as_str(), Some("(hidden)"));
    assert!(!printed.contains("from-file"), "{printed}");
}

#[test]
fn an_unknown_key_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "listen = \"127.0.0.1:1\"\nlisn = \"127.0.0.1:2\"\n");
    let message = load(&["--config", path_str(&path)]).unwrap_err();
    assert!(message.contains("unknown key `lisn`"), "{message}");
    // `config` names the file, it is not a setting of itself.
    let path = file(&dir, "config = \"other.toml\"\n");
    let message = load(&["--config", path_str(&path)]).unwrap_err();
    assert!(message.contains("unknown key `config`"), "{message}");
}

#[test]
fn a_bad_value_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "listen = \"everywhere\"",
            "key `listen`: invalid value \"everywhere\": invalid socket address syntax",
        ),
        ("part_size = -5", "key `part_size`: invalid value \"-5\""),
        (
            "s3_path_style = \"maybe\"",
            "key `s3_path_style`: invalid value 'maybe' (one of: true, false)",
        ),
        (
            "s3_endpoint = \"not a url\"",
            "key `s3_endpoint`: invalid value \"not a url\"",
        ),
        ("admission_queue = 1.5", "key `admission_queue`: a float"),
        ("listen = [\"127.0.0.1:1\"]", "key `listen` takes one value"),
        ("[store]\nbucket = \"x\"", "unknown key `store`"),
        ("listen = ", "is not valid TOML"),
    ] {
        let path = file(&dir, text);
        let message = load(&["--config", path_str(&path)]).unwrap_err();
        assert!(message.contains(expected), "{text}: {message}");
        assert!(message.contains(path_str(&path)), "{text}: {message}");
    }
    let message = load(&["--config", "/nonexistent/ferry.toml"]).unwrap_err();
    assert!(
        message.contains("cannot read /nonexistent/ferry.toml"),
        "{message}"
    );
}

#[test]
fn printed_settings_saved_as_a_file_stop_at_their_hidden_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let printed = settings_printed(
        &[
            ("FERRY_SECRET", "token-secret"),
            ("FERRY_AUTH_TOKENS", "alice=a-token"),
        ],
        &[],
    );
    let path = file(&dir, &printed);
    let message = load(&["--config", path_str(&path)]).unwrap_err();
    assert!(
        message.contains("is \"(hidden)\", as `ferry-companion config` prints a secret"),
        "{message}"
    );
    for key in ["secret", "auth_tokens"] {
        let path = file(&dir, &format!("{key} = \"(hidden)\"\n"));
        let message = load(&["--config", path_str(&path)]).unwrap_err();
        assert!(message.contains(&format!("key `{key}` is")), "{message}");
    }
    let path = file(&dir, "auth_tokens = [\"alice=a-token\", \"(hidden)\"]\n");
    assert!(load(&["--config", path_str(&path)]).is_err());
}

/// The example in the repository loads, and names every setting (as a key, or commented out).
#[test]
fn the_example_file_loads_and_lists_every_setting() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ferry.example.toml");
    let config = load(&["--config", path_str(&example)]).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    let text = std::fs::read_to_string(&example).unwrap();
    let named: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim_start_matches("# ").split_once(" = "))
        .map(|(key, _)| key)
        .collect();
    let missing: Vec<String> = Config::command()
        .get_arguments()
        .filter(|arg| arg.get_long().is_some())
        .map(|arg| arg.get_id().to_string())
        .filter(|key| !["config", "help", "version"].contains(&key.as_str()))
        .filter(|key| !named.contains(&key.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in ferry.example.toml: {missing:?}");
}
