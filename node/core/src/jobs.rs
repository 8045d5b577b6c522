//! Jobs on the network: a node's two roles around [`provider`](crate::provider) and
//! [`deployment`](crate::deployment), and the messages between them.
//!
//! As a **service provider** (SP) a node deploys jobs: [`Jobs::deploy`] asks its connected
//! peers (or the pinned ones) for bids, collects signed bids, ranks them by price and the
//! latency table, commits on the chosen providers in two phases, tells them to start, and
//! follows status and log lines until the deployment ends.
//!
//! As a **compute provider** (CP) it answers bid requests that fit its preferences and
//! available capacity with a signed [`SignedBid`], accepts commits from requesters its policy
//! allows (locking capacity and ports until the SP starts or reverts), hands started jobs to
//! its executor through [`ExecCommand`]s, and reports the executor's [`ExecEvent`]s back.
//!
//! ```text
//!   SP                                  CP
//!   BidRequest{d, spec} ───────────────▶  fits? policy?
//!                     ◀─────────────── Bid{d, price, signature}
//!   Commit{d, spec}   ───────────────▶  validate, lock capacity and ports (pending)
//!                     ◀─────────────── CommitAnswer{d, Ok | Err(why)}
//!   Start{d} (all accepted)  ─────────▶  executor start       | Revert{d} (any refused)
//!                     ◀─────────────── JobStatus{d, running}, JobLog{d, line}...
//!                     ◀─────────────── JobStatus{d, ended(result)}
//!   Shutdown{d}       ───────────────▶  executor stop
//! ```
//!
//! One request, one job: a second commit for a deployment that already has an allocation
//! on the provider is refused with a reply saying so. The machine is sans-IO and
//! deterministic like the node that owns it; see [`Node`](crate::Node) for how it is driven.

mod sp;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::{AllocationId, Capacity, Ledger, LedgerError};
use crate::deployment::{Deadlines, DeployState};
use crate::identity::{Keypair, PeerId, Signature};
use crate::job::JobSpec;
use crate::offer::{Preferences, fits};
use crate::ports::{PortAllocator, PortRange};
use crate::provider::{AllocState, Allocations};
use crate::simexec::{ExecEvent, Outcome, Stream};
use crate::time::Timestamp;

pub use sp::{DeploymentView, LogLine, RttPolicy};

/// Log lines a service provider keeps per deployment (older ones are dropped).
pub const LOG_LINES_KEPT: usize = 1000;
/// Terminal allocations and deployments kept for their history, each.
pub const HISTORY_KEPT: usize = 256;
/// The longest log line sent; longer ones are cut (at a character boundary).
pub const LOG_LINE_BYTES_MAX: usize = 4096;

/// Who may deploy on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequesterPolicy {
    /// Any peer.
    #[default]
    Any,
    /// Only these peers; the others are refused and counted.
    Only(BTreeSet<PeerId>),
}

impl RequesterPolicy {
    /// Whether `peer` may deploy.
    pub fn allows(&self, peer: &PeerId) -> bool {
        match self {
            RequesterPolicy::Any => true,
            RequesterPolicy::Only(peers) => peers.contains(peer),
        }
    }
}

/// Settings of a node's jobs, both roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobsConfig {
    /// What this node accepts as a provider (no executors: it does not bid).
    pub preferences: Preferences,
    /// Who may deploy here.
    pub requesters: RequesterPolicy,
    /// Host ports handed to jobs.
    pub ports: PortRange,
    /// A pending allocation is released if not started within this long.
    pub commit_timeout: Duration,
    /// Allocations accepted but not yet running, at most (the start queue); commits beyond
    /// it are refused.
    pub queue_max: usize,
    /// Deadlines of this node's own deployments (`run` is replaced by each job's duration
    /// limit plus `run_margin`).
    pub deadlines: Deadlines,
    /// Added to a job's duration limit for its deployment's run deadline.
    pub run_margin: Duration,
    /// How this node, as a requester, watches the RTTs between the workers of a job with
    /// `constraints.rtt_max_ms`, and when it replaces one.
    pub rtt: RttPolicy,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            preferences: Preferences::new(0, []),
            requesters: RequesterPolicy::Any,
            ports: PortRange::new(31000, 31999).unwrap_or_else(|_| unreachable!()),
            commit_timeout: Duration::from_secs(30),
            queue_max: 16,
            deadlines: Deadlines::default(),
            run_margin: Duration::from_secs(60),
            rtt: RttPolicy::default(),
        }
    }
}

