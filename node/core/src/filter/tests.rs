use super::*;

fn peer(n: u8) -> PeerId {
    PeerId::from_public_key([n; 32])
}

fn advert(n: u8, cores: u32, memory_mb: u64, addrs: &[&str], region: Option<&str>) -> Advert {
    Advert {
        protocol_version: 1,
        peer_id: peer(n),
        listen_addrs: addrs.iter().map(|a| a.to_string()).collect(),
        resources: Resources {
            cores,
            memory_mb,
            disk_gb: 100,
            gpus: 0,
        },
        region: region.map(str::to_string),
        started_at: Timestamp::from_secs(1000),
        timestamp: Timestamp::from_secs(1000),
        executors: Vec::new(),
    }
}

const MINE: Resources = Resources {
    cores: 8,
    memory_mb: 16384,
    disk_gb: 500,
    gpus: 0,
};

fn me() -> LocalView<'static> {
    LocalView {
        peer: peer(0),
        resources: &MINE,
        region: Some("eu-west"),
    }
}

fn cand<'a>(a: Option<&'a Advert>, rtt_ms: Option<u64>, rank: Option<usize>) -> Candidate<'a> {
    Candidate {
        peer: a.map_or(peer(99), |a| a.peer_id),
        advert: a,
        rtt: rtt_ms.map(Duration::from_millis),
        rtt_rank: rank,
        now: Timestamp::from_secs(5000),
    }
}

fn spec(toml_text: &str) -> Result<Filter, String> {
    #[derive(Deserialize)]
    struct W {
        filter: FilterSpec,
    }
    let w: W = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    w.filter.compile("peers.filter").map_err(|e| e.to_string())
}

#[test]
fn latency_is_unknown_until_measured() {
    let f = Filter::RttMax(Duration::from_millis(50));
    let a = advert(1, 8, 16384, &["/ip4/1.2.3.4/tcp/1"], None);
    assert_eq!(
        f.check(&me(), &cand(Some(&a), None, None)),
        Verdict::Unknown
    );
    assert!(f.check(&me(), &cand(Some(&a), Some(50), Some(0))).passes());
    assert_eq!(
        f.check(&me(), &cand(Some(&a), Some(51), Some(0))),
        Verdict::Fail("rtt 51 ms above 50 ms".into())
    );
    let k = Filter::Fastest(3);
    assert!(k.check(&me(), &cand(Some(&a), Some(90), Some(2))).passes());
    assert!(k.check(&me(), &cand(Some(&a), Some(90), Some(3))).fails());
}

