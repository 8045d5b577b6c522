//! Finding peers outside the core protocol: named pools in the DHT and, optionally, mDNS.
//!
//! A *pool* is a named set of providers, such as a service provider's pool of GPU machines.
//! A node provides in its pools ([`DiscoveryConfig::pools`]): once the DHT has a peer it
//! announces itself as a kad provider of each pool's key ([`PoolName::key`]) and does so
//! again every [`PROVIDE_INTERVAL`]; records others hold for it expire after
//! [`PROVIDER_RECORD_TTL`]. A node looks for the providers of other pools
//! ([`DiscoveryConfig::find_pools`]) with one `get_providers` query per pool, soon after
//! start and then every [`FIND_INTERVAL`]. Every provider found, other than the node itself,
//! is handed to the core (once per lookup) as a discovered peer with its addresses, taken
//! from the local provider record or the routing table; a provider with neither is looked
//! up with `get_closest_peers` ([`LOOKUPS_MAX`] at once) and skipped if that finds no
//! address.
//!
//! mDNS ([`DiscoveryConfig::mdns`], off unless configured) finds nodes on the local link;
//! they join the DHT's routing table and are handed to the core too. They arrive in the
//! core's peer table as [`Source::Pool`] and [`Source::Mdns`], and are counted in
//! `flotilla_discovery_found_total{source="pool"|"mdns"}`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use flotilla_core::Source;
use libp2p::kad::store::RecordStore;
use libp2p::{Multiaddr, kad, mdns};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::P2pNetwork;
use super::addr::{core_peer, split_p2p};
use crate::network::NetEvent;

/// Longest pool name, in characters.
pub const POOL_NAME_CHARS_MAX: usize = 64;
/// Pools a node provides in, and pools it looks for, at most (each).
pub const POOLS_MAX: usize = 16;
/// The namespace a pool name is hashed in to make its DHT key.
pub const POOL_KEY_PREFIX: &str = "/flotilla/pool/1/";
/// Period of the node's provider announcements.
pub const PROVIDE_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// How long other nodes keep a provider record that is not announced again.
pub const PROVIDER_RECORD_TTL: Duration = Duration::from_secs(30 * 60);
/// Period of the lookups for providers of the pools looked for.
pub const FIND_INTERVAL: Duration = Duration::from_secs(60);
/// Delay before announcing again after an announcement that reached no DHT node.
pub const PROVIDE_RETRY: Duration = Duration::from_secs(60);
/// Delay of the first lookup after start when the DHT has not gained a peer before.
pub const FIND_FIRST_DELAY: Duration = Duration::from_secs(5);
/// Delay after the DHT gains its first peer before announcing and looking up, so the
/// bootstrap can fill in the routing table.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Address lookups of providers found without an address, in flight at most.
pub const LOOKUPS_MAX: usize = 64;
/// Provider lookups whose providers are remembered at once, at most; beyond that a
/// provider may be handed over more than once in a lookup.
pub const ROUNDS_MAX: usize = 4 * POOLS_MAX;
/// Providers remembered per provider lookup at most.
const ROUND_PROVIDERS_MAX: usize = 1024;
/// Addresses of one discovered peer handed to the core at most.
const PEER_ADDRS_MAX: usize = flotilla_core::advert::ADVERT_ADDRS_MAX;

/// The name of a pool: 1 to [`POOL_NAME_CHARS_MAX`] characters of `a-z`, `0-9`, `-`, `_`
/// and `.`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolName(String);

/// Why a text is not a pool name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolNameError {
    /// The name is empty.
    #[error("a pool name cannot be empty")]
    Empty,
    /// The name is too long.
    #[error("pool name `{0}` is longer than {POOL_NAME_CHARS_MAX} characters; shorten it")]
    TooLong(String),
    /// The name holds a character outside the allowed set.
    #[error(
        "pool name `{name}` contains {bad:?}; use only lowercase letters a-z, digits 0-9, \
         `-`, `_` and `.`"
    )]
    BadChar {
        /// The name.
        name: String,
        /// The first character not allowed.
        bad: char,
    },
}

impl FromStr for PoolName {
    type Err = PoolNameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(PoolNameError::Empty);
        }
        if text.chars().count() > POOL_NAME_CHARS_MAX {
            return Err(PoolNameError::TooLong(text.to_string()));
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        if let Some(bad) = text.chars().find(|c| !allowed(*c)) {
            return Err(PoolNameError::BadChar {
                name: text.to_string(),
                bad,
            });
        }
        Ok(PoolName(text.to_string()))
    }
}

impl std::fmt::Display for PoolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PoolName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pool's key in the DHT: the SHA-256 of [`POOL_KEY_PREFIX`] followed by the name.
    pub fn key(&self) -> kad::RecordKey {
        let digest = Sha256::digest(format!("{POOL_KEY_PREFIX}{}", self.0).as_bytes());
        kad::RecordKey::from(digest.to_vec())
    }
}

