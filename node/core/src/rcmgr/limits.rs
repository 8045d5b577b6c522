//! Limits of every scope kind: machine-scaled defaults, partial overrides, validation.
//!
//! A limit is a plain `u64`: [`UNLIMITED`] (`u64::MAX`) means the scope puts no cap of its
//! own on that resource (its parents still do), `0` blocks the resource outright. Defaults
//! are a pure function of the machine's memory and file-descriptor limit
//! ([`Limits::for_machine`]); the host reads both at start-up. A [`LimitsConfig`] (the
//! `[limits]` TOML table) overrides any limit partially, and [`Limits::with_overrides`]
//! rejects settings that can never be satisfied, naming the key.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::gate::GateLimits;

/// The limit value that puts no cap on a resource.
pub const UNLIMITED: u64 = u64::MAX;

/// A kind of scope, as the `[limits]` table names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeKind {
    /// The whole node.
    System,
    /// Connections before the handshake, streams before protocol negotiation.
    Transient,
    /// The allowlisted budget of the whole node.
    AllowlistedSystem,
    /// The allowlisted budget before the handshake.
    AllowlistedTransient,
    /// Each service.
    Service,
    /// Each peer within each service.
    ServicePeer,
    /// Each protocol.
    Protocol,
    /// Each peer within each protocol.
    ProtocolPeer,
    /// Each remote peer.
    Peer,
    /// Each connection.
    Connection,
    /// Each stream.
    Stream,
}

impl ScopeKind {
    /// Every kind, in the order of the `[limits]` table.
    pub const ALL: [ScopeKind; 11] = [
        ScopeKind::System,
        ScopeKind::Transient,
        ScopeKind::AllowlistedSystem,
        ScopeKind::AllowlistedTransient,
        ScopeKind::Service,
        ScopeKind::ServicePeer,
        ScopeKind::Protocol,
        ScopeKind::ProtocolPeer,
        ScopeKind::Peer,
        ScopeKind::Connection,
        ScopeKind::Stream,
    ];

    /// The kind's key in the `[limits]` table, e.g. `service_peer`.
    pub fn key(self) -> &'static str {
        match self {
            ScopeKind::System => "system",
            ScopeKind::Transient => "transient",
            ScopeKind::AllowlistedSystem => "allowlisted_system",
            ScopeKind::AllowlistedTransient => "allowlisted_transient",
            ScopeKind::Service => "service",
            ScopeKind::ServicePeer => "service_peer",
            ScopeKind::Protocol => "protocol",
            ScopeKind::ProtocolPeer => "protocol_peer",
            ScopeKind::Peer => "peer",
            ScopeKind::Connection => "connection",
            ScopeKind::Stream => "stream",
        }
    }
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The limits of one scope.
///
/// Stream and connection counts have a limit per direction and one on their total. A
/// connection scope holds its own connection (and file descriptor, if it uses one) and a
/// stream scope its own stream, so their count limits are 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ScopeLimits {
    /// Bytes of memory.
    pub memory: u64,
    /// Inbound streams.
    pub streams_in: u64,
    /// Outbound streams.
    pub streams_out: u64,
    /// Streams in both directions.
    pub streams: u64,
    /// Inbound connections.
    pub conns_in: u64,
    /// Outbound connections.
    pub conns_out: u64,
    /// Connections in both directions.
    pub conns: u64,
    /// File descriptors.
    pub fds: u64,
}

impl ScopeLimits {
    /// No cap on anything.
    pub const UNLIMITED: ScopeLimits = ScopeLimits {
        memory: UNLIMITED,
        streams_in: UNLIMITED,
        streams_out: UNLIMITED,
        streams: UNLIMITED,
        conns_in: UNLIMITED,
        conns_out: UNLIMITED,
        conns: UNLIMITED,
        fds: UNLIMITED,
    };

    /// Every resource blocked.
    pub const BLOCK: ScopeLimits = ScopeLimits {
        memory: 0,
        streams_in: 0,
        streams_out: 0,
        streams: 0,
        conns_in: 0,
        conns_out: 0,
        conns: 0,
        fds: 0,
    };

