//! Fault options drawn per seed: their ranges as checked ([`FaultDraws`]) and the draws
//! of one seed ([`Scenario::at_seed`]).
//!
//! A fault option written as `[min, max]` is drawn uniformly from that range, and a
//! partition's `fraction` draws its side a, from the stream
//! `SeedTree::new(seed).child(STREAM_FAULT_OPTIONS).child(k)` of fault `k`: adding a fault
//! or drawing another option of one moves no other draw of the run (network jitter,
//! placement, random crashes, churn).

use std::time::Duration;

use flotilla_core::SeedTree;
use rand::Rng;
use rand::seq::index::sample;

use super::check::Checker;
use super::raw::{RawFault, RawNum};
use super::{FaultKind, Scenario, ScenarioError, Side, fraction_count};
use crate::world::STREAM_NETWORK;

/// Label under the root seed for the draws of fault options.
pub const STREAM_FAULT_OPTIONS: u64 = STREAM_NETWORK + 16;

/// The numeric options of one fault, each at one end of its range.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Values {
    pub at_s: f64,
    pub until_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub count: Option<u64>,
    pub restart_after_s: Option<f64>,
    pub probability: Option<f64>,
    pub offset_ms: Option<f64>,
    pub fraction: Option<f64>,
}

/// Which end of the ranges to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The smallest values.
    Low,
    /// The largest values.
    High,
}

/// The ranges of the options of one fault that are drawn from the seed (`[min, max]`
/// written in the file, and a partition's `fraction`); `None` for a fixed option.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultDraws {
    /// `at_s`.
    pub at_s: Option<(f64, f64)>,
    /// `until_s`.
    pub until_s: Option<(f64, f64)>,
    /// `duration_s`, added to the drawn `at_s`.
    pub duration_s: Option<(f64, f64)>,
    /// `count` of a crash, inclusive.
    pub count: Option<(u64, u64)>,
    /// `restart_after_s` of a crash.
    pub restart_after_s: Option<(f64, f64)>,
    /// `probability` of a loss burst.
    pub probability: Option<(f64, f64)>,
    /// `offset_ms` of a clock skew.
    pub offset_ms: Option<(f64, f64)>,
    /// `fraction` of the peers on side a of a partition (drawn even when fixed).
    pub fraction: Option<(f64, f64)>,
    /// A fixed `duration_s` written with a drawn `at_s`: the end follows the drawn start.
    pub length_s: Option<f64>,
}

impl FaultDraws {
    /// True if nothing of the fault is drawn.
    pub fn is_empty(&self) -> bool {
        *self == FaultDraws::default()
    }
}

impl Checker<'_> {
    /// The bounds of `v` at `key`: `[min, max]` with `min <= max`, or one number.
    pub(super) fn bounds(&self, key: &str, v: &RawNum) -> Result<(f64, f64), ScenarioError> {
        match v.bounds() {
            Some((lo, hi)) if lo <= hi || lo.is_nan() || hi.is_nan() => Ok((lo, hi)),
            _ => Err(self.error(
                key,
                format!(
                    "`{key}` must be a number or [min, max] with min <= max, found {}",
                    match v {
                        RawNum::Fixed(x) => x.to_string(),
                        RawNum::Range(r) => format!("{r:?}"),
                    }
                ),
            )),
        }
    }

    /// A written option's range: `Some((lo, hi))` if it is `[min, max]`.
    pub(super) fn drawn(
        &self,
        key: &str,
        v: &Option<RawNum>,
    ) -> Result<Option<(f64, f64)>, ScenarioError> {
        match v {
            Some(r @ RawNum::Range(_)) => self.bounds(key, r).map(Some),
            _ => Ok(None),
        }
    }

    /// The options of `f` at one end of their ranges.
    pub(super) fn values(
        &self,
        table: &str,
        f: &RawFault,
        end: End,
    ) -> Result<Values, ScenarioError> {
        let pick = |k: &str, v: &Option<RawNum>| -> Result<Option<f64>, ScenarioError> {
            v.as_ref()
                .map(|v| {
                    let (lo, hi) = self.bounds(&format!("{table}.{k}"), v)?;
                    Ok(if end == End::Low { lo } else { hi })
                })
                .transpose()
        };
        let count = match pick("count", &f.count)? {
            Some(c) if !(c >= 0.0 && c.fract() == 0.0 && c <= u32::MAX as f64) => {
                let key = format!("{table}.count");
                return Err(self.error(
                    &key,
                    format!("`{key}` must be a whole number of at least 0, or [min, max] of such, found {c}"),
                ));
            }
            c => c.map(|c| c as u64),
        };
        Ok(Values {
            at_s: pick("at_s", &Some(f.at_s.clone()))?.unwrap_or(0.0),
            until_s: pick("until_s", &f.until_s)?,
            duration_s: pick("duration_s", &f.duration_s)?,
            count,
            restart_after_s: pick("restart_after_s", &f.restart_after_s)?,
            probability: pick("probability", &f.probability)?,
            offset_ms: pick("offset_ms", &f.offset_ms)?,
            fraction: pick("fraction", &f.fraction)?,
        })
    }
}

