//! Files on disk, written so that a crash never exposes half of anything.
//!
//! ```text
//! <root>/<bucket>/objects/<sha256(key)>.json    pointer: key, size, ETag, checksum, data file name
//! <root>/<bucket>/objects/<uuid>.data           object bytes
//! <root>/<bucket>/uploads/<upload id>/upload.json     key, metadata, declared checksum
//! <root>/<bucket>/uploads/<upload id>/part-<n>.json   pointer: size, ETag, checksum, data file
//! <root>/<bucket>/uploads/<upload id>/<uuid>.data     part bytes
//! ```
//!
//! Bytes go to a fresh `<uuid>.data` file that is fsynced before its pointer is written to a
//! temporary name, fsynced and renamed over the old pointer; the rename is the commit. Keys are
//! hashed into file names, so no key can reach outside its bucket.
//!
//! Checksums were added later: metadata written before them loads with none (`serde(default)`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferry_core::checksum::{Checksum, ChecksumAlgorithm, ChecksumType};
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

/// A stored object, as its pointer file records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// ETag without quotes: the MD5 of the bytes, or `<md5 of part md5s>-<count>` for multipart.
    pub etag: String,
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub modified_unix: u64,
    /// What `x-amz-checksum-mode: ENABLED` returns, if the object was written with a checksum.
    #[serde(default)]
    pub checksum: Option<Checksum>,
    data: String,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadMeta {
    pub key: String,
    pub content_type: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub initiated_unix: u64,
    /// The checksum CreateMultipartUpload declared: every part has one, and so will the object.
    #[serde(default)]
    pub checksum: Option<UploadChecksum>,
}

/// A multipart upload's checksum algorithm and how the object's checksum comes from the parts'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChecksum {
    pub algorithm: ChecksumAlgorithm,
    #[serde(rename = "type")]
    pub kind: ChecksumType,
}

/// The checksum of the bytes of one write: a part, or a single PUT's object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksumValue {
    pub algorithm: ChecksumAlgorithm,
    /// Base64, as S3 states it.
    pub value: String,
}

/// One uploaded part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartMeta {
    pub size: u64,
    /// Hex MD5 of the part's bytes, without quotes.
    pub etag: String,
    /// The raw MD5, needed for the multipart ETag.
    pub md5: [u8; 16],
    pub modified_unix: u64,
    #[serde(default)]
    pub checksum: Option<ChecksumValue>,
    data: String,
}

/// Bytes written to a fresh data file, not yet visible to anyone.
#[derive(Debug)]
pub struct Written {
    path: PathBuf,
    pub size: u64,
    pub md5: [u8; 16],
    /// The checksum the writer asked to be computed over the bytes.
    pub checksum: Option<ChecksumValue>,
}

impl Written {
    fn file_name(&self) -> String {
        let name = self.path.file_name().expect("data files have a name");
        name.to_string_lossy().into_owned()
    }