    /// The fields with their TOML key names, in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 8] {
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

    /// Mutable references to the fields, in the order of [`ScopeLimits::fields`].
    fn fields_mut(&mut self) -> [&mut u64; 8] {
        [
            &mut self.memory,
            &mut self.streams_in,
            &mut self.streams_out,
            &mut self.streams,
            &mut self.conns_in,
            &mut self.conns_out,
            &mut self.conns,
            &mut self.fds,
        ]
    }

    fn apply(&mut self, o: &ScopeOverride, default: &ScopeLimits) {
        let set = |v: &Option<LimitValue>, field: &mut u64, default: u64| {
            if let Some(v) = v {
                *field = v.resolve(default);
            }
        };
        set(&o.memory, &mut self.memory, default.memory);
        set(&o.streams_in, &mut self.streams_in, default.streams_in);
        set(&o.streams_out, &mut self.streams_out, default.streams_out);
        set(&o.streams, &mut self.streams, default.streams);
        set(&o.conns_in, &mut self.conns_in, default.conns_in);
        set(&o.conns_out, &mut self.conns_out, default.conns_out);
        set(&o.conns, &mut self.conns, default.conns);
        set(&o.fds, &mut self.fds, default.fds);
    }
}

/// The limits of every scope kind, with per-name limits for services and protocols.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// The whole node.
    pub system: ScopeLimits,
    /// Connections before the handshake and streams before protocol negotiation.
    pub transient: ScopeLimits,
    /// The allowlisted budget of the whole node, used only when `system` is full.
    pub allowlisted_system: ScopeLimits,
    /// The allowlisted budget before the handshake, used only when `transient` is full.
    pub allowlisted_transient: ScopeLimits,
    /// Each service (unless named in `services`).
    pub service: ScopeLimits,
    /// Each peer within each service.
    pub service_peer: ScopeLimits,
    /// Each protocol (unless named in `protocols`).
    pub protocol: ScopeLimits,
    /// Each peer within each protocol.
    pub protocol_peer: ScopeLimits,
    /// Each remote peer.
    pub peer: ScopeLimits,
    /// Each connection.
    pub connection: ScopeLimits,
    /// Each stream.
    pub stream: ScopeLimits,
    /// Limits of named services.
    pub services: BTreeMap<String, ScopeLimits>,
    /// Limits of named protocols.
    pub protocols: BTreeMap<String, ScopeLimits>,
    /// Per-subnet caps and rate limits of inbound connections.
    pub inbound: GateLimits,
}

impl Default for Limits {
    /// The defaults for a machine of 8 GiB and 16384 file descriptors.
    fn default() -> Self {
        Limits::for_machine(8 * 1024 * MIB, 16384)
    }
}

