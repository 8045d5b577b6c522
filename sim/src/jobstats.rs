//! Jobs in a run (`[jobs]`): what the service providers asked for and what became of it,
//! tallied from the nodes' job events by either engine and reported in the summary.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_core::deployment::DeployState;
use flotilla_core::jobs::{JobEvent, JobStats};
use flotilla_core::provider::AllocState;
use serde::{Deserialize, Serialize};

/// The class of a failed deployment's reason, as the core words it: `too-few-bids`,
/// `commit-refused`, `commit-timeout`, `provision-timeout`, `worker-failed`,
/// `run-timeout`, `shutdown` or `other`.
pub fn failure_class(reason: &str) -> &'static str {
    if reason.contains(" bids for ") {
        "too-few-bids"
    } else if reason.contains("refused the commit") {
        "commit-refused"
    } else if reason.contains("did not answer the commit") {
        "commit-timeout"
    } else if reason.contains("did not all start") {
        "provision-timeout"
    } else if reason.starts_with("worker on ") {
        "worker-failed"
    } else if reason.contains("duration limit") {
        "run-timeout"
    } else if reason.starts_with("shut down") {
        "shutdown"
    } else {
        "other"
    }
}

/// One deployment as the tally follows it.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    asked: Duration,
    running: Option<Duration>,
    state: DeployState,
}

/// The tally of a run's jobs.
#[derive(Debug, Clone, Default)]
pub struct JobTally {
    deployments: BTreeMap<(usize, u64), Tracked>,
    /// Deployments whose service provider crashed before they ended.
    lost: u64,
    /// Deploy calls the core refused (no connected peer).
    deploy_errors: u64,
    failure_classes: BTreeMap<&'static str, u64>,
    allocations_accepted: u64,
    allocations_by_end: BTreeMap<&'static str, u64>,
    commits_refused: u64,
    log_lines: u64,
    /// Counters of nodes that crashed, added up.
    stats_gone: JobStats,
}

impl JobTally {
    /// A deploy call of node `node` at `at` was refused by the core.
    pub fn deploy_refused(&mut self) {
        self.deploy_errors += 1;
    }

    /// A job event of node `node` at `at` (since the run's start).
    pub fn event(&mut self, node: usize, at: Duration, e: &JobEvent) {
        match e {
            JobEvent::Deployment { id, state, reason } => {
                let t = self.deployments.entry((node, *id)).or_insert(Tracked {
                    asked: at,
                    running: None,
                    state: *state,
                });
                t.state = *state;
                if *state == DeployState::Running && t.running.is_none() {
                    t.running = Some(at);
                }
                if *state == DeployState::Failed {
                    *self
                        .failure_classes
                        .entry(failure_class(reason))
                        .or_default() += 1;
                }
            }
            JobEvent::Allocation { state, .. } => match state {
                AllocState::Pending => self.allocations_accepted += 1,
                AllocState::Running => {}
                s => *self.allocations_by_end.entry(s.name()).or_default() += 1,
            },
            JobEvent::Refused { .. } => self.commits_refused += 1,
            JobEvent::Log { .. } => self.log_lines += 1,
        }
    }

    /// Node `node` crashed with these counters: its live deployments are lost.
    pub fn node_down(&mut self, node: usize, stats: Option<JobStats>) {
        let live: Vec<(usize, u64)> = self
            .deployments
            .range((node, 0)..=(node, u64::MAX))
            .filter(|(_, t)| !t.state.is_terminal())
            .map(|(k, _)| *k)
            .collect();
        for k in live {
            self.deployments.remove(&k);
            self.lost += 1;
        }
        if let Some(s) = stats {
            add(&mut self.stats_gone, &s);
        }
    }

