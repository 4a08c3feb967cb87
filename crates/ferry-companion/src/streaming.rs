//! The minimum rate of a streamed request body: a client that sends a few bytes now and then
//! would otherwise hold a connection, an admission slot and a store request for as long as it
//! likes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

/// Why a streamed body was cut.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body arrived slower than the companion's minimum rate")]
pub struct TooSlow;

/// At least `bytes_per_sec` averaged over every `window`.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

/// Tells, after the stream failed, whether the rate check was what cut it.
#[derive(Debug, Clone, Default)]
pub struct SlowFlag(Arc<AtomicBool>);

impl SlowFlag {
    pub fn tripped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl MinRate {
    /// `body` as a stream that fails with [`TooSlow`] as soon as a window ends with fewer than
    /// `bytes_per_sec x window` bytes received in it.
    pub fn guard<E: Into<BoxError>>(
        self,
        body: impl Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    ) -> (
        impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
        SlowFlag,
    ) {
        let flag = SlowFlag::default();
        let needed = self
            .bytes_per_sec
            .saturating_mul(self.window.as_millis() as u64)
            / 1000;
        let state = (body, Instant::now() + self.window, 0u64, flag.clone());
        let stream = futures::stream::unfold(Some(state), move |state| async move {
            let (mut body, mut window_end, mut received, flag) = state?;
            loop {
                match tokio::time::timeout_at(window_end, body.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        received += chunk.len() as u64;
                        return Some((Ok(chunk), Some((body, window_end, received, flag))));
                    }
                    Ok(Some(Err(err))) => return Some((Err(err.into()), None)),
                    Ok(None) => return None,
                    Err(_window_over) if received >= needed => {
                        window_end += self.window;
                        received = 0;
                    }
                    Err(_window_over) => {
                        flag.0.store(true, Ordering::Relaxed);
                        return Some((Err(TooSlow.into()), None));
                    }
                }
            }
        });
        (stream, flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate() -> MinRate {
        MinRate {
            bytes_per_sec: 100,
            window: Duration::from_secs(1),
        }
    }

    /// Chunks of `size` bytes, one every `every`, `count` of them.
    fn trickle(
        size: usize,
        every: Duration,
        count: usize,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin + 'static {
        Box::pin(futures::stream::iter(0..count).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok(Bytes::from(vec![0u8; size]))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_rate_passes_whole() {
        let (stream, flag) = rate().guard(trickle(60, Duration::from_millis(500), 10));
        let chunks: Vec<_> = stream.collect().await;
        assert_eq!(chunks.len(), 10);
        assert!(chunks.iter().all(Result::is_ok));
        assert!(!flag.tripped());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_at_the_end_of_its_first_slow_window() {
        // 10 bytes every 400 ms is 25 bytes a second, under 100.
        let started = Instant::now();
        let (stream, flag) = rate().guard(trickle(10, Duration::from_millis(400), 100));
        let chunks: Vec<_> = stream.collect().await;
        let last = chunks.last().unwrap();
        assert!(last.as_ref().unwrap_err().is::<TooSlow>());
        assert!(flag.tripped());
        assert_eq!(chunks.len(), 3, "two chunks, then the refusal");
        assert_eq!(started.elapsed(), Duration::from_secs(1), "virtual time");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_is_cut() {
        let (stream, flag) = rate().guard(Box::pin(
            futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 500]))])
                .chain(futures::stream::pending()),
        ));
        let chunks: Vec<_> = stream.collect().await;
        assert_eq!(chunks.len(), 2);
        assert!(flag.tripped());
    }
}
