use std::time::{Duration, Instant};

use super::*;

/// A guest's port accesses, with the time in the test's hands.
struct Guest<'a> {
    rtc: &'a Vrtc,
    now: Instant,
    pulses: u32,
}

impl Guest<'_> {
    fn read(&mut self, offset: u8) -> u8 {
        self.out(IO_RTC, offset).unwrap();
        let o = self.rtc.port_in(IO_RTC + 1, 1, self.now);
        self.pulses += u32::from(o.pulse);
        o.value.unwrap()
    }
    fn write(&mut self, offset: u8, val: u8) -> Result<()> {
        self.out(IO_RTC, offset).unwrap();
        self.out(IO_RTC + 1, val)
    }
    fn out(&mut self, port: u16, val: u8) -> Result<()> {
        let o = self.rtc.port_out(port, 1, val, self.now);
        self.pulses += u32::from(o.pulse);
        o.value
    }
    fn advance(&mut self, d: Duration) {
        self.now += d;
        let o = self.rtc.poll(self.now);
        self.pulses += u32::from(o.pulse);
    }
    /// sec, min, hour, dow, mday, month, year, century
    fn clock(&mut self) -> [u8; 8] {
        [0, 2, 4, 6, 7, 8, 9, 0x32].map(|o| self.read(o))
    }
}

fn guest(rtc: &Vrtc, now: Instant) -> Guest<'_> {
    Guest { rtc, now, pulses: 0 }
}

/// 2026-12-01 19:24:27 UTC, a Tuesday.
const T: i64 = 1_796_153_067;

#[test]
fn starts_at_the_epoch_in_24_hour_bcd() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    let mut g = guest(&rtc, now);
    assert_eq!(g.clock(), [0, 0, 0, 5, 1, 1, 0x70, 0x19], "Thursday 1 January 1970");
    assert_eq!([g.read(10), g.read(11), g.read(12), g.read(13)], [0x20, 0x02, 0, 0x80]);
    assert_eq!(rtc.get_time(now), 0);
    assert_eq!(rtc.callout().get(), None);
}

#[test]
fn time_runs_from_settime_in_bcd_binary_and_12_hour_formats() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    assert_eq!(rtc.set_time(T, now).value, Ok(()));
    let mut g = guest(&rtc, now + Duration::from_millis(1500));
    assert_eq!(rtc.get_time(g.now), T + 1);
    assert_eq!(g.clock(), [0x28, 0x24, 0x19, 3, 0x01, 0x12, 0x26, 0x20]);
    // Binary, 12-hour: 7 PM.
    g.write(11, REG_B_BIN).unwrap();
    assert_eq!(g.clock(), [28, 24, 0x80 | 7, 3, 1, 12, 26, 20]);
    // BCD 12-hour midnight and noon are 12.
    g.write(11, 0).unwrap();
    assert_eq!(rtc.set_time(T - 19 * 3600 - 24 * 60, g.now).value, Ok(()));
    assert_eq!(g.read(4), 0x12, "00:xx is 12 AM");
    assert_eq!(rtc.set_time(T - 7 * 3600 - 24 * 60, g.now).value, Ok(()));
    assert_eq!(g.read(4), 0x80 | 0x12, "12:xx is 12 PM");
    assert_eq!(rtc.nvram_read(4, g.now), Ok(0x92));
}

#[test]
fn the_guest_sets_the_time_under_set() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    let mut g = guest(&rtc, now);
    g.write(11, REG_B_24HR | REG_B_HALT).unwrap();
    assert_eq!(rtc.get_time(g.now), VRTC_BROKEN_TIME, "halted");
    assert_eq!(rtc.set_time(T, g.now).value, Err(Error::Busy));
    // 2000-02-29 23:59:58 (bit 7 of the seconds is read-only).
    for (o, v) in [(0, 0x80 | 0x58), (2, 0x59), (4, 0x23), (7, 0x29), (8, 0x02), (9, 0x00), (0x32, 0x20)] {
        g.write(o, v).unwrap();
    }
    g.advance(Duration::from_secs(5)); // no time passes while halted
    g.write(11, REG_B_24HR).unwrap();
    assert_eq!(rtc.get_time(g.now), 951_868_798);
    g.advance(Duration::from_secs(3));
    assert_eq!(g.clock(), [0x01, 0x00, 0x00, 4, 0x01, 0x03, 0x00, 0x20], "Wednesday 1 March 2000");
}

