//! FreeBSD 14 enums from `vmm.h` and `vmmapi.h`, with FreeBSD's names and
//! values. They appear in the generated header for C callers; Rust receives
//! the corresponding `int`s and converts them with `TryFrom<i32>`, which
//! returns `Err(())` for values that are not a constant of the enum. The
//! `*_LAST` / `*_MAX` sentinels are constants of their enums and convert
//! successfully: callers reject them where FreeBSD does.

#![allow(non_camel_case_types)]

/// Implements `TryFrom<i32>` for a fieldless enum from the list of its
/// variants. The unit tests check every value from 0 to the sentinel, so a
/// variant missing from the list is caught.
macro_rules! c_enum_try_from {
    ($name:ident { $($variant:ident),+ $(,)? }) => {
        impl TryFrom<i32> for $name {
            type Error = ();

            fn try_from(v: i32) -> Result<Self, ()> {
                $(
                    if v == $name::$variant as i32 {
                        return Ok($name::$variant);
                    }
                )+
                Err(())
            }
        }
    };
}

/// How a VM is suspended (`enum vm_suspend_how`, `VM_SUSPEND` ioctl).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum vm_suspend_how {
    /// Not suspended; invalid as a `VM_SUSPEND` argument.
    VM_SUSPEND_NONE = 0,
    VM_SUSPEND_RESET = 1,
    VM_SUSPEND_POWEROFF = 2,
    VM_SUSPEND_HALT = 3,
    VM_SUSPEND_TRIPLEFAULT = 4,
    /// Sentinel: number of values.
    VM_SUSPEND_LAST = 5,
}

c_enum_try_from!(vm_suspend_how {
    VM_SUSPEND_NONE,
    VM_SUSPEND_RESET,
    VM_SUSPEND_POWEROFF,
    VM_SUSPEND_HALT,
    VM_SUSPEND_TRIPLEFAULT,
    VM_SUSPEND_LAST,
});

/// Guest register identifiers (`enum vm_reg_name`), used as `regnum` by
/// `VM_SET_REGISTER`, `VM_GET_REGISTER`, the register-set and
/// segment-descriptor ioctls.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum vm_reg_name {
    VM_REG_GUEST_RAX = 0,
    VM_REG_GUEST_RBX = 1,
    VM_REG_GUEST_RCX = 2,
    VM_REG_GUEST_RDX = 3,
    VM_REG_GUEST_RSI = 4,
    VM_REG_GUEST_RDI = 5,
    VM_REG_GUEST_RBP = 6,
    VM_REG_GUEST_R8 = 7,
    VM_REG_GUEST_R9 = 8,
    VM_REG_GUEST_R10 = 9,
    VM_REG_GUEST_R11 = 10,
    VM_REG_GUEST_R12 = 11,
    VM_REG_GUEST_R13 = 12,
    VM_REG_GUEST_R14 = 13,
    VM_REG_GUEST_R15 = 14,
    VM_REG_GUEST_CR0 = 15,
    VM_REG_GUEST_CR3 = 16,
    VM_REG_GUEST_CR4 = 17,
    VM_REG_GUEST_DR7 = 18,
    VM_REG_GUEST_RSP = 19,
    VM_REG_GUEST_RIP = 20,
    VM_REG_GUEST_RFLAGS = 21,
    VM_REG_GUEST_ES = 22,
    VM_REG_GUEST_CS = 23,
    VM_REG_GUEST_SS = 24,
    VM_REG_GUEST_DS = 25,
    VM_REG_GUEST_FS = 26,
    VM_REG_GUEST_GS = 27,
    VM_REG_GUEST_LDTR = 28,
    VM_REG_GUEST_TR = 29,
    VM_REG_GUEST_IDTR = 30,
    VM_REG_GUEST_GDTR = 31,
    VM_REG_GUEST_EFER = 32,
    VM_REG_GUEST_CR2 = 33,
    VM_REG_GUEST_PDPTE0 = 34,
    VM_REG_GUEST_PDPTE1 = 35,
    VM_REG_GUEST_PDPTE2 = 36,
    VM_REG_GUEST_PDPTE3 = 37,
    VM_REG_GUEST_INTR_SHADOW = 38,
    VM_REG_GUEST_DR0 = 39,
    VM_REG_GUEST_DR1 = 40,
    VM_REG_GUEST_DR2 = 41,
    VM_REG_GUEST_DR3 = 42,
    VM_REG_GUEST_DR6 = 43,
    VM_REG_GUEST_ENTRY_INST_LENGTH = 44,
    VM_REG_GUEST_FS_BASE = 45,
    VM_REG_GUEST_GS_BASE = 46,
    VM_REG_GUEST_KGS_BASE = 47,
    VM_REG_GUEST_TPR = 48,
    /// Sentinel: number of registers.
    VM_REG_LAST = 49,
}

