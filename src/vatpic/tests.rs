use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::test_util::Rng;

/// Counts INTR raises.
#[derive(Default)]
struct Bus {
    raises: AtomicU32,
}

impl AtpicBus for Bus {
    fn raise_intr(&self) {
        self.raises.fetch_add(1, Ordering::SeqCst);
    }
}

impl Bus {
    fn take(&self) -> u32 {
        self.raises.swap(0, Ordering::SeqCst)
    }
}

fn out(p: &Vatpic, bus: &Bus, port: u16, val: u8) {
    p.port_out(port, 1, val, bus).unwrap_or_else(|e| panic!("out {port:#x} {val:#x}: {e:?}"));
}

fn inb(p: &Vatpic, port: u16) -> u8 {
    p.port_in(port, 1).unwrap()
}

/// ICW1-4 on one chip: edge, cascade, 8086, `icw4` extra bits.
fn init_chip(p: &Vatpic, bus: &Bus, cmd: u16, base: u8, icw4: u8) {
    out(p, bus, cmd, 0x11);
    out(p, bus, cmd + 1, base);
    out(p, bus, cmd + 1, if cmd == IO_ICU1 { 0x04 } else { 0x02 });
    out(p, bus, cmd + 1, 0x01 | icw4);
}

/// A pair initialised with vectors 0x20 and 0x28, nothing masked.
fn pair() -> (Vatpic, Bus) {
    let (p, bus) = (Vatpic::new(), Bus::default());
    init_chip(&p, &bus, IO_ICU1, 0x20, 0);
    init_chip(&p, &bus, IO_ICU2, 0x28, 0);
    assert_eq!(bus.take(), 0);
    (p, bus)
}

fn pulse(p: &Vatpic, bus: &Bus, irq: i32) {
    p.set_irq(irq, IrqOp::Pulse, bus).unwrap();
}

const EOI: u8 = 0x20;

#[test]
fn an_uninitialised_pair_counts_its_pins_but_requests_nothing() {
    let (p, bus) = (Vatpic::new(), Bus::default());
    for op in [IrqOp::Assert, IrqOp::Deassert, IrqOp::Pulse] {
        p.set_irq(4, op, &bus).unwrap();
        assert_eq!(p.set_irq(16, op, &bus), Err(Error::Inval));
        assert_eq!(p.set_irq(-1, op, &bus), Err(Error::Inval));
    }
    assert_eq!(bus.take(), 0);
    assert_eq!(p.chip(0), Chip::default());
    assert_eq!(p.set_irq(4, IrqOp::Deassert, &bus), Err(Error::Range));
    // A line asserted before the initialisation and deasserted after
    // balances, and makes no request: its edge came before.
    p.set_irq(3, IrqOp::Assert, &bus).unwrap();
    assert_eq!((p.chip(0).acnt[3], p.chip(0).request), (1, 0));
    init_chip(&p, &bus, IO_ICU1, 0x20, 0);
    p.set_irq(3, IrqOp::Deassert, &bus).unwrap();
    assert_eq!((p.chip(0).acnt[3], p.chip(0).request), (0, 0));
    assert_eq!(bus.take(), 0);
    // A level line held across the initialisation requests once it is
    // done (a PCI INTx line that stays asserted); an edge line does not.
    let (p, bus) = (Vatpic::new(), Bus::default());
    p.set_irq_trigger(5, true).unwrap();
    p.set_irq_trigger(7, true).unwrap(); // level, but not asserted
    p.set_irq(5, IrqOp::Assert, &bus).unwrap();
    p.set_irq(6, IrqOp::Assert, &bus).unwrap();
    assert_eq!(p.chip(0).request, 0);
    init_chip(&p, &bus, IO_ICU1, 0x20, 0);
    assert_eq!(p.chip(0).request, 1 << 5);
    assert_eq!(bus.take(), 1, "INTR raised for it");
    // The slave may be ready before the master: its pins request then,
    // and its cascade pulse counts on the master without a request.
    let (p, bus) = (Vatpic::new(), Bus::default());
    init_chip(&p, &bus, IO_ICU2, 0x70, 0);
    pulse(&p, &bus, 9);
    assert_eq!(p.chip(1).request, 1 << 1);
    assert_eq!((p.chip(0).acnt[2], p.chip(0).request), (0, 0));
    assert_eq!(bus.take(), 0, "no INTR from an uninitialised master");
}

