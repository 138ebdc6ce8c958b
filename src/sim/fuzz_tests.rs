//! A simulated guest at random over random memory: loads and stores of
//! any size anywhere (RAM, across maps and pages, the read-only ROM,
//! holes, the emulated devices, the top of the address space), CPUID of
//! any leaf, the TSC instructions and MSRs, task switches, INT3; and
//! between runs a random processor state (real, protected, paged and long
//! mode, page tables and an IDT of random bytes with task gates among
//! them, any CPL) and random events (interrupts, NMIs, exceptions with
//! and without error codes), with the stepping capabilities flipped.
//! Seeded (`VMM_RS_FUZZ_SEED`), so a failure replays exactly.
//!
//! What must hold: nothing panics; VM_RUN fails only as documented
//! (EFAULT for a refused access, EINVAL for an access the local APIC
//! refuses, EIO for a refused device port); a triple fault suspends the
//! VM, which VM_REINIT brings back; at the end the VM still runs a guest
//! that stores to and loads from RAM.

use crate::error::Error;
use crate::exit::{ExitKind, TaskSwitchReason};
use crate::guest::{GuestAction, GuestProgram, ScriptedGuest};
use crate::mem::{PROT_EXEC, PROT_READ, PROT_WRITE};
use crate::regs::{intinfo, reg};
use crate::regs::{SegDesc, CAP_BPT_EXIT, CAP_MASK_HWINTR, CAP_MTRAP_EXIT, CAP_RFLAGS_TF};
use crate::test_util::{with_watchdog, Rng};
use crate::vm::Vm;

const RUNS: usize = 100_000;
/// RAM at 0 (1 MiB), more RAM right after it (64 KiB), a hole, the ROM
/// below 4 GiB (8 KiB).
const RAM: u64 = 0x10_0000;
const RAM2: u64 = 0x1_0000;
const ROM: u64 = 0xffff_e000;

struct RandomGuest(Rng);

impl GuestProgram for RandomGuest {
    fn next(&mut self, _rip: u64) -> GuestAction {
        let rng = &mut self.0;
        let size = if rng.chance(16) { rng.pick(&[0, 3, 5, 16]) } else { rng.pick(&[1, 2, 4, 8]) };
        let gpa = match rng.below(8) {
            0 => rng.below(RAM),
            1 => RAM - 8 + rng.below(16),                    // into the second map
            2 => RAM + RAM2 - 8 + rng.below(16),             // into the hole
            3 => 0x1000 * rng.below(256) + 0xffc + rng.below(8), // across a page
            4 => ROM + rng.below(0x2000),
            5 => rng.pick(&[0xfee0_0000, 0xfec0_0000, 0xfed0_0000]) + rng.below(0x400),
            6 => u64::MAX - rng.below(16),
            _ => rng.next(),
        };
        match rng.below(16) {
            0..=3 => GuestAction::MmioRead { gpa, size },
            4..=6 => GuestAction::MmioWrite { gpa, size, value: rng.next() },
            7 => GuestAction::Cpuid { leaf: rng.pick(&[0, 1, 4, 7, 0xb, 0x16, 0x4000_0000, 0x8000_0001]) , subleaf: rng.below(4) as u32 },
            8 => rng.pick(&[GuestAction::Rdtsc, GuestAction::Rdtscp, GuestAction::Rdpid]),
            9 => {
                let msr = rng.pick(&[0x10, 0xc000_0103, 0xce, 0x1ad, 0x277, 0xc000_0080]);
                if rng.chance(2) {
                    GuestAction::Rdmsr { msr }
                } else {
                    GuestAction::Wrmsr { msr, value: rng.next() >> rng.below(64) }
                }
            }
            10 => {
                let reason = rng.pick(&[TaskSwitchReason::Call, TaskSwitchReason::Iret, TaskSwitchReason::Jmp]);
                GuestAction::TaskSwitch { tsssel: rng.next() as u16, reason }
            }
            11 => GuestAction::Breakpoint,
            12 => GuestAction::EnableInterrupts,
            13 => GuestAction::DisableInterrupts,
            14 if rng.chance(4) => {
                use crate::guest::RefusedInstruction::*;
                GuestAction::Refused(rng.pick(&[Monitor, Mwait, Vmx]))
            }
            14 => GuestAction::Compute,
            _ => GuestAction::PortOut { port: 0x80, size: 1, value: 0 },
        }
    }