/// A compute provider's bid, signed by the provider over the requester, the deployment and
/// the price, so that it cannot be forged or replayed for another deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBid {
    /// The requester's deployment number.
    pub deployment: u64,
    /// The price of one core for one hour, in micros.
    pub price_micros_per_core_hour: u64,
    /// The provider's signature (see [`SignedBid::signed_bytes`]).
    pub signature: Signature,
}

impl SignedBid {
    /// The bytes signed: a domain tag, the requester, the deployment and the price.
    pub fn signed_bytes(requester: &PeerId, deployment: u64, price: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"flotilla/bid/1");
        out.extend_from_slice(requester.public_key());
        out.extend_from_slice(&deployment.to_be_bytes());
        out.extend_from_slice(&price.to_be_bytes());
        out
    }

    /// A bid by `keypair` for `requester`'s deployment.
    pub fn sign(keypair: &Keypair, requester: &PeerId, deployment: u64, price: u64) -> Self {
        SignedBid {
            deployment,
            price_micros_per_core_hour: price,
            signature: keypair.sign(&Self::signed_bytes(requester, deployment, price)),
        }
    }

    /// Whether `provider` signed this bid for `requester`.
    pub fn verify(&self, provider: &PeerId, requester: &PeerId) -> bool {
        provider
            .verify(
                &Self::signed_bytes(requester, self.deployment, self.price_micros_per_core_hour),
                &self.signature,
            )
            .is_ok()
    }
}

/// A worker's status as its provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// The job runs.
    Running,
    /// The job ended: `Ok` when it completed (or was stopped on request), `Err` with why not.
    Ended(Result<(), String>),
}

/// A message of the jobs protocol (carried in [`Message::Job`](crate::Message::Job)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobMessage {
    /// SP to CP: would you run one worker of this job (the spec as TOML text)?
    BidRequest {
        /// The requester's deployment number.
        deployment: u64,
        /// The job spec, TOML.
        spec: String,
    },
    /// CP to SP: a bid.
    Bid(SignedBid),
    /// SP to CP: phase one, hold capacity and ports for one worker of this job.
    Commit {
        /// The deployment.
        deployment: u64,
        /// The job spec, TOML; validated again by the provider.
        spec: String,
    },
    /// CP to SP: the commit's answer; an error says why in words.
    CommitAnswer {
        /// The deployment.
        deployment: u64,
        /// Accepted, or why not.
        result: Result<(), String>,
    },
    /// SP to CP: phase two, every provider accepted; start the worker.
    Start {
        /// The deployment.
        deployment: u64,
    },
    /// SP to CP: undo an accepted commit (another provider refused).
    Revert {
        /// The deployment.
        deployment: u64,
    },
    /// SP to CP: stop the worker.
    Shutdown {
        /// The deployment.
        deployment: u64,
    },
    /// CP to SP: the worker's status.
    Status {
        /// The deployment.
        deployment: u64,
        /// Running or ended.
        status: JobStatus,
    },
    /// CP to SP: one line the worker wrote.
    Log {
        /// The deployment.
        deployment: u64,
        /// True for standard error.
        stderr: bool,
        /// The line, without its newline.
        line: String,
    },
    /// SP to CP: where does my worker stand? (after the requester's restart). Answered
    /// with a [`JobMessage::Status`] (nothing while the worker waits for its start).
    Query {
        /// The deployment.
        deployment: u64,
    },
}

impl JobMessage {
    /// A short name for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            JobMessage::BidRequest { .. } => "bid?",
            JobMessage::Bid(_) => "bid",
            JobMessage::Commit { .. } => "commit",
            JobMessage::CommitAnswer { .. } => "commit-answer",
            JobMessage::Start { .. } => "start",
            JobMessage::Revert { .. } => "revert",
            JobMessage::Shutdown { .. } => "shutdown",
            JobMessage::Status { .. } => "status",
            JobMessage::Log { .. } => "log",
            JobMessage::Query { .. } => "query",
        }
    }
}

