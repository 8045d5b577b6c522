//! `flotilla-sim`: run a scenario and write its trace and summary; replay a seed; sweep
//! many seeds.
//!
//! Exit codes: 0 a run passed; 2 a usage or scenario error; 127 the simulator crashed
//! (a panic); 128 the network did not converge within `expect.liveness_s`; 129 an
//! invariant broke or an `[expect]` assertion failed; 1 anything else (e.g. the output
//! directory cannot be written). `sweep` exits 1 if any seed failed. Every failure prints
//! the seed, the commit and the command that replays it.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flotilla_sim::check::EXIT_USAGE;
use flotilla_sim::overrides::{Overrides, UsageError};
use flotilla_sim::replay::Filter;
use flotilla_sim::runner::{self, RunError, failure_report, replay_command, run_checked};
use flotilla_sim::sweep::{SeedResult, sweep};
use flotilla_sim::{EngineKind, Scenario, ScenarioError, Trace, report};
use indicatif::{ProgressBar, ProgressStyle};

/// Deterministic simulator of Flotilla networks.
#[derive(Debug, Parser)]
#[command(name = "flotilla-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario; writes DIR/trace.txt, DIR/summary.json, the resolved scenario
    /// (DIR/scenario.toml) and charts (DIR/*.svg), and prints the summary.
    Run {
        /// The scenario file (TOML), e.g. scenarios/quickstart.toml.
        scenario: PathBuf,
        /// Seed of the run [default: the scenario's `seed`].
        #[arg(long)]
        seed: Option<u64>,
        /// Engine to run on [default: the scenario's `engine`].
        #[arg(long, value_enum)]
        engine: Option<EngineKind>,
        /// Output directory [default: out/<name>-seed<N>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Re-run a scenario at a seed and print its trace, filtered; exits like `run`.
    Replay {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Seed of the run.
        #[arg(long)]
        seed: u64,
        /// Engine to run on [default: the scenario's `engine`].
        #[arg(long, value_enum)]
        engine: Option<EngineKind>,
        #[command(flatten)]
        overrides: Overrides,
        /// Only lines of or about this peer (`n12`; `--peer=--` for engine lines); repeatable.
        #[arg(long, value_name = "nK")]
        peer: Vec<String>,
        /// Only lines of this kind (`conn+`, `rtt`, `crash`, `failed`); repeatable.
        #[arg(long, value_name = "KIND")]
        kind: Vec<String>,
        /// Only lines at or after this many simulated seconds.
        #[arg(long, value_name = "SECONDS")]
        from_s: Option<f64>,
        /// Only lines before this many simulated seconds.
        #[arg(long, value_name = "SECONDS")]
        until_s: Option<f64>,
    },
    /// Run a scenario at many seeds in parallel and list the seeds that failed.
    Sweep {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Seeds to run: `A..B` (B excluded) or `A..=B`.
        #[arg(long, value_name = "A..B")]
        seeds: String,
        /// Runs at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Engine to run on [default: the scenario's `engine`].
        #[arg(long, value_enum)]
        engine: Option<EngineKind>,
        #[command(flatten)]
        overrides: Overrides,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Run {
            scenario,
            seed,
            engine,
            out,
            overrides,
        } => run(&scenario, seed, engine, out, overrides),
        Command::Replay {
            scenario,
            seed,
            engine,
            overrides,
            peer,
            kind,
            from_s,
            until_s,
        } => {
            let filter = Filter {
                peers: peer,
                kinds: kind,
                from_s,
                until_s,
            };
            replay(&scenario, seed, engine, overrides, &filter)
        }
        Command::Sweep {
            scenario,
            seeds,
            jobs,
            engine,
            overrides,
        } => run_sweep(&scenario, &seeds, jobs, engine, overrides),
    };
    match done {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let usage = e.is::<ScenarioError>()
                || e.is::<UsageError>()
                || e.downcast_ref::<RunError>()
                    .is_some_and(|r| r.exit_code() == EXIT_USAGE);
            eprintln!("error: {e:#}");
            ExitCode::from(if usage { EXIT_USAGE } else { 1 })
        }
    }
}

/// Loads the scenario at `path` with `overrides` applied.
fn load(path: &Path, overrides: Overrides) -> anyhow::Result<Scenario> {
    let mut scenario = Scenario::load(path)?;
    for note in overrides.apply(&mut scenario)? {
        eprintln!("note: {note}");
    }
    Ok(scenario)
}

/// Prints the failure report of a failed run and returns its exit code.
fn report_failure(what: &str, code: u8, seed: u64, replay: &str) -> u8 {
    eprint!("{}", failure_report(what, seed, replay));
    code
}

