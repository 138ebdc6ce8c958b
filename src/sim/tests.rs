//! The simulated backend's tests: guests run through `Vm::run`.

use crate::exit::ExitKind;
use crate::guest::{GuestAction::*, ScriptedGuest};
use crate::regs::{CAP_BPT_EXIT, CAP_MTRAP_EXIT};
use crate::stats::Stat;
use crate::vm::Vm;

/// A simulated VM with `len` bytes of read-write RAM at guest-physical 0.
fn vm_with_ram(name: &str, vcpus: usize, len: usize) -> Vm {
    use crate::mem::{PROT_READ, PROT_WRITE};
    let vm = Vm::with_sim_backend(name, vcpus).unwrap();
    {
        let all = vm.lock_all().unwrap();
        let mut m = vm.mem_write(&all).unwrap();
        m.alloc_memseg(0, len, None).unwrap();
        m.mmap_memseg(0, 0, 0, len, PROT_READ | PROT_WRITE, 0).unwrap();
    }
    vm
}

/// Reads the library emulates land where the instruction puts them:
/// a load in RAX, RDMSR in EDX:EAX. A read whose instruction faults
/// (an x2APIC MSR in xAPIC mode: #GP) delivers nothing.
#[test]
fn emulated_reads_land_in_registers_and_a_faulting_one_in_none() {
    use crate::regs::reg::{RAX, RDX};
    use crate::vlapic::regs::LAPIC_BASE;
    let vm = Vm::with_sim_backend("reads", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    let script = vec![MmioRead { gpa: LAPIC_BASE + 0x30, size: 4 }, Rdmsr { msr: 0x1b }, out, Rdmsr { msr: 0x802 }, out];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    l.vcpu().regs.lock().set(RAX as i32, u64::MAX).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
    let (rax, rdx) = { let r = l.vcpu().regs.lock(); (r.get(RAX as i32).unwrap(), r.get(RDX as i32).unwrap()) };
    assert_eq!((rax, rdx), (0xFEE0_0900, 0), "IA32_APIC_BASE after the version register");
    assert_eq!(vm.guest_stats(0).unwrap().last_read, 0xFEE0_0900);
    l.vcpu().regs.lock().set(RAX as i32, 0x1234).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
    let gs = vm.guest_stats(0).unwrap();
    assert_eq!((gs.last_vector, gs.last_read), (Some(13), 0xFEE0_0900), "#GP, and no read");
    assert_eq!(l.vcpu().regs.lock().get(RAX as i32), Ok(0x1234));
    // A byte load of a wider register (FreeBSD's `lapic_mmio_read` gives
    // the whole version register) reads its low byte alone, as FreeBSD's
    // `vie_update_register` stores it: AL replaced, the rest of RAX kept.
    let version = vm.mmio_read(0, LAPIC_BASE + 0x30, 4).unwrap().unwrap();
    assert!(version > 0xff, "{version:#x}");
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(vec![MmioRead { gpa: LAPIC_BASE + 0x30, size: 1 }, out], None)))).unwrap();
    l.vcpu().regs.lock().set(RAX as i32, 0x1111_2222_3333_4444).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
    assert_eq!(l.vcpu().regs.lock().get(RAX as i32), Ok(0x1111_2222_3333_4400 | (version & 0xff)));
    assert_eq!(vm.guest_stats(0).unwrap().last_read, version & 0xff, "the byte read, not the register");
}

/// A string I/O instruction loads its registers once and exits; entered
/// again at its RIP (restarted) it exits again with the registers as
/// userland left them, except that a REP count run out completes it;
/// entered past it, the guest goes on.
#[test]
fn a_restarted_string_instruction_runs_again_until_its_count_runs_out() {
    use crate::regs::reg::{RCX, RSI};
    let vm = Vm::with_sim_backend("strio", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let outs = StringIo { port: 0xe9, size: 1, is_in: false, index: 0x1000, count: Some(3) };
    let script = vec![outs, PortOut { port: 0x80, size: 1, value: 0 }];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    let strio = ExitKind::InoutStr { port: 0xe9, bytes: 1, is_in: false, rep: true };
    let e = vm.run(&l).unwrap();
    assert_eq!(e.kind, strio);
    let get = |r: usize| l.vcpu().regs.lock().get(r as i32).unwrap();
    // VM_RESTART_INSTRUCTION.
    let restart = || l.vcpu().regs.lock().restart_instruction();
    assert_eq!((get(RSI), get(RCX)), (0x1000, 3));
    // Userland moved one item and restarts: the same exit, registers
    // as it left them.
    l.vcpu().regs.lock().set(RSI as i32, 0x1001).unwrap();
    l.vcpu().regs.lock().set(RCX as i32, 2).unwrap();
    restart();
    let again = vm.run(&l).unwrap();
    assert_eq!((again.kind, again.rip), (strio, e.rip));
    assert_eq!((get(RSI), get(RCX)), (0x1001, 2));
    // Restarted with the count run out: done, no exit for it.
    l.vcpu().regs.lock().set(RCX as i32, 0).unwrap();
    restart();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x80, .. }));
}

/// A restarted INS or OUTS completes only with a REP prefix and its count
/// run out, the count being what the address size takes of RCX (CX with
/// the 16-bit addresses here: RCX's upper bits do not count); one without
/// REP exits again, as one without REP, whatever RCX holds. Completed on
/// a restart under the monitor trap flag, it is a step, reported past it.
#[test]
fn a_restarted_string_instruction_completes_by_its_rep_count_only() {
    use crate::regs::reg::{RCX, RIP};
    let vm = Vm::with_sim_backend("strio-rep", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let ins = |count| StringIo { port: 0x60, size: 1, is_in: true, index: 0, count };
    let strio = |rep| ExitKind::InoutStr { port: 0x60, bytes: 1, is_in: true, rep };
    let out = ExitKind::Inout { port: 0x80, bytes: 1, is_in: false, eax: 0 };
    for (count, rcx, mtrap, want) in [
        (Some(3), 0x1_0000, 0, (out, 1)),
        (None, 0, 0, (strio(false), 0)),
        (Some(3), 0, 1, (ExitKind::Mtrap, 1)),
    ] {
        let script = vec![ins(count), PortOut { port: 0x80, size: 1, value: 0 }];
        vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
        l.vcpu().regs.lock().set(RIP as i32, 0).unwrap();
        assert_eq!(vm.run(&l).unwrap().kind, strio(count.is_some()));
        {
            let mut r = l.vcpu().regs.lock();
            r.set(RCX as i32, rcx).unwrap();
            r.set_cap(CAP_MTRAP_EXIT, mtrap).unwrap();
            r.restart_instruction();
        }
        let e = vm.run(&l).unwrap();
        assert_eq!((e.kind, e.rip), want, "count {count:?}, RCX {rcx:#x}, MTF {mtrap}");
    }
}

/// Review cases: a debugger stepping a guest halted in its HLT state
/// (MTRAP, MASK_HWINTR, no HLT exit) gets its exit at once; a refused
/// RDMSR under MASK_HWINTR delivers no value; a script's WAIT_INTR_EOI
/// enables interrupts; a string instruction userland faults is
/// abandoned; VM_REINIT forgets a pending one.
#[test]
fn stepping_faulting_and_reinit_leave_no_instruction_half_done() {
    crate::test_util::with_watchdog(20, || {
        use crate::regs::reg::RAX;
        use crate::regs::{CAP_HALT_EXIT, CAP_MASK_HWINTR};
        use crate::vlapic::regs::LAPIC_BASE;
        let vm = Vm::with_sim_backend("review", 1).unwrap();
        vm.activate_cpu(0).unwrap();
        assert_eq!(vm.mmio_write(0, LAPIC_BASE + 0xF0, 4, 0x1FF), Ok(Some(())));
        let set = |script: Vec<crate::guest::GuestAction>| {
            let l = vm.lock_one(0).unwrap();
            vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
        };
        let run = || vm.run(&vm.lock_one(0).unwrap()).unwrap();
        let caps = |halt: i32, mtrap: i32, mask: i32| {
            let mut r = vm.vcpu(0).unwrap().regs.lock();
            r.set_cap(CAP_HALT_EXIT, halt).unwrap();
            r.set_cap(CAP_MTRAP_EXIT, mtrap).unwrap();
            r.set_cap(CAP_MASK_HWINTR, mask).unwrap();
        };
        let out = PortOut { port: 0x80, size: 1, value: 0 };

        set(vec![EnableInterrupts, Compute, Hlt, out]);
        caps(0, 1, 1);
        vm.inject_nmi(0).unwrap();
        assert_eq!(run().kind, ExitKind::Mtrap);
        assert_eq!(run().kind, ExitKind::Mtrap);
        let e = run();
        assert_eq!(e.kind, ExitKind::Mtrap, "the HLT done, the guest halted");
        assert!(vm.vcpu(0).unwrap().regs.lock().halted);
        assert_eq!(run().rip, e.rip, "still halted: each step is an exit");
        caps(1, 0, 0);
        assert!(matches!(run().kind, ExitKind::Inout { .. }), "the NMI ended it");
        assert_eq!(vm.guest_stats(0).unwrap().last_vector, Some(2));

        set(vec![Rdmsr { msr: 0x802 }, out]);
        caps(1, 0, 1);
        vm.vcpu(0).unwrap().regs.lock().set(RAX as i32, 0x1234).unwrap();
        assert!(matches!(run().kind, ExitKind::Inout { .. }));
        assert_eq!(vm.guest_stats(0).unwrap().last_read, 0, "the faulting RDMSR read nothing");
        caps(1, 0, 0);
        set(vec![out]);
        assert!(matches!(run().kind, ExitKind::Inout { .. }));
        assert_eq!(vm.guest_stats(0).unwrap().last_vector, Some(13), "the #GP held back, taken now");

        vm.vcpu(0).unwrap().regs.lock().set(crate::regs::reg::RFLAGS as i32, 2).unwrap();
        set(vec![WaitInterruptEoi, out]);
        vm.lapic_irq(0, 0x41).unwrap();
        assert!(matches!(run().kind, ExitKind::Inout { .. }), "WAIT_INTR_EOI took the interrupt");
        assert_eq!(vm.guest_stats(0).unwrap().last_vector, Some(0x41));

        let outs = StringIo { port: 0xe9, size: 1, is_in: false, index: 0, count: Some(4) };
        set(vec![outs, out]);
        assert!(matches!(run().kind, ExitKind::InoutStr { .. }));
        {
            let mut r = vm.vcpu(0).unwrap().regs.lock();
            r.inject_exception(13, Some(0), true).unwrap();
        }
        assert!(matches!(run().kind, ExitKind::Inout { .. }), "abandoned after #GP");

        // VM_REINIT forgets the string instruction half done (kept, it
        // would find RCX reset to 0 and complete); the script starts over
        // and runs it afresh.
        set(vec![outs, out]);
        assert!(matches!(run().kind, ExitKind::InoutStr { .. }));
        vm.cpus().suspended = vm.active_cpus();
        vm.reinit(&vm.lock_all().unwrap()).unwrap();
        vm.activate_cpu(0).unwrap();
        let e = run();
        assert!(matches!(e.kind, ExitKind::InoutStr { .. }), "the script started over");
        assert_eq!(e.rip, 0);
        assert_eq!(vm.vcpu(0).unwrap().regs.lock().get(crate::regs::reg::RCX as i32), Ok(4), "a fresh OUTS");
    });
}

/// A HLT's exit carries the guest's interrupt flag: a vCPU that halts
/// after CLI (VM_CAP_HALT_EXIT on) can be woken by nothing but an NMI,
/// so with every vCPU so halted the VM suspends (VM_SUSPEND_HALT) rather
/// than sleeping for good.
#[test]
fn a_hlt_after_cli_on_every_vcpu_suspends_the_vm() {
    use crate::exit::SuspendHow;
    use crate::regs::CAP_HALT_EXIT;
    crate::test_util::with_watchdog(20, || {
        let vm = Vm::with_sim_backend("clihlt", 1).unwrap();
        let l = vm.lock_one(0).unwrap();
        vm.activate_cpu(0).unwrap();
        l.vcpu().regs.lock().set_cap(CAP_HALT_EXIT, 1).unwrap();
        let script = vec![EnableInterrupts, Compute, DisableInterrupts, Hlt];
        vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Suspended(SuspendHow::Halt));
    });
}

