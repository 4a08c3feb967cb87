//! The engine driven by a scripted fake companion and store: no I/O, only the state machine.

mod common;

use std::collections::BTreeMap;

use ferry_core::plan::{MIB, StoreLimits, UploadMode};
use ferry_core::protocol::{CompanionConfig, SignedPart, SignedUrl, StoredObject, UploadCreated};
use ferry_core::{
    Action, Engine, EngineConfig, Event, Failure, FileId, FileSpec, FixedSlots, Instant, Order,
    Plan, UploadError,
};

const T: Instant = Instant::from_unix_millis(1_000_000);

fn companion() -> CompanionConfig {
    CompanionConfig {
        checksum: None,
        limits: StoreLimits::S3,
        preferred_part_size: 512 * 1024,
        max_file_size: 100 * MIB,
        allowed_types: Vec::new(),
        url_lifetime_secs: 900,
        conditional_writes: false,
        complete_single_puts: false,
        previews: false,
        create_batch: 0,
    }
}

fn meta(_name: &str, size: u64) -> FileSpec {
    FileSpec {
        size,
        ..FileSpec::default()
    }
}

fn url(part: u32) -> SignedUrl {
    SignedUrl {
        url: format!("http://store/part/{part}"),
        headers: Default::default(),
        expires_at: u64::MAX,
        expires_in: None,
        form: Default::default(),
    }
}

/// What the fake companion answers to a create for `size` bytes.
fn created(file: FileId, size: u64) -> UploadCreated {
    let plan = Plan::new(size, 512 * 1024, &StoreLimits::S3).unwrap();
    UploadCreated {
        upload_id: (plan.mode == UploadMode::Multipart).then(|| format!("upload-{}", file.0)),
        key: format!("key-{}", file.0),
        token: format!("token-{}", file.0),
        part_size: plan.part_size,
        part_count: plan.part_count,
        mode: plan.mode,
        url: (plan.mode == UploadMode::Single).then(|| url(1)),
        expires_at: u64::MAX,
        location: format!("/api/files/key-{}", file.0),
    }
}

/// Runs the engine against an always-successful fake until nothing is left, checking the
/// concurrency bounds after every action; returns the events and the actions seen.
fn run_to_end(
    engine: &mut Engine,
    sizes: &BTreeMap<FileId, u64>,
    per_file: usize,
) -> (Vec<Event>, Vec<Action>) {
    let mut seen = Vec::new();
    let mut running: Vec<(FileId, u32)> = Vec::new();
    let mut events = Vec::new();
    loop {
        while let Some(action) = common::poll(engine, T) {
            match &action {
                Action::Create { file, .. } => {
                    engine.handle_created(*file, created(*file, sizes[file]), T)
                }
                Action::CreateBatch { .. } => panic!("this companion creates one at a time"),
                Action::Sign { file, request, .. } => {
                    let parts = request
                        .parts
                        .iter()
                        .map(|&part| SignedPart {
                            part,
                            url: url(part),
                        })
                        .collect();
                    engine.handle_signed(*file, parts, T);
                }
                Action::Put { file, part, .. } => running.push((*file, *part)),
                Action::Complete {
                    file,
                    upload_id,
                    request,
                } => {
                    assert_eq!(request.parts.len() as u64, sizes[file].div_ceil(5 * MIB));
                    engine.handle_completed(
                        *file,
                        StoredObject {
                            checksum: None,
                            key: upload_id.clone().expect("a multipart upload"),
                            etag: "multi".into(),
                            size: sizes[file],
                            location: String::new(),
                        },
                        T,
                    );
                }
                Action::StopPuts { .. } | Action::Abort { .. } => {}
                Action::ListParts { .. } => panic!("nothing here resumes"),
                Action::Hash { .. } => panic!("checksums are off here"),
                Action::FetchConfig | Action::Fingerprint { .. } | Action::Claim { .. } => {
                    unreachable!("answered by common::poll")
                }
            }
            seen.push(action);
            assert!(
                engine.running_puts() <= 5,
                "never more PUTs than the seeds' rule allows"
            );
            for file in sizes.keys() {
                assert!(running.iter().filter(|(f, _)| f == file).count() <= per_file);
            }
        }
        events.extend(std::iter::from_fn(|| engine.poll_event()));
        // Finish the oldest running PUT, as a store would.
        if running.is_empty() {
            break;
        }
        let (file, part) = running.remove(0);
        engine.handle_put_progress(file, part, 1, T);
        engine.handle_put_done(file, part, format!("etag-{part}"), T);
    }
    (events, seen)
}

