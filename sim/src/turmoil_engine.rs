//! The turmoil engine: every peer is a turmoil host running the production async driver
//! ([`flotilla_node::driver::Driver`]) over simulated TCP, with tokio time virtualised.
//!
//! Modules:
//! - [`network`]: [`TurmoilNetwork`], the driver's `Network` on turmoil TCP sockets, with the
//!   production framing after a peer-id preamble;
//! - [`connection`]: the listener, dial, reader and writer tasks behind it;
//! - [`host`]: the software of one host ([`run_node`]) and the virtual clock ([`sim_now`]);
//! - `faults`: the network wrapper of a checked run (loss bursts, per-step checks, halt)
//!   and the skewable driver clock;
//! - `recorder`: the trace records, message counters, invariant checks and liveness views
//!   the hosts share with the engine loop;
//! - `jobs`: the executors, deployment rounds and tally of `[jobs]`.
//!
//! [`run_with`] runs a [`World`] the way the fleet engine does, with the same trace format,
//! the same [`Plan`] (faults, invariants, liveness, `[debug]`) and the same exit codes: one
//! turmoil host per peer, named and addressed by the world's listen addresses
//! (`/dns4/n<i>/tcp/<port>`), added to turmoil when its node starts. [`run`] is the same
//! without faults or checks. Approximations of the world's latency model, all
//! deterministic:
//!
//! - each link gets one fixed one-way delay, drawn once per pair from the world's model
//!   ([`World::one_way`]: half the base RTT plus one jitter draw); turmoil's own per-message
//!   jitter is not used, so one link's delay does not vary from message to message;
//! - turmoil moves messages and wakes hosts at tick boundaries ([`TICK`], 10 ms by default),
//!   so a one-way delay comes out to within a tick and an RTT sample up to two ticks short of
//!   the model or a few ticks over it (the `rtt-floor` invariant allows two ticks here);
//! - turmoil answers a SYN without a return trip, so a dialler sees its connection up one
//!   one-way delay after dialling (the fleet engine: one round trip);
//! - a host joins turmoil when its node starts, so a dial to a peer that has not started is
//!   refused at once (the fleet engine: after a round trip);
//! - the trace time of an event is the simulation's time, whatever the node's clock says.
//!
//! Faults follow the engine-neutral schedule ([`schedule::expand`]: the same peers and
//! times as on the fleet engine, applied at the first tick boundary at or after their time),
//! approximated on turmoil as follows:
//!
//! - **partition**: turmoil cuts every directed link from side a to side b (and back unless
//!   one-way); turmoil drops the TCP segments sent across, and those on their way when the
//!   cut starts, so a dial across times out after [`DIAL_TIMEOUT`], a stream that lost a
//!   segment stalls until the nodes' pings give up on it, and lost messages show as
//!   `in_flight` in the `end` line, not as `dropped`;
//! - **crash**: turmoil stops the host's software; dropping its sockets sends their closes,
//!   so the peers see the connections close about one one-way delay later (as on the fleet
//!   engine), and later segments to it are refused; a restart starts the host's software
//!   again, which builds a fresh node with the same key;
//! - **loss**: every message the node hands to the network is dropped (and counted) with
//!   the burst's probability, from the seed's fault stream in host order;
//! - **clock skew**: the node's clock reads simulated time plus the offset; a sleep re-arms
//!   when the offset changes.
//!
//! Resource accounting ([`crate::account`]): every host's network holds the node's
//! resource manager ([`network::NetRcmgr`]) with its profile's limits. The listener admits
//! an inbound connection when it accepts it, from the dialling host's simulated address
//! ([`crate::world::sim_ip`]), and answers a refused one with the reason instead of its
//! preamble, so the dialler's dial fails with `limit:<scope>.<resource>`; a connection
//! moves to its peer (an outbound one opens) when its handshake is done; each received
//! frame is a stream on the core protocol while the driver handles it. Refusals reach the
//! engine's counts and `refused` lines, and each operation the `usage-within-limits`
//! check. `[[workload]]` floods stay fleet-only.
//!
//! Jobs (`[jobs]`) use the world's plan, as on the fleet engine: the same compute
//! providers, capacities, prices and seeded executors ([`World::executor`]: a fresh seed
//! per start), the same service providers and deployment times ([`World::first_rounds`]).
//! A provider's host onboards its capacity into the node and gives the driver a
//! [`SimRunner`]: the simulated executor in a task of the host on the node's clock, its
//! events fed back through the driver's executor channel. A service provider's host deploys
//! the templates in turn through the driver's handle (the API's `Deploy` command). Job
//! events reach the trace (the same `deployment`, `allocation` and `job-refused` lines),
//! the `jobs` summary and the `capacity` and `deployment-bound` checks (per event, and
//! after every driver step) through the host's observer. Approximated on turmoil as
//! follows:
//!
//! - a deployment round fires at the first tick boundary at or after its time (the fleet
//!   engine: at its time), and a round that falls while the service provider is down is
//!   skipped, as on the fleet engine;
//! - an executor event reaches the node at the first tick boundary at or after it is due,
//!   so a job's start, logs and exit come up to a tick later than on the fleet engine, and
//!   the times from deploy to running come out on tick boundaries;
//! - a crash stops the host's software with its executor task: the provider's jobs vanish
//!   and their service providers end the deployments by their deadlines; a crashed
//!   service provider's live deployments count as lost and its job counters as of its last
//!   step still reach the summary;
//! - bids, commits and job reports travel over the simulated TCP like every message, so
//!   the numbers (bids, allocations, times) differ from the fleet engine's while the
//!   deployments asked and their outcomes mostly agree.
//!
//! Checks: every driver step ends with the plan's per-node checks, every event goes through
//! the per-event ones; the loop stops after the step of the first violation (its `failed`
//! line in time order, the rest of that step's lines dropped). Liveness probes run at the
//! first tick boundary of every second of the liveness phase, on copies of the running
//! nodes' connections. The end-of-run symmetry check counts a pair as settled if neither end
//! saw their connection go up or down, or asked to drop it, within three one-way delays and
//! two ticks of the end.
//!
//! Cost: every turmoil step ticks every host's runtime and, per host, scans every link
//! between hosts (stock turmoil), so wall time grows with the hosts cubed times the steps;
//! adding hosts only as their nodes start keeps the early steps cheap. Profiled, turmoil's
//! per-host link scan takes about 85% of the time, this engine's own per-step work (trace
//! records, checks) a few percent. The quickstart network cut to 200 peers and 60 s with
//! a 60 s start spread takes about 30 s wall and 26 s of CPU in release on two cores at
//! the 10 ms tick (106 s wall before hosts joined as they start). The tick trades cost for
//! RTT resolution ([`run_with_tick`]; mean neighbour RTT measured over the model's, same
//! run and machine): 5 ms, +3% and about twice the time of 10 ms, +5%; 20 ms, +7% and a
//! third of the time.
//!
//! [`run_node`] runs one node inside a hand-built `turmoil::Sim` instead, for tests that
//! need turmoil's faults directly (crash, bounce, partition, hold).
//!
//! Determinism: one `rng_seed` and one `epoch` fix a run. Nothing here reads the wall clock,
//! draws OS randomness or iterates a hash map; every `select!` is `biased`.
//!
//! ```
//! use flotilla_sim::{Scenario, Trace, engine, turmoil_engine};
//!
//! let text = "name = \"tiny\"\nduration_s = 30\n[peers]\ncount = 5\n";
//! let scenario = Scenario::parse(text, "tiny.toml").unwrap();
//! let world = engine::world(&scenario, 1);
//! let result = turmoil_engine::run(&world, Trace::new(&world), world.duration());
//! assert_eq!(result.nodes.len(), 5);
//! assert!(result.nodes.iter().all(|n| n.connections().count() > 0));
//! ```

