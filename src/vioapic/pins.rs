//! Pin state (assert counts), sending, and EOI processing. All of it runs
//! under the table mutex only.

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
    fn send_or_defer(&mut self, pin: usize, bus: &dyn IoapicBus) {
        if self.pins[pin].in_flux {
            self.pins[pin].deferred = true;
            self.stats.deferred_sends += 1;
        } else {
            self.send(pin, bus);
        }
    }

    /// One assert (+1) or deassert (-1). The count saturates: E2BIG at the
    /// top, ERANGE below zero (illumos), each counted. The 0 -> 1
    /// transition sends.
    fn set_pinstate(&mut self, pin: usize, assert: bool, bus: &dyn IoapicBus) -> Result<()> {
        let old = self.pins[pin].acnt;
        let new = if assert {
            old.checked_add(1).ok_or_else(|| {
                self.stats.saturate_high += 1;
                Error::TooBig
            })?
        } else {
            old.checked_sub(1).ok_or_else(|| {
                self.stats.saturate_low += 1;
                Error::Range
            })?
        };
        self.pins[pin].acnt = new;
        if old == 0 && new == 1 {
            self.send_or_defer(pin, bus);
        }
        Ok(())
    }
}

impl Vioapic {
    /// VM_IOAPIC_ASSERT_IRQ.
    pub fn assert_irq(&self, pin: i32, bus: &dyn IoapicBus) -> Result<()> {
        let pin = pin_index(pin)?;
        self.table.lock().set_pinstate(pin, true, bus)
    }

    /// VM_IOAPIC_DEASSERT_IRQ.
    pub fn deassert_irq(&self, pin: i32, bus: &dyn IoapicBus) -> Result<()> {
        let pin = pin_index(pin)?;
        self.table.lock().set_pinstate(pin, false, bus)
    }

    /// VM_IOAPIC_PULSE_IRQ: assert then deassert, under one lock hold; the
    /// deassert is skipped if the assert failed.
    pub fn pulse_irq(&self, pin: i32, bus: &dyn IoapicBus) -> Result<()> {
        let pin = pin_index(pin)?;
        let mut t = self.table.lock();
        t.set_pinstate(pin, true, bus)?;
        t.set_pinstate(pin, false, bus)
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
            if t.pins[p].acnt > 0 {
                t.send_or_defer(p, bus);
            }
        }
    }

    /// Sets an assert count directly (tests of saturation).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn set_assert_count(&self, pin: usize, n: u32) {
        self.table.lock().pins[pin].acnt = n;
    }

    /// Takes the clear/send trace (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn take_trace(&self) -> Vec<(&'static str, usize)> {
        std::mem::take(&mut self.table.lock().trace)
    }
}
