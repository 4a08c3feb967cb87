//! The embedded store over real HTTP on loopback, spoken to with rusty-s3's signed URLs.

mod checksums;

use std::path::Path;
use std::time::Duration;

use rusty_s3::actions::{CreateMultipartUpload, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

const MIB: usize = 1024 * 1024;
const HOUR: Duration = Duration::from_secs(3600);

struct Store {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
    root: tempfile::TempDir,
}

async fn store(min_part_size: u64) -> Store {
    store_with(min_part_size, ferry_store::IDLE_TIMEOUT).await.0
}

/// A store, and its address.
async fn store_with(min_part_size: u64, idle_timeout: Duration) -> (Store, std::net::SocketAddr) {
    let root = tempfile::tempdir().unwrap();
    let addr = ferry_store::spawn(
        "127.0.0.1:0".parse().unwrap(),
        ferry_store::StoreConfig {
            root: root.path().to_path_buf(),
            access_key: "test-key".into(),
            secret_key: "test-secret".into(),
            min_part_size,
            idle_timeout,
        },
    )
    .await
    .unwrap();
    let endpoint = format!("http://{addr}").parse().unwrap();
    let store = Store {
        bucket: Bucket::new(endpoint, UrlStyle::Path, "bucket", "us-east-1").unwrap(),
        credentials: Credentials::new("test-key", "test-secret"),
        http: reqwest::Client::new(),
        root,
    };
    let create = rusty_s3::actions::CreateBucket::new(&store.bucket, &store.credentials);
    let response = store.http.put(create.sign(HOUR)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    (store, addr)
}

impl Store {
    async fn create_upload(&self, key: &str) -> String {
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key)
            .sign(HOUR);
        let body = self
            .http
            .post(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        CreateMultipartUpload::parse_response(&body)
            .unwrap()
            .upload_id()
            .to_owned()
    }

    async fn put_part(&self, key: &str, upload_id: &str, part: u16, bytes: Vec<u8>) -> String {
        let url = self
            .bucket
            .upload_part(Some(&self.credentials), key, part, upload_id)
            .sign(HOUR);
        let response = self.http.put(url).body(bytes).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.headers()["etag"].to_str().unwrap().to_owned()
    }
}

/// Data files on the store's disk, where a refused write must leave none.
fn data_files(store: &Store) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    count(&path)
                } else {
                    usize::from(path.extension().is_some_and(|ext| ext == "data"))
                }
            })
            .sum()
    }
    count(store.root.path())
}

