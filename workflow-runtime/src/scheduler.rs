//! The durable queue's in-memory side: which runs wait for a slot, in what order, and under
//! which concurrency limits.
//!
//! What makes the queue durable is the journal: a run is persisted as `pending` (or `waiting`,
//! with the time it is due) before anything here knows of it, and an engine that opens the
//! journal puts every unfinished run back in this queue. Runs are taken by priority (higher
//! first), then in the order they were queued; a run is only taken once it is due and its
//! workflow, its concurrency key and the engine all have a free slot.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

/// A run waiting for a slot (or for its time).
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) run_id: String,
    pub(crate) workflow: String,
    /// The workflow version the run is pinned to.
    pub(crate) version: u32,
    pub(crate) priority: i32,
    /// When the run is due, in microseconds since the Unix epoch; `u64::MAX` for a run that
    /// waits for an event with no deadline.
    pub(crate) due_us: u64,
    pub(crate) key: Option<(String, u32)>,
}

/// A run taken from the queue: it holds slots until [`Scheduler::release`].
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) workflow: String,
    pub(crate) key: Option<String>,
}

type Order = (Reverse<i32>, u64);

#[derive(Debug, Default)]
pub(crate) struct Scheduler {
    queue: BTreeMap<Order, Queued>,
    index: HashMap<String, Order>,
    next_order: u64,
    running: usize,
    running_by_workflow: HashMap<String, usize>,
    running_by_key: HashMap<String, usize>,
}

impl Scheduler {
    /// Queues a run, or moves its due time earlier if it is queued already.
    pub(crate) fn enqueue(&mut self, run: Queued) {
        if let Some(order) = self.index.get(&run.run_id)
            && let Some(queued) = self.queue.get_mut(order)
        {
            queued.due_us = queued.due_us.min(run.due_us);
            return;
        }
        let order = (Reverse(run.priority), self.next_order);
        self.next_order += 1;
        self.index.insert(run.run_id.clone(), order);
        self.queue.insert(order, run);
    }

    /// Makes a queued run due now (an event arrived for it). Returns whether it was queued.
    pub(crate) fn wake(&mut self, run_id: &str, now_us: u64) -> bool {
        match self.index.get(run_id).and_then(|o| self.queue.get_mut(o)) {
            Some(queued) => {
                queued.due_us = queued.due_us.min(now_us);
                true
            }
            None => false,
        }
    }

    /// Takes a run out of the queue (it was cancelled). Returns whether it was queued.
    pub(crate) fn remove(&mut self, run_id: &str) -> bool {
        match self.index.remove(run_id) {
            Some(order) => self.queue.remove(&order).is_some(),
            None => false,
        }
    }

    pub(crate) fn is_queued(&self, run_id: &str) -> bool {
        self.index.contains_key(run_id)
    }

    pub(crate) fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Takes every run that is due and fits the limits, and says when the next queued run is
    /// due. `workflow_limit` gives a workflow's limit, or `None` when it is not registered (its
    /// runs stay queued until it is).
    pub(crate) fn take_ready(
        &mut self,
        now_us: u64,
        global_limit: usize,
        workflow_limit: impl Fn(&str) -> Option<Option<u32>>,
    ) -> (Vec<(Queued, Slot)>, Option<u64>) {
        let mut taken = Vec::new();
        let mut next_due: Option<u64> = None;
        let mut chosen = Vec::new();
        for (order, run) in &self.queue {
            if self.running + chosen.len() >= global_limit {
                break;
            }
            if run.due_us > now_us {
                if run.due_us != u64::MAX {
                    next_due = Some(next_due.map_or(run.due_us, |d| d.min(run.due_us)));
                }
                continue;
            }
            let Some(limit) = workflow_limit(&run.workflow) else {
                continue;
            };
            let running_here = self
                .running_by_workflow
                .get(&run.workflow)
                .copied()
                .unwrap_or(0)
                + chosen
                    .iter()
                    .filter(|(_, w, _): &&(Order, String, Option<String>)| *w == run.workflow)
                    .count();
            if limit.is_some_and(|limit| running_here >= limit as usize) {
                continue;
            }
            if let Some((key, key_limit)) = &run.key {
                let running_key = self.running_by_key.get(key).copied().unwrap_or(0)
                    + chosen
                        .iter()
                        .filter(|(_, _, k)| k.as_deref() == Some(key.as_str()))
                        .count();
                if running_key >= *key_limit as usize {
                    continue;
                }
            }
            chosen.push((
                *order,
                run.workflow.clone(),
                run.key.as_ref().map(|k| k.0.clone()),
            ));
        }
        for (order, workflow, key) in chosen {
            if let Some(run) = self.queue.remove(&order) {
                self.index.remove(&run.run_id);
                self.running += 1;
                *self
                    .running_by_workflow
                    .entry(workflow.clone())
                    .or_default() += 1;
                if let Some(key) = &key {
                    *self.running_by_key.entry(key.clone()).or_default() += 1;
                }
                taken.push((run, Slot { workflow, key }));
            }
        }
        (taken, next_due)
    }