#[test]
fn an_invalid_time_left_by_the_guest_is_an_io_error() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    let mut g = guest(&rtc, now);
    g.write(11, REG_B_24HR | REG_B_HALT).unwrap();
    g.write(7, 0x30).unwrap(); // 30 January 1970 is fine...
    g.write(8, 0x02).unwrap(); // ...30 February is not
    assert_eq!(g.write(11, REG_B_24HR), Err(Error::Io));
    assert_eq!(rtc.get_time(g.now), VRTC_BROKEN_TIME);
    // The host can set a good time again.
    assert_eq!(rtc.set_time(T, g.now).value, Ok(()));
    assert_eq!(rtc.get_time(g.now), T);
    // A century before 1970 written outside SET, and BCD garbage.
    assert_eq!(g.write(0x32, 0x18), Err(Error::Io));
    assert_eq!(rtc.set_time(T, g.now).value, Ok(()));
    g.write(11, REG_B_24HR | REG_B_HALT).unwrap();
    g.write(2, 0x5a).unwrap();
    assert_eq!(g.write(11, REG_B_24HR), Err(Error::Io));
}

#[test]
fn rtc_to_secs_rejects_what_freebsd_rejects() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    let mut g = guest(&rtc, now);
    assert_eq!(rtc.set_time(T, now).value, Ok(()));
    g.write(11, REG_B_24HR | REG_B_HALT).unwrap();
    let good = rtc.state.lock().regs;
    assert_eq!(time::rtc_to_secs(&good), T);
    let bad = |o: usize, v: u8| {
        let mut r = good;
        r[o] = v;
        time::rtc_to_secs(&r)
    };
    for (o, v) in [(0, 0x60), (2, 0x60), (4, 0x24), (7, 0), (7, 0x32), (8, 0), (8, 0x13), (9, 0xa0), (0x32, 0x19)] {
        assert_eq!(bad(o, v), VRTC_BROKEN_TIME, "offset {o:#x} = {v:#x}");
    }
    // BCD bytes with a low nibble above 9, whose value read as 10 * hi +
    // lo would be in range (0x1a as 20 seconds): refused all the same.
    for (o, v) in [(0, 0x1a), (2, 0x0f), (4, 0x0b), (7, 0x0c), (9, 0x2b)] {
        assert_eq!(bad(o, v), VRTC_BROKEN_TIME, "offset {o:#x} = {v:#x}");
    }
    assert_eq!(bad(6, 0x77), T, "the day of the week is ignored");
    // 12-hour mode: hour 0 and 13 are invalid, 12 AM is midnight.
    let mut r = good;
    r[reg::B] &= !REG_B_24HR;
    r[reg::HOUR] = 0x07 | 0x80;
    assert_eq!(time::rtc_to_secs(&r), T);
    for h in [0x00, 0x13, 0x80] {
        r[reg::HOUR] = h;
        assert_eq!(time::rtc_to_secs(&r), VRTC_BROKEN_TIME, "12-hour byte {h:#x}");
    }
    r[reg::HOUR] = 0x12;
    assert_eq!(time::rtc_to_secs(&r), T - 19 * 3600);
}

