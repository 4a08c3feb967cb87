// Every uploader under test, in one page built by Vite, each used the way its documentation shows.
// `window.bench.run(library, config)` uploads the picked files and resolves with the time it took,
// the keys it stored and when it started (`performance.now()`).

import init, { checksum, createUploader } from "ferry-wasm";
import Uppy6 from "@uppy/core";
import AwsS3v6 from "@uppy/aws-s3";
import Uppy5 from "uppy5-core";
import AwsS3v5 from "uppy5-aws-s3";
import { S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";

const wasm = await init();

const files = () => [...document.querySelector("#files").files];

async function ferry(config, endpoint = config.ferry) {
  const uploader = createUploader({ endpoint });
  const results = await Promise.all(files().map((file) => uploader.add(file).done));
  uploader.free();
  return results.map((result) => result.key);
}

/** `endpoint` names the companion in @uppy/aws-s3 5.x, `companionEndpoint` in 6.x. */
async function uppy(Uppy, AwsS3, endpointOption, config) {
  const uppy = new Uppy({ autoProceed: false }).use(AwsS3, {
    [endpointOption]: config.uppy,
    // "Multipart mode", as the benchmark asks; every other option is the plugin's default.
    shouldUseMultipart: true,
  });
  uppy.addFiles(files().map((file) => ({ name: file.name, type: file.type || "application/octet-stream", data: file })));
  const result = await uppy.upload();
  if (result.failed?.length) throw new Error(`uppy: ${result.failed.length} failed: ${result.failed[0].error}`);
  uppy.destroy();
  // 6.x reports the key in the response body, 5.x keeps it with the multipart state.
  return result.successful.map((file) => file.response?.body?.key ?? file.s3Multipart?.key);
}

async function sdk(config) {
  const client = new S3Client({
    endpoint: config.store,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: config.key, secretAccessKey: config.secret },
    // The store checks no flexible checksums; the SDK's trailer-checksummed bodies are not for it.
    requestChecksumCalculation: "WHEN_REQUIRED",
  });
  const stamp = Date.now();
  const keys = await Promise.all(
    files().map(async (file, index) => {
      const key = `uploads/sdk/${stamp}-${index}-${file.name}`;
      await new Upload({ client, params: { Bucket: config.bucket, Key: key, Body: file, ContentType: file.type || undefined } }).done();
      return key;
    }),
  );
  client.destroy();
  return keys;
}

/**
 * The most a page can do, before the clock: every upload created and every part signed by
 * Ferry's companion with checksums off. On the clock: the PUTs, `parallel` XHRs at a time,
 * each a `Blob.slice()` with no progress listener, then the multipart uploads completed.
 */
