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
