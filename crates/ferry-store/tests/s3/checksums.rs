//! S3's checksums over HTTP: PutObject and UploadPart check `x-amz-checksum-*` against the body
//! and store nothing when it differs; a multipart upload declares an algorithm and a type, and
//! Complete combines the parts' checksums into the object's; reads return it when asked.

use ferry_core::checksum::{self, ChecksumAlgorithm};
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use rusty_s3::S3Action;
use sha2::{Digest, Sha256};

use super::{HOUR, Store, data_files, store};

const SDK_ALGORITHM: &str = "x-amz-sdk-checksum-algorithm";
const BODY: &[u8] = b"the bytes a client sends";

/// A store's answer, read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    /// S3's error code; empty for a success.
    fn code(&self) -> &str {
        xml_text(&self.body, "Code").unwrap_or_default()
    }

    fn message(&self) -> &str {
        xml_text(&self.body, "Message").unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// The checksum headers it carries, each as (name, value).
    fn checksum_headers(&self) -> Vec<(String, String)> {
        let mut found: Vec<_> = self
            .headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-amz-checksum-"))
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        found.sort();
        found
    }

    /// Asserts a refusal: status, S3 code and a part of the message.
    fn assert_refused(&self, status: u16, code: &str, message: &str, what: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "{what}: {}",
            self.body
        );
        assert!(
            self.message().contains(message),
            "{what}: {:?} should say {message:?}",
            self.message()
        );
    }
}

/// The text inside the first `<tag>` of `xml`.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..end])
}

/// The XML element S3 names a checksum of `algorithm` in.
fn element(algorithm: ChecksumAlgorithm) -> String {
    format!("Checksum{}", algorithm.s3_name())
}

type Headers = [(&'static str, String)];

/// A checksum value and its algorithm.
type Value = (ChecksumAlgorithm, String);

/// A part as a Complete lists it.
struct Listed {
    etag: String,
    checksum: Option<Value>,
}

/// A part as ListParts gives it.
#[derive(Debug, PartialEq)]
struct ListedPart {
    number: u16,
    etag: String,
    checksum: Option<Value>,
}

impl Store {
    async fn send(&self, request: reqwest::RequestBuilder, headers: &Headers) -> Answer {
        let request = headers.iter().fold(request, |request, (name, value)| {
            request.header(*name, value)
        });
        Answer::of(request.send().await.unwrap()).await
    }

    async fn put_object_with(&self, key: &str, body: &[u8], headers: &Headers) -> Answer {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(HOUR);
        self.send(self.http.put(url).body(body.to_vec()), headers)
            .await
    }

    async fn put_part_with(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        body: &[u8],
        headers: &Headers,
    ) -> Answer {
        let url = self
            .bucket
            .upload_part(Some(&self.credentials), key, number, upload_id)
            .sign(HOUR);
        self.send(self.http.put(url).body(body.to_vec()), headers)
            .await
    }

    async fn get_with(&self, key: &str, headers: &Headers) -> Answer {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(HOUR);
        self.send(self.http.get(url), headers).await
    }

    async fn head_with(&self, key: &str, headers: &Headers) -> Answer {
        let url = self
            .bucket
            .head_object(Some(&self.credentials), key)
            .sign(HOUR);
        self.send(self.http.head(url), headers).await
    }

    async fn create_upload_with(&self, key: &str, headers: &Headers) -> Answer {
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key)
            .sign(HOUR);
        self.send(self.http.post(url), headers).await
    }

    async fn complete_with(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[Listed],
        headers: &Headers,
    ) -> Answer {
        let url = self
            .bucket
            .complete_multipart_upload(Some(&self.credentials), key, upload_id, std::iter::empty())
            .sign(HOUR);
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, part) in (1..).zip(parts) {
            body += &format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag>",
                part.etag
            );
            if let Some((algorithm, value)) = &part.checksum {
                let element = element(*algorithm);
                body += &format!("<{element}>{value}</{element}>");
            }
            body += "</Part>";
        }
        body += "</CompleteMultipartUpload>";
        self.send(self.http.post(url).body(body), headers).await
    }

    async fn list_parts_of(&self, key: &str, upload_id: &str) -> Answer {
        let url = self
            .bucket
            .list_parts(Some(&self.credentials), key, upload_id)
            .sign(HOUR);
        self.send(self.http.get(url), &[]).await
    }

    async fn listed_parts(&self, key: &str, upload_id: &str) -> Vec<ListedPart> {
        let answer = self.list_parts_of(key, upload_id).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer
            .body
            .split("<Part>")
            .skip(1)
            .map(|part| ListedPart {
                number: xml_text(part, "PartNumber").unwrap().parse().unwrap(),
                etag: xml_text(part, "ETag").unwrap().replace("&quot;", "\""),
                checksum: ChecksumAlgorithm::ALL.into_iter().find_map(|algorithm| {
                    let value = xml_text(part, &element(algorithm))?;
                    Some((algorithm, value.to_owned()))
                }),
            })
            .collect()
    }
}

