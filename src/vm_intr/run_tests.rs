//! The run loop's interrupt work: staged TMR applied on entry to RUNNING
//! before anything is injected, injection through the backend, MMIO exits
//! handled in the library, HLT sleeping until an interrupt or the timer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex as StdMutex};
use std::thread;

use super::tests::{lapic_read, lapic_write, program_8259, program_rte};
use super::*;
use crate::backend::{Backend, GuestExit};
use crate::exit::{ExitKind, MmioAccess, SuspendHow};
use crate::test_util::with_watchdog;
use crate::vcpu::{Vcpu, VcpuState};
use crate::vlapic::regs::*;
use crate::vlapic::VecBitmap;

/// A guest that plays back exits and records what it saw at each entry.
#[derive(Debug, Default)]
struct Script {
    exits: StdMutex<VecDeque<GuestExit>>,
    /// Whether the guest takes interrupts offered to it.
    accepts: bool,
    /// Vectors injected, 2 standing for an NMI.
    injected: StdMutex<Vec<u8>>,
    /// (IRR, ISR) as the guest saw them when each vector was injected.
    at_inject: StdMutex<Vec<(VecBitmap, VecBitmap)>>,
    /// (TMR, IRR) at each guest entry.
    at_entry: StdMutex<Vec<(VecBitmap, VecBitmap)>>,
    mmio_reads: StdMutex<Vec<u64>>,
    /// Another thread's lock request lands while the guest runs (set once).
    reqidle_during_run: std::sync::atomic::AtomicBool,
    /// An NMI lands while the guest runs (set once).
    nmi_during_run: std::sync::atomic::AtomicBool,
    /// Something another thread does to the VM lands while the guest runs
    /// (taken once).
    vm_during_run: StdMutex<Option<VmLanding>>,
    /// The guest's interrupt handler: the exits it makes for every vector
    /// it takes, before its next scripted exit (an EOI, and whatever
    /// re-arms the device), so a timer tick taken at the entry before a
    /// HLT is done with, not left in service (or its device's flag up)
    /// to block the HLT's wake-up.
    handler: Vec<GuestExit>,
    /// The handlers' exits still to make, for the vectors taken.
    handler_exits: StdMutex<VecDeque<GuestExit>>,
}

impl Script {
    /// A guest that plays back `exits`, taking interrupts if `accepts`.
    fn playing(exits: impl IntoIterator<Item = GuestExit>, accepts: bool) -> Script {
        Script { exits: StdMutex::new(exits.into_iter().collect()), accepts, ..Script::default() }
    }

    /// The same guest with a handler that EOIs each vector it takes.
    fn handling_eois(self) -> Script {
        self.handling_with([mmio(LAPIC_BASE + u64::from(off::EOI), true, 0)])
    }

    /// The same guest with a handler that makes `exits` for each vector
    /// it takes.
    fn handling_with(self, exits: impl IntoIterator<Item = GuestExit>) -> Script {
        Script { handler: exits.into_iter().collect(), ..self }
    }
}

/// The VM (held weakly: it owns the script) and what lands on it.
type VmLanding = (std::sync::Weak<Vm>, fn(&Vm));

#[derive(Debug)]
struct Guest(Arc<Script>);

impl Backend for Guest {
    fn run(&self, vcpu: &Vcpu, _ram: &dyn crate::backend::GuestRam, rip: u64) -> (GuestExit, u64, u32) {
        self.0.at_entry.lock().unwrap().push((vcpu.vlapic.tmr(), vcpu.vlapic.irr()));
        if self.0.reqidle_during_run.swap(false, std::sync::atomic::Ordering::SeqCst) {
            vcpu.lock().reqidle = true;
        }
        if self.0.nmi_during_run.swap(false, std::sync::atomic::Ordering::SeqCst) {
            vcpu.vlapic.inject_nmi();
        }
        let landing = self.0.vm_during_run.lock().unwrap().take();
        if let Some((vm, f)) = landing {
            f(&vm.upgrade().expect("the test holds the VM"));
        }
        if let Some(e) = self.0.handler_exits.lock().unwrap().pop_front() {
            return (e, rip, 3);
        }
        let e = self.0.exits.lock().unwrap().pop_front().unwrap_or(GuestExit::Bogus);
        (e, rip, 3)
    }
    fn can_inject(&self, _vcpu: &Vcpu) -> bool {
        self.0.accepts
    }
    fn inject(&self, vcpu: &Vcpu, _ram: &dyn crate::backend::GuestRam, vector: u8) {
        self.0.injected.lock().unwrap().push(vector);
        self.0.handler_exits.lock().unwrap().extend(self.0.handler.iter().copied());
        self.0.at_inject.lock().unwrap().push((vcpu.vlapic.irr(), vcpu.vlapic.isr()));
    }
    fn inject_nmi(&self, _vcpu: &Vcpu, _ram: &dyn crate::backend::GuestRam) {
        self.0.injected.lock().unwrap().push(2);
    }
    fn inject_event(&self, _vcpu: &Vcpu, _ram: &dyn crate::backend::GuestRam, info: u64) {
        self.0.injected.lock().unwrap().push(info as u8);
    }
    fn emulated_read_result(&self, _vcpu: &Vcpu, value: u64) {
        self.0.mmio_reads.lock().unwrap().push(value);
    }
}

fn vm_with(script: Script, n: usize) -> (Arc<Vm>, Arc<Script>) {
    let s = Arc::new(script);
    let vm = Vm::new("t", n, Box::new(Guest(s.clone()))).unwrap();
    for i in 0..n {
        vm.activate_cpu(i).unwrap();
        lapic_write(&vm, i, off::SVR, SVR_ENABLE | 0xFF);
    }
    (Arc::new(vm), s)
}

/// `vm_with` for `n` vCPUs whose guests halt once (with `intr_enabled`)
/// and take interrupts if `accepts`.
fn halting_once(n: usize, intr_enabled: bool, accepts: bool) -> (Arc<Vm>, Arc<Script>) {
    vm_with(Script::playing([GuestExit::Hlt { intr_enabled }], accepts), n)
}

fn run_once(vm: &Vm, id: usize) -> ExitKind {
    let l = vm.lock_one(id).unwrap();
    vm.run(&l).unwrap().kind
}

/// Runs vCPU `id` once on another thread and returns when its guest sleeps
/// in HLT (the caller's watchdog catches a vCPU that never does).
fn run_until_sleeping(vm: &Arc<Vm>, id: usize) -> thread::JoinHandle<ExitKind> {
    let vm2 = vm.clone();
    let runner = thread::spawn(move || run_once(&vm2, id));
    while vm.vcpu(id).unwrap().state() != VcpuState::Sleeping {
        thread::yield_now();
    }
    runner
}

fn mmio(gpa: u64, write: bool, value: u64) -> GuestExit {
    GuestExit::Mmio(MmioAccess { gpa, size: 4, write, value })
}

#[test]
fn staged_tmr_is_applied_on_entry_before_the_guest_runs() {
    let (vm, s) = vm_with(Script::default(), 2);
    // vCPU 1 programs a level entry aimed at vCPU 0.
    program_rte(&vm, 1, 3, 0x8000 | 0x44, 0);
    let l0 = &vm.vcpu(0).unwrap().vlapic;
    assert!(!l0.tmr().test(0x44) && l0.staged_tmr().0.test(0x44));
    assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
    assert!(s.at_entry.lock().unwrap()[0].0.test(0x44));
}

#[test]
fn a_staged_change_for_a_pending_vector_waits_for_its_eoi() {
    let (vm, s) = vm_with(Script::default(), 2);
    vm.lapic_irq(0, 0x44).unwrap(); // edge, pending; the guest refuses it
    program_rte(&vm, 1, 3, 0x8000 | 0x44, 0);
    run_once(&vm, 0);
    let (tmr, irr) = s.at_entry.lock().unwrap()[0];
    assert!(irr.test(0x44) && !tmr.test(0x44), "acceptance-time bit stands");
    let l0 = &vm.vcpu(0).unwrap().vlapic;
    assert!(l0.staged_tmr().0.test(0x44), "still staged");
    l0.intr_accepted(0x44);
    assert_eq!(l0.eoi(), None, "EOIed as the edge interrupt it was");
    run_once(&vm, 0);
    assert!(s.at_entry.lock().unwrap()[1].0.test(0x44));
}

#[test]
fn the_highest_deliverable_vector_is_injected_when_the_guest_takes_it() {
    let (vm, s) = vm_with(Script { accepts: true, ..Default::default() }, 1);
    vm.lapic_irq(0, 0x45).unwrap();
    vm.lapic_irq(0, 0x91).unwrap();
    run_once(&vm, 0);
    assert_eq!(*s.injected.lock().unwrap(), vec![0x91]);
    let l = &vm.vcpu(0).unwrap().vlapic;
    assert!(l.isr().test(0x91) && !l.irr().test(0x91) && l.irr().test(0x45));
    // 0x45 is below the in-service class: not offered.
    run_once(&vm, 0);
    assert_eq!(s.injected.lock().unwrap().len(), 1);

    let (vm, s) = vm_with(Script::default(), 1);
    vm.lapic_irq(0, 0x45).unwrap();
    run_once(&vm, 0);
    assert!(s.injected.lock().unwrap().is_empty());
    assert!(vm.vcpu(0).unwrap().vlapic.irr().test(0x45), "refused: stays pending");
}

/// VM_CAP_MASK_HWINTR (a debugger stepping the guest) holds back every
/// event, the queued exception and the NMI too; without it they come one
/// per entry in their order.
#[test]
fn mask_hwintr_holds_every_event_back() {
    let (vm, s) = vm_with(Script { accepts: true, ..Default::default() }, 1);
    let cap = |on| vm.vcpu(0).unwrap().regs.lock().set_cap(crate::regs::CAP_MASK_HWINTR, on).unwrap();
    cap(1);
    vm.lapic_irq(0, 0x45).unwrap();
    vm.inject_nmi(0).unwrap();
    vm.vcpu(0).unwrap().regs.lock().inject_exception(13, Some(0), false).unwrap();
    assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
    assert!(s.injected.lock().unwrap().is_empty());
    cap(0);
    for _ in 0..3 {
        run_once(&vm, 0);
    }
    assert_eq!(*s.injected.lock().unwrap(), [13, 2, 0x45]);
}

