//! `onboard`, `offboard` and `resources`: a compute provider's capacity, kept in the local
//! store of the data directory (no running node needed).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use flotilla_core::capacity::Capacity;
use flotilla_node::config::{NodeConfig, Overrides};
use flotilla_node::onboarding::{self, Amount, Onboarding, Share, thousandths};
use flotilla_node::store::{STORE_FILE, Store};

use super::rcmgr::print_table;
use super::uptime;

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
    /// The data directory, as `flotilla node run` with the same flags would use it.
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let (Some(dir), None) = (&self.data_dir, &self.config) {
            return Ok(dir.clone());
        }
        let overrides = Overrides {
            data_dir: self.data_dir.clone(),
            ..Overrides::default()
        };
        Ok(NodeConfig::load(self.config.as_deref(), overrides)?.data_dir)
    }
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
/// stores the result.
pub fn onboard(args: &OnboardArgs) -> anyhow::Result<()> {
    let data_dir = args.dir.resolve()?;
    let mut store = open_store(&data_dir)?;
    let registered = match store.onboarding()? {
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
    let o = Onboarding {
        registered,
        onboarded,
    };
    store.set_onboarding(&o, onboarding::now_us())?;
    if args.json {
        println!("{}", serde_json::to_string(&o)?);
    } else {
        println!("onboarded {}", describe(&onboarded));
        println!(
            "(of {}; `flotilla resources` shows both)",
            describe(&registered.capacity)
        );
    }
    Ok(())
}

/// Sets the onboarded capacity back to zero, keeping the measurement.
pub fn offboard(dir: &DataDirArgs) -> anyhow::Result<()> {
    let data_dir = dir.resolve()?;
    let mut store = open_store(&data_dir)?;
    let Some(mut o) = store.onboarding()? else {
        println!("nothing to offboard: this node was never onboarded");
        return Ok(());
    };
    o.onboarded = Capacity::ZERO;
    store.set_onboarding(&o, onboarding::now_us())?;
    println!("offboarded: nothing is offered any more (`flotilla onboard` offers it again)");
    Ok(())
}

/// Prints registered and onboarded capacity per resource, the CPU score and its age.
pub fn resources(dir: &DataDirArgs, json: bool) -> anyhow::Result<()> {
    let data_dir = dir.resolve()?;
    let store = open_store(&data_dir)?;
    let o = store.onboarding()?;
    if json {
        println!("{}", serde_json::to_string(&o)?);
        return Ok(());
    }
    let Some(o) = o else {
        println!("not onboarded yet: `flotilla onboard` measures this machine and offers it");
        return Ok(());
    };
    let (r, on) = (o.registered.capacity, o.onboarded);
    let rows = [
        (
            "cores",
            thousandths(r.millicores),
            thousandths(on.millicores),
        ),
        (
            "memory MiB",
            r.memory_mb.to_string(),
            on.memory_mb.to_string(),
        ),
        ("disk GiB", r.disk_gb.to_string(), on.disk_gb.to_string()),
        ("gpus", r.gpus.to_string(), on.gpus.to_string()),
    ]
    .map(|(name, r, on)| vec![name.to_string(), r, on])
    .to_vec();
    print_table(&["RESOURCE", "REGISTERED", "ONBOARDED"], &rows);
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
