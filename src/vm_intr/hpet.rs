//! The VM side of the HPET: where its interrupts go, its MMIO window; and
//! the timer poll the run loop makes for every device with a callout
//! (RTC, HPET, PIT).

use std::time::Instant;

use crate::vhpet::{HpetBus, CAPABILITIES, VHPET_BASE, VHPET_SIZE};
use crate::vm::Vm;

impl HpetBus for Vm {
    // Pins 24-31 exist, and a pulse leaves the count alone: it cannot
    // fail.
    fn ioapic_pulse(&self, pin: u32) {
        let _ = self.ioapic_pulse_irq(pin as i32);
    }
    fn ioapic_assert(&self, pin: u32) {
        let _ = self.ioapic_assert_irq(pin as i32);
    }
    fn ioapic_deassert(&self, pin: u32) {
        let _ = self.ioapic_deassert_irq(pin as i32);
    }
    // An MSI the guest programmed badly is dropped, as a bad VM_LAPIC_MSI.
    fn msi(&self, addr: u64, data: u64) {
        let _ = self.lapic_msi(addr, data);
    }
}

impl Vm {
    /// Whether `gpa` is in the HPET's window.
    pub(crate) fn is_hpet_gpa(gpa: u64) -> bool {
        (VHPET_BASE..VHPET_BASE + VHPET_SIZE).contains(&gpa)
    }

    pub(crate) fn hpet_mmio_read(&self, gpa: u64, size: u8) -> u64 {
        self.vhpet().mmio_read(gpa - VHPET_BASE, size, Instant::now())
    }

    pub(crate) fn hpet_mmio_write(&self, gpa: u64, size: u8, value: u64) {
        self.vhpet().mmio_write(gpa - VHPET_BASE, size, value, Instant::now(), self);
        self.wake_sleepers_if_sooner();
    }

    /// VM_GET_HPET_CAPABILITIES: the low half of the capabilities
    /// register (vendor 8086, 8 timers, revision 1, 32-bit counter).
    pub fn hpet_capabilities(&self) -> u32 {
        CAPABILITIES as u32
    }

    /// Fires the RTC's, HPET's and PIT's callouts that are due (every guest
    /// entry and HLT wake-up calls this). Call it with no lock held: it
    /// may deliver interrupts.
    pub fn poll_device_timers(&self, now: Instant) {
        self.rtc_poll(now);
        self.vhpet().poll(now, self);
        self.pit_poll(now);
    }

    /// After an operation that may arm a device callout: if some device's
    /// callout moved earlier (each device notes that under its own mutex,
    /// and polls only ever move one later), wakes every vCPU asleep in HLT
    /// so it sleeps again with the new bound. Taking each vCPU's mutex to
    /// notify orders this after a sleeper's read of the bound, or before
    /// it: none is missed.
    pub(crate) fn wake_sleepers_if_sooner(&self) {
        // `|`, not `||`: every flag is taken.
        let sooner = self.vrtc().callout().take_sooner()
            | self.vhpet().callout().take_sooner()
            | self.vatpit().callout().take_sooner();
        if sooner {
            for v in self.vcpus() {
                v.wake_waiters();
            }
            self.callout_waker().poke();
        }
    }

    /// The earliest callout of the RTC, the HPET and the PIT: bounds HLT
    /// sleeps.
    pub fn device_timer_deadline(&self) -> Option<Instant> {
        [self.vrtc().callout(), self.vhpet().callout(), self.vatpit().callout()].iter().filter_map(|c| c.get()).min()
    }
}
