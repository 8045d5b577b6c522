//! The sans-IO core of a Flotilla node: every protocol decision, no I/O.
//!
//! Nothing here reads a clock, touches a socket or draws OS randomness: time is passed in as
//! a [`Timestamp`], randomness comes from a [`SeedTree`], and all iteration that can affect a
//! decision is over ordered maps. The production host (`flotilla-node`) and both simulation
//! engines (`flotilla-sim`) drive the same [`Node`].
//!
//! Modules:
//! - [`identity`]: ed25519 key pairs and libp2p-compatible peer ids;
//! - [`advert`]: signed advertisements (addresses, resources, start time, version);
//! - [`wire`]: the node's own protocol messages and their length-prefixed framing;
//! - [`peer_table`]: known peers with addresses, RTT statistics, resources, provenance;
//! - [`capacity`]: a compute provider's capacity ledger (registered, onboarded, locked,
//!   allocated);
//! - [`job`]: the job spec (TOML or YAML) and its validation;
//! - [`offer`]: a compute provider's preferences (does a job fit?) and the ranking of bids;
//! - [`ports`]: host ports handed to jobs from a configured range;
//! - [`rcmgr`]: the resource manager: nested scopes, limits and reservations;
//! - [`node`]: the state machine (`handle_*` inputs, `poll_*` outputs, `poll_timeout`);
//! - [`seed`]: one seed split into a tree of independent random streams;
//! - [`simexec`]: the simulated executor: seeded start delay, run time and failures;
//! - [`time`]: the [`Timestamp`] type.
//!
//! ```
//! use flotilla_core::{Config, Keypair, Node, SeedTree, Timestamp};
//!
//! let seed = SeedTree::new(7);
//! let keypair = Keypair::generate(&mut seed.child(1).rng());
//! let now = Timestamp::from_secs(1_700_000_000);
//! let mut node = Node::new(Config::default(), keypair, seed.child(2), now).unwrap();
//! node.handle_timeout(now);
//! while let Some(action) = node.poll_action() { /* dial, disconnect */ let _ = action; }
//! while let Some(transmit) = node.poll_transmit() { /* send */ let _ = transmit; }
//! while let Some(event) = node.poll_event() { /* trace */ let _ = event; }
//! assert!(node.poll_timeout().is_some());
//! ```

pub mod advert;
pub mod capacity;
pub mod connmgr;
pub mod deployment;
pub mod filter;
pub mod identity;
pub mod job;
pub mod jobs;
pub mod node;
pub mod offer;
pub mod peer_table;
pub mod ports;
pub mod provider;
pub mod rcmgr;
pub mod seed;
pub mod simexec;
pub mod time;
pub mod wire;

pub use advert::{Advert, AdvertError, Resources, SignedAdvert, VerifiedAdverts};
pub use identity::{IdentityError, Keypair, PeerId, Signature};
pub use node::{
    Action, BootstrapPeer, Config, ConfigError, ConnectionInfo, DialId, Direction, Event, Node,
    NodeError, Profile, Status, Transmit,
};
pub use peer_table::{PeerEntry, PeerTable, RttStats, Source};
pub use seed::SeedTree;
pub use time::Timestamp;
pub use wire::{Message, PeerRecord, RttSample, WireError};
