//! A local HTTP server that test workflows call: it records every request and answers with
//! scripted statuses, so a test can count external calls and make them fail on purpose.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// Per path: statuses to answer with, in order; then 200.
    script: HashMap<String, VecDeque<u16>>,
    /// Per path: answer this status forever (after the script).
    fixed: HashMap<String, u16>,
    delay: HashMap<String, Duration>,
}

#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Sink {
    pub async fn start() -> Sink {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{*path}", any(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let addr = listener.local_addr().expect("sink address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink { addr, inner }
    }

    /// `http://127.0.0.1:{port}/{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Answer the next requests to `path` with these statuses, then 200 (or the fixed one).
    pub fn script(&self, path: &str, statuses: &[u16]) {
        let mut inner = self.inner.lock().expect("sink lock");
        inner
            .script
            .insert(norm(path), statuses.iter().copied().collect());
    }

    /// Answer every request to `path` with `status` (after any script).
    pub fn always(&self, path: &str, status: u16) {
        self.inner
            .lock()
            .expect("sink lock")
            .fixed
            .insert(norm(path), status);
    }

    pub fn delay(&self, path: &str, by: Duration) {
        self.inner
            .lock()
            .expect("sink lock")
            .delay
            .insert(norm(path), by);
    }

    pub fn calls(&self, path: &str) -> Vec<Call> {
        let p = norm(path);
        self.inner
            .lock()
            .expect("sink lock")
            .calls
            .iter()
            .filter(|c| c.path == p)
            .cloned()
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.calls(path).len()
    }

    pub fn total(&self) -> usize {
        self.inner.lock().expect("sink lock").calls.len()
    }
}

fn norm(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let path = norm(&path);
    let (status, delay) = {
        let mut g = inner.lock().expect("sink lock");
        g.calls.push(Call {
            path: path.clone(),
            headers: headers.clone(),
            body: body.clone(),
            at: Instant::now(),
        });
        let scripted = g.script.get_mut(&path).and_then(VecDeque::pop_front);
        let status = scripted
            .or_else(|| g.fixed.get(&path).copied())
            .unwrap_or(200);
        (status, g.delay.get(&path).copied())
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let received: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (
        status,
        axum::Json(json!({ "ok": status.is_success(), "path": path, "received": received })),
    )
}
