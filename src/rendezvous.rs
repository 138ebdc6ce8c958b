//! `vm_smp_rendezvous`: run a callback on a set of vCPUs, each on its own
//! thread (or on its behalf), and wait until all have run it.
//!
//! The callback runs with no rendezvous lock held, so it may take vioapic or
//! vlapic locks. It runs for vCPU `i` only in the thread that owns `i`: the
//! vCPU's run loop, or a lock-all that has frozen `i` ([`run_on_behalf`]),
//! which is what keeps lock-all from deadlocking against a pending
//! rendezvous (FreeBSD D52968).
//!
//! [`run_on_behalf`]: Rendezvous::run_on_behalf

use crate::cpuset::CpuSet;
use crate::error::{Error, Result};
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Arc, Condvar, Mutex};
use crate::vm::Vm;

/// A rendezvous callback: it runs for the vCPU id given, in a thread that
/// owns that vCPU, with the VM passed in.
pub type RendezvousFn = Arc<dyn Fn(&Vm, usize) + Send + Sync>;

/// Wraps a closure as a [`RendezvousFn`] (the coercion to `dyn Fn` goes
/// through a std `Arc` because loom's cannot do it, see `sync`).
pub fn callback(f: impl Fn(&Vm, usize) + Send + Sync + 'static) -> RendezvousFn {
    let f: std::sync::Arc<dyn Fn(&Vm, usize) + Send + Sync> = std::sync::Arc::new(f);
    crate::sync::arc_from_std(f)
}

#[derive(Default)]
struct Pending {
    func: Option<RendezvousFn>,
    req: CpuSet,
    done: CpuSet,
}

/// The VM's rendezvous slot (one at a time, as in FreeBSD).
pub struct Rendezvous {
    /// Rendezvous mutex. Protects: the pending callback and its req/done
    /// sets. Rank: VM-level, taken with no vCPU, vioapic or vlapic lock
    /// held, and never held while a callback runs.
    mtx: Mutex<Pending>,
    /// Signalled when a vCPU finishes its callback or the slot frees up.
    cv: Condvar,
    /// Whether a rendezvous is posted (read without the mutex by the run
    /// loop's before-entry checks and by lock-all).
    posted: AtomicBool,
}

impl Default for Rendezvous {
    fn default() -> Self {
        Rendezvous {
            mtx: Mutex::new(Pending::default()),
            cv: Condvar::new(),
            posted: AtomicBool::new(false),
        }
    }
}

impl core::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rendezvous").field("posted", &self.pending()).finish()
    }
}

/// Outcome of trying to post a rendezvous.
pub enum Post {
    /// Posted; the caller must notify the targets, then wait.
    Posted,
    /// Another rendezvous is in progress: help with it, then retry.
    Busy,
}

impl Rendezvous {
    pub fn pending(&self) -> bool {
        self.posted.load(Ordering::SeqCst)
    }

    /// Posts `func` for `dest` if the slot is free.
    pub fn try_post(&self, dest: CpuSet, func: RendezvousFn) -> Post {
        let mut p = self.mtx.lock();
        if p.func.is_some() {
            return Post::Busy;
        }
        p.func = Some(func);
        p.req = dest;
        p.done = CpuSet::new();
        self.posted.store(true, Ordering::SeqCst);
        Post::Posted
    }

    /// Runs the pending callback for each of `owned` that still owes it,
    /// and retires the rendezvous when every (active) target has run it.
    /// Returns whether the rendezvous is complete (or none was pending).
    fn run_for(&self, vm: &Vm, owned: &CpuSet, active: &CpuSet) -> bool {
        let mut p = self.mtx.lock();
        loop {
            let Some(func) = p.func.clone() else {
                return true;
            };
            // Targets that have left the active set no longer owe it.
            p.req = p.req.intersection(active);
            let todo = p.req.intersection(owned);
            let next = todo.iter().find(|id| !p.done.contains(*id));
            match next {
                Some(id) => {
                    drop(p);
                    func(vm, id);
                    p = self.mtx.lock();
                    p.done.insert(id);
                }
                None => {
                    if p.req.is_subset(&p.done) {
                        p.func = None;
                        self.posted.store(false, Ordering::SeqCst);
                        self.cv.notify_all();
                        return true;
                    }
                    return false;
                }
            }
        }
    }

    /// `vm_handle_rendezvous` for a vCPU (or `None` for a thread that is not
    /// a vCPU): run its callback, then wait until every target has. Returns
    /// early with `Error::Intr` when `abort()` says so (VM destroyed).
    pub fn handle(
        &self,
        vm: &Vm,
        vcpuid: Option<usize>,
        active: impl Fn() -> CpuSet,
        abort: impl Fn() -> bool,
    ) -> Result<()> {
        let owned = vcpuid.map(CpuSet::single).unwrap_or_default();
        loop {
            if self.run_for(vm, &owned, &active()) {
                return Ok(());
            }
            let p = self.mtx.lock();
            if p.func.is_none() {
                return Ok(());
            }
            if abort() {
                return Err(Error::Intr);
            }
            // Woken by each completion; re-check who still owes.
            let done_before = p.done;
            let mut p = p;
            while p.func.is_some() && p.done == done_before && !abort() {
                p = self.cv.wait(p);
            }
        }
    }

    /// Lock-all's duty: run the pending callback on behalf of the vCPUs it
    /// has frozen (they cannot run it themselves until it releases them).
    pub fn run_on_behalf(&self, vm: &Vm, frozen: &CpuSet, active: &CpuSet) {
        self.run_for(vm, frozen, active);
    }

    /// Wakes waiters so they re-check `abort` (VM destroyed) or the active
    /// set (a vCPU deactivated by reinit).
    pub fn wake_all(&self) {
        let _p = self.mtx.lock();
        self.cv.notify_all();
    }

    /// Drops any pending rendezvous (VM reinit; no vCPU is running).
    pub fn reset(&self) {
        let mut p = self.mtx.lock();
        *p = Pending::default();
        self.posted.store(false, Ordering::SeqCst);
        self.cv.notify_all();
    }
}
