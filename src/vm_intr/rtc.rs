//! The VM's RTC entry points: the VM_RTC_* ioctls, the guest's ports
//! 0x70/0x71 and the callout the run loop polls. Each pulses IRQ 8 on the
//! 8259 and the IOAPIC after the vRTC mutex is released.

use std::time::Instant;

use crate::error::Result;
use crate::vrtc::{Outcome, RTC_IRQ};
use crate::vm::Vm;

impl Vm {
    /// Delivers an RTC interrupt if the operation raised one.
    fn rtc_done<T>(&self, out: Outcome<T>) -> T {
        if out.pulse {
            self.isa_pulse_device_irq(RTC_IRQ, RTC_IRQ);
        }
        out.value
    }

    /// VM_RTC_WRITE: one NVRAM byte (EINVAL for the clock bytes).
    pub fn rtc_nvram_write(&self, offset: i32, value: u8) -> Result<()> {
        self.check_alive()?;
        self.vrtc().nvram_write(offset, value, Instant::now())
    }

    /// VM_RTC_READ: any of the 128 CMOS bytes.
    pub fn rtc_nvram_read(&self, offset: i32) -> Result<u8> {
        self.check_alive()?;
        self.vrtc().nvram_read(offset, Instant::now())
    }

    /// VM_RTC_SETTIME: seconds since the epoch (EBUSY while the guest has
    /// updates halted).
    pub fn rtc_set_time(&self, secs: i64) -> Result<()> {
        self.check_alive()?;
        let r = self.rtc_done(self.vrtc().set_time(secs, Instant::now()));
        self.wake_sleepers_if_sooner();
        r
    }

    /// VM_RTC_GETTIME: seconds since the epoch, -1 while halted or broken.
    pub fn rtc_get_time(&self) -> Result<i64> {
        self.check_alive()?;
        Ok(self.vrtc().get_time(Instant::now()))
    }

    /// A guest access to port 0x70 or 0x71 (`emulate_inout` dispatches
    /// here): the value for an IN. Io for an access FreeBSD's handlers
    /// refuse (VM_RUN then fails with EIO), as for any other port.
    pub(crate) fn rtc_port(&self, port: u16, bytes: u8, is_in: bool, eax: u32) -> Result<Option<u8>> {
        let now = Instant::now();
        if is_in {
            self.rtc_done(self.vrtc().port_in(port, bytes, now)).map(Some)
        } else {
            let r = self.rtc_done(self.vrtc().port_out(port, bytes, eax as u8, now)).map(|()| None);
            self.wake_sleepers_if_sooner();
            r
        }
    }

    /// Fires the RTC's callout if it is due (one atomic load when nothing
    /// is due). Call it with no lock held: it may deliver an interrupt.
    pub fn rtc_poll(&self, now: Instant) {
        self.rtc_done(self.vrtc().poll(now));
    }
}
