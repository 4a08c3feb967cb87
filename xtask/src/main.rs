//! Dev commands: `cargo xtask demo | test | npm | bench`. Each installs what a fresh machine lacks
//! first, saying what it does, and checks before installing so a second run starts at once.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// wasm-bindgen's CLI must match the `wasm-bindgen` crate exactly.
const WASM_BINDGEN_VERSION: &str = "0.2.130";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("test") => test(),
        Some("npm") => npm().map(drop),
        Some("bench") if args.get(1).is_some_and(|arg| arg == "--report") => bench_report(),
        Some("bench") => bench(),
        _ => Err("usage: cargo xtask <demo | test | npm | bench [--report]>\n  demo  build and serve the demo page with the companion and the embedded store\n  test  run every test: Rust suites, moto, and end to end in headless Chromium\n  npm   build the npm package into pkg/\n  bench run the benchmarks, write bench/results/ and BENCHMARKS.md\n        (--report: only write BENCHMARKS.md again from bench/results/)".into()),
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

fn ensure_wasm_tools() -> Result {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !installed.lines().any(|line| line.trim() == WASM_TARGET) {
        step(&format!("adding the {WASM_TARGET} target"));
        run("rustup", &["target", "add", WASM_TARGET])?;
    }
    let version = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if version.trim() != format!("wasm-bindgen {WASM_BINDGEN_VERSION}") {
        step(&format!(
            "installing wasm-bindgen-cli {WASM_BINDGEN_VERSION} (about 4 minutes, once)"
        ));
        // Not --locked: its lockfile pins a crate the registry no longer serves.
        run(
            "cargo",
            &[
                "install",
                "wasm-bindgen-cli",
                "--version",
                WASM_BINDGEN_VERSION,
            ],
        )?;
    }
    Ok(())
}

fn ensure_test_tools() -> Result {
    if output("cargo", &["clippy", "--version"]).is_none() {
        step("installing clippy");
        run("rustup", &["component", "add", "clippy"])?;
    }
    if !Path::new("/usr/bin/chromium").exists() {
        step("installing Debian's Chromium and ChromeDriver");
        run("apt-get", &["update"])?;
        run_in(
            &root(),
            "apt-get",
            &["install", "-y", "chromium", "chromium-driver"],
            &[("DEBIAN_FRONTEND", "noninteractive")],
        )?;
    }
    if output("moto_server", &["--help"]).is_none() {
        step("installing moto's S3 server (an independent S3 for tests)");
        run(
            "python3",
            &["-m", "pip", "install", "--quiet", "moto[server]"],
        )?;
    }
    let tests = root().join("tests");
    let installed = ["playwright-core", "typescript", "vite"]
        .iter()
        .all(|package| tests.join("node_modules").join(package).exists());
    if !installed {
        step(
            "installing playwright-core (it drives Debian's Chromium; no browser download), TypeScript and Vite",
        );
        // `npm install`, not `npm ci`: this machine's npm omits other platforms' optional
        // packages from the lockfile, and `npm ci` then refuses it.
        run_in(&tests, "npm", &["install", "--no-audit", "--no-fund"], &[])?;
    }
    Ok(())
}

/// Builds a wasm crate in release and runs wasm-bindgen on its `artifact` (a binary keeps the
/// package's hyphens, a library takes underscores) into `out`.
fn build_wasm(package: &str, artifact: &str, out: &Path) -> Result {
    step(&format!("building {package} for the browser"));
    run(
        "cargo",
        &["build", "--release", "--target", WASM_TARGET, "-p", package],
    )?;
    let wasm = root()
        .join("target")
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{artifact}.wasm"));
    let out_dir = out.to_str().ok_or("the output folder is not UTF-8")?;
    run(
        "wasm-bindgen",
        &[
            "--target",
            "web",
            "--out-dir",
            out_dir,
            wasm.to_str().ok_or("path is not UTF-8")?,
        ],
    )
}

/// The demo page, built into `dist/`.
fn build_demo() -> Result<PathBuf> {
    ensure_wasm_tools()?;
    let dist = root().join("dist");
    let _ = std::fs::remove_dir_all(&dist);
    std::fs::create_dir_all(&dist).map_err(|err| err.to_string())?;
    build_wasm("ferry-demo", "ferry-demo", &dist)?;
    for entry in std::fs::read_dir(root().join("www")).map_err(|err| err.to_string())? {
        let entry = entry.map_err(|err| err.to_string())?;
        std::fs::copy(entry.path(), dist.join(entry.file_name())).map_err(|err| err.to_string())?;
    }
    Ok(dist)
}

