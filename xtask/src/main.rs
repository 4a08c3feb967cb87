//! Dev commands: `cargo xtask demo | test | npm | bench`. Each installs what a fresh machine lacks
//! first, saying what it does, and checks before installing so a second run starts at once.
//!
//! One module per chore: `tools` (installing), `build` (page, package, demo), `test`, `bench`
//! (running the benchmarks) and `report` (BENCHMARKS.md from their typed results).

mod bench;
mod build;
mod imports;
mod report;
mod test;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// wasm-bindgen's CLI must match the `wasm-bindgen` crate exactly.
const WASM_BINDGEN_VERSION: &str = "0.2.130";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => build::demo(),
        Some("test") => test::test(),
        Some("npm") => build::npm().map(drop),
        Some("bench") if args.get(1).is_some_and(|arg| arg == "--report") => bench::bench_report(),
        Some("bench") => bench::bench(),
        Some("size") => bench::size(),
        _ => Err("usage: cargo xtask <demo | test | npm | bench [--report] | size>\n  demo  build and serve the demo page with the companion and the embedded store\n  test  run every test: Rust suites, moto, Garage, and end to end in headless Chromium\n  npm   build the npm package into pkg/\n  bench run the benchmarks, write bench/results/ and BENCHMARKS.md\n        (--report: only write BENCHMARKS.md again from bench/results/)\n  size  measure only the npm package's size into bench/results/, and write BENCHMARKS.md again".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // `cargo run` tells where this checkout is; the path compiled in may be another checkout's
    // that shares the target folder.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn step(message: &str) {
    eprintln!("\n==> {message}");
}

/// Runs a command in the workspace root, streaming its output; fails with the command line.
fn run(program: &str, args: &[&str]) -> Result {
    run_in(&root(), program, args, &[])
}

fn run_in(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .status()
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

/// The command's standard output, if it ran and succeeded.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command in the workspace root, letting its stderr through, and returns its stdout.
fn captured(command: &mut Command) -> Result<String> {
    if command.get_current_dir().is_none() {
        command.current_dir(root());
    }
    let out = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|err| format!("cannot run {:?}: {err}", command.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({})",
            command.get_program(),
            out.status
        ));
    }
    String::from_utf8(out.stdout).map_err(|err| err.to_string())
}
