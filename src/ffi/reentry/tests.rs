use super::*;
use crate::exit::ExitKind;
use crate::test_util::with_watchdog;
use crate::vcpu::VcpuState;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

fn vm(name: &str) -> Arc<Vm> {
    Arc::new(Vm::with_idle_backend(name, 2).unwrap())
}

/// Registers, on a new thread inside a callback of (`from`, `vcpu`),
/// a wait for `to`'s `waits`, and keeps it until the returned sender
/// is dropped or sent to.
fn hold_wait(from: &Arc<Vm>, vcpu: usize, to: &Arc<Vm>, waits: Waits) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    hold(from, vcpu, to, waits, false)
}

/// `hold_wait` for a `vm_run` of `to`'s vCPU `id` that has it.
fn hold_run(from: &Arc<Vm>, vcpu: usize, to: &Arc<Vm>, id: usize) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    hold(from, vcpu, to, Waits::One(id), true)
}

fn hold(from: &Arc<Vm>, vcpu: usize, to: &Arc<Vm>, waits: Waits, claim: bool) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (from, to) = (from.clone(), to.clone());
    let (ready_tx, ready_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let t = thread::spawn(move || {
        in_callback(vm_identity(&from), vcpu, || {
            let entry = wait_for(&to, waits).unwrap();
            if claim {
                entry.claimed();
            }
            ready_tx.send(()).unwrap();
            let _ = release_rx.recv();
            drop(entry);
        })
    });
    ready_rx.recv().unwrap();
    (release_tx, t)
}

fn from_callback(vm: &Arc<Vm>, vcpu: usize, f: impl FnOnce() -> Result<WaitEntry>) -> Result<()> {
    in_callback(vm_identity(vm), vcpu, f).map(drop)
}

#[test]
fn outside_callbacks_nothing_is_registered() {
    let a = vm("reentry-out");
    let e = wait_for(&a, Waits::All).unwrap();
    assert_eq!(e.token, 0);
}

#[test]
fn same_vm_is_refused_at_any_depth() {
    let (a, b) = (vm("reentry-same-a"), vm("reentry-same-b"));
    let r = from_callback(&a, 0, || in_callback(vm_identity(&b), 1, || wait_for(&a, Waits::One(1))));
    assert_eq!(r, Err(Error::Deadlock));
    assert_eq!(from_callback(&a, 0, || wait_for(&a, Waits::One(1))), Err(Error::Deadlock));
}

#[test]
fn two_vm_lock_one_cycle_is_refused_one_way_is_not() {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-2a"), vm("reentry-2b"), vm("reentry-2c"));
        // A0 waits for B0.
        let (release, t) = hold_wait(&a, 0, &b, Waits::One(0));
        // B0 waiting for A0 closes the cycle; for A1, or C0, it does not.
        assert_eq!(from_callback(&b, 0, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock));
        assert_eq!(from_callback(&b, 0, || wait_for(&a, Waits::One(1))), Ok(()));
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Ok(()));
        assert_eq!(from_callback(&c, 0, || wait_for(&b, Waits::One(0))), Ok(()));
        // Waiting for all of A includes A0.
        assert_eq!(from_callback(&b, 0, || wait_for(&a, Waits::All)), Err(Error::Deadlock));
        drop(release);
        t.join().unwrap();
        // Unregistered: the reverse is free again.
        assert_eq!(from_callback(&b, 0, || wait_for(&a, Waits::One(0))), Ok(()));
    });
}

#[test]
fn lock_all_and_three_vm_cycles_are_refused() {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-3a"), vm("reentry-3b"), vm("reentry-3c"));
        // A0 locks all of B: B1 waiting for A0 closes the cycle.
        let (r1, t1) = hold_wait(&a, 0, &b, Waits::All);
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock));
        drop(r1);
        t1.join().unwrap();
        // A0 -> B0 -> C0, then C0 -> A0.
        let (r1, t1) = hold_wait(&a, 0, &b, Waits::One(0));
        let (r2, t2) = hold_wait(&b, 0, &c, Waits::One(0));
        assert_eq!(from_callback(&c, 0, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock));
        assert_eq!(from_callback(&c, 1, || wait_for(&a, Waits::One(0))), Ok(()));
        drop((r1, r2));
        t1.join().unwrap();
        t2.join().unwrap();
    });
}

