//! Random guest input while everything runs at once: vCPU threads loop
//! VM_RUN with guests that write random values to random local APIC and
//! IOAPIC registers (IPIs of every delivery mode and shorthand, INIT and
//! SIPI included, APIC software disable, timers, TPR, redirection entries)
//! and halt, EOI or toggle their interrupt flag at random, access the
//! same registers as x2APIC MSRs (#GP in xAPIC mode), and program
//! and read the RTC (rates, SET, garbage dates, interrupt enables; its
//! IRQ 8 pulses land on the IOAPIC), the PM timer and the HPET (timers
//! on pins 24-31 or as MSIs, edge or level, one-shot or periodic, ISR
//! clears, counter stops and writes), the PIT and the 8259 pair
//! (initialisations, masks, EOIs, polls, ELCR; its ExtINTs reach them
//! through LINT0 and IOAPIC pin 0); device threads assert, deassert and
//! pulse pins and ISA IRQs and send MSIs and fixed interrupts; a
//! control thread locks all vCPUs, locks one and writes its registers as
//! VM_SET_KERNEMU_DEV would, flips x2APIC states and the HLT-exit,
//! PAUSE-exit and interrupt-masking capabilities, sets the RTC's time and
//! NVRAM, and suspends and resumes vCPUs. The stress test checks exact delivery under a protocol; this one
//! checks that arbitrary input cannot deadlock, panic or corrupt state.
//! The VM's callout thread fires timers meanwhile. Seeded per thread; the
//! interleaving is the machine's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::fuzz_tests::{
    ioapic_access, ioregsel_value, lapic_offset, lapic_value, no_low_vectors, Rng,
};
use super::tests::{lapic_write, program_rte};
use super::*;
use crate::exit::ExitKind;
use crate::guest::{GuestAction, GuestProgram};
use crate::test_util::with_watchdog;
use crate::vioapic::PINS;
use crate::vlapic::regs::*;

const VCPUS: usize = 3;
/// Pins the device threads count on exactly (each owns a range); the
/// others are only pulsed.
const OWNED_PINS: [std::ops::Range<usize>; 2] = [16..20, 20..24];

/// How long the chaos may go on past secs() for the guests to do enough.
const PROGRESS_LIMIT_SECS: u64 = 60;