/// Two refused MSR accesses while VM_CAP_MASK_HWINTR holds the first #GP
/// back: VM_RUN goes on, and the guest takes one #GP once unmasked.
#[test]
fn a_fault_while_one_is_held_back_keeps_the_first() {
    let exits = [GuestExit::Rdmsr { msr: 0x802 }, GuestExit::Wrmsr { msr: 0x808, value: 0 }];
    let (vm, s) = vm_with(Script::playing(exits, true), 1);
    vm.vcpu(0).unwrap().regs.lock().set_cap(crate::regs::CAP_MASK_HWINTR, 1).unwrap();
    let e = vm.run(&vm.lock_one(0).unwrap()).unwrap();
    assert_eq!(e.kind, ExitKind::Bogus);
    assert!(s.injected.lock().unwrap().is_empty());
    // The second faulting instruction (at 3) is restarted too.
    assert_eq!(vm.vcpu(0).unwrap().regs.lock().nextrip, 3);
    vm.vcpu(0).unwrap().regs.lock().set_cap(crate::regs::CAP_MASK_HWINTR, 0).unwrap();
    assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
    assert_eq!(*s.injected.lock().unwrap(), [13]);
}

/// The guest sees a vector only once the APIC has moved it to ISR: a
/// device that reacts to the guest's handling by raising the same vector
/// again must find IRR clear, or the two interrupts merge into one (the
/// lost edge interrupt the stress test found).
#[test]
fn a_vector_is_in_service_before_the_guest_sees_it() {
    let (vm, s) = vm_with(Script { accepts: true, ..Default::default() }, 1);
    vm.lapic_irq(0, 0x70).unwrap();
    run_once(&vm, 0);
    let (irr, isr) = s.at_inject.lock().unwrap()[0];
    assert!(!irr.test(0x70) && isr.test(0x70), "IRR {irr:?} ISR {isr:?} at injection");
    // The re-raise the guest's reaction provokes is a second interrupt.
    vm.lapic_irq(0, 0x70).unwrap();
    let l = &vm.vcpu(0).unwrap().vlapic;
    assert!(l.irr().test(0x70) && l.isr().test(0x70));
}

#[test]
fn apic_mmio_exits_are_handled_inside_the_run_loop() {
    let exits = [
        mmio(LAPIC_BASE + u64::from(off::TPR), true, 0x20),
        mmio(LAPIC_BASE + u64::from(off::TPR), false, 0),
        mmio(0xFEC0_0000, true, 0x01),
        mmio(0xFEC0_0010, false, 0),
        mmio(0xD000_0000, true, 7),
    ];
    let (vm, s) = vm_with(Script::playing(exits, false), 1);
    let kind = run_once(&vm, 0);
    assert_eq!(
        kind,
        ExitKind::Mmio(MmioAccess { gpa: 0xD000_0000, size: 4, write: true, value: 7 })
    );
    assert_eq!(*s.mmio_reads.lock().unwrap(), vec![0x20, 0x001F_0011]);
    assert_eq!(s.at_entry.lock().unwrap().len(), 5);
    // A bad local APIC access fails VM_RUN with EINVAL, as in FreeBSD.
    let exits =
        [GuestExit::Mmio(MmioAccess { gpa: LAPIC_BASE + 0x80, size: 2, write: true, value: 0 })];
    let (vm, _) = vm_with(Script::playing(exits, false), 1);
    let l = vm.lock_one(0).unwrap();
    assert_eq!(vm.run(&l), Err(Error::Inval));
}

#[test]
fn hlt_sleeps_until_an_interrupt_arrives() {
    with_watchdog(20, || {
        let (vm, _) = halting_once(1, true, false);
        let runner = run_until_sleeping(&vm, 0);
        vm.lapic_irq(0, 0x40).unwrap();
        assert_eq!(runner.join().unwrap(), ExitKind::Bogus);
    });
}

#[test]
fn an_nmi_wakes_a_halt_with_interrupts_off_and_is_injected_alone() {
    with_watchdog(20, || {
        // vCPU 1 stays out of HLT, so the VM does not suspend itself.
        let (vm, s) = halting_once(2, false, true);
        let runner = run_until_sleeping(&vm, 0);
        // A vector does not end a HLT with interrupts off; an NMI does.
        // The vector's notification may wake the vCPU to look (FROZEN for
        // a moment, as FreeBSD's vm_handle_hlt), but it sleeps again; one
        // that left the HLT would never be SLEEPING again here, and the
        // watchdog would fail the test.
        vm.lapic_irq(0, 0x41).unwrap();
        while vm.vcpu(0).unwrap().state() != VcpuState::Sleeping {
            thread::yield_now();
        }
        assert!(!runner.is_finished());
        vm.inject_nmi(0).unwrap();
        assert_eq!(runner.join().unwrap(), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), [2], "the NMI alone on its entry");
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), [2, 0x41], "the vector on the next");
        assert_eq!(vm.suspended_how(), None);
    });
}

#[test]
fn an_extint_wakes_a_halt_and_injects_the_8259_vector_first() {
    with_watchdog(20, || {
        let (vm, s) = halting_once(1, true, true);
        program_8259(&vm, 0x20, 0x28);
        lapic_write(&vm, 0, off::LVT_LINT0, 0x700); // virtual wire
        let runner = run_until_sleeping(&vm, 0);
        vm.isa_pulse_irq(11, -1).unwrap();
        assert_eq!(runner.join().unwrap(), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), [0x2b], "slave pin 3");
        assert_eq!((vm.vatpic().chip(0).service, vm.vatpic().chip(1).service), (1 << 2, 1 << 3));
        // An ExtINT goes before a pending APIC vector; one with nothing
        // requested brings the spurious vector and puts nothing in service.
        vm.lapic_irq(0, 0x40).unwrap();
        vm.lapic_local_irq(0, lvt::LINT0 as i32).unwrap();
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), [0x2b, 0x27, 0x40]);
        assert_eq!(vm.vatpic().chip(0).service, 1 << 2);
        let stats = vm.vcpu_stats(0, 0, 64).unwrap();
        assert_eq!(stats[crate::stats::Stat::ExtInts as usize], 2);
    });
}

/// With interrupts disabled an ExtINT waits: the 8259 is not acknowledged
/// and HLT is not ended by it (every vCPU halted so suspends the VM).
#[test]
fn an_extint_waits_while_interrupts_are_disabled() {
    with_watchdog(20, || {
        let exits = [port(0x80, 1, false, 0), GuestExit::Hlt { intr_enabled: false }];
        let (vm, s) = vm_with(Script::playing(exits, false), 1);
        program_8259(&vm, 0x20, 0x28);
        lapic_write(&vm, 0, off::SVR, 0xFF); // LINT0 is the INTR pin
        vm.isa_pulse_irq(3, -1).unwrap();
        assert!(matches!(run_once(&vm, 0), ExitKind::Inout { port: 0x80, .. }));
        assert!(vm.vcpu(0).unwrap().vlapic.extint_pending());
        assert_eq!((vm.vatpic().chip(0).request, vm.vatpic().chip(0).service), (1 << 3, 0));
        assert_eq!(run_once(&vm, 0), ExitKind::Suspended(SuspendHow::Halt));
        assert!(s.injected.lock().unwrap().is_empty());
    });
}

fn icr(value: u32) -> GuestExit {
    mmio(LAPIC_BASE + u64::from(off::ICR_LO), true, u64::from(value))
}

fn icr_hi(dest: u32) -> GuestExit {
    mmio(LAPIC_BASE + u64::from(off::ICR_HI), true, u64::from(dest << 24))
}

#[test]
fn init_then_startup_spins_up_the_ap_as_freebsd_without_ipi_exit() {
    let exits = [
        icr_hi(1),
        icr(DELMODE_STARTUP | 0x9F), // no INIT yet: ignored
        icr(DELMODE_INIT | TRIGMOD_LEVEL | LEVEL_ASSERT),
        icr(DELMODE_INIT | TRIGMOD_LEVEL), // level de-assert: ignored
        icr(DELMODE_STARTUP | 0x9F),
        icr(DELMODE_STARTUP | 0x9F), // started already: ignored
        icr_hi(0),
        icr(DELMODE_INIT | TRIGMOD_LEVEL | LEVEL_ASSERT), // to itself: ignored
        icr_hi(2),
        icr(DESTMODE_LOG | DELMODE_INIT | TRIGMOD_LEVEL | LEVEL_ASSERT), // logical: ignored
        // The shorthand is ignored: the INIT goes to the destination, 2.
        icr(DEST_ALLESELF | DELMODE_INIT | TRIGMOD_LEVEL | LEVEL_ASSERT),
    ];
    let (vm, _) = vm_with(Script::playing(exits, false), 3);
    vm.lapic_irq(1, 0x41).unwrap();
    assert_eq!(run_once(&vm, 0), ExitKind::SpinupAp { vcpu: 1, rip: 0x9F000 });
    let ap = &vm.vcpu(1).unwrap().vlapic;
    assert!(ap.irr().is_empty() && lapic_read(&vm, 1, off::SVR) == 0xFF, "INIT reset the AP");
    lapic_write(&vm, 1, off::SVR, SVR_ENABLE | 0xFF);
    assert_eq!(run_once(&vm, 0), ExitKind::Bogus, "no more starts");
    assert_eq!(vm.cpus().startup, CpuSet::single(2));
    assert_eq!(lapic_read(&vm, 2, off::SVR), 0xFF, "vCPU 2 reset");
    assert_eq!(lapic_read(&vm, 1, off::SVR), SVR_ENABLE | 0xFF, "vCPU 1 not again");
    assert_eq!(lapic_read(&vm, 0, off::SVR), SVR_ENABLE | 0xFF, "nor the sender");
}

