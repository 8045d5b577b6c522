//! Faults in the fleet engine: partitions, crashes and restarts, loss bursts, clock skew.
//!
//! The schedule is expanded when the fleet is built ([`schedule::expand`], shared with the
//! turmoil engine): every fault becomes one or two [`Step`]s in the queue (on and off; crash
//! and restart), and crashes with a `count` draw their peers and times from the seed's
//! fault stream. While faults are active:
//!
//! - **partition**: anything sent across the cut (in the cut's direction for a one-way
//!   partition) is lost: messages are dropped and counted, a dial's SYN or SYN-ACK is lost
//!   and the dial fails as unreachable after [`DIAL_UNREACHABLE`], a close is lost (the
//!   other end finds out through failed pings). Items already on the wire arrive.
//! - **crash**: the node stops at once; every open connection closes for its peers one
//!   one-way delay later (behind what the node sent before), messages to it are dropped, its
//!   timers are forgotten; a restart builds a fresh node from the world (same key, fresh
//!   state) and starts it like at the beginning. Dials carry the node's incarnation: an
//!   answer to a dial of the crashed node reaches no one, and the connection the answering
//!   end opened is reset (it sees it close one one-way delay later).
//! - **loss**: every message sent is lost with the burst's probability (seeded draws; two
//!   bursts at once combine as independent losses).
//! - **clock skew**: the node is handed `now + offset` in every input and its deadlines are
//!   taken back by the offset.
//!
//! The churn of `[[classes]]` ([`World::churn_schedule`]) joins the schedule as crashes and
//! restarts after the faults' steps; the baseline loss of `latency.loss` is drawn here too,
//! from its own stream. A `[[workload]]` flood is a step that sends its messages and
//! schedules its next tick, one period later, until the end of the run.

use std::time::Duration;

use flotilla_core::{Message, SeedTree, Timestamp, Transmit};
use rand::Rng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use super::Fleet;
use super::links::DIAL_UNREACHABLE;
use super::queue::{FailReason, Item};
use crate::scenario::{Fault, FaultKind, FloodMessage, Workload, WorkloadKind};
pub use crate::schedule::STREAM_FAULTS;
use crate::schedule::{self, Step};
use crate::world::{STREAM_NETWORK, World};

/// Label under the root seed for workload draws (the nodes of a flood with `count`).
pub const STREAM_WORKLOAD: u64 = STREAM_NETWORK + 19;

/// Label under a flood's workload seed for drawing its targets.
const STREAM_TARGETS: u64 = 1 << 40;

/// One `[[workload]]` entry of a run, with its nodes and targets.
#[derive(Debug, Clone)]
pub(super) struct Flood {
    /// The entry.
    pub w: Workload,
    /// Its nodes, in index order.
    pub nodes: Vec<usize>,
    /// Its targets (`connect`, `streams`), in index order.
    pub targets: Vec<usize>,
}

/// Bits of a travelling dial id below the incarnation tag (a core numbers its dials from
/// 0 up, never near 2^48).
const DIAL_TAG_SHIFT: u32 = 48;

/// The fault state of a run.
#[derive(Debug)]
pub(super) struct Faults {
    faults: Vec<Fault>,
    /// The schedule, in the order the steps were expanded.
    pub steps: Vec<(Duration, Step)>,
    /// For each active partition: every node's side (0 neither, 1 a, 2 b), and one-way.
    cuts: Vec<(u32, Vec<u8>, bool)>,
    /// Loss probabilities of the active bursts, by fault.
    losses: Vec<(u32, f64)>,
    /// Each node's clock offset, microseconds.
    pub skew_us: Vec<i64>,
    /// Nodes that crashed and have not restarted.
    pub down: Vec<bool>,
    /// Each node's crashes so far: dials in flight carry it, so that a restarted node
    /// (whose dial ids start again) is never told about a dial of its former self.
    incarnation: Vec<u16>,
    loss_rng: ChaCha8Rng,
    /// The baseline loss probability and its generator.
    base_loss: (f64, ChaCha8Rng),
    /// The floods of the workload and their nodes and targets (listed and drawn, in index
    /// order).
    pub floods: Vec<Flood>,
}

