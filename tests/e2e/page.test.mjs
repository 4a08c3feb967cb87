// The demo page's controls each do what they say, at desktop and phone width; screenshots of both
// are kept in tests/screenshots/ for reviewers.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { MIB, launchChromium, makeFile, pick, readBack, scratch, startCompanion, throttle, uploadThroughDemo } from "./harness.mjs";

const screenshots = path.join(path.dirname(fileURLToPath(import.meta.url)), "../screenshots");

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

/** CRC-32 of PNG chunks. */
function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A valid 48 x 32 PNG (a gradient), so the page and the companion have an image to preview. */
function pngFile() {
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const [width, height] = [48, 32];
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = [];
  for (let y = 0; y < height; y++) {
    rows.push(0); // no filter
    for (let x = 0; x < width; x++) rows.push(x * 5, y * 7, 200);
  }
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(Buffer.from(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
  const file = path.join(fs.mkdtempSync(path.join(scratch, "png-")), "picture.png");
  fs.writeFileSync(file, png);
  return { path: file, name: "picture.png", size: png.length };
}

async function openDemo(companion, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(companion.url);
  await page.waitForSelector("[data-testid=file-input]");
  return { page, context };
}

const state = (page, name) => page.$eval(`[data-testid=file-row][data-name="${name}"]`, (row) => row.dataset.state);
const waitState = (page, name, wanted) =>
  page.waitForFunction(([name, wanted]) => document.querySelector(`[data-testid=file-row][data-name="${name}"]`)?.dataset.state === wanted, [name, wanted]);

test("screenshots at desktop and phone width, with thumbnails, totals, timeline and chart", async () => {
  const companion = await startCompanion();
  try {
    for (const [label, viewport] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
      const { page, context } = await openDemo(companion, viewport);
      const files = [pngFile(), makeFile(`${label}-data.bin`, 12 * MIB), makeFile(`${label}-notes.txt`, 3000)];
      await uploadThroughDemo(page, files);
      const thumb = await page.$eval("[data-testid=thumbnail]", (img) => img.getAttribute("src"));
      assert.match(thumb, /^blob:/, "images get a thumbnail made in the page");
      // The totals are counted on the page's tick.
      await page.waitForFunction((count) => document.querySelector("[data-testid=total-bar]")?.dataset.done === String(count), files.length);
      const total = await page.$eval("[data-testid=total-bar]", (bar) => [bar.dataset.confirmed, bar.dataset.total]);
      assert.equal(total[0], total[1], "the total bar is full");
      const parts = await page.$$(`[data-testid=timeline] li[data-kind=part][data-name="${label}-data.bin"]`);
      assert.equal(parts.length, 3, "the timeline tells each stored part");
      const etag = await page.$eval(`[data-testid=file-row][data-name="${label}-data.bin"]`, (row) => row.dataset.etag);
      assert.match(etag, /^[0-9a-f]{32}-3$/, "the stored object's ETag is shown");
      // Let one tick draw the chart.
      await page.waitForFunction(() => (document.querySelector("[data-testid=throughput-chart] polyline")?.getAttribute("points") ?? "").split(" ").length > 2);
      if (label === "phone") {
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `nothing overflows at phone width (${overflow}px)`);
      }
      await page.screenshot({ path: path.join(screenshots, `demo-${label}.png`), fullPage: true });
      await context.close();
    }
  } finally {
    companion.stop();
  }
});

test("drop, pause, resume, retry and the keyboard", async () => {
  const companion = await startCompanion();
  const { page, context } = await openDemo(companion);
  try {
    // Keyboard: the first Tab reaches the file picker.
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), "file-input");

    // Drop: a file dropped on the zone is uploaded.
    await page.evaluate(() => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(["dropped bytes"], "dropped.txt", { type: "text/plain" }));
      document.querySelector("[data-testid=drop-zone]").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    });
    await waitState(page, "dropped.txt", "done");

    // Pause and resume one file on a slow link.
    await throttle(page, 4 * MIB);
    const slow = makeFile("slow.bin", 24 * MIB);
    await pick(page, [slow]);
    await waitState(page, "slow.bin", "uploading");
    await page.click('[data-testid=file-row][data-name="slow.bin"] [data-testid=pause]');
    assert.equal(await state(page, "slow.bin"), "paused");
    await page.waitForFunction(() => document.querySelector("[data-testid=slots]").dataset.running === "0");
    await page.click('[data-testid=file-row][data-name="slow.bin"] [data-testid=pause]');
    await waitState(page, "slow.bin", "done");
    const row = await page.$('[data-testid=file-row][data-name="slow.bin"] [data-testid=file-link]');
    assert.equal((await readBack(companion.url, await row.getAttribute("href"))).sha256, slow.sha256);

    // Retry: the first create is refused, the retry goes through. A small file is created in a
    // batch, a larger one alone.
    let refused = 0;
    const creates = (url) => url.origin === companion.url && ["/api/uploads", "/api/uploads/batch"].includes(url.pathname);
    await page.route(creates, (route) => {
      if (route.request().method() === "POST" && refused++ === 0) {
        return route.fulfill({ status: 400, contentType: "application/json", body: JSON.stringify({ code: "BadRequest", message: "refused once" }) });
      }
      return route.continue();
    });
    await pick(page, [makeFile("again.bin", 1000)]);
    await waitState(page, "again.bin", "failed");
    await page.click('[data-testid=file-row][data-name="again.bin"] [data-testid=retry]');
    await waitState(page, "again.bin", "done");
  } finally {
    await context.close();
    companion.stop();
  }
});

