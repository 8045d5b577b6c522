//! What the turmoil hosts of one run share with the engine loop: the records for the trace,
//! the message counters, the invariant checks, the connection views of the liveness probe,
//! the loss bursts, the jobs tally, and the nodes handed back at the end.
//!
//! Hosts are ticked one after another within a simulation step, so their records arrive
//! grouped by host, not by time. [`Shared::drain_into`] sorts each step's records by virtual
//! time (stably, so ties keep host order) before they reach the [`Trace`], which keeps the
//! trace in time order like the fleet engine's. A broken invariant is a record too: the
//! drain writes the `failed` line in its place and drops what the step recorded after it,
//! so the trace ends where the fleet engine's would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flotilla_core::rcmgr::ResourceManager;
use flotilla_core::{Event, Message, Node, PeerId, Timestamp, Transmit};
use flotilla_node::driver::Observer;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::host::sim_now;
use super::jobs::JobsState;
use super::network::RcmgrReport;
use crate::account::{Accounting, REFUSAL_LINE_PERIOD, Refusal};
use crate::check::liveness::Links;
use crate::check::{self, Ctx, Failure, Registry, Violation};
use crate::company::CompanyStats;
use crate::trace::Trace;
use crate::world::World;

/// One line for the trace, before sorting.
#[derive(Debug)]
enum Record {
    /// The node started.
    Started {
        region: String,
        last_mile: Duration,
        bootstrap: bool,
        class: Option<String>,
    },
    /// The node reported an event.
    Event(Event),
    /// The node handed a message to the network (counted in the timeline only).
    Sent,
    /// The node received a message (counted in the timeline only).
    Delivered,
    /// An invariant broke here; the run stops.
    Failed,
    /// The node's resource manager refused these in the minute that ends here.
    Refused(String),
}

/// A copy of one running node's connections, for the liveness probe.
#[derive(Debug, Clone)]
pub(super) struct View {
    id: PeerId,
    /// Peers with a connection that is not closing.
    open: Vec<PeerId>,
    /// Peers with any connection.
    all: Vec<PeerId>,
}

impl View {
    fn of(node: &Node) -> View {
        let mut open = Vec::new();
        let mut all = Vec::new();
        for c in node.connections() {
            all.push(c.peer);
            if !c.closing {
                open.push(c.peer);
            }
        }
        View {
            id: node.peer_id(),
            open,
            all,
        }
    }
}

impl Links for View {
    fn peer_id(&self) -> PeerId {
        self.id
    }

    fn open(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.open.iter().copied()
    }

    fn is_connected(&self, peer: &PeerId) -> bool {
        self.all.contains(peer)
    }
}

/// The invariants of a run and what they need.
pub(super) struct Checks {
    pub(super) world: Arc<World>,
    pub(super) registry: Registry,
    /// Keep a [`View`] of every node after each of its steps (only with a liveness bound).
    pub(super) views: Option<Vec<Option<View>>>,
    /// When each pair of peers last saw its connection go up, go down or asked to drop it
    /// (the end-of-run symmetry check skips pairs that changed too recently to settle).
    pub(super) changed: BTreeMap<(u32, u32), Timestamp>,
    /// The first failure.
    pub(super) failure: Option<Failure>,
}

/// The active loss bursts and their seeded draws.
pub(super) struct Loss {
    /// Probabilities of the active bursts, by fault.
    pub(super) bursts: Vec<(u32, f64)>,
    pub(super) rng: ChaCha8Rng,
}

/// The state shared by every host of a run and the engine loop.
pub(super) struct Shared {
    records: Vec<(Timestamp, usize, Record)>,
    sent: u64,
    delivered: u64,
    nodes: BTreeMap<usize, Node>,
    /// Nodes whose host has started them and not crashed since.
    pub(super) running: Vec<bool>,
    pub(super) checks: Checks,
    pub(super) loss: Loss,
    /// Refusal counts and the honest pings (the managers live in the hosts' networks).
    pub(super) acct: Accounting,
    /// When the next `refused` lines are due, if a refusal is waiting for them.
    pub(super) refusals_due: Option<Timestamp>,
    /// Trims counted (this engine does not probe for convergence).
    pub(super) company: CompanyStats,
    /// The jobs of a run with `[jobs]`.
    pub(super) jobs: Option<JobsState>,
}

/// A handle to the [`Shared`] state of a run.
#[derive(Clone)]
pub(super) struct SharedRef(Arc<Mutex<Shared>>);