/// The idle loop (no program) is `sti; hlt`: halted in the guest
/// (VM_CAP_HALT_EXIT off) it takes an interrupt, then halts again. It
/// has no IDT: a task gate the vCPU's IDTR finds there is not its.
#[test]
fn the_idle_loop_takes_interrupts_halted_in_the_guest() {
    use crate::regs::reg::{CR0, IDTR};
    use crate::regs::{SegDesc, CAP_HALT_EXIT};
    use crate::test_util::with_watchdog;
    use crate::vcpu::VcpuState;
    use std::sync::Arc;
    with_watchdog(20, || {
        let vm = Arc::new(vm_with_ram("idle", 1, 0x10_0000));
        vm.mem().write_gpa(0x3000 + 0x40 * 8, &[0, 0, 0x30, 0, 0, 0x85, 0, 0]).unwrap();
        {
            let mut r = vm.vcpu(0).unwrap().regs.lock();
            r.set(CR0 as i32, 1).unwrap();
            r.set_seg(IDTR as i32, SegDesc { base: 0x3000, limit: 0x7ff, access: 0 }).unwrap();
        }
        vm.activate_cpu(0).unwrap();
        let svr = crate::vlapic::regs::LAPIC_BASE + 0xF0;
        assert_eq!(vm.mmio_write(0, svr, 4, 0x1FF), Ok(Some(())));
        vm.vcpu(0).unwrap().regs.lock().set_cap(CAP_HALT_EXIT, 0).unwrap();
        let vm2 = vm.clone();
        let runner = std::thread::spawn(move || vm2.run(&vm2.lock_one(0).unwrap()).unwrap().kind);
        while vm.vcpu(0).unwrap().state() != VcpuState::Sleeping {
            std::thread::yield_now();
        }
        vm.lapic_irq(0, 0x40).unwrap();
        while vm.guest_stats(0).unwrap().interrupts == 0 {
            std::thread::yield_now();
        }
        assert_eq!(vm.guest_stats(0).unwrap().last_vector, Some(0x40));
        vm.suspend_cpu(Some(0)).unwrap();
        assert_eq!(runner.join().unwrap(), ExitKind::Debug);
        assert_eq!(vm.vcpu_stats(0, Stat::Hlt as i32, 1).unwrap(), [0], "no HLT exit counted");
    });
}

/// An MMIO store is a `mov` from RAX: the value is there at the exit,
/// merged into AL or AX, zero-extended from EAX, as the moves that
/// load it would leave RAX.
#[test]
fn an_mmio_store_leaves_its_value_in_rax() {
    use crate::regs::reg::RAX;
    let vm = Vm::with_sim_backend("store", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let store = |size, value| MmioWrite { gpa: 0xd000_0000, size, value };
    let script = vec![store(1, 0x1ab), store(2, 0xcdef), store(4, 0x8765_4321), store(8, u64::MAX - 1)];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, Some(0))))).unwrap();
    l.vcpu().regs.lock().set(RAX as i32, 0x1111_2222_3333_4444).unwrap();
    for (value, rax) in [
        (0xab, 0x1111_2222_3333_44ab),
        (0xcdef, 0x1111_2222_3333_cdef),
        (0x8765_4321, 0x8765_4321),
        (u64::MAX - 1, u64::MAX - 1),
    ] {
        let e = vm.run(&l).unwrap();
        assert!(matches!(e.kind, ExitKind::Mmio(a) if a.write && a.value == value), "{e:?}");
        assert_eq!(l.vcpu().regs.lock().get(RAX as i32), Ok(rax));
    }
}

/// With VM_CAP_MTRAP_EXIT each instruction that does not exit by
/// itself is one VM_EXITCODE_MTRAP at the next RIP; off, the guest
/// runs on to its own exit.
#[test]
fn the_monitor_trap_flag_steps_the_guest() {
    let vm = Vm::with_sim_backend("mtrap", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let script = vec![Compute, DisableInterrupts, PortOut { port: 0x80, size: 1, value: 7 }, Compute];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script.clone(), Some(0))))).unwrap();
    l.vcpu().regs.lock().set_cap(CAP_MTRAP_EXIT, 1).unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let e = vm.run(&l).unwrap();
        seen.push((e.kind, e.rip, e.inst_length));
    }
    let out = ExitKind::Inout { port: 0x80, bytes: 1, is_in: false, eax: 7 };
    assert_eq!(
        seen,
        [(ExitKind::Mtrap, 1, 0), (ExitKind::Mtrap, 2, 0), (out, 2, 1), (ExitKind::Mtrap, 4, 0), (ExitKind::Mtrap, 5, 0)]
    );
    assert_eq!(l.vcpu().stats.get(Stat::Mtrap), 4);
    l.vcpu().regs.lock().set_cap(CAP_MTRAP_EXIT, 0).unwrap();
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, Some(0))))).unwrap();
    assert_eq!(vm.run(&l).unwrap().kind, out, "off: straight to the port access");
}

/// Records each event the guest takes: (actions run before it, vector).
struct Probe {
    actions: Vec<crate::guest::GuestAction>,
    pc: usize,
    taken: std::sync::Arc<std::sync::Mutex<Vec<(usize, u8)>>>,
}

impl crate::guest::GuestProgram for Probe {
    fn next(&mut self, _rip: u64) -> crate::guest::GuestAction {
        let a = self.actions.get(self.pc).copied().unwrap_or(Hlt);
        self.pc += 1;
        a
    }
    fn interrupt(&mut self, vector: u8) {
        self.taken.lock().unwrap().push((self.pc, vector));
    }
    fn read_result(&mut self, _value: u64) {}
}

/// `sti; hlt` with an interrupt already pending: the STI's shadow
/// lets the HLT run first, the HLT ends at once, and the interrupt
/// comes after it (hardware's way to wait for an interrupt). An STI
/// with interrupts already on has no shadow.
#[test]
fn sti_shadows_the_next_instruction() {
    crate::test_util::with_watchdog(20, || {
        let vm = Vm::with_sim_backend("shadow", 1).unwrap();
        let l = vm.lock_one(0).unwrap();
        vm.activate_cpu(0).unwrap();
        assert_eq!(vm.mmio_write(0, crate::vlapic::regs::LAPIC_BASE + 0xf0, 4, 0x1ff), Ok(Some(())));
        let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = PortOut { port: 0x80, size: 1, value: 0 };
        let actions = vec![EnableInterrupts, Hlt, out, EnableInterrupts, Compute, out];
        let probe = Probe { actions, pc: 0, taken: taken.clone() };
        vm.set_guest(&l, Some(Box::new(probe))).unwrap();
        vm.lapic_irq(0, 0x40).unwrap();
        assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x80, .. }));
        assert_eq!(*taken.lock().unwrap(), [(2, 0x40)], "after the HLT, before the out");
        // IF already set: the second STI has no shadow. Single-step
        // (monitor trap) to stop right after it; an interrupt pending
        // then is taken at the next entry, before the Compute.
        l.vcpu().regs.lock().set_cap(CAP_MTRAP_EXIT, 1).unwrap();
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap, "after the STI");
        vm.lapic_irq(0, 0x50).unwrap();
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap, "after the Compute");
        assert_eq!(*taken.lock().unwrap(), [(2, 0x40), (4, 0x50)], "before the Compute (action 4)");
    });
}

/// The same single-step view of an STI that sets the flag: the
/// interrupt waits for the action after it.
#[test]
fn an_sti_that_sets_the_flag_holds_interrupts_for_one_action() {
    let vm = Vm::with_sim_backend("shadow1", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    assert_eq!(vm.mmio_write(0, crate::vlapic::regs::LAPIC_BASE + 0xf0, 4, 0x1ff), Ok(Some(())));
    let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = Probe { actions: vec![EnableInterrupts, Compute, Compute], pc: 0, taken: taken.clone() };
    vm.set_guest(&l, Some(Box::new(probe))).unwrap();
    l.vcpu().regs.lock().set_cap(CAP_MTRAP_EXIT, 1).unwrap();
    assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap, "after the STI");
    vm.lapic_irq(0, 0x50).unwrap();
    assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap, "after the shadowed Compute");
    assert!(taken.lock().unwrap().is_empty(), "held by the shadow");
    assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap);
    assert_eq!(*taken.lock().unwrap(), [(2, 0x50)], "before the second Compute");
}

/// An entry that ends after the action an STI shadowed (so that the run
/// loop may inject what the shadow held back) ends past that action: the
/// guest's RIP counts it.
#[test]
fn the_guest_resumes_past_the_action_an_sti_shadowed() {
    let vm = Vm::with_sim_backend("shadowrip", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let script = vec![EnableInterrupts, Compute, PortOut { port: 0x80, size: 1, value: 0 }];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (ExitKind::Inout { port: 0x80, bytes: 1, is_in: false, eax: 0 }, 2));
}

