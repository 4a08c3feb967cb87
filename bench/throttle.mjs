// A slow link between the page and every server it talks to: an HTTP proxy that delays each
// request and each answer by half the round trip and shares one bandwidth limit among all
// connections, each way.
//
// DevTools' network emulation (`Network.emulateNetworkConditions`) is not used: it delays a
// request but not its CORS preflight, so a presigned PUT, which needs one, cost on the emulated
// link what a CORS-simple POST costs (measured in Chromium: 46 ms each at 40 ms of latency). On
// a real link the preflight is one more round trip, and the proxy charges it like any request.
import { once } from "node:events";
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
    this.freeAt = Math.max(now, this.freeAt) + (bytes / this.bytesPerSecond) * 1000;
    await sleep(this.freeAt - now);
  }
}

/** Streams `from` into `to` over the link: each chunk waits its turn on `bandwidth`. */
async function carry(from, to, bandwidth) {
  for await (const chunk of from) {
    await bandwidth.take(chunk.length);
    if (!to.write(chunk)) await once(to, "drain");
  }
  to.end();
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
    // A proxied request names its whole URL; the headers go on as they came. Half the round
    // trip before the request reaches its server, half before its answer reaches the page.
    const target = new URL(request.url);
    await sleep(oneWayMs);
    const upstream = http.request(target, { method: request.method, headers: request.headers, agent });
    upstream.on("response", async (answer) => {
      await sleep(oneWayMs);
      response.writeHead(answer.statusCode, answer.headers);
      carry(answer, response, down).catch(() => response.destroy());
    });
    upstream.on("error", () => response.destroy());
    request.on("error", () => upstream.destroy());
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
