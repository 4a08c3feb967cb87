//! Building the browser side: the demo page into `dist/`, the npm package into `pkg/`, and
//! serving the demo.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{ensure_package_tools, ensure_trunk, ensure_wasm_tools};
use crate::{Result, WASM_TARGET, root, run, run_in, step};

/// Builds ferry-wasm with the `wasm-package` profile (size first) and its small allocator, and
/// runs wasm-bindgen on it into `out`.
pub fn build_wasm(out: &Path) -> Result {
    step("building ferry-wasm for the browser");
    run(
        "cargo",
        &[
            "build",
            "--profile",
            WASM_PROFILE,
            "--target",
            WASM_TARGET,
            "-p",
            "ferry-wasm",
            "--features",
            "small-allocator",
        ],
    )?;
    let wasm = root()
        .join("target")
        .join(WASM_TARGET)
        .join(WASM_PROFILE)
        .join("ferry_wasm.wasm");
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

/// The Cargo profile of the npm package's wasm (`Cargo.toml`).
pub const WASM_PROFILE: &str = "wasm-package";

/// How wasm-opt shrinks the package's wasm: `-Oz`, inlining a function that has one caller
/// only while it is small. By default `-Oz` inlines every such function whatever its size, which
/// leaves fewer, huge functions: 5 KB less wasm, but 8 KiB more once gzipped (measured with
/// binaryen 132; a limit of 10 to 30 instructions is as good, 60 or more loses most of it).
const WASM_OPT_FLAGS: [&str; 2] = ["-Oz", "--one-caller-inline-max-function-size=20"];

/// Shrinks the package's wasm in place ([`WASM_OPT_FLAGS`]), without the names and producers
/// sections (the function names alone are a quarter of the file).
fn optimize_wasm(wasm: &Path, wasm_opt: &Path) -> Result {
    step("optimizing the wasm for size (wasm-opt -Oz)");
    let path = wasm.to_str().ok_or("path is not UTF-8")?;
    run(
        wasm_opt.to_str().ok_or("path is not UTF-8")?,
        &[
            &WASM_OPT_FLAGS[..],
            &["--strip-debug", "--strip-producers", path, "-o", path],
        ]
        .concat(),
    )
}

/// The package's wasm as it ships, but with its function names, for twiggy: wasm-bindgen,
/// wasm-opt as [`WASM_OPT_FLAGS`] say and the short import names again on the module `npm` built, into
/// `target/wasm-size/`, keeping the names section (`-g`) that the package leaves out. Its code is
/// the shipped code, inlining included.
pub fn named_package_wasm() -> Result<PathBuf> {
    let out = root().join("target/wasm-size");
    let _ = std::fs::remove_dir_all(&out);
    build_wasm(&out)?;
    let wasm = out.join("ferry_wasm_bg.wasm");
    let path = wasm.to_str().ok_or("path is not UTF-8")?;
    let wasm_opt = ensure_package_tools()?.wasm_opt;
    run(
        wasm_opt.to_str().ok_or("path is not UTF-8")?,
        &[&WASM_OPT_FLAGS[..], &["-g", path, "-o", path]].concat(),
    )?;
    shorten_import_names(&out)?;
    Ok(wasm)
}

/// The demo page, built into `dist/` by trunk from `Trunk.toml`, as `trunk serve` builds it.
pub fn build_demo() -> Result<PathBuf> {
    ensure_wasm_tools()?;
    ensure_trunk()?;
    step("building the demo page with trunk");
    run_in(&root(), "trunk", &["build", "--release"], &[])?;
    Ok(root().join("dist"))
}

/// The npm package, built into `pkg/`.
pub fn npm() -> Result<PathBuf> {
    ensure_wasm_tools()?;
    let tools = ensure_package_tools()?;
    let pkg = root().join("pkg");
    let _ = std::fs::remove_dir_all(&pkg);
    build_wasm(&pkg)?;
    optimize_wasm(&pkg.join("ferry_wasm_bg.wasm"), &tools.wasm_opt)?;
    shorten_import_names(&pkg)?;
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
    // The entry point also tells the wasm how to start its hashing Worker, in the
    // `new Worker(new URL("./worker.js", import.meta.url))` form bundlers follow (they bundle
    // worker.js).
    write(
        "index.js",
        format!(
            "export {{ default }} from \"./ferry_wasm.js\";\nexport * from \"./ferry_wasm.js\";\nexport {{ FerryError }} from \"./snippets/{snippet_dir}/js/ferry-error.js\";\nimport {{ provideHashWorker }} from \"./snippets/{snippet_dir}/js/hash-worker.js\";\n\nprovideHashWorker(() => new Worker(new URL(\"./worker.js\", import.meta.url), {{ type: \"module\" }}));\n"
        ),
    )?;
    std::fs::copy(
        root().join("crates/ferry-wasm/js/worker.js"),
        pkg.join("worker.js"),
    )
    .map_err(|err| format!("worker.js: {err}"))?;
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
  "files": ["index.js", "index.d.ts", "worker.js", "ferry_wasm.js", "ferry_wasm.d.ts", "ferry_wasm_bg.wasm", "ferry_wasm_bg.wasm.d.ts", "snippets"],
  "sideEffects": ["./index.js"]
}}
"#,
            version = env!("CARGO_PKG_VERSION")
        ),
    )?;
    let _ = std::fs::remove_file(pkg.join(".gitignore"));
    minify_javascript(&pkg, &tools.esbuild)?;
    step(&format!("npm package ready in {}", pkg.display()));
    Ok(pkg)
}

