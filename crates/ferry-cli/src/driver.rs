//! The native driver: the same engine as the browser's, its actions carried out with tokio and
//! reqwest. One task owns the engine; requests run as spawned tasks that send their answers
//! back as closures over the driver, so the engine is only ever touched by its owner.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::answer::failure_from_answer;
use ferry_core::protocol::{
    CompanionConfig, CreateUpload, CreateUploads, PartList, PartsSigned, StoredObject,
    UploadCreated, UploadsCreated, complete_path,
};
use ferry_core::sorted::SortedMap;
use ferry_core::{
    Action, BatchedFile, Call, Claim, Engine, EngineConfig, Event, Failure, FileId, FileSpec,
    Instant, PutTarget, UploadError,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::state::StateFile;

/// How long a JSON call to the companion may take before it counts as lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The slice of a part sent between two progress reports.
const PROGRESS_CHUNK: usize = 64 * 1024;
/// Bytes read from each end of a file for its fingerprint.
const FINGERPRINT_EDGE: u64 = 64 * 1024;
/// Fingerprints start with this, so a record is never looked up by another kind of name.
const FINGERPRINT_PREFIX: &str = "ferry-cli-1:";

pub fn now() -> Instant {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Instant::from_unix_millis(since.as_millis() as u64)
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk, read a part at a time.
    Path(PathBuf),
    /// Bytes made up from a seed, for load tests: nothing to read, nothing to resume.
    Generated { seed: u64 },
}

impl Source {
    async fn read(&self, range: Range<u64>) -> std::io::Result<Vec<u8>> {
        match self {
            Source::Path(path) => {
                let mut file = tokio::fs::File::open(path).await?;
                file.seek(std::io::SeekFrom::Start(range.start)).await?;
                let mut bytes = vec![0; (range.end - range.start) as usize];
                file.read_exact(&mut bytes).await?;
                Ok(bytes)
            }
            Source::Generated { seed, .. } => Ok(range
                .map(|at| (at.wrapping_mul(2_654_435_761) ^ seed).to_le_bytes()[1])
                .collect()),
        }
    }
}

/// One file to upload.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub name: String,
    pub size: u64,
    pub source: Source,
    pub content_type: String,
    /// Seconds since the epoch, part of the fingerprint.
    pub modified: Option<f64>,
    pub metadata: SortedMap<String, String>,
}

/// What the driver tells its caller as uploads go.
#[derive(Debug)]
pub enum Report {
    Part { file: FileId, part: u32 },
    Resumed { file: FileId, parts_kept: u32 },
    Waiting { file: FileId, waiting: bool },
    Done { file: FileId, object: StoredObject },
    Failed { file: FileId, error: UploadError },
}

/// Latency and status of every companion and store request, by route, for `ferry load`.
#[derive(Debug, Default)]
pub struct RouteLog {
    pub routes: Mutex<BTreeMap<&'static str, RouteRecord>>,
}

#[derive(Debug, Default, Clone)]
pub struct RouteRecord {
    pub latencies: Vec<Duration>,
    /// Answers by status; 0 is no answer at all.
    pub statuses: BTreeMap<u16, u64>,
}

impl RouteLog {
    fn record(&self, route: &'static str, elapsed: Duration, status: u16) {
        let mut routes = self.routes.lock().expect("never poisoned");
        let record = routes.entry(route).or_default();
        record.latencies.push(elapsed);
        *record.statuses.entry(status).or_default() += 1;
    }
}

/// How the driver reaches the companion.
#[derive(Clone)]
pub struct Connection {
    pub endpoint: url::Url,
    pub headers: reqwest::header::HeaderMap,
    pub http: reqwest::Client,
    pub log: Option<Arc<RouteLog>>,
}

