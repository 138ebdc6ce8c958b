//! The time-stamp counter guests read (RDTSC, RDTSCP, IA32_TIME_STAMP_COUNTER).
//!
//! On FreeBSD a guest reads the host's TSC plus a per-vCPU offset, 0
//! until the guest writes the TSC MSR (`vmx_set_tsc_offset`). Here the
//! "host TSC" is the monotonic clock since the library first needed it,
//! ticking at [`TSC_HZ`]: every VM and vCPU reads the same clock, it never
//! runs backwards or changes rate (so CPUID reports it invariant), and it
//! needs neither the RDTSC instruction nor an x86 host. Each vCPU adds its
//! own offset, kept with its MSRs (`GuestMsrs`).

use std::sync::OnceLock;
use std::time::Instant;

/// The guest TSC frequency: 2 GHz.
pub const TSC_HZ: u64 = 2_000_000_000;

/// The bus clock FreeBSD derives the platform ratios from (100 MHz on
/// everything since Sandy Bridge).
const BUS_HZ: u64 = 100_000_000;
/// TSC_HZ / BUS_HZ: the maximum non-turbo ratio.
const RATIO: u64 = (TSC_HZ / BUS_HZ) & 0xff;

/// MSR_PLATFORM_INFO as FreeBSD's `vmx_msr_init` builds it from the TSC
/// frequency: the maximum non-turbo ratio (bits 15:8) and the maximum
/// efficiency ratio (bits 47:40).
pub const PLATFORM_INFO: u64 = (RATIO << 8) | (RATIO << 40);
/// MSR_TURBO_RATIO_LIMIT(1): that ratio for every core count (each byte).
pub const TURBO_RATIO_LIMIT: u64 = RATIO * 0x0101_0101_0101_0101;

/// When the clock reads 0.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Starts the clock (if it has not started), so that a VM's guests never
/// see it before their VM existed.
pub fn start() {
    epoch();
}

/// The clock at `now`, in TSC ticks.
pub fn host_tsc_at(now: Instant) -> u64 {
    let ns = now.saturating_duration_since(epoch()).as_nanos();
    // 2^64 ticks at 2 GHz is 292 years: the product fits a u128 and the
    // result a u64 for any uptime this process will see.
    (ns * u128::from(TSC_HZ) / 1_000_000_000) as u64
}

/// The clock now, in TSC ticks.
pub fn host_tsc() -> u64 {
    host_tsc_at(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_clock_ticks_at_tsc_hz_from_its_epoch() {
        start();
        let e = epoch();
        assert_eq!(host_tsc_at(e), 0);
        assert_eq!(host_tsc_at(e + Duration::from_millis(1)), TSC_HZ / 1000);
        assert_eq!(host_tsc_at(e + Duration::from_secs(3)), 3 * TSC_HZ);
        // Before the epoch (not reachable through host_tsc) reads 0.
        assert_eq!(host_tsc_at(e.checked_sub(Duration::from_secs(1)).unwrap_or(e)), 0);
        let a = host_tsc();
        let b = host_tsc();
        assert!(b >= a, "monotonic: {a} then {b}");
    }

    #[test]
    fn platform_ratios_are_freebsds_for_a_2ghz_tsc() {
        assert_eq!(RATIO, 20);
        assert_eq!(PLATFORM_INFO, 0x0000_1400_0000_1400);
        assert_eq!(TURBO_RATIO_LIMIT, 0x1414_1414_1414_1414);
    }
}
