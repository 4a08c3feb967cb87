//! Starts real servers on loopback for the HTTP suites: the companion (with the embedded store,
//! or pointed at moto's or Garage's S3 server), moto and Garage themselves.

#![allow(dead_code)] // each test binary uses its own share of these helpers

pub mod cases;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ferry_companion::Config;
use ferry_core::ChecksumAlgorithm;
use ferry_core::protocol::{PartsSigned, SignParts, SignedUrl, StoredObject, UploadCreated};
use serde_json::{Value, json};

/// How long a test's PUT to a store may go unanswered before it is sent again, and how many
/// times it is sent.
const PUT_STALL: Duration = Duration::from_secs(30);
const PUT_ATTEMPTS: usize = 3;

pub const MIB: usize = 1024 * 1024;

/// The settings `cases::bad_requests_are_refused_without_touching_the_store` and
/// `cases::downloads_need_the_owner_or_a_link` need.
pub const AUTHED: [&str; 6] = [
    "--auth-tokens",
    "alice-key=alice,bob-key=bob",
    "--max-file-size",
    "104857600",
    "--allowed-types",
    "application/octet-stream",
];

/// The store behind a companion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The companion's own, under its data folder.
    Embedded,
    /// moto's S3 server: S3's multipart rules, no signature checks.
    Moto,
    /// Garage: a production S3 store that checks signatures.
    Garage,
}

/// A companion serving on a loopback port until the test ends.
pub struct RunningCompanion {
    pub base: String,
    pub http: reqwest::Client,
    /// The companion's own state: its store client, for the janitor.
    pub state: std::sync::Arc<ferry_companion::api::AppState>,
    pub store: Store,
    data: tempfile::TempDir,
    /// The bucket and credentials the companion was given, when it uses a store other than its
    /// own.
    remote: Option<(rusty_s3::Bucket, rusty_s3::Credentials)>,
    /// The checksum the companion asks for: this client hashes as a browser does.
    pub checksum: Option<ChecksumAlgorithm>,
    /// Each upload's part checksums, as [`Self::put_parts`] and [`Self::put_part`] sent them,
    /// for its Complete.
    part_checksums: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

/// What a test that sends raw requests (no checksums) adds to a companion's arguments.
pub const UNCHECKED: [&str; 2] = ["--checksum", "off"];

/// Starts a companion with `args` added to a fresh data folder and a loopback port: with the
/// embedded store, or moto's when `args` name an endpoint. Checksums are the companion's
/// default (CRC32C, which this client computes as a browser does) unless `args` choose
/// (`--checksum`): so every object these suites store is verified by the store itself, and the
/// suites that attack routes with raw requests turn them off.
pub async fn companion(args: &[&str]) -> RunningCompanion {
    let store = if args.contains(&"--s3-endpoint") {
        Store::Moto
    } else {
        Store::Embedded
    };
    companion_on(store, args).await
}

/// Starts a companion in front of `store`, which `args` point it at.
pub async fn companion_on(store: Store, args: &[&str]) -> RunningCompanion {
    let data = tempfile::tempdir().unwrap();
    let mut argv = vec![
        "ferry-companion",
        "--listen",
        "127.0.0.1:0",
        "--secret",
        "test-secret",
        "--data-dir",
    ];
    let data_dir = data.path().to_str().unwrap().to_owned();
    argv.push(&data_dir);
    argv.extend_from_slice(args);
    let config = Config::parse_from(argv);
    let companion = ferry_companion::build(&config)
        .await
        .expect("companion starts");
    let state = companion.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ferry_companion::connection_limits(&config);
    tokio::spawn(ferry_companion::server::serve(
        listener,
        companion.router,
        limits,
        std::future::pending(),
    ));
    let arg = |name: &str| {
        args.iter()
            .position(|arg| *arg == name)
            .map(|at| args[at + 1].to_owned())
    };
    let remote = arg("--s3-endpoint").map(|endpoint| {
        // moto and Garage are both reached path-style.
        let bucket = rusty_s3::Bucket::new(
            endpoint.parse().unwrap(),
            rusty_s3::UrlStyle::Path,
            arg("--s3-bucket").unwrap(),
            arg("--s3-region").unwrap_or_else(|| "us-east-1".to_owned()),
        )
        .unwrap();
        let credentials = rusty_s3::Credentials::new(
            arg("--access-key-id").unwrap(),
            arg("--secret-access-key").unwrap(),
        );
        (bucket, credentials)
    });
    RunningCompanion {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        state,
        store,
        data,
        remote,
        checksum: config.checksum.0,
        part_checksums: Default::default(),
    }
}

/// Bytes that differ at every offset, so a misplaced part cannot go unnoticed.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed ^ (i >> 20) as u8)
        .collect()
}

