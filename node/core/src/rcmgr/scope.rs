//! The scope store and the [`ResourceManager`] that reserves and releases through it.
//!
//! Every scope lives in one slot vector; handles are (index, generation) pairs, so a
//! handle to a closed scope is recognised and refused, and a freed slot is reused without
//! allocating. Named scopes (peers, protocols, services and their per-peer sub-scopes) are
//! found through ordered maps of slot indices.
//!
//! Each connection and stream scope keeps the full list of scopes it counts in (its
//! *edges*); a span counts in its parent span or owner and, through it, in everything the
//! owner counts in. A reservation walks this chain twice: first it checks every scope, then,
//! only if none refused, it adds to every scope. So a refusal leaves nothing behind, and
//! the aggregate usage of every scope is exactly the sum of what is held below it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::identity::PeerId;
use crate::node::Direction;

use super::allow::Allowlist;
use super::gate::{Gate, GateLimits, GateRefusal, Subnet};
use super::limits::{Limits, ScopeKind, ScopeLimits, UNLIMITED};
use crate::time::Timestamp;

/// Reservation priority for memory the node can do without (caches, read-ahead).
pub const PRIORITY_LOW: u8 = 101;
/// Reservation priority for ordinary buffers.
pub const PRIORITY_MEDIUM: u8 = 152;
/// Reservation priority for memory a protocol needs to make progress.
pub const PRIORITY_HIGH: u8 = 203;
/// Reservation priority that may use the whole limit.
pub const PRIORITY_ALWAYS: u8 = 255;

/// Spans nest at most this deep; a deeper span is refused.
pub const MAX_SPAN_DEPTH: usize = 16;

const NONE: u32 = u32::MAX;
const SYSTEM: u32 = 0;
const TRANSIENT: u32 = 1;
const ALLOW_SYSTEM: u32 = 2;
const ALLOW_TRANSIENT: u32 = 3;
/// Most scopes a connection or stream counts in: peer, transient or protocol and
/// protocol-peer, service and service-peer, system.
const MAX_EDGES: usize = 6;
const MAX_CHAIN: usize = 1 + MAX_SPAN_DEPTH + 1 + MAX_EDGES;

/// What a scope holds: memory, streams, connections and file descriptors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Bytes of memory.
    pub memory: u64,
    /// Inbound streams.
    pub streams_in: u64,
    /// Outbound streams.
    pub streams_out: u64,
    /// Inbound connections.
    pub conns_in: u64,
    /// Outbound connections.
    pub conns_out: u64,
    /// File descriptors.
    pub fds: u64,
}

impl Usage {
    /// True if nothing is held.
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }

    /// The usage with resource names matching [`ScopeLimits::fields`], totals included.
    pub fn fields(&self) -> [(&'static str, u64); 8] {
        [
            ("memory", self.memory),
            ("streams_in", self.streams_in),
            ("streams_out", self.streams_out),
            ("streams", self.streams_in + self.streams_out),
            ("conns_in", self.conns_in),
            ("conns_out", self.conns_out),
            ("conns", self.conns_in + self.conns_out),
            ("fds", self.fds),
        ]
    }

    /// Adds `d` (for sums over scopes, e.g. over all peers).
    pub fn add(&mut self, d: &Usage) {
        self.memory += d.memory;
        self.streams_in += d.streams_in;
        self.streams_out += d.streams_out;
        self.conns_in += d.conns_in;
        self.conns_out += d.conns_out;
        self.fds += d.fds;
    }

    /// Subtracts `d`. Every caller releases only what was added before, so this never
    /// underflows; debug builds (and so the property tests) assert it.
    fn sub(&mut self, d: &Usage) {
        fn s(a: &mut u64, b: u64) {
            debug_assert!(*a >= b, "resource counter underflow: {a} - {b}");
            *a = a.saturating_sub(b);
        }
        s(&mut self.memory, d.memory);
        s(&mut self.streams_in, d.streams_in);
        s(&mut self.streams_out, d.streams_out);
        s(&mut self.conns_in, d.conns_in);
        s(&mut self.conns_out, d.conns_out);
        s(&mut self.fds, d.fds);
    }

    fn stream(dir: Direction) -> Usage {
        match dir {
            Direction::Inbound => Usage {
                streams_in: 1,
                ..Usage::default()
            },
            Direction::Outbound => Usage {
                streams_out: 1,
                ..Usage::default()
            },
        }
    }

    fn conn(dir: Direction, uses_fd: bool) -> Usage {
        let mut u = match dir {
            Direction::Inbound => Usage {
                conns_in: 1,
                ..Usage::default()
            },
            Direction::Outbound => Usage {
                conns_out: 1,
                ..Usage::default()
            },
        };
        u.fds = u64::from(uses_fd);
        u
    }
}

/// A kind of resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// Bytes of memory.
    Memory,
    /// Streams.
    Streams,
    /// Connections.
    Connections,
    /// File descriptors.
    FileDescriptors,
}

/// The name of a scope, as error messages and statistics show it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeName {
    /// The whole node.
    System,
    /// Connections before the handshake, streams before protocol negotiation.
    Transient,
    /// The allowlisted budget of the whole node.
    AllowlistedSystem,
    /// The allowlisted budget for connections before the handshake.
    AllowlistedTransient,
    /// A service.
    Service(Arc<str>),
    /// A protocol.
    Protocol(Arc<str>),
    /// A remote peer.
    Peer(PeerId),
    /// One peer within a service.
    ServicePeer(Arc<str>, PeerId),
    /// One peer within a protocol.
    ProtocolPeer(Arc<str>, PeerId),
    /// A connection, by its serial number.
    Connection(u64),
    /// A stream, by its serial number.
    Stream(u64),
    /// A span, by its serial number.
    Span(u64),
}

