//! The Docker executor against the real local daemon, on a busybox image built here
//! `FROM scratch` (no registry is reachable): output lines on the right streams, exit status,
//! limits and port bindings, a graceful stop, re-attaching by label after a "restart", and
//! removal.
//!
//! Without a daemon (or without `/bin/busybox`) the test is skipped with a message, unless the
//! `CI` environment variable is set: there it fails with the executor's error.

use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_node::executor::docker::{BUSYBOX_PATH, DockerExecutor};
use flotilla_node::executor::{
    ALLOCATION_LABEL, BindMount, ExecError, ExecSpec, Executor, LogLine, LogStream, PortBinding,
};
use futures::StreamExt;

const IMAGE: &str = "flotilla-busybox:test";
/// A bound on each step, so a stuck daemon fails the test rather than hanging it.
const STEP: Duration = Duration::from_secs(20);

/// Connects and builds the image, or says why the test cannot run (`None`: skipped).
async fn setup() -> Option<DockerExecutor> {
    let ci = std::env::var_os("CI").is_some();
    let skip = |why: String| {
        assert!(!ci, "CI is set, so the Docker test must run: {why}");
        eprintln!("skipping the Docker executor test: {why}");
    };
    if !Path::new(BUSYBOX_PATH).exists() {
        skip(format!(
            "{BUSYBOX_PATH} is missing (apt-get install busybox-static)"
        ));
        return None;
    }
    let docker = match DockerExecutor::connect().await {
        Ok(d) => d,
        Err(e @ ExecError::Unreachable { .. }) => {
            skip(e.to_string());
            return None;
        }
        Err(e) => panic!("connecting to Docker: {e}"),
    };
    let t = Instant::now();
    let built = docker
        .build_busybox_image(IMAGE, Path::new(BUSYBOX_PATH))
        .await
        .expect("building the busybox image");
    eprintln!(
        "image {IMAGE}: {} in {:?}",
        if built { "built" } else { "already present" },
        t.elapsed()
    );
    Some(docker)
}

