//! The inbound gate: per-subnet caps on open inbound connections and per-subnet token
//! buckets on the rate of new ones. Loopback addresses are exempt by default; time is
//! passed in.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

const MICRO: u64 = 1_000_000;

/// Limits of the inbound gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateLimits {
    /// IPv4 addresses sharing this many leading bits form one subnet.
    pub v4_prefix: u8,
    /// IPv6 addresses sharing this many leading bits form one subnet.
    pub v6_prefix: u8,
    /// Open inbound connections per subnet.
    pub conns_per_subnet: u64,
    /// New inbound connections per subnet and second, sustained.
    pub rate_per_sec: u64,
    /// New inbound connections per subnet in a burst (the bucket's size).
    pub burst: u64,
    /// Loopback addresses pass without a cap or rate limit.
    pub exempt_loopback: bool,
}

impl Default for GateLimits {
    fn default() -> Self {
        GateLimits {
            v4_prefix: 24,
            v6_prefix: 56,
            conns_per_subnet: 16,
            rate_per_sec: 4,
            burst: 16,
            exempt_loopback: true,
        }
    }
}

/// A subnet: the address family and the masked network bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    v6: bool,
    net: u128,
    prefix: u8,
}

impl Subnet {
    fn of(ip: IpAddr, limits: &GateLimits) -> Subnet {
        let (v6, bits, prefix, x) = match ip.to_canonical() {
            IpAddr::V4(a) => (
                false,
                32u32,
                limits.v4_prefix.min(32),
                u128::from(u32::from(a)),
            ),
            IpAddr::V6(a) => (true, 128, limits.v6_prefix.min(128), u128::from(a)),
        };
        let host = bits - u32::from(prefix);
        let mask = if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        Subnet {
            v6,
            net: x & !mask,
            prefix,
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", Ipv6Addr::from(self.net), self.prefix)
        } else {
            let a = u32::try_from(self.net).unwrap_or(0);
            write!(f, "{}/{}", Ipv4Addr::from(a), self.prefix)
        }
    }
}

/// Why the gate refused an inbound connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    /// The subnet holds as many inbound connections as it may.
    #[error("subnet {subnet} holds {held} inbound connections, limit {limit}")]
    SubnetCap {
        /// The subnet.
        subnet: Subnet,
        /// Its open inbound connections.
        held: u64,
        /// The cap.
        limit: u64,
    },
    /// The subnet opened connections faster than its rate allows.
    #[error(
        "subnet {subnet} opens inbound connections faster than {rate_per_sec}/s (burst {burst})"
    )]
    Rate {
        /// The subnet.
        subnet: Subnet,
        /// The sustained rate.
        rate_per_sec: u64,
        /// The bucket's size.
        burst: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct SubnetState {
    conns: u64,
    /// Millionths of a token.
    tokens: u64,
    updated: Timestamp,
}

/// Per-subnet counts and token buckets of inbound connections.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    limits: GateLimits,
    subnets: BTreeMap<Subnet, SubnetState>,
    latest: Timestamp,
}

