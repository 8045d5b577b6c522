//! The node's configuration: an optional TOML file, overridden by command-line flags.
//!
//! Every setting has a default, so a node runs without any file. The file looks like this
//! (all keys optional; durations are whole seconds, units last in the name):
//!
//! ```toml
//! data_dir = "/var/lib/flotilla"
//! listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
//! bootstrap = ["/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW..."]
//! api = "127.0.0.1:7400"
//! region = "eu-west"
//!
//! [resources]
//! cores = 8
//! memory_mb = 16384
//! executors = ["docker"]
//!
//! # Jobs, as a compute provider (needs executors above and onboarded capacity:
//! # `flotilla onboard`). Without `requesters` any peer may deploy here.
//! [jobs]
//! price_micros_per_core_hour = 50000  # 0.05 per core-hour
//! requesters = ["12D3KooW..."]        # only these peers may deploy; others are refused
//! ports = "31000-31999"               # host ports handed to jobs
//! queue_max = 16                      # jobs accepted but not yet started, at most
//! commit_timeout_s = 30               # an accepted job not started by then is released
//! duration_s_min = 0                  # shorter jobs get no bid
//! # As a service provider: jobs with constraints.rtt_max_ms have their workers' RTTs
//! # checked this often, and a worker breaking the bound this long is replaced.
//! rtt_check_s = 10
//! rtt_replace_after_s = 30
//!
//! # Peers: watermarks and filters. A profile (small, standard, data-centre) sets
//! # watermarks, dial concurrency and a filter; the keys below override it.
//! [peers]
//! profile = "standard"
//! low_watermark = 8        # dial known peers up to this many connections
//! high_watermark = 32      # never more; reaching it trims back to low_watermark
//! conn_grace_s = 30        # new connections are not trimmed for this long
//! trim_quiet_s = 10        # shortest time between two trims
//! pressure_per_mille = 900 # trim early at 90% of limits.system.conns
//! ping_interval_s = 15
//!
//! # Which peers to keep company with (see flotilla_core::filter for every filter).
//! [peers.filter]
//! all = [{ rtt_max_ms = 80 }, { resources_min = { cores = 4 } }, "has_address"]
//!
//! # Finding peers outside the core protocol. Pools are named sets of providers found
//! # through the DHT (names: 1-64 characters of a-z, 0-9, `-`, `_`, `.`; 16 at most per
//! # key). `mdns` finds nodes on the local link; it is off unless set here, and a
//! # data-centre node keeps it off (profile = "data-centre" refuses mdns = true).
//! [discovery]
//! pools = ["gpu-a100"]        # pools this node provides in
//! find_pools = ["gpu-h100"]   # pools whose providers this node wants as peers
//! mdns = false
//!
//! # Resource limits: partial overrides of the machine-scaled defaults, per scope kind
//! # (system, transient, allowlisted_system, allowlisted_transient, service,
//! # service_peer, protocol, protocol_peer, peer, connection, stream) or per named
//! # protocol or service; each value a number, "unlimited", "block" or "default".
//! [limits.system]
//! conns_in = 256
//! memory = 536870912
//!
//! [limits.protocols."/flotilla/core/1.0.0"]
//! streams_in = 512
//!
//! [limits.inbound]
//! conns_per_subnet = 8
//!
//! # Addresses and peers always let in, on a budget of their own when the normal one is
//! # full; the inbound gate does not apply to these addresses.
//! [allowlist]
//! cidrs = ["10.0.0.0/8", "192.0.2.7"]
//! peers = ["12D3KooW..."]
//! ```
//!
//! Errors name the file, the line and the problem, and say what to change.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_core::Resources;
use flotilla_core::connmgr::{ConnManagerConfig, ConnManagerError};
use flotilla_core::filter::FilterSpec;
use flotilla_core::rcmgr::{Allowlist, Cidr, Limits, LimitsConfig, LimitsError};
use libp2p::Multiaddr;
use serde::{Deserialize, Deserializer};

use crate::p2p::discovery::{DiscoveryConfig, POOLS_MAX, PoolName};
use crate::rcmgr::Machine;

