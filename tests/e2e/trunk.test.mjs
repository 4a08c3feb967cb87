// `trunk serve` as a Leptos developer runs it: the repository's Trunk.toml builds the page and
// proxies /api to a companion. The proxy's backend is the test's companion instead of
// 127.0.0.1:8080, and the page is built into a scratch folder; everything else is the file as
// committed.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { launchChromium, makeFile, readBack, scratch, startCompanion, uploadThroughDemo } from "./harness.mjs";

const repository = path.join(path.dirname(fileURLToPath(import.meta.url)), "../..");

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves when trunk says it serves (on stdout or stderr), rejects if it exits first. */
function listening(trunk) {
  return new Promise((resolve, reject) => {
    const log = [];
    for (const stream of [trunk.stdout, trunk.stderr]) {
      readline.createInterface({ input: stream }).on("line", (line) => {
        log.push(line);
        if (line.includes("server listening at")) resolve();
      });
    }
    trunk.on("exit", (code) => reject(new Error(`trunk serve exited (${code}):\n${log.join("\n")}`)));
  });
}

/**
 * `url` fetched once trunk accepts connections: it says it listens a moment before its socket
 * does (a CI run met a refused connection right after the line), so a refused connection is
 * tried again, 50 times at most.
 */
async function answered(url) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url);
    } catch (error) {
      if (attempt >= 50 || error.cause?.code !== "ECONNREFUSED") throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

test("trunk serve builds the page from Trunk.toml and proxies /api to the companion", async () => {
  const companion = await startCompanion();
  const port = await freePort();
  const committed = fs.readFileSync(path.join(repository, "Trunk.toml"), "utf8");
  const replace = (text, from, to) => {
    assert.ok(text.includes(from), `Trunk.toml has ${from}`);
    return text.replace(from, to);
  };
  let config = replace(committed, 'backend = "http://127.0.0.1:8080/api/"', `backend = "${companion.url}/api/"`);
  config = replace(config, "port = 8081", `port = ${port}`);
  config = replace(config, 'dist = "dist"', `dist = ${JSON.stringify(fs.mkdtempSync(path.join(scratch, "trunk-dist-")))}`);
  // Beside the committed file, so its relative paths mean the same.
  const file = path.join(repository, `Trunk.test-${process.pid}.toml`);
  fs.writeFileSync(file, config);
  const trunk = spawn("trunk", ["serve", "--release", "--config", file, "--no-autoreload"], { cwd: repository, stdio: ["ignore", "pipe", "pipe"] });
  try {
    await listening(trunk);
    const origin = `http://127.0.0.1:${port}`;
    const proxied = await answered(`${origin}/api/config`);
    assert.equal(proxied.status, 200, "/api goes to the companion");
    assert.ok((await proxied.json()).limits, "the companion's own answer");
    const page = await browser.newPage();
    try {
      await page.goto(origin);
      await page.waitForSelector("[data-testid=file-input]");
      assert.ok(await page.$('link[rel=icon][href*="favicon"]'), "the favicon is linked");
      const file = makeFile("through-trunk.bin", 7 * 1024 * 1024);
      const [row] = await uploadThroughDemo(page, [file]);
      assert.equal(row.state, "done", JSON.stringify(row));
      assert.equal((await readBack(companion.url, row.href)).sha256, file.sha256);
    } finally {
      await page.close();
    }
  } finally {
    trunk.kill();
    fs.rmSync(file, { force: true });
    companion.stop();
  }
});
