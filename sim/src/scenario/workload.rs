//! `[[workload]]`: timed actions the simulator makes nodes take, on the fleet engine only.
//!
//! Every entry runs from `at_s` until `until_s` (default: the end of the run) on its nodes:
//! the listed `nodes`, `count` nodes drawn from the seed, or every peer of the class
//! `class`. Its kind says what they do, `rate_per_s` times a second:
//!
//! - `flood`: each node sends a message to each of its connected peers, on top of what its
//!   protocol sends: a peer-table request (`message = "peers"`, the default: each one costs
//!   its receiver an answer of up to `exchange_peers_max` records) or a ping
//!   (`message = "ping"`);
//! - `connect`: each node (an attacker) opens a connection to each of its targets (the
//!   listed `targets`, `targets_count` peers drawn from the seed among the others, or the
//!   peers of the class `targets_class`) and
//!   holds it for `hold_s`; with `handshake = true` the connection completes its handshake
//!   and counts in the attacker's peer scope at the target, otherwise it stays in the
//!   target's transient scope;
//! - `streams`: each attacker opens an inbound stream at each target on the core protocol
//!   and holds it for `hold_s`, reserving `memory_bytes` on it at medium priority; only
//!   over a connection the attacker holds to the target (its node's, or a `connect` flood's
//!   that passed the handshake).
//!
//! Held connections and streams count in the targets' resource managers until released;
//! the target's node itself does not see them.

use std::time::Duration;

use super::check::Checker;
use super::raw::{RawFloodMessage, RawWorkload, RawWorkloadKind};
use super::{DURATION_S_MAX, Peers, ScenarioError};

/// The highest flood rate accepted, messages (or connections, or streams) per second per
/// peer or target.
pub const FLOOD_RATE_MAX: f64 = 1000.0;

/// What a flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodMessage {
    /// A peer-table request for `exchange_peers_max` records.
    Peers,
    /// A ping (its pong finds no ping waiting and is ignored).
    Ping,
}

/// The kind of a `[[workload]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Messages to every connected peer.
    Flood,
    /// Connections to the targets, held.
    Connect,
    /// Streams at the targets, held.
    Streams,
}

impl WorkloadKind {
    /// Its name in the file.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Flood => "flood",
            WorkloadKind::Connect => "connect",
            WorkloadKind::Streams => "streams",
        }
    }
}

/// One `[[workload]]` entry, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// What its nodes do.
    pub kind: WorkloadKind,
    /// When it starts, after the run's start.
    pub at: Duration,
    /// When it stops, after the run's start; `None`: at the end of the run.
    pub until: Option<Duration>,
    /// The nodes named in the file.
    pub nodes: Vec<usize>,
    /// Nodes drawn from the seed, besides the listed ones.
    pub count: usize,
    /// Every peer of this class (index into `[[classes]]`), besides the others.
    pub class: Option<usize>,
    /// Messages per second to each connected peer (`flood`), connections or streams per
    /// second to each target (`connect`, `streams`).
    pub rate_per_s: f64,
    /// What a `flood` sends.
    pub message: FloodMessage,
    /// Targets named in the file (`connect`, `streams`).
    pub targets: Vec<usize>,
    /// Targets drawn from the seed among the peers that are not nodes of the entry.
    pub targets_count: usize,
    /// Every peer of this class is a target (index into `[[classes]]`).
    pub targets_class: Option<usize>,
    /// How long a connection or stream is held.
    pub hold: Duration,
    /// Bytes reserved on each held stream.
    pub memory_bytes: u64,
    /// Held connections complete their handshake.
    pub handshake: bool,
}

