//! The fleet engine: a discrete-event loop that steps the node cores directly.
//!
//! There is no async runtime and no socket. One queue holds everything that will
//! happen: node starts, node timers, connection set-up and tear-down, and messages. The loop
//! pops the earliest item, jumps virtual time to it, feeds it to one node's `handle_*`
//! method and drains that node's `poll_*` outputs into new items. Virtual time therefore
//! advances from deadline to deadline, never in fixed ticks.
//!
//! - **Timers** are lazily invalidated: each node has one current deadline, one live queue
//!   entry and a generation counter; an earlier deadline pushes a new entry and bumps the
//!   generation, stale entries are skipped when popped, and an entry that pops before a
//!   deadline that moved later is pushed again.
//! - **Connections** (module `links`) follow a small TCP-like handshake: the dialled node sees
//!   the inbound connection after one one-way delay, the dialler sees it established after
//!   a full round trip; closes reach the other side after one one-way delay. Two connections
//!   between the same pair are one logical connection.
//! - **Messages** travel with the world's latency model and are FIFO per directed link;
//!   messages for a connection that closed are dropped and counted.
//! - **Determinism**: one seeded ChaCha stream for the network, ordered ties in the queue,
//!   hash maps used only for lookups. The same world gives the same trace, byte for byte.
//! - **Faults** (module `faults`) come from the [`Plan`]: partitions, crashes and restarts,
//!   loss bursts and clock skew, on the scenario's schedule and drawn from the seed.
//! - **Jobs** (module `jobs`, with `[jobs]`): one seeded simulated executor per compute
//!   provider, drained after every input of its node and woken by its own queue entries;
//!   the service providers' deployment rounds; a crash drops the executor with its jobs.
//! - **Checks**: after every step the touched node goes through the plan's invariant
//!   [`Registry`]; the first violation stops the run. With a liveness bound, probes look
//!   at the network every second after the fault phase until it has converged.

mod attack;
mod checks;
mod faults;
mod jobs;
mod links;
mod queue;

use std::time::Duration;

use flotilla_core::{Action, DialId, Event, Node, PeerId, Timestamp};
use rand_chacha::ChaCha8Rng;

use crate::account::Accounting;
use crate::check::{self, Ctx, Failure, Registry};
use crate::company::{self, CompanyStats};
use crate::engine::RunResult;
use crate::trace::Trace;
use crate::world::World;
use checks::LinksView;
pub use checks::Plan;
use faults::Faults;
pub use faults::STREAM_FAULTS;
use links::Links;
use queue::{Item, Mailbag, Queue};

/// A node whose deadline is still due right after `handle_timeout` is woken again this much
/// later, rather than spinning at one instant.
const STALL_BACKOFF: Duration = Duration::from_millis(1);

/// One node's timer.
///
/// `due` is the node's current deadline; `scheduled` is the time of the one live queue entry
/// (`Timestamp::MAX` if none), which carries `generation`. An earlier deadline schedules a new
/// entry and bumps the generation, so the old entry is skipped when popped; a later deadline
/// leaves the entry in place, and when it pops early it is simply pushed again at `due`.
/// Deadlines that move later on most inputs (a pong clears a ping timeout) thus cost no
/// queue entry at all.
#[derive(Debug, Clone, Copy)]
struct TimerSlot {
    due: Timestamp,
    scheduled: Timestamp,
    generation: u32,
}

/// Message counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    /// Messages the nodes produced.
    sent: u64,
    /// Messages handed to a node.
    delivered: u64,
    /// Messages dropped because their connection was closed.
    dropped: u64,
}

/// The state of a fleet run.
struct Fleet<'w> {
    world: &'w World,
    ids: Vec<PeerId>,
    now: Timestamp,
    nodes: Vec<Option<Node>>,
    timers: Vec<TimerSlot>,
    queue: Queue,
    mail: Mailbag,
    links: Links,
    rng: ChaCha8Rng,
    trace: Trace,
    counters: Counters,
    faults: Faults,
    checks: Registry,
    liveness: Option<(Timestamp, Duration)>,
    panic_at: Timestamp,
    failure: Option<Failure>,
    acct: Accounting,
    held: attack::HeldSlots,
    company: CompanyStats,
    filter_pass_min: f64,
    jobs: Option<jobs::FleetJobs>,
}

/// Runs `world` for `duration` of simulated time, recording into `trace`.
pub fn run(world: &World, trace: Trace, duration: Duration) -> RunResult {
    run_with(world, trace, duration, Plan::none()).0
}

/// Runs `world` for `duration` with the faults and checks of `plan`; the run stops at
/// the first failure, which is returned with the result.
pub fn run_with(
    world: &World,
    trace: Trace,
    duration: Duration,
    plan: Plan,
) -> (RunResult, Option<Failure>) {
    let end = World::epoch() + duration;
    let mut fleet = Fleet::new(world, trace, plan);
    fleet.run_until(end);
    fleet.finish(end)
}

