//! State-machine tests with a tiny in-test network: nodes are stepped directly and messages
//! are delivered after a fixed one-way delay.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::connmgr::TrimCause;
use crate::filter::Filter;
use crate::simexec::ExecEvent;

const ONE_WAY: Duration = Duration::from_millis(20);

struct Net {
    now: Timestamp,
    nodes: Vec<Node>,
    /// (delivery time, sequence) -> (to index, from peer, message)
    in_flight: BTreeMap<(Timestamp, u64), (usize, PeerId, Message)>,
    seq: u64,
    events: Vec<(usize, Event)>,
    /// One-way delay between two nodes.
    one_way: fn(usize, usize) -> Duration,
}

impl Net {
    fn new(n: usize, config: impl Fn(usize) -> Config) -> Self {
        let root = SeedTree::new(99);
        let now = Timestamp::from_secs(1_700_000_000);
        let nodes = (0..n)
            .map(|i| {
                let kp = Keypair::generate(&mut root.child(i as u64).child(1).rng());
                Node::new(config(i), kp, root.child(i as u64).child(2), now).unwrap()
            })
            .collect();
        Net {
            now,
            nodes,
            in_flight: BTreeMap::new(),
            seq: 0,
            events: Vec::new(),
            one_way: |_, _| ONE_WAY,
        }
    }

    fn index_of(&self, peer: PeerId) -> Option<usize> {
        self.nodes.iter().position(|n| n.peer_id() == peer)
    }

    fn drain(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].poll_action() {
            match a {
                Action::Dial { id, addr, .. } => {
                    let j: usize = addr.trim_start_matches("/sim/").parse().unwrap();
                    let (pi, pj) = (self.nodes[i].peer_id(), self.nodes[j].peer_id());
                    self.nodes[i].handle_connected(self.now, pj, Direction::Outbound, Some(id));
                    self.nodes[j].handle_connected(self.now, pi, Direction::Inbound, None);
                    self.drain(j);
                }
                Action::Disconnect { peer } => {
                    let j = self.index_of(peer).unwrap();
                    let pi = self.nodes[i].peer_id();
                    self.nodes[i].handle_disconnected(self.now, peer);
                    self.nodes[j].handle_disconnected(self.now, pi);
                    self.drain(j);
                }
            }
        }
        while let Some(t) = self.nodes[i].poll_transmit() {
            let to = self.index_of(t.to).unwrap();
            self.seq += 1;
            let from = self.nodes[i].peer_id();
            let delay = (self.one_way)(i, to);
            self.in_flight
                .insert((self.now + delay, self.seq), (to, from, t.message));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events.push((i, e));
        }
    }

    fn run_until(&mut self, end: Timestamp) {
        loop {
            let next_msg = self.in_flight.keys().next().map(|k| k.0);
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.poll_timeout().map(|t| (t, i)))
                .min();
            let t = match (next_msg, next_timer) {
                (Some(m), Some((t, _))) => m.min(t),
                (Some(m), None) => m,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if t > end {
                break;
            }
            self.now = t;
            if next_msg == Some(t) {
                let (k, (to, from, msg)) = self.in_flight.pop_first().unwrap();
                debug_assert_eq!(k.0, t);
                self.nodes[to].handle_message(t, from, msg);
                self.drain(to);
            } else if let Some((_, i)) = next_timer {
                self.nodes[i].handle_timeout(t);
                self.drain(i);
            }
        }
        self.now = end;
    }
}

fn star_config(i: usize, hub: PeerId) -> Config {
    Config {
        listen_addrs: vec![format!("/sim/{i}")],
        bootstrap: if i == 0 {
            vec![]
        } else {
            vec![BootstrapPeer {
                addr: "/sim/0".into(),
                peer_id: Some(hub),
            }]
        },
        low_watermark: 3,
        ..Config::default()
    }
}

fn hub_id() -> PeerId {
    Keypair::generate(&mut SeedTree::new(99).child(0).child(1).rng()).peer_id()
}

