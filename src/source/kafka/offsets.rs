//! Which offsets of each assigned partition are fully written, and so how far
//! the group may commit: up to (not including) the first offset delivered and
//! not yet written. Batches finish out of order; the commit position only
//! moves past an offset once the batch holding it has been written.
//!
//! Pure bookkeeping, no Kafka calls: the consumer context and the pipeline
//! hooks drive it under one lock.

use std::collections::{BTreeSet, HashMap};

use tokio_util::sync::CancellationToken;

use crate::batch::Batch;

/// Topic and partition.
pub type Tp = (String, i32);

#[derive(Debug)]
struct PartitionOffsets {
    /// Which assignment of this partition this is (a partition can come back).
    generation: u64,
    /// Delivered to the pipeline and not yet written.
    pending: BTreeSet<i64>,
    /// One past the highest offset delivered.
    next: Option<i64>,
    /// The last position handed out for committing.
    committed: Option<i64>,
    /// Being revoked: its events are no longer dispatched.
    revoking: bool,
}

impl PartitionOffsets {
    /// Where a consumer of this partition should start: the first offset not
    /// yet written.
    fn position(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }
}

/// Identifies a batch handed to the orchestrator.
pub type Ticket = u64;

/// A batch in flight: the partitions (and their generations) it holds events
/// of, and the token that fences it off once they move to another member.
#[derive(Debug)]
struct InFlight {
    holds: Vec<(Tp, u64)>,
    fence: CancellationToken,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<Tp, PartitionOffsets>,
    in_flight: HashMap<Ticket, InFlight>,
    next_generation: u64,
    next_ticket: Ticket,
}

impl OffsetTracker {
    pub fn assign(&mut self, tp: Tp) {
        self.next_generation += 1;
        let state = PartitionOffsets {
            generation: self.next_generation,
            pending: BTreeSet::new(),
            next: None,
            committed: None,
            revoking: false,
        };
        self.partitions.insert(tp, state);
    }

    pub fn assigned(&self) -> Vec<Tp> {
        let mut tps: Vec<Tp> = self.partitions.keys().cloned().collect();
        tps.sort();
        tps
    }

    /// Records a message handed to the pipeline; false if the partition is not
    /// (or no longer) ours, and the message must be dropped unread.
    pub fn delivered(&mut self, tp: &Tp, offset: i64) -> bool {
        match self.partitions.get_mut(tp) {
            Some(p) if !p.revoking => {
                p.pending.insert(offset);
                p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
                true
            }
            _ => false,
        }
    }

    /// Keeps the events this member still owns and was last delivered (events of
    /// revoked partitions are re-read by their next owner), and registers the
    /// batch as in flight. Returns the kept batch, how many events were dropped,
    /// and the ticket to finish it with (`None` when nothing is left).
    pub fn dispatch(&mut self, batch: Batch) -> (Option<(Batch, Ticket)>, usize) {
        let total = batch.events.len();
        let close_reason = batch.close_reason;
        let kept: Vec<_> = batch
            .events
            .into_iter()
            .filter(|e| {
                let tp = (e.origin.topic.clone(), e.origin.partition);
                self.partitions.get(&tp).is_some_and(|p| !p.revoking && p.pending.contains(&e.origin.offset))
            })
            .collect();
        let dropped = total - kept.len();
        if kept.is_empty() {
            return (None, dropped);
        }
        let batch = Batch::new(kept, close_reason);
        let holds = batch.offsets.keys().map(|tp| (tp.clone(), self.partitions[tp].generation)).collect();
        self.next_ticket += 1;
        self.in_flight.insert(self.next_ticket, InFlight { holds, fence: CancellationToken::new() });
        (Some((batch, self.next_ticket)), dropped)
    }

    /// The batch is done: written (its offsets may be committed) or abandoned
    /// (they stay pending, so the commit position stops before them).
    pub fn finish(&mut self, ticket: Ticket, batch: &Batch, written: bool) {
        self.in_flight.remove(&ticket);
        if !written {
            return;
        }
        for e in &batch.events {
            let tp = (e.origin.topic.clone(), e.origin.partition);
            if let Some(p) = self.partitions.get_mut(&tp) {
                p.pending.remove(&e.origin.offset);
            }
        }
    }

