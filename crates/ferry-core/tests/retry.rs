//! Retry, expiry, stalls, offline, the breaker, fallback and resume, driven with explicit times.

mod common;

use common::url;

use std::time::Duration;

use ferry_core::plan::{MIB, StoreLimits};
use ferry_core::protocol::{
    CompanionConfig, SignedPart, SignedUrl, StoredObject, StoredPart, UploadCreated,
};
use ferry_core::{
    Action, Call, Engine, EngineConfig, Event, Failure, FileId, FileSpec, Instant, Plan, PutTarget,
    RetryPolicy, Snapshot, UploadError, UploadMode,
};

const START: u64 = 1_800_000_000_000;

fn at(ms: u64) -> Instant {
    Instant::from_unix_millis(START + ms)
}

fn companion() -> CompanionConfig {
    CompanionConfig {
        checksum: None,
        limits: StoreLimits::S3,
        preferred_part_size: 512 * 1024,
        max_file_size: u64::MAX,
        allowed_types: Vec::new(),
        url_lifetime_secs: 900,
        conditional_writes: false,
        complete_single_puts: false,
        previews: false,
        create_batch: 0,
    }
}

/// An engine with jitter off, so delays are exact.
/// Retry rules alone: the adaptive policy (its own tests) would add its epochs to the timers
/// and move the slots.
fn engine() -> Engine {
    let config = EngineConfig {
        adapt: None,
        retry: RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        },
        ..EngineConfig::default()
    };
    common::ready(config, companion())
}

fn created(size: u64) -> UploadCreated {
    let plan = Plan::new(size, 512 * 1024, &StoreLimits::S3).unwrap();
    let single = plan.mode == UploadMode::Single;
    UploadCreated {
        upload_id: (!single).then(|| "u1".to_owned()),
        key: "k".into(),
        token: "t".into(),
        part_size: plan.part_size,
        part_count: plan.part_count,
        mode: plan.mode,
        url: single.then(|| url(1, u64::MAX / 1000)),
        expires_at: u64::MAX / 1000,
        location: "/api/files/k".into(),
    }
}

fn drain(engine: &mut Engine, now: Instant) -> Vec<Action> {
    std::iter::from_fn(|| common::poll(engine, now)).collect()
}

fn puts(actions: &[Action]) -> Vec<(u32, PutTarget)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Put { part, target, .. } => Some((*part, target.clone())),
            _ => None,
        })
        .collect()
}

/// A 15 MiB file (three parts) created and signed at `at(0)`, with URLs expiring at `expires`.
fn started(engine: &mut Engine, expires_secs: u64) -> (FileId, Vec<Action>) {
    let file = engine.add(FileSpec {
        size: 15 * MIB,
        ..FileSpec::default()
    });
    assert_eq!(
        drain(engine, at(0)),
        vec![Action::Create {
            file,
            checksum: None
        }]
    );
    engine.handle_created(file, created(15 * MIB), at(0));
    let sign = drain(engine, at(0));
    let [Action::Sign { request, .. }] = sign.as_slice() else {
        panic!("{sign:?}")
    };
    let urls = common::signed(&request.parts, expires_secs);
    engine.handle_signed(file, urls, at(0));
    (file, drain(engine, at(0)))
}

fn status(status: u16, code: &str) -> Failure {
    Failure {
        status: Some(status),
        code: code.into(),
        message: String::new(),
        retry_after: None,
    }
}

fn parts_put(actions: &[Action]) -> Vec<u32> {
    puts(actions).iter().map(|(part, _)| *part).collect()
}

