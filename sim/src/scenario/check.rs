//! Semantic checks of a scenario: ranges, regions, the node profiles; defaults applied.
//!
//! Every error points at the key holding the offending value, found by its path in the
//! document's [`KeyIndex`]; a value left to its default points at its table instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::{Config, ConfigError, Resources};
use toml::Spanned;

use super::include::Locator;
use super::limits::NodeLimits;
use super::raw::{RawLatency, RawNode, RawPeers, RawScenario};
use super::{
    DELAY_MS_MAX, DURATION_S_MAX, Latency, PEERS_MAX, Peers, RegionWeight, Scenario, ScenarioError,
};
use crate::data::RegionData;
use crate::engine::EngineKind;

/// The largest baseline loss accepted: above it no connection would survive its pings.
pub(super) const LOSS_MAX: f64 = 0.5;

/// The `Config` fields that are durations.
const DURATION_FIELDS: [&str; 12] = [
    "refuse_grace",
    "conn_grace",
    "trim_quiet",
    "maintain_interval",
    "ping_interval",
    "ping_timeout",
    "exchange_interval",
    "explore_interval",
    "advert_ttl",
    "advert_refresh",
    "dial_backoff_base",
    "dial_backoff_max",
];

/// Semantic checks, pointing at the key that holds the offending value.
pub(super) struct Checker<'a> {
    pub path: &'a str,
    pub loc: &'a Locator,
}

