//! Per-vCPU architectural state the VMM keeps for the guest: the register
//! file (FreeBSD `enum vm_reg_name` order), segment descriptors,
//! capabilities, and event-injection state (intinfo, pending exception).

use crate::error::{Error, Result};

/// Register numbers, FreeBSD 14 `enum vm_reg_name` values.
pub mod reg {
    pub const RAX: usize = 0;
    pub const RBX: usize = 1;
    pub const RCX: usize = 2;
    pub const RDX: usize = 3;
    pub const CR0: usize = 15;
    pub const CR3: usize = 16;
    pub const CR4: usize = 17;
    pub const RSP: usize = 19;
    pub const RIP: usize = 20;
    pub const RFLAGS: usize = 21;
    /// First segment register (ES); ES..TR are 22..=29.
    pub const ES: usize = 22;
    pub const CS: usize = 23;
    pub const TR: usize = 29;
    pub const IDTR: usize = 30;
    pub const GDTR: usize = 31;
    pub const EFER: usize = 32;
    pub const INTR_SHADOW: usize = 38;
    /// `VM_REG_LAST`: number of registers.
    pub const LAST: usize = 49;
}

/// Capabilities, FreeBSD 14 `enum vm_cap_type` (`VM_CAP_MAX` is the count).
pub const CAP_MAX: usize = 11;
/// VM_CAP_IPI_EXIT: INIT and STARTUP IPIs leave VM_RUN as VM_EXITCODE_IPI.
pub const CAP_IPI_EXIT: i32 = 8;

/// RFLAGS.IF: the guest accepts maskable interrupts.
pub const RFLAGS_IF: u64 = 1 << 9;

/// A segment descriptor (`struct seg_desc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegDesc {
    pub base: u64,
    pub limit: u32,
    pub access: u32,
}

/// `VM_INTINFO_*` bits of an event-injection word (Intel format).
pub mod intinfo {
    pub const VECTOR: u64 = 0xff;
    pub const DEL_ERRCODE: u64 = 0x800;
    pub const TYPE: u64 = 0x700;
    pub const HWINTR: u64 = 0 << 8;
    pub const NMI: u64 = 2 << 8;
    pub const HWEXCEPTION: u64 = 3 << 8;
    pub const SWINTR: u64 = 4 << 8;
    pub const RSVD: u64 = 0x7fff_f000;
    pub const VALID: u64 = 1 << 31;
}

const IDT_NMI: u64 = 2;
const IDT_DF: i32 = 8;
/// CR0.PE: protected mode.
const CR0_PE: u64 = 1;

/// Architectural state of one vCPU. Owned by whoever holds the vCPU
/// FROZEN or RUNNING; the `Vm` keeps it behind a per-vCPU leaf mutex.
#[derive(Debug, Clone)]
pub struct VcpuRegs {
    regs: [u64; reg::LAST],
    /// Descriptors for ES..=TR (0..8), IDTR (8), GDTR (9).
    segs: [SegDesc; 10],
    caps: [i32; CAP_MAX],
    /// Event the guest was delivering when it exited (`exitintinfo`).
    pub exitintinfo: u64,
    /// Exception queued with VM_INJECT_EXCEPTION, as an intinfo word.
    pub exc_pending: Option<u64>,
    /// RIP at which the guest resumes (VM_RESTART_INSTRUCTION rewinds it).
    pub nextrip: u64,
}

impl Default for VcpuRegs {
    fn default() -> Self {
        let mut r = VcpuRegs {
            regs: [0; reg::LAST],
            segs: [SegDesc::default(); 10],
            caps: [0; CAP_MAX],
            exitintinfo: 0,
            exc_pending: None,
            nextrip: 0,
        };
        // Bit 1 of RFLAGS is reserved and reads as one.
        r.regs[reg::RFLAGS] = 0x2;
        r
    }
}

fn reg_index(regnum: i32) -> Result<usize> {
    usize::try_from(regnum)
        .ok()
        .filter(|r| *r < reg::LAST)
        .ok_or(Error::Inval)
}

fn seg_index(regnum: i32) -> Result<usize> {
    let r = reg_index(regnum)?;
    match r {
        reg::ES..=reg::TR => Ok(r - reg::ES),
        reg::IDTR => Ok(8),
        reg::GDTR => Ok(9),
        _ => Err(Error::Inval),
    }
}

fn cap_index(cap: i32) -> Result<usize> {
    usize::try_from(cap)
        .ok()
        .filter(|c| *c < CAP_MAX)
        .ok_or(Error::Inval)
}

impl VcpuRegs {
    /// `vm_get_register`; EINVAL for an unknown register.
    pub fn get(&self, regnum: i32) -> Result<u64> {
        Ok(self.regs[reg_index(regnum)?])
    }

    /// `vm_set_register`; setting RIP also sets where the guest resumes.
    pub fn set(&mut self, regnum: i32, val: u64) -> Result<()> {
        let r = reg_index(regnum)?;
        self.regs[r] = val;
        if r == reg::RIP {
            self.nextrip = val;
        }
        Ok(())
    }

    pub fn rip(&self) -> u64 {
        self.regs[reg::RIP]
    }

    pub fn get_seg(&self, regnum: i32) -> Result<SegDesc> {
        Ok(self.segs[seg_index(regnum)?])
    }

    pub fn set_seg(&mut self, regnum: i32, desc: SegDesc) -> Result<()> {
        self.segs[seg_index(regnum)?] = desc;
        Ok(())
    }

    pub fn get_cap(&self, cap: i32) -> Result<i32> {
        Ok(self.caps[cap_index(cap)?])
    }

    pub fn set_cap(&mut self, cap: i32, val: i32) -> Result<()> {
        self.caps[cap_index(cap)?] = val;
        Ok(())
    }