#[test]
fn a_failed_part_goes_again_at_once_then_waits_its_backoff() {
    let mut engine = engine();
    let (file, first) = started(&mut engine, u64::MAX / 1000);
    assert_eq!(puts(&first).len(), 3);
    // A store's internal error says nothing about the next attempt: sent again at once, free.
    engine.handle_put_failed(file, 2, status(500, "InternalError"), at(100));
    assert_eq!(parts_put(&drain(&mut engine, at(100))), vec![2]);
    assert_eq!(engine.progress(file).unwrap().retries, 0);
    assert_eq!(engine.stats().retried_at_once, 1);
    assert_eq!(
        engine.running_parts()[..]
            .iter()
            .find(|put| put.part == 2)
            .map(|put| put.retries),
        Some(1),
        "drawn as sent again"
    );
    // Only once: the seeds' backoff starts at its first step.
    engine.handle_put_failed(file, 2, status(500, "InternalError"), at(200));
    assert_eq!(
        drain(&mut engine, at(200)),
        vec![],
        "no retry before the backoff ends"
    );
    assert_eq!(engine.poll_timeout(), Some(at(1200)), "1 s backoff");
    engine.handle_timeout(at(1200));
    assert_eq!(parts_put(&drain(&mut engine, at(1200))), vec![2]);
    engine.handle_put_failed(file, 2, status(503, "SlowDown"), at(1300));
    assert_eq!(engine.poll_timeout(), Some(at(3300)), "then 2 s");
    assert_eq!(engine.progress(file).unwrap().retries, 2);
}

#[test]
fn answers_that_ask_for_less_load_always_wait() {
    for failure in [
        status(503, "SlowDown"),
        status(503, "ServiceUnavailable"),
        status(429, ""),
        status(500, "SlowDown"),
    ] {
        let mut engine = engine();
        let (file, _) = started(&mut engine, u64::MAX / 1000);
        engine.handle_put_failed(file, 1, failure.clone(), at(100));
        assert_eq!(drain(&mut engine, at(100)), vec![], "{failure:?}");
        assert_eq!(engine.poll_timeout(), Some(at(1100)), "{failure:?}");
        assert_eq!(engine.stats().retried_at_once, 0);
    }
}

#[test]
fn a_dropped_connection_goes_again_at_once_and_a_second_drop_is_waited_out() {
    let mut engine = engine_without_fallback();
    let (file, _) = started(&mut engine, u64::MAX / 1000);
    // Every part has its own one.
    for (part, now) in [(3, 100), (1, 150)] {
        engine.handle_put_failed(file, part, Failure::network("connection reset"), at(now));
        assert_eq!(parts_put(&drain(&mut engine, at(now))), vec![part]);
    }
    assert!(!engine.progress(file).unwrap().waiting, "not an outage yet");
    engine.handle_put_failed(file, 3, Failure::network("connection reset"), at(200));
    assert_eq!(drain(&mut engine, at(200)), vec![]);
    assert!(engine.progress(file).unwrap().waiting);
    assert!(
        engine.poll_timeout().unwrap() >= at(1200),
        "probed after 1 s"
    );
    assert_eq!(engine.stats().retried_at_once, 2);
    assert_eq!(engine.stats().retries, 0);
}

/// An engine whose files never switch to the companion's route: the store is reachable from
/// here, and only the retry rules are at work.
fn engine_without_fallback() -> Engine {
    let config = EngineConfig {
        adapt: None,
        retry: RetryPolicy {
            jitter: 0.0,
            fallback_after: u32::MAX,
            ..RetryPolicy::default()
        },
        ..EngineConfig::default()
    };
    common::ready(config, companion())
}

#[test]
fn retry_after_is_honoured_and_attempts_run_out() {
    let mut engine = engine();
    let (file, _) = started(&mut engine, u64::MAX / 1000);
    let mut now = 0;
    for retry in 1..=3 {
        let failure = Failure {
            retry_after: Some(Duration::from_secs(5)),
            ..status(429, "")
        };
        engine.handle_put_failed(file, 1, failure, at(now));
        assert_eq!(
            engine.poll_timeout(),
            Some(at(now + 5000)),
            "retry {retry} waits Retry-After"
        );
        now += 5000;
        drain(&mut engine, at(now));
    }
    engine.handle_put_failed(file, 1, status(500, "InternalError"), at(now));
    let actions = drain(&mut engine, at(now));
    assert!(
        !actions
            .iter()
            .any(|action| matches!(action, Action::Abort { .. })),
        "a failed upload is kept for a retry to continue: {actions:?}"
    );
    assert!(matches!(
        engine.poll_event(),
        Some(Event::Failed {
            error: UploadError::Store {
                part: 1,
                status: 500,
                ..
            },
            ..
        })
    ));
}

