//! VM-level tests: destinations, MSI, the ioctl entry points, and the
//! kernemu/MMIO paths through the vioapic and the local APICs.

use super::*;
use crate::vcpu::VcpuState;
use crate::vioapic::rte;
use crate::vlapic::delivery::Msi;
use crate::vlapic::regs::*;

const IOREGSEL_GPA: u64 = IOAPIC_BASE;
const IOWIN_GPA: u64 = IOAPIC_BASE + 0x10;
const LEVEL: u32 = 0x8000;
const MASKED: u32 = 0x1_0000;

/// A VM with `n` vCPUs, all active and with software-enabled APICs.
pub(super) fn vm(n: usize) -> Vm {
    let vm = Vm::with_idle_backend("t", n).unwrap();
    for i in 0..n {
        vm.activate_cpu(i).unwrap();
        lapic_write(&vm, i, off::SVR, SVR_ENABLE | 0xFF);
    }
    vm
}

pub(super) fn lapic_write(vm: &Vm, vcpu: usize, offset: u32, val: u32) {
    assert_eq!(
        vm.mmio_write(vcpu, LAPIC_BASE + u64::from(offset), 4, u64::from(val)),
        Ok(Some(()))
    );
}

pub(super) fn lapic_read(vm: &Vm, vcpu: usize, offset: u32) -> u32 {
    vm.mmio_read(vcpu, LAPIC_BASE + u64::from(offset), 4).unwrap().unwrap() as u32
}

/// Writes RTE `pin` (high half, then low half) as vCPU `writer`.
pub(super) fn program_rte(vm: &Vm, writer: usize, pin: u32, low: u32, dest: u8) {
    let w = |gpa, v: u32| assert_eq!(vm.mmio_write(writer, gpa, 4, u64::from(v)), Ok(Some(())));
    w(IOREGSEL_GPA, 0x11 + 2 * pin);
    w(IOWIN_GPA, u32::from(dest) << 24);
    w(IOREGSEL_GPA, 0x10 + 2 * pin);
    w(IOWIN_GPA, low);
}

/// Initialises the 8259 pair as a guest would (edge, cascade on IRQ 2,
/// normal EOI), vectors from `master_base` and `slave_base`, every IRQ
/// unmasked.
pub(super) fn program_8259(vm: &Vm, master_base: u8, slave_base: u8) {
    for (port, val) in [
        (0x20, 0x11),
        (0x21, master_base),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, slave_base),
        (0xa1, 0x02),
        (0xa1, 0x01),
    ] {
        assert_eq!(vm.emulate_inout(port, 1, false, val.into()), Some(Ok(None)), "port {port:#x}");
    }
}

pub(super) fn rte_low(vm: &Vm, pin: u32) -> u32 {
    vm.mmio_write(0, IOREGSEL_GPA, 4, u64::from(0x10 + 2 * pin)).unwrap();
    vm.mmio_read(0, IOWIN_GPA, 4).unwrap().unwrap() as u32
}

fn set(ids: &[usize]) -> CpuSet {
    let mut s = CpuSet::new();
    for i in ids {
        s.insert(*i);
    }
    s
}

fn irr_has(vm: &Vm, vcpu: usize, v: u8) -> bool {
    snapshot_has(&vm.irr_snapshot(vcpu).unwrap(), v)
}

#[test]
fn physical_and_broadcast_destinations_cover_active_vcpus_only() {
    let vm = Vm::with_idle_backend("t", 4).unwrap();
    for i in [0, 1, 3] {
        vm.activate_cpu(i).unwrap();
    }
    assert_eq!(vm.calcdest(1, true, false, false), set(&[1]));
    assert_eq!(vm.calcdest(2, true, false, false), set(&[]), "inactive");
    assert_eq!(vm.calcdest(9, true, false, false), set(&[]), "no such APIC");
    assert_eq!(vm.calcdest(0xFF, true, false, false), set(&[0, 1, 3]));
    assert_eq!(vm.calcdest(0xFF, false, true, false), set(&[0, 1, 3]), "broadcast ignores lowprio");
    assert_eq!(vm.calcdest(0xFFFF_FFFF, true, false, true), set(&[0, 1, 3]));
    assert_eq!(vm.calcdest(0xFF, true, false, true), set(&[]), "x2APIC id 0xff");
}

#[test]
fn logical_flat_and_cluster_destinations() {
    let vm = vm(4);
    for i in 0..4 {
        lapic_write(&vm, i, off::LDR, 1 << (24 + i));
    }
    assert_eq!(vm.calcdest(0b1010, false, false, false), set(&[1, 3]));
    assert_eq!(vm.calcdest(0b1010, false, true, false), set(&[1]), "lowest priority: first match");
    assert_eq!(vm.calcdest(0, false, false, false), set(&[]));
    // Cluster model: LDR[31:28] cluster, LDR[27:24] member bits.
    for (i, ldr) in [0x1100_0000u32, 0x1200_0000, 0x2100_0000, 0x1400_0000].into_iter().enumerate()
    {
        lapic_write(&vm, i, off::DFR, 0x0FFF_FFFF);
        lapic_write(&vm, i, off::LDR, ldr);
    }
    assert_eq!(vm.calcdest(0x13, false, false, false), set(&[0, 1]));
    assert_eq!(vm.calcdest(0x21, false, false, false), set(&[2]));
    assert_eq!(vm.calcdest(0x1F, false, true, false), set(&[0]));
    // A vCPU with an unknown model cannot be addressed logically.
    lapic_write(&vm, 0, off::DFR, 0x7000_0000);
    assert_eq!(vm.calcdest(0x13, false, false, false), set(&[1]));
    // x2APIC cluster addressing uses the derived LDR (cluster 0, bit id).
    vm.set_x2apic_state(3, 1).unwrap();
    lapic_write(&vm, 3, off::DFR, 0); // ignored in x2APIC mode: DFR is 0
    assert_eq!(vm.calcdest(0x0000_0008, false, false, true), set(&[3]));
}

