//! The behaviour's bookkeeping driven through its hooks, and refusals between real swarms
//! on loopback: a connection over the limit, a core stream refused with its reason.

use std::time::Duration;

use flotilla_core::rcmgr::{Limits, ScopeName};
use flotilla_core::{DialId, Keypair, SeedTree};
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::swarm::behaviour::{ConnectionClosed, DialFailure, ListenFailure};
use libp2p::swarm::{DialError, ListenError};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::*;
use crate::metrics::Metrics;
use crate::network::{NetEvent, Network};
use crate::p2p::P2pNetwork;
use crate::p2p::behaviour::CORE_PROTOCOL;
use crate::p2p::tests::rcmgr_with;

const WAIT: Duration = Duration::from_secs(10);

fn addr(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn ed25519_peer(seed: u64) -> PeerId {
    let kp = Keypair::generate(&mut SeedTree::new(seed).rng());
    let lp = crate::p2p::addr::libp2p_keypair(&kp).unwrap();
    lp.public().to_peer_id()
}

fn limited(conns_in: u64) -> Limits {
    let mut l = Limits::default();
    l.system.conns_in = conns_in;
    l.transient.conns_in = conns_in;
    l
}

fn closed(b: &mut Behaviour, id: ConnectionId, peer: PeerId) {
    let endpoint = ConnectedPoint::Listener {
        local_addr: addr("/ip4/127.0.0.1/tcp/1"),
        send_back_addr: addr("/ip4/192.0.2.1/tcp/2"),
    };
    b.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
        peer_id: peer,
        connection_id: id,
        endpoint: &endpoint,
        cause: None,
        remaining_established: 0,
    }));
}

#[test]
fn connections_move_to_their_peer_and_are_released() {
    let metrics = Metrics::new();
    let rcmgr = rcmgr_with(Limits::default(), metrics);
    let mut b = Behaviour::new(rcmgr.clone());
    let local = addr("/ip4/127.0.0.1/tcp/4001");
    let remote = addr("/ip4/192.0.2.1/tcp/5000");
    let (id, peer) = (ConnectionId::new_unchecked(1), ed25519_peer(1));

    b.handle_pending_inbound_connection(id, &local, &remote)
        .unwrap();
    let t = rcmgr.with(|rm| rm.transient_usage());
    assert_eq!((t.conns_in, t.fds), (1, 1));
    assert_eq!(
        rcmgr.with(|rm| rm.gate().subnet_conns("192.0.2.9".parse().unwrap())),
        1
    );

    b.handle_established_inbound_connection(id, peer, &local, &remote)
        .unwrap();
    let core = core_peer(&peer).unwrap();
    assert_eq!(rcmgr.with(|rm| rm.peer_usage(&core)).unwrap().conns_in, 1);
    assert!(rcmgr.with(|rm| rm.transient_usage()).is_zero());

    // A QUIC connection out: no file descriptor of its own.
    let out = ConnectionId::new_unchecked(2);
    let quic = addr("/ip4/192.0.2.2/udp/4001/quic-v1");
    b.handle_pending_outbound_connection(
        out,
        Some(peer),
        std::slice::from_ref(&quic),
        Endpoint::Dialer,
    )
    .unwrap();
    b.handle_established_outbound_connection(out, peer, &quic, Endpoint::Dialer, PortUse::Reuse)
        .unwrap();
    let u = rcmgr.with(|rm| rm.system_usage());
    assert_eq!((u.conns_in, u.conns_out, u.fds), (1, 1, 1));
    assert_eq!(b.open_connections(), 2);

    closed(&mut b, id, peer);
    closed(&mut b, out, peer);
    // Events for unknown connections are ignored.
    closed(&mut b, ConnectionId::new_unchecked(99), peer);
    assert_eq!(b.open_connections(), 0);
    assert!(rcmgr.with(|rm| rm.system_usage()).is_zero());
    assert_eq!(
        rcmgr.with(|rm| rm.gate().subnet_conns("192.0.2.9".parse().unwrap())),
        0
    );
    rcmgr.with(|rm| rm.check_invariants()).unwrap();
}