impl<'w> Fleet<'w> {
    /// A fleet with every node's start scheduled.
    fn new(world: &'w World, trace: Trace, plan: Plan) -> Self {
        let epoch = World::epoch();
        let faults = Faults::new(world, &plan.faults, &plan.workload);
        let mut first_rounds = Vec::new();
        let jobs = jobs::FleetJobs::new(world, |at, item| first_rounds.push((at, item)));
        let acct = Accounting::new(world, &faults.flood_nodes(), plan.rcmgr_reported);
        let mut fleet = Fleet {
            world,
            ids: world.peers().iter().map(|p| p.peer_id).collect(),
            now: epoch,
            nodes: (0..world.len()).map(|_| None).collect(),
            timers: vec![
                TimerSlot {
                    due: Timestamp::MAX,
                    scheduled: Timestamp::MAX,
                    generation: 0
                };
                world.len()
            ],
            queue: Queue::default(),
            mail: Mailbag::default(),
            links: Links::default(),
            rng: world.network_rng(),
            trace,
            counters: Counters::default(),
            faults,
            checks: plan.checks,
            liveness: plan.liveness.map(|(from, bound)| (epoch + from, bound)),
            panic_at: plan.panic_after.map_or(Timestamp::MAX, |d| epoch + d),
            failure: None,
            acct,
            held: attack::HeldSlots::default(),
            company: CompanyStats::default(),
            filter_pass_min: plan.filter_pass_min,
            jobs,
        };
        for (k, (at, _)) in fleet.faults.steps.iter().enumerate() {
            fleet
                .queue
                .push(epoch + *at, Item::Fault { step: k as u32 });
        }
        if let Some((from, _)) = fleet.liveness {
            fleet.queue.push(from, Item::Probe);
        }
        let last_start = world.peers().iter().map(|p| p.start_offset).max();
        // The first probe one interval after the last start, so that it follows the starts.
        let first_probe = last_start.unwrap_or_default() + company::CONVERGENCE_PROBE;
        fleet.queue.push(epoch + first_probe, Item::CompanyProbe);
        for (at, item) in first_rounds {
            fleet.queue.push(at, item);
        }
        for p in world.peers() {
            fleet.queue.push(
                epoch + p.start_offset,
                Item::Start {
                    node: p.index as u32,
                },
            );
        }
        fleet
    }

    /// Processes everything due at or before `end`.
    fn run_until(&mut self, end: Timestamp) {
        while self.failure.is_none()
            && let Some((at, item)) = self.queue.pop_until(end)
        {
            self.now = at;
            assert!(
                at < self.panic_at,
                "deliberate crash requested by debug.panic_after_s"
            );
            self.step(item);
        }
    }
}

