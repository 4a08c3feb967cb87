//! Engine time: milliseconds since the Unix epoch, given by the driver (`Date.now()` in the
//! browser, virtual time in the simulator). Wall-clock time, because presigned URLs expire at a
//! wall-clock moment; the engine only ever compares and adds.

use std::ops::Add;
use std::time::Duration;

/// A moment, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    pub const fn from_unix_millis(ms: u64) -> Self {
        Self(ms)
    }

    pub const fn from_unix_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    /// Time since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// `secs` to the nearest millisecond, the engine's resolution. A negative, NaN or huge `secs`
/// saturates, where `Duration::from_secs_f64` panics (and its checks are a kilobyte of wasm).
pub fn duration_from_secs(secs: f64) -> Duration {
    Duration::from_millis((secs * 1000.0 + 0.5) as u64)
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_add(duration.as_millis() as u64))
    }
}

/// A small seeded generator (SplitMix64) for jitter: the engine takes randomness as a seed from
/// its driver and never asks the OS.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_become_the_nearest_millisecond_and_saturate() {
        assert_eq!(duration_from_secs(0.29), Duration::from_millis(290));
        assert_eq!(duration_from_secs(1.0004), Duration::from_millis(1000));
        assert_eq!(duration_from_secs(1.0006), Duration::from_millis(1001));
        assert_eq!(duration_from_secs(-3.0), Duration::ZERO);
        assert_eq!(duration_from_secs(f64::NAN), Duration::ZERO);
        assert_eq!(
            duration_from_secs(f64::INFINITY),
            Duration::from_millis(u64::MAX)
        );
    }
}
