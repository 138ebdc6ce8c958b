//! Model checking of the OS-7622 protocol with loom, on the crate's real
//! code: `Vm`, the vCPU state machine, `lock_all` / `lock_one`, the run
//! loop, and the vioapic RTE write path reached through `Vm::mmio_write`.
//! Under `cfg(loom)` every lock, condition variable and atomic of the core
//! is loom's (see `src/sync.rs`), so loom explores the interleavings of
//! these threads and fails a model when all threads are blocked.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!       cargo test --release --test loom_os7622 -- --nocapture`
//! (or `make verify`). Each model prints the number of interleavings it
//! explored. `LOOM_MAX_PREEMPTIONS=n` overrides a model's preemption bound.
#![cfg(loom)]

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Instant;

use loom::model::Builder;
use loom::sync::atomic::AtomicBool;
use loom::thread;

use vmm_rs::backend::{Backend, GuestExit, GuestRam};
use vmm_rs::exit::ExitKind;
use vmm_rs::sync::Arc;
use vmm_rs::vcpu::{Vcpu, VcpuState};
use vmm_rs::vm::Vm;

const IOREGSEL_GPA: u64 = 0xFEC0_0000;
const IOWIN_GPA: u64 = 0xFEC0_0010;
/// The pin every model rewrites.
const PIN: u32 = 5;
/// RTE low-half bits.
const LEVEL: u32 = 0x8000;
const OLD_VECTOR: u32 = 0x30;
const NEW_VECTOR: u8 = 0x31;
/// Physical destination "all vCPUs".
const BROADCAST: u8 = 0xFF;

/// A guest that executes PAUSE at once: one VM_RUN enters RUNNING, does
/// the run loop's entry work and returns.
#[derive(Debug)]
struct PauseGuest;

impl Backend for PauseGuest {
    fn run(&self, _vcpu: &Vcpu, _ram: &dyn GuestRam, rip: u64) -> (GuestExit, u64, u32) {
        (GuestExit::Pause, rip, 2)
    }
}

/// A guest that keeps running until it is kicked (it then exits, as the
/// backend contract requires) or until the writer thread has finished (so
/// that a run that was never kicked still ends). The writer never waits
/// for the second condition: it sets it after its write returned.
#[derive(Debug)]
struct SpinUntilKickedGuest {
    writer_done: Arc<AtomicBool>,
    kicked: Arc<AtomicBool>,
}

impl Backend for SpinUntilKickedGuest {
    fn run(&self, vcpu: &Vcpu, _ram: &dyn GuestRam, rip: u64) -> (GuestExit, u64, u32) {
        loop {
            if vcpu.kicked() {
                self.kicked.store(true, SeqCst);
                return (GuestExit::Kicked, rip, 0);
            }
            if self.writer_done.load(SeqCst) {
                return (GuestExit::Pause, rip, 2);
            }
            // A spin loop: tell loom to run someone else.
            thread::yield_now();
        }
    }
}

/// A thread's handle on an object shared by the model's threads. loom
/// cannot drop its `Arc` while it tears down a deadlocked execution (the
/// destructor panics, and a panic during unwinding aborts the test
/// process), so a handle is never dropped implicitly:
/// [`Shared::release`] ends it on the normal path, where loom's leak check
/// still applies.
struct Shared<T>(ManuallyDrop<Arc<T>>);

