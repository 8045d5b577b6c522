//! `[[classes]]`: kinds of nodes, each with its share of the peers, its regions, its node
//! profile, its uplink and its churn (sessions up, then down, until the end of the run).
//!
//! Session lengths and down times are [`Dist`]ributions of seconds: a number (fixed),
//! `[min, max]` (uniform), or a table `{ kind = "exponential", mean = 600 }`,
//! `{ kind = "weibull", scale = 600, shape = 0.5 }` or
//! `{ kind = "pareto", min = 60, shape = 1.5 }`. Measured P2P session lengths are heavy
//! tailed (many short sessions, a few very long ones), which a Weibull with a shape
//! below 1 or a Pareto models; exponential sessions are the memoryless baseline.

use std::collections::BTreeMap;

use flotilla_core::Config;
use toml::Spanned;

use super::check::Checker;
use super::limits::NodeLimits;
use super::raw::{RawClass, RawDist, RawDistKind, RawDistTable};
use super::{DURATION_S_MAX, RegionWeight, ScenarioError};
use crate::data::RegionData;

/// Classes at most in one scenario.
pub const CLASSES_MAX: usize = 64;
/// The shortest session or down time, seconds: every draw is at least this long.
pub const CHURN_S_MIN: f64 = 1.0;
/// The smallest uplink accepted, kbit/s.
pub const BANDWIDTH_KBPS_MIN: f64 = 1.0;
/// The largest uplink accepted, kbit/s (100 Gbit/s).
pub const BANDWIDTH_KBPS_MAX: f64 = 100_000_000.0;

/// A distribution of durations, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Always this long.
    Fixed(f64),
    /// Uniform in `[min, max]`.
    Uniform(f64, f64),
    /// Exponential with this mean.
    Exponential {
        /// The mean.
        mean: f64,
    },
    /// Weibull: `scale * (-ln(1 - u))^(1 / shape)`; a shape below 1 is heavy tailed.
    Weibull {
        /// The scale (the 63rd percentile).
        scale: f64,
        /// The shape, more than 0.
        shape: f64,
    },
    /// Pareto: `min / (1 - u)^(1 / shape)`; a shape at most 1 has no finite mean.
    Pareto {
        /// The smallest value.
        min: f64,
        /// The shape (tail index), more than 0.
        shape: f64,
    },
}

impl Dist {
    /// The value at `u`, a uniform draw from `[0, 1)`, in seconds (never below
    /// [`CHURN_S_MIN`], never above [`DURATION_S_MAX`]).
    pub fn at(&self, u: f64) -> f64 {
        let tail = -(1.0 - u).ln();
        let v = match *self {
            Dist::Fixed(v) => v,
            Dist::Uniform(lo, hi) => lo + (hi - lo) * u,
            Dist::Exponential { mean } => mean * tail,
            Dist::Weibull { scale, shape } => scale * tail.powf(1.0 / shape),
            Dist::Pareto { min, shape } => min / (1.0 - u).powf(1.0 / shape),
        };
        if v.is_finite() {
            v.clamp(CHURN_S_MIN, DURATION_S_MAX)
        } else {
            DURATION_S_MAX
        }
    }
}

/// How a class churns: up for a session, down for a while, up again with a fresh state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Churn {
    /// Length of each session.
    pub uptime: Dist,
    /// How long the node stays down between sessions.
    pub downtime: Dist,
}

/// One `[[classes]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Class {
    /// Its name (letters, digits, `-`, `_`), shown in the trace's `start` lines.
    pub name: String,
    /// Its share of the non-bootstrap peers; the weights of a scenario sum to 1.
    pub weight: f64,
    /// Regions of its peers (weights summing to 1), or `None`: the scenario's `[regions]`.
    pub regions: Option<Vec<RegionWeight>>,
    /// The profile of its peers: `[node]` with `[classes.node]` applied.
    pub node: Config,
    /// The resource manager's limits of its peers: `[node.limits]` with
    /// `[classes.node.limits]` applied.
    pub limits: NodeLimits,
    /// Its sessions and down times; `None`: its peers stay up.
    pub churn: Option<Churn>,
    /// Uplink of its peers, kbit/s; `None`: unlimited.
    pub bandwidth_kbps: Option<f64>,
}

