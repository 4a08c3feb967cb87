//! BENCHMARKS.md, rendered from the typed results the benchmarks write to `bench/results/`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Result;

/// Everything one `cargo xtask bench` run measured.
#[derive(Debug, Deserialize)]
pub struct BenchResults {
    pub scheduler: SchedulerResults,
    pub browser: BrowserResults,
    pub companion: CompanionResults,
    /// The npm package's size (none in older runs).
    pub size: Option<PackageSize>,
}

/// `size.json`: the npm package's files, raw and gzipped, and what its wasm is made of.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct PackageSize {
    pub files: Vec<PackageFile>,
    /// Shallow bytes per crate in the shipped wasm, named (the names tell whose code a function
    /// is), largest first.
    pub crates: Vec<CrateShare>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
pub struct PackageFile {
    pub name: String,
    pub bytes: u64,
    pub gzip_bytes: u64,
}

#[derive(Debug, Deserialize, serde::Serialize)]
pub struct CrateShare {
    /// A crate's name, "data" for the data segments, "other" for the rest.
    pub name: String,
    pub bytes: u64,
}

impl PackageSize {
    fn gzip_total(&self) -> u64 {
        self.files.iter().map(|file| file.gzip_bytes).sum()
    }
}

/// The budget for the whole package, gzipped.
const PACKAGE_BUDGET_KIB: f64 = 100.0;

/// `scheduler.json`: the simulator's figures.
#[derive(Debug, Deserialize)]
pub struct SchedulerResults {
    pub dual_vs_single_layer: DualVsSingle,
    pub slot_idle_fraction: Idle,
    pub tiny_files: TinyFiles,
    pub companion_calls_per_part: CallsPerPart,
    /// The adaptive policy against every fixed setting, link by link (none in older runs).
    #[serde(default)]
    pub adaptive_against_fixed: Vec<AdaptiveOutcome>,
}

/// One link of `ferry_sim::compare`: goodputs as ratios to the best fixed setting's.
#[derive(Debug, Deserialize)]
pub struct AdaptiveOutcome {
    pub link: String,
    /// Bytes a second.
    pub best_fixed: f64,
    pub best_fixed_setting: String,
    pub adaptive_over_best: f64,
    pub seeds_over_best: f64,
    pub fixed_over_best: Vec<f64>,
}

#[derive(Debug, Deserialize)]
pub struct DualVsSingle {
    pub dual: SimRun,
    pub single_over_dual_time: f64,
}

#[derive(Debug, Deserialize)]
pub struct SimRun {
    /// Virtual seconds.
    pub elapsed: f64,
}

#[derive(Debug, Deserialize)]
pub struct Idle {
    pub dual: f64,
    pub single: f64,
}

#[derive(Debug, Deserialize)]
pub struct TinyFiles {
    pub engine_and_simulator_cpu_s: f64,
    pub peak_live: u64,
}

#[derive(Debug, Deserialize)]
pub struct CallsPerPart {
    pub batched_20: f64,
    pub one_per_part: f64,
}

/// The workload that drops small files on the demo page and uploads them through the npm package
/// alone, side by side; its points carry the main thread's figures too.
const PAGE_WORKLOAD: &str = "the demo page keeps up";
/// The point of [`PAGE_WORKLOAD`] that is the demo page (the other is `ferry`, the package alone).
const PAGE: &str = "demo page";

/// `browser.json`: the libraries in Chromium.
#[derive(Debug, Deserialize)]
pub struct BrowserResults {
    pub chromium: String,
    pub machine: String,
    pub settings: BTreeMap<String, String>,
    pub points: Vec<BrowserPoint>,
    /// The large file hashed alone, each way the bench page offers (none in older runs).
    #[serde(default)]
    pub hashing: Vec<HashingPoint>,
}

/// One way of hashing the large file, on its own: its speed and the page's longest task.
#[derive(Debug, Deserialize)]
pub struct HashingPoint {
    pub method: String,
    pub seconds: f64,
    pub mb_per_second: f64,
    /// The main thread's longest long task while it hashed (0: none over 50 ms).
    pub longest_task_ms: f64,
    /// Whose code ran in that task (the long animation frames' scripts over 5 ms).
    pub longest_task_scripts: Option<String>,
}

