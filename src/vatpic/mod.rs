//! The virtual 8259A pair (FreeBSD 14 `vatpic.c`): master at ports
//! 0x20/0x21, slave at 0xa0/0xa1 cascaded on the master's pin 2, and the
//! edge/level control registers (ELCR) at 0x4d0/0x4d1. ISA IRQ n is pin
//! n & 7 of the master (n < 8) or the slave.
//!
//! When the master has a request to interrupt for, it raises INTR once
//! (until the CPU acknowledges): [`AtpicBus::raise_intr`] fires LINT0 on
//! every active local APIC (ExtINT in virtual-wire mode, or the INTR pin
//! of a disabled APIC) and pulses IOAPIC pin 0 (ExtINT through the
//! IOAPIC), as FreeBSD's `vatpic_notify_intr`. A vCPU with an ExtINT
//! pending takes its vector from here on entry ([`Vatpic::accept_intr`]).
//!
//! As FreeBSD: only cascade mode with ICW4 in 8086 mode is accepted
//! (other initialisations fail the guest's access with EIO); ICW3 is
//! ignored; pins request nothing until their chip is initialised (an
//! acknowledge then gives vector 7: the base is 0); ICW1 clears IRR, IMR
//! and special mask mode but not ISR; the poll command is taken
//! only with the read-register bit (OCW3 RR); a poll read acknowledges
//! without raising INTR for the next request; IRQs 0, 1, 2, 8 and 13 are
//! always edge-triggered. Differences, where FreeBSD is not what the
//! hardware does:
//! - ICW4 clears AEOI and special fully nested mode when their bits are
//!   clear (FreeBSD only ever sets them, so a guest could not leave AEOI).
//! - ICW1 also lowers a raised output: the acknowledge that would lower
//!   it can no longer come (FreeBSD keeps it raised, and a slave reset
//!   that way never cascades again).
//! - An uninitialised chip still counts its pins' asserts and deasserts
//!   (FreeBSD ignores them, so a device's deassert after the guest's
//!   initialisation finds a count of zero for an assert from before).
//! - A pin's assert count stays within 0..=INT_MAX: a deassert at zero is
//!   ERANGE and an assert at the top E2BIG, both changing nothing
//!   (FreeBSD's count goes negative, after which the pin's edge request
//!   is never consumed and the IRQ repeats for good).
//! - An acknowledge with nothing to interrupt for returns the spurious
//!   vector (pin 7 of the chip) and only lets INTR be raised again: pin 7
//!   is not acknowledged (FreeBSD puts it in service, drops an IR7 edge
//!   request that is masked or waiting, and rotates in AEOI mode). A
//!   guest that, as on hardware, does not EOI a spurious IRQ 7 would
//!   otherwise find IRQ 7 blocked for good. The source is found by
//!   priority, not by comparing the vector with the slave's base.
//!
//! INTR is an edge, as in FreeBSD: raised once until acknowledged,
//! whether or not a vCPU took it. With every local APIC's LINT0 masked
//! and IOAPIC pin 0 masked, a raise reaches nobody and the 8259 stays
//! silent until an acknowledge (a poll) or VM_REINIT.
//!
//! # Lock order
//!
//! One mutex, `Vatpic::state`, held while INTR is raised (so raises keep
//! their order): it ranks before the vioapic, the vCPU and vlapic mutexes
//! it reaches through the bus, and is taken with no other lock held but
//! lock-all's serialiser and the callout gate (VM_REINIT; the timer
//! thread's RTC and PIT interrupts) or a guest-program mutex (a C
//! callback's `vm_isa_*`). Nothing the bus reaches takes it.

mod chip;
#[cfg(all(test, not(loom)))]
mod tests;

pub use chip::Chip;

use crate::error::{Error, Result};
use crate::sync::Mutex;

/// Command ports of the master and slave (their data ports follow).
pub const IO_ICU1: u16 = 0x20;
pub const IO_ICU2: u16 = 0xa0;
/// Edge/level control registers of the master and slave.
pub const IO_ELCR1: u16 = 0x4d0;
pub const IO_ELCR2: u16 = 0x4d1;
/// The master pin the slave's INTR drives.
const CASCADE_PIN: u8 = 2;
/// ELCR bits that can be set: IRQs 0, 1, 2 (master) and 8, 13 (slave) are
/// edge-only.
const ELCR_WRITABLE: [u8; 2] = [0xf8, 0xde];

