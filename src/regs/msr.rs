//! The MSRs a guest reads and writes without reaching userland, as on
//! FreeBSD's VMX backend: those the VMCS or the guest-MSR save area holds
//! (EFER, the FS/GS/kernel-GS bases, SYSENTER, the SYSCALL targets), and
//! those `vmx_rdmsr` / `vmx_wrmsr` emulate (machine-check capability and
//! status, the MTRRs as FreeBSD's `vm_rdmtrr` / `vm_wrmtrr`,
//! IA32_MISC_ENABLE, PAT, platform and turbo information), and the TSC and
//! TSC_AUX (read through to the guest, written to its TSC offset and
//! saved value). Model-specific others go to userland here.

use super::{reg, VcpuRegs, CR0_PG, CR4_LA57, EFER_LMA, EFER_LME};
use crate::tsc;

pub const MSR_TSC: u32 = 0x10;
pub const MSR_PLATFORM_INFO: u32 = 0xce;
pub const MSR_MCG_CAP: u32 = 0x179;
pub const MSR_MCG_STATUS: u32 = 0x17a;
pub const MSR_SYSENTER_CS: u32 = 0x174;
pub const MSR_SYSENTER_ESP: u32 = 0x175;
pub const MSR_SYSENTER_EIP: u32 = 0x176;
pub const MSR_MISC_ENABLE: u32 = 0x1a0;
pub const MSR_TURBO_RATIO_LIMIT: u32 = 0x1ad;
pub const MSR_TURBO_RATIO_LIMIT1: u32 = 0x1ae;
pub const MSR_PAT: u32 = 0x277;
pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SF_MASK: u32 = 0xc000_0084;
pub const MSR_FSBASE: u32 = 0xc000_0100;
pub const MSR_GSBASE: u32 = 0xc000_0101;
pub const MSR_KGSBASE: u32 = 0xc000_0102;
pub const MSR_TSC_AUX: u32 = 0xc000_0103;
pub const MSR_MTRRCAP: u32 = 0xfe;
pub const MSR_MTRR_VAR_BASE: u32 = 0x200;
pub const MSR_MTRR_64K: u32 = 0x250;
pub const MSR_MTRR_16K: u32 = 0x258;
pub const MSR_MTRR_4K: u32 = 0x268;
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;

/// Variable-range MTRR pairs (FreeBSD `VMM_MTRR_VAR_MAX`).
pub const MTRR_VAR_MAX: usize = 10;
/// The last MSR of each MTRR block.
const MSR_MTRR_4K_LAST: u32 = MSR_MTRR_4K + 7;
const MSR_MTRR_16K_LAST: u32 = MSR_MTRR_16K + 1;
const MSR_MTRR_VAR_LAST: u32 = MSR_MTRR_VAR_BASE + 2 * MTRR_VAR_MAX as u32 - 1;
/// MTRRcap: write-combining and fixed ranges supported, 10 variable ranges.
pub const MTRR_CAP: u64 = 0x400 | 0x100 | MTRR_VAR_MAX as u64;
/// Writable bits: MTRRdefType's enable, fixed-range enable and type;
/// PHYSBASE's address and type; PHYSMASK's mask and valid bit.
const MTRR_DEF_MASK: u64 = 0x800 | 0x400 | 0xff;
const MTRR_PHYSBASE_MASK: u64 = 0x000f_ffff_ffff_f000 | 0xff;
const MTRR_PHYSMASK_MASK: u64 = 0x000f_ffff_ffff_f000 | 0x800;

/// The MTRRs (FreeBSD `struct vm_mtrr`), all 0 after reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mtrrs {
    def_type: u64,
    fixed4k: [u64; 8],
    fixed16k: [u64; 2],
    fixed64k: u64,
    /// (PHYSBASE, PHYSMASK) pairs.
    var: [(u64, u64); MTRR_VAR_MAX],
}

