//! The adaptive policy against every fixed setting, on links that each favour a different one
//! (issue 14): it reaches at least 0.95x the best fixed setting on each link, while every fixed
//! setting loses at least 20% on one of them.

use std::sync::Arc;

use ferry_core::plan::MIB;
use ferry_core::{Adapt, EngineConfig, FixedSlots};
use ferry_sim::{Faults, Link, Sim};

/// A link, and the files sent over it.
struct Case {
    name: &'static str,
    link: Link,
    files: usize,
    size: u64,
}

fn cases() -> Vec<Case> {
    vec![
        // A long fat path: each connection is held to its window over a 200 ms round trip, and
        // every PUT pays a preflight and its request before a byte flows. Many connections and
        // long parts win.
        Case {
            name: "long fat path",
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
            name: "gateway admitting 2",
            link: Link {
                admits: Some(2),
                ..Link::default()
            },
            files: 16,
            size: 64 * MIB,
        },
        // A mobile link whose connections drop every 16 MiB on average: short parts lose little.
        Case {
            name: "dropping link",
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

/// Bytes a second of the files that completed, and the most PUTs that ran at once.
fn run(config: EngineConfig, case: &Case) -> (f64, usize) {
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

fn fixed(slots: usize, part_size: u64) -> EngineConfig {
    EngineConfig {
        slot_rule: Arc::new(FixedSlots(slots)),
        per_file: slots,
        part_size: Some(part_size),
        adapt: None,
        ..EngineConfig::default()
    }
}

#[test]
fn the_adaptive_policy_keeps_up_with_the_best_fixed_setting_on_every_link() {
    // Every fixed setting: 1 to 6 slots (one file may fill them) by parts of 5 to 64 MiB, and
    // the seeds' rule as it was (5 or 3 slots, 3 per file, the companion's 5 MiB parts).
    let mut settings: Vec<(String, EngineConfig)> = (1..=6)
        .flat_map(|slots| {
            [5, 8, 16, 32, 64].map(|part| {
                let name = format!("{slots} slots, {part} MiB parts");
                (name, fixed(slots, part * MIB))
            })
        })
        .collect();
    let seeds = EngineConfig {
        adapt: None,
        ..EngineConfig::default()
    };
    settings.push(("the seeds' rule".into(), seeds));

    let mut table = String::new();
    let mut worst = vec![1.0_f64; settings.len()];
    for case in cases() {
        let fixed: Vec<f64> = settings
            .iter()
            .map(|(_, config)| run(config.clone(), &case).0)
            .collect();
        let best = fixed.iter().copied().fold(0.0, f64::max);
        let (adaptive, max_running) = run(EngineConfig::default(), &case);
        table += &format!(
            "{}: adaptive {:.3}x the best fixed setting ({:.1} MB/s)\n",
            case.name,
            adaptive / best,
            best / 1e6
        );
        for (worst, goodput) in worst.iter_mut().zip(&fixed) {
            *worst = worst.min(goodput / best);
        }
        assert!(
            adaptive >= 0.95 * best,
            "{}: adaptive {:.3}x the best fixed\n{table}",
            case.name,
            adaptive / best
        );
        assert!(max_running <= Adapt::default().max_slots, "{}", case.name);
    }
    for ((name, _), worst) in settings.iter().zip(&worst) {
        table += &format!("{name}: at worst {worst:.3}x the best\n");
    }
    println!("{table}");
    for ((name, _), worst) in settings.iter().zip(worst) {
        assert!(
            worst <= 0.8,
            "{name} loses only {:.0}% on its worst link\n{table}",
            (1.0 - worst) * 100.0
        );
    }
}
