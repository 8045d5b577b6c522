//! Unit tests per scope and move, property tests over random operation sequences, and the
//! limits' defaults, overrides and validation.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::identity::PeerId;
use crate::node::Direction::{Inbound, Outbound};

const T: crate::time::Timestamp = crate::time::Timestamp::from_secs(1000);

fn peer(n: u8) -> PeerId {
    PeerId::from_public_key([n; 32])
}

/// Small limits so that tests reach them quickly.
fn small() -> Limits {
    let mut l = Limits::for_machine(8 << 30, 16384);
    l.system = ScopeLimits {
        memory: 64 * 1024,
        streams_in: 12,
        streams_out: 12,
        streams: 20,
        conns_in: 6,
        conns_out: 6,
        conns: 10,
        fds: 8,
    };
    l.transient = ScopeLimits {
        memory: 16 * 1024,
        streams_in: 4,
        streams_out: 4,
        streams: 6,
        conns_in: 3,
        conns_out: 3,
        conns: 4,
        fds: 4,
    };
    l.peer = ScopeLimits {
        memory: 16 * 1024,
        streams_in: 4,
        streams_out: 4,
        streams: 6,
        conns_in: 2,
        conns_out: 2,
        conns: 3,
        fds: 2,
    };
    let per_name = ScopeLimits {
        memory: 32 * 1024,
        streams_in: 8,
        streams_out: 8,
        streams: 10,
        ..ScopeLimits::UNLIMITED
    };
    l.protocol = per_name;
    l.service = per_name;
    let per_name_peer = ScopeLimits {
        memory: 8 * 1024,
        streams_in: 2,
        streams_out: 2,
        streams: 3,
        ..ScopeLimits::UNLIMITED
    };
    l.protocol_peer = per_name_peer;
    l.service_peer = per_name_peer;
    l.allowlisted_system = ScopeLimits {
        memory: 16 * 1024,
        ..l.peer
    };
    l.allowlisted_transient = ScopeLimits {
        memory: 8 * 1024,
        conns_in: 2,
        conns_out: 2,
        conns: 3,
        ..l.peer
    };
    l.connection.memory = 8 * 1024;
    l.stream.memory = 8 * 1024;
    l.validate().unwrap();
    l
}

fn limit_err(r: Result<impl std::fmt::Debug, RcmgrError>) -> LimitExceeded {
    match r {
        Err(RcmgrError::Limit(e)) => e,
        other => panic!("expected a limit refusal, got {other:?}"),
    }
}

#[test]
fn connection_moves_from_transient_to_peer() {
    let mut rm = ResourceManager::new(small());
    let c = rm.open_connection(Inbound, true).unwrap();
    assert_eq!(rm.transient_usage().conns_in, 1);
    assert_eq!(rm.transient_usage().fds, 1);
    assert_eq!(rm.system_usage().conns_in, 1);
    rm.set_connection_peer(c, peer(1)).unwrap();
    assert!(rm.transient_usage().is_zero());
    assert_eq!(rm.peer_usage(&peer(1)).unwrap().conns_in, 1);
    assert_eq!(rm.system_usage().fds, 1);
    rm.reserve_memory(c, 1000, PRIORITY_ALWAYS).unwrap();
    assert_eq!(rm.peer_usage(&peer(1)).unwrap().memory, 1000);
    assert!(matches!(
        rm.set_connection_peer(c, peer(2)),
        Err(RcmgrError::State(_))
    ));
    rm.check_invariants().unwrap();
    rm.close_connection(c).unwrap();
    assert!(rm.system_usage().is_zero());
    assert_eq!(rm.collect_garbage(), 1);
    assert!(rm.peer_usage(&peer(1)).is_none());
    assert_eq!(rm.open_scopes(), 4);
    assert_eq!(
        rm.close_connection(c),
        Err(RcmgrError::Closed("connection"))
    );
}

#[test]
fn transient_connection_limit_refuses_and_says_why() {
    let mut rm = ResourceManager::new(small());
    for _ in 0..3 {
        rm.open_connection(Inbound, false).unwrap();
    }
    let e = limit_err(rm.open_connection(Inbound, false));
    assert_eq!(e.resource, Resource::Connections);
    assert_eq!(e.direction, Some(Inbound));
    assert_eq!((e.current, e.attempted, e.limit), (3, 1, 3));
    assert_eq!(e.scope(), &ScopeName::Transient);
    assert_eq!(e.scope().kind(), Some(ScopeKind::Transient));
    assert_eq!(
        e.to_string(),
        "transient limit reached: 1 more inbound connections asked, 3 held, limit 3 \
         (connection #4 -> transient)"
    );
    // Nothing of the refused connection remains, the slot is reused.
    assert_eq!(rm.system_usage().conns_in, 3);
    assert_eq!(rm.open_scopes(), 7);
    rm.check_invariants().unwrap();
    // Outbound still fits in the transient scope.
    rm.open_connection(Outbound, false).unwrap();
}

