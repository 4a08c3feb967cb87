// Many files at once through the demo page: the scheduler keeps its slot limits in a real browser
// against the embedded store, and every object reads back identical.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { MIB, launchChromium, makeFile, readBack, startCompanion, uploadThroughDemo } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

/** 200 sizes from 1 KiB to 80 MiB, the same every run: mostly small, a few over 65 MiB. */
function sizes() {
  let seed = 12345;
  const next = (below) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % below;
  };
  const between = (low, high) => low + next(high - low);
  return [
    ...Array.from({ length: 160 }, () => between(1024, MIB)),
    ...Array.from({ length: 34 }, () => between(MIB, 12 * MIB)),
    ...[40, 52, 64, 66, 72, 80].map((mib) => mib * MIB - next(1024)),
  ];
}

test("200 files of mixed sizes complete within the slot limits and read back identical", async () => {
  const companion = await startCompanion();
  const page = await browser.newPage();
  // Part PUTs in flight, counted from the browser's own request events.
  const storeOrigin = await companion.storeOrigin();
  let inFlight = 0;
  let maxInFlight = 0;
  const perUpload = new Map();
  let maxPerUpload = 0;
  const isPart = (request) => request.method() === "PUT" && request.url().startsWith(storeOrigin);
  const uploadOf = (request) => new URL(request.url()).searchParams.get("uploadId") ?? request.url();
  page.on("request", (request) => {
    if (!isPart(request)) return;
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const id = uploadOf(request);
    perUpload.set(id, (perUpload.get(id) ?? 0) + 1);
    maxPerUpload = Math.max(maxPerUpload, perUpload.get(id));
  });
  // A PUT stops counting when its answer arrives: the browser sees the answer before the page's
  // XHR finishes and the scheduler starts the next part, so nothing is counted twice.
  const ended = new WeakSet();
  const finished = (request) => {
    if (!isPart(request) || ended.has(request)) return;
    ended.add(request);
    inFlight -= 1;
    perUpload.set(uploadOf(request), perUpload.get(uploadOf(request)) - 1);
  };
  page.on("response", (response) => finished(response.request()));
  page.on("requestfailed", finished);

  try {
    await page.goto(companion.url);
    const files = sizes().map((size, index) => makeFile(`mixed-${index}.bin`, size));
    const rows = await uploadThroughDemo(page, files);
    const failed = rows.filter((row) => row.state !== "done");
    assert.deepEqual(failed, [], "every file completes");
    for (const file of files) {
      const row = rows.find((row) => row.name === file.name);
      const stored = await readBack(companion.url, row.href);
      assert.equal(stored.sha256, file.sha256, `${file.name} (${file.size} bytes) reads back identical`);
    }
    assert.ok(maxInFlight >= 3, `the scheduler ran parts in parallel (${maxInFlight})`);
    // The seeds' rule (5, or 3 with a file over 65 MiB, 3 per file) is where the adaptive
    // policy starts; it adds PUTs while they raise goodput, never beyond a browser's 6 per host.
    assert.ok(maxInFlight <= 6, `never more than 6 part PUTs at once, saw ${maxInFlight}`);
    assert.ok(maxPerUpload <= 6, `never more than 6 PUTs for one file, saw ${maxPerUpload}`);
    assert.deepEqual(companion.liveUploads(), [], "no multipart upload left open");
  } finally {
    await page.close();
    companion.stop();
  }
});
