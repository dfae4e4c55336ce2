//! Runs the real XDP object through BPF_PROG_TEST_RUN, with maps filled by the agent's own
//! sync code from a configuration, and reads its counters and tables.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};
use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
};
use lb::dataplane::{Dataplane, model::L4Model, neigh::Nexthop};
use lb_common::{
    counters::{Counter, CounterBlock},
    maps::{
        CONNS_MAP, COUNTERS_MAP, Flow, FlowKey, INGRESS_PROGRAM, REAL_STATS_MAP, SERVICE_STATS_MAP,
        TrafficStats,
    },
};

/// The XDP verdicts, as the kernel numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAction {
    /// XDP_ABORTED (0): a program error.
    Aborted,
    /// XDP_DROP (1).
    Drop,
    /// XDP_PASS (2): on to the kernel stack.
    Pass,
    /// XDP_TX (3): out of the interface it came in on.
    Tx,
    /// XDP_REDIRECT (4).
    Redirect,
}

impl XdpAction {
    fn from_code(code: u32) -> anyhow::Result<Self> {
        Ok(match code {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => bail!("XDP program returned {other}, which is no XDP action"),
        })
    }
}

/// What one run of the program did to one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The verdict.
    pub action: XdpAction,
    /// The frame as the program left it.
    pub output: Vec<u8>,
}

/// The interface BPF_PROG_TEST_RUN reports as ingress (loopback): a real whose next hop is on
/// it is sent with XDP_TX, any other with XDP_REDIRECT.
pub const TEST_RUN_IFINDEX: u32 = 1;

/// Length of an Ethernet header: the shortest frame BPF_PROG_TEST_RUN accepts.
const ETH_HEADER_LEN: usize = 14;

/// The loaded XDP object, its maps pinned in a private bpffs directory removed on drop.
pub struct XdpHarness {
    dataplane: Option<Dataplane>,
    pin_dir: PathBuf,
}