#[test]
fn initialisation_outside_cascade_8086_mode_is_refused() {
    let (p, bus) = (Vatpic::new(), Bus::default());
    // Single mode, and no ICW4: EIO, the chip left uninitialised.
    assert_eq!(p.port_out(IO_ICU1, 1, 0x13, &bus), Err(Error::Io));
    assert_eq!(p.port_out(IO_ICU1, 1, 0x10, &bus), Err(Error::Io));
    assert!(!p.chip(0).ready);
    // 8080 mode in ICW4.
    out(&p, &bus, IO_ICU1, 0x11);
    out(&p, &bus, 0x21, 0x08);
    out(&p, &bus, 0x21, 0x04);
    assert_eq!(p.port_out(0x21, 1, 0x00, &bus), Err(Error::Io));
    assert!(!p.chip(0).ready);
    assert_eq!(p.chip(0).irq_base, 0x08);
    // Anything but single bytes, on every port.
    for port in [0x20, 0x21, 0xa0, 0xa1, IO_ELCR1, IO_ELCR2] {
        for bytes in [0, 2, 4] {
            assert_eq!(p.port_out(port, bytes, 0, &bus), Err(Error::Io));
            assert_eq!(p.port_in(port, bytes), Err(Error::Io));
        }
    }
}

#[test]
fn an_edge_irq_raises_intr_once_until_acknowledged() {
    let (p, bus) = pair();
    pulse(&p, &bus, 3);
    pulse(&p, &bus, 4);
    assert_eq!(bus.take(), 1, "one raise for both requests");
    // The acknowledge takes the higher priority pin and raises again for
    // the other one (which IRQ 3 in service holds back).
    assert_eq!(p.accept_intr(&bus), 0x23);
    assert_eq!(bus.take(), 0, "IRQ 4 is below IRQ 3 in service");
    let m = p.chip(0);
    assert_eq!((m.request, m.service), (1 << 4, 1 << 3));
    out(&p, &bus, IO_ICU1, EOI);
    assert_eq!(bus.take(), 1, "the EOI lets IRQ 4 through");
    assert_eq!(p.accept_intr(&bus), 0x24);
    out(&p, &bus, IO_ICU1, EOI);
    assert_eq!(p.chip(0).service, 0);
    assert_eq!(bus.take(), 0);
}

/// After initialisation IR0 is highest and IR7 lowest priority: IR7
/// waits behind a lower-numbered request and while one is in service.
#[test]
fn ir7_has_the_lowest_priority_after_initialisation() {
    let (p, bus) = pair();
    pulse(&p, &bus, 7);
    pulse(&p, &bus, 3);
    assert_eq!(bus.take(), 1);
    assert_eq!(p.accept_intr(&bus), 0x23);
    assert_eq!(bus.take(), 0, "IR7 is held back by IR3 in service");
    out(&p, &bus, IO_ICU1, EOI);
    assert_eq!(bus.take(), 1);
    assert_eq!(p.accept_intr(&bus), 0x27);
    assert_eq!(p.chip(0).service, 1 << 7);
}

#[test]
fn a_higher_priority_request_preempts_one_in_service() {
    let (p, bus) = pair();
    pulse(&p, &bus, 5);
    assert_eq!(p.accept_intr(&bus), 0x25);
    bus.take();
    pulse(&p, &bus, 1);
    assert_eq!(bus.take(), 1);
    assert_eq!(p.accept_intr(&bus), 0x21);
    assert_eq!(p.chip(0).service, (1 << 1) | (1 << 5));
    // A non-specific EOI retires the highest priority in service first.
    out(&p, &bus, IO_ICU1, EOI);
    assert_eq!(p.chip(0).service, 1 << 5);
    // A specific EOI names its pin.
    out(&p, &bus, IO_ICU1, 0x60 | 5);
    assert_eq!(p.chip(0).service, 0);
}

