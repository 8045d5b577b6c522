//! Capacity onboarding of a compute provider: what the machine has (**registered**, measured
//! here) and the operator's share of it offered to the network (**onboarded**), as the core's
//! [`capacity::Ledger`](flotilla_core::capacity::Ledger) counts them.
//!
//! [`measure`] reads the machine: logical CPUs (lowered to the process's available
//! parallelism, which follows cgroup quotas and CPU affinity), memory (the cgroup's limit if
//! lower), the space available on the filesystem holding the data directory, and the NVIDIA
//! GPUs (`/dev/nvidia0`, `/dev/nvidia1`, ...). It also runs [`cpu_score`], a short
//! single-thread benchmark that makes machines of equal core counts comparable.
//!
//! [`Share`] is the operator's choice (`--cores 2 --memory-mb 50%`, `--share 50%`), applied
//! to the registered capacity by [`Share::apply`], which refuses anything above it.
//!
//! ```
//! use flotilla_core::capacity::Capacity;
//! use flotilla_node::onboarding::{Amount, Share};
//!
//! let machine = Capacity { millicores: 8000, memory_mb: 16384, disk_gb: 100, gpus: 1 };
//! let share = Share { cores: Some("1.5".parse().unwrap()), all: Some("50%".parse().unwrap()), ..Share::default() };
//! let offered = share.apply(&machine).unwrap();
//! assert_eq!(offered, Capacity { millicores: 1500, memory_mb: 8192, disk_gb: 50, gpus: 0 });
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flotilla_core::capacity::Capacity;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::views::resources::ResourcesView;

/// How long [`cpu_score`] hashes.
pub const BENCHMARK_TIME: Duration = Duration::from_millis(250);

/// The machine's capacity as measured, the most it can ever offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    /// Cores, memory, disk and GPUs.
    pub capacity: Capacity,
    /// [`cpu_score`]: MiB per second one thread hashes with SHA-256.
    pub cpu_score: u64,
    /// When it was measured, microseconds since the Unix epoch.
    pub measured_at_us: u64,
}

/// A provider's registered capacity and the share of it onboarded (offered to the network).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Onboarding {
    /// What the machine has.
    pub registered: Registered,
    /// What is offered; always fits in `registered.capacity`.
    pub onboarded: Capacity,
}

/// What `flotilla resources --json` prints: the stored onboarding (null if never
/// onboarded) and the running node's live ledger (null if no node runs on the data
/// directory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesReport {
    /// The store's registered capacity and onboarded share.
    pub stored: Option<Onboarding>,
    /// The running node's ledger.
    pub live: Option<ResourcesView>,
}

/// Why the machine cannot be measured or a share cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// Part of the machine cannot be read.
    #[error("cannot read the machine's {what}: {cause}")]
    Measure {
        /// What (e.g. `memory`).
        what: &'static str,
        /// Why.
        cause: String,
    },
    /// An amount is not a number or a percentage.
    #[error("`{0}` is not an amount; give a number like 4 or 1.5, or a share like 50%")]
    Amount(String),
    /// An absolute amount is above what the machine has.
    #[error(
        "{flag} {asked} is above the {have} {unit} this machine has; give at most {have} or a \
         share like 50%"
    )]
    Above {
        /// The flag, e.g. `--cores`.
        flag: &'static str,
        /// The amount asked, as written.
        asked: String,
        /// The registered amount.
        have: String,
        /// Its unit, e.g. `cores`.
        unit: &'static str,
    },
    /// A percentage above 100%.
    #[error("{flag} {asked} is more than all of it; give a share from 0% to 100%")]
    PercentAbove {
        /// The flag.
        flag: &'static str,
        /// The percentage asked, as written.
        asked: String,
    },
    /// A fraction of a resource that only comes whole.
    #[error(
        "{flag} {asked} is not a whole number of {unit}; give a whole number or a share like 50%"
    )]
    NotWhole {
        /// The flag.
        flag: &'static str,
        /// The amount asked, as written.
        asked: String,
        /// Its unit.
        unit: &'static str,
    },
    /// `--share` with an absolute amount.
    #[error(
        "--share {0} is not a share; give a percentage like 50% (or amounts per resource with \
         --cores, --memory-mb, --disk-gb, --gpus)"
    )]
    ShareNotPercent(String),
}

