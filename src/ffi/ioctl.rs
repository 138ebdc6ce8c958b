//! `vmm_ioctl`: the ioctl-shaped entry point. Decodes a FreeBSD 14 VM_*
//! command, takes its lock class (semantics.md section 3: one vCPU, all
//! vCPUs, all vCPUs + memory exclusive, memory shared, or none), and runs
//! the handler. Argument structs are copied in and (for _IOR/_IOWR) out,
//! as the kernel's copyin/copyout would.

use std::ffi::{c_int, c_ulong, c_void};
use std::ptr;

use super::abi::*;
use super::errno::{errno_of, fail, to_rc};
use super::call::{ctx_ioctl_raw, ctx_pin};
use super::handle::vmctx;
use super::panic::ffi_boundary;
use crate::error::Result;
use crate::vm::Vm;

/// How an ioctl synchronises with the vCPUs (FreeBSD `vmmdev_ioctl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockClass {
    /// Lock the vCPU named by the argument's first field (from IDLE).
    One,
    /// Freeze every vCPU.
    All,
    /// Freeze every vCPU, then hold guest memory exclusively.
    AllMemExclusive,
    /// Hold guest memory shared.
    MemShared,
    /// No vCPU lock.
    None,
}

/// Issues VM command `cmd` with argument `arg` on the VM behind `ctx`, as
/// `ioctl(vmfd, cmd, arg)` does on FreeBSD 14. Returns 0, or -1 with
/// errno: ENOTTY for an unknown command (checked first, also on a
/// destroyed VM; VM_GET_GPA_PMAP and VM_RESTORE_TIME are ENOTTY here),
/// EFAULT for a NULL argument (VM_REINIT, an `_IO` command, takes none),
/// EINVAL for an out-of-range vCPU id, EBADF for a closed handle or a
/// destroyed VM, EDEADLK for a command that needs a vCPU of this VM to
/// stand still issued from one of its simulated guest's callbacks, and
/// the command's own errors.
#[no_mangle]
pub unsafe extern "C" fn vmm_ioctl(ctx: *mut vmctx, cmd: c_ulong, arg: *mut c_void) -> c_int {
    ffi_boundary!({
        // c_ulong is u64 here, 32 bits on some hosts.
        #[allow(clippy::useless_conversion)]
        let cmd = u64::from(cmd);
        // The device model's hot path, first: exactly what the libvmmapi
        // functions run (a NULL argument takes the general path, which
        // orders its errors).
        if let (false, Some(pc)) = (arg.is_null(), PinCmd::of(cmd)) {
            // SAFETY: `arg` points to `cmd`'s struct, a `vm_ioapic_irq`.
            let pin = unsafe { copy_in::<vm_ioapic_irq>(arg) }.irq;
            return ctx_pin(ctx, pc, pin);
        }
        // SAFETY: `arg` is what the caller passed for `cmd`.
        unsafe { ctx_ioctl_raw(ctx, cmd, arg) }
    })
}

/// Runs one command on `vm`, returning 0 or -1 with errno.
///
/// # Safety
/// `arg` is NULL or points to the argument struct of `cmd`.
pub(crate) unsafe fn ioctl(vm: &Vm, cmd: u64, arg: *mut c_void) -> c_int {
    let Some(class) = lock_class(cmd) else {
        return fail(libc::ENOTTY);
    };
    if arg.is_null() && cmd != VM_REINIT {
        return fail(libc::EFAULT);
    }
    // SAFETY: forwarded from the caller.
    match unsafe { super::commands::run(vm, cmd, class, arg) } {
        Ok(()) => 0,
        Err(e) => fail(errno_of(e)),
    }
}

/// VM_IOAPIC_ASSERT/DEASSERT/PULSE_IRQ (lock class none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PinCmd {
    Assert,
    Deassert,
    Pulse,
}

impl PinCmd {
    /// The pin command `cmd` is, if it is one.
    #[inline(always)]
    pub(crate) fn of(cmd: u64) -> Option<PinCmd> {
        match cmd {
            VM_IOAPIC_ASSERT_IRQ => Some(PinCmd::Assert),
            VM_IOAPIC_DEASSERT_IRQ => Some(PinCmd::Deassert),
            VM_IOAPIC_PULSE_IRQ => Some(PinCmd::Pulse),
            _ => None,
        }
    }

    /// The command on pin `pin` of a live VM.
    #[inline(always)]
    pub(crate) fn run(self, vm: &Vm, pin: i32) -> Result<()> {
        match self {
            PinCmd::Assert => vm.ioapic_assert_irq(pin),
            PinCmd::Deassert => vm.ioapic_deassert_irq(pin),
            PinCmd::Pulse => vm.ioapic_pulse_irq(pin),
        }
    }
}