#[test]
fn slave_irqs_cascade_through_master_pin_2() {
    let (p, bus) = pair();
    pulse(&p, &bus, 12);
    assert_eq!(bus.take(), 1);
    assert_eq!(p.chip(0).request, 1 << 2);
    assert_eq!(p.accept_intr(&bus), 0x2c);
    assert_eq!((p.chip(0).service, p.chip(1).service), (1 << 2, 1 << 4));
    assert_eq!((p.chip(0).request, p.chip(1).request), (0, 0));
    // Another slave IRQ waits for the master's cascade pin to be retired
    // (no special fully nested mode): both chips need their EOI.
    pulse(&p, &bus, 8);
    assert_eq!(bus.take(), 0);
    out(&p, &bus, IO_ICU2, EOI);
    assert_eq!(bus.take(), 0, "the master still has pin 2 in service");
    out(&p, &bus, IO_ICU1, EOI);
    assert_eq!(bus.take(), 1);
    assert_eq!(p.accept_intr(&bus), 0x28);
}

#[test]
fn special_fully_nested_mode_lets_a_higher_slave_irq_through() {
    let (p, bus) = (Vatpic::new(), Bus::default());
    init_chip(&p, &bus, IO_ICU1, 0x20, chip::ICW4_SFNM);
    init_chip(&p, &bus, IO_ICU2, 0x28, chip::ICW4_SFNM);
    assert!(p.chip(0).sfn && !p.chip(1).sfn, "the master's mode only");
    pulse(&p, &bus, 13);
    assert_eq!(p.accept_intr(&bus), 0x2d);
    bus.take();
    pulse(&p, &bus, 9);
    assert_eq!(bus.take(), 1);
    assert_eq!(p.accept_intr(&bus), 0x29);
}

#[test]
fn level_irqs_follow_their_line_and_edge_requests_stay() {
    let (p, bus) = pair();
    p.set_irq_trigger(10, true).unwrap();
    assert_eq!(p.elcr(), 1 << 10);
    p.set_irq(10, IrqOp::Assert, &bus).unwrap();
    assert_eq!(p.chip(1).request, 1 << 2);
    p.set_irq(10, IrqOp::Deassert, &bus).unwrap();
    assert_eq!(p.chip(1).request, 0, "a level request is withdrawn");
    // Asserted through the acknowledge, a level request stays requested.
    p.set_irq(10, IrqOp::Assert, &bus).unwrap();
    assert_eq!(p.accept_intr(&bus), 0x2a);
    assert_eq!(p.chip(1).request, 1 << 2);
    // An edge request stays after its line drops, until acknowledged.
    p.set_irq(3, IrqOp::Assert, &bus).unwrap();
    p.set_irq(3, IrqOp::Deassert, &bus).unwrap();
    assert_eq!(p.chip(0).request & (1 << 3), 1 << 3);
    // Deasserting a pin not asserted is refused (FreeBSD counts below 0).
    assert_eq!(p.set_irq(5, IrqOp::Deassert, &bus), Err(Error::Range));
    assert_eq!(p.chip(0).acnt[5], 0);
}

#[test]
fn elcr_keeps_edge_only_irqs_edge() {
    let (p, bus) = pair();
    for irq in [0, 1, 2, 8, 13] {
        assert_eq!(p.set_irq_trigger(irq, true), Err(Error::Inval), "IRQ {irq}");
        p.set_irq_trigger(irq, false).unwrap();
    }
    assert_eq!(p.set_irq_trigger(16, false), Err(Error::Inval));
    out(&p, &bus, IO_ELCR1, 0xff);
    assert_eq!((inb(&p, IO_ELCR1), inb(&p, IO_ELCR2)), (0xf8, 0), "0x4d0 is the master's alone");
    out(&p, &bus, IO_ELCR2, 0xff);
    assert_eq!((inb(&p, IO_ELCR1), inb(&p, IO_ELCR2)), (0xf8, 0xde));
    assert_eq!(p.elcr(), 0xdef8);
    p.set_irq_trigger(15, false).unwrap();
    assert_eq!(p.elcr(), 0x5ef8);
}

