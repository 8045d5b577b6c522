//! `[node.limits]`, `[bootstrap_node.limits]`, `[classes.node.limits]` and `fd_limit`: the
//! resource manager's limits of each node profile.
//!
//! A profile's limits start from the core's machine-scaled defaults,
//! [`Limits::for_machine`] of the profile's `resources.memory_mb` (8 GiB when it is 0, the
//! default) and its `fd_limit` (16384 by default), then apply the `limits` tables of the
//! profile's chain in order: `[node.limits]`, then `[bootstrap_node.limits]` or
//! `[classes.node.limits]`. Each table is the core's `LimitsConfig` (the `[limits]` table of
//! the node's own configuration file), so `"default"` in a class's table means the value
//! after `[node.limits]`. Limits that can never be satisfied are refused, naming the key.

use std::sync::Arc;

use flotilla_core::Config;
use flotilla_core::rcmgr::{Limits, LimitsConfig};

use super::ScenarioError;
use super::check::Checker;
use super::raw::RawNode;

/// The file-descriptor limit of a profile that does not set `fd_limit`.
pub const FD_LIMIT_DEFAULT: u64 = 16384;
/// The machine memory of a profile whose `resources.memory_mb` is 0, MiB.
pub const MEMORY_MB_DEFAULT: u64 = 8192;

/// The resource manager's limits of one node profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLimits {
    /// The limits every node of the profile starts with.
    pub limits: Arc<Limits>,
    /// True if the profile's chain writes a `limits` table or `fd_limit`.
    pub configured: bool,
    /// The file-descriptor limit the defaults were scaled to.
    pub fd_limit: u64,
    /// The `limits` tables of the chain, in order, with the table each came from.
    chain: Vec<(String, LimitsConfig)>,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            limits: Arc::new(Limits::for_machine(
                MEMORY_MB_DEFAULT << 20,
                FD_LIMIT_DEFAULT,
            )),
            configured: false,
            fd_limit: FD_LIMIT_DEFAULT,
            chain: Vec::new(),
        }
    }
}

impl Checker<'_> {
    /// The limits of the profile `config` built from `base` (the parent profile's limits,
    /// or the defaults) with table `table` (`node`, `bootstrap_node`, `classes.<i>.node`)
    /// applied.
    pub(super) fn node_limits(
        &self,
        raw: Option<&RawNode>,
        base: &NodeLimits,
        config: &Config,
        table: &str,
    ) -> Result<NodeLimits, ScenarioError> {
        let mut out = base.clone();
        if let Some(raw) = raw {
            if let Some(fd) = raw.fd_limit {
                if fd == 0 {
                    let key = format!("{table}.fd_limit");
                    return Err(self.error(&key, format!("`{key}` must be at least 1")));
                }
                out.fd_limit = fd;
                out.configured = true;
            }
            if let Some(l) = &raw.limits {
                out.chain.push((table.to_string(), l.clone()));
                out.configured = true;
            }
        }
        let memory_mb = match config.resources.memory_mb {
            0 => MEMORY_MB_DEFAULT,
            m => m,
        };
        let mut limits = Limits::for_machine(memory_mb.saturating_mul(1 << 20), out.fd_limit);
        for (t, l) in &out.chain {
            limits = limits
                .with_overrides(l)
                .map_err(|e| self.limits_error(t, &e.to_string()))?;
        }
        out.limits = Arc::new(limits);
        Ok(out)
    }

    /// The error of the core's limits check, its keys prefixed with the scenario table
    /// `table` and pointing at the first of them the file writes.
    fn limits_error(&self, table: &str, message: &str) -> ScenarioError {
        let message = message.replace("limits.", &format!("{table}.limits."));
        let keys: Vec<String> = message
            .split(|c: char| c.is_whitespace() || c == '`' || c == ',' || c == ';')
            .filter(|w| w.starts_with(&format!("{table}.limits.")))
            .map(str::to_string)
            .collect();
        let written = keys.iter().find_map(|k| self.loc.written(k));
        match written {
            Some((path, line)) => ScenarioError::Invalid {
                path,
                line,
                message,
            },
            None => self.error(&format!("{table}.limits"), message),
        }
    }
}
