//! Configuration of the node state machine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::advert::Resources;
use crate::identity::PeerId;

/// A peer to start from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapPeer {
    /// Address to dial (multiaddr text without `/p2p/`).
    pub addr: String,
    /// The peer id, if known in advance.
    pub peer_id: Option<PeerId>,
}

/// Settings of a [`Node`](crate::Node). Every field has a default that suits a small node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Addresses this node can be reached on, as put in its advert.
    pub listen_addrs: Vec<String>,
    /// Peers to dial first.
    pub bootstrap: Vec<BootstrapPeer>,
    /// Resources this node offers.
    pub resources: Resources,
    /// Region hint for the advert.
    pub region: Option<String>,
    /// Connections the node keeps open by dialling known peers.
    pub peers_target: usize,
    /// Connections above which inbound connections are refused.
    pub peers_max: usize,
    /// Inbound connections over `peers_max` kept briefly to hand the newcomer some peers.
    pub peers_refused_max: usize,
    /// How long a refused inbound connection stays open before it is closed.
    pub refuse_grace: Duration,
    /// Dials in flight at once.
    pub dials_concurrent_max: usize,
    /// Peers remembered in the peer table.
    pub peers_known_max: usize,
    /// Period of the connection maintenance tick.
    pub maintain_interval: Duration,
    /// Period between pings to each connected peer.
    pub ping_interval: Duration,
    /// A ping without answer after this long counts as failed.
    pub ping_timeout: Duration,
    /// Consecutive failed pings after which the peer is disconnected.
    pub ping_failures_max: u32,
    /// Period between exploration dials: a node with its target of peers still dials one
    /// random known peer now and then and lets one other connection go, so the overlay keeps
    /// mixing and parts that were cut apart find each other again.
    pub explore_interval: Duration,
    /// Period between peer-table exchanges.
    pub exchange_interval: Duration,
    /// Records asked for and accepted in one exchange.
    pub exchange_peers_max: u16,
    /// Largest hop count kept from an exchange.
    pub exchange_hops_max: u8,
    /// Adverts older than this are expired.
    pub advert_ttl: Duration,
    /// Period between re-signing the node's own advert.
    pub advert_refresh: Duration,
    /// First back-off after a failed dial; doubles per failure.
    pub dial_backoff_base: Duration,
    /// Longest back-off after failed dials.
    pub dial_backoff_max: Duration,
    /// Failed dials after which a peer learned from others is forgotten.
    pub dial_failures_max: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addrs: Vec::new(),
            bootstrap: Vec::new(),
            resources: Resources::default(),
            region: None,
            peers_target: 8,
            peers_max: 32,
            peers_refused_max: 8,
            refuse_grace: Duration::from_secs(5),
            dials_concurrent_max: 4,
            peers_known_max: 1024,
            maintain_interval: Duration::from_secs(5),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(10),
            ping_failures_max: 3,
            explore_interval: Duration::from_secs(60),
            exchange_interval: Duration::from_secs(60),
            exchange_peers_max: 32,
            exchange_hops_max: 2,
            advert_ttl: Duration::from_secs(3600),
            advert_refresh: Duration::from_secs(1200),
            dial_backoff_base: Duration::from_secs(10),
            dial_backoff_max: Duration::from_secs(600),
            dial_failures_max: 6,
        }
    }
}

/// Why a configuration is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A count that must be positive is zero.
    #[error("`{0}` must be at least 1")]
    Zero(&'static str),
    /// Two settings contradict each other.
    #[error("`{0}` must not be larger than `{1}`")]
    Order(&'static str, &'static str),
    /// A period that must be positive is zero.
    #[error("`{0}` must be longer than zero")]
    ZeroDuration(&'static str),
}

impl Config {
    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (v, name) in [
            (self.peers_max, "peers_max"),
            (self.dials_concurrent_max, "dials_concurrent_max"),
            (self.peers_known_max, "peers_known_max"),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.peers_target > self.peers_max {
            return Err(ConfigError::Order("peers_target", "peers_max"));
        }
        for (d, name) in [
            (self.maintain_interval, "maintain_interval"),
            (self.ping_interval, "ping_interval"),
            (self.ping_timeout, "ping_timeout"),
            (self.exchange_interval, "exchange_interval"),
            (self.explore_interval, "explore_interval"),
            (self.advert_ttl, "advert_ttl"),
            (self.advert_refresh, "advert_refresh"),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        if self.advert_refresh > self.advert_ttl {
            return Err(ConfigError::Order("advert_refresh", "advert_ttl"));
        }
        Ok(())
    }
}
