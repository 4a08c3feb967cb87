//! Work after an upload lands (seed 004): a bounded queue of jobs and a fixed pool of workers that
//! make previews (a JPEG thumbnail of images; with ffmpeg, a JPEG thumbnail and a short GIF of
//! videos), stored beside the object, then tell the application's backend by a signed webhook.
//!
//! Uploads never wait on it: a full queue drops the job and counts it. Nothing here is kept per
//! upload; past one machine, the store's own event notifications feed an existing queue instead
//! (ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Semaphore, mpsc};
use url::Url;

use crate::store::{ObjectHead, Store};
use ferry_core::checksum::Checksum;

/// Longest an ffmpeg run may take before it is killed.
const FFMPEG_TIME_LIMIT: Duration = Duration::from_secs(120);
/// Seconds of video the animated preview shows.
const ANIMATION_SECONDS: &str = "3";
/// Webhook deliveries waiting for their retries at once; beyond, workers wait (and the queue
/// fills and drops jobs, counted), so a dead backend cannot pile up memory.
const PENDING_DELIVERIES: usize = 256;
/// Most tries of one webhook delivery: past it the waits (doubling from a second) run to hours.
const MAX_ATTEMPTS: u32 = 12;
/// Largest video frame ffmpeg decodes, in pixels (8K is 33 million): bounds its memory.
const MAX_VIDEO_PIXELS: &str = "40000000";
/// Largest image dimension decoded: more is a decompression bomb, not a photo.
const MAX_IMAGE_DIMENSION: u32 = 20_000;
/// Most memory one image decode may take.
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
/// The demuxers ffmpeg may use: video containers only. Playlists (HLS, concat) would make it
/// read other files or URLs named inside an upload.
const VIDEO_FORMATS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,ogg";

/// What the companion does after an upload, as configured.
#[derive(Debug, Clone)]
pub struct ProcessingConfig {
    /// Make previews (otherwise only the webhook, if any, runs).
    pub previews: bool,
    pub workers: usize,
    pub queue: usize,
    /// Longest side of a thumbnail, in pixels.
    pub thumbnail_size: u32,
    /// Largest image decoded for a thumbnail, in bytes.
    pub max_image_bytes: u64,
    /// Largest video copied to a scratch folder for ffmpeg, in bytes.
    pub max_video_bytes: u64,
    /// The ffmpeg binary; videos get no preview without it.
    pub ffmpeg: PathBuf,
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: Url,
    pub secret: String,
    /// Tries before a delivery is given up (and counted failed).
    pub attempts: u32,
    /// Wait before the second try; doubled for each further one.
    pub first_retry: Duration,
}

/// An upload that finished: a job for the workers.
#[derive(Debug, Clone)]
pub struct Finished {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub owner: String,
}

/// Where the previews of the object at `key` are stored.
pub fn thumbnail_key(key: &str) -> String {
    format!("{key}.thumbnail.jpg")
}

pub fn animation_key(key: &str) -> String {
    format!("{key}.preview.gif")
}

/// The webhook's body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// The same for every delivery of one stored object, so a backend can drop repeats.
    pub id: String,
    pub event: &'static str,
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub owner: String,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
    /// The object's checksum as the store states it (`null` when it states none: checksums off,
    /// on a store that adds none of its own): the same `{ algorithm, type, value }` the complete
    /// answer carries.
    pub checksum: Option<Checksum>,
    pub previews: Previews,
}

/// The previews made for one object, or why none were.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Previews {
    pub thumbnail: Option<String>,
    pub animation: Option<String>,
    /// Why the object got no previews (not an image or video, ffmpeg missing, too large, ...).
    pub skipped: Option<String>,
    /// Why making them failed.
    pub failed: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    done: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    delivery_retries: AtomicU64,
    undelivered: AtomicU64,
}

/// The queue and its workers.
#[derive(Debug)]
pub struct Processing {
    jobs: mpsc::Sender<Finished>,
    capacity: usize,
    counters: Arc<Counters>,
}

