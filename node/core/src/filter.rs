//! Peer filters: which peers a node keeps company with.
//!
//! A [`PeerFilter`] judges one candidate peer - what its advert says and what the node has
//! measured of it - against the node's own view. Judgements are three-valued
//! ([`Verdict`]): a latency filter cannot judge a peer whose RTT was never measured, so the
//! peer is [`Verdict::Unknown`] at discovery and judged again once pings come back. Filters
//! compose with `all`, `any` and `not` by Kleene's rules (a failure decides `all`, a pass
//! decides `any`, otherwise an unknown stays unknown).
//!
//! The built-ins ([`Filter`]) are written in the configuration as a [`FilterSpec`], for
//! example:
//!
//! ```toml
//! [peers.filter]
//! all = [
//!     { rtt_max_ms = 80 },
//!     { resources_min = { cores = 4, memory_mb = 8192 } },
//!     { uptime_min_s = 3600 },
//!     { not = { regions = ["us-east"] } },
//!     "has_address",
//!     "deny_private",
//! ]
//! ```
//!
//! [`FilterSpec::compile`] checks the spec (CIDRs, peer ids, factors, nesting depth) and
//! names the offending key in its error, e.g. `filter.all[3].deny.cidrs[0]`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::advert::{Advert, Resources};
use crate::identity::PeerId;
use crate::rcmgr::{Allowlist, Cidr};
use crate::time::Timestamp;

/// Deepest nesting of `all`, `any` and `not` a spec may have.
pub const FILTER_DEPTH_MAX: usize = 8;

/// What the node knows of itself when it judges others.
#[derive(Clone, Copy, Debug)]
pub struct LocalView<'a> {
    /// The node's peer id.
    pub peer: PeerId,
    /// The resources the node offers.
    pub resources: &'a Resources,
    /// The node's region hint.
    pub region: Option<&'a str>,
}

/// What the node knows of a candidate peer.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The peer.
    pub peer: PeerId,
    /// Its verified advert, if the node holds one.
    pub advert: Option<&'a Advert>,
    /// Its smoothed RTT, if measured.
    pub rtt: Option<Duration>,
    /// Its place among the measured peers ordered by RTT (0: the fastest), if measured.
    pub rtt_rank: Option<usize>,
    /// The time of judgement.
    pub now: Timestamp,
}

/// A filter's judgement of one candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The candidate fits.
    Pass,
    /// The candidate does not fit, and why.
    Fail(String),
    /// Not enough is known yet (no RTT measured, no advert held).
    Unknown,
}

impl Verdict {
    /// True for [`Verdict::Pass`].
    pub fn passes(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    /// True for [`Verdict::Fail`].
    pub fn fails(&self) -> bool {
        matches!(self, Verdict::Fail(_))
    }

    fn fail(reason: impl fmt::Display) -> Verdict {
        Verdict::Fail(reason.to_string())
    }

    fn of(ok: bool, reason: impl FnOnce() -> String) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail(reason())
        }
    }
}

/// Judges candidate peers. Implemented by the built-in [`Filter`]; a host may add its own
/// through [`Filter::Custom`].
pub trait PeerFilter: fmt::Debug + Send + Sync {
    /// The judgement of `candidate` by a node that sees itself as `me`.
    fn check(&self, me: &LocalView<'_>, candidate: &Candidate<'_>) -> Verdict;
}

/// Lower bounds on a peer's resources; missing fields put no bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesMin {
    /// CPU cores.
    pub cores: Option<u32>,
    /// Memory in MiB.
    pub memory_mb: Option<u64>,
    /// Disk in GiB.
    pub disk_gb: Option<u64>,
    /// GPUs.
    pub gpus: Option<u32>,
}

/// Peer ids and address ranges, as written in `allow` and `deny`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListSpec {
    /// Peer ids.
    pub peers: Vec<String>,
    /// Address ranges (`10.0.0.0/8`, `2001:db8::/32`, or single addresses).
    pub cidrs: Vec<String>,
}