#[test]
fn many_files_complete_within_the_slot_and_per_file_limits() {
    let mut engine = common::ready(configured(), companion());
    let sizes: BTreeMap<FileId, u64> =
        [0, 1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 23 * MIB, 64 * MIB]
            .into_iter()
            .enumerate()
            .map(|(i, size)| (engine.add(meta(&format!("f{i}"), size)), size))
            .collect();
    let (events, actions) = run_to_end(&mut engine, &sizes, 3);
    let done: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Done { file, object } => Some((*file, object.size)),
            _ => None,
        })
        .collect();
    assert_eq!(
        done.len(),
        sizes.len(),
        "every file completes exactly once: {events:?}"
    );
    for (file, size) in done {
        assert_eq!(sizes[&file], size);
    }
    assert_eq!(engine.unfinished(), 0);
    // Batched signing: 64 MiB is 13 parts, signed in one call with the default batch of 20.
    let signs = actions
        .iter()
        .filter(|a| matches!(a, Action::Sign { .. }))
        .count();
    assert_eq!(
        signs, 3,
        "one sign call each for the 5 MiB + 1, 23 MiB and 64 MiB files"
    );
}

#[test]
fn parts_cover_every_byte_exactly_once() {
    let mut engine = common::ready(configured(), companion());
    let size = 23 * MIB + 7;
    let file = engine.add(meta("f", size));
    let (_, actions) = run_to_end(&mut engine, &BTreeMap::from([(file, size)]), 3);
    let mut ranges: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Put { range, .. } => Some(range.clone()),
            _ => None,
        })
        .collect();
    ranges.sort_by_key(|r| r.start);
    let mut next = 0;
    for range in ranges {
        assert_eq!(range.start, next);
        next = range.end;
    }
    assert_eq!(next, size);
}

#[test]
fn a_file_over_the_maximum_fails_before_any_request() {
    let mut engine = common::ready(EngineConfig::default(), companion());
    let file = engine.add(meta("big.bin", 100 * MIB + 1));
    assert_eq!(common::poll(&mut engine, T), None);
    match engine.poll_event() {
        Some(Event::Failed {
            file: failed,
            error: UploadError::TooLarge { size, max, .. },
        }) => {
            assert_eq!((failed, size, max), (file, 100 * MIB + 1, 100 * MIB));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_store_error_stops_the_other_parts_and_keeps_the_upload() {
    let mut engine = common::ready(configured(), companion());
    let file = engine.add(meta("f", 30 * MIB));
    assert!(matches!(
        common::poll(&mut engine, T),
        Some(Action::Create { .. })
    ));
    engine.handle_created(file, created(file, 30 * MIB), T);
    let Some(Action::Sign { request, .. }) = common::poll(&mut engine, T) else {
        panic!("sign first")
    };
    engine.handle_signed(
        file,
        request
            .parts
            .iter()
            .map(|&part| SignedPart {
                part,
                url: url(part),
            })
            .collect(),
        T,
    );
    let puts: Vec<_> = std::iter::from_fn(|| common::poll(&mut engine, T)).collect();
    assert_eq!(
        puts.len(),
        3,
        "three parts start, the per-file cap: {puts:?}"
    );
    let failure = Failure {
        status: Some(403),
        code: "AccessDenied".into(),
        message: "no".into(),
        retry_after: None,
    };
    engine.handle_put_failed(file, 2, failure, T);
    let error = UploadError::Store {
        part: 2,
        status: 403,
        code: "AccessDenied".into(),
        message: "no".into(),
    };
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::StopPuts {
            file,
            parts: vec![1, 3]
        })
    );
    // The upload is kept on the store, not aborted: trying the file again continues it.
    assert_eq!(common::poll(&mut engine, T), None);
    assert_eq!(engine.poll_event(), Some(Event::Failed { file, error }));
    // Late answers of the stopped parts change nothing.
    engine.handle_put_done(file, 1, "etag".into(), T);
    assert_eq!(common::poll(&mut engine, T), None);
    assert_eq!(engine.poll_event(), None);
}

#[test]
fn cancel_before_create_answers_aborts_the_upload_it_creates() {
    let mut engine = common::ready(EngineConfig::default(), companion());
    let file = engine.add(meta("f", 10 * MIB));
    assert!(matches!(
        common::poll(&mut engine, T),
        Some(Action::Create { .. })
    ));
    engine.cancel(file);
    assert_eq!(
        engine.poll_event(),
        Some(Event::Failed {
            file,
            error: UploadError::Cancelled
        })
    );
    // The create answer arrives after the cancel: the upload it made is aborted, nothing else.
    engine.handle_created(file, created(file, 10 * MIB), T);
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::Abort {
            file,
            upload_id: "upload-0".into(),
            token: "token-0".into()
        })
    );
    assert_eq!(common::poll(&mut engine, T), None);
}

