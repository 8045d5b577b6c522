//! A checked run: the engine with the scenario's faults and invariants, the summary, the
//! `[expect]` assertions, and a panic caught as a crash.
//!
//! [`run_checked`] is what `flotilla-sim run`, `replay` and `sweep` call; [`replay_command`]
//! is the command line that reproduces a run, printed with every failure together with the
//! seed and the commit the binary was built from ([`COMMIT`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::check::{self, EXIT_CRASH, EXIT_USAGE, Failure};
use crate::engine::{self, EngineError, EngineKind, RunResult};
use crate::fleet::{self, Plan};
use crate::scenario::Scenario;
use crate::summary::Summary;
use crate::trace::Trace;
use crate::world::World;

/// The commit the binary was built from (`git rev-parse --short HEAD`), or `unknown`.
pub const COMMIT: &str = match option_env!("FLOTILLA_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// Why a run could not produce an outcome.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario asks for something its engine cannot do yet.
    #[error("{0} are not yet supported on the turmoil engine; run with `--engine fleet`")]
    Unsupported(&'static str),
    /// The engine failed (the trace could not be written).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The simulator panicked.
    #[error("the simulator crashed: {0}")]
    Crash(String),
}

impl RunError {
    /// The exit code of `flotilla-sim` for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Unsupported(_) => EXIT_USAGE,
            RunError::Engine(_) => 1,
            RunError::Crash(_) => EXIT_CRASH,
        }
    }
}

/// A finished run, failed or not.
#[derive(Debug)]
pub struct Outcome {
    /// The world it ran.
    pub world: World,
    /// The final nodes, counters and trace.
    pub result: RunResult,
    /// Its summary.
    pub summary: Summary,
    /// The first failure: an invariant, the liveness bound or `[expect]`.
    pub failure: Option<Failure>,
}

/// Runs `scenario` at `seed` on `engine` with every check, writing to the trace that
/// `trace_of` makes for the world.
pub fn run_checked(
    scenario: &Scenario,
    seed: u64,
    engine: EngineKind,
    trace_of: impl FnOnce(&World) -> Trace,
) -> Result<Outcome, RunError> {
    check_engine(scenario, engine)?;
    // Fault options written as ranges are drawn for this seed.
    let scenario = &scenario.at_seed(seed);
    let world = engine::world(scenario, seed);
    let trace = trace_of(&world);
    let ran = catch_unwind(AssertUnwindSafe(|| {
        let (mut result, failure) = match engine {
            EngineKind::Fleet => {
                fleet::run_with(&world, trace, world.duration(), Plan::of(scenario))
            }
            EngineKind::Turmoil => crate::turmoil_engine::run_with(
                &world,
                trace,
                world.duration(),
                crate::turmoil_engine::plan(scenario, crate::turmoil_engine::TICK),
                crate::turmoil_engine::TICK,
            ),
        };
        result.trace.flush().map_err(EngineError::Trace)?;
        Ok::<_, EngineError>((result, failure))
    }));
    let (result, failure) = match ran {
        Ok(done) => done?,
        Err(panic) => return Err(RunError::Crash(panic_message(panic.as_ref()))),
    };
    let summary = Summary::from_run(&world, engine, &result);
    let failure = failure.or_else(|| {
        let failed = check::expectations(scenario, &summary);
        (!failed.is_empty()).then_some(Failure::Expectation(failed))
    });
    Ok(Outcome {
        world,
        result,
        summary,
        failure,
    })
}

/// Fails if `scenario` asks for something `engine` cannot do. Both engines run every
/// fault, invariant, liveness bound and `[debug]` setting today; this is where a feature
/// one engine lacks is refused with exit code 2 (the turmoil engine: loss, uplinks and
/// `[[workload]]`).
pub fn check_engine(scenario: &Scenario, engine: EngineKind) -> Result<(), RunError> {
    if engine == EngineKind::Turmoil {
        if scenario.latency.loss > 0.0 {
            return Err(RunError::Unsupported("lost messages (`latency.loss`)"));
        }
        if scenario.has_bandwidth() {
            return Err(RunError::Unsupported("uplink limits (`bandwidth_kbps`)"));
        }
        if !scenario.workload.is_empty() {
            return Err(RunError::Unsupported("[[workload]] floods"));
        }
    }
    Ok(())
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The command that re-runs a scenario at `seed` on `engine` and prints its trace;
/// `extra` holds the command-line overrides of the original run (`--peers 100`).
pub fn replay_command(
    scenario_path: &str,
    seed: u64,
    engine: EngineKind,
    extra: &[String],
) -> String {
    let mut cmd = format!("flotilla-sim replay {scenario_path} --seed {seed} --engine {engine}");
    for e in extra {
        cmd.push(' ');
        cmd.push_str(e);
    }
    cmd
}

/// The lines printed to stderr with every failure: what failed, the seed, the commit and
/// the replay command.
pub fn failure_report(what: &str, seed: u64, replay: &str) -> String {
    format!("error: {what}\nseed    {seed}\ncommit  {COMMIT}\nreplay  {replay}\n")
}