pub mod connection;
mod faults;
pub mod host;
mod jobs;
pub mod network;
mod recorder;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use flotilla_core::{Node, Timestamp};
use flotilla_node::clock::Clock;
use flotilla_node::simrunner::SimRunner;
use rand::Rng;
use tokio::sync::watch;

pub use connection::{ConnError, DIAL_TIMEOUT, HANDSHAKE_TIMEOUT, WRITE_QUEUE_MAX};
pub use host::{HostError, HostSpec, PORT, run_node, sim_now};
pub use network::{AddrError, EVENT_QUEUE_MAX, TurmoilNetwork, addr_of, parse_addr};

use crate::check::liveness::{self, PROBE_INTERVAL, Timeout};
use crate::check::{self, Ctx, Failure, LinkView, Registry};
use crate::engine::RunResult;
use crate::fleet::Plan;
use crate::scenario::{Fault, FaultKind, Scenario};
use crate::schedule::{self, Step};
use crate::trace::Trace;
use crate::world::World;
use faults::{Checked, SkewClock};
use network::NetRcmgr;
use recorder::{HostReport, Recorder, SharedRef};

/// Simulated time per turmoil step in [`run`].
pub const TICK: Duration = Duration::from_millis(10);
/// Segments a TCP stream buffers, and SYNs a listener queues, at least. turmoil panics when
/// a listener's queue overflows, so [`run`] raises it to the number of peers if larger.
pub const TCP_SEGMENTS_MIN: usize = 256;

