//! The virtual I/O APIC (FreeBSD / illumos `vioapic.c`), with the
//! sx-lock redirection-table write path of OS-7622 / D20389 (see
//! `semantics.md` sections 1 and 5).
//!
//! # Lock order
//!
//! 1. `Vioapic::write_lock`, the *RTE write lock*: exclusive, taken
//!    first, only by writes through IOWIN (RTE, ID). It serialises RTE
//!    writes and the TMR staging they do, and is held while the writer
//!    waits for a target vCPU to leave RUNNING (`block_run`). That wait
//!    ends because a RUNNING vCPU leaves RUNNING without taking this lock.
//! 2. `Vioapic::table`, the *table mutex*: the redirection table (with
//!    remote IRR), IOREGSEL, ID and statistics; the entry copies and in-flux
//!    marks are written under it. Never held while waiting on a vCPU. EOI
//!    processing, MMIO reads and level sends take only this mutex, so a vCPU
//!    that is being waited for can always finish what it is doing.
//!
//! Asserts, deasserts and edge sends take no vioapic lock. Each pin has a
//! cache line of atomics (`Vioapic::lines`, see `line`): its assert count
//! with a copy of the mask bit in one word, a copy of its entry with an
//! in-flux mark, and its count of held-back sends. Asserting a masked pin
//! and every deassert are one read-modify-write of the count word; sends
//! are counted in `Vioapic::sent`, a cell per sending thread, with plain
//! stores (`thread_slot`). An assert that
//! takes the count from 0 to 1 on an unmasked pin reads the entry copy: an
//! edge entry is delivered at once; a level entry takes the table mutex,
//! which owns remote IRR. A pin in flux (being rewritten) holds its send
//! back by setting a mark in the entry copy, and the writer makes the send
//! in step 5, so pins do not serialise on the table mutex to send and two
//! devices on different edge pins do not meet in the vioapic at all.
//! A pulse changes no count: it sends as a 0 -> 1 assert would when it
//! reads the count word 0 (a load, so its edge delivery takes the plain
//! path), and a pulse's send held back is marked as such, so that the
//! writer sends a level entry for it though the line is low by step 5.
//!
//! The writer publishes the entry copy, then the mask copy (both under the
//! table mutex). So the assert's read-modify-write of the count word and
//! the write's update of the mask copy are ordered one after the other:
//! either the assert sees the pin unmasked, then reads the new entry (or a
//! later one) and sends, or the write (which reads the count after its
//! update, in step 5) sees the count and sends a level entry. Because an
//! assert may reach the table mutex late, a level entry is sent only while
//! its count is non-zero at that moment (the line is sampled under the
//! mutex), and remote IRR coalesces a second send of one assertion. An edge
//! send carries the entry it read, and may land in the local APIC after a
//! later rewrite of that entry has finished, like an interrupt message
//! already on the bus; the local APIC records its trigger mode at
//! acceptance, and a staged TMR change waits until the vector is retired.
//! Unlike a bus, this can reorder one pin's sends: an edge send that read
//! the entry before a rewrite to level with the same vector can land after
//! the rewrite's level send. So an edge message joins a vector the local
//! APIC has pending as level instead of relabelling it, and each
//! in-service instance keeps the mode it was accepted with for its EOI, so
//! that interrupt's EOI still clears remote IRR and an edge instance's EOI
//! clears nothing (`vlapic::state`, `set_intr_ready`, `isr_level`).
//!
//! Delivery (under the table mutex for level sends and EOI re-sends, under
//! no vioapic lock for edge sends) takes, one at a time, vCPU mutexes (to
//! notify) and vlapic mutexes: all rank below the table mutex. In the
//! crate order (`vm.rs`) both locks come after guest memory and before the
//! rendezvous, vCPU, vlapic and cpuset mutexes.
//!
//! The vioapic reaches the VM through [`IoapicBus`], which lets the tests
//! drive it with a recording bus.

mod line;
mod pins;
pub mod rte;
mod write;

#[cfg(all(test, not(loom)))]
mod tests;

use crate::cpuset::CpuSet;
use crate::error::Result;
use crate::peer_wait::PeerWait;
use crate::sync::Mutex;
use crate::thread_slot::SplitCounter;

