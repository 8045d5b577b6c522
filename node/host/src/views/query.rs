//! Which peers to list and in which order: the query of `GET /peers`, which
//! `flotilla peers` sends from its flags.
//!
//! | parameter | flag | meaning |
//! |---|---|---|
//! | `sort=KEY` | `--sort KEY` | order (see [`PeerSort`]); default `rtt` |
//! | `region=NAME` | `--region NAME` | only peers advertising this region; repeatable, any of them matches |
//! | `rtt_max_ms=N` | `--rtt-max-ms N` | only peers with a measured RTT of at most `N` ms |
//! | `cores_min=N` | `--cores-min N` | only peers advertising at least `N` cores |
//! | `memory_min_mb=N` | `--memory-min-mb N` | only peers advertising at least `N` MiB of memory |
//! | `known=true` | `--known` | every peer in the table, not only connected ones |
//!
//! A peer that has not advertised a value, or whose RTT was never measured, fails every
//! filter on that value.

use std::cmp::Ordering;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::PeerView;

/// The parameters [`PeerQuery::from_pairs`] accepts.
pub const PARAMS: [&str; 6] = [
    "sort",
    "region",
    "rtt_max_ms",
    "cores_min",
    "memory_min_mb",
    "known",
];

/// The order of a peer list. Whatever the key, peers lacking the value come last, and ties
/// are broken by RTT (unmeasured last), then by peer id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerSort {
    /// Smoothed RTT, lowest first.
    #[default]
    Rtt,
    /// Advertised region, by name.
    Region,
    /// Advertised cores, most first.
    Cores,
    /// Advertised memory, most first.
    Memory,
    /// Time since the peer started, longest first.
    Uptime,
    /// Peer id, as printed.
    Peer,
}

impl PeerSort {
    /// Every key, in the order of the documentation.
    pub const ALL: [PeerSort; 6] = [
        PeerSort::Rtt,
        PeerSort::Region,
        PeerSort::Cores,
        PeerSort::Memory,
        PeerSort::Uptime,
        PeerSort::Peer,
    ];

    /// The key's name in the query and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PeerSort::Rtt => "rtt",
            PeerSort::Region => "region",
            PeerSort::Cores => "cores",
            PeerSort::Memory => "memory",
            PeerSort::Uptime => "uptime",
            PeerSort::Peer => "peer",
        }
    }
}

impl FromStr for PeerSort {
    type Err = QueryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PeerSort::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| QueryError::BadValue {
                param: "sort",
                value: text.to_string(),
                expected: "one of rtt, region, cores, memory, uptime, peer",
            })
    }
}

/// Why a peer query is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A parameter that does not exist.
    #[error(
        "unknown parameter `{0}`; use sort, region, rtt_max_ms, cores_min, memory_min_mb or known"
    )]
    UnknownParam(String),
    /// A value that cannot be read.
    #[error("bad value `{value}` for `{param}`; expected {expected}")]
    BadValue {
        /// The parameter.
        param: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

/// Which peers to list and in which order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerQuery {
    /// The order.
    pub sort: PeerSort,
    /// Regions a listed peer advertises one of; empty for any region.
    pub regions: Vec<String>,
    /// Highest smoothed RTT, in milliseconds.
    pub rtt_max_ms: Option<f64>,
    /// Fewest cores.
    pub cores_min: Option<u32>,
    /// Least memory, in MiB.
    pub memory_min_mb: Option<u64>,
    /// List every peer in the table, not only connected ones.
    pub known: bool,
}

