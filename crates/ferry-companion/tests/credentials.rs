//! The store's credentials from the standard AWS chain, on loopback: a container credentials
//! endpoint (as ECS and EKS Pod Identity serve them) that hands out a new key on every call, and
//! moto's STS for a web identity (as EKS service accounts use). The companion runs as its own
//! process, since the chain reads the environment; moto checks no signatures, so what the chain
//! found is read off the presigned URLs it signs.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::routing::get;
use common::moto;
use ferry_core::protocol::{PartsSigned, UploadCreated};
use serde_json::json;
use tokio::sync::Notify;

/// A companion process with `env`, pointed at moto, killed when dropped.
struct CompanionProcess {
    base: String,
    child: Child,
    _home: tempfile::TempDir,
}

impl Drop for CompanionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn companion_process(moto_endpoint: &str, bucket: &str, env: &[(&str, &str)]) -> CompanionProcess {
    use std::io::BufRead;
    // An empty home: no profile of the machine's user may answer instead.
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry-companion"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("FERRY_LISTEN", "127.0.0.1:0")
        .env("FERRY_SECRET", "test-secret")
        .env("FERRY_S3_ENDPOINT", moto_endpoint)
        .env("FERRY_S3_BUCKET", bucket)
        .env("FERRY_S3_PATH_STYLE", "true")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.contains("listening on"))
        .expect("the companion starts with credentials from the chain");
    let base = line.rsplit(' ').next().unwrap().to_owned();
    CompanionProcess {
        base,
        child,
        _home: home,
    }
}

/// Creates a multipart upload and signs part 1: the URL names the access key and carries the
/// session token the companion signs with now.
async fn signing_identity(http: &reqwest::Client, base: &str) -> (String, Option<String>) {
    async fn post<T: serde::de::DeserializeOwned>(
        http: &reqwest::Client,
        url: String,
        body: serde_json::Value,
    ) -> T {
        let response = http.post(url).json(&body).send().await.unwrap();
        response.json().await.unwrap()
    }
    let body = json!({"name": "c.bin", "size": 11 * 1024 * 1024, "type": ""});
    let created: UploadCreated = post(http, format!("{base}/api/uploads"), body).await;
    let id = created.upload_id.unwrap();
    // Any CRC32C value will do: the URL is read, never used.
    let body = json!({"token": created.token, "parts": [1], "checksums": ["AAAAAA=="]});
    let signed: PartsSigned = post(http, format!("{base}/api/uploads/{id}/sign"), body).await;
    let url = url::Url::parse(&signed.urls[0].url.url).unwrap();
    let query = |name: &str| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let key = query("X-Amz-Credential")
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    (key, query("X-Amz-Security-Token"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_credentials_are_used_and_refreshed_before_they_expire() {
    let moto = moto();
    moto.create_bucket("ferry-creds").await;
    // Every call hands out the next key, valid for 4 s: the companion must come back for one
    // before that.
    let served = Arc::new(AtomicU32::new(0));
    let refreshed = Arc::new(Notify::new());
    let endpoint = axum::Router::new().route(
        "/credentials",
        get({
            let served = served.clone();
            let refreshed = refreshed.clone();
            move |headers: axum::http::HeaderMap| async move {
                assert_eq!(
                    headers["authorization"], "container-token",
                    "the chain sends the container's authorization token"
                );
                let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= 2 {
                    refreshed.notify_one();
                }
                let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
                axum::Json(json!({
                    "AccessKeyId": format!("ROTATED{n}"),
                    "SecretAccessKey": format!("secret-{n}"),
                    "Token": format!("session-{n}"),
                    "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, endpoint).await.unwrap() });

    let uri = format!("http://{address}/credentials");
    let companion = companion_process(
        &moto.endpoint,
        "ferry-creds",
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-token"),
        ],
    );
    let http = reqwest::Client::new();
    let first = signing_identity(&http, &companion.base).await;
    assert_eq!(first, ("ROTATED1".into(), Some("session-1".into())));

    tokio::time::timeout(Duration::from_secs(30), refreshed.notified())
        .await
        .expect("the companion fetched new credentials before the first expired");
    // The refresh swaps the credentials in: the next URL is signed with them.
    let mut identity = signing_identity(&http, &companion.base).await;
    for _ in 0..50 {
        if identity.0 != "ROTATED1" {
            break;
        }
        tokio::task::yield_now().await;
        identity = signing_identity(&http, &companion.base).await;
    }
    let n = identity
        .0
        .trim_start_matches("ROTATED")
        .parse::<u32>()
        .unwrap();
    assert!(n >= 2, "signed with refreshed credentials: {identity:?}");
    assert_eq!(identity.1, Some(format!("session-{n}")));
}

#[tokio::test]
async fn a_web_identity_is_exchanged_at_sts_for_credentials() {
    let moto = moto();
    moto.create_bucket("ferry-web-identity").await;
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "eyJhbGciOiJub25lIn0.eyJzdWIiOiJmZXJyeSJ9.").unwrap();
    let companion = companion_process(
        &moto.endpoint,
        "ferry-web-identity",
        &[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token.path().to_str().unwrap(),
            ),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/ferry-uploads",
            ),
            ("AWS_ROLE_SESSION_NAME", "ferry-test"),
            ("AWS_ENDPOINT_URL_STS", &moto.endpoint),
        ],
    );
    let (key, session) = signing_identity(&reqwest::Client::new(), &companion.base).await;
    assert!(
        key.starts_with("ASIA"),
        "temporary credentials from STS: {key}"
    );
    assert!(session.is_some_and(|token| !token.is_empty()));
}

#[tokio::test]
async fn without_any_credentials_the_companion_says_how_to_give_them() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferry-companion"))
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("FERRY_S3_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no store credentials") && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
}
