//! The adaptive policy against every fixed setting, on links that each favour a different one
//! (issue 14). `tests/adaptive.rs` holds it to its goals; `sim-bench` reports it.

use std::sync::Arc;

use ferry_core::plan::MIB;
use ferry_core::{EngineConfig, FixedSlots};
use serde::Serialize;

use crate::{Faults, Link, Sim};

/// A link, and the files sent over it.
pub struct Case {
    pub name: &'static str,
    pub link: Link,
    pub files: usize,
    pub size: u64,
}

/// Three links where the best setting differs.
pub fn cases() -> Vec<Case> {
    vec![
        // A long fat path: each connection is held to its window over a 200 ms round trip, and
        // every PUT pays a preflight and its request before a byte flows. Many connections and
        // long parts win.
        Case {
            name: "long fat path (100 MB/s, 16 MB/s a connection, 0.4 s a request)",
            link: Link {
                bandwidth: 100e6,
                connection_rate: 16e6,
                put_latency: 0.4,
                companion_latency: 0.2,
                ..Link::default()
            },
            files: 32,
            size: 64 * MIB,
        },
        // A gateway that admits two PUTs at once and answers the others 503 SlowDown.
        Case {
            name: "gateway admitting 2 PUTs (100 Mbit/s)",
            link: Link {
                admits: Some(2),
                ..Link::default()
            },
            files: 16,
            size: 64 * MIB,
        },
        // A mobile link whose connections drop every 16 MiB on average: short parts lose little.
        Case {
            name: "dropping link (20 Mbit/s, a drop every 16 MiB)",
            link: Link {
                bandwidth: 2.5e6,
                bytes_between_drops: 16.0 * MIB as f64,
                put_latency: 0.1,
                companion_latency: 0.1,
                ..Link::default()
            },
            files: 8,
            size: 64 * MIB,
        },
    ]
}

/// Every fixed setting: 1 to 6 slots (one file may fill them) by parts of 5 to 64 MiB, and the
/// seeds' rule as it was (5 or 3 slots, 3 per file, the companion's 5 MiB parts).
pub fn fixed_settings() -> Vec<(String, EngineConfig)> {
    let mut settings: Vec<(String, EngineConfig)> = (1..=6)
        .flat_map(|slots| {
            [5, 8, 16, 32, 64].map(|part| {
                let config = EngineConfig {
                    slot_rule: Arc::new(FixedSlots(slots)),
                    per_file: slots,
                    part_size: Some(part * MIB),
                    adapt: None,
                    ..EngineConfig::default()
                };
                (format!("{slots} slots, {part} MiB parts"), config)
            })
        })
        .collect();
    let seeds = EngineConfig {
        adapt: None,
        ..EngineConfig::default()
    };
    settings.push(("the seeds' rule".into(), seeds));
    settings
}

/// Bytes a second of the files that completed, and the most PUTs that ran at once.
pub fn run(config: EngineConfig, case: &Case) -> (f64, usize) {
    let faults = Faults {
        seed: 7,
        ..Faults::default()
    };
    let mut sim = Sim::new(config, case.link, faults);
    for _ in 0..case.files {
        sim.add(case.size, 0);
    }
    let report = sim.run(&mut |_| {});
    let goodput = report.done as f64 * case.size as f64 / report.elapsed;
    (goodput, report.max_running)
}

/// One link's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LinkOutcome {
    pub link: String,
    /// Goodput of the best fixed setting, bytes a second, and its name.
    pub best_fixed: f64,
    pub best_fixed_setting: String,
    /// The adaptive policy's goodput over the best fixed setting's.
    pub adaptive_over_best: f64,
    pub adaptive_max_running: usize,
    /// The seeds' rule over the best fixed setting.
    pub seeds_over_best: f64,
    /// Each fixed setting's goodput over the best, in the order of [`fixed_settings`].
    pub fixed_over_best: Vec<f64>,
}

/// Runs the adaptive policy and every fixed setting on every link.
pub fn adaptive_against_fixed() -> Vec<LinkOutcome> {
    let settings = fixed_settings();
    cases()
        .iter()
        .map(|case| {
            let fixed: Vec<f64> = settings
                .iter()
                .map(|(_, config)| run(config.clone(), case).0)
                .collect();
            let (best_index, &best) = fixed
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .expect("settings");
            let (adaptive, adaptive_max_running) = run(EngineConfig::default(), case);
            LinkOutcome {
                link: case.name.into(),
                best_fixed: best,
                best_fixed_setting: settings[best_index].0.clone(),
                adaptive_over_best: adaptive / best,
                adaptive_max_running,
                seeds_over_best: fixed[fixed.len() - 1] / best,
                fixed_over_best: fixed.iter().map(|goodput| goodput / best).collect(),
            }
        })
        .collect()
}
