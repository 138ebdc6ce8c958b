//! Per-vCPU architectural state the VMM keeps for the guest: the register
//! file (FreeBSD `enum vm_reg_name` order), segment descriptors,
//! capabilities, and event-injection state (intinfo, pending exception).

use crate::error::{Error, Result};

mod boot;
pub mod msr;
mod paging;
pub use boot::{freebsd_gdt32, FREEBSD_GDT64, I386_TSS_SIZE};
pub use msr::{GuestMsrs, MsrAccess};
pub use paging::CodeSegment;

/// Register numbers, FreeBSD 14 `enum vm_reg_name` values.
pub mod reg {
    pub const RAX: usize = 0;
    pub const RBX: usize = 1;
    pub const RCX: usize = 2;
    pub const RDX: usize = 3;
    pub const RSI: usize = 4;
    pub const RDI: usize = 5;
    pub const RBP: usize = 6;
    pub const R8: usize = 7;
    pub const R15: usize = 14;
    pub const CR0: usize = 15;
    pub const CR3: usize = 16;
    pub const CR4: usize = 17;
    pub const DR7: usize = 18;
    pub const RSP: usize = 19;
    pub const RIP: usize = 20;
    pub const RFLAGS: usize = 21;
    /// First segment register (ES); ES..TR are 22..=29.
    pub const ES: usize = 22;
    pub const CS: usize = 23;
    pub const SS: usize = 24;
    pub const DS: usize = 25;
    pub const FS: usize = 26;
    pub const GS: usize = 27;
    pub const LDTR: usize = 28;
    pub const TR: usize = 29;
    pub const IDTR: usize = 30;
    pub const GDTR: usize = 31;
    pub const EFER: usize = 32;
    pub const CR2: usize = 33;
    pub const INTR_SHADOW: usize = 38;
    /// VMX's VM-entry instruction length: how far past RIP a software
    /// event's handler returns.
    pub const ENTRY_INST_LENGTH: usize = 44;
    pub const DR6: usize = 43;
    pub const FS_BASE: usize = 45;
    pub const GS_BASE: usize = 46;
    pub const KGS_BASE: usize = 47;
    /// The local APIC's task priority as CR8 (read only).
    pub const TPR: usize = 48;
    /// `VM_REG_LAST`: number of registers.
    pub const LAST: usize = 49;
}

/// Capabilities, FreeBSD 14 `enum vm_cap_type` (`VM_CAP_MAX` is the count).
pub const CAP_MAX: usize = 11;
/// VM_CAP_HALT_EXIT: HLT exits (and the vCPU sleeps in the library, as
/// FreeBSD's `vm_handle_hlt`); off, the guest halts in its activity state.
/// On by default, as FreeBSD's SVM backend ("exit-on-hlt by default").
pub const CAP_HALT_EXIT: i32 = 0;
/// VM_CAP_MTRAP_EXIT: exit after every guest instruction (VM_EXITCODE_MTRAP).
pub const CAP_MTRAP_EXIT: i32 = 1;
/// VM_CAP_PAUSE_EXIT: PAUSE exits to userland (VM_EXITCODE_PAUSE); off by
/// default, as both FreeBSD backends, PAUSE runs in the guest.
pub const CAP_PAUSE_EXIT: i32 = 2;
/// VM_CAP_BPT_EXIT: INT3 exits (VM_EXITCODE_BPT) instead of #BP.
pub const CAP_BPT_EXIT: i32 = 5;
/// VM_CAP_ENABLE_INVPCID: CPUID reports INVPCID (off by default).
pub const CAP_ENABLE_INVPCID: i32 = 4;
/// VM_CAP_RDPID, VM_CAP_RDTSCP: the guest has the instructions. Always
/// on, as on FreeBSD's VMX backend on a host that has them (it enables
/// them for every vCPU and refuses to change them).
pub const CAP_RDPID: i32 = 6;
pub const CAP_RDTSCP: i32 = 7;
/// VM_CAP_UNRESTRICTED_GUEST: real mode and unpaged protected mode.
pub const CAP_UNRESTRICTED_GUEST: i32 = 3;
/// VM_CAP_IPI_EXIT: INIT and STARTUP IPIs leave VM_RUN as VM_EXITCODE_IPI.
pub const CAP_IPI_EXIT: i32 = 8;
/// VM_CAP_MASK_HWINTR: no event is injected on guest entry (a debugger
/// stepping the guest does not want to land in interrupt handlers).
pub const CAP_MASK_HWINTR: i32 = 9;
/// A debugger stepping the guest, one exit per completed instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepping {
    /// VM_CAP_MTRAP_EXIT: VM_EXITCODE_MTRAP.
    MonitorTrap,
    /// VM_CAP_RFLAGS_TF: the #DB of RFLAGS.TF, VM_EXITCODE_DB.
    RflagsTf,
}

