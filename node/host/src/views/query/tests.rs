//! Filtering and ordering of peer lists, and reading queries.

use flotilla_core::{Direction, Keypair, PeerId, Resources, SeedTree, Source};

use super::*;

fn id(seed: u64) -> PeerId {
    Keypair::generate(&mut SeedTree::new(seed).rng()).peer_id()
}

/// A connected peer without measurements or advert.
fn peer(seed: u64) -> PeerView {
    PeerView {
        peer_id: id(seed),
        direction: Some(Direction::Outbound),
        hello: true,
        addrs: Vec::new(),
        rtt_ms: None,
        jitter_ms: None,
        rtt_samples: 0,
        resources: None,
        region: None,
        started_at_us: None,
        uptime_s: None,
        source: Source::Dht,
        hops: 0,
        first_seen_us: 0,
        last_seen_us: 0,
    }
}

fn with(
    seed: u64,
    rtt_ms: Option<f64>,
    region: Option<&str>,
    cores_memory: Option<(u32, u64)>,
    uptime_s: Option<u64>,
) -> PeerView {
    PeerView {
        rtt_ms,
        region: region.map(str::to_string),
        resources: cores_memory.map(|(cores, memory_mb)| Resources {
            cores,
            memory_mb,
            disk_gb: 0,
            gpus: 0,
        }),
        uptime_s,
        ..peer(seed)
    }
}

fn ids(peers: &[PeerView]) -> Vec<PeerId> {
    peers.iter().map(|p| p.peer_id).collect()
}

/// Peer ids of `seeds`, in the order their printed forms sort.
fn by_text(seeds: &[u64]) -> Vec<PeerId> {
    let mut v: Vec<PeerId> = seeds.iter().map(|s| id(*s)).collect();
    v.sort_by_key(|p| p.to_string());
    v
}

fn query(pairs: &[(&str, &str)]) -> Result<PeerQuery, QueryError> {
    PeerQuery::from_pairs(pairs.iter().copied())
}

#[test]
fn rtt_order_puts_unmeasured_last_and_breaks_ties_by_peer_id() {
    let peers = vec![
        with(1, None, None, None, None),
        with(2, Some(30.0), None, None, None),
        with(3, Some(5.5), None, None, None),
        with(4, None, None, None, None),
        with(5, Some(30.0), None, None, None),
    ];
    let sorted = PeerQuery::default().apply(peers);
    let ids = ids(&sorted);
    assert_eq!(ids[0], id(3));
    assert_eq!(ids[1..3], by_text(&[2, 5])[..]);
    assert_eq!(ids[3..5], by_text(&[1, 4])[..]);
}

#[test]
fn each_sort_key_orders_present_values_then_missing_ones() {
    let peers = vec![
        with(1, Some(20.0), Some("us-east"), Some((4, 8192)), Some(100)),
        with(2, Some(10.0), Some("eu-west"), Some((16, 4096)), Some(5)),
        with(3, None, None, None, None),
        with(4, Some(1.0), Some("us-east"), Some((4, 65536)), Some(100)),
    ];
    let order = |sort: &str| ids(&query(&[("sort", sort)]).unwrap().apply(peers.clone()));
    // Region by name; ties by RTT.
    assert_eq!(order("region"), [id(2), id(4), id(1), id(3)]);
    // Most cores first; the tie at 4 cores goes to the lower RTT.
    assert_eq!(order("cores"), [id(2), id(4), id(1), id(3)]);
    assert_eq!(order("memory"), [id(4), id(1), id(2), id(3)]);
    // Longest uptime first; the tie at 100 s goes to the lower RTT.
    assert_eq!(order("uptime"), [id(4), id(1), id(2), id(3)]);
    assert_eq!(order("rtt"), [id(4), id(2), id(1), id(3)]);
    assert_eq!(order("peer"), by_text(&[1, 2, 3, 4]));
}

#[test]
fn filters_drop_peers_lacking_the_value() {
    let mut unconnected = with(5, Some(2.0), Some("eu-west"), Some((64, 1 << 20)), None);
    unconnected.direction = None;
    let peers = vec![
        with(1, Some(20.0), Some("us-east"), Some((4, 8192)), None),
        with(2, Some(80.0), Some("eu-west"), Some((16, 4096)), None),
        with(3, None, None, None, None),
        with(4, Some(80.5), Some("ap-south"), Some((2, 1024)), None),
        unconnected,
    ];
    let listed = |pairs: &[(&str, &str)]| ids(&query(pairs).unwrap().apply(peers.clone()));
    // Connected peers only, unless every known peer is asked for.
    assert_eq!(listed(&[]), [id(1), id(2), id(4), id(3)]);
    assert_eq!(listed(&[("known", "true")])[0], id(5));
    assert_eq!(listed(&[("known", "true")]).len(), 5);
    assert_eq!(listed(&[("rtt_max_ms", "80")]), [id(1), id(2)]);
    assert_eq!(listed(&[("rtt_max_ms", "80.5")]), [id(1), id(2), id(4)]);
    assert_eq!(
        listed(&[("region", "eu-west"), ("region", "ap-south")]),
        [id(2), id(4)]
    );
    assert_eq!(listed(&[("cores_min", "4")]), [id(1), id(2)]);
    assert_eq!(listed(&[("memory_min_mb", "5000")]), [id(1)]);
    assert_eq!(
        listed(&[("cores_min", "4"), ("region", "eu-west"), ("known", "true")]),
        [id(5), id(2)]
    );
    assert!(listed(&[("cores_min", "1000")]).is_empty());
}

#[test]
fn bad_queries_name_the_parameter_and_what_is_allowed() {
    let err = |pairs: &[(&str, &str)]| query(pairs).unwrap_err().to_string();
    let e = err(&[("sort", "latency")]);
    assert!(e.contains("`sort`") && e.contains("latency"), "{e}");
    assert!(
        e.contains("rtt, region, cores, memory, uptime, peer"),
        "{e}"
    );
    let e = err(&[("rtt_max_ms", "-1")]);
    assert!(
        e.contains("`rtt_max_ms`") && e.contains("milliseconds"),
        "{e}"
    );
    assert!(err(&[("rtt_max_ms", "NaN")]).contains("`rtt_max_ms`"));
    let e = err(&[("cores_min", "four")]);
    assert!(
        e.contains("`cores_min`") && e.contains("whole number"),
        "{e}"
    );
    assert!(err(&[("memory_min_mb", "-5")]).contains("`memory_min_mb`"));
    assert!(err(&[("known", "yes")]).contains("true or false"));
    assert!(err(&[("region", "")]).contains("`region`"));
    let e = err(&[("colour", "red")]);
    assert!(e.contains("`colour`") && e.contains("memory_min_mb"), "{e}");
    for param in PARAMS {
        assert!(
            QueryError::UnknownParam("x".into())
                .to_string()
                .contains(param)
        );
    }
}

#[test]
fn pairs_read_back_to_the_same_query() {
    let q = PeerQuery {
        sort: PeerSort::Memory,
        regions: vec!["eu-west".into(), "us east".into()],
        rtt_max_ms: Some(12.5),
        cores_min: Some(4),
        memory_min_mb: Some(2048),
        known: true,
    };
    let pairs = q.to_pairs();
    let back = PeerQuery::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
    assert_eq!(back, q);
    assert!(PeerQuery::default().to_pairs().is_empty());
    for sort in PeerSort::ALL {
        assert_eq!(sort.name().parse::<PeerSort>(), Ok(sort));
    }
}