#[test]
fn msi_decoding() {
    let m = Msi::decode(0xFEE0_1000, 0x0000_4041).unwrap();
    assert_eq!(m, Msi { dest: 1, phys: true, delmode: DELMODE_FIXED, vector: 0x41, level: false });
    let m = Msi::decode(0xFEEA_B00C, 0x0000_8155).unwrap();
    assert_eq!(
        m,
        Msi { dest: 0xAB, phys: false, delmode: DELMODE_LOWPRIO, vector: 0x55, level: true }
    );
    // Destination mode without the redirection hint is physical (FreeBSD).
    assert!(Msi::decode(0xFEE0_1004, 0x41).unwrap().phys);
    assert!(Msi::decode(0xFEE0_1008, 0x41).unwrap().phys);
    for bad in [0xFED0_0000, 0xFEF0_0000, 0] {
        assert_eq!(Msi::decode(bad, 0x41), Err(Error::Inval), "{bad:#x}");
    }
    // Only the low 32 address bits are checked (FreeBSD's 32-bit mask).
    assert!(Msi::decode(0x1_FEE0_0000, 0x41).is_ok());
}

#[test]
fn msi_delivery() {
    let vm = vm(3);
    vm.lapic_msi(0xFEE0_2000, 0x41).unwrap();
    assert!(irr_has(&vm, 2, 0x41));
    // Level bit decoded but delivered edge: no TMR bit.
    vm.lapic_msi(0xFEE0_1000, 0x8042).unwrap();
    assert!(irr_has(&vm, 1, 0x42) && !snapshot_has(&vm.tmr_snapshot(1).unwrap(), 0x42));
    // Logical lowest priority goes to the first match.
    for i in 0..3 {
        lapic_write(&vm, i, off::LDR, 1 << (24 + i));
    }
    vm.lapic_msi(0xFEE0_600C, 0x143).unwrap();
    assert!(!irr_has(&vm, 0, 0x43) && irr_has(&vm, 1, 0x43) && !irr_has(&vm, 2, 0x43));
    // ExtINT makes an ExtINT pending at the destination (its vector
    // comes from the 8259); NMI through deliver_intr is dropped.
    vm.lapic_msi(0xFEE0_1000, 0x700).unwrap();
    assert!(vm.vcpu(1).unwrap().vlapic.take_extint());
    assert!(!vm.vcpu(0).unwrap().vlapic.has_pending_event());
    assert!(!vm.vcpu(2).unwrap().vlapic.extint_pending());
    vm.lapic_msi(0xFEE0_0000, 0x400).unwrap();
    assert!(!vm.vcpu(0).unwrap().vlapic.nmi_pending());
    // Vectors below 16 are dropped without an APIC error.
    vm.lapic_msi(0xFEE0_0000, 0x05).unwrap();
    lapic_write(&vm, 0, off::ESR, 0);
    assert_eq!(lapic_read(&vm, 0, off::ESR), 0);
    assert_eq!(vm.lapic_msi(0xFEC0_0000, 0x41), Err(Error::Inval));
}

#[test]
fn lapic_irq_validates_and_notifies() {
    let vm = vm(2);
    for (cpu, vec) in [(0, 15), (0, 256), (0, -1), (2, 0x40), (-1, 0x40)] {
        assert_eq!(vm.lapic_irq(cpu, vec), Err(Error::Inval), "{cpu} {vec}");
    }
    let v1 = vm.vcpu(1).unwrap();
    v1.set_state(VcpuState::Frozen, false).unwrap();
    v1.set_state(VcpuState::Running, false).unwrap();
    vm.lapic_irq(1, 0x40).unwrap();
    assert!(irr_has(&vm, 1, 0x40));
    assert!(v1.kicked(), "a RUNNING target is kicked");
    v1.set_state(VcpuState::Frozen, false).unwrap();
    // A software-disabled APIC ignores it.
    lapic_write(&vm, 0, off::SVR, 0xFF);
    vm.lapic_irq(0, 0x40).unwrap();
    assert!(!irr_has(&vm, 0, 0x40));
}

/// The callout thread's timer pass kicks a RUNNING vCPU whose local APIC
/// timer it fired, so that its guest takes the interrupt without waiting
/// for another exit.
#[test]
fn firing_a_local_apic_timer_kicks_its_running_vcpu() {
    let vm = vm(1);
    lapic_write(&vm, 0, off::TIMER_DCR, 0xB);
    lapic_write(&vm, 0, off::LVT_TIMER, 0x51);
    lapic_write(&vm, 0, off::TIMER_ICR, 1000);
    let v0 = vm.vcpu(0).unwrap();
    let due = v0.vlapic.timer_deadline().unwrap();
    v0.set_state(VcpuState::Frozen, false).unwrap();
    v0.set_state(VcpuState::Running, false).unwrap();
    assert!(!v0.kicked());
    assert_eq!(vm.fire_due_timers(due), None, "one-shot: nothing left armed");
    assert!(irr_has(&vm, 0, 0x51));
    assert!(v0.kicked(), "a RUNNING vCPU is kicked to take it");
    v0.set_state(VcpuState::Frozen, false).unwrap();
}

