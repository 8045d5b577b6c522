//! The summary of a run: what the network looks like at the end, in numbers.
//!
//! A [`Summary`] holds only simulated facts (no wall-clock time), so the same scenario,
//! seed and engine give the same JSON, byte for byte. Means are rounded to 1 µs (ms values)
//! or 1e-6 (fractions) to keep the text stable.

use std::fmt;

use flotilla_core::SeedTree;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::account::RcmgrSummary;
use crate::company::CompanySummary;
use crate::engine::{EngineKind, RunResult};
use crate::jobstats::JobsSummary;
use crate::world::{STREAM_NETWORK, World};

/// Label under the root seed for drawing the random pairs of the RTT baseline.
const STREAM_SUMMARY: u64 = STREAM_NETWORK + 1;
/// Pairs measured at most for the random-pair RTT baseline.
const RANDOM_PAIRS_MAX: usize = 50_000;

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Engine that ran it.
    pub engine: EngineKind,
    /// Seed of the run.
    pub seed: u64,
    /// Number of peers.
    pub peers: usize,
    /// Simulated duration, seconds.
    pub duration_s: f64,
    /// Messages the nodes handed to the network.
    pub messages_sent: u64,
    /// Messages that reached a node.
    pub messages_delivered: u64,
    /// Core events in the trace.
    pub trace_events: u64,
    /// FNV-1a digest of the trace bytes, hex.
    pub trace_digest: String,
    /// Mean number of connections per node at the end (refused connections about to close
    /// are not counted).
    pub degree_mean: f64,
    /// Fewest connections of any node.
    pub degree_min: usize,
    /// Most connections of any node.
    pub degree_max: usize,
    /// Share of nodes with at least one connection.
    pub connected_fraction: f64,
    /// Connections (counted from both ends) whose RTT the node has measured.
    pub rtt_samples: u64,
    /// Mean of the nodes' smoothed (EWMA) RTT to their connected neighbours, ms.
    pub rtt_neighbour_mean_ms: f64,
    /// Mean base RTT of the latency model over the same neighbour pairs, ms.
    pub rtt_neighbour_model_mean_ms: f64,
    /// Mean base RTT of the latency model between random pairs of peers, ms: the
    /// baseline that neighbour choice by latency should beat.
    pub rtt_random_mean_ms: f64,
    /// Per-class figures, in `[[classes]]` order; absent without classes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassSummary>,
    /// The resource managers' refusals and the honest peers' ping success; present when
    /// the scenario sets limits, floods with connections or streams, expects a ping success
    /// rate, or something was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcmgr: Option<RcmgrSummary>,
    /// Watermarks and filters: how many peers pass their filters by the latency model,
    /// trims, components and convergence.
    pub company: CompanySummary,
    /// What became of the deployments (`[jobs]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobsSummary>,
}

/// What the peers of one `[[classes]]` entry look like at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSummary {
    /// The class's name.
    pub class: String,
    /// Its peers.
    pub peers: usize,
    /// Mean connections per peer of the class at the end (a peer that is down has none).
    pub degree_mean: f64,
    /// Share of its peers with at least one connection.
    pub connected_fraction: f64,
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

fn mean(sum: f64, count: u64) -> f64 {
    if count == 0 { 0.0 } else { sum / count as f64 }
}

/// One node's neighbourhood at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Neighbourhood {
    /// Connections that count (refused connections about to close left out).
    pub degree: usize,
    /// For each neighbour with an RTT sample: the measured smoothed RTT and the model's
    /// base RTT of the pair, microseconds.
    pub rtts_us: Vec<(u64, u64)>,
}

/// The neighbourhood of every node of `result`, in node order.
pub(crate) fn neighbourhoods(world: &World, result: &RunResult) -> Vec<Neighbourhood> {
    let mut out = Vec::with_capacity(result.nodes.len());
    for (i, node) in result.nodes.iter().enumerate() {
        let mut hood = Neighbourhood {
            degree: 0,
            rtts_us: Vec::new(),
        };
        for c in node.connections().filter(|c| !c.closing) {
            hood.degree += 1;
            let rtt = node
                .peer_table()
                .get(&c.peer)
                .and_then(|e| e.rtt.as_deref().copied());
            if let (Some(rtt), Some(j)) = (rtt, world.index_of(&c.peer)) {
                hood.rtts_us.push((rtt.ewma_us, world.rtt_us(i, j)));
            }
        }
        out.push(hood);
    }
    out
}

