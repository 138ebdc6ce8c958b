//! The virtual I/O APIC (FreeBSD / illumos `vioapic.c`), with the
//! sx-lock redirection-table write path of OS-7622 / D20389 (see
//! `semantics.md` sections 1 and 5).
//!
//! # Lock order
//!
//! 1. [`Vioapic::write_lock`], the *RTE write lock*: exclusive, taken
//!    first, only by writes through IOWIN (RTE, ID). It serialises RTE
//!    writes and the TMR staging they do, and is held while the writer
//!    waits for a target vCPU to leave RUNNING (`block_run`). That wait
//!    ends because a RUNNING vCPU leaves RUNNING without taking this lock.
//! 2. [`Vioapic::table`], the *table mutex*: the redirection table, IOREGSEL,
//!    ID, in-flux marks and statistics. Never held while waiting on a vCPU.
//!    EOI processing, MMIO reads and sends take only this mutex, so a vCPU
//!    that is being waited for can always finish what it is doing.
//!
//! Assert counts are not under a lock: each pin has one atomic word holding
//! its count and a copy of its mask bit ([`Vioapic::counts`]), so asserting
//! a masked pin and every deassert take no lock and pins do not contend
//! with each other. Only an assert that takes a count from 0 to 1 on an
//! unmasked pin takes the table mutex, to send. Count and mask copy share
//! the word so that the assert's read-modify-write and an RTE write's
//! update of the mask copy are ordered one after the other: either the
//! assert sees the pin unmasked and sends, or the write (which reads the
//! count after its update, in step 5) sees the count and sends. Because an
//! assert may reach the table mutex late, a level entry is sent only while
//! its count is non-zero at that moment (the line is sampled under the
//! mutex), and remote IRR coalesces a second send of one assertion.
//!
//! Under the table mutex, delivery takes (one at a time) vCPU mutexes (to
//! notify), vlapic mutexes and the cpuset mutex: all rank below it. In the
//! crate order (`vm.rs`) both locks come after guest memory and before the
//! rendezvous, vCPU, vlapic and cpuset mutexes.
//!
//! The vioapic reaches the VM through [`IoapicBus`], which lets the tests
//! drive it with a recording bus.

mod pins;
pub mod rte;
mod write;

#[cfg(all(test, not(loom)))]
mod tests;

use crate::cpuset::CpuSet;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Mutex;

use rte::Rte;

/// Number of pins (illumos; FreeBSD has 24 in older releases). EOI
/// processing keeps one bit per pin in a `u32`.
pub const PINS: usize = 32;
const _: () = assert!(PINS <= 32);
/// Guest-physical base and size of the MMIO window.
pub const IOAPIC_BASE: u64 = 0xFEC0_0000;
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Window register offsets.
pub const IOREGSEL: u64 = 0x00;
pub const IOWIN: u64 = 0x10;
/// Register indices.
pub const REG_ID: u32 = 0x00;
pub const REG_VER: u32 = 0x01;
pub const REG_ARB: u32 = 0x02;
pub const REG_REDTBL: u32 = 0x10;
/// VER: max redirection entry in 23:16, version 0x11.
pub const VERSION: u32 = (((PINS - 1) as u32) << 16) | 0x11;

/// What the vioapic needs from the VM.
pub trait IoapicBus {
    /// `vlapic_deliver_intr` (xAPIC destination format). Called with the
    /// table mutex held.
    fn deliver(&self, level: bool, dest: u8, phys: bool, delmode: u32, vector: u8);
    /// The vCPUs whose TMR a level entry with this addressing sets (empty
    /// unless fixed or lowest-priority). Called with the table mutex held.
    fn tmr_targets(&self, dest: u8, phys: bool, delmode: u32) -> CpuSet;
    /// Keep vCPU `id` out of RUNNING, waiting while it is RUNNING. Called
    /// with the write lock held and the table mutex released.
    fn block_run(&self, id: usize);
    fn unblock_run(&self, id: usize);
    /// Stage a TMR change into vCPU `id`'s vlapic.
    fn stage_tmr(&self, id: usize, vector: u8, level: bool);
    /// Whether RTE writes use the 2019 protocol (see `Vm::legacy_protocol`).
    fn legacy_protocol(&self) -> bool {
        false
    }
    /// The 2019 protocol's step 4: `vm_smp_rendezvous` over every active
    /// vCPU, each staging its own (vcpu, clear, set) changes, waiting for
    /// all of them. Called with no vioapic lock but the write lock held.
    fn rendezvous_stage_tmr(&self, _writer: Option<usize>, _ops: Vec<(usize, Option<u8>, Option<u8>)>) {}
}

/// Counters (VM_STATS material and test observability).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoapicStats {
    /// Interrupts handed to the local APICs.
    pub interrupts: u64,
    /// Asserts refused at the maximum count (E2BIG).
    pub saturate_high: u64,
    /// Deasserts refused at zero (ERANGE).
    pub saturate_low: u64,
    /// RTE half writes.
    pub rte_writes: u64,
    /// RTE writes that needed TMR work (steps 2-4 of the write path).
    pub tmr_updates: u64,
    /// `block_run` calls made by the write path.
    pub tmr_block_runs: u64,
    /// TMR set/clear operations staged into vlapics.
    pub tmr_stagings: u64,
    /// Sends held back because their pin was being rewritten.
    pub deferred_sends: u64,
}

