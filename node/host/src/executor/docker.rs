//! The Docker executor, on the local daemon through bollard, and the test image builder.
//!
//! Nothing is pulled: images must already be on the machine. [`DockerExecutor::build_busybox_image`]
//! builds a tiny `FROM scratch` image around a static busybox for tests.

#![allow(clippy::disallowed_types)] // bollard's request and reply types are built on HashMap

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding as DockerPortBinding,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::stream::{BoxStream, Stream, StreamExt};

use super::{
    BindMount, ExecError, ExecSpec, ExecState, Executor, ExitStatus, Handle, LogLine, LogStream,
    PortBinding,
};

/// The daemon's socket when `DOCKER_HOST` is unset.
const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Where Debian's `busybox-static` package installs its static busybox.
pub const BUSYBOX_PATH: &str = "/bin/busybox";

/// Busybox applets linked into the test image's `/bin`.
const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "printf", "env", "nc", "ls",
];

/// Runs jobs as containers on the local Docker daemon.
#[derive(Debug, Clone)]
pub struct DockerExecutor {
    docker: Docker,
    endpoint: String,
}

impl DockerExecutor {
    /// Connects to the local daemon (`DOCKER_HOST`, or `/var/run/docker.sock`) and agrees on
    /// an API version with it; fails with [`ExecError::Unreachable`] if it does not answer.
    pub async fn connect() -> Result<DockerExecutor, ExecError> {
        let endpoint = std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_SOCKET.to_string());
        let unreachable = |e: BollardError| ExecError::Unreachable {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        };
        let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        Ok(DockerExecutor { docker, endpoint })
    }

    /// The daemon's address, as used in error messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Maps a bollard error: transport failures mean the daemon went away.
    fn error(&self, action: &str, e: BollardError) -> ExecError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => ExecError::NotFound(message),
            BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. }
            | BollardError::HttpClientError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_) => ExecError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
            },
            e => ExecError::Engine {
                action: action.to_string(),
                reason: e.to_string(),
            },
        }
    }

    /// Whether an image (name:tag or id) is present locally.
    pub async fn has_image(&self, image: &str) -> Result<bool, ExecError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(self.error("inspect an image", e)),
        }
    }

    /// Builds `tag` as a `FROM scratch` image holding the static busybox at `busybox` as
    /// `/bin/busybox`, with `/bin/sh`, `/bin/echo`, `/bin/sleep`... linked to it. Does nothing
    /// if `tag` exists; returns whether it built.
    pub async fn build_busybox_image(&self, tag: &str, busybox: &Path) -> Result<bool, ExecError> {
        if self.has_image(tag).await? {
            return Ok(false);
        }
        let context = busybox_context(busybox)?;
        let options = BuildImageOptionsBuilder::new()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut build =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        let mut log = String::new();
        while let Some(info) = build.next().await {
            let info = info.map_err(|e| self.error("build the busybox image", e))?;
            if let Some(detail) = info.error_detail {
                let reason = detail.message.unwrap_or_default();
                return Err(ExecError::Engine {
                    action: format!("build image {tag}"),
                    reason: format!("{reason}\n{log}"),
                });
            }
            log.push_str(info.stream.as_deref().unwrap_or_default());
        }
        if !self.has_image(tag).await? {
            return Err(ExecError::Engine {
                action: format!("build image {tag}"),
                reason: format!("no image after the build:\n{log}"),
            });
        }
        Ok(true)
    }
}

/// The build context: a Dockerfile and `bin/` with busybox and its applet links.
fn busybox_context(busybox: &Path) -> Result<Vec<u8>, ExecError> {
    let io = |e: std::io::Error| ExecError::Io {
        path: busybox.display().to_string(),
        reason: format!("{e} (install a static busybox: `apt-get install busybox-static`)"),
    };
    let binary = std::fs::read(busybox).map_err(io)?;
    let dockerfile = b"FROM scratch\nCOPY bin/ /bin/\nCMD [\"/bin/sh\"]\n";
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, path, data)
    };
    add("Dockerfile", 0o644, dockerfile).map_err(io)?;
    add("bin/busybox", 0o755, &binary).map_err(io)?;
    for applet in BUSYBOX_APPLETS {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")
            .map_err(io)?;
    }
    tar.into_inner().map_err(io)
}

