//! Peers of their own kind, as the simulator sees them.
//!
//! A node judges its peers with its filter by what it has measured. The simulator knows
//! more: the latency model's base RTT of every pair. It judges each node's peers with the
//! node's own filter, fed the model's RTT instead of a measurement (an *oracle* verdict), so
//! a peer not measured yet is judged all the same and a lucky jitter sample does not count.
//!
//! - [`CompanyStats`]: trims counted while the run goes on, and when the network first
//!   converged: every running node holds at least its low watermark, unless it is short of
//!   candidates (fewer running peers pass its filter than its low watermark) or it fell
//!   below only moments ago (a peer let it go less than three of its maintenance intervals
//!   ago: peers rotate all the time, and a node repairs the gap at its next maintenance),
//!   and at least the expected share of every node's peers pass its filter.
//! - [`CompanySummary`]: the figures at the end of a run, in the summary.

use std::time::Duration;

use flotilla_core::filter::{Candidate, LocalView, PeerFilter, Verdict};
use flotilla_core::{Node, Timestamp};
use serde::{Deserialize, Serialize};

use crate::check::liveness::Disjoint;
use crate::world::World;

/// How often the fleet engine looks for convergence.
pub const CONVERGENCE_PROBE: Duration = Duration::from_secs(10);
/// The share of a node's peers that must pass its filter for convergence, unless
/// `expect.filter_pass_min` says otherwise.
pub const FILTER_PASS_DEFAULT: f64 = 0.9;

/// The verdict of node `i`'s filter on node `j`, with the model's base RTT of the pair.
pub fn oracle(world: &World, a: &Node, i: usize, b: &Node, j: usize, now: Timestamp) -> Verdict {
    let config = a.config();
    let me = LocalView {
        peer: a.peer_id(),
        resources: &config.resources,
        region: config.region.as_deref(),
    };
    let candidate = Candidate {
        peer: b.peer_id(),
        advert: Some(&b.advert().advert),
        rtt: Some(Duration::from_micros(world.rtt_us(i, j))),
        rtt_rank: None,
        now,
    };
    config.filter.check(&me, &candidate)
}

/// Of node `i`'s open connections: how many there are, how many of those the node had the
/// time to judge (see [`on_probation`]) and how many of these pass its filter by the oracle.
fn judged(
    world: &World,
    nodes: &[Option<&Node>],
    i: usize,
    now: Timestamp,
) -> (usize, usize, usize) {
    let Some(a) = nodes[i] else { return (0, 0, 0) };
    let (mut all, mut peers, mut pass) = (0, 0, 0);
    for c in a.connections().filter(|c| !c.closing) {
        all += 1;
        if on_probation(a, c.since, c.hello, now) {
            continue;
        }
        peers += 1;
        if let Some(j) = world.index_of(&c.peer)
            && let Some(b) = nodes[j]
            && oracle(world, a, i, b, j, now).passes()
        {
            pass += 1;
        }
    }
    (all, peers, pass)
}

/// A connection is on probation until its hello has arrived and one ping interval has
/// passed since it came up: by then the node has its advert and an RTT sample and has
/// judged it (dials to candidates of unknown RTT are probes, let go once measured).
/// Probation peers count for the watermarks but not for the filter shares.
pub fn on_probation(node: &Node, since: Timestamp, hello: bool, now: Timestamp) -> bool {
    !hello || now.saturating_since(since) < node.config().ping_interval
}

/// True if fewer running nodes pass node `i`'s filter than its low watermark.
fn short_of_candidates(world: &World, nodes: &[Option<&Node>], i: usize, now: Timestamp) -> bool {
    let Some(a) = nodes[i] else { return false };
    let want = a.config().low_watermark;
    let mut found = 0;
    for (j, b) in nodes.iter().enumerate() {
        if j == i {
            continue;
        }
        if let Some(b) = b
            && oracle(world, a, i, b, j, now).passes()
        {
            found += 1;
            if found >= want {
                return false;
            }
        }
    }
    true
}

