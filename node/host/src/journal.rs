//! The node's jobs in its local store: every allocation and deployment and each of their
//! transitions, written as they happen, and read back after a restart.

use flotilla_core::capacity::AllocationId;
use flotilla_core::deployment::DeployState;
use flotilla_core::job::JobSpec;
use flotilla_core::jobs::JobEvent;
use flotilla_core::provider::AllocState;
use flotilla_core::{Node, PeerId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::driver::JobRecorder;
use crate::store::{Kind, NewRecord, Store};

/// What an allocation record keeps beyond its state: enough to resume it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    /// The requester's deployment number.
    pub deployment: u64,
    /// The job, TOML.
    pub spec: String,
    /// The host ports it holds.
    pub ports: Vec<u16>,
}

/// What a deployment record keeps beyond its state: enough to resume it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// The job, TOML.
    pub spec: String,
    /// The chosen providers, once commits were sent.
    #[serde(default)]
    pub workers: Vec<String>,
}

/// The store id of allocation `id`.
pub fn allocation_key(id: AllocationId) -> String {
    format!("a{}", id.0)
}

/// The store id of deployment `id`.
pub fn deployment_key(id: u64) -> String {
    format!("d{id}")
}

/// Writes job events to the store. A failed write is logged, never fatal: the node keeps
/// running its jobs.
#[derive(Debug)]
pub struct Journal {
    store: Store,
}

impl Journal {
    /// A journal writing to `store`.
    pub fn new(store: Store) -> Self {
        Journal { store }
    }

    /// The store.
    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }
}

impl Journal {
    /// Inserts the record on its first state (`first`), with the `spec` and `peer` it keeps,
    /// or logs the transition to `state`.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        kind: Kind,
        key: &str,
        first: bool,
        peer: Option<&str>,
        spec: impl FnOnce() -> String,
        state: &str,
        reason: &str,
        at_us: u64,
    ) -> Result<(), crate::store::StoreError> {
        if first {
            let spec = spec();
            self.store.insert(NewRecord {
                kind,
                id: key,
                peer,
                spec: &spec,
                state,
                detail: reason,
                at_us,
            })
        } else {
            self.store
                .transition(kind, key, state, reason, at_us)
                .map(|_| ())
        }
    }
}

impl JobRecorder for Journal {
    fn record(&mut self, node: &Node, now: Timestamp, event: &JobEvent) {
        let at_us = now.as_micros();
        let result = match event {
            JobEvent::Allocation {
                id,
                requester,
                deployment,
                state,
                reason,
            } => {
                let spec = || {
                    let jobs = node.jobs();
                    let record = AllocationRecord {
                        deployment: *deployment,
                        spec: jobs
                            .allocation_spec(*id)
                            .and_then(|s| toml::to_string(s).ok())
                            .unwrap_or_default(),
                        ports: jobs
                            .allocations()
                            .get(*id)
                            .map(|a| a.ports.clone())
                            .unwrap_or_default(),
                    };
                    serde_json::to_string(&record).unwrap_or_default()
                };
                let peer = requester.to_string();
                // An allocation's first event is its acceptance (pending).
                let first = *state == AllocState::Pending;
                let key = allocation_key(*id);
                self.write(
                    Kind::Allocation,
                    &key,
                    first,
                    Some(&peer),
                    spec,
                    state.name(),
                    reason,
                    at_us,
                )
            }
            JobEvent::Deployment { id, state, reason } => {
                let record = || {
                    let record = DeploymentRecord {
                        spec: node
                            .jobs()
                            .deployment_spec(*id)
                            .and_then(|s| toml::to_string(s).ok())
                            .unwrap_or_default(),
                        workers: node
                            .jobs()
                            .deployment(*id)
                            .map(|v| v.workers.iter().map(|w| w.0.to_string()).collect())
                            .unwrap_or_default(),
                    };
                    serde_json::to_string(&record).unwrap_or_default()
                };
                // A deployment's first event is its request for bids (preparing).
                let first = *state == DeployState::Preparing;
                let key = deployment_key(*id);
                let written = self.write(
                    Kind::Deployment,
                    &key,
                    first,
                    None,
                    record,
                    state.name(),
                    reason,
                    at_us,
                );
                // Commits name the workers: keep them to resume after a restart. The
                // transition is written first, so a crash between leaves the deployment
                // committing without workers (restored as failed, nothing started).
                if written.is_ok() && *state == DeployState::Committing {
                    self.store.set_spec(Kind::Deployment, &key, &record())
                } else {
                    written
                }
            }
            JobEvent::Log { .. } | JobEvent::Refused { .. } => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record a job event in the local store");
        }
    }
}