impl RunningCompanion {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The body of a plain GET of `url`, whatever its status.
    pub async fn get_text(&self, url: &str) -> String {
        let response = self.http.get(url).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// Everything the store holds, as text: equal before and after a request means the request
    /// did not touch the store.
    pub async fn store_state(&self) -> String {
        match &self.remote {
            Some((bucket, credentials)) => {
                use rusty_s3::S3Action;
                let lifetime = Duration::from_secs(60);
                // Signed, for a store that checks: a refusal would read the same every time.
                let read = |url: url::Url| async move {
                    let response = self.http.get(url).send().await.unwrap();
                    assert_eq!(response.status(), 200, "listing the store");
                    response.text().await.unwrap()
                };
                let objects = read(bucket.list_objects_v2(Some(credentials)).sign(lifetime)).await;
                // ListMultipartUploads is ListObjectsV2's GET with another query, as in the store.
                let mut list = bucket.list_objects_v2(Some(credentials));
                let query = list.query_mut();
                query.remove("list-type");
                query.remove("encoding-type");
                query.insert("uploads", "");
                let uploads = read(list.sign(lifetime)).await;
                // moto's answers carry a fresh request id each time.
                let strip = |xml: String| {
                    xml.split("<RequestId>")
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                };
                format!("{}\n{}", strip(objects), strip(uploads))
            }
            None => {
                let mut files = Vec::new();
                let mut dirs = vec![self.data.path().to_path_buf()];
                while let Some(dir) = dirs.pop() {
                    for entry in std::fs::read_dir(dir).unwrap() {
                        let entry = entry.unwrap();
                        if entry.file_type().unwrap().is_dir() {
                            dirs.push(entry.path());
                        } else {
                            files.push(format!(
                                "{} {}",
                                entry.path().display(),
                                entry.metadata().unwrap().len()
                            ));
                        }
                    }
                }
                files.sort();
                files.join("\n")
            }
        }
    }

    /// Whether the store behind the companion is moto, which checks no signatures: what a
    /// signature binds is then checked only by the companion.
    pub fn is_moto(&self) -> bool {
        self.store == Store::Moto
    }

    /// What the store's answer to a bad signature says: S3's code, or Garage's message (its code
    /// is a plain `AccessDenied`).
    pub fn signature_refusal(&self) -> &'static str {
        match self.store {
            Store::Garage => "Invalid signature",
            Store::Embedded | Store::Moto => "SignatureDoesNotMatch",
        }
    }

    /// Whether the store honours `If-None-Match: *` on writes. Garage 2.5 takes the header and
    /// ignores it.
    pub fn refuses_overwrites(&self) -> bool {
        self.store != Store::Garage
    }

    /// PUTs `bytes` to a presigned single-PUT URL with its signed headers, stating the length
    /// as browsers do, even for an empty body. A PUT with no answer in `PUT_STALL` is sent again,
    /// as Ferry's clients do with a stalled part: Garage on SQLite has been seen to leave one
    /// PUT unanswered for good ("database is locked") while answering every other request.
    pub async fn put_single(&self, url: &SignedUrl, bytes: Vec<u8>) -> reqwest::Response {
        let mut attempt = 1;
        loop {
            let put = self.single_put(url, bytes.clone()).timeout(PUT_STALL);
            match put.send().await {
                Err(error) if error.is_timeout() && attempt < PUT_ATTEMPTS => attempt += 1,
                sent => return sent.unwrap(),
            }
        }
    }

    /// The request `put_single` sends.
    pub fn single_put(&self, url: &SignedUrl, bytes: Vec<u8>) -> reqwest::RequestBuilder {
        let mut put = self
            .http
            .put(&url.url)
            .header("content-length", bytes.len())
            .body(bytes);
        for (name, value) in &url.headers {
            put = put.header(name, value);
        }
        put
    }

