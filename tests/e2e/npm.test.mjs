// The npm package imported by a plain page on another origin than the companion.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { MIB, launchChromium, makeFile, readBack, scratch, serveFolder, startCompanion } from "./harness.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

test("a plain page that imports the npm package uploads and reads back identical", async () => {
  const companion = await startCompanion();
  const site = await serveFolder({ "/pkg/": process.env.FERRY_PKG, "/": path.join(here, "../fixtures/npm-page") });
  const page = await browser.newPage();
  try {
    await page.goto(`${site.url}/?companion=${encodeURIComponent(companion.url)}`);
    await page.waitForSelector("body[data-ready=true]");
    const files = [0, 1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 23 * MIB, 64 * MIB].map((size) => makeFile(`npm-${size}.bin`, size));
    await page.setInputFiles("[data-testid=file-input]", files.map((file) => file.path));
    await page.waitForFunction((count) => window.results.length >= count, files.length, { timeout: 600_000 });
    const results = await page.evaluate(() => window.results);
    const events = await page.evaluate(() => window.events);
    for (const file of files) {
      const outcome = results.find((result) => result.name === file.name);
      assert.ok(outcome.ok, `${file.name}: ${outcome.code} ${outcome.message}`);
      assert.equal(outcome.result.size, file.size);
      const stored = await readBack(companion.url, outcome.result.location);
      assert.equal(stored.sha256, file.sha256, `${file.name} reads back identical`);
      assert.equal(stored.headers.get("x-amz-meta-source"), "npm-page", `${file.name} keeps its metadata`);
      // Progress is reported and confirmed bytes never go back.
      const confirmed = outcome.progress.map((p) => p.confirmed);
      assert.deepEqual(confirmed, [...confirmed].sort((a, b) => a - b));
      if (file.size > 0) assert.ok(outcome.progress.length > 0, `${file.name} reported progress`);
      const mine = events.filter((event) => event.id === outcome.id).map((event) => event.name);
      assert.equal(mine.filter((name) => name === "complete").length, 1, `${file.name}: one complete event`);
      if (file.size > 5 * MIB) assert.ok(mine.includes("part"), `${file.name}: part events`);
    }
    const configCalls = [];
    page.on("request", (request) => {
      if (request.url().endsWith("/api/config")) configCalls.push(request.url());
    });
    const batch = await page.evaluate(async () => {
      // A batch added at once asks the companion for its limits once, not once per file.
      const uploader = window.createUploader({ endpoint: new URLSearchParams(location.search).get("companion") });
      const files = Array.from({ length: 50 }, (_, index) => new File([`file ${index}`], `batch-${index}.txt`));
      const results = await Promise.all(files.map((file) => uploader.add(file).done));
      return results.length;
    });
    assert.equal(batch, 50);
    assert.equal(configCalls.length, 1, "one config call for the whole batch");
    const cancelled = await page.evaluate(async () => {
      // One AbortSignal cancels every upload it was given; rejections are FerryErrors.
      const uploader = window.createUploader({ endpoint: new URLSearchParams(location.search).get("companion") });
      const controller = new AbortController();
      const uploads = ["a.bin", "b.bin"].map((name) =>
        uploader.add(new File([new Uint8Array(12 * 1024 * 1024)], name), { signal: controller.signal }),
      );
      controller.abort();
      const outcomes = await Promise.allSettled(uploads.map((upload) => upload.done));
      return outcomes.map((outcome) => ({ ferry: outcome.reason instanceof window.FerryError, code: outcome.reason?.code }));
    });
    assert.deepEqual(cancelled, [{ ferry: true, code: "Cancelled" }, { ferry: true, code: "Cancelled" }]);
    const rejection = await page.evaluate(async () => {
      // A rejection is an Error with a code.
      const { Uploader } = await import("/pkg/ferry_wasm.js");
      const uploader = new Uploader({ endpoint: "http://127.0.0.1:9" });
      try {
        await uploader.upload(new File(["x"], "x.txt"));
        return null;
      } catch (error) {
        return { isError: error instanceof Error, code: error.code, message: error.message };
      }
    });
    assert.deepEqual({ isError: rejection.isError, code: rejection.code }, { isError: true, code: "CompanionUnreachable" });
  } finally {
    await page.close();
    site.close();
    companion.stop();
  }
});

