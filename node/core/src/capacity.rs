//! The capacity ledger of one compute provider: what it has, what it offers, what is in use.
//!
//! Four quantities, each a [`Capacity`]:
//! - **registered**: measured at onboarding (cores, memory, disk, GPUs), with an optional CPU
//!   benchmark score; the most the machine can ever offer;
//! - **onboarded**: the share of it the operator offers to the network, changed by
//!   [`Ledger::onboard`] and [`Ledger::offboard`]; always fits in registered;
//! - **locked**: reserved for a committed deployment that has not started yet, per
//!   allocation, until an expiry [`Timestamp`];
//! - **allocated**: in use by running allocations.
//!
//! `available = onboarded - allocated - locked`. Every operation is all-or-nothing: on error
//! nothing changed. The invariant `allocated + locked + available == onboarded`, nothing
//! negative, holds after every operation and is checked by [`Ledger::check_invariant`].
//!
//! CPU is counted in **millicores** (1000 = one core) so that fractional requests such as
//! half a core are exact integers.
//!
//! ```
//! use flotilla_core::capacity::{AllocationId, Capacity, Ledger};
//! use flotilla_core::Timestamp;
//!
//! let machine = Capacity { millicores: 8000, memory_mb: 16384, disk_gb: 100, gpus: 0 };
//! let mut ledger = Ledger::new(machine, Some(1200));
//! ledger.onboard(Capacity { millicores: 4000, memory_mb: 8192, disk_gb: 50, gpus: 0 }).unwrap();
//!
//! let job = AllocationId(1);
//! let want = Capacity { millicores: 1500, memory_mb: 2048, disk_gb: 1, gpus: 0 };
//! ledger.lock(job, want, Timestamp::from_secs(60)).unwrap();
//! ledger.start(job).unwrap();
//! assert_eq!(ledger.available().millicores, 2500);
//! ledger.release(job).unwrap();
//! assert_eq!(ledger.available(), ledger.onboarded());
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// An amount of compute: CPU in millicores, memory, disk and GPUs. A field missing when
/// deserialising is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capacity {
    /// CPU in thousandths of a core (1500 = one and a half cores).
    pub millicores: u64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Disk in GiB.
    pub disk_gb: u64,
    /// Whole GPUs.
    pub gpus: u64,
}

impl Capacity {
    /// Nothing at all.
    pub const ZERO: Capacity = Capacity {
        millicores: 0,
        memory_mb: 0,
        disk_gb: 0,
        gpus: 0,
    };

    /// The fields as `(name, value)` pairs, in a fixed order used by every message.
    pub fn fields(&self) -> [(&'static str, u64); 4] {
        [
            ("millicores", self.millicores),
            ("memory_mb", self.memory_mb),
            ("disk_gb", self.disk_gb),
            ("gpus", self.gpus),
        ]
    }

    fn from_fields(v: [u64; 4]) -> Capacity {
        Capacity {
            millicores: v[0],
            memory_mb: v[1],
            disk_gb: v[2],
            gpus: v[3],
        }
    }

    fn zip(self, other: Capacity, f: impl Fn(u64, u64) -> Option<u64>) -> Option<Capacity> {
        let (a, b) = (self.fields(), other.fields());
        let mut out = [0; 4];
        for i in 0..4 {
            out[i] = f(a[i].1, b[i].1)?;
        }
        Some(Capacity::from_fields(out))
    }

    /// `self + other`, `None` if any field overflows.
    pub fn checked_add(self, other: Capacity) -> Option<Capacity> {
        self.zip(other, u64::checked_add)
    }

    /// `self - other`, `None` if any field would go negative.
    pub fn checked_sub(self, other: Capacity) -> Option<Capacity> {
        self.zip(other, u64::checked_sub)
    }

    /// Whether every field is zero.
    pub fn is_zero(&self) -> bool {
        *self == Capacity::ZERO
    }

    /// Whether every field of `self` is at most the same field of `other`.
    pub fn fits_in(&self, other: &Capacity) -> bool {
        self.shortfall(other).is_none()
    }

    /// The first field in which `self` (asked) exceeds `have`, if any.
    pub fn shortfall(&self, have: &Capacity) -> Option<Shortfall> {
        self.fields()
            .into_iter()
            .zip(have.fields())
            .find(|((_, asked), (_, available))| asked > available)
            .map(|((field, asked), (_, available))| Shortfall {
                field,
                asked,
                available,
            })
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "millicores {}, memory_mb {}, disk_gb {}, gpus {}",
            self.millicores, self.memory_mb, self.disk_gb, self.gpus
        )
    }
}

/// One field of a request that does not fit: `memory_mb: 2048 asked, 1024 available`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// The field's name (`millicores`, `memory_mb`, `disk_gb`, `gpus`).
    pub field: &'static str,
    /// The amount asked for.
    pub asked: u64,
    /// The amount there is.
    pub available: u64,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} asked, {} available",
            self.field, self.asked, self.available
        )
    }
}

