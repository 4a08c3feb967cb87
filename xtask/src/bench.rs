//! `cargo xtask bench`: runs the benchmarks into `bench/results/` and writes BENCHMARKS.md.

use std::process::Command;

use crate::build::{build_demo, npm};
use crate::report::{BenchResults, render};
use crate::tools::ensure_bench_tools;
use crate::{Result, captured, root, run, step};

pub fn bench() -> Result {
    let results = root().join("bench/results");
    std::fs::create_dir_all(&results).map_err(|err| err.to_string())?;

    step("scheduler benchmarks in the simulator (virtual time)");
    let scheduler = captured(Command::new("cargo").args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "ferry-sim",
        "--bin",
        "sim-bench",
    ]))?;
    std::fs::write(results.join("scheduler.json"), &scheduler).map_err(|err| err.to_string())?;

    step("building the companion and the store (release) for the signing benchmark");
    run(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "ferry-companion",
            "-p",
            "ferry-store",
        ],
    )?;
    let bench = ensure_bench_tools()?;
    step(
        "signatures per second: Ferry's companion and @uppy/companion side by side (about a minute)",
    );
    let release = root().join("target/release");
    let companion = captured(
        Command::new("node")
            .arg("companion-bench.mjs")
            .current_dir(&bench)
            .env("FERRY_STORE_BIN", release.join("ferry-store"))
            .env("FERRY_COMPANION_BIN", release.join("ferry-companion")),
    )?;
    std::fs::write(results.join("companion.json"), &companion).map_err(|err| err.to_string())?;

    let pkg = npm()?;
    // The demo page, for the workload that drops files on it against the package alone.
    let dist = build_demo()?;
    step(
        "the peers in Chromium: Ferry (with checksums and without), @uppy/aws-s3 6.x and 5.x, @aws-sdk/lib-storage; hashing on the page and in a Worker; then the demo page against Ferry's package alone (several minutes)",
    );
    let browser = captured(
        Command::new("node")
            .arg("browser-bench.mjs")
            .current_dir(&bench)
            .env("FERRY_PKG", &pkg)
            .env("FERRY_DIST", &dist)
            .env("BENCH_CHARTS", &results)
            .env("FERRY_STORE_BIN", release.join("ferry-store"))
            .env("FERRY_COMPANION_BIN", release.join("ferry-companion")),
    )?;
    std::fs::write(results.join("browser.json"), &browser).map_err(|err| err.to_string())?;
    bench_report()
}

/// Writes BENCHMARKS.md from the JSON results of the last run.
pub fn bench_report() -> Result {
    let results = root().join("bench/results");
    let read = |name: &str| {
        std::fs::read_to_string(results.join(name))
            .map_err(|err| format!("bench/results/{name}: {err} (run `cargo xtask bench`)"))
    };
    let results = BenchResults::parse(
        &read("scheduler.json")?,
        &read("browser.json")?,
        &read("companion.json")?,
    )?;
    std::fs::write(root().join("BENCHMARKS.md"), render(&results)?)
        .map_err(|err| err.to_string())?;
    step("wrote BENCHMARKS.md from bench/results/");
    Ok(())
}