impl Connection {
    pub fn new(endpoint: url::Url, headers: reqwest::header::HeaderMap) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .expect("a client without custom TLS builds");
        Self {
            endpoint,
            headers,
            http,
            log: None,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.as_str().trim_end_matches('/'))
    }

    /// A JSON call to the companion; a non-2xx answer is a [`Failure`] with its code.
    async fn call<T: DeserializeOwned>(
        &self,
        route: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, Failure> {
        let mut request = self
            .http
            .request(method.clone(), self.url(path))
            .headers(self.headers.clone())
            .timeout(CALL_TIMEOUT);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let started = std::time::Instant::now();
        let answer = read_answer(request.send().await).await;
        if let Some(log) = &self.log {
            let status = answer
                .as_ref()
                .map_or_else(|f| f.status.unwrap_or(0), |(s, _)| *s);
            log.record(route, started.elapsed(), status);
        }
        let (status, text) = answer?;
        // An empty answer (204) reads as JSON null.
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|err| Failure {
            status: Some(status),
            code: "BadAnswer".into(),
            message: format!("the companion's answer to {method} {path} could not be read: {err}"),
            retry_after: None,
        })
    }
}

/// The status and body of a 2xx answer, or the failure it is.
async fn read_answer(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<(u16, String), Failure> {
    let response = sent.map_err(|err| Failure::network(error_chain(&err)))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let text = response
        .text()
        .await
        .map_err(|err| Failure::network(error_chain(&err)))?;
    if (200..300).contains(&status) {
        Ok((status, text))
    } else {
        Err(failure_from_answer(status, &text, retry_after))
    }
}

/// An error with its causes: reqwest's own message rarely says what went wrong underneath.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

type Answer = Box<dyn FnOnce(&mut Driver) + Send>;

/// The engine and everything its actions need.
pub struct Driver {
    engine: Engine,
    connection: Connection,
    transfers: HashMap<FileId, Transfer>,
    /// Each upload's fingerprint, once known (only fingerprints of bytes name a record).
    keys: HashMap<FileId, String>,
    /// Each running PUT's request number and task: an answer of a PUT the engine stopped (and
    /// may have started again) is not the current one's.
    running: HashMap<(FileId, u32), (u64, tokio::task::AbortHandle)>,
    next_request: u64,
    state: Option<StateFile>,
    answers: mpsc::UnboundedSender<Answer>,
    inbox: mpsc::UnboundedReceiver<Answer>,
    /// Adds that have not ended yet.
    unsettled: usize,
    /// Parts stored since the last report.
    parts_done: Vec<(FileId, u32)>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        for (_, running) in self.running.values() {
            running.abort();
        }
    }
}

impl Driver {
    pub fn new(config: EngineConfig, connection: Connection, state: Option<StateFile>) -> Self {
        let (answers, inbox) = mpsc::unbounded_channel();
        Self {
            engine: Engine::new(config),
            connection,
            transfers: HashMap::new(),
            keys: HashMap::new(),
            running: HashMap::new(),
            next_request: 0,
            state,
            answers,
            inbox,
            unsettled: 0,
            parts_done: Vec::new(),
        }
    }

    pub fn add(&mut self, transfer: Transfer) -> FileId {
        let file = self.engine.add(FileSpec {
            size: transfer.size,
            content_type: transfer.content_type.clone(),
            priority: 0,
        });
        self.transfers.insert(file, transfer);
        self.unsettled += 1;
        file
    }

    /// Runs until every add has ended, telling `report` as it goes and `tick` every
    /// `tick_every` (for progress bars).
    pub async fn run(
        &mut self,
        mut report: impl FnMut(&Engine, Report),
        tick_every: Duration,
        mut tick: impl FnMut(&Engine),
    ) {
        let mut ticks = tokio::time::interval(tick_every);
        loop {
            while let Some(action) = self.engine.poll_action(now()) {
                self.execute(action);
            }
            while let Some(event) = self.engine.poll_event() {
                if let Some(told) = self.settle(event) {
                    report(&self.engine, told);
                }
            }
            if self.unsettled == 0 {
                tick(&self.engine);
                return;
            }
            let deadline = self
                .engine
                .poll_timeout()
                .map(|at| tokio::time::Instant::now() + at.saturating_since(now()));
            tokio::select! {
                Some(answer) = self.inbox.recv() => {
                    answer(self);
                    // Everything that arrived with it, before acting on any.
                    while let Ok(answer) = self.inbox.try_recv() {
                        answer(self);
                    }
                }
                () = sleep_until(deadline) => self.engine.handle_timeout(now()),
                _ = ticks.tick() => tick(&self.engine),
            }
            for (file, part) in std::mem::take(&mut self.parts_done) {
                report(&self.engine, Report::Part { file, part });
            }
        }
    }

