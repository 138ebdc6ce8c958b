//! Interrupt-controller commands (vioapic, local APICs, ISA pins, kernemu
//! register access) and their libvmmapi functions.

use std::ffi::{c_int, c_void};

use super::abi::*;
use super::call::{ctx_ioctl, ctx_pin, vcpu_ioctl};
use super::errno::{errno_of, fail};
use super::handle::{self, vcpu, vmctx};
use super::ioctl::{copy_in, copy_out, PinCmd};
use super::panic::ffi_boundary;
use crate::error::{Error, Result};
use crate::vm::{VcpuLock, Vm};

/// Kernemu access: the size is `1 << access_width` (1..=128 bytes), and
/// the devices judge it as a guest access of that size (the vioapic
/// ignores all but 4 bytes, a local APIC read ignores it, a local APIC
/// write needs 4); an address outside the emulated devices is EINVAL.
/// All as FreeBSD.
fn kernemu(vm: &Vm, id: usize, a: &mut vm_readwrite_kernemu_device, write: bool) -> Result<()> {
    // access_width is a 3-bit field: at most 7.
    let size = 1u8 << a.access_width().min(7);
    if write {
        vm.mmio_write(id, a.gpa, size, a.value)?.ok_or(Error::Inval)
    } else {
        a.value = vm.mmio_read(id, a.gpa, size)?.ok_or(Error::Inval)?;
        Ok(())
    }
}

/// Lock-one commands: VM_SET_X2APIC_STATE, VM_SET/GET_KERNEMU_DEV.
///
/// # Safety
/// `arg` points to `cmd`'s struct.
pub(crate) unsafe fn vcpu_cmd(vm: &Vm, lock: &VcpuLock<'_>, cmd: u64, arg: *mut c_void) -> Result<()> {
    // SAFETY (copy_in/copy_out): `arg` points to `cmd`'s struct.
    unsafe {
        match cmd {
            VM_SET_X2APIC_STATE => {
                let a: vm_x2apic = copy_in(arg);
                vm.set_x2apic_state(lock.id() as c_int, a.state)
            }
            VM_SET_KERNEMU_DEV | VM_GET_KERNEMU_DEV => {
                let mut a: vm_readwrite_kernemu_device = copy_in(arg);
                kernemu(vm, lock.id(), &mut a, cmd == VM_SET_KERNEMU_DEV)?;
                copy_out(arg, a);
                Ok(())
            }
            _ => Err(Error::Inval),
        }
    }
}

/// Commands without a vCPU lock.
///
/// # Safety
/// `arg` points to `cmd`'s struct.
pub(crate) unsafe fn vm_cmd(vm: &Vm, cmd: u64, arg: *mut c_void) -> Result<()> {
    // SAFETY (copy_in/copy_out): `arg` points to `cmd`'s struct.
    unsafe {
        if let Some(pc) = PinCmd::of(cmd) {
            return pc.run(vm, copy_in::<vm_ioapic_irq>(arg).irq);
        }
        match cmd {
            VM_IOAPIC_PINCOUNT => {
                copy_out::<c_int>(arg, vm.ioapic_pincount());
                Ok(())
            }
            VM_ISA_ASSERT_IRQ | VM_ISA_DEASSERT_IRQ | VM_ISA_PULSE_IRQ => {
                let a: vm_isa_irq = copy_in(arg);
                match cmd {
                    VM_ISA_ASSERT_IRQ => vm.isa_assert_irq(a.atpic_irq, a.ioapic_irq),
                    VM_ISA_DEASSERT_IRQ => vm.isa_deassert_irq(a.atpic_irq, a.ioapic_irq),
                    _ => vm.isa_pulse_irq(a.atpic_irq, a.ioapic_irq),
                }
            }
            VM_ISA_SET_IRQ_TRIGGER => {
                let a: vm_isa_irq_trigger = copy_in(arg);
                let level = match a.trigger {
                    t if t == vm_intr_trigger::EDGE_TRIGGER as c_int => false,
                    t if t == vm_intr_trigger::LEVEL_TRIGGER as c_int => true,
                    _ => return Err(Error::Inval),
                };
                vm.isa_set_irq_trigger(a.atpic_irq, level)
            }
            VM_LAPIC_IRQ => {
                let a: vm_lapic_irq = copy_in(arg);
                vm.lapic_irq(a.cpuid, a.vector)
            }
            VM_LAPIC_LOCAL_IRQ => {
                let a: vm_lapic_irq = copy_in(arg);
                vm.lapic_local_irq(a.cpuid, a.vector)
            }
            VM_LAPIC_MSI => {
                let a: vm_lapic_msi = copy_in(arg);
                vm.lapic_msi(a.addr, a.msg)
            }
            VM_INJECT_NMI => vm.inject_nmi(copy_in::<vm_nmi>(arg).cpuid),
            VM_GET_X2APIC_STATE => {
                let mut a: vm_x2apic = copy_in(arg);
                a.state = vm.get_x2apic_state(a.cpuid)? as c_int;
                copy_out(arg, a);
                Ok(())
            }
            _ => Err(Error::Inval),
        }
    }
}

