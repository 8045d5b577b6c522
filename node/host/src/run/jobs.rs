//! Jobs at start-up: the local store, onboarded capacity, the Docker executor, and the
//! allocations and deployments a previous run left live.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::{Node, Timestamp};

use crate::executor::docker::DockerExecutor;
use crate::executor::runner::{ContainerRunner, NODE_LABEL};
use crate::executor::{ALLOCATION_LABEL, Executor};
use crate::journal::{self, allocation_key, deployment_key};
use crate::store::{Kind, Store, StoreError};

/// What start-up found and did, for the log and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Allocations whose container was found running and followed again.
    pub reattached: Vec<u64>,
    /// Allocations marked failed (container gone, or never started).
    pub failed: Vec<u64>,
    /// Deployments of this node taken back (see `Node::restore_deployment`).
    pub deployments_restored: Vec<u64>,
    /// Deployments of this node marked failed (their records could not be read).
    pub deployments_failed: Vec<u64>,
}

/// How the node runs its jobs: containers (the runner and its events), or not at all and why.
pub type Runner = Result<
    (
        ContainerRunner<DockerExecutor>,
        tokio::sync::mpsc::Receiver<flotilla_core::simexec::ExecEvent>,
    ),
    String,
>;

/// Applies the store's onboarding to `core` (its registered capacity) before the node
/// exists.
pub fn registered_from_store(store: &Store, core: &mut flotilla_core::Config) {
    match store.onboarding() {
        Ok(Some(o)) => {
            let c = o.registered.capacity;
            core.resources.cores = u32::try_from(c.millicores.div_ceil(1000)).unwrap_or(u32::MAX);
            core.resources.memory_mb = c.memory_mb;
            core.resources.disk_gb = c.disk_gb;
            core.resources.gpus = u32::try_from(c.gpus).unwrap_or(u32::MAX);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the onboarded capacity"),
    }
}

/// Onboards what the store says, connects the executor, and recovers what a previous run
/// left live. Returns how the node runs its jobs, and what was recovered.
pub async fn prepare(
    node: &mut Node,
    store: &mut Store,
    now: Timestamp,
) -> Result<(Runner, Recovery), StoreError> {
    if let Some(o) = store.onboarding()? {
        match node.jobs_mut().onboard(o.onboarded) {
            Ok(()) => tracing::info!(onboarded = ?o.onboarded, "capacity onboarded"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot onboard the stored capacity; run `flotilla onboard` again")
            }
        }
    }
    let offers_docker = node
        .jobs()
        .config()
        .preferences
        .executors
        .contains("docker");
    let docker = if offers_docker {
        match DockerExecutor::connect().await {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::warn!(error = %e, "the docker executor is offered but unusable; jobs will fail until the daemon is reachable");
                None
            }
        }
    } else {
        None
    };
    let mut recovery = Recovery::default();
    let (live, max_alloc, max_deployment) = journal::live_allocations(store)?;
    node.jobs_mut().allocations_after(max_alloc);
    node.jobs_mut().deployments_after(max_deployment);
    let at_us = now.as_micros();
    let mut runner: Runner = match &docker {
        Some(d) => Ok(ContainerRunner::new(d.clone(), node.peer_id())),
        None if offers_docker => {
            Err("the Docker daemon was unreachable when the node started".to_string())
        }
        None => Err("this node offers no executor".to_string()),
    };
    for a in live {
        let a = match a {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(%why, "unreadable allocation record left as it is");
                continue;
            }
        };
        let key = allocation_key(a.id);
        let found = match (&docker, a.state.as_str()) {
            (Some(d), "running") => find_running(d, node, a.id.0).await,
            _ => None,
        };
        match found {
            Some(handle) => {
                let elapsed = Duration::from_micros(at_us.saturating_sub(a.created_at_us));
                let remaining = Duration::from_secs(a.spec.duration_s).saturating_sub(elapsed);
                let restored = node.jobs_mut().restore_running(
                    now,
                    a.id,
                    a.requester,
                    a.record.deployment,
                    a.spec.clone(),
                    &a.record.ports,
                );
                match (restored, &mut runner) {
                    (Ok(()), Ok((r, _))) => {
                        r.attach(a.id, handle, remaining);
                        recovery.reattached.push(a.id.0);
                        tracing::info!(
                            allocation = a.id.0,
                            "re-attached to a running job after a restart"
                        );
                    }
                    (Err(e), _) => {
                        let why = format!("could not be restored after a restart: {e}");
                        let _ = store.transition(Kind::Allocation, &key, "failed", &why, at_us);
                        recovery.failed.push(a.id.0);
                    }
                    (Ok(()), Err(_)) => {}
                }
            }
            None => {
                let why = if a.state == "running" {
                    "its container vanished while the node was down"
                } else {
                    "the node restarted before the job started"
                };
                store.transition(Kind::Allocation, &key, "failed", why, at_us)?;
                recovery.failed.push(a.id.0);
                tracing::warn!(
                    allocation = a.id.0,
                    why,
                    "allocation failed at start-up; its resources are free"
                );
            }
        }
    }
    for (n, d) in journal::live_deployments(store)? {
        match d {
            Ok(d) => {
                node.restore_deployment(
                    now,
                    d.id,
                    d.spec,
                    d.state,
                    Timestamp::from_micros(d.since_us),
                    Timestamp::from_micros(d.created_at_us),
                    &d.workers,
                );
                recovery.deployments_restored.push(n);
                tracing::info!(
                    deployment = n,
                    state = %d.state,
                    "deployment restored after a restart; confirming with its workers"
                );
            }
            Err(why) => {
                let why = format!("could not be restored after a restart: {why}");
                store.transition(Kind::Deployment, &deployment_key(n), "failed", &why, at_us)?;
                recovery.deployments_failed.push(n);
                tracing::warn!(deployment = n, %why, "deployment failed at start-up");
            }
        }
    }
    Ok((runner, recovery))
}

/// The running container of allocation `id` of this node, if there is one.
async fn find_running(
    docker: &DockerExecutor,
    node: &Node,
    id: u64,
) -> Option<crate::executor::Handle> {
    let me = node.peer_id().to_string();
    for h in docker.find(ALLOCATION_LABEL, &id.to_string()).await.ok()? {
        let Ok(state) = docker.inspect(&h).await else {
            continue;
        };
        if state.labels.get(NODE_LABEL) == Some(&me) {
            if state.running {
                return Some(h);
            }
            let _ = docker.remove(&h).await;
        }
    }
    None
}