/// A lock-all counts as holding every vCPU of its VM from the start
/// (it freezes them one by one): A0 locking all of B, A1 waiting for
/// B0 (maybe frozen by A0 already), B1 waiting for A1 is a cycle.
/// Two lock-alls of one VM do not refuse each other.
#[test]
fn a_lock_all_under_way_holds_its_vm() {
    with_watchdog(20, || {
        let (a, b) = (vm("reentry-pa"), vm("reentry-pb"));
        let (r1, t1) = hold_wait(&a, 0, &b, Waits::All);
        let (r2, t2) = hold_wait(&a, 1, &b, Waits::One(0));
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(1))), Err(Error::Deadlock));
        drop(r2);
        t2.join().unwrap();
        assert_eq!(from_callback(&a, 1, || wait_for(&b, Waits::All)), Ok(()));
        drop(r1);
        t1.join().unwrap();
    });
}

/// Callbacks of A running (or writing) two vCPUs of B wait for nothing
/// of B once they have them: no cycle, though each holds one of B's
/// vCPUs.
#[test]
fn two_callbacks_running_vcpus_of_one_vm_do_not_refuse_each_other() {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-ra"), vm("reentry-rb"), vm("reentry-rc"));
        let (r1, t1) = hold_run(&a, 0, &b, 0);
        let (r2, t2) = hold_run(&a, 1, &b, 1);
        // A wait for a claimed vCPU is a wait on a thread that waits
        // for nothing: no cycle.
        assert_eq!(from_callback(&c, 0, || wait_for(&b, Waits::One(0))), Ok(()));
        assert_eq!(from_callback(&c, 0, || wait_for(&a, Waits::All)), Ok(()));
        drop((r1, r2));
        t1.join().unwrap();
        t2.join().unwrap();
    });
}

/// `vm(name)` with both vCPUs active, suspended.
fn suspended_vm(name: &str) -> Arc<Vm> {
    let v = vm(name);
    v.activate_cpu(0).unwrap();
    v.activate_cpu(1).unwrap();
    v.suspend(2).unwrap();
    v
}

/// VM_RUN of `to`'s vCPU `id` from a callback of (`from`, 0), as
/// `ffi::commands` makes it.
fn run_from_callback(from: &Arc<Vm>, to: &Arc<Vm>, id: usize) -> Result<crate::exit::ExitKind> {
    in_callback(vm_identity(from), 0, || {
        let wait = wait_for(to, Waits::One(id))?;
        let lock = to.lock_one(id)?;
        wait.claimed();
        to.run(&lock).map(|e| e.kind)
    })
}

/// `run_from_callback` on a thread of its own, returned once `to`'s
/// vCPU `id` sleeps in its suspend wait (registered before it sleeps).
fn suspend_waiter(from: &Arc<Vm>, to: &Arc<Vm>, id: usize) -> thread::JoinHandle<Result<crate::exit::ExitKind>> {
    let (from2, to2) = (from.clone(), to.clone());
    let runner = thread::spawn(move || run_from_callback(&from2, &to2, id));
    while to.vcpu(id).unwrap().state() != VcpuState::Sleeping {
        thread::yield_now();
    }
    runner
}

/// Runs `vm`'s vCPU `last` into the suspend, which ends `runner`'s
/// suspend wait too: both leave VM_RUN suspended.
fn end_suspend(vm: &Vm, last: usize, runner: thread::JoinHandle<Result<crate::exit::ExitKind>>) {
    let l = vm.lock_one(last).unwrap();
    assert!(matches!(vm.run(&l).map(|e| e.kind), Ok(ExitKind::Suspended(_))));
    drop(l);
    assert!(matches!(runner.join().unwrap(), Ok(ExitKind::Suspended(_))));
}

