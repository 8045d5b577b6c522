//! The job spec: what a service provider asks compute providers to run.
//!
//! A spec is a TOML or YAML document. Every key is listed here; an unknown key is an error
//! naming its line.
//!
//! ```toml
//! image = "busybox:1.36"                 # required: a locally available image
//! command = ["sh", "-c", "echo hello"]   # optional: replaces the image's command
//! duration_s = 3600                      # required: the longest it may run, 1 s to 7 days
//! workers = 2                            # optional, default 1: identical workers, 1 to 64
//! ports = 2                              # optional: 2 host ports, or a list of container
//!                                        # ports to map, e.g. ports = [80, 443]
//!
//! [env]                                  # optional: at most 64 variables
//! GREETING = "hello"
//!
//! [resources]                            # required, per worker
//! cores = 1.5                            # > 0, in steps of 0.001
//! memory_mb = 512                        # > 0
//! disk_gb = 1                            # optional, default 0
//! gpus = 0                               # optional, default 0
//!
//! [constraints]                          # optional
//! region = ["eu-west", "eu-central"]     # any of these; empty or absent: anywhere
//! rtt_max_ms = 50                        # between any two of the job's workers
//! executor = "docker"                    # "docker" or "sim"; absent: any
//! ```
//!
//! The same in YAML:
//!
//! ```yaml
//! image: busybox:1.36
//! command: [sh, -c, echo hello]
//! duration_s: 3600
//! workers: 2
//! ports: 2
//! env:
//!   GREETING: hello
//! resources:
//!   cores: 1.5
//!   memory_mb: 512
//!   disk_gb: 1
//! constraints:
//!   region: [eu-west, eu-central]
//!   rtt_max_ms: 50
//!   executor: docker
//! ```
//!
//! What a worker's container gets besides the spec (on a Docker provider): a writable
//! directory `/artefacts`, whose files stay on the provider after the job and are served to
//! the requester alone as `d<deployment>-<requester peer id>/<file>` (`flotilla fetch
//! <provider> d1-<your peer id>/out.tar --out out.tar`); and with `ports`, the variable
//! `FLOTILLA_PORTS`, its host ports comma-separated.
//!
//! ```
//! use flotilla_core::job::JobSpec;
//! use std::path::Path;
//!
//! let text = "image = \"busybox\"\nduration_s = 60\n[resources]\ncores = 0.5\nmemory_mb = 64\n";
//! let spec = JobSpec::from_toml_str(text, Path::new("job.toml")).unwrap();
//! assert_eq!(spec.resources.capacity().millicores, 500);
//!
//! let err = JobSpec::from_toml_str("image = \"\"\nduration_s = 60\n[resources]\ncores = 1\nmemory_mb = 64\n",
//!     Path::new("job.toml")).unwrap_err();
//! assert_eq!(err.to_string(), "job.toml:1: image: must not be empty; write e.g. image = \"busybox:1.36\"");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::capacity::Capacity;

mod locate;
mod ports_field;
mod validate;

pub use ports_field::Ports;

/// The largest spec accepted, in bytes.
pub const SPEC_BYTES_MAX: usize = 64 * 1024;
/// The most environment variables a job may set.
pub const ENV_VARS_MAX: usize = 64;
/// The most arguments in `command`.
pub const COMMAND_ARGS_MAX: usize = 256;
/// The longest job: seven days.
pub const DURATION_S_MAX: u64 = 7 * 24 * 3600;
/// The most workers in one job.
pub const WORKERS_MAX: u32 = 64;
/// The most host ports one worker may ask for.
pub const PORTS_MAX: usize = 64;
/// The executors a job may name.
pub const EXECUTORS: [&str; 2] = ["docker", "sim"];

/// A job spec. See the [module docs](self) for the file format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The container image.
    pub image: String,
    /// The command and its arguments; empty: the image's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// What each worker needs.
    pub resources: Resources,
    /// Host ports to allocate, or container ports to map to host ports.
    #[serde(default, skip_serializing_if = "Ports::is_none")]
    pub ports: Ports,
    /// The longest the job may run, in seconds.
    pub duration_s: u64,
    /// Where and how the job may run.
    #[serde(default)]
    pub constraints: Constraints,
    /// How many identical workers to run.
    #[serde(default = "one")]
    pub workers: u32,
}

fn one() -> u32 {
    1
}

/// What each worker of a job needs. `cores` may be fractional (kept in millicores).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU in millicores, written `cores = 1.5` in a spec.
    #[serde(rename = "cores", with = "cores")]
    pub millicores: u64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Disk in GiB.
    #[serde(default)]
    pub disk_gb: u64,
    /// Whole GPUs.
    #[serde(default)]
    pub gpus: u64,
}

