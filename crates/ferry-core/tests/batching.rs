//! Files of one part created in batches: one companion call for many files, the next batch made
//! while the last one's PUTs run, and each file failing or retrying on its own.

mod common;

use std::collections::BTreeMap;

use ferry_core::plan::{KIB, MIB, StoreLimits, UploadMode};
use ferry_core::protocol::{
    BatchCreated, BatchRefusal, CompanionConfig, SignedPart, StoredObject, UploadCreated,
    UploadsCreated,
};
use ferry_core::{
    Action, BatchedFile, ChecksumAlgorithm, Engine, EngineConfig, Event, Failure, FileId, FileSpec,
    Instant, Plan, UploadError,
};

const T: Instant = Instant::from_unix_millis(1_000_000);

fn companion(create_batch: u32) -> CompanionConfig {
    CompanionConfig {
        checksum: None,
        limits: StoreLimits::S3,
        preferred_part_size: 5 * MIB,
        max_file_size: u64::MAX,
        allowed_types: Vec::new(),
        url_lifetime_secs: 900,
        conditional_writes: false,
        complete_single_puts: false,
        previews: false,
        create_batch,
    }
}

/// An engine whose companion wants CRC32C: a single PUT is hashed before its create.
fn checksummed_engine() -> Engine {
    let companion = CompanionConfig {
        checksum: Some(ChecksumAlgorithm::Crc32c),
        ..companion(100)
    };
    common::ready(EngineConfig::default(), companion)
}

fn created(file: FileId, size: u64) -> UploadCreated {
    let plan = Plan::new(size, 5 * MIB, &StoreLimits::S3).unwrap();
    let single = plan.mode == UploadMode::Single;
    UploadCreated {
        upload_id: (!single).then(|| format!("upload-{}", file.0)),
        key: format!("key-{}", file.0),
        token: format!("token-{}", file.0),
        part_size: plan.part_size,
        part_count: plan.part_count,
        mode: plan.mode,
        url: single.then(|| common::url(1, u64::MAX / 1000)),
        expires_at: u64::MAX / 1000,
        location: String::new(),
    }
}

fn add(engine: &mut Engine, sizes: &mut BTreeMap<FileId, u64>, size: u64) {
    let file = engine.add(FileSpec {
        size,
        ..FileSpec::default()
    });
    sizes.insert(file, size);
}

/// What one run did: the files of each batch, the files created alone, and the events.
#[derive(Default)]
struct Run {
    batches: Vec<Vec<BatchedFile>>,
    alone: Vec<FileId>,
    events: Vec<Event>,
    peak_live: usize,
}

/// Drives the engine against a companion and store that answer everything at once (a batch
/// through `answer_batch`), finishing the oldest running PUT when nothing else is to do.
fn run(
    engine: &mut Engine,
    sizes: &BTreeMap<FileId, u64>,
    mut answer_batch: impl FnMut(&mut Engine, &[BatchedFile]) -> bool,
) -> Run {
    let mut seen = Run::default();
    let mut running: Vec<(FileId, u32)> = Vec::new();
    let mut now = T;
    loop {
        while let Some(action) = common::poll(engine, now) {
            match action {
                Action::CreateBatch { files } => {
                    if answer_batch(engine, &files) {
                        for batched in &files {
                            let size = sizes[&batched.file];
                            engine.handle_created(batched.file, created(batched.file, size), now);
                        }
                    }
                    seen.batches.push(files);
                }
                Action::Create { file, .. } => {
                    seen.alone.push(file);
                    engine.handle_created(file, created(file, sizes[&file]), now);
                }
                Action::Hash { file, parts, .. } => {
                    let values = parts
                        .iter()
                        .map(|(part, _)| format!("sum-{}-{part}", file.0));
                    engine.handle_hashed(file, values.collect(), now);
                }
                Action::Sign { file, request, .. } => {
                    let parts = request.parts.iter().map(|&part| SignedPart {
                        part,
                        url: common::url(part, u64::MAX / 1000),
                    });
                    engine.handle_signed(file, parts.collect(), now);
                }
                Action::Put { file, part, .. } => running.push((file, part)),
                Action::Complete { file, .. } => engine.handle_completed(
                    file,
                    StoredObject {
                        checksum: None,
                        key: format!("key-{}", file.0),
                        etag: "e".into(),
                        size: sizes[&file],
                        location: String::new(),
                    },
                    now,
                ),
                other => panic!("not expected here: {other:?}"),
            }
            seen.peak_live = seen.peak_live.max(engine.live_files());
        }
        seen.events
            .extend(std::iter::from_fn(|| engine.poll_event()));
        if let Some((file, part)) = (!running.is_empty()).then(|| running.remove(0)) {
            engine.handle_put_done(file, part, format!("etag-{part}"), now);
        } else if let Some(next) = engine.poll_timeout() {
            now = next;
            engine.handle_timeout(now);
        } else {
            break;
        }
    }
    seen
}

