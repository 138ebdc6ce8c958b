//! Concurrency tests of the RTE write path (semantics.md section 1). Every
//! test runs under a watchdog: a deadlock fails it instead of hanging.
//! Threads synchronise on observable state (vCPU states, kicks, counters),
//! never on sleeps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use super::tests::{lapic_write, program_rte, rte_low, vm};
use crate::test_util::{with_watchdog, write_rte_low};
use crate::vcpu::VcpuState;
use crate::vioapic::rte;
use crate::vlapic::regs::off;

const LEVEL: u32 = 0x8000;
const LOWPRI: u32 = 0x100;

fn wait_until(cond: impl Fn() -> bool) {
    while !cond() {
        thread::yield_now();
    }
}

/// OS-7622: vCPU 1 (FROZEN, emulating a guest RTE write) rewrites an entry
/// aimed at vCPU 0 while a lock-all has frozen vCPU 0 and waits for vCPU 1.
/// The write must complete without vCPU 0 running anything, and vCPU 0
/// must pick up the staged TMR when it next enters RUNNING.
#[test]
fn rte_write_completes_while_lock_all_holds_the_target() {
    with_watchdog(20, || {
        let vm = Arc::new(vm(2));
        program_rte(&vm, 0, 5, 0x30, 0); // edge, vector 0x30, to vCPU 0
        let v0 = vm.vcpu(0).unwrap();
        let v1 = vm.vcpu(1).unwrap();
        // vCPU 1 is inside its run loop, handling the MMIO exit.
        v1.set_state(VcpuState::Frozen, true).unwrap();
        let vm2 = vm.clone();
        let locker = thread::spawn(move || drop(vm2.lock_all().unwrap()));
        wait_until(|| v0.state() == VcpuState::Frozen);

        // Trigger mode and vector change for a pin aimed at vCPU 0.
        write_rte_low(&vm, 1, 5, LEVEL | 0x31);

        assert_eq!(v0.state(), VcpuState::Frozen, "lock-all still holds vCPU 0");
        assert!(v0.vlapic.staged_tmr().0.test(0x31));
        assert!(!v0.vlapic.tmr().test(0x31));
        let s = vm.ioapic_stats();
        assert_eq!((s.tmr_updates, s.tmr_block_runs), (1, 1));

        v1.set_state(VcpuState::Idle, false).unwrap();
        locker.join().unwrap();
        // vCPU 0's next entry to RUNNING applies the staged bit (in the
        // debug set, VM_RUN enters RUNNING once and returns).
        vm.suspend_cpu(Some(0)).unwrap();
        let l = vm.lock_one(0).unwrap();
        assert_eq!(vm.run(&l).unwrap().kind, crate::exit::ExitKind::Debug);
        assert!(v0.vlapic.tmr().test(0x31));
        assert!(v0.vlapic.staged_tmr().0.is_empty());
    });
}

/// The writer waits only while the target is RUNNING, kicking it; during
/// that wait the table mutex is free, the pin is in flux, and an assert on
/// it is held back and sent exactly once when the write finishes.
#[test]
fn writer_waits_for_a_running_target_and_sends_in_flux_events_once() {
    with_watchdog(20, || {
        let vm = Arc::new(vm(2));
        program_rte(&vm, 0, 6, 0x60, 0);
        let v0 = vm.vcpu(0).unwrap();
        v0.set_state(VcpuState::Frozen, true).unwrap();
        v0.set_state(VcpuState::Running, false).unwrap();

        let vm2 = vm.clone();
        let writer = thread::spawn(move || write_rte_low(&vm2, 1, 6, LEVEL | 0x61));
        wait_until(|| v0.kicked());
        // The writer is in block_run(0): assert, deassert, EOI still work.
        vm.ioapic_assert_irq(6).unwrap();
        vm.ioapic_pulse_irq(7).unwrap();
        assert!(v0.vlapic.irr().is_empty(), "no send while the entry is in flux");
        assert_eq!(vm.ioapic_stats().deferred_sends, 1);
        assert!(!writer.is_finished());

        v0.set_state(VcpuState::Frozen, false).unwrap();
        writer.join().unwrap();
        assert!(v0.vlapic.irr().test(0x61) && v0.vlapic.tmr().test(0x61));
        assert_eq!(vm.ioapic_stats().interrupts, 1, "exactly once");
        assert_eq!(rte_low(&vm, 6) & rte::REM_IRR as u32, rte::REM_IRR as u32);
        // Entering RUNNING now keeps 0x61's acceptance-time bit (pending).
        v0.set_state(VcpuState::Running, false).unwrap();
        v0.vlapic.apply_staged_tmr();
        assert!(v0.vlapic.staged_tmr().0.test(0x61));
        v0.set_state(VcpuState::Frozen, false).unwrap();
    });
}

/// A writer never waits on itself, nor on a vCPU that is not RUNNING.
#[test]
fn writer_stages_its_own_tmr_without_blocking() {
    with_watchdog(20, || {
        let vm = vm(2);
        let v0 = vm.vcpu(0).unwrap();
        v0.set_state(VcpuState::Frozen, true).unwrap();
        v0.set_state(VcpuState::Running, false).unwrap();
        // vCPU 0 writes an entry aimed at itself while (nominally) RUNNING.
        program_rte(&vm, 0, 2, LEVEL | 0x22, 0);
        assert!(v0.vlapic.staged_tmr().0.test(0x22));
        assert_eq!(vm.ioapic_stats().tmr_block_runs, 0);
        assert!(!v0.kicked());
        v0.set_state(VcpuState::Frozen, false).unwrap();
    });
}

