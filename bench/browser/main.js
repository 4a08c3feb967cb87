// Every uploader under test, in one page built by Vite, each used the way its documentation shows.
// `window.bench.run(library, config)` uploads the picked files and resolves with the time it took,
// the keys it stored and when it started (`performance.now()`).

import init, { createUploader } from "ferry-wasm";
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

const libraries = {
  ferry,
  "ferry (checksums off)": (config) => ferry(config, config.ferryUnchecked),
  "uppy-6": (config) => uppy(Uppy6, AwsS3v6, "companionEndpoint", config),
  "uppy-5": (config) => uppy(Uppy5, AwsS3v5, "endpoint", config),
  "lib-storage": sdk,
};

window.bench = {
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
