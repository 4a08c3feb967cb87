//! The app without sockets: requests go to the router with `oneshot`. Refusals, tokens,
//! authentication, admission and time limits never reach the store, so its address here is a
//! closed port; every refusal answers with the one JSON error body.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use ferry_companion::store::StoreConfig;
use ferry_companion::token::Claims;
use ferry_companion::{Config, app, credentials, state};
use ferry_core::protocol::ErrorBody;
use tower::ServiceExt;

/// The app for a companion started with `args`, and what signs its tokens.
fn companion(args: &[&str]) -> (Router, std::sync::Arc<ferry_companion::api::AppState>) {
    let argv = ["ferry-companion", "--secret", "app-tests"]
        .iter()
        .chain(args)
        .copied();
    let config = Config::parse_from(argv);
    let store = StoreConfig {
        endpoint: "http://127.0.0.1:9".parse().unwrap(),
        bucket: "nowhere".into(),
        region: "us-east-1".into(),
        path_style: true,
        credentials: credentials::fixed("key", "secret", None),
    };
    let state = state(&config, &store).unwrap();
    (app(&config, state.clone()).unwrap(), state)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `upload`, owned by `owner`, expiring `expires_in` seconds from now.
fn token(
    state: &ferry_companion::api::AppState,
    upload: &str,
    owner: &str,
    expires_in: i64,
) -> String {
    state.tokens.sign(&Claims {
        checksum: None,
        upload_id: Some(upload.into()),
        key: format!("{owner}/0123456789abcdef01234567/f.bin"),
        size: 20 << 20,
        part_size: 5 << 20,
        owner: owner.into(),
        expires_at: now().saturating_add_signed(expires_in),
        metadata: Default::default(),
        content_type: String::new(),
    })
}

fn json(method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// Sends `request`; returns the status and the error body's code.
async fn refusal(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: ErrorBody = serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("{status}: not an error body ({err}): {bytes:?}"));
    assert!(!body.message.is_empty());
    (status, body.code)
}

#[tokio::test]
async fn every_refusal_has_its_status_and_code_in_one_error_body() {
    let (app, state) = companion(&["--max-file-size", "1000", "--allowed-types", "image/png"]);
    let sign = |token: &str, parts: &str| {
        json(
            "POST",
            "/api/uploads/u1/sign",
            &format!(r#"{{"token":"{token}","parts":{parts}}}"#),
        )
    };
    let mine = token(&state, "u1", "anonymous", 600);
    let other_upload = token(&state, "u2", "anonymous", 600);
    let expired = token(&state, "u1", "anonymous", -600);
    let many: Vec<u32> = (1..=1001).collect();
    let cases = [
        (
            json("POST", "/api/uploads", "{"),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            json("POST", "/api/uploads", r#"{"name":1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "BadRequest",
        ),
        (
            Request::post("/api/uploads")
                .body(Body::from("{}"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BadRequest",
        ),
        (
            json(
                "POST",
                "/api/uploads",
                r#"{"name":"a.png","size":1001,"type":"image/png"}"#,
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "TooLarge",
        ),
        (
            json(
                "POST",
                "/api/uploads",
                r#"{"name":"a.html","size":10,"type":"text/html"}"#,
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "TypeNotAllowed",
        ),
        (sign("garbage", "[1]"), StatusCode::FORBIDDEN, "BadToken"),
        (
            sign(&other_upload, "[1]"),
            StatusCode::FORBIDDEN,
            "TokenMismatch",
        ),
        (sign(&expired, "[1]"), StatusCode::FORBIDDEN, "TokenExpired"),
        (sign(&mine, "[0]"), StatusCode::FORBIDDEN, "PartOutOfRange"),
        (sign(&mine, "[5]"), StatusCode::FORBIDDEN, "PartOutOfRange"),
        (
            sign(&mine, &serde_json::to_string(&many).unwrap()),
            StatusCode::BAD_REQUEST,
            "TooManyParts",
        ),
        (
            Request::get("/api/uploads/u1/parts")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "BadRequest",
        ),
        (
            Request::get("/api/files/anonymous/..%2F..%2Fsecret")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "BadKey",
        ),
        (
            Request::delete(format!("/api/uploads/u2?token={mine}"))
                .body(Body::empty())
                .unwrap(),
            StatusCode::FORBIDDEN,
            "TokenMismatch",
        ),
    ];
    for (request, status, code) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        assert_eq!(
            refusal(&app, request).await,
            (status, code.to_owned()),
            "{what}"
        );
    }
}

#[tokio::test]
async fn with_authentication_a_call_needs_the_owner() {
    let (app, state) = companion(&["--auth-tokens", "alice-key=alice,bob-key=bob"]);
    let create = json("POST", "/api/uploads", r#"{"name":"a.bin","size":10}"#);
    assert_eq!(
        refusal(&app, create).await,
        (StatusCode::UNAUTHORIZED, "Unauthorized".into())
    );
    let batch = json(
        "POST",
        "/api/uploads/batch",
        r#"{"files":[{"name":"a.bin","size":10}]}"#,
    );
    assert_eq!(
        refusal(&app, batch).await,
        (StatusCode::UNAUTHORIZED, "Unauthorized".into())
    );
    let alices = token(&state, "u1", "alice", 600);
    let mut sign = json(
        "POST",
        "/api/uploads/u1/sign",
        &format!(r#"{{"token":"{alices}","parts":[1]}}"#),
    );
    sign.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer bob-key".parse().unwrap());
    assert_eq!(
        refusal(&app, sign).await,
        (StatusCode::FORBIDDEN, "NotYourUpload".into())
    );
}

/// A create whose body never ends: it holds its admission slot while its JSON is awaited.
fn endless_create() -> Request<Body> {
    let pending = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
    Request::post("/api/uploads")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(pending))
        .unwrap()
}

#[tokio::test]
async fn a_full_gate_answers_503_busy_with_retry_after() {
    let (app, _) = companion(&["--admission-concurrency", "1", "--admission-queue", "0"]);
    let first = app.clone().oneshot(endless_create());
    let mut first = std::pin::pin!(first);
    // Polled once, the first request is admitted and waits for its body.
    assert!(futures::poll!(&mut first).is_pending());
    let response = app.clone().oneshot(endless_create()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body.code, "Busy");
    // The config route has no gate: it answers while the upload routes are full.
    let config = app
        .clone()
        .oneshot(Request::get("/api/config").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(config.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_request_over_its_time_limit_is_408_timed_out() {
    let (app, _) = companion(&["--request-timeout", "5"]);
    // Virtual time: the timer fires when nothing else can run, without waiting 5 s.
    assert_eq!(
        refusal(&app, endless_create()).await,
        (StatusCode::REQUEST_TIMEOUT, "TimedOut".into())
    );
}
