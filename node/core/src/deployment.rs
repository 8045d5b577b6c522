//! A service provider's deployment of one job: from bids to a running job and its end.
//!
//! ```text
//!  Preparing ──bids collected──▶ Committing ──all acked──▶ Provisioning ──all running──▶ Running
//!      │ too few bids                │ refused / no ack:         │ a worker failed          │
//!      ▼                             ▼ revert every ack          ▼ shut the rest down       ▼ all done
//!    Failed ◀──────────────────── Failed                       Failed                   Completed
//!                                                                          shutdown() from any live
//!                                                                          state: ShuttingDown ──▶ Completed
//! ```
//!
//! The machine is sans-IO like the node: inputs are method calls with the time, outputs are
//! [`Request`]s to send, drained with [`Deployment::poll_request`], and its next deadline is
//! [`Deployment::poll_timeout`]. It collects bids until the bid deadline (or until it holds
//! as many bids as it may use), ranks them with [`offer::rank`](crate::offer::rank) and the
//! latency table, and commits in two phases: a commit to each chosen provider, and if any
//! refuses or does not answer by the commit deadline, a revert to every provider that
//! accepted: all or nothing. A worker that fails while provisioning or running fails the
//! deployment and the others are shut down.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::PeerId;
use crate::offer::{Bid, rank};
use crate::time::Timestamp;

/// Where a deployment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    /// Asking for bids and collecting them.
    Preparing,
    /// Commits sent to the chosen providers; waiting for every answer.
    Committing,
    /// Every provider accepted; waiting for every worker to run.
    Provisioning,
    /// Every worker runs.
    Running,
    /// Shutting the workers down on request.
    ShuttingDown,
    /// Every worker finished (or was shut down on request).
    Completed,
    /// The deployment failed; `reason` says why.
    Failed,
}

impl DeployState {
    /// The state's name, as stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            DeployState::Preparing => "preparing",
            DeployState::Committing => "committing",
            DeployState::Provisioning => "provisioning",
            DeployState::Running => "running",
            DeployState::ShuttingDown => "shutting_down",
            DeployState::Completed => "completed",
            DeployState::Failed => "failed",
        }
    }

    /// True for completed and failed.
    pub fn is_terminal(self) -> bool {
        matches!(self, DeployState::Completed | DeployState::Failed)
    }
}

impl fmt::Display for DeployState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something to send to providers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Ask for bids (broadcast, or to pinned providers).
    BidRequest,
    /// Commit the job on a provider.
    Commit(PeerId),
    /// Undo a commit that was accepted.
    Revert(PeerId),
    /// Stop the job on a provider.
    Shutdown(PeerId),
    /// Ask a provider where its worker stands (after the requester's restart).
    Query(PeerId),
    /// Start the worker on a provider (a replacement worker; the first workers start
    /// together when the deployment enters provisioning).
    Start(PeerId),
}

/// How long each phase may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Bids are collected for this long.
    pub bids: Duration,
    /// Every commit must be answered within this long.
    pub commit: Duration,
    /// Every worker must run within this long of the commits being accepted.
    pub provision: Duration,
    /// Every worker must confirm a shutdown within this long.
    pub shutdown: Duration,
    /// Every worker must report its end within this long of the deployment running (the
    /// job's duration limit plus a margin); past it, the deployment fails and the workers
    /// are told to stop.
    pub run: Duration,
    /// After a restart, every worker must confirm where it stands within this long
    /// (queried again after 1 s, 2 s, 4 s ... up to [`QUERY_RETRY_MAX`]); a worker that
    /// does not fails the deployment.
    pub confirm: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            bids: Duration::from_secs(5),
            commit: Duration::from_secs(10),
            provision: Duration::from_secs(120),
            shutdown: Duration::from_secs(30),
            run: Duration::from_secs(3600 + 60),
            confirm: Duration::from_secs(120),
        }
    }
}

/// What the deployment knows of one chosen provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Worker {
    /// Commit sent, no answer yet.
    Committing,
    /// Commit accepted; not running yet.
    Accepted,
    /// Its job runs.
    Running,
    /// Its job ended well.
    Done,
    /// Its job failed or it refused.
    Failed,
    /// Asked to stop.
    Stopping,
    /// Stopped (or its commit reverted).
    Stopped,
}

