use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Pulse(u32),
    Assert(u32),
    Deassert(u32),
    Msi(u64, u64),
}

#[derive(Default)]
struct Bus(RefCell<Vec<Ev>>);

impl HpetBus for Bus {
    fn ioapic_pulse(&self, pin: u32) {
        self.0.borrow_mut().push(Ev::Pulse(pin));
    }
    fn ioapic_assert(&self, pin: u32) {
        self.0.borrow_mut().push(Ev::Assert(pin));
    }
    fn ioapic_deassert(&self, pin: u32) {
        self.0.borrow_mut().push(Ev::Deassert(pin));
    }
    fn msi(&self, addr: u64, data: u64) {
        self.0.borrow_mut().push(Ev::Msi(addr, data));
    }
}

impl Bus {
    fn take(&self) -> Vec<Ev> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

/// A guest with the time in the test's hands.
struct G {
    h: Vhpet,
    bus: Bus,
    now: Instant,
}

impl G {
    fn new() -> Self {
        let now = Instant::now();
        G { h: Vhpet::new(now), bus: Bus::default(), now }
    }
    fn w(&self, off: u64, v: u64) {
        self.h.mmio_write(off, 8, v, self.now, &self.bus);
    }
    fn w4(&self, off: u64, v: u64) {
        self.h.mmio_write(off, 4, v, self.now, &self.bus);
    }
    fn r(&self, off: u64) -> u64 {
        self.h.mmio_read(off, 8, self.now)
    }
    fn r4(&self, off: u64) -> u64 {
        self.h.mmio_read(off, 4, self.now)
    }
    /// Lets `ticks` counter ticks pass, firing due callouts.
    fn advance(&mut self, ticks: u64) {
        self.now += tick_duration(ticks);
        self.h.poll(self.now, &self.bus);
    }
}

const T0: usize = 0;

#[test]
fn capabilities_and_reset_state_are_freebsds() {
    let g = G::new();
    assert_eq!(CAPABILITIES, 0x038D_7EA4_8086_0701);
    assert_eq!(g.r(reg::CAPABILITIES), CAPABILITIES);
    assert_eq!(g.r4(reg::CAPABILITIES), 0x8086_0701);
    assert_eq!(g.r4(reg::CAPABILITIES + 4), 0x038D_7EA4, "period in fs");
    assert_eq!([g.r(reg::CONFIG), g.r(reg::ISR), g.r(reg::MAIN_COUNTER)], [0, 0, 0]);
    for n in 0..VHPET_NUM_TIMERS {
        assert_eq!(g.r(reg::timer_cap_cnf(n)), 0xff00_0000_0000_8010, "timer {n}");
        assert_eq!(g.r(reg::timer_comparator(n)), 0xffff_ffff);
        assert_eq!(g.r(reg::timer_fsb(n)), 0);
    }
    // Wrong sizes and misaligned accesses read 0 and write nothing.
    assert_eq!(g.h.mmio_read(reg::CAPABILITIES, 2, g.now), 0);
    assert_eq!(g.h.mmio_read(reg::CAPABILITIES + 2, 4, g.now), 0);
    assert_eq!(g.h.mmio_read(reg::CAPABILITIES + 4, 8, g.now), 0);
    g.h.mmio_write(reg::CONFIG, 1, 1, g.now, &g.bus);
    g.h.mmio_write(reg::CONFIG + 4, 8, 1, g.now, &g.bus);
    assert_eq!(g.r(reg::CONFIG), 0);
    assert_eq!(g.h.callout().get(), None);
}

#[test]
fn the_counter_runs_at_16_mhz_only_while_enabled() {
    let mut g = G::new();
    g.advance(1000);
    assert_eq!(g.r(reg::MAIN_COUNTER), 0, "stopped");
    g.w(reg::CONFIG, CNF_ENABLE | CNF_LEG_RT);
    assert_eq!(g.r(reg::CONFIG), CNF_ENABLE, "no LegacyReplacement");
    g.now += Duration::from_millis(1);
    assert_eq!(g.r(reg::MAIN_COUNTER), 16_777);
    g.w(reg::CONFIG, 0);
    g.now += Duration::from_secs(1);
    assert_eq!(g.r(reg::MAIN_COUNTER), 16_777, "frozen");
    // Written while stopped or running; 32 bits, the high half reads 0.
    g.w(reg::MAIN_COUNTER, 0x1_ffff_fff0);
    assert_eq!(g.r(reg::MAIN_COUNTER), 0xffff_fff0);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(0x20);
    assert_eq!(g.r(reg::MAIN_COUNTER), 0x10, "wrapped");
    g.w4(reg::MAIN_COUNTER, 5);
    assert_eq!(g.r4(reg::MAIN_COUNTER), 5);
    assert_eq!(g.r4(reg::MAIN_COUNTER + 4), 0);
}

#[test]
fn a_one_shot_edge_timer_pulses_its_pin_once() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(T0), 26 << 9 | TCNF_INT_ENB);
    g.w(reg::timer_comparator(T0), 1000);
    assert_eq!(g.h.callout().get(), None, "counter stopped: nothing armed");
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(999);
    assert_eq!(g.bus.take(), vec![]);
    g.advance(1);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(26)]);
    assert_eq!(g.r(reg::ISR), 0, "edge: no ISR bit");
    // Next match a full wrap later (2^32 ticks, 256 s).
    g.advance(1 << 31);
    assert_eq!(g.bus.take(), vec![]);
    g.advance(1 << 31);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(26)]);
}

