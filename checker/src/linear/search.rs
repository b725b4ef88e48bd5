//! Linearizability of one register by search: Wing & Gong's and Lowe's search, run breadth
//! first along the time line so that its memory does not grow with the history.
//!
//! # The search
//!
//! A configuration is (register value, which pending operations are already linearized, how
//! many of each kind of optional operation were used). Walking the invocations and returns in
//! time order (an invocation before a return at the same instant: closed intervals), the
//! checker keeps the set of configurations reachable so far:
//! - an invocation adds a pending operation (linearized in no configuration yet);
//! - a return of `x` replaces each configuration in which `x` is not linearized by those reached
//!   by linearizing `x`, possibly after other pending operations (Lowe's just-in-time
//!   linearization). An empty set means no linearization exists.
//!
//! The linearized set is downward closed in real-time order, so it is represented by the time
//! frontier (everything that returned is linearized) plus a window of at most [`WINDOW_MAX`]
//! pending operations (a bitmask): memory is bounded by the configurations of one instant.
//!
//! # Reductions (each keeps the search exact)
//!
//! - *Saturation*: a pending operation that leaves the register unchanged and may happen now
//!   (a read of the current value) is linearized at once: that configuration dominates the one
//!   without it (same value, one obligation fewer, no option lost). A write of the current
//!   value is not saturated: kept pending, it can still set the value later.
//! - *Earliest deadline first*: among pending operations with the same step, only the one that
//!   returns first is considered for linearization; the others are interchangeable and stay
//!   available longer.
//! - *Symmetry of optional operations*: `info` writes and cas with the same step are counted,
//!   not told apart, and fired only when they have an effect (they change the value, or free
//!   pending writes); a configuration that used fewer of them dominates one that used more.
//! - *Overwritten writes are free*: once a write takes effect, every pending write not yet
//!   linearized may be placed just before it, unobserved. Such a write becomes an option
//!   (`Config::free`): it may still take effect before it returns, or be discharged at its
//!   return. A free write dominates the same write obligated, so configurations differing only
//!   there collapse. This is what keeps many concurrent writers of few values tractable.
//! - *Writes are observed*: in a linearization, a write (or optional operation) that took
//!   effect in the middle of a return's closure is followed by a step that observes its value
//!   (a read of it, or a cas from it) or it could be left pending (or dropped, or freed by the
//!   next write). So after a write the next step must observe it; a configuration waiting for
//!   that observation (`Config::observe`) never becomes one of an instant.
//!
//! # Passes
//!
//! [`check`] first keeps only the most promising configurations of each instant (narrow
//! passes): a linearization found that way is a proof. Only when they fail does it run the
//! relaxed search (any number of uses of each `info` operation; its failure proves a violation)
//! and the exact passes.
//!
//! # Budget
//!
//! Search nodes, configurations and time are bounded ([`Budget`]); running out yields
//! [`SearchOutcome::Unknown`] with the longest prefix found linearizable, never an
//! out-of-memory kill.

#![allow(clippy::disallowed_methods, reason = "the search budget is measured on the wall clock")]

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::time::Instant;

use super::model::{NULL, RegisterOp, Step, Val};

/// The most operations pending at once that the search can track.
pub const WINDOW_MAX: usize = 128;

type Mask = u128;

/// Limits of one key's search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search nodes (linearization steps tried).
    pub nodes_max: u64,
    /// Configurations alive at one instant.
    pub configs_max: usize,
    /// When to give up.
    pub deadline: Option<Instant>,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget { nodes_max: 200_000_000, configs_max: 1_000_000, deadline: None }
    }
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The operation (index into the key's operations) that cannot be linearized.
    pub op: usize,
    /// Operations pending when it returned (they could have been linearized before it).
    pub concurrent: Vec<usize>,
    /// The values the register could hold just before it had to take effect.
    pub possible_values: Vec<Val>,
}

/// The search ran out of budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// Which limit.
    pub reason: String,
    /// Operations found linearizable before giving up (returns processed).
    pub linearizable_prefix: usize,
    /// The time up to which the history was linearizable.
    pub time: u64,
}

