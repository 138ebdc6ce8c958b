//! The virtual HPET (FreeBSD 14 `vhpet.c`): a 32-bit main counter at
//! 16.777216 MHz and eight 32-bit comparators, one-shot or periodic, whose
//! interrupts go to IOAPIC pins 24-31 (edge pulses, or level with the
//! ISR bit until the guest clears it) or as MSIs (FSB delivery), at MMIO
//! 0xFED00000 (1 KiB). LegacyReplacement routing is not offered (the
//! capability bit is 0 and the config bit cannot be set), as in FreeBSD.
//!
//! Differences from FreeBSD: a periodic comparator still ahead of the
//! counter is kept when the timer is (re)armed (FreeBSD moves it by 2^32
//! mod the period, so the first interrupt comes early); a one-shot timer
//! that fires with the counter equal to its comparator next matches a
//! full wrap later (FreeBSD re-arms it at once and may fire twice);
//! expiries found due at one poll fire in timer order.
//!
//! # Lock order
//!
//! One mutex, `Vhpet::state`, held while the HPET raises or lowers its
//! interrupts through the [`HpetBus`] (vioapic pins, local APICs), as
//! FreeBSD holds its vHPET lock across `vioapic_assert_irq`: so a level
//! pin's assert and its clear can never reach the IOAPIC in the wrong
//! order. It is taken with no other lock held (guest MMIO in the run loop,
//! VM_SET/GET_KERNEMU_DEV) but the callout gate (the timer poll, VM_REINIT's
//! reset) or a guest-program mutex (a C guest callback's call), and
//! nothing the bus does takes it again: it ranks before the vioapic locks.
//!
//! # Time
//!
//! As for the RTC: each timer's callout is a deadline the run loop checks
//! on every guest entry and that bounds every HLT sleep. Every function
//! takes the current time, so tests drive it.

#[cfg(all(test, not(loom)))]
mod tests;

use std::time::{Duration, Instant};

use crate::callout::PublishedCallout;
use crate::sync::Mutex;

/// Guest-physical base of the registers, and their size.
pub const VHPET_BASE: u64 = 0xFED0_0000;
pub const VHPET_SIZE: u64 = 0x400;
pub const VHPET_NUM_TIMERS: usize = 8;
/// Main counter rate (2^24 Hz).
pub const HPET_FREQ: u64 = 1 << 24;
const FS_PER_S: u64 = 1_000_000_000_000_000;

/// Register offsets.
pub mod reg {
    pub const CAPABILITIES: u64 = 0x00;
    pub const CONFIG: u64 = 0x10;
    pub const ISR: u64 = 0x20;
    pub const MAIN_COUNTER: u64 = 0xf0;
    /// Timer `n`'s configuration and capabilities.
    pub const fn timer_cap_cnf(n: usize) -> u64 {
        0x100 + 0x20 * n as u64
    }
    pub const fn timer_comparator(n: usize) -> u64 {
        0x108 + 0x20 * n as u64
    }
    /// FSB (MSI) route: data in the low half, address in the high half.
    pub const fn timer_fsb(n: usize) -> u64 {
        0x110 + 0x20 * n as u64
    }
}

pub const CNF_ENABLE: u64 = 0x1;
pub const CNF_LEG_RT: u64 = 0x2;
/// Timer configuration: level-triggered (else edge).
pub const TCNF_INT_TYPE: u64 = 0x2;
pub const TCNF_INT_ENB: u64 = 0x4;
/// Periodic (else one-shot).
pub const TCNF_TYPE: u64 = 0x8;
pub const TCAP_PER_INT: u64 = 0x10;
pub const TCAP_SIZE: u64 = 0x20;
/// The next comparator write sets the comparator, not only the period.
pub const TCNF_VAL_SET: u64 = 0x40;
pub const TCNF_32MODE: u64 = 0x100;
pub const TCNF_INT_ROUTE: u64 = 0x3e00;
pub const TCNF_FSB_EN: u64 = 0x4000;
pub const TCAP_FSB_INT_DEL: u64 = 0x8000;
pub const TCAP_INT_ROUTE: u64 = 0xffff_ffff_0000_0000;
const TCAP_RO_MASK: u64 = TCAP_INT_ROUTE | TCAP_FSB_INT_DEL | TCAP_SIZE | TCAP_PER_INT;

/// The general capabilities register: vendor 8086, 8 timers, revision 1,
/// a 32-bit counter, no LegacyReplacement, the tick period in fs.
pub const CAPABILITIES: u64 = (FS_PER_S / HPET_FREQ) << 32 | 0x8086 << 16 | (VHPET_NUM_TIMERS as u64 - 1) << 8 | 1;