    fn interrupt(&mut self, _vector: u8) {}

    fn read_result(&mut self, _value: u64) {}
}

/// A random processor state: mode, paging, CPL, IDT.
fn scramble_registers(vm: &Vm, rng: &mut Rng) {
    let vcpu = vm.vcpu(0).unwrap();
    let mut r = vcpu.regs.lock();
    let (cr0, efer, cs_access) = match rng.below(5) {
        0 => (0x10, 0, 0x93),                         // real mode
        1 => (0x11, 0, 0xc09b),                       // protected, flat
        2 => (0x8000_0011, 0, 0xc09b),                // 32-bit paging (or PAE)
        3 => (0x8000_0011, (1 << 8) | (1 << 10), 0xa09b), // long mode
        _ => (rng.next() & 0xe005_003f, rng.next() & 0xd01, rng.next() & 0xffff),
    };
    let _ = r.set(reg::CR0 as i32, cr0);
    let _ = r.set(reg::EFER as i32, efer);
    let _ = r.set(reg::CR4 as i32, if rng.chance(2) { 1 << 5 } else { 0 });
    let _ = r.set(reg::CR3 as i32, rng.below(RAM) & !0xfff);
    let _ = r.set_seg(reg::CS as i32, SegDesc { base: 0, limit: 0xffff_ffff, access: cs_access as u32 });
    let dpl = (rng.below(4) as u32) << 5;
    let _ = r.set_seg(reg::SS as i32, SegDesc { base: 0, limit: 0xffff_ffff, access: 0xc093 | dpl });
    let base = if rng.chance(4) { rng.next() } else { rng.below(RAM) };
    let limit = if rng.chance(4) { rng.next() as u32 } else { 0x7ff };
    let _ = r.set_seg(reg::IDTR as i32, SegDesc { base, limit, access: 0 });
    for cap in [CAP_MTRAP_EXIT, CAP_RFLAGS_TF, CAP_BPT_EXIT, CAP_MASK_HWINTR] {
        let _ = r.set_cap(cap, i32::from(rng.chance(6)));
    }
}

/// Random bytes in the first 64 KiB of RAM (page tables, IDTs), with
/// task gates and valid-looking page-table entries sprinkled in.
fn scramble_memory(vm: &Vm, rng: &mut Rng) {
    let mem = vm.mem();
    for _ in 0..64 {
        let at = rng.below(0x1_0000) & !7;
        let v = match rng.below(3) {
            0 => 0x0000_8500_0030_0000 | (rng.below(0x100) << 16), // a task gate
            1 => (rng.below(RAM) & !0xfff) | 0x7,                 // a page-table entry
            _ => rng.next(),
        };
        mem.write_gpa(at, &v.to_le_bytes()).unwrap();
    }
}

/// The two RAM maps and the ROM.
fn memory(vm: &Vm) {
    let all = vm.lock_all().unwrap();
    let mut m = vm.mem_write(&all).unwrap();
    m.alloc_memseg(0, RAM as usize, None).unwrap();
    m.mmap_memseg(0, 0, 0, RAM as usize, PROT_READ | PROT_WRITE, 0).unwrap();
    m.alloc_memseg(1, RAM2 as usize, None).unwrap();
    m.mmap_memseg(RAM, 1, 0, RAM2 as usize, PROT_READ | PROT_WRITE, 0).unwrap();
    m.alloc_memseg(2, 0x2000, Some(b"bootrom")).unwrap();
    drop(m);
    drop(all);
    map_rom(vm);
}

/// The ROM's map (VM_REINIT removes device-memory maps, as FreeBSD's).
fn map_rom(vm: &Vm) {
    let all = vm.lock_all().unwrap();
    vm.mem_write(&all).unwrap().mmap_memseg(ROM, 2, 0, 0x2000, PROT_READ | PROT_EXEC, 0).unwrap();
}

