//! Resource accounting of simulated nodes: one core [`ResourceManager`] per running node,
//! the same in both engines.
//!
//! Every node's manager is created on its first use with its profile's limits
//! ([`Peer::limits`](crate::world::Peer::limits)) and dropped when the node crashes (a
//! restarted node starts from nothing). The engines call it where a host would:
//!
//! - **connections**: an inbound connection is opened with
//!   [`ResourceManager::open_connection_from`] from the dialler's synthetic address
//!   ([`sim_ip`](crate::world::sim_ip)), so the inbound gate's per-subnet caps and rates
//!   apply; an outbound one with [`ResourceManager::open_connection`]. Both move to the
//!   remote peer at once ([`ResourceManager::set_connection_peer`]: the engines report a
//!   connection only after its handshake) and close when the connection closes. A refused
//!   connection fails the dialler's dial with the reason [`Refusal::reason`];
//! - **messages**: each delivered message is an inbound stream of the sender on the core
//!   protocol ([`PROTOCOL`]), claimed by the `core` service ([`SERVICE`]), holding the
//!   frame's size ([`frame_bytes`]) at [`PRIORITY_HIGH`] while it is handled; a refused
//!   message is dropped and counted (only in runs that set limits or flood with
//!   connections or streams: see [`Accounting::new`]);
//! - **floods** (`[[workload]]` kinds `connect` and `streams`): attackers' connections and
//!   streams held at their targets for a while.
//!
//! Refusals are counted per node, scope kind and resource ([`RcmgrStats::refused`]); the
//! trace gets one `refused` line per node and simulated minute with the counts of that
//! minute ([`Accounting::take_minute`]), like the host's log warns at most once a minute
//! per scope.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use flotilla_core::rcmgr::{
    ConnHandle, LimitExceeded, PRIORITY_HIGH, PRIORITY_MEDIUM, RcmgrError, Resource,
    ResourceManager, ScopeKind, ScopeLimits, ScopeName, StreamHandle, Usage,
};
use flotilla_core::{Direction, Message, PeerId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::world::{World, sim_ip};

/// The protocol every core message travels on.
pub const PROTOCOL: &str = flotilla_core::wire::PROTOCOL_NAME;
/// The service that claims the core protocol's streams.
pub const SERVICE: &str = "core";
/// How often the trace reports refusals, at most, per node.
pub const REFUSAL_LINE_PERIOD: Duration = Duration::from_secs(60);
/// The bytes an advert counts for in [`frame_bytes`].
const ADVERT_BYTES: u64 = 256;

/// The size a message's frame counts for in the accounting: the 4-byte length prefix and
/// an estimate of the body (fixed per kind, [`ADVERT_BYTES`] per advert), so the fleet
/// engine need not encode every message.
pub fn frame_bytes(m: &Message) -> u64 {
    4 + match m {
        Message::Hello(_) => 8 + ADVERT_BYTES,
        Message::Ping { .. } | Message::Pong { .. } => 16,
        Message::PeersRequest { .. } => 8,
        Message::PeersResponse { records } => 8 + records.len() as u64 * (ADVERT_BYTES + 8),
        Message::Refused { reason } => 4 + reason.len() as u64,
        Message::RttQuery { peers, .. } => 12 + peers.len() as u64 * 33,
        Message::RttReport { rtts, .. } => 12 + rtts.len() as u64 * 53,
        Message::Job(j) => job_bytes(j),
    }
}

/// The estimated body of a jobs message: specs and lines by their length, a bid with its
/// signature, the rest a few numbers.
fn job_bytes(m: &flotilla_core::jobs::JobMessage) -> u64 {
    use flotilla_core::jobs::JobMessage as J;
    match m {
        J::BidRequest { spec, .. } | J::Commit { spec, .. } => 12 + spec.len() as u64,
        J::Bid(_) => 24 + 64,
        J::CommitAnswer {
            result: Err(why), ..
        } => 12 + why.len() as u64,
        J::Log { line, .. } => 13 + line.len() as u64,
        J::Status {
            status: flotilla_core::jobs::JobStatus::Ended(Err(why)),
            ..
        } => 12 + why.len() as u64,
        _ => 12,
    }
}

/// What refused: a kind of scope, as the `[limits]` table names it, a span, or the
/// inbound gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusedBy {
    /// A scope of this kind.
    Scope(ScopeKind),
    /// A span.
    Span,
    /// The inbound gate (`[limits.inbound]`).
    Gate,
}

