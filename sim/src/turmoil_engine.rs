//! The turmoil engine: every peer is a turmoil host running the production async driver
//! ([`flotilla_node::driver::Driver`]) over simulated TCP, with tokio time virtualised.
//!
//! Modules:
//! - [`network`]: [`TurmoilNetwork`], the driver's `Network` on turmoil TCP sockets, with the
//!   production framing after a peer-id preamble;
//! - [`connection`]: the listener, dial, reader and writer tasks behind it;
//! - [`host`]: the software of one host ([`run_node`]) and the virtual clock ([`sim_now`]);
//! - `recorder`: the trace records and message counters the hosts share with [`run`].
//!
//! [`run`] runs a [`World`] the way the fleet engine does, with the same trace format: one
//! turmoil host per peer, named and addressed by the world's listen addresses
//! (`/dns4/n<i>/tcp/<port>`), each starting at its start offset. Approximations of the
//! world's latency model, all deterministic:
//!
//! - each link gets one fixed one-way delay, drawn once per pair from the world's model
//!   ([`World::one_way`]: half the base RTT plus one jitter draw); turmoil's own per-message
//!   jitter is not used, so one link's delay does not vary from message to message;
//! - turmoil moves messages at tick boundaries, so every one-way delay is rounded up to a
//!   multiple of the tick ([`TICK`], 10 ms by default: RTT samples are a few ticks coarse);
//! - turmoil answers a SYN without a return trip, so a dialler sees its connection up one
//!   one-way delay after dialling (the fleet engine: one round trip);
//! - the trace time of an event is the simulation's time, whatever the node's clock says.
//!
//! Cost: every step ticks every host's runtime and scans every pair of hosts (stock turmoil),
//! so wall time grows with hosts squared times steps: 100 peers for 120 simulated seconds
//! take about 18 s in release on two cores at the 10 ms tick (10 s at 20 ms, 36 s at 5 ms).
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
pub mod host;
pub mod network;
mod recorder;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use flotilla_core::Timestamp;
use rand::Rng;

pub use connection::{ConnError, DIAL_TIMEOUT, HANDSHAKE_TIMEOUT, WRITE_QUEUE_MAX};
pub use host::{HostError, HostSpec, PORT, run_node, sim_now};
pub use network::{AddrError, EVENT_QUEUE_MAX, TurmoilNetwork, addr_of, parse_addr};

use crate::engine::RunResult;
use crate::trace::Trace;
use crate::world::World;
use recorder::{Recorder, Shared, SharedRef};

/// Simulated time per turmoil step in [`run`].
pub const TICK: Duration = Duration::from_millis(10);
/// Segments a TCP stream buffers, and SYNs a listener queues, at least. turmoil panics when
/// a listener's queue overflows, so [`run`] raises it to the number of peers if larger.
pub const TCP_SEGMENTS_MIN: usize = 256;

/// Runs `world` for `duration` of simulated time on turmoil, recording into `trace`, with a
/// [`TICK`] step.
///
/// # Panics
/// If a host fails (it cannot bind its port, or a node refuses its configuration) or does not
/// hand back its node: a broken setup, not an outcome of the run.
pub fn run(world: &World, trace: Trace, duration: Duration) -> RunResult {
    run_with_tick(world, trace, duration, TICK)
}

/// [`run`] with a chosen step: a shorter tick resolves latency more finely and runs slower.
///
/// # Panics
/// As [`run`]; also if `tick` is zero.
pub fn run_with_tick(
    world: &World,
    mut trace: Trace,
    duration: Duration,
    tick: Duration,
) -> RunResult {
    assert!(!tick.is_zero(), "the turmoil tick must be longer than zero");
    let epoch = World::epoch();
    let end = epoch + duration;
    let shared: SharedRef = Rc::new(RefCell::new(Shared::default()));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut rng = world.network_rng();
    let mut sim = turmoil::Builder::new()
        .rng_seed(rng.random())
        .epoch(UNIX_EPOCH + Duration::from_micros(epoch.as_micros()))
        .simulation_duration(duration + 2 * tick)
        .tick_duration(tick)
        .tcp_capacity(world.len().max(TCP_SEGMENTS_MIN))
        .build();
    let names: Vec<String> = world
        .peers()
        .iter()
        .map(|p| endpoint(world, p.index).0)
        .collect();
    for p in world.peers() {
        let (name, port) = endpoint(world, p.index);
        let spec = HostSpec {
            config: p.config.clone(),
            keypair: p.keypair.clone(),
            seed: p.protocol_seed,
            clock_ahead: Duration::ZERO,
            end,
            port,
            messages_dropped: Arc::clone(&dropped),
        };
        let start = Start {
            at: epoch + p.start_offset,
            region: world.region_name(p.index).to_string(),
            last_mile: p.last_mile,
            bootstrap: p.bootstrap,
        };
        let recorder = Recorder {
            index: p.index,
            shared: Rc::clone(&shared),
        };
        sim.host(name, move || {
            host(spec.clone(), start.clone(), recorder.clone())
        });
    }
    set_latencies(&sim, world, &names, &mut rng);
    while sim.elapsed() <= duration + tick {
        if let Err(e) = sim.step() {
            panic!("a turmoil host failed: {e}");
        }
        shared.borrow_mut().drain_into(&mut trace);
    }
    drop(sim);
    let mut shared = shared.borrow_mut();
    shared.drain_into(&mut trace);
    let (sent, delivered) = (shared.sent(), shared.delivered());
    let dropped = dropped.load(Ordering::Relaxed);
    let in_flight = sent.saturating_sub(delivered + dropped);
    trace.run_ended(end, sent, delivered, dropped, in_flight);
    let mut nodes = shared.take_nodes();
    // Every host starts by the end (start offsets are within the duration) and its network
    // stops at the end, so every driver has returned its node by now.
    let nodes = (0..world.len())
        .map(|i| match nodes.remove(&i) {
            Some(node) => node,
            None => panic!("host n{i} did not hand back its node by the end of the run"),
        })
        .collect();
    RunResult {
        nodes,
        messages_sent: sent,
        messages_delivered: delivered,
        trace,
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

/// Gives every pair of hosts its one-way delay, drawn from the world's model.
fn set_latencies(sim: &turmoil::Sim<'_>, world: &World, names: &[String], rng: &mut impl Rng) {
    for a in 0..names.len() {
        for b in a + 1..names.len() {
            let one_way = world.one_way(a, b, rng);
            sim.set_link_latency(names[a].as_str(), names[b].as_str(), one_way);
        }
    }
}

/// When and how a host's node starts, for its trace line.
#[derive(Clone, Debug)]
struct Start {
    at: Timestamp,
    region: String,
    last_mile: Duration,
    bootstrap: bool,
}

/// The software of one host: wait for the start offset, run the node to the end, keep it.
async fn host(spec: HostSpec, start: Start, recorder: Recorder) -> turmoil::Result {
    let now = sim_now().ok_or(HostError::NotSimulated)?;
    tokio::time::sleep(start.at.saturating_since(now)).await;
    let now = sim_now().ok_or(HostError::NotSimulated)?;
    let index = recorder.index;
    let shared = Rc::clone(&recorder.shared);
    shared
        .borrow_mut()
        .started(now, index, &start.region, start.last_mile, start.bootstrap);
    let node = run_node(spec, recorder).await?;
    shared.borrow_mut().finished(index, node);
    Ok(())
}

#[cfg(test)]
mod tests;