    #[cfg(test)]
    fn batches_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// How many batches in flight hold events of these partitions (this assignment of them).
    pub fn in_flight_of(&self, tps: &[Tp]) -> usize {
        self.running_of(tps).count()
    }

    /// The token that fences the batch of `ticket` off (see [`Self::fence`]).
    pub fn fence_of(&self, ticket: Ticket) -> Option<CancellationToken> {
        self.in_flight.get(&ticket).map(|b| b.fence.clone())
    }

    /// Fences off the batches in flight that hold events of these partitions:
    /// they must not write once the partitions are another member's. Returns
    /// how many there were.
    pub fn fence(&self, tps: &[Tp]) -> usize {
        self.running_of(tps).map(|b| b.fence.cancel()).count()
    }

    fn running_of<'a>(&'a self, tps: &'a [Tp]) -> impl Iterator<Item = &'a InFlight> {
        self.in_flight.values().filter(move |b| {
            b.holds.iter().any(|(tp, generation)| {
                tps.contains(tp) && self.partitions.get(tp).is_some_and(|p| p.generation == *generation)
            })
        })
    }

    /// Positions that moved since they were last handed out, to commit now.
    pub fn take_commits(&mut self) -> Vec<(Tp, i64)> {
        self.hand_out(false)
    }

    /// Every assigned partition's current position, for the final commit.
    pub fn all_positions(&mut self) -> Vec<(Tp, i64)> {
        self.hand_out(true)
    }

    /// Positions to commit (all, or those that moved), marked as handed out.
    fn hand_out(&mut self, all: bool) -> Vec<(Tp, i64)> {
        let mut out: Vec<(Tp, i64)> = self
            .partitions
            .iter_mut()
            .filter_map(|(tp, p)| {
                let pos = p.position()?;
                let moved = p.committed.is_none_or(|c| pos > c);
                p.committed = Some(pos);
                (all || moved).then(|| (tp.clone(), pos))
            })
            .collect();
        out.sort();
        out
    }

    /// A commit of these partitions failed: hand their positions out again next time.
    pub fn commit_failed(&mut self, tps: &[Tp]) {
        for tp in tps {
            if let Some(p) = self.partitions.get_mut(tp) {
                p.committed = None;
            }
        }
    }

    /// Stops dispatching events of these partitions.
    pub fn start_revoke(&mut self, tps: &[Tp]) {
        for tp in tps {
            if let Some(p) = self.partitions.get_mut(tp) {
                p.revoking = true;
            }
        }
    }

    /// Forgets these partitions; returns their final positions, to commit once
    /// more whether or not handed out before (an earlier async commit may have failed).
    pub fn revoke(&mut self, tps: &[Tp]) -> Vec<(Tp, i64)> {
        tps.iter().filter_map(|tp| Some((tp.clone(), self.partitions.remove(tp)?.position()?))).collect()
    }