/// One library on one workload; a failed run has only `failed`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BrowserPoint {
    pub library: String,
    pub workload: String,
    pub failed: Option<String>,
    pub seconds: Option<f64>,
    pub mb_per_second: Option<f64>,
    pub files_per_second: Option<f64>,
    pub peak_memory_mib: Option<f64>,
    pub slot_idle_fraction: Option<f64>,
    pub page_cpu_seconds: Option<f64>,
    pub store_requests_per_part: Option<f64>,
    pub companion_requests_per_part: Option<f64>,
    pub verified: Option<String>,
    /// The longest main-thread long task that overlapped the upload ([`PAGE_WORKLOAD`] only; 0:
    /// none, a long task being one over 50 ms).
    pub longest_task_ms: Option<f64>,
    /// Whose code ran in that task: the scripts over 5 ms of the long animation frames that
    /// overlap it, longest first.
    pub longest_task_scripts: Option<String>,
    /// Main-thread long tasks over 100 ms during the upload ([`PAGE_WORKLOAD`] only).
    pub long_tasks_over_100_ms: Option<u64>,
    /// The most elements the page held (`document.getElementsByTagName('*').length`, sampled
    /// every 100 ms; [`PAGE_WORKLOAD`] only).
    pub peak_dom_nodes: Option<u64>,
    /// The demo page's task that set the files on its input and dispatched `change`: the
    /// browser building the FileList, left out of `longest_task_ms`.
    pub input_task_ms: Option<f64>,
    /// The same files set on a bare input with an empty `change` handler, in this run.
    pub input_floor_ms: Option<f64>,
    /// Every run's seconds, for a library that ran several times (the point is the median run,
    /// with the longest task of them all).
    pub runs_seconds: Option<Vec<f64>>,
}

impl BrowserPoint {
    fn seconds(&self) -> f64 {
        self.seconds.unwrap_or(f64::NAN)
    }
}

/// `companion.json`: signatures per second, Ferry's companion and @uppy/companion.
#[derive(Debug, Deserialize)]
pub struct CompanionResults {
    pub seconds_per_point: u64,
    pub machine: String,
    pub points: Vec<CompanionPoint>,
}

#[derive(Debug, Deserialize)]
pub struct CompanionPoint {
    pub peer: String,
    pub mode: String,
    pub concurrency: u64,
    pub failures: u64,
    pub signatures_per_second: f64,
    pub p99_ms: f64,
}

impl BenchResults {
    /// Reads the JSON files a run wrote (`size.json` is missing from older runs).
    pub fn parse(
        scheduler: &str,
        browser: &str,
        companion: &str,
        size: Option<&str>,
    ) -> Result<Self> {
        let read = |what: &str, err: serde_json::Error| format!("{what}: {err}");
        Ok(Self {
            scheduler: serde_json::from_str(scheduler)
                .map_err(|err| read("scheduler.json", err))?,
            browser: serde_json::from_str(browser).map_err(|err| read("browser.json", err))?,
            companion: serde_json::from_str(companion)
                .map_err(|err| read("companion.json", err))?,
            size: size
                .map(serde_json::from_str)
                .transpose()
                .map_err(|err| read("size.json", err))?,
        })
    }
}

/// BENCHMARKS.md for `results`.
pub fn render(results: &BenchResults) -> Result<String> {
    Ok(format!(
        "{}\n{}\n{}{}",
        scheduler_markdown(&results.scheduler, &results.browser.machine),
        browser_markdown(&results.browser, results.size.as_ref()),
        companion_markdown(&results.companion)?,
        results.size.as_ref().map(size_markdown).unwrap_or_default(),
    ))
}

