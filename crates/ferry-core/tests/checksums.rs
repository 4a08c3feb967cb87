//! Checksums through the engine: parts are hashed before they are signed (batches growing from
//! one part), the Complete carries the object's checksum combined from the parts', a corrupted
//! part is sent again and finally aborted, and a resumed part is kept only if its bytes hash to
//! the store's checksum.

mod common;

use ferry_core::checksum::{ChecksumAlgorithm, ChecksumType};
use ferry_core::plan::{MIB, StoreLimits};
use ferry_core::protocol::{CompanionConfig, StoredObject, StoredPart, UploadCreated};
use ferry_core::{
    Action, Engine, EngineConfig, Event, Failure, FileId, FileSpec, Instant, Plan, RetryPolicy,
    Snapshot, UploadError, UploadMode,
};

const T: Instant = Instant::from_unix_millis(1_800_000_000_000);
const CRC32C: ChecksumAlgorithm = ChecksumAlgorithm::Crc32c;

fn companion(checksum: ChecksumAlgorithm) -> CompanionConfig {
    CompanionConfig {
        checksum: Some(checksum),
        limits: StoreLimits::S3,
        preferred_part_size: 5 * MIB,
        max_file_size: u64::MAX,
        allowed_types: Vec::new(),
        url_lifetime_secs: 900,
        conditional_writes: false,
        complete_single_puts: false,
        previews: false,
        create_batch: 0,
    }
}

fn engine(checksum: ChecksumAlgorithm) -> Engine {
    let config = EngineConfig {
        retry: RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        },
        ..EngineConfig::default()
    };
    common::ready(config, companion(checksum))
}

/// The file's bytes, as a driver reads them.
fn content(size: u64) -> Vec<u8> {
    (0..size).map(|index| (index % 251) as u8).collect()
}

fn created(size: u64) -> UploadCreated {
    let plan = Plan::new(size, 5 * MIB, &StoreLimits::S3).unwrap();
    let single = plan.mode == UploadMode::Single;
    UploadCreated {
        upload_id: (!single).then(|| "u1".to_owned()),
        key: "k".into(),
        token: "t".into(),
        part_size: plan.part_size,
        part_count: plan.part_count,
        mode: plan.mode,
        url: single.then(|| common::url(1, u64::MAX / 1000)),
        expires_at: u64::MAX / 1000,
        location: "/api/files/k".into(),
    }
}

/// Carries out a hash action over `bytes`, as a driver does.
fn hash(engine: &mut Engine, action: &Action, bytes: &[u8]) {
    let Action::Hash {
        file,
        algorithm,
        parts,
    } = action
    else {
        panic!("not a hash: {action:?}")
    };
    let values = parts
        .iter()
        .map(|(_, range)| algorithm.checksum(&bytes[range.start as usize..range.end as usize]))
        .collect();
    engine.handle_hashed(*file, values, T);
}

fn hashed_parts(action: &Action) -> Vec<u32> {
    match action {
        Action::Hash { parts, .. } => parts.iter().map(|(part, _)| *part).collect(),
        _ => Vec::new(),
    }
}

/// A 40 MiB file (eight parts) created; returns it.
fn created_multipart(engine: &mut Engine) -> FileId {
    let file = engine.add(FileSpec {
        size: 40 * MIB,
        ..FileSpec::default()
    });
    assert_eq!(
        common::poll(engine, T),
        Some(Action::Create {
            file,
            checksum: None
        })
    );
    engine.handle_created(file, created(40 * MIB), T);
    file
}

