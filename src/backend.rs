//! The hardware's VMRUN, as a trait: something that runs a vCPU's guest
//! until it exits ([`Backend`]), delivers the events the run loop injects,
//! and reaches the guest's RAM as the nested page tables do ([`GuestRam`]).

use crate::error::{Error, Result};
use crate::exit::{MmioAccess, TaskSwitch};
use crate::gla2gpa::GuestPaging;
use crate::guest::GuestProgram;
use crate::mem::RamAccess;
use crate::regs::Stepping;
use crate::vcpu::Vcpu;

/// The guest's RAM as the processor reaches it (FreeBSD: through the
/// nested page tables, with no exit). A backend whose guest code runs on
/// the processor never calls it; the simulated one does for each guest
/// load and store.
pub trait GuestRam {
    /// A load of `size` bytes (1, 2, 4, 8) at `gpa`.
    fn load(&self, gpa: u64, size: u8) -> RamAccess<u64>;
    /// A store of the low `size` bytes of `value` at `gpa`.
    fn store(&self, gpa: u64, size: u8, value: u64) -> RamAccess<()>;
    /// The guest-physical address of the processor's own (supervisor)
    /// read of linear address `gla` under `paging`: how it reaches its
    /// descriptor tables. `None` if the walk faults.
    fn translate(&self, paging: &GuestPaging, gla: u64) -> Option<u64>;
}

/// What the guest did that stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit {
    /// Nothing in particular (the backend yielded).
    Bogus,
    /// Port I/O: `eax` is the value written for an `out`, and the guest's
    /// EAX for an `in` (as VMX reports it: bhyve merges the value read
    /// into it).
    Inout { port: u16, bytes: u8, is_in: bool, eax: u32 },
    /// An MMIO access (a load or store no memory map covers).
    Mmio(MmioAccess),
    /// A load or store at `gpa` that a memory map covers but refuses (a
    /// store to the read-only boot ROM): FreeBSD's nested page fault that
    /// `vm_handle_paging` cannot resolve, so VM_RUN fails (EFAULT). The
    /// instruction did not complete.
    RamFault { gpa: u64 },
    /// HLT, with the guest's interrupt flag at that point. The run loop
    /// handles it as an exit with VM_CAP_HALT_EXIT on, and otherwise as
    /// the guest entering its HLT activity state (no exit).
    Hlt { intr_enabled: bool },
    /// INS or OUTS (`rep` with a REP prefix); the registers hold the rest.
    InoutStr { port: u16, bytes: u8, is_in: bool, rep: bool },
    /// RDMSR of `msr` (ECX).
    Rdmsr { msr: u32 },
    /// WRMSR of `value` (EDX:EAX) to `msr` (ECX).
    Wrmsr { msr: u32, value: u64 },
    /// CPUID (of EAX and ECX): always intercepted, answered by the run
    /// loop.
    Cpuid,
    /// A task switch: by the guest's CALL, JMP or IRET, or by an event
    /// the processor delivered through a task gate (`delivering`: that
    /// event as an intinfo word, which the exit leaves in the exit
    /// intinfo, as VMX's IDT-vectoring information).
    TaskSwitch { ts: TaskSwitch, delivering: Option<u64> },
    /// PAUSE, with VM_CAP_PAUSE_EXIT on.
    Pause,
    /// MONITOR, MWAIT or a VMX instruction, always intercepted: the run
    /// loop raises #UD at it, as FreeBSD's `vm_run` (`vm_inject_ud`).
    Refused,
    /// An instruction completed with VM_CAP_MTRAP_EXIT on (the monitor
    /// trap flag: a debugger single-stepping the guest).
    Mtrap,
    /// An instruction completed with VM_CAP_RFLAGS_TF stepping: the
    /// single-step #DB, intercepted.
    DebugTrap,
    /// INT3 with VM_CAP_BPT_EXIT on (a debugger's breakpoint); the RIP
    /// stays at it.
    Breakpoint,
    /// The backend saw [`Vcpu::kicked`] and left the guest.
    Kicked,
    /// The guest wants the run loop's entry work (e.g. it just enabled
    /// interrupts, so a pending one can be injected) and then to go on.
    Yield,
}

/// The exit a debugger's step makes after a completed instruction.
impl From<Stepping> for GuestExit {
    fn from(step: Stepping) -> Self {
        match step {
            Stepping::MonitorTrap => GuestExit::Mtrap,
            Stepping::RflagsTf => GuestExit::DebugTrap,
        }
    }
}

/// Counters of a simulated guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestStats {
    /// Guest actions executed.
    pub steps: u64,
    /// Guest entries (backend runs): a guest that is never kicked and
    /// never exits enters once per STEPS_PER_ENTRY steps.
    pub entries: u64,
    /// Interrupts injected (NMIs included, as vector 2).
    pub interrupts: u64,
    pub last_vector: Option<u8>,
    /// Last value delivered for an MMIO read or port `in`.
    pub last_read: u64,
}

/// Runs guest code. Called by the run loop with the vCPU RUNNING.
///
/// Contract: `run` returns within a bounded number of guest steps after
/// `vcpu.kicked()` becomes true, and takes no VM, vioapic or vCPU lock
/// while it runs guest code (only the leaf locks of the guest's own
/// memory or registers).
pub trait Backend: Send + Sync + core::fmt::Debug {
    /// Runs `vcpu`'s guest from `rip` until an exit, its loads and stores
    /// reaching RAM through `ram`; returns the exit, the RIP of the exiting
    /// instruction and its length.
    fn run(&self, vcpu: &Vcpu, ram: &dyn GuestRam, rip: u64) -> (GuestExit, u64, u32);

