//! Guest-controlled input, at random: MMIO writes and reads of the vioapic
//! window and the local APIC page (any offset, size and value), APIC MSRs,
//! and the interrupt ioctls with values in and out of range, interleaved
//! with what a run loop does (accept the highest pending vector, EOI it)
//! and with timer expiry. Seeded, so a failure replays exactly.
//!
//! What must hold after every step: nothing panics, every refusal is one
//! of the errors the entry point documents, no vector below 16 ever sits
//! in an IRR or ISR, and the IOAPIC pin counts are exactly what the
//! asserts and deasserts accepted. At the end the VM, reset with
//! VM_REINIT, still delivers an interrupt.

use std::time::{Duration, Instant};

use super::tests::{lapic_read, lapic_write, program_rte, rte_low, vm};
use super::*;
pub(super) use crate::test_util::Rng;
use crate::vioapic::PINS;
use crate::vlapic::regs::*;

const VCPUS: usize = 3;
const STEPS: usize = 1_000_000;


/// The local APIC registers a guest writes, and any 16-byte slot.
const LAPIC_REGS: [u32; 18] = [
    off::ID,
    off::TPR,
    off::EOI,
    off::LDR,
    off::DFR,
    off::SVR,
    off::ESR,
    off::LVT_CMCI,
    off::ICR_LO,
    off::ICR_HI,
    off::LVT_TIMER,
    off::LVT_THERMAL,
    off::LVT_PERF,
    off::LVT_LINT0,
    off::LVT_LINT1,
    off::LVT_ERROR,
    off::TIMER_ICR,
    off::TIMER_DCR,
];

pub(super) fn lapic_offset(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => rng.below(LAPIC_SIZE),
        1 => rng.below(LAPIC_SIZE / 16) * 16,
        _ => u64::from(rng.pick(&LAPIC_REGS)),
    }
}

/// A value for a local APIC register: random bits, but with a low byte
/// that is often a valid or low vector and, for the ICR, every delivery
/// mode and shorthand.
pub(super) fn lapic_value(rng: &mut Rng) -> u64 {
    let v = rng.next() as u32;
    let low = if rng.chance(2) { rng.below(32) as u32 } else { v & 0xFF };
    u64::from((v & !0xFF) | low)
}

pub(super) fn ioapic_access(rng: &mut Rng) -> (u64, u8) {
    let off = match rng.below(8) {
        0 => rng.below(IOAPIC_SIZE),
        1..=3 => 0x00,
        _ => 0x10,
    };
    let size = if rng.chance(6) { rng.pick(&[0, 1, 2, 3, 8, 16]) } else { 4 };
    (IOAPIC_BASE + off, size)
}

pub(super) fn ioregsel_value(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => rng.next() & 0xFFFF_FFFF,
        1 => rng.below(3),
        _ => 0x10 + rng.below(2 * PINS as u64 + 4),
    }
}

pub(super) fn no_low_vectors(words: &[u32; 8]) -> bool {
    words[0] & 0xFFFF == 0
}

fn ok_or_one_of<T: std::fmt::Debug>(step: usize, what: &str, r: &Result<T>, allowed: &[Error]) {
    if let Err(e) = r {
        assert!(allowed.contains(e), "step {step}: {what}: unexpected {e:?}");
    }
}

/// An ICR value whose delivery mode the APIC refuses (SMI, remote read).
fn unhandled_mode(icr: u64) -> bool {
    matches!(icr as u32 & DELMODE_MASK, DELMODE_SMI | DELMODE_RR)
}

