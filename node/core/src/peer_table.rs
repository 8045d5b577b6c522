//! The peer table: everything a node knows about other peers.
//!
//! For every known peer: its addresses, RTT samples (smoothed and jitter, as in RFC 6298),
//! its advertised resources and region, when it was first and last seen, how it was
//! discovered and how many hops away. The table is bounded; when full, the peer seen least
//! recently that is not connected is forgotten. Iteration is in peer-id order, so every
//! decision made from the table is deterministic.
//!
//! Adverts are held as `Arc<SignedAdvert>`: the copy a node keeps, the copies it passes on in
//! peer-table exchange and the copies its peers keep are one allocation.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;
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
///
/// What the peer says about itself (addresses, resources, region, start time) is read from
/// its latest verified advert, which is shared with every other holder of that advert, so
/// an entry stores none of it twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// The peer.
    pub peer_id: PeerId,
    /// RTT statistics, once it was pinged.
    pub rtt: Option<RttStats>,
    /// When this node first heard of the peer.
    pub first_seen: Timestamp,
    /// When this node last heard from or about the peer. It never moves back: change it
    /// with [`PeerTable::touch`] (or to a later time), since the table orders eviction by it.
    pub last_seen: Timestamp,
    /// How the peer was first discovered.
    pub source: Source,
    /// Hops away: 0 once its hello was received directly.
    pub hops: u8,
    /// Failed dials since the last successful connection.
    pub dial_failures: u32,
    /// Do not dial before this time.
    pub dial_not_before: Timestamp,
    /// The latest verified advert, passed on in peer-table exchange.
    advert: Option<Arc<SignedAdvert>>,
    /// Addresses learned outside an advert (bootstrap list, discovery), dialled after the
    /// advert's own; a newer advert replaces them.
    extra_addrs: Vec<String>,
}

impl PeerEntry {
    fn new(peer_id: PeerId, now: Timestamp, source: Source, hops: u8) -> Self {
        PeerEntry {
            peer_id,
            rtt: None,
            first_seen: now,
            last_seen: now,
            source,
            hops,
            dial_failures: 0,
            dial_not_before: Timestamp::ZERO,
            advert: None,
            extra_addrs: Vec::new(),
        }
    }

    /// The latest verified advert, if any.
    pub fn advert(&self) -> Option<&Arc<SignedAdvert>> {
        self.advert.as_ref()
    }

    /// Addresses to dial the peer on: its advert's, then any learned otherwise.
    pub fn addrs(&self) -> impl Iterator<Item = &String> + Clone {
        self.advert
            .iter()
            .flat_map(|a| a.advert.listen_addrs.iter())
            .chain(self.extra_addrs.iter())
    }

    /// The first address to dial, if any is known.
    pub fn addr_first(&self) -> Option<&String> {
        self.addrs().next()
    }

    /// Adds an address learned outside an advert, unless it is known or `max` addresses
    /// are. Returns whether it was added.
    pub fn add_addr(&mut self, addr: String, max: usize) -> bool {
        let known = self.addrs().count();
        if known >= max || self.addrs().any(|a| *a == addr) {
            return false;
        }
        self.extra_addrs.push(addr);
        true
    }

    /// Advertised resources, once an advert was verified.
    pub fn resources(&self) -> Option<Resources> {
        self.advert.as_ref().map(|a| a.advert.resources)
    }

    /// Advertised region hint.
    pub fn region(&self) -> Option<&str> {
        self.advert
            .as_ref()
            .and_then(|a| a.advert.region.as_deref())
    }

    /// When the peer says it started.
    pub fn started_at(&self) -> Option<Timestamp> {
        self.advert.as_ref().map(|a| a.advert.started_at)
    }

    /// Stores a verified advert, if it is newer than the one held; the advert's addresses
    /// then replace those known before. Returns false if the advert held is as new or newer.
    pub fn apply_advert(&mut self, signed: &Arc<SignedAdvert>, hops: u8, now: Timestamp) -> bool {
        self.last_seen = self.last_seen.max(now);
        self.hops = self.hops.min(hops);
        if let Some(held) = &self.advert
            && held.advert.timestamp >= signed.advert.timestamp
        {
            return false;
        }
        self.extra_addrs = Vec::new();
        self.advert = Some(Arc::clone(signed));
        true
    }
}

/// The table of known peers, bounded in size.
///
/// Entries live densely in a vector of slots, found through an index in peer-id order, so
/// that the ordered map holds small keys rather than whole entries (a node of a large
/// simulation holds hundreds of entries; the map's spare node capacity would otherwise be
/// paid in entries). The slot vector grows in steps of [`SLOTS_STEP`], not by doubling.
///
/// A second index is ordered by `(last_seen, peer)`, so that a full table finds the peer to
/// forget without a scan. Entries are filed when they are created; since `last_seen` only
/// moves later, an entry filed under an older time is refiled when eviction reaches it,
/// and the first evictable entry whose filing is current is the stalest of all.
#[derive(Clone, Debug)]
pub struct PeerTable {
    index: BTreeMap<PeerId, u32>,
    slots: Vec<Slot>,
    by_age: BTreeSet<(Timestamp, PeerId)>,
    capacity: usize,
}

