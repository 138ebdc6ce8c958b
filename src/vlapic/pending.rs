//! A lock-free copy of IRR and TMR, so that an interrupt merging into a
//! vector that is already pending (the common case of a device raising a
//! line faster than the guest takes it) needs no vlapic mutex.
//!
//! The copy is written only under the vlapic mutex, when a guard that was
//! used mutably is dropped ([`Locked`]), so a lock-free reader sees IRR and
//! TMR exactly as some method left them, never half-way through one. A
//! merge that reads "pending (with TMR set, for a level message)" is the
//! same as taking the mutex at that moment and finding `set_intr_ready`
//! would change nothing (a software-disabled APIC also changes nothing), so
//! it is ordered just before the next method that changes the copy.
//! Whoever made the vector pending notified the vCPU, so a merge asks for
//! no notification.
//!
//! "Ordered just before" must hold for the sender's other memory accesses
//! too, as the mutex would order them: a device that writes its ring in
//! guest RAM and then sends must have that write seen by the guest that
//! takes the interrupt it merged into (store buffering), and a device that
//! read what the guest wrote after taking the vector must not merge into
//! the taken vector (message passing). So the merge reads the word with a
//! read-modify-write that changes nothing ([`PendingCopy::merges`]), whose
//! release publishes what the sender did before, and the vCPU's
//! publication is a read-modify-write too (`swap`), whose acquire reads
//! from every merge before it in the word's order: a merge into a vector
//! the vCPU then takes happens before everything the vCPU does next. A bare
//! load would allow both shapes, on aarch64 and, in a tiny window, on x86
//! (`tests/loom_merge.rs` models both; with a bare load it finds the
//! first).
//!
//! [`PendingCopy::merges_after_rmw`] is for a sender that has made a
//! successful sequentially consistent read-modify-write earlier in program
//! order (the IOAPIC's assert count). On x86-64 that is a locked
//! instruction and the vCPU's `swap` an `xchg`, both full barriers, so
//! neither side's later load can pass its own earlier store and a plain
//! load suffices there. That is x86's memory model, not the language's.
//! Elsewhere it is `merges`: on aarch64 the vCPU's swap may be an
//! exclusive pair whose store a later plain load can pass, which only the
//! sender's own read-modify-write of the word (read by that swap) rules
//! out; under loom too.

use std::ops::{Deref, DerefMut};

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::MutexGuard;

use super::state::LapicState;

/// IRR and TMR, one word per 32 vectors: IRR bits in 31:0, TMR bits in
/// 63:32, so one load reads both for a vector.
#[derive(Debug, Default)]
pub(super) struct PendingCopy([AtomicU64; 8]);

impl PendingCopy {
    /// Whether accepting `vector` with trigger mode `level` would change
    /// nothing: it is in IRR already, with its TMR bit set if `level` (an
    /// edge joins a pending vector of either mode, see `set_intr_ready`).
    pub(super) fn merges(&self, vector: u8, level: bool) -> bool {
        // An RMW that changes nothing, for its ordering (module doc).
        let w = self.0[usize::from(vector / 32)].fetch_or(0, Ordering::SeqCst);
        Self::merges_into(w, vector, level)
    }

    /// `merges`, for a sender that made a successful sequentially
    /// consistent read-modify-write earlier in program order (module doc):
    /// a plain load on x86-64.
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    pub(super) fn merges_after_rmw(&self, vector: u8, level: bool) -> bool {
        let w = self.0[usize::from(vector / 32)].load(Ordering::SeqCst);
        Self::merges_into(w, vector, level)
    }

    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    pub(super) fn merges_after_rmw(&self, vector: u8, level: bool) -> bool {
        self.merges(vector, level)
    }

    fn merges_into(w: u64, vector: u8, level: bool) -> bool {
        let bit = 1u64 << (vector % 32);
        w & bit != 0 && (!level || w & (bit << 32) != 0)
    }

    /// Copies `s`'s IRR and TMR (under the vlapic mutex).
    fn publish(&self, s: &LapicState) {
        let (irr, tmr) = (s.irr.words(), s.tmr.words());
        for (i, word) in self.0.iter().enumerate() {
            let w = u64::from(irr[i]) | u64::from(tmr[i]) << 32;
            // Only this mutex's holder stores: a relaxed read is exact.
            if word.load(Ordering::Relaxed) != w {
                // An RMW, to read from the merges before it (module doc).
                word.swap(w, Ordering::SeqCst);
            }
        }
    }
}

/// The vlapic mutex's guard: publishes IRR and TMR on release if the
/// state was borrowed mutably.
pub(super) struct Locked<'a> {
    guard: MutexGuard<'a, LapicState>,
    copy: &'a PendingCopy,
    dirty: bool,
}

impl<'a> Locked<'a> {
    pub(super) fn new(guard: MutexGuard<'a, LapicState>, copy: &'a PendingCopy) -> Self {
        Locked { guard, copy, dirty: false }
    }
}

impl Deref for Locked<'_> {
    type Target = LapicState;
    fn deref(&self) -> &LapicState {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut LapicState {
        self.dirty = true;
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.dirty {
            self.copy.publish(&self.guard);
        }
    }
}
