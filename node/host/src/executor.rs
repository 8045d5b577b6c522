//! Executors: what runs a job's container on a compute provider.
//!
//! The job flow speaks to an [`Executor`]: it creates and starts a container from an
//! [`ExecSpec`], follows its log lines, waits for its exit, stops and removes it, and after a
//! restart finds its still-running containers again by label. [`docker::DockerExecutor`] is
//! the production executor, on the local Docker daemon; [`runner`] runs the core's jobs on
//! it, and [`artefacts`] names the directory each job writes its results to.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flotilla_node::executor::ExecError> {
//! use flotilla_node::executor::{ExecSpec, Executor, docker::DockerExecutor};
//! let docker = DockerExecutor::connect().await?;
//! let spec = ExecSpec::new("job-1", "flotilla-busybox:test", ["/bin/sh", "-c", "echo hi"]);
//! let handle = docker.create_and_start(&spec).await?;
//! let status = docker.wait(&handle).await?;
//! docker.remove(&handle).await?;
//! # let _ = status; Ok(()) }
//! ```

pub mod artefacts;
pub mod docker;
pub mod runner;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures::stream::BoxStream;

/// Label carrying the allocation a container runs for; [`Executor::find`] re-attaches by it.
pub const ALLOCATION_LABEL: &str = "flotilla.allocation";

/// The smallest memory limit Docker accepts, in bytes (6 MiB).
pub const MEMORY_MIN_BYTES: u64 = 6 * 1024 * 1024;

/// One nano-CPU is a billionth of a core.
pub const NANO_CPUS_PER_CORE: u64 = 1_000_000_000;

/// What to run: everything an executor needs to start one job's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// The container's name, unique on the host (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
    pub name: String,
    /// A locally present image (nothing is pulled).
    pub image: String,
    /// The command and its arguments; replaces the image's default command unless empty.
    pub command: Vec<String>,
    /// Environment variables, name to value.
    pub env: BTreeMap<String, String>,
    /// CPU limit in nano-CPUs (1e9 is one core); `None` leaves the CPU unlimited.
    pub cpu_nanos: Option<u64>,
    /// Memory limit in bytes, at least [`MEMORY_MIN_BYTES`]; `None` leaves it unlimited.
    pub memory_bytes: Option<u64>,
    /// TCP ports published on the host.
    pub ports: Vec<PortBinding>,
    /// Labels put on the container, such as [`ALLOCATION_LABEL`].
    pub labels: BTreeMap<String, String>,
    /// Host directories mounted into the container.
    pub mounts: Vec<BindMount>,
}

/// A host directory the container sees at `container`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BindMount {
    /// The directory on the host: absolute, UTF-8, and existing when the container starts.
    pub host: PathBuf,
    /// Where the container sees it: an absolute path other than `/`.
    pub container: String,
    /// Whether the container may only read it.
    pub read_only: bool,
}

/// A host TCP port forwarded to a container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortBinding {
    pub host_port: u16,
    pub container_port: u16,
}

/// A started container, as the executor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle {
    /// The executor's identifier (Docker's container id).
    pub id: String,
}

/// Which output stream a log line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line of a container's output, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub line: String,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The main process's exit code (128 + signal number when killed by a signal).
    pub code: i64,
}

impl ExitStatus {
    /// Whether the job exited with code 0.
    pub fn success(self) -> bool {
        self.code == 0
    }
}

/// What the executor reports about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecState {
    pub name: String,
    pub running: bool,
    /// The exit code once the container has stopped.
    pub exit_code: Option<i64>,
    pub cpu_nanos: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub ports: Vec<PortBinding>,
    pub labels: BTreeMap<String, String>,
    /// Its bind mounts, in order of container path.
    pub mounts: Vec<BindMount>,
}

/// Why an executor could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The container engine does not answer.
    #[error(
        "cannot reach the Docker daemon at {endpoint}: is it running? start it (`systemctl start docker` or `dockerd`) or set DOCKER_HOST to its socket ({reason})"
    )]
    Unreachable { endpoint: String, reason: String },
    /// The image is not on this machine, and no registry can be reached to pull it.
    #[error(
        "image {image} is not present locally and cannot be pulled here; build it with `docker build -t {image} ...` (a FROM scratch image with a static busybox will do for tests)"
    )]
    ImageMissing { image: String },
    /// The job spec cannot be run as written.
    #[error("invalid job spec: {0}")]
    InvalidSpec(String),
    /// No container by this handle (it was removed, or never existed).
    #[error("no container {0} on this machine: it was removed or never started")]
    NotFound(String),
    /// A file needed to build an image is missing or unreadable.
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    /// The engine refused or failed an operation.
    #[error("docker could not {action}: {reason}")]
    Engine { action: String, reason: String },
}

