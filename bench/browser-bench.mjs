// Ferry against its peers in the same headless Chromium, against the same ferry-store on
// loopback, side by side in one run: wall time, throughput, peak JS heap, requests per part, page
// CPU, with every object verified by SHA-256. The last workload uploads small files through the
// npm package alone and drops the same files on the demo page (FERRY_DIST, served by Ferry's
// companion): whether the page keeps up with its library, with the page's longest main-thread task
// and its peak number of elements. Run by `cargo xtask bench` (BENCH_SMOKE=1 for the small run
// `cargo xtask test` makes). To look closer: BENCH_WORKLOADS=2,3 runs only those workloads,
// BENCH_LIBRARIES=ferry only those libraries, BENCH_PROFILE=dir writes each point's page CPU
// profile.

import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

import { DeleteObjectCommand, GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { chromium } from "playwright-core";

import { drawCharts } from "./charts.mjs";
import { scratchDir, startServers } from "./servers.mjs";
import { startThrottle } from "./throttle.mjs";

const here = path.dirname(new URL(import.meta.url).pathname);
const MIB = 1024 * 1024;
const SMOKE = process.env.BENCH_SMOKE === "1";
/** The most any page can do: signed in advance, then 6 (or 3) parallel XHR PUTs of `Blob.slice()`s. */
const RAW = ["in-browser raw (6 PUTs)", "in-browser raw (3 PUTs)"];
const LIBRARIES = (process.env.BENCH_LIBRARIES ?? ["ferry", ...RAW, "uppy-6", "uppy-5", "lib-storage"].join(",")).split(",");
/** The workloads to run, by their number (1-7, as WORKLOADS lists them); all by default. */
const CHOSEN = process.env.BENCH_WORKLOADS?.split(",").map(Number);
/** A folder to write each point's page CPU profile to (`.cpuprofile`, for Chrome's DevTools). */
const PROFILES = process.env.BENCH_PROFILE;
/** A peer that takes longer than this on one workload did not survive it; Ferry must finish. */
const POINT_TIMEOUT_MS = Number(process.env.BENCH_POINT_TIMEOUT_SECONDS ?? (SMOKE ? 120 : 180)) * 1000;
const FERRY_TIMEOUT_MS = 30 * 60 * 1000;
/** How many times a workload's `alternate` libraries run, one after the other. */
const RUNS = SMOKE ? 1 : 3;
const scratch = scratchDir("ferry-browser-bench-");
/** The demo page as trunk built it: `cargo xtask bench` sets FERRY_DIST, `cargo xtask test` builds it into dist/. */
const DEMO_DIST = path.resolve(process.env.FERRY_DIST ?? path.join(here, "../dist"));
/** The "library" that is the demo page (crates/ferry-demo): Ferry driven by its own UI. */
const PAGE = "demo page";
/** Ferry through a companion with checksums off: what checksums cost, on the large file. */
const UNCHECKED = "ferry (checksums off)";
/** Ferry on a page that cannot start Workers: every part hashed on the page's thread. */
const HASHED_ON_PAGE = "ferry (hashing on the page)";
/** Ferry with no PUT failed on purpose, in the workload that fails some: what the failures cost. */
const UNFAILED = "ferry (no failures)";
/** Ferry's own runs: each must finish, whatever it takes. */
const OURS = ["ferry", UNCHECKED, HASHED_ON_PAGE, UNFAILED];

/** The workloads of the benchmark; the smoke run keeps their shape at a fraction of the size. */
const WORKLOADS = [
  // Watched too: hashing 1 GiB must not block the page (no task over 50 ms).
  // Ferry with checksums (hashed in its Worker, and on the page) and without, alternated RUNS
  // times: what checksums cost is smaller than one run's noise on a 2-core machine.
  // Ferry and the in-browser ceiling take turns RUNS times in the workloads its goals compare.
  { name: "one large file", files: 1, size: SMOKE ? 16 * MIB : 1024 * MIB, libraries: ["ferry", UNCHECKED, HASHED_ON_PAGE, ...RAW, "uppy-6", "uppy-5", "lib-storage"], watch: true, alternate: ["ferry", UNCHECKED, HASHED_ON_PAGE, RAW[0]] },
  { name: "many small files", files: SMOKE ? 40 : 2000, size: 64 * 1024, alternate: ["ferry", RAW[0]] },
  { name: "very many tiny files", files: SMOKE ? 100 : 20000, size: 4 * 1024, onlySurvivors: true },
  // The failures' cost: the same file with none failed, taking turns with the run that has them
  // (the ceiling, which never retries, is the first workload's).
  { name: "10% of part PUTs fail", files: 1, size: SMOKE ? 16 * MIB : 256 * MIB, failEvery: 10, libraries: ["ferry", UNFAILED, "uppy-6", "uppy-5", "lib-storage"], alternate: ["ferry", UNFAILED] },
  { name: "throttled link (100 Mbit/s, 40 ms)", files: 1, size: SMOKE ? 4 * MIB : 256 * MIB, throttle: true, alternate: ["ferry", RAW[0]] },
  // The page keeps up with its library: the files uploaded through the npm package alone, then
  // the same files dropped on the demo page through its own file input, taking turns RUNS times
  // (one run's noise is larger than the difference); both watched for long tasks and elements.
  { name: "the demo page keeps up", files: SMOKE ? 40 : 2000, size: 64 * 1024, libraries: ["ferry", PAGE], watch: true, alternate: ["ferry", PAGE] },
  // Round trips per file decide here: a preflight and a companion call cost 40 ms each.
  { name: "many small files on a throttled link", files: SMOKE ? 20 : 500, size: 64 * 1024, throttle: true, alternate: ["ferry", RAW[0]] },
];
const SELECTED = WORKLOADS.filter((_, index) => !CHOSEN || CHOSEN.includes(index + 1));
/** A workload's libraries: its own list if it has one (BENCH_LIBRARIES, if set, still filters it), else every peer. */
const librariesOf = (workload) =>
  workload.libraries ? workload.libraries.filter((library) => !process.env.BENCH_LIBRARIES || LIBRARIES.includes(library)) : LIBRARIES.filter((library) => library !== PAGE && library !== UNFAILED);
const needsPage = SELECTED.some((workload) => librariesOf(workload).includes(PAGE));
if (needsPage && !fs.existsSync(path.join(DEMO_DIST, "index.html"))) {
  throw new Error(`no demo page in ${DEMO_DIST}: build it (trunk build --release) or set FERRY_DIST`);
}


function makeFiles(workload) {
  const dir = fs.mkdtempSync(path.join(scratch, "files-"));
  return Array.from({ length: workload.files }, (_, index) => {
    const file = path.join(dir, `file-${index}.bin`);
    const hash = createHash("sha256");
    const fd = fs.openSync(file, "w");
    for (let written = 0; written < workload.size; ) {
      const chunk = randomBytes(Math.min(8 * MIB, workload.size - written));
      hash.update(chunk);
      fs.writeSync(fd, chunk);
      written += chunk.length;
    }
    fs.closeSync(fd);
    return { path: file, name: path.basename(file), sha256: hash.digest("hex") };
  });
}

function serve(dir) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
  const server = http.createServer((request, response) => {
    const file = path.join(dir, new URL(request.url, "http://x").pathname.replace(/\/$/, "/index.html"));
    if (!file.startsWith(dir) || !fs.existsSync(file)) return response.writeHead(404).end();
    response.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(response);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

/**
 * SHA-256 of a stored object, read straight from the store with its credentials: every peer's
 * objects, whatever keys it chose (Ferry's companion serves only keys of its own shape).
 */
async function stored(s3, bucket, key) {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return createHash("sha256").update(await object.Body.transformToByteArray()).digest("hex");
}

// The servers: one store, Ferry's companion and @uppy/companion both signing for it.
// Ferry's companion also serves the demo page, which talks to it on its own origin.
const { store, ferry, ferryUnchecked, uppy, ...credentials } = await startServers({
  admissionQueue: 65536,
  staticDir: needsPage ? DEMO_DIST : undefined,
  unchecked: true,
});
const config = { ferry, ferryUnchecked, uppy, store, ...credentials };
const s3 = new S3Client({
  endpoint: store,
  region: "us-east-1",
  forcePathStyle: true,
  responseChecksumValidation: "WHEN_REQUIRED",
  credentials: { accessKeyId: credentials.key, secretAccessKey: credentials.secret },
});

// The page, built by Vite with every library in it.
const dist = path.join(scratch, "dist");
const built = spawnSync(path.join(here, "node_modules/.bin/vite"), ["build", path.join(here, "browser"), "--outDir", dist], { encoding: "utf8" });
if (built.status !== 0) throw new Error(`vite build failed:\n${built.stdout}\n${built.stderr}`);
const site = await serve(dist);

// The throttled workloads' link: 100 Mbit/s each way, 40 ms per round trip (bench/throttle.mjs).
const throttle = await startThrottle({ roundTripMs: 40, bitsPerSecond: 100e6 });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--enable-precise-memory-info"],
});

/**
 * Whose code ran in the longest of `tasks` (`[start, duration]`): the scripts that ran within
 * it, from the long animation frames that overlap it, longest first, as "invoker function
 * (file) N ms". A frame over it with no script over 5 ms in the task means the browser's own
 * work (style, layout, GC, its event plumbing); no frame over it, that nothing was recorded.
 */
function attribute(tasks, frames) {
  if (!tasks.length) return null;
  const [start, duration] = tasks.reduce((longest, task) => (task[1] > longest[1] ? task : longest));
  const overlaps = (from, length) => from < start + duration && from + length > start;
  const over = frames.filter(([frameStart, frameDuration]) => overlaps(frameStart, frameDuration));
  if (!over.length) return "unattributed: no long animation frame over it";
  const scripts = over
    .flatMap(([, , scripts]) => scripts)
    .filter(([, , , ms, scriptStart]) => overlaps(scriptStart, ms))
    .sort((a, b) => b[3] - a[3])
    .slice(0, 3)
    .map(([invoker, name, file, ms]) => `${invoker}${name && !invoker.includes(name) ? ` ${name}` : ""}${file ? ` (${file})` : ""} ${ms.toFixed(0)} ms`);
  return scripts.length ? scripts.join(", ") : "no script over 5 ms: the browser's own work";
}

/**
 * Installed before a page's own scripts (`addInitScript`): the main thread's long tasks, the peak
 * number of elements sampled every 100 ms, when the demo's file input changed, and the demo's
 * WebAssembly memory once trunk has started it.
 */
function watchMainThread() {
  const watch = { tasks: [], frames: [], peakElements: 0, changed: null, memory: null };
  window.__watch = watch;
  const record = (entries) => entries.forEach((entry) => watch.tasks.push([entry.startTime, entry.duration]));
  watch.observer = new PerformanceObserver((list) => record(list.getEntries()));
  watch.observer.observe({ type: "longtask", buffered: true });
  // Whose code ran in a long task: the long animation frames that blocked, with their scripts
  // (each script over 5 ms: what called it, its function and file, its milliseconds).
  const frame = (entry) => [
    entry.startTime,
    entry.duration,
    entry.scripts.map((script) => [script.invoker, script.sourceFunctionName, script.sourceURL.split("/").pop(), script.duration, script.startTime]),
  ];
  const recordFrames = (entries) => entries.filter((entry) => entry.blockingDuration > 0).forEach((entry) => watch.frames.push(frame(entry)));
  watch.frameObserver = new PerformanceObserver((list) => recordFrames(list.getEntries()));
  watch.frameObserver.observe({ type: "long-animation-frame", buffered: true });
  // A live collection: its length is counted again only after the DOM changed.
  const elements = document.getElementsByTagName("*");
  watch.sample = () => {
    watch.peakElements = Math.max(watch.peakElements, elements.length);
  };
  setInterval(watch.sample, 100);
  watch.flush = () => {
    record(watch.observer.takeRecords());
    recordFrames(watch.frameObserver.takeRecords());
    watch.sample();
    return { tasks: watch.tasks, frames: watch.frames, peakElements: watch.peakElements };
  };
  addEventListener("change", (event) => {
    if (event.target?.dataset?.testid === "file-input") watch.changed = performance.now();
  }, true);
  addEventListener("TrunkApplicationStarted", (event) => {
    watch.memory = event.detail?.wasm?.memory ?? null;
  });
}

/**
 * The demo page's run: the files set on its own file input (its `change` starts every upload),
 * until its totals bar counts all of them stored; a failed row in view ends it at once. The keys
 * to verify are those it sent parts to (`measure` hears PUTs, the page notes its forms): a long
 * list shows only the rows in view.
 */
async function dropOnDemo(page, files) {
  const count = String(files.length);
  // `data-done` and `data-count` on the totals bar; before they existed, the rows told.
  const attributes = await page.$eval("[data-testid=total-bar]", (bar) => bar.hasAttribute("data-done") && bar.hasAttribute("data-count"));
  await page.setInputFiles("[data-testid=file-input]", files.map((file) => file.path));
  // Told by the totals bar's own change (a MutationObserver), not by polling every frame, which
  // would make the page render 60 times a second where the package alone renders nothing.
  const finished = attributes
    ? page.evaluateHandle(
        (count) =>
          new Promise((resolve) => {
            const stored = () => {
              const bar = document.querySelector("[data-testid=total-bar]");
              return bar?.dataset.done === count && bar.dataset.count === count;
            };
            if (stored()) return resolve(performance.now());
            const observer = new MutationObserver(() => {
              if (!stored()) return;
              observer.disconnect();
              resolve(performance.now());
            });
            observer.observe(document.querySelector("[data-testid=total-bar]").parentElement, { attributes: true, childList: true, subtree: true });
          }),
        count,
      )
    : page.waitForFunction((count) => String(document.querySelectorAll("[data-testid=file-row][data-state=done]").length) === count && performance.now(), count, { polling: 100, timeout: 0 });
  const failed = page.waitForFunction(
    () => {
      const row = document.querySelector("[data-testid=file-row][data-state=failed]");
      return row && `${row.dataset.name} failed on the page (${row.dataset.errorCode || "no code"})`;
    },
    null,
    { polling: 1000, timeout: 0 },
  );
  const outcome = await Promise.race([finished.then(async (end) => ({ end: await end.jsonValue() })), failed.then(async (error) => ({ error: await error.jsonValue() }))]);
  if (outcome.error) return outcome;
  const started = await page.evaluate(() => window.__watch.changed);
  return { ms: outcome.end - started, started };
}

/**
 * The browser's own cost of picking `files`: the longest task of setting them on a bare file
 * input whose `change` handler does nothing. Chromium builds the FileList (a stat of each file)
 * on the main thread, in the task that dispatches `change`; no page can avoid it.
 */
async function inputFloor(files) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.setContent(`<input type="file" multiple><script>
    window.tasks = [];
    new PerformanceObserver((list) => list.getEntries().forEach((entry) => tasks.push(entry.duration))).observe({ type: "longtask", buffered: true });
    document.querySelector("input").addEventListener("change", () => (window.changed = true));
  </script>`);
  await page.setInputFiles("input", files.map((file) => file.path));
  await page.waitForFunction(() => window.changed);
  // The long task entry is queued once its task ended: one more frame delivers it.
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0))));
  const longest = await page.evaluate(() => Math.max(0, ...window.tasks));
  await context.close();
  return longest;
}