/// Asserts IOAPIC pin `irq` (count +1; sends on 0 -> 1). E2BIG when the
/// count is at its maximum, EINVAL for a pin out of range.
#[no_mangle]
pub extern "C" fn vm_ioapic_assert_irq(ctx: *mut vmctx, irq: c_int) -> c_int {
    ffi_boundary!({ ctx_pin(ctx, PinCmd::Assert, irq) })
}

/// Deasserts IOAPIC pin `irq` (count -1). ERANGE when the count is 0.
#[no_mangle]
pub extern "C" fn vm_ioapic_deassert_irq(ctx: *mut vmctx, irq: c_int) -> c_int {
    ffi_boundary!({ ctx_pin(ctx, PinCmd::Deassert, irq) })
}

/// Raises and lowers IOAPIC pin `irq` at once, as FreeBSD's one-lock
/// pulse: an interrupt is sent unless an assert holds the line, the pin
/// is masked, or (a level entry) its remote IRR is set; the pin's assert
/// count is left as it was. A pulse refused is dropped: nothing is sent
/// for it later (after the EOI or the unmask). EINVAL for a pin out of
/// range.
#[no_mangle]
pub extern "C" fn vm_ioapic_pulse_irq(ctx: *mut vmctx, irq: c_int) -> c_int {
    ffi_boundary!({ ctx_pin(ctx, PinCmd::Pulse, irq) })
}

/// The number of IOAPIC pins (32).
#[no_mangle]
pub unsafe extern "C" fn vm_ioapic_pincount(ctx: *mut vmctx, pincount: *mut c_int) -> c_int {
    ffi_boundary!({
        if pincount.is_null() {
            return fail(libc::EFAULT);
        }
        // SAFETY: non-NULL out-pointer; VM_IOAPIC_PINCOUNT writes an int.
        ctx_ioctl(ctx, VM_IOAPIC_PINCOUNT, unsafe { &mut *pincount })
    })
}

/// Asserts ISA IRQ `atpic_irq` (0-15) on the 8259 pair, then its IOAPIC
/// pin `ioapic_irq` (-1 = none). Returns 0, or -1 with errno EINVAL (IRQ
/// or pin out of range) or E2BIG (the IRQ's or the pin's assert count is
/// at its top; the other chip still takes the assert).
/// Until the guest initialises the 8259, it counts its IRQs but requests
/// no interrupt for them.
#[no_mangle]
pub extern "C" fn vm_isa_assert_irq(ctx: *mut vmctx, atpic_irq: c_int, ioapic_irq: c_int) -> c_int {
    ffi_boundary!({ ctx_ioctl(ctx, VM_ISA_ASSERT_IRQ, &mut vm_isa_irq { atpic_irq, ioapic_irq }) })
}

/// Deasserts an ISA IRQ on the 8259 pair and its IOAPIC pin (-1 = none).
/// ERANGE when the 8259 IRQ or the pin is not asserted: that chip's count
/// stays at zero and the other chip still takes the deassert (FreeBSD
/// counts below zero, after which the IRQ repeats for good). An assert
/// made before the guest initialised the 8259 is counted, so its
/// deassert after balances.
#[no_mangle]
pub extern "C" fn vm_isa_deassert_irq(ctx: *mut vmctx, atpic_irq: c_int, ioapic_irq: c_int) -> c_int {
    ffi_boundary!({ ctx_ioctl(ctx, VM_ISA_DEASSERT_IRQ, &mut vm_isa_irq { atpic_irq, ioapic_irq }) })
}