/// The search's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchOutcome {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    NotLinearizable(Violation),
    /// The budget ran out first.
    Unknown(Exhausted),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Config {
    state: Val,
    /// Pending operations already linearized (or discharged).
    linearized: Mask,
    /// Pending writes, not linearized, that a later write overwrote unobserved: each may still
    /// take effect before it returns, or be placed just before that write (see "Overwritten
    /// writes are free" in the module documentation).
    free: Mask,
    /// (optional class, times used), sorted by class.
    used: Uses,
    /// Set right after an optional operation took effect: the next step must observe the
    /// value it wrote (see "Optional operations are observed" in the module documentation).
    observe: bool,
}

impl Config {
    /// A write took effect: every pending write not linearized may now be placed just before
    /// it, so it is free.
    fn overwrite(&mut self, write_slots: Mask) {
        self.free |= write_slots & !self.linearized;
    }
}

/// Configurations of one instant, with the dominance of free writes and of optional uses
/// applied.
#[derive(Debug, Default)]
struct ConfigSet {
    map: HashMap<(Val, Mask, bool), Vec<Options>>,
    len: usize,
    /// At most this many incomparable uses of optional operations are kept per (value,
    /// window); `None` keeps all.
    beam: Option<usize>,
    /// Set when the beam dropped a configuration: an empty set then proves nothing.
    pruned: bool,
}

/// Optional operations used, per class: (class, times), sorted by class.
type Uses = Vec<(u32, u32)>;

/// What a configuration may still do beyond its obligations: its free writes, and the optional
/// operations it has not used.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    free: Mask,
    used: Uses,
}

impl Options {
    /// Whether these options are at least those of `other`.
    fn dominate(&self, other: &Options) -> bool {
        self.free & other.free == other.free && uses_no_more(&self.used, &other.used)
    }
}

/// Whether `a` used no more of any class than `b` (both sorted by class).
fn uses_no_more(a: &[(u32, u32)], b: &[(u32, u32)]) -> bool {
    let mut others = b.iter();
    'outer: for (class, count) in a {
        for (other, other_count) in others.by_ref() {
            if other == class {
                if count > other_count {
                    return false;
                }
                continue 'outer;
            }
            if other > class {
                return false;
            }
        }
        return false;
    }
    true
}

impl ConfigSet {
    /// Adds a configuration unless one kept dominates it; returns whether it was added.
    fn insert(&mut self, config: Config) -> bool {
        let entry = self.map.entry((config.state, config.linearized, config.observe)).or_default();
        let options = Options { free: config.free, used: config.used };
        if entry.iter().any(|kept| kept.dominate(&options)) {
            return false;
        }
        let before = entry.len();
        entry.retain(|kept| !options.dominate(kept));
        self.len -= before - entry.len();
        entry.push(options);
        self.len += 1;
        if let Some(beam) = self.beam
            && entry.len() > beam
        {
            // Drop the configuration that used the most optional operations.
            let total =
                |options: &Options| options.used.iter().map(|(_, n)| u64::from(*n)).sum::<u64>();
            let worst =
                (0..entry.len()).max_by_key(|&index| total(&entry[index])).expect("not empty");
            let dropped_new = worst == entry.len() - 1;
            entry.swap_remove(worst);
            self.len -= 1;
            self.pruned = true;
            return !dropped_new;
        }
        true
    }

    /// Whether exactly this configuration is kept (not dominated or dropped since).
    fn contains(&self, config: &Config) -> bool {
        self.map.get(&(config.state, config.linearized, config.observe)).is_some_and(|kept| {
            kept.iter().any(|options| options.free == config.free && options.used == config.used)
        })
    }

    fn with_beam(beam: Option<usize>) -> ConfigSet {
        ConfigSet { beam, ..ConfigSet::default() }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.len = 0;
        self.pruned = false;
    }

