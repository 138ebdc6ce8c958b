//! The virtual MC146818 real-time clock and its CMOS RAM (FreeBSD 14
//! `vrtc.c`): 128 bytes (time, alarm, registers A-D, NVRAM, century),
//! guest ports 0x70 (index) and 0x71 (data), the VM_RTC_* ioctls, and the
//! periodic, alarm and update-ended interrupts on IRQ 8.
//!
//! # Lock order
//!
//! One mutex, `Vrtc::state`, a leaf: nothing else is locked under it.
//! FreeBSD pulses IRQ 8 with its vRTC lock held; here an operation only
//! records that IRQF went from 0 to 1, and the caller pulses the IOAPIC
//! pin after the mutex is released (see `Vm::rtc_*`), so interrupt
//! delivery (vioapic, vlapic, vCPU notification) never nests inside it.
//!
//! # Time
//!
//! FreeBSD drives the periodic interrupt (and the 1 Hz alarm/update check)
//! with a callout. Here the callout is a deadline that the run loop checks
//! on every guest entry and that bounds every HLT sleep (sleepers are
//! woken to look again when it moves earlier), so it fires when some vCPU
//! enters the guest or is asleep at the deadline: a VM with no vCPU in
//! VM_RUN sees no RTC interrupts, as no guest could take them.
//! Every function takes the current time, so tests can drive it.
//!
//! # Where this differs from FreeBSD
//!
//! - VM_RTC_SETTIME refuses (EINVAL) times before 1970 other than -1 and
//!   times past 9999-12-31, which FreeBSD takes and cannot display.
//! - A time jump with the alarm interrupt enabled checks at most the last
//!   day of the jump for an alarm match (every time of day occurs in it);
//!   FreeBSD steps through every second, and forever when time goes back.
//! - The callout is re-armed after any operation that changes the rate it
//!   needs: so VM_RTC_SETTIME making a broken time valid with UIE or AIE
//!   set starts the 1 Hz interrupts, where FreeBSD waits for the guest's
//!   next register A or B write.
//!
//! IRQ 8 is pulsed on the 8259 and on IOAPIC pin 8, as FreeBSD's.

pub mod time;
#[cfg(all(test, not(loom)))]
mod tests;

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::callout::PublishedCallout;
use crate::sync::Mutex;

/// The RTC's bytes, indexed by CMOS offset (FreeBSD `struct rtcdev`).
pub type RtcRegs = [u8; RTC_SIZE];

/// Bytes of CMOS behind port 0x71.
pub const RTC_SIZE: usize = 128;
/// The time of an RTC whose date/time bytes do not hold a valid time, or
/// whose updates are halted (FreeBSD `VRTC_BROKEN_TIME`).
pub const VRTC_BROKEN_TIME: i64 = -1;
/// The ISA IRQ (and IOAPIC pin) of the RTC.
pub const RTC_IRQ: i32 = 8;
/// Index port; the data port is the next one.
pub const IO_RTC: u16 = 0x70;

/// CMOS offsets.
pub mod reg {
    pub const SEC: usize = 0;
    pub const ALARM_SEC: usize = 1;
    pub const MIN: usize = 2;
    pub const ALARM_MIN: usize = 3;
    pub const HOUR: usize = 4;
    pub const ALARM_HOUR: usize = 5;
    pub const DAY_OF_WEEK: usize = 6;
    pub const DAY_OF_MONTH: usize = 7;
    pub const MONTH: usize = 8;
    pub const YEAR: usize = 9;
    pub const A: usize = 10;
    pub const B: usize = 11;
    pub const C: usize = 12;
    pub const D: usize = 13;
    /// First NVRAM byte (the first that VM_RTC_WRITE may change).
    pub const NVRAM: usize = 14;
    pub const CENTURY: usize = 0x32;
}

