//! Verdicts and how they merge.

use serde::{Deserialize, Serialize};

/// The outcome of a checker, and of a whole run.
///
/// Merging takes the worst: `invalid` > `unknown` > `valid` (Jepsen's `valid-priorities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every property held.
    Valid,
    /// A property was violated; the checker's evidence says where.
    Invalid,
    /// The checker could not decide (budget exhausted, missing data).
    Unknown,
}

impl Verdict {
    /// The worse of two verdicts.
    pub fn merge(self, other: Verdict) -> Verdict {
        self.max_by_priority(other)
    }

    /// Merges any number of verdicts; `valid` when there are none.
    pub fn merge_all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().fold(Verdict::Valid, Verdict::merge)
    }

    /// The process exit code of a run with this verdict: 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }

    fn priority(self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::Unknown => 1,
            Verdict::Invalid => 2,
        }
    }

    fn max_by_priority(self, other: Verdict) -> Verdict {
        if other.priority() > self.priority() { other } else { self }
    }
}