/// Slots added at a time when the slot vector is full.
const SLOTS_STEP: usize = 64;

/// An entry and the `last_seen` it is filed under in the age index.
#[derive(Clone, Debug)]
struct Slot {
    indexed: Timestamp,
    entry: PeerEntry,
}

impl PeerTable {
    /// An empty table holding at most `capacity` peers (at least 1, at most `u32::MAX`).
    pub fn new(capacity: usize) -> Self {
        PeerTable {
            index: BTreeMap::new(),
            slots: Vec::new(),
            by_age: BTreeSet::new(),
            capacity: capacity.clamp(1, u32::MAX as usize),
        }
    }

    fn slot(&self, peer: &PeerId) -> Option<&Slot> {
        self.index.get(peer).map(|&i| &self.slots[i as usize])
    }

    fn slot_mut(&mut self, peer: &PeerId) -> Option<&mut Slot> {
        self.index.get(peer).map(|&i| &mut self.slots[i as usize])
    }

    /// The entry of `peer`, if known.
    pub fn get(&self, peer: &PeerId) -> Option<&PeerEntry> {
        self.slot(peer).map(|s| &s.entry)
    }

    /// The entry of `peer` for changing, if known. `last_seen` may only move later.
    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut PeerEntry> {
        self.slot_mut(peer).map(|s| &mut s.entry)
    }

    /// Number of known peers.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if no peer is known.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// All entries in peer-id order.
    pub fn iter(&self) -> impl Iterator<Item = &PeerEntry> {
        self.index.values().map(|&i| &self.slots[i as usize].entry)
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
        if !self.index.contains_key(&peer) {
            if self.slots.len() >= self.capacity {
                let victim = self.stalest(evictable)?;
                self.remove(&victim);
            }
            if self.slots.len() == self.slots.capacity() {
                let room = self.capacity.saturating_sub(self.slots.len());
                self.slots.reserve_exact(room.clamp(1, SLOTS_STEP));
            }
            // Fewer than `capacity` slots, which `new` keeps within u32.
            let i = self.slots.len() as u32;
            self.slots.push(Slot {
                indexed: now,
                entry: PeerEntry::new(peer, now, source, hops),
            });
            self.index.insert(peer, i);
            self.by_age.insert((now, peer));
        }
        self.get_mut(&peer)
    }

    /// The peer with the smallest `(last_seen, peer)` for which `evictable` holds.
    fn stalest(&mut self, evictable: impl Fn(&PeerId) -> bool) -> Option<PeerId> {
        let mut after = Bound::Unbounded;
        loop {
            let (at, peer) = *self.by_age.range((after, Bound::Unbounded)).next()?;
            let Some(slot) = self.slot_mut(&peer) else {
                // Cannot happen: every index key names an entry. Heal and go on.
                self.by_age.remove(&(at, peer));
                continue;
            };
            let seen = slot.entry.last_seen;
            if seen != at {
                // Seen later than filed: refile; the walk reaches it again further on.
                slot.indexed = seen;
                self.by_age.remove(&(at, peer));
                self.by_age.insert((seen, peer));
                continue;
            }
            if evictable(&peer) {
                return Some(peer);
            }
            after = Bound::Excluded((at, peer));
        }
    }

    /// Moves `peer`'s `last_seen` to `now` if that is later. The age index is corrected
    /// lazily, when eviction reaches the peer, so frequent touches cost no index work.
    pub fn touch(&mut self, peer: &PeerId, now: Timestamp) {
        if let Some(e) = self.get_mut(peer) {
            e.last_seen = e.last_seen.max(now);
        }
    }

    /// Records an RTT sample for `peer`.
    pub fn record_rtt(&mut self, peer: &PeerId, sample: Duration, now: Timestamp) {
        if let Some(e) = self.get_mut(peer) {
            match &mut e.rtt {
                Some(stats) => stats.update(sample),
                None => e.rtt = Some(RttStats::first(sample)),
            }
            e.last_seen = e.last_seen.max(now);
        }
    }

    /// Forgets `peer`.
    pub fn remove(&mut self, peer: &PeerId) -> Option<PeerEntry> {
        let i = self.index.remove(peer)? as usize;
        let slot = self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            // The last slot moved into the hole: point its index there.
            let moved = moved.entry.peer_id;
            if let Some(at) = self.index.get_mut(&moved) {
                *at = i as u32;
            }
        }
        self.by_age.remove(&(slot.indexed, *peer));
        Some(slot.entry)
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