#[test]
fn init_and_startup_leave_vm_run_with_ipi_exit() {
    let exits = [
        icr_hi(0),
        icr(DEST_ALLESELF | DELMODE_INIT | TRIGMOD_LEVEL | LEVEL_ASSERT),
        icr(DEST_ALLESELF | DELMODE_STARTUP | 0x10),
        icr(DEST_ALLESELF | DELMODE_STARTUP | 0x10), // nobody waits now
    ];
    let (vm, _) = vm_with(Script::playing(exits, false), 3);
    vm.vcpu(0).unwrap().regs.lock().set_cap(crate::regs::CAP_IPI_EXIT, 1).unwrap();
    let others = |ids: &[usize]| {
        let mut s = CpuSet::new();
        ids.iter().for_each(|i| s.insert(*i));
        s
    };
    let init = ExitKind::Ipi { mode: DELMODE_INIT, vector: 0, cpus: others(&[1, 2]) };
    assert_eq!(run_once(&vm, 0), init);
    assert_eq!(vm.cpus().startup, others(&[1, 2]));
    let startup = ExitKind::Ipi { mode: DELMODE_STARTUP, vector: 0x10, cpus: others(&[1, 2]) };
    assert_eq!(run_once(&vm, 0), startup);
    assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
    assert!(vm.cpus().startup.is_empty());
}

/// The local APIC's MSRs are emulated in the run loop: IA32_APIC_BASE in
/// either mode, the x2APIC range only in x2APIC mode (else #GP at the
/// instruction); an x2APIC ICR write sends IPIs, INIT/SIPI included.
/// Other MSRs go to userland. Both kinds are counted.
#[test]
fn apic_msrs_are_emulated_in_the_run_loop_and_others_exit() {
    use crate::stats::Stat;
    let rd = |msr| GuestExit::Rdmsr { msr };
    let wr = |msr, value| GuestExit::Wrmsr { msr, value };
    let exits = [
        rd(0x1b),
        rd(0x802), // xAPIC mode: #GP
        rd(0x3a),
        wr(0x1b, 0xFEE0_0900), // IA32_APIC_BASE unchanged: accepted
        wr(0x3a, 5),
        wr(0x1b, 0xFED0_0900), // moved: userland's call, as FreeBSD
    ];
    let (vm, s) = vm_with(Script::playing(exits, true), 3);
    let e = vm.run(&vm.lock_one(0).unwrap()).unwrap();
    assert_eq!(e.kind, ExitKind::Rdmsr { msr: 0x3a });
    assert_eq!(*s.mmio_reads.lock().unwrap(), [0xFEE0_0900], "APIC base: enabled, BSP");
    assert_eq!(*s.injected.lock().unwrap(), [13], "#GP for the x2APIC MSR");
    // Each scripted exit is 3 bytes long: the #GP restarted the RDMSR at
    // 3, so the next instruction is at 3 again, not 6.
    assert_eq!(e.rip, 3);
    assert_eq!(run_once(&vm, 0), ExitKind::Wrmsr { msr: 0x3a, value: 5 });
    assert_eq!(run_once(&vm, 0), ExitKind::Wrmsr { msr: 0x1b, value: 0xFED0_0900 });
    let st = vm.vcpu_stats(0, 0, 64).unwrap();
    assert_eq!((st[Stat::Rdmsr as usize], st[Stat::Wrmsr as usize]), (3, 3));

    // x2APIC mode: a fixed IPI to vCPU 1, then INIT and STARTUP to vCPU 2.
    let exits = [
        wr(0x830, (1 << 32) | 0x55),
        rd(0xBFF), // the x2APIC range's last MSR: no register, reads 0
        rd(0x802),
        wr(0x830, (2 << 32) | u64::from(DELMODE_INIT | TRIGMOD_LEVEL | LEVEL_ASSERT)),
        wr(0x830, (2 << 32) | u64::from(DELMODE_STARTUP | 0x9F)),
    ];
    let (vm, s) = vm_with(Script::playing(exits, true), 3);
    for id in 0..3 {
        vm.set_x2apic_state(id, 1).unwrap();
    }
    assert_eq!(run_once(&vm, 0), ExitKind::SpinupAp { vcpu: 2, rip: 0x9F000 });
    assert!(vm.vcpu(1).unwrap().vlapic.irr().test(0x55));
    assert_eq!(*s.mmio_reads.lock().unwrap(), [0, 0], "0xBFF, and the x2APIC id of vCPU 0");
    assert!(s.injected.lock().unwrap().is_empty());
}

/// FreeBSD 14 `vlapic_icrlo_write_handler` stores the ICR and then returns
/// 1 for a valid ICR whose delivery mode it has no case for (SMI, and
/// remote read): `lapic_wrmsr` fails, so `vmx_exit_process` turns the
/// x2APIC ICR WRMSR into VM_EXITCODE_WRMSR (code 0x830, wval EDX:EAX) at
/// the instruction; nothing is sent. (Lowest priority, which FreeBSD fails
/// the same way, is delivered here on purpose: see `send_ipi`.)
#[test]
fn x2apic_icr_smi_and_remote_read_go_to_userland_as_freebsd() {
    let smi = (1u64 << 32) | u64::from(DELMODE_SMI);
    let rr = (1u64 << 32) | u64::from(DELMODE_RR | 0x31);
    let exits = [GuestExit::Wrmsr { msr: 0x830, value: smi }, GuestExit::Wrmsr { msr: 0x830, value: rr }];
    let (vm, s) = vm_with(Script::playing(exits, true), 2);
    for id in 0..2 {
        vm.set_x2apic_state(id, 1).unwrap();
    }
    let e = vm.run(&vm.lock_one(0).unwrap()).unwrap();
    assert_eq!((e.kind, e.rip), (ExitKind::Wrmsr { msr: 0x830, value: smi }, 0), "SMI IPI: userland's");
    assert_eq!(vm.vcpu(0).unwrap().vlapic.read_msr(0x830, std::time::Instant::now()), Some(smi), "ICR stored first");
    let e = vm.run(&vm.lock_one(0).unwrap()).unwrap();
    assert_eq!(e.kind, ExitKind::Wrmsr { msr: 0x830, value: rr }, "remote read: userland's");
    assert!(s.injected.lock().unwrap().is_empty());
    // Outside the run loop, `lapic_wrmsr` fails as FreeBSD's does.
    assert_eq!(vm.lapic_wrmsr(0, 0x830, smi), Err(Error::Perm));
}

/// The xAPIC MMIO path of the same ICR write: FreeBSD 14's
/// `lapic_mmio_write` returns `vlapic_write`'s 1, which
/// `vmm_emulate_instruction` and `vm_handle_inst_emul` pass up, so
/// `vm_run` leaves its loop with error 1 and the VM_RUN ioctl fails with
/// errno 1, EPERM (no exit is copied out). The ICR is stored; `nextrip`
/// already moved past the instruction (`vm_handle_inst_emul` adds its
/// length before emulating), so the next VM_RUN runs on after it, while
/// RIP still reads the store. VM_SET_KERNEMU_DEV fails the same way.
#[test]
fn xapic_mmio_icr_smi_and_remote_read_fail_vm_run_with_eperm() {
    let icr_hi = mmio(LAPIC_BASE + u64::from(off::ICR_HI), true, 1 << 24);
    let icr_lo = |v: u32| mmio(LAPIC_BASE + u64::from(off::ICR_LO), true, u64::from(v));
    let exits = [
        icr_hi,
        icr_lo(DELMODE_SMI),
        icr_lo(DELMODE_RR | 0x31),
        icr_lo(DELMODE_SMI | DEST_SELF), // invalid: ignored, no error
        icr_lo(DELMODE_FIXED | 0x55),
        mmio(0xD000_0000, true, 7),
    ];
    let (vm, s) = vm_with(Script::playing(exits, true), 2);
    let l = vm.lock_one(0).unwrap();
    let rip = || l.vcpu().regs.lock().get(crate::regs::reg::RIP as i32).unwrap();
    assert_eq!(vm.run(&l).map(|e| e.kind), Err(Error::Perm), "SMI IPI");
    assert_eq!(rip(), 3, "RIP at the store (ICR_HI took 0..3)");
    assert_eq!(lapic_read(&vm, 0, off::ICR_LO), DELMODE_SMI, "ICR stored first");
    assert_eq!(vm.run(&l).map(|e| e.kind), Err(Error::Perm), "remote read, the next instruction");
    assert_eq!(rip(), 6);
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (ExitKind::Mmio(MmioAccess { gpa: 0xD000_0000, size: 4, write: true, value: 7 }), 15));
    assert!(vm.vcpu(1).unwrap().vlapic.irr().test(0x55), "the fixed IPI after them was sent");
    assert!(s.injected.lock().unwrap().is_empty(), "nothing reached vCPU 0");
    // Failed VM_RUNs return to userland all the same (VM_STATS).
    let userspace = crate::stats::Stat::Userspace as usize;
    assert_eq!(vm.vcpu_stats(0, 0, 64).unwrap()[userspace], 3);
    drop(l);
    // VM_SET_KERNEMU_DEV's path.
    assert_eq!(vm.mmio_write(0, LAPIC_BASE + u64::from(off::ICR_LO), 4, u64::from(DELMODE_SMI)), Err(Error::Perm));
}

/// FreeBSD 14 `vmx_vminit` / `vmx_msr_guest_init` open the MSR bitmap for
/// FS/GS base, SYSENTER_CS/ESP/EIP, EFER, STAR/LSTAR/CSTAR/SF_MASK and
/// kernel-GS base (read and write) and for reads of the TSC and TSC_AUX:
/// the guest's access is no VM exit there, so neither VMEXIT_COUNT nor
/// VMEXIT_RDMSR / VMEXIT_WRMSR counts it. A TSC write and the MSRs
/// `vmx_rdmsr` / `vmx_wrmsr` or userland answer do exit and are counted.
#[test]
fn msrs_vmx_passes_through_are_no_exits_in_the_statistics() {
    use crate::regs::msr::{MSR_EFER, MSR_FSBASE, MSR_PAT, MSR_TSC, MSR_TSC_AUX};
    use crate::stats::Stat;
    let rd = |msr| GuestExit::Rdmsr { msr };
    let wr = |msr, value| GuestExit::Wrmsr { msr, value };
    let exits = [
        rd(MSR_EFER),
        wr(MSR_FSBASE, 0x1000),
        rd(MSR_TSC),
        rd(MSR_TSC_AUX),
        wr(MSR_EFER, 1 << 2), // #GP, raised by the processor: still no exit
        wr(MSR_TSC, 5),       // exits (vmx_wrmsr)
        rd(MSR_PAT),          // exits (vmx_rdmsr)
        rd(0x3a),             // exits, to userland
    ];
    let (vm, _) = vm_with(Script::playing(exits, true), 1);
    assert_eq!(run_once(&vm, 0), ExitKind::Rdmsr { msr: 0x3a });
    let st = vm.vcpu_stats(0, 0, 64).unwrap();
    assert_eq!(
        (st[Stat::VmExits as usize], st[Stat::Rdmsr as usize], st[Stat::Wrmsr as usize]),
        (3, 2, 1),
        "only the TSC write, the PAT read and the userland read exit"
    );
}

