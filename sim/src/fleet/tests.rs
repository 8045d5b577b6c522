//! Fleet engine tests: determinism, handshake timing, latency, failures and FIFO links.

use std::time::Duration;

use flotilla_core::BootstrapPeer;
use rand::SeedableRng;

use super::*;
use crate::engine::EngineKind;
use crate::scenario::Scenario;
use crate::summary::Summary;
use crate::world::sim_addr;

fn world(text: &str, seed: u64) -> World {
    World::build(&Scenario::parse(text, "t.toml").unwrap(), seed, sim_addr)
}

const MESH: &str = r#"
name = "mesh"
duration_s = 120
[peers]
count = 40
bootstrap = 2
start_spread_s = 20
[regions]
eu-west = 1
na-east = 1
ea-jp = 1
[latency]
jitter_ms = 2
last_mile_ms = [5, 20]
[node]
low_watermark = 5
high_watermark = 64
ping_interval_s = 10
ping_timeout_s = 5
exchange_interval_s = 20
"#;

fn run_world(w: &World) -> RunResult {
    run(w, Trace::new(w), w.duration())
}

fn text(r: &RunResult) -> String {
    String::from_utf8(r.trace.text().to_vec()).unwrap()
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let a = run_world(&world(MESH, 7));
    let b = run_world(&world(MESH, 7));
    let c = run_world(&world(MESH, 8));
    assert!(a.trace.lines() > 1000);
    assert_eq!(a.trace.text(), b.trace.text());
    assert_eq!(a.trace.digest(), b.trace.digest());
    assert_ne!(a.trace.text(), c.trace.text());
    assert_eq!(
        (a.messages_sent, a.messages_delivered),
        (b.messages_sent, b.messages_delivered)
    );
}

#[test]
fn every_node_connects_and_measures_the_modelled_rtts() {
    let w = world(MESH, 3);
    let r = run_world(&w);
    let summary = Summary::from_run(&w, EngineKind::Fleet, &r);
    assert_eq!(summary.connected_fraction, 1.0, "{summary}");
    assert!(
        summary.degree_min >= 1 && summary.rtt_samples > 100,
        "{summary}"
    );
    // Two one-way delays: half the base RTT each, plus up to 2 ms of jitter each.
    let gap = summary.rtt_neighbour_mean_ms - summary.rtt_neighbour_model_mean_ms;
    assert!((-0.01..=4.0).contains(&gap), "{summary}");
    for (i, node) in r.nodes.iter().enumerate() {
        for c in node.connections() {
            let Some(rtt) = node
                .peer_table()
                .get(&c.peer)
                .and_then(|e| e.rtt.as_deref().copied())
            else {
                continue;
            };
            let model = w.rtt_us(i, w.index_of(&c.peer).unwrap());
            assert!(
                rtt.min_us + 1 >= model && rtt.min_us <= model + 4_000,
                "n{i}: {rtt:?} vs {model} us"
            );
        }
    }
    assert_eq!(
        r.messages_sent,
        r.messages_delivered + dropped(&r) + in_flight(&r)
    );
}

fn end_field(r: &RunResult, field: &str) -> u64 {
    let text = text(r);
    let end = text.lines().last().unwrap();
    let value = end.split(' ').find_map(|f| f.strip_prefix(field)).unwrap();
    value.parse().unwrap()
}

fn dropped(r: &RunResult) -> u64 {
    end_field(r, "dropped=")
}

fn in_flight(r: &RunResult) -> u64 {
    end_field(r, "in_flight=")
}

const PAIR: &str =
    "name = \"pair\"\nduration_s = 5\n[peers]\ncount = 2\n[latency]\njitter_ms = 0\n";

#[test]
fn inbound_after_one_way_established_after_round_trip() {
    let w = world(PAIR, 1);
    let r = run_world(&w);
    let rtt_us = w.rtt_us(0, 1);
    let at = |us: u64| format!("{:>5}.{:06}", us / 1_000_000, us % 1_000_000);
    let t = text(&r);
    assert!(t.contains(&format!("{} n1 dial n0\n", at(0))), "{t}");
    assert!(
        t.contains(&format!("{} n0 conn+ n1 in\n", at(rtt_us / 2))),
        "{t}"
    );
    assert!(
        t.contains(&format!("{} n1 conn+ n0 out\n", at(rtt_us / 2 * 2))),
        "{t}"
    );
    // The first ping measures exactly the modelled RTT (to the microsecond of halving).
    assert!(
        t.contains(&format!(
            "rtt n0 {}.{:03}ms",
            rtt_us / 2 * 2 / 1000,
            rtt_us / 2 * 2 % 1000
        )),
        "{t}"
    );
}

#[test]
fn simultaneous_dials_make_one_connection() {
    let both = "name = \"both\"\nduration_s = 5\n[peers]\ncount = 2\nbootstrap = 2\n";
    let w = world(both, 1);
    let r = run_world(&w);
    let t = text(&r);
    assert!(t.contains("n0 dial n1") && t.contains("n1 dial n0"), "{t}");
    for (i, node) in r.nodes.iter().enumerate() {
        assert_eq!(node.connections().count(), 1, "n{i}");
        assert_eq!(
            node.status(World::epoch()).dialing,
            0,
            "n{i}: every dial was answered"
        );
    }
    assert_eq!(t.matches("conn+").count(), 2, "{t}");
}

