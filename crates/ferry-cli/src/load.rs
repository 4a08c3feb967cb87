//! `ferry load -p N --files M --size S`: the seeds' producer fleet. N producers, each a client
//! with its own engine, upload M generated files of S bytes at once against one companion; the
//! report gives throughput, the p50/p99 latency of every route, and how many answers were 503
//! (admission control) against every other failure.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::driver::{Driver, Report, RouteLog, RouteRecord, Source, Transfer};
use crate::{Client, parse_size};

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Producers running at once, each with its own scheduler.
    #[arg(short = 'p', long, default_value_t = 8)]
    producers: usize,

    /// Files each producer uploads.
    #[arg(long, default_value_t = 10)]
    files: usize,

    /// Size of each file: bytes, or with a unit (64KiB, 5MiB, 1GiB, 10MB).
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    size: u64,

    #[command(flatten)]
    client: Client,

    /// The report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// The percentile `share` (0..=1) of sorted latencies, nearest-rank.
fn percentile(sorted: &[Duration], share: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((share * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub async fn run(args: LoadArgs) -> ExitCode {
    let log = Arc::new(RouteLog::default());
    let mut drivers = Vec::new();
    for producer in 0..args.producers.max(1) {
        let mut connection = args.client.connection();
        connection.log = Some(log.clone());
        let mut config = args.client.engine_config();
        // Producers of one run retry out of step, as separate clients would.
        config.seed ^= (producer as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut driver = Driver::new(config, connection, None);
        for file in 0..args.files {
            driver.add(Transfer {
                name: format!("load-{producer}-{file}.bin"),
                size: args.size,
                source: Source::Generated {
                    seed: (producer * args.files + file) as u64,
                },
                content_type: "application/octet-stream".into(),
                modified: None,
                metadata: Default::default(),
            });
        }
        drivers.push(driver);
    }
    let started = std::time::Instant::now();
    let outcomes = futures::future::join_all(drivers.iter_mut().map(|driver| async move {
        let (mut stored, mut failed) = (0u64, Vec::new());
        driver
            .run(
                |_, told| match told {
                    Report::Done { .. } => stored += 1,
                    Report::Failed { error, .. } => failed.push(error.code().to_owned()),
                    _ => {}
                },
                Duration::from_secs(1),
                |_| {},
            )
            .await;
        (stored, failed)
    }))
    .await;
    let elapsed = started.elapsed();
    let stored: u64 = outcomes.iter().map(|(stored, _)| stored).sum();
    let failures: Vec<&String> = outcomes.iter().flat_map(|(_, failed)| failed).collect();
    let routes = log.routes.lock().expect("never poisoned").clone();
    let report = Summary::new(&args, stored, failures.len(), elapsed, &routes);
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
        for code in failures.iter().take(5) {
            eprintln!("ferry load: a file failed: {code}");
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct RouteSummary {
    route: &'static str,
    requests: u64,
    p50: Duration,
    p99: Duration,
    busy: u64,
    /// Failed answers other than 503, and requests with no answer.
    errors: u64,
}

struct Summary {
    files: u64,
    failed: usize,
    bytes: u64,
    elapsed: Duration,
    routes: Vec<RouteSummary>,
}

impl Summary {
    fn new(
        args: &LoadArgs,
        stored: u64,
        failed: usize,
        elapsed: Duration,
        routes: &std::collections::BTreeMap<&'static str, RouteRecord>,
    ) -> Self {
        let routes = routes
            .iter()
            .map(|(&route, record)| {
                let mut sorted = record.latencies.clone();
                sorted.sort();
                let count = |keep: &dyn Fn(u16) -> bool| -> u64 {
                    record
                        .statuses
                        .iter()
                        .filter(|(status, _)| keep(**status))
                        .map(|(_, count)| count)
                        .sum()
                };
                RouteSummary {
                    route,
                    requests: sorted.len() as u64,
                    p50: percentile(&sorted, 0.5),
                    p99: percentile(&sorted, 0.99),
                    busy: count(&|status| status == 503),
                    errors: count(&|status| status != 503 && !(200..300).contains(&status)),
                }
            })
            .collect();
        Self {
            files: stored,
            failed,
            bytes: stored * args.size,
            elapsed,
            routes,
        }
    }

    fn rate(&self, amount: f64) -> f64 {
        amount / self.elapsed.as_secs_f64().max(0.001)
    }

    fn text(&self) -> String {
        let mut out = format!(
            "{} files stored, {} failed, in {:.2} s: {:.1} files/s, {:.2} MB/s\n",
            self.files,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.rate(self.files as f64),
            self.rate(self.bytes as f64) / 1e6
        );
        out.push_str("route      requests   p50 ms   p99 ms   503s   other errors\n");
        for route in &self.routes {
            out.push_str(&format!(
                "{:<10} {:>8} {:>8.1} {:>8.1} {:>6} {:>14}\n",
                route.route,
                route.requests,
                route.p50.as_secs_f64() * 1e3,
                route.p99.as_secs_f64() * 1e3,
                route.busy,
                route.errors
            ));
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let routes: serde_json::Map<String, serde_json::Value> = self
            .routes
            .iter()
            .map(|route| {
                (
                    route.route.to_owned(),
                    json!({
                        "requests": route.requests,
                        "p50Ms": route.p50.as_secs_f64() * 1e3,
                        "p99Ms": route.p99.as_secs_f64() * 1e3,
                        "busy": route.busy,
                        "errors": route.errors,
                    }),
                )
            })
            .collect();
        json!({
            "files": self.files,
            "failed": self.failed,
            "bytes": self.bytes,
            "seconds": self.elapsed.as_secs_f64(),
            "filesPerSecond": self.rate(self.files as f64),
            "megabytesPerSecond": self.rate(self.bytes as f64) / 1e6,
            "routes": routes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
