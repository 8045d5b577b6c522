//! The world of one run: every peer's identity, place, access latency, start time and node
//! configuration, drawn from the scenario and the seed, plus the latency model.
//!
//! Both engines build their nodes from the same [`World`], so a scenario and a seed name the
//! same peers (same keys, regions and start offsets) whichever engine runs them. Randomness
//! comes from [`SeedTree::new(seed)`](SeedTree): peer `i` draws its key from
//! `child(i).child(PURPOSE_KEY)`, its protocol decisions from `child(i).child(PURPOSE_PROTOCOL)`
//! and its placement from `child(i).child(PURPOSE_PLACEMENT)`; the network's jitter comes
//! from `child(STREAM_NETWORK)`, a label no peer index reaches. With `[[classes]]`, each
//! non-bootstrap peer draws its class from `child(i).child(PURPOSE_CLASS)` (a class with
//! its own regions places the peer with the same placement draw), and a churning peer
//! draws its sessions and down times from `child(STREAM_CHURN).child(i)`: classes and
//! churn move none of the draws above.
//!
//! Latency model: the base RTT between peers `a` and `b` is the median RTT between their
//! regions plus the last-mile RTT of each end; a one-way delay is half of that plus a
//! seeded uniform jitter from `[0, jitter]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::rcmgr::Limits;
use flotilla_core::seed::{PURPOSE_KEY, PURPOSE_PROTOCOL};
use flotilla_core::{
    BootstrapPeer, Config, Keypair, Node, PeerId, SeedTree, Timestamp, VerifiedAdverts,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::RegionData;
use crate::scenario::{Churn, JobsScenario, Scenario};
pub use jobs::{JobRole, PURPOSE_EXEC, STREAM_JOBS};

mod jobs;

/// Purpose label under a peer's seed: its region, last-mile delay and start offset.
pub const PURPOSE_PLACEMENT: u64 = 0x534d_0001;
/// Purpose label under a peer's seed: its class.
pub const PURPOSE_CLASS: u64 = 0x534d_0002;
/// Label under the root seed for the network's randomness (above every peer index).
pub const STREAM_NETWORK: u64 = 1 << 63;
/// Label under the root seed for the churn of the peers (sessions and down times).
pub const STREAM_CHURN: u64 = STREAM_NETWORK + 17;
/// Label under the root seed for the baseline message loss (`latency.loss`).
pub const STREAM_LOSS: u64 = STREAM_NETWORK + 18;
/// The virtual start of every run: 2026-01-01T00:00:00Z.
const EPOCH_S: u64 = 1_767_225_600;

/// The address of peer `i` in both simulation engines: `/dns4/n<i>/tcp/4001`.
pub fn sim_addr(i: usize) -> String {
    format!("/dns4/n{i}/tcp/4001")
}

/// Peers that share one /24 subnet in [`sim_ip`].
pub const PEERS_PER_SUBNET: usize = 8;

/// The IPv4 address of peer `i` in both simulation engines, as the resource manager of the
/// peers it connects to sees it: peers are numbered into /24 subnets of
/// [`PEERS_PER_SUBNET`] from `10.0.0.0` up, peer `i` being host `i % 8 + 1` of subnet
/// `i / 8` (`n0` to `n7` are `10.0.0.1` to `10.0.0.8`, `n8` is `10.0.1.1`, `n2048` is
/// `10.1.0.1`). So the inbound gate's per-subnet caps and rates count eight peers
/// together, and peers of neighbouring indices share them.
pub fn sim_ip(i: usize) -> std::net::Ipv4Addr {
    let subnet = (i / PEERS_PER_SUBNET) as u32;
    let host = (i % PEERS_PER_SUBNET) as u32 + 1;
    std::net::Ipv4Addr::from((10u32 << 24).wrapping_add(subnet << 8).wrapping_add(host))
}

/// A lookup-only hash map keyed by already random or small keys.
///
/// Its hasher has no random state, so even its iteration order would be the same on every
/// run; it is used only for lookups all the same.
pub(crate) type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// One simulated peer.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Index in the world; the peer is called `n<index>` in traces.
    pub index: usize,
    /// Index of its region in the world's [`RegionData`].
    pub region: usize,
    /// True for the first `peers.bootstrap` peers, known to every peer.
    pub bootstrap: bool,
    /// Access-network RTT added at this end of every path.
    pub last_mile: Duration,
    /// When the peer starts, after the run's epoch.
    pub start_offset: Duration,
    /// Its identity.
    pub keypair: Keypair,
    /// Its peer id.
    pub peer_id: PeerId,
    /// The seed of its protocol decisions.
    pub protocol_seed: SeedTree,
    /// Its complete node configuration.
    pub config: Config,
    /// Its class (index into the scenario's `[[classes]]`), if the scenario has classes
    /// and the peer is not a bootstrap node.
    pub class: Option<usize>,
    /// The limits of its resource manager (shared by the peers of one profile).
    pub limits: Arc<Limits>,
    /// What it does with jobs (`[jobs]`).
    pub job_role: JobRole,
}

