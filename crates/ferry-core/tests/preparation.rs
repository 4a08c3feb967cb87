//! A file's way before its upload exists: the companion's limits fetched once, the fingerprint
//! and claim, and adds of the same file joining one upload.

mod common;

use ferry_core::plan::{MIB, StoreLimits};
use ferry_core::protocol::{CompanionConfig, StoredObject, UploadCreated};
use ferry_core::{
    Action, Claim, Engine, EngineConfig, Event, Failure, FileId, FileSpec, FileState, Instant,
    Plan, RetryPolicy, UploadError,
};

const T: Instant = Instant::from_unix_millis(1_800_000_000_000);

fn companion() -> CompanionConfig {
    CompanionConfig {
        checksum: None,
        limits: StoreLimits::S3,
        preferred_part_size: 512 * 1024,
        max_file_size: 100 * MIB,
        allowed_types: vec!["image/png".into()],
        url_lifetime_secs: 900,
        conditional_writes: true,
        complete_single_puts: false,
        previews: false,
        create_batch: 0,
    }
}

fn png(size: u64) -> FileSpec {
    FileSpec {
        size,
        content_type: "image/png".into(),
        priority: 0,
    }
}

fn drain(engine: &mut Engine, now: Instant) -> Vec<Action> {
    std::iter::from_fn(|| engine.poll_action(now)).collect()
}

fn events(engine: &mut Engine) -> Vec<Event> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