#[test]
fn resources_uptime_region_and_addresses() {
    let small = advert(1, 2, 2048, &["/ip4/10.0.0.1/tcp/1"], Some("us-east"));
    let big = advert(
        2,
        16,
        32768,
        &["/ip4/8.8.8.8/tcp/1", "/ip4/10.0.0.2/tcp/1"],
        Some("eu-west"),
    );
    let min = Filter::ResourcesMin(ResourcesMin {
        cores: Some(4),
        memory_mb: Some(8192),
        ..ResourcesMin::default()
    });
    assert_eq!(
        min.check(&me(), &cand(Some(&small), None, None)),
        Verdict::Fail("cores 2 below 4".into())
    );
    assert!(min.check(&me(), &cand(Some(&big), None, None)).passes());
    assert_eq!(min.check(&me(), &cand(None, None, None)), Verdict::Unknown);

    let mut docker = small.clone();
    docker.executors = vec!["docker".into(), "wasm".into()];
    let wants = spec("[filter]\nexecutors = [\"docker\"]\n").unwrap();
    assert!(
        wants
            .check(&me(), &cand(Some(&docker), None, None))
            .passes()
    );
    assert_eq!(
        wants.check(&me(), &cand(Some(&small), None, None)),
        Verdict::Fail("no executor \"docker\"".into())
    );

    let similar = Filter::ResourcesSimilar(2.0);
    assert!(similar.check(&me(), &cand(Some(&big), None, None)).passes());
    assert!(
        similar
            .check(&me(), &cand(Some(&small), None, None))
            .fails()
    );

    // Started at 1000 s, judged at 5000 s: up 4000 s.
    assert!(
        Filter::UptimeMin(Duration::from_secs(4000))
            .check(&me(), &cand(Some(&big), None, None))
            .passes()
    );
    assert!(
        Filter::UptimeMin(Duration::from_secs(4001))
            .check(&me(), &cand(Some(&big), None, None))
            .fails()
    );

    assert!(
        Filter::SameRegion
            .check(&me(), &cand(Some(&big), None, None))
            .passes()
    );
    assert!(
        Filter::SameRegion
            .check(&me(), &cand(Some(&small), None, None))
            .fails()
    );

    assert!(
        Filter::DenyPrivate
            .check(&me(), &cand(Some(&small), None, None))
            .fails()
    );
    assert!(
        Filter::DenyPrivate
            .check(&me(), &cand(Some(&big), None, None))
            .passes()
    );
    for (addr, public) in [
        ("/dns4/n7/tcp/4001", true),
        ("/dns/localhost/tcp/1", false),
        ("/ip6/::1/tcp/1", false),
        ("/ip4/100.64.0.1/tcp/1", false),
        ("/ip4/1.1.1.1/udp/1/quic-v1", true),
        ("/unix/tmp/x", false),
    ] {
        assert_eq!(is_public_addr(addr), public, "{addr}");
    }
    let none = advert(3, 8, 16384, &[], None);
    assert!(
        Filter::HasAddress
            .check(&me(), &cand(Some(&none), None, None))
            .fails()
    );
    let own = advert(0, 8, 16384, &["/ip4/8.8.4.4/tcp/1"], None);
    assert!(
        Filter::NotSelf
            .check(&me(), &cand(Some(&own), None, None))
            .fails()
    );
}

