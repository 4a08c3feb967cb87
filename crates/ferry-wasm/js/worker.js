// Ferry's hashing Worker: the package's own wasm, instantiated from the module the page posts
// first (nothing is fetched again), answers each posted part (a Blob) with its checksum, read and
// hashed here, off the page's thread.
import init, { checksum } from "./ferry_wasm.js";

let ready = null;

onmessage = async ({ data }) => {
  if (data.module) {
    ready = init({ module_or_path: data.module });
    return;
  }
  const { id, blob, algorithm } = data;
  try {
    await ready;
  } catch (error) {
    // The page hashes from now on.
    postMessage({ id, broken: String(error?.message ?? error) });
    return;
  }
  try {
    postMessage({ id, value: await checksum(blob, algorithm) });
  } catch (error) {
    // The bytes could not be read (the file changed or went away): the same message the page's
    // own hashing gives.
    postMessage({ id, error: String(error?.message ?? error) });
  }
};