impl RefusedBy {
    fn of(name: &ScopeName) -> RefusedBy {
        name.kind().map_or(RefusedBy::Span, RefusedBy::Scope)
    }

    /// Its name in the `[limits]` table (`span`, `gate`).
    pub fn name(self) -> &'static str {
        match self {
            RefusedBy::Scope(k) => k.key(),
            RefusedBy::Span => "span",
            RefusedBy::Gate => "gate",
        }
    }
}

/// The resource of a refusal, as the `[limits]` table names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// `memory`.
    Memory,
    /// `streams_in`.
    StreamsIn,
    /// `streams_out`.
    StreamsOut,
    /// `streams` (both directions).
    Streams,
    /// `conns_in`.
    ConnsIn,
    /// `conns_out`.
    ConnsOut,
    /// `conns` (both directions).
    Conns,
    /// `fds`.
    Fds,
    /// The gate's `conns_per_subnet`.
    ConnsPerSubnet,
    /// The gate's `rate_per_sec`.
    RatePerSec,
}

impl ResourceKind {
    fn of(e: &LimitExceeded) -> ResourceKind {
        match (e.resource, e.direction) {
            (Resource::Memory, _) => ResourceKind::Memory,
            (Resource::FileDescriptors, _) => ResourceKind::Fds,
            (Resource::Streams, Some(Direction::Inbound)) => ResourceKind::StreamsIn,
            (Resource::Streams, Some(Direction::Outbound)) => ResourceKind::StreamsOut,
            (Resource::Streams, None) => ResourceKind::Streams,
            (Resource::Connections, Some(Direction::Inbound)) => ResourceKind::ConnsIn,
            (Resource::Connections, Some(Direction::Outbound)) => ResourceKind::ConnsOut,
            (Resource::Connections, None) => ResourceKind::Conns,
        }
    }

    /// Its name in the `[limits]` table.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Memory => "memory",
            ResourceKind::StreamsIn => "streams_in",
            ResourceKind::StreamsOut => "streams_out",
            ResourceKind::Streams => "streams",
            ResourceKind::ConnsIn => "conns_in",
            ResourceKind::ConnsOut => "conns_out",
            ResourceKind::Conns => "conns",
            ResourceKind::Fds => "fds",
            ResourceKind::ConnsPerSubnet => "conns_per_subnet",
            ResourceKind::RatePerSec => "rate_per_sec",
        }
    }
}

/// Why the resource manager refused something: the kind of scope and the resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Refusal {
    /// The kind of scope that refused.
    pub scope: RefusedBy,
    /// The resource.
    pub resource: ResourceKind,
}

impl Refusal {
    /// The refusal behind `e`.
    ///
    /// # Panics
    /// If `e` is not a refusal (a closed handle or a call out of order): the engines only
    /// use handles they hold, so that is a bug of the engine.
    pub fn of(e: &RcmgrError) -> Refusal {
        match e {
            RcmgrError::Limit(l) => Refusal {
                scope: RefusedBy::of(l.scope()),
                resource: ResourceKind::of(l),
            },
            RcmgrError::Gate(g) => Refusal {
                scope: RefusedBy::Gate,
                resource: match g {
                    flotilla_core::rcmgr::GateRefusal::SubnetCap { .. } => {
                        ResourceKind::ConnsPerSubnet
                    }
                    flotilla_core::rcmgr::GateRefusal::Rate { .. } => ResourceKind::RatePerSec,
                },
            },
            other => panic!("the engine misused the resource manager: {other}"),
        }
    }

    /// The reason a refused dial fails with, and the trace shows: `limit:<scope>.<resource>`.
    pub fn reason(self) -> String {
        format!("limit:{self}")
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.scope.name(), self.resource.name())
    }
}