fn browser_markdown(results: &BrowserResults, size: Option<&PackageSize>) -> String {
    let points = &results.points;
    let mut out = format!(
        "## In the browser: Ferry and its peers

The same headless Chromium ({chromium}), the same ferry-store on loopback, one run, {machine}.
Every object was read back and its SHA-256 compared (`verified`). Peak memory is Chrome's JS heap
plus, for Ferry, its WebAssembly memory, sampled every 100 ms; slot idle is the share of time,
from the first part upload (a PUT, or a POST form) to the last one starting, in which fewer ran
than the library's working concurrency (the most it kept running for at least 5% of that time);
requests per part count every request but CORS preflights. The throttled workloads reach every
server through an HTTP proxy (`bench/throttle.mjs`) that adds 40 ms to each request, preflights
included, and shares 100 Mbit/s each way; DevTools' network emulation delays no preflight.
Charts: `bench/results/*.png`.
What limits these figures, from profiles of the page: [bench/README.md](bench/README.md).

Settings: {settings}

",
        chromium = results.chromium,
        machine = results.machine,
        settings = results
            .settings
            .iter()
            .map(|(name, value)| format!("**{name}**: {value}"))
            .collect::<Vec<_>>()
            .join("; "),
    );
    let mut workloads: Vec<&str> = Vec::new();
    for point in points {
        // The demo page against the package has its own table, below.
        if point.workload != PAGE_WORKLOAD && !workloads.contains(&point.workload.as_str()) {
            workloads.push(&point.workload);
        }
    }
    for workload in workloads {
        let here: Vec<&BrowserPoint> = points
            .iter()
            .filter(|point| point.workload == workload)
            .collect();
        let ferry = here
            .iter()
            .find(|point| point.library == "ferry" && point.failed.is_none());
        out += &format!(
            "### {workload}\n\n| library | seconds | MB/s | files/s | peak memory MiB | slot idle % | page CPU s | store req/part | companion req/part | verified | Ferry is |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        );
        for point in &here {
            let library = point.library.as_str();
            if let Some(failure) = &point.failed {
                out += &format!(
                    "| {library} | failed: {} | | | | | | | | | |\n",
                    failure.lines().next().unwrap_or("")
                );
                continue;
            }
            // Against a peer: how many times as fast Ferry is. Against the raw limit of a native
            // client or the in-browser ceiling: the share of it Ferry reaches.
            let ratio = match ferry {
                Some(ferry) if library.starts_with("raw") => format!(
                    "at **{:.2}x** of the raw limit",
                    point.seconds() / ferry.seconds()
                ),
                Some(ferry) if is_ceiling(library) => {
                    format!("at **{:.2}x** of it", point.seconds() / ferry.seconds())
                }
                Some(ferry) if library != "ferry" => {
                    format!("**{:.2}x** as fast", point.seconds() / ferry.seconds())
                }
                _ => String::new(),
            };
            // A figure the point has, with `decimals`; "—" where it has none (the raw limit).
            let cell = |value: Option<f64>, scale: f64, decimals: usize| match value {
                Some(value) => format!("{:.decimals$}", value * scale),
                None => "—".to_owned(),
            };
            let files_decimals = if point.files_per_second.unwrap_or(f64::NAN) < 10.0 {
                2
            } else {
                0
            };
            out += &format!(
                "| {library} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {ratio} |\n",
                cell(point.seconds, 1.0, 2),
                cell(point.mb_per_second, 1.0, 1),
                cell(point.files_per_second, 1.0, files_decimals),
                cell(point.peak_memory_mib, 1.0, 1),
                cell(point.slot_idle_fraction, 100.0, 1),
                cell(point.page_cpu_seconds, 1.0, 2),
                cell(point.store_requests_per_part, 1.0, 2),
                cell(point.companion_requests_per_part, 1.0, 2),
                point.verified.as_deref().unwrap_or("—"),
            );
        }
        out += "\n";
    }
    out += &hashing_markdown(&results.hashing);
    out += &page_markdown(points);
    out += &goals_markdown(points, size);
    out
}

/// A goal's cell: met or not.
fn verdict(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

/// The in-browser ceiling: signed in advance, then parallel XHR PUTs (`bench/browser/main.js`).
fn is_ceiling(library: &str) -> bool {
    library.starts_with("in-browser raw")
}

/// The npm package's files and what its wasm is made of.
fn size_markdown(size: &PackageSize) -> String {
    let mut out = "## The npm package's size

What a page that imports `ferry-wasm` downloads: each file of `pkg/` as `cargo xtask npm` builds
it (the `wasm-package` profile, `opt-level = \"z\"`, with Talc as the allocator; `wasm-opt -Oz`
inlining a function with one caller only while it is small, without the names section; the
imports renamed short in the wasm and its glue; the JavaScript minified by esbuild), raw and
gzipped (level 9).

| file | bytes | gzipped |\n|---|---|---|\n"
        .to_owned();
    for file in &size.files {
        out += &format!("| {} | {} | {} |\n", file.name, file.bytes, file.gzip_bytes);
    }
    out += &format!(
        "| **all** | {} | **{:.1} KiB** |\n\nWhose code the wasm is, by shallow bytes per crate (twiggy, on the shipped code with its function names kept, so code wasm-opt inlined counts under its caller; \"data\" is the data segments, strings and tables, and wasm-bindgen's shims and imports its glue):\n\n| crate | bytes | share |\n|---|---|---|\n",
        size.files.iter().map(|file| file.bytes).sum::<u64>(),
        size.gzip_total() as f64 / 1024.0
    );
    let total: u64 = size.crates.iter().map(|share| share.bytes).sum();
    for share in &size.crates {
        out += &format!(
            "| {} | {} | {:.1}% |\n",
            share.name,
            share.bytes,
            share.bytes as f64 * 100.0 / total.max(1) as f64
        );
    }
    out + "\n"
}

/// The large file hashed alone, each way: what ARCHITECTURE.md's choice of where to hash rests on.
fn hashing_markdown(hashing: &[HashingPoint]) -> String {
    if hashing.is_empty() {
        return String::new();
    }
    let mut out = "### hashing the large file alone

The file of the first workload hashed in the bench page without uploading it, one way after
another: CRC32C by Ferry's `checksum()` on the page (the bytes' stream, yielding to the page after
each MiB hashed) and in a module Worker started before the clock (where Ferry's uploads hash
parts of a MiB and more), and SHA-256 by WebCrypto one 5 MiB part at a time (what Ferry does with
`sha256`). The longest task is the main thread's longest `longtask` entry (a task over 50 ms)
while it hashed; in it, the scripts of the long animation frames that overlap it (each over
5 ms: what called it, its function and file).

| method | seconds | MB/s | longest main-thread task ms | in it |\n|---|---|---|---|---|\n"
        .to_owned();
    for point in hashing {
        out += &format!(
            "| {} | {:.2} | {:.0} | {} | {} |\n",
            point.method,
            point.seconds,
            point.mb_per_second,
            longest_task(point.longest_task_ms),
            point.longest_task_scripts.as_deref().unwrap_or("—")
        );
    }
    out + "\n"
}

/// Each side's runs when both ran more than once: " (median runs; with 17.1, 16.9 s, without
/// 15.0, 15.2 s)".
fn runs_note(first: (&str, &BrowserPoint), second: (&str, &BrowserPoint)) -> String {
    match (&first.1.runs_seconds, &second.1.runs_seconds) {
        (Some(a), Some(b)) => format!(
            " (median runs; {} {} s, {} {} s)",
            first.0,
            seconds_list(a),
            second.0,
            seconds_list(b)
        ),
        _ => String::new(),
    }
}

/// Runs' seconds, in the order they ran: "17.1, 16.9, 18.0".
fn seconds_list(runs: &[f64]) -> String {
    runs.iter()
        .map(|seconds| format!("{seconds:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A longest long task as a cell: "< 50" when there was none (a long task is one over 50 ms).
fn longest_task(ms: f64) -> String {
    if ms > 0.0 {
        format!("{ms:.0}")
    } else {
        "< 50".to_owned()
    }
}

/// The demo page against Ferry's npm package alone, with the page's main thread; nothing when the
/// run did not measure it.
fn page_markdown(points: &[BrowserPoint]) -> String {
    let here: Vec<&BrowserPoint> = points
        .iter()
        .filter(|point| point.workload == PAGE_WORKLOAD)
        .collect();
    if here.is_empty() {
        return String::new();
    }
    let alone = here
        .iter()
        .find(|point| point.library == "ferry" && point.failed.is_none());
    let mut out = format!(
        "### {PAGE_WORKLOAD}

The same 2,000 files of 64 KiB dropped on the demo page (crates/ferry-demo, served by Ferry's
companion) through its own file input, and uploaded through the npm package alone, taking turns
in this run (three runs each); each row is its median run, with the worst run's long tasks. The
page's time runs from its input's `change` until its totals bar counts every file stored; the
package's from its first call until every upload resolved. Long tasks are the main thread's
`longtask` entries (a PerformanceObserver installed before the page's scripts) that overlap the
upload, leaving out the page's one task that set the files on its input and dispatched `change`
(Chromium builds the FileList there, a stat per file: the input task column, with the same files
on a bare input with an empty handler beside it); elements are
`document.getElementsByTagName('*').length`, sampled every 100 ms.

| run | seconds | files/s | time / package's | longest task ms | tasks over 100 ms | input task ms (bare input) | peak elements | peak memory MiB | page CPU s | companion req/part | verified |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for point in &here {
        let run = match point.library.as_str() {
            "ferry" => "the npm package alone",
            PAGE => "the demo page",
            other => other,
        };
        if let Some(failure) = &point.failed {
            out += &format!(
                "| {run} | failed: {} | | | | | | | | | | |\n",
                failure.lines().next().unwrap_or("")
            );
            continue;
        }
        let cell = |value: Option<f64>, decimals: usize| match value {
            Some(value) => format!("{value:.decimals$}"),
            None => "—".to_owned(),
        };
        let ratio = match alone {
            Some(alone) if point.library != "ferry" => {
                format!("**{:.2}x**", point.seconds() / alone.seconds())
            }
            _ => String::new(),
        };
        out += &format!(
            "| {run} | {} | {} | {ratio} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(point.seconds, 2),
            cell(point.files_per_second, 0),
            point.longest_task_ms.map_or("—".to_owned(), longest_task),
            point
                .long_tasks_over_100_ms
                .map_or("—".to_owned(), |count| count.to_string()),
            match (point.input_task_ms, point.input_floor_ms) {
                (Some(task), Some(floor)) => format!("{task:.0} ({floor:.0})"),
                _ => "—".to_owned(),
            },
            point
                .peak_dom_nodes
                .map_or("—".to_owned(), |count| count.to_string()),
            cell(point.peak_memory_mib, 1),
            cell(point.page_cpu_seconds, 2),
            cell(point.companion_requests_per_part, 2),
            point.verified.as_deref().unwrap_or("—"),
        );
    }
    out + "\n"
}

/// Ferry in the failing workload with nothing failed: what the failures cost.
const UNFAILED: &str = "ferry (no failures)";
/// The workload where round trips per file decide.
const THROTTLED_SMALL: &str = "many small files on a throttled link";
/// Ferry through a companion with checksums off (`bench/browser-bench.mjs`).
const UNCHECKED: &str = "ferry (checksums off)";
/// Ferry on a page that cannot start Workers: every part hashed on the page's thread.
const HASHED_ON_PAGE: &str = "ferry (hashing on the page)";

/// The goals, each against the figures of this run (measured, never asserted).
fn goals_markdown(points: &[BrowserPoint], size: Option<&PackageSize>) -> String {
    let of = |workload: &str| -> Vec<&BrowserPoint> {
        points
            .iter()
            .filter(|point| point.workload == workload && point.failed.is_none())
            .collect()
    };
    fn ferry_in<'a>(here: &[&'a BrowserPoint]) -> Option<&'a BrowserPoint> {
        here.iter().copied().find(|point| point.library == "ferry")
    }
    /// The fastest peer that finished, as (name, seconds).
    fn best_peer<'a>(here: &[&'a BrowserPoint]) -> Option<(&'a str, f64)> {
        here.iter()
            .filter(|point| {
                !point.library.starts_with("ferry")
                    && point.library != "raw native PUTs"
                    && !is_ceiling(&point.library)
            })
            .map(|point| (point.library.as_str(), point.seconds()))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
    /// The in-browser ceiling: the faster of its runs (6 or 3 PUTs), as (name, point).
    fn ceiling<'a>(here: &[&'a BrowserPoint]) -> Option<&'a BrowserPoint> {
        here.iter()
            .copied()
            .filter(|point| is_ceiling(&point.library))
            .min_by(|a, b| a.seconds().total_cmp(&b.seconds()))
    }
    /// The row of Ferry's share of the ceiling in `here`: `goal` met at `at_least`.
    fn against_ceiling(rows: &mut Vec<String>, here: &[&BrowserPoint], goal: &str, at_least: f64) {
        if let (Some(ferry), Some(raw)) = (ferry_in(here), ceiling(here)) {
            let share = raw.seconds() / ferry.seconds();
            let runs = runs_note(("Ferry", ferry), (&raw.library, raw));
            // The ceiling hashes nothing: Ferry without checksums, where it ran, is its match.
            let unchecked = here.iter().find(|point| point.library == UNCHECKED).map_or(
                String::new(),
                |unchecked| {
                    format!(
                        "; checksums off {:.2}x",
                        raw.seconds() / unchecked.seconds()
                    )
                },
            );
            rows.push(format!(
                "| {goal} at ≥ {at_least}x the in-browser ceiling ({}) | {share:.2}x{runs}{unchecked} | {} |",
                raw.library,
                verdict(share >= at_least)
            ));
        }
    }
    let mut rows = Vec::new();
    let large = of("one large file");
    against_ceiling(&mut rows, &large, "1 GiB", 0.95);
    if let Some(ferry) = ferry_in(&large) {
        let unchecked = large.iter().find(|point| point.library == UNCHECKED);
        let on_page = large.iter().find(|point| point.library == HASHED_ON_PAGE);
        if let Some(unchecked) = unchecked {
            for (how, hashed) in [("", Some(ferry)), (" hashed on the page", on_page.copied())] {
                let Some(hashed) = hashed else { continue };
                let share = unchecked.seconds() / hashed.seconds();
                let runs = runs_note(("with", hashed), ("without", unchecked));
                rows.push(format!(
                    "| 1 GiB with checksums{how} at ≥ 0.9x the throughput without | {share:.2}x{runs} | {} |",
                    verdict(share >= 0.9)
                ));
            }
        }
        if let Some(longest) = ferry.longest_task_ms {
            // The same figure of the other runs, the ceiling's among them (its handler only
            // keeps an ETag), tells what the machine does to the page anyway.
            let ceilings = large.iter().filter(|point| is_ceiling(&point.library));
            let others: String = [
                ("hashed on the page", on_page),
                ("checksums off", unchecked),
            ]
            .into_iter()
            .chain(ceilings.map(|point| (point.library.as_str(), Some(point))))
            .filter_map(|(how, point)| Some(format!("; {how} {:.0} ms", point?.longest_task_ms?)))
            .collect();
            let scripts = ferry
                .longest_task_scripts
                .as_ref()
                .map_or(String::new(), |scripts| format!(" (in it: {scripts})"));
            rows.push(format!(
                "| 1 GiB hashed with no main-thread task over 50 ms | longest {longest:.0} ms{scripts}{others} | {} |",
                verdict(longest <= 50.0)
            ));
        }
        if let Some((peer, peer_seconds)) = best_peer(&large) {
            let ratio = peer_seconds / ferry.seconds();
            rows.push(format!(
                "| 1 GiB at ≥ 1.3x the best peer ({peer}) | {ratio:.2}x | {} |",
                verdict(ratio >= 1.3)
            ));
        }
    }
    let small = of("many small files");
    against_ceiling(&mut rows, &small, "2,000 × 64 KiB", 1.3);
    for (workload, goal) in [
        ("many small files", "2,000 × 64 KiB"),
        (THROTTLED_SMALL, "500 × 64 KiB on a throttled link"),
    ] {
        let here = of(workload);
        if let (Some(ferry), Some((peer, peer_seconds))) = (ferry_in(&here), best_peer(&here)) {
            let ratio = peer_seconds / ferry.seconds();
            rows.push(format!(
                "| {goal} at ≥ 2x the best peer's files/s ({peer}) | {ratio:.2}x | {} |",
                verdict(ratio >= 2.0)
            ));
        }
    }
    let failing = of("10% of part PUTs fail");
    if let (Some(ferry), Some(unfailed)) = (
        ferry_in(&failing),
        failing.iter().find(|point| point.library == UNFAILED),
    ) {
        let ratio = ferry.seconds() / unfailed.seconds();
        let runs = runs_note(("with", ferry), ("without", unfailed));
        rows.push(format!(
            "| 10% of PUTs failing in ≤ 1.15x the time of none failing | {ratio:.2}x{runs} | {} |",
            verdict(ratio <= 1.15)
        ));
    }
    against_ceiling(
        &mut rows,
        &of("throttled link (100 Mbit/s, 40 ms)"),
        "256 MiB on a throttled link",
        0.97,
    );
    if let Some(ferry) = ferry_in(&of("very many tiny files")) {
        let memory = ferry.peak_memory_mib.unwrap_or(f64::NAN);
        rows.push(format!(
            "| 20,000 × 4 KiB completes with peak memory ≤ 64 MiB | {memory:.1} MiB | {} |",
            verdict(memory <= 64.0)
        ));
    }
    let most_calls = points
        .iter()
        .filter(|point| point.library == "ferry")
        .filter_map(|point| point.companion_requests_per_part)
        .fold(f64::NAN, f64::max);
    if !most_calls.is_nan() {
        rows.push(format!(
            "| at most 1.1 companion requests per part (Ferry's worst workload) | {most_calls:.2} | {} |",
            verdict(most_calls <= 1.1)
        ));
    }
    let page_points = of(PAGE_WORKLOAD);
    if let Some(page) = page_points.iter().find(|point| point.library == PAGE) {
        if let Some(alone) = ferry_in(&page_points) {
            let ratio = page.seconds() / alone.seconds();
            let runs = runs_note(("page", page), ("package", alone));
            rows.push(format!(
                "| 2,000 × 64 KiB through the demo page in ≤ 1.2x the time of the package alone | {ratio:.2}x{runs} | {} |",
                verdict(ratio <= 1.2)
            ));
        }
        if let Some(longest) = page.longest_task_ms {
            rows.push(format!(
                "| no main-thread task of the page's own over 100 ms while it uploads them | longest {} ms | {} |",
                longest_task(longest),
                verdict(longest <= 100.0)
            ));
        }
    }
    if let Some(size) = size {
        let kib = size.gzip_total() as f64 / 1024.0;
        rows.push(format!(
            "| the npm package (wasm + JS) at ≤ {PACKAGE_BUDGET_KIB:.0} KiB gzipped | {kib:.1} KiB | {} |",
            verdict(kib <= PACKAGE_BUDGET_KIB)
        ));
    }
    format!(
        "### Against the goals\n\n| goal | this run | met |\n|---|---|---|\n{}\n\n",
        rows.join("\n")
    )
}

