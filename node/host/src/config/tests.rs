//! Parsing, defaults, overrides and error messages of the node configuration.

use super::*;
use crate::rcmgr::Machine;

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml(text, Path::new("node.toml"), Overrides::default())
}

#[test]
fn no_file_gives_defaults() {
    let o = Overrides {
        data_dir: Some("/tmp/x".into()),
        ..Overrides::default()
    };
    let c = NodeConfig::load(None, o).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.api, DEFAULT_API);
    assert!(c.core.resources.cores >= 1);
    assert_eq!(
        c.core.low_watermark,
        flotilla_core::Config::default().low_watermark
    );
}

#[test]
fn file_values_apply_and_flags_override_them() {
    let text = r#"
        data_dir = "/srv/flotilla"
        listen = ["/ip4/127.0.0.1/tcp/0"]
        api = "127.0.0.1:9000"
        region = "eu-west"
        [resources]
        memory_mb = 2048
        [peers]
        low_watermark = 3
        ping_interval_s = 2
    "#;
    let c = parse(text).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/srv/flotilla"));
    assert_eq!(
        c.listen,
        vec!["/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>().unwrap()]
    );
    assert_eq!(c.api.port(), 9000);
    assert_eq!(c.core.region.as_deref(), Some("eu-west"));
    assert_eq!(c.core.resources.memory_mb, 2048);
    assert_eq!(c.core.low_watermark, 3);
    assert_eq!(c.core.ping_interval, Duration::from_secs(2));

    let o = Overrides {
        api: Some("127.0.0.1:9001".parse().unwrap()),
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        ..Overrides::default()
    };
    let c = NodeConfig::from_toml(text, Path::new("node.toml"), o).unwrap();
    assert_eq!(c.api.port(), 9001);
    assert_eq!(c.listen[0].to_string(), "/ip4/127.0.0.1/udp/0/quic-v1");
}

#[test]
fn errors_name_file_line_and_fix() {
    let err = parse("region = \"x\"\n\n[peers]\npeers_targett = 3\n").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("node.toml:4:"), "{text}");
    assert!(text.contains("peers_targett"), "{text}");

    let err = parse("listen = [\"/ip4/1.2.3.4/tcp/x\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("node.toml:1:") && err.contains("write it like"),
        "{err}"
    );

    let err = parse("api = \"0.0.0.0:7400\"").unwrap_err().to_string();
    assert!(err.contains("not a loopback address"), "{err}");

    let err = parse("[peers]\nlow_watermark = 50\nhigh_watermark = 10\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("node.toml:2: invalid setting `[peers] low_watermark`"),
        "{err}"
    );

    let err = parse("[peers]\n\n  ping_interval_s  = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("node.toml:3: invalid setting `[peers] ping_interval_s`"),
        "{err}"
    );
}

#[test]
fn api_flag_must_be_loopback() {
    let o = Overrides {
        api: Some("192.0.2.1:7400".parse().unwrap()),
        ..Overrides::default()
    };
    assert!(matches!(parse_with(o), Err(ConfigError::ApiNotLoopback(_))));
    assert_eq!(parse_socket_addr("localhost:1").unwrap().port(), 1);
    assert!(parse_socket_addr("nonsense").is_err());
}

fn parse_with(o: Overrides) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml("", Path::new("node.toml"), o)
}

