//! The reconciliation core that every actuator shares.
//!
//! Level-triggered: the desired state is the set of rows a view holds now (each an
//! [`Action`]), the observed state is what the sources report; the core acts on the
//! difference, never on the edge of a change, so a missed notification or a restart loses
//! nothing. An action is tried until the sources report it done or it leaves the view:
//!
//! - **idempotent**: an action in flight, or observed done, is not dispatched again;
//! - **retried** with exponential backoff after a failure, up to a cap, and given up after a
//!   number of attempts (the failure is reported, and the action waits until it leaves the
//!   view and comes back);
//! - **rate-limited per target**: at most so many dispatches per target in a window, and a
//!   minimum dwell between two actions on the same target (a node is not put to sleep a
//!   minute after it was woken);
//! - **dry-run**: every decision is made and journaled, nothing is sent;
//! - **fed back**: each outcome becomes facts of the `action_status` input (started,
//!   succeeded, failed with its reason), and a line of the action journal, with the `why` of
//!   the row that caused it.
//!
//! Time is given by the caller (`Instant`s), so the core is a deterministic state machine.

use crate::source::{Backoff, Report, number, symbol};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// A row of a view that asks for something to be done.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Action {
    /// Unique while the row holds (`wake:gaming`).
    pub id: String,
    pub kind: String,
    pub target: String,
    /// The actuator's parameters, from the view's columns (a MAC, a node, a VMID).
    pub parameters: BTreeMap<String, String>,
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The wait after the first failure; it doubles after each one, up to `retry_cap`.
    pub retry_first: Duration,
    pub retry_cap: Duration,
    /// Attempts before giving up until the action leaves the view and comes back.
    pub attempts: u32,
    /// At most `per_target` dispatches on one target within `window`.
    pub per_target: usize,
    pub window: Duration,
    /// The least time between two dispatches on one target.
    pub dwell: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            retry_first: Duration::from_secs(5),
            retry_cap: Duration::from_secs(300),
            attempts: 8,
            per_target: 6,
            window: Duration::from_secs(3600),
            dwell: Duration::from_secs(60),
        }
    }
}

/// What became of a dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent (or, dry, would have been).
    Started,
    Succeeded,
    Failed(String),
    /// Not sent: dry-run.
    DryRun,
    /// Given up after too many failures.
    GaveUp(String),
}

impl Outcome {
    /// The state as the `action_status` facts name it.
    pub fn state(&self) -> &'static str {
        match self {
            Outcome::Started => "started",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::DryRun => "dry-run",
            Outcome::GaveUp(_) => "gave-up",
        }
    }

    fn reason(&self) -> &str {
        match self {
            Outcome::Failed(reason) | Outcome::GaveUp(reason) => reason,
            _ => "",
        }
    }
}

/// One line of the action journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Seconds since the start of the core (the caller maps it to event time).
    pub at: Duration,
    pub action: Action,
    pub attempt: u32,
    pub outcome: Outcome,
    /// The `why` of the view row, as the engine explained it when it was dispatched.
    pub why: String,
}

/// A dispatch the caller must carry out now, then report with [`Reconciler::finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub action: Action,
    pub attempt: u32,
}

#[derive(Debug)]
struct Track {
    action: Action,
    why: String,
    attempts: u32,
    in_flight: bool,
    done: bool,
    given_up: bool,
    not_before: Instant,
    backoff: Backoff,
}

/// The state of every desired action, and the history of dispatches per target.
pub struct Reconciler {
    limits: Limits,
    dry_run: bool,
    start: Instant,
    tracks: BTreeMap<String, Track>,
    dispatched: BTreeMap<String, VecDeque<Instant>>,
    journal: Vec<Record>,
    status: Report,
}

impl Reconciler {
    pub fn new(limits: Limits, dry_run: bool, start: Instant) -> Reconciler {
        Reconciler {
            limits,
            dry_run,
            start,
            tracks: BTreeMap::new(),
            dispatched: BTreeMap::new(),
            journal: Vec::new(),
            status: Report::default(),
        }
    }

