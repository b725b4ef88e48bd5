//! The bank oracle: transfers move money and never create or destroy it, so every `ok` read of
//! all balances sums to the initial total, and no balance is ever negative.
//!
//! Reads of all balances are `read` operations without a key whose value maps account to
//! balance (`null`: an account never written, balance 0). The initial total is the genesis
//! total when known; otherwise that of the first such read (and the evidence says so).

use history::Verdict;
use serde_json::{Value, json};

use crate::CheckResult;
use crate::validate::{Operation, Outcome};

/// The most violations listed.
const LISTED_MAX: usize = 10;

/// Whether `operations` hold bank operations (transfers or reads of all balances).
pub fn applies(operations: &[Operation]) -> bool {
    operations.iter().any(is_bank_operation)
}

/// Whether `operation` is a transfer or a read of all balances (a keyless `read` whose value
/// maps accounts to balances).
pub fn is_bank_operation(operation: &Operation) -> bool {
    let read_all = operation.f == "read"
        && operation.key.is_none()
        && matches!(operation.outcome, Outcome::Ok(Value::Object(_)));
    operation.f == "transfer" || read_all
}

/// Checks every read of all balances against `initial_total` (or, if `None`, the first read's).
pub fn check(operations: &[Operation], initial_total: Option<i128>) -> CheckResult {
    let mut total = initial_total;
    let inferred = initial_total.is_none();
    let mut reads = 0u64;
    let mut violations = Vec::new();
    let mut count = 0u64;
    for operation in operations {
        let Outcome::Ok(Value::Object(balances)) = &operation.outcome else { continue };
        if operation.f != "read" || operation.key.is_some() {
            continue;
        }
        reads += 1;
        let mut sum: i128 = 0;
        let mut problems = Vec::new();
        for (account, balance) in balances {
            match balance {
                Value::Null => {}
                Value::Number(number) => match number.as_i64() {
                    Some(value) => {
                        sum += i128::from(value);
                        if value < 0 {
                            problems
                                .push(format!("account {account} has negative balance {value}"));
                        }
                    }
                    None => problems.push(format!("account {account}: {number} is not an integer")),
                },
                other => problems.push(format!("account {account}: {other} is not a balance")),
            }
        }
        let expected = *total.get_or_insert(sum);
        if sum != expected {
            problems.push(format!("balances sum to {sum}, not {expected}"));
        }
        for problem in problems {
            count += 1;
            if violations.len() < LISTED_MAX {
                violations.push(json!({
                    "line": operation.line,
                    "process": operation.process,
                    "balances": balances,
                    "problem": problem,
                }));
            }
        }
    }
    let mut evidence = json!({"reads": reads, "total": total.map(|total| total.to_string())});
    if inferred {
        evidence["total_from"] = json!("the first read (the genesis total was not given)");
    }
    let verdict = if count > 0 {
        evidence["violations"] = json!(count);
        evidence["first"] = json!(violations);
        Verdict::Invalid
    } else if reads == 0 {
        evidence["not_checked"] = json!("no read of all balances completed");
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    CheckResult::new(verdict, evidence)
}
