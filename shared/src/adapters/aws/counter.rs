//! Counts the requests the adapters send, per service and operation, and the DynamoDB
//! capacity they consumed (when the store asks for `ReturnConsumedCapacity`, see
//! [`super::AwsConfig::consumed_capacity`]). An SDK interceptor installed on every client
//! that [`super::build`] creates; read it to report calls per node in cost benchmarks.
//!
//! A request is counted once per HTTP attempt (`read_before_transmit`), so SDK retries
//! count: they are billed too.

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::ConsumedCapacity;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What one operation of one service cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OperationCount {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// DynamoDB `ConsumedCapacity.CapacityUnits` summed over the responses that carried it.
    pub capacity_units: f64,
    pub read_capacity_units: f64,
    pub write_capacity_units: f64,
    /// Requests of this operation on the wire right now, and the most there were at once.
    pub in_flight: u64,
    pub most_in_flight: u64,
}

/// `(service, operation)`, e.g. `("dynamodb", "UpdateItem")`, `("sqs", "SendMessageBatch")`.
pub type OperationKey = (String, String);

/// Shared counters; clones count into the same table.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<OperationKey, OperationCount>>>,
}

impl RequestCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every operation seen so far.
    pub fn snapshot(&self) -> BTreeMap<OperationKey, OperationCount> {
        self.counts.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The counts so far, and zero from now on.
    pub fn take(&self) -> BTreeMap<OperationKey, OperationCount> {
        self.counts
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }

    pub fn reset(&self) {
        let _ = self.take();
    }

    /// Requests sent to one service (`dynamodb`, `sqs`, `eventbridge`).
    pub fn requests(&self, service: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, c)| c.requests)
            .sum()
    }

    /// Requests of one operation of one service.
    pub fn operation(&self, service: &str, operation: &str) -> OperationCount {
        self.snapshot()
            .get(&(service.to_string(), operation.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// Whether a DynamoDB operation reads (its units bill as read request units) or writes.
    pub fn is_dynamodb_read(operation: &str) -> bool {
        matches!(
            operation,
            "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems"
        )
    }

    fn with(&self, key: OperationKey, f: impl FnOnce(&mut OperationCount)) {
        if let Ok(mut m) = self.counts.lock() {
            f(m.entry(key).or_default());
        }
    }
}

fn operation_key(cfg: &ConfigBag) -> OperationKey {
    match cfg.load::<Metadata>() {
        Some(m) => (normalize_service(m.service()), m.name().to_string()),
        None => ("unknown".into(), "unknown".into()),
    }
}

fn normalize_service(service: &str) -> String {
    let s = service.to_ascii_lowercase();
    match s.as_str() {
        "dynamodb" | "dynamo db" => "dynamodb".into(),
        "sqs" | "amazonsqs" => "sqs".into(),
        "eventbridge" | "cloudwatchevents" | "events" => "eventbridge".into(),
        _ => s,
    }
}

fn add_capacity(count: &mut OperationCount, capacity: &ConsumedCapacity) {
    count.capacity_units += capacity.capacity_units().unwrap_or(0.0);
    count.read_capacity_units += capacity.read_capacity_units().unwrap_or(0.0);
    count.write_capacity_units += capacity.write_capacity_units().unwrap_or(0.0);
}

/// The `ConsumedCapacity` entries of a DynamoDB output, whatever the operation.
fn consumed_capacity(
    output: &aws_smithy_runtime_api::client::interceptors::context::Output,
) -> Vec<ConsumedCapacity> {
    use aws_sdk_dynamodb::operation as op;
    macro_rules! one {
        ($($t:ty),*) => {
            $(if let Some(o) = output.downcast_ref::<$t>() {
                return o.consumed_capacity().cloned().into_iter().collect();
            })*
        };
    }
    macro_rules! many {
        ($($t:ty),*) => {
            $(if let Some(o) = output.downcast_ref::<$t>() {
                return o.consumed_capacity().to_vec();
            })*
        };
    }
    one!(
        op::get_item::GetItemOutput,
        op::put_item::PutItemOutput,
        op::update_item::UpdateItemOutput,
        op::delete_item::DeleteItemOutput,
        op::query::QueryOutput,
        op::scan::ScanOutput
    );
    many!(
        op::batch_get_item::BatchGetItemOutput,
        op::batch_write_item::BatchWriteItemOutput,
        op::transact_write_items::TransactWriteItemsOutput,
        op::transact_get_items::TransactGetItemsOutput
    );
    Vec::new()
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "WeConnectRequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.with(operation_key(cfg), |c| {
            c.requests += 1;
            c.in_flight += 1;
            c.most_in_flight = c.most_in_flight.max(c.in_flight);
        });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // After every attempt, sent or not (one that failed before sending never counted).
        self.with(operation_key(cfg), |c| {
            c.in_flight = c.in_flight.saturating_sub(1)
        });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(output) = context.output_or_error() {
            let capacity = consumed_capacity(output);
            if !capacity.is_empty() {
                self.with(operation_key(cfg), |c| {
                    for cc in &capacity {
                        add_capacity(c, cc);
                    }
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_normalizes() {
        assert!(RequestCounter::is_dynamodb_read("Query"));
        assert!(!RequestCounter::is_dynamodb_read("UpdateItem"));
        assert_eq!(normalize_service("DynamoDB"), "dynamodb");
        assert_eq!(normalize_service("SQS"), "sqs");
        assert_eq!(normalize_service("EventBridge"), "eventbridge");
    }

    #[test]
    fn take_resets() {
        let c = RequestCounter::new();
        c.with(("sqs".into(), "SendMessage".into()), |x| x.requests += 2);
        assert_eq!(c.requests("sqs"), 2);
        assert_eq!(c.operation("sqs", "SendMessage").requests, 2);
        assert_eq!(c.take().len(), 1);
        assert_eq!(c.requests("sqs"), 0);
    }
}