test("pause all, resume all, cancel all", async () => {
  const companion = await startCompanion();
  const { page, context } = await openDemo(companion);
  try {
    await throttle(page, 6 * MIB);
    const files = [makeFile("all-1.bin", 20 * MIB), makeFile("all-2.bin", 20 * MIB)];
    await pick(page, files);
    await page.waitForFunction(() => document.querySelector("[data-testid=slots]").dataset.running !== "0");
    await page.click("[data-testid=pause-all]");
    await page.waitForFunction(() => document.querySelector("[data-testid=slots]").dataset.running === "0");
    await page.click("[data-testid=resume-all]");
    await page.waitForFunction(() => document.querySelector("[data-testid=slots]").dataset.running !== "0");
    const aborted = page.waitForResponse((response) => response.request().method() === "DELETE");
    await page.click("[data-testid=cancel-all]");
    for (const file of files) await waitState(page, file.name, "failed");
    await aborted;
    const codes = await page.$$eval("[data-testid=file-row]", (rows) => rows.map((row) => row.dataset.errorCode));
    assert.deepEqual(codes, ["Cancelled", "Cancelled"]);
  } finally {
    await context.close();
    companion.stop();
  }
});

test("settings apply to new uploads: slots and part size", async () => {
  const companion = await startCompanion();
  const { page, context } = await openDemo(companion);
  try {
    const storeOrigin = await companion.storeOrigin();
    let running = 0;
    let most = 0;
    let puts = 0;
    const ended = new WeakSet();
    page.on("request", (request) => {
      if (request.method() !== "PUT" || !request.url().startsWith(storeOrigin)) return;
      puts += 1;
      most = Math.max(most, ++running);
    });
    page.on("response", (response) => {
      const request = response.request();
      if (request.method() !== "PUT" || !request.url().startsWith(storeOrigin) || ended.has(request)) return;
      ended.add(request);
      running -= 1;
    });
    await page.fill("[data-testid=setting-slots]", "1");
    await page.dispatchEvent("[data-testid=setting-slots]", "change");
    await page.fill("[data-testid=setting-part-size]", "10");
    await page.dispatchEvent("[data-testid=setting-part-size]", "change");
    const file = makeFile("configured.bin", 21 * MIB);
    await uploadThroughDemo(page, [file]);
    assert.equal(most, 1, "one slot: one PUT at a time");
    assert.equal(puts, 3, "10 MiB parts: 21 MiB is three parts");
    assert.equal(await page.$$eval("[data-testid=slot]", (slots) => slots.length), 1);
  } finally {
    await context.close();
    companion.stop();
  }
});

test("after a reload a banner lists the unfinished upload", async () => {
  const companion = await startCompanion();
  const { page, context } = await openDemo(companion);
  try {
    await throttle(page, 4 * MIB);
    await pick(page, [makeFile("unfinished.bin", 30 * MIB)]);
    await page.waitForFunction(() => Object.keys(localStorage).some((key) => key.startsWith("ferry:v1:")));
    await page.reload();
    assert.ok(await page.$('[data-testid=resume-banner] [data-testid=unfinished][data-name="unfinished.bin"]'));
  } finally {
    await context.close();
    companion.stop();
  }
});