impl SharedRef {
    pub(super) fn new(
        world: Arc<World>,
        registry: Registry,
        liveness: bool,
        rcmgr_reported: bool,
    ) -> SharedRef {
        let n = world.len();
        let acct = Accounting::new(&world, &[], rcmgr_reported);
        let loss = Loss {
            bursts: Vec::new(),
            rng: crate::schedule::loss_rng(&world),
        };
        let jobs = JobsState::new(&world);
        let checks = Checks {
            world,
            registry,
            views: liveness.then(|| vec![None; n]),
            changed: BTreeMap::new(),
            failure: None,
        };
        SharedRef(Arc::new(Mutex::new(Shared {
            records: Vec::new(),
            company: CompanyStats::default(),
            sent: 0,
            delivered: 0,
            nodes: BTreeMap::new(),
            running: vec![false; n],
            checks,
            loss,
            acct,
            refusals_due: None,
            jobs,
        })))
    }

    /// Locks the state (one thread runs the whole simulation, so this never waits).
    pub(super) fn lock(&self) -> MutexGuard<'_, Shared> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Shared {
    /// Node `node` started at `now`.
    pub(super) fn started(
        &mut self,
        now: Timestamp,
        node: usize,
        region: &str,
        last_mile: Duration,
        bootstrap: bool,
        class: Option<&str>,
    ) {
        let record = Record::Started {
            region: region.to_string(),
            last_mile,
            bootstrap,
            class: class.map(str::to_string),
        };
        self.running[node] = true;
        self.records.push((now, node, record));
    }

    /// Node `node` stopped; keep it for the result.
    pub(super) fn finished(&mut self, node: usize, state: Node) {
        self.nodes.insert(node, state);
    }

    /// Node `node` crashed: it is not running and has no view; the invariants forget it,
    /// its live deployments are lost.
    pub(super) fn crashed(&mut self, node: usize) {
        self.running[node] = false;
        self.checks.registry.on_down(node);
        if let Some(jobs) = self.jobs.as_mut() {
            jobs.down(node);
        }
        if let Some(views) = self.checks.views.as_mut() {
            views[node] = None;
        }
    }

    /// Writes the records gathered so far to `trace`, in time order, up to and including
    /// a failure's line.
    pub(super) fn drain_into(&mut self, trace: &mut Trace) {
        self.records.sort_by_key(|(t, _, _)| *t);
        for (now, node, record) in self.records.drain(..) {
            match record {
                Record::Started {
                    region,
                    last_mile,
                    bootstrap,
                    class,
                } => trace.node_started_in(
                    now,
                    node,
                    &region,
                    last_mile,
                    bootstrap,
                    class.as_deref(),
                ),
                Record::Event(event) => trace.event(now, node, &event),
                Record::Sent => trace.timeline_mut().sent(now),
                Record::Delivered => trace.timeline_mut().delivered(now),
                Record::Refused(text) => {
                    trace.note(now, Some(node), "refused", format_args!("{text}"));
                }
                Record::Failed => {
                    if let Some(f) = &self.checks.failure {
                        trace.note(now, None, "failed", format_args!("{f}"));
                    }
                    break;
                }
            }
        }
        self.records.clear();
    }

    /// Forgets the records gathered so far (after a failure).
    pub(super) fn discard_records(&mut self) {
        self.records.clear();
    }

    /// Messages handed to the network so far.
    pub(super) fn sent(&self) -> u64 {
        self.sent
    }

    /// Messages handed to a receiving node so far.
    pub(super) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The nodes handed back, by index.
    pub(super) fn take_nodes(&mut self) -> BTreeMap<usize, Node> {
        std::mem::take(&mut self.nodes)
    }

    /// The running nodes' views (`None` without a liveness bound).
    pub(super) fn views(&self) -> Option<&[Option<View>]> {
        self.checks.views.as_deref()
    }

    /// Records `failure` at `now` (on `node`) unless the run failed already.
    pub(super) fn fail(&mut self, now: Timestamp, node: usize, failure: Failure) {
        if self.checks.failure.is_none() {
            self.checks.failure = Some(failure);
            self.records.push((now, node, Record::Failed));
        }
    }

    fn violated(&mut self, now: Timestamp, node: usize, v: Violation) {
        self.fail(now, node, Failure::Invariant(v));
    }

    /// Node `node`'s resource manager refused `r` at `now`; the first refusal since the
    /// last `refused` lines schedules them at the end of the current minute of the run.
    pub(super) fn refused(&mut self, now: Timestamp, node: usize, r: Refusal) {
        if self.acct.refused(node, r) {
            let period = REFUSAL_LINE_PERIOD.as_micros() as u64;
            let since = now.saturating_since(World::epoch()).as_micros() as u64;
            let at = World::epoch().as_micros() + (since / period + 1) * period;
            self.refusals_due = Some(Timestamp::from_micros(at));
        }
    }

    /// Queues the `refused` lines at `at` (the minute's end, or the end of the run).
    pub(super) fn refusal_lines(&mut self, at: Timestamp) {
        self.refusals_due = None;
        for (node, counts) in self.acct.take_minute() {
            let text: Vec<String> = counts.iter().map(|(r, n)| format!("{r}={n}")).collect();
            self.records
                .push((at, node as usize, Record::Refused(text.join(" "))));
        }
    }