#[test]
fn two_nodes_exchange_hello_and_ping() {
    let hub = hub_id();
    let mut net = Net::new(2, |i| star_config(i, hub));
    let start = net.now;
    net.run_until(start + Duration::from_secs(5));
    let (a, b) = (net.nodes[0].peer_id(), net.nodes[1].peer_id());
    assert!(net.nodes[0].is_connected(&b) && net.nodes[1].is_connected(&a));
    assert!(
        net.events
            .iter()
            .any(|(i, e)| *i == 0 && *e == Event::Hello { peer: b })
    );
    assert!(
        net.events
            .iter()
            .any(|(i, e)| *i == 1 && *e == Event::Hello { peer: a })
    );
    let rtt = net.nodes[1]
        .peer_table()
        .get(&a)
        .and_then(|e| e.rtt.as_deref().copied())
        .expect("rtt measured");
    assert_eq!(rtt.ewma_us, 40_000, "two one-way delays of 20 ms");
    let entry = net.nodes[0].peer_table().get(&b).unwrap();
    assert_eq!(entry.hops, 0);
    assert_eq!(entry.addrs().collect::<Vec<_>>(), ["/sim/1"]);
}

#[test]
fn peers_found_through_exchange_get_dialled() {
    let hub = hub_id();
    let mut net = Net::new(6, |i| star_config(i, hub));
    let start = net.now;
    net.run_until(start + Duration::from_secs(300));
    for (i, n) in net.nodes.iter().enumerate() {
        let connected = n.connections().count();
        assert!(connected >= 3, "node {i} has only {connected} connections");
        assert_eq!(n.peer_table().len(), 5, "node {i} knows every other node");
    }
    // Spokes learned of each other from the hub, not by bootstrap.
    let learned = net.nodes[3]
        .peer_table()
        .iter()
        .filter(|e| matches!(e.source, Source::Exchange { via } if via == hub))
        .count();
    assert!(learned >= 1);
}

#[test]
fn operator_ping_needs_a_connection() {
    let hub = hub_id();
    let mut net = Net::new(2, |i| star_config(i, hub));
    let stranger = PeerId::from_public_key([7; 32]);
    assert_eq!(
        net.nodes[0].ping(net.now, stranger),
        Err(NodeError::NotConnected(stranger))
    );
    let start = net.now;
    net.run_until(start + Duration::from_secs(1));
    let b = net.nodes[1].peer_id();
    let nonce = net.nodes[0].ping(net.now, b).unwrap();
    net.drain(0);
    net.run_until(start + Duration::from_secs(2));
    assert!(
        net.events
            .iter()
            .any(|(i, e)| *i == 0 && matches!(e, Event::Rtt { nonce: n, .. } if *n == nonce))
    );
}

#[test]
fn forged_hello_drops_the_peer() {
    let hub = hub_id();
    let mut net = Net::new(2, |i| star_config(i, hub));
    let start = net.now;
    net.run_until(start + Duration::from_secs(1));
    let b = net.nodes[1].peer_id();
    let mut forged = net.nodes[1].advert().clone();
    forged.advert.resources.cores = 1024;
    net.nodes[0].handle_message(net.now, b, Message::Hello(std::sync::Arc::new(forged)));
    assert_eq!(
        net.nodes[0].poll_action(),
        Some(Action::Disconnect { peer: b })
    );
    let mut saw_reject = false;
    while let Some(e) = net.nodes[0].poll_event() {
        saw_reject |= matches!(
            e,
            Event::AdvertRejected {
                reason: AdvertError::Forged,
                ..
            }
        );
    }
    assert!(saw_reject);
    assert_ne!(
        net.nodes[0]
            .peer_table()
            .get(&b)
            .and_then(|e| e.resources())
            .map(|r| r.cores),
        Some(1024)
    );
}

#[test]
fn inbound_over_peers_max_is_refused() {
    let hub = hub_id();
    let mut net = Net::new(4, |i| {
        let mut c = star_config(i, hub);
        if i == 0 {
            c.high_watermark = 2;
            c.low_watermark = 0;
        }
        c
    });
    let start = net.now;
    net.run_until(start + Duration::from_secs(30));
    assert!(net.nodes[0].peers_count() <= 2);
    assert!(net.events.iter().any(|(i, e)| *i == 0
        && matches!(
            e,
            Event::Dropping {
                reason: "full" | "refused",
                ..
            }
        )));
}