/// An NMI pending while the guest is in an STI shadow waits for the
/// shadowed action, and comes right after it, at the next entry (FreeBSD
/// holds it, with NMI-window exiting on VMX), not at some later exit.
#[test]
fn an_nmi_waits_for_the_sti_shadow_and_comes_right_after_it() {
    crate::test_util::with_watchdog(20, || {
        let vm = Vm::with_sim_backend("shadownmi", 1).unwrap();
        let l = vm.lock_one(0).unwrap();
        vm.activate_cpu(0).unwrap();
        let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = PortOut { port: 0x80, size: 1, value: 0 };
        let actions = vec![DisableInterrupts, EnableInterrupts, Compute, Compute, Compute, out];
        let probe = Probe { actions, pc: 0, taken: taken.clone() };
        vm.set_guest(&l, Some(Box::new(probe))).unwrap();
        l.vcpu().regs.lock().set_cap(CAP_MTRAP_EXIT, 1).unwrap();
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap, "after the CLI");
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap, "after the STI");
        vm.inject_nmi(0).unwrap();
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap, "after the shadowed Compute");
        assert!(taken.lock().unwrap().is_empty(), "held by the shadow");
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap);
        assert_eq!(*taken.lock().unwrap(), [(3, 2)], "before the second Compute");
        // Unstepped: the guest leaves the shadow and takes the NMI at once.
        vm.set_guest(&l, None).unwrap();
        taken.lock().unwrap().clear();
        let actions = vec![DisableInterrupts, EnableInterrupts, Compute, Compute, Compute, out];
        let probe = Probe { actions, pc: 0, taken: taken.clone() };
        vm.set_guest(&l, Some(Box::new(probe))).unwrap();
        l.vcpu().regs.lock().set(crate::regs::reg::RIP as i32, 0).unwrap();
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap, "after the CLI");
        assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Mtrap, "after the STI");
        l.vcpu().regs.lock().set_cap(CAP_MTRAP_EXIT, 0).unwrap();
        vm.inject_nmi(0).unwrap();
        assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x80, .. }));
        assert_eq!(*taken.lock().unwrap(), [(3, 2)], "right after the shadowed Compute");
    });
}

/// VM_REG_GUEST_INTR_SHADOW is the guest's STI shadow: 1 after an exit
/// taken by the action after an STI (VMX's interruptibility state), and
/// it stays while that action is restarted; the guest resuming past it,
/// an exception queued for it or a write of 0 ends it. Forcing it on is
/// EINVAL, as on Intel.
#[test]
fn intr_shadow_reads_the_sti_shadow_and_takes_only_zero() {
    use crate::error::Error;
    use crate::regs::reg::INTR_SHADOW;
    const SHADOW: i32 = INTR_SHADOW as i32;
    let vm = Vm::with_sim_backend("shadowreg", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let out = |port| PortOut { port, size: 1, value: 0 };
    let script = vec![DisableInterrupts, EnableInterrupts, out(0x81), out(0x80)];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script.clone(), None)))).unwrap();
    assert_eq!(vm.get_register(&l, SHADOW), Ok(0));
    assert_eq!(vm.set_register(&l, SHADOW, 1), Err(Error::Inval));
    assert_eq!(vm.get_register(&l, SHADOW), Ok(0));
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x81, .. }));
    assert_eq!(vm.get_register(&l, SHADOW), Ok(1), "the out ran in the shadow");
    // Restarted, the out runs in the shadow again; an NMI waits for it.
    l.vcpu().regs.lock().restart_instruction();
    vm.inject_nmi(0).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x81, .. }));
    assert_eq!(vm.get_register(&l, SHADOW), Ok(1));
    assert_eq!(vm.guest_stats(0).unwrap().interrupts, 0, "the NMI waits");
    // Resumed past it: the shadow is over, and the NMI comes first.
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x80, .. }));
    assert_eq!(vm.get_register(&l, SHADOW), Ok(0));
    assert_eq!(vm.guest_stats(0).unwrap().last_vector, Some(2));
    // A write of 0 ends it, as an exception queued for the guest does.
    for end in 0..2 {
        vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script.clone(), None)))).unwrap();
        l.vcpu().regs.lock().set(crate::regs::reg::RIP as i32, 0).unwrap();
        assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x81, .. }));
        assert_eq!(vm.get_register(&l, SHADOW), Ok(1));
        match end {
            0 => vm.set_register(&l, SHADOW, 0).unwrap(),
            _ => vm.inject_exception(l.vcpu(), 6, None, false).unwrap(),
        }
        assert_eq!(vm.get_register(&l, SHADOW), Ok(0), "case {end}");
    }
    // A backend without a shadow reads none.
    let idle = Vm::with_idle_backend("shadowidle", 1).unwrap();
    let l = idle.lock_one(0).unwrap();
    assert_eq!(idle.get_register(&l, SHADOW), Ok(0));
    assert_eq!(idle.set_register(&l, SHADOW, 1), Err(Error::Inval));
    assert_eq!(idle.set_register(&l, SHADOW, 0), Ok(()));
}

/// INT3 with VM_CAP_BPT_EXIT is VM_EXITCODE_BPT at its RIP; without,
/// the guest takes #BP (vector 3) and runs on.
#[test]
fn int3_exits_for_a_debugger_or_raises_bp_in_the_guest() {
    let vm = Vm::with_sim_backend("bpt", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let script = vec![Compute, Breakpoint, PortOut { port: 0x80, size: 1, value: 0 }];
    let out = ExitKind::Inout { port: 0x80, bytes: 1, is_in: false, eax: 0 };
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script.clone(), None)))).unwrap();
    l.vcpu().regs.lock().set_cap(CAP_BPT_EXIT, 1).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip, e.inst_length), (ExitKind::Breakpoint, 1, 0));
    assert_eq!(l.vcpu().regs.lock().rip(), 1, "RIP stays at the INT3");
    assert_eq!(vm.run(&l).unwrap().kind, out, "the script's INT3 was taken");
    assert_eq!(l.vcpu().stats.get(Stat::Exception), 1);
    l.vcpu().regs.lock().set_cap(CAP_BPT_EXIT, 0).unwrap();
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    assert_eq!(vm.run(&l).unwrap().kind, out);
    let gs = vm.guest_stats(0).unwrap();
    assert_eq!((gs.interrupts, gs.last_vector), (1, Some(3)), "#BP in the guest");
}

/// A guest whose code is at its RIP: action `rip`, as a C callback guest
/// that indexes its program by `rip`. Records the vectors it takes.
struct AtRip(Vec<crate::guest::GuestAction>, std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl crate::guest::GuestProgram for AtRip {
    fn next(&mut self, rip: u64) -> crate::guest::GuestAction {
        self.0.get(rip as usize).copied().unwrap_or(Hlt)
    }
    fn interrupt(&mut self, vector: u8) {
        self.1.lock().unwrap().push(vector);
    }
    fn read_result(&mut self, _value: u64) {}
}

fn at_rip(vm: &Vm, l: &crate::vm::VcpuLock<'_>, code: Vec<crate::guest::GuestAction>) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    vm.set_guest(l, Some(Box::new(AtRip(code, taken.clone())))).unwrap();
    taken
}

/// After an exit made before entering the guest (DEBUG, REQIDLE,
/// SUSPENDED), RIP reads where the guest resumes, as FreeBSD's `vmx_run`
/// writes it first: a debugger that reads and writes back the PC, or
/// restarts the instruction, does not run the finished one again.
#[test]
fn rip_after_a_debug_exit_is_where_the_guest_resumes() {
    use crate::regs::reg::RIP;
    let vm = Vm::with_sim_backend("dbg-rip", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let out = |port| PortOut { port, size: 1, value: 0 };
    at_rip(&vm, &l, vec![Compute, out(0x80), out(0x81)]);
    let e = vm.run(&l).unwrap();
    assert_eq!((e.rip, e.inst_length), (1, 1));
    vm.suspend_cpu(Some(0)).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (ExitKind::Debug, 2));
    assert_eq!(l.vcpu().regs.lock().get(RIP as i32), Ok(2));
    // VM_RESTART_INSTRUCTION now changes nothing.
    l.vcpu().regs.lock().restart_instruction();
    vm.resume_cpu(Some(0)).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (ExitKind::Inout { port: 0x81, bytes: 1, is_in: false, eax: 0 }, 2));
}

/// A guest's own INT3 that a debugger hands back (bhyve's gdb stub: the
/// entry instruction length set to the INT3's, then #BP injected) is
/// taken once and the guest goes on past it, as VMX injects #BP as a
/// software exception; so does a software interrupt re-injected through
/// the exit intinfo. Without the length, the handler returns to the INT3.
#[test]
fn a_reinjected_breakpoint_returns_past_the_int3() {
    use crate::regs::{intinfo, reg::ENTRY_INST_LENGTH};
    let vm = Vm::with_sim_backend("bp-inject", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let out = |port| PortOut { port, size: 1, value: 0 };
    let exit = |port| ExitKind::Inout { port, bytes: 1, is_in: false, eax: 0 };
    let taken = at_rip(&vm, &l, vec![Compute, Breakpoint, out(0x80), Breakpoint, out(0x81), Compute, out(0x82)]);
    l.vcpu().regs.lock().set_cap(CAP_BPT_EXIT, 1).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip, e.inst_length), (ExitKind::Breakpoint, 1, 0));
    {
        let mut r = l.vcpu().regs.lock();
        r.set(ENTRY_INST_LENGTH as i32, 1).unwrap();
        r.inject_exception(3, None, false).unwrap();
    }
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (exit(0x80), 2), "past the INT3");
    assert_eq!(*taken.lock().unwrap(), [3]);
    // Length 0: the handler returns to the INT3, which exits again.
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (ExitKind::Breakpoint, 3));
    {
        let mut r = l.vcpu().regs.lock();
        r.set(ENTRY_INST_LENGTH as i32, 0).unwrap();
        r.inject_exception(3, None, false).unwrap();
    }
    assert_eq!(vm.run(&l).unwrap().rip, 3, "at the INT3 again");
    // A software interrupt (INT n, 2 bytes, at 4) interrupted at exit
    // and re-injected: its handler returns past it.
    {
        let mut r = l.vcpu().regs.lock();
        r.set(crate::regs::reg::RIP as i32, 4).unwrap();
        r.set(ENTRY_INST_LENGTH as i32, 2).unwrap();
        r.set_exitintinfo(intinfo::VALID | intinfo::SWINTR | 0x80).unwrap();
    }
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (exit(0x82), 6));
    assert_eq!(*taken.lock().unwrap(), [3, 3, 0x80]);
}

