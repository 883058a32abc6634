//! Schedules of `trigger.schedule`: cron (croner) or rate expressions, with a timezone.
//! OWNER: nodes helper (placeholder signatures).

use crate::model::Timestamp;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    _private: (),
}

impl Schedule {
    /// From a `trigger.schedule` node's parameters (`cron` or `rate`, optional `timezone`).
    /// The message names the bad parameter.
    pub fn parse(params: &Map<String, Value>) -> Result<Schedule, String> {
        let _ = params;
        todo!("schedule")
    }
    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let _ = after;
        todo!("schedule")
    }
    /// The same schedule as an EventBridge expression: `cron(…)` (6 fields, UTC) or `rate(…)`.
    pub fn eventbridge_expression(&self) -> String {
        todo!("schedule")
    }
}
