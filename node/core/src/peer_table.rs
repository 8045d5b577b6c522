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

use std::cmp::Ordering;
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
    /// Found as a provider of a pool in the DHT.
    Pool,
    /// Found on the local link by mDNS.
    Mdns,
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
            Source::Pool => "pool",
            Source::Mdns => "mdns",
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
/// an entry stores none of it twice. A node of a large simulation holds hundreds of
/// entries, so the rarer parts (RTT statistics of peers it connected to, addresses learned
/// outside an advert) live behind a pointer and cost one word when absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// The peer.
    pub peer_id: PeerId,
    /// RTT statistics, once it was pinged.
    pub rtt: Option<Box<RttStats>>,
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
    /// True if the advert held lists at least one address (saves reading the advert).
    advert_addr: bool,
    /// Addresses learned outside an advert (bootstrap list, discovery), dialled after the
    /// advert's own; a newer advert replaces them.
    extra_addrs: Option<Box<ExtraAddrs>>,
}

/// Addresses of a peer learned outside its advert; rare, so held behind one pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ExtraAddrs(Vec<String>);

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
            advert_addr: false,
            extra_addrs: None,
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
            .chain(self.extra_addrs.iter().flat_map(|e| e.0.iter()))
    }

    /// The first address to dial, if any is known.
    pub fn addr_first(&self) -> Option<&String> {
        self.addrs().next()
    }

    /// True if an address to dial is known; cheaper than [`PeerEntry::addr_first`], as it
    /// does not read the advert.
    pub fn has_addr(&self) -> bool {
        self.advert_addr || self.extra_addrs.is_some()
    }

    /// Adds an address learned outside an advert, unless it is known or `max` addresses
    /// are. Returns whether it was added.
    pub fn add_addr(&mut self, addr: String, max: usize) -> bool {
        let known = self.addrs().count();
        if known >= max || self.addrs().any(|a| *a == addr) {
            return false;
        }
        self.extra_addrs.get_or_insert_default().0.push(addr);
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

    /// True if `signed` is the very advert held (the same allocation), which was verified
    /// when it was stored.
    pub fn holds(&self, signed: &Arc<SignedAdvert>) -> bool {
        self.advert.as_ref().is_some_and(|a| Arc::ptr_eq(a, signed))
    }

    /// Stores a verified advert, if it is newer than the one held; the advert's addresses
    /// then replace those known before. Returns false if the advert held is as new or newer.
    pub fn apply_advert(&mut self, signed: &Arc<SignedAdvert>, hops: u8, now: Timestamp) -> bool {
        self.last_seen = self.last_seen.max(now);
        self.hops = self.hops.min(hops);
        if self.holds(signed) {
            return false;
        }
        if let Some(held) = &self.advert
            && held.advert.timestamp >= signed.advert.timestamp
        {
            return false;
        }
        self.extra_addrs = None;
        self.advert_addr = !signed.advert.listen_addrs.is_empty();
        self.advert = Some(Arc::clone(signed));
        true
    }
}

/// The table of known peers, bounded in size.
///
/// Entries live in a vector of slots that never move (a removed entry's slot is reused).
/// Two sorted vectors index them, both compact and searched by bisection:
///
/// - the order: slot numbers in peer-id order, beside the first 8 bytes of each peer id, so
///   a search compares plain numbers and reads an entry only when two prefixes are equal;
/// - the age index, ordered by `(last_seen, slot)`, so a full table finds the peer to
///   forget without a scan. Entries are filed when they are created; since `last_seen` only
///   moves later, an entry filed under an older time is refiled when eviction reaches it.
///   Eviction takes, among the earliest entries whose filing is current, the evictable one
///   with the smallest peer id: the least recently seen peer, ties broken by peer id.
///
/// The vectors grow in steps of `SLOTS_STEP`, not by doubling.
#[derive(Clone, Debug)]
pub struct PeerTable {
    slots: Vec<Slot>,
    /// Slots not in use, reused first.
    free: Vec<u32>,
    /// First 8 bytes of the peer id of each entry of `order_slot`.
    order_prefix: Vec<u64>,
    /// Slots of the entries in peer-id order.
    order_slot: Vec<u32>,
    /// `(time filed, slot)` of every entry, sorted.
    by_age: Vec<(Timestamp, u32)>,
    capacity: usize,
}

/// Where a peer is in a [`PeerTable`]: its slot, or the position in the order it would take.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Spot {
    Held(u32),
    Absent(usize),
}

/// Elements added at a time when one of the table's vectors is full.
const SLOTS_STEP: usize = 64;

/// An entry and the `last_seen` it is filed under in the age index. A slot on the free
/// list holds the entry it last held, which nothing reads.
#[derive(Clone, Debug)]
struct Slot {
    indexed: Timestamp,
    entry: PeerEntry,
}

/// Makes room for one more element in `v`, which holds at most `max`.
fn reserve_step<T>(v: &mut Vec<T>, max: usize) {
    if v.len() == v.capacity() {
        let room = max.saturating_sub(v.len());
        v.reserve_exact(room.clamp(1, SLOTS_STEP));
    }
}

