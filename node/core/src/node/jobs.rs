//! The node's part in jobs: it carries the [`Jobs`] machine's messages, hands it the
//! latency table, and keeps the connections of live jobs out of trims.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Event, Node};
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
        self.after_jobs();
        Ok(id)
    }

    /// Deploys `spec` with its bid request broadcast: the request comes out of
    /// [`Node::poll_broadcast`] for the shell to publish to every provider (gossip), and
    /// providers answer with bids directly. Returns the deployment's number.
    pub fn deploy_broadcast(&mut self, now: Timestamp, spec: JobSpec) -> u64 {
        let id = self.jobs.deploy_broadcast(now, spec);
        self.after_jobs();
        id
    }

    /// The next jobs message to publish to every peer (a broadcast bid request).
    #[must_use]
    pub fn poll_broadcast(&mut self) -> Option<JobMessage> {
        self.jobs.poll_broadcast()
    }

    /// A jobs message published by `from` to every peer (gossip) arrived. Only bid
    /// requests are accepted this way; returns false if the message was dropped.
    pub fn handle_broadcast(&mut self, _now: Timestamp, from: PeerId, msg: JobMessage) -> bool {
        let taken = self.jobs.handle_broadcast(from, msg);
        self.after_jobs();
        taken
    }

    /// Shuts one of this node's deployments down.
    pub fn shutdown_deployment(&mut self, now: Timestamp, id: u64) -> Result<(), JobsError> {
        self.jobs.shutdown(now, id)?;
        self.after_jobs();
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
        self.after_jobs();
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
        self.after_jobs();
    }

    pub(super) fn jobs_timeout(&mut self, now: Timestamp) {
        if self.jobs.poll_timeout().is_some_and(|t| t <= now) {
            let rtt = self.rtt_map();
            self.jobs.handle_timeout(now, &rtt);
            self.after_jobs();
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
    fn after_jobs(&mut self) {
        while let Some((to, msg)) = self.jobs.poll_transmit() {
            if self.connections.contains_key(&to) {
                self.send(to, Message::Job(msg));
            } else {
                self.jobs_undeliverable += 1;
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

    /// Messages of jobs dropped because their peer was not connected.
    pub fn jobs_undeliverable(&self) -> u64 {
        self.jobs_undeliverable
    }
}
