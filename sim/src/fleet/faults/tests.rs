//! Faults in the fleet engine: what each kind does to links, nodes and clocks.

use std::time::Duration;

use super::*;
use crate::check::Failure;
use crate::fleet::{Plan, run_with};
use crate::scenario::Scenario;
use crate::trace::Trace;
use crate::world::sim_addr;

fn scenario(faults: &str) -> Scenario {
    let text = format!(
        "name = \"f\"\nduration_s = 60\n[peers]\ncount = 6\n[node]\nping_interval_s = 2\nping_timeout_s = 1\n{faults}"
    );
    Scenario::parse(&text, "f.toml").unwrap()
}

/// Runs `s` at seed 1 with its plan; returns the trace lines and the failure.
fn run(s: &Scenario) -> (Vec<String>, Option<Failure>) {
    let w = World::build(s, 1, sim_addr);
    let (r, failure) = run_with(&w, Trace::new(&w), w.duration(), Plan::of(s));
    let text = String::from_utf8(r.trace.text().to_vec()).unwrap();
    (text.lines().map(str::to_string).collect(), failure)
}

fn time(line: &str) -> f64 {
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_one_way_partition_blocks_one_direction_until_it_heals() {
    let s = scenario(
        "[[faults]]\nkind = \"partition\"\nnodes_a = [0, 1]\none_way = true\nat_s = 10\nuntil_s = 20\n",
    );
    let w = World::build(&s, 1, sim_addr);
    let mut fleet = Fleet::new(&w, Trace::new(&w), Plan::of(&s));
    fleet.run_until(World::epoch() + Duration::from_secs(15));
    assert!(fleet.faults.blocks(0, 2) && fleet.faults.blocks(1, 5));
    assert!(!fleet.faults.blocks(2, 0) && !fleet.faults.blocks(0, 1));
    fleet.run_until(World::epoch() + Duration::from_secs(25));
    assert!(!fleet.faults.blocks(0, 2));
}

#[test]
fn a_crashed_node_goes_silent_its_peers_see_it_go_and_it_restarts_fresh() {
    let s =
        scenario("[[faults]]\nkind = \"crash\"\nnodes = [1]\nat_s = 20\nrestart_after_s = 10\n");
    let (lines, failure) = run(&s);
    assert_eq!(failure, None);
    let crash = lines
        .iter()
        .position(|l| l.ends_with("n1 crash running"))
        .unwrap();
    assert_eq!(time(&lines[crash]), 20.0);
    let restart = lines
        .iter()
        .position(|l| l.ends_with("n1 restart fresh"))
        .unwrap();
    assert_eq!(time(&lines[restart]), 30.0);
    assert!(
        lines[restart + 1].contains("n1 start"),
        "{}",
        lines[restart + 1]
    );
    let silent = &lines[crash + 1..restart];
    assert!(
        silent
            .iter()
            .all(|l| l.split_whitespace().nth(1) != Some("n1")),
        "a crashed node reports nothing"
    );
    let gone: Vec<&String> = silent.iter().filter(|l| l.contains("conn- n1")).collect();
    assert!(!gone.is_empty(), "peers of n1 see its connections close");
    assert!(gone.iter().all(|l| time(l) < 21.0), "{gone:?}");
    assert!(lines[restart..].iter().any(|l| l.contains("n1 conn+")));
}

#[test]
fn a_full_loss_burst_silences_every_pong() {
    let s = scenario("[[faults]]\nkind = \"loss\"\nprobability = 1.0\nat_s = 30\nuntil_s = 40\n");
    let (lines, failure) = run(&s);
    assert_eq!(failure, None);
    let rtt_in = |from: f64, to: f64| {
        lines
            .iter()
            .filter(|l| l.contains(" rtt ") && (from..to).contains(&time(l)))
            .count()
    };
    assert_eq!(rtt_in(31.0, 40.0), 0);
    assert!(rtt_in(20.0, 30.0) > 0 && rtt_in(41.0, 60.0) > 0);
    assert!(lines.iter().any(|l| l.contains("ping-timeout")));
}

#[test]
fn a_skewed_clock_shifts_what_the_node_sees_but_not_what_it_measures() {
    let s =
        scenario("[[faults]]\nkind = \"clock_skew\"\nnodes = [2]\noffset_ms = 5000\nat_s = 0\n");
    let w = World::build(&s, 1, sim_addr);
    let mut fleet = Fleet::new(&w, Trace::new(&w), Plan::of(&s));
    fleet.run_until(World::epoch() + Duration::from_secs(30));
    assert_eq!(fleet.clock(2), fleet.now + Duration::from_secs(5));
    assert_eq!(fleet.clock(3), fleet.now);
    let node = fleet.nodes[2].as_ref().unwrap();
    let due = fleet.sim_time_of(2, node.poll_timeout().unwrap());
    assert_eq!(
        fleet.timers[2].due, due,
        "deadlines are taken back by the skew"
    );
    assert!(due > fleet.now);
    let (lines, failure) = run(&s);
    assert_eq!(failure, None);
    assert!(lines.iter().any(|l| l.contains("n2 rtt")));
}

/// A 12-peer network of `extra`, 120 s, run at seed 2 without checks: (trace, result).
fn run_plain(extra: &str) -> (String, crate::engine::RunResult) {
    let text = format!(
        "name = \"l\"\nduration_s = 120\n[peers]\ncount = 12\nstart_spread_s = 5\n[regions]\neu-west = 1\n[node]\nping_interval_s = 2\nping_timeout_s = 1\n{extra}"
    );
    let s = Scenario::parse(&text, "l.toml").unwrap_or_else(|e| panic!("{e}"));
    let w = World::build(&s, 2, sim_addr);
    let plan = Plan {
        workload: s.workload.clone(),
        ..Plan::none()
    };
    let (r, _) = run_with(&w, Trace::new(&w), w.duration(), plan);
    (String::from_utf8(r.trace.text().to_vec()).unwrap(), r)
}

fn end_counts(trace: &str) -> (u64, u64, u64) {
    let end = trace.lines().last().unwrap();
    let field = |k: &str| -> u64 {
        end.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("sent="), field("delivered="), field("dropped="))
}

#[test]
fn baseline_loss_drops_messages_and_none_is_the_old_run() {
    let (plain, _) = run_plain("");
    let (zero, _) = run_plain("[latency]\nloss = 0\n");
    assert_eq!(plain, zero, "loss = 0 is the run without the key");
    let (_, _, dropped_plain) = end_counts(&plain);
    let (lossy, _) = run_plain("[latency]\nloss = 0.1\n");
    let (sent, delivered, dropped) = end_counts(&lossy);
    // About a tenth of the messages are lost (counted as dropped).
    let lost = dropped - dropped_plain.min(dropped);
    assert!(
        lost as f64 > 0.05 * sent as f64 && (lost as f64) < 0.15 * sent as f64,
        "sent {sent} delivered {delivered} dropped {dropped}"
    );
    assert!(lossy.contains("ping-timeout"), "lost pings time out");
    assert_eq!(lossy, run_plain("[latency]\nloss = 0.1\n").0, "seeded");
}

/// Mean of the `rtt` lines measured by nodes of `class` (every node if `None`), ms.
fn rtt_mean(trace: &str, class_nodes: &[String]) -> f64 {
    let v: Vec<f64> = trace
        .lines()
        .filter(|l| l.contains(" rtt "))
        .filter(|l| {
            let node = l.split_whitespace().nth(1).unwrap();
            class_nodes.is_empty() || class_nodes.iter().any(|n| n == node)
        })
        .map(|l| {
            l.split_whitespace()
                .nth(4)
                .unwrap()
                .trim_end_matches("ms")
                .parse()
                .unwrap()
        })
        .collect();
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn a_slow_uplink_delays_what_its_peers_send() {
    let class = "[[classes]]\nname = \"slow\"\nweight = 1\n";
    let (fast, _) = run_plain(class);
    let (slow, _) = run_plain(&format!("{class}bandwidth_kbps = 2\n"));
    let slow_nodes: Vec<String> = slow
        .lines()
        .filter(|l| l.contains(" start ") && l.contains("class=slow"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(slow_nodes.len(), 11, "every peer but the bootstrap node");
    // A ping frame of a dozen bytes takes tens of ms at 2 kbit/s, and pings queue behind
    // hellos and peer-table answers of kilobytes: measured RTTs grow.
    let (f, s) = (rtt_mean(&fast, &slow_nodes), rtt_mean(&slow, &slow_nodes));
    assert!(s > f + 40.0, "slow {s} ms vs fast {f} ms");
    // Classes without limits or churn change nothing but the start lines.
    let (plain, _) = run_plain("");
    assert_eq!(plain, fast.replace(" class=slow", ""));
}

#[test]
fn churning_classes_crash_and_restart_their_peers() {
    let (trace, _) = run_plain(
        "[[classes]]\nname = \"phone\"\nweight = 1\nuptime_s = [10, 20]\ndowntime_s = [5, 10]\n",
    );
    let crashes = trace.lines().filter(|l| l.contains(" crash ")).count();
    let restarts = trace
        .lines()
        .filter(|l| l.contains(" restart fresh"))
        .count();
    // 11 peers, sessions of at most 20 s and downs of at most 10 s over 115 s: at least
    // three sessions each.
    assert!(crashes >= 33, "{crashes} crashes");
    assert!(
        restarts >= crashes - 11 && restarts <= crashes,
        "{restarts} restarts"
    );
    assert!(
        !trace.lines().any(|l| l.contains(" n0 crash")),
        "bootstrap nodes stay up"
    );
    // Every restart is followed by the node's start line, naming its class.
    assert!(trace.lines().filter(|l| l.contains("class=phone")).count() >= 11 + restarts);
}

#[test]
fn a_flood_sends_to_every_connected_peer_at_its_rate() {
    let (plain, _) = run_plain("");
    let flood =
        "[[workload]]\nkind = \"flood\"\nnodes = [3]\ncount = 0\nat_s = 60\nrate_per_s = 4\n"
            .replace("count = 0\n", "");
    let (flooded, _) = run_plain(&flood);
    let ticks: Vec<&str> = flooded
        .lines()
        .filter(|l| l.contains(" -- flood #0 "))
        .collect();
    // From 60 s to 120 s at 4 a second.
    assert!((239..=240).contains(&ticks.len()), "{} ticks", ticks.len());
    assert!((time(ticks[0]) - 60.0).abs() < 1e-6);
    let sent: u64 = ticks
        .iter()
        .map(|l| l.rsplit("sent=").next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(sent > 240, "n3 has peers to flood: {sent}");
    let (s0, _, _) = end_counts(&plain);
    let (s1, _, _) = end_counts(&flooded);
    // Each request is answered: at least twice the flood's messages more.
    assert!(s1 >= s0 + 2 * sent - 20, "{s0} -> {s1} with {sent} flooded");
    // Before the flood the runs are the same.
    let before = |t: &str| -> Vec<String> {
        t.lines()
            .take_while(|l| time(l) < 60.0)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(before(&plain), before(&flooded));
    // Pings work too, and seeded nodes are drawn the same way twice.
    let pings = "[[workload]]\nkind = \"flood\"\ncount = 2\nat_s = 100\nrate_per_s = 1\nmessage = \"ping\"\n";
    let (a, _) = run_plain(pings);
    assert_eq!(a, run_plain(pings).0);
    assert_eq!(
        a.lines().filter(|l| l.contains(" -- flood #0 ")).count(),
        20
    );
}