/// One pin's lock-free part, on its own cache line: bits 31:0 are the
/// assert count (asserts minus deasserts, clamped to 0..=u32::MAX), bit 32
/// a copy of the entry's mask bit, updated under the table mutex whenever
/// the entry changes.
#[derive(Debug)]
#[repr(align(64))]
struct PinCount(AtomicU64);

const COUNT_MASKED: u64 = 1 << 32;

impl Default for PinCount {
    fn default() -> Self {
        PinCount(AtomicU64::new(COUNT_MASKED))
    }
}

impl PinCount {
    fn count(&self) -> u32 {
        self.0.load(Ordering::SeqCst) as u32
    }

    /// Adds 1 (`up`) or -1 to the count; returns the word before, or None
    /// (and changes nothing) at the top or at zero.
    fn add(&self, up: bool) -> Option<u64> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                let n = w as u32;
                let n = if up { n.checked_add(1)? } else { n.checked_sub(1)? };
                Some(w & COUNT_MASKED | u64::from(n))
            })
            .ok()
    }

    fn set_masked(&self, masked: bool) {
        if masked {
            self.0.fetch_or(COUNT_MASKED, Ordering::SeqCst);
        } else {
            self.0.fetch_and(!COUNT_MASKED, Ordering::SeqCst);
        }
    }

    fn reset(&self) {
        self.0.store(COUNT_MASKED, Ordering::SeqCst);
    }

    #[cfg(all(test, not(loom)))]
    fn set_count(&self, n: u32) {
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| Some(w & COUNT_MASKED | u64::from(n)));
    }
}

/// One pin.
#[derive(Debug, Clone, Copy)]
struct Pin {
    reg: u64,
    /// The entry is being rewritten (write path steps 1-5): sends wait.
    in_flux: bool,
    /// A send was held back while in flux; step 5 makes it.
    deferred: bool,
}

impl Default for Pin {
    fn default() -> Self {
        Pin { reg: rte::RESET, in_flux: false, deferred: false }
    }
}

/// Everything the table mutex protects.
#[derive(Debug, Default)]
struct Table {
    id: u32,
    ioregsel: u32,
    pins: [Pin; PINS],
    stats: IoapicStats,
    /// Order of remote-IRR clears and sends, for the EOI-ordering test.
    #[cfg(all(test, not(loom)))]
    trace: Vec<(&'static str, usize)>,
}

/// The VM's I/O APIC.
#[derive(Debug, Default)]
pub struct Vioapic {
    /// RTE write lock. Protects: the right to rewrite an entry and stage
    /// TMR changes (no data). Rank: after guest memory, before the table
    /// mutex; may be held while waiting for a vCPU to leave RUNNING.
    write_lock: Mutex<()>,
    /// Table mutex. Protects: [`Table`] (entries, IOREGSEL, ID, in-flux
    /// marks, stats). Rank: after the write lock, before the rendezvous,
    /// vCPU, vlapic and cpuset mutexes; never held while waiting on a vCPU.
    table: Mutex<Table>,
    /// Assert counts and mask copies (atomics, no lock; see the module doc).
    counts: [PinCount; PINS],
}

impl Vioapic {
    /// A vioapic in its reset state: ID 0, every entry masked, no pin
    /// asserted.
    pub fn new() -> Self {
        Vioapic::default()
    }

    /// Back to the reset state (VM_REINIT), statistics included.
    pub fn reset(&self) {
        let mut t = self.table.lock();
        *t = Table::default();
        for c in &self.counts {
            c.reset();
        }
    }

    /// VM_IOAPIC_PINCOUNT.
    pub fn pincount(&self) -> i32 {
        PINS as i32
    }

    pub fn stats(&self) -> IoapicStats {
        self.table.lock().stats
    }

    /// The 64-bit entry of `pin` (tests, debugging).
    pub fn rte(&self, pin: usize) -> u64 {
        self.table.lock().pins[pin].reg
    }

    /// The assert count of `pin`.
    pub fn assert_count(&self, pin: usize) -> u32 {
        self.counts[pin].count()
    }

    /// MMIO read at `offset` in the window: IOREGSEL, or the register it
    /// selects through IOWIN. Anything but a 4-byte access to those two
    /// reads 0.
    pub fn mmio_read(&self, offset: u64, size: u8) -> u32 {
        if size != 4 {
            return 0;
        }
        let t = self.table.lock();
        match offset {
            IOREGSEL => t.ioregsel,
            IOWIN => t.read_reg(t.ioregsel & 0xFF),
            _ => 0,
        }
    }
}

impl Table {
    fn read_reg(&self, regnum: u32) -> u32 {
        match regnum {
            REG_ID | REG_ARB => self.id,
            REG_VER => VERSION,
            r => match rte_index(r) {
                Some((pin, true)) => (self.pins[pin].reg >> 32) as u32,
                Some((pin, false)) => self.pins[pin].reg as u32,
                None => 0,
            },
        }
    }

    fn rte(&self, pin: usize) -> Rte {
        Rte(self.pins[pin].reg)
    }
}

/// Register index -> (pin, high half).
fn rte_index(regnum: u32) -> Option<(usize, bool)> {
    let i = regnum.checked_sub(REG_REDTBL)? as usize;
    (i < 2 * PINS).then_some((i / 2, i % 2 == 1))
}

/// A pin number from a C `int`; EINVAL when out of range.
fn pin_index(pin: i32) -> crate::error::Result<usize> {
    usize::try_from(pin).ok().filter(|p| *p < PINS).ok_or(crate::error::Error::Inval)
}
