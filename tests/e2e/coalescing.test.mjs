// The same file is never uploaded twice: adds of it in one page share one upload, and tabs take
// turns through a Web Lock per file. Unfinished uploads are listed and discarded from JS, and a
// batch of 20,000 files is queued at once without reading them.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { MIB, launchChromium, makeFile, readBack, serveFolder, startCompanion, throttle } from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

/** Runs `check` with a companion, the npm fixture page's site and a browser context (tabs in
 * it share storage and Web Locks), and stops them after. */
async function scene(check) {
  const companion = await startCompanion();
  const site = await serveFolder({ "/pkg/": process.env.FERRY_PKG, "/": path.join(here, "../fixtures/npm-page") });
  const context = await browser.newContext();
  try {
    await check({ companion, site, context });
  } finally {
    await context.close();
    site.close();
    companion.stop();
  }
}

/** The npm fixture page in `context`, its uploader talking to `companion`; counts its creates. */
async function openPage(context, site, companion) {
  const page = await context.newPage();
  const calls = { creates: 0, storePuts: 0, lists: 0 };
  const storeOrigin = await companion.storeOrigin();
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (request.method() === "POST" && url.pathname === "/api/uploads") calls.creates += 1;
    if (request.method() === "GET" && url.pathname.endsWith("/parts")) calls.lists += 1;
    if (request.method() === "PUT" && request.url().startsWith(storeOrigin)) calls.storePuts += 1;
  });
  await page.goto(`${site.url}/?companion=${encodeURIComponent(companion.url)}`);
  await page.waitForSelector("body[data-ready=true]");
  return { page, calls };
}

/** Waits for the page's result for `name`. */
async function result(page, name) {
  await page.waitForFunction((name) => window.results.some((result) => result.name === name), name, { timeout: 300_000 });
  return page.evaluate((name) => window.results.find((result) => result.name === name), name);
}

/** Waits until the page has stored a part. */
// The tab's request for the file's lock is queued behind another tab's: it will wait for that
// upload (`stats().prepared` counts the file as soon as it is taken, before its fingerprint).
// (An async predicate would not do for waitForFunction: it takes the promise itself as truthy.)
function waitingForLock(page) {
  return page.evaluate(async () => {
    while ((await navigator.locks.query()).pending.length !== 1) await new Promise(requestAnimationFrame);
  });
}

function partStored(page) {
  return page.waitForFunction(() => window.events.some((event) => event.name === "part"), null, { timeout: 120_000 });
}

test("the same File added twice, at once or 1 s apart, is uploaded once and both adds resolve", () =>
  scene(async ({ companion, site, context }) => {
    const { page, calls } = await openPage(context, site, companion);
    const outcome = await page.evaluate(async (mib) => {
      const uploader = window.uploader;
      const bytes = (seed) => new Uint8Array(24 * mib).map((_, index) => (index * seed) % 251);
      const twice = new File([bytes(7)], "twice.bin", { lastModified: 1_700_000_000_000 });
      const first = uploader.add(twice);
      const second = uploader.add(twice);
      const ids = [first.id, second.id];
      const atOnce = await Promise.all([first.done, second.done]);
      // 1 s apart: the first add is held paused, so it is still on its way when the second comes.
      const apart = new File([bytes(13)], "apart.bin", { lastModified: 1_700_000_000_000 });
      const early = uploader.add(apart);
      early.pause();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const late = uploader.add(apart);
      early.resume();
      const oneSecondApart = await Promise.all([early.done, late.done]);
      return { ids, atOnce, oneSecondApart, joined: window.events.filter((event) => event.name === "joined") };
    }, MIB);
    assert.equal(typeof outcome.ids[0], "number", "add returns its id at once");
    assert.notEqual(outcome.ids[0], outcome.ids[1], "each add has its own id");
    assert.equal(calls.creates, 2, "one multipart upload per file, not per add");
    assert.equal(outcome.joined.length, 2, "each second add joined the first");
    for (const [seed, pair] of [[7, outcome.atOnce], [13, outcome.oneSecondApart]]) {
      assert.deepEqual(pair[0], pair[1], "both adds resolve with the same object");
      const expected = Buffer.alloc(24 * MIB);
      for (let index = 0; index < expected.length; index++) expected[index] = (index * seed) % 251;
      const stored = await readBack(companion.url, pair[0].location);
      assert.equal(stored.sha256, createHash("sha256").update(expected).digest("hex"));
    }
  }));