/// RDMSR and WRMSR are privileged: at CPL > 0 (SS.DPL under VMX) the
/// processor raises #GP(0) before any VM exit (SDM 26.1.1), so on FreeBSD
/// neither `vmx_rdmsr` / `lapic_rdmsr` nor userland (VM_EXITCODE_RDMSR /
/// WRMSR) sees the access and no exit is counted. CPL 1 as CPL 3: a ring-1
/// kernel is no ring 0.
#[test]
fn msr_access_above_cpl0_is_gp_without_an_exit() {
    use crate::regs::msr::MSR_EFER;
    use crate::regs::{reg, SegDesc};
    use crate::stats::Stat;
    for dpl in [1u32, 3] {
        let exits = [GuestExit::Rdmsr { msr: 0x3a }, GuestExit::Wrmsr { msr: 0x3a, value: 1 }, GuestExit::Rdmsr { msr: MSR_EFER }];
        let (vm, s) = vm_with(Script::playing(exits, true), 1);
        // Protected mode, CPL `dpl`.
        {
            let v = vm.vcpu(0).unwrap();
            let mut r = v.regs.lock();
            r.set(reg::CR0 as i32, 1).unwrap();
            r.set_seg(reg::SS as i32, SegDesc { base: 0, limit: 0xffff_ffff, access: 0xc093 | dpl << 5 }).unwrap();
            r.set_seg(reg::CS as i32, SegDesc { base: 0, limit: 0xffff_ffff, access: 0xc09b | dpl << 5 }).unwrap();
        }
        let e = run_once(&vm, 0);
        assert_eq!(e, ExitKind::Bogus, "no RDMSR / WRMSR exit at CPL {dpl}");
        assert_eq!(*s.injected.lock().unwrap(), [13, 13, 13], "#GP for each at CPL {dpl}");
        assert!(s.mmio_reads.lock().unwrap().is_empty(), "EFER not read at CPL {dpl}");
        let st = vm.vcpu_stats(0, 0, 64).unwrap();
        assert_eq!((st[Stat::Rdmsr as usize], st[Stat::Wrmsr as usize]), (0, 0));
    }
}

/// The MSRs VMX keeps or emulates in the kernel never reach userland:
/// EFER reads the register file, PAT is kept (an invalid one is #GP),
/// and only a MISC_ENABLE change FreeBSD punts goes out.
#[test]
fn vmx_kernel_msrs_stay_inside_the_run_loop() {
    use crate::regs::msr::{MISC_ENABLE, MSR_EFER, MSR_MISC_ENABLE, MSR_PAT};
    let rd = |msr| GuestExit::Rdmsr { msr };
    let wr = |msr, value| GuestExit::Wrmsr { msr, value };
    let exits = [
        rd(MSR_EFER),
        wr(MSR_PAT, 0x0606_0606_0606_0606),
        rd(MSR_PAT),
        wr(MSR_PAT, 0x0202), // type 2: #GP
        wr(MSR_MISC_ENABLE, MISC_ENABLE | 1),
    ];
    let (vm, s) = vm_with(Script::playing(exits, true), 1);
    vm.vcpu(0).unwrap().regs.lock().set(crate::regs::reg::EFER as i32, 0x500).unwrap();
    assert_eq!(run_once(&vm, 0), ExitKind::Wrmsr { msr: MSR_MISC_ENABLE, value: MISC_ENABLE | 1 });
    assert_eq!(*s.mmio_reads.lock().unwrap(), [0x500, 0x0606_0606_0606_0606]);
    assert_eq!(*s.injected.lock().unwrap(), [13]);
}

/// A lock request or an NMI that lands between the guest's `cli; hlt` and
/// the HLT's handling ends the HLT before the vCPU counts as halted
/// (FreeBSD's `vm_handle_hlt` looks for both first): had it counted, this
/// one vCPU would suspend the VM (VM_SUSPEND_HALT).
#[test]
fn a_reqidle_or_nmi_landing_before_the_hlt_is_handled_does_not_halt_the_vm() {
    use std::sync::atomic::Ordering::SeqCst;
    for nmi in [false, true] {
        let script = Script::playing([GuestExit::Hlt { intr_enabled: false }], false);
        let landing = if nmi { &script.nmi_during_run } else { &script.reqidle_during_run };
        landing.store(true, SeqCst);
        let (vm, s) = vm_with(script, 1);
        let (exit, injected) = if nmi { (ExitKind::Bogus, vec![2]) } else { (ExitKind::ReqIdle, vec![]) };
        assert_eq!(run_once(&vm, 0), exit, "nmi: {nmi}");
        assert_eq!(vm.suspended_how(), None, "nmi: {nmi}");
        assert_eq!(*s.injected.lock().unwrap(), injected, "an NMI is taken after the HLT");
    }
}

/// A debug hold (VM_SUSPEND_CPU) landing between the guest's `cli; hlt`
/// and the HLT's handling ends the HLT before the vCPU counts as halted,
/// as FreeBSD's `vm_handle_hlt` looks at `vcpu_debugged` first: this one
/// vCPU returns DEBUG rather than suspend the VM (VM_SUSPEND_HALT).
#[test]
fn a_debug_hold_landing_before_the_hlt_is_handled_does_not_halt_the_vm() {
    with_watchdog(20, || {
        let (vm, s) = halting_once(1, false, false);
        *s.vm_during_run.lock().unwrap() = Some((Arc::downgrade(&vm), |vm| vm.suspend_cpu(Some(0)).unwrap()));
        assert_eq!(run_once(&vm, 0), ExitKind::Debug);
        assert_eq!(vm.suspended_how(), None);
    });
}

/// A vCPU whose HLT with interrupts off has ended no longer counts as
/// halted: another vCPU's `cli; hlt` later leaves the VM running (FreeBSD
/// `vm_handle_hlt` clears its bit in `halted_cpus` on the way out).
#[test]
fn a_halt_that_ended_no_longer_counts_toward_suspending_the_vm() {
    with_watchdog(20, || {
        // The vCPUs share the script: vCPU 0 takes the first HLT and the
        // exit after it, vCPU 1 the second HLT.
        let cli_hlt = GuestExit::Hlt { intr_enabled: false };
        let (vm, _) = vm_with(Script::playing([cli_hlt, GuestExit::Bogus, cli_hlt], true), 2);
        let runner = run_until_sleeping(&vm, 0);
        vm.inject_nmi(0).unwrap();
        assert_eq!(runner.join().unwrap(), ExitKind::Bogus);
        // vCPU 1 halts alone: it sleeps, it does not suspend the VM.
        let vm2 = vm.clone();
        let runner = thread::spawn(move || run_once(&vm2, 1));
        while vm.vcpu(1).unwrap().state() != VcpuState::Sleeping && !runner.is_finished() {
            thread::yield_now();
        }
        assert_eq!(vm.suspended_how(), None, "vCPU 0 is not halted any more");
        vm.inject_nmi(1).unwrap();
        assert_eq!(runner.join().unwrap(), ExitKind::Bogus);
    });
}

