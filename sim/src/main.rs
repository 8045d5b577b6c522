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
        } => match run(&scenario, seed, engine, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let code = if e.is::<ScenarioError>() { 2 } else { 1 };
                eprintln!("error: {e:#}");
                ExitCode::from(code)
            }
        },
    }
}

fn run(
    path: &PathBuf,
    seed: Option<u64>,
    engine: Option<EngineKind>,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let scenario = Scenario::load(path)?;
    let seed = seed.unwrap_or(scenario.seed);
    let kind = engine.unwrap_or(scenario.engine);
    let out = out.unwrap_or_else(|| PathBuf::from(format!("out/{}-seed{seed}", scenario.name)));
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