/// How a node finds peers outside the core protocol (`[discovery]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Pools this node provides in.
    pub pools: Vec<PoolName>,
    /// Pools whose providers this node wants as peers.
    pub find_pools: Vec<PoolName>,
    /// Whether to find nodes on the local link with mDNS. Off by default: a data-centre
    /// node keeps it off, as its neighbours on the link are not its peers and multicast
    /// may be filtered anyway.
    pub mdns: bool,
    /// Period of the provider announcements ([`PROVIDE_INTERVAL`]).
    pub provide_interval: Duration,
    /// Period of the provider lookups ([`FIND_INTERVAL`]).
    pub find_interval: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            pools: Vec::new(),
            find_pools: Vec::new(),
            mdns: false,
            provide_interval: PROVIDE_INTERVAL,
            find_interval: FIND_INTERVAL,
        }
    }
}

/// The state of pool discovery.
#[derive(Debug)]
pub(super) struct Discovery {
    provide: Vec<kad::RecordKey>,
    find: Vec<kad::RecordKey>,
    provide_interval: Duration,
    find_interval: Duration,
    next_provide: Option<Instant>,
    next_find: Option<Instant>,
    /// Whether the DHT gained a peer yet.
    routing: bool,
    /// Address lookups in flight ([`LOOKUPS_MAX`]), and the provider each looks for.
    lookups: HashMap<kad::QueryId, libp2p::PeerId>,
    /// Provider lookups in flight ([`ROUNDS_MAX`]) and the providers each has handed over,
    /// so that a provider named by several DHT nodes is handed over once per lookup.
    rounds: HashMap<kad::QueryId, HashSet<libp2p::PeerId>>,
    /// Provider announcements that reached a DHT node since start.
    pub(super) provided: u64,
}

impl Discovery {
    pub(super) fn new(config: &DiscoveryConfig) -> Self {
        let keys = |pools: &[PoolName]| pools.iter().map(PoolName::key).collect::<Vec<_>>();
        let find = keys(&config.find_pools);
        let next_find = (!find.is_empty()).then(|| Instant::now() + FIND_FIRST_DELAY);
        Discovery {
            provide: keys(&config.pools),
            find,
            provide_interval: config.provide_interval,
            find_interval: config.find_interval,
            next_provide: None,
            next_find,
            routing: false,
            lookups: HashMap::new(),
            rounds: HashMap::new(),
            provided: 0,
        }
    }

    /// When [`P2pNetwork::on_discovery_timer`] is due next, if ever.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match (self.next_provide, self.next_find) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The DHT has a peer: announce and look up soon, if not done yet.
    pub(super) fn on_routing(&mut self) {
        if self.routing {
            return;
        }
        self.routing = true;
        let soon = Instant::now() + SETTLE;
        if !self.provide.is_empty() {
            self.next_provide = Some(soon);
        }
        if let Some(next) = &mut self.next_find {
            *next = (*next).min(soon);
        }
    }