/// A0's callback runs B0 of a suspended B, whose suspend wait waits for
/// B1, whose callback waits for A0. Reported last, the suspend wait is
/// refused: VM_RUN fails and B0 withdraws from the suspended set.
#[test]
fn a_suspend_wait_that_closes_a_cycle_is_refused() {
    with_watchdog(20, || {
        let (a, b) = (vm("reentry-sa"), suspended_vm("reentry-sb"));
        let (release, t) = hold_wait(&b, 1, &a, Waits::One(0));
        assert_eq!(run_from_callback(&a, &b, 0), Err(Error::Deadlock));
        assert!(!b.cpus().suspended.contains(0), "withdrawn");
        drop(release);
        t.join().unwrap();
        // B1 waiting for A1 instead is one way: B0 waits, then both
        // leave suspended.
        let (release, t) = hold_wait(&b, 1, &a, Waits::One(1));
        let runner = suspend_waiter(&a, &b, 0);
        drop(release);
        t.join().unwrap();
        end_suspend(&b, 1, runner);
    });
}

/// The same cycle with the suspend wait reported first: B1's wait for
/// A0 is refused. A wait for B0 itself is not, nor a lock-all of B: the
/// suspend wait gives way to them (reqidle), so B0 is not held.
#[test]
fn a_suspend_wait_reported_first_refuses_the_closing_wait_only() {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-sfa"), suspended_vm("reentry-sfb"), vm("reentry-sfc"));
        let runner = suspend_waiter(&a, &b, 0);
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock));
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(1))), Ok(()));
        assert_eq!(from_callback(&c, 0, || wait_for(&b, Waits::One(0))), Ok(()));
        assert_eq!(from_callback(&c, 0, || wait_for(&b, Waits::All)), Ok(()));
        end_suspend(&b, 1, runner);
        // Over: A0 is free again.
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Ok(()));
    });
}

/// Makes pin 5 of an I/O APIC level-triggered, vector 0x45, aimed at
/// vCPU 1 (physical), with `w(offset, value)`, a 4-byte write of vCPU 0;
/// its steps' results.
fn level_rte_for_vcpu1(w: impl Fn(u64, u64) -> Result<()>) -> Result<()> {
    use crate::vioapic::{rte::TRGRLVL, IOREGSEL, IOWIN, REG_REDTBL};
    w(IOREGSEL, u64::from(REG_REDTBL) + 2 * 5 + 1)?;
    w(IOWIN, 1 << 24)?;
    w(IOREGSEL, u64::from(REG_REDTBL) + 2 * 5)?;
    w(IOWIN, TRGRLVL | 0x45)
}

/// A guest write of vCPU 0 to `vm`'s I/O APIC, for `level_rte_for_vcpu1`.
fn guest_write(vm: &Vm) -> impl Fn(u64, u64) -> Result<()> + '_ {
    move |off, v| vm.mmio_write(0, crate::vioapic::IOAPIC_BASE + off, 4, v).map(drop)
}

/// Lock-one command `cmd` on `vm` through the ioctl dispatch, which
/// takes (and for some commands claims) the vCPU's wait itself.
fn lock_one_cmd<T>(vm: &Vm, cmd: u64, arg: &mut T) -> Result<()> {
    let arg = arg as *mut T as *mut std::ffi::c_void;
    // SAFETY: the callers pass `cmd`'s argument struct.
    unsafe { super::super::commands::run(vm, cmd, super::super::ioctl::LockClass::One, arg) }
}

/// The same write as VM_SET_KERNEMU_DEV through the ioctl dispatch.
fn kernemu_write(vm: &Vm) -> impl Fn(u64, u64) -> Result<()> + '_ {
    use crate::ffi::abi::{vm_readwrite_kernemu_device, VM_SET_KERNEMU_DEV};
    move |off, v| {
        let mut a = vm_readwrite_kernemu_device { vcpuid: 0, bits: 0, gpa: crate::vioapic::IOAPIC_BASE + off, value: v };
        a.set_access_width(2);
        lock_one_cmd(vm, VM_SET_KERNEMU_DEV, &mut a)
    }
}