/// One write's checksum headers, and how the store answers them.
struct Case {
    name: String,
    headers: Vec<(&'static str, String)>,
    /// `Ok` with the checksum the answer carries, or `Err` with status, code and message part.
    answer: Result<Option<Value>, (u16, &'static str, String)>,
}

/// The checksum cases of one PutObject or UploadPart of [`BODY`].
fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case {
            name: "no checksum".into(),
            headers: vec![],
            answer: Ok(None),
        },
        Case {
            name: "CRC32, which S3 knows and the store does not".into(),
            headers: vec![("x-amz-checksum-crc32", "NjowIA==".into())],
            answer: Err((501, "NotImplemented", "not CRC32".into())),
        },
        Case {
            name: "SHA1, which S3 knows and the store does not".into(),
            headers: vec![("x-amz-checksum-sha1", "qvTGHdzF6KLavt4PO0gs2a6pQ00=".into())],
            answer: Err((501, "NotImplemented", "not SHA1".into())),
        },
        Case {
            name: "SDK algorithm CRC32".into(),
            headers: vec![(SDK_ALGORITHM, "CRC32".into())],
            answer: Err((501, "NotImplemented", "not CRC32".into())),
        },
        Case {
            name: "SDK algorithm S3 does not know".into(),
            headers: vec![(SDK_ALGORITHM, "MD5".into())],
            answer: Err((
                400,
                "InvalidRequest",
                "Value for x-amz-sdk-checksum-algorithm header is invalid.".into(),
            )),
        },
    ];
    for algorithm in ChecksumAlgorithm::ALL {
        let right = algorithm.checksum(BODY);
        let other = ChecksumAlgorithm::ALL
            .into_iter()
            .find(|other| *other != algorithm)
            .unwrap();
        let invalid = format!("Value for {} header is invalid.", algorithm.header());
        let mut case = |name: &str, headers: Vec<(&'static str, String)>, answer| {
            cases.push(Case {
                name: format!("{}: {name}", algorithm.s3_name()),
                headers,
                answer,
            });
        };
        case(
            "right",
            vec![(algorithm.header(), right.clone())],
            Ok(Some((algorithm, right.clone()))),
        );
        case(
            "right, with the SDK algorithm in lower case",
            vec![
                (SDK_ALGORITHM, algorithm.name().into()),
                (algorithm.header(), right.clone()),
            ],
            Ok(Some((algorithm, right.clone()))),
        );
        case(
            "wrong",
            vec![(algorithm.header(), algorithm.checksum(b"other bytes"))],
            Err((
                400,
                "BadDigest",
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    algorithm.s3_name()
                ),
            )),
        );
        case(
            "not base64",
            vec![(algorithm.header(), "not base64!".into())],
            Err((400, "InvalidRequest", invalid.clone())),
        );
        case(
            "another algorithm's length",
            vec![(algorithm.header(), other.checksum(BODY))],
            Err((400, "InvalidRequest", invalid)),
        );
        case(
            "and another algorithm's header",
            vec![
                (algorithm.header(), right.clone()),
                (other.header(), other.checksum(BODY)),
            ],
            Err((
                400,
                "InvalidRequest",
                "Expecting a single x-amz-checksum- header.".into(),
            )),
        );
        case(
            "SDK algorithm without a value",
            vec![(SDK_ALGORITHM, algorithm.s3_name().into())],
            Err((
                400,
                "InvalidRequest",
                "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-*"
                    .into(),
            )),
        );
        case(
            "SDK algorithm naming another",
            vec![
                (SDK_ALGORITHM, other.s3_name().into()),
                (algorithm.header(), right),
            ],
            Err((
                400,
                "InvalidRequest",
                "Value for x-amz-sdk-checksum-algorithm header is invalid.".into(),
            )),
        );
    }
    cases
}

