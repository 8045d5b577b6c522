//! The simulated executor: jobs that start, log and exit on a seeded schedule, no containers.
//!
//! Each job draws, from its own stream `seed.child(id.0)`, a start delay, a run time, whether
//! it fails and where in its run it fails, always in that order and always all four. A job's
//! schedule therefore depends only on the seed, its id, its start time and its duration
//! limit: starting or stopping other jobs never changes it.
//!
//! The schedule of a job started at `t` with limit `L`, start delay `d` and run time `r`:
//! - `Started` at `t + d`;
//! - `log_lines` stdout lines evenly spread over `(t + d, t + d + r)`, up to its exit;
//! - `Exited` with `Failed { code: 1 }` at the drawn failure point `f` in `[0, r]` if the job
//!   fails and `f <= L` (a stderr line comes just before), else `TimedOut` at `t + d + L` if
//!   `r > L`, else `Completed` at `t + d + r`.
//!
//! Like [`crate::node::Node`] it is sans-IO: `start`/`stop` are commands, `handle_timeout`
//! moves due events out, `poll_event` drains them, `poll_timeout` says when to call again.
//! Events due at the same instant come out by job id, then by their place in the job's
//! schedule.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::Rng;

use crate::capacity::AllocationId;
use crate::seed::SeedTree;
use crate::time::Timestamp;

/// Most log lines a configuration may ask for per job.
pub const LOG_LINES_MAX: u32 = 10_000;

/// Exit code of a simulated failure.
pub const FAILURE_CODE: i32 = 1;

/// How simulated jobs behave.
#[derive(Clone, Debug, PartialEq)]
pub struct SimExecConfig {
    /// Time from `start` to `Started`, drawn uniformly from `low..=high`.
    pub start_delay: (Duration, Duration),
    /// Time from `Started` to a normal exit, drawn uniformly from `low..=high`; a run longer
    /// than the job's duration limit ends as `TimedOut` at the limit.
    pub run_time: (Duration, Duration),
    /// Chance, from 0 to 1, that a job fails (exit code 1) at a uniform point of its run.
    pub failure_probability: f64,
    /// Stdout lines each job writes, evenly spread over its run.
    pub log_lines: u32,
}

impl Default for SimExecConfig {
    fn default() -> Self {
        SimExecConfig {
            start_delay: (Duration::from_millis(100), Duration::from_secs(2)),
            run_time: (Duration::from_secs(1), Duration::from_secs(60)),
            failure_probability: 0.05,
            log_lines: 5,
        }
    }
}

/// A configuration value out of range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SimExecConfigError {
    /// A range whose low end is above its high end.
    #[error("{field}: low end {low:?} is above high end {high:?}; swap them")]
    InvertedRange {
        /// `start_delay` or `run_time`.
        field: &'static str,
        /// The low end given.
        low: Duration,
        /// The high end given.
        high: Duration,
    },
    /// A failure probability outside 0 to 1 (or not a number).
    #[error("failure_probability: {value} must be a number from 0 to 1")]
    Probability {
        /// The value given.
        value: f64,
    },
    /// Too many log lines per job.
    #[error("log_lines: {value} is above the limit of {LOG_LINES_MAX}; lower it")]
    LogLines {
        /// The value given.
        value: u32,
    },
}

impl SimExecConfig {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), SimExecConfigError> {
        for (field, (low, high)) in [
            ("start_delay", self.start_delay),
            ("run_time", self.run_time),
        ] {
            if low > high {
                return Err(SimExecConfigError::InvertedRange { field, low, high });
            }
        }
        if !(0.0..=1.0).contains(&self.failure_probability) {
            return Err(SimExecConfigError::Probability {
                value: self.failure_probability,
            });
        }
        if self.log_lines > LOG_LINES_MAX {
            return Err(SimExecConfigError::LogLines {
                value: self.log_lines,
            });
        }
        Ok(())
    }
}

/// A command the executor refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimExecError {
    /// `start` with the id of a job still starting or running.
    #[error("allocation {0:?} already has a job; wait for it to exit or stop it first")]
    Duplicate(AllocationId),
    /// `stop` with an id that has no starting or running job.
    #[error("allocation {0:?} has no starting or running job")]
    Unknown(AllocationId),
}

/// Which output a log line went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Ran to its end.
    Completed,
    /// Failed with exit code `code`.
    Failed {
        /// The exit code.
        code: i32,
    },
    /// Reached its duration limit.
    TimedOut,
    /// Stopped by `stop`.
    Stopped,
}

