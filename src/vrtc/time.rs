//! Seconds since the epoch <-> the MC146818's date/time bytes (FreeBSD
//! `secs_to_rtc` / `rtc_to_secs`): BCD or binary, 12- or 24-hour, UTC.

use super::{reg, RtcRegs, REG_B_24HR, REG_B_BIN, VRTC_BROKEN_TIME};

const SECS_PER_DAY: i64 = 86_400;

/// The last second of a four-digit year (9999-12-31 23:59:59 UTC), the
/// latest time VM_RTC_SETTIME takes.
pub const MAX_RTC_SECS: i64 = 253_402_300_799;

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (days since 1970-01-01): (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A value 0-99 in the format register B selects.
fn encode(regs: &RtcRegs, v: u32) -> u8 {
    debug_assert!(v < 100, "RTC field {v} out of range");
    if regs[reg::B] & REG_B_BIN != 0 {
        v as u8
    } else {
        (((v / 10) << 4) | (v % 10)) as u8
    }
}

/// A field in the format register B selects; `None` for a BCD byte with a
/// nibble above 9 (FreeBSD `rtcget`).
fn decode(regs: &RtcRegs, b: u8) -> Option<u32> {
    if regs[reg::B] & REG_B_BIN != 0 {
        return Some(u32::from(b));
    }
    let (hi, lo) = (b >> 4, b & 0xf);
    (hi <= 9 && lo <= 9).then_some(u32::from(hi) * 10 + u32::from(lo))
}

/// Writes the time `t` into the date/time bytes (`secs_to_rtc`). Nothing
/// for a broken or negative time, nor while updates are halted (SET bit)
/// unless `force`. Alarm bytes, registers A-D and NVRAM are untouched.
pub(super) fn secs_to_rtc(regs: &mut RtcRegs, t: i64, force: bool) {
    if t < 0 || (regs[reg::B] & super::REG_B_HALT != 0 && !force) {
        return;
    }
    let days = t.div_euclid(SECS_PER_DAY);
    let sod = t.rem_euclid(SECS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    let (hour, min, sec) = (sod / 3600, sod / 60 % 60, sod % 60);
    // 1970-01-01 was a Thursday; the RTC counts Sunday as 1.
    let dow = (days + 4).rem_euclid(7) as u32 + 1;
    regs[reg::SEC] = encode(regs, sec);
    regs[reg::MIN] = encode(regs, min);
    regs[reg::HOUR] = if regs[reg::B] & REG_B_24HR != 0 {
        encode(regs, hour)
    } else {
        let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        encode(regs, h12) | if hour >= 12 { 0x80 } else { 0 }
    };
    regs[reg::DAY_OF_WEEK] = encode(regs, dow);
    regs[reg::DAY_OF_MONTH] = encode(regs, day);
    regs[reg::MONTH] = encode(regs, month);
    regs[reg::YEAR] = encode(regs, (year % 100) as u32);
    // Past 9999 (only a guest can get there, writing a binary century
    // above 99): binary shows the century up to 255, BCD its last two
    // digits. FreeBSD writes past its BCD table there.
    let century = year / 100;
    regs[reg::CENTURY] = if regs[reg::B] & REG_B_BIN != 0 {
        century.min(255) as u8
    } else {
        encode(regs, (century % 100) as u32)
    };
}

/// The time the date/time bytes show (`rtc_to_secs`), or
/// [`VRTC_BROKEN_TIME`] if they are not a valid date from 1970 on. The
/// day-of-week byte is ignored.
pub(super) fn rtc_to_secs(regs: &RtcRegs) -> i64 {
    parse(regs).unwrap_or(VRTC_BROKEN_TIME)
}

fn parse(regs: &RtcRegs) -> Option<i64> {
    let sec = decode(regs, regs[reg::SEC]).filter(|s| *s <= 59)?;
    let min = decode(regs, regs[reg::MIN]).filter(|m| *m <= 59)?;
    let raw_hour = regs[reg::HOUR];
    let hour = if regs[reg::B] & REG_B_24HR != 0 {
        decode(regs, raw_hour)?
    } else {
        let h = decode(regs, raw_hour & 0x7f).filter(|h| (1..=12).contains(h))?;
        let h = if h == 12 { 0 } else { h };
        if raw_hour & 0x80 != 0 {
            h + 12
        } else {
            h
        }
    };
    if hour > 23 {
        return None;
    }
    let day = decode(regs, regs[reg::DAY_OF_MONTH]).filter(|d| (1..=31).contains(d))?;
    let month = decode(regs, regs[reg::MONTH]).filter(|m| (1..=12).contains(m))?;
    let year = decode(regs, regs[reg::YEAR]).filter(|y| *y <= 99)?;
    let century = decode(regs, regs[reg::CENTURY])?;
    let year = i64::from(century) * 100 + i64::from(year);
    if year < 1970 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * SECS_PER_DAY + i64::from(hour * 3600 + min * 60 + sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_round_trip_over_four_centuries() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for d in (-800_000..800_000).step_by(97) {
            let (y, m, day) = civil_from_days(d);
            assert!(day >= 1 && day <= days_in_month(y, m), "{d}: {y}-{m}-{day}");
            assert_eq!(days_from_civil(y, m, day), d);
        }
    }

    #[test]
    fn known_dates() {
        // 2000-02-29 00:00:00 and 2038-01-19 03:14:08 UTC.
        assert_eq!(days_from_civil(2000, 2, 29) * SECS_PER_DAY, 951_782_400);
        assert_eq!(days_from_civil(2038, 1, 19) * SECS_PER_DAY + 3 * 3600 + 14 * 60 + 8, 1 << 31);
        assert_eq!(civil_from_days(MAX_RTC_SECS / SECS_PER_DAY), (9999, 12, 31));
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2400, 2), 29);
    }
}