    /// `vm_exit_intinfo`: validate and record the event being delivered at
    /// exit. An invalid word (VALID clear) records 0.
    pub fn set_exitintinfo(&mut self, info: u64) -> Result<()> {
        let info = if info & intinfo::VALID != 0 {
            let ty = info & intinfo::TYPE;
            let vector = info & intinfo::VECTOR;
            if ty == intinfo::NMI && vector != IDT_NMI {
                return Err(Error::Inval);
            }
            if ty == intinfo::HWEXCEPTION && vector >= 32 {
                return Err(Error::Inval);
            }
            if info & intinfo::RSVD != 0 {
                return Err(Error::Inval);
            }
            info
        } else {
            0
        };
        self.exitintinfo = info;
        Ok(())
    }

    /// `vm_get_intinfo`: (exitintinfo, pending exception as intinfo).
    pub fn intinfo(&self) -> (u64, u64) {
        (self.exitintinfo, self.exc_pending.unwrap_or(0))
    }

    /// `vm_inject_exception`, as FreeBSD 14: queue an exception; EINVAL for
    /// a vector outside 0..32 or #DF (a double fault only ever results
    /// from nested faults), EBUSY if one is already pending. The error code
    /// is dropped in real mode (CR0.PE clear), and the interrupt shadow
    /// (STI / MOV SS blocking) ends, as it does when the guest incurs an
    /// exception.
    pub fn inject_exception(
        &mut self,
        vector: i32,
        errcode: Option<u32>,
        restart_instruction: bool,
    ) -> Result<()> {
        if !(0..32).contains(&vector) || vector == IDT_DF {
            return Err(Error::Inval);
        }
        if self.exc_pending.is_some() {
            return Err(Error::Busy);
        }
        let errcode = errcode.filter(|_| self.regs[reg::CR0] & CR0_PE != 0);
        self.regs[reg::INTR_SHADOW] = 0;
        let mut info = intinfo::VALID | intinfo::HWEXCEPTION | vector as u64;
        if let Some(code) = errcode {
            info |= intinfo::DEL_ERRCODE | (u64::from(code) << 32);
        }
        if restart_instruction {
            self.nextrip = self.regs[reg::RIP];
        }
        self.exc_pending = Some(info);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_round_trip_and_reject_unknown() {
        let mut r = VcpuRegs::default();
        for i in 0..reg::LAST as i32 {
            r.set(i, 0x1000 + i as u64).unwrap();
            assert_eq!(r.get(i), Ok(0x1000 + i as u64));
        }
        assert_eq!(r.get(reg::LAST as i32), Err(Error::Inval));
        assert_eq!(r.set(-1, 0), Err(Error::Inval));
        r.set(reg::RIP as i32, 0xfff0).unwrap();
        assert_eq!(r.nextrip, 0xfff0);
    }

    #[test]
    fn segment_descriptors_only_for_segment_registers() {
        let mut r = VcpuRegs::default();
        let d = SegDesc { base: 0x1000, limit: 0xffff, access: 0x93 };
        for regnum in [reg::ES, reg::CS, reg::TR, reg::IDTR, reg::GDTR] {
            r.set_seg(regnum as i32, d).unwrap();
            assert_eq!(r.get_seg(regnum as i32), Ok(d));
        }
        assert_eq!(r.set_seg(reg::RAX as i32, d), Err(Error::Inval));
        assert_eq!(r.get_seg(reg::EFER as i32), Err(Error::Inval));
    }

    #[test]
    fn capabilities_and_intinfo() {
        let mut r = VcpuRegs::default();
        r.set_cap(0, 1).unwrap();
        assert_eq!(r.get_cap(0), Ok(1));
        assert_eq!(r.get_cap(CAP_MAX as i32), Err(Error::Inval));
        // NMI type needs vector 2; exceptions need vector < 32.
        let nmi = intinfo::VALID | intinfo::NMI | 3;
        assert_eq!(r.set_exitintinfo(nmi), Err(Error::Inval));
        let exc = intinfo::VALID | intinfo::HWEXCEPTION | 40;
        assert_eq!(r.set_exitintinfo(exc), Err(Error::Inval));
        let ok = intinfo::VALID | intinfo::HWEXCEPTION | 14;
        r.set_exitintinfo(ok).unwrap();
        assert_eq!(r.intinfo().0, ok);
        r.set_exitintinfo(5).unwrap(); // not VALID: recorded as 0
        assert_eq!(r.intinfo().0, 0);
        r.inject_exception(13, Some(0), false).unwrap();
        assert_eq!(r.inject_exception(6, None, false), Err(Error::Busy));
        assert_eq!(r.intinfo().1 & 0xff, 13);
    }

    #[test]
    fn injected_exceptions_follow_freebsd() {
        let mut r = VcpuRegs::default();
        for bad in [-1, 8, 32] {
            assert_eq!(r.inject_exception(bad, None, false), Err(Error::Inval), "vector {bad}");
        }
        // Real mode: no error code; the interrupt shadow ends.
        r.set(reg::INTR_SHADOW as i32, 1).unwrap();
        r.inject_exception(13, Some(0x10), false).unwrap();
        assert_eq!(r.intinfo().1, intinfo::VALID | intinfo::HWEXCEPTION | 13);
        assert_eq!(r.get(reg::INTR_SHADOW as i32), Ok(0));
        // Protected mode: the error code is delivered.
        let mut r = VcpuRegs::default();
        r.set(reg::CR0 as i32, CR0_PE).unwrap();
        r.inject_exception(14, Some(0x10), false).unwrap();
        let want = intinfo::VALID | intinfo::HWEXCEPTION | intinfo::DEL_ERRCODE | 14 | 0x10 << 32;
        assert_eq!(r.intinfo().1, want);
    }
}
