//! Should this failure be retried, and when? Pure functions of the failure and the policy.

use std::time::Duration;

use crate::text::find;
use crate::time::{Rng, duration_from_secs};

/// How a request ended badly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    /// The HTTP status, or `None` when no answer came (network error, CORS, abort, timeout).
    pub status: Option<u16>,
    /// S3's or the companion's error code, when the answer had one.
    pub code: String,
    pub message: String,
    /// The answer's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A request that got no answer.
    pub fn network(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

impl Failure {
    /// Whether the store refused bytes that do not match their checksum: S3's `BadDigest`, or
    /// Garage's `InvalidDigest` (Ferry never sends a malformed value, so it means the same).
    pub fn is_digest_mismatch(&self) -> bool {
        self.status == Some(400) && matches!(self.code.as_str(), "BadDigest" | "InvalidDigest")
    }

    /// Whether this is an outage rather than a refusal: no answer at all, or a gateway saying
    /// what is behind it does not answer (502, 504, or the companion's `StoreUnavailable`).
    /// Outages are waited out and spend no attempt; only answers with a reason fail a file.
    pub fn is_outage(&self) -> bool {
        matches!(self.status, None | Some(502 | 504)) || self.code == "StoreUnavailable"
    }

    /// Whether the store asks for less load: 503, 429, or S3's `SlowDown` under any status.
    pub fn asks_for_less_load(&self) -> bool {
        matches!(self.status, Some(503 | 429)) || self.code == "SlowDown"
    }

    /// Whether this failure says nothing about the next attempt: a dropped connection, or a
    /// store's internal error (S3: "please try again"). A part's first such failure is sent
    /// again at once. Answers that ask for less load (503, 429, `SlowDown`) and gateways that
    /// cannot reach the store (502, 504) always wait.
    pub fn is_one_off(&self) -> bool {
        match self.status {
            None => true,
            Some(500) => self.code != "SlowDown",
            Some(_) => false,
        }
    }
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Try again after a backoff (spends an attempt).
    Retry,
    /// The presigned URL expired: sign again and retry at once (spends nothing).
    Resign,
    /// Give up: the request is wrong, retrying cannot help.
    Fatal,
}

/// Network errors, timeouts, 408, 429, 5xx, S3 `SlowDown` and `BadDigest` (the bytes changed on
/// the way; the file still has the right ones) retry; an expired signature is signed again;
/// every other 4xx is final.
pub fn classify(failure: &Failure) -> Class {
    let message = failure.message.to_ascii_lowercase();
    match failure.status {
        None => Class::Retry,
        Some(408 | 429 | 500..=599) => Class::Retry,
        Some(_) if failure.code == "SlowDown" || failure.is_digest_mismatch() => Class::Retry,
        Some(403) if find(&message, "expired").is_some() => Class::Resign,
        // Garage's answer to a presigned URL past its lifetime: "Bad request: Date is too old".
        Some(400)
            if failure.code == "InvalidRequest" && find(&message, "date is too old").is_some() =>
        {
            Class::Resign
        }
        Some(_) => Class::Fatal,
    }
}

/// What one failure costs and what follows it: the single rule every failure path of the
/// engine goes by (part PUTs, companion calls, the config fetch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request's own fault, and attempts remain: spend one and retry after a backoff.
    Spend,
    /// An outage (no answer, or a gateway that gets none), or a companion too busy to answer
    /// now: wait it out, probing with capped backoff (or after `Retry-After`), spending nothing.
    WaitOut,
    /// The presigned URL expired: sign again and retry at once, spending nothing.
    Resign,
    /// Give up. `refused`: the answer says retrying can never help (a 4xx); otherwise the
    /// attempts ran out.
    Fail { refused: bool },
}

/// The code of the companion's 503 when its admission queue is full.
const BUSY: &str = "Busy";

