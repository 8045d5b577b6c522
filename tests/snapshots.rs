//! Snapshots of the scenario files in `scenarios/`, stored in the workspace's `snapshots/`.
//!
//! | scenario | engine | snapshots |
//! |---|---|---|
//! | `small.toml` | fleet | `small_fleet_summary`, `small_fleet_trace` (the whole trace) |
//! | `small.toml` | turmoil | `small_turmoil_summary`, `small_turmoil_trace_head` |
//! | `quickstart.toml` | fleet | `quickstart_fleet_summary`, `quickstart_fleet_trace_head` |
//! | `partition-heal.toml` | fleet | `partition_heal_fleet_summary`, `partition_heal_fleet_trace` |
//! | `crash-restart.toml` | fleet | `crash_restart_fleet_summary`, `crash_restart_fleet_trace` |
//! | `churn-classes.toml` | fleet | `churn_classes_fleet_summary`, `churn_classes_fleet_trace_head` (with every engine line) |
//! | `deployments.toml` | fleet | `deployments_fleet_summary` (with the `jobs` section), `deployments_fleet_trace_head` (with every engine line and every job line of the first service provider) |
//! | `deployments-small.toml` | both | `deployments_small_fleet_summary`, `deployments_small_turmoil_summary`, `deployments_small_turmoil_trace_head` (with every engine line and every deployment line) |
//! | `scope-exhaustion.toml` | fleet | `scope_exhaustion_fleet_summary`, `scope_exhaustion_fleet_trace_head` (with every `refused` line and every dial refused by a resource limit) |
//!
//! The scenarios with faults run through the simulator's checked runner (faults, invariants,
//! liveness, `[expect]`), as `flotilla-sim run` does, and must pass.
//!
//! A `_summary` snapshot is `summary.json`; a `_trace_head` snapshot is the SHA-256 and line
//! count of the trace and its first lines (100 for small, 200 for quickstart).
//!
//! Every run is at the scenario's own seed. A change in the core or the engines that moves
//! any event shows here as a diff; if it is intended, rewrite the files with `just snap`
//! (`INSTA_UPDATE=always cargo test -p flotilla-tests`) and review `git diff snapshots/`.
//! [`every_scenario_file_is_snapshotted`] fails when a file is added to `scenarios/`
//! without a row here.

use flotilla_sim::world::JobRole;
use flotilla_sim::{EngineKind, Trace, runner};
use flotilla_tests::{Run, head, load, run, scenarios_dir, sha256_hex};

/// Scenario files snapshotted by this binary (sorted), one test each below.
const COVERED: [&str; 12] = [
    "churn-classes.toml",
    "churn.toml",
    "crash-restart.toml",
    "deployments-small.toml",
    "deployments.toml",
    "latency-filter-off.toml",
    "latency-filter.toml",
    "max-peers.toml",
    "partition-heal.toml",
    "quickstart.toml",
    "scope-exhaustion.toml",
    "small.toml",
];

/// Runs `scenarios/<file>` at its own seed on `engine`.
fn run_file(file: &str, engine: EngineKind) -> Run {
    let scenario = load(file).expect("the scenario loads");
    run(&scenario, scenario.seed, engine).expect("the run finishes")
}

/// Runs `scenarios/<file>` at its own seed on the fleet engine with every check; the run
/// must pass.
fn run_checked_file(file: &str) -> Run {
    let scenario = load(file).expect("the scenario loads");
    let seed = scenario.seed;
    let outcome = runner::run_checked(&scenario, seed, EngineKind::Fleet, Trace::new)
        .expect("the run finishes");
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    let neighbours = outcome
        .result
        .nodes
        .iter()
        .map(|n| {
            n.connections()
                .filter(|c| !c.closing)
                .map(|c| c.peer)
                .collect()
        })
        .collect();
    let trace = outcome.result.trace.into_bytes();
    Run {
        engine: EngineKind::Fleet,
        seed,
        trace_sha256: sha256_hex(&trace),
        trace,
        summary: outcome.summary,
        neighbours,
    }
}

/// Snapshots the summary and the whole trace of a fleet run of `file` with faults.
fn snapshot_checked(file: &str, name: &str) {
    let run = run_checked_file(file);
    let summary = format!("{name}_fleet_summary");
    snapshot(file, &run, &summary, "summary.json", &run.summary.to_json());
    let trace = format!("{name}_fleet_trace");
    let text = String::from_utf8_lossy(&run.trace);
    snapshot(file, &run, &trace, "trace.txt", &text);
}

