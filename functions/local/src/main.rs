//! `weconnect`: the command line. Everything else lives in the library (`lib.rs`).

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use weconnect::{Settings, bench, commands};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weconnect",
    version,
    about = "WeConnect workflow engine on the embedded default (SQLite)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, webhooks, workers, schedules and cleanup (WECONNECT_* variables).
    Serve,
    /// Print a bearer token signed with the server's JWT secret.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        org: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
    /// Check a workflow file offline (same messages as the API).
    Validate { file: PathBuf },
    /// Run a workflow once to completion on a temporary store; print the execution as JSON.
    Run {
        file: PathBuf,
        /// The execution's input (JSON).
        #[arg(long)]
        input: Option<String>,
    },
    /// Benchmark: N webhook executions of a webhook → data.set workflow at concurrency C.
    Bench {
        #[arg(short = 'n', long, default_value_t = 20_000)]
        executions: usize,
        #[arg(short = 'c', long, default_value_t = 16)]
        concurrency: usize,
        /// Engine workers; default as `serve`: WECONNECT_WORKERS, else the number of cores.
        #[arg(short = 'w', long)]
        workers: Option<usize>,
        /// Instead: one flow.map over this many items (a one-node child workflow each);
        /// prints children per second and memory.
        #[arg(long)]
        map: Option<usize>,
        /// Children of the map running at once (1–100).
        #[arg(long, default_value_t = 100)]
        map_concurrency: u32,
        /// The workflow's `settings.concurrency.limit` (1–1000; none by default): measures
        /// what the concurrency bookkeeping costs.
        #[arg(long)]
        limit: Option<u32>,
        /// Clients following executions live (`GET /executions/{id}/events`, SSE) while the
        /// benchmark runs, each watching one new execution after another.
        #[arg(long, default_value_t = 0)]
        subscribers: usize,
        /// Instead: a storage run of this many executions (file size, bytes per execution,
        /// route latencies at 10 k, 100 k, ... and the file after pruning the older half).
        #[arg(long)]
        storage: Option<usize>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = if matches!(cli.command, Command::Serve) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::from_env()?;
    match cli.command {
        Command::Serve => weconnect::serve(settings).await?,
        Command::Token { sub, org, ttl } => {
            println!("{}", commands::token(&settings, &sub, &org, ttl)?)
        }
        Command::Validate { file } => {
            commands::validate(&file)?;
            println!("{}: valid", file.display());
        }
        Command::Run { file, input } => {
            let input = input
                .map(|i| serde_json::from_str(&i))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--input is not JSON: {e}"))?;
            let detail = commands::run(&settings, &file, input).await?;
            println!("{}", serde_json::to_string_pretty(&detail)?);
            if detail.execution.status.as_str() != "success" {
                std::process::exit(1);
            }
        }
        Command::Bench {
            storage: Some(executions),
            concurrency,
            workers,
            ..
        } => {
            let options = weconnect::bench_storage::StorageOptions {
                executions,
                concurrency,
                workers,
            };
            println!("{}", weconnect::bench_storage::run(options).await?);
        }
        Command::Bench {
            map: Some(items),
            map_concurrency,
            workers,
            ..
        } => {
            let options = weconnect::bench_map::MapBenchOptions {
                items,
                concurrency: map_concurrency,
                workers,
            };
            println!("{}", weconnect::bench_map::run(options).await?);
        }
        Command::Bench {
            executions,
            concurrency,
            workers,
            limit,
            subscribers,
            ..
        } => {
            let options = bench::BenchOptions {
                executions,
                concurrency,
                workers,
                progress: true,
                concurrency_limit: limit,
                subscribers,
            };
            println!("{}", bench::run(options).await?);
        }
    }
    Ok(())
}