/// With the monitor trap flag, an entry that delivers an event exits
/// before the guest's next instruction (SDM 26.7.2), so a debugger's step
/// stops where the event struck and the next step runs the instruction.
#[test]
fn a_step_that_delivers_an_event_runs_no_instruction() {
    let vm = Vm::with_sim_backend("mtf-event", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let taken = at_rip(&vm, &l, vec![Compute, Compute, Compute, Compute]);
    l.vcpu().regs.lock().set_cap(CAP_MTRAP_EXIT, 1).unwrap();
    let step = |rip| {
        let e = vm.run(&l).unwrap();
        assert_eq!((e.kind, e.rip), (ExitKind::Mtrap, rip));
    };
    step(1);
    l.vcpu().regs.lock().inject_exception(13, Some(0), false).unwrap();
    step(1);
    assert_eq!(*taken.lock().unwrap(), [13], "delivered, no instruction run");
    step(2);
    assert!(l.vcpu().vlapic.inject_nmi());
    step(2);
    step(3);
    assert_eq!(*taken.lock().unwrap(), [13, 2]);
}

/// An instruction that exited and is restarted (VM_RESTART_INSTRUCTION:
/// RIP left at it) runs again, a script's too, instead of the script's
/// next action; a restarted load delivers no value until it completes.
#[test]
fn a_restarted_instruction_runs_again() {
    use crate::exit::MmioAccess;
    use crate::regs::reg::RAX;
    let vm = Vm::with_sim_backend("restart", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let dev = 0xd000_0000;
    let script = vec![
        Compute,
        MmioWrite { gpa: dev, size: 4, value: 0x55 },
        MmioRead { gpa: dev, size: 4 },
        PortOut { port: 0x81, size: 1, value: 0 },
    ];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    let restart = || l.vcpu().regs.lock().restart_instruction();
    let store = ExitKind::Mmio(MmioAccess { gpa: dev, size: 4, write: true, value: 0x55 });
    let load = ExitKind::Mmio(MmioAccess { gpa: dev, size: 4, write: false, value: 0 });
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (store, 1));
    restart();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (store, 1), "the store again");
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (load, 2));
    l.vcpu().regs.lock().set(RAX as i32, 5).unwrap();
    restart();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (load, 2), "the load again");
    assert_eq!(vm.guest_stats(0).unwrap().last_read, 0, "no value for the abandoned load");
    l.vcpu().regs.lock().set(RAX as i32, 7).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (ExitKind::Inout { port: 0x81, bytes: 1, is_in: false, eax: 0 }, 3));
    assert_eq!(vm.guest_stats(0).unwrap().last_read, 7);
}

/// A script owes an EOI for every interrupt it takes, wherever it takes
/// it: one injected right after a wait's EOI, before the script's next
/// action, is EOIed at the next wait (which then does not halt), instead
/// of staying in service and blocking its vector for good.
#[test]
fn a_script_eois_an_interrupt_taken_between_its_waits() {
    crate::test_util::with_watchdog(20, || {
        use crate::vlapic::regs::LAPIC_BASE;
        let vm = Vm::with_sim_backend("owed-eoi", 1).unwrap();
        let l = vm.lock_one(0).unwrap();
        vm.activate_cpu(0).unwrap();
        let out = |port| PortOut { port, size: 1, value: 0 };
        let svr = MmioWrite { gpa: LAPIC_BASE + 0xf0, size: 4, value: 0x1ff };
        let script = vec![svr, out(0x80), EnableInterrupts, WaitInterruptEoi, out(0x81), WaitInterruptEoi, out(0x82)];
        vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
        let exit = |port| ExitKind::Inout { port, bytes: 1, is_in: false, eax: 0 };
        assert_eq!(vm.run(&l).unwrap().kind, exit(0x80), "SVR on");
        // Both pending: the wait takes 0x50 and EOIs it; 0x44 comes at
        // the entry after that EOI, before the OUT.
        vm.lapic_irq(0, 0x44).unwrap();
        vm.lapic_irq(0, 0x50).unwrap();
        let vlapic = &l.vcpu().vlapic;
        assert_eq!(vm.run(&l).unwrap().kind, exit(0x81));
        assert!(vlapic.isr().test(0x44), "taken during the OUT");
        // The second wait owes 0x44 its EOI: no halt (nothing else comes).
        assert_eq!(vm.run(&l).unwrap().kind, exit(0x82));
        assert_eq!(vm.guest_stats(0).unwrap().interrupts, 2);
        assert!(!vlapic.isr().test(0x44) && !vlapic.isr().test(0x50), "both EOIed");
    });
}

/// MONITOR, MWAIT and VMX instructions are #UD at the instruction,
/// without an exit to userland (FreeBSD's `vm_run`): each completes
/// nothing, so the guest's next instruction (here the script's next
/// action, as a #UD handler that skips it) starts at the same RIP. Under
/// VM_CAP_MASK_HWINTR the #UD waits; the instruction meets it again.
#[test]
fn monitor_mwait_and_vmx_instructions_are_ud_in_the_guest() {
    use crate::guest::RefusedInstruction::*;
    use crate::regs::CAP_MASK_HWINTR;
    let vm = Vm::with_sim_backend("ud", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    let script = vec![Compute, Refused(Monitor), Refused(Mwait), Refused(Vmx), out];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.rip), (ExitKind::Inout { port: 0x80, bytes: 1, is_in: false, eax: 0 }, 1));
    let gs = vm.guest_stats(0).unwrap();
    assert_eq!((gs.interrupts, gs.last_vector), (3, Some(6)), "three #UD");
    assert_eq!(l.vcpu().stats.get(Stat::Exception), 0, "not intercepted exceptions");

    // A #UD held back by VM_CAP_MASK_HWINTR: VM_RUN goes on; the second
    // VMCALL finds the first #UD still queued and raises none of its own.
    let script = vec![Refused(Vmx), Refused(Vmx), out, out];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    l.vcpu().regs.lock().set_cap(CAP_MASK_HWINTR, 1).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
    assert_eq!(vm.guest_stats(0).unwrap().interrupts, 0, "nothing taken while masked (a new guest's count)");
    l.vcpu().regs.lock().set_cap(CAP_MASK_HWINTR, 0).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
    let gs = vm.guest_stats(0).unwrap();
    assert_eq!((gs.interrupts, gs.last_vector), (1, Some(6)), "one #UD once unmasked");
}

/// CPUID exits to the run loop, which answers it in RAX..RDX from this
/// vCPU, its VM's topology, its x2APIC state and capabilities, counts it,
/// and goes on without returning to userland.
#[test]
fn cpuid_is_answered_in_the_run_loop_from_the_vcpu_and_its_vm() {
    use crate::cpuid::{self, GuestCpu};
    use crate::regs::reg::{RAX, RBX, RCX, RDX};
    use crate::regs::CAP_ENABLE_INVPCID;
    let vm = Vm::with_sim_backend("cpuid", 4).unwrap();
    vm.set_topology(1, 2, 2).unwrap();
    vm.set_x2apic_state(3, 1).unwrap();
    let l = vm.lock_one(3).unwrap();
    vm.activate_cpu(3).unwrap();
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    let script = vec![
        Cpuid { leaf: 1, subleaf: 0 },
        out,
        Cpuid { leaf: 0x4000_0000, subleaf: 0 },
        out,
        Cpuid { leaf: 0xb, subleaf: 1 },
        out,
        Cpuid { leaf: 7, subleaf: 0 },
        out,
    ];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    let mut guest =
        GuestCpu { vcpu_id: 3, cores: 2, threads: 2, x2apic: true, rdtscp: true, rdpid: true, invpcid: false };
    let regs = || {
        let r = l.vcpu().regs.lock();
        [RAX, RBX, RCX, RDX].map(|n| r.get(n as i32).unwrap())
    };
    l.vcpu().regs.lock().set(RBX as i32, u64::MAX).unwrap();
    for (leaf, subleaf) in [(1, 0), (0x4000_0000, 0), (0xb, 1)] {
        assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }), "no exit for CPUID");
        let want = cpuid::host().emulate(&guest, leaf, subleaf).map(u64::from);
        assert_eq!(regs(), want, "leaf {leaf:#x}.{subleaf}: upper halves cleared");
    }
    l.vcpu().regs.lock().set_cap(CAP_ENABLE_INVPCID, 1).unwrap();
    guest.invpcid = true;
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
    assert_eq!(regs(), cpuid::host().emulate(&guest, 7, 0).map(u64::from), "capabilities reach leaf 7");
    assert_eq!(regs()[2] & (1 << 22), 1 << 22, "RDPID");
    assert_eq!(regs()[1] & (1 << 10), 1 << 10, "INVPCID");
    assert_eq!(l.vcpu().stats.get(Stat::Cpuid), 4);
    assert_eq!(l.vcpu().stats.get(Stat::Userspace), 4, "one return to the caller per OUT");
}

/// The run loop's CPUID takes the subleaf from ECX (not another
/// register) and the VM's cores and threads each in its own place: leaf
/// 7's subleaf 0 has RDPID (always on) where subleaf 1 is zero; leaf 1
/// counts 4 cores of one thread as 4 logical processors, and the
/// topology leaves (0xB on Intel, 0x8000001D/E on AMD) tell them from 4
/// threads of one core.
#[test]
fn cpuid_in_the_run_loop_takes_the_subleaf_from_ecx_and_keeps_cores_and_threads_apart() {
    use crate::cpuid::{self, GuestCpu};
    use crate::regs::reg::{RAX, RBX, RCX, RDX};
    let vm = Vm::with_sim_backend("cpuid-topo", 4).unwrap();
    vm.set_topology(1, 4, 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    let leaves = [(7, 0), (1, 0), (0xb, 0), (0xb, 1), (0x8000_001d, 0), (0x8000_001d, 2), (0x8000_001e, 0)];
    let script = leaves.iter().flat_map(|&(leaf, subleaf)| [Cpuid { leaf, subleaf }, out]).collect();
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    let guest = GuestCpu { vcpu_id: 0, cores: 4, threads: 1, x2apic: false, rdtscp: true, rdpid: true, invpcid: false };
    let swapped = GuestCpu { cores: 1, threads: 4, ..guest };
    // An x86 host's leaves tell cores from threads; elsewhere the bare
    // model has no topology leaf, and only the subleaf checks below apply.
    let tells_apart =
        leaves.iter().any(|&(leaf, sub)| cpuid::host().emulate(&guest, leaf, sub) != cpuid::host().emulate(&swapped, leaf, sub));
    assert!(tells_apart || !cfg!(target_arch = "x86_64"), "a topology leaf of this host tells cores from threads");
    // Another register holding a subleaf of 1 must not be taken for ECX.
    l.vcpu().regs.lock().set(RBX as i32, 1).unwrap();
    let regs = || {
        let r = l.vcpu().regs.lock();
        [RAX, RBX, RCX, RDX].map(|n| r.get(n as i32).unwrap())
    };
    for (leaf, subleaf) in leaves {
        assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }), "no exit for CPUID");
        assert_eq!(regs(), cpuid::host().emulate(&guest, leaf, subleaf).map(u64::from), "leaf {leaf:#x}.{subleaf}");
        if leaf == 7 {
            assert_eq!(regs()[2] & (1 << 22), 1 << 22, "subleaf 0: RDPID");
        }
        if leaf == 1 {
            assert_eq!(regs()[1] >> 16 & 0xff, 4, "4 logical processors");
        }
    }
}

