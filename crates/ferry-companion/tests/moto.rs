//! The same multipart cases with the companion pointed at moto's S3 server: an independent
//! implementation of S3's multipart rules.

mod common;

use common::{cases, companion, moto};

#[tokio::test]
async fn multipart_round_trip() {
    let moto = moto();
    moto.create_bucket("ferry-moto").await;
    let args = moto.companion_args("ferry-moto");
    let companion = companion(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    cases::multipart_round_trip(&companion).await;
    cases::single_put_round_trip(&companion).await;
    cases::a_batch_creates_single_puts_each_its_own(&companion).await;
    cases::metadata_is_stored_with_the_object(&companion).await;
    cases::an_upload_resumes_from_its_listed_parts(&companion).await;
    cases::an_aborted_upload_leaves_nothing(&companion).await;
}

#[tokio::test]
async fn entity_too_small_keeps_the_upload() {
    let moto = moto();
    moto.create_bucket("ferry-moto").await;
    let mut args = moto.companion_args("ferry-moto");
    args.extend(["--min-part-size", "1048576", "--part-size", "1048576"].map(str::to_owned));
    let companion = companion(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    cases::entity_too_small_keeps_the_upload(&companion).await;
}