/// The verdict on `failure` for a request that already spent `spent` retries under `policy`.
pub fn verdict(failure: &Failure, spent: u32, policy: &RetryPolicy) -> Verdict {
    match classify(failure) {
        Class::Fatal => Verdict::Fail { refused: true },
        Class::Resign => Verdict::Resign,
        // The companion's admission control is up and asks to come back after `Retry-After`:
        // a load spike must not fail files that go through a moment later.
        Class::Retry if failure.is_outage() || failure.code == BUSY => Verdict::WaitOut,
        Class::Retry if spent >= policy.retries => Verdict::Fail { refused: false },
        Class::Retry => Verdict::Spend,
    }
}

/// Retry settings, as DESIGN.md gives them: 3 retries, 1 s, 2 s, 4 s, with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Delay before the first retry; each next one doubles.
    pub base_delay: Duration,
    /// Longest delay, whatever the doubling says.
    pub max_delay: Duration,
    /// Each delay is scaled by a random factor in [1 − jitter, 1 + jitter].
    pub jitter: f64,
    /// A running part with no progress for this long is aborted and retried.
    pub stall_after: Duration,
    /// A URL expiring sooner than this is signed again before its part starts.
    pub resign_margin: Duration,
    /// Network failures of a file's direct PUTs, in a row, before its parts go through the
    /// companion instead.
    pub fallback_after: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            jitter: 0.2,
            stall_after: Duration::from_secs(30),
            resign_margin: Duration::from_secs(2),
            fallback_after: 2,
        }
    }
}

/// The shortest wait between two probes of an outage, whatever the retry delay: outages never
/// run out of attempts, so without a floor a zero delay would probe in a tight loop.
const MIN_OUTAGE_PROBE: Duration = Duration::from_secs(1);

impl RetryPolicy {
    /// The wait before probe number `probe` (1-based) of an outage: the retry backoff, but
    /// never under [`MIN_OUTAGE_PROBE`].
    pub fn probe_delay(
        &self,
        probe: u32,
        retry_after: Option<Duration>,
        rng: &mut Rng,
    ) -> Duration {
        self.delay(probe, retry_after, rng).max(MIN_OUTAGE_PROBE)
    }