/// The IOAPIC pins the timers may use: 24-31 of the 32 (FreeBSD's rule
/// for an IOAPIC with at least 32 pins).
pub const ALLOWED_PINS: u32 = 0xff00_0000;

/// Where the HPET's interrupts go. Called with the HPET mutex held.
pub trait HpetBus {
    fn ioapic_pulse(&self, pin: u32);
    fn ioapic_assert(&self, pin: u32);
    fn ioapic_deassert(&self, pin: u32);
    fn msi(&self, addr: u64, data: u64);
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    cap_config: u64,
    msireg: u64,
    compval: u32,
    /// The period of a periodic timer, 0 for one-shot.
    comprate: u32,
    /// The callout: when the counter reaches `compval`.
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct HpetState {
    config: u64,
    /// Level interrupts asserted (bit n: timer n).
    isr: u64,
    /// The counter's value at `countbase_time` (or while stopped).
    countbase: u32,
    countbase_time: Instant,
    timers: [Timer; VHPET_NUM_TIMERS],
}

/// The HPET of one VM.
#[derive(Debug)]
pub struct Vhpet {
    /// vHPET mutex. Protects: every register and the callouts. Rank: before
    /// the vioapic locks (see the module doc).
    state: Mutex<HpetState>,
    /// The earliest timer's deadline, published under the mutex.
    callout: PublishedCallout,
}

fn update_register(reg: &mut u64, data: u64, mask: u64) {
    *reg = (*reg & !mask) | (data & mask);
}

/// Counter ticks in `d`.
fn ticks(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(HPET_FREQ) / 1_000_000_000) as u64
}

/// The time `n` ticks take, rounded up (so the counter has reached its
/// target when a deadline computed with it passes).
fn tick_duration(n: u64) -> Duration {
    Duration::from_nanos((u128::from(n) * 1_000_000_000).div_ceil(u128::from(HPET_FREQ)) as u64)
}

impl HpetState {
    fn new(now: Instant) -> Self {
        let timer = Timer {
            cap_config: u64::from(ALLOWED_PINS) << 32 | TCAP_PER_INT | TCAP_FSB_INT_DEL,
            msireg: 0,
            compval: u32::MAX,
            comprate: 0,
            deadline: None,
        };
        HpetState { config: 0, isr: 0, countbase: 0, countbase_time: now, timers: [timer; VHPET_NUM_TIMERS] }
    }

    fn enabled(&self) -> bool {
        self.config & CNF_ENABLE != 0
    }

    fn counter(&self, now: Instant) -> u32 {
        if !self.enabled() {
            return self.countbase;
        }
        self.countbase.wrapping_add(ticks(now.saturating_duration_since(self.countbase_time)) as u32)
    }

    fn msi_enabled(&self, n: usize) -> bool {
        let both = TCAP_FSB_INT_DEL | TCNF_FSB_EN;
        self.timers[n].cap_config & both == both
    }

    /// The IOAPIC pin of timer `n` (0: none, or MSI delivery).
    fn pin(&self, n: usize) -> u32 {
        if self.msi_enabled(n) {
            0
        } else {
            ((self.timers[n].cap_config & TCNF_INT_ROUTE) >> 9) as u32
        }
    }

    fn periodic(&self, n: usize) -> bool {
        self.timers[n].cap_config & TCNF_TYPE != 0
    }

    /// `vhpet_timer_interrupt`.
    fn timer_interrupt(&mut self, n: usize, bus: &dyn HpetBus) {
        let t = self.timers[n];
        if t.cap_config & TCNF_INT_ENB == 0 || self.isr & (1 << n) != 0 {
            return;
        }
        if self.msi_enabled(n) {
            bus.msi(t.msireg >> 32, t.msireg & 0xffff_ffff);
            return;
        }
        let pin = self.pin(n);
        if pin == 0 {
            return;
        }
        if t.cap_config & TCNF_INT_TYPE == 0 {
            bus.ioapic_pulse(pin);
        } else {
            self.isr |= 1 << n;
            bus.ioapic_assert(pin);
        }
    }

    /// `vhpet_timer_clear_isr`.
    fn clear_isr(&mut self, n: usize, pin: u32, bus: &dyn HpetBus) {
        if self.isr & (1 << n) != 0 {
            debug_assert_ne!(pin, 0, "timer {n}: level interrupt on no pin");
            bus.ioapic_deassert(pin);
            self.isr &= !(1 << n);
        }
    }

