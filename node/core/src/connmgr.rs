//! The connection manager: keeps a node's connections between a low and a high watermark.
//!
//! Peers connect and disconnect freely until the node reaches its high watermark (it never
//! holds more: the node refuses inbound connections beyond it); then, unless it trimmed
//! within the quiet period, it closes connections down to the low watermark in one batch. Victims are the peers of lowest score (filter fit, RTT, uptime as
//! the node rates them, plus the peer's tags); peers still in their grace period and
//! protected peers are never trimmed. The manager also trims early when the resource
//! manager's system scope is close to its connection limit, so that trimming, not refusal,
//! keeps the node under it.
//!
//! Tags are named integer weights on a peer; a decaying tag loses value on a fixed interval
//! (halving or by a fixed step) and disappears at zero. Time is an argument, as everywhere
//! in the core, and ties are broken by peer id, so trims are deterministic.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::identity::PeerId;
use crate::rcmgr::Limits;
use crate::time::Timestamp;

/// Settings of a [`ConnManager`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnManagerConfig {
    /// Connections trimming brings the node down to.
    pub low_watermark: usize,
    /// Connections above which the node trims.
    pub high_watermark: usize,
    /// New peers are not trimmed for this long.
    pub grace: Duration,
    /// Shortest time between two trims.
    pub quiet: Duration,
    /// Trim early once the system scope holds this share (per mille) of its connection
    /// limit.
    pub pressure_per_mille: u16,
}

impl Default for ConnManagerConfig {
    fn default() -> Self {
        ConnManagerConfig {
            low_watermark: 8,
            high_watermark: 32,
            grace: Duration::from_secs(30),
            quiet: Duration::from_secs(10),
            pressure_per_mille: 900,
        }
    }
}

/// Why connection manager settings are unusable; names the keys to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnManagerError {
    /// The watermarks are in the wrong order or zero.
    #[error(
        "peers.low_watermark = {low} must be at least 1 and at most peers.high_watermark = {high}"
    )]
    Watermarks {
        /// The low watermark.
        low: usize,
        /// The high watermark.
        high: usize,
    },
    /// The high watermark can never be reached under the resource manager's limits.
    #[error(
        "peers.high_watermark = {high} is above {key} = {limit}: the resource manager would \
         refuse connections before the connection manager trims; lower peers.high_watermark \
         or raise {key}"
    )]
    AboveLimit {
        /// The high watermark.
        high: usize,
        /// The limits key it exceeds.
        key: &'static str,
        /// That limit.
        limit: u64,
    },
    /// The pressure threshold is not a share.
    #[error("peers.pressure_per_mille = {0} must be between 1 and 1000")]
    Pressure(u16),
}

impl ConnManagerConfig {
    /// Checks the settings, and that `limits` let the node reach its high watermark.
    pub fn validate(&self, limits: &Limits) -> Result<(), ConnManagerError> {
        if self.low_watermark == 0 || self.low_watermark > self.high_watermark {
            return Err(ConnManagerError::Watermarks {
                low: self.low_watermark,
                high: self.high_watermark,
            });
        }
        if self.pressure_per_mille == 0 || self.pressure_per_mille > 1000 {
            return Err(ConnManagerError::Pressure(self.pressure_per_mille));
        }
        let high = self.high_watermark as u64;
        for (key, limit) in [
            ("limits.system.conns", limits.system.conns),
            ("limits.system.fds", limits.system.fds),
        ] {
            if high > limit {
                return Err(ConnManagerError::AboveLimit {
                    high: self.high_watermark,
                    key,
                    limit,
                });
            }
        }
        Ok(())
    }
}

/// How a decaying tag loses value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decay {
    /// Never.
    None,
    /// Halved every interval.
    Halve(Duration),
    /// Lowered by `step` every interval.
    Linear {
        /// The interval.
        every: Duration,
        /// The loss per interval.
        step: u32,
    },
}

#[derive(Clone, Copy, Debug)]
struct Tag {
    value: u32,
    decay: Decay,
    since: Timestamp,
}

