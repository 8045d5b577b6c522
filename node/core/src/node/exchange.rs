//! Connection maintenance and peer-table exchange.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::seq::index;

use super::{Action, Connection, Dial, DialId, Event, Learned, Node};
use crate::filter::Verdict;
use crate::identity::PeerId;
use crate::peer_table::{PeerEntry, PeerTable, Source};
use crate::time::Timestamp;
use crate::wire::{Message, PeerRecord};

/// How long a refused connection stays open after its peers request was answered, so the
/// answer is delivered before the connection closes.
const REFUSED_LINGER: Duration = Duration::from_millis(500);

impl Node {
    /// Judges the connected peers again, trims if due, and dials the best known peers
    /// while the node has fewer connections than its low watermark.
    pub(super) fn maintain(&mut self, now: Timestamp) {
        self.recheck_filter(now);
        self.trim_if_due(now);
        let open = self.peers_count() + self.dials.len();
        let deficit = self.config.low_watermark.saturating_sub(open).min(
            self.config
                .dials_concurrent_max
                .saturating_sub(self.dials.len()),
        );
        if deficit == 0 {
            return;
        }
        let (picks, found) = self.ranked_candidates(now, deficit);
        let no_candidates = found == 0;
        let too_few = found < deficit;
        for (peer, addr) in picks {
            self.dial(addr, Some(peer), false);
        }
        // Short of peers and of candidates: ask a connected peer for more now rather than
        // at the next exchange.
        if too_few {
            self.start_exchange(now);
        }
        // Isolated and nothing to dial: go back to the bootstrap addresses without peer id.
        if self.connections.is_empty()
            && self.dials.is_empty()
            && no_candidates
            && now >= self.bootstrap_not_before
        {
            let addrs: Vec<String> = self
                .config
                .bootstrap
                .iter()
                .filter(|b| b.peer_id.is_none())
                .map(|b| b.addr.clone())
                .collect();
            for addr in addrs {
                self.dial(addr, None, false);
            }
            self.bootstrap_not_before = now + self.config.dial_backoff_base;
        }
    }

    /// At its target of peers, dials one random candidate; when it connects, one other
    /// connection is let go (see `handle_connected`). One exploration at a time.
    pub(super) fn explore(&mut self, now: Timestamp) {
        if self.peers_count() < self.config.low_watermark
            || self.peers_count() >= self.config.high_watermark
            || self.dials.values().any(|d| d.explore)
        {
            return;
        }
        if let Some((peer, addr)) = self.ranked_candidates(now, 1).0.into_iter().next() {
            self.dial(addr, Some(peer), true);
        }
    }

    /// The peers worth dialling now, best first, with the address to dial: candidates the
    /// filter rejects are left out; those it passes come first, then those it cannot judge
    /// yet (no RTT measured) in the node's own region, then the others; in random order
    /// within each tier. Returns the best `limit` and how many there were in all.
    fn ranked_candidates(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> (Vec<(PeerId, String)>, usize) {
        let ranks = self.rtt_ranks();
        let me = self.config.region.as_deref();
        let mut tiered: Vec<(u8, u32, &PeerEntry)> = Vec::new();
        for e in dial_candidates(&self.table, &self.connections, &self.dials, now) {
            let tier = match self.judge_entry(&e.peer_id, Some(e), now, ranks.as_deref()) {
                Verdict::Pass => 0,
                Verdict::Unknown if me.is_some() && e.region() == me => 1,
                Verdict::Unknown => 2,
                Verdict::Fail(_) => continue,
            };
            tiered.push((tier, self.rng.random::<u32>(), e));
        }
        let found = tiered.len();
        let limit = limit.min(found);
        if limit > 0 && limit < found {
            tiered
                .select_nth_unstable_by_key(limit - 1, |(tier, draw, e)| (*tier, *draw, e.peer_id));
            tiered.truncate(limit);
        }
        tiered.sort_unstable_by_key(|(tier, draw, e)| (*tier, *draw, e.peer_id));
        let picks = tiered
            .into_iter()
            .take(limit)
            .filter_map(|(_, _, e)| Some((e.peer_id, e.addr_first()?.clone())))
            .collect();
        (picks, found)
    }

    pub(super) fn dial(&mut self, addr: String, peer: Option<PeerId>, explore: bool) {
        let id = DialId(self.next_dial_id);
        self.next_dial_id += 1;
        self.dials.insert(id, Dial { peer, explore });
        self.events.push_back(Event::Dialing {
            peer,
            addr: addr.clone(),
        });
        self.actions.push_back(Action::Dial { id, addr, peer });
    }

    pub(super) fn peers_request(&self) -> Message {
        Message::PeersRequest {
            max: self.config.exchange_peers_max,
            hops_max: self.config.exchange_hops_max.saturating_sub(1),
        }
    }

    /// Asks one connected peer, drawn at random, for the peers it knows.
    pub(super) fn start_exchange(&mut self, _now: Timestamp) {
        let ready: Vec<PeerId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.hello)
            .map(|(p, _)| *p)
            .collect();
        if ready.is_empty() {
            return;
        }
        let peer = ready[self.rng.random_range(0..ready.len())];
        let request = self.peers_request();
        self.send(peer, request);
    }

