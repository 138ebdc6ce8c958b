//! A vCPU's wait for the other vCPUs of its VM, reported to an observer
//! that may refuse it.
//!
//! The suspend wait (a vCPU that joined a suspend waits until every active
//! vCPU of its VM has) gives way to calls that want its own vCPU
//! (reqidle), but not to what its thread holds besides: a thread running
//! the vCPU from another VM's guest callback holds that callback's vCPU
//! too. If one of the vCPUs it waits for sits in a callback that waits
//! for that other vCPU, neither ends. The C face's wait-for registry
//! (`ffi::reentry`) sees such cycles; it observes these waits through the
//! hook installed here, and the core knows nothing more of it.

use std::sync::OnceLock;

use crate::error::Result;
use crate::vm::Vm;

/// Sees a thread's waits for the other vCPUs of a VM.
pub trait PeerWaitObserver: Sync {
    /// The calling thread, which holds a vCPU of `vm`, is about to wait
    /// until the others have joined a suspend. An error refuses the wait
    /// (it would close a cycle) and leaves the observer's state as it
    /// was, so the caller may report again later; `Ok(true)` means
    /// [`end`](Self::end) is owed once the wait is over. Called with no
    /// core lock held.
    fn begin(&self, vm: &Vm) -> Result<bool>;
    /// The wait `begin` accepted is over. Called with no core lock held.
    fn end(&self);
}

/// Set once, by the C face, before any guest callback runs.
static OBSERVER: OnceLock<&'static dyn PeerWaitObserver> = OnceLock::new();

/// Installs the observer (a second call changes nothing).
pub fn set_observer(observer: &'static dyn PeerWaitObserver) {
    let _ = OBSERVER.set(observer);
}

/// An accepted wait; dropping it tells the observer the wait is over.
#[must_use]
pub(crate) struct PeerWait {
    owed: bool,
}

impl Drop for PeerWait {
    fn drop(&mut self) {
        if self.owed {
            if let Some(o) = OBSERVER.get() {
                o.end();
            }
        }
    }
}

/// Reports that the calling thread is about to wait for the other vCPUs
/// of `vm` to suspend (see [`PeerWaitObserver::begin`]). Must be called
/// with no core lock held; keep the result until the wait is over.
pub(crate) fn begin_suspend_wait(vm: &Vm) -> Result<PeerWait> {
    let owed = match OBSERVER.get() {
        Some(o) => o.begin(vm)?,
        None => false,
    };
    Ok(PeerWait { owed })
}
