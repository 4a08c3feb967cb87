//! Installs what a fresh machine lacks, checking first so a second run starts at once.

use std::path::{Path, PathBuf};

use crate::{Result, WASM_BINDGEN_VERSION, WASM_TARGET, output, root, run, run_in, step};

const TRUNK_VERSION: &str = "0.21.14";
const GARAGE_VERSION: &str = "2.5.0";

pub fn ensure_wasm_tools() -> Result {
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

/// The npm tools the package is built with, in `xtask/package-tools/`.
pub struct PackageTools {
    /// binaryen's wasm-opt.
    pub wasm_opt: PathBuf,
    /// esbuild, the JavaScript minifier.
    pub esbuild: PathBuf,
}

/// Installs [`PackageTools`] when either is missing.
pub fn ensure_package_tools() -> Result<PackageTools> {
    let dir = root().join("xtask/package-tools");
    let bin = dir.join("node_modules/.bin");
    let tools = PackageTools {
        wasm_opt: bin.join("wasm-opt"),
        esbuild: bin.join("esbuild"),
    };
    if !tools.wasm_opt.exists() || !tools.esbuild.exists() {
        step("installing wasm-opt (binaryen) and esbuild from npm");
        run_in(&dir, "npm", &["install", "--no-audit", "--no-fund"], &[])?;
    }
    Ok(tools)
}

/// twiggy, for the size report of `cargo xtask bench`: its name on the PATH.
pub fn ensure_twiggy() -> Result<&'static str> {
    if output("twiggy", &["--version"]).is_none() {
        step("installing twiggy (about 2 minutes, once)");
        run(
            "cargo",
            &["install", "twiggy", "--version", "0.8.0", "--locked"],
        )?;
    }
    Ok("twiggy")
}

/// Trunk builds the demo page, for `trunk serve` as for `cargo xtask demo`.
pub fn ensure_trunk() -> Result {
    let version = output("trunk", &["--version"]).unwrap_or_default();
    if version.trim() != format!("trunk {TRUNK_VERSION}") {
        // 0.22 needs a newer rustc than this workspace's.
        step(&format!(
            "installing trunk {TRUNK_VERSION} (about 15 minutes, once)"
        ));
        run(
            "cargo",
            &["install", "trunk", "--version", TRUNK_VERSION, "--locked"],
        )?;
    }
    Ok(())
}

pub fn ensure_test_tools() -> Result {
    if output("cargo", &["clippy", "--version"]).is_none() {
        step("installing clippy");
        run("rustup", &["component", "add", "clippy"])?;
    }
    // Debian's Chromium and ChromeDriver for the browser tests, ffmpeg for the video previews.
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/chromium").exists() {
        missing.extend(["chromium", "chromium-driver"]);
    }
    if output("ffmpeg", &["-version"]).is_none() {
        missing.push("ffmpeg");
    }
    if !missing.is_empty() {
        step(&format!("installing {}", missing.join(", ")));
        run("apt-get", &["update"])?;
        let mut args = vec!["install", "-y"];
        args.extend(&missing);
        run_in(
            &root(),
            "apt-get",
            &args,
            &[("DEBIAN_FRONTEND", "noninteractive")],
        )?;
    }
    // moto hashes CRC32C with the `crc32c` package; without it, it silently computes CRC32,
    // and every object checksum it states is wrong.
    let moto_hashes = output("python3", &["-c", "import crc32c"]).is_some();
    if output("moto_server", &["--help"]).is_none() || !moto_hashes {
        step("installing moto's S3 server (an independent S3 for tests) and its CRC32C");
        run(
            "python3",
            &["-m", "pip", "install", "--quiet", "moto[server]", "crc32c"],
        )?;
    }
    ensure_garage()?;
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

/// Garage, the companion's third test store: a production S3 implementation, run by the tests
/// as an outside binary only (it is AGPL; nothing links it). They take `FERRY_GARAGE_BIN` or
/// `garage` on the PATH.
fn ensure_garage() -> Result {
    if let Some(bin) = std::env::var_os("FERRY_GARAGE_BIN") {
        let bin = bin.to_string_lossy();
        return match output(&bin, &["--version"]) {
            Some(_) => Ok(()),
            None => Err(format!("FERRY_GARAGE_BIN={bin} does not run")),
        };
    }
    if output("garage", &["--version"]).is_none() {
        step(&format!(
            "installing Garage {GARAGE_VERSION}, an S3 store for the tests (about 15 minutes, once)"
        ));
        // SQLite as its metadata engine, built in: no LMDB, no system libraries.
        run(
            "cargo",
            &[
                "install",
                "garage",
                "--version",
                GARAGE_VERSION,
                "--locked",
                "--no-default-features",
                "--features",
                "sqlite,bundled-libs",
            ],
        )?;
    }
    Ok(())
}

/// The Node.js side of the benchmarks: @uppy/companion, the browser peers and Vite, installed
/// once; @uppy/aws-s3 5.x keeps its own folder so that its @uppy/core never meets 6.x.
pub fn ensure_bench_tools() -> Result<PathBuf> {
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