#[test]
fn silent_peer_is_dropped_after_ping_failures() {
    let mut node = Node::new(
        Config::default(),
        Keypair::generate(&mut SeedTree::new(1).rng()),
        SeedTree::new(2),
        Timestamp::from_secs(1000),
    )
    .unwrap();
    let silent = PeerId::from_public_key([9; 32]);
    let mut now = Timestamp::from_secs(1000);
    node.handle_connected(now, silent, Direction::Inbound, None);
    let mut dropped = false;
    for _ in 0..200 {
        now = node.poll_timeout().unwrap().max(now);
        node.handle_timeout(now);
        while let Some(a) = node.poll_action() {
            if a == (Action::Disconnect { peer: silent }) {
                dropped = true;
            }
        }
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
        if dropped {
            break;
        }
    }
    assert!(dropped);
    assert!(!node.is_connected(&silent));
}

#[test]
fn a_full_node_still_hands_newcomers_some_peers() {
    let hub = hub_id();
    let mut net = Net::new(5, |i| {
        let mut c = star_config(i, hub);
        if i == 0 {
            c.high_watermark = 1;
            c.low_watermark = 0;
        }
        c
    });
    let start = net.now;
    net.run_until(start + Duration::from_secs(120));
    assert!(net.nodes[0].peers_count() <= 1);
    // Refused spokes learned of the other spokes from the hub and connected to them.
    for (i, n) in net.nodes.iter().enumerate().skip(1) {
        let others = n
            .connections()
            .filter(|c| c.peer != hub && !c.closing)
            .count();
        assert!(
            others >= 2,
            "spoke {i} has {others} connections to other spokes"
        );
    }
}

#[test]
fn timers_advance_when_ping_timeout_exceeds_interval() {
    let config = Config {
        ping_interval: Duration::from_secs(2),
        ping_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let start = Timestamp::from_secs(1000);
    let mut node = Node::new(
        config,
        Keypair::generate(&mut SeedTree::new(1).rng()),
        SeedTree::new(2),
        start,
    )
    .unwrap();
    node.handle_connected(
        start,
        PeerId::from_public_key([9; 32]),
        Direction::Inbound,
        None,
    );
    let mut now = start;
    for _ in 0..50 {
        let next = node.poll_timeout().unwrap();
        assert!(next > now || now == start, "timer stuck at {now:?}");
        now = next.max(now);
        node.handle_timeout(now);
        while node.poll_action().is_some() {}
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
    }
    assert!(now > start + Duration::from_secs(10));
}

#[test]
fn a_node_at_its_target_explores_and_stays_at_target() {
    let hub = hub_id();
    let mut net = Net::new(8, |i| {
        let mut c = star_config(i, hub);
        c.low_watermark = 2;
        c.explore_interval = Duration::from_secs(30);
        c
    });
    let start = net.now;
    net.run_until(start + Duration::from_secs(600));
    let explored = net
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                Event::Dropping {
                    reason: "rotate",
                    ..
                }
            )
        })
        .count();
    assert!(explored >= 8, "only {explored} rotations in 10 minutes");
    for (i, n) in net.nodes.iter().enumerate() {
        // Rotation never leaves a node below its target for good.
        assert!(
            n.peers_count() >= 2,
            "node {i} has {} peers",
            n.peers_count()
        );
    }
}

#[test]
fn a_refusal_from_a_peer_is_ignored() {
    let hub = hub_id();
    let mut net = Net::new(2, |i| star_config(i, hub));
    let start = net.now;
    net.run_until(start + Duration::from_secs(5));
    let b = net.nodes[1].peer_id();
    let now = net.now;
    let node = &mut net.nodes[0];
    let table = node.peer_table().len();
    let timeout = node.poll_timeout();
    node.handle_message(now, b, Message::refused("system limit reached"));
    assert!(node.poll_transmit().is_none(), "nothing is answered");
    assert!(node.poll_action().is_none());
    assert!(node.poll_event().is_none());
    assert!(node.is_connected(&b));
    assert_eq!(node.peer_table().len(), table);
    assert_eq!(node.poll_timeout(), timeout);
}

