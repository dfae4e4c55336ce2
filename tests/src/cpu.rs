//! Whole-machine CPU time from /proc/stat, for benchmarks that compare setups by the CPU the
//! whole machine spent on the same work.

use anyhow::Context as _;

/// Jiffies per second on Linux (USER_HZ).
const USER_HZ: f64 = 100.0;

/// Busy CPU time since boot, summed over all CPUs, in seconds.
pub fn busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().context("a /proc/stat field"))
        .collect::<anyhow::Result<_>>()?;
    // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .take(6)
        .sum();
    Ok(busy as f64 / USER_HZ)
}