impl<T> Shared<T> {
    fn new(value: T) -> Self {
        Shared(ManuallyDrop::new(Arc::new(value)))
    }
    fn share(&self) -> Self {
        Shared(ManuallyDrop::new(Arc::clone(&self.0)))
    }
    fn release(self) {
        drop(ManuallyDrop::into_inner(self.0));
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A 2-vCPU VM, both vCPUs active, with pin `PIN` edge-triggered, vector
/// `OLD_VECTOR`, aimed at `dest` (edge: no TMR bit anywhere yet).
fn two_vcpu_vm(backend: Box<dyn Backend>, dest: u8, legacy: bool) -> Shared<Vm> {
    let vm = Vm::new("loom", 2, backend).unwrap();
    vm.activate_cpu(0).unwrap();
    vm.activate_cpu(1).unwrap();
    let w = |gpa, v| vm.ioapic_mmio_write_nonvcpu(gpa, 4, v).unwrap();
    w(IOREGSEL_GPA, 0x11 + 2 * PIN);
    w(IOWIN_GPA, u32::from(dest) << 24);
    w(IOREGSEL_GPA, 0x10 + 2 * PIN);
    w(IOWIN_GPA, OLD_VECTOR);
    // After the setup writes: the 2019 protocol would rendezvous on them
    // with vCPUs that have no thread.
    vm.set_legacy_protocol(legacy);
    Shared::new(vm)
}

/// vCPU `writer`'s guest rewrites `PIN` as level-triggered with
/// `NEW_VECTOR` (trigger mode and vector change: TMR work for the targets).
fn guest_rewrites_rte(vm: &Vm, writer: usize) {
    let sel = u64::from(0x10 + 2 * PIN);
    assert_eq!(vm.mmio_write(writer, IOREGSEL_GPA, 4, sel), Ok(Some(())));
    let low = u64::from(LEVEL | u32::from(NEW_VECTOR));
    assert_eq!(vm.mmio_write(writer, IOWIN_GPA, 4, low), Ok(Some(())));
}

/// Whether vCPU `id` will treat `NEW_VECTOR` as level-triggered: the bit is
/// staged (applied at its next entry to RUNNING) or already applied, and
/// not both.
fn tmr_has_new_vector(vm: &Vm, id: usize) -> bool {
    let vlapic = &vm.vcpu(id).unwrap().vlapic;
    let staged = vlapic.staged_tmr().0.test(NEW_VECTOR);
    let applied = vlapic.tmr().test(NEW_VECTOR);
    assert!(!(staged && applied), "vCPU {id}: staged and applied at once");
    staged || applied
}

fn assert_all_idle(vm: &Vm) {
    for v in vm.vcpus() {
        assert_eq!(v.state(), VcpuState::Idle, "vCPU {} not released", v.id());
    }
}

/// Counters kept across the executions of one model (outside loom).
struct Counts {
    executions: AtomicUsize,
    /// Executions that reached the state the model is about.
    interesting: AtomicUsize,
}

impl Counts {
    const fn new() -> Self {
        Counts { executions: AtomicUsize::new(0), interesting: AtomicUsize::new(0) }
    }
}

/// Runs `model` under loom with preemption bound `bound` (unless
/// LOOM_MAX_PREEMPTIONS is set) and prints what was explored. Returns the
/// model's outcome (Err when loom or an assertion failed it).
fn explore<F>(name: &str, bound: Option<usize>, counts: &'static Counts, what: &str, model: F) -> std::thread::Result<()>
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = bound;
    }
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        b.check(move || {
            counts.executions.fetch_add(1, SeqCst);
            model()
        })
    }));
    let seen = if what.is_empty() { String::new() } else { format!("; {} {what}", counts.interesting.load(SeqCst)) };
    println!(
        "loom {name}: {} interleavings{}, preemption bound {:?}, {:.1} s{seen}",
        counts.executions.load(SeqCst),
        if outcome.is_ok() { "" } else { " until the failure" },
        b.preemption_bound,
        start.elapsed().as_secs_f64(),
    );
    outcome
}

/// A model that must pass in every interleaving and reach its state of
/// interest at least once.
fn expect_pass(outcome: std::thread::Result<()>, counts: &Counts) {
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    assert!(counts.interesting.load(SeqCst) > 0, "the model never reached the state it is about");
}