impl Mtrrs {
    /// `vm_rdmtrr`: `None` if `msr` is not an MTRR.
    fn read(&self, msr: u32) -> Option<u64> {
        Some(match msr {
            MSR_MTRRCAP => MTRR_CAP,
            MSR_MTRR_DEF_TYPE => self.def_type,
            MSR_MTRR_4K..=MSR_MTRR_4K_LAST => self.fixed4k[(msr - MSR_MTRR_4K) as usize],
            MSR_MTRR_16K..=MSR_MTRR_16K_LAST => self.fixed16k[(msr - MSR_MTRR_16K) as usize],
            MSR_MTRR_64K => self.fixed64k,
            MSR_MTRR_VAR_BASE..=MSR_MTRR_VAR_LAST => {
                let (base, mask) = self.var[((msr - MSR_MTRR_VAR_BASE) / 2) as usize];
                if msr.is_multiple_of(2) {
                    base
                } else {
                    mask
                }
            }
            _ => return None,
        })
    }

    /// `vm_wrmtrr`: `None` if `msr` is not an MTRR, `Some(false)` for #GP
    /// (MTRRcap, or a reserved bit set).
    fn write(&mut self, msr: u32, val: u64) -> Option<bool> {
        let checked = |slot: &mut u64, writable: u64| {
            let ok = val & !writable == 0;
            if ok {
                *slot = val;
            }
            ok
        };
        Some(match msr {
            MSR_MTRRCAP => false,
            MSR_MTRR_DEF_TYPE => checked(&mut self.def_type, MTRR_DEF_MASK),
            MSR_MTRR_4K..=MSR_MTRR_4K_LAST => checked(&mut self.fixed4k[(msr - MSR_MTRR_4K) as usize], u64::MAX),
            MSR_MTRR_16K..=MSR_MTRR_16K_LAST => checked(&mut self.fixed16k[(msr - MSR_MTRR_16K) as usize], u64::MAX),
            MSR_MTRR_64K => checked(&mut self.fixed64k, u64::MAX),
            MSR_MTRR_VAR_BASE..=MSR_MTRR_VAR_LAST => {
                let pair = &mut self.var[((msr - MSR_MTRR_VAR_BASE) / 2) as usize];
                if msr.is_multiple_of(2) {
                    checked(&mut pair.0, MTRR_PHYSBASE_MASK)
                } else {
                    checked(&mut pair.1, MTRR_PHYSMASK_MASK)
                }
            }
            _ => return None,
        })
    }
}

/// PAT after reset: WB, WT, UC-, UC in each half (FreeBSD `vmx_msr_guest_init`).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// IA32_MISC_ENABLE as the guest reads it: BTS and PEBS unavailable
/// (bits 11 and 12, which FreeBSD sets on the host's value).
pub const MISC_ENABLE: u64 = (1 << 12) | (1 << 11);
/// The MISC_ENABLE bit a guest may write without userland: XD disable
/// (Linux turns NX on through it; FreeBSD ignores it).
const MISC_ENABLE_XD_DISABLE: u64 = 1 << 34;
/// EFER bits a guest may set: SCE, LME, NXE (LMA is the processor's).
const EFER_WRITABLE: u64 = (1 << 0) | (1 << 8) | (1 << 11);

/// Whether `addr` is canonical for the guest's linear-address width (57
/// bits with CR4.LA57, else 48).
fn canonical(regs: &VcpuRegs, addr: u64) -> bool {
    let bits = if regs.regs[reg::CR4] & CR4_LA57 != 0 { 57 } else { 48 };
    crate::gla2gpa::canonical_for(addr, bits)
}

/// The guest MSRs kept beside the register file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMsrs {
    star: u64,
    lstar: u64,
    cstar: u64,
    sf_mask: u64,
    sysenter: [u64; 3],
    pat: u64,
    mtrr: Mtrrs,
    /// Added to the clock (`tsc`) for the guest's TSC; 0 until it writes
    /// the TSC (FreeBSD's VMCS TSC offset). Wraps, as the sum does.
    tsc_offset: u64,
    /// What RDTSCP and RDPID return (only the low 32 bits are writable).
    tsc_aux: u64,
}

impl Default for GuestMsrs {
    fn default() -> Self {
        GuestMsrs {
            star: 0,
            lstar: 0,
            cstar: 0,
            sf_mask: 0,
            sysenter: [0; 3],
            pat: PAT_RESET,
            mtrr: Mtrrs::default(),
            tsc_offset: 0,
            tsc_aux: 0,
        }
    }
}