    fn into_configs(self) -> impl Iterator<Item = Config> {
        self.map.into_iter().flat_map(|((state, linearized, observe), kept)| {
            kept.into_iter().map(move |Options { free, used }| Config {
                state,
                linearized,
                free,
                used,
                observe,
            })
        })
    }
}

/// A class of interchangeable operations: one step.
#[derive(Debug, Default)]
struct Class {
    step: Option<Step>,
    /// Pending members (ok operations), as (return time, slot), sorted.
    members: Vec<(u64, u8)>,
    mask: Mask,
    /// Optional (info) operations of this step invoked so far.
    available: u32,
}

struct Engine<'a> {
    ops: &'a [RegisterOp],
    budget: Budget,
    nodes: u64,
    slot_of: Vec<u8>,
    slot_op: [u32; WINDOW_MAX],
    free: Vec<u8>,
    class_of_step: HashMap<Step, u32>,
    classes: Vec<Class>,
    /// Value-preserving steps pending, by value: saturated at once.
    compatible: HashMap<Val, Mask>,
    /// Pending (`ok`) writes.
    write_slots: Mask,
    /// Classes whose step is a write, with pending or available members.
    writes: Vec<u32>,
    /// Classes whose step is a cas, by the value it compares with.
    cas_from: HashMap<Val, Vec<u32>>,
    listed: Vec<bool>,
    /// Configurations seen in the current closure, with the optional-use dominance.
    visited: ConfigSet,
    /// The closure's frontier, breadth first: a configuration reached with fewer optional
    /// operations is met before the ones it dominates.
    queue: VecDeque<Config>,
    mode: Mode,
}

/// How optional (`info`) operations are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each may happen at most once; at most `beam` incomparable ways of having used them are
    /// kept per (value, window). Linearizable is then proven; not linearizable only if nothing
    /// was dropped.
    Exact {
        /// The beam width.
        beam: usize,
    },
    /// Each may happen any number of times once invoked: a relaxation, so not linearizable
    /// here proves not linearizable, and linearizable proves nothing.
    Relaxed,
}

/// Checks one register's operations, in passes from cheap to exact:
/// 1. exact searches keeping only the most promising configurations of each instant (by
///    `Rank`): finding a linearization proves it, however narrow the pass;
/// 2. if every configuration kept died, the relaxed search, whose failure proves a violation;
/// 3. then exact searches with ever wider beams, the last one bounded only by the budget.
pub fn check(ops: &[RegisterOp], budget: Budget) -> SearchOutcome {
    let mut pruned_at = None;
    for pass in PASSES {
        let searched = match pass {
            Pass::Narrow { width, rank } => {
                check_with(ops, budget, Mode::Exact { beam: 1 }, (Some(width), rank))
            }
            Pass::Relaxed => match check_with(ops, budget, Mode::Relaxed, (None, Rank::Freedom)) {
                Searched::Outcome(SearchOutcome::NotLinearizable(violation)) => {
                    return SearchOutcome::NotLinearizable(violation);
                }
                _ => continue,
            },
            Pass::Exact { beam } => {
                check_with(ops, budget, Mode::Exact { beam }, (None, Rank::Freedom))
            }
        };
        // A violation is proven only by a pass that dropped nothing ([`Searched::Outcome`]).
        match searched {
            Searched::Outcome(outcome) => return outcome,
            Searched::PrunedViolation(at) => pruned_at = Some(at),
        }
    }
    let at = pruned_at.expect("every pass was tried");
    SearchOutcome::Unknown(Exhausted {
        reason: "undecided: every linearization kept ran out of info operations, but with \
                 unlimited info operations one exists"
            .to_string(),
        linearizable_prefix: at.returned,
        time: at.time,
    })
}

/// One pass of [`check`].
#[derive(Debug, Clone, Copy)]
enum Pass {
    /// Exact, keeping `width` configurations per instant, the best by `rank`.
    Narrow { width: usize, rank: Rank },
    /// Relaxed: optional operations may happen any number of times.
    Relaxed,
    /// Exact, keeping `beam` ways of having used optional operations per configuration.
    Exact { beam: usize },
}