#[test]
fn allowlisted_addresses_use_their_own_budget_when_the_normal_one_is_full() {
    let mut l = small();
    l.allowlisted_transient.conns_in = 1;
    let mut rm = ResourceManager::new(l);
    let allowed: IpAddr = "10.1.2.3".parse().unwrap();
    let other: IpAddr = "192.0.2.1".parse().unwrap();
    rm.set_allowlist(Allowlist::new(["10.0.0.0/8".parse().unwrap()], []));
    // While the normal budget has room, allowlisted addresses use it.
    for _ in 0..3 {
        rm.open_connection_from(Inbound, true, allowed, T).unwrap();
    }
    assert_eq!(rm.transient_usage().conns_in, 3);
    let e = limit_err(rm.open_connection_from(Inbound, true, other, T));
    assert_eq!(e.scope(), &ScopeName::Transient);
    let c = rm.open_connection_from(Inbound, true, allowed, T).unwrap();
    assert_eq!(rm.transient_usage().conns_in, 3);
    assert_eq!(rm.system_usage().conns_in, 3);
    // Its own budget is limited too, and says so.
    let e = limit_err(rm.open_connection_from(Inbound, true, allowed, T));
    assert_eq!(e.scope(), &ScopeName::AllowlistedTransient);
    // After the handshake it counts in its peer and the allowlisted system scope.
    rm.set_connection_peer(c, peer(9)).unwrap();
    assert_eq!(rm.peer_usage(&peer(9)).unwrap().conns_in, 1);
    assert_eq!(rm.system_usage().conns_in, 3);
    rm.check_invariants().unwrap();
    rm.open_connection_from(Inbound, true, allowed, T).unwrap();
    rm.close_connection(c).unwrap();
    rm.check_invariants().unwrap();
}

#[test]
fn inbound_gate_caps_subnets_but_not_loopback_or_allowlisted_addresses() {
    let mut rm = ResourceManager::new(Limits::default());
    rm.set_gate_limits(GateLimits {
        conns_per_subnet: 2,
        ..GateLimits::default()
    });
    rm.set_allowlist(Allowlist::new(["10.0.0.0/8".parse().unwrap()], []));
    let a: IpAddr = "198.51.100.1".parse().unwrap();
    let c1 = rm.open_connection_from(Inbound, true, a, T).unwrap();
    rm.open_connection_from(Inbound, true, a, T).unwrap();
    let e = rm.open_connection_from(Inbound, true, a, T).unwrap_err();
    assert!(
        matches!(e, RcmgrError::Gate(GateRefusal::SubnetCap { .. })),
        "{e}"
    );
    // Outbound connections, loopback and allowlisted addresses are not gated.
    rm.open_connection_from(Outbound, true, a, T).unwrap();
    for ip in ["127.0.0.1", "10.9.9.9", "10.9.9.9"] {
        rm.open_connection_from(Inbound, true, ip.parse().unwrap(), T)
            .unwrap();
    }
    rm.check_invariants().unwrap();
    rm.close_connection(c1).unwrap();
    assert_eq!(rm.gate().subnet_conns(a), 1);
    rm.open_connection_from(Inbound, true, a, T).unwrap();
    rm.check_invariants().unwrap();
}

#[test]
fn allowlisted_peers_open_streams_on_their_own_budget() {
    let mut rm = ResourceManager::new(small());
    rm.set_allowlist(Allowlist::new([], [peer(1)]));
    for _ in 0..4 {
        rm.open_stream(Inbound).unwrap();
    }
    let e = limit_err(rm.open_stream_for(Inbound, peer(2)));
    assert_eq!(e.scope(), &ScopeName::Transient);
    let s = rm.open_stream_for(Inbound, peer(1)).unwrap();
    assert_eq!(rm.transient_usage().streams_in, 4);
    assert_eq!(rm.peer_usage(&peer(1)).unwrap().streams_in, 1);
    // It stays on the allowlisted budget through its moves.
    rm.set_protocol(s, "/p").unwrap();
    rm.set_service(s, "svc").unwrap();
    rm.reserve_memory(s, 100, PRIORITY_ALWAYS).unwrap();
    assert_eq!(rm.system_usage().memory, 0);
    assert_eq!(rm.protocol_usage("/p").unwrap().memory, 100);
    rm.check_invariants().unwrap();
    rm.close_stream(s).unwrap();
    rm.check_invariants().unwrap();
}

