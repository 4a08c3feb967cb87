// A slow link between the page and every server it talks to: an HTTP proxy that delays each
// request and each answer by half the round trip and shares one bandwidth limit among all
// connections, each way.
//
// DevTools' network emulation (`Network.emulateNetworkConditions`) is not used: it delays a
// request but not its CORS preflight, so a presigned PUT, which needs one, cost on the emulated
// link what a CORS-simple POST costs (measured in Chromium: 46 ms each at 40 ms of latency). On
// a real link the preflight is one more round trip, and the proxy charges it like any request.
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";

/** Bytes may pass at `bytesPerSecond`, shared by everyone who takes them, in arrival order. */
class Bandwidth {
  constructor(bytesPerSecond) {
    this.bytesPerSecond = bytesPerSecond;
    this.freeAt = 0;
  }

  /** Resolves when `bytes` have passed the link. */
  async take(bytes) {
    const now = performance.now();
    // A timer that fires late does not waste the link meanwhile: up to SLACK_MS stays credit.
    this.freeAt = Math.max(now - SLACK_MS, this.freeAt) + (bytes / this.bytesPerSecond) * 1000;
    await sleep(this.freeAt - now);
  }
}

/** Time the link may make up for a late timer, in milliseconds. */
const SLACK_MS = 5;

/** Headers of one hop, which a proxy does not pass on. */
const HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

function forwarded(headers) {
  const kept = { ...headers };
  for (const name of HOP_BY_HOP) delete kept[name];
  return kept;
}

/** Resolves when `stream` takes more again, or is gone. */
function drained(stream) {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

/**
 * Streams `from` into `to` over the link: each chunk waits its turn on `bandwidth`. Stops when
 * `to` goes away (the page aborted, or the server closed); throws when `from` breaks off.
 */
async function carry(from, to, bandwidth) {
  for await (const chunk of from) {
    await bandwidth.take(chunk.length);
    if (to.destroyed) return;
    if (!to.write(chunk)) await drained(to);
  }
  if (!to.destroyed) to.end();
}

/**
 * Starts the proxy on loopback; resolves to its URL and a `close`. A browser context sends its
 * requests through it with Playwright's `proxy: { server: url }` (loopback included).
 */
export async function startThrottle({ roundTripMs, bitsPerSecond }) {
  const oneWayMs = roundTripMs / 2;
  const up = new Bandwidth(bitsPerSecond / 8);
  const down = new Bandwidth(bitsPerSecond / 8);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const server = http.createServer(async (request, response) => {
    // A proxied request names its whole URL. Half the round trip before the request reaches
    // its server, half before its answer reaches the page.
    let target;
    try {
      target = new URL(request.url);
    } catch {
      return response.writeHead(400).end("a proxy request names its whole URL");
    }
    await sleep(oneWayMs);
    const upstream = http.request(target, { method: request.method, headers: forwarded(request.headers), agent });
    // A page that leaves mid-answer frees the server's connection too.
    response.on("close", () => {
      if (!response.writableFinished) upstream.destroy();
    });
    upstream.on("response", async (answer) => {
      await sleep(oneWayMs);
      if (response.destroyed) return answer.destroy();
      response.writeHead(answer.statusCode, forwarded(answer.headers));
      carry(answer, response, down).catch(() => response.destroy());
    });
    // A server that fails before it answers is a 502, as from any proxy; after, a cut answer.
    upstream.on("error", () => (response.headersSent ? response.destroy() : response.writeHead(502).end()));
    carry(request, upstream, up).catch(() => upstream.destroy());
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => {
      agent.destroy();
      server.closeAllConnections();
      server.close();
    },
  };
}
