//! Register states that loaders set up: the power-on state libvmmapi's
//! `vcpu_reset` gives an AP, and the entry states of FreeBSD's loader
//! (`vm_setup_freebsd_registers` for long mode, `_i386` for flat 32-bit
//! protected mode, and `vm_setup_freebsd_gdt`), as bhyveload sets them.

use super::{reg, SegDesc, VcpuRegs, CAP_UNRESTRICTED_GUEST, CR0_NE, CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME};

/// VMCS access-rights bits (`vm_set_desc`'s `access`).
const DESC_PRESENT: u32 = 0x80;
const DESC_DEF32: u32 = 0x4000;
const DESC_GRAN: u32 = 0x8000;
const DESC_UNUSABLE: u32 = 0x1_0000;
/// Segment types: code execute/read accessed, data read/write accessed,
/// busy 32-bit TSS.
const SDT_MEMERA: u32 = 27;
const SDT_MEMRWA: u32 = 19;
const SDT_SYS386BSY: u32 = 11;
/// The loader's GDT: selectors of its code, data and TSS entries (RPL 0).
const CODE_SEL: u64 = 1 << 3;
const DATA_SEL: u64 = 2 << 3;
const TSS_SEL: u64 = 3 << 3;
/// Limit of the 3-entry long-mode GDT.
const GDTR_LIMIT64: u32 = 3 * 8 - 1;
/// A 32-bit TSS's size.
pub const I386_TSS_SIZE: u32 = 104;

/// `vm_setup_freebsd_gdt`: the long-mode GDT (null, 64-bit code, data).
pub const FREEBSD_GDT64: [u64; 3] = [0, 0x0020_9800_0000_0000, 0x0000_9000_0000_0000];

/// The flat 32-bit GDT `vm_setup_freebsd_registers_i386` writes at
/// `gdtbase`: null, 4 GiB code and data, and a TSS of I386_TSS_SIZE bytes
/// one page above the GDT (only bits 23:0 of its base are written, as
/// FreeBSD's `sd_lobase`).
pub fn freebsd_gdt32(gdtbase: u32) -> [u64; 4] {
    let tssbase = u64::from(gdtbase.wrapping_add(0x1000) & 0xff_ffff);
    [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff, 0x0000_8900_0000_0000 | u64::from(I386_TSS_SIZE - 1) | tssbase << 16]
}

fn seg(base: u64, limit: u32, access: u32) -> SegDesc {
    SegDesc { base, limit, access }
}

impl VcpuRegs {
    /// libvmmapi `vcpu_reset`: the state after power-up or RESET (Intel
    /// SDM vol. 3 table 9-1) in the registers it names: real mode at
    /// F000:FFF0, CR0 with only NE set (the SDM's CD and NW crash some
    /// guests), RDX 0xF00, the other general registers, CR2-CR4 and EFER
    /// zero, 64 KiB data segments, GDTR and IDTR of limit 0xFFFF, an empty
    /// busy TSS and an LDT, DR6/DR7 at their reset values, no interrupt
    /// shadow, and the guest active: a HLT it sat in without an exit is
    /// over (as RESET or INIT ends one on hardware), so an AP that halted
    /// before starts at the new RIP. Other registers, capabilities and
    /// pending events are left as they are, as libvmmapi leaves them.
    pub fn power_on_reset(&mut self) {
        use reg::*;
        self.halted = false;
        let seg = |base, limit, access| SegDesc { base, limit, access };
        for r in (RAX..=R15).chain([RSP, CR2, CR3, CR4, EFER, INTR_SHADOW]) {
            self.regs[r] = 0;
        }
        self.regs[RDX] = 0xf00;
        self.regs[RFLAGS] = 0x2;
        self.regs[RIP] = 0xfff0;
        self.nextrip = 0xfff0;
        self.regs[CR0] = CR0_NE;
        self.regs[DR6] = 0xffff_0ff0;
        self.regs[DR7] = 0x400;
        self.segs[CS - ES] = seg(0xffff_0000, 0xffff, 0x93);
        self.regs[CS] = 0xf000;
        for r in [SS, DS, ES, FS, GS] {
            self.segs[r - ES] = seg(0, 0xffff, 0x93);
            self.regs[r] = 0;
        }
        self.segs[8] = seg(0, 0xffff, 0); // IDTR
        self.segs[9] = seg(0, 0xffff, 0); // GDTR
        self.segs[TR - ES] = seg(0, 0, 0x8b);
        self.regs[TR] = 0;
        self.segs[LDTR - ES] = seg(0, 0xffff, 0x82);
        self.regs[LDTR] = 0;
    }

