//! `weconnect bench --map N`: one execution of a `flow.map` over N items whose child workflow
//! is one `data.set` node, on an embedded server on a temporary data folder. Prints children
//! per second, the parent's completion time, and the resident memory after the first 1,000
//! children and at the end (issue 9's benchmark: ≥ 1,500 children/s on 2 cores, memory flat).

use crate::{Server, Settings};
use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::fmt;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use weconnect_engine::engine::Principal;

/// How long the server idles after the end before the last memory reading.
pub const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct MapBenchOptions {
    /// Items of the map (children).
    pub items: usize,
    /// Children running at once (`concurrency`, 1–100).
    pub concurrency: u32,
    /// Engine workers (None: as `serve`).
    pub workers: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapBenchReport {
    pub items: usize,
    pub succeeded: u64,
    pub concurrency: u32,
    pub workers: usize,
    pub elapsed: Duration,
    pub children_per_sec: f64,
    /// Resident memory when 1,000 children had finished (bytes; 0 below 1,000 items).
    pub rss_after_first_1000: u64,
    /// When the last child had finished (before the parent gathered the results).
    pub rss_children_done: u64,
    /// When the parent had completed.
    pub rss_at_end: u64,
    /// [`SETTLE`] after that, idle.
    pub rss_settled: u64,
}

impl fmt::Display for MapBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "flow.map over {} items ({} succeeded), concurrency {}, {} workers",
            self.items, self.succeeded, self.concurrency, self.workers
        )?;
        writeln!(
            f,
            "parent completed in    : {:.2} s",
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "children/s             : {:.0}", self.children_per_sec)?;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let ratio = |b: u64| {
            if self.rss_after_first_1000 > 0 {
                b as f64 / self.rss_after_first_1000 as f64
            } else {
                0.0
            }
        };
        writeln!(
            f,
            "resident memory        : {:.1} MiB after 1,000 children, {:.1} MiB after the last ({:.2}x)",
            mib(self.rss_after_first_1000),
            mib(self.rss_children_done),
            ratio(self.rss_children_done),
        )?;
        write!(
            f,
            "                         {:.1} MiB when the parent completed ({:.2}x), {:.1} MiB {} s later ({:.2}x)",
            mib(self.rss_at_end),
            ratio(self.rss_at_end),
            mib(self.rss_settled),
            SETTLE.as_secs(),
            ratio(self.rss_settled),
        )
    }
}

/// Resident memory of this process (bytes), from /proc; 0 elsewhere.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn map_workflow(concurrency: u32) -> Value {
    json!({
        "name": "Map bench",
        "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "each", "name": "Each", "type": "flow.map",
             "parameters": {"items": "{{ trigger.items }}", "concurrency": concurrency,
                            "workflow": {
                                "nodes": [
                                    {"id": "in", "name": "In", "type": "trigger.manual"},
                                    {"id": "set", "name": "Set", "type": "data.set",
                                     "parameters": {"values": {"n": "{{ json.item }}"}}}
                                ],
                                "connections": [{"source": "in", "target": "set"}]
                            }}}
        ],
        "connections": [{"source": "start", "target": "each"}]
    })
}

pub async fn run(options: MapBenchOptions) -> anyhow::Result<MapBenchReport> {
    if options.items == 0 || options.items > weconnect_engine::model::MAX_MAP_ITEMS {
        bail!(
            "items must be from 1 to {}",
            weconnect_engine::model::MAX_MAP_ITEMS
        );
    }
    let tmp = crate::tempdir::TempDir::new("weconnect-bench-map")?;
    let mut settings = Settings::new(tmp.path());
    settings.port = 0;
    let from_env = Settings::from_env()?;
    settings.workers = options.workers.unwrap_or(from_env.workers).max(1);
    settings.engine = from_env.engine;
    settings.shutdown_grace = Duration::from_secs(2);
    let workers = settings.workers;
    let server = Server::start(settings).await?;
    let result = drive(&server, &options, workers).await;
    server.stop().await;
    result
}

async fn drive(
    server: &Server,
    options: &MapBenchOptions,
    workers: usize,
) -> anyhow::Result<MapBenchReport> {
    let engine = server.engine().clone();
    let who = Principal {
        user_id: "bench".into(),
        organization_id: "bench".into(),
    };
    let def = serde_json::from_value(map_workflow(options.concurrency))
        .context("the benchmark's workflow")?;
    let wf = engine.create_workflow(&who, def).await?;
    let items: Vec<usize> = (0..options.items).collect();
    // The parent's end comes as an event: polling its status would read its output (all
    // the results), which is the reader's memory, not the engine's.
    let mut events = server.runtime.events.subscribe();
    let started = Instant::now();
    let (exec, _) = engine
        .start_execution(weconnect_engine::engine::StartRequest {
            principal: who.clone(),
            workflow_id: wf.id.clone(),
            mode: weconnect_engine::model::ExecutionMode::Api,
            input: json!({ "items": items }),
            timeout_ms: Some(3_600_000),
            idempotency_key: None,
            start_node_id: None,
            priority: None,
        })
        .await?;
    let (mut rss_after_first_1000, mut rss_children_done) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) if e.execution_id == exec.id => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => bail!("the server stopped"),
            },
            _ = tick.tick(), if rss_children_done == 0 => {
                let done = engine
                    .store()
                    .get_child_tally("bench", &exec.id, "each")
                    .await?
                    .map_or(0, |t| t.done as usize);
                if rss_after_first_1000 == 0 && options.items >= 1_000 && done >= 1_000 {
                    rss_after_first_1000 = rss_bytes();
                }
                if done >= options.items {
                    rss_children_done = rss_bytes();
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let rss_at_end = rss_bytes();
    // Memory freed at the end goes back to the system within moments, not at once.
    tokio::time::sleep(SETTLE).await;
    let rss_settled = rss_bytes();
    let detail = engine.execution_detail(&who, &exec.id).await?;
    let each = detail
        .nodes
        .iter()
        .find(|n| n.node_id == "each")
        .and_then(|n| n.output.clone())
        .unwrap_or(Value::Null);
    Ok(MapBenchReport {
        items: options.items,
        succeeded: each["succeeded"].as_u64().unwrap_or(0),
        concurrency: options.concurrency,
        workers,
        elapsed,
        children_per_sec: options.items as f64 / elapsed.as_secs_f64(),
        rss_after_first_1000,
        rss_children_done,
        rss_at_end,
        rss_settled,
    })
}