#[test]
fn a_connection_over_the_limit_is_denied_with_the_reason() {
    let metrics = Metrics::new();
    let rcmgr = rcmgr_with(limited(2), metrics.clone());
    let mut b = Behaviour::new(rcmgr.clone());
    let local = addr("/ip4/127.0.0.1/tcp/4001");
    let remote = addr("/ip4/127.0.0.1/tcp/5000");
    for i in 0..2 {
        b.handle_pending_inbound_connection(ConnectionId::new_unchecked(i), &local, &remote)
            .unwrap();
    }
    let third = ConnectionId::new_unchecked(2);
    let denied = b
        .handle_pending_inbound_connection(third, &local, &remote)
        .unwrap_err();
    let Some(RcmgrError::Limit(e)) = refusal(&denied) else {
        panic!("not a resource-manager refusal: {denied}");
    };
    assert_eq!(e.scope(), &ScopeName::Transient);
    assert_eq!((e.current, e.attempted, e.limit), (2, 1, 2));
    let text = e.to_string();
    assert!(
        text.contains("transient limit reached") && text.contains("inbound connections"),
        "{text}"
    );
    // The swarm reports the denied connection as failed: nothing to release.
    let error = ListenError::Aborted;
    b.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
        local_addr: &local,
        send_back_addr: &remote,
        error: &error,
        connection_id: third,
        peer_id: None,
    }));
    assert_eq!(rcmgr.with(|rm| rm.system_usage()).conns_in, 2);

    // A pending connection that fails releases its slot, and the next one fits.
    b.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
        local_addr: &local,
        send_back_addr: &remote,
        error: &error,
        connection_id: ConnectionId::new_unchecked(0),
        peer_id: None,
    }));
    b.handle_pending_inbound_connection(ConnectionId::new_unchecked(3), &local, &remote)
        .unwrap();

    // Outbound dials count on their own limit and are released by a dial failure.
    let dial = ConnectionId::new_unchecked(4);
    b.handle_pending_outbound_connection(dial, None, &[], Endpoint::Dialer)
        .unwrap();
    let error = DialError::Aborted;
    b.on_swarm_event(FromSwarm::DialFailure(DialFailure {
        peer_id: None,
        error: &error,
        connection_id: dial,
    }));
    assert_eq!(rcmgr.with(|rm| rm.system_usage()).conns_out, 0);

    let text = metrics.encode();
    assert!(
        text.contains("flotilla_rcmgr_refusals_total{scope=\"transient\",resource=\"conns\",direction=\"in\"} 1"),
        "{text}"
    );
    let view = rcmgr.scopes_view(5);
    assert_eq!(view.refusals.len(), 1);
    assert_eq!(view.refusals[0].count, 1);
}

#[test]
fn the_inbound_gate_applies_and_peers_without_ed25519_stay_transient() {
    let mut limits = Limits::default();
    limits.inbound.conns_per_subnet = 1;
    let rcmgr = rcmgr_with(limits, Metrics::new());
    let mut b = Behaviour::new(rcmgr.clone());
    let local = addr("/ip4/0.0.0.0/tcp/4001");
    let id = ConnectionId::new_unchecked(1);
    b.handle_pending_inbound_connection(id, &local, &addr("/ip4/198.51.100.1/tcp/1"))
        .unwrap();
    let denied = b
        .handle_pending_inbound_connection(
            ConnectionId::new_unchecked(2),
            &local,
            &addr("/ip4/198.51.100.2/tcp/1"),
        )
        .unwrap_err();
    assert!(
        matches!(refusal(&denied), Some(RcmgrError::Gate(_))),
        "{denied}"
    );

    // A sha2-256 multihash: the peer id of a key that is not ed25519.
    let mut bytes = vec![0x12, 0x20];
    bytes.extend([7u8; 32]);
    let stranger = PeerId::from_bytes(&bytes).unwrap();
    assert!(core_peer(&stranger).is_none());
    b.handle_established_inbound_connection(id, stranger, &local, &addr("/ip4/198.51.100.1/tcp/1"))
        .unwrap();
    assert_eq!(rcmgr.with(|rm| rm.transient_usage()).conns_in, 1);
    closed(&mut b, id, stranger);
    assert!(rcmgr.with(|rm| rm.system_usage()).is_zero());
}

