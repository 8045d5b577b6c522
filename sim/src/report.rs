//! The files of a finished run beside its trace and summary: the resolved scenario and
//! charts.
//!
//! | file | what it shows |
//! |---|---|
//! | `scenario.toml` | the scenario with every default and override filled in ([`resolved`]) |
//! | `rtt_cdf.svg` | CDF of the measured (EWMA) RTT to connected neighbours over all nodes, beside the model's RTT of the same pairs and of random pairs |
//! | `degree.svg` | histogram of node degree at the end |
//! | `timeline.svg` | messages sent and delivered per interval, and open connections, over simulated time |
//!
//! Charts are SVG drawn by plotters, with text as `<text>` elements (no font is read), and
//! depend only on the run's simulated facts, so the same run gives the same files byte for
//! byte.
//!
//! ```
//! use flotilla_sim::{EngineKind, Scenario, engine, report};
//!
//! let text = "name = \"tiny\"\nduration_s = 30\n[peers]\ncount = 5\n";
//! let scenario = Scenario::parse(text, "tiny.toml").unwrap();
//! let world = engine::world(&scenario, 1);
//! let result = engine::run(&scenario, 1, EngineKind::Fleet).unwrap();
//! let files = report::render(&scenario, 1, EngineKind::Fleet, &world, &result).unwrap();
//! let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
//! assert_eq!(names, ["scenario.toml", "rtt_cdf.svg", "degree.svg", "timeline.svg"]);
//! ```

mod charts;
pub mod resolved;

use std::path::{Path, PathBuf};

use flotilla_core::SeedTree;
use rand::Rng;

use crate::engine::{EngineKind, RunResult};
use crate::scenario::Scenario;
use crate::summary::neighbourhoods;
use crate::timeline::Timeline;
use crate::world::{STREAM_NETWORK, World};

/// Label under the root seed for the random pairs of the RTT chart's baseline (the
/// summary's sample uses `STREAM_NETWORK + 1`).
const STREAM_REPORT: u64 = STREAM_NETWORK + 2;
/// Random pairs drawn at most for the baseline; smaller worlds use every pair.
const RANDOM_PAIRS_MAX: usize = 20_000;

/// Why the report of a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The resolved scenario could not be turned into TOML (a bug: every value is plain).
    #[error("cannot write the resolved scenario as TOML: {0}")]
    Scenario(String),
    /// plotters failed to draw a chart.
    #[error("cannot draw {chart}: {message}")]
    Chart {
        /// The chart's file name.
        chart: &'static str,
        /// What plotters said.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {}: {error}; check the output directory", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// What the charts are drawn from, taken out of a finished run.
#[derive(Debug, Clone)]
pub struct ChartData {
    /// Simulated duration, seconds.
    pub duration_s: f64,
    /// Each node's smoothed (EWMA) RTT to each connected neighbour it measured, ms, sorted.
    pub rtt_measured_ms: Vec<f64>,
    /// The model's base RTT of the same pairs, ms, sorted.
    pub rtt_model_ms: Vec<f64>,
    /// The model's base RTT of random pairs of peers, ms, sorted.
    pub rtt_random_ms: Vec<f64>,
    /// Each node's connections at the end (refused connections about to close left out).
    pub degrees: Vec<usize>,
    /// Per-interval counts of the run.
    pub timeline: Timeline,
}

impl ChartData {
    /// The chart data of `result`, a run of `world`.
    pub fn from_run(world: &World, result: &RunResult) -> ChartData {
        let mut data = ChartData {
            duration_s: world.duration().as_secs_f64(),
            rtt_measured_ms: Vec::new(),
            rtt_model_ms: Vec::new(),
            rtt_random_ms: random_pairs_ms(world),
            degrees: Vec::with_capacity(result.nodes.len()),
            timeline: result.trace.timeline().clone(),
        };
        for hood in neighbourhoods(world, result) {
            for (measured, model) in hood.rtts_us {
                data.rtt_measured_ms.push(measured as f64 / 1000.0);
                data.rtt_model_ms.push(model as f64 / 1000.0);
            }
            data.degrees.push(hood.degree);
        }
        data.rtt_measured_ms.sort_by(f64::total_cmp);
        data.rtt_model_ms.sort_by(f64::total_cmp);
        data
    }
}

/// Base RTT of every pair of peers, or of a seeded sample of pairs in a large world, ms,
/// sorted.
fn random_pairs_ms(world: &World) -> Vec<f64> {
    let n = world.len();
    let mut out = Vec::new();
    if n < 2 {
        return out;
    }
    if n * (n - 1) / 2 <= RANDOM_PAIRS_MAX {
        for a in 0..n {
            for b in a + 1..n {
                out.push(world.rtt_us(a, b) as f64 / 1000.0);
            }
        }
    } else {
        let mut rng = SeedTree::new(world.seed()).child(STREAM_REPORT).rng();
        for _ in 0..RANDOM_PAIRS_MAX {
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            out.push(world.rtt_us(a, b) as f64 / 1000.0);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Every report file of a run, by file name, in a fixed order: the resolved scenario
/// (run at `seed` on `engine`) and the charts of `result`, a run of `world`.
pub fn render(
    scenario: &Scenario,
    seed: u64,
    engine: EngineKind,
    world: &World,
    result: &RunResult,
) -> Result<Vec<(&'static str, String)>, ReportError> {
    let data = ChartData::from_run(world, result);
    Ok(vec![
        ("scenario.toml", resolved::to_toml(scenario, seed, engine)?),
        ("rtt_cdf.svg", charts::rtt_cdf(&data)?),
        ("degree.svg", charts::degree(&data)?),
        ("timeline.svg", charts::timeline(&data)?),
    ])
}

/// Renders the report files (see [`render`]) into `dir` and returns their paths.
pub fn write(
    dir: &Path,
    scenario: &Scenario,
    seed: u64,
    engine: EngineKind,
    world: &World,
    result: &RunResult,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut paths = Vec::new();
    for (name, text) in render(scenario, seed, engine, world, result)? {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|error| ReportError::Write {
            path: path.clone(),
            error,
        })?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests;
