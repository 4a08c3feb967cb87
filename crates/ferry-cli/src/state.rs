//! The resume state file: one record per unfinished upload, by fingerprint, so a run stopped by
//! Ctrl-C or a crash continues where it was. It is written after each create and each stored
//! part: on resume, a part is kept when the store lists it and the record saw it stored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferry_core::{Instant, Snapshot};
use serde::{Deserialize, Serialize};

#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    records: BTreeMap<String, Snapshot>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    version: u32,
    uploads: BTreeMap<String, Snapshot>,
}

const VERSION: u32 = 1;

impl StateFile {
    /// The state at `path`. A file that cannot be read or parsed starts empty, with a warning:
    /// a broken record must never block an upload.
    pub fn open(path: PathBuf) -> Self {
        let records = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(stored) if stored.version == VERSION => stored.uploads,
                Ok(_) | Err(_) => {
                    eprintln!(
                        "ferry: {} is not a state file this version reads; starting without it",
                        path.display()
                    );
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        Self { path, records }
    }

    /// The record of `key`, while its token lives.
    pub fn snapshot(&self, key: &str, now: Instant) -> Option<Snapshot> {
        self.records
            .get(key)
            .filter(|snapshot| snapshot.expires_at * 1000 > now.unix_millis())
            .cloned()
    }

    pub fn save(&mut self, key: &str, snapshot: Snapshot) {
        self.records.insert(key.to_owned(), snapshot);
        self.write();
    }

    pub fn remove(&mut self, key: &str) {
        if self.records.remove(key).is_some() {
            self.write();
        }
    }

    /// Replaces the file whole (written beside it, then renamed), so a crash mid-write leaves
    /// the previous state, never half of one.
    fn write(&self) {
        let stored = Stored {
            version: VERSION,
            uploads: self.records.clone(),
        };
        let written = (|| {
            if let Some(folder) = self.path.parent() {
                std::fs::create_dir_all(folder)?;
            }
            let partial = self.path.with_extension("partial");
            std::fs::write(&partial, serde_json::to_vec(&stored)?)?;
            std::fs::rename(&partial, &self.path)
        })();
        if let Err(err) = written {
            eprintln!(
                "ferry: cannot write {}: {err} (this run cannot be resumed)",
                self.path.display()
            );
        }
    }
}