/// What an MSR access comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrAccess {
    /// Done (for a read, the value).
    Done(u64),
    /// #GP: a value the processor refuses.
    Fault,
    /// Not one of these: userland's (VM_EXITCODE_RDMSR / WRMSR).
    Userland,
}

/// Whether FreeBSD's VMX backend lets the guest access `msr` without a VM
/// exit (its MSR bitmap, `vmx_vminit` and `vmx_msr_guest_init`): FS/GS
/// base, SYSENTER, EFER, the SYSCALL MSRs and kernel-GS base both ways;
/// the TSC and TSC_AUX for reads only (the VM has RDTSCP and RDPID).
pub fn vmx_passthrough(msr: u32, write: bool) -> bool {
    match msr {
        MSR_FSBASE | MSR_GSBASE | MSR_KGSBASE | MSR_SYSENTER_CS..=MSR_SYSENTER_EIP | MSR_EFER => true,
        MSR_STAR | MSR_LSTAR | MSR_CSTAR | MSR_SF_MASK => true,
        MSR_TSC | MSR_TSC_AUX => !write,
        _ => false,
    }
}

/// FreeBSD `pat_valid`: every entry a memory type (0, 1, 4, 5, 6 or 7).
fn pat_valid(val: u64) -> bool {
    val.to_le_bytes().iter().all(|t| matches!(t, 0 | 1 | 4 | 5 | 6 | 7))
}

impl VcpuRegs {
    /// The guest's TSC when the clock reads `host_tsc`.
    pub fn guest_tsc(&self, host_tsc: u64) -> u64 {
        host_tsc.wrapping_add(self.msrs.tsc_offset)
    }

    /// IA32_TSC_AUX (RDTSCP's ECX, RDPID's result).
    pub fn tsc_aux(&self) -> u64 {
        self.msrs.tsc_aux
    }

    /// RDMSR of one of the MSRs above.
    pub fn rdmsr(&self, msr: u32) -> MsrAccess {
        let m = &self.msrs;
        MsrAccess::Done(match msr {
            MSR_TSC => self.guest_tsc(tsc::host_tsc()),
            MSR_TSC_AUX => m.tsc_aux,
            MSR_PLATFORM_INFO => tsc::PLATFORM_INFO,
            MSR_TURBO_RATIO_LIMIT | MSR_TURBO_RATIO_LIMIT1 => tsc::TURBO_RATIO_LIMIT,
            MSR_EFER => self.regs[reg::EFER],
            MSR_FSBASE => self.segs[reg::FS - reg::ES].base,
            MSR_GSBASE => self.segs[reg::GS - reg::ES].base,
            MSR_KGSBASE => self.regs[reg::KGS_BASE],
            MSR_STAR => m.star,
            MSR_LSTAR => m.lstar,
            MSR_CSTAR => m.cstar,
            MSR_SF_MASK => m.sf_mask,
            MSR_SYSENTER_CS..=MSR_SYSENTER_EIP => m.sysenter[(msr - MSR_SYSENTER_CS) as usize],
            MSR_MCG_CAP | MSR_MCG_STATUS => 0,
            MSR_MISC_ENABLE => MISC_ENABLE,
            MSR_PAT => m.pat,
            _ => return m.mtrr.read(msr).map_or(MsrAccess::Userland, MsrAccess::Done),
        })
    }

