//! Runs the core's executor commands on an [`Executor`]: one task per job that starts its
//! container, forwards its log lines, waits for its exit (or a stop, or its duration limit),
//! removes it, and reports each step to the driver as an [`ExecEvent`].
//!
//! What a job's container gets besides its spec: the environment variable `FLOTILLA_PORTS`
//! (its host ports, comma-separated) when it has ports, and, when the runner has an artefact
//! root ([`ContainerRunner::with_artefacts`]), a writable directory at `/artefacts` whose
//! files the requester fetches afterwards (see [`artefacts`](super::artefacts)).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::PeerId;
use flotilla_core::capacity::AllocationId;
use flotilla_core::job::{JobSpec, Ports};
use flotilla_core::jobs::ExecCommand;
use flotilla_core::simexec::{ExecEvent, Outcome, Stream};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::driver::JobRunner;

use super::artefacts;
use super::{ALLOCATION_LABEL, BindMount, ExecSpec, Executor, Handle, LogStream, PortBinding};

/// Events waiting for the driver at most; job tasks wait when it is full.
pub const EVENTS_QUEUE_MAX: usize = 1024;
/// How long a stopped container has to exit before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the log reader may lag behind the exit before the exit is reported anyway.
pub const LOG_DRAIN_WAIT: Duration = Duration::from_secs(5);
/// The label naming the node that runs a container.
pub const NODE_LABEL: &str = "flotilla.node";
/// The label naming the requester of a container's job.
pub const REQUESTER_LABEL: &str = "flotilla.requester";
/// The label naming the requester's deployment number.
pub const DEPLOYMENT_LABEL: &str = "flotilla.deployment";

/// Runs jobs as containers of `E`.
#[derive(Debug)]
pub struct ContainerRunner<E> {
    executor: Arc<E>,
    node: PeerId,
    events: mpsc::Sender<ExecEvent>,
    stops: BTreeMap<AllocationId, oneshot::Sender<()>>,
    /// The absolute directory holding each allocation's artefact directory; `None`: jobs
    /// get no `/artefacts`.
    artefacts: Option<PathBuf>,
}

impl<E: Executor + 'static> ContainerRunner<E> {
    /// A runner for node `node`, and the receiver of its events (for the driver).
    pub fn new(executor: Arc<E>, node: PeerId) -> (Self, mpsc::Receiver<ExecEvent>) {
        let (events, rx) = mpsc::channel(EVENTS_QUEUE_MAX);
        (
            ContainerRunner {
                executor,
                node,
                events,
                stops: BTreeMap::new(),
                artefacts: None,
            },
            rx,
        )
    }

    /// Gives every job started from now on a writable `/artefacts`: the directory
    /// [`artefacts::dir_name`] under `root` (absolute: the Docker daemon resolves it), created
    /// before the container starts.
    pub fn with_artefacts(mut self, root: impl Into<PathBuf>) -> Self {
        self.artefacts = Some(root.into());
        self
    }

    /// The container name of allocation `id` on node `node`: the node's whole peer id makes
    /// it unique on a Docker daemon that several nodes share.
    pub fn container_name(node: &PeerId, id: AllocationId) -> String {
        format!("flotilla-{node}-a{}", id.0)
    }

    /// Follows a container that is already running (after a restart): its log lines from
    /// now on, its exit, its duration limit counted from `remaining`.
    pub fn attach(&mut self, id: AllocationId, handle: Handle, remaining: Duration) {
        let (stop, stopped) = oneshot::channel();
        self.stops.retain(|_, s| !s.is_closed());
        self.stops.insert(id, stop);
        let (executor, events) = (self.executor.clone(), self.events.clone());
        tokio::spawn(async move {
            let _ = events.send(ExecEvent::Started { id }).await;
            follow(&*executor, &events, id, handle, remaining, stopped).await;
        });
    }

    /// The [`ExecSpec`] of one worker of `spec` on this node.
    pub fn exec_spec(
        &self,
        id: AllocationId,
        requester: &PeerId,
        deployment: u64,
        spec: &JobSpec,
        ports: &[u16],
    ) -> ExecSpec {
        let mut e = ExecSpec::new(
            Self::container_name(&self.node, id),
            spec.image.clone(),
            spec.command.clone(),
        );
        e.env = spec.env.clone();
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            e.env.insert("FLOTILLA_PORTS".into(), list.join(","));
        }
        if spec.resources.millicores > 0 {
            e.cpu_nanos = Some(spec.resources.millicores * 1_000_000);
        }
        if spec.resources.memory_mb > 0 {
            e.memory_bytes = Some(spec.resources.memory_mb * 1024 * 1024);
        }
        e.ports = match &spec.ports {
            Ports::Map(container) => container
                .iter()
                .zip(ports)
                .map(|(c, h)| PortBinding {
                    host_port: *h,
                    container_port: *c,
                })
                .collect(),
            Ports::Host(_) => ports
                .iter()
                .map(|p| PortBinding {
                    host_port: *p,
                    container_port: *p,
                })
                .collect(),
        };
        e.labels.insert(ALLOCATION_LABEL.into(), id.0.to_string());
        e.labels.insert(NODE_LABEL.into(), self.node.to_string());
        e.labels
            .insert(REQUESTER_LABEL.into(), requester.to_string());
        e.labels
            .insert(DEPLOYMENT_LABEL.into(), deployment.to_string());
        if let Some(root) = &self.artefacts {
            e.mounts.push(BindMount {
                host: root.join(artefacts::dir_name(requester, deployment)),
                container: artefacts::CONTAINER_PATH.into(),
                read_only: false,
            });
        }
        e
    }
}

