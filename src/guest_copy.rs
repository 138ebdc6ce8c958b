//! The guest-linear copy setup of libvmmapi's `vm_copy_setup`: a range
//! translated page by page through the guest's page tables into host
//! addresses of guest RAM (what bhyve's instruction emulation copies
//! through for string I/O and task switches).

use core::ptr::NonNull;

use crate::error::Result;
use crate::gla2gpa::GuestPaging;
use crate::vm::{VcpuLock, Vm};

const PAGE_SIZE: u64 = 4096;

/// Why a copy setup stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyEnd {
    /// The whole range is in `pages`.
    Done,
    /// The guest faults on the next page (queued, as by VM_GLA2GPA).
    GuestFault,
    /// The next page is not guest RAM of the standard layout.
    NotRam,
    /// The range needs more than the pieces allowed.
    OutOfPieces,
    /// The page walk for the next page failed (`Fault`: its page tables
    /// are not read-write guest memory); the pages before it are kept, as
    /// libvmmapi's `vm_copy_setup` leaves them in the iovecs.
    Failed(crate::error::Error),
}

/// The host pieces of a guest-linear range, up to where it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPages {
    /// Host address and length of each piece (one per guest page).
    pub pages: Vec<(NonNull<u8>, usize)>,
    pub end: CopyEnd,
}

impl Vm {
    /// Translates guest-linear `[gla, gla + len)` for an access of `prot`
    /// into at most `max_pieces` host pieces, with the vCPU of `lock`
    /// held for the whole range. A fault is queued for the vCPU as by
    /// [`Vm::gla2gpa`]. A page walk's error (`Fault` for page tables
    /// outside guest RAM) ends the range as [`CopyEnd::Failed`].
    pub fn copy_setup(
        &self,
        lock: &VcpuLock<'_>,
        paging: &GuestPaging,
        gla: u64,
        len: u64,
        prot: u32,
        max_pieces: usize,
    ) -> Result<CopyPages> {
        let (mut gla, mut len) = (gla, len);
        let mut pages = Vec::new();
        let end = loop {
            if len == 0 {
                break CopyEnd::Done;
            }
            if pages.len() == max_pieces {
                break CopyEnd::OutOfPieces;
            }
            let gpa = match self.gla2gpa(lock, paging, gla, prot, false) {
                Ok(Some(gpa)) => gpa,
                Ok(None) => break CopyEnd::GuestFault,
                Err(e) => break CopyEnd::Failed(e),
            };
            let n = len.min(PAGE_SIZE - (gpa & (PAGE_SIZE - 1)));
            let Some(host) = self.mem().map_gpa(gpa, n as usize) else {
                break CopyEnd::NotRam;
            };
            pages.push((host, n as usize));
            gla = gla.wrapping_add(n);
            len -= n;
        };
        Ok(CopyPages { pages, end })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::gla2gpa::{CPU_MODE_64BIT, CPU_MODE_PROTECTED, PAGING_MODE_64, PAGING_MODE_FLAT};

    #[test]
    fn a_range_becomes_one_piece_per_page_until_it_stops() {
        let vm = crate::test_util::vm_with_standard_memory("copy", 1 << 20);
        let l = vm.lock_one(0).unwrap();
        let flat = GuestPaging { cr3: 0, cpl: 0, cpu_mode: CPU_MODE_PROTECTED, paging_mode: PAGING_MODE_FLAT };
        let c = vm.copy_setup(&l, &flat, 0x1ff0, 0x1020, 1, 4).unwrap();
        let lens: Vec<usize> = c.pages.iter().map(|p| p.1).collect();
        assert_eq!((lens, c.end), (vec![0x10, 0x1000, 0x10], CopyEnd::Done));
        assert_eq!(c.pages[1].0, vm.mem().map_gpa(0x2000, 1).unwrap());
        let c = vm.copy_setup(&l, &flat, 0x2fff, 2, 1, 4).unwrap();
        let lens: Vec<usize> = c.pages.iter().map(|p| p.1).collect();
        assert_eq!(lens, [1, 1], "a byte either side of a page boundary");
        assert_eq!(vm.copy_setup(&l, &flat, 0x1ff0, 0x1020, 1, 2).unwrap().end, CopyEnd::OutOfPieces);
        let c = vm.copy_setup(&l, &flat, (1 << 20) - 8, 16, 1, 4).unwrap();
        assert_eq!((c.pages.len(), c.end), (1, CopyEnd::NotRam), "past the end of RAM");
        assert_eq!(vm.copy_setup(&l, &flat, 0, 0, 1, 0).unwrap(), CopyPages { pages: vec![], end: CopyEnd::Done });
        // A zeroed PML4 maps nothing: the guest faults, #PF is queued.
        let paged = GuestPaging { cr3: 0x10000, cpl: 0, cpu_mode: CPU_MODE_64BIT, paging_mode: PAGING_MODE_64 };
        let c = vm.copy_setup(&l, &paged, 0x40_0000, 8, 1, 4).unwrap();
        assert_eq!((c.pages.len(), c.end), (0, CopyEnd::GuestFault));
        assert_eq!(l.vcpu().regs.lock().intinfo().1 & 0xff, 14);
    }
}
