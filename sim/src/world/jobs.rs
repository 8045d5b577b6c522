//! Who does what with jobs in a world (`[jobs]`): compute providers with their price and
//! capacity, service providers with their place in the deployment rounds.
//!
//! Drawn peers and prices come from `SeedTree::new(seed).child(STREAM_JOBS)`, so a
//! `[jobs]` section moves no other draw of the run: the providers of `providers_count`
//! from `child(0)`, the service providers from `child(1)`, provider `i`'s price from
//! `child(2).child(i)`.

use flotilla_core::offer::Preferences;
use flotilla_core::{Config, SeedTree};
use rand::Rng;
use rand::seq::index::sample;

use super::STREAM_NETWORK;
use crate::scenario::{JobsScenario, Providers};

/// Label under the root seed for the draws of `[jobs]`.
pub const STREAM_JOBS: u64 = STREAM_NETWORK + 20;

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
