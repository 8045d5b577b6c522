//! The resolved scenario: every value a run used, as a scenario file.
//!
//! [`to_toml`] writes a checked [`Scenario`] back in the file format of
//! `scenarios/README.md`, with every default filled in and the run's own seed and engine
//! (which the command line may have overridden), so the file alone reproduces the run and
//! [`Scenario::parse`] reads it back to the same values. The text depends only on the
//! values: keys in a fixed order, regions by name.
//!
//! Some things are written in normalised form: region weights are the shares the run drew
//! from (they sum to 1); periods and delays are decimal seconds and milliseconds of the
//! whole nanoseconds the run used; a fault's `duration_s` is written as its `until_s`.
//! Fault options written as `[min, max]` and a partition's `fraction` are written as the
//! values the run's seed drew ([`Scenario::at_seed`]), so the file shows what ran; a
//! class's `[classes.node]` is written whole (every key of its profile).

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_core::Config;
use serde::Serialize;

use super::ReportError;
use crate::data::RegionData;
use crate::engine::EngineKind;
use crate::scenario::{self, Dist, FaultKind, Scenario, Side};

/// The first lines of every resolved scenario file.
const HEADER: &str = "# The resolved scenario of a run: every value after defaults and command-line\n\
                      # overrides. `flotilla-sim run` on this file repeats the run.\n\n";

/// The whole file, in the order the format documents.
#[derive(Debug, Serialize)]
struct File<'a> {
    name: &'a str,
    seed: u64,
    duration_s: f64,
    engine: EngineKind,
    peers: Peers,
    regions: BTreeMap<&'a str, f64>,
    latency: Latency,
    node: Node,
    bootstrap_node: Node,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    classes: Vec<Class<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    faults: Vec<Fault<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    workload: Vec<Workload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jobs: Option<Jobs<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect: Option<Expect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    debug: Option<Debug>,
}

/// One `[[faults]]` entry: the keys of its kind only.
#[derive(Debug, Default, Serialize)]
struct Fault<'a> {
    kind: &'static str,
    at_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    until_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regions_a: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes_a: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regions_b: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes_b: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    one_way: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_after_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probability: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset_ms: Option<f64>,
}

/// One `[[classes]]` entry.
#[derive(Debug, Serialize)]
struct Class<'a> {
    name: &'a str,
    weight: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bandwidth_kbps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uptime_s: Option<DistOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    downtime_s: Option<DistOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regions: Option<BTreeMap<&'a str, f64>>,
    node: Node,
}

/// A distribution in the form the file writes it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum DistOut {
    Fixed(f64),
    Uniform([f64; 2]),
    Table {
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        mean: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        scale: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        shape: Option<f64>,
    },
}

impl DistOut {
    fn of(d: &Dist) -> DistOut {
        let table = |kind, mean, scale, min, shape| DistOut::Table {
            kind,
            mean,
            scale,
            min,
            shape,
        };
        match *d {
            Dist::Fixed(v) => DistOut::Fixed(v),
            Dist::Uniform(lo, hi) => DistOut::Uniform([lo, hi]),
            Dist::Exponential { mean } => table("exponential", Some(mean), None, None, None),
            Dist::Weibull { scale, shape } => {
                table("weibull", None, Some(scale), None, Some(shape))
            }
            Dist::Pareto { min, shape } => table("pareto", None, None, Some(min), Some(shape)),
        }
    }
}

impl<'a> Class<'a> {
    fn of(c: &'a scenario::Class, data: &'a RegionData) -> Class<'a> {
        Class {
            name: &c.name,
            weight: c.weight,
            bandwidth_kbps: c.bandwidth_kbps,
            uptime_s: c.churn.map(|ch| DistOut::of(&ch.uptime)),
            downtime_s: c.churn.map(|ch| DistOut::of(&ch.downtime)),
            regions: c.regions.as_ref().map(|rs| {
                rs.iter()
                    .map(|r| (data.region(r.region).name.as_str(), r.weight))
                    .collect()
            }),
            node: Node::of(&c.node),
        }
    }
}

/// One `[[workload]]` entry.
#[derive(Debug, Serialize)]
struct Workload {
    kind: &'static str,
    at_s: f64,
    rate_per_s: f64,
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
}

impl Workload {
    fn of(w: &scenario::Workload) -> Workload {
        Workload {
            kind: "flood",
            at_s: seconds(w.at),
            rate_per_s: w.rate_per_s,
            message: match w.message {
                scenario::FloodMessage::Peers => "peers",
                scenario::FloodMessage::Ping => "ping",
            },
            nodes: (!w.nodes.is_empty()).then(|| indices(&w.nodes)),
            count: (w.count > 0).then_some(w.count as u64),
        }
    }
}

/// `[jobs]`, every key written.
#[derive(Debug, Serialize)]
struct Jobs<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_classes: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    providers_count: Option<u64>,
    cores: u64,
    memory_mb: u64,
    disk_gb: u64,
    price: [u64; 2],
    service_providers: u64,
    start_delay_s: [f64; 2],
    run_time_s: [f64; 2],
    failure_probability: f64,
    log_lines: u32,
    deploy_at_s: f64,
    deploy_until_s: f64,
    deploy_every_s: f64,
    templates: Vec<Template>,
}

