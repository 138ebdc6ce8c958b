//! HLT in the run loop: FreeBSD's `vm_handle_hlt` after a HLT exit, and
//! the wait of a guest that sits in its HLT state (no VM_CAP_HALT_EXIT).

use std::time::Instant;

use crate::error::Result;
use crate::exit::SuspendHow;
use crate::regs::{reg, CAP_MASK_HWINTR, RFLAGS_IF};
use crate::stats::Stat;
use crate::vcpu::{Vcpu, VcpuState};
use crate::vm::Vm;

/// How a vCPU came to be in HLT.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hlt {
    /// HLT exited (VM_CAP_HALT_EXIT), with the guest's interrupt flag then.
    Exited { intr_enabled: bool },
    /// The guest sits in its HLT activity state (no exit).
    InGuest,
}

impl Vm {
    /// `vm_handle_hlt`: sleep (SLEEPING) until an NMI, or with interrupts
    /// enabled a deliverable interrupt, is pending, the vCPU is notified
    /// for a reason the run loop must look at, or the VM suspends. When
    /// every active vCPU has halted with interrupts disabled and no NMI
    /// pending, nothing can wake them: suspend the VM (VM_SUSPEND_HALT).
    pub(super) fn handle_hlt(&self, id: usize, intr_enabled: bool) -> Result<()> {
        let vcpu = self.vcpu(id)?;
        // What ends the HLT at once, checked before the vCPU counts as
        // halted (FreeBSD `vm_handle_hlt`): a VM_SUSPEND_CPU, reqidle or
        // rendezvous landing between the guest's HLT and here must not
        // suspend a VM whose other vCPUs are all halted.
        if vcpu.vlapic.nmi_pending() || vcpu.lock().reqidle || self.pending_for_sleeper(id) {
            return Ok(());
        }
        if !intr_enabled {
            let all_halted = {
                let mut c = self.cpus();
                c.halted.insert(id);
                c.active.is_subset(&c.halted)
            };
            if all_halted {
                let _ = self.suspend(SuspendHow::Halt as i32);
            }
        }
        self.sleep_in_hlt(vcpu, id, Hlt::Exited { intr_enabled })?;
        if !intr_enabled {
            self.cpus().halted.remove(id);
        }
        Ok(())
    }

    /// Sleeps (SLEEPING) in a HLT until an event ends it or the run loop
    /// must look at something: true when an event ends the HLT, false for
    /// reqidle, a VM-wide reason or destroy.
    pub(super) fn sleep_in_hlt(&self, vcpu: &Vcpu, id: usize, hlt: Hlt) -> Result<bool> {
        loop {
            // The RTC and HPET may raise interrupts and notify a vCPU
            // (this one too): not under our vCPU mutex.
            let now = Instant::now();
            self.poll_device_timers(now);
            let g = vcpu.lock();
            vcpu.vlapic.timer_poll(now);
            if self.hlt_ends(vcpu, hlt) {
                return Ok(true);
            }
            if g.reqidle || self.pending_for_sleeper(id) || self.is_destroyed() {
                return Ok(false);
            }
            let g = vcpu.set_state_locked(g, VcpuState::Sleeping, false)?;
            // Wake for the earliest of the APIC timer and the devices'.
            let deadline = [vcpu.vlapic.timer_deadline(), self.device_timer_deadline()].into_iter().flatten().min();
            let g = match deadline {
                Some(deadline) => vcpu.wait_until(g, deadline),
                None => vcpu.wait(g),
            };
            if let Hlt::Exited { .. } = hlt {
                // FreeBSD counts idle time in `vm_handle_hlt` only.
                vcpu.stats.add(Stat::IdleTicks, now.elapsed().as_nanos() as u64);
            }
            debug_assert_eq!(g.state, VcpuState::Sleeping, "vCPU {id}: state changed under its sleeping owner");
            drop(vcpu.set_state_locked(g, VcpuState::Frozen, false)?);
        }
    }

    /// Whether an event ends the HLT now. After a HLT exit, as FreeBSD's
    /// `vm_handle_hlt`: an NMI, or with the interrupt flag the guest had a
    /// pending interrupt. In the guest's HLT state, what the next entry
    /// would inject: a queued exception or interrupted event, an NMI, or
    /// with RFLAGS.IF set now (userland may have set it) an interrupt;
    /// nothing at all under VM_CAP_MASK_HWINTR, which injects nothing (so
    /// the guest stays halted, as on VMX).
    pub(super) fn hlt_ends(&self, vcpu: &Vcpu, hlt: Hlt) -> bool {
        let intr_enabled = match hlt {
            Hlt::Exited { intr_enabled } => intr_enabled,
            Hlt::InGuest => {
                let r = vcpu.regs.lock();
                if r.get_cap(CAP_MASK_HWINTR) == Ok(1) {
                    return false;
                }
                if r.event_queued() {
                    return true;
                }
                r.get(reg::RFLAGS as i32).unwrap_or(0) & RFLAGS_IF != 0
            }
        };
        vcpu.vlapic.nmi_pending() || (intr_enabled && vcpu.vlapic.has_pending_event())
    }
}
