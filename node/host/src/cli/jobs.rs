//! `flotilla deploy` and `flotilla deployments`: jobs placed by this node.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use flotilla_core::PeerId;
use flotilla_core::job::JobSpec;
use flotilla_core::jobs::{DeploymentView, LogLine};
use flotilla_node::api::jobs::{DeployReply, FollowItem};
use flotilla_node::executor::artefacts;
use flotilla_node::views::StatusView;

use super::Client;
use super::rcmgr::print_table;

/// Options of `flotilla deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The job spec: TOML (`.toml`) or YAML (`.yaml`, `.yml`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Ask only this connected provider for a bid (repeatable); default: every connected
    /// peer.
    #[arg(long = "pin", value_name = "PEER", value_parser = super::parse_peer_id)]
    pub pinned: Vec<PeerId>,
    /// Print states and log lines as they happen until the deployment ends; the exit status
    /// is non-zero if it failed.
    #[arg(long)]
    pub follow: bool,
    /// Print the API's raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// `flotilla deployments ...`.
#[derive(Debug, Subcommand)]
pub enum DeploymentsCommand {
    /// Every deployment of this node, newest last.
    List {
        /// Print the API's raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// One deployment: state, workers, every state it went through.
    Status {
        /// The deployment's number.
        id: u64,
        /// Print the API's raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// A deployment's log lines (the last 1000 are kept).
    Logs {
        /// The deployment's number.
        id: u64,
        /// Keep printing new lines until the deployment ends.
        #[arg(long)]
        follow: bool,
    },
    /// Stop a deployment's workers.
    Shutdown {
        /// The deployment's number.
        id: u64,
    },
}

/// Reads and checks `file` here, so that a bad spec is reported before anything is sent.
fn read_spec(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the job spec {}", file.display()))?;
    JobSpec::from_str_at(&text, file).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(text)
}

/// `flotilla deploy`.
pub fn deploy(client: &Client, args: &DeployArgs) -> anyhow::Result<()> {
    let text = read_spec(&args.file)?;
    let name = args
        .file
        .file_name()
        .map_or_else(|| "job.toml".into(), |n| n.to_string_lossy().into_owned());
    let mut query = vec![("file", name)];
    if !args.pinned.is_empty() {
        let pins: Vec<String> = args.pinned.iter().map(PeerId::to_string).collect();
        query.push(("pin", pins.join(",")));
    }
    let body = client.post_text("/deployments", &query, &text)?;
    let reply: DeployReply =
        serde_json::from_str(&body).context("unexpected answer to a deployment")?;
    if args.json && !args.follow {
        println!("{body}");
        return Ok(());
    }
    println!("deployment {} asked for bids", reply.id);
    if args.follow {
        return follow(client, reply.id, true);
    }
    println!(
        "follow it with `flotilla deployments logs {} --follow`",
        reply.id
    );
    Ok(())
}

/// `flotilla deployments ...`.
pub fn deployments(client: &Client, cmd: &DeploymentsCommand) -> anyhow::Result<()> {
    match cmd {
        DeploymentsCommand::List { json } => {
            let (all, raw): (Vec<DeploymentView>, _) = client.json(false, "/deployments")?;
            if *json {
                println!("{raw}");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|d| {
                    vec![
                        d.id.to_string(),
                        d.state.to_string(),
                        d.image.clone(),
                        format!("{}/{}", running(d), d.workers_wanted),
                        d.log_lines.to_string(),
                        d.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &["ID", "STATE", "IMAGE", "RUNNING", "LOG LINES", "REASON"],
                &rows,
            );
            Ok(())
        }
        DeploymentsCommand::Status { id, json } => {
            let (d, raw): (DeploymentView, _) =
                client.json(false, &format!("/deployments/{id}"))?;
            if *json {
                println!("{raw}");
                return Ok(());
            }
            println!("deployment {}: {} ({})", d.id, d.state, d.image);
            if let Some(r) = &d.reason {
                println!("reason: {r}");
            }
            let rows: Vec<Vec<String>> = d
                .workers
                .iter()
                .map(|(p, w)| vec![p.to_string(), w.clone()])
                .collect();
            print_table(&["PROVIDER", "WORKER"], &rows);
            if !d.workers.is_empty() {
                let (me, _): (StatusView, _) = client.json(false, "/status")?;
                let dir = artefacts::dir_name(&me.peer_id, d.id);
                println!(
                    "artefacts (what a worker wrote to /artefacts): flotilla fetch PROVIDER \
                     {dir}/FILE --out FILE"
                );
            }
            for (at, state, why) in &d.transitions {
                let after = at.as_micros().saturating_sub(d.created.as_micros());
                #[allow(clippy::cast_precision_loss)]
                let secs = after as f64 / 1e6;
                println!("  +{secs:.3}s {state}: {why}");
            }
            Ok(())
        }
        DeploymentsCommand::Logs { id, follow: true } => follow(client, *id, false),
        DeploymentsCommand::Logs { id, follow: false } => {
            let (lines, _): (Vec<LogLine>, _) =
                client.json(false, &format!("/deployments/{id}/logs"))?;
            for l in &lines {
                print_log(l);
            }
            Ok(())
        }
        DeploymentsCommand::Shutdown { id } => {
            client.call_with(true, &format!("/deployments/{id}/shutdown"), &[])?;
            println!("deployment {id} is shutting down");
            Ok(())
        }
    }
}

fn running(d: &DeploymentView) -> usize {
    d.workers.iter().filter(|(_, w)| w == "running").count()
}

fn print_log(l: &LogLine) {
    let tag = if l.stream == "stderr" { "!" } else { " " };
    println!("{}{tag} {}", l.peer.short(), l.line);
}

/// Prints a deployment's states (with `states`) and log lines as they happen; fails if it
/// ends failed.
fn follow(client: &Client, id: u64, states: bool) -> anyhow::Result<()> {
    let url = format!("{}/deployments/{id}/follow", client.base);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(&url).call().map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the node API at {}: is `flotilla node run` running? ({e})",
            client.base
        )
    })?;
    if !response.status().is_success() {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        return Err(super::api_error(response.status(), &body, &url));
    }
    let reader = std::io::BufReader::new(response.body_mut().as_reader());
    let mut last = None;
    for line in reader.lines() {
        let line = line.context("the follow stream broke off")?;
        match serde_json::from_str::<FollowItem>(&line) {
            Ok(FollowItem::Log(l)) => print_log(&l),
            Ok(FollowItem::State { state, reason }) => {
                if states {
                    println!("[{state}] {reason}");
                }
                last = Some((state, reason));
            }
            Err(e) => bail!("unexpected line in the follow stream: {e}"),
        }
    }
    match last {
        Some((flotilla_core::deployment::DeployState::Failed, reason)) => {
            bail!("deployment {id} failed: {reason}")
        }
        Some((state, _)) if state.is_terminal() => Ok(()),
        _ => bail!("the follow stream ended before deployment {id} did"),
    }
}