#[test]
fn peer_connection_limit_refuses_the_move_and_keeps_the_connection_transient() {
    let mut rm = ResourceManager::new(small());
    let cs: Vec<_> = (0..3)
        .map(|_| rm.open_connection(Inbound, false).unwrap())
        .collect();
    rm.set_connection_peer(cs[0], peer(1)).unwrap();
    rm.set_connection_peer(cs[1], peer(1)).unwrap();
    let e = limit_err(rm.set_connection_peer(cs[2], peer(1)));
    assert_eq!(e.scope(), &ScopeName::Peer(peer(1)));
    assert_eq!(e.direction, Some(Inbound));
    assert_eq!(rm.transient_usage().conns_in, 1);
    assert_eq!(rm.peer_usage(&peer(1)).unwrap().conns_in, 2);
    rm.check_invariants().unwrap();
}

#[test]
fn fd_limit_counts_only_connections_that_use_one() {
    let mut rm = ResourceManager::new(small());
    let mut l = small();
    l.transient.fds = 1;
    let mut strict = ResourceManager::new(l);
    strict.open_connection(Inbound, true).unwrap();
    strict.open_connection(Outbound, false).unwrap();
    let e = limit_err(strict.open_connection(Outbound, true));
    assert_eq!(e.resource, Resource::FileDescriptors);
    assert_eq!(e.direction, None);
    rm.open_connection(Inbound, true).unwrap();
}

#[test]
fn stream_moves_through_transient_protocol_and_service() {
    let mut rm = ResourceManager::new(small());
    let s = rm.open_stream(Inbound).unwrap();
    assert_eq!(rm.transient_usage().streams_in, 1);
    rm.set_stream_peer(s, peer(1)).unwrap();
    assert_eq!(rm.peer_usage(&peer(1)).unwrap().streams_in, 1);
    assert_eq!(rm.transient_usage().streams_in, 1);
    assert!(matches!(
        rm.set_service(s, "svc"),
        Err(RcmgrError::State(_))
    ));
    rm.set_protocol(s, "/p/1").unwrap();
    assert!(rm.transient_usage().is_zero());
    assert_eq!(rm.protocol_usage("/p/1").unwrap().streams_in, 1);
    rm.reserve_memory(s, 4096, PRIORITY_ALWAYS).unwrap();
    rm.set_service(s, "svc").unwrap();
    for u in [
        rm.peer_usage(&peer(1)).unwrap(),
        rm.protocol_usage("/p/1").unwrap(),
        rm.service_usage("svc").unwrap(),
        rm.system_usage(),
    ] {
        assert_eq!((u.streams_in, u.memory), (1, 4096));
    }
    rm.check_invariants().unwrap();
    rm.release_memory(s, 4096).unwrap();
    rm.close_stream(s).unwrap();
    assert!(rm.system_usage().is_zero());
    // peer, protocol, protocol-peer, service, service-peer
    assert_eq!(rm.collect_garbage(), 5);
    assert_eq!(rm.open_scopes(), 4);
}

#[test]
fn protocol_peer_limit_refuses_a_move_and_the_stream_stays_transient() {
    let mut rm = ResourceManager::new(small());
    let mut streams = Vec::new();
    for _ in 0..3 {
        let s = rm.open_stream(Outbound).unwrap();
        rm.set_stream_peer(s, peer(1)).unwrap();
        streams.push(s);
    }
    rm.set_protocol(streams[0], "/p/1").unwrap();
    rm.set_protocol(streams[1], "/p/1").unwrap();
    let e = limit_err(rm.set_protocol(streams[2], "/p/1"));
    assert_eq!(e.scope(), &ScopeName::ProtocolPeer("/p/1".into(), peer(1)));
    assert_eq!(e.chain.first(), Some(&ScopeName::Stream(3)));
    assert_eq!(rm.transient_usage().streams_out, 1);
    assert_eq!(rm.protocol_usage("/p/1").unwrap().streams_out, 2);
    rm.check_invariants().unwrap();
    // Another protocol takes it.
    rm.set_protocol(streams[2], "/p/2").unwrap();
    rm.check_invariants().unwrap();
}

