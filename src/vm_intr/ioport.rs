//! The I/O ports emulated inside VM_RUN (FreeBSD `vmm_ioport.c`): the RTC
//! (0x70, 0x71) and the ACPI PM timer (0x408). Every other port exits to
//! the caller. The 8259/8254 ports FreeBSD also emulates exit too (no
//! 8259 or 8254 here).

use std::time::Instant;

use crate::error::Result;
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
            _ => None,
        }
    }
}
