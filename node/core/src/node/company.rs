//! Keeping company: the filter, the connection manager and the scores they share.
//!
//! Every connected peer is judged by the configured [`Filter`](crate::filter::Filter): at the
//! connection (by what the table already holds), at the hello (by its advert), at every RTT
//! sample and at every maintenance tick (uptime and rank filters change with time). A peer
//! that fails is let go, except the node's last connection, which it keeps until a fitting
//! peer is found so that it is never cut off.
//!
//! A peer's score orders connections for trims and rotations, higher is better: the filter's
//! verdict dominates (pass, then unknown, then fail), then RTT (100 points per millisecond
//! of smoothed RTT, an unmeasured peer counting as [`RTT_UNMEASURED_MS`]), then the peer's
//! uptime by its advert (one point per minute, at most [`UPTIME_POINTS_MAX`]); the
//! connection manager adds the peer's tags.

use std::time::Duration;

use super::{Event, Node};
use crate::advert::SignedAdvert;
use crate::connmgr::{Decay, TrimCause};
use crate::filter::{Candidate, LocalView, PeerFilter, Verdict};
use crate::identity::PeerId;
use crate::peer_table::PeerEntry;
use crate::time::Timestamp;

/// The RTT an unmeasured peer counts with in scores.
pub const RTT_UNMEASURED_MS: i64 = 1000;
/// Uptime counts one point per minute up to this many.
pub const UPTIME_POINTS_MAX: i64 = 10_000;
/// Score points per millisecond of RTT.
const POINTS_PER_MS: i64 = 100;
/// Score points per step of filter fit (fail 0, unknown 1, pass 2).
const POINTS_PER_FIT: i64 = 1_000_000_000;

impl Node {
    /// The smoothed RTTs of every measured peer in the table, sorted, when the filter
    /// needs ranks.
    pub(super) fn rtt_ranks(&self) -> Option<Vec<u64>> {
        if !self.config.filter.uses_rank() {
            return None;
        }
        let mut v: Vec<u64> = self
            .table
            .iter()
            .filter_map(|e| e.rtt.as_ref().map(|r| r.ewma_us))
            .collect();
        v.sort_unstable();
        Some(v)
    }

    /// The filter's verdict on `peer` by what the table holds of it; `ranks` from
    /// [`Node::rtt_ranks`] (computed here if `None` and needed).
    pub(super) fn judge(&self, peer: &PeerId, now: Timestamp, ranks: Option<&[u64]>) -> Verdict {
        self.judge_entry(peer, self.table.get(peer), now, ranks)
    }

    /// [`Node::judge`] with `peer`'s table entry already looked up.
    pub(super) fn judge_entry(
        &self,
        peer: &PeerId,
        entry: Option<&PeerEntry>,
        now: Timestamp,
        ranks: Option<&[u64]>,
    ) -> Verdict {
        let owned;
        let ranks = match ranks {
            Some(r) => Some(r),
            None => {
                owned = self.rtt_ranks();
                owned.as_deref()
            }
        };
        let rtt_us = entry.and_then(|e| e.rtt.as_ref()).map(|r| r.ewma_us);
        let candidate = Candidate {
            peer: *peer,
            advert: entry.and_then(|e| e.advert()).map(|s| &s.advert),
            rtt: rtt_us.map(Duration::from_micros),
            rtt_rank: rtt_us
                .zip(ranks)
                .map(|(us, r)| r.partition_point(|x| *x < us)),
            now,
        };
        self.config.filter.check(&self.local_view(), &candidate)
    }

    /// The filter's verdict on a peer known only by `signed` (no RTT yet).
    pub(super) fn judge_advert(&self, signed: &SignedAdvert, now: Timestamp) -> Verdict {
        let candidate = Candidate {
            peer: signed.advert.peer_id,
            advert: Some(&signed.advert),
            rtt: None,
            rtt_rank: None,
            now,
        };
        self.config.filter.check(&self.local_view(), &candidate)
    }

