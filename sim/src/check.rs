//! Invariants, checked while a run goes on, and the ways a run can fail.
//!
//! An [`Invariant`] looks at one node right after the fleet engine handed it an input and
//! drained its outputs ([`Invariant::check_event`] for each event it reported,
//! [`Invariant::check_node`] once per step), and at the whole network when the run ends
//! ([`Invariant::check_end`]). The checks must be cheap: they run after every step. A
//! [`Registry`] holds the invariants of a run; [`Registry::standard`] has the ones every run
//! checks, and later features add theirs with [`Registry::push`].
//!
//! A run fails in one of three ways ([`Failure`]), each with its own exit code of
//! `flotilla-sim`: an invariant is violated or an `[expect]` assertion fails
//! ([`EXIT_CORRECTNESS`]), the network does not converge in time after the faults heal
//! ([`EXIT_LIVENESS`], see [`liveness`]), or the simulator panics ([`EXIT_CRASH`]).
//!
//! ```
//! use flotilla_sim::check::Registry;
//! use flotilla_sim::Scenario;
//!
//! let s = Scenario::parse("name = \"c\"\nduration_s = 5\n[peers]\ncount = 3\n", "c.toml").unwrap();
//! let names = Registry::standard(&s).names();
//! assert!(names.contains(&"high-watermark"));
//! ```

mod invariants;
mod jobs;
pub mod liveness;

use std::fmt;
use std::time::Duration;

use flotilla_core::rcmgr::ResourceManager;
use flotilla_core::{Event, Node, PeerId, Timestamp};

use crate::scenario::Scenario;
use crate::summary::Summary;
use crate::world::World;
pub use invariants::{
    DebugFails, NoSelfConnection, PeersMax, RttFloor, Symmetry, TrimStorm, UsageWithinLimits,
};
pub use jobs::{DeploymentBound, JobsCapacity};

/// Exit code of a run whose simulator panicked.
pub const EXIT_CRASH: u8 = 127;
/// Exit code of a run whose network did not converge within `expect.liveness_s`.
pub const EXIT_LIVENESS: u8 = 128;
/// Exit code of a run that broke an invariant or failed an `[expect]` assertion.
pub const EXIT_CORRECTNESS: u8 = 129;
/// Exit code of a usage or scenario error.
pub const EXIT_USAGE: u8 = 2;

/// What an invariant found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// The node at fault, if one is.
    pub node: Option<usize>,
    /// What is wrong, with the numbers.
    pub detail: String,
}

impl Breach {
    /// A breach at `node`.
    pub fn at(node: usize, detail: String) -> Breach {
        Breach {
            node: Some(node),
            detail,
        }
    }
}

/// A broken invariant, with when and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: String,
    /// Simulated time since the start of the run.
    pub at: Duration,
    /// The node at fault, if one is.
    pub node: Option<usize>,
    /// What is wrong.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant `{}` violated at {:.6} s",
            self.invariant,
            self.at.as_secs_f64()
        )?;
        if let Some(n) = self.node {
            write!(f, " on n{n}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// An invariant broke; the run stopped there.
    Invariant(Violation),
    /// The network did not converge within the liveness bound.
    Liveness(liveness::Timeout),
    /// `[expect]` assertions that the finished run failed.
    Expectation(Vec<String>),
}

impl Failure {
    /// The exit code of `flotilla-sim` for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Invariant(_) | Failure::Expectation(_) => EXIT_CORRECTNESS,
            Failure::Liveness(_) => EXIT_LIVENESS,
        }
    }

    /// `invariant`, `liveness` or `expect`.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Invariant(_) => "invariant",
            Failure::Liveness(_) => "liveness",
            Failure::Expectation(_) => "expect",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Invariant(v) => v.fmt(f),
            Failure::Liveness(t) => t.fmt(f),
            Failure::Expectation(failed) => {
                write!(f, "expectations failed: {}", failed.join("; "))
            }
        }
    }
}

/// What the checks see of the run at a step.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The world of the run.
    pub world: &'a World,
    /// Simulated time since the start of the run.
    pub elapsed: Duration,
}

/// What the end-of-run checks may ask the engine about a pair of nodes.
pub trait LinkView {
    /// True if nothing (connection set-up, close or message) is on its way between `a`
    /// and `b`, so their views of the connection have settled.
    fn quiet(&self, a: usize, b: usize) -> bool;
}

/// A property every step of a run must keep.
pub trait Invariant: Send {
    /// A short name, shown in violations: `high-watermark`.
    fn name(&self) -> &'static str;

