// Every byte proven: the page hashes each part before its URL is signed, the store refuses any
// other bytes, and `done` states the object's checksum, which the test computes itself from the
// file on disk (its own CRC32C, apart from Ferry's).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { MIB, launchChromium, makeFile, readBack, serveFolder, startCompanion, startGarage, startMoto, throttle } from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

const CRC32C_TABLE = Array.from({ length: 256 }, (_, index) => {
  let crc = index;
  for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  return crc >>> 0;
});

/** The CRC32C of a file on disk, base64 as S3 states it. */
function crc32c(file) {
  let crc = 0xffffffff;
  const fd = fs.openSync(file, "r");
  const chunk = Buffer.alloc(4 * MIB);
  for (let read; (read = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0; ) {
    for (let at = 0; at < read; at++) crc = CRC32C_TABLE[(crc ^ chunk[at]) & 0xff] ^ (crc >>> 8);
  }
  fs.closeSync(fd);
  const value = Buffer.alloc(4);
  value.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return value.toString("base64");
}

/**
 * The npm fixture page talking to `companion`, with its site; `close` stops the site. `arrange`
 * sets the page up before it loads.
 */
async function openPage(companion, arrange = async () => {}) {
  const site = await serveFolder({ "/pkg/": process.env.FERRY_PKG, "/": path.join(here, "../fixtures/npm-page") });
  const context = await browser.newContext();
  const page = await context.newPage();
  await arrange(page);
  await page.goto(`${site.url}/?companion=${encodeURIComponent(companion.url)}`);
  await page.waitForSelector("body[data-ready=true]");
  return {
    page,
    close: async () => {
      await context.close();
      site.close();
    },
  };
}

async function results(page, count) {
  await page.waitForFunction((count) => window.results.length >= count, count, { timeout: 600_000 });
  return page.evaluate(() => window.results);
}

const SIZES = [0, 1, 5 * MIB - 1, 5 * MIB + 1, 64 * MIB, 300 * MIB];

/** Counts, in a page or a Worker, the Blobs of a MiB and more read as a stream (as hashing does). */
function countLargeStreams() {
  self.largeStreams = 0;
  const stream = Blob.prototype.stream;
  Blob.prototype.stream = function () {
    if (this.size >= 1024 * 1024) self.largeStreams += 1;
    return stream.call(this);
  };
}

/** Uploads files of every size through the page and checks each object's checksum and bytes. */
async function everySizeVerified(companion) {
  const files = SIZES.map((size, index) => makeFile(`sized-${index}.bin`, size));
  // Parts of a MiB and more are hashed in the package's Worker, off the page's thread: the page
  // and the Worker each count the large Blobs they read as a stream.
  const workers = [];
  const { page, close } = await openPage(companion, async (page) => {
    await page.addInitScript(countLargeStreams);
    page.on("worker", (worker) => workers.push({ worker, counting: worker.evaluate(countLargeStreams).catch(() => {}) }));
  });
  try {
    await page.setInputFiles("[data-testid=file-input]", files.map((file) => file.path));
    const ended = await results(page, files.length);
    assert.deepEqual(workers.map(({ worker }) => new URL(worker.url()).pathname), ["/pkg/worker.js"], "one hashing Worker");
    await workers[0].counting;
    assert.ok((await workers[0].worker.evaluate(() => self.largeStreams)) > 0, "the Worker read parts");
    assert.equal(await page.evaluate(() => self.largeStreams), 0, "the page read no part of a MiB or more");
    for (const file of files) {
      const outcome = ended.find((result) => result.name === file.name);
      assert.ok(outcome?.ok, `${file.size} B: ${outcome?.code} ${outcome?.message}`);
      const { checksum, location } = outcome.result;
      assert.deepEqual(checksum, { algorithm: "crc32c", type: "FULL_OBJECT", value: crc32c(file.path) }, `${file.size} B`);
      const stored = await readBack(companion.url, location);
      assert.equal(stored.sha256, file.sha256, `${file.size} B read back identical`);
    }
  } finally {
    await close();
  }
}

test("files of 0 B to 300 MiB through the embedded store carry the CRC32C of their bytes", async () => {
  const companion = await startCompanion();
  try {
    await everySizeVerified(companion);
  } finally {
    companion.stop();
  }
});

test("files of 0 B to 300 MiB through moto carry the CRC32C of their bytes", async () => {
  const moto = await startMoto("ferry-sums");
  const companion = await startCompanion(moto.companionEnv);
  try {
    await everySizeVerified(companion);
  } finally {
    companion.stop();
    moto.stop();
  }
});

test("files of 0 B to 300 MiB through Garage carry the CRC32C of their bytes", async () => {
  const garage = await startGarage("ferry-sums");
  const companion = await startCompanion(garage.companionEnv);
  try {
    await everySizeVerified(companion);
  } finally {
    companion.stop();
    garage.stop();
  }
});

test("a part whose bytes change on the way is refused by the store and sent again from the file", async () => {
  const companion = await startCompanion();
  const { page, close } = await openPage(companion);
  try {
    const storeOrigin = await companion.storeOrigin();
    const refusals = [];
    page.on("response", (response) => {
      if (response.request().method() === "PUT" && response.status() === 400) refusals.push(response.text().then((body) => ({ url: response.url(), body })));
    });
    let flipped = 0;
    await page.route(`${storeOrigin}/**`, async (route) => {
      const request = route.request();
      const url = new URL(request.url());
      if (request.method() !== "PUT" || url.searchParams.get("partNumber") !== "2" || flipped > 0) return route.continue();
      // One bit of part 2 flipped between the page and the store, once.
      const body = request.postDataBuffer();
      body[12345] ^= 1;
      flipped += 1;
      return route.continue({ postData: body });
    });
    const file = makeFile("flipped.bin", 16 * MIB);
    await page.setInputFiles("[data-testid=file-input]", file.path);
    const [outcome] = await results(page, 1);
    assert.ok(outcome.ok, `${outcome.code}: ${outcome.message}`);
    assert.equal(flipped, 1);
    assert.equal(refusals.length, 1, "the store refused the changed bytes");
    const [refusal] = await Promise.all(refusals);
    assert.ok(refusal.url.includes("partNumber=2"), refusal.url);
    assert.match(refusal.body, /<Code>BadDigest<\/Code>/);
    const retries = await page.evaluate(() => window.events.filter((event) => event.name === "retry"));
    assert.equal(retries.length, 1, JSON.stringify(retries));
    assert.equal(outcome.result.checksum.value, crc32c(file.path));
    assert.equal((await readBack(companion.url, outcome.result.location)).sha256, file.sha256);
  } finally {
    await close();
    companion.stop();
  }
});

test("without a Worker, or with one that fails or never answers, the page hashes the parts itself", async () => {
  const companion = await startCompanion();
  try {
    const file = makeFile("hashed-on-the-page.bin", 16 * MIB);
    const scenarios = {
      "a page that cannot start Workers": (page) =>
        page.addInitScript(() => {
          window.Worker = function Worker() {
            throw new DOMException("Workers are not allowed here", "SecurityError");
          };
        }),
      "a Worker script that is not served": (page) => page.route("**/pkg/worker.js", (route) => route.fulfill({ status: 404 })),
      "a Worker that cannot set itself up": (page) =>
        page.route("**/pkg/worker.js", (route) =>
          route.fulfill({
            contentType: "text/javascript",
            body: 'onmessage = ({ data }) => data.module || postMessage({ id: data.id, broken: "CompileError: no wasm here" });',
          }),
        ),
      "a Worker that never answers": (page) =>
        page.route("**/pkg/worker.js", (route) => route.fulfill({ contentType: "text/javascript", body: "onmessage = () => {};" })),
    };
    for (const [scenario, arrange] of Object.entries(scenarios)) {
      const { page, close } = await openPage(companion, arrange);
      try {
        await page.setInputFiles("[data-testid=file-input]", file.path);
        const [outcome] = await results(page, 1);
        assert.ok(outcome.ok, `${scenario}: ${outcome.code} ${outcome.message}`);
        assert.equal(outcome.result.checksum.value, crc32c(file.path), scenario);
        assert.equal((await readBack(companion.url, outcome.result.location)).sha256, file.sha256, scenario);
      } finally {
        await close();
      }
    }
  } finally {
    companion.stop();
  }
});

test("a file edited in place (same name, size and dates) is not resumed onto its old parts", async () => {
  const companion = await startCompanion();
  const { page, close } = await openPage(companion);
  try {
    const file = makeFile("edited.bin", 40 * MIB);
    // A whole second, so that the date the page reads is the same after it is set again.
    const dated = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    fs.utimesSync(file.path, dated, dated);
    // Slow enough that the upload is far from done when the page reloads: each part takes
    // seconds, however the link is shared between the parts in flight.
    await throttle(page, 2 * MIB);
    await page.setInputFiles("[data-testid=file-input]", file.path);
    // Parts 1 and 2 are stored before the page goes.
    await page.waitForFunction(
      () => [1, 2].every((part) => window.events.some((event) => event.name === "part" && event.part === part)),
      null,
      { timeout: 120_000 },
    );
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    // Part 2 changes on disk; its size and dates do not, nor do the ends the fingerprint reads.
    const fd = fs.openSync(file.path, "r+");
    fs.writeSync(fd, Buffer.from("edited in place"), 0, 15, 6 * MIB);
    fs.closeSync(fd);
    fs.utimesSync(file.path, dated, dated);
    const edited = createHash("sha256").update(fs.readFileSync(file.path)).digest("hex");
    const sent = [];
    page.on("request", (request) => {
      if (request.method() === "PUT") sent.push(Number(new URL(request.url()).searchParams.get("partNumber")));
    });
    await throttle(page, 1000 * MIB);
    await page.setInputFiles("[data-testid=file-input]", file.path);
    const [outcome] = await results(page, 1);
    assert.ok(outcome.ok, `${outcome.code}: ${outcome.message}`);
    const resumed = await page.evaluate(() => window.events.find((event) => event.name === "resumed"));
    assert.ok(resumed?.partsKept >= 1, `the unchanged parts are kept: ${JSON.stringify(resumed)}`);
    assert.ok(!sent.includes(1), `part 1 is kept, not sent again: ${sent}`);
    assert.ok(sent.includes(2), `the edited part 2 is sent again: ${sent}`);
    const stored = await readBack(companion.url, outcome.result.location);
    assert.equal(stored.sha256, edited, "the object is the file as it is now");
    assert.equal(outcome.result.checksum.value, crc32c(file.path));
  } finally {
    await close();
    companion.stop();
  }
});

/** The CRC64NVME of a file on disk, base64 as S3 states it (bit by bit: for small files). */
function crc64nvme(file) {
  const poly = 0x9a6c9329ac4bc9b5n;
  const mask = (1n << 64n) - 1n;
  let crc = mask;
  for (const byte of fs.readFileSync(file)) {
    crc ^= BigInt(byte);
    for (let bit = 0; bit < 8; bit++) crc = crc & 1n ? (crc >> 1n) ^ poly : crc >> 1n;
  }
  const value = Buffer.alloc(8);
  value.writeBigUInt64BE(crc ^ mask);
  return value.toString("base64");
}

test("checksum() gives a file's CRC32C and CRC64NVME, on the page and in a Worker", async () => {
  const site = await serveFolder({ "/pkg/": process.env.FERRY_PKG, "/": path.join(here, "../fixtures/npm-page") });
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    // The package alone, on the page and in a module Worker, each answering `[file, algorithm]`.
    await page.goto(`${site.url}/pkg/package.json`);
    await page.setContent(`<input type="file" multiple>`);
    await page.evaluate(async (origin) => {
      const source = `import init, { checksum } from "${origin}/pkg/index.js";
        await init();
        onmessage = ({ data: [file, algorithm] }) =>
          checksum(file, algorithm).then((value) => postMessage({ value }), (error) => postMessage({ error: error.message }));
        postMessage("ready");`;
      const worker = new Worker(URL.createObjectURL(new Blob([source], { type: "text/javascript" })), { type: "module" });
      await new Promise((resolve, reject) => {
        worker.onmessage = resolve;
        worker.onerror = (event) => reject(new Error(event.message));
      });
      const ferry = await import(`${origin}/pkg/index.js`);
      await ferry.default();
      const answer = (promise) => promise.then((value) => ({ value }), (error) => ({ error: error.message }));
      window.hash = (index, algorithm, where) => {
        const file = document.querySelector("input").files[index];
        if (where === "page") return answer(ferry.checksum(file, algorithm));
        return new Promise((resolve) => {
          worker.onmessage = ({ data }) => resolve(data);
          worker.postMessage([file, algorithm]);
        });
      };
    }, site.url);
    const files = [makeFile("empty.bin", 0), makeFile("one.bin", 1), makeFile("odd.bin", 2 * MIB + 3), makeFile("large.bin", 64 * MIB + 7)];
    await page.setInputFiles("input", files.map((file) => file.path));
    for (const [index, file] of files.entries()) {
      for (const where of ["page", "worker"]) {
        const crc = await page.evaluate(([index, where]) => window.hash(index, "crc32c", where), [index, where]);
        assert.deepEqual(crc, { value: crc32c(file.path) }, `CRC32C of ${file.size} B on the ${where}`);
        if (file.size > 4 * MIB) continue;
        const crc64 = await page.evaluate(([index, where]) => window.hash(index, "CRC64NVME", where), [index, where]);
        assert.deepEqual(crc64, { value: crc64nvme(file.path) }, `CRC64NVME of ${file.size} B on the ${where}`);
      }
    }
    for (const where of ["page", "worker"]) {
      const composite = await page.evaluate((where) => window.hash(0, "sha256", where), where);
      assert.match(composite.error, /^sha256 has no full-object checksum/, where);
      const unknown = await page.evaluate((where) => window.hash(0, "md5", where), where);
      assert.equal(unknown.error, 'unknown checksum algorithm "md5"', where);
    }
  } finally {
    await context.close();
    site.close();
  }
});
