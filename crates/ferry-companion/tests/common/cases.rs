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
        // The signed headers (here the content type) must go with the PUT.
        let mut put = companion.http.put(&url.url).body(bytes.clone());
        for (name, value) in &url.headers {
            put = put.header(name, value);
        }
        let response = put.send().await.unwrap();
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

/// Bad requests, each refused with its exact status and code, none of them touching the store.
/// The companion must run with `--auth-tokens alice-key=alice,bob-key=bob`,
/// `--max-file-size 104857600`, `--allowed-types application/octet-stream` and secret
/// `test-secret`.
pub async fn bad_requests_are_refused_without_touching_the_store(companion: &RunningCompanion) {
    use ferry_companion::token::{Claims, TokenKey};
    use serde_json::json;

    let http = &companion.http;
    let post = |path: &str, bearer: Option<&str>| {
        let request = http.post(companion.url(path));
        match bearer {
            Some(bearer) => request.bearer_auth(bearer),
            None => request,
        }
    };
    let create = json!({"name": "a.bin", "size": 11 * MIB, "type": "application/octet-stream"});
    let created: ferry_core::protocol::UploadCreated = post("/api/uploads", Some("alice-key"))
        .json(&create)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created.upload_id.clone().unwrap();
    let sign_path = format!("/api/uploads/{id}/sign");
    let expired = TokenKey::new(b"test-secret").sign(&Claims {
        upload_id: Some(id.clone()),
        key: created.key.clone(),
        size: 11 * MIB as u64,
        part_size: created.part_size,
        owner: "alice".into(),
        expires_at: 1,
        metadata: Default::default(),
        content_type: String::new(),
    });
    let huge =
        json!({"name": "x".repeat(400 * 1024), "size": 1, "type": "application/octet-stream"});

    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed JSON",
            post("/api/uploads", Some("alice-key"))
                .header("content-type", "application/json")
                .body("{\"name\": "),
            400,
            "BadRequest",
        ),
        (
            "a huge body",
            post("/api/uploads", Some("alice-key")).json(&huge),
            413,
            "BadRequest",
        ),
        (
            "no credentials",
            post("/api/uploads", None).json(&create),
            401,
            "Unauthorized",
        ),
        (
            "a wrong bearer token",
            post("/api/uploads", Some("mallory-key")).json(&create),
            401,
            "Unauthorized",
        ),
        (
            "a negative size",
            post("/api/uploads", Some("alice-key"))
                .json(&json!({"name": "a", "size": -1, "type": ""})),
            422,
            "BadRequest",
        ),
        (
            "an oversized size",
            post("/api/uploads", Some("alice-key")).json(
                &json!({"name": "a", "size": 100 * MIB + 1, "type": "application/octet-stream"}),
            ),
            413,
            "TooLarge",
        ),
        (
            "a size beyond u64",
            post("/api/uploads", Some("alice-key"))
                .header("content-type", "application/json")
                .body("{\"name\":\"a\",\"size\":18446744073709551616,\"type\":\"\"}"),
            422,
            "BadRequest",
        ),
        (
            "a content type not allowed",
            post("/api/uploads", Some("alice-key"))
                .json(&json!({"name": "a.exe", "size": 10, "type": "application/x-msdownload"})),
            415,
            "TypeNotAllowed",
        ),
        (
            "a forged upload token",
            post(&sign_path, Some("alice-key")).json(&json!({"token": "e30.AAAA", "parts": [1]})),
            403,
            "BadToken",
        ),
        (
            "an expired upload token",
            post(&sign_path, Some("alice-key")).json(&json!({"token": expired, "parts": [1]})),
            403,
            "TokenExpired",
        ),
        (
            "another owner's upload",
            post(&sign_path, Some("bob-key")).json(&json!({"token": created.token, "parts": [1]})),
            403,
            "NotYourUpload",
        ),
        (
            "part 0",
            post(&sign_path, Some("alice-key"))
                .json(&json!({"token": created.token, "parts": [0]})),
            403,
            "PartOutOfRange",
        ),
        (
            "part 10,001",
            post(&sign_path, Some("alice-key"))
                .json(&json!({"token": created.token, "parts": [10_001]})),
            403,
            "PartOutOfRange",
        ),
        (
            "a part beyond the plan",
            post(&sign_path, Some("alice-key"))
                .json(&json!({"token": created.token, "parts": [1, 4]})),
            403,
            "PartOutOfRange",
        ),
        (
            "an unknown upload id",
            post("/api/uploads/no-such-upload/sign", Some("alice-key"))
                .json(&json!({"token": created.token, "parts": [1]})),
            403,
            "TokenMismatch",
        ),
        (
            "an incomplete part list",
            post(&format!("/api/uploads/{id}/complete"), Some("alice-key"))
                .json(&json!({"token": created.token, "parts": [{"part": 1, "etag": "x"}]})),
            400,
            "BadRequest",
        ),
        (
            "another owner's abort",
            http.delete(companion.url(&format!("/api/uploads/{id}")))
                .bearer_auth("bob-key")
                .query(&[("token", &created.token)]),
            403,
            "NotYourUpload",
        ),
        (
            "a part of the wrong size",
            http.put(companion.url(&format!("/api/uploads/{id}/parts/1")))
                .bearer_auth("alice-key")
                .query(&[("token", &created.token)])
                .body(vec![0u8; 10]),
            400,
            "WrongLength",
        ),
    ];
    for (name, request, status, code) in cases {
        let before = companion.store_state().await;
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{name}");
        let body: ErrorBody = response
            .json()
            .await
            .unwrap_or_else(|err| panic!("{name}: no JSON error body: {err}"));
        assert_eq!(body.code, code, "{name}: {}", body.message);
        assert_eq!(
            companion.store_state().await,
            before,
            "{name} left the store as it was"
        );
    }

    // Names are never refused for what they contain: they are made safe.
    for (name, expected) in [
        ("../../etc/passwd", "/passwd"),
        ("a\u{0}b\u{7}.txt", "/a_b_.txt"),
        ("ünïcödé.txt", "/ünïcödé.txt"),
    ] {
        let body = json!({"name": name, "size": 10, "type": "application/octet-stream"});
        let created: ferry_core::protocol::UploadCreated = post("/api/uploads", Some("alice-key"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            created.key.starts_with("uploads/alice/") && created.key.ends_with(expected),
            "{name:?} became {}",
            created.key
        );
        assert!(!created.key.contains("..") && !created.key.chars().any(char::is_control));
    }
}