#[test]
fn a_periodic_timer_fires_every_period_and_coalesces_missed_ones() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(T0), 24 << 9 | TCNF_INT_ENB | TCNF_TYPE | TCNF_VAL_SET);
    g.w(reg::timer_comparator(T0), 100); // comparator and period
    assert_eq!(g.r(reg::timer_cap_cnf(T0)) & TCNF_VAL_SET, 0, "VAL_SET is one-shot");
    g.w(reg::timer_comparator(T0), 250); // period only
    assert_eq!(g.r(reg::timer_comparator(T0)), 100);
    g.w(reg::CONFIG, CNF_ENABLE);
    assert_eq!(g.r(reg::timer_comparator(T0)), 100, "a comparator ahead is kept");
    g.advance(100);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(24)]);
    assert_eq!(g.r(reg::timer_comparator(T0)), 350, "moved one period on");
    g.advance(250);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(24)]);
    // Ten periods with nobody looking: one interrupt, comparator ahead.
    g.advance(2500);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(24)]);
    assert_eq!(g.r(reg::timer_comparator(T0)), 3100);
    // Back to one-shot: the period is forgotten.
    g.w(reg::timer_cap_cnf(T0), 24 << 9 | TCNF_INT_ENB);
    g.advance(250);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(24)], "the armed match still comes");
    g.advance(250);
    assert_eq!(g.bus.take(), vec![]);
}

#[test]
fn a_level_timer_stays_asserted_until_its_isr_bit_is_cleared() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(2), 30 << 9 | TCNF_INT_ENB | TCNF_INT_TYPE | TCNF_TYPE | TCNF_VAL_SET);
    g.w(reg::timer_comparator(2), 10);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(10);
    assert_eq!(g.bus.take(), vec![Ev::Assert(30)]);
    assert_eq!(g.r(reg::ISR), 1 << 2);
    g.advance(10);
    assert_eq!(g.bus.take(), vec![], "still asserted: no second assert");
    g.w(reg::ISR, 1 << 3); // another timer's bit: nothing
    g.w4(reg::ISR + 4, 0xff);
    assert_eq!(g.bus.take(), vec![]);
    g.w(reg::ISR, 1 << 2);
    assert_eq!(g.bus.take(), vec![Ev::Deassert(30)]);
    g.advance(10);
    assert_eq!(g.bus.take(), vec![Ev::Assert(30)]);
    // Moving it to another pin lowers the old one; so does disabling it.
    g.w(reg::timer_cap_cnf(2), 31 << 9 | TCNF_INT_ENB | TCNF_INT_TYPE | TCNF_TYPE);
    assert_eq!(g.bus.take(), vec![Ev::Deassert(30)]);
    g.advance(10);
    assert_eq!(g.bus.take(), vec![Ev::Assert(31)]);
    g.w(reg::timer_cap_cnf(2), 31 << 9 | TCNF_INT_TYPE | TCNF_TYPE);
    assert_eq!(g.bus.take(), vec![Ev::Deassert(31)]);
    assert_eq!(g.r(reg::ISR), 0);
}

#[test]
fn routes_outside_pins_24_to_31_fall_back_to_none() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(1), 2 << 9 | TCNF_INT_ENB);
    assert_eq!(g.r(reg::timer_cap_cnf(1)) & TCNF_INT_ROUTE, 0);
    g.w(reg::timer_comparator(1), 5);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(5);
    assert_eq!(g.bus.take(), vec![], "no pin: dropped");
    // Read-only bits stay: capabilities, 32MODE, the route mask.
    g.w(reg::timer_cap_cnf(1), u64::MAX);
    let c = g.r(reg::timer_cap_cnf(1));
    assert_eq!(c >> 32, 0xff00_0000);
    assert_eq!(c & (TCAP_PER_INT | TCAP_FSB_INT_DEL | TCAP_SIZE | TCNF_32MODE), TCAP_PER_INT | TCAP_FSB_INT_DEL);
}