fn secs() -> u64 {
    std::env::var("VMM_RS_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2)
}

/// A guest doing anything a guest may do to its interrupt controllers.
struct ChaosGuest {
    rng: Rng,
    pending: Vec<u8>,
    /// IOWIN write due after an IOREGSEL write.
    window: Option<u64>,
    /// Port writes due next (an 8259 initialisation sequence).
    queued: Vec<GuestAction>,
    /// The guest's interrupt flag. It never halts with it clear: three
    /// such vCPUs suspend the VM (VM_SUSPEND_HALT) and end the test early.
    interrupts_on: bool,
    steps: Arc<AtomicU64>,
}

impl GuestProgram for ChaosGuest {
    fn next(&mut self, _rip: u64) -> GuestAction {
        self.steps.fetch_add(1, SeqCst);
        let rng = &mut self.rng;
        if !self.interrupts_on && rng.chance(4) {
            self.interrupts_on = true;
            return GuestAction::EnableInterrupts;
        }
        if let Some(a) = self.queued.pop() {
            return a;
        }
        if let Some(value) = self.window.take() {
            return GuestAction::MmioWrite { gpa: IOAPIC_BASE + 0x10, size: 4, value };
        }
        if !self.pending.is_empty() && rng.chance(2) {
            self.pending.pop();
            // Through MMIO or the x2APIC MSR: whichever the APIC's mode
            // refuses is ignored (MMIO) or #GP (MSR).
            if rng.chance(2) {
                return GuestAction::Wrmsr { msr: 0x80b, value: 0 };
            }
            return GuestAction::MmioWrite {
                gpa: LAPIC_BASE + u64::from(off::EOI),
                size: 4,
                value: 0,
            };
        }
        match rng.below(100) {
            0..=29 => {
                let gpa = LAPIC_BASE + lapic_offset(rng);
                GuestAction::MmioWrite { gpa, size: 4, value: lapic_value(rng) }
            }
            30..=39 => GuestAction::MmioRead { gpa: LAPIC_BASE + lapic_offset(rng), size: 4 },
            40..=54 => {
                // An entry rewrite: IOREGSEL now, IOWIN next step.
                self.window = Some(lapic_value(rng) | rng.next() << 32);
                GuestAction::MmioWrite { gpa: IOAPIC_BASE, size: 4, value: ioregsel_value(rng) }
            }
            55..=59 => {
                let (gpa, size) = ioapic_access(rng);
                GuestAction::MmioRead { gpa, size }
            }
            60..=69 if self.interrupts_on => GuestAction::Hlt,
            70 => {
                self.interrupts_on = false;
                GuestAction::DisableInterrupts
            }
            71 => GuestAction::PortOut { port: 0x70, size: 1, value: rng.below(0x10) as u32 },
            72 => GuestAction::PortOut { port: 0x70, size: 1, value: rng.below(0x100) as u32 },
            73 | 74 => GuestAction::PortOut { port: 0x71, size: 1, value: rng.below(0x100) as u32 },
            // Reads (register C clears), now and then a refused width.
            75 => GuestAction::PortIn { port: 0x71, size: if rng.chance(16) { 2 } else { 1 } },
            // The PM timer.
            80 => GuestAction::PortIn { port: 0x408, size: 4 },
            // The HPET: timer configuration, comparators (soon), the
            // counter's enable, ISR clears, MSI routes, any register.
            81..=88 => {
                use crate::vhpet::{reg, VHPET_BASE};
                let n = rng.below(8) as usize;
                let (off, value) = match rng.below(6) {
                    0 => (reg::timer_cap_cnf(n), (24 + rng.below(8)) << 9 | rng.below(0x80) | rng.below(2) << 14),
                    1 => (reg::timer_comparator(n), rng.below(20_000)),
                    2 => (reg::CONFIG, rng.below(2)),
                    3 => (reg::ISR, rng.below(0x100)),
                    4 => (reg::timer_fsb(n), (0xFEE0_0000 | rng.below(VCPUS as u64) << 12) << 32 | (0x40 + rng.below(0xb0))),
                    _ => (rng.below(0x400) & !3, rng.next()),
                };
                let size = if off & 4 != 0 || rng.chance(2) { 4 } else { 8 };
                GuestAction::MmioWrite { gpa: VHPET_BASE + off, size, value }
            }
            89 => GuestAction::MmioRead { gpa: crate::vhpet::VHPET_BASE + (rng.below(0x400) & !7), size: 8 },
            // The PIT: mode bytes (some refused), counts, reads, port 0x61.
            90 | 91 => {
                let port = [0x40, 0x41, 0x42, 0x43, 0x43, 0x61][rng.below(6) as usize];
                GuestAction::PortOut { port, size: 1, value: rng.below(0x100) as u32 }
            }
            92 => GuestAction::PortIn { port: [0x40, 0x42, 0x61][rng.below(3) as usize], size: 1 },
            // The 8259 pair: a whole initialisation now and then (random
            // vectors, masks and modes), else single command words, masks,
            // EOIs and ELCR writes (some refused), register and poll reads.
            93 => {
                let (cmd, base, icw4) = ([0x20, 0xa0][rng.below(2) as usize], rng.below(0x100), rng.below(0x20));
                let mask = rng.below(0x100);
                let out = |port: u16, value: u64| GuestAction::PortOut { port, size: 1, value: value as u32 };
                self.queued = vec![out(cmd + 1, mask), out(cmd + 1, icw4 | 1), out(cmd + 1, 4), out(cmd + 1, base)];
                out(cmd, 0x11)
            }
            94 | 95 => {
                let port = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1][rng.below(6) as usize];
                let common = [0x20, 0x0a, 0x0b, 0x0c, 0x68, 0x48, 0xa0, 0x60 | rng.below(8)];
                let value = if rng.chance(2) { common[rng.below(8) as usize] } else { rng.below(0x100) };
                GuestAction::PortOut { port, size: 1, value: value as u32 }
            }
            96 => GuestAction::PortIn { port: [0x20, 0x21, 0xa0, 0xa1, 0x4d0][rng.below(5) as usize], size: 1 },
            76 | 77 => GuestAction::PortOut { port: 0x80, size: 1, value: 0 },
            // CPUID of any leaf (mostly real ones); the TSC instructions;
            // task switches (to userland, which just goes on); #UD.
            78 => match rng.below(6) {
                5 => {
                    use crate::guest::RefusedInstruction::*;
                    GuestAction::Refused([Monitor, Mwait, Vmx][rng.below(3) as usize])
                }
                4 => {
                    use crate::exit::TaskSwitchReason::*;
                    let reason = [Call, Iret, Jmp][rng.below(3) as usize];
                    GuestAction::TaskSwitch { tsssel: rng.below(0x10000) as u16, reason }
                }
                0 => {
                    let leaf = if rng.chance(2) { rng.below(0x20) as u32 } else { rng.next() as u32 };
                    GuestAction::Cpuid { leaf, subleaf: rng.below(4) as u32 }
                }
                1 => GuestAction::Rdtsc,
                2 => GuestAction::Rdtscp,
                _ => GuestAction::Rdpid,
            },
            79 => GuestAction::Pause,
            // x2APIC registers as MSRs (the ICR with a destination), and
            // IA32_APIC_BASE.
            97 | 98 => {
                let msr = 0x800 + (lapic_offset(rng) >> 4) as u32;
                let dest = if msr == 0x830 { rng.below(VCPUS as u64 + 1) << 32 } else { 0 };
                GuestAction::Wrmsr { msr, value: lapic_value(rng) | dest }
            }
            99 if rng.chance(2) => GuestAction::Rdmsr { msr: if rng.chance(8) { 0x1b } else { 0x800 + (lapic_offset(rng) >> 4) as u32 } },
            // The MSRs the run loop keeps (EFER, PAT, MTRRs, bases, ...),
            // and their neighbours that go to userland.
            99 => {
                let msrs = [
                    0xc000_0080,
                    0xc000_0100,
                    0x277,
                    0x2ff,
                    0x1a0,
                    0x179,
                    0x10,
                    0xc000_0103,
                    0xce,
                    0x200 + rng.below(0x80) as u32,
                ];
                let msr = msrs[rng.below(msrs.len() as u64) as usize];
                let value = if rng.chance(2) { rng.below(0x1000) } else { rng.next() };
                if rng.chance(2) {
                    GuestAction::Rdmsr { msr }
                } else {
                    GuestAction::Wrmsr { msr, value }
                }
            }
            _ => GuestAction::Compute,
        }
    }

    fn interrupt(&mut self, vector: u8) {
        self.pending.push(vector);
    }

    fn read_result(&mut self, _value: u64) {}
}

