//! Jobs end to end with real `flotilla` processes and the local Docker daemon: a service
//! provider deploys a busybox job on a compute provider, follows it to completion and
//! fetches the file the job wrote to `/artefacts`, and the running provider onboards more
//! through the CLI; a provider refuses to offboard what its running job holds, and killed
//! with SIGKILL while the job runs finds it again after a restart.
//! `request_to_running_benchmark` (ignored; `just bench-deploy`) measures request to
//! running against `docker run`.
//!
//! Without a daemon (or without `/bin/busybox`) the tests are skipped with a message, unless
//! the `CI` environment variable is set: there they fail.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use flotilla_core::deployment::DeployState;
use flotilla_core::jobs::DeploymentView;
use flotilla_node::executor::ExecError;
use flotilla_node::executor::docker::{BUSYBOX_PATH, DockerExecutor};
use flotilla_node::views::PeerView;
use flotilla_node::views::resources::ResourcesView;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const IMAGE: &str = "flotilla-busybox:test";
const START_WAIT: Duration = Duration::from_secs(15);

/// Builds the test image, or says why the tests cannot run (false: skipped).
fn docker_ready() -> bool {
    let ci = std::env::var_os("CI").is_some();
    let skip = |why: String| {
        assert!(!ci, "CI is set, so the Docker job tests must run: {why}");
        eprintln!("skipping the Docker job test: {why}");
        false
    };
    if !Path::new(BUSYBOX_PATH).exists() {
        return skip(format!(
            "{BUSYBOX_PATH} is missing (apt-get install busybox-static)"
        ));
    }
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        match DockerExecutor::connect().await {
            Ok(d) => {
                d.build_busybox_image(IMAGE, Path::new(BUSYBOX_PATH))
                    .await
                    .expect("building the busybox image");
                true
            }
            Err(e @ ExecError::Unreachable { .. }) => skip(e.to_string()),
            Err(e) => panic!("connecting to Docker: {e}"),
        }
    })
}

/// A running `flotilla node run` on its own data directory, killed when dropped.
struct NodeProc {
    child: Child,
    peer_id: String,
    tcp: String,
    api: String,
    dir: PathBuf,
    stderr: PathBuf,
}

