//! Admission control under bursts of sign calls, in a test binary of its own: it measures the
//! process's resident memory, which tests running beside it in one process would add to.

mod common;

use common::MIB;
use ferry_core::protocol::ErrorBody;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_control_answers_busy_at_once_and_memory_stays_flat() {
    let companion = common::companion(
        &[
            &["--admission-concurrency", "1", "--admission-queue", "2"][..],
            &common::UNCHECKED[..],
        ]
        .concat(),
    )
    .await;
    // 10,000 parts of 5 MiB: each sign call presigns up to 1,000 URLs, enough work to overlap.
    let created = companion.created("load.bin", 10_000 * 5 * MIB).await;
    let parts: Vec<u32> = (1..=1000).collect();
    let burst = || async {
        let requests = (0..200).map(|_| companion.sign(&created, parts.clone()));
        let responses = futures::future::join_all(requests).await;
        let mut counts = (0, 0);
        for response in responses {
            match response.status().as_u16() {
                200 => counts.0 += 1,
                503 => {
                    assert_eq!(response.headers()["retry-after"], "1");
                    let body: ErrorBody = response.json().await.unwrap();
                    assert_eq!(body.code, "Busy");
                    counts.1 += 1;
                }
                other => panic!("only 200 and 503 are expected, got {other}"),
            }
        }
        counts
    };
    let (ok, busy) = burst().await;
    assert!(
        ok > 0 && busy > 0,
        "some served ({ok}), some refused at once ({busy})"
    );
    let rss = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .unwrap()
            .to_owned();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    let after_first = rss();
    for _ in 0..4 {
        burst().await;
    }
    let growth = rss().saturating_sub(after_first);
    assert!(
        growth < 32 * MIB as u64,
        "memory grew by {growth} bytes over four more bursts"
    );
    let metrics = companion.get_text(&companion.url("/metrics")).await;
    let refused: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("ferry_admissions_refused_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= busy as u64, "{metrics}");
}