#[test]
fn memory_priority_low_fails_first() {
    let mut rm = ResourceManager::new(small());
    let s = rm.open_stream(Inbound).unwrap();
    // Stream limit 8 KiB: priority 101 may fill 102/256 of it (3264 bytes).
    let e = limit_err(rm.reserve_memory(s, 4000, PRIORITY_LOW));
    assert_eq!(e.resource, Resource::Memory);
    assert_eq!(e.limit, 8 * 1024 * 102 / 256);
    assert_eq!(e.priority, Some(PRIORITY_LOW));
    assert!(e.to_string().contains("at priority 101/255"), "{e}");
    rm.reserve_memory(s, 4000, PRIORITY_HIGH).unwrap();
    rm.reserve_memory(s, 8192 - 4000, PRIORITY_ALWAYS).unwrap();
    limit_err(rm.reserve_memory(s, 1, PRIORITY_ALWAYS));
    rm.check_invariants().unwrap();
}

#[test]
fn refused_reservation_changes_no_scope() {
    let mut rm = ResourceManager::new(small());
    // Fill the system scope's memory from spans on the system scope.
    let sys_span = rm.open_span(SpanOwner::System).unwrap();
    rm.reserve_memory(sys_span, 60 * 1024, PRIORITY_ALWAYS)
        .unwrap();
    let c = rm.open_connection(Inbound, false).unwrap();
    rm.set_connection_peer(c, peer(1)).unwrap();
    // Connection and peer would take it, the system refuses: the connection and peer
    // scopes are left as they were.
    let e = limit_err(rm.reserve_memory(c, 5000, PRIORITY_ALWAYS));
    assert_eq!(e.scope(), &ScopeName::System);
    assert_eq!(
        e.chain,
        vec![
            ScopeName::Connection(2),
            ScopeName::Peer(peer(1)),
            ScopeName::System
        ]
    );
    assert_eq!(rm.peer_usage(&peer(1)).unwrap().memory, 0);
    rm.check_invariants().unwrap();
    rm.close_span(sys_span).unwrap();
    rm.reserve_memory(c, 5000, PRIORITY_ALWAYS).unwrap();
}

#[test]
fn spans_nest_and_release_together() {
    let mut rm = ResourceManager::new(small());
    let s = rm.open_stream(Inbound).unwrap();
    let outer = rm.open_span(SpanOwner::Stream(s)).unwrap();
    let inner = rm.open_span(SpanOwner::Span(outer)).unwrap();
    let innermost = rm.open_span(SpanOwner::Span(inner)).unwrap();
    rm.reserve_memory(outer, 100, PRIORITY_ALWAYS).unwrap();
    rm.reserve_memory(inner, 200, PRIORITY_ALWAYS).unwrap();
    rm.reserve_memory(innermost, 300, PRIORITY_ALWAYS).unwrap();
    assert_eq!(rm.transient_usage().memory, 600);
    rm.check_invariants().unwrap();
    rm.close_span(inner).unwrap();
    assert_eq!(rm.transient_usage().memory, 100);
    // Children of the closed span fail cleanly.
    assert_eq!(
        rm.reserve_memory(innermost, 1, PRIORITY_ALWAYS),
        Err(RcmgrError::Closed("span"))
    );
    assert_eq!(
        rm.open_span(SpanOwner::Span(innermost)),
        Err(RcmgrError::Closed("span"))
    );
    assert_eq!(rm.close_span(inner), Err(RcmgrError::Closed("span")));
    rm.check_invariants().unwrap();
    // Closing the stream closes the rest.
    rm.close_stream(s).unwrap();
    assert_eq!(rm.close_span(outer), Err(RcmgrError::Closed("span")));
    assert!(rm.system_usage().is_zero());
    assert_eq!(rm.open_scopes(), 4);
}

#[test]
fn spans_follow_their_stream_when_it_moves() {
    let mut rm = ResourceManager::new(small());
    let s = rm.open_stream(Inbound).unwrap();
    let span = rm.open_span(SpanOwner::Stream(s)).unwrap();
    rm.reserve_memory(span, 1000, PRIORITY_ALWAYS).unwrap();
    rm.set_stream_peer(s, peer(3)).unwrap();
    rm.set_protocol(s, "/p").unwrap();
    assert_eq!(rm.protocol_usage("/p").unwrap().memory, 1000);
    assert_eq!(rm.transient_usage().memory, 0);
    rm.check_invariants().unwrap();
    rm.close_span(span).unwrap();
    assert_eq!(rm.protocol_usage("/p").unwrap().memory, 0);
    rm.check_invariants().unwrap();
}