/// A model that loom must fail with its deadlock report (not with an
/// assertion of ours, nor a branch-limit overflow).
fn expect_loom_deadlock(outcome: std::thread::Result<()>) {
    let payload = match outcome {
        Ok(()) => panic!("the legacy protocol did not deadlock: the model cannot see OS-7622"),
        Err(p) => p,
    };
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("<non-string panic>");
    assert!(msg.starts_with("deadlock; threads"), "the model failed otherwise: {msg}");
    // The model's three threads and the main thread joining them: a hang
    // of the main thread alone would be a broken setup, not OS-7622.
    assert!(msg.matches("Blocked").count() >= 4, "not the model's threads that deadlocked: {msg}");
}

/// The OS-7622 shape, two threads. vCPU 1 is inside its run loop (FROZEN)
/// handling its guest's MMIO write to an RTE aimed at vCPU 0, which is
/// IDLE between VM_RUN calls; a control thread does a lock-all (which
/// freezes vCPU 0, then waits for vCPU 1). Every interleaving must finish,
/// with vCPU 0's TMR change staged for its next entry to RUNNING.
/// `counts.interesting`: the write ran while the lock-all held vCPU 0.
fn os7622_two_threads(legacy: bool, counts: &'static Counts) -> impl Fn() + Sync + Send + 'static {
    move || {
        let vm = two_vcpu_vm(Box::new(PauseGuest), 0, legacy);
        vm.vcpu(1).unwrap().set_state(VcpuState::Frozen, true).unwrap();

        let vcpu1 = {
            let vm = vm.share();
            thread::spawn(move || {
                // If lock-all holds vCPU 0 now, it holds it for the whole
                // write: it cannot finish before we release vCPU 1.
                if vm.vcpu(0).unwrap().state() == VcpuState::Frozen {
                    counts.interesting.fetch_add(1, SeqCst);
                }
                guest_rewrites_rte(&vm, 1);
                vm.vcpu(1).unwrap().set_state(VcpuState::Idle, false).unwrap();
                vm.release();
            })
        };
        let control = {
            let vm = vm.share();
            thread::spawn(move || {
                drop(vm.lock_all().unwrap());
                vm.release();
            })
        };
        vcpu1.join().unwrap();
        control.join().unwrap();

        assert_all_idle(&vm);
        assert!(tmr_has_new_vector(&vm, 0));
        if !legacy {
            let s = vm.ioapic_stats();
            assert_eq!((s.tmr_updates, s.tmr_block_runs, s.tmr_stagings), (1, 1, 1));
        }
        vm.release();
    }
}

/// The OS-7622 shape with vCPU 0's own thread, three threads: vCPU 1's
/// thread takes its vCPU (VM_RUN's lock-one) and its guest rewrites the
/// RTE aimed at vCPU 0; a control thread does a lock-all; vCPU 0's thread
/// does one VM_RUN (lock-one, the real run loop: enter RUNNING waiting out
/// runblock, apply staged TMR, the before-entry checks including
/// rendezvous and reqidle, one guest exit, release). Any of the three may
/// get any vCPU first. `counts.interesting`: the write ran while the
/// lock-all held vCPU 0.
fn os7622_three_threads(legacy: bool, counts: &'static Counts) -> impl Fn() + Sync + Send + 'static {
    move || {
        let vm = two_vcpu_vm(Box::new(PauseGuest), 0, legacy);
        // Set while vCPU 0's thread wants or holds vCPU 0 (before its
        // lock-one, until after its release), so that vCPU 0 seen FROZEN
        // with this clear means the lock-all holds it.
        let vcpu0_busy = Shared::new(AtomicBool::new(false));

        let vcpu1 = {
            let (vm, vcpu0_busy) = (vm.share(), vcpu0_busy.share());
            thread::spawn(move || {
                let lock = vm.lock_one(1).unwrap();
                if vm.vcpu(0).unwrap().state() == VcpuState::Frozen && !vcpu0_busy.load(SeqCst) {
                    counts.interesting.fetch_add(1, SeqCst);
                }
                guest_rewrites_rte(&vm, 1);
                drop(lock);
                vcpu0_busy.release();
                vm.release();
            })
        };
        let control = {
            let vm = vm.share();
            thread::spawn(move || {
                drop(vm.lock_all().unwrap());
                vm.release();
            })
        };
        let vcpu0 = {
            let (vm, vcpu0_busy) = (vm.share(), vcpu0_busy.share());
            thread::spawn(move || {
                vcpu0_busy.store(true, SeqCst);
                let lock = vm.lock_one(0).unwrap();
                // A pending reqidle (from the lock-all) ends VM_RUN before
                // the guest runs; otherwise the guest's PAUSE does.
                let exit = vm.run(&lock).unwrap();
                assert!(matches!(exit.kind, ExitKind::Pause | ExitKind::ReqIdle), "{exit:?}");
                drop(lock);
                vcpu0_busy.store(false, SeqCst);
                vcpu0_busy.release();
                vm.release();
            })
        };
        vcpu1.join().unwrap();
        control.join().unwrap();
        vcpu0.join().unwrap();

        assert_all_idle(&vm);
        assert!(tmr_has_new_vector(&vm, 0));
        if !legacy {
            let s = vm.ioapic_stats();
            assert_eq!((s.tmr_updates, s.tmr_block_runs, s.tmr_stagings), (1, 1, 1));
        }
        vcpu0_busy.release();
        vm.release();
    }
}

/// What a model must do in every interleaving loom explores.
enum Expect {
    /// Finish, reaching its state of interest at least once.
    Pass,
    /// Be reported by loom as a deadlock (not fail an assertion of ours).
    LoomDeadlock,
}

/// Explores `model` (built with the counters it reports into) and checks
/// the outcome.
fn check<M>(name: &str, bound: Option<usize>, what: &str, expect: Expect, model: impl FnOnce(&'static Counts) -> M)
where
    M: Fn() + Sync + Send + 'static,
{
    let counts: &'static Counts = Box::leak(Box::new(Counts::new()));
    let outcome = explore(name, bound, counts, what, model(counts));
    match expect {
        Expect::Pass => expect_pass(outcome, counts),
        Expect::LoomDeadlock => expect_loom_deadlock(outcome),
    }
}

const UNDER_LOCK_ALL: &str = "with the write under a lock-all holding vCPU 0";

/// (a) Current protocol, two threads: no deadlock in any interleaving.
#[test]
fn os7622_two_threads_never_deadlock() {
    check("os7622_two_threads_never_deadlock", None, UNDER_LOCK_ALL, Expect::Pass, |c| os7622_two_threads(false, c));
}

/// (a) Current protocol, three threads (vCPU 0 entering and leaving
/// RUNNING too): no deadlock in any interleaving within the bound.
#[test]
fn os7622_three_threads_never_deadlock() {
    check("os7622_three_threads_never_deadlock", THREE_THREAD_BOUND, UNDER_LOCK_ALL, Expect::Pass, |c| {
        os7622_three_threads(false, c)
    });
}

/// (b) The three-thread model under the 2019 protocol (TMR update by
/// rendezvous over every active vCPU, lock-all that does not service it):
/// vCPU 0's thread can run the rendezvous callback, so some interleavings
/// finish; loom must report a deadlock of the model's threads. Caveat:
/// vCPU 0's thread makes one VM_RUN, so besides OS-7622 (the lock-all
/// froze vCPU 0 while the writer waits for its callback) the model also
/// hangs when that VM_RUN ends before the rendezvous is posted; loom
/// stops at the first deadlock it meets and does not say which. The
/// deterministic OS-7622 interleaving is `c_tests/rte_lockall_test.c`
/// and `vm_intr::deadlock_tests`. (The two-thread model has no legacy
/// twin: without vCPU 0's thread nothing ever runs vCPU 0's callback,
/// lock-all or not.)
#[test]
fn legacy_protocol_three_threads_deadlock() {
    check("legacy_protocol_three_threads_deadlock", THREE_THREAD_BOUND, "", Expect::LoomDeadlock, |c| {
        os7622_three_threads(true, c)
    });
}

/// Preemption bound of the three-thread models: 4 explores about a
/// million interleavings in a minute; unbounded does not end in useful
/// time. `LOOM_MAX_PREEMPTIONS` overrides it.
const THREE_THREAD_BOUND: Option<usize> = Some(4);

/// (c) block_run against a RUNNING vCPU. vCPU 1 (FROZEN in its run loop)
/// rewrites an RTE aimed at both vCPUs while vCPU 0's thread does a
/// VM_RUN whose guest runs until kicked. The writer must block_run only
/// vCPU 0, never itself; wait only if vCPU 0 is RUNNING, which its kick
/// ends; and vCPU 0's entry to RUNNING after the kick must wait out the
/// runblock, so it applies the new TMR bit. `counts.interesting`: vCPU 0
/// was RUNNING during the write and left on the kick.
fn block_run_model(counts: &'static Counts) -> impl Fn() + Sync + Send + 'static {
    move || {
        let writer_done = Arc::new(AtomicBool::new(false));
        let kicked = Arc::new(AtomicBool::new(false));
        let guest = SpinUntilKickedGuest { writer_done: writer_done.clone(), kicked: kicked.clone() };
        let vm = two_vcpu_vm(Box::new(guest), BROADCAST, false);
        vm.vcpu(1).unwrap().set_state(VcpuState::Frozen, true).unwrap();

        let vcpu1 = {
            let vm = vm.share();
            thread::spawn(move || {
                guest_rewrites_rte(&vm, 1);
                // Only now may vCPU 0's guest stop on its own.
                writer_done.store(true, SeqCst);
                vm.vcpu(1).unwrap().set_state(VcpuState::Idle, false).unwrap();
                vm.release();
            })
        };
        let vcpu0 = {
            let vm = vm.share();
            thread::spawn(move || {
                let lock = vm.lock_one(0).unwrap();
                let exit = vm.run(&lock).unwrap();
                assert!(matches!(exit.kind, ExitKind::Pause), "{exit:?}");
                drop(lock);
                vm.release();
            })
        };
        vcpu1.join().unwrap();
        vcpu0.join().unwrap();

        assert_all_idle(&vm);
        let s = vm.ioapic_stats();
        assert_eq!(s.tmr_block_runs, 1, "the writer blocked only vCPU 0, not itself");
        assert_eq!(s.tmr_stagings, 2);
        assert!(tmr_has_new_vector(&vm, 0) && tmr_has_new_vector(&vm, 1));
        if kicked.load(SeqCst) {
            counts.interesting.fetch_add(1, SeqCst);
            assert!(
                vm.vcpu(0).unwrap().vlapic.tmr().test(NEW_VECTOR),
                "vCPU 0 re-entered RUNNING before the writer had staged"
            );
        }
        vm.release();
    }
}

/// (c) See [`block_run_model`].
#[test]
fn block_run_waits_only_for_a_running_vcpu() {
    check(
        "block_run_waits_only_for_a_running_vcpu",
        None,
        "with vCPU 0 kicked out of RUNNING by the writer",
        Expect::Pass,
        block_run_model,
    );
}

/// A non-vCPU thread writes the low half of `PIN`'s redirection entry.
fn write_pin_low(vm: &Vm, low: u32) {
    vm.ioapic_mmio_write_nonvcpu(IOREGSEL_GPA, 4, 0x10 + 2 * PIN).unwrap();
    vm.ioapic_mmio_write_nonvcpu(IOWIN_GPA, 4, low).unwrap();
}

/// A 1-vCPU VM, vCPU 0 active with its local APIC software-enabled, and
/// pin `PIN` level-triggered, vector 0x40, aimed at it; `mask` is 0 or the
/// mask bit.
fn one_vcpu_vm_with_level_pin(mask: u32) -> Shared<Vm> {
    one_vcpu_vm_with_pin(mask | LEVEL | 0x40)
}

/// A 1-vCPU VM, vCPU 0 active with its local APIC software-enabled, and
/// pin `PIN`'s low half `low` (destination vCPU 0).
fn one_vcpu_vm_with_pin(low: u32) -> Shared<Vm> {
    let vm = Shared::new(Vm::new("loom", 1, Box::new(PauseGuest)).unwrap());
    vm.activate_cpu(0).unwrap();
    vm.mmio_write(0, 0xFEE0_00F0, 4, 0x1ff).unwrap();
    write_pin_low(&vm, low);
    vm
}

/// A device thread asserting `PIN` while another writes `low` to its low
/// half; returns when both are done.
fn assert_racing_a_write(vm: &Shared<Vm>, low: u32) {
    device_racing_a_write(vm, low, Vm::ioapic_assert_irq);
}

/// A device thread calling `op` on `PIN` while another writes `low` to its
/// low half; returns when both are done.
fn device_racing_a_write(vm: &Shared<Vm>, low: u32, op: fn(&Vm, i32) -> vmm_rs::error::Result<()>) {
    let device = {
        let vm = vm.share();
        thread::spawn(move || {
            op(&vm, PIN as i32).unwrap();
            vm.release();
        })
    };
    let writer = {
        let vm = vm.share();
        thread::spawn(move || {
            write_pin_low(&vm, low);
            vm.release();
        })
    };
    device.join().unwrap();
    writer.join().unwrap();
}

/// (d) An assert racing an RTE write that unmasks a masked level pin: a
/// device thread asserts while another thread unmasks the entry. In every
/// interleaving the interrupt is sent exactly once (by the assert, or by
/// the write's step 5, never both).
#[test]
fn an_assert_racing_an_unmask_is_sent_exactly_once() {
    check(
        "an_assert_racing_an_unmask_is_sent_exactly_once",
        None,
        "with the assert done before the write started",
        Expect::Pass,
        |counts: &'static Counts| {
            move || {
                let vm = one_vcpu_vm_with_level_pin(0x1_0000);

                let asserted = Shared::new(AtomicBool::new(false));
                let device = {
                    let (vm, asserted) = (vm.share(), asserted.share());
                    thread::spawn(move || {
                        vm.ioapic_assert_irq(PIN as i32).unwrap();
                        asserted.store(true, SeqCst);
                        asserted.release();
                        vm.release();
                    })
                };
                let writer = {
                    let (vm, asserted) = (vm.share(), asserted.share());
                    thread::spawn(move || {
                        if asserted.load(SeqCst) {
                            counts.interesting.fetch_add(1, SeqCst);
                        }
                        asserted.release();
                        write_pin_low(&vm, LEVEL | 0x40);
                        vm.release();
                    })
                };
                device.join().unwrap();
                writer.join().unwrap();

                let s = vm.ioapic_stats();
                assert_eq!(s.interrupts, 1, "sent exactly once");
                assert!(vm.vcpu(0).unwrap().vlapic.irr().test(0x40), "delivered");
                asserted.release();
                vm.release();
            }
        },
    );
}

/// (e) An assert racing an RTE write that rewrites an unmasked level pin
/// to edge with another vector (TMR staging: the pin is in flux meanwhile).
/// Before the write the assert sends the level entry; during it, it marks
/// the send due (a compare-and-swap on the entry copy, no lock) and the
/// writer sends the edge entry; after it, it sends the edge entry without
/// a lock. In every interleaving exactly one interrupt is sent.
#[test]
fn an_assert_racing_a_rewrite_in_flux_is_sent_exactly_once() {
    check(
        "an_assert_racing_a_rewrite_in_flux_is_sent_exactly_once",
        None,
        "with the send held back while the pin was in flux",
        Expect::Pass,
        |counts: &'static Counts| {
            move || {
                let vm = one_vcpu_vm_with_level_pin(0);
                assert_racing_a_write(&vm, 0x41);
                check_sent_once_with_either_vector(&vm, counts, 1);
                vm.release();
            }
        },
    );
}

/// A pulse racing a rewrite of its entry (level to edge with a new vector,
/// in flux): sent exactly once, with the old entry or the new one, and the
/// count is left at zero. A pulse touches no count: it sends on a load of
/// the count word and goes through the same in-flux hold-back as an
/// assert's send.
#[test]
fn a_pulse_racing_a_rewrite_in_flux_is_sent_exactly_once() {
    check(
        "a_pulse_racing_a_rewrite_in_flux_is_sent_exactly_once",
        None,
        "with the send held back while the pin was in flux",
        Expect::Pass,
        |counts: &'static Counts| {
            move || {
                let vm = one_vcpu_vm_with_level_pin(0);
                device_racing_a_write(&vm, 0x41, Vm::ioapic_pulse_irq);
                check_sent_once_with_either_vector(&vm, counts, 0);
                vm.release();
            }
        },
    );
}

/// A pulse racing a rewrite of a level pin to level with another vector
/// (in flux): sent exactly once. FreeBSD sends a pulse whenever it lands
/// (the new entry is in its table during the unlocked TMR rendezvous);
/// here a held-back pulse is marked as such, and step 5 sends the level
/// entry for it though the count is 0.
#[test]
fn a_level_pulse_racing_a_level_rewrite_is_sent_exactly_once() {
    check(
        "a_level_pulse_racing_a_level_rewrite_is_sent_exactly_once",
        None,
        "with the send held back while the pin was in flux",
        Expect::Pass,
        |counts: &'static Counts| {
            move || {
                let vm = one_vcpu_vm_with_level_pin(0);
                device_racing_a_write(&vm, LEVEL | 0x41, Vm::ioapic_pulse_irq);
                check_sent_once_with_either_vector(&vm, counts, 0);
                vm.release();
            }
        },
    );
}

/// An edge pulse racing a write that masks the pin and changes its vector
/// never delivers the new, masked entry, and is sent at most once.
#[test]
fn an_edge_pulse_racing_a_mask_never_sends_the_masked_entry() {
    check(
        "an_edge_pulse_racing_a_mask_never_sends_the_masked_entry",
        None,
        "with the pulse dropped because the mask landed",
        Expect::Pass,
        |counts: &'static Counts| {
            move || {
                let vm = one_vcpu_vm_with_pin(0x40);
                let device = {
                    let vm = vm.share();
                    thread::spawn(move || {
                        vm.ioapic_pulse_irq(PIN as i32).unwrap();
                        vm.release();
                    })
                };
                write_pin_low(&vm, 0x1_0000 | 0x41);
                device.join().unwrap();
                let irr = vm.vcpu(0).unwrap().vlapic.irr();
                assert!(!irr.test(0x41), "a masked entry was delivered");
                let sent = vm.ioapic_stats().interrupts;
                assert!(sent <= 1);
                if sent == 0 {
                    counts.interesting.fetch_add(1, SeqCst);
                }
                vm.release();
            }
        },
    );
}