#[tokio::test]
async fn an_expired_url_is_refused() {
    let store = store(5 * MIB as u64).await;
    let two_hours_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
    let expired = store
        .bucket
        .put_object(Some(&store.credentials), "k")
        .sign_with_time(HOUR, &two_hours_ago);
    let response = store.http.put(expired).body("x").send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("expired"));

    // The same request signed now goes through: it was the expiry that refused it.
    let fresh = store
        .bucket
        .put_object(Some(&store.credentials), "k")
        .sign(HOUR);
    assert_eq!(
        store
            .http
            .put(fresh)
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn unsigned_and_wrongly_signed_requests_are_refused() {
    let store = store(5 * MIB as u64).await;
    let unsigned = store.bucket.object_url("k");
    assert_eq!(
        store
            .http
            .put(unsigned)
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let stranger = Credentials::new("test-key", "not-the-secret");
    let forged = store.bucket.put_object(Some(&stranger), "k").sign(HOUR);
    assert_eq!(
        store
            .http
            .put(forged)
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn delete_removes_the_object_and_its_bytes_and_only_when_signed() {
    let store = store(5 * MIB as u64).await;
    for key in ["a/gone", "a/kept"] {
        let put = store
            .bucket
            .put_object(Some(&store.credentials), key)
            .sign(HOUR);
        let response = store.http.put(put).body(key).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(data_files(&store), 2);

    let stranger = Credentials::new("test-key", "not-the-secret");
    for refused in [
        store.bucket.object_url("a/kept"),
        store
            .bucket
            .delete_object(Some(&stranger), "a/kept")
            .sign(HOUR),
    ] {
        let response = store.http.delete(refused).send().await.unwrap();
        assert_eq!(response.status(), 403);
    }

    let delete = store
        .bucket
        .delete_object(Some(&store.credentials), "a/gone")
        .sign(HOUR);
    let response = store.http.delete(delete.clone()).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(data_files(&store), 1, "the object's bytes left the disk");
    let get = store
        .bucket
        .get_object(Some(&store.credentials), "a/gone")
        .sign(HOUR);
    let gone = store.http.get(get).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert!(gone.text().await.unwrap().contains("NoSuchKey"));
    // As in S3, deleting a key with no object succeeds and changes nothing.
    let again = store.http.delete(delete).send().await.unwrap();
    assert_eq!(again.status(), 204);

    let get = store
        .bucket
        .get_object(Some(&store.credentials), "a/kept")
        .sign(HOUR);
    let kept = store.http.get(get).send().await.unwrap();
    assert_eq!(kept.text().await.unwrap(), "a/kept");
    assert_eq!(data_files(&store), 1);
}

#[tokio::test]
async fn list_parts_pages_through_every_part_with_etags() {
    let store = store(1).await;
    let upload_id = store.create_upload("paged").await;
    let mut etags = Vec::new();
    for part in 1..=5u16 {
        etags.push(
            store
                .put_part("paged", &upload_id, part, vec![part as u8; 10])
                .await,
        );
    }
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let mut list = store
            .bucket
            .list_parts(Some(&store.credentials), "paged", &upload_id);
        list.set_max_parts(2);
        if let Some(marker) = marker {
            list.set_part_number_marker(marker);
        }
        let body = store
            .http
            .get(list.sign(HOUR))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let page = rusty_s3::actions::ListParts::parse_response(&body).unwrap();
        assert!(page.parts.len() <= 2);
        seen.extend(page.parts.iter().map(|p| {
            (
                p.number,
                p.size,
                format!("\"{}\"", p.etag.trim_matches('"')),
            )
        }));
        match page.next_part_number_marker {
            Some(next) => marker = Some(next),
            None => break,
        }
    }
    let expected: Vec<_> = etags
        .iter()
        .zip(1..)
        .map(|(etag, n)| (n, 10, etag.clone()))
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn range_reads_and_head_work_on_assembled_objects() {
    let store = store(5 * MIB as u64).await;
    let upload_id = store.create_upload("big").await;
    let first: Vec<u8> = (0..5 * MIB).map(|i| (i % 251) as u8).collect();
    let second: Vec<u8> = vec![7; 100];
    let etags = [
        store.put_part("big", &upload_id, 1, first.clone()).await,
        store.put_part("big", &upload_id, 2, second.clone()).await,
    ];
    let complete = store.bucket.complete_multipart_upload(
        Some(&store.credentials),
        "big",
        &upload_id,
        etags.iter().map(String::as_str),
    );
    let url = complete.sign(HOUR);
    let response = store
        .http
        .post(url)
        .body(complete.body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let get = store
        .bucket
        .get_object(Some(&store.credentials), "big")
        .sign(HOUR);
    let range = store
        .http
        .get(get.clone())
        .header("range", format!("bytes={}-{}", 5 * MIB - 2, 5 * MIB + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(
        range.headers()["content-range"],
        format!("bytes {}-{}/{}", 5 * MIB - 2, 5 * MIB + 1, 5 * MIB + 100)
    );
    let expected = [&first[5 * MIB - 2..], &second[..2]].concat();
    assert_eq!(
        range.bytes().await.unwrap().to_vec(),
        expected,
        "a range across the part boundary"
    );

    let head = store
        .bucket
        .head_object(Some(&store.credentials), "big")
        .sign(HOUR);
    let head = store.http.head(head).send().await.unwrap();
    assert_eq!(
        head.headers()["content-length"],
        (5 * MIB + 100).to_string()
    );
    assert!(head.headers()["etag"].to_str().unwrap().ends_with("-2\""));
}

#[tokio::test]
async fn abort_and_list_uploads() {
    let store = store(5 * MIB as u64).await;
    let kept = store.create_upload("a/kept").await;
    let aborted = store.create_upload("a/aborted").await;
    store.put_part("a/aborted", &aborted, 1, vec![1; 10]).await;
    let abort = store
        .bucket
        .abort_multipart_upload(Some(&store.credentials), "a/aborted", &aborted)
        .sign(HOUR);
    assert_eq!(store.http.delete(abort).send().await.unwrap().status(), 204);

    // rusty-s3 has no ListMultipartUploads: reuse ListObjectsV2's GET on the bucket with the
    // `uploads` query instead of its own.
    let mut list = store.bucket.list_objects_v2(Some(&store.credentials));
    list.query_mut().remove("list-type");
    list.query_mut().remove("encoding-type");
    list.query_mut().insert("uploads", "");
    list.query_mut().insert("prefix", "a/");
    let listing = store
        .http
        .get(list.sign(HOUR))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains(&kept), "{listing}");
    assert!(
        !listing.contains(&aborted),
        "an aborted upload is no longer listed: {listing}"
    );

    let list = store
        .bucket
        .list_parts(Some(&store.credentials), "a/aborted", &aborted)
        .sign(HOUR);
    let gone = store.http.get(list).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert!(gone.text().await.unwrap().contains("NoSuchUpload"));
    let list = store
        .bucket
        .list_parts(Some(&store.credentials), "a/kept", &kept)
        .sign(HOUR);
    assert_eq!(store.http.get(list).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn browsers_may_read_the_etag() {
    let store = store(5 * MIB as u64).await;
    let url = store
        .bucket
        .put_object(Some(&store.credentials), "k")
        .sign(HOUR);
    let preflight = store
        .http
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", "http://localhost:8080")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let put = store
        .bucket
        .put_object(Some(&store.credentials), "k")
        .sign(HOUR);
    let response = store
        .http
        .put(put)
        .header("origin", "http://localhost:8080")
        .body("x")
        .send()
        .await
        .unwrap();
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.split(',').any(|name| name.trim() == "etag"),
        "{exposed}"
    );
}

/// S3's conditional writes: `If-None-Match: *` stores only when no object has the key, on
/// PutObject and on CompleteMultipartUpload (which then keeps the upload, as S3 does).
#[tokio::test]
async fn if_none_match_refuses_to_overwrite() {
    let store = store(1).await;
    let put = |bytes: Vec<u8>, if_absent: bool| {
        let url = store
            .bucket
            .put_object(Some(&store.credentials), "once")
            .sign(HOUR);
        let mut request = store.http.put(url).body(bytes);
        if if_absent {
            request = request.header("if-none-match", "*");
        }
        request.send()
    };
    assert_eq!(put(b"first".to_vec(), true).await.unwrap().status(), 200);
    let second = put(b"second".to_vec(), true).await.unwrap();
    assert_eq!(second.status(), 412);
    assert!(second.text().await.unwrap().contains("PreconditionFailed"));

    let upload_id = store.create_upload("once").await;
    let etag = store
        .put_part("once", &upload_id, 1, b"third".to_vec())
        .await;
    let complete = |if_absent: bool| {
        let action = store.bucket.complete_multipart_upload(
            Some(&store.credentials),
            "once",
            &upload_id,
            [etag.as_str()].into_iter(),
        );
        let mut request = store.http.post(action.sign(HOUR));
        if if_absent {
            request = request.header("if-none-match", "*");
        }
        request.body(action.body()).send()
    };
    let refused = complete(true).await.unwrap();
    assert_eq!(refused.status(), 412);

    let get = store
        .bucket
        .get_object(Some(&store.credentials), "once")
        .sign(HOUR);
    let kept = store.http.get(get).send().await.unwrap();
    assert_eq!(kept.bytes().await.unwrap().as_ref(), b"first");

    // Without the condition the same Complete replaces the object: the upload was kept.
    let replaced = complete(false).await.unwrap();
    assert_eq!(replaced.status(), 200);
    // Without the condition a PUT replaces the object too.
    assert_eq!(put(b"fourth".to_vec(), false).await.unwrap().status(), 200);
}

/// Reads from `stream` until the store closes it; what it answered, or none if it stayed open
/// for 30 s.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(answer)
}

/// A client that keeps its connections open after their answers (an S3 client in the bench
/// held 20,000 open until the store's descriptors ran out) has them closed after the idle
/// timeout, and so has one that connects and sends nothing.
#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let (_store, addr) = store_with(5 * MIB as u64, Duration::from_secs(1)).await;
    let mut answered = tokio::net::TcpStream::connect(addr).await.unwrap();
    answered
        .write_all(b"GET /bucket HTTP/1.1\r\nHost: store\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut answered)
        .await
        .expect("an idle keep-alive connection stayed open");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 403"),
        "the unsigned request itself was answered (refused)"
    );
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        read_until_closed(&mut silent).await,
        Some(Vec::new()),
        "a connection that never sent a request stayed open"
    );
}

/// A client that sends its headers a line at a time is cut at the idle timeout too: the time
/// counts for the whole head, not between lines.
#[tokio::test]
async fn headers_sent_a_line_at_a_time_are_cut_at_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let (_store, addr) = store_with(5 * MIB as u64, Duration::from_secs(1)).await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let trickle = async move {
        write
            .write_all(b"GET /bucket HTTP/1.1\r\nHost: store\r\n")
            .await
            .unwrap();
        // A line every 200 ms for 20 s, unless the store closes the connection first.
        for line in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write
                .write_all(format!("X-Line-{line}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
        std::future::pending::<()>().await;
    };
    let closed = async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = [0u8; 1024];
        while read.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
    };
    let cut = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::select! {
            () = trickle => {},
            () = closed => {},
        }
    })
    .await;
    assert!(cut.is_ok(), "a client trickling header lines was never cut");
}
