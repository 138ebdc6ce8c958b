//! A thread's wait for other vCPUs of a VM whose vCPU it holds, reported
//! to an observer that may refuse it.
//!
//! Two such waits can hang when the thread holds more than that vCPU: a
//! thread that runs (or locks) the vCPU from another VM's guest callback
//! holds that callback's vCPU too, and if a vCPU it waits for sits in a
//! callback that waits for that other vCPU, neither ends.
//! - The suspend wait (a vCPU that joined a suspend waits until every
//!   active vCPU of its VM has) gives way to calls that want its own vCPU
//!   (reqidle), but not to what else its thread holds.
//! - An RTE write's `block_run` waits while each other target vCPU is
//!   RUNNING. It is reported before the write changes anything, so a
//!   refusal leaves the I/O APIC as it was (the guest's write is made
//!   again when it restarts).
//!
//! The C face's wait-for registry (`ffi::reentry`) sees such cycles; it
//! observes these waits through the hook installed here, and the core
//! knows nothing more of it.

use std::sync::OnceLock;

use crate::cpuset::CpuSet;
use crate::error::Result;
use crate::vm::Vm;

/// What the thread is about to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerWaits {
    /// Every other vCPU of the VM, to join a suspend (the thread's own
    /// vCPU gives way to calls that want it meanwhile).
    Suspend,
    /// These vCPUs, each while it is RUNNING (an RTE write's `block_run`).
    Running(CpuSet),
}

/// Sees a thread's waits for other vCPUs of a VM whose vCPU it holds.
pub trait PeerWaitObserver: Sync {
    /// The calling thread, which holds a vCPU of `vm`, is about to wait
    /// for `waits`. An error refuses the wait (it would close a cycle)
    /// and leaves the observer's state as it was, so the caller may
    /// report again later; `Ok(true)` means [`end`](Self::end) is owed
    /// once the wait is over. Called with no core lock held, or under the
    /// I/O APIC's write lock and table mutex (an RTE write): it must take
    /// no core lock and never wait.
    fn begin(&self, vm: &Vm, waits: PeerWaits) -> Result<bool>;
    /// The wait `begin` accepted now waits only for `waits`, a part of
    /// it (a `block_run` target done with). Fewer waits close no cycle:
    /// nothing is refused. Called as `end`.
    fn narrow(&self, waits: PeerWaits);
    /// The wait `begin` accepted is over. Called under no lock `begin`
    /// could not be called under.
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
pub struct PeerWait {
    owed: bool,
}

impl PeerWait {
    /// Nothing reported, nothing owed.
    pub fn none() -> PeerWait {
        PeerWait { owed: false }
    }

    /// The wait goes on for `waits` only, a part of what was reported
    /// (see [`PeerWaitObserver::narrow`]).
    pub fn narrow(&self, waits: PeerWaits) {
        if self.owed {
            if let Some(o) = OBSERVER.get() {
                o.narrow(waits);
            }
        }
    }
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

/// Reports that the calling thread, which holds a vCPU of `vm`, is about
/// to wait for `waits` (see [`PeerWaitObserver::begin`]); keep the result
/// until the wait is over.
pub fn begin(vm: &Vm, waits: PeerWaits) -> Result<PeerWait> {
    let owed = match OBSERVER.get() {
        Some(o) => o.begin(vm, waits)?,
        None => false,
    };
    Ok(PeerWait { owed })
}
