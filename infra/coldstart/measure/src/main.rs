//! `coldstart`: measures the init time of Lambda bootstrap binaries, i.e. the time from
//! process start to its first Runtime API `GET /2018-06-01/runtime/invocation/next`, against
//! a tiny local Runtime API (this process). That request is where a function's init ends on
//! Lambda: everything before it (config, SDK clients, engine, router) is the init phase.
//!
//! ```text
//! coldstart [--dir target/lambda] [--runs 30] [--max-ratio 1.25] [name ...]
//! ```
//!
//! Each `name` is run as `{dir}/{name}/bootstrap` (cargo lambda's output layout). Default
//! names: the two references (`coldstart-hello`, `coldstart-sdk-floor`) and the four
//! functions. Runs are interleaved (one of each binary per round, after one discarded warm-up
//! round) so that load on the machine affects every binary alike. Every process gets the
//! same clean environment: what Lambda sets, plus the functions' variables. The `next`
//! request is never answered; the process is killed once it arrived.
//!
//! Prints a Markdown table (min, median, p90 in ms, and the median's ratio to the SDK floor)
//! and exits 1 when a function's median exceeds `--max-ratio` × the floor's.

use anyhow::{Context as _, bail};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

const HELLO: &str = "coldstart-hello";
const FLOOR: &str = "coldstart-sdk-floor";
const FUNCTIONS: [&str; 4] = ["api", "webhook", "worker", "cleanup"];
const NEXT: &[u8] = b"GET /2018-06-01/runtime/invocation/next";
const INIT_ERROR: &[u8] = b"POST /2018-06-01/runtime/init/error";

enum Seen {
    Next(Instant),
    InitError(String),
}

struct Options {
    dir: PathBuf,
    runs: usize,
    max_ratio: f64,
    names: Vec<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        dir: PathBuf::from("target/lambda"),
        runs: 30,
        max_ratio: 1.25,
        names: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => o.dir = PathBuf::from(args.next().context("--dir needs a value")?),
            "--runs" => o.runs = args.next().context("--runs needs a value")?.parse()?,
            "--max-ratio" => {
                o.max_ratio = args.next().context("--max-ratio needs a value")?.parse()?
            }
            "-h" | "--help" => {
                println!(
                    "coldstart [--dir target/lambda] [--runs 30] [--max-ratio 1.25] [name ...]"
                );
                std::process::exit(0);
            }
            name => o.names.push(name.to_string()),
        }
    }
    if o.names.is_empty() {
        o.names = [HELLO, FLOOR]
            .into_iter()
            .chain(FUNCTIONS)
            .map(str::to_string)
            .collect();
    }
    if o.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(o)
}

/// The local Runtime API: reports each `next` request (and init errors), never answers
/// `next`. Connections are kept open until their process is killed.
fn serve(listener: TcpListener, seen: Sender<Seen>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let seen = seen.clone();
        std::thread::spawn(move || read_request(stream, seen));
    }
}

fn read_request(mut stream: TcpStream, seen: Sender<Seen>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        head.extend_from_slice(&buf[..n]);
        if head.len() >= NEXT.len().max(INIT_ERROR.len())
            || head.windows(4).any(|w| w == b"\r\n\r\n")
        {
            break;
        }
    }
    if head.starts_with(NEXT) {
        let _ = seen.send(Seen::Next(Instant::now()));
        // Hold the connection: the process waits for an event until it is killed.
        let _ = stream.read(&mut buf);
    } else if head.starts_with(INIT_ERROR) {
        let _ = stream
            .read(&mut buf)
            .map(|n| head.extend_from_slice(&buf[..n]));
        let _ = seen.send(Seen::InitError(String::from_utf8_lossy(&head).into_owned()));
        use std::io::Write;
        let _ = stream.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
    }
}

/// The environment of every process: Lambda's own variables and the functions' settings
/// (dummy resources; nothing is called at init).
fn environment(runtime_api: &str, name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]coldstart".into(),
        ),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("_HANDLER", "bootstrap".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDCOLDSTART".into()),
        ("AWS_SECRET_ACCESS_KEY", "coldstart-secret".into()),
        ("AWS_SESSION_TOKEN", "coldstart-token".into()),
        ("TABLE_NAME", "weconnect-Table".into()),
        (
            "QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/weconnect-JobQueue".into(),
        ),
        (
            "QUEUE_ARN",
            "arn:aws:sqs:us-east-1:123456789012:weconnect-JobQueue".into(),
        ),
        (
            "DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/weconnect-DeadLetterQueue".into(),
        ),
        ("EVENT_BUS_NAME", "weconnect-events".into()),
        ("ORG_CLAIM", "org".into()),
        ("RETENTION_DAYS", "30".into()),
        (
            "WECONNECT_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ),
    ]
}

/// One cold start of `binary`: process start → first `next` request.
fn measure(
    binary: &PathBuf,
    name: &str,
    runtime_api: &str,
    seen: &Receiver<Seen>,
) -> anyhow::Result<Duration> {
    while seen.try_recv().is_ok() {}
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(environment(runtime_api, name))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let result = match seen.recv_timeout(Duration::from_secs(10)) {
        Ok(Seen::Next(at)) => Ok(at.duration_since(started)),
        Ok(Seen::InitError(text)) => Err(anyhow::anyhow!("{name} failed its init: {text}")),
        Err(_) => Err(anyhow::anyhow!(
            "{name} made no `next` request within 10 s (exit status: {:?})",
            child.try_wait().ok().flatten()
        )),
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let runtime_api = listener.local_addr()?.to_string();
    let (tx, rx) = channel();
    std::thread::spawn(move || serve(listener, tx));

    let binaries: Vec<(String, PathBuf)> = o
        .names
        .iter()
        .map(|n| (n.clone(), o.dir.join(n).join("bootstrap")))
        .collect();
    for (name, path) in &binaries {
        if !path.is_file() {
            bail!(
                "{} not found ({name}); build it first (infra/coldstart.sh)",
                path.display()
            );
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); binaries.len()];
    for round in 0..=o.runs {
        for (i, (name, path)) in binaries.iter().enumerate() {
            let d = measure(path, name, &runtime_api, &rx)?;
            if round > 0 {
                samples[i].push(d);
            }
        }
    }

    let medians: Vec<Duration> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            percentile(s, 0.5)
        })
        .collect();
    let floor = binaries
        .iter()
        .position(|(n, _)| n == FLOOR)
        .map(|i| medians[i]);
    println!(
        "init time, process start → first `next` request ({} runs each, {})",
        o.runs,
        o.dir.display()
    );
    println!();
    println!("| binary | size (KiB) | min ms | median ms | p90 ms | median / SDK floor |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut over = Vec::new();
    for (i, (name, path)) in binaries.iter().enumerate() {
        let s = &samples[i];
        let size = std::fs::metadata(path).map(|m| m.len() / 1024).unwrap_or(0);
        let ratio = floor.map(|f| ms(medians[i]) / ms(f));
        println!(
            "| {name} | {size} | {:.2} | {:.2} | {:.2} | {} |",
            ms(s[0]),
            ms(medians[i]),
            ms(percentile(s, 0.9)),
            ratio.map_or("–".to_string(), |r| format!("{r:.2}×"))
        );
        if FUNCTIONS.contains(&name.as_str()) && ratio.is_some_and(|r| r > o.max_ratio) {
            over.push(name.clone());
        }
    }
    if !over.is_empty() {
        eprintln!(
            "\nabove {}× the SDK floor: {}",
            o.max_ratio,
            over.join(", ")
        );
        std::process::exit(1);
    }
    Ok(())
}
