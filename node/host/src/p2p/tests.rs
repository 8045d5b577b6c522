//! In-process swarms on loopback: the NetEvent contract, bad-frame handling and discovery.

use std::time::Duration;

use flotilla_core::{DialId, Direction, Keypair, Message, SeedTree};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::Multiaddr;

use super::discovery::PoolName;
use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// A shared resource manager with `limits` for a machine of 8 GiB and 16384 fds.
pub(super) fn rcmgr_with(limits: flotilla_core::rcmgr::Limits, metrics: Metrics) -> SharedRcmgr {
    let machine = crate::rcmgr::Machine {
        memory_bytes: 8 << 30,
        fds: 16384,
    };
    SharedRcmgr::new(
        limits,
        flotilla_core::rcmgr::Allowlist::default(),
        machine,
        metrics,
    )
}

async fn start(seed: u64, listen: &[&str]) -> (Keypair, P2pNetwork) {
    start_with(
        seed,
        listen,
        flotilla_core::rcmgr::Limits::default(),
        Metrics::new(),
    )
    .await
}

async fn start_with(
    seed: u64,
    listen: &[&str],
    limits: flotilla_core::rcmgr::Limits,
    metrics: Metrics,
) -> (Keypair, P2pNetwork) {
    start_full(
        seed,
        listen,
        &[],
        limits,
        metrics,
        &DiscoveryConfig::default(),
    )
    .await
}

async fn start_full(
    seed: u64,
    listen: &[&str],
    bootstrap: &[Multiaddr],
    limits: flotilla_core::rcmgr::Limits,
    metrics: Metrics,
    discovery: &DiscoveryConfig,
) -> (Keypair, P2pNetwork) {
    let kp = Keypair::generate(&mut SeedTree::new(seed).rng());
    let listen: Vec<Multiaddr> = listen.iter().map(|a| a.parse().unwrap()).collect();
    let rcmgr = rcmgr_with(limits, metrics.clone());
    let mut net = P2pNetwork::start(&kp, &listen, bootstrap, rcmgr, metrics, discovery).unwrap();
    net.wait_listening(WAIT).await.unwrap();
    (kp, net)
}

fn addr_with(net: &P2pNetwork, proto: &str) -> String {
    let a = net
        .listen_addrs()
        .iter()
        .find(|a| a.to_string().contains(proto))
        .unwrap();
    a.to_string()
}

