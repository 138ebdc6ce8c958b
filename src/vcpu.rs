//! One virtual CPU: the state machine of FreeBSD `vmm.c` (IDLE, FROZEN,
//! RUNNING, SLEEPING), `reqidle`, notification (kick) and `runblock`.
//!
//! # Lock order
//!
//! The vCPU mutex (`Vcpu::inner`) ranks below every VM-level lock and the
//! vioapic locks, and above the vlapic lock: code holding it may take a
//! vlapic lock, never the other way round. It is never held while waiting
//! on *another* vCPU; the only waits under it are on this vCPU's own
//! condition variable, which releases it.
//!
//! # Why the writer of an RTE cannot deadlock with lock-all
//!
//! [`Vcpu::block_run`] waits only while the target is RUNNING. A RUNNING
//! vCPU leaves RUNNING once kicked, at the end of its current guest step
//! (the backend checks [`Vcpu::kicked`] between steps, and no lock a
//! RUNNING vCPU needs is held by the waiter), so the wait ends; a step
//! that is a C callback ends when the callback returns, which is the
//! program's part (see the lock order in `vm`). IDLE, FROZEN and SLEEPING vCPUs,
//! including ones frozen by a lock-all in progress, are never waited on.

use crate::error::{Error, Result};
use crate::regs::VcpuRegs;
use crate::stats::VcpuStats;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Condvar, Mutex, MutexGuard};
use crate::vlapic::Vlapic;

/// The state of a vCPU (FreeBSD `enum vcpu_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuState {
    /// Nobody owns the vCPU.
    Idle,
    /// Owned by a thread (an ioctl, or the run loop between guest entries).
    Frozen,
    /// Executing guest code in the backend.
    Running,
    /// Halted in the run loop, waiting for an event.
    Sleeping,
}

impl VcpuState {
    /// The transitions `vcpu_set_state` allows; everything else is EBUSY.
    fn may_become(self, new: VcpuState) -> bool {
        use VcpuState::*;
        matches!(
            (self, new),
            (Idle, Frozen)
                | (Frozen, Idle)
                | (Frozen, Running)
                | (Running, Frozen)
                | (Frozen, Sleeping)
                | (Sleeping, Frozen)
        )
    }
}

/// Scheduling state of a vCPU, protected by `Vcpu::inner`.
#[derive(Debug)]
pub struct VcpuSched {
    pub state: VcpuState,
    /// Another thread wants this vCPU IDLE: the run loop returns
    /// VM_EXITCODE_REQIDLE to its caller at the next guest entry.
    pub reqidle: bool,
    /// Number of threads keeping this vCPU out of RUNNING
    /// ([`Vcpu::block_run`]). Entering RUNNING waits while it is non-zero.
    pub runblock: u32,
    /// Threads that want this vCPU IDLE -> FROZEN take it in ticket order
    /// ([`Vcpu::take_ticket`]): the next ticket to hand out...
    next_ticket: u64,
    /// ...and the ticket whose holder may take the vCPU next. Without the
    /// queue a VM_RUN thread that releases its vCPU and locks it again at
    /// once always beats a woken waiter, and a lock-all starves.
    serving: u64,
}

/// A place in the queue of threads waiting for a vCPU to become IDLE.
#[derive(Debug)]
#[must_use = "a ticket that is not used blocks everyone queued behind it"]
pub struct Ticket(u64);

/// A virtual CPU's scheduling core.
#[derive(Debug)]
pub struct Vcpu {
    id: usize,
    /// vCPU mutex. Protects: `VcpuSched` (state, reqidle, runblock).
    /// Rank: below VM-level and vioapic locks, above the vlapic lock.
    inner: Mutex<VcpuSched>,
    /// Signalled on every state change, on runblock reaching zero and by
    /// notifications of a SLEEPING vCPU.
    cv: Condvar,
    /// Set by a notification while RUNNING; the backend polls it between
    /// guest steps and leaves RUNNING when it is set (the "IPI").
    kick: AtomicBool,
    /// Register mutex. Protects: the architectural state. Rank: leaf (no
    /// lock is taken under it). Only the thread that holds the vCPU FROZEN
    /// or RUNNING uses it, so it is never contended in practice.
    pub regs: Mutex<VcpuRegs>,
    /// The local APIC. Its mutex ranks below `inner` and above `regs`;
    /// any thread may use it (delivery, staging), see `vlapic`.
    pub vlapic: Vlapic,
    /// Statistics, counted by the thread holding the vCPU (no lock).
    pub stats: VcpuStats,
}

