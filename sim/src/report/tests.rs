use super::*;
use crate::engine;

const SMALL: &str = "name = \"r\"\nseed = 4\nduration_s = 40\n[peers]\ncount = 12\n\
                     [bootstrap_node]\nhigh_watermark = 64\n";

/// A scenario that sets a value of every kind, several of them fractional.
const FULL: &str = r#"
name = "full_1"
seed = 9
duration_s = 123.456789
engine = "turmoil"

[peers]
count = 40
bootstrap = 3
start_spread_s = 12.5

[regions]
eu-west = 3
na-east = 1.5
ea-jp = 0.25

[latency]
jitter_ms = 0.75
last_mile_ms = [1.125, 33.3]

[node]
low_watermark = 6
ping_interval_s = 7.3
ping_timeout_s = 2.9
exchange_hops_max = 3

[node.resources]
cores = 16
gpus = 2

[bootstrap_node]
high_watermark = 200
refuse_grace_s = 0.001

[[faults]]
kind = "partition"
at_s = 10
duration_s = 20.5
regions_a = ["eu-west"]

[[faults]]
kind = "crash"
at_s = 30
until_s = 40
count = 3
restart_after_s = 5

[[faults]]
kind = "loss"
at_s = 5
until_s = 50
probability = 0.05

[[faults]]
kind = "clock_skew"
at_s = 0
nodes = [1, 2]
offset_ms = -1500.25

[[faults]]
kind = "partition"
at_s = 60
until_s = 70
nodes_a = [0, 1]
nodes_b = [5]
one_way = true

[expect]
connected_fraction_min = 0.9
liveness_s = 30

[debug]
fail_invariant_after_s = 100
"#;

fn assert_same_values(a: &Scenario, b: &Scenario) {
    assert_eq!(a.name, b.name);
    assert_eq!(a.duration, b.duration);
    assert_eq!(a.peers, b.peers);
    assert_eq!(a.latency, b.latency);
    assert_eq!(a.node, b.node);
    assert_eq!(a.bootstrap_node, b.bootstrap_node);
    assert_eq!(a.faults, b.faults);
    assert_eq!(a.classes.len(), b.classes.len());
    for (ca, cb) in a.classes.iter().zip(&b.classes) {
        assert_eq!(
            (&ca.name, &ca.node, ca.churn, ca.bandwidth_kbps),
            (&cb.name, &cb.node, cb.churn, cb.bandwidth_kbps)
        );
        assert!((ca.weight - cb.weight).abs() < 1e-12);
        let regions = |c: &crate::scenario::Class| {
            c.regions
                .as_ref()
                .map(|r| r.iter().map(|w| w.region).collect::<Vec<_>>())
        };
        assert_eq!(regions(ca), regions(cb));
    }
    assert_eq!(a.workload, b.workload);
    assert_eq!(a.expect, b.expect);
    assert_eq!(a.debug, b.debug);
    assert_eq!(a.regions.len(), b.regions.len());
    for (ra, rb) in a.regions.iter().zip(&b.regions) {
        assert_eq!(ra.region, rb.region);
        // Shares are normalised again on reading; at most a rounding step apart.
        assert!((ra.weight - rb.weight).abs() < 1e-12, "{ra:?} {rb:?}");
    }
}

