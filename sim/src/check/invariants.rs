//! The invariants every run checks.
//!
//! | name | when | what |
//! |---|---|---|
//! | `high-watermark` | every step | a node holds at most `high_watermark` connections that are not closing |
//! | `no-self` | every step | no node is connected to itself |
//! | `rtt-floor` | every `rtt` event | a measured RTT is at least the model's base RTT of the pair minus the jitter bound (peers with a clock skew fault are exempt) |
//! | `symmetry` | end of run | if node a holds a settled connection to b, b holds one to a |
//! | `usage-within-limits` | every resource-manager operation | no scope of the node's resource manager holds more than its limit: after each operation the scopes it touched (system, transient, the remote peer, the core protocol and service), at the end of the run every scope, with the core's own accounting check |
//! | `trim-storm` | every `trim` event | a node trims at most `expect.trims_per_node_minute_max` times in a simulated minute (unset: as often as its quiet period allows, 60 s / `trim_quiet_s` + 1) |
//! | `debug-fails` | every step | only with `[debug] fail_invariant_after_s`: fails after that time |

use std::collections::BTreeSet;
use std::time::Duration;

use flotilla_core::rcmgr::ResourceManager;
use flotilla_core::{Event, Node, PeerId};

use super::{Breach, Ctx, Invariant, LinkView};
use crate::company::CompanyStats;
use crate::scenario::{FaultKind, Scenario};

/// A node holds at most `high_watermark` connections that are not closing.
#[derive(Debug, Clone, Copy)]
pub struct PeersMax;

impl Invariant for PeersMax {
    fn name(&self) -> &'static str {
        "high-watermark"
    }

    fn check_node(&mut self, _ctx: &Ctx<'_>, node: usize, n: &Node) -> Result<(), Breach> {
        let (count, max) = (n.peers_count(), n.config().high_watermark);
        if count > max {
            return Err(Breach::at(
                node,
                format!("{count} open connections, high_watermark is {max}"),
            ));
        }
        Ok(())
    }
}

/// No node is connected to itself.
#[derive(Debug, Clone, Copy)]
pub struct NoSelfConnection;

impl Invariant for NoSelfConnection {
    fn name(&self) -> &'static str {
        "no-self"
    }

    fn check_node(&mut self, _ctx: &Ctx<'_>, node: usize, n: &Node) -> Result<(), Breach> {
        let me = n.peer_id();
        if n.is_connected(&me) {
            return Err(Breach::at(node, "connected to itself".into()));
        }
        Ok(())
    }
}

/// A measured RTT is never below the model's base RTT minus the jitter bound.
#[derive(Debug, Clone)]
pub struct RttFloor {
    jitter_us: u64,
    /// How much shorter than the model the engine may measure: the turmoil engine moves
    /// messages at tick boundaries, so a round trip can come out up to two ticks short.
    slack_us: u64,
    exempt: BTreeSet<usize>,
}

