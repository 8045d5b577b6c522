//! Jobs in the fleet engine (`[jobs]`): one simulated executor per compute provider, the
//! service providers' deployment rounds, and the tally of what became of them.
//!
//! - **Executors**: a provider gets a [`SimExecutor`] when it starts
//!   ([`World::executor`]: seeded from its peer's seed tree, `start` counting its starts),
//!   so runs are deterministic and a restarted provider draws afresh. After
//!   every input of a node the engine hands its [`ExecCommand`]s to the executor and feeds
//!   the executor's ready events back with `handle_exec`, until neither has more; the
//!   executor's next deadline is an [`Item::Exec`] in the queue beside the node's timer
//!   (lazily invalidated: an entry whose time is not the one recorded is stale). A crash
//!   drops the executor with its jobs: the provider's jobs vanish, and their service
//!   providers end the deployments by their deadlines.
//! - **Deployments**: from `deploy_at_s` to `deploy_until_s` every service provider
//!   deploys every `deploy_every_s` seconds (the `k`-th of `n` starting `k / n` of a
//!   period late, so rounds are spread: [`World::first_rounds`]), the templates in turn
//!   from its own place in them ([`JobsScenario::template`](crate::scenario::JobsScenario));
//!   a deploy the core refuses (no connected peer) is counted; a round that finds its
//!   service provider down is skipped.

use flotilla_core::jobs::ExecCommand;
use flotilla_core::simexec::SimExecutor;
use flotilla_core::{Event, Node, Timestamp};

use super::Fleet;
use super::queue::Item;
use crate::check;
use crate::jobstats::JobTally;
use crate::world::{JobRole, World};

/// The jobs state of a run.
#[derive(Debug)]
pub(super) struct FleetJobs {
    exec: Vec<Option<SimExecutor>>,
    /// The time of each executor's one live queue entry (`Timestamp::MAX`: none).
    exec_due: Vec<Timestamp>,
    /// Starts of each node so far (seeds its executor).
    starts: Vec<u64>,
    /// Deployments each service provider made so far.
    rounds: Vec<usize>,
    /// What became of the deployments.
    pub tally: JobTally,
}

impl FleetJobs {
    /// The jobs of `world`, if it has `[jobs]`; the first deployment round of every service
    /// provider is handed to `push`.
    pub(super) fn new(world: &World, mut push: impl FnMut(Timestamp, Item)) -> Option<FleetJobs> {
        world.jobs()?;
        for (i, at) in world.first_rounds() {
            push(World::epoch() + at, Item::Deploy { node: i as u32 });
        }
        let len = world.len();
        Some(FleetJobs {
            exec: (0..len).map(|_| None).collect(),
            exec_due: vec![Timestamp::MAX; len],
            starts: vec![0; len],
            rounds: vec![0; len],
            tally: JobTally::default(),
        })
    }
}

impl Fleet<'_> {
    /// Node `i` started: a provider gets a fresh executor.
    pub(super) fn jobs_started(&mut self, i: usize) {
        let world = self.world;
        let Some(jobs) = self.jobs.as_mut() else {
            return;
        };
        if !matches!(world.peer(i).job_role, JobRole::Provider { .. }) {
            return;
        }
        jobs.exec[i] = world.executor(i, jobs.starts[i]);
        jobs.starts[i] += 1;
    }

    /// Node `i` crashed: its executor's jobs vanish, its live deployments are lost.
    pub(super) fn jobs_down(&mut self, i: usize) {
        self.checks.on_down(i);
        let stats = self.nodes[i].as_ref().map(|n| n.jobs().stats());
        if let Some(jobs) = self.jobs.as_mut() {
            jobs.exec[i] = None;
            jobs.exec_due[i] = Timestamp::MAX;
            jobs.tally.node_down(i, stats);
        }
    }

    /// Hands node `i`'s executor commands to its executor and the executor's ready events
    /// back to the node, until neither has more.
    pub(super) fn pump_exec(&mut self, i: usize) {
        let now = self.clock(i);
        let Some(jobs) = self.jobs.as_mut() else {
            return;
        };
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        loop {
            while let Some(cmd) = node.poll_exec() {
                let Some(ex) = jobs.exec[i].as_mut() else {
                    continue;
                };
                // A duplicate start or the stop of a job that already exited changes
                // nothing; the core hears of the exit through the executor's events.
                let _ = match cmd {
                    ExecCommand::Start { id, limit, .. } => ex.start(now, id, limit),
                    ExecCommand::Stop { id } => ex.stop(now, id),
                };
            }
            let Some(ex) = jobs.exec[i].as_mut() else {
                return;
            };
            let mut fed = false;
            while let Some(e) = ex.poll_event() {
                node.handle_exec(now, e);
                fed = true;
            }
            if !fed {
                return;
            }
        }
    }

    /// Schedules node `i`'s executor's next deadline, if it is earlier than the entry in
    /// the queue.
    pub(super) fn rearm_exec(&mut self, i: usize) {
        let Some(due) = self
            .jobs
            .as_ref()
            .and_then(|j| j.exec[i].as_ref())
            .and_then(SimExecutor::poll_timeout)
        else {
            return;
        };
        let due = self.sim_time_of(i, due).max(self.now);
        let Some(jobs) = self.jobs.as_mut() else {
            return;
        };
        if due < jobs.exec_due[i] {
            jobs.exec_due[i] = due;
            self.queue.push(due, Item::Exec { node: i as u32 });
        }
    }

    /// Node `i`'s executor entry pops: release its due events to the node.
    pub(super) fn on_exec(&mut self, i: usize) {
        let now = self.clock(i);
        let Some(jobs) = self.jobs.as_mut() else {
            return;
        };
        if jobs.exec_due[i] != self.now {
            return;
        }
        jobs.exec_due[i] = Timestamp::MAX;
        if let Some(ex) = jobs.exec[i].as_mut() {
            ex.handle_timeout(now);
        }
        self.drain(i, false);
    }

    /// Service provider `i`'s deployment round.
    pub(super) fn deploy_round(&mut self, i: usize) {
        let world = self.world;
        let Some(j) = world.jobs() else { return };
        let next = self.now + j.deploy_every;
        if next < World::epoch() + j.deploy_until {
            self.queue.push(next, Item::Deploy { node: i as u32 });
        }
        let now = self.clock(i);
        let (Some(jobs), Some(node)) = (self.jobs.as_mut(), self.nodes[i].as_mut()) else {
            return;
        };
        let JobRole::ServiceProvider { ordinal } = world.peer(i).job_role else {
            return;
        };
        let spec = j.template(ordinal, jobs.rounds[i]).clone();
        jobs.rounds[i] += 1;
        if Node::deploy(node, now, spec, &[]).is_err() {
            jobs.tally.deploy_refused();
        }
        self.drain(i, false);
    }

    /// Tallies a job event of node `i`.
    pub(super) fn jobs_event(&mut self, i: usize, e: &Event) {
        if let (Event::Job(je), Some(jobs)) = (e, self.jobs.as_mut()) {
            jobs.tally.event(i, check::elapsed(self.now), je);
        }
    }
}

#[cfg(test)]
mod tests;