/// Pumps both networks until `done` holds for what each saw.
async fn pump(
    a: &mut P2pNetwork,
    b: &mut P2pNetwork,
    mut done: impl FnMut(&[NetEvent], &[NetEvent]) -> bool,
) -> (Vec<NetEvent>, Vec<NetEvent>) {
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    let result = tokio::time::timeout(WAIT, async {
        while !done(&seen_a, &seen_b) {
            tokio::select! {
                Some(ev) = a.next_event() => seen_a.push(ev),
                Some(ev) = b.next_event() => seen_b.push(ev),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
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

async fn start(seed: u64, limits: Limits, metrics: Metrics) -> (Keypair, P2pNetwork) {
    let kp = Keypair::generate(&mut SeedTree::new(seed).rng());
    let rcmgr = rcmgr_with(limits, metrics.clone());
    let listen = [addr("/ip4/127.0.0.1/tcp/0")];
    let mut net = P2pNetwork::start(
        &kp,
        &listen,
        &[],
        rcmgr,
        metrics,
        &crate::p2p::discovery::DiscoveryConfig::default(),
    )
    .unwrap();
    net.wait_listening(WAIT).await.unwrap();
    (kp, net)
}

#[tokio::test]
async fn a_second_inbound_connection_over_the_limit_fails_the_dial() {
    let metrics_b = Metrics::new();
    let (kb, mut b) = start(21, limited(1), metrics_b.clone()).await;
    let (_, mut a) = start(22, Limits::default(), Metrics::new()).await;
    let (_, mut c) = start(23, Limits::default(), Metrics::new()).await;
    let target = b.listen_addrs()[0].to_string();
    a.dial(DialId(1), &target, Some(kb.peer_id()));
    pump(&mut a, &mut b, |sa, _| {
        sa.iter().any(|e| matches!(e, NetEvent::Connected { .. }))
    })
    .await;

    c.dial(DialId(2), &target, Some(kb.peer_id()));
    pump(&mut c, &mut b, |sc, _| {
        sc.iter().any(|e| matches!(e, NetEvent::DialFailed { .. }))
    })
    .await;
    assert_eq!(b.rcmgr().with(|rm| rm.system_usage()).conns_in, 1);
    let text = metrics_b.encode();
    assert!(text.contains("flotilla_rcmgr_refusals_total{scope=\"transient\",resource=\"conns\",direction=\"in\"} 1"), "{text}");
}

#[tokio::test]
async fn a_refused_core_stream_carries_its_reason() {
    let mut blocking = Limits::default();
    blocking.service_peer.streams_in = 0;
    let metrics_b = Metrics::new();
    let metrics_a = Metrics::new();
    let (kb, mut b) = start(31, blocking, metrics_b.clone()).await;
    let (_, mut a) = start(32, Limits::default(), metrics_a.clone()).await;
    let target = b.listen_addrs()[0].to_string();
    a.dial(DialId(1), &target, Some(kb.peer_id()));
    pump(&mut a, &mut b, |sa, sb| {
        sa.iter().any(|e| matches!(e, NetEvent::Connected { .. }))
            && sb.iter().any(|e| matches!(e, NetEvent::Connected { .. }))
    })
    .await;

    // a's writer opens a stream to b, which refuses it with a notice.
    a.send(kb.peer_id(), flotilla_core::Message::Ping { nonce: 1 });
    let heard = |m: &Metrics| {
        m.encode()
            .contains("flotilla_messages_dropped_total{reason=\"refused-by-peer\"} 1")
    };
    pump(&mut a, &mut b, |_, _| heard(&metrics_a)).await;
    let text = metrics_b.encode();
    assert!(
        text.contains(
            "flotilla_rcmgr_refusals_total{scope=\"service_peer\",resource=\"streams\",direction=\"in\"} 1"
        ),
        "{text}"
    );
    // Nothing of the refused stream is left, on either side.
    for net in [&a, &b] {
        let u = net.rcmgr().with(|rm| rm.system_usage());
        assert_eq!((u.streams_in, u.streams_out, u.memory), (0, 0, 0), "{u:?}");
    }

    // A raw client reads the notice itself: one Refused frame naming the limit, then the
    // end of the stream.
    let mut raw = crate::p2p::tests::raw_swarm();
    let mut control = raw.behaviour().new_control();
    raw.dial(crate::p2p::addr::with_p2p(
        &b.listen_addrs()[0],
        b.local_peer_id(),
    ))
    .unwrap();
    let raw_task = tokio::spawn(async move {
        loop {
            raw.select_next_some().await;
        }
    });
    let b_id = b.local_peer_id();
    let read = async move {
        let s = control.open_stream(b_id, CORE_PROTOCOL).await.unwrap();
        let mut s = s.compat();
        let first = crate::framing::read_message(&mut s).await.unwrap();
        let end = crate::framing::read_message(&mut s).await;
        (first, end)
    };
    tokio::pin!(read);
    let (first, end) = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                r = &mut read => break r,
                _ = b.next_event() => {}
            }
        }
    })
    .await
    .expect("no notice");
    raw_task.abort();
    let flotilla_core::Message::Refused { reason } = first else {
        panic!("expected a refusal, got {first:?}");
    };
    assert!(
        reason.contains("service core of peer") && reason.contains("inbound streams"),
        "{reason}"
    );
    assert!(
        matches!(end, Err(crate::framing::FrameError::Closed)),
        "{end:?}"
    );
}