/// Runs `world` for `duration` of simulated time on turmoil, recording into `trace`, with a
/// [`TICK`] step, without faults or checks.
///
/// # Panics
/// If a host fails (it cannot bind its port, or a node refuses its configuration): a broken
/// setup, not an outcome of the run.
pub fn run(world: &World, trace: Trace, duration: Duration) -> RunResult {
    run_with(world, trace, duration, Plan::none(), TICK).0
}

/// [`run`] with a chosen step: a shorter tick resolves latency more finely and runs slower.
///
/// # Panics
/// As [`run`]; also if `tick` is zero.
pub fn run_with_tick(world: &World, trace: Trace, duration: Duration, tick: Duration) -> RunResult {
    run_with(world, trace, duration, Plan::none(), tick).0
}

/// Runs `world` for `duration` with the faults and checks of `plan`, stepping turmoil by
/// `tick`; the run stops at the first failure, which is returned with the result.
///
/// # Panics
/// As [`run_with_tick`]; and at the first step at or after `plan.panic_after`.
pub fn run_with(
    world: &World,
    trace: Trace,
    duration: Duration,
    plan: Plan,
    tick: Duration,
) -> (RunResult, Option<Failure>) {
    assert!(!tick.is_zero(), "the turmoil tick must be longer than zero");
    Engine::new(world, trace, duration, plan, tick).run()
}

/// The [`Plan`] of `scenario` on turmoil at `tick`: the fleet engine's, with an RTT floor
/// two ticks lower (see the module doc for why samples come out short).
pub fn plan(scenario: &Scenario, tick: Duration) -> Plan {
    Plan {
        checks: Registry::standard_with_rtt_slack(scenario, 2 * tick),
        ..Plan::of(scenario)
    }
}

/// The state of a turmoil run besides turmoil's own.
struct Engine<'w> {
    world: &'w World,
    sim: turmoil::Sim<'w>,
    trace: Trace,
    shared: SharedRef,
    names: Vec<String>,
    epoch: Timestamp,
    end: Timestamp,
    tick: Duration,
    dropped: Arc<AtomicU64>,
    halt: watch::Sender<bool>,
    skews: Vec<watch::Sender<i64>>,
    faults: Vec<Fault>,
    /// The fault schedule, sorted by time (ties in schedule order).
    steps: Vec<(Duration, Step)>,
    next_step: usize,
    /// Active partitions: fault, every node's side, one-way.
    cuts: Vec<(u32, Vec<u8>, bool)>,
    /// Directed pairs `from * n + to` that turmoil currently cuts.
    blocked: Vec<bool>,
    down: Vec<bool>,
    /// Hosts added to turmoil.
    added: Vec<bool>,
    /// Peers by start offset (ties by index): hosts join turmoil in this order.
    pending: Vec<usize>,
    /// Each service provider's first deployment round, after the run's start.
    first_rounds: Vec<Option<Duration>>,
    next_pending: usize,
    /// Each link's one-way delay, `a * n + b` with `a < b`.
    delays: Vec<Duration>,
    liveness: Option<(Timestamp, Duration)>,
    next_probe: Timestamp,
    panic_at: Timestamp,
    /// When the run stopped early.
    stopped: Option<Timestamp>,
}

