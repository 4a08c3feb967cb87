// Signatures per second and p99 latency at 1, 64 and 512 concurrent clients: Ferry's companion
// and @uppy/companion, signing for the same embedded store, side by side in one run.
// Run by `cargo xtask bench` (which builds the binaries and passes their paths).

import http from "node:http";
import os from "node:os";

import { startServers } from "./servers.mjs";

const SECONDS_PER_POINT = Number(process.env.BENCH_SECONDS ?? 4);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? "1,64,512").split(",").map(Number);
const BATCH = 100;


const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(...CONCURRENCY) });

function request(method, url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: body ? { "content-type": "application/json" } : {} }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

/** Runs `concurrency` clients for a fixed time; each request signs `perRequest` parts. */
async function measure(concurrency, perRequest, makeRequest) {
  const latencies = [];
  let failures = 0;
  const deadline = performance.now() + SECONDS_PER_POINT * 1000;
  let counter = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const sent = performance.now();
        // A refused connection or a reset counts as a failure, like a non-200 answer.
        const status = await makeRequest(counter++).then(({ status }) => status, () => 0);
        if (status !== 200) failures += 1;
        latencies.push(performance.now() - sent);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const p99 = latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))];
  return {
    concurrency,
    requests: latencies.length,
    failures,
    signatures_per_second: ((latencies.length - failures) * perRequest) / elapsed,
    p99_ms: p99,
  };
}

const { ferry, uppy } = await startServers({ admissionQueue: 4096 });

// One large multipart upload on each, so every part number up to 10,000 may be signed.
const size = 10_000 * 5 * 1024 * 1024;
const ferryUpload = JSON.parse((await request("POST", `${ferry}/api/uploads`, { name: "bench.bin", size, type: "application/octet-stream" })).body);
const uppyUpload = JSON.parse((await request("POST", `${uppy}/s3/multipart`, { filename: "bench.bin", type: "application/octet-stream", metadata: {} })).body);
const part = (i) => (i % 10_000) + 1;
const parts = (i) => Array.from({ length: BATCH }, (_, k) => part(i * BATCH + k));

const peers = {
  ferry: {
    // Each part with its CRC32C, as clients sign them (any value of the right length).
    one: (i) => request("POST", `${ferry}/api/uploads/${ferryUpload.uploadId}/sign`, { token: ferryUpload.token, parts: [part(i)], checksums: ["AAAAAA=="] }),
    batch: (i) =>
      request("POST", `${ferry}/api/uploads/${ferryUpload.uploadId}/sign`, { token: ferryUpload.token, parts: parts(i), checksums: parts(i).map(() => "AAAAAA==") }),
  },
  uppy: {
    one: (i) => request("GET", `${uppy}/s3/multipart/${encodeURIComponent(uppyUpload.uploadId)}/${part(i)}?key=${encodeURIComponent(uppyUpload.key)}`),
    batch: (i) =>
      request("GET", `${uppy}/s3/multipart/${encodeURIComponent(uppyUpload.uploadId)}/batch?key=${encodeURIComponent(uppyUpload.key)}&partNumbers=${parts(i).join(",")}`),
  },
};

const results = { seconds_per_point: SECONDS_PER_POINT, batch: BATCH, machine: `${os.cpus()[0].model}, ${os.cpus().length} cores`, points: [] };
for (const concurrency of CONCURRENCY) {
  for (const mode of ["one", "batch"]) {
    for (const [peer, calls] of Object.entries(peers)) {
      const point = await measure(concurrency, mode === "one" ? 1 : BATCH, calls[mode]);
      results.points.push({ peer, mode, ...point });
      console.error(`${peer} ${mode} c=${concurrency}: ${point.signatures_per_second.toFixed(0)} sig/s, p99 ${point.p99_ms.toFixed(1)} ms, ${point.failures} failures`);
    }
  }
}
console.log(JSON.stringify(results, null, 2));
process.exit(0);
