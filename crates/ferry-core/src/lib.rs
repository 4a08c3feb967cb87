//! Ferry's sans-IO core: how files are cut into parts ([`plan`]), what the companion's API looks
//! like ([`protocol`]), and the engine that decides which request to send next ([`engine`]).
//!
//! Nothing here touches a clock, a random source, the network or the browser: drivers feed events
//! and the time in, and carry actions out, so the same engine runs in the browser, natively, in
//! the simulator and in tests.

pub mod adapt;
pub mod answer;
pub mod base64;
mod breaker;
pub mod checksum;
pub mod engine;
pub mod error;
pub mod json;
pub mod plan;
pub mod protocol;
pub mod retry;
pub mod schedule;
pub mod sha256;
pub mod sorted;
mod text;
pub mod time;

pub use adapt::Adapt;
pub use checksum::{Checksum, ChecksumAlgorithm, ChecksumType};
pub use engine::{
    Action, BatchedFile, Call, Claim, Engine, Event, FileId, FileSpec, FileState, Progress,
    PutTarget, RunningPart, Snapshot, Stats,
};
pub use error::UploadError;
pub use plan::{Plan, PlanError, StoreLimits, UploadMode};
pub use retry::{Failure, RetryPolicy, Verdict};
pub use schedule::{EngineConfig, FixedSlots, Order, SeedsRule, SlotRule};
pub use time::Instant;