/// Addresses listened on when neither the file nor the command line name any.
pub const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"];
/// Port of the local HTTP API when none is configured.
pub const DEFAULT_API_PORT: u16 = 7400;
/// The default address of the local HTTP API.
pub const DEFAULT_API: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_API_PORT);

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}; check the path given to --config")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The file is not valid TOML or has a bad or unknown setting.
    #[error(
        "{path}:{line}:{column}: {message}; fix or delete this setting (every setting is optional)"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The settings do not fit together.
    #[error("{origin}: invalid setting `[peers] {key}`: {problem}; change it or remove it")]
    Invalid {
        /// The file (with the line of the setting when it is in the file), or
        /// `command line` when no file was given.
        origin: String,
        /// The setting to change, as named in the file.
        key: String,
        /// What is wrong.
        problem: flotilla_core::ConfigError,
    },
    /// A resource limit can never be satisfied.
    #[error("{origin}: invalid setting `{key}`: {problem}")]
    Limits {
        /// The file with the line of the setting (or of its table) when found, or
        /// `command line` when no file was given.
        origin: String,
        /// The setting, e.g. `limits.peer.memory`.
        key: String,
        /// What is wrong and what to write instead.
        problem: LimitsError,
    },
    /// A setting outside `[limits]` is unusable, or settings contradict each other.
    #[error("{origin}: invalid setting `{key}`: {problem}")]
    Setting {
        /// The file with the line of the setting when found, or `command line`.
        origin: String,
        /// The setting, e.g. `peers.filter.all[1].deny.cidrs[0]`.
        key: String,
        /// What is wrong and what to change.
        problem: String,
    },
    /// No data directory was given and none could be derived from the environment.
    #[error(
        "no data directory: pass --data-dir DIR, set `data_dir` in the config file, or set $HOME"
    )]
    NoDataDir,
    /// The API address is not a loopback address.
    #[error(
        "the API address {0} is not a loopback address; the API has no authentication, so bind it \
         to 127.0.0.1 or [::1] (e.g. --api 127.0.0.1:{DEFAULT_API_PORT})"
    )]
    ApiNotLoopback(SocketAddr),
}

/// Values given on the command line; each one replaces the file's.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`, repeated.
    pub listen: Vec<Multiaddr>,
    /// `--bootstrap`, repeated.
    pub bootstrap: Vec<Multiaddr>,
    /// `--api`.
    pub api: Option<SocketAddr>,
}

