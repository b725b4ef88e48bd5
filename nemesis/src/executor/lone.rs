//! The lone-executor attack's choreography, as a polled state machine.
//!
//! A Byzantine fault with both `withhold-certificate` and `in-the-dark` lets one honest replica
//! alone execute the Byzantine primary's slots ([`lone_roles`]). Once the primary role has been
//! forced onto a Byzantine replica, the executor:
//!
//! 1. **delays** the lone replica's messages to the other honest replicas by [`LONE_DELAY`], so
//!    that the view change that follows forms without its VC-REQUEST and it must roll back
//!    (delays are the asynchrony the protocol must tolerate, not a fault of the budget);
//! 2. with `re-propose`, runs an **amnesia** probe: once the primary offers second batches for
//!    the slots whose evidence it withholds (its `byzantine.re-propose` counter moved), the
//!    honest replicas that supported those slots without seeing them committed are killed and
//!    restarted one at a time, as many as the second batch needs to reach nf votes. A replica
//!    that persisted its votes before sending them (PROTOCOL §9.4) refuses the second batch
//!    after its restart; one that forgot them lets two batches be certified for one (view,
//!    seq). A crash and restart with the durable state intact is not a fault of the budget for
//!    safety, and each replica is down for [`AMNESIA_DOWN`] only;
//! 3. once a replica entered a later view, **lifts the delay** (the lone replica must now get
//!    the NV-PROPOSE quickly); beyond the budget, if no view change came within
//!    [`LONE_FAILURE_AFTER`], the Byzantine replicas first claim a failure (`false-failure`:
//!    f + 1 VC-REQUESTs make the honest replicas join, PROTOCOL §4);
//! 4. once the lone replica rolled back and the new view settled, **cuts the new view's honest
//!    primary off** once more, so that the next view change runs over evidence that holds two
//!    certificates from different views for the slots that were rolled back (the older one
//!    re-presented by a replica that hides or downgrades evidence names the batch that lost).
//!
//! Each step is recorded as a nemesis info (`lone-executor`, `amnesia`, `false-failure`,
//! `force-view-change` with `after_rollback`). Everything ends with the fault.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use history::OpKind;
use replica::byzantine::Behaviour;
use replica::byzantine::hook::lone_roles;
use replica::core::{ReplicaId, View};
use serde_json::json;

use super::{Effect, Executor, FORCE_POLL, FORCE_STEP_TIMEOUT, Observe, numbers};
use crate::network::{LinkFault, NetworkFaults, PartitionShape, partition};
use crate::schedule::FaultKind;
use crate::{FaultAction, Node};

/// How long the lone replica's messages to other honest replicas take: more than the spread of
/// the honest replicas' progress timers, so that the new primary has nf VC-REQUESTs without the
/// lone one's.
pub const LONE_DELAY: Duration = Duration::from_millis(600);

/// Beyond the budget, how long the attack waits for a view change before its Byzantine
/// replicas claim a failure: with f + 1 of them voting, the lone replica's slots get nf INFORMs
/// and no client retransmits, so no honest timer fires.
pub const LONE_FAILURE_AFTER: Duration = Duration::from_millis(1500);

/// How long an amnesia probe keeps each crashed voter down.
pub const AMNESIA_DOWN: Duration = Duration::from_millis(50);

/// The key of the links the after-rollback cut blocks, beside the faults' own and the
/// forcing's.
const CUT_LINKS: usize = usize::MAX - 1;

/// A lone-executor attack under way (module docs).
#[derive(Debug)]
pub(super) struct Lone {
    /// The Byzantine fault: its index keys the lone replica's delayed links.
    pub(super) fault: usize,
    /// The Byzantine primary's view.
    view: u64,
    primary: ReplicaId,
    lone: ReplicaId,
    /// When the amnesia probe gives up (the forcing's deadline).
    amnesia_until: Duration,
    /// When everything gives up (the fault's end).
    until: Duration,
    phase: Phase,
    pub(super) wake: Duration,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the primary's second batches, then crashing `voters` one at a time.
    Amnesia {
        /// `byzantine.re-propose` of the primary when the behaviours were switched on.
        baseline: u64,
        offered: bool,
        voters: VecDeque<ReplicaId>,
        /// The voter down now, and when it restarts.
        down: Option<(ReplicaId, Duration)>,
        /// The voter restarted last, until it answers.
        rising: Option<ReplicaId>,
        crashed: Vec<u8>,
    },
    /// Waiting for a later view (lifting the delay) and for the lone replica's rollback.
    AfterRollback {
        /// The lone replica's rollbacks when this phase began.
        before: u64,
        claim_failure_at: Option<Duration>,
    },
    /// The new view's honest primary is cut off until the view moves past `view`.
    Cutting {
        view: u64,
        step_end: Duration,
    },
    Done,
}

