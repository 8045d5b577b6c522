//! Scenario files (format v1): what to simulate, parsed strictly from TOML.
//!
//! A scenario names the run, its seed, duration and engine, the peers and how they start,
//! where they live (region weights), the latency model and the node profile, and
//! optionally node classes (`classes`), faults (`faults`, options possibly drawn per seed
//! in `draw`), a workload (`workload`), jobs (`jobs`: compute and service providers and
//! their deployments), expectations and deliberate failures. Unknown keys,
//! wrong types and impossible values are errors that name the file, the line and the key
//! and say what to write instead:
//!
//! ```text
//! scenarios/x.toml:7: unknown key `pears` in [peers] (known: count, bootstrap, start_spread_s)
//! scenarios/x.toml:12: unknown region `eu-wst` in [regions] (known: na-east, ...)
//! scenarios/x.toml:4: `peers.count` must be at least 2
//! ```
//!
//! Lines come from toml's error spans; values that fail a semantic check are found again in
//! toml's spanned document tree by their key path (see `locate`). `scenarios/README.md`
//! documents every key and its default.

mod check;
mod classes;
mod draw;
mod expect;
mod faults;
mod include;
mod jobs;
mod limits;
mod locate;
mod raw;
mod workload;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::Config;

use crate::data::{DataError, RegionData};
use crate::engine::EngineKind;
use check::Checker;
pub use classes::{
    BANDWIDTH_KBPS_MAX, BANDWIDTH_KBPS_MIN, CHURN_S_MIN, CLASSES_MAX, Churn, Class, Dist,
};
pub use draw::{FaultDraws, STREAM_FAULT_OPTIONS};
pub use expect::{Debug, Expect};
pub use faults::{Fault, FaultKind, Side, fault_phase_end, fraction_count};
pub use include::INCLUDE_DEPTH_MAX;
use include::Locator;
pub use jobs::{JobsScenario, Providers, TEMPLATES_MAX};
pub use limits::{FD_LIMIT_DEFAULT, MEMORY_MB_DEFAULT, NodeLimits};
use locate::describe;
use raw::RawScenario;
pub use workload::{FLOOD_RATE_MAX, FloodMessage, Workload, WorkloadKind};

/// Peers at most in one scenario (node indices are 32-bit in the engines).
pub const PEERS_MAX: u64 = 1_000_000;
/// The longest scenario, seconds.
pub const DURATION_S_MAX: f64 = 1_000_000.0;
/// The largest jitter or last-mile delay accepted, milliseconds.
pub const DELAY_MS_MAX: f64 = 10_000.0;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read the scenario: {error}; check the path")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not TOML, does not fit the format, or holds an impossible value.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The 1-based line of the offending key or value.
        line: usize,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// The embedded region data is broken (a build problem, not a scenario problem).
    #[error(transparent)]
    Data(#[from] DataError),
}

impl ScenarioError {
    /// The line the error points at, if it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// `[peers]`: how many peers and how they start.
#[derive(Debug, Clone, PartialEq)]
pub struct Peers {
    /// Number of peers.
    pub count: usize,
    /// The first `bootstrap` peers are bootstrap nodes, known to every peer.
    pub bootstrap: usize,
    /// Non-bootstrap peers start at seeded offsets in `[0, start_spread)`.
    pub start_spread: Duration,
}

/// `[latency]`: the latency model on top of the region RTT matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    /// Each one-way delay adds a seeded uniform draw from `[0, jitter]`.
    pub jitter: Duration,
    /// Smallest per-peer access (last-mile) RTT.
    pub last_mile_min: Duration,
    /// Largest per-peer access (last-mile) RTT.
    pub last_mile_max: Duration,
    /// Probability that a message is lost (seeded draws); 0 for none.
    pub loss: f64,
}

/// One region peers are placed in, with its share of the peers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionWeight {
    /// Index into [`RegionData::regions`].
    pub region: usize,
    /// Share of the peers; all weights of a scenario sum to 1.
    pub weight: f64,
}

