//! The peer table: everything a node knows about other peers.
//!
//! For every known peer: its addresses, RTT samples (smoothed and jitter, as in RFC 6298),
//! its advertised resources and region, when it was first and last seen, how it was
//! discovered and how many hops away. The table is bounded; when full, the peer seen least
//! recently that is not connected is forgotten. Iteration is in peer-id order, so every
//! decision made from the table is deterministic.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::advert::{Resources, SignedAdvert};
use crate::identity::PeerId;
use crate::time::Timestamp;

/// How a peer first came to be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// Dialled from the configured bootstrap list.
    Bootstrap,
    /// It connected to us.
    Inbound,
    /// Named by another peer in a peer-table exchange.
    Exchange {
        /// The peer that named it.
        via: PeerId,
    },
    /// Its advert arrived on the gossip hello topic.
    Gossip,
    /// Found in the DHT.
    Dht,
    /// Named by the operator.
    Operator,
}

impl Source {
    /// A short label for traces and the API.
    pub fn label(&self) -> &'static str {
        match self {
            Source::Bootstrap => "bootstrap",
            Source::Inbound => "inbound",
            Source::Exchange { .. } => "exchange",
            Source::Gossip => "gossip",
            Source::Dht => "dht",
            Source::Operator => "operator",
        }
    }
}

/// Round-trip time statistics of one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RttStats {
    /// Smoothed RTT (EWMA with gain 1/8), microseconds.
    pub ewma_us: u64,
    /// RTT variation (EWMA of the deviation with gain 1/4), microseconds.
    pub jitter_us: u64,
    /// The latest sample, microseconds.
    pub last_us: u64,
    /// The smallest sample seen, microseconds.
    pub min_us: u64,
    /// Number of samples.
    pub samples: u32,
}

impl RttStats {
    /// Statistics after a first sample.
    pub fn first(sample: Duration) -> Self {
        let us = duration_us(sample);
        RttStats {
            ewma_us: us,
            jitter_us: us / 2,
            last_us: us,
            min_us: us,
            samples: 1,
        }
    }

    /// Folds in one more sample.
    pub fn update(&mut self, sample: Duration) {
        let us = duration_us(sample);
        let deviation = self.ewma_us.abs_diff(us);
        self.jitter_us = (3 * self.jitter_us + deviation) / 4;
        self.ewma_us = (7 * self.ewma_us + us) / 8;
        self.last_us = us;
        self.min_us = self.min_us.min(us);
        self.samples = self.samples.saturating_add(1);
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What the node knows about one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// The peer.
    pub peer_id: PeerId,
    /// Addresses to dial it on.
    pub addrs: Vec<String>,
    /// RTT statistics, once it was pinged.
    pub rtt: Option<RttStats>,
    /// Advertised resources, once an advert was verified.
    pub resources: Option<Resources>,
    /// Advertised region hint.
    pub region: Option<String>,
    /// When the peer says it started.
    pub started_at: Option<Timestamp>,
    /// When this node first heard of the peer.
    pub first_seen: Timestamp,
    /// When this node last heard from or about the peer.
    pub last_seen: Timestamp,
    /// How the peer was first discovered.
    pub source: Source,
    /// Hops away: 0 once its hello was received directly.
    pub hops: u8,
    /// The latest verified advert, passed on in peer-table exchange.
    #[serde(skip)]
    pub advert: Option<SignedAdvert>,
    /// Failed dials since the last successful connection.
    pub dial_failures: u32,
    /// Do not dial before this time.
    pub dial_not_before: Timestamp,
}

impl PeerEntry {
    fn new(peer_id: PeerId, now: Timestamp, source: Source, hops: u8) -> Self {
        PeerEntry {
            peer_id,
            addrs: Vec::new(),
            rtt: None,
            resources: None,
            region: None,
            started_at: None,
            first_seen: now,
            last_seen: now,
            source,
            hops,
            advert: None,
            dial_failures: 0,
            dial_not_before: Timestamp::ZERO,
        }
    }