#[test]
fn an_expired_url_is_signed_again_without_spending_an_attempt() {
    let mut engine = engine();
    let expires = START / 1000 + 60;
    let (file, _) = started(&mut engine, expires);
    engine.handle_put_failed(
        file,
        3,
        Failure {
            message: "Request has expired".into(),
            ..status(403, "AccessDenied")
        },
        at(100),
    );
    let actions = drain(&mut engine, at(100));
    let [Action::Sign { request, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(request.parts, vec![3]);
    assert_eq!(engine.progress(file).unwrap().retries, 0);
    // A URL about to expire is signed again before its part starts.
    engine.handle_signed(
        file,
        vec![SignedPart {
            part: 3,
            url: url(3, expires),
        }],
        at(100),
    );
    engine.handle_put_done(file, 1, "\"e1\"".into(), at(59_000));
    let actions = drain(&mut engine, at(59_000));
    assert!(
        matches!(actions.as_slice(), [Action::Sign { .. }]),
        "re-signed instead of started: {actions:?}"
    );
}

#[test]
fn a_stalled_part_is_aborted_and_retried() {
    let mut engine = engine_without_fallback();
    let (file, _) = started(&mut engine, u64::MAX / 1000);
    engine.handle_put_progress(file, 1, 1000, at(10_000));
    for part in [2, 3] {
        engine.handle_put_progress(file, part, 1000, at(29_000));
    }
    assert_eq!(
        engine.poll_timeout(),
        Some(at(40_000)),
        "part 1 stalls 30 s after its last progress"
    );
    engine.handle_timeout(at(40_000));
    let actions = drain(&mut engine, at(40_000));
    assert_eq!(
        actions.first(),
        Some(&Action::StopPuts {
            file,
            parts: vec![1]
        })
    );
    // A stall is a connection that stopped answering: sent again at once the first time...
    assert_eq!(parts_put(&actions), vec![1]);
    assert!(!engine.progress(file).unwrap().waiting);
    // ...and waited out like an outage, for free, when it stalls again.
    for part in [2, 3] {
        engine.handle_put_progress(file, part, 2000, at(69_000));
    }
    assert_eq!(engine.poll_timeout(), Some(at(70_000)));
    engine.handle_timeout(at(70_000));
    let actions = drain(&mut engine, at(70_000));
    assert_eq!(
        actions.first(),
        Some(&Action::StopPuts {
            file,
            parts: vec![1]
        })
    );
    assert_eq!(parts_put(&actions), Vec::<u32>::new());
    let progress = engine.progress(file).unwrap();
    assert_eq!((progress.retries, progress.waiting), (0, true));
    let again = engine.poll_timeout().unwrap();
    assert!(again > at(70_000), "part 1 goes again after a backoff");
    assert_eq!(puts(&drain(&mut engine, again)).len(), 1);
}

#[test]
fn offline_starts_nothing_and_network_failures_cost_nothing() {
    let mut engine = engine();
    let (file, _) = started(&mut engine, u64::MAX / 1000);
    engine.handle_online(false, at(100));
    for part in 1..=3 {
        engine.handle_put_failed(file, part, Failure::network("offline"), at(100));
    }
    assert_eq!(
        drain(&mut engine, at(100)),
        vec![],
        "nothing starts offline"
    );
    engine.handle_online(true, at(10_000));
    assert_eq!(
        puts(&drain(&mut engine, at(10_000))).len(),
        3,
        "everything goes again when back"
    );
    assert_eq!(engine.progress(file).unwrap().retries, 0);
}

#[test]
fn network_failures_to_the_store_switch_the_file_to_the_companion() {
    let mut engine = engine();
    let (file, _) = started(&mut engine, u64::MAX / 1000);
    engine.handle_put_failed(file, 1, Failure::network("blocked"), at(100));
    engine.handle_put_failed(file, 2, Failure::network("blocked"), at(100));
    let again = puts(&drain(&mut engine, at(100)));
    assert!(!again.is_empty());
    for (_, target) in &again {
        assert_eq!(
            target,
            &PutTarget::Companion {
                checksum: None,
                upload_id: Some("u1".into()),
                token: "t".into()
            }
        );
    }
    assert!(engine.progress(file).unwrap().fallback);
}

#[test]
fn companion_calls_are_retried_and_resume_keeps_only_agreeing_parts() {
    let mut engine = engine();
    let snapshot = Snapshot {
        checksum: None,
        upload_id: "u1".into(),
        key: "k".into(),
        token: "t".into(),
        location: "/api/files/k".into(),
        part_size: 5 * MIB,
        part_count: 3,
        expires_at: u64::MAX / 1000,
        parts: vec![stored_part(1, "a"), stored_part(2, "b")],
    };
    let spec = FileSpec {
        size: 15 * MIB,
        ..FileSpec::default()
    };
    let file = common::add_resumed(&mut engine, spec, snapshot, at(0));
    let list = drain(&mut engine, at(0));
    assert_eq!(
        list,
        vec![Action::ListParts {
            file,
            upload_id: "u1".into(),
            token: "t".into()
        }]
    );
    engine.handle_call_failed(
        file,
        Call::ListParts,
        status(502, "StoreUnavailable"),
        at(0),
    );
    assert_eq!(drain(&mut engine, at(500)), vec![], "waits its backoff");
    assert_eq!(drain(&mut engine, at(1000)).len(), 1, "then lists again");
    // The store holds part 1 as recorded, part 2 with another ETag, and part 3 unrecorded.
    let listed = vec![
        stored_part(1, "a"),
        stored_part(2, "other"),
        stored_part(3, "c"),
    ];
    engine.handle_listed(file, listed, at(1000));
    assert_eq!(
        engine.poll_event(),
        Some(Event::Waiting {
            file,
            waiting: true
        }),
        "the store's outage was told when the first call failed"
    );
    assert_eq!(
        engine.poll_event(),
        Some(Event::Waiting {
            file,
            waiting: false
        })
    );
    assert_eq!(
        engine.poll_event(),
        Some(Event::Resumed {
            file,
            parts_kept: 1
        })
    );
    assert_eq!(engine.progress(file).unwrap().confirmed, 5 * MIB);
    let actions = drain(&mut engine, at(1000));
    let [Action::Sign { request, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        request.parts,
        vec![2, 3],
        "only the parts that do not agree are sent again"
    );
}

#[test]
fn a_vanished_upload_starts_afresh_instead_of_failing() {
    let mut engine = engine();
    let snapshot = Snapshot {
        checksum: None,
        upload_id: "gone".into(),
        key: "k".into(),
        token: "t".into(),
        location: String::new(),
        part_size: 5 * MIB,
        part_count: 3,
        expires_at: u64::MAX / 1000,
        parts: Vec::new(),
    };
    let spec = FileSpec {
        size: 15 * MIB,
        ..FileSpec::default()
    };
    let file = common::add_resumed(&mut engine, spec, snapshot, at(0));
    drain(&mut engine, at(0));
    engine.handle_call_failed(file, Call::ListParts, status(404, "NoSuchUpload"), at(0));
    assert_eq!(
        drain(&mut engine, at(0)),
        vec![Action::Create {
            file,
            checksum: None
        }]
    );
}

#[test]
fn a_refused_create_fails_at_once_and_an_unreachable_one_is_retried() {
    let mut engine = engine();
    let refused = engine.add(FileSpec {
        size: 10,
        ..FileSpec::default()
    });
    drain(&mut engine, at(0));
    engine.handle_call_failed(refused, Call::Create, status(413, "TooLarge"), at(0));
    assert!(matches!(
        engine.poll_event(),
        Some(Event::Failed {
            error: UploadError::Companion { status: 413, .. },
            ..
        })
    ));

    let unreachable = engine.add(FileSpec {
        size: 10,
        ..FileSpec::default()
    });
    drain(&mut engine, at(0));
    engine.handle_call_failed(
        unreachable,
        Call::Create,
        Failure::network("refused"),
        at(0),
    );
    assert_eq!(
        engine.poll_event(),
        Some(Event::Waiting {
            file: unreachable,
            waiting: true
        })
    );
    assert_eq!(
        drain(&mut engine, at(1000)),
        vec![Action::Create {
            file: unreachable,
            checksum: None
        }]
    );
}

#[test]
fn url_lifetimes_count_from_receipt_whatever_the_clocks_say() {
    // The companion's clock is an hour behind the browser's: by its `expires_at` every URL has
    // expired already, but it lives 900 s from when it arrived.
    let mut engine = engine();
    let file = engine.add(FileSpec {
        size: 15 * MIB,
        ..FileSpec::default()
    });
    drain(&mut engine, at(0));
    engine.handle_created(file, created(15 * MIB), at(0));
    let sign = drain(&mut engine, at(0));
    let [Action::Sign { request, .. }] = sign.as_slice() else {
        panic!("{sign:?}")
    };
    let behind = START / 1000 - 3600 + 900;
    let urls = request
        .parts
        .iter()
        .map(|&part| SignedPart {
            part,
            url: SignedUrl {
                expires_in: Some(900),
                ..url(part, behind)
            },
        })
        .collect();
    engine.handle_signed(file, urls, at(0));
    assert_eq!(
        puts(&drain(&mut engine, at(0))).len(),
        3,
        "the URLs are used, not signed again"
    );
}

#[test]
fn a_late_sign_answer_does_not_reopen_a_complete_in_flight() {
    let mut engine = engine();
    let (file, _) = started(&mut engine, u64::MAX / 1000);
    for part in 1..=3 {
        engine.handle_put_done(file, part, format!("\"e{part}\""), at(10));
    }
    let complete = drain(&mut engine, at(10));
    assert!(
        matches!(complete.as_slice(), [Action::Complete { .. }]),
        "{complete:?}"
    );
    engine.handle_signed(
        file,
        vec![SignedPart {
            part: 2,
            url: url(2, u64::MAX / 1000),
        }],
        at(20),
    );
    assert_eq!(drain(&mut engine, at(20)), vec![], "no second Complete");
}

#[test]
fn a_paused_file_makes_no_companion_calls() {
    let mut engine = engine();
    let file = engine.add(FileSpec {
        size: 15 * MIB,
        ..FileSpec::default()
    });
    assert_eq!(
        drain(&mut engine, at(0)),
        vec![Action::Create {
            file,
            checksum: None
        }]
    );
    engine.handle_created(file, created(15 * MIB), at(0));
    engine.pause(file);
    assert_eq!(
        drain(&mut engine, at(0)),
        vec![],
        "no sign call while paused"
    );
    engine.resume(file);
    assert!(matches!(
        drain(&mut engine, at(0)).as_slice(),
        [Action::Sign { .. }]
    ));
}

/// A 5 MiB part the store holds, with ETag `"{etag}"`.
fn stored_part(part: u32, etag: &str) -> StoredPart {
    StoredPart {
        checksum: None,
        part,
        size: 5 * MIB,
        etag: format!("\"{etag}\""),
    }
}

#[test]
fn a_single_put_whose_answer_was_lost_is_done_when_its_retry_finds_the_object() {
    for refusal in [
        status(412, "PreconditionFailed"),
        status(409, "AlreadyStored"),
    ] {
        let mut engine = engine();
        let file = engine.add(FileSpec {
            size: 1000,
            ..FileSpec::default()
        });
        assert_eq!(
            drain(&mut engine, at(0)),
            vec![Action::Create {
                file,
                checksum: None
            }]
        );
        engine.handle_created(file, created(1000), at(0));
        assert_eq!(puts(&drain(&mut engine, at(0))).len(), 1);
        engine.handle_put_failed(file, 1, Failure::network("reset"), at(10));
        let retried = drain(&mut engine, at(2_000));
        assert_eq!(puts(&retried).len(), 1, "{retried:?}");
        engine.handle_put_failed(file, 1, refusal.clone(), at(2_100));
        let events: Vec<Event> = std::iter::from_fn(|| engine.poll_event()).collect();
        assert!(
            events
                .iter()
                .any(|event| matches!(event, Event::Done { object, .. } if object.size == 1000)),
            "{refusal:?}: {events:?}"
        );
    }
}

#[test]
fn a_multipart_part_refused_as_existing_fails_the_file() {
    let mut engine = engine();
    let (file, _) = started(&mut engine, u64::MAX / 1000);
    engine.handle_put_failed(file, 1, status(412, "PreconditionFailed"), at(10));
    let events: Vec<Event> = std::iter::from_fn(|| engine.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|event| matches!(event, Event::Failed { .. })),
        "{events:?}"
    );
}

/// Drives `file` for `for_ms` of engine time, answering every PUT with `answer(target)` and
/// every sign call with URLs; returns the events seen and the time reached.
fn drive(
    engine: &mut Engine,
    file: FileId,
    mut now: u64,
    for_ms: u64,
    answer: impl Fn(&PutTarget) -> Failure,
) -> (Vec<Event>, u64, Vec<PutTarget>) {
    let mut events = Vec::new();
    let mut targets = Vec::new();
    let end = now + for_ms;
    while now < end {
        for action in drain(engine, at(now)) {
            match action {
                Action::Put { part, target, .. } => {
                    targets.push(target.clone());
                    engine.handle_put_failed(file, part, answer(&target), at(now));
                }
                Action::Sign { request, .. } => {
                    let urls = request
                        .parts
                        .iter()
                        .map(|&part| SignedPart {
                            part,
                            url: url(part, u64::MAX / 1000),
                        })
                        .collect();
                    engine.handle_signed(file, urls, at(now));
                }
                _ => {}
            }
        }
        events.extend(std::iter::from_fn(|| engine.poll_event()));
        let Some(next) = engine.poll_timeout() else {
            break;
        };
        now = next.unix_millis() - START;
        engine.handle_timeout(at(now));
    }
    (events, now, targets)
}

#[test]
fn a_store_outage_is_waited_out_and_spends_nothing() {
    let mut engine = engine();
    let (file, first) = started(&mut engine, u64::MAX / 1000);
    for (part, _) in puts(&first) {
        engine.handle_put_failed(file, part, Failure::network("refused"), at(10));
    }
    // Ten minutes without a store: direct PUTs get no answer, and the companion's route answers
    // that it cannot reach the store either.
    let (events, now, targets) = drive(&mut engine, file, 10, 600_000, |target| match target {
        PutTarget::Direct(_) => Failure::network("refused"),
        PutTarget::Companion { .. } => status(502, "StoreUnavailable"),
    });
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, Event::Failed { .. })),
        "{events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|event| matches!(event, Event::Waiting { .. }))
            .collect::<Vec<_>>(),
        vec![&Event::Waiting {
            file,
            waiting: true
        }],
        "told once that it waits"
    );
    let progress = engine.progress(file).unwrap();
    assert!(progress.waiting && progress.retries == 0, "{progress:?}");
    assert_eq!(engine.stats().retries, 0, "no attempt spent");
    // Probes keep going, but with capped backoff: not hundreds a second.
    assert!(
        (20..400).contains(&targets.len()),
        "{} probes in ten minutes",
        targets.len()
    );
    assert!(
        targets
            .iter()
            .any(|target| matches!(target, PutTarget::Companion { .. })),
        "the companion route was tried"
    );
    assert!(
        !engine.progress(file).unwrap().fallback,
        "the companion could not reach the store either: back to direct PUTs"
    );

    // The store answers again: the file goes on by itself and completes.
    let mut now = now;
    let mut done = false;
    for _ in 0..50 {
        now = engine
            .poll_timeout()
            .map_or(now, |next| next.unix_millis() - START);
        engine.handle_timeout(at(now));
        for action in drain(&mut engine, at(now)) {
            match action {
                Action::Put { part, .. } => {
                    engine.handle_put_done(file, part, format!("e{part}"), at(now))
                }
                Action::Complete { .. } => {
                    engine.handle_completed(
                        file,
                        StoredObject {
                            checksum: None,
                            key: "k".into(),
                            etag: "x-3".into(),
                            size: 15 * MIB,
                            location: String::new(),
                        },
                        at(now),
                    );
                }
                _ => {}
            }
        }
        let events: Vec<Event> = std::iter::from_fn(|| engine.poll_event()).collect();
        if events.contains(&Event::Waiting {
            file,
            waiting: false,
        }) {
            assert!(!engine.progress(file).unwrap().waiting);
        }
        if events
            .iter()
            .any(|event| matches!(event, Event::Done { .. }))
        {
            done = true;
            break;
        }
    }
    assert!(done, "the upload completed after the outage");
}

