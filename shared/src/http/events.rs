//! `GET /executions/{id}/events` (SPEC §11): the execution live, as Server-Sent Events, or
//! long polling with `Accept: application/json` (hosts that cannot stream).
//!
//! What to send comes from [`Engine::live_events`] (a diff of the stored execution against
//! the client's cursor); when to look again from the host's [`ChangeWatch`]: locally the
//! engine wakes the watchers of an execution it changed (no polling loop per client), on
//! Lambda the store is polled. A slow client only slows its own stream: events go through a
//! bounded channel to the response, and a client that is gone ends its task.

use super::extract::{ApiPath, ApiQuery};
use super::waiter::ChangeWatch;
use super::{ApiResult, AppState};
use crate::engine::{Engine, LiveBatch, LiveEvent, Principal};
use axum::Json;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;

/// Longest `waitMs` of a long poll (API Gateway answers within 30 s).
pub const MAX_WAIT_MS: u64 = 20_000;
/// Events buffered for one streaming client before its stream waits for it.
const STREAM_BUFFER: usize = 64;
/// After a wake, how long to let the change's burst (a claim, a result, its logs) land
/// before reading: one read instead of one per write.
const GATHER_BURST: Duration = Duration::from_millis(100);
/// What an SSE client waits before reconnecting after a buffered response ended.
const RETRY_MS: u64 = 1000;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// An event id or a `nextCursor`: only what came after it (or `Last-Event-ID`).
    pub after: Option<String>,
    /// Long polling: how long to wait for something new, 0–20000 ms (default 20000).
    #[param(minimum = 0, maximum = 20000)]
    pub wait_ms: Option<u64>,
}

/// One Server-Sent Event as the stream sends it (`id:`, `event:`, `data:` lines).
#[derive(Debug, utoipa::ToSchema)]
pub struct SseMessage {
    /// The cursor after this event (`Last-Event-ID` / `?after=` resume from it).
    pub id: String,
    #[schema(pattern = "^(execution|node|log)$")]
    pub event: String,
    /// JSON: `execution` `{status, progress}`, `node` `{nodeId, status, attempts, error}`,
    /// `log` the log entry.
    pub data: String,
}

/// The long-polling answer (`Accept: application/json`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LongPoll {
    pub events: Vec<LiveEvent>,
    /// `?after=` of the next call.
    pub next_cursor: String,
    /// The terminal `execution` event has been sent: nothing more will come.
    pub done: bool,
}

/// The execution live: Server-Sent Events (`execution`, `node`, `log`), or long polling
/// when the client asks for JSON.
#[utoipa::path(get, path = "/executions/{id}/events", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "Events: a stream (`text/event-stream`) or one long poll (`Accept: application/json`)",
        content((SseMessage = "text/event-stream"), (LongPoll = "application/json")))))]
pub async fn events(
    axum::extract::State(state): axum::extract::State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    super::extract::check_range("waitMs", q.wait_ms, 0, MAX_WAIT_MS)?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(MAX_WAIT_MS));
    let after = q.after.or_else(|| {
        headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    });
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json = accept.contains("application/json") && !accept.contains("text/event-stream");
    // Watch first, then read: a change in between is not missed.
    let watch = state.waiter.watch_changes(&state.engine, &id);
    // The first read answers 404 / 400 before anything is sent.
    let first = state
        .engine
        .live_events(&who, &id, after.as_deref(), watch.ended())
        .await?;
    if json {
        let batch = gather(&state.engine, &who, &id, first, watch, wait).await?;
        return Ok(Json(LongPoll {
            events: batch.events,
            next_cursor: batch.cursor,
            done: batch.done,
        })
        .into_response());
    }
    if !state.waiter.streams() {
        let batch = gather(&state.engine, &who, &id, first, watch, wait).await?;
        return Ok(buffered_sse(&batch));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(STREAM_BUFFER);
    tokio::spawn(stream(state.engine.clone(), who, id, first, watch, tx));
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Reads until there is something to send (and nothing more is known to follow at once),
/// the stream is over or `wait` ran out.
async fn gather(
    engine: &Engine,
    who: &Principal,
    id: &str,
    mut batch: LiveBatch,
    mut watch: Box<dyn ChangeWatch>,
    wait: Duration,
) -> ApiResult<LiveBatch> {
    let until = Instant::now() + wait;
    loop {
        let now = Instant::now();
        let more = batch.look_again.is_some();
        if (!batch.events.is_empty() && !more) || batch.done || now >= until {
            return Ok(batch);
        }
        // Until something changes, or until `look_again` at the latest (a terminal execution
        // settling: its last logs in wake it sooner).
        watch
            .changed(batch.look_again.unwrap_or(until - now).min(until - now))
            .await;
        let next = engine
            .live_events(who, id, Some(&batch.cursor), watch.ended())
            .await?;
        // Ids are cursors: the events of both reads follow each other.
        batch.events.extend(next.events);
        batch.cursor = next.cursor;
        batch.done = next.done;
        batch.look_again = next.look_again;
    }
}

fn sse_event(e: &LiveEvent) -> Event {
    Event::default()
        .id(e.id.clone())
        .event(e.event)
        .data(e.data.to_string())
}

/// One response with the events there are (a host that cannot stream): the client's
/// EventSource reconnects after `retry` with `Last-Event-ID`, and the next response
/// continues.
fn buffered_sse(batch: &LiveBatch) -> Response {
    let mut body = format!("retry: {RETRY_MS}\n\n");
    for e in &batch.events {
        body.push_str(&format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            e.id, e.event, e.data
        ));
    }
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Sends the stream's events until the terminal one, the client leaves or a read fails.
async fn stream(
    engine: Engine,
    who: Principal,
    id: String,
    mut batch: LiveBatch,
    mut watch: Box<dyn ChangeWatch>,
    tx: tokio::sync::mpsc::Sender<Event>,
) {
    loop {
        for e in &batch.events {
            if tx.send(sse_event(e)).await.is_err() {
                return;
            }
        }
        if batch.done {
            return;
        }
        // Until something changes, or until `look_again` at the latest (a terminal execution
        // settling: its last logs in wake it sooner).
        let wait = batch.look_again.unwrap_or(Duration::from_secs(3600));
        if !wait.is_zero() {
            tokio::select! {
                () = watch.changed(wait) => {}
                () = tx.closed() => return,
            }
        }
        if batch.look_again.is_none() {
            tokio::time::sleep(GATHER_BURST).await;
        }
        batch = match engine
            .live_events(&who, &id, Some(&batch.cursor), watch.ended())
            .await
        {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(execution_id = %id, error = %e, "events stream ended");
                return;
            }
        };
    }
}