#[test]
fn nvram_ioctls_guard_the_clock_bytes() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    for off in [-1, 0, 9, 10, 11, 12, 13, 0x32, 128, i32::MAX, i32::MIN] {
        assert_eq!(rtc.nvram_write(off, 1, now), Err(Error::Inval), "write {off}");
    }
    for off in [-1, 128, i32::MIN] {
        assert_eq!(rtc.nvram_read(off, now), Err(Error::Inval), "read {off}");
    }
    for off in [14, 0x31, 0x33, 0x34, 0x5b, 127] {
        rtc.nvram_write(off, off as u8 ^ 0x5a, now).unwrap();
        assert_eq!(rtc.nvram_read(off, now), Ok(off as u8 ^ 0x5a));
    }
    let mut g = guest(&rtc, now);
    assert_eq!(g.read(0x34), 0x34 ^ 0x5a, "the guest sees what the host wrote");
    g.write(0x35, 0x77).unwrap();
    assert_eq!(rtc.nvram_read(0x35, now), Ok(0x77));
    assert_eq!(rtc.set_time(-2, now).value, Err(Error::Inval));
    assert_eq!(rtc.set_time(time::MAX_RTC_SECS + 1, now).value, Err(Error::Inval));
    assert_eq!(rtc.set_time(time::MAX_RTC_SECS, now).value, Ok(()));
    assert_eq!(rtc.nvram_read(0x32, now), Ok(0x99));
}

#[test]
fn ports_take_single_bytes_only() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    assert_eq!(rtc.port_in(IO_RTC, 1, now).value, Ok(0xff));
    for bytes in [2, 4] {
        assert_eq!(rtc.port_in(IO_RTC, bytes, now).value, Err(Error::Io));
        assert_eq!(rtc.port_in(IO_RTC + 1, bytes, now).value, Err(Error::Io));
        assert_eq!(rtc.port_out(IO_RTC + 1, bytes, 0, now).value, Err(Error::Io));
    }
    assert_eq!(rtc.port_out(0x72, 1, 0, now).value, Err(Error::Io));
    let mut g = guest(&rtc, now);
    // The index drops the NMI-mask bit; C and D are read-only.
    g.write(0x80 | 0x20, 0xab).unwrap();
    assert_eq!(g.read(0x20), 0xab);
    g.write(12, 0xff).unwrap();
    g.write(13, 0).unwrap();
    assert_eq!([g.read(12), g.read(13)], [0, 0x80]);
    // Register A never stores update-in-progress.
    g.write(10, 0xa6).unwrap();
    assert_eq!(g.read(10), 0x26);
}

#[test]
fn periodic_interrupt_pulses_once_until_register_c_is_read() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    let mut g = guest(&rtc, now);
    g.write(10, REG_A_DIVIDER_ON | 6).unwrap(); // 1024 Hz
    assert_eq!(rtc.callout().get(), None, "PIE off: no callout");
    g.write(11, REG_B_24HR | REG_B_PIE).unwrap();
    let period = Duration::from_nanos(976_562);
    assert_eq!(rtc.callout().get(), Some(g.now + period));
    g.advance(period / 2);
    assert_eq!(g.pulses, 0);
    g.advance(period);
    assert_eq!(g.pulses, 1);
    g.advance(period * 5);
    assert_eq!(g.pulses, 1, "IRQF stays up: no new edge");
    assert_eq!(g.read(12), REG_C_IRQF | REG_C_PF);
    assert_eq!(g.read(12), 0, "cleared by the read");
    g.advance(period);
    assert_eq!(g.pulses, 2);
    // Rate 0 or a stopped divider: no periodic interrupt.
    g.write(10, REG_A_DIVIDER_ON).unwrap();
    assert_eq!(rtc.callout().get(), None);
    g.write(10, 0x66).unwrap();
    assert_eq!(rtc.callout().get(), None);
}

/// The periodic callout keeps its schedule: a late poll does not push
/// the next deadline back by its lateness (at 8192 Hz a thread's usual
/// wake-up delay would cost a third of the rate); whole periods missed
/// are skipped, not caught up.
#[test]
fn the_periodic_callout_keeps_its_schedule() {
    let t0 = Instant::now();
    let rtc = Vrtc::new(t0);
    let mut g = guest(&rtc, t0);
    g.write(10, REG_A_DIVIDER_ON | 3).unwrap(); // 8192 Hz
    g.write(11, REG_B_24HR | REG_B_PIE).unwrap();
    let p = Duration::from_nanos(122_070);
    assert_eq!(rtc.callout().get(), Some(t0 + p));
    g.advance(p + p / 4);
    assert_eq!(g.pulses, 1);
    assert_eq!(rtc.callout().get(), Some(t0 + 2 * p), "not a quarter period late");
    g.advance(3 * p + p / 2);
    assert_eq!(rtc.callout().get(), Some(g.now + p), "missed periods skipped");
    g.advance(2 * p);
    assert_eq!(rtc.callout().get(), Some(g.now + p), "a period missed exactly is skipped too");
}