/// A deployment; see the module documentation.
#[derive(Clone, Debug)]
pub struct Deployment {
    workers_wanted: usize,
    deadlines: Deadlines,
    state: DeployState,
    since: Timestamp,
    deadline: Option<Timestamp>,
    bids: Vec<Bid>,
    /// Providers asked for bids, if known: once every one answered, the choice is made.
    asked: Option<usize>,
    workers: BTreeMap<PeerId, Worker>,
    reason: Option<String>,
    requests: std::collections::VecDeque<Request>,
    transitions: Vec<(Timestamp, DeployState, String)>,
    /// After a restart: the workers that have not confirmed where they stand yet.
    unconfirmed: BTreeSet<PeerId>,
    /// When the unconfirmed workers are queried next, the wait after that, and when
    /// they fail.
    next_query: Timestamp,
    query_backoff: Duration,
    confirm_deadline: Timestamp,
    /// A running deployment's replacement of one worker, under way.
    replacement: Option<Replacement>,
}

/// The replacement of worker `old` while the deployment runs: bids for one worker, a
/// commit, a start; once the new worker runs, the old one is shut down. If any step fails
/// the old worker stays.
#[derive(Clone, Debug)]
struct Replacement {
    old: PeerId,
    phase: ReplacePhase,
    deadline: Timestamp,
    bids: Vec<Bid>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplacePhase {
    Bidding,
    Committing(PeerId),
    Starting(PeerId),
}

impl Deployment {
    /// A deployment of `workers` workers starting at `now`: it asks for bids at once.
    pub fn new(now: Timestamp, workers: usize, deadlines: Deadlines) -> Self {
        let mut d = Deployment {
            workers_wanted: workers.max(1),
            deadlines,
            state: DeployState::Preparing,
            since: now,
            deadline: Some(now + deadlines.bids),
            bids: Vec::new(),
            asked: None,
            workers: BTreeMap::new(),
            reason: None,
            requests: std::collections::VecDeque::new(),
            transitions: vec![(now, DeployState::Preparing, "bids asked".into())],
            unconfirmed: BTreeSet::new(),
            next_query: Timestamp::MAX,
            query_backoff: QUERY_RETRY_FIRST,
            confirm_deadline: Timestamp::MAX,
            replacement: None,
        };
        d.requests.push_back(Request::BidRequest);
        d
    }

    /// A deployment read back after the requester's restart: it was in `state` since
    /// `since` with the chosen `workers`. What happens depends on how far it got:
    ///
    /// - preparing: no provider was committed; it fails, nothing to undo;
    /// - committing: every chosen provider is told to revert, and it fails;
    /// - provisioning, running, shutting down: it resumes (workers are told to start again
    ///   or to stop again where that was under way, which providers take as no-ops if
    ///   done) and every worker is queried until it confirms where it stands; a worker
    ///   that has not confirmed within [`Deadlines::confirm`] fails the deployment.
    ///
    /// The run deadline of a running deployment still counts from `since`.
    pub fn restore(
        now: Timestamp,
        workers_wanted: usize,
        deadlines: Deadlines,
        state: DeployState,
        since: Timestamp,
        workers: &[PeerId],
    ) -> Self {
        let mut d = Deployment::new(since, workers_wanted, deadlines);
        d.requests.clear();
        d.transitions.clear();
        d.state = state;
        d.since = since;
        let why = "restored after a restart";
        match state {
            DeployState::Preparing => {
                d.transitions.push((now, state, why.into()));
                d.fail(
                    now,
                    "interrupted by a restart before any provider was committed; deploy again"
                        .into(),
                );
                return d;
            }
            DeployState::Committing => {
                d.transitions.push((now, state, why.into()));
                for p in workers {
                    d.workers.insert(*p, Worker::Accepted);
                }
                d.revert_all(
                    now,
                    "interrupted by a restart while committing; every commit was reverted".into(),
                );
                return d;
            }
            DeployState::Completed | DeployState::Failed => {
                d.transitions.push((now, state, why.into()));
                d.deadline = None;
                return d;
            }
            DeployState::Provisioning => {
                for p in workers {
                    d.workers.insert(*p, Worker::Accepted);
                }
                d.deadline = Some(now + deadlines.provision);
            }
            DeployState::Running => {
                for p in workers {
                    d.workers.insert(*p, Worker::Running);
                }
                d.deadline = Some(since + deadlines.run);
            }
            DeployState::ShuttingDown => {
                for p in workers {
                    d.workers.insert(*p, Worker::Stopping);
                    d.requests.push_back(Request::Shutdown(*p));
                }
                d.deadline = Some(now + deadlines.shutdown);
            }
        }
        d.transitions.push((now, state, why.into()));
        d.unconfirmed = workers.iter().copied().collect();
        d.next_query = now;
        d.confirm_deadline = now + deadlines.confirm;
        d.confirm_timeout(now);
        d
    }