    fn settle(&mut self, event: Event) -> Option<Report> {
        let (file, ended) = match event {
            Event::Done { file, object } => (file, Report::Done { file, object }),
            Event::Failed { file, error } => (file, Report::Failed { file, error }),
            Event::Resumed { file, parts_kept } => {
                return Some(Report::Resumed { file, parts_kept });
            }
            Event::Waiting { file, waiting } => return Some(Report::Waiting { file, waiting }),
            Event::Joined { .. } => return None,
        };
        self.unsettled -= 1;
        if self.engine.handles(file).is_empty()
            && let Some(key) = self.keys.remove(&file)
            && let Some(state) = &mut self.state
        {
            // A stored or refused upload has nothing to resume; a failed one keeps its record,
            // and the next run continues it.
            let keep = matches!(
                &ended,
                Report::Failed { error, .. } if !matches!(error, UploadError::Cancelled)
            );
            if !keep {
                state.remove(&key);
            }
        }
        Some(ended)
    }

    /// Sends `answer` back to the driver's loop when `work` finishes.
    fn spawn<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
        answer: impl FnOnce(&mut Driver, T) + Send + 'static,
    ) -> tokio::task::AbortHandle {
        let answers = self.answers.clone();
        tokio::spawn(async move {
            let value = work.await;
            let _ = answers.send(Box::new(move |driver: &mut Driver| answer(driver, value)));
        })
        .abort_handle()
    }

    /// A companion call for `file`: its answer goes to `feed`, its failure to the engine.
    fn file_call<T: DeserializeOwned + Send + 'static>(
        &self,
        file: FileId,
        call: Call,
        method: reqwest::Method,
        path: String,
        body: Option<String>,
        feed: impl FnOnce(&mut Driver, T) + Send + 'static,
    ) {
        let connection = self.connection.clone();
        let route = route_of(call);
        self.spawn(
            async move { connection.call::<T>(route, method, &path, body).await },
            move |driver, answer| match answer {
                Ok(value) => feed(driver, value),
                Err(failure) => driver.engine.handle_call_failed(file, call, failure, now()),
            },
        );
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::FetchConfig => {
                let connection = self.connection.clone();
                self.spawn(
                    async move {
                        connection
                            .call::<CompanionConfig>(
                                "config",
                                reqwest::Method::GET,
                                "/api/config",
                                None,
                            )
                            .await
                    },
                    |driver, answer| match answer {
                        Ok(config) => driver.engine.handle_config(config, now()),
                        Err(failure) => driver.engine.handle_config_failed(failure, now()),
                    },
                );
            }
            Action::Fingerprint { file, resumable } => {
                let Some(transfer) = self.transfers.get(&file).cloned() else {
                    return self.engine.cancel(file);
                };
                let Source::Path(_) = &transfer.source else {
                    return self.engine.handle_fingerprinted(file, None, now());
                };
                if !resumable {
                    return self.engine.handle_fingerprinted(file, None, now());
                }
                self.spawn(fingerprint(transfer), move |driver, key| {
                    if let Some(key) = &key {
                        driver.keys.insert(file, key.clone());
                    }
                    driver.engine.handle_fingerprinted(file, key, now());
                });
            }
            Action::Claim { file, key } => {
                let record = self
                    .state
                    .as_ref()
                    .filter(|_| key.starts_with(FINGERPRINT_PREFIX))
                    .and_then(|state| state.snapshot(&key, now()));
                let claim = record.map_or(Claim::Fresh, Claim::Resume);
                self.engine.handle_claimed(file, claim, now());
            }
            Action::Hash {
                file,
                algorithm,
                parts,
            } => {
                let Some(transfer) = self.transfer_of(file) else {
                    return self.engine.cancel(file);
                };
                let source = transfer.source.clone();
                let hashes = async move {
                    let mut values = Vec::with_capacity(parts.len());
                    // One part in memory at a time, as for its PUT.
                    for (_, range) in parts {
                        let bytes = source.read(range).await?;
                        values.push(algorithm.checksum(&bytes));
                    }
                    Ok::<_, std::io::Error>(values)
                };
                self.spawn(hashes, move |driver, values| match values {
                    Ok(values) => driver.engine.handle_hashed(file, values, now()),
                    Err(err) => {
                        let message = format!("cannot read the file: {err}");
                        driver.engine.handle_hash_failed(file, message, now());
                    }
                });
            }
            Action::Create { file, checksum } => {
                let Some(request) = self.create_request(file, checksum) else {
                    return self.engine.cancel(file);
                };
                let body = serde_json::to_string(&request).ok();
                self.file_call(
                    file,
                    Call::Create,
                    reqwest::Method::POST,
                    "/api/uploads".into(),
                    body,
                    move |driver, created: UploadCreated| {
                        driver.engine.handle_created(file, created, now());
                        driver.save_record(file);
                    },
                );
            }
            Action::CreateBatch { files } => {
                let mut batched = Vec::with_capacity(files.len());
                let mut requests = Vec::with_capacity(files.len());
                for BatchedFile { file, checksum } in files {
                    match self.create_request(file, checksum) {
                        Some(request) => {
                            batched.push(file);
                            requests.push(request);
                        }
                        None => self.engine.cancel(file),
                    }
                }
                if batched.is_empty() {
                    return;
                }
                let body = serde_json::to_string(&CreateUploads { files: requests }).ok();
                let connection = self.connection.clone();
                let call = async move {
                    connection
                        .call::<UploadsCreated>(
                            BATCH_ROUTE,
                            reqwest::Method::POST,
                            "/api/uploads/batch",
                            body,
                        )
                        .await
                };
                self.spawn(call, move |driver, answer| {
                    driver.engine.handle_batch_answered(&batched, answer, now());
                });
            }
            Action::ListParts {
                file,
                upload_id,
                token,
            } => {
                let token: String =
                    url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
                self.file_call(
                    file,
                    Call::ListParts,
                    reqwest::Method::GET,
                    format!("/api/uploads/{upload_id}/parts?token={token}"),
                    None,
                    move |driver, list: PartList| {
                        driver.engine.handle_listed(file, list.parts, now());
                    },
                );
            }
            Action::Sign {
                file,
                upload_id,
                request,
            } => {
                let body = serde_json::to_string(&request).ok();
                self.file_call(
                    file,
                    Call::Sign,
                    reqwest::Method::POST,
                    format!("/api/uploads/{upload_id}/sign"),
                    body,
                    move |driver, signed: PartsSigned| {
                        driver.engine.handle_signed(file, signed.urls, now());
                    },
                );
            }
            Action::Put {
                file,
                part,
                range,
                target,
            } => self.start_put(file, part, range, target),
            Action::Complete {
                file,
                upload_id,
                request,
            } => {
                let body = serde_json::to_string(&request).ok();
                self.file_call(
                    file,
                    Call::Complete,
                    reqwest::Method::POST,
                    complete_path(upload_id.as_deref()),
                    body,
                    move |driver, object: StoredObject| {
                        driver.engine.handle_completed(file, object, now());
                    },
                );
            }
            Action::StopPuts { file, parts } => {
                for part in parts {
                    if let Some((_, running)) = self.running.remove(&(file, part)) {
                        running.abort();
                    }
                }
            }
            Action::Abort {
                upload_id, token, ..
            } => {
                // Tried once: what it leaves, the companion's janitor sweeps.
                let connection = self.connection.clone();
                let token: String =
                    url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
                tokio::spawn(async move {
                    let path = format!("/api/uploads/{upload_id}?token={token}");
                    let _ = connection
                        .call::<()>("abort", reqwest::Method::DELETE, &path, None)
                        .await;
                });
            }
        }
    }

    /// The transfer of `file`'s upload (an add that joined another's goes with the first's).
    /// What the companion is asked to create for `file` (with a single PUT's `checksum`).
    /// `None`: the file is gone.
    fn create_request(&self, file: FileId, checksum: Option<String>) -> Option<CreateUpload> {
        let transfer = self.transfer_of(file)?;
        Some(CreateUpload {
            checksum,
            name: transfer.name.clone(),
            size: transfer.size,
            content_type: transfer.content_type.clone(),
            last_modified: transfer.modified.map(|secs| secs * 1000.0),
            fingerprint: self.keys.get(&file).cloned(),
            part_size: self.engine.part_size_for(transfer.size),
            metadata: transfer.metadata.clone(),
            // A form saves a browser its preflight; a native client has none to save.
            form: false,
        })
    }

    fn transfer_of(&self, file: FileId) -> Option<&Transfer> {
        std::iter::once(&file)
            .chain(self.engine.handles(file))
            .find_map(|handle| self.transfers.get(handle))
    }

    fn start_put(&mut self, file: FileId, part: u32, range: Range<u64>, target: PutTarget) {
        let Some(transfer) = self.transfer_of(file) else {
            let failure = Failure::network("the file is no longer held");
            return self.engine.handle_put_failed(file, part, failure, now());
        };
        let source = transfer.source.clone();
        let connection = self.connection.clone();
        let answers = self.answers.clone();
        let number = self.next_request;
        self.next_request += 1;
        let put = async move {
            let bytes = source.read(range).await.map_err(|err| {
                // The file went away or shrank: no retry can help, so it is a refusal (a 4xx)
                // rather than a network failure, which would be waited out for ever.
                Failure {
                    status: Some(400),
                    code: "FileUnreadable".into(),
                    message: format!("cannot read the file: {err}"),
                    retry_after: None,
                }
            })?;
            put_part(&connection, (file, part, number), bytes, target, answers).await
        };
        let handle = self.spawn(put, move |driver, result: Result<String, Failure>| {
            if !driver.is_current(file, part, number) {
                // Stopped on the engine's word: it already put the part back in line.
                return;
            }
            driver.running.remove(&(file, part));
            match result {
                Ok(etag) => {
                    driver.engine.handle_put_done(file, part, etag, now());
                    driver.parts_done.push((file, part));
                    // A resumed upload keeps only the parts its record saw stored.
                    driver.save_record(file);
                }
                Err(failure) => driver.engine.handle_put_failed(file, part, failure, now()),
            }
        });
        self.running.insert((file, part), (number, handle));
    }

    /// Whether request `number` is the running PUT of the part.
    fn is_current(&self, file: FileId, part: u32, number: u64) -> bool {
        self.running
            .get(&(file, part))
            .is_some_and(|(running, _)| *running == number)
    }

    /// Writes the upload's resume record from the engine's snapshot.
    fn save_record(&mut self, file: FileId) {
        let (Some(key), Some(state)) = (self.keys.get(&file), &mut self.state) else {
            return;
        };
        if let Some(snapshot) = self.engine.snapshot(file) {
            state.save(key, snapshot);
        }
    }
}

