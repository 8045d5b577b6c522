//! Parsing, defaults, overrides and error messages of the node configuration.

use super::*;

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
        c.core.peers_target,
        flotilla_core::Config::default().peers_target
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
        peers_target = 3
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
    assert_eq!(c.core.peers_target, 3);
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

    let err = parse("[peers]\npeers_target = 50\npeers_max = 10\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("node.toml:2: invalid setting `[peers] peers_target`"),
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
