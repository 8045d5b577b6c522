//! Two swarms on loopback: one serving a shelf, one fetching from it.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::rcmgr::{Limits, ScopeLimits};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use tokio::task::JoinSet;

use super::*;
use crate::metrics::Metrics;
use crate::p2p::addr::with_p2p;
use crate::p2p::tests::{raw_swarm, rcmgr_with};

const WAIT: Duration = Duration::from_secs(20);
const FILE_BYTES: usize = 3 << 20;

/// A serving swarm and a fetching swarm, connected; both stop when this is dropped.
struct Pair {
    server: PeerId,
    /// The fetching side.
    client: PeerId,
    control: libp2p_stream::Control,
    rcmgr: SharedRcmgr,
    _tasks: JoinSet<()>,
}

/// Bytes that differ everywhere, the same at every run.
fn content(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn pair(shelf: Arc<Shelf>, server_limits: Limits, client_limits: Limits) -> Pair {
    let mut tasks = JoinSet::new();
    let mut server = raw_swarm();
    let server_lp = *server.local_peer_id();
    let incoming = server
        .behaviour()
        .new_control()
        .accept(TRANSFER_PROTOCOL)
        .unwrap();
    tasks.spawn(serve(
        incoming,
        shelf,
        rcmgr_with(server_limits, Metrics::new()),
    ));
    server
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
                return address;
            }
        }
    })
    .await
    .unwrap();
    tasks.spawn(async move {
        loop {
            server.select_next_some().await;
        }
    });

    let mut client = raw_swarm();
    let client_id = core_peer(client.local_peer_id()).unwrap();
    let control = client.behaviour().new_control();
    client.dial(with_p2p(&addr, server_lp)).unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            match client.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => return,
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial: {error}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    tasks.spawn(async move {
        loop {
            client.select_next_some().await;
        }
    });
    Pair {
        server: core_peer(&server_lp).unwrap(),
        client: client_id,
        control,
        rcmgr: rcmgr_with(client_limits, Metrics::new()),
        _tasks: tasks,
    }
}

/// A shelf in a fresh directory holding `artefact.bin` ([`FILE_BYTES`] of [`content`]).
fn shelf_with_file() -> (tempfile::TempDir, Arc<Shelf>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::new(dir.path().join("shelf")).unwrap();
    let data = content(FILE_BYTES);
    std::fs::write(shelf.root().join("artefact.bin"), &data).unwrap();
    (dir, Arc::new(shelf), data)
}

impl Pair {
    async fn fetch(
        &mut self,
        name: &str,
        dest: &Path,
        opts: FetchOptions,
    ) -> Result<FetchReport, TransferError> {
        tokio::time::timeout(
            WAIT,
            fetch(
                &mut self.control,
                &self.rcmgr,
                self.server,
                name,
                dest,
                &opts,
            ),
        )
        .await
        .expect("the fetch hung")
    }
}

