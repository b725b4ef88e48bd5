//! The one-line command that reproduces a stored run, rebuilt from its `test.toml`.
//!
//! Every option that differs from the subcommand's default becomes a flag; which flag belongs to
//! which recorded option comes from the command line's own definition (clap), so a new option
//! needs no rule here.

use clap::{CommandFactory as _, Parser as _};

use crate::cli::Cli;

/// Options that never change what a run does (where it is stored, how it is shown), or that
/// the command adds itself (the seed, at the end).
const NOT_REPLAYED: [&str; 4] = ["store", "test_count", "no_progress", "seed"];

/// What a scenario run's command names beside the scenario (which gives the rest).
const SCENARIO_KEPT: [&str; 3] = ["scenario", "protocol", "planted_bug"];

/// The command that reproduces the run recorded in `test` (the parsed `test.toml`).
pub fn reproduce(test: &toml::Table) -> String {
    let simulated = test.get("simulated").and_then(toml::Value::as_table);
    let subcommand = if simulated.is_some() { "sim" } else { "test" };
    let defaults = defaults(subcommand);
    let mut recorded =
        test.get("options").and_then(toml::Value::as_table).cloned().unwrap_or_default();
    if recorded.contains_key("scenario") {
        // The scenario's settings were applied to the options: the file gives them again.
        recorded.retain(|key: &str, _| SCENARIO_KEPT.contains(&key));
    }
    let mut words = vec!["ordeal".to_string(), subcommand.to_string()];
    let command = Cli::command();
    let Some(arguments) = command.find_subcommand(subcommand) else { return words.join(" ") };
    for argument in arguments.get_arguments() {
        let id = argument.get_id().as_str();
        let Some(long) = argument.get_long() else { continue };
        if NOT_REPLAYED.contains(&id) {
            continue;
        }
        let Some(value) = recorded.get(id) else { continue };
        if defaults.get(id) == Some(value) {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => words.push(format!("--{long}")),
            toml::Value::Boolean(false) => {}
            other => words.push(format!("--{long} {}", shell_word(&flag_value(other)))),
        }
    }
    if let Some(simulated) = simulated {
        words.extend(simulated_flags(simulated, &defaults));
    }
    let seed = test.get("seed").and_then(toml::Value::as_integer).unwrap_or_default();
    words.push(format!("--seed {seed}"));
    words.join(" ")
}

/// The options of `ordeal SUBCOMMAND` with nothing given, as `test.toml` records options (and,
/// for `sim`, its network's parameters as `[simulated]` records them).
fn defaults(subcommand: &str) -> toml::Table {
    let Ok(cli) = Cli::try_parse_from(["ordeal", subcommand]) else { return toml::Table::new() };
    match cli.command {
        crate::cli::Command::Test(options) => toml::Table::try_from(&options).unwrap_or_default(),
        crate::cli::Command::Sim(args) => {
            let mut table = toml::Table::try_from(&args.test).unwrap_or_default();
            let params = crate::sim::SimParams::of(&args);
            table.insert("latency_min_ms".into(), toml::Value::Float(params.latency_min_ms));
            table.insert("latency_max_ms".into(), toml::Value::Float(params.latency_max_ms));
            table.insert(
                "clock_drift_percent".into(),
                toml::Value::Float(params.clock_drift_percent),
            );
            table
        }
        _ => toml::Table::new(),
    }
}

/// The flags of `[simulated]` that differ from `ordeal sim`'s defaults.
fn simulated_flags(simulated: &toml::Table, defaults: &toml::Table) -> Vec<String> {
    let mut flags = Vec::new();
    for (key, flag) in [
        ("latency_min_ms", "--latency-min-ms"),
        ("latency_max_ms", "--latency-max-ms"),
        ("clock_drift_percent", "--clock-drift"),
    ] {
        if let Some(value) = simulated.get(key)
            && defaults.get(key) != Some(value)
        {
            flags.push(format!("{flag} {}", flag_value(value)));
        }
    }
    if simulated.get("signatures").and_then(toml::Value::as_str) == Some("real") {
        flags.push("--real-crypto".to_string());
    }
    flags
}

/// A recorded value as the command line takes it (lists comma-separated).
fn flag_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) => items.iter().map(flag_value).collect::<Vec<_>>().join(","),
        toml::Value::Float(number) if number.fract() == 0.0 => format!("{number:.0}"),
        other => other.to_string(),
    }
}

/// `word` quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./,:=+@".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(subcommand: &[&str]) -> toml::Table {
        let cli = Cli::try_parse_from(subcommand).expect("valid options");
        let (options, simulated) = match cli.command {
            crate::cli::Command::Test(options) => (options, None),
            crate::cli::Command::Sim(args) => {
                (args.test.clone(), Some(crate::sim::SimParams::of(&args)))
            }
            _ => panic!("a test or sim command"),
        };
        let mut table = toml::Table::new();
        table.insert("seed".into(), toml::Value::Integer(42));
        table.insert("options".into(), toml::Value::try_from(&options).expect("options"));
        if let Some(simulated) = simulated {
            table.insert("simulated".into(), toml::Value::try_from(simulated).expect("params"));
        }
        table
    }

    #[test]
    fn a_test_command_names_only_what_differs_from_the_defaults() {
        let command = reproduce(&recorded(&[
            "ordeal",
            "test",
            "--protocol",
            "pbft",
            "--replicas",
            "7",
            "--nemesis",
            "partition,byzantine",
            "--time-limit",
            "12.5",
            "--twins",
            "--store",
            "/tmp/elsewhere",
        ]));
        assert_eq!(
            command,
            "ordeal test --protocol pbft --replicas 7 --time-limit 12.5 --nemesis \
             partition,byzantine --twins --seed 42"
        );
    }

    #[test]
    fn a_simulated_run_replays_with_sim_and_its_network() {
        let command = reproduce(&recorded(&[
            "ordeal",
            "sim",
            "--protocol",
            "poe-mac",
            "--latency-max-ms",
            "3",
            "--real-crypto",
        ]));
        assert_eq!(
            command,
            "ordeal sim --protocol poe-mac --latency-max-ms 3 --real-crypto --seed 42"
        );
    }

    #[test]
    fn odd_values_are_quoted() {
        assert_eq!(shell_word("a b'c"), r"'a b'\''c'");
        assert_eq!(shell_word("scenarios/x.toml"), "scenarios/x.toml");
    }
}
