//! Ferry's sans-IO core: how files are cut into parts ([`plan`]), what the companion's API looks
//! like ([`protocol`]), and the engine that decides which request to send next ([`engine`]).
//!
//! Nothing here touches a clock, a random source, the network or the browser: drivers feed events
//! in and carry actions out, so the same engine runs in the browser, natively and in tests.

pub mod engine;
pub mod error;
pub mod plan;
pub mod protocol;
pub mod s3xml;
pub mod schedule;

pub use engine::{Action, Engine, Event, FileId, FileSpec, FileState, Progress, Stats};
pub use error::UploadError;
pub use plan::{Plan, PlanError, StoreLimits, UploadMode};
pub use schedule::{EngineConfig, FixedSlots, Order, SeedsRule, SlotRule};
