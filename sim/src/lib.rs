//! The Flotilla simulator: many node cores in one process, in deterministic virtual time.
//!
//! A scenario file says what to simulate; a world is drawn from it and a seed; an engine
//! runs the world and leaves the final nodes, message counters and a trace; a summary says
//! what the network looks like at the end.
//!
//! Modules:
//! - [`data`]: the embedded region list and region-to-region RTT matrix (`sim/data/`);
//! - [`scenario`]: scenario files (TOML, format v1) and their strict checks; node classes,
//!   fault options drawn per seed, the workload;
//! - [`world`]: peers (keys, regions, last miles, start offsets, classes, configs), the
//!   latency model (with loss and uplinks) and the churn schedule, drawn from a scenario
//!   and a seed;
//! - [`account`]: the resource manager of every simulated node, refusal counts and the
//!   honest peers' ping success, the same in both engines;
//! - [`engine`]: [`EngineKind`], [`RunResult`] and dispatch to an engine;
//! - [`fleet`]: the discrete-event engine that steps the cores directly;
//! - [`jobstats`]: the deployments and allocations of a run with `[jobs]`, tallied;
//! - [`turmoil_engine`]: the engine that runs the async driver on turmoil's simulated TCP;
//! - [`trace`]: the one-line-per-event trace and its legend;
//! - [`summary`]: the numbers of a finished run;
//! - [`schedule`]: the fault schedule of a run, the same on both engines;
//! - [`check`]: invariants checked during a run, liveness after healing, failures and
//!   their exit codes;
//! - [`runner`]: a checked run (faults, invariants, `[expect]`, panics caught) and the
//!   replay command printed with a failure;
//! - [`overrides`]: `--peers` and `--duration-s` applied to a scenario;
//! - [`replay`]: filtering a trace by peer, kind and time window;
//! - [`sweep`]: many seeds of one scenario in parallel;
//! - [`timeline`]: per-interval counts of messages and connections;
//! - [`report`]: the files of a run beside trace and summary: the resolved scenario and
//!   SVG charts.
//!
//! ```
//! use flotilla_sim::{EngineKind, Scenario, Summary, engine};
//!
//! let text = "name = \"tiny\"\nduration_s = 30\n[peers]\ncount = 5\n";
//! let scenario = Scenario::parse(text, "tiny.toml").unwrap();
//! let world = engine::world(&scenario, 1);
//! let result = engine::run(&scenario, 1, EngineKind::Fleet).unwrap();
//! let summary = Summary::from_run(&world, EngineKind::Fleet, &result);
//! assert_eq!(summary.connected_fraction, 1.0);
//! assert!(result.trace.text().starts_with(b"    0.000000 n0 start"));
//! ```

pub mod account;
pub mod check;
pub mod company;
pub mod data;
pub mod engine;
pub mod fleet;
pub mod jobstats;
pub mod overrides;
pub mod replay;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod summary;
pub mod sweep;
pub mod timeline;
pub mod trace;
pub mod turmoil_engine;
pub mod world;

pub use engine::{EngineKind, RunResult};
pub use scenario::{Scenario, ScenarioError};
pub use summary::Summary;
pub use trace::Trace;
pub use world::World;