/// What the resource managers of a run refused and what the honest peers' pings did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RcmgrStats {
    /// True if the scenario sets limits, floods with connections or streams, or expects a
    /// ping success rate: the summary then reports these figures.
    pub reported: bool,
    /// Refusals by node, scope kind and resource.
    pub refused: BTreeMap<(u32, Refusal), u64>,
    /// Delivered messages dropped because the receiver's resource manager refused them.
    pub messages_refused: u64,
    /// Connections refused (at either end).
    pub conns_refused: u64,
    /// Pongs that honest nodes received from honest peers.
    pub honest_pongs: u64,
    /// Pings of honest nodes to honest peers that timed out.
    pub honest_ping_timeouts: u64,
    /// Flood connections a target accepted and held.
    pub flood_conns_held: u64,
    /// Flood connections a target refused.
    pub flood_conns_refused: u64,
    /// Flood streams a target accepted and held.
    pub flood_streams_held: u64,
    /// Flood streams a target refused.
    pub flood_streams_refused: u64,
    /// Flood streams not opened because the attacker held no connection to the target.
    pub flood_streams_unconnected: u64,
}

impl RcmgrStats {
    /// The share of honest pings answered: pongs over pongs plus timeouts (1 if none).
    pub fn honest_ping_success(&self) -> f64 {
        let all = self.honest_pongs + self.honest_ping_timeouts;
        if all == 0 {
            1.0
        } else {
            self.honest_pongs as f64 / all as f64
        }
    }
}

/// What one node's resource manager holds for a flood, released after its hold time.
#[derive(Debug, Clone, Copy)]
pub enum Held {
    /// An attacker's connection; `peer` is the attacker if it passed the handshake.
    Conn(ConnHandle, Option<u32>),
    /// An attacker's stream.
    Stream(StreamHandle),
}

/// Summary figures of the resource managers, in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RcmgrSummary {
    /// Share of honest nodes' pings to honest peers that were answered in time.
    pub honest_ping_success: f64,
    /// Pongs honest nodes received from honest peers.
    pub honest_pongs: u64,
    /// Pings of honest nodes to honest peers that timed out.
    pub honest_ping_timeouts: u64,
    /// Delivered messages dropped by the receiver's resource manager.
    pub messages_refused: u64,
    /// Connections refused.
    pub conns_refused: u64,
    /// Flood connections held / refused, flood streams held / refused / without a
    /// connection to open on.
    pub flood: FloodSummary,
    /// Refusals by `<scope>.<resource>`, over every node.
    pub refused: BTreeMap<String, u64>,
    /// Refusals by node, `<scope>.<resource>` and count, nodes in index order.
    pub refused_by_node: Vec<NodeRefusals>,
}

/// The flood counters of [`RcmgrSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloodSummary {
    /// Connections a target accepted and held.
    pub conns_held: u64,
    /// Connections a target refused.
    pub conns_refused: u64,
    /// Streams a target accepted and held.
    pub streams_held: u64,
    /// Streams a target refused.
    pub streams_refused: u64,
    /// Streams not opened: the attacker held no connection to the target.
    pub streams_unconnected: u64,
}

/// One node's refusals of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRefusals {
    /// The node's index.
    pub node: u32,
    /// `<scope>.<resource>`.
    pub refused: String,
    /// How many.
    pub count: u64,
}

impl RcmgrStats {
    /// The summary figures, rounded like the rest of the summary.
    pub fn summary(&self) -> RcmgrSummary {
        let mut refused = BTreeMap::new();
        for ((_, r), n) in &self.refused {
            *refused.entry(r.to_string()).or_insert(0) += n;
        }
        RcmgrSummary {
            honest_ping_success: (self.honest_ping_success() * 1e6).round() / 1e6,
            honest_pongs: self.honest_pongs,
            honest_ping_timeouts: self.honest_ping_timeouts,
            messages_refused: self.messages_refused,
            conns_refused: self.conns_refused,
            flood: FloodSummary {
                conns_held: self.flood_conns_held,
                conns_refused: self.flood_conns_refused,
                streams_held: self.flood_streams_held,
                streams_refused: self.flood_streams_refused,
                streams_unconnected: self.flood_streams_unconnected,
            },
            refused,
            refused_by_node: self
                .refused
                .iter()
                .map(|((node, r), n)| NodeRefusals {
                    node: *node,
                    refused: r.to_string(),
                    count: *n,
                })
                .collect(),
        }
    }
}

