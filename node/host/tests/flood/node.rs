//! The node under attack: one `flotilla node run` process on loopback, its HTTP API, its
//! `/metrics` resource-manager families and its memory as `/proc/<pid>/status` tells it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_node::api::TOP_PEERS_MAX;
use flotilla_node::rcmgr::views::{LimitsRow, ScopesView, UsageView};
use flotilla_node::views::StatusView;
use libp2p::{Multiaddr, PeerId};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
/// How long the node may take to print its start-up lines.
const START_WAIT: Duration = Duration::from_secs(20);
/// How long one API request may take before it counts as unanswered.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Period of the memory sampler.
const RSS_PERIOD: Duration = Duration::from_millis(100);
/// Period of the API prober.
const PROBE_PERIOD: Duration = Duration::from_millis(250);

/// A running node, killed when dropped.
#[derive(Debug)]
pub struct NodeProc {
    child: Child,
    /// The node's peer id.
    pub peer_id: PeerId,
    /// Its TCP listen address, without `/p2p/`.
    pub tcp: Multiaddr,
    /// `HOST:PORT` of its HTTP API.
    pub api: String,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl NodeProc {
    /// Starts a node on 127.0.0.1 (TCP only, port 0) with `config` as its TOML file and
    /// waits for its start-up lines.
    pub fn start(config: &str) -> anyhow::Result<NodeProc> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("node.toml");
        std::fs::write(&path, config)?;
        let stderr = dir.path().join("stderr.log");
        let mut child = Command::new(BIN)
            .args(["node", "run", "--config"])
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::sync_channel(64);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut peer, mut tcp, mut api) = (None, None, None);
        let deadline = Instant::now() + START_WAIT;
        while api.is_none() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(wait) else {
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                let _ = child.kill();
                bail!("the node did not start within {START_WAIT:?}; stderr:\n{log}");
            };
            if let Some(id) = line.strip_prefix("peer id: ") {
                peer = Some(id.parse::<PeerId>()?);
            } else if let Some(addr) = line.strip_prefix("listen: ")
                && addr.contains("/tcp/")
            {
                let addr: Multiaddr = addr.parse()?;
                tcp = Some(
                    addr.into_iter()
                        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                        .collect(),
                );
            } else if let Some(url) = line.strip_prefix("api: http://") {
                api = Some(url.to_string());
            }
        }
        Ok(NodeProc {
            child,
            peer_id: peer.context("no `peer id:` line")?,
            tcp: tcp.context("no TCP `listen:` line")?,
            api: api.context("no `api:` line")?,
            stderr,
            _dir: dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines the node logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client whose requests give up after [`API_TIMEOUT`].
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(API_TIMEOUT))
        .build()
        .into()
}

/// `GET /status`, parsed.
pub fn status(agent: &ureq::Agent, api: &str) -> anyhow::Result<StatusView> {
    let text = agent
        .get(format!("http://{api}/status"))
        .call()?
        .body_mut()
        .read_to_string()?;
    Ok(serde_json::from_str(&text)?)
}

/// `GET /metrics`, as text.
pub fn metrics(agent: &ureq::Agent, api: &str) -> anyhow::Result<String> {
    Ok(agent
        .get(format!("http://{api}/metrics"))
        .call()?
        .body_mut()
        .read_to_string()?)
}

/// One field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn proc_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = line.trim().trim_end_matches("kB").trim();
    Ok(kib.parse()?)
}

/// Samples a process's resident set size until stopped.
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, u64)>,
}

impl RssSampler {
    /// Starts sampling `pid` every [`RSS_PERIOD`].
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut max_kib, mut samples) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                if let Ok(kib) = proc_kib(pid, "VmRSS") {
                    max_kib = max_kib.max(kib);
                    samples += 1;
                }
                std::thread::sleep(RSS_PERIOD);
            }
            (max_kib, samples)
        });
        RssSampler { stop, thread }
    }

    /// Stops sampling: the largest VmRSS seen in KiB, and the number of samples.
    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// What the API prober saw.
#[derive(Debug, Default)]
pub struct ProbeReport {
    /// `/status` requests answered with a valid status.
    pub status_ok: u64,
    /// `/status` requests that failed or timed out, with the first error.
    pub status_failed: u64,
    /// The first `/status` error.
    pub first_error: Option<String>,
    /// `/metrics` samples taken.
    pub metrics_samples: u64,
    /// Usage gauges seen above their limit gauge: `scope resource usage > limit`.
    pub over_limit: Vec<String>,
    /// The largest usage seen per `(scope, resource)`.
    pub usage_max: BTreeMap<(String, String), f64>,
    /// `/rcmgr/scopes` samples taken.
    pub scopes_samples: u64,
    /// The most any one peer held, per resource, with the peer limit.
    pub peer_max: BTreeMap<&'static str, (u64, Option<u64>)>,
    /// Peers seen with a scope at once, at most.
    pub high_watermark: usize,
}

