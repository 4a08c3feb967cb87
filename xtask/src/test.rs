//! `cargo xtask test`: every test, as CI runs it.

use crate::build::{build_demo, npm};
use crate::tools::{ensure_bench_tools, ensure_test_tools, ensure_wasm_tools};
use crate::{Result, WASM_TARGET, root, run, run_in, step};

pub fn test() -> Result {
    ensure_wasm_tools()?;
    ensure_test_tools()?;
    step("formatting check");
    run("cargo", &["fmt", "--all", "--check"])?;
    step("clippy, warnings denied: native crates, then the browser crates for wasm");
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--exclude",
            "ferry-wasm",
            "--exclude",
            "ferry-demo",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    run(
        "cargo",
        &[
            "clippy",
            "--target",
            WASM_TARGET,
            "-p",
            "ferry-wasm",
            "-p",
            "ferry-demo",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step("the browser crates' pure functions, natively (ferry-wasm's, the demo's lanes)");
    run(
        "cargo",
        &["test", "-p", "ferry-wasm", "-p", "ferry-demo", "--lib"],
    )?;
    step("Rust tests: engine, store and companion over HTTP, moto, Garage");
    run(
        "cargo",
        &[
            "test",
            "--workspace",
            "--exclude",
            "ferry-wasm",
            "--exclude",
            "ferry-demo",
        ],
    )?;
    let dist = build_demo()?;
    let pkg = npm()?;
    step("TypeScript: the package's .d.ts under tsc --strict");
    run_in(
        &root().join("tests"),
        "npm",
        &["run", "--silent", "typecheck"],
        &[],
    )?;
    step("building the companion and the store for the browser tests");
    run(
        "cargo",
        &["build", "-p", "ferry-companion", "-p", "ferry-store"],
    )?;
    step("end to end in headless Chromium");
    let companion = root().join("target/debug/ferry-companion");
    let store = root().join("target/debug/ferry-store");
    run_in(
        &root().join("tests"),
        "npm",
        &["test"],
        &[
            (
                "FERRY_COMPANION_BIN",
                companion.to_str().ok_or("path is not UTF-8")?,
            ),
            ("FERRY_DIST", dist.to_str().ok_or("path is not UTF-8")?),
            ("FERRY_PKG", pkg.to_str().ok_or("path is not UTF-8")?),
            (
                "FERRY_STORE_BIN",
                store.to_str().ok_or("path is not UTF-8")?,
            ),
        ],
    )?;
    step("a smoke run of the browser benchmark (every peer, small workloads)");
    let bench = ensure_bench_tools()?;
    // Its charts go under target/, so that the smoke run draws them too without touching the
    // committed ones.
    let charts = root().join("target/bench-smoke-charts");
    run_in(
        &bench,
        "node",
        &["browser-bench.mjs"],
        &[
            ("BENCH_SMOKE", "1"),
            ("BENCH_CHARTS", charts.to_str().ok_or("path is not UTF-8")?),
            ("FERRY_PKG", pkg.to_str().ok_or("path is not UTF-8")?),
            (
                "FERRY_STORE_BIN",
                store.to_str().ok_or("path is not UTF-8")?,
            ),
            (
                "FERRY_COMPANION_BIN",
                companion.to_str().ok_or("path is not UTF-8")?,
            ),
        ],
    )
}
