// Uploads that survive what a real network does, in headless Chromium with request interception.

import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, test } from "node:test";

import {
  CORS,
  MIB,
  launchChromium,
  makeFile,
  pick,
  readBack,
  rowWaiting,
  s3Error,
  startCompanion,
  startStore,
  throttle,
  uploadThroughDemo,
} from "./harness.mjs";

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

/** A fresh page on the demo, and the companion behind it; both closed by `done`. */
async function demo(env = {}) {
  const companion = await startCompanion(env);
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(companion.url);
  return {
    companion,
    page,
    context,
    storeOrigin: await companion.storeOrigin(),
    done: async () => {
      await context.close();
      companion.stop();
    },
  };
}

/** The demo on a companion whose store runs apart (so either can go down), on a link of `bytesPerSecond`. */
async function demoOnOwnStore(bytesPerSecond) {
  const store = await startStore();
  const setup = await demo(store.companionEnv);
  await throttle(setup.page, bytesPerSecond);
  return {
    store,
    ...setup,
    done: async () => {
      await setup.done();
      await store.stop();
    },
  };
}

async function assertStored(companion, rows, files) {
  for (const file of files) {
    const row = rows.find((row) => row.name === file.name);
    assert.equal(row?.state, "done", `${file.name}: ${row?.code}`);
    const stored = await readBack(companion.url, row.href);
    assert.equal(stored.sha256, file.sha256, `${file.name} reads back identical`);
  }
}

const isPart = (storeOrigin) => (request) => request.method() === "PUT" && request.url().startsWith(storeOrigin);

/** Resolves once the store has answered `count` part PUTs of the page with 200. */
function partsStored(page, storeOrigin, count) {
  let answered = 0;
  return new Promise((resolve) => {
    page.on("response", (response) => {
      if (isPart(storeOrigin)(response.request()) && response.status() === 200 && ++answered === count) resolve();
    });
  });
}

test("10% of part PUTs fail (aborted or 500) and every file still completes", async () => {
  const { companion, page, storeOrigin, done } = await demo();
  try {
    let seen = 0;
    let failed = 0;
    // How often each part (its object, upload and number) was failed on purpose.
    const failures = new Map();
    await page.route(`${storeOrigin}/**`, async (route) => {
      if (route.request().method() !== "PUT" || ++seen % 10 !== 0) return route.continue();
      failed += 1;
      const url = new URL(route.request().url());
      const part = `${url.pathname} ${url.searchParams.get("uploadId")} ${url.searchParams.get("partNumber")}`;
      failures.set(part, (failures.get(part) ?? 0) + 1);
      if (failed % 2) return route.abort("connectionreset");
      return route.fulfill({ status: 500, headers: CORS, body: s3Error("InternalError", "injected") });
    });
    const files = [64 * MIB, 64 * MIB, 23 * MIB, 17 * MIB, 3 * MIB, 100_000].map((size, i) => makeFile(`flaky-${i}.bin`, size));
    // The page's lanes draw a part sent again: its earlier bar turns to "retrying".
    const retryDrawn = page
      .waitForSelector("[data-testid=scheduler-lanes] [data-lane^=slot] rect[data-phase=retrying]", { state: "attached", timeout: 300_000 })
      .then(() => true, (error) => error);
    const rows = await uploadThroughDemo(page, files);
    assert.equal(await retryDrawn, true, "a bar turned to retrying");
    await assertStored(companion, rows, files);
    assert.ok(failed >= 2, `faults were injected (${failed})`);
    const retries = await page.$$eval("[data-testid=file-row]", (rows) => rows.reduce((sum, row) => sum + Number(row.dataset.retries), 0));
    // A part's first drop or 500 is sent again at once for free; only a second one can spend
    // a retry (a 500; a second drop is waited out as an outage, for free too).
    const again = [...failures.values()].reduce((sum, count) => sum + count - 1, 0);
    assert.ok(retries <= again, `${retries} retries spent where ${again} parts failed again`);
  } finally {
    await done();
  }
});

