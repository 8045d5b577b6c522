//! Liveness after healing: once the fault phase is over, the network must converge.
//!
//! Converged means every running node holds at least one working connection, and the
//! running nodes form one connected component over working connections. A connection
//! works if it is not closing, both ends hold it, and the network carries traffic both
//! ways between them (`usable`: no partition in the way), so a half-open connection that
//! a node has not yet found dead does not count. The fleet
//! engine probes every [`PROBE_INTERVAL`] from the end of the fault phase (see
//! [`Scenario::fault_phase_end`](crate::Scenario::fault_phase_end)); the first probe that
//! finds the network converged ends the phase, and a deadline passed without one fails the
//! run with exit code 128.

use std::fmt;
use std::time::Duration;

use flotilla_core::{Node, PeerId};

use crate::world::World;

/// How often the liveness phase looks at the network.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The network did not converge in time.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeout {
    /// When the liveness phase began, since the start of the run.
    pub from: Duration,
    /// The bound, `expect.liveness_s`.
    pub bound: Duration,
    /// Why the last probe found the network not converged.
    pub reason: String,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "liveness: the network did not converge within {} s after the fault phase ended at {} s: {}",
            self.bound.as_secs_f64(),
            self.from.as_secs_f64(),
            self.reason
        )
    }
}

/// What the liveness probe needs to know of one running node: a [`Node`], or a copy of
/// its connections taken while it runs elsewhere (the turmoil engine's hosts).
pub trait Links {
    /// The node's peer id.
    fn peer_id(&self) -> PeerId;
    /// Peers the node holds a connection to that is not closing.
    fn open(&self) -> impl Iterator<Item = PeerId> + '_;
    /// True if the node holds any connection to `peer`, closing or not.
    fn is_connected(&self, peer: &PeerId) -> bool;
}

impl Links for Node {
    fn peer_id(&self) -> PeerId {
        Node::peer_id(self)
    }

    fn open(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.connections().filter(|c| !c.closing).map(|c| c.peer)
    }

    fn is_connected(&self, peer: &PeerId) -> bool {
        Node::is_connected(self, peer)
    }
}

/// Disjoint sets of node indices (union by the smaller root, path halving): the overlay's
/// components.
#[derive(Debug, Clone)]
pub(crate) struct Disjoint {
    parent: Vec<usize>,
}

impl Disjoint {
    /// `n` nodes, each alone.
    pub(crate) fn new(n: usize) -> Self {
        Disjoint {
            parent: (0..n).collect(),
        }
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    /// Puts `a` and `b` in one set.
    pub(crate) fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        self.parent[ra.max(rb)] = ra.min(rb);
    }

    /// The distinct sets of `members`, each named by its smallest index, in order.
    pub(crate) fn roots(&mut self, members: impl Iterator<Item = usize>) -> Vec<usize> {
        let mut roots: Vec<usize> = members.map(|i| self.root(i)).collect();
        roots.sort_unstable();
        roots.dedup();
        roots
    }
}

/// `Ok` if the running nodes (`Some`) are converged, otherwise why not; `usable(a, b)`
/// says whether the network carries traffic between `a` and `b` both ways.
pub fn converged<N: Links>(
    world: &World,
    nodes: &[Option<N>],
    usable: impl Fn(usize, usize) -> bool,
) -> Result<(), String> {
    let mut sets = Disjoint::new(nodes.len());
    let mut alone = Vec::new();
    for (a, node) in nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        let mut degree = 0;
        for peer in node.open() {
            let Some(b) = world.index_of(&peer) else {
                continue;
            };
            let mutual = nodes[b]
                .as_ref()
                .is_some_and(|other| other.is_connected(&node.peer_id()));
            if !mutual || !usable(a, b) {
                continue;
            }
            degree += 1;
            sets.union(a, b);
        }
        if degree == 0 {
            alone.push(a);
        }
    }
    if !alone.is_empty() {
        let shown: Vec<String> = alone.iter().take(8).map(|i| format!("n{i}")).collect();
        let more = if alone.len() > 8 { ", ..." } else { "" };
        return Err(format!(
            "{} running nodes have no working connection ({}{more})",
            alone.len(),
            shown.join(", ")
        ));
    }
    let roots = sets.roots((0..nodes.len()).filter(|i| nodes[*i].is_some()));
    if roots.len() > 1 {
        return Err(format!(
            "the overlay has {} components (smallest members: {})",
            roots.len(),
            roots
                .iter()
                .take(8)
                .map(|r| format!("n{r}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}