/// Which configurations a narrow pass keeps first.
#[derive(Debug, Clone, Copy)]
enum Rank {
    /// Fewest pending operations not yet linearized.
    Obligations,
    /// Fewest optional operations used, most free writes.
    Freedom,
}

/// The passes of [`check`], in order.
const PASSES: [Pass; 7] = [
    Pass::Narrow { width: 64, rank: Rank::Obligations },
    Pass::Narrow { width: 64, rank: Rank::Freedom },
    Pass::Narrow { width: 1024, rank: Rank::Obligations },
    Pass::Narrow { width: 8192, rank: Rank::Freedom },
    Pass::Relaxed,
    Pass::Exact { beam: 8 },
    Pass::Exact { beam: 64 },
];

/// What one pass of the search found.
enum Searched {
    Outcome(SearchOutcome),
    /// No configuration survived, but the beam had dropped some.
    PrunedViolation(PrunedAt),
}

struct PrunedAt {
    returned: usize,
    time: u64,
}

fn check_with(
    ops: &[RegisterOp],
    budget: Budget,
    mode: Mode,
    (width, rank): (Option<usize>, Rank),
) -> Searched {
    let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(ops.len() * 2);
    for (index, op) in ops.iter().enumerate() {
        events.push((op.call, 0, index as u32));
        if !op.optional {
            events.push((op.ret, 1, index as u32));
        }
    }
    events.sort_unstable();
    let mut engine = Engine {
        ops,
        budget,
        nodes: 0,
        slot_of: vec![u8::MAX; ops.len()],
        slot_op: [u32::MAX; WINDOW_MAX],
        free: (0..WINDOW_MAX as u8).rev().collect(),
        class_of_step: HashMap::default(),
        classes: Vec::new(),
        compatible: HashMap::default(),
        write_slots: 0,
        writes: Vec::new(),
        cas_from: HashMap::default(),
        listed: Vec::new(),
        visited: ConfigSet::default(),
        queue: VecDeque::new(),
        mode,
    };
    let beam = match mode {
        Mode::Exact { beam } => Some(beam),
        Mode::Relaxed => None,
    };
    let mut configs = ConfigSet::with_beam(beam);
    let mut pruned = false;
    let _ = configs.insert(Config {
        state: NULL,
        linearized: 0,
        free: 0,
        used: Vec::new(),
        observe: false,
    });
    let mut returned = 0usize;
    let mut last_time = 0u64;
    for (position, &(time, kind, op)) in events.iter().enumerate() {
        if position % 1024 == 0
            && let Some(deadline) = budget.deadline
            && Instant::now() >= deadline
        {
            return Searched::Outcome(exhausted("time budget", returned, last_time));
        }
        let op = op as usize;
        if kind == 0 {
            if let Err(reason) = engine.invoke(op) {
                return Searched::Outcome(exhausted(reason, returned, last_time));
            }
            continue;
        }
        let before: Vec<Val> = {
            let mut states: Vec<Val> = configs.map.keys().map(|(state, _, _)| *state).collect();
            states.sort_unstable();
            states.dedup();
            states
        };
        match engine.complete(op, configs, beam) {
            Ok(next) if next.len == 0 => {
                if pruned || next.pruned {
                    return Searched::PrunedViolation(PrunedAt { returned, time: last_time });
                }
                let concurrent = engine.pending_except(op);
                return Searched::Outcome(SearchOutcome::NotLinearizable(Violation {
                    op,
                    concurrent,
                    possible_values: before,
                }));
            }
            Ok(mut next) => {
                if let Some(width) = width
                    && next.len > width
                {
                    next = engine.narrow(next, width, rank);
                }
                pruned |= next.pruned;
                configs = next;
            }
            Err(reason) => return Searched::Outcome(exhausted(reason, returned, last_time)),
        }
        returned += 1;
        last_time = time;
    }
    Searched::Outcome(SearchOutcome::Linearizable)
}