/// VM_ISA_*_IRQ checks both numbers before either chip counts the line:
/// a pin past the vioapic's leaves the 8259's IRQ unasserted.
#[test]
fn an_isa_irq_with_a_bad_ioapic_pin_changes_no_chip() {
    let vm = vm(1);
    let pins = vm.ioapic_pincount();
    assert_eq!(vm.isa_assert_irq(3, pins), Err(Error::Inval));
    assert_eq!(vm.isa_deassert_irq(3, -1), Err(Error::Range), "IRQ 3 was never asserted");
}

#[test]
fn lapic_local_irq_one_or_all_vcpus() {
    let vm = vm(3);
    for i in 0..3 {
        lapic_write(&vm, i, off::LVT_LINT0, 0x33);
    }
    vm.lapic_local_irq(1, lvt::LINT0 as i32).unwrap();
    assert!(irr_has(&vm, 1, 0x33) && !irr_has(&vm, 0, 0x33));
    vm.lapic_local_irq(-1, lvt::LINT0 as i32).unwrap();
    assert!((0..3).all(|i| irr_has(&vm, i, 0x33)));
    assert_eq!(vm.lapic_local_irq(0, 7), Err(Error::Inval));
    assert_eq!(vm.lapic_local_irq(-1, 7), Err(Error::Inval));
    assert_eq!(vm.lapic_local_irq(3, 0), Err(Error::Inval));
    assert_eq!(vm.lapic_local_irq(-2, 0), Err(Error::Inval));
    // Disabled APIC: LINT1 is the NMI pin.
    lapic_write(&vm, 2, off::SVR, 0xFF);
    vm.lapic_local_irq(2, lvt::LINT1 as i32).unwrap();
    assert!(vm.vcpu(2).unwrap().vlapic.nmi_pending());
}

#[test]
fn nmi_and_x2apic_state_ioctls() {
    let vm = vm(2);
    vm.inject_nmi(1).unwrap();
    assert!(vm.vcpu(1).unwrap().vlapic.take_nmi());
    assert_eq!(vm.inject_nmi(2), Err(Error::Inval));
    assert_eq!(vm.get_x2apic_state(0), Ok(X2ApicState::Disabled));
    vm.set_x2apic_state(0, 1).unwrap();
    assert_eq!(vm.get_x2apic_state(0), Ok(X2ApicState::Enabled));
    for bad in [2, -1] {
        assert_eq!(vm.set_x2apic_state(0, bad), Err(Error::Inval));
    }
    assert_eq!(vm.get_x2apic_state(5), Err(Error::Inval));
    // In x2APIC mode the MMIO page reads 0; the MSRs work.
    assert_eq!(lapic_read(&vm, 0, off::ID), 0);
    assert_eq!(vm.lapic_rdmsr(0, 0x802), Ok(0));
    assert_eq!(vm.lapic_rdmsr(1, 0x802), Err(Error::Inval), "xAPIC mode: #GP");
}

#[test]
fn isa_irq_ioctls_drive_the_8259_then_the_ioapic_pin() {
    let vm = vm(1);
    for bad in [-1, 16] {
        assert_eq!(vm.isa_assert_irq(bad, 4), Err(Error::Inval));
        assert_eq!(vm.isa_deassert_irq(bad, -1), Err(Error::Inval));
        assert_eq!(vm.isa_pulse_irq(bad, 4), Err(Error::Inval));
    }
    assert_eq!(vm.vioapic().assert_count(4), 0, "a bad ISA IRQ stops before the pin");
    // Before the guest initialises the 8259 it only counts: no request.
    let acnt = |irq: usize| vm.vatpic().chip(irq >> 3).acnt[irq & 7];
    vm.isa_assert_irq(4, -1).unwrap();
    assert_eq!((acnt(4), vm.vioapic().assert_count(4)), (1, 0));
    vm.isa_assert_irq(4, 4).unwrap();
    assert_eq!((acnt(4), vm.vioapic().assert_count(4)), (2, 1));
    vm.isa_deassert_irq(4, 4).unwrap();
    assert_eq!(vm.isa_deassert_irq(4, 4), Err(Error::Range), "the pin's count is 0");
    assert_eq!(acnt(4), 0);
    assert_eq!(vm.isa_deassert_irq(4, -1), Err(Error::Range), "the 8259's too");
    assert_eq!(vm.vatpic().chip(0).request, 0);
    // A PCI INTx line (bhyve's PIRQ routing) asserted before the guest
    // initialises the 8259 and deasserted after: both counts balance.
    vm.isa_assert_irq(10, 18).unwrap();
    vm.isa_pulse_irq(0, 2).unwrap();
    assert_eq!(vm.isa_pulse_irq(0, 32), Err(Error::Inval));
    assert_eq!(vm.ioapic_pincount(), 32);
    // Initialised, the 8259 takes the IRQ and raises INTR: LINT0 of a
    // disabled APIC is the INTR pin, so an ExtINT is pending.
    lapic_write(&vm, 0, off::SVR, 0xFF);
    program_8259(&vm, 0x20, 0x28);
    vm.isa_deassert_irq(10, 18).unwrap();
    assert_eq!((acnt(10), vm.vioapic().assert_count(18)), (0, 0));
    assert_eq!(vm.vatpic().chip(1).request, 0, "no edge came after initialisation");
    vm.isa_assert_irq(5, 5).unwrap();
    assert_eq!((vm.vatpic().chip(0).request, vm.vioapic().assert_count(5)), (1 << 5, 1));
    assert!(vm.vcpu(0).unwrap().vlapic.extint_pending());
    assert_eq!(vm.atpic_accept_intr(), 0x25);
    // A bad pin fails the call before the 8259 takes the IRQ; a deassert
    // the 8259 refuses (not asserted) still deasserts the pin, and is
    // reported.
    assert_eq!(vm.isa_assert_irq(6, 99), Err(Error::Inval));
    assert_eq!(vm.vatpic().chip(0).request & (1 << 6), 0);
    vm.ioapic_assert_irq(7).unwrap();
    assert_eq!(vm.isa_deassert_irq(7, 7), Err(Error::Range));
    assert_eq!(vm.vioapic().assert_count(7), 0);
    // The 8259 goes first: a pin the IOAPIC refuses after it took the IRQ.
    assert_eq!(vm.isa_deassert_irq(5, 6), Err(Error::Range));
    assert_eq!(vm.vatpic().chip(0).acnt[5], 0);
}

