//! The companion as an operator runs it: authentication, refusals, metrics, the janitor,
//! downloads, against the embedded store and against moto. Admission control has its own file.

mod common;

use std::time::Duration;

use clap::Parser;
use common::{AUTHED, MIB, cases, moto, pattern};
use ferry_companion::Config;
use ferry_core::protocol::StoredObject;
use serde_json::json;

/// This suite attacks the routes with raw requests, which carry no checksums.
async fn companion(args: &[&str]) -> common::RunningCompanion {
    common::companion(&[args, &common::UNCHECKED[..]].concat()).await
}

#[tokio::test]
async fn bad_requests_are_refused_without_touching_the_embedded_store() {
    cases::bad_requests_are_refused_without_touching_the_store(&companion(&AUTHED).await).await;
}

#[tokio::test]
async fn bad_requests_are_refused_without_touching_moto() {
    let (_moto, companion) = moto_companion("ferry-bad", &AUTHED).await;
    cases::bad_requests_are_refused_without_touching_the_store(&companion).await;
    cases::downloads_need_the_owner_or_a_link(&companion).await;
}

/// A companion in front of a fresh moto bucket, with `args` added.
async fn moto_companion(bucket: &str, args: &[&str]) -> (common::Moto, common::RunningCompanion) {
    let moto = moto();
    moto.create_bucket(bucket).await;
    let mut all = moto.companion_args(bucket);
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    let companion = companion(&all.iter().map(String::as_str).collect::<Vec<_>>()).await;
    (moto, companion)
}

#[tokio::test]
async fn downloads_need_the_owner_or_a_link() {
    cases::downloads_need_the_owner_or_a_link(&companion(&AUTHED).await).await;
}

#[tokio::test]
async fn the_embedded_store_keeps_only_what_the_plan_allows() {
    cases::the_store_keeps_only_what_the_plan_allows(&companion(&[]).await).await;
}

#[tokio::test]
async fn moto_keeps_only_what_the_plan_allows() {
    let (_moto, companion) = moto_companion("ferry-plan", &[]).await;
    cases::the_store_keeps_only_what_the_plan_allows(&companion).await;
}

#[tokio::test]
async fn a_finished_upload_is_never_written_again_on_the_embedded_store() {
    let companion = companion(&[]).await;
    cases::a_finished_upload_is_never_written_again(&companion).await;
    cases::an_expired_token_still_aborts(&companion).await;
}

#[tokio::test]
async fn a_finished_upload_is_never_written_again_on_moto() {
    let (_moto, companion) = moto_companion("ferry-once", &[]).await;
    cases::a_finished_upload_is_never_written_again(&companion).await;
    cases::an_expired_token_still_aborts(&companion).await;
}