test("two tabs adding the same 100 MiB file, in either order, make one upload", () =>
  scene(async ({ companion, site, context }) => {
    const one = await openPage(context, site, companion);
    const two = await openPage(context, site, companion);
    for (const tab of [one, two]) await throttle(tab.page, 25 * MIB);
    for (const [first, second, name] of [[one, two, "tabs-a.bin"], [two, one, "tabs-b.bin"]]) {
      const before = { creates: one.calls.creates + two.calls.creates, puts: second.calls.storePuts };
      // Picked from disk in each tab: different File objects with the same bytes and dates.
      const file = makeFile(name, 100 * MIB);
      await first.page.setInputFiles("[data-testid=file-input]", file.path);
      await partStored(first.page);
      // The first tab all but stops until the second waits behind its lock: a tab that adds the
      // file after the upload ended uploads it anew, and a loaded machine must not make it so.
      await throttle(first.page, 64 * 1024);
      await second.page.setInputFiles("[data-testid=file-input]", file.path);
      await waitingForLock(second.page);
      await throttle(first.page, 25 * MIB);
      const [uploaded, waited] = [await result(first.page, name), await result(second.page, name)];
      assert.ok(uploaded.ok && waited.ok, `${uploaded.code} ${waited.code}`);
      assert.deepEqual(waited.result, uploaded.result, "the waiting tab resolves with the stored object");
      assert.equal(one.calls.creates + two.calls.creates - before.creates, 1, "one upload for both tabs");
      assert.equal(second.calls.storePuts, before.puts, "the second tab sent no byte");
      assert.equal((await readBack(companion.url, uploaded.result.location)).sha256, file.sha256);
    }
  }));

test("when the uploading tab crashes, the waiting tab resumes its upload", () =>
  scene(async ({ companion, site, context }) => {
    const owner = await openPage(context, site, companion);
    const waiter = await openPage(context, site, companion);
    // Slow enough that the owner is still uploading when it crashes.
    await throttle(owner.page, 25 * MIB);
    const file = makeFile("crash.bin", 100 * MIB);
    await owner.page.setInputFiles("[data-testid=file-input]", file.path);
    await partStored(owner.page);
    await waiter.page.setInputFiles("[data-testid=file-input]", file.path);
    // The waiter is queued behind the owner's lock before the owner goes.
    await waitingForLock(waiter.page);
    // The renderer dies and never answers the command: wait for the crash itself.
    const crashed = owner.page.waitForEvent("crash");
    const cdp = await context.newCDPSession(owner.page);
    cdp.send("Page.crash").catch(() => {});
    await crashed;
    const outcome = await result(waiter.page, "crash.bin");
    assert.ok(outcome.ok, `${outcome.code}: ${outcome.message}`);
    const resumed = await waiter.page.evaluate(() => window.events.find((event) => event.name === "resumed"));
    assert.ok(resumed?.partsKept >= 1, `the parts the crashed tab stored are kept: ${JSON.stringify(resumed)}`);
    assert.equal(owner.calls.creates + waiter.calls.creates, 1, "no second upload");
    assert.equal(waiter.calls.lists, 1, "the waiter listed the crashed tab's parts");
    assert.equal((await readBack(companion.url, outcome.result.location)).sha256, file.sha256);
  }));

