//! `struct vm_exit` (FreeBSD 14 `vmm.h`) and the structs it is built from.
//!
//! In FreeBSD the members of `vm_exit.u` are mostly anonymous structs; C
//! needs no names for them but cbindgen does, so here they are named
//! `vm_exit_<member>`. C code accesses them exactly as in FreeBSD
//! (`vme->u.inout.port`, `vme->u.hlt.rflags`, `vme->u.inst_emul.gpa`).
//!
//! `vm_inout`, `vie` and `vie_op` contain bit-fields: they are declared for
//! C in `cbindgen.toml` (`after_includes`) and excluded from generation.

#![allow(non_camel_case_types)]

use core::ffi::c_int;

use super::consts::VIE_INST_SIZE;

/// Segment descriptor as vmm sees it (`struct seg_desc`): base, limit and
/// VMX-style access rights (bit 16 = unusable).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct seg_desc {
    pub base: u64,
    pub limit: u32,
    pub access: u32,
}

/// Guest paging state needed to walk guest page tables
/// (`struct vm_guest_paging`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_guest_paging {
    pub cr3: u64,
    pub cpl: c_int,
    /// `enum vm_cpu_mode`.
    pub cpu_mode: c_int,
    /// `enum vm_paging_mode`.
    pub paging_mode: c_int,
}

/// Opcode description of a decoded instruction (`struct vie_op`).
/// Declared for C in `cbindgen.toml` together with `struct vie`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vie_op {
    pub op_byte: u8,
    pub op_type: u8,
    pub op_flags: u16,
}

/// Instruction decoding state (`struct vie`, 64 bytes). The C declaration
/// (in `cbindgen.toml`) has FreeBSD's bit-fields; here the bytes that hold
/// them are kept raw:
/// - `bits[0]` (offset 17): addrsize:4, opsize:4
/// - `bits[1]` (offset 18): rex_w, rex_r, rex_x, rex_b, rex_present,
///   repz_present, repnz_present, opsize_override (one bit each)
/// - `bits[2]` (offset 19): addrsize_override:1, segment_override:1,
///   mod:2, reg:4
/// - `bits[3]` (offset 20): rm:4, ss:2, vex_present:1, vex_l:1
/// - `bits[4]` (offset 21): index:4, base:4
/// - `vex_bits` (offset 25): vex_reg:4, vex_pp:2, _sparebits:2
///
/// Bit-fields are allocated from bit 0 upwards, as on amd64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vie {
    pub inst: [u8; VIE_INST_SIZE],
    pub num_valid: u8,
    pub num_processed: u8,
    pub bits: [u8; 5],
    pub disp_bytes: u8,
    pub imm_bytes: u8,
    pub scale: u8,
    pub vex_bits: u8,
    pub _sparebytes: [u8; 2],
    pub base_register: c_int,
    pub index_register: c_int,
    pub segment_register: c_int,
    pub displacement: i64,
    pub immediate: i64,
    pub decoded: u8,
    pub _sparebyte: u8,
    pub op: vie_op,
}

/// An I/O port access (`struct vm_inout`, 8 bytes). In C the first word
/// holds the bit-fields `bytes:3` (1, 2 or 4), `in:1`, `string:1` and
/// `rep:1`, from bit 0 up; here it is the raw `bits` word with accessors.
/// Declared for C in `cbindgen.toml`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_inout {
    pub bits: u16,
    pub port: u16,
    /// Value written, for OUT.
    pub eax: u32,
}

impl vm_inout {
    const BYTES_MASK: u16 = 0x7;
    const IN_BIT: u16 = 1 << 3;
    const STRING_BIT: u16 = 1 << 4;
    const REP_BIT: u16 = 1 << 5;

    /// Builds an access of `bytes` bytes (only the low 3 bits are kept).
    pub fn new(bytes: u8, is_in: bool, port: u16, eax: u32) -> Self {
        let mut io = vm_inout {
            bits: 0,
            port,
            eax,
        };
        io.set_bytes(bytes);
        io.set_in(is_in);
        io
    }