/// One random step; `counts` is the model of the IOAPIC pin counts.
fn step(vm: &Vm, rng: &mut Rng, i: usize, counts: &mut [u32; PINS], now: &mut Instant) {
    let id = rng.below(VCPUS as u64) as usize;
    match rng.below(20) {
        0..=3 => {
            let (gpa, size) = ioapic_access(rng);
            let value = if gpa == IOAPIC_BASE { ioregsel_value(rng) } else { rng.next() };
            assert_eq!(vm.mmio_write(id, gpa, size, value), Ok(Some(())), "step {i}");
        }
        4 => {
            let (gpa, size) = ioapic_access(rng);
            assert!(matches!(vm.mmio_read(id, gpa, size), Ok(Some(_))), "step {i}");
        }
        5..=8 => {
            let gpa = LAPIC_BASE + lapic_offset(rng);
            let size = if rng.chance(8) { rng.pick(&[1, 2, 8]) } else { 4 };
            let value = lapic_value(rng);
            let r = vm.mmio_write(id, gpa, size, value);
            // EPERM: an SMI or remote-read IPI written to the ICR (stored,
            // not delivered), and nothing else.
            let icr_unhandled = gpa == LAPIC_BASE + u64::from(off::ICR_LO) && unhandled_mode(value);
            ok_or_one_of(i, "lapic write", &r, if icr_unhandled { &[Error::Inval, Error::Perm] } else { &[Error::Inval] });
        }
        9 => {
            let r = vm.mmio_read(id, LAPIC_BASE + lapic_offset(rng), 4);
            ok_or_one_of(i, "lapic read", &r, &[Error::Inval]);
        }
        10 => {
            let msr = match rng.below(4) {
                0 => rng.next() as u32,
                1 => 0x1B, // IA32_APIC_BASE
                _ => 0x800 + rng.below(0x100) as u32,
            };
            if rng.chance(2) {
                ok_or_one_of(i, "rdmsr", &vm.lapic_rdmsr(id, msr), &[Error::Inval]);
            } else {
                let value = lapic_value(rng) | (rng.next() << 32);
                let r = vm.lapic_wrmsr(id, msr, value);
                let icr_unhandled = msr == 0x830 && unhandled_mode(value);
                ok_or_one_of(i, "wrmsr", &r, if icr_unhandled { &[Error::Inval, Error::Perm] } else { &[Error::Inval] });
            }
        }
        11..=13 => {
            let pin = rng.around(0, PINS as i32);
            let Some(p) = usize::try_from(pin).ok().filter(|&p| p < PINS) else {
                assert_eq!(vm.ioapic_assert_irq(pin), Err(Error::Inval), "step {i}");
                assert_eq!(vm.ioapic_deassert_irq(pin), Err(Error::Inval), "step {i}");
                assert_eq!(vm.ioapic_pulse_irq(pin), Err(Error::Inval), "step {i}");
                return;
            };
            match rng.below(3) {
                0 => {
                    assert_eq!(vm.ioapic_assert_irq(pin), Ok(()), "step {i}");
                    counts[p] += 1;
                }
                1 if counts[p] == 0 => {
                    assert_eq!(vm.ioapic_deassert_irq(pin), Err(Error::Range), "step {i}")
                }
                1 => {
                    assert_eq!(vm.ioapic_deassert_irq(pin), Ok(()), "step {i}");
                    counts[p] -= 1;
                }
                _ => assert_eq!(vm.ioapic_pulse_irq(pin), Ok(()), "step {i}"),
            }
            assert_eq!(vm.vioapic().assert_count(p), counts[p], "step {i}: pin {p}");
        }
        14 => {
            let (cpu, vector) = (rng.around(0, VCPUS as i32), rng.around(0, 256));
            let want_ok = (0..VCPUS as i32).contains(&cpu) && (16..256).contains(&vector);
            let r = vm.lapic_irq(cpu, vector);
            assert_eq!(r.is_ok(), want_ok, "step {i}: lapic_irq({cpu}, {vector}) = {r:?}");
            ok_or_one_of(i, "lapic_irq", &r, &[Error::Inval]);
        }
        15 => {
            let r = match rng.below(4) {
                0 => vm.lapic_local_irq(
                    rng.around(-1, VCPUS as i32),
                    rng.around(0, lvt::COUNT as i32),
                ),
                1 => vm.inject_nmi(rng.around(0, VCPUS as i32)),
                2 => vm.isa_pulse_irq(rng.around(-1, 16), rng.around(-1, PINS as i32)),
                _ => vm.set_x2apic_state(rng.around(0, VCPUS as i32), rng.around(0, 2)),
            };
            ok_or_one_of(i, "local irq/nmi/isa/x2apic", &r, &[Error::Inval]);
        }
        16 => {
            let addr = match rng.below(3) {
                0 => rng.next(),
                _ => 0xFEE0_0000 | (rng.below(256) << 12) | (rng.below(2) << 2),
            };
            let data = if rng.chance(3) { rng.next() } else { lapic_value(rng) & 0xFFFF };
            ok_or_one_of(i, "msi", &vm.lapic_msi(addr, data), &[Error::Inval]);
        }
        17 => {
            // The run loop: take the highest pending vector into service.
            let _ = vm.vcpu(id).unwrap().vlapic.accept_pending_intr();
        }
        18 => {
            let v = vm.vcpu(id).unwrap();
            if let Some(vector) = v.vlapic.eoi() {
                vm.vioapic().process_eoi(vector, vm);
            }
        }
        _ => {
            // Time passes; the timers of every vCPU are polled.
            *now += Duration::from_nanos(rng.below(20_000_000));
            for v in vm.vcpus() {
                v.vlapic.timer_poll(*now);
            }
        }
    }
}

#[test]
fn random_guest_and_ioctl_input_never_breaks_the_controllers() {
    crate::test_util::with_watchdog(120, || {
        let vm = vm(VCPUS);
        let mut rng = Rng::from_env(0x5EED_1234);
        let mut counts = [0u32; PINS];
        let mut now = Instant::now();
        for i in 0..STEPS {
            step(&vm, &mut rng, i, &mut counts, &mut now);
            for id in 0..VCPUS {
                let irr = vm.irr_snapshot(id).unwrap();
                let isr = vm.isr_snapshot(id).unwrap();
                assert!(
                    no_low_vectors(&irr) && no_low_vectors(&isr),
                    "step {i}: vCPU {id} irr {irr:x?} isr {isr:x?}"
                );
            }
        }
        // The pin counts are exactly the accepted asserts minus deasserts.
        for (pin, &n) in counts.iter().enumerate() {
            for _ in 0..n {
                assert_eq!(vm.ioapic_deassert_irq(pin as i32), Ok(()), "pin {pin}");
            }
            assert_eq!(
                vm.ioapic_deassert_irq(pin as i32),
                Err(Error::Range),
                "pin {pin} had more than {n}"
            );
        }
        assert!(vm.ioapic_stats().rte_writes > 1000, "the fuzzer reached the RTE write path");

        // VM_REINIT brings back a working VM.
        {
            vm.cpus().suspended = vm.active_cpus();
            let all = vm.lock_all().unwrap();
            vm.reinit(&all).unwrap();
        }
        for id in 0..VCPUS {
            vm.activate_cpu(id).unwrap();
            lapic_write(&vm, id, off::SVR, SVR_ENABLE | 0xFF);
        }
        program_rte(&vm, 0, 3, 0x41, 1);
        assert_eq!(rte_low(&vm, 3), 0x41);
        vm.ioapic_pulse_irq(3).unwrap();
        assert_eq!(vm.vcpu(1).unwrap().vlapic.accept_pending_intr(), Some(0x41));
        assert_ne!(lapic_read(&vm, 1, off::ISR0 + 0x20) & 0x2, 0, "vector 0x41 in service");
    });
}
