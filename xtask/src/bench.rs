//! `cargo xtask bench`: runs the benchmarks into `bench/results/` and writes BENCHMARKS.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::build::{build_demo, files_under, named_package_wasm, npm};
use crate::report::{BenchResults, CrateShare, PackageFile, PackageSize, render};
use crate::tools::{ensure_bench_tools, ensure_twiggy};
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

    let pkg = write_package_size(&results)?;
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

/// `cargo xtask size`: only the package's size into `bench/results/size.json`, and BENCHMARKS.md
/// again from the results.
pub fn size() -> Result {
    let results = root().join("bench/results");
    std::fs::create_dir_all(&results).map_err(|err| err.to_string())?;
    write_package_size(&results)?;
    bench_report()
}

/// Builds the npm package and writes its size into `results`; the package's folder.
fn write_package_size(results: &Path) -> Result<std::path::PathBuf> {
    let pkg = npm()?;
    step("the npm package's size, and whose code its wasm is (twiggy)");
    let size = package_size(&pkg)?;
    std::fs::write(
        results.join("size.json"),
        serde_json::to_string_pretty(&size).map_err(|err| err.to_string())?,
    )
    .map_err(|err| err.to_string())?;
    Ok(pkg)
}

/// The package's JavaScript and wasm (what a page downloads; not its types), raw and gzipped, and
/// the wasm's bytes per crate as twiggy names them in the shipped code ([`named_package_wasm`]).
fn package_size(pkg: &Path) -> Result<PackageSize> {
    let mut files = Vec::new();
    for path in files_under(pkg)? {
        let name = path.strip_prefix(pkg).map_err(|err| err.to_string())?;
        let name = name.to_string_lossy().into_owned();
        if !name.ends_with(".wasm") && !name.ends_with(".js") {
            continue;
        }
        let bytes = std::fs::metadata(&path)
            .map_err(|err| err.to_string())?
            .len();
        let gzipped = Command::new("gzip")
            .arg("-9c")
            .arg(&path)
            .output()
            .map_err(|err| format!("gzip: {err}"))?;
        files.push(PackageFile {
            name,
            bytes,
            gzip_bytes: gzipped.stdout.len() as u64,
        });
    }
    files.sort_by_key(|file| std::cmp::Reverse(file.gzip_bytes));
    let module = named_package_wasm()?;
    let csv = captured(Command::new(ensure_twiggy()?).args([
        "top",
        "-n",
        "1000000",
        "-f",
        "csv",
        module.to_str().ok_or("path is not UTF-8")?,
    ]))?;
    Ok(PackageSize {
        files,
        crates: crate_shares(&csv, 12),
    })
}

/// Shallow bytes per crate from `twiggy top -f csv`: the `keep` largest, then "other". Custom
/// sections (the names, producers) are left out: wasm-opt strips them.
fn crate_shares(csv: &str, keep: usize) -> Vec<CrateShare> {
    let mut by_crate: BTreeMap<String, u64> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        // Name,ShallowSize,...: a name may hold commas, so the size is read from the right.
        let mut fields = line.rsplitn(5, ',');
        let (Some(_), Some(_), Some(_), Some(bytes), Some(name)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let Ok(bytes) = bytes.parse::<u64>() else {
            continue;
        };
        let name = name.trim_matches('"');
        if name.contains(" subsection") || name.starts_with("custom section") {
            continue;
        }
        *by_crate.entry(crate_of(name)).or_default() += bytes;
    }
    let mut shares: Vec<CrateShare> = by_crate
        .into_iter()
        .map(|(name, bytes)| CrateShare { name, bytes })
        .collect();
    shares.sort_by_key(|share| std::cmp::Reverse(share.bytes));
    let other: u64 = shares.iter().skip(keep).map(|share| share.bytes).sum();
    shares.truncate(keep);
    shares.push(CrateShare {
        name: "other".into(),
        bytes: other,
    });
    shares
}

/// The crate a twiggy item belongs to: the first path segment of its name, past `<`, `&mut ` and
/// the like (`<serde_json::de::Deserializer<R> as ...>::f` is serde_json's; a primitive's impl,
/// `<f64 as core::fmt::Display>::fmt`, is its trait's crate); data segments are "data", and
/// wasm-bindgen's shims and imports "wasm-bindgen glue".
fn crate_of(name: &str) -> String {
    if name.starts_with("data segment") {
        return "data".into();
    }
    if name.ends_with(" shim") || name.starts_with("import ") {
        return "wasm-bindgen glue".into();
    }
    let name = name.trim_start_matches(['<', '&', '(', ' ']);
    let name = name.strip_prefix("mut ").unwrap_or(name);
    let name = name.strip_prefix("dyn ").unwrap_or(name);
    let name = match name.split_once(" as ") {
        Some((own, trait_path)) if !own.contains("::") => trait_path,
        _ => name,
    };
    let end = name
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    match &name[..end] {
        "" => "other".into(),
        crate_name => crate_name.into(),
    }
}

/// Writes BENCHMARKS.md from the JSON results of the last run.
pub fn bench_report() -> Result {
    let results = root().join("bench/results");
    let read = |name: &str| {
        std::fs::read_to_string(results.join(name))
            .map_err(|err| format!("bench/results/{name}: {err} (run `cargo xtask bench`)"))
    };
    let size = read("size.json").ok();
    let results = BenchResults::parse(
        &read("scheduler.json")?,
        &read("browser.json")?,
        &read("companion.json")?,
        size.as_deref(),
    )?;
    std::fs::write(root().join("BENCHMARKS.md"), render(&results)?)
        .map_err(|err| err.to_string())?;
    step("wrote BENCHMARKS.md from bench/results/");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiggy_items_are_counted_under_their_crate() {
        for (item, expected) in [
            (
                "ferry_core::engine::Engine::poll_action::h37eba2c8e3c2c056",
                "ferry_core",
            ),
            (
                "<&mut serde_json::de::Deserializer<R> as serde_core::de::Deserializer>::f",
                "serde_json",
            ),
            (
                "<dlmalloc[e24a27700634d609]::dlmalloc::Dlmalloc<A>>::malloc",
                "dlmalloc",
            ),
            ("data segment \".rodata\"", "data"),
            ("<f64 as core[c5930c85a12de822]::fmt::Display>::fmt", "core"),
            ("createUploader multivalue shim", "wasm-bindgen glue"),
            ("import ./ferry_wasm_bg.js", "wasm-bindgen glue"),
            ("code[42]", "code"),
        ] {
            assert_eq!(crate_of(item), expected, "{item}");
        }
        let csv = "Name,ShallowSize,ShallowSizePercent,RetainedSize,RetainedSizePercent
\"function names\" subsection,289015,27.67,289015,27.67
data segment \".rodata\",120,1.0,120,1.0
\"<a::X as b::Y>::f, with a comma\",70,1.0,70,1.0
a::g,30,1.0,30,1.0
c::h,5,1.0,5,1.0
d::i,4,1.0,4,1.0";
        let shares: Vec<(String, u64)> = crate_shares(csv, 2)
            .into_iter()
            .map(|share| (share.name, share.bytes))
            .collect();
        assert_eq!(
            shares,
            vec![("data".into(), 120), ("a".into(), 100), ("other".into(), 9)]
        );
    }
}