fn companion_markdown(results: &CompanionResults) -> Result<String> {
    let find = |peer: &str, mode: &str, concurrency: u64| {
        results
            .points
            .iter()
            .find(|point| {
                point.peer == peer && point.mode == mode && point.concurrency == concurrency
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
            rows += &format!(
                "| {} | {concurrency} | {:.0} | {:.1} | {:.0} | {:.1} | **{:.1}x** | {} / {} |\n",
                if mode == "one" { "1 part" } else { "100 parts" },
                ferry.signatures_per_second,
                ferry.p99_ms,
                uppy.signatures_per_second,
                uppy.p99_ms,
                ferry.signatures_per_second / uppy.signatures_per_second.max(f64::MIN_POSITIVE),
                ferry.failures,
                uppy.failures,
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
        seconds = results.seconds_per_point,
        machine = results.machine,
    ))
}

fn scheduler_markdown(results: &SchedulerResults, machine: &str) -> String {
    let dual_time = results.dual_vs_single_layer.dual.elapsed;
    let ratio = results.dual_vs_single_layer.single_over_dual_time;
    let idle_dual = results.slot_idle_fraction.dual;
    let idle_single = results.slot_idle_fraction.single;
    let tiny_cpu = results.tiny_files.engine_and_simulator_cpu_s;
    let tiny_live = results.tiny_files.peak_live;
    let batched = results.companion_calls_per_part.batched_20;
    let one = results.companion_calls_per_part.one_per_part;
    let adaptive = adaptive_markdown(&results.adaptive_against_fixed);
    format!(
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
{adaptive}",
        idle_dual_pct = idle_dual * 100.0,
        idle_single_pct = idle_single * 100.0,
        gain = (ratio - 1.0) * 100.0,
    )
}

/// The adaptive policy's table: each link, its best fixed setting, and how close the adaptive
/// policy and the seeds' rule come; then how much the fixed settings lose at their worst.
fn adaptive_markdown(outcomes: &[AdaptiveOutcome]) -> String {
    if outcomes.is_empty() {
        return String::new();
    }
    let rows: String = outcomes
        .iter()
        .map(|outcome| {
            format!(
                "| {} | {} ({:.1} MB/s) | **{:.3}x** | {:.3}x |\n",
                outcome.link,
                outcome.best_fixed_setting,
                outcome.best_fixed / 1e6,
                outcome.adaptive_over_best,
                outcome.seeds_over_best
            )
        })
        .collect();
    let settings = outcomes[0].fixed_over_best.len();
    let least_loss = (0..settings)
        .map(|index| {
            let worst = outcomes
                .iter()
                .map(|outcome| outcome.fixed_over_best[index])
                .fold(f64::INFINITY, f64::min);
            1.0 - worst
        })
        .fold(f64::INFINITY, f64::min);
    format!(
        "
### Adaptive concurrency and part size against every fixed setting

Goodput of the files that completed, against the best of {settings} fixed settings (1 to 6
slots by parts of 5 to 64 MiB, and the seeds' rule) on each link (`ferry_sim::compare`). Goal:
the adaptive policy at 0.95x or more on each link, while every fixed setting loses 20% or more
on one of them.

| link | best fixed setting | adaptive | seeds' rule |
|---|---|---|---|
{rows}
Every fixed setting loses at least **{least:.0}%** on its worst link.
",
        least = least_loss * 100.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(library: &str, workload: &str, seconds: f64) -> BrowserPoint {
        BrowserPoint {
            library: library.into(),
            workload: workload.into(),
            seconds: Some(seconds),
            peak_memory_mib: Some(6.0),
            companion_requests_per_part: (library == "ferry").then_some(0.5),
            verified: Some("1/1".into()),
            ..BrowserPoint::default()
        }
    }

    #[test]
    fn the_committed_benchmarks_are_their_results_rendered() {
        let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
        let read = |name: &str| std::fs::read_to_string(results.join(name)).unwrap();
        let parsed = BenchResults::parse(
            &read("scheduler.json"),
            &read("browser.json"),
            &read("companion.json"),
            std::fs::read_to_string(results.join("size.json"))
                .ok()
                .as_deref(),
        )
        .unwrap();
        let committed = std::fs::read_to_string(results.join("../../BENCHMARKS.md")).unwrap();
        assert_eq!(
            render(&parsed).unwrap(),
            committed,
            "run `cargo xtask bench --report`"
        );
    }

    #[test]
    fn ratios_failures_and_goals_come_from_the_points() {
        let points = vec![
            BrowserPoint {
                runs_seconds: Some(vec![9.5, 10.0, 10.5]),
                longest_task_ms: Some(40.0),
                longest_task_scripts: Some("MessagePort.onmessage (ferry_wasm.js) 38 ms".into()),
                ..point("ferry", "one large file", 10.0)
            },
            point("raw native PUTs", "one large file", 9.5),
            BrowserPoint {
                runs_seconds: Some(vec![9.0, 9.2, 9.4]),
                longest_task_ms: Some(55.0),
                ..point("in-browser raw (6 PUTs)", "one large file", 9.2)
            },
            point("in-browser raw (3 PUTs)", "one large file", 9.6),
            BrowserPoint {
                runs_seconds: Some(vec![10.5, 11.0, 11.5]),
                longest_task_ms: Some(70.0),
                ..point(UNCHECKED, "one large file", 11.0)
            },
            BrowserPoint {
                runs_seconds: Some(vec![12.0, 12.5, 13.0]),
                longest_task_ms: Some(90.0),
                ..point(HASHED_ON_PAGE, "one large file", 12.5)
            },
            point("uppy-6", "one large file", 20.0),
            BrowserPoint {
                library: "lib-storage".into(),
                workload: "one large file".into(),
                failed: Some("timed out\nstack".into()),
                ..BrowserPoint::default()
            },
        ];
        let results = BrowserResults {
            chromium: "156".into(),
            machine: "test machine".into(),
            settings: BTreeMap::from([("ferry".into(), "defaults".into())]),
            points,
            hashing: vec![HashingPoint {
                method: "CRC32C in a Worker".into(),
                seconds: 2.0,
                mb_per_second: 512.0,
                longest_task_ms: 0.0,
                longest_task_scripts: None,
            }],
        };
        let size = PackageSize {
            files: vec![
                PackageFile {
                    name: "ferry_wasm_bg.wasm".into(),
                    bytes: 400_000,
                    gzip_bytes: 150_000,
                },
                PackageFile {
                    name: "ferry_wasm.js".into(),
                    bytes: 50_000,
                    gzip_bytes: 10_000,
                },
            ],
            crates: Vec::new(),
        };
        let markdown = browser_markdown(&results, Some(&size));
        assert!(markdown.contains("Settings: **ferry**: defaults"));
        assert!(
            markdown.contains("| in-browser raw (3 PUTs) | 9.60 |"),
            "{markdown}"
        );
        assert!(markdown.contains("at **0.92x** of it"), "{markdown}");
        assert!(markdown.contains(
            "| 1 GiB at ≥ 0.95x the in-browser ceiling (in-browser raw (6 PUTs)) | 0.92x (median runs; Ferry 9.5, 10.0, 10.5 s, in-browser raw (6 PUTs) 9.0, 9.2, 9.4 s); checksums off 0.84x | **no** |"
        ), "{markdown}");
        assert!(
            markdown.contains(
                "| the npm package (wasm + JS) at ≤ 100 KiB gzipped | 156.2 KiB | **no** |"
            )
        );
        assert!(markdown.contains("| uppy-6 | 20.00 |"), "{markdown}");
        assert!(markdown.contains("**2.00x** as fast"));
        assert!(markdown.contains("at **0.95x** of the raw limit"));
        assert!(markdown.contains("| lib-storage | failed: timed out | |"));
        assert!(markdown.contains("| 1 GiB at ≥ 1.3x the best peer (uppy-6) | 2.00x | yes |"));
        assert!(markdown.contains("(Ferry's worst workload) | 0.50 | yes |"));
        assert!(markdown.contains("| CRC32C in a Worker | 2.00 | 512 | < 50 | — |"));
        assert!(markdown.contains(
            "| 1 GiB with checksums at ≥ 0.9x the throughput without | 1.10x (median runs; with 9.5, 10.0, 10.5 s, without 10.5, 11.0, 11.5 s) | yes |"
        ), "{markdown}");
        assert!(markdown.contains(
            "| 1 GiB with checksums hashed on the page at ≥ 0.9x the throughput without | 0.88x (median runs; with 12.0, 12.5, 13.0 s, without 10.5, 11.0, 11.5 s) | **no** |"
        ), "{markdown}");
        assert!(markdown.contains(
            "| 1 GiB hashed with no main-thread task over 50 ms | longest 40 ms (in it: MessagePort.onmessage (ferry_wasm.js) 38 ms); hashed on the page 90 ms; checksums off 70 ms; in-browser raw (6 PUTs) 55 ms | yes |"
        ), "{markdown}");
    }

    #[test]
    fn the_demo_page_is_measured_against_the_package_alone() {
        let page = BrowserPoint {
            files_per_second: Some(100.0),
            longest_task_ms: Some(120.4),
            long_tasks_over_100_ms: Some(2),
            peak_dom_nodes: Some(5000),
            input_task_ms: Some(575.2),
            input_floor_ms: Some(560.0),
            runs_seconds: Some(vec![11.0, 12.0, 10.5]),
            ..point(PAGE, PAGE_WORKLOAD, 11.0)
        };
        let alone = BrowserPoint {
            runs_seconds: Some(vec![10.0, 9.0, 10.5]),
            longest_task_ms: Some(0.0),
            long_tasks_over_100_ms: Some(0),
            peak_dom_nodes: Some(8),
            ..point("ferry", PAGE_WORKLOAD, 10.0)
        };
        let results = |points| BrowserResults {
            chromium: "156".into(),
            machine: "test machine".into(),
            settings: BTreeMap::new(),
            points,
            hashing: Vec::new(),
        };
        let markdown = browser_markdown(
            &results(vec![point("ferry", "many small files", 9.0), alone, page]),
            None,
        );
        assert_eq!(
            markdown.matches(&format!("### {PAGE_WORKLOAD}")).count(),
            1,
            "its own table, not a peers' one: {markdown}"
        );
        assert!(
            markdown.contains("| the npm package alone | 10.00 | — |  | < 50 | 0 | — | 8 |"),
            "{markdown}"
        );
        assert!(
            markdown.contains(
                "| the demo page | 11.00 | 100 | **1.10x** | 120 | 2 | 575 (560) | 5000 | 6.0 |"
            ),
            "{markdown}"
        );
        assert!(markdown.contains(
            "| 2,000 × 64 KiB through the demo page in ≤ 1.2x the time of the package alone | 1.10x (median runs; page 11.0, 12.0, 10.5 s, package 10.0, 9.0, 10.5 s) | yes |"
        ), "{markdown}");
        assert!(markdown.contains(
            "| no main-thread task of the page's own over 100 ms while it uploads them | longest 120 ms | **no** |"
        ));

        let failed = BrowserPoint {
            library: PAGE.into(),
            workload: PAGE_WORKLOAD.into(),
            failed: Some("page.bin failed on the page (NetworkError)".into()),
            ..BrowserPoint::default()
        };
        let markdown = browser_markdown(
            &results(vec![point("ferry", PAGE_WORKLOAD, 10.0), failed]),
            None,
        );
        assert!(
            markdown.contains(
                "| the demo page | failed: page.bin failed on the page (NetworkError) | |"
            )
        );
        assert!(
            !markdown.contains("through the demo page in ≤ 1.2x"),
            "{markdown}"
        );
    }

    #[test]
    fn a_missing_companion_point_is_an_error() {
        let results = CompanionResults {
            seconds_per_point: 4,
            machine: "m".into(),
            points: Vec::new(),
        };
        assert_eq!(
            companion_markdown(&results).unwrap_err(),
            "no ferry one point at 1"
        );
    }
}