impl<E: Executor + std::fmt::Debug + 'static> JobRunner for ContainerRunner<E> {
    fn command(&mut self, cmd: ExecCommand) {
        match cmd {
            ExecCommand::Start {
                id,
                requester,
                deployment,
                spec,
                ports,
                limit,
            } => {
                let exec = self.exec_spec(id, &requester, deployment, &spec, &ports);
                let (stop, stopped) = oneshot::channel();
                self.stops.retain(|_, s| !s.is_closed());
                self.stops.insert(id, stop);
                let (executor, events) = (self.executor.clone(), self.events.clone());
                let dirs: Vec<PathBuf> = exec.mounts.iter().map(|m| m.host.clone()).collect();
                tokio::spawn(async move {
                    if let Err(reason) = make_dirs(dirs).await {
                        let _ = events.send(ExecEvent::Failed { id, reason }).await;
                        return;
                    }
                    let handle = match executor.create_and_start(&exec).await {
                        Ok(h) => h,
                        Err(e) => {
                            let reason = e.to_string();
                            let _ = events.send(ExecEvent::Failed { id, reason }).await;
                            return;
                        }
                    };
                    let _ = events.send(ExecEvent::Started { id }).await;
                    follow(&*executor, &events, id, handle, limit, stopped).await;
                });
            }
            ExecCommand::Stop { id } => {
                if let Some(stop) = self.stops.remove(&id) {
                    let _ = stop.send(());
                }
            }
        }
    }
}

/// Creates the host directories of a job's mounts, writable by anyone; why not otherwise.
async fn make_dirs(dirs: Vec<PathBuf>) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        for dir in dirs {
            artefacts::prepare(&dir).map_err(|e| {
                format!(
                    "cannot create the artefact directory {}: {e}; check that the provider's data directory is writable",
                    dir.display()
                )
            })?;
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("creating the artefact directory failed: {e}"))?
}

