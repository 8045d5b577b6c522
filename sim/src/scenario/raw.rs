//! The scenario file as written: serde structs that mirror the TOML tables one to one.
//!
//! Every struct denies unknown keys, and every key but `name`, `duration_s` and
//! `peers.count` is optional; defaults are applied in [`super::Scenario::parse`].

use std::collections::BTreeMap;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::engine::EngineKind;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: String,
    pub seed: Option<u64>,
    pub duration_s: f64,
    pub engine: Option<EngineKind>,
    pub peers: RawPeers,
    pub regions: Option<BTreeMap<Spanned<String>, f64>>,
    pub latency: Option<RawLatency>,
    pub node: Option<RawNode>,
    pub bootstrap_node: Option<RawNode>,
    pub classes: Option<Vec<RawClass>>,
    pub faults: Option<Vec<RawFault>>,
    pub workload: Option<Vec<RawWorkload>>,
    pub jobs: Option<RawJobs>,
    pub expect: Option<RawExpect>,
    pub debug: Option<RawDebug>,
}

/// `[peers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeers {
    pub count: u64,
    pub bootstrap: Option<u64>,
    pub start_spread_s: Option<f64>,
}

/// `[latency]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLatency {
    pub jitter_ms: Option<f64>,
    pub last_mile_ms: Option<Vec<f64>>,
    pub loss: Option<f64>,
}

/// `[node]` (the node profile, overriding `flotilla_core::Config` defaults) and
/// `[bootstrap_node]` (overriding `[node]` for the bootstrap nodes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub low_watermark: Option<u32>,
    pub high_watermark: Option<u32>,
    pub peers_refused_max: Option<u32>,
    pub refuse_grace_s: Option<f64>,
    pub dials_concurrent_max: Option<u32>,
    pub peers_known_max: Option<u32>,
    pub maintain_interval_s: Option<f64>,
    pub ping_interval_s: Option<f64>,
    pub ping_timeout_s: Option<f64>,
    pub ping_failures_max: Option<u32>,
    pub exchange_interval_s: Option<f64>,
    pub explore_interval_s: Option<f64>,
    pub exchange_peers_max: Option<u16>,
    pub exchange_hops_max: Option<u8>,
    pub advert_ttl_s: Option<f64>,
    pub advert_refresh_s: Option<f64>,
    pub dial_backoff_base_s: Option<f64>,
    pub dial_backoff_max_s: Option<f64>,
    pub dial_failures_max: Option<u32>,
    pub resources: Option<RawResources>,
    pub profile: Option<flotilla_core::Profile>,
    pub conn_grace_s: Option<f64>,
    pub trim_quiet_s: Option<f64>,
    pub pressure_per_mille: Option<u16>,
    pub filter: Option<flotilla_core::filter::FilterSpec>,
    pub fd_limit: Option<u64>,
    pub limits: Option<flotilla_core::rcmgr::LimitsConfig>,
}

/// `[node.resources]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResources {
    pub cores: Option<u32>,
    pub memory_mb: Option<u64>,
    pub disk_gb: Option<u64>,
    pub gpus: Option<u32>,
    pub executors: Option<Vec<String>>,
}

/// The kinds of `[[faults]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawFaultKind {
    Partition,
    Crash,
    Loss,
    ClockSkew,
}

/// One `[[faults]]` entry; which keys apply depends on `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub kind: RawFaultKind,
    pub at_s: RawNum,
    pub until_s: Option<RawNum>,
    pub duration_s: Option<RawNum>,
    pub regions_a: Option<Vec<String>>,
    pub regions_b: Option<Vec<String>>,
    pub nodes_a: Option<Vec<u64>>,
    pub nodes_b: Option<Vec<u64>>,
    pub fraction: Option<RawNum>,
    pub one_way: Option<bool>,
    pub nodes: Option<Vec<u64>>,
    pub count: Option<RawNum>,
    pub restart_after_s: Option<RawNum>,
    pub probability: Option<RawNum>,
    pub offset_ms: Option<RawNum>,
}

/// `[expect]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub connected_fraction_min: Option<f64>,
    pub degree_mean_min: Option<f64>,
    pub degree_min_min: Option<u64>,
    pub rtt_neighbour_mean_ms_max: Option<f64>,
    pub honest_ping_success_min: Option<f64>,
    pub liveness_s: Option<f64>,
    pub filter_pass_min: Option<f64>,
    pub low_watermark_reached_min: Option<f64>,
    pub converged_within_s: Option<f64>,
    pub trims_per_node_minute_max: Option<u32>,
    pub components_max: Option<u64>,
    pub deployments_completed_min: Option<f64>,
    pub deployments_terminal: Option<bool>,
}