/// A name and allocation id no other run shares.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    format!("flotilla-test-{prefix}-{}-{nanos}", std::process::id())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than {STEP:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_executor_runs_stops_finds_and_removes_containers() {
    let Some(docker) = setup().await else { return };

    // A missing image is refused with a message saying how to build it.
    let missing = ExecSpec::new(unique("missing"), "flotilla-no-such-image:1", ["/bin/sh"]);
    let e = docker.create_and_start(&missing).await.unwrap_err();
    assert!(matches!(e, ExecError::ImageMissing { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("cannot be pulled here; build it with"),
        "{e}"
    );
    // An invalid spec never reaches the daemon.
    let invalid = ExecSpec {
        memory_bytes: Some(1024),
        ..ExecSpec::new(unique("bad"), IMAGE, ["/bin/sh"])
    };
    assert!(matches!(
        docker.create_and_start(&invalid).await,
        Err(ExecError::InvalidSpec(_))
    ));

    // A job that writes to both streams and exits 0, with limits and a published port.
    let port = free_port();
    let mut spec = ExecSpec::new(
        unique("echo"),
        IMAGE,
        [
            "/bin/sh",
            "-c",
            "for i in 1 2 3; do echo out-$i; echo err-$i >&2; done; echo \"$GREETING\"",
        ],
    )
    .with_cpu_cores(0.5);
    spec.memory_bytes = Some(64 << 20);
    spec.env.insert("GREETING".into(), "hello from env".into());
    spec.ports.push(PortBinding {
        host_port: port,
        container_port: 8080,
    });
    spec.labels.insert(ALLOCATION_LABEL.into(), unique("alloc"));
    let t = Instant::now();
    let job = step("create and start", docker.create_and_start(&spec))
        .await
        .unwrap();
    let started = t.elapsed();
    let lines: Vec<LogLine> = step("logs", docker.logs(&job).map(|l| l.unwrap()).collect()).await;
    let status = step("wait", docker.wait(&job)).await.unwrap();
    let run = t.elapsed();
    eprintln!("echo job: create+start {started:?}, start to exit and all logs {run:?}");
    let on = |s: LogStream| {
        lines
            .iter()
            .filter(|l| l.stream == s)
            .map(|l| l.line.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        on(LogStream::Stdout),
        ["out-1", "out-2", "out-3", "hello from env"],
        "{lines:?}"
    );
    assert_eq!(
        on(LogStream::Stderr),
        ["err-1", "err-2", "err-3"],
        "{lines:?}"
    );
    assert!(status.success(), "{status:?}");
    let state = docker.inspect(&job).await.unwrap();
    assert!(!state.running);
    assert_eq!(state.exit_code, Some(0));
    assert_eq!(state.name, spec.name);
    assert_eq!(state.cpu_nanos, Some(500_000_000));
    assert_eq!(state.memory_bytes, Some(64 << 20));
    assert_eq!(
        state.ports,
        vec![PortBinding {
            host_port: port,
            container_port: 8080
        }]
    );
    assert_eq!(
        state.labels.get(ALLOCATION_LABEL),
        spec.labels.get(ALLOCATION_LABEL)
    );
    // A non-zero exit is a status, not an error.
    let fail = ExecSpec::new(unique("fail"), IMAGE, ["/bin/sh", "-c", "exit 3"]);
    let failed = docker.create_and_start(&fail).await.unwrap();
    assert_eq!(step("wait", docker.wait(&failed)).await.unwrap().code, 3);
    docker.remove(&failed).await.unwrap();
    // Without a command the image's own runs (the test image's `/bin/sh`, which exits 0
    // without input), with a host directory mounted writable.
    let shared = tempfile::tempdir().unwrap();
    let mut own = ExecSpec::new(unique("own"), IMAGE, Vec::<String>::new());
    own.mounts.push(BindMount {
        host: shared.path().to_path_buf(),
        container: "/artefacts".into(),
        read_only: false,
    });
    let ran = docker.create_and_start(&own).await.unwrap();
    assert!(step("wait", docker.wait(&ran)).await.unwrap().success());
    assert_eq!(docker.inspect(&ran).await.unwrap().mounts, own.mounts);
    docker.remove(&ran).await.unwrap();

    // A long job, found again by its allocation label from a fresh executor, then stopped.
    let allocation = unique("alloc");
    let mut long = ExecSpec::new(
        unique("sleep"),
        IMAGE,
        [
            "/bin/sh",
            "-c",
            "trap 'echo stopping; exit 143' TERM; echo up; sleep 60 & wait",
        ],
    );
    long.labels
        .insert(ALLOCATION_LABEL.into(), allocation.clone());
    let sleeper = docker.create_and_start(&long).await.unwrap();
    let mut logs = docker.logs(&sleeper);
    let first = step("first line", logs.next()).await.unwrap().unwrap();
    assert_eq!(first.line, "up");
    let restarted = DockerExecutor::connect().await.unwrap();
    let found = restarted.find(ALLOCATION_LABEL, &allocation).await.unwrap();
    assert_eq!(found, vec![sleeper.clone()]);
    assert!(restarted.is_running(&found[0]).await.unwrap());
    assert!(
        restarted
            .find(ALLOCATION_LABEL, &unique("nobody"))
            .await
            .unwrap()
            .is_empty()
    );
    let grace = Duration::from_secs(10);
    let t = Instant::now();
    step("stop", restarted.stop(&found[0], grace))
        .await
        .unwrap();
    let stopped_in = t.elapsed();
    eprintln!("sleep job: stopped in {stopped_in:?} (grace {grace:?})");
    assert!(
        stopped_in < grace / 2,
        "the job handles TERM, so stop must not wait out the grace: {stopped_in:?}"
    );
    assert_eq!(
        step("wait", restarted.wait(&found[0])).await.unwrap().code,
        143
    );
    assert!(!restarted.is_running(&found[0]).await.unwrap());
    let rest: Vec<String> = step("rest of logs", logs.map(|l| l.unwrap().line).collect()).await;
    assert_eq!(rest, ["stopping"]);
    // Stopping again is harmless.
    restarted.stop(&found[0], grace).await.unwrap();

    // Removal: gone from inspect and find; removing twice is harmless.
    for handle in [&job, &sleeper] {
        docker.remove(handle).await.unwrap();
        assert!(matches!(
            docker.inspect(handle).await,
            Err(ExecError::NotFound(_))
        ));
        docker.remove(handle).await.unwrap();
    }
    assert!(
        docker
            .find(ALLOCATION_LABEL, &allocation)
            .await
            .unwrap()
            .is_empty()
    );
}
