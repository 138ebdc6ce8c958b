//! The VM's interrupt-controller entry points: what the ioctls
//! (VM_IOAPIC_*, VM_LAPIC_*, VM_INJECT_NMI, VM_GET/SET_X2APIC_STATE,
//! VM_GET/SET_KERNEMU_DEV; VM_ISA_* in `atpic`) and the run loop's MMIO handling call,
//! and the VM side of the vioapic ([`IoapicBus`]).
//!
//! Locking: none of these holds a lock across calls into another
//! component, but the HPET and the 8259 (VM_ISA_*, their ports), which
//! hold their own mutex while they raise interrupts (the crate lock order
//! in `vm.rs` ranks them first); vlapic effects (notification, vioapic
//! EOI, IPI) are carried out after the vlapic mutex is released.

#[cfg(all(test, not(loom)))]
mod chaos_tests;
#[cfg(all(test, not(loom)))]
mod deadlock_tests;
#[cfg(all(test, not(loom)))]
mod fuzz_tests;
#[cfg(all(test, not(loom)))]
mod model_tests;
mod atpic;
mod hpet;
mod ioport;
mod msr;
mod rtc;
#[cfg(all(test, not(loom)))]
mod run_tests;
#[cfg(all(test, not(loom)))]
mod tests;

use std::time::Instant;

use crate::cpuset::CpuSet;
use crate::error::{Error, Result};
use crate::vioapic::{IoapicBus, IoapicStats, IOAPIC_BASE, IOAPIC_SIZE};
use crate::vlapic::regs::{DELMODE_FIXED, DELMODE_LOWPRIO, LAPIC_BASE, LAPIC_SIZE};
use crate::vlapic::delivery::StartIpi;
use crate::vlapic::{LapicEffects, X2ApicState};
use crate::vm::Vm;

impl IoapicBus for Vm {
    #[inline(always)]
    fn deliver(&self, level: bool, dest: u8, phys: bool, delmode: u32, vector: u8) {
        self.deliver_intr(level, u32::from(dest), phys, delmode, vector);
    }

    #[inline(always)]
    fn deliver_after_rmw(&self, level: bool, dest: u8, phys: bool, delmode: u32, vector: u8) {
        self.deliver_intr_after_rmw(level, u32::from(dest), phys, delmode, vector);
    }

    fn tmr_targets(&self, dest: u8, phys: bool, delmode: u32) -> CpuSet {
        match delmode {
            DELMODE_FIXED | DELMODE_LOWPRIO => {
                self.calcdest(u32::from(dest), phys, delmode == DELMODE_LOWPRIO, false)
            }
            _ => CpuSet::new(),
        }
    }

    fn before_block_runs(&self, targets: CpuSet) -> Result<crate::peer_wait::PeerWait> {
        crate::peer_wait::begin(self, crate::peer_wait::PeerWaits::Running(targets))
    }

    fn block_run(&self, id: usize) {
        self.vcpus()[id].block_run();
    }

    fn unblock_run(&self, id: usize) {
        self.vcpus()[id].unblock_run();
    }

    fn stage_tmr(&self, id: usize, vector: u8, level: bool) {
        self.vcpus()[id].vlapic.stage_tmr(vector, level);
    }

    fn legacy_protocol(&self) -> bool {
        Vm::legacy_protocol(self)
    }

    fn rendezvous_stage_tmr(&self, writer: Option<usize>, ops: Vec<(usize, Option<u8>, Option<u8>)>) {
        let stage = move |vm: &Vm, id: usize| {
            for (_, clear, set) in ops.iter().filter(|op| op.0 == id) {
                let vlapic = &vm.vcpus()[id].vlapic;
                if let Some(v) = clear {
                    vlapic.stage_tmr(*v, false);
                }
                if let Some(v) = set {
                    vlapic.stage_tmr(*v, true);
                }
            }
        };
        // As in 2019: every active vCPU, and wait for all of them.
        let _ = self.smp_rendezvous(writer, self.active_cpus(), crate::rendezvous::callback(stage));
    }
}

