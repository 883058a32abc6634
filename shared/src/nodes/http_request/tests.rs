//! `http.request` against a local axum server started by each test on 127.0.0.1
//! (with `WECONNECT_HTTP_ALLOW_PRIVATE` on, except where the guard itself is tested).

use super::super::test_support::{Harness, failed, output, validate};
use super::MAX_RESPONSE_BYTES;
use crate::model::{CredentialType, ErrorKind};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

async fn echo(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    axum::Json(json!({
        "method": parts.method.as_str(),
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
    .into_response()
}

/// Answers with that status and echoes the query (to show secrets put there).
async fn status(State(hits): State<Hits>, Path(code): Path<u16>, req: Request) -> Response {
    hits.0.fetch_add(1, Ordering::SeqCst);
    let code = StatusCode::from_u16(code).unwrap();
    let query = req.uri().query().unwrap_or("").to_string();
    (
        code,
        axum::Json(json!({"status": code.as_u16(), "query": query})),
    )
        .into_response()
}

async fn guarded(headers: HeaderMap) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some("s3cret-key-value") {
        (StatusCode::OK, "welcome").into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "who are you").into_response()
    }
}

async fn big() -> Response {
    vec![b'a'; MAX_RESPONSE_BYTES + 1].into_response()
}

async fn big_stream() -> Response {
    let chunks = (0..11).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'b'; 1 << 20])));
    Body::from_stream(futures::stream::iter(chunks)).into_response()
}

