//! Starts real servers on loopback for the HTTP suites: the companion (with the embedded store,
//! or pointed at moto's S3 server) and moto itself.

#![allow(dead_code)] // each test binary uses its own share of these helpers

pub mod cases;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use clap::Parser;
use ferry_companion::Config;
use ferry_core::ChecksumAlgorithm;
use ferry_core::protocol::{PartsSigned, SignParts, SignedUrl, StoredObject, UploadCreated};
use serde_json::{Value, json};

pub const MIB: usize = 1024 * 1024;

/// A companion serving on a loopback port until the test ends.
pub struct RunningCompanion {
    pub base: String,
    pub http: reqwest::Client,
    /// The companion's own state: its store client, for the janitor.
    pub state: std::sync::Arc<ferry_companion::api::AppState>,
    data: tempfile::TempDir,
    /// The moto endpoint and bucket, when the companion uses moto instead of its own store.
    moto: Option<(String, String)>,
    /// The checksum the companion asks for: this client hashes as a browser does.
    pub checksum: Option<ChecksumAlgorithm>,
    /// Each upload's part checksums, as [`Self::put_parts`] sent them, for its Complete.
    part_checksums: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

/// Starts a companion with `args` added to a fresh data folder and a loopback port. Checksums are
/// off unless `args` ask for one (`--checksum`): the suites that attack the routes send raw
/// requests; the checksum suite and the round trips turn them on.
pub async fn companion(args: &[&str]) -> RunningCompanion {
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
    if !args.contains(&"--checksum") {
        argv.extend(["--checksum", "off"]);
    }
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
    RunningCompanion {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        state,
        data,
        moto: arg("--s3-endpoint").zip(arg("--s3-bucket")),
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
        match &self.moto {
            // moto does not check signatures: plain GETs list objects and uploads.
            Some((endpoint, bucket)) => {
                let objects = self.get_text(&format!("{endpoint}/{bucket}")).await;
                let uploads = self.get_text(&format!("{endpoint}/{bucket}?uploads")).await;
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
        self.moto.is_some()
    }

    /// PUTs `bytes` to a presigned single-PUT URL with its signed headers, stating the length
    /// as browsers do, even for an empty body.
    pub async fn put_single(&self, url: &SignedUrl, bytes: Vec<u8>) -> reqwest::Response {
        let mut put = self
            .http
            .put(&url.url)
            .header("content-length", bytes.len())
            .body(bytes);
        for (name, value) in &url.headers {
            put = put.header(name, value);
        }
        put.send().await.unwrap()
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
        let body = json!({"name": name, "size": bytes.len(), "type": "application/octet-stream",
                          "checksum": checksum});
        let response = self
            .http
            .post(self.url("/api/uploads"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "create {name}");
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
