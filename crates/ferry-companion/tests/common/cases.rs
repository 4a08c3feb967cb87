//! Cases every S3-compatible store must pass through the companion: run against the embedded
//! store, moto's server and Garage.

use ferry_core::UploadMode;
use ferry_core::protocol::{
    BatchCreated, ErrorBody, PartList, PartsSigned, StoredObject, UploadsCreated,
};
use serde_json::json;

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
        let created = companion.created_for("small.bin", &bytes).await;
        assert_eq!(
            (created.mode, created.upload_id.as_deref()),
            (UploadMode::Single, None)
        );
        let url = created.url.as_ref().unwrap();
        // The signed headers (here the content type) must go with the PUT.
        let response = companion.put_single(url, bytes.clone()).await;
        assert_eq!(
            response.status(),
            200,
            "{size} bytes: {}",
            response.text().await.unwrap()
        );
        let object = StoredObject {
            checksum: None,
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

/// Files of one part created in one call: each is an upload of its own (key, token, URL) that
/// stores its bytes, with the checksum its URL binds when the companion asks for one; a refused
/// file (too large for one part, bad metadata, no checksum) fails no other; a batch holds 1 to
/// 100 files.
pub async fn a_batch_creates_single_puts_each_its_own(companion: &RunningCompanion) {
    let sizes = [0, 1, 1000, 64 * 1024, 5 * MIB];
    let mut files: Vec<serde_json::Value> = sizes
        .iter()
        .enumerate()
        .map(|(index, &size)| {
            let bytes = pattern(size, index as u8);
            json!({"name": "same-name.bin", "size": size, "type": "application/octet-stream",
                   "checksum": companion.checksum.map(|algorithm| algorithm.checksum(&bytes))})
        })
        .collect();
    files.push(json!({"name": "two-parts.bin", "size": 5 * MIB + 1}));
    files.push(json!({"name": "bad-meta.bin", "size": 10, "metadata": {"bad name": "x"}}));
    if companion.checksum.is_some() {
        files.push(json!({"name": "no-checksum.bin", "size": 10}));
    }
    let response = companion
        .http
        .post(companion.url("/api/uploads/batch"))
        .json(&json!({ "files": files }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: UploadsCreated = response.json().await.unwrap();
    assert_eq!(answer.uploads.len(), files.len());
    let mut keys = std::collections::BTreeSet::new();
    for (index, &size) in sizes.iter().enumerate() {
        let BatchCreated::Created(created) = &answer.uploads[index] else {
            panic!("file {index}: {:?}", answer.uploads[index]);
        };
        assert_eq!(created.mode, UploadMode::Single);
        assert!(keys.insert(created.key.clone()), "each file its own key");
        let bytes = pattern(size, index as u8);
        let response = companion
            .put_single(created.url.as_ref().unwrap(), bytes.clone())
            .await;
        assert_eq!(response.status(), 200, "{size} bytes");
        let object = StoredObject {
            checksum: None,
            key: created.key.clone(),
            etag: String::new(),
            size: size as u64,
            location: created.location.clone(),
        };
        assert!(companion.read_back(&object).await == bytes, "{size} bytes");
    }
    let refusals: Vec<(u16, &str)> = answer.uploads[sizes.len()..]
        .iter()
        .map(|answer| match answer {
            BatchCreated::Refused(refusal) => (refusal.status, refusal.code.as_str()),
            created => panic!("{created:?}"),
        })
        .collect();
    let mut expected = vec![(400, "NotSingle"), (400, "BadRequest")];
    if companion.checksum.is_some() {
        expected.push((400, "ChecksumRequired"));
    }
    assert_eq!(refusals, expected);

    let one = json!({"name": "a.bin", "size": 1});
    for count in [0, 101] {
        let response = companion
            .http
            .post(companion.url("/api/uploads/batch"))
            .json(&json!({ "files": vec![one.clone(); count] }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error(response).await,
            (400, "TooManyFiles".to_owned()),
            "{count} files"
        );
    }
}

/// An attacker's edit of a form's fields.
type Edit<'a> = Box<dyn FnOnce(&mut ferry_core::sorted::SortedMap<String, String>) + 'a>;

/// A small file created with `form` is a presigned POST form where the store takes them: its
/// policy lets the store keep only the file's bytes, under its key, at its size. Without
/// `form`, or over 1 MiB, a file gets its PUT.
pub async fn a_form_stores_its_bytes_and_nothing_else(companion: &RunningCompanion) {
    let algorithm = companion.checksum.expect("forms need checksums");
    let bytes = pattern(1000, 7);
    let create = |name: &str, size: usize, form: bool, bytes: &[u8]| {
        json!({"name": name, "size": size, "type": "text/plain", "form": form,
               "checksum": algorithm.checksum(bytes)})
    };
    let created = companion
        .created_from(create("form.bin", 1000, true, &bytes))
        .await;
    let url = created.url.clone().unwrap();
    assert!(url.is_form() && url.headers.is_empty(), "{url:?}");
    let object = StoredObject {
        checksum: None,
        key: created.key.clone(),
        etag: String::new(),
        size: 1000,
        location: created.location.clone(),
    };
    let stored = |response: &reqwest::Response| response.status().is_success();
    // Other bytes of the same size, more bytes, another key, another type: all refused.
    let other = pattern(1000, 8);
    let attacks: [(&str, Vec<u8>, Edit); 4] = [
        ("other bytes", other, Box::new(|_| {})),
        ("a longer body", pattern(1001, 7), Box::new(|_| {})),
        (
            "another key",
            bytes.clone(),
            Box::new(|fields| {
                fields.insert("key".into(), format!("{}-not-mine", created.key));
            }),
        ),
        (
            "another type",
            bytes.clone(),
            Box::new(|fields| {
                fields.insert("Content-Type".into(), "text/html".into());
            }),
        ),
    ];
    for (attack, body, change) in attacks {
        let response = companion.post_form(&url, body, change).await;
        assert!(!stored(&response), "{attack}: {}", response.status());
    }
    let missing = companion
        .http
        .get(companion.url(&object.location))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404, "nothing was stored");

    let response = companion.post_form(&url, bytes.clone(), |_| {}).await;
    assert!(stored(&response), "{}", response.status());
    let etag = response
        .headers()
        .get("etag")
        .expect("the ETag is answered");
    assert!(!etag.is_empty());
    assert!(companion.read_back(&object).await == bytes);
    // The same form again stores nothing else: the embedded store refuses it (the object
    // exists); a store that takes it can only have taken the same bytes.
    let again = companion.post_form(&url, bytes.clone(), |_| {}).await;
    assert!(
        companion.read_back(&object).await == bytes,
        "{}",
        again.status()
    );

    for (size, form) in [(1000, false), (MIB + 1, true)] {
        let bytes = pattern(size, 9);
        let created = companion
            .created_from(create("put.bin", size, form, &bytes))
            .await;
        let url = created.url.unwrap();
        assert!(!url.is_form(), "{size} bytes, form asked: {form}");
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
    let created = companion.created_as("alice-key", "a.bin", 11 * MIB).await;
    let id = created.upload_id.clone().unwrap();
    let sign_path = format!("/api/uploads/{id}/sign");
    let expired = TokenKey::new(b"test-secret").sign(&Claims {
        checksum: None,
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
    let keys = TokenKey::new(b"test-secret");
    let far = 99_999_999_999;
    let download_path = created.location.split('?').next().unwrap().to_owned();

    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> =
        vec![
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
            "a content type with CR/LF",
            post("/api/uploads", Some("alice-key")).json(
                &json!({"name": "a", "size": 10, "type": "application/octet-stream\r\nX-Evil: 1"}),
            ),
            400,
            "BadRequest",
        ),
        (
            "an abort without its token",
            http.delete(companion.url(&format!("/api/uploads/{id}")))
                .bearer_auth("alice-key"),
            400,
            "BadRequest",
        ),
        (
            "a part number that is no number",
            http.put(companion.url(&format!("/api/uploads/{id}/parts/first")))
                .bearer_auth("alice-key")
                .query(&[("token", &created.token)])
                .body(vec![0u8; 10]),
            400,
            "BadRequest",
        ),
        (
            "a sign call for 1,001 parts",
            post(&sign_path, Some("alice-key"))
                .json(&json!({"token": created.token, "parts": vec![1; 1001]})),
            400,
            "TooManyParts",
        ),
        (
            "a download without credentials or link",
            http.get(companion.url(&download_path)),
            401,
            "Unauthorized",
        ),
        (
            "someone else's download",
            http.get(companion.url(&download_path)).bearer_auth("bob-key"),
            403,
            "NotYourFile",
        ),
        (
            "a forged download link",
            http.get(companion.url(&format!(
                "{download_path}?expires=99999999999&signature=AAAA"
            ))),
            403,
            "BadLink",
        ),
        (
            "another file's download link",
            http.get(companion.url(&format!(
                "{download_path}?expires={far}&signature={}",
                keys.sign_link("uploads/alice/0123456789abcdef01234567/other.bin", far)
            ))),
            403,
            "BadLink",
        ),
        (
            "an expired download link",
            http.get(companion.url(&format!(
                "{download_path}?expires=1&signature={}",
                keys.sign_link(&created.key, 1)
            ))),
            403,
            "LinkExpired",
        ),
        (
            "a download outside the prefix",
            http.get(companion.url("/api/files/private/x")).bearer_auth("alice-key"),
            400,
            "BadKey",
        ),
        (
            "a batch in malformed JSON",
            post("/api/uploads/batch", Some("alice-key"))
                .header("content-type", "application/json")
                .body("{\"files\": [{\"name\": "),
            400,
            "BadRequest",
        ),
        (
            "a huge batch",
            post("/api/uploads/batch", Some("alice-key")).json(&json!({"files": [huge]})),
            413,
            "BadRequest",
        ),
        (
            "a batch without credentials",
            post("/api/uploads/batch", None).json(&json!({"files": [create]})),
            401,
            "Unauthorized",
        ),
        (
            "a batch whose files are no list",
            post("/api/uploads/batch", Some("alice-key")).json(&json!({"files": create})),
            422,
            "BadRequest",
        ),
        (
            "a batch with a negative size",
            post("/api/uploads/batch", Some("alice-key"))
                .json(&json!({"files": [{"name": "a", "size": -1, "type": ""}]})),
            422,
            "BadRequest",
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

    // Keys that would sign something else than one stored object, sent as written: an owner's
    // credentials do not make them any better.
    let owned = created.key.rsplit_once('/').unwrap().0.to_owned();
    for path in [
        "/api/files/uploads/../private/x".to_owned(),
        "/api/files/uploads%2F..%2Fx".to_owned(),
        "/api/files/uploads/%2e%2e/x".to_owned(),
        "/api/files/uploads/..".to_owned(),
        "/api/files/uploads/../..".to_owned(),
        "/api/files/uploads/".to_owned(),
        format!("/api/files/{owned}/..%2F..%2F..%2Fprivate"),
        format!("/api/files/{owned}/a%5C..%5Cb"),
        format!("/api/files/{owned}/a%0Ab"),
        format!("/api/files/{owned}/a%3Flist-type=2"),
        format!("/api/files/{owned}/a%252F..%252Fb"),
        format!("/api/files/{owned}/%2e"),
        format!("/api/files/{owned}/x/y"),
    ] {
        let (status, body) = companion
            .raw("GET", &path, &[("Authorization", "Bearer alice-key")])
            .await;
        let body: ErrorBody = serde_json::from_str(&body)
            .unwrap_or_else(|err| panic!("{path}: no JSON error body ({err}): {body}"));
        assert_eq!((status, body.code.as_str()), (400, "BadKey"), "{path}");
    }

    // A batch is refused file by file, as the same creates one by one would be, and its
    // refusals leave the store as it was.
    let before = companion.store_state().await;
    let files = json!({"files": [
        {"name": "../../etc/passwd", "size": 10, "type": "application/octet-stream"},
        {"name": "a", "size": 10, "type": "application/octet-stream\r\nX-Evil: 1"},
        {"name": "a.exe", "size": 10, "type": "application/x-msdownload"},
        {"name": "a", "size": 100 * MIB + 1, "type": "application/octet-stream"},
        {"name": "a", "size": 11 * MIB, "type": "application/octet-stream"},
        {"name": "a", "size": 10, "type": "application/octet-stream",
         "metadata": {"x": "y".repeat(3000)}},
    ]});
    let answer: ferry_core::protocol::UploadsCreated =
        post("/api/uploads/batch", Some("alice-key"))
            .json(&files)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let answers: Vec<_> = answer
        .uploads
        .iter()
        .map(|answer| match answer {
            ferry_core::protocol::BatchCreated::Created(created) => {
                assert!(
                    created.key.starts_with("uploads/alice/") && created.key.ends_with("/passwd"),
                    "{}",
                    created.key
                );
                (200, "created")
            }
            ferry_core::protocol::BatchCreated::Refused(refusal) => {
                (refusal.status, refusal.code.as_str())
            }
        })
        .collect();
    assert_eq!(
        answers,
        [
            (200, "created"),
            (400, "BadRequest"),
            (415, "TypeNotAllowed"),
            (413, "TooLarge"),
            (400, "NotSingle"),
            (400, "BadRequest"),
        ]
    );
    assert_eq!(companion.store_state().await, before, "a batch's refusals");

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
        let checksum = companion
            .checksum
            .map(|algorithm| algorithm.checksum(&bytes));
        let body = json!({"name": "m.bin", "size": size, "type": "application/octet-stream", "checksum": checksum, "metadata": {"album": "Summer-2026", "Camera": "x100"}});
        let created = companion.created_from(body).await;
        let location = if let Some(url) = &created.url {
            assert_eq!(
                companion.put_single(url, bytes.clone()).await.status(),
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

/// Downloads with authentication on: the owner with credentials, anyone with the link the
/// companion returned, nobody else. The companion must run with the `bad_requests` settings.
pub async fn downloads_need_the_owner_or_a_link(companion: &RunningCompanion) {
    let bytes = pattern(1000, 9);
    let created = companion
        .created_as("alice-key", "mine.bin", bytes.len())
        .await;
    let put = companion
        .put_single(created.url.as_ref().unwrap(), bytes.clone())
        .await;
    assert_eq!(put.status(), 200);
    assert!(
        created.location.contains("?expires="),
        "the location is a link: {}",
        created.location
    );
    let read = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        (
            response.status().as_u16(),
            response.bytes().await.unwrap().to_vec(),
        )
    };
    let by_link = read(companion.http.get(companion.url(&created.location))).await;
    assert_eq!(
        by_link,
        (200, bytes.clone()),
        "the link works without credentials"
    );
    let path = created.location.split('?').next().unwrap();
    let by_owner = read(
        companion
            .http
            .get(companion.url(path))
            .bearer_auth("alice-key"),
    )
    .await;
    assert_eq!(by_owner, (200, bytes), "the owner reads with credentials");
}

/// What the plan allows is what the store keeps: a part or a single PUT of another size is
/// refused by a store that checks signatures (the length is signed), and Complete refuses parts
/// of the wrong size on any store, aborting the upload.
pub async fn the_store_keeps_only_what_the_plan_allows(companion: &RunningCompanion) {
    // A single PUT of 100 bytes cannot store 3 MiB. moto checks no signatures: there, only
    // the signed length says what was promised, and the finding stands for it (see README).
    let created = companion.created("hundred.bin", 100).await;
    let sent = companion
        .single_put(created.url.as_ref().unwrap(), pattern(3 * MIB, 4))
        .header("connection", "close")
        .send()
        .await;
    if !companion.is_moto() {
        refused_for_its_signature(companion, sent, "a single PUT of another size").await;
        let read = companion
            .http
            .get(companion.url(&created.location))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 404, "no object was stored");
    }

    // A 10 MiB + 3 plan: two parts of 5 MiB and a last one of 3 bytes.
    for (attack, part, size) in [
        ("an oversized part", 2, 6 * MIB),
        ("a short last part", 3, 1),
    ] {
        let bytes = pattern(10 * MIB + 3, 5);
        let created = companion.created("plan.bin", bytes.len()).await;
        assert_eq!(created.part_count, 3);
        let mut etags = companion.put_parts(&created, &bytes).await;
        let signed: PartsSigned = companion
            .sign(&created, vec![part])
            .await
            .json()
            .await
            .unwrap();
        let sent = companion
            .http
            .put(&signed.urls[0].url.url)
            .header("connection", "close")
            .body(pattern(size, 6))
            .send()
            .await;
        if !companion.is_moto() {
            refused_for_its_signature(companion, sent, attack).await;
            let listed: PartList = companion.list_parts(&created).await.json().await.unwrap();
            let planned = if part < 3 { 5 * MIB as u64 } else { 3 };
            assert_eq!(
                listed.parts[part as usize - 1].size,
                planned,
                "{attack}: the store keeps the planned part"
            );
            continue;
        }
        let response = sent.unwrap();
        assert_eq!(response.status(), 200, "moto takes {attack}");
        etags[part as usize - 1] = response.headers()["etag"].to_str().unwrap().to_owned();
        let before = companion.list_parts(&created).await;
        assert_eq!(before.status(), 200);
        let response = companion.complete(&created, &etags).await;
        assert_eq!(response.status(), 400, "{attack}");
        let error: ErrorBody = response.json().await.unwrap();
        assert_eq!(error.code, "SizeMismatch", "{attack}: {}", error.message);
        assert!(
            error.message.contains(&format!("part {part}")),
            "{}",
            error.message
        );
        let gone = companion.list_parts(&created).await;
        assert_eq!(gone.status(), 404, "{attack}: the upload was aborted");
        let read = companion
            .http
            .get(companion.url(&created.location))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 404, "{attack}: no object was stored");
    }
}

/// Asserts that a store that checks signatures refused a PUT whose body is not the signed
/// length. The store may answer before reading the body and close the connection (Garage does):
/// the client then sees the connection cut while it was still sending, not the 403. Such PUTs
/// go with `Connection: close`, so no later request is sent on a connection the store closed.
async fn refused_for_its_signature(
    companion: &RunningCompanion,
    sent: reqwest::Result<reqwest::Response>,
    what: &str,
) {
    match sent {
        Ok(response) => {
            assert_eq!(response.status(), 403, "{what} is refused by the store");
            let body = response.text().await.unwrap();
            assert!(
                body.contains(companion.signature_refusal()),
                "{what}: {body}"
            );
        }
        Err(err) => assert!(err.is_request(), "{what}: {err}"),
    }
}

/// A finished upload is never written again: not by its single-PUT URL (where the store honours
/// `If-None-Match`), not through the fallback routes, not by a second Complete with made-up
/// ETags. A Complete retried with the real ETags is still answered.
pub async fn a_finished_upload_is_never_written_again(companion: &RunningCompanion) {
    let bytes = pattern(1000, 12);
    let created = companion.created("once.bin", bytes.len()).await;
    let url = created.url.clone().unwrap();
    assert_eq!(
        url.headers.get("if-none-match").map(String::as_str),
        Some("*")
    );
    assert_eq!(
        companion.put_single(&url, bytes.clone()).await.status(),
        200
    );
    let replay = companion.put_single(&url, pattern(1000, 13)).await;
    if companion.refuses_overwrites() {
        assert_eq!(replay.status(), 412, "the single-PUT URL cannot overwrite");
    } else {
        // The store takes the signed `If-None-Match: *` and ignores it: within its lifetime the
        // URL overwrites, and only the companion's own routes below still refuse.
        assert_eq!(replay.status(), 200, "the store ignores If-None-Match");
        let object = StoredObject {
            checksum: None,
            key: created.key.clone(),
            etag: String::new(),
            size: 1000,
            location: created.location.clone(),
        };
        assert!(companion.read_back(&object).await == pattern(1000, 13));
    }
    let fallback = companion
        .http
        .put(companion.url("/api/objects"))
        .query(&[("token", &created.token)])
        .body(pattern(1000, 14))
        .send()
        .await
        .unwrap();
    assert_eq!(fallback.status(), 409, "the fallback cannot overwrite");
    let error: ErrorBody = fallback.json().await.unwrap();
    assert_eq!(error.code, "AlreadyStored");

    let bytes_multi = pattern(11 * MIB, 15);
    let multi = companion.created("once-multi.bin", bytes_multi.len()).await;
    let etags = companion.put_parts(&multi, &bytes_multi).await;
    assert_eq!(companion.complete(&multi, &etags).await.status(), 200);
    let id = multi.upload_id.clone().unwrap();
    let part = companion
        .http
        .put(companion.url(&format!("/api/uploads/{id}/parts/3")))
        .query(&[("token", &multi.token)])
        .body(pattern(MIB, 16))
        .send()
        .await
        .unwrap();
    assert_eq!(
        part.status(),
        409,
        "no part through the fallback after done"
    );
    let made_up: Vec<String> = etags
        .iter()
        .map(|_| format!("\"{}\"", "0".repeat(32)))
        .collect();
    let forged = companion.complete(&multi, &made_up).await;
    assert_eq!(forged.status(), 404, "a second Complete with made-up ETags");
    let error: ErrorBody = forged.json().await.unwrap();
    assert_eq!(error.code, "NoSuchUpload");
    let retried = companion.complete(&multi, &etags).await;
    assert_eq!(
        retried.status(),
        200,
        "a Complete retried with the real ETags"
    );
    let retried: StoredObject = retried.json().await.unwrap();
    assert_eq!(retried.size, bytes_multi.len() as u64);
    assert!(companion.read_back(&retried).await == bytes_multi);
}

/// The owner can abort with a token that has expired (nobody else could ever abort it); a
/// forged token still cannot.
pub async fn an_expired_token_still_aborts(companion: &RunningCompanion) {
    use ferry_companion::token::{Claims, TokenKey};
    let created = companion.created("late.bin", 11 * MIB).await;
    let id = created.upload_id.clone().unwrap();
    let expired = TokenKey::new(b"test-secret").sign(&Claims {
        checksum: None,
        upload_id: Some(id.clone()),
        key: created.key.clone(),
        size: 11 * MIB as u64,
        part_size: created.part_size,
        owner: "anonymous".into(),
        expires_at: 1,
        metadata: Default::default(),
        content_type: String::new(),
    });
    let sign = companion
        .http
        .post(companion.url(&format!("/api/uploads/{id}/sign")))
        .json(&serde_json::json!({"token": expired, "parts": [1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(sign.status(), 403, "an expired token signs nothing");
    let forged = companion
        .http
        .delete(companion.url(&format!("/api/uploads/{id}")))
        .query(&[("token", "e30.AAAA")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let abort = companion
        .http
        .delete(companion.url(&format!("/api/uploads/{id}")))
        .query(&[("token", &expired)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        abort.status(),
        204,
        "the expired token aborts its own upload"
    );
    assert_eq!(companion.list_parts(&created).await.status(), 404);
}

/// An upload picked up again from what the store lists: ListParts gives the parts already
/// there with their ETags, only the missing one is signed and sent, and Complete takes both.
pub async fn an_upload_resumes_from_its_listed_parts(companion: &RunningCompanion) {
    let bytes = pattern(11 * MIB, 17);
    let created = companion.created("resumed.bin", bytes.len()).await;
    let chunks: Vec<&[u8]> = bytes.chunks(created.part_size as usize).collect();
    assert_eq!(chunks.len(), 3);
    let mut sent = Vec::new();
    for part in [1, 3] {
        sent.push((
            part,
            companion
                .put_part(&created, part, chunks[part as usize - 1])
                .await,
        ));
    }

    let listed: PartList = companion.list_parts(&created).await.json().await.unwrap();
    let listed: Vec<(u32, String)> = listed.parts.into_iter().map(|p| (p.part, p.etag)).collect();
    assert_eq!(listed, sent, "the store lists the parts sent, nothing else");

    let second = companion.put_part(&created, 2, chunks[1]).await;
    let etags = vec![listed[0].1.clone(), second, listed[1].1.clone()];
    let response = companion.complete(&created, &etags).await;
    assert_eq!(response.status(), 200);
    let object: StoredObject = response.json().await.unwrap();
    assert!(
        companion.read_back(&object).await == bytes,
        "the resumed upload reads back whole"
    );
}

/// An aborted upload leaves the store as it was before it began: no upload, no parts, no object.
pub async fn an_aborted_upload_leaves_nothing(companion: &RunningCompanion) {
    let before = companion.store_state().await;
    let bytes = pattern(11 * MIB, 18);
    let created = companion.created("aborted.bin", bytes.len()).await;
    companion.put_parts(&created, &bytes).await;
    assert_ne!(
        companion.store_state().await,
        before,
        "the parts are in the store"
    );

    assert_eq!(companion.abort(&created).await.status(), 204);
    assert_eq!(companion.list_parts(&created).await.status(), 404);
    assert_eq!(companion.store_state().await, before, "nothing is left");
}

/// A presigned URL changed in any signed part is refused by a store that checks signatures.
pub async fn a_tampered_presigned_url_is_refused(companion: &RunningCompanion) {
    let created = companion.created("x.bin", 11 * MIB).await;
    let signed: PartsSigned = companion
        .sign(&created, vec![1, 2])
        .await
        .json()
        .await
        .unwrap();
    let url = &signed.urls[0].url.url;
    let last = url.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &url[..url.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let other_part = url.replace("partNumber=1", "partNumber=2");
    for tampered in [flipped, other_part] {
        let response = companion
            .http
            .put(&tampered)
            .body(vec![0u8; 16])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{tampered}");
        let body = response.text().await.unwrap();
        assert!(body.contains(companion.signature_refusal()), "{body}");
    }
}

/// Complete names every planned part in order: the companion counts them, the store checks the
/// ETag of each part number, and a refused Complete leaves the upload to complete.
pub async fn complete_must_list_every_planned_part_in_order(companion: &RunningCompanion) {
    let bytes = pattern(11 * MIB, 4);
    let created = companion.created("order.bin", bytes.len()).await;
    let etags = companion.put_parts(&created, &bytes).await;
    let mut swapped = etags.clone();
    swapped.swap(0, 1);
    assert_eq!(
        error(companion.complete(&created, &etags[..2]).await).await,
        (400, "BadRequest".into())
    );
    assert_eq!(
        error(companion.complete(&created, &swapped).await).await,
        (400, "InvalidPart".into())
    );
    assert_eq!(
        companion.complete(&created, &etags).await.status(),
        200,
        "the upload survived both refusals"
    );
}

/// The status and code of a refusal.
pub async fn error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: ErrorBody = response.json().await.unwrap();
    (status, body.code)
}

/// Parts and single PUTs sent through the companion (the fallback when the browser cannot reach
/// the store) reach the store whole; a wrong size or another upload's token is refused before
/// the store sees anything.
pub async fn parts_can_go_through_the_companion(companion: &RunningCompanion) {
    let bytes = pattern(11 * MIB, 5);
    let created = companion.created("fallback.bin", bytes.len()).await;
    let id = created.upload_id.clone().unwrap();
    let mut etags = Vec::new();
    for (chunk, part) in bytes.chunks(created.part_size as usize).zip(1..) {
        let url = companion.url(&format!("/api/uploads/{id}/parts/{part}"));
        let response = companion
            .http
            .put(&url)
            .query(&[("token", &created.token)])
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = response.json().await.unwrap();
        etags.push(answer["etag"].as_str().unwrap().to_owned());
    }
    let object: StoredObject = companion
        .complete(&created, &etags)
        .await
        .json()
        .await
        .unwrap();
    assert!(companion.read_back(&object).await == bytes);

    let url = companion.url(&format!("/api/uploads/{id}/parts/1"));
    let short = companion
        .http
        .put(&url)
        .query(&[("token", &created.token)])
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(error(short).await, (400, "WrongLength".into()));
    let other = companion.created("other.bin", 11 * MIB).await;
    let crossed = companion
        .http
        .put(&url)
        .query(&[("token", &other.token)])
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(error(crossed).await, (403, "TokenMismatch".into()));

    let small = pattern(1000, 6);
    let single = companion.created("small.bin", small.len()).await;
    let response = companion
        .http
        .put(companion.url("/api/objects"))
        .query(&[("token", &single.token)])
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let object = StoredObject {
        checksum: None,
        key: single.key.clone(),
        etag: String::new(),
        size: 1000,
        location: single.location.clone(),
    };
    assert!(companion.read_back(&object).await == small);
}