/// Sets 8259 IRQ `atpic_irq` (0-15) edge- or level-triggered (its ELCR
/// bit, which the guest sees at ports 0x4d0/0x4d1). Returns 0, or -1 with errno
/// EINVAL for another IRQ or trigger, or level on IRQ 0, 1, 2, 8 or 13.
/// (A `trigger` outside the enum is EINVAL too: the library reads it as
/// the int C passes.)
#[no_mangle]
pub extern "C" fn vm_isa_set_irq_trigger(ctx: *mut vmctx, atpic_irq: c_int, trigger: vm_intr_trigger_arg) -> c_int {
    ffi_boundary!({
        let mut a = vm_isa_irq_trigger { atpic_irq, trigger };
        ctx_ioctl(ctx, VM_ISA_SET_IRQ_TRIGGER, &mut a)
    })
}

/// Pulses ISA IRQ `atpic_irq` (0-15) on the 8259 pair, as an assert then
/// a deassert under the pair's lock (its count ends as it was), then
/// IOAPIC pin `ioapic_irq` (-1 = none) as vm_ioapic_pulse_irq() does: an
/// interrupt is sent unless an assert holds the pin, the pin is masked,
/// or (a level entry) its remote IRR is set, and the pin's count is left
/// alone. A pulse refused is dropped, not kept for later. Returns 0, or
/// -1 with errno EINVAL (IRQ or pin out of range) or E2BIG (the 8259
/// IRQ's assert count is at its top; the pin is still pulsed).
#[no_mangle]
pub extern "C" fn vm_isa_pulse_irq(ctx: *mut vmctx, atpic_irq: c_int, ioapic_irq: c_int) -> c_int {
    ffi_boundary!({ ctx_ioctl(ctx, VM_ISA_PULSE_IRQ, &mut vm_isa_irq { atpic_irq, ioapic_irq }) })
}

/// Sends fixed, edge-triggered `vector` (16-255, else EINVAL) to the vCPU's
/// local APIC. As FreeBSD's `vlapic_set_intr_ready`, a local APIC the
/// guest has not software-enabled (SVR bit 8, clear at power-on) drops
/// the vector and the call still returns 0.
#[no_mangle]
pub extern "C" fn vm_lapic_irq(vcpu: *mut vcpu, vector: c_int) -> c_int {
    ffi_boundary!({
        let mut a = vm_lapic_irq { cpuid: 0, vector };
        vcpu_ioctl(vcpu, VM_LAPIC_IRQ, &mut a, |a, id| a.cpuid = id)
    })
}

/// Triggers local vector table entry `vector` (an LVT index, 0-6) of the
/// vCPU's local APIC. Returns 0, or -1 with errno EINVAL for another index
/// while the APIC is software-enabled (while it is disabled, as FreeBSD,
/// any index is accepted and nothing happens).
#[no_mangle]
pub extern "C" fn vm_lapic_local_irq(vcpu: *mut vcpu, vector: c_int) -> c_int {
    ffi_boundary!({
        let mut a = vm_lapic_irq { cpuid: 0, vector };
        vcpu_ioctl(vcpu, VM_LAPIC_LOCAL_IRQ, &mut a, |a, id| a.cpuid = id)
    })
}

/// Delivers an MSI: `addr` 0xFEExxxxx (destination bits 12-19,
/// destination mode bit 2, redirection hint bit 3), `msg` vector bits
/// 0-7, delivery mode bits 8-10. As FreeBSD's `lapic_intr_msi`, the
/// destination is logical only with both bits 2 and 3 set; otherwise it
/// is a physical APIC id. EINVAL when address bits 31:20 are not 0xFEE
/// (bits 63:32 are ignored, as FreeBSD). As FreeBSD, an MSI that reaches
/// no vCPU (no such APIC id, a vCPU not activated, or a local APIC the
/// guest has not software-enabled through its SVR) is dropped and the
/// call still returns 0.
#[no_mangle]
pub extern "C" fn vm_lapic_msi(ctx: *mut vmctx, addr: u64, msg: u64) -> c_int {
    ffi_boundary!({ ctx_ioctl(ctx, VM_LAPIC_MSI, &mut vm_lapic_msi { msg, addr }) })
}

