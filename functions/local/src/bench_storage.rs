//! `weconnect bench --storage N`: the footprint of N executions of the benchmark workflow on
//! the embedded store (SPEC §14). At 10 k, 100 k, ... and N executions it prints the file
//! size (write-ahead log checkpointed), the bytes per execution, and the latency of the
//! routes that must not grow with the store (statistics, monitoring health, the first page
//! of the list); then it prunes the older half as the cleanup run does, gives the space back
//! and prints the file size again. The save policy is the environment's
//! (`EXECUTIONS_DATA_SAVE_ON_SUCCESS`).

use crate::bench::{create_bench_workflow, db_size};
use crate::{Server, Settings};
use anyhow::{anyhow, bail};
use futures::StreamExt as _;
use serde_json::{Value, json};
use std::fmt;
use std::time::{Duration, Instant};
use weconnect_engine::adapters::sqlite;
use weconnect_engine::model::Timestamp;
use weconnect_engine::ports::{Clock as _, SystemClock};

#[derive(Debug, Clone)]
pub struct StorageOptions {
    pub executions: usize,
    pub concurrency: usize,
    pub workers: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub executions: usize,
    pub file_bytes: u64,
    pub bytes_per_execution: f64,
    pub statistics_ms: f64,
    pub health_ms: f64,
    pub list_ms: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StorageReport {
    pub policy: String,
    pub checkpoints: Vec<Checkpoint>,
    pub pruned: u64,
    pub peak_bytes: u64,
    pub after_prune_bytes: u64,
    pub elapsed: Duration,
}

impl fmt::Display for StorageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "storage run: webhook → data.set executions, save policy {}, in {:.0} s",
            self.policy,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "{:>10} | {:>10} | {:>15} | {:>13} | {:>10} | {:>9}",
            "executions", "file MB", "bytes/execution", "statistics ms", "health ms", "list ms"
        )?;
        for c in &self.checkpoints {
            writeln!(
                f,
                "{:>10} | {:>10.1} | {:>15.0} | {:>13.2} | {:>10.2} | {:>9.2}",
                c.executions,
                c.file_bytes as f64 / 1e6,
                c.bytes_per_execution,
                c.statistics_ms,
                c.health_ms,
                c.list_ms
            )?;
        }
        write!(
            f,
            "pruned the older {} executions: file {:.1} MB → {:.1} MB ({:.0}% of its peak)",
            self.pruned,
            self.peak_bytes as f64 / 1e6,
            self.after_prune_bytes as f64 / 1e6,
            100.0 * self.after_prune_bytes as f64 / self.peak_bytes.max(1) as f64
        )
    }
}

/// Where the run stops to measure: 10 k, 100 k, ... below `n`, then `n`.
fn checkpoints(n: usize) -> Vec<usize> {
    let mut at: Vec<usize> = std::iter::successors(Some(10_000usize), |x| x.checked_mul(10))
        .take_while(|x| *x < n)
        .collect();
    at.push(n);
    at
}

pub async fn run(options: StorageOptions) -> anyhow::Result<StorageReport> {
    if options.executions < 2 || options.concurrency == 0 {
        bail!("at least 2 executions and a concurrency of 1");
    }
    let tmp = crate::tempdir::TempDir::new("weconnect-bench-storage")?;
    let mut settings = Settings::new(tmp.path());
    settings.port = 0;
    let from_env = Settings::from_env()?;
    settings.workers = options.workers.unwrap_or(from_env.workers).max(1);
    settings.engine = from_env.engine;
    settings.shutdown_grace = Duration::from_secs(2);
    let policy = format!("{:?}", settings.engine.save_data_on_success).to_lowercase();
    let server = Server::start(settings).await?;
    let db = tmp.path().join(sqlite::DB_FILE_NAME);
    let result = drive(&server, &options, &db, policy).await;
    server.stop().await;
    result
}

async fn drive(
    server: &Server,
    options: &StorageOptions,
    db: &std::path::Path,
    policy: String,
) -> anyhow::Result<StorageReport> {
    let started = Instant::now();
    let token = server.token("bench", "bench")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .build()?;
    let api = |path: &str| {
        client
            .get(format!("{}{path}", server.url()))
            .bearer_auth(&token)
    };
    let hook_url = create_bench_workflow(server, &client, &token, None).await?;
    let empty = db_size(db).await?;

    let half = options.executions / 2;
    let mut half_at: Option<Timestamp> = None;
    let mut sent = 0usize;
    let mut report = StorageReport {
        policy,
        checkpoints: Vec::new(),
        pruned: 0,
        peak_bytes: 0,
        after_prune_bytes: 0,
        elapsed: Duration::ZERO,
    };
    let mut stops = checkpoints(options.executions);
    if !stops.contains(&half) {
        stops.push(half);
        stops.sort_unstable();
    }
    for stop in stops {
        let failures: usize = futures::stream::iter(sent..stop)
            .map(|n| {
                let client = client.clone();
                let url = hook_url.clone();
                async move {
                    match client.post(&url).json(&json!({"n": n})).send().await {
                        Ok(r) if r.status().as_u16() == 202 => 0usize,
                        _ => 1,
                    }
                }
            })
            .buffer_unordered(options.concurrency)
            .fold(0, |a, b| async move { a + b })
            .await;
        if failures > 0 {
            bail!("{failures} webhook calls were not accepted");
        }
        sent = stop;
        wait_finished(&api, sent).await?;
        if stop == half {
            half_at = Some(SystemClock.now());
        }
        if stop == half && !checkpoints(options.executions).contains(&stop) {
            continue;
        }
        let file_bytes = db_size(db).await?;
        report.checkpoints.push(Checkpoint {
            executions: sent,
            file_bytes,
            bytes_per_execution: file_bytes.saturating_sub(empty) as f64 / sent as f64,
            statistics_ms: median_ms(&api, "/executions/statistics").await?,
            health_ms: median_ms(&api, "/monitoring/health").await?,
            list_ms: median_ms(&api, "/executions?limit=20").await?,
        });
        eprintln!("{sent} executions stored and measured");
    }
    report.peak_bytes = db_size(db).await?;

    // The cleanup run's retention, as if the older half had aged past it.
    let before = half_at.ok_or_else(|| anyhow!("the run never reached half"))?;
    let store = server.runtime.engine.store();
    loop {
        let pruned = store.prune(before, before, 10_000).await?;
        report.pruned += pruned.executions;
        if pruned.executions == 0 && pruned.idempotency_keys == 0 {
            break;
        }
    }
    store.reclaim_space(u64::MAX).await?;
    report.after_prune_bytes = db_size(db).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Polls the statistics until `n` executions finished.
async fn wait_finished(
    api: &impl Fn(&str) -> reqwest::RequestBuilder,
    n: usize,
) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(600);
    loop {
        let stats: Value = api("/executions/statistics").send().await?.json().await?;
        let done: u64 = ["success", "failed", "cancelled", "timeout"]
            .iter()
            .map(|s| stats["byStatus"][s].as_u64().unwrap_or(0))
            .sum();
        if done as usize >= n {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("only {done} of {n} executions finished within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The median latency of 9 calls of a route.
async fn median_ms(
    api: &impl Fn(&str) -> reqwest::RequestBuilder,
    path: &str,
) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        api(path).send().await?.error_for_status()?.bytes().await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_powers_of_ten_then_the_total() {
        assert_eq!(checkpoints(1_000_000), vec![10_000, 100_000, 1_000_000]);
        assert_eq!(checkpoints(50_000), vec![10_000, 50_000]);
        assert_eq!(checkpoints(5_000), vec![5_000]);
    }
}