/// Nodes 0..4 are one cluster and 4..8 another, 5 ms apart inside a cluster and 100 ms
/// between them (one way).
fn two_clusters(a: usize, b: usize) -> Duration {
    if (a < 4) == (b < 4) {
        Duration::from_millis(5)
    } else {
        Duration::from_millis(100)
    }
}

fn count_drops(net: &Net, node: usize, reason: &str) -> usize {
    net.events
        .iter()
        .filter(|(i, e)| {
            *i == node && matches!(e, Event::Dropping { reason: r, .. } if *r == reason)
        })
        .count()
}

#[test]
fn a_latency_filter_keeps_the_near_cluster_and_never_the_last_link_alone() {
    let hub = hub_id();
    let mut net = Net::new(8, |i| {
        let mut c = star_config(i, hub);
        c.low_watermark = 3;
        c.filter = Filter::All(vec![
            Filter::NotSelf,
            Filter::RttMax(Duration::from_millis(50)),
        ]);
        c
    });
    net.one_way = two_clusters;
    let start = net.now;
    net.run_until(start + Duration::from_secs(600));
    for (i, n) in net.nodes.iter().enumerate() {
        let peers: Vec<usize> = n
            .connections()
            .filter(|c| !c.closing)
            .map(|c| net.index_of(c.peer).unwrap())
            .collect();
        assert!(!peers.is_empty(), "node {i} was cut off");
        // Every peer is in the node's own cluster: the far ones failed the filter.
        assert!(
            peers.iter().all(|p| (*p < 4) == (i < 4)),
            "node {i} keeps {peers:?}"
        );
        for p in &peers {
            assert!(n.verdict(&net.nodes[*p].peer_id(), net.now).passes());
        }
    }
    // The far cluster reached the hub first and dropped it once measured.
    assert!((4..8).any(|i| count_drops(&net, i, "filter") > 0));
}

#[test]
fn a_node_alone_with_failing_peers_keeps_its_last_connection() {
    let hub = hub_id();
    let mut net = Net::new(2, |i| {
        let mut c = star_config(i, hub);
        c.filter = Filter::RttMax(Duration::from_millis(10));
        c
    });
    let start = net.now;
    net.run_until(start + Duration::from_secs(120));
    // RTT 40 ms fails the filter on both sides, but neither has anyone else.
    assert!(
        net.nodes[0]
            .verdict(&net.nodes[1].peer_id(), net.now)
            .fails()
    );
    assert_eq!(net.nodes[0].peers_count(), 1);
    assert_eq!(net.nodes[1].peers_count(), 1);
}

fn small_node(i: usize) -> bool {
    i % 3 == 2
}

#[test]
fn peers_rejected_by_a_resource_filter_are_not_stored_nor_dialled() {
    let hub = hub_id();
    let mut net = Net::new(9, |i| {
        let mut c = star_config(i, hub);
        c.resources.cores = if small_node(i) { 1 } else { 8 };
        if i != 0 {
            c.filter = Filter::ResourcesMin(crate::filter::ResourcesMin {
                cores: Some(4),
                ..Default::default()
            });
        }
        c
    });
    let start = net.now;
    net.run_until(start + Duration::from_secs(300));
    let filtered: usize = net
        .events
        .iter()
        .map(|(_, e)| match e {
            Event::PeersLearned { filtered, .. } => *filtered,
            _ => 0,
        })
        .sum();
    assert!(filtered > 0, "no record was filtered at discovery");
    for (i, n) in net.nodes.iter().enumerate().skip(1) {
        for j in 1..9 {
            let peer = net.nodes[j].peer_id();
            if small_node(j) && i != j {
                assert!(
                    !n.is_connected(&peer) || small_node(i) && n.peers_count() == 1,
                    "node {i} holds small node {j}"
                );
                let dialled = net.events.iter().any(|(k, e)| {
                    *k == i && matches!(e, Event::Dialing { peer: Some(p), .. } if *p == peer)
                });
                assert!(!dialled, "node {i} dialled small node {j}");
            }
        }
    }
}