impl Fleet<'_> {
    fn node(&mut self, i: usize) -> Option<&mut Node> {
        self.nodes[i].as_mut()
    }

    fn step(&mut self, item: Item) {
        match item {
            Item::Start { node } => self.start(node as usize),
            Item::Timer { node, generation } => self.on_timer(node as usize, generation),
            Item::Syn { from, to, dial } => self.on_syn(from as usize, to as usize, dial),
            Item::SynAck {
                from,
                to,
                epoch,
                dial,
            } => self.on_syn_ack(from as usize, to as usize, epoch, dial),
            Item::DialFailed { node, dial, reason } => {
                let now = self.clock(node as usize);
                let dial = self.faults.untag_dial(node as usize, dial);
                if let (Some(dial), Some(n)) = (dial, self.nodes[node as usize].as_mut()) {
                    n.handle_dial_failed(now, DialId(dial), &reason.text());
                }
                self.drain(node as usize, false);
            }
            Item::Fin { from, to, epoch } => self.on_fin(from as usize, to as usize, epoch),
            Item::Deliver { slot } => self.on_deliver(slot),
            Item::Fault { step } => self.fault_step(step),
            Item::Probe => self.probe(),
            Item::CompanyProbe => self.company_probe(),
            Item::Release { slot } => self.release(slot),
            Item::RefusalLines => self.refusal_lines(),
            Item::Exec { node } => self.on_exec(node as usize),
            Item::Deploy { node } => self.deploy_round(node as usize),
        }
    }

    fn start(&mut self, i: usize) {
        if self.faults.down[i] || self.nodes[i].is_some() {
            return;
        }
        let node = self.world.new_node(i, self.clock(i));
        let p = self.world.peer(i);
        self.trace.node_started_in(
            self.now,
            i,
            self.world.region_name(i),
            p.last_mile,
            p.bootstrap,
            self.world.class_name(i),
        );
        self.nodes[i] = Some(node);
        self.jobs_started(i);
        self.drain(i, false);
    }

    /// Drains node `i`'s outputs into the network and the trace, then re-arms its timer.
    fn drain(&mut self, i: usize, fired: bool) {
        let now = self.now;
        self.pump_exec(i);
        while let Some(action) = self.node(i).and_then(Node::poll_action) {
            match action {
                Action::Dial { id, addr, peer } => self.dial(i, id, &addr, peer),
                Action::Disconnect { peer } => self.disconnect(i, peer),
            }
        }
        while let Some(t) = self.node(i).and_then(Node::poll_transmit) {
            self.send(i, t);
        }
        let ctx = Ctx {
            world: self.world,
            elapsed: check::elapsed(now),
        };
        while let Some(e) = self.node(i).and_then(Node::poll_event) {
            self.trace.event(now, i, &e);
            match &e {
                Event::Rtt { peer, .. } => self.acct.ping(i, self.world.index_of(peer), true),
                Event::PingTimeout { peer, .. } => {
                    self.acct.ping(i, self.world.index_of(peer), false)
                }
                Event::Trimmed { .. } => {
                    self.company.trimmed(i, ctx.elapsed);
                }
                Event::Job(_) => self.jobs_event(i, &e),
                _ => {}
            }
            if self.failure.is_none()
                && let Err(v) = self.checks.on_event(&ctx, i, &e)
            {
                self.fail(Failure::Invariant(v));
            }
        }
        if let Some(n) = self.nodes[i].as_ref() {
            self.company.observe(i, n, now);
        }
        if self.failure.is_none()
            && let Some(n) = self.nodes[i].as_ref()
            && let Err(v) = self.checks.on_node(&ctx, i, n)
        {
            self.fail(Failure::Invariant(v));
        }
        self.rearm(i, fired);
        self.rearm_exec(i);
    }

    fn rearm(&mut self, i: usize, fired: bool) {
        let Some(node) = self.nodes[i].as_ref() else {
            return;
        };
        let due = node.poll_timeout().unwrap_or(Timestamp::MAX);
        let mut due = self.sim_time_of(i, due);
        if fired && due <= self.now {
            due = self.now + STALL_BACKOFF;
        }
        let slot = &mut self.timers[i];
        slot.due = due;
        if due < slot.scheduled {
            slot.generation = slot.generation.wrapping_add(1);
            slot.scheduled = due;
            let item = Item::Timer {
                node: i as u32,
                generation: slot.generation,
            };
            self.queue.push(due.max(self.now), item);
        }
    }

    /// Node `i`'s timer entry of `generation` pops: fire it if the node is due, otherwise
    /// (its deadline moved later, or the entry is stale) schedule or skip.
    fn on_timer(&mut self, i: usize, generation: u32) {
        let slot = &mut self.timers[i];
        if slot.generation != generation {
            return;
        }
        slot.scheduled = Timestamp::MAX;
        if slot.due > self.now {
            if slot.due != Timestamp::MAX {
                slot.scheduled = slot.due;
                let item = Item::Timer {
                    node: i as u32,
                    generation,
                };
                self.queue.push(slot.due, item);
            }
            return;
        }
        let now = self.clock(i);
        let system = self.acct.get(i).map(|rm| rm.system_conns());
        if let Some(n) = self.nodes[i].as_mut() {
            if let Some((held, limit)) = system {
                n.report_system_conns(now, held, limit);
            }
            n.handle_timeout(now);
        }
        self.drain(i, true);
    }

    fn finish(mut self, end: Timestamp) -> (RunResult, Option<Failure>) {
        if self.failure.is_none() {
            self.now = end;
            let ctx = Ctx {
                world: self.world,
                elapsed: check::elapsed(end),
            };
            let links = LinksView(&self.links);
            if let Err(v) = self.checks.on_end(&ctx, &self.nodes, &links) {
                self.fail(Failure::Invariant(v));
            }
            for i in 0..self.nodes.len() {
                if self.failure.is_some() {
                    break;
                }
                if let Some(rm) = self.acct.get(i)
                    && let Err(v) = self.checks.on_rcmgr(&ctx, i, rm, None, true)
                {
                    self.fail(Failure::Invariant(v));
                }
            }
        }
        self.refusal_lines();
        let end = self.now;
        let in_flight = self.mail.in_use();
        let c = self.counters;
        assert_eq!(
            c.sent,
            c.delivered + c.dropped + in_flight,
            "every message is delivered, dropped or in flight"
        );
        self.trace
            .run_ended(end, c.sent, c.delivered, c.dropped, in_flight);
        let world = self.world;
        let jobs = self.jobs.as_ref().map(|j| {
            j.tally
                .summary(self.nodes.iter().flatten().map(|n| n.jobs().stats()))
        });
        let nodes = self
            .nodes
            .into_iter()
            .enumerate()
            .map(|(i, n)| n.unwrap_or_else(|| world.new_node(i, end)))
            .collect();
        let result = RunResult {
            nodes,
            messages_sent: c.sent,
            messages_delivered: c.delivered,
            trace: self.trace,
            rcmgr: self.acct.stats,
            company: self.company,
            jobs,
        };
        (result, self.failure)
    }
}

#[cfg(test)]
mod tests;
