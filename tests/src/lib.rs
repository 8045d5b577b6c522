//! Helpers shared by the workspace-level tests of Flotilla.
//!
//! The tests themselves live beside this directory, one binary each:
//! - `determinism.rs`: the same scenario and seed give byte-identical traces on the fleet and
//!   the turmoil engine, another seed gives another trace, and the two engines agree on the
//!   headline numbers of `scenarios/small.toml`;
//! - `snapshots.rs`: summaries and traces of the files in `scenarios/`, stored as insta
//!   snapshots in the workspace's `snapshots/` directory (`just snap` rewrites them).
//!
//! This module loads scenarios from `scenarios/` ([`load`]), runs them in process ([`run`])
//! and reduces a trace to what the tests compare ([`sha256_hex`], [`head`]).
//!
//! ```
//! let scenario = flotilla_tests::load("small.toml").unwrap();
//! assert_eq!(scenario.name, "small");
//! assert_eq!(flotilla_tests::head(b"a\nb\nc\n", 2), "a\nb\n");
//! assert_eq!(flotilla_tests::sha256_hex(b"").len(), 64);
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use flotilla_core::PeerId;
use flotilla_sim::{EngineKind, Scenario, Summary, engine};
use sha2::{Digest, Sha256};

/// The workspace's `scenarios/` directory.
pub fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scenarios")
}

/// Loads `scenarios/<file>`.
pub fn load(file: &str) -> anyhow::Result<Scenario> {
    let path = scenarios_dir().join(file);
    Scenario::load(&path).with_context(|| format!("cannot load {}", path.display()))
}

/// What a finished run leaves for the tests to compare.
#[derive(Debug, Clone)]
pub struct Run {
    /// The engine that ran it.
    pub engine: EngineKind,
    /// The seed it ran at.
    pub seed: u64,
    /// The whole trace text.
    pub trace: Vec<u8>,
    /// SHA-256 of [`Run::trace`], hex.
    pub trace_sha256: String,
    /// The summary of the run.
    pub summary: Summary,
    /// For every node, in index order, the peers it is connected to at the end (refused
    /// connections about to close left out).
    pub neighbours: Vec<BTreeSet<PeerId>>,
}

/// Runs `scenario` at `seed` on `engine`, in process, with the trace in memory.
pub fn run(scenario: &Scenario, seed: u64, engine: EngineKind) -> anyhow::Result<Run> {
    let world = engine::world(scenario, seed);
    let result = engine::run(scenario, seed, engine)
        .with_context(|| format!("run of {} (seed {seed}, {engine})", scenario.path))?;
    let summary = Summary::from_run(&world, engine, &result);
    let neighbours = result
        .nodes
        .iter()
        .map(|node| {
            node.connections()
                .filter(|c| !c.closing)
                .map(|c| c.peer)
                .collect()
        })
        .collect();
    let trace = result.trace.into_bytes();
    Ok(Run {
        engine,
        seed,
        trace_sha256: sha256_hex(&trace),
        trace,
        summary,
        neighbours,
    })
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The first `lines` lines of `text`, each with its newline (invalid UTF-8 replaced).
pub fn head(text: &[u8], lines: usize) -> String {
    String::from_utf8_lossy(text)
        .split_inclusive('\n')
        .take(lines)
        .collect()
}
