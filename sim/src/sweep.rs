//! `flotilla-sim sweep`: one scenario at many seeds, runs spread over worker threads.
//!
//! Every run is independent (its own world, engine and trace, written nowhere), so the
//! results do not depend on the number of threads or their timing; they are returned in
//! seed order. A callback reports each finished seed, e.g. to move a progress bar.
//!
//! ```
//! use flotilla_sim::{EngineKind, Scenario, sweep};
//!
//! let s = Scenario::parse("name = \"w\"\nduration_s = 20\n[peers]\ncount = 4\n", "w.toml").unwrap();
//! let results = sweep::sweep(&s, 1..4, 2, EngineKind::Fleet, |_| {});
//! assert_eq!(results.iter().map(|r| r.seed).collect::<Vec<_>>(), [1, 2, 3]);
//! assert!(results.iter().all(|r| r.verdict.is_ok()));
//! ```

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::check::Failure;
use crate::engine::EngineKind;
use crate::runner::{RunError, run_checked};
use crate::scenario::Scenario;
use crate::trace::Trace;

/// How a seed failed.
#[derive(Debug)]
pub enum SeedFailure {
    /// A failed check (invariant, liveness, `[expect]`).
    Failed(Failure),
    /// The run could not finish (a crash, or an engine error).
    Error(RunError),
}

impl SeedFailure {
    /// The exit code `flotilla-sim run` gives this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            SeedFailure::Failed(f) => f.exit_code(),
            SeedFailure::Error(e) => e.exit_code(),
        }
    }

    /// `invariant`, `liveness`, `expect`, `crash` or `error`.
    pub fn kind(&self) -> &'static str {
        match self {
            SeedFailure::Failed(f) => f.kind(),
            SeedFailure::Error(RunError::Crash(_)) => "crash",
            SeedFailure::Error(_) => "error",
        }
    }
}

impl std::fmt::Display for SeedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedFailure::Failed(x) => x.fmt(f),
            SeedFailure::Error(e) => e.fmt(f),
        }
    }
}

/// The result of one seed.
#[derive(Debug)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// `Ok` for a passing run.
    pub verdict: Result<(), SeedFailure>,
}

/// Runs `scenario` at every seed of `seeds` on `engine`, on `jobs` threads (at least 1);
/// `done` is called from the workers as each seed finishes.
pub fn sweep(
    scenario: &Scenario,
    seeds: Range<u64>,
    jobs: usize,
    engine: EngineKind,
    done: impl Fn(&SeedResult) + Sync,
) -> Vec<SeedResult> {
    let next = AtomicU64::new(seeds.start);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    let outcome = run_checked(scenario, seed, engine, |world| {
                        Trace::with_sink(world, Box::new(std::io::sink()))
                    });
                    let verdict = match outcome {
                        Ok(o) => o.failure.map_or(Ok(()), |f| Err(SeedFailure::Failed(f))),
                        Err(e) => Err(SeedFailure::Error(e)),
                    };
                    let result = SeedResult { seed, verdict };
                    done(&result);
                    if let Ok(mut all) = results.lock() {
                        all.push(result);
                    }
                }
            });
        }
    });
    let mut all = results.into_inner().unwrap_or_else(|e| e.into_inner());
    all.sort_by_key(|r| r.seed);
    all
}
