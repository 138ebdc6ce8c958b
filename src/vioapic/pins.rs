//! Sending and EOI processing, and the lock-free assert counts and edge
//! sends (see the module doc of `vioapic`).

use super::rte::{Rte, REM_IRR};
use super::{pin_index, IoapicBus, Table, Vioapic, PINS};
use crate::error::{Error, Result};

impl Vioapic {
    /// `vioapic_send_intr` under the table mutex: a masked entry sends
    /// nothing; a level entry whose remote IRR is set is coalesced,
    /// otherwise it sets remote IRR.
    pub(super) fn send<B: IoapicBus + ?Sized>(&self, t: &mut Table, pin: usize, bus: &B) {
        let e = t.rte(pin);
        if e.masked() {
            return;
        }
        if e.level() {
            if e.remote_irr() {
                return;
            }
            t.pins[pin].reg |= REM_IRR;
        }
        self.deliver(e, bus);
        #[cfg(all(test, not(loom)))]
        t.trace.push(("send", pin));
    }

    #[inline(always)]
    fn deliver<B: IoapicBus + ?Sized>(&self, e: Rte, bus: &B) {
        bus.deliver(e.level(), e.dest(), e.phys(), e.delmode(), e.vector());
        self.sent.add(1);
    }

    /// Send, unless the entry is being rewritten: then mark a send due (a
    /// pulse's, if `pulse`); the writer makes it once the new entry is in
    /// place.
    pub(super) fn send_or_defer<B: IoapicBus + ?Sized>(&self, t: &mut Table, pin: usize, bus: &B, pulse: bool) {
        if self.lines[pin].entry_or_defer(pulse).is_some() {
            self.send(t, pin, bus);
        }
    }

    /// VM_IOAPIC_ASSERT_IRQ: +1 on the pin's count (E2BIG at the top,
    /// counted). The 0 -> 1 transition sends, unless the pin is masked: an
    /// edge entry without a lock, a level entry under the table mutex.
    /// Inlined: counting is one compare-and-swap; the send is out of line.
    #[inline(always)]
    pub fn assert_irq<B: IoapicBus + ?Sized>(&self, pin: i32, bus: &B) -> Result<()> {
        let pin = pin_index(pin)?;
        match self.lines[pin].assert() {
            // Count 0 and mask copy clear as of the increment (module doc).
            Some(0) => {
                self.send_raised::<B, false>(pin, bus);
                Ok(())
            }
            Some(_) => Ok(()),
            None => self.assert_refused(),
        }
    }

    /// The send of an assert that took an unmasked pin's count from 0 to 1
    /// (`PULSE` false), or of a pulse that read the count word 0 (`PULSE`
    /// true).
    #[inline(never)]
    fn send_raised<B: IoapicBus + ?Sized, const PULSE: bool>(&self, pin: usize, bus: &B) {
        let line = &self.lines[pin];
        let Some(e) = line.entry_or_defer(PULSE) else {
            return;
        };
        if e.masked() {
            // Masked since the increment or load: the write came first.
            return;
        }
        if !e.level() {
            if PULSE {
                // After a load only: the plain delivery.
                bus.deliver(e.level(), e.dest(), e.phys(), e.delmode(), e.vector());
            } else {
                // Lock-free, after the count's successful SC increment.
                bus.deliver_after_rmw(e.level(), e.dest(), e.phys(), e.delmode(), e.vector());
            }
            self.sent.add(1);
            return;
        }
        self.send_raised_level::<B, PULSE>(pin, bus);
    }

    /// `send_raised` for a level entry: under the table mutex. (Visible to
    /// the tests, which play the states it can find there.)
    #[inline(never)]
    pub(super) fn send_raised_level<B: IoapicBus + ?Sized, const PULSE: bool>(&self, pin: usize, bus: &B) {
        let line = &self.lines[pin];
        let mut t = self.table.lock();
        // A level line is sampled now: deasserted meanwhile, it may
        // already have been delivered and handled. (Rewritten to edge
        // meanwhile, the assertion is still an edge.) A pulse is the
        // line's high: sent as it stands.
        if PULSE || !t.rte(pin).level() || line.count() > 0 {
            self.send_or_defer(&mut t, pin, bus, PULSE);
        }
    }

    #[cold]
    #[inline(never)]
    fn assert_refused(&self) -> Result<()> {
        self.table.lock().stats.saturate_high += 1;
        Err(Error::TooBig)
    }

    /// VM_IOAPIC_DEASSERT_IRQ: -1 on the pin's count (ERANGE at zero,
    /// counted, as illumos). Never sends, so never locks.
    #[inline(always)]
    pub fn deassert_irq<B: IoapicBus + ?Sized>(&self, pin: i32, _bus: &B) -> Result<()> {
        let pin = pin_index(pin)?;
        match self.lines[pin].deassert() {
            Some(_) => Ok(()),
            None => self.deassert_refused(),
        }
    }

    #[cold]
    #[inline(never)]
    fn deassert_refused(&self) -> Result<()> {
        self.table.lock().stats.saturate_low += 1;
        Err(Error::Range)
    }

    /// VM_IOAPIC_PULSE_IRQ. FreeBSD raises and lowers the line under one
    /// lock, so a pulse is a rising edge exactly when no assert holds the
    /// line, and no other call sees it high. Here the count is not touched
    /// at all: the pulse sends when the count word reads 0 (count 0, mask
    /// copy clear). Two pulses overlapping on two threads both send (with
    /// a count, the first one's raised line hid the second's edge, and a
    /// driver could miss the second event), a reset or another caller's
    /// deassert has nothing to take from it, and a level entry sees its
    /// line high for the send (sampled at the pulse, as FreeBSD's), also
    /// when the send is held back while the pin is rewritten (the writer
    /// makes it in step 5). As every send here, a level entry with remote
    /// IRR set coalesces it (illumos; FreeBSD 14 sends again), and sends
    /// held back on one pin during one rewrite are made once.
    pub fn pulse_irq<B: IoapicBus + ?Sized>(&self, pin: i32, bus: &B) -> Result<()> {
        let pin = pin_index(pin)?;
        if self.lines[pin].word() == 0 {
            self.send_raised::<B, true>(pin, bus);
        }
        Ok(())
    }

    /// EOI of a level-triggered `vector` from a local APIC: clear remote
    /// IRR on every entry with that vector, then re-send those whose pin is
    /// still asserted. All are cleared before any is re-sent.
    pub fn process_eoi(&self, vector: u8, bus: &dyn IoapicBus) {
        let mut t = self.table.lock();
        // One bit per pin (PINS == 32).
        let mut hit = 0u32;
        for p in 0..PINS {
            let e = t.rte(p);
            if e.remote_irr() && e.vector() == vector {
                t.pins[p].reg &= !REM_IRR;
                hit |= 1 << p;
                #[cfg(all(test, not(loom)))]
                t.trace.push(("clear", p));
            }
        }
        for p in (0..PINS).filter(|p| hit & (1 << p) != 0) {
            if self.lines[p].count() > 0 {
                self.send_or_defer(&mut t, p, bus, false);
            }
        }
    }

    /// Sets an assert count directly (tests of saturation).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn set_assert_count(&self, pin: usize, n: u32) {
        self.lines[pin].set_count(n);
    }

    /// Takes the clear/send trace (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn take_trace(&self) -> Vec<(&'static str, usize)> {
        std::mem::take(&mut self.table.lock().trace)
    }
}
