//! The VM's callout thread. FreeBSD arms kernel callouts for the RTC, the
//! HPET, the PIT and each local APIC timer, so they fire on time whoever
//! runs. Here the vCPUs poll those timers at every guest entry and HLT
//! sleep; this thread fires them when they fall due while no vCPU looks:
//! every vCPU in userland, held for a debugger, or not started.
//!
//! The thread holds the VM weakly and no lock while it sleeps. It sleeps
//! until the earliest deadline, and is poked awake when one may have moved
//! sooner (a device callout armed earlier, a local APIC timer register
//! written) and stopped when the VM is destroyed or dropped.

#[cfg(not(loom))]
use std::time::Instant;

use crate::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
struct WakeState {
    /// A deadline may have moved sooner: look again.
    poked: bool,
    /// The VM is gone: exit.
    stopped: bool,
    /// Threads blocked in `wait` (tests: a stop or poke must wake a
    /// thread already asleep, not only one that has yet to look).
    #[cfg(all(test, not(loom)))]
    waiting: usize,
}

/// Wakes the callout thread.
#[derive(Debug, Default)]
pub struct CalloutWaker {
    /// Protects: the wake-up flags. A leaf: held only to set or wait on
    /// them, never while taking another lock.
    state: Mutex<WakeState>,
    cv: Condvar,
    /// A thread was started (there is at most one). No thread under loom.
    #[cfg(not(loom))]
    started: crate::sync::atomic::AtomicBool,
    /// Protects: the thread's join handle and the id of the process that
    /// started it, taken by whoever stops the thread and waits for it to
    /// exit. A leaf (rank 6), never held across the wait.
    thread: Mutex<Option<(std::thread::JoinHandle<()>, u32)>>,
}

impl CalloutWaker {
    /// A deadline may have moved sooner.
    pub fn poke(&self) {
        self.state.lock().poked = true;
        self.cv.notify_all();
    }

    /// The VM is gone: the thread exits.
    pub fn stop(&self) {
        self.state.lock().stopped = true;
        self.cv.notify_all();
    }

    /// Stops the thread and waits until it has exited (joins it), as
    /// FreeBSD's `vm_cleanup` drains the VM's callouts: after this the
    /// thread fires no timer of the VM. The thread takes no lock a caller
    /// can hold while it waits, and waits for no vCPU: it never takes the
    /// lock-all serialiser, the vioapic write lock (the locks held while
    /// waiting for a vCPU), guest memory or a guest-program mutex (all a
    /// C guest callback holds); VM_REINIT's callout gate is taken
    /// exclusively only with every vCPU frozen. So the wait is short. On
    /// the callout thread itself (it drops the last reference to its VM)
    /// it only stops. The join is a cancellation point: the C face calls
    /// this with cancellation disabled.
    pub fn stop_and_join(&self) {
        use std::os::unix::thread::JoinHandleExt;
        self.stop();
        let handle = self.thread.lock().take();
        if let Some((h, pid)) = handle {
            if pid != std::process::id() {
                // A fork()ed child's copy: the thread is not in this
                // process, and joining it would panic in std. The handle's
                // memory is freed; the pthread_t is left alone.
                let _ = h.into_pthread_t();
            } else if h.as_pthread_t() as usize != nix::sys::pthread::pthread_self() as usize {
                // (pthread_self, not std::thread::current(): the latter
                // panics in a pthread key destructor run after std's own.
                // Compared as integers: on musl, std's pthread_t is an
                // integer and the libc crate's a pointer.)
                // A panic on the thread was reported when it happened.
                let _ = h.join();
            }
        }
    }

    /// Waits until `deadline` passes or a poke; false once stopped.
    #[cfg(not(loom))]
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut s = self.state.lock();
        loop {
            if s.stopped {
                return false;
            }
            if std::mem::take(&mut s.poked) {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return true;
            }
            #[cfg(test)]
            {
                s.waiting += 1;
            }
            s = match deadline {
                Some(d) => self.cv.wait_until(s, d),
                None => self.cv.wait(s),
            };
            #[cfg(test)]
            {
                s.waiting -= 1;
            }
        }
    }
}

#[cfg(not(loom))]
mod thread {
    use std::sync::{Arc, Weak};
    use std::time::Instant;

