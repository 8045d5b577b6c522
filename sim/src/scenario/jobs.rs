//! `[jobs]`: compute providers, service providers and a deployment workload (both
//! engines).
//!
//! Compute providers are every peer of the classes in `provider_classes`, or
//! `providers_count` non-bootstrap peers drawn from the seed. Each onboards `cores`,
//! `memory_mb` and `disk_gb`, bids a price per core-hour drawn from `price` (a number or
//! `[min, max]`, millionths of the currency unit) and runs its jobs on the simulated
//! executor (`start_delay_s`, `run_time_s`, `failure_probability`, `log_lines`).
//! `service_providers` peers drawn among the others (never a bootstrap node) deploy: from
//! `deploy_at_s` to `deploy_until_s`, each one every `deploy_every_s` seconds, cycling
//! through `[[jobs.templates]]` (cores, memory per worker, duration, workers; executor
//! `sim`).

use std::path::Path;
use std::time::Duration;

use flotilla_core::capacity::Capacity;
use flotilla_core::job::JobSpec;
use flotilla_core::simexec::{LOG_LINES_MAX, SimExecConfig};

use super::check::Checker;
use super::raw::{RawJobs, RawNum};
use super::{Peers, ScenarioError};

/// Templates at most in `[[jobs.templates]]`.
pub const TEMPLATES_MAX: usize = 64;

/// Who provides compute.
#[derive(Debug, Clone, PartialEq)]
pub enum Providers {
    /// Every peer of these classes (indices into `[[classes]]`).
    Classes(Vec<usize>),
    /// This many non-bootstrap peers drawn from the seed.
    Count(usize),
}

/// `[jobs]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsScenario {
    /// The compute providers.
    pub providers: Providers,
    /// Capacity each provider onboards (and registers).
    pub capacity: Capacity,
    /// Range of the price per core-hour each provider draws, millionths.
    pub price: (u64, u64),
    /// Service providers drawn among the non-bootstrap peers that do not provide.
    pub service_providers: usize,
    /// How the providers' simulated jobs behave.
    pub exec: SimExecConfig,
    /// The first deployment round, after the run's start.
    pub deploy_at: Duration,
    /// No deployment at or after this time.
    pub deploy_until: Duration,
    /// Each service provider deploys once per this period.
    pub deploy_every: Duration,
    /// The jobs deployed, in turn.
    pub templates: Vec<JobSpec>,
}

impl JobsScenario {
    /// The longest a deployment of `spec` may stay live under the default deadlines:
    /// bids, commit, provision, run (the job's duration plus the run margin) and shutdown.
    pub fn bound(config: &flotilla_core::jobs::JobsConfig, spec: &JobSpec) -> Duration {
        let d = config.deadlines;
        d.bids
            + d.commit
            + d.provision
            + Duration::from_secs(spec.duration_s)
            + config.run_margin
            + d.shutdown
    }
}