#[test]
fn partition_heal_fleet() {
    snapshot_checked("partition-heal.toml", "partition_heal");
}

#[test]
fn crash_restart_fleet() {
    snapshot_checked("crash-restart.toml", "crash_restart");
}

/// Three hundred peers in classes, two of them churning, and a partition drawn from the
/// seed: the summary, the head of the trace and every engine line (the drawn partition's
/// `fault` lines, `converged`, `end`).
#[test]
fn churn_classes_fleet() {
    let file = "churn-classes.toml";
    let run = run_checked_file(file);
    let summary = run.summary.to_json();
    snapshot(
        file,
        &run,
        "churn_classes_fleet_summary",
        "summary.json",
        &summary,
    );
    let text = String::from_utf8_lossy(&run.trace);
    let engine: Vec<&str> = text.lines().filter(|l| l.contains(" -- ")).collect();
    let value = format!(
        "{}
engine lines
{}
",
        trace_head(&run, 100),
        engine.join("\n")
    );
    snapshot(
        file,
        &run,
        "churn_classes_fleet_trace_head",
        "trace.txt digest, head and engine lines",
        &value,
    );
}

/// Three hundred peers, a tenth of them attackers flooding a class of small targets with
/// connections and streams: the summary (with the resource managers' refusals and the
/// honest pings' success), the head of the trace, every `refused` line and every dial
/// a resource limit refused. The run must pass its invariants (`usage-within-limits`
/// among them) and `honest_ping_success_min`.
#[test]
fn scope_exhaustion_fleet() {
    let file = "scope-exhaustion.toml";
    let run = run_checked_file(file);
    let rcmgr = run
        .summary
        .rcmgr
        .as_ref()
        .expect("the summary reports the resource managers");
    assert!(rcmgr.honest_ping_success >= 0.99, "{rcmgr:?}");
    assert!(
        rcmgr.flood.conns_refused > 0 && rcmgr.flood.streams_refused > 0,
        "{rcmgr:?}"
    );
    let summary = run.summary.to_json();
    snapshot(
        file,
        &run,
        "scope_exhaustion_fleet_summary",
        "summary.json",
        &summary,
    );
    let text = String::from_utf8_lossy(&run.trace);
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" refused ") || l.contains(" limit:"))
        .collect();
    let value = format!(
        "{}\nrefused lines and dials refused by a limit\n{}\n",
        trace_head(&run, 100),
        refused.join("\n")
    );
    snapshot(
        file,
        &run,
        "scope_exhaustion_fleet_trace_head",
        "trace.txt digest, head, refused lines",
        &value,
    );
}

/// About 1080 compute providers (a tenth churning) and 50 service providers deploying a
/// job each every 30 s for ten minutes, through a partition: every invariant holds
/// (`capacity`, `deployment-bound` among them), every deployment ended, most completed.
#[test]
fn deployments_fleet() {
    let file = "deployments.toml";
    let scenario = load(file).expect("the scenario loads");
    let outcome = runner::run_checked(&scenario, scenario.seed, EngineKind::Fleet, Trace::new)
        .expect("the run finishes");
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    let roles = |want: fn(&JobRole) -> bool| {
        outcome
            .world
            .peers()
            .iter()
            .filter(|p| want(&p.job_role))
            .count()
    };
    assert!(roles(|r| matches!(r, JobRole::Provider { .. })) >= 1000);
    assert_eq!(roles(|r| matches!(r, JobRole::ServiceProvider { .. })), 50);
    let first_sp = outcome
        .world
        .peers()
        .iter()
        .find(|p| matches!(p.job_role, JobRole::ServiceProvider { .. }))
        .map(|p| p.index)
        .expect("a service provider");
    let j = outcome.summary.jobs.clone().expect("a jobs summary");
    assert!(j.deployments_asked >= 900, "{j:?}");
    assert!(j.completed_share >= 0.8, "{j:?}");
    assert_eq!(
        j.by_state.keys().map(String::as_str).collect::<Vec<_>>(),
        ["completed", "failed"]
    );
    let trace = outcome.result.trace.into_bytes();
    let run = Run {
        engine: EngineKind::Fleet,
        seed: scenario.seed,
        trace_sha256: sha256_hex(&trace),
        trace,
        summary: outcome.summary,
        neighbours: Vec::new(),
    };
    snapshot(
        file,
        &run,
        "deployments_fleet_summary",
        "summary.json",
        &run.summary.to_json(),
    );
    let text = String::from_utf8_lossy(&run.trace);
    let sp = format!(" n{first_sp} ");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" -- ") || (l.contains(&sp) && l.contains(" deployment ")))
        .collect();
    let value = format!(
        "{}\nengine lines and the deployments of n{first_sp}\n{}\n",
        trace_head(&run, 60),
        lines.join("\n")
    );
    snapshot(
        file,
        &run,
        "deployments_fleet_trace_head",
        "trace.txt digest, head, engine lines, the first service provider's deployments",
        &value,
    );
}

