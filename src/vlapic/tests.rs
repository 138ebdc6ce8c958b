//! Unit tests of one local APIC (no VM).

use std::time::{Duration, Instant};

use super::regs::*;
use super::*;
use crate::error::Error;

fn rd(l: &Vlapic, o: u32) -> u32 {
    l.mmio_read(o, Instant::now())
}

fn wr(l: &Vlapic, o: u32, v: u32) -> LapicEffects {
    l.mmio_write(o, v, Instant::now())
}

/// An APIC software-enabled with spurious vector 0xFF.
fn enabled(id: usize) -> Vlapic {
    let l = Vlapic::new(id);
    wr(&l, off::SVR, SVR_ENABLE | 0xFF);
    l
}

#[test]
fn reset_values_follow_freebsd() {
    let l = Vlapic::new(3);
    assert_eq!(rd(&l, off::ID), 3 << 24);
    assert_eq!(rd(&l, off::VER), 0x0006_0014);
    assert_eq!(rd(&l, off::SVR), 0xFF, "software disabled");
    assert_eq!(rd(&l, off::DFR), 0xFFFF_FFFF);
    assert_eq!(rd(&l, off::LDR), 0);
    assert_eq!((rd(&l, off::TPR), rd(&l, off::PPR)), (0, 0));
    for o in [
        off::LVT_CMCI,
        off::LVT_TIMER,
        off::LVT_THERMAL,
        off::LVT_PERF,
        off::LVT_LINT0,
        off::LVT_LINT1,
        off::LVT_ERROR,
    ] {
        assert_eq!(rd(&l, o), LVT_M, "LVT {o:#x} masked");
    }
    assert_eq!((rd(&l, off::TIMER_ICR), rd(&l, off::TIMER_CCR), rd(&l, off::TIMER_DCR)), (0, 0, 0));
    assert_eq!(l.x2apic_state(), X2ApicState::Disabled);
    assert_eq!(l.read_msr(MSR_APICBASE, Instant::now()), Some(0xFEE0_0800));
    assert_eq!(Vlapic::new(0).read_msr(MSR_APICBASE, Instant::now()), Some(0xFEE0_0900));
}

#[test]
fn read_only_registers_ignore_writes() {
    let l = enabled(2);
    l.set_intr_ready(0x40, true);
    let before: Vec<u32> = (0..0x400).step_by(16).map(|o| rd(&l, o)).collect();
    for o in [off::ID, off::VER, off::APR, off::PPR, off::RRR, off::TIMER_CCR] {
        wr(&l, o, 0xFFFF_FFFF);
    }
    for i in 0..8 {
        wr(&l, off::ISR0 + 16 * i, !0);
        wr(&l, off::TMR0 + 16 * i, !0);
        wr(&l, off::IRR0 + 16 * i, !0);
    }
    let after: Vec<u32> = (0..0x400).step_by(16).map(|o| rd(&l, o)).collect();
    assert_eq!(before, after);
    assert_eq!(rd(&l, off::ID), 2 << 24);
}

#[test]
fn ldr_dfr_keep_only_their_fields() {
    let l = enabled(0);
    wr(&l, off::LDR, 0xABCD_EF12);
    assert_eq!(rd(&l, off::LDR), 0xAB00_0000);
    wr(&l, off::DFR, 0x0000_0000);
    assert_eq!(rd(&l, off::DFR), 0x0FFF_FFFF, "cluster model, reserved ones");
    wr(&l, off::DFR, 0xF000_0000);
    assert_eq!(rd(&l, off::DFR), 0xFFFF_FFFF);
}

#[test]
fn disabled_apic_drops_fixed_interrupts_and_masks_lvts() {
    let l = Vlapic::new(0);
    assert!(!l.set_intr_ready(0x40, false));
    assert!(l.irr().is_empty());
    // LVT writes are forced masked while disabled.
    wr(&l, off::LVT_TIMER, 0x30);
    assert_eq!(rd(&l, off::LVT_TIMER), LVT_M | 0x30);
    wr(&l, off::SVR, SVR_ENABLE | 0xFF);
    assert!(l.set_intr_ready(0x40, false));
    // Already pending: merged, and no second notification is needed.
    assert!(!l.set_intr_ready(0x40, false));
    wr(&l, off::LVT_TIMER, 0x30);
    assert_eq!(rd(&l, off::LVT_TIMER), 0x30);
    // Disabling masks every LVT again.
    wr(&l, off::SVR, 0xFF);
    assert_eq!(rd(&l, off::LVT_TIMER), LVT_M | 0x30);
}

#[test]
fn lvt_writes_keep_only_defined_fields() {
    let l = enabled(0);
    wr(&l, off::LVT_TIMER, 0xFFFF_FFFF);
    assert_eq!(rd(&l, off::LVT_TIMER), LVT_M | LVT_DS | LVTT_MODE | 0xFF);
    // The TSC-deadline mode bit is kept (FreeBSD APIC_LVTT_TM).
    wr(&l, off::LVT_TIMER, 0x4_0030);
    assert_eq!(rd(&l, off::LVT_TIMER), 0x4_0030);
    wr(&l, off::LVT_ERROR, 0xFFFF_FFFF);
    assert_eq!(rd(&l, off::LVT_ERROR), LVT_M | LVT_DS | 0xFF);
    wr(&l, off::LVT_LINT0, 0xFFFF_FFFF);
    assert_eq!(
        rd(&l, off::LVT_LINT0),
        LVT_M | LVT_TM | LVT_RIRR | LVT_IIPP | LVT_DS | DELMODE_MASK | 0xFF
    );
    wr(&l, off::LVT_PERF, 0xFFFF_FFFF);
    assert_eq!(rd(&l, off::LVT_PERF), LVT_M | LVT_DS | DELMODE_MASK | 0xFF);
}