    /// `vhpet_start_timer`: arm timer `n` for when the counter (now
    /// `counter`) reaches its comparator, a periodic one first moved past
    /// the counter. `refire_now` is false in the callout itself, where a
    /// comparator equal to the counter has just fired and next matches a
    /// full wrap later.
    fn start_timer(&mut self, n: usize, counter: u32, now: Instant, refire_now: bool) {
        let t = &mut self.timers[n];
        let ahead = t.compval.wrapping_sub(counter);
        // In the callout the comparator has been reached, however late the
        // poll; when arming, one behind the counter (or equal to it, as
        // FreeBSD) has passed.
        let passed = !refire_now || ahead == 0 || ahead > u32::MAX / 2;
        if t.comprate != 0 && passed {
            // vhpet_adjust_compval, in the counter's 32-bit arithmetic:
            // the first period boundary after the counter. (FreeBSD also
            // "adjusts" a comparator still ahead, which moves it by 2^32
            // mod the period and fires early; here it is kept.)
            let periods = counter.wrapping_sub(t.compval) / t.comprate + 1;
            t.compval = t.compval.wrapping_add(periods.wrapping_mul(t.comprate));
        }
        let delta = match t.compval.wrapping_sub(counter) {
            0 if !refire_now => 1u64 << 32,
            d => u64::from(d),
        };
        t.deadline = Some(now + tick_duration(delta));
    }

    /// `vhpet_stop_timer`: disarm; an expiry already due is delivered.
    fn stop_timer(&mut self, n: usize, now: Instant, bus: &dyn HpetBus) {
        if let Some(d) = self.timers[n].deadline.take() {
            if d < now {
                self.timer_interrupt(n, bus);
            }
        }
    }

    fn start_counting(&mut self, now: Instant) {
        self.countbase_time = now;
        for n in 0..VHPET_NUM_TIMERS {
            self.start_timer(n, self.countbase, now, true);
        }
    }

    fn stop_counting(&mut self, counter: u32, now: Instant, bus: &dyn HpetBus) {
        self.countbase = counter;
        for n in 0..VHPET_NUM_TIMERS {
            self.stop_timer(n, now, bus);
        }
    }