#[test]
fn a_debugged_vcpu_still_runs_a_rendezvous_first() {
    with_watchdog(20, || {
        let (vm, _) = vm_with(Script::default(), 2);
        vm.suspend_cpu(Some(1)).unwrap();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran2 = ran.clone();
        let vm2 = vm.clone();
        // vCPU 1 must run its callback in VM_RUN, debug set or not.
        let initiator = thread::spawn(move || {
            let f = crate::rendezvous::callback(move |_, id| {
                if id == 1 {
                    ran2.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
            vm2.smp_rendezvous(None, CpuSet::single(1), f).unwrap();
        });
        while !vm.rendezvous_pending() {
            thread::yield_now();
        }
        assert_eq!(run_once(&vm, 1), ExitKind::Debug);
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst), "the callback ran before DEBUG");
        vm.resume_cpu(Some(1)).unwrap();
        initiator.join().unwrap();
    });
}

/// An exit for a host interrupt (the vCPU kicked out of the guest) goes
/// back into the guest without returning, counted as FreeBSD counts
/// EXIT_REASON_EXT_INTR (VMEXIT_EXTINT) besides VMEXIT_COUNT.
#[test]
fn a_kicked_guest_is_reentered_and_counted_as_an_external_interrupt_exit() {
    use crate::stats::Stat;
    let (vm, _) = vm_with(Script::playing([GuestExit::Kicked], false), 1);
    assert_eq!(run_once(&vm, 0), ExitKind::Bogus, "the scripted exit after the kick");
    let stats = &vm.vcpu(0).unwrap().stats;
    assert_eq!((stats.get(Stat::ExtIntExits), stats.get(Stat::VmExits)), (1, 2));
}

/// A lock request and a rendezvous that stop a vCPU before its entry are
/// counted as FreeBSD's `vm_exit_reqidle` and `vm_exit_rendezvous` count
/// them (VMEXIT_REQIDLE, VMEXIT_RENDEZVOUS).
#[test]
fn reqidle_and_rendezvous_stops_are_counted() {
    use crate::stats::Stat;
    use std::sync::atomic::Ordering::SeqCst;
    with_watchdog(20, || {
        let (vm, s) = halting_once(2, false, false);
        s.reqidle_during_run.store(true, SeqCst);
        assert_eq!(run_once(&vm, 0), ExitKind::ReqIdle);
        assert_eq!(vm.vcpu(0).unwrap().stats.get(Stat::ReqIdle), 1);
        let vm2 = vm.clone();
        let initiator = thread::spawn(move || {
            vm2.smp_rendezvous(None, CpuSet::single(1), crate::rendezvous::callback(|_, _| {})).unwrap();
        });
        while !vm.rendezvous_pending() {
            thread::yield_now();
        }
        assert_eq!(run_once(&vm, 1), ExitKind::Bogus, "the guest runs after the rendezvous");
        initiator.join().unwrap();
        assert_eq!(vm.vcpu(1).unwrap().stats.get(Stat::Rendezvous), 1);
    });
}

#[test]
fn queued_exceptions_are_injected_on_entry_and_a_fault_on_a_double_fault_shuts_down() {
    let (vm, s) = vm_with(Script { accepts: true, ..Default::default() }, 1);
    let regs = || vm.vcpu(0).unwrap().regs.lock();
    regs().inject_exception(13, Some(0), false).unwrap();
    vm.lapic_irq(0, 0x41).unwrap();
    assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
    assert_eq!(*s.injected.lock().unwrap(), [13], "the exception alone on its entry");
    assert_eq!(regs().intinfo(), (0, 0), "taken");
    regs().inject_exception(6, None, false).unwrap(); // not EBUSY any more
    assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
    assert_eq!(*s.injected.lock().unwrap(), [13, 6]);
    // An exception while a double fault is being delivered: shutdown.
    regs().set_exitintinfo(0x8000_0308).unwrap(); // valid #DF
    regs().inject_exception(13, Some(0), false).unwrap();
    assert_eq!(run_once(&vm, 0), ExitKind::Suspended(SuspendHow::Triplefault));
    // Acknowledged: another VM_RUN is EINVAL (FreeBSD's vm_run), until
    // VM_REINIT.
    let l = vm.lock_one(0).unwrap();
    assert_eq!(vm.run(&l).map(|e| e.kind), Err(Error::Inval));
}

#[test]
fn hlt_sleeps_no_later_than_the_apic_timer() {
    with_watchdog(20, || {
        let (vm, _) = halting_once(1, true, false);
        lapic_write(&vm, 0, off::LVT_TIMER, 0xEF);
        lapic_write(&vm, 0, off::TIMER_DCR, 0xB);
        lapic_write(&vm, 0, off::TIMER_ICR, 1 << 17); // about 1 ms
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        assert!(vm.vcpu(0).unwrap().vlapic.irr().test(0xEF));
    });
}

/// The "vCPU idle ticks" statistic of a vCPU that halted for at least
/// 5 ms (a HLT exit if `halt_exit`, else the guest's HLT state) before
/// the interrupt that ends the HLT.
fn idle_ms_after_a_halt_of_5ms(halt_exit: bool) -> u64 {
    use crate::stats::Stat;
    let (vm, _) = halting_once(1, true, true);
    if !halt_exit {
        halt_exit_and_if(&vm, 0, 0, true);
    }
    let runner = run_until_sleeping(&vm, 0);
    // The time measured: asleep for at least 5 ms.
    let asleep = std::time::Instant::now();
    while asleep.elapsed() < std::time::Duration::from_millis(5) {
        thread::yield_now();
    }
    vm.lapic_irq(0, 0x41).unwrap();
    assert_eq!(runner.join().unwrap(), ExitKind::Bogus);
    vm.vcpu_stats(0, 0, 64).unwrap()[Stat::IdleTicks as usize]
}

/// The time a HLT exit spends asleep is the "vCPU idle ticks" statistic
/// (FreeBSD `vm_handle_hlt`, reported in milliseconds here).
#[test]
fn a_halt_exit_counts_its_sleep_as_idle_time() {
    with_watchdog(20, || {
        let idle_ms = idle_ms_after_a_halt_of_5ms(true);
        assert!(idle_ms >= 1, "{idle_ms} ms idle");
    });
}

/// A guest sitting in its HLT state (no VM_CAP_HALT_EXIT) is no idle
/// time: FreeBSD counts VCPU_IDLE_TICKS in `vm_handle_hlt` only, after a
/// HLT exit, and that HLT is no exit there.
#[test]
fn an_in_guest_hlt_is_not_counted_as_idle_time() {
    with_watchdog(20, || assert_eq!(idle_ms_after_a_halt_of_5ms(false), 0));
}

#[test]
fn hlt_also_ends_for_reqidle_and_suspend() {
    with_watchdog(20, || {
        let (vm, _) = halting_once(1, true, false);
        let runner = run_until_sleeping(&vm, 0);
        vm.suspend(2).unwrap();
        assert!(matches!(runner.join().unwrap(), ExitKind::Suspended(_)));
    });
}

/// A vCPU waiting in VM_RUN for the others to acknowledge a suspend gives
/// way to an ioctl that wants it: a VM_REINIT while vCPU 0 has not
/// acknowledged froze vCPU 0, then waited for vCPU 1, which waited for
/// vCPU 0, for good. Now vCPU 1 withdraws and returns REQIDLE, the REINIT
/// finds the suspend unfinished (EBUSY), and once vCPU 0 acknowledges,
/// both leave with SUSPENDED and the REINIT succeeds.
#[test]
fn a_vcpu_waiting_out_a_suspend_gives_way_to_an_ioctl() {
    with_watchdog(20, || {
        let (vm, _) = halting_once(2, true, false);
        vm.suspend(2).unwrap();
        let runner = run_until_sleeping(&vm, 1);
        assert!(vm.cpus().suspended.contains(1));
        {
            let all = vm.lock_all().unwrap();
            assert_eq!(vm.reinit(&all), Err(Error::Busy));
        }
        assert_eq!(runner.join().unwrap(), ExitKind::ReqIdle);
        assert!(!vm.cpus().suspended.contains(1), "withdrawn: VM_RUN takes it again");
        // A lock-one ioctl on the waiting vCPU gets it too.
        let runner = run_until_sleeping(&vm, 1);
        drop(vm.lock_one(1).unwrap());
        assert_eq!(runner.join().unwrap(), ExitKind::ReqIdle);

        let runner = run_until_sleeping(&vm, 1);
        assert!(matches!(run_once(&vm, 0), ExitKind::Suspended(_)));
        assert!(matches!(runner.join().unwrap(), ExitKind::Suspended(_)));
        let all = vm.lock_all().unwrap();
        vm.reinit(&all).unwrap();
    });
}

/// The entry checks' order: a suspend comes before the debugger's hold
/// (FreeBSD's `vmx_run`), so a vCPU held for a debugger still leaves with
/// SUSPENDED and a powered-off VM does not wait for the debugger.
/// A vCPU waiting out a suspend for the others still runs a rendezvous
/// callback aimed at it, as FreeBSD's `vm_handle_suspend` calls
/// `vm_handle_rendezvous` while it waits: the initiator is not left
/// waiting, and the suspend completes afterwards.
#[test]
fn a_vcpu_waiting_out_a_suspend_runs_a_rendezvous_meanwhile() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    with_watchdog(20, || {
        let (vm, _) = vm_with(Script::default(), 2);
        vm.suspend(SuspendHow::Poweroff as i32).unwrap();
        let runner = run_until_sleeping(&vm, 0);
        let ran = Arc::new(AtomicBool::new(false));
        let ran2 = ran.clone();
        let f = crate::rendezvous::callback(move |_, id| ran2.store(id == 0, SeqCst));
        vm.smp_rendezvous(None, CpuSet::single(0), f).unwrap();
        assert!(ran.load(SeqCst), "vCPU 0 ran the callback");
        assert_eq!(run_once(&vm, 1), ExitKind::Suspended(SuspendHow::Poweroff));
        assert_eq!(runner.join().unwrap(), ExitKind::Suspended(SuspendHow::Poweroff));
    });
}

#[test]
fn a_suspend_comes_before_the_debug_hold() {
    with_watchdog(20, || {
        let (vm, _) = vm_with(Script::default(), 1);
        vm.suspend_cpu(Some(0)).unwrap();
        assert_eq!(run_once(&vm, 0), ExitKind::Debug);
        vm.suspend(2).unwrap();
        assert!(matches!(run_once(&vm, 0), ExitKind::Suspended(_)));
    });
}

/// A lock-all that finds the VM destroyed once it has frozen every vCPU
/// fails and unfreezes them all again (the rollback).
#[test]
fn a_lock_all_overtaken_by_destroy_unfreezes_every_vcpu() {
    with_watchdog(20, || {
        let (vm, _) = vm_with(Script::default(), 2);
        // Held here, vCPU 1 keeps the lock-all waiting after it froze
        // vCPU 0 (a vCPU in VM_RUN would give way at once).
        let held = vm.lock_one(1).unwrap();
        let vm2 = vm.clone();
        let locker = thread::spawn(move || vm2.lock_all().map(|_| ()));
        while vm.vcpu(0).unwrap().state() != VcpuState::Frozen {
            thread::yield_now();
        }
        vm.destroy();
        drop(held);
        assert_eq!(locker.join().unwrap(), Err(Error::Destroyed));
        assert!(vm.vcpus().iter().all(|v| v.state() == VcpuState::Idle));
    });
}

/// Destroying the VM ends the HLT sleep of a vCPU nothing else would
/// wake, after a HLT exit and in the guest's HLT state alike: VM_RUN
/// fails with Destroyed rather than sleep on.
#[test]
fn destroy_ends_a_hlt_sleep() {
    with_watchdog(20, || {
        for halt_exit in [1, 0] {
            let (vm, _) = halting_once(1, true, false);
            halt_exit_and_if(&vm, 0, halt_exit, true);
            let vm2 = vm.clone();
            let runner = thread::spawn(move || {
                let l = vm2.lock_one(0).unwrap();
                vm2.run(&l).map(|e| e.kind)
            });
            while vm.vcpu(0).unwrap().state() != VcpuState::Sleeping {
                thread::yield_now();
            }
            vm.destroy();
            assert_eq!(runner.join().unwrap(), Err(Error::Destroyed), "halt_exit {halt_exit}");
        }
    });
}

/// Sets a vCPU's VM_CAP_HALT_EXIT and its RFLAGS.IF (which a guest
/// halted without an exit is woken by: its flag is read live).
fn halt_exit_and_if(vm: &Vm, id: usize, halt_exit: i32, intr_enabled: bool) {
    let mut r = vm.vcpu(id).unwrap().regs.lock();
    r.set_cap(crate::regs::CAP_HALT_EXIT, halt_exit).unwrap();
    let rflags = if intr_enabled { 0x202 } else { 0x2 };
    r.set(crate::regs::reg::RFLAGS as i32, rflags).unwrap();
}

/// Takes vCPU `id`, asleep in VM_RUN (`runner`), out of VM_RUN with a
/// debug exit and lets it run again: whatever HLT it was in, it is still
/// in (or not) at the next VM_RUN.
fn debug_exit(vm: &Vm, id: usize, runner: thread::JoinHandle<ExitKind>) {
    vm.suspend_cpu(Some(id)).unwrap();
    assert_eq!(runner.join().unwrap(), ExitKind::Debug);
    vm.resume_cpu(Some(id)).unwrap();
}

