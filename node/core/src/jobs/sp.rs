//! The service provider's side: its deployments, their messages and their logs.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HISTORY_KEPT, JobEvent, JobMessage, JobStatus, JobsError, LOG_LINES_KEPT};
use crate::deployment::{Deadlines, DeployState, Deployment, Request, Worker, WorkerStatus};
use crate::identity::PeerId;
use crate::job::JobSpec;
use crate::offer::Bid;
use crate::simexec::Stream;
use crate::time::Timestamp;

/// One log line of a deployment, as the service provider keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its place among every line the deployment received (counting dropped ones).
    pub seq: usize,
    /// When it arrived.
    pub at: Timestamp,
    /// The provider whose worker wrote it.
    pub peer: PeerId,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line.
    pub line: String,
}

/// A deployment as shown to the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentView {
    /// Its number on this node.
    pub id: u64,
    /// The job's image.
    pub image: String,
    /// Workers wanted.
    pub workers_wanted: u32,
    /// Where it stands.
    pub state: DeployState,
    /// Since when.
    pub since: Timestamp,
    /// When it was asked for.
    pub created: Timestamp,
    /// Why it ended, if it did.
    pub reason: Option<String>,
    /// The chosen providers and where each stands.
    pub workers: Vec<(PeerId, String)>,
    /// Log lines received so far.
    pub log_lines: usize,
    /// Every state entered: time, state, why.
    pub transitions: Vec<(Timestamp, DeployState, String)>,
}

#[derive(Debug)]
struct Sp {
    deployment: Deployment,
    spec: JobSpec,
    spec_text: String,
    /// Providers asked directly; empty when the request is broadcast.
    asked: Vec<PeerId>,
    /// The bid request goes out as a broadcast rather than to `asked`.
    broadcast: bool,
    /// The latency table between the running workers, when the job bounds it.
    watch: RttWatch,
    created: Timestamp,
    logs: VecDeque<LogLine>,
    log_count: usize,
    /// Transitions already reported as events.
    reported: usize,
}

/// What a deployment whose job bounds the RTT between its workers
/// (`constraints.rtt_max_ms`) knows of that table: each running worker's last report of its
/// RTTs to the others, and since when some measured pair breaks the bound.
#[derive(Debug, Default)]
struct RttWatch {
    next_check: Option<Timestamp>,
    reports: BTreeMap<PeerId, BTreeMap<PeerId, Duration>>,
    breaking_since: Option<Timestamp>,
}

/// How a service provider watches the RTTs between the workers of its deployments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttPolicy {
    /// Each running worker is asked for its RTTs to the others this often.
    pub check_every: Duration,
    /// A worker is replaced once measured RTTs have broken the job's bound for this long.
    pub replace_after: Duration,
}

impl Default for RttPolicy {
    fn default() -> Self {
        RttPolicy {
            check_every: Duration::from_secs(10),
            replace_after: Duration::from_secs(30),
        }
    }
}

/// The deployments of one node.
#[derive(Debug, Default)]
pub(super) struct ServiceProvider {
    deployments: BTreeMap<u64, Sp>,
    next: u64,
    transmits: VecDeque<(PeerId, JobMessage)>,
    broadcasts: VecDeque<JobMessage>,
    events: VecDeque<JobEvent>,
    rtt_policy: RttPolicy,
    /// RTT queries to send: (deployment, worker, the other workers).
    rtt_queries: VecDeque<(u64, PeerId, Vec<PeerId>)>,
}

impl Sp {
    fn new(
        deployment: Deployment,
        spec: JobSpec,
        asked: Vec<PeerId>,
        broadcast: bool,
        created: Timestamp,
    ) -> Self {
        let spec_text = toml::to_string(&spec).unwrap_or_default();
        Sp {
            deployment,
            spec,
            spec_text,
            asked,
            broadcast,
            watch: RttWatch::default(),
            created,
            logs: VecDeque::new(),
            log_count: 0,
            reported: 0,
        }
    }