/// Forwards a started container's log lines, waits for its end (exit, stop or limit),
/// reports it and removes the container.
async fn follow<E: Executor>(
    executor: &E,
    events: &mpsc::Sender<ExecEvent>,
    id: AllocationId,
    handle: Handle,
    limit: Duration,
    stopped: oneshot::Receiver<()>,
) {
    let mut logs = executor.logs(&handle);
    let log_events = events.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(l)) = logs.next().await {
            let stream = match l.stream {
                LogStream::Stdout => Stream::Stdout,
                LogStream::Stderr => Stream::Stderr,
            };
            let event = ExecEvent::Log {
                id,
                stream,
                line: l.line,
            };
            if log_events.send(event).await.is_err() {
                break;
            }
        }
    });
    let end = tokio::select! {
        status = executor.wait(&handle) => match status {
            Ok(s) if s.success() => Ok(Outcome::Completed),
            Ok(s) => Ok(Outcome::Failed { code: i32::try_from(s.code).unwrap_or(i32::MIN) }),
            Err(e) => Err(e.to_string()),
        },
        Ok(()) = stopped => {
            let _ = executor.stop(&handle, STOP_GRACE).await;
            Ok(Outcome::Stopped)
        }
        () = tokio::time::sleep(limit) => {
            let _ = executor.stop(&handle, STOP_GRACE).await;
            Ok(Outcome::TimedOut)
        }
    };
    // Every line the container wrote goes out before its end.
    let _ = tokio::time::timeout(LOG_DRAIN_WAIT, reader).await;
    let event = match end {
        Ok(outcome) => ExecEvent::Exited { id, outcome },
        Err(reason) => ExecEvent::Failed { id, reason },
    };
    let _ = events.send(event).await;
    if let Err(e) = executor.remove(&handle).await {
        tracing::warn!(allocation = id.0, error = %e, "could not remove a job's container");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{ExecError, ExecState, ExitStatus, LogLine};
    use flotilla_core::{Keypair, SeedTree};
    use futures::stream::BoxStream;

    /// An engine that starts nothing.
    #[derive(Debug)]
    struct NoEngine;

    fn refused<T>() -> Result<T, ExecError> {
        Err(ExecError::NotFound("no engine in this test".into()))
    }

    impl Executor for NoEngine {
        async fn create_and_start(&self, _: &ExecSpec) -> Result<Handle, ExecError> {
            refused()
        }
        fn logs(&self, _: &Handle) -> BoxStream<'static, Result<LogLine, ExecError>> {
            futures::stream::empty().boxed()
        }
        async fn wait(&self, _: &Handle) -> Result<ExitStatus, ExecError> {
            refused()
        }
        async fn stop(&self, _: &Handle, _: Duration) -> Result<(), ExecError> {
            refused()
        }
        async fn remove(&self, _: &Handle) -> Result<(), ExecError> {
            refused()
        }
        async fn inspect(&self, _: &Handle) -> Result<ExecState, ExecError> {
            refused()
        }
        async fn find(&self, _: &str, _: &str) -> Result<Vec<Handle>, ExecError> {
            refused()
        }
    }

    fn peer(seed: u64) -> PeerId {
        Keypair::generate(&mut SeedTree::new(seed).rng()).peer_id()
    }

    fn spec() -> JobSpec {
        JobSpec::from_toml_str(
            "image = \"busybox\"\ncommand = [\"true\"]\nduration_s = 60\n\
             [resources]\ncores = 0.5\nmemory_mb = 64\n",
            std::path::Path::new("job.toml"),
        )
        .unwrap()
    }

    #[test]
    fn container_names_differ_between_nodes_sharing_a_daemon() {
        let (a, b) = (peer(1), peer(2));
        let id = AllocationId(4);
        let name = ContainerRunner::<NoEngine>::container_name(&a, id);
        assert_eq!(name, format!("flotilla-{a}-a4"));
        assert_ne!(name, ContainerRunner::<NoEngine>::container_name(&b, id));
        ExecSpec::new(name, "img", ["sh"]).validate().unwrap();
    }

    #[tokio::test]
    async fn each_job_gets_its_own_writable_artefact_directory() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let requester = peer(3);
        let (plain, _) = ContainerRunner::new(Arc::new(NoEngine), peer(1));
        let e = plain.exec_spec(AllocationId(1), &requester, 7, &spec(), &[]);
        assert!(e.mounts.is_empty(), "{e:?}");

        let (runner, mut events) = ContainerRunner::new(Arc::new(NoEngine), peer(1));
        let mut runner = runner.with_artefacts(root.path());
        let e = runner.exec_spec(AllocationId(1), &requester, 7, &spec(), &[]);
        let dir = root.path().join(format!("d7-{requester}"));
        assert_eq!(
            e.mounts,
            [BindMount {
                host: dir.clone(),
                container: "/artefacts".into(),
                read_only: false,
            }]
        );
        e.validate().unwrap();

        // Starting creates it, before the engine is asked (here it refuses).
        runner.command(ExecCommand::Start {
            id: AllocationId(1),
            requester,
            deployment: 7,
            spec: Box::new(spec()),
            ports: vec![],
            limit: Duration::from_secs(60),
        });
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&event, ExecEvent::Failed { reason, .. } if reason.contains("no engine")),
            "{event:?}"
        );
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
    }
}
