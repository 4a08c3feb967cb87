import path from "node:path";
import { fileURLToPath } from "node:url";

import { defineConfig } from "vite";

const bench = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// `ferry-wasm` is the package `cargo xtask npm` built (FERRY_PKG); Uppy 5.x lives in its own
// folder so that its @uppy/core 5 never meets the 6.x one.
export default defineConfig({
  resolve: {
    alias: {
      "ferry-wasm": `${process.env.FERRY_PKG}/index.js`,
      "uppy5-core": path.join(bench, "uppy5/node_modules/@uppy/core"),
      "uppy5-aws-s3": path.join(bench, "uppy5/node_modules/@uppy/aws-s3"),
    },
  },
  // The hashing Worker imports the package as an ES module, as the page does.
  worker: { format: "es" },
  build: { target: "es2022", emptyOutDir: true, chunkSizeWarningLimit: 8192 },
  logLevel: "warn",
});