impl<'w> Engine<'w> {
    fn new(world: &'w World, trace: Trace, duration: Duration, plan: Plan, tick: Duration) -> Self {
        let n = world.len();
        let epoch = World::epoch();
        let end = epoch + duration;
        let mut rng = world.network_rng();
        let sim = turmoil::Builder::new()
            .rng_seed(rng.random())
            .epoch(UNIX_EPOCH + Duration::from_micros(epoch.as_micros()))
            .simulation_duration(duration + 2 * tick)
            .tick_duration(tick)
            .tcp_capacity(n.max(TCP_SEGMENTS_MIN))
            .build();
        let mut delays = vec![Duration::ZERO; n * n];
        for a in 0..n {
            for b in a + 1..n {
                delays[a * n + b] = world.one_way(a, b, &mut rng);
            }
        }
        let liveness = plan.liveness.map(|(from, bound)| (epoch + from, bound));
        let shared = SharedRef::new(
            Arc::new(world.clone()),
            plan.checks,
            liveness.is_some(),
            plan.rcmgr_reported,
        );
        let mut steps = schedule::expand(world, &plan.faults);
        steps.sort_by_key(|(at, _)| *at);
        let (halt, _) = watch::channel(false);
        let mut pending: Vec<usize> = (0..n).collect();
        pending.sort_by_key(|i| world.peer(*i).start_offset);
        let mut first_rounds = vec![None; n];
        for (i, at) in world.first_rounds() {
            first_rounds[i] = Some(at);
        }
        Engine {
            world,
            sim,
            trace,
            shared,
            names: (0..n).map(|i| endpoint(world, i).0).collect(),
            epoch,
            end,
            tick,
            dropped: Arc::new(AtomicU64::new(0)),
            halt,
            skews: (0..n).map(|_| watch::channel(0).0).collect(),
            faults: plan.faults,
            steps,
            next_step: 0,
            cuts: Vec::new(),
            blocked: vec![false; n * n],
            down: vec![false; n],
            added: vec![false; n],
            pending,
            first_rounds,
            next_pending: 0,
            delays,
            next_probe: liveness.map_or(Timestamp::MAX, |(from, _)| from),
            liveness,
            panic_at: plan.panic_after.map_or(Timestamp::MAX, |d| epoch + d),
            stopped: None,
        }
    }

    fn delay(&self, a: usize, b: usize) -> Duration {
        let n = self.world.len();
        self.delays[a.min(b) * n + a.max(b)]
    }

    fn now(&self) -> Timestamp {
        self.epoch + self.sim.elapsed()
    }

    fn run(mut self) -> (RunResult, Option<Failure>) {
        // Name every host up front, in peer order, so that its address does not depend on
        // when another host first dials it.
        for name in &self.names {
            self.sim.lookup(name.as_str());
        }
        let duration = self.end.saturating_since(self.epoch);
        // At each step boundary, as in the fleet engine's queue: the fault steps due, then
        // the liveness probe, then the hosts.
        loop {
            let now = self.now();
            while let Some((at, step)) = self.steps.get(self.next_step).copied()
                && self.epoch + at <= now
                && now <= self.end
            {
                self.next_step += 1;
                self.fault_step(step);
            }
            self.add_due_hosts(now);
            if now >= self.next_probe && now <= self.end {
                self.probe();
                if self.stopped.is_some() {
                    break;
                }
            }
            if self.sim.elapsed() > duration + self.tick {
                break;
            }
            assert!(
                now < self.panic_at,
                "deliberate crash requested by debug.panic_after_s"
            );
            if let Err(e) = self.sim.step() {
                panic!("a turmoil host failed: {e}");
            }
            let failed_at = {
                let mut shared = self.shared.lock();
                if let Some(at) = shared.refusals_due
                    && at <= self.now()
                {
                    shared.refusal_lines(at);
                }
                shared.drain_into(&mut self.trace);
                match &shared.checks.failure {
                    Some(Failure::Invariant(v)) => Some(self.epoch + v.at),
                    Some(_) => Some(self.now()),
                    None => None,
                }
            };
            if let Some(at) = failed_at {
                self.stop(at);
                break;
            }
        }
        self.finish()
    }

    /// Adds the hosts whose node starts before the next step ends (and that are not down):
    /// a host joins turmoil only when its node starts, because every step costs turmoil
    /// time in proportion to the hosts times the links between them.
    fn add_due_hosts(&mut self, now: Timestamp) {
        while let Some(&i) = self.pending.get(self.next_pending)
            && self.epoch + self.world.peer(i).start_offset < now + self.tick
        {
            self.next_pending += 1;
            if !self.down[i] && !self.added[i] {
                let at = self.epoch + self.world.peer(i).start_offset;
                self.add_host(i, at);
            }
        }
    }