/// What the shell's executor is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecCommand {
    /// Start a worker; the executor answers with [`ExecEvent`]s for `id`.
    Start {
        /// The allocation.
        id: AllocationId,
        /// The requester.
        requester: PeerId,
        /// The requester's deployment number.
        deployment: u64,
        /// The job.
        spec: Box<JobSpec>,
        /// The host ports allocated to it.
        ports: Vec<u16>,
        /// Its duration limit.
        limit: Duration,
    },
    /// Stop a worker (the executor answers with an exit, outcome stopped).
    Stop {
        /// The allocation.
        id: AllocationId,
    },
}

/// Something that happened to a job, for stores, logs, metrics and the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEvent {
    /// One of this node's deployments changed state.
    Deployment {
        /// Its number.
        id: u64,
        /// The new state.
        state: DeployState,
        /// Why.
        reason: String,
    },
    /// A log line of one of this node's deployments arrived.
    Log {
        /// The deployment.
        id: u64,
        /// The provider that ran it.
        peer: PeerId,
        /// Where the line went.
        stream: Stream,
        /// The line.
        line: String,
    },
    /// An allocation on this node changed state.
    Allocation {
        /// The allocation.
        id: AllocationId,
        /// Who asked for it.
        requester: PeerId,
        /// Their deployment number.
        deployment: u64,
        /// The new state.
        state: AllocState,
        /// Why (for terminal states).
        reason: String,
    },
    /// A commit was refused.
    Refused {
        /// Who asked.
        requester: PeerId,
        /// Their deployment number.
        deployment: u64,
        /// Why, as told to them.
        reason: String,
        /// True when the requester is not allowed by the policy.
        policy: bool,
    },
}

impl JobEvent {
    /// A short name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            JobEvent::Deployment { .. } => "deployment",
            JobEvent::Log { .. } => "job-log",
            JobEvent::Allocation { .. } => "allocation",
            JobEvent::Refused { .. } => "job-refused",
        }
    }
}

/// Counters of the jobs protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStats {
    /// Bids sent.
    pub bids_sent: u64,
    /// Bid requests not answered because the job did not fit.
    pub bids_declined: u64,
    /// Bid requests and commits from requesters the policy does not allow.
    pub refused_requesters: u64,
    /// Commits refused for any reason.
    pub commits_refused: u64,
    /// Commits accepted.
    pub commits_accepted: u64,
    /// Bids dropped because their signature did not verify.
    pub bids_forged: u64,
}

/// Why an operator's jobs command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobsError {
    /// No deployment with this number.
    #[error("no deployment {0}; `flotilla deployments list` shows them")]
    UnknownDeployment(u64),
    /// Nobody to ask for bids.
    #[error(
        "no connected peer to ask for bids; wait until `flotilla peers` lists some, or pin providers"
    )]
    NoPeers,
    /// A pinned provider is not connected.
    #[error("pinned provider {0} is not connected; check `flotilla peers`")]
    PinnedNotConnected(PeerId),
    /// Capacity could not be onboarded or offboarded.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A live or recent allocation's link to its deployment.
#[derive(Clone, Debug)]
struct CpJob {
    requester: PeerId,
    deployment: u64,
    spec: JobSpec,
    /// A stop was asked of the executor.
    stopping: bool,
}

/// A node's jobs, both roles; see the module documentation.
#[derive(Debug)]
pub struct Jobs {
    keypair: Keypair,
    me: PeerId,
    config: JobsConfig,
    allocs: Allocations,
    cp_jobs: BTreeMap<AllocationId, CpJob>,
    by_deployment: BTreeMap<(PeerId, u64), AllocationId>,
    next_alloc: u64,
    sp: sp::ServiceProvider,
    stats: JobStats,
    transmits: VecDeque<(PeerId, JobMessage)>,
    exec: VecDeque<ExecCommand>,
    events: VecDeque<JobEvent>,
}

