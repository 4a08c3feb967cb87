//! The janitor: aborts multipart uploads under the key prefix that are older than an age, so
//! parts of abandoned uploads do not stay on the store (and on the bill) forever.

use std::time::Duration;

use crate::store::{Store, StoreError};

/// What one sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sweep {
    pub seen: usize,
    pub aborted: usize,
}

/// Aborts every upload under `prefix` started more than `age` ago.
pub async fn sweep(store: &Store, prefix: &str, age: Duration) -> Result<Sweep, StoreError> {
    let cutoff = jiff::Timestamp::now()
        - jiff::SignedDuration::try_from(age).unwrap_or(jiff::SignedDuration::MAX);
    let uploads = store.list_multipart_uploads(prefix).await?;
    let mut sweep = Sweep {
        seen: uploads.len(),
        aborted: 0,
    };
    for upload in uploads
        .into_iter()
        .filter(|upload| upload.initiated < cutoff)
    {
        store
            .abort_multipart_upload(&upload.key, &upload.upload_id)
            .await?;
        tracing::info!(key = %upload.key, upload_id = %upload.upload_id, initiated = %upload.initiated, "janitor aborted a stale upload");
        sweep.aborted += 1;
    }
    Ok(sweep)
}