impl Scenario {
    /// The scenario as run at `seed`: every fault option written as a range drawn, every
    /// `fraction` turned into the peers of side a. Without ranges it is `self`; the result
    /// has no ranges left, so drawing it again at any seed changes nothing.
    pub fn at_seed(&self, seed: u64) -> Scenario {
        let mut out = self.clone();
        let root = SeedTree::new(seed).child(STREAM_FAULT_OPTIONS);
        for (k, (fault, d)) in out.faults.iter_mut().zip(&self.fault_draws).enumerate() {
            if d.is_empty() {
                continue;
            }
            let mut rng = root.child(k as u64).rng();
            let draw = |rng: &mut rand_chacha::ChaCha8Rng, r: Option<(f64, f64)>| {
                r.map(|(lo, hi)| {
                    if lo < hi {
                        rng.random_range(lo..=hi)
                    } else {
                        lo
                    }
                })
            };
            let secs = |s: f64| Duration::from_secs_f64(s);
            // Fixed order of the draws: at, end, restart, probability, offset, count, side.
            if let Some(at) = draw(&mut rng, d.at_s) {
                fault.at = secs(at);
                // An end written as a fixed duration follows the drawn start.
                if let Some(length) = d.length_s {
                    fault.until = Some(fault.at + secs(length));
                }
            }
            if let Some(u) = draw(&mut rng, d.until_s) {
                fault.until = Some(secs(u));
            }
            if let Some(len) = draw(&mut rng, d.duration_s) {
                fault.until = Some(fault.at + secs(len));
            }
            let restart = draw(&mut rng, d.restart_after_s);
            let probability = draw(&mut rng, d.probability);
            let offset = draw(&mut rng, d.offset_ms);
            let count = d.count.map(|(lo, hi)| {
                if lo < hi {
                    rng.random_range(lo..=hi)
                } else {
                    lo
                }
            });
            let share = draw(&mut rng, d.fraction);
            match &mut fault.kind {
                FaultKind::Crash {
                    count: c,
                    restart_after,
                    ..
                } => {
                    if let Some(r) = restart {
                        *restart_after = Some(secs(r));
                    }
                    if let Some(n) = count {
                        *c = n as usize;
                    }
                }
                FaultKind::Loss { probability: p } => {
                    if let Some(v) = probability {
                        *p = v;
                    }
                }
                FaultKind::ClockSkew { offset_us, .. } => {
                    if let Some(ms) = offset {
                        *offset_us = (ms * 1000.0).round() as i64;
                    }
                }
                FaultKind::Partition { a, .. } => {
                    if let Some(share) = share {
                        let n = self.peers.count;
                        let mut nodes = sample(&mut rng, n, fraction_count(share, n)).into_vec();
                        nodes.sort_unstable();
                        *a = Side::Nodes(nodes);
                    }
                }
            }
        }
        out.fault_draws = vec![FaultDraws::default(); out.faults.len()];
        out
    }
}
