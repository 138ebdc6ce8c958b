//! Guest-linear to guest-physical translation (FreeBSD 14 `_vm_gla2gpa`,
//! behind VM_GLA2GPA and VM_GLA2GPA_NOFAULT): a walk of the guest's page
//! tables in guest memory for the paging mode the caller names.
//!
//! As FreeBSD, the walk takes only what `struct vm_guest_paging` gives
//! (CR3, CPL, CPU mode, paging mode) and reads no vCPU register: so no
//! CR0.WP (supervisor writes to read-only pages fault), no NX or SMEP/SMAP,
//! no CR4.PSE check (32-bit PDEs with PS are 4 MiB pages), and the only
//! reserved-bit check is PS at the top level. A 64-bit-mode address must
//! be canonical (48 bits, also with 5-level paging). The walk sets the
//! accessed bit at each level and the dirty bit of the leaf on a write,
//! with compare-and-swap, walking again if an entry changed under it; the
//! `check_only` form (the NOFAULT ioctl) writes nothing. One walk serves
//! every paging mode, with the entry format as its parameter; in 32-bit
//! paging only CR3's low 32 bits count, as on hardware (FreeBSD keeps the
//! high bits of the value it is given).

#[cfg(all(test, not(loom)))]
mod tests;

use crate::error::Result;
use crate::mem::{GuestMemory, PROT_EXEC, PROT_WRITE};

/// `enum vm_paging_mode`.
pub const PAGING_MODE_FLAT: i32 = 0;
pub const PAGING_MODE_32: i32 = 1;
pub const PAGING_MODE_PAE: i32 = 2;
pub const PAGING_MODE_64: i32 = 3;
pub const PAGING_MODE_64_LA57: i32 = 4;
/// `enum vm_cpu_mode`: real mode.
pub const CPU_MODE_REAL: i32 = 0;
/// `enum vm_cpu_mode`: protected mode.
pub const CPU_MODE_PROTECTED: i32 = 1;
/// `enum vm_cpu_mode`: compatibility mode (long mode, 32-bit code).
pub const CPU_MODE_COMPATIBILITY: i32 = 2;
/// `enum vm_cpu_mode`: 64-bit mode (the one with canonical addresses).
pub const CPU_MODE_64BIT: i32 = 3;

const PG_V: u64 = 0x001;
const PG_RW: u64 = 0x002;
const PG_U: u64 = 0x004;
const PG_A: u64 = 0x020;
const PG_M: u64 = 0x040;
const PG_PS: u64 = 0x080;

/// Page-fault error code bits.
pub const PGEX_P: u32 = 0x01;
pub const PGEX_W: u32 = 0x02;
pub const PGEX_U: u32 = 0x04;
pub const PGEX_RSV: u32 = 0x08;
pub const PGEX_I: u32 = 0x10;

/// `struct vm_guest_paging`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPaging {
    pub cr3: u64,
    pub cpl: i32,
    pub cpu_mode: i32,
    pub paging_mode: i32,
}

/// The fault the guest takes when the translation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFault {
    /// #PF with this error code (CR2 = the address).
    PageFault(u32),
    /// #GP(0): a non-canonical address.
    GeneralProtection,
}

/// `pf_error_code`.
fn pf_error_code(usermode: bool, prot: u32, rsvd: bool, pte: u64) -> u32 {
    let mut code = 0;
    if pte & PG_V != 0 {
        code |= PGEX_P;
    }
    if prot & PROT_WRITE != 0 {
        code |= PGEX_W;
    }
    if usermode {
        code |= PGEX_U;
    }
    if rsvd {
        code |= PGEX_RSV;
    }
    if prot & PROT_EXEC != 0 {
        code |= PGEX_I;
    }
    code
}

/// Bits 63:48 copy bit 47.
fn canonical(gla: u64) -> bool {
    canonical_for(gla, 48)
}

/// Whether `addr` is canonical for `bits`-bit linear addresses (48, or 57
/// with 5-level paging): its top bits all copy bit `bits - 1`.
pub(crate) fn canonical_for(addr: u64, bits: u32) -> bool {
    let top = (addr as i64) >> (bits - 1);
    top == 0 || top == -1
}

/// A page-table format: entry size, index bits per level, and the
/// physical-address bits an entry holds.
#[derive(Debug, Clone, Copy)]
struct Format {
    width: u8,
    index_bits: u32,
    phys_mask: u64,
}