/// A filter as written in the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterSpec {
    /// Smoothed RTT at most this many milliseconds.
    RttMaxMs(u64),
    /// Among the `k` measured peers of lowest RTT.
    Fastest(usize),
    /// At least these resources.
    ResourcesMin(ResourcesMin),
    /// Cores and memory within this factor of the node's own (2.0: half to double).
    ResourcesSimilar(f64),
    /// Up for at least this many seconds (by the start time in its advert).
    UptimeMinS(u64),
    /// Region hint among these.
    Regions(Vec<String>),
    /// Offers every one of these executors (e.g. `docker`).
    Executors(Vec<String>),
    /// Region hint equal to the node's own.
    SameRegion,
    /// Advertises at least one address.
    HasAddress,
    /// Not the node itself.
    NotSelf,
    /// Advertises at least one address outside private, loopback and link-local ranges (a
    /// DNS name other than `localhost` counts as outside).
    DenyPrivate,
    /// Only these peers, or peers with an address in these ranges.
    Allow(ListSpec),
    /// Never these peers, nor peers with an address in these ranges.
    Deny(ListSpec),
    /// Every filter passes.
    All(Vec<FilterSpec>),
    /// At least one filter passes.
    Any(Vec<FilterSpec>),
    /// The filter fails.
    Not(Box<FilterSpec>),
}

/// Why a filter spec is unusable; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct FilterError {
    /// The offending key, e.g. `filter.all[2].allow.cidrs[0]`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

/// A compiled filter.
#[derive(Clone, Debug)]
pub enum Filter {
    /// Smoothed RTT at most this.
    RttMax(Duration),
    /// Among the `k` measured peers of lowest RTT.
    Fastest(usize),
    /// At least these resources.
    ResourcesMin(ResourcesMin),
    /// Cores and memory within this factor of the node's own.
    ResourcesSimilar(f64),
    /// Up for at least this long.
    UptimeMin(Duration),
    /// Region hint among these.
    Regions(Vec<String>),
    /// Offers every one of these executors.
    Executors(Vec<String>),
    /// Region hint equal to the node's own.
    SameRegion,
    /// Advertises at least one address.
    HasAddress,
    /// Not the node itself.
    NotSelf,
    /// Advertises at least one public address.
    DenyPrivate,
    /// Only these peers or ranges.
    Allow(Allowlist),
    /// Never these peers or ranges.
    Deny(Allowlist),
    /// Every filter passes (an empty list passes).
    All(Vec<Filter>),
    /// At least one filter passes (an empty list fails).
    Any(Vec<Filter>),
    /// The filter fails.
    Not(Box<Filter>),
    /// A filter supplied by the host.
    Custom(Arc<dyn PeerFilter>),
}