impl Checker<'_> {
    pub(super) fn error(&self, key: &str, message: String) -> ScenarioError {
        self.loc.error(key, message)
    }

    /// An error about two keys, at the first of them that is written in the file.
    fn error_either(&self, keys: [&str; 2], message: String) -> ScenarioError {
        match keys.iter().find_map(|k| self.loc.written(k)) {
            Some((path, line)) => ScenarioError::Invalid {
                path,
                line,
                message,
            },
            None => self.error(keys[0], message),
        }
    }

    /// Checks `lo <= value <= hi` for the number at `key`.
    pub(super) fn range(
        &self,
        key: &str,
        value: f64,
        lo: f64,
        hi: f64,
        unit: &str,
    ) -> Result<f64, ScenarioError> {
        if value.is_finite() && value >= lo && value <= hi {
            Ok(value)
        } else {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            Err(self.error(
                key,
                format!("`{key}` must be from {lo} to {hi}{unit}, found {value}"),
            ))
        }
    }

    pub(super) fn seconds(
        &self,
        key: &str,
        value: f64,
        min_s: f64,
    ) -> Result<Duration, ScenarioError> {
        self.range(key, value, min_s, DURATION_S_MAX, "s")
            .map(Duration::from_secs_f64)
    }

    fn millis(&self, key: &str, value: f64) -> Result<Duration, ScenarioError> {
        self.range(key, value, 0.0, DELAY_MS_MAX, "ms")
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
    }

    pub(super) fn scenario(
        &self,
        raw: RawScenario,
        data: Arc<RegionData>,
    ) -> Result<Scenario, ScenarioError> {
        let name_ok = !raw.name.is_empty()
            && raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            let msg = format!(
                "`name` must be non-empty and use only letters, digits, `-` and `_`, found {:?}",
                raw.name
            );
            return Err(self.error("name", msg));
        }
        if !(raw.duration_s.is_finite() && raw.duration_s > 0.0 && raw.duration_s <= DURATION_S_MAX)
        {
            let msg = format!(
                "`duration_s` must be more than 0 and at most {DURATION_S_MAX} s, found {}",
                raw.duration_s
            );
            return Err(self.error("duration_s", msg));
        }
        let duration = Duration::from_secs_f64(raw.duration_s);
        let node = self.node(raw.node.as_ref(), Config::default(), "node")?;
        let bootstrap_node =
            self.node(raw.bootstrap_node.as_ref(), node.clone(), "bootstrap_node")?;
        let node_limits =
            self.node_limits(raw.node.as_ref(), &NodeLimits::default(), &node, "node")?;
        let bootstrap_node_limits = self.node_limits(
            raw.bootstrap_node.as_ref(),
            &node_limits,
            &bootstrap_node,
            "bootstrap_node",
        )?;
        let peers = self.peers(&raw.peers, raw.duration_s)?;
        let classes = self.classes(raw.classes.as_deref(), &node, &node_limits, &data)?;
        let checked = self.faults(
            raw.faults.as_deref().unwrap_or(&[]),
            &peers,
            duration,
            &data,
        )?;
        let expect = self.expect(raw.expect.as_ref(), &checked.latest, &peers, duration)?;
        let class_names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
        let workload = self.workload(raw.workload.as_deref(), &peers, duration, &class_names)?;
        let jobs = self.jobs(raw.jobs.as_ref(), &peers, duration, &class_names)?;
        if jobs.is_none()
            && let Some(key) = expect.jobs_key()
        {
            let msg = format!("`expect.{key}` needs a [jobs] section: without it nothing deploys");
            return Err(self.error(&format!("expect.{key}"), msg));
        }
        let debug = self.debug(raw.debug.as_ref())?;
        Ok(Scenario {
            path: self.path.to_string(),
            name: raw.name,
            seed: raw.seed.unwrap_or(0),
            duration,
            engine: raw.engine.unwrap_or(EngineKind::Fleet),
            peers,
            regions: self.regions(raw.regions.as_ref(), &data)?,
            latency: self.latency(raw.latency.as_ref())?,
            node,
            bootstrap_node,
            node_limits,
            bootstrap_node_limits,
            classes,
            faults: checked.faults,
            fault_draws: checked.draws,
            workload,
            jobs,
            expect,
            debug,
            data,
        })
    }

    fn peers(&self, raw: &RawPeers, duration_s: f64) -> Result<Peers, ScenarioError> {
        if !(2..=PEERS_MAX).contains(&raw.count) {
            let msg = format!(
                "`peers.count` must be at least 2 and at most {PEERS_MAX}, found {}",
                raw.count
            );
            return Err(self.error("peers.count", msg));
        }
        let bootstrap = raw.bootstrap.unwrap_or(1);
        if bootstrap == 0 || bootstrap > raw.count {
            let msg = format!(
                "`peers.bootstrap` must be from 1 to `peers.count` ({}), found {bootstrap}; \
                 without a bootstrap node no peer can find another",
                raw.count
            );
            return Err(self.error("peers.bootstrap", msg));
        }
        let spread_s = self.range(
            "peers.start_spread_s",
            raw.start_spread_s.unwrap_or(0.0),
            0.0,
            duration_s,
            "s (the duration)",
        )?;
        // Both counts are at most PEERS_MAX, which fits any usize.
        Ok(Peers {
            count: raw.count as usize,
            bootstrap: bootstrap as usize,
            start_spread: Duration::from_secs_f64(spread_s),
        })
    }

    fn regions(
        &self,
        raw: Option<&BTreeMap<Spanned<String>, f64>>,
        data: &RegionData,
    ) -> Result<Vec<RegionWeight>, ScenarioError> {
        let mut weights: Vec<f64> = match raw {
            None => data.regions().iter().map(|r| r.population_weight).collect(),
            Some(map) => {
                let mut w = vec![0.0; data.len()];
                for (name, weight) in map {
                    let key = format!("regions.{}", name.get_ref());
                    let Some(i) = data.index_of(name.get_ref()) else {
                        let known: Vec<&str> =
                            data.regions().iter().map(|r| r.name.as_str()).collect();
                        let msg = format!(
                            "unknown region `{}` in [regions] (known: {})",
                            name.get_ref(),
                            known.join(", ")
                        );
                        return Err(self.loc.error_at(name.span(), msg));
                    };
                    w[i] = self.range(&key, *weight, 0.0, 1e9, "")?;
                }
                w
            }
        };
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err(self.error(
                "regions",
                "every weight in [regions] is zero; give at least one region a positive weight"
                    .into(),
            ));
        }
        weights.iter_mut().for_each(|w| *w /= total);
        Ok(weights
            .into_iter()
            .enumerate()
            .filter(|(_, w)| *w > 0.0)
            .map(|(region, weight)| RegionWeight { region, weight })
            .collect())
    }

    fn latency(&self, raw: Option<&RawLatency>) -> Result<Latency, ScenarioError> {
        let jitter = self.millis(
            "latency.jitter_ms",
            raw.and_then(|l| l.jitter_ms).unwrap_or(2.0),
        )?;
        let last_mile = raw
            .and_then(|l| l.last_mile_ms.clone())
            .unwrap_or_else(|| vec![5.0, 30.0]);
        let [min_ms, max_ms] = last_mile[..] else {
            let msg = format!(
                "`latency.last_mile_ms` must be [min, max] in ms, found {} values",
                last_mile.len()
            );
            return Err(self.error("latency.last_mile_ms", msg));
        };
        let (min, max) = (
            self.millis("latency.last_mile_ms", min_ms)?,
            self.millis("latency.last_mile_ms", max_ms)?,
        );
        if min > max {
            let msg = format!(
                "`latency.last_mile_ms` must be [min, max] with min <= max, found [{min_ms}, {max_ms}]"
            );
            return Err(self.error("latency.last_mile_ms", msg));
        }
        let loss = self.range(
            "latency.loss",
            raw.and_then(|l| l.loss).unwrap_or(0.0),
            0.0,
            LOSS_MAX,
            "",
        )?;
        Ok(Latency {
            jitter,
            last_mile_min: min,
            last_mile_max: max,
            loss,
        })
    }

    /// `base` with the keys of table `table` applied.
    pub(super) fn node(
        &self,
        raw: Option<&RawNode>,
        base: Config,
        table: &str,
    ) -> Result<Config, ScenarioError> {
        let Some(raw) = raw else { return Ok(base) };
        let mut c = base;
        if let Some(profile) = raw.profile {
            profile.apply(&mut c);
        }
        let count = |v: Option<u32>, d: usize| v.map_or(d, |v| v as usize);
        c.low_watermark = count(raw.low_watermark, c.low_watermark);
        c.high_watermark = count(raw.high_watermark, c.high_watermark);
        c.peers_refused_max = count(raw.peers_refused_max, c.peers_refused_max);
        c.dials_concurrent_max = count(raw.dials_concurrent_max, c.dials_concurrent_max);
        c.peers_known_max = count(raw.peers_known_max, c.peers_known_max);
        c.ping_failures_max = raw.ping_failures_max.unwrap_or(c.ping_failures_max);
        c.exchange_peers_max = raw.exchange_peers_max.unwrap_or(c.exchange_peers_max);
        c.exchange_hops_max = raw.exchange_hops_max.unwrap_or(c.exchange_hops_max);
        c.dial_failures_max = raw.dial_failures_max.unwrap_or(c.dial_failures_max);
        c.pressure_per_mille = raw.pressure_per_mille.unwrap_or(c.pressure_per_mille);
        if let Some(spec) = &raw.filter {
            let root = format!("{table}.filter");
            c.filter = spec
                .compile(&root)
                .map_err(|e| self.error(&root, format!("`{}`: {}", e.key, e.reason)))?;
        }
        for (key, value, field) in [
            ("refuse_grace_s", raw.refuse_grace_s, &mut c.refuse_grace),
            ("conn_grace_s", raw.conn_grace_s, &mut c.conn_grace),
            ("trim_quiet_s", raw.trim_quiet_s, &mut c.trim_quiet),
            (
                "maintain_interval_s",
                raw.maintain_interval_s,
                &mut c.maintain_interval,
            ),
            ("ping_interval_s", raw.ping_interval_s, &mut c.ping_interval),
            ("ping_timeout_s", raw.ping_timeout_s, &mut c.ping_timeout),
            (
                "exchange_interval_s",
                raw.exchange_interval_s,
                &mut c.exchange_interval,
            ),
            (
                "explore_interval_s",
                raw.explore_interval_s,
                &mut c.explore_interval,
            ),
            ("advert_ttl_s", raw.advert_ttl_s, &mut c.advert_ttl),
            (
                "advert_refresh_s",
                raw.advert_refresh_s,
                &mut c.advert_refresh,
            ),
            (
                "dial_backoff_base_s",
                raw.dial_backoff_base_s,
                &mut c.dial_backoff_base,
            ),
            (
                "dial_backoff_max_s",
                raw.dial_backoff_max_s,
                &mut c.dial_backoff_max,
            ),
        ] {
            if let Some(v) = value {
                *field = self.seconds(&format!("{table}.{key}"), v, 0.0)?;
            }
        }
        if let Some(r) = &raw.resources {
            let d = c.resources;
            c.resources = Resources {
                cores: r.cores.unwrap_or(d.cores),
                memory_mb: r.memory_mb.unwrap_or(d.memory_mb),
                disk_gb: r.disk_gb.unwrap_or(d.disk_gb),
                gpus: r.gpus.unwrap_or(d.gpus),
            };
            if let Some(e) = &r.executors {
                c.executors = e.clone();
            }
        }
        c.validate().map_err(|e| self.config_error(&e, table))?;
        if c.ping_timeout >= c.ping_interval {
            let msg = format!(
                "`{table}.ping_timeout_s` ({} s) must be shorter than `{table}.ping_interval_s` ({} s)",
                c.ping_timeout.as_secs_f64(),
                c.ping_interval.as_secs_f64()
            );
            let keys = [
                format!("{table}.ping_timeout_s"),
                format!("{table}.ping_interval_s"),
            ];
            return Err(self.error_either([&keys[0], &keys[1]], msg));
        }
        Ok(c)
    }

    /// Names the scenario key behind a core configuration error.
    fn config_error(&self, e: &ConfigError, table: &str) -> ScenarioError {
        let key = |core: &str| {
            // Core names of the periods, which the file writes with an `_s` suffix.
            let seconds = DURATION_FIELDS.contains(&core);
            if seconds {
                format!("{table}.{core}_s")
            } else {
                format!("{table}.{core}")
            }
        };
        match e {
            ConfigError::Zero(name) => {
                let k = key(name);
                self.error(&k, format!("`{k}` must be at least 1"))
            }
            ConfigError::ZeroDuration(name) => {
                let k = key(name);
                self.error(&k, format!("`{k}` must be longer than 0 s"))
            }
            ConfigError::Share(name) => {
                let k = key(name);
                self.error(&k, format!("`{k}` must be between 1 and 1000 (per mille)"))
            }
            ConfigError::Order(a, b) => {
                let (ka, kb) = (key(a), key(b));
                self.error_either([&ka, &kb], format!("`{ka}` must not be larger than `{kb}`"))
            }
        }
    }
}