/// Asks the API for `/status`, `/metrics` and `/rcmgr/scopes` over and over until stopped.
#[derive(Debug)]
pub struct ApiProber {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ProbeReport>,
}

impl ApiProber {
    /// Starts probing the API at `api` every [`PROBE_PERIOD`].
    pub fn start(api: String) -> ApiProber {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let agent = agent();
            let mut report = ProbeReport::default();
            while !flag.load(Ordering::Relaxed) {
                match status(&agent, &api) {
                    Ok(_) => report.status_ok += 1,
                    Err(e) => {
                        report.status_failed += 1;
                        report.first_error.get_or_insert(e.to_string());
                    }
                }
                if let Ok(text) = metrics(&agent, &api) {
                    report.metrics_samples += 1;
                    check_usage(&text, &mut report);
                }
                if let Ok(view) = scopes(&agent, &api) {
                    report.scopes_samples += 1;
                    check_scopes(&view, &mut report);
                }
                std::thread::sleep(PROBE_PERIOD);
            }
            report
        });
        ApiProber { stop, thread }
    }

    /// Stops probing and returns what was seen.
    pub fn finish(self) -> anyhow::Result<ProbeReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the API prober panicked"))
    }
}

/// `GET /rcmgr/scopes` with every peer.
pub fn scopes(agent: &ureq::Agent, api: &str) -> anyhow::Result<ScopesView> {
    let text = agent
        .get(format!("http://{api}/rcmgr/scopes?top={TOP_PEERS_MAX}"))
        .call()?
        .body_mut()
        .read_to_string()?;
    Ok(serde_json::from_str(&text)?)
}

/// Records every scope of `view` (system, transient, allowlisted, protocols, services and
/// each peer listed) holding more than its limit, and the most one peer held.
pub fn check_scopes(view: &ScopesView, report: &mut ProbeReport) {
    let mut check = |scope: &str, usage: &UsageView, limits: &LimitsRow| {
        for ((resource, used), (_, limit)) in usage.fields().into_iter().zip(limits.fields()) {
            if limit.is_some_and(|l| used > l) {
                report.over_limit.push(format!(
                    "{scope} {resource} {used} > {limit:?} (/rcmgr/scopes)"
                ));
            }
        }
    };
    for row in &view.scopes {
        check(&row.limits.scope, &row.usage, &row.limits);
    }
    for p in &view.top_peers {
        check(&format!("peer {}", p.peer), &p.usage, &view.peer_limits);
        for ((resource, used), (_, limit)) in
            p.usage.fields().into_iter().zip(view.peer_limits.fields())
        {
            let max = report.peer_max.entry(resource).or_insert((0, limit));
            max.0 = max.0.max(used);
        }
    }
    report.high_watermark = report.high_watermark.max(view.peers);
}

/// One sample of a metric family: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// The samples of family `name` in a Prometheus text exposition.
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let labels = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        out.push((labels, value));
    }
    out
}

fn scope_resource(labels: &BTreeMap<String, String>) -> Option<(String, String)> {
    Some((
        labels.get("scope")?.clone(),
        labels.get("resource")?.clone(),
    ))
}

/// Scope kinds whose usage gauge sums many scopes (every peer's) while their limit gauge is
/// the limit of each one, so the two do not compare.
const SUMMED_SCOPES: [&str; 1] = ["peer"];

/// Records every `flotilla_rcmgr_usage` gauge of a single scope (system, transient,
/// allowlisted, each protocol and service) above its `flotilla_rcmgr_limit` gauge.
pub fn check_usage(text: &str, report: &mut ProbeReport) {
    let limits: BTreeMap<(String, String), f64> = samples(text, "flotilla_rcmgr_limit")
        .into_iter()
        .filter_map(|(l, v)| Some((scope_resource(&l)?, v)))
        .collect();
    for (labels, usage) in samples(text, "flotilla_rcmgr_usage") {
        let Some(key) = scope_resource(&labels) else {
            continue;
        };
        if let Some(&limit) = limits.get(&key)
            && !SUMMED_SCOPES.contains(&key.0.as_str())
            && usage > limit
        {
            report
                .over_limit
                .push(format!("{} {} {usage} > {limit}", key.0, key.1));
        }
        let max = report.usage_max.entry(key).or_insert(usage);
        *max = max.max(usage);
    }
}

/// Waits until `api` answers `/status`.
pub fn wait_api(agent: &ureq::Agent, api: &str) -> anyhow::Result<StatusView> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        match status(agent, api) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => bail!("the API at {api} never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
