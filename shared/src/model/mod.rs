//! The product's data, with the exact JSON names and enum strings of the spec.

mod composition;
mod credential;
mod execution;
mod lifecycle;
mod time;
pub mod trends;
mod workflow;

pub use composition::*;
pub use credential::*;
pub use execution::*;
pub use lifecycle::*;
pub use time::Timestamp;
pub use trends::{TrendCounters, TrendInterval, TrendPoint, trend_points};
pub use workflow::*;

/// A new time-ordered id (UUIDv7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
