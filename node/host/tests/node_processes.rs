//! Real `flotilla` processes on loopback: two nodes find each other and measure RTTs, a
//! key readable by others is refused, bad frames on the core protocol do not bring a
//! node down, connections over a configured limit are refused and reported, and a node
//! fetches a peer's artefact with `flotilla fetch`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use flotilla_node::views::{PeerView, StatusView};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::Multiaddr;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
/// How long a node may take to print its start-up lines.
const START_WAIT: Duration = Duration::from_secs(15);

/// A running `flotilla node run`, killed when dropped.
struct NodeProc {
    child: Child,
    peer_id: String,
    listen: Vec<String>,
    api: String,
    stderr: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl NodeProc {
    fn start(extra: &[&str]) -> anyhow::Result<NodeProc> {
        Self::start_with("", extra)
    }

    /// Starts a node whose config file ends with `toml`.
    fn start_with(toml: &str, extra: &[&str]) -> anyhow::Result<NodeProc> {
        Self::start_full("", toml, extra)
    }

    /// Starts a node with `peers` added to its `[peers]` table and `toml` at the end of its
    /// config file.
    fn start_full(peers: &str, toml: &str, extra: &[&str]) -> anyhow::Result<NodeProc> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("node.toml");
        std::fs::write(
            &config,
            format!("region = \"test\"\n\n[peers]\nping_interval_s = 2\n{peers}\n\n{toml}"),
        )?;
        let stderr = dir.path().join("stderr.log");
        let mut child = Command::new(BIN)
            .args(["node", "run", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--listen",
                "/ip4/127.0.0.1/udp/0/quic-v1",
            ])
            .args(["--api", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
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
        let mut node = NodeProc {
            child,
            peer_id: String::new(),
            listen: Vec::new(),
            api: String::new(),
            stderr,
            config,
            _dir: dir,
        };
        let deadline = Instant::now() + START_WAIT;
        while node.api.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(wait) else {
                bail!("node did not start; stderr:\n{}", node.log());
            };
            if let Some(id) = line.strip_prefix("peer id: ") {
                node.peer_id = id.to_string();
            } else if let Some(addr) = line.strip_prefix("listen: ") {
                node.listen.push(addr.to_string());
            } else if let Some(url) = line.strip_prefix("api: http://") {
                node.api = url.to_string();
            }
        }
        ensure!(
            !node.peer_id.is_empty() && !node.listen.is_empty(),
            "incomplete start-up lines"
        );
        Ok(node)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn tcp_addr(&self) -> anyhow::Result<&str> {
        let addr = self
            .listen
            .iter()
            .find(|a| a.contains("/tcp/"))
            .context("no tcp address")?;
        Ok(addr)
    }

    /// Runs a client command against this node's API.
    fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(BIN)
            .arg("--api")
            .arg(&self.api)
            .args(args)
            .output()?)
    }