impl PeerTable {
    /// An empty table holding at most `capacity` peers (at least 1, at most `u32::MAX`).
    pub fn new(capacity: usize) -> Self {
        PeerTable {
            slots: Vec::new(),
            free: Vec::new(),
            order_prefix: Vec::new(),
            order_slot: Vec::new(),
            by_age: Vec::new(),
            capacity: capacity.clamp(1, u32::MAX as usize),
        }
    }

    /// The first position in the order whose prefix is not below `prefix`.
    ///
    /// Peer ids are public keys, uniformly spread, so the position is first guessed from
    /// the prefix's value and then bracketed by steps that double away from the guess:
    /// a couple of probes near the answer instead of a bisection over the whole vector,
    /// and never more than twice the probes of one for ids that are not spread.
    fn lower_bound(&self, prefix: u64) -> usize {
        let v = &self.order_prefix;
        let n = v.len();
        if n == 0 {
            return 0;
        }
        // In [0, n): the product is below n * 2^64.
        let guess = ((u128::from(prefix) * n as u128) >> 64) as usize;
        if v[guess] < prefix {
            // The answer lies in (guess, n].
            let (mut lo, mut step) = (guess + 1, 1);
            loop {
                let hi = (lo + step).min(n);
                if hi == n || v[hi] >= prefix {
                    return lo + v[lo..hi].partition_point(|&p| p < prefix);
                }
                lo = hi + 1;
                step *= 2;
            }
        } else {
            // The answer lies in [0, guess], and v[hi] >= prefix.
            let (mut hi, mut step) = (guess, 1);
            loop {
                let Some(lo) = hi.checked_sub(step) else {
                    return v[..hi].partition_point(|&p| p < prefix);
                };
                if v[lo] < prefix {
                    return lo + 1 + v[lo + 1..hi].partition_point(|&p| p < prefix);
                }
                hi = lo;
                step *= 2;
            }
        }
    }

    /// The position of `peer` in the order, or where it would be inserted.
    fn position(&self, peer: &PeerId) -> Result<usize, usize> {
        let prefix = peer.prefix();
        let mut i = self.lower_bound(prefix);
        while i < self.order_prefix.len() && self.order_prefix[i] == prefix {
            let held = &self.slots[self.order_slot[i] as usize].entry.peer_id;
            match held.cmp(peer) {
                Ordering::Less => i += 1,
                Ordering::Equal => return Ok(i),
                Ordering::Greater => return Err(i),
            }
        }
        Err(i)
    }

    fn slot_of(&self, peer: &PeerId) -> Option<u32> {
        self.position(peer).ok().map(|i| self.order_slot[i])
    }

    /// The entry of `peer`, if known.
    pub fn get(&self, peer: &PeerId) -> Option<&PeerEntry> {
        self.slot_of(peer).map(|s| &self.slots[s as usize].entry)
    }

    /// The entry of `peer` for changing, if known. `last_seen` may only move later.
    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut PeerEntry> {
        self.slot_of(peer)
            .map(|s| &mut self.slots[s as usize].entry)
    }

    /// Number of known peers.
    pub fn len(&self) -> usize {
        self.order_slot.len()
    }

    /// True if no peer is known.
    pub fn is_empty(&self) -> bool {
        self.order_slot.is_empty()
    }

    /// All entries in peer-id order.
    pub fn iter(&self) -> impl Iterator<Item = &PeerEntry> {
        self.order_slot
            .iter()
            .map(|&s| &self.slots[s as usize].entry)
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
        let spot = self.spot(&peer);
        self.entry_at(spot, peer, now, source, hops, evictable)
    }

    /// Where `peer` is, for [`PeerTable::held`] and [`PeerTable::entry_at`]: one search for
    /// a look and a change that follow it. Valid until the table changes.
    pub(crate) fn spot(&self, peer: &PeerId) -> Spot {
        match self.position(peer) {
            Ok(i) => Spot::Held(self.order_slot[i]),
            Err(i) => Spot::Absent(i),
        }
    }

    /// The entry at `spot`, if one is held there.
    pub(crate) fn held(&self, spot: Spot) -> Option<&PeerEntry> {
        match spot {
            Spot::Held(slot) => Some(&self.slots[slot as usize].entry),
            Spot::Absent(_) => None,
        }
    }

