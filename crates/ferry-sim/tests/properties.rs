//! The scheduler's claims, checked over random batches, settings and fault schedules.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ferry_core::plan::{KIB, MIB};
use ferry_core::{Action, Adapt, EngineConfig, Event, FileId, Order, SeedsRule};
use ferry_sim::{Command, Faults, Link, Observation, Sim};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Scenario {
    sizes: Vec<(u64, i32)>,
    triggers: usize,
    per_file: usize,
    sign_batch: u32,
    smallest_first: bool,
    faults: Faults,
    commands: Vec<(f64, Command)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let size = prop_oneof![
        3 => 0..2 * MIB,
        2 => 2 * MIB..40 * MIB,
        1 => 60 * MIB..140 * MIB,
    ];
    (
        prop::collection::vec((size, -1..2i32), 1..40),
        1..12usize,
        1..5usize,
        1..25u32,
        any::<bool>(),
        (any::<u64>(), prop_oneof![2 => Just(0.0), 1 => 0.0..0.2f64]),
        prop::collection::vec((0.0..30.0f64, 0..6u8, 0..40usize), 0..8),
    )
        .prop_map(
            |(sizes, triggers, per_file, sign_batch, smallest_first, (seed, put_failure), raw)| {
                let files = sizes.len();
                let commands = raw
                    .into_iter()
                    .map(|(at, kind, index)| {
                        let index = index % files;
                        let command = match kind {
                            0 => Command::Pause(index),
                            1 => Command::Resume(index),
                            2 => Command::Cancel(index),
                            3 => Command::PauseAll,
                            _ => Command::ResumeAll,
                        };
                        (at, command)
                    })
                    .collect::<Vec<_>>();
                Scenario {
                    sizes,
                    triggers,
                    per_file,
                    sign_batch,
                    smallest_first,
                    faults: Faults {
                        seed,
                        put_failure,
                        outages: Vec::new(),
                    },
                    commands,
                }
            },
        )
}

