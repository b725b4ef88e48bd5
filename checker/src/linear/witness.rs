//! The witness fast path: a candidate linearization (for instance the order in which an honest
//! replica's ledger executed the operations) is verified in linear time. Sound: a witness that
//! passes is a linearization. A failing witness proves nothing (the replica's order may differ
//! from every valid one only by the placement of concurrent reads), so the caller then searches.

use std::collections::HashMap;

use super::model::{NULL, RegisterOp};

/// Why a candidate order is not a linearization.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// An operation that took effect is missing from the order, or one is there twice.
    #[error("the order does not contain every completed operation exactly once")]
    Incomplete,
    /// An operation precedes one that returned before it was invoked.
    #[error("operation {later} is ordered after operation {earlier} but returned before it began")]
    RealTime {
        /// The operation placed first.
        earlier: usize,
        /// The operation placed after it.
        later: usize,
    },
    /// An operation's result does not follow from the order.
    #[error("operation {op} does not hold in the order")]
    Result {
        /// The operation.
        op: usize,
    },
}

/// Verifies that `order` (indices of [`crate::validate::Operation`]s) is a linearization of
/// `ops`: every non-optional operation exactly once, optional ones at most once, real-time
/// order respected, and every step valid from the initial `null`.
///
/// # Errors
///
/// The first [`WitnessError`].
pub fn verify(ops: &[RegisterOp], order: &[usize]) -> Result<(), WitnessError> {
    let by_operation: HashMap<usize, usize> =
        ops.iter().enumerate().map(|(index, op)| (op.operation, index)).collect();
    let mut seen = vec![false; ops.len()];
    let mut state = NULL;
    // The latest invocation among the operations placed so far, and which it was.
    let mut latest_call: Option<(u64, usize)> = None;
    for operation in order {
        let Some(&index) = by_operation.get(operation) else { continue };
        if std::mem::replace(&mut seen[index], true) {
            return Err(WitnessError::Incomplete);
        }
        let op = &ops[index];
        if let Some((call, earlier)) = latest_call
            && op.ret < call
        {
            return Err(WitnessError::RealTime { earlier, later: index });
        }
        if latest_call.is_none_or(|(call, _)| op.call > call) {
            latest_call = Some((op.call, index));
        }
        state = match op.step.apply(state) {
            Some(next) => next,
            // An info cas that executed may have found another value: no effect.
            None if op.optional => state,
            None => return Err(WitnessError::Result { op: index }),
        };
    }
    let complete = ops.iter().zip(&seen).all(|(op, seen)| *seen || op.optional);
    if complete { Ok(()) } else { Err(WitnessError::Incomplete) }
}