    /// Sends a presigned POST form as a browser does: its fields, then `bytes` as the `file`
    /// field, with `change` applied to the fields first (an attacker's edit).
    pub async fn post_form(
        &self,
        url: &SignedUrl,
        bytes: Vec<u8>,
        change: impl FnOnce(&mut ferry_core::sorted::SortedMap<String, String>),
    ) -> reqwest::Response {
        let mut fields = url.form.clone();
        change(&mut fields);
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name, value);
        }
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("blob"),
        );
        self.http
            .post(&url.url)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Sends `method path` with `headers` exactly as written (reqwest would resolve `..` and
    /// re-encode the path) and returns the status and body.
    pub async fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"));
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        (status, body.to_owned())
    }

    pub async fn create(&self, name: &str, size: usize) -> reqwest::Response {
        self.http
            .post(self.url("/api/uploads"))
            .json(&json!({"name": name, "size": size, "type": "application/octet-stream"}))
            .send()
            .await
            .unwrap()
    }

    /// Creates an upload for `name` of `size` bytes as the owner of `bearer`.
    pub async fn created_as(&self, bearer: &str, name: &str, size: usize) -> UploadCreated {
        let response = self
            .http
            .post(self.url("/api/uploads"))
            .bearer_auth(bearer)
            .json(&json!({"name": name, "size": size, "type": "application/octet-stream"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "create {name} as {bearer}");
        response.json().await.unwrap()
    }

    /// Creates an upload of `bytes`, with the single PUT's checksum when the companion asks.
    pub async fn created_for(&self, name: &str, bytes: &[u8]) -> UploadCreated {
        let checksum = self.checksum.map(|algorithm| algorithm.checksum(bytes));
        self.created_from(json!({"name": name, "size": bytes.len(),
                                 "type": "application/octet-stream", "checksum": checksum}))
            .await
    }

    /// The upload a create request `body` makes, which must be accepted.
    pub async fn created_from(&self, body: Value) -> UploadCreated {
        let response = self
            .http
            .post(self.url("/api/uploads"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "create {body}");
        response.json().await.unwrap()
    }

    pub async fn created(&self, name: &str, size: usize) -> UploadCreated {
        let response = self.create(name, size).await;
        assert_eq!(response.status(), 200, "create {name}");
        response.json().await.unwrap()
    }

    pub async fn sign(&self, created: &UploadCreated, parts: Vec<u32>) -> reqwest::Response {
        let id = created.upload_id.as_deref().unwrap();
        self.http
            .post(self.url(&format!("/api/uploads/{id}/sign")))
            .json(&SignParts {
                checksums: vec![],
                token: created.token.clone(),
                parts,
            })
            .send()
            .await
            .unwrap()
    }

    /// Signs `part` alone (with the checksum of `bytes` when the companion asks), PUTs `bytes`
    /// to it with the headers its URL binds, and keeps the checksum for the Complete; returns
    /// its ETag.
    pub async fn put_part(&self, created: &UploadCreated, part: u32, bytes: &[u8]) -> String {
        let checksum = self.checksum.map(|algorithm| algorithm.checksum(bytes));
        let id = created.upload_id.clone().unwrap();
        if let Some(checksum) = &checksum {
            let mut kept = self.part_checksums.lock().unwrap();
            let checksums = kept.entry(id.clone()).or_default();
            checksums.resize(checksums.len().max(part as usize), String::new());
            checksums[part as usize - 1] = checksum.clone();
        }
        let response = self
            .http
            .post(self.url(&format!("/api/uploads/{id}/sign")))
            .json(&SignParts {
                checksums: checksum.into_iter().collect(),
                token: created.token.clone(),
                parts: vec![part],
            })
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "sign part {part}");
        let signed: PartsSigned = response.json().await.unwrap();
        assert_eq!(signed.urls[0].part, part);
        let response = self.put_single(&signed.urls[0].url, bytes.to_vec()).await;
        let etag = response.headers().get("etag").cloned();
        assert_eq!(
            response.status(),
            200,
            "part {part}: {}",
            response.text().await.unwrap()
        );
        etag.unwrap().to_str().unwrap().to_owned()
    }

    /// Signs every part in one call (with its checksum when the companion asks) and PUTs each
    /// with the headers its URL binds; returns the ETags in part order.
    pub async fn put_parts(&self, created: &UploadCreated, bytes: &[u8]) -> Vec<String> {
        let parts: Vec<u32> = (1..=created.part_count).collect();
        let checksums: Vec<String> = match self.checksum {
            Some(algorithm) => bytes
                .chunks(created.part_size as usize)
                .map(|chunk| algorithm.checksum(chunk))
                .collect(),
            None => Vec::new(),
        };
        let id = created.upload_id.clone().unwrap();
        self.part_checksums
            .lock()
            .unwrap()
            .insert(id.clone(), checksums.clone());
        let response = self
            .http
            .post(self.url(&format!("/api/uploads/{id}/sign")))
            .json(&SignParts {
                checksums,
                token: created.token.clone(),
                parts,
            })
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let signed: PartsSigned = response.json().await.unwrap();
        assert_eq!(
            signed.urls.len() as u32,
            created.part_count,
            "one call signs every part"
        );
        let mut etags = Vec::new();
        for (signed, chunk) in signed
            .urls
            .iter()
            .zip(bytes.chunks(created.part_size as usize))
        {
            let mut put = self.http.put(&signed.url.url).body(chunk.to_vec());
            for (name, value) in &signed.url.headers {
                put = put.header(name, value);
            }
            let response = put.send().await.unwrap();
            assert_eq!(
                response.status(),
                200,
                "part {}: {}",
                signed.part,
                response.text().await.unwrap()
            );
            etags.push(response.headers()["etag"].to_str().unwrap().to_owned());
        }
        etags
    }

    pub async fn complete(&self, created: &UploadCreated, etags: &[String]) -> reqwest::Response {
        let id = created.upload_id.as_deref().unwrap();
        let checksums = self.part_checksums.lock().unwrap().get(id).cloned();
        let parts: Vec<Value> = etags
            .iter()
            .zip(1..)
            .map(|(etag, part)| {
                let checksum = checksums
                    .as_ref()
                    .and_then(|checksums| checksums.get(part as usize - 1));
                json!({"part": part, "etag": etag, "checksum": checksum})
            })
            .collect();
        self.http
            .post(self.url(&format!("/api/uploads/{id}/complete")))
            .json(&json!({"token": created.token, "parts": parts}))
            .send()
            .await
            .unwrap()
    }

    pub async fn list_parts(&self, created: &UploadCreated) -> reqwest::Response {
        let id = created.upload_id.as_deref().unwrap();
        self.http
            .get(self.url(&format!("/api/uploads/{id}/parts")))
            .query(&[("token", &created.token)])
            .send()
            .await
            .unwrap()
    }

    pub async fn abort(&self, created: &UploadCreated) -> reqwest::Response {
        let id = created.upload_id.as_deref().unwrap();
        self.http
            .delete(self.url(&format!("/api/uploads/{id}")))
            .query(&[("token", &created.token)])
            .send()
            .await
            .unwrap()
    }

    /// Reads an object back through the companion's redirect to a presigned GET.
    pub async fn read_back(&self, object: &StoredObject) -> Vec<u8> {
        let response = self
            .http
            .get(self.url(&object.location))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {}", object.location);
        response.bytes().await.unwrap().to_vec()
    }
}

/// moto's S3 server on a free loopback port, killed when dropped.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` and waits for the line that says it listens. moto is an independent S3:
/// it checks multipart rules (5 MiB parts unless S3_UPLOAD_PART_MIN_SIZE says otherwise) and CORS,
/// not signatures.
pub fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moto_server is installed (pip install 'moto[server]'); .ci/run installs it");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let ready = lines
        .by_ref()
        .take(50)
        .map_while(Result::ok)
        .any(|line| line.contains("Running on"));
    assert!(ready, "moto_server did not start");
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        child,
    }
}