    /// The summary, with the counters of the nodes running at the end.
    pub fn summary(&self, running: impl Iterator<Item = JobStats>) -> JobsSummary {
        let mut stats = self.stats_gone;
        for s in running {
            add(&mut stats, &s);
        }
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        let mut to_running: Vec<Duration> = Vec::new();
        for t in self.deployments.values() {
            *by_state.entry(t.state.name().to_string()).or_default() += 1;
            if let Some(r) = t.running {
                to_running.push(r.saturating_sub(t.asked));
            }
        }
        to_running.sort_unstable();
        let pct = |p: f64| {
            if to_running.is_empty() {
                return 0.0;
            }
            let k = ((to_running.len() as f64 * p).ceil() as usize).clamp(1, to_running.len());
            (to_running[k - 1].as_secs_f64() * 1e6).round() / 1e6
        };
        let asked = self.deployments.len() as u64 + self.lost;
        let completed = by_state.get("completed").copied().unwrap_or(0);
        JobsSummary {
            deployments_asked: asked,
            deploy_errors: self.deploy_errors,
            deployments_lost: self.lost,
            by_state,
            failed_by_reason: self
                .failure_classes
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            completed_share: if asked == 0 {
                0.0
            } else {
                (completed as f64 / asked as f64 * 1e6).round() / 1e6
            },
            running_reached: to_running.len() as u64,
            to_running_median_s: pct(0.5),
            to_running_p95_s: pct(0.95),
            allocations_accepted: self.allocations_accepted,
            allocations_by_end: self
                .allocations_by_end
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            commits_refused: self.commits_refused,
            bids_sent: stats.bids_sent,
            bids_declined: stats.bids_declined,
            log_lines: self.log_lines,
        }
    }
}

fn add(to: &mut JobStats, s: &JobStats) {
    to.bids_sent += s.bids_sent;
    to.bids_declined += s.bids_declined;
    to.refused_requesters += s.refused_requesters;
    to.commits_refused += s.commits_refused;
    to.commits_accepted += s.commits_accepted;
    to.bids_forged += s.bids_forged;
}

/// The `jobs` section of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsSummary {
    /// Deployments the service providers started (the core accepted the deploy call).
    pub deployments_asked: u64,
    /// Deploy calls the core refused (no connected peer to ask).
    pub deploy_errors: u64,
    /// Deployments whose service provider crashed before they ended.
    pub deployments_lost: u64,
    /// The other deployments by their state at the end.
    pub by_state: BTreeMap<String, u64>,
    /// Failed deployments by the class of their reason.
    pub failed_by_reason: BTreeMap<String, u64>,
    /// Completed deployments over those asked.
    pub completed_share: f64,
    /// Deployments that reached running.
    pub running_reached: u64,
    /// Median time from the deploy call to running, seconds.
    pub to_running_median_s: f64,
    /// 95th percentile of the time from the deploy call to running, seconds.
    pub to_running_p95_s: f64,
    /// Commits the providers accepted (allocations made).
    pub allocations_accepted: u64,
    /// Allocations by how they ended.
    pub allocations_by_end: BTreeMap<String, u64>,
    /// Commits the providers refused.
    pub commits_refused: u64,
    /// Bids the providers sent.
    pub bids_sent: u64,
    /// Bid requests the providers declined (the job did not fit).
    pub bids_declined: u64,
    /// Log lines the service providers received.
    pub log_lines: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_classed() {
        assert_eq!(
            failure_class("1 bids for 2 workers; ask again later or lower the requirements"),
            "too-few-bids"
        );
        assert_eq!(
            failure_class("a provider did not answer the commit in time"),
            "commit-timeout"
        );
        assert_eq!(
            failure_class("worker on 12D3 failed: exit code 1"),
            "worker-failed"
        );
        assert_eq!(
            failure_class("the workers did not all report an end within the job's duration limit"),
            "run-timeout"
        );
        assert_eq!(failure_class("something else"), "other");
    }

    #[test]
    fn lost_deployments_leave_the_states_and_count_as_asked() {
        let mut t = JobTally::default();
        let d = |id, state| JobEvent::Deployment {
            id,
            state,
            reason: String::new(),
        };
        t.event(3, Duration::from_secs(1), &d(1, DeployState::Preparing));
        t.event(3, Duration::from_secs(4), &d(1, DeployState::Running));
        t.event(3, Duration::from_secs(9), &d(1, DeployState::Completed));
        t.event(3, Duration::from_secs(10), &d(2, DeployState::Preparing));
        t.node_down(3, None);
        let s = t.summary(std::iter::empty());
        assert_eq!((s.deployments_asked, s.deployments_lost), (2, 1));
        assert_eq!(s.by_state.get("completed"), Some(&1));
        assert_eq!((s.running_reached, s.to_running_median_s), (1, 3.0));
        assert_eq!(s.completed_share, 0.5);
    }
}
