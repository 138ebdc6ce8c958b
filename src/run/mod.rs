//! The run loop of FreeBSD `vm_run`: before-entry checks, guest entry
//! through the backend, and the exits handled inside the library.

mod cpuid;
mod hlt;
mod ram;

use std::time::Instant;

use crate::backend::GuestExit;
use crate::error::{Error, Result};
use crate::exit::{ExitKind, SuspendHow, VmExit};
use crate::regs::{reg, EntryEvent, MsrAccess, CAP_HALT_EXIT, CAP_MASK_HWINTR, IDT_GP, IDT_UD};
use crate::stats::Stat;
use crate::vcpu::{Vcpu, VcpuState};
use crate::vlapic::Injection;
use crate::vm::{VcpuLock, Vm};
use hlt::Hlt;

/// What the entry work found.
enum Entry {
    /// Enter the guest (an event may have been injected).
    Go,
    /// The guest is in its HLT state (no VM_CAP_HALT_EXIT): no entry
    /// until an event ends it.
    Halted,
    /// A nested fault became a triple fault and suspended the VM.
    TripleFault,
}

/// How a vCPU's wait for the others to acknowledge a suspend ended.
enum SuspendWait {
    /// Every active vCPU has acknowledged: VM_EXITCODE_SUSPENDED.
    AllSuspended,
    /// An ioctl wants the vCPU: it withdrew its acknowledgement.
    ReqIdle,
}

/// What the before-entry checks found.
enum Pending {
    Suspend(SuspendHow),
    Debug,
    Rendezvous,
    ReqIdle,
}

impl Vm {
    /// VM_RUN for the vCPU held by `lock`: runs the guest until an exit the
    /// caller must see. EINVAL if the vCPU is not active or has already
    /// acknowledged a suspend.
    pub fn run(&self, lock: &VcpuLock<'_>) -> Result<VmExit> {
        {
            let c = self.cpus();
            if !c.active.contains(lock.id()) || c.suspended.contains(lock.id()) {
                return Err(Error::Inval);
            }
        }
        // Every return from the loop goes to userland, errors included
        // (FreeBSD counts VMEXIT_USERSPACE the same way).
        let r = self.run_loop(lock);
        lock.vcpu().stats.add(Stat::Userspace, 1);
        r
    }