/// The npm package, built into `pkg/`.
fn npm() -> Result<PathBuf> {
    ensure_wasm_tools()?;
    let pkg = root().join("pkg");
    let _ = std::fs::remove_dir_all(&pkg);
    build_wasm("ferry-wasm", "ferry_wasm", &pkg)?;
    // wasm-bindgen copies the FerryError class into snippets/<crate-hash>/: the entry point
    // re-exports it, so `instanceof FerryError` works for callers.
    let snippets = pkg.join("snippets");
    let snippet_dir = std::fs::read_dir(&snippets)
        .map_err(|err| format!("{}: {err}", snippets.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("ferry-wasm-"))
        .ok_or("wasm-bindgen wrote no ferry-wasm snippet")?;
    let write = |name: &str, text: String| {
        std::fs::write(pkg.join(name), text).map_err(|err| err.to_string())
    };
    write(
        "index.js",
        format!(
            "export {{ default }} from \"./ferry_wasm.js\";\nexport * from \"./ferry_wasm.js\";\nexport {{ FerryError }} from \"./snippets/{snippet_dir}/js/ferry-error.js\";\n"
        ),
    )?;
    write(
        "index.d.ts",
        "export { default } from \"./ferry_wasm.js\";\nexport * from \"./ferry_wasm.js\";\n\n/** Every rejection and `error` event of Ferry: an `Error` with a stable `code` (`TooLarge`,\n * `Cancelled`, `CompanionUnreachable`, `NetworkError`, or the store's S3 code). */\nexport declare class FerryError extends Error {\n  readonly code: string;\n  constructor(code: string, message: string);\n}\n".to_owned(),
    )?;
    write(
        "package.json",
        format!(
            r#"{{
  "name": "ferry-wasm",
  "version": "{version}",
  "description": "Direct multipart uploads from the browser to S3-compatible storage, in Rust and WebAssembly",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "module": "./index.js",
  "main": "./index.js",
  "types": "./index.d.ts",
  "exports": {{
    ".": {{ "types": "./index.d.ts", "import": "./index.js", "default": "./index.js" }},
    "./ferry_wasm_bg.wasm": "./ferry_wasm_bg.wasm"
  }},
  "files": ["index.js", "index.d.ts", "ferry_wasm.js", "ferry_wasm.d.ts", "ferry_wasm_bg.wasm", "ferry_wasm_bg.wasm.d.ts", "snippets"],
  "sideEffects": false
}}
"#,
            version = env!("CARGO_PKG_VERSION")
        ),
    )?;
    let _ = std::fs::remove_file(pkg.join(".gitignore"));
    step(&format!("npm package ready in {}", pkg.display()));
    Ok(pkg)
}

fn demo() -> Result {
    let dist = build_demo()?;
    step("building the companion (release)");
    run("cargo", &["build", "--release", "-p", "ferry-companion"])?;
    let listen = std::env::var("FERRY_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    step(&format!(
        "starting the companion with the embedded store; open http://{listen}/ (Ctrl-C stops it)"
    ));
    let companion = root().join("target/release/ferry-companion");
    let status = Command::new(companion)
        .current_dir(root())
        .env("FERRY_STATIC_DIR", &dist)
        .env("FERRY_LISTEN", &listen)
        .status()
        .map_err(|err| format!("cannot start the companion: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the companion stopped: {status}"))
    }
}

fn test() -> Result {
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
    step("ferry-wasm's pure functions, natively");
    run("cargo", &["test", "-p", "ferry-wasm", "--lib"])?;
    step("Rust tests: engine, store and companion over HTTP, moto");
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

/// The CPU model and core count, for the record of where figures were measured.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cpu}, {cores} cores")
}

fn bench() -> Result {
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

    step(
        "the peers in Chromium: Ferry, @uppy/aws-s3 6.x and 5.x, @aws-sdk/lib-storage (several minutes)",
    );
    let pkg = npm()?;
    let browser = captured(
        Command::new("node")
            .arg("browser-bench.mjs")
            .current_dir(&bench)
            .env("FERRY_PKG", &pkg)
            .env("BENCH_CHARTS", &results)
            .env("FERRY_STORE_BIN", release.join("ferry-store"))
            .env("FERRY_COMPANION_BIN", release.join("ferry-companion")),
    )?;
    std::fs::write(results.join("browser.json"), &browser).map_err(|err| err.to_string())?;
    bench_report()
}

