//! VM exits as the core reports them to the caller of `vm_run` (FreeBSD
//! `struct vm_exit`, in Rust terms; `ffi` lays them out for C).

use crate::cpuset::CpuSet;

/// How a VM was suspended (`enum vm_suspend_how`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendHow {
    Reset = 1,
    Poweroff = 2,
    Halt = 3,
    Triplefault = 4,
}

impl SuspendHow {
    /// Decodes `how`; NONE (0) and unknown values are `None`.
    pub fn from_raw(how: i32) -> Option<Self> {
        match how {
            1 => Some(SuspendHow::Reset),
            2 => Some(SuspendHow::Poweroff),
            3 => Some(SuspendHow::Halt),
            4 => Some(SuspendHow::Triplefault),
            _ => None,
        }
    }
}

/// A guest MMIO access that no in-library device claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioAccess {
    pub gpa: u64,
    /// Access size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    pub write: bool,
    /// Value written (for a write).
    pub value: u64,
}

/// Why a task switch happened (`enum task_switch_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSwitchReason {
    Call = 0,
    Iret = 1,
    Jmp = 2,
    /// An event delivered through a task gate in the IDT.
    IdtGate = 3,
}

impl TaskSwitchReason {
    /// The reason numbered `raw` (FreeBSD's values), if any.
    pub fn from_raw(raw: i32) -> Option<Self> {
        [Self::Call, Self::Iret, Self::Jmp, Self::IdtGate].into_iter().find(|r| *r as i32 == raw)
    }
}

/// A hardware task switch for userland to carry out (`struct
/// vm_task_switch`; bhyve's `vmexit_task_switch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSwitch {
    /// The new task's TSS selector.
    pub tsssel: u16,
    pub reason: TaskSwitchReason,
    /// Caused by an external event (a hardware exception, NMI or
    /// interrupt delivered through a task gate).
    pub ext: bool,
    /// The error code to push on the new task's stack.
    pub errcode: Option<u32>,
}

/// Why `vm_run` returned to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Port I/O for userland to emulate. For `in`, userland sets RAX with
    /// VM_SET_REGISTER before the next VM_RUN.
    Inout { port: u16, bytes: u8, is_in: bool, eax: u32 },
    /// MMIO outside the emulated devices (VM_EXITCODE_INST_EMUL).
    Mmio(MmioAccess),
    /// INS or OUTS, always userland's (VM_EXITCODE_INOUT_STR, as FreeBSD
    /// returns every string I/O instruction): it moves the data between
    /// the port and guest memory and updates the index and count
    /// registers, restarting the instruction while items remain.
    InoutStr { port: u16, bytes: u8, is_in: bool, rep: bool },
    /// RDMSR of an MSR the library does not emulate
    /// (VM_EXITCODE_RDMSR): userland puts the value in EDX:EAX (RDX and
    /// RAX) with VM_SET_REGISTER before the next VM_RUN.
    Rdmsr { msr: u32 },
    /// WRMSR of `value` to an MSR the library does not emulate
    /// (VM_EXITCODE_WRMSR).
    Wrmsr { msr: u32, value: u64 },
    /// The guest executed PAUSE.
    Pause,
    /// One guest instruction completed with VM_CAP_MTRAP_EXIT on
    /// (VM_EXITCODE_MTRAP: a debugger's single step).
    Mtrap,
    /// INT3 with VM_CAP_BPT_EXIT on (VM_EXITCODE_BPT, one-byte
    /// instruction at the exit's RIP).
    Breakpoint,
    /// One guest instruction completed with VM_CAP_RFLAGS_TF on: its
    /// single-step #DB (VM_EXITCODE_DB, `trace_trap`; FreeBSD's SVM
    /// stepping, where there is no monitor trap flag).
    DebugTrap,
    /// Nothing to do; call VM_RUN again (VM_EXITCODE_BOGUS).
    Bogus,
    /// Another thread asked for this vCPU (VM_EXITCODE_REQIDLE).
    ReqIdle,
    /// The VM is suspended and every active vCPU has seen it.
    Suspended(SuspendHow),
    /// The vCPU is in the debug set (VM_SUSPEND_CPU).
    Debug,
    /// The guest sent a STARTUP IPI to vCPU `vcpu`, waiting since an INIT:
    /// userland starts it at `rip` (VM_EXITCODE_SPINUP_AP; FreeBSD's exit
    /// when the sender's VM_CAP_IPI_EXIT is off).
    SpinupAp { vcpu: usize, rip: u64 },
    /// The guest sent an INIT (`mode` 0x500) or STARTUP (0x600, with
    /// `vector`) IPI to `cpus`, for userland to act on (VM_EXITCODE_IPI;
    /// the sender's VM_CAP_IPI_EXIT is on).
    Ipi { mode: u32, vector: u8, cpus: CpuSet },
    /// A task switch (VM_EXITCODE_TASK_SWITCH): a CALL, JMP or IRET to a
    /// TSS (RIP at the instruction), or an event delivered through a
    /// task gate (RIP where the event interrupted the guest, length 0; the
    /// event stays in the exit intinfo, which userland clears once it has
    /// switched).
    TaskSwitch(TaskSwitch),
}

/// A complete exit: the reason plus where the guest stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmExit {
    pub kind: ExitKind,
    /// Guest RIP of the exiting instruction.
    pub rip: u64,
    /// Length of that instruction (RIP advances past it on resume).
    pub inst_length: u32,
}
