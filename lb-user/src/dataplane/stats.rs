//! Reading the per-CPU counters from the pinned map.

use std::path::Path;

use aya::maps::{Map, MapData, PerCpuArray};
use lb_common::{counters::Counter, maps::COUNTERS_MAP};

/// Counter values summed over CPUs, in [`Counter::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// `(counter, value)` pairs.
    pub values: Vec<(Counter, u64)>,
}

impl CounterSnapshot {
    /// The value of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.values
            .iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |(_, v)| *v)
    }
}

/// Reads the counters pinned under `bpf_dir` (by a running agent).
pub fn read_counters(bpf_dir: &Path) -> Result<CounterSnapshot, aya::maps::MapError> {
    let data = MapData::from_pin(bpf_dir.join(COUNTERS_MAP))?;
    let array: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::from_map_data(data)?)?;
    let mut values = Vec::with_capacity(Counter::ALL.len());
    for counter in Counter::ALL {
        let per_cpu = array.get(&(counter as u32), 0)?;
        values.push((counter, per_cpu.iter().sum()));
    }
    Ok(CounterSnapshot { values })
}