    /// Gives back the slots of a run that stopped executing.
    pub(crate) fn release(&mut self, slot: &Slot) {
        self.running = self.running.saturating_sub(1);
        if let Some(n) = self.running_by_workflow.get_mut(&slot.workflow) {
            *n = n.saturating_sub(1);
        }
        if let Some(key) = &slot.key
            && let Some(n) = self.running_by_key.get_mut(key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running_by_key.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        id: &str,
        workflow: &str,
        priority: i32,
        due_us: u64,
        key: Option<(&str, u32)>,
    ) -> Queued {
        Queued {
            run_id: id.into(),
            workflow: workflow.into(),
            version: 1,
            priority,
            due_us,
            key: key.map(|(k, n)| (k.into(), n)),
        }
    }

    fn ids(taken: &[(Queued, Slot)]) -> Vec<&str> {
        taken.iter().map(|(q, _)| q.run_id.as_str()).collect()
    }

    #[test]
    fn takes_by_priority_then_fifo_when_due() {
        let mut s = Scheduler::default();
        s.enqueue(run("a", "w", 0, 0, None));
        s.enqueue(run("b", "w", 5, 0, None));
        s.enqueue(run("c", "w", 0, 100, None));
        s.enqueue(run("d", "w", 0, 0, None));
        let (taken, next) = s.take_ready(50, 10, |_| Some(None));
        assert_eq!(ids(&taken), ["b", "a", "d"]);
        assert_eq!(next, Some(100));
        let (taken, _) = s.take_ready(100, 10, |_| Some(None));
        assert_eq!(ids(&taken), ["c"]);
    }

    #[test]
    fn respects_global_workflow_and_key_limits_and_releases() {
        let mut s = Scheduler::default();
        for (id, wf, key) in [
            ("u1-a", "chat", Some(("user-1", 1))),
            ("u1-b", "chat", Some(("user-1", 1))),
            ("u2-a", "chat", Some(("user-2", 1))),
            ("x", "etl", None),
            ("y", "etl", None),
        ] {
            s.enqueue(run(id, wf, 0, 0, key));
        }
        let (taken, _) = s.take_ready(0, 10, |w| Some(if w == "etl" { Some(1) } else { None }));
        assert_eq!(ids(&taken), ["u1-a", "u2-a", "x"]);
        let (none, _) = s.take_ready(0, 10, |w| Some(if w == "etl" { Some(1) } else { None }));
        assert!(none.is_empty(), "u1-b waits for user-1, y for etl");
        s.release(&taken[0].1);
        let (none, _) = s.take_ready(0, 2, |_| Some(None));
        assert!(none.is_empty(), "the engine-wide limit of 2 is reached");
        let (taken, _) = s.take_ready(0, 3, |w| Some(if w == "etl" { Some(1) } else { None }));
        assert_eq!(ids(&taken), ["u1-b"], "user-1's slot was released");
    }

    #[test]
    fn unregistered_workflows_and_event_waits_stay_queued_until_woken() {
        let mut s = Scheduler::default();
        s.enqueue(run("a", "unknown", 0, 0, None));
        s.enqueue(run("b", "w", 0, u64::MAX, None));
        let (taken, next) = s.take_ready(10, 10, |w| (w == "w").then_some(None));
        assert!(taken.is_empty());
        assert_eq!(next, None);
        assert!(s.wake("b", 10));
        let (taken, _) = s.take_ready(10, 10, |w| (w == "w").then_some(None));
        assert_eq!(ids(&taken), ["b"]);
        assert!(s.remove("a"));
        assert_eq!(s.queued_len(), 0);
    }
}