/// Through the ioctl dispatch a lock-one command waits for its own vCPU
/// only: from A0's callback, while B0's callback waits for A0, reading a
/// register of B1 closes no cycle; reading one of B0 does.
#[test]
fn a_lock_one_command_waits_for_its_vcpu_only() {
    use crate::ffi::abi::{vm_register, VM_GET_REGISTER};
    with_watchdog(20, || {
        let (a, b) = (vm("reentry-l1a"), vm("reentry-l1b"));
        let (release, t) = hold_wait(&b, 0, &a, Waits::One(0));
        let get_rax = |cpuid| {
            in_callback(vm_identity(&a), 0, || lock_one_cmd(&b, VM_GET_REGISTER, &mut vm_register { cpuid, regnum: 0, regval: 0 }))
        };
        assert_eq!(get_rax(1), Ok(()));
        assert_eq!(get_rax(0), Err(Error::Deadlock));
        drop(release);
        t.join().unwrap();
    });
}

/// An RTE write whose `block_run` would wait for B1 while B1's
/// callback waits for A0, whose callback holds the writer B0 (as a
/// kernemu write does), is refused before it changes anything; once
/// B1 waits for nothing it goes through. `write_from_a0(a, b)` makes
/// the write from A0's callback.
fn rte_write_closing_a_cycle_is_refused_unchanged(write_from_a0: impl Fn(&Arc<Vm>, &Arc<Vm>) -> Result<()> + Send + 'static) {
    with_watchdog(20, move || {
        let (a, b) = (vm("reentry-ra"), vm("reentry-rb"));
        b.activate_cpu(0).unwrap();
        b.activate_cpu(1).unwrap();
        let (release, t) = hold_wait(&b, 1, &a, Waits::One(0));
        let before = b.vioapic().rte(5);
        assert_eq!(write_from_a0(&a, &b), Err(Error::Deadlock));
        assert_eq!(b.vioapic().rte(5) & 0xffff_ffff, before & 0xffff_ffff, "low half unchanged");
        assert_eq!(b.ioapic_stats().tmr_updates, 0);
        drop(release);
        t.join().unwrap();
        assert_eq!(write_from_a0(&a, &b), Ok(()));
        assert_eq!(b.vioapic().rte(5) & 0xffff, 0x8045);
        assert_eq!(b.ioapic_stats().tmr_updates, 1);
    });
}

/// The write made by hand: the wait, lock and claim a kernemu write
/// takes, then the guest's RTE write.
#[test]
fn an_rte_write_that_closes_a_cycle_is_refused_unchanged() {
    rte_write_closing_a_cycle_is_refused_unchanged(|a, b| {
        in_callback(vm_identity(a), 0, || {
            let wait = wait_for(b, Waits::One(0))?;
            let _lock = b.lock_one(0)?;
            wait.claimed();
            level_rte_for_vcpu1(guest_write(b))
        })
    });
}

/// The same through the ioctl dispatch: VM_SET_KERNEMU_DEV keeps its
/// claimed wait for B0 registered while its RTE write waits for B1
/// (with the wait dropped before the write, the cycle went unseen).
#[test]
fn a_kernemu_rte_write_that_closes_a_cycle_is_refused_unchanged() {
    rte_write_closing_a_cycle_is_refused_unchanged(|a, b| {
        in_callback(vm_identity(a), 0, || level_rte_for_vcpu1(kernemu_write(b)))
    });
}

