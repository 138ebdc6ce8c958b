//! The 8259 pair's glue: the VM side of [`AtpicBus`], the VM_ISA_* ioctls
//! (8259 first, then the vioapic pin, as FreeBSD's `vmmdev_ioctl`), its
//! ports, and the ExtINT acknowledge of the run loop.

use crate::error::{Error, Result};
use crate::vatpic::{AtpicBus, IrqOp};
use crate::vlapic::regs::lvt;
use crate::vm::Vm;

/// The IOAPIC pin the 8259's INTR is wired to (ExtINT through the IOAPIC).
const EXTINT_IOAPIC_PIN: i32 = 0;

impl AtpicBus for Vm {
    fn raise_intr(&self) {
        // LINT0 never fails, and pin 0 exists: a pulse cannot fail (it
        // sends nothing while a device thread holds the pin asserted).
        let _ = self.lapic_local_irq(-1, lvt::LINT0 as i32);
        let _ = self.ioapic_pulse_irq(EXTINT_IOAPIC_PIN);
    }
}

impl Vm {
    /// VM_ISA_ASSERT/DEASSERT/PULSE_IRQ: the 8259's IRQ `atpic_irq`
    /// (0..=15, else EINVAL), then, unless `ioapic_irq` is -1, that
    /// vioapic pin. Both numbers are checked first. The two chips count
    /// the same line each on its own: one refusing its count (a deassert
    /// at zero, an assert at the top) does not stop the other, so that
    /// the vioapic pin never stays asserted for an 8259 refusal (FreeBSD's
    /// 8259 never refuses). The 8259's error is returned, else the pin's.
    fn isa_irq(&self, atpic_irq: i32, ioapic_irq: i32, op: IrqOp) -> Result<()> {
        if ioapic_irq != -1 && !(0..self.ioapic_pincount()).contains(&ioapic_irq) {
            return Err(Error::Inval);
        }
        let atpic = self.vatpic().set_irq(atpic_irq, op, self);
        if ioapic_irq == -1 || atpic == Err(Error::Inval) {
            return atpic;
        }
        let ioapic = match op {
            IrqOp::Assert => self.ioapic_assert_irq(ioapic_irq),
            IrqOp::Deassert => self.ioapic_deassert_irq(ioapic_irq),
            IrqOp::Pulse => self.ioapic_pulse_irq(ioapic_irq),
        };
        atpic.and(ioapic)
    }

    /// VM_ISA_ASSERT_IRQ (see `isa_irq`).
    pub fn isa_assert_irq(&self, atpic_irq: i32, ioapic_irq: i32) -> Result<()> {
        self.isa_irq(atpic_irq, ioapic_irq, IrqOp::Assert)
    }

    /// VM_ISA_DEASSERT_IRQ.
    pub fn isa_deassert_irq(&self, atpic_irq: i32, ioapic_irq: i32) -> Result<()> {
        self.isa_irq(atpic_irq, ioapic_irq, IrqOp::Deassert)
    }

    /// VM_ISA_PULSE_IRQ.
    pub fn isa_pulse_irq(&self, atpic_irq: i32, ioapic_irq: i32) -> Result<()> {
        self.isa_irq(atpic_irq, ioapic_irq, IrqOp::Pulse)
    }

    /// VM_ISA_SET_IRQ_TRIGGER: the 8259's ELCR bit for `atpic_irq`. EINVAL
    /// for an IRQ outside 0..=15, or level on IRQ 0, 1, 2, 8 or 13.
    pub fn isa_set_irq_trigger(&self, atpic_irq: i32, level: bool) -> Result<()> {
        self.vatpic().set_irq_trigger(atpic_irq, level)
    }

    /// The ELCR pair (bit n: IRQ n level-triggered).
    pub fn isa_elcr(&self) -> u16 {
        self.vatpic().elcr()
    }

    /// A guest access to the 8259 ports: the value of an `in`.
    pub(super) fn atpic_port(&self, port: u16, bytes: u8, is_in: bool, eax: u32) -> Result<Option<u32>> {
        if is_in {
            return self.vatpic().port_in(port, bytes).map(|v| Some(u32::from(v)));
        }
        self.vatpic().port_out(port, bytes, eax as u8, self).map(|()| None)
    }

    /// Pulses ISA IRQ `irq` on the 8259 and its vioapic pin (the PIT's and
    /// RTC's interrupts, as FreeBSD's `vatpit` and `vrtc` raise them).
    pub(crate) fn isa_pulse_device_irq(&self, irq: i32, ioapic_pin: i32) {
        // Both exist, and a pulse leaves the counts alone: it cannot fail.
        let _ = self.isa_pulse_irq(irq, ioapic_pin);
    }

    /// The vector for a pending ExtINT that the guest now takes.
    pub(crate) fn atpic_accept_intr(&self) -> u8 {
        self.vatpic().accept_intr(self)
    }
}