/// What the 8259 pair drives.
pub trait AtpicBus {
    /// The master raised INTR: LINT0 on every active local APIC, and a
    /// pulse of IOAPIC pin 0. Called with the vatpic mutex held.
    fn raise_intr(&self);
}

/// What happens to an ISA IRQ line (VM_ISA_ASSERT/DEASSERT/PULSE_IRQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqOp {
    Assert,
    Deassert,
    Pulse,
}

/// Everything the vatpic mutex protects.
#[derive(Debug, Default, Clone, Copy)]
struct Pair {
    /// Master, slave.
    chips: [Chip; 2],
    /// ELCR of the master and slave: bit n, pin n level-triggered.
    elc: [u8; 2],
}

/// The 8259 pair of one VM.
#[derive(Debug, Default)]
pub struct Vatpic {
    /// Vatpic mutex. Protects: both chips and the ELCR. Rank: before the
    /// vioapic, vCPU and vlapic mutexes (held across `raise_intr`).
    state: Mutex<Pair>,
}

/// An ISA IRQ number from a C `int`; EINVAL when not 0..=15.
fn isa_irq(irq: i32) -> Result<u8> {
    u8::try_from(irq).ok().filter(|i| *i < 16).ok_or(Error::Inval)
}

impl Pair {
    /// ISA IRQ `irq`'s assert count moves by one (see `Chip::set_pin`).
    fn set_pin(&mut self, irq: u8, asserted: bool) -> Result<()> {
        let (chip, pin) = (usize::from(irq >> 3), irq & 7);
        let level = self.elc[chip] & (1 << pin) != 0;
        self.chips[chip].set_pin(pin, asserted, level)
    }

    /// The slave's output pulses the master's cascade pin (an assert and
    /// its deassert, so the count is back where it was).
    /// It requests on a master between its ICW1 and ICW4 too (FreeBSD
    /// `vatpic_set_pinstate`).
    fn pulse_cascade(&mut self) {
        let level = self.elc[0] & (1 << CASCADE_PIN) != 0;
        let master = &mut self.chips[0];
        if master.set_cascade_pin(CASCADE_PIN, true, level).is_ok() {
            let _ = master.set_cascade_pin(CASCADE_PIN, false, level);
        }
    }

    /// `vatpic_notify_intr`: a slave with a request to interrupt for
    /// pulses the master's cascade pin; a master with one raises INTR.
    /// Each raises once until acknowledged. Returns whether the master
    /// raised INTR.
    fn notify(&mut self) -> bool {
        let slave = &mut self.chips[1];
        if !slave.intr_raised && slave.highest_irr_pin().is_some() {
            slave.intr_raised = true;
            self.pulse_cascade();
        }
        let master = &mut self.chips[0];
        if !master.intr_raised && master.highest_irr_pin().is_some() {
            master.intr_raised = true;
            return true;
        }
        false
    }

    /// The CPU's interrupt acknowledge (`vatpic_pending_intr` and
    /// `vatpic_intr_accepted` in one step): the vector of the highest
    /// priority request, through the slave if that is the cascade pin;
    /// the chip's spurious vector (pin 7) if there is none.
    fn accept(&mut self) -> u8 {
        let master_pin = self.chips[0].highest_irr_pin();
        let chip = if master_pin == Some(CASCADE_PIN) {
            self.chips[0].pin_accepted(CASCADE_PIN);
            1
        } else {
            0
        };
        let c = &mut self.chips[chip];
        let pin = if chip == 1 { c.highest_irr_pin() } else { master_pin };
        match pin {
            Some(p) => {
                c.pin_accepted(p);
                c.irq_base + p
            }
            None => {
                c.intr_raised = false;
                c.irq_base + 7
            }
        }
    }
}

impl Vatpic {
    /// A pair as before the guest's first ICW1: uninitialised (pins are
    /// counted but request nothing), every pin edge-triggered.
    pub fn new() -> Self {
        Vatpic::default()
    }

    /// Back to that state (VM_REINIT).
    pub fn reset(&self) {
        *self.state.lock() = Pair::default();
    }

    /// Runs `f` on the state under the mutex, raising INTR (still under
    /// it) if `f` says so.
    fn with<R>(&self, bus: &dyn AtpicBus, f: impl FnOnce(&mut Pair) -> (R, bool)) -> R {
        let mut s = self.state.lock();
        let (r, raise) = f(&mut s);
        if raise {
            bus.raise_intr();
        }
        r
    }