/// vm_lapic_msi() under FreeBSD 15's machine-independent name, with which
/// bhyve's PCI code raises an MSI: on x86 the requester's `bus`, `slot`
/// and `func` are ignored, as in FreeBSD's amd64 libvmmapi.
#[no_mangle]
pub extern "C" fn vm_raise_msi(ctx: *mut vmctx, addr: u64, msg: u64, bus: c_int, slot: c_int, func: c_int) -> c_int {
    let _ = (bus, slot, func);
    ffi_boundary!({ vm_lapic_msi(ctx, addr, msg) })
}

/// Makes an NMI pending on the vCPU.
#[no_mangle]
pub extern "C" fn vm_inject_nmi(vcpu: *mut vcpu) -> c_int {
    ffi_boundary!({
        let mut a = vm_nmi { cpuid: 0 };
        vcpu_ioctl(vcpu, VM_INJECT_NMI, &mut a, |a, id| a.cpuid = id)
    })
}

/// Reads the vCPU's x2APIC state (enum x2apic_state; X2APIC_DISABLED
/// after a failure, as libvmmapi).
#[no_mangle]
pub unsafe extern "C" fn vm_get_x2apic_state(vcpu: *mut vcpu, state: *mut x2apic_state) -> c_int {
    ffi_boundary!({
        if state.is_null() {
            return fail(libc::EFAULT);
        }
        let mut a = vm_x2apic { cpuid: 0, state: 0 };
        let rc = vcpu_ioctl(vcpu, VM_GET_X2APIC_STATE, &mut a, |a, id| a.cpuid = id);
        // The VM only ever holds one of the two states. As libvmmapi,
        // `*state` is written whatever the result: the zeroed state
        // (X2APIC_DISABLED) after a failure.
        let s = if rc == 0 && a.state == x2apic_state::X2APIC_ENABLED as c_int {
            x2apic_state::X2APIC_ENABLED
        } else {
            x2apic_state::X2APIC_DISABLED
        };
        // SAFETY: non-NULL out-pointer.
        unsafe { state.write(s) };
        rc
    })
}

/// Sets the vCPU's x2APIC state: EINVAL unless X2APIC_DISABLED or
/// X2APIC_ENABLED.
#[no_mangle]
pub extern "C" fn vm_set_x2apic_state(vcpu: *mut vcpu, state: x2apic_state_arg) -> c_int {
    ffi_boundary!({
        let mut a = vm_x2apic { cpuid: 0, state };
        vcpu_ioctl(vcpu, VM_SET_X2APIC_STATE, &mut a, |a, id| a.cpuid = id)
    })
}

/// Reads or writes an in-library device register (IOAPIC at 0xFEC00000,
/// HPET at 0xFED00000, the vCPU's local APIC at 0xFEE00000) by
/// guest-physical address, exactly
/// as a guest access from this vCPU would. `size` is 1, 2, 4 or 8.
/// A local APIC ICR write of an SMI or remote-read IPI is stored but
/// fails with EPERM, as FreeBSD's VM_SET_KERNEMU_DEV.
/// From a simulated guest's callback (of another VM: of this VM it is
/// EDEADLK), an I/O APIC write whose wait for its target vCPUs would
/// close a cycle of callbacks waiting for each other fails with EDEADLK
/// and changes nothing.
#[no_mangle]
pub unsafe extern "C" fn vm_readwrite_kernemu_device(
    vcpu: *mut vcpu,
    gpa: u64,
    write: bool,
    size: c_int,
    value: *mut u64,
) -> c_int {
    ffi_boundary!({
        if value.is_null() {
            return fail(libc::EFAULT);
        }
        let width = match size {
            1 => 0,
            2 => 1,
            4 => 2,
            8 => 3,
            _ => return fail(libc::EINVAL),
        };
        let mut a = vm_readwrite_kernemu_device { vcpuid: 0, bits: 0, gpa, value: 0 };
        a.set_access_width(width);
        // SAFETY: non-NULL in/out pointer.
        a.value = if write { unsafe { value.read() } } else { !0 };
        let cmd = if write { VM_SET_KERNEMU_DEV } else { VM_GET_KERNEMU_DEV };
        let rc = vcpu_ioctl(vcpu, cmd, &mut a, |a, id| a.vcpuid = id);
        if rc == 0 && !write {
            // SAFETY: non-NULL out-pointer.
            unsafe { value.write(a.value) };
        }
        rc
    })
}