/// What happened to a job.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ExecEvent {
    /// The job is running.
    Started {
        /// The job.
        id: AllocationId,
    },
    /// The job wrote a line.
    Log {
        /// The job.
        id: AllocationId,
        /// Where it went.
        stream: Stream,
        /// The text, without its newline.
        line: String,
    },
    /// The job could not be started or followed (a missing image, an engine error); no
    /// further events for `id`. Real executors only.
    Failed {
        /// The job.
        id: AllocationId,
        /// Why, in words.
        reason: String,
    },
    /// The job ended; no further events for `id`.
    Exited {
        /// The job.
        id: AllocationId,
        /// How.
        outcome: Outcome,
    },
}

/// Scheduled events, keyed by (due time, job, place in the job's schedule).
type Schedule = BTreeMap<(Timestamp, AllocationId, u32), ExecEvent>;

/// Jobs started on a seeded, simulated schedule.
#[derive(Debug)]
pub struct SimExecutor {
    config: SimExecConfig,
    seed: SeedTree,
    /// Jobs still starting or running.
    active: BTreeSet<AllocationId>,
    schedule: Schedule,
    /// Due events not yet polled.
    ready: VecDeque<ExecEvent>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn draw(rng: &mut impl Rng, (low, high): (Duration, Duration)) -> Duration {
    Duration::from_micros(rng.random_range(micros(low)..=micros(high)))
}

impl SimExecutor {
    /// An executor drawing every job's behaviour from `seed` (job `id` uses `seed.child(id.0)`).
    pub fn new(config: SimExecConfig, seed: SeedTree) -> Result<Self, SimExecConfigError> {
        config.validate()?;
        Ok(SimExecutor {
            config,
            seed,
            active: BTreeSet::new(),
            schedule: BTreeMap::new(),
            ready: VecDeque::new(),
        })
    }

    /// Starts job `id` at `now`, limited to `duration_limit` of run time. Its events are due
    /// from `now` on; call [`Self::handle_timeout`] to release them.
    pub fn start(
        &mut self,
        now: Timestamp,
        id: AllocationId,
        duration_limit: Duration,
    ) -> Result<(), SimExecError> {
        if self.active.contains(&id) {
            return Err(SimExecError::Duplicate(id));
        }
        let mut rng = self.seed.child(id.0).rng();
        let delay = draw(&mut rng, self.config.start_delay);
        let run = draw(&mut rng, self.config.run_time);
        let fails = rng.random::<f64>() < self.config.failure_probability;
        let fail_at = draw(&mut rng, (Duration::ZERO, run));

        let (end, outcome) = if fails && fail_at <= duration_limit {
            (fail_at, Outcome::Failed { code: FAILURE_CODE })
        } else if run > duration_limit {
            (duration_limit, Outcome::TimedOut)
        } else {
            (run, Outcome::Completed)
        };

        let started = now + delay;
        let mut seq = 0u32;
        let mut push = |at: Timestamp, event: ExecEvent| {
            self.schedule.insert((at, id, seq), event);
            seq += 1;
        };
        push(started, ExecEvent::Started { id });
        let lines = u64::from(self.config.log_lines);
        for i in 1..=lines {
            let offset = Duration::from_micros(
                u64::try_from(u128::from(micros(run)) * u128::from(i) / u128::from(lines + 1))
                    .unwrap_or(u64::MAX),
            );
            if offset >= end {
                break;
            }
            let line = format!("allocation {} line {i} of {lines}", id.0);
            push(
                started + offset,
                ExecEvent::Log {
                    id,
                    stream: Stream::Stdout,
                    line,
                },
            );
        }
        if let Outcome::Failed { code } = outcome {
            let line = format!("simulated failure, exit code {code}");
            push(
                started + end,
                ExecEvent::Log {
                    id,
                    stream: Stream::Stderr,
                    line,
                },
            );
        }
        push(started + end, ExecEvent::Exited { id, outcome });
        self.active.insert(id);
        Ok(())
    }

    /// Stops job `id` at `now`: its pending events are dropped and `Exited { Stopped }` is
    /// ready at once. Events due before `now` come out first.
    pub fn stop(&mut self, now: Timestamp, id: AllocationId) -> Result<(), SimExecError> {
        self.handle_timeout(now);
        if !self.active.remove(&id) {
            return Err(SimExecError::Unknown(id));
        }
        self.schedule.retain(|(_, job, _), _| *job != id);
        self.ready.push_back(ExecEvent::Exited {
            id,
            outcome: Outcome::Stopped,
        });
        Ok(())
    }

    /// When the next scheduled event is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.schedule.keys().next().map(|(at, _, _)| *at)
    }

    /// Makes every event due at or before `now` ready for [`Self::poll_event`].
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(entry) = self.schedule.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let event = entry.remove();
            if let ExecEvent::Exited { id, .. } = &event {
                self.active.remove(id);
            }
            self.ready.push_back(event);
        }
    }

    /// The next ready event, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ExecEvent> {
        self.ready.pop_front()
    }

    /// Jobs still starting or running.
    pub fn active(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests;
