// @uppy/companion's S3 multipart routes, signing for the same store as Ferry's companion.
// Prints "uppy-companion listening on http://ADDR" once it serves.

import * as companion from "@uppy/companion";
import express from "express";

const { STORE_ENDPOINT, STORE_KEY, STORE_SECRET, STORE_BUCKET, UPPY_FILE_PATH } = process.env;
const { app } = companion.app({
  s3: {
    key: STORE_KEY,
    secret: STORE_SECRET,
    bucket: STORE_BUCKET,
    region: "us-east-1",
    endpoint: STORE_ENDPOINT,
    forcePathStyle: true,
    expires: 900,
    getKey: ({ filename }) => `uploads/uppy/${Date.now()}-${Math.random().toString(36).slice(2)}-${filename}`,
  },
  server: { host: "127.0.0.1", protocol: "http" },
  filePath: UPPY_FILE_PATH,
  secret: "bench-secret",
  corsOrigins: true,
  uploadUrls: [],
  metrics: false,
});
const server = express().use(app).listen(0, "127.0.0.1", () => {
  console.log(`uppy-companion listening on http://127.0.0.1:${server.address().port}`);
});
