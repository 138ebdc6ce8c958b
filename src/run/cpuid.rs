//! A guest's CPUID in the run loop (FreeBSD `vmx_exit_process` calling
//! `x86_emulate_cpuid`): answered from the host processor, this vCPU and
//! its VM (see `cpuid`); never an exit to userland.

use crate::cpuid::{self, GuestCpu};
use crate::regs::{reg, CAP_ENABLE_INVPCID, CAP_RDPID, CAP_RDTSCP};
use crate::vcpu::Vcpu;
use crate::vlapic::X2ApicState;
use crate::vm::Vm;

impl Vm {
    /// CPUID of the guest's EAX and ECX: the answer goes to RAX, RBX, RCX
    /// and RDX (their upper halves cleared, as in long mode), then to the
    /// backend.
    pub(super) fn guest_cpuid(&self, vcpu: &Vcpu) {
        let topology = self.topology();
        // The vlapic's lock ranks above the registers': taken and dropped
        // first.
        let x2apic = vcpu.vlapic.x2apic_state() == X2ApicState::Enabled;
        let out = {
            let mut r = vcpu.regs.lock();
            let on = |cap| r.get_cap(cap) == Ok(1);
            let guest = GuestCpu {
                vcpu_id: vcpu.id() as u32,
                cores: topology.cores,
                threads: topology.threads,
                x2apic,
                // Always on here (see CAP_RDTSCP), read as FreeBSD reads
                // them, so the answer follows the capability if that
                // changes.
                rdtscp: on(CAP_RDTSCP),
                rdpid: on(CAP_RDPID),
                invpcid: on(CAP_ENABLE_INVPCID),
            };
            let get = |n: usize| r.get(n as i32).unwrap_or(0) as u32;
            let out = cpuid::host().emulate(&guest, get(reg::RAX), get(reg::RCX));
            for (n, v) in [reg::RAX, reg::RBX, reg::RCX, reg::RDX].into_iter().zip(out) {
                let _ = r.set(n as i32, u64::from(v));
            }
            out
        };
        self.backend().emulated_cpuid_result(vcpu, out);
    }
}