#[test]
fn the_resolved_scenario_parses_back_to_the_same_values() {
    let quickstart = include_str!("../../../scenarios/quickstart.toml");
    for (text, seed, engine) in [
        (FULL, 9, EngineKind::Turmoil),
        (SMALL, 77, EngineKind::Turmoil),
        (quickstart, 1, EngineKind::Fleet),
        (CLASSES, 5, EngineKind::Fleet),
    ] {
        let scenario = Scenario::parse(text, "in.toml").unwrap();
        let resolved = resolved::to_toml(&scenario, seed, engine).unwrap();
        assert_eq!(
            resolved,
            resolved::to_toml(&scenario, seed, engine).unwrap()
        );
        let back = Scenario::parse(&resolved, "scenario.toml").unwrap_or_else(|e| {
            panic!("{e}\n{resolved}");
        });
        // Ranges are written as the values the seed drew.
        assert_same_values(&scenario.at_seed(seed), &back);
        assert_eq!((back.seed, back.engine), (seed, engine));
        if text == FULL {
            assert_eq!(back.faults.len(), 5);
            assert!(
                resolved.contains("[[faults]]\nkind = \"clock_skew\""),
                "{resolved}"
            );
        }
        // Resolving the resolved file changes nothing.
        assert_eq!(resolved::to_toml(&back, seed, engine).unwrap(), resolved);
    }
}

#[test]
fn the_resolved_scenario_writes_every_default() {
    let scenario = Scenario::parse(SMALL, "r.toml").unwrap();
    let text = resolved::to_toml(&scenario, 4, EngineKind::Fleet).unwrap();
    assert!(
        text.starts_with("# The resolved scenario of a run"),
        "{text}"
    );
    for line in [
        "seed = 4\n",
        "duration_s = 40.0\n",
        "engine = \"fleet\"\n",
        "bootstrap = 1\n",
        "jitter_ms = 2.0\n",
        "last_mile_ms = [5.0, 30.0]\n",
        "ping_timeout_s = 10.0\n",
        "high_watermark = 64\n",
        "[node.resources]\n",
        "[regions]\n",
        "eu-west = ",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
}

fn small_run() -> (Scenario, World, RunResult) {
    let scenario = Scenario::parse(SMALL, "r.toml").unwrap();
    let world = engine::world(&scenario, 4);
    let result = engine::run(&scenario, 4, EngineKind::Fleet).unwrap();
    (scenario, world, result)
}

fn count_lines(trace: &[u8], kind: &str) -> u64 {
    let needle = format!(" {kind} ");
    String::from_utf8_lossy(trace)
        .lines()
        .filter(|l| l.contains(&needle))
        .count() as u64
}

#[test]
fn the_timeline_counts_what_the_run_counted() {
    let (_, _, result) = small_run();
    let t = result.trace.timeline();
    assert_eq!(t.bucket_width(), std::time::Duration::from_millis(500));
    let totals = t.totals();
    assert_eq!(totals.sent, result.messages_sent);
    assert_eq!(totals.delivered, result.messages_delivered);
    assert_eq!(totals.conn_ups, count_lines(result.trace.text(), "conn+"));
    assert_open_ends_match_the_nodes(&result);
}

/// The timeline's open connection ends at the end are the nodes' connections.
fn assert_open_ends_match_the_nodes(result: &RunResult) {
    let open = result.trace.timeline().open_ends().last().copied().unwrap();
    let ends: usize = result.nodes.iter().map(|n| n.connections().count()).sum();
    assert_eq!(open, ends as u64);
}

#[test]
fn refused_and_dropped_connections_leave_the_open_count() {
    // Full nodes refuse and later close inbound connections with a `drop` line and no
    // `conn-` line at their end; the open count must not keep them.
    let text = "name = \"crowd\"\nduration_s = 90\n[peers]\ncount = 30\n\
                [node]\nlow_watermark = 3\nhigh_watermark = 4\npeers_refused_max = 2\n";
    let scenario = Scenario::parse(text, "crowd.toml").unwrap();
    let result = engine::run(&scenario, 3, EngineKind::Fleet).unwrap();
    let trace = result.trace.text();
    assert!(
        count_lines(trace, "drop") > 0,
        "the scenario drops connections"
    );
    assert_open_ends_match_the_nodes(&result);
    let totals = result.trace.timeline().totals();
    assert!(totals.conn_downs > count_lines(trace, "conn-"));
    assert!(totals.conn_downs <= count_lines(trace, "conn-") + count_lines(trace, "drop"));
}

#[test]
fn the_turmoil_engine_fills_the_timeline_too() {
    let text = "name = \"t\"\nduration_s = 20\n[peers]\ncount = 4\n";
    let scenario = Scenario::parse(text, "t.toml").unwrap();
    let result = engine::run(&scenario, 2, EngineKind::Turmoil).unwrap();
    let totals = result.trace.timeline().totals();
    assert!(totals.sent > 0);
    assert_eq!(totals.sent, result.messages_sent);
    assert_eq!(totals.delivered, result.messages_delivered);
    assert_eq!(totals.conn_ups, count_lines(result.trace.text(), "conn+"));
    assert_open_ends_match_the_nodes(&result);
}

/// Asserts two renders are the same file for file, showing where they first differ.
fn assert_same_files(a: &[(&str, String)], b: &[(&str, String)]) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        if let Some(at) = x.bytes().zip(y.bytes()).position(|(p, q)| p != q) {
            let end = |s: &str| (at + 120).min(s.len());
            panic!(
                "{name} differs at byte {at}:\n{}\n--- versus ---\n{}",
                &x[at..end(x)],
                &y[at..end(y)]
            );
        }
        assert_eq!(x.len(), y.len(), "{name}");
    }
}