impl Moto {
    /// Creates `bucket` with the CORS rule browsers need: any origin may PUT and read `ETag`.
    pub async fn create_bucket(&self, bucket: &str) {
        let http = reqwest::Client::new();
        let url = format!("{}/{bucket}", self.endpoint);
        let response = http.put(&url).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.text().await.unwrap()
        );
        let cors = r#"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedMethod>HEAD</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3600</MaxAgeSeconds></CORSRule></CORSConfiguration>"#;
        let response = http
            .put(format!("{url}?cors"))
            .body(cors)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "bucket CORS: {}",
            response.text().await.unwrap()
        );
    }

    /// Companion arguments that point it at this moto server.
    pub fn companion_args(&self, bucket: &str) -> Vec<String> {
        [
            "--s3-endpoint",
            &self.endpoint,
            "--s3-bucket",
            bucket,
            "--s3-path-style",
            "true",
            "--access-key-id",
            "test",
            "--secret-access-key",
            "test",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// Garage on free loopback ports, its data in a temporary folder, killed when dropped. Garage is
/// AGPL: the tests only ever run its binary, nothing links it.
pub struct Garage {
    pub endpoint: String,
    key_id: String,
    secret: String,
    bin: PathBuf,
    config: PathBuf,
    child: Child,
    /// Its config, metadata, data and log; removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The region Garage's S3 API signs for, set in its config.
const GARAGE_REGION: &str = "garage";

/// `N` distinct free loopback ports: all held open together, so none is handed out twice.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners = [(); N].map(|()| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    listeners.map(|listener| listener.local_addr().unwrap().port())
}

/// Starts Garage 2.5 as a one-node cluster with an access key, and waits until its CLI gets
/// answers from it. Garage is a production S3: it checks SigV4 and presigned URLs' expiry, but
/// not S3's 5 MiB minimum part size. The binary is `FERRY_GARAGE_BIN`, or `garage` on the PATH
/// (`cargo xtask test` installs it).
pub fn garage() -> Garage {
    let bin = std::env::var_os("FERRY_GARAGE_BIN").map_or_else(|| "garage".into(), PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let [rpc, s3, admin] = free_ports();
    let config = dir.path().join("garage.toml");
    std::fs::write(
        &config,
        format!(
            r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3}"
s3_region = "{GARAGE_REGION}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
            root = dir.path().display(),
            secret = hex::encode(rand::random::<[u8; 32]>()),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("garage.log")).unwrap();
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .arg("server")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run Garage ({}: {err}): set FERRY_GARAGE_BIN or put `garage` on the PATH; \
                 `cargo xtask test` installs it (cargo install garage --version 2.5.0 --locked \
                 --no-default-features --features sqlite,bundled-libs)",
                bin.display()
            )
        });
    // Owned before the setup, so that a setup that fails still kills the process.
    let mut garage = Garage {
        endpoint: format!("http://127.0.0.1:{s3}"),
        key_id: String::new(),
        secret: String::new(),
        bin,
        config,
        child,
        dir,
    };
    garage.wait_until_it_answers();
    let node = garage.cli(&["node", "id", "-q"]);
    // `node id` prints `<id>@<address>` when it knows the address.
    let node = node.trim().split('@').next().unwrap().to_owned();
    garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
    garage.cli(&["layout", "apply", "--version", "1"]);
    let key = garage.cli(&["key", "create", "ferry-test"]);
    let field = |name: &str| {
        key.lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name:?} in `garage key create`'s answer:\n{key}"))
            .trim()
            .to_owned()
    };
    garage.key_id = field("Key ID:");
    garage.secret = field("Secret key:");
    garage
}

