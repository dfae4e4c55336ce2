//! Reading the per-CPU counters from the pinned map.

use std::path::Path;

use aya::maps::{Map, MapData, PerCpuArray};
use lb_common::{
    counters::{Counter, CounterBlock},
    maps::{COUNTERS_MAP, TrafficStats},
};

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
    let array: PerCpuArray<MapData, CounterBlock> =
        PerCpuArray::try_from(Map::from_map_data(data)?)?;
    let per_cpu = array.get(&0, 0)?;
    let values = Counter::ALL
        .iter()
        .map(|&counter| {
            (
                counter,
                per_cpu
                    .iter()
                    .map(|block| block.values[counter as usize])
                    .sum(),
            )
        })
        .collect();
    Ok(CounterSnapshot { values })
}

/// Per-service or per-real traffic summed over CPUs, for the first `count` slots of the
/// pinned map `map` under `bpf_dir`.
pub fn read_traffic(
    bpf_dir: &Path,
    map: &str,
    count: u32,
) -> Result<Vec<TrafficStats>, aya::maps::MapError> {
    let data = MapData::from_pin(bpf_dir.join(map))?;
    let array: PerCpuArray<MapData, TrafficStats> =
        PerCpuArray::try_from(Map::from_map_data(data)?)?;
    (0..count)
        .map(|i| {
            let per_cpu = array.get(&i, 0)?;
            Ok(per_cpu
                .iter()
                .fold(TrafficStats::default(), |sum, s| TrafficStats {
                    packets: sum.packets + s.packets,
                    bytes: sum.bytes + s.bytes,
                    new_flows: sum.new_flows + s.new_flows,
                }))
        })
        .collect()
}