/// VM_CAP_RFLAGS_TF: single-stepping as FreeBSD's SVM backend does it
/// (bhyve's gdb stub uses it where VM_CAP_MTRAP_EXIT fails): RFLAGS.TF is
/// set, the guest's own TF kept aside until the capability goes off, and
/// the #DB each instruction raises exits as VM_EXITCODE_DB.
pub const CAP_RFLAGS_TF: i32 = 10;

/// RFLAGS.IF: the guest accepts maskable interrupts.
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.TF: trap after the next instruction (#DB).
pub const RFLAGS_TF: u64 = 1 << 8;

/// A segment descriptor (`struct seg_desc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegDesc {
    pub base: u64,
    pub limit: u32,
    pub access: u32,
}

/// `VM_INTINFO_*` bits of an event-injection word (Intel format).
pub mod intinfo {
    pub const VECTOR: u64 = 0xff;
    pub const DEL_ERRCODE: u64 = 0x800;
    pub const TYPE: u64 = 0x700;
    pub const HWINTR: u64 = 0 << 8;
    pub const NMI: u64 = 2 << 8;
    pub const HWEXCEPTION: u64 = 3 << 8;
    pub const SWINTR: u64 = 4 << 8;
    /// VMX's type of INT1 (ICEBP).
    pub const PRIV_SWEXCEPTION: u64 = 5 << 8;
    pub const SWEXCEPTION: u64 = 6 << 8;
    pub const RSVD: u64 = 0x7fff_f000;
    pub const VALID: u64 = 1 << 31;
}

const IDT_NMI: u64 = 2;
const IDT_DF: i32 = 8;
/// Invalid opcode, general protection and page fault vectors.
pub const IDT_UD: i32 = 6;
pub const IDT_GP: i32 = 13;
pub const IDT_PF: i32 = 14;

/// What a guest entry must inject from the intinfo state (FreeBSD
/// `vm_entry_intinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryEvent {
    /// This intinfo word's event.
    Inject(u64),
    /// An exception while delivering a double fault: shutdown.
    TripleFault,
}

/// Exception classes of Intel SDM vol. 3 table 6-4, for nested faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExcClass {
    Benign,
    Contributory,
    PageFault,
}

fn exception_class(info: u64) -> ExcClass {
    if matches!(info & intinfo::TYPE, intinfo::HWINTR | intinfo::NMI | intinfo::SWINTR) {
        return ExcClass::Benign;
    }
    match info & intinfo::VECTOR {
        14 | 20 => ExcClass::PageFault,                  // #PF, #VE
        0 | 10 | 11 | 12 | 13 => ExcClass::Contributory, // #DE, #TS, #NP, #SS, #GP
        _ => ExcClass::Benign,
    }
}
/// Control-register and EFER bits the register-state code reads and
/// sets (here and in the `boot` and `paging` submodules).
/// CR0.PE: protected mode.
const CR0_PE: u64 = 1;
/// CR0.NE: native FPU error reporting.
const CR0_NE: u64 = 1 << 5;
/// CR0.PG: paging.
const CR0_PG: u64 = 1 << 31;
/// CR4.PAE: PAE (and long-mode) page tables.
const CR4_PAE: u64 = 1 << 5;
/// CR4.LA57: 5-level paging.
const CR4_LA57: u64 = 1 << 12;
/// EFER.LME and EFER.LMA: long mode enabled, and active.
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Architectural state of one vCPU. Owned by whoever holds the vCPU
/// FROZEN or RUNNING; the `Vm` keeps it behind a per-vCPU leaf mutex.
#[derive(Debug, Clone)]
pub struct VcpuRegs {
    regs: [u64; reg::LAST],
    /// Descriptors for ES..=TR (0..8), IDTR (8), GDTR (9).
    segs: [SegDesc; 10],
    caps: [i32; CAP_MAX],
    /// Event the guest was delivering when it exited (`exitintinfo`).
    pub exitintinfo: u64,
    /// Exception queued with VM_INJECT_EXCEPTION, as an intinfo word.
    pub exc_pending: Option<u64>,
    /// RIP at which the guest resumes (VM_RESTART_INSTRUCTION rewinds it).
    pub nextrip: u64,
    /// The guest's activity state is HLT: it executed HLT without
    /// VM_CAP_HALT_EXIT and has not yet taken the NMI or interrupt that
    /// ends it (the VMCS/VMCB keeps this across exits to userland).
    pub halted: bool,
    /// The MSRs kept beside the register file (see `msr`).
    pub msrs: GuestMsrs,
    /// The guest's own RFLAGS.TF while VM_CAP_RFLAGS_TF steps it.
    tf_shadow: u64,
}