test("small files go as POST forms: one request each to the store, with no CORS preflight", async () => {
  const companion = await startCompanion();
  const storeOrigin = await companion.storeOrigin();
  const site = await serveFolder({ "/pkg/": process.env.FERRY_PKG, "/": path.join(here, "../fixtures/npm-page") });
  const page = await browser.newPage();
  // Preflights are the browser's own: only the DevTools protocol sees them.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const toStore = [];
  cdp.on("Network.requestWillBeSent", ({ type, request }) => {
    if (request.url.startsWith(storeOrigin)) toStore.push(type === "Preflight" ? "OPTIONS" : request.method);
  });
  try {
    await page.goto(`${site.url}/?companion=${encodeURIComponent(companion.url)}`);
    await page.waitForSelector("body[data-ready=true]");
    // Twenty small files go as forms; one of 2 MiB, over the forms' 1 MiB, as a PUT.
    const files = [...Array.from({ length: 20 }, (_, index) => makeFile(`form-${index}.bin`, 1000 + index * 1000)), makeFile("put.bin", 2 * MIB)];
    await page.setInputFiles("[data-testid=file-input]", files.map((file) => file.path));
    await page.waitForFunction((count) => window.results.length >= count, files.length, { timeout: 120_000 });
    const results = await page.evaluate(() => window.results);
    for (const file of files) {
      const outcome = results.find((result) => result.name === file.name);
      assert.ok(outcome.ok, `${file.name}: ${outcome.code} ${outcome.message}`);
      assert.equal((await readBack(companion.url, outcome.result.location)).sha256, file.sha256, file.name);
    }
    const count = (method) => toStore.filter((sent) => sent === method).length;
    assert.deepEqual({ POST: count("POST"), PUT: count("PUT"), OPTIONS: count("OPTIONS") }, { POST: 20, PUT: 1, OPTIONS: 1 }, "the PUT's preflight is the only one");
  } finally {
    await page.close();
    site.close();
    companion.stop();
  }
});