impl Processing {
    /// Starts the workers on the current tokio runtime.
    pub fn start(config: ProcessingConfig, store: Store) -> Self {
        let capacity = config.queue.max(1);
        let (jobs, receiver) = mpsc::channel(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let counters = Arc::new(Counters::default());
        let worker = Arc::new(Worker {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a client without custom TLS builds"),
            ffmpeg_found: ffmpeg_runs(&config.ffmpeg),
            config,
            store,
            counters: counters.clone(),
            deliveries: Arc::new(Semaphore::new(PENDING_DELIVERIES)),
        });
        for _ in 0..worker.config.workers.max(1) {
            let receiver = receiver.clone();
            let worker = worker.clone();
            tokio::spawn(async move {
                loop {
                    // The lock is held only while waiting for a job, never while working on one.
                    let job = receiver.lock().await.recv().await;
                    let Some(job) = job else { break };
                    worker.process(job).await;
                }
            });
        }
        Self {
            jobs,
            capacity,
            counters,
        }
    }

    /// Queues the job, or drops it (counted) when the queue is full: the upload that finished
    /// never waits or fails for its processing.
    pub fn submit(&self, job: Finished) {
        if let Err(err) = self.jobs.try_send(job) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key = %err.into_inner().key, "processing queue full: job dropped");
        }
    }

    /// Jobs waiting for a worker.
    pub fn depth(&self) -> usize {
        self.capacity - self.jobs.capacity()
    }

    /// The queue's metrics, in Prometheus text.
    pub fn render(&self, out: &mut String) {
        let counters = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP ferry_processing_queue_depth Jobs waiting for a worker."
        );
        let _ = writeln!(out, "# TYPE ferry_processing_queue_depth gauge");
        let _ = writeln!(out, "ferry_processing_queue_depth {}", self.depth());
        let _ = writeln!(
            out,
            "# HELP ferry_processing_jobs_total Jobs after upload, by outcome."
        );
        let _ = writeln!(out, "# TYPE ferry_processing_jobs_total counter");
        for (outcome, counter) in [
            ("done", &counters.done),
            ("skipped", &counters.skipped),
            ("failed", &counters.failed),
            ("dropped", &counters.dropped),
        ] {
            let _ = writeln!(
                out,
                "ferry_processing_jobs_total{{outcome=\"{outcome}\"}} {}",
                load(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ferry_webhook_deliveries_total Webhook calls, by outcome."
        );
        let _ = writeln!(out, "# TYPE ferry_webhook_deliveries_total counter");
        for (outcome, counter) in [
            ("delivered", &counters.delivered),
            ("retried", &counters.delivery_retries),
            ("failed", &counters.undelivered),
        ] {
            let _ = writeln!(
                out,
                "ferry_webhook_deliveries_total{{outcome=\"{outcome}\"}} {}",
                load(counter)
            );
        }
    }
}

#[derive(Debug)]
struct Worker {
    config: ProcessingConfig,
    store: Store,
    http: reqwest::Client,
    ffmpeg_found: bool,
    counters: Arc<Counters>,
    deliveries: Arc<Semaphore>,
}

/// What the object is, as far as previews go.
enum Kind {
    Image,
    Video,
    Other,
}

fn kind_of(content_type: &str) -> Kind {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    match essence.to_ascii_lowercase().as_str() {
        "image/png" | "image/jpeg" | "image/jpg" | "image/gif" | "image/webp" => Kind::Image,
        video if video.starts_with("video/") => Kind::Video,
        _ => Kind::Other,
    }
}