/// The same cycle with the RTE write's wait registered first: B1's
/// wait for A0 is refused, a lock-all of B (`block_run` does not wait
/// for frozen vCPUs) and waits for A1 are not. Once the writer is done
/// with B1 (narrowed to B2), B1's wait is not refused, B2's is; once its
/// wait is over (the `PeerWait` dropped), the writer, still holding its
/// vCPUs, waits for nobody and B2's wait is not refused either.
#[test]
fn an_rte_write_waiting_first_refuses_the_closing_wait_only() {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-rfa"), Arc::new(Vm::with_idle_backend("reentry-rfb", 3).unwrap()), vm("reentry-rfc"));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (narrow_tx, narrow_rx) = mpsc::channel::<()>();
        let (narrowed_tx, narrowed_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            in_callback(vm_identity(&a2), 0, || {
                let wait = wait_for(&b2, Waits::One(0)).unwrap();
                wait.claimed();
                let mut targets = CpuSet::new();
                targets.insert(1);
                targets.insert(2);
                let blocking = crate::peer_wait::begin(&b2, PeerWaits::Running(targets)).unwrap();
                ready_tx.send(()).unwrap();
                narrow_rx.recv().unwrap();
                targets.remove(1);
                blocking.narrow(PeerWaits::Running(targets));
                narrowed_tx.send(()).unwrap();
                narrow_rx.recv().unwrap();
                drop(blocking);
                narrowed_tx.send(()).unwrap();
                let _ = release_rx.recv();
                drop(wait);
            })
        });
        ready_rx.recv().unwrap();
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock));
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(1))), Ok(()));
        assert_eq!(from_callback(&c, 0, || wait_for(&b, Waits::All)), Ok(()));
        // Done with B1 (the writer went on to other targets): B1 may
        // wait for A0 now.
        narrow_tx.send(()).unwrap();
        narrowed_rx.recv().unwrap();
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Ok(()));
        assert_eq!(from_callback(&b, 2, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock));
        // The write's wait ends; A0 still holds B0.
        narrow_tx.send(()).unwrap();
        narrowed_rx.recv().unwrap();
        assert_eq!(from_callback(&b, 2, || wait_for(&a, Waits::One(0))), Ok(()), "the write's wait is over");
        drop(release_tx);
        t.join().unwrap();
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Ok(()));
    });
}

/// A guest step that, the first time, reports it is running and stays
/// in the guest (RUNNING) until released; every step is an OUT.
struct HeldInGuest {
    entered: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
}

impl crate::guest::GuestProgram for HeldInGuest {
    fn next(&mut self, _rip: u64) -> crate::guest::GuestAction {
        if let Some((entered, release)) = self.entered.take() {
            entered.send(()).unwrap();
            let _ = release.recv();
        }
        crate::guest::GuestAction::PortOut { port: 0x80, size: 1, value: 0 }
    }
    fn interrupt(&mut self, _vector: u8) {}
    fn read_result(&mut self, _value: u64) {}
}

/// The real write's narrowing: B0's guest, run from A0's callback, makes
/// a broadcast entry level-triggered, so step 4 keeps B1, then B2, out of
/// RUNNING. B2 is in its guest, so the write waits for it; by then it is
/// done with B1, whose wait for A0 is not refused, while B2's is.
#[test]
fn an_rte_write_stops_waiting_for_each_target_it_is_done_with() {
    use crate::guest::{GuestAction::*, ScriptedGuest};
    use crate::vioapic::{rte::TRGRLVL, IOAPIC_BASE, IOREGSEL, IOWIN, REG_REDTBL};
    with_watchdog(20, || {
        let a = vm("reentry-na");
        let b = Arc::new(Vm::with_sim_backend("reentry-nb", 3).unwrap());
        for id in 0..3 {
            b.activate_cpu(id).unwrap();
        }
        let store = |off, value| MmioWrite { gpa: IOAPIC_BASE + off, size: 4, value };
        let script = vec![
            store(IOREGSEL, u64::from(REG_REDTBL) + 2 * 5 + 1),
            store(IOWIN, 0xFF << 24),
            store(IOREGSEL, u64::from(REG_REDTBL) + 2 * 5),
            store(IOWIN, TRGRLVL | 0x45),
            PortOut { port: 0x80, size: 1, value: 0 },
        ];
        {
            let l = b.lock_one(0).unwrap();
            b.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
        }
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let b2 = {
            let b = b.clone();
            thread::spawn(move || {
                let l = b.lock_one(2).unwrap();
                b.set_guest(&l, Some(Box::new(HeldInGuest { entered: Some((entered_tx, release_rx)) }))).unwrap();
                b.run(&l).map(|e| e.kind)
            })
        };
        entered_rx.recv().unwrap();
        let writer = {
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || run_from_callback(&a, &b, 0))
        };
        // Kicked by the write's block_run, which comes after B1's.
        while !b.vcpu(2).unwrap().kicked() {
            thread::yield_now();
        }
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Ok(()), "the write is done with B1");
        assert_eq!(from_callback(&b, 2, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock));
        release_tx.send(()).unwrap();
        assert!(matches!(writer.join().unwrap(), Ok(ExitKind::Inout { .. })));
        assert!(matches!(b2.join().unwrap(), Ok(ExitKind::Inout { .. })));
        assert_eq!(b.vioapic().rte(5) & 0xffff, 0x8045);
        assert_eq!(b.ioapic_stats().tmr_block_runs, 2);
    });
}

