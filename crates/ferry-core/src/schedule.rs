//! The scheduler's policies: how many part PUTs may run (the slot rule) and in which order queued
//! files are taken.

use std::cmp::Reverse;
use std::fmt::Debug;
use std::sync::Arc;

use crate::adapt::Adapt;
use crate::plan::MIB;
use crate::retry::RetryPolicy;

/// How many part PUTs may start while others run, given the sizes of the live files (taken by
/// the outer layer: being prepared or uploading). Replaceable: implement it for another rule.
/// When the count drops (a large file becomes live), running PUTs finish; no new one starts
/// until fewer run than the rule allows.
pub trait SlotRule: Send + Sync {
    fn slots(&self, active_sizes: &mut dyn Iterator<Item = u64>) -> usize;
}

/// Named only: with `Debug` a supertrait, every rule's derived `Debug` sat in its vtable in the
/// wasm, with core's struct formatter (0.4 KiB of the gzipped package), though nothing prints it.
impl Debug for dyn SlotRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotRule")
    }
}

/// The seeds' rule: 5 slots while every active file is at most 65 MiB, 3 when any is larger.
/// Many small files gain from parallel requests; a few large ones share bandwidth better with
/// fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedsRule {
    pub small_slots: usize,
    pub large_slots: usize,
    /// A file over this size makes the rule use `large_slots`.
    pub large_over: u64,
}

impl Default for SeedsRule {
    fn default() -> Self {
        Self {
            small_slots: 5,
            large_slots: 3,
            large_over: 65 * MIB,
        }
    }
}

impl SlotRule for SeedsRule {
    fn slots(&self, active_sizes: &mut dyn Iterator<Item = u64>) -> usize {
        for size in active_sizes {
            if size > self.large_over {
                return self.large_slots;
            }
        }
        self.small_slots
    }
}

/// A fixed number of slots, whatever the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedSlots(pub usize);

impl SlotRule for FixedSlots {
    fn slots(&self, _: &mut dyn Iterator<Item = u64>) -> usize {
        self.0
    }
}

/// Which queued file goes first among files of equal priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// In the order they were added.
    #[default]
    Fifo,
    /// Smallest first, then in the order they were added: many small files finish early.
    SmallestFirst,
}

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Outer layer: files prepared at once (upload created, first URLs signed).
    pub triggers: usize,
    /// Inner layer: how many part PUTs run over all files.
    pub slot_rule: Arc<dyn SlotRule>,
    /// Part PUTs that one file may run at once.
    pub per_file: usize,
    /// Parts signed by one call to the companion.
    pub sign_batch: u32,
    /// Files of one part created (and their PUTs signed) by one call to the companion, when it
    /// offers batches (`createBatch` in its config); 1 creates each alone. Up to twice as many
    /// such files are prepared ahead, so the next batch is made before the last one runs out.
    pub create_batch: u32,
    /// Part size asked of the companion for new uploads (it raises it to the store's rules);
    /// `None` takes the companion's preferred size.
    pub part_size: Option<u64>,
    pub order: Order,
    /// Slots, the per-file cap and part sizes that follow the measured link, on top of the slot
    /// rule, never beyond [`Adapt::max_slots`] (a rule that allows more is held to it); `None`
    /// keeps exactly what is configured.
    pub adapt: Option<Adapt>,
    /// When and how often failures are retried.
    pub retry: RetryPolicy,
    /// Seed of the jitter: the driver draws it from its own random source.
    pub seed: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            triggers: 10,
            slot_rule: Arc::new(SeedsRule::default()),
            per_file: 3,
            sign_batch: 20,
            create_batch: 20,
            part_size: None,
            order: Order::Fifo,
            adapt: Some(Adapt::default()),
            retry: RetryPolicy::default(),
            seed: 0,
        }
    }
}

/// Where a file stands in line: higher priority first, then (with [`Order::SmallestFirst`])
/// smaller first, then earlier first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    priority: Reverse<i32>,
    size: u64,
    seq: u64,
}

impl Rank {
    pub(crate) fn new(order: Order, priority: i32, size: u64, seq: u64) -> Self {
        Self {
            priority: Reverse(priority),
            size: match order {
                Order::Fifo => 0,
                Order::SmallestFirst => size,
            },
            seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_rule_drops_to_three_slots_when_a_large_file_is_active() {
        let rule = SeedsRule::default();
        let slots = |sizes: &[u64]| rule.slots(&mut sizes.iter().copied());
        assert_eq!(slots(&[]), 5);
        assert_eq!(slots(&[MIB, 65 * MIB]), 5);
        assert_eq!(slots(&[MIB, 65 * MIB + 1]), 3);
    }

    #[test]
    fn ranks_order_by_priority_then_size_then_arrival() {
        let fifo = |priority, size, seq| Rank::new(Order::Fifo, priority, size, seq);
        assert!(fifo(1, 100, 5) < fifo(0, 1, 1), "higher priority first");
        assert!(fifo(0, 100, 1) < fifo(0, 1, 2), "FIFO ignores size");
        let smallest = |priority, size, seq| Rank::new(Order::SmallestFirst, priority, size, seq);
        assert!(smallest(0, 1, 2) < smallest(0, 100, 1));
        assert!(smallest(0, 1, 1) < smallest(0, 1, 2));
    }
}