impl Gate {
    /// A gate with these limits and nothing counted.
    pub fn new(limits: GateLimits) -> Self {
        Gate {
            limits,
            subnets: BTreeMap::new(),
            latest: Timestamp::ZERO,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &GateLimits {
        &self.limits
    }

    fn capacity(&self) -> u64 {
        self.limits.burst.saturating_mul(MICRO)
    }

    fn refill(&self, s: &mut SubnetState, now: Timestamp) {
        let elapsed = now.saturating_since(s.updated).as_micros();
        let add = u64::try_from(elapsed.saturating_mul(u128::from(self.limits.rate_per_sec)))
            .unwrap_or(u64::MAX);
        s.tokens = s.tokens.saturating_add(add).min(self.capacity());
        s.updated = s.updated.max(now);
    }

    /// Admits a new inbound connection from `ip` at `now`: takes a token from its subnet's
    /// bucket and counts the connection. Returns the subnet to hand back to
    /// [`Gate::release`] when the connection closes, `None` if `ip` is exempt.
    pub fn admit(&mut self, ip: IpAddr, now: Timestamp) -> Result<Option<Subnet>, GateRefusal> {
        if self.limits.exempt_loopback && super::allow::is_loopback(ip) {
            return Ok(None);
        }
        self.latest = self.latest.max(now);
        let subnet = Subnet::of(ip, &self.limits);
        let full = SubnetState {
            conns: 0,
            tokens: self.capacity(),
            updated: now,
        };
        let mut s = self.subnets.get(&subnet).copied().unwrap_or(full);
        self.refill(&mut s, now);
        if s.conns >= self.limits.conns_per_subnet {
            return Err(GateRefusal::SubnetCap {
                subnet,
                held: s.conns,
                limit: self.limits.conns_per_subnet,
            });
        }
        if s.tokens < MICRO {
            self.subnets.insert(subnet, s);
            return Err(GateRefusal::Rate {
                subnet,
                rate_per_sec: self.limits.rate_per_sec,
                burst: self.limits.burst,
            });
        }
        s.tokens -= MICRO;
        s.conns += 1;
        self.subnets.insert(subnet, s);
        Ok(Some(subnet))
    }

    /// An admitted connection closed (or was refused further on).
    pub fn release(&mut self, subnet: Subnet) {
        if let Some(s) = self.subnets.get_mut(&subnet) {
            debug_assert!(s.conns > 0, "subnet connection count underflow");
            s.conns = s.conns.saturating_sub(1);
        }
    }

    /// Open inbound connections counted for `ip`'s subnet.
    pub fn subnet_conns(&self, ip: IpAddr) -> u64 {
        let subnet = Subnet::of(ip, &self.limits);
        self.subnets.get(&subnet).map_or(0, |s| s.conns)
    }

    /// Drops subnets with no open connection whose bucket is full again at the latest
    /// time seen; returns how many.
    pub fn collect_garbage(&mut self) -> usize {
        let before = self.subnets.len();
        let latest = self.latest;
        let cap = self.capacity();
        let rate = self.limits.rate_per_sec;
        self.subnets.retain(|_, s| {
            let elapsed = latest.saturating_since(s.updated).as_micros();
            let tokens = u128::from(s.tokens) + elapsed * u128::from(rate);
            s.conns > 0 || tokens < u128::from(cap)
        });
        before - self.subnets.len()
    }

    /// Every tracked subnet with its open inbound connections.
    pub fn subnets(&self) -> impl Iterator<Item = (Subnet, u64)> + '_ {
        self.subnets.iter().map(|(k, s)| (*k, s.conns))
    }

    /// Subnets tracked.
    pub fn tracked(&self) -> usize {
        self.subnets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_connections_per_subnet() {
        let mut g = Gate::new(GateLimits {
            conns_per_subnet: 2,
            ..GateLimits::default()
        });
        let t = Timestamp::from_secs(100);
        let a = g.admit(ip("198.51.100.1"), t).unwrap().unwrap();
        g.admit(ip("198.51.100.2"), t).unwrap();
        let e = g.admit(ip("198.51.100.3"), t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 198.51.100.0/24 holds 2 inbound connections, limit 2"
        );
        // Another subnet is counted apart.
        g.admit(ip("198.51.101.1"), t).unwrap();
        g.release(a);
        g.admit(ip("198.51.100.3"), t).unwrap();
        assert_eq!(g.subnet_conns(ip("198.51.100.9")), 2);
    }

    #[test]
    fn rate_limits_with_a_token_bucket() {
        let mut g = Gate::new(GateLimits {
            rate_per_sec: 2,
            burst: 3,
            conns_per_subnet: 100,
            ..GateLimits::default()
        });
        let t = Timestamp::from_secs(100);
        let p = ip("2001:db8:1:2::5");
        for _ in 0..3 {
            let s = g.admit(p, t).unwrap().unwrap();
            g.release(s);
        }
        let e = g.admit(p, t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 2001:db8:1::/56 opens inbound connections faster than 2/s (burst 3)"
        );
        // Half a second later one token is back, but only one.
        let t2 = t + Duration::from_millis(500);
        let s = g.admit(p, t2).unwrap().unwrap();
        g.release(s);
        assert!(g.admit(p, t2).is_err());
        // Once the bucket is full again and nothing is open, the subnet is forgotten.
        let s = g.admit(ip("203.0.113.1"), t2 + Duration::from_secs(10));
        g.release(s.unwrap().unwrap());
        assert_eq!(g.collect_garbage(), 1);
        assert_eq!(g.tracked(), 1);
    }

    #[test]
    fn loopback_is_exempt_by_default() {
        let mut g = Gate::new(GateLimits {
            conns_per_subnet: 0,
            ..GateLimits::default()
        });
        let t = Timestamp::from_secs(1);
        for _ in 0..100 {
            assert_eq!(g.admit(ip("127.0.0.1"), t), Ok(None));
            assert_eq!(g.admit(ip("::1"), t), Ok(None));
        }
        assert!(g.admit(ip("10.0.0.1"), t).is_err());
        let mut strict = Gate::new(GateLimits {
            conns_per_subnet: 0,
            exempt_loopback: false,
            ..GateLimits::default()
        });
        assert!(strict.admit(ip("127.0.0.1"), t).is_err());
    }
}