impl Garage {
    /// Runs Garage's CLI against this node; panics with its output and the server's log if it
    /// fails.
    fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "`garage {}` failed: {}{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log(),
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The server's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// Waits until `garage status` gets the node's answer over RPC.
    fn wait_until_it_answers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            // The S3 API starts just after RPC: both must answer.
            let s3 = self.endpoint.trim_start_matches("http://");
            if status.success() && std::net::TcpStream::connect(s3).is_ok() {
                return;
            }
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("Garage stopped ({exit}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "Garage did not answer within 30 s:\n{}",
                self.log()
            );
            // The CLI fails within milliseconds while the node is down: poll, do not spin.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates `bucket`, lets the test key read, write and own it, and sets the CORS rule
    /// browsers need: any origin may PUT, POST, GET, HEAD and DELETE with any header, and read the
    /// ETag and the checksums.
    pub async fn create_bucket(&self, bucket: &str) {
        use rusty_s3::S3Action;
        self.cli(&["bucket", "create", bucket]);
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            &self.key_id,
        ]);
        let target = rusty_s3::Bucket::new(
            self.endpoint.parse().unwrap(),
            rusty_s3::UrlStyle::Path,
            bucket.to_owned(),
            GARAGE_REGION,
        )
        .unwrap();
        let credentials = rusty_s3::Credentials::new(&self.key_id, &self.secret);
        // rusty-s3 has no PutBucketCors: it is CreateBucket's PUT with `cors` in the query.
        let mut action = rusty_s3::actions::CreateBucket::new(&target, &credentials);
        action.query_mut().insert("cors", "");
        let cors = r#"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PUT</AllowedMethod><AllowedMethod>POST</AllowedMethod><AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod><AllowedMethod>DELETE</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><ExposeHeader>x-amz-checksum-crc32c</ExposeHeader><ExposeHeader>x-amz-checksum-crc64nvme</ExposeHeader><ExposeHeader>x-amz-checksum-sha256</ExposeHeader><ExposeHeader>x-amz-checksum-type</ExposeHeader><MaxAgeSeconds>3600</MaxAgeSeconds></CORSRule></CORSConfiguration>"#;
        let response = reqwest::Client::new()
            .put(action.sign(Duration::from_secs(60)))
            .body(cors)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "bucket CORS: {}",
            response.text().await.unwrap()
        );
    }

    /// Companion arguments that point it at this Garage, with the test key.
    pub fn companion_args(&self, bucket: &str) -> Vec<String> {
        [
            "--s3-endpoint",
            &self.endpoint,
            "--s3-bucket",
            bucket,
            "--s3-region",
            GARAGE_REGION,
            "--s3-path-style",
            "true",
            "--access-key-id",
            &self.key_id,
            "--secret-access-key",
            &self.secret,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}