#[test]
fn illegal_vectors_set_esr_and_fire_error_lvt() {
    let l = enabled(0);
    assert!(!l.set_intr_ready(5, false), "dropped, error LVT masked");
    assert!(l.irr().is_empty());
    // ESR is write-to-latch.
    assert_eq!(rd(&l, off::ESR), 0);
    wr(&l, off::ESR, 0);
    assert_eq!(rd(&l, off::ESR), ESR_RECEIVE_ILLEGAL_VECTOR);
    wr(&l, off::ESR, 0);
    assert_eq!(rd(&l, off::ESR), 0);
    // With the error LVT unmasked, the error raises its vector.
    wr(&l, off::LVT_ERROR, 0xEE);
    assert!(l.set_intr_ready(15, false));
    assert!(l.irr().test(0xEE) && !l.irr().test(15));
    // An error LVT with an illegal vector only latches ESR (no recursion).
    wr(&l, off::LVT_ERROR, 0x03);
    assert!(!l.set_intr_ready(1, false));
    wr(&l, off::ESR, 0);
    assert_eq!(rd(&l, off::ESR), ESR_RECEIVE_ILLEGAL_VECTOR | ESR_SEND_ILLEGAL_VECTOR);
}

#[test]
fn ppr_and_tpr_gate_delivery() {
    let l = enabled(0);
    wr(&l, off::TPR, 0x50);
    assert_eq!(rd(&l, off::PPR), 0x50);
    l.set_intr_ready(0x45, false);
    assert_eq!(l.pending_intr(), None, "class 4 <= TPR class 5");
    l.set_intr_ready(0x61, false);
    assert_eq!(l.pending_intr(), Some(0x61));
    l.intr_accepted(0x61);
    assert_eq!(rd(&l, off::PPR), 0x60, "in-service class beats TPR");
    assert!(l.isr().test(0x61) && !l.irr().test(0x61));
    l.set_intr_ready(0x65, false);
    assert_eq!(l.pending_intr(), None, "same class as in service");
    l.set_intr_ready(0x71, false);
    assert_eq!(l.pending_intr(), Some(0x71));
    assert_eq!(l.eoi(), None, "edge: no vioapic EOI");
    assert_eq!(rd(&l, off::PPR), 0x50);
    assert_eq!(l.pending_intr(), Some(0x71));
    wr(&l, off::TPR, 0xF0);
    assert_eq!(l.pending_intr(), None);
}

#[test]
fn eoi_retires_highest_in_service_and_reports_level() {
    let l = enabled(0);
    l.set_intr_ready(0x30, true);
    l.intr_accepted(0x30);
    l.set_intr_ready(0x50, false);
    l.intr_accepted(0x50);
    assert_eq!(l.snapshot().ppr(), 0x50);
    // The EOI register path returns the same thing as eoi().
    assert_eq!(wr(&l, off::EOI, 0).eoi_vector, None, "0x50 is edge");
    assert_eq!(l.ppr(), 0x30);
    assert_eq!(wr(&l, off::EOI, 0).eoi_vector, Some(0x30));
    assert!(l.isr().is_empty());
    assert_eq!(l.eoi(), None, "gratuitous EOI");
}

#[test]
fn trigger_mode_is_recorded_at_acceptance() {
    let l = enabled(0);
    l.set_intr_ready(0x40, false);
    assert!(!l.tmr().test(0x40) && l.irr().test(0x40));
    l.intr_accepted(0x40);
    l.set_intr_ready(0x40, true);
    assert!(l.tmr().test(0x40));
    assert_eq!(rd(&l, off::TMR0 + 0x20), 1);
    assert_eq!(rd(&l, off::IRR0 + 0x20), 1);
    assert_eq!(rd(&l, off::ISR0 + 0x20), 1);
}

/// The lock-free merge (`pending`) takes only what the mutex would have
/// left unchanged: a vector already in IRR, with its TMR bit set if the
/// message is level. Anything else goes through the mutex and is seen at
/// once.
#[test]
fn only_what_the_mutex_would_leave_unchanged_merges_without_the_lock() {
    let l = enabled(0);
    assert!(l.set_intr_ready(0x50, true), "newly pending");
    assert!(!l.set_intr_ready(0x50, true), "merged");
    assert!(l.tmr().test(0x50));
    // Pending as level, now edge: it joins, TMR stays level.
    assert!(!l.set_intr_ready(0x50, false));
    assert!(l.tmr().test(0x50) && l.irr().test(0x50));
    // Pending as edge, now level: TMR follows (under the mutex).
    assert!(l.set_intr_ready(0x51, false));
    assert!(!l.set_intr_ready(0x51, true));
    assert!(l.tmr().test(0x51));
    // Taken by the guest: the next one is new again, not merged into a
    // stale copy of IRR.
    assert!(l.set_intr_ready(0x60, true));
    assert_eq!(l.accept_pending_intr(), Some(0x60));
    assert!(l.set_intr_ready(0x60, true), "newly pending after acceptance");
    // A reset clears IRR: the copy follows.
    l.reinit();
    wr(&l, off::SVR, SVR_ENABLE | 0xFF);
    assert!(l.set_intr_ready(0x60, true), "newly pending after a reset");
}

