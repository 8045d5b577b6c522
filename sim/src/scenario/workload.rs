//! `[[workload]]`: timed actions the simulator makes nodes take, on the fleet engine only.
//!
//! The one kind so far is `flood`: from `at_s` until the end of the run, the listed (or
//! seeded) nodes send a message to each of their connected peers `rate_per_s` times a
//! second, on top of what their protocol sends. The message is a peer-table request
//! (`message = "peers"`, the default: each one costs its receiver an answer of up to
//! `exchange_peers_max` records) or a ping (`message = "ping"`).

use std::time::Duration;

use super::check::Checker;
use super::raw::{RawFloodMessage, RawWorkload, RawWorkloadKind};
use super::{Peers, ScenarioError};

/// The highest flood rate accepted, messages per second per connected peer.
pub const FLOOD_RATE_MAX: f64 = 1000.0;

/// What a flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodMessage {
    /// A peer-table request for `exchange_peers_max` records.
    Peers,
    /// A ping (its pong finds no ping waiting and is ignored).
    Ping,
}

/// One `[[workload]]` entry, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// When it starts, after the run's start; it lasts until the end.
    pub at: Duration,
    /// The nodes named in the file.
    pub nodes: Vec<usize>,
    /// Nodes drawn from the seed, besides the listed ones.
    pub count: usize,
    /// Messages per second to each connected peer.
    pub rate_per_s: f64,
    /// What is sent.
    pub message: FloodMessage,
}

impl Checker<'_> {
    pub(super) fn workload(
        &self,
        raw: Option<&[RawWorkload]>,
        peers: &Peers,
        duration: Duration,
    ) -> Result<Vec<Workload>, ScenarioError> {
        let mut out = Vec::new();
        for (i, w) in raw.unwrap_or(&[]).iter().enumerate() {
            let key = |k: &str| format!("workload.{i}.{k}");
            let RawWorkloadKind::Flood = w.kind;
            let at_s = self.range(
                &key("at_s"),
                w.at_s,
                0.0,
                duration.as_secs_f64(),
                "s (the duration)",
            )?;
            let rate_per_s =
                self.range(&key("rate_per_s"), w.rate_per_s, 0.0, FLOOD_RATE_MAX, "")?;
            if rate_per_s <= 0.0 {
                let msg = format!("`{}` must be more than 0", key("rate_per_s"));
                return Err(self.error(&key("rate_per_s"), msg));
            }
            let nodes = w.nodes.clone().unwrap_or_default();
            if let Some(bad) = nodes.iter().find(|n| **n >= peers.count as u64) {
                let msg = format!(
                    "`{}` holds peer {bad}, but peers are numbered 0 to {}",
                    key("nodes"),
                    peers.count - 1
                );
                return Err(self.error(&key("nodes"), msg));
            }
            let count = w.count.unwrap_or(0);
            if nodes.is_empty() == (count == 0) {
                let msg = "a flood needs either `nodes` (a non-empty list) or `count` (nodes drawn from the seed), not both".to_string();
                return Err(self.error(&format!("workload.{i}"), msg));
            }
            if count > peers.count as u64 {
                let msg = format!(
                    "`{}` must be at most peers.count ({})",
                    key("count"),
                    peers.count
                );
                return Err(self.error(&key("count"), msg));
            }
            out.push(Workload {
                at: Duration::from_secs_f64(at_s),
                nodes: nodes.into_iter().map(|n| n as usize).collect(),
                count: count as usize,
                rate_per_s,
                message: match w.message {
                    None | Some(RawFloodMessage::Peers) => FloodMessage::Peers,
                    Some(RawFloodMessage::Ping) => FloodMessage::Ping,
                },
            });
        }
        Ok(out)
    }
}
