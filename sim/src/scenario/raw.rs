//! The scenario file as written: serde structs that mirror the TOML tables one to one.
//!
//! Every struct denies unknown keys, and every key but `name`, `duration_s` and
//! `peers.count` is optional; defaults are applied in [`super::Scenario::parse`].

use std::collections::BTreeMap;

use serde::Deserialize;
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
    pub faults: Option<Vec<RawFault>>,
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
}

/// `[node]` (the node profile, overriding `flotilla_core::Config` defaults) and
/// `[bootstrap_node]` (overriding `[node]` for the bootstrap nodes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub peers_target: Option<u32>,
    pub peers_max: Option<u32>,
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
}

/// `[node.resources]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResources {
    pub cores: Option<u32>,
    pub memory_mb: Option<u64>,
    pub disk_gb: Option<u64>,
    pub gpus: Option<u32>,
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
    pub at_s: f64,
    pub until_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub regions_a: Option<Vec<String>>,
    pub regions_b: Option<Vec<String>>,
    pub nodes_a: Option<Vec<u64>>,
    pub nodes_b: Option<Vec<u64>>,
    pub one_way: Option<bool>,
    pub nodes: Option<Vec<u64>>,
    pub count: Option<u64>,
    pub restart_after_s: Option<f64>,
    pub probability: Option<f64>,
    pub offset_ms: Option<f64>,
}

/// `[expect]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub connected_fraction_min: Option<f64>,
    pub degree_mean_min: Option<f64>,
    pub degree_min_min: Option<u64>,
    pub rtt_neighbour_mean_ms_max: Option<f64>,
    pub liveness_s: Option<f64>,
}

/// `[debug]`: deliberate failures, to test the failure paths of the simulator itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDebug {
    pub fail_invariant_after_s: Option<f64>,
    pub panic_after_s: Option<f64>,
}
