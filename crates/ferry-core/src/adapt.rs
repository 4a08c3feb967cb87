//! Concurrency and part size that follow the measured link (seed 003).
//!
//! The slot rule stays the starting point; on top of it an offset follows goodput, the bytes
//! that reach the store each second (bytes of a PUT that fails are taken back):
//!
//! - **Grow while it pays.** While every slot is busy and parts wait, each epoch measures
//!   goodput; then one slot is added and the next epoch measures again. A rise of at least
//!   [`Adapt::min_gain`] keeps the slot and tries another; less gives it back and waits, longer
//!   after each probe that failed, before trying again. Never beyond [`Adapt::max_slots`], the
//!   browser's connections per host.
//! - **Shrink on errors and stalls.** Each answer that asks for less load (503, 429,
//!   `SlowDown`) and each part that stalls takes a slot away, down to one, and growth waits.
//! - **Part size for a new file** follows two measures of finished parts: the request overhead
//!   (time from a PUT's start to its first byte sent, preflight included) and the rate of one
//!   connection while bytes flow. A part is long enough for the overhead to cost at most 5% of
//!   its time, and no longer than Young's rule allows where connections drop (the square root
//!   of twice the bytes an overhead costs times the bytes sent between drops), so a drop loses
//!   little. Between S3's 5 MiB and [`Adapt::max_part_size`], at least two parts, and small
//!   enough for the last file to fill every slot alone.

use std::time::Duration;

#[cfg(test)]
use crate::plan::GIB;
use crate::plan::MIB;
use crate::time::Instant;

/// The adaptive policy's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adapt {
    /// Most part PUTs at once: a browser opens 6 connections per host on HTTP/1.1.
    pub max_slots: usize,
    /// How long goodput is measured at one level, after a change has settled for half as long.
    pub epoch: Duration,
    /// The rise of goodput that keeps an added slot.
    pub min_gain: f64,
    /// Parts of new files never grow beyond this.
    pub max_part_size: u64,
}

impl Default for Adapt {
    fn default() -> Self {
        Self {
            max_slots: 6,
            epoch: Duration::from_millis(500),
            min_gain: 0.05,
            max_part_size: 64 * MIB,
        }
    }
}

/// Longest wait before probing again after probes that did not pay.
const MAX_HOLD: Duration = Duration::from_secs(32);
/// The overhead may cost at most 1/20 of a part's time.
const OVERHEAD_SHARE: f64 = 20.0;
/// Weight of a new sample in the moving averages.
const SMOOTHING: f64 = 0.25;

/// What the policy has measured, and the offset it keeps over the slot rule.
#[derive(Debug, Clone)]
pub(crate) struct Adaptive {
    pub settings: Adapt,
    offset: i64,
    /// Since when the current level is measured (after the change settled).
    measuring_from: Option<Instant>,
    /// Which epoch that is: bytes a failed PUT counted in an earlier one are not taken back.
    epoch: u64,
    bytes: u64,
    /// A slot stood free while parts could have used it, this epoch.
    starved: bool,
    /// Goodput of the level below, while the level above is tried.
    probing_over: Option<f64>,
    hold: Duration,
    hold_until: Instant,
    /// Seconds from a PUT's start to its first byte sent.
    overhead: Option<f64>,
    /// Bytes a second of one connection while bytes flow.
    connection_rate: Option<f64>,
    bytes_sent: u64,
    drops: u64,
}

impl Adaptive {
    pub fn new(settings: Adapt) -> Self {
        Self {
            settings,
            offset: 0,
            measuring_from: None,
            epoch: 0,
            bytes: 0,
            starved: false,
            probing_over: None,
            hold: settings.epoch,
            hold_until: Instant::default(),
            overhead: None,
            connection_rate: None,
            bytes_sent: 0,
            drops: 0,
        }
    }