/// The create request for `spec`.
fn create_body(spec: &ExecSpec) -> ContainerCreateBody {
    let port_key = |p: &PortBinding| format!("{}/tcp", p.container_port);
    let mut bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let binding = DockerPortBinding {
            host_ip: None,
            host_port: Some(p.host_port.to_string()),
        };
        bindings
            .entry(port_key(p))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let exposed: Vec<String> = spec.ports.iter().map(port_key).collect();
    let mounts: Vec<Mount> = spec
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.container.clone()),
            source: Some(m.host.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    let host_config = HostConfig {
        nano_cpus: spec.cpu_nanos.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        memory: spec
            .memory_bytes
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    }
}

impl Executor for DockerExecutor {
    async fn create_and_start(&self, spec: &ExecSpec) -> Result<Handle, ExecError> {
        spec.validate()?;
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = match self
            .docker
            .create_container(Some(options), create_body(spec))
            .await
        {
            Ok(created) => created,
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) if message.contains("No such image") => {
                return Err(ExecError::ImageMissing {
                    image: spec.image.clone(),
                });
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 400 | 409,
                message,
            }) => {
                return Err(ExecError::InvalidSpec(format!(
                    "docker refused container {}: {message}",
                    spec.name
                )));
            }
            Err(e) => return Err(self.error("create the container", e)),
        };
        let handle = Handle { id: created.id };
        if let Err(e) = self.docker.start_container(&handle.id, None).await {
            // Do not leave a created-but-dead container behind.
            let _ = self.remove(&handle).await;
            return Err(self.error(&format!("start container {}", spec.name), e));
        }
        Ok(handle)
    }

    fn logs(&self, handle: &Handle) -> BoxStream<'static, Result<LogLine, ExecError>> {
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let this = self.clone();
        let chunks = self
            .docker
            .logs(&handle.id, Some(options))
            .map(move |c| c.map_err(|e| this.error("read logs", e)));
        lines(chunks).boxed()
    }

    async fn wait(&self, handle: &Handle) -> Result<ExitStatus, ExecError> {
        let mut waits = self.docker.wait_container(&handle.id, None);
        match waits.next().await {
            Some(Ok(reply)) => Ok(ExitStatus {
                code: reply.status_code,
            }),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => {
                Ok(ExitStatus { code })
            }
            Some(Err(e)) => Err(self.error("wait for the container", e)),
            None => Err(ExecError::Engine {
                action: "wait for the container".into(),
                reason: "no reply".into(),
            }),
        }
    }

    async fn stop(&self, handle: &Handle, grace: Duration) -> Result<(), ExecError> {
        let grace_s = i32::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0))
            .unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(grace_s).build();
        match self.docker.stop_container(&handle.id, Some(options)).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.error("stop the container", e)),
        }
    }

    async fn remove(&self, handle: &Handle) -> Result<(), ExecError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(&handle.id, Some(options))
            .await
        {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.error("remove the container", e)),
        }
    }

    async fn inspect(&self, handle: &Handle) -> Result<ExecState, ExecError> {
        let c = self
            .docker
            .inspect_container(&handle.id, None)
            .await
            .map_err(|e| self.error("inspect the container", e))?;
        let state = c.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let host = c.host_config.unwrap_or_default();
        let mut ports: Vec<PortBinding> = host
            .port_bindings
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(key, bindings)| {
                let container_port = key.split('/').next().and_then(|p| p.parse::<u16>().ok());
                bindings
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |b| {
                        let host_port =
                            b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok())?;
                        Some(PortBinding {
                            host_port,
                            container_port: container_port?,
                        })
                    })
            })
            .collect();
        ports.sort();
        let positive = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0);
        let mut mounts: Vec<BindMount> = c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(BindMount {
                    host: m.source?.into(),
                    container: m.destination?,
                    read_only: !m.rw.unwrap_or(true),
                })
            })
            .collect();
        mounts.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(ExecState {
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            running,
            exit_code: if running { None } else { state.exit_code },
            cpu_nanos: positive(host.nano_cpus),
            memory_bytes: positive(host.memory),
            ports,
            labels: c
                .config
                .and_then(|c| c.labels)
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            mounts,
        })
    }

    async fn find(&self, key: &str, value: &str) -> Result<Vec<Handle>, ExecError> {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error("list containers", e))?;
        let mut handles: Vec<Handle> = found
            .into_iter()
            .filter_map(|c| c.id)
            .map(|id| Handle { id })
            .collect();
        handles.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(handles)
    }
}