    /// Drops bytes that will never be committed, such as a body whose checksum did not match.
    pub async fn discard(self) {
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

#[derive(Debug)]
pub struct Disk {
    root: PathBuf,
    /// Serialises pointer swaps, so the data file a replaced pointer named is removed exactly once.
    commit: tokio::sync::Mutex<()>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl Disk {
    pub fn open(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            commit: tokio::sync::Mutex::new(()),
        })
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    fn objects_dir(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join("objects")
    }

    fn upload_dir(&self, bucket: &str, upload_id: &str) -> PathBuf {
        self.bucket_dir(bucket).join("uploads").join(upload_id)
    }

    fn object_pointer(&self, bucket: &str, key: &str) -> PathBuf {
        let name = hex::encode(Sha256::digest(key.as_bytes()));
        self.objects_dir(bucket).join(format!("{name}.json"))
    }

    pub fn bucket_exists(&self, bucket: &str) -> bool {
        self.bucket_dir(bucket).is_dir()
    }

    /// Creates the bucket; `false` when it was already there.
    pub async fn create_bucket(&self, bucket: &str) -> io::Result<bool> {
        if self.bucket_exists(bucket) {
            return Ok(false);
        }
        tokio::fs::create_dir_all(self.objects_dir(bucket)).await?;
        tokio::fs::create_dir_all(self.bucket_dir(bucket).join("uploads")).await?;
        Ok(true)
    }

    /// Streams bytes into a fresh, fsynced data file in `dir`, computing `checksum` on the way.
    async fn write_data<E>(
        &self,
        dir: &Path,
        mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        checksum: Option<ChecksumAlgorithm>,
    ) -> Result<Written, WriteError<E>> {
        let (path, file, unfinished) = fresh_data_file(dir)?;
        let mut file = tokio::fs::File::from_std(file);
        let mut md5 = Md5::new();
        let mut hasher = checksum.map(ChecksumAlgorithm::hasher);
        let mut size = 0u64;
        // On an error the guard removes the file, as it does when this future is dropped (a
        // client gone, a server shutting down) before it ends.
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(WriteError::Body)?;
            md5.update(&chunk);
            if let Some(hasher) = &mut hasher {
                hasher.update(&chunk);
            }
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        unfinished.keep();
        Ok(Written {
            path,
            size,
            md5: md5.finalize().into(),
            checksum: checksum
                .zip(hasher)
                .map(|(algorithm, hasher)| ChecksumValue {
                    algorithm,
                    value: hasher.finish(),
                }),
        })
    }

    pub async fn object(&self, bucket: &str, key: &str) -> io::Result<Option<ObjectMeta>> {
        read_json(&self.object_pointer(bucket, key)).await
    }

    pub fn object_data(&self, bucket: &str, meta: &ObjectMeta) -> PathBuf {
        self.objects_dir(bucket).join(&meta.data)
    }

    pub async fn write_object_data<E>(
        &self,
        bucket: &str,
        body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        checksum: Option<ChecksumAlgorithm>,
    ) -> Result<Written, WriteError<E>> {
        self.write_data(&self.objects_dir(bucket), body, checksum)
            .await
    }

    /// Makes written bytes the object `key`, replacing any object that was there, unless
    /// `if_absent` asks to keep an existing object (S3's `If-None-Match: *`): then the written
    /// bytes are dropped and `None` says the object was there. The check and the rename happen
    /// under one lock, so two racing writers cannot both win.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        written: Written,
        etag: String,
        checksum: Option<Checksum>,
        content_type: Option<String>,
        metadata: BTreeMap<String, String>,
        if_absent: bool,
    ) -> io::Result<Option<ObjectMeta>> {
        let meta = ObjectMeta {
            key: key.to_owned(),
            size: written.size,
            etag,
            content_type,
            metadata,
            modified_unix: unix_now(),
            checksum,
            data: written.file_name(),
        };
        let pointer = self.object_pointer(bucket, key);
        let _guard = self.commit.lock().await;
        let replaced: Option<ObjectMeta> = read_json(&pointer).await?;
        if if_absent && replaced.is_some() {
            let _ = tokio::fs::remove_file(self.object_data(bucket, &meta)).await;
            return Ok(None);
        }
        write_json_atomically(&pointer, &meta).await?;
        if let Some(old) = replaced {
            let _ = tokio::fs::remove_file(self.object_data(bucket, &old)).await;
        }
        Ok(Some(meta))
    }

    /// Removes the object `key` and its bytes; a key with no object is no error, as in S3. The
    /// pointer goes first, under the commit lock, so no reader finds it naming removed bytes
    /// (a GET already streaming keeps its open file).
    pub async fn remove_object(&self, bucket: &str, key: &str) -> io::Result<()> {
        let pointer = self.object_pointer(bucket, key);
        let _guard = self.commit.lock().await;
        let Some(meta): Option<ObjectMeta> = read_json(&pointer).await? else {
            return Ok(());
        };
        tokio::fs::remove_file(&pointer).await?;
        let _ = tokio::fs::remove_file(self.object_data(bucket, &meta)).await;
        Ok(())
    }

    pub async fn create_upload(&self, bucket: &str, meta: &UploadMeta) -> io::Result<String> {
        let upload_id = uuid::Uuid::new_v4().to_string();
        let dir = self.upload_dir(bucket, &upload_id);
        tokio::fs::create_dir_all(&dir).await?;
        write_json_atomically(&dir.join("upload.json"), meta).await?;
        Ok(upload_id)
    }

    /// The upload, or `None` when the id is unknown (or not an id at all).
    pub async fn upload(&self, bucket: &str, upload_id: &str) -> io::Result<Option<UploadMeta>> {
        if uuid::Uuid::parse_str(upload_id).is_err() {
            return Ok(None);
        }
        read_json(&self.upload_dir(bucket, upload_id).join("upload.json")).await
    }

    pub async fn write_part_data<E>(
        &self,
        bucket: &str,
        upload_id: &str,
        body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        checksum: Option<ChecksumAlgorithm>,
    ) -> Result<Written, WriteError<E>> {
        self.write_data(&self.upload_dir(bucket, upload_id), body, checksum)
            .await
    }

    /// Makes written bytes part `number`, replacing an earlier upload of the same part.
    pub async fn commit_part(
        &self,
        bucket: &str,
        upload_id: &str,
        number: u32,
        written: Written,
    ) -> io::Result<PartMeta> {
        let dir = self.upload_dir(bucket, upload_id);
        let meta = PartMeta {
            size: written.size,
            etag: hex::encode(written.md5),
            md5: written.md5,
            modified_unix: unix_now(),
            data: written.file_name(),
            checksum: written.checksum,
        };
        let pointer = dir.join(format!("part-{number}.json"));
        let _guard = self.commit.lock().await;
        let replaced: Option<PartMeta> = read_json(&pointer).await?;
        write_json_atomically(&pointer, &meta).await?;
        if let Some(old) = replaced {
            let _ = tokio::fs::remove_file(dir.join(&old.data)).await;
        }
        Ok(meta)
    }

    pub fn part_data(&self, bucket: &str, upload_id: &str, part: &PartMeta) -> PathBuf {
        self.upload_dir(bucket, upload_id).join(&part.data)
    }

    /// Every uploaded part, by ascending part number.
    pub async fn parts(&self, bucket: &str, upload_id: &str) -> io::Result<Vec<(u32, PartMeta)>> {
        let dir = self.upload_dir(bucket, upload_id);
        let mut parts = Vec::new();
        let mut entries = tokio::fs::read_dir(&dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|name| name.strip_prefix("part-")?.strip_suffix(".json"))
                .and_then(|number| number.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(meta) = read_json::<PartMeta>(&entry.path()).await? {
                parts.push((number, meta));
            }
        }
        parts.sort_by_key(|(number, _)| *number);
        Ok(parts)
    }

    /// Removes the upload and every part it holds.
    pub async fn remove_upload(&self, bucket: &str, upload_id: &str) -> io::Result<()> {
        match tokio::fs::remove_dir_all(self.upload_dir(bucket, upload_id)).await {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Every upload in progress in the bucket, ordered by key and then upload id.
    pub async fn uploads(&self, bucket: &str) -> io::Result<Vec<(String, UploadMeta)>> {
        let mut uploads = Vec::new();
        let mut entries = tokio::fs::read_dir(self.bucket_dir(bucket).join("uploads")).await?;
        while let Some(entry) = entries.next_entry().await? {
            let Some(upload_id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Some(meta) = read_json::<UploadMeta>(&entry.path().join("upload.json")).await? {
                uploads.push((upload_id, meta));
            }
        }
        uploads.sort_by(|(a_id, a), (b_id, b)| a.key.cmp(&b.key).then(a_id.cmp(b_id)));
        Ok(uploads)
    }

    /// A fresh, not yet visible data file for the object a Complete assembles.
    pub async fn assemble_object(&self, bucket: &str, sources: &[PathBuf]) -> io::Result<Written> {
        // A Complete whose client went away drops this future, not the copy: the guard removes
        // the file, whatever the copy still writes to it.
        let (path, mut file, unfinished) = fresh_data_file(&self.objects_dir(bucket))?;
        // One blocking task for the whole copy: `std::io::copy` between files hands the bytes to
        // the kernel (copy_file_range) where tokio's would pass 8 KiB at a time through a thread
        // each, which made a 1 GiB Complete take 10 s.
        let sources = sources.to_vec();
        let result = tokio::task::spawn_blocking(move || {
            let mut size = 0;
            for source in &sources {
                size += std::io::copy(&mut std::fs::File::open(source)?, &mut file)?;
            }
            file.sync_all()?;
            io::Result::Ok(size)
        })
        .await
        .map_err(io::Error::other)
        .flatten();
        let size = result?;
        unfinished.keep();
        Ok(Written {
            path,
            size,
            // Multipart objects carry the multipart ETag, and their checksum comes from the
            // parts': neither is computed from these bytes.
            md5: [0; 16],
            checksum: None,
        })
    }
}

/// Why streaming bytes to disk failed: the disk, or the request body.
#[derive(Debug, thiserror::Error)]
pub enum WriteError<E> {
    #[error("disk: {0}")]
    Io(#[from] io::Error),
    #[error("request body: {0}")]
    Body(E),
}

async fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Write to a temporary name, fsync, rename over `path`, fsync the folder: all or nothing.
async fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    let dir = path.parent().expect("pointer files live in a folder");
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let (file, unfinished) = fresh_file(&tmp)?;
    let mut file = tokio::fs::File::from_std(file);
    file.write_all(&bytes).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&tmp, path).await?;
    unfinished.keep();
    tokio::fs::File::open(dir).await?.sync_all().await
}

/// A new data file in `dir`, opened for writing, and its guard ([`fresh_file`]).
fn fresh_data_file(dir: &Path) -> io::Result<(PathBuf, std::fs::File, RemoveOnDrop)> {
    let path = dir.join(format!("{}.data", uuid::Uuid::new_v4()));
    let (file, unfinished) = fresh_file(&path)?;
    Ok((path, file, unfinished))
}

/// The file `path`, created for writing, and a guard that removes it unless kept. Created here
/// and now, without an await: a file created by a task after its writer was dropped (`tokio::fs`
/// creates on another thread) would be on disk for good, named by nothing.
fn fresh_file(path: &Path) -> io::Result<(std::fs::File, RemoveOnDrop)> {
    let file = std::fs::File::create(path)?;
    Ok((file, RemoveOnDrop(Some(path.to_path_buf()))))
}

/// A file removed when this is dropped, unless kept.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer dropped before it ends (its client gone, the server shutting down) leaves no file,
    /// though its blocking work (creating, writing, copying, renaming) runs on after it.
    #[test]
    fn a_writer_dropped_midway_leaves_no_file() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let root = tempfile::tempdir().unwrap();
            let disk = Disk::open(root.path()).unwrap();
            disk.create_bucket("b").await.unwrap();
            let files_left = || std::fs::read_dir(disk.objects_dir("b")).unwrap().count();
            // Holds the one blocking thread, so that the writer's blocking work waits behind it
            // until the writer is gone; a task queued after that work ends after it.
            let hold_blocking_thread = || {
                let (release, held) = std::sync::mpsc::channel::<()>();
                tokio::task::spawn_blocking(move || held.recv());
                release
            };
            let blocking_work_done = || tokio::task::spawn_blocking(|| ());

            let release = hold_blocking_thread();
            let body = futures::stream::iter([Ok::<_, io::Error>(Bytes::from_static(b"abc"))])
                .chain(futures::stream::pending());
            let mut write = Box::pin(disk.write_object_data("b", body, None));
            assert!(futures::poll!(write.as_mut()).is_pending());
            drop(write);
            release.send(()).unwrap();
            blocking_work_done().await.unwrap();
            assert_eq!(files_left(), 0, "a body's writer");

            let part = root.path().join("part.data");
            std::fs::write(&part, [7u8; 1000]).unwrap();
            let release = hold_blocking_thread();
            let parts = [part.clone(), part];
            let mut assemble = Box::pin(disk.assemble_object("b", &parts));
            assert!(futures::poll!(assemble.as_mut()).is_pending());
            drop(assemble);
            release.send(()).unwrap();
            blocking_work_done().await.unwrap();
            assert_eq!(files_left(), 0, "a Complete's copy");

            let release = hold_blocking_thread();
            let pointer = disk.objects_dir("b").join("pointer.json");
            let mut commit = Box::pin(write_json_atomically(&pointer, &"value"));
            assert!(futures::poll!(commit.as_mut()).is_pending());
            drop(commit);
            release.send(()).unwrap();
            blocking_work_done().await.unwrap();
            assert_eq!(files_left(), 0, "a pointer's temporary file");
        });
    }

    /// Pointers written before checksums existed still load, with none.
    #[test]
    fn metadata_without_checksums_loads() {
        let object: ObjectMeta = serde_json::from_str(
            r#"{"key":"k","size":1,"etag":"e","content_type":null,"metadata":{},
                "modified_unix":0,"data":"d.data"}"#,
        )
        .unwrap();
        let upload: UploadMeta = serde_json::from_str(
            r#"{"key":"k","content_type":null,"metadata":{},"initiated_unix":0}"#,
        )
        .unwrap();
        let part: PartMeta = serde_json::from_str(&format!(
            r#"{{"size":1,"etag":"e","md5":{:?},"modified_unix":0,"data":"d.data"}}"#,
            [0u8; 16]
        ))
        .unwrap();
        assert_eq!(object.checksum, None);
        assert_eq!(upload.checksum, None);
        assert_eq!(part.checksum, None);
    }
}
