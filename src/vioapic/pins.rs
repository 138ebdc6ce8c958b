//! Sending and EOI processing (under the table mutex), and the lock-free
//! assert counts (see the module doc of `vioapic`).

use super::rte::REM_IRR;
use super::{pin_index, IoapicBus, Table, Vioapic, PINS};
use crate::error::{Error, Result};

impl Table {
    /// `vioapic_send_intr`: a masked entry sends nothing; a level entry
    /// whose remote IRR is set is coalesced, otherwise it sets remote IRR.
    pub(super) fn send(&mut self, pin: usize, bus: &dyn IoapicBus) {
        let e = self.rte(pin);
        if e.masked() {
            return;
        }
        if e.level() {
            if e.remote_irr() {
                return;
            }
            self.pins[pin].reg |= REM_IRR;
        }
        bus.deliver(e.level(), e.dest(), e.phys(), e.delmode(), e.vector());
        self.stats.interrupts += 1;
        #[cfg(all(test, not(loom)))]
        self.trace.push(("send", pin));
    }

    /// Send, unless the entry is being rewritten: then remember that a send
    /// is due; the writer makes it once the new entry is in place.
    pub(super) fn send_or_defer(&mut self, pin: usize, bus: &dyn IoapicBus) {
        if self.pins[pin].in_flux {
            self.pins[pin].deferred = true;
            self.stats.deferred_sends += 1;
        } else {
            self.send(pin, bus);
        }
    }
}

impl Vioapic {
    /// VM_IOAPIC_ASSERT_IRQ: +1 on the pin's count (E2BIG at the top,
    /// counted). The 0 -> 1 transition sends, unless the pin is masked.
    pub fn assert_irq(&self, pin: i32, bus: &dyn IoapicBus) -> Result<()> {
        let pin = pin_index(pin)?;
        let Some(old) = self.counts[pin].add(true) else {
            self.table.lock().stats.saturate_high += 1;
            return Err(Error::TooBig);
        };
        // Count 0 and mask copy clear as of the increment (module doc).
        if old == 0 {
            let mut t = self.table.lock();
            // A level line is sampled now: deasserted meanwhile, it may
            // already have been delivered and handled. An edge was an edge.
            if !t.rte(pin).level() || self.counts[pin].count() > 0 {
                t.send_or_defer(pin, bus);
            }
        }
        Ok(())
    }

    /// VM_IOAPIC_DEASSERT_IRQ: -1 on the pin's count (ERANGE at zero,
    /// counted, as illumos). Never sends, so never locks.
    pub fn deassert_irq(&self, pin: i32, _bus: &dyn IoapicBus) -> Result<()> {
        let pin = pin_index(pin)?;
        match self.counts[pin].add(false) {
            Some(_) => Ok(()),
            None => {
                self.table.lock().stats.saturate_low += 1;
                Err(Error::Range)
            }
        }
    }

    /// VM_IOAPIC_PULSE_IRQ: assert then deassert; the deassert is skipped
    /// if the assert failed.
    pub fn pulse_irq(&self, pin: i32, bus: &dyn IoapicBus) -> Result<()> {
        self.assert_irq(pin, bus)?;
        self.deassert_irq(pin, bus)
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
            if self.counts[p].count() > 0 {
                t.send_or_defer(p, bus);
            }
        }
    }

    /// Sets an assert count directly (tests of saturation).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn set_assert_count(&self, pin: usize, n: u32) {
        self.counts[pin].set_count(n);
    }

    /// Takes the clear/send trace (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn take_trace(&self) -> Vec<(&'static str, usize)> {
        std::mem::take(&mut self.table.lock().trace)
    }
}