fn device(vm: &Vm, stop: &AtomicBool, seed: u64, owned: std::ops::Range<usize>) -> Vec<u32> {
    let mut rng = Rng(seed);
    let mut counts = vec![0u32; PINS];
    while !stop.load(SeqCst) {
        match rng.below(8) {
            0 | 1 => {
                let pin = owned.start + rng.below(owned.len() as u64) as usize;
                if rng.chance(2) {
                    vm.ioapic_assert_irq(pin as i32).unwrap();
                    counts[pin] += 1;
                } else if counts[pin] > 0 {
                    vm.ioapic_deassert_irq(pin as i32).unwrap();
                    counts[pin] -= 1;
                } else {
                    assert_eq!(vm.ioapic_deassert_irq(pin as i32), Err(Error::Range));
                }
            }
            2 => vm.ioapic_pulse_irq(rng.below(16) as i32).unwrap(),
            3 => {
                let addr = 0xFEE0_0000 | rng.below(VCPUS as u64 + 1) << 12 | rng.below(2) << 2;
                let _ = vm.lapic_msi(addr, lapic_value(&mut rng) & 0xC7FF);
            }
            4 => {
                let _ = vm.lapic_irq(rng.below(VCPUS as u64) as i32, rng.below(256) as i32);
            }
            // The one event that wakes a guest halted with interrupts off
            // or with its APIC software-disabled.
            5 => vm.inject_nmi(rng.below(VCPUS as u64) as i32).unwrap(),
            // ISA IRQs on the 8259 only (the pins' counts stay exact).
            6 => {
                let irq = rng.below(16) as i32;
                match rng.below(4) {
                    0 => vm.isa_pulse_irq(irq, -1).unwrap(),
                    1 => vm.isa_assert_irq(irq, -1).unwrap(),
                    2 => assert!(matches!(vm.isa_deassert_irq(irq, -1), Ok(()) | Err(Error::Range))),
                    _ => {
                        let level = rng.chance(2);
                        let edge_only = matches!(irq, 0 | 1 | 2 | 8 | 13);
                        assert_eq!(vm.isa_set_irq_trigger(irq, level).is_ok(), !(level && edge_only));
                    }
                }
            }
            _ => thread::yield_now(),
        }
    }
    counts
}