/// The resource managers of every node of a run, with the run's refusal counts.
#[derive(Debug)]
pub struct Accounting {
    rms: Vec<Option<Box<ResourceManager>>>,
    /// Bumped when a node's manager is dropped, so held flood resources of its former
    /// self are recognised.
    generation: Vec<u32>,
    /// Nodes of a `[[workload]]` entry: their pings do not count as honest.
    attacker: Vec<bool>,
    /// The run's figures.
    pub stats: RcmgrStats,
    /// Refusals since the last `refused` lines.
    minute: BTreeMap<(u32, Refusal), u64>,
    /// Whether delivered messages are accounted as streams (see [`Accounting::new`]).
    messages: bool,
}

impl Accounting {
    /// No manager yet for the nodes of `world`; `attackers` are the nodes of the workload;
    /// `reported` says whether the summary shows the figures, and whether delivered
    /// messages are accounted as streams.
    ///
    /// Without limits in any profile and without `connect` or `streams` floods
    /// (`reported` false), a message's stream can never be refused: every scope's stream
    /// and memory limits are the machine-scaled defaults (hundreds of streams and
    /// megabytes per peer at least) and nothing but the one message being handled holds a
    /// stream. The engines then skip the per-message streams, which would cost a few
    /// cache-cold map lookups per message and change nothing; connections are accounted
    /// either way.
    pub fn new(world: &World, attackers: &[usize], reported: bool) -> Accounting {
        let mut attacker = vec![false; world.len()];
        for &a in attackers {
            attacker[a] = true;
        }
        Accounting {
            rms: (0..world.len()).map(|_| None).collect(),
            generation: vec![0; world.len()],
            attacker,
            stats: RcmgrStats {
                reported,
                ..RcmgrStats::default()
            },
            minute: BTreeMap::new(),
            messages: reported,
        }
    }

    /// True if delivered messages are accounted as streams (see [`Accounting::new`]).
    pub fn accounts_messages(&self) -> bool {
        self.messages
    }

    /// Node `i`'s manager, created with its profile's limits on first use.
    pub fn rm(&mut self, world: &World, i: usize) -> &mut ResourceManager {
        self.rms[i]
            .get_or_insert_with(|| Box::new(ResourceManager::new((*world.peer(i).limits).clone())))
    }

    /// Node `i`'s manager, if it has one.
    pub fn get(&self, i: usize) -> Option<&ResourceManager> {
        self.rms[i].as_deref()
    }

    /// Node `i` is gone: its manager with everything it held.
    pub fn drop_node(&mut self, i: usize) {
        if self.rms[i].take().is_some() {
            self.generation[i] = self.generation[i].wrapping_add(1);
        }
    }

    /// The generation of node `i`'s manager, for held flood resources.
    pub fn generation(&self, i: usize) -> u32 {
        self.generation[i]
    }

    /// True if node `i` belongs to the workload.
    pub fn is_attacker(&self, i: usize) -> bool {
        self.attacker[i]
    }

    /// Counts a refusal at node `i`; returns true if it is the first since the last
    /// `refused` lines (so the caller schedules them).
    pub fn refused(&mut self, i: usize, r: Refusal) -> bool {
        *self.stats.refused.entry((i as u32, r)).or_insert(0) += 1;
        let first = self.minute.is_empty();
        *self.minute.entry((i as u32, r)).or_insert(0) += 1;
        first
    }

    /// The refusals since the last call, per node in index order, then forgotten.
    pub fn take_minute(&mut self) -> Vec<(u32, Vec<(Refusal, u64)>)> {
        let mut out: Vec<(u32, Vec<(Refusal, u64)>)> = Vec::new();
        for ((node, r), n) in std::mem::take(&mut self.minute) {
            match out.last_mut() {
                Some((last, v)) if *last == node => v.push((r, n)),
                _ => out.push((node, vec![(r, n)])),
            }
        }
        out
    }

    /// Counts a ping outcome of honest node `i` with `peer` (index): answered or not.
    pub fn ping(&mut self, i: usize, peer: Option<usize>, answered: bool) {
        if self.attacker[i] || peer.is_none_or(|p| self.attacker[p]) {
            return;
        }
        if answered {
            self.stats.honest_pongs += 1;
        } else {
            self.stats.honest_ping_timeouts += 1;
        }
    }

