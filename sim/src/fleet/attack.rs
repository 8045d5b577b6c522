//! Resource accounting in the fleet engine: checks after each operation, refusal lines,
//! and the `connect` and `streams` floods of `[[workload]]`, whose held connections and
//! streams are released by queue items.

use super::Fleet;
use super::queue::Item;
use crate::account::{Held, REFUSAL_LINE_PERIOD, Refusal};
use crate::check::{self, Ctx, Failure};
use crate::scenario::{Workload, WorkloadKind};
use crate::world::{FastMap, World};
use flotilla_core::{PeerId, Timestamp};

/// What the floods hold, in reusable slots that queue items name.
#[derive(Debug, Default)]
pub(super) struct HeldSlots {
    /// Target, generation of its manager, what is held.
    slots: Vec<Option<(u32, u32, Held)>>,
    free: Vec<u32>,
    /// Connections past their handshake that each (target, attacker) pair holds.
    peer_conns: FastMap<(u32, u32), u32>,
}

impl HeldSlots {
    fn insert(&mut self, entry: (u32, u32, Held)) -> u32 {
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(entry);
            i
        } else {
            self.slots.push(Some(entry));
            (self.slots.len() - 1) as u32
        }
    }

    fn take(&mut self, slot: u32) -> Option<(u32, u32, Held)> {
        let e = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some(e)
    }
}

impl Fleet<'_> {
    /// Checks node `i`'s resource manager after an operation about `peer`.
    pub(super) fn rcmgr_check(&mut self, i: usize, peer: Option<PeerId>) {
        if self.failure.is_some() {
            return;
        }
        let Some(rm) = self.acct.get(i) else {
            return;
        };
        let ctx = Ctx {
            world: self.world,
            elapsed: check::elapsed(self.now),
        };
        if let Err(v) = self.checks.on_rcmgr(&ctx, i, rm, peer.as_ref(), false) {
            self.fail(Failure::Invariant(v));
        }
    }

    /// Counts a refusal at node `i`; the first since the last `refused` lines schedules
    /// the next ones, at the end of the current minute of the run.
    pub(super) fn refuse(&mut self, i: usize, r: Refusal) {
        if self.acct.refused(i, r) {
            let period = REFUSAL_LINE_PERIOD.as_micros() as u64;
            let since = self.now.saturating_since(World::epoch()).as_micros() as u64;
            let at = World::epoch().as_micros() + (since / period + 1) * period;
            self.queue
                .push(Timestamp::from_micros(at), Item::RefusalLines);
        }
    }

    /// One `refused` line per node with the refusals since the last lines.
    pub(super) fn refusal_lines(&mut self) {
        for (node, counts) in self.acct.take_minute() {
            let text: Vec<String> = counts.iter().map(|(r, n)| format!("{r}={n}")).collect();
            self.trace.note(
                self.now,
                Some(node as usize),
                "refused",
                format_args!("{}", text.join(" ")),
            );
        }
    }

    /// One tick of a `connect` or `streams` flood `k`: every running attacker opens one
    /// connection or stream at every running target.
    pub(super) fn attack(&mut self, k: u32, w: &Workload, attackers: &[usize], targets: &[usize]) {
        let (mut held, mut refused, mut unconnected) = (0u64, 0u64, 0u64);
        for &a in attackers {
            if self.nodes[a].is_none() {
                continue;
            }
            for &t in targets {
                if t == a || self.nodes[t].is_none() {
                    continue;
                }
                let opened = match w.kind {
                    WorkloadKind::Connect => {
                        let now = self.clock(t);
                        self.acct.flood_conn(self.world, t, a, w.handshake, now)
                    }
                    _ => {
                        let key = (t as u32, a as u32);
                        let connected = self.links.is_open(t, a)
                            || self.held.peer_conns.get(&key).is_some_and(|n| *n > 0);
                        if !connected {
                            self.acct.stats.flood_streams_unconnected += 1;
                            unconnected += 1;
                            continue;
                        }
                        self.acct.flood_stream(self.world, t, a, w.memory_bytes)
                    }
                };
                match opened {
                    Ok(h) => {
                        held += 1;
                        if let Held::Conn(_, Some(_)) = h {
                            *self
                                .held
                                .peer_conns
                                .entry((t as u32, a as u32))
                                .or_insert(0) += 1;
                        }
                        let generation = self.acct.generation(t);
                        let slot = self.held.insert((t as u32, generation, h));
                        self.queue.push(self.now + w.hold, Item::Release { slot });
                        self.rcmgr_check(t, Some(self.ids[a]));
                    }
                    Err(r) => {
                        refused += 1;
                        self.refuse(t, r);
                    }
                }
            }
        }
        self.trace.note(
            self.now,
            None,
            "flood",
            format_args!(
                "#{k} {} held={held} refused={refused} unconnected={unconnected}",
                w.kind.name()
            ),
        );
    }

    /// The hold time of what slot `slot` holds is over.
    pub(super) fn release(&mut self, slot: u32) {
        let Some((t, generation, h)) = self.held.take(slot) else {
            return;
        };
        if let Held::Conn(_, Some(a)) = h
            && let Some(n) = self.held.peer_conns.get_mut(&(t, a))
        {
            *n = n.saturating_sub(1);
        }
        self.acct.release(t as usize, generation, h);
        self.rcmgr_check(t as usize, None);
    }
}