/// Thirty peers, 24 compute providers and 3 service providers deploying every 15 s for a
/// minute, on both engines with every check: on each, every invariant holds (`capacity`,
/// `deployment-bound` among them), every one of the 12 deployments ended and most
/// completed. The numbers differ between the engines (turmoil's tick, its TCP); both
/// summaries and the turmoil run's deployment lines are snapshotted.
#[test]
fn deployments_small_both_engines() {
    let file = "deployments-small.toml";
    let scenario = load(file).expect("the scenario loads");
    for engine in [EngineKind::Fleet, EngineKind::Turmoil] {
        let outcome = runner::run_checked(&scenario, scenario.seed, engine, Trace::new)
            .expect("the run finishes");
        assert!(outcome.failure.is_none(), "{engine}: {:?}", outcome.failure);
        let j = outcome.summary.jobs.clone().expect("a jobs summary");
        assert_eq!(
            (j.deployments_asked, j.deploy_errors),
            (12, 0),
            "{engine}: {j:?}"
        );
        let completed = j.by_state.get("completed").copied().unwrap_or(0);
        let failed = j.by_state.get("failed").copied().unwrap_or(0);
        assert_eq!(completed + failed, j.deployments_asked, "{engine}: {j:?}");
        assert!(completed >= 9, "{engine}: {j:?}");
        assert!(
            j.running_reached >= completed && j.allocations_accepted >= completed,
            "{engine}: {j:?}"
        );
        let trace = outcome.result.trace.into_bytes();
        let run = Run {
            engine,
            seed: scenario.seed,
            trace_sha256: sha256_hex(&trace),
            trace,
            summary: outcome.summary,
            neighbours: Vec::new(),
        };
        let summary = format!("deployments_small_{engine}_summary");
        snapshot(file, &run, &summary, "summary.json", &run.summary.to_json());
        if engine == EngineKind::Turmoil {
            let text = String::from_utf8_lossy(&run.trace);
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(" -- ") || l.contains(" deployment "))
                .collect();
            let value = format!(
                "{}\nengine lines and deployment lines\n{}\n",
                trace_head(&run, 60),
                lines.join("\n")
            );
            snapshot(
                file,
                &run,
                "deployments_small_turmoil_trace_head",
                "trace.txt digest, head, engine lines, deployment lines",
                &value,
            );
        }
    }
}

/// The summary, the head of the trace and its engine and trim lines of a checked fleet run
/// of `file`.
fn snapshot_company(file: &str, name: &str) -> Run {
    let run = run_checked_file(file);
    snapshot(
        file,
        &run,
        &format!("{name}_fleet_summary"),
        "summary.json",
        &run.summary.to_json(),
    );
    let text = String::from_utf8_lossy(&run.trace);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" -- ") || l.contains(" trim "))
        .collect();
    let value = format!(
        "{}
engine and trim lines
{}
",
        trace_head(&run, 60),
        lines.join("\n")
    );
    snapshot(
        file,
        &run,
        &format!("{name}_fleet_trace_head"),
        "trace.txt digest, head, engine and trim lines",
        &value,
    );
    run
}