    /// An announcement ended, having reached a DHT node (`reached`) or not; one that did
    /// not is tried again after [`PROVIDE_RETRY`] rather than the full interval.
    pub(super) fn on_announced(&mut self, reached: bool) {
        if reached {
            self.provided += 1;
            return;
        }
        let retry = Instant::now() + PROVIDE_RETRY;
        if let Some(next) = &mut self.next_provide {
            *next = (*next).min(retry);
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl P2pNetwork {
    /// Announces the node's pools and looks up providers, whichever is due.
    pub(super) fn on_discovery_timer(&mut self) {
        let now = Instant::now();
        let d = &mut self.discovery;
        let kad = &mut self.swarm.behaviour_mut().kad;
        if d.next_provide.is_some_and(|t| t <= now) {
            tracing::debug!(pools = d.provide.len(), "announcing pools");
            for key in &d.provide {
                if let Err(e) = kad.start_providing(key.clone()) {
                    tracing::warn!(error = %e, "cannot store own provider record");
                }
            }
            d.next_provide = Some(now + d.provide_interval);
        }
        if d.next_find.is_some_and(|t| t <= now) {
            tracing::debug!(pools = d.find.len(), "looking up pool providers");
            for key in &d.find {
                let id = kad.get_providers(key.clone());
                if d.rounds.len() < ROUNDS_MAX {
                    d.rounds.insert(id, HashSet::new());
                }
            }
            d.next_find = Some(now + d.find_interval);
        }
    }

    /// Provider lookup `id` found providers of `key`.
    pub(super) fn on_providers(
        &mut self,
        id: kad::QueryId,
        key: &kad::RecordKey,
        providers: HashSet<libp2p::PeerId>,
    ) {
        if !self.discovery.find.contains(key) {
            return;
        }
        for provider in providers {
            if provider == self.local {
                continue;
            }
            if let Some(seen) = self.discovery.rounds.get_mut(&id) {
                if seen.contains(&provider) {
                    continue;
                }
                if seen.len() < ROUND_PROVIDERS_MAX {
                    seen.insert(provider);
                }
            }
            let addrs = self.known_addrs(key, &provider);
            if !addrs.is_empty() {
                self.hand_over(provider, &addrs, "pool");
            } else if self.discovery.lookups.values().any(|p| *p == provider) {
                // Already being looked up.
            } else if self.discovery.lookups.len() < LOOKUPS_MAX {
                let id = self.swarm.behaviour_mut().kad.get_closest_peers(provider);
                self.discovery.lookups.insert(id, provider);
            } else {
                self.metrics.discovery_skipped("lookups-full");
            }
        }
    }

    /// Provider lookup `id` ended.
    pub(super) fn on_providers_done(&mut self, id: kad::QueryId) {
        self.discovery.rounds.remove(&id);
    }

    /// A `get_closest_peers` query ended, with the peers it found and their addresses.
    pub(super) fn on_closest_peers(&mut self, id: kad::QueryId, peers: Vec<kad::PeerInfo>) {
        let Some(provider) = self.discovery.lookups.remove(&id) else {
            return;
        };
        let mut addrs: Vec<Multiaddr> = peers
            .into_iter()
            .filter(|p| p.peer_id == provider)
            .flat_map(|p| p.addrs)
            .collect();
        if addrs.is_empty() {
            // The lookup may have reached the provider, which then joined the table.
            addrs = self.routing_addrs(&provider);
        }
        if addrs.is_empty() {
            tracing::debug!(%provider, "no address found for a pool provider; skipped");
            self.metrics.discovery_skipped("no-address");
        } else {
            self.hand_over(provider, &addrs, "pool");
        }
    }

    /// mDNS found nodes on the local link.
    pub(super) fn on_mdns(&mut self, event: mdns::Event) {
        let found = match event {
            mdns::Event::Discovered(found) => found,
            mdns::Event::Expired(gone) => {
                tracing::debug!(addresses = gone.len(), "mdns records expired");
                return;
            }
        };
        let mut by_peer: BTreeMap<libp2p::PeerId, Vec<Multiaddr>> = BTreeMap::new();
        for (peer, addr) in found {
            if peer != self.local {
                by_peer.entry(peer).or_default().push(split_p2p(&addr).0);
            }
        }
        for (peer, addrs) in by_peer {
            let kad = &mut self.swarm.behaviour_mut().kad;
            for addr in addrs.iter().take(PEER_ADDRS_MAX) {
                kad.add_address(&peer, addr.clone());
            }
            self.hand_over(peer, &addrs, "mdns");
        }
    }

    /// Addresses known for `provider`: its provider record's for `key`, else the routing
    /// table's.
    fn known_addrs(&mut self, key: &kad::RecordKey, provider: &libp2p::PeerId) -> Vec<Multiaddr> {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let recorded: Vec<Multiaddr> = store
            .providers(key)
            .into_iter()
            .filter(|r| r.provider == *provider)
            .flat_map(|r| r.addresses)
            .collect();
        if recorded.is_empty() {
            self.routing_addrs(provider)
        } else {
            recorded
        }
    }

    /// The addresses of `peer` in the DHT's routing table.
    pub(super) fn routing_addrs(&mut self, peer: &libp2p::PeerId) -> Vec<Multiaddr> {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let Some(bucket) = kad.kbucket(*peer) else {
            return Vec::new();
        };
        bucket
            .iter()
            .find(|e| e.node.key.preimage() == peer)
            .map(|e| e.node.value.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Hands `peer` to the core, counting it under `source` (`pool` or `mdns`).
    fn hand_over(&mut self, peer: libp2p::PeerId, addrs: &[Multiaddr], source: &'static str) {
        let Some(core) = core_peer(&peer) else {
            return;
        };
        let mut texts: Vec<String> = Vec::new();
        for addr in addrs {
            let text = split_p2p(addr).0.to_string();
            if !texts.contains(&text) && texts.len() < PEER_ADDRS_MAX {
                texts.push(text);
            }
        }
        tracing::debug!(%peer, source, addrs = texts.len(), "peer discovered");
        self.metrics.discovery_found(source);
        self.pending.push_back(NetEvent::Discovered {
            peer: core,
            addrs: texts,
            source: if source == "mdns" {
                Source::Mdns
            } else {
                Source::Pool
            },
        });
    }
}

#[cfg(test)]
mod tests;
