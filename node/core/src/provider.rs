//! A compute provider's allocations: what it accepted, where each stands, and what each
//! holds of the provider's capacity ([`Ledger`]) and host ports ([`PortAllocator`]).
//!
//! ```text
//!            accept                 start                finish(ok)
//!   (none) ─────────▶ Pending ─────────────▶ Running ─────────────▶ Completed
//!                       │  │                   │  │   finish(err)
//!                       │  │ expire            │  └──────────────▶ Failed
//!                       │  └──────────▶ Failed │
//!                       │ stop                 │ stop
//!                       └─────────────────▶ Stopped ◀┘
//! ```
//!
//! Accepting locks the request's capacity until a commit deadline and takes its ports, all
//! or nothing: a refusal leaves the ledger and the ports as they were. Starting moves the
//! lock to allocated. Every terminal state releases both. A pending allocation whose
//! deadline passes (the service provider never confirmed) fails with reason `expired`.
//! Terminal allocations are kept for their history until [`Allocations::forget`].
//!
//! The capacity equation of the ledger (allocated + locked + available = onboarded) and the
//! agreement between allocations, ledger and ports are checked by
//! [`Allocations::check_invariant`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capacity::{AllocationId, Capacity, Ledger, LedgerError};
use crate::identity::PeerId;
use crate::ports::{PortAllocator, PortsError};
use crate::time::Timestamp;

/// Where an allocation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocState {
    /// Accepted: capacity locked and ports taken until the commit deadline.
    Pending,
    /// Its job runs: capacity allocated.
    Running,
    /// Stopped on request (shutdown by either side).
    Stopped,
    /// Ended in failure (the job failed, or the commit deadline passed).
    Failed,
    /// Its job ran to completion.
    Completed,
}

impl AllocState {
    /// The state's name, as stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            AllocState::Pending => "pending",
            AllocState::Running => "running",
            AllocState::Stopped => "stopped",
            AllocState::Failed => "failed",
            AllocState::Completed => "completed",
        }
    }

    /// True for the states that hold nothing any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            AllocState::Stopped | AllocState::Failed | AllocState::Completed
        )
    }
}

impl fmt::Display for AllocState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alloc {
    /// The service provider that asked for it.
    pub requester: PeerId,
    /// The capacity it holds while pending or running.
    pub request: Capacity,
    /// The host ports it holds while pending or running.
    pub ports: Vec<u16>,
    /// Where it stands.
    pub state: AllocState,
    /// When it entered that state.
    pub since: Timestamp,
    /// The commit deadline of a pending allocation.
    pub deadline: Timestamp,
    /// Why it ended, for terminal states.
    pub reason: Option<String>,
}