    /// `vm_setup_freebsd_registers`: 64-bit mode at `rip` with paging
    /// (CR0 PE|PG|NE, CR4.PAE, EFER LME|LMA), page tables at `cr3`, the
    /// GDT of [`FREEBSD_GDT64`] at `gdtbase`, stack at `rsp`; flat code and
    /// data segments, TR and LDTR null.
    pub fn freebsd_long_mode(&mut self, rip: u64, cr3: u64, gdtbase: u64, rsp: u64) {
        use reg::*;
        self.regs[CR0] = CR0_PE | CR0_PG | CR0_NE;
        self.regs[CR4] = CR4_PAE;
        self.regs[EFER] = EFER_LME | EFER_LMA;
        self.regs[RFLAGS] = 0x2;
        self.segs[CS - ES] = seg(0, 0, 0x209b);
        for r in [DS, ES, FS, GS, SS] {
            self.segs[r - ES] = seg(0, 0, 0x93);
            self.regs[r] = DATA_SEL;
        }
        self.segs[TR - ES] = seg(0, 0, 0x8b);
        self.segs[LDTR - ES] = seg(0, 0, DESC_UNUSABLE);
        self.regs[CS] = CODE_SEL;
        self.regs[TR] = 0;
        self.regs[LDTR] = 0;
        self.regs[RIP] = rip;
        self.nextrip = rip;
        self.regs[CR3] = cr3;
        self.segs[9] = seg(gdtbase, GDTR_LIMIT64, 0); // GDTR
        self.regs[RSP] = rsp;
    }