impl Vm {
    // --- vioapic ioctls ----------------------------------------------------

    /// VM_IOAPIC_ASSERT_IRQ: EINVAL (pin), E2BIG (count saturated).
    #[inline(always)]
    pub fn ioapic_assert_irq(&self, pin: i32) -> Result<()> {
        self.vioapic().assert_irq(pin, self)
    }

    /// VM_IOAPIC_DEASSERT_IRQ: EINVAL (pin), ERANGE (count already 0).
    #[inline(always)]
    pub fn ioapic_deassert_irq(&self, pin: i32) -> Result<()> {
        self.vioapic().deassert_irq(pin, self)
    }

    /// VM_IOAPIC_PULSE_IRQ.
    pub fn ioapic_pulse_irq(&self, pin: i32) -> Result<()> {
        self.vioapic().pulse_irq(pin, self)
    }

    /// VM_IOAPIC_PINCOUNT.
    pub fn ioapic_pincount(&self) -> i32 {
        self.vioapic().pincount()
    }

    pub fn ioapic_stats(&self) -> IoapicStats {
        self.vioapic().stats()
    }

    // --- vlapic ioctls -----------------------------------------------------

    /// VM_LAPIC_IRQ: a fixed, edge-triggered `vector` to vCPU `vcpuid`.
    /// EINVAL for a bad vCPU or a vector outside 16..=255.
    pub fn lapic_irq(&self, vcpuid: i32, vector: i32) -> Result<()> {
        let id = self.vcpu_id(vcpuid)?;
        let vector = u32::try_from(vector).map_err(|_| Error::Inval)?;
        self.lapic_set_intr(id, vector, false)
    }

    /// VM_LAPIC_LOCAL_IRQ: raise LVT index `lvt` (0 LINT0, 1 LINT1, 2 timer,
    /// 3 error, 4 perf, 5 thermal, 6 CMCI) on vCPU `vcpuid`, or on every
    /// active vCPU with -1 (stopping at the first error).
    pub fn lapic_local_irq(&self, vcpuid: i32, lvt: i32) -> Result<()> {
        let targets =
            if vcpuid == -1 { self.active_cpus() } else { CpuSet::single(self.vcpu_id(vcpuid)?) };
        for id in targets.iter() {
            let vcpu = self.vcpu(id)?;
            if vcpu.vlapic.trigger_lvt(lvt)? {
                vcpu.notify();
            }
        }
        Ok(())
    }

    /// VM_INJECT_NMI.
    pub fn inject_nmi(&self, vcpuid: i32) -> Result<()> {
        self.vcpu_inject_nmi(self.vcpu_id(vcpuid)?)
    }

    /// VM_GET_X2APIC_STATE.
    pub fn get_x2apic_state(&self, vcpuid: i32) -> Result<X2ApicState> {
        Ok(self.vcpu(self.vcpu_id(vcpuid)?)?.vlapic.x2apic_state())
    }

    /// VM_SET_X2APIC_STATE (the caller holds the vCPU): EINVAL unless
    /// `state` is X2APIC_DISABLED (0) or X2APIC_ENABLED (1).
    pub fn set_x2apic_state(&self, vcpuid: i32, state: i32) -> Result<()> {
        let vcpu = self.vcpu(self.vcpu_id(vcpuid)?)?;
        let state = X2ApicState::from_raw(state).ok_or(Error::Inval)?;
        vcpu.vlapic.set_x2apic_state(state);
        Ok(())
    }

    // --- MMIO (guest exits and VM_GET/SET_KERNEMU_DEV) ----------------------

