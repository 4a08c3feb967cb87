// Ferry's `checksum()` in a module Worker, for the bench's hashing table: the same wasm CRC32C,
// off the page's thread. Answers each posted File with its checksum.
import init, { checksum } from "ferry-wasm";

await init();
onmessage = async ({ data: file }) => postMessage(await checksum(file, "crc32c"));
postMessage("ready");