impl Case {
    /// Asserts the answer; `object` when it is PutObject's, which also states the type.
    fn assert(&self, answer: &Answer, object: bool) {
        match &self.answer {
            Ok(checksum) => {
                assert_eq!(answer.status, 200, "{}: {}", self.name, answer.body);
                let mut expected: Vec<_> = checksum
                    .iter()
                    .map(|(algorithm, value)| (algorithm.header().to_owned(), value.clone()))
                    .collect();
                if object && checksum.is_some() {
                    expected.push(("x-amz-checksum-type".into(), "FULL_OBJECT".into()));
                }
                assert_eq!(answer.checksum_headers(), expected, "{}", self.name);
            }
            Err((status, code, message)) => {
                answer.assert_refused(*status, code, message, &self.name);
            }
        }
    }
}

#[tokio::test]
async fn put_object_checks_the_checksum_and_stores_nothing_when_it_differs() {
    let store = store(1).await;
    for (index, case) in cases().iter().enumerate() {
        let key = format!("case-{index}");
        let answer = store.put_object_with(&key, BODY, &case.headers).await;
        case.assert(&answer, true);
        let stored = store.get_with(&key, &[]).await;
        if case.answer.is_ok() {
            assert_eq!(stored.body.as_bytes(), BODY, "{}", case.name);
        } else {
            assert_eq!(
                (stored.status, stored.code()),
                (404, "NoSuchKey"),
                "{}: nothing stored",
                case.name
            );
        }
    }

    let accepted = cases().iter().filter(|case| case.answer.is_ok()).count();
    assert_eq!(data_files(&store), accepted);

    // A refused PUT leaves the object it would have replaced.
    let kept = store.put_object_with("kept", b"before", &[]).await;
    assert_eq!(kept.status, 200);
    let wrong = [(
        ChecksumAlgorithm::Crc32c.header(),
        ChecksumAlgorithm::Crc32c.checksum(b"other bytes"),
    )];
    let refused = store.put_object_with("kept", BODY, &wrong).await;
    assert_eq!(refused.code(), "BadDigest");
    assert_eq!(store.get_with("kept", &[]).await.body, "before");
    assert_eq!(data_files(&store), accepted + 1);
}

#[tokio::test]
async fn upload_part_checks_the_checksum_and_keeps_the_part_it_would_replace() {
    let store = store(1).await;
    let upload_id = store.create_upload("parts").await;
    let cases = cases();
    let mut expected = Vec::new();
    for (number, case) in (1..).zip(&cases) {
        // An earlier upload of the same part, which only an accepted one replaces.
        let before = store
            .put_part("parts", &upload_id, number, b"before".to_vec())
            .await;
        let answer = store
            .put_part_with("parts", &upload_id, number, BODY, &case.headers)
            .await;
        case.assert(&answer, false);
        expected.push(match &case.answer {
            Ok(checksum) => ListedPart {
                number,
                etag: answer.header("etag").unwrap().to_owned(),
                checksum: checksum.clone(),
            },
            Err(_) => ListedPart {
                number,
                etag: before,
                checksum: None,
            },
        });
    }
    assert_eq!(store.listed_parts("parts", &upload_id).await, expected);
    assert_eq!(data_files(&store), cases.len(), "one data file a part");
}

/// Creates an upload that declares `algorithm` (and `kind`, if any); returns its id.
async fn create_declared(
    store: &Store,
    key: &str,
    algorithm: ChecksumAlgorithm,
    kind: Option<&str>,
) -> (String, Answer) {
    let mut headers = vec![("x-amz-checksum-algorithm", algorithm.s3_name().to_owned())];
    headers.extend(kind.map(|kind| ("x-amz-checksum-type", kind.to_owned())));
    let created = store.create_upload_with(key, &headers).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let upload_id = xml_text(&created.body, "UploadId").unwrap().to_owned();
    (upload_id, created)
}