impl Checker<'_> {
    /// The classes of `raw`, their profiles built on `node`.
    pub(super) fn classes(
        &self,
        raw: Option<&[RawClass]>,
        node: &Config,
        node_limits: &NodeLimits,
        data: &RegionData,
    ) -> Result<Vec<Class>, ScenarioError> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        if raw.is_empty() || raw.len() > CLASSES_MAX {
            let msg = format!(
                "[[classes]] must hold 1 to {CLASSES_MAX} classes, found {}; remove the key to run without classes",
                raw.len()
            );
            return Err(self.error("classes", msg));
        }
        let mut out: Vec<Class> = Vec::with_capacity(raw.len());
        for (i, c) in raw.iter().enumerate() {
            let table = format!("classes.{i}");
            let key = |k: &str| format!("{table}.{k}");
            let name_ok = !c.name.is_empty()
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !name_ok {
                let msg = format!(
                    "`{}` must be non-empty and use only letters, digits, `-` and `_`, found {:?}",
                    key("name"),
                    c.name
                );
                return Err(self.error(&key("name"), msg));
            }
            if out.iter().any(|o| o.name == c.name) {
                let msg = format!(
                    "class `{}` is defined twice; give each class its own name",
                    c.name
                );
                return Err(self.error(&key("name"), msg));
            }
            let weight = self.range(&key("weight"), c.weight, 0.0, 1e9, "")?;
            let regions = c
                .regions
                .as_ref()
                .map(|r| self.class_regions(&key("regions"), r, data))
                .transpose()?;
            let class_node = self.node(c.node.as_ref(), node.clone(), &key("node"))?;
            let limits =
                self.node_limits(c.node.as_ref(), node_limits, &class_node, &key("node"))?;
            let churn = match (&c.uptime_s, &c.downtime_s) {
                (None, None) => None,
                (Some(up), Some(down)) => Some(Churn {
                    uptime: self.dist(&key("uptime_s"), up)?,
                    downtime: self.dist(&key("downtime_s"), down)?,
                }),
                (Some(_), None) | (None, Some(_)) => {
                    let msg = format!(
                        "a churning class needs both `{}` and `{}`",
                        key("uptime_s"),
                        key("downtime_s")
                    );
                    let at = if c.uptime_s.is_some() {
                        "uptime_s"
                    } else {
                        "downtime_s"
                    };
                    return Err(self.error(&key(at), msg));
                }
            };
            let bandwidth_kbps = c
                .bandwidth_kbps
                .map(|b| {
                    self.range(
                        &key("bandwidth_kbps"),
                        b,
                        BANDWIDTH_KBPS_MIN,
                        BANDWIDTH_KBPS_MAX,
                        "kbit/s",
                    )
                })
                .transpose()?;
            out.push(Class {
                name: c.name.clone(),
                weight,
                regions,
                node: class_node,
                limits,
                churn,
                bandwidth_kbps,
            });
        }
        let total: f64 = out.iter().map(|c| c.weight).sum();
        if total <= 0.0 {
            let msg =
                "every `weight` in [[classes]] is zero; give at least one class a positive weight"
                    .to_string();
            return Err(self.error("classes.0.weight", msg));
        }
        out.iter_mut().for_each(|c| c.weight /= total);
        Ok(out)
    }

    /// A class's `regions` table: known names, weights at least 0, not all 0.
    fn class_regions(
        &self,
        key: &str,
        raw: &BTreeMap<Spanned<String>, f64>,
        data: &RegionData,
    ) -> Result<Vec<RegionWeight>, ScenarioError> {
        let mut w = vec![0.0; data.len()];
        for (name, weight) in raw {
            let Some(r) = data.index_of(name.get_ref()) else {
                let known: Vec<&str> = data.regions().iter().map(|r| r.name.as_str()).collect();
                let msg = format!(
                    "unknown region `{}` in `{key}` (known: {})",
                    name.get_ref(),
                    known.join(", ")
                );
                return Err(self.loc.error_at(name.span(), msg));
            };
            w[r] = self.range(&format!("{key}.{}", name.get_ref()), *weight, 0.0, 1e9, "")?;
        }
        let total: f64 = w.iter().sum();
        if total <= 0.0 {
            let msg = format!(
                "every weight in `{key}` is zero; give at least one region a positive weight or remove the table"
            );
            return Err(self.error(key, msg));
        }
        Ok(w.into_iter()
            .enumerate()
            .filter(|(_, w)| *w > 0.0)
            .map(|(region, weight)| RegionWeight {
                region,
                weight: weight / total,
            })
            .collect())
    }

    /// A distribution of seconds at `key`.
    fn dist(&self, key: &str, raw: &RawDist) -> Result<Dist, ScenarioError> {
        let s = |k: &str, v: f64| self.range(k, v, CHURN_S_MIN, DURATION_S_MAX, "s");
        match raw {
            RawDist::Fixed(v) => Ok(Dist::Fixed(s(key, *v)?)),
            RawDist::Uniform(v) => match v[..] {
                [lo, hi] if lo <= hi => Ok(Dist::Uniform(s(key, lo)?, s(key, hi)?)),
                _ => Err(self.error(
                    key,
                    format!("`{key}` as an array must be [min, max] with min <= max, found {v:?}"),
                )),
            },
            RawDist::Table(t) => self.dist_table(key, t),
        }
    }

    fn dist_table(&self, key: &str, t: &RawDistTable) -> Result<Dist, ScenarioError> {
        let (name, needs): (&str, &[&str]) = match t.kind {
            RawDistKind::Exponential => ("exponential", &["mean"]),
            RawDistKind::Weibull => ("weibull", &["scale", "shape"]),
            RawDistKind::Pareto => ("pareto", &["min", "shape"]),
        };
        let given = [
            ("mean", t.mean),
            ("scale", t.scale),
            ("min", t.min),
            ("shape", t.shape),
        ];
        for (k, v) in given {
            if v.is_some() != needs.contains(&k) {
                let msg = format!(
                    "a `{name}` distribution in `{key}` takes exactly the keys kind, {}",
                    needs.join(", ")
                );
                return Err(self.error(&format!("{key}.{k}"), msg));
            }
        }
        let get = |k: &str| given.iter().find(|(n, _)| *n == k).and_then(|(_, v)| *v);
        let secs = |k: &str| {
            self.range(
                &format!("{key}.{k}"),
                get(k).unwrap_or(0.0),
                CHURN_S_MIN,
                DURATION_S_MAX,
                "s",
            )
        };
        let shape = || {
            self.range(
                &format!("{key}.shape"),
                get("shape").unwrap_or(0.0),
                0.05,
                100.0,
                "",
            )
        };
        Ok(match t.kind {
            RawDistKind::Exponential => Dist::Exponential {
                mean: secs("mean")?,
            },
            RawDistKind::Weibull => Dist::Weibull {
                scale: secs("scale")?,
                shape: shape()?,
            },
            RawDistKind::Pareto => Dist::Pareto {
                min: secs("min")?,
                shape: shape()?,
            },
        })
    }
}

#[cfg(test)]
mod tests;
