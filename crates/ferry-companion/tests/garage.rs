//! The companion in front of Garage, a production S3 store that checks signatures, run as an
//! outside binary: the cases every store passes, and where Garage answers otherwise than S3.

mod common;

use std::time::{Duration, Instant};

use common::{AUTHED, MIB, RunningCompanion, Store, cases, companion_on, garage, pattern};
use ferry_core::protocol::{PartsSigned, StoredObject};
use ferry_core::retry::{RetryPolicy, Verdict, verdict};

/// A companion in front of a fresh Garage bucket, with `args` added: checksums off unless they
/// ask, as most of this suite sends raw requests.
async fn garage_companion(bucket: &str, args: &[&str]) -> (common::Garage, RunningCompanion) {
    let garage = garage();
    garage.create_bucket(bucket).await;
    let mut all = garage.companion_args(bucket);
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    if !args.contains(&"--checksum") {
        all.extend(common::UNCHECKED.map(str::to_owned));
    }
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    (garage, companion_on(Store::Garage, &all).await)
}

#[tokio::test]
async fn uploads_round_trip() {
    let (_garage, companion) =
        garage_companion("ferry-round-trip", &["--checksum", "crc32c"]).await;
    cases::multipart_round_trip(&companion).await;
    cases::single_put_round_trip(&companion).await;
    cases::a_batch_creates_single_puts_each_its_own(&companion).await;
    cases::metadata_is_stored_with_the_object(&companion).await;
    cases::an_upload_resumes_from_its_listed_parts(&companion).await;
    cases::an_aborted_upload_leaves_nothing(&companion).await;
}

#[tokio::test]
async fn garage_checks_what_the_signature_binds() {
    let (_garage, companion) = garage_companion("ferry-signatures", &[]).await;
    cases::a_tampered_presigned_url_is_refused(&companion).await;
    cases::the_store_keeps_only_what_the_plan_allows(&companion).await;
    cases::complete_must_list_every_planned_part_in_order(&companion).await;
}

#[tokio::test]
async fn parts_can_go_through_the_companion() {
    let (_garage, companion) = garage_companion("ferry-fallback", &[]).await;
    cases::parts_can_go_through_the_companion(&companion).await;
}

#[tokio::test]
async fn bad_requests_are_refused_without_touching_garage() {
    let (_garage, companion) = garage_companion("ferry-bad", &AUTHED).await;
    cases::bad_requests_are_refused_without_touching_the_store(&companion).await;
    cases::downloads_need_the_owner_or_a_link(&companion).await;
}

/// Garage 2.5 ignores `If-None-Match: *` on PutObject and CompleteMultipartUpload: a replayed
/// single-PUT URL overwrites (the case asserts it), while the companion's own routes still refuse.
#[tokio::test]
async fn a_finished_upload_is_never_written_again_through_the_companion() {
    let (_garage, companion) = garage_companion("ferry-once", &[]).await;
    cases::a_finished_upload_is_never_written_again(&companion).await;
    cases::an_expired_token_still_aborts(&companion).await;
}

/// Garage does not enforce S3's 5 MiB minimum part size: parts of 1 MiB complete, where AWS S3
/// and moto answer `EntityTooSmall`.
#[tokio::test]
async fn garage_takes_parts_under_five_mib() {
    let args = ["--min-part-size", "1048576", "--part-size", "1048576"];
    let (_garage, companion) = garage_companion("ferry-small-parts", &args).await;
    let bytes = pattern(3 * MIB, 3);
    let created = companion.created("small parts.bin", bytes.len()).await;
    assert_eq!(created.part_count, 3, "the companion planned 1 MiB parts");
    let etags = companion.put_parts(&created, &bytes).await;
    let response = companion.complete(&created, &etags).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let object: StoredObject = response.json().await.unwrap();
    assert!(companion.read_back(&object).await == bytes);
}