/// A guest's own RTE write, refused in a `vm_run` from a callback,
/// fails VM_RUN with the instruction restarted: the next run makes the
/// write.
#[test]
fn a_refused_guest_rte_write_is_made_again_at_the_next_run() {
    use crate::guest::{GuestAction, ScriptedGuest};
    use crate::vioapic::{rte::TRGRLVL, IOAPIC_BASE, IOREGSEL, IOWIN, REG_REDTBL};
    with_watchdog(20, || {
        let a = vm("reentry-ga");
        let b = Arc::new(Vm::with_sim_backend("reentry-gb", 2).unwrap());
        b.activate_cpu(0).unwrap();
        b.activate_cpu(1).unwrap();
        let w = |off: u64, value: u64| GuestAction::MmioWrite { gpa: IOAPIC_BASE + off, size: 4, value };
        let script = vec![
            w(IOREGSEL, u64::from(REG_REDTBL) + 2 * 5 + 1),
            w(IOWIN, 1 << 24),
            w(IOREGSEL, u64::from(REG_REDTBL) + 2 * 5),
            w(IOWIN, TRGRLVL | 0x45),
            GuestAction::PortOut { port: 0x80, size: 1, value: 0 },
        ];
        {
            let l = b.lock_one(0).unwrap();
            b.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
        }
        let run_b0 = || {
            in_callback(vm_identity(&a), 0, || {
                let wait = wait_for(&b, Waits::One(0))?;
                let lock = b.lock_one(0)?;
                wait.claimed();
                b.run(&lock).map(|e| (e.kind, e.rip))
            })
        };
        let (release, t) = hold_wait(&b, 1, &a, Waits::One(0));
        assert_eq!(run_b0(), Err(Error::Deadlock));
        assert_eq!(b.vioapic().rte(5) & 0x1ffff, crate::vioapic::rte::INTMASK, "unchanged: masked edge");
        let rip = b.vcpu(0).unwrap().regs.lock().nextrip;
        drop(release);
        t.join().unwrap();
        let (kind, at) = run_b0().unwrap();
        assert!(matches!(kind, ExitKind::Inout { .. }), "{kind:?}");
        assert_eq!(at, rip + 1, "the restarted write ran, then the OUT");
        assert_eq!(b.vioapic().rte(5) & 0x1ffff, 0x8045);
    });
}

#[test]
fn a_nested_wait_stands_for_the_outer_one() {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-na"), vm("reentry-nb"), vm("reentry-nc"));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
        // A0's callback runs B0 (vm_run: holds B0, may wait for all of
        // B), and B0's callback waits for C0.
        let t = thread::spawn(move || {
            in_callback(vm_identity(&a2), 0, || {
                let run = wait_for(&b2, Waits::One(0)).unwrap();
                run.claimed();
                in_callback(vm_identity(&b2), 0, || {
                    let inner = wait_for(&c2, Waits::One(0)).unwrap();
                    ready_tx.send(()).unwrap();
                    let _ = release_rx.recv();
                    drop(inner);
                });
                drop(run);
            })
        });
        ready_rx.recv().unwrap();
        // The thread waits for C0 now, holding A0 and B0.
        assert_eq!(from_callback(&c, 0, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock));
        assert_eq!(from_callback(&c, 0, || wait_for(&b, Waits::One(0))), Err(Error::Deadlock));
        // Not for B1: the vm_run's wait is suspended meanwhile.
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Ok(()));
        drop(release_tx);
        t.join().unwrap();
    });
}