    fn peers(&self) -> anyhow::Result<Vec<PeerView>> {
        let out = self.cli(&["peers", "--json"])?;
        ensure!(
            out.status.success(),
            "peers failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn status(&self) -> anyhow::Result<StatusView> {
        let out = self.cli(&["status", "--json"])?;
        ensure!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `node` lists `peer` as connected with an RTT measured.
fn sees_with_rtt(node: &NodeProc, peer: &str) -> anyhow::Result<bool> {
    Ok(node
        .peers()?
        .iter()
        .any(|p| p.peer_id.to_string() == peer && p.direction.is_some() && p.rtt_ms.is_some()))
}

#[test]
fn two_nodes_find_each_other_and_ping() -> anyhow::Result<()> {
    let a = NodeProc::start(&[])?;
    ensure!(
        a.listen
            .iter()
            .all(|l| l.ends_with(&format!("/p2p/{}", a.peer_id)))
    );
    let b = NodeProc::start(&["--bootstrap", a.tcp_addr()?])?;

    let deadline = Instant::now() + Duration::from_secs(60);
    while !(sees_with_rtt(&a, &b.peer_id)? && sees_with_rtt(&b, &a.peer_id)?) {
        ensure!(
            Instant::now() < deadline,
            "no RTT within 60 s\na: {}\nb: {}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let b_seen_by_a = a
        .peers()?
        .into_iter()
        .find(|p| p.peer_id.to_string() == b.peer_id);
    ensure!(
        b_seen_by_a.is_some_and(|p| p.region.as_deref() == Some("test")),
        "advert not applied"
    );

    let out = b.cli(&["ping", &a.peer_id])?;
    ensure!(
        out.status.success(),
        "ping failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("rtt"),
        "no rtt in ping output"
    );
    let out = a.cli(&["ping", &b.peer_id, "--json"])?;
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        reply["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "bad ping reply {reply}"
    );
    // B's latency table, asked through A: B has measured A.
    let out = a.cli(&["rtt", &a.peer_id, "--from", &b.peer_id, "--json"])?;
    ensure!(
        out.status.success(),
        "rtt --from failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rtts: Vec<flotilla_node::views::RttView> = serde_json::from_slice(&out.stdout)?;
    ensure!(
        rtts.len() == 1 && rtts[0].peer_id.to_string() == a.peer_id && rtts[0].samples >= 1,
        "bad rtt table {rtts:?}"
    );
    let table = String::from_utf8(a.cli(&["rtt", &b.peer_id])?.stdout)?;
    ensure!(
        table.starts_with("PEER ID") && table.contains(&b.peer_id),
        "bad rtt table:\n{table}"
    );
    let out = a.cli(&[
        "rtt",
        &a.peer_id,
        "--from",
        &a.peer_id[..a.peer_id.len() - 1],
    ])?;
    ensure!(
        out.status.code() == Some(2),
        "a bad peer id is a usage error"
    );
    let mut many = vec!["rtt", "--from", &b.peer_id];
    many.extend(std::iter::repeat_n(a.peer_id.as_str(), 65));
    let out = a.cli(&many)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && stderr.contains("at most 64"),
        "65 peers must fail with the maximum: {:?} {stderr}",
        out.status
    );

    ensure!(
        a.status()?.connected == 1,
        "a should have exactly one connection"
    );
    let table = String::from_utf8(a.cli(&["peers"])?.stdout)?;
    ensure!(
        table.starts_with("PEER ID") && table.contains(&b.peer_id),
        "bad table:\n{table}"
    );
    Ok(())
}

#[test]
fn a_node_fetches_an_artefact_from_its_peer() -> anyhow::Result<()> {
    use sha2::Digest;
    let a = NodeProc::start(&[])?;
    let b = NodeProc::start(&["--bootstrap", a.tcp_addr()?])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sees_with_rtt(&b, &a.peer_id)? {
        ensure!(
            Instant::now() < deadline,
            "not connected within 60 s\nb: {}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let shelf = a._dir.path().join("data/artefacts/job-1");
    std::fs::create_dir_all(&shelf)?;
    let data: Vec<u8> = (0..(1u32 << 20) + 77)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    std::fs::write(shelf.join("out.bin"), &data)?;
    let out_dir = tempfile::tempdir()?;
    let dest = out_dir.path().join("got.bin");
    let dest_text = dest.display().to_string();

    let out = b.cli(&["fetch", &a.peer_id, "job-1/out.bin", "--out", &dest_text])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "fetch failed: {}\na: {}",
        String::from_utf8_lossy(&out.stderr),
        a.log()
    );
    let hash: String = sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ensure!(
        stdout.contains(&format!("sha256 {hash}")),
        "bad output: {stdout}"
    );
    ensure!(std::fs::read(&dest)? == data, "the fetched file differs");

    let out = b.cli(&["fetch", &a.peer_id, "../node.toml", "--out", &dest_text])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && stderr.contains("bad name"),
        "a bad name must be refused: {:?} {stderr}",
        out.status
    );
    Ok(())
}

#[test]
fn a_key_readable_by_others_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    flotilla_node::keystore::load_or_create(&data)?;
    let key = data.join(flotilla_node::keystore::KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    let out = run_with_timeout(
        Command::new(BIN)
            .args([
                "node",
                "run",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--api",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "node started with an unsafe key");
    ensure!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "no hint: {stderr}"
    );
    Ok(())
}

#[test]
fn client_errors_are_clear() -> anyhow::Result<()> {
    let out = run_with_timeout(Command::new(BIN).args(["--api", "127.0.0.1:1", "status"]))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "exit {:?}", out.status);
    ensure!(
        stderr.contains("cannot reach the node API at http://127.0.0.1:1"),
        "{stderr}"
    );
    let out = run_with_timeout(Command::new(BIN).args(["ping", "not-a-peer"]))?;
    ensure!(
        out.status.code() == Some(2),
        "bad arguments must exit 2: {:?}",
        out.status
    );
    let out = run_with_timeout(Command::new(BIN).args(["node", "run", "--api", "0.0.0.0:0"]))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && stderr.contains("not a loopback"),
        "{stderr}"
    );
    Ok(())
}

fn run_with_timeout(cmd: &mut Command) -> anyhow::Result<Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let deadline = Instant::now() + START_WAIT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("command did not exit within {START_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_do_not_bring_a_node_down() -> anyhow::Result<()> {
    let node = tokio::task::spawn_blocking(|| NodeProc::start(&[])).await??;
    let target: Multiaddr = node.tcp_addr()?.parse()?;
    let node_id: libp2p::PeerId = node.peer_id.parse()?;

    let mut raw = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            Default::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .build();
    let mut control = raw.behaviour().new_control();
    raw.dial(target)?;
    let raw_task = tokio::spawn(async move {
        loop {
            raw.select_next_some().await;
        }
    });
    let protocol = libp2p::StreamProtocol::new(flotilla_core::wire::PROTOCOL_NAME);
    let frames: [&[u8]; 2] = [&u32::MAX.to_be_bytes(), &[0, 0, 0, 3, 0xff, 0xff, 0xff]];
    for frame in frames {
        let mut stream = control.open_stream(node_id, protocol.clone()).await?;
        stream.write_all(frame).await?;
        stream.flush().await?;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await?;
        ensure!(
            matches!(read, Ok(0) | Err(_)),
            "the node kept a bad stream open: {read:?}"
        );
    }
    raw_task.abort();

    let metrics = tokio::task::spawn_blocking(move || -> anyhow::Result<(String, StatusView)> {
        let status = node.status()?;
        let url = format!("http://{}/metrics", node.api);
        let text = ureq::get(&url).call()?.body_mut().read_to_string()?;
        ensure!(
            node.log().contains("bad frame"),
            "no warning logged:\n{}",
            node.log()
        );
        Ok((text, status))
    })
    .await??;
    let (text, status) = metrics;
    ensure!(status.peer_id.to_string() == node_id.to_string());
    ensure!(
        text.contains("flotilla_frames_rejected_total{reason=\"oversized\"} 1"),
        "{text}"
    );
    ensure!(
        text.contains("flotilla_frames_rejected_total{reason=\"malformed\"} 1"),
        "{text}"
    );
    Ok(())
}

/// A raw libp2p peer on TCP that keeps idle connections open.
fn raw_peer() -> anyhow::Result<libp2p::Swarm<libp2p_stream::Behaviour>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            Default::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build())
}

/// Dials `target` from a new raw peer; returns whether the connection was established,
/// and the task keeping the peer running.
async fn connect(target: &Multiaddr) -> anyhow::Result<(bool, tokio::task::JoinHandle<()>)> {
    use libp2p::swarm::SwarmEvent;
    let mut peer = raw_peer()?;
    peer.dial(target.clone())?;
    let established = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match peer.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => return true,
                SwarmEvent::OutgoingConnectionError { .. } => return false,
                _ => {}
            }
        }
    })
    .await
    .context("the dial neither succeeded nor failed")?;
    let task = tokio::spawn(async move {
        loop {
            peer.select_next_some().await;
        }
    });
    Ok((established, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_and_reported() -> anyhow::Result<()> {
    let node = tokio::task::spawn_blocking(|| {
        NodeProc::start_with("[limits.system]\nconns_in = 2\n", &[])
    })
    .await??;
    let target: Multiaddr = node.tcp_addr()?.parse()?;

    let mut outcomes = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (established, task) = connect(&target).await?;
        outcomes.push(established);
        tasks.push(task);
    }
    ensure!(
        outcomes == [true, true, false],
        "expected two connections and a refusal, got {outcomes:?}; log:\n{}",
        node.log()
    );

    let checked = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        // The API's view: two inbound connections held, one refused.
        let out = node.cli(&["scopes", "--json", "--top", "5"])?;
        ensure!(
            out.status.success(),
            "scopes failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let view: flotilla_node::rcmgr::views::ScopesView = serde_json::from_slice(&out.stdout)?;
        let system = &view.scopes[0];
        ensure!(system.limits.scope == "system" && system.limits.conns_in == Some(2));
        ensure!(system.usage.conns_in == 2, "{:?}", system.usage);
        let refused: u64 = view
            .refusals
            .iter()
            .filter(|r| r.resource == "conns" && r.direction == "in")
            .map(|r| r.count)
            .sum();
        ensure!(refused == 1, "{:?}", view.refusals);
        ensure!(view.peers == 2 && view.top_peers.len() == 2, "{view:?}");

        let table = node.cli(&["scopes"])?;
        let table = String::from_utf8(table.stdout)?;
        ensure!(table.contains("refusals since start-up"), "{table}");
        ensure!(
            table
                .lines()
                .any(|l| l.starts_with("system") && l.contains("2/2")),
            "{table}"
        );

        let url = format!("http://{}/metrics", node.api);
        let metrics = ureq::get(&url).call()?.body_mut().read_to_string()?;
        ensure!(
            metrics.contains("flotilla_rcmgr_usage{scope=\"system\",resource=\"conns_in\"} 2"),
            "{metrics}"
        );
        ensure!(
            metrics.contains("flotilla_rcmgr_limit{scope=\"system\",resource=\"conns_in\"} 2"),
            "{metrics}"
        );
        ensure!(
            metrics
                .lines()
                .any(|l| l.starts_with("flotilla_rcmgr_refusals_total{")
                    && l.contains("resource=\"conns\",direction=\"in\"} 1")),
            "{metrics}"
        );
        ensure!(
            node.log().contains("resource limit refused"),
            "no warning:\n{}",
            node.log()
        );

        // The limits, from the node and from its config file alone.
        let live = node.cli(&["limits", "--json"])?;
        let live: flotilla_node::rcmgr::views::LimitsView = serde_json::from_slice(&live.stdout)?;
        let file = Command::new(BIN)
            .args(["limits", "--json", "--config"])
            .arg(&node.config)
            .output()?;
        ensure!(
            file.status.success(),
            "{}",
            String::from_utf8_lossy(&file.stderr)
        );
        let file: flotilla_node::rcmgr::views::LimitsView = serde_json::from_slice(&file.stdout)?;
        ensure!(live.scopes == file.scopes, "{live:?}\n{file:?}");
        ensure!(live.scopes[0].conns_in == Some(2));
        Ok(table)
    })
    .await??;
    for t in tasks {
        t.abort();
    }
    ensure!(!checked.is_empty());
    Ok(())
}