    fn run_loop(&self, lock: &VcpuLock<'_>) -> Result<VmExit> {
        let id = lock.id();
        let vcpu = lock.vcpu();
        loop {
            self.check_alive()?;
            // Enter RUNNING first (waiting out any runblock), then look at
            // what other threads posted: a notification sent before we were
            // RUNNING finds its condition here, one sent after kicks us.
            vcpu.set_state(VcpuState::Running, false)?;
            // Staged TMR changes take effect on every entry to RUNNING,
            // before anything is injected (semantics.md section 1).
            vcpu.vlapic.apply_staged_tmr();
            if let Some(p) = self.pending_for(id) {
                vcpu.set_state(VcpuState::Frozen, false)?;
                // The guest is at `nextrip`, and RIP says so (FreeBSD's
                // `vmx_run` writes it before these checks): a debugger
                // reading RIP after a DEBUG exit, or restarting the
                // instruction, must not see the finished one.
                let rip = {
                    let mut r = vcpu.regs.lock();
                    let rip = r.nextrip;
                    r.set(reg::RIP as i32, rip)?;
                    rip
                };
                let exit = |kind| VmExit { kind, rip, inst_length: 0 };
                let reqidle_exit = || {
                    vcpu.stats.add(Stat::ReqIdle, 1);
                    vcpu.take_reqidle();
                    Ok(exit(ExitKind::ReqIdle))
                };
                match p {
                    Pending::Suspend(how) => match self.handle_suspend(id)? {
                        SuspendWait::AllSuspended => return Ok(exit(ExitKind::Suspended(how))),
                        SuspendWait::ReqIdle => return reqidle_exit(),
                    },
                    Pending::Debug => return Ok(exit(ExitKind::Debug)),
                    Pending::Rendezvous => {
                        vcpu.stats.add(Stat::Rendezvous, 1);
                        self.handle_rendezvous(Some(id))?;
                        continue;
                    }
                    Pending::ReqIdle => return reqidle_exit(),
                }
            }
            let (gexit, rip, len) = match self.prepare_guest_entry(vcpu) {
                Entry::Go => {
                    let rip = vcpu.regs.lock().nextrip;
                    let ran = self.backend().run(vcpu, self, rip);
                    vcpu.set_state(VcpuState::Frozen, false)?;
                    ran
                }
                Entry::TripleFault => {
                    // The VM is suspended: the checks above see it.
                    vcpu.set_state(VcpuState::Frozen, false)?;
                    continue;
                }
                Entry::Halted => {
                    // The guest halted without an exit (no VM_CAP_HALT_EXIT):
                    // it stays in HLT until an event it takes (an NMI, an
                    // interrupt it accepts, a queued exception), across any
                    // exits to userland meanwhile. Then the next entry
                    // injects what ended it.
                    vcpu.set_state(VcpuState::Frozen, false)?;
                    let ends = self.hlt_ends(vcpu, Hlt::InGuest);
                    let stepping = vcpu.regs.lock().stepping();
                    match stepping {
                        // A debugger stepping a halted guest: the step's
                        // exit comes at once, the guest still in HLT (as
                        // VMX delivers a pending MTF exit in the HLT
                        // state), so that a step over HLT returns.
                        Some(step) if !ends => (GuestExit::from(step), vcpu.regs.lock().nextrip, 0),
                        _ => {
                            if ends || self.sleep_in_hlt(vcpu, id, Hlt::InGuest)? {
                                vcpu.regs.lock().halted = false;
                            }
                            continue;
                        }
                    }
                }
            };
            let is_msr = matches!(gexit, GuestExit::Rdmsr { .. } | GuestExit::Wrmsr { .. });
            let cpl = {
                let mut r = vcpu.regs.lock();
                r.set(reg::RIP as i32, rip)?;
                r.nextrip = rip + u64::from(len);
                // A HLT without VM_CAP_HALT_EXIT is no exit: the guest
                // just enters its HLT activity state.
                if matches!(gexit, GuestExit::Hlt { .. }) && r.get_cap(CAP_HALT_EXIT) != Ok(1) {
                    r.halted = true;
                    continue;
                }
                // Only an MSR access needs the CPL (a paging-state read).
                if is_msr {
                    r.paging().cpl
                } else {
                    0
                }
            };
            // RDMSR and WRMSR at CPL > 0 raise #GP(0) before any VM exit
            // (SDM 26.1.1): on FreeBSD no exit, no handler, no count.
            let msr_gp = is_msr && cpl != 0;
            // An MSR FreeBSD's VMX backend passes through is no exit
            // there (a #GP the processor raises for it neither), so it is
            // counted nowhere.
            let passthrough = msr_gp || match gexit {
                GuestExit::Rdmsr { msr } => crate::regs::msr::vmx_passthrough(msr, false),
                GuestExit::Wrmsr { msr, .. } => crate::regs::msr::vmx_passthrough(msr, true),
                _ => false,
            };
            if !passthrough {
                vcpu.stats.add(Stat::VmExits, 1);
            }
            let kind = match gexit {
                GuestExit::Kicked => Some(Stat::ExtIntExits),
                GuestExit::Hlt { .. } => Some(Stat::Hlt),
                GuestExit::Pause => Some(Stat::Pause),
                GuestExit::Mtrap => Some(Stat::Mtrap),
                GuestExit::Breakpoint | GuestExit::DebugTrap => Some(Stat::Exception),
                GuestExit::Inout { .. } | GuestExit::InoutStr { .. } => Some(Stat::InOut),
                GuestExit::Cpuid => Some(Stat::Cpuid),
                // FreeBSD counts neither (beyond VMEXIT_COUNT).
                GuestExit::TaskSwitch { .. } | GuestExit::Refused => None,
                GuestExit::Rdmsr { .. } => Some(Stat::Rdmsr),
                GuestExit::Wrmsr { .. } => Some(Stat::Wrmsr),
                GuestExit::Mmio(_) => Some(Stat::InstEmul),
                GuestExit::RamFault { .. } => Some(Stat::NestedFault),
                GuestExit::Yield | GuestExit::Bogus => None,
            };
            if let Some(stat) = kind.filter(|_| !passthrough) {
                vcpu.stats.add(stat, 1);
            }
            let exit = |kind| Ok(VmExit { kind, rip, inst_length: len });
            match gexit {
                GuestExit::Kicked | GuestExit::Yield => continue,
                GuestExit::Bogus => return exit(ExitKind::Bogus),
                GuestExit::Pause => return exit(ExitKind::Pause),
                GuestExit::Mtrap => return exit(ExitKind::Mtrap),
                GuestExit::Breakpoint => return exit(ExitKind::Breakpoint),
                GuestExit::DebugTrap => return exit(ExitKind::DebugTrap),
                GuestExit::Inout { port, bytes, is_in, eax } => {
                    // The 8259, PIT, RTC and PM timer ports are emulated
                    // here, as FreeBSD's kernel does (`emulate_inout`).
                    if let Some(r) = self.emulate_inout(port, bytes, is_in, eax) {
                        if let Some(v) = r? {
                            // `in` replaces the access's bytes of EAX; the
                            // upper half of RAX is cleared, as FreeBSD's
                            // 32-bit EAX write does.
                            let mask = match bytes {
                                1 => 0xff,
                                2 => 0xffff,
                                _ => u32::MAX,
                            };
                            let mut r = vcpu.regs.lock();
                            let rax = r.get(crate::regs::reg::RAX as i32)? as u32;
                            r.set(crate::regs::reg::RAX as i32, u64::from((rax & !mask) | (v & mask)))?;
                        }
                        continue;
                    }
                    return exit(ExitKind::Inout { port, bytes, is_in, eax });
                }
                GuestExit::InoutStr { port, bytes, is_in, rep } => {
                    return exit(ExitKind::InoutStr { port, bytes, is_in, rep });
                }
                // The local APIC's MSRs and those VMX keeps or emulates in
                // the kernel are emulated here; a refused one is #GP.
                GuestExit::Rdmsr { .. } | GuestExit::Wrmsr { .. } if msr_gp => self.fault_instruction(vcpu, IDT_GP, Some(0))?,
                GuestExit::Rdmsr { msr } => match self.guest_rdmsr(vcpu, msr) {
                    MsrAccess::Done(v) => self.backend().emulated_read_result(vcpu, v),
                    MsrAccess::Fault => self.fault_instruction(vcpu, IDT_GP, Some(0))?,
                    MsrAccess::Userland => return exit(ExitKind::Rdmsr { msr }),
                },
                GuestExit::Wrmsr { msr, value } => match self.guest_wrmsr(vcpu, msr, value) {
                    (MsrAccess::Done(_), Some(start)) => {
                        if let Some(kind) = self.handle_start_ipi(start) {
                            return exit(kind);
                        }
                    }
                    (MsrAccess::Done(_), None) => {}
                    (MsrAccess::Fault, _) => self.fault_instruction(vcpu, IDT_GP, Some(0))?,
                    (MsrAccess::Userland, _) => return exit(ExitKind::Wrmsr { msr, value }),
                },
                GuestExit::Mmio(a) => {
                    // The local APIC and vioapic are emulated here; other
                    // addresses go to userland.
                    if a.write {
                        let done = self.guest_mmio_write(id, a.gpa, a.size, a.value);
                        if matches!(done, Err(Error::Deadlock)) {
                            // An RTE write refused before it changed
                            // anything (`peer_wait`): the guest makes it
                            // again at its next entry.
                            vcpu.regs.lock().restart_instruction();
                        }
                        // Another error fails VM_RUN past the instruction,
                        // as FreeBSD's `vm_handle_inst_emul` (which moved
                        // `nextrip` on before emulating): EINVAL for a bad
                        // local APIC access, EPERM for an ICR write of an
                        // SMI or remote-read IPI (stored, not delivered).
                        match done? {
                            Some(None) => continue,
                            Some(Some(start)) => match self.handle_start_ipi(start) {
                                Some(kind) => return exit(kind),
                                None => continue,
                            },
                            None => {}
                        }
                    } else if let Some(v) = self.mmio_read(id, a.gpa, a.size)? {
                        self.backend().emulated_read_result(vcpu, v);
                        continue;
                    }
                    return exit(ExitKind::Mmio(a));
                }
                GuestExit::Cpuid => self.guest_cpuid(vcpu),
                GuestExit::Refused => self.fault_instruction(vcpu, IDT_UD, None)?,
                GuestExit::TaskSwitch { ts, delivering } => {
                    // The event a task gate interrupted stays pending in
                    // the exit intinfo (VMX's IDT-vectoring information);
                    // bhyve clears it once it has switched tasks.
                    if let Some(info) = delivering {
                        vcpu.regs.lock().set_exitintinfo(info)?;
                    }
                    return exit(ExitKind::TaskSwitch(ts));
                }
                // FreeBSD's `vm_handle_paging` fails the ioctl; the
                // instruction is still at RIP.
                GuestExit::RamFault { .. } => return Err(Error::Fault),
                GuestExit::Hlt { intr_enabled } => self.handle_hlt(id, intr_enabled)?,
            }
        }
    }