impl Default for VcpuRegs {
    fn default() -> Self {
        let mut r = VcpuRegs {
            regs: [0; reg::LAST],
            segs: [SegDesc::default(); 10],
            caps: [0; CAP_MAX],
            exitintinfo: 0,
            exc_pending: None,
            nextrip: 0,
            halted: false,
            msrs: GuestMsrs::default(),
            tf_shadow: 0,
        };
        // Bit 1 of RFLAGS is reserved and reads as one.
        r.regs[reg::RFLAGS] = 0x2;
        // DR6 and DR7 at their power-on values, as FreeBSD's backends set
        // them for a new vCPU (svm.c vmcb_init, vmx.c vmx_vcpu_init).
        r.regs[reg::DR6] = 0xffff_0ff0;
        r.regs[reg::DR7] = 0x400;
        r.caps[CAP_HALT_EXIT as usize] = 1;
        r.caps[CAP_RDTSCP as usize] = 1;
        r.caps[CAP_RDPID as usize] = 1;
        r
    }
}

fn reg_index(regnum: i32) -> Result<usize> {
    usize::try_from(regnum)
        .ok()
        .filter(|r| *r < reg::LAST)
        .ok_or(Error::Inval)
}

/// A register with a value of its own: not GDTR or IDTR.
fn scalar_index(regnum: i32) -> Result<usize> {
    match reg_index(regnum)? {
        reg::IDTR | reg::GDTR => Err(Error::Inval),
        r => Ok(r),
    }
}

fn seg_index(regnum: i32) -> Result<usize> {
    let r = reg_index(regnum)?;
    match r {
        reg::ES..=reg::TR => Ok(r - reg::ES),
        reg::IDTR => Ok(8),
        reg::GDTR => Ok(9),
        _ => Err(Error::Inval),
    }
}

fn cap_index(cap: i32) -> Result<usize> {
    usize::try_from(cap)
        .ok()
        .filter(|c| *c < CAP_MAX)
        .ok_or(Error::Inval)
}

impl VcpuRegs {
    /// `vm_get_register`; EINVAL for an unknown register, and for GDTR and
    /// IDTR, which have descriptors only (FreeBSD VMX and SVM). FS_BASE
    /// and GS_BASE are the FS and GS descriptors' bases (the processor
    /// has one of each).
    pub fn get(&self, regnum: i32) -> Result<u64> {
        Ok(match scalar_index(regnum)? {
            reg::FS_BASE => self.segs[reg::FS - reg::ES].base,
            reg::GS_BASE => self.segs[reg::GS - reg::ES].base,
            r => self.regs[r],
        })
    }

    /// `vm_set_register`; setting RIP also sets where the guest resumes,
    /// a segment register (ES..TR) keeps the selector's 16 bits,
    /// ENTRY_INST_LENGTH its low 32 bits (a 32-bit VMCS field),
    /// setting FS_BASE or GS_BASE the descriptor's base. INTR_SHADOW takes
    /// 0 only (EINVAL otherwise, as FreeBSD's `vmx_setreg`): the shadow is
    /// the backend's, which `Vm::set_register` ends.
    pub fn set(&mut self, regnum: i32, val: u64) -> Result<()> {
        match scalar_index(regnum)? {
            reg::INTR_SHADOW if val != 0 => return Err(Error::Inval),
            reg::FS_BASE => self.segs[reg::FS - reg::ES].base = val,
            reg::GS_BASE => self.segs[reg::GS - reg::ES].base = val,
            // Selectors are 16 bits (a VMCS or VMCB field that wide).
            r @ reg::ES..=reg::TR => self.regs[r] = val & 0xffff,
            // VMX's VM-entry instruction length is a 32-bit VMCS field
            // (`vmcs_setreg`: VMWRITE drops the high bits).
            reg::ENTRY_INST_LENGTH => self.regs[reg::ENTRY_INST_LENGTH] = val & 0xffff_ffff,
            r => {
                self.regs[r] = val;
                if r == reg::RIP {
                    self.nextrip = val;
                }
            }
        }
        Ok(())
    }

