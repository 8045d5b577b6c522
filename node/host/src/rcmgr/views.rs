//! JSON views of the resource manager for `GET /rcmgr/limits`, `GET /rcmgr/scopes`,
//! `flotilla limits` and `flotilla scopes`, and the rows of the `/metrics` gauges.
//!
//! Limits are numbers, `null` where a scope puts no cap of its own (`"unlimited"` in the
//! configuration). Peers are never listed one by one except for the top few asked for.

use std::collections::BTreeMap;

use flotilla_core::rcmgr::{
    GateLimits, Limits, ResourceManager, ScopeLimits, ScopeName, UNLIMITED, Usage,
};
use serde::{Deserialize, Serialize};

use super::Machine;

/// The limits of one scope (or scope kind); `None` is unlimited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsRow {
    /// The scope: `system`, `transient`, `allowlisted_system`, `allowlisted_transient`,
    /// a kind (`peer`, `protocol`, ...) or a named one (`protocol:/flotilla/core/1.0.0`,
    /// `service:core`).
    pub scope: String,
    /// Bytes of memory.
    pub memory: Option<u64>,
    /// Inbound streams.
    pub streams_in: Option<u64>,
    /// Outbound streams.
    pub streams_out: Option<u64>,
    /// Streams in both directions.
    pub streams: Option<u64>,
    /// Inbound connections.
    pub conns_in: Option<u64>,
    /// Outbound connections.
    pub conns_out: Option<u64>,
    /// Connections in both directions.
    pub conns: Option<u64>,
    /// File descriptors.
    pub fds: Option<u64>,
}

impl LimitsRow {
    /// The row of `scope` with limits `l`.
    pub fn new(scope: impl Into<String>, l: &ScopeLimits) -> Self {
        let f = |v: u64| (v != UNLIMITED).then_some(v);
        LimitsRow {
            scope: scope.into(),
            memory: f(l.memory),
            streams_in: f(l.streams_in),
            streams_out: f(l.streams_out),
            streams: f(l.streams),
            conns_in: f(l.conns_in),
            conns_out: f(l.conns_out),
            conns: f(l.conns),
            fds: f(l.fds),
        }
    }

    /// The limits with their resource names, in a fixed order.
    pub fn fields(&self) -> [(&'static str, Option<u64>); 8] {
        [
            ("memory", self.memory),
            ("streams_in", self.streams_in),
            ("streams_out", self.streams_out),
            ("streams", self.streams),
            ("conns_in", self.conns_in),
            ("conns_out", self.conns_out),
            ("conns", self.conns),
            ("fds", self.fds),
        ]
    }
}

/// What a scope holds: the core's [`Usage`], serialised as it is.
pub type UsageView = Usage;

/// Answer of `GET /rcmgr/limits`: the limits in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    /// The machine size the defaults were scaled to.
    pub machine: Machine,
    /// Limits per scope kind, then per named protocol and service.
    pub scopes: Vec<LimitsRow>,
    /// Per-subnet caps and rates of inbound connections.
    pub inbound: GateLimits,
    /// Disjoint address intervals on the allowlist.
    pub allowlist_intervals: usize,
}

impl LimitsView {
    /// The view of `rm`'s limits.
    pub fn new(machine: Machine, rm: &ResourceManager) -> Self {
        Self::of(machine, rm.limits(), rm.allowlist().intervals())
    }

    /// The view of `limits` (for `flotilla limits --config`, without a running node).
    pub fn of(machine: Machine, limits: &Limits, allowlist_intervals: usize) -> Self {
        let mut scopes: Vec<LimitsRow> = kinds(limits)
            .into_iter()
            .map(|(k, l)| LimitsRow::new(k, &l))
            .collect();
        for (n, l) in &limits.protocols {
            scopes.push(LimitsRow::new(format!("protocol:{n}"), l));
        }
        for (n, l) in &limits.services {
            scopes.push(LimitsRow::new(format!("service:{n}"), l));
        }
        LimitsView {
            machine,
            scopes,
            inbound: limits.inbound,
            allowlist_intervals,
        }
    }
}

/// Every scope kind with its limits, in the order of the configuration's tables.
fn kinds(l: &Limits) -> [(&'static str, ScopeLimits); 11] {
    [
        ("system", l.system),
        ("transient", l.transient),
        ("allowlisted_system", l.allowlisted_system),
        ("allowlisted_transient", l.allowlisted_transient),
        ("service", l.service),
        ("service_peer", l.service_peer),
        ("protocol", l.protocol),
        ("protocol_peer", l.protocol_peer),
        ("peer", l.peer),
        ("connection", l.connection),
        ("stream", l.stream),
    ]
}

/// One scope's usage against its limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// What it holds.
    pub usage: UsageView,
    /// Its limits (the row's `scope` names it).
    pub limits: LimitsRow,
}