/** Runs in the page before its scripts: notes the `key` field of every form it sends. */
function noteFormKeys() {
  window.__formKeys = [];
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (body) {
    if (body instanceof FormData && body.has("key")) window.__formKeys.push(body.get("key"));
    return send.call(this, body);
  };
}

/** The key a presigned path-style PUT to the store writes: each segment percent-encoded. */
function keyOf(request) {
  const { origin, pathname } = new URL(request.url());
  const bucket = `/${credentials.bucket}/`;
  if (origin !== new URL(store).origin || !pathname.startsWith(bucket)) return null;
  return pathname.slice(bucket.length).split("/").map(decodeURIComponent).join("/");
}

async function measure(library, workload, files) {
  // Each run starts with the disk written back: the last run's objects (up to 1 GiB) would
  // otherwise be flushed during this one, charged to whichever library runs first.
  spawnSync("sync");
  const isPage = library === PAGE;
  // A throttled workload's context reaches every server through the slow link, preflights too.
  const context = await browser.newContext(workload.throttle ? { proxy: { server: throttle.url } } : {});
  const page = await context.newPage();
  if (workload.watch) await page.addInitScript(watchMainThread);
  if (isPage) await page.addInitScript(noteFormKeys);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  // The demo page is served by Ferry's companion, at its root.
  await page.goto(isPage ? ferry : site);
  await page.waitForSelector(isPage ? "[data-testid=total-bar]" : "body[data-ready=true]");
  const requests = { store: 0, companion: 0, failedOnPurpose: 0 };
  // Part uploads in flight over time, for the slot idle fraction: PUTs, and POST forms (a POST
  // to the store with no query; a multipart upload's create and complete have one).
  const timeline = [];
  const isPart = (request) =>
    request.url().startsWith(store) && (request.method() === "PUT" || (request.method() === "POST" && !new URL(request.url()).search));
  // Every key the page sent to: the demo page's objects, to read back. A POST form's key is a
  // field of its body, which request events do not carry: the page notes it as it sends.
  const sentKeys = new Set();
  page.on("request", (request) => {
    if (request.method() === "OPTIONS") return;
    if (request.url().startsWith(store)) requests.store += 1;
    else if (request.url().startsWith(ferry) || request.url().startsWith(uppy)) requests.companion += 1;
    if (isPart(request)) {
      timeline.push([performance.now(), +1]);
      if (isPage && request.method() === "PUT") sentKeys.add(keyOf(request));
    }
  });
  const ended = new WeakSet();
  const end = (request) => {
    if (!isPart(request) || ended.has(request)) return;
    ended.add(request);
    timeline.push([performance.now(), -1]);
  };
  page.on("requestfinished", end);
  page.on("requestfailed", end);
  if (workload.failEvery) {
    // The run with no failures goes through the same interception, which has its own cost.
    const fails = library !== UNFAILED;
    let puts = 0;
    await page.route(`${store}/**`, (route) => {
      if (fails && route.request().method() === "PUT" && ++puts % workload.failEvery === 0) {
        requests.failedOnPurpose += 1;
        return route.fulfill({ status: 500, headers: { "access-control-allow-origin": "*", "access-control-expose-headers": "ETag" }, body: "<Error><Code>InternalError</Code></Error>" });
      }
      return route.continue();
    });
  }
  // The bench page's files are picked before its clock starts; the demo page's pick is its start.
  if (!isPage) await page.setInputFiles("#files", files.map((file) => file.path));
  const metrics = async () => Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map(({ name, value }) => [name, value]));
  const before = await metrics();
  const wasmBytes = () =>
    OURS.includes(library) ? page.evaluate(() => window.bench.wasmBytes()) : isPage ? page.evaluate(() => window.__watch?.memory?.buffer.byteLength ?? 0) : 0;
  const memory = async () => (await metrics()).JSHeapUsedSize + (await wasmBytes());
  let peakMemory = await memory();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peakMemory = Math.max(peakMemory, await memory().catch(() => 0));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  let outcome;
  let timer;
  const limit = OURS.includes(library) || isPage ? FERRY_TIMEOUT_MS : POINT_TIMEOUT_MS;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ error: `did not finish within ${limit / 1000} s` }), limit);
  });
  if (PROFILES) {
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.start");
  }
  try {
    const run = isPage ? dropOnDemo(page, files) : page.evaluate(([library, config]) => window.bench.run(library, config), [library, config]);
    outcome = await Promise.race([run, timeout]);
  } catch (error) {
    outcome = { error: String(error.message ?? error).slice(0, 300) };
  }
  clearTimeout(timer);
  if (PROFILES) {
    const { profile } = await cdp.send("Profiler.stop");
    fs.mkdirSync(PROFILES, { recursive: true });
    fs.writeFileSync(path.join(PROFILES, `${workload.name.replace(/\W+/g, "-")}-${library.replace(/\W+/g, "-")}.cpuprofile`), JSON.stringify(profile));
  }
  sampling = false;
  await sampler;
  const after = await metrics();
  // The main thread while the files uploaded: long tasks that overlap the run, peak elements.
  let watched;
  if (workload.watch && !outcome.error) {
    // A long task's and a long frame's entries come a frame after they ended.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0))));
    const { tasks, frames, peakElements } = await page.evaluate(() => window.__watch.flush());
    const end = outcome.started + outcome.ms;
    const overlapping = tasks.filter(([start, duration]) => start < end && start + duration > outcome.started);
    // The task that set the files on the input also dispatched its `change`: that is the
    // browser building the FileList (see `inputFloor`), not the page's own work.
    const isInput = ([start, duration]) => isPage && start <= outcome.started && outcome.started <= start + duration;
    const ownTasks = overlapping.filter((task) => !isInput(task));
    const during = ownTasks.map(([, duration]) => duration);
    watched = {
      longest_task_ms: Math.max(0, ...during),
      longest_task_scripts: attribute(ownTasks, frames),
      long_tasks_over_100_ms: during.filter((duration) => duration > 100).length,
      peak_dom_nodes: peakElements,
      ...(isPage ? { input_task_ms: Math.max(0, ...overlapping.filter(isInput).map(([, duration]) => duration)), input_floor_ms: await inputFloor(files) } : {}),
    };
  }
  const formKeys = isPage && !outcome.error ? await page.evaluate(() => window.__formKeys).catch(() => []) : [];
  await context.close();
  if (outcome.error) return { library, workload: workload.name, failed: outcome.error };
  // A form sent again (a retry) names its key again: each object is read back once.
  if (isPage) outcome.keys = [...new Set([...sentKeys, ...formKeys])].filter(Boolean);
  const hashes = new Set(files.map((file) => file.sha256));
  // Read back 8 at a time: 20,000 objects one by one would take longer than uploading them.
  let verified = 0;
  const unread = [...outcome.keys];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let key = unread.pop(); key; key = unread.pop()) {
        // A key with no object (an upload never completed) is simply not verified.
        if (hashes.has(await stored(s3, credentials.bucket, key).catch(() => null))) verified += 1;
        // Read, then removed: every run's 1 GiB objects kept in the store would fill the disk.
        await s3.send(new DeleteObjectCommand({ Bucket: credentials.bucket, Key: key })).catch(() => {});
      }
    }),
  );
  const bytes = workload.files * workload.size;
  const parts = workload.files * Math.max(1, Math.ceil(workload.size / (5 * MIB)));
  return {
    library,
    workload: workload.name,
    seconds: outcome.ms / 1000,
    mb_per_second: bytes / MIB / (outcome.ms / 1000),
    files_per_second: workload.files / (outcome.ms / 1000),
    peak_memory_mib: peakMemory / MIB,
    slot_idle_fraction: idleFraction(timeline),
    page_cpu_seconds: after.TaskDuration - before.TaskDuration,
    store_requests_per_part: requests.store / parts,
    companion_requests_per_part: requests.companion / parts,
    failed_on_purpose: requests.failedOnPurpose,
    verified: `${verified}/${workload.files}`,
    ...watched,
  };
}