impl RttFloor {
    /// The floor for `scenario`: peers in a clock skew fault are exempt (a clock that jumps
    /// while a ping is out skews that one sample).
    pub fn new(scenario: &Scenario) -> RttFloor {
        let exempt = scenario
            .faults
            .iter()
            .filter_map(|f| match &f.kind {
                FaultKind::ClockSkew { nodes, .. } => Some(nodes.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        RttFloor {
            jitter_us: u64::try_from(scenario.latency.jitter.as_micros()).unwrap_or(u64::MAX),
            slack_us: 0,
            exempt,
        }
    }
}

impl RttFloor {
    /// Tolerates RTTs up to `slack` shorter than the floor (an engine's time resolution).
    pub fn with_slack(mut self, slack: Duration) -> RttFloor {
        self.slack_us = u64::try_from(slack.as_micros()).unwrap_or(u64::MAX);
        self
    }
}

impl Invariant for RttFloor {
    fn name(&self) -> &'static str {
        "rtt-floor"
    }

    fn check_event(&mut self, ctx: &Ctx<'_>, node: usize, event: &Event) -> Result<(), Breach> {
        let Event::Rtt { peer, rtt, .. } = event else {
            return Ok(());
        };
        let Some(other) = ctx.world.index_of(peer) else {
            return Ok(());
        };
        if self.exempt.contains(&node) || self.exempt.contains(&other) {
            return Ok(());
        }
        let base_us = ctx.world.rtt_us(node, other);
        let rtt_us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        // Two halvings of the base RTT may lose a microsecond.
        if rtt_us + self.jitter_us + self.slack_us + 1 < base_us {
            let slack = if self.slack_us > 0 {
                format!(" and the engine's resolution {} us", self.slack_us)
            } else {
                String::new()
            };
            return Err(Breach::at(
                node,
                format!(
                    "rtt to n{other} measured {rtt_us} us, below the model's base {base_us} us minus jitter {} us{slack}",
                    self.jitter_us
                ),
            ));
        }
        Ok(())
    }
}

/// Connections are symmetric once nothing is in flight between the two ends.
///
/// Checked at the end of the run, unless a fault settled so recently that a half-open
/// connection (a close lost in a partition) may not have been detected yet: ping failures
/// find one within `ping_interval * (ping_failures_max + 1) + ping_timeout`.
#[derive(Debug, Clone)]
pub struct Symmetry {
    /// The end of the fault phase plus the detection time, since the start.
    settled_after: Duration,
}

impl Symmetry {
    /// The check for `scenario`.
    pub fn new(scenario: &Scenario) -> Symmetry {
        let detect = [&scenario.node, &scenario.bootstrap_node]
            .iter()
            .map(|c| c.ping_interval * (c.ping_failures_max + 1) + c.ping_timeout)
            .max()
            .unwrap_or_default();
        let settled_after = if scenario.faults.is_empty() {
            Duration::ZERO
        } else {
            scenario.fault_phase_end() + detect
        };
        Symmetry { settled_after }
    }
}

impl Invariant for Symmetry {
    fn name(&self) -> &'static str {
        "symmetry"
    }

    fn check_end(
        &mut self,
        ctx: &Ctx<'_>,
        nodes: &[Option<Node>],
        links: &dyn LinkView,
    ) -> Result<(), Breach> {
        if ctx.elapsed < self.settled_after {
            return Ok(());
        }
        for (a, node) in nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            for c in node.connections().filter(|c| !c.closing) {
                let Some(b) = ctx.world.index_of(&c.peer) else {
                    continue;
                };
                let mirrored = nodes[b]
                    .as_ref()
                    .is_some_and(|other| other.is_connected(&node.peer_id()));
                if !mirrored && links.quiet(a, b) {
                    return Err(Breach::at(
                        a,
                        format!(
                            "connected to n{b}, which is not connected back and nothing is in flight"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `[debug] fail_invariant_after_s`: fails at the first step after `after`, to test the
/// path from a violation to exit code 129 and its replay.
#[derive(Debug, Clone, Copy)]
pub struct DebugFails {
    /// Since the start of the run.
    pub after: Duration,
}

impl Invariant for DebugFails {
    fn name(&self) -> &'static str {
        "debug-fails"
    }

    fn check_node(&mut self, ctx: &Ctx<'_>, node: usize, _n: &Node) -> Result<(), Breach> {
        if ctx.elapsed >= self.after {
            return Err(Breach::at(
                node,
                format!(
                    "deliberate violation requested by debug.fail_invariant_after_s = {}",
                    self.after.as_secs_f64()
                ),
            ));
        }
        Ok(())
    }
}

/// No node trims more often than `expect.trims_per_node_minute_max` in a simulated minute,
/// or, without it, than its quiet period allows.
#[derive(Debug, Clone)]
pub struct TrimStorm {
    max: Option<u32>,
    counts: CompanyStats,
}

impl TrimStorm {
    /// The check for `scenario`.
    pub fn new(scenario: &Scenario) -> Self {
        TrimStorm {
            max: scenario.expect.trims_per_node_minute_max,
            counts: CompanyStats::default(),
        }
    }
}

impl Invariant for TrimStorm {
    fn name(&self) -> &'static str {
        "trim-storm"
    }

    fn check_event(&mut self, ctx: &Ctx<'_>, node: usize, event: &Event) -> Result<(), Breach> {
        if !matches!(event, Event::Trimmed { .. }) {
            return Ok(());
        }
        let count = self.counts.trimmed(node, ctx.elapsed);
        let max = self.max.unwrap_or_else(|| {
            let quiet = ctx.world.peer(node).config.trim_quiet.as_secs_f64();
            // Trims at least `quiet` apart: at most 60 / quiet + 1 fit in a minute.
            (60.0 / quiet.max(1e-3)).floor() as u32 + 1
        });
        if count > max {
            return Err(Breach::at(
                node,
                format!("{count} trims within one minute, at most {max} allowed"),
            ));
        }
        Ok(())
    }
}

/// No scope of a node's resource manager ever holds more than its limit.
#[derive(Debug, Clone, Copy)]
pub struct UsageWithinLimits;

impl Invariant for UsageWithinLimits {
    fn name(&self) -> &'static str {
        "usage-within-limits"
    }

    fn check_rcmgr(
        &mut self,
        _ctx: &Ctx<'_>,
        node: usize,
        rm: &ResourceManager,
        peer: Option<&PeerId>,
        full: bool,
    ) -> Result<(), Breach> {
        if let Some(detail) = crate::account::over_limit(rm, peer) {
            return Err(Breach::at(node, detail));
        }
        if full {
            rm.check_invariants().map_err(|d| Breach::at(node, d))?;
        }
        Ok(())
    }
}