    /// Slots for a rule that allows `rule`: the offset on top, within 1 and the host's limit.
    pub fn slots(&self, rule: usize) -> usize {
        let max = self.settings.max_slots.max(1) as i64;
        (rule as i64 + self.offset).clamp(1, max) as usize
    }

    /// The per-file cap, raised as the slots grow (one file may then fill them) and never
    /// beyond them.
    pub fn per_file(&self, per_file: usize, rule: usize) -> usize {
        (per_file as i64 + self.offset.max(0)).clamp(1, self.slots(rule) as i64) as usize
    }

    /// The current epoch, which a PUT notes with the bytes it counted in it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Bytes sent; whether they counted for the epoch (they do once a change has settled).
    pub fn on_bytes(&mut self, bytes: u64, now: Instant) -> bool {
        self.bytes_sent += bytes;
        let counted = self.measuring_from.is_some_and(|from| now >= from);
        if counted {
            self.bytes += bytes;
        }
        counted
    }

    /// A PUT failed or stopped: the bytes it counted in this epoch did not reach the store.
    pub fn take_back(&mut self, (epoch, bytes): (u64, u64)) {
        if epoch == self.epoch {
            self.bytes = self.bytes.saturating_sub(bytes);
        }
    }

    /// Measures afresh from `now`, after a time that measured nothing (all paused).
    pub fn reset(&mut self, now: Instant) {
        self.probing_over = None;
        self.restart(now);
    }

    /// A part finished: `started` is when its PUT began, `first_byte` when progress first came.
    pub fn on_part_done(
        &mut self,
        size: u64,
        started: Instant,
        first_byte: Option<Instant>,
        now: Instant,
    ) {
        let Some(first_byte) = first_byte else {
            return;
        };
        let overhead = first_byte.saturating_since(started).as_secs_f64();
        let flowing = now.saturating_since(first_byte).as_secs_f64();
        average(&mut self.overhead, overhead);
        if flowing > 0.0 {
            average(&mut self.connection_rate, size as f64 / flowing);
        }
    }

    /// A PUT dropped on the way (no answer): counted against the bytes sent, for part sizes.
    pub fn on_drop(&mut self) {
        self.drops += 1;
    }

    /// The store asked for less load, or a part stalled: one slot less (a burst of refusals
    /// takes one each), never below one, and growth waits.
    pub fn on_overload(&mut self, rule: usize, now: Instant) {
        if self.slots(rule) > 1 {
            self.offset = self.slots(rule) as i64 - 1 - rule as i64;
        }
        self.probing_over = None;
        self.back_off(now);
        self.restart(now);
    }

    /// After the scheduler started what it could, with `running` PUTs and whether any part or
    /// file is still to start: an epoch with a free slot or nothing left to start measures the
    /// work, not the link, and decides nothing.
    pub fn note_busy(&mut self, rule: usize, running: usize, unstarted: bool, now: Instant) {
        let settled = self.measuring_from.is_some_and(|from| now >= from);
        if settled && (running < self.slots(rule) || !unstarted) {
            self.starved = true;
        }
    }

    /// Before the scheduler starts PUTs: at an epoch's end, keeps, adds or gives back a slot.
    pub fn decide(&mut self, rule: usize, now: Instant) {
        let epoch = self.settings.epoch;
        let Some(from) = self.measuring_from else {
            self.restart(now);
            return;
        };
        let elapsed = now.saturating_since(from);
        if now < from || elapsed < epoch {
            return;
        }
        let goodput = self.bytes as f64 / elapsed.as_secs_f64();
        let measured = !self.starved;
        self.restart(now);
        if !measured {
            self.probing_over = None;
            return;
        }
        match self.probing_over.take() {
            Some(below) if goodput >= below * (1.0 + self.settings.min_gain) => {
                self.hold = self.settings.epoch;
                self.grow(rule, goodput, now);
            }
            Some(_) => {
                self.offset = self.slots(rule) as i64 - 1 - rule as i64;
                self.back_off(now);
            }
            None if now >= self.hold_until => self.grow(rule, goodput, now),
            None => {}
        }
    }

