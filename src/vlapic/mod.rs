//! The virtual local APIC of one vCPU (FreeBSD / illumos `vlapic.c`).
//!
//! # Locking
//!
//! All state of one APIC (registers, IRR/ISR/TMR, timer, staged TMR
//! changes, pending NMI/ExtINT/SIPI) sits behind one mutex, the *vlapic
//! mutex* (`Vlapic::state`). Rank (see the crate lock order in `vm.rs`):
//! below the VM-level locks, the vioapic locks and the vCPU mutex; above
//! the vCPU register mutex. So code holding a vCPU mutex or the vioapic
//! table mutex may take a vlapic mutex, never the reverse, and:
//!
//! - no other vlapic mutex, vCPU mutex or vioapic lock is taken while a
//!   vlapic mutex is held (at most one vlapic mutex is held at a time);
//! - nothing is notified or kicked under it: operations return whether the
//!   vCPU needs a notification, and what else must happen (an EOI for the
//!   vioapic, an IPI to deliver) as [`LapicEffects`], for the caller to do
//!   after the method has returned and the lock is gone.
//!
//! One thing is read without the mutex: a copy of IRR and TMR that the
//! mutex's holder republishes as it releases it (`pending`), so an
//! interrupt that merges into an already pending vector takes no lock.
//!
//! Cross-vCPU work (destination resolution, IPI and MSI delivery) is in
//! [`delivery`], on the VM.

mod access;
pub mod delivery;
pub mod icr;
mod pending;
pub mod regs;
mod state;
pub mod timer;

#[cfg(all(test, not(loom)))]
mod tests;

use std::time::Instant;

use crate::error::Result;
use crate::sync::Mutex;

use pending::{Locked, PendingCopy};

pub use icr::{Ipi, UnhandledIpi};
pub use regs::VecBitmap;
pub use state::{LapicEffects, LapicState, X2ApicState};

/// A vCPU's local APIC.
#[derive(Debug)]
pub struct Vlapic {
    vcpuid: usize,
    /// The vlapic mutex. Protects: every register and all APIC-side
    /// interrupt state of this vCPU. Rank: below the vCPU mutex, above the
    /// vCPU register mutex; held only for the duration of one method.
    state: Mutex<LapicState>,
    /// IRR and TMR as the last method under the vlapic mutex left them
    /// (atomics, written under that mutex; see `pending`).
    pending: PendingCopy,
}

/// What a guest entry injects from the local APIC's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// An ExtINT: the vector comes from the 8259.
    ExtInt,
    /// A vector the APIC accepted.
    Vector(u8),
}

impl Vlapic {
    /// The APIC of `vcpuid` (APIC ID = vCPU id), in its reset state.
    pub fn new(vcpuid: usize) -> Self {
        Vlapic { vcpuid, state: Mutex::new(LapicState::new(vcpuid)), pending: PendingCopy::default() }
    }