#[test]
fn a_companion_outage_is_waited_out_and_spends_nothing() {
    let mut engine = engine();
    let file = engine.add(FileSpec {
        size: 15 * MIB,
        ..FileSpec::default()
    });
    let mut now = 0;
    let mut creates = 0;
    let mut events = Vec::new();
    while now < 300_000 {
        for action in drain(&mut engine, at(now)) {
            if let Action::Create { .. } = action {
                creates += 1;
                engine.handle_call_failed(file, Call::Create, Failure::network("down"), at(now));
            }
        }
        events.extend(std::iter::from_fn(|| engine.poll_event()));
        now = engine.poll_timeout().unwrap().unix_millis() - START;
    }
    assert_eq!(
        events,
        vec![Event::Waiting {
            file,
            waiting: true
        }]
    );
    assert!(
        (5..100).contains(&creates),
        "{creates} probes in five minutes"
    );
    // Back online in the browser: the probe goes at once, not at its next backoff.
    engine.handle_online(false, at(now));
    engine.handle_online(true, at(now + 1));
    assert_eq!(
        drain(&mut engine, at(now + 1)),
        vec![Action::Create {
            file,
            checksum: None
        }]
    );
    engine.handle_created(file, created(15 * MIB), at(now + 2));
    assert_eq!(
        engine.poll_event(),
        Some(Event::Waiting {
            file,
            waiting: false
        })
    );
}

