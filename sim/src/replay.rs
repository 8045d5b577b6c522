//! Filtering a trace for `flotilla-sim replay`: by peer, event kind and time window.
//!
//! A line is kept if it passes every filter given: one of the `peers` is the line's node or
//! appears among its fields, its kind is one of `kinds`, and its time is in
//! `[from_s, until_s)`.
//!
//! ```
//! use flotilla_sim::replay::Filter;
//!
//! let f = Filter { peers: vec!["n2".into()], kinds: vec![], from_s: None, until_s: Some(10.0) };
//! assert!(f.keeps("    3.000000 n1 dial n2"));
//! assert!(!f.keeps("   12.000000 n2 dial n1"));
//! assert!(!f.keeps("    3.000000 n1 dial n3"));
//! ```

/// Which trace lines to keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Peers (`n12`, or `--` for engine lines); empty keeps every peer.
    pub peers: Vec<String>,
    /// Event kinds (`conn+`, `rtt`, `crash`); empty keeps every kind.
    pub kinds: Vec<String>,
    /// Keep lines at or after this many seconds.
    pub from_s: Option<f64>,
    /// Keep lines before this many seconds.
    pub until_s: Option<f64>,
}

impl Filter {
    /// True if `line` passes the filter.
    pub fn keeps(&self, line: &str) -> bool {
        let mut fields = line.split_whitespace();
        let (Some(time), Some(node), Some(kind)) = (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let Ok(t) = time.parse::<f64>() else {
            return false;
        };
        if self.from_s.is_some_and(|from| t < from) || self.until_s.is_some_and(|until| t >= until)
        {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k == kind) {
            return false;
        }
        if !self.peers.is_empty() {
            let mentions =
                |p: &String| node == p || line.split_whitespace().skip(3).any(|f| f == p);
            if !self.peers.iter().any(mentions) {
                return false;
            }
        }
        true
    }

    /// The lines of `trace` that pass, each with its newline.
    pub fn apply(&self, trace: &[u8]) -> String {
        String::from_utf8_lossy(trace)
            .split_inclusive('\n')
            .filter(|l| self.keeps(l))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "    0.000000 n0 start eu-west lm=5.000ms boot\n    1.500000 n1 dial n0\n   30.000000 -- fault #0 partition on both-ways\n   31.000000 n2 crash running\n";

    #[test]
    fn every_filter_narrows() {
        let all = Filter::default();
        assert_eq!(all.apply(TRACE.as_bytes()), TRACE);
        let peer = Filter {
            peers: vec!["n0".into()],
            ..Filter::default()
        };
        assert_eq!(peer.apply(TRACE.as_bytes()).lines().count(), 2);
        let kind = Filter {
            kinds: vec!["crash".into(), "fault".into()],
            ..Filter::default()
        };
        assert_eq!(kind.apply(TRACE.as_bytes()).lines().count(), 2);
        let window = Filter {
            from_s: Some(1.5),
            until_s: Some(31.0),
            ..Filter::default()
        };
        assert_eq!(
            window.apply(TRACE.as_bytes()),
            "    1.500000 n1 dial n0\n   30.000000 -- fault #0 partition on both-ways\n"
        );
    }
}