impl Summary {
    /// Summarises `result`, a run of `world` on `engine`.
    pub fn from_run(world: &World, engine: EngineKind, result: &RunResult) -> Summary {
        let n = result.nodes.len();
        let (mut degree_sum, mut degree_min, mut degree_max, mut connected) =
            (0u64, usize::MAX, 0, 0u64);
        let (mut samples, mut measured_us, mut model_us) = (0u64, 0f64, 0f64);
        // Per class: peers, degree sum, connected peers.
        let mut per_class = vec![(0u64, 0u64, 0u64); world.class_names().len()];
        for (i, hood) in neighbourhoods(world, result).into_iter().enumerate() {
            if let Some(c) = world.peer(i).class {
                let e = &mut per_class[c];
                e.0 += 1;
                e.1 += hood.degree as u64;
                e.2 += u64::from(hood.degree > 0);
            }
            for (measured, model) in hood.rtts_us {
                samples += 1;
                measured_us += measured as f64;
                model_us += model as f64;
            }
            degree_sum += hood.degree as u64;
            degree_min = degree_min.min(hood.degree);
            degree_max = degree_max.max(hood.degree);
            connected += u64::from(hood.degree > 0);
        }
        Summary {
            scenario: world.name().to_string(),
            engine,
            seed: world.seed(),
            peers: n,
            duration_s: round(world.duration().as_secs_f64(), 6),
            messages_sent: result.messages_sent,
            messages_delivered: result.messages_delivered,
            trace_events: result.trace.events(),
            trace_digest: format!("{:016x}", result.trace.digest()),
            degree_mean: round(mean(degree_sum as f64, n as u64), 6),
            degree_min: if n == 0 { 0 } else { degree_min },
            degree_max,
            connected_fraction: round(mean(connected as f64, n as u64), 6),
            rtt_samples: samples,
            rtt_neighbour_mean_ms: round(mean(measured_us, samples) / 1000.0, 3),
            rtt_neighbour_model_mean_ms: round(mean(model_us, samples) / 1000.0, 3),
            rtt_random_mean_ms: round(random_pair_rtt_us(world) / 1000.0, 3),
            classes: world
                .class_names()
                .into_iter()
                .zip(per_class)
                .map(|(name, (peers, degrees, connected))| ClassSummary {
                    class: name.to_string(),
                    peers: peers as usize,
                    degree_mean: round(mean(degrees as f64, peers), 6),
                    connected_fraction: round(mean(connected as f64, peers), 6),
                })
                .collect(),
            rcmgr: (result.rcmgr.reported || !result.rcmgr.refused.is_empty())
                .then(|| result.rcmgr.summary()),
            company: CompanySummary::new(
                world,
                &result.nodes,
                World::epoch() + world.duration(),
                &result.company,
            ),
            jobs: result.jobs.clone(),
        }
    }

