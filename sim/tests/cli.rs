//! The `flotilla-sim` binary as a user meets it: usage errors, scenario errors that point at
//! the file, line and problem, and the files a good run writes.
//!
//! Exit codes: 0 for a finished run, 2 for a usage error (clap) or a bad scenario file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flotilla_sim::{EngineKind, Scenario, Summary, engine};
use tempfile::TempDir;

/// A scenario small enough to run in a fraction of a second on either engine.
const TINY: &str = "\
# Five peers for half a minute.
name = \"tiny\"
seed = 3
duration_s = 30

[peers]
count = 5
";

fn sim(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla-sim"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("flotilla-sim starts")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh directory holding `tiny.toml`; returns it and the scenario's path.
fn with_tiny() -> (TempDir, PathBuf) {
    let dir = temp_dir();
    let path = dir.path().join("tiny.toml");
    std::fs::write(&path, TINY).expect("tiny.toml is written");
    (dir, path)
}

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Asserts that `out` is a usage error: exit code 2, nothing on stdout, `needles` on stderr.
fn assert_usage_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(stdout(out).is_empty(), "stdout: {}", stdout(out));
    assert!(
        err.starts_with("error: ") || err.contains("Usage:"),
        "{err}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "`{needle}` missing from stderr: {err}"
        );
    }
}

