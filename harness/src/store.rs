//! The store: one directory per run, `store/<test-name>/<YYYYMMDDTHHMMSS>-s<seed>/`, and
//! `store/latest` pointing at the newest.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Creates the directory of a new run of `test_name` with `seed`, started at `now`.
///
/// # Errors
///
/// When the directory cannot be created.
pub fn create_run_dir(
    store: &Path,
    test_name: &str,
    seed: u64,
    now: SystemTime,
) -> io::Result<PathBuf> {
    let stamp = timestamp(now);
    let parent = store.join(test_name);
    std::fs::create_dir_all(&parent)?;
    // Two runs of one test with one seed in the same second get a suffix.
    for attempt in 1..=1000u32 {
        let name = match attempt {
            1 => format!("{stamp}-s{seed}"),
            _ => format!("{stamp}-s{seed}-{attempt}"),
        };
        let path = parent.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::other("more than 1000 runs of one test in one second"))
}

/// Points `store/latest` at `run_dir` (replacing the old link atomically).
///
/// # Errors
///
/// When the link cannot be made.
pub fn update_latest(store: &Path, run_dir: &Path) -> io::Result<()> {
    // Unique per process and call: a sweep's threads store runs at the same time.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let target = run_dir.strip_prefix(store).unwrap_or(run_dir);
    let temporary = store.join(format!(".latest-{}-{call}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary)?;
    std::fs::rename(&temporary, store.join("latest"))
}

/// `YYYYMMDDTHHMMSS` in UTC.
pub fn timestamp(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