    /// Node `i` accepts an inbound connection from node `from` (peer `remote`) at `now`:
    /// opened from `from`'s address and moved to `remote`.
    pub fn open_inbound(
        &mut self,
        world: &World,
        i: usize,
        from: usize,
        remote: PeerId,
        now: Timestamp,
    ) -> Result<ConnHandle, Refusal> {
        let ip = IpAddr::V4(sim_ip(from));
        let rm = self.rm(world, i);
        let opened = rm
            .open_connection_from(Direction::Inbound, true, ip, now)
            .map_err(|e| Refusal::of(&e))
            .and_then(|c| Self::handshake(rm, c, remote));
        if opened.is_err() {
            self.stats.conns_refused += 1;
        }
        opened
    }

    /// Node `i` opens an outbound connection to `remote` (its handshake done).
    pub fn open_outbound(
        &mut self,
        world: &World,
        i: usize,
        remote: PeerId,
    ) -> Result<ConnHandle, Refusal> {
        let rm = self.rm(world, i);
        let opened = rm
            .open_connection(Direction::Outbound, true)
            .map_err(|e| Refusal::of(&e))
            .and_then(|c| Self::handshake(rm, c, remote));
        if opened.is_err() {
            self.stats.conns_refused += 1;
        }
        opened
    }

    fn handshake(
        rm: &mut ResourceManager,
        c: ConnHandle,
        remote: PeerId,
    ) -> Result<ConnHandle, Refusal> {
        match rm.set_connection_peer(c, remote) {
            Ok(()) => Ok(c),
            Err(e) => {
                let r = Refusal::of(&e);
                Self::expect(rm.close_connection(c));
                Err(r)
            }
        }
    }

    /// Node `i` closes connection `c` (if its manager is still the one that opened it)
    /// and drops the scopes nothing holds any more.
    pub fn close(&mut self, i: usize, c: ConnHandle) {
        if let Some(rm) = self.rms[i].as_deref_mut() {
            Self::expect(rm.close_connection(c));
            rm.collect_garbage();
        }
    }

    /// Node `i` receives a message of `bytes` from `from`: a stream on the core protocol,
    /// claimed by the core service, holding the bytes while the message is handled. The
    /// caller hands the message to the node only if this succeeds, then calls
    /// [`Accounting::message_done`].
    pub fn message(
        &mut self,
        world: &World,
        i: usize,
        from: PeerId,
        bytes: u64,
    ) -> Result<StreamHandle, Refusal> {
        let opened = open_message(self.rm(world, i), from, bytes);
        if opened.is_err() {
            self.stats.messages_refused += 1;
        }
        opened
    }

    /// The message of stream `s` at node `i` was handled: the stream closes.
    pub fn message_done(&mut self, i: usize, s: StreamHandle) {
        if let Some(rm) = self.rms[i].as_deref_mut() {
            Self::expect(rm.close_stream(s));
        }
    }

    /// Target `t` accepts a flood connection from attacker `a` at `now`, moved to `a` if
    /// `handshake`.
    pub fn flood_conn(
        &mut self,
        world: &World,
        t: usize,
        a: usize,
        handshake: bool,
        now: Timestamp,
    ) -> Result<Held, Refusal> {
        let ip = IpAddr::V4(sim_ip(a));
        let remote = world.peer(a).peer_id;
        let rm = self.rm(world, t);
        let opened = rm
            .open_connection_from(Direction::Inbound, true, ip, now)
            .map_err(|e| Refusal::of(&e))
            .and_then(|c| {
                if handshake {
                    Self::handshake(rm, c, remote).map(|c| Held::Conn(c, Some(a as u32)))
                } else {
                    Ok(Held::Conn(c, None))
                }
            });
        match opened {
            Ok(_) => self.stats.flood_conns_held += 1,
            Err(_) => self.stats.flood_conns_refused += 1,
        }
        opened
    }

