//! The simulated executor behind the driver: a task that runs a seeded
//! [`SimExecutor`] on the driver's [`Clock`], so the turmoil simulator's hosts run jobs
//! through the same driver code as the production node.

use flotilla_core::jobs::ExecCommand;
use flotilla_core::simexec::{ExecEvent, SimExecutor};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::driver::JobRunner;

/// Hands commands to the simulated executor's task.
#[derive(Debug)]
pub struct SimRunner {
    commands: mpsc::UnboundedSender<ExecCommand>,
}

impl SimRunner {
    /// Spawns the task running `exec` on `clock`; returns the runner for the driver and
    /// the receiver of the executor's events.
    pub fn spawn<C>(exec: SimExecutor, clock: C) -> (Self, mpsc::Receiver<ExecEvent>)
    where
        C: Clock + Send + Sync + 'static,
    {
        let (commands, mut rx) = mpsc::unbounded_channel();
        let (events, out) = mpsc::channel(1024);
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
        let _ = self.commands.send(cmd);
    }
}

async fn sleep<C: Clock>(clock: &C, due: Option<flotilla_core::Timestamp>) {
    match due {
        Some(t) => clock.sleep_until(t).await,
        None => std::future::pending().await,
    }
}