impl Jobs {
    /// Jobs of the node with `keypair` (which signs its bids) and `registered` capacity
    /// (nothing onboarded yet).
    pub fn new(keypair: Keypair, config: JobsConfig, registered: Capacity) -> Self {
        let allocs = Allocations::new(
            Ledger::new(registered, None),
            PortAllocator::new(config.ports),
            config.commit_timeout,
        );
        Jobs {
            me: keypair.peer_id(),
            keypair,
            sp: sp::ServiceProvider::new(config.rtt),
            config,
            allocs,
            cp_jobs: BTreeMap::new(),
            by_deployment: BTreeMap::new(),
            next_alloc: 1,
            stats: JobStats::default(),
            transmits: VecDeque::new(),
            exec: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    /// The provider's allocations and its ledger.
    pub fn allocations(&self) -> &Allocations {
        &self.allocs
    }

    /// Counters.
    pub fn stats(&self) -> JobStats {
        self.stats
    }

    /// Onboards `more` capacity (up to what is registered).
    pub fn onboard(&mut self, more: Capacity) -> Result<(), JobsError> {
        Ok(self.allocs.ledger_mut().onboard(more)?)
    }

    /// Offboards `less` capacity; refused if it is in use.
    pub fn offboard(&mut self, less: Capacity) -> Result<(), JobsError> {
        Ok(self.allocs.ledger_mut().offboard(less)?)
    }

    /// Continues allocation numbering after `id` (a restarted node's highest stored id).
    pub fn allocations_after(&mut self, id: u64) {
        self.next_alloc = self.next_alloc.max(id.saturating_add(1));
    }

    /// Continues deployment numbering after `id`.
    pub fn deployments_after(&mut self, id: u64) {
        self.sp.numbered_after(id);
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(PeerId, JobMessage)> {
        self.transmits.pop_front()
    }

    /// The next executor command.
    pub fn poll_exec(&mut self) -> Option<ExecCommand> {
        self.exec.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<JobEvent> {
        self.events.pop_front()
    }

    /// The earliest deadline of either role.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [self.allocs.next_deadline(), self.sp.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Checks the provider's capacity equation and the agreement of allocations, ledger,
    /// ports and this node's job records.
    pub fn check_invariant(&self) -> Result<(), String> {
        self.allocs.check_invariant()?;
        for (id, a) in self.allocs.iter() {
            if !a.state.is_terminal() && !self.cp_jobs.contains_key(&id) {
                return Err(format!("{id} is live but has no job record"));
            }
        }
        Ok(())
    }

    /// Deploys `spec`: asks `pinned` (all connected, or if empty every peer in
    /// `connected`) for bids. Returns the deployment's number.
    pub fn deploy(
        &mut self,
        now: Timestamp,
        spec: JobSpec,
        pinned: &[PeerId],
        connected: &[PeerId],
    ) -> Result<u64, JobsError> {
        if let Some(p) = pinned.iter().find(|p| !connected.contains(p)) {
            return Err(JobsError::PinnedNotConnected(*p));
        }
        let asked: Vec<PeerId> = if pinned.is_empty() {
            connected.to_vec()
        } else {
            pinned.to_vec()
        };
        if asked.is_empty() {
            return Err(JobsError::NoPeers);
        }
        Ok(self.deploy_to(now, spec, Some(asked)))
    }

    /// Deploys `spec` with its bid request broadcast ([`Jobs::poll_broadcast`]) instead of
    /// sent to chosen peers: the deployment collects bids until it holds enough or until
    /// the bid deadline. Returns the deployment's number.
    pub fn deploy_broadcast(&mut self, now: Timestamp, spec: JobSpec) -> u64 {
        self.deploy_to(now, spec, None)
    }

    fn deploy_to(&mut self, now: Timestamp, spec: JobSpec, asked: Option<Vec<PeerId>>) -> u64 {
        let mut deadlines = self.config.deadlines;
        deadlines.run = Duration::from_secs(spec.duration_s) + self.config.run_margin;
        let out = self.sp.deploy(now, spec, deadlines, asked);
        self.flush_sp();
        out
    }

    /// The next bid request to broadcast to every provider (gossip), from
    /// [`Jobs::deploy_broadcast`]. A provider hands a broadcast request it receives to
    /// [`Jobs::handle_broadcast`].
    pub fn poll_broadcast(&mut self) -> Option<JobMessage> {
        self.sp.poll_broadcast()
    }

    /// A broadcast message published by `from` arrived. Only bid requests are taken this
    /// way (returns false for anything else, which is dropped); the bid goes back to `from`
    /// directly.
    pub fn handle_broadcast(&mut self, from: PeerId, msg: JobMessage) -> bool {
        match msg {
            JobMessage::BidRequest { deployment, spec } if from != self.me => {
                self.on_bid_request(from, deployment, &spec);
                true
            }
            _ => false,
        }
    }

    /// Takes one of this node's deployments back after a restart: it was in `state` since
    /// `since`, created at `created`, with the chosen `workers`. See
    /// [`Deployment::restore`](crate::deployment::Deployment::restore) for what follows
    /// from each state; the outcome arrives as [`JobEvent::Deployment`]s.
    #[allow(clippy::too_many_arguments)]
    pub fn restore_deployment(
        &mut self,
        now: Timestamp,
        id: u64,
        spec: JobSpec,
        state: DeployState,
        since: Timestamp,
        created: Timestamp,
        workers: &[PeerId],
    ) {
        let mut deadlines = self.config.deadlines;
        deadlines.run = Duration::from_secs(spec.duration_s) + self.config.run_margin;
        self.sp
            .restore(now, id, spec, deadlines, state, since, created, workers);
        self.flush_sp();
    }

    /// The next RTT query for a worker of a deployment whose job bounds RTTs:
    /// (deployment, worker, the other running workers). The answer goes to
    /// [`Jobs::handle_rtt_report`].
    pub fn poll_rtt_query(&mut self) -> Option<(u64, PeerId, Vec<PeerId>)> {
        self.sp.poll_rtt_query()
    }

    /// Worker `from` of deployment `id` measured these RTTs to the other workers; a worker
    /// whose RTTs keep breaking the job's bound is replaced.
    pub fn handle_rtt_report(
        &mut self,
        now: Timestamp,
        id: u64,
        from: PeerId,
        rtts: BTreeMap<PeerId, Duration>,
    ) {
        self.sp.on_rtt_report(now, id, from, rtts);
        self.flush_sp();
    }

    /// Stops one of this node's deployments.
    pub fn shutdown(&mut self, now: Timestamp, id: u64) -> Result<(), JobsError> {
        self.sp.shutdown(now, id)?;
        self.flush_sp();
        Ok(())
    }

    /// Restores a running allocation after a restart (its container was found running):
    /// its capacity and ports are held again and its status and logs go to `requester`.
    pub fn restore_running(
        &mut self,
        now: Timestamp,
        id: AllocationId,
        requester: PeerId,
        deployment: u64,
        spec: JobSpec,
        ports: &[u16],
    ) -> Result<(), crate::provider::AllocError> {
        self.allocs
            .restore_running(now, id, requester, spec.resources.capacity(), ports)?;
        self.allocations_after(id.0);
        self.by_deployment.insert((requester, deployment), id);
        self.cp_jobs.insert(
            id,
            CpJob {
                requester,
                deployment,
                spec,
                stopping: false,
            },
        );
        Ok(())
    }

    /// The spec of an allocation on this node.
    pub fn allocation_spec(&self, id: AllocationId) -> Option<&JobSpec> {
        self.cp_jobs.get(&id).map(|j| &j.spec)
    }

    /// The spec of one of this node's deployments.
    pub fn deployment_spec(&self, id: u64) -> Option<&JobSpec> {
        self.sp.spec(id)
    }

    /// The peers of live jobs: requesters of live allocations, providers of live
    /// deployments.
    pub fn live_peers(&self) -> BTreeSet<PeerId> {
        let mut out: BTreeSet<PeerId> = self
            .allocs
            .iter()
            .filter(|(_, a)| !a.state.is_terminal())
            .map(|(_, a)| a.requester)
            .collect();
        self.sp.live_workers(&mut out);
        out
    }

    /// This node's deployments, oldest first.
    pub fn deployments(&self) -> Vec<DeploymentView> {
        self.sp.views()
    }

    /// One of this node's deployments.
    pub fn deployment(&self, id: u64) -> Option<DeploymentView> {
        self.sp.view(id)
    }

    /// The log lines kept of a deployment, from the `from`-th on.
    pub fn logs(&self, id: u64, from: usize) -> Option<Vec<LogLine>> {
        self.sp.logs(id, from)
    }

    /// A message of the jobs protocol arrived from `from`. `rtt` is the latency table
    /// (used to rank bids).
    pub fn handle_message(
        &mut self,
        now: Timestamp,
        from: PeerId,
        msg: JobMessage,
        rtt: &BTreeMap<PeerId, Duration>,
    ) {
        match msg {
            JobMessage::BidRequest { deployment, spec } => {
                self.on_bid_request(from, deployment, &spec)
            }
            JobMessage::Commit { deployment, spec } => self.on_commit(now, from, deployment, &spec),
            JobMessage::Start { deployment } => self.on_start(now, from, deployment),
            JobMessage::Revert { deployment } => {
                self.on_stop(now, from, deployment, "reverted by the requester")
            }
            JobMessage::Shutdown { deployment } => {
                self.on_stop(now, from, deployment, "shut down by the requester")
            }
            JobMessage::Query { deployment } => self.on_query(from, deployment),
            JobMessage::Bid(bid) => {
                if bid.verify(&from, &self.me) {
                    self.sp.on_bid(now, from, &bid, rtt);
                } else {
                    self.stats.bids_forged += 1;
                }
            }
            JobMessage::CommitAnswer { deployment, result } => {
                self.sp.on_commit_answer(now, from, deployment, result)
            }
            JobMessage::Status { deployment, status } => {
                self.sp.on_status(now, from, deployment, status)
            }
            JobMessage::Log {
                deployment,
                stderr,
                line,
            } => {
                let stream = if stderr {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                if let Some(l) = self.sp.on_log(now, from, deployment, stream, line) {
                    self.events.push_back(JobEvent::Log {
                        id: deployment,
                        peer: from,
                        stream,
                        line: l,
                    });
                }
            }
        }
        self.flush_sp();
    }

    /// The executor reports on a worker.
    pub fn handle_exec(&mut self, now: Timestamp, event: ExecEvent) {
        match event {
            ExecEvent::Started { id } => {
                if let Some(j) = self.cp_jobs.get(&id) {
                    self.transmits.push_back((
                        j.requester,
                        JobMessage::Status {
                            deployment: j.deployment,
                            status: JobStatus::Running,
                        },
                    ));
                }
            }
            ExecEvent::Log { id, stream, line } => {
                if let Some(j) = self.cp_jobs.get(&id) {
                    self.transmits.push_back((
                        j.requester,
                        JobMessage::Log {
                            deployment: j.deployment,
                            stderr: stream == Stream::Stderr,
                            line: cut(line, LOG_LINE_BYTES_MAX),
                        },
                    ));
                }
            }
            ExecEvent::Exited { id, outcome } => self.on_exited(now, id, Ok(outcome)),
            ExecEvent::Failed { id, reason } => self.on_exited(now, id, Err(reason)),
        }
    }

    /// Deadlines due at or before `now` fire.
    pub fn handle_timeout(&mut self, now: Timestamp, rtt: &BTreeMap<PeerId, Duration>) {
        for id in self.allocs.expire(now) {
            self.ended(
                id,
                "the requester did not start it in time (commit expired)",
            );
        }
        self.sp.handle_timeout(now, rtt);
        self.flush_sp();
    }

    fn on_bid_request(&mut self, from: PeerId, deployment: u64, spec: &str) {
        if self.config.preferences.executors.is_empty() {
            return;
        }
        if !self.config.requesters.allows(&from) {
            self.stats.refused_requesters += 1;
            return;
        }
        let Ok(spec) = JobSpec::from_toml_str(spec, Path::new("request")) else {
            self.stats.bids_declined += 1;
            return;
        };
        if fits(&spec, self.allocs.ledger(), &self.config.preferences).is_err()
            || self.allocs.ports().free() < spec.host_ports()
        {
            self.stats.bids_declined += 1;
            return;
        }
        let price = self.config.preferences.price_micros_per_core_hour;
        let bid = SignedBid::sign(&self.keypair, &from, deployment, price);
        self.transmits.push_back((from, JobMessage::Bid(bid)));
        self.stats.bids_sent += 1;
    }

    fn refuse(&mut self, from: PeerId, deployment: u64, reason: String, policy: bool) {
        self.stats.commits_refused += 1;
        if policy {
            self.stats.refused_requesters += 1;
        }
        self.events.push_back(JobEvent::Refused {
            requester: from,
            deployment,
            reason: reason.clone(),
            policy,
        });
        self.transmits.push_back((
            from,
            JobMessage::CommitAnswer {
                deployment,
                result: Err(reason),
            },
        ));
    }

    fn on_commit(&mut self, now: Timestamp, from: PeerId, deployment: u64, text: &str) {
        if !self.config.requesters.allows(&from) {
            let why = format!(
                "requester {from} is not allowed to deploy on this provider (jobs.requesters)"
            );
            return self.refuse(from, deployment, why, true);
        }
        if let Some(id) = self.by_deployment.get(&(from, deployment)) {
            let why = format!(
                "deployment {deployment} already has {id} on this provider; one job per request"
            );
            return self.refuse(from, deployment, why, false);
        }
        let spec = match JobSpec::from_toml_str(text, Path::new("request")) {
            Ok(s) => s,
            Err(e) => return self.refuse(from, deployment, format!("invalid job: {e}"), false),
        };
        if self.config.preferences.executors.is_empty() {
            let why = "this node runs no executor; it takes no jobs".to_string();
            return self.refuse(from, deployment, why, false);
        }
        if let Err(why) = fits(&spec, self.allocs.ledger(), &self.config.preferences) {
            return self.refuse(from, deployment, why.to_string(), false);
        }
        let waiting = self
            .allocs
            .iter()
            .filter(|(_, a)| a.state == AllocState::Pending)
            .count();
        if waiting >= self.config.queue_max {
            let why = format!("queue full: {waiting} jobs waiting to start; try another provider");
            return self.refuse(from, deployment, why, false);
        }
        let id = AllocationId(self.next_alloc);
        if let Err(e) =
            self.allocs
                .accept(now, id, from, spec.resources.capacity(), spec.host_ports())
        {
            return self.refuse(from, deployment, e.to_string(), false);
        }
        self.next_alloc += 1;
        self.stats.commits_accepted += 1;
        self.by_deployment.insert((from, deployment), id);
        self.cp_jobs.insert(
            id,
            CpJob {
                requester: from,
                deployment,
                spec,
                stopping: false,
            },
        );
        self.alloc_event(id, "commit accepted");
        self.transmits.push_back((
            from,
            JobMessage::CommitAnswer {
                deployment,
                result: Ok(()),
            },
        ));
    }

    fn on_start(&mut self, now: Timestamp, from: PeerId, deployment: u64) {
        let Some(&id) = self.by_deployment.get(&(from, deployment)) else {
            return self.status_to(
                from,
                deployment,
                Err("no allocation for this deployment here".into()),
            );
        };
        let Some(a) = self.allocs.get(id) else { return };
        if a.state != AllocState::Pending {
            if let Some(status) = ended_status(a) {
                self.status_to(from, deployment, status);
            }
            return;
        }
        let ports = a.ports.clone();
        if self.allocs.start(now, id).is_err() {
            return;
        }
        self.alloc_event(id, "started");
        if let Some(j) = self.cp_jobs.get(&id) {
            self.exec.push_back(ExecCommand::Start {
                id,
                requester: from,
                deployment,
                limit: Duration::from_secs(j.spec.duration_s),
                spec: Box::new(j.spec.clone()),
                ports,
            });
        }
    }

    /// The requester asks where its worker stands (it restarted): running, ended, or
    /// unknown here; a worker still waiting for its start is not answered (the start or
    /// the commit's expiry will be).
    fn on_query(&mut self, from: PeerId, deployment: u64) {
        let alloc = self
            .by_deployment
            .get(&(from, deployment))
            .and_then(|id| self.allocs.get(*id));
        let status = match alloc {
            None => JobStatus::Ended(Err(format!(
                "provider {} holds no worker of deployment {deployment} for this requester \
                 (never accepted, or ended long ago)",
                self.me
            ))),
            Some(a) => match a.state {
                AllocState::Pending => return,
                AllocState::Running => JobStatus::Running,
                _ => match ended_status(a) {
                    Some(status) => JobStatus::Ended(status),
                    None => return,
                },
            },
        };
        self.transmits
            .push_back((from, JobMessage::Status { deployment, status }));
    }

    fn on_stop(&mut self, now: Timestamp, from: PeerId, deployment: u64, why: &str) {
        let Some(&id) = self.by_deployment.get(&(from, deployment)) else {
            return;
        };
        let Some(state) = self.allocs.get(id).map(|a| a.state) else {
            return;
        };
        match state {
            AllocState::Pending if self.allocs.stop(now, id, why).is_ok() => self.ended(id, why),
            AllocState::Running => {
                if let Some(j) = self.cp_jobs.get_mut(&id)
                    && !j.stopping
                {
                    j.stopping = true;
                    self.exec.push_back(ExecCommand::Stop { id });
                }
            }
            _ => {}
        }
    }

    /// A worker ended: with an `outcome`, or it could not run (`Err(why)`).
    fn on_exited(&mut self, now: Timestamp, id: AllocationId, outcome: Result<Outcome, String>) {
        if self.allocs.get(id).map(|a| a.state) != Some(AllocState::Running) {
            return;
        }
        let result = match outcome {
            Ok(Outcome::Completed) => self.allocs.finish(now, id, Ok(())),
            Ok(Outcome::Failed { code }) => {
                self.allocs
                    .finish(now, id, Err(format!("exited with code {code}")))
            }
            Ok(Outcome::TimedOut) => self.allocs.finish(
                now,
                id,
                Err("reached its duration limit and was stopped".into()),
            ),
            Ok(Outcome::Stopped) => self.allocs.stop(now, id, "stopped"),
            Err(why) => self.allocs.finish(now, id, Err(why)),
        };
        if result.is_ok() {
            self.ended(id, "");
        }
    }

    /// A CP allocation reached a terminal state: tell its requester, record the event,
    /// and forget old history.
    fn ended(&mut self, id: AllocationId, why: &str) {
        let Some(a) = self.allocs.get(id) else { return };
        let reason = a.reason.clone().unwrap_or_else(|| why.to_string());
        let status = match a.state {
            AllocState::Completed | AllocState::Stopped => Ok(()),
            _ => Err(reason.clone()),
        };
        if let Some(j) = self.cp_jobs.get(&id) {
            let (requester, deployment) = (j.requester, j.deployment);
            self.status_to(requester, deployment, status);
        }
        self.alloc_event(id, &reason);
        self.forget_old();
    }

    fn status_to(&mut self, to: PeerId, deployment: u64, result: Result<(), String>) {
        self.transmits.push_back((
            to,
            JobMessage::Status {
                deployment,
                status: JobStatus::Ended(result),
            },
        ));
    }

    fn alloc_event(&mut self, id: AllocationId, why: &str) {
        let (Some(a), Some(j)) = (self.allocs.get(id), self.cp_jobs.get(&id)) else {
            return;
        };
        self.events.push_back(JobEvent::Allocation {
            id,
            requester: j.requester,
            deployment: j.deployment,
            state: a.state,
            reason: why.to_string(),
        });
    }

    /// Keeps at most [`HISTORY_KEPT`] terminal allocations, dropping the oldest ids.
    fn forget_old(&mut self) {
        let ended: Vec<AllocationId> = self
            .allocs
            .iter()
            .filter(|(_, a)| a.state.is_terminal())
            .map(|(id, _)| id)
            .collect();
        for id in ended.iter().take(ended.len().saturating_sub(HISTORY_KEPT)) {
            if self.allocs.forget(*id).is_ok()
                && let Some(j) = self.cp_jobs.remove(id)
            {
                self.by_deployment.remove(&(j.requester, j.deployment));
            }
        }
    }

    /// Moves the service provider's outputs into this machine's queues.
    fn flush_sp(&mut self) {
        while let Some((to, msg)) = self.sp.poll_transmit() {
            self.transmits.push_back((to, msg));
        }
        while let Some(e) = self.sp.poll_event() {
            self.events.push_back(e);
        }
    }
}

/// What a requester is told of an ended allocation: `Ok` for completed or stopped, the
/// reason for failed; `None` while it is live.
fn ended_status(a: &crate::provider::Alloc) -> Option<Result<(), String>> {
    match a.state {
        AllocState::Completed | AllocState::Stopped => Some(Ok(())),
        AllocState::Failed => Some(Err(a
            .reason
            .clone()
            .unwrap_or_else(|| "failed".to_string()))),
        AllocState::Pending | AllocState::Running => None,
    }
}

/// `line` cut to at most `max` bytes at a character boundary.
fn cut(mut line: String, max: usize) -> String {
    if line.len() > max {
        let mut end = max;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}
