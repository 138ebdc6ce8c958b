//! Decoding an ICR write into an inter-processor interrupt request.

use super::regs::*;

/// An IPI requested by an ICR (or x2APIC SELF_IPI) write, to be delivered
/// by the VM after the sender's vlapic lock is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    /// `DELMODE_*`.
    pub mode: u32,
    pub vector: u8,
    /// Destination field: 8-bit xAPIC id, or 32-bit x2APIC id.
    pub dest: u32,
    pub phys: bool,
    /// `DEST_*` shorthand.
    pub shorthand: u32,
    /// Whether `dest` is in x2APIC format (sender in x2APIC mode).
    pub x2apic_dest: bool,
}

/// A valid ICR write whose delivery mode the APIC has no case for: SMI or
/// remote read. FreeBSD 14's `vlapic_icrlo_write_handler` returns 1 for it
/// (after the ICR is stored), which its callers pass on: the x2APIC WRMSR
/// becomes VM_EXITCODE_WRMSR, the xAPIC MMIO write fails VM_RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnhandledIpi {
    /// `DELMODE_SMI` or `DELMODE_RR`.
    pub mode: u32,
}

/// FreeBSD `vlapic_is_icr_valid`: ICR combinations a vCPU may send. The
/// rest (including a level-deassert INIT, which needs no emulation) are
/// ignored.
pub fn icr_valid(icr_lo: u32) -> bool {
    let mode = icr_lo & DELMODE_MASK;
    let edge = icr_lo & TRIGMOD_LEVEL == 0;
    let assert = icr_lo & LEVEL_ASSERT != 0;
    let sh = icr_lo & DEST_MASK;
    let field_or_others = sh == DEST_DESTFLD || sh == DEST_ALLESELF;
    match mode {
        DELMODE_FIXED => edge || assert,
        DELMODE_LOWPRIO | DELMODE_SMI | DELMODE_NMI | DELMODE_INIT => {
            (edge || assert) && field_or_others
        }
        DELMODE_STARTUP => field_or_others,
        DELMODE_RR => edge && sh == DEST_DESTFLD,
        _ => false,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn icr_validity_follows_freebsd() {
        assert!(icr_valid(DELMODE_FIXED | 0x40));
        assert!(icr_valid(DELMODE_FIXED | TRIGMOD_LEVEL | LEVEL_ASSERT));
        assert!(!icr_valid(DELMODE_FIXED | TRIGMOD_LEVEL));
        assert!(icr_valid(DELMODE_NMI | DEST_ALLESELF));
        assert!(!icr_valid(DELMODE_NMI | DEST_SELF));
        // Level-deassert INIT is ignored.
        assert!(!icr_valid(DELMODE_INIT | TRIGMOD_LEVEL));
        assert!(icr_valid(DELMODE_INIT | TRIGMOD_LEVEL | LEVEL_ASSERT));
        assert!(icr_valid(DELMODE_STARTUP | TRIGMOD_LEVEL));
        assert!(!icr_valid(DELMODE_STARTUP | DEST_ALLISELF));
        assert!(!icr_valid(DELMODE_EXTINT));
    }
}