    /// The summary as pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        // A struct of numbers and strings always serializes.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Mean base RTT over every pair of peers, or over a seeded sample of pairs if there are
/// more than [`RANDOM_PAIRS_MAX`].
fn random_pair_rtt_us(world: &World) -> f64 {
    let n = world.len();
    let pairs = n * n.saturating_sub(1) / 2;
    if n < 2 {
        return 0.0;
    }
    let mut sum = 0f64;
    if pairs <= RANDOM_PAIRS_MAX {
        for a in 0..n {
            for b in a + 1..n {
                sum += world.rtt_us(a, b) as f64;
            }
        }
        return sum / pairs as f64;
    }
    let mut rng = SeedTree::new(world.seed()).child(STREAM_SUMMARY).rng();
    for _ in 0..RANDOM_PAIRS_MAX {
        let a = rng.random_range(0..n);
        let b = (a + rng.random_range(1..n)) % n;
        sum += world.rtt_us(a, b) as f64;
    }
    sum / RANDOM_PAIRS_MAX as f64
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario   {} ({} engine, seed {})",
            self.scenario, self.engine, self.seed
        )?;
        writeln!(
            f,
            "peers      {} over {} s simulated",
            self.peers, self.duration_s
        )?;
        writeln!(
            f,
            "messages   {} sent, {} delivered",
            self.messages_sent, self.messages_delivered
        )?;
        writeln!(
            f,
            "trace      {} events, digest {}",
            self.trace_events, self.trace_digest
        )?;
        writeln!(
            f,
            "degree     mean {:.2}, min {}, max {}; {:.1}% of nodes connected",
            self.degree_mean,
            self.degree_min,
            self.degree_max,
            self.connected_fraction * 100.0
        )?;
        for c in &self.classes {
            writeln!(
                f,
                "class      {}: {} peers, degree mean {:.2}; {:.1}% connected",
                c.class,
                c.peers,
                c.degree_mean,
                c.connected_fraction * 100.0
            )?;
        }
        writeln!(
            f,
            "rtt        neighbours {:.3} ms measured, {:.3} ms in the model ({} samples); random pairs {:.3} ms",
            self.rtt_neighbour_mean_ms,
            self.rtt_neighbour_model_mean_ms,
            self.rtt_samples,
            self.rtt_random_mean_ms
        )?;
        let c = &self.company;
        let converged = c.converged_at_s.map_or("not converged".to_string(), |s| {
            format!("converged at {s:.0} s")
        });
        write!(
            f,
            "company    filter passed by {:.1}% of links (min per node {:.1}%), {:.1}% of nodes at their low watermark ({} short of candidates), {} components; {} trims (max {} per node-minute); {converged}",
            c.filter_pass * 100.0,
            c.filter_pass_min * 100.0,
            c.low_watermark_reached * 100.0,
            c.nodes_short_of_candidates,
            c.components,
            c.trims,
            c.trims_per_node_minute_max
        )?;
        if let Some(j) = &self.jobs {
            let states: Vec<String> = j.by_state.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let reasons: Vec<String> = j
                .failed_by_reason
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            write!(
                f,
                "\njobs       {} deployments asked ({} refused at the call, {} lost with their service provider): {}; {:.1}% completed\n\
                 jobs       failed by reason: {}\n\
                 jobs       {} reached running, deploy to running median {:.3} s, p95 {:.3} s\n\
                 jobs       {} bids sent, {} allocations accepted, {} commits refused, {} log lines",
                j.deployments_asked,
                j.deploy_errors,
                j.deployments_lost,
                states.join(", "),
                j.completed_share * 100.0,
                if reasons.is_empty() {
                    "none".to_string()
                } else {
                    reasons.join(", ")
                },
                j.running_reached,
                j.to_running_median_s,
                j.to_running_p95_s,
                j.bids_sent,
                j.allocations_accepted,
                j.commits_refused,
                j.log_lines
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine;
    use crate::scenario::Scenario;

    const TEXT: &str = "name = \"s\"\nseed = 4\nduration_s = 40\n[peers]\ncount = 12\n[bootstrap_node]\nhigh_watermark = 64\n";

    #[test]
    fn summaries_are_deterministic_and_round_trip() {
        let scenario = Scenario::parse(TEXT, "s.toml").unwrap();
        let world = engine::world(&scenario, 4);
        let a = engine::run(&scenario, 4, EngineKind::Fleet).unwrap();
        let b = engine::run(&scenario, 4, EngineKind::Fleet).unwrap();
        let (sa, sb) = (
            Summary::from_run(&world, EngineKind::Fleet, &a),
            Summary::from_run(&world, EngineKind::Fleet, &b),
        );
        assert_eq!(sa.to_json(), sb.to_json());
        assert_eq!(serde_json::from_str::<Summary>(&sa.to_json()).unwrap(), sa);
        assert_eq!((sa.scenario.as_str(), sa.seed, sa.peers), ("s", 4, 12));
        assert_eq!(sa.trace_events, a.trace.events());
        assert_eq!(sa.trace_digest, format!("{:016x}", a.trace.digest()));
        assert!(sa.messages_delivered <= sa.messages_sent);
        assert!(sa.degree_min as f64 <= sa.degree_mean && sa.degree_mean <= sa.degree_max as f64);
        assert!(sa.to_json().contains("\"engine\": \"fleet\""));
        let shown = sa.to_string();
        assert!(
            shown.starts_with("scenario   s (fleet engine, seed 4)\n"),
            "{shown}"
        );
    }

    #[test]
    fn random_pairs_cover_all_pairs_of_a_small_world() {
        let scenario = Scenario::parse(TEXT, "s.toml").unwrap();
        let world = engine::world(&scenario, 4);
        let mut sum = 0;
        for a in 0..12 {
            for b in a + 1..12 {
                sum += world.rtt_us(a, b);
            }
        }
        assert_eq!(random_pair_rtt_us(&world), sum as f64 / 66.0);
    }
}
