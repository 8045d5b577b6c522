//! `onboard`, `offboard` and `resources`: a compute provider's capacity, kept in the local
//! store of the data directory.
//!
//! When a node runs on the data directory, they go through its API: a change applies to the
//! live ledger at once (and the node keeps it in the store), and `resources` shows the live
//! ledger. The node is found at `--api` if given, else at the address it wrote to `<data
//! dir>/api` at start, else at the configuration's `api`; it must answer with the peer id of
//! the data directory's key. Without a running node the store is edited, for the next start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use flotilla_core::PeerId;
use flotilla_core::capacity::Capacity;
use flotilla_node::config::{DEFAULT_API, NodeConfig, Overrides};
use flotilla_node::keystore::{self, KEY_FILE};
use flotilla_node::onboarding::{self, Amount, Onboarding, ResourcesReport, Share, thousandths};
use flotilla_node::run::API_FILE;
use flotilla_node::store::{STORE_FILE, Store};
use flotilla_node::views::StatusView;
use flotilla_node::views::resources::ResourcesView;

use super::rcmgr::print_table;
use super::{Client, uptime};

/// How long a command waits for a node's API to answer whether it is there.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the store is: the data directory of the node's configuration.
#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// TOML configuration file, for its `data_dir`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node's data directory [default: the config file's `data_dir`, else
    /// $XDG_DATA_HOME/flotilla or $HOME/.local/share/flotilla].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    /// The data directory and the API address, as `flotilla node run` with the same flags
    /// would use them.
    fn resolve(&self) -> anyhow::Result<(PathBuf, SocketAddr)> {
        if let (Some(dir), None) = (&self.data_dir, &self.config) {
            return Ok((dir.clone(), DEFAULT_API));
        }
        let overrides = Overrides {
            data_dir: self.data_dir.clone(),
            ..Overrides::default()
        };
        let config = NodeConfig::load(self.config.as_deref(), overrides)?;
        Ok((config.data_dir, config.api))
    }

    /// The data directory, and a client of the node running on it if there is one.
    fn node(&self, api: Option<SocketAddr>) -> anyhow::Result<(PathBuf, Option<Client>)> {
        let (data_dir, config_api) = self.resolve()?;
        let client = running_node(&data_dir, api, config_api)?;
        Ok((data_dir, client))
    }
}

/// The API of the node running on `data_dir`: at `flag` if given (an error if another node
/// answers there), else at the address in `<data dir>/api` or `config_api`. `None` if no
/// node answers with the peer id of the data directory's key.
fn running_node(
    data_dir: &Path,
    flag: Option<SocketAddr>,
    config_api: SocketAddr,
) -> anyhow::Result<Option<Client>> {
    let key = data_dir.join(KEY_FILE);
    if !key.exists() {
        // No node ever ran here.
        return Ok(None);
    }
    let me = keystore::load(&key)
        .with_context(|| format!("cannot read the node key {}", key.display()))?
        .peer_id();
    let written = std::fs::read_to_string(data_dir.join(API_FILE))
        .ok()
        .and_then(|t| t.trim().parse::<SocketAddr>().ok());
    let candidates: Vec<SocketAddr> = match flag {
        Some(a) => vec![a],
        None => written.into_iter().chain([config_api]).collect(),
    };
    for addr in candidates {
        let Some(peer) = node_at(addr) else { continue };
        if peer == me {
            return Ok(Some(Client::new(Some(addr))));
        }
        if flag.is_some() {
            bail!(
                "the node at --api {addr} is {peer}, not the node of {} ({me}); give that \
                 node's API address, or leave --api out",
                data_dir.display()
            );
        }
    }
    Ok(None)
}

/// The peer id of the node whose API answers at `addr`, if one does.
fn node_at(addr: SocketAddr) -> Option<PeerId> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(PROBE_TIMEOUT))
        .build()
        .into();
    let mut answer = agent.get(format!("http://{addr}/status")).call().ok()?;
    let status: StatusView = answer.body_mut().read_json().ok()?;
    Some(status.peer_id)
}

