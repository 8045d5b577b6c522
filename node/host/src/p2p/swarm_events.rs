//! Turning swarm events into [`NetEvent`]s, following the contract of
//! [`Network`](crate::network::Network):
//!
//! - `Connected` on the first established connection to a peer, and on any connection that
//!   answers one of the core's dials (with its `DialId`);
//! - `Disconnected` when the last connection to a peer closes;
//! - `DialFailed` when a connection the core dialled fails;
//! - `Discovered` for peers the DHT can route to, providers of the pools looked for and
//!   nodes found by mDNS (see [`super::discovery`]); `Advert` for adverts on the hello topic;
//! - `Broadcast` for job messages on the jobs topic (see [`super::broadcast`]).

use flotilla_core::{Direction, SignedAdvert};
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify, kad};

use super::addr::{core_peer, split_p2p};
use super::behaviour::{BehaviourEvent, HELLO_BYTES_MAX, KAD_PROTOCOL, hello_topic, jobs_topic};
use super::{P2pNetwork, dial_reason};
use crate::network::NetEvent;

/// Addresses of one peer taken from identify or the DHT at most.
const PEER_ADDRS_MAX: usize = flotilla_core::advert::ADVERT_ADDRS_MAX;

impl P2pNetwork {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let dial = self.dials.remove(&connection_id);
                let Some(peer) = core_peer(&peer_id) else {
                    if let Some(dial) = dial {
                        let reason = format!("{peer_id} does not use an ed25519 key");
                        self.pending
                            .push_back(NetEvent::DialFailed { dial, reason });
                    }
                    return;
                };
                if dial.is_some() || num_established.get() == 1 {
                    let direction = if endpoint.is_dialer() {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    };
                    self.pending.push_back(NetEvent::Connected {
                        peer,
                        direction,
                        dial,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, cause = ?cause, remaining = num_established, "connection closed");
                if num_established == 0
                    && let Some(peer) = core_peer(&peer_id)
                {
                    self.writers.remove(&peer);
                    self.pending.push_back(NetEvent::Disconnected { peer });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(dial) = self.dials.remove(&connection_id) {
                    let reason = dial_reason(&error.to_string());
                    self.pending
                        .push_back(NetEvent::DialFailed { dial, reason });
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(from = %send_back_addr, error = %error, "inbound connection failed");
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                self.listeners_up.insert(listener_id);
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::info!(%address, "no longer listening");
                self.listen_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                tracing::warn!(?reason, "listener closed");
                self.listeners.remove(&listener_id);
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(error = %error, "listener error");
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            // Peers that speak the node's DHT join its routing table.
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if info.protocols.contains(&KAD_PROTOCOL) =>
            {
                let kad = &mut self.swarm.behaviour_mut().kad;
                for addr in info.listen_addrs.into_iter().take(PEER_ADDRS_MAX) {
                    kad.add_address(&peer_id, split_p2p(&addr).0);
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                self.discovery.on_routing();
                let Some(core) = core_peer(&peer) else { return };
                let addrs = addresses
                    .iter()
                    .take(PEER_ADDRS_MAX)
                    .map(|a| split_p2p(a).0.to_string())
                    .collect();
                let ev = NetEvent::Discovered {
                    peer: core,
                    addrs,
                    source: flotilla_core::Source::Dht,
                };
                self.pending.push_back(ev);
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(result),
                ..
            }) => match result {
                Ok(ok) => tracing::debug!(remaining = ok.num_remaining, "dht bootstrap step"),
                Err(e) => tracing::debug!(error = %e, "dht bootstrap failed"),
            },
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            }) => {
                match result {
                    Ok(kad::GetProvidersOk::FoundProviders { key, providers }) => {
                        self.on_providers(id, &key, providers)
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
                    Err(e) => tracing::debug!(error = %e, "pool provider lookup failed"),
                }
                if step.last {
                    self.on_providers_done(id);
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                ..
            }) => match result {
                Ok(ok) => self.on_closest_peers(id, ok.peers),
                Err(kad::GetClosestPeersError::Timeout { peers, .. }) => {
                    self.on_closest_peers(id, peers)
                }
            },
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::StartProviding(result),
                stats,
                ..
            }) => {
                if let Err(e) = &result {
                    tracing::debug!(error = %e, "pool announcement incomplete");
                }
                self.discovery
                    .on_announced(result.is_ok() && stats.num_successes() > 0);
            }
            BehaviourEvent::Mdns(event) => self.on_mdns(event),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            }) => {
                if message.topic == jobs_topic().hash() {
                    self.on_job_broadcast(propagation_source, message);
                } else {
                    self.on_hello(propagation_source, message);
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { topic, .. })
                if topic == jobs_topic().hash() =>
            {
                self.retry_held_jobs();
            }
            BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                result: Err(e),
                ..
            }) => {
                tracing::debug!(%peer, error = %e, "libp2p ping failed");
            }
            _ => {}
        }
    }

    /// An advert from the hello topic, published by the peer it describes.
    fn on_hello(&mut self, relay: libp2p::PeerId, message: gossipsub::Message) {
        if message.topic != hello_topic().hash() {
            return;
        }
        let Some(from) = core_peer(&relay) else {
            return;
        };
        if message.data.len() > HELLO_BYTES_MAX {
            tracing::debug!(peer = %from, bytes = message.data.len(), "oversized advert on the hello topic");
            return;
        }
        let advert: SignedAdvert = match postcard::from_bytes(&message.data) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(peer = %from, error = %e, "malformed advert on the hello topic");
                return;
            }
        };
        let publisher = message.source.as_ref().and_then(core_peer);
        if publisher != Some(advert.advert.peer_id) {
            tracing::debug!(peer = %from, "advert on the hello topic not published by its peer");
            return;
        }
        self.pending.push_back(NetEvent::Advert { from, advert });
    }
}