#[test]
fn a_plan_that_does_not_fit_aborts_the_created_upload() {
    let mut engine = common::ready(EngineConfig::default(), companion());
    let file = engine.add(meta("f", 30 * MIB));
    common::poll(&mut engine, T);
    let mut answer = created(file, 30 * MIB);
    answer.part_count = 2;
    engine.handle_created(file, answer, T);
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::Abort {
            file,
            upload_id: "upload-0".into(),
            token: "token-0".into()
        })
    );
    assert!(matches!(
        engine.poll_event(),
        Some(Event::Failed {
            error: UploadError::BadPlan(_),
            ..
        })
    ));
}

/// Answers the create of `file` (multipart) and its first sign; starts nothing.
fn prepare(engine: &mut Engine, file: FileId, size: u64) {
    engine.handle_created(file, created(file, size), T);
    match common::poll(engine, T) {
        Some(Action::Sign { file, request, .. }) => engine.handle_signed(
            file,
            request
                .parts
                .iter()
                .map(|&part| SignedPart {
                    part,
                    url: url(part),
                })
                .collect(),
            T,
        ),
        other => panic!("expected the first sign, got {other:?}"),
    }
}

/// The configured layers alone. With the adaptive policy on, the first multipart upload may
/// use every slot until a part was measured, and these drivers report no progress.
fn configured() -> EngineConfig {
    EngineConfig {
        adapt: None,
        ..EngineConfig::default()
    }
}

fn puts(actions: &[Action]) -> Vec<(FileId, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Put { file, part, .. } => Some((*file, *part)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_outer_layer_takes_files_only_when_it_has_room() {
    let config = EngineConfig {
        triggers: 4,
        ..configured()
    };
    let mut engine = common::ready(config, companion());
    let files: Vec<FileId> = (0..1000).map(|_| engine.add(meta("f", 30 * MIB))).collect();
    let creates: Vec<_> = std::iter::from_fn(|| common::poll(&mut engine, T)).collect();
    assert_eq!(
        creates,
        files[..4]
            .iter()
            .map(|&file| Action::Create {
                file,
                checksum: None
            })
            .collect::<Vec<_>>()
    );
    assert_eq!((engine.live_files(), engine.queued_files()), (4, 996));
    // One file ending lets exactly one more in.
    engine.cancel(files[0]);
    let next: Vec<_> = std::iter::from_fn(|| common::poll(&mut engine, T)).collect();
    assert_eq!(
        next,
        vec![Action::Create {
            file: files[4],
            checksum: None
        }]
    );
    assert_eq!(engine.live_files(), 4);
}

#[test]
fn priority_and_smallest_first_choose_who_goes_next() {
    let config = EngineConfig {
        triggers: 1,
        order: Order::SmallestFirst,
        ..EngineConfig::default()
    };
    let mut engine = common::ready(config, companion());
    let big = engine.add(meta("big", 30 * MIB));
    let small = engine.add(meta("small", MIB));
    let urgent = engine.add(FileSpec {
        size: 90 * MIB,
        priority: 1,
        ..FileSpec::default()
    });
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::Create {
            file: urgent,
            checksum: None
        }),
        "priority first"
    );
    engine.cancel(urgent);
    engine.poll_event();
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::Create {
            file: small,
            checksum: None
        }),
        "then the smallest"
    );
    engine.cancel(small);
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::Create {
            file: big,
            checksum: None
        })
    );
}

#[test]
fn a_free_slot_goes_to_the_best_ranked_uploading_file_not_the_first_added() {
    let config = EngineConfig {
        triggers: 2,
        order: Order::SmallestFirst,
        slot_rule: std::sync::Arc::new(FixedSlots(1)),
        adapt: None,
        ..EngineConfig::default()
    };
    let mut engine = common::ready(config, companion());
    let big = engine.add(meta("big", 30 * MIB));
    let small = engine.add(meta("small", 11 * MIB));
    let sizes = BTreeMap::from([(big, 30 * MIB), (small, 11 * MIB)]);
    // Both created (in parts, so no part may go before its URLs), then both signed, the big one first: only then may a part go.
    let mut signs = Vec::new();
    while let Some(action) = common::poll(&mut engine, T) {
        match action {
            Action::Create { file, .. } => {
                engine.handle_created(file, created(file, sizes[&file]), T)
            }
            Action::Sign { file, request, .. } => signs.push((file, request.parts)),
            other => panic!("creates and signs first: {other:?}"),
        }
    }
    signs.sort_by_key(|(file, _)| *file != big);
    assert_eq!(signs.len(), 2, "{signs:?}");
    for (file, parts) in signs {
        let urls = parts
            .into_iter()
            .map(|part| SignedPart {
                part,
                url: url(part),
            })
            .collect();
        engine.handle_signed(file, urls, T);
    }
    match common::poll(&mut engine, T) {
        Some(Action::Put { file, part: 1, .. }) => assert_eq!(file, small, "the smaller first"),
        other => panic!("a part goes: {other:?}"),
    }
    assert_eq!(common::poll(&mut engine, T), None, "one slot");
}