test("429 with Retry-After: 2 makes the next attempt wait at least 2 s", async () => {
  const { companion, page, storeOrigin, done } = await demo();
  try {
    const attempts = [];
    let refused = false;
    await page.route(`${storeOrigin}/**`, async (route) => {
      const request = route.request();
      if (request.method() !== "PUT") return route.continue();
      const part = new URL(request.url()).searchParams.get("partNumber");
      attempts.push({ part, at: Date.now() });
      if (part === "2" && !refused) {
        refused = true;
        return route.fulfill({ status: 429, headers: { ...CORS, "retry-after": "2" }, body: s3Error("SlowDown", "Please reduce your request rate.") });
      }
      return route.continue();
    });
    const file = makeFile("slow-down.bin", 12 * MIB);
    const rows = await uploadThroughDemo(page, [file]);
    await assertStored(companion, rows, [file]);
    const second = attempts.filter((attempt) => attempt.part === "2");
    assert.equal(second.length, 2, "part 2 was tried twice");
    const waited = second[1].at - second[0].at;
    assert.ok(waited >= 2000, `waited ${waited} ms`);
  } finally {
    await done();
  }
});

test("a gateway that admits 2 PUTs at once: the slots shrink to fit, and every file completes", async () => {
  const { companion, page, storeOrigin, done } = await demo();
  try {
    // The gateway: a third PUT at once is answered 503 SlowDown; the others reach the store.
    let inFlight = 0;
    let refused = 0;
    let maxAdmitted = 0;
    const admitted = new WeakSet();
    const ended = (request) => {
      if (admitted.has(request)) {
        admitted.delete(request);
        inFlight -= 1;
      }
    };
    page.on("requestfinished", ended);
    page.on("requestfailed", ended);
    await page.route(`${storeOrigin}/**`, async (route) => {
      const request = route.request();
      if (request.method() !== "PUT") return route.continue();
      if (inFlight >= 2) {
        refused += 1;
        return route.fulfill({ status: 503, headers: CORS, body: s3Error("SlowDown", "Please reduce your request rate.") });
      }
      inFlight += 1;
      maxAdmitted = Math.max(maxAdmitted, inFlight);
      admitted.add(request);
      return route.continue();
    });
    const files = [30 * MIB, 30 * MIB, 30 * MIB].map((size, i) => makeFile(`gateway-${i}.bin`, size));
    const rows = await uploadThroughDemo(page, files);
    await assertStored(companion, rows, files);
    assert.equal(maxAdmitted, 2);
    // The seeds' 5 slots meet three refusals at once, each taking a slot away; after that only
    // the adaptive policy's probes for a third slot are refused, ever more rarely. A client
    // that kept 5 slots would be refused three times for every part.
    assert.ok(refused >= 3, `the gateway refused PUTs (${refused})`);
    assert.ok(refused <= 10, `${refused} PUTs refused for 18 parts`);
  } finally {
    await done();
  }
});

test("a reload half-way through 200 MiB resumes: only the missing parts are sent", async () => {
  const { companion, page, storeOrigin, done } = await demo();
  try {
    const file = makeFile("big-resume.bin", 200 * MIB);
    const partCount = 40;
    const halfway = partsStored(page, storeOrigin, partCount / 2);
    await pick(page, [file]);
    await halfway;
    await page.reload();
    const records = await page.evaluate(() =>
      Object.keys(localStorage)
        .filter((key) => key.startsWith("ferry:v1:"))
        .map((key) => JSON.parse(localStorage.getItem(key))),
    );
    assert.equal(records.length, 1, "a resume record survived the reload");
    const kept = records[0].parts.length;
    assert.ok(kept >= partCount / 4 && kept < partCount, `${kept} parts recorded`);

    let putsAfter = 0;
    page.on("request", (request) => {
      if (isPart(storeOrigin)(request)) putsAfter += 1;
    });
    const rows = await uploadThroughDemo(page, [file]);
    await assertStored(companion, rows, [file]);
    assert.equal(putsAfter, partCount - kept, `only the ${partCount - kept} missing parts were sent`);
    // What stays is the stored object, for a tab that waits for the same file: nothing to resume.
    const left = await page.evaluate(() =>
      Object.keys(localStorage)
        .filter((key) => key.startsWith("ferry:v1:"))
        .map((key) => JSON.parse(localStorage.getItem(key))),
    );
    assert.deepEqual(
      left.map((record) => [record.uploadId, record.stored?.size]),
      [[undefined, file.size]],
      "the record holds the stored object, not an upload to resume",
    );
  } finally {
    await done();
  }
});

test("a file changed between sessions (same name and size) is uploaded fresh", async () => {
  const { companion, page, storeOrigin, done } = await demo();
  try {
    const original = makeFile("changed.bin", 30 * MIB);
    const started = partsStored(page, storeOrigin, 2);
    await pick(page, [original]);
    await started;
    await page.reload();
    // Other bytes under the same name and size.
    const changed = makeFile("changed.bin", 30 * MIB);
    fs.copyFileSync(changed.path, original.path);
    const listed = [];
    page.on("request", (request) => {
      if (request.method() === "GET" && request.url().includes("/parts?")) listed.push(request.url());
    });
    const rows = await uploadThroughDemo(page, [{ ...changed, path: original.path }]);
    await assertStored(companion, rows, [changed]);
    assert.deepEqual(listed, [], "the old upload was not resumed onto");
  } finally {
    await done();
  }
});

