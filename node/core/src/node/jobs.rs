//! The node's part in jobs: it carries the [`Jobs`] machine's messages, hands it the
//! latency table, and keeps the connections of live jobs out of trims.
//!
//! A message to a peer that is not connected waits in that peer's outbox: the node dials
//! the peer if its table holds an address (again after 1 s, 2 s, 4 s ... up to
//! [`OUTBOX_RETRY_MAX`] while it stays away), and sends the waiting messages in order once
//! the peer's hello arrives. A message waits at most [`OUTBOX_TTL`]; an outbox holds at
//! most [`OUTBOX_MESSAGES_MAX`] messages (log lines give way first). Dropped messages are
//! counted ([`Node::jobs_undeliverable`]). So a provider's status reaches a requester that
//! was away for a while (a restart, a partition), and a bid reaches a requester whose
//! broadcast request came through others.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::{Event, Node};
use crate::deployment::DeployState;
use crate::identity::PeerId;
use crate::job::JobSpec;
use crate::jobs::{DeploymentView, ExecCommand, JobMessage, Jobs, JobsError, LogLine};
use crate::simexec::ExecEvent;
use crate::time::Timestamp;
use crate::wire::Message;

impl Node {
    /// The node's jobs: its allocations as a provider, its deployments as a requester.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// The jobs machine, to onboard capacity or restore numbering. Inputs that produce
    /// messages go through the node's own methods.
    pub fn jobs_mut(&mut self) -> &mut Jobs {
        &mut self.jobs
    }