#[test]
fn charts_are_svg_with_their_titles_and_series_and_render_the_same_twice() {
    let (scenario, world, result) = small_run();
    let first = render(&scenario, 4, EngineKind::Fleet, &world, &result).unwrap();
    let again = render(&scenario, 4, EngineKind::Fleet, &world, &result).unwrap();
    assert_same_files(&first, &again);
    let rerun = engine::run(&scenario, 4, EngineKind::Fleet).unwrap();
    let from_rerun = render(&scenario, 4, EngineKind::Fleet, &world, &rerun).unwrap();
    assert_same_files(&first, &from_rerun);
    let expected: [(&str, &[&str]); 3] = [
        (
            "rtt_cdf.svg",
            &[
                "round-trip time (ms)",
                "share of pairs at or below",
                "measured RTT to neighbours (EWMA)",
                "model RTT of random pairs",
                "<polyline",
            ],
        ),
        (
            "degree.svg",
            &["connections (degree)", "nodes with this degree", "<rect"],
        ),
        (
            "timeline.svg",
            &[
                "simulated time (s)",
                "messages per 0.5 s",
                "open connections",
                "delivered",
                "<polyline",
            ],
        ),
    ];
    for (name, needles) in expected {
        let (_, svg) = first.iter().find(|(n, _)| *n == name).unwrap();
        assert!(svg.starts_with("<svg"), "{name}: {}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"), "{name}");
        assert!(svg.contains("<text"), "{name} has no text elements");
        for needle in needles {
            assert!(svg.contains(needle), "{name} lacks {needle:?}");
        }
    }
}

#[test]
fn chart_data_matches_the_summary() {
    let (_, world, result) = small_run();
    let data = ChartData::from_run(&world, &result);
    let summary = crate::Summary::from_run(&world, EngineKind::Fleet, &result);
    assert_eq!(data.degrees.len(), 12);
    assert_eq!(data.rtt_measured_ms.len() as u64, summary.rtt_samples);
    assert_eq!(data.rtt_model_ms.len(), data.rtt_measured_ms.len());
    assert_eq!(data.rtt_random_ms.len(), 66, "every pair of a small world");
    let mean = data.rtt_random_ms.iter().sum::<f64>() / 66.0;
    assert!((mean - summary.rtt_random_mean_ms).abs() < 1e-3);
    assert!(data.rtt_measured_ms.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*data.degrees.iter().max().unwrap(), summary.degree_max);
}

#[test]
fn write_puts_every_file_in_the_directory() {
    let (scenario, world, result) = small_run();
    let dir = tempfile::tempdir().unwrap();
    let paths = write(dir.path(), &scenario, 4, EngineKind::Fleet, &world, &result).unwrap();
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["scenario.toml", "rtt_cdf.svg", "degree.svg", "timeline.svg"]
    );
    let back = Scenario::load(dir.path().join("scenario.toml")).unwrap();
    assert_same_values(&scenario, &back);
}