#[test]
fn a_full_node_trims_to_its_low_watermark_and_spares_protected_peers() {
    let hub = hub_id();
    let mut net = Net::new(9, |i| {
        let mut c = star_config(i, hub);
        if i == 0 {
            c.low_watermark = 2;
            c.high_watermark = 4;
            c.conn_grace = Duration::from_secs(1);
        } else {
            c.low_watermark = 1;
            c.explore_interval = Duration::from_secs(3600);
        }
        c
    });
    let start = net.now;
    // Protect the first spoke connected at the start.
    net.run_until(start + Duration::from_millis(1));
    let first: Vec<PeerId> = net.nodes[0]
        .connections()
        .filter(|c| !c.closing)
        .map(|c| c.peer)
        .take(1)
        .collect();
    for p in &first {
        assert!(net.nodes[0].protect(p));
    }
    let mut most = 0;
    let end = start + Duration::from_secs(300);
    while net.now < end {
        let t = net.now + Duration::from_millis(100);
        net.run_until(t);
        most = most.max(net.nodes[0].peers_count());
    }
    assert!(most <= 4, "the hub held {most} peers, high watermark 4");
    assert!(net.nodes[0].trims() >= 1);
    let trimmed = count_drops(&net, 0, "trim");
    assert!(trimmed >= 2, "{trimmed} peers trimmed");
    for p in &first {
        assert!(net.nodes[0].is_connected(p), "a protected peer was trimmed");
    }
    assert!(net.events.iter().any(|(i, e)| *i == 0
        && matches!(
            e,
            Event::Trimmed {
                cause: TrimCause::HighWatermark,
                ..
            }
        )));
}

#[test]
fn pressure_from_the_resource_manager_trims_before_the_limit() {
    let hub = hub_id();
    let mut net = Net::new(7, |i| {
        let mut c = star_config(i, hub);
        c.conn_grace = Duration::from_secs(1);
        if i == 0 {
            c.low_watermark = 2;
        }
        c
    });
    let start = net.now;
    net.run_until(start + Duration::from_secs(60));
    let before = net.nodes[0].peers_count();
    assert!(before > 2, "the hub has {before} peers");
    let now = net.now;
    // 95 of 100 system connections held: past the 90% threshold.
    net.nodes[0].report_system_conns(now, 95, 100);
    net.drain(0);
    assert_eq!(net.nodes[0].peers_count(), 2);
    assert!(net.events.iter().any(|(i, e)| *i == 0
        && matches!(
            e,
            Event::Trimmed {
                cause: TrimCause::Pressure,
                ..
            }
        )));
    assert!(count_drops(&net, 0, "trim-pressure") >= 1);
    // Well under the threshold nothing more happens.
    let trims = net.nodes[0].trims();
    net.nodes[0].report_system_conns(now + Duration::from_secs(60), 10, 100);
    assert_eq!(net.nodes[0].trims(), trims);
}

#[test]
fn connections_the_shell_opens_by_itself_count_against_the_high_watermark() {
    let config = Config {
        low_watermark: 1,
        high_watermark: 2,
        ..Config::default()
    };
    let now = Timestamp::from_secs(1000);
    let mut node = Node::new(
        config,
        Keypair::generate(&mut SeedTree::new(1).rng()),
        SeedTree::new(2),
        now,
    )
    .unwrap();
    for n in 1..=4u8 {
        // Outbound without a dial of the core: the shell's DHT connected by itself.
        node.handle_connected(
            now,
            PeerId::from_public_key([n; 32]),
            Direction::Outbound,
            None,
        );
        assert!(node.peers_count() <= 2, "{} peers", node.peers_count());
    }
    assert_eq!(node.peers_count(), 2);
    assert_eq!(node.connections().filter(|c| c.closing).count(), 2);
}

