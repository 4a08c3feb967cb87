// The servers both benchmarks run: one ferry-store on loopback, and Ferry's companion and
// @uppy/companion both signing for it. When the benchmark exits, even on Ctrl-C, every child is
// killed and every scratch folder removed: a 1 GiB workload must not outlive its run.

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

const here = path.dirname(new URL(import.meta.url).pathname);
const children = [];
const scratchDirs = [];
process.on("exit", () => {
  children.forEach((child) => child.kill("SIGKILL"));
  scratchDirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 }));
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

/** A fresh folder under the system's temporary folder, removed when the benchmark exits. */
export function scratchDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  scratchDirs.push(dir);
  return dir;
}

/** Starts a child and resolves with the address its first line matching `pattern` names. */
function start(command, args, env) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      const match = line.match(/listening on (http:\/\/\S+)/);
      if (match) resolve(match[1]);
    });
    child.on("exit", (code) => reject(new Error(`${command} exited (${code})`)));
  });
}

/**
 * Starts the store (bucket `bench`) and both companions; Ferry's admission control is set wide
 * (`admissionQueue` waiting) so that it measures uploads and signing, not refusals. With
 * `staticDir` (the demo page trunk built), Ferry's companion also serves that page at `/`.
 */
export async function startServers({ admissionQueue, staticDir, unchecked }) {
  const key = "bench-key";
  const secret = "bench-secret-key";
  const bucket = "bench";
  const root = scratchDir("ferry-bench-store-");
  const store = await start(process.env.FERRY_STORE_BIN, ["--root", root, "--access-key", key, "--secret-key", secret, "--bucket", bucket]);
  const ferryEnv = {
    FERRY_LISTEN: "127.0.0.1:0",
    FERRY_S3_ENDPOINT: store,
    FERRY_S3_BUCKET: bucket,
    FERRY_S3_PATH_STYLE: "true",
    AWS_ACCESS_KEY_ID: key,
    AWS_SECRET_ACCESS_KEY: secret,
    FERRY_SECRET: "bench",
    FERRY_ADMISSION_CONCURRENCY: "1024",
    FERRY_ADMISSION_QUEUE: String(admissionQueue),
    // ferry-store checks a form's checksum as AWS S3 does: small files go as one POST each.
    FERRY_S3_POST_FORMS: "true",
    RUST_LOG: "warn",
  };
  const ferry = await start(process.env.FERRY_COMPANION_BIN, [], { ...ferryEnv, ...(staticDir ? { FERRY_STATIC_DIR: staticDir } : {}) });
  // With `unchecked`, a second companion with checksums off: what checksums cost, side by side.
  const ferryUnchecked = unchecked ? await start(process.env.FERRY_COMPANION_BIN, [], { ...ferryEnv, FERRY_CHECKSUM: "off" }) : undefined;
  const uppy = await start("node", [path.join(here, "uppy-server.mjs")], {
    STORE_ENDPOINT: store,
    STORE_KEY: key,
    STORE_SECRET: secret,
    STORE_BUCKET: bucket,
    UPPY_FILE_PATH: scratchDir("uppy-companion-"),
  });
  return { store, ferry, ferryUnchecked, uppy, key, secret, bucket };
}