#[test]
fn the_8259_reaches_the_cpu_through_lint0_or_ioapic_pin_0() {
    let vm = vm(2);
    program_8259(&vm, 0x20, 0x28);
    let extint = |i: usize| vm.vcpu(i).unwrap().vlapic.take_extint();
    // Virtual wire through the IOAPIC: pin 0 as ExtINT to vCPU 1, every
    // enabled APIC's LINT0 masked (their reset value).
    program_rte(&vm, 0, 0, DELMODE_EXTINT, 1);
    vm.isa_pulse_irq(1, -1).unwrap();
    assert_eq!((extint(0), extint(1)), (false, true));
    assert_eq!(vm.atpic_accept_intr(), 0x21);
    // Virtual wire through LINT0 (ExtINT) on vCPU 0, pin 0 masked.
    program_rte(&vm, 0, 0, MASKED | DELMODE_EXTINT, 1);
    lapic_write(&vm, 0, off::LVT_LINT0, DELMODE_EXTINT);
    assert_eq!(vm.emulate_inout(0x20, 1, false, 0x20), Some(Ok(None)), "EOI");
    vm.isa_pulse_irq(6, -1).unwrap();
    assert_eq!((extint(0), extint(1)), (true, false));
    assert_eq!(vm.atpic_accept_intr(), 0x26);
    // The guest's ELCR and mask reads go through the ports.
    vm.isa_set_irq_trigger(9, true).unwrap();
    assert_eq!(vm.emulate_inout(0x4d1, 1, true, 0), Some(Ok(Some(0x02))));
    assert_eq!(vm.emulate_inout(0x21, 1, true, 0), Some(Ok(Some(0))));
    assert_eq!(vm.emulate_inout(0x21, 2, true, 0), Some(Err(Error::Io)));
}

#[test]
fn mmio_dispatch_and_access_rules() {
    let vm = vm(2);
    assert_eq!(vm.mmio_read(0, 0xD000_0000, 4), Ok(None));
    assert_eq!(vm.mmio_write(0, 0xFEBF_FFFC, 4, 0), Ok(None));
    assert_eq!(vm.mmio_write(0, LAPIC_BASE + 0x1000, 4, 0), Ok(None));
    assert_eq!(vm.mmio_read(2, IOAPIC_BASE, 4), Err(Error::Inval), "bad vCPU");
    // Local APIC: writes 4 bytes at 16-byte boundaries, reads 16-byte
    // aligned once bits 1:0 are dropped.
    assert_eq!(vm.mmio_write(0, LAPIC_BASE + 0x84, 4, 0), Err(Error::Inval));
    assert_eq!(vm.mmio_write(0, LAPIC_BASE + 0x80, 2, 0), Err(Error::Inval));
    assert_eq!(vm.mmio_read(0, LAPIC_BASE + 0x88, 4), Err(Error::Inval));
    assert_eq!(vm.mmio_read(1, LAPIC_BASE + 0x23, 1), Ok(Some(1 << 24)));
    // Each vCPU sees its own APIC at the same address.
    assert_eq!(lapic_read(&vm, 0, off::ID), 0);
    // The vioapic ignores narrow accesses instead of failing.
    assert_eq!(vm.mmio_read(0, IOWIN_GPA, 1), Ok(Some(0)));
    assert_eq!(vm.mmio_write(0, IOWIN_GPA, 8, 0), Ok(Some(())));
    assert_eq!(vm.ioapic_mmio_write_nonvcpu(LAPIC_BASE, 4, 0), Err(Error::Inval));
}

