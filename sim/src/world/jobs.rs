//! Who does what with jobs in a world (`[jobs]`): compute providers with their price and
//! capacity, service providers with their place in the deployment rounds.
//!
//! Drawn peers and prices come from `SeedTree::new(seed).child(STREAM_JOBS)`, so a
//! `[jobs]` section moves no other draw of the run: the providers of `providers_count`
//! from `child(0)`, the service providers from `child(1)`, provider `i`'s price from
//! `child(2).child(i)`.
//!
//! What both engines share besides the roles: a provider's onboarding
//! ([`World::onboard`]), its seeded executor ([`World::executor`]), and the service
//! providers' deployment rounds ([`World::first_rounds`], [`JobsScenario::template`]).

use std::time::Duration;

use flotilla_core::job::JobSpec;
use flotilla_core::offer::Preferences;
use flotilla_core::simexec::SimExecutor;
use flotilla_core::{Config, Node, SeedTree};
use rand::Rng;
use rand::seq::index::sample;

use super::{STREAM_NETWORK, World};
use crate::scenario::{JobsScenario, Providers};

/// Label under the root seed for the draws of `[jobs]`.
pub const STREAM_JOBS: u64 = STREAM_NETWORK + 20;
/// Purpose label under a peer's protocol seed: its simulated executor.
pub const PURPOSE_EXEC: u64 = 0x534d_0003;

/// What a peer does with jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRole {
    /// Nothing: it neither provides nor deploys.
    None,
    /// A compute provider bidding this price per core-hour (millionths).
    Provider {
        /// Its price.
        price: u64,
    },
    /// A service provider, the `ordinal`-th one in index order.
    ServiceProvider {
        /// Its place among the service providers.
        ordinal: usize,
    },
}

/// The role of every peer: `classes[i]` is peer `i`'s class, `bootstrap` the number of
/// bootstrap peers.
pub(super) fn roles(
    jobs: &JobsScenario,
    seed: u64,
    classes: &[Option<usize>],
    bootstrap: usize,
) -> Vec<JobRole> {
    let n = classes.len();
    let root = SeedTree::new(seed).child(STREAM_JOBS);
    let mut provider = vec![false; n];
    match &jobs.providers {
        Providers::Classes(cs) => {
            for (i, c) in classes.iter().enumerate() {
                provider[i] = c.is_some_and(|c| cs.contains(&c));
            }
        }
        Providers::Count(k) => {
            let pool: Vec<usize> = (bootstrap..n).collect();
            let mut rng = root.child(0).rng();
            for j in sample(&mut rng, pool.len(), (*k).min(pool.len())) {
                provider[pool[j]] = true;
            }
        }
    }
    let pool: Vec<usize> = (bootstrap..n).filter(|&i| !provider[i]).collect();
    let mut rng = root.child(1).rng();
    let mut sps: Vec<usize> = sample(&mut rng, pool.len(), jobs.service_providers.min(pool.len()))
        .into_iter()
        .map(|j| pool[j])
        .collect();
    sps.sort_unstable();
    let mut out = vec![JobRole::None; n];
    for (i, role) in out.iter_mut().enumerate() {
        if provider[i] {
            let (lo, hi) = jobs.price;
            let price = if lo < hi {
                root.child(2).child(i as u64).rng().random_range(lo..=hi)
            } else {
                lo
            };
            *role = JobRole::Provider { price };
        }
    }
    for (ordinal, i) in sps.into_iter().enumerate() {
        out[i] = JobRole::ServiceProvider { ordinal };
    }
    out
}

/// `config` of a peer with `role`: a provider registers the onboarded capacity as its
/// resources, offers the `sim` executor and bids its price.
pub(super) fn configure(config: &mut Config, role: JobRole, jobs: &JobsScenario) {
    if let JobRole::Provider { price } = role {
        let c = jobs.capacity;
        config.resources.cores = u32::try_from(c.millicores / 1000).unwrap_or(u32::MAX);
        config.resources.memory_mb = c.memory_mb;
        config.resources.disk_gb = c.disk_gb;
        if !config.executors.iter().any(|e| e == "sim") {
            config.executors.push("sim".to_string());
        }
        config.jobs.preferences = Preferences::new(price, ["sim"]);
    }
}

impl World {
    /// Onboards the registered capacity of peer `i` into `node` if it is a compute
    /// provider; any other peer's node is left as it is.
    ///
    /// # Errors
    /// If the node refuses the capacity (its configuration registers less), which the
    /// world's configuration ([`configure`]) rules out.
    pub fn onboard(&self, i: usize, node: &mut Node) -> Result<(), String> {
        match (self.peers[i].job_role, self.jobs()) {
            (JobRole::Provider { .. }, Some(j)) => node
                .jobs_mut()
                .onboard(j.capacity)
                .map_err(|e| format!("peer {i} cannot onboard its registered capacity: {e}")),
            _ => Ok(()),
        }
    }

    /// The simulated executor of compute provider `i` for its `start`-th start (from 0),
    /// seeded from `protocol_seed.child(PURPOSE_EXEC).child(start)`, so a restarted
    /// provider draws afresh; `None` for a peer that does not provide.
    pub fn executor(&self, i: usize, start: u64) -> Option<SimExecutor> {
        let (Some(j), JobRole::Provider { .. }) = (self.jobs(), self.peers[i].job_role) else {
            return None;
        };
        let seed = self.peers[i].protocol_seed.child(PURPOSE_EXEC).child(start);
        // The scenario check validated the executor's settings.
        SimExecutor::new(j.exec.clone(), seed).ok()
    }

    /// The first deployment round of every service provider, in index order, after the
    /// run's start: the `k`-th of `n` deploys first `k / n` of a period after
    /// `deploy_at_s`, so that rounds are spread; a service provider whose first round
    /// would fall at or after `deploy_until_s` is left out. Later rounds follow every
    /// `deploy_every_s` while they fall before `deploy_until_s`.
    pub fn first_rounds(&self) -> Vec<(usize, Duration)> {
        let Some(j) = self.jobs() else {
            return Vec::new();
        };
        let sps: Vec<(usize, usize)> = self
            .peers
            .iter()
            .filter_map(|p| match p.job_role {
                JobRole::ServiceProvider { ordinal } => Some((p.index, ordinal)),
                _ => None,
            })
            .collect();
        let n = sps.len().max(1) as u32;
        sps.into_iter()
            .map(|(i, ordinal)| (i, j.deploy_at + j.deploy_every * ordinal as u32 / n))
            .filter(|(_, at)| *at < j.deploy_until)
            .collect()
    }
}

impl JobsScenario {
    /// The job the `ordinal`-th service provider deploys after `made` deploys: the
    /// templates in turn, from its own place in them.
    pub fn template(&self, ordinal: usize, made: usize) -> &JobSpec {
        &self.templates[(ordinal + made) % self.templates.len()]
    }
}
