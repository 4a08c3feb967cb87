//! Checksums of a File's parts, as the engine asks for them ([`ferry_core::Action::Hash`]).
//!
//! CRC32C and CRC64NVME are computed in wasm from the part's byte stream (`Blob.stream()`, the
//! browser's fastest read): parts of [`IN_WORKER_FROM`] and more in the package's Worker
//! ([`crate::hash_worker`]), off the page's thread; smaller ones, and all of them where there is
//! no Worker, on the page, yielding to its event loop after each [`STEP`] bytes hashed, so the
//! page is held for a few milliseconds at most (a step, or one chunk where the browser hands
//! over more at once). Only the stream's chunks are in memory. SHA-256 goes to WebCrypto, which
//! hashes natively and off the page's thread, but only a whole buffer: the part is read at once
//! (one part in memory, as for its PUT). ARCHITECTURE.md gives the measurements behind this.

use std::ops::Range;

use ferry_core::{ChecksumAlgorithm, ChecksumType};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::Blob;

use crate::describe;
use crate::driver::part_of;
use crate::hash_worker::HashWorker;

/// Bytes hashed between two yields to the page.
const STEP: usize = 1024 * 1024;

/// Parts this large go to the Worker: reading them holds the page's thread for milliseconds,
/// where a smaller part costs less to hash than its round trip to the Worker.
const IN_WORKER_FROM: u64 = 1024 * 1024;

/// The checksums of `file`'s bytes in each range, one range after another, or why they could
/// not be read. `size` is the file's, when known.
pub async fn checksums(
    file: &Blob,
    size: Option<u64>,
    parts: Vec<(u32, Range<u64>)>,
    algorithm: ChecksumAlgorithm,
) -> Result<Vec<String>, String> {
    let mut values = Vec::with_capacity(parts.len());
    for (_, range) in parts {
        let part = part_of(file, size, &range).map_err(describe)?;
        values.push(part_checksum(&part, range.end - range.start, algorithm).await?);
    }
    Ok(values)
}

async fn part_checksum(
    part: &Blob,
    len: u64,
    algorithm: ChecksumAlgorithm,
) -> Result<String, String> {
    if len >= IN_WORKER_FROM && algorithm != ChecksumAlgorithm::Sha256 {
        // `None`: no Worker, or it failed, and the page hashes the part itself.
        if let Some(answer) = HashWorker::checksum(part, len, algorithm).await {
            return answer;
        }
    }
    checksum(part, algorithm).await
}

/// The full-object CRC of `blob`'s bytes, as `done` reports it for the same bytes.
pub async fn full_object_crc(blob: &Blob, algorithm: ChecksumAlgorithm) -> Result<String, String> {
    if algorithm.multipart_type() != ChecksumType::FullObject {
        return Err(format!(
            "{} has no full-object checksum: a multipart object's is composed from its parts' (see `done`)",
            algorithm.name()
        ));
    }
    checksum(blob, algorithm).await
}

/// The checksum of `part`'s bytes, or why they could not be read.
async fn checksum(part: &Blob, algorithm: ChecksumAlgorithm) -> Result<String, String> {
    if algorithm == ChecksumAlgorithm::Sha256 {
        let buffer = JsFuture::from(part.array_buffer())
            .await
            .map_err(describe)?;
        return web_crypto_sha256(&buffer.unchecked_into()).await;
    }
    let stream = part.stream();
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut hasher = algorithm.hasher();
    let mut chunk = Vec::new();
    let mut since_yield = 0;
    loop {
        let read = JsFuture::from(reader.read()).await.map_err(describe)?;
        if js_sys::Reflect::get(&read, &"done".into()).is_ok_and(|done| done.is_truthy()) {
            return Ok(hasher.finish());
        }
        let value: js_sys::Uint8Array = js_sys::Reflect::get(&read, &"value".into())
            .map_err(describe)?
            .unchecked_into();
        // The buffer only grows (to the largest chunk): zeroing it for every chunk cost more
        // than a twelfth of the hash.
        let len = value.length() as usize;
        if chunk.len() < len {
            chunk.resize(len, 0);
        }
        value.copy_to(&mut chunk[..len]);
        hasher.update(&chunk[..len]);
        since_yield += len;
        if since_yield >= STEP {
            yield_to_page().await;
            since_yield = 0;
        }
    }
}

/// Ends the current task, so the page handles input and draws before hashing goes on: the
/// stream's chunks may all be ready at once, and awaiting them alone would not leave the task.
/// A message on a channel comes in a task of its own, without `setTimeout`'s 4 ms clamp.
async fn yield_to_page() {
    let Ok(channel) = web_sys::MessageChannel::new() else {
        return;
    };
    let delivered = js_sys::Promise::new(&mut |resolve, _| {
        channel.port1().set_onmessage(Some(&resolve));
    });
    if channel.port2().post_message(&JsValue::NULL).is_ok() {
        let _ = JsFuture::from(delivered).await;
    }
}

async fn web_crypto_sha256(buffer: &js_sys::ArrayBuffer) -> Result<String, String> {
    // `crypto` of the page or of a Worker.
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).map_err(describe)?;
    let subtle = crypto.unchecked_into::<web_sys::Crypto>().subtle();
    let digest = subtle
        .digest_with_str_and_buffer_source("SHA-256", buffer)
        .map_err(describe)?;
    let digest = JsFuture::from(digest).await.map_err(describe)?;
    Ok(ferry_core::base64::encode(
        &js_sys::Uint8Array::new(&digest).to_vec(),
    ))
}