#[test]
fn a_provider_reports_its_latency_table_to_whoever_asks() {
    let hub = hub_id();
    let mut net = Net::new(4, |i| star_config(i, hub));
    let start = net.now;
    net.run_until(start + Duration::from_secs(60));
    let others: Vec<PeerId> = (1..4).map(|i| net.nodes[i].peer_id()).collect();
    let stranger = PeerId::from_public_key([77; 32]);
    let mut asked = others.clone();
    asked.push(stranger);
    let expected = net.nodes[0].rtt_table(&asked);
    assert_eq!(
        expected.len(),
        3,
        "the hub measured every spoke, not the stranger"
    );
    assert!(
        expected
            .iter()
            .all(|s| s.samples > 0 && s.ewma_us >= 39_000)
    );
    // Spoke 1 asks the hub for the hub's RTTs to every spoke.
    let now = net.now;
    let first = net.nodes[1].query_rtts(hub, asked.clone()).unwrap();
    let second = net.nodes[1].query_rtts(hub, asked.clone()).unwrap();
    assert_ne!(first, second, "every query has its own id");
    net.drain(1);
    net.run_until(now + Duration::from_millis(100));
    let report = net.events.iter().find_map(|(i, e)| match e {
        Event::RttReport { from, id, rtts } if *i == 1 && *from == hub && *id == second => {
            Some(rtts.clone())
        }
        _ => None,
    });
    assert_eq!(report, Some(expected));
    assert_eq!(
        net.nodes[1].query_rtts(hub, vec![stranger; crate::wire::RTT_QUERY_MAX + 1]),
        Err(NodeError::TooMany(crate::wire::RTT_QUERY_MAX + 1))
    );
    assert_eq!(
        net.nodes[1].query_rtts(stranger, vec![]),
        Err(NodeError::NotConnected(stranger))
    );
}

#[test]
fn an_uptime_filter_is_judged_again_as_time_passes() {
    let hub = hub_id();
    // The spokes keep only peers up for less than 100 s: everyone passes at first and
    // fails once 100 s have passed, so each spoke lets go of all but its last connection.
    let mut net = Net::new(5, |i| {
        let mut c = star_config(i, hub);
        if i > 0 {
            c.filter = Filter::Not(Box::new(Filter::UptimeMin(Duration::from_secs(100))));
            c.low_watermark = 3;
        }
        c
    });
    let start = net.now;
    net.run_until(start + Duration::from_secs(90));
    for i in 1..5 {
        assert!(net.nodes[i].peers_count() >= 2, "spoke {i}");
        assert_eq!(count_drops(&net, i, "filter"), 0);
    }
    net.run_until(start + Duration::from_secs(200));
    for i in 1..5 {
        assert_eq!(
            net.nodes[i].peers_count(),
            1,
            "spoke {i} keeps only its last"
        );
    }
    assert!(
        (1..5)
            .map(|i| count_drops(&net, i, "filter"))
            .sum::<usize>()
            >= 4
    );
}

/// A provider (the hub, node 0) and a requester (node 1) for the jobs outbox tests. The
/// hub's job is started by hand; returns the deployment and the job's allocation.
fn provider_and_requester() -> (Net, u64, crate::capacity::AllocationId) {
    use crate::advert::Resources;
    use crate::capacity::Capacity;
    use crate::jobs::ExecCommand;
    use crate::offer::Preferences;
    let hub = hub_id();
    let mut net = Net::new(2, |i| {
        let mut c = star_config(i, hub);
        if i == 0 {
            c.resources = Resources {
                cores: 4,
                memory_mb: 4096,
                disk_gb: 10,
                gpus: 0,
            };
            c.jobs.preferences = Preferences::new(1000, ["sim"]);
        }
        c
    });
    net.nodes[0]
        .jobs_mut()
        .onboard(Capacity {
            millicores: 4000,
            memory_mb: 4096,
            disk_gb: 10,
            gpus: 0,
        })
        .unwrap();
    let start = net.now;
    net.run_until(start + Duration::from_secs(5));
    let spec = crate::job::JobSpec::from_toml_str(
        "image = \"busybox\"\nduration_s = 600\n[resources]\ncores = 1\nmemory_mb = 64\n",
        std::path::Path::new("job.toml"),
    )
    .unwrap();
    let now = net.now;
    let id = net.nodes[1].deploy(now, spec, &[hub]).unwrap();
    net.drain(1);
    net.run_until(now + Duration::from_secs(1));
    let Some(ExecCommand::Start { id: alloc, .. }) = net.nodes[0].poll_exec() else {
        panic!("the provider did not start the job");
    };
    let now = net.now;
    net.nodes[0].handle_exec(now, ExecEvent::Started { id: alloc });
    net.drain(0);
    net.run_until(now + Duration::from_secs(1));
    assert_eq!(
        net.nodes[1].deployments()[0].state,
        crate::deployment::DeployState::Running
    );
    (net, id, alloc)
}

