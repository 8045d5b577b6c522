//! Jobs on the turmoil engine (`[jobs]`): the same providers, capacities, prices and
//! seeded executors as on the fleet engine ([`crate::world`]), run through the production
//! driver.
//!
//! - **Executors**: a provider's host onboards the registered capacity into its node
//!   ([`World::onboard`]) and gives the driver a
//!   [`SimRunner`](flotilla_node::simrunner::SimRunner): the world's seeded
//!   executor for this start ([`World::executor`]) in a task of the host, on the node's
//!   clock. A crash stops the host's software, executor task included: the provider's jobs
//!   vanish and their service providers end the deployments by their deadlines.
//! - **Deployments**: a service provider's host runs its rounds ([`deploy_rounds`]) in a
//!   task that deploys through the driver's [`DriverHandle`] at the fleet engine's times
//!   ([`World::first_rounds`], then every `deploy_every_s` before `deploy_until_s`), the
//!   templates in turn ([`JobsScenario::template`](crate::scenario::JobsScenario)); rounds
//!   that fall while the host is down are skipped, and a deploy the core refuses is
//!   counted.
//! - **Tally**: [`JobsState`] follows the job events the recorder sees, as the fleet
//!   engine's tally does, and keeps each running node's job counters from its last step, so
//!   a crashed node's counters still reach the summary.

use std::time::Duration;

use flotilla_core::job::JobSpec;
use flotilla_core::jobs::{JobEvent, JobStats};
use flotilla_core::simexec::SimExecutor;
use flotilla_core::{Node, Timestamp};
use flotilla_node::driver::DriverHandle;
use tokio::sync::watch;

use super::host::sim_now;
use super::recorder::SharedRef;
use crate::jobstats::{JobTally, JobsSummary};
use crate::world::{JobRole, World};

/// The jobs state of a run, shared by the hosts.
#[derive(Debug)]
pub(super) struct JobsState {
    /// Starts of each node so far (seeds its executor).
    starts: Vec<u64>,
    /// Deployments each service provider made so far.
    rounds: Vec<usize>,
    /// Each running node's job counters after its last step.
    stats: Vec<Option<JobStats>>,
    /// What became of the deployments.
    tally: JobTally,
}

impl JobsState {
    /// The jobs state of `world`, if it has `[jobs]`.
    pub(super) fn new(world: &World) -> Option<JobsState> {
        world.jobs()?;
        let n = world.len();
        Some(JobsState {
            starts: vec![0; n],
            rounds: vec![0; n],
            stats: vec![None; n],
            tally: JobTally::default(),
        })
    }

    /// The executor of node `i` starting now: a fresh one for a provider, `None` for any
    /// other peer.
    pub(super) fn executor(&mut self, world: &World, i: usize) -> Option<SimExecutor> {
        if !matches!(world.peer(i).job_role, JobRole::Provider { .. }) {
            return None;
        }
        let exec = world.executor(i, self.starts[i]);
        self.starts[i] += 1;
        exec
    }

    /// The job service provider `i` deploys in its next round.
    fn next_template(&mut self, world: &World, i: usize) -> Option<JobSpec> {
        let (Some(j), JobRole::ServiceProvider { ordinal }) =
            (world.jobs(), world.peer(i).job_role)
        else {
            return None;
        };
        let spec = j.template(ordinal, self.rounds[i]).clone();
        self.rounds[i] += 1;
        Some(spec)
    }

    /// Node `i` reported a job event at `at` (since the run's start).
    pub(super) fn event(&mut self, i: usize, at: Duration, e: &JobEvent) {
        self.tally.event(i, at, e);
    }

    /// Node `i` finished a step.
    pub(super) fn stepped(&mut self, i: usize, node: &Node) {
        self.stats[i] = Some(node.jobs().stats());
    }

    /// Node `i` crashed: its live deployments are lost, its counters kept.
    pub(super) fn down(&mut self, i: usize) {
        let stats = self.stats[i].take();
        self.tally.node_down(i, stats);
    }

    /// The summary, with the counters of `running`, the nodes running at the end.
    pub(super) fn summary<'a>(&self, running: impl Iterator<Item = &'a Node>) -> JobsSummary {
        self.tally.summary(running.map(|n| n.jobs().stats()))
    }
}

/// The deployment rounds of service provider `index` from now on, through `handle`: the
/// first at `first` after the run's start, then every `deploy_every_s` while before
/// `deploy_until_s` and `end`. Rounds already past when the node starts (it had not
/// started, or its host was down) are skipped, as on the fleet engine; since a host starts
/// its node at a tick boundary, so is a round that falls between the node's start time and
/// that boundary. Ends when the engine halts the run.
pub(super) async fn deploy_rounds(
    handle: DriverHandle,
    shared: SharedRef,
    index: usize,
    first: Duration,
    end: Timestamp,
    halt: watch::Receiver<bool>,
) {
    let world = std::sync::Arc::clone(&shared.lock().checks.world);
    let (Some(j), Some(now)) = (world.jobs(), sim_now()) else {
        return;
    };
    let epoch = World::epoch();
    let until = epoch + j.deploy_until;
    let every = j.deploy_every.max(Duration::from_micros(1));
    let mut at = epoch + first;
    if at < now {
        let every_us = every.as_micros();
        let rounds = now.saturating_since(at).as_micros().div_ceil(every_us);
        at = at + Duration::from_micros(u64::try_from(rounds * every_us).unwrap_or(u64::MAX));
    }
    while at < until && at < end {
        let Some(now) = sim_now() else { return };
        tokio::time::sleep(at.saturating_since(now)).await;
        if *halt.borrow() {
            return;
        }
        let spec = {
            let mut s = shared.lock();
            s.jobs
                .as_mut()
                .and_then(|js| js.next_template(&world, index))
        };
        let Some(spec) = spec else { return };
        if handle.deploy(spec, Vec::new()).await.is_err() && !*halt.borrow() {
            let mut s = shared.lock();
            if let Some(js) = s.jobs.as_mut() {
                js.tally.deploy_refused();
            }
        }
        at = at + every;
    }
}