    /// Event work on entry to the guest, one event per entry as VMX: fire
    /// an expired APIC timer; then inject a queued exception or interrupted
    /// event, else a pending NMI, else a pending ExtINT or the highest
    /// deliverable vector (FreeBSD `vmx_inject_interrupts`); what the
    /// event held back comes right after it (`request_event_window`).
    /// Neither an NMI nor an interrupt while the guest is in its interrupt
    /// shadow: they stay pending until the entry after the shadowed
    /// instruction (the backend leaves the guest right after it). No entry when the guest
    /// sits in its HLT state, or when a nested fault became a triple fault
    /// and suspended the VM.
    fn prepare_guest_entry(&self, vcpu: &Vcpu) -> Entry {
        let now = Instant::now();
        self.poll_device_timers(now);
        vcpu.vlapic.timer_poll(now);
        let (event, rip) = {
            let mut r = vcpu.regs.lock();
            if r.halted {
                return Entry::Halted;
            }
            // VM_CAP_MASK_HWINTR (bhyve's gdb stub sets it while it
            // single-steps): no event at all is injected, exceptions and
            // NMIs included, as FreeBSD's `vmx_inject_interrupts` returns
            // at once.
            if r.get_cap(CAP_MASK_HWINTR) == Ok(1) {
                return Entry::Go;
            }
            (r.entry_intinfo(), r.nextrip)
        };
        // The interrupt shadow covers the instruction the guest stopped
        // at: entered elsewhere (that instruction completed, or RIP was
        // set), the shadow is over, as FreeBSD clears it on a RIP change
        // (`vmx_inject_interrupts`, `svm_inject_interrupts`).
        let shadowed = match self.backend().intr_shadow(vcpu) {
            Some(at) if at == rip => true,
            Some(_) => {
                self.backend().clear_intr_shadow(vcpu);
                false
            }
            None => false,
        };
        match event {
            Some(EntryEvent::TripleFault) => {
                let _ = self.suspend(SuspendHow::Triplefault as i32);
                return Entry::TripleFault;
            }
            Some(EntryEvent::Inject(info)) => {
                self.backend().inject_event(vcpu, self, info);
                self.request_event_window(vcpu);
                return Entry::Go;
            }
            None => {}
        }
        // An NMI waits for the end of the shadow (FreeBSD: NMI-window
        // exiting on VMX, the interrupt shadow on SVM).
        if !shadowed && vcpu.vlapic.take_nmi() {
            vcpu.stats.add(Stat::Nmis, 1);
            self.backend().inject_nmi(vcpu, self);
            self.request_event_window(vcpu);
            return Entry::Go;
        }
        // An ExtINT goes first, its vector from the 8259 (FreeBSD
        // `vmx_inject_interrupts`). Either source acknowledges before the
        // guest sees the vector: an APIC that still had it in IRR would
        // merge a re-raise of the same vector that the guest's reaction
        // provokes.
        if self.backend().can_inject(vcpu) {
            match vcpu.vlapic.take_injection() {
                Some(Injection::ExtInt) => {
                    let v = self.atpic_accept_intr();
                    vcpu.stats.add(Stat::ExtInts, 1);
                    self.backend().inject(vcpu, self, v);
                    // Another ExtINT, or an APIC vector it preempted.
                    self.request_event_window(vcpu);
                }
                Some(Injection::Vector(v)) => self.backend().inject(vcpu, self, v),
                None => {}
            }
        }
        Entry::Go
    }