/// One peer's usage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRow {
    /// The peer id.
    pub peer: String,
    /// What it holds.
    pub usage: UsageView,
}

/// Refusals counted since start-up for one scope kind, resource and direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRow {
    /// The kind of the refusing scope (`gate` for the inbound gate).
    pub scope: String,
    /// `memory`, `streams`, `conns`, `fds` or `conn_rate`.
    pub resource: String,
    /// `in` or `out`: the direction of what was refused.
    pub direction: String,
    /// Refusals.
    pub count: u64,
}

/// Answer of `GET /rcmgr/scopes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopesView {
    /// System, transient, allowlisted, then each open protocol and service scope.
    pub scopes: Vec<UsageRow>,
    /// Peers with a scope.
    pub peers: usize,
    /// What all peers hold together.
    pub peers_usage: UsageView,
    /// The peers holding most (memory, then streams, then connections), at most the
    /// number asked for.
    pub top_peers: Vec<PeerRow>,
    /// The limits of each peer.
    pub peer_limits: LimitsRow,
    /// Refusals since start-up.
    pub refusals: Vec<RefusalRow>,
    /// Subnets the inbound gate tracks.
    pub gate_subnets: usize,
    /// Open scopes of every kind.
    pub open_scopes: usize,
}

impl ScopesView {
    /// The view of `rm` with at most `top` peers, and `refusals` counted so far.
    pub fn new(
        rm: &ResourceManager,
        top: usize,
        refusals: &BTreeMap<(&'static str, &'static str, &'static str), u64>,
    ) -> Self {
        let mut scopes = Vec::new();
        let mut peers = Vec::new();
        let mut peers_usage = UsageView::default();
        for (name, usage, limits) in rm.scopes() {
            let label = match &name {
                ScopeName::Peer(p) => {
                    peers_usage.add(&usage);
                    peers.push(PeerRow {
                        peer: p.to_string(),
                        usage,
                    });
                    continue;
                }
                ScopeName::Protocol(n) => format!("protocol:{n}"),
                ScopeName::Service(n) => format!("service:{n}"),
                ScopeName::System
                | ScopeName::Transient
                | ScopeName::AllowlistedSystem
                | ScopeName::AllowlistedTransient => super::scope_kind(&name).to_string(),
                _ => continue,
            };
            scopes.push(UsageRow {
                usage,
                limits: LimitsRow::new(label, &limits),
            });
        }
        let count = peers.len();
        let key = |r: &PeerRow| {
            let u = &r.usage;
            (
                u.memory,
                u.streams_in + u.streams_out,
                u.conns_in + u.conns_out,
            )
        };
        peers.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.peer.cmp(&b.peer)));
        peers.truncate(top);
        ScopesView {
            scopes,
            peers: count,
            peers_usage,
            top_peers: peers,
            peer_limits: LimitsRow::new("peer", &rm.limits().peer),
            refusals: refusals
                .iter()
                .map(|(&(s, r, d), &count)| RefusalRow {
                    scope: s.to_string(),
                    resource: r.to_string(),
                    direction: d.to_string(),
                    count,
                })
                .collect(),
            gate_subnets: rm.gate().tracked(),
            open_scopes: rm.open_scopes(),
        }
    }
}

/// A `/metrics` gauge value: scope label, resource label, value.
pub type GaugeRow = (String, &'static str, u64);

/// The usage and limit gauges: system, transient, allowlisted, each open protocol and
/// service, and `peer` (usage: all peers together; limit: each peer's), plus the limits of
/// the `connection` and `stream` kinds. Unlimited limits have no gauge.
pub fn gauge_rows(rm: &ResourceManager) -> (Vec<GaugeRow>, Vec<GaugeRow>) {
    let view = ScopesView::new(rm, 0, &BTreeMap::new());
    let mut usage = Vec::new();
    let mut limits = Vec::new();
    let mut push = |u: &UsageView, l: &LimitsRow| {
        for (r, v) in u.fields() {
            usage.push((l.scope.clone(), r, v));
        }
        for (r, v) in l.fields() {
            if let Some(v) = v {
                limits.push((l.scope.clone(), r, v));
            }
        }
    };
    for row in &view.scopes {
        push(&row.usage, &row.limits);
    }
    push(&view.peers_usage, &view.peer_limits);
    let l = rm.limits();
    for (scope, sl) in [("connection", &l.connection), ("stream", &l.stream)] {
        for (r, v) in LimitsRow::new(scope, sl).fields() {
            if let Some(v) = v {
                limits.push((scope.to_string(), r, v));
            }
        }
    }
    (usage, limits)
}