c_enum_try_from!(vm_reg_name {
    VM_REG_GUEST_RAX,
    VM_REG_GUEST_RBX,
    VM_REG_GUEST_RCX,
    VM_REG_GUEST_RDX,
    VM_REG_GUEST_RSI,
    VM_REG_GUEST_RDI,
    VM_REG_GUEST_RBP,
    VM_REG_GUEST_R8,
    VM_REG_GUEST_R9,
    VM_REG_GUEST_R10,
    VM_REG_GUEST_R11,
    VM_REG_GUEST_R12,
    VM_REG_GUEST_R13,
    VM_REG_GUEST_R14,
    VM_REG_GUEST_R15,
    VM_REG_GUEST_CR0,
    VM_REG_GUEST_CR3,
    VM_REG_GUEST_CR4,
    VM_REG_GUEST_DR7,
    VM_REG_GUEST_RSP,
    VM_REG_GUEST_RIP,
    VM_REG_GUEST_RFLAGS,
    VM_REG_GUEST_ES,
    VM_REG_GUEST_CS,
    VM_REG_GUEST_SS,
    VM_REG_GUEST_DS,
    VM_REG_GUEST_FS,
    VM_REG_GUEST_GS,
    VM_REG_GUEST_LDTR,
    VM_REG_GUEST_TR,
    VM_REG_GUEST_IDTR,
    VM_REG_GUEST_GDTR,
    VM_REG_GUEST_EFER,
    VM_REG_GUEST_CR2,
    VM_REG_GUEST_PDPTE0,
    VM_REG_GUEST_PDPTE1,
    VM_REG_GUEST_PDPTE2,
    VM_REG_GUEST_PDPTE3,
    VM_REG_GUEST_INTR_SHADOW,
    VM_REG_GUEST_DR0,
    VM_REG_GUEST_DR1,
    VM_REG_GUEST_DR2,
    VM_REG_GUEST_DR3,
    VM_REG_GUEST_DR6,
    VM_REG_GUEST_ENTRY_INST_LENGTH,
    VM_REG_GUEST_FS_BASE,
    VM_REG_GUEST_GS_BASE,
    VM_REG_GUEST_KGS_BASE,
    VM_REG_GUEST_TPR,
    VM_REG_LAST,
});

/// Local APIC x2APIC mode of a vCPU (`enum x2apic_state`,
/// `VM_SET_X2APIC_STATE` / `VM_GET_X2APIC_STATE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum x2apic_state {
    X2APIC_DISABLED = 0,
    X2APIC_ENABLED = 1,
    /// Sentinel: number of states.
    X2APIC_STATE_LAST = 2,
}

c_enum_try_from!(x2apic_state {
    X2APIC_DISABLED,
    X2APIC_ENABLED,
    X2APIC_STATE_LAST,
});

/// Optional vCPU capabilities (`enum vm_cap_type`, `VM_SET_CAPABILITY` /
/// `VM_GET_CAPABILITY`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum vm_cap_type {
    VM_CAP_HALT_EXIT = 0,
    VM_CAP_MTRAP_EXIT = 1,
    VM_CAP_PAUSE_EXIT = 2,
    VM_CAP_UNRESTRICTED_GUEST = 3,
    VM_CAP_ENABLE_INVPCID = 4,
    VM_CAP_BPT_EXIT = 5,
    VM_CAP_RDPID = 6,
    VM_CAP_RDTSCP = 7,
    VM_CAP_IPI_EXIT = 8,
    VM_CAP_MASK_HWINTR = 9,
    VM_CAP_RFLAGS_TF = 10,
    /// Sentinel: number of capabilities.
    VM_CAP_MAX = 11,
}

c_enum_try_from!(vm_cap_type {
    VM_CAP_HALT_EXIT,
    VM_CAP_MTRAP_EXIT,
    VM_CAP_PAUSE_EXIT,
    VM_CAP_UNRESTRICTED_GUEST,
    VM_CAP_ENABLE_INVPCID,
    VM_CAP_BPT_EXIT,
    VM_CAP_RDPID,
    VM_CAP_RDTSCP,
    VM_CAP_IPI_EXIT,
    VM_CAP_MASK_HWINTR,
    VM_CAP_RFLAGS_TF,
    VM_CAP_MAX,
});