/// Polls both networks until `done` holds for the events seen so far on each side.
async fn pump(
    a: &mut P2pNetwork,
    b: &mut P2pNetwork,
    done: impl Fn(&[NetEvent], &[NetEvent]) -> bool,
) -> (Vec<NetEvent>, Vec<NetEvent>) {
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    let result = tokio::time::timeout(WAIT, async {
        while !done(&seen_a, &seen_b) {
            tokio::select! {
                Some(ev) = a.next_event() => seen_a.push(ev),
                Some(ev) = b.next_event() => seen_b.push(ev),
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "timed out; a saw {seen_a:?}, b saw {seen_b:?}"
    );
    (seen_a, seen_b)
}

#[tokio::test]
async fn dial_connect_message_disconnect_over_quic() {
    let (ka, mut a) = start(1, &["/ip4/127.0.0.1/udp/0/quic-v1"]).await;
    let (kb, mut b) = start(2, &["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"]).await;
    assert_eq!(b.listen_addrs().len(), 2);
    assert!(
        b.listen_addrs()
            .iter()
            .all(|a| !a.to_string().contains("/p2p/"))
    );
    let (pa, pb) = (ka.peer_id(), kb.peer_id());

    a.dial(DialId(7), &addr_with(&b, "quic"), Some(pb));
    let (ea, eb) = pump(&mut a, &mut b, |ea, eb| {
        ea.iter().any(|e| matches!(e, NetEvent::Connected { .. }))
            && eb.iter().any(|e| matches!(e, NetEvent::Connected { .. }))
    })
    .await;
    assert!(ea.iter().any(|e| matches!(e,
        NetEvent::Connected { peer, direction: Direction::Outbound, dial: Some(DialId(7)) } if *peer == pb)));
    assert!(eb.iter().any(|e| matches!(e,
        NetEvent::Connected { peer, direction: Direction::Inbound, dial: None } if *peer == pa)));

    // A second dial to a connected peer is answered at once with its dial id.
    a.dial(DialId(8), &addr_with(&b, "quic"), Some(pb));
    pump(&mut a, &mut b, |ea, _| {
        ea.iter().any(|e| {
            matches!(
                e,
                NetEvent::Connected {
                    dial: Some(DialId(8)),
                    ..
                }
            )
        })
    })
    .await;

    a.send(pb, Message::Ping { nonce: 42 });
    b.send(pa, Message::Pong { nonce: 43 });
    let (ea, eb) = pump(&mut a, &mut b, |ea, eb| {
        ea.iter().any(|e| matches!(e, NetEvent::Message { .. }))
            && eb.iter().any(|e| matches!(e, NetEvent::Message { .. }))
    })
    .await;
    assert!(eb.iter().any(|e| matches!(e,
        NetEvent::Message { from, message: Message::Ping { nonce: 42 } } if *from == pa)));
    assert!(ea.iter().any(|e| matches!(e,
        NetEvent::Message { from, message: Message::Pong { nonce: 43 } } if *from == pb)));

    a.disconnect(pb);
    let (ea, eb) = pump(&mut a, &mut b, |ea, eb| {
        ea.iter()
            .any(|e| matches!(e, NetEvent::Disconnected { .. }))
            && eb
                .iter()
                .any(|e| matches!(e, NetEvent::Disconnected { .. }))
    })
    .await;
    assert!(
        ea.iter()
            .any(|e| matches!(e, NetEvent::Disconnected { peer } if *peer == pb))
    );
    assert!(
        eb.iter()
            .any(|e| matches!(e, NetEvent::Disconnected { peer } if *peer == pa))
    );
}

#[tokio::test]
async fn failed_dials_are_reported_with_their_id() {
    let (_, mut a) = start(3, &["/ip4/127.0.0.1/tcp/0"]).await;
    let (kb, mut b) = start(4, &["/ip4/127.0.0.1/tcp/0"]).await;
    let wrong = Keypair::generate(&mut SeedTree::new(5).rng()).peer_id();
    // B's address, but expecting another peer: the handshake reveals the mismatch.
    a.dial(DialId(1), &addr_with(&b, "tcp"), Some(wrong));
    a.dial(DialId(2), "not a multiaddr", None);
    let (ea, _) = pump(&mut a, &mut b, |ea, _| {
        ea.iter()
            .filter(|e| matches!(e, NetEvent::DialFailed { .. }))
            .count()
            == 2
    })
    .await;
    for id in [1, 2] {
        assert!(
            ea.iter()
                .any(|e| matches!(e, NetEvent::DialFailed { dial, .. } if dial.0 == id))
        );
    }
    assert!(
        !ea.iter()
            .any(|e| matches!(e, NetEvent::Connected { peer, .. } if *peer == wrong))
    );
    let _ = kb;
}

/// A raw libp2p peer speaking the core protocol badly.
pub(super) fn raw_swarm() -> libp2p::Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

#[tokio::test]
async fn a_bad_frame_closes_only_its_stream() {
    let metrics = Metrics::new();
    let kb = Keypair::generate(&mut SeedTree::new(6).rng());
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    let rcmgr = rcmgr_with(flotilla_core::rcmgr::Limits::default(), metrics.clone());
    let mut b = P2pNetwork::start(
        &kb,
        &[listen],
        &[],
        rcmgr,
        metrics.clone(),
        &DiscoveryConfig::default(),
    )
    .unwrap();
    b.wait_listening(WAIT).await.unwrap();
    let target = with_p2p(&b.listen_addrs()[0], b.local_peer_id());

    let mut raw = raw_swarm();
    let raw_id = *raw.local_peer_id();
    let mut control = raw.behaviour().new_control();
    raw.dial(target).unwrap();
    let raw_task = tokio::spawn(async move {
        loop {
            raw.select_next_some().await;
        }
    });

    let b_id = b.local_peer_id();
    let attack = async move {
        // An oversized length prefix: the node must close this stream.
        let mut bad = control.open_stream(b_id, CORE_PROTOCOL).await.unwrap();
        bad.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        bad.flush().await.unwrap();
        let mut buf = [0u8; 1];
        let read = bad.read(&mut buf).await;
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "stream still open: {read:?}"
        );
        // A malformed body: closed too.
        let mut bad = control.open_stream(b_id, CORE_PROTOCOL).await.unwrap();
        bad.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        bad.flush().await.unwrap();
        let read = bad.read(&mut buf).await;
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "stream still open: {read:?}"
        );
        // The connection and the protocol still work on a new stream.
        let mut good = control.open_stream(b_id, CORE_PROTOCOL).await.unwrap();
        let frame = flotilla_core::wire::encode_frame(&Message::Ping { nonce: 9 }).unwrap();
        good.write_all(&frame).await.unwrap();
        good.flush().await.unwrap();
        good
    };
    let raw_core = addr::core_peer(&raw_id).unwrap();
    let result = tokio::time::timeout(WAIT, async {
        tokio::pin!(attack);
        let mut good = None;
        let mut delivered = false;
        while !(delivered && good.is_some()) {
            tokio::select! {
                g = &mut attack, if good.is_none() => good = Some(g),
                Some(ev) = b.next_event() => {
                    if let NetEvent::Message { from, message } = ev {
                        assert_eq!(from, raw_core);
                        assert_eq!(message, Message::Ping { nonce: 9 });
                        delivered = true;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "the valid frame after the bad ones was not delivered"
    );
    let text = metrics.encode();
    assert!(
        text.contains("flotilla_frames_rejected_total{reason=\"oversized\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("flotilla_frames_rejected_total{reason=\"malformed\"} 1"),
        "{text}"
    );
    raw_task.abort();
}

#[tokio::test]
async fn adverts_gossip_and_dht_discovery() {
    let (ka, mut a) = start(7, &["/ip4/127.0.0.1/tcp/0"]).await;
    let (kb, mut b) = start(8, &["/ip4/127.0.0.1/tcp/0"]).await;
    let (pa, pb) = (ka.peer_id(), kb.peer_id());
    let mut now = flotilla_core::Timestamp::from_secs(1_700_000_000);
    let config = flotilla_core::Config {
        listen_addrs: a.listen_addrs().iter().map(|a| a.to_string()).collect(),
        ..flotilla_core::Config::default()
    };
    let node = flotilla_core::Node::new(config, ka, SeedTree::new(9), now).unwrap();

    a.dial(DialId(1), &addr_with(&b, "tcp"), Some(pb));
    let (mut advert, mut discovered) = (false, false);
    let result = tokio::time::timeout(WAIT, async {
        while !(advert && discovered) {
            // Each step may publish; a jump of the clock makes every step a retry.
            a.after_step(&node, now);
            now = now + ADVERT_GOSSIP_INTERVAL;
            tokio::select! {
                Some(ev) = a.next_event() => {
                    if let NetEvent::Discovered { peer, addrs, source } = ev {
                        assert_eq!(peer, pb);
                        assert_eq!(source, flotilla_core::Source::Dht);
                        assert!(addrs.iter().all(|a| !a.contains("/p2p/")), "{addrs:?}");
                        discovered = true;
                    }
                }
                Some(ev) = b.next_event() => {
                    if let NetEvent::Advert { from, advert: signed } = ev {
                        assert_eq!(from, pa);
                        assert_eq!(&signed, node.advert());
                        advert = true;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
    .await;
    assert!(result.is_ok(), "advert {advert}, discovered {discovered}");
}

/// Starts a node on loopback TCP that bootstraps from `bootstrap` and discovers as `discovery`
/// says.
async fn start_discovering(
    seed: u64,
    bootstrap: &[Multiaddr],
    discovery: &DiscoveryConfig,
    metrics: Metrics,
) -> (Keypair, P2pNetwork) {
    let limits = flotilla_core::rcmgr::Limits::default();
    start_full(
        seed,
        &["/ip4/127.0.0.1/tcp/0"],
        bootstrap,
        limits,
        metrics,
        discovery,
    )
    .await
}

#[tokio::test]
async fn pool_providers_are_found_through_a_third_node() {
    let (_, mut c) = start(20, &["/ip4/127.0.0.1/tcp/0"]).await;
    let via_c = vec![with_p2p(&c.listen_addrs()[0], c.local_peer_id())];
    let pool: PoolName = "p1".parse().unwrap();
    let fast = DiscoveryConfig {
        find_interval: Duration::from_millis(500),
        ..DiscoveryConfig::default()
    };

    // A provides in the pool; it knows only C.
    let provides = DiscoveryConfig {
        pools: vec![pool.clone()],
        ..fast.clone()
    };
    let (ka, mut a) = start_discovering(21, &via_c, &provides, Metrics::new()).await;
    let announced = tokio::time::timeout(WAIT, async {
        while a.discovery.provided == 0 {
            // The announcement's end yields no event: look again now and then.
            tokio::select! {
                Some(_) = a.next_event() => {}
                Some(_) = c.next_event() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await;
    assert!(announced.is_ok(), "A never announced its pool");

    // B looks for the pool's providers; it knows only C too.
    let finds = DiscoveryConfig {
        find_pools: vec![pool],
        ..fast
    };
    let metrics_b = Metrics::new();
    let (kb, mut b) = start_discovering(22, &via_c, &finds, metrics_b.clone()).await;
    let pa = ka.peer_id();
    let now = flotilla_core::Timestamp::from_secs(1_700_000_000);
    let mut node_b =
        flotilla_core::Node::new(flotilla_core::Config::default(), kb, SeedTree::new(23), now)
            .unwrap();
    let found = "flotilla_discovery_found_total{source=\"pool\"}";
    let result = tokio::time::timeout(WAIT, async {
        let knows_a = |n: &flotilla_core::Node| n.peer_table().iter().any(|e| e.peer_id == pa);
        while !(metrics_b.encode().contains(found) && knows_a(&node_b)) {
            tokio::select! {
                Some(ev) = b.next_event() => {
                    if let NetEvent::Discovered { peer, addrs, source } = ev {
                        // Through the pool, or through the DHT's routing table as well.
                        assert!(
                            matches!(source, flotilla_core::Source::Pool | flotilla_core::Source::Dht),
                            "{source:?}"
                        );
                        assert!(!addrs.is_empty(), "{peer} handed over without addresses");
                        node_b.handle_discovered(now, peer, addrs, source);
                    }
                }
                Some(_) = a.next_event() => {}
                Some(_) = c.next_event() => {}
            }
        }
    })
    .await;
    assert!(result.is_ok(), "B did not find A: {}", metrics_b.encode());
    let entry = node_b
        .peer_table()
        .iter()
        .find(|e| e.peer_id == pa)
        .unwrap();
    let a_addr = a.listen_addrs()[0].to_string();
    assert!(entry.addrs().any(|x| *x == a_addr), "{entry:?}");
    // Every provider found had an address, from the routing table or a lookup.
    let text = metrics_b.encode();
    assert!(
        !text.contains("flotilla_discovery_skipped_total{"),
        "{text}"
    );
}

#[tokio::test]
async fn mdns_peers_go_to_the_core_and_the_dht() {
    let metrics = Metrics::new();
    let limits = flotilla_core::rcmgr::Limits::default();
    let (_, mut a) = start_full(
        30,
        &["/ip4/127.0.0.1/tcp/0"],
        &[],
        limits.clone(),
        metrics.clone(),
        &DiscoveryConfig::default(),
    )
    .await;
    assert!(!a.swarm.behaviour().mdns.is_enabled());
    let other = Keypair::generate(&mut SeedTree::new(31).rng());
    let lp = addr::libp2p_peer(&other.peer_id()).unwrap();
    let addr: Multiaddr = "/ip4/192.0.2.9/tcp/4001".parse().unwrap();
    a.on_mdns(libp2p::mdns::Event::Discovered(vec![
        (lp, addr.clone()),
        (
            lp,
            with_p2p(&"/ip4/192.0.2.9/udp/4001/quic-v1".parse().unwrap(), lp),
        ),
        (a.local, addr.clone()),
    ]));
    let events: Vec<NetEvent> = a.pending.drain(..).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let NetEvent::Discovered {
        peer,
        addrs,
        source,
    } = &events[0]
    else {
        panic!("{events:?}");
    };
    assert_eq!(*peer, other.peer_id());
    assert_eq!(*source, flotilla_core::Source::Mdns);
    assert_eq!(
        addrs,
        &[
            "/ip4/192.0.2.9/tcp/4001".to_string(),
            "/ip4/192.0.2.9/udp/4001/quic-v1".to_string()
        ]
    );
    assert_eq!(a.routing_addrs(&lp).len(), 2);
    assert!(
        metrics
            .encode()
            .contains("flotilla_discovery_found_total{source=\"mdns\"} 1")
    );

    // Enabled, the behaviour is there.
    let on = DiscoveryConfig {
        mdns: true,
        ..DiscoveryConfig::default()
    };
    let (_, b) = start_full(
        32,
        &["/ip4/127.0.0.1/tcp/0"],
        &[],
        limits,
        Metrics::new(),
        &on,
    )
    .await;
    assert!(b.swarm.behaviour().mdns.is_enabled());
}

/// Needs a link where multicast works, which containers and CI runners often lack:
/// `just mdns`.
#[tokio::test]
#[ignore = "needs multicast on the local link"]
async fn mdns_finds_a_node_on_the_link() {
    let on = DiscoveryConfig {
        mdns: true,
        ..DiscoveryConfig::default()
    };
    let limits = flotilla_core::rcmgr::Limits::default();
    let listen = ["/ip4/0.0.0.0/tcp/0"];
    let metrics_a = Metrics::new();
    let (_, mut a) = start_full(40, &listen, &[], limits.clone(), metrics_a.clone(), &on).await;
    let (kb, mut b) = start_full(41, &listen, &[], limits, Metrics::new(), &on).await;
    let pb = kb.peer_id();
    let (ea, _) = pump(&mut a, &mut b, |ea, _| {
        ea.iter()
            .any(|e| matches!(e, NetEvent::Discovered { peer, .. } if *peer == pb))
    })
    .await;
    assert!(!ea.is_empty());
    assert!(
        metrics_a
            .encode()
            .contains("flotilla_discovery_found_total{source=\"mdns\"}")
    );
}

mod broadcast;
