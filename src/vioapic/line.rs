//! The lock-free part of one pin ([`PinLine`]): its assert count with a
//! copy of the mask bit, a copy of its redirection entry with the in-flux
//! and deferred-send marks, and its count of sends held back. Asserts,
//! deasserts and edge sends use only this; the table mutex keeps the
//! entry itself (see the module doc of `vioapic`).

use crate::sync::atomic::{AtomicU64, Ordering};

use super::rte::{self, Rte};

/// Count word: bit 32 is a copy of the entry's mask bit.
const COUNT_MASKED: u64 = 1 << 32;
const COUNT: u64 = u32::MAX as u64;
/// The highest assert count (E2BIG above it): INT_MAX, as FreeBSD's `int`
/// count.
pub const MAX_ASSERTS: u32 = i32::MAX as u32;
/// Entry copy: the entry is being rewritten (steps 1-5 of the write path);
/// a send must be held back. Reserved RTE bits 48 to 50 carry the marks;
/// whatever a guest wrote there is not copied.
const FLUX: u64 = 1 << 48;
/// Entry copy: a send was held back while in flux; step 5 makes it.
const DEFERRED: u64 = 1 << 49;
/// Entry copy: a pulse's send was among those held back. A level entry
/// is sent for it at step 5 though its line is low by then (a pulse is
/// the line's high), as FreeBSD's pulse sends the entry it finds.
const PULSED: u64 = 1 << 50;
const MARKS: u64 = FLUX | DEFERRED | PULSED;

/// The sends held back while a pin was in flux (`PinLine::leave_flux`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct HeldBack {
    /// At least one.
    pub any: bool,
    /// At least one was a pulse's.
    pub pulse: bool,
}

/// One pin's atomics, on their own cache line so that pins do not share
/// one between device threads.
#[derive(Debug)]
#[repr(align(64))]
pub(super) struct PinLine {
    /// Bits 31:0: asserts minus deasserts (0..=MAX_ASSERTS); bit 32: mask
    /// copy.
    count: AtomicU64,
    /// The redirection entry (remote IRR aside, which only the table knows)
    /// and the FLUX / DEFERRED marks. Written under the table mutex; the
    /// DEFERRED mark is also set without it, while FLUX is set.
    entry: AtomicU64,
    /// Sends from this pin held back because it was being rewritten.
    deferred: AtomicU64,
}

impl Default for PinLine {
    fn default() -> Self {
        PinLine {
            count: AtomicU64::new(COUNT_MASKED),
            entry: AtomicU64::new(rte::RESET),
            deferred: AtomicU64::new(0),
        }
    }
}

impl PinLine {
    /// The count word: 0 when no assert holds the line and the mask copy
    /// is clear (what a pulse sends on).
    pub(super) fn word(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    pub(super) fn count(&self) -> u32 {
        self.count.load(Ordering::SeqCst) as u32
    }

    /// +1 on the count; returns the count word before (0 means: count was
    /// 0 and the mask copy clear), or None (and changes nothing) at
    /// MAX_ASSERTS. The first guess is an idle line (count 0).
    pub(super) fn assert(&self) -> Option<u64> {
        self.update_count(0, |w| (w & COUNT < u64::from(MAX_ASSERTS)).then(|| w + 1))
    }

    /// -1 on the count; None (and changes nothing) at zero. The first
    /// guess is a line asserted once (count 1).
    pub(super) fn deassert(&self) -> Option<u64> {
        self.update_count(1, |w| (w & COUNT != 0).then(|| w - 1))
    }

    /// Compare-and-swap of the count word with `f` (None: refuse, change
    /// nothing); returns the word it replaced. The count is exact at every
    /// moment (never above the top or below zero, not even while an
    /// operation is refused), so every decision reads the true count.
    ///
    /// The first attempt does not load the word: it guesses `count` with
    /// the mask copy as in the entry copy (a load of the word itself right
    /// after another read-modify-write of it waits for that one; the entry
    /// copy is another word). A wrong guess fails the swap, which returns
    /// the true word to retry with, so a guess is never acted on.
    fn update_count(&self, count: u64, f: impl Fn(u64) -> Option<u64>) -> Option<u64> {
        let masked = self.entry.load(Ordering::Relaxed) & rte::INTMASK != 0;
        let mut w = if masked { COUNT_MASKED | count } else { count };
        let mut new = match f(w) {
            Some(new) => new,
            None => {
                w = self.count.load(Ordering::SeqCst);
                f(w)?
            }
        };
        loop {
            match self.count.compare_exchange_weak(w, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Some(w),
                Err(now) => {
                    w = now;
                    new = f(w)?;
                }
            }
        }
    }

    /// Publishes a rewritten entry (under the table mutex): the entry copy
    /// first, then the mask copy, so an assert that sees the new mask copy
    /// also reads the new entry. `flux` marks the entry in flux.
    pub(super) fn publish(&self, reg: u64, masked: bool, flux: bool) {
        let marks = if flux { FLUX } else { 0 };
        self.entry.store(reg & !MARKS | marks, Ordering::SeqCst);
        if masked {
            self.count.fetch_or(COUNT_MASKED, Ordering::SeqCst);
        } else {
            self.count.fetch_and(!COUNT_MASKED, Ordering::SeqCst);
        }
    }

    /// The entry to send now, or None if it is in flux: then the send is
    /// marked due (and counted), and the writer makes it in step 5. The
    /// entry returned is the one whose copy was seen out of flux.
    #[inline(always)]
    pub(super) fn entry_or_defer(&self, pulse: bool) -> Option<Rte> {
        let e = self.entry.load(Ordering::SeqCst);
        if e & FLUX == 0 {
            return Some(Rte(e));
        }
        self.defer(e, pulse)
    }

    /// `entry_or_defer` once the entry copy `e` was seen in flux.
    #[cold]
    #[inline(never)]
    fn defer(&self, mut e: u64, pulse: bool) -> Option<Rte> {
        let marks = if pulse { DEFERRED | PULSED } else { DEFERRED };
        loop {
            if e & FLUX == 0 {
                return Some(Rte(e));
            }
            match self.entry.compare_exchange_weak(e, e | marks, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    self.deferred.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Err(now) => e = now,
            }
        }
    }

    /// Step 5 (under the table mutex): the entry leaves flux; returns
    /// whether a send was held back meanwhile.
    pub(super) fn leave_flux(&self, reg: u64) -> HeldBack {
        let w = self.entry.swap(reg & !MARKS, Ordering::SeqCst);
        HeldBack { any: w & DEFERRED != 0, pulse: w & PULSED != 0 }
    }

    pub(super) fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }

    /// The reset state: masked, not asserted, nothing held back.
    pub(super) fn reset(&self) {
        self.count.store(COUNT_MASKED, Ordering::SeqCst);
        self.entry.store(rte::RESET, Ordering::SeqCst);
        self.deferred.store(0, Ordering::Relaxed);
    }

    #[cfg(all(test, not(loom)))]
    pub(super) fn set_count(&self, n: u32) {
        let _ = self
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| Some(w & !COUNT | u64::from(n)));
    }
}