    /// The earliest of the deployment's deadline and its next RTT check.
    fn due(&self) -> Option<Timestamp> {
        match (self.deployment.poll_timeout(), self.watch.next_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn running_workers(&self) -> Vec<PeerId> {
        self.deployment
            .workers()
            .filter(|(_, w)| *w == Worker::Running)
            .map(|(p, _)| p)
            .collect()
    }
}

impl ServiceProvider {
    pub(super) fn new(rtt_policy: RttPolicy) -> Self {
        ServiceProvider {
            rtt_policy,
            ..ServiceProvider::default()
        }
    }

    pub(super) fn numbered_after(&mut self, id: u64) {
        self.next = self.next.max(id);
    }

    pub(super) fn deploy(
        &mut self,
        now: Timestamp,
        spec: JobSpec,
        deadlines: Deadlines,
        asked: Option<Vec<PeerId>>,
    ) -> u64 {
        self.next += 1;
        let id = self.next;
        let workers = usize::try_from(spec.workers).unwrap_or(usize::MAX);
        let mut deployment = Deployment::new(now, workers, deadlines);
        // Asked directly, the deployment knows how many bids may come; broadcast, it waits
        // for enough bids or the bid deadline.
        let broadcast = asked.is_none();
        let asked = asked.unwrap_or_default();
        if !broadcast {
            deployment.set_asked(asked.len());
        }
        self.deployments
            .insert(id, Sp::new(deployment, spec, asked, broadcast, now));
        self.pump(id);
        id
    }

    /// Takes deployment `id` back after a restart; see [`Deployment::restore`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn restore(
        &mut self,
        now: Timestamp,
        id: u64,
        spec: JobSpec,
        deadlines: Deadlines,
        state: DeployState,
        since: Timestamp,
        created: Timestamp,
        workers: &[PeerId],
    ) {
        self.next = self.next.max(id);
        let wanted = usize::try_from(spec.workers).unwrap_or(usize::MAX);
        let deployment = Deployment::restore(now, wanted, deadlines, state, since, workers);
        self.deployments.insert(
            id,
            Sp::new(deployment, spec, workers.to_vec(), false, created),
        );
        self.pump(id);
    }

    pub(super) fn shutdown(&mut self, now: Timestamp, id: u64) -> Result<(), JobsError> {
        let d = self
            .deployments
            .get_mut(&id)
            .ok_or(JobsError::UnknownDeployment(id))?;
        d.deployment.shutdown(now);
        self.pump(id);
        Ok(())
    }

    pub(super) fn poll_transmit(&mut self) -> Option<(PeerId, JobMessage)> {
        self.transmits.pop_front()
    }

    pub(super) fn poll_broadcast(&mut self) -> Option<JobMessage> {
        self.broadcasts.pop_front()
    }

    pub(super) fn poll_event(&mut self) -> Option<JobEvent> {
        self.events.pop_front()
    }

    pub(super) fn poll_timeout(&self) -> Option<Timestamp> {
        self.deployments.values().filter_map(Sp::due).min()
    }

    pub(super) fn handle_timeout(&mut self, now: Timestamp, rtt: &BTreeMap<PeerId, Duration>) {
        let due: Vec<u64> = self
            .deployments
            .iter()
            .filter(|(_, d)| d.due().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(d) = self.deployments.get_mut(&id) {
                if d.deployment.poll_timeout().is_some_and(|t| t <= now) {
                    d.deployment.handle_timeout(now, rtt);
                }
                if d.watch.next_check.is_some_and(|t| t <= now) {
                    let every = self.rtt_policy.check_every;
                    d.watch.next_check = Some(now + every);
                    let running = d.running_workers();
                    for w in &running {
                        let others: Vec<PeerId> =
                            running.iter().filter(|p| *p != w).copied().collect();
                        self.rtt_queries.push_back((id, *w, others));
                    }
                }
            }
            self.pump(id);
        }
    }

    pub(super) fn poll_rtt_query(&mut self) -> Option<(u64, PeerId, Vec<PeerId>)> {
        self.rtt_queries.pop_front()
    }

    /// Worker `from` of deployment `id` reports its RTTs to the other workers. Once some
    /// measured pair has broken the job's bound for [`RttPolicy::replace_after`], the worker
    /// in the most breaking pairs (then with the highest RTTs, then by peer id) is replaced.
    pub(super) fn on_rtt_report(
        &mut self,
        now: Timestamp,
        id: u64,
        from: PeerId,
        rtts: BTreeMap<PeerId, Duration>,
    ) {
        let after = self.rtt_policy.replace_after;
        let Some(d) = self.deployments.get_mut(&id) else {
            return;
        };
        let Some(max) = d.spec.constraints.rtt_max_ms else {
            return;
        };
        let running = d.running_workers();
        if !running.contains(&from) || d.deployment.replacing().is_some() {
            return;
        }
        d.watch.reports.insert(from, rtts);
        d.watch.reports.retain(|p, _| running.contains(p));
        let bound = Duration::from_millis(u64::from(max));
        // Each pair's RTT: the higher of the two ends' measurements, where measured.
        let mut breaks: BTreeMap<PeerId, (usize, Duration)> = BTreeMap::new();
        for (a, table) in &d.watch.reports {
            for (b, rtt) in table {
                if !running.contains(b) || a == b {
                    continue;
                }
                let back = d.watch.reports.get(b).and_then(|t| t.get(a)).copied();
                let pair = back.map_or(*rtt, |r| r.max(*rtt));
                // Count each pair once: from its lower end when both ends measured it.
                if pair <= bound || (back.is_some() && a > b) {
                    continue;
                }
                for p in [a, b] {
                    let e = breaks.entry(*p).or_default();
                    e.0 += 1;
                    e.1 += pair;
                }
            }
        }
        if breaks.is_empty() {
            d.watch.breaking_since = None;
            return;
        }
        let since = *d.watch.breaking_since.get_or_insert(now);
        if now.saturating_since(since) < after {
            return;
        }
        let slow = breaks
            .iter()
            .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
            .map(|(p, _)| *p);
        if let Some(slow) = slow
            && d.deployment.replace_worker(now, slow)
        {
            d.watch = RttWatch {
                next_check: d.watch.next_check,
                ..RttWatch::default()
            };
        }
        self.pump(id);
    }

    pub(super) fn on_bid(
        &mut self,
        now: Timestamp,
        from: PeerId,
        bid: &super::SignedBid,
        rtt: &BTreeMap<PeerId, Duration>,
    ) {
        let Some(d) = self.deployments.get_mut(&bid.deployment) else {
            return;
        };
        // Asked directly, only those asked may bid; broadcast, any provider may.
        if !d.broadcast && !d.asked.contains(&from) {
            return;
        }
        d.deployment.handle_bid(
            now,
            Bid {
                peer: from,
                price_micros_per_core_hour: bid.price_micros_per_core_hour,
            },
            rtt,
        );
        self.pump(bid.deployment);
    }

    pub(super) fn on_commit_answer(
        &mut self,
        now: Timestamp,
        from: PeerId,
        id: u64,
        result: Result<(), String>,
    ) {
        let Some(d) = self.deployments.get_mut(&id) else {
            return;
        };
        d.deployment.handle_commit_answer(now, from, result);
        self.pump(id);
    }

    pub(super) fn on_status(&mut self, now: Timestamp, from: PeerId, id: u64, status: JobStatus) {
        let Some(d) = self.deployments.get_mut(&id) else {
            return;
        };
        let status = match status {
            JobStatus::Running => WorkerStatus::Running,
            JobStatus::Ended(r) => WorkerStatus::Ended(r),
        };
        d.deployment.handle_status(now, from, status);
        self.pump(id);
    }

    pub(super) fn on_log(
        &mut self,
        now: Timestamp,
        from: PeerId,
        id: u64,
        stream: Stream,
        line: String,
    ) -> Option<String> {
        let d = self.deployments.get_mut(&id)?;
        d.deployment.workers().find(|(p, _)| *p == from)?;
        if d.logs.len() >= LOG_LINES_KEPT {
            d.logs.pop_front();
        }
        d.logs.push_back(LogLine {
            seq: d.log_count,
            at: now,
            peer: from,
            stream: match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            }
            .to_string(),
            line: line.clone(),
        });
        d.log_count += 1;
        Some(line)
    }