/// `[debug]`: deliberate failures, to test the failure paths of the simulator itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDebug {
    pub fail_invariant_after_s: Option<f64>,
    pub panic_after_s: Option<f64>,
}

/// One `[[classes]]` entry: a kind of node with its share, regions, profile and churn.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClass {
    pub name: String,
    pub weight: f64,
    pub regions: Option<BTreeMap<Spanned<String>, f64>>,
    pub node: Option<RawNode>,
    pub uptime_s: Option<RawDist>,
    pub downtime_s: Option<RawDist>,
    pub bandwidth_kbps: Option<f64>,
}

/// A number that may be drawn from the seed: `5` or `[min, max]`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawNum {
    /// Written as one number.
    Fixed(f64),
    /// Written as an array (checked to be `[min, max]` later).
    Range(Vec<f64>),
}

impl RawNum {
    /// The smallest and the largest value it may take, unchecked.
    pub fn bounds(&self) -> Option<(f64, f64)> {
        match self {
            RawNum::Fixed(v) => Some((*v, *v)),
            RawNum::Range(v) => match v[..] {
                [lo, hi] => Some((lo, hi)),
                _ => None,
            },
        }
    }
}

/// A distribution of durations: a number, `[min, max]` or a table with `kind`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawDist {
    Fixed(f64),
    Uniform(Vec<f64>),
    Table(RawDistTable),
}

/// The table form of a distribution, e.g. `{ kind = "exponential", mean = 600 }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDistTable {
    pub kind: RawDistKind,
    pub mean: Option<f64>,
    pub scale: Option<f64>,
    pub min: Option<f64>,
    pub shape: Option<f64>,
}

/// The kinds of the table form of a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawDistKind {
    Exponential,
    Weibull,
    Pareto,
}

/// Collects an array of numbers.
fn numbers<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<f64>, A::Error> {
    let mut out = Vec::new();
    while let Some(v) = seq.next_element::<f64>()? {
        out.push(v);
    }
    Ok(out)
}

struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = RawNum;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number or [min, max]")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNum, E> {
        Ok(RawNum::Fixed(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNum, E> {
        Ok(RawNum::Fixed(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNum, E> {
        Ok(RawNum::Fixed(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawNum, A::Error> {
        numbers(seq).map(RawNum::Range)
    }
}

impl<'de> Deserialize<'de> for RawNum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawNum, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

struct DistVisitor;

impl<'de> Visitor<'de> for DistVisitor {
    type Value = RawDist;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number, [min, max] or a table with `kind`")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDist, E> {
        Ok(RawDist::Fixed(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDist, E> {
        Ok(RawDist::Fixed(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDist, E> {
        Ok(RawDist::Fixed(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawDist, A::Error> {
        numbers(seq).map(RawDist::Uniform)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDist, A::Error> {
        RawDistTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawDist::Table)
    }
}

impl<'de> Deserialize<'de> for RawDist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawDist, D::Error> {
        d.deserialize_any(DistVisitor)
    }
}

/// The kinds of `[[workload]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawWorkloadKind {
    Flood,
    Connect,
    Streams,
}

/// What a flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawFloodMessage {
    Peers,
    Ping,
}

/// One `[[workload]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    pub kind: RawWorkloadKind,
    pub at_s: f64,
    pub until_s: Option<f64>,
    pub rate_per_s: f64,
    pub nodes: Option<Vec<u64>>,
    pub count: Option<u64>,
    pub class: Option<String>,
    pub message: Option<RawFloodMessage>,
    pub targets: Option<Vec<u64>>,
    pub targets_count: Option<u64>,
    pub targets_class: Option<String>,
    pub hold_s: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub handshake: Option<bool>,
}

/// `[jobs]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJobs {
    pub provider_classes: Option<Vec<String>>,
    pub providers_count: Option<u64>,
    pub cores: u32,
    pub memory_mb: u64,
    pub disk_gb: Option<u64>,
    pub price: Option<RawNum>,
    pub service_providers: u64,
    pub start_delay_s: Option<Vec<f64>>,
    pub run_time_s: Option<Vec<f64>>,
    pub failure_probability: Option<f64>,
    pub log_lines: Option<u32>,
    pub deploy_at_s: f64,
    pub deploy_until_s: Option<f64>,
    pub deploy_every_s: f64,
    #[serde(default)]
    pub templates: Vec<RawTemplate>,
}

/// One `[[jobs.templates]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTemplate {
    pub cores: f64,
    pub memory_mb: u64,
    pub duration_s: u64,
    pub workers: Option<u32>,
}
