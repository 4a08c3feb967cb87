//! Processing after upload, through real HTTP: the embedded store, the companion, a webhook
//! receiver on loopback, and ffmpeg where a test needs it. The webhook is the event each test
//! waits on: it arrives once a job is processed, with what was made or why nothing was.

mod common;

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{RunningCompanion, companion, pattern};
use ferry_core::protocol::StoredObject;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

const SECRET: &str = "webhook-secret";

/// One webhook call as the receiver saw it.
#[derive(Debug)]
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
    /// When the backend took the call.
    at: std::time::Instant,
}

impl Delivery {
    fn notice(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks `Ferry-Signature` against the body, with HMAC computed here, not by the companion.
    fn assert_signed(&self) {
        let header = self.headers["ferry-signature"].to_str().unwrap();
        let (timestamp, signature) = header
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",v1="))
            .unwrap_or_else(|| panic!("signature header {header:?}"));
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&self.body);
        mac.verify_slice(&hex::decode(signature).unwrap())
            .expect("the signature is the body's HMAC");
    }
}

/// A backend on loopback that records webhook calls, answering `statuses` in turn, then 200.
struct Backend {
    url: String,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

impl Backend {
    async fn start(statuses: &[u16]) -> Self {
        type Shared = (Mutex<VecDeque<u16>>, mpsc::UnboundedSender<Delivery>);
        async fn receive(
            State(shared): State<Arc<Shared>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let status = shared.0.lock().unwrap().pop_front().unwrap_or(200);
            let at = std::time::Instant::now();
            let _ = shared.1.send(Delivery { headers, body, at });
            StatusCode::from_u16(status).unwrap()
        }
        let (sender, deliveries) = mpsc::unbounded_channel();
        let shared: Arc<Shared> =
            Arc::new((Mutex::new(statuses.iter().copied().collect()), sender));
        let app = Router::new()
            .route("/hooks/ferry", axum::routing::post(receive))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/ferry", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, deliveries }
    }

    async fn next(&mut self) -> Delivery {
        tokio::time::timeout(Duration::from_secs(120), self.deliveries.recv())
            .await
            .expect("a webhook call within two minutes")
            .expect("the backend runs")
    }