    /// `vhpet_timer_update_config`.
    fn update_config(&mut self, n: usize, data: u64, mask: u64, bus: &dyn HpetBus) {
        let old_pin = self.pin(n);
        let old = self.timers[n].cap_config;
        let mut new = old;
        update_register(&mut new, data, mask);
        new &= !(TCAP_RO_MASK | TCNF_32MODE);
        new |= old & TCAP_RO_MASK;
        if new == old {
            return;
        }
        self.timers[n].cap_config = new;
        // A route the timer does not offer falls back to none.
        let allowed = (new >> 32) as u32;
        let pin = self.pin(n);
        if pin != 0 && allowed & (1 << pin) == 0 {
            self.timers[n].cap_config &= !TCNF_INT_ROUTE;
        }
        if !self.periodic(n) {
            self.timers[n].comprate = 0;
        }
        // A level interrupt must not stay asserted once it is disabled,
        // becomes edge or MSI, or moves to another pin.
        if self.isr & (1 << n) != 0 {
            let c = self.timers[n].cap_config;
            let clear = c & TCNF_INT_ENB == 0
                || self.msi_enabled(n)
                || c & TCNF_INT_TYPE == 0
                || self.pin(n) != old_pin;
            if clear {
                self.clear_isr(n, old_pin, bus);
            }
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64, now: Instant, bus: &dyn HpetBus) {
        let (mut data, mut mask) = match size {
            8 => (value, u64::MAX),
            4 => (value & 0xffff_ffff, 0xffff_ffffu64),
            _ => return,
        };
        if offset & (u64::from(size) - 1) != 0 {
            return;
        }
        if offset & 4 != 0 {
            data <<= 32;
            mask <<= 32;
        }
        let reg = offset & !7;
        match reg {
            reg::CONFIG => {
                let counter = self.counter(now);
                let old = self.config;
                update_register(&mut self.config, data, mask);
                self.config &= !CNF_LEG_RT;
                if (old ^ self.config) & CNF_ENABLE != 0 {
                    if self.enabled() {
                        self.start_counting(now);
                    } else {
                        self.stop_counting(counter, now, bus);
                    }
                }
            }
            reg::ISR => {
                let clear = self.isr & data;
                for n in (0..VHPET_NUM_TIMERS).filter(|n| clear & (1 << n) != 0) {
                    let pin = self.pin(n);
                    self.clear_isr(n, pin, bus);
                }
            }
            reg::MAIN_COUNTER => {
                let mut v = u64::from(self.counter(now));
                update_register(&mut v, data, mask);
                self.countbase = v as u32;
                if self.enabled() {
                    self.start_counting(now);
                }
            }
            0x100..=0x1ff => {
                let n = ((reg - 0x100) / 0x20) as usize;
                match reg - reg::timer_cap_cnf(n) {
                    0x00 => self.update_config(n, data, mask, bus),
                    0x08 => self.write_comparator(n, data, mask, now),
                    0x10 => update_register(&mut self.timers[n].msireg, data, mask),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn write_comparator(&mut self, n: usize, data: u64, mask: u64, now: Instant) {
        let periodic = self.periodic(n);
        let t = &mut self.timers[n];
        let (old_val, old_rate) = (t.compval, t.comprate);
        if periodic {
            let mut v = u64::from(t.comprate);
            update_register(&mut v, data, mask);
            t.comprate = v as u32;
            if t.cap_config & TCNF_VAL_SET != 0 {
                t.compval = v as u32;
            }
        } else {
            debug_assert_eq!(t.comprate, 0, "one-shot timer {n} with a period");
            let mut v = u64::from(t.compval);
            update_register(&mut v, data, mask);
            t.compval = v as u32;
        }
        t.cap_config &= !TCNF_VAL_SET;
        let changed = t.compval != old_val || t.comprate != old_rate;
        if changed && self.enabled() {
            let counter = self.counter(now);
            self.start_timer(n, counter, now, true);
        }
    }

    fn read(&self, offset: u64, size: u8, now: Instant) -> u64 {
        if (size != 4 && size != 8) || offset & (u64::from(size) - 1) != 0 {
            return 0;
        }
        let reg = offset & !7;
        let data = match reg {
            reg::CAPABILITIES => CAPABILITIES,
            reg::CONFIG => self.config,
            reg::ISR => self.isr,
            reg::MAIN_COUNTER => u64::from(self.counter(now)),
            0x100..=0x1ff => {
                let n = ((reg - 0x100) / 0x20) as usize;
                let t = &self.timers[n];
                match reg - reg::timer_cap_cnf(n) {
                    0x00 => t.cap_config,
                    0x08 => u64::from(t.compval),
                    0x10 => t.msireg,
                    _ => 0,
                }
            }
            _ => 0,
        };
        match (size, offset & 4 != 0) {
            (4, true) => data >> 32,
            (4, false) => data & 0xffff_ffff,
            _ => data,
        }
    }

    /// The callouts due at `now` (`vhpet_handler`): re-arm, then interrupt.
    fn fire_due(&mut self, now: Instant, bus: &dyn HpetBus) {
        for n in 0..VHPET_NUM_TIMERS {
            if self.timers[n].deadline.is_some_and(|d| d <= now) && self.enabled() {
                let counter = self.counter(now);
                self.start_timer(n, counter, now, false);
                self.timer_interrupt(n, bus);
            }
        }
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        self.timers.iter().filter_map(|t| t.deadline).min()
    }
}

impl Vhpet {
    /// `vhpet_init`: counter stopped at 0, every timer one-shot, edge, off,
    /// routed nowhere, comparator 0xffffffff.
    pub fn new(now: Instant) -> Self {
        Vhpet { state: Mutex::new(HpetState::new(now)), callout: PublishedCallout::new(now) }
    }

    /// Runs `f` on the state, then publishes the earliest callout.
    fn with<T>(&self, f: impl FnOnce(&mut HpetState) -> T) -> T {
        let mut st = self.state.lock();
        let v = f(&mut st);
        self.callout.publish(st.earliest_deadline());
        v
    }

    /// The published callout: the earliest timer, and whether it moved
    /// earlier.
    pub fn callout(&self) -> &PublishedCallout {
        &self.callout
    }

    /// A guest read of `size` bytes at `offset` into the registers: 4- or
    /// 8-byte aligned accesses; anything else reads 0.
    pub fn mmio_read(&self, offset: u64, size: u8, now: Instant) -> u64 {
        self.state.lock().read(offset, size, now)
    }

    /// A guest write; other sizes and misaligned writes are ignored.
    pub fn mmio_write(&self, offset: u64, size: u8, value: u64, now: Instant, bus: &dyn HpetBus) {
        self.with(|st| st.write(offset, size, value, now, bus));
    }

    /// Fires the callouts due at `now` (one atomic load when none is).
    pub fn poll(&self, now: Instant, bus: &dyn HpetBus) {
        if self.callout.due(now) {
            self.with(|st| st.fire_due(now, bus));
        }
    }

    /// VM_REINIT: a new HPET (FreeBSD frees and re-creates it).
    pub fn reset(&self, now: Instant) {
        self.with(|st| *st = HpetState::new(now));
    }
}