/// Options of `flotilla onboard`. Each amount is absolute or a percentage of what the
/// machine has; nothing given onboards everything.
#[derive(Debug, Args)]
pub struct OnboardArgs {
    /// Cores to offer (fractions allowed, e.g. 1.5) or a share like 50%.
    #[arg(long, value_name = "N|P%", value_parser = parse_amount)]
    pub cores: Option<Amount>,
    /// Memory to offer in MiB, or a share like 50%.
    #[arg(long, value_name = "N|P%", value_parser = parse_amount)]
    pub memory_mb: Option<Amount>,
    /// Disk to offer in GiB, or a share like 50%.
    #[arg(long, value_name = "N|P%", value_parser = parse_amount)]
    pub disk_gb: Option<Amount>,
    /// GPUs to offer, or a share like 50% (rounded down).
    #[arg(long, value_name = "N|P%", value_parser = parse_amount)]
    pub gpus: Option<Amount>,
    /// Share of every resource not given above, e.g. 50%.
    #[arg(long, value_name = "P%", value_parser = parse_amount)]
    pub share: Option<Amount>,
    /// Measure the machine again instead of using the last measurement.
    #[arg(long)]
    pub remeasure: bool,
    #[command(flatten)]
    pub dir: DataDirArgs,
    /// Print the stored onboarding as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_amount(text: &str) -> Result<Amount, String> {
    text.parse()
        .map_err(|e: onboarding::OnboardError| e.to_string())
}

fn open_store(data_dir: &Path) -> anyhow::Result<Store> {
    std::fs::create_dir_all(data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}; pass a writable --data-dir",
            data_dir.display()
        )
    })?;
    Ok(Store::open(&data_dir.join(STORE_FILE))?)
}

/// Measures the machine if it never was (or with `--remeasure`), applies the share and
/// stores the result; a running node applies it at once.
pub fn onboard(args: &OnboardArgs, api: Option<SocketAddr>) -> anyhow::Result<()> {
    let (data_dir, node) = args.dir.node(api)?;
    let mut store = open_store(&data_dir)?;
    let before = store.onboarding()?;
    let registered = match before {
        Some(o) if !args.remeasure => o.registered,
        _ => {
            eprintln!("measuring this machine ...");
            onboarding::measure(&data_dir)?
        }
    };
    let share = Share {
        cores: args.cores,
        memory_mb: args.memory_mb,
        disk_gb: args.disk_gb,
        gpus: args.gpus,
        all: args.share,
    };
    let onboarded = share.apply(&registered.capacity)?;
    let mut o = Onboarding {
        registered,
        onboarded,
    };
    let live = match &node {
        Some(client) => {
            if before.map(|b| b.registered) != Some(registered) {
                // The node keeps the change with the measurement it finds in the store.
                let kept = Onboarding {
                    registered,
                    onboarded: before.map_or(Capacity::ZERO, |b| b.onboarded),
                };
                store.set_onboarding(&kept, onboarding::now_us())?;
                eprintln!(
                    "the new measurement is stored; the running node counts it after a restart"
                );
            }
            let view = set_live(client, onboarded)?;
            o.onboarded = view.onboarded;
            true
        }
        None => {
            store.set_onboarding(&o, onboarding::now_us())?;
            false
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&o)?);
    } else {
        println!("onboarded {}", describe(&o.onboarded));
        println!(
            "(of {}; `flotilla resources` shows both)",
            describe(&registered.capacity)
        );
        println!("{}", applied(live));
    }
    Ok(())
}

/// Where a change went: the running node, or the store for the next start.
fn applied(live: bool) -> &'static str {
    if live {
        "applied by the running node at once, and kept for its next start"
    } else {
        "no node runs on this data directory: a node started on it offers this"
    }
}

/// Asks the running node to offer exactly `capacity`; its ledger after the change.
fn set_live(client: &Client, capacity: Capacity) -> anyhow::Result<ResourcesView> {
    let body = client.put_json("/resources/onboarded", &capacity)?;
    serde_json::from_str(&body).context("unexpected answer to an onboarding change")
}

