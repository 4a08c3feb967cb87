// How the package starts its hashing Worker. The npm entry point provides the way, in the
// `new Worker(new URL("./worker.js", import.meta.url))` form bundlers follow; a page built without
// it (trunk) hashes on its own thread.
let start = null;

export function provideHashWorker(starter) {
  start = starter;
}

export function startHashWorker() {
  try {
    return start ? start() : undefined;
  } catch {
    // A page whose policy forbids Workers: its parts are hashed on the page.
    return undefined;
  }
}