test("offline for 2 s in the middle: the upload continues by itself", async () => {
  const { companion, page, context, storeOrigin, done } = await demo();
  try {
    await throttle(page, 8 * MIB);
    const file = makeFile("offline.bin", 40 * MIB);
    const started = partsStored(page, storeOrigin, 1);
    const finished = uploadThroughDemo(page, [file]);
    await started;
    await context.setOffline(true);
    // The scenario is two seconds without a network; nothing to wait on but the clock.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const during = await page.$eval("[data-testid=file-row]", (row) => row.dataset.state);
    assert.equal(during, "uploading", "offline does not fail the upload");
    await context.setOffline(false);
    const rows = await finished;
    await assertStored(companion, rows, [file]);
  } finally {
    await done();
  }
});

test("the store down for 30 s mid-upload: the upload waits, spends no retry, and completes by itself", async () => {
  const { store, companion, page, storeOrigin, done } = await demoOnOwnStore(16 * MIB);
  try {
    const file = makeFile("outage.bin", 100 * MIB);
    const started = partsStored(page, storeOrigin, 2);
    const finished = uploadThroughDemo(page, [file]);
    await started;
    await store.stop();
    await rowWaiting(page, file.name, true);
    // The scenario is thirty seconds without a store; nothing to wait on but the clock.
    await new Promise((resolve) => setTimeout(resolve, 30_000));
    const during = await page.$eval("[data-testid=file-row]", (row) => row.dataset.state);
    assert.equal(during, "uploading", "an outage does not fail the upload");
    await store.restart();
    const rows = await finished;
    await assertStored(companion, rows, [file]);
    const row = await page.$eval("[data-testid=file-row]", (row) => ({ ...row.dataset }));
    assert.equal(row.retries, "0", "waiting out the outage spent no retry");
    assert.equal(row.waiting, "false");
  } finally {
    await done();
  }
});

test("the companion restarted mid-upload: the upload waits, then completes", async () => {
  const { store, companion, page, storeOrigin, done } = await demoOnOwnStore(16 * MIB);
  try {
    const file = makeFile("companion-restart.bin", 60 * MIB);
    const started = partsStored(page, storeOrigin, 2);
    const finished = uploadThroughDemo(page, [file]);
    await started;
    await companion.kill();
    // The parts already signed go on; the Complete finds nobody and the file waits.
    await rowWaiting(page, file.name, true);
    await companion.restart();
    const rows = await finished;
    await assertStored(companion, rows, [file]);
  } finally {
    await done();
  }
});

test("an upload cancelled while the companion is down is aborted once it is back", async () => {
  const { store, companion, page, storeOrigin, done } = await demoOnOwnStore(8 * MIB);
  try {
    const file = makeFile("cancel-later.bin", 60 * MIB);
    const started = partsStored(page, storeOrigin, 1);
    await pick(page, [file]);
    await started;
    assert.equal(store.liveUploads().length, 1, "the multipart upload is on the store");
    await companion.kill();
    await page.click("[data-testid=file-row] [data-testid=cancel]");
    const aborted = page.waitForResponse((response) => response.request().method() === "DELETE" && response.status() === 204, {
      timeout: 120_000,
    });
    await companion.restart();
    await aborted;
    assert.deepEqual(store.liveUploads(), [], "no multipart upload is left behind");
    const kept = await page.evaluate(() => localStorage.getItem("ferry:aborts"));
    assert.equal(kept, null, "the deferred abort is forgotten once sent");
  } finally {
    await done();
  }
});