#[test]
fn staged_tmr_waits_for_vectors_in_irr_or_isr() {
    let l = enabled(0);
    l.stage_tmr(0x40, true);
    l.stage_tmr(0x41, true);
    l.stage_tmr(0x41, false); // The later stage wins.
    l.set_intr_ready(0x42, false);
    l.stage_tmr(0x42, true);
    assert!(l.tmr().is_empty(), "staging alone changes nothing");
    l.apply_staged_tmr();
    assert!(l.tmr().test(0x40) && !l.tmr().test(0x41));
    assert!(!l.tmr().test(0x42), "0x42 is pending: acceptance-time bit stands");
    assert!(l.staged_tmr().0.test(0x42), "and the change stays staged");
    l.intr_accepted(0x42);
    l.apply_staged_tmr();
    assert!(!l.tmr().test(0x42), "in service");
    assert_eq!(l.eoi(), None, "EOI uses the acceptance-time (edge) bit");
    l.apply_staged_tmr();
    assert!(l.tmr().test(0x42));
    assert!(l.staged_tmr().0.is_empty() && l.staged_tmr().1.is_empty());
}

/// An edge message for a vector pending as level joins it: TMR stays set,
/// so the EOI still reaches the IOAPIC. That message can be a pin's edge
/// send that read its entry just before the guest rewrote the pin to level
/// with the same vector, and landed after the rewrite's level send;
/// relabelling the vector edge swallowed the EOI and left remote IRR set
/// for good. Each in-service instance keeps the mode it was accepted with:
/// a level one's EOI is broadcast, an edge one's not, whatever TMR reads
/// meanwhile.
#[test]
fn each_interrupt_instance_keeps_its_trigger_mode_for_its_eoi() {
    let l = enabled(0);
    // Pending as level: the edge joins it, locklessly or not.
    assert!(l.set_intr_ready(0x50, true));
    assert!(!l.set_intr_ready(0x50, false));
    assert!(l.tmr().test(0x50));
    l.intr_accepted(0x50);
    // In service as level, an edge instance pending: TMR reads edge, as on
    // hardware, and the level instance's EOI is still broadcast.
    assert!(l.set_intr_ready(0x50, false));
    assert!(!l.tmr().test(0x50));
    assert_eq!(l.eoi(), Some(0x50), "the level instance's EOI is broadcast");
    // The edge instance's EOI is not.
    l.intr_accepted(0x50);
    assert_eq!(l.eoi(), None);
    // In service as edge, a level instance pending: its EOI is broadcast.
    assert!(l.set_intr_ready(0x50, false));
    l.intr_accepted(0x50);
    assert!(l.set_intr_ready(0x50, true));
    assert_eq!(l.eoi(), None, "the edge instance");
    l.intr_accepted(0x50);
    assert_eq!(l.eoi(), Some(0x50), "the level instance");
}

#[test]
fn one_shot_timer_fires_once_at_its_deadline() {
    let l = enabled(0);
    let t0 = Instant::now();
    l.mmio_write(off::TIMER_DCR, 0xB, t0); // divide by 1
    l.mmio_write(off::LVT_TIMER, 0x40, t0);
    // 2^20 ticks at 2^27 Hz = 7.8125 ms.
    l.mmio_write(off::TIMER_ICR, 1 << 20, t0);
    let period = Duration::from_nanos(7_812_500);
    assert_eq!(l.timer_deadline(), Some(t0 + period));
    assert_eq!(l.mmio_read(off::TIMER_CCR, t0), 1 << 20);
    assert_eq!(l.mmio_read(off::TIMER_CCR, t0 + period / 2), 1 << 19);
    assert!(!l.timer_poll(t0 + period / 2));
    assert!(l.irr().is_empty());
    assert!(l.timer_poll(t0 + period));
    assert!(l.irr().test(0x40) && !l.tmr().test(0x40), "edge");
    assert_eq!(l.timer_deadline(), None);
    assert_eq!(l.mmio_read(off::TIMER_CCR, t0 + period), 0);
    assert!(!l.timer_poll(t0 + period * 3));
}

/// A periodic timer on vector 0x41 started at `t0`: 2^19 ticks divided by
/// 2, a period `p` of 7.8125 ms.
fn periodic_timer() -> (Vlapic, Instant, Duration) {
    let l = enabled(0);
    let t0 = Instant::now();
    l.mmio_write(off::TIMER_DCR, 0x0, t0); // divide by 2
    l.mmio_write(off::LVT_TIMER, LVTT_PERIODIC | 0x41, t0);
    l.mmio_write(off::TIMER_ICR, 1 << 19, t0);
    (l, t0, Duration::from_nanos(7_812_500))
}