impl Faults {
    /// The schedule of `faults` in `world`.
    pub(super) fn new(world: &World, faults: &[Fault], workload: &[Workload]) -> Faults {
        let mut steps = schedule::expand(world, faults);
        let mut floods = Vec::with_capacity(workload.len());
        let wroot = SeedTree::new(world.seed()).child(STREAM_WORKLOAD);
        for (k, w) in workload.iter().enumerate() {
            let mut nodes = w.nodes.clone();
            if w.count > 0 {
                let mut rng = wroot.child(k as u64).rng();
                nodes.extend(sample(&mut rng, world.len(), w.count.min(world.len())));
            }
            if let Some(c) = w.class {
                nodes.extend((0..world.len()).filter(|&i| world.peer(i).class == Some(c)));
            }
            nodes.sort_unstable();
            nodes.dedup();
            let mut targets = w.targets.clone();
            if w.targets_count > 0 {
                let others: Vec<usize> = (0..world.len())
                    .filter(|i| nodes.binary_search(i).is_err())
                    .collect();
                let mut rng = wroot.child(k as u64).child(STREAM_TARGETS).rng();
                let n = w.targets_count.min(others.len());
                targets.extend(
                    sample(&mut rng, others.len(), n)
                        .into_iter()
                        .map(|j| others[j]),
                );
            }
            if let Some(c) = w.targets_class {
                targets.extend((0..world.len()).filter(|&i| world.peer(i).class == Some(c)));
            }
            targets.sort_unstable();
            targets.dedup();
            steps.push((w.at, Step::Flood { flood: k as u32 }));
            floods.push(Flood {
                w: w.clone(),
                nodes,
                targets,
            });
        }
        Faults {
            faults: faults.to_vec(),
            steps,
            cuts: Vec::new(),
            losses: Vec::new(),
            skew_us: vec![0; world.len()],
            down: vec![false; world.len()],
            incarnation: vec![0; world.len()],
            loss_rng: schedule::loss_rng(world),
            base_loss: (world.loss(), world.loss_rng()),
            floods,
        }
    }

