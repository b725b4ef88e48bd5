//! The fault budget (DESIGN.md, "Fault budget"): crashed plus paused replicas never exceed f.
//!
//! The schedule keeps to it by construction (faults never overlap, none hits more than f); the
//! executor checks every fault against a [`Budget`] before it signals anyone, so a bug in
//! either cannot silently take the run beyond f, where safety violations are expected.

use std::collections::BTreeSet;

use replica::core::ReplicaId;

use crate::schedule::FaultKind;

/// A fault would break the budget, or ends something that is not faulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// A fault names no replica.
    #[error("a fault names no replica")]
    NoTarget,
    /// Starting the fault would put more than f replicas down.
    #[error("{down} replicas down plus {requested} more exceeds f = {f}")]
    Exceeded {
        /// The budget.
        f: usize,
        /// Replicas crashed or paused now.
        down: usize,
        /// Replicas the fault would add.
        requested: usize,
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

/// Which replicas are crashed or paused now, and the most that ever were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    f: usize,
    crashed: BTreeSet<ReplicaId>,
    paused: BTreeSet<ReplicaId>,
    crashed_max: usize,
    paused_max: usize,
    down_max: usize,
}

impl Budget {
    /// An empty budget of `f`.
    pub fn new(f: usize) -> Budget {
        Budget {
            f,
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
        if replicas.is_empty() {
            return Err(BudgetError::NoTarget);
        }
        let distinct: BTreeSet<ReplicaId> = replicas.iter().copied().collect();
        if let Some(replica) = distinct.iter().find(|replica| self.is_down(**replica)) {
            return Err(BudgetError::AlreadyDown { replica: replica.0 });
        }
        let down = self.down();
        if down + distinct.len() > self.f {
            return Err(BudgetError::Exceeded { f: self.f, down, requested: distinct.len() });
        }
        let set = match kind {
            FaultKind::Kill => &mut self.crashed,
            FaultKind::Pause => &mut self.paused,
        };
        set.extend(distinct);
        self.crashed_max = self.crashed_max.max(self.crashed.len());
        self.paused_max = self.paused_max.max(self.paused.len());
        self.down_max = self.down_max.max(self.down());
        assert!(self.down() <= self.f, "the budget admitted more than f");
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