#[test]
fn spans_nest_only_so_deep() {
    let mut rm = ResourceManager::new(small());
    let mut span = rm.open_span(SpanOwner::Transient).unwrap();
    for _ in 1..MAX_SPAN_DEPTH {
        span = rm.open_span(SpanOwner::Span(span)).unwrap();
    }
    assert_eq!(
        rm.open_span(SpanOwner::Span(span)),
        Err(RcmgrError::SpanTooDeep)
    );
    rm.reserve_memory(span, 10, PRIORITY_ALWAYS).unwrap();
    rm.check_invariants().unwrap();
}

#[test]
fn idle_scopes_are_collected_and_busy_ones_kept() {
    let mut rm = ResourceManager::new(small());
    let span = rm.open_span(SpanOwner::Peer(peer(1))).unwrap();
    assert_eq!(
        rm.collect_garbage(),
        0,
        "a peer with an open span is not idle"
    );
    rm.reserve_memory(span, 10, PRIORITY_ALWAYS).unwrap();
    assert_eq!(rm.collect_garbage(), 0);
    rm.close_span(span).unwrap();
    assert_eq!(rm.collect_garbage(), 1);
    let s = rm.open_stream(Inbound).unwrap();
    rm.set_protocol(s, "/p").unwrap();
    assert_eq!(
        rm.collect_garbage(),
        0,
        "a protocol holding a stream is not idle"
    );
    rm.close_stream(s).unwrap();
    assert_eq!(rm.collect_garbage(), 1);
    assert_eq!(rm.open_scopes(), 4);
}

#[test]
fn over_release_is_refused() {
    let mut rm = ResourceManager::new(small());
    let s = rm.open_stream(Inbound).unwrap();
    let span = rm.open_span(SpanOwner::Stream(s)).unwrap();
    rm.reserve_memory(span, 100, PRIORITY_ALWAYS).unwrap();
    rm.reserve_memory(s, 10, PRIORITY_ALWAYS).unwrap();
    // The stream holds 110 in all but only 10 of its own.
    let e = rm.release_memory(s, 11).unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream #1 released 11 bytes but holds only 10 of its own"
    );
    rm.release_memory(s, 10).unwrap();
    rm.check_invariants().unwrap();
}

#[test]
fn stale_handles_are_refused_after_slot_reuse() {
    let mut rm = ResourceManager::new(small());
    let a = rm.open_stream(Inbound).unwrap();
    rm.close_stream(a).unwrap();
    let b = rm.open_stream(Inbound).unwrap();
    assert_ne!(a, b);
    assert_eq!(rm.close_stream(a), Err(RcmgrError::Closed("stream")));
    assert_eq!(
        rm.reserve_memory(a, 1, PRIORITY_ALWAYS),
        Err(RcmgrError::Closed("stream"))
    );
    rm.close_stream(b).unwrap();
}

// ---- property tests ----

#[derive(Clone, Debug)]
enum Op {
    OpenConn(bool, bool),
    OpenConnFrom(bool, bool, bool),
    ConnPeer(usize, u8),
    CloseConn(usize),
    OpenStream(bool),
    OpenStreamFor(bool, u8),
    StreamPeer(usize, u8),
    Protocol(usize, u8),
    Service(usize, u8),
    CloseStream(usize),
    OpenSpan(u8, usize),
    CloseSpan(usize),
    Reserve(u8, usize, u64, u8),
    Release(u8, usize, u64),
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..64;
    prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Op::OpenConn(a, b)),
        (any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(a, b, c)| Op::OpenConnFrom(a, b, c)),
        (i.clone(), 0u8..6).prop_map(|(c, p)| Op::ConnPeer(c, p)),
        i.clone().prop_map(Op::CloseConn),
        any::<bool>().prop_map(Op::OpenStream),
        (any::<bool>(), 0u8..6).prop_map(|(d, p)| Op::OpenStreamFor(d, p)),
        (i.clone(), 0u8..6).prop_map(|(s, p)| Op::StreamPeer(s, p)),
        (i.clone(), 0u8..4).prop_map(|(s, p)| Op::Protocol(s, p)),
        (i.clone(), 0u8..3).prop_map(|(s, p)| Op::Service(s, p)),
        i.clone().prop_map(Op::CloseStream),
        (0u8..6, i.clone()).prop_map(|(k, x)| Op::OpenSpan(k, x)),
        i.clone().prop_map(Op::CloseSpan),
        (0u8..3, i.clone(), 1u64..6000, any::<u8>())
            .prop_map(|(k, x, b, p)| Op::Reserve(k, x, b, p)),
        (0u8..3, i.clone(), 1u64..6000).prop_map(|(k, x, b)| Op::Release(k, x, b)),
        Just(Op::Gc),
    ]
}

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[i % v.len()])
    }
}