impl ExecSpec {
    /// A spec with no limits, ports, env or labels.
    pub fn new(
        name: impl Into<String>,
        image: impl Into<String>,
        command: impl IntoIterator<Item = impl Into<String>>,
    ) -> ExecSpec {
        ExecSpec {
            name: name.into(),
            image: image.into(),
            command: command.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cpu_nanos: None,
            memory_bytes: None,
            ports: Vec::new(),
            labels: BTreeMap::new(),
            mounts: Vec::new(),
        }
    }

    /// Sets the CPU limit in cores (fractions allowed, e.g. 0.5).
    pub fn with_cpu_cores(mut self, cores: f64) -> ExecSpec {
        // Rounds to whole nano-CPUs; validate() refuses what is not positive and finite.
        let nanos = cores * NANO_CPUS_PER_CORE as f64;
        self.cpu_nanos = Some(if nanos.is_finite() && nanos > 0.0 {
            nanos.round() as u64
        } else {
            0
        });
        self
    }

    /// Checks everything the engine would refuse, with a message saying what to fix.
    pub fn validate(&self) -> Result<(), ExecError> {
        let bad = |m: String| Err(ExecError::InvalidSpec(m));
        let name_ok = self.name.len() >= 2
            && self.name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !name_ok {
            return bad(format!(
                "name {:?} must be 2 or more of a-z, A-Z, 0-9, '_', '.', '-', starting with a letter or digit",
                self.name
            ));
        }
        if self.image.trim().is_empty() || self.image.contains(char::is_whitespace) {
            return bad(format!(
                "image {:?} must be a non-empty image reference without spaces",
                self.image
            ));
        }
        if self.command.first().is_some_and(String::is_empty) {
            return bad(
                "command must name a program to run (or be empty for the image's own)".into(),
            );
        }
        if let Some(key) = self
            .env
            .keys()
            .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return bad(format!(
                "env name {key:?} must be non-empty, without '=' or NUL"
            ));
        }
        if self.cpu_nanos == Some(0) {
            return bad("cpu limit must be more than 0 cores (leave it unset for no limit)".into());
        }
        if let Some(m) = self.memory_bytes.filter(|m| *m < MEMORY_MIN_BYTES) {
            return bad(format!(
                "memory limit {m} bytes is below Docker's minimum of {MEMORY_MIN_BYTES} bytes (6 MiB)"
            ));
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.host_port == 0 || p.container_port == 0 {
                return bad(format!(
                    "port binding {}:{} uses port 0",
                    p.host_port, p.container_port
                ));
            }
            if self.ports[..i].iter().any(|q| q.host_port == p.host_port) {
                return bad(format!("host port {} is bound twice", p.host_port));
            }
        }
        if self.labels.keys().any(|k| k.is_empty()) {
            return bad("label names must be non-empty".into());
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if !m.host.is_absolute() || m.host.to_str().is_none() {
                return bad(format!(
                    "mount source {} must be an absolute UTF-8 path",
                    m.host.display()
                ));
            }
            let inside = m.container.strip_prefix('/').unwrap_or_default();
            if inside.is_empty()
                || inside
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
                || m.container.contains(':')
            {
                return bad(format!(
                    "mount target {:?} must be an absolute path below / without empty, `.` or `..` components or ':', e.g. /artefacts",
                    m.container
                ));
            }
            if self.mounts[..i].iter().any(|n| n.container == m.container) {
                return bad(format!("mount target {} is mounted twice", m.container));
            }
        }
        Ok(())
    }
}

/// What the job flow needs from a container engine.
///
/// Methods take `&self` and may run concurrently for different containers.
pub trait Executor: Send + Sync {
    /// Creates the container described by `spec` and starts it.
    fn create_and_start(
        &self,
        spec: &ExecSpec,
    ) -> impl Future<Output = Result<Handle, ExecError>> + Send;

    /// The container's output from its start, line by line, following until it exits.
    fn logs(&self, handle: &Handle) -> BoxStream<'static, Result<LogLine, ExecError>>;

    /// Waits for the container to exit (at once if it already has).
    fn wait(&self, handle: &Handle) -> impl Future<Output = Result<ExitStatus, ExecError>> + Send;

    /// Asks the container to stop, killing it once `grace` has passed. Stopping a stopped
    /// container is not an error.
    fn stop(
        &self,
        handle: &Handle,
        grace: Duration,
    ) -> impl Future<Output = Result<(), ExecError>> + Send;

    /// Removes the container (killing it if still running). Removing a removed one is not an
    /// error.
    fn remove(&self, handle: &Handle) -> impl Future<Output = Result<(), ExecError>> + Send;

    /// The container's state, limits, ports and labels.
    fn inspect(&self, handle: &Handle)
    -> impl Future<Output = Result<ExecState, ExecError>> + Send;

    /// Whether the container is running.
    fn is_running(&self, handle: &Handle) -> impl Future<Output = Result<bool, ExecError>> + Send {
        async move { Ok(self.inspect(handle).await?.running) }
    }

    /// Containers, running or not, labelled `key=value` (e.g. [`ALLOCATION_LABEL`]).
    fn find(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<Handle>, ExecError>> + Send;
}

#[cfg(test)]
mod tests;
