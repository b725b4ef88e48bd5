//! Hostile bytes at scale: millions of seeded random and mutated frames and messages through
//! the frame layer, the envelope checks and the protocol core of live n = 4 clusters
//! (`replica::sim::fuzz`), PoE-TS and PoE-MAC in turn, each cluster running a client workload
//! that must complete with the honest replicas in agreement.
//!
//! ```text
//! cargo run --release -p replica --example fuzz -- --inputs 10000000 --seed 1
//! ```
//!
//! Options: `--inputs N` (default 1 000 000), `--seed S` (default 1), `--protocol poe-ts`,
//! `poe-mac` or `both` (default), `--requests R` (client requests per cluster, default 2000).
//! Prints progress, then inputs per second, the accepted count, the rejection histogram, the
//! largest bounded sizes seen in the replicas, and the heap: peak live bytes and the largest
//! single allocation, from a counting allocator. Exits non-zero if an input panicked, the
//! accounting did not add up, a bound was exceeded or a cluster failed to complete.
//! docs/fuzz.md records a run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use replica::core::Protocol;
use replica::net::frame::FRAME_SIZE_MAX;
use replica::sim::fuzz::fuzz_sessions;

/// The system allocator, counting live bytes, their peak and the largest single allocation.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(size: usize) {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(live, Ordering::Relaxed);
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `System::alloc`, with the caller's layout.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            Counting::grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `System::alloc_zeroed`, with the caller's layout.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            Counting::grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a pointer this allocator returned, with its layout.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a pointer this allocator returned, with its layout.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            Counting::grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

struct Options {
    inputs: u64,
    seed: u64,
    protocols: Vec<Protocol>,
    requests: u64,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        inputs: 1_000_000,
        seed: 1,
        protocols: vec![Protocol::PoeTs, Protocol::PoeMac],
        requests: 2000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.replace('_', "").parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--inputs" => options.inputs = number()?,
            "--seed" => options.seed = number()?,
            "--requests" => options.requests = number()?,
            "--protocol" => {
                options.protocols = match value.as_str() {
                    "poe-ts" => vec![Protocol::PoeTs],
                    "poe-mac" => vec![Protocol::PoeMac],
                    "both" => vec![Protocol::PoeTs, Protocol::PoeMac],
                    other => return Err(format!("unknown protocol {other}")),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[allow(clippy::disallowed_methods, reason = "the example measures wall-clock throughput")]
fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("fuzz: {error}");
            return ExitCode::from(2);
        }
    };
    let protocols: Vec<&str> = options.protocols.iter().map(|p| p.name()).collect();
    println!(
        "fuzz: {} inputs, seed {}, protocols {}, {} requests per cluster",
        options.inputs,
        options.seed,
        protocols.join(" and "),
        options.requests
    );
    let start = Instant::now();
    let mut next_print = 0u64;
    let result = fuzz_sessions(
        &options.protocols,
        options.seed,
        options.inputs,
        options.requests,
        |total| {
            if total.inputs >= next_print {
                next_print = total.inputs + options.inputs / 20;
                let seconds = start.elapsed().as_secs_f64();
                println!(
                    "  {:>10} inputs  {:>6.0} s  {:>8.0} inputs/s  {} clusters",
                    total.inputs,
                    seconds,
                    total.inputs as f64 / seconds,
                    total.sessions
                );
            }
        },
    );
    let seconds = start.elapsed().as_secs_f64();
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            eprintln!("fuzz: FAILED: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{report}");
    println!(
        "{} inputs in {seconds:.1} s: {:.0} inputs/s; accepted {}, rejected {}",
        report.inputs,
        report.inputs as f64 / seconds,
        report.accepted,
        report.rejected()
    );
    let (peak, largest) = (PEAK.load(Ordering::Relaxed), LARGEST.load(Ordering::Relaxed));
    println!(
        "heap: peak {:.1} MiB live, largest single allocation {:.1} MiB (a frame is at most \
         {:.1} MiB)",
        mib(peak),
        mib(largest),
        mib(FRAME_SIZE_MAX)
    );
    if let Err(error) = report.check_accounting() {
        eprintln!("fuzz: FAILED: {error}");
        return ExitCode::FAILURE;
    }
    println!("accounting: every input accepted or counted as exactly one rejection");
    ExitCode::SUCCESS
}
