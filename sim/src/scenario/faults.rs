//! `[[faults]]`: what goes wrong during a run, and when.
//!
//! Which keys a fault takes depends on its `kind`; a key that does not apply is an error
//! that lists the keys that do.

use std::time::Duration;

use super::check::Checker;
use super::draw::{End, FaultDraws, Values};
use super::raw::{RawFault, RawFaultKind, RawNum};
use super::{Peers, ScenarioError};
use crate::data::RegionData;

/// The largest clock offset accepted, milliseconds either way.
pub const SKEW_MS_MAX: f64 = 86_400_000.0;

/// One side of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// Every peer in these regions (indices into the region data).
    Regions(Vec<usize>),
    /// These peers (indices).
    Nodes(Vec<usize>),
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Messages and dials from side `a` to side `b` (and back unless `one_way`) are lost;
    /// without `b`, side `b` is every peer not in `a`.
    Partition {
        /// The first side.
        a: Side,
        /// The second side, or everyone else.
        b: Option<Side>,
        /// Only traffic from `a` to `b` is lost.
        one_way: bool,
    },
    /// The peers stop (and restart from a fresh state after `restart_after`, if set).
    Crash {
        /// The peers named in the file.
        nodes: Vec<usize>,
        /// Peers drawn from the seed, each at a seeded time in the fault's window.
        count: usize,
        /// How long a crashed peer stays down; `None`: for the rest of the run.
        restart_after: Option<Duration>,
    },
    /// Every message is lost with this probability (seeded draws).
    Loss {
        /// From 0 to 1.
        probability: f64,
    },
    /// The peers' clocks run this far ahead (negative: behind) of the simulated time.
    ClockSkew {
        /// The peers.
        nodes: Vec<usize>,
        /// The offset, microseconds.
        offset_us: i64,
    },
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// When it starts, after the run's start.
    pub at: Duration,
    /// When it ends (heals); `None`: it never does (a permanent partition, loss or skew;
    /// a crash of listed nodes).
    pub until: Option<Duration>,
    /// What it does.
    pub kind: FaultKind,
}

impl Fault {
    /// When the fault phase may end for this fault: its end, plus the down time of a crash
    /// that restarts. A fault that never ends counts from its start: the liveness phase
    /// then runs with it in place (a permanent partition must fail it).
    pub fn settled_at(&self) -> Duration {
        let end = self.until.unwrap_or(self.at);
        match &self.kind {
            FaultKind::Crash {
                restart_after: Some(d),
                ..
            } => end + *d,
            _ => end,
        }
    }
}

/// The keys a fault of `kind` takes besides `kind` and `at_s`.
fn keys_of(kind: RawFaultKind) -> &'static [&'static str] {
    match kind {
        RawFaultKind::Partition => &[
            "until_s",
            "duration_s",
            "regions_a",
            "regions_b",
            "nodes_a",
            "nodes_b",
            "fraction",
            "one_way",
        ],
        RawFaultKind::Crash => &["until_s", "duration_s", "nodes", "count", "restart_after_s"],
        RawFaultKind::Loss => &["until_s", "duration_s", "probability"],
        RawFaultKind::ClockSkew => &["until_s", "duration_s", "nodes", "offset_ms"],
    }
}

fn kind_name(kind: RawFaultKind) -> &'static str {
    match kind {
        RawFaultKind::Partition => "partition",
        RawFaultKind::Crash => "crash",
        RawFaultKind::Loss => "loss",
        RawFaultKind::ClockSkew => "clock_skew",
    }
}

/// The optional keys written in `f`.
fn written(f: &RawFault) -> Vec<&'static str> {
    let pairs = [
        ("until_s", f.until_s.is_some()),
        ("duration_s", f.duration_s.is_some()),
        ("regions_a", f.regions_a.is_some()),
        ("regions_b", f.regions_b.is_some()),
        ("nodes_a", f.nodes_a.is_some()),
        ("nodes_b", f.nodes_b.is_some()),
        ("fraction", f.fraction.is_some()),
        ("one_way", f.one_way.is_some()),
        ("nodes", f.nodes.is_some()),
        ("count", f.count.is_some()),
        ("restart_after_s", f.restart_after_s.is_some()),
        ("probability", f.probability.is_some()),
        ("offset_ms", f.offset_ms.is_some()),
    ];
    pairs.iter().filter(|(_, w)| *w).map(|(k, _)| *k).collect()
}

/// The checked `[[faults]]`.
pub(super) struct CheckedFaults {
    /// The faults, options at the low end of their ranges.
    pub faults: Vec<Fault>,
    /// What of each fault a seed draws.
    pub draws: Vec<FaultDraws>,
    /// The faults, options at the high end of their ranges (the latest they settle).
    pub latest: Vec<Fault>,
}

