//! The software of one turmoil host: a core [`Node`] run by the production
//! [`Driver`] on a [`TurmoilNetwork`] and a [`TokioClock`] anchored at the virtual time.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use flotilla_core::{Config, ConfigError, Keypair, Node, SeedTree, Timestamp};
use flotilla_node::clock::{Clock, TokioClock};
use flotilla_node::driver::{Driver, Observer};

use super::network::TurmoilNetwork;

/// The port a simulated host listens on unless its listen address names another.
pub const PORT: u16 = 7000;

/// Why a host could not start its node.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The listening socket could not be bound (is another task on this host using the port?).
    #[error("cannot listen on port {port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The socket error.
        source: std::io::Error,
    },
    /// The node refused its configuration.
    #[error("node configuration is invalid: {0}")]
    Config(#[from] ConfigError),
    /// The node refused the capacity its peer registers (`[jobs]`).
    #[error("{0}")]
    Onboard(String),
    /// The code is not running inside a turmoil host.
    #[error("not inside a turmoil host; run nodes through `turmoil::Sim::host`")]
    NotSimulated,
}

/// The virtual wall-clock time of the current turmoil host: the simulation's epoch plus the
/// simulated time elapsed. `None` outside a turmoil host.
pub fn sim_now() -> Option<Timestamp> {
    let since_epoch = turmoil::since_epoch()?;
    Some(Timestamp::from_micros(
        u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX),
    ))
}

/// What one host runs: a node's settings, identity and randomness, and when it stops.
#[derive(Clone, Debug)]
pub struct HostSpec {
    /// The node's configuration.
    pub config: Config,
    /// The node's identity.
    pub keypair: Keypair,
    /// The node's protocol randomness.
    pub seed: SeedTree,
    /// How far the node's clock runs ahead of the simulation's (clock skew).
    pub clock_ahead: Duration,
    /// When the network shuts down and the driver returns the node (virtual time).
    pub end: Timestamp,
    /// The port to listen on.
    pub port: u16,
    /// Counts messages the network dropped (shared by the hosts of a run).
    pub messages_dropped: Arc<AtomicU64>,
}

/// Runs the node described by `spec` on this turmoil host until `spec.end`, reporting to
/// `observer`, and returns the node for inspection.
pub async fn run_node<O: Observer>(spec: HostSpec, observer: O) -> Result<Node, HostError> {
    let now = sim_now().ok_or(HostError::NotSimulated)?;
    let peer = spec.keypair.peer_id();
    let port = spec.port;
    let net = TurmoilNetwork::bind(peer, port)
        .await
        .map_err(|source| HostError::Bind { port, source })?;
    let left = spec.end.saturating_since(now);
    let net = net
        .stop_at(tokio::time::Instant::now() + left)
        .count_drops_in(spec.messages_dropped);
    let clock = TokioClock::anchored_at(now + spec.clock_ahead);
    let node = Node::new(spec.config, spec.keypair, spec.seed, clock.now())?;
    let (driver, _handle) = Driver::new(node, net, clock, observer);
    Ok(driver.run().await)
}
