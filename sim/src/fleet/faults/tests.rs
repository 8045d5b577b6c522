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