impl PeerQuery {
    /// Reads a query from `(parameter, value)` pairs, as decoded from a URL.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, QueryError> {
        let mut q = PeerQuery::default();
        for (param, value) in pairs {
            match param {
                "sort" => q.sort = value.parse()?,
                "region" => q.regions.push(parse_region(value)?),
                "rtt_max_ms" => q.rtt_max_ms = Some(parse_ms(value)?),
                "cores_min" => q.cores_min = Some(parse_number("cores_min", value)?),
                "memory_min_mb" => q.memory_min_mb = Some(parse_number("memory_min_mb", value)?),
                "known" => {
                    q.known = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("known", value, "true or false")),
                    }
                }
                other => return Err(QueryError::UnknownParam(other.to_string())),
            }
        }
        Ok(q)
    }

    /// The query as `(parameter, value)` pairs, defaults left out; [`PeerQuery::from_pairs`]
    /// reads them back.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if self.sort != PeerSort::default() {
            pairs.push(("sort", self.sort.name().to_string()));
        }
        for region in &self.regions {
            pairs.push(("region", region.clone()));
        }
        if let Some(ms) = self.rtt_max_ms {
            pairs.push(("rtt_max_ms", ms.to_string()));
        }
        if let Some(n) = self.cores_min {
            pairs.push(("cores_min", n.to_string()));
        }
        if let Some(n) = self.memory_min_mb {
            pairs.push(("memory_min_mb", n.to_string()));
        }
        if self.known {
            pairs.push(("known", "true".to_string()));
        }
        pairs
    }

    /// Whether `peer` passes every filter.
    pub fn matches(&self, peer: &PeerView) -> bool {
        let resources = peer.resources;
        (self.known || peer.direction.is_some())
            && (self.regions.is_empty()
                || peer
                    .region
                    .as_ref()
                    .is_some_and(|r| self.regions.contains(r)))
            && self
                .rtt_max_ms
                .is_none_or(|max| peer.rtt_ms.is_some_and(|rtt| rtt <= max))
            && self
                .cores_min
                .is_none_or(|min| resources.is_some_and(|r| r.cores >= min))
            && self
                .memory_min_mb
                .is_none_or(|min| resources.is_some_and(|r| r.memory_mb >= min))
    }

    /// The peers of `peers` that pass every filter, in the query's order.
    pub fn apply(&self, mut peers: Vec<PeerView>) -> Vec<PeerView> {
        peers.retain(|p| self.matches(p));
        let mut keyed: Vec<(String, PeerView)> = peers
            .into_iter()
            .map(|p| (p.peer_id.to_string(), p))
            .collect();
        keyed.sort_by(|(ia, a), (ib, b)| match self.sort {
            PeerSort::Peer => ia.cmp(ib),
            sort => primary(sort, a, b)
                .then_with(|| lowest_first(a.rtt_ms, b.rtt_ms))
                .then_with(|| ia.cmp(ib)),
        });
        keyed.into_iter().map(|(_, p)| p).collect()
    }
}

/// The order by `sort` alone, without the tie-breaks.
fn primary(sort: PeerSort, a: &PeerView, b: &PeerView) -> Ordering {
    let cores = |p: &PeerView| p.resources.map(|r| r.cores);
    let memory = |p: &PeerView| p.resources.map(|r| r.memory_mb);
    match sort {
        PeerSort::Rtt | PeerSort::Peer => lowest_first(a.rtt_ms, b.rtt_ms),
        PeerSort::Region => present_first(a.region.as_ref(), b.region.as_ref(), |x, y| x.cmp(y)),
        PeerSort::Cores => present_first(cores(a), cores(b), |x, y| y.cmp(&x)),
        PeerSort::Memory => present_first(memory(a), memory(b), |x, y| y.cmp(&x)),
        PeerSort::Uptime => present_first(a.uptime_s, b.uptime_s, |x, y| y.cmp(&x)),
    }
}

/// Lowest value first, missing values last.
fn lowest_first(a: Option<f64>, b: Option<f64>) -> Ordering {
    present_first(a, b, |x, y| x.total_cmp(&y))
}

/// Present values in the order of `cmp`, missing values after them.
fn present_first<T>(a: Option<T>, b: Option<T>, cmp: impl FnOnce(T, T) -> Ordering) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => cmp(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn bad(param: &'static str, value: &str, expected: &'static str) -> QueryError {
    QueryError::BadValue {
        param,
        value: value.to_string(),
        expected,
    }
}

/// A region name: not empty.
pub fn parse_region(value: &str) -> Result<String, QueryError> {
    if value.is_empty() {
        return Err(bad("region", value, "a region name such as eu-west"));
    }
    Ok(value.to_string())
}

/// A duration in milliseconds: a finite number, zero or more.
pub fn parse_ms(value: &str) -> Result<f64, QueryError> {
    match value.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => Ok(ms),
        _ => Err(bad(
            "rtt_max_ms",
            value,
            "a number of milliseconds, zero or more (e.g. 80 or 0.5)",
        )),
    }
}

fn parse_number<T: FromStr>(param: &'static str, value: &str) -> Result<T, QueryError> {
    value
        .parse()
        .map_err(|_| bad(param, value, "a whole number, zero or more"))
}

#[cfg(test)]
mod tests;