    /// Stores a verified advert and what it says, if it is newer than the one held.
    /// Returns false if the advert held is as new or newer.
    pub fn apply_advert(&mut self, signed: &SignedAdvert, hops: u8, now: Timestamp) -> bool {
        self.last_seen = self.last_seen.max(now);
        self.hops = self.hops.min(hops);
        if let Some(held) = &self.advert
            && held.advert.timestamp >= signed.advert.timestamp
        {
            return false;
        }
        let a = &signed.advert;
        self.addrs = a.listen_addrs.clone();
        self.resources = Some(a.resources);
        self.region = a.region.clone();
        self.started_at = Some(a.started_at);
        self.advert = Some(signed.clone());
        true
    }
}

/// The table of known peers, bounded in size.
#[derive(Clone, Debug)]
pub struct PeerTable {
    entries: BTreeMap<PeerId, PeerEntry>,
    capacity: usize,
}

impl PeerTable {
    /// An empty table holding at most `capacity` peers.
    pub fn new(capacity: usize) -> Self {
        PeerTable {
            entries: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The entry of `peer`, if known.
    pub fn get(&self, peer: &PeerId) -> Option<&PeerEntry> {
        self.entries.get(peer)
    }

    /// The entry of `peer` for changing, if known.
    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut PeerEntry> {
        self.entries.get_mut(peer)
    }

    /// Number of known peers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no peer is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries in peer-id order.
    pub fn iter(&self) -> impl Iterator<Item = &PeerEntry> {
        self.entries.values()
    }

    /// The entry of `peer`, created if new. When the table is full, the least recently seen
    /// peer for which `evictable` holds is forgotten first; if none may be, `None` is returned.
    pub fn entry(
        &mut self,
        peer: PeerId,
        now: Timestamp,
        source: Source,
        hops: u8,
        evictable: impl Fn(&PeerId) -> bool,
    ) -> Option<&mut PeerEntry> {
        if !self.entries.contains_key(&peer) {
            if self.entries.len() >= self.capacity {
                let victim = self
                    .entries
                    .values()
                    .filter(|e| evictable(&e.peer_id))
                    .min_by_key(|e| (e.last_seen, e.peer_id))
                    .map(|e| e.peer_id)?;
                self.entries.remove(&victim);
            }
            self.entries
                .insert(peer, PeerEntry::new(peer, now, source, hops));
        }
        self.entries.get_mut(&peer)
    }

    /// Records an RTT sample for `peer`.
    pub fn record_rtt(&mut self, peer: &PeerId, sample: Duration, now: Timestamp) {
        if let Some(e) = self.entries.get_mut(peer) {
            match &mut e.rtt {
                Some(stats) => stats.update(sample),
                None => e.rtt = Some(RttStats::first(sample)),
            }
            e.last_seen = e.last_seen.max(now);
        }
    }

    /// Forgets `peer`.
    pub fn remove(&mut self, peer: &PeerId) -> Option<PeerEntry> {
        self.entries.remove(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> PeerId {
        PeerId::from_public_key([n; 32])
    }

    #[test]
    fn rtt_follows_rfc6298_smoothing() {
        let mut s = RttStats::first(Duration::from_millis(100));
        assert_eq!((s.ewma_us, s.jitter_us), (100_000, 50_000));
        s.update(Duration::from_millis(20));
        // jitter = (3*50 + 80)/4 = 57.5 ms; ewma = (7*100 + 20)/8 = 90 ms
        assert_eq!(
            (s.ewma_us, s.jitter_us, s.min_us, s.samples),
            (90_000, 57_500, 20_000, 2)
        );
    }

    #[test]
    fn full_table_forgets_the_stalest_evictable_peer() {
        let mut t = PeerTable::new(2);
        t.entry(id(1), Timestamp::from_secs(1), Source::Gossip, 1, |_| true);
        t.entry(id(2), Timestamp::from_secs(2), Source::Gossip, 1, |_| true);
        t.entry(id(3), Timestamp::from_secs(3), Source::Gossip, 1, |_| true);
        assert!(t.get(&id(1)).is_none());
        assert_eq!(t.len(), 2);
        // Nothing evictable: the newcomer is refused, nothing is lost.
        assert!(
            t.entry(id(4), Timestamp::from_secs(4), Source::Gossip, 1, |_| false)
                .is_none()
        );
        assert!(t.get(&id(2)).is_some() && t.get(&id(3)).is_some());
    }
}