#[test]
fn masked_irqs_wait_for_their_unmask() {
    let (p, bus) = pair();
    out(&p, &bus, 0x21, 0xff);
    pulse(&p, &bus, 6);
    assert_eq!(bus.take(), 0);
    assert_eq!(inb(&p, 0x21), 0xff);
    out(&p, &bus, 0x21, !(1 << 6));
    assert_eq!(bus.take(), 1, "the unmask raises INTR");
    assert_eq!(p.accept_intr(&bus), 0x26);
}

#[test]
fn ocw3_selects_irr_or_isr_and_polls() {
    let (p, bus) = pair();
    pulse(&p, &bus, 4);
    pulse(&p, &bus, 6);
    assert_eq!(inb(&p, IO_ICU1), (1 << 4) | (1 << 6), "IRR after init");
    assert_eq!(p.accept_intr(&bus), 0x24);
    out(&p, &bus, IO_ICU1, 0x0b);
    assert_eq!(inb(&p, IO_ICU1), 1 << 4, "ISR");
    out(&p, &bus, IO_ICU1, 0x0a);
    assert_eq!(inb(&p, IO_ICU1), 1 << 6, "IRR");
    // Poll: the highest request is acknowledged and named, once.
    out(&p, &bus, IO_ICU1, EOI);
    out(&p, &bus, IO_ICU1, 0x0e);
    assert_eq!(inb(&p, IO_ICU1), 0x80 | 6);
    assert_eq!(p.chip(0).service, 1 << 6);
    assert_eq!(inb(&p, IO_ICU1), 0, "IRR again");
    out(&p, &bus, IO_ICU1, EOI);
    out(&p, &bus, IO_ICU1, 0x0e);
    assert_eq!(inb(&p, IO_ICU1), 0, "nothing to poll");
    // Without the read-register bit the poll bit is ignored (FreeBSD).
    pulse(&p, &bus, 5);
    out(&p, &bus, IO_ICU1, 0x0c);
    assert_eq!(inb(&p, IO_ICU1), 1 << 5, "IRR, not a poll");
}

#[test]
fn polling_the_master_names_the_cascade_pin() {
    let (p, bus) = pair();
    pulse(&p, &bus, 10);
    out(&p, &bus, IO_ICU1, 0x0e);
    assert_eq!(inb(&p, IO_ICU1), 0x80 | 2, "the master's view");
    assert_eq!(p.chip(1).service, 0, "the slave is polled on its own");
    out(&p, &bus, IO_ICU2, 0x0e);
    assert_eq!(inb(&p, 0xa1), 0x80 | 2, "either port reads the poll byte");
    assert_eq!(p.chip(1).service, 1 << 2);
}

#[test]
fn a_slave_level_irq_dropped_before_the_acknowledge_is_spurious_on_the_slave() {
    let (p, bus) = pair();
    p.set_irq_trigger(11, true).unwrap();
    p.set_irq(11, IrqOp::Assert, &bus).unwrap();
    assert_eq!(bus.take(), 1);
    p.set_irq(11, IrqOp::Deassert, &bus).unwrap();
    // The master still has the cascade pin's edge: it acknowledges it;
    // the slave has nothing and answers with its vector 7.
    assert_eq!(p.accept_intr(&bus), 0x2f);
    assert_eq!((p.chip(0).service, p.chip(1).service), (1 << 2, 0));
    assert!(!p.chip(1).intr_raised && !p.chip(0).intr_raised);
}

#[test]
fn a_spurious_acknowledge_leaves_a_masked_ir7_request_pending() {
    let (p, bus) = pair();
    out(&p, &bus, 0x21, 1 << 7);
    pulse(&p, &bus, 7);
    assert_eq!(bus.take(), 0);
    assert_eq!(p.accept_intr(&bus), 0x27, "spurious: nothing to interrupt for");
    assert_eq!((p.chip(0).request, p.chip(0).service), (1 << 7, 0));
    out(&p, &bus, 0x21, 0);
    assert_eq!(p.accept_intr(&bus), 0x27, "now IR7 itself");
    assert_eq!(p.chip(0).service, 1 << 7);
}