#[test]
fn no_subcommand_prints_usage() {
    let dir = temp_dir();
    let out = sim(&[], dir.path());
    assert_usage_error(&out, &["Usage: flotilla-sim <COMMAND>", "run"]);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let (dir, path) = with_tiny();
    let out = sim(&["run", arg(&path), "--bogus"], dir.path());
    assert_usage_error(
        &out,
        &["unexpected argument '--bogus'", "Usage: flotilla-sim run "],
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn bad_engine_is_a_usage_error() {
    let (dir, path) = with_tiny();
    let out = sim(&["run", arg(&path), "--engine", "tokio"], dir.path());
    assert_usage_error(
        &out,
        &[
            "invalid value 'tokio' for '--engine <ENGINE>'",
            "fleet, turmoil",
            "--help",
        ],
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn non_numeric_seed_is_a_usage_error() {
    let (dir, path) = with_tiny();
    for seed in ["abc", "-1", "1.5"] {
        let flag = format!("--seed={seed}");
        let out = sim(&["run", arg(&path), &flag], dir.path());
        assert_usage_error(&out, &[&format!("'{seed}' for '--seed <SEED>'"), "--help"]);
    }
    assert!(!dir.path().join("out").exists());
}

/// Writes `lines` as a scenario file, runs it and checks the exit code 2, that stderr
/// names the file, `line` (1-based, into `lines`) and `problem`, and that no output
/// directory was made.
fn assert_scenario_error(lines: &[&str], line: usize, problem: &str) {
    let dir = temp_dir();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, lines.join("\n") + "\n").expect("broken.toml is written");
    let out_dir = dir.path().join("o");
    let out = sim(&["run", arg(&path), "--out", arg(&out_dir)], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let located = format!("error: {}:{line}: ", path.display());
    assert!(
        err.starts_with(&located),
        "expected `{located}` at the start of stderr: {err}"
    );
    assert!(err.contains(problem), "`{problem}` missing from: {err}");
    assert!(stdout(&out).is_empty(), "stdout: {}", stdout(&out));
    assert!(!out_dir.exists(), "a bad scenario made an output directory");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let lines = [
        "name = \"t\"",
        "duration_s = 10",
        "",
        "[peers]",
        "count = 5",
        "pears = 3",
    ];
    assert_scenario_error(&lines, 6, "unknown key `pears` in [peers]");
}

#[test]
fn wrong_type_names_file_line_and_type() {
    let lines = [
        "name = \"t\"",
        "# how long",
        "duration_s = \"ten\"",
        "[peers]",
        "count = 5",
    ];
    assert_scenario_error(&lines, 3, "`duration_s` must be a number, found string");
    let lines = [
        "name = \"t\"",
        "duration_s = 10",
        "[peers]",
        "count = 5",
        "[latency]",
        "jitter_ms = 1",
        "last_mile_ms = 5",
    ];
    let problem = "`latency.last_mile_ms` must be an array, found integer";
    assert_scenario_error(&lines, 7, problem);
}

#[test]
fn unknown_region_names_file_line_and_region() {
    let lines = [
        "name = \"t\"",
        "duration_s = 10",
        "[peers]",
        "count = 5",
        "[regions]",
        "eu-west = 1",
        "eu-wst = 2",
        "na-east = 1",
    ];
    assert_scenario_error(&lines, 7, "unknown region `eu-wst` in [regions]");
}

#[test]
fn impossible_value_names_file_line_and_bounds() {
    let lines = [
        "name = \"t\"",
        "duration_s = 10",
        "",
        "",
        "[peers]",
        "bootstrap = 1",
        "count = 0",
    ];
    assert_scenario_error(&lines, 7, "`peers.count` must be at least 2");
    let lines = [
        "name = \"t\"",
        "duration_s = 10",
        "[peers]",
        "count = 5",
        "[node]",
        "low_watermark = 40",
        "high_watermark = 10",
    ];
    let problem = "`node.low_watermark` must not be larger than `node.high_watermark`";
    assert_scenario_error(&lines, 6, problem);
}

#[test]
fn toml_syntax_error_names_file_and_line() {
    let lines = ["name = \"t\"", "duration_s = 10", "", "[peers", "count = 5"];
    assert_scenario_error(&lines, 4, "expected `]`");
}

#[test]
fn missing_file_names_the_path() {
    let dir = temp_dir();
    let path = dir.path().join("nowhere.toml");
    let out = sim(&["run", arg(&path)], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(
        err.starts_with(&format!(
            "error: {}: cannot read the scenario",
            path.display()
        )),
        "{err}"
    );
    assert!(!dir.path().join("out").exists());
}

/// 64-bit FNV-1a, the digest `summary.json` gives for the trace.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs tiny.toml into `out` with `extra` arguments; returns stdout, trace and summary.
fn run_tiny(dir: &Path, scenario: &Path, out: &Path, extra: &[&str]) -> (String, Vec<u8>, Summary) {
    let mut args = vec!["run", arg(scenario), "--out", arg(out)];
    args.extend_from_slice(extra);
    let output = sim(&args, dir);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let trace = std::fs::read(out.join("trace.txt")).expect("trace.txt is written");
    let json = std::fs::read_to_string(out.join("summary.json")).expect("summary.json is written");
    let summary: Summary = serde_json::from_str(&json).expect("summary.json is a summary");
    assert_eq!(
        summary.to_json(),
        json,
        "summary.json is not the summary's JSON"
    );
    (stdout(&output), trace, summary)
}

#[test]
fn a_good_run_writes_trace_and_summary_and_prints_the_summary() {
    let (dir, path) = with_tiny();
    let out = dir.path().join("run");
    let (printed, trace, summary) = run_tiny(dir.path(), &path, &out, &["--seed", "7"]);
    assert_eq!(
        (summary.scenario.as_str(), summary.seed, summary.peers),
        ("tiny", 7, 5)
    );
    assert_eq!(summary.engine, EngineKind::Fleet);
    assert!(
        printed.starts_with(&format!("{summary}\n")),
        "stdout does not start with the summary:\n{printed}"
    );
    assert!(printed.contains("trace.txt"), "{printed}");
    assert_eq!(format!("{:016x}", fnv1a(&trace)), summary.trace_digest);
    let text = String::from_utf8(trace).unwrap();
    assert!(text.starts_with("    0.000000 n0 start "), "{text}");
    let end = format!(
        "   30.000000 -- end sent={} delivered={} ",
        summary.messages_sent, summary.messages_delivered
    );
    assert!(
        text.lines().last().is_some_and(|l| l.starts_with(&end)),
        "the trace does not end with `{end}`"
    );
    assert!(summary.connected_fraction > 0.0, "{summary:?}");
}

#[test]
fn the_written_trace_is_the_in_memory_trace() {
    let (dir, path) = with_tiny();
    let out = dir.path().join("run");
    let (_, written, _) = run_tiny(dir.path(), &path, &out, &["--seed", "7"]);
    let scenario = Scenario::load(&path).unwrap();
    let in_memory = engine::run(&scenario, 7, EngineKind::Fleet).unwrap();
    assert!(
        written == in_memory.trace.text(),
        "the streamed trace differs"
    );
}

#[test]
fn defaults_come_from_the_scenario_and_flags_override_them() {
    let (dir, path) = with_tiny();
    let out = sim(&["run", arg(&path)], dir.path());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let default_dir = dir.path().join("out").join("tiny-seed3");
    let json = std::fs::read_to_string(default_dir.join("summary.json")).unwrap();
    let summary: Summary = serde_json::from_str(&json).unwrap();
    assert_eq!((summary.seed, summary.engine), (3, EngineKind::Fleet));
    assert!(default_dir.join("trace.txt").is_file());

    let turmoil_dir = dir.path().join("turmoil");
    let (_, _, summary) = run_tiny(dir.path(), &path, &turmoil_dir, &["--engine", "turmoil"]);
    assert_eq!((summary.seed, summary.engine), (3, EngineKind::Turmoil));
}

#[test]
fn peers_and_duration_overrides_shape_the_run_and_the_default_directory() {
    let (dir, path) = with_tiny();
    let out = sim(
        &["run", arg(&path), "--peers", "3", "--duration-s", "12.5"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let default_dir = dir.path().join("out").join("tiny-3p-12.5s-seed3");
    let json = std::fs::read_to_string(default_dir.join("summary.json"))
        .expect("summary.json is written under the overrides' directory");
    let summary: Summary = serde_json::from_str(&json).expect("summary.json is a summary");
    assert_eq!((summary.peers, summary.duration_s), (3, 12.5));
}

#[test]
fn a_duration_shorter_than_the_start_spread_cuts_the_spread() {
    let dir = temp_dir();
    let path = dir.path().join("spread.toml");
    std::fs::write(
        &path,
        TINY.replace("count = 5", "count = 5\nstart_spread_s = 20"),
    )
    .expect("spread.toml is written");
    let out_dir = dir.path().join("cut");
    let out = sim(
        &[
            "run",
            arg(&path),
            "--duration-s",
            "8",
            "--out",
            arg(&out_dir),
        ],
        dir.path(),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    assert_eq!(
        err,
        "note: --duration-s 8: peers.start_spread_s cut from 20 s to 8 s, so every peer \
         starts within the run\n"
    );
    let resolved =
        std::fs::read_to_string(out_dir.join("scenario.toml")).expect("scenario.toml is written");
    assert!(resolved.contains("start_spread_s = 8"), "{resolved}");
    let trace = std::fs::read_to_string(out_dir.join("trace.txt")).expect("trace.txt is written");
    assert_eq!(trace.lines().filter(|l| l.contains(" start ")).count(), 5);
}

#[test]
fn impossible_overrides_are_usage_errors() {
    let (dir, path) = with_tiny();
    let cases: [(&[&str], &str); 5] = [
        (&["--peers", "1"], "--peers 1: need at least 2 peers"),
        (
            &["--peers", "5000000"],
            "--peers 5000000: need at least 2 peers",
        ),
        (
            &["--duration-s", "0"],
            "--duration-s 0: must be more than 0",
        ),
        (
            &["--duration-s", "NaN"],
            "--duration-s NaN: must be more than 0",
        ),
        (
            &["--duration-s", "1e9"],
            "--duration-s 1000000000: must be more than 0",
        ),
    ];
    for (flags, problem) in cases {
        let mut args = vec!["run", arg(&path)];
        args.extend_from_slice(flags);
        let out = sim(&args, dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: stderr: {err}");
        assert!(
            err.starts_with(&format!("error: {problem}")),
            "{flags:?}: {err}"
        );
    }
    assert!(!dir.path().join("out").exists());
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let (dir, path) = with_tiny();
    let run = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        run_tiny(dir.path(), &path, &out, &["--seed", seed]).1
    };
    let (first, second, other) = (run("a", "7"), run("b", "7"), run("c", "8"));
    assert!(!first.is_empty());
    assert!(first == second, "two runs at seed 7 wrote different traces");
    assert!(first != other, "seeds 7 and 8 wrote the same trace");
}
