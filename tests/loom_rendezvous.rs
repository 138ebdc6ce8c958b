//! Model checking of rendezvous waits against the events that end them.
//!
//! A rendezvous wait against VM destruction: a thread
//! that did its part of a rendezvous and waits for a vCPU that will never
//! run its own (as FreeBSD's `vm_handle_rendezvous` for a dying VM) must
//! leave the wait with EINTR, or never post (`Destroyed`, EBADF through
//! C), in every interleaving with `Vm::destroy`. The wait sleeps on the
//! rendezvous condition variable, so destruction must wake it
//! (`Rendezvous::wake_all`); without that wake-up loom reports the
//! waiter blocked forever. The unit test of the same shape
//! (`rendezvous::tests`) meets the sleeping interleaving only sometimes.
//!
//! A rendezvous posted for a vCPU asleep in its suspend wait: the vCPU
//! wakes and runs its part (preemption bound 2; deeper bounds take
//! minutes). Without the wait's re-check of a pending rendezvous under
//! its mutex, loom reports both threads blocked.
//!
//! Run: `make verify`.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Instant;

use loom::thread;

use vmm_rs::backend::{Backend, GuestExit, GuestRam};
use vmm_rs::error::Error;
use vmm_rs::rendezvous::callback;
use vmm_rs::sync::Arc;
use vmm_rs::vcpu::{Vcpu, VcpuState};
use vmm_rs::cpuset::CpuSet;
use vmm_rs::vm::{CpuSetKind, Vm};

/// The backend is never entered: no thread runs a vCPU in this model.
#[derive(Debug)]
struct NeverEntered;

impl Backend for NeverEntered {
    fn run(&self, _vcpu: &Vcpu, _ram: &dyn GuestRam, _rip: u64) -> (GuestExit, u64, u32) {
        unreachable!("no vCPU runs in this model")
    }
}

/// vCPU 0's thread posts a rendezvous for vCPUs 0 and 1, runs vCPU 0's
/// part and waits for vCPU 1's, which nobody runs; another thread
/// destroys the VM. `waited` counts the executions in which the
/// rendezvous was posted (so its wait had to be ended by the destroy).
#[test]
fn destroying_the_vm_ends_every_rendezvous_wait() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    static POSTED: AtomicUsize = AtomicUsize::new(0);
    let start = Instant::now();
    loom::model(|| {
        EXECUTIONS.fetch_add(1, SeqCst);
        let vm = Arc::new(Vm::new("loom-rv", 2, Box::new(NeverEntered)).unwrap());
        vm.activate_cpu(0).unwrap();
        vm.activate_cpu(1).unwrap();
        let initiator = {
            let vm = vm.clone();
            thread::spawn(move || {
                let parts = Arc::new(AtomicUsize::new(0));
                let counted = parts.clone();
                let f = callback(move |_, id| {
                    assert_eq!(id, 0, "only vCPU 0's thread runs a part");
                    counted.fetch_add(1, SeqCst);
                });
                let r = vm.smp_rendezvous(Some(0), vm.active_cpus(), f);
                (r, parts.load(SeqCst))
            })
        };
        vm.destroy();
        match initiator.join().unwrap() {
            // Posted before the destroy: vCPU 0 did its part, and the
            // wait for vCPU 1 ended.
            (Err(Error::Intr), 1) => {
                POSTED.fetch_add(1, SeqCst);
            }
            // Destroyed first: nothing was posted or run.
            (Err(Error::Destroyed), 0) => {}
            other => panic!("rendezvous against destroy: {other:?}"),
        }
    });
    let (n, posted) = (EXECUTIONS.load(SeqCst), POSTED.load(SeqCst));
    println!("loom destroying_the_vm_ends_every_rendezvous_wait: {n} interleavings, {posted} with the wait posted, {:.1} s", start.elapsed().as_secs_f64());
    assert!(posted > 0, "the model never reached a posted rendezvous");
}

/// A rendezvous posted for a vCPU that waits out a VM-wide suspend (vCPU 0
/// never acknowledges) is run by that vCPU from inside its wait, in every
/// interleaving: the wait checks for a pending rendezvous under the vCPU
/// mutex that the poster's notification takes, so a post between the
/// unlocked check and the sleep is not missed. The VM is destroyed
/// afterwards to end the suspend wait.
#[test]
fn a_vcpu_in_its_suspend_wait_runs_a_rendezvous() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    static ASLEEP: AtomicUsize = AtomicUsize::new(0);
    let start = Instant::now();
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(|| {
        EXECUTIONS.fetch_add(1, SeqCst);
        let vm = Arc::new(Vm::new("loom-rv-suspend", 2, Box::new(NeverEntered)).unwrap());
        vm.activate_cpu(0).unwrap();
        vm.activate_cpu(1).unwrap();
        vm.suspend(2).unwrap();
        let vcpu1 = {
            let vm = vm.clone();
            thread::spawn(move || {
                let lock = vm.lock_one(1).unwrap();
                // Ended by the destroy, inside the suspend wait.
                assert!(vm.run(&lock).is_err());
            })
        };
        let parts = Arc::new(AtomicUsize::new(0));
        let counted = parts.clone();
        let f = callback(move |vm, id| {
            assert_eq!(id, 1);
            assert!(vm.cpuset(CpuSetKind::Suspended).contains(1), "run from the suspend wait");
            counted.fetch_add(1, SeqCst);
        });
        if vm.vcpu(1).unwrap().state() == VcpuState::Sleeping {
            ASLEEP.fetch_add(1, SeqCst);
        }
        assert_eq!(vm.smp_rendezvous(None, CpuSet::single(1), f), Ok(()));
        assert_eq!(parts.load(SeqCst), 1, "vCPU 1 ran its part once");
        vm.destroy();
        vcpu1.join().unwrap();
    });
    let (n, asleep) = (EXECUTIONS.load(SeqCst), ASLEEP.load(SeqCst));
    println!("loom a_vcpu_in_its_suspend_wait_runs_a_rendezvous: {n} interleavings, {asleep} with vCPU 1 asleep in the wait when the post began, {:.1} s", start.elapsed().as_secs_f64());
    assert!(asleep > 0, "the model never posted to a sleeping vCPU");
}