impl ScopeName {
    /// The kind of the scope, as the `[limits]` table names it; `None` for a span.
    pub fn kind(&self) -> Option<ScopeKind> {
        Some(match self {
            ScopeName::System => ScopeKind::System,
            ScopeName::Transient => ScopeKind::Transient,
            ScopeName::AllowlistedSystem => ScopeKind::AllowlistedSystem,
            ScopeName::AllowlistedTransient => ScopeKind::AllowlistedTransient,
            ScopeName::Service(_) => ScopeKind::Service,
            ScopeName::Protocol(_) => ScopeKind::Protocol,
            ScopeName::Peer(_) => ScopeKind::Peer,
            ScopeName::ServicePeer(..) => ScopeKind::ServicePeer,
            ScopeName::ProtocolPeer(..) => ScopeKind::ProtocolPeer,
            ScopeName::Connection(_) => ScopeKind::Connection,
            ScopeName::Stream(_) => ScopeKind::Stream,
            ScopeName::Span(_) => return None,
        })
    }
}

impl fmt::Display for ScopeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeName::System => f.write_str("system"),
            ScopeName::Transient => f.write_str("transient"),
            ScopeName::AllowlistedSystem => f.write_str("allowlisted system"),
            ScopeName::AllowlistedTransient => f.write_str("allowlisted transient"),
            ScopeName::Service(s) => write!(f, "service {s}"),
            ScopeName::Protocol(p) => write!(f, "protocol {p}"),
            ScopeName::Peer(p) => write!(f, "peer {p}"),
            ScopeName::ServicePeer(s, p) => write!(f, "service {s} of peer {p}"),
            ScopeName::ProtocolPeer(s, p) => write!(f, "protocol {s} of peer {p}"),
            ScopeName::Connection(n) => write!(f, "connection #{n}"),
            ScopeName::Stream(n) => write!(f, "stream #{n}"),
            ScopeName::Span(n) => write!(f, "span #{n}"),
        }
    }
}

/// A reservation refused because a scope's limit would be exceeded.
///
/// Built only on refusal (it allocates the chain), never on the success path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitExceeded {
    /// The scopes walked, from the one reserved on to the one that refused (last).
    pub chain: Vec<ScopeName>,
    /// The resource.
    pub resource: Resource,
    /// The direction of the limit for streams and connections, `None` for their total and
    /// for memory and file descriptors.
    pub direction: Option<Direction>,
    /// What the refusing scope held.
    pub current: u64,
    /// What was asked for on top.
    pub attempted: u64,
    /// The limit that applied (for memory: after the priority's share).
    pub limit: u64,
    /// The reservation's priority, for memory.
    pub priority: Option<u8>,
}

impl LimitExceeded {
    /// The scope that refused.
    pub fn scope(&self) -> &ScopeName {
        self.chain.last().unwrap_or(&ScopeName::System)
    }
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Some(Direction::Inbound) => "inbound ",
            Some(Direction::Outbound) => "outbound ",
            None => "",
        };
        let what = match self.resource {
            Resource::Memory => "bytes of memory",
            Resource::Streams => "streams",
            Resource::Connections => "connections",
            Resource::FileDescriptors => "file descriptors",
        };
        write!(
            f,
            "{} limit reached: {} more {dir}{what} asked, {} held, limit {}",
            self.scope(),
            self.attempted,
            self.current,
            self.limit
        )?;
        if let Some(p) = self.priority {
            write!(f, " at priority {p}/255")?;
        }
        f.write_str(" (")?;
        for (i, s) in self.chain.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{s}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for LimitExceeded {}