/// A parsed, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file it was read from (for messages).
    pub path: String,
    /// The scenario's name (letters, digits, `-`, `_`).
    pub name: String,
    /// The default seed of a run.
    pub seed: u64,
    /// Simulated time a run lasts.
    pub duration: Duration,
    /// The default engine.
    pub engine: EngineKind,
    /// Peers.
    pub peers: Peers,
    /// Regions with a positive weight, in data order.
    pub regions: Vec<RegionWeight>,
    /// The latency model.
    pub latency: Latency,
    /// The node profile; addresses, bootstrap list and region are filled in per peer.
    pub node: Config,
    /// The profile of the bootstrap nodes: `node` with `[bootstrap_node]` applied.
    pub bootstrap_node: Config,
    /// The resource manager's limits of `node` (`[node.limits]`, `fd_limit`).
    pub node_limits: NodeLimits,
    /// The resource manager's limits of `bootstrap_node`.
    pub bootstrap_node_limits: NodeLimits,
    /// Node classes (`[[classes]]`), in file order; empty without the key.
    pub classes: Vec<Class>,
    /// Faults injected on a schedule (`[[faults]]`), in file order; options written as
    /// ranges hold their low end until [`Scenario::at_seed`] draws them.
    pub faults: Vec<Fault>,
    /// For each fault, what of it a seed draws (same order as `faults`).
    pub fault_draws: Vec<FaultDraws>,
    /// Timed actions (`[[workload]]`), in file order.
    pub workload: Vec<Workload>,
    /// Compute providers, service providers and deployments (`[jobs]`), if written.
    pub jobs: Option<JobsScenario>,
    /// Assertions on the run (`[expect]`).
    pub expect: Expect,
    /// Deliberate failures for testing the simulator (`[debug]`).
    pub debug: Debug,
    /// The region data set.
    pub data: Arc<RegionData>,
}

impl Scenario {
    /// When the fault phase ends (every fault settled, every peer started) and the
    /// liveness phase begins.
    pub fn fault_phase_end(&self) -> Duration {
        fault_phase_end(&self.faults, &self.peers)
    }

    /// True if a class churns.
    pub fn has_churn(&self) -> bool {
        self.classes.iter().any(|c| c.churn.is_some())
    }

    /// True if the summary reports the resource managers' figures: a profile sets limits,
    /// a `[[workload]]` entry floods with connections or streams, or `[expect]` asks for
    /// a ping success rate.
    pub fn reports_rcmgr(&self) -> bool {
        self.node_limits.configured
            || self.bootstrap_node_limits.configured
            || self.classes.iter().any(|c| c.limits.configured)
            || self.workload.iter().any(|w| w.kind != WorkloadKind::Flood)
            || self.expect.honest_ping_success_min.is_some()
    }

    /// True if a class limits its uplink.
    pub fn has_bandwidth(&self) -> bool {
        self.classes.iter().any(|c| c.bandwidth_kbps.is_some())
    }

    /// The highest peer index a fault or a `[[workload]]` entry names, if any does (a
    /// partition side drawn by `fraction` names none).
    pub fn faults_node_max(&self) -> Option<usize> {
        self.faults
            .iter()
            .zip(&self.fault_draws)
            .flat_map(|(f, d)| match &f.kind {
                // A side a drawn by `fraction` adapts to the peer count.
                FaultKind::Partition { a, b, .. } => {
                    [d.fraction.is_none().then_some(a), b.as_ref()]
                        .into_iter()
                        .flatten()
                        .flat_map(|s| match s {
                            Side::Nodes(n) => n.clone(),
                            Side::Regions(_) => Vec::new(),
                        })
                        .collect()
                }
                FaultKind::Crash { nodes, .. } | FaultKind::ClockSkew { nodes, .. } => {
                    nodes.clone()
                }
                FaultKind::Loss { .. } => Vec::new(),
            })
            .chain(
                self.workload
                    .iter()
                    .flat_map(|w| w.nodes.iter().chain(&w.targets).copied()),
            )
            .max()
    }

    /// Reads and parses the scenario file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read {
            path: shown.clone(),
            error,
        })?;
        Scenario::parse(&text, &shown)
    }

    /// Parses scenario `text`; `path` is only used in messages.
    ///
    /// An `include` is read relative to the directory of `path`.
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let data = RegionData::embedded()?;
        let loc = Locator::resolve(text, path)?;
        let raw: RawScenario = toml::from_str(&loc.text).map_err(|e| {
            let span: Range<usize> = e.span().unwrap_or(0..0);
            let key = if span.is_empty() {
                None
            } else {
                loc.index.path_at(&span)
            };
            loc.error_at(span, describe(e.message(), key))
        })?;
        Checker { path, loc: &loc }.scenario(raw, data)
    }
}

#[cfg(test)]
mod tests;