/** A backend that receives the companion's webhook; `next()` resolves with the next notice. */
async function webhookReceiver() {
  const notices = [];
  const waiting = [];
  const server = http.createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      response.end();
      const notice = JSON.parse(body);
      const waiter = waiting.shift();
      if (waiter) waiter(notice);
      else notices.push(notice);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks/ferry`,
    next: () => (notices.length ? Promise.resolve(notices.shift()) : new Promise((resolve) => waiting.push(resolve))),
    close: () => server.close(),
  };
}

test("with previews on, a single PUT completes through the companion and an image gets its thumbnail", async () => {
  const backend = await webhookReceiver();
  const companion = await startCompanion({ FERRY_PREVIEWS: "true", FERRY_WEBHOOK_URL: backend.url, FERRY_WEBHOOK_SECRET: "e2e" });
  const site = await serveFolder({ "/pkg/": process.env.FERRY_PKG, "/": path.join(here, "../fixtures/npm-page") });
  const page = await browser.newPage();
  const completes = [];
  page.on("request", (request) => {
    if (new URL(request.url()).pathname === "/api/objects/complete") completes.push(request.method());
  });
  try {
    await page.goto(`${site.url}/?companion=${encodeURIComponent(companion.url)}`);
    await page.waitForSelector("body[data-ready=true]");
    const result = await page.evaluate(async () => {
      // A PNG drawn in the page, as a picked photo would be.
      const canvas = new OffscreenCanvas(640, 480);
      const context = canvas.getContext("2d");
      context.fillStyle = "#2563eb";
      context.fillRect(0, 0, 640, 480);
      const png = await canvas.convertToBlob({ type: "image/png" });
      return window.uploader.add(new File([png], "drawn.png", { type: "image/png" }), { metadata: { source: "npm-page" } }).done;
    });
    assert.deepEqual(completes, ["POST"], "the single PUT ended with one Complete");
    const notice = await backend.next();
    assert.equal(notice.key, result.key);
    assert.equal(notice.contentType, "image/png");
    assert.equal(notice.metadata.source, "npm-page");
    assert.equal(notice.previews.thumbnail, `${result.key}.thumbnail.jpg`);
    const preview = await fetch(`${companion.url}/api/files/${result.key}/preview`);
    assert.equal(preview.status, 200);
    const jpeg = Buffer.from(await preview.arrayBuffer());
    assert.deepEqual([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff], "a JPEG");
  } finally {
    await page.close();
    site.close();
    companion.stop();
    backend.close();
  }
});

test("the partSize and order options shape new uploads", async () => {
  const companion = await startCompanion();
  const site = await serveFolder({ "/pkg/": process.env.FERRY_PKG, "/": path.join(here, "../fixtures/npm-page") });
  const page = await browser.newPage();
  try {
    const storeOrigin = await companion.storeOrigin();
    let partPuts = 0;
    page.on("request", (request) => {
      if (request.method() === "PUT" && request.url().startsWith(storeOrigin) && request.url().includes("partNumber=")) partPuts += 1;
    });
    await page.goto(`${site.url}/?companion=${encodeURIComponent(companion.url)}`);
    await page.waitForSelector("body[data-ready=true]");
    const finished = await page.evaluate(async (mib) => {
      const endpoint = new URLSearchParams(location.search).get("companion");
      // One file at a time, the smallest first: both are queued before the companion's limits
      // arrive, so the order decides which goes first.
      const uploader = window.createUploader({ endpoint, partSize: 8 * mib, order: "smallest-first", triggers: 1 });
      const finished = [];
      const big = uploader.add(new File([new Uint8Array(20 * mib)], "big.bin"));
      const small = uploader.add(new File([new Uint8Array(mib)], "small.bin"));
      big.done.then(() => finished.push("big"));
      small.done.then(() => finished.push("small"));
      await Promise.all([big.done, small.done]);
      return finished;
    }, MIB);
    assert.deepEqual(finished, ["small", "big"], "smallest first");
    assert.equal(partPuts, 3, "8 MiB parts: 20 MiB is three parts");
  } finally {
    await page.close();
    site.close();
    companion.stop();
  }
});

test("options are read as a page passes them: unknown fields ignored, Maps read, nonsense, cycles and throwing getters refused", async () => {
  const companion = await startCompanion();
  const site = await serveFolder({ "/pkg/": process.env.FERRY_PKG, "/": path.join(here, "../fixtures/npm-page") });
  const page = await browser.newPage();
  try {
    const configAuthorization = [];
    page.on("request", (request) => {
      if (request.url().endsWith("/api/config")) configAuthorization.push(request.headers().authorization);
    });
    await page.goto(`${site.url}/?companion=${encodeURIComponent(companion.url)}`);
    await page.waitForSelector("body[data-ready=true]");
    const outcome = await page.evaluate(async () => {
      const endpoint = new URLSearchParams(location.search).get("companion");
      const refused = (options) => {
        try {
          window.createUploader(options);
          return null;
        } catch (error) {
          return error.message;
        }
      };
      // Fields the uploader does not read are not looked at, whatever they hold.
      const uploader = window.createUploader({ endpoint, headers: new Map([["authorization", "Bearer from-a-map"]]), big: 10n, tag: Symbol("x") });
      const file = new File(["kept with its metadata"], "map.txt");
      const result = await uploader.add(file, { metadata: new Map([["source", "a-map"]]) }).done;
      return {
        location: result.location,
        nan: refused({ endpoint, slots: NaN }),
        fraction: refused({ endpoint, slots: 2.5 }),
        set: refused({ endpoint, headers: new Set(["authorization"]) }),
        order: refused({ endpoint, order: "largest-first" }),
        cycle: (() => {
          const headers = { authorization: "x" };
          headers.self = headers;
          return refused({ endpoint, headers });
        })(),
        getter: refused({
          endpoint,
          get slots() {
            throw new Error("no slots for you");
          },
        }),
      };
    });
    assert.deepEqual(configAuthorization, ["Bearer from-a-map"], "the Map's header went with the call");
    const stored = await readBack(companion.url, outcome.location);
    assert.equal(stored.headers.get("x-amz-meta-source"), "a-map", "the Map's metadata is stored");
    assert.equal(outcome.nan, "bad uploader options: `slots`: expected a finite number");
    assert.equal(outcome.fraction, "bad uploader options: `slots`: expected a whole number from 0 to 2^53 - 1");
    assert.equal(outcome.set, "bad uploader options: headers must be an object of strings or a function: expected a plain object, an array or a Map");
    assert.equal(outcome.order, 'bad uploader options: `order`: unknown order "largest-first", expected "fifo" or "smallest-first"');
    assert.match(outcome.cycle, /^bad uploader options: headers must be an object of strings or a function: (`self`: )+nested too deep \(does an object hold itself\?\)$/);
    assert.equal(outcome.getter, "bad uploader options: `slots` could not be read");
  } finally {
    await page.close();
    site.close();
    companion.stop();
  }
});

test("an app built with Vite 7 imports the package and uploads", async () => {
  const outDir = fs.mkdtempSync(path.join(scratch, "vite-"));
  const vite = path.join(here, "../node_modules/.bin/vite");
  const built = spawnSync(vite, ["build", path.join(here, "../fixtures/vite-app"), "--outDir", outDir], {
    env: { ...process.env },
    encoding: "utf8",
  });
  assert.equal(built.status, 0, `vite build failed:\n${built.stdout}\n${built.stderr}`);
  assert.ok(fs.readdirSync(path.join(outDir, "assets")).some((name) => name.endsWith(".wasm")), "the wasm is an asset of the build");
  const companion = await startCompanion();
  const site = await serveFolder({ "/": outDir });
  const page = await browser.newPage();
  try {
    await page.goto(`${site.url}/?companion=${encodeURIComponent(companion.url)}`);
    await page.waitForSelector("body[data-ready=true]");
    const files = [1000, 11 * MIB].map((size) => makeFile(`vite-${size}.bin`, size));
    await page.setInputFiles("[data-testid=file-input]", files.map((file) => file.path));
    await page.waitForFunction((count) => window.results.length >= count, files.length, { timeout: 120_000 });
    const results = await page.evaluate(() => window.results);
    for (const file of files) {
      const outcome = results.find((result) => result.name === file.name);
      assert.ok(outcome.ok, `${file.name}: ${outcome.code}`);
      assert.equal((await readBack(companion.url, outcome.result.location)).sha256, file.sha256);
    }
  } finally {
    await page.close();
    site.close();
    companion.stop();
  }
});

/** An HS256 JWT for `sub`, expiring `expiresIn` seconds from now (negative: already expired). */
function jwt(secret, sub, expiresIn) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, exp: Math.floor(Date.now() / 1000) + expiresIn })}`;
  return `${unsigned}.${crypto.createHmac("sha256", secret).update(unsigned).digest("base64url")}`;
}