#[tokio::test]
async fn a_file_arrives_whole_with_its_hash() {
    let (dir, shelf, data) = shelf_with_file();
    let mut p = pair(shelf, Limits::default(), Limits::default()).await;
    let dest = dir.path().join("got.bin");
    let report = p
        .fetch("artefact.bin", &dest, FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(
        report,
        FetchReport {
            size: FILE_BYTES as u64,
            sha256: hex(&Sha256::digest(&data)),
            resumed_from: 0,
            received: FILE_BYTES as u64,
            complete: true,
        }
    );
    assert!(std::fs::read(&dest).unwrap() == data);
    assert!(!part_path(&dest).exists());
    // The fetcher's stream scope held a chunk buffer and was closed with the fetch.
    let usage = p.rcmgr.with(|rm| rm.system_usage());
    assert!(usage.is_zero(), "{usage:?}");
}

#[tokio::test]
async fn an_interrupted_fetch_resumes_from_the_partial_file() {
    let (dir, shelf, data) = shelf_with_file();
    let mut p = pair(shelf, Limits::default(), Limits::default()).await;
    let dest = dir.path().join("got.bin");
    let first_bytes = (1 << 20) + 123;
    let first = p
        .fetch(
            "artefact.bin",
            &dest,
            FetchOptions {
                session_bytes_max: Some(first_bytes),
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(!first.complete);
    assert_eq!((first.resumed_from, first.received), (0, first_bytes));
    assert!(!dest.exists());
    assert_eq!(
        std::fs::metadata(part_path(&dest)).unwrap().len(),
        first_bytes
    );

    let second = p
        .fetch("artefact.bin", &dest, FetchOptions::default())
        .await
        .unwrap();
    assert!(second.complete);
    assert_eq!(second.resumed_from, first_bytes);
    assert_eq!(second.received, FILE_BYTES as u64 - first_bytes);
    assert!(std::fs::read(&dest).unwrap() == data);
    assert!(!part_path(&dest).exists());
}

#[tokio::test]
async fn a_corrupted_partial_file_is_caught_and_removed() {
    let (dir, shelf, data) = shelf_with_file();
    let mut p = pair(shelf, Limits::default(), Limits::default()).await;
    let dest = dir.path().join("got.bin");
    let mut prefix = data[..100_000].to_vec();
    prefix[4321] ^= 0x01;
    std::fs::write(part_path(&dest), &prefix).unwrap();

    let err = p
        .fetch("artefact.bin", &dest, FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransferError::Sha256Mismatch { expected, .. } if *expected == hex(&Sha256::digest(&data))),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("sha256 mismatch: expected ") && text.contains("fetch again"),
        "{text}"
    );
    assert!(!part_path(&dest).exists());
    assert!(!dest.exists());

    // Fetching again starts afresh and succeeds.
    let report = p
        .fetch("artefact.bin", &dest, FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(report.resumed_from, 0);
    assert!(std::fs::read(&dest).unwrap() == data);
}

#[tokio::test]
async fn bad_and_unknown_names_are_refused() {
    let (dir, shelf, _) = shelf_with_file();
    std::fs::write(dir.path().join("secret"), b"not served").unwrap();
    let mut p = pair(shelf, Limits::default(), Limits::default()).await;
    let dest = dir.path().join("got.bin");
    for name in ["../secret", "/etc/passwd", "a//b"] {
        let err = p
            .fetch(name, &dest, FetchOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                TransferError::Refused {
                    refusal: Refusal::BadName(_),
                    ..
                }
            ),
            "{name}: {err}"
        );
    }
    let err = p
        .fetch("missing.bin", &dest, FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no such file: `missing.bin`"),
        "{err}"
    );
    assert!(!dest.exists() && !part_path(&dest).exists());
}

#[tokio::test]
async fn a_second_fetch_to_the_same_destination_is_refused() {
    let (dir, shelf, data) = shelf_with_file();
    let mut p = pair(shelf, Limits::default(), Limits::default()).await;
    let dest = dir.path().join("got.bin");
    // Another fetch holds the partial file.
    let other = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part_path(&dest))
        .unwrap();
    other.lock().unwrap();
    let err = p
        .fetch("artefact.bin", &dest, FetchOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(&err, TransferError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains("another fetch is writing"),
        "{err}"
    );
    assert!(!dest.exists() && part_path(&dest).exists());
    // Once it is done, the file can be fetched.
    drop(other);
    let report = p
        .fetch("artefact.bin", &dest, FetchOptions::default())
        .await
        .unwrap();
    assert!(report.complete);
    assert!(std::fs::read(&dest).unwrap() == data);
}

#[tokio::test]
async fn a_job_artefact_goes_to_its_requester_only() {
    let (dir, shelf, _) = shelf_with_file();
    let mut p = pair(shelf.clone(), Limits::default(), Limits::default()).await;
    let other =
        flotilla_core::Keypair::generate(&mut flotilla_core::SeedTree::new(5).rng()).peer_id();
    for (requester, text) in [(p.client, "mine"), (other, "theirs")] {
        let d = shelf
            .root()
            .join(crate::executor::artefacts::dir_name(&requester, 1));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("out.txt"), text).unwrap();
    }
    let dest = dir.path().join("out.txt");
    let mine = format!("d1-{}/out.txt", p.client);
    let report = p
        .fetch(&mine, &dest, FetchOptions::default())
        .await
        .unwrap();
    assert!(report.complete);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "mine");

    let theirs = format!("d1-{other}/out.txt");
    let err = p
        .fetch(
            &theirs,
            &dir.path().join("theirs.txt"),
            FetchOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TransferError::Refused {
                refusal: Refusal::NotRequester(_),
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&other.to_string()) && text.contains("only that peer may fetch it"),
        "{text}"
    );
    assert!(!dir.path().join("theirs.txt").exists());
}

#[tokio::test]
async fn oversized_files_and_stale_partial_files_are_refused() {
    let (dir, shelf, data) = shelf_with_file();
    let mut p = pair(shelf, Limits::default(), Limits::default()).await;
    let dest = dir.path().join("got.bin");
    let err = p
        .fetch(
            "artefact.bin",
            &dest,
            FetchOptions {
                max_bytes: 1 << 20,
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransferError::TooLarge { size, max } if size == FILE_BYTES as u64 && max == 1 << 20),
        "{err}"
    );
    assert!(!dest.exists() && !part_path(&dest).exists());

    let mut longer = data.clone();
    longer.extend_from_slice(b"more");
    std::fs::write(part_path(&dest), &longer).unwrap();
    let err = p
        .fetch("artefact.bin", &dest, FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransferError::StalePart { offset, size, .. } if offset == FILE_BYTES as u64 + 4 && size == FILE_BYTES as u64),
        "{err}"
    );
    assert!(!part_path(&dest).exists());
}

/// Limits whose transfer service cannot hold one chunk buffer.
fn starved() -> Limits {
    let mut limits = Limits::default();
    let service = ScopeLimits {
        memory: (CHUNK_BYTES / 2) as u64,
        ..limits.service
    };
    limits
        .services
        .insert(TRANSFER_SERVICE.to_string(), service);
    limits
}

#[tokio::test]
async fn resource_limits_refuse_transfer_streams_clearly() {
    let (dir, shelf, _) = shelf_with_file();
    let dest = dir.path().join("got.bin");

    let mut p = pair(shelf.clone(), starved(), Limits::default()).await;
    let err = p
        .fetch("artefact.bin", &dest, FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TransferError::Refused {
                refusal: Refusal::Limit(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("refused: limit"), "{err}");

    let mut p = pair(shelf, Limits::default(), starved()).await;
    let err = p
        .fetch("artefact.bin", &dest, FetchOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Limit(_)), "{err}");
    assert!(err.to_string().contains("service `transfer`"), "{err}");
    assert!(!dest.exists() && !part_path(&dest).exists());
}