#[test]
fn fsb_delivery_sends_the_programmed_msi() {
    let mut g = G::new();
    g.w(reg::timer_fsb(3), 0xFEE0_1000u64 << 32 | 0x4051);
    g.w(reg::timer_cap_cnf(3), 25 << 9 | TCNF_INT_ENB | TCNF_FSB_EN | TCNF_INT_TYPE);
    g.w(reg::timer_comparator(3), 7);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(7);
    assert_eq!(g.bus.take(), vec![Ev::Msi(0xFEE0_1000, 0x4051)]);
    assert_eq!(g.r(reg::ISR), 0, "MSI: never an ISR bit");
    assert_eq!(g.r4(reg::timer_fsb(3) + 4), 0xFEE0_1000);
}

#[test]
fn stopping_the_counter_delivers_an_overdue_expiry_and_disarms() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(0), 27 << 9 | TCNF_INT_ENB);
    g.w(reg::timer_comparator(0), 50);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.now += tick_duration(60); // due, but no poll yet
    g.w(reg::CONFIG, 0);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(27)]);
    assert_eq!(g.h.callout().get(), None);
    assert_eq!(g.r(reg::MAIN_COUNTER), 60);
}

#[test]
fn reset_brings_back_a_new_hpet() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(0), 27 << 9 | TCNF_INT_ENB | TCNF_INT_TYPE);
    g.w(reg::timer_comparator(0), 5);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(5);
    assert_eq!(g.bus.take(), vec![Ev::Assert(27)]);
    g.h.reset(g.now);
    assert_eq!(g.h.callout().get(), None);
    assert_eq!([g.r(reg::CONFIG), g.r(reg::ISR), g.r(reg::MAIN_COUNTER)], [0, 0, 0]);
    assert_eq!(g.r(reg::timer_cap_cnf(0)), 0xff00_0000_0000_8010);
}

#[test]
fn a_periodic_comparator_at_the_counter_or_long_overdue_moves_to_the_next_period() {
    let mut g = G::new();
    // Armed with the comparator equal to the counter (0): first match one
    // period on, as FreeBSD.
    g.w(reg::timer_cap_cnf(4), 28 << 9 | TCNF_INT_ENB | TCNF_TYPE | TCNF_VAL_SET);
    g.w(reg::timer_comparator(4), 0);
    g.w(reg::timer_comparator(4), 100);
    g.w(reg::CONFIG, CNF_ENABLE);
    assert_eq!(g.r(reg::timer_comparator(4)), 100);
    g.advance(99);
    assert_eq!(g.bus.take(), vec![]);
    g.advance(1);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(28)]);
    // Polled 3 * 2^30 ticks late (more than half the counter's range):
    // one interrupt, then the next period boundary after the counter.
    g.advance(3 << 30);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(28)]);
    let counter = g.r(reg::MAIN_COUNTER) as u32;
    let next = g.r(reg::timer_comparator(4)) as u32;
    assert!(next.wrapping_sub(counter) > 0 && next.wrapping_sub(counter) <= 100, "{counter} -> {next}");
}

#[test]
fn arming_sooner_is_noted_for_sleepers() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(0), 24 << 9 | TCNF_INT_ENB);
    g.w(reg::timer_comparator(0), 1000);
    assert!(!g.h.callout().take_sooner(), "counter stopped: nothing armed");
    g.w(reg::CONFIG, CNF_ENABLE);
    assert!(g.h.callout().take_sooner());
    g.w(reg::timer_comparator(0), 5000);
    assert!(!g.h.callout().take_sooner(), "later");
    g.w(reg::timer_comparator(0), 10);
    assert!(g.h.callout().take_sooner(), "sooner");
    g.advance(10);
    assert!(!g.h.callout().take_sooner(), "an expiry only moves it later");
}