/// Without VM_CAP_HALT_EXIT a HLT is no exit: the guest stays in its HLT
/// activity state, across a return to userland (here a debug exit), until
/// an interrupt it accepts ends it; VMEXIT_HLT is not counted. With the
/// capability, on by default, the debug exit ends the HLT as FreeBSD's
/// `vm_handle_hlt` does, and the guest goes on with no interrupt.
#[test]
fn without_halt_exit_the_guest_stays_halted_until_an_interrupt() {
    use crate::stats::Stat;
    with_watchdog(20, || {
        for halt_exit in [1, 0] {
            let exits = [GuestExit::Hlt { intr_enabled: true }, port(0x80, 1, false, 0)];
            let (vm, s) = vm_with(Script::playing(exits, true), 1);
            assert_eq!(vm.vcpu(0).unwrap().regs.lock().get_cap(crate::regs::CAP_HALT_EXIT), Ok(1), "default");
            halt_exit_and_if(&vm, 0, halt_exit, true);
            debug_exit(&vm, 0, run_until_sleeping(&vm, 0));
            let out = if halt_exit == 1 {
                run_once(&vm, 0)
            } else {
                assert!(vm.vcpu(0).unwrap().regs.lock().halted, "still halted after the debug exit");
                let runner = run_until_sleeping(&vm, 0);
                vm.lapic_irq(0, 0x40).unwrap();
                runner.join().unwrap()
            };
            assert!(matches!(out, ExitKind::Inout { port: 0x80, .. }), "halt_exit {halt_exit}: {out:?}");
            let injected: &[u8] = if halt_exit == 1 { &[] } else { &[0x40] };
            assert_eq!(*s.injected.lock().unwrap(), injected, "halt_exit {halt_exit}");
            let st = vm.vcpu_stats(0, 0, 64).unwrap();
            let want = if halt_exit == 1 { (1, 2) } else { (0, 1) };
            assert_eq!((st[Stat::Hlt as usize], st[Stat::VmExits as usize]), want, "halt_exit {halt_exit}");
        }
    });
}

/// Halted without an exit and with interrupts off, a lone vCPU does not
/// suspend the VM (nothing sees the HLT: with the exit it would be
/// VM_SUSPEND_HALT); a vector leaves it halted and an NMI ends the HLT.
#[test]
fn without_halt_exit_a_halt_with_interrupts_off_ends_only_for_an_nmi() {
    with_watchdog(20, || {
        let (vm, s) = halting_once(1, false, true);
        halt_exit_and_if(&vm, 0, 0, false);
        let runner = run_until_sleeping(&vm, 0);
        assert_eq!(vm.suspended_how(), None);
        vm.lapic_irq(0, 0x41).unwrap();
        vm.inject_nmi(0).unwrap();
        assert_eq!(runner.join().unwrap(), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), [2], "the NMI, not the vector");
        assert!(!vm.vcpu(0).unwrap().regs.lock().halted);
        // A vector alone ends a HLT once userland has set IF.
        let (vm, s) = halting_once(1, false, true);
        halt_exit_and_if(&vm, 0, 0, false);
        let runner = run_until_sleeping(&vm, 0);
        vm.lapic_irq(0, 0x41).unwrap();
        debug_exit(&vm, 0, runner);
        assert!(vm.vcpu(0).unwrap().regs.lock().halted, "the vector did not end the HLT");
        halt_exit_and_if(&vm, 0, 0, true);
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), [0x41]);
    });
}

/// Halted in the guest, a queued exception ends the HLT like an
/// interrupt (the entry delivers it); under VM_CAP_MASK_HWINTR nothing
/// does, not even an NMI, and the guest stays halted until the cap goes.
#[test]
fn in_guest_hlt_ends_for_what_the_entry_would_inject() {
    use crate::regs::CAP_MASK_HWINTR;
    with_watchdog(20, || {
        let (vm, s) = halting_once(1, false, true);
        halt_exit_and_if(&vm, 0, 0, false);
        debug_exit(&vm, 0, run_until_sleeping(&vm, 0));
        vm.vcpu(0).unwrap().regs.lock().inject_exception(6, None, false).unwrap();
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), [6]);
        assert!(!vm.vcpu(0).unwrap().regs.lock().halted);

        let (vm, s) = halting_once(1, false, true);
        halt_exit_and_if(&vm, 0, 0, false);
        vm.vcpu(0).unwrap().regs.lock().set_cap(CAP_MASK_HWINTR, 1).unwrap();
        let runner = run_until_sleeping(&vm, 0);
        vm.inject_nmi(0).unwrap();
        vm.suspend_cpu(Some(0)).unwrap();
        assert_eq!(runner.join().unwrap(), ExitKind::Debug);
        assert!(vm.vcpu(0).unwrap().regs.lock().halted, "still halted");
        assert!(s.injected.lock().unwrap().is_empty());
        vm.vcpu(0).unwrap().regs.lock().set_cap(CAP_MASK_HWINTR, 0).unwrap();
        vm.resume_cpu(Some(0)).unwrap();
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), [2]);
    });
}

fn port(port: u16, bytes: u8, is_in: bool, eax: u32) -> GuestExit {
    GuestExit::Inout { port, bytes, is_in, eax }
}

/// Ports 0x70/0x71 are the library's (FreeBSD's kernel emulates them):
/// the guest's accesses never reach the caller, and `in` replaces AL.
#[test]
fn rtc_ports_are_emulated_in_the_run_loop() {
    let exits = [port(0x70, 1, false, 0x0a), port(0x71, 1, true, 0), port(0x70, 1, false, 0x34)];
    let (vm, _s) = vm_with(Script::playing(exits, false), 1);
    vm.rtc_nvram_write(0x34, 0x5c).unwrap();
    {
        let l = vm.lock_one(0).unwrap();
        l.vcpu().regs.lock().set(crate::regs::reg::RAX as i32, 0xffff_ffff_1234_5678).unwrap();
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Bogus, "no exit for the RTC's ports");
        assert_eq!(l.vcpu().regs.lock().get(crate::regs::reg::RAX as i32), Ok(0x1234_5620), "register A");
    }
    // The index the guest left selects what the next read returns.
    let (vm2, _s) = vm_with(Script::playing([port(0x71, 1, true, 0)], false), 1);
    vm2.rtc_nvram_write(0x0d + 1, 0x77).unwrap();
    assert_eq!(run_once(&vm2, 0), ExitKind::Bogus);
    let l = vm2.lock_one(0).unwrap();
    assert_eq!(l.vcpu().regs.lock().get(crate::regs::reg::RAX as i32), Ok(0x80), "register D, the reset index");
}

/// An access FreeBSD's RTC or 8254 handlers refuse (wider than a byte)
/// makes VM_RUN fail with EIO, an `out` as well as an `in`.
#[test]
fn a_wide_rtc_or_pit_access_fails_vm_run() {
    for access in [port(0x71, 2, true, 0), port(0x40, 2, false, 0x1234)] {
        let (vm, _s) = vm_with(Script::playing([access], false), 1);
        let l = vm.lock_one(0).unwrap();
        assert_eq!(vm.run(&l).map(|e| e.kind), Err(Error::Io), "{access:?}");
        // The failed VM_RUN returned to userland all the same (VM_STATS).
        let userspace = crate::stats::Stat::Userspace as usize;
        assert_eq!(vm.vcpu_stats(0, 0, 64).unwrap()[userspace], 1);
    }
}

/// The RTC's periodic interrupt reaches a guest asleep in HLT through
/// IOAPIC pin 8: the sleep ends at the RTC's deadline, which fires it.
/// The guest's handler reads register C and EOIs for every tick it takes,
/// wherever: a tick taken at an entry after the guest's own register C
/// read before the HLT (2 Hz: a 500 ms stall there) would otherwise keep
/// IRQF up, so no later tick could raise IRQ 8, and the HLT would wait
/// for good.
#[test]
fn the_rtc_periodic_interrupt_wakes_a_halted_guest() {
    with_watchdog(20, || {
        let exits = [
            port(0x70, 1, false, 0x0a),
            port(0x71, 1, false, 0x2f), // divider on, 2 Hz
            port(0x70, 1, false, 0x0b),
            port(0x71, 1, false, 0x42), // 24-hour, PIE
            port(0x70, 1, false, 0x0c),
            port(0x71, 1, true, 0), // register C: IRQF down
            mmio(LAPIC_BASE + u64::from(off::EOI), true, 0),
            GuestExit::Hlt { intr_enabled: true },
        ];
        let handler = [
            port(0x70, 1, false, 0x0c),
            port(0x71, 1, true, 0),
            mmio(LAPIC_BASE + u64::from(off::EOI), true, 0),
        ];
        let script = Script::playing(exits, true).handling_with(handler);
        let (vm, s) = vm_with(script, 1);
        program_rte(&vm, 0, 8, 0x48, 0); // edge, fixed, vector 0x48, APIC 0
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        let injected = s.injected.lock().unwrap().clone();
        assert!(!injected.is_empty() && injected.iter().all(|v| *v == 0x48), "{injected:x?}");
        let rax = vm.vcpu(0).unwrap().regs.lock().get(crate::regs::reg::RAX as i32).unwrap();
        assert_eq!(rax & 0xff, 0xc0, "the handler read IRQF and PF");
        assert!(!vm.vcpu(0).unwrap().vlapic.isr().test(0x48), "every tick EOIed");
        // The next tick raises the flags again; VM_RTC_READ leaves them.
        let next = vm.device_timer_deadline().expect("periodic");
        while std::time::Instant::now() < next {
            thread::yield_now();
        }
        vm.poll_device_timers(std::time::Instant::now());
        assert_eq!(vm.rtc_nvram_read(12), Ok(0xc0), "IRQF and PF");
        assert_eq!(vm.rtc_nvram_read(12), Ok(0xc0), "not cleared by VM_RTC_READ");
    });
}

/// The exits a guest makes to initialise the 8259 pair (vectors 0x20 and
/// 0x28) and set its masks.
fn init_8259_exits(mask1: u8, mask2: u8) -> Vec<GuestExit> {
    [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0xa0, 0x11), (0xa1, 0x28), (0xa1, 0x02)]
        .into_iter()
        .chain([(0xa1, 0x01), (0x21, mask1), (0xa1, mask2)])
        .map(|(p, v)| port(p, 1, false, u32::from(v)))
        .collect()
}

