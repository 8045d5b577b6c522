//! In-process swarms on loopback: the NetEvent contract and bad-frame handling.

use std::time::Duration;

use flotilla_core::{DialId, Direction, Keypair, Message, SeedTree};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::Multiaddr;

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
    let kp = Keypair::generate(&mut SeedTree::new(seed).rng());
    let listen: Vec<Multiaddr> = listen.iter().map(|a| a.parse().unwrap()).collect();
    let rcmgr = rcmgr_with(limits, metrics.clone());
    let mut net = P2pNetwork::start(&kp, &listen, &[], rcmgr, metrics).unwrap();
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
    let mut b = P2pNetwork::start(&kb, &[listen], &[], rcmgr, metrics.clone()).unwrap();
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
