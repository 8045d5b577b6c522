//! The provider's capacity and allocations, as the API and CLI show them, and changes to
//! the capacity it offers while it runs.

use flotilla_core::Node;
use flotilla_core::capacity::{Capacity, LedgerError};
use flotilla_core::jobs::{JobStats, JobsError};
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

/// A change to the capacity a running provider offers, applied to its live ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnboardChange {
    /// Offer this much more (up to what is registered).
    Onboard(Capacity),
    /// Offer this much less (never below what allocations hold).
    Offboard(Capacity),
    /// Offer exactly this.
    Set(Capacity),
}

impl OnboardChange {
    /// Applies the change to `node`'s ledger: all of it, or nothing and why (naming the
    /// allocations that hold what is in use when that is the obstacle).
    pub fn apply(self, node: &mut Node) -> Result<(), String> {
        let ledger = node.jobs().allocations().ledger();
        let (onboarded, registered) = (ledger.onboarded(), ledger.registered());
        let in_use = ledger
            .allocated()
            .checked_add(ledger.locked())
            .unwrap_or(Capacity::ZERO);
        let (less, more) = match self {
            OnboardChange::Onboard(c) => (Capacity::ZERO, c),
            OnboardChange::Offboard(c) => (c, Capacity::ZERO),
            OnboardChange::Set(target) => {
                if let Some(short) = in_use.shortfall(&target) {
                    return Err(format!(
                        "cannot offer only {target}: allocations hold {in_use} ({}: {} in use, \
                         {} asked){}; wait for them to end or offer at least what they hold",
                        short.field,
                        short.asked,
                        short.available,
                        held_by(node)
                    ));
                }
                (
                    saturating_sub(onboarded, target),
                    saturating_sub(target, onboarded),
                )
            }
        };
        if let Err(e) = node.jobs_mut().offboard(less) {
            let held = match e {
                JobsError::Ledger(LedgerError::InUse { .. }) => held_by(node),
                _ => String::new(),
            };
            return Err(format!("{e}{held}"));
        }
        if let Err(e) = node.jobs_mut().onboard(more) {
            // Put back what was withdrawn: the change is all or nothing.
            let _ = node.jobs_mut().onboard(less);
            return Err(match e {
                JobsError::Ledger(LedgerError::BeyondRegistered(_)) => format!(
                    "{e} (the node registered {registered} when it started; a new \
                     measurement counts after a restart)"
                ),
                _ => e.to_string(),
            });
        }
        Ok(())
    }
}

/// `a - b` field by field, stopping at zero.
fn saturating_sub(a: Capacity, b: Capacity) -> Capacity {
    Capacity {
        millicores: a.millicores.saturating_sub(b.millicores),
        memory_mb: a.memory_mb.saturating_sub(b.memory_mb),
        disk_gb: a.disk_gb.saturating_sub(b.disk_gb),
        gpus: a.gpus.saturating_sub(b.gpus),
    }
}

/// `; held by allocation 3 (running, requester ..., millicores 500, ...), ...`, or nothing
/// when no allocation holds capacity.
fn held_by(node: &Node) -> String {
    let allocs = node.jobs().allocations();
    let held: Vec<String> = allocs
        .iter()
        .filter(|(id, _)| allocs.ledger().allocation(*id).is_some())
        .map(|(id, a)| {
            format!(
                "{id} ({}, requester {}, {})",
                a.state, a.requester, a.request
            )
        })
        .collect();
    if held.is_empty() {
        String::new()
    } else {
        format!("; held by {}", held.join(", "))
    }
}