test("after a reload, unfinished() lists the upload and discard() aborts it on the store", () =>
  scene(async ({ companion, site, context }) => {
    const { page } = await openPage(context, site, companion);
    const file = makeFile("left.bin", 60 * MIB);
    await page.setInputFiles("[data-testid=file-input]", file.path);
    await partStored(page);
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    const [entry, ...others] = await page.evaluate(() => window.uploader.unfinished());
    assert.deepEqual(others, []);
    assert.equal(entry.name, "left.bin");
    assert.equal(entry.size, 60 * MIB);
    assert.ok(entry.confirmed >= 5 * MIB && entry.confirmed < 60 * MIB, `confirmed ${entry.confirmed}`);
    assert.ok(entry.age >= 0 && entry.age < 60, `age ${entry.age}`);
    const record = JSON.parse(await page.evaluate((id) => localStorage.getItem(id), entry.id));
    const aborted = page.waitForResponse((response) => response.request().method() === "DELETE");
    await page.evaluate((id) => window.uploader.discard(id), entry.id);
    assert.ok((await aborted).ok, "the companion aborted it");
    assert.deepEqual(await page.evaluate(() => window.uploader.unfinished()), [], "its record is gone");
    const listed = await fetch(`${companion.url}/api/uploads/${record.uploadId}/parts?token=${encodeURIComponent(record.token)}`);
    assert.equal(listed.status, 404, "the store holds no such multipart upload any more");
  }));

test("20,000 files are queued at once: ids come back synchronously and memory stays flat", () =>
  scene(async ({ companion, site, context }) => {
    const { page, calls } = await openPage(context, site, companion);
    const cdp = await context.newCDPSession(page);
    const heap = async () => (await cdp.send("Runtime.getHeapUsage")).usedSize;
    await cdp.send("HeapProfiler.collectGarbage");
    const before = await heap();
    const added = await page.evaluate((mib) => {
      const uploader = window.createUploader({ endpoint: new URLSearchParams(location.search).get("companion") });
      // Files of 6 MiB each (multipart, so each would need a fingerprint), sharing one buffer.
      const shared = new Blob([new Uint8Array(6 * mib)]);
      const files = Array.from({ length: 20_000 }, (_, index) => new File([shared], `many-${index}.bin`));
      const uploads = files.map((file) => uploader.add(file));
      const ids = uploads.map((upload) => upload.id);
      window.many = { uploader, uploads };
      return { ids: ids.filter((id) => typeof id === "number").length, distinct: new Set(ids).size, stats: uploader.stats() };
    }, MIB);
    const heaps = [await heap()];
    // The scheduler runs a while: files are taken, fingerprinted and sent, a few at a time.
    await page.waitForFunction(() => window.many.uploader.stats().puts >= 20, null, { timeout: 60_000 });
    heaps.push(await heap());
    const outcome = await page.evaluate(async (added) => {
      const { uploader, uploads } = window.many;
      const running = uploader.stats();
      uploader.cancelAll();
      const settled = await Promise.allSettled(uploads.map((upload) => upload.done));
      return {
        ...added,
        running,
        cancelled: settled.filter((outcome) => outcome.status === "rejected" && outcome.reason.code === "Cancelled").length,
        done: settled.filter((outcome) => outcome.status === "fulfilled").length,
      };
    }, added);
    assert.equal(outcome.ids, 20_000, "every add returned its id at once");
    assert.equal(outcome.distinct, 20_000);
    assert.ok(outcome.stats.queued + outcome.stats.prepared === 20_000, JSON.stringify(outcome.stats));
    assert.ok(outcome.running.prepared <= 10, `at most triggers files taken: ${JSON.stringify(outcome.running)}`);
    assert.equal(outcome.cancelled + outcome.done, 20_000, "every add settled");
    assert.ok(calls.creates <= outcome.done + 10, `${calls.creates} creates for ${outcome.done} files done`);
    const peak = Math.max(...heaps) - before;
    assert.ok(peak < 64 * MIB, `the JS heap grew ${Math.round(peak / MIB)} MiB for 20,000 queued files`);
  }));