impl Worker {
    async fn process(&self, job: Finished) {
        let head = match self.store.head_object(&job.key).await {
            Ok(Some(head)) => head,
            Ok(None) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %job.key, "processing: the object is gone");
                return;
            }
            Err(err) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %job.key, %err, "processing: the store did not answer");
                return;
            }
        };
        let previews = if self.config.previews {
            self.previews(&job.key, &head).await
        } else {
            Previews::default()
        };
        let counter = match (&previews.failed, &previews.skipped) {
            (Some(reason), _) => {
                tracing::warn!(key = %job.key, %reason, "processing failed");
                &self.counters.failed
            }
            (None, Some(reason)) => {
                tracing::info!(key = %job.key, %reason, "processing skipped");
                &self.counters.skipped
            }
            (None, None) => &self.counters.done,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(webhook) = &self.config.webhook {
            let notice = Notice {
                id: notice_id(&job.key, &head.etag),
                event: "upload.completed",
                key: job.key,
                size: job.size,
                etag: job.etag,
                owner: job.owner,
                content_type: head.content_type,
                metadata: head.metadata,
                checksum: head.checksum,
                previews,
            };
            // A dead backend must not stall the previews: past the pending deliveries, the
            // notice is given up and counted.
            let Ok(permit) = self.deliveries.clone().try_acquire_owned() else {
                self.counters.undelivered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %notice.key, "too many webhook deliveries pending: notice dropped");
                return;
            };
            let delivery = Delivery {
                http: self.http.clone(),
                webhook: webhook.clone(),
                counters: self.counters.clone(),
            };
            tokio::spawn(async move {
                delivery.send(&notice).await;
                drop(permit);
            });
        }
    }

    async fn previews(&self, key: &str, head: &ObjectHead) -> Previews {
        match kind_of(&head.content_type) {
            Kind::Other => Previews {
                skipped: Some(format!("no previews for {:?}", head.content_type)),
                ..Previews::default()
            },
            Kind::Image if head.size > self.config.max_image_bytes => Previews {
                skipped: Some(format!(
                    "the image is {} bytes, over the {} bytes thumbnails are made of",
                    head.size, self.config.max_image_bytes
                )),
                ..Previews::default()
            },
            Kind::Image => match self.image_thumbnail(key).await {
                Ok(thumbnail) => Previews {
                    thumbnail: Some(thumbnail),
                    ..Previews::default()
                },
                Err(reason) => Previews {
                    failed: Some(reason),
                    ..Previews::default()
                },
            },
            Kind::Video if head.size > self.config.max_video_bytes => Previews {
                skipped: Some(format!(
                    "the video is {} bytes, over the {} bytes previews are made of",
                    head.size, self.config.max_video_bytes
                )),
                ..Previews::default()
            },
            Kind::Video if !self.ffmpeg_found => Previews {
                skipped: Some(format!(
                    "ffmpeg is not installed (no {} to run): videos get no previews",
                    self.config.ffmpeg.display()
                )),
                ..Previews::default()
            },
            Kind::Video => match self.video_previews(key).await {
                Ok((thumbnail, animation)) => Previews {
                    thumbnail: Some(thumbnail),
                    animation: Some(animation),
                    ..Previews::default()
                },
                Err(reason) => Previews {
                    failed: Some(reason),
                    ..Previews::default()
                },
            },
        }
    }

    async fn image_thumbnail(&self, key: &str) -> Result<String, String> {
        let bytes = self
            .store
            .get_object(key, self.config.max_image_bytes)
            .await
            .map_err(|err| format!("cannot read the image: {err}"))?;
        let size = self.config.thumbnail_size;
        let jpeg = tokio::task::spawn_blocking(move || thumbnail(&bytes, size))
            .await
            .map_err(|err| format!("the thumbnail task died: {err}"))??;
        let thumbnail = thumbnail_key(key);
        self.store
            .put_object(&thumbnail, jpeg.into(), "image/jpeg")
            .await
            .map_err(|err| format!("cannot store the thumbnail: {err}"))?;
        Ok(thumbnail)
    }

    async fn video_previews(&self, key: &str) -> Result<(String, String), String> {
        let folder = tempfile::tempdir().map_err(|err| format!("no scratch folder: {err}"))?;
        let input = folder.path().join("input");
        self.store
            .download(key, &input)
            .await
            .map_err(|err| format!("cannot read the video: {err}"))?;
        let scale = format!(
            "scale='min({size},iw)':'min({size},ih)':force_original_aspect_ratio=decrease",
            size = self.config.thumbnail_size
        );
        let still = folder.path().join("thumbnail.jpg");
        let animation = folder.path().join("preview.gif");
        self.ffmpeg(&input, &["-frames:v", "1", "-vf", &scale], &still)
            .await?;
        let moving = format!("fps=10,{scale}");
        self.ffmpeg(
            &input,
            &["-t", ANIMATION_SECONDS, "-vf", &moving],
            &animation,
        )
        .await?;
        let mut stored = Vec::new();
        for (path, name, content_type) in [
            (&still, thumbnail_key(key), "image/jpeg"),
            (&animation, animation_key(key), "image/gif"),
        ] {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|err| format!("ffmpeg wrote no {}: {err}", path.display()))?;
            self.store
                .put_object(&name, bytes.into(), content_type)
                .await
                .map_err(|err| format!("cannot store {name}: {err}"))?;
            stored.push(name);
        }
        let animation = stored.pop().expect("two previews");
        let thumbnail = stored.pop().expect("two previews");
        Ok((thumbnail, animation))
    }

    /// Runs ffmpeg on a local file only, with video demuxers only, for a bounded time.
    async fn ffmpeg(&self, input: &Path, options: &[&str], output: &Path) -> Result<(), String> {
        let mut command = tokio::process::Command::new(&self.config.ffmpeg);
        command
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args([
                "-protocol_whitelist",
                "file",
                "-format_whitelist",
                VIDEO_FORMATS,
            ])
            .args(["-max_pixels", MAX_VIDEO_PIXELS])
            .arg("-i")
            .arg(input)
            .args(options)
            .arg(output)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let run = tokio::time::timeout(FFMPEG_TIME_LIMIT, command.output()).await;
        match run {
            Err(_) => Err(format!(
                "ffmpeg took over {} s",
                FFMPEG_TIME_LIMIT.as_secs()
            )),
            Ok(Err(err)) => Err(format!("cannot run ffmpeg: {err}")),
            Ok(Ok(done)) if done.status.success() => Ok(()),
            Ok(Ok(done)) => Err(format!(
                "ffmpeg cannot read the video: {}",
                String::from_utf8_lossy(&done.stderr).trim()
            )),
        }
    }
}