#[test]
fn random_guests_over_random_memory_and_state_never_break_the_run_loop() {
    with_watchdog(300, || {
        let mut rng = Rng::from_env(0x005E_ED0F_FA57);
        let vm = Vm::with_sim_backend("simfuzz", 1).unwrap();
        memory(&vm);
        vm.activate_cpu(0).unwrap();
        {
            let l = vm.lock_one(0).unwrap();
            vm.set_guest(&l, Some(Box::new(RandomGuest(Rng(rng.next() | 1))))).unwrap();
        }
        assert_eq!(vm.mmio_write(0, 0xfee0_00f0, 4, 0x1ff), Ok(Some(())));
        let (mut exits, mut faults, mut resets) = (0u64, 0u64, 0u64);
        for i in 0..RUNS {
            if rng.chance(8) {
                scramble_registers(&vm, &mut rng);
            }
            if rng.chance(64) {
                scramble_memory(&vm, &mut rng);
            }
            match rng.below(16) {
                0 => {
                    let _ = vm.lapic_irq(0, 16 + rng.below(240) as i32);
                }
                1 => {
                    let _ = vm.inject_nmi(0);
                }
                2 => {
                    let vector = rng.below(32) as i32;
                    let errcode = rng.chance(2).then(|| rng.next() as u32);
                    let _ = vm.vcpu(0).unwrap().regs.lock().inject_exception(vector, errcode, rng.chance(2));
                }
                3 if rng.chance(16) => {
                    // An exception while a #DF was being delivered: a
                    // triple fault.
                    let mut r = vm.vcpu(0).unwrap().regs.lock();
                    let _ = r.set_exitintinfo(intinfo::VALID | intinfo::HWEXCEPTION | intinfo::DEL_ERRCODE | 8);
                    let _ = r.inject_exception(13, Some(0), true);
                }
                _ => {}
            }
            let l = vm.lock_one(0).unwrap();
            match vm.run(&l) {
                Ok(e) if matches!(e.kind, ExitKind::Suspended(_)) => {
                    // A triple fault: VM_REINIT brings the VM back.
                    drop(l);
                    vm.cpus().suspended = vm.active_cpus();
                    vm.reinit(&vm.lock_all().unwrap()).unwrap();
                    map_rom(&vm);
                    vm.activate_cpu(0).unwrap();
                    resets += 1;
                }
                Ok(_) => exits += 1,
                Err(Error::Fault) => {
                    // A refused access replays until userland moves on.
                    let mut r = l.vcpu().regs.lock();
                    r.nextrip = r.rip() + 1;
                    faults += 1;
                }
                // EPERM: a store of an SMI or remote-read ICR.
                Err(Error::Perm) => crate::test_util::assert_icr_holds_unhandled_ipi(l.vcpu()),
                Err(Error::Inval | Error::Io) => {}
                Err(e) => panic!("run {i}: VM_RUN failed with {e:?}"),
            }
        }
        println!("sim fuzz: {RUNS} runs, {exits} exits, {faults} refused accesses, {resets} triple-fault resets");
        assert!(exits > RUNS as u64 / 2 && faults > 0, "{exits} exits, {faults} faults, {resets} resets");
        // The VM still runs a guest on its RAM.
        let l = vm.lock_one(0).unwrap();
        let script = vec![
            GuestAction::MmioWrite { gpa: 0x8000, size: 8, value: 0x1234 },
            GuestAction::MmioRead { gpa: 0x8000, size: 8 },
            GuestAction::PortOut { port: 0x80, size: 1, value: 0 },
        ];
        vm.set_guest(&l, Some(Box::new(ScriptedGuest::new(script, None)))).unwrap();
        {
            let mut r = l.vcpu().regs.lock();
            r.power_on_reset();
            for cap in [CAP_MTRAP_EXIT, CAP_RFLAGS_TF, CAP_MASK_HWINTR] {
                r.set_cap(cap, 0).unwrap();
            }
            r.set_exitintinfo(0).unwrap();
        }
        let mut e = vm.run(&l).unwrap();
        // A queued exception or event may come first.
        for _ in 0..4 {
            if matches!(e.kind, ExitKind::Inout { .. }) {
                break;
            }
            e = vm.run(&l).unwrap();
        }
        assert!(matches!(e.kind, ExitKind::Inout { .. }), "{e:?}");
        assert_eq!(vm.guest_stats(0).unwrap().last_read, 0x1234);
    });
}