impl Limits {
    /// Defaults scaled to a machine with `memory` bytes of RAM and a file-descriptor limit
    /// of `fd_limit`.
    ///
    /// The node takes an eighth of the memory (at least 128 MiB) and half the file
    /// descriptors (at least 64). Connections are capped by the file descriptors, sixteen
    /// streams per connection; the transient scope gets a quarter of the system's; a peer
    /// a 64th of the memory (at least 4 MiB) and a few connections; each protocol and
    /// service an eighth of the system's memory and a quarter of its streams, and each
    /// peer within them a quarter of the peer's memory and 64 streams.
    pub fn for_machine(memory: u64, fd_limit: u64) -> Self {
        let sys_mem = (memory / 8).max(128 * MIB);
        let fds = (fd_limit / 2).max(64);
        let conns = fds;
        let streams = conns.saturating_mul(16);
        let system = ScopeLimits {
            memory: sys_mem,
            streams_in: streams / 2,
            streams_out: streams,
            streams,
            conns_in: conns / 2,
            conns_out: conns,
            conns,
            fds,
        };
        let quarter = |v: u64| (v / 4).max(1);
        let transient = ScopeLimits {
            memory: sys_mem / 4,
            streams_in: quarter(system.streams_in),
            streams_out: quarter(system.streams_out),
            streams: quarter(system.streams),
            conns_in: quarter(system.conns_in),
            conns_out: quarter(system.conns_out),
            conns: quarter(system.conns),
            fds: quarter(system.fds),
        };
        let peer_mem = (sys_mem / 64).max(4 * MIB);
        let peer = ScopeLimits {
            memory: peer_mem,
            streams_in: 256,
            streams_out: 512,
            streams: 512,
            conns_in: 4,
            conns_out: 8,
            conns: 8,
            fds: 8,
        };
        // Streams only: protocols and services never hold connections.
        let per_name = ScopeLimits {
            memory: sys_mem / 8,
            streams_in: quarter(system.streams_in),
            streams_out: quarter(system.streams_out),
            streams: quarter(system.streams),
            ..ScopeLimits::UNLIMITED
        };
        let per_name_peer = ScopeLimits {
            memory: peer_mem / 4,
            streams_in: 32,
            streams_out: 64,
            streams: 64,
            ..ScopeLimits::UNLIMITED
        };
        let connection = ScopeLimits {
            memory: peer_mem / 2,
            conns_in: 1,
            conns_out: 1,
            conns: 1,
            fds: 1,
            ..ScopeLimits::BLOCK
        };
        let stream = ScopeLimits {
            memory: peer_mem / 4,
            streams_in: 1,
            streams_out: 1,
            streams: 1,
            ..ScopeLimits::BLOCK
        };
        // Allowlisted peers get a budget of their own: an eighth of the system's for the
        // whole node, a quarter of that before the handshake.
        let eighth = |v: u64| (v / 8).max(1);
        let allowlisted_system = ScopeLimits {
            memory: sys_mem / 8,
            streams_in: eighth(system.streams_in),
            streams_out: eighth(system.streams_out),
            streams: eighth(system.streams),
            conns_in: eighth(system.conns_in),
            conns_out: eighth(system.conns_out),
            conns: eighth(system.conns),
            fds: eighth(system.fds),
        };
        let allowlisted_transient = ScopeLimits {
            memory: allowlisted_system.memory / 4,
            streams_in: quarter(allowlisted_system.streams_in),
            streams_out: quarter(allowlisted_system.streams_out),
            streams: quarter(allowlisted_system.streams),
            conns_in: quarter(allowlisted_system.conns_in),
            conns_out: quarter(allowlisted_system.conns_out),
            conns: quarter(allowlisted_system.conns),
            fds: quarter(allowlisted_system.fds),
        };
        Limits {
            system,
            transient,
            allowlisted_system,
            allowlisted_transient,
            service: per_name,
            service_peer: per_name_peer,
            protocol: per_name,
            protocol_peer: per_name_peer,
            peer,
            connection,
            stream,
            services: BTreeMap::new(),
            protocols: BTreeMap::new(),
            inbound: GateLimits::default(),
        }
    }

    /// The limits of the service `name`.
    pub fn service_limits(&self, name: &str) -> ScopeLimits {
        self.services.get(name).copied().unwrap_or(self.service)
    }

    /// The limits of the protocol `name`.
    pub fn protocol_limits(&self, name: &str) -> ScopeLimits {
        self.protocols.get(name).copied().unwrap_or(self.protocol)
    }

    /// These limits with `config` applied on top and validated. `"default"` in `config`
    /// means the value of `self` (for a named service or protocol: of its kind, after the
    /// kind's own overrides).
    pub fn with_overrides(&self, config: &LimitsConfig) -> Result<Limits, LimitsError> {
        let mut out = self.clone();
        for kind in ScopeKind::ALL {
            out.kind_mut(kind).apply(config.kind(kind), self.kind(kind));
        }
        for (name, o) in &config.services {
            let base = out.service_limits(name);
            let mut l = base;
            l.apply(o, &out.service);
            out.services.insert(name.clone(), l);
        }
        for (name, o) in &config.protocols {
            let base = out.protocol_limits(name);
            let mut l = base;
            l.apply(o, &out.protocol);
            out.protocols.insert(name.clone(), l);
        }
        if let Some(inbound) = config.inbound {
            out.inbound = inbound;
        }
        out.clamp_defaults(config);
        out.validate()?;
        Ok(out)
    }

