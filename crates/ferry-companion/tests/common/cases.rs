//! Cases every S3-compatible store must pass through the companion: run against the embedded
//! store and against moto's server.

use ferry_core::UploadMode;
use ferry_core::protocol::{ErrorBody, PartList, StoredObject};

use super::{MIB, RunningCompanion, pattern};

/// A multipart upload end to end: batched signing, PUTs straight to the store, ListParts with
/// ETags, Complete, and the bytes read back through the companion.
pub async fn multipart_round_trip(companion: &RunningCompanion) {
    let bytes = pattern(12 * MIB + 3, 1);
    let created = companion.created("round trip.bin", bytes.len()).await;
    assert_eq!(
        (created.mode, created.part_count),
        (UploadMode::Multipart, 3)
    );
    let etags = companion.put_parts(&created, &bytes).await;

    let listed: PartList = companion.list_parts(&created).await.json().await.unwrap();
    let listed: Vec<_> = listed
        .parts
        .iter()
        .map(|p| (p.part, p.size, p.etag.clone()))
        .collect();
    let expected: Vec<_> = etags
        .iter()
        .zip(1..)
        .map(|(etag, part)| {
            (
                part,
                if part < 3 {
                    5 * MIB as u64
                } else {
                    2 * MIB as u64 + 3
                },
                etag.clone(),
            )
        })
        .collect();
    assert_eq!(
        listed, expected,
        "ListParts reports every part with its size and ETag"
    );

    let response = companion.complete(&created, &etags).await;
    assert_eq!(response.status(), 200);
    let object: StoredObject = response.json().await.unwrap();
    assert_eq!(
        (object.key.as_str(), object.size),
        (created.key.as_str(), bytes.len() as u64)
    );
    assert!(
        object.etag.trim_matches('"').ends_with("-3"),
        "multipart ETag: {}",
        object.etag
    );
    assert!(
        companion.read_back(&object).await == bytes,
        "object reads back identical"
    );
}

/// Files at or under one part go as one presigned PUT, including an empty one.
pub async fn single_put_round_trip(companion: &RunningCompanion) {
    for size in [0, 1, 5 * MIB] {
        let bytes = pattern(size, 2);
        let created = companion.created("small.bin", size).await;
        assert_eq!(
            (created.mode, created.upload_id.as_deref()),
            (UploadMode::Single, None)
        );
        let url = created.url.as_ref().unwrap();
        let response = companion
            .http
            .put(&url.url)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "{size} bytes: {}",
            response.text().await.unwrap()
        );
        let object = StoredObject {
            key: created.key.clone(),
            etag: String::new(),
            size: size as u64,
            location: created.location.clone(),
        };
        assert!(
            companion.read_back(&object).await == bytes,
            "{size} bytes read back identical"
        );
    }
}

/// Parts under the store's minimum are refused at Complete with `EntityTooSmall`, and the upload
/// survives: its parts are still listed and it can still be aborted. The companion here plans
/// with 1 MiB parts while the store insists on 5 MiB.
pub async fn entity_too_small_keeps_the_upload(companion: &RunningCompanion) {
    let bytes = pattern(3 * MIB, 3);
    let created = companion.created("small parts.bin", bytes.len()).await;
    assert_eq!(created.part_count, 3, "the companion planned 1 MiB parts");
    let etags = companion.put_parts(&created, &bytes).await;

    let response = companion.complete(&created, &etags).await;
    assert_eq!(response.status(), 400);
    let error: ErrorBody = response.json().await.unwrap();
    assert_eq!(error.code, "EntityTooSmall", "{error:?}");

    let listed = companion.list_parts(&created).await;
    assert_eq!(
        listed.status(),
        200,
        "the upload survives a refused Complete"
    );
    let listed: PartList = listed.json().await.unwrap();
    assert_eq!(listed.parts.len(), 3);

    assert_eq!(companion.abort(&created).await.status(), 204);
    let gone = companion.list_parts(&created).await;
    assert_eq!(gone.status(), 404);
    let error: ErrorBody = gone.json().await.unwrap();
    assert_eq!(error.code, "NoSuchUpload");
}
