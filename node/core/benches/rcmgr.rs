//! Resource manager benchmarks: the full stream lifecycle, the connection lifecycle and an
//! allowlist check against 1000 address ranges.
//!
//! Run with `just bench-rcmgr`. Besides criterion's timings, each lifecycle is run 10 000
//! more times under a counting global allocator, and the number of heap allocations is
//! printed; the bench fails if the steady state allocates at all.

use std::alloc::System;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use std::net::{IpAddr, Ipv4Addr};

use std::time::Duration;

use flotilla_core::Timestamp;
use flotilla_core::rcmgr::{
    Allowlist, Cidr, ConnHandle, GateLimits, Limits, PRIORITY_MEDIUM, ResourceManager,
};
use flotilla_core::{Direction, PeerId};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PROTOCOL: &str = "/flotilla/compute/1";
const SERVICE: &str = "compute";

/// A manager with default limits and one connection of `peer` open, so the peer scope
/// stays between iterations as it does on a live node.
fn setup(peer: PeerId) -> (ResourceManager, ConnHandle) {
    let mut rm = ResourceManager::new(Limits::for_machine(8 << 30, 16384));
    let c = rm
        .open_connection(Direction::Outbound, true)
        .expect("room for a connection");
    rm.set_connection_peer(c, peer).expect("room for the peer");
    (rm, c)
}

/// Open an inbound stream, set its peer, protocol and service, reserve and release 4 KiB,
/// close it.
fn stream_lifecycle(rm: &mut ResourceManager, peer: PeerId) {
    let s = rm.open_stream(Direction::Inbound).expect("open");
    rm.set_stream_peer(s, peer).expect("peer");
    rm.set_protocol(s, PROTOCOL).expect("protocol");
    rm.set_service(s, SERVICE).expect("service");
    rm.reserve_memory(s, 4096, PRIORITY_MEDIUM)
        .expect("reserve");
    rm.release_memory(s, 4096).expect("release");
    rm.close_stream(black_box(s)).expect("close");
}

/// Open an inbound connection (with a file descriptor), move it to its peer on the
/// handshake, reserve and release 4 KiB, close it.
fn conn_lifecycle(rm: &mut ResourceManager, peer: PeerId) {
    let c = rm.open_connection(Direction::Inbound, true).expect("open");
    rm.set_connection_peer(c, peer).expect("peer");
    rm.reserve_memory(c, 4096, PRIORITY_MEDIUM)
        .expect("reserve");
    rm.release_memory(c, 4096).expect("release");
    rm.close_connection(black_box(c)).expect("close");
}

/// The connection lifecycle through `open_connection_from`: an inbound connection from an
/// address off a 1000-range allowlist, through the per-subnet gate.
fn gated_conn_lifecycle(rm: &mut ResourceManager, peer: PeerId, remote: IpAddr, now: Timestamp) {
    let c = rm
        .open_connection_from(Direction::Inbound, true, remote, now)
        .expect("open");
    rm.set_connection_peer(c, peer).expect("peer");
    rm.reserve_memory(c, 4096, PRIORITY_MEDIUM)
        .expect("reserve");
    rm.release_memory(c, 4096).expect("release");
    rm.close_connection(black_box(c)).expect("close");
}

/// Heap allocations made by 10 000 runs of `f` after one warm-up run.
fn allocations(label: &str, mut f: impl FnMut()) -> usize {
    f();
    let region = Region::new(GLOBAL);
    for _ in 0..10_000 {
        f();
    }
    let stats = region.change();
    let n = stats.allocations + stats.reallocations;
    println!("{label}: {n} heap allocations in 10000 steady-state runs");
    n
}

fn benches(c: &mut Criterion) {
    let peer = PeerId::from_public_key([7; 32]);

    let (mut rm, _conn) = setup(peer);
    stream_lifecycle(&mut rm, peer);
    c.bench_function("rcmgr/stream_lifecycle", |b| {
        b.iter(|| stream_lifecycle(&mut rm, black_box(peer)))
    });
    let n = allocations("rcmgr/stream_lifecycle", || stream_lifecycle(&mut rm, peer));
    assert_eq!(n, 0, "the stream lifecycle allocates in steady state");

    let (mut rm, _conn) = setup(peer);
    conn_lifecycle(&mut rm, peer);
    c.bench_function("rcmgr/connection_lifecycle", |b| {
        b.iter(|| conn_lifecycle(&mut rm, black_box(peer)))
    });
    let n = allocations("rcmgr/connection_lifecycle", || {
        conn_lifecycle(&mut rm, peer)
    });
    assert_eq!(n, 0, "the connection lifecycle allocates in steady state");

    let (mut rm, _conn) = setup(peer);
    let (list, _) = allowlist();
    rm.set_allowlist(list);
    // A sustained rate no benchmark reaches: only the bookkeeping is measured.
    rm.set_gate_limits(GateLimits {
        rate_per_sec: u64::MAX / 2_000_000,
        burst: 1_000_000,
        ..GateLimits::default()
    });
    let remote = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let mut now = Timestamp::from_secs(1);
    let mut tick = || {
        now = now + Duration::from_micros(1);
        now
    };
    gated_conn_lifecycle(&mut rm, peer, remote, tick());
    c.bench_function("rcmgr/connection_lifecycle_gated", |b| {
        b.iter(|| gated_conn_lifecycle(&mut rm, black_box(peer), remote, tick()))
    });
    let n = allocations("rcmgr/connection_lifecycle_gated", || {
        gated_conn_lifecycle(&mut rm, peer, remote, tick())
    });
    assert_eq!(
        n, 0,
        "the gated connection lifecycle allocates in steady state"
    );
}

/// 1000 pseudo-random IPv4 ranges of /8 to /32 (few merge), and probe addresses.
fn allowlist() -> (Allowlist, Vec<IpAddr>) {
    let mut x: u32 = 0x9e37_79b9;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let cidrs: Vec<Cidr> = (0..1000)
        .map(|_| {
            let a = IpAddr::V4(Ipv4Addr::from(next()));
            let prefix = u8::try_from(16 + next() % 17).expect("prefix fits");
            Cidr::new(a, prefix).expect("valid prefix")
        })
        .collect();
    let probes = (0..1024)
        .map(|i| {
            if i % 2 == 0 {
                // A hit: inside one of the ranges.
                let c = cidrs[i % cidrs.len()].to_string();
                c.split('/')
                    .next()
                    .and_then(|a| a.parse().ok())
                    .expect("address")
            } else {
                IpAddr::V4(Ipv4Addr::from(next()))
            }
        })
        .collect();
    (Allowlist::new(cidrs, []), probes)
}

fn allowlist_bench(c: &mut Criterion) {
    let (list, probes) = allowlist();
    println!(
        "allowlist: 1000 ranges, {} intervals after merging",
        list.intervals()
    );
    let mut i = 0;
    c.bench_function("rcmgr/allowlist_1000_cidrs", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            list.allows_addr(black_box(probes[i]))
        })
    });
}

criterion_group!(rcmgr, benches, allowlist_bench);
criterion_main!(rcmgr);