/// A presigned URL past its lifetime is refused with 400 `InvalidRequest` "Date is too old"
/// (AWS S3 answers 403 "Request has expired"). The browser must take it as "sign again", not as
/// a refusal that fails the file: a URL signed again goes through.
#[tokio::test]
async fn an_expired_url_is_signed_again() {
    // X-Amz-Date is in whole seconds, so a URL lives between lifetime - 1 and lifetime seconds:
    // 3 leaves the URLs signed again the time to be used.
    let args = [
        "--url-lifetime",
        "3",
        "--min-part-size",
        "1048576",
        "--part-size",
        "1048576",
    ];
    let (_garage, companion) = garage_companion("ferry-expired", &args).await;
    let bytes = pattern(2 * MIB, 19);
    let created = companion.created("late.bin", bytes.len()).await;
    let chunks: Vec<&[u8]> = bytes.chunks(MIB).collect();
    let signed: PartsSigned = companion
        .sign(&created, vec![1])
        .await
        .json()
        .await
        .unwrap();
    // The URL works until Garage finds it too old: PUT it until then. Garage refuses before
    // reading the body and then closes the connection, so none is kept for the next request.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let response = companion
            .http
            .put(&signed.urls[0].url.url)
            .header("connection", "close")
            .body(chunks[0].to_vec())
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "the 3 s URL still works after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = refused.status().as_u16();
    let failure =
        ferry_core::answer::failure_from_answer(status, &refused.text().await.unwrap(), None);
    assert_eq!(
        (status, failure.code.as_str(), failure.message.as_str()),
        (400, "InvalidRequest", "Bad request: Date is too old"),
    );
    assert_eq!(
        verdict(&failure, 0, &RetryPolicy::default()),
        Verdict::Resign,
        "Garage's expired URL is signed again"
    );

    let etags = companion.put_parts(&created, &bytes).await;
    let response = companion.complete(&created, &etags).await;
    assert_eq!(response.status(), 200);
    let object: StoredObject = response.json().await.unwrap();
    assert!(companion.read_back(&object).await == bytes);
}

/// The bucket's CORS rule lets a page on any origin PUT and read the ETag and checksums. Garage
/// answers the preflight's headers with a literal `*` and, unlike S3, sends no
/// `Access-Control-Max-Age` although the rule sets `MaxAgeSeconds`: browsers preflight again
/// after their own default (5 s in Chromium).
#[tokio::test]
async fn browsers_may_put_and_read_the_etag() {
    let (_garage, companion) = garage_companion("ferry-cors", &[]).await;
    let created = companion.created("cors.bin", 10).await;
    let url = created.url.clone().unwrap();
    let origin = "https://app.example";
    let preflight = companion
        .http
        .request(reqwest::Method::OPTIONS, &url.url)
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "content-type,if-none-match",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header(&preflight, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(header(&preflight, "access-control-allow-methods").is_some_and(|m| m.contains("PUT")));
    assert_eq!(
        header(&preflight, "access-control-allow-headers").as_deref(),
        Some("*")
    );
    assert_eq!(header(&preflight, "access-control-max-age"), None);

    let mut put = companion
        .http
        .put(&url.url)
        .header("origin", origin)
        .body(pattern(10, 20));
    for (name, value) in &url.headers {
        put = put.header(name, value);
    }
    let put = put.send().await.unwrap();
    assert_eq!(put.status(), 200);
    let exposed = header(&put, "access-control-expose-headers").unwrap_or_default();
    for name in [
        "ETag",
        "x-amz-checksum-crc32c",
        "x-amz-checksum-crc64nvme",
        "x-amz-checksum-sha256",
        "x-amz-checksum-type",
    ] {
        assert!(exposed.contains(name), "{name} is exposed: {exposed}");
    }
}

#[tokio::test]
async fn the_janitor_aborts_stale_uploads_and_keeps_young_ones() {
    let (_garage, companion) = garage_companion("ferry-janitor", &[]).await;
    let store = &companion.state.store;
    let fresh = companion.created("fresh.bin", 11 * MIB).await;
    let sweep = |prefix: &'static str, age: Duration| async move {
        let sweep = ferry_companion::janitor::sweep(store, prefix, age)
            .await
            .unwrap();
        (sweep.seen, sweep.aborted)
    };
    assert_eq!(
        sweep("uploads/", Duration::from_secs(3600)).await,
        (1, 0),
        "a young upload is kept"
    );
    assert_eq!(companion.list_parts(&fresh).await.status(), 200);
    assert_eq!(sweep("other/", Duration::ZERO).await, (0, 0));
    assert_eq!(
        sweep("uploads/", Duration::ZERO).await,
        (1, 1),
        "an old one is aborted"
    );
    assert_eq!(companion.list_parts(&fresh).await.status(), 404);
}

#[tokio::test]
async fn the_companion_refuses_to_start_without_its_bucket() {
    let garage = garage();
    let mut args = vec!["ferry-companion".to_owned()];
    args.extend(garage.companion_args("no-such-bucket"));
    let config = <ferry_companion::Config as clap::Parser>::parse_from(args);
    let err = ferry_companion::build(&config).await.unwrap_err();
    assert!(
        err.contains("bucket \"no-such-bucket\"") && err.contains("cannot be used"),
        "{err}"
    );
}
