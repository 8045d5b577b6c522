//! The `flotilla` command line: `node run`, and clients of a running node's API.
//!
//! Submodules:
//! - [`rcmgr`]: `limits` and `scopes`, the resource manager's limits and usage;
//! - [`resources`]: `onboard`, `offboard` and `resources`, a compute provider's capacity;
//! - [`fetch`]: `fetch`, a peer's artefact fetched by the node;
//! - [`rtt`]: `rtt`, latency tables.

mod fetch;
mod jobs;
mod rcmgr;
mod resources;
mod rtt;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use flotilla_core::PeerId;
use flotilla_node::api::{ErrorReply, PingReply};
use flotilla_node::config::{self, DEFAULT_API, NodeConfig, Overrides};
use flotilla_node::run::Started;
use flotilla_node::views::query::{self, PeerQuery, PeerSort};
use flotilla_node::views::{PeerView, StatusView};
use libp2p::Multiaddr;
use serde::de::DeserializeOwned;

/// How long a client waits for the API (a ping may take up to the driver's ping wait).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A Flotilla peer-to-peer compute node.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version)]
pub struct Cli {
    /// The node's local API: where `node run` serves it (loopback only) and where the
    /// client commands find it [default: 127.0.0.1:7400].
    #[arg(long, global = true, value_name = "HOST:PORT", value_parser = config::parse_socket_addr)]
    pub api: Option<SocketAddr>,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run and manage the node itself.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Show the running node's status.
    Status(Output),
    /// List the running node's connected peers (with --known, every peer it knows), nearest
    /// first or in the order of --sort, optionally filtered.
    Peers(PeersArgs),
    /// Print the resource limits in force: the running node's, or with --config those a
    /// node started with that file would use on this machine.
    Limits {
        /// Read the limits from this configuration file instead of a running node.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        output: Output,
    },
    /// Show the running node's resource usage against its limits: system, transient,
    /// each protocol and service, the top peers, and refusals.
    Scopes {
        /// Peers listed, those holding most first.
        #[arg(long, value_name = "N", default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        output: Output,
    },
    /// Fetch a file a connected peer serves (under its data directory's `artefacts`) into
    /// FILE, resuming from FILE.part and checking its SHA-256.
    Fetch {
        /// The peer serving the file (as listed by `flotilla peers`).
        #[arg(value_parser = parse_peer_id)]
        peer_id: PeerId,
        /// The file's name on the peer, e.g. `job-42/out.tar`.
        name: String,
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Refuse files larger than this many bytes.
        #[arg(long, value_name = "BYTES")]
        max_bytes: Option<u64>,
        #[command(flatten)]
        output: Output,
    },
    /// Measure the round trip to a connected peer.
    Ping {
        /// The peer to ping (as listed by `flotilla peers`).
        #[arg(value_parser = parse_peer_id)]
        peer_id: PeerId,
        #[command(flatten)]
        output: Output,
    },
    /// Print the smoothed RTTs the node (with --from, a connected peer) measured to PEERs;
    /// peers not measured are named below the table.
    Rtt {
        /// The peers asked about (as listed by `flotilla peers`), at most 64.
        #[arg(required = true, value_name = "PEER", value_parser = parse_peer_id)]
        peers: Vec<PeerId>,
        /// Ask this connected peer for its measurements instead of the node itself.
        #[arg(long, value_name = "PEER", value_parser = parse_peer_id)]
        from: Option<PeerId>,
        #[command(flatten)]
        output: Output,
    },
    /// Offer this machine's capacity (or a share of it) to the network as a compute
    /// provider; measures the machine the first time (or with --remeasure). A node running
    /// on the data directory applies it at once; otherwise the next start does.
    Onboard(resources::OnboardArgs),
    /// Offer nothing any more: the onboarded capacity goes back to zero (a running node
    /// refuses while allocations hold some of it, naming them).
    Offboard(resources::DataDirArgs),
    /// Deploy a job: ask providers for bids, commit on the best, start it.
    Deploy(jobs::DeployArgs),
    /// This node's deployments: list, status, logs, shutdown.
    #[command(subcommand)]
    Deployments(jobs::DeploymentsCommand),
    /// Show the capacity this machine registered and the share onboarded, and the running
    /// node's live ledger (allocated, locked, available) and allocations.
    Resources {
        #[command(flatten)]
        dir: resources::DataDirArgs,
        /// Print `{"stored": .., "live": ..}` as JSON: the stored onboarding and the running
        /// node's ledger (each null if absent).
        #[arg(long)]
        json: bool,
    },
}

/// `flotilla node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a node until SIGINT or SIGTERM.
    Run(RunArgs),
}

/// Options of `flotilla node run`; each replaces the config file's setting.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML configuration file (every setting optional).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the node key and local state [default: $XDG_DATA_HOME/flotilla or
    /// $HOME/.local/share/flotilla].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (repeatable) [default: /ip4/0.0.0.0/tcp/4001 and
    /// /ip4/0.0.0.0/udp/4001/quic-v1].
    #[arg(long = "listen", value_name = "MULTIADDR", value_parser = config::parse_multiaddr)]
    pub listen: Vec<Multiaddr>,
    /// Peer to start from, ideally ending in /p2p/<peer id> (repeatable).
    #[arg(long = "bootstrap", value_name = "MULTIADDR", value_parser = config::parse_multiaddr)]
    pub bootstrap: Vec<Multiaddr>,
}