impl Lone {
    /// The fault is held past its end: the amnesia probe and the rest get until these.
    pub(super) fn extend(&mut self, amnesia_until: Duration, until: Duration) {
        self.amnesia_until = self.amnesia_until.max(amnesia_until);
        self.until = self.until.max(until);
    }
}

impl Executor {
    /// Starts the choreography of Byzantine fault `fault` once Byzantine `primary` holds
    /// `view`, when the fault's behaviours make a lone-executor attack.
    pub(super) fn begin_lone(
        &mut self,
        fault: usize,
        view: u64,
        primary: ReplicaId,
        now: Duration,
        observe: &dyn Observe,
        out: &mut Vec<Effect>,
    ) {
        let Some(spec) = self.faults.get(fault) else { return };
        let FaultAction::Byzantine(behaviours) = &spec.action else { return };
        let lone_attack = behaviours.contains(&Behaviour::WithholdCertificate)
            && behaviours.contains(&Behaviour::InTheDark);
        if !lone_attack {
            return;
        }
        let re_propose = behaviours.contains(&Behaviour::RePropose);
        let (amnesia_until, until) = (spec.end - (spec.end - spec.start) / 4, spec.end);
        let n = self.replica_count;
        let f = (usize::from(n) - 1) / 3;
        let colluders: BTreeSet<ReplicaId> =
            self.byzantine.iter().copied().filter(|r| *r != primary).collect();
        let (dark, lone) = lone_roles(n, f, primary, &colluders, View(view));
        let Some(lone) = lone else { return };
        let link = LinkFault { delay: LONE_DELAY, ..LinkFault::default() };
        let mut faults = NetworkFaults::healthy();
        // Not towards the Byzantine replicas: the lone replica's votes must reach the primary
        // at once, only its VC-REQUEST must reach the honest ones late.
        let honest = self.all().into_iter().filter(|r| *r != lone && !self.byzantine.contains(r));
        for other in honest {
            faults.set(Node::Replica(lone), Node::Replica(other), link);
        }
        self.links.insert(fault, faults);
        out.push(self.links_effect());
        let value = json!({"lone": lone.0, "primary": primary.0, "view": view,
            "delay_ms": LONE_DELAY.as_millis() as u64});
        out.push(Effect::Record { kind: OpKind::Info, f: "lone-executor".into(), value });
        let phase = if re_propose {
            let nf = usize::from(n) - f;
            let voters: VecDeque<ReplicaId> = self
                .all()
                .into_iter()
                .filter(|r| !self.byzantine.contains(r) && !dark.contains(r) && *r != lone)
                .collect();
            let needed = nf.saturating_sub(1 + dark.len()).min(voters.len());
            let name = format!("byzantine.{}", Behaviour::RePropose);
            let baseline = self
                .active
                .get(&fault)
                .and_then(|active| active.switched.as_ref())
                .and_then(|snapshot| snapshot.get(&(primary, name)).copied())
                .unwrap_or(0);
            Phase::Amnesia {
                baseline,
                offered: false,
                voters: voters.into_iter().take(needed).collect(),
                down: None,
                rising: None,
                crashed: Vec::new(),
            }
        } else {
            self.after_rollback_phase(now, observe, lone)
        };
        self.lone = Some(Lone {
            fault,
            view,
            primary,
            lone,
            amnesia_until,
            until,
            phase,
            wake: now + FORCE_POLL / 2,
        });
    }

    fn after_rollback_phase(&self, now: Duration, observe: &dyn Observe, lone: ReplicaId) -> Phase {
        Phase::AfterRollback {
            before: observe.counter(lone, "rollbacks"),
            claim_failure_at: self.beyond_budget.then_some(now + LONE_FAILURE_AFTER),
        }
    }