/// Splits Docker's output chunks (a write each, with any number of line breaks) into lines,
/// each stream buffered on its own; a last line without a line break is flushed at the end.
fn lines(
    chunks: impl Stream<Item = Result<LogOutput, ExecError>> + Send + 'static,
) -> impl Stream<Item = Result<LogLine, ExecError>> + Send + 'static {
    struct State<S> {
        chunks: S,
        partial: [Vec<u8>; 2],
        ready: VecDeque<Result<LogLine, ExecError>>,
        done: bool,
    }
    let slot = |s: LogStream| usize::from(s == LogStream::Stderr);
    let line = |stream: LogStream, bytes: &[u8]| {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        LogLine {
            stream,
            line: String::from_utf8_lossy(bytes).into_owned(),
        }
    };
    let state = State {
        chunks: Box::pin(chunks),
        partial: [Vec::new(), Vec::new()],
        ready: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                return Some((item, st));
            }
            if st.done {
                return None;
            }
            match st.chunks.next().await {
                Some(Ok(chunk)) => {
                    let (stream, message) = match chunk {
                        LogOutput::StdErr { message } => (LogStream::Stderr, message),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            (LogStream::Stdout, message)
                        }
                        LogOutput::StdIn { .. } => continue,
                    };
                    let buf = &mut st.partial[slot(stream)];
                    buf.extend_from_slice(&message);
                    while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                        let rest = buf.split_off(end + 1);
                        st.ready.push_back(Ok(line(stream, &buf[..end])));
                        *buf = rest;
                    }
                }
                Some(Err(e)) => {
                    st.ready.push_back(Err(e));
                    st.done = true;
                }
                None => {
                    for stream in [LogStream::Stdout, LogStream::Stderr] {
                        let buf = std::mem::take(&mut st.partial[slot(stream)]);
                        if !buf.is_empty() {
                            st.ready.push_back(Ok(line(stream, &buf)));
                        }
                    }
                    st.done = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> Result<LogOutput, ExecError> {
        Ok(LogOutput::StdOut {
            message: s.to_string().into(),
        })
    }
    fn err(s: &str) -> Result<LogOutput, ExecError> {
        Ok(LogOutput::StdErr {
            message: s.to_string().into(),
        })
    }

    #[tokio::test]
    async fn chunks_become_lines_per_stream() {
        let chunks = futures::stream::iter(vec![
            out("a\nb"),
            err("x\r\n"),
            out("c\nd\n"),
            err("y"),
            out("tail"),
        ]);
        let got: Vec<(LogStream, String)> = lines(chunks)
            .map(|l| l.map(|l| (l.stream, l.line)).unwrap())
            .collect()
            .await;
        let want = [
            (LogStream::Stdout, "a"),
            (LogStream::Stderr, "x"),
            (LogStream::Stdout, "bc"),
            (LogStream::Stdout, "d"),
            (LogStream::Stdout, "tail"),
            (LogStream::Stderr, "y"),
        ];
        assert_eq!(got, want.map(|(s, l)| (s, l.to_string())));
    }

    #[test]
    fn the_create_body_carries_limits_ports_and_labels() {
        let mut spec = ExecSpec::new("j", "img", ["/bin/sh"]).with_cpu_cores(1.5);
        spec.memory_bytes = Some(64 << 20);
        spec.ports = vec![PortBinding {
            host_port: 18080,
            container_port: 80,
        }];
        spec.labels
            .insert(super::super::ALLOCATION_LABEL.into(), "a1".into());
        spec.mounts.push(BindMount {
            host: "/srv/flotilla/artefacts/d1-x".into(),
            container: "/artefacts".into(),
            read_only: false,
        });
        let body = create_body(&spec);
        let host = body.host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(64 << 20));
        let bindings = host.port_bindings.unwrap();
        assert_eq!(
            bindings["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("18080")
        );
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_string()]));
        assert_eq!(body.labels.unwrap()["flotilla.allocation"], "a1");
        let mount = &host.mounts.unwrap()[0];
        assert_eq!(mount.typ, Some(MountType::BIND));
        assert_eq!(
            mount.source.as_deref(),
            Some("/srv/flotilla/artefacts/d1-x")
        );
        assert_eq!(mount.target.as_deref(), Some("/artefacts"));
        assert_eq!(mount.read_only, Some(false));
    }

    #[test]
    fn the_build_context_holds_busybox_and_its_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busybox");
        std::fs::write(&path, b"binary").unwrap();
        let context = busybox_context(&path).unwrap();
        let mut archive = tar::Archive::new(context.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(
            names.contains(&"Dockerfile".to_string()) && names.contains(&"bin/busybox".to_string())
        );
        assert!(names.contains(&"bin/sh".to_string()));
        let missing = busybox_context(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("busybox-static"), "{missing}");
    }
}
