//! `weconnect bench`: an embedded server on a temporary data folder, a webhook → `data.set`
//! workflow, N webhook calls at concurrency C, and the figures once every execution finished.

use crate::{Server, Settings};
use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use weconnect_engine::adapters::sqlite;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Webhook calls (= executions).
    pub executions: usize,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Engine workers (None: as `serve`, WECONNECT_WORKERS or the number of cores).
    pub workers: Option<usize>,
    /// Show progress bars.
    pub progress: bool,
    /// The workflow's `settings.concurrency.limit` (None: no limit).
    pub concurrency_limit: Option<u32>,
    /// SSE clients following executions while they run (0: none).
    pub subscribers: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub executions: usize,
    pub succeeded: usize,
    pub concurrency: usize,
    pub workers: usize,
    pub elapsed: Duration,
    pub executions_per_sec: f64,
    pub webhook_p50_ms: f64,
    pub webhook_p99_ms: f64,
    pub finish_p50_ms: f64,
    pub finish_p99_ms: f64,
    /// The workflow's concurrency limit, if any.
    pub concurrency_limit: Option<u32>,
    /// Growth of the database file (write-ahead log checkpointed) per execution.
    pub stored_bytes_per_execution: f64,
    pub subscribers: usize,
    /// Executions the subscribers followed to their end, and the events they received.
    pub streams_followed: u64,
    pub events_streamed: u64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} executions ({} succeeded), concurrency {}, {} workers, in {:.2} s",
            self.executions,
            self.succeeded,
            self.concurrency,
            self.workers,
            self.elapsed.as_secs_f64()
        )?;
        if let Some(limit) = self.concurrency_limit {
            writeln!(f, "settings.concurrency   : limit {limit}")?;
        }
        if self.subscribers > 0 {
            writeln!(
                f,
                "live subscribers       : {} ({} streams followed to the end, {} events)",
                self.subscribers, self.streams_followed, self.events_streamed
            )?;
        }
        writeln!(f, "completed executions/s : {:.0}", self.executions_per_sec)?;
        writeln!(
            f,
            "webhook latency        : p50 {:.2} ms, p99 {:.2} ms",
            self.webhook_p50_ms, self.webhook_p99_ms
        )?;
        writeln!(
            f,
            "start-to-finish        : p50 {:.2} ms, p99 {:.2} ms",
            self.finish_p50_ms, self.finish_p99_ms
        )?;
        write!(
            f,
            "stored bytes/execution : {:.0}",
            self.stored_bytes_per_execution
        )
    }
}

/// The benchmark's workflow: a webhook that builds one object; with `limit`, at most that
/// many running at once (`settings.concurrency`).
pub fn bench_workflow(limit: Option<u32>) -> Value {
    let mut wf = json!({
        "name": "Bench",
        "status": "active",
        "nodes": [
            {"id": "hook", "name": "Hook", "type": "trigger.webhook", "parameters": {"method": "POST"}},
            {"id": "set", "name": "Set", "type": "data.set",
             "parameters": {"values": {"n": "{{ trigger.body.n }}", "ok": true}}}
        ],
        "connections": [{"source": "hook", "target": "set"}]
    });
    if let Some(limit) = limit {
        wf["settings"] = json!({"concurrency": {"limit": limit}});
    }
    wf
}

