//! Calls made from inside a simulated guest's C callbacks. A callback runs
//! on the thread in VM_RUN, while its vCPU runs and its guest's state is
//! locked. A call from it that needs a vCPU of the same VM to stand still
//! (the lock-one and lock-all ioctls, a guest change, the guest's
//! counters) would wait for this very thread, or for another vCPU's thread
//! that may be waiting for this one: it fails with EDEADLK instead of
//! hanging. Calls that need no vCPU (interrupts, statistics, suspend,
//! destroy) and calls on other VMs go ahead.
//!
//! Thread cancellation is disabled while a callback runs: a pending
//! `pthread_cancel` acted on at a cancellation point inside it (printf,
//! usleep) would unwind through the library's frames, which hold locks,
//! and abort the process (see `cancel`). It takes effect at the thread's
//! next cancellation point after VM_RUN returns.

use std::cell::Cell;
use std::ptr;

use crate::error::{Error, Result};
use crate::vm::Vm;

/// One callback under way on this thread: its VM, and the callback it
/// runs inside (a callback of VM A may run VM B, whose callback must then
/// not wait for A's vCPUs either). It lives on the stack of
/// [`in_callback`].
struct Frame {
    vm: usize,
    outer: *const Frame,
}

thread_local! {
    /// The innermost callback under way on this thread, or null. A plain
    /// pointer cell needs no destructor, so a call made while the
    /// thread's locals are being destroyed (a pthread key destructor)
    /// still finds it.
    static INNERMOST: Cell<*const Frame> = const { Cell::new(ptr::null()) };
}

/// The identity [`in_callback`] and [`refuse_from_callback`] compare.
pub(crate) fn vm_identity(vm: &Vm) -> usize {
    vm as *const Vm as usize
}

/// Runs C callback `f` of the VM `vm` (a [`vm_identity`]) marked as such,
/// with thread cancellation disabled (see [`super::cancel`]).
pub(crate) fn in_callback<R>(vm: usize, f: impl FnOnce() -> R) -> R {
    /// Puts the outer frame back, also if `f` unwinds.
    struct Restore(*const Frame);
    impl Drop for Restore {
        fn drop(&mut self) {
            INNERMOST.set(self.0);
        }
    }
    super::cancel::without_cancellation(|| {
        let frame = Frame { vm, outer: INNERMOST.get() };
        let _restore = Restore(frame.outer);
        INNERMOST.set(&frame);
        f()
    })
}

/// EDEADLK if this thread is inside a guest callback of `vm`, at any
/// depth.
pub(crate) fn refuse_from_callback(vm: &Vm) -> Result<()> {
    let vm = vm_identity(vm);
    let mut at = INNERMOST.get();
    while !at.is_null() {
        // SAFETY: every frame in the chain is on this thread's stack, in
        // an `in_callback` call still running: it is taken off before
        // that call returns.
        let frame = unsafe { &*at };
        if frame.vm == vm {
            return Err(Error::Deadlock);
        }
        at = frame.outer;
    }
    Ok(())
}