impl Checker<'_> {
    pub(super) fn workload(
        &self,
        raw: Option<&[RawWorkload]>,
        peers: &Peers,
        duration: Duration,
        classes: &[String],
    ) -> Result<Vec<Workload>, ScenarioError> {
        let mut out = Vec::new();
        for (i, w) in raw.unwrap_or(&[]).iter().enumerate() {
            out.push(self.one_workload(i, w, peers, duration, classes)?);
        }
        Ok(out)
    }

    fn one_workload(
        &self,
        i: usize,
        w: &RawWorkload,
        peers: &Peers,
        duration: Duration,
        classes: &[String],
    ) -> Result<Workload, ScenarioError> {
        let key = |k: &str| format!("workload.{i}.{k}");
        let kind = match w.kind {
            RawWorkloadKind::Flood => WorkloadKind::Flood,
            RawWorkloadKind::Connect => WorkloadKind::Connect,
            RawWorkloadKind::Streams => WorkloadKind::Streams,
        };
        let dur_s = duration.as_secs_f64();
        let at_s = self.range(&key("at_s"), w.at_s, 0.0, dur_s, "s (the duration)")?;
        let until = match w.until_s {
            None => None,
            Some(u) => {
                let u = self.range(&key("until_s"), u, 0.0, dur_s, "s (the duration)")?;
                if u <= at_s {
                    let msg = format!("`{}` must be later than `{}`", key("until_s"), key("at_s"));
                    return Err(self.error(&key("until_s"), msg));
                }
                Some(Duration::from_secs_f64(u))
            }
        };
        let rate_per_s = self.range(&key("rate_per_s"), w.rate_per_s, 0.0, FLOOD_RATE_MAX, "")?;
        if rate_per_s <= 0.0 {
            let msg = format!("`{}` must be more than 0", key("rate_per_s"));
            return Err(self.error(&key("rate_per_s"), msg));
        }
        let nodes = self.peer_list(&key("nodes"), w.nodes.as_deref(), peers)?;
        let count = w.count.unwrap_or(0);
        let class_at = |k: &str, name: &Option<String>| match name {
            None => Ok(None),
            Some(name) => classes
                .iter()
                .position(|c| c == name)
                .map(Some)
                .ok_or_else(|| {
                    let msg = format!(
                        "`{}` names no class: `{name}` (known: {})",
                        key(k),
                        classes.join(", ")
                    );
                    self.error(&key(k), msg)
                }),
        };
        let class = class_at("class", &w.class)?;
        let targets_class = class_at("targets_class", &w.targets_class)?;
        let ways =
            usize::from(!nodes.is_empty()) + usize::from(count > 0) + usize::from(class.is_some());
        if ways != 1 {
            let msg = "a workload entry needs exactly one of `nodes` (a non-empty list), `count` (nodes drawn from the seed) and `class` (every peer of a class)".to_string();
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
        // Keys that only some kinds take.
        let only = |name: &str, written: bool, kinds: &[WorkloadKind]| {
            if written && !kinds.contains(&kind) {
                let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                let msg = format!(
                    "`{}` applies only to kind {}; remove it from this `{}` entry",
                    key(name),
                    names.join(" or "),
                    kind.name()
                );
                return Err(self.error(&key(name), msg));
            }
            Ok(())
        };
        let attack = [WorkloadKind::Connect, WorkloadKind::Streams];
        only("message", w.message.is_some(), &[WorkloadKind::Flood])?;
        only("targets", w.targets.is_some(), &attack)?;
        only("targets_count", w.targets_count.is_some(), &attack)?;
        only("targets_class", w.targets_class.is_some(), &attack)?;
        only("hold_s", w.hold_s.is_some(), &attack)?;
        only(
            "memory_bytes",
            w.memory_bytes.is_some(),
            &[WorkloadKind::Streams],
        )?;
        only("handshake", w.handshake.is_some(), &[WorkloadKind::Connect])?;
        let targets = self.peer_list(&key("targets"), w.targets.as_deref(), peers)?;
        let targets_count = w.targets_count.unwrap_or(0);
        let mut hold = Duration::ZERO;
        if kind != WorkloadKind::Flood {
            let ways = usize::from(!targets.is_empty())
                + usize::from(targets_count > 0)
                + usize::from(targets_class.is_some());
            if ways != 1 {
                let msg = format!(
                    "a `{}` entry needs exactly one of `targets` (a non-empty list), `targets_count` (targets drawn from the seed) and `targets_class` (every peer of a class)",
                    kind.name()
                );
                return Err(self.error(&format!("workload.{i}"), msg));
            }
            if targets_count >= peers.count as u64 {
                let msg = format!(
                    "`{}` must be less than peers.count ({})",
                    key("targets_count"),
                    peers.count
                );
                return Err(self.error(&key("targets_count"), msg));
            }
            let Some(h) = w.hold_s else {
                let msg = format!(
                    "a `{}` entry needs `{}`: how long each connection or stream is held",
                    kind.name(),
                    key("hold_s")
                );
                return Err(self.error(&format!("workload.{i}"), msg));
            };
            let h = self.range(&key("hold_s"), h, 0.0, DURATION_S_MAX, "s")?;
            if h <= 0.0 {
                let msg = format!("`{}` must be more than 0", key("hold_s"));
                return Err(self.error(&key("hold_s"), msg));
            }
            hold = Duration::from_secs_f64(h);
        }
        Ok(Workload {
            kind,
            at: Duration::from_secs_f64(at_s),
            until,
            nodes,
            count: count as usize,
            class,
            rate_per_s,
            message: match w.message {
                None | Some(RawFloodMessage::Peers) => FloodMessage::Peers,
                Some(RawFloodMessage::Ping) => FloodMessage::Ping,
            },
            targets,
            targets_count: targets_count as usize,
            targets_class,
            hold,
            memory_bytes: w.memory_bytes.unwrap_or(0),
            handshake: w.handshake.unwrap_or(false),
        })
    }

    /// A list of peer indices at `key`, each below `peers.count`.
    fn peer_list(
        &self,
        key: &str,
        list: Option<&[u64]>,
        peers: &Peers,
    ) -> Result<Vec<usize>, ScenarioError> {
        let list = list.unwrap_or(&[]);
        if let Some(bad) = list.iter().find(|n| **n >= peers.count as u64) {
            let msg = format!(
                "`{key}` holds peer {bad}, but peers are numbered 0 to {}",
                peers.count - 1
            );
            return Err(self.error(key, msg));
        }
        Ok(list.iter().map(|n| *n as usize).collect())
    }
}