fn exhausted(reason: &str, returned: usize, time: u64) -> SearchOutcome {
    SearchOutcome::Unknown(Exhausted {
        reason: reason.to_string(),
        linearizable_prefix: returned,
        time,
    })
}

impl Engine<'_> {
    fn class(&mut self, step: Step) -> u32 {
        if let Some(&class) = self.class_of_step.get(&step) {
            return class;
        }
        let class = self.classes.len() as u32;
        self.classes.push(Class { step: Some(step), ..Class::default() });
        self.listed.push(false);
        self.class_of_step.insert(step, class);
        class
    }

    /// Puts a class on the list of state-changing candidates, if its step can change the
    /// value (a write, or a cas to another value), once.
    fn list(&mut self, class: u32) {
        if self.listed[class as usize] {
            return;
        }
        match self.classes[class as usize].step.expect("classes have steps") {
            Step::Write(_) => self.writes.push(class),
            Step::Cas(from, to) if from != to => self.cas_from.entry(from).or_default().push(class),
            Step::Cas(..) | Step::Read(_) => return,
        }
        self.listed[class as usize] = true;
    }

    /// Takes a class off the candidate lists once nothing of it is left.
    fn unlist(&mut self, class: u32) {
        let entry = &self.classes[class as usize];
        if !self.listed[class as usize] || !entry.members.is_empty() || entry.available > 0 {
            return;
        }
        self.listed[class as usize] = false;
        let list = match entry.step.expect("classes have steps") {
            Step::Write(_) => &mut self.writes,
            Step::Cas(from, _) => self.cas_from.get_mut(&from).expect("listed"),
            Step::Read(_) => return,
        };
        if let Some(position) = list.iter().position(|other| *other == class) {
            list.swap_remove(position);
        }
    }

    fn invoke(&mut self, op: usize) -> Result<(), &'static str> {
        let step = self.ops[op].step;
        let class = self.class(step);
        if self.ops[op].optional {
            self.classes[class as usize].available += 1;
            self.list(class);
            return Ok(());
        }
        let slot = self.free.pop().ok_or("more than 128 operations pending at once")?;
        self.slot_of[op] = slot;
        self.slot_op[slot as usize] = op as u32;
        let bit: Mask = 1 << slot;
        let entry = &mut self.classes[class as usize];
        let ret = self.ops[op].ret;
        let position = entry.members.partition_point(|(other, _)| *other <= ret);
        entry.members.insert(position, (ret, slot));
        entry.mask |= bit;
        if let Some(value) = preserved(step) {
            *self.compatible.entry(value).or_default() |= bit;
        }
        if let Step::Write(_) = step {
            self.write_slots |= bit;
        }
        self.list(class);
        Ok(())
    }

    fn retire(&mut self, op: usize) {
        let slot = self.slot_of[op];
        let bit: Mask = 1 << slot;
        let step = self.ops[op].step;
        let class = self.class_of_step[&step] as usize;
        self.classes[class].members.retain(|(_, member)| *member != slot);
        self.classes[class].mask &= !bit;
        if let Some(value) = preserved(step)
            && let Some(mask) = self.compatible.get_mut(&value)
        {
            *mask &= !bit;
        }
        self.write_slots &= !bit;
        self.slot_op[slot as usize] = u32::MAX;
        self.free.push(slot);
        self.unlist(class as u32);
    }

    /// Keeps the `width` best configurations by `rank`, taking the best of each register value
    /// in turn.
    fn narrow(&self, configs: ConfigSet, width: usize, rank: Rank) -> ConfigSet {
        let pending: Mask = self
            .slot_op
            .iter()
            .enumerate()
            .filter(|(_, op)| **op != u32::MAX)
            .fold(0, |mask, (slot, _)| mask | (1 << slot));
        let beam = configs.beam;
        let mut all: Vec<Config> = configs.into_configs().collect();
        all.sort_by_cached_key(|config| {
            let obligations = (pending & !config.linearized & !config.free).count_ones();
            let used: u32 = config.used.iter().map(|(_, n)| n).sum();
            let constrained = WINDOW_MAX as u32 - config.free.count_ones();
            match rank {
                Rank::Obligations => (obligations, used, constrained),
                Rank::Freedom => (used, constrained, obligations),
            }
        });
        // Round robin over the register's values, so that every value keeps its best.
        let mut by_state: HashMap<Val, VecDeque<Config>> = HashMap::default();
        for config in all {
            by_state.entry(config.state).or_default().push_back(config);
        }
        let mut groups: Vec<VecDeque<Config>> = by_state.into_values().collect();
        let mut kept = ConfigSet::with_beam(beam);
        // Bounded: every round takes one configuration of each non-empty group.
        while kept.len < width && groups.iter().any(|group| !group.is_empty()) {
            for group in &mut groups {
                if let Some(config) = group.pop_front()
                    && kept.len < width
                {
                    let _ = kept.insert(config);
                }
            }
        }
        kept.pruned = true;
        kept
    }

    fn pending_except(&self, op: usize) -> Vec<usize> {
        let mut pending: Vec<usize> = self
            .slot_op
            .iter()
            .filter(|&&other| other != u32::MAX && other as usize != op)
            .map(|&other| other as usize)
            .collect();
        pending.sort_unstable();
        pending
    }

    /// Linearizes every pending operation that leaves the value as it is and may happen now;
    /// returns whether there was one (it observed the value).
    fn saturate(&self, config: &mut Config) -> bool {
        let Some(mask) = self.compatible.get(&config.state) else { return false };
        let before = config.linearized;
        config.linearized |= mask;
        config.linearized != before
    }

    /// The return of `op`: every configuration must linearize it now at the latest.
    fn complete(
        &mut self,
        op: usize,
        configs: ConfigSet,
        beam: Option<usize>,
    ) -> Result<ConfigSet, &'static str> {
        let bit: Mask = 1 << self.slot_of[op];
        let mut next = ConfigSet::with_beam(beam);
        let mut starts = Vec::new();
        for mut config in configs.into_configs() {
            if config.free & bit != 0 {
                // A free write returns: placed before the write that freed it, or now (its
                // effect is observed later, if ever).
                config.free &= !bit;
                starts.push(config.clone());
                let _ = next.insert(config);
            } else if config.linearized & bit != 0 {
                config.linearized &= !bit;
                let _ = next.insert(config);
            } else {
                starts.push(config);
            }
        }
        if !starts.is_empty() {
            self.closure(starts, op, &mut next)?;
            next.pruned |= self.visited.pruned;
        }
        if next.len > self.budget.configs_max {
            return Err("configuration budget");
        }
        self.retire(op);
        Ok(next)
    }

    /// Every configuration reachable from one of `starts` by linearizing pending operations
    /// and, last, `op`. One exploration serves all starts: a configuration reached from two of
    /// them is explored once.
    fn closure(
        &mut self,
        starts: Vec<Config>,
        op: usize,
        out: &mut ConfigSet,
    ) -> Result<(), &'static str> {
        let bit: Mask = 1 << self.slot_of[op];
        let step = self.ops[op].step;
        self.visited.clear();
        self.visited.beam = match self.mode {
            Mode::Exact { beam } => Some(beam),
            Mode::Relaxed => None,
        };
        self.queue.clear();
        for start in starts {
            if self.visited.insert(start.clone()) {
                self.queue.push_back(start);
            }
        }
        // Bounded: every child linearizes one more operation or uses one more optional one,
        // and the node budget caps the total.
        while let Some(mut node) = self.queue.pop_front() {
            if !self.visited.contains(&node) {
                // Dominated or dropped after it was queued.
                continue;
            }
            self.nodes += 1;
            if self.nodes > self.budget.nodes_max {
                return Err("search node budget");
            }
            if self.saturate(&mut node) {
                node.observe = false;
            }
            if node.linearized & bit != 0 {
                // A write that nothing observed was useless: a configuration without it is
                // explored too.
                if !node.observe {
                    node.linearized &= !bit;
                    let _ = out.insert(node);
                }
                continue;
            }
            if node.free & bit != 0 && !node.observe {
                // Overwritten in this closure: placed before that write; or it takes effect
                // later in the closure, explored below.
                let mut discharged = node.clone();
                discharged.free &= !bit;
                let _ = out.insert(discharged);
            }
            let observes = |step: Step| !matches!(step, Step::Write(_));
            if let Some(next) = step.apply(node.state)
                && (!node.observe || observes(step))
            {
                let mut done = node.clone();
                done.state = next;
                done.linearized |= bit;
                if let Step::Write(_) = step {
                    done.overwrite(self.write_slots);
                }
                done.observe = false;
                self.saturate(&mut done);
                done.linearized &= !bit;
                done.free &= !bit;
                let _ = out.insert(done);
            }
            let state = node.state;
            let cas_count = self.cas_from.get(&state).map_or(0, Vec::len);
            // After a write, only a cas can follow (it observes the value).
            let writes = if node.observe { 0 } else { self.writes.len() };
            for position in 0..writes + cas_count {
                let class = match position.checked_sub(writes) {
                    None => self.writes[position],
                    Some(cas) => self.cas_from[&state][cas],
                };
                let entry = &self.classes[class as usize];
                let class_step = entry.step.expect("classes have steps");
                let Some(next) = class_step.apply(state) else { continue };
                let is_write = matches!(class_step, Step::Write(_));
                // A pending member, earliest deadline first (a write of the current value too:
                // placed now it has no effect, but it frees the other pending writes). A write
                // must be observed by the next step: otherwise leaving it pending is better.
                if let Some(&(_, slot)) =
                    entry.members.iter().find(|(_, slot)| node.linearized & (1 << *slot) == 0)
                {
                    let mut child = Config {
                        state: next,
                        linearized: node.linearized | (1 << slot),
                        free: node.free & !(1 << slot),
                        used: node.used.clone(),
                        observe: is_write,
                    };
                    if is_write {
                        child.overwrite(self.write_slots);
                    }
                    if self.visited.insert(child.clone()) {
                        self.queue.push_back(child);
                    }
                }
                // An optional member, if one is left, only where it has an effect (an optional
                // operation never has to happen): it changes the value, or it is a write that
                // frees pending writes. And only if no pending member of the class can do the
                // same (a configuration that linearized the pending one instead dominates: the
                // optional one can still play the pending one's part later).
                let pending_member =
                    entry.members.iter().any(|(_, slot)| node.linearized & (1 << *slot) == 0);
                let frees = is_write && self.write_slots & !node.linearized & !node.free != 0;
                if entry.available > 0 && (next != state || frees) && !pending_member {
                    let used = match self.mode {
                        Mode::Exact { .. } => node
                            .used
                            .iter()
                            .find(|(other, _)| *other == class)
                            .map_or(0, |(_, n)| *n),
                        Mode::Relaxed => 0,
                    };
                    if used < entry.available {
                        let mut child = Config {
                            state: next,
                            linearized: node.linearized,
                            free: node.free,
                            used: node.used.clone(),
                            observe: true,
                        };
                        if is_write {
                            child.overwrite(self.write_slots);
                        }
                        if let Mode::Exact { .. } = self.mode {
                            match child.used.binary_search_by_key(&class, |(other, _)| *other) {
                                Ok(position) => child.used[position].1 += 1,
                                Err(position) => child.used.insert(position, (class, 1)),
                            }
                        }
                        if self.visited.insert(child.clone()) {
                            self.queue.push_back(child);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The value in which a step may happen without any effect, for steps that never change the
/// register: a read, or a cas to the value it compares with. (A write of the current value is
/// not one: kept pending, it can set the value later.)
fn preserved(step: Step) -> Option<Val> {
    match step {
        Step::Read(value) => Some(value),
        Step::Cas(from, to) if from == to => Some(from),
        Step::Write(_) | Step::Cas(..) => None,
    }
}