#[test]
fn composition_follows_three_valued_logic() {
    let a = advert(1, 8, 16384, &["/ip4/8.8.8.8/tcp/1"], Some("eu-west"));
    let f = spec(
        r#"
        [filter]
        all = [{ rtt_max_ms = 80 }, "same_region", { not = { regions = ["us-east"] } }]
        "#,
    )
    .unwrap();
    // RTT unknown, the rest passes: unknown.
    assert_eq!(
        f.check(&me(), &cand(Some(&a), None, None)),
        Verdict::Unknown
    );
    assert!(f.check(&me(), &cand(Some(&a), Some(20), Some(0))).passes());
    assert!(f.check(&me(), &cand(Some(&a), Some(200), Some(0))).fails());
    // A failure decides `all` even when something else is unknown.
    let far = advert(2, 8, 16384, &["/ip4/8.8.8.8/tcp/1"], Some("us-east"));
    assert!(f.check(&me(), &cand(Some(&far), None, None)).fails());

    let any =
        spec("[filter]\nany = [{ rtt_max_ms = 10 }, { regions = [\"ap-south\"] }]\n").unwrap();
    assert_eq!(
        any.check(&me(), &cand(Some(&a), None, None)),
        Verdict::Unknown
    );
    assert!(any.check(&me(), &cand(Some(&a), Some(5), Some(0))).passes());
    match any.check(&me(), &cand(Some(&a), Some(50), Some(0))) {
        Verdict::Fail(r) => assert!(r.starts_with("none of: rtt 50 ms"), "{r}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(
        spec("[filter]\nall = []\n")
            .unwrap()
            .check(&me(), &cand(None, None, None))
            .passes()
    );
    assert!(
        spec("[filter]\nany = []\n")
            .unwrap()
            .check(&me(), &cand(None, None, None))
            .fails()
    );
}

#[test]
fn allow_and_deny_lists_match_peer_ids_and_addresses() {
    let a = advert(1, 8, 16384, &["/ip4/203.0.113.7/tcp/1"], None);
    let b = advert(2, 8, 16384, &["/ip6/2001:db9::1/udp/1/quic-v1"], None);
    let allow = spec(&format!(
        "[filter.allow]\ncidrs = [\"203.0.113.0/24\"]\npeers = [\"{}\"]\n",
        peer(2)
    ))
    .unwrap();
    assert!(allow.check(&me(), &cand(Some(&a), None, None)).passes());
    assert!(allow.check(&me(), &cand(Some(&b), None, None)).passes());
    let c = advert(3, 8, 16384, &["/ip4/198.51.100.1/tcp/1"], None);
    assert!(allow.check(&me(), &cand(Some(&c), None, None)).fails());

    let deny = spec("[filter.deny]\ncidrs = [\"2001:db9::/32\"]\n").unwrap();
    assert!(deny.check(&me(), &cand(Some(&b), None, None)).fails());
    assert!(deny.check(&me(), &cand(Some(&a), None, None)).passes());
}

#[test]
fn bad_specs_name_the_key() {
    let e = spec("[filter]\nall = [\"has_address\", { deny = { cidrs = [\"10.0.0/8\"] } }]\n")
        .unwrap_err();
    assert!(e.starts_with("peers.filter.all[1].deny.cidrs[0]: "), "{e}");
    let e = spec("[filter]\nany = [{ fastest = 0 }]\n").unwrap_err();
    assert!(
        e.starts_with("peers.filter.any[0].fastest: must be at least 1"),
        "{e}"
    );
    let e = spec("[filter]\nresources_similar = 0.5\n").unwrap_err();
    assert!(e.contains("resources_similar: 0.5 is not a factor"), "{e}");
    let e = spec("[filter]\nregions = []\n").unwrap_err();
    assert!(e.contains("regions: is empty"), "{e}");
    let e = spec("[filter]\nexecutors = []\n").unwrap_err();
    assert!(e.contains("executors: is empty"), "{e}");
    let e = spec("[filter.allow]\npeers = [\"nope\"]\n").unwrap_err();
    assert!(
        e.starts_with("peers.filter.allow.peers[0]: \"nope\" is not a peer id"),
        "{e}"
    );
    let e = spec("[filter]\nrtt_max = 5\n").unwrap_err();
    assert!(e.contains("unknown variant `rtt_max`"), "{e}");
    let deep = (0..10).fold("\"has_address\"".to_string(), |acc, _| {
        format!("{{ not = {acc} }}")
    });
    let e = spec(&format!("filter = {deep}\n")).unwrap_err();
    assert!(e.contains("nest deeper than 8 levels"), "{e}");
}

#[test]
fn private_ranges() {
    for p in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(is_private(p.parse().unwrap()), "{p}");
    }
    for p in ["8.8.8.8", "100.128.0.1", "2606:4700::1", "::ffff:8.8.8.8"] {
        assert!(!is_private(p.parse().unwrap()), "{p}");
    }
    assert_eq!(
        addr_ip("/ip4/1.2.3.4/tcp/5"),
        Some("1.2.3.4".parse().unwrap())
    );
    assert_eq!(addr_ip("/dns4/example.org/tcp/5"), None);
}

#[test]
fn time_and_rank_dependence_is_known() {
    let f =
        spec("[filter]\nall = [{ rtt_max_ms = 80 }, { not = { uptime_min_s = 60 } }]\n").unwrap();
    assert!(f.changes_with_time() && !f.uses_rank());
    let f = spec("[filter]\nany = [{ fastest = 3 }, \"has_address\"]\n").unwrap();
    assert!(f.changes_with_time() && f.uses_rank());
    let f = spec("[filter]\nall = [{ rtt_max_ms = 80 }, \"deny_private\"]\n").unwrap();
    assert!(!f.changes_with_time() && !f.uses_rank());
    assert!(f.uses_rtt());
    let f = spec("[filter]\nnot = { uptime_min_s = 60 }\n").unwrap();
    assert!(f.changes_with_time() && !f.uses_rtt());
    let f = spec("[filter]\nany = [{ fastest = 3 }]\n").unwrap();
    assert!(f.uses_rtt());
}
