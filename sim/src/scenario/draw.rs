//! Fault options drawn per seed: [`Scenario::at_seed`].
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

use super::{FaultDraws, FaultKind, Scenario, Side, fraction_count};
use crate::world::STREAM_NETWORK;

/// Label under the root seed for the draws of fault options.
pub const STREAM_FAULT_OPTIONS: u64 = STREAM_NETWORK + 16;

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
