//! The VM's RAM as its guests' loads and stores reach it (the nested page
//! tables' view): guest memory taken shared for each access, so a
//! device model's map or unmap (lock-all) happens between accesses (see
//! the lock order in `vm`).

use crate::backend::GuestRam;
use crate::gla2gpa::{gla2gpa, GuestPaging};
use crate::mem::{RamAccess, PROT_READ};
use crate::vm::Vm;

impl GuestRam for Vm {
    fn load(&self, gpa: u64, size: u8) -> RamAccess<u64> {
        self.mem().guest_load(gpa, size)
    }

    fn store(&self, gpa: u64, size: u8, value: u64) -> RamAccess<()> {
        self.mem().guest_store(gpa, size, value)
    }

    fn translate(&self, paging: &GuestPaging, gla: u64) -> Option<u64> {
        let system = GuestPaging { cpl: 0, ..*paging };
        gla2gpa(&self.mem(), &system, gla, PROT_READ, false).ok()?.ok()
    }
}