#[test]
fn periodic_timer_rearms_and_resyncs_when_late() {
    let (l, t0, p) = periodic_timer();
    assert!(l.timer_poll(t0 + p + Duration::from_micros(10)));
    assert_eq!(l.timer_deadline(), Some(t0 + p * 2), "no drift");
    l.intr_accepted(0x41);
    // Missing whole periods restarts from now instead of catching up.
    let late = t0 + p * 5;
    assert!(l.timer_poll(late));
    assert_eq!(l.timer_deadline(), Some(late + p));
    // A masked timer LVT still counts down and re-arms, but raises nothing.
    l.mmio_write(off::LVT_TIMER, LVT_M | LVTT_PERIODIC | 0x41, late);
    let irr = l.irr();
    assert!(!l.timer_poll(late + p));
    assert_eq!(l.irr(), irr);
    assert_eq!(l.timer_deadline(), Some(late + p * 2));
    // Initial count 0 stops it.
    l.mmio_write(off::TIMER_ICR, 0, late);
    assert_eq!(l.timer_deadline(), None);
}

/// A DCR write changes the rate, not the running deadline (FreeBSD
/// `vlapic_dcr_write_handler` recomputes the period only): the current
/// count, read at the new rate, never exceeds the initial count, and the
/// next reload runs at the new rate. A reload exactly one period late
/// restarts from now, as FreeBSD's `vlapic_callout_handler` (which
/// catches up only when less than a period late).
#[test]
fn a_dcr_write_takes_effect_at_the_next_reload() {
    let (l, t0, p) = periodic_timer();
    l.mmio_write(off::TIMER_DCR, 0xB, t0); // divide by 1: half the period
    assert_eq!(l.timer_deadline(), Some(t0 + p), "the running countdown keeps its deadline");
    assert_eq!(l.mmio_read(off::TIMER_CCR, t0), 1 << 19, "twice the ticks left, capped at ICR");
    assert!(l.timer_poll(t0 + p));
    assert_eq!(l.timer_deadline(), Some(t0 + p + p / 2), "reloaded at the new rate");
    l.intr_accepted(0x41);
    // Exactly one (new) period late.
    let late = t0 + p * 2;
    assert!(l.timer_poll(late));
    assert_eq!(l.timer_deadline(), Some(late + p / 2));
}

#[test]
fn software_disable_stops_timer_and_enable_restarts_periodic() {
    let l = enabled(0);
    let t0 = Instant::now();
    l.mmio_write(off::LVT_TIMER, LVTT_PERIODIC | 0x41, t0);
    l.mmio_write(off::TIMER_ICR, 1000, t0);
    assert!(l.timer_deadline().is_some());
    l.mmio_write(off::SVR, 0xFF, t0);
    assert_eq!(l.timer_deadline(), None);
    let t1 = t0 + Duration::from_secs(1);
    l.mmio_write(off::SVR, SVR_ENABLE | 0xFF, t1);
    let d = l.timer_deadline().expect("periodic timer restarted");
    assert!(d > t1);
}

#[test]
fn icr_writes_produce_ipis_or_send_errors() {
    let l = enabled(0);
    wr(&l, off::ICR_HI, 2 << 24);
    let fx = wr(&l, off::ICR_LO, DELMODE_FIXED | 0x50);
    assert_eq!(
        fx.ipi,
        Some(Ipi {
            mode: DELMODE_FIXED,
            vector: 0x50,
            dest: 2,
            phys: true,
            shorthand: DEST_DESTFLD,
            x2apic_dest: false
        })
    );
    let fx = wr(&l, off::ICR_LO, DELMODE_FIXED | DESTMODE_LOG | DEST_ALLESELF | 0x51);
    let ipi = fx.ipi.unwrap();
    assert!(!ipi.phys && ipi.shorthand == DEST_ALLESELF);
    // The delivery-status bit never sticks.
    wr(&l, off::ICR_LO, DELSTAT_PEND | 0x52);
    assert_eq!(rd(&l, off::ICR_LO), 0x52);
    // Fixed with vector < 16: error on the sender, nothing sent.
    let fx = wr(&l, off::ICR_LO, DELMODE_FIXED | 0x0F);
    assert_eq!(fx.ipi, None);
    wr(&l, off::ESR, 0);
    assert_eq!(rd(&l, off::ESR), ESR_SEND_ILLEGAL_VECTOR);
    // Invalid combinations are ignored.
    assert_eq!(wr(&l, off::ICR_LO, DELMODE_INIT | TRIGMOD_LEVEL).ipi, None);
    assert_eq!(wr(&l, off::ICR_LO, DELMODE_NMI | DEST_SELF).ipi, None);
}

/// FreeBSD 14 `vlapic_icrlo_write_handler`: a valid SMI or remote-read ICR
/// is stored and then failed (its `default: return (1)`); an invalid one
/// is ignored (return 0), as the reserved mode 0x700 is.
#[test]
fn icr_smi_and_remote_read_are_stored_and_refused() {
    let l = enabled(0);
    wr(&l, off::ICR_HI, 1 << 24);
    for mode in [DELMODE_SMI, DELMODE_RR] {
        let fx = wr(&l, off::ICR_LO, DELSTAT_PEND | mode | 0x31);
        assert_eq!((fx.ipi, fx.unhandled_ipi), (None, Some(UnhandledIpi { mode })), "mode {mode:#x}");
        assert_eq!(rd(&l, off::ICR_LO), mode | 0x31, "stored, delivery status clear");
    }
    for icr in [DELMODE_SMI | DEST_SELF, DELMODE_RR | DEST_ALLESELF, DELMODE_RR | TRIGMOD_LEVEL | LEVEL_ASSERT, DELMODE_EXTINT] {
        let fx = wr(&l, off::ICR_LO, icr);
        assert_eq!((fx.ipi, fx.unhandled_ipi), (None, None), "invalid {icr:#x}: ignored");
    }
    // x2APIC: the same through the 64-bit ICR MSR.
    let l = Vlapic::new(0);
    l.set_x2apic_state(X2ApicState::Enabled);
    let fx = l.write_msr(0x830, (1 << 32) | u64::from(DELMODE_SMI), Instant::now()).unwrap();
    assert_eq!(fx.unhandled_ipi, Some(UnhandledIpi { mode: DELMODE_SMI }));
    assert_eq!(l.read_msr(0x830, Instant::now()), Some((1 << 32) | u64::from(DELMODE_SMI)));
}

