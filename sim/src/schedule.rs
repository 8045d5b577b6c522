//! The fault schedule of a run, the same for both engines.
//!
//! [`expand`] turns a scenario's `[[faults]]` into a list of timed [`Step`]s: a partition,
//! loss burst or clock skew switches on (and off at its end), a crash stops its peers (and
//! restarts them after `restart_after`). A crash with a `count` draws its peers and their
//! times in the fault's window from the seed's fault stream ([`STREAM_FAULTS`]), so a seed
//! picks the same peers at the same times on the fleet and the turmoil engine. Loss draws
//! come from a second stream of the same label ([`loss_rng`]). The churn of `[[classes]]`
//! ([`World::churn_schedule`]) follows the faults' steps as crashes and restarts.

use std::time::Duration;

use flotilla_core::SeedTree;
use rand::Rng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::scenario::{Fault, FaultKind, Side};
use crate::world::{STREAM_NETWORK, World};

/// Label under the root seed for fault draws (random crashes, loss bursts).
pub const STREAM_FAULTS: u64 = STREAM_NETWORK + 2;

/// One change the fault schedule makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Fault `fault` (a partition, loss burst or clock skew) starts or ends.
    Toggle {
        /// The fault's index in the scenario.
        fault: u32,
        /// Starts (`true`) or ends.
        on: bool,
    },
    /// Node `node` crashes.
    Crash {
        /// The peer index.
        node: u32,
    },
    /// Node `node` restarts.
    Restart {
        /// The peer index.
        node: u32,
    },
    /// One tick of flood `flood` of the `[[workload]]` (the fleet engine only; the turmoil
    /// engine refuses workloads).
    Flood {
        /// The flood's index in the workload.
        flood: u32,
    },
}

/// The steps of `faults` in `world`, each with its time since the start of the run, in the
/// order they were expanded (not sorted: engines order them by time themselves, ties in
/// this order).
pub fn expand(world: &World, faults: &[Fault]) -> Vec<(Duration, Step)> {
    let mut draw = SeedTree::new(world.seed())
        .child(STREAM_FAULTS)
        .child(0)
        .rng();
    let mut steps = Vec::new();
    for (k, f) in faults.iter().enumerate() {
        let k = k as u32;
        match &f.kind {
            FaultKind::Crash {
                nodes,
                count,
                restart_after,
            } => {
                let mut crashes: Vec<(Duration, usize)> =
                    nodes.iter().map(|n| (f.at, *n)).collect();
                if *count > 0 {
                    let window_us = f.until.unwrap_or(f.at).saturating_sub(f.at).as_micros() as u64;
                    let n = world.len();
                    for node in sample(&mut draw, n, (*count).min(n)).into_iter() {
                        let offset_us = if window_us == 0 {
                            0
                        } else {
                            draw.random_range(0..window_us)
                        };
                        crashes.push((f.at + Duration::from_micros(offset_us), node));
                    }
                }
                for (at, node) in crashes {
                    steps.push((at, Step::Crash { node: node as u32 }));
                    if let Some(d) = restart_after {
                        steps.push((at + *d, Step::Restart { node: node as u32 }));
                    }
                }
            }
            _ => {
                steps.push((f.at, Step::Toggle { fault: k, on: true }));
                if let Some(until) = f.until {
                    steps.push((
                        until,
                        Step::Toggle {
                            fault: k,
                            on: false,
                        },
                    ));
                }
            }
        }
    }
    for c in world.churn_schedule() {
        let node = c.node as u32;
        let step = if c.up {
            Step::Restart { node }
        } else {
            Step::Crash { node }
        };
        steps.push((c.at, step));
    }
    steps
}

/// The stream of loss-burst draws of `world`'s seed.
pub fn loss_rng(world: &World) -> ChaCha8Rng {
    SeedTree::new(world.seed())
        .child(STREAM_FAULTS)
        .child(1)
        .rng()
}

/// Every peer's side of a partition between `a` and `b` (`None`: everyone not in `a`):
/// 1 for side a, 2 for side b, 0 for neither.
pub fn sides(world: &World, a: &Side, b: Option<&Side>) -> Vec<u8> {
    (0..world.len())
        .map(|i| {
            if in_side(a, world, i) {
                1
            } else if b.is_none_or(|b| in_side(b, world, i)) {
                2
            } else {
                0
            }
        })
        .collect()
}

/// True if a cut with these `sides` keeps traffic from `from` to `to`.
pub fn cuts(sides: &[u8], one_way: bool, from: usize, to: usize) -> bool {
    let (a, b) = (sides[from], sides[to]);
    (a == 1 && b == 2) || (!one_way && a == 2 && b == 1)
}

fn in_side(side: &Side, world: &World, i: usize) -> bool {
    match side {
        Side::Regions(rs) => rs.contains(&world.peer(i).region),
        Side::Nodes(ns) => ns.contains(&i),
    }
}

/// The name and the details of a fault that switches on and off, as the trace's `fault`
/// lines show them: `("partition", "one-way")`. `None` for a crash.
pub fn describe(kind: &FaultKind) -> Option<(&'static str, String)> {
    match kind {
        FaultKind::Partition { a, one_way, .. } => {
            let way = if *one_way { "one-way" } else { "both-ways" };
            // A side of listed (or drawn) peers shows its size; the resolved scenario lists
            // them.
            let what = match a {
                Side::Nodes(n) => format!("{way} a={}", n.len()),
                Side::Regions(_) => way.to_string(),
            };
            Some(("partition", what))
        }
        FaultKind::Loss { probability } => Some(("loss", format!("p={probability}"))),
        FaultKind::ClockSkew { offset_us, .. } => {
            Some(("clock-skew", format!("offset={offset_us}us")))
        }
        FaultKind::Crash { .. } => None,
    }
}
