//! Clients that never finish: headers sent a line at a time, idle keep-alive connections, bodies
//! that trickle in. The companion cuts each of them, and keeps answering everyone else while
//! hundreds are open. The attacks pace themselves with real time, as a real attacker does; every
//! wait for the companion is a wait for an event, bounded so a regression fails instead of hanging.

mod common;

use std::time::Duration;

use common::pattern;
use ferry_core::protocol::ErrorBody;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// This suite attacks the routes with raw requests, which carry no checksums.
async fn companion(args: &[&str]) -> common::RunningCompanion {
    common::companion(&[args, &common::UNCHECKED[..]].concat()).await
}

/// Longest any test here waits for the companion to act.
const BOUND: Duration = Duration::from_secs(30);

/// Sends `head` and then one header line every `every`, up to `lines` of them; returns whether
/// the companion closed the connection before the lines ran out.
async fn trickle_headers(addr: &str, every: Duration, lines: usize) -> bool {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let closed = async move {
        let mut buffer = [0u8; 1024];
        // The companion answers nothing to a request it never finished reading: the first
        // read ends only when it closes the connection.
        while read.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
    };
    let trickle = async move {
        write
            .write_all(b"GET /api/config HTTP/1.1\r\nHost: ferry\r\n")
            .await
            .unwrap();
        for line in 0..lines {
            tokio::time::sleep(every).await;
            if write
                .write_all(format!("X-Line-{line}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                // The companion reset the connection.
                return;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = closed => true,
        () = trickle => true,
        () = tokio::time::sleep(every * lines as u32) => false,
    }
}

#[tokio::test]
async fn headers_sent_a_line_at_a_time_are_cut_at_the_header_timeout() {
    let companion = companion(&["--header-timeout", "1"]).await;
    let addr = companion.base.trim_start_matches("http://").to_owned();
    let started = tokio::time::Instant::now();
    assert!(
        trickle_headers(&addr, Duration::from_millis(200), 100).await,
        "a client sending a header line every 200 ms was never cut"
    );
    assert!(started.elapsed() < BOUND);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let companion = companion(&["--header-timeout", "1"]).await;
    let addr = companion.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /api/config HTTP/1.1\r\nHost: ferry\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // Read the answer, then keep reading: the connection stays open for another request until
    // the companion closes it.
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle keep-alive connection stayed open");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "the request itself was answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_slow_connections_do_not_stop_the_others() {
    ferry_companion::server::raise_open_file_limit();
    let companion = companion(&["--header-timeout", "10"]).await;
    let addr = companion.base.trim_start_matches("http://").to_owned();
    // 500 clients each send a header line every second for up to 12 s: held open for the 10 s
    // the header timeout allows them.
    let slow: Vec<_> = (0..500)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move { trickle_headers(&addr, Duration::from_secs(1), 12).await })
        })
        .collect();
    // Meanwhile 200 ordinary requests, 20 at a time, every one answered.
    let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    let answered = futures::future::join_all((0..200).map(|request| {
        let http = http.clone();
        let companion = &companion;
        async move {
            let response = if request % 2 == 0 {
                http.get(companion.url("/api/config")).send().await
            } else {
                http.post(companion.url("/api/uploads"))
                    .json(&serde_json::json!({"name": "a", "size": 10, "type": ""}))
                    .send()
                    .await
            };
            response.map(|response| response.status().as_u16())
        }
    }))
    .await;
    let ok = answered
        .iter()
        .filter(|answer| matches!(answer, Ok(200)))
        .count();
    assert_eq!(ok, 200, "every ordinary request is answered: {answered:?}");
    let cut = futures::future::join_all(slow).await;
    assert!(
        cut.iter().all(|cut| matches!(cut, Ok(true))),
        "every slow connection was cut by the header timeout"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_one_to_close() {
    let companion = companion(&["--max-connections", "2", "--header-timeout", "60"]).await;
    let addr = companion.base.trim_start_matches("http://");
    let first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    let waiting = tokio::spawn({
        let url = companion.url("/api/config");
        async move { reqwest::get(url).await.map(|response| response.status()) }
    });
    // While both allowed connections are held, the third is not served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a third connection was served");
    drop(first);
    let status = tokio::time::timeout(BOUND, waiting).await;
    assert_eq!(status.unwrap().unwrap().unwrap(), 200);
    drop(second);
}

#[tokio::test]
async fn a_trickling_body_on_the_fallback_gets_408_and_frees_its_slot() {
    let companion = companion(&[
        "--min-body-rate",
        "10000",
        "--body-rate-window",
        "1",
        "--admission-concurrency",
        "1",
        "--admission-queue",
        "0",
    ])
    .await;
    let size = 100_000;
    let created = companion.created("slow.bin", size).await;
    // 100 bytes every 100 ms: 1 KB/s, a tenth of the minimum, for at most 100 s.
    let trickle = futures::stream::unfold(0, move |sent| async move {
        (sent < size).then_some(())?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(vec![1u8; 100]), sent + 100))
    });
    let response = tokio::time::timeout(
        BOUND,
        companion
            .http
            .put(companion.url("/api/objects"))
            .query(&[("token", &created.token)])
            .header("content-length", size)
            .body(reqwest::Body::wrap_stream(trickle))
            .send(),
    )
    .await
    .expect("the trickle was cut");
    let response = response.unwrap();
    assert_eq!(response.status(), 408);
    let error: ErrorBody = response.json().await.unwrap();
    assert_eq!(error.code, "TooSlow", "{}", error.message);

    // The one admission slot is free again: a body at full speed goes through.
    let bytes = pattern(size, 3);
    let fast = companion
        .http
        .put(companion.url("/api/objects"))
        .query(&[("token", &created.token)])
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(fast.status(), 200, "{}", fast.text().await.unwrap());
}