    /// VM_ISA_ASSERT/DEASSERT/PULSE_IRQ's 8259 half: EINVAL unless `irq`
    /// is 0..=15; while its chip is uninitialised only counted (it
    /// requests nothing); ERANGE for a deassert of a pin not asserted and
    /// E2BIG for an assert at the top count, changing nothing (FreeBSD
    /// counts below zero, and the pin's edge request is then never
    /// consumed: the IRQ repeats for good).
    pub fn set_irq(&self, irq: i32, op: IrqOp, bus: &dyn AtpicBus) -> Result<()> {
        let irq = isa_irq(irq)?;
        self.with(bus, |s| {
            if op != IrqOp::Deassert {
                if let Err(e) = s.set_pin(irq, true) {
                    return (Err(e), false);
                }
            }
            // A pulse's rising edge may raise INTR before its falling edge.
            let mut raise = op == IrqOp::Pulse && s.notify();
            let r = if op != IrqOp::Assert { s.set_pin(irq, false) } else { Ok(()) };
            raise |= s.notify();
            (r, raise)
        })
    }

    /// VM_ISA_SET_IRQ_TRIGGER: `irq`'s ELCR bit. EINVAL for an IRQ outside
    /// 0..=15, or level on an edge-only IRQ (0, 1, 2, 8, 13).
    pub fn set_irq_trigger(&self, irq: i32, level: bool) -> Result<()> {
        let irq = isa_irq(irq)?;
        let (chip, bit) = (usize::from(irq >> 3), 1u8 << (irq & 7));
        if level && ELCR_WRITABLE[chip] & bit == 0 {
            return Err(Error::Inval);
        }
        let mut s = self.state.lock();
        if level {
            s.elc[chip] |= bit;
        } else {
            s.elc[chip] &= !bit;
        }
        Ok(())
    }

    /// The ELCR pair (bit n: IRQ n level-triggered).
    pub fn elcr(&self) -> u16 {
        let s = self.state.lock();
        u16::from_le_bytes(s.elc)
    }

    /// A copy of the master (0) or slave (1) chip (tests, debugging).
    pub fn chip(&self, i: usize) -> Chip {
        self.state.lock().chips[i & 1]
    }

    /// Whether `port` is one of the pair's.
    pub fn is_port(port: u16) -> bool {
        matches!(port, 0x20 | 0x21 | 0xa0 | 0xa1 | IO_ELCR1 | IO_ELCR2)
    }

    /// A guest `in` from one of the pair's ports. EIO unless one byte.
    pub fn port_in(&self, port: u16, bytes: u8) -> Result<u8> {
        if bytes != 1 {
            return Err(Error::Io);
        }
        let mut s = self.state.lock();
        Ok(match port {
            IO_ELCR1 => s.elc[0],
            IO_ELCR2 => s.elc[1],
            _ => s.chips[usize::from(port >= IO_ICU2)].read(port & 1 != 0),
        })
    }

    /// A guest `out` to one of the pair's ports. EIO unless one byte, or
    /// for an initialisation the emulation refuses (the write still takes
    /// effect up to the refusal, as FreeBSD's).
    pub fn port_out(&self, port: u16, bytes: u8, val: u8, bus: &dyn AtpicBus) -> Result<()> {
        if bytes != 1 {
            return Err(Error::Io);
        }
        self.with(bus, |s| {
            let chip = match port {
                IO_ELCR1 | IO_ELCR2 => {
                    let i = usize::from(port == IO_ELCR2);
                    s.elc[i] = val & ELCR_WRITABLE[i];
                    return (Ok(()), false);
                }
                _ => usize::from(port >= IO_ICU2),
            };
            let level = s.elc[chip];
            let c = &mut s.chips[chip];
            let was_ready = c.ready;
            let r = if port & 1 != 0 {
                c.data_write(chip == 0, val)
            } else {
                let r = if val & chip::ICW1_RESET != 0 { c.icw1(val) } else { Ok(()) };
                if c.ready {
                    c.command_write(val);
                }
                r
            };
            if c.ready && !was_ready {
                c.request_asserted_levels(level);
            }
            let raise = s.chips[chip].ready && s.notify();
            (r, raise)
        })
    }

    /// A vCPU takes its pending ExtINT: the vector to inject (the request
    /// acknowledged, INTR raised again for the next one).
    pub fn accept_intr(&self, bus: &dyn AtpicBus) -> u8 {
        self.with(bus, |s| {
            let v = s.accept();
            (v, s.notify())
        })
    }
}
