//! Settings of the AWS adapters, from the environment.

use std::time::Duration;

/// Where the AWS adapters find their resources.
///
/// | variable | field | default |
/// |---|---|---|
/// | `TABLE_NAME` | `table_name` | required |
/// | `QUEUE_URL` | `queue_url` | required |
/// | `QUEUE_ARN` | `queue_arn` | looked up once with `GetQueueAttributes` when a schedule rule needs it |
/// | `DLQ_URL` | `dlq_url` | none (the DLQ's depth is then reported as 0) |
/// | `HIGH_PRIORITY_QUEUE_URL` | `high_priority_queue_url` | none: every job goes to `QUEUE_URL` |
/// | `EVENT_BUS_NAME` | `event_bus_name` | `default` |
/// | `RETENTION_DAYS` | `retention_days` | 30 |
/// | `CURSOR_SECRET` | `cursor_secret` | derived from `WECONNECT_ENCRYPTION_KEY`, else random per process |
/// | `DYNAMODB_CONSUMED_CAPACITY` | `consumed_capacity` | false |
///
/// The AWS SDK reads its own variables (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` and the
/// per-service `AWS_ENDPOINT_URL_DYNAMODB`, ...) in [`super::build`].
#[derive(Debug, Clone, PartialEq)]
pub struct AwsConfig {
    pub table_name: String,
    pub queue_url: String,
    pub queue_arn: Option<String>,
    pub dlq_url: Option<String>,
    /// Jobs of `high`-priority executions go here (SPEC §9; its own event source mapping).
    pub high_priority_queue_url: Option<String>,
    pub event_bus_name: String,
    /// How long logs, finished executions and finished node runs are kept (DynamoDB TTL).
    pub retention_days: u32,
    /// Key of the HMAC that signs pagination cursors. Every instance serving one API must
    /// use the same key, or a cursor issued by one is rejected by another. See
    /// [`AwsConfig::cursor_key`].
    pub cursor_secret: Option<String>,
    /// Ask DynamoDB for `ConsumedCapacity` on every request (the request counter sums it).
    pub consumed_capacity: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AwsConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} has an invalid value {value:?}")]
    Invalid { name: &'static str, value: String },
}

impl AwsConfig {
    /// A configuration with the defaults and the given resource names.
    pub fn new(table_name: impl Into<String>, queue_url: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            queue_url: queue_url.into(),
            queue_arn: None,
            dlq_url: None,
            high_priority_queue_url: None,
            event_bus_name: "default".into(),
            retention_days: 30,
            cursor_secret: None,
            consumed_capacity: false,
        }
    }

    /// Reads the variables in the table above. No I/O beyond the environment.
    pub fn from_env() -> Result<Self, AwsConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`AwsConfig::from_env`], from any source of variables (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, AwsConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let table_name = get("TABLE_NAME").ok_or(AwsConfigError::Missing("TABLE_NAME"))?;
        let queue_url = get("QUEUE_URL").ok_or(AwsConfigError::Missing("QUEUE_URL"))?;
        let mut config = Self::new(table_name, queue_url);
        config.queue_arn = get("QUEUE_ARN");
        config.dlq_url = get("DLQ_URL");
        config.high_priority_queue_url = get("HIGH_PRIORITY_QUEUE_URL");
        if let Some(bus) = get("EVENT_BUS_NAME") {
            config.event_bus_name = bus;
        }
        if let Some(days) = get("RETENTION_DAYS") {
            config.retention_days =
                days.parse()
                    .ok()
                    .filter(|d| *d >= 1)
                    .ok_or(AwsConfigError::Invalid {
                        name: "RETENTION_DAYS",
                        value: days,
                    })?;
        }
        config.cursor_secret = get("CURSOR_SECRET").or_else(|| {
            get("WECONNECT_ENCRYPTION_KEY").map(|key| format!("derived-from-encryption-key:{key}"))
        });
        if let Some(flag) = get("DYNAMODB_CONSUMED_CAPACITY") {
            config.consumed_capacity = match flag.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "total" => true,
                "0" | "false" | "no" | "none" => false,
                _ => {
                    return Err(AwsConfigError::Invalid {
                        name: "DYNAMODB_CONSUMED_CAPACITY",
                        value: flag,
                    });
                }
            };
        }
        Ok(config)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days.max(1)) * 86_400)
    }

    /// The 32-byte key that signs cursors: SHA-256 of `CURSOR_SECRET` (or of a string derived
    /// from `WECONNECT_ENCRYPTION_KEY`, which every function of a deployment shares). With
    /// neither, a random key: cursors then only work within one process (logged as a warning).
    pub fn cursor_key(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        match &self.cursor_secret {
            Some(secret) => {
                let mut h = Sha256::new();
                h.update(b"weconnect-cursor-v1\0");
                h.update(secret.as_bytes());
                h.finalize().into()
            }
            None => {
                tracing::warn!(
                    "neither CURSOR_SECRET nor WECONNECT_ENCRYPTION_KEY is set: pagination cursors \
                     are signed with a random per-process key"
                );
                rand::random()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_required_and_defaults() {
        let c = AwsConfig::from_lookup(lookup(&[("TABLE_NAME", "t"), ("QUEUE_URL", "q")])).unwrap();
        assert_eq!(c.table_name, "t");
        assert_eq!(c.queue_url, "q");
        assert_eq!(c.event_bus_name, "default");
        assert_eq!(c.retention_days, 30);
        assert_eq!(c.dlq_url, None);
        assert!(!c.consumed_capacity);
        assert!(matches!(
            AwsConfig::from_lookup(lookup(&[("QUEUE_URL", "q")])),
            Err(AwsConfigError::Missing("TABLE_NAME"))
        ));
    }

    #[test]
    fn rejects_bad_values_and_derives_the_cursor_key() {
        let bad = AwsConfig::from_lookup(lookup(&[
            ("TABLE_NAME", "t"),
            ("QUEUE_URL", "q"),
            ("RETENTION_DAYS", "zero"),
        ]));
        assert!(matches!(
            bad,
            Err(AwsConfigError::Invalid {
                name: "RETENTION_DAYS",
                ..
            })
        ));
        let a = AwsConfig::from_lookup(lookup(&[
            ("TABLE_NAME", "t"),
            ("QUEUE_URL", "q"),
            ("WECONNECT_ENCRYPTION_KEY", "k"),
            ("RETENTION_DAYS", "7"),
            ("DLQ_URL", "d"),
            ("EVENT_BUS_NAME", "bus"),
        ]))
        .unwrap();
        assert_eq!(a.retention_days, 7);
        assert_eq!(a.retention(), Duration::from_secs(7 * 86_400));
        assert_eq!(a.cursor_key(), a.clone().cursor_key());
        let mut b = a.clone();
        b.cursor_secret = Some("other".into());
        assert_ne!(a.cursor_key(), b.cursor_key());
    }
}