/// Renames the wasm's imports in it and in its JavaScript ([`crate::imports`]).
fn shorten_import_names(pkg: &Path) -> Result {
    step("shortening the wasm's import names");
    let wasm_path = pkg.join("ferry_wasm_bg.wasm");
    let glue_path = pkg.join("ferry_wasm.js");
    let wasm =
        std::fs::read(&wasm_path).map_err(|err| format!("{}: {err}", wasm_path.display()))?;
    let glue = std::fs::read_to_string(&glue_path)
        .map_err(|err| format!("{}: {err}", glue_path.display()))?;
    let (wasm, glue) = crate::imports::shorten(&wasm, &glue)?;
    std::fs::write(&wasm_path, wasm).map_err(|err| err.to_string())?;
    std::fs::write(&glue_path, glue).map_err(|err| err.to_string())
}

/// Minifies the package's JavaScript in place, each file on its own (their imports of each other
/// stay as they are): a third of its gzipped size. `ferry_wasm.js` keeps its first line, the
/// `@ts-self-types` comment Deno finds its types by.
fn minify_javascript(pkg: &Path, esbuild: &Path) -> Result {
    step("minifying the package's JavaScript (esbuild)");
    for file in files_under(pkg)? {
        let path = file.to_str().ok_or("path is not UTF-8")?;
        if !path.ends_with(".js") {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|err| format!("{path}: {err}"))?;
        let mut args = vec![
            path.to_owned(),
            "--minify".into(),
            "--format=esm".into(),
            "--log-level=warning".into(),
            "--allow-overwrite".into(),
            format!("--outfile={path}"),
        ];
        if let Some(types) = text
            .lines()
            .next()
            .filter(|line| line.contains("@ts-self-types"))
        {
            args.push(format!("--banner:js={types}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(esbuild.to_str().ok_or("path is not UTF-8")?, &args)?;
    }
    Ok(())
}

/// Every file in `dir` and its folders.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in
            std::fs::read_dir(&folder).map_err(|err| format!("{}: {err}", folder.display()))?
        {
            let path = entry.map_err(|err| err.to_string())?.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}

pub fn demo() -> Result {
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
        .env(
            "FERRY_PREVIEWS",
            std::env::var("FERRY_PREVIEWS").unwrap_or_else(|_| "true".into()),
        )
        .env("FERRY_LISTEN", &listen)
        .status()
        .map_err(|err| format!("cannot start the companion: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the companion stopped: {status}"))
    }
}