/// Options of `flotilla peers`. A filter drops peers that have not advertised or measured
/// the value it tests.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Order: rtt (lowest first), region (by name), cores, memory, uptime (most or longest
    /// first) or peer (by id); peers lacking the value come last, ties go to the lower RTT.
    #[arg(long, value_name = "KEY", default_value = "rtt", value_parser = parse_sort)]
    pub sort: PeerSort,
    /// Only peers advertising this region (repeatable: any of them).
    #[arg(long = "region", value_name = "NAME", value_parser = parse_region)]
    pub regions: Vec<String>,
    /// Only peers with a smoothed RTT of at most N milliseconds.
    #[arg(long, value_name = "N", value_parser = parse_rtt_ms, allow_negative_numbers = true)]
    pub rtt_max_ms: Option<f64>,
    /// Only peers advertising at least N cores.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub cores_min: Option<u32>,
    /// Only peers advertising at least N MiB of memory.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub memory_min_mb: Option<u64>,
    /// List every peer in the node's table, not only connected ones.
    #[arg(long)]
    pub known: bool,
    #[command(flatten)]
    pub output: Output,
}

impl PeersArgs {
    fn query(&self) -> PeerQuery {
        PeerQuery {
            sort: self.sort,
            regions: self.regions.clone(),
            rtt_max_ms: self.rtt_max_ms,
            cores_min: self.cores_min,
            memory_min_mb: self.memory_min_mb,
            known: self.known,
        }
    }
}

fn parse_sort(text: &str) -> Result<PeerSort, String> {
    text.parse::<PeerSort>().map_err(|_| {
        format!("`{text}` is not a sort key; use one of rtt, region, cores, memory, uptime, peer")
    })
}

fn parse_region(text: &str) -> Result<String, String> {
    query::parse_region(text).map_err(|_| "give a region name such as eu-west".to_string())
}

fn parse_rtt_ms(text: &str) -> Result<f64, String> {
    query::parse_ms(text)
        .map_err(|_| "give a number of milliseconds, zero or more (e.g. 80 or 0.5)".to_string())
}

/// Output format of client commands.
#[derive(Debug, Args)]
pub struct Output {
    /// Print the API's raw JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_peer_id(text: &str) -> Result<PeerId, String> {
    text.parse::<PeerId>()
        .map_err(|e| format!("{e}; copy a peer id from `flotilla peers`"))
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let api = cli.api;
    match cli.command {
        Command::Node(NodeCommand::Run(args)) => node_run(api, args),
        Command::Status(out) => status(&Client::new(api), out.json),
        Command::Peers(args) => peers(&Client::new(api), &args),
        Command::Ping { peer_id, output } => ping(&Client::new(api), peer_id, output.json),
        Command::Fetch {
            peer_id,
            name,
            out,
            max_bytes,
            output,
        } => fetch::fetch(
            &Client::new(api),
            peer_id,
            &name,
            &out,
            max_bytes,
            output.json,
        ),
        Command::Limits { config, output } => {
            rcmgr::limits(&Client::new(api), config.as_deref(), output.json)
        }
        Command::Scopes { top, output } => rcmgr::scopes(&Client::new(api), top, output.json),
        Command::Rtt {
            peers,
            from,
            output,
        } => rtt::rtt(&Client::new(api), &peers, from, output.json),
        Command::Deploy(args) => jobs::deploy(&Client::new(api), &args),
        Command::Deployments(cmd) => jobs::deployments(&Client::new(api), &cmd),
        Command::Onboard(args) => resources::onboard(&args, api),
        Command::Offboard(dir) => resources::offboard(&dir, api),
        Command::Resources { dir, json } => resources::resources(&dir, json, api),
    }
}

fn node_run(api: Option<SocketAddr>, args: RunArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        listen: args.listen,
        bootstrap: args.bootstrap,
        api,
    };
    let config = NodeConfig::load(args.config.as_deref(), overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(flotilla_node::run::run(
        config,
        shutdown_signal(),
        print_started,
    ))?;
    Ok(())
}

/// Prints the start-up lines that scripts and tests read, and flushes them.
fn print_started(s: &Started) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "peer id: {}", s.peer_id);
    for addr in &s.listen_addrs {
        let _ = writeln!(out, "listen: {addr}");
    }
    let _ = writeln!(out, "api: http://{}", s.api);
    let _ = out.flush();
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The error an unsuccessful API answer stands for: its [`ErrorReply`], or the status.
fn api_error(status: ureq::http::StatusCode, body: &str, url: &str) -> anyhow::Error {
    match serde_json::from_str::<ErrorReply>(body) {
        Ok(e) => anyhow::anyhow!("{}", e.error),
        Err(_) => anyhow::anyhow!("the node API answered {status} to {url}"),
    }
}