/// Level interrupts racing RTE rewrites that need TMR work (delivery mode
/// toggled between fixed and lowest priority, so every write blocks vCPU
/// 0): every assertion is delivered, each delivery is accepted and EOIed
/// exactly once, nothing stays stuck.
#[test]
fn level_interrupts_survive_racing_rte_rewrites() {
    const ROUNDS: u64 = 300;
    with_watchdog(60, || {
        let vm = Arc::new(vm(2));
        program_rte(&vm, 0, 7, LEVEL | 0x70, 0);
        let accepted = Arc::new(AtomicU64::new(0));
        let asserts_done = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));

        // vCPU 0: enter RUNNING, apply staged TMR, take an interrupt, leave,
        // EOI it through the local APIC.
        let guest = {
            let (vm, accepted, drain) = (vm.clone(), accepted.clone(), drain.clone());
            thread::spawn(move || {
                let v0 = vm.vcpu(0).unwrap();
                v0.set_state(VcpuState::Frozen, true).unwrap();
                loop {
                    v0.set_state(VcpuState::Running, false).unwrap();
                    v0.vlapic.apply_staged_tmr();
                    let took = v0.vlapic.pending_intr();
                    if let Some(v) = took {
                        v0.vlapic.intr_accepted(v);
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    v0.set_state(VcpuState::Frozen, false).unwrap();
                    if took.is_some() {
                        lapic_write(&vm, 0, off::EOI, 0);
                    } else if drain.load(Ordering::SeqCst)
                        && v0.vlapic.irr().is_empty()
                        && v0.vlapic.isr().is_empty()
                    {
                        break;
                    }
                    thread::yield_now();
                }
                v0.set_state(VcpuState::Idle, false).unwrap();
            })
        };
        // vCPU 1: rewrites pin 7 over and over.
        let writer = {
            let (vm, asserts_done, writes) = (vm.clone(), asserts_done.clone(), writes.clone());
            thread::spawn(move || {
                let v1 = vm.vcpu(1).unwrap();
                v1.set_state(VcpuState::Frozen, true).unwrap();
                let mut lowpri = false;
                while !asserts_done.load(Ordering::SeqCst) {
                    lowpri = !lowpri;
                    let mode = if lowpri { LOWPRI } else { 0 };
                    write_rte_low(&vm, 1, 7, LEVEL | mode | 0x70);
                    writes.fetch_add(1, Ordering::SeqCst);
                }
                v1.set_state(VcpuState::Idle, false).unwrap();
            })
        };
        // A device: assert, wait until the guest has taken an interrupt and
        // the writer has rewritten the entry at least once meanwhile (so
        // every round races a rewrite), deassert.
        for _ in 0..ROUNDS {
            let before = accepted.load(Ordering::SeqCst);
            let w = writes.load(Ordering::SeqCst);
            vm.ioapic_assert_irq(7).unwrap();
            wait_until(|| accepted.load(Ordering::SeqCst) > before);
            wait_until(|| writes.load(Ordering::SeqCst) > w);
            vm.ioapic_deassert_irq(7).unwrap();
        }
        asserts_done.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        drain.store(true, Ordering::SeqCst);
        guest.join().unwrap();

        let s = vm.ioapic_stats();
        assert_eq!(s.interrupts, accepted.load(Ordering::SeqCst), "no duplicate, no loss");
        assert!(accepted.load(Ordering::SeqCst) >= ROUNDS);
        assert!(s.tmr_block_runs > 0);
        assert_eq!(rte_low(&vm, 7) & rte::REM_IRR as u32, 0, "remote IRR not stuck");
        assert_eq!(vm.vioapic().assert_count(7), 0);
    });
}

/// The same shape as `rte_write_completes_while_lock_all_holds_the_target`
/// under the 2019 protocol (TMR update by rendezvous, lock-all that does
/// not service it) deadlocks: the writer waits for vCPU 0's callback, the
/// lock-all holds vCPU 0 and waits for the writer's vCPU. This is the
/// expected result; a write that completes would mean the test cannot see
/// the bug. The deadlocked threads are left behind (their VM is private).
#[test]
fn legacy_protocol_deadlocks_in_the_same_shape() {
    use std::sync::mpsc;
    use std::time::Duration;

    let vm = Arc::new(vm(2));
    // Programmed first: the 2019 protocol would rendezvous on this write
    // with vCPUs that have no thread.
    program_rte(&vm, 0, 5, 0x30, 0);
    vm.set_legacy_protocol(true);
    let (v0_frozen, done) = (mpsc::channel::<()>(), mpsc::channel::<()>());
    let vm2 = vm.clone();
    thread::spawn(move || {
        vm2.vcpu(1).unwrap().set_state(VcpuState::Frozen, true).unwrap();
        let vm3 = vm2.clone();
        thread::spawn(move || drop(vm3.lock_all()));
        wait_until(|| vm2.vcpu(0).unwrap().state() == VcpuState::Frozen);
        let _ = v0_frozen.0.send(());
        write_rte_low(&vm2, 1, 5, LEVEL | 0x31);
        let _ = done.0.send(());
    });
    v0_frozen.1.recv_timeout(Duration::from_secs(20)).expect("setup stalled");
    let r = done.1.recv_timeout(Duration::from_secs(2));
    assert!(r.is_err(), "the legacy protocol did not deadlock: the test cannot see OS-7622");
}