    pub fn rip(&self) -> u64 {
        self.regs[reg::RIP]
    }

    /// `vm_restart_instruction` on a vCPU out of the guest: it resumes at
    /// RIP, the instruction that last exited, instead of after it.
    pub fn restart_instruction(&mut self) {
        self.nextrip = self.regs[reg::RIP];
    }

    pub fn get_seg(&self, regnum: i32) -> Result<SegDesc> {
        Ok(self.segs[seg_index(regnum)?])
    }

    /// `vm_set_seg_desc`. GDTR and IDTR keep their base and limit only:
    /// neither backend stores a descriptor table's access rights
    /// (FreeBSD `vmcs_setdesc`, `vmcb_setdesc`), so they read 0.
    pub fn set_seg(&mut self, regnum: i32, desc: SegDesc) -> Result<()> {
        let i = seg_index(regnum)?;
        let access = if i >= 8 { 0 } else { desc.access };
        self.segs[i] = SegDesc { access, ..desc };
        Ok(())
    }

    pub fn get_cap(&self, cap: i32) -> Result<i32> {
        Ok(self.caps[cap_index(cap)?])
    }

    /// A capability is on or off: any non-zero value reads back as 1, as
    /// FreeBSD's `vmx_getcap`/`svm_getcap`. RDTSCP and RDPID are always
    /// on and cannot be changed (ENOENT, what FreeBSD's `vmx_setcap`
    /// returns for them on a host that has them).
    pub fn set_cap(&mut self, cap: i32, val: i32) -> Result<()> {
        let i = cap_index(cap)?;
        if cap == CAP_RDTSCP || cap == CAP_RDPID {
            return Err(Error::NoEnt);
        }
        if cap == CAP_RFLAGS_TF {
            self.set_rflags_tf_stepping(val != 0);
        }
        self.caps[i] = i32::from(val != 0);
        Ok(())
    }

    /// VM_CAP_RFLAGS_TF on: the guest's TF kept aside, TF set; off (after
    /// on): TF back to the guest's (FreeBSD `svm_setcap`; a second "on"
    /// keeps the guest's TF from the first, where FreeBSD would keep the
    /// TF it set itself).
    fn set_rflags_tf_stepping(&mut self, on: bool) {
        let was_on = self.caps[CAP_RFLAGS_TF as usize] != 0;
        let rflags = &mut self.regs[reg::RFLAGS];
        if on {
            if !was_on {
                self.tf_shadow = *rflags & RFLAGS_TF;
            }
            *rflags |= RFLAGS_TF;
        } else if was_on {
            *rflags = (*rflags & !RFLAGS_TF) | self.tf_shadow;
            self.tf_shadow = 0;
        }
    }

    /// Whether the guest traps (#DB) after each instruction for a
    /// debugger: VM_CAP_RFLAGS_TF on and TF still set.
    pub fn rflags_tf_stepping(&self) -> bool {
        self.caps[CAP_RFLAGS_TF as usize] != 0 && self.regs[reg::RFLAGS] & RFLAGS_TF != 0
    }

    /// How a debugger steps the guest, if it does: the monitor trap flag
    /// first (VMX), else RFLAGS.TF (SVM).
    pub fn stepping(&self) -> Option<Stepping> {
        if self.caps[CAP_MTRAP_EXIT as usize] != 0 {
            Some(Stepping::MonitorTrap)
        } else if self.rflags_tf_stepping() {
            Some(Stepping::RflagsTf)
        } else {
            None
        }
    }

    /// `vm_exit_intinfo`: validate and record the event being delivered at
    /// exit. An invalid word (VALID clear) records 0.
    pub fn set_exitintinfo(&mut self, info: u64) -> Result<()> {
        let info = if info & intinfo::VALID != 0 {
            let ty = info & intinfo::TYPE;
            let vector = info & intinfo::VECTOR;
            if ty == intinfo::NMI && vector != IDT_NMI {
                return Err(Error::Inval);
            }
            if ty == intinfo::HWEXCEPTION && vector >= 32 {
                return Err(Error::Inval);
            }
            if info & intinfo::RSVD != 0 {
                return Err(Error::Inval);
            }
            info
        } else {
            0
        };
        self.exitintinfo = info;
        Ok(())
    }

