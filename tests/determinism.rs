//! Determinism of the simulator, in process, on `scenarios/small.toml`.
//!
//! - One scenario and one seed give byte-identical traces (compared by SHA-256), the same
//!   summary and the same final neighbour sets, on the fleet engine and on the turmoil
//!   engine, each against itself.
//! - Another seed gives another trace on each engine.
//! - The two engines agree on the headline numbers within the tolerances stated on
//!   [`engines_agree_on_small`].
//!
//! - Faults are drawn from the seed too: `scenarios/crash-restart.toml` (seeded crashes, a
//!   loss burst) gives the same trace twice at one seed and another at another seed.
//!
//! The run at the scenario's own seed is made once per engine and shared by the tests of
//! this binary; every comparison is against a fresh run.

use std::sync::OnceLock;

use flotilla_sim::{EngineKind, Scenario};
use flotilla_tests::{Run, load, run};

const SCENARIO: &str = "small.toml";

fn scenario() -> &'static Scenario {
    static SCENARIO_LOADED: OnceLock<Scenario> = OnceLock::new();
    SCENARIO_LOADED.get_or_init(|| load(SCENARIO).expect("the scenario loads"))
}

/// The run of the scenario at its own seed on `engine`, made once.
fn reference(engine: EngineKind) -> &'static Run {
    static FLEET: OnceLock<Run> = OnceLock::new();
    static TURMOIL: OnceLock<Run> = OnceLock::new();
    let cell = match engine {
        EngineKind::Fleet => &FLEET,
        EngineKind::Turmoil => &TURMOIL,
    };
    cell.get_or_init(|| {
        let scenario = scenario();
        let run = run(scenario, scenario.seed, engine).expect("the reference run finishes");
        assert_substantial(&run);
        run
    })
}

/// A trace worth comparing: every peer started, connections came up, the run ended.
fn assert_substantial(run: &Run) {
    let text = String::from_utf8_lossy(&run.trace);
    let peers = scenario().peers.count;
    assert_eq!(
        text.lines().filter(|l| l.contains(" start ")).count(),
        peers,
        "{} engine, seed {}: not every peer started",
        run.engine,
        run.seed
    );
    assert!(
        text.contains(" conn+ "),
        "{} engine: no connection came up",
        run.engine
    );
    assert!(
        text.lines().last().is_some_and(|l| l.contains(" -- end ")),
        "{} engine: the trace does not end with the end line",
        run.engine
    );
}

/// The first line where two traces differ, for failure messages.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (mut la, mut lb) = (a.lines(), b.lines());
    for number in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => break,
            (x, y) if x == y => {}
            (x, y) => {
                return format!(
                    "line {number}:\n  first:  {}\n  second: {}",
                    x.unwrap_or("<end>"),
                    y.unwrap_or("<end>")
                );
            }
        }
    }
    "no line differs".to_string()
}

fn same_seed_same_trace(engine: EngineKind) {
    let first = reference(engine);
    let second = run(scenario(), first.seed, engine).expect("the second run finishes");
    assert_eq!(
        first.trace_sha256,
        second.trace_sha256,
        "{engine} engine, seed {}: two runs gave different traces; {}",
        first.seed,
        first_difference(&first.trace, &second.trace)
    );
    assert_eq!(first.summary.to_json(), second.summary.to_json());
    assert_eq!(first.neighbours, second.neighbours);
}

fn other_seed_other_trace(engine: EngineKind) {
    let first = reference(engine);
    let seed = first.seed + 1;
    let other = run(scenario(), seed, engine).expect("the run at another seed finishes");
    assert_substantial(&other);
    assert_eq!(other.summary.seed, seed);
    assert_ne!(
        first.trace_sha256, other.trace_sha256,
        "{engine} engine: seeds {} and {seed} gave the same trace",
        first.seed
    );
}

#[test]
fn fleet_same_seed_same_trace() {
    same_seed_same_trace(EngineKind::Fleet);
}

#[test]
fn turmoil_same_seed_same_trace() {
    same_seed_same_trace(EngineKind::Turmoil);
}

#[test]
fn fleet_other_seed_other_trace() {
    other_seed_other_trace(EngineKind::Fleet);
}

#[test]
fn turmoil_other_seed_other_trace() {
    other_seed_other_trace(EngineKind::Turmoil);
}

/// `|other - base| / base`.
fn relative_difference(base: f64, other: f64) -> f64 {
    assert!(base > 0.0, "cannot compare against a base of {base}");
    (other - base).abs() / base
}