/// After a send racing the rewrite of vector 0x40 to 0x41: one interrupt,
/// with either vector; `count` left on the pin. Interesting: the send was
/// held back while the pin was in flux.
fn check_sent_once_with_either_vector(vm: &Shared<Vm>, counts: &Counts, count: u32) {
    let s = vm.ioapic_stats();
    assert_eq!(s.interrupts, 1, "sent exactly once");
    if s.deferred_sends == 1 {
        counts.interesting.fetch_add(1, SeqCst);
    }
    let irr = vm.vcpu(0).unwrap().vlapic.irr();
    assert!(irr.test(0x40) != irr.test(0x41), "one of the two vectors delivered");
    assert_eq!(vm.vioapic().assert_count(PIN as usize), count);
}

/// An edge assert racing a write that masks the pin and changes its
/// vector never delivers the new, masked entry: the lock-free send reads
/// the entry after its count increment and drops it if masked by then
/// (the assert is sent with the old entry, or not at all).
#[test]
fn an_edge_assert_racing_a_mask_never_sends_the_masked_entry() {
    check(
        "an_edge_assert_racing_a_mask_never_sends_the_masked_entry",
        None,
        "with the assert dropped because the mask landed",
        Expect::Pass,
        |counts: &'static Counts| {
            move || {
                let vm = one_vcpu_vm_with_pin(0x40);
                assert_racing_a_write(&vm, 0x1_0000 | 0x41);
                let irr = vm.vcpu(0).unwrap().vlapic.irr();
                assert!(!irr.test(0x41), "a masked entry was delivered");
                if vm.ioapic_stats().interrupts == 0 {
                    counts.interesting.fetch_add(1, SeqCst);
                }
                vm.release();
            }
        },
    );
}