/// Why a resource-manager call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RcmgrError {
    /// A limit would be exceeded; nothing was changed.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The handle refers to a scope that was closed (or to a child of a closed span).
    #[error("the {0} was already closed")]
    Closed(&'static str),
    /// The call does not fit the scope's state.
    #[error("{0}")]
    State(&'static str),
    /// More memory released than the scope itself reserved.
    #[error("{scope} released {released} bytes but holds only {held} of its own")]
    OverRelease {
        /// The scope.
        scope: ScopeName,
        /// What it held itself.
        held: u64,
        /// What was released.
        released: u64,
    },
    /// The inbound gate refused a connection (subnet cap or rate).
    #[error(transparent)]
    Gate(#[from] GateRefusal),
    /// Spans nested deeper than [`MAX_SPAN_DEPTH`].
    #[error("spans nest at most {MAX_SPAN_DEPTH} deep")]
    SpanTooDeep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    index: u32,
    generation: u32,
}

/// A connection open in the resource manager. Close it with
/// [`ResourceManager::close_connection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnHandle(Key);

/// A stream open in the resource manager. Close it with [`ResourceManager::close_stream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamHandle(Key);

/// A span: memory reservations released together by [`ResourceManager::close_span`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanHandle(Key);

/// What a span hangs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanOwner {
    /// The whole node.
    System,
    /// The transient scope.
    Transient,
    /// A peer (the peer scope stays while the span is open).
    Peer(PeerId),
    /// A connection.
    Connection(ConnHandle),
    /// A stream.
    Stream(StreamHandle),
    /// Another span: a nested span.
    Span(SpanHandle),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Edges {
    ids: [u32; MAX_EDGES],
    len: u8,
}

impl Edges {
    fn push(&mut self, id: u32) {
        if id != NONE {
            self.ids[usize::from(self.len)] = id;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[u32] {
        &self.ids[..usize::from(self.len)]
    }

    fn contains(&self, id: u32) -> bool {
        self.as_slice().contains(&id)
    }
}

#[derive(Clone, Copy, Debug)]
struct ConnState {
    serial: u64,
    peer: u32,
    /// The system scope it counts in: the normal or the allowlisted one.
    system: u32,
    /// The subnet the inbound gate counted it in.
    subnet: Option<Subnet>,
}

#[derive(Clone, Copy, Debug)]
struct StreamState {
    serial: u64,
    peer: u32,
    protocol: u32,
    protocol_peer: u32,
    service: u32,
    service_peer: u32,
    /// Counts in the allowlisted transient and system scopes.
    allowlisted: bool,
}

#[derive(Clone, Debug)]
enum Kind {
    System,
    Transient,
    AllowSystem,
    AllowTransient,
    Service(Arc<str>),
    Protocol(Arc<str>),
    Peer(PeerId),
    ServicePeer(u32, PeerId),
    ProtocolPeer(u32, PeerId),
    Connection(ConnState),
    Stream(StreamState),
    /// `up` is the parent span or the owner; `depth` is 1 for a span on a non-span scope.
    Span {
        serial: u64,
        up: u32,
        depth: u8,
    },
}

#[derive(Clone, Debug)]
struct Scope {
    kind: Kind,
    /// Everything held by this scope and below it.
    usage: Usage,
    /// Memory reserved on this scope itself.
    own_memory: u64,
    limits: ScopeLimits,
    /// For connections and streams: every scope they count in.
    edges: Edges,
    /// Scopes that name this one in their edges, owned spans, per-peer sub-scopes.
    refs: u32,
    /// Open spans directly under this scope: the first of a doubly linked list.
    first_span: u32,
    prev_sibling: u32,
    next_sibling: u32,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    scope: Option<Scope>,
}

/// The resource manager: every scope with its usage and limits.
///
/// Sans-IO: the caller asks before it accepts a connection, opens a stream or allocates a
/// buffer, and tells it when they end. Idle peer, protocol and service scopes are dropped by
/// [`ResourceManager::collect_garbage`], which the host calls now and then; between two
/// calls a returning peer finds its scope still there, so the steady state allocates
/// nothing.
#[derive(Debug)]
pub struct ResourceManager {
    limits: Limits,
    slots: Vec<Slot>,
    free: Vec<u32>,
    peers: BTreeMap<PeerId, u32>,
    protocols: BTreeMap<Arc<str>, u32>,
    services: BTreeMap<Arc<str>, u32>,
    protocol_peers: BTreeMap<(u32, PeerId), u32>,
    service_peers: BTreeMap<(u32, PeerId), u32>,
    next_serial: u64,
    allowlist: Allowlist,
    gate: Gate,
}

#[derive(Clone, Copy)]
struct Chain {
    ids: [u32; MAX_CHAIN],
    len: usize,
}

impl Chain {
    fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len]
    }
}

/// The first refusal found when `delta` is added to a scope: resource, direction, current,
/// attempted, limit.
type Breach = (Resource, Option<Direction>, u64, u64, u64);

#[inline]
fn breach(usage: &Usage, d: &Usage, l: &ScopeLimits, priority: u8) -> Option<Breach> {
    if d.memory > 0 {
        let limit = if l.memory == UNLIMITED || priority == u8::MAX {
            l.memory
        } else {
            // At most limit * 256 / 256, so it fits in a u64.
            ((u128::from(l.memory) * (1 + u128::from(priority))) >> 8) as u64
        };
        if usage.memory.saturating_add(d.memory) > limit {
            return Some((Resource::Memory, None, usage.memory, d.memory, limit));
        }
    }
    if (d.streams_in | d.streams_out) > 0 {
        let b = counts(
            Resource::Streams,
            (usage.streams_in, usage.streams_out),
            (d.streams_in, d.streams_out),
            (l.streams_in, l.streams_out, l.streams),
        );
        if b.is_some() {
            return b;
        }
    }
    if (d.conns_in | d.conns_out) > 0 {
        let b = counts(
            Resource::Connections,
            (usage.conns_in, usage.conns_out),
            (d.conns_in, d.conns_out),
            (l.conns_in, l.conns_out, l.conns),
        );
        if b.is_some() {
            return b;
        }
    }
    if d.fds > 0 && usage.fds + d.fds > l.fds {
        return Some((Resource::FileDescriptors, None, usage.fds, d.fds, l.fds));
    }
    None
}

/// The first refused limit of a directional count: inbound, outbound, then the total.
#[inline]
fn counts(
    res: Resource,
    (cur_in, cur_out): (u64, u64),
    (d_in, d_out): (u64, u64),
    (l_in, l_out, l_total): (u64, u64, u64),
) -> Option<Breach> {
    if d_in > 0 && cur_in + d_in > l_in {
        return Some((res, Some(Direction::Inbound), cur_in, d_in, l_in));
    }
    if d_out > 0 && cur_out + d_out > l_out {
        return Some((res, Some(Direction::Outbound), cur_out, d_out, l_out));
    }
    let (cur, d) = (cur_in + cur_out, d_in + d_out);
    if cur + d > l_total {
        return Some((res, None, cur, d, l_total));
    }
    None
}

impl ResourceManager {
    /// A manager with these limits and nothing held.
    pub fn new(limits: Limits) -> Self {
        let mut m = ResourceManager {
            slots: Vec::new(),
            free: Vec::new(),
            peers: BTreeMap::new(),
            protocols: BTreeMap::new(),
            services: BTreeMap::new(),
            protocol_peers: BTreeMap::new(),
            service_peers: BTreeMap::new(),
            next_serial: 0,
            allowlist: Allowlist::default(),
            gate: Gate::new(limits.inbound),
            limits,
        };
        let system = m.alloc(Kind::System, m.limits.system);
        let transient = m.alloc(Kind::Transient, m.limits.transient);
        let allow_system = m.alloc(Kind::AllowSystem, m.limits.allowlisted_system);
        let allow_transient = m.alloc(Kind::AllowTransient, m.limits.allowlisted_transient);
        m.s_mut(allow_transient).edges.push(ALLOW_SYSTEM);
        debug_assert_eq!(
            (system, transient, allow_system, allow_transient),
            (SYSTEM, TRANSIENT, ALLOW_SYSTEM, ALLOW_TRANSIENT)
        );
        m
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    // ---- slots ----

    fn alloc(&mut self, kind: Kind, limits: ScopeLimits) -> u32 {
        let scope = Scope {
            kind,
            usage: Usage::default(),
            own_memory: 0,
            limits,
            edges: Edges::default(),
            refs: 0,
            first_span: NONE,
            prev_sibling: NONE,
            next_sibling: NONE,
        };
        if let Some(i) = self.free.pop() {
            self.slots[i as usize].scope = Some(scope);
            i
        } else {
            let i = u32::try_from(self.slots.len()).unwrap_or(NONE - 1);
            self.slots.push(Slot {
                generation: 0,
                scope: Some(scope),
            });
            i
        }
    }

    fn release_slot(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        slot.scope = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(i);
    }

    fn key(&self, i: u32) -> Key {
        Key {
            index: i,
            generation: self.slots[i as usize].generation,
        }
    }

    fn s(&self, i: u32) -> &Scope {
        match &self.slots[i as usize].scope {
            Some(s) => s,
            None => unreachable!("scope {i} is referenced but free"),
        }
    }

    fn s_mut(&mut self, i: u32) -> &mut Scope {
        match &mut self.slots[i as usize].scope {
            Some(s) => s,
            None => unreachable!("scope {i} is referenced but free"),
        }
    }

    fn lookup(&self, k: Key, what: &'static str) -> Result<u32, RcmgrError> {
        match self.slots.get(k.index as usize) {
            Some(slot) if slot.generation == k.generation && slot.scope.is_some() => Ok(k.index),
            _ => Err(RcmgrError::Closed(what)),
        }
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    // ---- named scopes ----

    fn peer_scope(&mut self, peer: PeerId) -> u32 {
        if let Some(&i) = self.peers.get(&peer) {
            return i;
        }
        let i = self.alloc(Kind::Peer(peer), self.limits.peer);
        self.peers.insert(peer, i);
        i
    }

    fn protocol_scope(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.protocols.get(name) {
            return i;
        }
        let name: Arc<str> = Arc::from(name);
        let i = self.alloc(
            Kind::Protocol(name.clone()),
            self.limits.protocol_limits(&name),
        );
        self.protocols.insert(name, i);
        i
    }

    fn service_scope(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.services.get(name) {
            return i;
        }
        let name: Arc<str> = Arc::from(name);
        let i = self.alloc(
            Kind::Service(name.clone()),
            self.limits.service_limits(&name),
        );
        self.services.insert(name, i);
        i
    }

    /// The per-peer sub-scope of a protocol (`service` false) or service (`service` true).
    fn sub_scope(&mut self, parent: u32, peer_scope: u32, service: bool) -> u32 {
        let Kind::Peer(peer) = self.s(peer_scope).kind else {
            unreachable!("not a peer scope")
        };
        let map = if service {
            &self.service_peers
        } else {
            &self.protocol_peers
        };
        if let Some(&i) = map.get(&(parent, peer)) {
            return i;
        }
        let (kind, limits) = if service {
            (Kind::ServicePeer(parent, peer), self.limits.service_peer)
        } else {
            (Kind::ProtocolPeer(parent, peer), self.limits.protocol_peer)
        };
        let i = self.alloc(kind, limits);
        self.s_mut(parent).refs += 1;
        self.s_mut(peer_scope).refs += 1;
        if service {
            self.service_peers.insert((parent, peer), i);
        } else {
            self.protocol_peers.insert((parent, peer), i);
        }
        i
    }

    fn name(&self, i: u32) -> ScopeName {
        match &self.s(i).kind {
            Kind::System => ScopeName::System,
            Kind::Transient => ScopeName::Transient,
            Kind::AllowSystem => ScopeName::AllowlistedSystem,
            Kind::AllowTransient => ScopeName::AllowlistedTransient,
            Kind::Service(n) => ScopeName::Service(n.clone()),
            Kind::Protocol(n) => ScopeName::Protocol(n.clone()),
            Kind::Peer(p) => ScopeName::Peer(*p),
            Kind::ServicePeer(s, p) => match &self.s(*s).kind {
                Kind::Service(n) => ScopeName::ServicePeer(n.clone(), *p),
                _ => unreachable!("service-peer scope without its service"),
            },
            Kind::ProtocolPeer(s, p) => match &self.s(*s).kind {
                Kind::Protocol(n) => ScopeName::ProtocolPeer(n.clone(), *p),
                _ => unreachable!("protocol-peer scope without its protocol"),
            },
            Kind::Connection(c) => ScopeName::Connection(c.serial),
            Kind::Stream(s) => ScopeName::Stream(s.serial),
            Kind::Span { serial, .. } => ScopeName::Span(*serial),
        }
    }

    // ---- chains and reservations ----

    /// `start`, the spans above it, their owner and everything the owner counts in.
    fn chain(&self, start: u32) -> Chain {
        let mut c = Chain {
            ids: [NONE; MAX_CHAIN],
            len: 0,
        };
        let mut cur = start;
        loop {
            c.ids[c.len] = cur;
            c.len += 1;
            let s = self.s(cur);
            if let Kind::Span { up, .. } = s.kind {
                cur = up;
                continue;
            }
            for &e in s.edges.as_slice() {
                c.ids[c.len] = e;
                c.len += 1;
            }
            if !matches!(s.kind, Kind::System | Kind::AllowSystem) && s.edges.len == 0 {
                // Named scopes count in the system scope only.
                c.ids[c.len] = SYSTEM;
                c.len += 1;
            }
            return c;
        }
    }

    fn refusal(&self, chain: &[u32], at: usize, b: Breach, priority: Option<u8>) -> RcmgrError {
        let (resource, direction, current, attempted, limit) = b;
        RcmgrError::Limit(LimitExceeded {
            chain: chain[..=at].iter().map(|&i| self.name(i)).collect(),
            resource,
            direction,
            current,
            attempted,
            limit,
            priority,
        })
    }

    /// Adds `d` to every scope in `scopes`, or to none if one refuses.
    fn try_add(&mut self, scopes: &[u32], d: &Usage, priority: u8) -> Result<(), RcmgrError> {
        for (at, &i) in scopes.iter().enumerate() {
            let s = self.s(i);
            if let Some(b) = breach(&s.usage, d, &s.limits, priority) {
                let prio = (b.0 == Resource::Memory).then_some(priority);
                return Err(self.refusal(scopes, at, b, prio));
            }
        }
        for &i in scopes {
            self.s_mut(i).usage.add(d);
        }
        Ok(())
    }

    fn sub_all(&mut self, scopes: &[u32], d: &Usage) {
        for &i in scopes {
            self.s_mut(i).usage.sub(d);
        }
    }

    /// Replaces the edges of connection or stream `i`, moving its usage from the scopes it
    /// leaves to the scopes it joins; nothing changes if one of those refuses.
    fn rewire(&mut self, i: u32, new: Edges) -> Result<(), RcmgrError> {
        let old = self.s(i).edges;
        let usage = self.s(i).usage;
        let mut joined = Edges::default();
        for &e in new.as_slice() {
            if !old.contains(e) {
                joined.push(e);
            }
        }
        for (at, &j) in joined.as_slice().iter().enumerate() {
            let s = self.s(j);
            if let Some(b) = breach(&s.usage, &usage, &s.limits, PRIORITY_ALWAYS) {
                // The moving scope leads the chain of the error message.
                let mut ids = [i; MAX_EDGES + 1];
                ids[1..=joined.as_slice().len()].copy_from_slice(joined.as_slice());
                return Err(self.refusal(&ids[..=joined.as_slice().len()], at + 1, b, None));
            }
        }
        for &e in old.as_slice() {
            if !new.contains(e) {
                let s = self.s_mut(e);
                s.usage.sub(&usage);
                s.refs -= 1;
            }
        }
        for &e in joined.as_slice() {
            let s = self.s_mut(e);
            s.usage.add(&usage);
            s.refs += 1;
        }
        self.s_mut(i).edges = new;
        Ok(())
    }

    // ---- connections ----

    /// Opens a connection in the transient scope, before its peer is known. `uses_fd` is
    /// true for transports that hold a file descriptor per connection (TCP).
    pub fn open_connection(
        &mut self,
        dir: Direction,
        uses_fd: bool,
    ) -> Result<ConnHandle, RcmgrError> {
        self.open_conn_in(dir, uses_fd, TRANSIENT, SYSTEM)
    }

    /// Opens a connection from or to `remote` at `now` in the transient scope.
    ///
    /// An inbound connection from an address not on the allowlist first passes the inbound
    /// gate (per-subnet cap and rate limit, loopback exempt by default: see
    /// [`ResourceManager::set_gate_limits`]). If the normal transient or system budget
    /// refuses the connection and `remote` is on the allowlist (see
    /// [`ResourceManager::set_allowlist`]), it opens in the allowlisted transient and system
    /// scopes instead. The connection stays on the budget it was opened on.
    pub fn open_connection_from(
        &mut self,
        dir: Direction,
        uses_fd: bool,
        remote: IpAddr,
        now: Timestamp,
    ) -> Result<ConnHandle, RcmgrError> {
        let allowed = self.allowlist.allows_addr(remote);
        let subnet = if dir == Direction::Inbound && !allowed {
            self.gate.admit(remote, now)?
        } else {
            None
        };
        let opened = match self.open_conn_in(dir, uses_fd, TRANSIENT, SYSTEM) {
            Err(RcmgrError::Limit(e))
                if allowed && matches!(e.scope(), ScopeName::Transient | ScopeName::System) =>
            {
                self.open_conn_in(dir, uses_fd, ALLOW_TRANSIENT, ALLOW_SYSTEM)
            }
            other => other,
        };
        match opened {
            Ok(c) => {
                if let Kind::Connection(st) = &mut self.s_mut(c.0.index).kind {
                    st.subnet = subnet;
                }
                Ok(c)
            }
            Err(e) => {
                if let Some(s) = subnet {
                    self.gate.release(s);
                }
                Err(e)
            }
        }
    }

    /// Replaces the limits of the inbound gate (per-subnet caps and rates), forgetting
    /// what it counted.
    pub fn set_gate_limits(&mut self, limits: GateLimits) {
        self.gate = Gate::new(limits);
    }

    /// The inbound gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Replaces the allowlist.
    pub fn set_allowlist(&mut self, allowlist: Allowlist) {
        self.allowlist = allowlist;
    }

    /// The allowlist.
    pub fn allowlist(&self) -> &Allowlist {
        &self.allowlist
    }

    fn open_conn_in(
        &mut self,
        dir: Direction,
        uses_fd: bool,
        transient: u32,
        system: u32,
    ) -> Result<ConnHandle, RcmgrError> {
        let serial = self.serial();
        let i = self.alloc(
            Kind::Connection(ConnState {
                serial,
                peer: NONE,
                system,
                subnet: None,
            }),
            self.limits.connection,
        );
        let mut edges = Edges::default();
        edges.push(transient);
        edges.push(system);
        self.s_mut(i).edges = edges;
        let chain = self.chain(i);
        if let Err(e) = self.try_add(chain.as_slice(), &Usage::conn(dir, uses_fd), 0) {
            self.release_slot(i);
            return Err(e);
        }
        self.s_mut(transient).refs += 1;
        self.s_mut(system).refs += 1;
        Ok(ConnHandle(self.key(i)))
    }

    /// The handshake is done: moves the connection from the transient scope to its peer's.
    pub fn set_connection_peer(&mut self, c: ConnHandle, peer: PeerId) -> Result<(), RcmgrError> {
        let i = self.lookup(c.0, "connection")?;
        let Kind::Connection(st) = self.s(i).kind else {
            return Err(RcmgrError::Closed("connection"));
        };
        if st.peer != NONE {
            return Err(RcmgrError::State("the connection's peer is already set"));
        }
        let p = self.peer_scope(peer);
        let mut edges = Edges::default();
        edges.push(p);
        edges.push(st.system);
        self.rewire(i, edges)?;
        if let Kind::Connection(st) = &mut self.s_mut(i).kind {
            st.peer = p;
        }
        Ok(())
    }

    /// Closes a connection, releasing everything it and its spans hold.
    pub fn close_connection(&mut self, c: ConnHandle) -> Result<(), RcmgrError> {
        let i = self.lookup(c.0, "connection")?;
        let Kind::Connection(st) = self.s(i).kind else {
            return Err(RcmgrError::Closed("connection"));
        };
        if let Some(s) = st.subnet {
            self.gate.release(s);
        }
        self.close_leaf(i);
        Ok(())
    }

    // ---- streams ----

    /// Opens a stream in the transient scope, before its protocol is negotiated.
    pub fn open_stream(&mut self, dir: Direction) -> Result<StreamHandle, RcmgrError> {
        self.open_stream_in(dir, NONE, false)
    }

    /// Opens a stream of a known peer (on a connection past its handshake): it counts in
    /// the peer scope and, until its protocol is negotiated, in the transient scope. If the
    /// normal transient or system budget refuses it and `peer` is on the allowlist, it
    /// opens in the allowlisted transient and system scopes instead, and stays on that
    /// budget.
    pub fn open_stream_for(
        &mut self,
        dir: Direction,
        peer: PeerId,
    ) -> Result<StreamHandle, RcmgrError> {
        let p = self.peer_scope(peer);
        match self.open_stream_in(dir, p, false) {
            Err(RcmgrError::Limit(e))
                if matches!(e.scope(), ScopeName::Transient | ScopeName::System)
                    && self.allowlist.allows_peer(&peer) =>
            {
                self.open_stream_in(dir, p, true)
            }
            other => other,
        }
    }

    fn open_stream_in(
        &mut self,
        dir: Direction,
        peer: u32,
        allowlisted: bool,
    ) -> Result<StreamHandle, RcmgrError> {
        let serial = self.serial();
        let i = self.alloc(
            Kind::Stream(StreamState {
                serial,
                peer,
                protocol: NONE,
                protocol_peer: NONE,
                service: NONE,
                service_peer: NONE,
                allowlisted,
            }),
            self.limits.stream,
        );
        let (transient, system) = if allowlisted {
            (ALLOW_TRANSIENT, ALLOW_SYSTEM)
        } else {
            (TRANSIENT, SYSTEM)
        };
        let mut edges = Edges::default();
        edges.push(peer);
        edges.push(transient);
        edges.push(system);
        self.s_mut(i).edges = edges;
        let chain = self.chain(i);
        if let Err(e) = self.try_add(chain.as_slice(), &Usage::stream(dir), 0) {
            self.release_slot(i);
            return Err(e);
        }
        for &e in edges.as_slice() {
            self.s_mut(e).refs += 1;
        }
        Ok(StreamHandle(self.key(i)))
    }

    fn stream_state(&self, h: StreamHandle) -> Result<(u32, StreamState), RcmgrError> {
        let i = self.lookup(h.0, "stream")?;
        match self.s(i).kind {
            Kind::Stream(st) => Ok((i, st)),
            _ => Err(RcmgrError::Closed("stream")),
        }
    }

    /// Moves the stream to the scopes `st` names; on refusal the stream keeps its scopes.
    fn move_stream(&mut self, i: u32, mut st: StreamState) -> Result<(), RcmgrError> {
        if st.peer != NONE {
            if st.protocol != NONE && st.protocol_peer == NONE {
                st.protocol_peer = self.sub_scope(st.protocol, st.peer, false);
            }
            if st.service != NONE && st.service_peer == NONE {
                st.service_peer = self.sub_scope(st.service, st.peer, true);
            }
        }
        let (transient, system) = if st.allowlisted {
            (ALLOW_TRANSIENT, ALLOW_SYSTEM)
        } else {
            (TRANSIENT, SYSTEM)
        };
        let mut edges = Edges::default();
        edges.push(st.peer);
        if st.protocol == NONE {
            edges.push(transient);
        } else {
            edges.push(st.protocol);
            edges.push(st.protocol_peer);
        }
        edges.push(st.service);
        edges.push(st.service_peer);
        edges.push(system);
        self.rewire(i, edges)?;
        self.s_mut(i).kind = Kind::Stream(st);
        Ok(())
    }

    /// The stream's connection belongs to `peer`: the stream now counts in the peer scope.
    pub fn set_stream_peer(&mut self, h: StreamHandle, peer: PeerId) -> Result<(), RcmgrError> {
        let (i, mut st) = self.stream_state(h)?;
        if st.peer != NONE {
            return Err(RcmgrError::State("the stream's peer is already set"));
        }
        st.peer = self.peer_scope(peer);
        self.move_stream(i, st)
    }

    /// The protocol is negotiated: moves the stream from the transient scope to the
    /// protocol's (and to the protocol's scope for this peer, if the peer is known).
    pub fn set_protocol(&mut self, h: StreamHandle, protocol: &str) -> Result<(), RcmgrError> {
        let (i, mut st) = self.stream_state(h)?;
        if st.protocol != NONE {
            return Err(RcmgrError::State("the stream's protocol is already set"));
        }
        st.protocol = self.protocol_scope(protocol);
        self.move_stream(i, st)
    }

    /// A service claimed the stream: it now also counts in the service's scope (and in the
    /// service's scope for this peer). The protocol must be set first.
    pub fn set_service(&mut self, h: StreamHandle, service: &str) -> Result<(), RcmgrError> {
        let (i, mut st) = self.stream_state(h)?;
        if st.protocol == NONE {
            return Err(RcmgrError::State(
                "a stream is claimed by a service only after its protocol is set",
            ));
        }
        if st.service != NONE {
            return Err(RcmgrError::State("the stream's service is already set"));
        }
        st.service = self.service_scope(service);
        self.move_stream(i, st)
    }

    /// Closes a stream, releasing everything it and its spans hold.
    pub fn close_stream(&mut self, h: StreamHandle) -> Result<(), RcmgrError> {
        let (i, _) = self.stream_state(h)?;
        self.close_leaf(i);
        Ok(())
    }

    /// Releases a connection or stream and its spans, and frees its slot.
    fn close_leaf(&mut self, i: u32) {
        self.close_spans_under(i);
        let chain = self.chain(i);
        let usage = self.s(i).usage;
        self.sub_all(chain.as_slice(), &usage);
        let edges = self.s(i).edges;
        for &e in edges.as_slice() {
            self.s_mut(e).refs -= 1;
        }
        self.release_slot(i);
    }

    // ---- memory ----

    fn memory_target(&self, at: MemoryScope) -> Result<u32, RcmgrError> {
        match at {
            MemoryScope::Connection(c) => {
                let i = self.lookup(c.0, "connection")?;
                match self.s(i).kind {
                    Kind::Connection(_) => Ok(i),
                    _ => Err(RcmgrError::Closed("connection")),
                }
            }
            MemoryScope::Stream(s) => Ok(self.stream_state(s)?.0),
            MemoryScope::Span(s) => self.span_index(s),
        }
    }

    /// Reserves `bytes` of memory on a connection, stream or span, at `priority` (0-255):
    /// in every scope it counts in, a reservation at priority `p` may bring the usage up to
    /// `limit * (1 + p) / 256`, so low-priority reservations are refused first.
    pub fn reserve_memory(
        &mut self,
        at: impl Into<MemoryScope>,
        bytes: u64,
        priority: u8,
    ) -> Result<(), RcmgrError> {
        let i = self.memory_target(at.into())?;
        let chain = self.chain(i);
        let d = Usage {
            memory: bytes,
            ..Usage::default()
        };
        self.try_add(chain.as_slice(), &d, priority)?;
        self.s_mut(i).own_memory += bytes;
        Ok(())
    }

    /// Releases `bytes` of memory reserved on this connection, stream or span itself.
    pub fn release_memory(
        &mut self,
        at: impl Into<MemoryScope>,
        bytes: u64,
    ) -> Result<(), RcmgrError> {
        let i = self.memory_target(at.into())?;
        let held = self.s(i).own_memory;
        if bytes > held {
            return Err(RcmgrError::OverRelease {
                scope: self.name(i),
                held,
                released: bytes,
            });
        }
        let chain = self.chain(i);
        let d = Usage {
            memory: bytes,
            ..Usage::default()
        };
        self.sub_all(chain.as_slice(), &d);
        self.s_mut(i).own_memory -= bytes;
        Ok(())
    }

    // ---- spans ----

    fn span_index(&self, s: SpanHandle) -> Result<u32, RcmgrError> {
        let i = self.lookup(s.0, "span")?;
        match self.s(i).kind {
            Kind::Span { .. } => Ok(i),
            _ => Err(RcmgrError::Closed("span")),
        }
    }

    /// Opens a span under `owner`. Memory reserved on the span counts in the owner and
    /// everything above it, and is released, with every span nested in it, when the span
    /// (or its owner) closes. A span under a closed span is refused with
    /// [`RcmgrError::Closed`].
    pub fn open_span(&mut self, owner: SpanOwner) -> Result<SpanHandle, RcmgrError> {
        let (up, depth) = match owner {
            SpanOwner::System => (SYSTEM, 1),
            SpanOwner::Transient => (TRANSIENT, 1),
            SpanOwner::Peer(p) => (self.peer_scope(p), 1),
            SpanOwner::Connection(c) => (self.memory_target(MemoryScope::Connection(c))?, 1),
            SpanOwner::Stream(s) => (self.stream_state(s)?.0, 1),
            SpanOwner::Span(s) => {
                let i = self.span_index(s)?;
                let Kind::Span { depth, .. } = self.s(i).kind else {
                    unreachable!("span_index returned a non-span")
                };
                if usize::from(depth) >= MAX_SPAN_DEPTH {
                    return Err(RcmgrError::SpanTooDeep);
                }
                (i, depth + 1)
            }
        };
        let serial = self.serial();
        let i = self.alloc(Kind::Span { serial, up, depth }, ScopeLimits::UNLIMITED);
        let head = self.s(up).first_span;
        {
            let s = self.s_mut(i);
            s.next_sibling = head;
        }
        if head != NONE {
            self.s_mut(head).prev_sibling = i;
        }
        let u = self.s_mut(up);
        u.first_span = i;
        u.refs += 1;
        Ok(SpanHandle(self.key(i)))
    }

    /// Closes a span and every span nested in it, releasing all their memory.
    pub fn close_span(&mut self, s: SpanHandle) -> Result<(), RcmgrError> {
        let i = self.span_index(s)?;
        let chain = self.chain(i);
        let usage = self.s(i).usage;
        self.sub_all(&chain.as_slice()[1..], &usage);
        let (up, prev, next) = {
            let sc = self.s(i);
            let Kind::Span { up, .. } = sc.kind else {
                unreachable!("span_index returned a non-span")
            };
            (up, sc.prev_sibling, sc.next_sibling)
        };
        if prev == NONE {
            self.s_mut(up).first_span = next;
        } else {
            self.s_mut(prev).next_sibling = next;
        }
        if next != NONE {
            self.s_mut(next).prev_sibling = prev;
        }
        self.s_mut(up).refs -= 1;
        self.free_span_tree(i);
        Ok(())
    }

    /// Closes every span under `i` (their memory is released with `i`'s).
    fn close_spans_under(&mut self, i: u32) {
        let mut c = self.s(i).first_span;
        while c != NONE {
            let next = self.s(c).next_sibling;
            self.free_span_tree(c);
            self.s_mut(i).refs -= 1;
            c = next;
        }
        self.s_mut(i).first_span = NONE;
    }

    /// Frees span `i` and everything nested in it, without touching usage above it.
    fn free_span_tree(&mut self, i: u32) {
        let mut c = self.s(i).first_span;
        while c != NONE {
            let next = self.s(c).next_sibling;
            self.free_span_tree(c);
            c = next;
        }
        self.release_slot(i);
    }

    // ---- garbage collection and statistics ----

    fn idle(&self, i: u32) -> bool {
        let s = self.s(i);
        s.usage.is_zero() && s.refs == 0 && s.first_span == NONE
    }

    /// Drops idle peer, protocol and service scopes and their per-peer sub-scopes: those
    /// that hold nothing and that no open connection, stream or span refers to, and the
    /// inbound gate's idle subnets. Returns how many were dropped.
    pub fn collect_garbage(&mut self) -> usize {
        let mut dropped = self.gate.collect_garbage();
        for service in [false, true] {
            let map = if service {
                std::mem::take(&mut self.service_peers)
            } else {
                std::mem::take(&mut self.protocol_peers)
            };
            let mut kept = BTreeMap::new();
            for ((parent, peer), i) in map {
                if self.idle(i) {
                    self.s_mut(parent).refs -= 1;
                    let p = self.peers.get(&peer).copied().unwrap_or(NONE);
                    if p != NONE {
                        self.s_mut(p).refs -= 1;
                    }
                    self.release_slot(i);
                    dropped += 1;
                } else {
                    kept.insert((parent, peer), i);
                }
            }
            if service {
                self.service_peers = kept;
            } else {
                self.protocol_peers = kept;
            }
        }
        let mut idle = Vec::new();
        for &i in self
            .peers
            .values()
            .chain(self.protocols.values())
            .chain(self.services.values())
        {
            if self.idle(i) {
                idle.push(i);
            }
        }
        for &i in &idle {
            match &self.s(i).kind {
                Kind::Peer(p) => {
                    let p = *p;
                    self.peers.remove(&p);
                }
                Kind::Protocol(n) => {
                    let n = n.clone();
                    self.protocols.remove(&n);
                }
                Kind::Service(n) => {
                    let n = n.clone();
                    self.services.remove(&n);
                }
                _ => unreachable!("only named scopes are collected"),
            }
            self.release_slot(i);
        }
        dropped + idle.len()
    }

    /// Connections the system scope holds (both directions) and its connection limit:
    /// what the connection manager compares to trim before refusals start.
    pub fn system_conns(&self) -> (u64, u64) {
        let u = self.system_usage();
        (u.conns_in + u.conns_out, self.limits().system.conns)
    }

    /// The usage of the system scope.
    pub fn system_usage(&self) -> Usage {
        self.s(SYSTEM).usage
    }

    /// The usage of the transient scope.
    pub fn transient_usage(&self) -> Usage {
        self.s(TRANSIENT).usage
    }

    /// The usage of a peer's scope, if it has one.
    pub fn peer_usage(&self, peer: &PeerId) -> Option<Usage> {
        self.peers.get(peer).map(|&i| self.s(i).usage)
    }

    /// The usage of a protocol's scope, if it has one.
    pub fn protocol_usage(&self, name: &str) -> Option<Usage> {
        self.protocols.get(name).map(|&i| self.s(i).usage)
    }

    /// The usage of a service's scope, if it has one.
    pub fn service_usage(&self, name: &str) -> Option<Usage> {
        self.services.get(name).map(|&i| self.s(i).usage)
    }

    /// Every open scope with its usage and limits, in slot order.
    pub fn scopes(&self) -> impl Iterator<Item = (ScopeName, Usage, ScopeLimits)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, slot)| {
            let s = slot.scope.as_ref()?;
            let i = u32::try_from(i).ok()?;
            Some((self.name(i), s.usage, s.limits))
        })
    }

    /// Number of open scopes of every kind.
    pub fn open_scopes(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Checks the accounting: every scope's usage is exactly what is held in it and below
    /// it, and within its limits. For tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut expected = vec![Usage::default(); self.slots.len()];
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(s) = &slot.scope else { continue };
            let own = match s.kind {
                Kind::Connection(_) | Kind::Stream(_) => Usage {
                    memory: s.own_memory,
                    ..Self::leaf_counts(s)
                },
                Kind::Span { .. } => Usage {
                    memory: s.own_memory,
                    ..Usage::default()
                },
                _ => Usage::default(),
            };
            let i = u32::try_from(i).map_err(|e| e.to_string())?;
            for &j in self.chain(i).as_slice() {
                expected[j as usize].add(&own);
            }
        }
        let mut subnets: BTreeMap<Subnet, u64> = BTreeMap::new();
        for slot in &self.slots {
            if let Some(Scope {
                kind:
                    Kind::Connection(ConnState {
                        subnet: Some(net), ..
                    }),
                ..
            }) = &slot.scope
            {
                *subnets.entry(*net).or_default() += 1;
            }
        }
        for (net, n) in self.gate.subnets() {
            if subnets.get(&net).copied().unwrap_or(0) != n {
                return Err(format!("gate counts {n} connections in subnet {net}"));
            }
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(s) = &slot.scope else { continue };
            let idx = u32::try_from(i).map_err(|e| e.to_string())?;
            if s.usage != expected[i] {
                return Err(format!(
                    "{}: usage {:?}, sum of what is held below {:?}",
                    self.name(idx),
                    s.usage,
                    expected[i]
                ));
            }
            let u = &s.usage;
            let l = &s.limits;
            let ok = u.memory <= l.memory
                && u.streams_in <= l.streams_in
                && u.streams_out <= l.streams_out
                && u.streams_in + u.streams_out <= l.streams
                && u.conns_in <= l.conns_in
                && u.conns_out <= l.conns_out
                && u.conns_in + u.conns_out <= l.conns
                && u.fds <= l.fds;
            if !ok {
                return Err(format!(
                    "{}: usage {u:?} exceeds limits {l:?}",
                    self.name(idx)
                ));
            }
        }
        Ok(())
    }

    /// The stream and connection counts a leaf holds itself (its usage less what its
    /// spans and its own memory hold).
    fn leaf_counts(s: &Scope) -> Usage {
        Usage {
            memory: 0,
            ..s.usage
        }
    }
}

/// A scope memory is reserved on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryScope {
    /// A connection.
    Connection(ConnHandle),
    /// A stream.
    Stream(StreamHandle),
    /// A span.
    Span(SpanHandle),
}

impl From<ConnHandle> for MemoryScope {
    fn from(c: ConnHandle) -> Self {
        MemoryScope::Connection(c)
    }
}

impl From<StreamHandle> for MemoryScope {
    fn from(s: StreamHandle) -> Self {
        MemoryScope::Stream(s)
    }
}

impl From<SpanHandle> for MemoryScope {
    fn from(s: SpanHandle) -> Self {
        MemoryScope::Span(s)
    }
}