#[tokio::test]
async fn a_declared_algorithm_is_every_parts_and_listed_with_them() {
    let store = store(1).await;
    let (upload_id, created) =
        create_declared(&store, "declared", ChecksumAlgorithm::Crc32c, None).await;
    assert_eq!(created.header("x-amz-checksum-algorithm"), Some("CRC32C"));
    assert_eq!(created.header("x-amz-checksum-type"), Some("FULL_OBJECT"));

    // A part without a checksum gets the upload's, computed by the store.
    let computed = store
        .put_part_with("declared", &upload_id, 1, BODY, &[])
        .await;
    assert_eq!(computed.status, 200, "{}", computed.body);
    let crc32c = ChecksumAlgorithm::Crc32c.checksum(BODY);
    assert_eq!(
        computed.header("x-amz-checksum-crc32c"),
        Some(crc32c.as_str())
    );

    // A part with another algorithm's checksum is refused, stated or named.
    let sha256 = ChecksumAlgorithm::Sha256.checksum(BODY);
    for headers in [
        vec![("x-amz-checksum-sha256", sha256.clone())],
        vec![
            (SDK_ALGORITHM, "SHA256".into()),
            ("x-amz-checksum-sha256", sha256.clone()),
        ],
    ] {
        let refused = store
            .put_part_with("declared", &upload_id, 2, BODY, &headers)
            .await;
        refused.assert_refused(
            400,
            "InvalidRequest",
            "Checksum Type mismatch occurred, expected checksum Type: crc32c, actual checksum \
             Type: sha256",
            "a SHA256 part of a CRC32C upload",
        );
    }

    let listing = store.list_parts_of("declared", &upload_id).await;
    assert_eq!(
        xml_text(&listing.body, "ChecksumAlgorithm"),
        Some("CRC32C"),
        "{}",
        listing.body
    );
    assert_eq!(xml_text(&listing.body, "ChecksumType"), Some("FULL_OBJECT"));
    assert_eq!(
        store.listed_parts("declared", &upload_id).await,
        [ListedPart {
            number: 1,
            etag: computed.header("etag").unwrap().to_owned(),
            checksum: Some((ChecksumAlgorithm::Crc32c, crc32c)),
        }]
    );

    // ListMultipartUploads: ListObjectsV2's GET with the `uploads` query, as in
    // `abort_and_list_uploads`.
    let mut list = store.bucket.list_objects_v2(Some(&store.credentials));
    list.query_mut().remove("list-type");
    list.query_mut().remove("encoding-type");
    list.query_mut().insert("uploads", "");
    let uploads = store.send(store.http.get(list.sign(HOUR)), &[]).await;
    let upload = uploads.body.split("<Upload>").nth(1).unwrap();
    assert_eq!(xml_text(upload, "ChecksumAlgorithm"), Some("CRC32C"));
    assert_eq!(xml_text(upload, "ChecksumType"), Some("FULL_OBJECT"));
}

#[tokio::test]
async fn create_refuses_what_s3_refuses() {
    let store = store(1).await;
    let cases: [(&Headers, u16, &str, &str); 6] = [
        (
            &[
                ("x-amz-checksum-algorithm", "SHA256".into()),
                ("x-amz-checksum-type", "FULL_OBJECT".into()),
            ],
            400,
            "InvalidRequest",
            "The FULL_OBJECT checksum type cannot be used with the sha256 checksum algorithm.",
        ),
        (
            &[
                ("x-amz-checksum-algorithm", "CRC64NVME".into()),
                ("x-amz-checksum-type", "COMPOSITE".into()),
            ],
            400,
            "InvalidRequest",
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.",
        ),
        (
            &[("x-amz-checksum-type", "FULL_OBJECT".into())],
            400,
            "InvalidRequest",
            "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm \
             header.",
        ),
        (
            &[
                ("x-amz-checksum-algorithm", "CRC32C".into()),
                ("x-amz-checksum-type", "PARTIAL".into()),
            ],
            400,
            "InvalidRequest",
            "Value for x-amz-checksum-type header is invalid.",
        ),
        (
            &[("x-amz-checksum-algorithm", "MD5".into())],
            400,
            "InvalidRequest",
            "Value for x-amz-checksum-algorithm header is invalid.",
        ),
        (
            &[("x-amz-checksum-algorithm", "SHA1".into())],
            501,
            "NotImplemented",
            "not SHA1",
        ),
    ];
    for (headers, status, code, message) in cases {
        let refused = store.create_upload_with("refused", headers).await;
        refused.assert_refused(status, code, message, &format!("{headers:?}"));
    }
}

