//! JSON views of the node's state, served by the HTTP API and read by the CLI.
//!
//! Submodules:
//! - [`query`]: which peers `GET /peers` and `flotilla peers` list, and in which order.

pub mod query;
pub mod resources;

use flotilla_core::{Direction, Node, PeerId, Resources, RttSample, Source, Timestamp};
use serde::{Deserialize, Serialize};

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// This node.
    pub peer_id: PeerId,
    /// Protocol version spoken.
    pub protocol_version: u16,
    /// Start time, microseconds since the Unix epoch.
    pub started_at_us: u64,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Connected peers.
    pub connected: usize,
    /// Peers in the table.
    pub known: usize,
    /// Dials in flight.
    pub dialing: usize,
    /// Advertised listen addresses.
    pub listen_addrs: Vec<String>,
}

impl StatusView {
    /// The status of `node` at `now`.
    pub fn of(node: &Node, now: Timestamp) -> Self {
        let s = node.status(now);
        StatusView {
            peer_id: s.peer_id,
            protocol_version: s.protocol_version,
            started_at_us: s.started_at.as_micros(),
            uptime_s: s.uptime_s,
            connected: s.connected,
            known: s.known,
            dialing: s.dialing,
            listen_addrs: s.listen_addrs,
        }
    }
}

/// One entry of `GET /peers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// The peer.
    pub peer_id: PeerId,
    /// `in`/`out` if connected.
    pub direction: Option<Direction>,
    /// Whether its hello was received on the current connection.
    pub hello: bool,
    /// Addresses to dial it on.
    pub addrs: Vec<String>,
    /// Smoothed RTT in milliseconds.
    pub rtt_ms: Option<f64>,
    /// RTT jitter in milliseconds.
    pub jitter_ms: Option<f64>,
    /// RTT samples taken.
    pub rtt_samples: u32,
    /// Advertised resources.
    pub resources: Option<Resources>,
    /// Advertised region.
    pub region: Option<String>,
    /// When the peer says it started, microseconds since the Unix epoch.
    pub started_at_us: Option<u64>,
    /// Seconds since the peer says it started.
    pub uptime_s: Option<u64>,
    /// How it was discovered.
    pub source: Source,
    /// Hops away.
    pub hops: u8,
    /// First heard of, microseconds since the Unix epoch.
    pub first_seen_us: u64,
    /// Last heard from, microseconds since the Unix epoch.
    pub last_seen_us: u64,
}

impl PeerView {
    /// Every peer in `node`'s table at `now`, connected peers first, each group in peer-id
    /// order.
    pub fn all(node: &Node, now: Timestamp) -> Vec<PeerView> {
        let connections: std::collections::BTreeMap<PeerId, _> =
            node.connections().map(|c| (c.peer, c)).collect();
        let mut out: Vec<PeerView> = node
            .peer_table()
            .iter()
            .map(|e| {
                let conn = connections.get(&e.peer_id);
                PeerView {
                    peer_id: e.peer_id,
                    direction: conn.map(|c| c.direction),
                    hello: conn.is_some_and(|c| c.hello),
                    addrs: e.addrs().cloned().collect(),
                    rtt_ms: e.rtt.as_deref().map(|r| r.ewma_us as f64 / 1000.0),
                    jitter_ms: e.rtt.as_deref().map(|r| r.jitter_us as f64 / 1000.0),
                    rtt_samples: e.rtt.as_deref().map_or(0, |r| r.samples),
                    resources: e.resources(),
                    region: e.region().map(str::to_string),
                    started_at_us: e.started_at().map(Timestamp::as_micros),
                    uptime_s: e.started_at().map(|t| now.saturating_since(t).as_secs()),
                    source: e.source,
                    hops: e.hops,
                    first_seen_us: e.first_seen.as_micros(),
                    last_seen_us: e.last_seen.as_micros(),
                }
            })
            .collect();
        out.sort_by_key(|p| p.direction.is_none());
        out
    }
}

/// One entry of `GET /rtt`: a node's smoothed RTT to one peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RttView {
    /// The peer measured.
    pub peer_id: PeerId,
    /// Smoothed RTT in milliseconds.
    pub rtt_ms: f64,
    /// RTT jitter in milliseconds.
    pub jitter_ms: f64,
    /// RTT samples taken.
    pub samples: u32,
}

impl From<RttSample> for RttView {
    fn from(s: RttSample) -> Self {
        RttView {
            peer_id: s.peer,
            rtt_ms: s.ewma_us as f64 / 1000.0,
            jitter_ms: s.jitter_us as f64 / 1000.0,
            samples: s.samples,
        }
    }
}