pub use line::MAX_ASSERTS;
use line::PinLine;
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
    /// table mutex held, or lock-free by an edge send.
    fn deliver(&self, level: bool, dest: u8, phys: bool, delmode: u32, vector: u8);
    /// `deliver` from the vioapic's lock-free edge send, which made a
    /// successful sequentially consistent read-modify-write (its assert
    /// count) earlier in program order; on x86-64 that stands in for the
    /// lock-free merge's own (see `vlapic::pending`). Only the vioapic
    /// calls it.
    fn deliver_after_rmw(&self, level: bool, dest: u8, phys: bool, delmode: u32, vector: u8) {
        self.deliver(level, dest, phys, delmode, vector);
    }
    /// The vCPUs whose TMR a level entry with this addressing sets (empty
    /// unless fixed or lowest-priority). Called with the table mutex held.
    fn tmr_targets(&self, dest: u8, phys: bool, delmode: u32) -> CpuSet;
    /// Step 4 is about to keep `targets` (the writer's own vCPU not among
    /// them) out of RUNNING: reports the wait to `peer_wait`, which may
    /// refuse it (EDEADLK), before the write changes anything. Called
    /// with the write lock and the table mutex held.
    fn before_block_runs(&self, _targets: CpuSet) -> Result<PeerWait> {
        Ok(PeerWait::none())
    }
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

/// The counters kept under the table mutex (the rest of [`IoapicStats`]
/// is counted without it and gathered by [`Vioapic::stats`]).
#[derive(Debug, Clone, Copy, Default)]
struct TableStats {
    saturate_high: u64,
    saturate_low: u64,
    rte_writes: u64,
    tmr_updates: u64,
    tmr_block_runs: u64,
    tmr_stagings: u64,
}

/// One pin's entry, as the guest wrote it (and remote IRR).
#[derive(Debug, Clone, Copy)]
struct Pin {
    reg: u64,
}

impl Default for Pin {
    fn default() -> Self {
        Pin { reg: rte::RESET }
    }
}

/// Everything the table mutex protects.
#[derive(Debug, Default)]
struct Table {
    id: u32,
    ioregsel: u32,
    pins: [Pin; PINS],
    stats: TableStats,
    /// `Vioapic::sent` at the last reset (the counter cannot be zeroed:
    /// each of its cells has one writer).
    sent_at_reset: u64,
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
    /// Table mutex. Protects: [`Table`] (entries, IOREGSEL, ID, stats), and
    /// serialises writes of the entry copies in `lines`. Rank: after the
    /// write lock, before the rendezvous, vCPU, vlapic and cpuset mutexes;
    /// never held while waiting on a vCPU.
    table: Mutex<Table>,
    /// Per pin: assert count, copies of the mask bit and the entry, and
    /// sends held back (atomics, no lock; see the module doc).
    lines: [PinLine; PINS],
    /// Interrupts handed to the local APICs, from every pin: a counter
    /// with a cell per sending thread, so that counting adds no atomic
    /// read-modify-write to a send.
    sent: SplitCounter,
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
        *t = Table { sent_at_reset: self.sent.sum(), ..Table::default() };
        for l in &self.lines {
            l.reset();
        }
    }

    /// VM_IOAPIC_PINCOUNT.
    pub fn pincount(&self) -> i32 {
        PINS as i32
    }

    pub fn stats(&self) -> IoapicStats {
        let t = self.table.lock();
        let s = t.stats;
        IoapicStats {
            interrupts: self.sent.sum().wrapping_sub(t.sent_at_reset),
            saturate_high: s.saturate_high,
            saturate_low: s.saturate_low,
            rte_writes: s.rte_writes,
            tmr_updates: s.tmr_updates,
            tmr_block_runs: s.tmr_block_runs,
            tmr_stagings: s.tmr_stagings,
            deferred_sends: self.lines.iter().map(PinLine::deferred).sum(),
        }
    }

    /// The 64-bit entry of `pin` (tests, debugging).
    pub fn rte(&self, pin: usize) -> u64 {
        self.table.lock().pins[pin].reg
    }

    /// The assert count of `pin`.
    pub fn assert_count(&self, pin: usize) -> u32 {
        self.lines[pin].count()
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
