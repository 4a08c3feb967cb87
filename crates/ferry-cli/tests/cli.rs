//! The `ferry` binary against real servers: a companion with the embedded store or moto, started
//! in this process on loopback, and the CLI as its own process (so Ctrl-C is a real SIGINT).

#[path = "../../ferry-companion/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{MIB, RunningCompanion, companion, moto, pattern};
use ferry_core::protocol::StoredObject;
use ferry_core::{ChecksumAlgorithm, ChecksumType};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

fn ferry(companion: &RunningCompanion, state: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .env_remove("FERRY_TOKEN")
        .args(["upload", "--json", "--endpoint", &companion.base])
        .arg("--state")
        .arg(state)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Each JSON line `ferry upload --json` printed.
fn events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

/// Runs `command`, which must succeed, and returns the events it printed.
async fn succeeded(command: &mut tokio::process::Command) -> Vec<Value> {
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    events(&output.stdout)
}

/// The object of the first `done` event.
fn first_stored(events: &[Value]) -> StoredObject {
    serde_json::from_value(of_kind(events, "done")[0].clone()).unwrap()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["event"] == kind)
        .collect()
}

/// A tree of files: sizes on both sides of the single-PUT limit, an empty file, a folder with a
/// subfolder. Returns the paths given to `ferry` and every file with its bytes.
fn tree(dir: &Path) -> (Vec<PathBuf>, Vec<(PathBuf, Vec<u8>)>) {
    let files = [
        ("empty.bin", 0),
        ("one.txt", 1),
        ("twelve.bin", 12 * MIB + 3),
        ("photos/cat.png", 3_000),
        ("photos/2026/trip.mov", 6 * MIB),
    ];
    let mut written = Vec::new();
    for (seed, (name, size)) in files.into_iter().enumerate() {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = pattern(size, seed as u8);
        std::fs::write(&path, &bytes).unwrap();
        written.push((path, bytes));
    }
    let given = ["empty.bin", "one.txt", "twelve.bin", "photos"]
        .map(|name| dir.join(name))
        .to_vec();
    (given, written)
}

/// The CLI is a client as the browser is: it runs with the companion's default checksum on (the
/// shared harness turns checksums off unless asked).
const CHECKSUMS: [&str; 2] = ["--checksum", "crc32c"];

