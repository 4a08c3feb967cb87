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

const libraries = {
  ferry,
  "ferry (checksums off)": (config) => ferry(config, config.ferryUnchecked),
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
    const started = performance.now();
    const keys = await libraries[library](config);
    return { ms: performance.now() - started, keys, started };
  },
};
document.body.dataset.ready = "true";