#[test]
fn level_interrupt_round_trip_through_ioapic_and_lapic() {
    let vm = vm(2);
    program_rte(&vm, 0, 4, LEVEL | 0x44, 1);
    let v1 = &vm.vcpu(1).unwrap().vlapic;
    assert!(v1.staged_tmr().0.test(0x44), "TMR staged into vCPU 1");
    vm.ioapic_assert_irq(4).unwrap();
    assert!(irr_has(&vm, 1, 0x44));
    assert!(snapshot_has(&vm.tmr_snapshot(1).unwrap(), 0x44), "TMR recorded at acceptance");
    assert_eq!(rte_low(&vm, 4) & rte::REM_IRR as u32, rte::REM_IRR as u32);
    assert_eq!(v1.pending_intr(), Some(0x44));
    v1.intr_accepted(0x44);
    assert!(snapshot_has(&vm.isr_snapshot(1).unwrap(), 0x44));
    // EOI while still asserted: the vioapic re-sends.
    lapic_write(&vm, 1, off::EOI, 0);
    assert!(irr_has(&vm, 1, 0x44));
    assert_eq!(vm.ioapic_stats().interrupts, 2);
    v1.intr_accepted(0x44);
    vm.ioapic_deassert_irq(4).unwrap();
    lapic_write(&vm, 1, off::EOI, 0);
    assert!(!irr_has(&vm, 1, 0x44));
    assert_eq!(rte_low(&vm, 4) & rte::REM_IRR as u32, 0);
    assert_eq!(vm.ioapic_stats().interrupts, 2);
}

/// An edge send reads its pin's entry without a vioapic lock, so it can
/// land after the guest rewrote the pin to level with the same vector and
/// after that rewrite's level send (a device thread preempted between the
/// two). The late edge message (here an MSI with that vector) joins the
/// level interrupt: its EOI still clears remote IRR. It used to relabel the
/// vector edge, the EOI stayed in the local APIC, and the pin never
/// interrupted again.
#[test]
fn a_late_edge_send_does_not_wedge_a_pin_rewritten_to_level() {
    let vm = vm(2);
    program_rte(&vm, 0, 5, 0x50, 1);
    program_rte(&vm, 0, 5, LEVEL | 0x50, 1);
    vm.ioapic_assert_irq(5).unwrap();
    vm.lapic_msi(0xFEE0_1000, 0x50).unwrap();
    let v1 = &vm.vcpu(1).unwrap().vlapic;
    assert_eq!(v1.pending_intr(), Some(0x50));
    v1.intr_accepted(0x50);
    vm.ioapic_deassert_irq(5).unwrap();
    lapic_write(&vm, 1, off::EOI, 0);
    assert_eq!(rte_low(&vm, 5) & rte::REM_IRR as u32, 0, "the EOI reached the IOAPIC");
    // The pin works again.
    vm.ioapic_assert_irq(5).unwrap();
    assert_eq!(vm.ioapic_stats().interrupts, 2);
    assert_eq!(rte_low(&vm, 5) & rte::REM_IRR as u32, rte::REM_IRR as u32);
}

/// An MSI that shares a level pin's vector is an edge instance: its EOI
/// goes nowhere, even while the pin's interrupt waits behind it in IRR
/// (the TMR bit then reads level). It used to be broadcast, clearing the
/// pin's remote IRR before its interrupt was taken, which re-sent it.
#[test]
fn an_msi_sharing_a_level_vector_does_not_eoi_the_pin() {
    let vm = vm(1);
    program_rte(&vm, 0, 5, LEVEL | 0x50, 0);
    let v0 = &vm.vcpu(0).unwrap().vlapic;
    vm.lapic_msi(0xFEE0_0000, 0x50).unwrap();
    v0.intr_accepted(0x50); // the MSI, in service
    vm.ioapic_assert_irq(5).unwrap(); // the pin's interrupt, pending behind it
    lapic_write(&vm, 0, off::EOI, 0); // the MSI's EOI
    assert_eq!(rte_low(&vm, 5) & rte::REM_IRR as u32, rte::REM_IRR as u32, "the pin's is not done");
    assert_eq!(vm.ioapic_stats().interrupts, 1, "not re-sent");
    v0.intr_accepted(0x50); // the pin's
    vm.ioapic_deassert_irq(5).unwrap();
    lapic_write(&vm, 0, off::EOI, 0);
    assert_eq!(rte_low(&vm, 5) & rte::REM_IRR as u32, 0);
}

#[test]
fn icr_writes_send_ipis() {
    let vm = vm(3);
    lapic_write(&vm, 0, off::ICR_HI, 2 << 24);
    lapic_write(&vm, 0, off::ICR_LO, DELMODE_FIXED | 0x55);
    assert!(irr_has(&vm, 2, 0x55) && !irr_has(&vm, 1, 0x55));
    lapic_write(&vm, 0, off::ICR_LO, DEST_SELF | 0x56);
    assert!(irr_has(&vm, 0, 0x56));
    lapic_write(&vm, 0, off::ICR_LO, DEST_ALLESELF | 0x57);
    assert!(!irr_has(&vm, 0, 0x57) && irr_has(&vm, 1, 0x57) && irr_has(&vm, 2, 0x57));
    lapic_write(&vm, 1, off::ICR_LO, DEST_ALLISELF | 0x58);
    assert!((0..3).all(|i| irr_has(&vm, i, 0x58)));
    lapic_write(&vm, 0, off::ICR_HI, 0xFF << 24);
    lapic_write(&vm, 0, off::ICR_LO, DELMODE_NMI);
    assert!((0..3).all(|i| vm.vcpu(i).unwrap().vlapic.take_nmi()));
    // Lowest priority: one target.
    for i in 0..3 {
        lapic_write(&vm, i, off::LDR, 1 << (24 + i));
    }
    lapic_write(&vm, 0, off::ICR_HI, 0x06 << 24);
    lapic_write(&vm, 0, off::ICR_LO, DELMODE_LOWPRIO | DESTMODE_LOG | 0x59);
    assert!(irr_has(&vm, 1, 0x59) && !irr_has(&vm, 2, 0x59));
    // An illegal vector errors on the sender and sends nothing.
    lapic_write(&vm, 0, off::ICR_LO, DEST_ALLESELF | 0x0E);
    lapic_write(&vm, 0, off::ESR, 0);
    assert_eq!(lapic_read(&vm, 0, off::ESR), ESR_SEND_ILLEGAL_VECTOR);
    assert!(!irr_has(&vm, 1, 0x0E));
}