    use super::CalloutWaker;
    use crate::error::{Error, Result};
    use crate::vm::Vm;
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};

    impl Vm {
        /// Starts the callout thread (the VMs `vm_create` makes have one;
        /// a `Vm` built directly has none, and its timers fire only when a
        /// vCPU polls them). Once: a second call does nothing. The thread
        /// blocks every signal. ENOMEM if the host has no thread for it.
        pub fn start_callout_thread(self: &Arc<Self>) -> Result<()> {
            use crate::sync::atomic::Ordering;
            let waker = self.callout_waker().clone();
            if waker.started.swap(true, Ordering::SeqCst) {
                return Ok(());
            }
            let vm = Arc::downgrade(self);
            let w = waker.clone();
            // The thread starts with every signal blocked (it inherits
            // this thread's mask): a library thread must not take the
            // process's signals, which the program's own threads wait
            // for or handle (a handler would run inside the callout's
            // locks). Then this thread's mask is put back.
            let mut old = SigSet::empty();
            let blocked = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut old));
            let spawned = std::thread::Builder::new()
                .name(format!("vmm_rs callouts {}", self.name()))
                .spawn(move || run(vm, &w));
            if blocked.is_ok() {
                let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            }
            let handle = spawned.map_err(|_| Error::NoMem)?;
            *waker.thread.lock() = Some((handle, std::process::id()));
            Ok(())
        }
    }

    fn run(vm: Weak<Vm>, waker: &CalloutWaker) {
        loop {
            let deadline = {
                let Some(vm) = vm.upgrade() else { return };
                if vm.is_destroyed() {
                    return;
                }
                vm.fire_due_timers(Instant::now())
            };
            if !waker.wait(deadline) {
                return;
            }
        }
    }
}