    /// The pairs (child, parent, memory only) of scope kinds where the child always counts
    /// in the parent; parents come before their children.
    const PAIRS: [(ScopeKind, ScopeKind, bool); 14] = {
        use ScopeKind::*;
        [
            (Transient, System, false),
            (AllowlistedTransient, AllowlistedSystem, false),
            (Connection, AllowlistedTransient, true),
            (Peer, System, false),
            (Service, System, false),
            (Protocol, System, false),
            (ServicePeer, Service, false),
            (ServicePeer, Peer, false),
            (ProtocolPeer, Protocol, false),
            (ProtocolPeer, Peer, false),
            (Connection, Peer, true),
            (Connection, Transient, true),
            (Stream, Peer, true),
            (Stream, Transient, true),
        ]
    };

    /// The limits of every scope of kind `kind` (for services and protocols: those not
    /// named in `services` or `protocols`).
    pub fn kind(&self, kind: ScopeKind) -> &ScopeLimits {
        match kind {
            ScopeKind::System => &self.system,
            ScopeKind::Transient => &self.transient,
            ScopeKind::AllowlistedSystem => &self.allowlisted_system,
            ScopeKind::AllowlistedTransient => &self.allowlisted_transient,
            ScopeKind::Service => &self.service,
            ScopeKind::ServicePeer => &self.service_peer,
            ScopeKind::Protocol => &self.protocol,
            ScopeKind::ProtocolPeer => &self.protocol_peer,
            ScopeKind::Peer => &self.peer,
            ScopeKind::Connection => &self.connection,
            ScopeKind::Stream => &self.stream,
        }
    }

    fn kind_mut(&mut self, kind: ScopeKind) -> &mut ScopeLimits {
        match kind {
            ScopeKind::System => &mut self.system,
            ScopeKind::Transient => &mut self.transient,
            ScopeKind::AllowlistedSystem => &mut self.allowlisted_system,
            ScopeKind::AllowlistedTransient => &mut self.allowlisted_transient,
            ScopeKind::Service => &mut self.service,
            ScopeKind::ServicePeer => &mut self.service_peer,
            ScopeKind::Protocol => &mut self.protocol,
            ScopeKind::ProtocolPeer => &mut self.protocol_peer,
            ScopeKind::Peer => &mut self.peer,
            ScopeKind::Connection => &mut self.connection,
            ScopeKind::Stream => &mut self.stream,
        }
    }

    /// Lowers every limit the configuration left at its default to the limit of the scopes
    /// it counts in, so that lowering a parent does not force the operator to lower each
    /// child too. Limits set explicitly are left for [`Limits::validate`] to judge.
    fn clamp_defaults(&mut self, config: &LimitsConfig) {
        // Parents come before their children in PAIRS, so one pass settles chains.
        for (child, parent, memory_only) in Self::PAIRS {
            let p = *self.kind(parent);
            let set = *config.kind(child);
            clamp(self.kind_mut(child), &p, &set, memory_only);
        }
        let system = self.system;
        let named = [
            (&mut self.services, &config.services),
            (&mut self.protocols, &config.protocols),
        ];
        for (limits, overrides) in named {
            for (name, l) in limits.iter_mut() {
                let set = overrides.get(name).copied().unwrap_or_default();
                clamp(l, &system, &set, false);
            }
        }
    }

