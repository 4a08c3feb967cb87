//! A circuit breaker per host: after repeated network failures it stops sending there for a
//! cool-down, then lets one probe through (half-open); a success closes it again.

use std::time::Duration;

use crate::time::Instant;

/// Network failures in a row that open the circuit.
const THRESHOLD: u32 = 3;
const FIRST_COOL_DOWN: Duration = Duration::from_secs(2);
const MAX_COOL_DOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cool_down: Duration },
    HalfOpen { probing: bool, cool_down: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker(State);

impl Default for Breaker {
    fn default() -> Self {
        Self(State::Closed { failures: 0 })
    }
}

impl Breaker {
    /// Whether a request may start now; in half-open, only the one probe may.
    pub fn allows(&self, now: Instant) -> bool {
        match self.0 {
            State::Closed { .. } => true,
            State::Open { until, .. } => now >= until,
            State::HalfOpen { probing, .. } => !probing,
        }
    }

    /// A request starts (call only when [`Breaker::allows`]).
    pub fn on_start(&mut self, now: Instant) {
        match self.0 {
            State::Open { until, cool_down } if now >= until => {
                self.0 = State::HalfOpen {
                    probing: true,
                    cool_down,
                };
            }
            State::HalfOpen { cool_down, .. } => {
                self.0 = State::HalfOpen {
                    probing: true,
                    cool_down,
                }
            }
            _ => {}
        }
    }

    /// The host answered (with any status): it is reachable.
    pub fn on_answer(&mut self) {
        self.0 = State::Closed { failures: 0 };
    }

    /// A request was aborted before it could tell anything: a probe may go again.
    pub fn on_abandon(&mut self) {
        if let State::HalfOpen { cool_down, .. } = self.0 {
            self.0 = State::HalfOpen {
                probing: false,
                cool_down,
            };
        }
    }

    /// A request got no answer.
    pub fn on_network_failure(&mut self, now: Instant) {
        self.0 = match self.0 {
            State::Closed { failures } if failures + 1 >= THRESHOLD => State::Open {
                until: now + FIRST_COOL_DOWN,
                cool_down: FIRST_COOL_DOWN,
            },
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            State::HalfOpen { cool_down, .. } => {
                let cool_down = (cool_down * 2).min(MAX_COOL_DOWN);
                State::Open {
                    until: now + cool_down,
                    cool_down,
                }
            }
            open @ State::Open { .. } => open,
        };
    }

    /// Records how a request failed: no answer counts against the host (unless the browser was
    /// offline, which says nothing about it); any answer shows it is reachable.
    pub fn on_outcome(&mut self, failure: &crate::retry::Failure, online: bool, now: Instant) {
        match failure.status {
            None if online => self.on_network_failure(now),
            None => {}
            Some(_) => self.on_answer(),
        }
    }

    /// When an open circuit lets its probe through.
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.0 {
            State::Open { until, .. } => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_then_probes_half_open() {
        let t = |s: u64| Instant::from_unix_secs(s);
        let mut breaker = Breaker::default();
        for _ in 0..THRESHOLD - 1 {
            breaker.on_network_failure(t(0));
            assert!(breaker.allows(t(0)));
        }
        breaker.on_network_failure(t(0));
        assert!(!breaker.allows(t(1)), "open: nothing goes");
        assert_eq!(breaker.reopens_at(), Some(t(2)));
        assert!(breaker.allows(t(2)));
        breaker.on_start(t(2));
        assert!(!breaker.allows(t(2)), "half-open: one probe at a time");
        breaker.on_network_failure(t(3));
        assert_eq!(
            breaker.reopens_at(),
            Some(t(7)),
            "a failed probe doubles the cool-down"
        );
        breaker.on_start(t(7));
        breaker.on_answer();
        assert!(
            breaker.allows(t(7)) && breaker.reopens_at().is_none(),
            "a probe's answer closes it"
        );
    }
}