fn done(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|event| matches!(event, Event::Done { .. }))
        .count()
}

#[test]
fn small_files_are_created_in_full_batches_made_ahead_of_the_slots() {
    let mut engine = common::ready(EngineConfig::default(), companion(100));
    let mut sizes = BTreeMap::new();
    for _ in 0..110 {
        add(&mut engine, &mut sizes, 64 * KIB);
    }
    let seen = run(&mut engine, &sizes, |_, _| true);
    assert_eq!(done(&seen.events), 110);
    assert!(seen.alone.is_empty(), "{:?} created alone", seen.alone);
    let lengths: Vec<usize> = seen.batches.iter().map(Vec::len).collect();
    // A short batch waits while five created files wait for a slot: only the last is short.
    assert_eq!(lengths, vec![20, 20, 20, 20, 20, 10]);
    assert!(seen.peak_live <= 40, "{} live", seen.peak_live);
    // One call per batch, nothing else (the configuration came before the files).
    assert_eq!(engine.stats().companion_calls, 6);
}

#[test]
fn files_of_several_parts_and_a_companion_without_batches_create_alone() {
    let mut engine = common::ready(EngineConfig::default(), companion(100));
    let mut sizes = BTreeMap::new();
    for size in [64 * KIB, 12 * MIB, 64 * KIB] {
        add(&mut engine, &mut sizes, size);
    }
    let seen = run(&mut engine, &sizes, |_, _| true);
    assert_eq!(done(&seen.events), 3);
    assert_eq!(seen.alone, vec![FileId(1)]);
    assert_eq!(seen.batches.len(), 1);

    for (engine_batch, companion_batch) in [(20, 0), (1, 100)] {
        let config = EngineConfig {
            create_batch: engine_batch,
            ..EngineConfig::default()
        };
        let mut engine = common::ready(config, companion(companion_batch));
        let mut sizes = BTreeMap::new();
        for _ in 0..3 {
            add(&mut engine, &mut sizes, 64 * KIB);
        }
        let seen = run(&mut engine, &sizes, |_, _| true);
        assert_eq!(seen.alone.len(), 3, "{engine_batch} / {companion_batch}");
        assert!(seen.batches.is_empty());
    }
}