/// A guest in the 8259's mode (its APIC software-disabled, so LINT0 is
/// the INTR pin) takes the PIT's IRQ 0 as the master's vector 0x20. The
/// master is in automatic-EOI mode: the script has no handler to EOI a
/// tick taken at any entry (one taken right before a HLT would leave IRQ
/// 0 in service and the HLT waiting for good, which a slow emulator made
/// likely), so every HLT is ended by a later tick.
#[test]
fn a_guest_in_8259_mode_takes_pit_ticks_from_the_master() {
    with_watchdog(20, || {
        let mut exits = init_8259_exits(0xfe, 0xff);
        // Master ICW4: 8086 mode, automatic EOI.
        exits[3] = port(0x21, 1, false, 0x03);
        exits.extend([
            port(0x43, 1, false, 0x34), // channel 0, LSB/MSB, mode 2
            port(0x40, 1, false, 1193 & 0xff),
            port(0x40, 1, false, 1193 >> 8),
        ]);
        for _ in 0..2 {
            exits.push(GuestExit::Hlt { intr_enabled: true });
        }
        let (vm, s) = vm_with(Script::playing(exits, true), 1);
        lapic_write(&vm, 0, off::SVR, 0xFF);
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        let injected = s.injected.lock().unwrap().clone();
        assert!(injected.len() >= 2 && injected.iter().all(|v| *v == 0x20), "{injected:x?}");
    });
}

/// The RTC's IRQ 8 reaches a guest in 8259 mode through the slave and the
/// master's cascade pin. As above, the guest's handler reads register C
/// and EOIs both chips for every tick it takes, so a tick taken at an
/// entry before the HLT cannot leave IRQF up and block it. (The cascade's
/// in-service bits are checked, without a timer, by the ExtINT test.)
#[test]
fn a_guest_in_8259_mode_takes_the_rtc_interrupt_from_the_slave() {
    with_watchdog(20, || {
        let mut exits = init_8259_exits(0xfb, 0xfe);
        exits.extend([
            port(0x70, 1, false, 0x0a),
            port(0x71, 1, false, 0x2f), // divider on, 2 Hz
            port(0x70, 1, false, 0x0b),
            port(0x71, 1, false, 0x42), // 24-hour, PIE
            port(0x70, 1, false, 0x0c),
            port(0x71, 1, true, 0), // register C: IRQF down
            port(0xa0, 1, false, 0x20),
            port(0x20, 1, false, 0x20),
            GuestExit::Hlt { intr_enabled: true },
        ]);
        let handler = [port(0x70, 1, false, 0x0c), port(0x71, 1, true, 0)];
        let eois = [port(0xa0, 1, false, 0x20), port(0x20, 1, false, 0x20)];
        let (vm, s) = vm_with(Script::playing(exits, true).handling_with(handler.into_iter().chain(eois)), 1);
        lapic_write(&vm, 0, off::SVR, 0xFF);
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        let injected = s.injected.lock().unwrap().clone();
        assert!(!injected.is_empty() && injected.iter().all(|v| *v == 0x28), "{injected:x?}");
        let service = (vm.vatpic().chip(0).service, vm.vatpic().chip(1).service);
        assert_eq!(service, (0, 0), "every tick EOIed on both chips");
    });
}

/// Port 0x408 is the ACPI PM timer: a 4-byte `in` reads its count into
/// EAX inside VM_RUN; any other access fails VM_RUN with EIO.
#[test]
fn the_pm_timer_port_is_emulated_in_the_run_loop() {
    let exits = [port(0x408, 4, true, 0)];
    let (vm, _s) = vm_with(Script::playing(exits, false), 1);
    {
        let l = vm.lock_one(0).unwrap();
        l.vcpu().regs.lock().set(crate::regs::reg::RAX as i32, u64::MAX).unwrap();
        let before = vm.vpmtmr().value(std::time::Instant::now());
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Bogus, "no exit for the PM timer");
        let after = vm.vpmtmr().value(std::time::Instant::now());
        let rax = l.vcpu().regs.lock().get(crate::regs::reg::RAX as i32).unwrap();
        assert!(rax >> 32 == 0 && (before..=after).contains(&(rax as u32)), "{before} <= {rax:#x} <= {after}");
    }
    for (bytes, is_in) in [(1, true), (2, true), (4, false)] {
        let (vm, _s) = vm_with(Script::playing([port(0x408, bytes, is_in, 0)], false), 1);
        let l = vm.lock_one(0).unwrap();
        assert_eq!(vm.run(&l).map(|e| e.kind), Err(Error::Io), "{bytes} bytes, in {is_in}");
    }
}

/// An HPET timer wakes a guest asleep in HLT through IOAPIC pin 24: the
/// sleep ends at the timer's deadline. Periodic (every 1 ms), and the
/// first expiry is let pass before VM_RUN: it is taken at the first entry
/// and EOIed by the guest's handler, and the HLT waits for the next. (A
/// guest that never EOIed would keep 0x50 in service and its HLT blocked
/// at that priority, as on hardware.)
#[test]
fn an_hpet_timer_wakes_a_halted_guest_through_its_ioapic_pin() {
    use crate::vhpet::{reg, CNF_ENABLE, TCNF_INT_ENB, TCNF_TYPE, TCNF_VAL_SET, VHPET_BASE};
    with_watchdog(20, || {
        let script = Script::playing([GuestExit::Hlt { intr_enabled: true }], true).handling_eois();
        let (vm, s) = vm_with(script, 1);
        program_rte(&vm, 0, 24, 0x50, 0); // edge, vector 0x50, APIC 0
        let hpet = |off: u64, v: u64| assert_eq!(vm.mmio_write(0, VHPET_BASE + off, 8, v), Ok(Some(())));
        hpet(reg::timer_cap_cnf(0), 24 << 9 | TCNF_INT_ENB | TCNF_TYPE | TCNF_VAL_SET);
        hpet(reg::timer_comparator(0), 16_777);
        hpet(reg::CONFIG, CNF_ENABLE);
        let first = vm.device_timer_deadline().expect("armed");
        while std::time::Instant::now() < first {
            thread::yield_now();
        }
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        let injected = s.injected.lock().unwrap().clone();
        assert!(injected.len() >= 2 && injected.iter().all(|v| *v == 0x50), "{injected:x?}");
        assert!(!vm.vcpu(0).unwrap().vlapic.isr().test(0x50), "every tick EOIed");
        assert_eq!(vm.mmio_read(0, VHPET_BASE, 4), Ok(Some(0x8086_0701)));
    });
}

/// With the callout thread, timers fire while no vCPU polls them: an
/// HPET periodic timer (through its IOAPIC pin) and the local APIC timer
/// each reach IRR of a vCPU that never runs.
#[test]
fn the_callout_thread_fires_timers_no_vcpu_polls() {
    use crate::vhpet::{reg, CNF_ENABLE, TCNF_INT_ENB, TCNF_TYPE, TCNF_VAL_SET, VHPET_BASE};
    with_watchdog(20, || {
        let (vm, _) = vm_with(Script::default(), 1);
        vm.start_callout_thread().unwrap();
        program_rte(&vm, 0, 24, 0x50, 0);
        let hpet = |off: u64, v: u64| assert_eq!(vm.mmio_write(0, VHPET_BASE + off, 8, v), Ok(Some(())));
        hpet(reg::timer_cap_cnf(0), 24 << 9 | TCNF_INT_ENB | TCNF_TYPE | TCNF_VAL_SET);
        hpet(reg::timer_comparator(0), 16_777);
        hpet(reg::CONFIG, CNF_ENABLE);
        lapic_write(&vm, 0, off::TIMER_DCR, 0xB);
        lapic_write(&vm, 0, off::LVT_TIMER, 0x51);
        lapic_write(&vm, 0, off::TIMER_ICR, 100_000);
        let apic = &vm.vcpu(0).unwrap().vlapic;
        while !(apic.irr().test(0x50) && apic.irr().test(0x51)) {
            thread::yield_now();
        }
        assert_eq!(vm.vcpu(0).unwrap().state(), VcpuState::Idle, "no vCPU ran");
        assert_eq!(apic.counts().timer, 1);
        vm.destroy();
    });
}

/// The callout thread, asleep with nothing to fire, wakes for a local APIC
/// timer armed afterwards (by the initial-count write, then by a software
/// enable restarting a periodic timer).
#[test]
fn the_callout_thread_wakes_for_an_apic_timer_armed_later() {
    with_watchdog(20, || {
        let (vm, _) = vm_with(Script::default(), 1);
        vm.start_callout_thread().unwrap();
        let apic = &vm.vcpu(0).unwrap().vlapic;
        lapic_write(&vm, 0, off::TIMER_DCR, 0xB);
        lapic_write(&vm, 0, off::LVT_TIMER, 0x51 | (1 << 17)); // periodic
        lapic_write(&vm, 0, off::TIMER_ICR, 100_000);
        while apic.counts().timer == 0 {
            thread::yield_now();
        }
        lapic_write(&vm, 0, off::SVR, 0xFF); // software-disabled: stopped, LVTs masked
        let fired = apic.counts().timer;
        lapic_write(&vm, 0, off::SVR, 0x1FF); // enabled: the periodic timer restarts
        lapic_write(&vm, 0, off::LVT_TIMER, 0x51 | (1 << 17)); // unmasked
        while apic.counts().timer == fired {
            thread::yield_now();
        }
        vm.destroy();
    });
}

