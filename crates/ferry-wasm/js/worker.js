// Ferry's hashing Worker: the package's own wasm, instantiated from the module the page posts
// first (nothing is fetched again), answers each posted part (a Blob) with its checksum, read and
// hashed here, off the page's thread.
import init, { checksum } from "./ferry_wasm.js";

/** Errors of reading the part's bytes (the file changed or went away): the part's own answer. */
const READ_ERRORS = /^(NotReadableError|NotFoundError|SecurityError)\b/;

let ready = null;

onmessage = async ({ data }) => {
  if (data.module) {
    ready = init({ module_or_path: data.module });
    return;
  }
  const { id, blob, algorithm } = data;
  try {
    await ready;
    postMessage({ id, value: await checksum(blob, algorithm) });
  } catch (error) {
    const message = String(error?.message ?? error);
    if (READ_ERRORS.test(message)) {
      // The same message the page's own hashing gives.
      postMessage({ id, error: message });
      return;
    }
    // Anything else is this Worker's own failure (its module did not instantiate, or trapped):
    // the page hashes from now on.
    postMessage({ id, broken: message });
    close();
  }
};
