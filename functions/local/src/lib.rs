//! `weconnect`: WeConnect on the embedded default. One process serves the HTTP API and
//! webhook intake, runs a worker pool, the cleanup loop and the schedule runner, all on the
//! SQLite file in the data folder. The binary (`main.rs`) only parses the command line;
//! everything lives here so tests can start the server in-process.

pub mod bench;
pub mod bench_map;
pub mod bench_storage;
pub mod commands;
pub mod schedules;
pub mod settings;
pub mod tempdir;

pub use settings::{Secrets, Settings};

use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weconnect_engine::Engine;
use weconnect_engine::adapters::sqlite;
use weconnect_engine::engine::{Ports, Principal};
use weconnect_engine::http::{AppState, Authenticator, BroadcastWaiter, JwtSecret, router};
use weconnect_engine::ports::{BroadcastEvents, NoScheduleSync, SystemClock};

/// The engine with its workers, cleanup loop and (optionally) schedule runner, without HTTP.
pub struct Runtime {
    pub engine: Engine,
    pub events: BroadcastEvents,
    pub secrets: Secrets,
    shutdown: watch::Sender<bool>,
    workers: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl Runtime {
    /// Opens the store in `settings.data_dir` and starts the workers, the cleanup loop and,
    /// with `schedules`, the schedule runner.
    pub async fn start(settings: &Settings, schedules: bool) -> anyhow::Result<Self> {
        let secrets = Secrets::load(settings)?;
        let data_dir = settings.data_dir.clone();
        let (store, queue) = tokio::task::spawn_blocking(move || sqlite::open(&data_dir))
            .await
            .context("opening the database")?
            .with_context(|| {
                format!(
                    "cannot open the database in {}",
                    settings.data_dir.display()
                )
            })?;
        let events = BroadcastEvents::new(16_384);
        let ports = Ports {
            store,
            queue,
            events: Arc::new(events.clone()),
            schedules: Arc::new(NoScheduleSync),
            clock: Arc::new(SystemClock),
        };
        let engine = Engine::new(ports, settings.engine.clone(), secrets.secret_box.clone());
        let (shutdown, rx) = watch::channel(false);
        let workers = tokio::spawn(weconnect_engine::engine::worker::run_workers(
            engine.clone(),
            settings.workers,
            rx.clone(),
        ));
        let mut background = vec![tokio::spawn(cleanup_loop(
            engine.clone(),
            settings.cleanup_interval,
            rx.clone(),
        ))];
        if schedules {
            background.push(tokio::spawn(schedules::run(
                engine.clone(),
                settings.schedule_interval,
                rx,
            )));
        }
        Ok(Self {
            engine,
            events,
            secrets,
            shutdown,
            workers,
            background,
            grace: settings.shutdown_grace,
        })
    }

    /// Stops taking jobs, lets in-flight ones finish (bounded by the grace period) and
    /// leaves the rest queued.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let mut workers = self.workers;
        if tokio::time::timeout(self.grace, &mut workers)
            .await
            .is_err()
        {
            tracing::warn!("workers did not finish in time; their jobs stay queued");
            workers.abort();
        }
        for task in self.background {
            task.abort();
            let _ = task.await;
        }
    }

    fn shutdown_receiver(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// `sweep()` every `interval` until shutdown.
async fn cleanup_loop(engine: Engine, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        match engine.sweep().await {
            Ok(report) if report != Default::default() => {
                tracing::info!(?report, "cleanup run");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cleanup run failed"),
        }
    }
}

/// The local server: [`Runtime`] plus the HTTP API on a TCP listener.
pub struct Server {
    pub addr: SocketAddr,
    pub runtime: Runtime,
    http: JoinHandle<()>,
}

impl Server {
    /// Starts everything; `settings.port` 0 picks a free port.
    pub async fn start(mut settings: Settings) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((settings.host, settings.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
        let addr = listener.local_addr()?;
        // Callback URLs point at this server unless WECONNECT_PUBLIC_URL says otherwise.
        if settings.engine.public_url == weconnect_engine::EngineConfig::default().public_url {
            settings.engine.public_url = format!("http://{addr}");
        }
        let runtime = Runtime::start(&settings, true).await?;
        let mut state = AppState::new(
            runtime.engine.clone(),
            Authenticator::Jwt(runtime.secrets.jwt.clone()),
            Arc::new(BroadcastWaiter::new(runtime.events.clone())),
        );
        state.limits = settings.http_limits;
        let app = router(state.with_prometheus(settings.metrics));
        let mut rx = runtime.shutdown_receiver();
        let http = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        Ok(Self {
            addr,
            runtime,
            http,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn engine(&self) -> &Engine {
        &self.runtime.engine
    }

    pub fn jwt(&self) -> &JwtSecret {
        &self.runtime.secrets.jwt
    }

    /// A bearer token for `sub` in `org`, valid for a day.
    pub fn token(&self, sub: &str, org: &str) -> anyhow::Result<String> {
        self.jwt()
            .issue(sub, org, 24 * 3600)
            .map_err(|e| anyhow::anyhow!("cannot sign a token: {e}"))
    }

    /// Graceful stop: no new requests, in-flight requests and jobs finish (bounded), the
    /// rest stays queued for the next start.
    pub async fn stop(self) {
        let grace = self.runtime.grace;
        let _ = self.runtime.shutdown.send(true);
        let mut http = self.http;
        if tokio::time::timeout(grace, &mut http).await.is_err() {
            http.abort();
        }
        self.runtime.stop().await;
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The principal of the CLI's own work (`weconnect run`, the benchmark).
pub fn local_principal() -> Principal {
    Principal {
        user_id: "local".into(),
        organization_id: "local".into(),
    }
}

/// `weconnect serve`: runs until Ctrl-C / SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let server = Server::start(settings).await?;
    let secrets = &server.runtime.secrets;
    println!("WeConnect is listening on {}", server.url());
    println!("Data folder: {}", secrets.data_dir.display());
    if secrets.generated_jwt_secret {
        println!(
            "Generated a JWT secret into {} (set WECONNECT_JWT_SECRET to use your own).",
            secrets.jwt_secret_file().display()
        );
    }
    if secrets.generated_encryption_key {
        println!(
            "Generated a credential encryption key into {} (set WECONNECT_ENCRYPTION_KEY to use your own).",
            secrets.encryption_key_file().display()
        );
    }
    let token = server.token("local", "local")?;
    if secrets.generated_jwt_secret || secrets.generated_encryption_key {
        println!("A token for user `local` in organization `local` (valid 24 h):\n{token}");
    }
    // The console signs in with the token in the URL fragment (never sent to the server).
    println!(
        "Console (signed in as `local`): {}/console#token={token}",
        server.url()
    );
    shutdown_signal().await;
    println!("Shutting down: finishing in-flight work; queued jobs resume at the next start.");
    server.stop().await;
    Ok(())
}