    /// The nodes of every `[[workload]]` entry, in index order.
    pub(super) fn flood_nodes(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .floods
            .iter()
            .flat_map(|f| f.nodes.iter().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// True if an item sent from `from` to `to` now is lost.
    pub(super) fn blocks(&self, from: usize, to: usize) -> bool {
        self.cuts
            .iter()
            .any(|(_, sides, one_way)| schedule::cuts(sides, *one_way, from, to))
    }

    /// Dial id `dial` of node `i` as it travels: tagged with the node's incarnation.
    pub(super) fn tag_dial(&self, i: usize, dial: u64) -> u64 {
        dial | u64::from(self.incarnation[i]) << DIAL_TAG_SHIFT
    }

    /// The dial id of a travelling `tagged` dial of node `i`, if it is of the node's
    /// current incarnation.
    pub(super) fn untag_dial(&self, i: usize, tagged: u64) -> Option<u64> {
        let current = u64::from(self.incarnation[i]);
        (tagged >> DIAL_TAG_SHIFT == current).then_some(tagged & ((1 << DIAL_TAG_SHIFT) - 1))
    }

    /// Draws whether a message sent now is lost to a loss burst or to the baseline loss
    /// (each from its own stream, drawn whatever the other says).
    pub(super) fn draw_loss(&mut self) -> bool {
        let burst = !self.losses.is_empty() && {
            let kept: f64 = self.losses.iter().map(|(_, p)| 1.0 - p).product();
            self.loss_rng.random::<f64>() >= kept
        };
        let (p, rng) = &mut self.base_loss;
        let base = *p > 0.0 && rng.random::<f64>() < *p;
        burst || base
    }
}

impl Fleet<'_> {
    /// Node `i`'s clock: simulated time plus its skew.
    pub(super) fn clock(&self, i: usize) -> Timestamp {
        let skew = self.faults.skew_us[i];
        if skew == 0 {
            return self.now;
        }
        Timestamp::from_micros(self.now.as_micros().saturating_add_signed(skew))
    }

    /// A deadline of node `i`'s clock in simulated time.
    pub(super) fn sim_time_of(&self, i: usize, due: Timestamp) -> Timestamp {
        let skew = self.faults.skew_us[i];
        if skew == 0 || due == Timestamp::MAX {
            return due;
        }
        Timestamp::from_micros(due.as_micros().saturating_add_signed(-skew))
    }

    /// Handles an item that a fault keeps from crossing from `from` to `to`.
    pub(super) fn lose(&mut self, from: usize, item: Item) {
        let after_us = DIAL_UNREACHABLE.as_micros() as u64;
        match item {
            Item::Deliver { slot } => {
                self.mail.take(slot);
                self.counters.dropped += 1;
            }
            Item::Syn { dial, .. } => {
                self.fail_dial_after(from, dial, FailReason::Unreachable, after_us)
            }
            Item::SynAck { to, dial, .. } => {
                self.fail_dial_after(to as usize, dial, FailReason::Unreachable, after_us)
            }
            _ => {}
        }
    }

    /// Applies fault step `step`.
    pub(super) fn fault_step(&mut self, step: u32) {
        let Some((_, step)) = self.faults.steps.get(step as usize).copied() else {
            return;
        };
        match step {
            Step::Crash { node } => self.crash(node as usize),
            Step::Restart { node } => {
                let i = node as usize;
                if self.faults.down[i] {
                    self.faults.down[i] = false;
                    self.trace
                        .note(self.now, Some(i), "restart", format_args!("fresh"));
                    self.start(i);
                }
            }
            Step::Toggle { fault, on } => self.toggle(fault, on),
            Step::Flood { flood } => self.flood(flood),
        }
    }

    /// One tick of flood `k`: each of its running nodes sends the flood's message to each
    /// of its connected peers; the next tick is one period later, until the end.
    fn flood(&mut self, k: u32) {
        let Some(Flood { w, nodes, targets }) = self.faults.floods.get(k as usize).cloned() else {
            return;
        };
        let end = World::epoch() + w.until.unwrap_or(self.world.duration());
        if w.kind != WorkloadKind::Flood {
            self.attack(k, &w, &nodes, &targets);
            return self.next_flood_tick(k, &w, end);
        }
        let mut sent = 0u64;
        for i in nodes {
            let Some(node) = self.nodes[i].as_ref() else {
                continue;
            };
            let config = &self.world.peer(i).config;
            let message = match w.message {
                FloodMessage::Peers => Message::PeersRequest {
                    max: config.exchange_peers_max,
                    hops_max: config.exchange_hops_max,
                },
                FloodMessage::Ping => Message::Ping { nonce: u64::MAX },
            };
            let mut peers: Vec<usize> = node
                .connections()
                .filter(|c| !c.closing)
                .filter_map(|c| self.world.index_of(&c.peer))
                .collect();
            peers.sort_unstable();
            for p in peers {
                let to = self.ids[p];
                self.send(
                    i,
                    Transmit {
                        to,
                        message: message.clone(),
                    },
                );
                sent += 1;
            }
        }
        self.trace
            .note(self.now, None, "flood", format_args!("#{k} sent={sent}"));
        self.next_flood_tick(k, &w, end);
    }

    /// Schedules the next tick of flood `k`, one period later, if it is before `end`.
    fn next_flood_tick(&mut self, k: u32, w: &Workload, end: Timestamp) {
        let next = self.now + Duration::from_secs_f64(1.0 / w.rate_per_s);
        if next < end {
            let step = self.faults.steps.len() as u32;
            let at = next.saturating_since(World::epoch());
            self.faults.steps.push((at, Step::Flood { flood: k }));
            self.queue.push(next, super::queue::Item::Fault { step });
        }
    }

    fn toggle(&mut self, k: u32, on: bool) {
        let Some(fault) = self.faults.faults.get(k as usize).cloned() else {
            return;
        };
        match &fault.kind {
            FaultKind::Partition { a, b, one_way } => {
                self.faults.cuts.retain(|(f, _, _)| *f != k);
                if on {
                    let sides = schedule::sides(self.world, a, b.as_ref());
                    self.faults.cuts.push((k, sides, *one_way));
                }
            }
            FaultKind::Loss { probability } => {
                self.faults.losses.retain(|(f, _)| *f != k);
                if on {
                    self.faults.losses.push((k, *probability));
                }
            }
            FaultKind::ClockSkew { nodes, offset_us } => {
                for n in nodes {
                    self.faults.skew_us[*n] = if on { *offset_us } else { 0 };
                }
            }
            FaultKind::Crash { .. } => return,
        }
        let Some((name, what)) = schedule::describe(&fault.kind) else {
            return;
        };
        let state = if on { "on" } else { "off" };
        self.trace.note(
            self.now,
            None,
            "fault",
            format_args!("#{k} {name} {state} {what}"),
        );
        // Deadlines of a clock that jumped are due at another simulated time.
        if let FaultKind::ClockSkew { nodes, .. } = &fault.kind {
            for n in nodes.clone() {
                self.rearm(n, false);
            }
        }
    }

    /// Node `i` crashes: it stops, and its open connections close for the peers.
    fn crash(&mut self, i: usize) {
        if self.faults.down[i] {
            return;
        }
        self.faults.down[i] = true;
        self.faults.incarnation[i] = self.faults.incarnation[i].wrapping_add(1);
        self.jobs_down(i);
        let was_running = self.nodes[i].take().is_some();
        self.company.stopped(i);
        self.acct.drop_node(i);
        self.trace.note(
            self.now,
            Some(i),
            "crash",
            format_args!(
                "{}",
                if was_running {
                    "running"
                } else {
                    "not-started"
                }
            ),
        );
        let slot = &mut self.timers[i];
        slot.generation = slot.generation.wrapping_add(1);
        slot.due = Timestamp::MAX;
        slot.scheduled = Timestamp::MAX;
        for peer in self.links.peers_of(i) {
            self.close_end(i, peer);
        }
    }
}

#[cfg(test)]
mod tests;