    /// Reads the emulated register at `gpa` for vCPU `vcpuid`: the vioapic
    /// window (0xFEC00000, 4 KiB), the HPET (0xFED00000, 1 KiB) or that
    /// vCPU's local APIC page (0xFEE00000). `Ok(None)` when the library does not emulate `gpa`.
    /// Local APIC reads must be 16-byte aligned once the low two bits are
    /// dropped (EINVAL otherwise, as FreeBSD `lapic_mmio_read`).
    pub fn mmio_read(&self, vcpuid: usize, gpa: u64, size: u8) -> Result<Option<u64>> {
        let vcpu = self.vcpu(vcpuid)?;
        if (IOAPIC_BASE..IOAPIC_BASE + IOAPIC_SIZE).contains(&gpa) {
            return Ok(Some(u64::from(self.vioapic().mmio_read(gpa - IOAPIC_BASE, size))));
        }
        if Self::is_hpet_gpa(gpa) {
            return Ok(Some(self.hpet_mmio_read(gpa, size)));
        }
        if (LAPIC_BASE..LAPIC_BASE + LAPIC_SIZE).contains(&gpa) {
            let off = (gpa - LAPIC_BASE) & !3;
            if off & 0xF != 0 {
                return Err(Error::Inval);
            }
            return Ok(Some(u64::from(vcpu.vlapic.mmio_read(off as u32, Instant::now()))));
        }
        Ok(None)
    }

    /// Writes the emulated register at `gpa` as vCPU `vcpuid` would, from
    /// the thread that holds that vCPU (RUNNING or FROZEN: the RTE write
    /// path neither blocks nor waits for its writer): the vioapic (the
    /// RTE write path with `vcpuid` as the writer), the HPET,
    /// or the vCPU's local APIC (EOI reaches the vioapic, ICR sends IPIs). Local
    /// APIC writes must be 4 bytes at a 16-byte boundary (EINVAL, as
    /// FreeBSD `lapic_mmio_write`). `Ok(None)` when `gpa` is not emulated.
    /// EPERM for a valid ICR write of an SMI or remote-read IPI, which the
    /// APIC stores but cannot deliver (FreeBSD's `lapic_mmio_write` fails
    /// with the handler's 1, errno 1 once it reaches userland).
    /// EDEADLK if an RTE write's wait for other vCPUs would close a cycle
    /// through the caller's guest callback (`peer_wait`): nothing changed.
    /// An INIT or STARTUP IPI sent by such a write needs the run loop
    /// (FreeBSD's `vm_handle_ipi`): outside it, as for FreeBSD's kernemu
    /// ioctls, it has no effect.
    pub fn mmio_write(&self, vcpuid: usize, gpa: u64, size: u8, value: u64) -> Result<Option<()>> {
        Ok(self.guest_mmio_write(vcpuid, gpa, size, value)?.map(drop))
    }

    /// [`Vm::mmio_write`] from the run loop: `Some(start IPI)` inside the
    /// `Some` when the write sent an INIT or STARTUP IPI.
    pub(crate) fn guest_mmio_write(
        &self,
        vcpuid: usize,
        gpa: u64,
        size: u8,
        value: u64,
    ) -> Result<Option<Option<StartIpi>>> {
        let vcpu = self.vcpu(vcpuid)?;
        if (IOAPIC_BASE..IOAPIC_BASE + IOAPIC_SIZE).contains(&gpa) {
            self.vioapic().mmio_write(Some(vcpuid), gpa - IOAPIC_BASE, size, value as u32, self)?;
            return Ok(Some(None));
        }
        if Self::is_hpet_gpa(gpa) {
            self.hpet_mmio_write(gpa, size, value);
            return Ok(Some(None));
        }
        if (LAPIC_BASE..LAPIC_BASE + LAPIC_SIZE).contains(&gpa) {
            let off = gpa - LAPIC_BASE;
            if size != 4 || off & 0xF != 0 {
                return Err(Error::Inval);
            }
            let fx = vcpu.vlapic.mmio_write(off as u32, value as u32, Instant::now());
            return Ok(Some(self.apply_lapic_effects(vcpuid, fx)?));
        }
        Ok(None)
    }

    /// A vioapic window write from a thread that is not a vCPU's (one that
    /// holds a vCPU uses `mmio_write`: an RTE write here would wait for
    /// every target, its own vCPU included, to leave RUNNING).
    pub fn ioapic_mmio_write_nonvcpu(&self, gpa: u64, size: u8, value: u32) -> Result<()> {
        if !(IOAPIC_BASE..IOAPIC_BASE + IOAPIC_SIZE).contains(&gpa) {
            return Err(Error::Inval);
        }
        self.vioapic().mmio_write(None, gpa - IOAPIC_BASE, size, value, self)
    }

