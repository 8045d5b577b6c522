//! A compute provider's preferences (does a job fit?) and a service provider's ranking of
//! the bids it received.
//!
//! Prices are integers: millionths of the currency unit ("micros") per core-hour, so that
//! every comparison and total is exact and the same on every node.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::path::Path;
//! use flotilla_core::capacity::{Capacity, Ledger};
//! use flotilla_core::job::JobSpec;
//! use flotilla_core::offer::{fits, rank, Bid, Preferences};
//! use flotilla_core::PeerId;
//!
//! let spec = JobSpec::from_toml_str(
//!     "image = \"busybox\"\nduration_s = 3600\n[resources]\ncores = 2\nmemory_mb = 256\n",
//!     Path::new("job.toml"),
//! ).unwrap();
//! let machine = Capacity { millicores: 4000, memory_mb: 4096, disk_gb: 10, gpus: 0 };
//! let mut ledger = Ledger::new(machine, None);
//! ledger.onboard(machine).unwrap();
//! let prefs = Preferences::new(50_000, ["docker"]);
//! fits(&spec, &ledger, &prefs).unwrap();
//! assert_eq!(prefs.quote_micros(&spec), Some(100_000)); // 2 cores for 1 h at 0.05
//!
//! let (a, b) = (PeerId::from_public_key([1; 32]), PeerId::from_public_key([2; 32]));
//! let bids = vec![Bid { peer: a, price_micros_per_core_hour: 60_000 },
//!                 Bid { peer: b, price_micros_per_core_hour: 50_000 }];
//! let ranked = rank(bids, &BTreeMap::new());
//! assert_eq!(ranked[0].peer, b);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::{Capacity, Ledger, Shortfall};
use crate::identity::PeerId;
use crate::job::JobSpec;

/// What a compute provider accepts, and at what price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// The price of one core for one hour, in millionths of the currency unit.
    pub price_micros_per_core_hour: u64,
    /// The smallest request per worker accepted; a zero field accepts anything.
    #[serde(default)]
    pub resources_min: Capacity,
    /// The shortest job accepted.
    #[serde(default)]
    pub duration_s_min: u64,
    /// The executors this provider runs (e.g. `docker`); empty: it takes no jobs.
    pub executors: BTreeSet<String>,
    /// The provider's region, matched against a job's `constraints.region`.
    #[serde(default)]
    pub region: Option<String>,
}

impl Preferences {
    /// Preferences with a price and executors, no minimum and no region.
    pub fn new<'a>(
        price_micros_per_core_hour: u64,
        executors: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Preferences {
            price_micros_per_core_hour,
            resources_min: Capacity::ZERO,
            duration_s_min: 0,
            executors: executors.into_iter().map(str::to_string).collect(),
            region: None,
        }
    }

    /// The price of one worker of `spec` for its whole duration limit, in micros; `None`
    /// if it does not fit in 64 bits. Rounded up to a whole micro.
    pub fn quote_micros(&self, spec: &JobSpec) -> Option<u64> {
        let numerator = u128::from(self.price_micros_per_core_hour)
            * u128::from(spec.resources.millicores)
            * u128::from(spec.duration_s);
        u64::try_from(numerator.div_ceil(1000 * 3600)).ok()
    }
}

/// Why a provider does not bid for a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhyNot {
    /// The job names an executor this provider does not run.
    #[error("executor `{asked}` is not offered (offered: {offered})")]
    Executor {
        /// The job's executor.
        asked: String,
        /// The provider's executors, comma-separated.
        offered: String,
    },
    /// The provider runs no executor at all.
    #[error("no executor is offered")]
    NoExecutor,
    /// The job is limited to regions this provider is not in.
    #[error("region {have} is not among the job's regions ({wanted})")]
    Region {
        /// The provider's region, or `unknown`.
        have: String,
        /// The job's regions, comma-separated.
        wanted: String,
    },
    /// The job asks for less than the provider's minimum.
    #[error("job is below the minimum size: {field} {asked} asked, at least {min} accepted")]
    TooSmall {
        /// The field (`millicores`, `memory_mb`, `disk_gb`, `gpus`).
        field: &'static str,
        /// What a worker asks.
        asked: u64,
        /// The provider's minimum.
        min: u64,
    },
    /// The job is shorter than the provider's minimum.
    #[error("job is too short: duration_s {asked} asked, at least {min} accepted")]
    TooShort {
        /// The job's duration limit.
        asked: u64,
        /// The provider's minimum.
        min: u64,
    },
    /// Not enough available capacity for one worker.
    #[error("not enough capacity: {0}")]
    Capacity(Shortfall),
}

/// Whether one worker of `spec` could run on the provider with `ledger` and `prefs` now.
///
/// Checks, in order: executor, region, minimum size, minimum duration, available capacity.
/// Host ports are checked by the port allocator when the deployment is committed.
pub fn fits(spec: &JobSpec, ledger: &Ledger, prefs: &Preferences) -> Result<(), WhyNot> {
    let offered = || {
        prefs
            .executors
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &spec.constraints.executor {
        _ if prefs.executors.is_empty() => return Err(WhyNot::NoExecutor),
        Some(e) if !prefs.executors.contains(e) => {
            return Err(WhyNot::Executor {
                asked: e.clone(),
                offered: offered(),
            });
        }
        _ => {}
    }
    let regions = &spec.constraints.region;
    if !regions.is_empty() && !prefs.region.as_ref().is_some_and(|r| regions.contains(r)) {
        return Err(WhyNot::Region {
            have: prefs.region.clone().unwrap_or_else(|| "unknown".into()),
            wanted: regions.join(", "),
        });
    }
    let want = spec.resources.capacity();
    if let Some(short) = prefs.resources_min.shortfall(&want) {
        return Err(WhyNot::TooSmall {
            field: short.field,
            asked: short.available,
            min: short.asked,
        });
    }
    if spec.duration_s < prefs.duration_s_min {
        return Err(WhyNot::TooShort {
            asked: spec.duration_s,
            min: prefs.duration_s_min,
        });
    }
    want.shortfall(&ledger.available())
        .map_or(Ok(()), |s| Err(WhyNot::Capacity(s)))
}

/// A compute provider's answer to a bid request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bid {
    /// The provider.
    pub peer: PeerId,
    /// Its price for one core for one hour, in micros.
    pub price_micros_per_core_hour: u64,
}

/// Orders bids for a service provider: cheapest first, then lowest round-trip time (a peer
/// missing from `rtt` comes after every measured one), then peer id, so that the order is
/// the same on every run.
pub fn rank(mut bids: Vec<Bid>, rtt: &BTreeMap<PeerId, Duration>) -> Vec<Bid> {
    bids.sort_by(|a, b| {
        let latency = |p: &PeerId| rtt.get(p).copied().unwrap_or(Duration::MAX);
        a.price_micros_per_core_hour
            .cmp(&b.price_micros_per_core_hour)
            .then_with(|| latency(&a.peer).cmp(&latency(&b.peer)))
            .then_with(|| a.peer.cmp(&b.peer))
    });
    bids
}

#[cfg(test)]
mod tests;
