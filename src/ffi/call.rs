//! How the libvmmapi functions reach the dispatcher: resolve the handle,
//! fill in the vCPU id, and run the command exactly as `vmm_ioctl` would.

use std::ffi::{c_int, c_void};

use super::errno::fail_with;
use super::handle::{self, vcpu, vmctx};
use super::ioctl::{ioctl, run_pin_cmd, PinCmd};

/// Runs `cmd` with `arg` on the VM behind `ctx`.
pub(crate) fn ctx_ioctl<T>(ctx: *mut vmctx, cmd: u64, arg: &mut T) -> c_int {
    // SAFETY: `arg` is `cmd`'s argument struct.
    unsafe { ctx_ioctl_raw(ctx, cmd, arg as *mut T as *mut c_void) }
}

/// Runs `cmd` with `arg` on the VM behind `ctx` (what `vmm_ioctl` does off
/// the pin commands' path). Out of line: it is the cold half of
/// `vmm_ioctl`, so that the pin commands' half saves no registers for it.
///
/// # Safety
/// `arg` is NULL or points to the argument struct of `cmd`.
#[inline(never)]
pub(crate) unsafe fn ctx_ioctl_raw(ctx: *mut vmctx, cmd: u64, arg: *mut c_void) -> c_int {
    // SAFETY: forwarded from the caller.
    handle::with_ctx(ctx, |vm| unsafe { ioctl(vm, cmd, arg) }).unwrap_or_else(fail_with)
}

/// Runs `cmd` for the vCPU behind `vcpu`; `fill` puts the vCPU id into
/// the argument first.
pub(crate) fn vcpu_ioctl<T>(vcpu: *mut vcpu, cmd: u64, arg: &mut T, fill: impl FnOnce(&mut T, c_int)) -> c_int {
    handle::with_vcpu(vcpu, |vm, id| {
        fill(arg, id as c_int);
        // SAFETY: `arg` is `cmd`'s argument struct.
        unsafe { ioctl(vm, cmd, arg as *mut T as *mut c_void) }
    })
    .unwrap_or_else(fail_with)
}

/// VM_IOAPIC_ASSERT/DEASSERT/PULSE_IRQ on pin `pin` of the VM behind
/// `ctx`: what `ctx_ioctl` does with a `vm_ioapic_irq`, without building
/// one (the device model's hot path: inlined when the thread's handle
/// cache holds `ctx`).
#[inline(always)]
pub(crate) fn ctx_pin(ctx: *mut vmctx, cmd: PinCmd, pin: c_int) -> c_int {
    match handle::with_cached_ctx(ctx, |vm| run_pin_cmd(vm, cmd, pin)) {
        Some(rc) => rc,
        None => ctx_pin_uncached(ctx, cmd, pin),
    }
}

/// `ctx_pin` when the cache does not hold `ctx`: fill it, or fail.
#[cold]
#[inline(never)]
fn ctx_pin_uncached(ctx: *mut vmctx, cmd: PinCmd, pin: c_int) -> c_int {
    handle::with_ctx(ctx, |vm| run_pin_cmd(vm, cmd, pin)).unwrap_or_else(fail_with)
}