async function signInAdvance(config) {
  const call = async (path, body) => {
    const answer = await fetch(`${config.ferryUnchecked}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    if (!answer.ok) throw new Error(`${path}: ${answer.status} ${await answer.text()}`);
    return answer.json();
  };
  // Files of one part are created 100 to a call, the others one at a time: a few calls in
  // flight, as 20,000 at once would be more than the browser takes.
  const companion = await (await fetch(`${config.ferryUnchecked}/api/config`)).json();
  // A file of one part by the companion's plan: its part size is the larger of its preferred
  // size and the store's minimum.
  const partSize = Math.max(companion.preferredPartSize, companion.limits.minPartSize);
  const request = (file) => ({ name: file.name, size: file.size, type: file.type });
  const created = new Map();
  const isSmall = (file) => file.size <= partSize && companion.createBatch > 0;
  const small = files().filter(isSmall);
  const batches = Array.from({ length: Math.ceil(small.length / 100) }, (_, index) => small.slice(index * 100, index * 100 + 100));
  const others = files().filter((file) => !isSmall(file));
  const pool = async (items, work) => {
    const queue = [...items];
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await work(next);
    }));
  };
  await pool(batches, async (batch) => {
    const { uploads } = await call("/api/uploads/batch", { files: batch.map(request) });
    uploads.forEach((upload, index) => created.set(batch[index], upload.created));
  });
  await pool(others, async (file) => created.set(file, await call("/api/uploads", request(file))));
  const uploads = [];
  for (const file of files()) {
    const upload = created.get(file);
    const urls = upload.url ? [{ part: 1, ...upload.url }] : [];
    for (let first = 1; first <= (upload.uploadId ? upload.partCount : 0); first += 1000) {
      const parts = Array.from({ length: Math.min(1000, upload.partCount - first + 1) }, (_, index) => first + index);
      urls.push(...(await call(`/api/uploads/${upload.uploadId}/sign`, { token: upload.token, parts })).urls);
    }
    const puts = urls.map(({ part, url, headers }) => ({ part, url, headers, body: file.slice((part - 1) * upload.partSize, Math.min(file.size, part * upload.partSize)) }));
    uploads.push({ created: upload, puts, etags: [] });
  }
  return {
    puts: uploads.flatMap((upload) => upload.puts.map((put) => ({ upload, ...put }))),
    /** Completes the multipart uploads, all at once, and names every stored key. */
    async complete() {
      const multipart = uploads.filter(({ created }) => created.uploadId);
      await Promise.all(
        multipart.map(({ created, etags }) => {
          const parts = etags.map((etag, index) => ({ part: index + 1, etag }));
          return call(`/api/uploads/${created.uploadId}/complete`, { token: created.token, parts });
        }),
      );
      return uploads.map(({ created }) => created.key);
    },
  };
}

/** The clock's part of the in-browser ceiling: the signed PUTs, `parallel` at a time. */
async function putInParallel(prepared, parallel) {
  const queue = [...prepared.puts];
  const put = ({ upload, part, url, headers, body }) =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      for (const [name, value] of Object.entries(headers ?? {})) xhr.setRequestHeader(name, value);
      xhr.onload = () => {
        if (xhr.status !== 200) return reject(new Error(`PUT part ${part}: ${xhr.status}`));
        upload.etags[part - 1] = xhr.getResponseHeader("ETag");
        resolve();
      };
      xhr.onerror = () => reject(new Error(`PUT part ${part}: no answer`));
      xhr.send(body);
    });
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await put(next);
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** Ferry as a page whose policy forbids Workers runs it: every part hashed on the page's thread. */
async function ferryHashingOnThePage(config) {
  const Worker = globalThis.Worker;
  globalThis.Worker = function NoWorkers() {
    throw new DOMException("no Workers on this page", "SecurityError");
  };
  try {
    return await ferry(config);
  } finally {
    globalThis.Worker = Worker;
  }
}

/** What a library does before its clock starts, when it has something to do. */
const preparations = {
  "in-browser raw (6 PUTs)": signInAdvance,
  "in-browser raw (3 PUTs)": signInAdvance,
};

const libraries = {
  "in-browser raw (6 PUTs)": async (config, prepared) => putInParallel(prepared, 6),
  "in-browser raw (3 PUTs)": async (config, prepared) => putInParallel(prepared, 3),
  ferry,
  "ferry (checksums off)": (config) => ferry(config, config.ferryUnchecked),
  "ferry (no failures)": ferry,
  "ferry (hashing on the page)": ferryHashingOnThePage,
  "uppy-6": (config) => uppy(Uppy6, AwsS3v6, "companionEndpoint", config),
  "uppy-5": (config) => uppy(Uppy5, AwsS3v5, "endpoint", config),
  "lib-storage": sdk,
};

/** Ferry's checksum in a module Worker, once the Worker has started: `(file) => value`. */
async function inWorker() {
  const worker = new Worker(new URL("./hash-worker.js", import.meta.url), { type: "module" });
  await new Promise((resolve) => (worker.onmessage = resolve));
  return (file) =>
    new Promise((resolve) => {
      worker.onmessage = ({ data }) => resolve(data);
      worker.postMessage(file);
    });
}

/** SHA-256 of each 5 MiB part by WebCrypto, one part read at a time, as Ferry does with sha256. */
async function webCryptoParts(file) {
  const part = 5 * 1024 * 1024;
  for (let at = 0; at < file.size; at += part) await crypto.subtle.digest("SHA-256", await file.slice(at, at + part).arrayBuffer());
}

/** Ways to hash a picked file, each set up before its clock starts. */
const hashers = {
  "CRC32C in wasm on the page (Ferry without a Worker, and parts under 1 MiB)": async () => (file) => checksum(file, "crc32c"),
  "CRC32C in wasm in a Worker (Ferry's default, parts of 1 MiB and more)": inWorker,
  "SHA-256 by WebCrypto on the page, per 5 MiB part": async () => webCryptoParts,
};

window.bench = {
  hashers: Object.keys(hashers),
  /** Hashes the first picked file the way `method` names. */
  async hash(method) {
    const hash = await hashers[method]();
    const started = performance.now();
    await hash(files()[0]);
    return { ms: performance.now() - started, started };
  },
  libraries: Object.keys(libraries),
  /** Bytes of Ferry's WebAssembly memory (the other libraries have none). */
  wasmBytes: () => wasm.memory.buffer.byteLength,
  async run(library, config) {
    const prepared = await preparations[library]?.(config);
    const started = performance.now();
    const stored = await libraries[library](config, prepared);
    // A multipart upload is an object only once completed: the ceiling completes on the clock
    // too, as every library does.
    const keys = prepared ? await prepared.complete() : stored;
    const ms = performance.now() - started;
    return { ms, keys, started };
  },
};
document.body.dataset.ready = "true";
