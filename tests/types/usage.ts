// Compiles under `tsc --strict` against the package's own `.d.ts`: the typed API as users see it.
import init, {
  checksum,
  createUploader,
  FerryError,
  type UnfinishedUpload,
  type UploaderStats,
  type UploadProgress,
  type UploadResult,
} from "ferry-wasm";

export async function example(file: File, signal: AbortSignal): Promise<string> {
  await init();
  const uploader = createUploader({
    endpoint: "https://uploads.example.com",
    headers: { Authorization: "Bearer token" },
    slots: 4,
    triggers: 8,
    perFile: 2,
    retries: 5,
    retryDelayMs: 500,
    partSize: 8 * 1024 * 1024,
    order: "smallest-first",
    adaptive: false,
  });
  const left: UnfinishedUpload[] = uploader.unfinished();
  for (const { id, name, size, confirmed, age } of left) {
    if (age > 86_400) uploader.discard(id);
    console.log(name, confirmed / size);
  }
  const stats: UploaderStats = uploader.stats();
  const eta: number | null = stats.eta;
  console.log(stats.slotsBusy, stats.slots, stats.queued, stats.prepared, stats.companionCalls, stats.retries, stats.speed, eta);
  uploader.on("joined", ({ id, upload }: { id: number; upload: number }) => console.log(id, "shares", upload));
  const unsubscribe: () => void = uploader.on("progress", (event: UploadProgress) => {
    const share: number = event.loaded / event.total;
    console.log(event.id, share, event.confirmed, event.inFlight, event.retries, event.fallback, event.speed, event.eta);
  });
  uploader.on("error", ({ error }: { id: number; error: FerryError }) => console.error(error.code));
  const upload = uploader.add(file, { priority: 2, signal, metadata: { album: "summer" }, onProgress: (p) => console.log(p.loaded) });
  upload.pause();
  upload.resume();
  const id: number | undefined = upload.id;
  try {
    const result: UploadResult = await upload.done;
    unsubscribe();
    const stated = result.checksum;
    if (stated && stated.algorithm !== "sha256" && stated.value !== (await checksum(file, stated.algorithm))) throw new Error("changed");
    return `${id}: ${result.key} ${result.etag} ${result.size} ${result.location}`;
  } catch (error) {
    if (error instanceof FerryError) return error.code;
    throw error;
  } finally {
    uploader.pauseAll();
    uploader.resumeAll();
    uploader.cancelAll();
    uploader.free();
  }
}