fn control(vm: &Vm, stop: &AtomicBool, seed: u64) -> u64 {
    let mut rng = Rng(seed);
    let mut ops = 0;
    while !stop.load(SeqCst) {
        let id = rng.below(VCPUS as u64) as usize;
        match rng.below(7) {
            0 => {
                let _all = vm.lock_all().unwrap();
                thread::yield_now();
            }
            1 => {
                let _one = vm.lock_one(id).unwrap();
                let gpa = if rng.chance(2) {
                    LAPIC_BASE + lapic_offset(&mut rng)
                } else {
                    ioapic_access(&mut rng).0
                };
                let _ = vm.mmio_write(id, gpa, 4, lapic_value(&mut rng));
            }
            2 => {
                // x2APIC mode, and the exits a guest's HLT and PAUSE take
                // (off, HLT halts in the guest), now and then no event
                // injection at all (a debugger stepping).
                let one = vm.lock_one(id).unwrap();
                vm.set_x2apic_state(id as i32, rng.below(2) as i32).unwrap();
                let mut r = one.vcpu().regs.lock();
                r.set_cap(crate::regs::CAP_HALT_EXIT, rng.below(2) as i32).unwrap();
                r.set_cap(crate::regs::CAP_PAUSE_EXIT, rng.below(2) as i32).unwrap();
                r.set_cap(crate::regs::CAP_MASK_HWINTR, i32::from(rng.chance(8))).unwrap();
                r.set_cap(crate::regs::CAP_RFLAGS_TF, i32::from(rng.chance(8))).unwrap();
            }
            3 => {
                // A SIPI to every other vCPU: the one event that restarts
                // a vCPU some guest's INIT left waiting.
                let _one = vm.lock_one(id).unwrap();
                let icr = |off: u32, v: u64| vm.mmio_write(id, LAPIC_BASE + u64::from(off), 4, v);
                let _ = icr(off::ICR_HI, 0);
                let _ = icr(off::ICR_LO, 0xC_4600 | rng.below(256));
            }
            4 => {
                // The host's side of the RTC; the guests may hold it halted.
                let secs = rng.below(4_000_000_000) as i64 - 1;
                assert!(matches!(vm.rtc_set_time(secs), Ok(()) | Err(Error::Busy)));
                let off = rng.below(140) as i32 - 4;
                let valid = (14..128).contains(&off) && off != 0x32;
                assert_eq!(vm.rtc_nvram_write(off, rng.below(256) as u8).is_ok(), valid, "offset {off}");
                assert_eq!(vm.rtc_nvram_read(off).is_ok(), (0..128).contains(&off));
                assert!(vm.rtc_get_time().unwrap() >= -1);
            }
            _ => {
                vm.suspend_cpu(Some(id)).unwrap();
                thread::yield_now();
                vm.resume_cpu(Some(id)).unwrap();
            }
        }
        ops += 1;
    }
    ops
}

