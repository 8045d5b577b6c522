//! Invariants of runs with `[jobs]`.
//!
//! - `capacity`: after every step in which a node reported a job event (the executor's
//!   events come back as allocation changes), its jobs machine keeps its books:
//!   allocated + locked + available = onboarded, nothing negative, every live allocation
//!   holds exactly its capacity and ports (no double allocation), and every live
//!   allocation has its job record ([`Jobs::check_invariant`](flotilla_core::jobs::Jobs)).
//! - `deployment-bound`: every deployment ends (completed or failed) within the sum of its
//!   service provider's deadlines: bids, commit, provision, run (the longest template's
//!   duration plus the run margin) and shutdown. Live deployments are held against it at
//!   every step and at the end; those of a service provider that went down are forgotten.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flotilla_core::jobs::JobEvent;
use flotilla_core::{Event, Node};

use super::{Breach, Ctx, Invariant, LinkView};
use crate::scenario::{JobsScenario, Scenario};

/// `capacity`: the provider's books balance after every job event.
#[derive(Debug, Default)]
pub struct JobsCapacity {
    /// Nodes that reported a job event in the current step.
    touched: BTreeSet<usize>,
}

impl Invariant for JobsCapacity {
    fn name(&self) -> &'static str {
        "capacity"
    }

    fn check_event(&mut self, _ctx: &Ctx<'_>, node: usize, event: &Event) -> Result<(), Breach> {
        if matches!(
            event,
            Event::Job(JobEvent::Allocation { .. } | JobEvent::Refused { .. })
        ) {
            self.touched.insert(node);
        }
        Ok(())
    }

    fn check_node(&mut self, _ctx: &Ctx<'_>, node: usize, n: &Node) -> Result<(), Breach> {
        if !self.touched.remove(&node) {
            return Ok(());
        }
        n.jobs()
            .check_invariant()
            .map_err(|e| Breach::at(node, format!("the provider's books do not balance: {e}")))
    }

    fn check_end(
        &mut self,
        _ctx: &Ctx<'_>,
        nodes: &[Option<Node>],
        _links: &dyn LinkView,
    ) -> Result<(), Breach> {
        for (i, n) in nodes.iter().enumerate() {
            if let Some(n) = n {
                n.jobs().check_invariant().map_err(|e| {
                    Breach::at(
                        i,
                        format!("the provider's books do not balance at the end: {e}"),
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// `deployment-bound`: every deployment ends within its deadlines.
#[derive(Debug)]
pub struct DeploymentBound {
    bound: Duration,
    /// Live deployments by (node, number): when they were asked for.
    live: BTreeMap<(usize, u64), Duration>,
    /// Live deployments by their deadline, to find the first overdue one cheaply.
    by_deadline: BTreeSet<(Duration, usize, u64)>,
}

impl DeploymentBound {
    /// The invariant for `scenario`'s `[jobs]`.
    pub fn new(scenario: &Scenario, jobs: &JobsScenario) -> DeploymentBound {
        let bound = jobs
            .templates
            .iter()
            .map(|t| JobsScenario::bound(&scenario.node.jobs, t))
            .max()
            .unwrap_or_default();
        DeploymentBound {
            bound,
            live: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
        }
    }

    /// The longest a deployment may live.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    fn overdue(&self, now: Duration) -> Result<(), Breach> {
        match self.by_deadline.first() {
            Some(&(deadline, node, id)) if deadline < now => Err(Breach::at(
                node,
                format!(
                    "deployment #{id} is still live {:.3} s after it was asked for, past the bound of {} s (deadlines of bids, commit, provision, run and shutdown)",
                    (now - deadline + self.bound).as_secs_f64(),
                    self.bound.as_secs_f64()
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl Invariant for DeploymentBound {
    fn name(&self) -> &'static str {
        "deployment-bound"
    }

    fn check_event(&mut self, ctx: &Ctx<'_>, node: usize, event: &Event) -> Result<(), Breach> {
        let Event::Job(JobEvent::Deployment { id, state, .. }) = event else {
            return Ok(());
        };
        let key = (node, *id);
        if state.is_terminal() {
            if let Some(asked) = self.live.remove(&key) {
                self.by_deadline.remove(&(asked + self.bound, node, *id));
            }
        } else if let std::collections::btree_map::Entry::Vacant(e) = self.live.entry(key) {
            e.insert(ctx.elapsed);
            self.by_deadline
                .insert((ctx.elapsed + self.bound, node, *id));
        }
        Ok(())
    }

    fn check_node(&mut self, ctx: &Ctx<'_>, _node: usize, _n: &Node) -> Result<(), Breach> {
        self.overdue(ctx.elapsed)
    }

    fn node_down(&mut self, node: usize) {
        let gone: Vec<((usize, u64), Duration)> = self
            .live
            .range((node, 0)..=(node, u64::MAX))
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((n, id), asked) in gone {
            self.live.remove(&(n, id));
            self.by_deadline.remove(&(asked + self.bound, n, id));
        }
    }

    fn check_end(
        &mut self,
        ctx: &Ctx<'_>,
        _nodes: &[Option<Node>],
        _links: &dyn LinkView,
    ) -> Result<(), Breach> {
        self.overdue(ctx.elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine;
    use crate::scenario::Scenario;
    use flotilla_core::deployment::DeployState;

    const TEXT: &str = "name = \"b\"\nduration_s = 60\n[peers]\ncount = 4\n[jobs]\nproviders_count = 2\ncores = 2\nmemory_mb = 1024\nservice_providers = 1\ndeploy_at_s = 1\ndeploy_every_s = 10\n[[jobs.templates]]\ncores = 1\nmemory_mb = 64\nduration_s = 100\n";

    fn event(id: u64, state: DeployState) -> Event {
        Event::Job(JobEvent::Deployment {
            id,
            state,
            reason: String::new(),
        })
    }

    #[test]
    fn a_deployment_live_past_its_bound_breaks_it_unless_its_node_went_down() {
        let s = Scenario::parse(TEXT, "b.toml").unwrap();
        let world = engine::world(&s, 1);
        let node = world.new_node(3, crate::world::World::epoch());
        let mut inv = DeploymentBound::new(&s, s.jobs.as_ref().unwrap());
        // 5 + 10 + 120 + 100 + 60 + 30 s.
        assert_eq!(inv.bound(), Duration::from_secs(325));
        let at = |s| Ctx {
            world: &world,
            elapsed: Duration::from_secs(s),
        };
        inv.check_event(&at(10), 3, &event(1, DeployState::Preparing))
            .unwrap();
        inv.check_event(&at(20), 3, &event(2, DeployState::Preparing))
            .unwrap();
        inv.check_event(&at(30), 3, &event(2, DeployState::Completed))
            .unwrap();
        assert!(inv.check_node(&at(335), 3, &node).is_ok());
        let b = inv.check_node(&at(336), 3, &node).unwrap_err();
        assert!(b.detail.contains("deployment #1"), "{}", b.detail);
        inv.node_down(3);
        assert!(inv.check_node(&at(1000), 3, &node).is_ok());
    }
}