/// True if node `i` fell below its low watermark less than three maintenance intervals
/// before `now` (by `stats`; without observations, never).
fn just_fell(stats: &CompanyStats, n: &Node, i: usize, now: Timestamp) -> bool {
    let grace = n.config().maintain_interval * 3;
    stats
        .below_since
        .get(i)
        .copied()
        .flatten()
        .is_some_and(|since| now.saturating_since(since) < grace)
}

/// Whether the running nodes have converged (see the module documentation), or why not.
pub fn converged(
    world: &World,
    nodes: &[Option<&Node>],
    now: Timestamp,
    pass_min: f64,
    stats: &CompanyStats,
) -> Result<(), String> {
    for (i, n) in nodes.iter().enumerate() {
        let Some(n) = n else { continue };
        let (all, peers, pass) = judged(world, nodes, i, now);
        if all < n.config().low_watermark
            && !just_fell(stats, n, i, now)
            && !short_of_candidates(world, nodes, i, now)
        {
            return Err(format!(
                "n{i} holds {all} peers, below its low watermark {}",
                n.config().low_watermark
            ));
        }
        if peers > 0 && (pass as f64) < pass_min * peers as f64 {
            return Err(format!(
                "only {pass} of n{i}'s {peers} peers pass its filter"
            ));
        }
    }
    Ok(())
}

/// Connected components among `nodes` that run and hold at least one open connection (a
/// node that just started or restarted and has not connected yet is not counted).
pub fn components(world: &World, nodes: &[Option<&Node>]) -> usize {
    let mut sets = Disjoint::new(nodes.len());
    let mut joined = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let Some(n) = n else { continue };
        for c in n.connections().filter(|c| !c.closing) {
            if let Some(j) = world.index_of(&c.peer)
                && nodes[j].is_some()
            {
                joined[i] = true;
                joined[j] = true;
                sets.union(i, j);
            }
        }
    }
    sets.roots((0..nodes.len()).filter(|i| joined[*i])).len()
}

/// Trims and convergence, gathered while a run goes on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompanyStats {
    /// Trims of every node.
    pub trims: u64,
    /// Most trims of one node within one simulated minute (since the start of the run).
    pub trims_per_node_minute_max: u32,
    /// When the network first converged, since the start of the run; `None` if it never
    /// did or the engine does not probe.
    pub converged_at: Option<Duration>,
    /// Most connected components seen by a probe from the last node's start on (see
    /// [`components`]).
    pub components_max: usize,
    /// Per node: the minute of its last trim and the trims in it.
    minutes: Vec<(u64, u32)>,
    /// Per node: since when it holds fewer peers than its low watermark, if it does.
    below_since: Vec<Option<Timestamp>>,
}

impl CompanyStats {
    /// Notes how many peers node `node` holds at `now` (after each of its steps).
    pub fn observe(&mut self, node: usize, n: &Node, now: Timestamp) {
        if self.below_since.len() <= node {
            self.below_since.resize(node + 1, None);
        }
        let slot = &mut self.below_since[node];
        if n.peers_count() >= n.config().low_watermark {
            *slot = None;
        } else if slot.is_none() {
            *slot = Some(now);
        }
    }

    /// Node `node` stopped (it starts again below its low watermark).
    pub fn stopped(&mut self, node: usize) {
        if let Some(slot) = self.below_since.get_mut(node) {
            *slot = None;
        }
    }

    /// Counts a trim of node `node` at `elapsed`; returns the node's trims in that minute.
    pub fn trimmed(&mut self, node: usize, elapsed: Duration) -> u32 {
        if self.minutes.len() <= node {
            self.minutes.resize(node + 1, (u64::MAX, 0));
        }
        let minute = elapsed.as_secs() / 60;
        let slot = &mut self.minutes[node];
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += 1;
        self.trims += 1;
        self.trims_per_node_minute_max = self.trims_per_node_minute_max.max(slot.1);
        slot.1
    }
}