/// Why an allocation operation was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The capacity is not there (or the request is malformed).
    #[error(transparent)]
    Capacity(#[from] LedgerError),
    /// The ports are not there.
    #[error(transparent)]
    Ports(#[from] PortsError),
    /// An id already used (live or kept for its history).
    #[error("{0} exists already; use a new id")]
    Duplicate(AllocationId),
    /// An id never accepted (or forgotten).
    #[error("{0} is unknown")]
    Unknown(AllocationId),
    /// A move the state machine does not allow.
    #[error("{id} is {from}; it cannot become {to}")]
    Transition {
        /// The allocation.
        id: AllocationId,
        /// Its state.
        from: AllocState,
        /// The state asked for.
        to: AllocState,
    },
}

/// A compute provider's allocations; see the module documentation.
#[derive(Debug, Clone)]
pub struct Allocations {
    ledger: Ledger,
    ports: PortAllocator,
    allocs: BTreeMap<AllocationId, Alloc>,
    commit_timeout: Duration,
}

impl Allocations {
    /// Allocations over `ledger` and `ports`; a pending allocation fails `commit_timeout`
    /// after it was accepted unless started.
    pub fn new(ledger: Ledger, ports: PortAllocator, commit_timeout: Duration) -> Self {
        Allocations {
            ledger,
            ports,
            allocs: BTreeMap::new(),
            commit_timeout,
        }
    }

    /// The capacity ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The capacity ledger, to onboard or offboard (which it refuses below what is in use).
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// The port allocator.
    pub fn ports(&self) -> &PortAllocator {
        &self.ports
    }

    /// Allocation `id`, if known.
    pub fn get(&self, id: AllocationId) -> Option<&Alloc> {
        self.allocs.get(&id)
    }

    /// Every known allocation in id order.
    pub fn iter(&self) -> impl Iterator<Item = (AllocationId, &Alloc)> {
        self.allocs.iter().map(|(id, a)| (*id, a))
    }

    /// The earliest commit deadline of a pending allocation.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.allocs
            .values()
            .filter(|a| a.state == AllocState::Pending)
            .map(|a| a.deadline)
            .min()
    }

    /// Accepts allocation `id` for `requester`: locks `request` and takes `ports` host
    /// ports, all or nothing. Returns the ports.
    pub fn accept(
        &mut self,
        now: Timestamp,
        id: AllocationId,
        requester: PeerId,
        request: Capacity,
        ports: usize,
    ) -> Result<&[u16], AllocError> {
        if self.allocs.contains_key(&id) {
            return Err(AllocError::Duplicate(id));
        }
        let deadline = now + self.commit_timeout;
        self.ledger.lock(id, request, deadline)?;
        let taken = if ports == 0 {
            Vec::new()
        } else {
            match self.ports.allocate(id, ports) {
                Ok(p) => p,
                Err(e) => {
                    // All or nothing: give the capacity back.
                    self.ledger.release(id)?;
                    return Err(e.into());
                }
            }
        };
        let alloc = self.allocs.entry(id).or_insert(Alloc {
            requester,
            request,
            ports: taken,
            state: AllocState::Pending,
            since: now,
            deadline,
            reason: None,
        });
        Ok(&alloc.ports)
    }

    /// Restores a running allocation after a restart: `request` allocated and exactly
    /// `ports` taken, all or nothing.
    pub fn restore_running(
        &mut self,
        now: Timestamp,
        id: AllocationId,
        requester: PeerId,
        request: Capacity,
        ports: &[u16],
    ) -> Result<(), AllocError> {
        if self.allocs.contains_key(&id) {
            return Err(AllocError::Duplicate(id));
        }
        self.ledger.lock(id, request, now)?;
        if !ports.is_empty()
            && let Err(e) = self.ports.take(id, ports)
        {
            self.ledger.release(id)?;
            return Err(e.into());
        }
        self.ledger.start(id)?;
        self.allocs.insert(
            id,
            Alloc {
                requester,
                request,
                ports: ports.to_vec(),
                state: AllocState::Running,
                since: now,
                deadline: now,
                reason: None,
            },
        );
        Ok(())
    }

    /// A pending allocation's job started.
    pub fn start(&mut self, now: Timestamp, id: AllocationId) -> Result<(), AllocError> {
        self.expect(id, AllocState::Pending, AllocState::Running)?;
        self.ledger.start(id)?;
        self.set(id, now, AllocState::Running, None);
        Ok(())
    }

    /// A running allocation's job ended: completed if `outcome` is `Ok`, failed with the
    /// error otherwise. Releases its capacity and ports.
    pub fn finish(
        &mut self,
        now: Timestamp,
        id: AllocationId,
        outcome: Result<(), String>,
    ) -> Result<(), AllocError> {
        let to = if outcome.is_ok() {
            AllocState::Completed
        } else {
            AllocState::Failed
        };
        self.expect(id, AllocState::Running, to)?;
        self.end(now, id, to, outcome.err());
        Ok(())
    }

    /// Stops a pending or running allocation (a shutdown by either side, or the node's),
    /// releasing its capacity and ports.
    pub fn stop(
        &mut self,
        now: Timestamp,
        id: AllocationId,
        reason: &str,
    ) -> Result<(), AllocError> {
        let a = self.allocs.get(&id).ok_or(AllocError::Unknown(id))?;
        if a.state.is_terminal() {
            return Err(AllocError::Transition {
                id,
                from: a.state,
                to: AllocState::Stopped,
            });
        }
        self.end(now, id, AllocState::Stopped, Some(reason.to_string()));
        Ok(())
    }

    /// Fails every pending allocation whose commit deadline is at or before `now`; returns
    /// their ids in order.
    pub fn expire(&mut self, now: Timestamp) -> Vec<AllocationId> {
        let due: Vec<AllocationId> = self
            .allocs
            .iter()
            .filter(|(_, a)| a.state == AllocState::Pending && a.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            self.end(now, *id, AllocState::Failed, Some("expired".into()));
        }
        due
    }

    /// Drops a terminal allocation's record. Returns it, or an error if it is live.
    pub fn forget(&mut self, id: AllocationId) -> Result<Alloc, AllocError> {
        let a = self.allocs.get(&id).ok_or(AllocError::Unknown(id))?;
        if !a.state.is_terminal() {
            return Err(AllocError::Transition {
                id,
                from: a.state,
                to: AllocState::Stopped,
            });
        }
        self.allocs.remove(&id).ok_or(AllocError::Unknown(id))
    }

    /// Checks the ledger's and the ports' own invariants, and that exactly the live
    /// allocations hold capacity (locked while pending, allocated while running) and
    /// their ports.
    pub fn check_invariant(&self) -> Result<(), String> {
        self.ledger.check_invariant()?;
        self.ports.check_invariant()?;
        for (id, a) in &self.allocs {
            let held = self.ledger.allocation(*id);
            let ports = self.ports.ports_of(*id).unwrap_or(&[]);
            match a.state {
                AllocState::Pending | AllocState::Running => {
                    let Some(h) = held else {
                        return Err(format!("{id} is {} but holds no capacity", a.state));
                    };
                    let running = matches!(h.state, crate::capacity::AllocationState::Running);
                    if h.request != a.request || running != (a.state == AllocState::Running) {
                        return Err(format!("{id} is {} but the ledger says {h:?}", a.state));
                    }
                    if ports != a.ports.as_slice() {
                        return Err(format!(
                            "{id} holds ports {ports:?}, expected {:?}",
                            a.ports
                        ));
                    }
                }
                _ => {
                    if held.is_some() || !ports.is_empty() {
                        return Err(format!(
                            "{id} is {} but still holds capacity or ports",
                            a.state
                        ));
                    }
                }
            }
        }
        for (id, _) in self.ledger.allocations() {
            if self.allocs.get(&id).is_none_or(|a| a.state.is_terminal()) {
                return Err(format!(
                    "the ledger holds {id}, which no live allocation owns"
                ));
            }
        }
        Ok(())
    }

    fn expect(&self, id: AllocationId, from: AllocState, to: AllocState) -> Result<(), AllocError> {
        let a = self.allocs.get(&id).ok_or(AllocError::Unknown(id))?;
        if a.state != from {
            return Err(AllocError::Transition {
                id,
                from: a.state,
                to,
            });
        }
        Ok(())
    }

    fn set(&mut self, id: AllocationId, now: Timestamp, state: AllocState, reason: Option<String>) {
        if let Some(a) = self.allocs.get_mut(&id) {
            a.state = state;
            a.since = now;
            a.reason = reason;
        }
    }

    /// Moves a live allocation to terminal `to`, releasing what it holds.
    fn end(&mut self, now: Timestamp, id: AllocationId, to: AllocState, reason: Option<String>) {
        // Live allocations hold their lock and ports (the invariant); releasing cannot fail.
        let _ = self.ledger.release(id);
        if self.ports.ports_of(id).is_some() {
            let _ = self.ports.release(id);
        }
        if let Some(a) = self.allocs.get_mut(&id) {
            a.ports.clear();
        }
        self.set(id, now, to, reason);
    }
}

#[cfg(test)]
mod tests;