/// Everything fixed before a run starts.
#[derive(Debug, Clone)]
pub struct World {
    name: String,
    seed: u64,
    duration: Duration,
    jitter_us: u64,
    data: Arc<RegionData>,
    peers: Vec<Peer>,
    // Hot-path copies of per-peer latency facts, kept dense.
    region_of: Vec<u16>,
    last_mile_us: Vec<u32>,
    by_id: Arc<FastMap<PeerId, u32>>,
    by_addr: BTreeMap<String, usize>,
    /// Names and churn of the scenario's classes.
    classes: Vec<(String, Option<Churn>)>,
    /// Each peer's uplink, kbit/s (0: unlimited).
    uplink_kbps: Vec<f64>,
    /// Probability that a message is lost.
    loss: f64,
    /// One cache of verified adverts for every node: each advert's signature is checked
    /// once per run instead of once per node (outcomes are the same).
    verified: Arc<VerifiedAdverts>,
    /// `[jobs]`, if the scenario has it.
    jobs: Option<Arc<JobsScenario>>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl World {
    /// The world of `scenario` at `seed`; peer `i` listens on `addr_of(i)`.
    pub fn build(scenario: &Scenario, seed: u64, addr_of: impl Fn(usize) -> String) -> World {
        let root = SeedTree::new(seed);
        let n = scenario.peers.count;
        let keypairs: Vec<Keypair> = (0..n)
            .map(|i| Keypair::generate(&mut root.child(i as u64).child(PURPOSE_KEY).rng()))
            .collect();
        let bootstrap: Vec<BootstrapPeer> = (0..scenario.peers.bootstrap)
            .map(|b| BootstrapPeer {
                addr: addr_of(b),
                peer_id: Some(keypairs[b].peer_id()),
            })
            .collect();
        let (lm_min, lm_max) = (
            micros(scenario.latency.last_mile_min),
            micros(scenario.latency.last_mile_max),
        );
        let spread_us = micros(scenario.peers.start_spread);
        let mut peers = Vec::with_capacity(n);
        for (i, keypair) in keypairs.into_iter().enumerate() {
            let node_seed = root.child(i as u64);
            let mut rng = node_seed.child(PURPOSE_PLACEMENT).rng();
            let is_bootstrap = i < scenario.peers.bootstrap;
            let class = (!is_bootstrap && !scenario.classes.is_empty()).then(|| {
                let u = node_seed.child(PURPOSE_CLASS).rng().random::<f64>();
                pick(scenario.classes.iter().map(|c| (c.weight, ())), u).0
            });
            let regions = class
                .and_then(|c| scenario.classes[c].regions.as_deref())
                .unwrap_or(&scenario.regions);
            let region = pick_region(regions, rng.random::<f64>());
            let last_mile = Duration::from_micros(rng.random_range(lm_min..=lm_max));
            let start_offset = if is_bootstrap || spread_us == 0 {
                Duration::ZERO
            } else {
                Duration::from_micros(rng.random_range(0..spread_us))
            };
            let profile = match class {
                _ if is_bootstrap => &scenario.bootstrap_node,
                Some(c) => &scenario.classes[c].node,
                None => &scenario.node,
            };
            let limits = match class {
                _ if is_bootstrap => &scenario.bootstrap_node_limits,
                Some(c) => &scenario.classes[c].limits,
                None => &scenario.node_limits,
            };
            let limits = Arc::clone(&limits.limits);
            let config = Config {
                listen_addrs: vec![addr_of(i)],
                bootstrap: bootstrap.clone(),
                region: Some(scenario.data.region(region).name.clone()),
                ..profile.clone()
            };
            peers.push(Peer {
                index: i,
                region,
                bootstrap: is_bootstrap,
                last_mile,
                start_offset,
                peer_id: keypair.peer_id(),
                keypair,
                protocol_seed: node_seed.child(PURPOSE_PROTOCOL),
                config,
                class,
                limits,
                job_role: JobRole::None,
            });
        }
        if let Some(j) = &scenario.jobs {
            let classes: Vec<Option<usize>> = peers.iter().map(|p| p.class).collect();
            let roles = jobs::roles(j, seed, &classes, scenario.peers.bootstrap);
            for (p, role) in peers.iter_mut().zip(roles) {
                p.job_role = role;
                jobs::configure(&mut p.config, role, j);
            }
        }
        let uplink_kbps = peers
            .iter()
            .map(|p| {
                p.class
                    .and_then(|c| scenario.classes[c].bandwidth_kbps)
                    .unwrap_or(0.0)
            })
            .collect();
        let by_id = peers.iter().map(|p| (p.peer_id, p.index as u32)).collect();
        let by_addr = peers
            .iter()
            .flat_map(|p| p.config.listen_addrs.iter().map(|a| (a.clone(), p.index)))
            .collect();
        World {
            name: scenario.name.clone(),
            seed,
            duration: scenario.duration,
            jitter_us: micros(scenario.latency.jitter),
            data: Arc::clone(&scenario.data),
            region_of: peers.iter().map(|p| p.region as u16).collect(),
            last_mile_us: peers.iter().map(|p| micros(p.last_mile) as u32).collect(),
            peers,
            by_id: Arc::new(by_id),
            by_addr,
            classes: scenario
                .classes
                .iter()
                .map(|c| (c.name.clone(), c.churn))
                .collect(),
            uplink_kbps,
            loss: scenario.latency.loss,
            verified: Arc::new(VerifiedAdverts::new(
                scenario.peers.count.saturating_mul(4).max(1024),
            )),
            jobs: scenario.jobs.clone().map(Arc::new),
        }
    }

    /// The virtual start of every run, 2026-01-01T00:00:00Z.
    pub fn epoch() -> Timestamp {
        Timestamp::from_secs(EPOCH_S)
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The seed the world was drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How long a run lasts.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The region data.
    pub fn data(&self) -> &RegionData {
        &self.data
    }

    /// All peers in index order.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Peer `i`.
    pub fn peer(&self, i: usize) -> &Peer {
        &self.peers[i]
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True if there are no peers (never for a checked scenario).
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The name of peer `i`'s region.
    pub fn region_name(&self, i: usize) -> &str {
        &self.data.region(self.peers[i].region).name
    }

    /// The index of the peer with id `peer`.
    pub fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.by_id.get(peer).map(|i| *i as usize)
    }

    /// The index of the peer listening on `addr`.
    pub fn index_of_addr(&self, addr: &str) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }

    /// The name of peer `i`'s class, if it has one.
    pub fn class_name(&self, i: usize) -> Option<&str> {
        self.peers[i].class.map(|c| self.classes[c].0.as_str())
    }

    /// The names of the scenario's classes, in `[[classes]]` order.
    pub fn class_names(&self) -> Vec<&str> {
        self.classes.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Peer `i`'s uplink in kbit/s, or 0 if it is unlimited.
    pub fn uplink_kbps(&self, i: usize) -> f64 {
        self.uplink_kbps[i]
    }

    /// The probability that a message is lost (`latency.loss`).
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// The generator of the baseline message loss.
    pub fn loss_rng(&self) -> ChaCha8Rng {
        SeedTree::new(self.seed).child(STREAM_LOSS).rng()
    }

    /// The churn schedule of the run, peer by peer in index order, each peer's steps in
    /// time order: a churning peer's first session starts when the peer starts; each
    /// session ends with the peer going down and, after a down time, coming back, until
    /// the end of the run. Peer `i` draws from `child(STREAM_CHURN).child(i)`, a session
    /// length then a down time, alternately.
    pub fn churn_schedule(&self) -> Vec<ChurnStep> {
        let root = SeedTree::new(self.seed).child(STREAM_CHURN);
        let mut out = Vec::new();
        for p in &self.peers {
            let Some(churn) = p.class.and_then(|c| self.classes[c].1) else {
                continue;
            };
            let mut rng = root.child(p.index as u64).rng();
            let mut at = p.start_offset;
            loop {
                at += Duration::from_secs_f64(churn.uptime.at(rng.random::<f64>()));
                if at >= self.duration {
                    break;
                }
                out.push(ChurnStep {
                    at,
                    node: p.index,
                    up: false,
                });
                at += Duration::from_secs_f64(churn.downtime.at(rng.random::<f64>()));
                if at >= self.duration {
                    break;
                }
                out.push(ChurnStep {
                    at,
                    node: p.index,
                    up: true,
                });
            }
        }
        out
    }

    /// Peer `i` for changing, in tests that need a world no scenario describes.
    #[cfg(test)]
    pub(crate) fn peer_mut(&mut self, i: usize) -> &mut Peer {
        &mut self.peers[i]
    }

    pub(crate) fn peer_ids(&self) -> Arc<FastMap<PeerId, u32>> {
        Arc::clone(&self.by_id)
    }

    /// Base RTT between two peers in microseconds: region RTT plus both last miles.
    pub fn rtt_us(&self, from: usize, to: usize) -> u64 {
        let (ra, rb) = (
            usize::from(self.region_of[from]),
            usize::from(self.region_of[to]),
        );
        u64::from(self.data.rtt_us(ra, rb))
            + u64::from(self.last_mile_us[from])
            + u64::from(self.last_mile_us[to])
    }

    /// Base RTT between two peers: region RTT plus both last miles, without jitter.
    pub fn rtt(&self, from: usize, to: usize) -> Duration {
        Duration::from_micros(self.rtt_us(from, to))
    }

    /// One one-way delay in microseconds: half the base RTT plus a jitter draw from `rng`.
    pub fn one_way_us(&self, from: usize, to: usize, rng: &mut impl Rng) -> u64 {
        let base = self.rtt_us(from, to) / 2;
        if self.jitter_us == 0 {
            base
        } else {
            base + rng.random_range(0..=self.jitter_us)
        }
    }

    /// One one-way delay: half the base RTT plus a jitter draw from `rng`.
    pub fn one_way(&self, from: usize, to: usize, rng: &mut impl Rng) -> Duration {
        Duration::from_micros(self.one_way_us(from, to, rng))
    }

    /// `[jobs]` of the scenario, if it has one.
    pub fn jobs(&self) -> Option<&JobsScenario> {
        self.jobs.as_deref()
    }

    /// The generator of the network's randomness (jitter) for this world.
    pub fn network_rng(&self) -> ChaCha8Rng {
        SeedTree::new(self.seed).child(STREAM_NETWORK).rng()
    }

    /// A fresh node for peer `i`, started at `now`.
    ///
    /// # Panics
    /// If the configuration is invalid, which [`Scenario::parse`] rules out.
    pub fn new_node(&self, i: usize, now: Timestamp) -> Node {
        let p = &self.peers[i];
        match Node::new(p.config.clone(), p.keypair.clone(), p.protocol_seed, now) {
            Ok(mut node) => {
                node.share_verified_adverts(Arc::clone(&self.verified));
                if let Err(e) = self.onboard(i, &mut node) {
                    panic!("{e}");
                }
                node
            }
            Err(e) => panic!(
                "peer {i} has an invalid configuration that the scenario check let through: {e}"
            ),
        }
    }
}

/// The region whose cumulative weight first exceeds `u` (in `[0, 1)`).
fn pick_region(regions: &[crate::scenario::RegionWeight], u: f64) -> usize {
    pick(regions.iter().map(|r| (r.weight, r.region)), u).1
}

/// The index and value of the first item whose cumulative weight exceeds `u` (in
/// `[0, 1)`); the last item if rounding leaves the sum a hair below 1.
fn pick<T: Copy + Default>(items: impl Iterator<Item = (f64, T)>, u: f64) -> (usize, T) {
    let mut acc = 0.0;
    let mut last = (0, T::default());
    for (i, (w, v)) in items.enumerate() {
        acc += w;
        last = (i, v);
        if u < acc {
            break;
        }
    }
    last
}

/// A peer going down or coming back at a time of the churn schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnStep {
    /// When, after the run's start.
    pub at: Duration,
    /// The peer.
    pub node: usize,
    /// True: it comes back (fresh state, same key); false: its session ends.
    pub up: bool,
}

#[cfg(test)]
mod tests;
