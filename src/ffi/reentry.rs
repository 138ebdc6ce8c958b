//! Calls made from inside a simulated guest's C callbacks. A callback runs
//! on the thread in VM_RUN, while its vCPU runs and its guest's state is
//! locked. A call from it that needs a vCPU of the same VM to stand still
//! (the lock-one and lock-all ioctls, a guest change, the guest's
//! counters) would wait for this very thread, or for another vCPU's thread
//! that may be waiting for this one: it fails with EDEADLK instead of
//! hanging. Calls that need no vCPU (interrupts, statistics, suspend,
//! destroy) and calls on other VMs go ahead.

use std::cell::Cell;

use crate::error::{Error, Result};
use crate::vm::Vm;

thread_local! {
    /// The VM (its address) whose guest callback this thread is in; 0
    /// outside callbacks.
    static CALLBACK_VM: Cell<usize> = const { Cell::new(0) };
}

/// The identity [`InCallback`] and [`refuse_from_callback`] compare.
pub(crate) fn vm_identity(vm: &Vm) -> usize {
    vm as *const Vm as usize
}

/// Marks this thread as inside a callback of the VM `vm` (a
/// [`vm_identity`]) until dropped; nests, e.g. a callback running another
/// VM's vCPU.
pub(crate) struct InCallback(usize);

impl InCallback {
    pub(crate) fn enter(vm: usize) -> Self {
        InCallback(CALLBACK_VM.replace(vm))
    }
}

impl Drop for InCallback {
    fn drop(&mut self) {
        CALLBACK_VM.set(self.0);
    }
}

/// EDEADLK if this thread is inside a guest callback of `vm`.
pub(crate) fn refuse_from_callback(vm: &Vm) -> Result<()> {
    if CALLBACK_VM.get() == vm_identity(vm) {
        return Err(Error::Deadlock);
    }
    Ok(())
}