    /// Called for each event `node` reported in a step.
    fn check_event(&mut self, _ctx: &Ctx<'_>, _node: usize, _event: &Event) -> Result<(), Breach> {
        Ok(())
    }

    /// Called once per step of `node`, after its outputs were drained.
    fn check_node(&mut self, _ctx: &Ctx<'_>, _node: usize, _n: &Node) -> Result<(), Breach> {
        Ok(())
    }

    /// Called after every resource-manager operation of `node`, with the remote peer it
    /// concerned (if any); `full` at the end of the run, when every scope is checked.
    fn check_rcmgr(
        &mut self,
        _ctx: &Ctx<'_>,
        _node: usize,
        _rm: &ResourceManager,
        _peer: Option<&PeerId>,
        _full: bool,
    ) -> Result<(), Breach> {
        Ok(())
    }

    /// Called when `node` goes down (crashes): what it held is gone.
    fn node_down(&mut self, _node: usize) {}

    /// Called when the run ends, with every running node (`None`: not running).
    fn check_end(
        &mut self,
        _ctx: &Ctx<'_>,
        _nodes: &[Option<Node>],
        _links: &dyn LinkView,
    ) -> Result<(), Breach> {
        Ok(())
    }
}

/// The invariants of a run.
pub struct Registry {
    invariants: Vec<Box<dyn Invariant>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// No invariants.
    pub fn empty() -> Registry {
        Registry {
            invariants: Vec::new(),
        }
    }

    /// The invariants every run of `scenario` checks (plus `[debug]`'s deliberate one).
    pub fn standard(scenario: &Scenario) -> Registry {
        Registry::standard_with_rtt_slack(scenario, Duration::ZERO)
    }

    /// [`Registry::standard`] for an engine that measures RTTs up to `rtt_slack` short of
    /// the model (the turmoil engine: two ticks).
    pub fn standard_with_rtt_slack(scenario: &Scenario, rtt_slack: Duration) -> Registry {
        let mut r = Registry::empty();
        r.push(Box::new(PeersMax));
        r.push(Box::new(NoSelfConnection));
        r.push(Box::new(RttFloor::new(scenario).with_slack(rtt_slack)));
        r.push(Box::new(Symmetry::new(scenario)));
        r.push(Box::new(UsageWithinLimits));
        r.push(Box::new(TrimStorm::new(scenario)));
        if let Some(jobs) = &scenario.jobs {
            r.push(Box::new(JobsCapacity::default()));
            r.push(Box::new(DeploymentBound::new(scenario, jobs)));
        }
        if let Some(after) = scenario.debug.fail_invariant_after {
            r.push(Box::new(DebugFails { after }));
        }
        r
    }

    /// Adds an invariant.
    pub fn push(&mut self, invariant: Box<dyn Invariant>) {
        self.invariants.push(invariant);
    }

    /// The names of the invariants, in check order.
    pub fn names(&self) -> Vec<&'static str> {
        self.invariants.iter().map(|i| i.name()).collect()
    }

    fn violation(name: &str, ctx: &Ctx<'_>, b: Breach) -> Violation {
        Violation {
            invariant: name.to_string(),
            at: ctx.elapsed,
            node: b.node,
            detail: b.detail,
        }
    }

    /// Checks one event of `node`.
    pub fn on_event(&mut self, ctx: &Ctx<'_>, node: usize, e: &Event) -> Result<(), Violation> {
        for inv in &mut self.invariants {
            inv.check_event(ctx, node, e)
                .map_err(|b| Self::violation(inv.name(), ctx, b))?;
        }
        Ok(())
    }

    /// Checks `node` after a step.
    pub fn on_node(&mut self, ctx: &Ctx<'_>, node: usize, n: &Node) -> Result<(), Violation> {
        for inv in &mut self.invariants {
            inv.check_node(ctx, node, n)
                .map_err(|b| Self::violation(inv.name(), ctx, b))?;
        }
        Ok(())
    }

    /// Checks `node`'s resource manager after an operation about `peer`; `full`: every
    /// scope.
    pub fn on_rcmgr(
        &mut self,
        ctx: &Ctx<'_>,
        node: usize,
        rm: &ResourceManager,
        peer: Option<&PeerId>,
        full: bool,
    ) -> Result<(), Violation> {
        for inv in &mut self.invariants {
            inv.check_rcmgr(ctx, node, rm, peer, full)
                .map_err(|b| Self::violation(inv.name(), ctx, b))?;
        }
        Ok(())
    }

    /// Node `node` went down.
    pub fn on_down(&mut self, node: usize) {
        for inv in &mut self.invariants {
            inv.node_down(node);
        }
    }

    /// Checks the network at the end of the run.
    pub fn on_end(
        &mut self,
        ctx: &Ctx<'_>,
        nodes: &[Option<Node>],
        links: &dyn LinkView,
    ) -> Result<(), Violation> {
        for inv in &mut self.invariants {
            inv.check_end(ctx, nodes, links)
                .map_err(|b| Self::violation(inv.name(), ctx, b))?;
        }
        Ok(())
    }
}

