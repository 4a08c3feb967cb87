//! Admission control for the routes that cost the store or the CPU: a bounded number run at once
//! and a bounded number wait (the seeds' leaky bucket). When both are full the answer is 503 with
//! `Retry-After` at once, instead of a queue that grows without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

#[derive(Debug)]
pub struct Admission {
    running: Semaphore,
    /// Requests admitted: running or waiting for a permit.
    admitted: AtomicUsize,
    /// Most requests admitted at once.
    capacity: usize,
    metrics: Arc<Metrics>,
}

impl Admission {
    pub fn new(concurrency: usize, queue: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            running: Semaphore::new(concurrency.max(1)),
            admitted: AtomicUsize::new(0),
            capacity: concurrency.max(1) + queue,
            metrics,
        }
    }
}

/// Releases the admission slot however the request ends (including when its client goes away).
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn admit(
    State(admission): State<Arc<Admission>>,
    request: Request,
    next: Next,
) -> Response {
    let before = admission.admitted.fetch_add(1, Ordering::AcqRel);
    let _admitted = Admitted(&admission.admitted);
    if before >= admission.capacity {
        admission.metrics.admission_refused();
        return crate::api::ApiError::Busy.into_response();
    }
    let _permit = admission
        .running
        .acquire()
        .await
        .expect("the semaphore is never closed");
    next.run(request).await
}
