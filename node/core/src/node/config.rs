//! Configuration of the node state machine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::advert::Resources;
use crate::filter::Filter;
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
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Addresses this node can be reached on, as put in its advert.
    pub listen_addrs: Vec<String>,
    /// Peers to dial first.
    pub bootstrap: Vec<BootstrapPeer>,
    /// Resources this node offers.
    pub resources: Resources,
    /// Region hint for the advert.
    pub region: Option<String>,
    /// Executors offered to jobs (e.g. `docker`), as put in the advert.
    pub executors: Vec<String>,
    /// Connections the node keeps open by dialling known peers; trims bring it back here.
    pub low_watermark: usize,
    /// Connections the node never exceeds: reaching it triggers a trim to the low
    /// watermark, and connections beyond it are refused, whoever opened them.
    pub high_watermark: usize,
    /// New connections are not trimmed for this long.
    pub conn_grace: Duration,
    /// Shortest time between two trims.
    pub trim_quiet: Duration,
    /// Trim early once the resource manager's system scope holds this share (per mille) of
    /// its connection limit (reported with [`Node::report_system_conns`](crate::Node)).
    pub pressure_per_mille: u16,
    /// Which peers the node keeps company with: applied to peers learned (a failing new
    /// peer is not stored), before dialling, at the hello, and again as RTTs are measured.
    pub filter: Filter,
    /// Inbound connections over `high_watermark` kept briefly to hand the newcomer some peers.
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
    /// Jobs: preferences and policy as a provider, deadlines as a requester.
    pub jobs: crate::jobs::JobsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addrs: Vec::new(),
            bootstrap: Vec::new(),
            resources: Resources::default(),
            region: None,
            executors: Vec::new(),
            low_watermark: 8,
            high_watermark: 32,
            conn_grace: Duration::from_secs(30),
            trim_quiet: Duration::from_secs(10),
            pressure_per_mille: 900,
            filter: Filter::default(),
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
            jobs: crate::jobs::JobsConfig::default(),
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
    /// A share in per mille is outside 1..=1000.
    #[error("`{0}` must be between 1 and 1000 (per mille)")]
    Share(&'static str),
}

/// Presets of watermarks and filters for the roles a node plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// A phone or other small device: a handful of peers.
    Small,
    /// A desktop or ordinary server: the defaults.
    Standard,
    /// A data-centre node or load balancer: hundreds of peers, never dials private
    /// addresses (and the host leaves mDNS off).
    DataCentre,
}

impl Profile {
    /// Every profile, for error messages.
    pub const ALL: [Profile; 3] = [Profile::Small, Profile::Standard, Profile::DataCentre];

    /// The profile's name as written in configurations.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Small => "small",
            Profile::Standard => "standard",
            Profile::DataCentre => "data-centre",
        }
    }

    /// Sets the profile's watermarks, dial concurrency and filter on `config`.
    pub fn apply(self, config: &mut Config) {
        let (low, high, dials) = match self {
            Profile::Small => (3, 8, 2),
            Profile::Standard => (8, 32, 4),
            Profile::DataCentre => (64, 256, 16),
        };
        config.low_watermark = low;
        config.high_watermark = high;
        config.dials_concurrent_max = dials;
        config.filter = match self {
            Profile::DataCentre => Filter::All(vec![Filter::NotSelf, Filter::DenyPrivate]),
            Profile::Small | Profile::Standard => Filter::default(),
        };
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
                format!("unknown profile {s:?}; use one of {}", names.join(", "))
            })
    }
}

impl Config {
    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (v, name) in [
            (self.high_watermark, "high_watermark"),
            (self.dials_concurrent_max, "dials_concurrent_max"),
            (self.peers_known_max, "peers_known_max"),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.low_watermark > self.high_watermark {
            return Err(ConfigError::Order("low_watermark", "high_watermark"));
        }
        if self.pressure_per_mille == 0 || self.pressure_per_mille > 1000 {
            return Err(ConfigError::Share("pressure_per_mille"));
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
