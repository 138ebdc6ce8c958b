//! The guest's paging and code-segment state as an exit reports it
//! (FreeBSD VMX `vmx_paging_info`, `vmx_cpu_mode`, `vmx_paging_mode` and
//! the CS part of `vmexit_inst_emul`), read from the register file.

use super::{reg, VcpuRegs, CR0_PE, CR0_PG, CR4_LA57, CR4_PAE, EFER_LMA, EFER_LME};
use crate::gla2gpa::{
    GuestPaging, CPU_MODE_64BIT, CPU_MODE_COMPATIBILITY, CPU_MODE_PROTECTED, CPU_MODE_REAL, PAGING_MODE_32,
    PAGING_MODE_64, PAGING_MODE_64_LA57, PAGING_MODE_FLAT, PAGING_MODE_PAE,
};

/// Segment access rights (VMX layout): DPL, the L (64-bit code) and D/B
/// (default operand size) bits.
const ACCESS_DPL_SHIFT: u32 = 5;
const ACCESS_L: u32 = 1 << 13;
const ACCESS_DB: u32 = 1 << 14;

/// CS as instruction emulation needs it: its base and CS.D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeSegment {
    pub base: u64,
    /// CS.D: 32-bit default operand and address size (protected and
    /// compatibility mode only; false otherwise).
    pub d: bool,
}

impl VcpuRegs {
    /// The guest's paging state: CR3, CPL (SS.DPL, as VMX), CPU mode and
    /// paging mode.
    pub fn paging(&self) -> GuestPaging {
        let cr0 = self.regs[reg::CR0];
        let cr4 = self.regs[reg::CR4];
        let efer = self.regs[reg::EFER];
        let cs = self.segs[reg::CS - reg::ES];
        let ss = self.segs[reg::SS - reg::ES];
        let cpu_mode = if efer & EFER_LMA != 0 {
            if cs.access & ACCESS_L != 0 {
                CPU_MODE_64BIT
            } else {
                CPU_MODE_COMPATIBILITY
            }
        } else if cr0 & CR0_PE != 0 {
            CPU_MODE_PROTECTED
        } else {
            CPU_MODE_REAL
        };
        let paging_mode = if cr0 & CR0_PG == 0 {
            PAGING_MODE_FLAT
        } else if cr4 & CR4_PAE == 0 {
            PAGING_MODE_32
        } else if efer & EFER_LME != 0 {
            if cr4 & CR4_LA57 != 0 {
                PAGING_MODE_64_LA57
            } else {
                PAGING_MODE_64
            }
        } else {
            PAGING_MODE_PAE
        };
        GuestPaging {
            cr3: self.regs[reg::CR3],
            cpl: ((ss.access >> ACCESS_DPL_SHIFT) & 3) as i32,
            cpu_mode,
            paging_mode,
        }
    }

    /// The default address (and operand) size in bytes: 8 in 64-bit mode,
    /// else 4 with CS.D and 2 without.
    pub fn address_size(&self) -> u8 {
        if self.paging().cpu_mode == CPU_MODE_64BIT {
            8
        } else if self.code_segment().d {
            4
        } else {
            2
        }
    }