/// Writes BENCHMARKS.md from the JSON results of the last run.
fn bench_report() -> Result {
    let results = root().join("bench/results");
    let read = |name: &str| {
        std::fs::read_to_string(results.join(name))
            .map_err(|err| format!("bench/results/{name}: {err} (run `cargo xtask bench`)"))
    };
    let markdown = format!(
        "{}\n{}\n{}",
        scheduler_markdown(&read("scheduler.json")?)?,
        browser_markdown(&read("browser.json")?)?,
        companion_markdown(&read("companion.json")?)?
    );
    std::fs::write(root().join("BENCHMARKS.md"), markdown).map_err(|err| err.to_string())?;
    step("wrote BENCHMARKS.md from bench/results/");
    Ok(())
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

/// The Node.js side of the benchmarks: @uppy/companion, the browser peers and Vite, installed
/// once; @uppy/aws-s3 5.x keeps its own folder so that its @uppy/core never meets 6.x.
fn ensure_bench_tools() -> Result<PathBuf> {
    let bench = root().join("bench");
    for (dir, probe) in [
        (bench.clone(), "node_modules/@uppy/aws-s3"),
        (bench.join("uppy5"), "node_modules/@uppy/aws-s3"),
    ] {
        if !dir.join(probe).exists() {
            step(&format!(
                "installing the benchmark's peers in {}",
                dir.display()
            ));
            run_in(&dir, "npm", &["install", "--no-audit", "--no-fund"], &[])?;
        }
    }
    Ok(bench)
}

fn browser_markdown(json: &str) -> Result<String> {
    let results: serde_json::Value = serde_json::from_str(json).map_err(|err| err.to_string())?;
    let points = results["points"]
        .as_array()
        .ok_or("no points in the browser results")?;
    let number = |point: &serde_json::Value, name: &str| point[name].as_f64().unwrap_or(f64::NAN);
    let mut out = format!(
        "## In the browser: Ferry and its peers

The same headless Chromium ({chromium}), the same ferry-store on loopback, one run, {machine}.
Every object was read back and its SHA-256 compared (`verified`). Peak memory is Chrome's JS heap
plus, for Ferry, its WebAssembly memory, sampled every 100 ms; slot idle is the share of time,
from the first part PUT to the last one starting, in which fewer PUTs ran than the library's
working concurrency (the most it kept running for at least 5% of that time); requests per part count every request but CORS preflights. Charts: `bench/results/*.png`.
What limits these figures, from profiles of the page: [bench/README.md](bench/README.md).

Settings: {settings}

",
        chromium = results["chromium"].as_str().unwrap_or("Chromium"),
        machine = results["machine"].as_str().unwrap_or(""),
        settings = results["settings"]
            .as_object()
            .map(|settings| settings
                .iter()
                .map(|(name, value)| format!("**{name}**: {}", value.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; "))
            .unwrap_or_default(),
    );
    let mut workloads: Vec<&str> = Vec::new();
    for point in points {
        let workload = point["workload"].as_str().unwrap_or("");
        if !workloads.contains(&workload) {
            workloads.push(workload);
        }
    }
    for workload in workloads {
        let here: Vec<&serde_json::Value> = points
            .iter()
            .filter(|point| point["workload"] == workload)
            .collect();
        let ferry = here
            .iter()
            .find(|point| point["library"] == "ferry" && point["failed"].is_null());
        out += &format!(
            "### {workload}\n\n| library | seconds | MB/s | files/s | peak memory MiB | slot idle % | page CPU s | store req/part | companion req/part | verified | Ferry is |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        );
        for point in &here {
            let library = point["library"].as_str().unwrap_or("");
            if let Some(failure) = point["failed"].as_str() {
                out += &format!(
                    "| {library} | failed: {} | | | | | | | | | |\n",
                    failure.lines().next().unwrap_or("")
                );
                continue;
            }
            // Against a peer: how many times as fast Ferry is. Against the raw limit of a native
            // client: the share of it Ferry reaches.
            let ratio = match ferry {
                Some(ferry) if library.starts_with("raw") => format!(
                    "at **{:.2}x** of the raw limit",
                    number(point, "seconds") / number(ferry, "seconds")
                ),
                Some(ferry) if library != "ferry" => format!(
                    "**{:.2}x** as fast",
                    number(point, "seconds") / number(ferry, "seconds")
                ),
                _ => String::new(),
            };
            // A figure the point has, with `decimals`; "—" where it has none (the raw limit).
            let cell = |name: &str, scale: f64, decimals: usize| match point[name].as_f64() {
                Some(value) => format!("{:.decimals$}", value * scale),
                None => "—".to_owned(),
            };
            let files_per_second = number(point, "files_per_second");
            out += &format!(
                "| {library} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {ratio} |\n",
                cell("seconds", 1.0, 2),
                cell("mb_per_second", 1.0, 1),
                cell(
                    "files_per_second",
                    1.0,
                    if files_per_second < 10.0 { 2 } else { 0 }
                ),
                cell("peak_memory_mib", 1.0, 1),
                cell("slot_idle_fraction", 100.0, 1),
                cell("page_cpu_seconds", 1.0, 2),
                cell("store_requests_per_part", 1.0, 2),
                cell("companion_requests_per_part", 1.0, 2),
                point["verified"].as_str().unwrap_or("—"),
            );
        }
        out += "\n";
    }
    out += &goals_markdown(points);
    Ok(out)
}

/// The issue's goals, each against the figures of this run (measured, never asserted).
fn goals_markdown(points: &[serde_json::Value]) -> String {
    let seconds = |point: &serde_json::Value| point["seconds"].as_f64().unwrap_or(f64::NAN);
    let of = |workload: &str| -> Vec<&serde_json::Value> {
        points
            .iter()
            .filter(|point| point["workload"] == workload && point["failed"].is_null())
            .collect()
    };
    fn ferry_in<'a>(here: &[&'a serde_json::Value]) -> Option<&'a serde_json::Value> {
        here.iter()
            .copied()
            .find(|point| point["library"] == "ferry")
    }
    /// The fastest peer that finished, as (name, seconds).
    fn best_peer<'a>(here: &[&'a serde_json::Value]) -> Option<(&'a str, f64)> {
        here.iter()
            .filter(|point| point["library"] != "ferry" && point["library"] != "raw native PUTs")
            .map(|point| {
                let seconds = point["seconds"].as_f64().unwrap_or(f64::NAN);
                (point["library"].as_str().unwrap_or(""), seconds)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
    let verdict = |met: bool| if met { "yes" } else { "**no**" };
    let mut rows = Vec::new();
    let large = of("one large file");
    if let Some(ferry) = ferry_in(&large) {
        if let Some(raw) = large
            .iter()
            .find(|point| point["library"] == "raw native PUTs")
        {
            let share = seconds(raw) / seconds(ferry);
            rows.push(format!(
                "| 1 GiB at ≥ 0.9x the raw limit | {share:.2}x | {} |",
                verdict(share >= 0.9)
            ));
        }
        if let Some((peer, peer_seconds)) = best_peer(&large) {
            let ratio = peer_seconds / seconds(ferry);
            rows.push(format!(
                "| 1 GiB at ≥ 1.3x the best peer ({peer}) | {ratio:.2}x | {} |",
                verdict(ratio >= 1.3)
            ));
        }
    }
    let small = of("many small files");
    if let (Some(ferry), Some((peer, peer_seconds))) = (ferry_in(&small), best_peer(&small)) {
        let ratio = peer_seconds / seconds(ferry);
        rows.push(format!(
            "| 2,000 × 64 KiB at ≥ 2x the best peer's files/s ({peer}) | {ratio:.2}x | {} |",
            verdict(ratio >= 2.0)
        ));
    }
    if let Some(ferry) = ferry_in(&of("very many tiny files")) {
        let memory = ferry["peak_memory_mib"].as_f64().unwrap_or(f64::NAN);
        rows.push(format!(
            "| 20,000 × 4 KiB completes with peak memory ≤ 64 MiB | {memory:.1} MiB | {} |",
            verdict(memory <= 64.0)
        ));
    }
    let most_calls = points
        .iter()
        .filter(|point| point["library"] == "ferry")
        .filter_map(|point| point["companion_requests_per_part"].as_f64())
        .fold(f64::NAN, f64::max);
    if !most_calls.is_nan() {
        rows.push(format!(
            "| at most 1.1 companion requests per part (Ferry's worst workload) | {most_calls:.2} | {} |",
            verdict(most_calls <= 1.1)
        ));
    }
    format!(
        "### Against the goals\n\n| goal | this run | met |\n|---|---|---|\n{}\n\n",
        rows.join("\n")
    )
}

fn companion_markdown(json: &str) -> Result<String> {
    let results: serde_json::Value = serde_json::from_str(json).map_err(|err| err.to_string())?;
    let points = results["points"]
        .as_array()
        .ok_or("no points in the companion results")?;
    let find = |peer: &str, mode: &str, concurrency: u64| {
        points
            .iter()
            .find(|point| {
                point["peer"] == peer
                    && point["mode"] == mode
                    && point["concurrency"] == concurrency
            })
            .ok_or(format!("no {peer} {mode} point at {concurrency}"))
    };
    let mut rows = String::new();
    for mode in ["one", "batch"] {
        for concurrency in [1, 64, 512] {
            let (ferry, uppy) = (
                find("ferry", mode, concurrency)?,
                find("uppy", mode, concurrency)?,
            );
            let rate =
                |point: &serde_json::Value| point["signatures_per_second"].as_f64().unwrap_or(0.0);
            let p99 = |point: &serde_json::Value| point["p99_ms"].as_f64().unwrap_or(0.0);
            let failures = |point: &serde_json::Value| point["failures"].as_u64().unwrap_or(0);
            rows += &format!(
                "| {} | {concurrency} | {:.0} | {:.1} | {:.0} | {:.1} | **{:.1}x** | {} / {} |\n",
                if mode == "one" { "1 part" } else { "100 parts" },
                rate(ferry),
                p99(ferry),
                rate(uppy),
                p99(uppy),
                rate(ferry) / rate(uppy).max(f64::MIN_POSITIVE),
                failures(ferry),
                failures(uppy),
            );
        }
    }
    Ok(format!(
        "## Companion: signatures per second and p99 latency

Ferry's companion (release build) and @uppy/companion 6.2.2 (its S3 multipart routes: one part per
`GET /s3/multipart/{{id}}/{{n}}`, 100 per `/batch`), both signing for the same ferry-store on
loopback, measured one after the other in one run, {seconds} s per point, by a Node.js load
generator on the same {machine}. Ferry's admission control was set wide (1,024 running, 4,096
waiting) so that it measures signing, not refusals. Non-200 answers are counted as failures.

| per request | clients | Ferry sig/s | Ferry p99 ms | Uppy sig/s | Uppy p99 ms | Ferry / Uppy | failures (Ferry / Uppy) |
|---|---|---|---|---|---|---|---|
{rows}",
        seconds = results["seconds_per_point"],
        machine = results["machine"].as_str().unwrap_or("machine"),
    ))
}

fn scheduler_markdown(json: &str) -> Result<String> {
    let results: serde_json::Value = serde_json::from_str(json).map_err(|err| err.to_string())?;
    let number = |path: &str| {
        results
            .pointer(path)
            .and_then(serde_json::Value::as_f64)
            .ok_or(format!("no {path} in the bench results"))
    };
    let dual_time = number("/dual_vs_single_layer/dual/elapsed")?;
    let ratio = number("/dual_vs_single_layer/single_over_dual_time")?;
    let idle_dual = number("/slot_idle_fraction/dual")?;
    let idle_single = number("/slot_idle_fraction/single")?;
    let tiny_cpu = number("/tiny_files/engine_and_simulator_cpu_s")?;
    let tiny_live = number("/tiny_files/peak_live")?;
    let batched = number("/companion_calls_per_part/batched_20")?;
    let one = number("/companion_calls_per_part/one_per_part")?;
    Ok(format!(
        "# Benchmarks

Produced by `cargo xtask bench` on {machine}. Raw results: `bench/results/`. Figures from one
run; compare them as ratios, not as absolute numbers.

## Scheduler (ferry-sim: the real engine in virtual time)

The link is modelled at 100 Mbit/s shared by the PUTs moving bytes, 40 ms per request and per
companion call. Figures from one run, side by side.

| measure | result |
|---|---|
| 1,000 files of 1–20 MiB, 2 s preparation per file: single layer (triggers = slots) time / dual layer (10 triggers, 3–5 slots) time | **{ratio:.3}x** (dual: {dual_time:.0} virtual s) |
| slot idle fraction while parts remain, dual layer with prefetched signing (goal < 2%) | **{idle_dual_pct:.3}%** (single layer: {idle_single_pct:.1}%) |
| 20,000 files of 64 KiB: CPU time of engine and simulator together | **{tiny_cpu:.3} s**, peak live per-file states **{tiny_live}** |
| companion calls per part, 100 files of 50 MiB: batched signing (20 a call) / one sign call per part | **{batched:.2}** / {one:.2} |

Reading: with a link shared by all PUTs, a single layer loses time only while every slot waits
for a file to be prepared; the dual layer keeps the slots busy (idle {idle_dual_pct:.3}% against
{idle_single_pct:.1}%), which here is worth {gain:.1}% of total time.
",
        machine = machine(),
        idle_dual_pct = idle_dual * 100.0,
        idle_single_pct = idle_single * 100.0,
        gain = (ratio - 1.0) * 100.0,
    ))
}