#[test]
fn the_slot_rule_drops_to_three_when_a_large_file_is_live() {
    let mut engine = common::ready(configured(), companion());
    let small: Vec<FileId> = (0..3).map(|_| engine.add(meta("s", 20 * MIB))).collect();
    for _ in 0..3 {
        common::poll(&mut engine, T);
    }
    for &file in &small {
        engine.handle_created(file, created(file, 20 * MIB), T);
    }
    for action in std::iter::from_fn(|| common::poll(&mut engine, T)).collect::<Vec<_>>() {
        let Action::Sign { file, request, .. } = action else {
            panic!("signs first: {action:?}")
        };
        engine.handle_signed(
            file,
            request
                .parts
                .iter()
                .map(|&part| SignedPart {
                    part,
                    url: url(part),
                })
                .collect(),
            T,
        );
    }
    assert_eq!(engine.slots(), 5);
    let started: Vec<_> = std::iter::from_fn(|| common::poll(&mut engine, T)).collect();
    assert_eq!(
        puts(&started).len(),
        5,
        "five slots while every file is at most 65 MiB"
    );

    let large = engine.add(meta("l", 66 * MIB));
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::Create {
            file: large,
            checksum: None
        })
    );
    assert_eq!(engine.slots(), 3, "a live file over 65 MiB makes it three");
    // Running PUTs finish; none start until fewer than three run.
    let (first, part) = puts(&started)[0];
    engine.handle_put_done(first, part, "e".into(), T);
    assert_eq!(
        puts(&std::iter::from_fn(|| common::poll(&mut engine, T)).collect::<Vec<_>>()),
        vec![]
    );
    for &(file, part) in &puts(&started)[1..3] {
        engine.handle_put_done(file, part, "e".into(), T);
    }
    let next = puts(&std::iter::from_fn(|| common::poll(&mut engine, T)).collect::<Vec<_>>());
    assert_eq!(next.len(), 1, "two still run, so one starts: {next:?}");
    assert_eq!(engine.running_puts(), 3);
}

#[test]
fn pause_stops_running_parts_and_resume_sends_them_again() {
    let config = EngineConfig {
        slot_rule: std::sync::Arc::new(FixedSlots(3)),
        ..EngineConfig::default()
    };
    let mut engine = common::ready(config, companion());
    let file = engine.add(meta("f", 30 * MIB));
    common::poll(&mut engine, T);
    prepare(&mut engine, file, 30 * MIB);
    let first = puts(&std::iter::from_fn(|| common::poll(&mut engine, T)).collect::<Vec<_>>());
    assert_eq!(first, vec![(file, 1), (file, 2), (file, 3)]);
    engine.handle_put_progress(file, 1, 1000, T);
    engine.handle_put_done(file, 2, "e2".into(), T);
    engine.pause(file);
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::StopPuts {
            file,
            parts: vec![1, 3]
        })
    );
    assert_eq!(
        common::poll(&mut engine, T),
        None,
        "nothing starts while paused"
    );
    let progress = engine.progress(file).unwrap();
    assert_eq!(
        (progress.paused, progress.confirmed, progress.in_flight),
        (true, 5 * MIB, 0)
    );
    // A stopped part that still answers is sent again rather than trusted.
    engine.handle_put_done(file, 1, "late".into(), T);
    engine.resume(file);
    let again = puts(&std::iter::from_fn(|| common::poll(&mut engine, T)).collect::<Vec<_>>());
    assert_eq!(
        again,
        vec![(file, 1), (file, 3), (file, 4)],
        "stopped parts go first"
    );
}