    /// RDMSR of IA32_APIC_BASE or an x2APIC register; EINVAL stands for
    /// #GP (not an APIC MSR, or an x2APIC MSR in xAPIC mode).
    pub fn lapic_rdmsr(&self, vcpuid: usize, msr: u32) -> Result<u64> {
        let vcpu = self.vcpu(vcpuid)?;
        vcpu.vlapic.read_msr(msr, Instant::now()).ok_or(Error::Inval)
    }

    /// WRMSR of IA32_APIC_BASE or an x2APIC register; EINVAL stands for
    /// #GP. EPERM for a valid x2APIC ICR write of an SMI or remote-read
    /// IPI, stored but not delivered: FreeBSD's `lapic_wrmsr` fails it,
    /// and the guest's WRMSR is userland's (`Vm::guest_wrmsr`).
    pub fn lapic_wrmsr(&self, vcpuid: usize, msr: u32, value: u64) -> Result<()> {
        // An INIT or STARTUP sent by an x2APIC ICR write outside the run
        // loop has no effect (see `mmio_write`).
        self.guest_lapic_wrmsr(vcpuid, msr, value).map(drop)
    }

    /// [`Vm::lapic_wrmsr`] from the guest in the run loop: also returns an
    /// INIT or STARTUP IPI an x2APIC ICR write sent.
    pub(crate) fn guest_lapic_wrmsr(&self, vcpuid: usize, msr: u32, value: u64) -> Result<Option<StartIpi>> {
        let vcpu = self.vcpu(vcpuid)?;
        let fx = vcpu.vlapic.write_msr(msr, value, Instant::now()).ok_or(Error::Inval)?;
        self.apply_lapic_effects(vcpuid, fx)
    }

    /// Carries out what a register write of vCPU `id`'s APIC asked for,
    /// with no vlapic mutex held.
    /// Returns an INIT or STARTUP IPI it sent, for the run loop; EPERM for
    /// an ICR write the APIC has no delivery for (`UnhandledIpi`).
    fn apply_lapic_effects(&self, id: usize, fx: LapicEffects) -> Result<Option<StartIpi>> {
        if fx.notify {
            self.vcpus()[id].notify();
        }
        // The callout thread fires APIC timers too.
        if fx.timer_armed {
            self.callout_waker().poke();
        }
        if let Some(v) = fx.eoi_vector {
            self.vioapic().process_eoi(v, self);
        }
        if fx.unhandled_ipi.is_some() {
            return Err(Error::Perm);
        }
        Ok(fx.ipi.and_then(|ipi| self.send_ipi(id, ipi)))
    }

    // --- inspection ---------------------------------------------------------

    /// vCPU `vcpuid`'s TMR as the eight 32-bit APIC words.
    pub fn tmr_snapshot(&self, vcpuid: usize) -> Result<[u32; 8]> {
        Ok(self.vcpu(vcpuid)?.vlapic.tmr().words())
    }

    pub fn irr_snapshot(&self, vcpuid: usize) -> Result<[u32; 8]> {
        Ok(self.vcpu(vcpuid)?.vlapic.irr().words())
    }

    pub fn isr_snapshot(&self, vcpuid: usize) -> Result<[u32; 8]> {
        Ok(self.vcpu(vcpuid)?.vlapic.isr().words())
    }

    /// Resets the interrupt controllers to a new VM's state (VM_REINIT).
    pub(crate) fn reset_interrupt_controllers(&self) {
        self.vatpic().reset();
        self.vioapic().reset();
        for v in self.vcpus() {
            v.vlapic.reinit();
        }
    }
}

/// Whether vector `v` is set in a TMR/IRR/ISR snapshot.
pub fn snapshot_has(words: &[u32; 8], v: u8) -> bool {
    words[usize::from(v / 32)] & (1 << (v % 32)) != 0
}