/// The events, every one a failure: (file, error code).
fn failures(engine: &mut Engine) -> Vec<(FileId, String)> {
    events(engine)
        .into_iter()
        .map(|event| match event {
            Event::Failed { file, error } => (file, error.code().to_owned()),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn created(file: FileId, size: u64) -> UploadCreated {
    let plan = Plan::new(size, 512 * 1024, &StoreLimits::S3).unwrap();
    UploadCreated {
        upload_id: Some(format!("upload-{}", file.0)),
        key: format!("key-{}", file.0),
        token: format!("token-{}", file.0),
        part_size: plan.part_size,
        part_count: plan.part_count,
        mode: plan.mode,
        url: None,
        expires_at: u64::MAX / 1000,
        location: String::new(),
    }
}

fn status(status: u16, code: &str) -> Failure {
    Failure {
        status: Some(status),
        code: code.into(),
        ..Failure::default()
    }
}

#[test]
fn the_limits_are_fetched_once_files_wait_and_refusals_wait_for_them() {
    let mut engine = Engine::new(EngineConfig::default());
    assert_eq!(
        drain(&mut engine, T),
        vec![],
        "nothing is asked before a file waits"
    );
    let fits = engine.add(png(MIB));
    let too_large = engine.add(png(200 * MIB));
    let wrong_type = engine.add(FileSpec {
        content_type: "text/html".into(),
        ..png(MIB)
    });
    assert_eq!(
        drain(&mut engine, T),
        vec![Action::FetchConfig],
        "one fetch for all"
    );
    assert_eq!(engine.progress(fits).unwrap().state, FileState::Queued);
    assert_eq!(
        drain(&mut engine, T),
        vec![],
        "no file is taken before the limits"
    );
    engine.handle_config(companion(), T);
    let failed = failures(&mut engine);
    assert_eq!(
        failed,
        vec![
            (too_large, "TooLarge".to_owned()),
            (wrong_type, "TypeNotAllowed".to_owned())
        ]
    );
    assert_eq!(
        drain(&mut engine, T),
        vec![Action::Fingerprint {
            file: fits,
            resumable: false
        }]
    );
    // Known limits refuse at once.
    let late = engine.add(png(200 * MIB));
    assert!(matches!(
        engine.poll_event(),
        Some(Event::Failed { file, error: UploadError::TooLarge { .. } }) if file == late
    ));
}

#[test]
fn a_companion_never_reached_fails_the_waiting_files_after_its_retries() {
    let config = EngineConfig {
        retry: RetryPolicy {
            retries: 1,
            ..RetryPolicy::default()
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config);
    let first = engine.add(png(MIB));
    let second = engine.add(png(MIB));
    assert_eq!(drain(&mut engine, T), vec![Action::FetchConfig]);
    engine.handle_config_failed(Failure::network("connection refused"), T);
    assert_eq!(drain(&mut engine, T), vec![], "tries again after a backoff");
    let retry = engine.poll_timeout().expect("a retry is due");
    assert_eq!(drain(&mut engine, retry), vec![Action::FetchConfig]);
    engine.handle_config_failed(Failure::network("connection refused"), retry);
    let failed = failures(&mut engine);
    assert_eq!(
        failed,
        vec![
            (first, "CompanionUnreachable".to_owned()),
            (second, "CompanionUnreachable".to_owned())
        ]
    );
    assert_eq!(engine.unfinished(), 0);

    // The next add asks again; a refusal fails at once, with the companion's status.
    let third = engine.add(png(MIB));
    assert_eq!(drain(&mut engine, retry), vec![Action::FetchConfig]);
    engine.handle_config_failed(status(401, "Unauthorized"), retry);
    assert!(matches!(
        engine.poll_event(),
        Some(Event::Failed { file, error: UploadError::Companion { status: 401, .. } }) if file == third
    ));
    // And once the companion answers, files go on.
    let fourth = engine.add(png(MIB));
    assert_eq!(drain(&mut engine, retry), vec![Action::FetchConfig]);
    engine.handle_config(companion(), retry);
    assert_eq!(
        drain(&mut engine, retry),
        vec![Action::Fingerprint {
            file: fourth,
            resumable: false
        }]
    );
}

#[test]
fn only_a_multipart_file_claims_its_fingerprint() {
    let mut engine = Engine::new(EngineConfig::default());
    engine.handle_config(companion(), T);
    let small = engine.add(png(5 * MIB));
    let large = engine.add(png(5 * MIB + 1));
    assert_eq!(
        drain(&mut engine, T),
        vec![
            Action::Fingerprint {
                file: small,
                resumable: false
            },
            Action::Fingerprint {
                file: large,
                resumable: true
            },
        ]
    );
    assert_eq!(engine.progress(large).unwrap().state, FileState::Preparing);
    engine.handle_fingerprinted(small, Some("small".into()), T);
    engine.handle_fingerprinted(large, Some("large".into()), T);
    assert_eq!(
        drain(&mut engine, T),
        vec![
            Action::Claim {
                file: large,
                key: "large".into()
            },
            Action::Create {
                checksum: None,
                file: small
            },
        ]
    );
    engine.handle_claimed(large, Claim::Fresh, T);
    assert_eq!(
        drain(&mut engine, T),
        vec![Action::Create {
            checksum: None,
            file: large
        }]
    );
}

#[test]
fn a_claim_that_finds_the_object_stored_is_done_without_a_request() {
    let mut engine = Engine::new(EngineConfig::default());
    engine.handle_config(companion(), T);
    let file = engine.add(png(20 * MIB));
    drain(&mut engine, T);
    engine.handle_fingerprinted(file, Some("f".into()), T);
    drain(&mut engine, T);
    let object = StoredObject {
        checksum: None,
        key: "k".into(),
        etag: "\"e-4\"".into(),
        size: 20 * MIB,
        location: "/api/files/k".into(),
    };
    engine.handle_claimed(file, Claim::Stored(object.clone()), T);
    assert_eq!(events(&mut engine), vec![Event::Done { file, object }]);
    assert_eq!(drain(&mut engine, T), vec![]);
}

/// Starts the upload of `file` (20 MiB: four parts) up to its part PUTs.
fn start(engine: &mut Engine, file: FileId) -> Vec<Action> {
    engine.handle_claimed(file, Claim::Fresh, T);
    assert_eq!(
        drain(engine, T),
        vec![Action::Create {
            checksum: None,
            file
        }]
    );
    engine.handle_created(file, created(file, 20 * MIB), T);
    let sign = drain(engine, T);
    let [Action::Sign { request, .. }] = sign.as_slice() else {
        panic!("{sign:?}")
    };
    let urls = common::signed(&request.parts, u64::MAX / 1000);
    engine.handle_signed(file, urls, T);
    drain(engine, T)
}

/// The configured per-file cap of 3: with the adaptive policy, the first upload would use
/// every slot until a part was measured (these tests report no progress).
fn per_file_of_three() -> EngineConfig {
    EngineConfig {
        adapt: None,
        ..EngineConfig::default()
    }
}

#[test]
fn adds_of_the_same_file_join_one_upload_and_share_its_progress_and_result() {
    let mut engine = Engine::new(per_file_of_three());
    engine.handle_config(companion(), T);
    let first = engine.add(png(20 * MIB));
    let at_once = engine.add(png(20 * MIB));
    drain(&mut engine, T);
    engine.handle_fingerprinted(first, Some("same".into()), T);
    engine.handle_fingerprinted(at_once, Some("same".into()), T);
    assert_eq!(
        events(&mut engine),
        vec![Event::Joined {
            file: at_once,
            upload: first
        }]
    );
    assert_eq!(
        drain(&mut engine, T),
        vec![Action::Claim {
            file: first,
            key: "same".into()
        }],
        "one claim, for the upload"
    );
    let puts = start(&mut engine, first);
    assert_eq!(puts.len(), 3);
    engine.handle_put_done(first, 1, "e1".into(), T);

    // Added later, while the upload runs: it joins too, and sees the bytes already stored.
    let later = engine.add(png(20 * MIB));
    let actions = drain(&mut engine, T);
    assert_eq!(
        actions[0],
        Action::Fingerprint {
            file: later,
            resumable: true
        }
    );
    assert!(
        matches!(&actions[1..], [Action::Put { file, part: 4, .. }] if *file == first),
        "the freed slot goes to the next part: {actions:?}"
    );
    engine.handle_fingerprinted(later, Some("same".into()), T);
    events(&mut engine);
    assert_eq!(
        engine.live_files(),
        1,
        "a joined add holds no state of its own"
    );
    for file in [first, at_once, later] {
        let progress = engine.progress(file).unwrap();
        assert_eq!(
            (progress.state, progress.confirmed),
            (FileState::Uploading, 5 * MIB)
        );
    }
    assert_eq!(engine.handles(first), &[first, at_once, later]);

    for part in 2..=4 {
        engine.handle_put_done(first, part, format!("e{part}"), T);
    }
    let complete = drain(&mut engine, T);
    assert!(matches!(complete.as_slice(), [Action::Complete { file, .. }] if *file == first));
    let object = StoredObject {
        checksum: None,
        key: "key-0".into(),
        etag: "\"m-4\"".into(),
        size: 20 * MIB,
        location: String::new(),
    };
    engine.handle_completed(first, object.clone(), T);
    let done: Vec<_> = events(&mut engine);
    assert_eq!(
        done,
        [first, at_once, later]
            .map(|file| Event::Done {
                file,
                object: object.clone()
            })
            .to_vec()
    );
    assert_eq!(engine.stats().joined, 2);

    // Once it ended, the same file added again is a new upload.
    let again = engine.add(png(20 * MIB));
    drain(&mut engine, T);
    engine.handle_fingerprinted(again, Some("same".into()), T);
    assert_eq!(
        drain(&mut engine, T),
        vec![Action::Claim {
            file: again,
            key: "same".into()
        }]
    );
}

#[test]
fn cancelling_one_add_of_a_shared_upload_keeps_it_for_the_others() {
    let mut engine = Engine::new(per_file_of_three());
    engine.handle_config(companion(), T);
    let first = engine.add(png(20 * MIB));
    let second = engine.add(png(20 * MIB));
    drain(&mut engine, T);
    engine.handle_fingerprinted(first, Some("same".into()), T);
    engine.handle_fingerprinted(second, Some("same".into()), T);
    drain(&mut engine, T);
    start(&mut engine, first);
    events(&mut engine);

    engine.cancel(first);
    assert_eq!(
        events(&mut engine),
        vec![Event::Failed {
            file: first,
            error: UploadError::Cancelled
        }]
    );
    assert_eq!(
        drain(&mut engine, T),
        vec![],
        "no PUT stopped, nothing aborted"
    );
    assert_eq!(engine.running_puts_of(second), 3);
    // The add that left has no say in the upload any more: cancelling or pausing it again does
    // nothing, and it has no progress.
    engine.cancel(first);
    engine.pause(first);
    assert_eq!(events(&mut engine), vec![]);
    assert_eq!(drain(&mut engine, T), vec![]);
    assert_eq!(engine.progress(first), None);
    assert_eq!(engine.running_puts_of(second), 3);
    // A failure is told to the add still waiting, not to the cancelled one.
    engine.handle_put_failed(first, 1, status(403, "AccessDenied"), T);
    let failed = events(&mut engine);
    assert!(
        matches!(failed.as_slice(), [Event::Failed { file, .. }] if *file == second),
        "{failed:?}"
    );

    // The last add cancelled aborts the upload.
    let third = engine.add(png(20 * MIB));
    drain(&mut engine, T);
    engine.handle_fingerprinted(third, Some("other".into()), T);
    drain(&mut engine, T);
    start(&mut engine, third);
    engine.cancel(third);
    let actions = drain(&mut engine, T);
    assert!(
        actions
            .iter()
            .any(|action| matches!(action, Action::Abort { file, .. } if *file == third)),
        "{actions:?}"
    );
}