#[tokio::test]
async fn reads_return_the_checksum_when_asked() {
    let store = store(1).await;
    let crc64 = ChecksumAlgorithm::Crc64nvme.checksum(BODY);
    let put = store
        .put_object_with(
            "summed",
            BODY,
            &[("x-amz-checksum-crc64nvme", crc64.clone())],
        )
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(store.put_object_with("plain", BODY, &[]).await.status, 200);

    let enabled = [("x-amz-checksum-mode", "ENABLED".to_owned())];
    let ranged = [enabled[0].clone(), ("range", "bytes=0-3".to_owned())];
    let summed = vec![
        ("x-amz-checksum-crc64nvme".to_owned(), crc64),
        ("x-amz-checksum-type".to_owned(), "FULL_OBJECT".to_owned()),
    ];
    for (what, answer, expected) in [
        (
            "HEAD",
            store.head_with("summed", &[]).await,
            Vec::<(String, String)>::new(),
        ),
        (
            "HEAD, checksum mode",
            store.head_with("summed", &enabled).await,
            summed.clone(),
        ),
        ("GET", store.get_with("summed", &[]).await, vec![]),
        (
            "GET, checksum mode",
            store.get_with("summed", &enabled).await,
            summed,
        ),
        (
            "ranged GET, checksum mode",
            store.get_with("summed", &ranged).await,
            vec![],
        ),
        (
            "HEAD of an object without a checksum, checksum mode",
            store.head_with("plain", &enabled).await,
            vec![],
        ),
    ] {
        assert!(answer.status == 200 || answer.status == 206, "{what}");
        assert_eq!(answer.checksum_headers(), expected, "{what}");
    }
}

#[tokio::test]
async fn complete_combines_the_parts_checksums_and_refuses_a_wrong_one() {
    const PARTS: [&[u8]; 2] = [b"the first part, ", b"and the second one"];
    let store = store(1).await;
    let declared = [
        (ChecksumAlgorithm::Crc32c, None, "FULL_OBJECT"),
        (ChecksumAlgorithm::Crc64nvme, None, "FULL_OBJECT"),
        (ChecksumAlgorithm::Sha256, None, "COMPOSITE"),
        (ChecksumAlgorithm::Crc32c, Some("COMPOSITE"), "COMPOSITE"),
        (ChecksumAlgorithm::Sha256, Some("COMPOSITE"), "COMPOSITE"),
        (
            ChecksumAlgorithm::Crc64nvme,
            Some("FULL_OBJECT"),
            "FULL_OBJECT",
        ),
    ];
    for (algorithm, asked, kind) in declared {
        let what = format!("{algorithm} {kind}");
        let key = format!("{algorithm}-{kind}-{asked:?}");
        let (upload_id, created) = create_declared(&store, &key, algorithm, asked).await;
        assert_eq!(created.header("x-amz-checksum-type"), Some(kind), "{what}");

        // The first part states its checksum, the second leaves it to the store.
        let values = PARTS.map(|part| algorithm.checksum(part));
        let stated = [(algorithm.header(), values[0].clone())];
        let first = store
            .put_part_with(&key, &upload_id, 1, PARTS[0], &stated)
            .await;
        let second = store
            .put_part_with(&key, &upload_id, 2, PARTS[1], &[])
            .await;
        let etags = [&first, &second].map(|part| part.header("etag").unwrap().to_owned());
        let listed = |checksums: [Option<&String>; 2]| -> Vec<Listed> {
            etags
                .iter()
                .zip(checksums)
                .map(|(etag, checksum)| Listed {
                    etag: etag.clone(),
                    checksum: checksum.map(|value| (algorithm, value.clone())),
                })
                .collect()
        };
        let expected = if kind == "FULL_OBJECT" {
            algorithm.checksum(&PARTS.concat())
        } else {
            let digests = values
                .each_ref()
                .map(|value| checksum::decode(algorithm, value).unwrap());
            format!("{}-2", algorithm.checksum(&digests.concat()))
        };
        let other_kind = if kind == "FULL_OBJECT" {
            "COMPOSITE"
        } else {
            "FULL_OBJECT"
        };

        let refusals = [
            (
                "a wrong object checksum",
                listed([Some(&values[0]), None]),
                vec![(algorithm.header(), algorithm.checksum(b"other bytes"))],
                (
                    "BadDigest",
                    format!(
                        "The {} you specified did not match the calculated checksum.",
                        algorithm.s3_name()
                    ),
                ),
            ),
            (
                "part 1 listed with part 2's checksum",
                listed([Some(&values[1]), Some(&values[1])]),
                vec![],
                (
                    "InvalidPart",
                    "the checksum of part 1 does not match".into(),
                ),
            ),
            (
                "the other checksum type",
                listed([None, None]),
                vec![("x-amz-checksum-type", other_kind.to_owned())],
                (
                    "InvalidRequest",
                    format!("The upload was created using the {kind} checksum mode."),
                ),
            ),
        ];
        for (refusal, parts, headers, (code, message)) in refusals {
            let refused = store
                .complete_with(&key, &upload_id, &parts, &headers)
                .await;
            refused.assert_refused(400, code, &message, &format!("{what}: {refusal}"));
            // Nothing written, and the upload is still there to complete.
            assert_eq!(store.get_with(&key, &[]).await.status, 404, "{what}");
            assert_eq!(store.listed_parts(&key, &upload_id).await.len(), 2);
        }

        // A composite value is taken with its `-N` or without: the uploads that ask for their
        // type state it without.
        let stated = match asked {
            Some(_) => expected.split('-').next().unwrap().to_owned(),
            None => expected.clone(),
        };
        let headers = [
            (algorithm.header(), stated),
            ("x-amz-checksum-type", kind.to_owned()),
        ];
        let done = store
            .complete_with(
                &key,
                &upload_id,
                &listed([Some(&values[0]), Some(&values[1])]),
                &headers,
            )
            .await;
        assert_eq!(done.status, 200, "{what}: {}", done.body);
        assert_eq!(
            xml_text(&done.body, &element(algorithm)),
            Some(expected.as_str()),
            "{what}: {}",
            done.body
        );
        assert_eq!(xml_text(&done.body, "ChecksumType"), Some(kind), "{what}");
        let head = store
            .head_with(&key, &[("x-amz-checksum-mode", "ENABLED".into())])
            .await;
        assert_eq!(
            head.checksum_headers(),
            [
                (algorithm.header().to_owned(), expected),
                ("x-amz-checksum-type".to_owned(), kind.to_owned()),
            ],
            "{what}"
        );
        assert_eq!(
            store.get_with(&key, &[]).await.body.as_bytes(),
            PARTS.concat()
        );
    }
}

