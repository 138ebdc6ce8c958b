//! One 8259A ([`Chip`]): its registers, the initialisation (ICW1-4) and
//! operation (OCW1-3) command words, priority resolution, and what
//! acknowledging a pin does. The pair, its pins and the cascade are in
//! `vatpic`.

use crate::error::{Error, Result};

/// ICW1 (command port, bit 4 set): ICW4 needed, single (no cascade).
pub const ICW1_IC4: u8 = 0x01;
pub const ICW1_SNGL: u8 = 0x02;
pub const ICW1_RESET: u8 = 0x10;
/// ICW4: 8086 mode, automatic EOI, special fully nested mode.
pub const ICW4_8086: u8 = 0x01;
pub const ICW4_AEOI: u8 = 0x02;
pub const ICW4_SFNM: u8 = 0x10;
/// OCW2 (command port, bits 4 and 3 clear): EOI, specific level, rotate.
pub const OCW2_EOI: u8 = 0x20;
pub const OCW2_SL: u8 = 0x40;
pub const OCW2_R: u8 = 0x80;
/// OCW3 (command port, bit 3 set): read ISR (else IRR), read register,
/// poll, special mask mode, enable the SMM bit.
pub const OCW3_SEL: u8 = 0x08;
pub const OCW3_RIS: u8 = 0x01;
pub const OCW3_RR: u8 = 0x02;
pub const OCW3_P: u8 = 0x04;
pub const OCW3_SMM: u8 = 0x20;
pub const OCW3_ESMM: u8 = 0x40;

/// One 8259A. Zeroed is its state before the guest's first ICW1 (FreeBSD
/// allocates it zeroed): not ready, so its pins only count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chip {
    /// Initialised (ICW4 accepted): pins request, OCWs apply.
    pub ready: bool,
    /// The ICW expected next on the data port (2-4), or 0 (OCW1).
    pub icw_num: u8,
    /// OCW3 chose ISR (else IRR) for command-port reads.
    pub read_isr: bool,
    pub aeoi: bool,
    /// The next command-port read polls (OCW3 P bit).
    pub poll: bool,
    /// Rotate on (automatic) EOI.
    pub rotate: bool,
    /// Special fully nested mode (master only).
    pub sfn: bool,
    /// Special mask mode.
    pub smm: bool,
    /// Vector of pin 0 (ICW2, low 3 bits clear).
    pub irq_base: u8,
    /// IRR, ISR, IMR.
    pub request: u8,
    pub service: u8,
    pub mask: u8,
    /// Per pin: asserts minus deasserts (0..=i32::MAX).
    pub acnt: [i32; 8],
    /// The lowest-priority pin; priority runs from the one after it.
    pub lowprio: u8,
    /// INTR was raised for a request not yet acknowledged: raise again
    /// only after an acknowledge.
    pub intr_raised: bool,
}

/// Pins in priority order, highest first.
fn by_priority(lowprio: u8) -> impl Iterator<Item = u8> {
    (1..=8).map(move |i| (lowprio + i) & 7)
}

impl Chip {
    /// The in-service pin a non-specific EOI retires: the highest priority
    /// one (in special mask mode, one not masked).
    pub fn highest_isr_pin(&self) -> Option<u8> {
        by_priority(self.lowprio).find(|&p| {
            let bit = 1 << p;
            self.service & bit != 0 && !(self.smm && self.mask & bit != 0)
        })
    }

    /// The pin to interrupt for: the highest priority request that is not
    /// masked and beats every pin in service. The master's cascade pin in
    /// service does not hold the slave back in special fully nested mode;
    /// in special mask mode nothing in service holds anything back.
    pub fn highest_irr_pin(&self) -> Option<u8> {
        let mut serviced = self.service;
        if self.sfn {
            serviced &= !(1 << 2);
        }
        if self.smm {
            serviced = 0;
        }
        for p in by_priority(self.lowprio) {
            let bit = 1 << p;
            if serviced & bit != 0 {
                return None;
            }
            if self.request & bit != 0 && self.mask & bit == 0 {
                return Some(p);
            }
        }
        None
    }

    /// ICW1: start initialisation. Clears IRR, IMR, special mask mode, the
    /// read selection and the raised output; IR7 becomes lowest priority.
    /// Only cascade mode with ICW4 is supported (FreeBSD): anything else
    /// is `Io` (the guest's access fails VM_RUN with EIO), the chip left
    /// uninitialised.
    pub fn icw1(&mut self, val: u8) -> Result<()> {
        self.ready = false;
        // The output starts over with the requests (FreeBSD keeps a raise
        // nobody can acknowledge any more: a slave reset this way with a
        // raise outstanding never cascades again).
        self.intr_raised = false;
        self.icw_num = 1;
        self.request = 0;
        self.mask = 0;
        self.lowprio = 7;
        self.read_isr = false;
        self.poll = false;
        self.smm = false;
        if val & ICW1_SNGL != 0 || val & ICW1_IC4 == 0 {
            return Err(Error::Io);
        }
        self.icw_num = 2;
        Ok(())
    }

    /// A data-port write: the ICW due, else OCW1 (the mask).
    pub fn data_write(&mut self, master: bool, val: u8) -> Result<()> {
        match self.icw_num {
            2 => {
                self.irq_base = val & 0xf8;
                self.icw_num = 3;
            }
            // The cascade wiring is fixed: ICW3 is taken as written.
            3 => self.icw_num = 4,
            4 => return self.icw4(master, val),
            _ => self.mask = val,
        }
        Ok(())
    }