impl Tag {
    fn value_at(&self, now: Timestamp) -> u32 {
        let elapsed = now.saturating_since(self.since);
        let steps = |every: Duration| {
            let every = every.as_micros().max(1);
            u64::try_from(elapsed.as_micros() / every).unwrap_or(u64::MAX)
        };
        match self.decay {
            Decay::None => self.value,
            Decay::Halve(every) => {
                let n = steps(every);
                if n >= 32 { 0 } else { self.value >> n }
            }
            Decay::Linear { every, step } => {
                let lost = steps(every).saturating_mul(u64::from(step));
                u32::try_from(u64::from(self.value).saturating_sub(lost)).unwrap_or(0)
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Peer {
    since: Timestamp,
    protected: u32,
    tags: BTreeMap<&'static str, Tag>,
}

/// Keeps connections between the watermarks; see the module documentation.
#[derive(Clone, Debug)]
pub struct ConnManager {
    config: ConnManagerConfig,
    peers: BTreeMap<PeerId, Peer>,
    last_trim: Option<Timestamp>,
    trims: u64,
}

/// Why a trim happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrimCause {
    /// The high watermark is reached.
    HighWatermark,
    /// The system scope is close to its connection limit.
    Pressure,
}

impl ConnManager {
    /// A manager with `config` (validate it first with [`ConnManagerConfig::validate`]).
    pub fn new(config: ConnManagerConfig) -> Self {
        ConnManager {
            config,
            peers: BTreeMap::new(),
            last_trim: None,
            trims: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ConnManagerConfig {
        &self.config
    }

    /// Peers currently connected.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True if no peer is connected.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Trims so far that closed at least one connection.
    pub fn trims(&self) -> u64 {
        self.trims
    }

    /// A peer connected at `now` (a peer already known keeps its tags and start).
    pub fn connected(&mut self, peer: PeerId, now: Timestamp) {
        self.peers.entry(peer).or_insert(Peer {
            since: now,
            protected: 0,
            tags: BTreeMap::new(),
        });
    }

    /// A peer's last connection closed; its tags and protections go with it.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Protects a connected peer from trimming until [`ConnManager::unprotect`] is called as
    /// often. Returns false if the peer is not connected.
    pub fn protect(&mut self, peer: &PeerId) -> bool {
        self.peers.get_mut(peer).is_some_and(|p| {
            p.protected = p.protected.saturating_add(1);
            true
        })
    }

    /// Removes one protection of `peer`.
    pub fn unprotect(&mut self, peer: &PeerId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.protected = p.protected.saturating_sub(1);
        }
    }

    /// True if `peer` is protected.
    pub fn is_protected(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.protected > 0)
    }

    /// Sets tag `name` of a connected peer to `value`, decaying from `now` by `decay`.
    pub fn tag(
        &mut self,
        peer: &PeerId,
        name: &'static str,
        value: u32,
        decay: Decay,
        now: Timestamp,
    ) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.tags.insert(
                name,
                Tag {
                    value,
                    decay,
                    since: now,
                },
            );
        }
    }

    /// Adds `delta` to tag `name` (its decayed value at `now`), keeping its decay.
    pub fn bump(&mut self, peer: &PeerId, name: &'static str, delta: u32, now: Timestamp) {
        if let Some(p) = self.peers.get_mut(peer) {
            let t = p.tags.entry(name).or_insert(Tag {
                value: 0,
                decay: Decay::None,
                since: now,
            });
            t.value = t.value_at(now).saturating_add(delta);
            t.since = now;
        }
    }

    /// The sum of `peer`'s tags at `now`; tags decayed to zero are dropped.
    pub fn tag_value(&mut self, peer: &PeerId, now: Timestamp) -> u64 {
        let Some(p) = self.peers.get_mut(peer) else {
            return 0;
        };
        p.tags.retain(|_, t| t.value_at(now) > 0);
        p.tags.values().map(|t| u64::from(t.value_at(now))).sum()
    }

    /// Whether a trim is due at `now`: at or above the high watermark (a node refuses
    /// inbound connections beyond it, so reaching it means the node is full), or `system_conns` of
    /// `system_limit` past the pressure threshold; never within the quiet period.
    pub fn trim_due(
        &self,
        now: Timestamp,
        system_conns: u64,
        system_limit: u64,
    ) -> Option<TrimCause> {
        if let Some(last) = self.last_trim
            && now.saturating_since(last) < self.config.quiet
        {
            return None;
        }
        if self.peers.len() >= self.config.high_watermark {
            return Some(TrimCause::HighWatermark);
        }
        let threshold = u128::from(system_limit) * u128::from(self.config.pressure_per_mille);
        let pressure = system_limit != u64::MAX
            && u128::from(system_conns) * 1000 >= threshold
            && self.peers.len() > self.config.low_watermark;
        pressure.then_some(TrimCause::Pressure)
    }

    /// Picks the peers to close so that the low watermark is reached, lowest score first:
    /// `score` rates a peer (higher is better) and its tags are added. Peers in their grace
    /// period and protected peers are kept, so fewer may be picked. Records the trim at
    /// `now`; the caller disconnects the victims (and reports each with
    /// [`ConnManager::disconnected`]).
    pub fn trim(&mut self, now: Timestamp, mut score: impl FnMut(&PeerId) -> i64) -> Vec<PeerId> {
        self.last_trim = Some(now);
        let excess = self.peers.len().saturating_sub(self.config.low_watermark);
        if excess == 0 {
            return Vec::new();
        }
        let grace = self.config.grace;
        let peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.protected == 0 && now.saturating_since(p.since) >= grace)
            .map(|(id, _)| *id)
            .collect();
        let mut rated: Vec<(i64, PeerId)> = peers
            .into_iter()
            .map(|id| {
                let tags = i64::try_from(self.tag_value(&id, now)).unwrap_or(i64::MAX);
                (score(&id).saturating_add(tags), id)
            })
            .collect();
        rated.sort_unstable();
        let victims: Vec<PeerId> = rated.into_iter().take(excess).map(|(_, id)| id).collect();
        self.trims += u64::from(!victims.is_empty());
        victims
    }
}

#[cfg(test)]
mod tests;
