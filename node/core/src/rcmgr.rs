//! The resource manager: nested scopes that account for memory, streams, connections and
//! file descriptors, and refuse what would exceed a limit.
//!
//! Sans-IO like the rest of the core: the host asks before it accepts a connection, opens a
//! stream or allocates a buffer, and reports when they end; the simulators do the same.
//!
//! Scopes:
//! - *system*: the whole node; everything counts in it;
//! - *transient*: connections before the handshake, streams before protocol negotiation;
//! - *peer*: everything held for one remote peer;
//! - *protocol* and *service*, each with a per-peer sub-scope (*protocol-peer*,
//!   *service-peer*);
//! - *connection* and *stream*: one each, holding themselves and their buffers;
//! - *spans*: nested memory reservations under any of the above, released together.
//!
//! [`Allowlist`] holds the address ranges and peer ids the node always makes room for;
//! the inbound [`Gate`] caps inbound connections per subnet and rate-limits new ones.
//! [`RefusalLog`] turns refusals into at most one log line per scope per minute.
//!
//! A connection opens in the transient scope and moves to its peer on the handshake
//! ([`ResourceManager::set_connection_peer`]). A stream opens in the transient scope, counts
//! in its peer once known ([`ResourceManager::set_stream_peer`]), moves to its protocol on
//! negotiation ([`ResourceManager::set_protocol`]) and into its service when claimed
//! ([`ResourceManager::set_service`]). Every reservation and every move checks each scope it
//! touches and changes none of them if one refuses; the refusal
//! ([`LimitExceeded`]) names the chain of scopes, the resource, the direction, what was held,
//! what was asked and the limit.
//!
//! Memory reservations carry a priority `p` (0-255): they may fill a scope up to
//! `limit * (1 + p) / 256`, so low-priority ones are refused first ([`PRIORITY_LOW`] to
//! [`PRIORITY_ALWAYS`]).
//!
//! Handles are slot indices with generation counters: a handle to a closed scope is refused
//! with [`RcmgrError::Closed`], and the steady state allocates nothing.
//!
//! ```
//! use flotilla_core::rcmgr::{Limits, ResourceManager, PRIORITY_MEDIUM};
//! use flotilla_core::{Direction, Keypair, SeedTree};
//!
//! let peer = Keypair::generate(&mut SeedTree::new(1).rng()).peer_id();
//! let mut rm = ResourceManager::new(Limits::for_machine(8 << 30, 16384));
//! let conn = rm.open_connection(Direction::Inbound, true).unwrap();
//! rm.set_connection_peer(conn, peer).unwrap();
//! let stream = rm.open_stream(Direction::Inbound).unwrap();
//! rm.set_stream_peer(stream, peer).unwrap();
//! rm.set_protocol(stream, "/flotilla/compute/1").unwrap();
//! rm.set_service(stream, "compute").unwrap();
//! rm.reserve_memory(stream, 4096, PRIORITY_MEDIUM).unwrap();
//! assert_eq!(rm.peer_usage(&peer).unwrap().memory, 4096);
//! rm.close_stream(stream).unwrap();
//! rm.close_connection(conn).unwrap();
//! assert!(rm.system_usage().is_zero());
//! rm.collect_garbage();
//! ```

pub mod allow;
pub mod gate;
pub mod limits;
pub mod refusals;
pub mod scope;
#[cfg(test)]
mod tests;

pub use allow::{Allowlist, Cidr, CidrError, is_loopback};
pub use gate::{Gate, GateLimits, GateRefusal, Subnet};
pub use limits::{
    LimitValue, Limits, LimitsConfig, LimitsError, ScopeLimits, ScopeOverride, UNLIMITED,
};
pub use refusals::{REFUSAL_LOG_INTERVAL, RefusalLine, RefusalLog};
pub use scope::{
    ConnHandle, LimitExceeded, MAX_SPAN_DEPTH, MemoryScope, PRIORITY_ALWAYS, PRIORITY_HIGH,
    PRIORITY_LOW, PRIORITY_MEDIUM, RcmgrError, Resource, ResourceManager, ScopeName, SpanHandle,
    SpanOwner, StreamHandle, Usage,
};