/// Register A: update in progress (never stored, reads 0 as in FreeBSD).
pub const REG_A_TUP: u8 = 0x80;
const REG_A_DIVIDER: u8 = 0x70;
/// Register A divider value of a running 32.768 kHz time base.
pub const REG_A_DIVIDER_ON: u8 = 0x20;
pub const REG_B_24HR: u8 = 0x02;
/// Register B: binary (not BCD) date/time bytes.
pub const REG_B_BIN: u8 = 0x04;
pub const REG_B_SQWE: u8 = 0x08;
pub const REG_B_UIE: u8 = 0x10;
pub const REG_B_AIE: u8 = 0x20;
pub const REG_B_PIE: u8 = 0x40;
/// Register B SET bit: updates halted while the guest sets the time.
pub const REG_B_HALT: u8 = 0x80;
pub const REG_C_UF: u8 = 0x10;
pub const REG_C_AF: u8 = 0x20;
pub const REG_C_PF: u8 = 0x40;
pub const REG_C_IRQF: u8 = 0x80;
/// Register D: valid RAM and time (battery good).
pub const REG_D_VRT: u8 = 0x80;

/// FreeBSD's `hw.vmm.vrtc.flag_broken_time` default: a guest that leaves
/// an invalid date/time when it clears SET (or writes the century) makes
/// its port access fail, so VM_RUN returns EIO.
const FLAG_BROKEN_TIME: bool = true;

/// An alarm byte at or above this matches any value ("don't care").
const ALARM_DONT_CARE: u8 = 0xc0;

/// Periodic interrupt rate for register A's rate select 0-15, in Hz.
const PERIODIC_HZ: [u32; 16] = [0, 256, 128, 8192, 4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2];

/// What the mutex protects.
#[derive(Debug)]
struct RtcState {
    /// The index port's value (0-127).
    addr: u8,
    regs: RtcRegs,
    /// Host time at which the RTC showed `base_rtctime` (whole seconds are
    /// carried forward, so the sub-second phase is kept).
    base_uptime: Instant,
    base_rtctime: i64,
    /// The callout's period (`vrtc_freq`), `None` when stopped...
    period: Option<Duration>,
    /// ...and when it fires next.
    deadline: Option<Instant>,
    /// IRQF went from 0 to 1 during this operation: IRQ 8 must be pulsed.
    pulse: bool,
}

/// The RTC of one VM.
#[derive(Debug)]
pub struct Vrtc {
    /// vRTC mutex. Protects: the CMOS bytes, the index register, the time
    /// base and the callout. Rank: a leaf (see the module doc).
    state: Mutex<RtcState>,
    /// The callout's deadline, published under the mutex.
    callout: PublishedCallout,
}

fn divider_enabled(reg_a: u8) -> bool {
    reg_a & REG_A_DIVIDER == REG_A_DIVIDER_ON
}

impl RtcState {
    fn halted(&self) -> bool {
        self.regs[reg::B] & REG_B_HALT != 0
    }

    fn update_enabled(&self) -> bool {
        divider_enabled(self.regs[reg::A]) && !self.halted() && self.base_rtctime != VRTC_BROKEN_TIME
    }

    fn enabled(&self, bit: u8) -> bool {
        self.regs[reg::B] & bit != 0
    }

    /// `vrtc_curtime`: the time now, and the host time of its last whole
    /// second.
    fn curtime(&self, now: Instant) -> (i64, Instant) {
        if !self.update_enabled() {
            return (self.base_rtctime, self.base_uptime);
        }
        let secs = now.saturating_duration_since(self.base_uptime).as_secs();
        let t = self.base_rtctime.saturating_add(secs as i64);
        (t, self.base_uptime + Duration::from_secs(secs))
    }

    /// `vrtc_set_reg_c`: stores the flags, recomputes IRQF and notes a
    /// 0 -> 1 edge of it (the IRQ 8 pulse).
    fn set_reg_c(&mut self, flags: u8) {
        let flags = flags & (REG_C_UF | REG_C_AF | REG_C_PF);
        let irqf = (self.enabled(REG_B_AIE) && flags & REG_C_AF != 0)
            || (self.enabled(REG_B_PIE) && flags & REG_C_PF != 0)
            || (self.enabled(REG_B_UIE) && flags & REG_C_UF != 0);
        let was = self.regs[reg::C] & REG_C_IRQF != 0;
        self.regs[reg::C] = flags | if irqf { REG_C_IRQF } else { 0 };
        if irqf && !was {
            self.pulse = true;
        }
    }

    fn alarm_matches(&self, alarm: [u8; 3]) -> bool {
        let now = [self.regs[reg::SEC], self.regs[reg::MIN], self.regs[reg::HOUR]];
        alarm.iter().zip(now).all(|(a, v)| *a >= ALARM_DONT_CARE || *a == v)
    }