/// Random guest accesses (any offset, size and value, biased to the real
/// registers) and time steps. Nothing panics, and the interrupt state
/// stays consistent after every step: each pin's asserts minus deasserts
/// equal the timers whose ISR bit holds it, only enabled level timers
/// routed to a pin hold ISR bits, pulses go to pins 24-31, the published
/// deadline is the earliest armed callout, and nothing is armed while the
/// counter is stopped. `VMM_RS_FUZZ_SEED` picks another seed.
#[test]
fn random_accesses_keep_the_interrupt_state_consistent() {
    let mut rng = crate::test_util::Rng::from_env(0x4850_4554);
    let mut g = G::new();
    let mut asserted = [0i64; 32];
    let mut events = 0;
    for step in 0..100_000 {
        match rng.below(10) {
            0..=5 => {
                let off = match rng.below(4) {
                    0 => rng.below(0x400),
                    1 => reg::CONFIG + rng.below(2) * 4,
                    2 => reg::ISR,
                    _ => 0x100 + rng.below(8) * 0x20 + rng.pick(&[0, 4, 8, 0xc, 0x10, 0x14]),
                };
                let value = match rng.below(3) {
                    0 => rng.next(),
                    1 => rng.below(0x1_0000),
                    _ => (16 + rng.below(16)) << 9 | rng.below(0x80) | rng.below(2) << 14,
                };
                g.h.mmio_write(off, rng.pick(&[1, 2, 4, 8, 8, 4]), value, g.now, &g.bus);
            }
            6 => {
                let _ = g.h.mmio_read(rng.below(0x400), rng.pick(&[1, 2, 4, 8]), g.now);
            }
            _ => g.advance(rng.below(5000)),
        }
        for ev in g.bus.take() {
            events += 1;
            match ev {
                Ev::Assert(p) => asserted[p as usize] += 1,
                Ev::Deassert(p) => asserted[p as usize] -= 1,
                Ev::Pulse(p) => assert!((24..32).contains(&p), "step {step}: pulse on pin {p}"),
                Ev::Msi(..) => {}
            }
        }
        let st = g.h.state.lock();
        let mut want = [0i64; 32];
        for n in (0..VHPET_NUM_TIMERS).filter(|n| st.isr & (1 << n) != 0) {
            let c = st.timers[n].cap_config;
            assert!(c & TCNF_INT_TYPE != 0 && c & TCNF_INT_ENB != 0 && !st.msi_enabled(n), "step {step}: timer {n}");
            let pin = st.pin(n);
            assert!((24..32).contains(&pin), "step {step}: timer {n} holds pin {pin}");
            want[pin as usize] += 1;
        }
        assert_eq!(asserted, want, "step {step}: pin levels");
        assert_eq!(st.earliest_deadline(), g.h.callout().get(), "step {step}");
        assert!(st.enabled() || st.timers.iter().all(|t| t.deadline.is_none()), "step {step}");
    }
    assert!(events > 100, "the run raised interrupts ({events})");
}

/// A one-shot timer made periodic takes its period from the next
/// comparator write (without VAL_SET), which re-arms it as FreeBSD does
/// for a changed period: its comparator, long passed, moves to the first
/// period boundary after the counter.
#[test]
fn a_period_written_re_arms_a_one_shot_timer_made_periodic() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(T0), 26 << 9 | TCNF_INT_ENB);
    g.w(reg::timer_comparator(T0), 100);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(200);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(26)]);
    g.w(reg::timer_cap_cnf(T0), 26 << 9 | TCNF_INT_ENB | TCNF_TYPE);
    g.w(reg::timer_comparator(T0), 1000);
    assert_eq!(g.r(reg::timer_comparator(T0)), 1100, "100 + one period");
    g.advance(899);
    assert_eq!(g.bus.take(), vec![]);
    g.advance(1);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(26)]);
}

/// FSB delivery sends all 32 bits of the data word (FreeBSD's `msireg &
/// 0xffffffff`), and a route written with FSB on is kept (FreeBSD checks
/// only a pin in use against the allowed ones): turning FSB off later
/// interrupts on that pin.
#[test]
fn fsb_delivery_sends_32_bits_of_data_and_keeps_the_pin_route() {
    let mut g = G::new();
    g.w(reg::timer_fsb(3), 0xFEE0_1000u64 << 32 | 0xdead_4051);
    g.w(reg::timer_cap_cnf(3), 25 << 9 | TCNF_INT_ENB | TCNF_FSB_EN | TCNF_INT_TYPE | TCNF_TYPE | TCNF_VAL_SET);
    assert_eq!(g.r(reg::timer_cap_cnf(3)) & TCNF_INT_ROUTE, 25 << 9, "route kept under FSB");
    g.w(reg::timer_comparator(3), 7);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(7);
    assert_eq!(g.bus.take(), vec![Ev::Msi(0xFEE0_1000, 0xdead_4051)]);
    g.w(reg::timer_cap_cnf(3), 25 << 9 | TCNF_INT_ENB | TCNF_INT_TYPE | TCNF_TYPE);
    g.advance(7);
    assert_eq!(g.bus.take(), vec![Ev::Assert(25)], "FSB off: the pin written before");
}

