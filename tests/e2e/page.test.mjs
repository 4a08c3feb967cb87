// The demo page's controls each do what they say, at desktop and phone width; screenshots of both
// are kept in tests/screenshots/ for reviewers.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { MIB, launchChromium, makeFile, pick, readBack, scratch, startCompanion, throttle, uploadThroughDemo } from "./harness.mjs";

const screenshots = path.join(path.dirname(fileURLToPath(import.meta.url)), "../screenshots");

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

/** A small PNG, so the page has an image to make a thumbnail of. */
function pngFile() {
  const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAKElEQVR4nGNkaGBgoAQwUqQZYNSAUQNGDRg1YNSAUQNGDRg1YBgYAADyxAE1PmKkswAAAABJRU5ErkJggg==",
    "base64",
  );
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

    // Retry: the first create is refused, the retry goes through.
    let refused = 0;
    await page.route(`${companion.url}/api/uploads`, (route) => {
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