    /// When measuring starts or the epoch ends, for the driver's timer: both fall on their
    /// moment however often the engine is polled, so runs are reproducible.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let from = self.measuring_from?;
        Some(if now < from {
            from
        } else {
            from + self.settings.epoch
        })
    }

    /// The part size for a new file of `size` bytes, once a part was measured; `last` when no
    /// file waits behind it to fill the slots.
    pub fn part_size(&self, size: u64, rule: usize, last: bool) -> Option<u64> {
        let overhead_bytes = self.overhead? * self.connection_rate?;
        let mut part = overhead_bytes * OVERHEAD_SHARE;
        if self.drops > 0 {
            let between_drops = self.bytes_sent as f64 / self.drops as f64;
            part = part.min((2.0 * overhead_bytes * between_drops).sqrt());
        }
        // At least two parts, so a file the plan makes multipart stays multipart; the last
        // file fills every slot alone.
        let spread_over = if last { self.slots(rule) } else { 2 };
        let spread = size.div_ceil(spread_over.max(2) as u64);
        // Whole MiB, but never so large that a multipart file would fit in one part.
        let part = (part as u64).div_ceil(MIB) * MIB;
        Some(part.min(self.settings.max_part_size).min(spread).max(1))
    }

    /// Whether part sizes are still a guess: nothing measured yet.
    pub fn unmeasured(&self) -> bool {
        self.overhead.is_none() || self.connection_rate.is_none()
    }

    fn grow(&mut self, rule: usize, goodput: f64, now: Instant) {
        if self.slots(rule) < self.settings.max_slots {
            self.offset = self.slots(rule) as i64 + 1 - rule as i64;
            self.probing_over = Some(goodput);
            self.restart(now);
        }
    }

    fn back_off(&mut self, now: Instant) {
        self.hold_until = now + self.hold;
        self.hold = (self.hold * 2).min(MAX_HOLD);
    }

    /// Measures from half an epoch after `now`, when a change has settled.
    fn restart(&mut self, now: Instant) {
        self.epoch += 1;
        self.measuring_from = Some(now + self.settings.epoch / 2);
        self.bytes = 0;
        self.starved = false;
    }
}