#[test]
fn trigger_lvt_on_disabled_and_enabled_apic() {
    let l = Vlapic::new(0);
    // Disabled: LINT0 is the 8259's INTR (ExtINT), LINT1 is NMI; the rest
    // do nothing.
    assert_eq!(l.trigger_lvt(lvt::LINT0 as i32), Ok(true));
    assert!(l.has_pending_event() && !l.nmi_pending());
    assert!(l.take_extint() && !l.take_extint());
    assert!(!l.has_pending_event());
    assert_eq!(l.trigger_lvt(lvt::LINT1 as i32), Ok(true));
    assert!(l.take_nmi() && !l.take_nmi());
    assert_eq!(l.trigger_lvt(42), Ok(false));
    let l = enabled(0);
    assert_eq!(l.trigger_lvt(7), Err(Error::Inval));
    assert_eq!(l.trigger_lvt(-1), Err(Error::Inval));
    assert_eq!(l.trigger_lvt(lvt::LINT0 as i32), Ok(false), "masked");
    wr(&l, off::LVT_LINT0, 0x33);
    assert_eq!(l.trigger_lvt(lvt::LINT0 as i32), Ok(true));
    assert!(l.irr().test(0x33) && !l.extint_pending());
    wr(&l, off::LVT_LINT0, DELMODE_EXTINT);
    assert_eq!(l.trigger_lvt(lvt::LINT0 as i32), Ok(true), "virtual wire");
    assert!(l.take_extint());
    wr(&l, off::LVT_LINT1, DELMODE_NMI);
    assert_eq!(l.trigger_lvt(lvt::LINT1 as i32), Ok(true));
    assert!(l.nmi_pending());
    wr(&l, off::LVT_THERMAL, DELMODE_SMI | 0x44);
    assert_eq!(l.trigger_lvt(lvt::THERMAL as i32), Ok(false), "SMI ignored");
}

#[test]
fn x2apic_mode_registers_and_msrs() {
    let l = enabled(0x13);
    let now = Instant::now();
    assert_eq!(l.read_msr(0x802, now), None, "x2APIC MSR in xAPIC mode: #GP");
    l.set_x2apic_state(X2ApicState::Enabled);
    assert_eq!(l.read_msr(0x802, now), Some(0x13), "ID is the plain vCPU id");
    assert_eq!(l.read_msr(0x80D, now), Some((1 << 3) | (1 << 16)), "derived LDR");
    assert_eq!(l.read_msr(0x80E, now), Some(0), "no DFR");
    assert_eq!(l.read_msr(MSR_APICBASE, now), Some(0xFEE0_0C00));
    assert_eq!(l.write_msr(MSR_APICBASE, 0xFEE0_0800, now), None, "base cannot change");
    assert!(l.write_msr(MSR_APICBASE, 0xFEE0_0C00, now).is_some());
    // MMIO is not decoded in x2APIC mode.
    assert_eq!(l.mmio_read(off::ID, now), 0);
    // The ICR is one 64-bit MSR with a 32-bit destination.
    let fx = l.write_msr(0x830, (0x1_0000u64 << 32) | 0x60, now).unwrap();
    assert_eq!(fx.ipi.map(|i| (i.dest, i.x2apic_dest)), Some((0x1_0000, true)));
    assert_eq!(l.read_msr(0x830, now), Some((0x1_0000u64 << 32) | 0x60));
    // SELF_IPI.
    let fx = l.write_msr(0x83F, 0x61, now).unwrap();
    assert_eq!(fx.ipi.map(|i| (i.vector, i.shorthand)), Some((0x61, DEST_SELF)));
    // EOI through its MSR.
    l.set_intr_ready(0x70, true);
    l.intr_accepted(0x70);
    assert_eq!(l.write_msr(0x80B, 0, now).unwrap().eoi_vector, Some(0x70));
    l.set_x2apic_state(X2ApicState::Disabled);
    assert_eq!(l.mmio_read(off::ID, now), 0x13 << 24);
    assert_eq!(l.mmio_read(off::DFR, now), 0xFFFF_FFFF);
}

#[test]
fn init_resets_the_apic() {
    let l = enabled(1);
    l.set_intr_ready(0x40, false);
    l.inject_extint();
    l.init_ipi();
    assert!(l.irr().is_empty(), "INIT resets the APIC");
    assert!(l.extint_pending(), "a pending ExtINT is the vCPU's, not the APIC's");
    assert_eq!(l.mmio_read(off::SVR, Instant::now()), 0xFF);
}