fn unique_pin_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    PathBuf::from(format!(
        "/sys/fs/bpf/lb-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Parses and validates a configuration given as text.
pub fn config(text: &str) -> anyhow::Result<lb::config::Config> {
    Ok(lb::config::load_str(Path::new("fixture.toml"), text)?)
}

impl XdpHarness {
    /// Loads `lb_ingress` from the object the agent embeds, with empty maps.
    pub fn load() -> anyhow::Result<Self> {
        Self::with_config("", &HashMap::new())
    }

    /// Loads `lb_ingress` and fills its maps from `config_text` through the agent's sync code,
    /// with the given next hops for reals (reals without one get no traffic).
    pub fn with_config(
        config_text: &str,
        nexthops: &HashMap<IpAddr, Nexthop>,
    ) -> anyhow::Result<Self> {
        let config = config(config_text)?;
        let model = L4Model::from_config(&config);
        let pin_dir = unique_pin_dir();
        let mut dataplane =
            Dataplane::load(lb::LB_EBPF_OBJECT, &pin_dir, lb::agent::map_sizes(&model))
                .context("loading the XDP object")?;
        dataplane.apply(&model, nexthops, &|_, _| true)?;
        Ok(XdpHarness {
            dataplane: Some(dataplane),
            pin_dir,
        })
    }

    /// The data plane, to change maps between runs.
    pub fn dataplane(&mut self) -> &mut Dataplane {
        self.dataplane
            .as_mut()
            .expect("dataplane present until drop")
    }

    fn ebpf(&self) -> &aya::Ebpf {
        self.dataplane
            .as_ref()
            .expect("dataplane present until drop")
            .ebpf()
    }

    /// Runs the program once on `frame`.
    ///
    /// Returns `Ok(None)` when the kernel refuses to run the program on the frame at all:
    /// BPF_PROG_TEST_RUN on this kernel answers EINVAL for frames shorter than an Ethernet
    /// header (even with the shortfall given as XDP metadata), as veth and packet sockets
    /// refuse to carry them, so such frames never reach an XDP program here.
    pub fn run(&self, frame: &[u8]) -> anyhow::Result<Option<RunResult>> {
        Ok(self
            .run_program(INGRESS_PROGRAM, frame)?
            .map(|(result, _)| result))
    }

    /// Loads another XDP program of the object (the benchmark yardsticks `bench_pass` and
    /// `bench_floor`), sharing the maps.
    pub fn load_program(&mut self, name: &str) -> anyhow::Result<()> {
        let program: &mut Xdp = self
            .dataplane()
            .ebpf_mut()
            .program_mut(name)
            .with_context(|| format!("the object has no {name}"))?
            .try_into()?;
        program
            .load()
            .with_context(|| format!("the verifier refused {name}"))?;
        Ok(())
    }

    /// Runs program `name` once on `frame` (see [`XdpHarness::run`]); also returns the run
    /// time the kernel measured.
    pub fn run_program(
        &self,
        name: &str,
        frame: &[u8],
    ) -> anyhow::Result<Option<(RunResult, std::time::Duration)>> {
        self.run_program_repeated(name, frame, 1)
    }

    /// Runs program `name` `repeat` times in one call, each time on the buffer the previous
    /// run left (so only paths a run does not change measure themselves); returns the last
    /// run's result and the kernel's mean time per run.
    pub fn run_program_repeated(
        &self,
        name: &str,
        frame: &[u8],
        repeat: u32,
    ) -> anyhow::Result<Option<(RunResult, std::time::Duration)>> {
        let program: &Xdp = self
            .ebpf()
            .program(name)
            .with_context(|| format!("the object has no {name}"))?
            .try_into()?;
        // Room for the encapsulation headers TUN mode adds.
        let mut output = vec![0u8; frame.len() + 256];
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut output),
            repeat,
            ..TestRunOptions::default()
        });
        let result = match result {
            Ok(result) => result,
            Err(ProgramError::SyscallError(e))
                if frame.len() < ETH_HEADER_LEN
                    && e.io_error.raw_os_error() == Some(libc::EINVAL) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e).context("BPF_PROG_TEST_RUN"),
        };
        output.truncate(result.data_size_out as usize);
        let run = RunResult {
            action: XdpAction::from_code(result.return_value)?,
            output,
        };
        Ok(Some((run, result.duration)))
    }

    /// The counters summed over CPUs, in [`Counter::ALL`] order.
    pub fn counters(&self) -> anyhow::Result<Vec<u64>> {
        let map = self.ebpf().map(COUNTERS_MAP).context("no counters map")?;
        let array: PerCpuArray<&MapData, CounterBlock> = PerCpuArray::try_from(map)?;
        let per_cpu = array.get(&0, 0)?;
        Ok(Counter::ALL
            .iter()
            .map(|&c| per_cpu.iter().map(|block| block.values[c as usize]).sum())
            .collect())
    }

    /// The connection-table entry of `flow`, if any.
    pub fn conn(&self, flow: &FlowKey) -> anyhow::Result<Option<Flow>> {
        let map = self.ebpf().map(CONNS_MAP).context("no connection table")?;
        let table: BpfHashMap<&MapData, FlowKey, Flow> = BpfHashMap::try_from(map)?;
        Ok(table.get(flow, 0).ok())
    }

    /// Traffic of service `id` (or real `id` when `real`), summed over CPUs.
    pub fn traffic(&self, id: u32, real: bool) -> anyhow::Result<TrafficStats> {
        let name = if real {
            REAL_STATS_MAP
        } else {
            SERVICE_STATS_MAP
        };
        let map = self.ebpf().map(name).context("no stats map")?;
        let array: PerCpuArray<&MapData, TrafficStats> = PerCpuArray::try_from(map)?;
        Ok(array
            .get(&id, 0)?
            .iter()
            .fold(TrafficStats::default(), |a, s| TrafficStats {
                packets: a.packets + s.packets,
                bytes: a.bytes + s.bytes,
                new_flows: a.new_flows + s.new_flows,
            }))
    }
}

impl Drop for XdpHarness {
    fn drop(&mut self) {
        if let Some(dataplane) = self.dataplane.take() {
            dataplane.shutdown();
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
    }
}