/// The CRC32C of `bytes` as S3 states it, by an implementation apart from Ferry's.
fn crc32c(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

async fn uploads_a_tree_identically(companion: &RunningCompanion) {
    let dir = tempfile::tempdir().unwrap();
    let (given, written) = tree(dir.path());
    let state = dir.path().join("state.json");
    let events = succeeded(ferry(companion, &state).args(&given)).await;
    let done = of_kind(&events, "done");
    assert_eq!(done.len(), written.len(), "{events:?}");
    for (path, bytes) in &written {
        let event = done
            .iter()
            .find(|event| event["path"] == path.display().to_string())
            .unwrap_or_else(|| panic!("{} was not uploaded", path.display()));
        let object: StoredObject = serde_json::from_value((*event).clone()).unwrap();
        assert_eq!(object.size, bytes.len() as u64);
        let checksum = object.checksum.as_ref().expect("the store's checksum");
        assert_eq!(
            (checksum.algorithm, checksum.kind),
            (ChecksumAlgorithm::Crc32c, ChecksumType::FullObject)
        );
        assert_eq!(checksum.value, crc32c(bytes), "{} checksum", path.display());
        assert!(
            object
                .key
                .ends_with(path.file_name().unwrap().to_str().unwrap())
        );
        assert_eq!(
            &companion.read_back(&object).await,
            bytes,
            "{} reads back identical",
            path.display()
        );
    }
    // A file from a folder keeps its place in it.
    let trip = done
        .iter()
        .find(|event| event["path"].as_str().unwrap().ends_with("trip.mov"))
        .unwrap();
    let response = companion
        .http
        .get(companion.url(trip["location"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-amz-meta-path"], "2026/trip.mov");
    assert_eq!(response.headers()["content-type"], "video/quicktime");
    // Nothing is left to resume.
    let state: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(state["uploads"], serde_json::json!({}));
}

#[tokio::test]
async fn files_and_a_folder_upload_through_the_embedded_store() {
    let companion = companion(&CHECKSUMS).await;
    uploads_a_tree_identically(&companion).await;
}

#[tokio::test]
async fn files_and_a_folder_upload_through_moto() {
    let moto = moto();
    moto.create_bucket("ferry-cli").await;
    let mut args = moto.companion_args("ferry-cli");
    args.extend(CHECKSUMS.map(str::to_owned));
    let companion = companion(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    uploads_a_tree_identically(&companion).await;
}

/// Stops a one-slot upload of 200 MiB with `signal` once its first part is stored, checks how it
/// ended with `ended`, then runs the same command again: it resumes, sends only the parts
/// missing, and stores the same bytes.
async fn a_second_run_resumes_after(
    signal: &str,
    ended: impl FnOnce(std::process::ExitStatus, &[Value]),
) {
    let companion = companion(&CHECKSUMS).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.bin");
    let bytes = pattern(200 * MIB, 9);
    std::fs::write(&path, &bytes).unwrap();
    let state = dir.path().join("state.json");
    let parts = 200 / 5;

    let mut first = ferry(&companion, &state)
        .args(["--slots", "1"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if serde_json::from_str::<Value>(&line).unwrap()["event"] == "part" {
            break;
        }
    }
    let signalled = std::process::Command::new("kill")
        .args([signal, &first.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    ended(first.wait().await.unwrap(), &rest);
    assert!(of_kind(&rest, "done").is_empty(), "stopped before the end");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        saved["uploads"].as_object().unwrap().len(),
        1,
        "a record to resume"
    );

    let events = succeeded(ferry(&companion, &state).arg(&path)).await;
    let resumed = of_kind(&events, "resumed");
    assert_eq!(resumed.len(), 1, "{events:?}");
    let kept = resumed[0]["partsKept"].as_u64().unwrap();
    assert!((1..parts).contains(&kept), "kept {kept} of {parts}");
    assert_eq!(
        of_kind(&events, "part").len() as u64,
        parts - kept,
        "only the missing parts are sent again"
    );
    let done = first_stored(&events);
    assert!(
        companion.read_back(&done).await == bytes,
        "identical after resume"
    );
}

#[tokio::test]
async fn ctrl_c_then_a_second_run_resumes_with_the_parts_stored() {
    a_second_run_resumes_after("-INT", |status, rest| {
        assert_eq!(status.code(), Some(130), "Ctrl-C exits 130");
        assert_eq!(of_kind(rest, "interrupted").len(), 1);
    })
    .await;
}

/// A crash gets no chance to write anything more: the state file saved after each part (and
/// the store's list of parts) is all the second run has.
#[tokio::test]
async fn a_crash_then_a_second_run_resumes_with_the_parts_stored() {
    use std::os::unix::process::ExitStatusExt;
    a_second_run_resumes_after("-KILL", |status, rest| {
        assert_eq!(status.signal(), Some(9), "killed");
        assert!(of_kind(rest, "done").is_empty(), "killed before the end");
    })
    .await;
}

#[tokio::test]
async fn bad_arguments_and_missing_files_exit_2_and_refusals_exit_1() {
    let companion = companion(&["--max-file-size", "1000", "--checksum", "crc32c"]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let missing = ferry(&companion, &state)
        .arg(dir.path().join("nope.bin"))
        .output()
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.bin"));
    let empty_folder = dir.path().join("empty");
    std::fs::create_dir(&empty_folder).unwrap();
    let nothing = ferry(&companion, &state)
        .arg(&empty_folder)
        .output()
        .await
        .unwrap();
    assert_eq!(nothing.status.code(), Some(2));
    let bad_header = ferry(&companion, &state)
        .args(["-H", "no colon here"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(bad_header.status.code(), Some(2));

    // One file over the companion's limit fails; the other is stored.
    let small = dir.path().join("small.txt");
    let large = dir.path().join("large.bin");
    std::fs::write(&small, b"fits").unwrap();
    std::fs::write(&large, pattern(2_000, 1)).unwrap();
    let output = ferry(&companion, &state)
        .arg(&small)
        .arg(&large)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let events = events(&output.stdout);
    assert_eq!(of_kind(&events, "done").len(), 1);
    let failed = of_kind(&events, "failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["code"], "TooLarge");

    // Without `--json`, and off a terminal so with no bars: a line per file and the counts.
    let plain = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env_remove("FERRY_TOKEN")
        .args(["upload", "--endpoint", &companion.base, "--state"])
        .arg(&state)
        .arg(&small)
        .arg(&large)
        .output()
        .await
        .unwrap();
    assert_eq!(plain.status.code(), Some(1));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&plain.stdout),
        String::from_utf8_lossy(&plain.stderr),
    );
    assert!(
        stdout.contains(&format!("stored {} as ", small.display())),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("{}: ", large.display())) && stderr.contains("(TooLarge)"),
        "{stderr}"
    );
    assert!(stderr.contains("1 stored, 1 failed, "), "{stderr}");
}

/// A companion that wants credentials: without them every file is refused (exit 1); `--token`,
/// or the same credentials as a `-H` header, reach every call and the objects go under their
/// owner; the part size asked for (with a unit) is the one the parts have.
#[tokio::test]
async fn a_token_or_a_header_authenticates_and_the_part_size_asked_for_is_used() {
    let companion = companion(&["--auth-tokens", "alice-key=alice", "--checksum", "crc32c"]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let large = dir.path().join("twenty.bin");
    let large_bytes = pattern(20 * MIB, 4);
    std::fs::write(&large, &large_bytes).unwrap();
    let small = dir.path().join("note.txt");
    std::fs::write(&small, b"for alice").unwrap();

    let refused = ferry(&companion, &state)
        .arg(&small)
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let failed = events(&refused.stdout);
    assert_eq!(
        of_kind(&failed, "failed")[0]["code"],
        "Unauthorized",
        "{failed:?}"
    );

    let uploaded = succeeded(
        ferry(&companion, &state)
            .args(["--token", "alice-key", "--part-size", "7MiB"])
            .arg(&large),
    )
    .await;
    // The companion's own plan would be four parts of 5 MiB.
    assert_eq!(
        of_kind(&uploaded, "part").len(),
        3,
        "20 MiB in parts of 7 MiB"
    );
    let object = first_stored(&uploaded);
    assert!(object.key.contains("/alice/"), "{}", object.key);
    assert!(companion.read_back(&object).await == large_bytes);

    let uploaded = succeeded(
        ferry(&companion, &state)
            .args(["-H", "Authorization: Bearer alice-key", "--triggers", "1"])
            .arg(&small),
    )
    .await;
    let object = first_stored(&uploaded);
    assert!(object.key.contains("/alice/"), "{}", object.key);
    assert_eq!(companion.read_back(&object).await, b"for alice");
}

/// Files of four 1 KiB parts, so every create, sign and complete reaches the store and holds
/// its admission slot a while; the companion's own threads serve them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_against_a_small_admission_queue_reports_503s_and_no_other_errors() {
    let companion = companion(&[
        "--admission-concurrency",
        "1",
        "--admission-queue",
        "1",
        "--min-part-size",
        "1024",
        "--part-size",
        "1024",
        "--checksum",
        "crc32c",
    ])
    .await;
    let began = std::time::Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "load", "-p", "8", "--files", "2", "--size", "4KiB", "--json",
        ])
        .args(["--endpoint", &companion.base])
        .output()
        .await
        .unwrap();
    let wall_seconds = began.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["files"], 16, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["bytes"], 16 * 4096);
    let seconds = report["seconds"].as_f64().unwrap();
    assert!(
        0.0 < seconds && seconds <= wall_seconds,
        "the run took {seconds} s of the command's {wall_seconds} s"
    );
    let rate = |per_second: &str| report[per_second].as_f64().unwrap() * seconds;
    assert!((rate("filesPerSecond") - 16.0).abs() < 0.01, "{report}");
    assert!(
        (rate("megabytesPerSecond") - 16.0 * 4096.0 / 1e6).abs() < 1e-4,
        "{report}"
    );
    let routes = report["routes"].as_object().unwrap();
    for route in ["config", "create", "sign", "put", "complete"] {
        let figures = &routes[route];
        assert!(
            figures["requests"].as_u64().unwrap() > 0,
            "{route}: {report}"
        );
        let (p50, p99) = (
            figures["p50Ms"].as_f64().unwrap(),
            figures["p99Ms"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99, "{route}: {report}");
        assert!(
            p99 <= seconds * 1e3,
            "{route}: no call outlasts the run: {report}"
        );
    }
    let busy: u64 = routes
        .values()
        .map(|route| route["busy"].as_u64().unwrap())
        .sum();
    assert!(busy > 0, "admission control answered 503: {report}");
    for (route, figures) in routes {
        assert_eq!(
            figures["errors"], 0,
            "{route}: no failures but 503s: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_are_created_many_to_a_call() {
    let companion = companion(&["--checksum", "crc32c"]).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "load", "-p", "1", "--files", "60", "--size", "4KiB", "--json",
        ])
        .args(["--endpoint", &companion.base])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (&report["files"], &report["failed"]),
        (&60.into(), &0.into())
    );
    let routes = report["routes"].as_object().unwrap();
    assert!(
        routes.get("create").is_none(),
        "no file created alone: {report}"
    );
    let batches = routes["create batch"]["requests"].as_u64().unwrap();
    // The first file hashed goes alone; the files hashed meanwhile gather behind it, up to 20.
    assert!(
        (3..=20).contains(&batches),
        "{batches} batch calls: {report}"
    );
}
