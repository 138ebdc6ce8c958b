//! Local APIC register offsets, field masks and the 256-bit vector bitmap
//! (values from Intel SDM vol. 3 ch. 10 and FreeBSD `x86/apicreg.h`).

/// Guest-physical base of the xAPIC MMIO page.
pub const LAPIC_BASE: u64 = 0xFEE0_0000;
/// Size of the xAPIC MMIO page.
pub const LAPIC_SIZE: u64 = 0x1000;

/// Register offsets within the xAPIC page (x2APIC MSR = 0x800 + offset/16).
pub mod off {
    pub const ID: u32 = 0x20;
    pub const VER: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const APR: u32 = 0x90;
    pub const PPR: u32 = 0xA0;
    pub const EOI: u32 = 0xB0;
    pub const RRR: u32 = 0xC0;
    pub const LDR: u32 = 0xD0;
    pub const DFR: u32 = 0xE0;
    pub const SVR: u32 = 0xF0;
    pub const ISR0: u32 = 0x100;
    pub const TMR0: u32 = 0x180;
    pub const IRR0: u32 = 0x200;
    pub const ESR: u32 = 0x280;
    pub const LVT_CMCI: u32 = 0x2F0;
    pub const ICR_LO: u32 = 0x300;
    pub const ICR_HI: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_THERMAL: u32 = 0x330;
    pub const LVT_PERF: u32 = 0x340;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_ICR: u32 = 0x380;
    pub const TIMER_CCR: u32 = 0x390;
    pub const TIMER_DCR: u32 = 0x3E0;
    /// x2APIC only (MSR 0x83F).
    pub const SELF_IPI: u32 = 0x3F0;
}

/// LVT indices, FreeBSD `APIC_LVT_*` numbering (also the argument of
/// VM_LAPIC_LOCAL_IRQ).
pub mod lvt {
    pub const LINT0: usize = 0;
    pub const LINT1: usize = 1;
    pub const TIMER: usize = 2;
    pub const ERROR: usize = 3;
    pub const PMC: usize = 4;
    pub const THERMAL: usize = 5;
    pub const CMCI: usize = 6;
    /// Highest LVT index (`VLAPIC_MAXLVT_INDEX`), reported in VER.
    pub const MAX: usize = CMCI;
    pub const COUNT: usize = MAX + 1;

    /// The LVT index of an LVT register offset.
    pub fn from_offset(offset: u32) -> Option<usize> {
        use super::off;
        Some(match offset {
            off::LVT_CMCI => CMCI,
            off::LVT_TIMER => TIMER,
            off::LVT_THERMAL => THERMAL,
            off::LVT_PERF => PMC,
            off::LVT_LINT0 => LINT0,
            off::LVT_LINT1 => LINT1,
            off::LVT_ERROR => ERROR,
            _ => return None,
        })
    }
}

/// VER: version 0x14 (FreeBSD's `VLAPIC_VERSION`), max LVT index in 23:16.
pub const VERSION: u32 = 0x14 | ((lvt::MAX as u32) << 16);

pub const LDR_RESERVED: u32 = 0x00FF_FFFF;
pub const DFR_RESERVED: u32 = 0x0FFF_FFFF;
pub const DFR_MODEL_MASK: u32 = 0xF000_0000;
pub const DFR_MODEL_FLAT: u32 = 0xF000_0000;
pub const DFR_MODEL_CLUSTER: u32 = 0x0000_0000;

pub const SVR_VECTOR: u32 = 0xFF;
pub const SVR_ENABLE: u32 = 0x100;

pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 0x20;
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 0x40;

/// ICR and LVT fields (bit positions are shared).
pub const VECTOR_MASK: u32 = 0xFF;
pub const DELMODE_MASK: u32 = 0x700;
pub const DELMODE_FIXED: u32 = 0x000;
pub const DELMODE_LOWPRIO: u32 = 0x100;
pub const DELMODE_SMI: u32 = 0x200;
pub const DELMODE_RR: u32 = 0x300;
pub const DELMODE_NMI: u32 = 0x400;
pub const DELMODE_INIT: u32 = 0x500;
pub const DELMODE_STARTUP: u32 = 0x600;
pub const DELMODE_EXTINT: u32 = 0x700;
pub const DESTMODE_LOG: u32 = 0x800;
pub const DELSTAT_PEND: u32 = 0x1000;
pub const LEVEL_ASSERT: u32 = 0x4000;
pub const TRIGMOD_LEVEL: u32 = 0x8000;
pub const DEST_MASK: u32 = 0xC_0000;
pub const DEST_DESTFLD: u32 = 0x0_0000;
pub const DEST_SELF: u32 = 0x4_0000;
pub const DEST_ALLISELF: u32 = 0x8_0000;
pub const DEST_ALLESELF: u32 = 0xC_0000;

