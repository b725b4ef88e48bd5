//! The fault budget (DESIGN.md, "Fault budget"): Byzantine plus crashed plus paused replicas
//! never exceed f.
//!
//! The declared Byzantine replicas count for the whole run (a replica that behaves correctly
//! for a while is still faulty); crashing or pausing one of them costs nothing more. The
//! executor checks every process fault against a [`Budget`] before it signals anyone, so a bug
//! in the schedule or the executor cannot silently take the run beyond its limit, where
//! safety violations are expected. A run with `--beyond-budget` declares f + 1 Byzantine
//! replicas and its limit is f + 1: crashes and pauses still add nothing beyond that.

use std::collections::BTreeSet;

use replica::core::ReplicaId;

use crate::schedule::FaultKind;

/// A fault would break the budget, or ends something that is not faulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// A fault names no replica.
    #[error("a fault names no replica")]
    NoTarget,
    /// Starting the fault would make more than the limit faulty.
    #[error("{faulty} faulty replicas plus {requested} more exceeds the budget of {limit}")]
    Exceeded {
        /// The most faulty replicas allowed (f, or f + 1 beyond budget).
        limit: usize,
        /// Replicas Byzantine, crashed or paused now.
        faulty: usize,
        /// Replicas the fault would add.
        requested: usize,
    },
    /// Not a process fault: only kill and pause take replicas down.
    #[error("{kind} is not a process fault")]
    NotProcess {
        /// The kind's name.
        kind: &'static str,
    },
    /// A target is already crashed or paused.
    #[error("replica {replica} is already crashed or paused")]
    AlreadyDown {
        /// The replica.
        replica: u8,
    },
    /// Ending a fault on a replica that it does not hold.
    #[error("replica {replica} is not under a {kind} fault")]
    NotFaulted {
        /// The replica.
        replica: u8,
        /// The fault's kind name.
        kind: &'static str,
    },
}

/// Which replicas are Byzantine, crashed or paused now, and the most that ever were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    f: usize,
    limit: usize,
    byzantine: BTreeSet<ReplicaId>,
    faulty_max: usize,
    crashed: BTreeSet<ReplicaId>,
    paused: BTreeSet<ReplicaId>,
    crashed_max: usize,
    paused_max: usize,
    down_max: usize,
}

impl Budget {
    /// An empty budget of `f`.
    pub fn new(f: usize) -> Budget {
        Budget::with_byzantine(f, &[], false)
    }

    /// The budget of a run that declares `byzantine` replicas; `beyond_budget` raises the limit
    /// to f + 1.
    ///
    /// # Panics
    ///
    /// When more replicas are declared Byzantine than the limit.
    pub fn with_byzantine(f: usize, byzantine: &[ReplicaId], beyond_budget: bool) -> Budget {
        let limit = if beyond_budget { f + 1 } else { f };
        let byzantine: BTreeSet<ReplicaId> = byzantine.iter().copied().collect();
        assert!(byzantine.len() <= limit, "{} Byzantine replicas exceed {limit}", byzantine.len());
        Budget {
            f,
            limit,
            faulty_max: byzantine.len(),
            byzantine,
            crashed: BTreeSet::new(),
            paused: BTreeSet::new(),
            crashed_max: 0,
            paused_max: 0,
            down_max: 0,
        }
    }