    /// Access size in bytes (`bytes:3`).
    pub fn bytes(&self) -> u8 {
        (self.bits & Self::BYTES_MASK) as u8
    }

    pub fn set_bytes(&mut self, bytes: u8) {
        self.bits = (self.bits & !Self::BYTES_MASK) | (u16::from(bytes) & Self::BYTES_MASK);
    }

    /// True for IN, false for OUT (`in:1`).
    pub fn is_in(&self) -> bool {
        self.bits & Self::IN_BIT != 0
    }

    pub fn set_in(&mut self, v: bool) {
        self.set_flag(Self::IN_BIT, v);
    }

    /// String instruction, INS/OUTS (`string:1`).
    pub fn string(&self) -> bool {
        self.bits & Self::STRING_BIT != 0
    }

    pub fn set_string(&mut self, v: bool) {
        self.set_flag(Self::STRING_BIT, v);
    }

    /// REP prefix (`rep:1`).
    pub fn rep(&self) -> bool {
        self.bits & Self::REP_BIT != 0
    }

    pub fn set_rep(&mut self, v: bool) {
        self.set_flag(Self::REP_BIT, v);
    }

    fn set_flag(&mut self, bit: u16, v: bool) {
        if v {
            self.bits |= bit;
        } else {
            self.bits &= !bit;
        }
    }
}

/// A string I/O access, INS/OUTS (`struct vm_inout_str`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_inout_str {
    /// Must be the first member: `u.inout` and `u.inout_str.inout` alias.
    pub inout: vm_inout,
    pub paging: vm_guest_paging,
    pub rflags: u64,
    pub cr0: u64,
    pub index: u64,
    /// Repeat count: %rcx if rep, else 1.
    pub count: u64,
    pub addrsize: c_int,
    /// `enum vm_reg_name` of the segment.
    pub seg_name: c_int,
    pub seg_desc: seg_desc,
}

/// A task switch (`struct vm_task_switch`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_task_switch {
    /// New TSS selector.
    pub tsssel: u16,
    /// Task switch due to an external event.
    pub ext: c_int,
    pub errcode: u32,
    /// Push `errcode` on the new stack.
    pub errcode_valid: c_int,
    /// `enum task_switch_reason`.
    pub reason: c_int,
    pub paging: vm_guest_paging,
}

/// `vm_exit.u.paging`: nested page fault.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_paging {
    pub gpa: u64,
    pub fault_type: c_int,
}

/// `vm_exit.u.inst_emul`: MMIO access needing instruction emulation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_inst_emul {
    pub gpa: u64,
    pub gla: u64,
    pub cs_base: u64,
    /// CS.D.
    pub cs_d: c_int,
    pub paging: vm_guest_paging,
    pub vie: vie,
}

/// `vm_exit.u.vmx`: VMX exit with no better exit code.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_vmx {
    /// VMX instruction status; the fields below depend on it being 0.
    pub status: c_int,
    pub exit_reason: u32,
    pub exit_qualification: u64,
    pub inst_type: c_int,
    pub inst_error: c_int,
}

/// `vm_exit.u.svm`: SVM exit with no better exit code.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_svm {
    pub exitcode: u64,
    pub exitinfo1: u64,
    pub exitinfo2: u64,
}

/// `vm_exit.u.bpt`: breakpoint exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_bpt {
    pub inst_length: c_int,
}

/// `vm_exit.u.dbg`: debug exit (single-stepping state).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_dbg {
    pub trace_trap: c_int,
    pub pushf_intercept: c_int,
    pub tf_shadow_val: c_int,
    pub paging: vm_guest_paging,
}

/// `vm_exit.u.msr`: RDMSR/WRMSR exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_msr {
    /// %ecx.
    pub code: u32,
    /// Value written, for WRMSR.
    pub wval: u64,
}