fn average(mean: &mut Option<f64>, sample: f64) {
    *mean = Some(match *mean {
        Some(mean) => mean + SMOOTHING * (sample - mean),
        None => sample,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::from_unix_millis(1_000_000);

    fn at(ms: u64) -> Instant {
        T0 + Duration::from_millis(ms)
    }

    /// One part of `size` that took `overhead` s to its first byte, then flowed at `rate`.
    fn measured(adaptive: &mut Adaptive, size: u64, overhead: f64, rate: f64) {
        let first = at((overhead * 1000.0) as u64);
        let done = first + Duration::from_secs_f64(size as f64 / rate);
        adaptive.on_part_done(size, T0, Some(first), done);
    }

    #[test]
    fn parts_outlast_their_overhead_and_shrink_where_connections_drop() {
        let mut adaptive = Adaptive::new(Adapt::default());
        assert_eq!(adaptive.part_size(GIB, 5, false), None, "nothing measured");
        // 0.4 s of overhead at 1 MB/s a connection: 0.4 MB costs 5% of an 8 MB part.
        measured(&mut adaptive, 5 * MIB, 0.4, 1e6);
        assert_eq!(adaptive.part_size(GIB, 5, false), Some(8 * MIB));
        // At 16 MB/s the same overhead wants 128 MB: held to the largest part.
        let mut fast = Adaptive::new(Adapt::default());
        measured(&mut fast, 5 * MIB, 0.4, 16e6);
        assert_eq!(fast.part_size(GIB, 5, false), Some(64 * MIB));
        // At least two parts; the last file spreads over every slot.
        assert_eq!(fast.part_size(64 * MIB, 5, false), Some(32 * MIB));
        assert_eq!(fast.part_size(60 * MIB, 5, true), Some(12 * MIB));
        // A companion that allows tiny parts: a 4 KiB file it cuts stays cut.
        assert_eq!(fast.part_size(4096, 5, false), Some(2048));
        // A drop every 16 MiB sent: Young's rule, sqrt(2 * 6.4 MB * 16 MiB) = 14.7 MB.
        fast.on_bytes(0, T0);
        fast.bytes_sent = 64 * MIB;
        for _ in 0..4 {
            fast.on_drop();
        }
        assert_eq!(fast.part_size(GIB, 5, false), Some(14 * MIB));
    }

    /// Runs epochs at the goodput `link` gives for a slot count, every slot busy.
    fn epochs(
        adaptive: &mut Adaptive,
        rule: usize,
        link: impl Fn(usize) -> f64,
        count: u64,
    ) -> Vec<usize> {
        let mut now = T0;
        let mut seen = Vec::new();
        adaptive.decide(rule, now);
        // An epoch and its settling, in steps of 100 ms.
        let steps = adaptive.settings.epoch.as_millis() as u64 * 3 / 2 / 100;
        for _ in 0..count * steps {
            now = now + Duration::from_millis(100);
            adaptive.decide(rule, now);
            let slots = adaptive.slots(rule);
            adaptive.on_bytes((link(slots) / 10.0) as u64, now);
            adaptive.note_busy(rule, slots, true, now);
            if seen.last() != Some(&slots) {
                seen.push(slots);
            }
        }
        seen
    }

    #[test]
    fn slots_grow_while_goodput_rises_and_no_further() {
        // Each connection carries 1 MB/s, the link 4.5 MB/s: the fifth slot gains 12%, the sixth
        // nothing.
        let mut adaptive = Adaptive::new(Adapt::default());
        let link = |slots: usize| (slots as f64 * 1e6).min(4.5e6);
        let seen = epochs(&mut adaptive, 3, link, 20);
        assert_eq!(&seen[..4], &[3, 4, 5, 6]);
        assert_eq!(adaptive.slots(3), 5, "the sixth given back: {seen:?}");
        // Probes that do not pay wait longer each time: 5 in 20 epochs, where probing after
        // every measured epoch would make 10.
        let probes = seen.iter().filter(|&&slots| slots == 6).count();
        assert!((1..=5).contains(&probes), "{seen:?}");
        // A saturated link keeps the rule's count, but for probes it gives back.
        let mut flat = Adaptive::new(Adapt::default());
        let seen = epochs(&mut flat, 5, |_| 12.5e6, 10);
        assert!(seen.iter().all(|slots| [5, 6].contains(slots)), "{seen:?}");
        let probes = seen.iter().filter(|&&slots| slots == 6).count();
        assert!((1..=4).contains(&probes), "{seen:?}");
    }

    #[test]
    fn an_idle_slot_measures_nothing_and_overload_takes_slots_away() {
        let mut adaptive = Adaptive::new(Adapt::default());
        let mut now = T0;
        adaptive.decide(5, now);
        for _ in 0..50 {
            now = now + Duration::from_millis(100);
            adaptive.decide(5, now);
            adaptive.on_bytes(100_000 * adaptive.slots(5) as u64, now);
            // One slot always free: the files, not the link, limit.
            adaptive.note_busy(5, adaptive.slots(5) - 1, true, now);
        }
        assert_eq!(adaptive.slots(5), 5);
        for _ in 0..3 {
            adaptive.on_overload(5, now);
        }
        assert_eq!(adaptive.slots(5), 2);
        assert_eq!(adaptive.per_file(3, 5), 2, "never beyond the slots");
        for _ in 0..5 {
            adaptive.on_overload(5, now);
        }
        assert_eq!(adaptive.slots(5), 1);
    }
}