#[test]
fn a_batch_carries_each_files_checksum() {
    let mut engine = checksummed_engine();
    let mut sizes = BTreeMap::new();
    for _ in 0..3 {
        add(&mut engine, &mut sizes, 1000);
    }
    let seen = run(&mut engine, &sizes, |_, _| true);
    assert_eq!(done(&seen.events), 3);
    let checksums: Vec<Option<String>> = seen.batches[0]
        .iter()
        .map(|batched| batched.checksum.clone())
        .collect();
    assert_eq!(
        checksums,
        (0..3)
            .map(|file| Some(format!("sum-{file}-1")))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_refused_file_fails_alone_and_a_failed_batch_is_made_again() {
    let mut engine = common::ready(EngineConfig::default(), companion(100));
    let mut sizes = BTreeMap::new();
    for _ in 0..4 {
        add(&mut engine, &mut sizes, 64 * KIB);
    }
    let mut calls = 0;
    let seen = run(&mut engine, &sizes, |engine, files| {
        calls += 1;
        let files: Vec<FileId> = files.iter().map(|batched| batched.file).collect();
        match calls {
            // The first call gets no answer: each file is created again later.
            1 => {
                engine.handle_batch_failed(&files, Failure::network("reset"), T);
                false
            }
            // The second answers file 2 with a refusal, the others created.
            _ => {
                let uploads = files
                    .iter()
                    .map(|&file| match file {
                        FileId(2) => BatchCreated::Refused(BatchRefusal {
                            status: 415,
                            code: "TypeNotAllowed".into(),
                            message: "no".into(),
                        }),
                        file => BatchCreated::Created(created(file, 64 * KIB)),
                    })
                    .collect();
                engine.handle_batch_answered(&files, Ok(UploadsCreated { uploads }), T);
                false
            }
        }
    });
    assert_eq!(calls, 2, "one failed call, one that answered");
    assert_eq!(
        seen.batches[1].len(),
        4,
        "every file in the batch made again"
    );
    assert_eq!(done(&seen.events), 3);
    let failed: Vec<&Event> = seen
        .events
        .iter()
        .filter(|event| matches!(event, Event::Failed { .. }))
        .collect();
    assert!(
        matches!(
            failed.as_slice(),
            [Event::Failed {
                file: FileId(2),
                error: UploadError::Companion { .. }
            }]
        ),
        "{failed:?}"
    );
}

#[test]
fn an_answer_without_one_entry_per_file_fails_the_batch() {
    let mut engine = common::ready(EngineConfig::default(), companion(100));
    let mut sizes = BTreeMap::new();
    for _ in 0..3 {
        add(&mut engine, &mut sizes, 64 * KIB);
    }
    let seen = run(&mut engine, &sizes, |engine, files| {
        let files: Vec<FileId> = files.iter().map(|batched| batched.file).collect();
        let one = vec![BatchCreated::Created(created(files[0], 64 * KIB))];
        engine.handle_batch_answered(&files, Ok(UploadsCreated { uploads: one }), T);
        false
    });
    let codes: Vec<&str> = seen
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Failed {
                error: UploadError::Companion { code, .. },
                ..
            } => Some(code.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec!["BadAnswer"; 3], "{:?}", seen.events);
}

#[test]
fn files_hashed_one_by_one_gather_behind_the_batch_on_its_way() {
    let mut engine = checksummed_engine();
    let mut sizes = BTreeMap::new();
    for _ in 0..30 {
        add(&mut engine, &mut sizes, 1000);
    }
    // Hashes come back one at a time; the companion answers a batch after every fifth hash.
    let mut hashes = std::collections::VecDeque::new();
    let mut on_their_way: std::collections::VecDeque<Vec<BatchedFile>> = Default::default();
    let mut lengths = Vec::new();
    let mut hashed = 0;
    let mut done = 0;
    loop {
        while let Some(action) = common::poll(&mut engine, T) {
            match action {
                Action::Hash { file, .. } => hashes.push_back(file),
                Action::CreateBatch { files } => {
                    lengths.push(files.len());
                    on_their_way.push_back(files);
                }
                Action::Put { file, part, .. } => {
                    engine.handle_put_done(file, part, "etag".into(), T)
                }
                other => panic!("not expected here: {other:?}"),
            }
        }
        done += std::iter::from_fn(|| engine.poll_event())
            .filter(|event| matches!(event, Event::Done { .. }))
            .count();
        if let Some(file) = hashes.pop_front() {
            engine.handle_hashed(file, vec![format!("sum-{}", file.0)], T);
            hashed += 1;
            if hashed % 5 != 0 {
                continue;
            }
        }
        let Some(files) = on_their_way.pop_front() else {
            break;
        };
        for batched in files {
            engine.handle_created(batched.file, created(batched.file, 1000), T);
        }
    }
    assert_eq!(done, 30);
    // The first file goes alone; the files hashed while a batch is on its way go in the next.
    assert_eq!(lengths, vec![1, 4, 5, 5, 5, 5, 5]);
}

#[test]
fn a_measured_part_size_never_cuts_a_file_the_companion_sends_whole() {
    // The companion prefers 16 MiB parts: a 10 MiB file is one PUT, made in a batch.
    let companion = CompanionConfig {
        preferred_part_size: 16 * MIB,
        ..companion(100)
    };
    let mut engine = common::ready(EngineConfig::default(), companion);
    let file = engine.add(FileSpec {
        size: 40 * MIB,
        ..FileSpec::default()
    });
    let ms = |ms: u64| Instant::from_unix_millis(T.unix_millis() + ms);
    assert_eq!(engine.part_size_for(10 * MIB), None, "nothing measured yet");
    // One part measured: 0.4 s to its first byte, then 5 MiB in a second.
    let mut put = None;
    while let Some(action) = common::poll(&mut engine, T) {
        match action {
            Action::Create { file, .. } => engine.handle_created(file, created(file, 40 * MIB), T),
            Action::Sign { file, request, .. } => {
                let parts = request.parts.iter().map(|&part| SignedPart {
                    part,
                    url: common::url(part, u64::MAX / 1000),
                });
                engine.handle_signed(file, parts.collect(), T);
            }
            Action::Put { part, .. } => {
                put.get_or_insert(part);
            }
            other => panic!("not expected here: {other:?}"),
        }
    }
    let part = put.expect("a part started");
    engine.handle_put_progress(file, part, MIB, ms(400));
    engine.handle_put_done(file, part, "e".into(), ms(1400));
    assert_eq!(engine.part_size_for(10 * MIB), None, "still one PUT");
    assert!(
        engine.part_size_for(100 * MIB).is_some(),
        "a multipart file gets the measured size"
    );
}