impl NodeProc {
    /// Starts a node in `dir` (kept across restarts) with `toml` as its config file.
    fn start(dir: &Path, toml: &str, extra: &[&str]) -> anyhow::Result<NodeProc> {
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            format!("region = \"test\"\n{toml}\n[peers]\nping_interval_s = 2\n"),
        )?;
        // One log per start, so that a restart's log stands on its own.
        let stderr = dir.join(format!("stderr-{}.log", std::fs::read_dir(dir)?.count()));
        let mut child = Command::new(BIN)
            .args(["node", "run", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"])
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
            tcp: String::new(),
            api: String::new(),
            dir: dir.to_path_buf(),
            stderr,
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
                node.tcp = addr.to_string();
            } else if let Some(url) = line.strip_prefix("api: http://") {
                node.api = url.to_string();
            }
        }
        Ok(node)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(BIN)
            .arg("--api")
            .arg(&self.api)
            .args(args)
            .output()?)
    }

    /// Runs the CLI without `--api`: it finds the node on its own.
    fn cli_plain(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(BIN).args(args).output()?)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> anyhow::Result<T> {
        let out = self.cli(args)?;
        ensure!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn resources(&self) -> anyhow::Result<ResourcesView> {
        let url = format!("http://{}/resources", self.api);
        let body = ureq::get(&url).call()?.body_mut().read_to_string()?;
        Ok(serde_json::from_str(&body)?)
    }

    fn deployment(&self, id: u64) -> anyhow::Result<DeploymentView> {
        self.json(&["deployments", "status", &id.to_string(), "--json"])
    }

    /// Kills the process with SIGKILL, as a crash would.
    fn kill9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.clone()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A service provider and a compute provider (docker, half this machine onboarded, only the
/// service provider allowed to deploy), connected.
fn pair(root: &Path) -> anyhow::Result<(NodeProc, NodeProc)> {
    let sp_dir = root.join("sp");
    let cp_dir = root.join("cp");
    std::fs::create_dir_all(&sp_dir)?;
    std::fs::create_dir_all(&cp_dir)?;
    let sp = NodeProc::start(&sp_dir, "", &[])?;
    let cp = start_cp(&cp_dir, &sp, true)?;
    wait_connected(&sp, &cp)?;
    Ok((sp, cp))
}

fn start_cp(dir: &Path, sp: &NodeProc, onboard: bool) -> anyhow::Result<NodeProc> {
    if onboard {
        let data = dir.join("data");
        let out = Command::new(BIN)
            .args(["onboard", "--share", "50%", "--data-dir"])
            .arg(&data)
            .output()?;
        ensure!(
            out.status.success(),
            "onboard: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let toml = format!(
        "[resources]\nexecutors = [\"docker\"]\n[jobs]\nrequesters = [\"{}\"]\nports = \"31000-31099\"\n",
        sp.peer_id
    );
    NodeProc::start(dir, &toml, &["--bootstrap", &sp.tcp])
}

fn wait_connected(sp: &NodeProc, cp: &NodeProc) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peers: Vec<PeerView> = sp.json(&["peers", "--json"])?;
        if peers.iter().any(|p| p.peer_id.to_string() == cp.peer_id) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "not connected in 30 s:\n{}",
            cp.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Deploys `job` from `sp` (its first deployment) and waits until it runs on `cp`.
fn deploy_until_running(sp: &NodeProc, cp: &NodeProc, job: &Path) -> anyhow::Result<()> {
    let out = sp.cli(&["deploy", job.to_str().context("path")?])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while sp.deployment(1)?.state != DeployState::Running {
        ensure!(
            Instant::now() < deadline,
            "not running in 30 s:\n{}",
            cp.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn write_job(dir: &Path, script: &str, duration_s: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join("job.toml");
    std::fs::write(
        &path,
        format!(
            "image = \"{IMAGE}\"\ncommand = [\"/bin/sh\", \"-c\", \"{script}\"]\n\
             duration_s = {duration_s}\n[resources]\ncores = 0.5\nmemory_mb = 64\n"
        ),
    )?;
    Ok(path)
}

#[test]
fn a_service_provider_runs_a_busybox_job_on_a_compute_provider() -> anyhow::Result<()> {
    if !docker_ready() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let (sp, cp) = pair(root.path())?;
    let before = cp.resources()?;
    ensure!(!before.onboarded.is_zero(), "nothing onboarded: {before:?}");
    assert_eq!(before.available, before.onboarded);

    let job = write_job(
        root.path(),
        "echo hello from the job; echo oops >&2; echo the result > /artefacts/result.txt; echo done",
        60,
    )?;
    let out = sp.cli(&["deploy", job.to_str().context("path")?, "--follow"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "deploy failed: {}\n{stdout}\nsp:\n{}\ncp:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sp.log(),
        cp.log()
    );
    eprintln!("{stdout}");
    let at = |needle: &str| {
        stdout
            .find(needle)
            .with_context(|| format!("{needle:?} missing"))
    };
    let running = at("[running]")?;
    let hello = at("hello from the job")?;
    let oops = at("! oops")?;
    let completed = at("[completed]")?;
    ensure!(
        running < completed && hello < completed && oops < completed,
        "order: {stdout}"
    );

    let d = sp.deployment(1)?;
    assert_eq!(d.state, DeployState::Completed);
    assert_eq!(d.workers.len(), 1);
    assert_eq!(d.workers[0].0.to_string(), cp.peer_id);
    // The provider's capacity is back where it started.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = cp.resources()?;
        if now.available == before.available {
            assert_eq!(now.allocations.len(), 1);
            assert_eq!(now.allocations[0].state, "completed");
            assert_eq!(now.stats.commits_accepted, 1);
            break;
        }
        ensure!(Instant::now() < deadline, "capacity not restored: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The file the job wrote to /artefacts, fetched by its requester over the transfer
    // protocol from the provider's artefact directory of this deployment.
    let status = sp.cli(&["deployments", "status", "1"])?;
    let status = String::from_utf8_lossy(&status.stdout);
    let hint = format!("flotilla fetch PROVIDER d1-{}/FILE", sp.peer_id);
    ensure!(status.contains(&hint), "{hint:?} not in:\n{status}");
    let name = format!("d1-{}/result.txt", sp.peer_id);
    let on_cp = cp.dir.join("data/artefacts").join(&name);
    ensure!(on_cp.exists(), "{} missing:\n{}", on_cp.display(), cp.log());
    let fetched = root.path().join("result.txt");
    let out = sp.cli(&[
        "fetch",
        &cp.peer_id,
        &name,
        "--out",
        fetched.to_str().context("path")?,
    ])?;
    ensure!(
        out.status.success(),
        "fetch failed: {}\ncp:\n{}",
        String::from_utf8_lossy(&out.stderr),
        cp.log()
    );
    assert_eq!(std::fs::read_to_string(&fetched)?, "the result\n");
    // Another deployment's directory is not there to be fetched.
    let missing = sp.cli(&[
        "fetch",
        &cp.peer_id,
        &format!("d2-{}/result.txt", sp.peer_id),
        "--out",
        root.path().join("none.txt").to_str().context("path")?,
    ])?;
    ensure!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    ensure!(err.contains("no such file"), "{err}");

    let url = format!("http://{}/metrics", cp.api);
    let metrics = ureq::get(&url).call()?.body_mut().read_to_string()?;
    ensure!(
        metrics.contains("flotilla_allocations_total{state=\"completed\"} 1"),
        "{metrics}"
    );
    // Onboarding while the provider runs: found through its data directory, applied to the
    // live ledger at once and kept in the store.
    let data = cp.dir.join("data");
    let data = data.to_str().context("path")?;
    let out = cp.cli_plain(&[
        "onboard",
        "--cores",
        "1",
        "--share",
        "50%",
        "--data-dir",
        data,
    ])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("applied by the running node"),
        "onboard: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = cp.resources()?;
    assert_eq!(live.onboarded.millicores, 1000);
    assert_eq!(live.onboarded.memory_mb, before.onboarded.memory_mb);
    let report: flotilla_node::onboarding::ResourcesReport = serde_json::from_slice(
        &cp.cli_plain(&["resources", "--json", "--data-dir", data])?
            .stdout,
    )?;
    assert_eq!(report.live.map(|l| l.onboarded), Some(live.onboarded));
    assert_eq!(report.stored.map(|o| o.onboarded), Some(live.onboarded));

    // A bad spec is refused before anything is sent, with its line and key.
    std::fs::write(
        root.path().join("bad.toml"),
        "image = \"x\"\nduration_s = 0\n",
    )?;
    let bad = sp.cli(&[
        "deploy",
        root.path().join("bad.toml").to_str().context("path")?,
    ])?;
    ensure!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    ensure!(err.contains("bad.toml"), "{err}");
    Ok(())
}

#[test]
fn a_provider_killed_mid_job_finds_its_container_again() -> anyhow::Result<()> {
    if !docker_ready() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let (sp, cp) = pair(root.path())?;
    let job = write_job(root.path(), "echo started; sleep 6; echo finished", 120)?;
    deploy_until_running(&sp, &cp, &job)?;
    // Offboarding what the job holds is refused, naming it.
    let data = cp.dir.join("data");
    let out = cp.cli_plain(&["offboard", "--data-dir", data.to_str().context("path")?])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("allocation 1 (running"),
        "offboard: {err}"
    );
    ensure!(!cp.resources()?.onboarded.is_zero());
    let cp_dir = cp.kill9();
    let cp = start_cp(&cp_dir, &sp, false)?;
    let log = cp.log();
    ensure!(
        log.contains("re-attached to a running job"),
        "no re-attach:\n{log}"
    );
    let r = cp.resources()?;
    ensure!(
        r.allocations
            .iter()
            .any(|a| a.id == 1 && a.state == "running"),
        "allocation not restored: {r:?}"
    );
    ensure!(
        r.allocated.millicores == 500,
        "capacity not held again: {r:?}"
    );
    // The job ends on its own; the provider reports it and the requester completes.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let d = sp.deployment(1)?;
        if d.state == DeployState::Completed {
            break;
        }
        ensure!(
            Instant::now() < deadline && !d.state.is_terminal(),
            "deployment {d:?}\ncp:\n{}",
            cp.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = cp.resources()?;
    ensure!(r.allocated.is_zero() && r.available == r.onboarded, "{r:?}");
    Ok(())
}

/// Request to running, median of 20, against `docker run` of the same image.
#[test]
#[ignore = "a benchmark: `just bench-deploy`"]
fn request_to_running_benchmark() -> anyhow::Result<()> {
    if !docker_ready() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let (sp, cp) = pair(root.path())?;
    let job = write_job(root.path(), "echo up", 60)?;
    let job_text = std::fs::read_to_string(&job)?;
    let mut ours = Vec::new();
    for i in 1..=20u64 {
        let t = Instant::now();
        // Pinned: the bid phase ends with the provider's bid rather than at the deadline a
        // broadcast request waits for.
        let url = format!(
            "http://{}/deployments?file=job.toml&pin={}",
            sp.api, cp.peer_id
        );
        ureq::post(&url).send(job_text.as_str())?;
        loop {
            let d = sp.deployment(i)?;
            if d.state == DeployState::Running || d.state == DeployState::Completed {
                break;
            }
            ensure!(!d.state.is_terminal(), "{d:?}\n{}", cp.log());
            std::thread::sleep(Duration::from_millis(2));
        }
        ours.push(t.elapsed());
        // One at a time: the next starts once this one has ended and freed its capacity.
        while !sp.deployment(i)?.state.is_terminal() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut theirs = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let out = Command::new("docker")
            .args([
                "run", "--rm", "--cpus", "0.5", "-m", "64m", IMAGE, "/bin/sh", "-c", "echo up",
            ])
            .output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        theirs.push(t.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut ours), median(&mut theirs));
    println!(
        "request to running (deploy over the network, bid, commit, start): median {:.1} ms of 20",
        a.as_secs_f64() * 1e3
    );
    println!(
        "docker run --rm (create, start, run `echo up`, exit, remove): median {:.1} ms of 20",
        b.as_secs_f64() * 1e3
    );
    println!("ratio: {:.2}", a.as_secs_f64() / b.as_secs_f64());
    Ok(())
}

#[test]
fn a_requester_killed_mid_job_takes_its_deployment_back() -> anyhow::Result<()> {
    if !docker_ready() {
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let (sp, cp) = pair(root.path())?;
    let job = write_job(root.path(), "echo started; sleep 3; echo finished", 120)?;
    deploy_until_running(&sp, &cp, &job)?;
    // The requester dies; the job ends while it is away, so the provider's report waits.
    let sp_dir = sp.kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = cp.resources()?;
        if r.allocations
            .iter()
            .any(|a| a.id == 1 && a.state == "completed")
        {
            break;
        }
        ensure!(Instant::now() < deadline, "job did not end: {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Restarted on the same data dir (a new port: it finds the provider itself), the
    // requester takes the deployment back, asks its worker, and sees it completed.
    let sp = NodeProc::start(&sp_dir, "", &["--bootstrap", &cp.tcp])?;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let d = sp.deployment(1)?;
        if d.state == DeployState::Completed {
            ensure!(
                d.transitions
                    .iter()
                    .any(|t| t.2.contains("restored after a restart")),
                "{d:?}"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline && !d.state.is_terminal(),
            "deployment {d:?}\nsp:\n{}\ncp:\n{}",
            sp.log(),
            cp.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(
        sp.log().contains("deployment restored after a restart"),
        "{}",
        sp.log()
    );
    Ok(())
}