test("the simulated network runs the real engine in the page, at the chosen speed", async () => {
  const companion = await startCompanion();
  const { page, context } = await openDemo(companion);
  try {
    await page.fill("[data-testid=sim-files]", "20");
    await page.dispatchEvent("[data-testid=sim-files]", "change");
    await page.fill("[data-testid=sim-speed]", "0");
    await page.click("[data-testid=sim-start]");
    await page.waitForSelector("[data-testid=sim-status]");
    assert.equal(await page.getAttribute("[data-testid=sim-status]", "data-virtual-seconds"), "0.00", "speed 0 holds time still");
    await page.fill("[data-testid=sim-speed]", "10");
    await page.waitForSelector('[data-testid=sim-status][data-finished="true"]', { timeout: 120_000 });
    const status = await page.$eval("[data-testid=sim-status]", (node) => ({ ...node.dataset }));
    assert.equal(status.done, "20", JSON.stringify(status));
    assert.equal(status.files, "20");
    assert.ok(Number(status.virtualSeconds) > 1, JSON.stringify(status));
  } finally {
    await context.close();
    companion.stop();
  }
});

test("the lanes and the queue show the two layers at work; finished rows tell duration and speed", async () => {
  const companion = await startCompanion();
  try {
    for (const [label, viewport] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
      const { page, context } = await openDemo(companion, viewport);
      // One file prepared ahead and one slot, on a slow link: the queue holds the rest.
      await page.fill("[data-testid=setting-triggers]", "1");
      await page.dispatchEvent("[data-testid=setting-triggers]", "change");
      await page.fill("[data-testid=setting-slots]", "1");
      await page.dispatchEvent("[data-testid=setting-slots]", "change");
      // A link with a long round trip (300 ms), so each file's preparation spans a tick or more.
      const cdp = await page.context().newCDPSession(page);
      await cdp.send("Network.enable");
      await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 300, downloadThroughput: -1, uploadThroughput: 4 * MIB });
      const files = Array.from({ length: 5 }, (_, index) => makeFile(`${label}-lane-${index}.bin`, 6 * MIB));
      await pick(page, files);
      await page.waitForSelector("[data-testid=scheduler-lanes] [data-lane^=slot] rect[data-phase=uploading]");
      await page.waitForSelector("[data-testid=scheduler-lanes] [data-lane^=prepare] rect", { timeout: 60_000 });
      await page.waitForSelector("[data-testid=queue-list] li[data-name]");
      const waiting = Number(await page.getAttribute("[data-testid=queue-list]", "data-waiting"));
      assert.ok(waiting >= 1, `files wait in line (${waiting})`);
      // The picture once a part is stored while another is on its way: bars and gaps to see.
      await page.waitForFunction(() => ["done", "uploading"].every((phase) => document.querySelector(`[data-testid=scheduler-lanes] [data-lane^=slot] rect[data-phase=${phase}]`)), null, { timeout: 60_000 });
      await page.screenshot({ path: path.join(screenshots, `lanes-upload-${label}.png`), fullPage: true });
      await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
      await page.waitForFunction((count) => document.querySelector("[data-testid=total-bar]")?.dataset.done === String(count), files.length, { timeout: 120_000 });
      // Each part got its bar.
      await page.waitForSelector("[data-testid=scheduler-lanes] [data-lane^=slot] rect[data-phase=done]");
      // One lane per slot, once the first client's five lanes have scrolled out of the window.
      const lanes = await page.$$eval("[data-testid=scheduler-lanes] [data-lane^=slot] rect", (rects) => new Set(rects.map((rect) => rect.parentElement.dataset.lane)).size);
      assert.equal(lanes, 1, "the parts went through one slot");
      const finished = await page.$$eval("[data-testid=file-duration]", (nodes) =>
        nodes.map((node) => ({ seconds: Number(node.dataset.seconds), average: Number(node.dataset.bytesPerSecond), text: node.textContent })),
      );
      assert.equal(finished.length, files.length);
      for (const { seconds, average, text } of finished) {
        assert.ok(seconds > 0, JSON.stringify(finished));
        // The average is the file's size over its duration (given to the millisecond), and the
        // row says it.
        assert.ok(Math.abs(average * seconds - 6 * MIB) <= 6 * MIB * 0.01 + average * 0.0005, JSON.stringify(finished));
        assert.match(text, /in \d+\.\d s, [\d.]+ [KMG]?i?B\/s average/);
      }
      await context.close();
    }
  } finally {
    companion.stop();
  }
});