#[tokio::test]
async fn preflights_are_cached_by_the_browser() {
    let companion = companion(&[]).await;
    let response = companion
        .http
        .request(reqwest::Method::OPTIONS, companion.url("/api/uploads"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-max-age"], "7200");
}

#[tokio::test]
async fn without_authentication_it_listens_only_on_loopback_unless_told() {
    let build = |args: &[&str]| {
        let mut argv = vec!["ferry-companion", "--data-dir"];
        let dir = tempfile::tempdir().unwrap().keep();
        let dir = dir.to_str().unwrap().to_owned();
        argv.push(Box::leak(dir.into_boxed_str()));
        argv.extend_from_slice(args);
        Config::parse_from(argv)
    };
    let err = ferry_companion::build(&build(&["--listen", "0.0.0.0:0"]))
        .await
        .unwrap_err();
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{err}"
    );
    assert!(
        ferry_companion::build(&build(&[
            "--listen",
            "0.0.0.0:0",
            "--allow-anonymous",
            "true"
        ]))
        .await
        .is_ok()
    );
    assert!(
        ferry_companion::build(&build(&["--listen", "0.0.0.0:0", "--auth-tokens", "k=o"]))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn rs256_jwts_name_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("key.pem");
    let public = dir.path().join("key.pub.pem");
    let openssl = |args: &[&str]| {
        assert!(
            std::process::Command::new("openssl")
                .args(args)
                .status()
                .unwrap()
                .success()
        )
    };
    openssl(&["genrsa", "-out", private.to_str().unwrap(), "2048"]);
    openssl(&[
        "rsa",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let companion = companion(&[
        "--jwt-rs256-public-key",
        public.to_str().unwrap(),
        "--jwt-issuer",
        "https://login.example",
    ])
    .await;
    let token = |issuer: &str| {
        let claims = json!({"sub": "carol", "iss": issuer, "exp": jsonwebtoken::get_current_timestamp() + 600});
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap()
    };
    let create_as = |issuer: &str| {
        companion
            .http
            .post(companion.url("/api/uploads"))
            .bearer_auth(token(issuer))
            .json(&json!({"name": "a.bin", "size": 10, "type": ""}))
            .send()
    };
    let ok = create_as("https://login.example").await.unwrap();
    assert_eq!(ok.status(), 200);
    let created: ferry_core::protocol::UploadCreated = ok.json().await.unwrap();
    assert!(created.key.starts_with("uploads/carol/"), "{}", created.key);
    let wrong_issuer = create_as("https://evil.example").await.unwrap();
    assert_eq!(wrong_issuer.status(), 401);
}

#[tokio::test]
async fn metrics_and_request_ids() {
    let companion = companion(&[]).await;
    let bytes = pattern(11 * MIB, 9);
    let created = companion.created("metered.bin", bytes.len()).await;
    let etags = companion.put_parts(&created, &bytes).await;
    let response = companion.complete(&created, &etags).await;
    assert!(
        response.headers().contains_key("x-request-id"),
        "every answer carries its request id"
    );
    let metrics = companion.get_text(&companion.url("/metrics")).await;
    for expected in [
        "ferry_uploads_created_total 1",
        "ferry_signatures_total 3",
        "ferry_uploads_completed_total 1",
        &format!("ferry_bytes_completed_total {}", 11 * MIB),
        "ferry_http_requests_total{route=\"/api/uploads/{id}/sign\",status=\"200\"} 1",
        "ferry_http_request_duration_seconds_count{route=\"/api/uploads\"} 1",
    ] {
        assert!(
            metrics.lines().any(|line| line == expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
    assert_eq!(companion.get_text(&companion.url("/healthz")).await, "ok");
}

#[tokio::test]
async fn range_requests_work_through_the_download_redirect() {
    let companion = companion(&[]).await;
    let bytes = pattern(11 * MIB, 10);
    let created = companion.created("ranged.bin", bytes.len()).await;
    let etags = companion.put_parts(&created, &bytes).await;
    let object: StoredObject = companion
        .complete(&created, &etags)
        .await
        .json()
        .await
        .unwrap();
    let start = 5 * MIB - 10;
    let response = companion
        .http
        .get(companion.url(&object.location))
        .header("range", format!("bytes={start}-{}", start + 19))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.bytes().await.unwrap().to_vec(),
        bytes[start..start + 20].to_vec()
    );
}

#[tokio::test]
async fn the_janitor_aborts_stale_uploads_and_keeps_young_ones() {
    let companion = companion(&[]).await;
    let fresh = companion.created("fresh.bin", 11 * MIB).await;
    let store = &companion.state.store;
    let young = ferry_companion::janitor::sweep(store, "uploads/", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        (young.seen, young.aborted),
        (1, 0),
        "a young upload is kept"
    );
    assert_eq!(companion.list_parts(&fresh).await.status(), 200);
    let elsewhere = ferry_companion::janitor::sweep(store, "other/", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        elsewhere.seen, 0,
        "only uploads under the prefix are looked at"
    );
    let old = ferry_companion::janitor::sweep(store, "uploads/", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((old.seen, old.aborted), (1, 1), "an old one is aborted");
    assert_eq!(companion.list_parts(&fresh).await.status(), 404);
}

#[tokio::test]
async fn the_janitor_reads_moto_listings() {
    // moto dates every upload in 2010, so only the sweep itself can be checked there.
    let moto = moto();
    moto.create_bucket("ferry-janitor").await;
    let args = moto.companion_args("ferry-janitor");
    let companion = companion(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let stale = companion.created("stale.bin", 11 * MIB).await;
    let sweep = ferry_companion::janitor::sweep(
        &companion.state.store,
        "uploads/",
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!((sweep.seen, sweep.aborted), (1, 1));
    assert_eq!(companion.list_parts(&stale).await.status(), 404);
}

#[tokio::test]
async fn downloads_are_limited_to_uploaded_keys_and_complete_can_be_retried() {
    let companion = companion(&[]).await;
    let outside = companion
        .http
        .get(companion.url("/api/files/private/report.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        outside.status(),
        400,
        "a key outside the prefix is not served"
    );

    let bytes = pattern(11 * MIB, 11);
    let created = companion.created("twice.bin", bytes.len()).await;
    let etags = companion.put_parts(&created, &bytes).await;
    let first: StoredObject = companion
        .complete(&created, &etags)
        .await
        .json()
        .await
        .unwrap();
    // The answer was lost and the client asks again: the object is there, so it is the answer.
    let again = companion.complete(&created, &etags).await;
    assert_eq!(again.status(), 200);
    let second: StoredObject = again.json().await.unwrap();
    assert_eq!(
        (second.key.as_str(), second.size),
        (first.key.as_str(), first.size)
    );
    assert_eq!(second.etag.trim_matches('"'), first.etag.trim_matches('"'));
}

/// An owner whose name is not key-safe (`ops/alice`) gets a segment of its own, not `alice`'s:
/// each reads only its own files by credentials.
#[tokio::test]
async fn owners_whose_names_look_alike_cannot_read_each_other() {
    let companion = companion(&["--auth-tokens", "ops-key=ops/alice,alice-key=alice"]).await;
    let created = companion.created_as("ops-key", "ops.bin", 10).await;
    assert!(created.key.starts_with("uploads/alice@"), "{}", created.key);
    let url = created.url.clone().unwrap();
    assert_eq!(
        companion.put_single(&url, pattern(10, 1)).await.status(),
        200
    );
    let path = created.location.split('?').next().unwrap().to_owned();
    for (bearer, status) in [("alice-key", 403), ("ops-key", 200)] {
        let response = companion
            .http
            .get(companion.url(&path))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{bearer}");
    }
}

/// Out of the box the companion sweeps abandoned uploads (hourly, those over a day old) and
/// refuses to overwrite: nothing to turn on for a safe deployment.
#[test]
fn safe_settings_are_the_defaults() {
    let config = Config::parse_from(["ferry-companion"]);
    assert_eq!((config.janitor_period, config.janitor_age), (3_600, 86_400));
    assert!(config.s3_conditional_writes);
    assert!(config.header_timeout > 0 && config.min_body_rate > 0);
}