    /// Takes the vlapic mutex; IRR and TMR are republished on release.
    fn lock(&self) -> Locked<'_> {
        Locked::new(self.state.lock(), &self.pending)
    }

    pub fn vcpuid(&self) -> usize {
        self.vcpuid
    }

    /// A copy of the whole state (tests, snapshots).
    pub fn snapshot(&self) -> LapicState {
        self.lock().clone()
    }

    // --- register access ------------------------------------------------

    /// xAPIC MMIO read at page offset `offset` (16-byte aligned). Reads 0
    /// in x2APIC mode, where the MMIO page is not decoded.
    pub fn mmio_read(&self, offset: u32, now: Instant) -> u32 {
        let s = self.lock();
        if s.x2apic() {
            return 0;
        }
        s.read_reg(offset, now)
    }

    /// xAPIC MMIO write at page offset `offset` (16-byte aligned, 4 bytes).
    /// Ignored in x2APIC mode.
    pub fn mmio_write(&self, offset: u32, val: u32, now: Instant) -> LapicEffects {
        let mut s = self.lock();
        if s.x2apic() {
            return LapicEffects::default();
        }
        s.write_reg(offset, u64::from(val), now)
    }

    /// x2APIC MSR (or IA32_APIC_BASE) read; `None` means #GP.
    pub fn read_msr(&self, msr: u32, now: Instant) -> Option<u64> {
        self.lock().read_msr(msr, now)
    }

    /// x2APIC MSR (or IA32_APIC_BASE) write; `None` means #GP.
    pub fn write_msr(&self, msr: u32, val: u64, now: Instant) -> Option<LapicEffects> {
        self.lock().write_msr(msr, val, now)
    }

    // --- interrupt acceptance and injection ------------------------------

    /// Accept `vector` into IRR with its trigger mode; returns whether the
    /// vCPU needs a notification (the caller sends it).
    /// A vector already pending with the same trigger mode merges without
    /// the mutex.
    #[inline(always)]
    pub fn set_intr_ready(&self, vector: u8, level: bool) -> bool {
        if self.pending.merges(vector, level) {
            return false;
        }
        self.set_intr_ready_locked(vector, level)
    }

    /// `set_intr_ready` for a sender that made a successful sequentially
    /// consistent read-modify-write earlier in program order (the IOAPIC's
    /// edge send, after its assert count): on x86-64 the merge needs no
    /// barrier of its own (see `pending`).
    #[inline(always)]
    pub(crate) fn set_intr_ready_after_rmw(&self, vector: u8, level: bool) -> bool {
        if self.pending.merges_after_rmw(vector, level) {
            return false;
        }
        self.set_intr_ready_locked(vector, level)
    }

    #[inline(never)]
    fn set_intr_ready_locked(&self, vector: u8, level: bool) -> bool {
        self.lock().set_intr_ready(vector, level)
    }

    /// The vector to inject next, if one beats PPR.
    pub fn pending_intr(&self) -> Option<u8> {
        self.lock().pending_intr()
    }

    /// What the next guest entry injects, taken in one step under the
    /// vlapic mutex: a pending ExtINT (whose vector the 8259 gives) goes
    /// first, as in FreeBSD's `vmx_inject_interrupts`; else the highest
    /// deliverable vector, accepted (IRR -> ISR).
    pub fn take_injection(&self) -> Option<Injection> {
        let mut s = self.lock();
        if s.take_extint() {
            return Some(Injection::ExtInt);
        }
        let v = s.pending_intr()?;
        s.intr_accepted(v);
        Some(Injection::Vector(v))
    }

    /// Takes the highest deliverable vector (IRR -> ISR), leaving any
    /// pending ExtINT alone (tests; guest entries use `take_injection`).
    #[cfg(test)]
    pub fn accept_pending_intr(&self) -> Option<u8> {
        let mut s = self.lock();
        let v = s.pending_intr()?;
        s.intr_accepted(v);
        Some(v)
    }

    /// The guest took `vector`: IRR -> ISR, PPR updated.
    pub fn intr_accepted(&self, vector: u8) {
        self.lock().intr_accepted(vector)
    }

    /// An EOI (what a write to the EOI register does). Returns the retired
    /// vector if it was level-triggered: the caller runs the vioapic EOI.
    pub fn eoi(&self) -> Option<u8> {
        self.lock().process_eoi()
    }

    /// Whether HLT (with interrupts enabled) should end: a deliverable
    /// vector, an ExtINT or an NMI.
    pub fn has_pending_event(&self) -> bool {
        self.lock().has_pending_event()
    }

    pub fn irr(&self) -> VecBitmap {
        self.lock().irr
    }

    pub fn isr(&self) -> VecBitmap {
        self.lock().isr
    }

    pub fn tmr(&self) -> VecBitmap {
        self.lock().tmr
    }

    /// The task priority as CR8 sees it (TPR bits 7:4; FreeBSD
    /// `vlapic_get_cr8`).
    pub fn cr8(&self) -> u64 {
        u64::from(self.lock().tpr >> 4)
    }

    pub fn ppr(&self) -> u32 {
        self.lock().ppr()
    }

    // --- TMR staging (vioapic RTE write path) ---------------------------

    /// Stage a TMR change. Called by an RTE writer while this vCPU is kept
    /// out of RUNNING (or by the vCPU itself).
    pub fn stage_tmr(&self, vector: u8, level: bool) {
        self.lock().stage_tmr(vector, level)
    }

    /// Apply staged TMR changes; the owning vCPU calls it on entry to
    /// RUNNING, before injecting anything. Vectors in IRR or ISR keep
    /// their acceptance-time bit and stay staged until they have left both.
    pub fn apply_staged_tmr(&self) {
        self.lock().apply_staged_tmr()
    }

    /// Staged (set, clear) vectors not yet applied.
    pub fn staged_tmr(&self) -> (VecBitmap, VecBitmap) {
        self.lock().staged_tmr()
    }

    // --- timer ----------------------------------------------------------

    /// When the timer next expires (for a HLT sleep), if it is running.
    pub fn timer_deadline(&self) -> Option<Instant> {
        self.lock().timer.deadline()
    }

    /// Fire the timer if it has expired by `now` (timer LVT into IRR,
    /// periodic re-armed). Returns whether the vCPU needs a notification.
    pub fn timer_poll(&self, now: Instant) -> bool {
        self.lock().timer_poll(now)
    }

    /// The statistics this APIC keeps, read together for VM_STATS.
    /// INIT leaves them; VM_REINIT zeroes them (as FreeBSD's vCPU stats).
    pub fn counts(&self) -> crate::stats::LapicCounts {
        let s = self.lock();
        crate::stats::LapicCounts {
            timer: s.timer.fired,
            error: s.error_interrupts,
            gratuitous_eoi: s.gratuitous_eoi,
            lvts: s.lvts_triggered,
        }
    }

    // --- local interrupts, NMI, ExtINT, INIT/SIPI -------------------------

    /// VM_LAPIC_LOCAL_IRQ on this APIC (`lvt` is an LVT index); returns
    /// whether the vCPU needs a notification.
    pub fn trigger_lvt(&self, lvt: i32) -> Result<bool> {
        self.lock().trigger_lvt(lvt)
    }

    /// Make an NMI pending; returns true (the vCPU needs a notification).
    pub fn inject_nmi(&self) -> bool {
        self.lock().inject_nmi()
    }

    /// Take the pending NMI, if any.
    pub fn take_nmi(&self) -> bool {
        self.lock().take_nmi()
    }

    pub fn nmi_pending(&self) -> bool {
        self.lock().nmi_pending()
    }

    /// Make an ExtINT pending; returns true (the vCPU needs a
    /// notification).
    pub fn inject_extint(&self) -> bool {
        self.lock().inject_extint()
    }

    /// Take the pending ExtINT, if any.
    pub fn take_extint(&self) -> bool {
        self.lock().take_extint()
    }

    pub fn extint_pending(&self) -> bool {
        self.lock().extint_pending()
    }

    /// INIT IPI: APIC reset.
    pub fn init_ipi(&self) {
        self.lock().init_ipi()
    }

    // --- mode and reset ---------------------------------------------------

    pub fn x2apic_state(&self) -> X2ApicState {
        if self.lock().x2apic() {
            X2ApicState::Enabled
        } else {
            X2ApicState::Disabled
        }
    }

    pub fn set_x2apic_state(&self, state: X2ApicState) {
        self.lock().set_x2apic(state == X2ApicState::Enabled)
    }

    /// (LDR, DFR, x2APIC mode) for logical destination matching.
    pub fn logical_id(&self) -> (u32, u32, bool) {
        self.lock().logical_id()
    }

    /// VM_REINIT: a new VM's APIC (xAPIC mode, reset, nothing pending).
    pub fn reinit(&self) {
        self.lock().reinit()
    }
}