    pub(super) fn spec(&self, id: u64) -> Option<&JobSpec> {
        self.deployments.get(&id).map(|d| &d.spec)
    }

    pub(super) fn live_workers(&self, out: &mut std::collections::BTreeSet<PeerId>) {
        for d in self.deployments.values() {
            if !d.deployment.state().is_terminal() {
                out.extend(d.deployment.workers().map(|(p, _)| p));
            }
        }
    }

    pub(super) fn views(&self) -> Vec<DeploymentView> {
        self.deployments
            .keys()
            .filter_map(|id| self.view(*id))
            .collect()
    }

    pub(super) fn view(&self, id: u64) -> Option<DeploymentView> {
        let d = self.deployments.get(&id)?;
        Some(DeploymentView {
            id,
            image: d.spec.image.clone(),
            workers_wanted: d.spec.workers,
            state: d.deployment.state(),
            since: d.deployment.since(),
            created: d.created,
            reason: d.deployment.reason().map(str::to_string),
            workers: d
                .deployment
                .workers()
                .map(|(p, w)| (p, worker_name(w).to_string()))
                .collect(),
            log_lines: d.log_count,
            transitions: d.deployment.transitions().to_vec(),
        })
    }

    pub(super) fn logs(&self, id: u64, from: usize) -> Option<Vec<LogLine>> {
        let d = self.deployments.get(&id)?;
        Some(d.logs.iter().filter(|l| l.seq >= from).cloned().collect())
    }