    /// WRMSR of one of the MSRs above, with the processor's checks (these
    /// MSRs pass through to it on VMX): #GP for a reserved EFER bit, an
    /// LME change while paging is on, a non-canonical address in a base
    /// or entry-point MSR, an invalid PAT, or a TSC_AUX above 32 bits;
    /// userland for a MISC_ENABLE change it must judge (as FreeBSD punts
    /// it) and for the read-only platform and turbo MSRs (as FreeBSD);
    /// machine-check writes are ignored; SYSENTER_CS keeps 32 bits; a TSC
    /// write sets the offset that makes the guest's TSC read the value
    /// now (`vmx_set_tsc_offset`).
    pub fn wrmsr(&mut self, msr: u32, val: u64) -> MsrAccess {
        let efer = self.regs[reg::EFER];
        let paging = self.regs[reg::CR0] & CR0_PG != 0;
        let address = matches!(msr, MSR_FSBASE | MSR_GSBASE | MSR_KGSBASE | MSR_LSTAR | MSR_SYSENTER_ESP | MSR_SYSENTER_EIP);
        if address && !canonical(self, val) {
            return MsrAccess::Fault;
        }
        match msr {
            MSR_EFER if val & !(EFER_WRITABLE | EFER_LMA) != 0 => return MsrAccess::Fault,
            MSR_EFER if paging && (val ^ efer) & EFER_LME != 0 => return MsrAccess::Fault,
            MSR_EFER => self.regs[reg::EFER] = (val & EFER_WRITABLE) | (efer & EFER_LMA),
            MSR_FSBASE => self.segs[reg::FS - reg::ES].base = val,
            MSR_GSBASE => self.segs[reg::GS - reg::ES].base = val,
            MSR_KGSBASE => self.regs[reg::KGS_BASE] = val,
            MSR_STAR => self.msrs.star = val,
            MSR_LSTAR => self.msrs.lstar = val,
            MSR_CSTAR => self.msrs.cstar = val,
            MSR_SF_MASK => self.msrs.sf_mask = val,
            MSR_SYSENTER_CS => self.msrs.sysenter[0] = val & 0xffff_ffff,
            MSR_SYSENTER_ESP..=MSR_SYSENTER_EIP => self.msrs.sysenter[(msr - MSR_SYSENTER_CS) as usize] = val,
            MSR_MCG_CAP | MSR_MCG_STATUS => {}
            MSR_MISC_ENABLE if (val ^ MISC_ENABLE) & !MISC_ENABLE_XD_DISABLE != 0 => return MsrAccess::Userland,
            MSR_MISC_ENABLE => {}
            MSR_PAT if !pat_valid(val) => return MsrAccess::Fault,
            MSR_PAT => self.msrs.pat = val,
            MSR_TSC => self.msrs.tsc_offset = val.wrapping_sub(tsc::host_tsc()),
            MSR_TSC_AUX if val >> 32 != 0 => return MsrAccess::Fault,
            MSR_TSC_AUX => self.msrs.tsc_aux = val,
            _ => {
                return match self.msrs.mtrr.write(msr, val) {
                    Some(true) => MsrAccess::Done(val),
                    Some(false) => MsrAccess::Fault,
                    None => MsrAccess::Userland,
                }
            }
        }
        MsrAccess::Done(val)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_msrs_read_back_and_others_are_userlands() {
        let mut r = VcpuRegs::default();
        assert_eq!(r.rdmsr(MSR_PAT), MsrAccess::Done(PAT_RESET));
        assert_eq!(r.rdmsr(MSR_MISC_ENABLE), MsrAccess::Done(MISC_ENABLE));
        assert_eq!(r.rdmsr(MSR_MCG_STATUS), MsrAccess::Done(0));
        for (msr, v) in [(MSR_STAR, 1), (MSR_LSTAR, 2), (MSR_CSTAR, 3), (MSR_SF_MASK, 4), (MSR_SYSENTER_ESP, 5), (MSR_KGSBASE, 6)] {
            assert_eq!(r.wrmsr(msr, v), MsrAccess::Done(v));
            assert_eq!(r.rdmsr(msr), MsrAccess::Done(v), "{msr:#x}");
        }
        assert_eq!(r.rdmsr(MSR_SYSENTER_CS), MsrAccess::Done(0));
        assert_eq!(r.wrmsr(MSR_FSBASE, 0x7000), MsrAccess::Done(0x7000));
        assert_eq!(r.get(reg::FS_BASE as i32), Ok(0x7000));
        assert_eq!(r.get_seg(reg::FS as i32).unwrap().base, 0x7000, "the segment's base too");
        assert_eq!(r.wrmsr(MSR_MCG_STATUS, 5), MsrAccess::Done(5));
        assert_eq!(r.rdmsr(MSR_MCG_STATUS), MsrAccess::Done(0), "ignored");
        for msr in [0x3a, 0x1a2, 0x214, 0xc000_0104] {
            assert_eq!(r.rdmsr(msr), MsrAccess::Userland, "{msr:#x}: feature control, temperature target, ...");
            assert_eq!(r.wrmsr(msr, 0), MsrAccess::Userland);
        }
        // Platform and turbo information: read-only, from the TSC's rate.
        assert_eq!(r.rdmsr(MSR_PLATFORM_INFO), MsrAccess::Done(tsc::PLATFORM_INFO));
        assert_eq!(r.rdmsr(MSR_TURBO_RATIO_LIMIT1), MsrAccess::Done(tsc::TURBO_RATIO_LIMIT));
        assert_eq!(r.wrmsr(MSR_PLATFORM_INFO, 0), MsrAccess::Userland);
        assert_eq!(r.wrmsr(MSR_TURBO_RATIO_LIMIT, 0), MsrAccess::Userland);
    }

    /// The guest's TSC is the clock plus its offset: a write makes it read
    /// the value written (and on from there); TSC_AUX keeps 32 bits.
    #[test]
    fn tsc_writes_move_the_guests_clock_and_tsc_aux_keeps_32_bits() {
        let mut r = VcpuRegs::default();
        let read = |r: &VcpuRegs| match r.rdmsr(MSR_TSC) {
            MsrAccess::Done(v) => v,
            other => panic!("{other:?}"),
        };
        let before = tsc::host_tsc();
        let t = read(&r);
        assert!(t >= before && t <= tsc::host_tsc(), "offset 0: the clock");
        let target = 1u64 << 50;
        let start = tsc::host_tsc();
        assert_eq!(r.wrmsr(MSR_TSC, target), MsrAccess::Done(target));
        let t = read(&r);
        let elapsed = tsc::host_tsc() - start;
        assert!(t >= target && t <= target + elapsed, "{t:#x} within {elapsed} ticks of {target:#x}");
        // Backwards, and across the wrap.
        assert_eq!(r.wrmsr(MSR_TSC, 5), MsrAccess::Done(5));
        assert!(read(&r) < 5 + (1 << 40));
        assert_eq!(r.wrmsr(MSR_TSC, u64::MAX), MsrAccess::Done(u64::MAX));
        assert_eq!(r.guest_tsc(0).wrapping_sub(r.guest_tsc(10)), u64::MAX - 9);
        assert_eq!(r.rdmsr(MSR_TSC_AUX), MsrAccess::Done(0));
        assert_eq!(r.wrmsr(MSR_TSC_AUX, 0xffff_ffff), MsrAccess::Done(0xffff_ffff));
        assert_eq!(r.wrmsr(MSR_TSC_AUX, 1 << 32), MsrAccess::Fault, "reserved bits");
        assert_eq!((r.rdmsr(MSR_TSC_AUX), r.tsc_aux()), (MsrAccess::Done(0xffff_ffff), 0xffff_ffff));
    }

    /// FreeBSD's `vm_rdmtrr` / `vm_wrmtrr`: MTRRcap reads 10 variable
    /// ranges with WC and fixed ranges and refuses writes; reserved bits
    /// are #GP; fixed ranges take any value.
    #[test]
    fn mtrrs_as_freebsd_keeps_them() {
        let mut r = VcpuRegs::default();
        assert_eq!(r.rdmsr(MSR_MTRRCAP), MsrAccess::Done(0x50a));
        assert_eq!(r.wrmsr(MSR_MTRRCAP, 0), MsrAccess::Fault);
        assert_eq!(r.rdmsr(MSR_MTRR_DEF_TYPE), MsrAccess::Done(0));
        assert_eq!(r.wrmsr(MSR_MTRR_DEF_TYPE, 0xc06), MsrAccess::Done(0xc06));
        assert_eq!(r.wrmsr(MSR_MTRR_DEF_TYPE, 0x1000), MsrAccess::Fault);
        assert_eq!(r.rdmsr(MSR_MTRR_DEF_TYPE), MsrAccess::Done(0xc06), "unchanged by the refused write");
        for (msr, v) in [(0x26f, u64::MAX), (0x259, 7), (MSR_MTRR_64K, 0x0606_0606_0606_0606), (0x212, 0xfe00_0006), (0x213, 0xf_fe00_0800)] {
            assert_eq!(r.wrmsr(msr, v), MsrAccess::Done(v), "{msr:#x}");
            assert_eq!(r.rdmsr(msr), MsrAccess::Done(v), "{msr:#x}");
        }
        assert_eq!(r.wrmsr(0x200, 0x100), MsrAccess::Fault, "PHYSBASE reserved bit");
        assert_eq!(r.wrmsr(0x201, 0x1), MsrAccess::Fault, "PHYSMASK reserved bit");
    }

    /// Every bit FreeBSD's `vm_wrmtrr` and `pat_valid` accept is taken:
    /// MTRRdefType's whole type byte, PHYSBASE's 52-bit address and type
    /// byte, PAT's WP (5) in any entry; and what they refuse is #GP in
    /// every PAT entry (types 3 and 8 up, in the upper bytes too).
    /// IA32_MISC_ENABLE reads BTS and PEBS unavailable (bits 11 and 12).
    #[test]
    fn mtrr_and_pat_writes_take_every_bit_freebsd_allows() {
        let mut r = VcpuRegs::default();
        for (msr, v) in [(MSR_MTRR_DEF_TYPE, 0xcff), (0x200, 0x000f_ffff_ffff_f0ff), (0x201, 0x000f_ffff_ffff_f800)] {
            assert_eq!(r.wrmsr(msr, v), MsrAccess::Done(v), "{msr:#x}");
            assert_eq!(r.rdmsr(msr), MsrAccess::Done(v), "{msr:#x}");
        }
        let every_type = 0x0706_0504_0100_0706;
        assert_eq!(r.wrmsr(MSR_PAT, every_type), MsrAccess::Done(every_type));
        for bad in [0x0003_0406_0007_0406, 0x0807_0406_0007_0406, 0x0007_0406_0307_0406] {
            assert_eq!(r.wrmsr(MSR_PAT, bad), MsrAccess::Fault, "{bad:#x}");
        }
        assert_eq!(r.rdmsr(MSR_PAT), MsrAccess::Done(every_type));
        assert_eq!(r.rdmsr(MSR_MISC_ENABLE), MsrAccess::Done(0x1800));
    }

    /// Seeded random accesses over every MSR kept here and their
    /// neighbours: no panic, a refused write changes nothing, and a kept
    /// value reads back as written (EFER keeps the processor's LMA,
    /// machine-check and MISC_ENABLE writes are not stored).
    #[test]
    fn random_accesses_keep_the_msrs_consistent() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let msrs = [
            MSR_EFER, MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SF_MASK, MSR_FSBASE, MSR_GSBASE, MSR_KGSBASE,
            MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP, MSR_MCG_CAP, MSR_MCG_STATUS, MSR_MISC_ENABLE,
            MSR_PAT, MSR_MTRRCAP, MSR_MTRR_DEF_TYPE, MSR_MTRR_64K, MSR_TSC_AUX, MSR_PLATFORM_INFO,
        ];
        let mut r = VcpuRegs::default();
        for _ in 0..200_000 {
            let n = next();
            // Now and then the processor's side changes: paging, long mode
            // active, 5-level paging.
            if n % 64 == 0 {
                let cr0 = if next() % 2 == 0 { CR0_PG } else { 0 };
                let lma = if next() % 2 == 0 { EFER_LMA } else { 0 };
                r.regs[reg::CR0] = cr0;
                r.regs[reg::EFER] = (r.regs[reg::EFER] & !EFER_LMA) | lma;
                r.regs[reg::CR4] = if next() % 2 == 0 { CR4_LA57 } else { 0 };
            }
            let msr = match n % 4 {
                0 => msrs[(n >> 8) as usize % msrs.len()],
                1 => MSR_MTRR_VAR_BASE + (n >> 8) as u32 % 0x80, // variable and fixed ranges, and past them
                2 => 0xc000_0080 + (n >> 8) as u32 % 8,
                _ => (n >> 8) as u32,
            };
            // Mostly values with few bits, so that some writes are
            // accepted: small ones, PHYSBASE- and PHYSMASK-shaped ones,
            // canonical and non-canonical addresses.
            let val = match (n >> 40) % 5 {
                0 => next() & 0xfff,
                1 => next() & 0x000f_ffff_ffff_f0ff,
                2 => (next() & 0x000f_ffff_ffff_f000) | 0x800,
                3 => (((next() << 16) as i64) >> 16) as u64,
                _ => next(),
            };
            // The TSC moves on by itself (its own test covers it).
            if next() % 2 == 0 || msr == MSR_TSC {
                let _ = r.rdmsr(msr);
                continue;
            }
            let before = r.rdmsr(msr);
            let efer_before = r.regs[reg::EFER];
            match r.wrmsr(msr, val) {
                MsrAccess::Done(_) => {
                    let expect = match msr {
                        MSR_EFER => (val & EFER_WRITABLE) | (efer_before & EFER_LMA),
                        MSR_SYSENTER_CS => val & 0xffff_ffff,
                        MSR_MCG_CAP | MSR_MCG_STATUS => 0,
                        MSR_MISC_ENABLE => MISC_ENABLE,
                        _ => val,
                    };
                    assert_eq!(r.rdmsr(msr), MsrAccess::Done(expect), "{msr:#x} <- {val:#x}");
                    if msr == MSR_EFER && r.regs[reg::CR0] & CR0_PG != 0 {
                        assert_eq!((val ^ efer_before) & EFER_LME, 0, "LME changed under paging");
                    }
                }
                MsrAccess::Fault => {
                    assert_ne!(before, MsrAccess::Userland, "{msr:#x}: a kept MSR faults");
                    assert_eq!(r.rdmsr(msr), before, "{msr:#x} <- {val:#x} refused");
                    assert_eq!(r.regs[reg::EFER], efer_before);
                }
                // Only a MISC_ENABLE change and the read-only MSRs are
                // read here but written there.
                MsrAccess::Userland
                    if matches!(msr, MSR_MISC_ENABLE | MSR_PLATFORM_INFO | MSR_TURBO_RATIO_LIMIT | MSR_TURBO_RATIO_LIMIT1) =>
                {
                    assert_eq!(r.rdmsr(msr), before)
                }
                MsrAccess::Userland => assert_eq!(before, MsrAccess::Userland, "{msr:#x}: reads and writes agree"),
            }
        }
    }

