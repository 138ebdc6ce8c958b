//! The ACPI power-management timer (FreeBSD `vpmtmr.c`): a free-running
//! 32-bit count at 3.579545 MHz since the VM was created or last
//! reinitialised, read by the guest with a 4-byte `in` from port 0x408
//! (where bhyve's ACPI tables put it). No lock: the base time is one
//! atomic, written only by VM_REINIT.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::sync::atomic::{AtomicU64, Ordering};

/// The timer's port (`IO_PMTMR`).
pub const IO_PMTMR: u16 = 0x408;
/// Counts per second.
pub const PMTMR_FREQ: u64 = 3_579_545;

#[derive(Debug)]
pub struct Vpmtmr {
    epoch: Instant,
    /// When the count was 0, in nanoseconds after `epoch`.
    base_ns: AtomicU64,
}

impl Vpmtmr {
    /// A timer counting from `now`.
    pub fn new(now: Instant) -> Self {
        Vpmtmr { epoch: now, base_ns: AtomicU64::new(0) }
    }

    /// The count at `now` (it wraps at 2^32, every 20 minutes).
    pub fn value(&self, now: Instant) -> u32 {
        let ns = now.saturating_duration_since(self.epoch).as_nanos();
        let since = ns.saturating_sub(u128::from(self.base_ns.load(Ordering::Acquire)));
        (since * u128::from(PMTMR_FREQ) / 1_000_000_000) as u32
    }

    /// A guest access: only a 4-byte `in` (anything else is Io, which
    /// fails VM_RUN with EIO, as FreeBSD's handler makes it).
    pub fn port_access(&self, bytes: u8, is_in: bool, now: Instant) -> Result<u32> {
        if !is_in || bytes != 4 {
            return Err(Error::Io);
        }
        Ok(self.value(now))
    }

    /// VM_REINIT (`vpmtmr_init` again): count from 0 at `now`.
    pub fn reset(&self, now: Instant) {
        let ns = now.saturating_duration_since(self.epoch).as_nanos();
        self.base_ns.store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_at_3_579545_mhz_from_creation_and_from_reset() {
        let t0 = Instant::now();
        let p = Vpmtmr::new(t0);
        assert_eq!(p.value(t0), 0);
        assert_eq!(p.value(t0 + Duration::from_secs(1)), 3_579_545);
        assert_eq!(p.value(t0 + Duration::from_micros(1)), 3);
        // 2^32 counts is 1199.86 s: the count wraps.
        assert_eq!(p.value(t0 + Duration::from_secs(1200)), (1200 * PMTMR_FREQ % (1 << 32)) as u32);
        p.reset(t0 + Duration::from_secs(5));
        assert_eq!(p.value(t0 + Duration::from_secs(6)), 3_579_545);
        assert_eq!(p.value(t0), 0, "before the reset: not negative");
    }

    #[test]
    fn only_a_4_byte_in_is_accepted() {
        let t0 = Instant::now();
        let p = Vpmtmr::new(t0);
        assert_eq!(p.port_access(4, true, t0 + Duration::from_millis(1)), Ok(3579));
        for (bytes, is_in) in [(1, true), (2, true), (4, false), (1, false)] {
            assert_eq!(p.port_access(bytes, is_in, t0), Err(Error::Io), "{bytes} bytes, in {is_in}");
        }
    }
}