    /// Admits a fault of `kind` on `replicas`, or refuses it and changes nothing.
    ///
    /// # Errors
    ///
    /// [`BudgetError::NoTarget`], [`BudgetError::AlreadyDown`] or [`BudgetError::Exceeded`].
    pub fn start(&mut self, kind: FaultKind, replicas: &[ReplicaId]) -> Result<(), BudgetError> {
        if !kind.is_process() {
            return Err(BudgetError::NotProcess { kind: kind.name() });
        }
        if replicas.is_empty() {
            return Err(BudgetError::NoTarget);
        }
        let distinct: BTreeSet<ReplicaId> = replicas.iter().copied().collect();
        if let Some(replica) = distinct.iter().find(|replica| self.is_down(**replica)) {
            return Err(BudgetError::AlreadyDown { replica: replica.0 });
        }
        let faulty = self.faulty().len();
        let requested = distinct.iter().filter(|replica| !self.byzantine.contains(replica)).count();
        if faulty + requested > self.limit {
            return Err(BudgetError::Exceeded { limit: self.limit, faulty, requested });
        }
        let set = match kind {
            FaultKind::Kill => &mut self.crashed,
            FaultKind::Pause => &mut self.paused,
            other => return Err(BudgetError::NotProcess { kind: other.name() }),
        };
        set.extend(distinct);
        self.crashed_max = self.crashed_max.max(self.crashed.len());
        self.paused_max = self.paused_max.max(self.paused.len());
        self.down_max = self.down_max.max(self.down());
        self.faulty_max = self.faulty_max.max(self.faulty().len());
        assert!(self.faulty().len() <= self.limit, "the budget admitted more than its limit");
        Ok(())
    }

    /// Ends a fault of `kind` on `replicas` (all of them, or none when one is not faulted so).
    ///
    /// # Errors
    ///
    /// [`BudgetError::NotFaulted`].
    pub fn end(&mut self, kind: FaultKind, replicas: &[ReplicaId]) -> Result<(), BudgetError> {
        let set = match kind {
            FaultKind::Kill => &mut self.crashed,
            FaultKind::Pause => &mut self.paused,
            other => return Err(BudgetError::NotProcess { kind: other.name() }),
        };
        if let Some(replica) = replicas.iter().find(|replica| !set.contains(replica)) {
            return Err(BudgetError::NotFaulted { replica: replica.0, kind: kind.name() });
        }
        for replica in replicas {
            set.remove(replica);
        }
        Ok(())
    }

    /// True when `replica` is crashed or paused.
    pub fn is_down(&self, replica: ReplicaId) -> bool {
        self.crashed.contains(&replica) || self.paused.contains(&replica)
    }

    /// Replicas crashed or paused now.
    pub fn down(&self) -> usize {
        self.crashed.len() + self.paused.len()
    }

    /// Replicas crashed (killed and not restarted) now, ascending.
    pub fn crashed(&self) -> Vec<ReplicaId> {
        self.crashed.iter().copied().collect()
    }

    /// Replicas paused now, ascending.
    pub fn paused(&self) -> Vec<ReplicaId> {
        self.paused.iter().copied().collect()
    }

    /// The budget.
    pub fn f(&self) -> usize {
        self.f
    }

    /// The most faulty replicas allowed: f, or f + 1 beyond budget.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The declared Byzantine replicas, ascending.
    pub fn byzantine(&self) -> Vec<ReplicaId> {
        self.byzantine.iter().copied().collect()
    }

    /// Replicas Byzantine, crashed or paused now.
    pub fn faulty(&self) -> BTreeSet<ReplicaId> {
        let mut faulty = self.byzantine.clone();
        faulty.extend(self.crashed.iter().copied());
        faulty.extend(self.paused.iter().copied());
        faulty
    }

    /// The replicas a process fault hitting `size` replicas may draw from: any replica up
    /// while the budget leaves room for `size` more faulty ones, else only the faulty
    /// replicas that are up (a Byzantine replica may crash at no extra cost).
    pub fn process_candidates(&self, replica_count: u8, size: usize) -> Vec<ReplicaId> {
        let faulty = self.faulty();
        let up = |replica: &ReplicaId| !self.is_down(*replica);
        if faulty.len() + size <= self.limit {
            (0..replica_count).map(ReplicaId).filter(up).collect()
        } else {
            faulty.into_iter().filter(up).collect()
        }
    }

    /// The most replicas faulty (Byzantine, crashed or paused) at once so far.
    pub fn faulty_max(&self) -> usize {
        self.faulty_max
    }

    /// The most replicas crashed at once so far.
    pub fn crashed_max(&self) -> usize {
        self.crashed_max
    }

    /// The most replicas paused at once so far.
    pub fn paused_max(&self) -> usize {
        self.paused_max
    }

    /// The most replicas crashed or paused at once so far.
    pub fn down_max(&self) -> usize {
        self.down_max
    }
}
