//! Stale and impossible observations: sound proofs of non-linearizability found in
//! O(n log n), before any search, whatever the values.
//!
//! An operation that observes a value `v` (an `ok` read of `v`, or an `ok` cas from `v`) cannot
//! be linearized when:
//! - *impossible*: `v` is not the initial `null` and nothing that writes `v` (an `ok` or `info`
//!   write of `v`, or cas to `v`) was invoked before the observer returned;
//! - *stale*: some `ok` write or cas `W` leaving another value returned before the observer was
//!   invoked, and every writer of `v` invoked before the observer returned (the initial value
//!   included, for `null`) had returned before `W` was invoked. Then every writer of `v`
//!   precedes `W`, which precedes the observer, and everything between them writes other
//!   values.
//!
//! These are the violations real systems show most (a read served by a lagging replica, a lost
//! write), and they are found here without exploring interleavings. Passing proves nothing.

use super::model::{NULL, RegisterOp, Step, Val};

/// A proven violation. Operation numbers index the key's ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// `op` observed `value`, which nothing had begun to write when it returned.
    Impossible {
        /// The observer.
        op: usize,
        /// The value observed.
        value: Val,
    },
    /// `op` observed `value`, overwritten for good by `overwriter` before `op` began.
    Overwritten {
        /// The observer.
        op: usize,
        /// The value observed.
        value: Val,
        /// The write or cas that overwrote it.
        overwriter: usize,
        /// The writer of `value` that returned last before `overwriter` began (`None`: the
        /// initial value).
        last_writer: Option<usize>,
    },
}

/// The writers of one value, by invocation time, with the running latest return.
#[derive(Debug, Default)]
struct Writers {
    /// (invocation, index), sorted.
    calls: Vec<(u64, usize)>,
    /// `latest[i]`: the writer among `calls[..=i]` that returns last, and its return.
    latest: Vec<(u64, usize)>,
}

/// Looks for a stale or impossible observation among `ops`; the first one by observer index.
pub fn check(ops: &[RegisterOp]) -> Option<Stale> {
    let mut writers: Vec<Writers> = Vec::new();
    // `ok` operations that set the register, as (invocation, return, value written, index).
    let mut setters: Vec<(u64, u64, Val, usize)> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let Some(value) = op.step.written() else { continue };
        let slot = value as usize;
        if writers.len() <= slot {
            writers.resize_with(slot + 1, Writers::default);
        }
        writers[slot].calls.push((op.call, index));
        if !op.optional {
            setters.push((op.call, op.ret, value, index));
        }
    }
    for list in &mut writers {
        list.calls.sort_unstable();
        let mut latest = (0u64, usize::MAX);
        for &(_, index) in &list.calls {
            let ret = ops[index].ret;
            if latest.1 == usize::MAX || ret > latest.0 {
                latest = (ret, index);
            }
            list.latest.push(latest);
        }
    }
    setters.sort_unstable();
    let earliest = SuffixEarliest::new(&setters);
    for (index, op) in ops.iter().enumerate() {
        let value = match op.step {
            _ if op.optional => continue,
            Step::Read(value) | Step::Cas(value, _) => value,
            Step::Write(_) => continue,
        };
        let list = writers.get(value as usize);
        let begun = list.map_or(0, |list| list.calls.partition_point(|(call, _)| *call <= op.ret));
        // The writer of `value` begun before the observer returned that returns last.
        let last_writer = (begun > 0).then(|| list.expect("has writers").latest[begun - 1]);
        if value != NULL && last_writer.is_none() {
            return Some(Stale::Impossible { op: index, value });
        }
        // The earliest-returning setter of another value invoked after that writer returned.
        let after = last_writer.map_or(0, |(ret, _)| {
            if ret == u64::MAX {
                setters.len()
            } else {
                setters.partition_point(|(call, ..)| *call <= ret)
            }
        });
        if let Some((ret, overwriter)) = earliest.other_than(after, value)
            && ret < op.call
        {
            return Some(Stale::Overwritten {
                op: index,
                value,
                overwriter,
                last_writer: last_writer.map(|(_, writer)| writer),
            });
        }
    }
    None
}

/// For every suffix of the setters (sorted by invocation), the earliest return, and the
/// earliest return of a setter writing another value than that one.
struct SuffixEarliest {
    /// (return, value, op index) of the best, then of the best with another value.
    best: Vec<[Option<(u64, Val, usize)>; 2]>,
}

impl SuffixEarliest {
    fn new(setters: &[(u64, u64, Val, usize)]) -> SuffixEarliest {
        let mut best = vec![[None, None]; setters.len() + 1];
        for position in (0..setters.len()).rev() {
            let (_, ret, value, index) = setters[position];
            let candidate = Some((ret, value, index));
            let [first, second] = best[position + 1];
            best[position] = match first {
                Some((first_ret, first_value, _)) if first_ret <= ret => {
                    if value == first_value {
                        [first, second]
                    } else {
                        match second {
                            Some((second_ret, ..)) if second_ret <= ret => [first, second],
                            _ => [first, candidate],
                        }
                    }
                }
                Some((_, first_value, _)) if first_value == value => [candidate, second],
                Some(_) => [candidate, first],
                None => [candidate, None],
            };
        }
        SuffixEarliest { best }
    }

    /// The earliest (return, op index) among setters `from..` that write another value than
    /// `value`.
    fn other_than(&self, from: usize, value: Val) -> Option<(u64, usize)> {
        let [first, second] = self.best[from];
        let pick = match first {
            Some((_, first_value, _)) if first_value == value => second,
            other => other,
        };
        pick.map(|(ret, _, index)| (ret, index))
    }
}
