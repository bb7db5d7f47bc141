//! The forwarder: takes pending messages from the journal in arrival order and delivers them to
//! the exchange. Messages about one patient go through one lane, one at a time, so they arrive
//! in the order the hospital sent them; different patients' messages travel side by side. A
//! delivery the exchange cannot take now is retried in place, with backoff, holding back only
//! that patient's lane; one it refuses goes to the dead letters.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::exchange::{Delivery, ExchangeClient};
use crate::journal::{Journal, Pending};
use crate::submission::Translator;

/// How long a lane waits before trying the exchange again: doubling from `first` up to `most`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub most: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_millis(200),
            most: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct Forwarder {
    pub journal: Journal,
    pub exchange: ExchangeClient,
    pub translator: Arc<dyn Translator>,
    /// How many patients' messages are delivered at once.
    pub lanes: usize,
    pub backoff: Backoff,
}

/// The sequences handed to a lane and not yet marked delivered or dead: a rescan of the journal
/// must not hand them out again.
type InFlight = Arc<Mutex<HashSet<i64>>>;

fn in_flight_set(in_flight: &InFlight) -> std::sync::MutexGuard<'_, HashSet<i64>> {
    // A lane that panicked while holding the lock leaves a set that is still right.
    in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many internal errors of the exchange on one message make it a dead letter (with the
/// backoff, several minutes of them; an outage answers UNAVAILABLE and is waited out for ever).
const MOST_INTERNAL_FAILURES: u32 = 20;

/// How many pending messages one read of the journal takes.
const BATCH: i64 = 1024;

impl Forwarder {
    /// Runs until `shutdown` turns true; what is in flight then stays pending in the journal.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let in_flight: InFlight = Arc::default();
        let exchange_down = Arc::new(AtomicBool::new(false));
        let (delivered, delivered_queue) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        tasks.spawn(mark_delivered(
            self.journal.clone(),
            delivered_queue,
            in_flight.clone(),
        ));
        let lanes: Vec<mpsc::Sender<Pending>> = (0..self.lanes.max(1))
            .map(|_| {
                let (lane, queue) = mpsc::channel(64);
                tasks.spawn(
                    Lane {
                        forwarder: self.clone(),
                        exchange_down: exchange_down.clone(),
                        delivered: delivered.clone(),
                        in_flight: in_flight.clone(),
                    }
                    .run(queue, shutdown.clone()),
                );
                lane
            })
            .collect();
        drop(delivered);
        let appended = self.journal.appended();
        let mut cursor = 0;
        while !*shutdown.borrow() {
            let batch = match self.journal.pending_after(cursor, BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the journal");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let full = batch.len() as i64 == BATCH;
            if let Some(last) = batch.last() {
                cursor = last.sequence;
            }
            let fresh: Vec<Pending> = {
                let mut set = in_flight_set(&in_flight);
                batch.into_iter().filter(|p| set.insert(p.sequence)).collect()
            };
            for pending in fresh {
                let lane = &lanes[lane_of(&pending.patient_key, lanes.len())];
                if lane.send(pending).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = appended.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    // A quiet second: read from the start again, for dead letters an operator
                    // put back in the queue.
                    cursor = 0;
                }
                _ = shutdown.changed() => {}
            }
        }
        drop(lanes);
        while tasks.join_next().await.is_some() {}
    }
}

fn lane_of(patient_key: &str, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    patient_key.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

struct Lane {
    forwarder: Forwarder,
    /// Shared by every lane: whether the last delivery attempt found the exchange unable to take
    /// messages.
    exchange_down: Arc<AtomicBool>,
    delivered: mpsc::UnboundedSender<i64>,
    in_flight: InFlight,
}

impl Lane {
    async fn run(self, mut queue: mpsc::Receiver<Pending>, mut shutdown: watch::Receiver<bool>) {
        while let Some(pending) = queue.recv().await {
            if *shutdown.borrow() {
                return;
            }
            let f = &self.forwarder;
            let translated = f.translator.translate(&pending.raw);
            let translated = match translated {
                Ok(translated) => translated,
                Err(problem) => {
                    // Accepted once, refused now: the adapter's mapping changed in between.
                    self.dead(
                        &pending,
                        &format!("the adapter no longer translates it: {problem}"),
                    )
                    .await;
                    continue;
                }
            };
            let mut wait = f.backoff.first;
            let mut failures = 0u32;
            let mut internal_failures = 0u32;
            loop {
                let reason = match f.exchange.deliver(&translated).await {
                    Delivery::Delivered => {
                        if self.exchange_down.swap(false, Ordering::Relaxed) {
                            tracing::info!(failures, "the exchange takes messages again");
                        }
                        let _ = self.delivered.send(pending.sequence);
                        break;
                    }
                    Delivery::Refused(reason) => {
                        tracing::warn!(
                            sequence = pending.sequence,
                            message_type = %translated.message_type,
                            reason = %reason,
                            "the exchange refused a message; it is a dead letter now"
                        );
                        self.dead(&pending, &reason).await;
                        break;
                    }
                    Delivery::Failed(reason) => {
                        internal_failures += 1;
                        if internal_failures >= MOST_INTERNAL_FAILURES {
                            tracing::warn!(
                                sequence = pending.sequence,
                                message_type = %translated.message_type,
                                attempts = internal_failures,
                                "the exchange keeps failing on a message; it is a dead letter now"
                            );
                            let why =
                                format!("the exchange failed on it {internal_failures} times: {reason}");
                            self.dead(&pending, &why).await;
                            break;
                        }
                        reason
                    }
                    Delivery::Retry(reason) => {
                        // Once per outage, not once per lane or message.
                        if !self.exchange_down.swap(true, Ordering::Relaxed) {
                            tracing::warn!(reason = %reason, "the exchange cannot take messages now; they wait in the journal");
                        }
                        reason
                    }
                };
                failures += 1;
                if let Err(e) = f.journal.record_failure(pending.sequence, &reason).await {
                    tracing::error!(error = %e, "cannot note a failed delivery in the journal");
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                wait = (wait * 2).min(f.backoff.most);
            }
        }
    }

    async fn dead(&self, pending: &Pending, reason: &str) {
        let mut wait = Duration::from_millis(100);
        while let Err(e) = self.forwarder.journal.mark_dead(pending.sequence, reason).await {
            tracing::error!(error = %e, "cannot move a message to the dead letters; trying again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
        in_flight_set(&self.in_flight).remove(&pending.sequence);
    }
}

/// Marks delivered messages in batches (one transaction for many), then lets them go from the
/// in-flight set.
async fn mark_delivered(journal: Journal, mut queue: mpsc::UnboundedReceiver<i64>, in_flight: InFlight) {
    let mut batch = Vec::with_capacity(1024);
    while queue.recv_many(&mut batch, 1024).await > 0 {
        let mut wait = Duration::from_millis(100);
        while let Err(e) = journal.mark_delivered(&batch).await {
            tracing::error!(error = %e, "cannot mark messages delivered; trying again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
        let mut set = in_flight_set(&in_flight);
        for sequence in batch.drain(..) {
            set.remove(&sequence);
        }
    }
}
