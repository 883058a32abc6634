//! EventBridge: execution events ([`EventBridgeEvents`]) and the schedule rules of `active`
//! scheduled workflows ([`EventBridgeSchedules`]).
//!
//! A scheduled workflow gets the rule `weconnect-{workflowId}` on the **default** bus
//! (EventBridge runs scheduled rules only there) with the `cron(…)`/`rate(…)` expression of
//! its first enabled `trigger.schedule` node, and one target, the job queue, whose input
//! transformer turns the scheduled event into the queue message
//! `{"scheduleTick":{"organizationId":…,"workflowId":…,"scheduledAt":<$.time>}}`
//! (see [`super::parse_message`]). The queue's policy must let `events.amazonaws.com` send
//! to it for rules named `weconnect-*` (template.yaml: `JobQueuePolicy`). Deactivating,
//! archiving or deleting the workflow removes the target and the rule.

use crate::model::{Node, Workflow};
use crate::ports::{EventSink, ExecutionEvent, ScheduleSync};
use async_trait::async_trait;
use aws_sdk_eventbridge::types::{InputTransformer, PutEventsRequestEntry, RuleState, Target};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

pub const EVENT_SOURCE: &str = "weconnect";
pub const EVENT_DETAIL_TYPE: &str = "WeConnect Execution Status Changed";
/// The id of the one target of a schedule rule.
pub const TARGET_ID: &str = "weconnect-job-queue";
pub const RULE_PREFIX: &str = "weconnect-";

fn err_text<E: std::error::Error + 'static>(e: aws_sdk_eventbridge::error::SdkError<E>) -> String {
    aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()
}

/// Publishes execution events to `EVENT_BUS_NAME`.
#[derive(Clone)]
pub struct EventBridgeEvents {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeEvents {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self { client, bus }
    }
}

#[async_trait]
impl EventSink for EventBridgeEvents {
    async fn publish(&self, event: &ExecutionEvent) -> Result<(), String> {
        let detail = serde_json::to_string(event).map_err(|e| e.to_string())?;
        let entry = PutEventsRequestEntry::builder()
            .source(EVENT_SOURCE)
            .detail_type(EVENT_DETAIL_TYPE)
            .detail(detail)
            .event_bus_name(&self.bus)
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(err_text)?;
        if out.failed_entry_count() > 0 {
            let first = out.entries().iter().find(|e| e.error_code().is_some());
            return Err(format!(
                "PutEvents failed: {} {}",
                first.and_then(|e| e.error_code()).unwrap_or_default(),
                first.and_then(|e| e.error_message()).unwrap_or_default()
            ));
        }
        Ok(())
    }
}

/// Converts a `trigger.schedule` node's parameters to an EventBridge schedule expression.
pub type ExpressionFn = fn(&Node) -> Result<String, String>;

/// The default conversion: `crate::nodes::schedule::Schedule`.
pub fn schedule_expression(node: &Node) -> Result<String, String> {
    crate::nodes::schedule::Schedule::parse(&node.parameters)?.eventbridge_expression()
}

/// The rule name of a workflow: `weconnect-{workflowId}` (ids longer than EventBridge's
/// 64-character limit allows are replaced by a hash).
pub fn rule_name(workflow_id: &str) -> String {
    let name = format!("{RULE_PREFIX}{workflow_id}");
    let valid = name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        name
    } else {
        let digest = Sha256::digest(workflow_id.as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{RULE_PREFIX}h-{hex}")
    }
}

/// The schedule node a workflow is started by, when it should have a rule at all.
pub fn scheduled_node(wf: &Workflow) -> Option<&Node> {
    crate::triggers::schedule_node(wf, None)
}

/// The input transformer's template: the queue message of one tick.
pub fn tick_template(org: &str, workflow_id: &str) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    format!(
        r#"{{"scheduleTick":{{"organizationId":{},"workflowId":{},"scheduledAt":<time>}}}}"#,
        q(org),
        q(workflow_id)
    )
}

/// Keeps schedule rules in step with workflows.
#[derive(Clone)]
pub struct EventBridgeSchedules {
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: std::sync::Arc<OnceCell<String>>,
    expression: ExpressionFn,
}

impl EventBridgeSchedules {
    /// `queue_arn`: the job queue's ARN, or None to look it up once when first needed.
    pub fn new(
        events: aws_sdk_eventbridge::Client,
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        queue_arn: Option<String>,
    ) -> Self {
        let cell = OnceCell::new();
        if let Some(arn) = queue_arn {
            let _ = cell.set(arn);
        }
        Self {
            events,
            sqs,
            queue_url,
            queue_arn: std::sync::Arc::new(cell),
            expression: schedule_expression,
        }
    }