fn run(
    path: &Path,
    seed: Option<u64>,
    engine: Option<EngineKind>,
    out: Option<PathBuf>,
    overrides: Overrides,
) -> anyhow::Result<u8> {
    let scenario = load(path, overrides)?;
    let seed = seed.unwrap_or(scenario.seed);
    let kind = engine.unwrap_or(scenario.engine);
    let replay = replay_command(&scenario.path, seed, kind, &overrides.args());
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "out/{}{}-seed{seed}",
            scenario.name,
            overrides.suffix()
        ))
    });
    runner::check_engine(&scenario, kind)?;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    let trace_path = out.join("trace.txt");
    let file = File::create(&trace_path)
        .with_context(|| format!("cannot create {}", trace_path.display()))?;

    let started = Instant::now();
    let outcome = match run_checked(&scenario, seed, kind, |world| {
        Trace::with_sink(world, Box::new(BufWriter::new(file)))
    }) {
        Ok(o) => o,
        Err(e @ RunError::Crash(_)) => {
            return Ok(report_failure(&e.to_string(), e.exit_code(), seed, &replay));
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "run of {} (seed {seed}, {kind} engine) failed",
                    scenario.path
                )
            });
        }
    };
    let wall = started.elapsed();

    let summary_path = out.join("summary.json");
    std::fs::write(&summary_path, outcome.summary.to_json())
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    println!("{}", outcome.summary);
    let events = outcome.result.trace.events();
    println!(
        "wall       {:.2} s, {:.0} trace events/s",
        wall.as_secs_f64(),
        events as f64 / wall.as_secs_f64().max(1e-9)
    );
    println!(
        "written    {} and {}",
        trace_path.display(),
        summary_path.display()
    );
    for path in report::write(&out, &scenario, seed, kind, &outcome.world, &outcome.result)? {
        println!("written    {}", path.display());
    }
    Ok(match &outcome.failure {
        Some(f) => report_failure(&f.to_string(), f.exit_code(), seed, &replay),
        None => 0,
    })
}

fn replay(
    path: &Path,
    seed: u64,
    engine: Option<EngineKind>,
    overrides: Overrides,
    filter: &Filter,
) -> anyhow::Result<u8> {
    let scenario = load(path, overrides)?;
    let kind = engine.unwrap_or(scenario.engine);
    let replay = replay_command(&scenario.path, seed, kind, &overrides.args());
    runner::check_engine(&scenario, kind)?;
    let outcome = match run_checked(&scenario, seed, kind, Trace::new) {
        Ok(o) => o,
        Err(e @ RunError::Crash(_)) => {
            return Ok(report_failure(&e.to_string(), e.exit_code(), seed, &replay));
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", filter.apply(outcome.result.trace.text()));
    Ok(match &outcome.failure {
        Some(f) => report_failure(&f.to_string(), f.exit_code(), seed, &replay),
        None => 0,
    })
}

/// Parses `A..B` (B excluded) or `A..=B`.
fn parse_seeds(text: &str) -> Result<std::ops::Range<u64>, UsageError> {
    let bad = || {
        UsageError(format!(
            "--seeds {text}: write A..B (B excluded) or A..=B, e.g. 1..100"
        ))
    };
    let (a, b, inclusive) = match text.split_once("..=") {
        Some((a, b)) => (a, b, true),
        None => text
            .split_once("..")
            .map(|(a, b)| (a, b, false))
            .ok_or_else(bad)?,
    };
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    let end = if inclusive { b.saturating_add(1) } else { b };
    if end <= a {
        return Err(UsageError(format!(
            "--seeds {text}: the range holds no seed"
        )));
    }
    Ok(a..end)
}

fn run_sweep(
    path: &Path,
    seeds: &str,
    jobs: usize,
    engine: Option<EngineKind>,
    overrides: Overrides,
) -> anyhow::Result<u8> {
    let scenario = load(path, overrides)?;
    let kind = engine.unwrap_or(scenario.engine);
    let seeds = parse_seeds(seeds)?;
    runner::check_engine(&scenario, kind)?;
    let bar = ProgressBar::new(seeds.end - seeds.start);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let failed = std::sync::atomic::AtomicU64::new(0);
    let results = sweep(&scenario, seeds.clone(), jobs, kind, |r: &SeedResult| {
        if r.verdict.is_err() {
            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        bar.set_message(format!(
            "{} failed",
            failed.load(std::sync::atomic::Ordering::Relaxed)
        ));
        bar.inc(1);
    });
    bar.finish();
    let failures: Vec<_> = results
        .iter()
        .filter_map(|r| r.verdict.as_ref().err().map(|f| (r.seed, f)))
        .collect();
    println!(
        "{} seeds run ({}..{}), {} failed",
        results.len(),
        seeds.start,
        seeds.end,
        failures.len()
    );
    if failures.is_empty() {
        return Ok(0);
    }
    println!("{:>8}  {:<9}  {:>4}  replay", "seed", "kind", "exit");
    for (seed, f) in &failures {
        let cmd = replay_command(&scenario.path, *seed, kind, &overrides.args());
        println!("{seed:>8}  {:<9}  {:>4}  {cmd}", f.kind(), f.exit_code());
        println!("{:>8}  {f}", "");
    }
    println!("commit {}", runner::COMMIT);
    Ok(1)
}