#[test]
fn automatic_eoi_and_reinitialisation_without_it() {
    let (p, bus) = (Vatpic::new(), Bus::default());
    init_chip(&p, &bus, IO_ICU1, 0x20, chip::ICW4_AEOI);
    pulse(&p, &bus, 3);
    assert_eq!(p.accept_intr(&bus), 0x23);
    assert_eq!(p.chip(0).service, 0, "retired at the acknowledge");
    init_chip(&p, &bus, IO_ICU1, 0x20, 0);
    assert!(!p.chip(0).aeoi, "ICW4 without AEOI leaves AEOI mode");
    pulse(&p, &bus, 3);
    assert_eq!(p.accept_intr(&bus), 0x23);
    assert_eq!(p.chip(0).service, 1 << 3);
}

#[test]
fn rotation_makes_the_retired_pin_lowest_priority() {
    let (p, bus) = pair();
    pulse(&p, &bus, 1);
    assert_eq!(p.accept_intr(&bus), 0x21);
    out(&p, &bus, IO_ICU1, 0xa0); // rotate on non-specific EOI
    assert_eq!(p.chip(0).lowprio, 1);
    pulse(&p, &bus, 0);
    pulse(&p, &bus, 3);
    assert_eq!(p.accept_intr(&bus), 0x23, "IRQ 2 is highest now, then 3");
    // Set priority: IRQ 4 lowest, so 5 is highest.
    out(&p, &bus, IO_ICU1, 0xc4);
    assert_eq!(p.chip(0).lowprio, 4);
    // Specific level without the rotate bit (nor EOI) is no operation.
    out(&p, &bus, IO_ICU1, 0x42);
    assert_eq!(p.chip(0).lowprio, 4);
}

#[test]
fn special_mask_mode_ignores_what_is_in_service() {
    let (p, bus) = pair();
    pulse(&p, &bus, 2);
    pulse(&p, &bus, 1);
    assert_eq!(p.accept_intr(&bus), 0x21);
    out(&p, &bus, 0x21, 1 << 1);
    out(&p, &bus, IO_ICU1, 0x68); // enter special mask mode
    assert!(p.chip(0).smm);
    assert_eq!(p.accept_intr(&bus), 0x28 + 7, "slave spurious via pin 2");
    assert_eq!(p.chip(0).service, (1 << 1) | (1 << 2));
    // A non-specific EOI skips the masked in-service pin.
    out(&p, &bus, IO_ICU1, EOI);
    assert_eq!(p.chip(0).service, 1 << 1);
    // Without ESMM an OCW3 (here: read IRR) leaves the mode alone.
    out(&p, &bus, IO_ICU1, 0x0a);
    assert!(p.chip(0).smm);
    out(&p, &bus, IO_ICU1, 0x48); // leave it
    assert!(!p.chip(0).smm);
}

/// Outside special mask mode a non-specific EOI retires the highest pin
/// in service even when it is masked (FreeBSD skips masked pins only in
/// special mask mode).
#[test]
fn a_non_specific_eoi_retires_a_masked_pin_outside_special_mask_mode() {
    let (p, bus) = pair();
    pulse(&p, &bus, 3);
    assert_eq!(p.accept_intr(&bus), 0x23);
    out(&p, &bus, 0x21, 1 << 3);
    out(&p, &bus, IO_ICU1, EOI);
    assert_eq!(p.chip(0).service, 0);
}

#[test]
fn a_spurious_acknowledge_puts_nothing_in_service() {
    let (p, bus) = pair();
    pulse(&p, &bus, 3);
    assert_eq!(bus.take(), 1);
    out(&p, &bus, 0x21, 1 << 3); // masked before the CPU acknowledged
    assert_eq!(p.accept_intr(&bus), 0x27);
    assert_eq!((p.chip(0).service, p.chip(0).intr_raised), (0, false));
    out(&p, &bus, 0x21, 0);
    assert_eq!(bus.take(), 1, "INTR can be raised again");
    assert_eq!(p.accept_intr(&bus), 0x23);
}

