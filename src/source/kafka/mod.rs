//! Kafka source: one member of a consumer group. Offsets are committed by hand
//! (`enable.auto.commit=false`) and only up to the first event not yet written,
//! so a crash anywhere means re-delivery, never loss. Holding
//! `kafka.max_buffered_events` fetched events that no batch has taken yet (the
//! pipeline is full: `batch.max_in_flight` batches run), the member pauses its
//! partitions and keeps polling (so the group keeps it); at half as many it
//! resumes, while the pipeline still has work for the time a fetch takes again
//! (librdkafka drops a paused partition's prefetched messages). On revocation it stops
//! dispatching the revoked partitions' events, lets their running batches finish
//! within `kafka.revoke_deadline`, commits what is written and lets go. A batch
//! still running then is fenced: it stops before its next store call, so it
//! cannot write (or compensate) after the next owner started; its events of the
//! partitions this member keeps run again as a new batch.

mod offsets;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::offsets::{OffsetTracker, Tp};
use super::{BatchProgress, Dispatched, Source};
use crate::batch::Batch;
use crate::config::{Config, KafkaConfig};
use crate::kafka::{ADMIN_TIMEOUT, check_at_start, client_config, raw_event};
use crate::metrics::Metrics;
use crate::model::{Format, RawEvent};

struct State {
    tracker: OffsetTracker,
    paused: bool,
}

/// Shared by the consumer's callbacks (poll thread) and the pipeline's hooks.
struct Shared {
    state: Mutex<State>,
    /// Signalled whenever a batch finishes (a revocation may be waiting on it).
    finished: Condvar,
    metrics: Arc<Metrics>,
    kafka: KafkaConfig,
    /// Signalled on every assignment: the lag of new partitions is measured at
    /// once, not a `kafka.statistics_interval` later.
    assigned: tokio::sync::Notify,
    /// Topic → the format its messages carry.
    formats: HashMap<String, Format>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bookkeeping behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_assigned(&self, assigned: usize) {
        self.metrics.source.kafka_assigned(assigned);
        self.metrics.set_ready(if assigned > 0 {
            Ok(())
        } else {
            Err("kafka: no partitions assigned to this member")
        });
    }

    /// Waits until no running batch holds events of `tps`, at most the revoke deadline.
    fn wait_for_batches_of(&self, tps: &[Tp]) {
        let deadline = Instant::now() + self.kafka.revoke_deadline;
        let mut state = self.lock();
        while state.tracker.in_flight_of(tps) > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self.finished.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList) {
        self.metrics.source.kafka_rebalance("revoke");
        let tps = partitions_of(tpl);
        let running = {
            let mut state = self.lock();
            state.tracker.start_revoke(&tps);
            state.tracker.in_flight_of(&tps)
        };
        if running > 0 {
            tracing::info!(partitions = ?tps, batches = running, "revoked; waiting for their batches");
            // The callback runs inside the poll of the source task; let the runtime
            // move that worker's other tasks (the batches we wait for) elsewhere.
            if is_multi_thread_runtime() {
                tokio::task::block_in_place(|| self.wait_for_batches_of(&tps));
            } else {
                self.wait_for_batches_of(&tps);
            }
        }
        let (fenced, commits, assigned) = {
            let mut state = self.lock();
            let fenced = state.tracker.fence(&tps);
            let commits = state.tracker.revoke(&tps);
            (fenced, commits, state.tracker.assigned().len())
        };
        if fenced > 0 {
            tracing::warn!(partitions = ?tps, batches = fenced,
                "revoke deadline passed; fenced the batches still running (uncommitted; the next owner re-reads them)");
        }
        commit(consumer, &commits, CommitMode::Sync);
        for (topic, partition) in &tps {
            self.metrics.source.kafka_released(topic, *partition);
        }
        self.set_assigned(assigned);
        tracing::info!(partitions = ?tps, committed = ?commits, "partitions released");
    }

