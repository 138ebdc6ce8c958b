//! A guest's RDMSR and WRMSR in the run loop (FreeBSD's `emulate_rdmsr` /
//! `emulate_wrmsr` in `vmx.c`): the local APIC's MSRs first, then those
//! the register file keeps (`VcpuRegs::rdmsr`); the rest are userland's.

use std::time::Instant;

use crate::regs::MsrAccess;
use crate::vcpu::Vcpu;
use crate::vlapic::delivery::StartIpi;
use crate::vlapic::icr::icr_valid;
use crate::vlapic::regs::{off, DELMODE_MASK, DELMODE_RR, DELMODE_SMI, MSR_APICBASE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST};
use crate::vm::Vm;

/// The x2APIC ICR (both halves in one MSR).
const MSR_X2APIC_ICR: u32 = MSR_X2APIC_FIRST + (off::ICR_LO >> 4);

impl Vm {
    /// Whether the local APIC handles `msr` (FreeBSD `lapic_msr`):
    /// IA32_APIC_BASE and the x2APIC range, 0x800-0xBFF.
    pub(crate) fn is_lapic_msr(msr: u32) -> bool {
        msr == MSR_APICBASE || (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr)
    }

    /// RDMSR by `vcpu`'s guest. A local APIC MSR the APIC refuses (the
    /// x2APIC range in xAPIC mode) is #GP.
    pub(crate) fn guest_rdmsr(&self, vcpu: &Vcpu, msr: u32) -> MsrAccess {
        if !Self::is_lapic_msr(msr) {
            return vcpu.regs.lock().rdmsr(msr);
        }
        vcpu.vlapic.read_msr(msr, Instant::now()).map_or(MsrAccess::Fault, MsrAccess::Done)
    }

    /// WRMSR by `vcpu`'s guest, with the INIT or STARTUP IPI an x2APIC ICR
    /// write sent. A change of IA32_APIC_BASE, which the APIC refuses, is
    /// userland's, as in FreeBSD (`vlapic_set_apicbase` fails the write
    /// into a VM_EXITCODE_WRMSR); another refused APIC MSR is #GP.
    pub(crate) fn guest_wrmsr(&self, vcpu: &Vcpu, msr: u32, value: u64) -> (MsrAccess, Option<StartIpi>) {
        if !Self::is_lapic_msr(msr) {
            return (vcpu.regs.lock().wrmsr(msr, value), None);
        }
        match self.guest_lapic_wrmsr(vcpu.id(), msr, value) {
            // FreeBSD 14's `vlapic_icrlo_write_handler` stores the ICR but
            // fails a valid one with a delivery mode it has no case for
            // (SMI, remote read), so `lapic_wrmsr` fails and the WRMSR is
            // userland's. (Lowest priority fails there too; it is
            // delivered here on purpose, see `send_ipi`.)
            Ok(_) if msr == MSR_X2APIC_ICR && icr_valid(value as u32) && matches!(value as u32 & DELMODE_MASK, DELMODE_SMI | DELMODE_RR) => {
                (MsrAccess::Userland, None)
            }
            Ok(start) => (MsrAccess::Done(value), start),
            Err(_) if msr == MSR_APICBASE => (MsrAccess::Userland, None),
            Err(_) => (MsrAccess::Fault, None),
        }
    }
}
