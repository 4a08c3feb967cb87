//! Prometheus metrics, kept by hand: a few counters and a latency histogram per route.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, status) → requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latencies: Mutex<BTreeMap<String, Histogram>>,
    signatures: AtomicU64,
    admissions_refused: AtomicU64,
    uploads_created: AtomicU64,
    uploads_completed: AtomicU64,
    uploads_aborted: AtomicU64,
    bytes_completed: AtomicU64,
}

impl Metrics {
    pub fn signed(&self, count: usize) {
        self.signatures.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn admission_refused(&self) {
        self.admissions_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn created(&self) {
        self.uploads_created.fetch_add(1, Ordering::Relaxed);
    }

    pub fn completed(&self, bytes: u64) {
        self.uploads_completed.fetch_add(1, Ordering::Relaxed);
        self.bytes_completed.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn aborted(&self) {
        self.uploads_aborted.fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, route: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("not poisoned")
            .entry((route.to_owned(), status))
            .or_default() += 1;
        let mut latencies = self.latencies.lock().expect("not poisoned");
        let histogram = latencies.entry(route.to_owned()).or_default();
        let secs = elapsed.as_secs_f64();
        for (count, bound) in histogram.counts.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *count += 1;
            }
        }
        histogram.sum += secs;
        histogram.count += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "ferry_signatures_total",
            "Part URLs signed.",
            &self.signatures,
        );
        counter(
            &mut out,
            "ferry_admissions_refused_total",
            "Requests refused with 503 by admission control.",
            &self.admissions_refused,
        );
        counter(
            &mut out,
            "ferry_uploads_created_total",
            "Uploads created.",
            &self.uploads_created,
        );
        counter(
            &mut out,
            "ferry_uploads_completed_total",
            "Multipart uploads completed.",
            &self.uploads_completed,
        );
        counter(
            &mut out,
            "ferry_uploads_aborted_total",
            "Multipart uploads aborted.",
            &self.uploads_aborted,
        );
        counter(
            &mut out,
            "ferry_bytes_completed_total",
            "Bytes of completed multipart uploads.",
            &self.bytes_completed,
        );
        let _ = writeln!(
            out,
            "# HELP ferry_http_requests_total HTTP requests by route and status.\n# TYPE ferry_http_requests_total counter"
        );
        for ((route, status), count) in self.requests.lock().expect("not poisoned").iter() {
            let _ = writeln!(
                out,
                "ferry_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP ferry_http_request_duration_seconds Request latency by route.\n# TYPE ferry_http_request_duration_seconds histogram"
        );
        for (route, histogram) in self.latencies.lock().expect("not poisoned").iter() {
            for (count, bound) in histogram.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "ferry_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "ferry_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "ferry_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "ferry_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                histogram.count
            );
        }
        out
    }
}

/// Counts every request by its route pattern (not its path, so ids do not explode the labels).
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(&route, response.status().as_u16(), started.elapsed());
    response
}