/// An amount asked for one resource: absolute, or a percentage of the registered value.
/// Both are fixed-point with three decimals, so `1.5` cores and `12.5%` are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    /// Thousandths of the resource's unit (1500 = 1.5).
    Thousandths(u64),
    /// Thousandths of a percent (50_000 = 50%).
    PercentThousandths(u64),
}

impl FromStr for Amount {
    type Err = OnboardError;

    fn from_str(text: &str) -> Result<Amount, OnboardError> {
        let bad = || OnboardError::Amount(text.to_string());
        let (number, percent) = match text.trim().strip_suffix('%') {
            Some(n) => (n.trim_end(), true),
            None => (text.trim(), false),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 3 {
            return Err(bad());
        }
        let frac_thousandths = format!("{frac:0<3}").parse::<u64>().map_err(|_| bad())?;
        let value = whole
            .parse::<u64>()
            .ok()
            .and_then(|w| w.checked_mul(1000))
            .and_then(|w| w.checked_add(frac_thousandths))
            .ok_or_else(bad)?;
        Ok(if percent {
            Amount::PercentThousandths(value)
        } else {
            Amount::Thousandths(value)
        })
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Amount::Thousandths(v) => write!(f, "{}", thousandths(v)),
            Amount::PercentThousandths(v) => write!(f, "{}%", thousandths(v)),
        }
    }
}

/// `v` thousandths as a short decimal: 8000 is `8`, 1500 is `1.5`.
pub fn thousandths(v: u64) -> String {
    let frac = format!("{:03}", v % 1000);
    match frac.trim_end_matches('0') {
        "" => (v / 1000).to_string(),
        f => format!("{}.{f}", v / 1000),
    }
}

/// The operator's share: an amount per resource, `all` for those not given. Nothing given
/// at all means everything registered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Share {
    /// `--cores`: cores (fractional allowed) or a percentage.
    pub cores: Option<Amount>,
    /// `--memory-mb`: MiB or a percentage.
    pub memory_mb: Option<Amount>,
    /// `--disk-gb`: GiB or a percentage.
    pub disk_gb: Option<Amount>,
    /// `--gpus`: whole GPUs or a percentage (rounded down).
    pub gpus: Option<Amount>,
    /// `--share`: a percentage for every resource not given above.
    pub all: Option<Amount>,
}

impl Share {
    /// The capacity this share onboards out of `registered`; percentages round down.
    pub fn apply(&self, registered: &Capacity) -> Result<Capacity, OnboardError> {
        if let Some(a @ Amount::Thousandths(_)) = self.all {
            return Err(OnboardError::ShareNotPercent(a.to_string()));
        }
        let all = self.all.unwrap_or(Amount::PercentThousandths(100_000));
        let pick = |given: Option<Amount>, flag, have, unit, whole| {
            resolve(given.unwrap_or(all), flag, have, unit, whole)
        };
        Ok(Capacity {
            millicores: pick(self.cores, "--cores", registered.millicores, "cores", false)?,
            memory_mb: pick(
                self.memory_mb,
                "--memory-mb",
                registered.memory_mb,
                "MiB",
                true,
            )?,
            disk_gb: pick(self.disk_gb, "--disk-gb", registered.disk_gb, "GiB", true)?,
            gpus: pick(self.gpus, "--gpus", registered.gpus, "GPUs", true)?,
        })
    }
}

/// One resource's amount. `have` is in the stored unit: millicores for cores (`whole` false),
/// the unit itself otherwise.
fn resolve(
    amount: Amount,
    flag: &'static str,
    have: u64,
    unit: &'static str,
    whole: bool,
) -> Result<u64, OnboardError> {
    match amount {
        Amount::PercentThousandths(p) => {
            if p > 100_000 {
                return Err(OnboardError::PercentAbove {
                    flag,
                    asked: amount.to_string(),
                });
            }
            // p <= 100_000, so the result is at most `have` and fits.
            Ok((u128::from(have) * u128::from(p) / 100_000) as u64)
        }
        Amount::Thousandths(v) => {
            let (asked, have_shown) = if whole {
                if v % 1000 != 0 {
                    return Err(OnboardError::NotWhole {
                        flag,
                        asked: amount.to_string(),
                        unit,
                    });
                }
                (v / 1000, have.to_string())
            } else {
                (v, thousandths(have))
            };
            if asked > have {
                return Err(OnboardError::Above {
                    flag,
                    asked: amount.to_string(),
                    have: have_shown,
                    unit,
                });
            }
            Ok(asked)
        }
    }
}

