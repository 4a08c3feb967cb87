//! The scheduler's benchmarks, in virtual time: prints JSON (one object per measure) for
//! `cargo xtask bench`, which writes it to `bench/results/` and BENCHMARKS.md.

use std::sync::Arc;
use std::time::Instant;

use ferry_core::plan::{KIB, MIB};
use ferry_core::{EngineConfig, SeedsRule};
use ferry_sim::{Faults, Link, Report, Rng, Sim};
use serde_json::json;

/// 1,000 files of 1 to 20 MiB, the same for every configuration.
fn mixed_batch(sim: &mut Sim) {
    let mut rng = Rng::new(42);
    for _ in 0..1000 {
        sim.add(MIB + rng.next_u64() % (19 * MIB), 0);
    }
}

fn run(config: EngineConfig, link: Link, fill: impl FnOnce(&mut Sim)) -> (Report, f64) {
    let mut sim = Sim::new(config, link, Faults::default());
    fill(&mut sim);
    let started = Instant::now();
    let report = sim.run(&mut |_| {});
    (report, started.elapsed().as_secs_f64())
}

fn main() {
    let slow_prepare = Link {
        prepare_latency: 2.0,
        ..Link::default()
    };

    // 1 and 2: the seeds' dual layer against a single layer (triggers = slots).
    let dual = EngineConfig::default();
    let single = EngineConfig {
        triggers: SeedsRule::default().small_slots,
        ..EngineConfig::default()
    };
    let (dual_report, _) = run(dual.clone(), slow_prepare, mixed_batch);
    let (single_report, _) = run(single, slow_prepare, mixed_batch);

    // 3: many tiny files: engine CPU time and peak live states.
    let (tiny_report, tiny_cpu) = run(EngineConfig::default(), Link::default(), |sim| {
        for _ in 0..20_000 {
            sim.add(64 * KIB, 0);
        }
    });

    // 4: companion calls per part, batched signing against one call per part.
    let large = |sim: &mut Sim| {
        for _ in 0..100 {
            sim.add(50 * MIB, 0);
        }
    };
    let (batched, _) = run(EngineConfig::default(), Link::default(), large);
    let one_by_one = EngineConfig {
        sign_batch: 1,
        slot_rule: Arc::new(SeedsRule::default()),
        ..EngineConfig::default()
    };
    let (unbatched, _) = run(one_by_one, Link::default(), large);

    let per_part = |report: &Report| report.companion_calls as f64 / report.puts as f64;
    let results = json!({
        "dual_vs_single_layer": {
            "files": 1000, "sizes": "1-20 MiB", "prepare_latency_s": 2.0,
            "dual": dual_report, "single": single_report,
            "single_over_dual_time": single_report.elapsed / dual_report.elapsed,
        },
        "slot_idle_fraction": {
            "dual": dual_report.slot_idle_fraction,
            "single": single_report.slot_idle_fraction,
        },
        "tiny_files": {
            "files": 20_000, "size": "64 KiB",
            "engine_and_simulator_cpu_s": tiny_cpu,
            "peak_live": tiny_report.peak_live,
            "virtual_s": tiny_report.elapsed,
        },
        "adaptive_against_fixed": ferry_sim::compare::adaptive_against_fixed(),
        "companion_calls_per_part": {
            "files": 100, "size": "50 MiB",
            "batched_20": per_part(&batched),
            "one_per_part": per_part(&unbatched),
            "ratio": per_part(&unbatched) / per_part(&batched),
        },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&results).expect("JSON of numbers")
    );
}