#[test]
fn update_and_alarm_interrupts() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    assert_eq!(rtc.set_time(T, now).value, Ok(()));
    let mut g = guest(&rtc, now);
    // Alarm at xx:25:00 (hour don't care), checked once a second.
    g.write(1, 0x00).unwrap();
    g.write(3, 0x25).unwrap();
    g.write(5, 0xc0).unwrap();
    g.write(11, REG_B_24HR | REG_B_AIE).unwrap();
    assert!(rtc.callout().get().is_some());
    for _ in 0..32 {
        g.advance(Duration::from_secs(1));
    }
    assert_eq!(g.pulses, 0, "19:24:59");
    g.advance(Duration::from_secs(1));
    assert_eq!(g.pulses, 1, "19:25:00");
    assert_eq!(g.read(12), REG_C_IRQF | REG_C_AF);
    // A jump of a year passes the alarm time too (checked in bounded time).
    assert!(rtc.set_time(T + 365 * 86_400, g.now).pulse);
    assert_eq!(g.read(12) & REG_C_AF, REG_C_AF);
    // An alarm that can never match (hour 0x25) does not fire.
    g.write(5, 0x25).unwrap();
    assert!(!rtc.set_time(T + 730 * 86_400, g.now).pulse);
    // Update-ended: every second; SET clears UIE.
    g.write(11, REG_B_24HR | REG_B_UIE).unwrap();
    let before = g.pulses;
    g.advance(Duration::from_secs(1));
    assert_eq!(g.pulses, before + 1);
    assert_eq!(g.read(12), REG_C_IRQF | REG_C_UF);
    g.write(11, REG_B_24HR | REG_B_UIE | REG_B_HALT).unwrap();
    assert_eq!(g.read(11), REG_B_24HR | REG_B_HALT);
    assert_eq!(rtc.callout().get(), None);
}

#[test]
fn reset_keeps_time_and_nvram_but_stops_interrupts() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    assert_eq!(rtc.set_time(T, now).value, Ok(()));
    rtc.nvram_write(0x40, 7, now).unwrap();
    let mut g = guest(&rtc, now);
    g.write(10, REG_A_DIVIDER_ON | 3).unwrap();
    g.write(11, REG_B_24HR | REG_B_BIN | REG_B_PIE | REG_B_SQWE).unwrap();
    g.advance(Duration::from_millis(1));
    assert_eq!(g.pulses, 1);
    rtc.reset(g.now);
    assert_eq!(rtc.callout().get(), None);
    assert_eq!(rtc.nvram_read(11, g.now), Ok(REG_B_24HR | REG_B_BIN));
    assert_eq!(rtc.nvram_read(12, g.now), Ok(0));
    assert_eq!(rtc.nvram_read(0x40, g.now), Ok(7));
    assert_eq!(rtc.get_time(g.now), T);
}

#[test]
fn a_stopped_divider_stops_the_clock() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    assert_eq!(rtc.set_time(T, now).value, Ok(()));
    let mut g = guest(&rtc, now);
    g.write(10, 0x70).unwrap(); // divider in reset
    g.advance(Duration::from_secs(10));
    assert_eq!(rtc.get_time(g.now), T);
    g.write(10, REG_A_DIVIDER_ON).unwrap();
    g.advance(Duration::from_millis(999));
    assert_eq!(rtc.get_time(g.now), T, "the second restarts when the divider does");
    g.advance(Duration::from_millis(1));
    assert_eq!(rtc.get_time(g.now), T + 1);
    // Divider bits 011 are not the running 010 either (FreeBSD
    // `divider_enabled` compares all three).
    g.write(10, 0x30).unwrap();
    g.advance(Duration::from_secs(10));
    assert_eq!(rtc.get_time(g.now), T + 1);
}