/// 32-bit paging: 4-byte entries, 10 bits a level, 32-bit addresses.
const PT32: Format = Format { width: 4, index_bits: 10, phys_mask: 0xffff_ffff };
/// PAE, 4- and 5-level paging: 8-byte entries, 9 bits a level, 52 bits.
const PT64: Format = Format { width: 8, index_bits: 9, phys_mask: 0x000f_ffff_ffff_ffff };

/// One walk's outcome: a translation, a guest fault, or "an entry changed
/// under a compare-and-swap: walk again".
enum Walk {
    Done(std::result::Result<u64, GuestFault>),
    Restart,
}

/// Translates `gla` for an access of `prot` (`PROT_READ`, `PROT_WRITE`,
/// `PROT_EXEC`): the guest-physical address, or the fault the guest would
/// take. `Fault` (EFAULT) when a page-table page is not read-write guest
/// memory. Unless `check_only`, sets accessed/dirty bits on the way.
pub fn gla2gpa(
    mem: &GuestMemory,
    paging: &GuestPaging,
    gla: u64,
    prot: u32,
    check_only: bool,
) -> Result<std::result::Result<u64, GuestFault>> {
    loop {
        if let Walk::Done(r) = walk(mem, paging, gla, prot, check_only)? {
            return Ok(r);
        }
    }
}

fn walk(mem: &GuestMemory, paging: &GuestPaging, gla: u64, prot: u32, check_only: bool) -> Result<Walk> {
    let usermode = paging.cpl == 3;
    let writable = prot & PROT_WRITE != 0;
    let pf = |rsvd: bool, pte: u64| Walk::Done(Err(GuestFault::PageFault(pf_error_code(usermode, prot, rsvd, pte))));
    if paging.cpu_mode == CPU_MODE_64BIT && !canonical(gla) {
        return Ok(Walk::Done(Err(GuestFault::GeneralProtection)));
    }
    if paging.paging_mode == PAGING_MODE_FLAT {
        return Ok(Walk::Done(Ok(gla)));
    }
    // Sets the accessed bit, then (leaf, write) the dirty bit; false when
    // an entry changed under the compare-and-swap.
    let mark = |addr: u64, width: u8, pte: u64, bit: u64| -> Result<bool> {
        if check_only || pte & bit != 0 {
            return Ok(true);
        }
        mem.cmpxchg_pte(addr, width, pte, pte | bit)
    };
    let blocked = |pte: u64| pte & PG_V == 0 || (usermode && pte & PG_U == 0) || (writable && pte & PG_RW == 0);

    let (format, mut ptp, mut nlevels) = match paging.paging_mode {
        PAGING_MODE_32 => (PT32, paging.cr3, 2),
        PAGING_MODE_PAE => {
            // The PDPTE: only its present bit is looked at.
            let addr = (paging.cr3 & 0xffff_ffe0) + ((gla >> 30) & 3) * 8;
            let pte = mem.read_pte(addr, 8)?;
            if pte & PG_V == 0 {
                return Ok(pf(false, pte));
            }
            (PT64, pte, 2)
        }
        PAGING_MODE_64_LA57 => (PT64, paging.cr3, 5),
        _ => (PT64, paging.cr3, 4),
    };
    loop {
        nlevels -= 1;
        let shift = 12 + nlevels * format.index_bits;
        let index = (gla >> shift) & ((1 << format.index_bits) - 1);
        let addr = (ptp & format.phys_mask & !0xfff) + index * u64::from(format.width);
        let pte = mem.read_pte(addr, format.width)?;
        if blocked(pte) {
            return Ok(pf(false, pte));
        }
        if !mark(addr, format.width, pte, PG_A)? {
            return Ok(Walk::Restart);
        }
        // PS ends the walk above the last level: a 4 MiB page in 32-bit
        // paging (CR4.PSE is not consulted), 2 MiB or 1 GiB in the others.
        if nlevels == 0 || pte & PG_PS != 0 {
            // PS above the 1 GiB level is reserved.
            if shift > 30 {
                return Ok(pf(true, pte));
            }
            if writable && !mark(addr, format.width, pte, PG_M)? {
                return Ok(Walk::Restart);
            }
            let frame = ((pte >> shift) << shift) & format.phys_mask;
            return Ok(Walk::Done(Ok(frame | (gla & ((1 << shift) - 1)))));
        }
        ptp = pte;
    }
}
