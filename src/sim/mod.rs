//! The simulated backend: each vCPU's guest is a [`GuestProgram`] (C
//! callbacks or a script) executed one action at a time on the thread that
//! calls VM_RUN. A vCPU without a program runs an idle loop (`sti; hlt`).
//!
//! The guest's interrupt flag is RFLAGS.IF in the vCPU's registers, so
//! VM_SET_REGISTER can set it too. Loads and stores reach RAM in place
//! (`GuestRam`), as through the nested page tables. Port `in` and MMIO
//! reads that go to userland return, to the guest, the RAX that userland
//! set with VM_SET_REGISTER before the next VM_RUN (bhyve's convention for
//! `in`).

#[cfg(all(test, not(loom)))]
mod fuzz_tests;

use crate::backend::{Backend, GuestExit, GuestRam, GuestStats};
use crate::error::{Error, Result};
use crate::exit::{MmioAccess, TaskSwitch, TaskSwitchReason};
use crate::gla2gpa::CPU_MODE_PROTECTED;
use crate::guest::{GuestAction, GuestProgram};
use crate::mem::RamAccess;
use crate::regs::{intinfo, reg, CAP_BPT_EXIT, CAP_PAUSE_EXIT, RFLAGS_IF};
use crate::sync::Mutex;
use crate::vcpu::Vcpu;

/// The IDT vectors of an NMI and a breakpoint.
const IDT_NMI: u8 = 2;
const IDT_BP: u8 = 3;
const IDT_OF: u8 = 4;

/// Actions run per guest entry before the backend yields to the run loop
/// (which re-checks timers and pending work); kicks end an entry sooner.
pub const STEPS_PER_ENTRY: usize = 1024;

/// Where the guest takes a read's value from at its next entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadInto {
    /// RAX, masked to this many bytes (port `in`, MMIO load).
    Rax(u8),
    /// EDX:EAX (RDMSR).
    EdxEax,
}

#[derive(Default)]
struct GuestSlot {
    program: Option<Box<dyn GuestProgram>>,
    /// A read went to userland; its value goes to the guest at the next
    /// entry.
    pending_read: Option<ReadInto>,
    /// The STI interrupt shadow: the RIP of the instruction after an STI
    /// that set the interrupt flag, which runs before any interrupt or
    /// NMI is taken, so `sti; hlt` waits for an interrupt as on hardware.
    /// An exit that instruction makes leaves it (as VMX's guest
    /// interruptibility state: VM_GET_REGISTER reads it); it ends when the
    /// instruction completes, the guest takes an event, or the guest is
    /// entered at another RIP.
    sti_shadow: Option<u64>,
    /// The string I/O instruction that last exited, and its RIP: entered
    /// again at that RIP (userland restarted it) it runs again.
    string_op: Option<(u64, StringOp)>,
    /// The instruction that last left the guest unfinished, and its RIP:
    /// a load or store that faulted (`GuestExit::RamFault`), or one that
    /// exited to the run loop or userland. Entered again at that RIP
    /// (VM_RUN retried after EFAULT, VM_RESTART_INSTRUCTION, RIP set back)
    /// it runs again, as the processor re-executes what is at RIP, instead
    /// of the program's next action. An event delivered meanwhile that
    /// abandons it (an exception for it) drops it: the guest's handler
    /// decides what runs next.
    replay: Option<(u64, GuestAction)>,
    /// An event met a task gate: the exit the next entry makes, and its
    /// instruction length. Set only by the entry work, which the entry
    /// itself follows, so it never holds more than that one event.
    task_gate: Option<(GuestExit, u32)>,
    /// The entry work delivered an event the guest took: with the monitor
    /// trap flag the entry exits before any instruction (SDM 26.7.2: the
    /// MTF exit is pending before the first instruction after an entry
    /// that injected an event).
    took_event: bool,
    /// The entry work left an NMI (true) or an interrupt pending behind
    /// the event it delivered (`Backend::request_event_window`).
    event_window: Option<bool>,
    stats: GuestStats,
}

impl GuestSlot {
    /// The instruction under way completes nothing (it faulted, or the
    /// vCPU is reset): no read is waiting for it, it is not restarted or
    /// replayed.
    fn abandon_instruction(&mut self) {
        self.pending_read = None;
        self.string_op = None;
        self.replay = None;
    }
}