    /// Per assigned partition: (position delivered up to, position committable).
    pub fn positions(&self) -> Vec<(Tp, Option<i64>, Option<i64>)> {
        let mut out: Vec<_> =
            self.partitions.iter().map(|(tp, p)| (tp.clone(), p.next, p.committed)).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::CloseReason;
    use crate::model::{Format, Origin, RawEvent};

    fn tp(p: i32) -> Tp {
        ("t".into(), p)
    }

    fn batch(events: &[(i32, i64)]) -> Batch {
        let events = events
            .iter()
            .map(|&(partition, offset)| {
                RawEvent::new(Format::Samsara, Origin { topic: "t".into(), partition, offset }, None, vec![])
            })
            .collect();
        Batch::new(events, CloseReason::Size)
    }

    fn deliver(t: &mut OffsetTracker, p: i32, offsets: std::ops::Range<i64>) {
        for o in offsets {
            assert!(t.delivered(&tp(p), o));
        }
    }

    #[test]
    fn commits_only_up_to_the_first_unwritten_offset_when_batches_finish_out_of_order() {
        let mut t = OffsetTracker::default();
        t.assign(tp(0));
        deliver(&mut t, 0, 10..16);
        let (Some((first, a)), 0) = t.dispatch(batch(&[(0, 10), (0, 11), (0, 12)])) else { panic!() };
        let (Some((second, b)), 0) = t.dispatch(batch(&[(0, 13), (0, 14), (0, 15)])) else { panic!() };
        assert_eq!(t.batches_in_flight(), 2);

        // The later batch finishes first: nothing may be committed yet.
        t.finish(b, &second, true);
        assert_eq!(t.take_commits(), vec![(tp(0), 10)]);
        t.finish(a, &first, true);
        assert_eq!(t.take_commits(), vec![(tp(0), 16)]);
        assert!(t.take_commits().is_empty(), "a position is handed out once");
        // Unless its commit failed: then the next commit carries it again.
        t.commit_failed(&[tp(0)]);
        assert_eq!(t.take_commits(), vec![(tp(0), 16)]);
        assert_eq!(t.batches_in_flight(), 0);
    }

    #[test]
    fn an_abandoned_batch_holds_the_commit_position_before_it() {
        let mut t = OffsetTracker::default();
        t.assign(tp(0));
        deliver(&mut t, 0, 0..4);
        let (Some((first, a)), _) = t.dispatch(batch(&[(0, 0), (0, 1)])) else { panic!() };
        let (Some((second, b)), _) = t.dispatch(batch(&[(0, 2), (0, 3)])) else { panic!() };
        t.finish(a, &first, false);
        t.finish(b, &second, true);
        assert_eq!(t.take_commits(), vec![(tp(0), 0)]);
    }

    #[test]
    fn revoked_partitions_are_dropped_from_batches_not_yet_running() {
        let mut t = OffsetTracker::default();
        t.assign(tp(0));
        t.assign(tp(1));
        deliver(&mut t, 0, 0..2);
        deliver(&mut t, 1, 0..2);
        let (Some((running, ticket)), _) = t.dispatch(batch(&[(1, 0)])) else { panic!() };
        t.start_revoke(&[tp(1)]);
        assert_eq!(t.in_flight_of(&[tp(1)]), 1);
        assert!(!t.delivered(&tp(1), 2), "no new events of a revoked partition");

        // An open batch held events of both partitions: partition 1's are dropped.
        let (Some((kept, _)), dropped) = t.dispatch(batch(&[(0, 0), (0, 1), (1, 1)])) else { panic!() };
        assert_eq!(dropped, 1);
        assert_eq!(kept.offsets.keys().cloned().collect::<Vec<_>>(), vec![tp(0)]);

        t.finish(ticket, &running, true);
        assert_eq!(t.in_flight_of(&[tp(1)]), 0);
        // Offset 0 was written, offset 1 was dropped: the next owner starts at 1.
        assert_eq!(t.revoke(&[tp(1)]), vec![(tp(1), 1)]);
        assert_eq!(t.assigned(), vec![tp(0)]);
    }

    #[test]
    fn a_reassigned_partition_does_not_take_events_of_its_earlier_assignment() {
        let mut t = OffsetTracker::default();
        t.assign(tp(0));
        deliver(&mut t, 0, 0..3);
        let (Some((old, ticket)), _) = t.dispatch(batch(&[(0, 0)])) else { panic!() };
        t.start_revoke(&[tp(0)]);
        t.revoke(&[tp(0)]);
        t.assign(tp(0));
        // The old batch is not counted against the new assignment.
        assert_eq!(t.in_flight_of(&[tp(0)]), 0);
        // Events delivered before the revocation are not in the new assignment.
        let (kept, dropped) = t.dispatch(batch(&[(0, 1), (0, 2)]));
        assert!(kept.is_none());
        assert_eq!(dropped, 2);
        // The old batch finishing late changes nothing the new owner relies on.
        deliver(&mut t, 0, 0..1);
        t.finish(ticket, &old, true);
        assert_eq!(t.take_commits(), vec![(tp(0), 1)]);
    }
}