/// A blocking client of the node API.
struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(api: Option<SocketAddr>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(CLIENT_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            base: format!("http://{}", api.unwrap_or(DEFAULT_API)),
            agent,
        }
    }

    /// Sends a request with `query` parameters; returns the raw body of a successful answer.
    fn call_with(
        &self,
        post: bool,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let pairs = query.iter().map(|(k, v)| (*k, v.as_str()));
        let sent = if post {
            self.agent.post(&url).query_pairs(pairs).send_empty()
        } else {
            self.agent.get(&url).query_pairs(pairs).call()
        };
        self.answer(&url, sent)
    }

    /// The body of a successful answer to a request sent to `url`, or why there is none:
    /// the node could not be reached, or it answered with an error.
    fn answer(
        &self,
        url: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<String> {
        let mut response = sent.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the node API at {}: is `flotilla node run` running? ({e})",
                self.base
            )
        })?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {url}"))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(api_error(status, &body, url))
    }

    /// Posts `body` as text with `query` parameters; returns the raw body of a successful
    /// answer.
    fn post_text(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &str,
    ) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let pairs = query.iter().map(|(k, v)| (*k, v.as_str()));
        let sent = self
            .agent
            .post(&url)
            .query_pairs(pairs)
            .content_type("text/plain; charset=utf-8")
            .send(body);
        self.answer(&url, sent)
    }

    /// Puts `body` as JSON; returns the raw body of a successful answer.
    fn put_json<B: serde::Serialize>(&self, path: &str, body: &B) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let sent = self.agent.put(&url).send_json(body);
        self.answer(&url, sent)
    }

    fn json<T: DeserializeOwned>(&self, post: bool, path: &str) -> anyhow::Result<(T, String)> {
        self.json_with(post, path, &[])
    }

    fn json_with<T: DeserializeOwned>(
        &self,
        post: bool,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<(T, String)> {
        let body = self.call_with(post, path, query)?;
        let value = serde_json::from_str(&body)
            .with_context(|| format!("unexpected answer from {}{path}", self.base))?;
        Ok((value, body))
    }
}

fn status(client: &Client, json: bool) -> anyhow::Result<()> {
    let (s, raw): (StatusView, _) = client.json(false, "/status")?;
    if json {
        println!("{raw}");
        return Ok(());
    }
    println!("peer id:    {}", s.peer_id);
    println!("protocol:   {}", s.protocol_version);
    println!("uptime:     {}", uptime(s.uptime_s));
    println!("connected:  {}", s.connected);
    println!("known:      {}", s.known);
    println!("dialing:    {}", s.dialing);
    for (i, addr) in s.listen_addrs.iter().enumerate() {
        println!(
            "{}{addr}/p2p/{}",
            if i == 0 {
                "listening:  "
            } else {
                "            "
            },
            s.peer_id
        );
    }
    Ok(())
}

fn uptime(s: u64) -> String {
    match (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, sec) => format!("{sec}s"),
        (0, 0, m, sec) => format!("{m}m {sec}s"),
        (0, h, m, sec) => format!("{h}h {m}m {sec}s"),
        (d, h, m, _) => format!("{d}d {h}h {m}m"),
    }
}

fn peers(client: &Client, args: &PeersArgs) -> anyhow::Result<()> {
    let query = args.query();
    let (peers, raw): (Vec<PeerView>, _) = client.json_with(false, "/peers", &query.to_pairs())?;
    if args.output.json {
        println!("{raw}");
        return Ok(());
    }
    let rows: Vec<[String; 9]> = peers.iter().map(peer_row).collect();
    let header = [
        "PEER ID",
        "DIR",
        "RTT MS",
        "JITTER MS",
        "REGION",
        "RESOURCES",
        "UPTIME",
        "SOURCE",
        "HOPS",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    if rows.is_empty() {
        let filtered = PeerQuery {
            sort: query.sort,
            known: query.known,
            ..PeerQuery::default()
        } != query;
        match (filtered, query.known) {
            (true, _) => println!("(no peer matches the filters)"),
            (false, true) => println!("(no peers known yet)"),
            (false, false) => println!("(no peers connected; --known lists every peer known)"),
        }
    }
    Ok(())
}

fn peer_row(p: &PeerView) -> [String; 9] {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let resources = p.resources.map_or("-".to_string(), |r| {
        format!("{}c/{}M/{}G/{}gpu", r.cores, r.memory_mb, r.disk_gb, r.gpus)
    });
    [
        p.peer_id.to_string(),
        p.direction.map_or("-", |d| d.label()).to_string(),
        ms(p.rtt_ms),
        ms(p.jitter_ms),
        p.region.clone().unwrap_or_else(|| "-".to_string()),
        resources,
        p.uptime_s.map_or("-".to_string(), uptime),
        p.source.label().to_string(),
        p.hops.to_string(),
    ]
}

fn ping(client: &Client, peer: PeerId, json: bool) -> anyhow::Result<()> {
    let (reply, raw): (PingReply, _) = client.json(true, &format!("/ping/{peer}"))?;
    if json {
        println!("{raw}");
    } else {
        println!("pong from {peer}: rtt {:.2} ms", reply.rtt_ms);
    }
    Ok(())
}
