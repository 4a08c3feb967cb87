//! The companion with its embedded store, over real HTTP on loopback.

mod common;

use common::cases::{self, error};
use common::{MIB, UNCHECKED, companion, pattern};
use ferry_core::protocol::PartsSigned;
use serde_json::json;

#[tokio::test]
async fn multipart_round_trip() {
    cases::multipart_round_trip(&companion(&[]).await).await;
}

#[tokio::test]
async fn single_put_round_trip() {
    cases::single_put_round_trip(&companion(&[]).await).await;
}

#[tokio::test]
async fn a_batch_creates_single_puts_each_its_own() {
    cases::a_batch_creates_single_puts_each_its_own(&companion(&[]).await).await;
}

#[tokio::test]
async fn entity_too_small_keeps_the_upload() {
    let companion = companion(&[
        "--min-part-size",
        "1048576",
        "--part-size",
        "1048576",
        "--store-min-part-size",
        "5242880",
    ])
    .await;
    cases::entity_too_small_keeps_the_upload(&companion).await;
}

#[tokio::test]
async fn a_tampered_presigned_url_is_refused() {
    cases::a_tampered_presigned_url_is_refused(&companion(&UNCHECKED).await).await;
}

#[tokio::test]
async fn calls_after_create_need_the_matching_token() {
    let companion = companion(&UNCHECKED).await;
    let first = companion.created("a.bin", 11 * MIB).await;
    let second = companion.created("b.bin", 11 * MIB).await;

    // A token for another upload.
    let mut crossed = first.clone();
    crossed.token = second.token.clone();
    assert_eq!(
        error(companion.sign(&crossed, vec![1]).await).await,
        (403, "TokenMismatch".into())
    );
    assert_eq!(
        error(companion.list_parts(&crossed).await).await,
        (403, "TokenMismatch".into())
    );
    assert_eq!(
        error(companion.abort(&crossed).await).await,
        (403, "TokenMismatch".into())
    );

    // A forged one.
    let mut forged = first.clone();
    forged.token.insert(3, 'x');
    assert_eq!(
        error(companion.sign(&forged, vec![1]).await).await,
        (403, "BadToken".into())
    );
    assert_eq!(
        error(companion.complete(&forged, &["\"e\"".into()]).await).await,
        (403, "BadToken".into())
    );

    // Parts outside the plan (11 MiB is 3 parts of 5 MiB) sign nothing.
    for part in [0, 4, 10_001] {
        assert_eq!(
            error(companion.sign(&first, vec![1, part]).await).await,
            (403, "PartOutOfRange".into()),
            "part {part}"
        );
    }
}

#[tokio::test]
async fn bad_creates_are_refused_with_a_clear_code() {
    let companion = companion(&[
        "--max-file-size",
        "1000",
        "--allowed-types",
        "image/png,text/plain",
    ])
    .await;
    let too_large = companion
        .http
        .post(companion.url("/api/uploads"))
        .json(&json!({"name": "big.png", "size": 1001, "type": "image/png"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error(too_large).await, (413, "TooLarge".into()));
    let wrong_type = companion
        .http
        .post(companion.url("/api/uploads"))
        .json(&json!({"name": "x.exe", "size": 10, "type": "application/x-msdownload"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error(wrong_type).await, (415, "TypeNotAllowed".into()));
    let malformed = companion
        .http
        .post(companion.url("/api/uploads"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(error(malformed).await.0, 400);
}

#[tokio::test]
async fn complete_must_list_every_planned_part_in_order() {
    cases::complete_must_list_every_planned_part_in_order(&companion(&[]).await).await;
}

#[tokio::test]
async fn the_companion_refuses_to_start_without_its_bucket() {
    let moto = common::moto();
    let mut args = vec!["ferry-companion".to_owned()];
    args.extend(moto.companion_args("no-such-bucket"));
    let config = <ferry_companion::Config as clap::Parser>::parse_from(args);
    let err = ferry_companion::build(&config).await.unwrap_err();
    assert!(
        err.contains("bucket \"no-such-bucket\"") && err.contains("cannot be used"),
        "{err}"
    );
}

#[tokio::test]
async fn parts_can_go_through_the_companion_when_the_store_is_out_of_reach() {
    cases::parts_can_go_through_the_companion(&companion(&UNCHECKED).await).await;
}

#[tokio::test]
async fn an_upload_resumes_from_its_listed_parts() {
    cases::an_upload_resumes_from_its_listed_parts(&companion(&[]).await).await;
}

#[tokio::test]
async fn an_aborted_upload_leaves_nothing() {
    cases::an_aborted_upload_leaves_nothing(&companion(&[]).await).await;
}

#[tokio::test]
async fn metadata_is_stored_with_the_object() {
    cases::metadata_is_stored_with_the_object(&companion(&[]).await).await;
}

/// S3's largest multipart upload, 10,000 parts, completes: the Complete body (about 600 KiB of
/// JSON) fits the companion's limit, and ListParts is followed over all its pages. One-byte
/// parts keep it fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_parts_complete() {
    use futures::StreamExt;
    let companion = companion(&[
        "--min-part-size",
        "1",
        "--part-size",
        "1",
        "--store-min-part-size",
        "1",
        "--checksum",
        "off",
    ])
    .await;
    let bytes = pattern(10_000, 21);
    let created = companion.created("many.bin", bytes.len()).await;
    assert_eq!(created.part_count, 10_000);
    let mut urls = Vec::new();
    for batch in (1..=10_000u32).collect::<Vec<_>>().chunks(1000) {
        let signed: PartsSigned = companion
            .sign(&created, batch.to_vec())
            .await
            .json()
            .await
            .unwrap();
        urls.extend(signed.urls);
    }
    let etags: Vec<String> = futures::stream::iter(urls)
        .map(|signed| {
            let http = companion.http.clone();
            let byte = bytes[signed.part as usize - 1];
            async move {
                let response = http
                    .put(&signed.url.url)
                    .body(vec![byte])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "part {}", signed.part);
                response.headers()["etag"].to_str().unwrap().to_owned()
            }
        })
        .buffered(32)
        .collect()
        .await;
    let response = companion.complete(&created, &etags).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let object: ferry_core::protocol::StoredObject = response.json().await.unwrap();
    assert_eq!(object.size, 10_000);
    assert!(object.etag.trim_matches('"').ends_with("-10000"));
    assert!(companion.read_back(&object).await == bytes);
}

/// A sign call names each part once in its answer, however often it was asked for.
#[tokio::test]
async fn a_part_asked_for_twice_is_signed_once() {
    let companion = companion(&UNCHECKED).await;
    let created = companion.created("twice.bin", 11 * MIB).await;
    let response = companion.sign(&created, vec![2, 1, 2, 1, 1]).await;
    assert_eq!(response.status(), 200);
    let signed: PartsSigned = response.json().await.unwrap();
    let parts: Vec<u32> = signed.urls.iter().map(|signed| signed.part).collect();
    assert_eq!(parts, vec![1, 2]);
}
