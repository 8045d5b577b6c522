//! The libp2p behaviours of a node and how they are configured.
//!
//! - `rcmgr`: the resource manager's connection limits (see [`super::rcmgr`]); it comes
//!   first, so a refused connection costs the other behaviours nothing;
//! - `identify`: exchanges listen addresses and protocols; feeds kad;
//! - `ping`: keeps connections alive and detects dead ones;
//! - `kad`: a DHT under the node's own protocol name, in server mode, bootstrapped
//!   periodically; peers it can route to are reported to the core;
//! - `mdns`: nodes on the local link, present only when enabled (see [`super::discovery`]);
//! - `gossipsub`: the hello topic on which nodes publish their signed adverts, and the jobs
//!   topic on which service providers broadcast bid requests (see [`super::broadcast`]);
//! - `stream`: raw streams for the core protocol.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, gossipsub, identify, kad, mdns, ping};

use super::discovery::PROVIDER_RECORD_TTL;

use crate::rcmgr::SharedRcmgr;

/// The DHT's protocol name, so that Flotilla's DHT stays apart from other networks.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/flotilla/kad/1.0.0");
/// The identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/flotilla/id/1.0.0";
/// The gossip topic carrying adverts.
pub const HELLO_TOPIC: &str = "flotilla/hello/1";
/// The core protocol as a libp2p stream protocol.
pub const CORE_PROTOCOL: StreamProtocol = StreamProtocol::new(flotilla_core::wire::PROTOCOL_NAME);

/// The gossip topic carrying job broadcasts (bid requests sent to every provider).
pub const JOBS_TOPIC: &str = "flotilla/jobs/1";

/// Largest encoded advert published or accepted on the hello topic.
pub const HELLO_BYTES_MAX: usize = 8 * 1024;
/// Largest encoded job message published or accepted on the jobs topic: a core frame's
/// limit, so that a bid request that could be sent directly can be broadcast too (its job
/// spec is at most [`flotilla_core::job::SPEC_BYTES_MAX`] bytes of TOML).
pub const JOB_BROADCAST_BYTES_MAX: usize = flotilla_core::wire::FRAME_MAX_BYTES;
/// Room for a gossip message's envelope around its data: source, sequence number, topic,
/// signature and key.
pub const GOSSIP_ENVELOPE_BYTES_MAX: usize = 1024;
/// Largest gossipsub RPC accepted: the largest job broadcast with its envelope, plus room
/// for control messages sent along.
pub const GOSSIP_TRANSMIT_BYTES_MAX: usize = JOB_BROADCAST_BYTES_MAX + 16 * 1024;
/// Gossipsub heartbeat period.
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_secs(1);
/// Period of the DHT's bootstrap (a self lookup refreshing the routing table).
pub const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(300);
/// DHT query timeout.
pub const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Identify's re-identification period.
pub const IDENTIFY_INTERVAL: Duration = Duration::from_secs(300);

/// All behaviours of a production node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub(crate) rcmgr: super::rcmgr::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) stream: libp2p_stream::Behaviour,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").finish_non_exhaustive()
    }
}

impl Behaviour {
    /// The behaviours for key pair `key`, within the limits of `rcmgr`; with mDNS if `mdns`.
    pub fn new(
        key: &libp2p::identity::Keypair,
        rcmgr: SharedRcmgr,
        mdns: bool,
    ) -> Result<Self, String> {
        let local = key.public().to_peer_id();

        let identify = identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
            .with_agent_version(format!("flotilla/{}", env!("CARGO_PKG_VERSION")))
            .with_interval(IDENTIFY_INTERVAL);

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_periodic_bootstrap_interval(Some(KAD_BOOTSTRAP_INTERVAL))
            .set_query_timeout(KAD_QUERY_TIMEOUT)
            .set_kbucket_size(NonZeroUsize::new(20).unwrap_or(NonZeroUsize::MIN))
            // The host announces its pools itself (see `discovery`).
            .set_provider_publication_interval(None)
            .set_provider_record_ttl(Some(PROVIDER_RECORD_TTL));
        let mut kad =
            kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), kad_config);
        kad.set_mode(Some(kad::Mode::Server));

        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(GOSSIP_TRANSMIT_BYTES_MAX)
            // Each topic's messages are bounded by what the topic carries.
            .max_transmit_size_for_topic(
                HELLO_BYTES_MAX + GOSSIP_ENVELOPE_BYTES_MAX,
                hello_topic().hash(),
            )
            .max_transmit_size_for_topic(
                JOB_BROADCAST_BYTES_MAX + GOSSIP_ENVELOPE_BYTES_MAX,
                jobs_topic().hash(),
            )
            .validation_mode(gossipsub::ValidationMode::Strict)
            .heartbeat_interval(GOSSIP_HEARTBEAT)
            .build()
            .map_err(|e| format!("gossipsub configuration: {e}"))?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )
        .map_err(|e| format!("gossipsub: {e}"))?;
        gossipsub
            .subscribe(&hello_topic())
            .map_err(|e| format!("subscribing to {HELLO_TOPIC}: {e}"))?;
        gossipsub
            .subscribe(&jobs_topic())
            .map_err(|e| format!("subscribing to {JOBS_TOPIC}: {e}"))?;

        let mdns = if mdns {
            let behaviour = mdns::tokio::Behaviour::new(mdns::Config::default(), local)
                .map_err(|e| format!("mdns: {e}"))?;
            Some(behaviour)
        } else {
            None
        };

        Ok(Behaviour {
            rcmgr: super::rcmgr::Behaviour::new(rcmgr),
            identify: identify::Behaviour::new(identify),
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            mdns: Toggle::from(mdns),
            gossipsub,
            stream: libp2p_stream::Behaviour::new(),
        })
    }
}

/// The hello topic.
pub fn hello_topic() -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(HELLO_TOPIC)
}

/// The jobs topic.
pub fn jobs_topic() -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(JOBS_TOPIC)
}