    /// The view's rows now, with each row's `why`: new rows become desired, rows gone are
    /// forgotten (an action in flight still reports its outcome).
    pub fn desired(&mut self, now: Instant, rows: impl IntoIterator<Item = (Action, String)>) {
        let mut seen = BTreeMap::new();
        for (action, why) in rows {
            seen.insert(action.id.clone(), (action, why));
        }
        self.tracks
            .retain(|id, track| seen.contains_key(id) || track.in_flight);
        for (id, (action, why)) in seen {
            let backoff = Backoff::new(self.limits.retry_first, self.limits.retry_cap);
            self.tracks.entry(id).or_insert(Track {
                action,
                why,
                attempts: 0,
                in_flight: false,
                done: false,
                given_up: false,
                not_before: now,
                backoff,
            });
        }
    }

    /// The sources report the action's effect (the node is up, the guest runs): nothing more
    /// to do for it while it stays in the view.
    pub fn observed_done(&mut self, id: &str) {
        if let Some(track) = self.tracks.get_mut(id) {
            track.done = true;
        }
    }

    /// What to dispatch now: desired, not done, not in flight, past its backoff, and allowed
    /// by its target's rate limit and dwell. Each is marked in flight; in dry-run it is
    /// journaled and settled at once, and nothing is returned.
    pub fn due(&mut self, now: Instant) -> Vec<Dispatch> {
        let mut due = Vec::new();
        let ids: Vec<String> = self.tracks.keys().cloned().collect();
        for id in ids {
            let track = &self.tracks[&id];
            if track.done || track.in_flight || track.given_up || now < track.not_before {
                continue;
            }
            let target = track.action.target.clone();
            if !self.allowed(&target, now) {
                continue;
            }
            let window = self.limits.window;
            let history = self.dispatched.entry(target).or_default();
            history.push_back(now);
            while history
                .front()
                .is_some_and(|&t| now.duration_since(t) >= window)
            {
                history.pop_front();
            }
            let track = self.tracks.get_mut(&id).expect("tracked");
            track.attempts += 1;
            let dispatch = Dispatch {
                action: track.action.clone(),
                attempt: track.attempts,
            };
            if self.dry_run {
                track.done = true;
                self.record(now, &id, Outcome::DryRun);
            } else {
                track.in_flight = true;
                self.record(now, &id, Outcome::Started);
                due.push(dispatch);
            }
        }
        due
    }

    fn allowed(&self, target: &str, now: Instant) -> bool {
        let Some(history) = self.dispatched.get(target) else {
            return true;
        };
        let recent = history
            .iter()
            .filter(|&&t| now.duration_since(t) < self.limits.window)
            .count();
        let dwelt = history
            .back()
            .is_none_or(|&last| now.duration_since(last) >= self.limits.dwell);
        recent < self.limits.per_target && dwelt
    }

    /// The outcome of a dispatch. A success waits for the sources to report the effect; a
    /// failure is retried after the backoff, until the attempts run out.
    pub fn finished(&mut self, now: Instant, id: &str, result: Result<(), String>) {
        let Some(track) = self.tracks.get_mut(id) else {
            return;
        };
        track.in_flight = false;
        let outcome = match result {
            Ok(()) => {
                track.done = true;
                Outcome::Succeeded
            }
            Err(reason) if track.attempts >= self.limits.attempts => {
                track.given_up = true;
                Outcome::GaveUp(format!("{} attempts; the last: {reason}", track.attempts))
            }
            Err(reason) => {
                track.not_before = now + track.backoff.failed();
                Outcome::Failed(reason)
            }
        };
        self.record(now, id, outcome);
    }

    fn record(&mut self, now: Instant, id: &str, outcome: Outcome) {
        let track = &self.tracks[id];
        let at = now.duration_since(self.start);
        self.status.insert(
            "action_status",
            vec![
                symbol(id),
                symbol(outcome.state()),
                symbol(outcome.reason()),
                number(at.as_secs() as i64),
            ],
        );
        self.journal.push(Record {
            at,
            action: track.action.clone(),
            attempt: track.attempts,
            outcome,
            why: track.why.clone(),
        });
    }

    /// The `action_status(id, state, reason, at)` facts since the last call, to feed back.
    pub fn take_status(&mut self) -> Report {
        std::mem::take(&mut self.status)
    }

    /// The action journal, oldest first.
    pub fn journal(&self) -> &[Record] {
        &self.journal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: &str, target: &str) -> (Action, String) {
        (
            Action {
                id: id.into(),
                kind: id.split(':').next().unwrap_or_default().into(),
                target: target.into(),
                parameters: BTreeMap::new(),
            },
            format!("why {id}"),
        )
    }