    /// Adds the host of peer `i` to turmoil, with its links to the hosts already there: it
    /// waits until `at`, then runs its node.
    fn add_host(&mut self, i: usize, at: Timestamp) {
        let p = self.world.peer(i);
        let (name, port) = endpoint(self.world, i);
        let spec = HostSpec {
            config: p.config.clone(),
            keypair: p.keypair.clone(),
            seed: p.protocol_seed,
            clock_ahead: Duration::ZERO,
            end: self.end,
            port,
            messages_dropped: Arc::clone(&self.dropped),
        };
        let start = Start {
            at,
            region: self.world.region_name(i).to_string(),
            last_mile: p.last_mile,
            bootstrap: p.bootstrap,
            class: self.world.class_name(i).map(str::to_string),
            first_round: self.first_rounds[i],
        };
        let ctl = Ctl {
            recorder: Recorder {
                index: i,
                shared: self.shared.clone(),
            },
            halt: self.halt.subscribe(),
            skew_us: self.skews[i].subscribe(),
        };
        self.sim
            .host(name, move || host(spec.clone(), start.clone(), ctl.clone()));
        let n = self.world.len();
        for j in 0..n {
            if !self.added[j] {
                continue;
            }
            let (a, b) = (self.names[i].as_str(), self.names[j].as_str());
            self.sim.set_link_latency(a, b, self.delay(i, j));
            if self.blocked[i * n + j] {
                self.sim.partition_oneway(a, b);
            }
            if self.blocked[j * n + i] {
                self.sim.partition_oneway(b, a);
            }
        }
        self.added[i] = true;
    }

    /// Records a failure the engine loop found, and stops the run.
    fn fail(&mut self, failure: Failure) {
        let now = self.now();
        self.trace
            .note(now, None, "failed", format_args!("{failure}"));
        self.shared.lock().checks.failure = Some(failure);
        self.stop(now);
    }

    /// Stops the run early (at `at`, for the trace): every driver returns its node within
    /// one more step.
    fn stop(&mut self, at: Timestamp) {
        self.stopped = Some(at);
        self.halt.send_replace(true);
        if let Err(e) = self.sim.step() {
            panic!("a turmoil host failed: {e}");
        }
        self.shared.lock().discard_records();
    }

    /// A liveness probe: converged ends the phase, a passed deadline fails the run.
    fn probe(&mut self) {
        let Some((from, bound)) = self.liveness else {
            return;
        };
        let now = self.now();
        let verdict = {
            let shared = self.shared.lock();
            let n = self.world.len();
            let blocked = &self.blocked;
            let usable = |a: usize, b: usize| !blocked[a * n + b] && !blocked[b * n + a];
            match shared.views() {
                Some(views) => liveness::converged(self.world, views, usable),
                None => Ok(()),
            }
        };
        match verdict {
            Ok(()) => {
                let after = now.saturating_since(from);
                self.trace.note(
                    now,
                    None,
                    "converged",
                    format_args!("after={:.6}s", after.as_secs_f64()),
                );
                self.liveness = None;
                self.next_probe = Timestamp::MAX;
            }
            Err(reason) if now >= from + bound => {
                self.fail(Failure::Liveness(Timeout {
                    from: check::elapsed(from),
                    bound,
                    reason,
                }));
            }
            Err(_) => self.next_probe = (now + PROBE_INTERVAL).min(from + bound),
        }
    }

    /// Applies one step of the fault schedule.
    fn fault_step(&mut self, step: Step) {
        let now = self.now();
        match step {
            Step::Crash { node } => {
                let i = node as usize;
                if self.down[i] {
                    return;
                }
                self.down[i] = true;
                let was_running = {
                    let mut shared = self.shared.lock();
                    let running = shared.running[i];
                    shared.crashed(i);
                    running
                };
                let state = if was_running {
                    "running"
                } else {
                    "not-started"
                };
                self.trace
                    .note(now, Some(i), "crash", format_args!("{state}"));
                if self.added[i] {
                    self.sim.crash(self.names[i].as_str());
                }
            }
            Step::Restart { node } => {
                let i = node as usize;
                if self.down[i] {
                    self.down[i] = false;
                    self.trace
                        .note(now, Some(i), "restart", format_args!("fresh"));
                    if self.added[i] {
                        self.sim.bounce(self.names[i].as_str());
                    } else {
                        // It crashed before it started: it starts now, as on the fleet
                        // engine.
                        self.add_host(i, now);
                    }
                }
            }
            Step::Toggle { fault, on } => self.toggle(fault, on),
            // Workloads are refused on this engine before a run starts.
            Step::Flood { .. } => {}
        }
    }