    /// Workers that have not confirmed where they stand since a restart.
    pub fn unconfirmed(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.unconfirmed.iter().copied()
    }

    /// Says how many providers were asked for bids: once each has bid, the deployment
    /// chooses without waiting for the bid deadline.
    pub fn set_asked(&mut self, providers: usize) {
        self.asked = Some(providers);
    }

    /// The current state.
    pub fn state(&self) -> DeployState {
        self.state
    }

    /// When the current state began.
    pub fn since(&self) -> Timestamp {
        self.since
    }

    /// Why it failed or ended.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The chosen providers and where each stands.
    pub fn workers(&self) -> impl Iterator<Item = (PeerId, Worker)> + '_ {
        self.workers.iter().map(|(p, w)| (*p, *w))
    }

    /// Every state entered, with its time and reason, in order.
    pub fn transitions(&self) -> &[(Timestamp, DeployState, String)] {
        &self.transitions
    }

    /// The next request to send.
    pub fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    /// When [`Deployment::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.state.is_terminal() {
            return self.deadline;
        }
        let mut t = self.deadline.unwrap_or(Timestamp::MAX);
        if !self.unconfirmed.is_empty() {
            t = t.min(self.next_query).min(self.confirm_deadline);
        }
        if let Some(r) = &self.replacement {
            t = t.min(r.deadline);
        }
        (t != Timestamp::MAX).then_some(t)
    }

    /// Starts replacing running worker `old` (its RTTs break the job's constraint): asks
    /// for bids again, commits and starts the best new provider, and shuts `old` down once
    /// the new worker runs. Returns false (nothing done) unless the deployment runs, `old`
    /// is one of its running workers and no replacement is under way.
    pub fn replace_worker(&mut self, now: Timestamp, old: PeerId) -> bool {
        if self.state != DeployState::Running
            || self.replacement.is_some()
            || self.workers.get(&old) != Some(&Worker::Running)
        {
            return false;
        }
        self.replacement = Some(Replacement {
            old,
            phase: ReplacePhase::Bidding,
            deadline: now + self.deadlines.bids,
            bids: Vec::new(),
        });
        self.requests.push_back(Request::BidRequest);
        self.note(now, format!("replacing worker {old}: bids asked"));
        true
    }

    /// The worker being replaced, while a replacement is under way.
    pub fn replacing(&self) -> Option<PeerId> {
        self.replacement.as_ref().map(|r| r.old)
    }

    /// A bid arrived (ignored after the bid phase and from a provider that bid already).
    pub fn handle_bid(&mut self, now: Timestamp, bid: Bid, rtt: &BTreeMap<PeerId, Duration>) {
        if let Some(r) = &mut self.replacement
            && r.phase == ReplacePhase::Bidding
        {
            if !self.workers.contains_key(&bid.peer) && !r.bids.iter().any(|b| b.peer == bid.peer) {
                r.bids.push(bid);
                if r.bids.len() >= BIDS_PER_WORKER {
                    self.choose_replacement(now, rtt);
                }
            }
            return;
        }
        if self.state != DeployState::Preparing || self.bids.iter().any(|b| b.peer == bid.peer) {
            return;
        }
        self.bids.push(bid);
        // Enough bids to choose from: no need to wait for the deadline.
        if self.bids.len() >= self.workers_wanted * BIDS_PER_WORKER
            || self.asked.is_some_and(|n| self.bids.len() >= n)
        {
            self.choose(now, rtt);
        }
    }

    /// A provider answered a commit: accepted, or refused with why.
    pub fn handle_commit_answer(
        &mut self,
        now: Timestamp,
        from: PeerId,
        answer: Result<(), String>,
    ) {
        let accepted = answer.is_ok();
        if self.workers.get(&from) != Some(&Worker::Committing) {
            return;
        }
        if self
            .replacement
            .as_ref()
            .is_some_and(|r| r.phase == ReplacePhase::Committing(from))
        {
            match answer {
                Ok(()) => {
                    self.workers.insert(from, Worker::Accepted);
                    self.requests.push_back(Request::Start(from));
                    if let Some(r) = &mut self.replacement {
                        r.phase = ReplacePhase::Starting(from);
                        r.deadline = now + self.deadlines.provision;
                    }
                }
                Err(why) => {
                    self.workers.remove(&from);
                    self.abandon_replacement(now, &format!("{from} refused the commit: {why}"));
                }
            }
            return;
        }
        if self.state != DeployState::Committing {
            // Too late: the deployment moved on (failed and reverted); undo this one too.
            if accepted {
                self.workers.insert(from, Worker::Stopped);
                self.requests.push_back(Request::Revert(from));
            }
            return;
        }
        if let Err(why) = answer {
            self.workers.insert(from, Worker::Failed);
            self.revert_all(now, format!("provider {from} refused the commit: {why}"));
            return;
        }
        self.workers.insert(from, Worker::Accepted);
        if self.workers.values().all(|w| *w == Worker::Accepted) {
            let deadline = now + self.deadlines.provision;
            self.enter(
                now,
                DeployState::Provisioning,
                "every commit accepted",
                Some(deadline),
            );
        }
    }

    /// A provider reports its worker's status: running, or ended (`Ok` well, `Err` why not).
    pub fn handle_status(&mut self, now: Timestamp, from: PeerId, status: WorkerStatus) {
        let Some(w) = self.workers.get(&from).copied() else {
            return;
        };
        if self.state.is_terminal() {
            return;
        }
        self.unconfirmed.remove(&from);
        if w == Worker::Stopping
            && matches!(status, WorkerStatus::Ended(_))
            && self.state != DeployState::ShuttingDown
        {
            // A worker this deployment let go (replaced): its end is no failure.
            self.workers.insert(from, Worker::Stopped);
            self.maybe_finished(now);
            return;
        }
        if let WorkerStatus::Ended(Err(why)) = &status
            && self
                .replacement
                .as_ref()
                .is_some_and(|r| r.phase == ReplacePhase::Starting(from))
        {
            self.workers.remove(&from);
            self.abandon_replacement(now, &format!("{from} failed to start: {why}"));
            return;
        }
        match status {
            WorkerStatus::Running => {
                if w == Worker::Accepted {
                    self.workers.insert(from, Worker::Running);
                }
                let started = self
                    .replacement
                    .as_ref()
                    .filter(|r| r.phase == ReplacePhase::Starting(from))
                    .map(|r| r.old);
                if let Some(old) = started {
                    self.replacement = None;
                    if self.workers.get(&old) == Some(&Worker::Running) {
                        self.workers.insert(old, Worker::Stopping);
                        self.requests.push_back(Request::Shutdown(old));
                    }
                    self.note(now, format!("worker {old} replaced by {from}"));
                }
                self.progress(now);
            }
            WorkerStatus::Ended(Ok(())) => {
                let stopping = self.state == DeployState::ShuttingDown;
                self.workers.insert(
                    from,
                    if stopping {
                        Worker::Stopped
                    } else {
                        Worker::Done
                    },
                );
                self.progress(now);
            }
            WorkerStatus::Ended(Err(why)) => {
                if self.state == DeployState::ShuttingDown {
                    self.workers.insert(from, Worker::Stopped);
                    self.maybe_finished(now);
                } else if !self.state.is_terminal() {
                    self.workers.insert(from, Worker::Failed);
                    self.shut_down_rest(now);
                    self.fail(now, format!("worker on {from} failed: {why}"));
                }
            }
        }
    }

    /// The requester asks to stop the deployment.
    pub fn shutdown(&mut self, now: Timestamp) {
        match self.state {
            DeployState::Preparing => {
                self.finish(now, DeployState::Completed, "shut down before any commit")
            }
            DeployState::Committing => self.revert_all(now, "shut down while committing".into()),
            DeployState::Provisioning | DeployState::Running => {
                self.shut_down_rest(now);
                let deadline = now + self.deadlines.shutdown;
                self.enter(
                    now,
                    DeployState::ShuttingDown,
                    "shutdown requested",
                    Some(deadline),
                );
                self.maybe_finished(now);
            }
            DeployState::ShuttingDown | DeployState::Completed | DeployState::Failed => {}
        }
    }

    /// Deadlines due at or before `now` fire.
    pub fn handle_timeout(&mut self, now: Timestamp, rtt: &BTreeMap<PeerId, Duration>) {
        if !self.unconfirmed.is_empty() && !self.state.is_terminal() {
            self.confirm_timeout(now);
        }
        if self.replacement.as_ref().is_some_and(|r| r.deadline <= now) {
            self.replacement_timeout(now, rtt);
        }
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        match self.state {
            DeployState::Preparing => self.choose(now, rtt),
            DeployState::Committing => {
                self.revert_all(now, "a provider did not answer the commit in time".into())
            }
            DeployState::Provisioning => {
                self.shut_down_rest(now);
                self.fail(now, "the workers did not all start in time".into());
            }
            DeployState::ShuttingDown => self.finish(
                now,
                DeployState::Completed,
                "shut down (some workers did not confirm)",
            ),
            DeployState::Running => {
                self.shut_down_rest(now);
                self.fail(
                    now,
                    "the workers did not all report an end within the job's duration limit".into(),
                );
            }
            DeployState::Completed | DeployState::Failed => self.deadline = None,
        }
    }

    /// Queries the workers that have not confirmed since a restart, or fails the
    /// deployment once they have had [`Deadlines::confirm`] to answer.
    fn confirm_timeout(&mut self, now: Timestamp) {
        if self.confirm_deadline <= now {
            let silent: Vec<PeerId> = std::mem::take(&mut self.unconfirmed).into_iter().collect();
            let names: Vec<String> = silent.iter().map(ToString::to_string).collect();
            for p in &silent {
                self.workers.insert(*p, Worker::Failed);
            }
            if self.state == DeployState::ShuttingDown {
                self.finish(
                    now,
                    DeployState::Completed,
                    "shut down (some workers did not confirm)",
                );
                return;
            }
            self.shut_down_rest(now);
            self.fail(
                now,
                format!(
                    "after a restart, {} did not confirm their workers within {} s",
                    names.join(", "),
                    self.deadlines.confirm.as_secs()
                ),
            );
            return;
        }
        if self.next_query <= now {
            for p in self.unconfirmed.clone() {
                self.requests.push_back(Request::Query(p));
            }
            self.next_query = now + self.query_backoff;
            self.query_backoff = (self.query_backoff * 2).min(QUERY_RETRY_MAX);
        }
    }

    fn replacement_timeout(&mut self, now: Timestamp, rtt: &BTreeMap<PeerId, Duration>) {
        let Some(phase) = self.replacement.as_ref().map(|r| r.phase) else {
            return;
        };
        match phase {
            ReplacePhase::Bidding => self.choose_replacement(now, rtt),
            ReplacePhase::Committing(p) => {
                // The commit may still land: revert it.
                self.workers.remove(&p);
                self.requests.push_back(Request::Revert(p));
                self.abandon_replacement(now, &format!("{p} did not answer the commit in time"));
            }
            ReplacePhase::Starting(p) => {
                self.workers.insert(p, Worker::Stopping);
                self.requests.push_back(Request::Shutdown(p));
                self.abandon_replacement(now, &format!("{p} did not start in time"));
            }
        }
    }

    fn choose_replacement(&mut self, now: Timestamp, rtt: &BTreeMap<PeerId, Duration>) {
        let Some(r) = &mut self.replacement else {
            return;
        };
        let ranked = rank(std::mem::take(&mut r.bids), rtt);
        let Some(best) = ranked.first() else {
            self.abandon_replacement(now, "no provider bid");
            return;
        };
        let peer = best.peer;
        r.phase = ReplacePhase::Committing(peer);
        r.deadline = now + self.deadlines.commit;
        self.workers.insert(peer, Worker::Committing);
        self.requests.push_back(Request::Commit(peer));
    }

    /// The replacement failed: the old worker stays.
    fn abandon_replacement(&mut self, now: Timestamp, why: &str) {
        if let Some(r) = self.replacement.take() {
            self.note(
                now,
                format!("worker {} kept, its replacement failed: {why}", r.old),
            );
        }
    }

    /// Records something that happened within the current state (as a transition to the
    /// same state, without moving its start).
    fn note(&mut self, now: Timestamp, why: String) {
        self.transitions.push((now, self.state, why));
    }

    fn choose(&mut self, now: Timestamp, rtt: &BTreeMap<PeerId, Duration>) {
        let ranked = rank(std::mem::take(&mut self.bids), rtt);
        if ranked.len() < self.workers_wanted {
            self.fail(
                now,
                format!(
                    "{} bids for {} workers; ask again later or lower the requirements",
                    ranked.len(),
                    self.workers_wanted
                ),
            );
            return;
        }
        for b in ranked.iter().take(self.workers_wanted) {
            self.workers.insert(b.peer, Worker::Committing);
            self.requests.push_back(Request::Commit(b.peer));
        }
        let deadline = now + self.deadlines.commit;
        self.enter(
            now,
            DeployState::Committing,
            "bids ranked, commits sent",
            Some(deadline),
        );
    }

    /// All or nothing: every accepted commit is reverted and the deployment fails.
    fn revert_all(&mut self, now: Timestamp, why: String) {
        let accepted: Vec<PeerId> = self
            .workers
            .iter()
            .filter(|(_, w)| **w == Worker::Accepted)
            .map(|(p, _)| *p)
            .collect();
        for p in accepted {
            self.workers.insert(p, Worker::Stopped);
            self.requests.push_back(Request::Revert(p));
        }
        self.fail(now, why);
    }

    fn shut_down_rest(&mut self, _now: Timestamp) {
        if let Some(r) = self.replacement.take()
            && let ReplacePhase::Committing(p) = r.phase
        {
            self.workers.insert(p, Worker::Stopped);
            self.requests.push_back(Request::Revert(p));
        }
        let live: Vec<PeerId> = self
            .workers
            .iter()
            .filter(|(_, w)| matches!(w, Worker::Accepted | Worker::Running))
            .map(|(p, _)| *p)
            .collect();
        for p in live {
            self.workers.insert(p, Worker::Stopping);
            self.requests.push_back(Request::Shutdown(p));
        }
    }

    /// Provisioning becomes running once every worker runs (or already finished), and
    /// the deployment completes once every worker ended.
    fn progress(&mut self, now: Timestamp) {
        if self.state == DeployState::Provisioning
            && self
                .workers
                .values()
                .all(|w| matches!(w, Worker::Running | Worker::Done))
            && self.workers.values().any(|w| *w == Worker::Running)
        {
            let deadline = now + self.deadlines.run;
            self.enter(
                now,
                DeployState::Running,
                "every worker runs",
                Some(deadline),
            );
        }
        self.maybe_finished(now);
    }

    fn maybe_finished(&mut self, now: Timestamp) {
        let ended = self
            .workers
            .values()
            .all(|w| matches!(w, Worker::Done | Worker::Stopped));
        if !ended || self.state.is_terminal() {
            return;
        }
        let why = if self.state == DeployState::ShuttingDown {
            "shut down"
        } else {
            "every worker finished"
        };
        self.finish(now, DeployState::Completed, why);
    }

    fn fail(&mut self, now: Timestamp, why: String) {
        self.enter(now, DeployState::Failed, &why, None);
        self.reason = Some(why);
    }

    fn finish(&mut self, now: Timestamp, state: DeployState, why: &str) {
        self.enter(now, state, why, None);
        self.reason = Some(why.to_string());
    }

    fn enter(
        &mut self,
        now: Timestamp,
        state: DeployState,
        why: &str,
        deadline: Option<Timestamp>,
    ) {
        self.state = state;
        self.since = now;
        self.deadline = deadline;
        self.transitions.push((now, state, why.to_string()));
    }
}

/// Bids collected per wanted worker before choosing without waiting for the deadline.
pub const BIDS_PER_WORKER: usize = 3;

/// The first wait between queries of a worker that has not confirmed since a restart.
const QUERY_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between such queries.
pub const QUERY_RETRY_MAX: Duration = Duration::from_secs(30);

/// A provider's report on its worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerStatus {
    /// The worker runs.
    Running,
    /// The worker ended: well, or with why not.
    Ended(Result<(), String>),
}

#[cfg(test)]
mod tests;