pub const LVT_DS: u32 = 0x1000;
pub const LVT_IIPP: u32 = 0x2000;
pub const LVT_RIRR: u32 = 0x4000;
pub const LVT_TM: u32 = 0x8000;
pub const LVT_M: u32 = 0x1_0000;
/// Timer LVT: periodic mode (bit 17).
pub const LVTT_PERIODIC: u32 = 0x2_0000;
/// Timer LVT mode field (bits 17-18: one-shot, periodic, TSC-deadline),
/// FreeBSD `APIC_LVTT_TM`. TSC-deadline is kept but runs as one-shot (the
/// CPUID the guest sees does not offer it).
pub const LVTT_MODE: u32 = 0x6_0000;

/// IA32_APIC_BASE MSR and its bits.
pub const MSR_APICBASE: u32 = 0x1B;
pub const APICBASE_BSP: u64 = 0x100;
pub const APICBASE_X2APIC: u64 = 0x400;
pub const APICBASE_ENABLED: u64 = 0x800;
/// x2APIC register MSRs (FreeBSD `lapic_msr`: 0x800..=0xBFF).
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_LAST: u32 = 0xBFF;

/// The priority class of a vector or of TPR/PPR (bits 7:4).
pub fn prio(x: u32) -> u32 {
    x & 0xF0
}

/// 256 one-bit flags indexed by vector, stored as the eight 32-bit words
/// the APIC exposes (IRR, ISR, TMR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VecBitmap([u32; 8]);

impl VecBitmap {
    pub const fn new() -> Self {
        VecBitmap([0; 8])
    }

    pub fn set(&mut self, v: u8) {
        self.0[usize::from(v / 32)] |= 1 << (v % 32);
    }

    pub fn clear(&mut self, v: u8) {
        self.0[usize::from(v / 32)] &= !(1 << (v % 32));
    }

    pub fn put(&mut self, v: u8, on: bool) {
        if on {
            self.set(v)
        } else {
            self.clear(v)
        }
    }

    pub fn test(&self, v: u8) -> bool {
        self.0[usize::from(v / 32)] & (1 << (v % 32)) != 0
    }

    /// The highest vector set, if any.
    pub fn highest(&self) -> Option<u8> {
        (0..8).rev().find(|i| self.0[*i] != 0).map(|i| {
            let bit = 31 - self.0[i].leading_zeros() as usize;
            (i * 32 + bit) as u8
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn union(&self, other: &VecBitmap) -> VecBitmap {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
        r
    }

    /// Word `i` (vectors 32i..32i+31), as at APIC offset base + 16i.
    pub fn word(&self, i: usize) -> u32 {
        self.0[i]
    }

    pub fn words(&self) -> [u32; 8] {
        self.0
    }

    /// Vectors set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(move |v| self.test(*v))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bitmap_words_and_highest() {
        let mut b = VecBitmap::new();
        assert_eq!(b.highest(), None);
        b.set(0x31);
        b.set(0xFE);
        assert_eq!(b.highest(), Some(0xFE));
        assert_eq!(b.word(1), 1 << 17);
        assert_eq!(b.word(7), 1 << 30);
        b.clear(0xFE);
        assert_eq!(b.highest(), Some(0x31));
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![0x31]);
        b.put(0, true);
        assert!(b.test(0) && !b.is_empty());
    }

    #[test]
    fn version_register_matches_freebsd() {
        assert_eq!(VERSION, 0x0006_0014);
        assert_eq!(lvt::from_offset(off::LVT_ERROR), Some(lvt::ERROR));
        assert_eq!(lvt::from_offset(off::ICR_LO), None);
    }
}