/// The company figures of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompanySummary {
    /// Share of all connections (counted from both ends, those on probation left out) that
    /// pass the holder's filter by the oracle.
    pub filter_pass: f64,
    /// Connections left out of the filter shares because they are on probation (see
    /// [`on_probation`]).
    pub on_probation: u64,
    /// The smallest share of a node's peers passing its filter (nodes with peers).
    pub filter_pass_min: f64,
    /// Share of nodes with peers of which at least 90% pass the node's filter.
    pub nodes_filter_satisfied: f64,
    /// Nodes with fewer candidates passing their filter than their low watermark.
    pub nodes_short_of_candidates: usize,
    /// Share of the other nodes that hold at least their low watermark (or fell below it
    /// moments ago, see the module documentation).
    pub low_watermark_reached: f64,
    /// Nodes below their low watermark at the end, short of candidates or not.
    pub nodes_below_low_watermark: usize,
    /// Connected components of the overlay at the end (see [`components`]).
    pub components: usize,
    /// Most components seen by a probe during the run (fleet engine; 0 elsewhere).
    pub components_max: usize,
    /// Trims of every node over the run.
    pub trims: u64,
    /// Most trims of one node in one simulated minute.
    pub trims_per_node_minute_max: u32,
    /// When the last node started, seconds since the start: convergence is looked for
    /// from then on.
    pub last_start_s: f64,
    /// When the network first converged, seconds since the start; absent if it never did
    /// (or the engine does not look).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_at_s: Option<f64>,
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl CompanySummary {
    /// The figures of `nodes` (every node of `world`, as at the end) and `stats`.
    pub fn new(world: &World, nodes: &[Node], now: Timestamp, stats: &CompanyStats) -> Self {
        let view: Vec<Option<&Node>> = nodes.iter().map(Some).collect();
        let (mut all, mut all_pass, mut with_peers, mut satisfied) = (0u64, 0u64, 0u64, 0u64);
        let mut probation = 0u64;
        let mut pass_min: f64 = 1.0;
        let (mut short, mut reached, mut others, mut below) = (0usize, 0u64, 0u64, 0usize);
        for (i, n) in nodes.iter().enumerate() {
            let (held, peers, pass) = judged(world, &view, i, now);
            probation += (held - peers) as u64;
            all += peers as u64;
            all_pass += pass as u64;
            if peers > 0 {
                with_peers += 1;
                let share = pass as f64 / peers as f64;
                pass_min = pass_min.min(share);
                satisfied += u64::from(share >= FILTER_PASS_DEFAULT);
            }
            let low = n.config().low_watermark;
            below += usize::from(held < low);
            if held < low && short_of_candidates(world, &view, i, now) {
                short += 1;
            } else {
                others += 1;
                reached += u64::from(held >= low || just_fell(stats, n, i, now));
            }
        }
        let share = |a: u64, b: u64| {
            if b == 0 {
                1.0
            } else {
                round(a as f64 / b as f64, 6)
            }
        };
        CompanySummary {
            filter_pass: share(all_pass, all),
            on_probation: probation,
            filter_pass_min: round(if with_peers == 0 { 1.0 } else { pass_min }, 6),
            nodes_filter_satisfied: share(satisfied, with_peers),
            nodes_short_of_candidates: short,
            low_watermark_reached: share(reached, others),
            nodes_below_low_watermark: below,
            components: components(world, &view),
            components_max: stats.components_max,
            last_start_s: round(
                world
                    .peers()
                    .iter()
                    .map(|p| p.start_offset)
                    .max()
                    .unwrap_or_default()
                    .as_secs_f64(),
                6,
            ),
            trims: stats.trims,
            trims_per_node_minute_max: stats.trims_per_node_minute_max,
            converged_at_s: stats.converged_at.map(|d| round(d.as_secs_f64(), 6)),
        }
    }
}