    /// Rejects limits that can never be satisfied: a finite limit of a child scope above
    /// the finite, non-zero limit of a scope it always counts in (a peer's memory above the
    /// system's, say), since the child's limit would be a promise the parent never keeps.
    /// A parent set to `"block"` (0) refuses everything, whatever its children allow.
    pub fn validate(&self) -> Result<(), LimitsError> {
        for (child, parent, memory_only) in Self::PAIRS {
            check_fields(
                (child.key(), self.kind(child)),
                (parent.key(), self.kind(parent)),
                memory_only,
            )?;
        }
        if self.inbound.v4_prefix > 32 {
            return Err(LimitsError::Prefix {
                key: "limits.inbound.v4_prefix",
                value: self.inbound.v4_prefix,
                max: 32,
            });
        }
        if self.inbound.v6_prefix > 128 {
            return Err(LimitsError::Prefix {
                key: "limits.inbound.v6_prefix",
                value: self.inbound.v6_prefix,
                max: 128,
            });
        }
        for (name, l) in &self.services {
            let key = format!("services.\"{name}\"");
            check_fields((&key, l), ("system", &self.system), false)?;
        }
        for (name, l) in &self.protocols {
            let key = format!("protocols.\"{name}\"");
            check_fields((&key, l), ("system", &self.system), false)?;
        }
        Ok(())
    }
}

/// Lowers each field of `child` the override `set` leaves unset to its value in `parent`
/// (memory alone if `memory_only`), when both are finite.
fn clamp(child: &mut ScopeLimits, parent: &ScopeLimits, set: &ScopeOverride, memory_only: bool) {
    let fields = child
        .fields_mut()
        .into_iter()
        .zip(parent.fields())
        .zip(set.fields());
    for (i, ((cv, (_, pv)), (_, explicit))) in fields.enumerate() {
        if (memory_only && i != 0) || explicit.is_some() {
            continue;
        }
        if pv != UNLIMITED && *cv != UNLIMITED && *cv > pv {
            *cv = pv;
        }
    }
}

fn check_fields(
    (child, c): (&str, &ScopeLimits),
    (parent, p): (&str, &ScopeLimits),
    memory_only: bool,
) -> Result<(), LimitsError> {
    for ((field, cv), (_, pv)) in c.fields().into_iter().zip(p.fields()) {
        if memory_only && field != "memory" {
            continue;
        }
        if cv != UNLIMITED && pv != UNLIMITED && pv != 0 && cv > pv {
            return Err(LimitsError::ChildAboveParent {
                key: format!("limits.{child}.{field}"),
                value: cv,
                parent_key: format!("limits.{parent}.{field}"),
                parent_value: pv,
            });
        }
    }
    Ok(())
}

/// A limit setting that can never be satisfied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// A child scope's limit is above the limit of a scope it always counts in.
    #[error(
        "{key} = {value} is above {parent_key} = {parent_value}, so it can never be reached; \
         lower it to at most {parent_value}, or write \"unlimited\" to leave the cap to {parent_key}"
    )]
    ChildAboveParent {
        /// The offending key, e.g. `limits.peer.memory`.
        key: String,
        /// Its value.
        value: u64,
        /// The parent's key.
        parent_key: String,
        /// The parent's value.
        parent_value: u64,
    },
    /// A subnet prefix longer than the address.
    #[error("{key} = {value} is longer than the address: write at most {max}")]
    Prefix {
        /// The offending key.
        key: &'static str,
        /// Its value.
        value: u8,
        /// 32 or 128.
        max: u8,
    },
}

/// One limit as written in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitValue {
    /// A number (bytes for memory, a count otherwise).
    Number(u64),
    /// `"unlimited"`: no cap of this scope's own.
    Unlimited,
    /// `"block"`: the resource is refused outright (0).
    Block,
    /// `"default"`: the machine-scaled default.
    Default,
}

impl LimitValue {
    fn resolve(self, default: u64) -> u64 {
        match self {
            LimitValue::Number(n) => n,
            LimitValue::Unlimited => UNLIMITED,
            LimitValue::Block => 0,
            LimitValue::Default => default,
        }
    }
}