#[test]
fn reinit_returns_to_a_new_apic() {
    let l = enabled(1);
    l.set_x2apic_state(X2ApicState::Enabled);
    l.stage_tmr(0x40, true);
    l.inject_nmi();
    l.inject_extint();
    l.reinit();
    assert_eq!(l.x2apic_state(), X2ApicState::Disabled);
    assert!(!l.nmi_pending() && !l.extint_pending());
    assert!(l.staged_tmr().0.is_empty());
    assert_eq!(l.mmio_read(off::ID, Instant::now()), 1 << 24);
}

/// The locked path keeps the rule the lock-free merge keeps: an edge
/// message joins a vector pending as level, which stays level (it is
/// reached when the two race, the merge check seeing the vector not yet
/// pending).
#[test]
fn an_edge_message_joins_a_level_pending_vector_under_the_mutex_too() {
    let l = enabled(0);
    assert!(l.set_intr_ready(0x50, true));
    assert!(!l.lock().set_intr_ready(0x50, false));
    assert!(l.tmr().test(0x50) && l.irr().test(0x50));
}

/// FreeBSD `vlapic_fire_timer` counts VLAPIC_INTR_TIMER ("timer
/// interrupts generated by vlapic") only when `vlapic_fire_lvt` returns 1.
/// A timer LVT with an illegal vector (< 16; its delivery mode is always
/// fixed, the LVT write drops the DM bits) makes `vlapic_fire_lvt` latch
/// "send illegal vector" and return 0: no interrupt, not counted.
#[test]
fn a_timer_with_an_illegal_vector_is_not_counted() {
    let l = enabled(0);
    let t0 = Instant::now();
    l.mmio_write(off::LVT_TIMER, 0x05, t0);
    l.mmio_write(off::TIMER_ICR, 1000, t0);
    l.timer_poll(t0 + Duration::from_secs(1));
    assert!(l.irr().is_empty());
    wr(&l, off::ESR, 0);
    assert_eq!(rd(&l, off::ESR), ESR_SEND_ILLEGAL_VECTOR);
    assert_eq!(l.counts().timer, 0, "FreeBSD does not count an illegal-vector timer");
}

/// PPR rises when the guest takes an interrupt, as the SDM says. A
/// deliberate difference from FreeBSD 14, whose `vlapic_intr_accepted`
/// does not recompute PPR (only `vlapic_pending_intr`, `vlapic_process_eoi`
/// and a TPR change do), so a PPR read in the handler there still shows
/// the old priority. Which interrupt is delivered is the same either way.
#[test]
fn ppr_rises_when_an_interrupt_is_taken() {
    let l = enabled(0);
    l.set_intr_ready(0x61, false);
    assert_eq!(l.pending_intr(), Some(0x61));
    l.intr_accepted(0x61);
    assert_eq!(rd(&l, off::PPR), 0x60);
}

/// An INIT clears an error latched before it, with the rest of the local
/// APIC, as on hardware. A deliberate difference from FreeBSD 14, whose
/// `vlapic_reset` zeroes the APIC page but not `esr_pending`, so the old
/// error appears at the first ESR write after the INIT.
#[test]
fn init_drops_a_latched_esr_error() {
    let l = enabled(0);
    wr(&l, off::ICR_LO, DELMODE_FIXED | 0x05); // send illegal vector
    l.init_ipi();
    wr(&l, off::SVR, SVR_ENABLE | 0xFF);
    wr(&l, off::ESR, 0);
    assert_eq!(rd(&l, off::ESR), 0);
}

/// FreeBSD counts VLAPIC_INTR_TIMER ("timer interrupts generated by
/// vlapic") with `vmm_stat_incr` in the vCPU's statistics, which only
/// `vcpu_init` (VM creation, VM_REINIT) zeroes; `vlapic_reset`, which an
/// INIT IPI runs, leaves them. A statistic VM_STATS reports does not go
/// back to 0 when the guest INITs a vCPU.
#[test]
fn an_init_ipi_keeps_the_timer_interrupt_statistic() {
    let l = enabled(0);
    let t0 = Instant::now();
    l.mmio_write(off::TIMER_DCR, 0xB, t0);
    l.mmio_write(off::LVT_TIMER, 0x40, t0);
    l.mmio_write(off::TIMER_ICR, 1000, t0);
    assert!(l.timer_poll(t0 + Duration::from_secs(1)));
    assert_eq!(l.counts().timer, 1);
    l.init_ipi();
    assert_eq!(l.counts().timer, 1, "vlapic_reset does not touch the vCPU's statistics");
    l.reinit();
    assert_eq!(l.counts().timer, 0, "VM_REINIT (vcpu_init: vmm_stat_init) zeroes it");
}