    fn args(&self) -> Vec<String> {
        ["--webhook-url", &self.url, "--webhook-secret", SECRET]
            .map(str::to_owned)
            .to_vec()
    }
}

async fn start(backend: &Backend, extra: &[&str]) -> RunningCompanion {
    let mut args = backend.args();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    companion(&args).await
}

/// Uploads `bytes` as a client does (a single PUT, or parts) and completes it, a single PUT
/// included, as the companion advertises.
async fn upload(
    companion: &RunningCompanion,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> StoredObject {
    let config: Value = companion
        .http
        .get(companion.url("/api/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["completeSinglePuts"], true, "{config}");
    // A single PUT carries its checksum when the companion asks for one.
    let checksum = companion
        .checksum
        .map(|algorithm| algorithm.checksum(bytes));
    let created = companion
        .created_from(
            json!({"name": name, "size": bytes.len(), "type": content_type,
                             "metadata": {"album": "holidays"}, "checksum": checksum}),
        )
        .await;
    let response = match &created.url {
        Some(url) => {
            let put = companion.put_single(url, bytes.to_vec()).await;
            assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
            companion
                .http
                .post(companion.url("/api/objects/complete"))
                .json(&json!({"token": created.token, "parts": []}))
                .send()
                .await
                .unwrap()
        }
        None => {
            let etags = companion.put_parts(&created, bytes).await;
            companion.complete(&created, &etags).await
        }
    };
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// The preview's bytes, through the companion's redirect; or the refusal's status and code.
async fn preview(
    companion: &RunningCompanion,
    key: &str,
    kind: &str,
) -> Result<Vec<u8>, (u16, String)> {
    let response = companion
        .http
        .get(companion.url(&format!("/api/files/{key}/preview?kind={kind}")))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(response.bytes().await.unwrap().to_vec());
    }
    let body: Value = response.json().await.unwrap();
    Err((status, body["code"].as_str().unwrap_or_default().to_owned()))
}

fn encoded(image: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// An image whose pixels are noise, so it does not compress below `width * height * 3` bytes.
fn noise(width: u32, height: u32) -> image::DynamicImage {
    let pixels = pattern((width * height * 3) as usize, 7);
    image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(width, height, pixels).unwrap())
}

fn dimensions(jpeg: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .expect("the thumbnail is a JPEG");
    (image.width(), image.height())
}

async fn metric(companion: &RunningCompanion, line: &str) -> u64 {
    let text = companion.get_text(&companion.url("/metrics")).await;
    text.lines()
        .find_map(|row| row.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in\n{text}"))
}

#[tokio::test]
async fn a_png_and_a_jpeg_get_thumbnails_and_the_backend_hears_of_each() {
    let mut backend = Backend::start(&[]).await;
    let companion = start(&backend, &["--previews", "true", "--checksum", "crc32c"]).await;

    // A noise PNG over 5 MiB goes in parts; a JPEG in one PUT.
    let png = encoded(noise(1600, 1200), image::ImageFormat::Png);
    assert!(png.len() > 5 * common::MIB, "a multipart upload");
    let jpeg = encoded(noise(400, 900), image::ImageFormat::Jpeg);
    for (name, content_type, bytes, expected) in [
        ("wide.png", "image/png", &png, (320, 240)),
        ("tall.jpg", "image/jpeg", &jpeg, (142, 320)),
    ] {
        let object = upload(&companion, name, content_type, bytes).await;
        let delivery = backend.next().await;
        delivery.assert_signed();
        let notice = delivery.notice();
        assert_eq!(notice["event"], "upload.completed");
        assert_eq!(notice["key"], object.key.as_str());
        assert_eq!(notice["size"], bytes.len());
        assert_eq!(notice["etag"], object.etag.as_str());
        assert_eq!(notice["owner"], "anonymous");
        assert_eq!(notice["contentType"], content_type);
        assert_eq!(notice["metadata"], json!({"album": "holidays"}));
        // The object's checksum as the store states it, as the complete answer gave it.
        assert_eq!(notice["checksum"], json!(object.checksum), "{notice}");
        assert_eq!(notice["checksum"]["algorithm"], "crc32c", "{notice}");
        assert_eq!(notice["checksum"]["type"], "FULL_OBJECT", "{notice}");
        assert_eq!(
            notice["previews"],
            json!({"thumbnail": format!("{}.thumbnail.jpg", object.key),
                   "animation": null, "skipped": null, "failed": null})
        );
        assert_eq!(
            delivery.headers["ferry-delivery"].to_str().unwrap(),
            notice["id"].as_str().unwrap()
        );
        let thumbnail = preview(&companion, &object.key, "thumbnail").await.unwrap();
        assert_eq!(
            dimensions(&thumbnail),
            expected,
            "{name}: the aspect is kept"
        );
        assert_eq!(
            preview(&companion, &object.key, "animation").await,
            Err((404, "NoPreview".into())),
            "images get no animation"
        );
    }
    assert_eq!(
        metric(&companion, "ferry_processing_jobs_total{outcome=\"done\"}").await,
        2
    );
    assert_eq!(metric(&companion, "ferry_processing_queue_depth").await, 0);
}

#[tokio::test]
async fn the_preview_route_checks_its_key_and_kind() {
    let backend = Backend::start(&[]).await;
    let companion = start(&backend, &["--previews", "true"]).await;
    let object = upload(
        &companion,
        "a.bin",
        "application/octet-stream",
        b"not an image",
    )
    .await;
    assert_eq!(
        preview(&companion, &object.key, "thumbnail").await,
        Err((404, "NoPreview".into()))
    );
    assert_eq!(
        preview(&companion, &object.key, "../../secret").await,
        Err((400, "BadRequest".into()))
    );
    for path in [
        format!("/api/files/{}/preview/preview", object.key),
        "/api/files/uploads/anonymous/preview".to_owned(),
        format!("/api/files/{}%2Fpreview", object.key),
    ] {
        let (status, body) = companion.raw("GET", &path, &[]).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("BadKey"), "{path}: {body}");
    }
}

#[tokio::test]
async fn the_webhook_is_signed_and_retried_after_a_500() {
    let mut backend = Backend::start(&[500]).await;
    // The webhook alone: no previews are made.
    let companion = start(&backend, &[]).await;
    let object = upload(&companion, "notes.txt", "text/plain", b"hello").await;
    let first = backend.next().await;
    let second = backend.next().await;
    for delivery in [&first, &second] {
        delivery.assert_signed();
    }
    assert_eq!(first.body, second.body, "a retry sends the same notice");
    assert_eq!(
        first.headers["ferry-delivery"],
        second.headers["ferry-delivery"]
    );
    let notice = second.notice();
    assert_eq!(notice["key"], object.key.as_str());
    assert_eq!(notice["previews"]["thumbnail"], Value::Null);
    let delivered = "ferry_webhook_deliveries_total{outcome=\"delivered\"}";
    assert_eq!(metric(&companion, delivered).await, 1);
    let retried = "ferry_webhook_deliveries_total{outcome=\"retried\"}";
    assert_eq!(metric(&companion, retried).await, 1);
}

/// A backend that keeps failing: the waits double (1 s, then 2 s, each with up to a quarter
/// more), and after the last attempt the notice is given up and counted as failed.
#[tokio::test]
async fn a_webhook_failing_every_attempt_backs_off_doubling_then_gives_up() {
    let mut backend = Backend::start(&[500, 500, 500]).await;
    let companion = start(&backend, &["--webhook-attempts", "3"]).await;
    upload(&companion, "lost.txt", "text/plain", b"nobody hears").await;
    let mut arrivals = Vec::new();
    for _ in 0..3 {
        let delivery = backend.next().await;
        delivery.assert_signed();
        arrivals.push(delivery.at);
    }
    let (first_wait, second_wait) = (arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]);
    // 1 s and 2 s, each with up to a quarter more; the first bounded above too, so a wait that
    // did not double (two 2 s waits) fails.
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(2)).contains(&first_wait),
        "{first_wait:?}"
    );
    assert!(second_wait >= Duration::from_secs(2), "{second_wait:?}");
    let retried = "ferry_webhook_deliveries_total{outcome=\"retried\"}";
    assert_eq!(metric(&companion, retried).await, 2);
    // The third answer reaches the companion after the backend told us of the call.
    let failed = "ferry_webhook_deliveries_total{outcome=\"failed\"}";
    let mut given_up = 0;
    for _ in 0..200 {
        given_up = metric(&companion, failed).await;
        if given_up == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(given_up, 1, "given up after three attempts");
    let delivered = "ferry_webhook_deliveries_total{outcome=\"delivered\"}";
    assert_eq!(metric(&companion, delivered).await, 0);
}

#[tokio::test]
async fn a_webhook_without_a_secret_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    let config = <ferry_companion::Config as clap::Parser>::parse_from([
        "ferry-companion",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--webhook-url",
        "http://127.0.0.1:9/hook",
    ]);
    let message = ferry_companion::build(&config).await.unwrap_err();
    assert!(message.contains("FERRY_WEBHOOK_SECRET"), "{message}");
}

/// A fake ffmpeg that reports it started and then waits until the test releases it: the worker
/// is busy for as long as the test wants, with no timing involved.
struct StuckFfmpeg {
    _dir: tempfile::TempDir,
    path: String,
    started: std::path::PathBuf,
    release: std::path::PathBuf,
}

impl StuckFfmpeg {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let started = dir.path().join("started");
        let release = dir.path().join("release");
        for fifo in [&started, &release] {
            let made = std::process::Command::new("mkfifo")
                .arg(fifo)
                .status()
                .unwrap();
            assert!(made.success());
        }
        let path = dir.path().join("ffmpeg");
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = -version ] && exit 0\necho started > {}\nread line < {}\nexit 1\n",
            started.display(),
            release.display()
        );
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            path: path.to_str().unwrap().to_owned(),
            _dir: dir,
            started,
            release,
        }
    }

    /// Waits until a job is inside ffmpeg.
    async fn wait_started(&self) {
        let started = self.started.clone();
        tokio::task::spawn_blocking(move || std::fs::read_to_string(started).unwrap())
            .await
            .unwrap();
    }

    async fn release(&self) {
        let release = self.release.clone();
        tokio::task::spawn_blocking(move || std::fs::write(release, "go\n").unwrap())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_full_queue_drops_jobs_and_never_fails_an_upload() {
    let ffmpeg = StuckFfmpeg::new();
    let mut backend = Backend::start(&[]).await;
    let companion = start(
        &backend,
        &[
            "--previews",
            "true",
            "--processing-workers",
            "1",
            "--processing-queue",
            "1",
            "--ffmpeg",
            &ffmpeg.path,
        ],
    )
    .await;
    // The one worker is stuck in the first video, the second waits in the queue, and the
    // third finds it full: all three uploads still succeed.
    let first = upload(&companion, "1.mp4", "video/mp4", b"one").await;
    ffmpeg.wait_started().await;
    let second = upload(&companion, "2.mp4", "video/mp4", b"two").await;
    let third = upload(&companion, "3.mp4", "video/mp4", b"three").await;
    assert_eq!(metric(&companion, "ferry_processing_queue_depth").await, 1);
    assert_eq!(
        metric(
            &companion,
            "ferry_processing_jobs_total{outcome=\"dropped\"}"
        )
        .await,
        1
    );

    ffmpeg.release().await;
    let notice = backend.next().await.notice();
    assert_eq!(notice["key"], first.key.as_str());
    assert!(
        notice["previews"]["failed"]
            .as_str()
            .unwrap()
            .contains("ffmpeg cannot read the video"),
        "{notice}"
    );
    ffmpeg.wait_started().await;
    ffmpeg.release().await;
    assert_eq!(backend.next().await.notice()["key"], second.key.as_str());
    assert_eq!(
        metric(
            &companion,
            "ferry_processing_jobs_total{outcome=\"failed\"}"
        )
        .await,
        2
    );
    // The dropped job's object is stored all the same.
    assert_eq!(companion.read_back(&third).await, b"three");
}

#[tokio::test]
async fn without_ffmpeg_a_video_is_skipped_with_a_reason() {
    let mut backend = Backend::start(&[]).await;
    let companion = start(
        &backend,
        &["--previews", "true", "--ffmpeg", "/nonexistent/ffmpeg"],
    )
    .await;
    let object = upload(&companion, "clip.mp4", "video/mp4", b"not read").await;
    let notice = backend.next().await.notice();
    assert_eq!(
        notice["previews"]["skipped"],
        "ffmpeg is not installed (no /nonexistent/ffmpeg to run): videos get no previews"
    );
    assert_eq!(
        preview(&companion, &object.key, "animation").await,
        Err((404, "NoPreview".into()))
    );
    assert_eq!(
        metric(
            &companion,
            "ferry_processing_jobs_total{outcome=\"skipped\"}"
        )
        .await,
        1
    );
}

/// Runs the real ffmpeg, which `cargo xtask test` installs.
fn ffmpeg(args: &[&str]) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg is installed (cargo xtask test installs it with apt)");
    assert!(status.success(), "ffmpeg {args:?}");
}

