//! `[expect]` and `[debug]`: what a run must achieve, and deliberate failures that test the
//! simulator's own failure paths.

use std::time::Duration;

use super::check::Checker;
use super::faults::{Fault, fault_phase_end};
use super::raw::{RawDebug, RawExpect};
use super::{DURATION_S_MAX, Peers, ScenarioError};

/// `[expect]`: assertions on a run; a failed one fails the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    /// Smallest acceptable `connected_fraction` at the end.
    pub connected_fraction_min: Option<f64>,
    /// Smallest acceptable `degree_mean` at the end.
    pub degree_mean_min: Option<f64>,
    /// Smallest acceptable `degree_min` at the end.
    pub degree_min_min: Option<usize>,
    /// Largest acceptable `rtt_neighbour_mean_ms` at the end.
    pub rtt_neighbour_mean_ms_max: Option<f64>,
    /// Smallest acceptable share of honest pings answered in time (pongs over pongs and
    /// timeouts of pings between nodes of no `[[workload]]` entry).
    pub honest_ping_success_min: Option<f64>,
    /// After the fault phase, the network must converge (every running peer connected, one
    /// component) within this long.
    pub liveness: Option<Duration>,
    /// Smallest acceptable share, at the end, of each node's peers that pass its filter as
    /// the latency model judges them (nodes without peers are left out); also the share
    /// convergence asks for (0.9 when unset).
    pub filter_pass_min: Option<f64>,
    /// Smallest acceptable share of nodes with enough candidates (peers passing their
    /// filter) that hold at least their low watermark at the end.
    pub low_watermark_reached_min: Option<f64>,
    /// The network must converge (every node at its low watermark unless short of
    /// candidates, every node's peers passing its filter) within this long of the last
    /// node's start.
    pub converged_within: Option<Duration>,
    /// Most trims of one node in any simulated minute (checked at every trim; unset: as
    /// many as the node's quiet period allows).
    pub trims_per_node_minute_max: Option<u32>,
    /// Most connected components of the overlay at the end.
    pub components_max: Option<u64>,
    /// Smallest acceptable share of the deployments asked for (`[jobs]`) that completed.
    pub deployments_completed_min: Option<f64>,
    /// Every deployment asked for by a service provider that stayed up must have ended
    /// (completed or failed) by the end of the run.
    pub deployments_terminal: bool,
}

impl Expect {
    /// The first written key that needs `[jobs]`.
    pub(super) fn jobs_key(&self) -> Option<&'static str> {
        if self.deployments_completed_min.is_some() {
            Some("deployments_completed_min")
        } else if self.deployments_terminal {
            Some("deployments_terminal")
        } else {
            None
        }
    }
}

/// `[debug]`: deliberate failures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Debug {
    /// An invariant that fails at the first node step after this time.
    pub fail_invariant_after: Option<Duration>,
    /// The engine panics at the first step after this time.
    pub panic_after: Option<Duration>,
}

impl Checker<'_> {
    pub(super) fn expect(
        &self,
        raw: Option<&RawExpect>,
        faults: &[Fault],
        peers: &Peers,
        duration: Duration,
    ) -> Result<Expect, ScenarioError> {
        let Some(raw) = raw else {
            return Ok(Expect::default());
        };
        let fraction = raw
            .connected_fraction_min
            .map(|v| self.range("expect.connected_fraction_min", v, 0.0, 1.0, ""))
            .transpose()?;
        let degree = raw
            .degree_mean_min
            .map(|v| self.range("expect.degree_mean_min", v, 0.0, 1e9, ""))
            .transpose()?;
        let rtt = raw
            .rtt_neighbour_mean_ms_max
            .map(|v| self.range("expect.rtt_neighbour_mean_ms_max", v, 0.0, 1e9, "ms"))
            .transpose()?;
        let honest = raw
            .honest_ping_success_min
            .map(|v| self.range("expect.honest_ping_success_min", v, 0.0, 1.0, ""))
            .transpose()?;
        let filter_pass = raw
            .filter_pass_min
            .map(|v| self.range("expect.filter_pass_min", v, 0.0, 1.0, ""))
            .transpose()?;
        let low_reached = raw
            .low_watermark_reached_min
            .map(|v| self.range("expect.low_watermark_reached_min", v, 0.0, 1.0, ""))
            .transpose()?;
        let converged_within = raw
            .converged_within_s
            .map(|v| {
                self.range(
                    "expect.converged_within_s",
                    v,
                    0.0,
                    duration.as_secs_f64(),
                    "s",
                )
                .map(Duration::from_secs_f64)
            })
            .transpose()?;
        if raw.components_max == Some(0) {
            return Err(self.error(
                "expect.components_max",
                "`expect.components_max` must be at least 1".into(),
            ));
        }
        let liveness = match raw.liveness_s {
            None => None,
            Some(s) => {
                let phase_end = fault_phase_end(faults, peers);
                let room_s = duration.saturating_sub(phase_end).as_secs_f64();
                if !(s > 0.0 && s <= room_s) {
                    let msg = format!(
                        "`expect.liveness_s` must be more than 0 and fit between the end of the fault phase ({} s) and the end of the run ({} s), found {s}; lengthen `duration_s` or shorten the bound",
                        phase_end.as_secs_f64(),
                        duration.as_secs_f64()
                    );
                    return Err(self.error("expect.liveness_s", msg));
                }
                Some(Duration::from_secs_f64(s))
            }
        };
        Ok(Expect {
            connected_fraction_min: fraction,
            degree_mean_min: degree,
            degree_min_min: raw.degree_min_min.map(|v| v as usize),
            rtt_neighbour_mean_ms_max: rtt,
            honest_ping_success_min: honest,
            liveness,
            filter_pass_min: filter_pass,
            low_watermark_reached_min: low_reached,
            converged_within,
            trims_per_node_minute_max: raw.trims_per_node_minute_max,
            components_max: raw.components_max,
            deployments_completed_min: raw
                .deployments_completed_min
                .map(|v| self.range("expect.deployments_completed_min", v, 0.0, 1.0, ""))
                .transpose()?,
            deployments_terminal: raw.deployments_terminal.unwrap_or(false),
        })
    }

    pub(super) fn debug(&self, raw: Option<&RawDebug>) -> Result<Debug, ScenarioError> {
        let Some(raw) = raw else {
            return Ok(Debug::default());
        };
        let at = |k: &str, v: Option<f64>| {
            v.map(|s| {
                self.range(k, s, 0.0, DURATION_S_MAX, "s")
                    .map(Duration::from_secs_f64)
            })
            .transpose()
        };
        Ok(Debug {
            fail_invariant_after: at("debug.fail_invariant_after_s", raw.fail_invariant_after_s)?,
            panic_after: at("debug.panic_after_s", raw.panic_after_s)?,
        })
    }
}