    /// Target `t` accepts a flood stream from attacker `a`: opened, negotiated on the core
    /// protocol, holding `memory_bytes` at medium priority.
    pub fn flood_stream(
        &mut self,
        world: &World,
        t: usize,
        a: usize,
        memory_bytes: u64,
    ) -> Result<Held, Refusal> {
        let remote = world.peer(a).peer_id;
        let rm = self.rm(world, t);
        let opened = rm
            .open_stream_for(Direction::Inbound, remote)
            .map_err(|e| Refusal::of(&e))
            .and_then(|s| {
                let steps = rm.set_protocol(s, PROTOCOL).and_then(|()| {
                    if memory_bytes > 0 {
                        rm.reserve_memory(s, memory_bytes, PRIORITY_MEDIUM)
                    } else {
                        Ok(())
                    }
                });
                match steps {
                    Ok(()) => Ok(Held::Stream(s)),
                    Err(e) => {
                        Self::expect(rm.close_stream(s));
                        Err(Refusal::of(&e))
                    }
                }
            });
        match opened {
            Ok(_) => self.stats.flood_streams_held += 1,
            Err(_) => self.stats.flood_streams_refused += 1,
        }
        opened
    }

    /// Releases what a flood held at node `t`, if `generation` is still its manager's.
    pub fn release(&mut self, t: usize, generation: u32, held: Held) {
        if self.generation[t] != generation {
            return;
        }
        let Some(rm) = self.rms[t].as_deref_mut() else {
            return;
        };
        match held {
            Held::Conn(c, _) => Self::expect(rm.close_connection(c)),
            Held::Stream(s) => Self::expect(rm.close_stream(s)),
        }
        rm.collect_garbage();
    }

    fn expect(r: Result<(), RcmgrError>) {
        if let Err(e) = r {
            panic!("the engine misused the resource manager: {e}");
        }
    }
}

/// Opens the stream of a received message of `bytes` from `from` in `rm`: inbound, on the
/// core protocol, claimed by the core service, holding the bytes at high priority. Close
/// it when the message was handled.
pub fn open_message(
    rm: &mut ResourceManager,
    from: PeerId,
    bytes: u64,
) -> Result<StreamHandle, Refusal> {
    let s = rm
        .open_stream_for(Direction::Inbound, from)
        .map_err(|e| Refusal::of(&e))?;
    let steps = rm
        .set_protocol(s, PROTOCOL)
        .and_then(|()| rm.set_service(s, SERVICE))
        .and_then(|()| rm.reserve_memory(s, bytes, PRIORITY_HIGH));
    match steps {
        Ok(()) => Ok(s),
        Err(e) => {
            Accounting::expect(rm.close_stream(s));
            Err(Refusal::of(&e))
        }
    }
}

/// What is wrong if a scope an operation about `peer` touched holds more than its limit:
/// the system, transient, core protocol, core service and `peer` scopes are checked;
/// `None` if all are within their limits.
pub fn over_limit(rm: &ResourceManager, peer: Option<&PeerId>) -> Option<String> {
    let l = rm.limits();
    let within = |u: &Usage, lim: &ScopeLimits| {
        u.memory <= lim.memory
            && u.streams_in <= lim.streams_in
            && u.streams_out <= lim.streams_out
            && u.streams_in + u.streams_out <= lim.streams
            && u.conns_in <= lim.conns_in
            && u.conns_out <= lim.conns_out
            && u.conns_in + u.conns_out <= lim.conns
            && u.fds <= lim.fds
    };
    let protocol = l.protocol_limits(PROTOCOL);
    let service = l.service_limits(SERVICE);
    let scopes = [
        ("system", Some(rm.system_usage()), l.system),
        ("transient", Some(rm.transient_usage()), l.transient),
        ("protocol", rm.protocol_usage(PROTOCOL), protocol),
        ("service", rm.service_usage(SERVICE), service),
    ];
    for (name, usage, lim) in &scopes {
        if let Some(u) = usage
            && !within(u, lim)
        {
            return Some(format!("{name}: usage {u:?} exceeds limits {lim:?}"));
        }
    }
    if let Some(p) = peer
        && let Some(u) = rm.peer_usage(p)
        && !within(&u, &l.peer)
    {
        return Some(format!("peer {p}: usage {u:?} exceeds limits {:?}", l.peer));
    }
    None
}
