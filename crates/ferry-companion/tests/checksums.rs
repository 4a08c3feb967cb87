//! Checksums through the companion: each part's URL binds the checksum its client computed, the
//! store refuses other bytes, and Complete states the object's checksum, which the store checks.
//! Every value is checked against an implementation apart from Ferry's (crc-fast, sha2).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{MIB, RunningCompanion, Store, companion, companion_on, garage, moto, pattern};
use ferry_core::protocol::{PartList, PartsSigned, StoredObject};
use ferry_core::{ChecksumAlgorithm, ChecksumType};
use serde_json::{Value, json};
use sha2::Digest as _;

/// `bytes`' checksum by an implementation apart from Ferry's.
fn reference(algorithm: ChecksumAlgorithm, bytes: &[u8]) -> Vec<u8> {
    use crc_fast::{CrcAlgorithm, checksum};
    match algorithm {
        ChecksumAlgorithm::Crc32c => (checksum(CrcAlgorithm::Crc32Iscsi, bytes) as u32)
            .to_be_bytes()
            .to_vec(),
        ChecksumAlgorithm::Crc64nvme => checksum(CrcAlgorithm::Crc64Nvme, bytes)
            .to_be_bytes()
            .to_vec(),
        ChecksumAlgorithm::Sha256 => sha2::Sha256::digest(bytes).to_vec(),
    }
}

/// The object's checksum S3 states for `bytes` uploaded in parts of `part_size`.
fn object_reference(algorithm: ChecksumAlgorithm, bytes: &[u8], part_size: usize) -> String {
    match algorithm.multipart_type() {
        ChecksumType::FullObject => BASE64.encode(reference(algorithm, bytes)),
        ChecksumType::Composite => {
            let parts: Vec<&[u8]> = bytes.chunks(part_size).collect();
            let digests: Vec<u8> = parts
                .iter()
                .flat_map(|part| reference(algorithm, part))
                .collect();
            format!(
                "{}-{}",
                BASE64.encode(reference(algorithm, &digests)),
                parts.len()
            )
        }
    }
}

async fn error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Round trips with `algorithm`: parts and single PUTs stored with the checksum the store
/// states, equal to the reference.
async fn round_trips(companion: &RunningCompanion, algorithm: ChecksumAlgorithm) {
    common::cases::a_batch_creates_single_puts_each_its_own(companion).await;
    let bytes = pattern(12 * MIB + 3, 11);
    let created = companion.created("sums.bin", bytes.len()).await;
    let etags = companion.put_parts(&created, &bytes).await;
    let listed: PartList = companion.list_parts(&created).await.json().await.unwrap();
    // moto's ListParts leaves the part checksums out (a resumed part is then sent again).
    let stated = listed.parts.iter().filter(|_| !companion.is_moto());
    for (part, chunk) in stated.zip(bytes.chunks(5 * MIB)) {
        let expected = BASE64.encode(reference(algorithm, chunk));
        assert_eq!(
            part.checksum.as_deref(),
            Some(expected.as_str()),
            "part {}",
            part.part
        );
    }
    let response = companion.complete(&created, &etags).await;
    assert_eq!(response.status(), 200);
    let object: StoredObject = response.json().await.unwrap();
    let checksum = object
        .checksum
        .clone()
        .expect("the store states the object's checksum");
    assert_eq!(
        (checksum.algorithm, checksum.kind),
        (algorithm, algorithm.multipart_type())
    );
    let expected = object_reference(algorithm, &bytes, 5 * MIB);
    if companion.is_moto() {
        // moto states a composite checksum without its `-N`.
        assert_eq!(checksum.value, expected.split('-').next().unwrap());
    } else {
        assert_eq!(checksum.value, expected);
    }
    assert!(companion.read_back(&object).await == bytes);

    for size in [0, 1, 5 * MIB - 1] {
        let bytes = pattern(size, 12);
        let created = companion.created_for("one.bin", &bytes).await;
        let url = created.url.as_ref().unwrap();
        assert!(
            url.headers.contains_key(algorithm.header()),
            "the URL binds the checksum"
        );
        let response = companion.put_single(url, bytes.clone()).await;
        assert_eq!(response.status(), 200, "{size} bytes");
        let head = companion
            .state
            .store
            .head_object(&created.key)
            .await
            .unwrap();
        let stored = head
            .unwrap()
            .checksum
            .expect("the store keeps the checksum");
        assert_eq!(stored.value, BASE64.encode(reference(algorithm, &bytes)));
    }
}