/// vmm_rs extension: the vioapic's counters (`struct vmm_rs_ioapic_stats`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vmm_rs_ioapic_stats {
    /// Interrupts sent to local APICs.
    pub interrupts: u64,
    /// Asserts refused at the maximum count (E2BIG).
    pub saturate_high: u64,
    /// Deasserts refused at zero (ERANGE).
    pub saturate_low: u64,
    /// Redirection-table half writes.
    pub rte_writes: u64,
    /// RTE writes that needed TMR work on other vCPUs.
    pub tmr_updates: u64,
    /// vCPUs kept out of RUNNING (`vcpu_block_run`) by RTE writes.
    pub tmr_block_runs: u64,
    /// TMR set/clear operations staged into local APICs.
    pub tmr_stagings: u64,
    /// Sends held back while an entry was being rewritten, then sent once.
    pub deferred_sends: u64,
}

/// vmm_rs extension: reads the vioapic's counters.
#[no_mangle]
pub unsafe extern "C" fn vmm_rs_ioapic_stats(ctx: *mut vmctx, stats: *mut vmm_rs_ioapic_stats) -> c_int {
    ffi_boundary!({
        if stats.is_null() {
            return fail(libc::EFAULT);
        }
        match handle::live_ctx_vm(ctx).map(|vm| vm.ioapic_stats()) {
            Ok(s) => {
                let out = vmm_rs_ioapic_stats {
                    interrupts: s.interrupts,
                    saturate_high: s.saturate_high,
                    saturate_low: s.saturate_low,
                    rte_writes: s.rte_writes,
                    tmr_updates: s.tmr_updates,
                    tmr_block_runs: s.tmr_block_runs,
                    tmr_stagings: s.tmr_stagings,
                    deferred_sends: s.deferred_sends,
                };
                // SAFETY: non-NULL out-pointer.
                unsafe { stats.write(out) };
                0
            }
            Err(e) => fail(errno_of(e)),
        }
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::vcpu::VcpuState;
    use crate::test_util::write_rte_low;

    /// vmm_rs_ioapic_stats() gives every counter of the vioapic, here
    /// with a send held back while its entry is rewritten (the assert
    /// made while the writer waits for its RUNNING target, as in
    /// `vm_intr::deadlock_tests`) counted in `deferred_sends`.
    #[test]
    fn ioapic_stats_gives_every_counter() {
        crate::test_util::with_watchdog(20, || {
            let name = c"ffi-ioapic-stats";
            // SAFETY: a C string.
            let ctx = unsafe {
                assert_eq!(crate::ffi::lifecycle::vm_create(name.as_ptr()), 0);
                crate::ffi::lifecycle::vm_open(name.as_ptr())
            };
            let vm = handle::ctx_vm(ctx).unwrap();
            for i in 0..2 {
                vm.activate_cpu(i).unwrap();
                // The local APIC software-enabled (SVR).
                vm.mmio_write(i, 0xfee0_00f0, 4, 0x1ff).unwrap();
            }
            write_rte_low(&vm, 0, 6, 0x60); // edge, vector 0x60, to vCPU 0
            let v0 = vm.vcpu(0).unwrap();
            v0.set_state(VcpuState::Frozen, true).unwrap();
            v0.set_state(VcpuState::Running, false).unwrap();
            let vm2 = vm.clone();
            let writer = std::thread::spawn(move || write_rte_low(&vm2, 1, 6, 0x8000 | 0x61));
            while !v0.kicked() {
                std::thread::yield_now();
            }
            vm.ioapic_assert_irq(6).unwrap();
            v0.set_state(VcpuState::Frozen, false).unwrap();
            writer.join().unwrap();
            v0.set_state(VcpuState::Idle, false).unwrap();
            let mut st = vmm_rs_ioapic_stats::default();
            // SAFETY: a valid out-pointer.
            assert_eq!(unsafe { vmm_rs_ioapic_stats(ctx, &mut st) }, 0);
            let s = vm.ioapic_stats();
            assert_eq!((st.interrupts, st.deferred_sends, st.rte_writes), (1, 1, 2));
            assert_eq!(
                (st.saturate_high, st.saturate_low, st.rte_writes, st.tmr_updates, st.tmr_block_runs, st.tmr_stagings),
                (s.saturate_high, s.saturate_low, s.rte_writes, s.tmr_updates, s.tmr_block_runs, s.tmr_stagings)
            );
            crate::ffi::lifecycle::vm_destroy(ctx);
        });
    }
}