/// The fleet and turmoil engines on `small.toml` at its own seed agree on the headline
/// numbers of their summaries. Tolerances, relative to the fleet engine's value:
///
/// - `peers` and `rtt_random_mean_ms`: equal (the same world and latency model);
/// - `connected_fraction`: equal;
/// - `degree_mean`: within 25%;
/// - `rtt_neighbour_mean_ms` (measured by the nodes) and `rtt_neighbour_model_mean_ms`
///   (the model over the chosen neighbours): within 15% each;
/// - `messages_sent`: within 25%.
///
/// The engines differ by design (turmoil rounds every one-way delay up to its 10 ms tick
/// and brings a dialled connection up after one one-way delay instead of a round trip), so
/// traces differ; these bounds say that the network they build is the same in kind.
#[test]
fn engines_agree_on_small() {
    const DEGREE_MEAN_TOLERANCE: f64 = 0.25;
    const RTT_TOLERANCE: f64 = 0.15;
    const MESSAGES_TOLERANCE: f64 = 0.25;

    let fleet = &reference(EngineKind::Fleet).summary;
    let turmoil = &reference(EngineKind::Turmoil).summary;
    let both = format!("\nfleet: {fleet:#?}\nturmoil: {turmoil:#?}");
    assert_eq!(fleet.peers, turmoil.peers, "{both}");
    assert_eq!(
        fleet.rtt_random_mean_ms, turmoil.rtt_random_mean_ms,
        "{both}"
    );
    assert_eq!(
        fleet.connected_fraction, turmoil.connected_fraction,
        "{both}"
    );
    let checks = [
        (
            "degree_mean",
            fleet.degree_mean,
            turmoil.degree_mean,
            DEGREE_MEAN_TOLERANCE,
        ),
        (
            "rtt_neighbour_mean_ms",
            fleet.rtt_neighbour_mean_ms,
            turmoil.rtt_neighbour_mean_ms,
            RTT_TOLERANCE,
        ),
        (
            "rtt_neighbour_model_mean_ms",
            fleet.rtt_neighbour_model_mean_ms,
            turmoil.rtt_neighbour_model_mean_ms,
            RTT_TOLERANCE,
        ),
        (
            "messages_sent",
            fleet.messages_sent as f64,
            turmoil.messages_sent as f64,
            MESSAGES_TOLERANCE,
        ),
    ];
    for (name, f, t, tolerance) in checks {
        let difference = relative_difference(f, t);
        assert!(
            difference <= tolerance,
            "{name}: fleet {f}, turmoil {t}: {:.1}% apart, more than {:.0}%{both}",
            difference * 100.0,
            tolerance * 100.0
        );
    }
}

/// The trace of a checked fleet run of `scenarios/crash-restart.toml` at `seed`.
fn faulty_trace(seed: u64) -> Vec<u8> {
    let scenario = load("crash-restart.toml").expect("the scenario loads");
    let outcome = flotilla_sim::runner::run_checked(
        &scenario,
        seed,
        EngineKind::Fleet,
        flotilla_sim::Trace::new,
    )
    .expect("the run finishes");
    outcome.result.trace.into_bytes()
}

#[test]
fn faults_are_drawn_from_the_seed() {
    let (a, b, c) = (faulty_trace(3), faulty_trace(3), faulty_trace(4));
    assert!(a == b, "seed 3 twice: {}", first_difference(&a, &b));
    assert!(a != c, "seeds 3 and 4 gave the same trace");
    let crashes = |t: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(t)
            .lines()
            .filter(|l| l.contains(" crash "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(crashes(&a).len(), 6, "three listed and three drawn crashes");
    assert_ne!(
        crashes(&a),
        crashes(&c),
        "the drawn crashes depend on the seed"
    );
}

/// Both engines run the shipped fault scenarios with every invariant and the liveness
/// bound checked, and both pass: the same faults (crashes drawn from the seed hit the same
/// peers), the same invariants, and a network that converges after the faults heal. At
/// the end every running peer is connected on both, and the mean degree agrees within the
/// tolerance of [`engines_agree_on_small`].
#[test]
fn engines_hold_the_same_invariants_under_faults() {
    for name in ["partition-heal.toml", "crash-restart.toml"] {
        let scenario = load(name).expect("the scenario loads");
        let outcome = |engine| {
            flotilla_sim::runner::run_checked(
                &scenario,
                scenario.seed,
                engine,
                flotilla_sim::Trace::new,
            )
            .expect("the run finishes")
        };
        let (fleet, turmoil) = (outcome(EngineKind::Fleet), outcome(EngineKind::Turmoil));
        for (engine, o) in [("fleet", &fleet), ("turmoil", &turmoil)] {
            assert_eq!(o.failure, None, "{name} on {engine}");
            let trace = String::from_utf8_lossy(o.result.trace.text()).into_owned();
            assert!(
                trace.contains(" -- converged after="),
                "{name} on {engine} never converged"
            );
        }
        let (f, t) = (&fleet.summary, &turmoil.summary);
        assert_eq!(f.connected_fraction, t.connected_fraction, "{name}");
        let difference = relative_difference(f.degree_mean, t.degree_mean);
        assert!(
            difference <= 0.25,
            "{name}: degree mean fleet {} turmoil {}",
            f.degree_mean,
            t.degree_mean
        );
    }
}
