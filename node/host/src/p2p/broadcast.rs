//! Job broadcasts on the gossip jobs topic ([`JOBS_TOPIC`](super::behaviour::JOBS_TOPIC)):
//! a service provider that pins no provider publishes its bid request there, and every
//! node hands what arrives to its core, whose bid goes back to the publisher directly
//! over the core protocol.
//!
//! - A message is the postcard encoding of one [`JobMessage`], as inside a core frame, at
//!   most [`JOB_BROADCAST_BYTES_MAX`] bytes.
//! - Gossipsub signs every message (`Signed` authenticity, strict validation): the
//!   publisher is the message's `source`, not the peer that relayed it. Messages without
//!   a source, oversized or undecodable ones are dropped, logged at debug and counted in
//!   `flotilla_job_broadcasts_dropped_total`.
//! - A publisher the swarm is not connected to must still get its bid: if the DHT's
//!   routing table has addresses for it, they are reported as a `Discovered` event just
//!   before the broadcast, so the core's peer table can reach it. If none are known, the
//!   core may still know the publisher (its advert on the hello topic, peer exchanges);
//!   otherwise the bid waits in the core until a connection to the publisher comes up.
//! - A publication that finds no subscribed peer (just after start-up, before gossipsub
//!   exchanged subscriptions) is held for [`JOB_BROADCAST_HOLD`] and published when a peer
//!   subscribes to the topic or after a later driver step.

use std::collections::VecDeque;
use std::time::Duration;

use flotilla_core::jobs::JobMessage;
use libp2p::gossipsub;
use tokio::time::Instant;

use super::P2pNetwork;
use super::addr::{core_peer, split_p2p};
use super::behaviour::{JOB_BROADCAST_BYTES_MAX, jobs_topic};
use crate::network::{BroadcastError, NetEvent};

/// How long a publication that found no subscribed peer is held for another try; shorter
/// than the core's default bid deadline (5 s), so that bids can still come in time.
pub const JOB_BROADCAST_HOLD: Duration = Duration::from_secs(3);
/// Publications held at most; beyond, the oldest is dropped.
pub const JOB_BROADCASTS_HELD_MAX: usize = 16;
/// Addresses of a publisher reported to the core at most.
const PUBLISHER_ADDRS_MAX: usize = flotilla_core::advert::ADVERT_ADDRS_MAX;

/// A publication waiting for a peer subscribed to the jobs topic.
#[derive(Debug)]
pub(super) struct Held {
    data: Vec<u8>,
    until: Instant,
}

/// Publications waiting for a subscribed peer, oldest first.
pub(super) type HeldJobs = VecDeque<Held>;

impl P2pNetwork {
    /// Publishes `message` on the jobs topic, or holds it while no peer is subscribed.
    pub(super) fn publish_job(&mut self, message: &JobMessage) -> Result<(), BroadcastError> {
        let data = postcard::to_stdvec(message).map_err(|e| {
            self.metrics.job_broadcast_dropped("publish");
            BroadcastError::Publish(format!("cannot encode the message: {e}"))
        })?;
        if data.len() > JOB_BROADCAST_BYTES_MAX {
            self.metrics.job_broadcast_dropped("too-large");
            return Err(BroadcastError::TooLarge {
                len: data.len(),
                max: JOB_BROADCAST_BYTES_MAX,
            });
        }
        self.publish_job_data(data, Instant::now() + JOB_BROADCAST_HOLD)
    }