#[test]
fn icw1_clears_requests_and_the_mask_but_not_isr() {
    let (p, bus) = pair();
    pulse(&p, &bus, 3);
    assert_eq!(p.accept_intr(&bus), 0x23);
    pulse(&p, &bus, 5);
    out(&p, &bus, 0x21, 0x80);
    out(&p, &bus, IO_ICU1, 0x0b); // read ISR...
    out(&p, &bus, IO_ICU1, 0x11);
    let m = p.chip(0);
    assert_eq!((m.ready, m.request, m.mask, m.service, m.lowprio), (false, 0, 0, 1 << 3, 7));
    assert_eq!(inb(&p, IO_ICU1), 0, "...until ICW1 selects IRR again");
    pulse(&p, &bus, 4);
    assert_eq!(p.chip(0).request, 0, "ignored until ICW4");
}

/// ICW1 cancels a poll command not yet read (FreeBSD clears the poll
/// bit): the next command-port read returns IRR and acknowledges nothing.
#[test]
fn icw1_cancels_a_pending_poll() {
    let (p, bus) = pair();
    out(&p, &bus, IO_ICU1, 0x0c | chip::OCW3_RR);
    init_chip(&p, &bus, IO_ICU1, 0x20, 0);
    pulse(&p, &bus, 4);
    assert_eq!(inb(&p, IO_ICU1), 1 << 4);
    assert_eq!((p.chip(0).request, p.chip(0).service), (1 << 4, 0));
}

#[test]
fn reset_brings_back_an_uninitialised_pair() {
    let (p, bus) = pair();
    p.set_irq_trigger(9, true).unwrap();
    pulse(&p, &bus, 3);
    p.reset();
    assert_eq!((p.chip(0), p.chip(1), p.elcr()), (Chip::default(), Chip::default(), 0));
}

#[test]
fn assert_counts_stay_in_range_and_refusals_change_nothing() {
    let (p, bus) = pair();
    assert_eq!(p.set_irq(3, IrqOp::Deassert, &bus), Err(Error::Range));
    assert_eq!((p.chip(0).acnt[3], p.chip(0).request), (0, 0));
    let mut c = p.chip(0);
    c.acnt[3] = i32::MAX;
    p.state.lock().chips[0] = c;
    assert_eq!(p.set_irq(3, IrqOp::Assert, &bus), Err(Error::TooBig));
    assert_eq!(p.set_irq(3, IrqOp::Pulse, &bus), Err(Error::TooBig));
    assert_eq!(p.chip(0), c, "unchanged");
    // An extra deassert cannot leave an edge request that is never
    // consumed (FreeBSD's negative count): the IRQ comes once.
    let (p, bus) = pair();
    pulse(&p, &bus, 5);
    assert_eq!(p.set_irq(5, IrqOp::Deassert, &bus), Err(Error::Range));
    assert_eq!(p.accept_intr(&bus), 0x25);
    out(&p, &bus, IO_ICU1, EOI);
    assert_eq!((bus.take(), p.chip(0).request), (1, 0), "no second time");
}

#[test]
fn reinitialising_with_a_slave_raise_outstanding_keeps_irqs_8_to_15() {
    let (p, bus) = pair();
    pulse(&p, &bus, 9);
    assert!(p.chip(1).intr_raised);
    // The guest starts over before acknowledging (interrupts off).
    init_chip(&p, &bus, IO_ICU1, 0x20, 0);
    init_chip(&p, &bus, IO_ICU2, 0x28, 0);
    bus.take();
    pulse(&p, &bus, 9);
    assert_eq!(bus.take(), 1, "the slave cascades again");
    assert_eq!(p.accept_intr(&bus), 0x29);
}

#[test]
fn an_uninitialised_pair_answers_an_acknowledge_with_vector_7() {
    let (p, bus) = (Vatpic::new(), Bus::default());
    assert_eq!(p.accept_intr(&bus), 7);
    assert_eq!(p.chip(0).service, 0);
}

