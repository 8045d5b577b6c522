//! Running a production node: key, network, core, driver and API, in that order.
//!
//! The swarm listens before the core [`Node`] exists, so the node's advert carries the real
//! listen addresses; the API binds last and [`run`] reports everything through its `ready`
//! callback before serving.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::advert::ADVERT_ADDRS_MAX;
use flotilla_core::{Node, PeerId, SeedTree};
use libp2p::Multiaddr;

mod jobs;

pub use jobs::Recovery;

use crate::api::{ApiError, ApiServer};
use crate::clock::{Clock, TokioClock};
use crate::config::{ConfigError, NodeConfig};
use crate::driver::Driver;
use crate::journal::Journal;
use crate::keystore::{self, KeystoreError};
use crate::metrics::{Metrics, MetricsObserver};
use crate::p2p::addr::{bootstrap_peer, with_p2p};
use crate::p2p::transfer::{self, Shelf, TRANSFER_PROTOCOL};
use crate::p2p::{P2pError, P2pNetwork};
use crate::rcmgr::SharedRcmgr;
use crate::store::{STORE_FILE, Store, StoreError};

/// How long listeners may take to report their addresses at start-up.
pub const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// How long in-flight API requests may take to finish at shutdown.
pub const API_DRAIN: Duration = Duration::from_secs(2);
/// The directory under the data directory whose files the transfer protocol serves.
pub const ARTEFACTS_DIR: &str = "artefacts";
/// The file in the data directory holding the address of the running node's API (one line,
/// `127.0.0.1:7400`), so that commands given the data directory find the node; removed at
/// shutdown.
pub const API_FILE: &str = "api";

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key could not be loaded or created.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The network could not start.
    #[error(transparent)]
    Network(#[from] P2pError),
    /// The core refused its settings.
    #[error(transparent)]
    Core(#[from] flotilla_core::ConfigError),
    /// The API could not start or failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The local store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The directory of served artefacts could not be created.
    #[error(
        "cannot create the artefact directory {dir}: {error}; check that the data directory is writable"
    )]
    Artefacts {
        /// The directory.
        dir: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// What a started node reports before it serves.
#[derive(Clone, Debug)]
pub struct Started {
    /// The node's peer id.
    pub peer_id: PeerId,
    /// Whether the key was created at this start.
    pub key_created: bool,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Listen addresses, each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<Multiaddr>,
    /// The address the API is served on.
    pub api: SocketAddr,
}

/// Runs a node with `config` until `shutdown` completes. `ready` is called once everything
/// listens.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&Started),
) -> Result<(), RunError> {
    let (keypair, key_created) = keystore::load_or_create(&config.data_dir)?;
    let metrics = Metrics::new();
    let rcmgr = SharedRcmgr::new(
        config.limits.clone(),
        config.allowlist.clone(),
        config.machine,
        metrics.clone(),
    );
    let system = &config.limits.system;
    tracing::info!(
        machine_memory_bytes = config.machine.memory_bytes,
        machine_fds = config.machine.fds,
        memory = system.memory,
        conns_in = system.conns_in,
        conns_out = system.conns_out,
        streams_in = system.streams_in,
        "resource limits (`flotilla limits` shows them all)"
    );
    let mut net = P2pNetwork::start(
        &keypair,
        &config.listen,
        &config.bootstrap,
        rcmgr.clone(),
        metrics.clone(),
        &config.discovery,
    )?;
    net.wait_listening(LISTEN_WAIT).await?;
    // Files under the artefact directory are served to peers; the task ends with `run`.
    let dir = config.data_dir.join(ARTEFACTS_DIR);
    let shelf = Shelf::new(&dir).map_err(|error| RunError::Artefacts { dir, error })?;
    // Each job writes to its own directory under it (absolute, for the Docker daemon).
    let artefacts_root = shelf.root().to_path_buf();
    let incoming = net
        .stream_control()
        .accept(TRANSFER_PROTOCOL)
        .map_err(|e| P2pError::Behaviour(e.to_string()))?;
    let mut transfers = tokio::task::JoinSet::new();
    transfers.spawn(transfer::serve(incoming, Arc::new(shelf), rcmgr.clone()));
    let local = net.local_peer_id();
    let listen_addrs: Vec<Multiaddr> = net
        .listen_addrs()
        .iter()
        .map(|a| with_p2p(a, local))
        .collect();

    let transfer_control = net.stream_control();
    let mut core = config.core.clone();
    core.listen_addrs = net
        .listen_addrs()
        .iter()
        .take(ADVERT_ADDRS_MAX)
        .map(|a| a.to_string())
        .collect();
    core.bootstrap = config.bootstrap.iter().map(bootstrap_peer).collect();
    let mut store = Store::open(&config.data_dir.join(STORE_FILE))?;
    jobs::registered_from_store(&store, &mut core);
    let clock = TokioClock::system();
    let seed = protocol_seed();
    tracing::debug!(seed, "protocol seed");
    let mut node = Node::new(core, keypair, SeedTree::new(seed), clock.now())?;
    let (runner, recovery) = jobs::prepare(&mut node, &mut store, clock.now()).await?;
    if recovery != Recovery::default() {
        tracing::info!(?recovery, "jobs recovered from the local store");
    }
    let peer_id = node.peer_id();
    let (driver, handle) = Driver::new(node, net, clock, MetricsObserver::new(metrics.clone()));
    let driver = match runner {
        Ok((runner, events)) => {
            driver.with_runner(Box::new(runner.with_artefacts(artefacts_root)), events)
        }
        Err(why) => driver.without_runner(why),
    };
    let driver = driver.with_journal(Box::new(Journal::new(store)));

    let api = ApiServer::bind(config.api, handle, metrics, rcmgr)
        .await?
        .with_transfers(transfer_control)
        .with_store(config.data_dir.join(STORE_FILE));
    let started = Started {
        peer_id,
        key_created,
        data_dir: config.data_dir.clone(),
        listen_addrs,
        api: api.local_addr()?,
    };
    tracing::info!(%peer_id, api = %started.api, data_dir = %started.data_dir.display(), "node started");
    let api_file = config.data_dir.join(API_FILE);
    if let Err(e) = std::fs::write(&api_file, format!("{}\n", started.api)) {
        tracing::warn!(file = %api_file.display(), error = %e, "cannot write the API address; commands given --data-dir will not find this node");
    }
    ready(&started);

    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_task = tokio::spawn(api.serve(async {
        let _ = api_stopped.await;
    }));
    tokio::select! {
        _ = driver.run() => tracing::warn!("the network stopped"),
        _ = shutdown => tracing::info!("shutting down"),
    }
    let _ = stop_api.send(());
    transfers.abort_all();
    // Only if it is still this node's (another node may have started on the directory).
    if std::fs::read_to_string(&api_file).is_ok_and(|t| t.trim() == started.api.to_string()) {
        let _ = std::fs::remove_file(&api_file);
    }
    match tokio::time::timeout(API_DRAIN, api_task).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => tracing::warn!(error = %e, "the API task failed"),
        Err(_) => tracing::debug!("API requests still running at shutdown"),
    }
    Ok(())
}

/// A seed for the node's protocol randomness (timer phases, peer choice), different at
/// every start. It is logged at debug level so a run can be replayed in the simulator.
fn protocol_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(since_epoch.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}
