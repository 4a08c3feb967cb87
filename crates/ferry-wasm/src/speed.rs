//! Speed and time left, from samples of a growing byte count: what every upload UI shows, so
//! computed once here rather than in each page.

use std::collections::VecDeque;

/// How far back samples count: long enough to smooth a part's bursts, short enough to follow a
/// change of link.
const WINDOW_MS: f64 = 5_000.0;

/// Bytes per second over the last few seconds.
#[derive(Debug, Clone, Default)]
pub struct Speedometer {
    /// (time in ms, bytes loaded), oldest first.
    samples: VecDeque<(f64, u64)>,
}

impl Speedometer {
    /// Notes that `loaded` bytes were sent by `at_ms`. A count that went back (a failed part)
    /// starts the measure afresh.
    pub fn record(&mut self, at_ms: f64, loaded: u64) {
        if self.samples.back().is_some_and(|&(_, last)| loaded < last) {
            self.samples.clear();
        }
        self.samples.push_back((at_ms, loaded));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(at, _)| at_ms - at >= WINDOW_MS)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second from the oldest sample kept until `now_ms`: a stalled upload slows
    /// down as time passes without bytes. 0 until some time passed.
    pub fn bytes_per_sec(&self, now_ms: f64) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(_, b1))) if now_ms > t0 => {
                (b1 - b0) as f64 * 1000.0 / (now_ms - t0)
            }
            _ => 0.0,
        }
    }

    /// Seconds until `remaining` more bytes are sent at the speed at `now_ms`; `None` while no
    /// speed is known.
    pub fn eta_secs(&self, now_ms: f64, remaining: u64) -> Option<f64> {
        let speed = self.bytes_per_sec(now_ms);
        (speed > 0.0).then(|| remaining as f64 / speed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_is_measured_over_the_last_seconds() {
        let mut meter = Speedometer::default();
        assert_eq!(meter.bytes_per_sec(0.0), 0.0);
        assert_eq!(meter.eta_secs(0.0, 100), None);
        meter.record(0.0, 0);
        meter.record(1_000.0, 1_000);
        assert_eq!(meter.bytes_per_sec(1_000.0), 1_000.0);
        assert_eq!(meter.eta_secs(1_000.0, 5_000), Some(5.0));
        // Ten seconds at 10 kB/s: the first, slower second drops out of the window.
        for second in 2..=11 {
            meter.record(second as f64 * 1_000.0, 1_000 + (second - 1) * 10_000);
        }
        assert_eq!(meter.bytes_per_sec(11_000.0), 10_000.0);
        // No bytes for five more seconds: the speed halves.
        assert_eq!(meter.bytes_per_sec(16_000.0), 5_000.0);
    }

    #[test]
    fn a_count_that_goes_back_starts_afresh() {
        let mut meter = Speedometer::default();
        meter.record(0.0, 0);
        meter.record(1_000.0, 5_000);
        meter.record(2_000.0, 1_000);
        assert_eq!(meter.bytes_per_sec(2_000.0), 0.0, "one sample is no speed");
        meter.record(3_000.0, 3_000);
        assert_eq!(meter.bytes_per_sec(3_000.0), 2_000.0);
    }
}