/// User metadata given at create comes back on the object, for single and multipart uploads.
pub async fn metadata_is_stored_with_the_object(companion: &RunningCompanion) {
    use serde_json::json;
    for size in [100, 11 * MIB] {
        let bytes = pattern(size, 7);
        let body = json!({"name": "m.bin", "size": size, "type": "application/octet-stream", "metadata": {"album": "Summer-2026", "Camera": "x100"}});
        let response = companion
            .http
            .post(companion.url("/api/uploads"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let created: ferry_core::protocol::UploadCreated = response.json().await.unwrap();
        let location = if let Some(url) = &created.url {
            let mut put = companion.http.put(&url.url).body(bytes.clone());
            for (name, value) in &url.headers {
                put = put.header(name, value);
            }
            assert_eq!(
                put.send().await.unwrap().status(),
                200,
                "the signed metadata headers are accepted"
            );
            created.location.clone()
        } else {
            let etags = companion.put_parts(&created, &bytes).await;
            let object: StoredObject = companion
                .complete(&created, &etags)
                .await
                .json()
                .await
                .unwrap();
            object.location
        };
        let read = companion
            .http
            .get(companion.url(&location))
            .send()
            .await
            .unwrap();
        assert_eq!(
            read.headers()["x-amz-meta-album"],
            "Summer-2026",
            "{size} bytes"
        );
        assert_eq!(read.headers()["x-amz-meta-camera"], "x100");
        assert_eq!(
            read.headers()["content-type"],
            "application/octet-stream",
            "{size} bytes keep their type"
        );
        assert!(read.bytes().await.unwrap().to_vec() == bytes);
    }
    let bad = json!({"name": "m.bin", "size": 10, "type": "", "metadata": {"bad name": "x"}});
    let response = companion
        .http
        .post(companion.url("/api/uploads"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        400,
        "a metadata name that is no header name is refused"
    );
}