#[test]
fn random_guests_devices_and_controls_at_once_never_deadlock_or_corrupt() {
    with_watchdog(PROGRESS_LIMIT_SECS + 60 + 2 * secs(), || {
        let vm = Arc::new(Vm::with_sim_backend("chaos", VCPUS).unwrap());
        // Timers also fire from the callout thread, as in a VM vm_create made.
        vm.start_callout_thread().unwrap();
        let steps = Arc::new(AtomicU64::new(0));
        for id in 0..VCPUS {
            let lock = vm.lock_one(id).unwrap();
            vm.activate_cpu(id).unwrap();
            lapic_write(&vm, id, off::SVR, SVR_ENABLE | 0xFF);
            let rng = Rng(0xC4A0_5EED ^ (id as u64 + 1) << 32);
            let guest = ChaosGuest {
                rng,
                pending: Vec::new(),
                window: None,
                queued: Vec::new(),
                interrupts_on: false,
                steps: steps.clone(),
            };
            vm.set_guest(&lock, Some(Box::new(guest))).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let runners: Vec<_> = (0..VCPUS)
            .map(|id| {
                let vm = vm.clone();
                thread::spawn(move || loop {
                    let lock = vm.lock_one(id).unwrap();
                    match vm.run(&lock) {
                        Ok(exit) if matches!(exit.kind, ExitKind::Suspended(_)) => return,
                        Ok(_) => {}
                        // A guest's local APIC access of a bad size or
                        // alignment fails VM_RUN (EINVAL, as FreeBSD); so
                        // does VM_RUN once the vCPU acknowledged a suspend;
                        // an RTC access the RTC refuses (a wide one, or a
                        // garbage date left under SET) fails it with EIO;
                        // an xAPIC ICR write of an SMI or remote-read IPI
                        // with EPERM.
                        Err(e) => {
                            assert!(matches!(e, Error::Inval | Error::Io | Error::Perm), "{e:?}");
                            if e == Error::Perm {
                                crate::test_util::assert_icr_holds_unhandled_ipi(lock.vcpu());
                            }
                            if vm.cpus().suspended.contains(id) {
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        let devices: Vec<_> = OWNED_PINS
            .iter()
            .enumerate()
            .map(|(i, owned)| {
                let (vm, stop, owned) = (vm.clone(), stop.clone(), owned.clone());
                thread::spawn(move || device(&vm, &stop, 0xD0 + i as u64, owned))
            })
            .collect();
        let controls = {
            let (vm, stop) = (vm.clone(), stop.clone());
            thread::spawn(move || control(&vm, &stop, 0xC0))
        };

        // What the guests have done: steps, MSR accesses, CPUIDs.
        let stat_sum = |stats: &[crate::stats::Stat]| -> u64 {
            (0..VCPUS)
                .map(|id| {
                    let s = vm.vcpu_stats(id, 0, 64).unwrap();
                    stats.iter().map(|&st| s[st as usize]).sum::<u64>()
                })
                .sum()
        };
        let msrs = || stat_sum(&[crate::stats::Stat::Rdmsr, crate::stats::Stat::Wrmsr]);
        let cpuids = || stat_sum(&[crate::stats::Stat::Cpuid]);
        let enough = || steps.load(SeqCst) > 1000 && msrs() > 100 && cpuids() > 10;
        // The chaos lasts secs(), and longer on a slow host (an emulator)
        // until the guests have done enough to judge, up to a limit after
        // which the checks below fail.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs())
            || (!enough() && start.elapsed() < Duration::from_secs(secs() + PROGRESS_LIMIT_SECS))
        {
            thread::park_timeout(Duration::from_millis(20));
        }
        stop.store(true, SeqCst);
        let counts: Vec<Vec<u32>> = devices.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(controls.join().unwrap() > 0);
        // Every runner leaves VM_RUN once the VM is suspended (it may have
        // suspended itself already: every vCPU halted with interrupts off).
        let _ = vm.suspend(2);
        runners.into_iter().for_each(|t| t.join().unwrap());
        assert!(steps.load(SeqCst) > 1000, "the guests ran");
        assert!(msrs() > 100, "the guests used MSRs ({})", msrs());
        assert!(cpuids() > 10, "the guests ran CPUID ({})", cpuids());

        for id in 0..VCPUS {
            let (irr, isr) = (vm.irr_snapshot(id).unwrap(), vm.isr_snapshot(id).unwrap());
            assert!(no_low_vectors(&irr) && no_low_vectors(&isr), "vCPU {id}");
        }
        for (owned, counts) in OWNED_PINS.iter().zip(&counts) {
            for pin in owned.clone() {
                assert_eq!(vm.vioapic().assert_count(pin), counts[pin], "pin {pin}");
            }
        }
        // VM_REINIT brings back a VM that delivers, with the RTC's
        // interrupts off and its time settable once SET is clear.
        vm.cpus().suspended = vm.active_cpus();
        vm.reinit(&vm.lock_all().unwrap()).unwrap();
        assert_eq!(vm.rtc_nvram_read(11).unwrap() & 0x70, 0, "RTC interrupt enables off");
        assert_eq!(vm.rtc_nvram_read(12), Ok(0), "RTC flags clear");
        assert_eq!(vm.mmio_read(0, crate::vhpet::VHPET_BASE + crate::vhpet::reg::CONFIG, 8), Ok(Some(0)), "HPET stopped");
        assert_eq!(vm.vhpet().callout().get(), None);
        assert_eq!(vm.vatpit().callout().get(), None, "a new PIT");
        assert_eq!((vm.vatpic().chip(0), vm.vatpic().chip(1)), Default::default(), "a new 8259 pair");
        vm.activate_cpu(1).unwrap();
        lapic_write(&vm, 1, off::SVR, SVR_ENABLE | 0xFF);
        program_rte(&vm, 1, 3, 0x41, 1);
        vm.ioapic_pulse_irq(3).unwrap();
        assert_eq!(vm.vcpu(1).unwrap().vlapic.accept_pending_intr(), Some(0x41));
    });
}