/// FreeBSD 14's IPIS_SENT: each fixed IPI counts one in the sender's
/// "ipis sent to vcpu[destination]", shorthands included, the x2APIC
/// SELF_IPI register too; NMI, lowest priority and an illegal vector
/// count nothing.
#[test]
fn fixed_ipis_are_counted_by_the_sender_per_destination() {
    use crate::stats::{IPIS_SENT, IPI_ELEMS};
    let vm = vm(3);
    let sent = |from: usize| -> Vec<u64> { vm.vcpu_stats(from, IPIS_SENT as i32, 64).unwrap() };
    lapic_write(&vm, 0, off::ICR_HI, 1 << 24);
    lapic_write(&vm, 0, off::ICR_LO, DELMODE_FIXED | 0x55);
    let mut want = vec![0; IPI_ELEMS];
    want[1] = 1;
    assert_eq!(sent(0), want);
    assert_eq!(sent(1), vec![0; IPI_ELEMS], "the receiver counts nothing");
    lapic_write(&vm, 0, off::ICR_LO, DEST_ALLISELF | 0x56);
    want[0] += 1;
    want[1] += 1;
    want[2] += 1;
    assert_eq!(sent(0), want);
    lapic_write(&vm, 0, off::ICR_HI, 0xFF << 24);
    lapic_write(&vm, 0, off::ICR_LO, DELMODE_NMI);
    for i in 0..3 {
        lapic_write(&vm, i, off::LDR, 1 << (24 + i));
    }
    lapic_write(&vm, 0, off::ICR_HI, 0x06 << 24);
    lapic_write(&vm, 0, off::ICR_LO, DELMODE_LOWPRIO | DESTMODE_LOG | 0x59);
    lapic_write(&vm, 0, off::ICR_LO, DEST_ALLESELF | 0x0E);
    assert_eq!(sent(0), want, "NMI, lowest priority, illegal vector");
    vm.set_x2apic_state(2, 1).unwrap();
    vm.lapic_wrmsr(2, 0x83F, 0x60).unwrap(); // SELF_IPI
    assert_eq!(sent(2)[2], 1);
    vm.cpus().suspended = vm.active_cpus();
    vm.reinit(&vm.lock_all().unwrap()).unwrap();
    assert_eq!(sent(0), vec![0; IPI_ELEMS], "VM_REINIT zeroes them");
}

/// x2APIC logical destinations: the member bits are 15:0 of the
/// destination (the derived LDR has bit id % 16), so vCPU 9 is bit 9 of
/// cluster 0.
#[test]
fn x2apic_logical_destinations_use_all_sixteen_member_bits() {
    let vm = vm(10);
    for i in 0..10 {
        vm.set_x2apic_state(i, 1).unwrap();
    }
    assert_eq!(vm.calcdest(1 << 9, false, false, true), set(&[9]));
    assert_eq!(vm.calcdest((1 << 9) | 1, false, false, true), set(&[0, 9]));
}

/// A self IPI reaches its sender only; an x2APIC physical destination is
/// the whole 32-bit id, so 0x101 is no vCPU of a small VM (not vCPU 1).
#[test]
fn self_ipis_and_x2apic_physical_ids_name_exactly_one_apic() {
    let vm = vm(3);
    lapic_write(&vm, 1, off::ICR_LO, DEST_SELF | 0x56);
    assert!(irr_has(&vm, 1, 0x56) && !irr_has(&vm, 0, 0x56) && !irr_has(&vm, 2, 0x56));
    assert_eq!(vm.calcdest(0x101, true, false, true), set(&[]));
    assert_eq!(vm.calcdest(0x1, true, false, true), set(&[1]));
}

/// FreeBSD 14 `vlapic_icrlo_write_handler`: without VM_CAP_IPI_EXIT an
/// INIT or STARTUP goes only to a physical destination (a logical one is
/// dropped); with it, one whose destination set is empty makes no IPI
/// exit (its `CPU_EMPTY(&ipimask)` check).
#[test]
fn start_ipis_without_a_target_make_nothing() {
    let vm = vm(2);
    lapic_write(&vm, 1, off::LDR, 1 << 24);
    let init = |dest, phys| crate::vlapic::Ipi {
        mode: DELMODE_INIT,
        vector: 0,
        dest,
        phys,
        shorthand: DEST_DESTFLD,
        x2apic_dest: false,
    };
    assert_eq!(vm.send_ipi(0, init(1, false)), None, "logical, no IPI exit");
    assert_eq!(vm.send_ipi(0, init(1, true)).map(|s| s.targets), Some(set(&[1])), "physical");
    vm.vcpu(0).unwrap().regs.lock().set_cap(crate::regs::CAP_IPI_EXIT, 1).unwrap();
    assert_eq!(vm.send_ipi(0, init(1, false)).map(|s| s.targets), Some(set(&[1])), "logical, IPI exit");
    assert_eq!(vm.send_ipi(0, init(4, false)), None, "no vCPU has logical bit 2");
}