/// Random guest port accesses, IRQ line changes and acknowledges. After
/// every operation that looks for work (FreeBSD `vatpic_notify_intr`), an
/// initialised chip with a request to interrupt for has raised its output
/// (nothing is lost); INTR is raised at most once per operation and only
/// when it was not; acknowledges return a vector of one of the chips.
#[test]
fn fuzz_no_request_is_left_unraised() {
    let mut rng = Rng::from_env(0x8259);
    for round in 0..200 {
        let (p, bus) = if rng.chance(2) { pair() } else { (Vatpic::new(), Bus::default()) };
        for step in 0..300 {
            let before = p.chip(0);
            let at = format!("round {round} step {step}");
            let op = rng.below(8);
            let notified = match op {
                0..=2 => {
                    let irq = rng.around(-1, 16);
                    let op = rng.pick(&[IrqOp::Assert, IrqOp::Deassert, IrqOp::Pulse]);
                    let r = p.set_irq(irq, op, &bus);
                    let valid = (0..16).contains(&irq);
                    assert!(valid || r == Err(Error::Inval), "{at}");
                    assert!(!valid || matches!(r, Ok(()) | Err(Error::Range)), "{at}: {r:?}");
                    if let Ok(irq) = usize::try_from(irq) {
                        assert!(irq > 15 || p.chip(irq >> 3).acnt[irq & 7] >= 0, "{at}");
                    }
                    r.is_ok() && p.chip((irq >> 3) as usize).ready
                }
                3 => {
                    let port = rng.pick(&[0x20, 0x21, 0xa0, 0xa1, IO_ELCR1, IO_ELCR2]);
                    let specific_eoi = 0x60 | rng.below(8) as u8;
                    let noise = if rng.chance(8) { rng.below(256) as u8 } else { 0 };
                    let cmds = [0x11, 0x20, specific_eoi, 0x0a, 0x0b, 0x0c, 0x68, 0x48, 0xa0, 0xc3];
                    let val = rng.pick(&cmds) | noise;
                    let _ = p.port_out(port, 1, val, &bus);
                    !matches!(port, IO_ELCR1 | IO_ELCR2) && p.chip(usize::from(port >= IO_ICU2)).ready
                }
                4 => {
                    let port = rng.pick(&[0x21, 0xa1]);
                    let val = rng.below(256) as u8;
                    let _ = p.port_out(port, 1, val, &bus);
                    p.chip(usize::from(port >= IO_ICU2)).ready
                }
                5 => {
                    let _ = p.port_in(rng.pick(&[0x20, 0x21, 0xa0, 0xa1, IO_ELCR1, IO_ELCR2]), 1);
                    false
                }
                6 => {
                    let v = p.accept_intr(&bus);
                    let bases = [p.chip(0).irq_base, p.chip(1).irq_base];
                    assert!(bases.contains(&(v & 0xf8)), "{at}: vector {v:#x}, bases {bases:x?}");
                    true
                }
                _ => {
                    let _ = p.set_irq_trigger(rng.around(-1, 16), rng.chance(2));
                    false
                }
            };
            let raised = bus.take();
            assert!(raised <= 1, "{at}: {raised} raises");
            if raised == 1 {
                // An acknowledge lowers INTR before it looks for work.
                let was_raised = before.intr_raised && op != 6;
                assert!(!was_raised && p.chip(0).intr_raised, "{at}: raise without a false -> true");
            }
            if notified {
                for i in 0..2 {
                    let c = p.chip(i);
                    if c.ready && !c.intr_raised {
                        assert_eq!(c.highest_irr_pin(), None, "{at}: chip {i} left a request unraised: {c:?}");
                    }
                }
            }
        }
    }
}

