// Real parts for the browser tests: the companion binary (with the embedded store, or pointed at
// moto's server), moto itself, Debian's headless Chromium, and files on disk with known SHA-256.

import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { chromium } from "playwright-core";

export const MIB = 1024 * 1024;

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through \`cargo xtask test\``);
  return value;
}

export const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "ferry-e2e-"));

/** Waits for a line matching `pattern` on a child's stream; resolves with the match. */
function waitForLine(child, stream, pattern, what) {
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: stream });
    const log = [];
    lines.on("line", (line) => {
      log.push(line);
      const match = line.match(pattern);
      if (match) resolve(match);
    });
    child.on("exit", (code) => reject(new Error(`${what} exited (${code}) before it was ready:\n${log.join("\n")}`)));
  });
}

/** The environment without anything that would point a child at another store. */
function cleanEnv() {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith("FERRY_") || name.startsWith("AWS_")) delete env[name];
  }
  return env;
}

// Each test file runs in its own process: on its exit, even by Ctrl-C, its servers are killed and
// its scratch folder (stores, generated files of up to 200 MiB) removed.
const children = new Set();
process.on("exit", () => {
  children.forEach((child) => child.kill("SIGKILL"));
  fs.rmSync(scratch, { recursive: true, force: true, maxRetries: 3 });
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

/** Starts the companion serving the demo page; `env` adds or overrides its configuration. */
export async function startCompanion(env = {}) {
  const dataDir = fs.mkdtempSync(path.join(scratch, "store-"));
  let listen = "127.0.0.1:0";
  let child;
  const launch = async () => {
    child = spawn(required("FERRY_COMPANION_BIN"), [], {
      env: {
        ...cleanEnv(),
        FERRY_LISTEN: listen,
        FERRY_DATA_DIR: dataDir,
        FERRY_STATIC_DIR: required("FERRY_DIST"),
        FERRY_SECRET: "e2e-secret",
        RUST_LOG: "warn",
        ...env,
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.add(child);
    const [, url] = await waitForLine(child, child.stdout, /listening on (http:\/\/\S+)/, "the companion");
    listen = new URL(url).host;
    return url;
  };
  const url = await launch();
  return {
    url,
    /** Kills the companion and resolves once it is gone. */
    kill: () =>
      new Promise((resolve) => {
        child.once("exit", resolve);
        children.delete(child);
        child.kill("SIGKILL");
      }),
    /** Starts it again on the same address, with the same secret and settings. */
    restart: launch,
    dataDir,
    /** The origin of the store the browser PUTs to, learned from a presigned URL. */
    storeOrigin: async () => {
      // A single PUT's create needs a checksum of the companion's algorithm: any value of the
      // right length will do, as the URL is only read.
      const { checksum } = await fetch(`${url}/api/config`).then((response) => response.json());
      const digestLength = { crc32c: 4, crc64nvme: 8, sha256: 32 }[checksum] ?? 0;
      const created = await fetch(`${url}/api/uploads`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "probe", size: 1, type: "", checksum: Buffer.alloc(digestLength).toString("base64") }),
      }).then((response) => response.json());
      return new URL(created.url.url).origin;
    },
    /** Multipart uploads the embedded store still holds. */
    liveUploads: () => {
      const dir = path.join(dataDir, "ferry", "uploads");
      return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    },
    stop: () => {
      children.delete(child);
      child.kill();
    },
  };
}

/** Resolves once the demo's row for `name` says it waits (`true`) or goes on (`false`). */
export function rowWaiting(page, name, waiting) {
  return page.waitForSelector(`[data-testid=file-row][data-name="${name}"][data-waiting="${waiting}"]`, { timeout: 120_000 });
}

/**
 * Starts ferry-store as a process of its own (bucket `ferry`), so a test can take the store down
 * and bring it back on the same address and folder: a real outage, for the page and the
 * companion alike. `companionEnv` points a companion at it.
 */
export async function startStore() {
  const root = fs.mkdtempSync(path.join(scratch, "outside-store-"));
  const credentials = ["--access-key", "e2e-key", "--secret-key", "e2e-secret-key"];
  let listen = "127.0.0.1:0";
  let child;
  const launch = async () => {
    child = spawn(required("FERRY_STORE_BIN"), ["--root", root, ...credentials, "--bucket", "ferry", "--listen", listen], {
      env: cleanEnv(),
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.add(child);
    const [, url] = await waitForLine(child, child.stdout, /listening on (http:\/\/\S+)/, "the store");
    listen = new URL(url).host;
    return url;
  };
  const endpoint = await launch();
  return {
    endpoint,
    companionEnv: {
      FERRY_S3_ENDPOINT: endpoint,
      FERRY_S3_BUCKET: "ferry",
      FERRY_S3_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: "e2e-key",
      AWS_SECRET_ACCESS_KEY: "e2e-secret-key",
    },
    /** Kills the store and resolves once it is gone. */
    stop: () =>
      new Promise((resolve) => {
        children.delete(child);
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", resolve);
        child.kill("SIGKILL");
      }),
    /** Starts it again on the same address, with the same data. */
    restart: launch,
    /** Multipart uploads the store still holds. */
    liveUploads: () => {
      const dir = path.join(root, "ferry", "uploads");
      return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    },
  };
}

/** Starts moto's S3 server and creates a bucket whose CORS rule lets pages PUT and read ETag. */
export async function startMoto(bucket) {
  const port = await freePort();
  const child = spawn("moto_server", ["-H", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  children.add(child);
  await waitForLine(child, child.stderr, /Running on/, "moto_server");
  const endpoint = `http://127.0.0.1:${port}`;
  const created = await fetch(`${endpoint}/${bucket}`, { method: "PUT" });
  if (!created.ok) throw new Error(`moto: create bucket: ${await created.text()}`);
  const cors = `<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader></CORSRule></CORSConfiguration>`;
  const corsSet = await fetch(`${endpoint}/${bucket}?cors`, { method: "PUT", body: cors });
  if (!corsSet.ok) throw new Error(`moto: bucket CORS: ${await corsSet.text()}`);
  return {
    endpoint,
    companionEnv: {
      FERRY_S3_ENDPOINT: endpoint,
      FERRY_S3_BUCKET: bucket,
      FERRY_S3_REGION: "us-east-1",
      FERRY_S3_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
    },
    stop: () => {
      children.delete(child);
      child.kill();
    },
  };
}

/** Starts Garage (a production S3 store; an outside test binary, AGPL) on loopback ports, with a
 * key, a bucket and the CORS rule pages need. `cargo xtask test` installs it when missing. */
export async function startGarage(bucket) {
  const bin = process.env.FERRY_GARAGE_BIN ?? "garage";
  const dir = fs.mkdtempSync(path.join(scratch, "garage-"));
  const [rpc, s3, admin] = [await freePort(), await freePort(), await freePort()];
  const config = path.join(dir, "garage.toml");
  fs.writeFileSync(
    config,
    [
      `metadata_dir = "${dir}/meta"`,
      `data_dir = "${dir}/data"`,
      `db_engine = "sqlite"`,
      `replication_factor = 1`,
      `rpc_bind_addr = "127.0.0.1:${rpc}"`,
      `rpc_public_addr = "127.0.0.1:${rpc}"`,
      `rpc_secret = "${randomBytes(32).toString("hex")}"`,
      `[s3_api]`,
      `api_bind_addr = "127.0.0.1:${s3}"`,
      `s3_region = "garage"`,
      `[admin]`,
      `api_bind_addr = "127.0.0.1:${admin}"`,
    ].join("\n"),
  );
  const child = spawn(bin, ["-c", config, "server"], { stdio: ["ignore", "ignore", "ignore"] });
  children.add(child);
  const cli = (...args) =>
    new Promise((resolve, reject) =>
      execFile(bin, ["-c", config, ...args], (error, stdout, stderr) =>
        error ? reject(new Error(`garage ${args.join(" ")}: ${stderr || error.message}`)) : resolve(stdout),
      ),
    );
  // Ready when the node answers its CLI over RPC and the S3 port takes a request.
  for (let tries = 0; ; tries++) {
    const ready = await cli("status")
      .then(() => fetch(`http://127.0.0.1:${s3}/`))
      .then(() => true, () => false);
    if (ready) break;
    if (tries > 600 || child.exitCode !== null) throw new Error("Garage did not start");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const node = (await cli("node", "id", "-q")).trim().split("@")[0];
  await cli("layout", "assign", "-z", "dc1", "-c", "1G", node);
  await cli("layout", "apply", "--version", "1");
  const key = await cli("key", "create", "ferry-e2e");
  const field = (name) => key.split("\n").find((line) => line.startsWith(name)).slice(name.length).trim();
  const [keyId, secret] = [field("Key ID:"), field("Secret key:")];
  await cli("bucket", "create", bucket);
  await cli("bucket", "allow", "--read", "--write", "--owner", bucket, "--key", keyId);
  const endpoint = `http://127.0.0.1:${s3}`;
  // PutBucketCors must be signed: boto3 (which comes with moto) signs it.
  const cors = `
import boto3
s3 = boto3.client("s3", endpoint_url="${endpoint}", region_name="garage",
                  aws_access_key_id="${keyId}", aws_secret_access_key="${secret}")
s3.put_bucket_cors(Bucket="${bucket}", CORSConfiguration={"CORSRules": [{
    "AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PUT", "POST", "HEAD"], "AllowedHeaders": ["*"],
    "ExposeHeaders": ["ETag", "x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme", "x-amz-checksum-sha256"],
    "MaxAgeSeconds": 3600}]})
`;
  await new Promise((resolve, reject) =>
    execFile("python3", ["-c", cors], (error, _, stderr) => (error ? reject(new Error(`Garage CORS: ${stderr}`)) : resolve())),
  );
  return {
    endpoint,
    companionEnv: {
      FERRY_S3_ENDPOINT: endpoint,
      FERRY_S3_BUCKET: bucket,
      FERRY_S3_REGION: "garage",
      FERRY_S3_PATH_STYLE: "true",
      AWS_ACCESS_KEY_ID: keyId,
      AWS_SECRET_ACCESS_KEY: secret,
    },
    stop: () => {
      children.delete(child);
      child.kill();
    },
  };
}

function freePort() {
  return new Promise((resolve) => {
    const server = http.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Serves a folder over HTTP on a loopback port (a page from another origin than the companion). */
export async function serveFolder(routes) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
  const server = http.createServer((request, response) => {
    const url = new URL(request.url, "http://localhost");
    const [prefix, dir] = Object.entries(routes).find(([prefix]) => url.pathname.startsWith(prefix)) ?? [];
    const file = dir && path.join(dir, url.pathname.slice(prefix.length) || "index.html");
    if (!file || !file.startsWith(dir) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(response);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** A file of `size` random bytes on disk, with its SHA-256. */
export function makeFile(name, size) {
  const file = path.join(fs.mkdtempSync(path.join(scratch, "files-")), name);
  const hash = createHash("sha256");
  const fd = fs.openSync(file, "w");
  for (let written = 0; written < size; ) {
    const chunk = randomBytes(Math.min(4 * MIB, size - written));
    hash.update(chunk);
    fs.writeSync(fd, chunk);
    written += chunk.length;
  }
  fs.closeSync(fd);
  return { path: file, name, size, sha256: hash.digest("hex") };
}

/** SHA-256 and size of an object read back through the companion's `/api/files` redirect. */
export async function readBack(companionUrl, location) {
  const response = await fetch(new URL(location, companionUrl));
  if (!response.ok) throw new Error(`GET ${location}: ${response.status}`);
  const bytes = Buffer.from(await response.arrayBuffer());
  return { size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex"), headers: response.headers };
}

/** Debian's Chromium, headless, with a fresh profile and no calls to the outside world. */
export function launchChromium() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Picks `files` in the page's file input and waits until every row is done or failed. */
export async function uploadThroughDemo(page, files) {
  await page.setInputFiles("[data-testid=file-input]", files.map((file) => file.path));
  // Resolves on the DOM change that settles the last row, not on a timer.
  await page.evaluate(
    (count) =>
      new Promise((resolve) => {
        const settled = () =>
          document.querySelectorAll('[data-testid=file-row][data-state="done"], [data-testid=file-row][data-state="failed"]').length >= count;
        if (settled()) return resolve();
        new MutationObserver((_, observer) => {
          if (settled()) {
            observer.disconnect();
            resolve();
          }
        }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
      }),
    files.length,
  );
  return page.$$eval("[data-testid=file-row]", (rows) =>
    rows.map((row) => ({
      name: row.dataset.name,
      state: row.dataset.state,
      href: row.querySelector("[data-testid=file-link]")?.getAttribute("href") ?? null,
      code: row.dataset.errorCode ?? null,
      etag: row.dataset.etag ?? null,
    })),
  );
}

/** CORS headers a fulfilled cross-origin answer needs for the page to read it. */
export const CORS = {
  "access-control-allow-origin": "*",
  "access-control-expose-headers": "ETag, Retry-After",
};

/** An S3 error document. */
export function s3Error(code, message) {
  return `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

/** Limits the page's upload bandwidth (bytes per second), as Chrome's network emulation does. */
export async function throttle(page, bytesPerSecond) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 10,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
  return cdp;
}

/** Picks files in the demo page without waiting for them. */
export function pick(page, files) {
  return page.setInputFiles("[data-testid=file-input]", files.map((file) => file.path));
}