impl Resources {
    /// The request as a [`Capacity`].
    pub fn capacity(&self) -> Capacity {
        Capacity {
            millicores: self.millicores,
            memory_mb: self.memory_mb,
            disk_gb: self.disk_gb,
            gpus: self.gpus,
        }
    }
}

/// Reads and writes `cores` (a number of cores, possibly fractional) as millicores.
mod cores {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let cores = f64::deserialize(d)?;
        let milli = cores * 1000.0;
        if !(0.0..=1e12).contains(&milli) {
            return Err(D::Error::custom(format!(
                "cores = {cores} is out of range; write a positive number, e.g. cores = 2"
            )));
        }
        let rounded = milli.round();
        if (milli - rounded).abs() > 1e-6 {
            return Err(D::Error::custom(format!(
                "cores = {cores} is finer than a thousandth of a core; write e.g. cores = 0.25"
            )));
        }
        // In range and integral: the conversion is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(rounded as u64)
    }

    pub(super) fn serialize<S: Serializer>(milli: &u64, s: S) -> Result<S::Ok, S::Error> {
        if milli.is_multiple_of(1000) {
            s.serialize_u64(milli / 1000)
        } else {
            #[allow(clippy::cast_precision_loss)]
            s.serialize_f64(*milli as f64 / 1000.0)
        }
    }
}

/// Where and how a job may run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Regions the job may run in (any of them); empty: anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub region: Vec<String>,
    /// The highest round-trip time allowed between any two of the job's workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_max_ms: Option<u32>,
    /// The executor to run on (one of [`EXECUTORS`]); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
}

/// One problem in a spec: the key and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The key, dotted (`resources.memory_mb`, `env.PATH`).
    pub key: String,
    /// What is wrong and what to write.
    pub message: String,
    segments: Vec<String>,
}

impl Invalid {
    fn new(segments: &[&str], message: impl Into<String>) -> Self {
        Invalid {
            key: segments.join("."),
            message: message.into(),
            segments: segments.iter().map(|s| (*s).to_string()).collect(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A problem in a spec with the line it is on, when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// 1-based line of the key, if found in the text.
    pub line: Option<usize>,
    /// The problem.
    pub invalid: Invalid,
}

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The spec is longer than [`SPEC_BYTES_MAX`].
    #[error("{}: the spec is {len} bytes, more than {max}; shorten it", path.display())]
    TooLong {
        /// Where the spec came from.
        path: PathBuf,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text is not valid TOML or YAML, or has an unknown, missing or mistyped key.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// Where the spec came from.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The spec parsed but breaks a rule; every problem is listed.
    #[error("{}", show_problems(path, problems))]
    Invalid {
        /// Where the spec came from.
        path: PathBuf,
        /// Each problem with its line.
        problems: Vec<Located>,
    },
}

fn show_problems(path: &Path, problems: &[Located]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("{}:{line}: {}", path.display(), p.invalid),
            None => format!("{}: {}", path.display(), p.invalid),
        })
        .collect();
    lines.join("\n")
}

impl JobSpec {
    /// Parses and validates a TOML spec read from `path` (used in messages only).
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, SpecError> {
        check_len(text, path)?;
        let spec: JobSpec = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |s| locate::line_column(text, s.start));
            SpecError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })?;
        spec.validated(path, |segments| locate::toml_line(text, segments))
    }

    /// Parses and validates a YAML spec read from `path` (used in messages only).
    pub fn from_yaml_str(text: &str, path: &Path) -> Result<Self, SpecError> {
        check_len(text, path)?;
        let spec: JobSpec = serde_norway::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            // The message repeats the location; the prefix already says it.
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            SpecError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        })?;
        spec.validated(path, |segments| locate::yaml_line(text, segments))
    }

    /// Parses a spec as YAML if `path` ends in `.yaml` or `.yml`, else as TOML.
    pub fn from_str_at(text: &str, path: &Path) -> Result<Self, SpecError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Self::from_yaml_str(text, path),
            _ => Self::from_toml_str(text, path),
        }
    }

    fn validated(
        self,
        path: &Path,
        line_of: impl Fn(&[String]) -> Option<usize>,
    ) -> Result<Self, SpecError> {
        match self.validate() {
            Ok(()) => Ok(self),
            Err(problems) => Err(SpecError::Invalid {
                path: path.to_path_buf(),
                problems: problems
                    .into_iter()
                    .map(|invalid| Located {
                        line: line_of(&invalid.segments),
                        invalid,
                    })
                    .collect(),
            }),
        }
    }

    /// The host ports each worker needs.
    pub fn host_ports(&self) -> usize {
        self.ports.host_ports()
    }
}

fn check_len(text: &str, path: &Path) -> Result<(), SpecError> {
    if text.len() > SPEC_BYTES_MAX {
        return Err(SpecError::TooLong {
            path: path.to_path_buf(),
            len: text.len(),
            max: SPEC_BYTES_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