/// Sets the onboarded capacity back to zero, keeping the measurement; a running node
/// applies it at once, unless allocations hold some of it.
pub fn offboard(dir: &DataDirArgs, api: Option<SocketAddr>) -> anyhow::Result<()> {
    let (data_dir, node) = dir.node(api)?;
    let mut store = open_store(&data_dir)?;
    let Some(mut o) = store.onboarding()? else {
        println!("nothing to offboard: this node was never onboarded");
        return Ok(());
    };
    match &node {
        Some(client) => {
            set_live(client, Capacity::ZERO)?;
        }
        None => {
            o.onboarded = Capacity::ZERO;
            store.set_onboarding(&o, onboarding::now_us())?;
        }
    }
    println!("offboarded: nothing is offered any more (`flotilla onboard` offers it again)");
    println!("{}", applied(node.is_some()));
    Ok(())
}

/// Prints registered and onboarded capacity per resource (and, with a running node, its
/// live ledger and allocations), the CPU score and its age.
pub fn resources(dir: &DataDirArgs, json: bool, api: Option<SocketAddr>) -> anyhow::Result<()> {
    let (data_dir, node) = dir.node(api)?;
    let store = open_store(&data_dir)?;
    let o = store.onboarding()?;
    let live: Option<ResourcesView> = match &node {
        Some(client) => Some(client.json(false, "/resources")?.0),
        None => None,
    };
    if json {
        let report = ResourcesReport { stored: o, live };
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let Some(o) = o else {
        println!("not onboarded yet: `flotilla onboard` measures this machine and offers it");
        return Ok(());
    };
    let r = o.registered.capacity;
    let cells = |c: &Capacity| {
        [
            thousandths(c.millicores),
            c.memory_mb.to_string(),
            c.disk_gb.to_string(),
            c.gpus.to_string(),
        ]
    };
    let names = ["cores", "memory MiB", "disk GiB", "gpus"];
    let mut columns = vec![cells(&r)];
    match &live {
        Some(l) => columns.extend([
            cells(&l.onboarded),
            cells(&l.allocated),
            cells(&l.locked),
            cells(&l.available),
        ]),
        None => columns.push(cells(&o.onboarded)),
    }
    let rows: Vec<Vec<String>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            std::iter::once(name.to_string())
                .chain(columns.iter().map(|c| c[i].clone()))
                .collect()
        })
        .collect();
    match &live {
        Some(_) => print_table(
            &[
                "RESOURCE",
                "REGISTERED",
                "ONBOARDED",
                "ALLOCATED",
                "LOCKED",
                "AVAILABLE",
            ],
            &rows,
        ),
        None => print_table(&["RESOURCE", "REGISTERED", "ONBOARDED"], &rows),
    }
    if let Some(l) = &live {
        println!();
        println!(
            "live: the running node's ledger ({} host ports free)",
            l.ports_free
        );
        if l.registered != r {
            println!(
                "      it registered {} at start; a new measurement counts after a restart",
                describe(&l.registered)
            );
        }
        let held: Vec<Vec<String>> = l
            .allocations
            .iter()
            .filter(|a| a.state == "pending" || a.state == "running")
            .map(|a| {
                vec![
                    a.id.to_string(),
                    a.state.clone(),
                    a.requester.clone(),
                    thousandths(a.request.millicores),
                    a.request.memory_mb.to_string(),
                ]
            })
            .collect();
        if !held.is_empty() {
            println!();
            print_table(
                &["ALLOCATION", "STATE", "REQUESTER", "CORES", "MEMORY MIB"],
                &held,
            );
        }
    } else {
        println!();
        println!("no node runs on this data directory: this is what it offers at its next start");
    }
    let ago_s = onboarding::now_us().saturating_sub(o.registered.measured_at_us) / 1_000_000;
    println!();
    println!(
        "cpu score:  {} MiB/s (SHA-256, one thread)",
        o.registered.cpu_score
    );
    println!(
        "measured:   {} ago (`flotilla onboard --remeasure` again)",
        uptime(ago_s)
    );
    Ok(())
}

fn describe(c: &Capacity) -> String {
    format!(
        "{} cores, {} MiB memory, {} GiB disk, {} GPUs",
        thousandths(c.millicores),
        c.memory_mb,
        c.disk_gb,
        c.gpus
    )
}
