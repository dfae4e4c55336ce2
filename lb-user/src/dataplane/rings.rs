//! The rings map mapped into the agent's memory. The map is created `BPF_F_MMAPABLE`, so a
//! slot is rewritten with one atomic store that the XDP program sees at once: moving a
//! third of a 65537-slot table takes microseconds instead of tens of thousands of syscalls.

use std::{
    io,
    os::fd::AsFd as _,
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::maps::MapData;

/// Bytes per slot in the mapping: the kernel rounds array elements up to 8 bytes, so a u32
/// slot is the low half (little-endian) of each 8-byte element.
const SLOT_BYTES: usize = 8;

/// A shared mapping of the rings array.
pub struct RingMemory {
    base: NonNull<AtomicU32>,
    entries: usize,
    bytes: usize,
}

// SAFETY: the mapping is plain shared memory accessed only through atomics.
unsafe impl Send for RingMemory {}
// SAFETY: as above.
unsafe impl Sync for RingMemory {}

impl RingMemory {
    /// Maps the first `entries` slots of the array `map`.
    pub fn map(map: &MapData, entries: u32) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = (entries as usize * SLOT_BYTES).div_ceil(page) * page;
        let fd = map.fd().as_fd();
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks size and flags.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<AtomicU32>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(RingMemory {
            base,
            entries: entries as usize,
            bytes,
        })
    }

    fn slot(&self, index: usize) -> &AtomicU32 {
        assert!(
            index < self.entries,
            "ring slot {index} beyond {}",
            self.entries
        );
        // SAFETY: in bounds of the live mapping (checked above); each slot starts 8-aligned.
        unsafe { &*self.base.as_ptr().add(index * SLOT_BYTES / 4) }
    }

    /// The `len` slots starting at `start`.
    pub fn read(&self, start: usize, len: usize) -> Vec<u32> {
        (start..start + len)
            .map(|i| self.slot(i).load(Ordering::Relaxed))
            .collect()
    }

    /// Sets slot `index`.
    pub fn write(&self, index: usize, value: u32) {
        self.slot(index).store(value, Ordering::Relaxed);
    }
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}