/// Trigger mode of an ISA interrupt (`enum vm_intr_trigger`,
/// `VM_ISA_SET_IRQ_TRIGGER`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum vm_intr_trigger {
    EDGE_TRIGGER = 0,
    LEVEL_TRIGGER = 1,
}

c_enum_try_from!(vm_intr_trigger {
    EDGE_TRIGGER,
    LEVEL_TRIGGER,
});

/// Processor mode of the guest (`enum vm_cpu_mode`, in
/// `struct vm_guest_paging`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum vm_cpu_mode {
    CPU_MODE_REAL = 0,
    CPU_MODE_PROTECTED = 1,
    /// IA-32e mode with CS.L = 0.
    CPU_MODE_COMPATIBILITY = 2,
    /// IA-32e mode with CS.L = 1.
    CPU_MODE_64BIT = 3,
}

c_enum_try_from!(vm_cpu_mode {
    CPU_MODE_REAL,
    CPU_MODE_PROTECTED,
    CPU_MODE_COMPATIBILITY,
    CPU_MODE_64BIT,
});

/// Paging mode of the guest (`enum vm_paging_mode`, in
/// `struct vm_guest_paging`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum vm_paging_mode {
    PAGING_MODE_FLAT = 0,
    PAGING_MODE_32 = 1,
    PAGING_MODE_PAE = 2,
    PAGING_MODE_64 = 3,
    PAGING_MODE_64_LA57 = 4,
}

c_enum_try_from!(vm_paging_mode {
    PAGING_MODE_FLAT,
    PAGING_MODE_32,
    PAGING_MODE_PAE,
    PAGING_MODE_64,
    PAGING_MODE_64_LA57,
});

/// Why a task switch happened (`enum task_switch_reason`, in
/// `struct vm_task_switch`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum task_switch_reason {
    TSR_CALL = 0,
    TSR_IRET = 1,
    TSR_JMP = 2,
    /// Task gate in the IDT.
    TSR_IDT_GATE = 3,
}

c_enum_try_from!(task_switch_reason {
    TSR_CALL,
    TSR_IRET,
    TSR_JMP,
    TSR_IDT_GATE,
});

/// Reason of a VM exit (`enum vm_exitcode`, `struct vm_exit.exitcode`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum vm_exitcode {
    VM_EXITCODE_INOUT = 0,
    VM_EXITCODE_VMX = 1,
    VM_EXITCODE_BOGUS = 2,
    VM_EXITCODE_RDMSR = 3,
    VM_EXITCODE_WRMSR = 4,
    VM_EXITCODE_HLT = 5,
    VM_EXITCODE_MTRAP = 6,
    VM_EXITCODE_PAUSE = 7,
    VM_EXITCODE_PAGING = 8,
    VM_EXITCODE_INST_EMUL = 9,
    VM_EXITCODE_SPINUP_AP = 10,
    /// Formerly SPINDOWN_CPU.
    VM_EXITCODE_DEPRECATED1 = 11,
    VM_EXITCODE_RENDEZVOUS = 12,
    VM_EXITCODE_IOAPIC_EOI = 13,
    VM_EXITCODE_SUSPENDED = 14,
    VM_EXITCODE_INOUT_STR = 15,
    VM_EXITCODE_TASK_SWITCH = 16,
    VM_EXITCODE_MONITOR = 17,
    VM_EXITCODE_MWAIT = 18,
    VM_EXITCODE_SVM = 19,
    VM_EXITCODE_REQIDLE = 20,
    VM_EXITCODE_DEBUG = 21,
    VM_EXITCODE_VMINSN = 22,
    VM_EXITCODE_BPT = 23,
    VM_EXITCODE_IPI = 24,
    VM_EXITCODE_DB = 25,
    /// Sentinel: number of exit codes.
    VM_EXITCODE_MAX = 26,
}

c_enum_try_from!(vm_exitcode {
    VM_EXITCODE_INOUT,
    VM_EXITCODE_VMX,
    VM_EXITCODE_BOGUS,
    VM_EXITCODE_RDMSR,
    VM_EXITCODE_WRMSR,
    VM_EXITCODE_HLT,
    VM_EXITCODE_MTRAP,
    VM_EXITCODE_PAUSE,
    VM_EXITCODE_PAGING,
    VM_EXITCODE_INST_EMUL,
    VM_EXITCODE_SPINUP_AP,
    VM_EXITCODE_DEPRECATED1,
    VM_EXITCODE_RENDEZVOUS,
    VM_EXITCODE_IOAPIC_EOI,
    VM_EXITCODE_SUSPENDED,
    VM_EXITCODE_INOUT_STR,
    VM_EXITCODE_TASK_SWITCH,
    VM_EXITCODE_MONITOR,
    VM_EXITCODE_MWAIT,
    VM_EXITCODE_SVM,
    VM_EXITCODE_REQIDLE,
    VM_EXITCODE_DEBUG,
    VM_EXITCODE_VMINSN,
    VM_EXITCODE_BPT,
    VM_EXITCODE_IPI,
    VM_EXITCODE_DB,
    VM_EXITCODE_MAX,
});