/// One `[[jobs.templates]]` entry.
#[derive(Debug, Serialize)]
struct Template {
    cores: f64,
    memory_mb: u64,
    duration_s: u64,
    workers: u32,
}

impl<'a> Jobs<'a> {
    fn of(j: &scenario::JobsScenario, classes: &'a [scenario::Class]) -> Jobs<'a> {
        let (provider_classes, providers_count) = match &j.providers {
            scenario::Providers::Classes(cs) => (
                Some(cs.iter().map(|c| classes[*c].name.as_str()).collect()),
                None,
            ),
            scenario::Providers::Count(n) => (None, Some(*n as u64)),
        };
        let pair = |(lo, hi): (Duration, Duration)| [seconds(lo), seconds(hi)];
        Jobs {
            provider_classes,
            providers_count,
            cores: j.capacity.millicores / 1000,
            memory_mb: j.capacity.memory_mb,
            disk_gb: j.capacity.disk_gb,
            price: [j.price.0, j.price.1],
            service_providers: j.service_providers as u64,
            start_delay_s: pair(j.exec.start_delay),
            run_time_s: pair(j.exec.run_time),
            failure_probability: j.exec.failure_probability,
            log_lines: j.exec.log_lines,
            deploy_at_s: seconds(j.deploy_at),
            deploy_until_s: seconds(j.deploy_until),
            deploy_every_s: seconds(j.deploy_every),
            templates: j
                .templates
                .iter()
                .map(|t| Template {
                    cores: t.resources.millicores as f64 / 1000.0,
                    memory_mb: t.resources.memory_mb,
                    duration_s: t.duration_s,
                    workers: t.workers,
                })
                .collect(),
        }
    }
}

/// `[expect]`, the bounds that are set.
#[derive(Debug, Serialize)]
struct Expect {
    #[serde(skip_serializing_if = "Option::is_none")]
    connected_fraction_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    degree_mean_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    degree_min_min: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_neighbour_mean_ms_max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    liveness_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployments_completed_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployments_terminal: Option<bool>,
}

/// `[debug]`, the deliberate failures that are set.
#[derive(Debug, Serialize)]
struct Debug {
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_invariant_after_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    panic_after_s: Option<f64>,
}

/// `[peers]`.
#[derive(Debug, Serialize)]
struct Peers {
    count: u64,
    bootstrap: u64,
    start_spread_s: f64,
}

/// `[latency]`.
#[derive(Debug, Serialize)]
struct Latency {
    jitter_ms: f64,
    last_mile_ms: [f64; 2],
    loss: f64,
}

/// `[node]` and `[bootstrap_node]`, every key written.
#[derive(Debug, Serialize)]
struct Node {
    low_watermark: u64,
    high_watermark: u64,
    peers_refused_max: u64,
    refuse_grace_s: f64,
    dials_concurrent_max: u64,
    peers_known_max: u64,
    maintain_interval_s: f64,
    ping_interval_s: f64,
    ping_timeout_s: f64,
    ping_failures_max: u32,
    exchange_interval_s: f64,
    explore_interval_s: f64,
    exchange_peers_max: u16,
    exchange_hops_max: u8,
    advert_ttl_s: f64,
    advert_refresh_s: f64,
    dial_backoff_base_s: f64,
    dial_backoff_max_s: f64,
    dial_failures_max: u32,
    resources: Resources,
}

/// `[node.resources]`.
#[derive(Debug, Serialize)]
struct Resources {
    cores: u32,
    memory_mb: u64,
    disk_gb: u64,
    gpus: u32,
}

/// Whole nanoseconds as decimal seconds: the shortest decimal that reads back to them.
fn seconds(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e9
}

/// Whole nanoseconds as decimal milliseconds.
fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

impl Node {
    fn of(c: &Config) -> Node {
        Node {
            low_watermark: c.low_watermark as u64,
            high_watermark: c.high_watermark as u64,
            peers_refused_max: c.peers_refused_max as u64,
            refuse_grace_s: seconds(c.refuse_grace),
            dials_concurrent_max: c.dials_concurrent_max as u64,
            peers_known_max: c.peers_known_max as u64,
            maintain_interval_s: seconds(c.maintain_interval),
            ping_interval_s: seconds(c.ping_interval),
            ping_timeout_s: seconds(c.ping_timeout),
            ping_failures_max: c.ping_failures_max,
            exchange_interval_s: seconds(c.exchange_interval),
            explore_interval_s: seconds(c.explore_interval),
            exchange_peers_max: c.exchange_peers_max,
            exchange_hops_max: c.exchange_hops_max,
            advert_ttl_s: seconds(c.advert_ttl),
            advert_refresh_s: seconds(c.advert_refresh),
            dial_backoff_base_s: seconds(c.dial_backoff_base),
            dial_backoff_max_s: seconds(c.dial_backoff_max),
            dial_failures_max: c.dial_failures_max,
            resources: Resources {
                cores: c.resources.cores,
                memory_mb: c.resources.memory_mb,
                disk_gb: c.resources.disk_gb,
                gpus: c.resources.gpus,
            },
        }
    }
}

fn indices(v: &[usize]) -> Vec<u64> {
    v.iter().map(|i| *i as u64).collect()
}

/// A partition side as its `regions_*` and `nodes_*` keys.
fn side<'a>(data: &'a RegionData, s: Option<&Side>) -> (Option<Vec<&'a str>>, Option<Vec<u64>>) {
    match s {
        None => (None, None),
        Some(Side::Regions(r)) => (
            Some(r.iter().map(|i| data.region(*i).name.as_str()).collect()),
            None,
        ),
        Some(Side::Nodes(n)) => (None, Some(indices(n))),
    }
}

