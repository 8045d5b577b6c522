//! The shared manager's reporting and views.

use flotilla_core::rcmgr::{Allowlist, PRIORITY_ALWAYS};
use flotilla_core::{Keypair, PeerId, SeedTree};

use super::*;

const MACHINE: Machine = Machine {
    memory_bytes: 8 << 30,
    fds: 16384,
};

fn peer(seed: u64) -> PeerId {
    Keypair::generate(&mut SeedTree::new(seed).rng()).peer_id()
}

fn shared(limits: Limits, metrics: Metrics) -> SharedRcmgr {
    SharedRcmgr::new(limits, Allowlist::default(), MACHINE, metrics)
}

#[test]
fn probing_reads_a_plausible_machine() {
    let m = Machine::probe();
    assert!(m.memory_bytes >= 1 << 20, "{m:?}");
    assert!(m.fds >= 16, "{m:?}");
    assert_eq!(
        m.default_limits(),
        Limits::for_machine(m.memory_bytes, m.fds)
    );
}

#[test]
fn views_list_scopes_top_peers_and_refusals() {
    let metrics = Metrics::new();
    let rm = shared(MACHINE.default_limits(), metrics.clone());
    // Peer i holds i streams of the core protocol with 1000 * i bytes each.
    for i in 1..=4u64 {
        let p = peer(i);
        for _ in 0..i {
            rm.try_with(Direction::Inbound, |rm| {
                let s = rm.open_stream_for(Direction::Inbound, p)?;
                rm.set_protocol(s, "/p/1")?;
                rm.set_service(s, "svc")?;
                rm.reserve_memory(s, 1000 * i, PRIORITY_ALWAYS)
            })
            .unwrap();
        }
    }
    let view = rm.scopes_view(2);
    let names: Vec<&str> = view
        .scopes
        .iter()
        .map(|r| r.limits.scope.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "system",
            "transient",
            "allowlisted_system",
            "allowlisted_transient",
            "protocol:/p/1",
            "service:svc"
        ]
    );
    assert_eq!(view.scopes[0].usage.streams_in, 10);
    assert_eq!(
        view.scopes[0].usage.memory,
        1000 + 2 * 2000 + 3 * 3000 + 4 * 4000
    );
    assert_eq!(view.peers, 4);
    assert_eq!(view.peers_usage.streams_in, 10);
    let top: Vec<u64> = view.top_peers.iter().map(|p| p.usage.streams_in).collect();
    assert_eq!(top, [4, 3], "largest memory first");
    assert_eq!(view.top_peers[0].peer, peer(4).to_string());

    // A refusal: counted in the view and the metrics.
    let mut small = MACHINE.default_limits();
    small.system.streams_in = 0;
    let rm = shared(small, metrics.clone());
    let err = rm
        .try_with(Direction::Inbound, |rm| {
            rm.open_stream_for(Direction::Inbound, peer(9))
        })
        .unwrap_err();
    assert!(err.to_string().contains("system limit reached"), "{err}");
    let view = rm.scopes_view(10);
    assert_eq!(view.refusals.len(), 1);
    let r = &view.refusals[0];
    assert_eq!(
        (
            r.scope.as_str(),
            r.resource.as_str(),
            r.direction.as_str(),
            r.count
        ),
        ("system", "streams", "in", 1)
    );
    assert!(metrics.encode().contains(
        "flotilla_rcmgr_refusals_total{scope=\"system\",resource=\"streams\",direction=\"in\"} 1"
    ));
}

#[test]
fn gauges_aggregate_peers_and_skip_unlimited_limits() {
    let metrics = Metrics::new();
    let rm = shared(MACHINE.default_limits(), metrics.clone());
    for i in 0..3 {
        rm.with(|rm| {
            let c = rm.open_connection(Direction::Inbound, true).unwrap();
            rm.set_connection_peer(c, peer(i)).unwrap();
        });
    }
    rm.export_metrics();
    let text = metrics.encode();
    for line in [
        "flotilla_rcmgr_usage{scope=\"system\",resource=\"conns_in\"} 3",
        "flotilla_rcmgr_usage{scope=\"peer\",resource=\"conns_in\"} 3",
        "flotilla_rcmgr_usage{scope=\"peer\",resource=\"fds\"} 3",
        "flotilla_rcmgr_limit{scope=\"system\",resource=\"conns_in\"} 4096",
        "flotilla_rcmgr_limit{scope=\"peer\",resource=\"conns_in\"} 4",
        "flotilla_rcmgr_limit{scope=\"stream\",resource=\"streams\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    assert!(!text.contains(&peer(0).to_string()), "no label per peer");
    // Protocols never hold connections: their connection limits are unlimited, not exported.
    assert!(!text.contains("scope=\"protocol\""), "{text}");
    assert_eq!(
        text.matches("flotilla_rcmgr_usage{scope=\"peer\"").count(),
        8,
        "one gauge per resource"
    );
}

#[test]
fn the_limits_view_lists_kinds_then_named_scopes() {
    let mut l = MACHINE.default_limits();
    l.protocols.insert("/p/1".to_string(), l.protocol);
    let rm = shared(l, Metrics::new());
    let view = rm.limits_view();
    assert_eq!(view.machine, MACHINE);
    let names: Vec<&str> = view.scopes.iter().map(|r| r.scope.as_str()).collect();
    assert_eq!(names.len(), 12);
    assert_eq!(names[0], "system");
    assert_eq!(names[11], "protocol:/p/1");
    assert_eq!(view.scopes[0].conns_in, Some(4096));
    let protocol = &view.scopes[6];
    assert_eq!(
        (protocol.scope.as_str(), protocol.conns),
        ("protocol", None)
    );
}
