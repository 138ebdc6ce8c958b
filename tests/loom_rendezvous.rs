//! Model checking of a rendezvous wait against VM destruction: a thread
//! that did its part of a rendezvous and waits for a vCPU that will never
//! run its own (as FreeBSD's `vm_handle_rendezvous` for a dying VM) must
//! leave the wait with EINTR, or never post (`Destroyed`, EBADF through
//! C), in every interleaving with `Vm::destroy`. The wait sleeps on the
//! rendezvous condition variable, so destruction must wake it
//! (`Rendezvous::wake_all`); without that wake-up loom reports the
//! waiter blocked forever. The unit test of the same shape
//! (`rendezvous::tests`) meets the sleeping interleaving only sometimes.
//! Run: `make verify`.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Instant;

use loom::thread;

use vmm_rs::backend::{Backend, GuestExit, GuestRam};
use vmm_rs::error::Error;
use vmm_rs::rendezvous::callback;
use vmm_rs::sync::Arc;
use vmm_rs::vcpu::Vcpu;
use vmm_rs::vm::Vm;

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