    fn toggle(&mut self, k: u32, on: bool) {
        let Some(fault) = self.faults.get(k as usize).cloned() else {
            return;
        };
        let Some((name, what)) = schedule::describe(&fault.kind) else {
            return;
        };
        let state = if on { "on" } else { "off" };
        self.trace.note(
            self.now(),
            None,
            "fault",
            format_args!("#{k} {name} {state} {what}"),
        );
        match &fault.kind {
            FaultKind::Partition { a, b, one_way } => {
                self.cuts.retain(|(f, _, _)| *f != k);
                if on {
                    let sides = schedule::sides(self.world, a, b.as_ref());
                    self.cuts.push((k, sides, *one_way));
                }
                self.apply_cuts();
            }
            FaultKind::Loss { probability } => {
                let mut shared = self.shared.lock();
                shared.loss.bursts.retain(|(f, _)| *f != k);
                if on {
                    shared.loss.bursts.push((k, *probability));
                }
            }
            FaultKind::ClockSkew { nodes, offset_us } => {
                for i in nodes {
                    self.skews[*i].send_replace(if on { *offset_us } else { 0 });
                }
            }
            FaultKind::Crash { .. } => {}
        }
    }

    /// Makes turmoil cut exactly the directed links that the active partitions cut.
    fn apply_cuts(&mut self) {
        let n = self.world.len();
        for from in 0..n {
            for to in 0..n {
                if from == to {
                    continue;
                }
                let cut = self
                    .cuts
                    .iter()
                    .any(|(_, sides, one_way)| schedule::cuts(sides, *one_way, from, to));
                if cut != self.blocked[from * n + to] {
                    self.blocked[from * n + to] = cut;
                    if !self.added[from] || !self.added[to] {
                        continue;
                    }
                    let (a, b) = (self.names[from].as_str(), self.names[to].as_str());
                    if cut {
                        self.sim.partition_oneway(a, b);
                    } else {
                        self.sim.repair_oneway(a, b);
                    }
                }
            }
        }
    }

    /// Ends the run: the end-of-run checks, the last trace line, the nodes.
    fn finish(mut self) -> (RunResult, Option<Failure>) {
        let end = self.stopped.unwrap_or(self.end);
        let n = self.world.len();
        drop(self.sim);
        let mut shared = self.shared.lock();
        if let Some(at) = shared.refusals_due {
            shared.refusal_lines(at.min(end));
        }
        shared.drain_into(&mut self.trace);
        let mut handed = shared.take_nodes();
        let mut nodes: Vec<Option<Node>> = (0..n)
            .map(|i| {
                if self.down[i] {
                    None
                } else {
                    handed.remove(&i)
                }
            })
            .collect();
        if shared.checks.failure.is_none() {
            let checks = &mut shared.checks;
            let ctx = Ctx {
                world: self.world,
                elapsed: check::elapsed(end),
            };
            let settle = 2 * self.tick;
            let delays = &self.delays;
            let quiet = Quiet {
                changed: &checks.changed,
                end,
                settle: |a: usize, b: usize| 3 * delays[a.min(b) * n + a.max(b)] + settle,
            };
            if let Err(v) = checks.registry.on_end(&ctx, &nodes, &quiet) {
                let failure = Failure::Invariant(v);
                self.trace
                    .note(end, None, "failed", format_args!("{failure}"));
                checks.failure = Some(failure);
            }
        }
        let jobs = shared
            .jobs
            .as_ref()
            .map(|j| j.summary(nodes.iter().flatten()));
        let (sent, delivered) = (shared.sent(), shared.delivered());
        let dropped = self.dropped.load(Ordering::Relaxed);
        let in_flight = sent.saturating_sub(delivered + dropped);
        self.trace
            .run_ended(end, sent, delivered, dropped, in_flight);
        let world = self.world;
        let nodes = nodes
            .iter_mut()
            .enumerate()
            .map(|(i, n)| n.take().unwrap_or_else(|| world.new_node(i, end)))
            .collect();
        let failure = shared.checks.failure.take();
        let rcmgr = std::mem::take(&mut shared.acct.stats);
        let company = std::mem::take(&mut shared.company);
        drop(shared);
        let result = RunResult {
            nodes,
            messages_sent: sent,
            messages_delivered: delivered,
            trace: self.trace,
            rcmgr,
            company,
            jobs,
        };
        (result, failure)
    }
}