    /// Deploys `spec`: asks `pinned` providers (every one connected), or if none are given
    /// every connected peer, for bids. Returns the deployment's number; its progress
    /// arrives as [`Event::Job`]s.
    pub fn deploy(
        &mut self,
        now: Timestamp,
        spec: JobSpec,
        pinned: &[PeerId],
    ) -> Result<u64, JobsError> {
        let connected: Vec<PeerId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.hello && c.closing_at.is_none())
            .map(|(p, _)| *p)
            .collect();
        let id = self.jobs.deploy(now, spec, pinned, &connected)?;
        self.after_jobs(now);
        Ok(id)
    }

    /// Deploys `spec` with its bid request broadcast: the request comes out of
    /// [`Node::poll_broadcast`] for the shell to publish to every provider (gossip), and
    /// providers answer with bids directly. Returns the deployment's number.
    pub fn deploy_broadcast(&mut self, now: Timestamp, spec: JobSpec) -> u64 {
        let id = self.jobs.deploy_broadcast(now, spec);
        self.after_jobs(now);
        id
    }

    /// The next jobs message to publish to every peer (a broadcast bid request).
    #[must_use]
    pub fn poll_broadcast(&mut self) -> Option<JobMessage> {
        self.jobs.poll_broadcast()
    }

    /// A jobs message published by `from` to every peer (gossip) arrived. Only bid
    /// requests are accepted this way; returns false if the message was dropped.
    pub fn handle_broadcast(&mut self, now: Timestamp, from: PeerId, msg: JobMessage) -> bool {
        let taken = self.jobs.handle_broadcast(from, msg);
        self.after_jobs(now);
        taken
    }

    /// Takes one of this node's deployments back after a restart; see
    /// [`Jobs::restore_deployment`]. Its workers are queried (through the outbox, so a
    /// provider not connected yet is dialled when its address is known).
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
        self.jobs
            .restore_deployment(now, id, spec, state, since, created, workers);
        self.after_jobs(now);
    }

    /// Shuts one of this node's deployments down.
    pub fn shutdown_deployment(&mut self, now: Timestamp, id: u64) -> Result<(), JobsError> {
        self.jobs.shutdown(now, id)?;
        self.after_jobs(now);
        Ok(())
    }

    /// This node's deployments.
    pub fn deployments(&self) -> Vec<DeploymentView> {
        self.jobs.deployments()
    }

    /// Log lines of a deployment from the `from`-th on.
    pub fn deployment_logs(&self, id: u64, from: usize) -> Option<Vec<LogLine>> {
        self.jobs.logs(id, from)
    }

    /// The executor reports on a job it runs for this node.
    pub fn handle_exec(&mut self, now: Timestamp, event: ExecEvent) {
        self.jobs.handle_exec(now, event);
        self.after_jobs(now);
        self.settle();
    }

    /// The next command for the executor.
    #[must_use]
    pub fn poll_exec(&mut self) -> Option<ExecCommand> {
        self.jobs.poll_exec()
    }

    pub(super) fn on_job_message(&mut self, now: Timestamp, from: PeerId, msg: JobMessage) {
        // Only bids are ranked by latency; the other messages (log lines the most) skip the
        // table.
        let rtt = match msg {
            JobMessage::Bid(_) => self.rtt_map(),
            _ => BTreeMap::new(),
        };
        self.jobs.handle_message(now, from, msg, &rtt);
        self.after_jobs(now);
    }

    pub(super) fn jobs_timeout(&mut self, now: Timestamp) {
        if self.jobs.poll_timeout().is_some_and(|t| t <= now) {
            let rtt = self.rtt_map();
            self.jobs.handle_timeout(now, &rtt);
            self.after_jobs(now);
        }
    }

    /// Smoothed RTTs of the connected peers.
    fn rtt_map(&self) -> BTreeMap<PeerId, Duration> {
        self.connections
            .keys()
            .filter_map(|p| {
                let r = self.table.get(p)?.rtt.as_deref()?;
                Some((*p, Duration::from_micros(r.ewma_us)))
            })
            .collect()
    }

    /// Moves the jobs machine's messages and events out, and protects the connections of
    /// live jobs (requesters of running allocations, providers of live deployments).
    fn after_jobs(&mut self, now: Timestamp) {
        while let Some((to, msg)) = self.jobs.poll_transmit() {
            if self.connections.contains_key(&to) && !self.job_outbox.contains_key(&to) {
                self.send(to, Message::Job(msg));
            } else {
                self.enqueue(now, to, msg);
            }
        }
        while let Some((deployment, to, peers)) = self.jobs.poll_rtt_query() {
            // A worker not connected now is asked at the next check.
            if let Ok(id) = self.query_rtts(to, peers) {
                self.job_rtt_queries.insert(id, deployment);
                while self.job_rtt_queries.len() > RTT_QUERIES_KEPT {
                    self.job_rtt_queries.pop_first();
                }
            }
        }
        while let Some(e) = self.jobs.poll_event() {
            self.events.push_back(Event::Job(e));
        }
        let wanted: BTreeSet<PeerId> = self.jobs.live_peers();
        let gone: Vec<PeerId> = self.job_protected.difference(&wanted).copied().collect();
        for p in gone {
            self.connmgr.unprotect(&p);
            self.job_protected.remove(&p);
        }
        for p in wanted {
            let held = self.job_protected.contains(&p) && self.connmgr.is_protected(&p);
            if !held && self.connmgr.protect(&p) {
                self.job_protected.insert(p);
            }
        }
    }

    /// A worker answered an RTT query asked for deployment `deployment`.
    pub(super) fn on_job_rtt_report(
        &mut self,
        now: Timestamp,
        from: PeerId,
        deployment: u64,
        rtts: Vec<crate::wire::RttSample>,
    ) {
        let rtts = rtts
            .iter()
            .take(crate::wire::RTT_QUERY_MAX)
            .map(|s| (s.peer, Duration::from_micros(s.ewma_us)))
            .collect();
        self.jobs.handle_rtt_report(now, deployment, from, rtts);
        self.after_jobs(now);
    }

    /// Messages of jobs dropped because their peer stayed unreachable (past
    /// [`OUTBOX_TTL`], or with a full outbox).
    pub fn jobs_undeliverable(&self) -> u64 {
        self.jobs_undeliverable
    }

    /// Messages of jobs waiting for their peers to connect.
    pub fn jobs_waiting(&self) -> usize {
        self.job_outbox.values().map(|o| o.messages.len()).sum()
    }

    fn enqueue(&mut self, now: Timestamp, to: PeerId, msg: JobMessage) {
        let fresh = !self.job_outbox.contains_key(&to);
        let outbox = self.job_outbox.entry(to).or_insert_with(|| Outbox {
            messages: VecDeque::new(),
            next_try: now,
            backoff: OUTBOX_RETRY_FIRST,
        });
        if outbox.messages.len() >= OUTBOX_MESSAGES_MAX {
            let victim = outbox
                .messages
                .iter()
                .position(|(_, m)| matches!(m, JobMessage::Log { .. }))
                .unwrap_or(0);
            outbox.messages.remove(victim);
            self.jobs_undeliverable += 1;
        }
        outbox.messages.push_back((now + OUTBOX_TTL, msg));
        if fresh {
            self.retry_outbox(now, to);
        }
    }

    /// Sends `peer`'s waiting messages if it is connected, else dials it (if its address
    /// is known and no dial is in flight) and backs off.
    fn retry_outbox(&mut self, now: Timestamp, peer: PeerId) {
        if self.connections.contains_key(&peer) {
            self.flush_outbox(now, peer);
            return;
        }
        let Some(outbox) = self.job_outbox.get_mut(&peer) else {
            return;
        };
        outbox.next_try = now + outbox.backoff;
        outbox.backoff = (outbox.backoff * 2).min(OUTBOX_RETRY_MAX);
        let dialing = self.dials.values().any(|d| d.peer == Some(peer));
        if dialing {
            return;
        }
        if let Some(addr) = self.table.get(&peer).and_then(|e| e.addr_first()).cloned() {
            self.dial(addr, Some(peer), false);
        }
    }

    /// `peer` is connected: its waiting messages go out in order.
    pub(super) fn flush_outbox(&mut self, now: Timestamp, peer: PeerId) {
        let Some(outbox) = self.job_outbox.remove(&peer) else {
            return;
        };
        for (expires, msg) in outbox.messages {
            if expires > now {
                self.send(peer, Message::Job(msg));
            } else {
                self.jobs_undeliverable += 1;
            }
        }
    }

    /// When an outbox next needs attention (a retry or an expiry).
    pub(super) fn outbox_due(&self) -> Timestamp {
        self.job_outbox
            .values()
            .map(|o| {
                let expiry = o.messages.front().map_or(Timestamp::MAX, |m| m.0);
                o.next_try.min(expiry)
            })
            .min()
            .unwrap_or(Timestamp::MAX)
    }

    /// Drops expired messages and retries the outboxes that are due.
    pub(super) fn outbox_timeout(&mut self, now: Timestamp) {
        let mut due = Vec::new();
        let mut empty = Vec::new();
        for (peer, o) in &mut self.job_outbox {
            let before = o.messages.len();
            o.messages.retain(|(expires, _)| *expires > now);
            self.jobs_undeliverable += (before - o.messages.len()) as u64;
            if o.messages.is_empty() {
                empty.push(*peer);
            } else if o.next_try <= now {
                due.push(*peer);
            }
        }
        for p in empty {
            self.job_outbox.remove(&p);
        }
        for p in due {
            self.retry_outbox(now, p);
        }
    }
}

/// Unanswered RTT queries of jobs remembered at most (the oldest are forgotten).
const RTT_QUERIES_KEPT: usize = 1024;

/// How long a job message waits for its peer at most.
pub const OUTBOX_TTL: Duration = Duration::from_secs(600);
/// Messages waiting for one peer at most.
pub const OUTBOX_MESSAGES_MAX: usize = 1024;
/// The first retry of an unreachable peer.
const OUTBOX_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between retries of an unreachable peer.
pub const OUTBOX_RETRY_MAX: Duration = Duration::from_secs(60);

/// Job messages waiting for one peer.
#[derive(Debug)]
pub(super) struct Outbox {
    /// Each message with its expiry.
    messages: VecDeque<(Timestamp, JobMessage)>,
    next_try: Timestamp,
    backoff: Duration,
}