/// RDTSC runs in the guest: the TSC moves on, a WRMSR of the TSC sets it,
/// VM_REINIT clears the offset. RDTSCP and RDPID read TSC_AUX.
#[test]
fn the_guest_tsc_counts_takes_writes_and_rdtscp_reads_tsc_aux() {
    use crate::regs::reg::{RAX, RCX, RDX};
    use crate::tsc::host_tsc;
    let vm = Vm::with_sim_backend("tsc", 1).unwrap();
    vm.activate_cpu(0).unwrap();
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    let run_script = |script: Vec<crate::guest::GuestAction>| {
        let l = vm.lock_one(0).unwrap();
        vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
        assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
        let r = l.vcpu().regs.lock();
        [RAX, RCX, RDX].map(|n| r.get(n as i32).unwrap())
    };
    let edx_eax = |r: [u64; 3]| (r[2] << 32) | r[0];

    let before = host_tsc();
    let r = run_script(vec![Rdtsc, out]);
    let t = edx_eax(r);
    assert!(t >= before && t <= host_tsc(), "offset 0: the shared clock");
    assert_eq!(vm.guest_stats(0).unwrap().last_read, t, "the read result");

    let target = 0x1234_5678_9abc_0000u64;
    let start = host_tsc();
    let r = run_script(vec![Wrmsr { msr: 0x10, value: target }, Rdtsc, out]);
    let t = edx_eax(r);
    assert!(t >= target && t - target <= host_tsc() - start, "{t:#x} just past {target:#x}");
    let t2 = edx_eax(run_script(vec![Rdtsc, out]));
    assert!(t2 >= t, "and on from there");

    vm.vcpu(0).unwrap().regs.lock().set(RCX as i32, u64::MAX).unwrap();
    let r = run_script(vec![Wrmsr { msr: 0xc000_0103, value: 0xabcd }, Rdtscp, out]);
    assert_eq!(r[1], 0xabcd, "TSC_AUX in ECX, the upper half cleared");
    assert!(edx_eax(r) >= t2);
    let r = run_script(vec![Rdpid, out]);
    assert_eq!((r[0], vm.guest_stats(0).unwrap().last_read), (0xabcd, 0xabcd));
    assert_eq!(vm.guest_stats(0).unwrap().interrupts, 0, "no #UD: the capabilities are always on");

    vm.cpus().suspended = vm.active_cpus();
    vm.reinit(&vm.lock_all().unwrap()).unwrap();
    vm.activate_cpu(0).unwrap();
    let t3 = edx_eax(run_script(vec![Rdtsc, out]));
    assert!(t3 <= host_tsc(), "VM_REINIT cleared the offset: {t3:#x}");
    let l = vm.lock_one(0).unwrap();
    assert_eq!(l.vcpu().regs.lock().tsc_aux(), 0, "and TSC_AUX");
}

/// WRMSR and RDMSR to userland move their value in EDX:EAX, 32 bits in
/// each: a WRMSR's 64-bit value leaves RAX's upper half clear, and the
/// value RDMSR reads takes nothing from the upper half of RAX that
/// userland left there (as a 32-bit register half, it is not the MSR's).
#[test]
fn msr_values_to_and_from_userland_are_split_in_edx_eax() {
    use crate::regs::reg::{RAX, RDX};
    let vm = Vm::with_sim_backend("edxeax", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let script = vec![Wrmsr { msr: 0x3a, value: 0xaaaa_bbbb_cccc_dddd }, Rdmsr { msr: 0x3a }, PortOut { port: 0x80, size: 1, value: 0 }];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    let regs = || { let r = l.vcpu().regs.lock(); (r.get(RAX as i32).unwrap(), r.get(RDX as i32).unwrap()) };
    assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Wrmsr { msr: 0x3a, value: 0xaaaa_bbbb_cccc_dddd });
    assert_eq!(regs(), (0xcccc_dddd, 0xaaaa_bbbb), "RAX, RDX");
    assert_eq!(vm.run(&l).unwrap().kind, ExitKind::Rdmsr { msr: 0x3a });
    {
        let mut r = l.vcpu().regs.lock();
        r.set(RAX as i32, 0xffff_ffff_1111_2222).unwrap();
        r.set(RDX as i32, 0x3333_4444).unwrap();
    }
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x80, .. }));
    assert_eq!(vm.guest_stats(0).unwrap().last_read, 0x3333_4444_1111_2222);
}

/// Loads and stores where memory is mapped reach it in place, without an
/// exit, as through the nested page tables: what the guest stores, the
/// host sees; what the host writes, the guest loads. A store to a
/// read-only map (the boot ROM) fails VM_RUN with EFAULT, the instruction
/// left at RIP; addresses no map covers stay MMIO.
#[test]
fn guest_loads_and_stores_reach_ram_in_place_and_a_rom_store_faults() {
    use crate::error::Error;
    use crate::mem::{PROT_EXEC, PROT_READ};
    use crate::regs::reg::RAX;
    let vm = vm_with_ram("ram", 1, 0x10_0000);
    {
        let all = vm.lock_all().unwrap();
        let mut m = vm.mem_write(&all).unwrap();
        m.alloc_memseg(1, 0x1000, Some(b"bootrom")).unwrap();
        m.mmap_memseg(0xffff_f000, 1, 0, 0x1000, PROT_READ | PROT_EXEC, 0).unwrap();
    }
    vm.mem().write_gpa(0x2000, &0xfeed_face_cafe_f00du64.to_le_bytes()).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    let script = vec![
        MmioWrite { gpa: 0x1000, size: 4, value: 0x1234_5678 },
        MmioWrite { gpa: 0x1006, size: 2, value: 0xabcd },
        MmioRead { gpa: 0x2000, size: 8 },
        out,
        MmioRead { gpa: 0xffff_f000, size: 4 },
        out,
        MmioWrite { gpa: 0xffff_f000, size: 1, value: 0x90 },
        MmioRead { gpa: 0xc000_0000, size: 4 },
    ];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }), "no exit for RAM");
    let mut b = [0u8; 8];
    vm.mem().read_gpa(0x1000, &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 0xabcd_0000_1234_5678);
    assert_eq!(vm.guest_stats(0).unwrap().last_read, 0xfeed_face_cafe_f00d);
    assert_eq!(l.vcpu().regs.lock().get(RAX as i32), Ok(0xfeed_face_cafe_f00d));
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }), "the ROM reads");
    assert_eq!(l.vcpu().stats.get(Stat::InstEmul), 0);
    let rip = l.vcpu().regs.lock().rip();
    assert_eq!(vm.run(&l).unwrap_err(), Error::Fault, "a ROM store is EFAULT");
    assert_eq!(l.vcpu().regs.lock().rip(), rip + 1, "at the store");
    assert_eq!(vm.run(&l).unwrap_err(), Error::Fault, "retried, it faults again");
    assert_eq!(l.vcpu().stats.get(Stat::NestedFault), 2);
    // Userland skips it (as a debugger could).
    l.vcpu().regs.lock().set(crate::regs::reg::RIP as i32, rip + 2).unwrap();
    let mut rom = [0u8; 1];
    vm.mem().read_gpa(0xffff_f000, &mut rom).unwrap();
    assert_eq!(rom, [0], "the ROM unchanged");
    let e = vm.run(&l).unwrap();
    assert!(matches!(e.kind, ExitKind::Mmio(a) if a.gpa == 0xc000_0000 && !a.write), "no map: MMIO ({e:?})");
    assert_eq!(l.vcpu().stats.get(Stat::InstEmul), 1);
}

/// Guests loading and storing RAM on two vCPU threads while a control
/// thread unmaps and remaps it (lock-all, exclusive guest memory) and a
/// device thread writes it, then destroys the VM under them: no
/// deadlock, no panic; a guest's access is RAM when the map is there and
/// MMIO (an exit) when it is not, and its own store reads back.
#[test]
fn ram_accesses_race_unmaps_remaps_and_destroy() {
    use crate::error::Error;
    use crate::mem::{PROT_READ, PROT_WRITE};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    crate::test_util::with_watchdog(60, || {
        const LEN: usize = 0x10_0000;
        let vm = Arc::new(vm_with_ram("ramrace", 2, LEN));
        for id in 0..2u64 {
            let l = vm.lock_one(id as usize).unwrap();
            vm.activate_cpu(id as usize).unwrap();
            let gpa = 0x1000 + id * 8;
            let value = 0x1111_1111_1111_1111 * (id + 1);
            let script = vec![
                MmioWrite { gpa, size: 8, value },
                MmioRead { gpa, size: 8 },
                PortOut { port: 0x80, size: 1, value: 0 },
            ];
            vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, Some(0))))).unwrap();
        }
        let (ram_rounds, mmio_exits) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let runners: Vec<_> = (0..2u64)
            .map(|id| {
                let (vm, ram_rounds, mmio_exits) = (vm.clone(), ram_rounds.clone(), mmio_exits.clone());
                std::thread::spawn(move || loop {
                    let Ok(lock) = vm.lock_one(id as usize) else { return };
                    match vm.run(&lock) {
                        Ok(e) if matches!(e.kind, ExitKind::Mmio(_)) => {
                            mmio_exits.fetch_add(1, SeqCst);
                        }
                        Ok(e) if matches!(e.kind, ExitKind::Inout { .. }) => {
                            // The store and load of this round both found
                            // RAM only if the load read the store back.
                            let Ok(stats) = vm.guest_stats(id as usize) else { return };
                            if stats.last_read == 0x1111_1111_1111_1111 * (id + 1) {
                                ram_rounds.fetch_add(1, SeqCst);
                            }
                        }
                        Ok(_) => {}
                        Err(Error::Destroyed) => return,
                        Err(e) => panic!("vCPU {id}: {e:?}"),
                    }
                })
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let device = {
            let (vm, stop) = (vm.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let _ = vm.mem().write_gpa(0x2000, &[0x5a; 64]);
                }
            })
        };
        // Unmap until a guest has met the hole, remap until a guest has
        // used RAM again, ten times (the watchdog bounds the waits).
        let wait_for_more = |counter: &AtomicU64| {
            let seen = counter.load(SeqCst);
            while counter.load(SeqCst) == seen {
                std::thread::yield_now();
            }
        };
        for _ in 0..10 {
            {
                let all = vm.lock_all().unwrap();
                vm.mem_write(&all).unwrap().munmap_memseg(0, LEN).unwrap();
            }
            wait_for_more(&mmio_exits);
            {
                let all = vm.lock_all().unwrap();
                vm.mem_write(&all).unwrap().mmap_memseg(0, 0, 0, LEN, PROT_READ | PROT_WRITE, 0).unwrap();
            }
            wait_for_more(&ram_rounds);
        }
        vm.destroy();
        stop.store(true, SeqCst);
        for r in runners {
            r.join().unwrap();
        }
        device.join().unwrap();
    });
}

