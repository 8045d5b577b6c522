//! The allowlist: address ranges (CIDR) and peer ids the node always makes room for.
//!
//! Ranges are kept as merged, sorted, non-overlapping intervals per address family, so a
//! check is a binary search: a thousand ranges cost about ten comparisons.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::identity::PeerId;

/// An address range: a network address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `addr` with its first `prefix` bits; bits past the prefix are ignored.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            return Err(CidrError::Prefix {
                text: format!("{addr}/{prefix}"),
                max,
            });
        }
        Ok(Cidr { addr, prefix })
    }

    /// True if `ip` is in the range. An IPv4 range never holds an IPv6 address (map
    /// IPv4-mapped addresses to IPv4 first with [`IpAddr::to_canonical`]).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                let (lo, hi) = self.bounds();
                let x = key(ip);
                lo <= x && x <= hi
            }
            _ => false,
        }
    }

    /// First and last address as integers (IPv4 in the low 32 bits).
    fn bounds(&self) -> (u128, u128) {
        let bits: u32 = match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let host = bits - u32::from(self.prefix);
        let mask = if host == 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        let lo = key(self.addr) & !mask;
        (lo, lo | mask)
    }
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a single address (a /32 or /128).
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError::Syntax(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                Some(p.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let prefix = prefix.unwrap_or(match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        });
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A malformed address range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not an address or address/prefix.
    #[error(
        "{0:?} is not an address range: write e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or \"192.0.2.7\""
    )]
    Syntax(String),
    /// The prefix is longer than the address.
    #[error("{text:?}: the prefix length must be at most {max}")]
    Prefix {
        /// The range as written.
        text: String,
        /// 32 or 128.
        max: u8,
    },
}

/// Address ranges and peer ids that are always let in: when the normal system or transient
/// budget is full, what they open is charged to the allowlisted budget instead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    peers: BTreeSet<PeerId>,
}

impl Allowlist {
    /// An allowlist of these ranges and peers.
    pub fn new(
        cidrs: impl IntoIterator<Item = Cidr>,
        peers: impl IntoIterator<Item = PeerId>,
    ) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in cidrs {
            let (lo, hi) = c.bounds();
            match c.addr {
                IpAddr::V4(_) => v4.push((
                    u32::try_from(lo).unwrap_or(u32::MAX),
                    u32::try_from(hi).unwrap_or(u32::MAX),
                )),
                IpAddr::V6(_) => v6.push((lo, hi)),
            }
        }
        Allowlist {
            v4: merge(v4),
            v6: merge(v6),
            peers: peers.into_iter().collect(),
        }
    }

    /// True if `ip` is in an allowed range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn allows_addr(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// True if `peer` is allowed.
    pub fn allows_peer(&self, peer: &PeerId) -> bool {
        self.peers.contains(peer)
    }

    /// True if nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty() && self.peers.is_empty()
    }

    /// Number of disjoint IPv4 and IPv6 intervals after merging.
    pub fn intervals(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Sorted, merged (overlapping or adjacent) intervals.
fn merge<T: Copy + Ord + Into<u128>>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo.into() <= last.1.into().saturating_add(1) => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn find<T: Copy + Ord>(v: &[(T, T)], x: T) -> bool {
    let i = v.partition_point(|&(lo, _)| lo <= x);
    i > 0 && x <= v[i - 1].1
}

/// True for loopback addresses, which per-subnet caps and rate limits exempt by default.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.255.255")));
        assert!(!c.contains(ip("10.2.0.0")));
        assert!(!c.contains(ip("::1")));
        let single: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(single.to_string(), "192.0.2.7/32");
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains(ip("2001:db8::1")));
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string(),
            "\"10.0.0.0/33\": the prefix length must be at most 32"
        );
        assert!(matches!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::Syntax(_))
        ));
    }

    #[test]
    fn allowlist_merges_and_finds() {
        let cidrs = [
            "10.0.0.0/9",
            "10.128.0.0/9",
            "192.168.1.0/24",
            "2001:db8::/32",
            "0.0.0.0/32",
        ]
        .iter()
        .map(|s| s.parse().unwrap());
        let peer = PeerId::from_public_key([1; 32]);
        let a = Allowlist::new(cidrs, [peer]);
        // The two /9 halves merge into one /8.
        assert_eq!(a.intervals(), 4);
        assert!(a.allows_addr(ip("10.200.0.1")));
        assert!(a.allows_addr(ip("::ffff:192.168.1.9")));
        assert!(!a.allows_addr(ip("11.0.0.0")));
        assert!(a.allows_addr(ip("0.0.0.0")));
        assert!(!a.allows_addr(ip("0.0.0.1")));
        assert!(a.allows_addr(ip("2001:db8:ffff::1")));
        assert!(!a.allows_addr(ip("2001:db9::")));
        assert!(a.allows_peer(&peer));
        assert!(!a.allows_peer(&PeerId::from_public_key([2; 32])));
        assert!(is_loopback(ip("127.0.0.2")));
        assert!(is_loopback(ip("::1")));
        assert!(!is_loopback(ip("10.0.0.1")));
    }

    #[test]
    fn matches_a_linear_scan() {
        // 1000 pseudo-random ranges against a plain scan.
        let mut x: u32 = 12345;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let cidrs: Vec<Cidr> = (0..1000)
            .map(|_| {
                let a = next();
                let p = u8::try_from(8 + next() % 25).unwrap();
                Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap()
            })
            .collect();
        let list = Allowlist::new(cidrs.iter().copied(), []);
        for _ in 0..5000 {
            let probe = IpAddr::V4(Ipv4Addr::from(next()));
            assert_eq!(
                list.allows_addr(probe),
                cidrs.iter().any(|c| c.contains(probe))
            );
        }
    }
}