    /// ICW4: 8086 mode is required. AEOI and (on the master) special fully
    /// nested mode are set or cleared as written (FreeBSD only ever sets
    /// them).
    fn icw4(&mut self, master: bool, val: u8) -> Result<()> {
        if val & ICW4_8086 == 0 {
            return Err(Error::Io);
        }
        self.aeoi = val & ICW4_AEOI != 0;
        self.sfn = master && val & ICW4_SFNM != 0;
        self.icw_num = 0;
        self.ready = true;
        Ok(())
    }

    /// A command-port write once ready: OCW3 if bit 3 is set, else OCW2.
    pub fn command_write(&mut self, val: u8) {
        if val & OCW3_SEL != 0 {
            self.ocw3(val);
        } else {
            self.ocw2(val);
        }
    }

    /// OCW2: the rotate bit is kept; an EOI (specific, or of the highest
    /// in-service pin) retires a pin, which becomes lowest priority if
    /// rotating; "set priority" (specific, no EOI, rotate) names the
    /// lowest-priority pin.
    fn ocw2(&mut self, val: u8) {
        self.rotate = val & OCW2_R != 0;
        if val & OCW2_EOI != 0 {
            let pin = if val & OCW2_SL != 0 { Some(val & 7) } else { self.highest_isr_pin() };
            if let Some(p) = pin {
                self.service &= !(1 << p);
                if self.rotate {
                    self.lowprio = p;
                }
            }
        } else if val & OCW2_SL != 0 && self.rotate {
            self.lowprio = val & 7;
        }
    }

    /// OCW3: special mask mode (when ESMM is set); with RR, the register
    /// command-port reads return and the poll bit.
    fn ocw3(&mut self, val: u8) {
        if val & OCW3_ESMM != 0 {
            self.smm = val & OCW3_SMM != 0;
        }
        if val & OCW3_RR != 0 {
            self.read_isr = val & OCW3_RIS != 0;
            self.poll = val & OCW3_P != 0;
        }
    }

    /// A port read: after a poll command, the poll byte (bit 7 and the
    /// pin, acknowledging it; 0 when nothing is requested); else IMR on
    /// the data port, ISR or IRR (as OCW3 chose) on the command port.
    pub fn read(&mut self, data_port: bool) -> u8 {
        if self.poll {
            self.poll = false;
            return match self.highest_irr_pin() {
                Some(p) => {
                    self.pin_accepted(p);
                    0x80 | p
                }
                None => 0,
            };
        }
        if data_port {
            self.mask
        } else if self.read_isr {
            self.service
        } else {
            self.request
        }
    }

    /// The CPU acknowledged `pin`: INTR may be raised again; an edge
    /// request whose pin is no longer asserted is consumed; the pin goes
    /// in service, or in AEOI mode is retired at once (becoming lowest
    /// priority if rotating).
    pub fn pin_accepted(&mut self, pin: u8) {
        self.intr_raised = false;
        if self.acnt[usize::from(pin)] == 0 {
            self.request &= !(1 << pin);
        }
        if self.aeoi {
            if self.rotate {
                self.lowprio = pin;
            }
        } else {
            self.service |= 1 << pin;
        }
    }

    /// Just initialised: a level-triggered pin (bit set in `level`) whose
    /// line is asserted requests, its count having followed the line
    /// meanwhile; an edge pin waits for its next rising edge (ICW1 reset
    /// the edge sense, as on hardware).
    pub fn request_asserted_levels(&mut self, level: u8) {
        for pin in 0..8 {
            if level & (1 << pin) != 0 && self.acnt[pin] > 0 {
                self.request |= 1 << pin;
            }
        }
    }

    /// Pin `pin`'s assert count moves by one (`asserted`: up); `level`:
    /// the ELCR makes it level-triggered. Once the chip is initialised, a
    /// rising edge, or a level pin still asserted, requests; a level pin's
    /// falling edge withdraws its request (an edge request stays until
    /// acknowledged). Before, the count only follows the line: a line
    /// asserted then deasserted across the initialisation balances. The
    /// count stays within 0..=i32::MAX: a deassert at 0 is `Range`, an
    /// assert at the top `TooBig`, and neither changes anything.
    pub fn set_pin(&mut self, pin: u8, asserted: bool, level: bool) -> Result<()> {
        self.move_pin(pin, asserted, level, self.ready)
    }

    /// The slave's output on the master's cascade pin: as [`Chip::set_pin`],
    /// but it also requests while the master is between its ICW1 and ICW4,
    /// as FreeBSD's `vatpic_set_pinstate` (which does not look at `ready`)
    /// does, so that a slave initialised before the master's ICW4 is heard.
    pub fn set_cascade_pin(&mut self, pin: u8, asserted: bool, level: bool) -> Result<()> {
        self.move_pin(pin, asserted, level, self.ready || self.icw_num != 0)
    }

    fn move_pin(&mut self, pin: u8, asserted: bool, level: bool, request: bool) -> Result<()> {
        let cnt = &mut self.acnt[usize::from(pin)];
        let old = *cnt;
        *cnt = if asserted {
            old.checked_add(1).ok_or(Error::TooBig)?
        } else if old > 0 {
            old - 1
        } else {
            return Err(Error::Range);
        };
        let new = *cnt;
        if !request {
            return Ok(());
        }
        let bit = 1 << pin;
        if (old == 0 && new == 1) || (new > 0 && level) {
            self.request |= bit;
        } else if old == 1 && new == 0 && level {
            self.request &= !bit;
        }
        Ok(())
    }
}