/// A live allocation found in the store at start-up.
#[derive(Clone, Debug)]
pub struct StoredAllocation {
    /// Its id.
    pub id: AllocationId,
    /// Its state when the node stopped (`pending` or `running`).
    pub state: String,
    /// The requester.
    pub requester: PeerId,
    /// What it needs to resume.
    pub record: AllocationRecord,
    /// The job.
    pub spec: JobSpec,
    /// When it was created (microseconds since the Unix epoch).
    pub created_at_us: u64,
}

/// Live allocations read from the store (each, or why it cannot be read), and the highest
/// allocation and deployment numbers ever used.
pub type StoredJobs = (Vec<Result<StoredAllocation, String>>, u64, u64);

/// The allocations the store holds as pending or running, and the highest allocation and
/// deployment numbers it ever used. Records that cannot be read are returned as errors.
pub fn live_allocations(store: &Store) -> Result<StoredJobs, crate::store::StoreError> {
    let number = |id: &str| id[1..].parse::<u64>().unwrap_or(0);
    let max_alloc = store
        .list(Kind::Allocation, None)?
        .iter()
        .map(|r| number(&r.id))
        .max()
        .unwrap_or(0);
    let max_deployment = store
        .list(Kind::Deployment, None)?
        .iter()
        .map(|r| number(&r.id))
        .max()
        .unwrap_or(0);
    let live = store
        .list(Kind::Allocation, Some(&["pending", "running"]))?
        .into_iter()
        .map(|r| {
            let bad = |why: String| format!("allocation {} in the store: {why}", r.id);
            let record: AllocationRecord =
                serde_json::from_str(&r.spec).map_err(|e| bad(e.to_string()))?;
            let spec = JobSpec::from_toml_str(&record.spec, std::path::Path::new("stored job"))
                .map_err(|e| bad(e.to_string()))?;
            let requester = r
                .peer
                .as_deref()
                .unwrap_or_default()
                .parse::<PeerId>()
                .map_err(|e| bad(e.to_string()))?;
            Ok(StoredAllocation {
                id: AllocationId(number(&r.id)),
                state: r.state.clone(),
                requester,
                record,
                spec,
                created_at_us: r.created_at_us,
            })
        })
        .collect();
    Ok((live, max_alloc, max_deployment))
}

/// A live deployment of this node found in the store at start-up.
#[derive(Clone, Debug)]
pub struct StoredDeployment {
    /// Its number.
    pub id: u64,
    /// Its state when the node stopped.
    pub state: DeployState,
    /// The job.
    pub spec: JobSpec,
    /// The chosen providers.
    pub workers: Vec<PeerId>,
    /// When it was created and when it entered its state (microseconds since the Unix
    /// epoch).
    pub created_at_us: u64,
    /// When it entered its state.
    pub since_us: u64,
}

/// A stored deployment, or why it cannot be read.
pub type StoredDeploymentRead = Result<StoredDeployment, String>;

/// States of a deployment that is not over.
pub const LIVE_DEPLOYMENT_STATES: [&str; 5] = [
    "preparing",
    "committing",
    "provisioning",
    "running",
    "shutting_down",
];

/// The deployments the store holds as not over (each with its number, or why it cannot be
/// read).
pub fn live_deployments(
    store: &Store,
) -> Result<Vec<(u64, StoredDeploymentRead)>, crate::store::StoreError> {
    Ok(store
        .list(Kind::Deployment, Some(&LIVE_DEPLOYMENT_STATES))?
        .into_iter()
        .map(|r| {
            let id = r.id[1..].parse::<u64>().unwrap_or(0);
            let bad = |why: String| format!("deployment {} in the store: {why}", r.id);
            let read = || {
                let record: DeploymentRecord =
                    serde_json::from_str(&r.spec).map_err(|e| bad(e.to_string()))?;
                let spec = JobSpec::from_toml_str(&record.spec, std::path::Path::new("stored job"))
                    .map_err(|e| bad(e.to_string()))?;
                let workers = record
                    .workers
                    .iter()
                    .map(|w| {
                        w.parse::<PeerId>()
                            .map_err(|e| bad(format!("worker {w}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let state = match r.state.as_str() {
                    "preparing" => DeployState::Preparing,
                    "committing" => DeployState::Committing,
                    "provisioning" => DeployState::Provisioning,
                    "running" => DeployState::Running,
                    "shutting_down" => DeployState::ShuttingDown,
                    other => return Err(bad(format!("unknown state {other}"))),
                };
                Ok(StoredDeployment {
                    id,
                    state,
                    spec,
                    workers,
                    created_at_us: r.created_at_us,
                    since_us: r.updated_at_us,
                })
            };
            (id, read())
        })
        .collect())
}