/// The callout thread sleeps until the soonest deadline, not the latest:
/// an HPET timer armed to fire in a millisecond fires on time while a
/// local APIC timer is armed an hour ahead.
#[test]
fn the_callout_thread_sleeps_until_the_soonest_deadline() {
    use crate::vhpet::{reg, CNF_ENABLE, TCNF_INT_ENB, TCNF_TYPE, TCNF_VAL_SET, VHPET_BASE};
    with_watchdog(20, || {
        let (vm, _) = vm_with(Script::default(), 1);
        vm.start_callout_thread().unwrap();
        lapic_write(&vm, 0, off::TIMER_DCR, 0xA); // divide by 128
        lapic_write(&vm, 0, off::LVT_TIMER, 0x51);
        lapic_write(&vm, 0, off::TIMER_ICR, 0xFFFF_FFFF); // about 68 minutes
        program_rte(&vm, 0, 24, 0x50, 0);
        let hpet = |off: u64, v: u64| assert_eq!(vm.mmio_write(0, VHPET_BASE + off, 8, v), Ok(Some(())));
        hpet(reg::timer_cap_cnf(0), 24 << 9 | TCNF_INT_ENB | TCNF_TYPE | TCNF_VAL_SET);
        hpet(reg::timer_comparator(0), 16_777); // about 1 ms
        hpet(reg::CONFIG, CNF_ENABLE);
        let apic = &vm.vcpu(0).unwrap().vlapic;
        while !apic.irr().test(0x50) {
            thread::yield_now();
        }
        assert_eq!(vm.vcpu(0).unwrap().state(), VcpuState::Idle, "no vCPU ran");
        assert_eq!(apic.counts().timer, 0, "the APIC timer is not due");
        vm.destroy();
    });
}

/// A level HPET interrupt holds its pin asserted until the guest clears
/// the timer's ISR bit; VM_REINIT brings back a stopped HPET.
#[test]
fn a_level_hpet_interrupt_holds_its_pin_until_the_isr_write() {
    use crate::vhpet::{reg, CNF_ENABLE, TCNF_INT_ENB, TCNF_INT_TYPE, VHPET_BASE};
    let (vm, _s) = vm_with(Script::default(), 1);
    let hpet = |off: u64, v: u64| assert_eq!(vm.mmio_write(0, VHPET_BASE + off, 8, v), Ok(Some(())));
    hpet(reg::timer_cap_cnf(1), 29 << 9 | TCNF_INT_ENB | TCNF_INT_TYPE);
    hpet(reg::timer_comparator(1), 1);
    hpet(reg::CONFIG, CNF_ENABLE);
    let start = std::time::Instant::now();
    while vm.vioapic().assert_count(29) == 0 {
        vm.poll_device_timers(std::time::Instant::now());
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the timer never fired");
    }
    assert_eq!(vm.mmio_read(0, VHPET_BASE + reg::ISR, 8), Ok(Some(1 << 1)));
    hpet(reg::ISR, 1 << 1);
    assert_eq!(vm.vioapic().assert_count(29), 0);
    hpet(reg::CONFIG, 0);
    vm.cpus().suspended = vm.active_cpus();
    vm.reinit(&vm.lock_all().unwrap()).unwrap();
    assert_eq!(vm.mmio_read(0, VHPET_BASE + reg::timer_cap_cnf(1), 8), Ok(Some(0xff00_0000_0000_8010)));
}

/// VM_STATS counts what the run loop saw: every exit, by kind, the ones
/// returned to the caller, NMIs; VM_REINIT zeroes them.
#[test]
fn the_run_loop_counts_its_exits_for_vm_stats() {
    use crate::stats::{Stat, NSTATS};
    let exits = [
        GuestExit::Pause,
        GuestExit::Refused,         // #UD: no exit kind FreeBSD counts
        port(0x70, 1, false, 0x0a), // emulated: no return to the caller
        port(0x80, 1, false, 0),
        mmio(0xd000_0000, true, 1),
        GuestExit::Yield,
    ];
    let (vm, _s) = vm_with(Script::playing(exits, false), 1);
    vm.inject_nmi(0).unwrap();
    for want in [ExitKind::Pause, ExitKind::Inout { port: 0x80, bytes: 1, is_in: false, eax: 0 }] {
        assert_eq!(run_once(&vm, 0), want);
    }
    assert!(matches!(run_once(&vm, 0), ExitKind::Mmio(_)));
    assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
    let s = vm.vcpu_stats(0, 0, 64).unwrap();
    assert_eq!(s.len(), NSTATS);
    assert_eq!(s[Stat::VmExits as usize], 7, "pause, #UD, two in/out, mmio, yield, bogus");
    assert_eq!(s[Stat::Pause as usize], 1);
    assert_eq!(s[Stat::InOut as usize], 2);
    assert_eq!(s[Stat::InstEmul as usize], 1, "the MMIO write only");
    assert_eq!(s[Stat::Exception as usize], 0);
    assert_eq!(s[Stat::Userspace as usize], 4);
    assert_eq!(s[Stat::Nmis as usize], 1);
    assert_eq!(vm.vcpu_stats(0, -1, 64), Err(Error::Inval));
    assert_eq!(vm.vcpu_stats(0, NSTATS as i32 + 1, 64), Err(Error::NoEnt));
    assert_eq!(vm.vcpu_stats(0, NSTATS as i32, 64), Ok(vec![]));
    vm.cpus().suspended = vm.active_cpus();
    vm.reinit(&vm.lock_all().unwrap()).unwrap();
    assert!(vm.vcpu_stats(0, 0, 64).unwrap().iter().all(|c| *c == 0));
}

/// vCPU 1 arms HPET timer 0 (I/O APIC pin 25) to fire 1 ms after it
/// enables the HPET.
fn arm_hpet_in_1ms_on_pin_25(vm: &Vm) {
    use crate::vhpet::{reg, CNF_ENABLE, TCNF_INT_ENB, VHPET_BASE};
    let hpet = |off: u64, v: u64| assert_eq!(vm.mmio_write(1, VHPET_BASE + off, 8, v), Ok(Some(())));
    hpet(reg::timer_cap_cnf(0), 25 << 9 | TCNF_INT_ENB);
    hpet(reg::timer_comparator(0), 16_777); // 1 ms after the enable
    hpet(reg::CONFIG, CNF_ENABLE);
}

/// A vCPU already asleep in HLT, with no timer to wake it, sees a device
/// timer armed afterwards (here another vCPU's HPET write): arming a
/// sooner callout wakes the sleepers to take the new bound.
#[test]
fn a_sleeping_vcpu_wakes_for_a_device_timer_armed_after_it_slept() {
    with_watchdog(20, || {
        let (vm, s) = halting_once(2, true, true);
        program_rte(&vm, 0, 25, 0x51, 0);
        assert_eq!(vm.device_timer_deadline(), None);
        let runner = run_until_sleeping(&vm, 0);
        arm_hpet_in_1ms_on_pin_25(&vm);
        assert_eq!(runner.join().unwrap(), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), vec![0x51]);
    });
}

/// A HLT sleeps until the sooner of the APIC timer and the devices'
/// timers: an APIC timer 32 s away does not hold back an HPET interrupt
/// due in 1 ms.
#[test]
fn hlt_sleeps_until_the_sooner_of_the_apic_and_device_timers() {
    with_watchdog(20, || {
        let (vm, s) = halting_once(2, true, true);
        program_rte(&vm, 0, 25, 0x51, 0);
        lapic_write(&vm, 0, off::LVT_TIMER, 0xEE);
        lapic_write(&vm, 0, off::TIMER_DCR, 0xB);
        lapic_write(&vm, 0, off::TIMER_ICR, u32::MAX); // 2^32 ticks at 2^27 Hz
        let runner = run_until_sleeping(&vm, 0);
        arm_hpet_in_1ms_on_pin_25(&vm);
        assert_eq!(runner.join().unwrap(), ExitKind::Bogus);
        assert_eq!(*s.injected.lock().unwrap(), vec![0x51], "the HPET's vector, not the APIC timer's");
    });
}

/// The PIT's channel 0 in mode 2 interrupts a halted guest through IOAPIC
/// pin 2 (ISA IRQ 0's pin in bhyve's tables), every period. The guest's
/// handler EOIs each tick, so one taken at an entry before the HLT (1 ms
/// apart: likely on a slow emulator) cannot hold the HLT's wake-up.
#[test]
fn the_pit_wakes_a_halted_guest_through_ioapic_pin_2() {
    with_watchdog(20, || {
        let exits = [
            port(0x43, 1, false, 0x34),      // channel 0, LSB/MSB, mode 2
            port(0x40, 1, false, 1193 & 0xff), // 1 kHz
            port(0x40, 1, false, 1193 >> 8),
            GuestExit::Hlt { intr_enabled: true },
        ];
        let script = Script::playing(exits, true).handling_eois();
        let (vm, s) = vm_with(script, 1);
        program_rte(&vm, 0, 2, 0x30, 0);
        assert_eq!(run_once(&vm, 0), ExitKind::Bogus);
        assert!(s.injected.lock().unwrap().contains(&0x30));
        assert!(vm.vatpit().callout().get().is_some(), "mode 2 keeps going");
        // Port 0x43 cannot be read: VM_RUN fails with EIO.
        let (vm, _s) = vm_with(Script::playing([port(0x43, 1, true, 0)], false), 1);
        let l = vm.lock_one(0).unwrap();
        assert_eq!(vm.run(&l).map(|e| e.kind), Err(Error::Io));
    });
}

/// The HPET's window is 1 KiB: an access just past it is not emulated
/// (it exits to userland).
#[test]
fn the_hpet_window_ends_after_1_kib() {
    use crate::vhpet::{VHPET_BASE, VHPET_SIZE};
    let (vm, _) = vm_with(Script::default(), 1);
    assert_eq!(vm.mmio_read(0, VHPET_BASE + VHPET_SIZE - 8, 8), Ok(Some(0)));
    assert_eq!(vm.mmio_read(0, VHPET_BASE + VHPET_SIZE, 8), Ok(None));
    assert_eq!(vm.mmio_write(0, VHPET_BASE + VHPET_SIZE, 8, 1), Ok(None));
}

/// An INIT resets only its active targets' local APICs: a vCPU not yet
/// activated keeps what was set up in it, and waits for a STARTUP.
#[test]
fn an_init_leaves_an_inactive_targets_local_apic_alone() {
    use crate::vlapic::delivery::StartIpi;
    let vm = Vm::with_idle_backend("init-inactive", 2).unwrap();
    vm.activate_cpu(0).unwrap();
    lapic_write(&vm, 1, off::SVR, SVR_ENABLE | 0xFF);
    let init = StartIpi { mode: DELMODE_INIT, vector: 0, targets: CpuSet::single(1), ipi_exit: false };
    assert_eq!(vm.handle_start_ipi(init), None);
    assert_eq!(lapic_read(&vm, 1, off::SVR), SVR_ENABLE | 0xFF, "not reset");
    assert_eq!(vm.cpus().startup, CpuSet::single(1));
}
