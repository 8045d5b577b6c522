//! Choosing and running an engine: [`EngineKind`], [`RunResult`] and [`run`].
//!
//! Both engines take the same [`World`] and [`Trace`] and hand back the final nodes and
//! message counters, so a [`Summary`](crate::summary::Summary) reads the same either way.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use flotilla_core::Node;
use serde::{Deserialize, Serialize};

use crate::account::RcmgrStats;
use crate::company::CompanyStats;
use crate::scenario::Scenario;
use crate::trace::Trace;
use crate::world::{World, sim_addr};

/// Which engine runs a scenario.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The discrete-event loop stepping the cores directly (thousands of peers and more).
    Fleet,
    /// The async driver on turmoil's simulated TCP (up to a few hundred peers).
    Turmoil,
}

impl EngineKind {
    /// `fleet` or `turmoil`.
    pub fn name(&self) -> &'static str {
        match self {
            EngineKind::Fleet => "fleet",
            EngineKind::Turmoil => "turmoil",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fleet" => Ok(EngineKind::Fleet),
            "turmoil" => Ok(EngineKind::Turmoil),
            other => Err(EngineError::UnknownEngine(other.to_string())),
        }
    }
}

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine name is not `fleet` or `turmoil`.
    #[error("unknown engine `{0}`; use `fleet` or `turmoil`")]
    UnknownEngine(String),
    /// The trace could not be written.
    #[error("cannot write the trace: {0}; check the output directory")]
    Trace(#[from] std::io::Error),
}

/// What a run leaves behind.
#[derive(Debug)]
pub struct RunResult {
    /// Every node, in index order, as it was at the end of the run.
    pub nodes: Vec<Node>,
    /// Messages the nodes handed to the network.
    pub messages_sent: u64,
    /// Messages handed to a receiving node.
    pub messages_delivered: u64,
    /// The trace of the run.
    pub trace: Trace,
    /// What the nodes' resource managers refused, and the honest peers' ping success.
    pub rcmgr: RcmgrStats,
    /// Trims and convergence of watermarks and filters.
    pub company: CompanyStats,
    /// What became of the deployments of a run with `[jobs]`.
    pub jobs: Option<crate::jobstats::JobsSummary>,
}

/// The world of `scenario` at `seed`, with the simulators' address scheme ([`sim_addr`]).
pub fn world(scenario: &Scenario, seed: u64) -> World {
    World::build(scenario, seed, sim_addr)
}

/// Runs `scenario` at `seed` on `engine`, keeping the trace in memory.
///
/// This is the bare engine: no faults, invariants or `[expect]`; a run with those is
/// [`runner::run_checked`](crate::runner::run_checked).
pub fn run(scenario: &Scenario, seed: u64, engine: EngineKind) -> Result<RunResult, EngineError> {
    let world = world(scenario, seed);
    let trace = Trace::new(&world);
    run_world(&world, engine, trace)
}

/// Runs an already built `world` on `engine` for the world's duration, writing to `trace`.
pub fn run_world(
    world: &World,
    engine: EngineKind,
    trace: Trace,
) -> Result<RunResult, EngineError> {
    let duration: Duration = world.duration();
    let mut result = match engine {
        EngineKind::Fleet => crate::fleet::run(world, trace, duration),
        EngineKind::Turmoil => crate::turmoil_engine::run(world, trace, duration),
    };
    result.trace.flush()?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_round_trip() {
        for kind in [EngineKind::Fleet, EngineKind::Turmoil] {
            assert_eq!(kind.to_string().parse::<EngineKind>().unwrap(), kind);
        }
        let err = "tokio".parse::<EngineKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown engine `tokio`; use `fleet` or `turmoil`"
        );
    }

    #[test]
    fn a_world_is_the_same_for_both_engines() {
        let s = Scenario::parse(
            "name = \"e\"\nduration_s = 5\n[peers]\ncount = 3\n",
            "e.toml",
        )
        .unwrap();
        let w = world(&s, 2);
        assert_eq!(w.peer(1).config.listen_addrs, vec![sim_addr(1)]);
        let r = run(&s, 2, EngineKind::Fleet).unwrap();
        assert_eq!(r.nodes.len(), 3);
        assert_eq!(r.nodes[2].peer_id(), w.peer(2).peer_id);
    }
}