/// FreeBSD 14's LVTS_TRIGGERRED: VM_LAPIC_LOCAL_IRQ counts "lvts
/// triggered[index]" when the enabled APIC's entry raised something (not
/// masked, not an illegal vector, not an ignored mode); a timer expiry
/// counts only VLAPIC_INTR_TIMER.
#[test]
fn local_irqs_count_lvts_triggered_by_index() {
    let l = Vlapic::new(0);
    assert_eq!(l.trigger_lvt(lvt::LINT1 as i32), Ok(true));
    assert_eq!(l.counts().lvts, [0; lvt::COUNT], "disabled: the pins, uncounted");
    wr(&l, off::SVR, SVR_ENABLE | 0xFF);
    l.trigger_lvt(lvt::TIMER as i32).unwrap();
    assert_eq!(l.counts().lvts, [0; lvt::COUNT], "masked");
    wr(&l, off::LVT_TIMER, 0x40);
    wr(&l, off::LVT_LINT1, DELMODE_NMI);
    wr(&l, off::LVT_PERF, 0x05);
    l.trigger_lvt(lvt::TIMER as i32).unwrap();
    l.trigger_lvt(lvt::TIMER as i32).unwrap();
    l.trigger_lvt(lvt::LINT1 as i32).unwrap();
    l.trigger_lvt(lvt::PMC as i32).unwrap();
    let mut want = [0; lvt::COUNT];
    want[lvt::TIMER] = 2;
    want[lvt::LINT1] = 1;
    assert_eq!(l.counts().lvts, want, "an illegal vector raises nothing");
    assert_eq!(l.trigger_lvt(lvt::COUNT as i32), Err(Error::Inval));
    let t0 = Instant::now();
    l.mmio_write(off::TIMER_ICR, 1000, t0);
    l.timer_poll(t0 + Duration::from_secs(1));
    assert_eq!((l.counts().timer, l.counts().lvts), (1, want));
    l.init_ipi();
    assert_eq!(l.counts().lvts, want, "INIT keeps the statistics");
    l.reinit();
    assert_eq!(l.counts(), crate::stats::LapicCounts::default(), "VM_REINIT zeroes them");
}

/// VLAPIC_INTR_ERROR counts the error LVT an APIC error raised (not a
/// VM_LAPIC_LOCAL_IRQ of it, nor a masked or illegal one);
/// VLAPIC_GRATUITOUS_EOI an EOI with nothing in service.
#[test]
fn error_interrupts_and_gratuitous_eois_are_counted() {
    let l = enabled(0);
    wr(&l, off::ICR_LO, DELMODE_FIXED | 0x05); // send illegal vector
    assert_eq!(l.counts().error, 0, "masked error LVT");
    wr(&l, off::LVT_ERROR, 0x03);
    wr(&l, off::ICR_LO, DELMODE_FIXED | 0x05);
    assert_eq!(l.counts().error, 0, "illegal error vector");
    wr(&l, off::LVT_ERROR, 0x50);
    wr(&l, off::ICR_LO, DELMODE_FIXED | 0x05);
    wr(&l, off::LVT_PERF, 0x06); // its firing errors too
    l.trigger_lvt(lvt::PMC as i32).unwrap();
    l.trigger_lvt(lvt::ERROR as i32).unwrap();
    let c = l.counts();
    assert_eq!((c.error, c.lvts[lvt::ERROR], c.lvts[lvt::PMC]), (2, 1, 0));
    assert_eq!(c.gratuitous_eoi, 0);
    wr(&l, off::EOI, 0);
    l.set_intr_ready(0x50, false);
    l.accept_pending_intr();
    wr(&l, off::EOI, 0);
    assert_eq!(l.counts().gratuitous_eoi, 1);
}

/// The lock-free copy follows IRR and TMR: an interrupt into a pending
/// vector merges without the mutex (a level one only if TMR is set), and
/// not once the guest took it.
#[test]
fn a_pending_vector_merges_without_the_lock() {
    let l = enabled(0);
    assert!(!l.pending.merges(0x50, false), "nothing pending");
    assert!(l.set_intr_ready(0x50, false));
    assert!(l.pending.merges(0x50, false), "edge into pending");
    assert!(!l.pending.merges(0x50, true), "level into edge: TMR changes, under the mutex");
    assert!(l.set_intr_ready(0x71, true));
    assert!(l.pending.merges(0x71, true) && l.pending.merges(0x71, false), "into level");
    assert_eq!(l.accept_pending_intr(), Some(0x71));
    assert!(!l.pending.merges(0x71, false), "taken");
}

/// `timer_armed` asks whoever sleeps until the next deadline to look again
/// only when the timer got a new one: not for a write that leaves the
/// running timer alone, not for a stop (initial count 0).
#[test]
fn timer_armed_reports_only_a_new_deadline() {
    let l = enabled(0);
    let t0 = Instant::now();
    l.mmio_write(off::LVT_TIMER, 0x41, t0);
    assert!(l.mmio_write(off::TIMER_ICR, 1000, t0).timer_armed);
    assert!(!l.mmio_write(off::TPR, 0x10, t0).timer_armed, "the running timer is untouched");
    assert!(!l.mmio_write(off::TIMER_ICR, 0, t0).timer_armed, "stopped: no deadline");
    assert_eq!(l.timer_deadline(), None);
}

/// FreeBSD 14 `vlapic_icrlo_write_handler`: vectors 0-15 are illegal to
/// send in lowest-priority mode as in fixed mode, 16 is legal; the error
/// raising the sender's own unmasked error LVT asks for a notification.
#[test]
fn icr_illegal_vectors_are_0_to_15_in_fixed_and_lowest_priority_mode() {
    let l = enabled(0);
    wr(&l, off::ICR_HI, 1 << 24);
    assert_eq!(wr(&l, off::ICR_LO, DELMODE_FIXED | 0x10).ipi.map(|i| i.vector), Some(0x10));
    wr(&l, off::ESR, 0);
    assert_eq!(rd(&l, off::ESR), 0, "vector 16 is legal");
    let fx = wr(&l, off::ICR_LO, DELMODE_LOWPRIO | 0x0F);
    assert_eq!((fx.ipi, fx.notify), (None, false), "error LVT masked");
    wr(&l, off::ESR, 0);
    assert_eq!(rd(&l, off::ESR), ESR_SEND_ILLEGAL_VECTOR);
    wr(&l, off::LVT_ERROR, 0xEE);
    let fx = wr(&l, off::ICR_LO, DELMODE_FIXED | 0x05);
    assert!(fx.notify && l.irr().test(0xEE), "the error LVT raised 0xEE");
}