test("a failed upload keeps its parts: Retry continues where it stopped", async () => {
  const { companion, page, storeOrigin, done } = await demo();
  try {
    // The last part is refused for good (a 403 is an answer with a reason): it starts only
    // once a part is stored (at most 5 of the 6 run at once), so the file fails with parts on
    // the store.
    let refuse = true;
    await page.route(`${storeOrigin}/**`, (route) => {
      const refused = refuse && route.request().method() === "PUT" && new URL(route.request().url()).searchParams.get("partNumber") === "6";
      if (!refused) return route.continue();
      return route.fulfill({ status: 403, headers: CORS, body: s3Error("AccessDenied", "injected") });
    });
    const file = makeFile("retry-continues.bin", 30 * MIB);
    const [failed] = await uploadThroughDemo(page, [file]);
    assert.equal(failed.state, "failed");
    assert.equal(failed.code, "AccessDenied");
    assert.equal(companion.liveUploads().length, 1, "the multipart upload is kept for a retry");
    // The parts the page saw stored, as its resume record keeps them. Not every part the store
    // answered 200: one whose answer came as the failure stopped it was never confirmed to the
    // page, and is sent again.
    const records = await page.evaluate(() =>
      Object.keys(localStorage)
        .filter((key) => key.startsWith("ferry:v1:"))
        .map((key) => JSON.parse(localStorage.getItem(key))),
    );
    assert.equal(records.length, 1, "the failed upload's resume record");
    const storedBefore = new Set(records[0].parts.map(({ part }) => String(part)));

    refuse = false;
    const puts = [];
    page.on("request", (request) => {
      if (isPart(storeOrigin)(request)) puts.push(new URL(request.url()).searchParams.get("partNumber"));
    });
    await page.click("[data-testid=file-row] [data-testid=retry]");
    await page.waitForSelector('[data-testid=file-row][data-state="done"]', { timeout: 120_000 });
    const rows = await page.$$eval("[data-testid=file-row]", (rows) =>
      rows.map((row) => ({ name: row.dataset.name, state: row.dataset.state, href: row.querySelector("[data-testid=file-link]")?.getAttribute("href") })),
    );
    await assertStored(companion, rows, [file]);
    // Six parts; those stored before the failure are kept, not sent again.
    assert.ok(storedBefore.size >= 1, `parts stored before the failure: ${[...storedBefore]}`);
    const again = puts.filter((part) => storedBefore.has(part));
    assert.deepEqual(again, [], `parts sent again: ${puts}, stored before: ${[...storedBefore]}`);
    assert.ok(puts.length <= 6 - storedBefore.size, `parts sent again: ${puts}`);
    assert.ok(await page.$("[data-testid=timeline] li[data-kind=resumed]"), "the timeline tells the resume");
  } finally {
    await done();
  }
});

test("URLs that live 5 s on a throttled link: the upload completes by re-signing", async () => {
  const { companion, page, done } = await demo({ FERRY_URL_LIFETIME: "5" });
  try {
    await throttle(page, 6 * MIB);
    const signs = [];
    page.on("request", (request) => {
      if (request.method() === "POST" && request.url().endsWith("/sign")) signs.push(request.postDataJSON().parts);
    });
    const file = makeFile("short-lived.bin", 64 * MIB);
    const rows = await uploadThroughDemo(page, [file]);
    await assertStored(companion, rows, [file]);
    assert.ok(signs.length >= 2, `URLs were signed again: ${JSON.stringify(signs)}`);
  } finally {
    await done();
  }
});

test("the store's origin blocked for the page: parts go through the companion", async () => {
  const { companion, page, storeOrigin, done } = await demo();
  try {
    await page.route(`${storeOrigin}/**`, (route) => route.abort("blockedbyclient"));
    const throughCompanion = [];
    page.on("request", (request) => {
      if (request.method() === "PUT" && request.url().startsWith(companion.url)) throughCompanion.push(request.url());
    });
    const files = [makeFile("blocked.bin", 23 * MIB), makeFile("blocked-small.bin", 1000)];
    const rows = await uploadThroughDemo(page, files);
    await assertStored(companion, rows, files);
    assert.ok(throughCompanion.length >= 5, `${throughCompanion.length} PUTs through the companion`);
  } finally {
    await done();
  }
});

test("cancel in the middle: the store keeps no multipart upload", async () => {
  const { companion, page, storeOrigin, done } = await demo();
  try {
    await throttle(page, 4 * MIB);
    const file = makeFile("cancel-me.bin", 40 * MIB);
    const started = partsStored(page, storeOrigin, 1);
    const finished = uploadThroughDemo(page, [file]);
    await started;
    assert.equal(companion.liveUploads().length, 1, "the multipart upload exists on the store");
    const aborted = page.waitForResponse((response) => response.request().method() === "DELETE");
    await page.click("[data-testid=file-row] [data-testid=cancel]");
    const [row] = await finished;
    assert.equal(row.state, "failed");
    assert.equal(row.code, "Cancelled");
    assert.equal((await aborted).status(), 204);
    assert.deepEqual(companion.liveUploads(), [], "the store lists no multipart upload");
  } finally {
    await done();
  }
});
