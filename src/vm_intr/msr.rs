//! A guest's RDMSR and WRMSR in the run loop (FreeBSD's `emulate_rdmsr` /
//! `emulate_wrmsr` in `vmx.c`): the local APIC's MSRs first, then those
//! the register file keeps (`VcpuRegs::rdmsr`); the rest are userland's.

use std::time::Instant;

use crate::error::Error;
use crate::regs::MsrAccess;
use crate::vcpu::Vcpu;
use crate::vlapic::delivery::StartIpi;
use crate::vlapic::regs::{MSR_APICBASE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST};
use crate::vm::Vm;

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
    /// write sent. A write the APIC fails is userland's, as in FreeBSD
    /// (`lapic_wrmsr` fails, `vmx_exit_process` makes a VM_EXITCODE_WRMSR):
    /// a change of IA32_APIC_BASE (`vlapic_set_apicbase`), and an ICR
    /// write of an SMI or remote-read IPI, stored but not delivered
    /// (EPERM, `vlapic_icrlo_write_handler`'s 1). Another refused APIC
    /// MSR is #GP.
    pub(crate) fn guest_wrmsr(&self, vcpu: &Vcpu, msr: u32, value: u64) -> (MsrAccess, Option<StartIpi>) {
        if !Self::is_lapic_msr(msr) {
            return (vcpu.regs.lock().wrmsr(msr, value), None);
        }
        match self.guest_lapic_wrmsr(vcpu.id(), msr, value) {
            Ok(start) => (MsrAccess::Done(value), start),
            Err(Error::Perm) => (MsrAccess::Userland, None),
            Err(_) if msr == MSR_APICBASE => (MsrAccess::Userland, None),
            Err(_) => (MsrAccess::Fault, None),
        }
    }
}