#[test]
fn a_binary_century_past_99_keeps_the_clock_bytes_running() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    let mut g = guest(&rtc, now);
    // Binary mode, SET: 31 December 12099 23:59:59, then run.
    g.write(11, REG_B_24HR | REG_B_BIN | REG_B_HALT).unwrap();
    for (o, v) in [(0, 59), (2, 59), (4, 23), (7, 31), (8, 12), (9, 99), (0x32, 120)] {
        g.write(o, v).unwrap();
    }
    g.write(11, REG_B_24HR | REG_B_BIN).unwrap();
    g.advance(Duration::from_secs(1));
    assert_eq!(g.clock(), [0, 0, 0, g.read(6), 1, 1, 0, 121], "1 January 12100");
    // In BCD the century shows its last two digits.
    g.write(11, REG_B_24HR).unwrap();
    assert_eq!(g.read(0x32), 0x21);
}

/// Random guest port accesses (garbage dates, SET, formats, rates,
/// interrupt enables), host calls and time steps: nothing panics, the
/// index stays in range, register A never holds update-in-progress,
/// register C's low nibble stays clear, and IRQ 8 is pulsed only when
/// IRQF rises. `VMM_RS_FUZZ_SEED` picks another seed.
#[test]
fn random_accesses_keep_the_registers_sane() {
    let mut rng = crate::test_util::Rng::from_env(0x5254_4300);
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    let mut g = guest(&rtc, now);
    for step in 0..30_000 {
        let irqf_before = rtc.state.lock().regs[reg::C] & REG_C_IRQF != 0;
        let pulses = g.pulses;
        match rng.below(12) {
            0..=2 => {
                let _ = g.out(IO_RTC, rng.pick(&[0, 1, 2, 4, 7, 9, 10, 11, 12, 0x32, 0x40, 0x8b]));
            }
            3..=5 => {
                let any = rng.below(0x100) as u8;
                let v = rng.pick(&[any, 0x26, 0x2f, 0x42, 0x72, 0x82, 0x86, 0x12, 0x59]);
                let _ = g.out(IO_RTC + 1, v);
            }
            6 | 7 => {
                let o = rtc.port_in(IO_RTC + 1, rng.pick(&[1, 1, 2]), g.now);
                g.pulses += u32::from(o.pulse);
            }
            8 => {
                // Mostly near the current time; now and then anywhere (a
                // jump with AIE set checks up to a day of seconds).
                let t = if rng.chance(16) {
                    rng.below(1 << 36) as i64 - 1
                } else {
                    rtc.get_time(g.now).max(0) + rng.below(7200) as i64 - 3600
                };
                let o = rtc.set_time(t, g.now);
                g.pulses += u32::from(o.pulse);
            }
            9 => {
                let _ = rtc.nvram_write(rng.below(140) as i32 - 4, rng.below(0x100) as u8, g.now);
                let _ = rtc.nvram_read(rng.below(140) as i32 - 4, g.now);
            }
            _ => g.advance(Duration::from_micros(rng.below(2_000_000))),
        }
        let st = rtc.state.lock();
        assert!(st.addr < 0x80, "step {step}");
        assert_eq!(st.regs[reg::A] & REG_A_TUP, 0, "step {step}");
        assert_eq!(st.regs[reg::C] & 0x0f, 0, "step {step}");
        if g.pulses != pulses {
            assert!(!irqf_before || st.regs[reg::C] & REG_C_IRQF != 0, "step {step}: a pulse without IRQF");
        }
    }
    assert!(g.pulses > 0, "the run raised IRQ 8 at least once");
}