#[test]
fn failed_dials_say_why_and_when() {
    let mut w = world(PAIR, 1);
    w.peer_mut(1).config.bootstrap = vec![
        BootstrapPeer {
            addr: "/dns4/nowhere/tcp/4001".into(),
            peer_id: None,
        },
        BootstrapPeer {
            addr: sim_addr(1),
            peer_id: None,
        },
    ];
    // n0 expects a stranger on n1's address.
    let stranger = PeerId::from_public_key([5; 32]);
    w.peer_mut(0).config.bootstrap = vec![BootstrapPeer {
        addr: sim_addr(1),
        peer_id: Some(stranger),
    }];
    let r = run_world(&w);
    let t = text(&r);
    assert!(t.contains("    0.000000 n1 dial-failed ? self\n"), "{t}");
    assert!(
        t.contains("    5.000000 n1 dial-failed ? unreachable\n"),
        "{t}"
    );
    let rtt_us = w.rtt_us(0, 1);
    let wrong = format!(
        "{:>5}.{:06} n0 dial-failed ?{} wrong-peer\n",
        rtt_us / 1_000_000,
        rtt_us % 1_000_000,
        stranger.short()
    );
    assert!(t.contains(&wrong), "{wrong}{t}");
}

#[test]
fn dialling_a_node_that_has_not_started_is_refused() {
    let late = "name = \"late\"\nduration_s = 30\n[peers]\ncount = 2\nstart_spread_s = 30\n[latency]\njitter_ms = 0\n";
    let mut w = world(late, 2);
    let n1 = w.peer(1).peer_id;
    assert!(w.peer(1).start_offset > Duration::from_secs(1));
    w.peer_mut(0).config.bootstrap = vec![BootstrapPeer {
        addr: sim_addr(1),
        peer_id: Some(n1),
    }];
    let r = run_world(&w);
    let rtt_us = w.rtt_us(0, 1);
    let t = text(&r);
    let expected = format!(
        "{:>5}.{:06} n0 dial-failed n1 refused",
        rtt_us / 2 * 2 / 1_000_000,
        rtt_us / 2 * 2 % 1_000_000
    );
    assert!(t.contains(&expected), "{expected}\n{t}");
}

#[test]
fn refused_connections_drop_their_messages_and_count_them() {
    let crowded = MESH.replace("high_watermark = 64", "high_watermark = 6");
    let r = run_world(&world(&crowded, 5));
    let t = text(&r);
    assert!(
        t.contains(" drop ") && (t.contains(" refused\n") || t.contains(" full\n")),
        "nodes refuse inbound when full"
    );
    assert!(dropped(&r) > 0);
    assert_eq!(
        r.messages_sent,
        r.messages_delivered + dropped(&r) + in_flight(&r)
    );
}

#[test]
fn links_are_fifo_under_jitter() {
    let jittery = "name = \"j\"\nduration_s = 5\n[peers]\ncount = 2\n[latency]\njitter_ms = 50\n";
    let w = world(jittery, 1);
    let mut fleet = Fleet::new(&w, Trace::new(&w), Plan::none());
    fleet.queue = Queue::default();
    fleet.rng = ChaCha8Rng::seed_from_u64(1);
    for k in 0..200u32 {
        fleet.now = World::epoch() + Duration::from_micros(u64::from(k) * 100);
        fleet.send_on_link(0, 1, Item::Start { node: k });
    }
    let mut last = (Timestamp::ZERO, 0);
    while let Some((at, item)) = fleet.queue.pop_until(Timestamp::MAX) {
        let Item::Start { node: k } = item else {
            panic!("{item:?}")
        };
        assert!(
            at >= last.0 && (k == 0 || k > last.1),
            "item {k} at {at:?} overtook {last:?}"
        );
        last = (at, k);
    }
    assert_eq!(last.1, 199);
}

#[test]
fn every_node_has_a_timer_entry_no_later_than_its_deadline() {
    let w = world(MESH, 11);
    let mut fleet = Fleet::new(&w, Trace::new(&w), Plan::none());
    for step_ms in (0..60_000).step_by(777) {
        let t = World::epoch() + Duration::from_millis(step_ms);
        fleet.run_until(t);
        for (i, node) in fleet.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            let slot = fleet.timers[i];
            let due = node.poll_timeout().unwrap_or(Timestamp::MAX);
            assert_eq!(slot.due, due, "n{i} at {t:?}");
            assert!(
                slot.scheduled <= slot.due,
                "n{i}: entry at {:?} after deadline {due:?}",
                slot.scheduled
            );
            assert!(
                slot.scheduled > t || slot.due > t,
                "n{i}: overdue timer at {t:?}"
            );
        }
    }
}

#[test]
fn a_connection_only_one_end_holds_breaks_symmetry_at_the_end() {
    let s = Scenario::parse(MESH, "t.toml").unwrap();
    let w = World::build(&s, 3, sim_addr);
    let mut fleet = Fleet::new(&w, Trace::new(&w), Plan::of(&s));
    let end = World::epoch() + Duration::from_secs(60);
    fleet.run_until(end);
    assert!(fleet.failure.is_none(), "{:?}", fleet.failure);
    // Node 0 forgets a connection without telling the network: the other end still
    // holds it and nothing is in flight between them.
    let node = fleet.nodes[0].as_mut().unwrap();
    let peer = node.connections().find(|c| !c.closing).unwrap().peer;
    node.handle_disconnected(end, peer);
    let (_, failure) = fleet.finish(end);
    let Some(Failure::Invariant(v)) = failure else {
        panic!("expected a symmetry violation, got {failure:?}")
    };
    assert_eq!(v.invariant, "symmetry");
    assert!(v.detail.contains("n0"), "{v}");
}