    fn assign(&self, consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList) {
        self.metrics.source.kafka_rebalance("assign");
        let tps = partitions_of(tpl);
        let (paused, assigned) = {
            let mut state = self.lock();
            for tp in &tps {
                state.tracker.assign(tp.clone());
            }
            (state.paused, state.tracker.assigned().len())
        };
        // New partitions join a paused member paused.
        set_paused(consumer, &self.metrics, &tps, paused);
        self.set_assigned(assigned);
        self.assigned.notify_one();
        tracing::info!(partitions = ?tps, "partitions assigned");
    }
}

fn is_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}

/// Pauses or resumes `tps` and shows it in their paused metric.
fn set_paused<C: Consumer<GroupContext>>(consumer: &C, metrics: &Metrics, tps: &[Tp], paused: bool) {
    if tps.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in tps {
        tpl.add_partition(topic, *partition);
    }
    let result = if paused { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
    if let Err(e) = result {
        tracing::warn!(error = %e, paused, "pause/resume failed");
    }
    for (topic, partition) in tps {
        metrics.source.kafka_paused(topic, *partition, paused);
    }
}

/// Commits `positions` (the next offset to read, per partition). The outcome is
/// counted in the commit callback; a failed commit is handed out again next time.
fn commit<C: Consumer<GroupContext>>(consumer: &C, positions: &[(Tp, i64)], mode: CommitMode) {
    if positions.is_empty() {
        return;
    }
    // A child of the batch whose finish made these offsets committable.
    let _span = tracing::info_span!("commit", partitions = positions.len(), mode = ?mode).entered();
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in positions {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::error!(error = %e, topic, partition, "cannot build a commit list");
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(error = %e, ?positions, "offset commit failed; retried with the next commit");
        let tps: Vec<Tp> = positions.iter().map(|(tp, _)| tp.clone()).collect();
        consumer.context().shared.lock().tracker.commit_failed(&tps);
    }
}

/// Callbacks librdkafka runs on the polling thread.
struct GroupContext {
    shared: Arc<Shared>,
}

impl ClientContext for GroupContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.shared.metrics.source.kafka_client_error();
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.shared.revoke(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                self.shared.metrics.source.kafka_rebalance("error");
                tracing::error!(error = %e, "rebalance failed");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.shared.assign(consumer, tpl);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.shared.metrics.source.kafka_commit(result.is_ok());
        if let Err(e) = result {
            let tps = partitions_of(offsets);
            tracing::warn!(error = %e, partitions = ?tps, "offset commit failed; retried with the next commit");
            self.shared.lock().tracker.commit_failed(&tps);
        }
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

pub struct KafkaSource {
    consumer: Arc<GroupConsumer>,
    shared: Arc<Shared>,
    topics: Vec<String>,
}

impl KafkaSource {
    /// Creates the member of `config.kafka` and subscribes it; partitions arrive
    /// with the first rebalance.
    pub fn connect(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let k = &config.kafka;
        check_at_start(k)?;
        let mut cfg = client_config(k)?;
        cfg.set("group.id", &k.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("auto.offset.reset", &k.auto_offset_reset)
            .set("session.timeout.ms", k.session_timeout.as_millis().to_string())
            // Bounds what a paused member holds in memory besides its batches.
            .set("queued.max.messages.kbytes", "16384")
            .set("enable.partition.eof", "false");
        let shared = Arc::new(Shared {
            state: Mutex::new(State { tracker: OffsetTracker::default(), paused: false }),
            finished: Condvar::new(),
            metrics,
            kafka: k.clone(),
            assigned: tokio::sync::Notify::new(),
            formats: [
                (&k.samsara_topic, Format::Samsara),
                (&k.edi_topic, Format::Edi),
                (&k.front_topic, Format::Front),
                (&k.turvo_topic, Format::Turvo),
                (&k.bank_topic, Format::Bank),
                (&k.crm_topic, Format::Crm),
                (&k.market_topic, Format::Market),
                (&k.financial_topic, Format::Financial),
            ]
            .into_iter()
            .filter(|(topic, _)| !topic.is_empty())
            .map(|(topic, format)| (topic.clone(), format))
            .collect(),
        });
        let consumer: GroupConsumer = cfg
            .create_with_context(GroupContext { shared: shared.clone() })
            .with_context(|| format!("creating a Kafka consumer for {}", k.brokers))?;
        let mut topics: Vec<String> = shared.formats.keys().cloned().collect();
        topics.sort();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).with_context(|| format!("subscribing to {names:?}"))?;
        Ok(KafkaSource { consumer: Arc::new(consumer), shared, topics })
    }

    fn to_event(&self, m: &BorrowedMessage<'_>) -> Option<RawEvent> {
        Some(raw_event(m, *self.shared.formats.get(m.topic())?))
    }

    /// Pauses every assigned partition at `kafka.max_buffered_events` events
    /// held, resumes them at half as many. The fetch loop alone changes
    /// `paused` and keeps its own copy, so the shared state is locked only
    /// when it changes, not for every message.
    fn backpressure(&self, buffered: usize, paused: &mut bool) {
        let limit = self.shared.kafka.max_buffered_events;
        if (*paused && buffered > limit / 2) || (!*paused && buffered < limit) {
            return;
        }
        *paused = !*paused;
        let tps = {
            let mut state = self.shared.lock();
            state.paused = *paused;
            state.tracker.assigned()
        };
        set_paused(self.consumer.as_ref(), &self.shared.metrics, &tps, *paused);
        tracing::info!(partitions = tps.len(), paused = *paused, buffered, "backpressure");
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn progress(&self) -> Arc<dyn BatchProgress> {
        Arc::new(KafkaProgress { consumer: self.consumer.clone(), shared: self.shared.clone() })
    }

    /// Polls until shutdown, also while paused and while the queue to the batcher
    /// is full (messages wait in a local buffer), so the group never evicts it.
    async fn run(
        self: Box<Self>,
        tx: mpsc::Sender<RawEvent>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<u64> {
        tracing::info!(topics = ?self.topics, group = %self.shared.kafka.group_id, "consumer started");
        let lag =
            tokio::spawn(measure_lag_until(self.consumer.clone(), self.shared.clone(), shutdown.clone()));
        let mut waiting: VecDeque<RawEvent> = VecDeque::new();
        let mut sent = 0u64;
        let mut paused = false;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                permit = tx.reserve(), if !waiting.is_empty() => {
                    let Ok(permit) = permit else { break };
                    if let Some(event) = waiting.pop_front() {
                        permit.send(event);
                        sent += 1;
                    }
                }
                message = self.consumer.recv() => match message {
                    Ok(m) => {
                        let tp = (m.topic().to_owned(), m.partition());
                        // Not ours any more (revoked between fetch and now): its next owner reads it.
                        if self.shared.lock().tracker.delivered(&tp, m.offset())
                            && let Some(event) = self.to_event(&m)
                        {
                            waiting.push_back(event);
                        }
                    }
                    Err(e) => {
                        self.shared.metrics.source.kafka_client_error();
                        tracing::warn!(error = %e, "kafka receive failed; polling again");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            // Events fetched that no batch has taken: ours to hold, and the channel's.
            self.backpressure(waiting.len() + (tx.max_capacity() - tx.capacity()), &mut paused);
        }
        lag.abort();
        tracing::info!(sent, undelivered = waiting.len(), "consumer stopped fetching");
        Ok(sent)
    }
}

/// Every `kafka.statistics_interval`, measures the lag of each assigned
/// partition against the broker's end offset. librdkafka's statistics know the
/// end only of partitions it fetched from, and a paused partition is not
/// fetched: a member paused early (or long) would show no lag, or a stale one,
/// exactly when lag matters.
async fn measure_lag_until(consumer: Arc<GroupConsumer>, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(shared.kafka.statistics_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = shared.assigned.notified() => {}
        }
        let (consumer, shared) = (consumer.clone(), shared.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || measure_lag(&consumer, &shared)).await {
            tracing::warn!(error = %e, "measuring the consumer lag failed");
        }
    }
}

/// One measurement: end offset minus the committed offset (this member's own,
/// else the group's; with neither, everything retained is still to read).
fn measure_lag(consumer: &GroupConsumer, shared: &Shared) {
    let positions = shared.lock().tracker.positions();
    if positions.is_empty() {
        return;
    }
    // The group's committed offsets only where this member has committed nothing
    // yet (just assigned): one broker request then, none in the steady state.
    let uncommitted: Vec<&Tp> =
        positions.iter().filter(|(_, _, c)| c.is_none()).map(|(tp, _, _)| tp).collect();
    let group_committed = group_committed(consumer, &uncommitted);
    let mut measured = Vec::with_capacity(positions.len());
    for (tp, next, committed) in positions {
        let committed = committed.or_else(|| group_committed.get(&tp).copied());
        let lag = match consumer.fetch_watermarks(&tp.0, tp.1, ADMIN_TIMEOUT) {
            Ok((low, high)) => Some((high - committed.unwrap_or(low)).max(0)),
            Err(e) => {
                tracing::debug!(error = %e, topic = %tp.0, partition = tp.1, "reading the end offset failed");
                None
            }
        };
        measured.push((tp, next, committed, lag));
    }
    // Only partitions still ours: a released one's series must stay gone.
    let assigned = shared.lock().tracker.assigned();
    for ((topic, partition), next, committed, lag) in measured {
        if assigned.binary_search(&(topic.clone(), partition)).is_ok() {
            shared.metrics.source.kafka_partition(&topic, partition, next, committed, lag);
        }
    }
}

/// The group's committed offsets of `tps` (those it has any for).
fn group_committed(consumer: &GroupConsumer, tps: &[&Tp]) -> HashMap<Tp, i64> {
    if tps.is_empty() {
        return HashMap::new();
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in tps {
        tpl.add_partition(topic, *partition);
    }
    match consumer.committed_offsets(tpl, ADMIN_TIMEOUT) {
        Ok(tpl) => tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "reading the group's committed offsets failed");
            HashMap::new()
        }
    }
}

/// The pipeline's hooks: commit written batches, pause and resume.
struct KafkaProgress {
    consumer: Arc<GroupConsumer>,
    shared: Arc<Shared>,
}

impl BatchProgress for KafkaProgress {
    fn ready_at_start(&self) -> bool {
        false
    }

    fn dispatch(&self, batch: Batch) -> Dispatched {
        let (kept, dropped, fence) = {
            let mut state = self.shared.lock();
            let (kept, dropped) = state.tracker.dispatch(batch);
            let fence =
                kept.as_ref().and_then(|(_, ticket)| state.tracker.fence_of(*ticket)).unwrap_or_default();
            (kept, dropped, fence)
        };
        if dropped > 0 {
            self.shared.metrics.source.kafka_dropped_on_revoke(dropped);
        }
        match kept {
            Some((batch, ticket)) => Dispatched { batch: Some(batch), dropped, ticket, fence },
            None => Dispatched { batch: None, dropped, ticket: 0, fence },
        }
    }

    fn finish(&self, ticket: u64, batch: &Batch, written: bool) {
        let commits = {
            let mut state = self.shared.lock();
            state.tracker.finish(ticket, batch, written);
            state.tracker.take_commits()
        };
        self.shared.finished.notify_all();
        commit(self.consumer.as_ref(), &commits, CommitMode::Async);
    }

    fn drained(&self) {
        let commits = self.shared.lock().tracker.all_positions();
        commit(self.consumer.as_ref(), &commits, CommitMode::Sync);
    }
}