/// The `[expect]` assertions of `scenario` that `summary` fails, in words.
pub fn expectations(scenario: &Scenario, summary: &Summary) -> Vec<String> {
    let e = &scenario.expect;
    let mut failed = Vec::new();
    if let Some(min) = e.connected_fraction_min
        && summary.connected_fraction < min
    {
        failed.push(format!(
            "connected_fraction {} < connected_fraction_min {min}",
            summary.connected_fraction
        ));
    }
    if let Some(min) = e.degree_mean_min
        && summary.degree_mean < min
    {
        failed.push(format!(
            "degree_mean {} < degree_mean_min {min}",
            summary.degree_mean
        ));
    }
    if let Some(min) = e.degree_min_min
        && summary.degree_min < min
    {
        failed.push(format!(
            "degree_min {} < degree_min_min {min}",
            summary.degree_min
        ));
    }
    if let Some(max) = e.rtt_neighbour_mean_ms_max
        && summary.rtt_neighbour_mean_ms > max
    {
        failed.push(format!(
            "rtt_neighbour_mean_ms {} > rtt_neighbour_mean_ms_max {max}",
            summary.rtt_neighbour_mean_ms
        ));
    }
    let c = &summary.company;
    if let Some(min) = e.filter_pass_min
        && c.filter_pass_min < min
    {
        failed.push(format!(
            "filter_pass_min {} < expected filter_pass_min {min}",
            c.filter_pass_min
        ));
    }
    if let Some(min) = e.low_watermark_reached_min
        && c.low_watermark_reached < min
    {
        failed.push(format!(
            "low_watermark_reached {} < low_watermark_reached_min {min}",
            c.low_watermark_reached
        ));
    }
    if let Some(max) = e.components_max {
        if c.components as u64 > max {
            failed.push(format!(
                "components {} > components_max {max}",
                c.components
            ));
        }
        if c.components_max as u64 > max {
            failed.push(format!(
                "{} components seen during the run > components_max {max}",
                c.components_max
            ));
        }
    }
    // Only the fleet engine probes for convergence (and components during the run).
    let probed = summary.engine == crate::engine::EngineKind::Fleet;
    if let Some(bound) = e.converged_within.filter(|_| probed) {
        let last_start = c.last_start_s;
        match c.converged_at_s {
            Some(at) if at - last_start <= bound.as_secs_f64() => {}
            Some(at) => failed.push(format!(
                "converged {:.0} s after the last start at {last_start:.0} s, later than converged_within_s {}",
                at - last_start,
                bound.as_secs_f64()
            )),
            None => failed.push(format!(
                "never converged (converged_within_s {})",
                bound.as_secs_f64()
            )),
        }
    }
    if e.deployments_completed_min.is_some() || e.deployments_terminal {
        let j = summary
            .jobs
            .clone()
            .unwrap_or_else(|| crate::jobstats::JobTally::default().summary(std::iter::empty()));
        if let Some(min) = e.deployments_completed_min
            && j.completed_share < min
        {
            failed.push(format!(
                "completed share of deployments {} < deployments_completed_min {min}",
                j.completed_share
            ));
        }
        let live: u64 = j
            .by_state
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "completed" | "failed"))
            .map(|(_, v)| v)
            .sum();
        if e.deployments_terminal && live > 0 {
            failed.push(format!(
                "{live} deployments still live at the end (deployments_terminal)"
            ));
        }
    }
    if let Some(min) = e.honest_ping_success_min {
        let found = summary
            .rcmgr
            .as_ref()
            .map_or(1.0, |r| r.honest_ping_success);
        if found < min {
            failed.push(format!(
                "honest_ping_success {found} < honest_ping_success_min {min}"
            ));
        }
    }
    failed
}

/// The time of `now` since the run's epoch.
pub fn elapsed(now: Timestamp) -> Duration {
    now.saturating_since(World::epoch())
}