/// On a thread inside A0's callback, a claimed `vm_run` of B0 makes a
/// nested wait (`nested(a, b, c)`, from B0's callback), then, once that is
/// over, its RTE write waits for B1 while B1's callback waits for A0:
/// the run's entry counts again and the B1 wait, which closes the
/// cycle, is refused.
fn the_outer_run_counts_again_after(nested: impl FnOnce(&Arc<Vm>, &Arc<Vm>, &Arc<Vm>) + Send + 'static) {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-oa"), vm("reentry-ob"), vm("reentry-oc"));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
        let t = thread::spawn(move || {
            in_callback(vm_identity(&a2), 0, || {
                let run = wait_for(&b2, Waits::One(0)).unwrap();
                run.claimed();
                in_callback(vm_identity(&b2), 0, || nested(&a2, &b2, &c2));
                let mut targets = CpuSet::new();
                targets.insert(1);
                let blocking = crate::peer_wait::begin(&b2, PeerWaits::Running(targets)).unwrap();
                ready_tx.send(()).unwrap();
                let _ = done_rx.recv();
                drop(blocking);
                drop(run);
            })
        });
        ready_rx.recv().unwrap();
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock));
        drop(done_tx);
        t.join().unwrap();
    });
}

/// A nested wait that ended gives the thread's `vm_run` entry back its
/// place: it is the thread's current wait again, and active.
#[test]
fn a_run_entry_counts_again_once_a_nested_wait_ends() {
    the_outer_run_counts_again_after(|_, _, c| drop(wait_for(c, Waits::One(0)).unwrap()));
}

/// The same after a nested wait that was refused (it closed a cycle
/// through C0's callback, which waits for A0 the thread holds).
#[test]
fn a_run_entry_counts_again_once_a_nested_wait_is_refused() {
    the_outer_run_counts_again_after(|a, _, c| {
        let (release, t) = hold_wait(c, 0, a, Waits::One(0));
        assert_eq!(wait_for(c, Waits::One(0)).map(drop), Err(Error::Deadlock));
        drop(release);
        t.join().unwrap();
    });
}

/// A refused peer wait leaves the thread's entry waiting for nothing
/// (`PeerWaitObserver::begin` leaves the registry as it was): once the
/// cycle's other wait is gone, B1's callback may wait for A0, whose
/// thread still holds B0 but no longer waits for B1.
#[test]
fn a_refused_peer_wait_leaves_its_entry_waiting_for_nothing() {
    with_watchdog(20, || {
        let (a, b) = (vm("reentry-pra"), vm("reentry-prb"));
        let (release, t) = hold_wait(&b, 1, &a, Waits::One(0));
        let (refused_tx, refused_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (a2, b2) = (a.clone(), b.clone());
        let writer = thread::spawn(move || {
            in_callback(vm_identity(&a2), 0, || {
                let run = wait_for(&b2, Waits::One(0)).unwrap();
                run.claimed();
                let mut targets = CpuSet::new();
                targets.insert(1);
                let r = crate::peer_wait::begin(&b2, PeerWaits::Running(targets)).map(drop);
                refused_tx.send(r).unwrap();
                let _ = done_rx.recv();
                drop(run);
            })
        });
        assert_eq!(refused_rx.recv().unwrap(), Err(Error::Deadlock));
        drop(release);
        t.join().unwrap();
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Ok(()));
        drop(done_tx);
        writer.join().unwrap();
    });
}

/// A lock-all counts as holding the vCPUs of the VM it locks only: while
/// A0's callback locks all of B, B1's callback waiting for C0 waits for
/// nothing the lock-all holds (it is not frozen by it), so no cycle.
#[test]
fn a_lock_all_holds_only_its_own_vms_vcpus() {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-la"), vm("reentry-lb"), vm("reentry-lc"));
        let (release, t) = hold_wait(&a, 0, &b, Waits::All);
        assert_eq!(from_callback(&b, 1, || wait_for(&c, Waits::One(0))), Ok(()));
        assert_eq!(from_callback(&b, 1, || wait_for(&a, Waits::One(0))), Err(Error::Deadlock), "but A0 is held");
        drop(release);
        t.join().unwrap();
    });
}