#[test]
fn pause_all_and_cancel_all() {
    let mut engine = common::ready(EngineConfig::default(), companion());
    let files: Vec<FileId> = (0..12).map(|_| engine.add(meta("f", 10 * MIB))).collect();
    engine.pause_all();
    assert_eq!(
        common::poll(&mut engine, T),
        None,
        "nothing is taken while everything is paused"
    );
    engine.resume_all();
    assert_eq!(
        common::poll(&mut engine, T),
        Some(Action::Create {
            file: files[0],
            checksum: None
        })
    );
    engine.cancel_all();
    let ends: Vec<_> = std::iter::from_fn(|| engine.poll_event()).collect();
    assert_eq!(ends.len(), 12, "every file ends exactly once");
    assert!(ends.iter().all(|e| matches!(
        e,
        Event::Failed {
            error: UploadError::Cancelled,
            ..
        }
    )));
    assert_eq!(engine.unfinished(), 0);
}

/// A companion that acts on finished uploads asks single PUTs to complete too: the file is done
/// only once it answered, and a failed Complete is retried like any companion call.
#[test]
fn a_single_put_completes_through_a_companion_that_asks_for_it() {
    let mut engine = common::ready(
        EngineConfig::default(),
        CompanionConfig {
            complete_single_puts: true,
            ..companion()
        },
    );
    let file = engine.add(meta("small.png", 1_000));
    assert!(matches!(
        common::poll(&mut engine, T),
        Some(Action::Create { .. })
    ));
    engine.handle_created(file, created(file, 1_000), T);
    assert!(matches!(
        common::poll(&mut engine, T),
        Some(Action::Put { part: 1, .. })
    ));
    engine.handle_put_done(file, 1, "\"etag\"".into(), T);
    assert_eq!(
        engine.poll_event(),
        None,
        "not done before the companion heard of it"
    );
    let Some(Action::Complete {
        upload_id: None,
        request,
        ..
    }) = common::poll(&mut engine, T)
    else {
        panic!("a single PUT's Complete");
    };
    assert_eq!(request.token, format!("token-{}", file.0));
    assert_eq!(request.parts.len(), 1);
    engine.handle_call_failed(
        file,
        ferry_core::Call::Complete,
        Failure {
            status: Some(500),
            code: "InternalError".into(),
            message: "try again".into(),
            retry_after: None,
        },
        T,
    );
    let later = T + std::time::Duration::from_secs(5);
    assert!(matches!(
        common::poll(&mut engine, later),
        Some(Action::Complete {
            upload_id: None,
            ..
        })
    ));
    let object = StoredObject {
        checksum: None,
        key: format!("key-{}", file.0),
        etag: "\"etag\"".into(),
        size: 1_000,
        location: String::new(),
    };
    engine.handle_completed(file, object.clone(), later);
    assert_eq!(engine.poll_event(), Some(Event::Done { file, object }));
}

/// What the demo draws: the files the outer layer prepares, the next ones in line, and a part
/// sent again marked as a retry.
#[test]
fn the_scheduler_shows_what_it_prepares_what_waits_and_what_is_sent_again() {
    let config = EngineConfig {
        triggers: 1,
        ..EngineConfig::default()
    };
    let mut engine = common::ready(config, companion());
    let first = engine.add(meta("first", 20 * MIB));
    let second = engine.add(meta("second", 1_000));
    let third = engine.add(FileSpec {
        priority: 5,
        ..meta("urgent", 1_000)
    });
    assert_eq!(
        engine.next_in_line(10),
        [third, first, second],
        "priority first, then FIFO"
    );
    assert!(engine.preparing().is_empty());
    assert!(
        matches!(engine.poll_action(T), Some(Action::Fingerprint { file, .. }) if file == third)
    );
    assert_eq!(engine.preparing(), [third], "taken, being fingerprinted");
    assert_eq!(engine.next_in_line(1), [first]);
    engine.handle_fingerprinted(third, None, T);
    assert!(matches!(
        common::poll(&mut engine, T),
        Some(Action::Create { .. })
    ));
    assert_eq!(engine.preparing(), [third], "being created");
    engine.handle_created(third, created(third, 1_000), T);
    assert!(matches!(
        common::poll(&mut engine, T),
        Some(Action::Put { .. })
    ));
    assert!(engine.preparing().is_empty(), "its part is out");
    assert_eq!(engine.running_parts()[0].retries, 0);
    let failure = Failure {
        status: Some(500),
        code: "InternalError".into(),
        message: "try again".into(),
        retry_after: None,
    };
    engine.handle_put_failed(third, 1, failure, T);
    let later = T + std::time::Duration::from_secs(5);
    assert!(matches!(
        common::poll(&mut engine, later),
        Some(Action::Put { .. })
    ));
    assert_eq!(
        engine.running_parts()[0].retries,
        1,
        "the part is being sent again"
    );
}