    pub(super) fn on_peers_request(
        &mut self,
        now: Timestamp,
        from: PeerId,
        max: u16,
        hops_max: u8,
    ) {
        let max = usize::from(max.min(self.config.exchange_peers_max));
        let mut pool: Vec<&PeerEntry> = Vec::with_capacity(self.table.len());
        pool.extend(
            self.table
                .iter()
                .filter(|e| e.hops <= hops_max && e.advert().is_some() && e.peer_id != from),
        );
        let mut picks: Vec<usize> = if pool.len() <= max {
            (0..pool.len()).collect()
        } else {
            index::sample(&mut self.rng, pool.len(), max).into_vec()
        };
        picks.sort_unstable();
        let records: Vec<PeerRecord> = picks
            .into_iter()
            .filter_map(|i| {
                let e = pool[i];
                e.advert().map(|a| PeerRecord {
                    advert: Arc::clone(a),
                    hops: e.hops,
                })
            })
            .collect();
        // A refused newcomer got what it came for: close its connection soon.
        if let Some(c) = self.connections.get_mut(&from)
            && let Some(at) = c.closing_at
        {
            c.closing_at = Some(at.min(now + REFUSED_LINGER));
            self.conn_due_stale = true;
        }
        self.send(from, Message::PeersResponse { records });
    }

    pub(super) fn on_peers_response(
        &mut self,
        now: Timestamp,
        from: PeerId,
        records: Vec<PeerRecord>,
    ) {
        let received = records.len();
        let (mut new, mut rejected, mut filtered) = (0, 0, 0);
        if received > usize::from(self.config.exchange_peers_max) {
            self.events.push_back(Event::PeersLearned {
                from,
                received,
                new,
                rejected: received,
                filtered,
            });
            return;
        }
        for r in records {
            let hops = r.hops.saturating_add(1);
            if hops > self.config.exchange_hops_max || r.advert.advert.peer_id == from {
                rejected += 1;
                continue;
            }
            match self.learn_advert(now, from, &r.advert, hops, Source::Exchange { via: from }) {
                Ok(Learned::New) => new += 1,
                Ok(Learned::Known) => {}
                Ok(Learned::Filtered) => filtered += 1,
                Err(_) => rejected += 1,
            }
        }
        self.events.push_back(Event::PeersLearned {
            from,
            received,
            new,
            rejected,
            filtered,
        });
    }
}

/// Known peers that may be dialled now: not connected, not being dialled, not backing off,
/// with an address.
fn dial_candidates<'a>(
    table: &'a PeerTable,
    connections: &BTreeMap<PeerId, Connection>,
    dials: &BTreeMap<DialId, Dial>,
    now: Timestamp,
) -> Vec<&'a PeerEntry> {
    let dialing: Vec<PeerId> = dials.values().filter_map(|d| d.peer).collect();
    let mut out = Vec::with_capacity(table.len());
    // The checks that read only the entry come first.
    out.extend(table.iter().filter(|e| {
        e.dial_not_before <= now
            && e.has_addr()
            && !dialing.contains(&e.peer_id)
            && !connections.contains_key(&e.peer_id)
    }));
    out
}