    #[test]
    fn efer_pat_and_misc_enable_writes_are_checked() {
        let mut r = VcpuRegs::default();
        r.set(reg::EFER as i32, EFER_LMA | (1 << 8)).unwrap();
        assert_eq!(r.wrmsr(MSR_EFER, (1 << 8) | (1 << 11) | 1), MsrAccess::Done((1 << 8) | (1 << 11) | 1));
        assert_eq!(r.get(reg::EFER as i32), Ok(EFER_LMA | (1 << 8) | (1 << 11) | 1), "LMA stays the processor's");
        assert_eq!(r.wrmsr(MSR_EFER, 1 << 2), MsrAccess::Fault, "reserved bit");
        r.set(reg::CR0 as i32, CR0_PG | 1).unwrap();
        assert_eq!(r.wrmsr(MSR_EFER, 1 << 11), MsrAccess::Fault, "LME cleared under paging");
        assert_eq!(r.wrmsr(MSR_EFER, (1 << 8) | 1), MsrAccess::Done((1 << 8) | 1), "LME kept: fine");
        assert_eq!(r.wrmsr(MSR_LSTAR, 0x0000_8000_0000_0000), MsrAccess::Fault, "non-canonical");
        assert_eq!(r.wrmsr(MSR_LSTAR, 0xffff_8000_0000_0000), MsrAccess::Done(0xffff_8000_0000_0000));
        assert_eq!(r.wrmsr(MSR_CSTAR, 0x0000_8000_0000_0000), MsrAccess::Done(0x0000_8000_0000_0000), "CSTAR is not checked");
        r.set(reg::CR4 as i32, CR4_LA57).unwrap();
        assert_eq!(r.wrmsr(MSR_FSBASE, 0x0000_8000_0000_0000), MsrAccess::Done(0x0000_8000_0000_0000), "57-bit");
        assert_eq!(r.wrmsr(MSR_SYSENTER_CS, 0x1_0000_0010), MsrAccess::Done(0x1_0000_0010));
        assert_eq!(r.rdmsr(MSR_SYSENTER_CS), MsrAccess::Done(0x10), "32 bits");
        assert_eq!(r.wrmsr(MSR_PAT, 0x0007_0406_0007_0402), MsrAccess::Fault, "type 2");
        assert_eq!(r.wrmsr(MSR_PAT, PAT_RESET), MsrAccess::Done(PAT_RESET), "UC- (7) is a type");
        assert_eq!(r.wrmsr(MSR_PAT, 0x0101_0101_0606_0606), MsrAccess::Done(0x0101_0101_0606_0606));
        assert_eq!(r.rdmsr(MSR_PAT), MsrAccess::Done(0x0101_0101_0606_0606));
        assert_eq!(r.wrmsr(MSR_MISC_ENABLE, MISC_ENABLE | MISC_ENABLE_XD_DISABLE), MsrAccess::Done(MISC_ENABLE | MISC_ENABLE_XD_DISABLE));
        assert_eq!(r.wrmsr(MSR_MISC_ENABLE, MISC_ENABLE | 1 << 18), MsrAccess::Userland, "FreeBSD punts");
    }