    fn limits() -> Limits {
        Limits {
            retry_first: Duration::from_secs(10),
            retry_cap: Duration::from_secs(40),
            attempts: 4,
            per_target: 2,
            window: Duration::from_secs(600),
            dwell: Duration::from_secs(30),
        }
    }

    fn ids(due: &[Dispatch]) -> Vec<&str> {
        due.iter().map(|d| d.action.id.as_str()).collect()
    }

    #[test]
    fn a_desired_action_is_dispatched_once_until_it_fails_or_leaves() {
        let t0 = Instant::now();
        let mut core = Reconciler::new(limits(), false, t0);
        core.desired(t0, [action("wake:a", "a"), action("start:w", "w")]);
        assert_eq!(ids(&core.due(t0)), ["start:w", "wake:a"]);
        // In flight: nothing again, however often the view is read.
        core.desired(t0, [action("wake:a", "a"), action("start:w", "w")]);
        assert!(core.due(t0 + Duration::from_secs(100)).is_empty());
        core.finished(t0, "wake:a", Ok(()));
        assert!(core.due(t0 + Duration::from_secs(200)).is_empty());
        let status = core.take_status();
        assert_eq!(status.insert["action_status"].len(), 3);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap_then_give_up() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut core = Reconciler::new(
            Limits {
                per_target: 100,
                dwell: Duration::ZERO,
                ..limits()
            },
            false,
            t0,
        );
        core.desired(t0, [action("wake:a", "a")]);
        // Waits of 10, 20, then 40 (the cap), and the fourth failure gives up.
        for (tried, next) in [(0, 10), (10, 30), (30, 70)] {
            assert_eq!(core.due(at(tried)).len(), 1, "at {tried}");
            core.finished(at(tried), "wake:a", Err("no answer".into()));
            assert!(core.due(at(next - 1)).is_empty(), "before {next}");
        }
        let last = core.due(at(70));
        assert_eq!(last[0].attempt, 4);
        core.finished(at(70), "wake:a", Err("no answer".into()));
        assert!(core.due(at(10_000)).is_empty());
        let outcome = &core.journal().last().unwrap().outcome;
        assert_eq!(
            outcome,
            &Outcome::GaveUp("4 attempts; the last: no answer".into())
        );
    }

    #[test]
    fn a_target_is_rate_limited_and_dwells() {
        let t0 = Instant::now();
        let mut core = Reconciler::new(limits(), false, t0);
        core.desired(t0, [action("wake:a", "a"), action("ray_start:a", "a")]);
        // Both on target `a`: one now, the other after the dwell.
        assert_eq!(core.due(t0).len(), 1);
        assert!(core.due(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(core.due(t0 + Duration::from_secs(30)).len(), 1);
        // Two in the window: a third action on `a` waits for the window to pass.
        core.finished(t0, "wake:a", Ok(()));
        core.finished(t0, "ray_start:a", Ok(()));
        core.desired(t0, [action("sleep:a", "a")]);
        assert!(core.due(t0 + Duration::from_secs(100)).is_empty());
        assert_eq!(core.due(t0 + Duration::from_secs(600)).len(), 1);
    }

    #[test]
    fn an_action_that_leaves_and_comes_back_is_tried_afresh() {
        let t0 = Instant::now();
        let mut core = Reconciler::new(
            Limits {
                dwell: Duration::ZERO,
                ..limits()
            },
            false,
            t0,
        );
        core.desired(t0, [action("sleep:a", "a")]);
        assert_eq!(core.due(t0).len(), 1);
        core.finished(t0, "sleep:a", Ok(()));
        core.observed_done("sleep:a");
        core.desired(t0, []);
        core.desired(t0, [action("sleep:a", "a")]);
        assert_eq!(core.due(t0 + Duration::from_secs(1)).len(), 1);
    }

    #[test]
    fn dry_run_journals_and_sends_nothing() {
        let t0 = Instant::now();
        let mut core = Reconciler::new(limits(), true, t0);
        core.desired(t0, [action("wake:a", "a")]);
        assert!(core.due(t0).is_empty());
        assert!(core.due(t0 + Duration::from_secs(100)).is_empty());
        let journal = core.journal();
        assert_eq!(journal.len(), 1);
        assert_eq!(journal[0].outcome, Outcome::DryRun);
        assert_eq!(journal[0].why, "why wake:a");
    }
}