/// Starts the server; returns its base URL and the hit counter of `/status/…`.
async fn server() -> (String, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/echo", any(echo))
        .route("/status/{code}", any(status))
        .route("/guarded", get(guarded))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/text", get(|| async { "hello world" }))
        .route(
            "/redirect",
            get(|| async { Redirect::temporary("/echo?via=redirect") }),
        )
        .route("/big", get(big))
        .route("/big-stream", get(big_stream))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

fn http(params: Value) -> Harness {
    Harness::new("http.request", params)
}

fn query_pairs(q: &str) -> BTreeSet<(String, String)> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn sends_json_body_headers_and_query_and_parses_the_json_answer() {
    let (base, _) = server().await;
    let h = http(json!({
        "method": "post",
        "url": format!("{base}/echo?fixed=1"),
        "headers": {"X-Custom": "custom value", "X-Number": 42, "X-Skip": null},
        "query": {"a": "1 2", "tags": ["x", "y"], "n": 3, "flag": true, "none": null},
        "body": {"orderId": 7, "items": [1, 2]}
    }));
    let out = output(h.run(json!({})).await);
    assert_eq!(out["statusCode"], 200);
    assert!(
        out["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("application/json")
    );
    let echo = &out["body"];
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["headers"]["x-custom"], "custom value");
    assert_eq!(echo["headers"]["x-number"], "42");
    assert!(echo["headers"].get("x-skip").is_none());
    assert_eq!(echo["headers"]["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(echo["body"].as_str().unwrap()).unwrap(),
        json!({"orderId": 7, "items": [1, 2]})
    );
    let expected: BTreeSet<(String, String)> = [
        ("fixed", "1"),
        ("a", "1 2"),
        ("tags", "x"),
        ("tags", "y"),
        ("n", "3"),
        ("flag", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(query_pairs(echo["query"].as_str().unwrap()), expected);
}

#[tokio::test]
async fn sends_the_idempotency_key_of_the_execution_and_node() {
    let (base, _) = server().await;
    let h = http(json!({"url": format!("{base}/echo")}));
    let out = output(h.run(json!({})).await);
    assert_eq!(out["body"]["method"], "GET");
    assert_eq!(out["body"]["headers"]["idempotency-key"], "exec-1:n1");
    assert!(out["body"]["headers"].get("content-type").is_none());

    // A key set by the node is kept.
    let h = http(json!({"url": format!("{base}/echo"), "headers": {"Idempotency-Key": "mine"}}));
    let out = output(h.run(json!({})).await);
    assert_eq!(out["body"]["headers"]["idempotency-key"], "mine");
}

#[tokio::test]
async fn text_bodies_go_out_and_come_back_as_text() {
    let (base, _) = server().await;
    let h = http(json!({"method": "PUT", "url": format!("{base}/echo"), "body": "plain words"}));
    let out = output(h.run(json!({})).await);
    assert_eq!(out["body"]["body"], "plain words");
    assert_eq!(
        out["body"]["headers"]["content-type"],
        "text/plain; charset=utf-8"
    );

    let h = http(json!({"url": format!("{base}/text")}));
    let out = output(h.run(json!({})).await);
    assert_eq!(out["body"], "hello world");
    assert_eq!(out["statusCode"], 200);
}

#[tokio::test]
async fn follows_redirects() {
    let (base, _) = server().await;
    let h = http(json!({"url": format!("{base}/redirect")}));
    let out = output(h.run(json!({})).await);
    assert_eq!(out["body"]["query"], "via=redirect");
}

#[tokio::test]
async fn header_credential_is_sent_and_redacted_from_the_output() {
    let (base, _) = server().await;
    let h = http(json!({"url": format!("{base}/guarded"), "credential": "api-key"}));
    h.add_credential(
        "cred-1",
        "api-key",
        CredentialType::HttpHeader,
        json!({"name": "X-Api-Key", "value": "s3cret-key-value"}),
    );
    let out = output(h.run(json!({})).await);
    assert_eq!(out["statusCode"], 200);
    assert_eq!(out["body"], "welcome");

    // The same credential by id, against a server that echoes it back.
    let mut h2 = http(json!({"url": format!("{base}/echo"), "credential": "cred-1"}));
    h2.services = h.services.clone();
    h2.store = h.store.clone();
    let out = output(h2.run(json!({})).await);
    assert_eq!(out["body"]["headers"]["x-api-key"], "[REDACTED]");
    assert!(!out.to_string().contains("s3cret-key-value"));
}

#[tokio::test]
async fn bearer_and_basic_credentials_set_authorization_and_are_redacted() {
    let (base, _) = server().await;
    let h = http(json!({"url": format!("{base}/echo"), "credential": "tok"}));
    h.add_credential(
        "c-bearer",
        "tok",
        CredentialType::Bearer,
        json!({"token": "tok-123456"}),
    );
    let out = output(h.run(json!({})).await);
    assert_eq!(out["body"]["headers"]["authorization"], "Bearer [REDACTED]");

    let h = http(json!({"url": format!("{base}/echo"), "credential": "c-basic"}));
    h.add_credential(
        "c-basic",
        "basic",
        CredentialType::HttpBasic,
        json!({"username": "alice", "password": "pa55word"}),
    );
    let out = output(h.run(json!({})).await);
    assert_eq!(out["body"]["headers"]["authorization"], "Basic [REDACTED]");
    assert!(!out.to_string().contains("YWxpY2U6cGE1NXdvcmQ"));
}

#[tokio::test]
async fn echoed_secrets_are_redacted_from_error_details_too() {
    let (base, _) = server().await;
    // The 4xx body shows the secret; the failure must not.
    let h = http(json!({
        "url": format!("{base}/status/400?token=tok-abcdef"),
        "credential": "tok"
    }));
    h.add_credential(
        "c",
        "tok",
        CredentialType::Bearer,
        json!({"token": "tok-abcdef"}),
    );
    let e = failed(h.run(json!({})).await);
    assert_eq!(e.kind, ErrorKind::Http4xx);
    let details = e.details.clone().unwrap();
    assert_eq!(details["body"]["query"], "token=[REDACTED]");
    assert!(!serde_json::to_string(&e).unwrap().contains("tok-abcdef"));
}

#[tokio::test]
async fn unusable_credentials_are_configuration_errors() {
    let (base, hits) = server().await;
    let h = http(json!({"url": format!("{base}/status/200"), "credential": "sig"}));
    h.add_credential(
        "c-hmac",
        "sig",
        CredentialType::HmacSecret,
        json!({"secret": "whsec_abc"}),
    );
    let e = failed(h.run(json!({})).await);
    assert_eq!(e.kind, ErrorKind::Configuration);
    assert!(e.message.contains("hmacSecret"), "{}", e.message);

    let h = http(json!({"url": format!("{base}/status/200"), "credential": "missing"}));
    let e = failed(h.run(json!({})).await);
    assert_eq!(e.kind, ErrorKind::Configuration);
    assert!(e.message.contains("missing"), "{}", e.message);
    assert_eq!(hits.0.load(Ordering::SeqCst), 0, "nothing was sent");
}

#[tokio::test]
async fn fail_on_status_maps_statuses_to_error_kinds() {
    let (base, _) = server().await;
    for (code, kind) in [
        (404, ErrorKind::Http4xx),
        (429, ErrorKind::Http429),
        (500, ErrorKind::Http5xx),
    ] {
        let h = http(json!({"url": format!("{base}/status/{code}")}));
        let e = failed(h.run(json!({})).await);
        assert_eq!(e.kind, kind, "{code}");
        assert_eq!(e.status_code, Some(code));
        assert!(e.message.contains(&code.to_string()), "{}", e.message);
        let details = e.details.unwrap();
        assert_eq!(details["statusCode"], code);
        assert_eq!(details["body"]["status"], code);
    }
}

#[tokio::test]
async fn without_fail_on_status_the_response_is_the_output() {
    let (base, _) = server().await;
    for code in [404u16, 429, 500] {
        let h = http(json!({"url": format!("{base}/status/{code}"), "failOnStatus": false}));
        let out = output(h.run(json!({})).await);
        assert_eq!(out["statusCode"], code);
        assert_eq!(out["body"]["status"], code);
    }
}

#[tokio::test]
async fn times_out_with_the_parameter_or_the_node_timeout() {
    let (base, _) = server().await;
    let h = http(json!({"url": format!("{base}/slow"), "timeoutMs": 100}));
    let e = failed(h.run(json!({})).await);
    assert_eq!(e.kind, ErrorKind::Timeout, "{}", e.message);

    let mut h = http(json!({"url": format!("{base}/slow")}));
    h.timeout_ms = 80;
    let e = failed(h.run(json!({})).await);
    assert_eq!(e.kind, ErrorKind::Timeout, "{}", e.message);
}

#[tokio::test]
async fn connection_failures_are_network_errors() {
    // A port nobody listens on: bind one, then close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let h = http(json!({"url": format!("http://{addr}/")}));
    let e = failed(h.run(json!({})).await);
    assert_eq!(e.kind, ErrorKind::Network, "{}", e.message);
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let (base, hits) = server().await;
    let port = base.rsplit(':').next().unwrap().to_string();
    for url in [
        format!("{base}/status/200"),
        format!("http://localhost:{port}/status/200"),
        format!("http://2130706433:{port}/status/200"),
    ] {
        let h = http(json!({ "url": url })).allow_private(false);
        let e = failed(h.run(json!({})).await);
        assert_eq!(e.kind, ErrorKind::Configuration, "{url}: {}", e.message);
        assert!(e.message.contains("refused"), "{url}: {}", e.message);
    }
    assert_eq!(hits.0.load(Ordering::SeqCst), 0);
    // The same URL with the allow-list on.
    let h = http(json!({"url": format!("{base}/status/200")})).allow_private(true);
    assert_eq!(output(h.run(json!({})).await)["statusCode"], 200);
}

#[tokio::test]
async fn response_bodies_are_capped() {
    let (base, _) = server().await;
    for path in ["/big", "/big-stream"] {
        let h = http(json!({"url": format!("{base}{path}")}));
        let e = failed(h.run(json!({})).await);
        assert_eq!(e.kind, ErrorKind::OutputTooLarge, "{path}: {}", e.message);
    }
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_server_errors() {
    let (base, hits) = server().await;
    let h = http(json!({"url": format!("{base}/status/503")}));
    let threshold = h.services.config.circuit_failure_threshold as usize;
    for _ in 0..threshold {
        assert_eq!(failed(h.run(json!({})).await).kind, ErrorKind::Http5xx);
    }
    let e = failed(h.run(json!({})).await);
    assert_eq!(e.kind, ErrorKind::CircuitOpen, "{}", e.message);
    assert_eq!(hits.0.load(Ordering::SeqCst), threshold, "failed fast");
    // The key is the host, per organization.
    assert!(
        h.store
            .circuit("org-1/127.0.0.1")
            .unwrap()
            .opened_at
            .is_some()
    );

    // With a fallback the node outputs it instead.
    let mut with_fallback = http(json!({
        "url": format!("{base}/status/200"),
        "fallback": {"cached": true}
    }));
    with_fallback.services = h.services.clone();
    assert_eq!(
        output(with_fallback.run(json!({})).await),
        json!({"cached": true})
    );

    // After the open period one trial goes through; its success closes the circuit.
    h.clock
        .advance(Duration::from_millis(h.services.config.circuit_timeout_ms));
    let mut trial = http(json!({"url": format!("{base}/status/200")}));
    trial.services = h.services.clone();
    assert_eq!(output(trial.run(json!({})).await)["statusCode"], 200);
    assert_eq!(output(trial.run(json!({})).await)["statusCode"], 200);
    assert_eq!(h.store.circuit("org-1/127.0.0.1").unwrap().opened_at, None);
}

#[tokio::test]
async fn client_errors_do_not_open_the_circuit_and_circuit_keys_are_explicit() {
    let (base, hits) = server().await;
    let h = http(json!({"url": format!("{base}/status/404"), "circuitKey": "billing"}));
    for _ in 0..8 {
        assert_eq!(failed(h.run(json!({})).await).kind, ErrorKind::Http4xx);
    }
    assert_eq!(hits.0.load(Ordering::SeqCst), 8);
    assert!(h.store.circuit("org-1/127.0.0.1").is_none());
}

#[tokio::test]
async fn bad_resolved_parameters_are_configuration_errors() {
    for params in [
        json!({"url": "not a url"}),
        json!({"url": "ftp://example.com/"}),
        json!({"url": 5}),
        json!({"url": "http://example.com", "method": "BREW"}),
        json!({"url": "http://example.com", "headers": "x"}),
        json!({"url": "http://example.com", "headers": {"bad name": "v"}}),
        json!({"url": "http://example.com", "headers": {"x": {"nested": 1}}}),
        json!({"url": "http://example.com", "query": [1]}),
        json!({"url": "http://example.com", "timeoutMs": 0}),
        json!({"url": "http://example.com", "timeoutMs": "soon"}),
        json!({"url": "http://example.com", "failOnStatus": "yes"}),
        json!({"url": "http://example.com", "credential": 3}),
    ] {
        let e = failed(http(params.clone()).run(json!({})).await);
        assert_eq!(e.kind, ErrorKind::Configuration, "{params}: {}", e.message);
    }
}

#[test]
fn parameters_are_checked_as_written() {
    for ok in [
        json!({"url": "https://api.example.com/v1"}),
        json!({"url": "{{ json.url }}", "method": "{{ json.method }}"}),
        json!({"url": "https://x.test", "method": "delete", "headers": {"A": "{{ json.a }}"},
               "query": {"q": 1}, "body": "{{ json }}", "timeoutMs": 5000,
               "credential": "api", "failOnStatus": false, "circuitKey": "x", "fallback": null}),
        json!({"url": "https://x.test", "headers": "{{ json.headers }}", "timeoutMs": "{{ json.t }}"}),
    ] {
        assert_eq!(validate("http.request", ok.clone()), Ok(()), "{ok}");
    }
    for (bad, needle) in [
        (json!({}), "`url`"),
        (json!({"url": "example.com/x"}), "`url`"),
        (json!({"url": "file:///etc/passwd"}), "`url`"),
        (
            json!({"url": "https://x.test", "method": "TRACE"}),
            "`method`",
        ),
        (
            json!({"url": "https://x.test", "headers": [1]}),
            "`headers`",
        ),
        (
            json!({"url": "https://x.test", "headers": {"bad name": "1"}}),
            "`headers`",
        ),
        (json!({"url": "https://x.test", "query": "a=1"}), "`query`"),
        (
            json!({"url": "https://x.test", "timeoutMs": -1}),
            "`timeoutMs`",
        ),
        (
            json!({"url": "https://x.test", "timeoutMs": 99999999}),
            "`timeoutMs`",
        ),
        (
            json!({"url": "https://x.test", "failOnStatus": 1}),
            "`failOnStatus`",
        ),
        (
            json!({"url": "https://x.test", "credential": ""}),
            "`credential`",
        ),
        (
            json!({"url": "https://x.test", "circuitKey": 5}),
            "`circuitKey`",
        ),
    ] {
        let err = validate("http.request", bad.clone()).unwrap_err();
        assert!(err.contains(needle), "{bad}: {err}");
    }
}

#[tokio::test]
async fn calls_over_the_rate_wait_for_the_next_slot_without_calling() {
    let (base, hits) = server().await;
    let h = http(json!({"url": format!("{base}/status/200"),
                        "rateLimit": {"limit": 2, "periodMs": 1000}}));
    for _ in 0..2 {
        output(h.run(json!({})).await);
    }
    let calls = hits.0.load(Ordering::SeqCst);
    // The third within the second waits until the first leaves the window; no call is made.
    match h.run(json!({})).await {
        super::super::NodeOutcome::WaitUntil(at) => {
            assert_eq!(
                at,
                super::super::test_support::start_time().plus(std::time::Duration::from_secs(1))
            )
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    assert_eq!(hits.0.load(Ordering::SeqCst), calls);
    h.clock.advance(std::time::Duration::from_secs(1));
    output(h.run(json!({})).await);
    // Per key: another key (or another organization) has its own window.
    let other = http(json!({"url": format!("{base}/echo"),
                            "rateLimit": {"limit": 2, "periodMs": 1000, "key": "reports"}}));
    output(other.run(json!({})).await);
}

#[test]
fn rate_limits_are_checked_when_saved() {
    let ok = validate(
        "http.request",
        json!({"url": "https://a.example", "rateLimit": {"limit": 5, "periodMs": 1000, "key": "api"}}),
    );
    assert!(ok.is_ok(), "{ok:?}");
    for bad in [
        json!("5/s"),
        json!({"limit": 0, "periodMs": 1000}),
        json!({"limit": 5, "periodMs": 10}),
        json!({"limit": 5}),
        json!({"limit": 5, "periodMs": 1000, "key": ""}),
        json!({"limit": 5, "periodMs": 1000, "burst": 2}),
    ] {
        let e = validate(
            "http.request",
            json!({"url": "https://a.example", "rateLimit": bad}),
        )
        .unwrap_err();
        assert!(e.contains("rateLimit"), "{e}");
    }
}