    /// Replaces the expression conversion (tests that must not depend on the schedule parser).
    pub fn with_expression(mut self, expression: ExpressionFn) -> Self {
        self.expression = expression;
        self
    }

    async fn queue_arn(&self) -> Result<&String, String> {
        self.queue_arn
            .get_or_try_init(|| async {
                let out = self
                    .sqs
                    .get_queue_attributes()
                    .queue_url(&self.queue_url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .send()
                    .await
                    .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
                out.attributes()
                    .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
                    .cloned()
                    .ok_or_else(|| "the job queue has no QueueArn attribute".to_string())
            })
            .await
    }

    async fn put_rule(&self, wf: &Workflow, node: &Node) -> Result<(), String> {
        let expression = (self.expression)(node)?;
        let name = rule_name(&wf.id);
        self.events
            .put_rule()
            .name(&name)
            .schedule_expression(expression)
            .state(RuleState::Enabled)
            .description(format!(
                "WeConnect schedule of workflow {} ({})",
                wf.id, wf.organization_id
            ))
            .send()
            .await
            .map_err(err_text)?;
        let transformer = InputTransformer::builder()
            .input_paths_map("time", "$.time")
            .input_template(tick_template(&wf.organization_id, &wf.id))
            .build()
            .map_err(|e| e.to_string())?;
        let target = Target::builder()
            .id(TARGET_ID)
            .arn(self.queue_arn().await?)
            .input_transformer(transformer)
            .build()
            .map_err(|e| e.to_string())?;
        let out = self
            .events
            .put_targets()
            .rule(&name)
            .targets(target)
            .send()
            .await
            .map_err(err_text)?;
        if out.failed_entry_count() > 0 {
            let first = out.failed_entries().first();
            return Err(format!(
                "PutTargets failed: {} {}",
                first.and_then(|e| e.error_code()).unwrap_or_default(),
                first.and_then(|e| e.error_message()).unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Removes the rule and its target; a rule that does not exist is fine.
    async fn remove_rule(&self, workflow_id: &str) -> Result<(), String> {
        use aws_sdk_eventbridge::operation::remove_targets::RemoveTargetsError;
        let name = rule_name(workflow_id);
        match self
            .events
            .remove_targets()
            .rule(&name)
            .ids(TARGET_ID)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                if matches!(
                    e.as_service_error(),
                    Some(RemoveTargetsError::ResourceNotFoundException(_))
                ) {
                    return Ok(());
                }
                return Err(err_text(e));
            }
        }
        match self.events.delete_rule().name(&name).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                if matches!(
                    e.as_service_error(),
                    Some(aws_sdk_eventbridge::operation::delete_rule::DeleteRuleError::ResourceNotFoundException(_))
                ) {
                    Ok(())
                } else {
                    Err(err_text(e))
                }
            }
        }
    }
}

#[async_trait]
impl ScheduleSync for EventBridgeSchedules {
    /// Every enabled `trigger.schedule` node must convert to an EventBridge expression (UTC
    /// or a fixed offset, minute precision), so that a workflow EventBridge cannot run is
    /// refused when saved instead of failing after it was stored.
    fn check(&self, nodes: &[Node]) -> Result<(), String> {
        for node in nodes {
            if node.enabled && node.node_type == crate::triggers::SCHEDULE_TRIGGER {
                (self.expression)(node)
                    .map_err(|e| format!("node \"{}\" (\"{}\"): {e}", node.id, node.name))?;
            }
        }
        Ok(())
    }

    async fn workflow_saved(&self, wf: &Workflow) -> Result<(), String> {
        match scheduled_node(wf) {
            Some(node) => self.put_rule(wf, node).await,
            None => self.remove_rule(&wf.id).await,
        }
    }

    async fn workflow_deleted(&self, _org: &str, workflow_id: &str) -> Result<(), String> {
        self.remove_rule(workflow_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_valid() {
        assert_eq!(rule_name("abc-123"), "weconnect-abc-123");
        let long = rule_name(&"x".repeat(80));
        assert!(long.len() <= 64 && long.starts_with("weconnect-h-"));
        assert!(rule_name("a b/c").starts_with("weconnect-h-"));
    }

    #[test]
    fn template_is_json_once_time_is_filled() {
        let t = tick_template("o\"rg", "wf");
        let filled = t.replace("<time>", "\"2026-01-01T00:00:00Z\"");
        let msg = super::super::parse_message(&filled).unwrap();
        assert_eq!(
            msg,
            super::super::QueueMessage::ScheduleTick {
                organization_id: "o\"rg".into(),
                workflow_id: "wf".into(),
                scheduled_at: crate::model::Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
            }
        );
    }
}