/// Runs the scenario, asserting every invariant as it goes. Paused files are resumed at the end
/// (after every command) so that every run ends.
fn check(scenario: Scenario) {
    let rule = SeedsRule::default();
    let config = EngineConfig {
        triggers: scenario.triggers,
        per_file: scenario.per_file,
        sign_batch: scenario.sign_batch,
        order: if scenario.smallest_first {
            Order::SmallestFirst
        } else {
            Order::Fifo
        },
        slot_rule: Arc::new(rule),
        ..EngineConfig::default()
    };
    // The outer layer's bound: `triggers` files, or twice a create batch of files of one part
    // (the simulated companion creates them in batches).
    let live_limit = config.triggers.max(2 * config.create_batch as usize);
    let mut sim = Sim::new(config, Link::default(), scenario.faults.clone());
    for &(size, priority) in &scenario.sizes {
        sim.add(size, priority);
    }
    let last = scenario
        .commands
        .iter()
        .map(|(at, _)| *at)
        .fold(0.0, f64::max);
    for &(at, command) in &scenario.commands {
        sim.schedule(at, command);
    }
    sim.schedule(last + 0.001, Command::ResumeAll);
    for index in 0..scenario.sizes.len() {
        sim.schedule(last + 0.002, Command::Resume(index));
    }

    let sizes: HashMap<FileId, u64> = (0..scenario.sizes.len())
        .map(|i| (sim.id(i), scenario.sizes[i].0))
        .collect();
    let mut ends: HashMap<FileId, usize> = HashMap::new();
    let mut confirmed_seen: HashMap<FileId, u64> = HashMap::new();
    let mut done_multipart = Vec::new();
    let mut done = Vec::new();
    let mut violations = Vec::new();
    let triggers = scenario.triggers;
    let per_file = scenario.per_file;

    let report = sim.run(&mut |observation| match observation {
        Observation::Action(action, engine) => {
            if engine.live_files() > live_limit {
                violations.push(format!(
                    "{} live files with {triggers} triggers",
                    engine.live_files()
                ));
            }
            match action {
                Action::Put { file, .. } => {
                    let live_sizes = engine.slots();
                    if engine.running_puts() > live_sizes {
                        violations.push(format!(
                            "{} PUTs with {live_sizes} slots",
                            engine.running_puts()
                        ));
                    }
                    // The cap the engine keeps now, as the adaptive policy moved it.
                    let cap = engine.per_file();
                    if engine.running_puts_of(*file) > cap {
                        violations.push(format!(
                            "{} PUTs for one file, cap {cap} (configured {per_file})",
                            engine.running_puts_of(*file)
                        ));
                    }
                }
                Action::Complete { file, request, .. } => {
                    done_multipart.push((*file, request.parts.len()))
                }
                _ => {}
            }
            for (&file, seen) in confirmed_seen.iter_mut() {
                if let Some(progress) = engine.progress(file) {
                    if progress.confirmed < *seen {
                        violations.push(format!("confirmed bytes of {file:?} went back"));
                    }
                    *seen = progress.confirmed;
                }
            }
            if let Action::Put { file, .. } = action {
                confirmed_seen.entry(*file).or_insert(0);
            }
        }
        Observation::Event(event) => {
            let file = match event {
                Event::Done { file, object } => {
                    done.push((*file, object.size));
                    *file
                }
                Event::Failed { file, .. } => *file,
                Event::Resumed { .. } | Event::Waiting { .. } | Event::Joined { .. } => return,
            };
            *ends.entry(file).or_default() += 1;
            confirmed_seen.remove(&file);
        }
        Observation::Commanded(Command::Cancel(_), file, sim) => {
            if sim.transfers_of(file) != 0 {
                violations.push(format!("{file:?} still has running requests after cancel"));
            }
            if sim.multipart.contains(&file)
                && !sim.aborted.contains(&file)
                && !ends.contains_key(&file)
            {
                violations.push(format!("{file:?} was cancelled without an Abort"));
            }
        }
        Observation::Commanded(..) => {}
    });

    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(report.done + report.failed, sizes.len(), "every file ended");
    for (&file, &count) in &ends {
        assert_eq!(count, 1, "{file:?} ended {count} times");
    }
    assert_eq!(ends.len(), sizes.len());
    // Every byte of every stored file is covered by exactly one confirmed part.
    for &(file, size) in &done {
        assert_eq!(size, sizes[&file]);
        let mut ranges = sim.confirmed.get(&file).cloned().unwrap_or_default();
        ranges.sort_by_key(|range| range.start);
        let mut next = 0;
        for range in &ranges {
            assert_eq!(
                range.start, next,
                "{file:?}: parts overlap or leave a gap: {ranges:?}"
            );
            next = range.end;
        }
        assert_eq!(next, size, "{file:?}: parts cover the file");
    }
    for (file, parts) in done_multipart {
        let expected = sim.confirmed.get(&file).map_or(0, Vec::len);
        assert_eq!(
            parts, expected,
            "{file:?}: Complete lists every confirmed part once"
        );
    }
    if scenario.faults.put_failure == 0.0 {
        let cancelled = scenario
            .commands
            .iter()
            .filter(|(_, c)| matches!(c, Command::Cancel(_)))
            .count();
        assert!(
            report.done + cancelled >= sizes.len(),
            "without faults only cancelled files fail: {report:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn the_scheduler_keeps_its_promises(scenario in scenario()) {
        check(scenario);
    }
}

#[test]
fn twenty_thousand_files_run_in_bounded_state() {
    let config = EngineConfig::default();
    // Small files are created in batches: twice a batch may be live.
    let live_limit = 2 * config.create_batch as usize;
    let mut sim = Sim::new(config, Link::default(), Faults::default());
    for _ in 0..20_000 {
        sim.add(64 * KIB, 0);
    }
    let mut peak_fingerprinting = 0;
    let report = sim.run(&mut |observation| {
        if let Observation::Action(_, engine) = observation {
            peak_fingerprinting = peak_fingerprinting.max(engine.fingerprinting());
        }
    });
    assert_eq!(report.done, 20_000);
    assert!(report.peak_live <= live_limit, "{report:?}");
    assert!((1..=live_limit).contains(&peak_fingerprinting));
    // One create call per 20 files, no other companion call (besides the configuration).
    assert_eq!(report.companion_calls, 1 + 20_000 / 20, "{report:?}");
    // Small files on a 40 ms link: an added PUT raises goodput, up to a browser's 6 per host.
    assert_eq!(report.max_running, Adapt::default().max_slots);
}

#[test]
fn signing_is_batched() {
    let mut sim = Sim::new(EngineConfig::default(), Link::default(), Faults::default());
    sim.add(400 * MIB, 0);
    let report = sim.run(&mut |_| {});
    // 80 parts: the config, one create, one complete, and six signs: the first parts are
    // signed as their checksums come (hash batches of 1, 2 and 4 parts, so the first PUT waits
    // for one part's hash only), the rest in batches of 20.
    assert_eq!((report.puts, report.companion_calls), (80, 9));
}

#[test]
fn runs_are_reproducible_from_their_seed() {
    let run = || {
        let mut sim = Sim::new(
            EngineConfig::default(),
            Link::default(),
            Faults {
                seed: 7,
                put_failure: 0.1,
                ..Faults::default()
            },
        );
        for size in [MIB, 30 * MIB, 70 * MIB, 5 * MIB] {
            sim.add(size, 0);
        }
        let mut events = BTreeMap::new();
        let report = sim.run(&mut |observation| {
            if let Observation::Event(event) = observation {
                let (file, ok) = match event {
                    Event::Done { file, .. } => (*file, true),
                    Event::Failed { file, .. } => (*file, false),
                    Event::Resumed { .. } | Event::Waiting { .. } | Event::Joined { .. } => return,
                };
                events.insert(file, ok);
            }
        });
        (report.elapsed, report.done, events)
    };
    assert_eq!(run(), run());
}

#[test]
fn a_thousand_files_survive_failed_requests_and_two_outages() {
    let faults = Faults {
        seed: 11,
        put_failure: 0.05,
        outages: vec![(60.0, 90.0), (200.0, 230.0)],
    };
    let mut sim = Sim::new(EngineConfig::default(), Link::default(), faults);
    let mut rng = ferry_sim::Rng::new(3);
    let mut parts = 0;
    for _ in 0..1000 {
        let size = 64 * KIB + rng.next_u64() % (8 * MIB);
        parts += ferry_core::Plan::new(size, 512 * KIB, &ferry_core::StoreLimits::S3)
            .unwrap()
            .part_count as u64;
        sim.add(size, 0);
    }
    let report = sim.run(&mut |_| {});
    assert_eq!((report.done, report.failed), (1000, 0), "{report:?}");
    assert!(
        report.elapsed > 230.0,
        "both outages happened during the run: {report:?}"
    );
    // Attempts stay bounded: failures cost retries, outages cost little (the breaker holds parts
    // back instead of letting them burn attempts).
    assert!(
        report.puts <= parts + parts / 4,
        "{} PUTs for {parts} parts",
        report.puts
    );
    assert!(
        report.retries <= parts / 5,
        "{} retries for {parts} parts",
        report.retries
    );
}

#[test]
fn running_in_steps_ends_where_one_run_ends() {
    let batch = |sim: &mut Sim| {
        for size in [MIB, 30 * MIB, 70 * MIB, 5 * MIB, 0] {
            sim.add(size, 0);
        }
    };
    let mut whole = Sim::new(EngineConfig::default(), Link::default(), Faults::default());
    batch(&mut whole);
    let expected = whole.run(&mut |_| {});
    let mut stepped = Sim::new(EngineConfig::default(), Link::default(), Faults::default());
    batch(&mut stepped);
    let mut until = 0.0;
    while stepped.run_until(until, &mut |_| {}) {
        assert!(stepped.now() <= until);
        until += 0.25;
    }
    // Stepping splits time at other points, so the idle share may differ in its last bits.
    let stepped = stepped.report();
    assert!((stepped.slot_idle_fraction - expected.slot_idle_fraction).abs() < 1e-12);
    let exact = |report: ferry_sim::Report| ferry_sim::Report {
        slot_idle_fraction: 0.0,
        ..report
    };
    assert_eq!(exact(stepped), exact(expected));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Fingerprinting reads the file, so it is the outer layer's work: however long the queue,
    /// no more files are being fingerprinted than `triggers` allows.
    #[test]
    fn fingerprint_work_never_exceeds_triggers_whatever_the_queue(
        triggers in 1usize..12,
        files in 1usize..3000,
        large_every in 1usize..5,
    ) {
        let config = EngineConfig { triggers, ..EngineConfig::default() };
        // Files of one part are taken up to twice a create batch at once.
        let live_limit = triggers.max(2 * config.create_batch as usize);
        let link = Link { fingerprint_latency: 0.05, ..Link::default() };
        let mut sim = Sim::new(config, link, Faults::default());
        for index in 0..files {
            let size = if index % large_every == 0 { 6 * MIB } else { 64 * KIB };
            sim.add(size, 0);
        }
        let mut peak = 0;
        let report = sim.run(&mut |observation| {
            if let Observation::Action(Action::Fingerprint { .. }, engine) = observation {
                peak = peak.max(engine.fingerprinting());
            }
        });
        prop_assert_eq!(report.done, files);
        prop_assert!(peak >= 1 && peak <= live_limit, "{} fingerprints at once, {} triggers", peak, triggers);
    }
}

#[test]
fn copies_of_a_file_added_together_share_one_upload() {
    let mut sim = Sim::new(EngineConfig::default(), Link::default(), Faults::default());
    let original = sim.add(30 * MIB, 0);
    sim.add_copy(original, 0);
    sim.add_copy(original, 0);
    let other = sim.add(30 * MIB, 0);
    let mut done = BTreeMap::new();
    let mut creates = 0;
    let report = sim.run(&mut |observation| match observation {
        Observation::Event(Event::Done { file, object }) => {
            done.insert(*file, object.key.clone());
        }
        Observation::Action(Action::Create { .. }, _) => creates += 1,
        _ => {}
    });
    assert_eq!(
        (report.done, report.joined, creates),
        (4, 2, 2),
        "{report:?}"
    );
    let key = &done[&sim.id(original)];
    assert_eq!(
        &done[&sim.id(1)],
        key,
        "a copy resolves with the original's object"
    );
    assert_eq!(&done[&sim.id(2)], key);
    assert_ne!(
        &done[&sim.id(other)],
        key,
        "another file of the same size is not a copy"
    );
}