/// Runs a pin command once its argument is read: the whole of those
/// commands, shared by `vmm_ioctl` and the libvmmapi functions.
#[inline(always)]
pub(crate) fn run_pin_cmd(vm: &Vm, cmd: PinCmd, pin: i32) -> c_int {
    to_rc(vm.check_alive().and_then(|()| cmd.run(vm, pin)))
}

/// The lock class of each known command; `None` for an unknown one.
pub fn lock_class(cmd: u64) -> Option<LockClass> {
    use LockClass::*;
    Some(match cmd {
        VM_RUN | VM_SET_REGISTER | VM_GET_REGISTER | VM_SET_SEGMENT_DESCRIPTOR
        | VM_GET_SEGMENT_DESCRIPTOR | VM_SET_REGISTER_SET | VM_GET_REGISTER_SET
        | VM_SET_CAPABILITY | VM_GET_CAPABILITY | VM_ACTIVATE_CPU | VM_SET_INTINFO
        | VM_GET_INTINFO | VM_INJECT_EXCEPTION | VM_RESTART_INSTRUCTION
        | VM_SET_X2APIC_STATE | VM_SET_KERNEMU_DEV | VM_GET_KERNEMU_DEV | VM_GLA2GPA
        | VM_GLA2GPA_NOFAULT => One,
        VM_ALLOC_MEMSEG | VM_MMAP_MEMSEG | VM_MUNMAP_MEMSEG | VM_REINIT | VM_BIND_PPTDEV
        | VM_UNBIND_PPTDEV => AllMemExclusive,
        VM_MAP_PPTDEV_MMIO | VM_UNMAP_PPTDEV_MMIO => All,
        VM_GET_MEMSEG | VM_MMAP_GETNEXT => MemShared,
        VM_IOAPIC_ASSERT_IRQ | VM_IOAPIC_DEASSERT_IRQ | VM_IOAPIC_PULSE_IRQ
        | VM_IOAPIC_PINCOUNT | VM_LAPIC_MSI | VM_LAPIC_IRQ | VM_LAPIC_LOCAL_IRQ
        | VM_INJECT_NMI | VM_GET_X2APIC_STATE | VM_ISA_ASSERT_IRQ | VM_ISA_DEASSERT_IRQ
        | VM_ISA_PULSE_IRQ | VM_ISA_SET_IRQ_TRIGGER | VM_SUSPEND | VM_GET_CPUS | VM_SUSPEND_CPU | VM_RESUME_CPU
        | VM_SET_TOPOLOGY | VM_GET_TOPOLOGY | VM_RTC_READ | VM_RTC_WRITE | VM_RTC_SETTIME
        | VM_RTC_GETTIME | VM_GET_HPET_CAPABILITIES | VM_STATS | VM_STAT_DESC | VM_PPTDEV_MSI
        | VM_PPTDEV_MSIX | VM_PPTDEV_DISABLE_MSIX => None,
        _ => return Option::None,
    })
}

/// Copies the argument struct in (`copyin`).
///
/// # Safety
/// `arg` points to a readable `T`.
pub(crate) unsafe fn copy_in<T>(arg: *mut c_void) -> T {
    // SAFETY: per the caller's contract; unaligned-safe.
    unsafe { ptr::read_unaligned(arg as *const T) }
}

/// Copies the argument struct back out (`copyout`).
///
/// # Safety
/// `arg` points to a writable `T`.
pub(crate) unsafe fn copy_out<T>(arg: *mut c_void, v: T) {
    // SAFETY: per the caller's contract; unaligned-safe.
    unsafe { ptr::write_unaligned(arg as *mut T, v) }
}

/// The vCPU id in the first field of a per-vCPU argument, checked.
///
/// # Safety
/// `arg` points to a struct whose first field is an `int`.
pub(crate) unsafe fn arg_vcpu(vm: &Vm, arg: *mut c_void) -> Result<usize> {
    // SAFETY: per the caller's contract.
    let id: c_int = unsafe { copy_in(arg) };
    vm.vcpu_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As FreeBSD 14's vmmdev_ioctl: the commands that change the memory
    /// map also hold the memory segments exclusively; the pptdev MMIO ones
    /// only stop every vCPU (the C face cannot tell these apart: commands
    /// run both classes alike, so only `lock_class` says which it is).
    #[test]
    fn only_memory_map_changes_hold_memory_exclusively() {
        for cmd in [VM_ALLOC_MEMSEG, VM_MMAP_MEMSEG, VM_MUNMAP_MEMSEG, VM_REINIT, VM_BIND_PPTDEV, VM_UNBIND_PPTDEV] {
            assert_eq!(lock_class(cmd), Some(LockClass::AllMemExclusive), "{cmd:#x}");
        }
        for cmd in [VM_MAP_PPTDEV_MMIO, VM_UNMAP_PPTDEV_MMIO] {
            assert_eq!(lock_class(cmd), Some(LockClass::All), "{cmd:#x}");
        }
    }
}
