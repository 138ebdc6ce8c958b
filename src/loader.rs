//! Loader setups that reach into guest RAM: FreeBSD's 32-bit entry state
//! (`vm_setup_freebsd_registers_i386`) writes its GDT there. The register
//! states themselves are `regs::boot`'s.

use crate::error::{Error, Result};
use crate::regs::freebsd_gdt32;
use crate::vm::{VcpuLock, Vm};

impl Vm {
    /// Writes the flat 32-bit GDT at `gdtbase` and puts the vCPU of `lock`
    /// in FreeBSD's 32-bit loader state (see
    /// [`crate::regs::VcpuRegs::freebsd_i386`]). `Fault`, changing
    /// nothing, when the GDT's page is not guest RAM of the standard
    /// layout mapped in the guest (libvmmapi writes through its host
    /// mapping, which outlives a guest unmap).
    pub fn setup_freebsd_i386(&self, lock: &VcpuLock<'_>, eip: u32, gdtbase: u32, esp: u32) -> Result<()> {
        {
            // Guest memory (rank 2) released before the register mutex
            // (rank 5) is taken.
            let mem = self.mem();
            if mem.map_gpa(u64::from(gdtbase), 0x1000).is_none() {
                return Err(Error::Fault);
            }
            let gdt: Vec<u8> = freebsd_gdt32(gdtbase).iter().flat_map(|d| d.to_le_bytes()).collect();
            mem.write_gpa(u64::from(gdtbase), &gdt).map_err(|_| Error::Fault)?;
        }
        lock.vcpu().regs.lock().freebsd_i386(eip, gdtbase, esp);
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::error::Error;
    use crate::regs::{freebsd_gdt32, reg};
    use crate::vm::VcpuLock;

    /// The GDT lands at `gdtbase` (its TSS descriptor's base the page
    /// above), the vCPU at `eip` with its stack at `esp`. As libvmmapi
    /// maps a whole page at `gdtbase`, that page must be guest RAM, and
    /// mapped in the guest: else Fault, nothing written, the registers
    /// as they were.
    #[test]
    fn the_gdt_and_entry_state_need_the_gdts_whole_page_mapped() {
        let vm = crate::test_util::vm_with_standard_memory("loader", 1 << 20);
        let rip_rsp = |l: &VcpuLock<'_>| {
            let r = l.vcpu().regs.lock();
            (r.get(reg::RIP as i32).unwrap(), r.get(reg::RSP as i32).unwrap())
        };
        let l = vm.lock_one(0).unwrap();
        vm.setup_freebsd_i386(&l, 0x10_0000, 0x2000, 0x8000).unwrap();
        assert_eq!(rip_rsp(&l), (0x10_0000, 0x8000));
        let mut gdt = [0u8; 32];
        vm.mem().read_gpa(0x2000, &mut gdt).unwrap();
        let want: Vec<u8> = freebsd_gdt32(0x2000).iter().flat_map(|d| d.to_le_bytes()).collect();
        assert_eq!(gdt[..], want[..]);
        let end = (1u32 << 20) - 32;
        assert_eq!(vm.setup_freebsd_i386(&l, 0, end, 0), Err(Error::Fault), "the GDT fits, its page does not");
        vm.mem().read_gpa(u64::from(end), &mut gdt).unwrap();
        assert_eq!(gdt, [0; 32], "nothing written");
        drop(l);
        let all = vm.lock_all().unwrap();
        vm.mem_write(&all).unwrap().munmap_memseg(0, 1 << 20).unwrap();
        drop(all);
        let l = vm.lock_one(0).unwrap();
        assert_eq!(vm.setup_freebsd_i386(&l, 0, 0x2000, 0), Err(Error::Fault), "RAM, unmapped in the guest");
        assert_eq!(rip_rsp(&l), (0x10_0000, 0x8000), "the registers as they were");
    }
}
