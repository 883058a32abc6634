//! What template.yaml promises operators, read from the template itself (cfn-lint checks the
//! syntax; this checks the relations): every alarm reaches the alarm topic, CloudWatch may use
//! the topic's key, and the failures that matter each have an alarm.

use serde_yaml::Value;
use weconnect_engine::engine::EMF_NAMESPACE;
use weconnect_tests::moto::template;

/// The logical id an intrinsic (`!Ref X`, `!GetAtt X.Attr`) points at.
fn target(v: &Value) -> Option<(String, String)> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            let value = t.value.as_str()?;
            let id = value.split('.').next()?.to_string();
            Some((tag.trim_start_matches('!').to_string(), id))
        }
        _ => None,
    }
}

fn resources_of_type<'a>(doc: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    doc["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(k, r)| (k.as_str().unwrap(), r))
        .collect()
}

/// A metric an alarm watches: (namespace, metric name, [(dimension, value)]).
type Watched = (String, String, Vec<(String, String)>);

/// Every metric an alarm watches, for plain alarms and for the metric-math ones.
fn watched(alarm: &Value) -> Vec<Watched> {
    let dims = |d: &Value| -> Vec<(String, String)> {
        d.as_sequence()
            .map(|s| {
                s.iter()
                    .map(|d| {
                        let value = match &d["Value"] {
                            Value::String(s) => s.clone(),
                            other => target(other).map(|(_, id)| id).unwrap_or_default(),
                        };
                        (d["Name"].as_str().unwrap().to_string(), value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let p = &alarm["Properties"];
    if let Some(metrics) = p["Metrics"].as_sequence() {
        metrics
            .iter()
            .filter_map(|m| {
                let metric = &m["MetricStat"]["Metric"];
                Some((
                    metric["Namespace"].as_str()?.to_string(),
                    metric["MetricName"].as_str()?.to_string(),
                    dims(&metric["Dimensions"]),
                ))
            })
            .collect()
    } else {
        vec![(
            p["Namespace"].as_str().unwrap().to_string(),
            p["MetricName"].as_str().unwrap().to_string(),
            dims(&p["Dimensions"]),
        )]
    }
}

fn is_watched(all: &[Watched], ns: &str, metric: &str, dims: &[(&str, &str)]) -> bool {
    all.iter().any(|(n, m, d)| {
        n == ns
            && m == metric
            && d.len() == dims.len()
            && dims
                .iter()
                .all(|(k, v)| d.iter().any(|(dk, dv)| dk == k && dv == v))
    })
}

#[test]
fn every_alarm_reaches_a_topic_cloudwatch_may_publish_to() {
    let doc = template();
    let topic = &doc["Resources"]["AlarmTopic"]["Properties"];
    let key = target(&topic["KmsMasterKeyId"]);
    assert_eq!(
        key,
        Some(("Ref".into(), "AlarmTopicKey".into())),
        "the alarm topic must use the stack's key (CloudWatch cannot use alias/aws/sns)"
    );
    let statements = doc["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence()
        .expect("the key's policy");
    let cloudwatch = statements
        .iter()
        .find(|s| s["Principal"]["Service"].as_str() == Some("cloudwatch.amazonaws.com"))
        .expect("a statement for cloudwatch.amazonaws.com");
    let actions: Vec<&str> = cloudwatch["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(actions.contains(&"kms:Decrypt") && actions.contains(&"kms:GenerateDataKey*"));

    let alarms = resources_of_type(&doc, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 10, "{} alarms", alarms.len());
    for (name, alarm) in &alarms {
        let actions = alarm["Properties"]["AlarmActions"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name} has no AlarmActions"));
        assert!(
            actions
                .iter()
                .any(|a| target(a) == Some(("Ref".into(), "AlarmTopic".into()))),
            "{name} does not notify the alarm topic"
        );
    }
}

#[test]
fn the_failures_that_matter_each_have_an_alarm() {
    let doc = template();
    let all: Vec<_> = resources_of_type(&doc, "AWS::CloudWatch::Alarm")
        .iter()
        .flat_map(|(_, a)| watched(a))
        .collect();
    for queue in ["JobQueue", "HighPriorityJobQueue", "DeadLetterQueue"] {
        let metric = if queue == "DeadLetterQueue" {
            "ApproximateNumberOfMessagesVisible"
        } else {
            "ApproximateAgeOfOldestMessage"
        };
        assert!(
            is_watched(&all, "AWS/SQS", metric, &[("QueueName", queue)]),
            "{metric} of {queue}"
        );
    }
    for (function, _) in resources_of_type(&doc, "AWS::Serverless::Function") {
        for metric in ["Errors", "Throttles"] {
            assert!(
                is_watched(&all, "AWS/Lambda", metric, &[("FunctionName", function)]),
                "{metric} of {function}"
            );
        }
    }
    let indexes: Vec<&str> = doc["Resources"]["Table"]["Properties"]["GlobalSecondaryIndexes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| i["IndexName"].as_str().unwrap())
        .collect();
    for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
        assert!(
            is_watched(&all, "AWS/DynamoDB", metric, &[("TableName", "Table")]),
            "{metric} of the table"
        );
        for index in &indexes {
            assert!(
                is_watched(
                    &all,
                    "AWS/DynamoDB",
                    metric,
                    &[("TableName", "Table"), ("GlobalSecondaryIndexName", index)]
                ),
                "{metric} of index {index}"
            );
        }
    }
    assert!(
        is_watched(
            &all,
            "AWS/ApiGateway",
            "5xx",
            &[("ApiId", "HttpApi"), ("Stage", "$default")]
        ),
        "API 5xx"
    );
    // The metric the functions write (engine::Series::engine_failed), without dimensions.
    assert!(
        is_watched(&all, EMF_NAMESPACE, "EngineFailures", &[]),
        "engine failures"
    );
}

/// The worker's error backoff against the queues' `maxReceiveCount`: a burst of store or
/// queue errors (throttling) never dead-letters a live job; a long outage does, after about
/// half an hour.
#[test]
fn a_job_outlives_half_an_hour_of_engine_errors_before_the_dead_letter_queue() {
    let doc = template();
    for queue in ["JobQueue", "HighPriorityJobQueue"] {
        let policy = &doc["Resources"][queue]["Properties"]["RedrivePolicy"];
        let max = policy["maxReceiveCount"].as_u64().expect("maxReceiveCount") as u32;
        // Deliveries 1 .. max-1 fail and back off; delivery `max` failing dead-letters it.
        let until_dead: std::time::Duration =
            (1..max).map(weconnect_worker::error_backoff_after).sum();
        assert!(
            until_dead >= std::time::Duration::from_secs(25 * 60)
                && until_dead <= std::time::Duration::from_secs(60 * 60),
            "{queue}: {until_dead:?} of errors before the DLQ"
        );
        // A 15 s burst takes 5 deliveries (1 + 2 + 4 + 8 s of backoff).
        let burst: std::time::Duration = (1..5).map(weconnect_worker::error_backoff_after).sum();
        assert_eq!(burst, std::time::Duration::from_secs(15));
        assert!(
            max > 5 + 5,
            "{queue}: maxReceiveCount {max} leaves no room after a burst"
        );
    }
}

fn default_of(doc: &Value, parameter: &str) -> u64 {
    doc["Parameters"][parameter]["Default"]
        .as_u64()
        .unwrap_or_else(|| panic!("parameter {parameter} has no numeric default"))
}

/// A webhook flood cannot starve the worker or the cleanup run: the public routes are
/// throttled by API Gateway, the webhook function's concurrency is capped, the worker's and
/// the cleanup's are reserved; every function is traced.
#[test]
fn public_routes_are_throttled_and_the_worker_keeps_its_concurrency() {
    let doc = template();
    let r = &doc["Resources"];
    let routes = &r["HttpApi"]["Properties"]["RouteSettings"];
    let hooks = r["WebhookFunction"]["Properties"]["Events"]
        .as_mapping()
        .expect("webhook events");
    assert!(hooks.len() >= 4);
    for (name, event) in hooks {
        let p = &event["Properties"];
        let route = format!(
            "{} {}",
            p["Method"].as_str().unwrap().to_uppercase(),
            p["Path"].as_str().unwrap()
        );
        let limits = &routes[route.as_str()];
        for limit in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
            assert!(!limits[limit].is_null(), "{name:?}: {route} has no {limit}");
        }
    }
    let reserved = |f: &str| &r[f]["Properties"]["ReservedConcurrentExecutions"];
    assert!(!reserved("WebhookFunction").is_null());
    assert!(!reserved("WorkerFunction").is_null());
    assert_eq!(reserved("CleanupFunction").as_u64(), Some(1));
    assert!(
        default_of(&doc, "WorkerReservedConcurrency")
            >= default_of(&doc, "WorkerMaxConcurrency")
                + default_of(&doc, "HighPriorityMaxConcurrency"),
        "the worker's reservation must hold both event sources' ceilings"
    );
    assert_eq!(
        doc["Globals"]["Function"]["Tracing"].as_str(),
        Some("Active")
    );
}

/// The timing relations that let a killed worker invocation lose nothing (SPEC §5.4): a node
/// ends or its lease expires before the function is killed, the killed invocation's message
/// comes back after the lease expired, and the job's second run ends before the default
/// deadline. The moto test `a_killed_worker_invocation_is_recovered_when_its_lease_expires`
/// replays these numbers scaled down.
#[test]
fn a_killed_invocations_job_comes_back_after_its_lease_and_before_the_deadline() {
    let t = TemplateTimings::read();
    let defaults = weconnect_engine::EngineConfig::default();
    let safety = weconnect_worker::DEADLINE_SAFETY.as_millis() as u64;
    // Inline chaining stops while a node at its longest still ends before the kill.
    assert!(
        t.max_node_timeout_ms + safety < t.worker_timeout_ms,
        "{t:?}"
    );
    // A live invocation never sees its messages delivered again.
    assert!(t.visibility_ms > t.worker_timeout_ms, "{t:?}");
    // The latest a node starts: when the inline margin is left; its lease ends before the
    // message comes back.
    let latest_start = t.worker_timeout_ms - (t.max_node_timeout_ms + safety);
    assert!(
        latest_start + t.max_node_timeout_ms + defaults.lease_margin_ms <= t.visibility_ms,
        "{t:?}"
    );
    // The second run ends before the default deadline.
    assert!(
        t.visibility_ms + t.max_node_timeout_ms < defaults.default_timeout_ms,
        "{t:?}"
    );
}

/// The numbers of template.yaml the recovery depends on (ms).
#[derive(Debug, Clone, Copy)]
pub struct TemplateTimings {
    pub worker_timeout_ms: u64,
    pub visibility_ms: u64,
    pub max_node_timeout_ms: u64,
}

impl TemplateTimings {
    pub fn read() -> Self {
        let doc = template();
        let r = &doc["Resources"];
        let visibility = |q: &str| r[q]["Properties"]["VisibilityTimeout"].as_u64().unwrap() * 1000;
        assert_eq!(visibility("JobQueue"), visibility("HighPriorityJobQueue"));
        let max_node = doc["Globals"]["Function"]["Environment"]["Variables"]["NODE_MAX_TIMEOUT"]
            .as_str()
            .expect("NODE_MAX_TIMEOUT in Globals")
            .parse()
            .unwrap();
        Self {
            worker_timeout_ms: r["WorkerFunction"]["Properties"]["Timeout"]
                .as_u64()
                .unwrap()
                * 1000,
            visibility_ms: visibility("JobQueue"),
            max_node_timeout_ms: max_node,
        }
    }
}

/// The `aws-scale` model (10,000 executions/s, one organization with half of them on one
/// workflow, a 10,000-item map): the sharded partitions (unfinished index, statistics, trends,
/// workflow counters, the listing indexes, a map node's count of ended children) and every
/// other partition stay under DynamoDB's 1,000 write units/s per partition.
#[test]
fn no_partition_of_the_scale_model_is_over_the_partition_limit() {
    use weconnect_tests::scale::{self, Load, PARTITION_WCU_LIMIT};
    let report = scale::run(&Load::default());
    let over: Vec<_> = report
        .partitions
        .iter()
        .filter(|p| p.wcu_per_second > PARTITION_WCU_LIMIT)
        .collect();
    assert!(
        over.is_empty(),
        "partitions over {PARTITION_WCU_LIMIT} WCU/s: {over:?}"
    );
    // The map's children end 1,000 a second into their parent node's count shards.
    let counts = report
        .partitions
        .iter()
        .filter(|p| p.holds.starts_with("ended children"))
        .count();
    assert_eq!(counts, 4, "{:?}", report.top("table", 10));
    // The busiest organization's executions do reach every index, in shards.
    for target in ["ByOrg", "ByParent", "Unfinished"] {
        let busiest = report.top(target, 1)[0];
        assert!(busiest.wcu_per_second > 100.0, "{busiest:?}");
        assert!(busiest.partition.ends_with(char::is_numeric), "{busiest:?}");
    }
}
