//! Parsing tests: good files, and bad files with the line and key of every error.

use super::*;

const GOOD: &str = r#"
name = "t"
seed = 7
duration_s = 60
engine = "fleet"

[peers]
count = 10
bootstrap = 2
start_spread_s = 5

[regions]
eu-west = 2
na-east = 1

[latency]
jitter_ms = 1.5
last_mile_ms = [4, 20]

[node]
low_watermark = 4
ping_interval_s = 10
ping_timeout_s = 5
exchange_hops_max = 3
peers_refused_max = 2
refuse_grace_s = 1.5

[node.resources]
cores = 8

[bootstrap_node]
high_watermark = 100
"#;

fn err(text: &str) -> (usize, String) {
    match Scenario::parse(text, "x.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => (e.line().unwrap_or(0), e.to_string()),
    }
}

fn minimal(extra: &str) -> String {
    format!("name = \"t\"\nduration_s = 60\n[peers]\ncount = 10\n{extra}")
}

#[test]
fn a_full_file_parses_with_its_values() {
    let s = Scenario::parse(GOOD, "x.toml").unwrap();
    assert_eq!(
        (s.name.as_str(), s.seed, s.engine),
        ("t", 7, EngineKind::Fleet)
    );
    assert_eq!(s.duration, Duration::from_secs(60));
    assert_eq!(
        s.peers,
        Peers {
            count: 10,
            bootstrap: 2,
            start_spread: Duration::from_secs(5)
        }
    );
    let names: Vec<&str> = s
        .regions
        .iter()
        .map(|r| s.data.region(r.region).name.as_str())
        .collect();
    assert_eq!(names, ["na-east", "eu-west"]);
    assert!((s.regions[1].weight - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(s.latency.jitter, Duration::from_micros(1500));
    assert_eq!(s.latency.last_mile_max, Duration::from_millis(20));
    assert_eq!(s.node.low_watermark, 4);
    assert_eq!(s.node.ping_interval, Duration::from_secs(10));
    assert_eq!(s.node.exchange_hops_max, 3);
    assert_eq!(
        (s.node.peers_refused_max, s.node.refuse_grace),
        (2, Duration::from_millis(1500))
    );
    assert_eq!(s.node.resources.cores, 8);
    assert_eq!(
        s.node.high_watermark,
        Config::default().high_watermark,
        "untouched keys keep defaults"
    );
    assert_eq!(s.bootstrap_node.high_watermark, 100);
    assert_eq!(
        s.bootstrap_node.low_watermark, 4,
        "bootstrap nodes start from [node]"
    );
    assert_eq!(s.bootstrap_node.resources.cores, 8);
}

#[test]
fn defaults_fill_everything_optional() {
    let s = Scenario::parse(&minimal(""), "x.toml").unwrap();
    assert_eq!(
        (s.seed, s.engine, s.peers.bootstrap),
        (0, EngineKind::Fleet, 1)
    );
    assert_eq!(s.peers.start_spread, Duration::ZERO);
    assert_eq!(
        s.regions.len(),
        s.data.len(),
        "population weights of every region"
    );
    assert_eq!(s.latency.jitter, Duration::from_millis(2));
    assert_eq!(
        (s.latency.last_mile_min, s.latency.last_mile_max),
        (Duration::from_millis(5), Duration::from_millis(30))
    );
    assert_eq!(s.node, Config::default());
    assert_eq!(s.bootstrap_node, Config::default());
}

#[test]
fn unknown_keys_name_their_table_and_line() {
    let (line, msg) = err(&minimal("pears = 3\n"));
    assert_eq!(line, 5);
    assert_eq!(
        msg,
        "x.toml:5: unknown key `pears` in [peers] (known: count, bootstrap, start_spread_s)"
    );
    let (line, msg) = err("name = \"t\"\nduration = 60\n");
    assert_eq!(line, 2);
    assert!(
        msg.contains("unknown key `duration` at top level (known: name, seed, duration_s"),
        "{msg}"
    );
    let (line, msg) = err(&minimal("[node]\nlow_watermark = 3\n\npers_max = 9\n"));
    assert_eq!(line, 8);
    assert!(msg.contains("unknown key `pers_max` in [node]"), "{msg}");
    let (line, msg) = err(&minimal("[latncy]\njitter_ms = 1\n"));
    assert_eq!(
        (line, msg.contains("unknown key `latncy` at top level")),
        (5, true),
        "{msg}"
    );
    let (line, msg) = err(&minimal("[node.resources]\ncpus = 3\n"));
    assert_eq!(
        (line, msg.contains("unknown key `cpus` in [node.resources]")),
        (6, true),
        "{msg}"
    );
}

#[test]
fn wrong_types_name_the_key_and_what_is_expected() {
    let (line, msg) = err("name = \"t\"\nduration_s = 60\n[peers]\ncount = \"ten\"\n");
    assert_eq!(line, 4);
    assert_eq!(
        msg,
        "x.toml:4: `peers.count` must be a whole number of at least 0, found string \"ten\""
    );
    let (line, msg) = err(&minimal("[latency]\nlast_mile_ms = [1, \"a\"]\n"));
    assert_eq!(line, 6);
    assert!(
        msg.contains("`latency.last_mile_ms` must be a number"),
        "{msg}"
    );
    let (line, msg) = err(&minimal("[node]\nexchange_hops_max = 300\n"));
    assert_eq!(line, 6);
    assert!(
        msg.contains("`node.exchange_hops_max` must be a whole number from 0 to 255"),
        "{msg}"
    );
    let (line, msg) =
        err("name = \"t\"\nduration_s = 60\nengine = \"tokio\"\n[peers]\ncount = 10\n");
    assert_eq!(
        (
            line,
            msg.contains("`engine` must be one of fleet, turmoil, found `tokio`")
        ),
        (3, true),
        "{msg}"
    );
    let (line, msg) = err("name = \"t\"\nduration_s = 60\n[peers]\nbootstrap = 1\n");
    assert_eq!(
        (line, msg.contains("missing key `count` in [peers]")),
        (3, true),
        "{msg}"
    );
    let (_, msg) = err("name = \"t\"\n[peers]\ncount = 3\n");
    assert!(
        msg.contains("missing key `duration_s` at top level"),
        "{msg}"
    );
    let (line, msg) = err("name = \"t\"\nduration_s = = 60\n");
    assert_eq!(line, 2, "{msg}");
}

#[test]
fn unknown_regions_list_the_known_ones() {
    let (line, msg) = err(&minimal("[regions]\nna-east = 1\neu-wst = 2\n"));
    assert_eq!(line, 7);
    assert!(
        msg.starts_with(
            "x.toml:7: unknown region `eu-wst` in [regions] (known: na-east, na-central,"
        ),
        "{msg}"
    );
    let (line, msg) = err(&minimal("[regions]\nna-east = 0\n"));
    assert_eq!(line, 5);
    assert!(msg.contains("every weight in [regions] is zero"), "{msg}");
    let (line, msg) = err(&minimal("[regions]\nna-east = 1\neu-west = -1\n"));
    assert_eq!(
        (line, msg.contains("`regions.eu-west` must be from 0")),
        (7, true),
        "{msg}"
    );
}

#[test]
fn impossible_values_are_refused_at_their_line() {
    let (line, msg) = err("name = \"t\"\nduration_s = 60\n[peers]\ncount = 1\n");
    assert_eq!(line, 4);
    assert!(msg.contains("`peers.count` must be at least 2"), "{msg}");
    let (line, msg) = err(&minimal("bootstrap = 11\n"));
    assert_eq!(
        (
            line,
            msg.contains("`peers.bootstrap` must be from 1 to `peers.count` (10)")
        ),
        (5, true),
        "{msg}"
    );
    let (line, msg) = err(&minimal("start_spread_s = 61\n"));
    assert_eq!(
        (
            line,
            msg.contains("`peers.start_spread_s` must be from 0 to 60")
        ),
        (5, true),
        "{msg}"
    );
    let (line, msg) = err("name = \"t\"\nduration_s = 0\n[peers]\ncount = 3\n");
    assert_eq!(
        (line, msg.contains("`duration_s` must be more than 0")),
        (2, true),
        "{msg}"
    );
    let (line, msg) = err("name = \"a b\"\nduration_s = 1\n[peers]\ncount = 3\n");
    assert_eq!(
        (line, msg.contains("`name` must be non-empty")),
        (1, true),
        "{msg}"
    );
    let (line, msg) = err(&minimal("[latency]\nlast_mile_ms = [30, 5]\n"));
    assert_eq!((line, msg.contains("min <= max")), (6, true), "{msg}");
    let (line, msg) = err(&minimal("[latency]\nlast_mile_ms = [1, 2, 3]\n"));
    assert_eq!((line, msg.contains("found 3 values")), (6, true), "{msg}");
    let (line, msg) = err(&minimal("[latency]\njitter_ms = -1\n"));
    assert_eq!(
        (
            line,
            msg.contains("`latency.jitter_ms` must be from 0 to 10000 ms")
        ),
        (6, true),
        "{msg}"
    );
}

#[test]
fn node_profile_conflicts_point_at_the_key() {
    let (line, msg) = err(&minimal("[node]\nhigh_watermark = 4\nlow_watermark = 6\n"));
    assert_eq!(line, 7, "{msg}");
    assert!(
        msg.contains("`node.low_watermark` must not be larger than `node.high_watermark`"),
        "{msg}"
    );
    let (line, msg) = err(&minimal("[node]\nping_interval_s = 0\n"));
    assert_eq!(
        (
            line,
            msg.contains("`node.ping_interval_s` must be longer than 0 s")
        ),
        (6, true),
        "{msg}"
    );
    let (line, msg) = err(&minimal("[node]\nhigh_watermark = 0\nlow_watermark = 0\n"));
    assert_eq!(
        (
            line,
            msg.contains("`node.high_watermark` must be at least 1")
        ),
        (6, true),
        "{msg}"
    );
    let (line, msg) = err(&minimal(
        "[node]\nping_interval_s = 5\nping_timeout_s = 8\n",
    ));
    assert_eq!(
        (
            line,
            msg.contains("must be shorter than `node.ping_interval_s`")
        ),
        (7, true),
        "{msg}"
    );
    let (line, msg) = err(&minimal("[node]\n\nping_interval_s = 10\n"));
    assert_eq!(
        (
            line,
            msg.contains("`node.ping_timeout_s` (10 s) must be shorter")
        ),
        (7, true),
        "{msg}"
    );
    let (line, msg) = err(&minimal(
        "[node]\nhigh_watermark = 50\n[bootstrap_node]\nhigh_watermark = 4\n",
    ));
    assert_eq!(line, 8, "{msg}");
    assert!(
        msg.contains(
            "`bootstrap_node.low_watermark` must not be larger than `bootstrap_node.high_watermark`"
        ),
        "{msg}"
    );
    let (line, msg) = err(&minimal("[bootstrap_node]\npeers_mx = 4\n"));
    assert_eq!(
        (
            line,
            msg.contains("unknown key `peers_mx` in [bootstrap_node]")
        ),
        (6, true),
        "{msg}"
    );
}

#[test]
fn missing_files_say_so() {
    let e = Scenario::load("/nonexistent/x.toml").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/x.toml: cannot read the scenario"),
        "{e}"
    );
    assert_eq!(e.line(), None);
}

#[test]
fn the_shipped_scenarios_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let quick = Scenario::load(dir.join("quickstart.toml")).unwrap();
    assert!(quick.peers.count >= 1000 && quick.duration >= Duration::from_secs(600));
    assert_eq!(quick.engine, EngineKind::Fleet);
    let small = Scenario::load(dir.join("small.toml")).unwrap();
    assert!((20..=50).contains(&small.peers.count));
}