    /// One step of the choreography under way, when it is due.
    pub(super) fn step_lone(
        &mut self,
        now: Duration,
        observe: &dyn Observe,
        out: &mut Vec<Effect>,
    ) {
        let Some(mut lone) = self.lone.take() else { return };
        if now < lone.wake {
            self.lone = Some(lone);
            return;
        }
        lone.wake = now + FORCE_POLL / 2;
        if now > lone.until {
            self.finish_lone(lone, out);
            return;
        }
        match &mut lone.phase {
            Phase::Amnesia { baseline, offered, voters, down, rising, crashed } => {
                if let Some((voter, restart_at)) = *down {
                    if now >= restart_at {
                        self.restart(voter, out);
                        *down = None;
                        *rising = Some(voter);
                    } else {
                        lone.wake = restart_at;
                    }
                    self.lone = Some(lone);
                    return;
                }
                if let Some(voter) = *rising {
                    if observe.status(voter).is_none() && now < lone.amnesia_until {
                        self.lone = Some(lone);
                        return;
                    }
                    *rising = None;
                }
                if !*offered {
                    let name = format!("byzantine.{}", Behaviour::RePropose);
                    *offered = observe.counter(lone.primary, &name) > *baseline;
                }
                let give_up = now >= lone.amnesia_until;
                if *offered
                    && !give_up
                    && let Some(voter) = voters.pop_front()
                {
                    out.push(Effect::Kill(voter));
                    crashed.push(voter.0);
                    *down = Some((voter, now + AMNESIA_DOWN));
                    lone.wake = now + AMNESIA_DOWN;
                    self.lone = Some(lone);
                    return;
                }
                if !*offered && !give_up {
                    self.lone = Some(lone);
                    return;
                }
                if *offered {
                    let value = json!({"primary": lone.primary.0, "view": lone.view,
                        "restarted": crashed.clone()});
                    out.push(Effect::Record { kind: OpKind::Info, f: "amnesia".into(), value });
                }
                lone.phase = self.after_rollback_phase(now, observe, lone.lone);
            }
            Phase::AfterRollback { before, claim_failure_at } => {
                if self.links.contains_key(&lone.fault) {
                    let entered = self
                        .all()
                        .into_iter()
                        .filter_map(|r| observe.status(r))
                        .map(|s| s.view)
                        .max();
                    if entered.is_some_and(|entered| entered <= lone.view)
                        && claim_failure_at.is_some_and(|at| now >= at)
                    {
                        *claim_failure_at = None;
                        self.claim_failure(lone.fault, lone.view, out);
                    }
                    if let Some(entered) = entered.filter(|entered| *entered > lone.view) {
                        self.links.remove(&lone.fault);
                        out.push(self.links_effect());
                        let value = json!({"lone": lone.lone.0, "view": entered, "delay_ms": 0});
                        out.push(Effect::Record {
                            kind: OpKind::Info,
                            f: "lone-executor".into(),
                            value,
                        });
                    }
                    self.lone = Some(lone);
                    return;
                }
                if observe.counter(lone.lone, "rollbacks") <= *before {
                    self.lone = Some(lone);
                    return;
                }
                let Some((view, primary, _)) = self.settled(observe) else {
                    self.lone = Some(lone);
                    return;
                };
                if view <= lone.view {
                    self.lone = Some(lone);
                    return;
                }
                if self.byzantine.contains(&primary) || !self.network {
                    lone.phase = Phase::Done;
                    self.lone = Some(lone);
                    return;
                }
                let value = json!({"after_rollback": true, "cut": [primary.0], "view": view});
                out.push(Effect::Record {
                    kind: OpKind::Info,
                    f: FaultKind::ForceViewChange.name().into(),
                    value,
                });
                let mut order = self.all();
                order.retain(|replica| *replica != primary);
                order.insert(0, primary);
                if let Ok(faults) = partition(PartitionShape::IsolateOne, &order) {
                    self.links.insert(CUT_LINKS, faults);
                    out.push(self.links_effect());
                }
                let step_end = (now + FORCE_STEP_TIMEOUT).min(lone.until);
                lone.phase = Phase::Cutting { view, step_end };
                lone.wake = now + FORCE_POLL;
            }
            Phase::Cutting { view, step_end } => {
                let moved = self.settled(observe).is_some_and(|(now_view, _, _)| now_view > *view);
                if !moved && now < *step_end {
                    lone.wake = now + FORCE_POLL;
                    self.lone = Some(lone);
                    return;
                }
                self.links.remove(&CUT_LINKS);
                out.push(self.links_effect());
                lone.phase = Phase::Done;
            }
            Phase::Done => {}
        }
        self.lone = Some(lone);
    }

    /// Ends the choreography (the fault ended, or its time is up): a voter still down restarts,
    /// and the cut is lifted. The fault's own links go when the fault ends.
    pub(super) fn finish_lone(&mut self, lone: Lone, out: &mut Vec<Effect>) {
        match lone.phase {
            Phase::Amnesia { down, offered, crashed, .. } => {
                if let Some((voter, _)) = down {
                    self.restart(voter, out);
                }
                if offered {
                    let value = json!({"primary": lone.primary.0, "view": lone.view,
                        "restarted": crashed});
                    out.push(Effect::Record { kind: OpKind::Info, f: "amnesia".into(), value });
                }
            }
            Phase::Cutting { .. } => {
                self.links.remove(&CUT_LINKS);
                out.push(self.links_effect());
            }
            Phase::AfterRollback { .. } | Phase::Done => {}
        }
    }

    /// Beyond the budget: the Byzantine replicas of fault `index` add `false-failure` to their
    /// behaviours (f + 1 VC-REQUESTs for the view after `view`); recorded as a `false-failure`
    /// info.
    fn claim_failure(&mut self, index: usize, view: u64, out: &mut Vec<Effect>) {
        let Some((replicas, behaviours)) = self.behaviours.get_mut(&index) else { return };
        behaviours.push(Behaviour::FalseFailure);
        let replicas = replicas.clone();
        for replica in &replicas {
            out.push(self.behave(*replica));
        }
        let value = json!({"replicas": numbers(&replicas), "view": view, "beyond_budget": true});
        out.push(Effect::Record { kind: OpKind::Info, f: "false-failure".into(), value });
    }
}