/// A guest's CALL, JMP or IRET to a TSS exits as a task switch at the
/// instruction; an interrupt or exception delivered through a task gate
/// of the guest's IDT (protected mode, read from guest RAM, through the
/// page tables when paging is on) exits as one too, the guest not taking
/// the vector, the event left in the exit intinfo; other gates, and real
/// mode, deliver as before.
#[test]
fn task_switches_by_instruction_and_through_idt_task_gates() {
    use crate::exit::{TaskSwitch as Ts, TaskSwitchReason};
    use crate::regs::intinfo;
    use crate::regs::reg::{CR0, CR3, IDTR};
    use crate::regs::SegDesc;
    let vm = vm_with_ram("tss", 1, 0x10_0000);
    // The IDT at 0x3000: a task gate (TSS 0x30) for 0x41, a task gate
    // (TSS 0x38) for #GP, an interrupt gate for 0x52.
    let gate = |sel: u16, access: u8| [0, 0, sel as u8, (sel >> 8) as u8, 0, access, 0, 0];
    let mem = vm.mem();
    mem.write_gpa(0x3000 + 0x41 * 8, &gate(0x30, 0x85)).unwrap();
    mem.write_gpa(0x3000 + 13 * 8, &gate(0x38, 0xe5)).unwrap();
    mem.write_gpa(0x3000 + 0x52 * 8, &gate(0x08, 0x8e)).unwrap();
    drop(mem);
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    assert_eq!(vm.mmio_write(0, crate::vlapic::regs::LAPIC_BASE + 0xF0, 4, 0x1FF), Ok(Some(())));
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    let script = vec![
        TaskSwitch { tsssel: 0x28, reason: TaskSwitchReason::Jmp },
        EnableInterrupts,
        Compute,
        Compute,
        out,
    ];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, Some(1))))).unwrap();
    let regs = || l.vcpu().regs.lock();
    {
        let mut r = regs();
        r.set(CR0 as i32, 1).unwrap(); // protected mode, no paging
        r.set_seg(IDTR as i32, SegDesc { base: 0x3000, limit: 0x7ff, access: 0 }).unwrap();
    }
    let plain = |tsssel, reason| Ts { tsssel, reason, ext: false, errcode: None };

    let e = vm.run(&l).unwrap();
    assert_eq!(e.kind, ExitKind::TaskSwitch(plain(0x28, TaskSwitchReason::Jmp)));
    assert_eq!((e.rip, e.inst_length), (0, 1), "at the JMP");
    assert_eq!(regs().intinfo().0, 0);

    // An interrupt through the task gate.
    vm.lapic_irq(0, 0x41).unwrap();
    let e = vm.run(&l).unwrap();
    let gated = Ts { tsssel: 0x30, reason: TaskSwitchReason::IdtGate, ext: true, errcode: None };
    assert_eq!(e.kind, ExitKind::TaskSwitch(gated));
    assert_eq!(e.inst_length, 0);
    assert_eq!(regs().intinfo().0, intinfo::VALID | intinfo::HWINTR | 0x41, "the event, pending");
    assert_eq!(vm.guest_stats(0).unwrap().interrupts, 0, "the guest did not take it");
    // Userland switched tasks: it clears the event and goes on.
    regs().set_exitintinfo(0).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));

    // An exception with an error code (VM_INJECT_EXCEPTION) through the
    // other gate, whatever its DPL.
    regs().inject_exception(13, Some(0x18), true).unwrap();
    let e = vm.run(&l).unwrap();
    let gp = Ts { tsssel: 0x38, reason: TaskSwitchReason::IdtGate, ext: true, errcode: Some(0x18) };
    assert_eq!(e.kind, ExitKind::TaskSwitch(gp));
    regs().set_exitintinfo(0).unwrap();

    // An interrupt gate: taken as usual (0x41 is still in service: the
    // new task would EOI it; 0x52 is of a higher class).
    vm.lapic_irq(0, 0x52).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
    assert_eq!(vm.guest_stats(0).unwrap().last_vector, Some(0x52));
    assert_eq!(vm.mmio_write(0, crate::vlapic::regs::LAPIC_BASE + 0xB0, 4, 0), Ok(Some(())));
    assert_eq!(vm.mmio_write(0, crate::vlapic::regs::LAPIC_BASE + 0xB0, 4, 0), Ok(Some(())));

    // Paging on: the IDT's linear address goes through the page tables
    // (32-bit paging: directory at 0x10000, table at 0x11000, the page
    // at linear 0x4000_0000 is 0x3000).
    {
        let mem = vm.mem();
        mem.write_gpa(0x10000 + 0x100 * 4, &(0x11000u32 | 3).to_le_bytes()).unwrap();
        mem.write_gpa(0x11000, &(0x3000u32 | 3).to_le_bytes()).unwrap();
        let mut r = regs();
        r.set(CR3 as i32, 0x10000).unwrap();
        r.set(CR0 as i32, 1 | (1 << 31)).unwrap();
        r.set_seg(IDTR as i32, SegDesc { base: 0x4000_0000, limit: 0x7ff, access: 0 }).unwrap();
    }
    vm.lapic_irq(0, 0x41).unwrap();
    assert_eq!(vm.run(&l).unwrap().kind, ExitKind::TaskSwitch(gated));
    regs().set_exitintinfo(0).unwrap();

    assert_eq!(vm.mmio_write(0, crate::vlapic::regs::LAPIC_BASE + 0xB0, 4, 0), Ok(Some(())));

    // Real mode: no task gates.
    regs().set(CR0 as i32, 0).unwrap();
    let before = vm.guest_stats(0).unwrap().interrupts;
    vm.lapic_irq(0, 0x41).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
    assert_eq!(vm.guest_stats(0).unwrap().interrupts, before + 1);
}

/// The IDT is read with read rights only: a gate on a page the guest's
/// page tables map read-only is found with CR0.WP set, and the walk
/// leaves the page's dirty bit clear (a write walk would refuse the page
/// or set the bit).
#[test]
fn an_idt_on_a_read_only_page_is_read_without_write_rights() {
    use crate::exit::{TaskSwitch as Ts, TaskSwitchReason::IdtGate};
    use crate::regs::reg::{CR0, CR3, IDTR};
    use crate::regs::SegDesc;
    let vm = vm_with_ram("idt-ro", 1, 0x10_0000);
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    {
        let mem = vm.mem();
        // 0x4000_0000 -> page table 0x11000 -> 0x3000, present, read-only.
        mem.write_gpa(0x10000 + 0x100 * 4, &(0x11000u32 | 7).to_le_bytes()).unwrap();
        mem.write_gpa(0x11000, &(0x3000u32 | 1).to_le_bytes()).unwrap();
        mem.write_gpa(0x3000 + 2 * 8, &[0, 0, 0x30, 0, 0, 0x85, 0, 0]).unwrap();
    }
    {
        let mut r = l.vcpu().regs.lock();
        r.set(CR3 as i32, 0x10000).unwrap();
        r.set(CR0 as i32, 1 | (1 << 16) | (1 << 31)).unwrap();
        r.set_seg(IDTR as i32, SegDesc { base: 0x4000_0000, limit: 0x7ff, access: 0 }).unwrap();
        assert_eq!(r.paging().cpl, 0);
    }
    // Without the gate the NMI is taken in place and the OUT exits.
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(vec![Compute, out], Some(0))))).unwrap();
    vm.inject_nmi(0).unwrap();
    let gated = Ts { tsssel: 0x30, reason: IdtGate, ext: true, errcode: None };
    assert_eq!(vm.run(&l).unwrap().kind, ExitKind::TaskSwitch(gated));
    let mut pte = [0u8; 4];
    vm.mem().read_gpa(0x11000, &mut pte).unwrap();
    assert_eq!(u32::from_le_bytes(pte) & (1 << 6), 0, "not dirtied");
}