/**
 * Of the time from the first part upload (PUT or POST form) to the last one starting, the share
 * in which fewer ran than the library's working concurrency: slots it had but left empty. The
 * working concurrency is the most uploads it kept running for at least 5% of that time; a higher
 * count held for an instant is the harness hearing of one upload's end after the next one's start.
 */
function idleFraction(timeline) {
  const events = [...timeline].sort((a, b) => a[0] - b[0]);
  const starts = events.filter(([, delta]) => delta > 0);
  if (starts.length < 2) return 0;
  const first = events[0][0];
  const until = starts.at(-1)[0];
  // How long each number of uploads was running.
  const held = new Map();
  let running = 0;
  let last = first;
  for (const [at, delta] of events) {
    const to = Math.min(at, until);
    if (to > last) held.set(running, (held.get(running) ?? 0) + (to - last));
    last = Math.max(last, to);
    running += delta;
  }
  const span = until - first;
  const working = Math.max(...[...held].filter(([, time]) => time >= 0.05 * span).map(([count]) => count), 1);
  let idle = 0;
  for (const [count, time] of held) idle += Math.max(0, working - count) * time;
  return idle / (working * span);
}

/** The raw limit: the same parts PUT by a native (Node.js) client, 5 at a time, with Ferry's URLs
 * (from the companion with checksums off: this client hashes nothing). */