/// Rotate in automatic-EOI mode (OCW2 0x80): the pin retired at the
/// acknowledge becomes lowest priority (FreeBSD `vatpic_pin_accepted`).
#[test]
fn automatic_eoi_with_rotation_makes_the_acknowledged_pin_lowest_priority() {
    let (p, bus) = (Vatpic::new(), Bus::default());
    init_chip(&p, &bus, IO_ICU1, 0x20, chip::ICW4_AEOI);
    out(&p, &bus, IO_ICU1, 0x80); // rotate in AEOI mode
    pulse(&p, &bus, 1);
    assert_eq!(p.accept_intr(&bus), 0x21);
    assert_eq!(p.chip(0).lowprio, 1, "IRQ 1 rotated to lowest");
    assert_eq!(p.chip(0).service, 0);
    pulse(&p, &bus, 0);
    pulse(&p, &bus, 3);
    assert_eq!(p.accept_intr(&bus), 0x23, "after IRQ 1: 2 (no request), then 3 before 0");
    assert_eq!(p.accept_intr(&bus), 0x20);
}

/// FreeBSD `vatpic_notify_intr` / `vatpic_set_pinstate`: the slave's
/// output pulses the master's cascade pin through `vatpic_set_pinstate`,
/// which (unlike `vatpic_set_irqstate`) does not look at the master's
/// `ready`: a slave initialised before the master's ICW4 (a guest that
/// interleaves the two chips' ICWs) still gets its request onto master
/// pin 2, and the IRQ is delivered. Before the fix the master only counted the
/// cascade pulse, the slave stayed `intr_raised`, and IRQs 8-15 were lost
/// for good. (A master never initialised still only counts it: see
/// `an_uninitialised_pair_counts_its_pins_but_requests_nothing`.)
#[test]
fn a_slave_request_cascades_onto_a_master_still_in_its_icws() {
    let (p, bus) = (Vatpic::new(), Bus::default());
    // Master: ICW1-ICW3, its ICW4 not yet written.
    out(&p, &bus, IO_ICU1, 0x11);
    out(&p, &bus, IO_ICU1 + 1, 0x20);
    out(&p, &bus, IO_ICU1 + 1, 0x04);
    init_chip(&p, &bus, IO_ICU2, 0x28, 0);
    pulse(&p, &bus, 9);
    assert!(p.chip(1).intr_raised);
    assert_eq!(p.chip(0).request, 1 << 2, "the cascade pin requests on the master");
    out(&p, &bus, IO_ICU1 + 1, 0x01); // master ICW4
    assert_eq!(bus.take(), 1, "INTR raised once");
    assert_eq!(p.accept_intr(&bus), 0x29, "IRQ 9 delivered");
}

/// A level line that two sources assert still requests when one lets go
/// (FreeBSD `vatpic_set_pinstate`: a level pin with a count above 0
/// requests), here after a reinitialisation dropped the request of the
/// pin while it was edge-triggered.
#[test]
fn a_level_line_still_held_by_another_source_requests_on_a_deassert() {
    let (p, bus) = pair();
    p.set_irq(5, IrqOp::Assert, &bus).unwrap();
    p.set_irq(5, IrqOp::Assert, &bus).unwrap();
    init_chip(&p, &bus, IO_ICU1, 0x20, 0);
    assert_eq!(p.chip(0).request, 0, "an edge pin waits for its next rising edge");
    bus.take();
    p.set_irq_trigger(5, true).unwrap();
    p.set_irq(5, IrqOp::Deassert, &bus).unwrap();
    assert_eq!(p.chip(0).request, 1 << 5);
    assert_eq!(bus.take(), 1);
    assert_eq!(p.accept_intr(&bus), 0x25);
}

/// A pulse on a level-triggered IRQ raises INTR for its rising edge,
/// although the falling edge withdraws the request before the CPU
/// acknowledges (FreeBSD notifies after each half); the acknowledge then
/// finds nothing and is spurious.
#[test]
fn a_level_irq_pulse_raises_intr_for_its_rising_edge() {
    let (p, bus) = pair();
    p.set_irq_trigger(5, true).unwrap();
    pulse(&p, &bus, 5);
    assert_eq!((bus.take(), p.chip(0).request), (1, 0));
    assert_eq!(p.accept_intr(&bus), 0x27);
    assert_eq!(p.chip(0).service, 0);
}