    /// EFER as the processor takes a WRMSR: LME may change while paging
    /// is off (how a guest enters long mode), and a read-modify-write in
    /// long mode that carries LMA back is fine (Linux sets NXE so), LMA
    /// staying the processor's either way.
    #[test]
    fn efer_takes_lme_without_paging_and_lma_written_back() {
        let mut r = VcpuRegs::default();
        let lme = 1 << 8;
        assert_eq!(r.wrmsr(MSR_EFER, lme), MsrAccess::Done(lme), "LME on, paging off");
        assert_eq!(r.get(reg::EFER as i32), Ok(lme));
        assert_eq!(r.wrmsr(MSR_EFER, 0), MsrAccess::Done(0), "and off again");
        assert_eq!(r.wrmsr(MSR_EFER, EFER_LMA | 1), MsrAccess::Done(EFER_LMA | 1));
        assert_eq!(r.get(reg::EFER as i32), Ok(1), "LMA written is not LMA set");
        // Long mode: read, add NXE, write back.
        r.set(reg::CR0 as i32, CR0_PG | 1).unwrap();
        r.set(reg::EFER as i32, EFER_LMA | lme).unwrap();
        let MsrAccess::Done(efer) = r.rdmsr(MSR_EFER) else { panic!("EFER is kept") };
        assert_eq!(r.wrmsr(MSR_EFER, efer | 1 << 11), MsrAccess::Done(efer | 1 << 11));
        assert_eq!(r.get(reg::EFER as i32), Ok(EFER_LMA | lme | 1 << 11));
    }