impl Checker<'_> {
    /// The faults (at the low end of their ranges), what of each is drawn from the seed,
    /// and the faults at the high end of their ranges (the latest they may settle).
    pub(super) fn faults(
        &self,
        raw: &[RawFault],
        peers: &Peers,
        duration: Duration,
        data: &RegionData,
    ) -> Result<CheckedFaults, ScenarioError> {
        let mut faults = Vec::with_capacity(raw.len());
        let mut latest = Vec::with_capacity(raw.len());
        let mut draws = Vec::with_capacity(raw.len());
        for (i, f) in raw.iter().enumerate() {
            let table = format!("faults.{i}");
            let key = |k: &str| format!("{table}.{k}");
            // Both ends of every range must make a valid fault; the low end is the fault
            // as written until a seed draws it.
            let low = self.values(&table, f, End::Low)?;
            let high = self.values(&table, f, End::High)?;
            let fault = self.fault(i, f, low, peers, duration, data)?;
            latest.push(self.fault(i, f, high, peers, duration, data)?);
            let d = FaultDraws {
                at_s: self.drawn(&key("at_s"), &Some(f.at_s.clone()))?,
                until_s: self.drawn(&key("until_s"), &f.until_s)?,
                duration_s: self.drawn(&key("duration_s"), &f.duration_s)?,
                count: self
                    .drawn(&key("count"), &f.count)?
                    .map(|(lo, hi)| (lo as u64, hi as u64)),
                restart_after_s: self.drawn(&key("restart_after_s"), &f.restart_after_s)?,
                probability: self.drawn(&key("probability"), &f.probability)?,
                offset_ms: self.drawn(&key("offset_ms"), &f.offset_ms)?,
                fraction: low.fraction.zip(high.fraction),
                length_s: None,
            };
            let d = FaultDraws {
                length_s: match (&d.at_s, &f.duration_s) {
                    (Some(_), Some(RawNum::Fixed(len))) => Some(*len),
                    _ => None,
                },
                ..d
            };
            if let (Some((_, at_hi)), Some((until_lo, _))) = (d.at_s, low.until_s.zip(high.until_s))
                && until_lo < at_hi
            {
                let msg = format!(
                    "`{}` may start as late as {at_hi} s, so `{}` must be at least that, found {until_lo}",
                    key("at_s"),
                    key("until_s")
                );
                return Err(self.error(&key("until_s"), msg));
            }
            faults.push(fault);
            draws.push(d);
        }
        Ok(CheckedFaults {
            faults,
            draws,
            latest,
        })
    }

    fn fault(
        &self,
        i: usize,
        f: &RawFault,
        v: Values,
        peers: &Peers,
        duration: Duration,
        data: &RegionData,
    ) -> Result<Fault, ScenarioError> {
        let table = format!("faults.{i}");
        let key = |k: &str| format!("{table}.{k}");
        let name = kind_name(f.kind);
        for k in written(f) {
            if !keys_of(f.kind).contains(&k) {
                let msg = format!(
                    "`{k}` does not apply to a `{name}` fault (its keys: kind, at_s, {})",
                    keys_of(f.kind).join(", ")
                );
                return Err(self.error(&key(k), msg));
            }
        }
        let duration_s = duration.as_secs_f64();
        let at_s = self.range(&key("at_s"), v.at_s, 0.0, duration_s, "s (the duration)")?;
        let until_s = match (v.until_s, v.duration_s) {
            (Some(_), Some(_)) => {
                let msg = "write `until_s` or `duration_s`, not both".to_string();
                return Err(self.error(&key("duration_s"), msg));
            }
            (Some(u), None) => Some(self.range(&key("until_s"), u, at_s, duration_s, "s")?),
            (None, Some(d)) => {
                let d = self.range(&key("duration_s"), d, 0.0, duration_s - at_s, "s")?;
                Some(at_s + d)
            }
            (None, None) => None,
        };
        if f.kind == RawFaultKind::Crash && v.count.is_some() && until_s.is_none() {
            let msg = "a crash with `count` needs a window to draw its times from: `until_s` or `duration_s`".to_string();
            return Err(self.error(&table, msg));
        }
        let nodes = |k: &str, v: &Option<Vec<u64>>| -> Result<Vec<usize>, ScenarioError> {
            let v = v.as_deref().unwrap_or(&[]);
            if let Some(bad) = v.iter().find(|n| **n >= peers.count as u64) {
                let msg = format!(
                    "`{}` holds peer {bad}, but peers are numbered 0 to {}",
                    key(k),
                    peers.count - 1
                );
                return Err(self.error(&key(k), msg));
            }
            Ok(v.iter().map(|n| *n as usize).collect())
        };
        let kind = match f.kind {
            RawFaultKind::Partition => {
                let a = self.side(
                    &key("regions_a"),
                    &f.regions_a,
                    nodes("nodes_a", &f.nodes_a)?,
                    data,
                )?;
                let a = match (v.fraction, a) {
                    (Some(_), Some(_)) => {
                        let msg = "write `fraction` or a side a (`regions_a`, `nodes_a`), not both"
                            .to_string();
                        return Err(self.error(&key("fraction"), msg));
                    }
                    (Some(share), None) => {
                        let share = self.range(&key("fraction"), share, 0.0, 1.0, "")?;
                        Some(Side::Nodes(
                            (0..fraction_count(share, peers.count)).collect(),
                        ))
                    }
                    (None, a) => a,
                };
                let b = self.side(
                    &key("regions_b"),
                    &f.regions_b,
                    nodes("nodes_b", &f.nodes_b)?,
                    data,
                )?;
                let Some(a) = a else {
                    let msg = "a partition needs `regions_a`, `nodes_a` or `fraction`".to_string();
                    return Err(self.error(&table, msg));
                };
                FaultKind::Partition {
                    a,
                    b,
                    one_way: f.one_way.unwrap_or(false),
                }
            }
            RawFaultKind::Crash => {
                let listed = nodes("nodes", &f.nodes)?;
                let count = v.count.unwrap_or(0);
                if listed.is_empty() == (count == 0) {
                    let msg = "a crash needs either `nodes` (a non-empty list) or `count` (peers drawn from the seed), not both".to_string();
                    return Err(self.error(&table, msg));
                }
                if count > peers.count as u64 {
                    let msg = format!(
                        "`{}` must be at most peers.count ({})",
                        key("count"),
                        peers.count
                    );
                    return Err(self.error(&key("count"), msg));
                }
                let restart_after = v
                    .restart_after_s
                    .map(|s| self.seconds(&key("restart_after_s"), s, 0.0))
                    .transpose()?;
                FaultKind::Crash {
                    nodes: listed,
                    count: count as usize,
                    restart_after,
                }
            }
            RawFaultKind::Loss => {
                let Some(p) = v.probability else {
                    return Err(
                        self.error(&table, "a loss fault needs `probability` (0 to 1)".into())
                    );
                };
                FaultKind::Loss {
                    probability: self.range(&key("probability"), p, 0.0, 1.0, "")?,
                }
            }
            RawFaultKind::ClockSkew => {
                let listed = nodes("nodes", &f.nodes)?;
                let (Some(ms), false) = (v.offset_ms, listed.is_empty()) else {
                    let msg = "a clock_skew fault needs `nodes` (a non-empty list) and `offset_ms`"
                        .to_string();
                    return Err(self.error(&table, msg));
                };
                let ms = self.range(&key("offset_ms"), ms, -SKEW_MS_MAX, SKEW_MS_MAX, "ms")?;
                FaultKind::ClockSkew {
                    nodes: listed,
                    offset_us: (ms * 1000.0).round() as i64,
                }
            }
        };
        Ok(Fault {
            at: Duration::from_secs_f64(at_s),
            until: until_s.map(Duration::from_secs_f64),
            kind,
        })
    }

    /// A partition side from region names or peer indices (not both).
    fn side(
        &self,
        key: &str,
        regions: &Option<Vec<String>>,
        nodes: Vec<usize>,
        data: &RegionData,
    ) -> Result<Option<Side>, ScenarioError> {
        match (regions, nodes.is_empty()) {
            (Some(_), false) => {
                let msg = format!("write `{key}` or the matching `nodes_` key, not both");
                Err(self.error(key, msg))
            }
            (Some(names), true) => {
                let mut out = Vec::new();
                for name in names {
                    let Some(r) = data.index_of(name) else {
                        let known: Vec<&str> =
                            data.regions().iter().map(|r| r.name.as_str()).collect();
                        let msg = format!(
                            "unknown region `{name}` in `{key}` (known: {})",
                            known.join(", ")
                        );
                        return Err(self.error(key, msg));
                    };
                    out.push(r);
                }
                Ok(Some(Side::Regions(out)))
            }
            (None, false) => Ok(Some(Side::Nodes(nodes))),
            (None, true) => Ok(None),
        }
    }
}

/// Peers on side a of a partition that takes `share` of `count` peers: at least one, and
/// at least one left for side b.
pub fn fraction_count(share: f64, count: usize) -> usize {
    ((share * count as f64).round() as usize).clamp(1, count.saturating_sub(1).max(1))
}

/// When the fault phase ends: every fault settled and every peer started.
pub fn fault_phase_end(faults: &[Fault], peers: &Peers) -> Duration {
    faults
        .iter()
        .map(Fault::settled_at)
        .fold(peers.start_spread, Duration::max)
}

#[cfg(test)]
mod tests;