/// Cuts the link between nodes 0 and 1 without either asking for it.
fn cut(net: &mut Net) {
    let (p0, p1) = (net.nodes[0].peer_id(), net.nodes[1].peer_id());
    let now = net.now;
    net.nodes[0].handle_disconnected(now, p1);
    net.nodes[1].handle_disconnected(now, p0);
    net.in_flight.clear();
}

#[test]
fn a_status_sent_while_the_requester_is_away_reaches_it_once_back() {
    let (mut net, id, alloc) = provider_and_requester();
    cut(&mut net);
    // The job ends while the requester is away: the provider keeps its status, dials the
    // requester at the address of its advert and delivers it.
    let now = net.now;
    net.nodes[0].handle_exec(
        now,
        ExecEvent::Exited {
            id: alloc,
            outcome: crate::simexec::Outcome::Completed,
        },
    );
    assert!(net.nodes[0].jobs_waiting() > 0 || net.nodes[0].poll_action().is_some());
    net.drain(0);
    net.run_until(now + Duration::from_secs(5));
    let view = net.nodes[1].deployments();
    assert_eq!(
        view[0].state,
        crate::deployment::DeployState::Completed,
        "{view:?}"
    );
    assert_eq!(view[0].id, id);
    assert_eq!(net.nodes[0].jobs_waiting(), 0);
    assert_eq!(net.nodes[0].jobs_undeliverable(), 0);
}

#[test]
fn job_messages_for_an_unreachable_peer_expire_and_are_counted() {
    let (mut net, _, alloc) = provider_and_requester();
    cut(&mut net);
    // The two forget each other: nothing can be dialled, retries back off.
    let (p0, p1) = (net.nodes[0].peer_id(), net.nodes[1].peer_id());
    net.nodes[0].table.remove(&p1);
    net.nodes[1].table.remove(&p0);
    net.nodes[1].config.bootstrap.clear();
    let now = net.now;
    net.nodes[0].handle_exec(
        now,
        ExecEvent::Exited {
            id: alloc,
            outcome: crate::simexec::Outcome::Completed,
        },
    );
    net.drain(0);
    assert_eq!(net.nodes[0].jobs_waiting(), 1);
    net.run_until(now + jobs::OUTBOX_TTL - Duration::from_secs(1));
    assert_eq!(net.nodes[0].jobs_waiting(), 1, "kept until its time is up");
    net.run_until(now + jobs::OUTBOX_TTL + jobs::OUTBOX_RETRY_MAX);
    assert_eq!(net.nodes[0].jobs_waiting(), 0);
    assert_eq!(net.nodes[0].jobs_undeliverable(), 1);
}

#[test]
fn peers_asked_about_in_an_rtt_query_get_measured() {
    let hub = hub_id();
    // The spokes stop at one connection (the hub) and never explore: spokes 1 and 2 know
    // each other's address through the hub but do not connect by themselves.
    let mut net = Net::new(3, |i| {
        let mut c = star_config(i, hub);
        if i > 0 {
            c.low_watermark = 1;
            c.explore_interval = Duration::from_secs(100_000);
        }
        c
    });
    let start = net.now;
    net.run_until(start + Duration::from_secs(60));
    let (p1, p2) = (net.nodes[1].peer_id(), net.nodes[2].peer_id());
    assert!(net.nodes[1].table.get(&p2).is_some_and(|e| e.has_addr()));
    assert!(net.nodes[1].rtt_table(&[p2]).is_empty(), "not measured yet");
    let now = net.now;
    net.nodes[0].query_rtts(p1, vec![p2]).unwrap();
    net.drain(0);
    net.run_until(now + Duration::from_secs(60));
    let measured = net.nodes[1].rtt_table(&[p2]);
    assert_eq!(
        measured.len(),
        1,
        "spoke 1 connected to spoke 2 and measured it"
    );
    assert!(measured[0].samples > 0);
}