    /// Every base and entry-point MSR the processor checks is canonical
    /// or #GP, IA32_KERNEL_GS_BASE too (SDM WRMSR); the refused value is
    /// not stored.
    #[test]
    fn base_msrs_refuse_non_canonical_addresses() {
        let mut r = VcpuRegs::default();
        let bad = 0x0000_8000_0000_0000;
        for msr in [MSR_FSBASE, MSR_GSBASE, MSR_KGSBASE, MSR_LSTAR, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP] {
            assert_eq!(r.wrmsr(msr, bad), MsrAccess::Fault, "{msr:#x}");
            assert_eq!(r.rdmsr(msr), MsrAccess::Done(0), "{msr:#x} unchanged");
        }
    }

    /// FreeBSD's VMX MSR bitmap: read-write pass-through for the FS, GS
    /// and kernel-GS bases, SYSENTER, EFER and the SYSCALL MSRs
    /// (`vmx_vminit`, `vmx_msr_guest_init`); read-only for the TSC and
    /// TSC_AUX; everything else exits.
    #[test]
    fn vmx_passthrough_is_freebsds_msr_bitmap() {
        let both = [
            MSR_FSBASE, MSR_GSBASE, MSR_KGSBASE, MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP, MSR_EFER,
            MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SF_MASK,
        ];
        for msr in both {
            assert!(vmx_passthrough(msr, false) && vmx_passthrough(msr, true), "{msr:#x}");
        }
        for msr in [MSR_TSC, MSR_TSC_AUX] {
            assert!(vmx_passthrough(msr, false) && !vmx_passthrough(msr, true), "{msr:#x}");
        }
        for msr in [MSR_PAT, MSR_MISC_ENABLE, MSR_MTRR_DEF_TYPE, MSR_MCG_CAP, 0x1b, 0x3a, 0xc000_0104] {
            assert!(!vmx_passthrough(msr, false) && !vmx_passthrough(msr, true), "{msr:#x}");
        }
    }
}