impl crate::vm::Vm {
    /// Fires every device and local APIC timer due at `now`, notifying the
    /// vCPUs whose APIC timer fired; returns the earliest deadline left.
    /// Call it with no lock held: it delivers interrupts. It holds the
    /// callout gate shared, so VM_REINIT, which takes it exclusively,
    /// resets no device while a timer of the old VM is being delivered.
    #[cfg(not(loom))]
    pub(crate) fn fire_due_timers(&self, now: Instant) -> Option<Instant> {
        let _gate = self.callout_gate();
        self.poll_device_timers(now);
        #[cfg(all(test, not(loom)))]
        tests::while_firing(self);
        for v in self.vcpus() {
            if v.vlapic.timer_poll(now) {
                v.notify();
            }
        }
        let apic = self.vcpus().iter().filter_map(|v| v.vlapic.timer_deadline());
        self.device_timer_deadline().into_iter().chain(apic).min()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    type Hook = Box<dyn FnOnce(&crate::vm::Vm)>;

    thread_local! {
        static WHILE_FIRING: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
    }

    /// Runs (once) the hook this thread set, inside `fire_due_timers`
    /// between the device timers and the APIC timers.
    pub(super) fn while_firing(vm: &crate::vm::Vm) {
        if let Some(f) = WHILE_FIRING.with(|h| h.borrow_mut().take()) {
            f(vm);
        }
    }

    /// VM_REINIT resets no device while timers are being fired: the
    /// callout gate is held (shared) from the device timers to the APIC
    /// timers, so a reinit, which takes it exclusively, waits.
    #[test]
    fn firing_timers_holds_a_reinit_off() {
        let vm = crate::vm::Vm::with_idle_backend("callout-gate", 1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        WHILE_FIRING.with(|h| *h.borrow_mut() = Some(Box::new(move |vm: &crate::vm::Vm| tx.send(vm.callout_gate_free()).unwrap())));
        vm.fire_due_timers(Instant::now());
        assert_eq!(rx.try_recv(), Ok(false), "a reinit could reset the devices while a timer is delivered");
        assert!(vm.callout_gate_free(), "released once the timers are fired");
    }

    #[test]
    fn the_waker_returns_on_a_poke_a_deadline_or_a_stop() {
        crate::test_util::with_watchdog(20, waker_cases);
    }

    #[test]
    fn destroy_returns_once_the_callout_thread_has_exited() {
        crate::test_util::with_watchdog(20, || {
            for _ in 0..20 {
                let vm = Arc::new(crate::vm::Vm::with_idle_backend("callout-join", 1).unwrap());
                vm.start_callout_thread().unwrap();
                // The thread's closure holds the only weak reference.
                assert_eq!(Arc::weak_count(&vm), 1);
                vm.destroy();
                assert_eq!(Arc::weak_count(&vm), 0, "the thread has not exited yet");
            }
        });
    }

    #[test]
    fn the_callout_thread_stopping_itself_does_not_join_itself() {
        crate::test_util::with_watchdog(20, || {
            let w = Arc::new(CalloutWaker::default());
            let go = Arc::new(std::sync::Barrier::new(2));
            let (done_tx, done) = std::sync::mpsc::channel();
            let (w2, go2) = (w.clone(), go.clone());
            let t = std::thread::spawn(move || {
                go2.wait();
                w2.stop_and_join(); // as Vm::drop on the callout thread
                done_tx.send(()).unwrap();
            });
            *w.thread.lock() = Some((t, std::process::id()));
            go.wait();
            // A self-join is EDEADLK, a panic in std: the sender would be
            // dropped unsent.
            assert!(done.recv().is_ok(), "stop_and_join panicked on the thread itself");
            assert!(w.thread.lock().is_none());
            assert!(!w.wait(None), "stopped");
        });
    }

    /// A guest port write that arms a device callout sooner pokes the
    /// callout thread, which may sleep with no deadline while every vCPU
    /// is in userland: a PIT channel 0 count, the RTC's periodic interrupt.
    #[test]
    fn a_guest_port_write_arming_a_device_timer_pokes_the_callout_thread() {
        let vm = crate::vm::Vm::with_idle_backend("callout-poke", 1).unwrap();
        let poked = || std::mem::take(&mut vm.callout_waker().state.lock().poked);
        let out = |port: u16, v: u32| assert_eq!(vm.emulate_inout(port, 1, false, v), Some(Ok(None)));
        out(0x43, 0x30); // PIT channel 0, 16-bit, mode 0
        out(0x40, 0xe8);
        assert!(!poked(), "half a count arms nothing");
        out(0x40, 0x03); // 1000
        assert!(poked(), "PIT channel 0 armed");
        out(0x70, 0x0a);
        out(0x71, 0x26); // divider on, 1024 Hz
        out(0x70, 0x0b);
        out(0x71, 0x42); // periodic interrupt on, 24-hour
        assert!(poked(), "RTC periodic interrupt armed");
    }

    /// VM_RTC_SETTIME may arm the RTC's callout sooner: a valid time set
    /// over a broken one starts the once-a-second update the
    /// update-ended interrupt needs. It pokes the callout thread too.
    #[test]
    fn an_rtc_settime_arming_its_callout_pokes_the_callout_thread() {
        let vm = crate::vm::Vm::with_idle_backend("callout-settime", 1).unwrap();
        let poked = || std::mem::take(&mut vm.callout_waker().state.lock().poked);
        let out = |port: u16, v: u32| assert_eq!(vm.emulate_inout(port, 1, false, v), Some(Ok(None)));
        vm.rtc_set_time(-1).unwrap(); // broken: no update runs
        out(0x70, 0x0a);
        out(0x71, 0x20); // divider on, no periodic interrupt
        out(0x70, 0x0b);
        out(0x71, 0x12); // update-ended interrupt on, 24-hour
        assert_eq!(vm.device_timer_deadline(), None, "no update while the time is broken");
        let _ = poked();
        vm.rtc_set_time(1_000_000_000).unwrap();
        assert!(vm.device_timer_deadline().is_some(), "the update runs");
        assert!(poked(), "and the callout thread was poked");
    }

    /// Returns once a thread is blocked in `w.wait`: seen under the state
    /// mutex, which the waiter gives up only inside the condvar wait.
    fn asleep(w: &CalloutWaker) {
        while w.state.lock().waiting == 0 {
            std::thread::yield_now();
        }
    }

    /// A poke wakes a thread already asleep without a deadline.
    #[test]
    fn a_poke_wakes_a_sleeping_waiter() {
        crate::test_util::with_watchdog(20, || {
            let w = Arc::new(CalloutWaker::default());
            let w2 = w.clone();
            let waiter = std::thread::spawn(move || w2.wait(None));
            asleep(&w);
            w.poke();
            assert!(waiter.join().unwrap(), "poked, not stopped");
        });
    }

    fn waker_cases() {
        let w = Arc::new(CalloutWaker::default());
        w.poke();
        assert!(w.wait(None), "a poke made before the wait is seen");
        assert!(!w.state.lock().poked, "the wait took the poke");
        let past = Instant::now();
        assert!(w.wait(Some(past)));
        let (w2, t0) = (w.clone(), Instant::now());
        let waiter = std::thread::spawn(move || w2.wait(Some(t0 + Duration::from_secs(60))));
        asleep(&w);
        w.stop();
        assert!(!waiter.join().unwrap(), "stopped");
        assert!(t0.elapsed() < Duration::from_secs(60));
        assert!(!w.wait(None), "stays stopped");
    }
}