async function rawLimit(files, size) {
  const ferry = ferryUnchecked;
  const created = await (await fetch(`${ferry}/api/uploads`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "raw.bin", size, type: "" }) })).json();
  const parts = Array.from({ length: created.partCount }, (_, index) => index + 1);
  const signed = await (await fetch(`${ferry}/api/uploads/${created.uploadId}/sign`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: created.token, parts }) })).json();
  const data = fs.readFileSync(files[0].path);
  const started = performance.now();
  const queue = [...signed.urls];
  const etags = [];
  await Promise.all(
    Array.from({ length: 5 }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const body = data.subarray((next.part - 1) * created.partSize, next.part * created.partSize);
        const response = await fetch(next.url, { method: "PUT", body });
        etags[next.part - 1] = response.headers.get("etag");
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await fetch(`${ferry}/api/uploads/${created.uploadId}/complete`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: created.token, parts: etags.map((etag, index) => ({ part: index + 1, etag })) }) });
  return { library: "raw native PUTs", workload: WORKLOADS[0].name, seconds, mb_per_second: size / MIB / seconds };
}

/**
 * What hashing costs the page, apart from uploading: the large file hashed each way the bench page
 * offers (`window.bench.hashers`), with the main thread's longest task while it ran.
 */
async function hashingCost(file, size) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(watchMainThread);
  await page.goto(site);
  await page.waitForSelector("body[data-ready=true]");
  await page.setInputFiles("#files", file.path);
  const measured = [];
  for (const method of await page.evaluate(() => window.bench.hashers)) {
    const { ms, started } = await page.evaluate((method) => window.bench.hash(method), method);
    // The last long task's entry comes a frame after it ended.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0))));
    const { tasks, frames } = await page.evaluate(() => window.__watch.flush());
    const overlapping = tasks.filter(([start, duration]) => start < started + ms && start + duration > started);
    const during = overlapping.map(([, duration]) => duration);
    measured.push({ method, seconds: ms / 1000, mb_per_second: size / MIB / (ms / 1000), longest_task_ms: Math.max(0, ...during), longest_task_scripts: attribute(overlapping, frames) });
  }
  await context.close();
  return measured;
}