impl Checker<'_> {
    /// `[jobs]` of the file, if written.
    pub(super) fn jobs(
        &self,
        raw: Option<&RawJobs>,
        peers: &Peers,
        duration: Duration,
        classes: &[String],
    ) -> Result<Option<JobsScenario>, ScenarioError> {
        let Some(j) = raw else { return Ok(None) };
        let others = peers.count - peers.bootstrap;
        let providers = match (&j.provider_classes, j.providers_count) {
            (Some(names), None) if !names.is_empty() => {
                let mut out = Vec::new();
                for (k, name) in names.iter().enumerate() {
                    let Some(c) = classes.iter().position(|c| c == name) else {
                        let msg = format!(
                            "`jobs.provider_classes[{k}]` names no class: `{name}` (known: {}); define it in [[classes]]",
                            classes.join(", ")
                        );
                        return Err(self.error("jobs.provider_classes", msg));
                    };
                    out.push(c);
                }
                Providers::Classes(out)
            }
            (None, Some(n)) if n >= 1 && n <= others as u64 => Providers::Count(n as usize),
            (None, Some(n)) => {
                let msg = format!(
                    "`jobs.providers_count` must be from 1 to the non-bootstrap peers ({others}), found {n}"
                );
                return Err(self.error("jobs.providers_count", msg));
            }
            _ => {
                let msg = "[jobs] needs exactly one of `provider_classes` (a non-empty list of class names) and `providers_count` (peers drawn from the seed)".to_string();
                return Err(self.error("jobs", msg));
            }
        };
        let sps = j.service_providers;
        let taken = match &providers {
            Providers::Count(n) => *n,
            Providers::Classes(_) => 0,
        };
        if sps == 0 || sps as usize + taken > others {
            let msg = format!(
                "`jobs.service_providers` must be at least 1 and leave room among the {others} non-bootstrap peers ({taken} of them provide), found {sps}"
            );
            return Err(self.error("jobs.service_providers", msg));
        }
        if j.cores == 0 || j.memory_mb == 0 {
            let msg =
                "`jobs.cores` and `jobs.memory_mb` must be at least 1: each provider onboards them"
                    .to_string();
            let key = if j.cores == 0 {
                "jobs.cores"
            } else {
                "jobs.memory_mb"
            };
            return Err(self.error(key, msg));
        }
        let capacity = Capacity {
            millicores: u64::from(j.cores) * 1000,
            memory_mb: j.memory_mb,
            disk_gb: j.disk_gb.unwrap_or(0),
            gpus: 0,
        };
        let price = match &j.price {
            None => (1_000_000, 1_000_000),
            Some(p) => {
                let (lo, hi) = self.bounds("jobs.price", p)?;
                let lo = self.range("jobs.price", lo, 0.0, 1e15, "millionths per core-hour")?;
                let hi = self.range("jobs.price", hi, 0.0, 1e15, "millionths per core-hour")?;
                if matches!(p, RawNum::Range(_)) && lo > hi {
                    return Err(self.error(
                        "jobs.price",
                        "`jobs.price` must be [min, max] with min <= max".into(),
                    ));
                }
                (lo as u64, hi as u64)
            }
        };
        let exec = self.exec(j)?;
        let dur_s = duration.as_secs_f64();
        let at_s = self.range(
            "jobs.deploy_at_s",
            j.deploy_at_s,
            0.0,
            dur_s,
            "s (the duration)",
        )?;
        let until_s = self.range(
            "jobs.deploy_until_s",
            j.deploy_until_s.unwrap_or(dur_s),
            0.0,
            dur_s,
            "s (the duration)",
        )?;
        if until_s <= at_s {
            let msg = "`jobs.deploy_until_s` must be later than `jobs.deploy_at_s`".to_string();
            return Err(self.error("jobs.deploy_until_s", msg));
        }
        let every_s = self.range("jobs.deploy_every_s", j.deploy_every_s, 1.0, 1e6, "s")?;
        if j.templates.is_empty() || j.templates.len() > TEMPLATES_MAX {
            let msg = format!(
                "[[jobs.templates]] must hold 1 to {TEMPLATES_MAX} jobs, found {}; add e.g. `[[jobs.templates]]` with cores = 1, memory_mb = 512, duration_s = 60",
                j.templates.len()
            );
            return Err(self.error("jobs", msg));
        }
        let mut templates = Vec::with_capacity(j.templates.len());
        for (i, t) in j.templates.iter().enumerate() {
            let key = format!("jobs.templates.{i}");
            let text = format!(
                "image = \"sim\"\nduration_s = {}\nworkers = {}\n[resources]\ncores = {}\nmemory_mb = {}\n[constraints]\nexecutor = \"sim\"\n",
                t.duration_s,
                t.workers.unwrap_or(1),
                t.cores,
                t.memory_mb
            );
            let spec = JobSpec::from_toml_str(&text, Path::new(&key))
                .map_err(|e| self.error(&key, format!("`{key}` is not a valid job: {e}")))?;
            let asked = spec.resources.capacity();
            if !asked.fits_in(&capacity) {
                let msg = format!(
                    "`{key}` asks for more per worker ({} millicores, {} MB) than a provider onboards ({} millicores, {} MB); no provider could bid",
                    asked.millicores, asked.memory_mb, capacity.millicores, capacity.memory_mb
                );
                return Err(self.error(&key, msg));
            }
            templates.push(spec);
        }
        Ok(Some(JobsScenario {
            providers,
            capacity,
            price,
            service_providers: sps as usize,
            exec,
            deploy_at: Duration::from_secs_f64(at_s),
            deploy_until: Duration::from_secs_f64(until_s),
            deploy_every: Duration::from_secs_f64(every_s),
            templates,
        }))
    }

    /// The simulated executor's settings of `[jobs]`.
    fn exec(&self, j: &RawJobs) -> Result<SimExecConfig, ScenarioError> {
        let d = SimExecConfig::default();
        let pair = |key: &str, v: &Option<Vec<f64>>, def: (Duration, Duration)| match v {
            None => Ok(def),
            Some(v) => match v[..] {
                [lo, hi] if lo <= hi => Ok((
                    Duration::from_secs_f64(self.range(key, lo, 0.0, 1e6, "s")?),
                    Duration::from_secs_f64(self.range(key, hi, 0.0, 1e6, "s")?),
                )),
                _ => Err(self.error(
                    key,
                    format!("`{key}` must be [min, max] in seconds with min <= max, found {v:?}"),
                )),
            },
        };
        let failure_probability = self.range(
            "jobs.failure_probability",
            j.failure_probability.unwrap_or(d.failure_probability),
            0.0,
            1.0,
            "",
        )?;
        let log_lines = j.log_lines.unwrap_or(d.log_lines);
        if log_lines > LOG_LINES_MAX {
            let msg =
                format!("`jobs.log_lines` must be at most {LOG_LINES_MAX}, found {log_lines}");
            return Err(self.error("jobs.log_lines", msg));
        }
        Ok(SimExecConfig {
            start_delay: pair("jobs.start_delay_s", &j.start_delay_s, d.start_delay)?,
            run_time: pair("jobs.run_time_s", &j.run_time_s, d.run_time)?,
            failure_probability,
            log_lines,
        })
    }
}

#[cfg(test)]
mod tests;
