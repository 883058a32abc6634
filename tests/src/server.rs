//! The real local server, started in-process on 127.0.0.1:0 with a temporary data folder,
//! and an HTTP client for it.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weconnect::tempdir::TempDir;
use weconnect::{Server, Settings};

/// A running server and its data folder (removed on drop).
pub struct TestServer {
    pub server: Option<Server>,
    pub url: String,
    pub client: reqwest::Client,
    dir: Arc<TempDir>,
}

/// Settings for tests: free port, loopback HTTP allowed, quick loops.
pub fn test_settings(data_dir: &Path) -> Settings {
    let mut s = Settings::new(data_dir);
    s.port = 0;
    s.workers = 4;
    s.cleanup_interval = Duration::from_millis(500);
    s.schedule_interval = Duration::from_millis(100);
    s.shutdown_grace = Duration::from_secs(2);
    s.engine.http_allow_private = true;
    s
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let dir = Arc::new(TempDir::new("weconnect-test").expect("temp dir"));
        Self::start_in(dir, adjust).await
    }

    /// Another server on the same data folder (same database, same secrets).
    pub async fn start_beside(&self) -> Self {
        Self::start_in(self.dir.clone(), |_| {}).await
    }

    async fn start_in(dir: Arc<TempDir>, adjust: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = test_settings(dir.path());
        adjust(&mut settings);
        let server = Server::start(settings).await.expect("server starts");
        Self {
            url: server.url(),
            server: Some(server),
            client: reqwest::Client::new(),
            dir,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    pub fn token(&self, user: &str, org: &str) -> String {
        self.server().token(user, org).expect("token")
    }

    /// A client acting as `user` of `org`.
    pub fn api(&self, org: &str) -> Api {
        Api {
            client: self.client.clone(),
            base: self.url.clone(),
            token: Some(self.token(&format!("user-of-{org}"), org)),
        }
    }

    /// A client without a token.
    pub fn anonymous(&self) -> Api {
        Api {
            client: self.client.clone(),
            base: self.url.clone(),
            token: None,
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

/// An HTTP client bound to the server and (optionally) a bearer token.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

/// A response: status, headers and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Asserts the spec's error shape and the status; returns the message.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "expected {status}, got {self:?}");
        assert_eq!(self.body["statusCode"], status, "{self:?}");
        assert!(self.body["error"].is_string(), "{self:?}");
        assert!(self.body.get("details").is_some(), "{self:?}");
        self.body["message"].as_str().expect("message").to_string()
    }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let b = self.client.request(method, self.url(path));
        match &self.token {
            Some(t) => b.bearer_auth(t),
            None => b,
        }
    }

    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Reply {
        // A pooled connection the server closed (after refusing an oversized body unread) can
        // fail the next request before the server sees it: sent again once on a new one.
        let again = builder.try_clone();
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => match again {
                Some(b) if e.is_request() => b.send().await.expect("request sent"),
                _ => panic!("request sent: {e:?}"),
            },
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        // Read past serde_json's 128 levels: tests look at what old stored data returns.
        let body = weconnect_engine::limits::from_stored_json(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::GET, path)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
            .await
    }
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// Creates a workflow; panics unless 201.
    pub async fn create_workflow(&self, def: &Value) -> Value {
        let r = self.post("/workflows", def).await;
        assert_eq!(r.status, 201, "create workflow: {r:?}");
        r.body
    }

    /// Starts an execution through the API; panics unless 201.
    pub async fn start(&self, workflow_id: &str, input: Value) -> Value {
        let r = self
            .post(
                "/executions",
                &json!({"workflowId": workflow_id, "inputData": input}),
            )
            .await;
        assert_eq!(r.status, 201, "start: {r:?}");
        r.body
    }

    /// Polls `GET /executions/{id}` until `done` holds (≤ 20 s).
    pub async fn wait_for(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get(&format!("/executions/{id}")).await;
            assert_eq!(r.status, 200, "{r:?}");
            if done(&r.body) {
                return r.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "execution {id} never got there: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the execution is terminal (success, failed, cancelled, timeout).
    pub async fn wait_terminal(&self, id: &str) -> Value {
        self.wait_for(id, |e| {
            matches!(
                e["status"].as_str(),
                Some("success" | "failed" | "cancelled" | "timeout")
            )
        })
        .await
    }
}

/// The repository's root (for `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// An example workflow from `examples/`.
pub fn example(name: &str) -> Value {
    let path = repo_root().join("examples").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `weconnect` binary next to this test binary (`target/<profile>/weconnect`).
/// `cargo test --workspace` builds it (the `weconnect` package has integration tests);
/// with a narrower command, run `cargo build -p weconnect` first.
pub fn weconnect_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join(format!("weconnect{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return candidate;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    panic!(
        "the `weconnect` binary was not found next to {}: run `cargo build -p weconnect` \
         (or `cargo test --workspace`, which builds it) before this test",
        exe.display()
    );
}