/// The resolved configuration of a production node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the key and local state live.
    pub data_dir: PathBuf,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to start from (with or without `/p2p/<id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// The local HTTP API address (loopback).
    pub api: SocketAddr,
    /// The core's settings; `listen_addrs` and `bootstrap` are filled in at start-up.
    pub core: flotilla_core::Config,
    /// The machine the default limits were scaled to.
    pub machine: Machine,
    /// The resource limits in force: the machine's defaults with `[limits]` applied.
    pub limits: Limits,
    /// Addresses and peers always let in (`[allowlist]`).
    pub allowlist: Allowlist,
    /// Pools provided in and looked for, and mDNS (`[discovery]`).
    pub discovery: DiscoveryConfig,
}

/// The file's layout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<Vec<Addr>>,
    bootstrap: Option<Vec<Addr>>,
    api: Option<ApiAddr>,
    region: Option<String>,
    #[serde(default)]
    resources: ResourcesSection,
    #[serde(default)]
    peers: PeersSection,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    allowlist: AllowlistSection,
    #[serde(default)]
    discovery: DiscoverySection,
    #[serde(default)]
    jobs: JobsSection,
}

/// `[jobs]`: what this node accepts as a compute provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsSection {
    price_micros_per_core_hour: Option<u64>,
    requesters: Option<Vec<PeerText>>,
    ports: Option<String>,
    queue_max: Option<usize>,
    commit_timeout_s: Option<u64>,
    duration_s_min: Option<u64>,
    rtt_check_s: Option<u64>,
    rtt_replace_after_s: Option<u64>,
}

/// `[discovery]`: pools in the DHT and mDNS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscoverySection {
    #[serde(default, deserialize_with = "pools_key")]
    pools: Vec<PoolName>,
    #[serde(default, deserialize_with = "find_pools_key")]
    find_pools: Vec<PoolName>,
    mdns: Option<bool>,
}

fn pools_key<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PoolName>, D::Error> {
    pool_names(d, "pools")
}

fn find_pools_key<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PoolName>, D::Error> {
    pool_names(d, "find_pools")
}

/// A list of pool names set by `[discovery] key`, without repeats.
fn pool_names<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Vec<PoolName>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    let mut names: Vec<PoolName> = Vec::new();
    for text in &texts {
        let name = text
            .parse::<PoolName>()
            .map_err(|e| serde::de::Error::custom(format!("invalid `[discovery] {key}`: {e}")))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.len() > POOLS_MAX {
        return Err(serde::de::Error::custom(format!(
            "invalid `[discovery] {key}`: {} pools named, at most {POOLS_MAX} are allowed; \
             name fewer",
            names.len()
        )));
    }
    Ok(names)
}

/// `[allowlist]`: address ranges and peer ids always let in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowlistSection {
    #[serde(default)]
    cidrs: Vec<CidrText>,
    #[serde(default)]
    peers: Vec<PeerText>,
}

/// An address range read from text.
#[derive(Debug, Clone, Copy)]
struct CidrText(Cidr);

impl<'de> Deserialize<'de> for CidrText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<Cidr>()
            .map(CidrText)
            .map_err(serde::de::Error::custom)
    }
}

/// A peer id read from text.
#[derive(Debug, Clone, Copy)]
struct PeerText(flotilla_core::PeerId);

impl<'de> Deserialize<'de> for PeerText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<flotilla_core::PeerId>()
            .map(PeerText)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a peer id ({e}); write one as `flotilla status` prints it"
                ))
            })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesSection {
    cores: Option<u32>,
    memory_mb: Option<u64>,
    disk_gb: Option<u64>,
    gpus: Option<u32>,
    executors: Option<Vec<String>>,
}

/// `[peers]`: the core's connection and protocol settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersSection {
    low_watermark: Option<usize>,
    high_watermark: Option<usize>,
    dials_concurrent_max: Option<usize>,
    peers_known_max: Option<usize>,
    maintain_interval_s: Option<u64>,
    ping_interval_s: Option<u64>,
    ping_timeout_s: Option<u64>,
    ping_failures_max: Option<u32>,
    exchange_interval_s: Option<u64>,
    exchange_peers_max: Option<u16>,
    exchange_hops_max: Option<u8>,
    advert_ttl_s: Option<u64>,
    advert_refresh_s: Option<u64>,
    dial_backoff_base_s: Option<u64>,
    dial_backoff_max_s: Option<u64>,
    dial_failures_max: Option<u32>,
    profile: Option<flotilla_core::Profile>,
    conn_grace_s: Option<u64>,
    trim_quiet_s: Option<u64>,
    pressure_per_mille: Option<u16>,
    filter: Option<FilterSpec>,
}

/// A multiaddr read from text, with an error message that shows the expected form.
#[derive(Debug, Clone)]
struct Addr(Multiaddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_multiaddr(&text)
            .map(Addr)
            .map_err(serde::de::Error::custom)
    }
}

/// A loopback socket address read from text.
#[derive(Debug, Clone, Copy)]
struct ApiAddr(SocketAddr);

impl<'de> Deserialize<'de> for ApiAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let addr = parse_socket_addr(&text).map_err(serde::de::Error::custom)?;
        check_loopback(addr)
            .map(ApiAddr)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a multiaddr, explaining the expected form on failure.
pub fn parse_multiaddr(text: &str) -> Result<Multiaddr, String> {
    text.parse::<Multiaddr>().map_err(|e| {
        format!("`{text}` is not a multiaddr ({e}); write it like /ip4/192.0.2.7/tcp/4001")
    })
}

/// Parses `HOST:PORT`; `localhost` stands for 127.0.0.1.
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    let resolved = match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => text.to_string(),
    };
    resolved.parse::<SocketAddr>().map_err(|_| {
        format!("`{text}` is not HOST:PORT; write it like 127.0.0.1:{DEFAULT_API_PORT}")
    })
}

/// Accepts only loopback addresses for the API.
pub fn check_loopback(addr: SocketAddr) -> Result<SocketAddr, ConfigError> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(ConfigError::ApiNotLoopback(addr))
    }
}

/// The default data directory: `$XDG_DATA_HOME/flotilla`, else `$HOME/.local/share/flotilla`.
pub fn default_data_dir() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return Some(PathBuf::from(xdg).join("flotilla"));
    }
    non_empty("HOME").map(|h| PathBuf::from(h).join(".local/share/flotilla"))
}

impl NodeConfig {
    /// Reads `path` (if given) and applies `overrides`; limits scale with this machine
    /// ([`Machine::probe`]).
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        Self::load_on(path, overrides, Machine::probe())
    }

    /// Reads `path` (if given) and applies `overrides`, with limits scaled to `machine`.
    pub fn load_on(
        path: Option<&Path>,
        overrides: Overrides,
        machine: Machine,
    ) -> Result<Self, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.to_path_buf(),
                    cause,
                })?;
                Self::from_toml_on(&text, path, overrides, machine)
            }
            None => Self::resolve(FileConfig::default(), None, overrides, machine),
        }
    }

    /// Parses `text`, read from `path`, and applies `overrides`; limits scale with this
    /// machine.
    pub fn from_toml(text: &str, path: &Path, overrides: Overrides) -> Result<Self, ConfigError> {
        Self::from_toml_on(text, path, overrides, Machine::probe())
    }

    /// Parses `text`, read from `path`, and applies `overrides`, with limits scaled to
    /// `machine`.
    pub fn from_toml_on(
        text: &str,
        path: &Path,
        overrides: Overrides,
        machine: Machine,
    ) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })?;
        Self::resolve(file, Some((path, text)), overrides, machine)
    }

    /// Applies defaults and `o` to `file`, read from `source` (path and text) if any.
    fn resolve(
        file: FileConfig,
        source: Option<(&Path, &str)>,
        o: Overrides,
        machine: Machine,
    ) -> Result<Self, ConfigError> {
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .or_else(default_data_dir)
            .ok_or(ConfigError::NoDataDir)?;
        let listen = match (o.listen, file.listen) {
            (cli, _) if !cli.is_empty() => cli,
            (_, Some(f)) => f.into_iter().map(|a| a.0).collect(),
            (_, None) => DEFAULT_LISTEN
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };
        let bootstrap = match (o.bootstrap, file.bootstrap) {
            (cli, _) if !cli.is_empty() => cli,
            (_, f) => f.unwrap_or_default().into_iter().map(|a| a.0).collect(),
        };
        let api = match o.api {
            Some(a) => check_loopback(a)?,
            None => file.api.map_or(DEFAULT_API, |a| a.0),
        };
        let mut core = flotilla_core::Config {
            region: file.region,
            resources: resources(&file.resources),
            ..flotilla_core::Config::default()
        };
        core.executors = file.resources.executors.clone().unwrap_or_default();
        apply_jobs(&mut core, &file.jobs, source)?;
        apply_peers(&mut core, &file.peers);
        if let Some(spec) = &file.peers.filter {
            core.filter = spec
                .compile("peers.filter")
                .map_err(|e| ConfigError::Setting {
                    origin: origin_of(source, "peers.filter"),
                    key: e.key,
                    problem: e.reason,
                })?;
        }
        core.validate().map_err(|e| invalid(e, source))?;
        let limits = machine
            .default_limits()
            .with_overrides(&file.limits)
            .map_err(|e| invalid_limits(e, source))?;
        ConnManagerConfig {
            low_watermark: core.low_watermark,
            high_watermark: core.high_watermark,
            grace: core.conn_grace,
            quiet: core.trim_quiet,
            pressure_per_mille: core.pressure_per_mille,
        }
        .validate(&limits)
        .map_err(|e| {
            let key = match &e {
                ConnManagerError::AboveLimit { .. } | ConnManagerError::Watermarks { .. } => {
                    "peers.high_watermark"
                }
                ConnManagerError::Pressure(_) => "peers.pressure_per_mille",
            };
            ConfigError::Setting {
                origin: origin_of(source, key),
                key: key.to_string(),
                problem: e.to_string(),
            }
        })?;
        let allowlist = Allowlist::new(
            file.allowlist.cidrs.iter().map(|c| c.0),
            file.allowlist.peers.iter().map(|p| p.0),
        );
        if file.peers.profile == Some(flotilla_core::Profile::DataCentre)
            && file.discovery.mdns == Some(true)
        {
            return Err(ConfigError::Setting {
                origin: origin_of(source, "discovery.mdns"),
                key: "discovery.mdns".into(),
                problem: "a data-centre node never looks for peers on the local link (profile = \"data-centre\" in [peers]); remove `mdns = true` or choose another profile".into(),
            });
        }
        let discovery = DiscoveryConfig {
            pools: file.discovery.pools,
            find_pools: file.discovery.find_pools,
            mdns: file.discovery.mdns.unwrap_or(false),
            ..DiscoveryConfig::default()
        };
        Ok(NodeConfig {
            data_dir,
            listen,
            bootstrap,
            api,
            core,
            machine,
            limits,
            allowlist,
            discovery,
        })
    }
}

fn resources(r: &ResourcesSection) -> Resources {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Resources {
        cores: r.cores.unwrap_or(u32::try_from(cores).unwrap_or(u32::MAX)),
        memory_mb: r.memory_mb.unwrap_or(0),
        disk_gb: r.disk_gb.unwrap_or(0),
        gpus: r.gpus.unwrap_or(0),
    }
}

/// `[jobs]` into the core's jobs settings; the executors are `[resources] executors`.
fn apply_jobs(
    c: &mut flotilla_core::Config,
    j: &JobsSection,
    source: Option<(&Path, &str)>,
) -> Result<(), ConfigError> {
    let jobs = &mut c.jobs;
    jobs.preferences.executors = c.executors.iter().cloned().collect();
    jobs.preferences.region.clone_from(&c.region);
    if let Some(p) = j.price_micros_per_core_hour {
        jobs.preferences.price_micros_per_core_hour = p;
    }
    if let Some(d) = j.duration_s_min {
        jobs.preferences.duration_s_min = d;
    }
    if let Some(list) = &j.requesters {
        jobs.requesters =
            flotilla_core::jobs::RequesterPolicy::Only(list.iter().map(|p| p.0).collect());
    }
    if let Some(text) = &j.ports {
        jobs.ports = text
            .parse::<flotilla_core::ports::PortRange>()
            .map_err(|e| ConfigError::Setting {
                origin: origin_of(source, "jobs.ports"),
                key: "jobs.ports".into(),
                problem: format!("{e}; write e.g. ports = \"31000-31999\""),
            })?;
    }
    if let Some(q) = j.queue_max {
        jobs.queue_max = q;
    }
    if let Some(s) = j.commit_timeout_s {
        if s == 0 {
            return Err(ConfigError::Setting {
                origin: origin_of(source, "jobs.commit_timeout_s"),
                key: "jobs.commit_timeout_s".into(),
                problem: "jobs.commit_timeout_s = 0 would release every job before it starts; \
                          write at least 1 (default 30)"
                    .into(),
            });
        }
        jobs.commit_timeout = Duration::from_secs(s);
    }
    if let Some(s) = j.rtt_check_s {
        if s == 0 {
            return Err(ConfigError::Setting {
                origin: origin_of(source, "jobs.rtt_check_s"),
                key: "jobs.rtt_check_s".into(),
                problem: "jobs.rtt_check_s = 0 would ask the workers without pause; \
                          write at least 1 (default 10)"
                    .into(),
            });
        }
        jobs.rtt.check_every = Duration::from_secs(s);
    }
    if let Some(s) = j.rtt_replace_after_s {
        jobs.rtt.replace_after = Duration::from_secs(s);
    }
    Ok(())
}

fn apply_peers(c: &mut flotilla_core::Config, p: &PeersSection) {
    fn set<T: Copy>(target: &mut T, value: Option<T>) {
        if let Some(v) = value {
            *target = v;
        }
    }
    fn set_s(target: &mut Duration, value: Option<u64>) {
        if let Some(s) = value {
            *target = Duration::from_secs(s);
        }
    }
    if let Some(profile) = p.profile {
        profile.apply(c);
    }
    set(&mut c.low_watermark, p.low_watermark);
    set(&mut c.high_watermark, p.high_watermark);
    set(&mut c.dials_concurrent_max, p.dials_concurrent_max);
    set(&mut c.peers_known_max, p.peers_known_max);
    set_s(&mut c.maintain_interval, p.maintain_interval_s);
    set_s(&mut c.ping_interval, p.ping_interval_s);
    set_s(&mut c.ping_timeout, p.ping_timeout_s);
    set(&mut c.ping_failures_max, p.ping_failures_max);
    set_s(&mut c.exchange_interval, p.exchange_interval_s);
    set(&mut c.exchange_peers_max, p.exchange_peers_max);
    set(&mut c.exchange_hops_max, p.exchange_hops_max);
    set_s(&mut c.advert_ttl, p.advert_ttl_s);
    set_s(&mut c.advert_refresh, p.advert_refresh_s);
    set_s(&mut c.dial_backoff_base, p.dial_backoff_base_s);
    set_s(&mut c.dial_backoff_max, p.dial_backoff_max_s);
    set(&mut c.dial_failures_max, p.dial_failures_max);
    set_s(&mut c.conn_grace, p.conn_grace_s);
    set_s(&mut c.trim_quiet, p.trim_quiet_s);
    set(&mut c.pressure_per_mille, p.pressure_per_mille);
}

/// Core settings that are durations, written `NAME_s` in the file.
const DURATION_KEYS: [&str; 8] = [
    "maintain_interval",
    "ping_interval",
    "ping_timeout",
    "exchange_interval",
    "advert_ttl",
    "advert_refresh",
    "dial_backoff_base",
    "dial_backoff_max",
];

/// Names the file key behind a core validation error, and its line when it is in the file.
fn invalid(error: flotilla_core::ConfigError, source: Option<(&Path, &str)>) -> ConfigError {
    use flotilla_core::ConfigError as E;
    let name = match &error {
        E::Zero(name) | E::Order(name, _) | E::ZeroDuration(name) | E::Share(name) => *name,
    };
    // Durations carry their unit in the file.
    let key = if DURATION_KEYS.contains(&name) {
        format!("{name}_s")
    } else {
        name.to_string()
    };
    let origin = match source {
        None => "command line".to_string(),
        Some((path, text)) => match key_line(text, &key) {
            Some(line) => format!("{}:{line}", path.display()),
            None => path.display().to_string(),
        },
    };
    ConfigError::Invalid {
        origin,
        key,
        problem: error,
    }
}

/// The file and line that set the dotted `key` (or its table), `command line` without a file.
fn origin_of(source: Option<(&Path, &str)>, key: &str) -> String {
    match source {
        None => "command line".to_string(),
        Some((path, text)) => match text
            .lines()
            // A table of its own, `[peers.filter]`, else the key in its table.
            .position(|l| l.trim() == format!("[{key}]"))
            .map(|i| i + 1)
            .or_else(|| table_key_line(text, key))
        {
            Some(line) => format!("{}:{line}", path.display()),
            None => path.display().to_string(),
        },
    }
}

/// Names the file and line behind a limits validation error.
fn invalid_limits(error: LimitsError, source: Option<(&Path, &str)>) -> ConfigError {
    let key = match &error {
        LimitsError::ChildAboveParent { key, .. } => key.clone(),
        LimitsError::Prefix { key, .. } => key.to_string(),
    };
    ConfigError::Limits {
        origin: origin_of(source, &key),
        key,
        problem: error,
    }
}

/// The 1-based line that sets the dotted `key` (e.g. `limits.peer.memory` or
/// `limits.protocols."/x".streams`): the key's line in its table, or in a parent table as
/// a dotted or inline key, else the line of its table's header.
fn table_key_line(text: &str, key: &str) -> Option<usize> {
    let (table, field) = key.rsplit_once('.')?;
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let mut header = String::new();
    let mut header_line = None;
    for (i, line) in text.lines().enumerate() {
        let l = squash(line.split('#').next().unwrap_or(""));
        if let Some(h) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            header = h.to_string();
            if header == table {
                header_line = Some(i + 1);
            }
            continue;
        }
        if header == table && l.starts_with(&format!("{field}=")) {
            return Some(i + 1);
        }
        // `[limits]` with `peer.memory = ..` or `peer = { memory = .. }`.
        if let Some(rest) = table.strip_prefix(&format!("{header}."))
            && (l.starts_with(&format!("{rest}.{field}="))
                || (l.starts_with(&format!("{rest}={{")) && l.contains(&format!("{field}="))))
        {
            return Some(i + 1);
        }
    }
    header_line
}

/// The 1-based line on which `key` is set in `text`.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