impl<'a> Fault<'a> {
    fn of(f: &scenario::Fault, data: &'a RegionData) -> Fault<'a> {
        let base = Fault {
            at_s: seconds(f.at),
            until_s: f.until.map(seconds),
            ..Fault::default()
        };
        match &f.kind {
            FaultKind::Partition { a, b, one_way } => {
                let ((regions_a, nodes_a), (regions_b, nodes_b)) =
                    (side(data, Some(a)), side(data, b.as_ref()));
                Fault {
                    kind: "partition",
                    regions_a,
                    nodes_a,
                    regions_b,
                    nodes_b,
                    one_way: Some(*one_way),
                    ..base
                }
            }
            FaultKind::Crash {
                nodes,
                count,
                restart_after,
            } => Fault {
                kind: "crash",
                nodes: (!nodes.is_empty()).then(|| indices(nodes)),
                count: (*count > 0).then_some(*count as u64),
                restart_after_s: restart_after.map(seconds),
                ..base
            },
            FaultKind::Loss { probability } => Fault {
                kind: "loss",
                probability: Some(*probability),
                ..base
            },
            FaultKind::ClockSkew { nodes, offset_us } => Fault {
                kind: "clock_skew",
                nodes: Some(indices(nodes)),
                offset_ms: Some(*offset_us as f64 / 1000.0),
                ..base
            },
        }
    }
}

fn expect(e: &scenario::Expect) -> Option<Expect> {
    let out = Expect {
        connected_fraction_min: e.connected_fraction_min,
        degree_mean_min: e.degree_mean_min,
        degree_min_min: e.degree_min_min.map(|d| d as u64),
        rtt_neighbour_mean_ms_max: e.rtt_neighbour_mean_ms_max,
        liveness_s: e.liveness.map(seconds),
        deployments_completed_min: e.deployments_completed_min,
        deployments_terminal: e.deployments_terminal.then_some(true),
    };
    let set = out.connected_fraction_min.is_some()
        || out.degree_mean_min.is_some()
        || out.degree_min_min.is_some()
        || out.rtt_neighbour_mean_ms_max.is_some()
        || out.liveness_s.is_some()
        || out.deployments_completed_min.is_some()
        || out.deployments_terminal.is_some();
    set.then_some(out)
}

fn debug(d: &scenario::Debug) -> Option<Debug> {
    let out = Debug {
        fail_invariant_after_s: d.fail_invariant_after.map(seconds),
        panic_after_s: d.panic_after.map(seconds),
    };
    (out.fail_invariant_after_s.is_some() || out.panic_after_s.is_some()).then_some(out)
}

/// `scenario` as a scenario file, run at `seed` on `engine`.
pub fn to_toml(scenario: &Scenario, seed: u64, engine: EngineKind) -> Result<String, ReportError> {
    let scenario = &scenario.at_seed(seed);
    let regions = scenario
        .regions
        .iter()
        .map(|r| (scenario.data.region(r.region).name.as_str(), r.weight))
        .collect();
    let file = File {
        name: &scenario.name,
        seed,
        duration_s: seconds(scenario.duration),
        engine,
        peers: Peers {
            count: scenario.peers.count as u64,
            bootstrap: scenario.peers.bootstrap as u64,
            start_spread_s: seconds(scenario.peers.start_spread),
        },
        regions,
        latency: Latency {
            jitter_ms: millis(scenario.latency.jitter),
            last_mile_ms: [
                millis(scenario.latency.last_mile_min),
                millis(scenario.latency.last_mile_max),
            ],
            loss: scenario.latency.loss,
        },
        node: Node::of(&scenario.node),
        bootstrap_node: Node::of(&scenario.bootstrap_node),
        classes: scenario
            .classes
            .iter()
            .map(|c| Class::of(c, &scenario.data))
            .collect(),
        faults: scenario
            .faults
            .iter()
            .map(|f| Fault::of(f, &scenario.data))
            .collect(),
        workload: scenario.workload.iter().map(Workload::of).collect(),
        jobs: scenario
            .jobs
            .as_ref()
            .map(|j| Jobs::of(j, &scenario.classes)),
        expect: expect(&scenario.expect),
        debug: debug(&scenario.debug),
    };
    let body = toml::to_string(&file).map_err(|e| ReportError::Scenario(e.to_string()))?;
    Ok(format!("{HEADER}{body}"))
}