/// Names one allocation in a [`Ledger`] (and its ports in a
/// [`PortAllocator`](crate::ports::PortAllocator)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AllocationId(pub u64);

impl fmt::Display for AllocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "allocation {}", self.0)
    }
}

/// Where an allocation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocationState {
    /// Reserved for a committed deployment, released by [`Ledger::expire`] at `expires_at`
    /// unless started before.
    Locked {
        /// When the reservation lapses.
        expires_at: Timestamp,
    },
    /// Running: counted as allocated until released.
    Running,
}

/// One allocation: what it holds and where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The capacity held.
    pub request: Capacity,
    /// Locked or running.
    pub state: AllocationState,
}

/// Why a ledger operation was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Onboarding would offer more than the machine has.
    #[error("cannot onboard beyond registered capacity: {0}; onboard less")]
    BeyondRegistered(Shortfall),
    /// Offboarding would leave less than is allocated and locked.
    #[error(
        "cannot offboard {requested}: {in_use} in use (allocated + locked); \
         {short}; wait for allocations to finish or offboard less"
    )]
    InUse {
        /// The amount asked to offboard.
        requested: Capacity,
        /// Allocated plus locked at the time.
        in_use: Capacity,
        /// The first field that would go below what is in use (`available` is what can be
        /// offboarded now).
        short: Shortfall,
    },
    /// Offboarding more than is onboarded.
    #[error("cannot offboard more than is onboarded: {0}")]
    BeyondOnboarded(Shortfall),
    /// A request for nothing.
    #[error("{0}: the request is empty; ask for at least one resource")]
    EmptyRequest(AllocationId),
    /// A lock for an id already in the ledger.
    #[error("{0} already exists; release it first or use a new id")]
    Duplicate(AllocationId),
    /// Not enough available capacity.
    #[error("{id}: not enough capacity: {short}")]
    Insufficient {
        /// The allocation asked for.
        id: AllocationId,
        /// The first field that is short.
        short: Shortfall,
    },
    /// An id the ledger does not hold.
    #[error("{0} is unknown (never locked, released or expired)")]
    Unknown(AllocationId),
    /// Starting an allocation that already runs.
    #[error("{0} is already running")]
    AlreadyRunning(AllocationId),
    /// A sum that does not fit in 64 bits.
    #[error("capacity overflow: {0}")]
    Overflow(&'static str),
}

/// The capacity ledger of one compute provider. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Ledger {
    registered: Capacity,
    benchmark_score: Option<u64>,
    onboarded: Capacity,
    allocations: BTreeMap<AllocationId, Allocation>,
    locked: Capacity,
    allocated: Capacity,
}

impl Ledger {
    /// A ledger for a machine measured as `registered` (with an optional CPU benchmark
    /// score), with nothing onboarded yet.
    pub fn new(registered: Capacity, benchmark_score: Option<u64>) -> Self {
        Ledger {
            registered,
            benchmark_score,
            onboarded: Capacity::ZERO,
            allocations: BTreeMap::new(),
            locked: Capacity::ZERO,
            allocated: Capacity::ZERO,
        }
    }

    /// What the machine has, as measured at onboarding.
    pub fn registered(&self) -> Capacity {
        self.registered
    }

    /// The CPU benchmark score measured at onboarding, if any.
    pub fn benchmark_score(&self) -> Option<u64> {
        self.benchmark_score
    }

    /// The share offered to the network.
    pub fn onboarded(&self) -> Capacity {
        self.onboarded
    }

    /// The sum held by running allocations.
    pub fn allocated(&self) -> Capacity {
        self.allocated
    }

    /// The sum held by locked allocations.
    pub fn locked(&self) -> Capacity {
        self.locked
    }

    /// `onboarded - allocated - locked`.
    pub fn available(&self) -> Capacity {
        self.in_use()
            .and_then(|u| self.onboarded.checked_sub(u))
            .unwrap_or(Capacity::ZERO)
    }

    /// One allocation, if held.
    pub fn allocation(&self, id: AllocationId) -> Option<&Allocation> {
        self.allocations.get(&id)
    }

    /// Every allocation, by id.
    pub fn allocations(&self) -> impl Iterator<Item = (AllocationId, &Allocation)> {
        self.allocations.iter().map(|(id, a)| (*id, a))
    }