    /// [`PeerTable::entry`] for `peer`, found at `spot` since the table last changed.
    pub(crate) fn entry_at(
        &mut self,
        spot: Spot,
        peer: PeerId,
        now: Timestamp,
        source: Source,
        hops: u8,
        evictable: impl Fn(&PeerId) -> bool,
    ) -> Option<&mut PeerEntry> {
        let mut at = match spot {
            Spot::Held(slot) => return Some(&mut self.slots[slot as usize].entry),
            Spot::Absent(i) => i,
        };
        if self.len() >= self.capacity {
            let victim = self.stalest(evictable)?;
            self.remove(&victim);
            at = self.position(&peer).err()?;
        }
        let entry = PeerEntry::new(peer, now, source, hops);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Slot {
                    indexed: now,
                    entry,
                };
                s
            }
            None => {
                reserve_step(&mut self.slots, self.capacity);
                self.slots.push(Slot {
                    indexed: now,
                    entry,
                });
                // Fewer than `capacity` slots, which `new` keeps within u32.
                (self.slots.len() - 1) as u32
            }
        };
        reserve_step(&mut self.order_prefix, self.capacity);
        reserve_step(&mut self.order_slot, self.capacity);
        self.order_prefix.insert(at, peer.prefix());
        self.order_slot.insert(at, slot);
        self.file(now, slot);
        Some(&mut self.slots[slot as usize].entry)
    }

    /// Files `slot` in the age index under `at`.
    fn file(&mut self, at: Timestamp, slot: u32) {
        let i = self.by_age.partition_point(|&k| k < (at, slot));
        reserve_step(&mut self.by_age, self.capacity);
        self.by_age.insert(i, (at, slot));
    }

    /// Takes `slot`'s filing under `at` out of the age index.
    fn unfile(&mut self, at: Timestamp, slot: u32) {
        if let Ok(i) = self.by_age.binary_search(&(at, slot)) {
            self.by_age.remove(i);
        }
    }

    /// The peer with the smallest `(last_seen, peer)` for which `evictable` holds.
    fn stalest(&mut self, evictable: impl Fn(&PeerId) -> bool) -> Option<PeerId> {
        let mut i = 0;
        while i < self.by_age.len() {
            // The group of entries filed under one time, starting at `i`.
            let at = self.by_age[i].0;
            let mut best: Option<PeerId> = None;
            let mut restart = false;
            let mut j = i;
            while j < self.by_age.len() && self.by_age[j].0 == at {
                let slot = self.by_age[j].1;
                let entry = &self.slots[slot as usize].entry;
                let (seen, peer) = (entry.last_seen, entry.peer_id);
                if seen != at {
                    // Seen since it was filed: refile it under its time. That is later
                    // (`last_seen` never moves back), so the walk meets it again further
                    // on; were it earlier, start the walk over.
                    self.by_age.remove(j);
                    self.slots[slot as usize].indexed = seen;
                    self.file(seen, slot);
                    if seen < at {
                        restart = true;
                        break;
                    }
                    continue;
                }
                if evictable(&peer) && best.is_none_or(|b| peer < b) {
                    best = Some(peer);
                }
                j += 1;
            }
            if restart {
                i = 0;
            } else if best.is_some() {
                return best;
            } else {
                i = j;
            }
        }
        None
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
                None => e.rtt = Some(Box::new(RttStats::first(sample))),
            }
            e.last_seen = e.last_seen.max(now);
        }
    }

    /// Forgets `peer`.
    pub fn remove(&mut self, peer: &PeerId) -> Option<PeerEntry> {
        let i = self.position(peer).ok()?;
        self.order_prefix.remove(i);
        let slot = self.order_slot.remove(i);
        let indexed = self.slots[slot as usize].indexed;
        self.unfile(indexed, slot);
        self.free.push(slot);
        // The slot keeps a placeholder (no allocation) until it is reused.
        let placeholder = PeerEntry::new(*peer, indexed, Source::Operator, 0);
        Some(std::mem::replace(
            &mut self.slots[slot as usize].entry,
            placeholder,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn id(n: u8) -> PeerId {
        PeerId::from_public_key([n; 32])
    }

    #[test]
    fn lower_bound_agrees_with_bisection() {
        use rand::Rng;
        let mut rng = crate::seed::SeedTree::new(4).rng();
        for n in [0usize, 1, 2, 3, 10, 100, 1000] {
            for spread in [u64::MAX, 1000, 3] {
                let mut t = PeerTable::new(1);
                t.order_prefix = (0..n).map(|_| rng.random_range(0..=spread)).collect();
                t.order_prefix.sort_unstable();
                for _ in 0..300 {
                    let probe = match rng.random_range(0..3) {
                        0 if n > 0 => t.order_prefix[rng.random_range(0..n)],
                        1 => rng.random_range(0..=spread.saturating_add(1)),
                        _ => rng.random(),
                    };
                    let want = t.order_prefix.partition_point(|&p| p < probe);
                    assert_eq!(
                        t.lower_bound(probe),
                        want,
                        "n {n} spread {spread} probe {probe}"
                    );
                }
            }
        }
    }

    #[test]
    fn entries_stay_small() {
        // A large simulation holds millions of entries: every word counts.
        assert!(
            std::mem::size_of::<Slot>() <= 128,
            "{}",
            std::mem::size_of::<Slot>()
        );
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
        // Half the ids share their first 8 bytes, and several steps share a time, so ties
        // in the order and in the age index are exercised.
        let id = |n: u8| {
            let mut key = [n; 32];
            if n.is_multiple_of(2) {
                key[..8].copy_from_slice(&[0xee; 8]);
            }
            PeerId::from_public_key(key)
        };
        for step in 0..4000u64 {
            let now = Timestamp::from_secs(step / 4);
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
                    executors: Vec::new(),
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