    /// `vm_entry_intinfo`: the event the next guest entry injects, taken
    /// out of the exit intinfo and the pending exception (both cleared).
    /// Both at once is a nested fault (`nested_fault`): after #DF a triple
    /// fault, two contributory faults or a page fault then a non-benign one
    /// a #DF, otherwise the new exception.
    pub fn entry_intinfo(&mut self) -> Option<EntryEvent> {
        let info1 = std::mem::take(&mut self.exitintinfo);
        let info2 = self.exc_pending.take().unwrap_or(0);
        let (v1, v2) = (info1 & intinfo::VALID != 0, info2 & intinfo::VALID != 0);
        match (v1, v2) {
            (true, true) => {
                let df1 = info1 & intinfo::TYPE == intinfo::HWEXCEPTION
                    && info1 & intinfo::VECTOR == IDT_DF as u64;
                if df1 {
                    return Some(EntryEvent::TripleFault);
                }
                let (c1, c2) = (exception_class(info1), exception_class(info2));
                let double = (c1 == ExcClass::Contributory && c2 == ExcClass::Contributory)
                    || (c1 == ExcClass::PageFault && c2 != ExcClass::Benign);
                Some(EntryEvent::Inject(if double {
                    intinfo::VALID | intinfo::HWEXCEPTION | intinfo::DEL_ERRCODE | IDT_DF as u64
                } else {
                    info2
                }))
            }
            (true, false) => Some(EntryEvent::Inject(info1)),
            (false, true) => Some(EntryEvent::Inject(info2)),
            (false, false) => None,
        }
    }

    /// Whether the next entry has an event to deliver besides interrupts:
    /// an interrupted event or a queued exception.
    pub fn event_queued(&self) -> bool {
        self.exitintinfo & intinfo::VALID != 0 || self.exc_pending.is_some()
    }

    /// `vm_get_intinfo`: (exitintinfo, pending exception as intinfo).
    pub fn intinfo(&self) -> (u64, u64) {
        (self.exitintinfo, self.exc_pending.unwrap_or(0))
    }