    /// CS as an instruction-emulation exit reports it: real mode has the
    /// base and no CS.D, protected and compatibility mode both, 64-bit
    /// mode neither (its CS base is 0).
    pub fn code_segment(&self) -> CodeSegment {
        let cs = self.segs[reg::CS - reg::ES];
        match self.paging().cpu_mode {
            CPU_MODE_REAL => CodeSegment { base: cs.base, d: false },
            CPU_MODE_PROTECTED | CPU_MODE_COMPATIBILITY => CodeSegment { base: cs.base, d: cs.access & ACCESS_DB != 0 },
            _ => CodeSegment { base: 0, d: false },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::SegDesc;

    #[test]
    fn power_on_state_is_real_mode_without_paging() {
        let mut r = VcpuRegs::default();
        r.power_on_reset();
        let p = r.paging();
        assert_eq!((p.cpu_mode, p.paging_mode, p.cpl, p.cr3), (CPU_MODE_REAL, PAGING_MODE_FLAT, 0, 0));
        assert_eq!(r.code_segment(), CodeSegment { base: 0xffff_0000, d: false });
        assert_eq!(r.address_size(), 2);
    }

    #[test]
    fn loader_states_decode_as_their_modes() {
        let mut r = VcpuRegs::default();
        r.freebsd_long_mode(0x20_0000, 0x1000, 0x5000, 0x4000);
        let p = r.paging();
        assert_eq!((p.cpu_mode, p.paging_mode, p.cr3), (CPU_MODE_64BIT, PAGING_MODE_64, 0x1000));
        assert_eq!(r.code_segment(), CodeSegment { base: 0, d: false });
        assert_eq!(r.address_size(), 8);
        // The same with CR4.LA57: 5-level paging; with CS.L clear:
        // compatibility mode, CS.D counts.
        r.set(reg::CR4 as i32, r.get(reg::CR4 as i32).unwrap() | CR4_LA57).unwrap();
        assert_eq!(r.paging().paging_mode, PAGING_MODE_64_LA57);
        let cs = r.get_seg(reg::CS as i32).unwrap();
        r.set_seg(reg::CS as i32, SegDesc { base: 0x100, access: (cs.access & !ACCESS_L) | ACCESS_DB, ..cs }).unwrap();
        assert_eq!(r.paging().cpu_mode, CPU_MODE_COMPATIBILITY);
        assert_eq!(r.code_segment(), CodeSegment { base: 0x100, d: true });
        assert_eq!(r.address_size(), 4);
    }

    #[test]
    fn protected_mode_paging_modes_and_cpl() {
        let mut r = VcpuRegs::default();
        r.set(reg::CR0 as i32, CR0_PE).unwrap();
        r.set_seg(reg::SS as i32, SegDesc { base: 0, limit: 0xffff_ffff, access: 0x93 | (3 << 5) }).unwrap();
        let p = r.paging();
        assert_eq!((p.cpu_mode, p.paging_mode, p.cpl), (CPU_MODE_PROTECTED, PAGING_MODE_FLAT, 3));
        r.set(reg::CR0 as i32, CR0_PE | CR0_PG).unwrap();
        assert_eq!(r.paging().paging_mode, PAGING_MODE_32);
        r.set(reg::CR4 as i32, CR4_PAE).unwrap();
        assert_eq!(r.paging().paging_mode, PAGING_MODE_PAE);
    }

    /// As FreeBSD's `vmx_cpu_mode` and `vmx_paging_mode`: the CPU mode
    /// follows EFER.LMA (long mode active), the paging mode EFER.LME. A
    /// guest that has set LME but not yet enabled paging is still in
    /// protected mode; register values with LME and paging but no LMA
    /// (VM_SET_REGISTER allows them) walk 4-level tables.
    #[test]
    fn cpu_mode_follows_efer_lma_and_paging_mode_efer_lme() {
        let mut r = VcpuRegs::default();
        r.set(reg::CR0 as i32, CR0_PE).unwrap();
        r.set(reg::EFER as i32, EFER_LME).unwrap();
        let p = r.paging();
        assert_eq!((p.cpu_mode, p.paging_mode), (CPU_MODE_PROTECTED, PAGING_MODE_FLAT));
        r.set(reg::CR0 as i32, CR0_PE | CR0_PG).unwrap();
        r.set(reg::CR4 as i32, CR4_PAE).unwrap();
        let p = r.paging();
        assert_eq!((p.cpu_mode, p.paging_mode), (CPU_MODE_PROTECTED, PAGING_MODE_64));
        r.set(reg::EFER as i32, EFER_LMA).unwrap();
        let p = r.paging();
        assert_eq!((p.cpu_mode, p.paging_mode), (CPU_MODE_COMPATIBILITY, PAGING_MODE_PAE));
    }

    /// FreeBSD's `vmexit_inst_emul` reports CS.D 0 in real mode whatever the
    /// CS access rights say (a descriptor cache left 32-bit): the default
    /// address size stays 2.
    #[test]
    fn real_mode_ignores_a_32_bit_cs() {
        let mut r = VcpuRegs::default();
        r.power_on_reset();
        let cs = r.get_seg(reg::CS as i32).unwrap();
        r.set_seg(reg::CS as i32, SegDesc { access: cs.access | ACCESS_DB, ..cs }).unwrap();
        assert_eq!(r.paging().cpu_mode, CPU_MODE_REAL);
        assert_eq!(r.code_segment(), CodeSegment { base: 0xffff_0000, d: false });
        assert_eq!(r.address_size(), 2);
    }
}
