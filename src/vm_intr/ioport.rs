//! The I/O ports emulated inside VM_RUN (FreeBSD `vmm_ioport.c`): the
//! 8259 pair (0x20, 0x21, 0xa0, 0xa1) and its ELCR (0x4d0, 0x4d1), the
//! 8254 PIT (0x40-0x43, 0x61), the RTC (0x70, 0x71) and the ACPI PM timer
//! (0x408). Every other port exits to the caller.

use std::time::Instant;

use crate::error::Result;
use crate::vatpic::Vatpic;
use crate::vatpit::{Vatpit, PIT_IOAPIC_PIN};
use crate::vm::Vm;
use crate::vpmtmr::IO_PMTMR;
use crate::vrtc::IO_RTC;

impl Vm {
    /// A guest `in`/`out` if `port` is emulated here: `None` when it is
    /// not (the access exits to the caller); else the value an `in` reads
    /// (`Some(Ok(Some(v)))`), or Io for an access the device refuses
    /// (VM_RUN then fails with EIO, as `emulate_inout`'s callers make it).
    pub fn emulate_inout(&self, port: u16, bytes: u8, is_in: bool, eax: u32) -> Option<Result<Option<u32>>> {
        match port {
            p if p == IO_RTC || p == IO_RTC + 1 => {
                Some(self.rtc_port(port, bytes, is_in, eax).map(|v| v.map(u32::from)))
            }
            IO_PMTMR => Some(self.vpmtmr().port_access(bytes, is_in, Instant::now()).map(Some)),
            p if Vatpit::is_pit_port(p) => Some(self.pit_port(port, bytes, is_in, eax)),
            p if Vatpic::is_port(p) => Some(self.atpic_port(port, bytes, is_in, eax)),
            _ => None,
        }
    }
}

impl Vm {
    /// A guest access to the PIT: the value of an `in`. A count written
    /// to channel 0 may arm a sooner callout: sleepers take the new bound.
    fn pit_port(&self, port: u16, bytes: u8, is_in: bool, eax: u32) -> Result<Option<u32>> {
        let now = Instant::now();
        if is_in {
            return self.vatpit().port_in(port, bytes, now).map(|v| Some(u32::from(v)));
        }
        let r = self.vatpit().port_out(port, bytes, eax as u8, now);
        self.wake_sleepers_if_sooner();
        r.map(|()| None)
    }

    /// Fires the PIT's channel 0 callout if due: IRQ 0, on the 8259 and
    /// IOAPIC pin 2.
    pub(crate) fn pit_poll(&self, now: Instant) {
        if self.vatpit().poll(now) {
            self.isa_pulse_device_irq(0, PIT_IOAPIC_PIN);
        }
    }
}
