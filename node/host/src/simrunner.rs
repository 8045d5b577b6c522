//! The simulated executor behind the driver: a task that runs a seeded
//! [`SimExecutor`] on the driver's [`Clock`], so the turmoil simulator's hosts run jobs
//! through the same driver code as the production node.

use flotilla_core::jobs::ExecCommand;
use flotilla_core::simexec::{ExecEvent, SimExecutor};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::driver::JobRunner;

/// Commands waiting for the executor's task at most (the node starts at most one job per
/// allocation, and allocations are bounded by capacity and its start queue).
pub const COMMANDS_MAX: usize = 1024;
/// Events waiting for the driver at most.
pub const EVENTS_MAX: usize = 1024;

/// Hands commands to the simulated executor's task.
#[derive(Debug)]
pub struct SimRunner {
    commands: mpsc::Sender<ExecCommand>,
}

impl SimRunner {
    /// Spawns the task running `exec` on `clock`; returns the runner for the driver and
    /// the receiver of the executor's events.
    pub fn spawn<C>(exec: SimExecutor, clock: C) -> (Self, mpsc::Receiver<ExecEvent>)
    where
        C: Clock + Send + Sync + 'static,
    {
        let (commands, mut rx) = mpsc::channel(COMMANDS_MAX);
        let (events, out) = mpsc::channel(EVENTS_MAX);
        tokio::spawn(async move {
            let mut exec = exec;
            loop {
                let due = exec.poll_timeout();
                tokio::select! {
                    biased;
                    cmd = rx.recv() => {
                        let Some(cmd) = cmd else { break };
                        let now = clock.now();
                        let refused = match cmd {
                            ExecCommand::Start { id, limit, .. } => {
                                exec.start(now, id, limit).err().map(|e| (id, e))
                            }
                            ExecCommand::Stop { id } => exec.stop(now, id).err().map(|e| (id, e)),
                        };
                        if let Some((id, e)) = refused {
                            tracing::debug!(allocation = id.0, error = %e, "simulated executor refused");
                        }
                    }
                    () = sleep(&clock, due) => {
                        let now = clock.now().max(due.unwrap_or_default());
                        exec.handle_timeout(now);
                    }
                }
                while let Some(e) = exec.poll_event() {
                    if events.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        (SimRunner { commands }, out)
    }
}

impl JobRunner for SimRunner {
    fn command(&mut self, cmd: ExecCommand) {
        if let Err(e) = self.commands.try_send(cmd) {
            tracing::warn!(error = %e, "simulated executor queue full; command dropped");
        }
    }
}

async fn sleep<C: Clock>(clock: &C, due: Option<flotilla_core::Timestamp>) {
    match due {
        Some(t) => clock.sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flotilla_core::SeedTree;
    use flotilla_core::capacity::AllocationId;
    use flotilla_core::job::JobSpec;
    use flotilla_core::simexec::{Outcome, SimExecConfig};

    use super::*;
    use crate::clock::TokioClock;

    fn start(id: u64) -> ExecCommand {
        let text = "image = \"x\"\nduration_s = 60\n[resources]\ncores = 1\nmemory_mb = 8\n";
        ExecCommand::Start {
            id: AllocationId(id),
            requester: flotilla_core::PeerId::from_public_key([1; 32]),
            deployment: 1,
            spec: Box::new(JobSpec::from_toml_str(text, std::path::Path::new("j.toml")).unwrap()),
            ports: Vec::new(),
            limit: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn jobs_run_on_the_clock_and_stop_on_command() {
        let config = SimExecConfig {
            start_delay: (Duration::from_millis(10), Duration::from_millis(20)),
            run_time: (Duration::from_millis(100), Duration::from_millis(200)),
            failure_probability: 0.0,
            log_lines: 2,
        };
        let exec = SimExecutor::new(config, SeedTree::new(3)).unwrap();
        let (mut runner, mut events) = SimRunner::spawn(
            exec,
            TokioClock::anchored_at(flotilla_core::Timestamp::ZERO),
        );
        runner.command(start(1));
        let mut seen = Vec::new();
        while let Some(e) = events.recv().await {
            let end = matches!(e, ExecEvent::Exited { .. });
            seen.push(e);
            if end {
                break;
            }
        }
        assert!(matches!(seen[0], ExecEvent::Started { .. }), "{seen:?}");
        assert_eq!(
            seen.iter()
                .filter(|e| matches!(e, ExecEvent::Log { .. }))
                .count(),
            2
        );
        assert!(matches!(
            seen.last(),
            Some(ExecEvent::Exited {
                outcome: Outcome::Completed,
                ..
            })
        ));
        // A long job stopped on command exits as stopped.
        let exec = SimExecutor::new(
            SimExecConfig {
                run_time: (Duration::from_secs(50), Duration::from_secs(50)),
                ..SimExecConfig::default()
            },
            SeedTree::new(4),
        )
        .unwrap();
        let (mut runner, mut events) = SimRunner::spawn(
            exec,
            TokioClock::anchored_at(flotilla_core::Timestamp::ZERO),
        );
        runner.command(start(2));
        assert!(matches!(
            events.recv().await,
            Some(ExecEvent::Started { .. })
        ));
        runner.command(ExecCommand::Stop {
            id: AllocationId(2),
        });
        let last = loop {
            match events.recv().await {
                Some(ExecEvent::Exited { outcome, .. }) => break outcome,
                Some(_) => {}
                None => panic!("no exit"),
            }
        };
        assert_eq!(last, Outcome::Stopped);
    }
}