#[test]
fn line_column_counts_from_one() {
    assert_eq!(line_column("ab\ncd", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
}

const MACHINE: Machine = Machine {
    memory_bytes: 8 << 30,
    fds: 16384,
};

fn parse_on(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml_on(text, Path::new("node.toml"), Overrides::default(), MACHINE)
}

#[test]
fn limits_default_to_the_machine_and_take_overrides() {
    let c = parse_on("").unwrap();
    assert_eq!(c.limits, Limits::for_machine(8 << 30, 16384));
    assert!(c.allowlist.is_empty());

    let peer =
        flotilla_core::Keypair::generate(&mut flotilla_core::SeedTree::new(1).rng()).peer_id();
    let text = r#"
        [limits.system]
        conns_in = 2
        memory = "default"
        [limits.peer]
        streams_in = "block"
        [limits.protocols."/flotilla/core/1.0.0"]
        streams = "unlimited"
        [limits.inbound]
        conns_per_subnet = 3
        [allowlist]
        cidrs = ["10.0.0.0/8", "192.0.2.7"]
        peers = ["PEER"]
    "#
    .replace("PEER", &peer.to_string());
    let c = parse_on(&text).unwrap();
    let defaults = Limits::for_machine(8 << 30, 16384);
    assert_eq!(c.limits.system.conns_in, 2);
    assert_eq!(c.limits.system.memory, defaults.system.memory);
    // Defaults below a lowered parent follow it down.
    assert_eq!(c.limits.transient.conns_in, 2);
    assert_eq!(c.limits.peer.streams_in, 0);
    assert_eq!(
        c.limits.protocol_limits("/flotilla/core/1.0.0").streams,
        flotilla_core::rcmgr::UNLIMITED
    );
    assert_eq!(c.limits.inbound.conns_per_subnet, 3);
    assert!(c.allowlist.allows_addr("10.1.2.3".parse().unwrap()));
    assert!(c.allowlist.allows_addr("192.0.2.7".parse().unwrap()));
    assert!(!c.allowlist.allows_addr("192.0.2.8".parse().unwrap()));
    assert!(c.allowlist.allows_peer(&peer));
}

#[test]
fn invalid_limits_name_the_key_and_line() {
    // A child above its parent, in a table of its own.
    let err = parse_on(
        "region = \"x\"\n[limits.system]\nmemory = 1000\n[limits.peer]\n\nmemory = 2000\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("node.toml:6: invalid setting `limits.peer.memory`"),
        "{err}"
    );
    assert!(err.contains("limits.system.memory = 1000"), "{err}");

    // The same as a dotted key of [limits].
    let err = parse_on("[limits]\nsystem.conns = 10\npeer.conns = 20\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("node.toml:3: invalid setting `limits.peer.conns`"),
        "{err}"
    );

    // A named protocol above the system.
    let err =
        parse_on("[limits.system]\nstreams_in = 5\n[limits.protocols.\"/p/1\"]\nstreams_in = 6\n")
            .unwrap_err()
            .to_string();
    assert!(
        err.starts_with("node.toml:4: invalid setting `limits.protocols.\"/p/1\".streams_in`"),
        "{err}"
    );

    // A prefix longer than the address.
    let err = parse_on("[limits.inbound]\nv4_prefix = 33\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("node.toml:2: invalid setting `limits.inbound.v4_prefix`"),
        "{err}"
    );

    // Negative numbers, unknown scopes and unknown resources fail while parsing, with the
    // line and column.
    for (text, line, needle) in [
        ("[limits.system]\nconns_in = -1\n", 2, "negative"),
        ("[limits.sytem]\nconns_in = 1\n", 1, "sytem"),
        ("[limits.peer]\nconnections = 1\n", 2, "connections"),
        ("[limits.peer]\nmemory = \"lots\"\n", 2, "lots"),
        ("[allowlist]\ncidrs = [\"10.0.0.0/33\"]\n", 2, "10.0.0.0/33"),
        ("[allowlist]\npeers = [\"nobody\"]\n", 2, "nobody"),
    ] {
        let err = parse_on(text).unwrap_err();
        let s = err.to_string();
        assert!(
            matches!(err, ConfigError::Parse { line: l, .. } if l == line),
            "{text:?}: {s}"
        );
        assert!(s.contains(needle), "{text:?}: {s}");
    }
}

#[test]
fn discovery_defaults_to_nothing_and_mdns_off() {
    let c = parse("").unwrap();
    assert!(c.discovery.pools.is_empty());
    assert!(c.discovery.find_pools.is_empty());
    assert!(!c.discovery.mdns);

    let text = r#"
        [discovery]
        pools = ["gpu-a100", "cpu.large_2", "gpu-a100"]
        find_pools = ["gpu-h100"]
        mdns = true
    "#;
    let c = parse(text).unwrap();
    let names = |v: &[PoolName]| v.iter().map(|p| p.as_str().to_string()).collect::<Vec<_>>();
    // Repeats are dropped, the order kept.
    assert_eq!(names(&c.discovery.pools), ["gpu-a100", "cpu.large_2"]);
    assert_eq!(names(&c.discovery.find_pools), ["gpu-h100"]);
    assert!(c.discovery.mdns);
}

#[test]
fn bad_discovery_settings_name_the_key_and_line() {
    let too_many = format!(
        "[discovery]\nfind_pools = [{}]\n",
        (0..=POOLS_MAX)
            .map(|i| format!("\"p{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let long = format!("[discovery]\npools = [\"{}\"]\n", "x".repeat(65));
    for (text, line, needles) in [
        (
            "region = \"x\"\n[discovery]\npools = [\"GPU\"]\n",
            3,
            &["`[discovery] pools`", "`GPU`", "lowercase"][..],
        ),
        (
            "[discovery]\nfind_pools = [\"\"]\n",
            2,
            &["`[discovery] find_pools`", "empty"][..],
        ),
        (
            "[discovery]\nfind_pools = [\"a/b\"]\n",
            2,
            &["`[discovery] find_pools`", "'/'"][..],
        ),
        (&long, 2, &["`[discovery] pools`", "longer than 64"][..]),
        (
            &too_many,
            2,
            &["`[discovery] find_pools`", "at most 16"][..],
        ),
        ("[discovery]\npools = \"gpu\"\n", 2, &["sequence"][..]),
        ("[discovery]\nmdns = \"yes\"\n", 2, &["bool"][..]),
        ("[discovery]\nmdsn = true\n", 2, &["mdsn"][..]),
    ] {
        let err = parse(text).unwrap_err();
        let s = err.to_string();
        assert!(
            matches!(err, ConfigError::Parse { line: l, .. } if l == line),
            "{text:?}: {s}"
        );
        assert!(s.starts_with(&format!("node.toml:{line}:")), "{s}");
        for needle in needles {
            assert!(s.contains(needle), "{text:?}: {needle} not in {s}");
        }
    }
}

#[test]
fn peers_profile_filter_and_watermarks() {
    let text = r#"
[resources]
executors = ["docker"]

[peers]
profile = "data-centre"
low_watermark = 40
conn_grace_s = 5

[peers.filter]
all = [{ rtt_max_ms = 80 }, { executors = ["docker"] }]
"#;
    let c = parse(text).unwrap();
    // The profile sets the high watermark; the file's low watermark wins over the profile's.
    assert_eq!((c.core.low_watermark, c.core.high_watermark), (40, 256));
    assert_eq!(c.core.conn_grace, Duration::from_secs(5));
    assert_eq!(c.core.executors, vec!["docker".to_string()]);
    assert!(matches!(c.core.filter, flotilla_core::filter::Filter::All(ref v) if v.len() == 2));

    let err = parse("[peers]\nprofile = \"huge\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("node.toml:2:"), "{err}");
    assert!(err.contains("data-centre"), "{err}");

    let bad = "[peers]\nlow_watermark = 2\n\n[peers.filter]\nall = [\"has_address\", { deny = { cidrs = [\"10.0.0/8\"] } }]\n";
    let err = parse(bad).unwrap_err().to_string();
    assert!(err.starts_with("node.toml:4: "), "{err}");
    assert!(err.contains("peers.filter.all[1].deny.cidrs[0]"), "{err}");
}

#[test]
fn a_data_centre_node_refuses_mdns() {
    let text = "[peers]\nprofile = \"data-centre\"\n\n[discovery]\nmdns = true\n";
    let err = parse(text).unwrap_err().to_string();
    assert!(err.starts_with("node.toml:5: "), "{err}");
    assert!(err.contains("data-centre"), "{err}");
    let c = parse("[peers]\nprofile = \"data-centre\"\n").unwrap();
    assert!(!c.discovery.mdns);
}

#[test]
fn a_high_watermark_above_the_connection_limit_names_both_keys() {
    let text = "[peers]\nhigh_watermark = 500\n\n[limits.system]\nconns = 100\n";
    let err = parse(text).unwrap_err().to_string();
    assert!(err.starts_with("node.toml:2: "), "{err}");
    assert!(
        err.contains("peers.high_watermark = 500 is above limits.system.conns = 100"),
        "{err}"
    );
    assert!(
        err.contains("lower peers.high_watermark or raise limits.system.conns"),
        "{err}"
    );
    let err = parse("[peers]\npressure_per_mille = 1001\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("pressure_per_mille"), "{err}");
}

#[test]
fn job_rtt_settings_apply_and_zero_checks_are_refused() {
    let c = parse("[jobs]\nrtt_check_s = 5\nrtt_replace_after_s = 90\n").unwrap();
    assert_eq!(c.core.jobs.rtt.check_every, Duration::from_secs(5));
    assert_eq!(c.core.jobs.rtt.replace_after, Duration::from_secs(90));
    let e = parse("[jobs]\nrtt_check_s = 0\n").unwrap_err().to_string();
    assert!(
        e.contains("node.toml:2") && e.contains("jobs.rtt_check_s") && e.contains("at least 1"),
        "{e}"
    );
}
