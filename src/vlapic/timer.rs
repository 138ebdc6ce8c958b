//! The local APIC timer on the host monotonic clock.
//!
//! There is no host timer thread: expiry is lazy. The timer keeps an
//! absolute deadline; whoever runs the vCPU polls it (`poll`) before
//! injecting interrupts, and a halted vCPU sleeps no later than the
//! deadline. Every operation takes `now` from its caller so tests can
//! drive time explicitly.

use std::time::{Duration, Instant};

use super::regs::*;
use super::state::LapicState;

/// Timer input clock before the divider: FreeBSD's `VLAPIC_BUS_FREQ`
/// (128 MiHz; a power of two keeps the arithmetic exact).
pub const BUS_FREQ: u64 = 128 * 1024 * 1024;

/// Timer registers and schedule. Lives inside the vlapic state, so it is
/// protected by the vlapic mutex.
#[derive(Debug, Clone, Default)]
pub struct Timer {
    /// Initial count register (0x380).
    pub icr: u32,
    /// Divide configuration register (0x3E0).
    pub dcr: u32,
    /// Divisor in effect: as FreeBSD, a DCR write changes the rate used
    /// for the current count and the next reload, not the running deadline.
    divisor: u32,
    /// `icr` ticks at the current rate.
    period: Duration,
    /// When the current countdown reaches zero; `None` when stopped.
    deadline: Option<Instant>,
    /// Expirations so far (a statistic).
    pub fired: u64,
}

/// DCR bits 0, 1 and 3 select divide-by 2, 4, .., 128, or 1 (0b1011).
pub fn divisor(dcr: u32) -> u32 {
    let code = (dcr & 0x3) | ((dcr >> 1) & 0x4);
    if code == 7 {
        1
    } else {
        2 << code
    }
}

fn ticks_to_duration(ticks: u64, divisor: u32) -> Duration {
    let ns = u128::from(ticks) * u128::from(divisor) * 1_000_000_000 / u128::from(BUS_FREQ);
    Duration::from_nanos(ns as u64)
}

fn duration_to_ticks(d: Duration, divisor: u32) -> u64 {
    let t = d.as_nanos() * u128::from(BUS_FREQ) / (u128::from(divisor) * 1_000_000_000);
    t.min(u128::from(u32::MAX)) as u64
}

impl Timer {
    /// The stopped timer with DCR = 0 (divide by 2).
    pub fn new() -> Self {
        Timer { divisor: divisor(0), ..Timer::default() }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl LapicState {
    fn timer_periodic(&self) -> bool {
        self.lvt[lvt::TIMER] & LVTT_PERIODIC != 0
    }

    /// DCR write: new rate for the current count and later reloads.
    pub(super) fn timer_dcr_write(&mut self, dcr: u32) {
        let t = &mut self.timer;
        t.dcr = dcr;
        t.divisor = divisor(dcr);
        t.period = ticks_to_duration(u64::from(t.icr), t.divisor);
    }

    /// Initial-count write: (re)start the countdown, or stop it with 0.
    pub(super) fn timer_icr_write(&mut self, icr: u32, now: Instant) {
        self.timer.icr = icr;
        self.timer_restart(now);
    }

    /// Restart from the initial count (also used when software-enabling
    /// the APIC with a periodic timer).
    pub(super) fn timer_restart(&mut self, now: Instant) {
        let t = &mut self.timer;
        t.period = ticks_to_duration(u64::from(t.icr), t.divisor);
        t.deadline = (t.icr != 0).then(|| now + t.period);
    }

    pub(super) fn timer_stop(&mut self) {
        self.timer.deadline = None;
    }

    /// Current count: the ticks left until the deadline, 0 when stopped or
    /// expired (never more than the initial count).
    pub(super) fn timer_ccr(&self, now: Instant) -> u32 {
        let t = &self.timer;
        match t.deadline {
            Some(d) if d > now => {
                duration_to_ticks(d - now, t.divisor).min(u64::from(t.icr)) as u32
            }
            _ => 0,
        }
    }

    /// Fires the timer if its deadline has passed: the timer LVT is raised
    /// (vector into IRR, or NMI/ExtINT) and a periodic timer is re-armed.
    /// A periodic timer that fell a whole period behind restarts from
    /// `now` instead of catching up (as FreeBSD). Returns whether the vCPU
    /// needs a notification.
    pub(super) fn timer_poll(&mut self, now: Instant) -> bool {
        let Some(due) = self.timer.deadline else {
            return false;
        };
        if now < due {
            return false;
        }
        self.timer.fired += 1;
        let notify = self.fire_lvt(lvt::TIMER);
        let period = self.timer.period;
        self.timer.deadline = if self.timer_periodic() && !period.is_zero() {
            Some(if now - due >= period { now + period } else { due + period })
        } else {
            None
        };
        notify
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn divide_configuration_encoding() {
        let want =
            [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xA, 128), (0xB, 1)];
        for (dcr, d) in want {
            assert_eq!(divisor(dcr), d, "dcr {dcr:#x}");
        }
        // Bit 2 and the high bits are ignored.
        assert_eq!(divisor(0xFFFF_FFF4), 2);
        assert_eq!(divisor(0xFFFF_FFFB), 1);
    }

    #[test]
    fn tick_conversions_round_trip() {
        // 2^27 ticks at divide-by-1 is one second.
        assert_eq!(ticks_to_duration(BUS_FREQ, 1), Duration::from_secs(1));
        assert_eq!(ticks_to_duration(1000, 128), Duration::from_nanos(953_674));
        assert_eq!(duration_to_ticks(Duration::from_secs(1), 2), BUS_FREQ / 2);
    }
}
