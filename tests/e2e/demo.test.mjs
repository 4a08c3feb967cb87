// The demo page in headless Chromium: files of every interesting size go to the store and read
// back identical; bad input fails clearly and loses nothing.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { MIB, launchChromium, makeFile, readBack, startCompanion, startMoto, uploadThroughDemo } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

/** S3's boundaries: empty, one byte, around the 5 MiB minimum part, and many parts. */
const SIZES = [0, 1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 23 * MIB, 64 * MIB];

async function uploadAndVerify(companion, sizes) {
  const files = sizes.map((size) => makeFile(`size-${size}.bin`, size));
  const page = await browser.newPage();
  try {
    await page.goto(companion.url);
    const rows = await uploadThroughDemo(page, files);
    for (const file of files) {
      const row = rows.find((row) => row.name === file.name);
      assert.equal(row?.state, "done", `${file.name}: ${row?.code}`);
      const stored = await readBack(companion.url, row.href);
      assert.equal(stored.size, file.size, file.name);
      assert.equal(stored.sha256, file.sha256, `${file.name} reads back identical`);
    }
  } finally {
    await page.close();
  }
}

test("every size uploads through the demo page and reads back identical", async () => {
  const companion = await startCompanion();
  try {
    await uploadAndVerify(companion, SIZES);
    assert.deepEqual(companion.liveUploads(), [], "every multipart upload was completed");
  } finally {
    companion.stop();
  }
});

test("the companion works unchanged against moto's S3 server", async () => {
  const moto = await startMoto("ferry-e2e");
  const companion = await startCompanion(moto.companionEnv);
  try {
    await uploadAndVerify(companion, [0, 1, 5 * MIB + 1, 23 * MIB]);
  } finally {
    companion.stop();
    moto.stop();
  }
});

test("a file over the maximum size is refused before any byte is sent", async () => {
  const companion = await startCompanion({ FERRY_MAX_FILE_SIZE: String(MIB) });
  const page = await browser.newPage();
  const requests = [];
  page.on("request", (request) => requests.push(`${request.method()} ${new URL(request.url()).pathname}`));
  try {
    await page.goto(companion.url);
    const [row] = await uploadThroughDemo(page, [makeFile("too-big.bin", 2 * MIB)]);
    assert.equal(row.state, "failed");
    assert.equal(row.code, "TooLarge");
    const uploads = requests.filter((request) => request.startsWith("PUT") || request.startsWith("POST"));
    assert.deepEqual(uploads, [], "no upload was created and no byte was sent");
  } finally {
    await page.close();
    companion.stop();
  }
});

test("an unreachable companion gives a clear error", async () => {
  const companion = await startCompanion();
  const page = await browser.newPage();
  try {
    // Port 9 (discard) is closed on this machine: nothing answers there.
    await page.goto(`${companion.url}/?companion=http://127.0.0.1:9`);
    const [row] = await uploadThroughDemo(page, [makeFile("lonely.bin", 1000)]);
    assert.equal(row.state, "failed");
    assert.equal(row.code, "CompanionUnreachable");
  } finally {
    await page.close();
    companion.stop();
  }
});

test("a store error surfaces S3's code, and the refused upload is aborted", async () => {
  // The companion plans 1 MiB parts, but the store insists on 5 MiB: Complete is refused.
  const companion = await startCompanion({
    FERRY_MIN_PART_SIZE: String(MIB),
    FERRY_PART_SIZE: String(MIB),
    FERRY_STORE_MIN_PART_SIZE: String(5 * MIB),
  });
  const page = await browser.newPage();
  try {
    await page.goto(companion.url);
    const aborted = page.waitForResponse((response) => response.request().method() === "DELETE");
    const [row] = await uploadThroughDemo(page, [makeFile("small-parts.bin", 3 * MIB)]);
    assert.equal(row.state, "failed");
    assert.equal(row.code, "EntityTooSmall");
    assert.equal((await aborted).status(), 204);
    assert.deepEqual(companion.liveUploads(), [], "no multipart upload is left behind");
  } finally {
    await page.close();
    companion.stop();
  }
});
