//! Logs of one execution stored together: one row (SQLite) or item (DynamoDB) per batch of
//! log entries the engine writes at once (typically one node run's), instead of one per entry.
//!
//! A batch keeps the execution's id once (in its key), each node's type and name once, the
//! entries' ids as small offsets from the one before (the engine numbers a batch's ids
//! consecutively: `next_log_id`) and their timestamps as offsets from the first; the whole is
//! [`pack`]ed.
//!
//! Reading a page of logs (oldest first, after a cursor) merges batches in the order of their
//! first id. Two rules make it exact although batches written by concurrent jobs overlap:
//! - no batch spans more than [`MAX_SPAN_MS`] of id time (ids are UUIDv7, whose first 48 bits
//!   are the time in ms), so a batch whose first id is older than `after` − span holds
//!   nothing after `after`: [`lower_bound`] is where reading starts;
//! - a batch's entries are never older than its first id, so once `limit + 1` entries are
//!   found, a batch whose first id is past the last of them cannot change the page:
//!   [`LogPager::wants`] says when to stop.

use super::pack::{PackError, pack_bytes, unpack};
use crate::model::{ExecutionLog, LogLevel, Timestamp, next_log_id};
use crate::ports::{LogFilter, Page};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The longest id-time a batch covers.
pub const MAX_SPAN_MS: u64 = 60_000;
/// Entries per batch at most, and the JSON size past which a batch is closed.
const MAX_ENTRIES: usize = 500;
const MAX_JSON: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("log batch: {0}")]
    Json(#[from] serde_json::Error),
    #[error("log batch: {0}")]
    Pack(#[from] PackError),
    #[error("log batch: {0}")]
    Shape(&'static str),
}

/// One stored batch: all of one execution, ids from `first_id` to `last_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogBatch {
    pub execution_id: String,
    pub organization_id: String,
    pub first_id: String,
    pub last_id: String,
    /// The packed entries ([`decode`]).
    pub body: Vec<u8>,
    /// When the last entry was logged (stores use it for expiry).
    pub last_at: Timestamp,
}

/// The id's time in ms when it is a UUIDv7.
fn id_millis(id: &str) -> Option<u64> {
    let uuid = uuid::Uuid::parse_str(id).ok()?;
    (uuid.get_version_num() == 7).then(|| (uuid.as_u128() >> 80) as u64)
}

/// Where a reading after `after` starts: batches whose first id sorts below this hold nothing
/// after it. None: from the first batch (`after` is not a UUIDv7).
pub fn lower_bound(after: &str) -> Option<String> {
    let ms = id_millis(after)?.saturating_sub(MAX_SPAN_MS);
    Some(uuid::Uuid::from_u128(u128::from(ms) << 80).to_string())
}

/// Groups logs into batches: per execution, in id order, closed at [`MAX_SPAN_MS`],
/// [`MAX_ENTRIES`] or [`MAX_JSON`].
pub fn batches(logs: &[ExecutionLog]) -> Result<Vec<LogBatch>, BatchError> {
    let mut by_execution: BTreeMap<&str, Vec<&ExecutionLog>> = BTreeMap::new();
    for log in logs {
        by_execution
            .entry(log.execution_id.as_str())
            .or_default()
            .push(log);
    }
    let mut out = Vec::new();
    for (_, mut entries) in by_execution {
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        let mut open = Builder::default();
        for log in entries {
            if !open.takes(log) {
                out.push(open.finish()?);
                open = Builder::default();
            }
            open.push(log);
        }
        if !open.entries.is_empty() {
            out.push(open.finish()?);
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Builder<'a> {
    first: Option<&'a ExecutionLog>,
    last: Option<&'a ExecutionLog>,
    nodes: BTreeMap<&'a str, (Option<&'a str>, Option<&'a str>)>,
    entries: Vec<Value>,
    json_len: usize,
}

impl<'a> Builder<'a> {
    /// Whether `log` may join this batch.
    fn takes(&self, log: &ExecutionLog) -> bool {
        let Some(first) = self.first else {
            return true;
        };
        if self.entries.len() >= MAX_ENTRIES || self.json_len >= MAX_JSON {
            return false;
        }
        let (Some(start), Some(at)) = (id_millis(&first.id), id_millis(&log.id)) else {
            // Not UUIDv7: its time is unknown, so it goes alone.
            return false;
        };
        if at.saturating_sub(start) > MAX_SPAN_MS {
            return false;
        }
        // A node's type and name are kept once per batch.
        match log.node_id.as_deref().and_then(|n| self.nodes.get(n)) {
            Some(&(t, n)) => t == log.node_type.as_deref() && n == log.node_name.as_deref(),
            None => true,
        }
    }

    fn push(&mut self, log: &'a ExecutionLog) {
        let first = *self.first.get_or_insert(log);
        // 0: the batch's first id; 1: the id after the previous one (`next_log_id`).
        let id = match self.last {
            None => json!(0),
            Some(prev) if next_log_id(&prev.id, log.timestamp).as_deref() == Some(&log.id) => {
                json!(1)
            }
            Some(_) => json!(log.id),
        };
        if let Some(node) = log.node_id.as_deref() {
            self.nodes
                .entry(node)
                .or_insert((log.node_type.as_deref(), log.node_name.as_deref()));
        }
        let entry = json!([
            id,
            log.level,
            log.message,
            log.data,
            log.timestamp.millis() - first.timestamp.millis(),
            log.execution_step,
            log.node_id,
        ]);
        self.json_len += entry.to_string().len();
        self.entries.push(entry);
        self.last = Some(log);
    }

    fn finish(self) -> Result<LogBatch, BatchError> {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return Err(BatchError::Shape("empty batch"));
        };
        let nodes: serde_json::Map<String, Value> = self
            .nodes
            .into_iter()
            .map(|(id, (t, n))| (id.to_string(), json!([t, n])))
            .collect();
        let body = json!({"n": nodes, "t": first.timestamp.millis(), "e": self.entries});
        Ok(LogBatch {
            execution_id: first.execution_id.clone(),
            organization_id: first.organization_id.clone(),
            first_id: first.id.clone(),
            last_id: last.id.clone(),
            body: pack_bytes(serde_json::to_string(&body)?),
            last_at: last.timestamp,
        })
    }
}

/// The entries of a stored batch, in id order.
pub fn decode(
    org: &str,
    execution_id: &str,
    first_id: &str,
    body: &[u8],
) -> Result<Vec<ExecutionLog>, BatchError> {
    let text = unpack(body)?;
    let batch: Value = serde_json::from_slice(&text)?;
    let nodes = batch["n"].as_object().cloned().unwrap_or_default();
    let t0 = batch["t"]
        .as_i64()
        .ok_or(BatchError::Shape("no first timestamp"))?;
    let entries = batch["e"]
        .as_array()
        .ok_or(BatchError::Shape("no entries"))?;
    let mut out = Vec::with_capacity(entries.len());
    let mut prev = first_id.to_string();
    for entry in entries {
        let [id, level, message, data, dt, step, node] = entry
            .as_array()
            .and_then(|a| <&[Value; 7]>::try_from(a.as_slice()).ok())
            .ok_or(BatchError::Shape("an entry is not 7 fields"))?;
        let timestamp = Timestamp::from_millis(t0 + dt.as_i64().unwrap_or(0));
        let id = match id {
            Value::String(full) => full.clone(),
            Value::Number(n) if n.as_u64() == Some(0) => prev.clone(),
            Value::Number(n) if n.as_u64() == Some(1) => next_log_id(&prev, timestamp)
                .ok_or(BatchError::Shape("no next id after a non-v7 id"))?,
            _ => return Err(BatchError::Shape("bad id")),
        };
        let node_id = node.as_str().map(str::to_string);
        let (node_type, node_name) = match node_id.as_deref().and_then(|n| nodes.get(n)) {
            Some(pair) => (
                pair[0].as_str().map(str::to_string),
                pair[1].as_str().map(str::to_string),
            ),
            None => (None, None),
        };
        out.push(ExecutionLog {
            id: id.clone(),
            execution_id: execution_id.to_string(),
            organization_id: org.to_string(),
            node_id,
            level: serde_json::from_value::<LogLevel>(level.clone())?,
            message: message
                .as_str()
                .ok_or(BatchError::Shape("bad message"))?
                .to_string(),
            data: (!data.is_null()).then(|| data.clone()),
            timestamp,
            execution_step: step.as_u64().unwrap_or(0).min(u64::from(u32::MAX)) as u32,
            node_type,
            node_name,
        });
        prev = id;
    }
    Ok(out)
}

/// What the save policy `none` keeps of a successful execution's logs (SPEC §14).
pub fn kept_without_data(log: &ExecutionLog) -> bool {
    matches!(log.level, LogLevel::Warn | LogLevel::Error)
}

/// Keeps the entries of `body` that `keep` accepts, re-packed (None: none is left).
pub fn retain(
    org: &str,
    execution_id: &str,
    first_id: &str,
    body: &[u8],
    keep: impl Fn(&ExecutionLog) -> bool,
) -> Result<Option<LogBatch>, BatchError> {
    let kept: Vec<ExecutionLog> = decode(org, execution_id, first_id, body)?
        .into_iter()
        .filter(|l| keep(l))
        .collect();
    // Fewer entries never widen a batch: one batch in, at most one out.
    Ok(batches(&kept)?.into_iter().next())
}

/// Builds one page of logs from batches read in order of their first id.
pub struct LogPager {
    filter: LogFilter,
    limit: usize,
    /// Matching entries found so far, in id order, at most `limit + 1`.
    found: Vec<ExecutionLog>,
}

impl LogPager {
    pub fn new(filter: &LogFilter, limit: usize) -> Self {
        Self {
            filter: filter.clone(),
            limit: limit.max(1),
            found: Vec::new(),
        }
    }

    /// Whether a batch starting at `first_id` (and those after it) can still add to the page.
    pub fn wants(&self, first_id: &str) -> bool {
        match self.found.get(self.limit) {
            Some(beyond) => first_id < beyond.id.as_str(),
            None => true,
        }
    }

    pub fn add(&mut self, logs: Vec<ExecutionLog>) {
        let after = self.filter.after.as_deref().unwrap_or("");
        self.found.extend(logs.into_iter().filter(|l| {
            l.id.as_str() > after
                && self.filter.level.is_none_or(|level| l.level == level)
                && self
                    .filter
                    .node_id
                    .as_deref()
                    .is_none_or(|n| l.node_id.as_deref() == Some(n))
        }));
        self.found.sort_by(|a, b| a.id.cmp(&b.id));
        self.found.truncate(self.limit + 1);
    }

    pub fn finish(mut self) -> Page<ExecutionLog> {
        let more = self.found.len() > self.limit;
        self.found.truncate(self.limit);
        let next_cursor = if more {
            self.found.last().map(|l| l.id.clone())
        } else {
            None
        };
        Page {
            items: self.found,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(exec: &str, id: String, node: Option<&str>, level: LogLevel, at: i64) -> ExecutionLog {
        ExecutionLog {
            id,
            execution_id: exec.into(),
            organization_id: "org".into(),
            node_id: node.map(Into::into),
            level,
            message: format!("message at {at}"),
            data: node.map(|_| json!({"attempt": 1})),
            timestamp: Timestamp::from_millis(at),
            execution_step: u32::from(node.is_some()),
            node_type: node.map(|_| "data.set".into()),
            node_name: node.map(|n| n.to_uppercase()),
        }
    }

    fn id_at(ms: u64, seq: u128) -> String {
        uuid::Uuid::from_u128((u128::from(ms) << 80) | (7 << 76) | (2 << 62) | seq).to_string()
    }

    #[test]
    fn a_batch_keeps_every_field_and_is_small() {
        let first = crate::model::new_id();
        let second = next_log_id(&first, Timestamp::from_millis(1001)).unwrap();
        let third = next_log_id(&second, Timestamp::from_millis(1003)).unwrap();
        let logs = vec![
            log("e1", first.clone(), None, LogLevel::Info, 1000),
            log("e1", second, Some("set"), LogLevel::Info, 1001),
            log("e1", third, Some("set"), LogLevel::Error, 1003),
        ];
        let out = batches(&logs).unwrap();
        assert_eq!(out.len(), 1);
        let b = &out[0];
        assert_eq!(b.first_id, first);
        assert!(b.body.len() < 120, "{} bytes", b.body.len());
        assert_eq!(decode("org", "e1", &b.first_id, &b.body).unwrap(), logs);
    }

    #[test]
    fn batches_split_by_execution_and_span() {
        let logs = vec![
            log("e1", id_at(1_000, 1), None, LogLevel::Info, 1),
            log("e2", id_at(1_000, 2), None, LogLevel::Info, 2),
            log(
                "e1",
                id_at(1_000 + MAX_SPAN_MS + 1, 3),
                None,
                LogLevel::Info,
                3,
            ),
        ];
        let out = batches(&logs).unwrap();
        assert_eq!(out.len(), 3);
        for b in &out {
            let back = decode("org", &b.execution_id, &b.first_id, &b.body).unwrap();
            assert!(back.iter().all(|l| l.execution_id == b.execution_id));
        }
    }

    #[test]
    fn pages_merge_overlapping_batches_in_id_order() {
        // Two jobs of one execution flushed batches whose ids interleave.
        let a: Vec<_> = (0..5)
            .map(|i| log("e", id_at(5_000, i * 2), Some("a"), LogLevel::Info, 1))
            .collect();
        let b: Vec<_> = (0..5)
            .map(|i| log("e", id_at(5_000, i * 2 + 1), Some("b"), LogLevel::Warn, 1))
            .collect();
        let mut stored = batches(&a).unwrap();
        stored.extend(batches(&b).unwrap());
        stored.sort_by(|x, y| x.first_id.cmp(&y.first_id));
        let read = |filter: &LogFilter, limit| {
            let mut pager = LogPager::new(filter, limit);
            for s in &stored {
                if !pager.wants(&s.first_id) {
                    break;
                }
                pager.add(decode("org", "e", &s.first_id, &s.body).unwrap());
            }
            pager.finish()
        };
        let page = read(&LogFilter::default(), 4);
        let ids: Vec<_> = page.items.iter().map(|l| l.id.clone()).collect();
        assert_eq!(ids, (0..4).map(|i| id_at(5_000, i)).collect::<Vec<_>>());
        let next = LogFilter {
            after: page.next_cursor.clone(),
            ..Default::default()
        };
        let rest = read(&next, 100);
        assert_eq!(rest.items.len(), 6);
        assert_eq!(rest.next_cursor, None);
        let warn = LogFilter {
            level: Some(LogLevel::Warn),
            ..Default::default()
        };
        assert!(
            read(&warn, 100)
                .items
                .iter()
                .all(|l| l.node_id.as_deref() == Some("b"))
        );
    }

    #[test]
    fn the_lower_bound_leaves_out_only_batches_that_end_before_the_cursor() {
        let after = id_at(100_000, 5);
        let bound = lower_bound(&after).unwrap();
        assert!(id_at(100_000 - MAX_SPAN_MS, 0) >= bound);
        assert!(id_at(100_000 - MAX_SPAN_MS - 1, u128::MAX >> 80 & 0xfff) < bound);
        assert_eq!(lower_bound("not-a-uuid"), None);
    }

    #[test]
    fn retain_drops_entries_and_empty_batches() {
        let first = crate::model::new_id();
        let logs = vec![
            log("e", first.clone(), None, LogLevel::Info, 1),
            log(
                "e",
                next_log_id(&first, Timestamp::from_millis(2)).unwrap(),
                Some("n"),
                LogLevel::Error,
                2,
            ),
        ];
        let b = &batches(&logs).unwrap()[0];
        let kept = retain("org", "e", &b.first_id, &b.body, |l| {
            l.level == LogLevel::Error
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            decode("org", "e", &kept.first_id, &kept.body).unwrap(),
            vec![logs[1].clone()]
        );
        assert!(
            retain("org", "e", &b.first_id, &b.body, |_| false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode("o", "e", "x", &[0, b'{']).is_err());
        assert!(decode("o", "e", "x", &[0, b'{', b'}']).is_err());
    }
}