    /// `vm_inject_exception`, as FreeBSD 14: queue an exception; EINVAL for
    /// a vector outside 0..32 or #DF (a double fault only ever results
    /// from nested faults), EBUSY if one is already pending. The error code
    /// is dropped in real mode (CR0.PE clear). The interrupt shadow (STI /
    /// MOV SS blocking), which ends as when the guest incurs an exception,
    /// is the backend's: `Vm::inject_exception` ends it.
    pub fn inject_exception(
        &mut self,
        vector: i32,
        errcode: Option<u32>,
        restart_instruction: bool,
    ) -> Result<()> {
        if !(0..32).contains(&vector) || vector == IDT_DF {
            return Err(Error::Inval);
        }
        if self.exc_pending.is_some() {
            return Err(Error::Busy);
        }
        let errcode = errcode.filter(|_| self.regs[reg::CR0] & CR0_PE != 0);
        let mut info = intinfo::VALID | intinfo::HWEXCEPTION | vector as u64;
        if let Some(code) = errcode {
            info |= intinfo::DEL_ERRCODE | (u64::from(code) << 32);
        }
        if restart_instruction {
            self.restart_instruction();
        }
        self.exc_pending = Some(info);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_vcpu_has_the_debug_registers_at_their_reset_values() {
        // FreeBSD's backends set DR6 and DR7 when they create a vCPU (and
        // again at VM_REINIT): svm.c vmcb_init, vmx.c vmx_vcpu_init.
        let r = VcpuRegs::default();
        let g = |n: usize| r.get(n as i32).unwrap();
        assert_eq!((g(reg::DR6), g(reg::DR7)), (0xffff_0ff0, 0x400));
        assert_eq!((g(39), g(42), g(reg::RFLAGS)), (0, 0, 2), "DR0, DR3, RFLAGS");
    }

    #[test]
    fn registers_round_trip_and_reject_unknown() {
        let mut r = VcpuRegs::default();
        for i in 0..reg::LAST as i32 {
            if i == reg::IDTR as i32 || i == reg::GDTR as i32 {
                assert_eq!(r.set(i, 1), Err(Error::Inval), "descriptor-only register {i}");
                assert_eq!(r.get(i), Err(Error::Inval));
                continue;
            }
            if i == reg::INTR_SHADOW as i32 {
                // Only 0 (the backend's shadow ends).
                assert_eq!(r.set(i, 1), Err(Error::Inval));
                continue;
            }
            r.set(i, 0x1000 + i as u64).unwrap();
            assert_eq!(r.get(i), Ok(0x1000 + i as u64));
        }
        assert_eq!(r.get(reg::LAST as i32), Err(Error::Inval));
        assert_eq!(r.set(-1, 0), Err(Error::Inval));
        r.set(reg::RIP as i32, 0xfff0).unwrap();
        assert_eq!(r.nextrip, 0xfff0);
    }

    /// FreeBSD keeps segment selectors in 16-bit fields on both backends
    /// (VMX `vmcs_setreg`: a VMWRITE to a 16-bit VMCS field drops the
    /// high bits; SVM `vmcb_write`: `seg->selector`, a `uint16_t`), so
    /// VM_SET_REGISTER of ES..TR keeps the low 16 bits.
    #[test]
    fn segment_selectors_are_16_bits() {
        let mut r = VcpuRegs::default();
        for i in reg::ES..=reg::TR {
            r.set(i as i32, 0xdead_0008).unwrap();
            assert_eq!(r.get(i as i32), Ok(0x0008), "selector {i}");
        }
    }

    /// FreeBSD `vmx_setreg` -> `vmcs_setreg`: VM_REG_GUEST_ENTRY_INST_LENGTH
    /// is the VMCS's VM-entry instruction length, a 32-bit field, so a
    /// VMWRITE keeps the value's low 32 bits.
    #[test]
    fn entry_instruction_length_is_32_bits() {
        let mut r = VcpuRegs::default();
        let n = reg::ENTRY_INST_LENGTH as i32;
        r.set(n, 0xdead_beef_0000_0003).unwrap();
        assert_eq!(r.get(n), Ok(3));
        r.set(n, u64::MAX).unwrap();
        assert_eq!(r.get(n), Ok(0xffff_ffff));
    }

    #[test]
    fn segment_descriptors_only_for_segment_registers() {
        let mut r = VcpuRegs::default();
        let d = SegDesc { base: 0x1000, limit: 0xffff, access: 0x93 };
        for regnum in [reg::ES, reg::CS, reg::LDTR, reg::TR] {
            r.set_seg(regnum as i32, d).unwrap();
            assert_eq!(r.get_seg(regnum as i32), Ok(d));
        }
        assert_eq!(r.set_seg(reg::RAX as i32, d), Err(Error::Inval));
        assert_eq!(r.get_seg(reg::EFER as i32), Err(Error::Inval));
    }

    /// FreeBSD `vmcs_getdesc`/`vmcs_setdesc` (VMX: GDTR and IDTR have no
    /// access-rights field in the VMCS) and `vmcb_getdesc` (SVM: "GDT and
    /// IDT limit and base are stored, access is not"): a descriptor
    /// table's access is not kept, and libvmmapi's `vm_get_desc` (which
    /// zeroes its `vm_seg_desc`) reads 0 whatever was set.
    #[test]
    fn descriptor_tables_keep_base_and_limit_but_no_access() {
        let mut r = VcpuRegs::default();
        for regnum in [reg::IDTR, reg::GDTR] {
            r.set_seg(regnum as i32, SegDesc { base: 0x1000, limit: 0xffff, access: 0x93 }).unwrap();
            assert_eq!(r.get_seg(regnum as i32), Ok(SegDesc { base: 0x1000, limit: 0xffff, access: 0 }));
        }
    }

    #[test]
    fn capabilities_and_intinfo() {
        let mut r = VcpuRegs::default();
        r.set_cap(0, 5).unwrap();
        assert_eq!(r.get_cap(0), Ok(1), "on is 1");
        assert_eq!(r.get_cap(CAP_MAX as i32), Err(Error::Inval));
        for cap in [CAP_RDTSCP, CAP_RDPID] {
            assert_eq!(r.get_cap(cap), Ok(1), "always on");
            assert_eq!(r.set_cap(cap, 0), Err(Error::NoEnt), "and fixed");
            assert_eq!(r.get_cap(cap), Ok(1));
        }
        // RFLAGS_TF sets TF and gives the guest's back when it goes off.
        let tf = |r: &VcpuRegs| r.get(reg::RFLAGS as i32).unwrap() & RFLAGS_TF;
        for guest_tf in [0, RFLAGS_TF] {
            r.set(reg::RFLAGS as i32, 0x2 | guest_tf).unwrap();
            r.set_cap(CAP_RFLAGS_TF, 0).unwrap();
            assert_eq!(tf(&r), guest_tf, "off while off: nothing changes");
            r.set_cap(CAP_RFLAGS_TF, 1).unwrap();
            assert!(r.rflags_tf_stepping() && tf(&r) == RFLAGS_TF);
            r.set_cap(CAP_RFLAGS_TF, 1).unwrap();
            r.set_cap(CAP_RFLAGS_TF, 0).unwrap();
            assert!(!r.rflags_tf_stepping());
            assert_eq!(tf(&r), guest_tf, "the guest's TF back");
        }
        // NMI type needs vector 2; exceptions need vector < 32.
        let nmi = intinfo::VALID | intinfo::NMI | 3;
        assert_eq!(r.set_exitintinfo(nmi), Err(Error::Inval));
        let exc = intinfo::VALID | intinfo::HWEXCEPTION | 40;
        assert_eq!(r.set_exitintinfo(exc), Err(Error::Inval));
        let ok = intinfo::VALID | intinfo::HWEXCEPTION | 14;
        r.set_exitintinfo(ok).unwrap();
        assert_eq!(r.intinfo().0, ok);
        r.set_exitintinfo(5).unwrap(); // not VALID: recorded as 0
        assert_eq!(r.intinfo().0, 0);
        r.inject_exception(13, Some(0), false).unwrap();
        assert_eq!(r.inject_exception(6, None, false), Err(Error::Busy));
        assert_eq!(r.intinfo().1 & 0xff, 13);
    }

    #[test]
    fn power_on_reset_is_libvmmapis_vcpu_reset() {
        let mut r = VcpuRegs::default();
        for n in 0..reg::LAST as i32 {
            let _ = r.set(n, 0x5a5a);
        }
        r.set_cap(CAP_IPI_EXIT, 1).unwrap();
        r.inject_exception(13, None, false).unwrap();
        r.halted = true;
        r.power_on_reset();
        assert!(!r.halted, "active again");
        let g = |n: usize| r.get(n as i32).unwrap();
        assert_eq!((g(reg::RIP), r.nextrip, g(reg::RFLAGS)), (0xfff0, 0xfff0, 2));
        assert_eq!((g(reg::CR0), g(reg::CR2), g(reg::CR3), g(reg::CR4), g(reg::EFER)), (0x20, 0, 0, 0, 0));
        assert_eq!((g(reg::RDX), g(reg::RAX), g(reg::R15), g(reg::RSP), g(reg::RBP)), (0xf00, 0, 0, 0, 0));
        assert_eq!((g(reg::DR6), g(reg::DR7), g(reg::INTR_SHADOW)), (0xffff_0ff0, 0x400, 0));
        let d = |n: usize| r.get_seg(n as i32).unwrap();
        assert_eq!((g(reg::CS), d(reg::CS)), (0xf000, SegDesc { base: 0xffff_0000, limit: 0xffff, access: 0x93 }));
        for s in [reg::SS, reg::DS, reg::ES, reg::FS, reg::GS] {
            assert_eq!((g(s), d(s)), (0, SegDesc { base: 0, limit: 0xffff, access: 0x93 }), "segment {s}");
        }
        assert_eq!((d(reg::GDTR), d(reg::IDTR)), (SegDesc { base: 0, limit: 0xffff, access: 0 }, d(reg::GDTR)));
        assert_eq!((g(reg::TR), d(reg::TR)), (0, SegDesc { base: 0, limit: 0, access: 0x8b }));
        assert_eq!((g(reg::LDTR), d(reg::LDTR)), (0, SegDesc { base: 0, limit: 0xffff, access: 0x82 }));
        // Left alone, as libvmmapi leaves them; FS_BASE is the FS base.
        assert_eq!((g(39), g(45), g(47)), (0x5a5a, 0, 0x5a5a), "DR0, FS_BASE, KGS_BASE");
        assert_eq!(r.get_cap(CAP_IPI_EXIT), Ok(1));
        assert_eq!(r.intinfo().1 & 0xff, 13, "a queued exception stays");
    }

    #[test]
    fn entry_intinfo_delivers_once_and_nests_faults_as_the_sdm() {
        let exc = |v: u64| intinfo::VALID | intinfo::HWEXCEPTION | v;
        let mut r = VcpuRegs::default();
        assert_eq!(r.entry_intinfo(), None);
        r.inject_exception(13, None, false).unwrap();
        assert_eq!(r.entry_intinfo(), Some(EntryEvent::Inject(exc(13))));
        assert_eq!(r.entry_intinfo(), None, "delivered once");
        r.inject_exception(6, None, false).unwrap(); // no longer EBUSY
        r.set_exitintinfo(intinfo::VALID | intinfo::HWINTR | 0x41).unwrap();
        let want = Some(EntryEvent::Inject(exc(6)));
        assert_eq!(r.entry_intinfo(), want, "benign after an interrupt");
        let df = exc(8) | intinfo::DEL_ERRCODE;
        for (first, second, want) in [
            (13, 13, Some(df)), // contributory, contributory
            (14, 13, Some(df)), // page fault, contributory
            (14, 14, Some(df)), // page fault, page fault
            (13, 14, None),     // contributory, page fault: serially
            (14, 6, None),      // page fault, benign
        ] {
            r.set_exitintinfo(exc(first)).unwrap();
            r.inject_exception(second as i32, None, false).unwrap();
            let got = r.entry_intinfo();
            assert_eq!(got, Some(EntryEvent::Inject(want.unwrap_or(exc(second)))), "{first} then {second}");
        }
        r.set_exitintinfo(exc(8)).unwrap();
        r.inject_exception(13, None, false).unwrap();
        assert_eq!(r.entry_intinfo(), Some(EntryEvent::TripleFault));
        assert_eq!(r.intinfo(), (0, 0), "both taken");
    }

    /// FreeBSD `exception_class` and `nested_fault`: the class comes from
    /// the type first (an interrupt, NMI or INT n is benign whatever its
    /// vector), then from the vector (#VE is a page fault); only a
    /// hardware #DF being delivered makes a triple fault. A legacy 8259
    /// guest takes IRQ0 as vector 8, INT 0x0d and INT 0x0e are software.
    #[test]
    fn nested_faults_classify_by_type_before_vector() {
        let exc = |v: u64| intinfo::VALID | intinfo::HWEXCEPTION | v;
        let df = exc(8) | intinfo::DEL_ERRCODE;
        let mut r = VcpuRegs::default();
        for (first, want) in [
            (intinfo::VALID | intinfo::HWINTR | 8, EntryEvent::Inject(exc(13))),
            (intinfo::VALID | intinfo::SWINTR | 13, EntryEvent::Inject(exc(13))),
            (intinfo::VALID | intinfo::SWINTR | 14, EntryEvent::Inject(exc(13))),
            (exc(20), EntryEvent::Inject(df)),
        ] {
            r.set_exitintinfo(first).unwrap();
            r.inject_exception(13, None, false).unwrap();
            assert_eq!(r.entry_intinfo(), Some(want), "{first:#x} then #GP");
        }
    }

    /// An exception's vector is below 32 (FreeBSD `vm_exit_intinfo`).
    #[test]
    fn exit_intinfo_exceptions_stop_at_vector_31() {
        let mut r = VcpuRegs::default();
        let exc = |v: u64| intinfo::VALID | intinfo::HWEXCEPTION | v;
        assert_eq!(r.set_exitintinfo(exc(31)), Ok(()));
        assert_eq!(r.set_exitintinfo(exc(32)), Err(Error::Inval));
        assert_eq!(r.intinfo().0, exc(31), "the refused word changed nothing");
        assert_eq!(r.set_exitintinfo(intinfo::VALID | intinfo::HWINTR | 32), Ok(()), "an interrupt may be 32");
    }

    #[test]
    fn injected_exceptions_follow_freebsd() {
        let mut r = VcpuRegs::default();
        for bad in [-1, 8, 32] {
            assert_eq!(r.inject_exception(bad, None, false), Err(Error::Inval), "vector {bad}");
        }
        // Real mode: no error code.
        r.inject_exception(13, Some(0x10), false).unwrap();
        assert_eq!(r.intinfo().1, intinfo::VALID | intinfo::HWEXCEPTION | 13);
        // The vCPU cannot be forced into an interrupt shadow.
        assert_eq!(r.set(reg::INTR_SHADOW as i32, 1), Err(Error::Inval));
        assert_eq!(r.set(reg::INTR_SHADOW as i32, 0), Ok(()));
        assert_eq!(r.get(reg::INTR_SHADOW as i32), Ok(0));
        // Protected mode: the error code is delivered.
        let mut r = VcpuRegs::default();
        r.set(reg::CR0 as i32, CR0_PE).unwrap();
        r.inject_exception(14, Some(0x10), false).unwrap();
        let want = intinfo::VALID | intinfo::HWEXCEPTION | intinfo::DEL_ERRCODE | 14 | 0x10 << 32;
        assert_eq!(r.intinfo().1, want);
    }
}