/// Measures the machine's registered capacity, with `data_dir` on the filesystem whose
/// available space counts as disk; runs [`cpu_score`] (about [`BENCHMARK_TIME`]).
pub fn measure(data_dir: &Path) -> Result<Registered, OnboardError> {
    let capacity = Capacity {
        millicores: logical_cores()?.saturating_mul(1000),
        memory_mb: crate::rcmgr::memory_bytes().ok_or(OnboardError::Measure {
            what: "memory",
            cause: "neither sysinfo nor the cgroup reports it".to_string(),
        })? >> 20,
        disk_gb: disk_bytes(data_dir)? >> 30,
        gpus: count_gpus(Path::new("/dev")),
    };
    let cpu_score = cpu_score();
    Ok(Registered {
        capacity,
        cpu_score,
        measured_at_us: now_us(),
    })
}

/// Microseconds since the Unix epoch by the system clock (0 before it).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Logical CPUs (sysinfo), lowered to the available parallelism.
fn logical_cores() -> Result<u64, OnboardError> {
    let listed = sysinfo::System::new().ok().map_or(0, |mut sys| {
        sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
        sys.cpus().len()
    });
    let usable = std::thread::available_parallelism().map_or(0, usize::from);
    let cores = match (listed, usable) {
        (0, 0) => {
            return Err(OnboardError::Measure {
                what: "CPUs",
                cause: "neither sysinfo nor the scheduler reports any".to_string(),
            });
        }
        (0, n) | (n, 0) => n,
        (a, b) => a.min(b),
    };
    Ok(cores as u64)
}

/// Bytes available on the filesystem holding `dir` (or its nearest existing ancestor).
fn disk_bytes(dir: &Path) -> Result<u64, OnboardError> {
    let disks = sysinfo::Disks::new_with_refreshed_list_specifics(
        sysinfo::DiskRefreshKind::nothing().with_storage(),
    )
    .map_err(|e| OnboardError::Measure {
        what: "filesystems",
        cause: e.to_string(),
    })?;
    let path = existing_canonical(dir);
    let mounts = disks
        .iter()
        .map(|d| (d.mount_point().to_path_buf(), d.available_space()));
    filesystem_of(&path, mounts).ok_or_else(|| OnboardError::Measure {
        what: "disk",
        cause: format!(
            "no filesystem listed holds {}; put the data directory on a disk (--data-dir)",
            path.display()
        ),
    })
}

fn existing_canonical(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find_map(|a| a.canonicalize().ok())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// The value of the mount holding `path`: the longest mount point it starts with.
fn filesystem_of(path: &Path, mounts: impl Iterator<Item = (PathBuf, u64)>) -> Option<u64> {
    mounts
        .filter(|(m, _)| path.starts_with(m))
        .max_by_key(|(m, _)| m.components().count())
        .map(|(_, v)| v)
}

/// NVIDIA GPUs: entries `nvidia<N>` in `dev` (`/dev`); 0 if none or unreadable.
pub fn count_gpus(dev: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix("nvidia")
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .count() as u64
}

/// A single-thread CPU score: MiB per second hashed with SHA-256 (each MiB chained to the
/// previous digest), hashing for [`BENCHMARK_TIME`]. Higher is faster.
pub fn cpu_score() -> u64 {
    const CHUNK: usize = 1 << 20;
    let buf: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut digest = [0u8; 32];
    let mut chunks: u64 = 0;
    let start = Instant::now();
    while chunks == 0 || start.elapsed() < BENCHMARK_TIME {
        let mut h = Sha256::new();
        h.update(digest);
        h.update(std::hint::black_box(&buf));
        digest = h.finalize().into();
        chunks += 1;
    }
    std::hint::black_box(digest);
    let us = start.elapsed().as_micros().max(1);
    (u128::from(chunks) * 1_000_000 / us) as u64
}

#[cfg(test)]
mod tests;
