//! The failure paths of `flotilla-sim`, through the real binary: every kind of failure
//! exits with its own code and prints the seed, the commit and a replay command, and the
//! replay command reproduces the failure.
//!
//! | exit | failure | triggered here by |
//! |---|---|---|
//! | 127 | the simulator panicked | `[debug] panic_after_s` |
//! | 128 | no convergence within `expect.liveness_s` | a partition that never heals |
//! | 129 | an invariant broke, or an `[expect]` assertion failed | `[debug] fail_invariant_after_s`; an impossible RTT bound |
//!
//! The invariant and liveness failures run on both engines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const BASE: &str = "\
name = \"base\"
seed = 5
duration_s = 60

[peers]
count = 8
";

fn sim(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla-sim"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("flotilla-sim starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory with `base.toml` and `<name>.toml`, which includes it and adds `extra`.
fn scenario(name: &str, extra: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("base.toml"), BASE).expect("base.toml is written");
    let path = dir.path().join(format!("{name}.toml"));
    let body = format!("include = \"base.toml\"\nname = \"{name}\"\n{extra}");
    std::fs::write(&path, body).expect("the scenario is written");
    (dir, path)
}

/// The value of the `label` line of a failure report on stderr.
fn field<'a>(stderr: &'a str, label: &str) -> &'a str {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{label}` line in: {stderr}"))
}

/// Runs `path`, expects `code` and a full failure report; then runs the printed replay
/// command and expects the same code and the same error line. Returns both outputs.
fn fails_and_replays(dir: &Path, path: &Path, code: i32) -> (Output, Output) {
    fails_and_replays_on(dir, path, code, "fleet")
}

/// [`fails_and_replays`] on `engine`; the replay command names the engine.
fn fails_and_replays_on(dir: &Path, path: &Path, code: i32, engine: &str) -> (Output, Output) {
    let path = path.to_str().expect("a UTF-8 path");
    let out = sim(&["run", path, "--out", "o", "--engine", engine], dir);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(field(&err, "seed"), "5");
    assert!(!field(&err, "commit").is_empty());
    let replay = field(&err, "replay");
    assert!(
        replay.starts_with("flotilla-sim replay ")
            && replay.contains("--seed 5")
            && replay.contains(&format!("--engine {engine}")),
        "{replay}"
    );
    let args: Vec<&str> = replay.split_whitespace().skip(1).collect();
    let again = sim(&args, dir);
    let again_err = text(&again.stderr);
    assert_eq!(again.status.code(), Some(code), "stderr: {again_err}");
    assert_eq!(field(&again_err, "error:"), field(&err, "error:"));
    (out, again)
}

#[test]
fn a_broken_invariant_exits_129_and_its_replay_reproduces_it() {
    broken_invariant_on("fleet");
}

#[test]
fn a_broken_invariant_exits_129_on_turmoil_too() {
    broken_invariant_on("turmoil");
}

fn broken_invariant_on(engine: &str) {
    let (dir, path) = scenario("broken", "[debug]\nfail_invariant_after_s = 30\n");
    let (out, replay) = fails_and_replays_on(dir.path(), &path, 129, engine);
    let err = text(&out.stderr);
    assert!(
        err.contains("invariant `debug-fails` violated at 30."),
        "{err}"
    );
    let trace = text(&replay.stdout);
    let last = trace
        .lines()
        .rev()
        .find(|l| l.contains(" failed "))
        .expect("the trace has a `failed` line");
    assert!(last.contains("debug-fails"), "{last}");
    let written =
        std::fs::read_to_string(dir.path().join("o/trace.txt")).expect("the trace is written");
    assert_eq!(written, trace, "the replay prints the trace of the run");
}

#[test]
fn a_failed_expectation_exits_129() {
    let (dir, path) = scenario("strict", "[expect]\nrtt_neighbour_mean_ms_max = 1\n");
    let (out, _) = fails_and_replays(dir.path(), &path, 129);
    let err = text(&out.stderr);
    assert!(
        err.contains("expectations failed: rtt_neighbour_mean_ms"),
        "{err}"
    );
}

#[test]
fn a_panic_exits_127() {
    let (dir, path) = scenario("panics", "[debug]\npanic_after_s = 10\n");
    let (out, _) = fails_and_replays(dir.path(), &path, 127);
    let err = text(&out.stderr);
    assert!(
        err.contains("the simulator crashed: deliberate crash"),
        "{err}"
    );
}

#[test]
fn a_partition_that_never_heals_fails_liveness_with_128() {
    never_heals_on("fleet");
}

#[test]
fn a_partition_that_never_heals_fails_liveness_with_128_on_turmoil_too() {
    never_heals_on("turmoil");
}

