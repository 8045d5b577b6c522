//! Checks in the fleet engine: the [`Plan`] of a run, failures, liveness probes.

use std::time::Duration;

use flotilla_core::Node;

use super::Fleet;
use super::links::Links;
use super::queue::Item;
use crate::check::liveness::{self, PROBE_INTERVAL, Timeout};
use crate::check::{self, Failure, LinkView, Registry};
use crate::company;
use crate::scenario::{Fault, Scenario, Workload};

/// What a run injects and checks besides stepping the nodes.
#[derive(Debug)]
pub struct Plan {
    /// The fault schedule.
    pub faults: Vec<Fault>,
    /// Timed actions (`[[workload]]`).
    pub workload: Vec<Workload>,
    /// Invariants checked after every step and at the end.
    pub checks: Registry,
    /// The liveness phase: its start (since the start of the run) and its bound.
    pub liveness: Option<(Duration, Duration)>,
    /// Panic at the first step at or after this time (`[debug] panic_after_s`).
    pub panic_after: Option<Duration>,
    /// Whether the summary reports the resource managers' figures.
    pub rcmgr_reported: bool,
    /// The share of each node's peers that must pass its filter for convergence.
    pub filter_pass_min: f64,
}

impl Plan {
    /// No faults, no checks.
    pub fn none() -> Plan {
        Plan {
            faults: Vec::new(),
            workload: Vec::new(),
            checks: Registry::empty(),
            liveness: None,
            panic_after: None,
            rcmgr_reported: false,
            filter_pass_min: company::FILTER_PASS_DEFAULT,
        }
    }

    /// The faults, the standard invariants, the liveness bound and the debug settings of
    /// `scenario`.
    pub fn of(scenario: &Scenario) -> Plan {
        Plan {
            faults: scenario.faults.clone(),
            workload: scenario.workload.clone(),
            checks: Registry::standard(scenario),
            liveness: scenario
                .expect
                .liveness
                .map(|bound| (scenario.fault_phase_end(), bound)),
            panic_after: scenario.debug.panic_after,
            rcmgr_reported: scenario.reports_rcmgr(),
            filter_pass_min: scenario
                .expect
                .filter_pass_min
                .unwrap_or(company::FILTER_PASS_DEFAULT),
        }
    }
}

impl Fleet<'_> {
    /// Records the run's first failure in the trace; the loop stops after this step.
    pub(super) fn fail(&mut self, failure: Failure) {
        self.trace
            .note(self.now, None, "failed", format_args!("{}", failure));
        self.failure = Some(failure);
    }

    /// A liveness probe: converged ends the phase, a passed deadline fails the run.
    pub(super) fn probe(&mut self) {
        let Some((from, bound)) = self.liveness else {
            return;
        };
        let faults = &self.faults;
        let usable = |a, b| !faults.blocks(a, b) && !faults.blocks(b, a);
        match liveness::converged(self.world, &self.nodes, usable) {
            Ok(()) => {
                let after = self.now.saturating_since(from);
                self.trace.note(
                    self.now,
                    None,
                    "converged",
                    format_args!("after={:.6}s", after.as_secs_f64()),
                );
                self.liveness = None;
            }
            Err(reason) if self.now >= from + bound => {
                self.fail(Failure::Liveness(Timeout {
                    from: check::elapsed(from),
                    bound,
                    reason,
                }));
            }
            Err(_) => {
                let next = (self.now + PROBE_INTERVAL).min(from + bound);
                self.queue.push(next, Item::Probe);
            }
        }
    }
}

impl Fleet<'_> {
    /// A company probe (see [`company`]), from the last node's start every
    /// [`CONVERGENCE_PROBE`](company::CONVERGENCE_PROBE) to the end: counts the overlay's
    /// components, and looks for convergence until the network first converges.
    pub(super) fn company_probe(&mut self) {
        let view: Vec<Option<&Node>> = self.nodes.iter().map(Option::as_ref).collect();
        let parts = company::components(self.world, &view);
        self.company.components_max = self.company.components_max.max(parts);
        if self.company.converged_at.is_none()
            && company::converged(
                self.world,
                &view,
                self.now,
                self.filter_pass_min,
                &self.company,
            )
            .is_ok()
        {
            let at = check::elapsed(self.now);
            self.company.converged_at = Some(at);
            self.trace.note(
                self.now,
                None,
                "company-converged",
                format_args!("at={:.6}s", at.as_secs_f64()),
            );
        }
        let next = self.now + company::CONVERGENCE_PROBE;
        self.queue.push(next, Item::CompanyProbe);
    }
}

/// The links of a run, as the end-of-run checks see them.
pub(super) struct LinksView<'a>(pub(super) &'a Links);

impl LinkView for LinksView<'_> {
    fn quiet(&self, a: usize, b: usize) -> bool {
        self.0.quiet(a, b)
    }
}