/// The route name of batched creates, in `ferry load`'s latency table.
const BATCH_ROUTE: &str = "create batch";

fn route_of(call: Call) -> &'static str {
    match call {
        Call::Create => "create",
        Call::Sign => "sign",
        Call::ListParts => "parts",
        Call::Complete => "complete",
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// PUTs one part, reporting bytes as they go; returns its ETag.
async fn put_part(
    connection: &Connection,
    (file, part, number): (FileId, u32, u64),
    bytes: Vec<u8>,
    target: PutTarget,
    answers: mpsc::UnboundedSender<Answer>,
) -> Result<String, Failure> {
    let length = bytes.len();
    let (url, headers, through_companion) = match target {
        PutTarget::Direct(signed) => (signed.url, signed.headers, false),
        PutTarget::Companion {
            upload_id,
            token,
            checksum,
        } => {
            let token: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
            let path = match upload_id {
                Some(upload_id) => format!("/api/uploads/{upload_id}/parts/{part}?token={token}"),
                None => format!("/api/objects?token={token}"),
            };
            let headers = connection
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.to_string(), value.to_str().ok()?.to_owned()))
                })
                .chain(checksum.map(|(algorithm, value)| (algorithm.header().to_owned(), value)))
                .collect();
            (connection.url(&path), headers, true)
        }
    };
    let bytes = bytes::Bytes::from(bytes);
    let mut sent = 0;
    let chunks = (0..length.div_ceil(PROGRESS_CHUNK).max(1)).map(move |index| {
        let chunk = bytes.slice(
            (index * PROGRESS_CHUNK).min(length)..((index + 1) * PROGRESS_CHUNK).min(length),
        );
        sent += chunk.len();
        let reported = sent as u64;
        let _ = answers.send(Box::new(move |driver: &mut Driver| {
            if driver.is_current(file, part, number) {
                driver
                    .engine
                    .handle_put_progress(file, part, reported, now());
            }
        }));
        Ok::<_, std::io::Error>(chunk)
    });
    let mut request = connection
        .http
        .put(&url)
        .header(reqwest::header::CONTENT_LENGTH, length)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let started = std::time::Instant::now();
    let sent = request.send().await;
    let etag = sent
        .as_ref()
        .ok()
        .and_then(|response| response.headers().get(reqwest::header::ETAG))
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let answer = read_answer(sent).await;
    if let Some(log) = &connection.log {
        let status = answer
            .as_ref()
            .map_or_else(|f| f.status.unwrap_or(0), |(s, _)| *s);
        log.record("put", started.elapsed(), status);
    }
    let (status, text) = answer?;
    let etag = if through_companion {
        #[derive(serde::Deserialize)]
        struct Etag {
            etag: String,
        }
        serde_json::from_str::<Etag>(&text)
            .ok()
            .map(|answer| answer.etag)
    } else {
        etag
    };
    etag.ok_or_else(|| Failure {
        status: Some(status),
        code: "NoEtag".into(),
        message: "the store answered without an ETag".into(),
        retry_after: None,
    })
}

/// A name for the file's bytes that holds across runs: its name, size and modification time,
/// and a SHA-256 of its first and last 64 KiB. `None` when it cannot be read.
async fn fingerprint(transfer: Transfer) -> Option<String> {
    let size = transfer.size;
    let head = transfer
        .source
        .read(0..size.min(FINGERPRINT_EDGE))
        .await
        .ok()?;
    let tail = transfer
        .source
        .read(size.saturating_sub(FINGERPRINT_EDGE)..size)
        .await
        .ok()?;
    // Its place too: two files of one name, size and time in different folders are two files.
    let place = match &transfer.source {
        Source::Path(path) => tokio::fs::canonicalize(path).await.ok(),
        Source::Generated { .. } => None,
    };
    let mut hash = Sha256::new();
    hash.update(
        format!(
            "{}\n{size}\n{:?}\n{place:?}\n",
            transfer.name, transfer.modified
        )
        .as_bytes(),
    );
    hash.update(&head);
    hash.update(&tail);
    Some(format!(
        "{FINGERPRINT_PREFIX}{}",
        hex::encode(hash.finalize())
    ))
}