const results = { smoke: SMOKE, machine: `${os.cpus()[0].model}, ${os.cpus().length} cores`, chromium: browser.version(), settings: {
  ferry: "defaults (10 files prepared ahead; 5 part PUTs, 3 with a file over 65 MiB; 3 per file; 20 URLs per sign call; CRC32C checksums), companion with FERRY_S3_POST_FORMS=true (files up to 1 MiB as one POST form each, as on AWS S3)",
  [UNCHECKED]: "the same, through a companion with FERRY_CHECKSUM=off",
  [HASHED_ON_PAGE]: "the same, on a page that cannot start Workers: every part hashed on the page's thread",
  [UNFAILED]: "the same, in the workload that fails PUTs, with none failed",
  [RAW[0]]: "the most a page can do: every upload created and every part signed by Ferry's companion (checksums off) before the clock, then 6 parallel XHR PUTs of `Blob.slice()`s with no progress listener and the Completes of multipart uploads, all at once",
  [RAW[1]]: "the same with 3 parallel PUTs",
  "uppy-6": "@uppy/core 6.3.1 + @uppy/aws-s3 6.3.1, shouldUseMultipart: true, signing by @uppy/companion 6.2.2; other options default",
  "uppy-5": "@uppy/core 5.2.0 + @uppy/aws-s3 5.1.0, shouldUseMultipart: true, signing by @uppy/companion 6.2.2; other options default",
  "lib-storage": "@aws-sdk/client-s3 + @aws-sdk/lib-storage 3.1169.0, defaults (queueSize 4, 5 MiB parts), requestChecksumCalculation WHEN_REQUIRED, all files started at once",
}, points: [], hashing: [] };
/**
 * The median of a library's runs (its first failure, if one failed), with every run's seconds and
 * the worst main-thread figures of them all.
 */