#[test]
fn init_and_sipi_outside_the_run_loop_do_nothing() {
    // As FreeBSD's kernemu ioctls: the IPI exit they make is dropped.
    let vm = vm(2);
    lapic_write(&vm, 0, off::ICR_HI, 1 << 24);
    lapic_write(&vm, 0, off::ICR_LO, DELMODE_INIT | TRIGMOD_LEVEL | LEVEL_ASSERT);
    assert_eq!(lapic_read(&vm, 1, off::SVR), SVR_ENABLE | 0xFF, "no reset");
    assert!(vm.cpus().startup.is_empty());
}

#[test]
fn x2apic_msrs_reach_the_vioapic_and_other_vcpus() {
    let vm = vm(2);
    for i in 0..2 {
        vm.set_x2apic_state(i, 1).unwrap();
    }
    vm.lapic_wrmsr(0, 0x830, (1u64 << 32) | 0x61).unwrap();
    assert!(irr_has(&vm, 1, 0x61));
    vm.lapic_wrmsr(1, 0x83F, 0x62).unwrap();
    assert!(irr_has(&vm, 1, 0x62));
    program_rte(&vm, 0, 2, LEVEL | 0x70, 1);
    vm.ioapic_assert_irq(2).unwrap();
    let l = &vm.vcpu(1).unwrap().vlapic;
    l.intr_accepted(0x70);
    vm.ioapic_deassert_irq(2).unwrap();
    vm.lapic_wrmsr(1, 0x80B, 0).unwrap();
    assert_eq!(rte_low(&vm, 2) & rte::REM_IRR as u32, 0, "EOI MSR reached the vioapic");
    assert_eq!(vm.lapic_wrmsr(0, 0x1B, 0), Err(Error::Inval));
}

#[test]
fn isa_trigger_modes_follow_freebsd_vatpic() {
    let vm = vm(1);
    vm.isa_set_irq_trigger(10, true).unwrap();
    vm.isa_set_irq_trigger(3, true).unwrap();
    vm.isa_set_irq_trigger(3, false).unwrap();
    assert_eq!(vm.isa_elcr(), 1 << 10);
    for irq in [0, 1, 2, 8, 13] {
        assert_eq!(vm.isa_set_irq_trigger(irq, true), Err(Error::Inval), "IRQ {irq} is edge-only");
        vm.isa_set_irq_trigger(irq, false).unwrap();
    }
    assert_eq!(vm.isa_set_irq_trigger(16, false), Err(Error::Inval));
    assert_eq!(vm.isa_set_irq_trigger(-1, false), Err(Error::Inval));
    assert_eq!(vm.isa_elcr(), 1 << 10);
}

#[test]
fn reinit_resets_both_interrupt_controllers() {
    let vm = vm(2);
    vm.isa_set_irq_trigger(9, true).unwrap();
    program_8259(&vm, 0x20, 0x28);
    vm.lapic_msi(0xFEE0_0000, 0x700).unwrap(); // an ExtINT for vCPU 0
    program_rte(&vm, 0, 1, MASKED | LEVEL | 0x40, 1);
    vm.ioapic_assert_irq(1).unwrap();
    vm.lapic_irq(1, 0x50).unwrap();
    vm.set_x2apic_state(1, 1).unwrap();
    vm.cpus().suspended = vm.active_cpus();
    {
        let all = vm.lock_all().unwrap();
        vm.reinit(&all).unwrap();
    }
    assert_eq!(vm.vioapic().rte(1), rte::RESET);
    assert_eq!(vm.vioapic().assert_count(1), 0);
    assert_eq!(vm.ioapic_stats(), Default::default());
    assert_eq!(vm.isa_elcr(), 0);
    assert!(!vm.vatpic().chip(0).ready && !vm.vatpic().chip(1).ready);
    assert!(!vm.vcpu(0).unwrap().vlapic.extint_pending(), "a pending ExtINT goes");
    let l = &vm.vcpu(1).unwrap().vlapic;
    assert!(l.irr().is_empty() && l.staged_tmr().0.is_empty());
    assert_eq!(l.x2apic_state(), X2ApicState::Disabled);
}