    fn publish_job_data(&mut self, data: Vec<u8>, until: Instant) -> Result<(), BroadcastError> {
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        match gossip.publish(jobs_topic(), data.clone()) {
            Ok(_) => {
                self.metrics.job_broadcast("published");
                Ok(())
            }
            Err(
                gossipsub::PublishError::NoPeersSubscribedToTopic
                | gossipsub::PublishError::AllQueuesFull(_),
            ) if Instant::now() < until => {
                tracing::debug!(bytes = data.len(), "no peer takes job broadcasts yet; held");
                if self.held_jobs.len() >= JOB_BROADCASTS_HELD_MAX {
                    self.held_jobs.pop_front();
                    self.metrics.job_broadcast_dropped("no-peers");
                }
                self.held_jobs.push_back(Held { data, until });
                Ok(())
            }
            Err(
                gossipsub::PublishError::NoPeersSubscribedToTopic
                | gossipsub::PublishError::AllQueuesFull(_),
            ) => {
                self.metrics.job_broadcast_dropped("no-peers");
                Err(BroadcastError::Publish(format!(
                    "no peer took the jobs topic within {JOB_BROADCAST_HOLD:?}"
                )))
            }
            Err(e) => {
                self.metrics.job_broadcast_dropped("publish");
                Err(BroadcastError::Publish(e.to_string()))
            }
        }
    }

    /// Publishes the held publications if a peer is subscribed to the jobs topic now; drops
    /// those held too long.
    pub(super) fn retry_held_jobs(&mut self) {
        if self.held_jobs.is_empty() {
            return;
        }
        let now = Instant::now();
        let before = self.held_jobs.len();
        self.held_jobs.retain(|h| h.until > now);
        for _ in self.held_jobs.len()..before {
            tracing::warn!("job broadcast dropped: no peer took the jobs topic in time");
            self.metrics.job_broadcast_dropped("no-peers");
        }
        let topic = jobs_topic().hash();
        let subscribed = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .any(|(_, topics)| topics.contains(&&topic));
        if !subscribed {
            return;
        }
        for held in std::mem::take(&mut self.held_jobs) {
            if let Err(e) = self.publish_job_data(held.data, held.until) {
                tracing::warn!(error = %e, "held job broadcast not published");
            }
        }
    }

    /// A message on the jobs topic, relayed by `relay`.
    pub(super) fn on_job_broadcast(&mut self, relay: libp2p::PeerId, message: gossipsub::Message) {
        let Some(source) = message.source else {
            tracing::debug!(%relay, "job broadcast without a publisher dropped");
            self.metrics.job_broadcast_dropped("unsigned");
            return;
        };
        let Some(from) = core_peer(&source) else {
            tracing::debug!(%relay, publisher = %source, "job broadcast from a peer without an ed25519 key dropped");
            self.metrics.job_broadcast_dropped("unsigned");
            return;
        };
        if message.data.len() > JOB_BROADCAST_BYTES_MAX {
            tracing::debug!(%relay, publisher = %from, bytes = message.data.len(), "oversized job broadcast dropped");
            self.metrics.job_broadcast_dropped("oversized");
            return;
        }
        let decoded = postcard::take_from_bytes::<JobMessage>(&message.data)
            .map_err(|e| e.to_string())
            .and_then(|(m, rest)| match rest.len() {
                0 => Ok(m),
                n => Err(format!("{n} trailing bytes")),
            });
        let job = match decoded {
            Ok(m) => m,
            Err(error) => {
                tracing::debug!(%relay, publisher = %from, %error, "malformed job broadcast dropped");
                self.metrics.job_broadcast_dropped("malformed");
                return;
            }
        };
        self.metrics.job_broadcast("received");
        if !self.swarm.is_connected(&source) {
            let mut addrs: Vec<String> = Vec::new();
            for addr in self.routing_addrs(&source) {
                let text = split_p2p(&addr).0.to_string();
                if !addrs.contains(&text) && addrs.len() < PUBLISHER_ADDRS_MAX {
                    addrs.push(text);
                }
            }
            if !addrs.is_empty() {
                self.pending.push_back(NetEvent::Discovered {
                    peer: from,
                    addrs,
                    source: flotilla_core::Source::Dht,
                });
            }
        }
        self.pending
            .push_back(NetEvent::Broadcast { from, message: job });
    }
}