/// How `vm_setup_memory()` maps guest memory into the calling process
/// (`enum vm_mmap_style`, `vmmapi.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum vm_mmap_style {
    /// No mapping.
    VM_MMAP_NONE = 0,
    /// Fully and statically mapped.
    VM_MMAP_ALL = 1,
    /// Mappings created on demand.
    VM_MMAP_SPARSE = 2,
}

c_enum_try_from!(vm_mmap_style {
    VM_MMAP_NONE,
    VM_MMAP_ALL,
    VM_MMAP_SPARSE,
});

/// The enum arguments of libvmmapi functions, received as the `int` C
/// passes: a value outside the enum is then an error (EINVAL), not
/// undefined behaviour. The header declares each with FreeBSD's enum type
/// (cbindgen.toml renames these names), so that FreeBSD's own prototypes
/// and function-pointer types of these functions match ours.
pub type vm_cap_type_arg = std::ffi::c_int;
pub type vm_suspend_how_arg = std::ffi::c_int;
pub type vm_mmap_style_arg = std::ffi::c_int;
pub type vm_intr_trigger_arg = std::ffi::c_int;
pub type x2apic_state_arg = std::ffi::c_int;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value in `0..=$last` converts to the variant with that value,
    /// and values outside the range are rejected.
    macro_rules! check_dense {
        ($t:ty, $last:expr) => {{
            let last = $last as i32;
            for v in 0..=last {
                let e = <$t>::try_from(v).unwrap_or_else(|_| panic!("{v} rejected"));
                assert_eq!(e as i32, v, "{e:?}");
            }
            for v in [-1, last + 1, i32::MAX, i32::MIN] {
                assert!(<$t>::try_from(v).is_err(), "{v} accepted");
            }
        }};
    }

    #[test]
    fn try_from_round_trips() {
        check_dense!(vm_suspend_how, vm_suspend_how::VM_SUSPEND_LAST);
        check_dense!(vm_reg_name, vm_reg_name::VM_REG_LAST);
        check_dense!(x2apic_state, x2apic_state::X2APIC_STATE_LAST);
        check_dense!(vm_cap_type, vm_cap_type::VM_CAP_MAX);
        check_dense!(vm_intr_trigger, vm_intr_trigger::LEVEL_TRIGGER);
        check_dense!(vm_cpu_mode, vm_cpu_mode::CPU_MODE_64BIT);
        check_dense!(vm_paging_mode, vm_paging_mode::PAGING_MODE_64_LA57);
        check_dense!(task_switch_reason, task_switch_reason::TSR_IDT_GATE);
        check_dense!(vm_exitcode, vm_exitcode::VM_EXITCODE_MAX);
        check_dense!(vm_mmap_style, vm_mmap_style::VM_MMAP_SPARSE);
    }

    /// vmm_rs's MMIO exit code lies outside FreeBSD's `enum vm_exitcode`,
    /// sentinel included, so it never collides with a FreeBSD code.
    #[test]
    fn the_mmio_exit_code_is_no_freebsd_exit_code() {
        use super::super::exit::VM_EXITCODE_MMIO;
        assert!(vm_exitcode::try_from(VM_EXITCODE_MMIO).is_err());
        assert_eq!(VM_EXITCODE_MMIO, 100);
    }

    #[test]
    fn freebsd_values() {
        // Spot checks of values other code relies on (semantics.md).
        assert_eq!(vm_suspend_how::VM_SUSPEND_TRIPLEFAULT as i32, 4);
        assert_eq!(vm_reg_name::VM_REG_GUEST_RIP as i32, 20);
        assert_eq!(vm_reg_name::VM_REG_GUEST_TPR as i32, 48);
        assert_eq!(vm_exitcode::VM_EXITCODE_SUSPENDED as i32, 14);
        assert_eq!(vm_exitcode::VM_EXITCODE_DB as i32, 25);
        assert_eq!(vm_cap_type::VM_CAP_RFLAGS_TF as i32, 10);
    }
}
