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
    /// [`Vm::gla2gpa`]. Errors are the page walk's (`Fault` for page
    /// tables outside guest RAM).
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
            let Some(gpa) = self.gla2gpa(lock, paging, gla, prot, false)? else {
                break CopyEnd::GuestFault;
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