    /// The wait before retry number `retry` (1-based), never shorter than `Retry-After` (itself
    /// capped at `max_delay`, so a server cannot park a part for a day).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut Rng) -> Duration {
        let doubled = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        let scale = 1.0 + self.jitter * (2.0 * rng.unit() - 1.0);
        let jittered = duration_from_secs(doubled.as_secs_f64() * scale);
        retry_after.map_or(jittered, |after| jittered.max(after.min(self.max_delay)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: Option<u16>, code: &str, message: &str) -> Failure {
        Failure {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    #[test]
    fn outages_are_no_answer_or_a_gateway_that_gets_none() {
        for (status, code, outage) in [
            (None, "", true),
            (Some(502), "StoreUnavailable", true),
            (Some(504), "Http504", true),
            (Some(502), "Http502", true),
            (Some(503), "ServiceUnavailable", false),
            (Some(500), "InternalError", false),
            (Some(403), "AccessDenied", false),
            (Some(429), "SlowDown", false),
        ] {
            assert_eq!(
                failure(status, code, "").is_outage(),
                outage,
                "{status:?} {code}"
            );
        }
    }

    #[test]
    fn one_off_failures_are_drops_and_internal_errors_never_requests_for_less_load() {
        for (status, code, one_off) in [
            (None, "", true),
            (Some(500), "InternalError", true),
            (Some(500), "SlowDown", false),
            (Some(503), "SlowDown", false),
            (Some(503), "ServiceUnavailable", false),
            (Some(429), "", false),
            (Some(502), "StoreUnavailable", false),
            (Some(504), "Http504", false),
            (Some(400), "BadDigest", false),
        ] {
            assert_eq!(
                failure(status, code, "").is_one_off(),
                one_off,
                "{status:?} {code}"
            );
        }
    }

    #[test]
    fn failures_are_classified() {
        for (status, code, message, expected) in [
            (None, "", "connection reset", Class::Retry),
            (Some(408), "RequestTimeout", "", Class::Retry),
            (Some(429), "", "", Class::Retry),
            (Some(500), "InternalError", "", Class::Retry),
            (Some(503), "SlowDown", "", Class::Retry),
            (Some(400), "SlowDown", "", Class::Retry),
            (
                Some(403),
                "AccessDenied",
                "Request has expired",
                Class::Resign,
            ),
            (Some(403), "AccessDenied", "Access Denied", Class::Fatal),
            (
                Some(400),
                "InvalidRequest",
                "Bad request: Date is too old",
                Class::Resign,
            ),
            (
                Some(400),
                "InvalidRequest",
                "Bad request: Missing X-Amz-Date field",
                Class::Fatal,
            ),
            (Some(403), "SignatureDoesNotMatch", "", Class::Fatal),
            (Some(400), "EntityTooSmall", "", Class::Fatal),
            (Some(404), "NoSuchUpload", "", Class::Fatal),
        ] {
            assert_eq!(
                classify(&failure(status, code, message)),
                expected,
                "{status:?} {code} {message}"
            );
        }
    }

    #[test]
    fn every_failure_gets_one_verdict() {
        let policy = RetryPolicy::default();
        let expired = "Request has expired";
        for (status, code, message, spent, expected) in [
            (None, "", "connection reset", 0, Verdict::WaitOut),
            (None, "", "connection reset", 99, Verdict::WaitOut),
            (Some(502), "StoreUnavailable", "", 99, Verdict::WaitOut),
            (Some(504), "Http504", "", 3, Verdict::WaitOut),
            (Some(503), "Busy", "", 99, Verdict::WaitOut),
            (Some(503), "ServiceUnavailable", "", 0, Verdict::Spend),
            (Some(503), "ServiceUnavailable", "", 2, Verdict::Spend),
            (
                Some(503),
                "ServiceUnavailable",
                "",
                3,
                Verdict::Fail { refused: false },
            ),
            (Some(429), "", "", 1, Verdict::Spend),
            (Some(408), "TooSlow", "", 1, Verdict::Spend),
            (
                Some(500),
                "InternalError",
                "",
                3,
                Verdict::Fail { refused: false },
            ),
            (Some(403), "AccessDenied", expired, 0, Verdict::Resign),
            (Some(403), "AccessDenied", expired, 99, Verdict::Resign),
            (
                Some(400),
                "InvalidRequest",
                "Bad request: Date is too old",
                0,
                Verdict::Resign,
            ),
            (
                Some(403),
                "AccessDenied",
                "",
                0,
                Verdict::Fail { refused: true },
            ),
            (
                Some(400),
                "SizeMismatch",
                "",
                0,
                Verdict::Fail { refused: true },
            ),
            (
                Some(404),
                "NoSuchUpload",
                "",
                0,
                Verdict::Fail { refused: true },
            ),
        ] {
            assert_eq!(
                verdict(&failure(status, code, message), spent, &policy),
                expected,
                "{status:?} {code} {message} after {spent} retries"
            );
        }
    }

    #[test]
    fn delays_double_with_jitter_and_honour_retry_after() {
        let policy = RetryPolicy::default();
        let mut rng = Rng::new(1);
        for (retry, base) in [(1, 1000.0), (2, 2000.0), (3, 4000.0), (10, 30_000.0)] {
            for _ in 0..100 {
                let ms = policy.delay(retry, None, &mut rng).as_millis() as f64;
                assert!(
                    (base * 0.8..=base * 1.2).contains(&ms),
                    "retry {retry}: {ms} ms"
                );
            }
        }
        let after = Some(Duration::from_secs(5));
        assert!(policy.delay(1, after, &mut rng) >= Duration::from_secs(5));
        let a_day = Some(Duration::from_secs(86_400));
        assert!(
            policy.delay(1, a_day, &mut rng) <= policy.max_delay,
            "Retry-After is capped"
        );
        let no_jitter = RetryPolicy {
            jitter: 0.0,
            ..policy
        };
        assert_eq!(no_jitter.delay(2, None, &mut rng), Duration::from_secs(2));
    }
}