fn dir(inbound: bool) -> crate::node::Direction {
    if inbound { Inbound } else { Outbound }
}

struct Model {
    rm: ResourceManager,
    conns: Vec<ConnHandle>,
    streams: Vec<StreamHandle>,
    spans: Vec<SpanHandle>,
}

impl Model {
    fn target(&self, kind: u8, x: usize) -> Option<MemoryScope> {
        match kind {
            0 => pick(&self.conns, x).map(MemoryScope::from),
            1 => pick(&self.streams, x).map(MemoryScope::from),
            _ => pick(&self.spans, x).map(MemoryScope::from),
        }
    }

    /// Applies one operation; handles stay in the lists after they close, so later
    /// operations also exercise stale handles. Errors are allowed, never panics.
    fn apply(&mut self, op: &Op) {
        let rm = &mut self.rm;
        let protocols = ["/a/1", "/b/1", "/c/1", "/d/1"];
        let services = ["s0", "s1", "s2"];
        let _ = match *op {
            Op::OpenConn(i, fd) => rm.open_connection(dir(i), fd).map(|c| self.conns.push(c)),
            Op::OpenConnFrom(i, fd, allowed) => {
                let ip: IpAddr = if allowed {
                    [10, 0, 0, 1]
                } else {
                    [192, 0, 2, 1]
                }
                .into();
                rm.open_connection_from(dir(i), fd, ip, T)
                    .map(|c| self.conns.push(c))
            }
            Op::ConnPeer(c, p) => match pick(&self.conns, c) {
                Some(c) => rm.set_connection_peer(c, peer(p)),
                None => Ok(()),
            },
            Op::CloseConn(c) => match pick(&self.conns, c) {
                Some(c) => rm.close_connection(c),
                None => Ok(()),
            },
            Op::OpenStream(i) => rm.open_stream(dir(i)).map(|s| self.streams.push(s)),
            Op::OpenStreamFor(i, p) => rm
                .open_stream_for(dir(i), peer(p))
                .map(|s| self.streams.push(s)),
            Op::StreamPeer(s, p) => match pick(&self.streams, s) {
                Some(s) => rm.set_stream_peer(s, peer(p)),
                None => Ok(()),
            },
            Op::Protocol(s, p) => match pick(&self.streams, s) {
                Some(s) => rm.set_protocol(s, protocols[usize::from(p)]),
                None => Ok(()),
            },
            Op::Service(s, v) => match pick(&self.streams, s) {
                Some(s) => rm.set_service(s, services[usize::from(v)]),
                None => Ok(()),
            },
            Op::CloseStream(s) => match pick(&self.streams, s) {
                Some(s) => rm.close_stream(s),
                None => Ok(()),
            },
            Op::OpenSpan(k, x) => {
                let owner = match k {
                    0 => Some(SpanOwner::System),
                    1 => Some(SpanOwner::Transient),
                    2 => Some(SpanOwner::Peer(peer(u8::try_from(x % 6).unwrap_or(0)))),
                    3 => pick(&self.conns, x).map(SpanOwner::Connection),
                    4 => pick(&self.streams, x).map(SpanOwner::Stream),
                    _ => pick(&self.spans, x).map(SpanOwner::Span),
                };
                match owner {
                    Some(o) => rm.open_span(o).map(|s| self.spans.push(s)),
                    None => Ok(()),
                }
            }
            Op::CloseSpan(x) => match pick(&self.spans, x) {
                Some(s) => rm.close_span(s),
                None => Ok(()),
            },
            Op::Reserve(k, x, b, p) => match self.target(k, x) {
                Some(t) => self.rm.reserve_memory(t, b, p),
                None => Ok(()),
            },
            Op::Release(k, x, b) => match self.target(k, x) {
                Some(t) => self.rm.release_memory(t, b),
                None => Ok(()),
            },
            Op::Gc => {
                rm.collect_garbage();
                Ok(())
            }
        };
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over random operation sequences: usage is always exactly the sum of what is held
    /// below (so no parent is below its children and no counter went negative: an
    /// underflow would trip a debug assertion), no limit is ever exceeded, and after
    /// everything closes every scope is back to zero and collected.
    #[test]
    fn accounting_holds_over_random_sequences(ops in proptest::collection::vec(op(), 1..300)) {
        let mut m = Model {
            rm: {
                let mut rm = ResourceManager::new(small());
                rm.set_allowlist(Allowlist::new(
                    ["10.0.0.0/8".parse().unwrap()],
                    [peer(0), peer(1)],
                ));
                rm
            },
            conns: Vec::new(),
            streams: Vec::new(),
            spans: Vec::new(),
        };
        for op in &ops {
            m.apply(op);
            if let Err(e) = m.rm.check_invariants() {
                prop_assert!(false, "after {:?}: {}", op, e);
            }
        }
        // Close in an order that leaves some spans to be closed by their owners.
        for s in m.spans.iter().step_by(2) {
            let _ = m.rm.close_span(*s);
        }
        for s in &m.streams {
            let _ = m.rm.close_stream(*s);
        }
        for c in &m.conns {
            let _ = m.rm.close_connection(*c);
        }
        for s in &m.spans {
            let _ = m.rm.close_span(*s);
        }
        m.rm.check_invariants().map_err(TestCaseError::fail)?;
        prop_assert!(m.rm.gate().subnets().all(|(_, n)| n == 0));
        prop_assert!(m.rm.system_usage().is_zero());
        prop_assert!(m.rm.transient_usage().is_zero());
        m.rm.collect_garbage();
        prop_assert_eq!(m.rm.open_scopes(), 4);
        let names: Vec<_> = m.rm.scopes().map(|(n, u, _)| (n, u.is_zero())).collect();
        prop_assert_eq!(names, vec![
            (ScopeName::System, true),
            (ScopeName::Transient, true),
            (ScopeName::AllowlistedSystem, true),
            (ScopeName::AllowlistedTransient, true),
        ]);
    }
}

// ---- limits ----

fn show(field: &str, v: u64) -> String {
    match v {
        UNLIMITED => "unlimited".to_string(),
        v if field != "memory" => v.to_string(),
        v if v >= 1 << 20 && v % (1 << 20) == 0 => format!("{} MiB", v >> 20),
        v if v >= 1 << 10 && v % (1 << 10) == 0 => format!("{} KiB", v >> 10),
        v => v.to_string(),
    }
}

fn render(l: &Limits) -> String {
    let mut out = String::new();
    for (name, s) in [
        ("system", &l.system),
        ("transient", &l.transient),
        ("allowlisted_system", &l.allowlisted_system),
        ("allowlisted_transient", &l.allowlisted_transient),
        ("service", &l.service),
        ("service_peer", &l.service_peer),
        ("protocol", &l.protocol),
        ("protocol_peer", &l.protocol_peer),
        ("peer", &l.peer),
        ("connection", &l.connection),
        ("stream", &l.stream),
    ] {
        out.push_str(&format!("[{name}]\n"));
        for (k, v) in s.fields() {
            out.push_str(&format!("{k:<12} {}\n", show(k, v)));
        }
    }
    out.push_str(&format!("[inbound]\n{:?}\n", l.inbound));
    out
}

#[test]
fn default_limits_for_8_gib_and_16384_fds() {
    let l = Limits::for_machine(8 << 30, 16384);
    l.validate().unwrap();
    assert_eq!(l, Limits::default());
    insta::assert_snapshot!(render(&l));
}

#[test]
fn defaults_are_valid_for_small_and_large_machines() {
    for (mem, fds) in [
        (0, 0),
        (512 << 20, 256),
        (1 << 40, 1 << 20),
        (u64::MAX, u64::MAX),
    ] {
        Limits::for_machine(mem, fds).validate().unwrap();
    }
}

fn parse(toml_text: &str) -> Result<Limits, String> {
    let config: LimitsConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    Limits::default()
        .with_overrides(&config)
        .map_err(|e| e.to_string())
}

#[test]
fn overrides_apply_partially() {
    let l = parse(
        r#"
        [system]
        memory = 1073741824
        conns_in = "unlimited"
        [peer]
        streams_in = "block"
        streams_out = "default"
        [protocols."/flotilla/compute/1"]
        streams = 100
        memory = "default"
        "#,
    )
    .unwrap();
    let d = Limits::default();
    assert_eq!(l.system.memory, 1 << 30);
    assert_eq!(l.system.conns_in, UNLIMITED);
    assert_eq!(l.system.conns_out, d.system.conns_out);
    assert_eq!(l.peer.streams_in, 0);
    assert_eq!(l.peer.streams_out, d.peer.streams_out);
    let p = l.protocol_limits("/flotilla/compute/1");
    assert_eq!(p.streams, 100);
    assert_eq!(p.memory, d.protocol.memory);
    assert_eq!(l.protocol_limits("/other"), d.protocol);
}

#[test]
fn bad_overrides_are_rejected_naming_the_key() {
    let e = parse("[peer]\nmemory = 1099511627776\n").unwrap_err();
    assert!(
        e.starts_with("limits.peer.memory = 1099511627776 is above limits.system.memory"),
        "{e}"
    );
    let e = parse("[protocols.\"/x\"]\nstreams = 1000000000\n").unwrap_err();
    assert!(e.starts_with("limits.protocols.\"/x\".streams"), "{e}");
    let e = parse("[pear]\nmemory = 1\n").unwrap_err();
    assert!(e.contains("unknown field `pear`"), "{e}");
    let e = parse("[peer]\nmemroy = 1\n").unwrap_err();
    assert!(e.contains("unknown field `memroy`"), "{e}");
    let e = parse("[peer]\nmemory = -1\n").unwrap_err();
    assert!(e.contains("negative"), "{e}");
    assert!(e.contains("memory"), "{e}");
    let e = parse("[peer]\nmemory = \"lots\"\n").unwrap_err();
    assert!(e.contains("unknown limit \"lots\""), "{e}");
    let e = parse("[inbound]\nv4_prefix = 40\n").unwrap_err();
    assert_eq!(
        e,
        "limits.inbound.v4_prefix = 40 is longer than the address: write at most 32"
    );
    let e = parse("[inbound]\nburts = 4\n").unwrap_err();
    assert!(e.contains("unknown field `burts`"), "{e}");
    let l = parse("[inbound]\nrate_per_sec = 1\n").unwrap();
    assert_eq!(l.inbound.rate_per_sec, 1);
    assert_eq!(l.inbound.burst, GateLimits::default().burst);
    // Unlimited under a finite parent is fine: the parent caps it.
    parse("[peer]\nmemory = \"unlimited\"\n").unwrap();
    // Lowering a parent lowers the children left at their defaults...
    let l = parse("[peer]\nmemory = 1024\n").unwrap();
    assert_eq!(l.protocol_peer.memory, 1024);
    assert_eq!(l.connection.memory, 1024);
    // ... but a child set explicitly above it is an error.
    let e = parse("[peer]\nmemory = 1024\n[stream]\nmemory = 2048\n").unwrap_err();
    assert!(
        e.starts_with("limits.stream.memory = 2048 is above limits.peer.memory = 1024"),
        "{e}"
    );
}

#[test]
fn a_service_and_a_protocol_of_the_same_name_keep_their_own_overrides() {
    // The service's explicit memory must not stop the protocol's default memory from
    // following the lowered system limit.
    let l = parse(
        r#"
        [system]
        memory = 67108864
        [services.x]
        memory = 33554432
        [protocols.x]
        streams = 10
        "#,
    )
    .unwrap();
    assert_eq!(l.service_limits("x").memory, 32 << 20);
    assert_eq!(l.protocol_limits("x").memory, 64 << 20);
    assert_eq!(l.protocol_limits("x").streams, 10);
}

#[test]
fn every_scope_kind_has_its_own_key_and_limits() {
    let config: LimitsConfig = toml::from_str(
        &ScopeKind::ALL
            .iter()
            .enumerate()
            .map(|(i, k)| format!("[{k}]\nmemory = {}\n", 1000 + i))
            .collect::<String>(),
    )
    .unwrap();
    for (i, k) in ScopeKind::ALL.into_iter().enumerate() {
        assert_eq!(
            config.kind(k).memory,
            Some(LimitValue::Number(1000 + i as u64)),
            "{k}"
        );
    }
    let mut keys: Vec<_> = ScopeKind::ALL.iter().map(|k| k.key()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), ScopeKind::ALL.len());
}