    /// The checks of node `index`'s resource manager after an operation about `peer`.
    pub(super) fn rcmgr_checked(
        &mut self,
        now: Timestamp,
        index: usize,
        rm: &ResourceManager,
        peer: Option<&PeerId>,
        full: bool,
    ) {
        if self.checks.failure.is_some() {
            return;
        }
        let Checks {
            world, registry, ..
        } = &mut self.checks;
        let ctx = Ctx {
            world,
            elapsed: check::elapsed(now),
        };
        if let Err(v) = registry.on_rcmgr(&ctx, index, rm, peer, full) {
            self.violated(now, index, v);
        }
    }

    /// Draws whether a message sent now is lost to a loss burst.
    pub(super) fn draw_loss(&mut self) -> bool {
        let loss = &mut self.loss;
        if loss.bursts.is_empty() {
            return false;
        }
        let kept: f64 = loss.bursts.iter().map(|(_, p)| 1.0 - p).product();
        loss.rng.random::<f64>() >= kept
    }

    /// The per-step checks of node `index`, right after its driver drained its outputs.
    pub(super) fn after_step(&mut self, index: usize, node: &Node, now: Timestamp) {
        if let Some(jobs) = self.jobs.as_mut() {
            jobs.stepped(index, node);
        }
        if self.checks.failure.is_some() {
            return;
        }
        if let Some(views) = self.checks.views.as_mut() {
            views[index] = Some(View::of(node));
        }
        let Checks {
            world, registry, ..
        } = &mut self.checks;
        let ctx = Ctx {
            world,
            elapsed: check::elapsed(now),
        };
        if let Err(v) = registry.on_node(&ctx, index, node) {
            self.violated(now, index, v);
        }
    }
}

/// The [`Observer`] of node `index`: records its events at the simulation's virtual time
/// (not the node's own clock, which may be skewed), checks them, and counts its messages.
#[derive(Clone)]
pub(super) struct Recorder {
    pub(super) index: usize,
    pub(super) shared: SharedRef,
}

impl Observer for Recorder {
    fn event(&mut self, now: Timestamp, _: &Node, event: &Event) {
        let at = sim_now().unwrap_or(now);
        let mut shared = self.shared.lock();
        let shared = &mut *shared;
        if shared.checks.failure.is_some() {
            return;
        }
        let checks = &mut shared.checks;
        if let Event::Connected { peer, .. }
        | Event::Disconnected { peer }
        | Event::Dropping { peer, .. } = event
            && let Some(other) = checks.world.index_of(peer)
        {
            let (a, b) = (self.index.min(other) as u32, self.index.max(other) as u32);
            checks.changed.insert((a, b), at);
        }
        let ctx = Ctx {
            world: &checks.world,
            elapsed: check::elapsed(at),
        };
        let checked = checks.registry.on_event(&ctx, self.index, event);
        match event {
            Event::Rtt { peer, .. } => {
                let p = checks.world.index_of(peer);
                shared.acct.ping(self.index, p, true);
            }
            Event::PingTimeout { peer, .. } => {
                let p = checks.world.index_of(peer);
                shared.acct.ping(self.index, p, false);
            }
            Event::Trimmed { .. } => {
                shared.company.trimmed(self.index, ctx.elapsed);
            }
            Event::Job(e) => {
                if let Some(jobs) = shared.jobs.as_mut() {
                    jobs.event(self.index, ctx.elapsed, e);
                }
            }
            _ => {}
        }
        shared
            .records
            .push((at, self.index, Record::Event(event.clone())));
        if let Err(v) = checked {
            shared.violated(at, self.index, v);
        }
    }

    fn transmit(&mut self, now: Timestamp, _: &Node, _: &Transmit) {
        let mut shared = self.shared.lock();
        shared.sent += 1;
        let at = sim_now().unwrap_or(now);
        shared.records.push((at, self.index, Record::Sent));
    }

    fn received(&mut self, now: Timestamp, _: &Node, _: &PeerId, _: &Message) {
        let mut shared = self.shared.lock();
        shared.delivered += 1;
        let at = sim_now().unwrap_or(now);
        shared.records.push((at, self.index, Record::Delivered));
    }
}

/// Where the resource manager of host `index` reports: refusals and checks, at the
/// simulation's time.
pub(super) struct HostReport {
    pub(super) index: usize,
    pub(super) shared: SharedRef,
}

impl RcmgrReport for HostReport {
    fn refused(&self, r: Refusal) {
        let now = sim_now().unwrap_or(Timestamp::ZERO);
        self.shared.lock().refused(now, self.index, r);
    }

    fn checked(&self, rm: &ResourceManager, peer: Option<&PeerId>) {
        let now = sim_now().unwrap_or(Timestamp::ZERO);
        self.shared
            .lock()
            .rcmgr_checked(now, self.index, rm, peer, false);
    }
}