    /// After an entry injected an event: what it held back (an NMI, an
    /// interrupt) comes as soon as the guest can take it, as FreeBSD's
    /// `vmx_inject_interrupts` sets NMI- or interrupt-window exiting.
    fn request_event_window(&self, vcpu: &Vcpu) {
        if vcpu.vlapic.nmi_pending() {
            self.backend().request_event_window(vcpu, true);
        } else if vcpu.vlapic.has_pending_event() {
            self.backend().request_event_window(vcpu, false);
        }
    }

    /// The before-entry checks, in FreeBSD's order (`vmx_run`: suspend,
    /// rendezvous, reqidle, then debug last, so that a vCPU held for the
    /// debugger still runs a rendezvous callback others wait for).
    fn pending_for(&self, id: usize) -> Option<Pending> {
        if let Some(how) = self.suspended_how() {
            return Some(Pending::Suspend(how));
        }
        if self.rendezvous_pending() {
            return Some(Pending::Rendezvous);
        }
        if self.vcpu(id).ok()?.lock().reqidle {
            return Some(Pending::ReqIdle);
        }
        if self.cpus().debug.contains(id) {
            return Some(Pending::Debug);
        }
        None
    }

    /// Exception `vector` (with `errcode`) at the instruction that exited,
    /// which completes nothing and is restarted (the fault reports its
    /// RIP): #GP(0) for an MSR access refused here, #UD for an instruction
    /// the VM does not offer. If an exception is still queued
    /// (VM_CAP_MASK_HWINTR holds events back), that one stays and this one
    /// is not raised: the guest takes the queued one first, then meets the
    /// instruction again.
    fn fault_instruction(&self, vcpu: &Vcpu, vector: i32, errcode: Option<u32>) -> Result<()> {
        self.backend().instruction_faulted(vcpu);
        match self.inject_exception(vcpu, vector, errcode, true) {
            Err(Error::Busy) => {
                vcpu.regs.lock().restart_instruction();
                Ok(())
            }
            res => res,
        }
    }