impl PartialEq for Filter {
    /// Structural equality; custom filters are equal only to themselves.
    fn eq(&self, other: &Self) -> bool {
        use Filter as F;
        match (self, other) {
            (F::RttMax(a), F::RttMax(b)) | (F::UptimeMin(a), F::UptimeMin(b)) => a == b,
            (F::Fastest(a), F::Fastest(b)) => a == b,
            (F::ResourcesMin(a), F::ResourcesMin(b)) => a == b,
            (F::ResourcesSimilar(a), F::ResourcesSimilar(b)) => a == b,
            (F::Regions(a), F::Regions(b)) | (F::Executors(a), F::Executors(b)) => a == b,
            (F::SameRegion, F::SameRegion)
            | (F::HasAddress, F::HasAddress)
            | (F::NotSelf, F::NotSelf)
            | (F::DenyPrivate, F::DenyPrivate) => true,
            (F::Allow(a), F::Allow(b)) | (F::Deny(a), F::Deny(b)) => a == b,
            (F::All(a), F::All(b)) | (F::Any(a), F::Any(b)) => a == b,
            (F::Not(a), F::Not(b)) => a == b,
            (F::Custom(a), F::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Filter {
    /// True if the verdict on a peer can change while nothing new is learned of it: uptime
    /// grows, ranks move as other peers are measured, a custom filter may look at anything.
    /// The node judges its connections again on every maintenance tick only then.
    pub fn changes_with_time(&self) -> bool {
        match self {
            Filter::UptimeMin(_) | Filter::Fastest(_) | Filter::Custom(_) => true,
            Filter::All(v) | Filter::Any(v) => v.iter().any(Filter::changes_with_time),
            Filter::Not(f) => f.changes_with_time(),
            _ => false,
        }
    }

    /// True if the verdict on a peer can depend on its measured RTT (`rtt_max_ms`,
    /// `fastest`, custom filters): the node judges a connection again on each RTT sample
    /// only then.
    pub fn uses_rtt(&self) -> bool {
        match self {
            Filter::RttMax(_) | Filter::Fastest(_) | Filter::Custom(_) => true,
            Filter::All(v) | Filter::Any(v) => v.iter().any(Filter::uses_rtt),
            Filter::Not(f) => f.uses_rtt(),
            _ => false,
        }
    }

    /// True if the filter's verdict can depend on RTT ranks (`fastest`), which the node then
    /// computes before judging.
    pub fn uses_rank(&self) -> bool {
        match self {
            Filter::Fastest(_) | Filter::Custom(_) => true,
            Filter::All(v) | Filter::Any(v) => v.iter().any(Filter::uses_rank),
            Filter::Not(f) => f.uses_rank(),
            _ => false,
        }
    }
}

impl Default for Filter {
    /// Keeps every peer but the node itself.
    fn default() -> Self {
        Filter::NotSelf
    }
}

impl FilterSpec {
    /// The filter this spec describes, or an error naming the key under `root` (e.g.
    /// `peers.filter`).
    pub fn compile(&self, root: &str) -> Result<Filter, FilterError> {
        self.compile_at(root, 0)
    }

    fn compile_at(&self, key: &str, depth: usize) -> Result<Filter, FilterError> {
        let err = |key: String, reason: String| FilterError { key, reason };
        if depth > FILTER_DEPTH_MAX {
            return Err(err(
                key.to_string(),
                format!("filters nest deeper than {FILTER_DEPTH_MAX} levels; flatten them"),
            ));
        }
        let list = |items: &[FilterSpec], name: &str| {
            items
                .iter()
                .enumerate()
                .map(|(i, f)| f.compile_at(&format!("{key}.{name}[{i}]"), depth + 1))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match self {
            FilterSpec::RttMaxMs(ms) => Filter::RttMax(Duration::from_millis(*ms)),
            FilterSpec::Fastest(0) => {
                return Err(err(
                    format!("{key}.fastest"),
                    "must be at least 1 (0 would keep no peer)".into(),
                ));
            }
            FilterSpec::Fastest(k) => Filter::Fastest(*k),
            FilterSpec::ResourcesMin(r) => Filter::ResourcesMin(*r),
            FilterSpec::ResourcesSimilar(f) => {
                if !f.is_finite() || *f < 1.0 {
                    return Err(err(
                        format!("{key}.resources_similar"),
                        format!("{f} is not a factor of at least 1.0 (2.0 keeps half to double)"),
                    ));
                }
                Filter::ResourcesSimilar(*f)
            }
            FilterSpec::UptimeMinS(s) => Filter::UptimeMin(Duration::from_secs(*s)),
            FilterSpec::Regions(r) if r.is_empty() => {
                return Err(err(
                    format!("{key}.regions"),
                    "is empty and would keep no peer; name at least one region".into(),
                ));
            }
            FilterSpec::Regions(r) => Filter::Regions(r.clone()),
            FilterSpec::Executors(e) if e.is_empty() => {
                return Err(err(
                    format!("{key}.executors"),
                    "is empty; name the executors required (e.g. [\"docker\"])".into(),
                ));
            }
            FilterSpec::Executors(e) => Filter::Executors(e.clone()),
            FilterSpec::SameRegion => Filter::SameRegion,
            FilterSpec::HasAddress => Filter::HasAddress,
            FilterSpec::NotSelf => Filter::NotSelf,
            FilterSpec::DenyPrivate => Filter::DenyPrivate,
            FilterSpec::Allow(l) => Filter::Allow(l.compile(&format!("{key}.allow"))?),
            FilterSpec::Deny(l) => Filter::Deny(l.compile(&format!("{key}.deny"))?),
            FilterSpec::All(items) => Filter::All(list(items, "all")?),
            FilterSpec::Any(items) => Filter::Any(list(items, "any")?),
            FilterSpec::Not(inner) => Filter::Not(Box::new(
                inner.compile_at(&format!("{key}.not"), depth + 1)?,
            )),
        })
    }
}

impl ListSpec {
    fn compile(&self, key: &str) -> Result<Allowlist, FilterError> {
        let peers = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse::<PeerId>().map_err(|e| FilterError {
                    key: format!("{key}.peers[{i}]"),
                    reason: format!("{p:?} is not a peer id: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cidrs = self
            .cidrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.parse::<Cidr>().map_err(|e| FilterError {
                    key: format!("{key}.cidrs[{i}]"),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Allowlist::new(cidrs, peers))
    }
}

impl PeerFilter for Filter {
    fn check(&self, me: &LocalView<'_>, c: &Candidate<'_>) -> Verdict {
        match self {
            Filter::RttMax(max) => match c.rtt {
                None => Verdict::Unknown,
                Some(rtt) => Verdict::of(rtt <= *max, || {
                    format!("rtt {} ms above {} ms", rtt.as_millis(), max.as_millis())
                }),
            },
            Filter::Fastest(k) => match c.rtt_rank {
                None => Verdict::Unknown,
                Some(rank) => Verdict::of(rank < *k, || {
                    format!("rtt rank {} not among the fastest {k}", rank + 1)
                }),
            },
            Filter::ResourcesMin(min) => with_advert(c, |a| resources_min(&a.resources, min)),
            Filter::ResourcesSimilar(f) => {
                with_advert(c, |a| resources_similar(me.resources, &a.resources, *f))
            }
            Filter::UptimeMin(min) => with_advert(c, |a| {
                let up = c.now.saturating_since(a.started_at);
                Verdict::of(up >= *min, || {
                    format!("up {} s, below {} s", up.as_secs(), min.as_secs())
                })
            }),
            Filter::Regions(regions) => with_advert(c, |a| {
                let ok = a
                    .region
                    .as_deref()
                    .is_some_and(|r| regions.iter().any(|x| x == r));
                Verdict::of(ok, || format!("region {:?} not listed", a.region))
            }),
            Filter::Executors(wanted) => with_advert(c, |a| {
                match wanted.iter().find(|w| !a.executors.contains(w)) {
                    None => Verdict::Pass,
                    Some(w) => Verdict::fail(format!("no executor {w:?}")),
                }
            }),
            Filter::SameRegion => with_advert(c, |a| {
                let ok = me.region.is_some() && a.region.as_deref() == me.region;
                Verdict::of(ok, || {
                    format!("region {:?} is not {:?}", a.region, me.region)
                })
            }),
            Filter::HasAddress => with_advert(c, |a| {
                Verdict::of(!a.listen_addrs.is_empty(), || "no address".into())
            }),
            Filter::NotSelf => Verdict::of(c.peer != me.peer, || "itself".into()),
            Filter::DenyPrivate => with_advert(c, |a| {
                let public = a.listen_addrs.iter().any(|addr| is_public_addr(addr));
                Verdict::of(public, || "no public address".into())
            }),
            Filter::Allow(list) => {
                if list.allows_peer(&c.peer) {
                    return Verdict::Pass;
                }
                with_advert(c, |a| {
                    let ok = a
                        .listen_addrs
                        .iter()
                        .any(|addr| addr_ip(addr).is_some_and(|ip| list.allows_addr(ip)));
                    Verdict::of(ok, || "not in the allow list".into())
                })
            }
            Filter::Deny(list) => {
                if list.allows_peer(&c.peer) {
                    return Verdict::fail("peer id in the deny list");
                }
                with_advert(c, |a| {
                    let hit = a
                        .listen_addrs
                        .iter()
                        .any(|addr| addr_ip(addr).is_some_and(|ip| list.allows_addr(ip)));
                    Verdict::of(!hit, || "address in the deny list".into())
                })
            }
            Filter::All(items) => {
                let mut unknown = false;
                for f in items {
                    match f.check(me, c) {
                        Verdict::Fail(r) => return Verdict::Fail(r),
                        Verdict::Unknown => unknown = true,
                        Verdict::Pass => {}
                    }
                }
                if unknown {
                    Verdict::Unknown
                } else {
                    Verdict::Pass
                }
            }
            Filter::Any(items) => {
                let mut unknown = false;
                let mut reasons = Vec::new();
                for f in items {
                    match f.check(me, c) {
                        Verdict::Pass => return Verdict::Pass,
                        Verdict::Unknown => unknown = true,
                        Verdict::Fail(r) => reasons.push(r),
                    }
                }
                if unknown {
                    Verdict::Unknown
                } else {
                    Verdict::Fail(format!("none of: {}", reasons.join("; ")))
                }
            }
            Filter::Not(inner) => match inner.check(me, c) {
                Verdict::Pass => Verdict::fail(format!("matches a negated filter ({inner:?})")),
                Verdict::Fail(_) => Verdict::Pass,
                Verdict::Unknown => Verdict::Unknown,
            },
            Filter::Custom(f) => f.check(me, c),
        }
    }
}

fn with_advert(c: &Candidate<'_>, f: impl FnOnce(&Advert) -> Verdict) -> Verdict {
    c.advert.map_or(Verdict::Unknown, f)
}

fn resources_min(r: &Resources, min: &ResourcesMin) -> Verdict {
    let checks = [
        ("cores", u64::from(r.cores), min.cores.map(u64::from)),
        ("memory_mb", r.memory_mb, min.memory_mb),
        ("disk_gb", r.disk_gb, min.disk_gb),
        ("gpus", u64::from(r.gpus), min.gpus.map(u64::from)),
    ];
    for (name, have, want) in checks {
        if let Some(want) = want
            && have < want
        {
            return Verdict::fail(format!("{name} {have} below {want}"));
        }
    }
    Verdict::Pass
}

fn resources_similar(mine: &Resources, theirs: &Resources, factor: f64) -> Verdict {
    let pairs = [
        ("cores", f64::from(mine.cores), f64::from(theirs.cores)),
        ("memory_mb", mine.memory_mb as f64, theirs.memory_mb as f64),
    ];
    for (name, a, b) in pairs {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        if hi > lo * factor {
            return Verdict::fail(format!("{name} {b} not within {factor}x of {a}"));
        }
    }
    Verdict::Pass
}

/// True for a multiaddr text that is not known to lead to a private address: an IP address
/// outside the private ranges of [`is_private`], or a DNS name other than `localhost`
/// (names are resolved when dialled).
pub fn is_public_addr(addr: &str) -> bool {
    match addr_ip(addr) {
        Some(ip) => !is_private(ip),
        None => {
            let mut parts = addr.split('/').skip(1);
            matches!(
                (parts.next(), parts.next()),
                (Some("dns" | "dns4" | "dns6"), Some(host))
                    if !host.is_empty() && !host.eq_ignore_ascii_case("localhost")
            )
        }
    }
}

/// The IP address of a multiaddr text starting with `/ip4/` or `/ip6/`.
pub fn addr_ip(addr: &str) -> Option<IpAddr> {
    let mut parts = addr.split('/');
    let _ = parts.next();
    match (parts.next(), parts.next()) {
        (Some("ip4" | "ip6"), Some(ip)) => ip.parse::<IpAddr>().ok().map(|ip| ip.to_canonical()),
        _ => None,
    }
}

/// True for addresses a data-centre node should never dial: private (RFC 1918, unique
/// local), shared (RFC 6598), loopback, link-local, unspecified and documentation ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_documentation()
                || a.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests;