/// Classes with churn, an uplink limit and their own regions, baseline loss, and faults
/// with options drawn from the seed.
const CLASSES: &str = r#"
name = "classes"
duration_s = 90
[peers]
count = 24
bootstrap = 2
start_spread_s = 10
[latency]
loss = 0.01
[node]
ping_interval_s = 5
ping_timeout_s = 2

[[classes]]
name = "dc"
weight = 1
regions = { eu-west = 1, na-east = 2 }
[classes.node]
high_watermark = 20
[classes.node.resources]
gpus = 2

[[classes]]
name = "phone"
weight = 2
bandwidth_kbps = 64
uptime_s = { kind = "weibull", scale = 30, shape = 0.6 }
downtime_s = { kind = "pareto", min = 5, shape = 1.5 }

[[faults]]
kind = "partition"
fraction = 0.25
at_s = [20, 30]
duration_s = [5, 10]

[[faults]]
kind = "crash"
count = [1, 3]
at_s = 40
until_s = [45, 50]
restart_after_s = [3, 6]

[[faults]]
kind = "loss"
at_s = 5
until_s = 15
probability = [0.05, 0.2]

[[workload]]
kind = "flood"
count = 2
at_s = 60
rate_per_s = 2
message = "ping"
"#;

#[test]
fn the_resolved_scenario_shows_the_drawn_fault_options() {
    let scenario = Scenario::parse(CLASSES, "c.toml").unwrap();
    let text = resolved::to_toml(&scenario, 3, EngineKind::Fleet).unwrap();
    for line in [
        "loss = 0.01\n",
        "[[classes]]\nname = \"dc\"\nweight = ",
        "bandwidth_kbps = 64.0\n",
        "[classes.uptime_s]\nkind = \"weibull\"\nscale = 30.0\nshape = 0.6\n",
        "[classes.downtime_s]\nkind = \"pareto\"\nmin = 5.0\nshape = 1.5\n",
        "[classes.node.resources]\ncores = 0\nmemory_mb = 0\ndisk_gb = 0\ngpus = 2\n",
        "kind = \"partition\"\n",
        "nodes_a = [",
        "[[workload]]\nkind = \"flood\"\nat_s = 60.0\nrate_per_s = 2.0\nmessage = \"ping\"\ncount = 2\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    assert!(!text.contains("fraction"), "{text}");
    assert!(!text.contains("probability = ["), "{text}");
}

#[test]
fn running_a_resolved_scenario_with_classes_and_ranges_repeats_the_run() {
    let scenario = Scenario::parse(CLASSES, "c.toml").unwrap();
    for seed in [1, 2] {
        let run = |s: &Scenario| {
            crate::runner::run_checked(s, seed, EngineKind::Fleet, crate::trace::Trace::new)
                .unwrap()
                .result
                .trace
        };
        let first = run(&scenario);
        let resolved = resolved::to_toml(&scenario, seed, EngineKind::Fleet).unwrap();
        let back = Scenario::parse(&resolved, "scenario.toml").unwrap();
        let again = run(&back);
        assert_eq!(first.text(), again.text(), "seed {seed}");
        let text = String::from_utf8_lossy(first.text());
        assert!(text.contains(" class=phone"), "{text}");
        assert!(text.contains(" -- flood #0 sent="), "{text}");
    }
}

#[test]
fn running_the_resolved_scenario_repeats_the_run() {
    let (scenario, _, result) = small_run();
    let resolved = resolved::to_toml(&scenario, 4, EngineKind::Fleet).unwrap();
    let back = Scenario::parse(&resolved, "scenario.toml").unwrap();
    let again = engine::run(&back, back.seed, back.engine).unwrap();
    assert_eq!(again.trace.digest(), result.trace.digest());
    assert_eq!(again.trace.text(), result.trace.text());
}
