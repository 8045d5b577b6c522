//! Command-line overrides of scenario values (`--peers`, `--duration-s`), shared by the
//! `run`, `replay` and `sweep` commands.
//!
//! ```
//! use flotilla_sim::Scenario;
//! use flotilla_sim::overrides::Overrides;
//!
//! let mut s = Scenario::parse("name = \"o\"\nduration_s = 60\n[peers]\ncount = 10\n", "o.toml").unwrap();
//! let o = Overrides { peers: Some(4), duration_s: None };
//! o.apply(&mut s).unwrap();
//! assert_eq!((s.peers.count, o.suffix(), o.args()), (4, "-4p".to_string(), vec!["--peers 4".to_string()]));
//!
//! // A duration shorter than the start spread cuts the spread, with a note.
//! let mut s = Scenario::parse("name = \"o\"\nduration_s = 600\n[peers]\ncount = 10\nstart_spread_s = 120\n", "o.toml").unwrap();
//! let notes = Overrides { peers: None, duration_s: Some(60.0) }.apply(&mut s).unwrap();
//! assert_eq!((s.peers.start_spread.as_secs(), notes.len()), (60, 1));
//! ```

use crate::scenario::Scenario;

/// Command-line overrides of scenario values.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Overrides {
    /// Override the scenario's peer count (e.g. a smaller run on the turmoil engine).
    #[arg(long, value_name = "N")]
    pub peers: Option<usize>,
    /// Override the scenario's simulated duration in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration_s: Option<f64>,
}

/// A command line that does not fit the scenario; the message says what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl Overrides {
    /// Applies the overrides to `scenario`. Returns notes for the user (one line each) about
    /// values changed to fit: a `--duration-s` shorter than `peers.start_spread_s` cuts the
    /// spread to the duration, and the resolved scenario records the cut value.
    pub fn apply(&self, scenario: &mut Scenario) -> Result<Vec<String>, UsageError> {
        let mut notes = Vec::new();
        if let Some(n) = self.peers {
            let max = crate::scenario::PEERS_MAX as usize;
            if n < 2 || n < scenario.peers.bootstrap || n > max {
                return Err(UsageError(format!(
                    "--peers {n}: need at least 2 peers, at least the scenario's {} bootstrap \
                     nodes, and at most {max}",
                    scenario.peers.bootstrap
                )));
            }
            if let Some(k) = scenario.faults_node_max()
                && k >= n
            {
                return Err(UsageError(format!(
                    "--peers {n}: the scenario's faults name peer {k}; give at least {} peers",
                    k + 1
                )));
            }
            scenario.peers.count = n;
        }
        if let Some(s) = self.duration_s {
            if !(s > 0.0 && s <= crate::scenario::DURATION_S_MAX) {
                return Err(UsageError(format!(
                    "--duration-s {s}: must be more than 0 and at most {}",
                    crate::scenario::DURATION_S_MAX
                )));
            }
            let duration = std::time::Duration::from_secs_f64(s);
            if duration < scenario.peers.start_spread {
                notes.push(format!(
                    "--duration-s {s}: peers.start_spread_s cut from {} s to {s} s, so every \
                     peer starts within the run",
                    scenario.peers.start_spread.as_secs_f64()
                ));
                scenario.peers.start_spread = duration;
            }
            scenario.duration = duration;
        }
        Ok(notes)
    }

    /// The suffix of the default output directory: `-100p-120s`.
    pub fn suffix(&self) -> String {
        let mut out = String::new();
        if let Some(n) = self.peers {
            out.push_str(&format!("-{n}p"));
        }
        if let Some(s) = self.duration_s {
            out.push_str(&format!("-{s}s"));
        }
        out
    }

    /// The overrides as arguments, for the replay command.
    pub fn args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = self.peers {
            out.push(format!("--peers {n}"));
        }
        if let Some(s) = self.duration_s {
            out.push(format!("--duration-s {s}"));
        }
        out
    }
}