/// A vCPU waiting out a VM-wide suspend (vCPU 0 never acknowledges)
/// returns once the VM is destroyed, in every interleaving: the wait
/// checks for destroy under the vCPU mutex that destroy's wake-up takes.
#[test]
fn destroy_ends_a_suspend_wait() {
    check(
        "destroy_ends_a_suspend_wait",
        None,
        "with VM_RUN inside the suspend wait when destroy came",
        Expect::Pass,
        |counts: &'static Counts| {
            move || {
                let vm = two_vcpu_vm(Box::new(PauseGuest), 0, false);
                vm.suspend(2).unwrap();
                let vcpu1 = {
                    let vm = vm.share();
                    thread::spawn(move || {
                        if let Ok(lock) = vm.lock_one(1) {
                            if vm.run(&lock).is_err() && vm.cpuset(vmm_rs::vm::CpuSetKind::Suspended).contains(1) {
                                counts.interesting.fetch_add(1, SeqCst);
                            }
                            drop(lock);
                        }
                        vm.release();
                    })
                };
                vm.destroy();
                vcpu1.join().unwrap();
                vm.release();
            }
        },
    );
}

/// A VM_SUSPEND racing the activation of a vCPU that then enters RUNNING
/// reaches it: the suspend's notification kicks it, or the vCPU sees the
/// suspend when it checks after entering RUNNING (as the run loop does).
/// The suspend reads the active set under its mutex; with the lock-free
/// copy (a release store, an acquire load) both could miss.
#[test]
fn a_suspend_racing_an_activation_reaches_the_vcpu() {
    check(
        "a_suspend_racing_an_activation_reaches_the_vcpu",
        None,
        "with the vCPU kicked by the suspend",
        Expect::Pass,
        |counts: &'static Counts| {
            move || {
                let vm = Shared::new(Vm::new("loom", 2, Box::new(PauseGuest)).unwrap());
                vm.activate_cpu(0).unwrap();
                let suspender = {
                    let vm = vm.share();
                    thread::spawn(move || {
                        vm.suspend(2).unwrap();
                        vm.release();
                    })
                };
                let lock = vm.lock_one(1).unwrap();
                vm.activate_cpu(1).unwrap();
                let vcpu = vm.vcpu(1).unwrap();
                vcpu.set_state(VcpuState::Running, false).unwrap();
                let saw = vm.suspended_how().is_some();
                // Still RUNNING (in the guest) when the suspend is done.
                suspender.join().unwrap();
                let kicked = vcpu.kicked();
                assert!(saw || kicked, "the suspend missed vCPU 1");
                if kicked && !saw {
                    counts.interesting.fetch_add(1, SeqCst);
                }
                vcpu.set_state(VcpuState::Frozen, false).unwrap();
                drop(lock);
                vm.release();
            }
        },
    );
}