#[test]
fn a_file_on_the_companion_route_tries_direct_puts_again() {
    let mut engine = engine();
    let (file, first) = started(&mut engine, u64::MAX / 1000);
    for (part, _) in puts(&first) {
        engine.handle_put_failed(file, part, Failure::network("blocked"), at(10));
    }
    // The store stays out of reach from this browser only: the companion's route works.
    let (_, now, targets) = drive(&mut engine, file, 10, 5_000, |_| status(500, "x"));
    assert!(
        targets
            .iter()
            .all(|target| matches!(target, PutTarget::Companion { .. })),
        "{targets:?}"
    );
    assert!(engine.progress(file).unwrap().fallback);
    // After its stay on the companion route, the next part tries the store again.
    let later = now + 31_000;
    engine.handle_timeout(at(later));
    let (_, _, targets) = drive(&mut engine, file, later, 100, |_| {
        Failure::network("blocked")
    });
    assert!(
        matches!(targets.first(), Some(PutTarget::Direct(_))),
        "{targets:?}"
    );
}

#[test]
fn a_complete_refused_for_good_aborts_and_one_out_of_retries_keeps_the_upload() {
    for (answer, aborted) in [
        (status(400, "EntityTooSmall"), true),
        (status(503, "Busy"), false),
    ] {
        let mut engine = engine();
        let (file, first) = started(&mut engine, u64::MAX / 1000);
        for (part, _) in puts(&first) {
            engine.handle_put_done(file, part, format!("e{part}"), at(10));
        }
        let mut now = 10;
        let mut actions = drain(&mut engine, at(now));
        while engine.poll_event().is_none() {
            assert!(
                actions
                    .iter()
                    .any(|action| matches!(action, Action::Complete { .. })),
                "{actions:?}"
            );
            engine.handle_call_failed(file, Call::Complete, answer.clone(), at(now));
            now = engine
                .poll_timeout()
                .map_or(now, |next| next.unix_millis() - START);
            actions = drain(&mut engine, at(now));
        }
        let abort = actions
            .iter()
            .any(|action| matches!(action, Action::Abort { .. }));
        assert_eq!(abort, aborted, "{answer:?}: {actions:?}");
    }
}