test("the simulation's controls: add small and large files, speed, a batch, reset", async () => {
  const companion = await startCompanion();
  try {
    for (const [label, viewport] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
      const { page, context } = await openDemo(companion, viewport);
      // Speed 0 holds virtual time still: the files are added, nothing moves.
      await page.fill("[data-testid=sim-speed]", "0");
      await page.click("[data-testid=sim-add-large]");
      for (let index = 0; index < 3; index++) await page.click("[data-testid=sim-add-small]");
      await page.waitForSelector('[data-testid=sim-status][data-files="4"][data-virtual-seconds="0.00"]');
      // Going: a large file is live, so the seeds' rule allows 3 slots.
      await page.fill("[data-testid=sim-speed]", "2");
      await page.waitForSelector('[data-testid=sim-status][data-slots="3"]');
      await page.waitForSelector("[data-testid=sim-lanes] [data-lane^=slot] rect[data-phase=uploading]");
      await page.fill("[data-testid=sim-speed]", "10");
      await page.waitForSelector('[data-testid=sim-status][data-finished="true"][data-done="4"]', { timeout: 60_000 });
      // A batch at a slow pace: ten files are taken ahead, the rest wait, the next ones listed.
      await page.fill("[data-testid=sim-speed]", "0.5");
      await page.fill("[data-testid=sim-files]", "30");
      await page.dispatchEvent("[data-testid=sim-files]", "change");
      await page.click("[data-testid=sim-start]");
      await page.waitForSelector('[data-testid=sim-status][data-files="34"]');
      await page.waitForSelector("[data-testid=sim-queue] li[data-name]");
      const waiting = Number(await page.getAttribute("[data-testid=sim-queue]", "data-waiting"));
      const listed = await page.$$eval("[data-testid=sim-queue] li[data-name]", (items) => items.length);
      assert.ok(waiting >= 1 && waiting <= 20, `files wait in line: ${waiting}`);
      assert.equal(listed, Math.min(8, waiting), "the next eight are listed");
      await page.waitForSelector("[data-testid=sim-lanes] [data-lane^=prepare] rect");
      await page.waitForSelector("[data-testid=sim-lanes] [data-lane^=slot] rect[data-phase=done]");
      await page.locator("[data-testid=simulation]").screenshot({ path: path.join(screenshots, `lanes-simulation-${label}.png`) });
      await page.click("[data-testid=sim-reset]");
      await page.waitForFunction(() => !document.querySelector("[data-testid=sim-status]"));
      assert.equal(await page.$$eval("[data-testid=sim-lanes] rect", (rects) => rects.length), 0, "reset clears the lanes");
      await context.close();
    }
  } finally {
    companion.stop();
  }
});

test("with previews on, a stored picture shows the companion's thumbnail", async () => {
  const companion = await startCompanion({ FERRY_PREVIEWS: "true" });
  const { page, context } = await openDemo(companion);
  try {
    await uploadThroughDemo(page, [pngFile()]);
    await page.waitForSelector('[data-testid=server-preview][data-loaded="true"]', { timeout: 30_000 });
    const src = await page.getAttribute("[data-testid=server-preview]", "src");
    assert.match(src, /\/api\/files\/.+\/picture\.png\/preview\?/);
  } finally {
    await context.close();
    companion.stop();
  }
});

test("hundreds of rows: only those in view are rendered, and all of them finish", async () => {
  const companion = await startCompanion();
  const { page, context } = await openDemo(companion);
  try {
    const files = Array.from({ length: 250 }, (_, index) => makeFile(`row-${String(index).padStart(3, "0")}.txt`, 100 + index));
    await pick(page, files);
    await page.waitForFunction(() => document.querySelector("[data-testid=total-bar]")?.dataset.done === "250", null, { timeout: 120_000 });
    assert.ok(await page.$("[data-testid=file-list].windowed"));
    const rendered = await page.$$eval("[data-testid=file-row]", (rows) => rows.length);
    assert.ok(rendered < 40, `${rendered} rows rendered of 250`);
    await page.$eval("[data-testid=file-list]", (list) => (list.scrollTop = list.scrollHeight));
    await page.waitForSelector('[data-testid=file-row][data-name="row-249.txt"][data-state="done"]');
  } finally {
    await context.close();
    companion.stop();
  }
});
