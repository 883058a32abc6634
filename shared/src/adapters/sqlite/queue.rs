//! `SqliteQueue`: the durable job queue in the same database file.
//!
//! A message is live (`state = 0`) until acknowledged or dead-lettered (`state = 2`).
//! `visible_at` is when it may be delivered: the send delay, then the end of each delivery's
//! lease. A delivery sets a fresh receipt, so a stale receipt acknowledges nothing. A message
//! delivered [`MAX_RECEIVES`] times without an ack is dead-lettered instead of delivered again.
//! `receive` waits on a [`Notify`] woken by `send` in this process, sleeping until the next
//! delayed message is due and re-checking at least every [`POLL`] (other processes).

use super::{Db, Fail};
use crate::model::{Job, Priority};
use crate::ports::{Clock, Delivery, JobQueue, QueueDepth, QueueError, QueueResult};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Deliveries of one message before it is dead-lettered (SQS `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 5;
/// The longest delay one `send` takes.
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A waiting `receive` looks again at least this often.
const POLL: Duration = Duration::from_millis(200);

const LIVE: i64 = 0;
const DEAD: i64 = 2;

/// The embedded job queue. Built by [`super::open`].
pub struct SqliteQueue {
    db: Arc<Db>,
    clock: Arc<dyn Clock>,
    sent: Notify,
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// What one receive attempt found.
struct Taken {
    deliveries: Vec<Delivery>,
    /// When the next live message becomes visible, if nothing was delivered.
    next_visible: Option<i64>,
}

impl SqliteQueue {
    pub(crate) fn new(db: Arc<Db>, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            clock,
            sent: Notify::new(),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().millis()
    }

    /// One transaction: take up to `max` visible messages, dead-lettering the exhausted ones.
    async fn take(&self, max: usize, visibility: Duration) -> Result<Taken, Fail> {
        let now = self.now();
        let lease_until = now.saturating_add(millis(visibility));
        let batch = uuid::Uuid::new_v4().simple().to_string();
        let max = max.min(10_000) as i64;
        self.db
            .write(move |tx| {
                // Higher priorities first (SPEC §9); first in, first out within one.
                let mut select = tx.prepare_cached(
                    "SELECT id, body, receive_count FROM queue \
                     WHERE state = ?1 AND priority = ?4 AND visible_at <= ?2 \
                     ORDER BY visible_at, id LIMIT ?3",
                )?;
                let mut deliver = tx.prepare_cached(
                    "UPDATE queue SET receipt = ?2, visible_at = ?3, receive_count = receive_count + 1 \
                     WHERE id = ?1 RETURNING receive_count",
                )?;
                let mut bury =
                    tx.prepare_cached("UPDATE queue SET state = ?2, receipt = NULL WHERE id = ?1")?;
                let mut deliveries = Vec::new();
                for priority in Priority::ALL.map(Priority::rank) {
                    loop {
                        let want = max - deliveries.len() as i64;
                        if want <= 0 {
                            break;
                        }
                        let rows: Vec<(i64, String, i64)> = select
                            .query_map(params![LIVE, now, want, priority], |r| {
                                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                            })?
                            .collect::<Result<_, _>>()?;
                        if rows.is_empty() {
                            break;
                        }
                        let mut buried = false;
                        for (id, body, count) in rows {
                            let job = serde_json::from_str::<Job>(&body);
                            match job {
                                Ok(job) if count < i64::from(MAX_RECEIVES) => {
                                    let receipt = format!("{batch}-{id}");
                                    let count: i64 = deliver
                                        .query_row(params![id, receipt, lease_until], |r| {
                                            r.get(0)
                                        })?;
                                    deliveries.push(Delivery {
                                        job,
                                        receipt,
                                        receive_count: count.clamp(0, i64::from(u32::MAX)) as u32,
                                    });
                                }
                                _ => {
                                    // Exhausted, or a body no job can be read from: dead-letter.
                                    bury.execute(params![id, DEAD])?;
                                    buried = true;
                                }
                            }
                        }
                        // Look again only when dead-lettering left room in the batch.
                        if !buried {
                            break;
                        }
                    }
                }
                let next_visible = if deliveries.is_empty() {
                    tx.prepare_cached("SELECT min(visible_at) FROM queue WHERE state = ?1")?
                        .query_row([LIVE], |r| r.get::<_, Option<i64>>(0))
                        .optional()?
                        .flatten()
                } else {
                    None
                };
                Ok(Taken {
                    deliveries,
                    next_visible,
                })
            })
            .await
    }
}

#[async_trait]
impl JobQueue for SqliteQueue {
    async fn send(&self, jobs: &[Job], delay: Duration) -> QueueResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let visible_at = self.now().saturating_add(millis(delay.min(MAX_DELAY)));
        let bodies = jobs
            .iter()
            .map(|job| {
                let priority = job.priority.unwrap_or_default().rank();
                serde_json::to_string(job).map(|body| (body, priority))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError::Backend(format!("job: {e}")))?;
        self.db
            .write(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO queue (body, visible_at, state, priority) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (body, priority) in &bodies {
                    stmt.execute(params![body, visible_at, LIVE, priority])?;
                }
                Ok(())
            })
            .await?;
        // Waiting receivers look again (and learn when a delayed message is due).
        self.sent.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a send in between is not missed.
            let notified = self.sent.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = self.take(max, visibility).await?;
            if !taken.deliveries.is_empty() {
                return Ok(taken.deliveries);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut nap = (deadline - now).min(POLL);
            if let Some(at) = taken.next_visible {
                let due = Duration::from_millis(at.saturating_sub(self.now()).max(1) as u64);
                nap = nap.min(due);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn ack(&self, receipt: &str) -> QueueResult<()> {
        let receipt = receipt.to_string();
        self.db
            .write(move |tx| {
                tx.prepare_cached("DELETE FROM queue WHERE receipt = ?1")?
                    .execute([&receipt])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn release(&self, receipt: &str, delay: Duration) -> QueueResult<()> {
        let receipt = receipt.to_string();
        let visible_at = self.now().saturating_add(millis(delay.min(MAX_DELAY)));
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "UPDATE queue SET receipt = NULL, visible_at = ?2 \
                     WHERE receipt = ?1 AND state = ?3",
                )?
                .execute(params![receipt, visible_at, LIVE])?;
                Ok(())
            })
            .await?;
        self.sent.notify_waiters();
        Ok(())
    }

    async fn extend(&self, receipt: &str, visibility: Duration) -> QueueResult<()> {
        let receipt = receipt.to_string();
        let visible_at = self.now().saturating_add(millis(visibility));
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "UPDATE queue SET visible_at = ?2 WHERE receipt = ?1 AND state = ?3",
                )?
                .execute(params![receipt, visible_at, LIVE])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn depth(&self) -> QueueResult<QueueDepth> {
        let now = self.now();
        self.db
            .read(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "SELECT \
                         total(state = ?2 AND visible_at <= ?1), \
                         total(state = ?2 AND visible_at > ?1 AND receipt IS NULL), \
                         total(state = ?2 AND visible_at > ?1 AND receipt IS NOT NULL), \
                         total(state = ?3) \
                         FROM queue",
                    )?
                    .query_row(params![now, LIVE, DEAD], |r| {
                        Ok(QueueDepth {
                            ready: r.get::<_, f64>(0)? as u64,
                            delayed: r.get::<_, f64>(1)? as u64,
                            in_flight: r.get::<_, f64>(2)? as u64,
                            dead: r.get::<_, f64>(3)? as u64,
                        })
                    })?)
            })
            .await
            .map_err(Into::into)
    }

    fn max_delay(&self) -> Duration {
        MAX_DELAY
    }

    /// A dead message's `visible_at` is the end of its last lease: about when it died.
    async fn prune_dead(&self, older_than: Duration) -> QueueResult<u64> {
        let before = self.now().saturating_sub(millis(older_than));
        self.db
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached("DELETE FROM queue WHERE state = ?1 AND visible_at < ?2")?
                    .execute(params![DEAD, before])?;
                Ok(deleted as u64)
            })
            .await
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TestDir, open_file, open_with_clock};
    use super::*;
    use crate::model::Timestamp;
    use crate::ports::ManualClock;

    fn job(n: u32) -> Job {
        Job {
            execution_id: format!("exec-{n}"),
            organization_id: "org".into(),
            node_id: format!("node-{n}"),
            attempt: n,
            workflow_id: None,
            workflow_version: None,
            heartbeat: None,
            inline_of: None,
            not_before: None,
            priority: None,
        }
    }

    const NO_WAIT: Duration = Duration::ZERO;
    const LEASE: Duration = Duration::from_secs(30);

    fn manual(dir: &TestDir) -> (Arc<SqliteQueue>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
        let (_, queue) = open_with_clock(&dir.db(), clock.clone()).unwrap();
        (queue, clock)
    }

    #[tokio::test]
    async fn higher_priorities_are_taken_first_in_order_within_one() {
        let dir = TestDir::new();
        let (q, clock) = manual(&dir);
        let with = |n: u32, p: Option<Priority>| Job {
            priority: p,
            ..job(n)
        };
        // A backlog: low and normal work first, high work last; one delayed high job.
        q.send(
            &[with(1, Some(Priority::Low)), with(2, None)],
            Duration::ZERO,
        )
        .await
        .unwrap();
        q.send(
            &[
                with(3, Some(Priority::Normal)),
                with(4, Some(Priority::High)),
            ],
            Duration::ZERO,
        )
        .await
        .unwrap();
        q.send(&[with(5, Some(Priority::High))], Duration::from_secs(5))
            .await
            .unwrap();
        q.send(&[with(6, Some(Priority::High))], Duration::ZERO)
            .await
            .unwrap();
        let order = |got: Vec<Delivery>| got.iter().map(|d| d.job.attempt).collect::<Vec<_>>();
        assert_eq!(
            order(q.receive(2, LEASE, NO_WAIT).await.unwrap()),
            vec![4, 6]
        );
        assert_eq!(
            order(q.receive(10, LEASE, NO_WAIT).await.unwrap()),
            vec![2, 3, 1]
        );
        // The delayed one when it is due.
        clock.advance(Duration::from_secs(5));
        assert_eq!(order(q.receive(10, LEASE, NO_WAIT).await.unwrap()), vec![5]);
    }

    #[tokio::test]
    async fn send_receive_ack() {
        let dir = TestDir::new();
        let (q, _clock) = manual(&dir);
        q.send(&[job(1), job(2), job(3)], Duration::ZERO)
            .await
            .unwrap();
        let got = q.receive(2, LEASE, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].job, job(1));
        assert_eq!(got[1].job, job(2));
        assert!(got.iter().all(|d| d.receive_count == 1));
        assert_ne!(got[0].receipt, got[1].receipt);
        let depth = q.depth().await.unwrap();
        assert_eq!(
            depth,
            QueueDepth {
                ready: 1,
                delayed: 0,
                in_flight: 2,
                dead: 0
            }
        );
        for d in &got {
            q.ack(&d.receipt).await.unwrap();
        }
        let rest = q.receive(10, LEASE, NO_WAIT).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].job, job(3));
        q.ack(&rest[0].receipt).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
        assert!(q.receive(0, LEASE, NO_WAIT).await.unwrap().is_empty());
        assert_eq!(q.max_delay(), MAX_DELAY);
    }

    #[tokio::test]
    async fn delay_is_respected() {
        let dir = TestDir::new();
        let (q, clock) = manual(&dir);
        q.send(&[job(1)], Duration::from_secs(60)).await.unwrap();
        assert!(q.receive(10, LEASE, NO_WAIT).await.unwrap().is_empty());
        assert_eq!(q.depth().await.unwrap().delayed, 1);
        clock.advance(Duration::from_secs(59));
        assert!(q.receive(10, LEASE, NO_WAIT).await.unwrap().is_empty());
        clock.advance(Duration::from_secs(1));
        let got = q.receive(10, LEASE, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].job, job(1));
    }

    #[tokio::test]
    async fn lease_expiry_redelivers_and_stale_receipts_do_nothing() {
        let dir = TestDir::new();
        let (q, clock) = manual(&dir);
        q.send(&[job(1)], Duration::ZERO).await.unwrap();
        let first = q.receive(1, LEASE, NO_WAIT).await.unwrap().remove(0);
        assert!(q.receive(1, LEASE, NO_WAIT).await.unwrap().is_empty());
        clock.advance(LEASE);
        let second = q.receive(1, LEASE, NO_WAIT).await.unwrap().remove(0);
        assert_eq!(second.receive_count, 2);
        assert_eq!(second.job, job(1));
        assert_ne!(second.receipt, first.receipt);
        // The first worker's receipt is stale: no ack, release or extend effect.
        q.ack(&first.receipt).await.unwrap();
        q.release(&first.receipt, Duration::ZERO).await.unwrap();
        q.extend(&first.receipt, LEASE).await.unwrap();
        let depth = q.depth().await.unwrap();
        assert_eq!((depth.ready, depth.in_flight), (0, 1));
        q.ack(&second.receipt).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    }

    #[tokio::test]
    async fn extend_and_release() {
        let dir = TestDir::new();
        let (q, clock) = manual(&dir);
        q.send(&[job(1)], Duration::ZERO).await.unwrap();
        let d = q.receive(1, LEASE, NO_WAIT).await.unwrap().remove(0);
        clock.advance(Duration::from_secs(20));
        q.extend(&d.receipt, LEASE).await.unwrap();
        clock.advance(Duration::from_secs(20));
        // 40 s after receipt, but extended to 50 s: still invisible.
        assert!(q.receive(1, LEASE, NO_WAIT).await.unwrap().is_empty());
        q.release(&d.receipt, Duration::from_secs(5)).await.unwrap();
        assert_eq!(q.depth().await.unwrap().delayed, 1);
        assert!(q.receive(1, LEASE, NO_WAIT).await.unwrap().is_empty());
        clock.advance(Duration::from_secs(5));
        let again = q.receive(1, LEASE, NO_WAIT).await.unwrap().remove(0);
        assert_eq!(again.receive_count, 2);
        // The released receipt no longer acknowledges anything.
        q.ack(&d.receipt).await.unwrap();
        assert_eq!(q.depth().await.unwrap().in_flight, 1);
    }

    #[tokio::test]
    async fn dead_letters_after_five_receives() {
        let dir = TestDir::new();
        let (q, clock) = manual(&dir);
        q.send(&[job(1), job(2)], Duration::ZERO).await.unwrap();
        // job(2) is acked at once; job(1) keeps timing out.
        for round in 1..=MAX_RECEIVES {
            let got = q.receive(10, LEASE, NO_WAIT).await.unwrap();
            let mine: Vec<_> = got.iter().filter(|d| d.job == job(1)).collect();
            assert_eq!(mine.len(), 1, "round {round}");
            assert_eq!(mine[0].receive_count, round);
            for d in got.iter().filter(|d| d.job == job(2)) {
                q.ack(&d.receipt).await.unwrap();
            }
            clock.advance(LEASE);
        }
        assert!(q.receive(10, LEASE, NO_WAIT).await.unwrap().is_empty());
        assert_eq!(
            q.depth().await.unwrap(),
            QueueDepth {
                ready: 0,
                delayed: 0,
                in_flight: 0,
                dead: 1
            }
        );
        // Dead messages stay dead.
        clock.advance(LEASE);
        assert!(q.receive(10, LEASE, NO_WAIT).await.unwrap().is_empty());
        // ... until the cleanup run prunes them, once older than the retention.
        assert_eq!(q.prune_dead(LEASE * 10).await.unwrap(), 0);
        assert_eq!(q.prune_dead(LEASE / 2).await.unwrap(), 1);
        assert_eq!(q.depth().await.unwrap().dead, 0);
    }

    #[tokio::test]
    async fn dead_lettering_leaves_room_for_live_messages() {
        let dir = TestDir::new();
        let (q, clock) = manual(&dir);
        q.send(&[job(1)], Duration::ZERO).await.unwrap();
        for _ in 0..MAX_RECEIVES {
            q.receive(1, LEASE, NO_WAIT).await.unwrap();
            clock.advance(LEASE);
        }
        q.send(&[job(2)], Duration::ZERO).await.unwrap();
        // The exhausted job(1) is first in line; the one receive buries it and delivers job(2).
        let got = q.receive(1, LEASE, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].job, job(2));
        assert_eq!(q.depth().await.unwrap().dead, 1);
    }

    #[tokio::test]
    async fn messages_survive_reopening() {
        let dir = TestDir::new();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
        {
            let (_, q) = open_with_clock(&dir.db(), clock.clone()).unwrap();
            q.send(&[job(1), job(2)], Duration::ZERO).await.unwrap();
            q.send(&[job(3)], Duration::from_secs(10)).await.unwrap();
            let d = q.receive(1, LEASE, NO_WAIT).await.unwrap().remove(0);
            assert_eq!(d.job, job(1));
        }
        let (_, q) = open_with_clock(&dir.db(), clock.clone()).unwrap();
        assert_eq!(
            q.depth().await.unwrap(),
            QueueDepth {
                ready: 1,
                delayed: 1,
                in_flight: 1,
                dead: 0
            }
        );
        clock.advance(LEASE);
        let got = q.receive(10, LEASE, NO_WAIT).await.unwrap();
        let mut jobs: Vec<_> = got
            .iter()
            .map(|d| (d.job.clone(), d.receive_count))
            .collect();
        jobs.sort_by_key(|(j, _)| j.attempt);
        assert_eq!(jobs, vec![(job(1), 2), (job(2), 1), (job(3), 1)]);
    }

    #[tokio::test]
    async fn a_waiting_receive_is_woken_by_send() {
        let dir = TestDir::new();
        let (_, q) = open_file(&dir.db()).unwrap();
        let sender = q.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            sender.send(&[job(7)], Duration::ZERO).await.unwrap();
        });
        let got = q.receive(1, LEASE, Duration::from_secs(10)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].job, job(7));
        handle.await.unwrap();
    }

    #[tokio::test]
    async fn a_waiting_receive_gets_a_delayed_message_when_due() {
        let dir = TestDir::new();
        let (_, q) = open_file(&dir.db()).unwrap();
        q.send(&[job(8)], Duration::from_millis(100)).await.unwrap();
        assert!(q.receive(1, LEASE, NO_WAIT).await.unwrap().is_empty());
        let got = q.receive(1, LEASE, Duration::from_secs(10)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].job, job(8));
    }

    #[tokio::test]
    async fn an_empty_wait_returns_nothing() {
        let dir = TestDir::new();
        let (_, q) = open_file(&dir.db()).unwrap();
        let got = q
            .receive(1, LEASE, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(got.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_receivers_never_share_a_message() {
        let dir = TestDir::new();
        let (_, q) = open_file(&dir.db()).unwrap();
        let jobs: Vec<Job> = (0..200).map(job).collect();
        q.send(&jobs, Duration::ZERO).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = q.receive(7, LEASE, NO_WAIT).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    for d in got {
                        q.ack(&d.receipt).await.unwrap();
                        mine.push(d.job.attempt);
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
    }
}