/// A level interrupt still asserted is lowered when its timer becomes
/// edge-triggered on the same pin, enabled (FreeBSD
/// `vhpet_timer_update_config`), and its ISR bit goes.
#[test]
fn a_level_interrupt_made_edge_on_the_same_pin_is_lowered() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(2), 30 << 9 | TCNF_INT_ENB | TCNF_INT_TYPE);
    g.w(reg::timer_comparator(2), 10);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(10);
    assert_eq!(g.bus.take(), vec![Ev::Assert(30)]);
    g.w(reg::timer_cap_cnf(2), 30 << 9 | TCNF_INT_ENB);
    assert_eq!(g.bus.take(), vec![Ev::Deassert(30)]);
    assert_eq!(g.r(reg::ISR), 0);
}

/// Writing the configuration with ENABLE already set changes nothing: the
/// counter keeps running from where it was (only a change of ENABLE
/// starts or stops it).
#[test]
fn rewriting_enable_keeps_the_counter_running() {
    let mut g = G::new();
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(1000);
    g.w(reg::CONFIG, CNF_ENABLE);
    assert_eq!(g.r(reg::MAIN_COUNTER), 1000);
    g.advance(10);
    assert_eq!(g.r(reg::MAIN_COUNTER), 1010);
}

/// A one-shot timer armed with its comparator equal to the counter fires
/// at once, as FreeBSD's `vhpet_start_timer` (a zero delta), not a full
/// wrap later.
#[test]
fn a_one_shot_armed_at_the_counter_fires_at_once() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(T0), 24 << 9 | TCNF_INT_ENB);
    g.w(reg::timer_comparator(T0), 0);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(0);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(24)]);
}

/// A comparator write of the value it already holds does not re-arm the
/// timer (FreeBSD re-arms only for a changed comparator or period): a
/// one-shot that has just fired does not fire again.
#[test]
fn rewriting_an_unchanged_comparator_does_not_re_arm() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(T0), 24 << 9 | TCNF_INT_ENB);
    g.w(reg::timer_comparator(T0), 100);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(100);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(24)]);
    g.w(reg::timer_comparator(T0), 100);
    g.advance(0);
    assert_eq!(g.bus.take(), vec![], "no second expiry");
}

/// Stopping the counter at the very instant of an expiry (not yet polled)
/// delivers it once: not at the stop (FreeBSD delivers only a callout
/// already past), but when the counter restarts at its comparator.
#[test]
fn an_expiry_reached_as_the_counter_stops_comes_once_at_restart() {
    let mut g = G::new();
    g.w(reg::timer_cap_cnf(T0), 27 << 9 | TCNF_INT_ENB);
    g.w(reg::timer_comparator(T0), 50);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.now += tick_duration(50);
    assert_eq!(g.h.callout().get(), Some(g.now), "due now");
    g.w(reg::CONFIG, 0);
    assert_eq!(g.r(reg::MAIN_COUNTER), 50);
    g.w(reg::CONFIG, CNF_ENABLE);
    g.advance(0);
    assert_eq!(g.bus.take(), vec![Ev::Pulse(27)]);
}

/// A periodic comparator up to 2^31 - 1 ticks ahead of the counter is
/// ahead and kept when the counter starts; 2^31 ahead is behind, and
/// moves to the first period boundary after the counter.
#[test]
fn a_periodic_comparator_is_ahead_up_to_half_the_counters_range() {
    for (compval, kept) in [(0x7fff_ffffu32, true), (0x8000_0000, false)] {
        let g = G::new();
        g.w(reg::timer_cap_cnf(T0), 24 << 9 | TCNF_INT_ENB | TCNF_TYPE | TCNF_VAL_SET);
        g.w(reg::timer_comparator(T0), u64::from(compval));
        g.w(reg::timer_comparator(T0), 100);
        g.w(reg::CONFIG, CNF_ENABLE);
        let now = g.r(reg::timer_comparator(T0)) as u32;
        if kept {
            assert_eq!(now, compval);
        } else {
            assert_eq!(now, compval.wrapping_add((compval.wrapping_neg() / 100 + 1) * 100), "{compval:#x}");
            assert!(now > 0 && now <= 100, "{now}");
        }
    }
}
