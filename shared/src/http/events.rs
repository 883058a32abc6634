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
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;

/// Longest `waitMs` of a long poll (API Gateway answers within 30 s).
pub const MAX_WAIT_MS: u64 = 20_000;
/// Events buffered for one streaming client before its stream waits for it.
const STREAM_BUFFER: usize = 64;
/// How soon to look again when more is known to follow (a terminal execution settling).
const AGAIN_SOON: Duration = Duration::from_millis(100);
/// After a wake, how long to let the change's burst (a claim, a result, its logs) land
/// before reading: one read instead of one per write.
const GATHER_BURST: Duration = Duration::from_millis(25);
/// What an SSE client waits before reconnecting after a buffered response ended.
const RETRY_MS: u64 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    pub after: Option<String>,
    pub wait_ms: Option<u64>,
}

/// Long polling when the client asks for JSON; Server-Sent Events otherwise.
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
        .live_events(&who, &id, after.as_deref())
        .await?;
    if json {
        let batch = gather(&state.engine, &who, &id, first, watch, wait).await?;
        return Ok(Json(json!({
            "events": batch.events,
            "nextCursor": batch.cursor,
            "done": batch.done,
        }))
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
        if (!batch.events.is_empty() && !batch.more) || batch.done || now >= until {
            return Ok(batch);
        }
        if batch.more {
            tokio::time::sleep(AGAIN_SOON.min(until - now)).await;
        } else {
            watch.changed(until - now).await;
        }
        let next = engine.live_events(who, id, Some(&batch.cursor)).await?;
        // Ids are cursors: the events of both reads follow each other.
        batch.events.extend(next.events);
        batch.cursor = next.cursor;
        batch.done = next.done;
        batch.more = next.more;
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
        if batch.more {
            tokio::time::sleep(AGAIN_SOON).await;
        } else {
            tokio::select! {
                () = watch.changed(Duration::from_secs(3600)) => {}
                () = tx.closed() => return,
            }
            tokio::time::sleep(GATHER_BURST).await;
        }
        batch = match engine.live_events(&who, &id, Some(&batch.cursor)).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(execution_id = %id, error = %e, "events stream ended");
                return;
            }
        };
    }
}
