//! The resource manager in the production host: the machine's size read at start-up, the
//! manager shared by the swarm, the stream tasks and the API, and how refusals are
//! reported (metrics, and at most one warning per scope per minute).
//!
//! The accounting itself is the core's [`ResourceManager`]; this module only locks it.
//! Every lock is held for a handful of counter updates and never across an `await`.
//!
//! Submodules:
//! - [`views`]: JSON views of the limits and the scopes' usage for the API and the CLI.

pub mod views;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flotilla_core::rcmgr::{
    Allowlist, LimitExceeded, Limits, REFUSAL_LOG_INTERVAL, RcmgrError, RefusalLog, Resource,
    ResourceManager, ScopeKind, ScopeName,
};
use flotilla_core::{Direction, Timestamp};

use crate::clock::{Clock, TokioClock};
use crate::metrics::Metrics;

/// How often idle scopes are collected and pending refusal lines are logged.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);
/// Memory assumed when the machine's cannot be read.
pub const FALLBACK_MEMORY_BYTES: u64 = 1 << 30;
/// File-descriptor limit assumed when the process's cannot be read.
pub const FALLBACK_FDS: u64 = 1024;

/// The machine size the default limits scale with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// Bytes of memory: the machine's, or its cgroup's limit if lower.
    pub memory_bytes: u64,
    /// The process's soft limit of open file descriptors.
    pub fds: u64,
}

impl Machine {
    /// Reads the machine: its memory (`sysinfo`, the cgroup's limit if lower) and the soft
    /// `RLIMIT_NOFILE`, after raising that soft limit to the hard one where allowed. What
    /// cannot be read falls back to [`FALLBACK_MEMORY_BYTES`] and [`FALLBACK_FDS`], with a
    /// warning.
    pub fn probe() -> Machine {
        let memory_bytes = memory_bytes().unwrap_or_else(|| {
            tracing::warn!(
                assumed_bytes = FALLBACK_MEMORY_BYTES,
                "cannot read the machine's memory; limits assume the fallback"
            );
            FALLBACK_MEMORY_BYTES
        });
        let fds = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(soft) => soft,
            Err(e) => {
                tracing::debug!(error = %e, "cannot raise the file-descriptor limit");
                match rlimit::getrlimit(rlimit::Resource::NOFILE) {
                    Ok((soft, _)) => soft,
                    Err(e) => {
                        tracing::warn!(error = %e, assumed = FALLBACK_FDS, "cannot read the file-descriptor limit");
                        FALLBACK_FDS
                    }
                }
            }
        };
        Machine { memory_bytes, fds }
    }

    /// The default limits for this machine.
    pub fn default_limits(&self) -> Limits {
        Limits::for_machine(self.memory_bytes, self.fds)
    }
}

/// The machine's memory in bytes (`sysinfo`), or its cgroup's limit if lower; `None` when
/// it cannot be read.
pub fn memory_bytes() -> Option<u64> {
    let mut sys = sysinfo::System::new()
        .inspect_err(|e| tracing::debug!(error = %e, "cannot read system information"))
        .ok()?;
    sys.refresh_memory();
    let total = sys.total_memory();
    let bytes = match sys.cgroup_limits() {
        Some(cg) if cg.total_memory > 0 => total.min(cg.total_memory),
        _ => total,
    };
    (bytes > 0).then_some(bytes)
}

/// The kind of a scope, as metric labels and log lines name it. Peers, per-peer
/// sub-scopes, connections, streams and spans are named by kind only, so that neither the
/// metrics nor the log grow with the number of peers.
pub fn scope_kind(s: &ScopeName) -> &'static str {
    s.kind().map_or("span", ScopeKind::key)
}

/// The key refusals are aggregated by in the log: the scope kind, with the name of a
/// protocol or service.
fn log_key(s: &ScopeName) -> String {
    match s {
        ScopeName::Service(n) => format!("service {n}"),
        ScopeName::Protocol(n) => format!("protocol {n}"),
        other => scope_kind(other).to_string(),
    }
}

/// The `resource` label of a refused limit.
pub fn resource_label(r: Resource) -> &'static str {
    match r {
        Resource::Memory => "memory",
        Resource::Streams => "streams",
        Resource::Connections => "conns",
        Resource::FileDescriptors => "fds",
    }
}

