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
pub type RendezvousFn = Arc<RendezvousBody>;
type RendezvousBody = dyn Fn(&Vm, usize) + Send + Sync;

/// Wraps a closure as a [`RendezvousFn`] (the coercion to `dyn Fn` goes
/// through a std `Arc` because loom's cannot do it, see `sync`).
pub fn callback(f: impl Fn(&Vm, usize) + Send + Sync + 'static) -> RendezvousFn {
    let f: std::sync::Arc<RendezvousBody> = std::sync::Arc::new(f);
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
    /// sets. Rank 4: taken with no vCPU or vlapic lock held (and no
    /// vioapic lock, but for the legacy RTE protocol, whose writer posts
    /// its rendezvous under the RTE write lock, rank 3), and never held
    /// while a callback runs.
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
        // Waiters of the previous rendezvous may owe this one.
        self.cv.notify_all();
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
        // Whether `owned` owes the rendezvous pending now: between our
        // run_for and the wait below, the one we helped can complete and
        // the next be posted, which we must run, not wait for.
        let owes = |p: &Pending| p.func.is_some() && !p.req.intersection(&owned).is_subset(&p.done);
        loop {
            if self.run_for(vm, &owned, &active()) {
                return Ok(());
            }
            #[cfg(all(test, not(loom)))]
            tests::after_part();
            let p = self.mtx.lock();
            if p.func.is_none() {
                return Ok(());
            }
            if abort() {
                return Err(Error::Intr);
            }
            // Woken by each completion and each post; re-check who owes.
            let done_before = p.done;
            let mut p = p;
            while p.func.is_some() && p.done == done_before && !owes(&p) && !abort() {
                p = self.cv.wait(p);
            }
        }
    }

    /// Lock-all's duty: run the pending callback on behalf of the vCPUs it
    /// has frozen (they cannot run it themselves until it releases them).
    pub fn run_on_behalf(&self, vm: &Vm, frozen: &CpuSet, active: &CpuSet) {
        self.run_for(vm, frozen, active);
    }

    /// Wakes waiters so they re-check `abort` (the VM is being destroyed).
    /// VM_REINIT, which also ends waits, drops the rendezvous with `reset`.
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::test_util::with_watchdog;
    use std::sync::atomic::AtomicU64;
    use std::thread;

    thread_local! {
        static AFTER_PART: std::cell::RefCell<Option<Box<dyn FnMut()>>> = const { std::cell::RefCell::new(None) };
    }

    /// Runs (once) the hook this thread set, between a vCPU's part of a
    /// rendezvous and its wait for the others.
    pub(super) fn after_part() {
        if let Some(mut f) = AFTER_PART.with(|h| h.borrow_mut().take()) {
            f();
        }
    }

    /// Rendezvous posted back to back (the 2019 TMR update does one per
    /// RTE write): a vCPU that did its part of one and is slow to start
    /// waiting may find the next already posted, and partly done by the
    /// others; it must run its part of that one, not wait for it (which
    /// left every participant waiting forever: the benchmarks hung so).
    /// vCPU 1 handles a rendezvous only once vCPU 0 waits, so that vCPU 0
    /// is never the last of the first one (which it would retire, without
    /// waiting at all).
    #[test]
    fn a_participant_late_to_wait_runs_its_part_of_the_next_rendezvous() {
        with_watchdog(20, || {
            let vm = std::sync::Arc::new(Vm::with_idle_backend("rv", 3).unwrap());
            for id in 0..3 {
                vm.activate_cpu(id).unwrap();
            }
            let calls = std::sync::Arc::new(AtomicU64::new(0));
            let late_waits = std::sync::Arc::new(AtomicBool::new(false));
            let participant = |id: usize, late: bool| {
                let (vm, calls, late_waits) = (vm.clone(), calls.clone(), late_waits.clone());
                thread::spawn(move || {
                    if late {
                        // vCPU 0: after its part of the first rendezvous,
                        // wait until the second is posted and both other
                        // vCPUs did their part of it (5 callbacks).
                        let (c, w) = (calls.clone(), late_waits.clone());
                        AFTER_PART.with(|h| {
                            *h.borrow_mut() = Some(Box::new(move || {
                                w.store(true, Ordering::SeqCst);
                                while c.load(Ordering::SeqCst) < 5 {
                                    thread::yield_now();
                                }
                            }))
                        });
                    }
                    // Until both rendezvous are done (one handle call
                    // may serve both).
                    while calls.load(Ordering::SeqCst) < 6 {
                        if (late || late_waits.load(Ordering::SeqCst)) && vm.rendezvous_pending() {
                            vm.handle_rendezvous(Some(id)).unwrap();
                        } else {
                            thread::yield_now();
                        }
                    }
                })
            };
            let (p0, p1) = (participant(0, true), participant(1, false));
            for _ in 0..2 {
                let c = calls.clone();
                let f = callback(move |_, _| {
                    c.fetch_add(1, Ordering::SeqCst);
                });
                vm.smp_rendezvous(Some(2), vm.active_cpus(), f).unwrap();
            }
            p0.join().unwrap();
            p1.join().unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 6, "every vCPU ran both callbacks once");
        });
    }

    /// One rendezvous at a time (FreeBSD's `vm_smp_rendezvous` waits for
    /// the slot): a post while one is pending is refused as busy and
    /// leaves the pending callback and its targets as they were.
    #[test]
    fn a_post_while_a_rendezvous_is_pending_is_busy_and_changes_nothing() {
        let vm = Vm::with_idle_backend("rv-busy", 2).unwrap();
        let r = Rendezvous::default();
        let ran = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorder = |tag: &'static str| {
            let ran = ran.clone();
            callback(move |_, id| ran.lock().unwrap().push((tag, id)))
        };
        assert!(matches!(r.try_post(CpuSet::first_n(2), recorder("first")), Post::Posted));
        assert!(matches!(r.try_post(CpuSet::single(1), recorder("second")), Post::Busy));
        // vCPU 0 runs its part of the first; vCPU 1 still owes it.
        r.run_on_behalf(&vm, &CpuSet::single(0), &CpuSet::first_n(2));
        assert!(r.pending(), "vCPU 1 still owes the first rendezvous");
        r.run_on_behalf(&vm, &CpuSet::single(1), &CpuSet::first_n(2));
        assert!(!r.pending());
        assert_eq!(*ran.lock().unwrap(), vec![("first", 0), ("first", 1)]);
    }

    /// VM_REINIT drops a pending rendezvous: none is pending after it (the
    /// run loop's before-entry check reads that flag), and the slot is free.
    #[test]
    fn reset_drops_a_pending_rendezvous() {
        let r = Rendezvous::default();
        assert!(matches!(r.try_post(CpuSet::single(0), callback(|_, _| {})), Post::Posted));
        assert!(r.pending());
        r.reset();
        assert!(!r.pending(), "reset left the rendezvous flagged pending");
        assert!(matches!(r.try_post(CpuSet::single(0), callback(|_, _| {})), Post::Posted));
    }

    /// A VM destroyed while a vCPU waits for the others' parts of a
    /// rendezvous (which they will never run) ends the wait with EINTR,
    /// as FreeBSD's `vm_handle_rendezvous` does for a dying VM.
    #[test]
    fn destroying_the_vm_ends_a_rendezvous_wait_with_eintr() {
        with_watchdog(20, || {
            let vm = std::sync::Arc::new(Vm::with_idle_backend("rv-destroy", 2).unwrap());
            for id in 0..2 {
                vm.activate_cpu(id).unwrap();
            }
            let calls = std::sync::Arc::new(AtomicU64::new(0));
            let initiator = {
                let (vm, c) = (vm.clone(), calls.clone());
                let f = callback(move |_, _| {
                    c.fetch_add(1, Ordering::SeqCst);
                });
                thread::spawn(move || vm.smp_rendezvous(Some(0), vm.active_cpus(), f))
            };
            // vCPU 0 did its part; vCPU 1 never handles the rendezvous.
            while calls.load(Ordering::SeqCst) == 0 {
                thread::yield_now();
            }
            vm.destroy();
            assert_eq!(initiator.join().unwrap(), Err(Error::Intr));
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        });
    }
}
