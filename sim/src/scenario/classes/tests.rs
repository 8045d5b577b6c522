//! `[[classes]]`, fault ranges, `latency.loss` and `[[workload]]`: parsing, errors with
//! their lines and keys, the world's classes and churn, and the draws of fault options.

use std::time::Duration;

use crate::scenario::{Dist, FaultKind, Scenario, Side};
use crate::world::{World, sim_addr};

const BASE: &str = "name = \"t\"\nduration_s = 600\n[peers]\ncount = 200\nbootstrap = 2\nstart_spread_s = 20\n[node]\nhigh_watermark = 20\n";

const CLASSES: &str = r#"
[[classes]]
name = "dc"
weight = 1
regions = { eu-west = 1 }
[classes.node]
high_watermark = 40
[classes.node.resources]
cores = 64

[[classes]]
name = "phone"
weight = 3
uptime_s = [10, 20]
downtime_s = { kind = "exponential", mean = 30 }
bandwidth_kbps = 100
[classes.node]
low_watermark = 2
high_watermark = 4
"#;

fn parse(extra: &str) -> Scenario {
    Scenario::parse(&format!("{BASE}{extra}"), "c.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn err(extra: &str) -> (usize, String) {
    match Scenario::parse(&format!("{BASE}{extra}"), "c.toml") {
        Ok(_) => panic!("expected an error for:\n{extra}"),
        Err(e) => (e.line().unwrap_or(0), e.to_string()),
    }
}

#[test]
fn classes_parse_with_their_profiles_and_normalised_weights() {
    let s = parse(CLASSES);
    assert_eq!(s.classes.len(), 2);
    let (dc, phone) = (&s.classes[0], &s.classes[1]);
    assert_eq!((dc.name.as_str(), dc.weight), ("dc", 0.25));
    assert_eq!(phone.weight, 0.75);
    assert_eq!((dc.node.high_watermark, dc.node.resources.cores), (40, 64));
    // `[classes.node]` applies on top of `[node]`.
    assert_eq!(
        (phone.node.high_watermark, phone.node.low_watermark),
        (4, 2)
    );
    assert_eq!(s.node.high_watermark, 20);
    assert!(dc.churn.is_none() && dc.bandwidth_kbps.is_none());
    let churn = phone.churn.unwrap();
    assert_eq!(churn.uptime, Dist::Uniform(10.0, 20.0));
    assert_eq!(churn.downtime, Dist::Exponential { mean: 30.0 });
    assert_eq!(phone.bandwidth_kbps, Some(100.0));
    assert_eq!(dc.regions.as_ref().map(Vec::len), Some(1));
    assert!(s.has_churn() && s.has_bandwidth());
}

#[test]
fn every_new_key_reports_its_line_and_key() {
    let class = "[[classes]]\nname = \"a\"\nweight = 1\n";
    // BASE has 8 lines; the class table starts on line 9.
    let cases: Vec<(String, usize, &str)> = vec![
        (
            format!("{class}colour = 1\n"),
            12,
            "unknown key `colour` in [classes.0]",
        ),
        (
            "[[classes]]\nname = \"a\"\nweight = \"x\"\n".into(),
            11,
            "`classes.0.weight` must be a number",
        ),
        (
            "[[classes]]\nname = \"a\"\nweight = -1\n".into(),
            11,
            "`classes.0.weight` must be from 0",
        ),
        (
            "[[classes]]\nname = \"a b\"\nweight = 1\n".into(),
            10,
            "`classes.0.name` must be non-empty",
        ),
        (format!("{class}{class}"), 13, "class `a` is defined twice"),
        (
            format!("{class}uptime_s = \"x\"\ndowntime_s = 1\n"),
            12,
            "`classes.0.uptime_s` must be a number, [min, max] or a table",
        ),
        (
            format!("{class}uptime_s = 10\n"),
            12,
            "needs both `classes.0.uptime_s` and `classes.0.downtime_s`",
        ),
        (
            format!("{class}uptime_s = 0.5\ndowntime_s = 5\n"),
            12,
            "`classes.0.uptime_s` must be from 1 to",
        ),
        (
            format!("{class}uptime_s = [9, 3]\ndowntime_s = 5\n"),
            12,
            "must be [min, max] with min <= max",
        ),
        (
            format!("{class}uptime_s = {{ kind = \"normal\", mean = 3 }}\ndowntime_s = 5\n"),
            12,
            "must be one of exponential, weibull, pareto",
        ),
        (
            format!("{class}uptime_s = {{ kind = \"weibull\", mean = 3 }}\ndowntime_s = 5\n"),
            12,
            "takes exactly the keys kind, scale, shape",
        ),
        (
            format!(
                "{class}uptime_s = 5\ndowntime_s = {{ kind = \"pareto\", min = 5, shape = 0 }}\n"
            ),
            13,
            "`classes.0.downtime_s.shape` must be from 0.05",
        ),
        (
            format!(
                "{class}uptime_s = {{ kind = \"exponential\", mean = 3, tail = 1 }}\ndowntime_s = 5\n"
            ),
            12,
            "unknown key `tail`",
        ),
        (
            format!("{class}bandwidth_kbps = 0\n"),
            12,
            "`classes.0.bandwidth_kbps` must be from 1",
        ),
        (
            format!("{class}regions = {{ eu-wst = 1 }}\n"),
            12,
            "unknown region `eu-wst` in `classes.0.regions`",
        ),
        (
            format!("{class}regions = {{ eu-west = 0 }}\n"),
            12,
            "every weight in `classes.0.regions` is zero",
        ),
        (
            format!("{class}[classes.node]\nhigh_watermark = 0\n"),
            13,
            "`classes.0.node.high_watermark` must be at least 1",
        ),
        (
            format!("{class}[classes.node]\npears = 1\n"),
            13,
            "unknown key `pears` in [classes.0.node]",
        ),
        (
            "[[classes]]\nname = \"a\"\nweight = 0\n".into(),
            11,
            "every `weight` in [[classes]] is zero",
        ),
        (
            "[latency]\nloss = 0.7\n".into(),
            10,
            "`latency.loss` must be from 0 to 0.5",
        ),
        (
            "[latency]\nloss = true\n".into(),
            10,
            "`latency.loss` must be a number",
        ),
    ];
    for (extra, line, needle) in cases {
        let (l, msg) = err(&extra);
        assert!(
            msg.contains(needle),
            "{msg:?} lacks {needle:?} for\n{extra}"
        );
        assert!(
            msg.starts_with(&format!("c.toml:{line}:")),
            "{msg:?} not at line {line} for\n{extra}"
        );
        assert_eq!(l, line, "{msg}");
    }
}

#[test]
fn fault_ranges_report_their_line_and_key() {
    let loss = "[[faults]]\nkind = \"loss\"\n";
    let cases: Vec<(String, usize, &str)> = vec![
        (format!("{loss}at_s = [10, 5]\nprobability = 0.1\n"), 11, "`faults.0.at_s` must be a number or [min, max] with min <= max"),
        (format!("{loss}at_s = [1, 2, 3]\nprobability = 0.1\n"), 11, "`faults.0.at_s` must be a number or [min, max]"),
        (format!("{loss}at_s = \"soon\"\nprobability = 0.1\n"), 11, "`faults.0.at_s` must be a number or [min, max], found string"),
        (format!("{loss}at_s = [10, 700]\nprobability = 0.1\n"), 11, "`faults.0.at_s` must be from 0 to 600 s"),
        (format!("{loss}at_s = [10, 30]\nuntil_s = 20\nprobability = 0.1\n"), 12, "`faults.0.until_s` must be from 30"),
        (format!("{loss}at_s = 1\nprobability = [0.1, 2]\n"), 12, "`faults.0.probability` must be from 0 to 1, found 2"),
        ("[[faults]]\nkind = \"crash\"\nat_s = 1\nuntil_s = 5\ncount = [1.5, 3]\n".into(), 13, "`faults.0.count` must be a whole number"),
        ("[[faults]]\nkind = \"crash\"\nat_s = 1\nuntil_s = 5\ncount = [1, 300]\n".into(), 13, "`faults.0.count` must be at most peers.count"),
        ("[[faults]]\nkind = \"partition\"\nat_s = 1\nfraction = 1.5\n".into(), 12, "`faults.0.fraction` must be from 0 to 1"),
        ("[[faults]]\nkind = \"partition\"\nat_s = 1\nfraction = 0.5\nnodes_a = [1]\n".into(), 12, "write `fraction` or a side a"),
        (format!("{loss}at_s = 1\nfraction = 0.5\nprobability = 0.1\n"), 12, "`fraction` does not apply to a `loss` fault"),
        ("[[faults]]\nkind = \"crash\"\nat_s = 1\nnodes = [3]\nrestart_after_s = [5, -1]\n".into(), 13, "`faults.0.restart_after_s` must be a number or [min, max] with min <= max"),
        ("[[faults]]\nkind = \"loss\"\nat_s = [100, 300]\nduration_s = [0, 250]\nprobability = 0.1\n[expect]\nliveness_s = 200\n".into(), 15, "`expect.liveness_s` must be more than 0 and fit"),
    ];
    for (extra, line, needle) in cases {
        let (l, msg) = err(&extra);
        assert!(
            msg.contains(needle),
            "{msg:?} lacks {needle:?} for\n{extra}"
        );
        assert_eq!(l, line, "{msg} for\n{extra}");
    }
}

#[test]
fn classes_go_to_non_bootstrap_peers_by_weight_with_their_profiles() {
    let s = parse(CLASSES);
    let w = World::build(&s, 3, sim_addr);
    let eu_west = s.data.index_of("eu-west").unwrap();
    let mut counts = [0usize; 2];
    for p in w.peers() {
        if p.bootstrap {
            assert_eq!(p.class, None);
            assert_eq!(w.class_name(p.index), None);
            continue;
        }
        let c = p.class.expect("every other peer has a class");
        counts[c] += 1;
        assert_eq!(w.class_name(p.index), Some(s.classes[c].name.as_str()));
        assert_eq!(p.config.high_watermark, s.classes[c].node.high_watermark);
        if c == 0 {
            assert_eq!(p.region, eu_west, "dc peers live in their class's regions");
            assert_eq!(w.uplink_kbps(p.index), 0.0);
        } else {
            assert_eq!(w.uplink_kbps(p.index), 100.0);
        }
    }
    // 198 peers at 1:3; a seeded draw stays near the weights.
    assert!((30..=70).contains(&counts[0]), "{counts:?}");
    assert_eq!(counts[0] + counts[1], 198);
    // The same seed draws the same classes.
    let again = World::build(&s, 3, sim_addr);
    assert!(
        w.peers()
            .iter()
            .zip(again.peers())
            .all(|(a, b)| a.class == b.class)
    );
}

#[test]
fn classes_move_no_other_draw_of_the_world() {
    let plain = parse("");
    // Classes without their own regions: placement, start and keys stay where they were.
    let classes = parse(&CLASSES.replace("regions = { eu-west = 1 }\n", ""));
    let (a, b) = (
        World::build(&plain, 5, sim_addr),
        World::build(&classes, 5, sim_addr),
    );
    for (p, q) in a.peers().iter().zip(b.peers()) {
        assert_eq!(
            (p.region, p.last_mile, p.start_offset, p.peer_id),
            (q.region, q.last_mile, q.start_offset, q.peer_id)
        );
    }
    assert!(a.churn_schedule().is_empty());
}

#[test]
fn the_churn_schedule_alternates_within_its_bounds() {
    let extra = CLASSES.replace(
        "downtime_s = { kind = \"exponential\", mean = 30 }",
        "downtime_s = [5, 8]",
    );
    let s = parse(&extra);
    let w = World::build(&s, 11, sim_addr);
    let steps = w.churn_schedule();
    assert!(!steps.is_empty());
    assert_eq!(steps, World::build(&s, 11, sim_addr).churn_schedule());
    assert_ne!(steps, World::build(&s, 12, sim_addr).churn_schedule());
    for p in w.peers() {
        let mine: Vec<_> = steps.iter().filter(|c| c.node == p.index).collect();
        if p.class != Some(1) {
            assert!(mine.is_empty(), "only phones churn");
            continue;
        }
        assert!(
            !mine.is_empty(),
            "a phone has at least one session in 600 s"
        );
        let mut last = p.start_offset;
        for (k, c) in mine.iter().enumerate() {
            assert_eq!(c.up, k % 2 == 1, "down, up, down, ...");
            let gap = (c.at - last).as_secs_f64();
            let (lo, hi) = if c.up { (5.0, 8.0) } else { (10.0, 20.0) };
            assert!(
                gap >= lo - 1e-6 && gap <= hi + 1e-6,
                "{gap} not in [{lo}, {hi}]"
            );
            assert!(c.at < s.duration);
            last = c.at;
        }
    }
}

#[test]
fn distributions_draw_their_shapes() {
    let mean = |d: Dist| {
        (0..10_000)
            .map(|k| d.at((k as f64 + 0.5) / 10_000.0))
            .sum::<f64>()
            / 10_000.0
    };
    assert_eq!(Dist::Fixed(7.0).at(0.3), 7.0);
    assert_eq!(Dist::Uniform(10.0, 20.0).at(0.5), 15.0);
    assert!((mean(Dist::Exponential { mean: 100.0 }) - 100.0).abs() < 2.0);
    // Weibull of shape 1 is exponential with the scale as its mean.
    assert!(
        (mean(Dist::Weibull {
            scale: 50.0,
            shape: 1.0
        }) - 50.0)
            .abs()
            < 1.0
    );
    let pareto = Dist::Pareto {
        min: 60.0,
        shape: 1.5,
    };
    assert_eq!(pareto.at(0.0), 60.0);
    assert!(pareto.at(0.99) > 60.0 * 20.0, "a heavy tail");
    // Never below a second, never infinite.
    assert_eq!(Dist::Exponential { mean: 5.0 }.at(0.0), 1.0);
    assert!(pareto.at(1.0).is_finite());
}

const RANGES: &str = r#"
[[faults]]
kind = "loss"
at_s = 5
until_s = 10
probability = 0.2

[[faults]]
kind = "partition"
fraction = 0.3
at_s = [60, 120]
duration_s = 30

[[faults]]
kind = "crash"
count = [2, 5]
at_s = 200
until_s = [250, 300]
restart_after_s = [10, 20]

[[faults]]
kind = "clock_skew"
nodes = [3]
offset_ms = [-500, 500]
at_s = 0
"#;

#[test]
fn fault_ranges_are_drawn_per_seed_within_bounds() {
    let s = parse(RANGES);
    assert!(s.fault_draws[0].is_empty() && !s.fault_draws[1].is_empty());
    let mut seen_at = Vec::new();
    for seed in 0..20 {
        let d = s.at_seed(seed);
        assert_eq!(d.faults, s.at_seed(seed).faults, "deterministic");
        assert!(d.fault_draws.iter().all(|f| f.is_empty()));
        assert_eq!(d.at_seed(seed + 1).faults, d.faults, "nothing left to draw");
        assert_eq!(d.faults[0], s.faults[0], "a fixed fault stays as written");
        let p = &d.faults[1];
        let at = p.at.as_secs_f64();
        assert!((60.0..=120.0).contains(&at));
        assert_eq!(
            p.until,
            Some(p.at + Duration::from_secs(30)),
            "the duration follows"
        );
        seen_at.push(p.at);
        let FaultKind::Partition {
            a: Side::Nodes(a), ..
        } = &p.kind
        else {
            panic!("{p:?}");
        };
        assert_eq!(a.len(), 60, "30% of 200 peers");
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        let c = &d.faults[2];
        let until = c.until.unwrap().as_secs_f64();
        assert!((250.0..=300.0).contains(&until));
        let FaultKind::Crash {
            count,
            restart_after,
            ..
        } = &c.kind
        else {
            panic!("{c:?}");
        };
        assert!((2..=5).contains(count));
        assert!((10.0..=20.0).contains(&restart_after.unwrap().as_secs_f64()));
        let FaultKind::ClockSkew { offset_us, .. } = d.faults[3].kind else {
            panic!();
        };
        assert!((-500_000..=500_000).contains(&offset_us));
    }
    seen_at.dedup();
    assert!(seen_at.len() > 10, "seeds draw different times");
}

#[test]
fn each_fault_draws_from_its_own_stream() {
    let s = parse(RANGES);
    // Dropping the first fault (fixed) and keeping the rest: fault k's draws depend only
    // on the seed and k, so a fault added in front moves the others' index, not their
    // stream; a fault appended moves nothing.
    let more = parse(&format!(
        "{RANGES}\n[[faults]]\nkind = \"loss\"\nat_s = [1, 9]\nprobability = [0.1, 0.3]\n"
    ));
    for seed in [1, 2, 3] {
        let (a, b) = (s.at_seed(seed), more.at_seed(seed));
        assert_eq!(a.faults[..], b.faults[..4]);
    }
}

#[test]
fn workload_keys_report_their_line_and_key() {
    let flood = "[[workload]]\nkind = \"flood\"\nat_s = 10\n";
    let cases: Vec<(String, usize, &str)> = vec![
        (
            format!("{flood}rate_per_s = 2\nnodes = [1]\nburst = 3\n"),
            14,
            "unknown key `burst` in [workload.0]",
        ),
        (
            "[[workload]]\nkind = \"storm\"\nat_s = 1\nrate_per_s = 1\ncount = 1\n".into(),
            10,
            "`workload.0.kind` must be one of flood",
        ),
        (
            format!("{flood}rate_per_s = 0\nnodes = [1]\n"),
            12,
            "`workload.0.rate_per_s` must be more than 0",
        ),
        (
            format!("{flood}rate_per_s = \"fast\"\nnodes = [1]\n"),
            12,
            "`workload.0.rate_per_s` must be a number",
        ),
        (
            format!("{flood}rate_per_s = 1\nnodes = [200]\n"),
            13,
            "holds peer 200, but peers are numbered 0 to 199",
        ),
        (
            format!("{flood}rate_per_s = 1\n"),
            9,
            "a workload entry needs exactly one of `nodes`",
        ),
        (
            format!("{flood}rate_per_s = 1\ncount = 300\n"),
            13,
            "`workload.0.count` must be at most peers.count",
        ),
        (
            format!("{flood}rate_per_s = 1\ncount = 1\nmessage = \"pong\"\n"),
            14,
            "`workload.0.message` must be one of peers, ping",
        ),
        (
            "[[workload]]\nkind = \"flood\"\nat_s = 900\nrate_per_s = 1\ncount = 1\n".into(),
            11,
            "`workload.0.at_s` must be from 0 to 600 s",
        ),
    ];
    for (extra, line, needle) in cases {
        let (l, msg) = err(&extra);
        assert!(
            msg.contains(needle),
            "{msg:?} lacks {needle:?} for\n{extra}"
        );
        assert_eq!(l, line, "{msg} for\n{extra}");
    }
    let s = parse(&format!("{flood}rate_per_s = 2.5\ncount = 4\n"));
    assert_eq!(s.workload[0].rate_per_s, 2.5);
    assert_eq!(s.workload[0].count, 4);
}

#[test]
fn a_fraction_side_follows_a_smaller_peer_count() {
    let mut s = parse(RANGES);
    // The crash's nodes are drawn and the skew names peer 3; the fraction names none.
    assert_eq!(s.faults_node_max(), Some(3));
    s.peers.count = 10;
    let d = s.at_seed(4);
    let FaultKind::Partition {
        a: Side::Nodes(a), ..
    } = &d.faults[1].kind
    else {
        panic!("{:?}", d.faults[1]);
    };
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|n| *n < 10));
}