    /// VM-wide reasons a sleeping vCPU must return to the run loop.
    fn pending_for_sleeper(&self, id: usize) -> bool {
        self.suspended_how().is_some()
            || self.rendezvous_pending()
            || self.cpus().debug.contains(id)
    }

    /// `vm_handle_suspend`: join the suspended set and wait (SLEEPING) until
    /// every active vCPU has, servicing rendezvous meanwhile; then wake the
    /// others so they return too.
    ///
    /// Unlike FreeBSD's wait, this one also gives way to an ioctl that wants
    /// the vCPU (reqidle), as illumos's does: otherwise a VM_REINIT (or any
    /// vCPU ioctl) issued while another active vCPU has not acknowledged
    /// froze that vCPU and then waited for this one, which waited for it.
    /// The vCPU then withdraws its acknowledgement (VM_RUN refuses a vCPU in
    /// the suspended set), returns REQIDLE, and acknowledges again at its
    /// next VM_RUN.
    ///
    /// The wait is reported to `peer_wait`'s observer first. If that
    /// refuses it (the thread runs this vCPU from a guest callback that
    /// one of the awaited vCPUs waits for, directly or through other
    /// VMs), the vCPU withdraws likewise and the error (EDEADLK) ends
    /// VM_RUN.
    fn handle_suspend(&self, id: usize) -> Result<SuspendWait> {
        self.cpus().suspended.insert(id);
        let vcpu = self.vcpu(id)?;
        loop {
            self.check_alive()?;
            let all = {
                let c = self.cpus();
                c.active.is_subset(&c.suspended)
            };
            if all {
                break;
            }
            if self.rendezvous_pending() {
                self.handle_rendezvous(Some(id))?;
                continue;
            }
            // Reported before the wait and kept through it (it is dropped
            // after `g`): see `peer_wait`.
            let _waiting = match crate::peer_wait::begin(self, crate::peer_wait::PeerWaits::Suspend) {
                Ok(w) => w,
                Err(e) => {
                    // Refused (a cycle through this thread's guest
                    // callback): withdraw as for reqidle, unless the set
                    // is complete after all.
                    let mut c = self.cpus();
                    if c.active.is_subset(&c.suspended) {
                        continue;
                    }
                    c.suspended.remove(id);
                    return Err(e);
                }
            };
            let g = vcpu.lock();
            // Re-check under our mutex: the last vCPU to arrive notifies us
            // under it, and `set_state(from_idle)` sets reqidle and notifies
            // under it, so neither wake-up can be lost.
            let all = {
                let mut c = self.cpus();
                let all = c.active.is_subset(&c.suspended);
                if !all && g.reqidle {
                    // Withdraw in the same critical section that found the
                    // set incomplete: no other vCPU can have seen it
                    // complete with us in it.
                    c.suspended.remove(id);
                    return Ok(SuspendWait::ReqIdle);
                }
                all
            };
            if all || self.rendezvous_pending() || self.is_destroyed() {
                continue;
            }
            let g = vcpu.set_state_locked(g, VcpuState::Sleeping, false)?;
            let g = vcpu.wait(g);
            drop(vcpu.set_state_locked(g, VcpuState::Frozen, false)?);
        }
        let suspended = self.cpus().suspended;
        for i in suspended.iter() {
            self.vcpu(i)?.notify();
        }
        Ok(SuspendWait::AllSuspended)
    }
}