impl Vcpu {
    pub fn new(id: usize) -> Self {
        Vcpu {
            id,
            inner: Mutex::new(VcpuSched {
                state: VcpuState::Idle,
                reqidle: false,
                runblock: 0,
                next_ticket: 0,
                serving: 0,
            }),
            cv: Condvar::new(),
            kick: AtomicBool::new(false),
            regs: Mutex::new(VcpuRegs::default()),
            vlapic: Vlapic::new(id),
            stats: VcpuStats::default(),
        }
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn state(&self) -> VcpuState {
        self.inner.lock().state
    }

    /// Locks the scheduling state (for loops that wait on it).
    pub fn lock(&self) -> MutexGuard<'_, VcpuSched> {
        self.inner.lock()
    }

    /// Waits on this vCPU's condition variable, releasing its mutex.
    pub fn wait<'a>(&self, g: MutexGuard<'a, VcpuSched>) -> MutexGuard<'a, VcpuSched> {
        self.cv.wait(g)
    }

    /// Waits with a deadline (the HLT sleep re-checks timers on wake-up).
    pub fn wait_until<'a>(
        &self,
        g: MutexGuard<'a, VcpuSched>,
        deadline: std::time::Instant,
    ) -> MutexGuard<'a, VcpuSched> {
        self.cv.wait_until(g, deadline)
    }

    /// `vcpu_set_state`. With `from_idle` (ioctl entry only) waits until the
    /// vCPU is IDLE, asking it to become so (reqidle + notify).
    pub fn set_state(&self, new: VcpuState, from_idle: bool) -> Result<()> {
        let g = self.inner.lock();
        self.set_state_locked(g, new, from_idle).map(drop)
    }

    /// `vcpu_set_state_locked`: the same with the mutex already held; returns
    /// the guard so the caller can keep working under it.
    pub fn set_state_locked<'a>(
        &self,
        mut g: MutexGuard<'a, VcpuSched>,
        new: VcpuState,
        from_idle: bool,
    ) -> Result<MutexGuard<'a, VcpuSched>> {
        if from_idle {
            let ticket = Self::take_ticket_locked(&mut g);
            while !self.try_freeze_locked(&mut g, &ticket) {
                g = self.cv.wait(g);
            }
            return Ok(g);
        }
        if new == VcpuState::Running {
            // A thread staging into this vCPU keeps it out of the guest.
            while g.runblock != 0 {
                g = self.cv.wait(g);
            }
        }
        if !g.state.may_become(new) {
            return Err(Error::Busy);
        }
        g.state = new;
        match new {
            VcpuState::Idle => g.reqidle = false,
            VcpuState::Running => self.kick.store(false, Ordering::SeqCst),
            _ => {}
        }
        // Waiters on the state (from_idle, block_run) re-check.
        self.cv.notify_all();
        Ok(g)
    }

    /// Joins the queue of threads waiting to take this vCPU from IDLE to
    /// FROZEN (FIFO, so nobody starves). Use the ticket with
    /// [`Vcpu::try_freeze`] until it succeeds.
    pub fn take_ticket(&self) -> Ticket {
        Self::take_ticket_locked(&mut self.inner.lock())
    }

    fn take_ticket_locked(g: &mut VcpuSched) -> Ticket {
        g.next_ticket += 1;
        Ticket(g.next_ticket - 1)
    }

    /// IDLE -> FROZEN for the holder of `ticket`, without waiting: true
    /// once it is this ticket's turn and the vCPU is IDLE. While it is this
    /// ticket's turn but the vCPU is busy, asks it to become IDLE (reqidle
    /// and a notification), so a caller that waits on the state between
    /// tries makes progress.
    pub fn try_freeze(&self, ticket: &Ticket) -> bool {
        self.try_freeze_locked(&mut self.inner.lock(), ticket)
    }

    /// [`Vcpu::try_freeze`] with the vCPU mutex held.
    pub fn try_freeze_locked(&self, g: &mut VcpuSched, ticket: &Ticket) -> bool {
        if g.serving != ticket.0 {
            return false;
        }
        if g.state != VcpuState::Idle {
            g.reqidle = true;
            self.notify_locked(g);
            return false;
        }
        g.serving += 1;
        g.state = VcpuState::Frozen;
        // The next ticket holder and state waiters re-check.
        self.cv.notify_all();
        true
    }

    /// `vcpu_notify_event`: kick a RUNNING vCPU out of the guest, wake a
    /// SLEEPING one.
    pub fn notify(&self) {
        let g = self.inner.lock();
        self.notify_locked(&g);
    }

    fn notify_locked(&self, g: &VcpuSched) {
        match g.state {
            VcpuState::Running => self.kick.store(true, Ordering::SeqCst),
            VcpuState::Sleeping => self.cv.notify_all(),
            _ => {}
        }
    }

    /// Wakes every thread waiting on this vCPU's state (used when a
    /// VM-wide condition changes that such waiters must look at, such as a
    /// rendezvous being posted while a lock-all waits for this vCPU).
    pub fn wake_waiters(&self) {
        let _g = self.inner.lock();
        self.cv.notify_all();
    }

    /// Whether the guest must leave RUNNING at its next safe point.
    pub fn kicked(&self) -> bool {
        self.kick.load(Ordering::SeqCst)
    }

    /// `vcpu_block_run`: keep the vCPU out of RUNNING. Kicks it if it is
    /// RUNNING and waits only while it is RUNNING; never call it on the
    /// vCPU the caller itself holds.
    pub fn block_run(&self) {
        let mut g = self.inner.lock();
        g.runblock += 1;
        while g.state == VcpuState::Running {
            self.kick.store(true, Ordering::SeqCst);
            g = self.cv.wait(g);
        }
    }

    /// `vcpu_unblock_run`: undo one `block_run`; at zero the vCPU may run.
    pub fn unblock_run(&self) {
        let mut g = self.inner.lock();
        debug_assert!(g.runblock > 0, "unblock_run without block_run");
        g.runblock = g.runblock.saturating_sub(1);
        if g.runblock == 0 {
            self.cv.notify_all();
        }
    }

    /// Clears reqidle and reports whether it was set (the run loop's
    /// VM_EXITCODE_REQIDLE check).
    pub fn take_reqidle(&self) -> bool {
        let mut g = self.inner.lock();
        std::mem::replace(&mut g.reqidle, false)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::test_util::with_watchdog;
    use std::sync::{Arc, Barrier};
    use std::thread;
    use VcpuState::*;

    /// The transitions the spec's state machine allows (FreeBSD's
    /// `vcpu_set_state_locked`), written out, not computed with
    /// `may_become`, which is what is tested.
    const ALLOWED: [(VcpuState, VcpuState); 6] =
        [(Idle, Frozen), (Frozen, Idle), (Frozen, Running), (Running, Frozen), (Frozen, Sleeping), (Sleeping, Frozen)];

    #[test]
    fn transitions_follow_the_state_machine() {
        let all = [Idle, Frozen, Running, Sleeping];
        for from in all {
            for to in all {
                let v = Vcpu::new(0);
                // Walk to `from` through allowed transitions.
                match from {
                    Idle => {}
                    Frozen => v.set_state(Frozen, false).unwrap(),
                    Running | Sleeping => {
                        v.set_state(Frozen, false).unwrap();
                        v.set_state(from, false).unwrap();
                    }
                }
                let r = v.set_state(to, false);
                let ok = ALLOWED.contains(&(from, to));
                assert_eq!(from.may_become(to), ok, "{from:?} -> {to:?}");
                assert_eq!(r.is_ok(), ok, "{from:?} -> {to:?}");
                if !ok {
                    assert_eq!(r, Err(Error::Busy));
                    assert_eq!(v.state(), from, "failed transition keeps state");
                }
            }
        }
        // FROZEN -> FROZEN is refused explicitly.
        let v = Vcpu::new(0);
        v.set_state(Frozen, false).unwrap();
        assert_eq!(v.set_state(Frozen, false), Err(Error::Busy));
    }

    #[test]
    fn from_idle_waits_and_requests_idle() {
        with_watchdog(10, || {
            let v = Arc::new(Vcpu::new(0));
            v.set_state(Frozen, false).unwrap();
            v.set_state(Running, false).unwrap();
            let v2 = v.clone();
            let t = thread::spawn(move || v2.set_state(Frozen, true));
            // The waiter sets reqidle and kicks the running vCPU.
            loop {
                let g = v.lock();
                if g.reqidle && v.kicked() {
                    break;
                }
                drop(g);
                thread::yield_now();
            }
            v.set_state(Frozen, false).unwrap();
            v.set_state(Idle, false).unwrap();
            assert_eq!(t.join().unwrap(), Ok(()));
            assert_eq!(v.state(), Frozen);
            // The waiter's request ended when it got the vCPU (entering IDLE
            // clears reqidle).
            assert!(!v.lock().reqidle);
        });
    }

    /// Threads waiting for an IDLE vCPU get it in the order they asked:
    /// a thread that releases and re-locks at once (a VM_RUN loop) cannot
    /// overtake a waiting lock-all.
    #[test]
    fn waiters_for_idle_take_the_vcpu_in_fifo_order() {
        with_watchdog(10, || {
            let v = Arc::new(Vcpu::new(0));
            v.set_state(Frozen, false).unwrap();
            let order = Arc::new(std::sync::Mutex::new(Vec::new()));
            let queued = |n: u64| loop {
                let g = v.lock();
                if g.next_ticket - g.serving == n {
                    break;
                }
                drop(g);
                thread::yield_now();
            };
            let waiter = |name: &'static str| {
                let (v, order) = (v.clone(), order.clone());
                thread::spawn(move || {
                    v.set_state(Frozen, true).unwrap();
                    order.lock().unwrap().push(name);
                    v.set_state(Idle, false).unwrap();
                })
            };
            let a = waiter("first");
            queued(1);
            let b = waiter("second");
            queued(2);
            // Release and queue again at once, like a run loop would.
            v.set_state(Idle, false).unwrap();
            v.set_state(Frozen, true).unwrap();
            order.lock().unwrap().push("re-lock");
            v.set_state(Idle, false).unwrap();
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(*order.lock().unwrap(), ["first", "second", "re-lock"]);
        });
    }

    /// A runner asking for RUNNING while the block is held does not get
    /// it (it stays RUNNING once in, so a missed block shows), and gets it
    /// once the block goes.
    #[test]
    fn runblock_keeps_vcpu_out_of_running() {
        with_watchdog(10, || {
            let v = Arc::new(Vcpu::new(0));
            v.set_state(Frozen, false).unwrap();
            v.block_run(); // FROZEN: returns at once.
            let start = Arc::new(Barrier::new(2));
            let entered = Arc::new(AtomicBool::new(false));
            let leave = Arc::new(AtomicBool::new(false));
            let runner = {
                let (v, start, entered, leave) = (v.clone(), start.clone(), entered.clone(), leave.clone());
                thread::spawn(move || {
                    start.wait();
                    v.set_state(Running, false).unwrap();
                    entered.store(true, Ordering::SeqCst);
                    while !leave.load(Ordering::SeqCst) {
                        thread::yield_now();
                    }
                    v.set_state(Frozen, false).unwrap();
                })
            };
            start.wait();
            for _ in 0..1000 {
                assert!(!entered.load(Ordering::SeqCst), "RUNNING under a runblock");
                assert_ne!(v.state(), Running);
                thread::yield_now();
            }
            v.unblock_run();
            while !entered.load(Ordering::SeqCst) {
                thread::yield_now();
            }
            assert_eq!(v.state(), Running);
            leave.store(true, Ordering::SeqCst);
            runner.join().unwrap();
            assert_eq!(v.state(), Frozen);
        });
    }

    #[test]
    fn block_run_kicks_and_waits_for_running_vcpu() {
        with_watchdog(10, || {
            let v = Arc::new(Vcpu::new(0));
            v.set_state(Frozen, false).unwrap();
            v.set_state(Running, false).unwrap();
            let v2 = v.clone();
            // The "guest" leaves RUNNING once kicked.
            let guest = thread::spawn(move || {
                while !v2.kicked() {
                    thread::yield_now();
                }
                v2.set_state(Frozen, false).unwrap();
            });
            v.block_run();
            assert_eq!(v.state(), Frozen);
            v.unblock_run();
            guest.join().unwrap();
        });
    }

    /// `block_run` waits until the vCPU has left RUNNING, not merely for
    /// the next wake-up of its condition variable: a wake-up for another
    /// reason (`wake_waiters`, as a posted rendezvous or the HPET makes)
    /// finds it still RUNNING, and the blocker kicks it again and waits on.
    #[test]
    fn block_run_waits_on_through_a_wakeup_while_the_vcpu_still_runs() {
        with_watchdog(10, || {
            let v = Arc::new(Vcpu::new(0));
            v.set_state(Frozen, false).unwrap();
            v.set_state(Running, false).unwrap();
            let returned = Arc::new(AtomicBool::new(false));
            let blocker = {
                let (v, returned) = (v.clone(), returned.clone());
                thread::spawn(move || {
                    v.block_run();
                    returned.store(true, Ordering::SeqCst);
                })
            };
            for round in 0..3 {
                // The blocker kicks under the vCPU mutex and waits, which
                // releases it: a kick seen with the mutex held means it
                // is in the wait (or has returned).
                loop {
                    let g = v.lock();
                    assert!(!returned.load(Ordering::SeqCst), "block_run returned while RUNNING (round {round})");
                    if v.kicked() {
                        v.kick.store(false, Ordering::SeqCst);
                        break;
                    }
                    drop(g);
                    thread::yield_now();
                }
                v.wake_waiters();
            }
            // Leaving RUNNING ends the wait.
            v.set_state(Frozen, false).unwrap();
            blocker.join().unwrap();
            assert!(returned.load(Ordering::SeqCst));
            v.unblock_run();
        });
    }

    /// Each `unblock_run` undoes one `block_run`: with two blockers the
    /// vCPU stays blocked until both are gone.
    #[test]
    fn runblock_counts_each_blocker() {
        let v = Vcpu::new(0);
        v.set_state(Frozen, false).unwrap();
        v.block_run();
        v.block_run();
        assert_eq!(v.lock().runblock, 2);
        v.unblock_run();
        assert_eq!(v.lock().runblock, 1, "one blocker still holds it");
        v.unblock_run();
        assert_eq!(v.lock().runblock, 0);
        v.set_state(Running, false).unwrap();
    }

    /// A kick left over from an earlier RUNNING spell (a notification
    /// that came as the guest was leaving) is cleared on entering RUNNING
    /// again, so the next guest entry is not cut short for nothing.
    #[test]
    fn entering_running_clears_a_stale_kick() {
        let v = Vcpu::new(0);
        v.set_state(Frozen, false).unwrap();
        v.set_state(Running, false).unwrap();
        v.notify();
        assert!(v.kicked(), "a RUNNING vCPU is kicked");
        v.set_state(Frozen, false).unwrap();
        assert!(v.kicked(), "the kick stays until the next entry");
        v.set_state(Running, false).unwrap();
        assert!(!v.kicked(), "entering RUNNING clears it");
    }
}