    /// Whether the guest can take an external interrupt before the next
    /// `run` (interrupts enabled, no interrupt shadow, no event already
    /// being injected). The default guest never can.
    fn can_inject(&self, _vcpu: &Vcpu) -> bool {
        false
    }

    /// The guest's interrupt shadow (blocking by STI or MOV SS: VMX's
    /// guest interruptibility state, SVM's VMCB interrupt shadow): the RIP
    /// of the instruction it covers, which the guest stopped at and runs
    /// before it takes any interrupt or NMI. It outlives an exit that
    /// instruction made (VM_GET_REGISTER of VM_REG_GUEST_INTR_SHADOW reads
    /// it as 1) until the instruction completes; the run loop ends it when
    /// the guest resumes elsewhere. A backend without one reports none.
    fn intr_shadow(&self, _vcpu: &Vcpu) -> Option<u64> {
        None
    }

    /// Ends the guest's interrupt shadow (VM_SET_REGISTER of
    /// VM_REG_GUEST_INTR_SHADOW to 0, an exception queued for the guest,
    /// the guest resuming at another RIP).
    fn clear_intr_shadow(&self, _vcpu: &Vcpu) {}

    /// Hands external interrupt `vector` to the guest before the next
    /// `run`. Called only right after [`Backend::can_inject`] said yes and
    /// after the interrupt was acknowledged (the local APIC moved `vector`
    /// from IRR to ISR, or the 8259 gave it for an ExtINT), so whatever
    /// the guest does on seeing it (signal a device that then raises the
    /// same vector again) finds the controller ready to take the next one.
    fn inject(&self, _vcpu: &Vcpu, _ram: &dyn GuestRam, _vector: u8) {}

    /// Hands the guest the event of intinfo word `info` (a queued
    /// exception, or the event an earlier exit interrupted; FreeBSD
    /// `vm_entry_intinfo`) before the next `run`; nothing else is injected
    /// on that entry.
    fn inject_event(&self, _vcpu: &Vcpu, _ram: &dyn GuestRam, _info: u64) {}

    /// Hands a pending NMI to the guest before the next `run`, whatever
    /// its interrupt flag (the run loop injects nothing else on that
    /// entry, as VMX injects one event per VM entry). Not called while the
    /// guest is in its interrupt shadow ([`Backend::intr_shadow`]).
    fn inject_nmi(&self, _vcpu: &Vcpu, _ram: &dyn GuestRam) {}

    /// This entry injected an event and an NMI (`nmi`), or else an
    /// external interrupt, is still pending: the guest leaves (a
    /// [`GuestExit::Yield`]) as soon as it could take it, before its next
    /// instruction if nothing blocks it (for an interrupt: RFLAGS.IF), so
    /// the run loop injects it right after the event. VMX's NMI- and
    /// interrupt-window exiting, which FreeBSD's `vmx_inject_interrupts`
    /// sets then (SVM: the VINTR intercept).
    fn request_event_window(&self, _vcpu: &Vcpu, _nmi: bool) {}

    /// The value of a read the library emulated (an MMIO load from the
    /// local APIC, vioapic or HPET, or an RDMSR of a local APIC MSR), for
    /// the instruction that exited with `GuestExit::Mmio` or `Rdmsr`. It
    /// is the whole register, as FreeBSD's device handlers give it; the
    /// backend keeps the bytes its instruction loads (`vie_update_register`).
    fn emulated_read_result(&self, _vcpu: &Vcpu, _value: u64) {}

    /// The run loop answered the CPUID that exited: RAX, RBX, RCX and RDX
    /// now hold `regs`.
    fn emulated_cpuid_result(&self, _vcpu: &Vcpu, _regs: [u32; 4]) {}

    /// The instruction that exited faulted (the library raised an
    /// exception for it): it completes nothing, so a read it was waiting
    /// for is dropped and it is not run again as a restarted string
    /// instruction.
    fn instruction_faulted(&self, _vcpu: &Vcpu) {}

    /// VM_REINIT: every vCPU's guest starts afresh (its program stays; what
    /// it was in the middle of does not).
    fn reinit(&self) {}

    /// Installs (or with `None` removes) the program vCPU `vcpuid`'s guest
    /// runs. The caller holds the vCPU, so it is not running. Backends
    /// that run real guests refuse (ENODEV).
    fn set_guest(&self, _vcpuid: usize, _program: Option<Box<dyn GuestProgram>>) -> Result<()> {
        Err(Error::NoDev)
    }

    /// Counters of vCPU `vcpuid`'s guest.
    fn guest_stats(&self, _vcpuid: usize) -> Result<GuestStats> {
        Err(Error::NoDev)
    }
}

/// A backend whose guest sits in its idle loop (`sti; hlt`): VM_RUN
/// sleeps until something needs the caller (reqidle, suspend, debug) and
/// the guest wakes for interrupts only to halt again.
#[derive(Debug, Default)]
pub struct IdleBackend;

impl Backend for IdleBackend {
    fn run(&self, _vcpu: &Vcpu, _ram: &dyn GuestRam, rip: u64) -> (GuestExit, u64, u32) {
        (GuestExit::Hlt { intr_enabled: true }, rip, 1)
    }
}