    /// Sends what deployment `id` asks for and reports its new transitions.
    fn pump(&mut self, id: u64) {
        let Some(d) = self.deployments.get_mut(&id) else {
            return;
        };
        while let Some(req) = d.deployment.poll_request() {
            let (to, msg): (Vec<PeerId>, JobMessage) = match req {
                Request::BidRequest if d.broadcast => {
                    self.broadcasts.push_back(JobMessage::BidRequest {
                        deployment: id,
                        spec: d.spec_text.clone(),
                    });
                    continue;
                }
                Request::BidRequest => (
                    d.asked.clone(),
                    JobMessage::BidRequest {
                        deployment: id,
                        spec: d.spec_text.clone(),
                    },
                ),
                Request::Commit(p) => (
                    vec![p],
                    JobMessage::Commit {
                        deployment: id,
                        spec: d.spec_text.clone(),
                    },
                ),
                Request::Revert(p) => (vec![p], JobMessage::Revert { deployment: id }),
                Request::Shutdown(p) => (vec![p], JobMessage::Shutdown { deployment: id }),
                Request::Query(p) => (vec![p], JobMessage::Query { deployment: id }),
                Request::Start(p) => (vec![p], JobMessage::Start { deployment: id }),
            };
            for p in to {
                self.transmits.push_back((p, msg.clone()));
            }
        }
        let transitions = d.deployment.transitions();
        let new: Vec<_> = transitions[d.reported.min(transitions.len())..].to_vec();
        d.reported = transitions.len();
        for (_, state, why) in new {
            if state == DeployState::Provisioning {
                // Phase two: every provider accepted; start them all.
                for (p, w) in d.deployment.workers() {
                    if w == Worker::Accepted {
                        self.transmits
                            .push_back((p, JobMessage::Start { deployment: id }));
                    }
                }
            }
            self.events.push_back(JobEvent::Deployment {
                id,
                state,
                reason: why,
            });
        }
        // The RTT watch runs while the deployment runs, if its job bounds the RTT between
        // two or more workers.
        let watched = d.deployment.state() == DeployState::Running
            && d.spec.constraints.rtt_max_ms.is_some()
            && d.spec.workers > 1;
        if !watched {
            d.watch = RttWatch::default();
        } else if d.watch.next_check.is_none() {
            d.watch.next_check = Some(d.deployment.since() + self.rtt_policy.check_every);
        }
        if d.deployment.state().is_terminal() {
            self.forget_old();
        }
    }

    /// Keeps at most [`HISTORY_KEPT`] ended deployments, dropping the oldest.
    fn forget_old(&mut self) {
        let ended: Vec<u64> = self
            .deployments
            .iter()
            .filter(|(_, d)| d.deployment.state().is_terminal())
            .map(|(id, _)| *id)
            .collect();
        for id in ended.iter().take(ended.len().saturating_sub(HISTORY_KEPT)) {
            self.deployments.remove(id);
        }
    }
}

fn worker_name(w: Worker) -> &'static str {
    match w {
        Worker::Committing => "committing",
        Worker::Accepted => "accepted",
        Worker::Running => "running",
        Worker::Done => "done",
        Worker::Failed => "failed",
        Worker::Stopping => "stopping",
        Worker::Stopped => "stopped",
    }
}