impl<'de> Deserialize<'de> for LimitValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LimitValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number, \"unlimited\", \"block\" or \"default\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LimitValue, E> {
                Ok(LimitValue::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LimitValue, E> {
                u64::try_from(v).map(LimitValue::Number).map_err(|_| {
                    E::custom(format!(
                        "limit {v} is negative: write a number of 0 or more, \
                         \"unlimited\", \"block\" or \"default\""
                    ))
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LimitValue, E> {
                match v {
                    "unlimited" => Ok(LimitValue::Unlimited),
                    "block" => Ok(LimitValue::Block),
                    "default" => Ok(LimitValue::Default),
                    other => Err(E::custom(format!(
                        "unknown limit {other:?}: write a number, \"unlimited\", \"block\" or \"default\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Partial overrides of one scope kind's limits; a missing key keeps the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeOverride {
    /// Bytes of memory.
    pub memory: Option<LimitValue>,
    /// Inbound streams.
    pub streams_in: Option<LimitValue>,
    /// Outbound streams.
    pub streams_out: Option<LimitValue>,
    /// Streams in both directions.
    pub streams: Option<LimitValue>,
    /// Inbound connections.
    pub conns_in: Option<LimitValue>,
    /// Outbound connections.
    pub conns_out: Option<LimitValue>,
    /// Connections in both directions.
    pub conns: Option<LimitValue>,
    /// File descriptors.
    pub fds: Option<LimitValue>,
}

/// The `[limits]` table of the node configuration: partial overrides per scope kind, and
/// per named service or protocol. Unknown scope kinds and unknown resources are rejected.
///
/// ```toml
/// [limits.system]
/// memory = 1073741824
/// conns_in = "unlimited"
///
/// [limits.peer]
/// streams_in = "block"
///
/// [limits.protocols."/flotilla/compute/1"]
/// streams = 100
///
/// [limits.inbound]
/// conns_per_subnet = 8
/// rate_per_sec = 2
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The whole node.
    pub system: ScopeOverride,
    /// Connections before the handshake, streams before protocol negotiation.
    pub transient: ScopeOverride,
    /// The allowlisted budget of the whole node.
    pub allowlisted_system: ScopeOverride,
    /// The allowlisted budget before the handshake.
    pub allowlisted_transient: ScopeOverride,
    /// Each service.
    pub service: ScopeOverride,
    /// Each peer within each service.
    pub service_peer: ScopeOverride,
    /// Each protocol.
    pub protocol: ScopeOverride,
    /// Each peer within each protocol.
    pub protocol_peer: ScopeOverride,
    /// Each peer.
    pub peer: ScopeOverride,
    /// Each connection.
    pub connection: ScopeOverride,
    /// Each stream.
    pub stream: ScopeOverride,
    /// Named services.
    pub services: BTreeMap<String, ScopeOverride>,
    /// Named protocols.
    pub protocols: BTreeMap<String, ScopeOverride>,
    /// Per-subnet caps and rate limits of inbound connections; missing keys keep their
    /// defaults.
    pub inbound: Option<GateLimits>,
}

impl ScopeOverride {
    /// The fields with their TOML key names, in the order of [`ScopeLimits::fields`].
    pub fn fields(&self) -> [(&'static str, Option<LimitValue>); 8] {
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

impl LimitsConfig {
    /// The overrides of scope kind `kind`.
    pub fn kind(&self, kind: ScopeKind) -> &ScopeOverride {
        match kind {
            ScopeKind::System => &self.system,
            ScopeKind::Transient => &self.transient,
            ScopeKind::AllowlistedSystem => &self.allowlisted_system,
            ScopeKind::AllowlistedTransient => &self.allowlisted_transient,
            ScopeKind::Service => &self.service,
            ScopeKind::ServicePeer => &self.service_peer,
            ScopeKind::Protocol => &self.protocol,
            ScopeKind::ProtocolPeer => &self.protocol_peer,
            ScopeKind::Peer => &self.peer,
            ScopeKind::Connection => &self.connection,
            ScopeKind::Stream => &self.stream,
        }
    }
}