/// Racing asserts at the top and racing deasserts at zero: each refusal is
/// counted once, the count never leaves 0..=MAX_ASSERTS even for a moment
/// (every other operation decides on the true count), and it ends where
/// the successful operations put it.
#[test]
fn racing_asserts_and_deasserts_at_both_limits_keep_the_count() {
    use crate::vioapic::MAX_ASSERTS;
    use std::sync::{Arc, Barrier};

    const THREADS: usize = 3;
    const ROUNDS: usize = 20_000;
    crate::test_util::with_watchdog(60, || {
        let vm = Arc::new(vm(1));
        // Pin 3 one below the top, pin 4 at one (both masked: nothing is
        // sent). Each pair on pin 3 (pin 4) is refused while another
        // thread's pair is half done.
        vm.vioapic().set_assert_count(3, MAX_ASSERTS - 1);
        vm.vioapic().set_assert_count(4, 1);
        let barrier = Arc::new(Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (vm, barrier) = (vm.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let (mut high, mut low) = (0u64, 0u64);
                    barrier.wait();
                    for _ in 0..ROUNDS {
                        match vm.ioapic_assert_irq(3) {
                            Ok(()) => vm.ioapic_deassert_irq(3).unwrap(),
                            Err(e) => {
                                assert_eq!(e, Error::TooBig);
                                high += 1;
                            }
                        }
                        match vm.ioapic_deassert_irq(4) {
                            Ok(()) => vm.ioapic_assert_irq(4).unwrap(),
                            Err(e) => {
                                assert_eq!(e, Error::Range);
                                low += 1;
                            }
                        }
                        let c = vm.vioapic().assert_count(4);
                        assert!(c <= 1, "pin 4 count {c}: it only ever holds 0 or 1");
                        let c = vm.vioapic().assert_count(3);
                        assert!(
                            (MAX_ASSERTS - 1..=MAX_ASSERTS).contains(&c),
                            "pin 3 count {c}: its start or one above, never past the top"
                        );
                    }
                    (high, low)
                })
            })
            .collect();
        let (mut high, mut low) = (0, 0);
        for w in workers {
            let (h, l) = w.join().unwrap();
            high += h;
            low += l;
        }
        assert_eq!(vm.vioapic().assert_count(3), MAX_ASSERTS - 1);
        assert_eq!(vm.vioapic().assert_count(4), 1);
        let s = vm.ioapic_stats();
        assert_eq!((s.saturate_high, s.saturate_low), (high, low), "every refusal counted once");
        assert_eq!(s.interrupts, 0, "masked pins send nothing");
    });
}

/// Under the 2019 protocol each vCPU stages its own TMR changes in the
/// rendezvous: a level entry aimed at vCPU 1 stages its vector there
/// only, and a vector change stages the old vector's clear and the new
/// one's set.
#[test]
fn the_legacy_rendezvous_stages_each_vcpus_own_tmr_changes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    crate::test_util::with_watchdog(20, || {
        let vm = std::sync::Arc::new(vm(2));
        vm.set_legacy_protocol(true);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        // vCPU 1's thread does its part of each rendezvous.
        let helper = {
            let (vm, stop) = (vm.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if vm.rendezvous_pending() {
                        vm.handle_rendezvous(Some(1)).unwrap();
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let staged = |c: usize| {
            let (set, clear) = vm.vcpus()[c].vlapic.staged_tmr();
            (set.iter().collect::<Vec<_>>(), clear.iter().collect::<Vec<_>>())
        };
        program_rte(&vm, 0, 5, MASKED | LEVEL | 0x40, 1);
        assert_eq!(staged(1), (vec![0x40], vec![]));
        assert_eq!(staged(0), (vec![], vec![]), "vCPU 0 is no target");
        program_rte(&vm, 0, 5, MASKED | LEVEL | 0x41, 1);
        assert_eq!(staged(1), (vec![0x41], vec![0x40]));
        assert_eq!(staged(0), (vec![], vec![]));
        stop.store(true, Ordering::SeqCst);
        helper.join().unwrap();
    });
}

/// The vioapic's window is 4 KiB: the byte past its end is not emulated
/// (it is the caller's, as any other address the library does not own).
#[test]
fn the_address_past_the_ioapic_window_is_not_emulated() {
    let vm = vm(1);
    let end = IOAPIC_BASE + IOAPIC_SIZE;
    assert_eq!(vm.mmio_read(0, end - 4, 4), Ok(Some(0)));
    assert_eq!(vm.mmio_read(0, end, 4), Ok(None));
}

/// HLT sleeps and the callout thread wait until the earliest device
/// callout: with the HPET's one-shot timer due in 16 s and the RTC's
/// periodic interrupt (2 Hz) armed after it, the deadline moves to the
/// RTC's (the 16 s leave a slow machine ample time between the two).
#[test]
fn the_device_timer_deadline_is_the_earliest_callout() {
    use crate::vhpet::{reg, CNF_ENABLE, TCNF_INT_ENB, VHPET_BASE};
    let vm = vm(1);
    let hpet = |off: u64, v: u64| assert_eq!(vm.mmio_write(0, VHPET_BASE + off, 8, v), Ok(Some(())));
    hpet(reg::timer_cap_cnf(0), 24 << 9 | TCNF_INT_ENB);
    hpet(reg::timer_comparator(0), 16 * 16_777_216);
    hpet(reg::CONFIG, CNF_ENABLE);
    let hpet_only = vm.device_timer_deadline().expect("HPET armed");
    for (port, val) in [(0x70, 0x0a), (0x71, 0x2f), (0x70, 0x0b), (0x71, 0x42)] {
        assert_eq!(vm.emulate_inout(port, 1, false, val), Some(Ok(None)), "port {port:#x}");
    }
    let both = vm.device_timer_deadline().expect("armed");
    assert!(both < hpet_only, "the RTC's tick (within 500 ms) comes before the HPET's (16 s)");
}

/// The RTC ioctls of a destroyed VM fail, VM_RTC_WRITE included.
#[test]
fn the_rtc_ioctls_of_a_destroyed_vm_fail() {
    let vm = vm(1);
    vm.destroy();
    assert_eq!(vm.rtc_nvram_write(0x34, 0x5c), Err(Error::Destroyed));
    assert_eq!(vm.rtc_nvram_read(0x34), Err(Error::Destroyed));
    assert_eq!(vm.rtc_set_time(0), Err(Error::Destroyed));
    assert_eq!(vm.rtc_get_time(), Err(Error::Destroyed));
}