/// The IDT entry as the processor finds it: only a present system
/// descriptor of type 5 is a task gate; the limit must cover all 8 bytes;
/// protected mode only (not real or long mode); read with supervisor
/// rights whatever the guest's CPL; the 32-bit base wraps; an entry may
/// straddle two pages. INT3 (a software exception) and NMI (external)
/// through a gate; the #GP's error code in the exit intinfo; RIP where
/// the event struck.
#[test]
fn idt_task_gates_are_found_as_the_processor_finds_them() {
    use crate::exit::{TaskSwitch as Ts, TaskSwitchReason::IdtGate};
    use crate::regs::intinfo;
    use crate::regs::reg::{CR0, CR3, CS, EFER, IDTR, SS};
    use crate::regs::SegDesc;
    let vm = vm_with_ram("idt", 1, 0x10_0000);
    let entry = |base: u64, vector: u64, access: u8| {
        let d = [0, 0, 0x30, 0, 0, access, 0, 0];
        vm.mem().write_gpa(base + vector * 8, &d).unwrap();
    };
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let regs = || l.vcpu().regs.lock();
    let idtr = |base: u64, limit: u32| regs().set_seg(IDTR as i32, SegDesc { base, limit, access: 0 }).unwrap();
    regs().set(CR0 as i32, 1).unwrap();
    // A guest that sits in a loop with interrupts on; `check` injects an
    // NMI and tells whether it met a task gate (then clears the event).
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(vec![Compute, out], Some(0))))).unwrap();
    let gated = Ts { tsssel: 0x30, reason: IdtGate, ext: true, errcode: None };
    let check = || {
        vm.inject_nmi(0).unwrap();
        let e = vm.run(&l).unwrap();
        let hit = e.kind == ExitKind::TaskSwitch(gated);
        if hit {
            assert_eq!(regs().intinfo().0, intinfo::VALID | intinfo::NMI | 2);
            regs().set_exitintinfo(0).unwrap();
        } else {
            assert!(matches!(e.kind, ExitKind::Inout { .. }), "{e:?}");
        }
        hit
    };
    idtr(0x3000, 0x7ff);
    entry(0x3000, 2, 0x85);
    assert!(check(), "a task gate");
    entry(0x3000, 2, 0x95);
    assert!(!check(), "type 5 with the system bit clear is no gate");
    entry(0x3000, 2, 0x05);
    assert!(!check(), "not present");
    entry(0x3000, 2, 0xe5);
    idtr(0x3000, 2 * 8 + 7);
    assert!(check(), "the limit covers the entry exactly (any DPL)");
    idtr(0x3000, 2 * 8 + 6);
    assert!(!check(), "a byte short");
    idtr(0x3000, 0x7ff);
    regs().set(CR0 as i32, 0).unwrap();
    assert!(!check(), "real mode");
    regs().set(CR0 as i32, 1 | (1 << 31)).unwrap();
    regs().set(EFER as i32, (1 << 8) | (1 << 10)).unwrap();
    regs().set_seg(CS as i32, SegDesc { base: 0, limit: 0xffff_ffff, access: 0xa09b }).unwrap();
    assert!(!check(), "long mode");
    regs().set(EFER as i32, 0).unwrap();
    regs().set_seg(CS as i32, SegDesc { base: 0, limit: 0xffff_ffff, access: 0xc09b }).unwrap();
    regs().set(CR0 as i32, 1).unwrap();

    // The base wraps at 4 GiB; an entry straddling two pages is read.
    idtr(0xffff_fff0, 0x7ff); // entry 2 at 0x1_0000_0000: linear 0
    vm.mem().write_gpa(0, &[0, 0, 0x30, 0, 0, 0x85, 0, 0]).unwrap();
    assert!(check(), "wrapped");
    idtr(0x3ff8 - 2 * 8 + 4, 0x7ff); // entry 2 at 0x3ffc..0x4004
    entry(0x3ff8 - 2 * 8 + 4, 2, 0x85);
    assert!(check(), "across two pages");

    // CPL 3 with paging and a supervisor-only IDT page (no U bit): the
    // processor's own read still finds the gate.
    {
        let mem = vm.mem();
        mem.write_gpa(0x10000 + 0x100 * 4, &(0x11000u32 | 7).to_le_bytes()).unwrap();
        mem.write_gpa(0x11000, &(0x3000u32 | 3).to_le_bytes()).unwrap();
    }
    entry(0x3000, 2, 0x85);
    regs().set(CR3 as i32, 0x10000).unwrap();
    regs().set(CR0 as i32, 1 | (1 << 31)).unwrap();
    regs().set_seg(SS as i32, SegDesc { base: 0, limit: 0xffff_ffff, access: 0xc0f3 }).unwrap();
    idtr(0x4000_0000, 0x7ff);
    assert_eq!(regs().paging().cpl, 3);
    assert!(check(), "CPL 3, supervisor page");
    // An entry across two pages the page tables map apart: each half is
    // read from its own page (the RAM that follows the first is no gate).
    {
        let mem = vm.mem();
        mem.write_gpa(0x11000 + 4, &(0x5000u32 | 3).to_le_bytes()).unwrap();
        mem.write_gpa(0x3ffc, &[0, 0, 0x30, 0]).unwrap();
        mem.write_gpa(0x4000, &[0; 4]).unwrap();
        mem.write_gpa(0x5000, &[0, 0x85, 0, 0]).unwrap();
    }
    idtr(0x4000_0ffc - 2 * 8, 0x7ff);
    assert!(check(), "across two pages mapped apart");
    idtr(0x4000_0000, 0x7ff);

    // #GP with its error code: in the exit intinfo too; RIP where it struck.
    entry(0x3000, 13, 0x85);
    let rip = regs().nextrip;
    regs().inject_exception(13, Some(0x18), true).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!(e.kind, ExitKind::TaskSwitch(Ts { errcode: Some(0x18), ..gated }));
    assert_eq!((e.rip, e.inst_length), (rip, 0));
    assert_eq!(regs().intinfo().0, intinfo::VALID | intinfo::HWEXCEPTION | intinfo::DEL_ERRCODE | 13 | (0x18 << 32));
    regs().set_exitintinfo(0).unwrap();

    // INT3 through a gate: a software exception, at the INT3.
    entry(0x3000, 3, 0x85);
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(vec![Compute, Breakpoint, out], None)))).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!(e.kind, ExitKind::TaskSwitch(Ts { ext: false, ..gated }));
    assert_eq!(e.inst_length, 1);
    assert_eq!(regs().intinfo().0, intinfo::VALID | intinfo::SWEXCEPTION | 3);
    assert_eq!(vm.guest_stats(0).unwrap().interrupts, 0);
    regs().set_exitintinfo(0).unwrap();

    // A debugger's #BP (injected as a hardware exception, delivered as a
    // software one) and a re-injected INT n: not external, their length
    // that of VM-entry.
    regs().set(crate::regs::reg::ENTRY_INST_LENGTH as i32, 1).unwrap();
    regs().inject_exception(3, None, false).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.inst_length), (ExitKind::TaskSwitch(Ts { ext: false, ..gated }), 1));
    assert_eq!(regs().intinfo().0, intinfo::VALID | intinfo::SWEXCEPTION | 3);
    regs().set_exitintinfo(0).unwrap();
    // #OF likewise; an error code given with it is not the exit's (FreeBSD
    // reports one only for an external event: bhyve asserts as much).
    entry(0x3000, 4, 0x85);
    regs().inject_exception(4, Some(0x18), false).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.inst_length), (ExitKind::TaskSwitch(Ts { ext: false, ..gated }), 1));
    entry(0x3000, 0x80, 0x85);
    regs().set(crate::regs::reg::ENTRY_INST_LENGTH as i32, 2).unwrap();
    regs().set_exitintinfo(intinfo::VALID | intinfo::SWINTR | 0x80).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!((e.kind, e.inst_length), (ExitKind::TaskSwitch(Ts { ext: false, ..gated }), 2));
    assert_eq!(regs().intinfo().0, intinfo::VALID | intinfo::SWINTR | 0x80);
}

/// VM_CAP_RFLAGS_TF (FreeBSD's SVM stepping): each completed instruction
/// is a debug exit at the next RIP, counted as an exception exit; an
/// instruction that exits by itself is reported as such; the guest
/// clearing TF (a debugger's register write) ends it; off, the guest's
/// TF comes back.
#[test]
fn rflags_tf_steps_the_guest_with_debug_exits() {
    use crate::regs::reg::RFLAGS;
    use crate::regs::{CAP_RFLAGS_TF, RFLAGS_TF};
    let vm = Vm::with_sim_backend("tf", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let out = PortOut { port: 0x80, size: 1, value: 0 };
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(vec![Compute, Compute, out, Compute], Some(0))))).unwrap();
    l.vcpu().regs.lock().set_cap(CAP_RFLAGS_TF, 1).unwrap();
    let rip0 = l.vcpu().regs.lock().rip();
    for i in 1..=2 {
        let e = vm.run(&l).unwrap();
        assert_eq!((e.kind, e.rip, e.inst_length), (ExitKind::DebugTrap, rip0 + i, 0));
    }
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }), "the OUT exits as itself");
    assert_eq!(vm.run(&l).unwrap().kind, ExitKind::DebugTrap);
    assert_eq!(l.vcpu().stats.get(Stat::Exception), 3);
    // The debugger clears TF: no more traps.
    let rflags = l.vcpu().regs.lock().get(RFLAGS as i32).unwrap();
    l.vcpu().regs.lock().set(RFLAGS as i32, rflags & !RFLAGS_TF).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { .. }));
    l.vcpu().regs.lock().set_cap(CAP_RFLAGS_TF, 0).unwrap();
    assert_eq!(l.vcpu().regs.lock().get(RFLAGS as i32).unwrap() & RFLAGS_TF, 0, "the guest's TF (clear)");
}

/// Stepping over a HLT that halts the guest in place (no
/// VM_CAP_HALT_EXIT, events masked as bhyve's gdb stub masks them)
/// returns at once, with either way of stepping, and keeps returning
/// while the guest stays halted.
#[test]
fn a_step_over_a_halting_hlt_returns() {
    use crate::regs::{CAP_HALT_EXIT, CAP_MASK_HWINTR, CAP_RFLAGS_TF};
    crate::test_util::with_watchdog(20, || {
        for (cap, exit) in [(CAP_MTRAP_EXIT, ExitKind::Mtrap), (CAP_RFLAGS_TF, ExitKind::DebugTrap)] {
            let vm = Vm::with_sim_backend("hltstep", 1).unwrap();
            let l = vm.lock_one(0).unwrap();
            vm.activate_cpu(0).unwrap();
            vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(vec![Compute, Hlt], None)))).unwrap();
            {
                let mut r = l.vcpu().regs.lock();
                r.set_cap(CAP_HALT_EXIT, 0).unwrap();
                r.set_cap(CAP_MASK_HWINTR, 1).unwrap();
                r.set_cap(cap, 1).unwrap();
            }
            for _ in 0..3 {
                assert_eq!(vm.run(&l).unwrap().kind, exit);
            }
            assert!(l.vcpu().regs.lock().halted);
        }
    });
}

/// A debugger stepping a guest halted in its HLT state (no
/// VM_CAP_HALT_EXIT, events not masked) gets no step exit in the HLT once
/// an event that ends it is pending: the HLT ends and the entry delivers
/// the event (here an NMI), as VMX leaves the HLT state for an event
/// before its MTF exit.
#[test]
fn a_step_of_a_halted_guest_with_an_event_pending_delivers_the_event() {
    use crate::regs::CAP_HALT_EXIT;
    crate::test_util::with_watchdog(20, || {
        let vm = Vm::with_sim_backend("hltstep-nmi", 1).unwrap();
        vm.activate_cpu(0).unwrap();
        let run = || vm.run(&vm.lock_one(0).unwrap()).unwrap();
        {
            let l = vm.lock_one(0).unwrap();
            let script = vec![Compute, Hlt, PortOut { port: 0x80, size: 1, value: 0 }];
            vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
            let mut r = l.vcpu().regs.lock();
            r.set_cap(CAP_HALT_EXIT, 0).unwrap();
            r.set_cap(CAP_MTRAP_EXIT, 1).unwrap();
        }
        assert_eq!(run().kind, ExitKind::Mtrap);
        assert_eq!(run().kind, ExitKind::Mtrap);
        assert!(vm.vcpu(0).unwrap().regs.lock().halted, "the HLT done, the guest halted");
        vm.inject_nmi(0).unwrap();
        let _ = run();
        assert!(!vm.vcpu(0).unwrap().regs.lock().halted, "the NMI ended the HLT");
        assert_eq!(vm.guest_stats(0).unwrap().last_vector, Some(2));
    });
}

