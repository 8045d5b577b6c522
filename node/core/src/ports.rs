//! Host ports for jobs, handed out from a configured range, all-or-nothing per job.
//!
//! The choice is deterministic: the lowest free ports first. A port is never held by two
//! jobs; a job's ports return to the pool when it is released.
//!
//! ```
//! use flotilla_core::capacity::AllocationId;
//! use flotilla_core::ports::{PortAllocator, PortRange};
//!
//! let range: PortRange = "30000-30003".parse().unwrap();
//! let mut ports = PortAllocator::new(range);
//! assert_eq!(ports.allocate(AllocationId(1), 2).unwrap(), vec![30000, 30001]);
//! assert!(ports.allocate(AllocationId(2), 3).is_err()); // only 2 left: nothing taken
//! assert_eq!(ports.release(AllocationId(1)).unwrap(), vec![30000, 30001]);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::capacity::AllocationId;

/// An inclusive, non-empty range of ports within `1..=65535`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The range `first..=last`; refused if empty or if it includes port 0.
    pub fn new(first: u16, last: u16) -> Result<Self, PortsError> {
        if first == 0 {
            return Err(PortsError::Range(format!(
                "{first}-{last} includes port 0; start at 1 or above, e.g. 30000-30999"
            )));
        }
        if first > last {
            return Err(PortsError::Range(format!(
                "{first}-{last} is empty; write the lower port first, e.g. {last}-{first}"
            )));
        }
        Ok(PortRange { first, last })
    }

    /// The lowest port.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The highest port.
    pub fn last(&self) -> u16 {
        self.last
    }

    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = PortsError;

    /// Parses `FIRST-LAST` (e.g. `30000-30999`) or a single port.
    fn from_str(s: &str) -> Result<Self, PortsError> {
        let bad = || {
            PortsError::Range(format!(
                "`{s}` is not a port range; write FIRST-LAST with ports in 1..=65535, \
                 e.g. 30000-30999"
            ))
        };
        let port = |p: &str| p.trim().parse::<u16>().map_err(|_| bad());
        match s.split_once('-') {
            Some((a, b)) => PortRange::new(port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                PortRange::new(p, p)
            }
        }
    }
}

impl TryFrom<String> for PortRange {
    type Error = PortsError;

    fn try_from(s: String) -> Result<Self, PortsError> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        r.to_string()
    }
}

/// Why ports could not be handed out or returned; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortsError {
    /// A range that is empty, malformed or includes port 0.
    #[error("bad port range: {0}")]
    Range(String),
    /// Not enough free ports for the whole request.
    #[error("{job}: {asked} ports asked, {free} free in {range}; release ports or widen the range")]
    Exhausted {
        /// The job that asked.
        job: AllocationId,
        /// Ports asked for.
        asked: usize,
        /// Ports free at the time.
        free: usize,
        /// The configured range.
        range: PortRange,
    },
    /// The job already holds ports.
    #[error("{0} already holds ports; release them first")]
    AlreadyHolds(AllocationId),
    /// The job holds no ports.
    #[error("{0} holds no ports")]
    Unknown(AllocationId),
}

/// Hands out host ports from one [`PortRange`]. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct PortAllocator {
    range: PortRange,
    free: BTreeSet<u16>,
    held: BTreeMap<AllocationId, Vec<u16>>,
}

impl PortAllocator {
    /// An allocator with every port of `range` free.
    pub fn new(range: PortRange) -> Self {
        PortAllocator {
            range,
            free: (range.first..=range.last).collect(),
            held: BTreeMap::new(),
        }
    }

    /// The configured range.
    pub fn range(&self) -> PortRange {
        self.range
    }

    /// How many ports are free.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// The ports `job` holds, if any.
    pub fn ports_of(&self, job: AllocationId) -> Option<&[u16]> {
        self.held.get(&job).map(Vec::as_slice)
    }

    /// Hands `n` ports to `job`, lowest free first, or none at all.
    ///
    /// Asking for zero ports records the job with no ports, so that [`Self::release`] works
    /// the same for every job.
    pub fn allocate(&mut self, job: AllocationId, n: usize) -> Result<Vec<u16>, PortsError> {
        if self.held.contains_key(&job) {
            return Err(PortsError::AlreadyHolds(job));
        }
        if n > self.free.len() {
            return Err(PortsError::Exhausted {
                job,
                asked: n,
                free: self.free.len(),
                range: self.range,
            });
        }
        let ports: Vec<u16> = self.free.iter().take(n).copied().collect();
        for p in &ports {
            self.free.remove(p);
        }
        self.held.insert(job, ports.clone());
        Ok(ports)
    }

    /// Hands exactly `ports` to `job` (restoring a job after a restart), or none at all if
    /// any is taken or outside the range.
    pub fn take(&mut self, job: AllocationId, ports: &[u16]) -> Result<(), PortsError> {
        if self.held.contains_key(&job) {
            return Err(PortsError::AlreadyHolds(job));
        }
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        if unique.len() != ports.len() || !ports.iter().all(|p| self.free.contains(p)) {
            return Err(PortsError::Exhausted {
                job,
                asked: ports.len(),
                free: ports.iter().filter(|p| self.free.contains(p)).count(),
                range: self.range,
            });
        }
        for p in ports {
            self.free.remove(p);
        }
        self.held.insert(job, ports.to_vec());
        Ok(())
    }

    /// Returns `job`'s ports to the pool and says which they were.
    pub fn release(&mut self, job: AllocationId) -> Result<Vec<u16>, PortsError> {
        let ports = self.held.remove(&job).ok_or(PortsError::Unknown(job))?;
        self.free.extend(ports.iter().copied());
        Ok(ports)
    }

    /// Checks that every port of the range is either free or held by exactly one job.
    pub fn check_invariant(&self) -> Result<(), String> {
        let mut seen = self.free.clone();
        for (job, ports) in &self.held {
            for p in ports {
                if !self.range.contains(*p) {
                    return Err(format!("{job} holds {p}, outside {}", self.range));
                }
                if !seen.insert(*p) {
                    return Err(format!("port {p} is given twice ({job})"));
                }
            }
        }
        if seen.len() != self.range.len() {
            return Err(format!(
                "{} ports accounted for, {} in {}",
                seen.len(),
                self.range.len(),
                self.range
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