    pub(super) fn local_view(&self) -> LocalView<'_> {
        LocalView {
            peer: self.peer_id(),
            resources: &self.config.resources,
            region: self.config.region.as_deref(),
        }
    }

    /// The score of `peer` (see the module documentation), tags not included.
    pub(super) fn score(&self, peer: &PeerId, now: Timestamp, ranks: Option<&[u64]>) -> i64 {
        let fit = match self.judge(peer, now, ranks) {
            Verdict::Pass => 2,
            Verdict::Unknown => 1,
            Verdict::Fail(_) => 0,
        };
        let entry = self.table.get(peer);
        let rtt_ms = entry
            .and_then(|e| e.rtt.as_ref())
            .map_or(RTT_UNMEASURED_MS, |r| {
                i64::try_from(r.ewma_us / 1000).unwrap_or(i64::MAX)
            })
            .min(100_000);
        let uptime = entry
            .and_then(|e| e.started_at())
            .map_or(0, |s| {
                i64::try_from(now.saturating_since(s).as_secs() / 60).unwrap_or(i64::MAX)
            })
            .min(UPTIME_POINTS_MAX);
        fit * POINTS_PER_FIT - rtt_ms * POINTS_PER_MS + uptime
    }

    /// Lets `peer` go if the filter now rejects it, unless it is protected or the node's
    /// last connection (then it is marked spared). Returns whether it was let go.
    pub(super) fn enforce_filter(&mut self, now: Timestamp, peer: PeerId) -> bool {
        let Some(c) = self.connections.get(&peer) else {
            return false;
        };
        let fails = c.closing_at.is_none() && self.judge(&peer, now, None).fails();
        let spare = fails && (self.peers_count() <= 1 || self.connmgr.is_protected(&peer));
        if !fails || spare {
            if let Some(c) = self.connections.get_mut(&peer) {
                c.spared = spare;
            }
            return false;
        }
        self.remove_connection(&peer);
        self.drop_peer(peer, "filter");
        true
    }

    /// Judges connected peers again: every one if the filter can change its mind with time
    /// (uptime and rank filters), otherwise only those spared so far (the node may no
    /// longer be alone). RTT and advert verdicts are judged as they arrive.
    pub(super) fn recheck_filter(&mut self, now: Timestamp) {
        let all = self.config.filter.changes_with_time();
        if !all && !self.connections.values().any(|c| c.spared) {
            return;
        }
        let ranks = self.rtt_ranks();
        let failing: Vec<PeerId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.closing_at.is_none() && (all || c.spared))
            .map(|(p, _)| *p)
            .filter(|p| self.judge(p, now, ranks.as_deref()).fails())
            .collect();
        for peer in failing {
            self.enforce_filter(now, peer);
        }
    }

    /// The first RTT of an exploration connection is in: if the node holds more than its
    /// low watermark, the lowest-scored connection goes (the explored one included; peers
    /// in their grace period and protected peers are spared).
    pub(super) fn rotate(&mut self, now: Timestamp, explored: PeerId) {
        if self.peers_count() <= self.config.low_watermark {
            return;
        }
        let ranks = self.rtt_ranks();
        let grace = self.config.conn_grace;
        let mut worst: Option<(i64, PeerId)> = None;
        for (p, c) in &self.connections {
            if c.closing_at.is_some()
                || self.connmgr.is_protected(p)
                || (*p != explored && now.saturating_since(c.since) < grace)
            {
                continue;
            }
            let s = self.score(p, now, ranks.as_deref());
            if worst.is_none_or(|w| (s, *p) < w) {
                worst = Some((s, *p));
            }
        }
        if let Some((_, victim)) = worst {
            self.remove_connection(&victim);
            self.drop_peer(victim, "rotate");
        }
    }

    /// Trims to the low watermark if the node is full or the resource manager is close to
    /// its connection limit (and the quiet period has passed).
    pub(super) fn trim_if_due(&mut self, now: Timestamp) {
        let (held, limit) = self.system_conns;
        let Some(cause) = self.connmgr.trim_due(now, held, limit) else {
            return;
        };
        let ranks = self.rtt_ranks();
        let scores: Vec<(PeerId, i64)> = self
            .connections
            .iter()
            .filter(|(_, c)| c.closing_at.is_none())
            .map(|(p, _)| (*p, self.score(p, now, ranks.as_deref())))
            .collect();
        let victims = self.connmgr.trim(now, |p| {
            scores
                .binary_search_by(|(q, _)| q.cmp(p))
                .map_or(i64::MIN, |i| scores[i].1)
        });
        if victims.is_empty() {
            // Every peer is new or protected: nothing to close; the quiet period starts
            // all the same, so the node does not rescore at every event.
            return;
        }
        self.events.push_back(Event::Trimmed {
            cause,
            victims: victims.len(),
        });
        let reason = match cause {
            TrimCause::HighWatermark => "trim",
            TrimCause::Pressure => "trim-pressure",
        };
        for peer in victims {
            self.remove_connection(&peer);
            self.drop_peer(peer, reason);
        }
    }

    // ----- the shell's and the operator's part -----

    /// The shell reports the resource manager's system scope: `held` connections of
    /// `limit`. Near the limit the node trims (see [`Config::pressure_per_mille`]).
    ///
    /// [`Config::pressure_per_mille`]: super::Config::pressure_per_mille
    pub fn report_system_conns(&mut self, now: Timestamp, held: u64, limit: u64) {
        self.system_conns = (held, limit);
        self.trim_if_due(now);
        self.settle();
    }

    /// Protects `peer` from trims, rotations and the filter until [`Node::unprotect`] is
    /// called as often (a peer running a job, say). Returns false if it is not connected.
    pub fn protect(&mut self, peer: &PeerId) -> bool {
        self.connmgr.protect(peer)
    }

    /// Removes one protection of `peer`.
    pub fn unprotect(&mut self, peer: &PeerId) {
        self.connmgr.unprotect(peer);
    }

    /// Sets tag `name` of connected `peer`: `value` points added to its score in trims,
    /// decaying by `decay` from `now`.
    pub fn tag_peer(
        &mut self,
        peer: &PeerId,
        name: &'static str,
        value: u32,
        decay: Decay,
        now: Timestamp,
    ) {
        self.connmgr.tag(peer, name, value, decay, now);
    }

    /// Trims so far.
    pub fn trims(&self) -> u64 {
        self.connmgr.trims()
    }

    /// The filter's verdict on a peer by what the node knows of it now.
    pub fn verdict(&self, peer: &PeerId, now: Timestamp) -> Verdict {
        self.judge(peer, now, None)
    }
}