#[test]
fn parts_are_hashed_before_they_are_signed_in_batches_that_grow() {
    let mut engine = engine(CRC32C);
    let bytes = content(40 * MIB);
    let file = created_multipart(&mut engine);
    // Nothing can be signed yet: the first part is hashed alone, so it starts soon.
    let first = common::poll(&mut engine, T).unwrap();
    assert_eq!(hashed_parts(&first), [1]);
    assert_eq!(common::poll(&mut engine, T), None, "no sign before a hash");
    hash(&mut engine, &first, &bytes);
    let mut batches = vec![vec![1]];
    let mut signed = Vec::new();
    while let Some(action) = common::poll(&mut engine, T) {
        match &action {
            Action::Hash { .. } => {
                batches.push(hashed_parts(&action));
                hash(&mut engine, &action, &bytes);
            }
            Action::Sign { request, .. } => {
                assert_eq!(request.checksums.len(), request.parts.len());
                for (part, checksum) in request.parts.iter().zip(&request.checksums) {
                    let range = Plan::with_part_size(40 * MIB, 5 * MIB)
                        .unwrap()
                        .part_range(*part);
                    let expected =
                        CRC32C.checksum(&bytes[range.start as usize..range.end as usize]);
                    assert_eq!(checksum, &expected, "part {part} signed with its checksum");
                }
                signed.extend(request.parts.clone());
                engine.handle_signed(file, common::signed(&request.parts, u64::MAX / 1000), T);
            }
            Action::Put { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(batches, [vec![1], vec![2, 3], vec![4, 5, 6, 7], vec![8]]);
    let mut distinct = signed.clone();
    distinct.dedup();
    assert_eq!(distinct, signed, "no part signed twice");
}

/// What one [`round`] saw.
#[derive(Default)]
struct Round {
    /// PUTs started before any hash or signature asked for in the round was answered.
    started: usize,
    /// Hashes and signatures asked for, answered at the round's end.
    answered: usize,
    completed: bool,
}

/// Polls every action `engine` has now, and answers the hashes and signatures asked for only
/// after: the PUTs it started are those it could start without them.
fn round(engine: &mut Engine, file: FileId, bytes: &[u8], running: &mut Vec<u32>) -> Round {
    let mut asked = Vec::new();
    let mut seen = Round::default();
    while let Some(action) = common::poll(engine, T) {
        match action {
            Action::Put { part, .. } => {
                running.push(part);
                seen.started += 1;
            }
            Action::Hash { .. } | Action::Sign { .. } => asked.push(action),
            Action::Complete { .. } => seen.completed = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    for action in &asked {
        match action {
            Action::Hash { .. } => hash(engine, action, bytes),
            Action::Sign { request, .. } => {
                engine.handle_signed(file, common::signed(&request.parts, u64::MAX / 1000), T)
            }
            _ => unreachable!(),
        }
    }
    seen.answered = asked.len();
    seen
}

/// Rounds until the engine neither starts nor asks anything; returns the PUTs started and the
/// answers given.
fn settle(
    engine: &mut Engine,
    file: FileId,
    bytes: &[u8],
    running: &mut Vec<u32>,
) -> (usize, usize) {
    let (mut started, mut answered) = (0, 0);
    loop {
        let seen = round(engine, file, bytes, running);
        if seen.started == 0 && seen.answered == 0 {
            return (started, answered);
        }
        started += seen.started;
        answered += seen.answered;
    }
}

/// Hashing runs ahead of the slots: once the first parts run, a PUT that ends is followed by
/// the next part's PUT before any hash or signature is answered, while the hashes of later
/// parts go on behind it. Signing two parts a call keeps the window ahead (the running parts
/// and one batch) far shorter than the file, so the hashing happens while parts are sent.
#[test]
fn a_freed_slot_never_waits_for_a_hash() {
    let size = 100 * MIB;
    let parts = 20;
    let config = EngineConfig {
        sign_batch: 2,
        adapt: None,
        ..EngineConfig::default()
    };
    let mut engine = common::ready(config, companion(CRC32C));
    let bytes = content(size);
    let file = engine.add(FileSpec {
        size,
        ..FileSpec::default()
    });
    assert!(matches!(
        common::poll(&mut engine, T),
        Some(Action::Create { .. })
    ));
    engine.handle_created(file, created(size), T);
    let mut running = Vec::new();
    let (mut sent, _) = settle(&mut engine, file, &bytes, &mut running);
    assert_eq!(sent, 3, "a file's cap of PUTs runs: {running:?}");
    let (mut answered_while_sending, mut completed) = (0, false);
    while !running.is_empty() {
        let part = running.remove(0);
        engine.handle_put_done(file, part, format!("\"etag-{part}\""), T);
        let seen = round(&mut engine, file, &bytes, &mut running);
        let next = if sent < parts { 1 } else { 0 };
        assert_eq!(seen.started, next, "as part {part} ends, {sent} sent");
        sent += seen.started;
        let (more, answered) = settle(&mut engine, file, &bytes, &mut running);
        assert_eq!(more, 0, "the slots were full");
        answered_while_sending += seen.answered + answered;
        completed |= seen.completed;
    }
    assert_eq!(sent, parts);
    assert!(
        answered_while_sending >= 10,
        "parts were hashed and signed while others were sent ({answered_while_sending})"
    );
    assert!(completed, "the file completes");
}

/// Runs a file to its Complete with every PUT stored; returns the Complete.
fn run_to_complete(engine: &mut Engine, file: FileId, bytes: &[u8]) -> Action {
    let mut running = Vec::new();
    loop {
        while let Some(action) = common::poll(engine, T) {
            match &action {
                Action::Hash { .. } => hash(engine, &action, bytes),
                Action::Sign { request, .. } => {
                    engine.handle_signed(file, common::signed(&request.parts, u64::MAX / 1000), T)
                }
                Action::Put { part, .. } => running.push(*part),
                Action::Complete { .. } => return action,
                other => panic!("unexpected {other:?}"),
            }
        }
        let part = running
            .pop()
            .expect("a PUT runs while the file is not complete");
        engine.handle_put_done(file, part, format!("\"etag-{part}\""), T);
    }
}

#[test]
fn complete_carries_each_part_checksum_and_the_object_checksum_of_the_whole_file() {
    for algorithm in ChecksumAlgorithm::ALL {
        let mut engine = engine(algorithm);
        let bytes = content(40 * MIB);
        let file = created_multipart(&mut engine);
        let Action::Complete { request, .. } = run_to_complete(&mut engine, file, &bytes) else {
            unreachable!()
        };
        assert!(request.parts.iter().all(|part| part.checksum.is_some()));
        let checksum = request.checksum.expect("the object's checksum");
        assert_eq!(checksum.algorithm, algorithm);
        match algorithm.multipart_type() {
            // The CRC of the whole file, though no byte was read twice.
            ChecksumType::FullObject => assert_eq!(checksum.value, algorithm.checksum(&bytes)),
            ChecksumType::Composite => {
                let digests: Vec<u8> = bytes
                    .chunks(5 * MIB as usize)
                    .flat_map(|part| {
                        ferry_core::checksum::decode(algorithm, &algorithm.checksum(part)).unwrap()
                    })
                    .collect();
                assert_eq!(
                    checksum.value,
                    format!("{}-8", algorithm.checksum(&digests))
                );
            }
        }
        assert_eq!(checksum.kind, algorithm.multipart_type());
    }
}

#[test]
fn a_single_put_is_hashed_before_its_create_which_carries_the_checksum() {
    let mut engine = engine(CRC32C);
    let bytes = content(1000);
    let file = engine.add(FileSpec {
        size: 1000,
        ..FileSpec::default()
    });
    let action = common::poll(&mut engine, T).unwrap();
    assert_eq!(
        action,
        Action::Hash {
            file,
            algorithm: CRC32C,
            parts: vec![(1, 0..1000)]
        }
    );
    assert_eq!(
        common::poll(&mut engine, T),
        None,
        "no create before the hash"
    );
    hash(&mut engine, &action, &bytes);
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::Create {
            file,
            checksum: Some(CRC32C.checksum(&bytes))
        })
    );
    engine.handle_created(file, created(1000), T);
    assert!(matches!(
        common::poll(&mut engine, T),
        Some(Action::Put { part: 1, .. })
    ));
    engine.handle_put_done(file, 1, "\"e\"".into(), T);
    let Some(Event::Done { object, .. }) = engine.poll_event() else {
        panic!("done")
    };
    let checksum = object.checksum.expect("the single PUT's checksum");
    assert_eq!(checksum.value, CRC32C.checksum(&bytes));
    assert_eq!(checksum.kind, ChecksumType::FullObject);
}

fn bad_digest() -> Failure {
    Failure {
        status: Some(400),
        code: "BadDigest".into(),
        message: "The CRC32C you specified did not match the calculated checksum.".into(),
        retry_after: None,
    }
}

#[test]
fn a_part_refused_with_bad_digest_is_sent_again_and_after_the_retries_the_upload_is_aborted() {
    let mut engine = engine(CRC32C);
    let bytes = content(40 * MIB);
    let file = created_multipart(&mut engine);
    let mut now = T;
    let mut sends_of_part_one = 0;
    let mut aborted = false;
    'run: for _ in 0..200 {
        while let Some(action) = common::poll(&mut engine, now) {
            match &action {
                Action::Hash { .. } => hash(&mut engine, &action, &bytes),
                Action::Sign { request, .. } => {
                    engine.handle_signed(file, common::signed(&request.parts, u64::MAX / 1000), now)
                }
                // Part 1's bytes are corrupted on every way to the store.
                Action::Put { part: 1, .. } => {
                    sends_of_part_one += 1;
                    engine.handle_put_failed(file, 1, bad_digest(), now);
                }
                Action::Put { part, .. } => {
                    engine.handle_put_done(file, *part, format!("\"etag-{part}\""), now)
                }
                Action::StopPuts { .. } => {}
                Action::Abort { upload_id, .. } => {
                    assert_eq!(upload_id, "u1");
                    aborted = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if let Some(event) = engine.poll_event() {
            let Event::Failed { error, .. } = event else {
                panic!("{event:?}")
            };
            assert_eq!(error.code(), "BadDigest");
            assert!(matches!(
                error,
                UploadError::Store {
                    part: 1,
                    status: 400,
                    ..
                }
            ));
            break 'run;
        }
        now = engine
            .poll_timeout()
            .unwrap_or_else(|| panic!("a retry is due"));
    }
    assert_eq!(sends_of_part_one, 4, "the first send and three retries");
    assert!(
        aborted,
        "nothing of a file whose bytes never matched stays on the store"
    );
}

fn snapshot(parts: Vec<StoredPart>, checksum: Option<ChecksumAlgorithm>) -> Snapshot {
    Snapshot {
        upload_id: "u1".into(),
        key: "k".into(),
        token: "t".into(),
        location: "/api/files/k".into(),
        part_size: 5 * MIB,
        part_count: 8,
        expires_at: u64::MAX / 1000,
        parts,
        checksum,
    }
}

fn stored(part: u32, bytes: &[u8]) -> StoredPart {
    let range = (part as usize - 1) * 5 * MIB as usize..part as usize * 5 * MIB as usize;
    StoredPart {
        part,
        size: 5 * MIB,
        etag: format!("\"etag-{part}\""),
        checksum: Some(CRC32C.checksum(&bytes[range])),
    }
}

#[test]
fn a_resumed_part_is_kept_only_if_the_local_bytes_hash_to_the_stores_checksum() {
    let mut engine = engine(CRC32C);
    let before = content(40 * MIB);
    // The file was edited in place since: same size, part 2's bytes differ.
    let mut now_bytes = before.clone();
    now_bytes[5 * MIB as usize + 7] ^= 0xff;
    let parts = vec![stored(1, &before), stored(2, &before), stored(3, &before)];
    let spec = FileSpec {
        size: 40 * MIB,
        ..FileSpec::default()
    };
    let file = common::add_resumed(&mut engine, spec, snapshot(parts.clone(), Some(CRC32C)), T);
    assert!(matches!(
        engine.poll_action(T),
        Some(Action::ListParts { .. })
    ));
    // Part 3 is held by the store without a checksum: nothing proves it.
    let mut listed = parts;
    listed[2].checksum = None;
    engine.handle_listed(file, listed, T);
    assert_eq!(
        engine.poll_event(),
        None,
        "nothing is kept before it is proven"
    );
    let verify = engine.poll_action(T).unwrap();
    assert_eq!(
        hashed_parts(&verify),
        [1],
        "the stored parts are hashed first"
    );
    hash(&mut engine, &verify, &now_bytes);
    let verify = engine.poll_action(T).unwrap();
    assert_eq!(hashed_parts(&verify), [2]);
    hash(&mut engine, &verify, &now_bytes);
    assert_eq!(
        engine.poll_event(),
        Some(Event::Resumed {
            file,
            parts_kept: 1
        })
    );
    let Action::Complete { request, .. } = run_to_complete(&mut engine, file, &now_bytes) else {
        unreachable!()
    };
    let etags: Vec<&str> = request
        .parts
        .iter()
        .map(|part| part.etag.as_str())
        .collect();
    assert_eq!(etags[0], "\"etag-1\"", "part 1 kept");
    assert_eq!(request.checksum.unwrap().value, CRC32C.checksum(&now_bytes));
}

#[test]
fn a_resume_record_of_another_algorithm_starts_afresh() {
    let mut engine = engine(CRC32C);
    let bytes = content(40 * MIB);
    let spec = FileSpec {
        size: 40 * MIB,
        ..FileSpec::default()
    };
    let record = snapshot(vec![stored(1, &bytes)], Some(ChecksumAlgorithm::Sha256));
    let file = common::add_resumed(&mut engine, spec, record, T);
    assert!(matches!(
        engine.poll_action(T),
        Some(Action::ListParts { .. })
    ));
    engine.handle_listed(file, vec![stored(1, &bytes)], T);
    assert_eq!(
        engine.poll_action(T),
        Some(Action::Create {
            file,
            checksum: None
        })
    );
}

#[test]
fn a_file_that_cannot_be_read_fails_with_its_reason() {
    let mut engine = engine(CRC32C);
    let file = created_multipart(&mut engine);
    assert!(matches!(
        common::poll(&mut engine, T),
        Some(Action::Hash { .. })
    ));
    engine.handle_hash_failed(file, "NotReadableError: the file changed".into(), T);
    let Some(Event::Failed { error, .. }) = engine.poll_event() else {
        panic!("failed")
    };
    assert_eq!(error.code(), "FileUnreadable");
    assert!(
        !std::iter::from_fn(|| engine.poll_action(T))
            .any(|action| matches!(action, Action::Abort { .. })),
        "its upload is kept for a retry"
    );
}

#[test]
fn the_object_checksum_the_store_reports_is_the_result() {
    let mut engine = engine(CRC32C);
    let bytes = content(40 * MIB);
    let file = created_multipart(&mut engine);
    let Action::Complete { request, .. } = run_to_complete(&mut engine, file, &bytes) else {
        unreachable!()
    };
    let object = StoredObject {
        key: "k".into(),
        etag: "\"x-8\"".into(),
        size: 40 * MIB,
        location: "/api/files/k".into(),
        checksum: request.checksum.clone(),
    };
    engine.handle_completed(file, object.clone(), T);
    assert_eq!(engine.poll_event(), Some(Event::Done { file, object }));
}