/// SELF_IPI (offset 0x3F0) exists only in x2APIC mode: FreeBSD's
/// `vlapic_write` ignores an xAPIC MMIO write to it.
#[test]
fn an_xapic_write_to_self_ipi_sends_nothing() {
    let l = enabled(0);
    assert_eq!(wr(&l, off::SELF_IPI, 0x60), LapicEffects::default());
}

/// Vector 16, the lowest legal one, is in priority class 1: in service it
/// raises PPR to 0x10 and holds off the rest of its class.
#[test]
fn vector_16_in_service_raises_ppr_to_its_class() {
    let l = enabled(0);
    assert!(l.set_intr_ready(0x10, false));
    assert_eq!(l.accept_pending_intr(), Some(0x10));
    assert_eq!(rd(&l, off::PPR), 0x10);
    l.set_intr_ready(0x18, false);
    assert_eq!(l.pending_intr(), None, "same class as in service");
}

/// FreeBSD `vlapic_fire_lvt`: a fixed LVT with vector 16 raises it; only
/// vectors 0-15 are illegal there.
#[test]
fn an_lvt_with_vector_16_raises_it() {
    let l = enabled(0);
    wr(&l, off::LVT_LINT0, 0x10);
    assert_eq!(l.trigger_lvt(lvt::LINT0 as i32), Ok(true));
    assert!(l.irr().test(0x10));
    wr(&l, off::ESR, 0);
    assert_eq!(rd(&l, off::ESR), 0);
}

/// A vector already pending merges without the vlapic mutex (`pending`):
/// `set_intr_ready` returns while the mutex is held, asking for no
/// notification.
#[test]
fn a_merge_into_a_pending_vector_needs_no_mutex() {
    let l = std::sync::Arc::new(enabled(0));
    assert!(l.set_intr_ready(0x40, false));
    let l2 = l.clone();
    let notify = crate::test_util::with_watchdog(10, move || {
        let _held = l2.lock();
        l2.set_intr_ready(0x40, false)
    });
    assert!(!notify);
    assert!(l.irr().test(0x40));
}

/// `has_pending_event` (the public "should HLT end" question) counts a
/// pending NMI as its doc says, with nothing in IRR; the run loop's
/// callers happen to ask `nmi_pending` first.
#[test]
fn a_pending_nmi_is_a_pending_event() {
    let l = enabled(0);
    assert!(!l.has_pending_event());
    assert!(l.inject_nmi());
    assert!(l.has_pending_event());
    assert!(l.take_nmi());
    assert!(!l.has_pending_event());
}

/// SVR keeps what the guest writes (FreeBSD's `vlapic_write` stores it
/// whole); only bit 8 software-enables the APIC.
#[test]
fn svr_reads_back_as_written_and_only_bit_8_enables() {
    let l = Vlapic::new(0);
    wr(&l, off::SVR, 0x12FF);
    assert_eq!(rd(&l, off::SVR), 0x12FF);
    assert!(!l.set_intr_ready(0x40, false), "bit 8 clear: disabled");
    assert!(l.irr().is_empty());
    wr(&l, off::SVR, 0x11FF);
    assert_eq!(rd(&l, off::SVR), 0x11FF);
    assert!(l.set_intr_ready(0x40, false));
}

/// ISR, TMR and IRR each read as eight words at 16-byte steps, vector v at
/// bit v % 32 of word v / 32, the top word (vectors 224-255) included.
#[test]
fn vector_registers_read_all_eight_words() {
    let l = enabled(0);
    l.set_intr_ready(0xF1, true);
    assert_eq!(l.accept_pending_intr(), Some(0xF1));
    l.set_intr_ready(0xE5, false);
    assert_eq!(rd(&l, off::ISR0 + 0x70), 1 << 17);
    assert_eq!(rd(&l, off::TMR0 + 0x70), 1 << 17);
    assert_eq!(rd(&l, off::IRR0 + 0x70), 1 << 5);
    for w in 0..7 {
        assert_eq!(rd(&l, off::IRR0 + 16 * w), 0, "IRR word {w}");
    }
}

/// Each LVT offset is its own register, at FreeBSD's index (CMCI at 0x2F0
/// is index 6, thermal at 0x330 index 5), and fires its own vector.
#[test]
fn every_lvt_offset_is_its_own_register() {
    let l = enabled(0);
    let offs = [
        off::LVT_LINT0,
        off::LVT_LINT1,
        off::LVT_TIMER,
        off::LVT_ERROR,
        off::LVT_PERF,
        off::LVT_THERMAL,
        off::LVT_CMCI,
    ];
    for (i, o) in offs.into_iter().enumerate() {
        assert_eq!(lvt::from_offset(o), Some(i));
        wr(&l, o, 0x40 + i as u32);
    }
    for (i, o) in offs.into_iter().enumerate() {
        assert_eq!(rd(&l, o), 0x40 + i as u32, "LVT {i}");
    }
    assert_eq!(l.trigger_lvt(lvt::CMCI as i32), Ok(true));
    assert!(l.irr().test(0x46) && !l.irr().test(0x45));
}