    /// `vrtc_time_update`: the RTC now shows `newtime` as of host time
    /// `newbase`; raises the alarm flag if an alarm time was passed and
    /// the update-ended flag. Busy while updates are halted.
    fn time_update(&mut self, newtime: i64, newbase: Instant) -> Result<()> {
        let alarm = [self.regs[reg::ALARM_SEC], self.regs[reg::ALARM_MIN], self.regs[reg::ALARM_HOUR]];
        let oldtime = self.base_rtctime;
        self.base_uptime = newbase;
        if newtime == oldtime {
            return Ok(());
        }
        if newtime == VRTC_BROKEN_TIME {
            self.base_rtctime = VRTC_BROKEN_TIME;
            return Ok(());
        }
        if self.halted() {
            return Err(Error::Busy);
        }
        if self.enabled(REG_B_AIE) {
            // Every second passed (at most the last day of it, in which
            // every time of day occurs), or just the new time after a
            // broken time or a step back.
            let first = if oldtime != VRTC_BROKEN_TIME && newtime > oldtime {
                (oldtime + 1).max(newtime - 86_399)
            } else {
                newtime
            };
            for t in first..=newtime {
                time::secs_to_rtc(&mut self.regs, t, false);
                if self.alarm_matches(alarm) {
                    self.set_reg_c(self.regs[reg::C] | REG_C_AF);
                    break;
                }
            }
            // The bytes show the new time, as after FreeBSD's walk: a
            // time made broken next leaves them on view.
            time::secs_to_rtc(&mut self.regs, newtime, false);
        }
        self.base_rtctime = newtime;
        if self.enabled(REG_B_UIE) {
            self.set_reg_c(self.regs[reg::C] | REG_C_UF);
        }
        Ok(())
    }

    /// `vrtc_freq`: the callout period the enabled interrupts need.
    fn freq(&self) -> Option<Duration> {
        if self.enabled(REG_B_PIE) && divider_enabled(self.regs[reg::A]) {
            let hz = PERIODIC_HZ[usize::from(self.regs[reg::A] & 0xf)];
            return (hz != 0).then(|| Duration::from_nanos(1_000_000_000 / u64::from(hz)));
        }
        let once_a_second = self.enabled(REG_B_AIE) || self.enabled(REG_B_UIE);
        (once_a_second && self.update_enabled()).then_some(Duration::from_secs(1))
    }

    /// `vrtc_callout_reset` when the needed period changed.
    fn rearm(&mut self, now: Instant) {
        let period = self.freq();
        if period != self.period {
            self.period = period;
            self.deadline = period.map(|p| now + p);
        }
    }

    /// `vrtc_set_reg_a`: the update-in-progress bit is not stored; a
    /// divider leaving reset restarts the second from now.
    fn set_reg_a(&mut self, val: u8, now: Instant) {
        let val = val & !REG_A_TUP;
        if !divider_enabled(self.regs[reg::A]) && divider_enabled(val) {
            self.base_uptime = now;
        }
        self.regs[reg::A] = val;
    }

    /// `vrtc_set_reg_b`. Setting SET freezes the date/time bytes at the
    /// current time and clears UIE; clearing it starts the clock from what
    /// the guest wrote (Io if that is not a valid time).
    fn set_reg_b(&mut self, val: u8, now: Instant) -> Result<()> {
        let old = self.regs[reg::B];
        self.regs[reg::B] = val;
        let changed = old ^ val;
        if changed & REG_B_HALT != 0 {
            let (rtctime, basetime) = if val & REG_B_HALT == 0 {
                let t = time::rtc_to_secs(&self.regs);
                if t == VRTC_BROKEN_TIME && FLAG_BROKEN_TIME {
                    return Err(Error::Io);
                }
                (t, now)
            } else {
                let (t, base) = self.curtime(now);
                time::secs_to_rtc(&mut self.regs, t, true);
                self.regs[reg::B] &= !REG_B_UIE;
                (VRTC_BROKEN_TIME, base)
            };
            self.time_update(rtctime, basetime)?;
        }
        if changed & (REG_B_PIE | REG_B_AIE | REG_B_UIE) != 0 {
            self.set_reg_c(self.regs[reg::C]);
        }
        Ok(())
    }