fn never_heals_on(engine: &str) {
    let extra = "\
[[faults]]
kind = \"partition\"
nodes_a = [0, 1, 2]
at_s = 20

[expect]
liveness_s = 20
";
    let (dir, path) = scenario("split", extra);
    let (out, replay) = fails_and_replays_on(dir.path(), &path, 128, engine);
    let err = text(&out.stderr);
    assert!(err.contains("did not converge within 20 s"), "{err}");
    let faults = text(&replay.stdout);
    assert!(faults.contains("-- fault #0 partition on"), "{faults}");
}

#[test]
fn a_partition_that_heals_converges_and_passes() {
    let extra = "\
[[faults]]
kind = \"partition\"
regions_a = [\"eu-west\"]
at_s = 10
duration_s = 10

[[faults]]
kind = \"crash\"
nodes = [3]
at_s = 5
restart_after_s = 5

[expect]
liveness_s = 30
";
    let (dir, path) = scenario("heals", extra);
    let out = sim(&["run", path.to_str().unwrap(), "--out", "o"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let trace = std::fs::read_to_string(dir.path().join("o/trace.txt")).unwrap();
    assert!(trace.contains("-- converged after="), "{trace}");
    assert!(trace.contains("n3 crash running") && trace.contains("n3 restart fresh"));
}

#[test]
fn a_panic_exits_127_on_turmoil_too() {
    let (dir, path) = scenario("panics", "[debug]\npanic_after_s = 10\n");
    let (out, _) = fails_and_replays_on(dir.path(), &path, 127, "turmoil");
    let err = text(&out.stderr);
    assert!(
        err.contains("the simulator crashed: deliberate crash"),
        "{err}"
    );
}

#[test]
fn faults_run_on_the_turmoil_engine() {
    let extra = "[[faults]]\nkind = \"loss\"\nprobability = 0.1\nat_s = 1\nuntil_s = 2\n";
    let (dir, path) = scenario("lossy", extra);
    let out = sim(
        &[
            "run",
            path.to_str().unwrap(),
            "--engine",
            "turmoil",
            "--out",
            "o",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let trace = std::fs::read_to_string(dir.path().join("o/trace.txt")).unwrap();
    assert!(
        trace.contains("    1.000000 -- fault #0 loss on p=0.1"),
        "{trace}"
    );
    assert!(
        trace.contains("    2.000000 -- fault #0 loss off p=0.1"),
        "{trace}"
    );
}

#[test]
fn replay_filters_by_peer_kind_and_window() {
    let (dir, path) = scenario("plain", "");
    let p = path.to_str().unwrap();
    let args = [
        "replay",
        p,
        "--seed",
        "5",
        "--peer",
        "n1",
        "--kind",
        "conn+",
        "--from-s",
        "1",
        "--until-s",
        "50",
    ];
    let out = sim(&args, dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    assert!(!lines.is_empty());
    for line in lines.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let t: f64 = f[0].parse().unwrap();
        assert!((1.0..50.0).contains(&t) && f[2] == "conn+", "{line}");
        assert!(f[1] == "n1" || f[3] == "n1", "{line}");
    }
}

#[test]
fn sweep_lists_failing_seeds_with_their_replay_commands() {
    let (dir, path) = scenario("sweep", "[debug]\nfail_invariant_after_s = 30\n");
    let p = path.to_str().unwrap();
    let out = sim(&["sweep", p, "--seeds", "1..4", "--jobs", "2"], dir.path());
    let printed = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}{}", text(&out.stderr));
    assert!(
        printed.contains("3 seeds run (1..4), 3 failed"),
        "{printed}"
    );
    for seed in 1..4 {
        let cmd = format!("flotilla-sim replay {p} --seed {seed} --engine fleet");
        assert!(printed.contains(&cmd), "{cmd} missing from {printed}");
    }
    let (dir, path) = scenario("fine", "");
    let out = sim(
        &["sweep", path.to_str().unwrap(), "--seeds", "1..=3"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("3 seeds run (1..4), 0 failed"));
}

#[test]
fn loss_uplinks_and_floods_on_the_turmoil_engine_are_usage_errors() {
    let class = "[[classes]]\nname = \"c\"\nweight = 1\n";
    for (extra, what) in [
        (
            "[latency]\nloss = 0.01\n".to_string(),
            "lost messages (`latency.loss`)",
        ),
        (
            format!("{class}bandwidth_kbps = 100\n"),
            "uplink limits (`bandwidth_kbps`)",
        ),
        (
            "[[workload]]\nkind = \"flood\"\nat_s = 1\nrate_per_s = 1\ncount = 1\n".to_string(),
            "[[workload]] floods",
        ),
    ] {
        let (dir, path) = scenario("unmodelled", &extra);
        let out = sim(
            &["run", path.to_str().unwrap(), "--engine", "turmoil"],
            dir.path(),
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let expected = format!("{what} are not yet supported on the turmoil engine");
        assert!(err.contains(&expected), "{err}");
    }
}