function median(runs) {
  const finished = runs.filter((point) => !point.failed).sort((a, b) => a.seconds - b.seconds);
  if (finished.length < runs.length) return runs.find((point) => point.failed);
  const worst = (field) => (runs[0][field] === undefined ? {} : { [field]: Math.max(...runs.map((point) => point[field])) });
  // The longest task of them all, with whose code ran in it.
  const longest = runs[0].longest_task_ms === undefined ? {} : runs.reduce((a, b) => (b.longest_task_ms > a.longest_task_ms ? b : a));
  return {
    ...finished[(finished.length - 1) >> 1],
    runs_seconds: runs.map((point) => point.seconds),
    ...worst("longest_task_ms"),
    ...(longest.longest_task_scripts === undefined ? {} : { longest_task_scripts: longest.longest_task_scripts }),
    ...worst("long_tasks_over_100_ms"),
  };
}

/** Each library of `workload` once, but its `alternate` ones RUNS times each, taking turns. */
async function measureAll(workload, files) {
  const libraries = librariesOf(workload);
  const alternated = (workload.alternate ?? []).filter((library) => libraries.includes(library));
  const runs = new Map(alternated.map((library) => [library, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const library of alternated) runs.get(library).push(await measure(library, workload, files));
  }
  const points = [];
  for (const library of libraries) points.push(runs.has(library) ? median(runs.get(library)) : await measure(library, workload, files));
  return points;
}

for (const workload of SELECTED) {
  const files = makeFiles(workload);
  for (const point of await measureAll(workload, files)) {
    results.points.push(point);
    const input = point.input_task_ms === undefined ? "" : `; the input's own task ${point.input_task_ms.toFixed(0)} ms, on a bare input ${point.input_floor_ms.toFixed(0)} ms`;
    const watched = workload.watch && !point.failed ? `, ${point.files_per_second.toFixed(0)} files/s, longest task ${point.longest_task_ms.toFixed(0)} ms (${point.long_tasks_over_100_ms} over 100 ms)${input}, peak ${point.peak_dom_nodes} elements` : "";
    console.error(`${workload.name} / ${point.library}: ${point.failed ? `failed: ${point.failed}` : `${point.seconds.toFixed(2)} s, ${point.mb_per_second.toFixed(1)} MB/s, memory ${point.peak_memory_mib.toFixed(1)} MiB, idle ${(point.slot_idle_fraction * 100).toFixed(1)}%, verified ${point.verified}${watched}`}`);
  }
  const [alone, onPage, unchecked] = ["ferry", PAGE, UNCHECKED].map((library) => results.points.find((point) => point.workload === workload.name && point.library === library && !point.failed));
  if (alone && onPage) console.error(`${workload.name}: the page takes ${(onPage.seconds / alone.seconds).toFixed(2)}x the library's time (goal: at most 1.2x)`);
  if (alone && unchecked) console.error(`${workload.name}: with checksums, ${(alone.mb_per_second / unchecked.mb_per_second).toFixed(2)}x the throughput without (goal: at least 0.9x)`);
  if (workload === WORKLOADS[0]) {
    const raw = await rawLimit(files, workload.size);
    results.points.push(raw);
    console.error(`${workload.name} / raw: ${raw.mb_per_second.toFixed(1)} MB/s`);
    results.hashing = await hashingCost(files[0], workload.size);
    for (const { method, mb_per_second, longest_task_ms } of results.hashing) console.error(`hashing / ${method}: ${mb_per_second.toFixed(0)} MB/s, longest task ${longest_task_ms.toFixed(0)} ms`);
  }
  fs.rmSync(path.dirname(files[0].path), { recursive: true, force: true });
}
if (process.env.BENCH_CHARTS) await drawCharts(browser, results, process.env.BENCH_CHARTS);
await browser.close();
throttle.close();
console.log(JSON.stringify(results, null, 2));
// The smoke run is a test: Ferry, alone and in the demo page, and the in-browser ceiling must
// complete and every object read back must match.
const mismatched = (point) => point.verified && point.verified.split("/")[0] !== point.verified.split("/")[1];
const broken = results.points.filter((point) => ([...OURS, PAGE, ...RAW].includes(point.library) && point.failed) || mismatched(point));
if (broken.length) {
  console.error("broken points:", JSON.stringify(broken));
  process.exit(1);
}
process.exit(0);