    #[test]
    fn eviction_follows_last_seen_changed_after_filing() {
        let mut t = PeerTable::new(3);
        for n in 1..=3 {
            t.entry(
                id(n),
                Timestamp::from_secs(u64::from(n)),
                Source::Gossip,
                1,
                |_| true,
            );
        }
        // Peer 1 is heard from again (both ways of moving `last_seen` on), so 2 is stalest.
        t.touch(&id(1), Timestamp::from_secs(10));
        t.record_rtt(&id(3), Duration::from_millis(5), Timestamp::from_secs(11));
        t.entry(id(4), Timestamp::from_secs(12), Source::Gossip, 1, |_| true);
        assert!(t.get(&id(2)).is_none());
        // Through a `&mut` entry as well; peer 1 is now stalest but not evictable.
        if let Some(e) = t.get_mut(&id(4)) {
            e.last_seen = Timestamp::from_secs(20);
        }
        t.entry(id(5), Timestamp::from_secs(21), Source::Gossip, 1, |p| {
            *p != id(1)
        });
        assert!(t.get(&id(3)).is_none());
        let left: Vec<PeerId> = t.iter().map(|e| e.peer_id).collect();
        assert_eq!(left, [id(1), id(4), id(5)]);
        // A touch never moves `last_seen` back.
        t.touch(&id(5), Timestamp::from_secs(1));
        assert_eq!(
            t.get(&id(5)).map(|e| e.last_seen),
            Some(Timestamp::from_secs(21))
        );
    }

    /// The indexed table against a plain scan, over a seeded mix of operations.
    #[test]
    fn indexed_eviction_matches_a_full_scan() {
        use rand::Rng;
        let mut rng = crate::seed::SeedTree::new(3).rng();
        let mut t = PeerTable::new(16);
        let mut model: BTreeMap<PeerId, Timestamp> = BTreeMap::new();
        for step in 0..4000u64 {
            let now = Timestamp::from_secs(step);
            let peer = id(rng.random_range(0..40));
            let pinned = id(rng.random_range(0..40));
            match rng.random_range(0..4) {
                0 => {
                    t.touch(&peer, now);
                    if let Some(seen) = model.get_mut(&peer) {
                        *seen = now;
                    }
                }
                1 => {
                    t.remove(&peer);
                    model.remove(&peer);
                }
                _ => {
                    let evictable = |p: &PeerId| *p != pinned;
                    if !model.contains_key(&peer) && model.len() >= 16 {
                        let victim = model
                            .iter()
                            .filter(|(p, _)| evictable(p))
                            .min_by_key(|(p, seen)| (**seen, **p))
                            .map(|(p, _)| *p);
                        if let Some(v) = victim {
                            model.remove(&v);
                            model.insert(peer, now);
                        }
                    } else {
                        model.entry(peer).or_insert(now);
                    }
                    t.entry(peer, now, Source::Gossip, 1, evictable);
                }
            }
            let held: Vec<(PeerId, Timestamp)> =
                t.iter().map(|e| (e.peer_id, e.last_seen)).collect();
            let expected: Vec<(PeerId, Timestamp)> = model.iter().map(|(p, s)| (*p, *s)).collect();
            assert_eq!(held, expected, "step {step}");
        }
    }

    #[test]
    fn addresses_come_from_the_advert_then_from_elsewhere() {
        use crate::advert::Advert;
        use crate::identity::Keypair;
        let kp = Keypair::generate(&mut crate::seed::SeedTree::new(5).rng());
        let signed = |at: u64, addr: &str| {
            Arc::new(SignedAdvert::sign(
                &kp,
                Advert {
                    protocol_version: crate::wire::PROTOCOL_VERSION,
                    peer_id: kp.peer_id(),
                    listen_addrs: vec![addr.to_string()],
                    resources: Resources::default(),
                    region: Some("eu-west".into()),
                    started_at: Timestamp::from_secs(1),
                    timestamp: Timestamp::from_secs(at),
                },
            ))
        };
        let mut t = PeerTable::new(4);
        let now = Timestamp::from_secs(10);
        let e = t
            .entry(kp.peer_id(), now, Source::Bootstrap, 1, |_| true)
            .unwrap();
        assert!(e.add_addr("/boot".into(), usize::MAX));
        assert!(!e.add_addr("/boot".into(), usize::MAX));
        assert_eq!(e.addr_first().map(String::as_str), Some("/boot"));
        assert_eq!((e.region(), e.resources()), (None, None));
        // An advert replaces what was known; later discoveries follow its addresses.
        assert!(e.apply_advert(&signed(5, "/a"), 1, now));
        assert!(e.add_addr("/found".into(), 2));
        assert!(!e.add_addr("/more".into(), 2));
        assert_eq!(e.addrs().collect::<Vec<_>>(), ["/a", "/found"]);
        assert_eq!(e.region(), Some("eu-west"));
        assert_eq!(e.started_at(), Some(Timestamp::from_secs(1)));
        // An older advert changes nothing; a newer one replaces all addresses.
        assert!(!e.apply_advert(&signed(4, "/old"), 1, now));
        assert!(e.apply_advert(&signed(6, "/b"), 1, now));
        assert_eq!(e.addrs().collect::<Vec<_>>(), ["/b"]);
    }
}