#[tokio::test]
async fn a_video_gets_a_thumbnail_and_an_animation() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=duration=2:size=640x360:rate=10",
        "-pix_fmt",
        "yuv420p",
        video.to_str().unwrap(),
    ]);
    let mut backend = Backend::start(&[]).await;
    let companion = start(&backend, &["--previews", "true"]).await;
    let object = upload(
        &companion,
        "clip.mp4",
        "video/mp4",
        &std::fs::read(&video).unwrap(),
    )
    .await;
    let notice = backend.next().await.notice();
    assert_eq!(notice["previews"]["failed"], Value::Null, "{notice}");
    assert_eq!(
        notice["previews"]["animation"],
        format!("{}.preview.gif", object.key)
    );
    let thumbnail = preview(&companion, &object.key, "thumbnail").await.unwrap();
    assert_eq!(dimensions(&thumbnail), (320, 180));
    let animation = preview(&companion, &object.key, "animation").await.unwrap();
    let gif = image::codecs::gif::GifDecoder::new(Cursor::new(animation)).unwrap();
    let frames = image::AnimationDecoder::into_frames(gif).count();
    assert!(
        (10..=30).contains(&frames),
        "about 2 s at 10 fps: {frames} frames"
    );
}

/// Hostile uploads: a PNG that claims to be enormous, and an HLS playlist sent as a video that
/// names a file on the companion's machine. Neither is decoded or followed.
#[tokio::test]
async fn a_decompression_bomb_and_a_playlist_posing_as_a_video_make_no_preview() {
    let mut backend = Backend::start(&[]).await;
    let companion = start(&backend, &["--previews", "true"]).await;

    // A valid PNG header of 100,000 x 100,000 pixels and one tiny compressed row.
    let mut bomb = encoded(noise(1, 1), image::ImageFormat::Png);
    let header = 16; // signature (8), IHDR length and type (8)
    bomb[header..header + 4].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[header + 4..header + 8].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc_of(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let object = upload(&companion, "bomb.png", "image/png", &bomb).await;
    let notice = backend.next().await.notice();
    let failed = notice["previews"]["failed"].as_str().unwrap_or_default();
    assert!(failed.starts_with("cannot decode the image"), "{notice}");
    assert_eq!(
        preview(&companion, &object.key, "thumbnail").await,
        Err((404, "NoPreview".into()))
    );

    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "private").unwrap();
    let playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile://{}\n#EXT-X-ENDLIST\n",
        secret.path().display()
    );
    let object = upload(&companion, "clip.mp4", "video/mp4", playlist.as_bytes()).await;
    let notice = backend.next().await.notice();
    let failed = notice["previews"]["failed"].as_str().unwrap_or_default();
    assert!(failed.contains("Format not on whitelist"), "{notice}");
    assert_eq!(
        preview(&companion, &object.key, "animation").await,
        Err((404, "NoPreview".into()))
    );
}

/// PNG's chunk CRC (CRC-32 over the chunk type and data).
fn crc_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A video over the limit is never copied to the companion's disk for ffmpeg.
#[tokio::test]
async fn a_video_over_the_limit_is_skipped_before_it_is_read() {
    let mut backend = Backend::start(&[]).await;
    let companion = start(&backend, &["--previews", "true", "--max-video-size", "10"]).await;
    upload(&companion, "long.mp4", "video/mp4", b"twelve bytes").await;
    let notice = backend.next().await.notice();
    assert_eq!(
        notice["previews"]["skipped"],
        "the video is 12 bytes, over the 10 bytes previews are made of"
    );
}