/// An RTE write's wait does not count a vCPU in the suspend wait as
/// RUNNING (`block_run` does not wait for it): while B1, run from C0's
/// callback, waits out a suspend (so for B0), a write of B0 from A0's
/// callback that blocks B1 closes no cycle.
#[test]
fn an_rte_write_does_not_wait_for_a_vcpu_in_the_suspend_wait() {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-wsa"), suspended_vm("reentry-wsb"), vm("reentry-wsc"));
        let runner = suspend_waiter(&c, &b, 1);
        let (a2, b2) = (a.clone(), b.clone());
        let write = thread::spawn(move || {
            in_callback(vm_identity(&a2), 0, || {
                let wait = wait_for(&b2, Waits::One(0)).unwrap();
                wait.claimed();
                let mut targets = CpuSet::new();
                targets.insert(1);
                crate::peer_wait::begin(&b2, PeerWaits::Running(targets)).map(drop)
            })
        });
        assert_eq!(write.join().unwrap(), Ok(()));
        end_suspend(&b, 0, runner);
    });
}

/// A call that locks one vCPU for several steps (`vcpu_reset`,
/// `vm_copy_setup`: `handle::with_locked_vcpu`) waits for its vCPU only
/// until it has it. While one works on B0 from A0's callback, with a
/// lock-all of B from A1's callback under way, B1's callback may wait
/// for A0: the call waits for nothing, so no cycle.
#[test]
fn a_multi_step_locked_vcpu_call_waits_for_nothing_once_it_has_its_vcpu() {
    use crate::ffi::handle::{close_vcpu, new_vcpu, with_locked_vcpu};
    with_watchdog(20, || {
        let (a, b) = (vm("reentry-lva"), vm("reentry-lvb"));
        let (release, t) = hold_wait(&a, 1, &b, Waits::All);
        let vcpu = new_vcpu(b.clone(), 0);
        let r = in_callback(vm_identity(&a), 0, || {
            with_locked_vcpu(vcpu, |_, _| {
                let (a, b) = (a.clone(), b.clone());
                Ok(thread::spawn(move || from_callback(&b, 1, || wait_for(&a, Waits::One(0)))).join().unwrap())
            })
        });
        assert_eq!(r, Ok(Ok(())));
        drop(release);
        t.join().unwrap();
        close_vcpu(vcpu).unwrap();
    });
}

/// A claimed `vm_run` holds its vCPU: while A0's callback runs B0 and
/// B0's RTE write waits for B1, and B1's callback waits for C0, C0's
/// callback waiting for B0 closes the cycle; C1's does not.
#[test]
fn a_claimed_run_holds_its_vcpu() {
    with_watchdog(20, || {
        let (a, b, c) = (vm("reentry-ca"), vm("reentry-cb"), vm("reentry-cc"));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            in_callback(vm_identity(&a2), 0, || {
                let run = wait_for(&b2, Waits::One(0)).unwrap();
                run.claimed();
                let mut targets = CpuSet::new();
                targets.insert(1);
                let blocking = crate::peer_wait::begin(&b2, PeerWaits::Running(targets)).unwrap();
                ready_tx.send(()).unwrap();
                let _ = done_rx.recv();
                drop(blocking);
                drop(run);
            })
        });
        ready_rx.recv().unwrap();
        let (release, t2) = hold_wait(&b, 1, &c, Waits::One(0));
        assert_eq!(from_callback(&c, 0, || wait_for(&b, Waits::One(0))), Err(Error::Deadlock));
        assert_eq!(from_callback(&c, 1, || wait_for(&b, Waits::One(0))), Ok(()));
        drop(release);
        t2.join().unwrap();
        drop(done_tx);
        t.join().unwrap();
    });
}