/// Six real nodes of different profiles on loopback: a hub everyone bootstraps from, three
/// big nodes keeping only peers of at least 4 cores, a one-core node, and a node with high
/// watermark 3. The big nodes find each other and never keep the small node (they drop it
/// by their filter); the limited node never counts more than 3 peers, refusing or trimming
/// the rest; `flotilla peers --known --cores-min 4` on the hub leaves the small node out.
#[test]
fn filters_and_watermarks_shape_six_real_nodes() -> anyhow::Result<()> {
    let fast = "maintain_interval_s = 1\nexchange_interval_s = 5\n";
    let hub = NodeProc::start_full(
        &format!("{fast}high_watermark = 16\n"),
        "[resources]\ncores = 8\n",
        &[],
    )?;
    let boot = format!("{}/p2p/{}", hub.tcp_addr()?, hub.peer_id);
    let join = ["--bootstrap", boot.as_str()];
    let big_peers =
        format!("{fast}low_watermark = 4\n\n[peers.filter]\nresources_min = {{ cores = 4 }}\n");
    let mut bigs = Vec::new();
    for _ in 0..3 {
        bigs.push(NodeProc::start_full(
            &big_peers,
            "[resources]\ncores = 8\n",
            &join,
        )?);
    }
    let small = NodeProc::start_full(
        &format!("{fast}low_watermark = 4\n"),
        "[resources]\ncores = 1\n",
        &join,
    )?;
    let limited = NodeProc::start_full(
        &format!("{fast}low_watermark = 1\nhigh_watermark = 3\nconn_grace_s = 1\n"),
        "[resources]\ncores = 8\n",
        &join,
    )?;

    let deadline = Instant::now() + Duration::from_secs(40);
    let mut limited_most = 0;
    let mut samples = 0;
    let meshed = |bigs: &[NodeProc]| -> anyhow::Result<bool> {
        for a in bigs {
            for b in bigs {
                if a.peer_id != b.peer_id && !sees_with_rtt(a, &b.peer_id)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    loop {
        limited_most = limited_most.max(limited.status()?.connected);
        samples += 1;
        let done = meshed(&bigs)? && samples >= 20;
        if done || Instant::now() > deadline {
            ensure!(done, "the big nodes did not find each other in 40 s");
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Keep sampling the limited node a while longer: everyone keeps dialling it.
    for _ in 0..10 {
        limited_most = limited_most.max(limited.status()?.connected);
        std::thread::sleep(Duration::from_millis(300));
    }
    ensure!(
        limited_most <= 3,
        "the node with high watermark 3 counted {limited_most} peers"
    );
    ensure!(limited_most >= 1, "the limited node never connected");
    let log = limited.log();
    ensure!(
        [
            "reason=full",
            "reason=refused",
            "reason=trim",
            "connections trimmed"
        ]
        .iter()
        .any(|m| log.contains(m)),
        "the limited node neither refused nor trimmed anyone; log:\n{log}"
    );

    for big in &bigs {
        let peers = big.peers()?;
        ensure!(
            !peers
                .iter()
                .any(|p| p.peer_id.to_string() == small.peer_id && p.direction.is_some()),
            "a big node keeps the one-core node"
        );
    }
    let dropped = bigs.iter().any(|b| {
        b.log()
            .lines()
            .any(|l| l.contains(&small.peer_id) && l.contains("reason=filter"))
    });
    eprintln!(
        "limited node: at most {limited_most} peers in {samples} samples; small node dropped by a filter: {dropped}"
    );
    ensure!(
        dropped,
        "no big node dropped the one-core node by its filter"
    );

    let out = hub.cli(&["peers", "--known", "--cores-min", "4", "--json"])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<PeerView> = serde_json::from_slice(&out.stdout)?;
    ensure!(
        !listed
            .iter()
            .any(|p| p.peer_id.to_string() == small.peer_id),
        "--cores-min 4 listed the one-core node"
    );
    ensure!(
        listed.len() >= 4,
        "the hub lists only {} peers of 4 cores or more",
        listed.len()
    );
    Ok(())
}
