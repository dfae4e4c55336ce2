//! Runs the real `lb_ingress` object through BPF_PROG_TEST_RUN and reads its counters.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
};
use lb_common::{
    counters::Counter,
    maps::{COUNTERS_MAP, INGRESS_PROGRAM},
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

/// The loaded XDP object, its maps pinned in a private bpffs directory removed on drop.
pub struct XdpHarness {
    ebpf: Ebpf,
    pin_dir: PathBuf,
}

/// Length of an Ethernet header: the shortest frame BPF_PROG_TEST_RUN accepts.
const ETH_HEADER_LEN: usize = 14;

impl XdpHarness {
    /// Loads `lb_ingress` from the object the agent embeds.
    pub fn load() -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/lb-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        lb::dataplane::ensure_bpffs(&pin_dir)
            .with_context(|| format!("preparing {}", pin_dir.display()))?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .load(lb::LB_EBPF_OBJECT)
            .context("loading the XDP object")?;
        let program: &mut Xdp = ebpf
            .program_mut(INGRESS_PROGRAM)
            .context("the object has no lb_ingress")?
            .try_into()?;
        program.load().context("the verifier refused lb_ingress")?;
        Ok(XdpHarness { ebpf, pin_dir })
    }

    /// Runs the program once on `frame`.
    ///
    /// Returns `Ok(None)` when the kernel refuses to run the program on the frame at all:
    /// BPF_PROG_TEST_RUN on this kernel answers EINVAL for frames shorter than an Ethernet
    /// header (even with the shortfall given as XDP metadata), as veth and packet sockets
    /// refuse to carry them, so such frames never reach an XDP program here.
    pub fn run(&self, frame: &[u8]) -> anyhow::Result<Option<RunResult>> {
        let program: &Xdp = self
            .ebpf
            .program(INGRESS_PROGRAM)
            .context("the object has no lb_ingress")?
            .try_into()?;
        // Room for programs that grow the frame (encapsulation) in later issues.
        let mut output = vec![0u8; frame.len() + 256];
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut output),
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
        Ok(Some(RunResult {
            action: XdpAction::from_code(result.return_value)?,
            output,
        }))
    }

    /// The counters summed over CPUs, in [`Counter::ALL`] order.
    pub fn counters(&self) -> anyhow::Result<Vec<u64>> {
        let map = self.ebpf.map(COUNTERS_MAP).context("no counters map")?;
        let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        Counter::ALL
            .iter()
            .map(|&c| Ok(array.get(&(c as u32), 0)?.iter().sum()))
            .collect()
    }
}

impl Drop for XdpHarness {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.pin_dir.join(COUNTERS_MAP));
        let _ = std::fs::remove_dir(&self.pin_dir);
    }
}