/// VM_RTC_READ brings every date/time byte (0-9) and the century up to
/// now first (FreeBSD `vrtc_nvram_read`), the year byte included.
#[test]
fn nvram_read_of_the_year_byte_shows_the_current_year() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    // 1999-12-31 23:59:59 UTC, two seconds before 2000.
    assert_eq!(rtc.set_time(946_684_799, now).value, Ok(()));
    let later = now + Duration::from_secs(2);
    assert_eq!(rtc.nvram_read(9, later), Ok(0x00), "year 2000, BCD");
    assert_eq!(rtc.nvram_read(8, later), Ok(0x01), "January");
    assert_eq!(rtc.nvram_read(0x32, later), Ok(0x20), "century");
}

/// A jump with AIE set leaves the date/time bytes at the new time even
/// when the alarm matched on the way (FreeBSD's `vrtc_time_update` walks
/// every second up to it); a time made broken afterwards keeps showing
/// them.
#[test]
fn an_alarm_matched_during_a_jump_leaves_the_bytes_at_the_new_time() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    assert_eq!(rtc.set_time(T, now).value, Ok(()));
    let mut g = guest(&rtc, now);
    // Alarm at any hh:mm:29; T is 19:24:27.
    g.write(1, 0x29).unwrap();
    g.write(3, 0xc0).unwrap();
    g.write(5, 0xc0).unwrap();
    g.write(11, REG_B_24HR | REG_B_AIE).unwrap();
    assert!(rtc.set_time(T + 5, g.now).pulse, "19:24:29 passed");
    assert_eq!(rtc.set_time(VRTC_BROKEN_TIME, g.now).value, Ok(()));
    assert_eq!(rtc.nvram_read(0, g.now), Ok(0x32), "19:24:32, not the alarm's second");
    assert_eq!(g.read(0), 0x32);
}

/// Clearing UIE with an update flag pending drops IRQF (register C is
/// recomputed when an interrupt enable changes) but keeps UF.
#[test]
fn disabling_the_update_interrupt_drops_irqf() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    assert_eq!(rtc.set_time(T, now).value, Ok(()));
    let mut g = guest(&rtc, now);
    g.write(11, REG_B_24HR | REG_B_UIE).unwrap();
    g.advance(Duration::from_secs(1));
    assert_eq!(g.pulses, 1);
    g.write(11, REG_B_24HR).unwrap();
    assert_eq!(g.read(12), REG_C_UF);
}

/// A jump of hours with AIE set finds an alarm at a set hour passed hours
/// before the new time (up to a day of the jump is checked, as FreeBSD
/// checks every second of it).
#[test]
fn a_jump_of_hours_passes_an_alarm_at_a_set_hour() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    assert_eq!(rtc.set_time(T, now).value, Ok(()));
    let mut g = guest(&rtc, now);
    // Alarm at 20:00:00; T is 19:24:27 and the jump ends at 05:24:27.
    for (o, v) in [(1, 0x00), (3, 0x00), (5, 0x20)] {
        g.write(o, v).unwrap();
    }
    g.write(11, REG_B_24HR | REG_B_AIE).unwrap();
    assert!(rtc.set_time(T + 10 * 3600, g.now).pulse);
    assert_eq!(g.read(12), REG_C_IRQF | REG_C_AF);
}

/// Register A's rate select gives FreeBSD's periodic rates (`vrtc_freq`):
/// 256 and 128 Hz for 1 and 2, then 8192 Hz halving down to 2 Hz for 15.
#[test]
fn rate_selects_give_freebsds_periodic_rates() {
    let now = Instant::now();
    let rtc = Vrtc::new(now);
    let mut g = guest(&rtc, now);
    g.write(11, REG_B_24HR | REG_B_PIE).unwrap();
    let hz: [u64; 16] = [0, 256, 128, 8192, 4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2];
    for (rs, hz) in hz.into_iter().enumerate() {
        g.write(10, REG_A_DIVIDER_ON | rs as u8).unwrap();
        let want = (hz != 0).then(|| g.now + Duration::from_nanos(1_000_000_000 / hz));
        assert_eq!(rtc.callout().get(), want, "rate select {rs}");
    }
}