test("a bearer token that expires mid-upload is refreshed through the headers function", async () => {
  const secret = "e2e-jwt-secret";
  const companion = await startCompanion({ FERRY_JWT_HS256_SECRET: secret });
  const site = await serveFolder({ "/pkg/": process.env.FERRY_PKG, "/": path.join(here, "../fixtures/npm-page") });
  const page = await browser.newPage();
  try {
    // The application's token service, as the page's own backend would give it.
    await page.exposeFunction("mintToken", (expiresIn) => jwt(secret, "tester", expiresIn));
    await page.goto(`${site.url}/?companion=${encodeURIComponent(companion.url)}`);
    await page.waitForSelector("body[data-ready=true]");
    const outcome = await page.evaluate(async (mib) => {
      let token = await window.mintToken(3600);
      const asked = [];
      const uploader = window.createUploader({
        endpoint: new URLSearchParams(location.search).get("companion"),
        headers: async ({ refresh }) => {
          asked.push(refresh);
          if (refresh) token = await window.mintToken(3600);
          return { Authorization: `Bearer ${token}` };
        },
      });
      // Once the first part is stored, the token the application holds has expired (past the
      // companion's 60 s leeway): the next call, Complete, is answered 401.
      let expired = false;
      uploader.on("part", async () => {
        if (!expired) {
          expired = true;
          token = await window.mintToken(-300);
        }
      });
      const bytes = new Uint8Array(23 * mib).map((_, index) => index % 251);
      const file = new File([bytes], "jwt.bin");
      const digest = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
      try {
        const result = await uploader.add(file).done;
        return { ok: true, result, digest, asked, expired };
      } catch (error) {
        return { ok: false, code: error.code, message: error.message, asked, expired };
      }
    }, MIB);
    assert.ok(outcome.ok, `${outcome.code}: ${outcome.message}`);
    assert.ok(outcome.expired, "the token expired during the upload");
    assert.ok(outcome.asked.length >= 3, `asked before every call: ${outcome.asked}`);
    assert.ok(outcome.asked.includes(true), "a 401 asked for fresh headers");
    assert.equal(outcome.result.size, 23 * MIB);
    // With authentication on, the location is a signed link: it reads without credentials.
    const stored = await readBack(companion.url, outcome.result.location);
    assert.equal(stored.sha256, outcome.digest, "the object reads back identical");
  } finally {
    await page.close();
    site.close();
    companion.stop();
  }
});
