//! The schedule runner: fires due ticks of `active` workflows with a `trigger.schedule`.
//!
//! Every `interval` it lists the scheduled workflows and fires each tick that fell due since
//! the last look, with `Engine::fire_schedule` (idempotency key = workflow + tick, so a
//! tick fires once even across a restart or two runners). The last tick per trigger is kept
//! in memory; a trigger first seen starts from the later of the runner's start and the
//! workflow's last update (ticks before the start are not caught up).

use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use weconnect_engine::Engine;
use weconnect_engine::model::Timestamp;
use weconnect_engine::triggers;

/// At most this many ticks of one trigger are fired per look (a tiny rate after a pause).
const MAX_TICKS_PER_LOOK: usize = 100;

/// (organization, workflow, node) → the last tick handled.
type Cursors = HashMap<(String, String, String), Timestamp>;

pub async fn run(engine: Engine, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let started = engine.clock().now();
    let mut cursors = Cursors::new();
    loop {
        look(&engine, started, &mut cursors).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One look: fires every due tick, forgets triggers that are gone.
pub async fn look(engine: &Engine, started: Timestamp, cursors: &mut Cursors) {
    let workflows = match engine.store().list_scheduled_workflows().await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot list scheduled workflows");
            return;
        }
    };
    let now = engine.clock().now();
    let mut seen = Vec::new();
    for wf in &workflows {
        for (node, schedule) in triggers::schedules(wf) {
            let key = (wf.organization_id.clone(), wf.id.clone(), node.id.clone());
            let from = cursors
                .get(&key)
                .copied()
                .unwrap_or_else(|| started.max(wf.updated_at));
            let mut last = from;
            for _ in 0..MAX_TICKS_PER_LOOK {
                let Some(tick) = schedule.next_after(last).filter(|t| *t <= now) else {
                    break;
                };
                match engine
                    .fire_schedule(&wf.organization_id, &wf.id, Some(&node.id), tick)
                    .await
                {
                    Ok(_) => last = tick,
                    Err(e) => {
                        tracing::error!(workflow_id = %wf.id, error = %e, "scheduled start failed");
                        break;
                    }
                }
            }
            cursors.insert(key.clone(), last);
            seen.push(key);
        }
    }
    cursors.retain(|k, _| seen.contains(k));
}