#[test]
fn after_its_stay_on_the_companion_route_a_file_signs_and_puts_direct_again() {
    let mut engine = engine();
    // URLs that expire 20 s in: by the end of the stay they must be signed again.
    let (file, first) = started(&mut engine, START / 1000 + 20);
    for (part, _) in puts(&first) {
        engine.handle_put_failed(file, part, Failure::network("blocked"), at(10));
    }
    assert!(engine.progress(file).unwrap().fallback);
    // The companion does not answer either, so parts back off past the end of the stay.
    let (_, _, targets) = drive(&mut engine, file, 10, 45_000, |_| Failure::network("down"));
    let direct = targets
        .iter()
        .position(|target| matches!(target, PutTarget::Direct(_)));
    assert!(
        direct.is_some_and(|at| at > 0),
        "after the companion route, parts were signed and went direct: {targets:?}"
    );
}

#[test]
fn a_form_upload_is_given_time_for_its_bytes_before_it_counts_as_stalled() {
    let mut engine = engine();
    let size = 64 * 1024;
    let file = engine.add(FileSpec {
        size,
        ..FileSpec::default()
    });
    assert!(matches!(
        drain(&mut engine, at(0)).as_slice(),
        [Action::Create { .. }]
    ));
    let mut form = created(size);
    let url = form.url.as_mut().unwrap();
    url.form = [("key".to_owned(), "k".to_owned())].into();
    engine.handle_created(file, form, at(0));
    assert_eq!(puts(&drain(&mut engine, at(0))).len(), 1);
    // A form's progress comes only at its end: 30 s, and 64 KiB at 8 KiB/s besides.
    assert_eq!(engine.poll_timeout(), Some(at(38_000)));
    engine.handle_timeout(at(37_999));
    assert_eq!(drain(&mut engine, at(37_999)), vec![]);
    engine.handle_timeout(at(38_000));
    assert!(matches!(
        drain(&mut engine, at(38_000)).first(),
        Some(Action::StopPuts { .. })
    ));
}

#[test]
fn a_form_the_store_refuses_goes_through_the_companion_instead() {
    let mut engine = engine();
    let size = 64 * 1024;
    let file = engine.add(FileSpec {
        size,
        ..FileSpec::default()
    });
    drain(&mut engine, at(0));
    let mut form = created(size);
    form.url.as_mut().unwrap().form = [("key".to_owned(), "k".to_owned())].into();
    engine.handle_created(file, form, at(0));
    assert!(matches!(
        puts(&drain(&mut engine, at(0))).as_slice(),
        [(1, PutTarget::Direct(_))]
    ));
    engine.handle_put_failed(file, 1, status(400, "InvalidRequest"), at(10));
    assert!(matches!(
        puts(&drain(&mut engine, at(10))).as_slice(),
        [(
            1,
            PutTarget::Companion {
                upload_id: None,
                ..
            }
        )]
    ));
    assert!(engine.poll_event().is_none(), "the file did not fail");
}