/// An INS or OUTS, as it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StringOp {
    port: u16,
    bytes: u8,
    is_in: bool,
    rep: bool,
}

impl StringOp {
    fn exit(self) -> GuestExit {
        GuestExit::InoutStr { port: self.port, bytes: self.bytes, is_in: self.is_in, rep: self.rep }
    }
}

/// The simulated VMRUN.
pub struct SimBackend {
    /// Guest-program mutexes, one per vCPU. Protects: that vCPU's program
    /// and counters. Rank: taken with no core lock held (but lock-all's
    /// serialiser, by `reinit` with every vCPU frozen), before the vCPU's
    /// registers; by the thread that holds the vCPU (RUNNING in the run
    /// loop, or FROZEN by an ioctl), and briefly by `guest_stats` from
    /// other threads, which waits for at most one guest step or callback (see the lock order in `vm` on callbacks that wait for
    /// another VM). The guest's RAM
    /// accesses and the processor's IDT reads (page walks that may set
    /// accessed bits) take `Vm::mem` shared under it, out of rank order
    /// (why that is safe: the lock order in `vm`). C callbacks run under
    /// it, so they must not make calls that wait for a vCPU of their VM
    /// (the C face refuses those with EDEADLK, `ffi::reentry`); they may
    /// assert pins and send MSIs.
    guests: Vec<Mutex<GuestSlot>>,
}

impl core::fmt::Debug for SimBackend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimBackend").field("vcpus", &self.guests.len()).finish()
    }
}

impl SimBackend {
    pub fn new(nvcpus: usize) -> Self {
        SimBackend { guests: (0..nvcpus).map(|_| Mutex::new(GuestSlot::default())).collect() }
    }

    fn slot(&self, vcpuid: usize) -> Result<&Mutex<GuestSlot>> {
        self.guests.get(vcpuid).ok_or(Error::Inval)
    }
}

fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (u32::from(size) * 8)) - 1
    }
}

/// `mov` of `value` into the low `size` bytes of RAX: AL and AX keep the
/// rest, EAX clears the upper half (as 32-bit moves do).
fn load_rax(vcpu: &Vcpu, size: u8, value: u64) {
    let mut r = vcpu.regs.lock();
    let rax = r.get(reg::RAX as i32).unwrap_or(0);
    let rax = match size {
        1 | 2 => (rax & !mask(size)) | value,
        _ => value,
    };
    let _ = r.set(reg::RAX as i32, rax);
}

/// EDX:EAX = `value` (the upper halves of RDX and RAX cleared), as RDMSR
/// leaves it and WRMSR takes it.
fn load_edx_eax(vcpu: &Vcpu, value: u64) {
    let mut r = vcpu.regs.lock();
    let _ = r.set(reg::RAX as i32, value & 0xffff_ffff);
    let _ = r.set(reg::RDX as i32, value >> 32);
}

