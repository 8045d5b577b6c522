//! `flotilla-sim`: run a scenario and write its trace and summary.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flotilla_sim::{EngineKind, Scenario, ScenarioError, Summary, Trace, engine};

/// Deterministic simulator of Flotilla networks.
#[derive(Debug, Parser)]
#[command(name = "flotilla-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario; writes DIR/trace.txt and DIR/summary.json and prints the summary.
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
        /// Override the scenario's peer count (e.g. a smaller run on the turmoil engine).
        #[arg(long, value_name = "N")]
        peers: Option<usize>,
        /// Override the scenario's simulated duration in seconds.
        #[arg(long, value_name = "SECONDS")]
        duration_s: Option<f64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            scenario,
            seed,
            engine,
            out,
            peers,
            duration_s,
        } => match run(
            &scenario,
            seed,
            engine,
            out,
            Overrides { peers, duration_s },
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let usage = e.is::<ScenarioError>() || e.is::<OverrideError>();
                let code = if usage { 2 } else { 1 };
                eprintln!("error: {e:#}");
                ExitCode::from(code)
            }
        },
    }
}

/// Command-line overrides of scenario values.
#[derive(Debug, Clone, Copy)]
struct Overrides {
    peers: Option<usize>,
    duration_s: Option<f64>,
}

/// A command-line override that does not fit the scenario.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OverrideError(String);

impl Overrides {
    fn apply(&self, scenario: &mut Scenario) -> Result<(), OverrideError> {
        if let Some(n) = self.peers {
            let max = flotilla_sim::scenario::PEERS_MAX as usize;
            if n < 2 || n < scenario.peers.bootstrap || n > max {
                return Err(OverrideError(format!(
                    "--peers {n}: need at least 2 peers, at least the scenario's {} bootstrap \
                     nodes, and at most {max}",
                    scenario.peers.bootstrap
                )));
            }
            scenario.peers.count = n;
        }
        if let Some(s) = self.duration_s {
            if !(s > 0.0 && s <= flotilla_sim::scenario::DURATION_S_MAX) {
                return Err(OverrideError(format!(
                    "--duration-s {s}: must be more than 0 and at most {}",
                    flotilla_sim::scenario::DURATION_S_MAX
                )));
            }
            let duration = std::time::Duration::from_secs_f64(s);
            if duration < scenario.peers.start_spread {
                return Err(OverrideError(format!(
                    "--duration-s {s}: shorter than the scenario's peers.start_spread_s ({} s)",
                    scenario.peers.start_spread.as_secs_f64()
                )));
            }
            scenario.duration = duration;
        }
        Ok(())
    }

    fn suffix(&self) -> String {
        let mut out = String::new();
        if let Some(n) = self.peers {
            out.push_str(&format!("-{n}p"));
        }
        if let Some(s) = self.duration_s {
            out.push_str(&format!("-{s}s"));
        }
        out
    }
}

fn run(
    path: &PathBuf,
    seed: Option<u64>,
    engine: Option<EngineKind>,
    out: Option<PathBuf>,
    overrides: Overrides,
) -> anyhow::Result<()> {
    let mut scenario = Scenario::load(path)?;
    overrides.apply(&mut scenario)?;
    let seed = seed.unwrap_or(scenario.seed);
    let kind = engine.unwrap_or(scenario.engine);
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "out/{}{}-seed{seed}",
            scenario.name,
            overrides.suffix()
        ))
    });
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    let trace_path = out.join("trace.txt");
    let file = File::create(&trace_path)
        .with_context(|| format!("cannot create {}", trace_path.display()))?;

    let started = Instant::now();
    let world = engine::world(&scenario, seed);
    let built = started.elapsed();
    let trace = Trace::with_sink(&world, Box::new(BufWriter::new(file)));
    let result = engine::run_world(&world, kind, trace).with_context(|| {
        format!(
            "run of {} (seed {seed}, {kind} engine) failed",
            scenario.path
        )
    })?;
    let wall = started.elapsed();

    let summary = Summary::from_run(&world, kind, &result);
    let summary_path = out.join("summary.json");
    std::fs::write(&summary_path, summary.to_json())
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    println!("{summary}");
    let events = result.trace.events();
    println!(
        "wall       {:.2} s ({:.2} s building the world), {:.0} trace events/s",
        wall.as_secs_f64(),
        built.as_secs_f64(),
        events as f64 / wall.as_secs_f64().max(1e-9)
    );
    println!(
        "written    {} and {}",
        trace_path.display(),
        summary_path.display()
    );
    Ok(())
}