    /// `vm_setup_freebsd_registers_i386` (registers only; the caller
    /// writes [`freebsd_gdt32`] at `gdtbase`): flat 32-bit protected mode
    /// at `eip` without paging (CR0 PE|NE, EFER 0, unrestricted guest on),
    /// 4 GiB code and data segments, the busy TSS one page above the GDT,
    /// LDTR unusable, stack at `esp`.
    pub fn freebsd_i386(&mut self, eip: u32, gdtbase: u32, esp: u32) {
        use reg::*;
        self.caps[CAP_UNRESTRICTED_GUEST as usize] = 1;
        self.regs[CR0] = CR0_PE | CR0_NE;
        self.regs[CR4] = 0;
        self.regs[EFER] = 0;
        self.segs[9] = seg(u64::from(gdtbase), 4 * 8 - 1, 0); // GDTR
        self.regs[RFLAGS] = 0x2;
        let flat = DESC_GRAN | DESC_DEF32 | DESC_PRESENT;
        self.segs[CS - ES] = seg(0, 0xffff_ffff, flat | SDT_MEMERA);
        for r in [DS, ES, FS, GS, SS] {
            self.segs[r - ES] = seg(0, 0xffff_ffff, flat | SDT_MEMRWA);
            self.regs[r] = DATA_SEL;
        }
        let tssbase = u64::from(gdtbase.wrapping_add(0x1000));
        self.segs[TR - ES] = seg(tssbase, I386_TSS_SIZE - 1, DESC_PRESENT | SDT_SYS386BSY);
        self.segs[LDTR - ES] = seg(0, 0, DESC_UNUSABLE);
        self.regs[CS] = CODE_SEL;
        self.regs[TR] = TSS_SEL;
        self.regs[LDTR] = 0;
        self.regs[RIP] = u64::from(eip);
        self.nextrip = u64::from(eip);
        self.regs[RSP] = u64::from(esp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (base, limit in bytes, type with S bit, P, D/B) of a GDT entry.
    fn decode(d: u64) -> (u64, u64, u64, bool, bool) {
        let base = (d >> 16) & 0xff_ffff | (d >> 56) << 24;
        let mut limit = d & 0xffff | (d >> 48 & 0xf) << 16;
        if d >> 55 & 1 != 0 {
            limit = limit << 12 | 0xfff;
        }
        (base, limit, d >> 40 & 0x1f, d >> 47 & 1 != 0, d >> 54 & 1 != 0)
    }

    #[test]
    fn the_32_bit_gdt_describes_the_segments_loaded() {
        let gdt = freebsd_gdt32(0x2000);
        assert_eq!(gdt[0], 0);
        assert_eq!(decode(gdt[1]), (0, 0xffff_ffff, 0x1a, true, true), "code: execute/read");
        assert_eq!(decode(gdt[2]), (0, 0xffff_ffff, 0x12, true, true), "data: read/write");
        assert_eq!(decode(gdt[3]), (0x3000, 103, 0x09, true, false), "available 32-bit TSS");
        assert_eq!(decode(freebsd_gdt32(0x0100_0000)[3]).0, 0x00_1000, "only base bits 23:0, as FreeBSD");
        // Base bits 31:24 do not spill into the type byte (an available
        // TSS turned busy).
        assert_eq!(decode(freebsd_gdt32(0x0200_0000)[3]), (0x00_1000, 103, 0x09, true, false), "TSS above 32 MiB");
        let mut r = VcpuRegs::default();
        r.freebsd_i386(0x10_0000, 0x2000, 0x8000);
        let (cs, ds, tr) = (r.get_seg(reg::CS as i32).unwrap(), r.get_seg(reg::DS as i32).unwrap(), r.get_seg(reg::TR as i32).unwrap());
        // The loaded descriptors are the entries, accessed (TSS busy).
        assert_eq!((cs.base, u64::from(cs.limit), u64::from(cs.access & 0x1f)), (0, 0xffff_ffff, 0x1a | 1));
        assert_eq!((ds.base, u64::from(ds.limit), u64::from(ds.access & 0x1f)), (0, 0xffff_ffff, 0x12 | 1));
        assert_eq!((tr.base, tr.limit, tr.access), (0x3000, 103, 0x8b));
        assert_eq!(r.get_seg(reg::GDTR as i32).unwrap(), seg(0x2000, 31, 0));
        assert_eq!((r.get(reg::CS as i32), r.get(reg::SS as i32), r.get(reg::TR as i32)), (Ok(8), Ok(0x10), Ok(0x18)));
        assert_eq!((r.get(reg::CR0 as i32), r.get(reg::EFER as i32), r.get(reg::CR4 as i32)), (Ok(0x21), Ok(0), Ok(0)));
        assert_eq!((r.rip(), r.nextrip, r.get(reg::RSP as i32)), (0x10_0000, 0x10_0000, Ok(0x8000)));
        assert_eq!(r.get_cap(CAP_UNRESTRICTED_GUEST), Ok(1));
        assert_eq!(r.get_seg(reg::LDTR as i32).unwrap().access, DESC_UNUSABLE);
    }

    #[test]
    fn long_mode_as_bhyveload_enters_a_kernel() {
        let (code, data) = (FREEBSD_GDT64[1], FREEBSD_GDT64[2]);
        assert_eq!((code >> 53 & 1, code >> 47 & 1, code >> 40 & 0x1f), (1, 1, 0x18), "L, P, code");
        assert_eq!((data >> 47 & 1, data >> 40 & 0x1f), (1, 0x10), "P, data");
        let mut r = VcpuRegs::default();
        r.freebsd_long_mode(0xffff_ffff_8020_0000, 0x5000, 0x3000, 0x7000);
        assert_eq!(r.get(reg::CR0 as i32), Ok(0x8000_0021));
        assert_eq!((r.get(reg::CR4 as i32), r.get(reg::EFER as i32), r.get(reg::CR3 as i32)), (Ok(0x20), Ok(0x500), Ok(0x5000)));
        assert_eq!((r.get(reg::CS as i32), r.get(reg::DS as i32), r.get(reg::TR as i32)), (Ok(8), Ok(0x10), Ok(0)));
        assert_eq!(r.get_seg(reg::CS as i32).unwrap(), seg(0, 0, 0x209b), "64-bit code");
        for s in [reg::DS, reg::ES, reg::FS, reg::GS, reg::SS] {
            assert_eq!(r.get_seg(s as i32).unwrap(), seg(0, 0, 0x93), "segment {s}");
        }
        assert_eq!(r.get_seg(reg::TR as i32).unwrap(), seg(0, 0, 0x8b));
        assert_eq!(r.get_seg(reg::LDTR as i32).unwrap(), seg(0, 0, DESC_UNUSABLE));
        assert_eq!((r.get(reg::RFLAGS as i32), r.get(reg::LDTR as i32)), (Ok(2), Ok(0)));
        assert_eq!(r.get_seg(reg::GDTR as i32).unwrap(), seg(0x3000, 23, 0));
        assert_eq!((r.rip(), r.nextrip, r.get(reg::RSP as i32)), (0xffff_ffff_8020_0000, 0xffff_ffff_8020_0000, Ok(0x7000)));
    }
}