/// A browser PUTs to a presigned URL whose signature covers the checksum header: the store
/// refuses a body that does not have it, and a request that drops the header.
#[tokio::test]
async fn a_presigned_put_carries_a_signed_checksum() {
    let store = store(1).await;
    let algorithm = ChecksumAlgorithm::Crc32c;
    let value = algorithm.checksum(BODY);
    let upload_id = store.create_upload("signed-part").await;
    let mut object = store.bucket.put_object(Some(&store.credentials), "signed");
    object
        .headers_mut()
        .insert(algorithm.header(), value.clone());
    let mut part = store
        .bucket
        .upload_part(Some(&store.credentials), "signed-part", 1, &upload_id);
    part.headers_mut().insert(algorithm.header(), value.clone());
    let signed = [(algorithm.header(), value.clone())];

    for url in [object.sign(HOUR), part.sign(HOUR)] {
        let corrupted = store
            .send(
                store
                    .http
                    .put(url.clone())
                    .body(&b"the bytes a client sent"[..]),
                &signed,
            )
            .await;
        corrupted.assert_refused(
            400,
            "BadDigest",
            "The CRC32C you specified did not match the calculated checksum.",
            url.path(),
        );
        let unsigned = store
            .send(store.http.put(url.clone()).body(BODY), &[])
            .await;
        assert_eq!(unsigned.status, 403, "{}", unsigned.body);
        let right = store
            .send(store.http.put(url.clone()).body(BODY), &signed)
            .await;
        assert_eq!(right.status, 200, "{}", right.body);
        assert_eq!(right.header(algorithm.header()), Some(value.as_str()));
    }
}