/// Whether `ffmpeg` runs at all; checked once at start.
fn ffmpeg_runs(ffmpeg: &Path) -> bool {
    std::process::Command::new(ffmpeg)
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A JPEG of the image at most `size` pixels on its longest side. Dimensions and memory are
/// bounded before decoding, so a small file claiming a huge image is refused, not decoded.
pub fn thumbnail(bytes: &[u8], size: u32) -> Result<Vec<u8>, String> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| format!("cannot read the image: {err}"))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_DIMENSION);
    limits.max_image_height = Some(MAX_IMAGE_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|err| format!("cannot decode the image: {err}"))?;
    let small = image.thumbnail(size, size).into_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&small)
        .map_err(|err| format!("cannot encode the thumbnail: {err}"))?;
    Ok(jpeg)
}

/// One delivery of a notice, with its retries.
struct Delivery {
    http: reqwest::Client,
    webhook: WebhookConfig,
    counters: Arc<Counters>,
}

impl Delivery {
    async fn send(&self, notice: &Notice) {
        let body = serde_json::to_vec(notice).expect("a notice serializes");
        let attempts = self.webhook.attempts.clamp(1, MAX_ATTEMPTS);
        for attempt in 1..=attempts {
            let timestamp = crate::api::unix_now();
            let outcome = self
                .http
                .post(self.webhook.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    "ferry-signature",
                    signature(&self.webhook.secret, timestamp, &body),
                )
                .header("ferry-delivery", &notice.id)
                .body(body.clone())
                .send()
                .await;
            let failure = match outcome {
                Ok(response) if response.status().is_success() => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(response) => format!("answered {}", response.status()),
                Err(err) => err.to_string(),
            };
            tracing::warn!(key = %notice.key, attempt, %failure, "webhook not delivered");
            if attempt < attempts {
                self.counters
                    .delivery_retries
                    .fetch_add(1, Ordering::Relaxed);
                let wait = self.webhook.first_retry * 2u32.pow(attempt - 1);
                // Up to a quarter more, so companions that failed together do not retry together.
                let jitter = wait.mul_f64(rand::random::<f64>() / 4.0);
                tokio::time::sleep(wait + jitter).await;
            }
        }
        self.counters.undelivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the timestamp is signed too, so a
/// backend can refuse old deliveries replayed at it.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

fn notice_id(key: &str, etag: &str) -> String {
    let digest = Sha256::digest(format!("{key}\n{etag}").as_bytes());
    hex::encode(&digest[..16])
}