    /// The earliest expiry among locked allocations: when to call [`Ledger::expire`] next.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.allocations
            .values()
            .filter_map(|a| match a.state {
                AllocationState::Locked { expires_at } => Some(expires_at),
                AllocationState::Running => None,
            })
            .min()
    }

    fn in_use(&self) -> Option<Capacity> {
        self.allocated.checked_add(self.locked)
    }

    /// Offers `more` to the network in addition to what is onboarded; refused if the total
    /// would exceed registered capacity.
    pub fn onboard(&mut self, more: Capacity) -> Result<(), LedgerError> {
        let total = self
            .onboarded
            .checked_add(more)
            .ok_or(LedgerError::Overflow("onboarded"))?;
        if let Some(short) = total.shortfall(&self.registered) {
            return Err(LedgerError::BeyondRegistered(short));
        }
        self.onboarded = total;
        Ok(())
    }

    /// Withdraws `less` from what is onboarded; refused if the rest would not cover what is
    /// allocated and locked (the error says how much is in use).
    pub fn offboard(&mut self, less: Capacity) -> Result<(), LedgerError> {
        let Some(rest) = self.onboarded.checked_sub(less) else {
            let short = less
                .shortfall(&self.onboarded)
                .ok_or(LedgerError::Overflow("offboarded"))?;
            return Err(LedgerError::BeyondOnboarded(short));
        };
        let in_use = self.in_use().ok_or(LedgerError::Overflow("in use"))?;
        if let Some(short) = less.shortfall(&self.available()) {
            return Err(LedgerError::InUse {
                requested: less,
                in_use,
                short,
            });
        }
        self.onboarded = rest;
        Ok(())
    }

    /// Reserves `request` for allocation `id` until `expires_at`.
    pub fn lock(
        &mut self,
        id: AllocationId,
        request: Capacity,
        expires_at: Timestamp,
    ) -> Result<(), LedgerError> {
        if request.is_zero() {
            return Err(LedgerError::EmptyRequest(id));
        }
        if self.allocations.contains_key(&id) {
            return Err(LedgerError::Duplicate(id));
        }
        if let Some(short) = request.shortfall(&self.available()) {
            return Err(LedgerError::Insufficient { id, short });
        }
        self.locked = self
            .locked
            .checked_add(request)
            .ok_or(LedgerError::Overflow("locked"))?;
        let state = AllocationState::Locked { expires_at };
        self.allocations.insert(id, Allocation { request, state });
        Ok(())
    }

    /// Moves a locked allocation to allocated: its deployment is running.
    ///
    /// A lock past its expiry can still start until [`Ledger::expire`] has released it.
    pub fn start(&mut self, id: AllocationId) -> Result<(), LedgerError> {
        let a = self
            .allocations
            .get_mut(&id)
            .ok_or(LedgerError::Unknown(id))?;
        if a.state == AllocationState::Running {
            return Err(LedgerError::AlreadyRunning(id));
        }
        let locked = self.locked.checked_sub(a.request);
        let allocated = self.allocated.checked_add(a.request);
        let (Some(locked), Some(allocated)) = (locked, allocated) else {
            return Err(LedgerError::Overflow("start"));
        };
        a.state = AllocationState::Running;
        self.locked = locked;
        self.allocated = allocated;
        Ok(())
    }

    /// Releases allocation `id`, locked or running (completion, failure, shutdown), and
    /// returns what it held.
    pub fn release(&mut self, id: AllocationId) -> Result<Allocation, LedgerError> {
        let a = *self.allocations.get(&id).ok_or(LedgerError::Unknown(id))?;
        let total = match a.state {
            AllocationState::Locked { .. } => &mut self.locked,
            AllocationState::Running => &mut self.allocated,
        };
        *total = total
            .checked_sub(a.request)
            .ok_or(LedgerError::Overflow("release"))?;
        self.allocations.remove(&id);
        Ok(a)
    }

    /// Releases every lock whose expiry is at or before `now`; returns their ids in order.
    pub fn expire(&mut self, now: Timestamp) -> Vec<AllocationId> {
        let due: Vec<AllocationId> = self
            .allocations
            .iter()
            .filter(|(_, a)| {
                matches!(a.state, AllocationState::Locked { expires_at } if expires_at <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        due.into_iter()
            .filter(|id| self.release(*id).is_ok())
            .collect()
    }

    /// Checks `allocated + locked + available == onboarded`, `onboarded <= registered`,
    /// nothing negative, and the totals equal the sums over allocations.
    pub fn check_invariant(&self) -> Result<(), String> {
        let mut locked = Capacity::ZERO;
        let mut allocated = Capacity::ZERO;
        for (id, a) in &self.allocations {
            let total = match a.state {
                AllocationState::Locked { .. } => &mut locked,
                AllocationState::Running => &mut allocated,
            };
            *total = total
                .checked_add(a.request)
                .ok_or_else(|| format!("{id}: sum overflows"))?;
        }
        if locked != self.locked || allocated != self.allocated {
            return Err(format!(
                "totals drifted: locked {} (sum {locked}), allocated {} (sum {allocated})",
                self.locked, self.allocated
            ));
        }
        let in_use = self.in_use().ok_or("allocated + locked overflows")?;
        let available = self
            .onboarded
            .checked_sub(in_use)
            .ok_or_else(|| format!("in use ({in_use}) exceeds onboarded ({})", self.onboarded))?;
        if in_use.checked_add(available) != Some(self.onboarded) {
            return Err("allocated + locked + available != onboarded".into());
        }
        if let Some(short) = self.onboarded.shortfall(&self.registered) {
            return Err(format!("onboarded exceeds registered: {short}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