    /// Brings the time and flags up to `now`, and the date/time bytes if
    /// `offset` is one of them (the first step of every data-port access).
    fn refresh(&mut self, offset: usize, now: Instant) {
        let (t, base) = self.curtime(now);
        // Only fails while halted, when `t` is the unchanged base time.
        let _ = self.time_update(t, base);
        if offset < 10 || offset == reg::CENTURY {
            time::secs_to_rtc(&mut self.regs, t, false);
        }
    }

    /// `vrtc_data_handler`, read.
    fn data_in(&mut self, now: Instant) -> u8 {
        let offset = usize::from(self.addr);
        self.refresh(offset, now);
        if offset == reg::C {
            let v = self.regs[reg::C];
            self.set_reg_c(0);
            v
        } else {
            self.regs[offset]
        }
    }

    /// `vrtc_data_handler`, write.
    fn data_out(&mut self, val: u8, now: Instant) -> Result<()> {
        let offset = usize::from(self.addr);
        self.refresh(offset, now);
        match offset {
            reg::A => self.set_reg_a(val, now),
            reg::B => self.set_reg_b(val, now)?,
            reg::C | reg::D => {} // read-only
            reg::SEC => self.regs[offset] = val & 0x7f,
            _ => self.regs[offset] = val,
        }
        // Some guests (OpenBSD) write the century outside SET: restart
        // the clock from the bytes.
        if offset == reg::CENTURY && !self.halted() {
            let t = time::rtc_to_secs(&self.regs);
            self.time_update(t, now)?;
            if t == VRTC_BROKEN_TIME && FLAG_BROKEN_TIME {
                return Err(Error::Io);
            }
        }
        Ok(())
    }

    /// The callout: the periodic flag, the 1 Hz alarm/update check. The
    /// next one is a period after the deadline that fell due, not after
    /// `now`: FreeBSD re-arms from now, which costs a kernel callout's
    /// microseconds a period, but a thread's wake-up is late by tens of
    /// them and would slow an 8192 Hz rate by a third. Whole periods
    /// missed are skipped, not caught up (as the other timers).
    fn callout(&mut self, now: Instant) {
        if self.enabled(REG_B_PIE) {
            self.set_reg_c(self.regs[reg::C] | REG_C_PF);
        }
        if self.enabled(REG_B_AIE) || self.enabled(REG_B_UIE) {
            let (t, base) = self.curtime(now);
            let _ = self.time_update(t, base);
        }
        let period = self.freq();
        self.deadline = match (period, self.deadline) {
            (Some(p), Some(due)) if period == self.period && due + p > now => Some(due + p),
            (Some(p), _) => Some(now + p),
            (None, _) => None,
        };
        self.period = period;
    }
}

/// What an RTC operation asks of its caller besides its result.
#[must_use = "IRQ 8 must be pulsed when `pulse` is set"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome<T> {
    pub value: T,
    /// Register C's IRQF went from 0 to 1: pulse IRQ 8.
    pub pulse: bool,
}

impl Vrtc {
    /// `vrtc_init`: 00:00:00 1 January 1970, 24-hour BCD, divider running,
    /// no interrupts enabled, NVRAM zero, index at register D.
    pub fn new(now: Instant) -> Self {
        let mut regs = [0u8; RTC_SIZE];
        regs[reg::A] = REG_A_DIVIDER_ON;
        regs[reg::B] = REG_B_24HR;
        regs[reg::D] = REG_D_VRT;
        let mut st = RtcState {
            addr: reg::D as u8,
            regs,
            base_uptime: now,
            base_rtctime: VRTC_BROKEN_TIME,
            period: None,
            deadline: None,
            pulse: false,
        };
        let _ = st.time_update(0, now);
        time::secs_to_rtc(&mut st.regs, 0, false);
        Vrtc { state: Mutex::new(st), callout: PublishedCallout::new(now) }
    }

    /// Runs `f` on the state at `now`, then re-arms the callout if the
    /// period changed and publishes its deadline.
    fn with<T>(&self, now: Instant, f: impl FnOnce(&mut RtcState) -> T) -> Outcome<T> {
        let mut st = self.state.lock();
        st.pulse = false;
        let value = f(&mut st);
        st.rearm(now);
        self.callout.publish(st.deadline);
        Outcome { value, pulse: st.pulse }
    }