/// The guest took event `vector` without an exit (`external`: an
/// interrupt from its local APIC or the 8259).
fn take_event(program: Option<&mut (dyn GuestProgram + 'static)>, stats: &mut GuestStats, vector: u8, external: bool) {
    match program {
        Some(p) if external => p.external_interrupt(vector),
        Some(p) => p.interrupt(vector),
        None => {}
    }
    stats.interrupts += 1;
    stats.last_vector = Some(vector);
}

/// A read instruction completed with `value`.
fn read_done(program: &mut dyn GuestProgram, stats: &mut GuestStats, value: u64) {
    program.read_result(value);
    stats.last_read = value;
}

/// The read that went to userland completes: the guest gets its value
/// from the registers userland set.
fn finish_read(slot: &mut GuestSlot, vcpu: &Vcpu) {
    let (Some(into), Some(program)) = (slot.pending_read.take(), slot.program.as_mut()) else {
        return;
    };
    let value = {
        let r = vcpu.regs.lock();
        let get = |n: usize| r.get(n as i32).unwrap_or(0);
        match into {
            ReadInto::Rax(size) => get(reg::RAX) & mask(size),
            ReadInto::EdxEax => (get(reg::RDX) << 32) | (get(reg::RAX) & 0xffff_ffff),
        }
    };
    read_done(program.as_mut(), &mut slot.stats, value);
}

/// The STI shadow covers the instruction the guest resumes at.
fn shadow_holds(slot: &GuestSlot, vcpu: &Vcpu) -> bool {
    slot.sti_shadow.is_some_and(|at| at == vcpu.regs.lock().nextrip)
}

fn intr_enabled(vcpu: &Vcpu) -> bool {
    vcpu.regs.lock().get(reg::RFLAGS as i32).unwrap_or(0) & RFLAGS_IF != 0
}

fn set_intr_flag(vcpu: &Vcpu, on: bool) {
    let mut r = vcpu.regs.lock();
    let rflags = r.get(reg::RFLAGS as i32).unwrap_or(0x2);
    let rflags = if on { rflags | RFLAGS_IF } else { rflags & !RFLAGS_IF };
    let _ = r.set(reg::RFLAGS as i32, rflags);
}

impl SimBackend {
    /// The processor delivers the event of intinfo word `info`: through
    /// a task gate of the guest's IDT (protected mode) it is a task switch
    /// instead, the exit of the next entry (`GuestExit::TaskSwitch`);
    /// otherwise the guest takes its vector.
    fn deliver(&self, vcpu: &Vcpu, ram: &dyn GuestRam, info: u64) {
        let Ok(slot) = self.slot(vcpu.id()) else {
            return;
        };
        let mut slot = slot.lock();
        let slot = &mut *slot;
        let vector = info as u8;
        let info = as_delivered(info);
        // A software event stands for an instruction of VM-entry's
        // instruction length (the gdb stub sets it before injecting a
        // guest's own #BP): its handler returns past it, and a task
        // switch through a gate reports it as the exit's length.
        let len = match info & intinfo::TYPE {
            intinfo::SWINTR | intinfo::PRIV_SWEXCEPTION | intinfo::SWEXCEPTION => {
                vcpu.regs.lock().get(reg::ENTRY_INST_LENGTH as i32).unwrap_or(0)
            }
            _ => 0,
        };
        // The idle loop has no IDT: it takes everything.
        let gate = slot.program.is_some().then(|| task_gate(vcpu, ram, vector)).flatten();
        if let Some(tsssel) = gate {
            slot.task_gate = Some((gated_exit(tsssel, info), len as u32));
            // The new task starts outside any STI shadow.
            slot.sti_shadow = None;
            return;
        }
        // Delivering an event ends the shadow.
        slot.sti_shadow = None;
        let external = info & intinfo::TYPE == intinfo::HWINTR;
        take_event(slot.program.as_deref_mut(), &mut slot.stats, vector, external);
        slot.took_event = slot.program.is_some();
        let mut r = vcpu.regs.lock();
        r.nextrip = r.nextrip.wrapping_add(len);
    }
}

/// Event `info` as the processor delivers it: VMX injects #BP and #OF as
/// software exceptions (FreeBSD's `vmx_inject_interrupts`).
fn as_delivered(info: u64) -> u64 {
    let vector = info as u8;
    if info & intinfo::TYPE == intinfo::HWEXCEPTION && matches!(vector, IDT_BP | IDT_OF) {
        return info & !intinfo::TYPE | intinfo::SWEXCEPTION;
    }
    info
}

/// The exit of the event of intinfo word `info` (as delivered) meeting a
/// task gate for TSS `tsssel`: external for hardware events, with an
/// error code only then (as FreeBSD reports it; bhyve asserts as much).
fn gated_exit(tsssel: u16, info: u64) -> GuestExit {
    let ext = matches!(info & intinfo::TYPE, intinfo::HWINTR | intinfo::NMI | intinfo::HWEXCEPTION);
    let errcode = (ext && info & intinfo::DEL_ERRCODE != 0).then_some((info >> 32) as u32);
    let ts = TaskSwitch { tsssel, reason: TaskSwitchReason::IdtGate, ext, errcode };
    GuestExit::TaskSwitch { ts, delivering: Some(info) }
}

/// The TSS selector of vector `vector`'s IDT entry if it is a present
/// task gate and the guest is in protected mode (not long mode, where
/// task gates do not exist). The processor reads the entry with
/// supervisor rights (`GuestRam::translate`), each page on its own, as an
/// unaligned IDT may put an entry across two. An entry past the limit or
/// on a page the walk cannot reach is no task gate here (the processor
/// would fault), and the gate's DPL is not checked (as for every gate
/// the simulated guest takes).
fn task_gate(vcpu: &Vcpu, ram: &dyn GuestRam, vector: u8) -> Option<u16> {
    /// Present, system descriptor, type 5 (DPL masked off).
    const TASK_GATE: u64 = 0x85;
    let (paging, idt) = {
        let r = vcpu.regs.lock();
        (r.paging(), r.get_seg(reg::IDTR as i32).ok()?)
    };
    if paging.cpu_mode != CPU_MODE_PROTECTED {
        return None;
    }
    let off = u64::from(vector) * 8;
    if off + 7 > u64::from(idt.limit) {
        return None;
    }
    // Linear addresses are 32 bits here: the base wraps.
    let gla = |k: u64| idt.base.wrapping_add(off + k) & 0xffff_ffff;
    let load = |gla: u64, size: u8| match ram.load(ram.translate(&paging, gla)?, size) {
        RamAccess::Done(v) => Some(v),
        _ => None,
    };
    let d = if gla(0) >> 12 == gla(7) >> 12 {
        load(gla(0), 8)?
    } else {
        (0..8).try_fold(0u64, |d, k| Some(d | load(gla(k), 1)? << (8 * k)))?
    };
    ((d >> 40) & 0x9f == TASK_GATE).then_some((d >> 16) as u16)
}

impl Backend for SimBackend {
    fn run(&self, vcpu: &Vcpu, ram: &dyn GuestRam, rip: u64) -> (GuestExit, u64, u32) {
        let Ok(slot) = self.slot(vcpu.id()) else {
            return (GuestExit::Hlt { intr_enabled: true }, rip, 1);
        };
        let mut slot = slot.lock();
        let slot = &mut *slot;
        slot.stats.entries += 1;
        // A read re-executed from the start has no value to deliver yet.
        if slot.replay.is_some_and(|(at, _)| at == rip) {
            slot.pending_read = None;
        }
        finish_read(slot, vcpu);
        let Some(program) = slot.program.as_mut() else {
            // The idle loop: sti; hlt.
            set_intr_flag(vcpu, true);
            return (GuestExit::Hlt { intr_enabled: true }, rip, 1);
        };
        // An event being delivered met a task gate: no guest instruction
        // runs; RIP stays where the event interrupted it.
        if let Some((exit, len)) = slot.task_gate.take() {
            return (exit, rip, len);
        }
        let took_event = std::mem::take(&mut slot.took_event);
        let event_window = slot.event_window.take();
        // With the monitor trap flag, or with VM_CAP_RFLAGS_TF (the #DB of
        // RFLAGS.TF intercepted), every instruction that does not exit by
        // itself ends the entry (a debugger steps the guest).
        let (step, bpt, pause_exit) = {
            let r = vcpu.regs.lock();
            let on = |cap| r.get_cap(cap) == Ok(1);
            let step = r.stepping().map(GuestExit::from);
            (step, on(CAP_BPT_EXIT), on(CAP_PAUSE_EXIT))
        };
        // The monitor trap flag's exit comes before the first instruction
        // after an entry that delivered an event.
        if took_event && step == Some(GuestExit::Mtrap) {
            return (GuestExit::Mtrap, rip, 0);
        }
        // The window for what the event held back is open: an NMI's at
        // once (delivering the event ended any STI shadow), an
        // interrupt's if the guest has interrupts enabled (else its STI
        // yields, after the shadow).
        if event_window.is_some_and(|nmi| nmi || intr_enabled(vcpu)) {
            return (GuestExit::Yield, rip, 0);
        }
        let mut rip = rip;
        if let Some((at, op)) = slot.string_op.take() {
            if at == rip {
                // Restarted: the instruction runs again, unless a REP
                // count has run out (then it is done, as on hardware).
                let r = vcpu.regs.lock();
                let count = r.get(reg::RCX as i32).unwrap_or(0) & mask(r.address_size());
                drop(r);
                if !op.rep || count != 0 {
                    slot.string_op = Some((at, op));
                    return (op.exit(), rip, 1);
                }
                // Done: a completed instruction, so a stepping debugger
                // sees it before the next one runs.
                if let Some(step) = step {
                    return (step, rip + 1, 0);
                }
                rip += 1;
            }
        }
        // Entered elsewhere than the instruction the shadow covers (that
        // one completed, or RIP was set): the shadow is over.
        if slot.sti_shadow != Some(rip) {
            slot.sti_shadow = None;
        }
        for _ in 0..STEPS_PER_ENTRY {
            if vcpu.kicked() {
                return (GuestExit::Kicked, rip, 0);
            }
            slot.stats.steps += 1;
            let shadowed = slot.sti_shadow == Some(rip);
            let action = match slot.replay.take() {
                Some((at, action)) if at == rip => action,
                _ => program.next(rip),
            };
            // A fault completes nothing: the action stays for the next
            // entry at this RIP, the STI shadow with it.
            let fault = |slot: &mut GuestSlot, gpa| {
                slot.replay = Some((rip, action));
                (GuestExit::RamFault { gpa }, rip, 0)
            };
            let exit = match action {
                GuestAction::Compute => None,
                GuestAction::EnableInterrupts if intr_enabled(vcpu) => None,
                GuestAction::EnableInterrupts => {
                    set_intr_flag(vcpu, true);
                    slot.sti_shadow = Some(rip + 1);
                    None
                }
                GuestAction::DisableInterrupts => {
                    set_intr_flag(vcpu, false);
                    None
                }
                GuestAction::Hlt => Some(GuestExit::Hlt { intr_enabled: intr_enabled(vcpu) }),
                GuestAction::WaitInterruptEoi => {
                    // sti; hlt (the EOI follows the interrupt).
                    set_intr_flag(vcpu, true);
                    Some(GuestExit::Hlt { intr_enabled: true })
                }
                // Without VM_CAP_PAUSE_EXIT, PAUSE is a spin-loop hint
                // that runs in the guest.
                GuestAction::Pause if pause_exit => Some(GuestExit::Pause),
                GuestAction::Pause => None,
                GuestAction::Breakpoint if bpt => return (GuestExit::Breakpoint, rip, 0),
                GuestAction::Breakpoint => {
                    // #BP through the guest's IDT, no exit (as VMX without
                    // the exception in its bitmap), unless the IDT has a
                    // task gate there: a task switch at the INT3, which a
                    // software exception is (not external, no error code).
                    if let Some(tsssel) = task_gate(vcpu, ram, IDT_BP) {
                        let info = intinfo::VALID | intinfo::SWEXCEPTION | u64::from(IDT_BP);
                        return (gated_exit(tsssel, info), rip, 1);
                    }
                    take_event(Some(program.as_mut()), &mut slot.stats, IDT_BP, false);
                    None
                }
                // The TSC instructions run in the guest (VMX offsets the
                // TSC instead of exiting; RDTSCP and RDPID are always
                // enabled, see CAP_RDTSCP).
                GuestAction::Rdtsc | GuestAction::Rdtscp => {
                    let (tsc, aux) = {
                        let r = vcpu.regs.lock();
                        (r.guest_tsc(crate::tsc::host_tsc()), r.tsc_aux())
                    };
                    load_edx_eax(vcpu, tsc);
                    if matches!(action, GuestAction::Rdtscp) {
                        let _ = vcpu.regs.lock().set(reg::RCX as i32, aux & 0xffff_ffff);
                    }
                    read_done(program.as_mut(), &mut slot.stats, tsc);
                    None
                }
                GuestAction::Rdpid => {
                    let aux = vcpu.regs.lock().tsc_aux();
                    let _ = vcpu.regs.lock().set(reg::RAX as i32, aux);
                    read_done(program.as_mut(), &mut slot.stats, aux);
                    None
                }
                GuestAction::TaskSwitch { tsssel, reason } => {
                    let ts = TaskSwitch { tsssel, reason, ext: false, errcode: None };
                    Some(GuestExit::TaskSwitch { ts, delivering: None })
                }
                GuestAction::Refused(_) => Some(GuestExit::Refused),
                GuestAction::Cpuid { leaf, subleaf } => {
                    let mut r = vcpu.regs.lock();
                    let _ = r.set(reg::RAX as i32, u64::from(leaf));
                    let _ = r.set(reg::RCX as i32, u64::from(subleaf));
                    Some(GuestExit::Cpuid)
                }
                GuestAction::PortIn { port, size } => {
                    slot.pending_read = Some(ReadInto::Rax(size));
                    // VMX reports the guest's EAX for an `in` too: bhyve
                    // merges the value read into it.
                    let eax = vcpu.regs.lock().get(reg::RAX as i32).unwrap_or(0) as u32;
                    Some(GuestExit::Inout { port, bytes: size, is_in: true, eax })
                }
                GuestAction::PortOut { port, size, value } => {
                    let eax = (u64::from(value) & mask(size)) as u32;
                    Some(GuestExit::Inout { port, bytes: size, is_in: false, eax })
                }
                GuestAction::MmioRead { gpa, size } => match ram.load(gpa, size) {
                    // RAM: read in place, no exit.
                    RamAccess::Done(value) => {
                        load_rax(vcpu, size, value);
                        read_done(program.as_mut(), &mut slot.stats, value);
                        None
                    }
                    RamAccess::Fault => return fault(slot, gpa),
                    // If the library emulates `gpa`, emulated_read_result
                    // delivers the value and this is cleared; otherwise
                    // userland answers through RAX.
                    RamAccess::Mmio => {
                        slot.pending_read = Some(ReadInto::Rax(size));
                        Some(GuestExit::Mmio(MmioAccess { gpa, size, write: false, value: 0 }))
                    }
                },
                GuestAction::StringIo { port, size, is_in, index, count } => {
                    let mut r = vcpu.regs.lock();
                    let _ = r.set(if is_in { reg::RDI } else { reg::RSI } as i32, index);
                    if let Some(n) = count {
                        let _ = r.set(reg::RCX as i32, n);
                    }
                    let op = StringOp { port, bytes: size, is_in, rep: count.is_some() };
                    slot.string_op = Some((rip, op));
                    Some(op.exit())
                }
                GuestAction::Rdmsr { msr } => {
                    // As for a load: the library (the local APIC's MSRs)
                    // or userland (EDX:EAX) supplies the value.
                    slot.pending_read = Some(ReadInto::EdxEax);
                    Some(GuestExit::Rdmsr { msr })
                }
                GuestAction::Wrmsr { msr, value } => {
                    // WRMSR takes its value from EDX:EAX.
                    load_edx_eax(vcpu, value);
                    Some(GuestExit::Wrmsr { msr, value })
                }
                GuestAction::MmioWrite { gpa, size, value } => {
                    // The store is a `mov` from RAX (AL, AX, EAX): the
                    // value is there for an instruction emulator to read.
                    let value = value & mask(size);
                    load_rax(vcpu, size, value);
                    match ram.store(gpa, size, value) {
                        RamAccess::Done(()) => None,
                        RamAccess::Fault => return fault(slot, gpa),
                        RamAccess::Mmio => Some(GuestExit::Mmio(MmioAccess { gpa, size, write: true, value })),
                    }
                }
            };
            // The shadowed instruction completed: the shadow is over. One
            // that exited keeps it (the exit happened in the shadow).
            if shadowed && matches!(exit, None | Some(GuestExit::Yield)) {
                slot.sti_shadow = None;
            }
            match (exit, step) {
                (None | Some(GuestExit::Yield), Some(step)) => return (step, rip + 1, 0),
                // The shadow is over: back to the run loop, which may now
                // inject what is pending.
                (None, _) if shadowed => return (GuestExit::Yield, rip, 1),
                (None, _) => rip += 1,
                (Some(e), _) => {
                    // String I/O restarts by its own rules (`string_op`).
                    if !matches!(action, GuestAction::StringIo { .. }) {
                        slot.replay = Some((rip, action));
                    }
                    return (e, rip, 1);
                }
            }
        }
        (GuestExit::Yield, rip, 0)
    }

    fn can_inject(&self, vcpu: &Vcpu) -> bool {
        let Ok(slot) = self.slot(vcpu.id()) else {
            return false;
        };
        // The idle loop always has interrupts enabled.
        let slot = slot.lock();
        slot.program.is_none() || (intr_enabled(vcpu) && !shadow_holds(&slot, vcpu))
    }

    /// The STI shadow, until the next entry finds it over.
    fn intr_shadow(&self, vcpu: &Vcpu) -> Option<u64> {
        self.slot(vcpu.id()).ok()?.lock().sti_shadow
    }

    fn clear_intr_shadow(&self, vcpu: &Vcpu) {
        if let Ok(slot) = self.slot(vcpu.id()) {
            slot.lock().sti_shadow = None;
        }
    }

    fn inject(&self, vcpu: &Vcpu, ram: &dyn GuestRam, vector: u8) {
        self.deliver(vcpu, ram, intinfo::VALID | intinfo::HWINTR | u64::from(vector));
    }

    /// An exception or re-injected event reaches the guest as its vector.
    /// If the instruction that exited is restarted and the event is an
    /// exception, it faulted (userland injected for it) and completes
    /// nothing; if the guest resumes past it, it completed first (a read
    /// gets its value) and the event comes after it, as FreeBSD delivers
    /// at `nextrip`. An interrupt or NMI (re-injected from the exit
    /// intinfo) comes between instructions: a restarted one runs after it.
    fn inject_event(&self, vcpu: &Vcpu, ram: &dyn GuestRam, info: u64) {
        if let Ok(slot) = self.slot(vcpu.id()) {
            let mut slot = slot.lock();
            let nextrip = vcpu.regs.lock().nextrip;
            let exception =
                matches!(info & intinfo::TYPE, intinfo::HWEXCEPTION | intinfo::SWEXCEPTION | intinfo::PRIV_SWEXCEPTION);
            let restarted = slot.replay.is_some_and(|(at, _)| at == nextrip)
                || slot.string_op.is_some_and(|(at, _)| at == nextrip);
            // Restarted under an interrupt or NMI, it stays: its read, if
            // any, is made again when it runs again.
            if !restarted {
                finish_read(&mut slot, vcpu);
            } else if exception {
                slot.abandon_instruction();
            }
        }
        self.deliver(vcpu, ram, info);
    }

    fn instruction_faulted(&self, vcpu: &Vcpu) {
        if let Ok(slot) = self.slot(vcpu.id()) {
            slot.lock().abandon_instruction();
        }
    }

    fn reinit(&self) {
        for slot in &self.guests {
            let mut slot = slot.lock();
            if let Some(p) = slot.program.as_mut() {
                p.restart();
            }
            slot.abandon_instruction();
            slot.task_gate = None;
            slot.sti_shadow = None;
            // A fresh VMCS: no event delivered, no window asked for (one
            // an event that met a task gate left would otherwise make
            // the first entry an exit).
            slot.took_event = false;
            slot.event_window = None;
        }
    }

    /// An NMI reaches the guest as vector 2 (its IDT entry), whether or
    /// not the guest has interrupts enabled.
    fn inject_nmi(&self, vcpu: &Vcpu, ram: &dyn GuestRam) {
        self.deliver(vcpu, ram, intinfo::VALID | intinfo::NMI | u64::from(IDT_NMI));
    }

    fn request_event_window(&self, vcpu: &Vcpu, nmi: bool) {
        if let Ok(slot) = self.slot(vcpu.id()) {
            slot.lock().event_window = Some(nmi);
        }
    }

    /// The value lands where the instruction puts it (RAX for a load,
    /// EDX:EAX for RDMSR), as when userland supplies it. A load narrower
    /// than the register it read gets (and the guest reads) its bytes
    /// alone.
    fn emulated_read_result(&self, vcpu: &Vcpu, value: u64) {
        if let Ok(slot) = self.slot(vcpu.id()) {
            let mut slot = slot.lock();
            let value = match slot.pending_read.take() {
                Some(ReadInto::Rax(size)) => {
                    let value = value & mask(size);
                    load_rax(vcpu, size, value);
                    value
                }
                Some(ReadInto::EdxEax) => {
                    load_edx_eax(vcpu, value);
                    value
                }
                None => value,
            };
            if let Some(p) = slot.program.as_mut() {
                p.read_result(value);
            }
            slot.stats.last_read = value;
        }
    }

    fn emulated_cpuid_result(&self, vcpu: &Vcpu, regs: [u32; 4]) {
        if let Ok(slot) = self.slot(vcpu.id()) {
            if let Some(p) = slot.lock().program.as_mut() {
                p.cpuid_result(regs);
            }
        }
    }

    fn set_guest(&self, vcpuid: usize, program: Option<Box<dyn GuestProgram>>) -> Result<()> {
        *self.slot(vcpuid)?.lock() = GuestSlot { program, ..GuestSlot::default() };
        Ok(())
    }

    fn guest_stats(&self, vcpuid: usize) -> Result<GuestStats> {
        Ok(self.slot(vcpuid)?.lock().stats)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