/// `vm_exit.u.spinup_ap`: a vCPU sent a STARTUP IPI to `vcpu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_spinup_ap {
    pub vcpu: c_int,
    pub rip: u64,
}

/// `vm_exit.u.hlt`: HLT exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_hlt {
    pub rflags: u64,
    pub intr_status: u64,
}

/// `vm_exit.u.ioapic_eoi`: EOI of a level-triggered vector.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_ioapic_eoi {
    pub vector: c_int,
}

/// `vm_exit.u.suspended`: the VM is suspended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_suspended {
    /// `enum vm_suspend_how`.
    pub how: c_int,
}

/// `vm_exit.u.mmio` (vmm_rs extension, after illumos): a guest MMIO access
/// to an address no in-library device emulates, already decoded. For a
/// write, `data` is the value written. For a read, userland puts the value
/// in RAX with VM_SET_REGISTER before the next VM_RUN, as for port `in`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_mmio {
    /// Access size in bytes: 1, 2, 4 or 8.
    pub bytes: u8,
    /// 1 for a read, 0 for a write.
    pub read: u8,
    pub _pad: [u16; 3],
    pub gpa: u64,
    pub data: u64,
}

/// Exit code of [`vm_exit_mmio`] exits (vmm_rs extension, after illumos;
/// outside FreeBSD's `enum vm_exitcode` range so it never collides with a
/// FreeBSD code). Guest MMIO that goes to userland leaves VM_RUN this way
/// in a VM set so with `vmm_rs_set_mmio_exitcode`; by default it is
/// FreeBSD's VM_EXITCODE_INST_EMUL with a decoded instruction.
pub const VM_EXITCODE_MMIO: c_int = 100;

/// `vm_exit.u.ipi`: IPI exit. The destination vCPUs are returned through
/// `vm_run.cpuset`, not here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exit_ipi {
    pub mode: u32,
    pub vector: u8,
}

/// The exit-specific part of `struct vm_exit` (FreeBSD: anonymous union
/// `u`), 120 bytes. `_raw` is a vmm_rs addition covering all of it, so the
/// union can be zeroed and copied as a whole; it is not in FreeBSD.
#[repr(C)]
#[derive(Clone, Copy)]
pub union vm_exit_u {
    pub inout: vm_inout,
    pub inout_str: vm_inout_str,
    pub paging: vm_exit_paging,
    pub inst_emul: vm_exit_inst_emul,
    pub vmx: vm_exit_vmx,
    pub svm: vm_exit_svm,
    pub bpt: vm_exit_bpt,
    pub dbg: vm_exit_dbg,
    pub msr: vm_exit_msr,
    pub spinup_ap: vm_exit_spinup_ap,
    pub hlt: vm_exit_hlt,
    pub ioapic_eoi: vm_exit_ioapic_eoi,
    pub suspended: vm_exit_suspended,
    pub ipi: vm_exit_ipi,
    pub task_switch: vm_task_switch,
    pub mmio: vm_exit_mmio,
    pub _raw: [u64; 15],
}

impl Default for vm_exit_u {
    fn default() -> Self {
        vm_exit_u { _raw: [0; 15] }
    }
}

/// Description of a VM exit (`struct vm_exit`, 136 bytes), filled in by
/// `VM_RUN` through `vm_run.vm_exit`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct vm_exit {
    /// `enum vm_exitcode`.
    pub exitcode: c_int,
    /// Length of the exiting instruction; 0 means unknown.
    pub inst_length: c_int,
    pub rip: u64,
    pub u: vm_exit_u,
}

impl core::fmt::Debug for vm_exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("vm_exit")
            .field("exitcode", &self.exitcode)
            .field("inst_length", &self.inst_length)
            .field("rip", &self.rip)
            .finish_non_exhaustive()
    }
}