#[tokio::test]
async fn every_algorithm_round_trips_through_the_embedded_store() {
    for algorithm in ChecksumAlgorithm::ALL {
        let companion = companion(&["--checksum", algorithm.name()]).await;
        round_trips(&companion, algorithm).await;
    }
}

/// moto hashes CRC64NVME only with awscrt installed (it falls back to CRC32 silently), so it
/// goes through CRC32C and SHA-256.
#[tokio::test]
async fn crc32c_and_sha256_round_trip_through_moto() {
    let moto = moto();
    for algorithm in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Sha256] {
        let bucket = format!("sums-{}", algorithm.name());
        moto.create_bucket(&bucket).await;
        let mut args = moto.companion_args(&bucket);
        args.extend(["--checksum".to_owned(), algorithm.name().to_owned()]);
        let companion = companion(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        round_trips(&companion, algorithm).await;
    }
}

#[tokio::test]
async fn every_algorithm_round_trips_through_garage() {
    let garage = garage();
    for algorithm in ChecksumAlgorithm::ALL {
        let bucket = format!("sums-{}", algorithm.name());
        garage.create_bucket(&bucket).await;
        let mut args = garage.companion_args(&bucket);
        args.extend(["--checksum".to_owned(), algorithm.name().to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        round_trips(&companion_on(Store::Garage, &args).await, algorithm).await;
    }
}

/// Presigned POST forms: the embedded store and Garage (told it takes them) store a form's bytes
/// and refuse any other; moto, which does not check a form's checksum, and a companion with
/// checksums off get PUTs.
#[tokio::test]
async fn small_files_go_as_forms_only_where_the_store_checks_them() {
    let embedded = companion(&["--checksum", "crc32c"]).await;
    common::cases::a_form_stores_its_bytes_and_nothing_else(&embedded).await;

    let garage = garage();
    garage.create_bucket("forms").await;
    let mut args = garage.companion_args("forms");
    args.extend(["--checksum", "crc64nvme", "--s3-post-forms", "true"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::cases::a_form_stores_its_bytes_and_nothing_else(
        &companion_on(Store::Garage, &args).await,
    )
    .await;

    let moto = moto();
    moto.create_bucket("no-forms").await;
    let mut args = moto.companion_args("no-forms");
    args.extend(["--checksum", "crc32c"].map(str::to_owned));
    let on_moto = companion(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let unchecked = companion(&["--checksum", "off"]).await;
    for (companion, checksum) in [(&on_moto, Some("ZsGJ7Q==")), (&unchecked, None)] {
        let created = companion
            .created_from(json!({"name": "a.bin", "size": 1, "form": true, "checksum": checksum}))
            .await;
        assert!(!created.url.unwrap().is_form());
    }
}

#[tokio::test]
async fn a_part_with_other_bytes_is_refused_by_garage() {
    let garage = garage();
    garage.create_bucket("sums-refused").await;
    let mut args = garage.companion_args("sums-refused");
    args.extend(["--checksum".to_owned(), "crc32c".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let companion = companion_on(Store::Garage, &args).await;
    let part = pattern(5 * MIB, 3);
    let (created, url) = signed_part(&companion, &ChecksumAlgorithm::Crc32c.checksum(&part)).await;
    let mut flipped = part.clone();
    flipped[99] ^= 1;
    // Garage answers before it reads the whole body, then closes the connection.
    let mut request = companion
        .http
        .put(&url.url)
        .header("connection", "close")
        .body(flipped);
    for (name, value) in &url.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 400);
    // Garage's code for it is InvalidDigest (S3's is BadDigest): Ferry retries both.
    let failure =
        ferry_core::answer::failure_from_answer(400, &response.text().await.unwrap(), None);
    assert_eq!(failure.code, "InvalidDigest");
    assert!(failure.is_digest_mismatch());
    let listed: PartList = companion.list_parts(&created).await.json().await.unwrap();
    assert!(listed.parts.is_empty(), "nothing stored of a refused part");
}

#[tokio::test]
async fn the_configured_algorithm_is_advertised_and_off_means_none() {
    for (flag, advertised) in [("sha256", json!("sha256")), ("off", Value::Null)] {
        let companion = companion(&["--checksum", flag]).await;
        let config: Value = companion
            .http
            .get(companion.url("/api/config"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(config["checksum"], advertised);
    }
}

#[tokio::test]
async fn uploads_without_their_checksums_are_refused_before_the_store_sees_them() {
    let companion = companion(&["--checksum", "crc32c"]).await;
    let before = companion.store_state().await;
    // A single PUT needs its checksum at create, of the right algorithm.
    for checksum in [Value::Null, json!("not base64!"), json!("AAAAAAAAAAA=")] {
        let body = json!({"name": "s.bin", "size": 10, "type": "", "checksum": checksum});
        let response = companion
            .http
            .post(companion.url("/api/uploads"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error(response).await,
            (400, "ChecksumRequired".into()),
            "{checksum}"
        );
    }
    assert_eq!(
        companion.store_state().await,
        before,
        "nothing reached the store"
    );

    // Each part signed needs its own checksum.
    let created = companion.created("p.bin", 11 * MIB).await;
    let id = created.upload_id.clone().unwrap();
    let sign = |body: Value| {
        let url = companion.url(&format!("/api/uploads/{id}/sign"));
        let request = companion.http.post(url).json(&body);
        async move { error(request.send().await.unwrap()).await }
    };
    let token = created.token.clone();
    assert_eq!(
        sign(json!({"token": token, "parts": [1, 2]})).await,
        (400, "BadRequest".into())
    );
    assert_eq!(
        sign(json!({"token": token, "parts": [1, 2], "checksums": ["AAAAAA=="]})).await,
        (400, "BadRequest".into())
    );
    assert_eq!(
        sign(json!({"token": token, "parts": [1], "checksums": ["AAAA"]})).await,
        (400, "ChecksumRequired".into())
    );
}

/// Signs part 1 of a fresh 11 MiB upload with `checksum`; returns the upload and its URL.
async fn signed_part(
    companion: &RunningCompanion,
    checksum: &str,
) -> (
    ferry_core::protocol::UploadCreated,
    ferry_core::protocol::SignedUrl,
) {
    let created = companion.created("bound.bin", 11 * MIB).await;
    let id = created.upload_id.clone().unwrap();
    let body = json!({"token": created.token, "parts": [1], "checksums": [checksum]});
    let signed: PartsSigned = companion
        .http
        .post(companion.url(&format!("/api/uploads/{id}/sign")))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = signed.urls[0].url.clone();
    (created, url)
}

#[tokio::test]
async fn a_url_takes_only_the_bytes_and_the_checksum_it_was_signed_for() {
    let companion = companion(&["--checksum", "crc32c"]).await;
    let part = pattern(5 * MIB, 3);
    let right = ChecksumAlgorithm::Crc32c.checksum(&part);
    let (created, url) = signed_part(&companion, &right).await;
    let put = |body: Vec<u8>, headers: Vec<(String, String)>| {
        let mut request = companion.http.put(&url.url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let signed_headers: Vec<(String, String)> = url.headers.clone().into_iter().collect();
    // One byte flipped on the way: the store refuses the part and keeps nothing.
    let mut flipped = part.clone();
    flipped[4242] ^= 1;
    let (status, body) = put(flipped, signed_headers.clone()).await;
    assert_eq!(status, 400);
    assert!(body.contains("<Code>BadDigest</Code>"), "{body}");
    let listed: PartList = companion.list_parts(&created).await.json().await.unwrap();
    assert!(listed.parts.is_empty(), "nothing stored of a refused part");
    // The checksum header left out, or another value given: the signature no longer holds.
    let (status, _) = put(part.clone(), Vec::new()).await;
    assert_eq!(status, 403, "the checksum header is signed");
    let other = vec![("x-amz-checksum-crc32c".to_owned(), "AAAAAA==".to_owned())];
    let (status, _) = put(part.clone(), other).await;
    assert_eq!(status, 403);
    // The bytes it was signed for are stored.
    let (status, _) = put(part, signed_headers).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn complete_refuses_checksums_unlike_the_stored_parts() {
    let companion = companion(&["--checksum", "crc32c"]).await;
    let bytes = pattern(11 * MIB, 4);
    let created = companion.created("c.bin", bytes.len()).await;
    let etags = companion.put_parts(&created, &bytes).await;
    let id = created.upload_id.clone().unwrap();
    let complete = |parts: Value, checksum: Value| {
        let url = companion.url(&format!("/api/uploads/{id}/complete"));
        let body = json!({"token": created.token, "parts": parts, "checksum": checksum});
        let request = companion.http.post(url).json(&body);
        async move { error(request.send().await.unwrap()).await }
    };
    let sums: Vec<String> = bytes
        .chunks(5 * MIB)
        .map(|chunk| ChecksumAlgorithm::Crc32c.checksum(chunk))
        .collect();
    let part =
        |n: usize, checksum: &str| json!({"part": n + 1, "etag": etags[n], "checksum": checksum});
    let right = json!([part(0, &sums[0]), part(1, &sums[1]), part(2, &sums[2])]);
    // A part's checksum that is not the stored part's.
    let wrong_part = json!([part(0, &sums[1]), part(1, &sums[1]), part(2, &sums[2])]);
    assert_eq!(
        complete(wrong_part, Value::Null).await,
        (400, "InvalidPart".into())
    );
    // A part without one.
    let missing = json!([{"part": 1, "etag": etags[0]}, part(1, &sums[1]), part(2, &sums[2])]);
    assert_eq!(
        complete(missing, Value::Null).await,
        (400, "ChecksumRequired".into())
    );
    // An object checksum that the parts do not make.
    let claimed = json!({"algorithm": "crc32c", "type": "FULL_OBJECT", "value": sums[0]});
    assert_eq!(
        complete(right.clone(), claimed).await,
        (400, "BadRequest".into())
    );
    // Refusals keep the upload: the right Complete stores the object.
    let whole = ChecksumAlgorithm::Crc32c.checksum(&bytes);
    let stated = json!({"algorithm": "crc32c", "type": "FULL_OBJECT", "value": whole});
    let url = companion.url(&format!("/api/uploads/{id}/complete"));
    let body = json!({"token": created.token, "parts": right, "checksum": stated});
    let response = companion.http.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let object: StoredObject = response.json().await.unwrap();
    assert_eq!(object.checksum.unwrap().value, whole);
}

#[tokio::test]
async fn with_checksums_off_checksums_a_client_sends_anyway_are_ignored() {
    let companion = companion(&["--checksum", "off"]).await;
    // A single PUT's checksum at create binds nothing: its URL takes the bytes without one.
    let created = companion
        .created_from(json!({"name": "s.bin", "size": 10, "type": "", "checksum": "AAAAAA=="}))
        .await;
    let url = created.url.as_ref().unwrap();
    assert_eq!(
        companion.put_single(url, pattern(10, 1)).await.status(),
        200
    );

    // Part checksums at Complete, even wrong ones, never reach the store.
    let bytes = pattern(11 * MIB, 5);
    let created = companion.created("m.bin", bytes.len()).await;
    let etags = companion.put_parts(&created, &bytes).await;
    let parts: Vec<Value> = (1..)
        .zip(&etags)
        .map(|(part, etag)| json!({"part": part, "etag": etag, "checksum": "AAAAAA=="}))
        .collect();
    let id = created.upload_id.clone().unwrap();
    let url = companion.url(&format!("/api/uploads/{id}/complete"));
    let body = json!({"token": created.token, "parts": parts});
    let response = companion.http.post(url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let object: StoredObject = response.json().await.unwrap();
    assert_eq!(object.checksum, None);
    assert_eq!(companion.read_back(&object).await, bytes);
}

#[tokio::test]
async fn the_fallback_route_passes_the_checksum_to_the_store() {
    let companion = companion(&["--checksum", "crc32c"]).await;
    let part = pattern(5 * MIB, 9);
    let created = companion.created("f.bin", 11 * MIB).await;
    let id = created.upload_id.clone().unwrap();
    let url = companion.url(&format!("/api/uploads/{id}/parts/1"));
    let put = |checksum: Option<String>| {
        let mut request = companion
            .http
            .put(&url)
            .query(&[("token", &created.token)])
            .body(part.clone());
        if let Some(checksum) = checksum {
            request = request.header("x-amz-checksum-crc32c", checksum);
        }
        async move { error(request.send().await.unwrap()).await }
    };
    assert_eq!(put(None).await, (400, "ChecksumRequired".into()));
    // A checksum the bytes do not have: the store's BadDigest comes back as it is.
    let other = ChecksumAlgorithm::Crc32c.checksum(b"other bytes");
    assert_eq!(put(Some(other)).await, (400, "BadDigest".into()));
    let right = ChecksumAlgorithm::Crc32c.checksum(&part);
    let response = companion
        .http
        .put(&url)
        .query(&[("token", &created.token)])
        .header("x-amz-checksum-crc32c", &right)
        .body(part.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let listed: PartList = companion.list_parts(&created).await.json().await.unwrap();
    assert_eq!(listed.parts[0].checksum.as_deref(), Some(right.as_str()));
}
