//! The provider's capacity and allocations, as the API and CLI show them.

use flotilla_core::Node;
use flotilla_core::capacity::Capacity;
use flotilla_core::jobs::JobStats;
use serde::{Deserialize, Serialize};

/// A provider's capacity and allocations, as the API shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesView {
    /// What the machine has.
    pub registered: Capacity,
    /// What the operator offers.
    pub onboarded: Capacity,
    /// Held by running jobs.
    pub allocated: Capacity,
    /// Held by committed jobs not yet started.
    pub locked: Capacity,
    /// Onboarded minus allocated minus locked.
    pub available: Capacity,
    /// Host ports free.
    pub ports_free: usize,
    /// Allocations, live and recent.
    pub allocations: Vec<AllocationView>,
    /// Counters.
    pub stats: JobStats,
}

/// One allocation, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationView {
    /// Its id.
    pub id: u64,
    /// The requester.
    pub requester: String,
    /// Its state.
    pub state: String,
    /// What it holds (while live).
    pub request: Capacity,
    /// Its host ports.
    pub ports: Vec<u16>,
    /// Why it ended.
    pub reason: Option<String>,
}

impl ResourcesView {
    /// The view of `node`'s provider side.
    pub fn of(node: &Node) -> Self {
        let jobs = node.jobs();
        let allocs = jobs.allocations();
        let ledger = allocs.ledger();
        ResourcesView {
            registered: ledger.registered(),
            onboarded: ledger.onboarded(),
            allocated: ledger.allocated(),
            locked: ledger.locked(),
            available: ledger.available(),
            ports_free: allocs.ports().free(),
            allocations: allocs
                .iter()
                .map(|(id, a)| AllocationView {
                    id: id.0,
                    requester: a.requester.to_string(),
                    state: a.state.name().to_string(),
                    request: a.request,
                    ports: a.ports.clone(),
                    reason: a.reason.clone(),
                })
                .collect(),
            stats: jobs.stats(),
        }
    }
}