#[tokio::test]
async fn browsers_may_send_and_read_checksums() {
    let store = store(1).await;
    let url = store
        .bucket
        .put_object(Some(&store.credentials), "k")
        .sign(HOUR);
    let preflight = store
        .send(
            store.http.request(reqwest::Method::OPTIONS, url.clone()),
            &[
                ("origin", "http://localhost:8080".into()),
                ("access-control-request-method", "PUT".into()),
                (
                    "access-control-request-headers",
                    "x-amz-checksum-crc32c".into(),
                ),
            ],
        )
        .await;
    assert_eq!(preflight.status, 200);
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        allowed == "*" || allowed.contains("x-amz-checksum-crc32c"),
        "{allowed}"
    );

    let put = store
        .send(
            store.http.put(url).body(BODY),
            &[
                ("origin", "http://localhost:8080".into()),
                (
                    "x-amz-checksum-crc32c",
                    ChecksumAlgorithm::Crc32c.checksum(BODY),
                ),
            ],
        )
        .await;
    assert_eq!(put.status, 200);
    let exposed = put
        .header("access-control-expose-headers")
        .unwrap()
        .to_lowercase();
    let exposed: Vec<_> = exposed.split(',').map(str::trim).collect();
    for header in ChecksumAlgorithm::ALL
        .map(ChecksumAlgorithm::header)
        .into_iter()
        .chain(["x-amz-checksum-type"])
    {
        assert!(exposed.contains(&header), "{header} in {exposed:?}");
    }
}

/// Sends `body` aws-chunked with `trailer` after it, as AWS SDKs send a checksum they compute
/// while streaming: signed in the headers (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, SigV4), since a
/// presigned URL cannot stream.
async fn put_with_trailer(
    store: &Store,
    url: url::Url,
    body: &[u8],
    trailer: (&str, &str),
) -> Answer {
    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
    let now = jiff::Timestamp::now();
    let (date, time) = (
        now.strftime("%Y%m%d").to_string(),
        now.strftime("%Y%m%dT%H%M%SZ").to_string(),
    );
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let signed = [
        ("host", host),
        (
            "x-amz-content-sha256",
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER".to_owned(),
        ),
        ("x-amz-date", time.clone()),
        ("x-amz-decoded-content-length", body.len().to_string()),
        ("x-amz-trailer", trailer.0.to_owned()),
    ];
    let mut query: Vec<_> = url
        .query_pairs()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    query.sort();
    let canonical_headers: String = signed
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed_names = signed.each_ref().map(|(name, _)| *name).join(";");
    let canonical = format!(
        "PUT\n{}\n{}\n{canonical_headers}\n{signed_names}\nSTREAMING-UNSIGNED-PAYLOAD-TRAILER",
        url.path(),
        query.join("&")
    );
    let scope = format!("{date}/us-east-1/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{time}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = ["us-east-1", "s3", "aws4_request"]
        .into_iter()
        .fold(hmac(b"AWS4test-secret", &date), |key, part| {
            hmac(&key, part)
        });
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=test-key/{scope}, SignedHeaders={signed_names}, \
         Signature={}",
        hex::encode(hmac(&key, &to_sign))
    );

    let mut chunked = format!("{:x}\r\n", body.len()).into_bytes();
    chunked.extend_from_slice(body);
    chunked.extend_from_slice(format!("\r\n0\r\n{}:{}\r\n\r\n", trailer.0, trailer.1).as_bytes());
    let mut headers: Vec<(&'static str, String)> = signed[1..].to_vec();
    headers.extend([
        ("authorization", authorization),
        ("content-encoding", "aws-chunked".to_owned()),
    ]);
    store
        .send(store.http.put(url).body(chunked), &headers)
        .await
}

#[tokio::test]
async fn a_checksum_in_a_trailer_is_checked_once_the_body_is_read() {
    let store = store(1).await;
    let upload_id = store.create_upload("trailed-part").await;
    let object_url = store.bucket.object_url("trailed");
    let part_url = store
        .bucket
        .upload_part(None, "trailed-part", 1, &upload_id)
        .sign(HOUR);
    for algorithm in ChecksumAlgorithm::ALL {
        let what = algorithm.s3_name();
        let right = algorithm.checksum(BODY);
        for url in [&object_url, &part_url] {
            let wrong = algorithm.checksum(b"other bytes");
            let refused =
                put_with_trailer(&store, url.clone(), BODY, (algorithm.header(), &wrong)).await;
            refused.assert_refused(
                400,
                "BadDigest",
                &format!("The {what} you specified did not match the calculated checksum."),
                &format!("{what} {}", url.path()),
            );
            let accepted =
                put_with_trailer(&store, url.clone(), BODY, (algorithm.header(), &right)).await;
            assert_eq!(accepted.status, 200, "{what}: {}", accepted.body);
            assert_eq!(accepted.header(algorithm.header()), Some(right.as_str()));
        }
        let stored = store
            .head_with("trailed", &[("x-amz-checksum-mode", "ENABLED".into())])
            .await;
        assert_eq!(stored.header(algorithm.header()), Some(right.as_str()));
    }
}