/// Creates [`bench_workflow`] through the API; returns its webhook's URL.
pub async fn create_bench_workflow(
    server: &Server,
    client: &reqwest::Client,
    token: &str,
    limit: Option<u32>,
) -> anyhow::Result<String> {
    let created: Value = client
        .post(format!("{}/workflows", server.url()))
        .bearer_auth(token)
        .json(&bench_workflow(limit))
        .send()
        .await?
        .error_for_status()
        .context("creating the benchmark workflow")?
        .json()
        .await?;
    let hook = created["nodes"][0]["parameters"]["path"]
        .as_str()
        .ok_or_else(|| anyhow!("the created workflow has no webhook path"))?;
    Ok(format!("{}/webhook/{hook}", server.url()))
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

pub async fn run(options: BenchOptions) -> anyhow::Result<BenchReport> {
    if options.executions == 0 || options.concurrency == 0 {
        bail!("executions and concurrency must be at least 1");
    }
    let tmp = crate::tempdir::TempDir::new("weconnect-bench")?;
    let mut settings = Settings::new(tmp.path());
    settings.port = 0;
    // The server runs as `serve` would in this environment (WECONNECT_WORKERS,
    // WECONNECT_JOBS_PER_WORKER, ...), on a fresh data folder and a free port.
    let from_env = Settings::from_env()?;
    settings.workers = options.workers.unwrap_or(from_env.workers).max(1);
    settings.engine = from_env.engine;
    settings.shutdown_grace = Duration::from_secs(2);
    let workers = settings.workers;
    let server = Server::start(settings).await?;
    let db = tmp.path().join(sqlite::DB_FILE_NAME);
    let result = drive(&server, &options, workers, &db).await;
    server.stop().await;
    result
}

/// The database file's size with its write-ahead log checkpointed.
pub async fn db_size(db: &Path) -> anyhow::Result<u64> {
    let db = db.to_path_buf();
    Ok(tokio::task::spawn_blocking(move || sqlite::checkpointed_size(&db)).await??)
}

async fn drive(
    server: &Server,
    options: &BenchOptions,
    workers: usize,
    db: &Path,
) -> anyhow::Result<BenchReport> {
    let token = server.token("bench", "bench")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let hook_url =
        create_bench_workflow(server, &client, &token, options.concurrency_limit).await?;
    let size_before = db_size(db).await?;

    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let new_bar = |prefix: &'static str| {
        let bar = if options.progress {
            bars.add(ProgressBar::new(options.executions as u64))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(style.clone());
        bar.set_prefix(prefix);
        bar
    };
    let sent_bar = new_bar("accepted");
    let (ids, followed) = subscribe(server, &client, &token, options.subscribers);
    let done_bar = new_bar("finished");

    // Terminal events → when and how each execution ended.
    let finished: Arc<Mutex<HashMap<String, (Instant, bool)>>> = Arc::default();
    let mut events = server.runtime.events.subscribe();
    let listener = {
        let finished = finished.clone();
        let done_bar = done_bar.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) if ev.status.is_terminal() => {
                        let ok = ev.status.as_str() == "success";
                        if let Ok(mut f) = finished.lock() {
                            f.insert(ev.execution_id, (Instant::now(), ok));
                        }
                        done_bar.inc(1);
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "event listener lagged")
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    };

    let started = Instant::now();
    let calls: Vec<anyhow::Result<(String, Instant, Duration)>> =
        futures::stream::iter(0..options.executions)
            .map(|n| {
                let client = client.clone();
                let url = hook_url.clone();
                let sent_bar = sent_bar.clone();
                let ids = ids.clone();
                async move {
                    let sent = Instant::now();
                    let response = client.post(&url).json(&json!({"n": n})).send().await?;
                    let latency = sent.elapsed();
                    if response.status().as_u16() != 202 {
                        bail!("webhook answered {}", response.status());
                    }
                    let body: Value = response.json().await?;
                    sent_bar.inc(1);
                    let id = body["executionId"]
                        .as_str()
                        .ok_or_else(|| anyhow!("no executionId in {body}"))?;
                    if let Some(ids) = &ids {
                        ids.send_replace(Some(id.to_string()));
                    }
                    Ok((id.to_string(), sent, latency))
                }
            })
            .buffer_unordered(options.concurrency)
            .collect()
            .await;
    let calls: Vec<(String, Instant, Duration)> = calls.into_iter().collect::<Result<_, _>>()?;
    sent_bar.finish();

    let wait_until = Instant::now() + Duration::from_secs(300);
    loop {
        let done = finished.lock().map(|f| f.len()).unwrap_or(0);
        if done >= calls.len() {
            break;
        }
        if Instant::now() > wait_until {
            bail!(
                "only {done} of {} executions finished within 300 s",
                calls.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done_bar.finish();
    listener.abort();
    drop(ids);
    let (streams_followed, events_streamed) = followed.finish().await;
    // What the executions left in the file (the queue's rows are gone once acknowledged).
    let size_after = db_size(db).await?;

    let finished = finished.lock().map(|f| f.clone()).unwrap_or_default();
    let last = finished
        .values()
        .map(|(at, _)| *at)
        .max()
        .unwrap_or_else(Instant::now);
    let elapsed = last.duration_since(started);
    let mut webhook: Vec<Duration> = calls.iter().map(|c| c.2).collect();
    let mut to_finish: Vec<Duration> = calls
        .iter()
        .filter_map(|(id, sent, _)| finished.get(id).map(|(at, _)| at.duration_since(*sent)))
        .collect();
    webhook.sort_unstable();
    to_finish.sort_unstable();
    let succeeded = calls
        .iter()
        .filter(|(id, _, _)| finished.get(id).is_some_and(|(_, ok)| *ok))
        .count();
    Ok(BenchReport {
        executions: calls.len(),
        succeeded,
        concurrency: options.concurrency,
        workers,
        elapsed,
        executions_per_sec: calls.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        webhook_p50_ms: percentile(&webhook, 0.5),
        webhook_p99_ms: percentile(&webhook, 0.99),
        finish_p50_ms: percentile(&to_finish, 0.5),
        finish_p99_ms: percentile(&to_finish, 0.99),
        concurrency_limit: options.concurrency_limit,
        stored_bytes_per_execution: size_after.saturating_sub(size_before) as f64
            / calls.len().max(1) as f64,
        subscribers: options.subscribers,
        streams_followed,
        events_streamed,
    })
}

/// The live subscribers: `n` SSE clients open at all times while the benchmark runs, like
/// people watching the console: each follows the newest accepted execution no other
/// subscriber follows (set on the returned channel) to its end, then the newest one then.
fn subscribe(
    server: &Server,
    client: &reqwest::Client,
    token: &str,
    n: usize,
) -> (
    Option<tokio::sync::watch::Sender<Option<String>>>,
    Subscribers,
) {
    if n == 0 {
        return (None, Subscribers(Vec::new()));
    }
    let (tx, rx) = tokio::sync::watch::channel::<Option<String>>(None);
    let taken: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let tasks = (0..n)
        .map(|_| {
            let (mut rx, client, token) = (rx.clone(), client.clone(), token.to_string());
            let taken = taken.clone();
            let base = server.url();
            tokio::spawn(async move {
                let (mut streams, mut events) = (0u64, 0u64);
                loop {
                    // A newer execution than the last one followed; none once the run is over.
                    if rx.changed().await.is_err() {
                        return (streams, events);
                    }
                    let Some(id) = rx.borrow_and_update().clone() else {
                        continue;
                    };
                    if !taken.lock().is_ok_and(|mut t| t.insert(id.clone())) {
                        continue;
                    }
                    let Ok(mut response) = client
                        .get(format!("{base}/executions/{id}/events"))
                        .bearer_auth(&token)
                        .send()
                        .await
                    else {
                        continue;
                    };
                    while let Ok(Some(chunk)) = response.chunk().await {
                        events +=
                            String::from_utf8_lossy(&chunk).matches("\nevent: ").count() as u64;
                    }
                    streams += 1;
                }
            })
        })
        .collect();
    (Some(tx), Subscribers(tasks))
}

/// The subscribers' tasks: they end once the channel is closed and drained.
struct Subscribers(Vec<tokio::task::JoinHandle<(u64, u64)>>);

impl Subscribers {
    /// (streams followed to the end, events received)
    async fn finish(self) -> (u64, u64) {
        let mut total = (0, 0);
        for task in self.0 {
            if let Ok((streams, events)) = task.await {
                total.0 += streams;
                total.1 += events;
            }
        }
        total
    }
}