/// Two thousand peers keeping only peers within 50 ms, against the same run without the
/// filter: every node's peers pass its filter (by the latency model), every node reaches
/// its low watermark, and the mean RTT to chosen neighbours is at least three times lower.
#[test]
fn latency_filter_fleet() {
    let on = snapshot_company("latency-filter.toml", "latency_filter");
    let off = snapshot_company("latency-filter-off.toml", "latency_filter_off");
    let (c, s) = (&on.summary.company, &on.summary);
    assert!(c.filter_pass_min >= 0.9, "{c:?}");
    assert_eq!(c.low_watermark_reached, 1.0, "{c:?}");
    assert!(c.converged_at_s.is_some(), "{c:?}");
    let ratio = off.summary.rtt_neighbour_mean_ms / s.rtt_neighbour_mean_ms;
    assert!(
        ratio >= 3.0,
        "neighbour RTT {} ms with the filter, {} ms without: only {ratio:.2} times lower",
        s.rtt_neighbour_mean_ms,
        off.summary.rtt_neighbour_mean_ms
    );
}

/// Three profiles of watermarks, each keeping its own kind: no node above its high
/// watermark at any step (the `high-watermark` invariant), all at their low watermark, at
/// most two trims per node and simulated minute (`trim-storm`).
#[test]
fn max_peers_fleet() {
    let run = snapshot_company("max-peers.toml", "max_peers");
    let c = &run.summary.company;
    assert_eq!(c.low_watermark_reached, 1.0, "{c:?}");
    assert!(c.trims > 0, "the scenario never trimmed: {c:?}");
    assert!(c.trims_per_node_minute_max <= 2, "{c:?}");
}

/// A fifth of the peers restart every ten minutes: one component throughout, converged
/// again within two minutes of the last round.
#[test]
fn churn_fleet() {
    let run = snapshot_company("churn.toml", "churn");
    let c = &run.summary.company;
    assert_eq!(c.components_max, 1, "{c:?}");
    assert_eq!(c.components, 1, "{c:?}");
}

/// Asserts `value`, `what` of `run` of `scenarios/<file>`, against `snapshots/<name>.snap`.
fn snapshot(file: &str, run: &Run, name: &str, what: &str, value: &str) {
    let description = format!(
        "scenarios/{file}, {} engine, seed {}: {what}",
        run.engine, run.seed
    );
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
        description => description.as_str(),
    }, {
        insta::assert_snapshot!(name, value);
    });
}

/// The SHA-256 and line count of a trace, then its first `lines` lines.
fn trace_head(run: &Run, lines: usize) -> String {
    let total = run.trace.iter().filter(|&&b| b == b'\n').count();
    format!(
        "sha256 {}\nlines {total}, first {lines} below\n{}",
        run.trace_sha256,
        head(&run.trace, lines)
    )
}

#[test]
fn every_scenario_file_is_snapshotted() {
    let mut files: Vec<String> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    files.sort();
    assert_eq!(
        files, COVERED,
        "every file in scenarios/ needs a snapshot test in tests/snapshots.rs"
    );
    for file in files {
        load(&file).unwrap();
    }
}

#[test]
fn small_fleet() {
    let run = run_file("small.toml", EngineKind::Fleet);
    snapshot(
        "small.toml",
        &run,
        "small_fleet_summary",
        "summary.json",
        &run.summary.to_json(),
    );
    snapshot(
        "small.toml",
        &run,
        "small_fleet_trace",
        "trace.txt",
        &String::from_utf8_lossy(&run.trace),
    );
}

#[test]
fn small_turmoil() {
    let run = run_file("small.toml", EngineKind::Turmoil);
    snapshot(
        "small.toml",
        &run,
        "small_turmoil_summary",
        "summary.json",
        &run.summary.to_json(),
    );
    snapshot(
        "small.toml",
        &run,
        "small_turmoil_trace_head",
        "trace.txt digest and head",
        &trace_head(&run, 100),
    );
}

/// A thousand peers for ten simulated minutes on the fleet engine: too large to keep the
/// whole trace (about 26 MB), so its digest stands for it.
#[test]
fn quickstart_fleet() {
    let run = run_file("quickstart.toml", EngineKind::Fleet);
    snapshot(
        "quickstart.toml",
        &run,
        "quickstart_fleet_summary",
        "summary.json",
        &run.summary.to_json(),
    );
    snapshot(
        "quickstart.toml",
        &run,
        "quickstart_fleet_trace_head",
        "trace.txt digest and head",
        &trace_head(&run, 200),
    );
}