    /// VM_RTC_WRITE (`vrtc_nvram_write`): NVRAM only; the date/time bytes,
    /// registers A-D and the century are EINVAL, as is an offset past 127.
    pub fn nvram_write(&self, offset: i32, value: u8, now: Instant) -> Result<()> {
        let off = usize::try_from(offset).map_err(|_| Error::Inval)?;
        if off < reg::NVRAM || off == reg::CENTURY || off >= RTC_SIZE {
            return Err(Error::Inval);
        }
        let out = self.with(now, |st| st.regs[off] = value);
        debug_assert!(!out.pulse);
        Ok(())
    }

    /// VM_RTC_READ (`vrtc_nvram_read`): any of the 128 bytes, the
    /// date/time bytes brought up to now first. Reading register C here
    /// does not clear it.
    pub fn nvram_read(&self, offset: i32, now: Instant) -> Result<u8> {
        let off = usize::try_from(offset).ok().filter(|o| *o < RTC_SIZE).ok_or(Error::Inval)?;
        let out = self.with(now, |st| {
            if off < 10 || off == reg::CENTURY {
                let (t, _) = st.curtime(now);
                time::secs_to_rtc(&mut st.regs, t, false);
            }
            st.regs[off]
        });
        Ok(out.value)
    }

    /// VM_RTC_SETTIME (`vrtc_set_time`): Busy while the guest has updates
    /// halted; -1 marks the time broken (the clock stops).
    pub fn set_time(&self, secs: i64, now: Instant) -> Outcome<Result<()>> {
        if secs != VRTC_BROKEN_TIME && !(0..=time::MAX_RTC_SECS).contains(&secs) {
            return Outcome { value: Err(Error::Inval), pulse: false };
        }
        self.with(now, |st| st.time_update(secs, now))
    }

    /// VM_RTC_GETTIME (`vrtc_get_time`): -1 while halted or broken.
    pub fn get_time(&self, now: Instant) -> i64 {
        self.with(now, |st| st.curtime(now).0).value
    }

    /// A guest IN from port 0x70 (reads 0xff) or 0x71 (the indexed byte;
    /// register C is cleared by the read). Io for an access that is not
    /// one byte or a port that is not the RTC's.
    pub fn port_in(&self, port: u16, bytes: u8, now: Instant) -> Outcome<Result<u8>> {
        match (port, bytes) {
            (IO_RTC, 1) => Outcome { value: Ok(0xff), pulse: false },
            (p, 1) if p == IO_RTC + 1 => self.with(now, |st| Ok(st.data_in(now))),
            _ => Outcome { value: Err(Error::Io), pulse: false },
        }
    }

    /// A guest OUT to port 0x70 (selects a byte; bit 7, the NMI mask, is
    /// dropped) or 0x71 (writes it). Io as for [`Vrtc::port_in`], and for
    /// an invalid date/time left when SET is cleared or the century is
    /// written (FreeBSD's default `flag_broken_time`).
    pub fn port_out(&self, port: u16, bytes: u8, val: u8, now: Instant) -> Outcome<Result<()>> {
        match (port, bytes) {
            (IO_RTC, 1) => self.with(now, |st| {
                st.addr = val & 0x7f;
                Ok(())
            }),
            (p, 1) if p == IO_RTC + 1 => self.with(now, |st| st.data_out(val, now)),
            _ => Outcome { value: Err(Error::Io), pulse: false },
        }
    }

    /// The published callout: when it fires next, and whether it moved
    /// earlier.
    pub fn callout(&self) -> &PublishedCallout {
        &self.callout
    }

    /// Fires the callout if its deadline has passed (cheap otherwise: one
    /// atomic load).
    pub fn poll(&self, now: Instant) -> Outcome<()> {
        if !self.callout.due(now) {
            return Outcome { value: (), pulse: false };
        }
        self.with(now, |st| {
            if st.deadline.is_some_and(|d| d <= now) {
                st.callout(now);
            }
        })
    }

    /// `vrtc_reset` (VM_REINIT): interrupt enables and the square wave
    /// off, flags clear, callout stopped; time, format, SET, registers A
    /// and D, the index and the NVRAM stay.
    pub fn reset(&self, now: Instant) {
        let out = self.with(now, |st| {
            let b = st.regs[reg::B] & !(REG_B_PIE | REG_B_AIE | REG_B_UIE | REG_B_SQWE);
            // SET is unchanged, so this cannot fail.
            let _ = st.set_reg_b(b, now);
            st.set_reg_c(0);
        });
        debug_assert!(!out.pulse);
    }
}