/// FreeBSD's VMX exit handler (`vmx_exit_process`, EXIT_REASON_INOUT)
/// fills `u.inout.eax` with the guest's EAX for an `in` as for an `out`,
/// and bhyve's `emulate_inout` merges the value it reads into that EAX
/// (`eax &= ~mask; eax |= val & mask`) before setting RAX: an `inb`
/// emulated in userland keeps the guest's AH and EAX bits 16-31, as the
/// kernel's own `emulate_inout_port` does. Reporting 0 made bhyve zero
/// them.
#[test]
fn an_in_exit_reports_the_guests_eax_and_an_out_only_its_bytes() {
    use crate::regs::reg::RAX;
    let vm = Vm::with_sim_backend("in_eax", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let script = vec![PortIn { port: 0x80, size: 1 }, PortIn { port: 0x3f8, size: 2 }, PortOut { port: 0x80, size: 1, value: 0x1234 }];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    l.vcpu().regs.lock().set(RAX as i32, 0x1_aabb_ccdd).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!(e.kind, ExitKind::Inout { port: 0x80, bytes: 1, is_in: true, eax: 0xaabb_ccdd });
    l.vcpu().regs.lock().set(RAX as i32, 0x1122_3344).unwrap();
    let e = vm.run(&l).unwrap();
    assert_eq!(e.kind, ExitKind::Inout { port: 0x3f8, bytes: 2, is_in: true, eax: 0x1122_3344 });
    // An `out` reports the bytes it writes, and nothing above them.
    let e = vm.run(&l).unwrap();
    assert_eq!(e.kind, ExitKind::Inout { port: 0x80, bytes: 1, is_in: false, eax: 0x34 });
}

/// An NMI or interrupt still pending when an entry injects another event
/// comes right after that event, before the guest's next instruction:
/// FreeBSD's `vmx_inject_interrupts` then sets NMI- or interrupt-window
/// exiting (`svm_inject_interrupts` the VINTR intercept), and the window
/// is open as soon as the event is delivered (after an ExtINT too). The
/// guest here takes its events at once (its handlers run in no time), so
/// nothing blocks them.
#[test]
fn what_an_injected_event_holds_back_comes_right_after_it() {
    use crate::regs::reg::RFLAGS;
    crate::test_util::with_watchdog(20, || {
        let vm = Vm::with_sim_backend("window", 1).unwrap();
        let l = vm.lock_one(0).unwrap();
        vm.activate_cpu(0).unwrap();
        assert_eq!(vm.mmio_write(0, crate::vlapic::regs::LAPIC_BASE + 0xf0, 4, 0x1ff), Ok(Some(())));
        let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = PortOut { port: 0x80, size: 1, value: 0 };
        let run = |what: &str, flags: u64, want: &[(usize, u8)]| {
            let mut actions = vec![Compute; 50];
            actions.push(out);
            let log = Probe { actions, pc: 0, taken: taken.clone() };
            vm.set_guest(&l, Some(Box::new(log))).unwrap();
            l.vcpu().regs.lock().set(RFLAGS as i32, flags).unwrap();
            assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x80, .. }), "{what}");
            assert_eq!(std::mem::take(&mut *taken.lock().unwrap()), want, "{what}");
        };
        // An exception, then the NMI (interrupts disabled or not).
        vm.inject_exception(l.vcpu(), 6, None, false).unwrap();
        vm.inject_nmi(0).unwrap();
        run("#UD and NMI", 0x2, &[(0, 6), (0, 2)]);
        // An exception, then the interrupt the guest accepts.
        vm.inject_exception(l.vcpu(), 6, None, false).unwrap();
        vm.lapic_irq(0, 0x40).unwrap();
        run("#UD and an interrupt", 0x202, &[(0, 6), (0, 0x40)]);
        vm.mmio_write(0, crate::guest::LAPIC_EOI_GPA, 4, 0).unwrap();
        // An NMI, then the interrupt.
        vm.inject_nmi(0).unwrap();
        vm.lapic_irq(0, 0x40).unwrap();
        run("NMI and an interrupt", 0x202, &[(0, 2), (0, 0x40)]);
        vm.mmio_write(0, crate::guest::LAPIC_EOI_GPA, 4, 0).unwrap();
        // An ExtINT (the 8259's vector, master at 0x20), then the APIC
        // vector it went before.
        let icws = [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01)];
        for (port, val) in icws.into_iter().chain([(0xa0, 0x11), (0xa1, 0x28), (0xa1, 0x02), (0xa1, 0x01)]) {
            assert_eq!(vm.emulate_inout(port, 1, false, val), Some(Ok(None)), "8259 port {port:#x}");
        }
        let lint0 = crate::vlapic::regs::LAPIC_BASE + 0x350;
        assert_eq!(vm.mmio_write(0, lint0, 4, 0x700), Ok(Some(())), "LINT0: ExtINT");
        vm.isa_pulse_irq(1, -1).unwrap();
        vm.lapic_irq(0, 0x40).unwrap();
        run("ExtINT and an interrupt", 0x202, &[(0, 0x21), (0, 0x40)]);
        vm.mmio_write(0, crate::guest::LAPIC_EOI_GPA, 4, 0).unwrap();
        // Interrupts disabled: the interrupt waits (for good, here).
        vm.inject_exception(l.vcpu(), 6, None, false).unwrap();
        vm.lapic_irq(0, 0x40).unwrap();
        run("#UD, an interrupt held by IF", 0x2, &[(0, 6)]);
    });
}

/// An exception injected without restarting the instruction that exited
/// comes after it, as a trap: that instruction completed, so an `in` gets
/// the value userland left in RAX before the guest takes the exception
/// (FreeBSD: the guest resumes past it, `nextrip`, with RAX as set, and
/// the exception's handler returns there). Restarted, it completes
/// nothing and its value never arrives.
#[test]
fn an_exception_injected_past_an_in_comes_after_the_value() {
    use crate::regs::reg::RAX;
    let vm = Vm::with_sim_backend("trapin", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let script = vec![PortIn { port: 0x60, size: 1 }, PortOut { port: 0x80, size: 1, value: 0 }];
    for restart in [true, false] {
        vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script.clone(), None)))).unwrap();
        l.vcpu().regs.lock().set(crate::regs::reg::RIP as i32, 0).unwrap();
        assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x60, .. }));
        l.vcpu().regs.lock().set(RAX as i32, 0x55).unwrap();
        vm.inject_exception(l.vcpu(), 6, None, restart).unwrap();
        assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x80, .. }));
        let gs = vm.guest_stats(0).unwrap();
        let want = if restart { 0 } else { 0x55 };
        assert_eq!((gs.last_vector, gs.last_read), (Some(6), want), "restart {restart}");
    }
}

/// An event window the entry work asked for is that entry's only: an
/// event that met a task gate exits before the guest could take what it
/// held back (that comes at the entry after the task switch), and
/// VM_REINIT starts every vCPU without one (FreeBSD builds a fresh VMCS,
/// no NMI- or interrupt-window exiting). Left over, it made the first
/// entry after VM_REINIT a spurious exit.
#[test]
fn a_window_left_by_a_task_gate_exit_does_not_outlive_vm_reinit() {
    use crate::regs::reg::{CR0, IDTR};
    use crate::regs::SegDesc;
    let vm = vm_with_ram("winreinit", 1, 0x10_0000);
    // #UD through a task gate (TSS 0x30); the NMI's entry is no gate.
    vm.mem().write_gpa(0x3000 + 6 * 8, &[0, 0, 0x30, 0, 0, 0x85, 0, 0]).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let script = vec![PortOut { port: 0x80, size: 1, value: 0 }];
    vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
    {
        let mut r = l.vcpu().regs.lock();
        r.set(CR0 as i32, 1).unwrap();
        r.set_seg(IDTR as i32, SegDesc { base: 0x3000, limit: 0x7ff, access: 0 }).unwrap();
    }
    vm.inject_exception(l.vcpu(), 6, None, false).unwrap();
    vm.inject_nmi(0).unwrap();
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::TaskSwitch(_)));
    drop(l);
    vm.cpus().suspended = vm.active_cpus();
    vm.reinit(&vm.lock_all().unwrap()).unwrap();
    vm.activate_cpu(0).unwrap();
    let l = vm.lock_one(0).unwrap();
    let entries = vm.guest_stats(0).unwrap().entries;
    assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x80, .. }));
    assert_eq!(vm.guest_stats(0).unwrap().entries - entries, 1, "one entry, no window");
    let st = vm.vcpu_stats(0, 0, 64).unwrap();
    assert_eq!(st[Stat::VmExits as usize], 1, "the OUT alone");
}

/// Only an exception abandons the instruction the guest is restarted at
/// (the sim's stand-in for a fault of it): an external interrupt or NMI
/// re-injected there from the exit intinfo (VM_SET_INTINFO, a snapshot
/// restored) comes between instructions, so the restarted `in` runs
/// after it and exits again.
#[test]
fn a_reinjected_interrupt_does_not_abandon_a_restarted_instruction() {
    use crate::regs::intinfo;
    let vm = Vm::with_sim_backend("reinj", 1).unwrap();
    let l = vm.lock_one(0).unwrap();
    vm.activate_cpu(0).unwrap();
    let script = vec![PortIn { port: 0x60, size: 1 }, PortOut { port: 0x80, size: 1, value: 0 }];
    for info in [intinfo::VALID | intinfo::HWINTR | 0x41, intinfo::VALID | intinfo::NMI | 2] {
        vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script.clone(), None)))).unwrap();
        l.vcpu().regs.lock().set(crate::regs::reg::RIP as i32, 0).unwrap();
        assert!(matches!(vm.run(&l).unwrap().kind, ExitKind::Inout { port: 0x60, .. }));
        {
            let mut r = l.vcpu().regs.lock();
            r.restart_instruction();
            r.set_exitintinfo(info).unwrap();
        }
        let e = vm.run(&l).unwrap();
        assert!(matches!(e.kind, ExitKind::Inout { port: 0x60, .. }), "{info:#x}: {:?}", e.kind);
        assert_eq!(vm.guest_stats(0).unwrap().last_vector, Some(info as u8));
    }
}