/// Whether a pair of peers has settled at the end of a turmoil run: neither end saw the
/// connection go up or down, or asked to drop it, within three one-way delays and two
/// ticks of the end (turmoil cannot say what is still on the wire).
struct Quiet<'a, F> {
    changed: &'a std::collections::BTreeMap<(u32, u32), Timestamp>,
    end: Timestamp,
    settle: F,
}

impl<F: Fn(usize, usize) -> Duration> LinkView for Quiet<'_, F> {
    fn quiet(&self, a: usize, b: usize) -> bool {
        let key = (a.min(b) as u32, a.max(b) as u32);
        self.changed
            .get(&key)
            .is_none_or(|t| self.end.saturating_since(*t) > (self.settle)(a, b))
    }
}

/// The turmoil host name and port of peer `i`, from its first listen address, or `n<i>` on
/// [`PORT`] if it has none that parses.
fn endpoint(world: &World, i: usize) -> (String, u16) {
    let parsed = world
        .peer(i)
        .config
        .listen_addrs
        .first()
        .and_then(|a| parse_addr(a).ok());
    parsed.unwrap_or_else(|| (format!("n{i}"), PORT))
}

/// When and how a host's node starts, for its trace line.
#[derive(Clone, Debug)]
struct Start {
    at: Timestamp,
    region: String,
    last_mile: Duration,
    bootstrap: bool,
    /// Its class in `[[classes]]`, if the scenario has classes.
    class: Option<String>,
    /// Its first deployment round, if it is a service provider (`[jobs]`).
    first_round: Option<Duration>,
}

/// What the engine hands every host: the recorder, the halt signal, the clock skew.
#[derive(Clone)]
struct Ctl {
    recorder: Recorder,
    halt: watch::Receiver<bool>,
    skew_us: watch::Receiver<i64>,
}

/// The software of one host: wait for the start offset, run the node to the end (or until
/// the engine halts the run), keep it.
async fn host(spec: HostSpec, start: Start, ctl: Ctl) -> turmoil::Result {
    let now = sim_now().ok_or(HostError::NotSimulated)?;
    tokio::time::sleep(start.at.saturating_since(now)).await;
    let now = sim_now().ok_or(HostError::NotSimulated)?;
    let index = ctl.recorder.index;
    let shared = ctl.recorder.shared.clone();
    shared.lock().started(
        now,
        index,
        &start.region,
        start.last_mile,
        start.bootstrap,
        start.class.as_deref(),
    );
    let port = spec.port;
    let (limits, messages) = {
        let shared = shared.lock();
        let limits = (*shared.checks.world.peer(index).limits).clone();
        (limits, shared.acct.accounts_messages())
    };
    let report = HostReport {
        index,
        shared: shared.clone(),
    };
    let rcmgr = Arc::new(NetRcmgr::new(limits, Box::new(report), messages));
    let net = TurmoilNetwork::bind_with(spec.keypair.peer_id(), port, Some(rcmgr))
        .await
        .map_err(|source| HostError::Bind { port, source })?;
    let left = spec.end.saturating_since(now);
    let net = net
        .stop_at(tokio::time::Instant::now() + left)
        .count_drops_in(Arc::clone(&spec.messages_dropped));
    let halt = ctl.halt.clone();
    let net = Checked {
        inner: net,
        index,
        shared: shared.clone(),
        halt: ctl.halt,
        dropped: spec.messages_dropped,
    };
    let clock = SkewClock::new(now, ctl.skew_us);
    let mut node =
        Node::new(spec.config, spec.keypair, spec.seed, clock.now()).map_err(HostError::Config)?;
    let world = Arc::clone(&shared.lock().checks.world);
    world
        .onboard(index, &mut node)
        .map_err(HostError::Onboard)?;
    let exec = {
        let mut shared = shared.lock();
        shared.jobs.as_mut().and_then(|j| j.executor(&world, index))
    };
    let (driver, handle) =
        flotilla_node::driver::Driver::new(node, net, clock.clone(), ctl.recorder);
    let driver = match exec {
        Some(exec) => {
            let (runner, events) = SimRunner::spawn(exec, clock);
            driver.with_runner(Box::new(runner), events)
        }
        None => driver,
    };
    if let Some(first) = start.first_round {
        tokio::spawn(jobs::deploy_rounds(
            handle,
            shared.clone(),
            index,
            first,
            spec.end,
            halt,
        ));
    }
    let node = driver.run().await;
    shared.lock().finished(index, node);
    Ok(())
}

#[cfg(test)]
mod tests;