#[derive(Debug)]
struct State {
    rm: ResourceManager,
    log: RefusalLog<String>,
    /// Refusals by scope kind, resource and direction (a few dozen keys at most).
    refusals: BTreeMap<(&'static str, &'static str, &'static str), u64>,
}

/// The node's resource manager, shared (cheap clones) by the swarm behaviour, the stream
/// tasks and the API.
#[derive(Clone, Debug)]
pub struct SharedRcmgr {
    state: Arc<Mutex<State>>,
    metrics: Metrics,
    clock: TokioClock,
    machine: Machine,
}

impl SharedRcmgr {
    /// A manager with `limits` and `allowlist` (the inbound gate's limits are
    /// `limits.inbound`), reporting refusals to `metrics`.
    pub fn new(limits: Limits, allowlist: Allowlist, machine: Machine, metrics: Metrics) -> Self {
        let inbound = limits.inbound;
        let mut rm = ResourceManager::new(limits);
        rm.set_gate_limits(inbound);
        rm.set_allowlist(allowlist);
        SharedRcmgr {
            state: Arc::new(Mutex::new(State {
                rm,
                log: RefusalLog::new(REFUSAL_LOG_INTERVAL),
                refusals: BTreeMap::new(),
            })),
            metrics,
            clock: TokioClock::system(),
            machine,
        }
    }

    /// The machine the limits were scaled to.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters (every call is
        // all-or-nothing), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current time, for the inbound gate and the refusal log.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Runs `f` on the manager under the lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut ResourceManager) -> R) -> R {
        f(&mut self.lock().rm)
    }

    /// Runs `f` on the manager; a refusal it returns is reported (metrics, log) as a
    /// refusal of something in direction `dir`.
    pub fn try_with<R>(
        &self,
        dir: Direction,
        f: impl FnOnce(&mut ResourceManager) -> Result<R, RcmgrError>,
    ) -> Result<R, RcmgrError> {
        let mut st = self.lock();
        let result = f(&mut st.rm);
        if let Err(e) = &result {
            self.report(&mut st, dir, e);
        }
        result
    }

    /// Counts a refusal and logs it, at most once per scope per minute.
    fn report(&self, st: &mut State, dir: Direction, e: &RcmgrError) {
        let (key, scope, resource) = match e {
            RcmgrError::Limit(LimitExceeded {
                chain, resource, ..
            }) => {
                let s = chain.last().unwrap_or(&ScopeName::System);
                (log_key(s), scope_kind(s), resource_label(*resource))
            }
            RcmgrError::Gate(g) => {
                let resource = match g {
                    flotilla_core::rcmgr::GateRefusal::SubnetCap { .. } => "conns",
                    flotilla_core::rcmgr::GateRefusal::Rate { .. } => "conn_rate",
                };
                ("inbound gate".to_string(), "gate", resource)
            }
            // Not a refusal: a bookkeeping error, logged where it happens.
            _ => return,
        };
        self.metrics.rcmgr_refused(scope, resource, dir.label());
        *st.refusals
            .entry((scope, resource, dir.label()))
            .or_insert(0) += 1;
        let now = self.clock.now();
        if let Some(line) = st.log.record(now, key, e.to_string()) {
            warn_line(&line);
        }
    }

    /// Collects idle scopes and subnets and logs refusals counted but not yet reported.
    /// The network loop calls it every [`HOUSEKEEPING_INTERVAL`].
    pub fn housekeeping(&self) {
        let now = self.clock.now();
        let mut st = self.lock();
        let dropped = st.rm.collect_garbage();
        for line in st.log.flush(now) {
            warn_line(&line);
        }
        st.log.collect_garbage(now);
        tracing::debug!(
            dropped,
            open = st.rm.open_scopes(),
            "resource manager housekeeping"
        );
    }

    /// Sets the usage and limit gauges from the manager's current state (before
    /// `/metrics` is rendered).
    pub fn export_metrics(&self) {
        let (usage, limits) = views::gauge_rows(&self.lock().rm);
        self.metrics.set_rcmgr_gauges(&usage, &limits);
    }

    /// The effective limits and the allowlist's size.
    pub fn limits_view(&self) -> views::LimitsView {
        views::LimitsView::new(self.machine, &self.lock().rm)
    }

    /// Usage against limits of the system, transient, allowlisted, protocol and service
    /// scopes, and the `top` peers.
    pub fn scopes_view(&self, top: usize) -> views::ScopesView {
        let st = self.lock();
        views::ScopesView::new(&st.rm, top, &st.refusals)
    }
}

fn warn_line(line: &flotilla_core::rcmgr::RefusalLine<String>) {
    tracing::warn!(
        scope = %line.scope,
        refusals = line.refusals,
        total = line.total,
        last = %line.reason,
        "resource limit refused {} time(s) since the last report",
        line.refusals
    );
}

#[cfg(test)]
mod tests;
