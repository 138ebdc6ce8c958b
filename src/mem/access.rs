//! A guest's own loads and stores, as the processor makes them through the
//! nested page tables: RAM is read and written in place, with no exit;
//! an address no map covers is MMIO (the VMM's to emulate); a map that
//! refuses the access (a store to the read-only boot ROM, or an access
//! running past the map) is the fault FreeBSD's `vm_handle_paging` cannot
//! resolve (VM_RUN fails with EFAULT).
//!
//! A naturally aligned access of 2, 4 or 8 bytes is one atomic of that
//! width, as on x86, so a device model on another thread never sees half
//! of a ring index the guest wrote. Other accesses go byte by byte.
//! (Rust leaves races between atomics of different widths on the same
//! bytes undefined; x86 gives them the meaning guests and device models
//! rely on, as for the page-table walk.)

use core::sync::atomic::Ordering;

use super::{GuestMemory, PROT_READ, PROT_WRITE};

/// What a guest load or store found at its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamAccess<T> {
    /// RAM: done (for a load, the value, zero-extended).
    Done(T),
    /// No map covers the address: MMIO.
    Mmio,
    /// A map covers it but refuses the access.
    Fault,
}

impl GuestMemory {
    /// A guest load of `size` bytes (1, 2, 4 or 8; others are `Fault`)
    /// at `gpa`, little-endian.
    pub fn guest_load(&self, gpa: u64, size: u8) -> RamAccess<u64> {
        if !self.mem_allocated(gpa) {
            return RamAccess::Mmio;
        }
        let len = usize::from(size);
        let Ok((seg, off)) = self.resolve(gpa, len, PROT_READ) else {
            return RamAccess::Fault;
        };
        let h = &seg.host;
        let value = match size {
            2 if off % 2 == 0 => h.atomic_u16_at(off).map(|a| u64::from(a.load(Ordering::SeqCst))),
            4 if off % 4 == 0 => h.atomic_u32_at(off).map(|a| u64::from(a.load(Ordering::SeqCst))),
            8 if off % 8 == 0 => h.atomic_u64_at(off).map(|a| a.load(Ordering::SeqCst)),
            1 | 2 | 4 | 8 => h.bytes().get(off..off + len).map(|b| {
                let mut v = [0u8; 8];
                for (d, s) in v.iter_mut().zip(b) {
                    *d = s.load(Ordering::SeqCst);
                }
                u64::from_le_bytes(v)
            }),
            _ => None,
        };
        value.map_or(RamAccess::Fault, RamAccess::Done)
    }

    /// A guest store of the low `size` bytes of `value` at `gpa`.
    pub fn guest_store(&self, gpa: u64, size: u8, value: u64) -> RamAccess<()> {
        if !self.mem_allocated(gpa) {
            return RamAccess::Mmio;
        }
        let len = usize::from(size);
        let Ok((seg, off)) = self.resolve(gpa, len, PROT_WRITE) else {
            return RamAccess::Fault;
        };
        let h = &seg.host;
        let done = match size {
            2 if off % 2 == 0 => h.atomic_u16_at(off).map(|a| a.store(value as u16, Ordering::SeqCst)),
            4 if off % 4 == 0 => h.atomic_u32_at(off).map(|a| a.store(value as u32, Ordering::SeqCst)),
            8 if off % 8 == 0 => h.atomic_u64_at(off).map(|a| a.store(value, Ordering::SeqCst)),
            1 | 2 | 4 | 8 => h.bytes().get(off..off + len).map(|b| {
                for (d, s) in b.iter().zip(value.to_le_bytes()) {
                    d.store(s, Ordering::SeqCst);
                }
            }),
            _ => None,
        };
        done.map_or(RamAccess::Fault, RamAccess::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PAGE_SIZE, PROT_EXEC};
    use super::*;

    const P: usize = PAGE_SIZE;

    /// RAM at 1 MiB (two pages), a read-only ROM page at 16 MiB.
    fn memory() -> GuestMemory {
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 2 * P, None).unwrap();
        m.mmap_memseg(0x10_0000, 0, 0, 2 * P, PROT_READ | PROT_WRITE, 0).unwrap();
        m.alloc_memseg(1, P, Some(b"rom")).unwrap();
        m.mmap_memseg(0x100_0000, 1, 0, P, PROT_READ | PROT_EXEC, 0).unwrap();
        m
    }

    #[test]
    fn loads_and_stores_of_every_size_and_alignment_reach_ram_little_endian() {
        let m = memory();
        let base = 0x10_0000u64;
        for size in [1u8, 2, 4, 8] {
            for misalign in 0..8u64 {
                let gpa = base + 0x100 * u64::from(size) + misalign;
                let value = 0x8877_6655_4433_2211u64;
                assert_eq!(m.guest_store(gpa, size, value), RamAccess::Done(()));
                let mask = if size == 8 { u64::MAX } else { (1 << (8 * size)) - 1 };
                assert_eq!(m.guest_load(gpa, size), RamAccess::Done(value & mask), "{size} at +{misalign}");
                let mut bytes = [0u8; 8];
                m.read_gpa(gpa, &mut bytes[..usize::from(size)]).unwrap();
                assert_eq!(u64::from_le_bytes(bytes), value & mask, "the same bytes as read_gpa sees");
            }
        }
        // Across the two pages of one map: fine.
        assert_eq!(m.guest_store(base + P as u64 - 4, 8, u64::MAX), RamAccess::Done(()));
        assert_eq!(m.guest_load(base + P as u64 - 4, 8), RamAccess::Done(u64::MAX));
    }

    #[test]
    fn mmio_rom_and_the_end_of_a_map_are_told_apart() {
        let m = memory();
        assert_eq!(m.guest_load(0xfee0_0000, 4), RamAccess::Mmio, "no map: MMIO");
        assert_eq!(m.guest_store(0x10_0000 + 2 * P as u64, 4, 0), RamAccess::Mmio, "just past the RAM");
        assert_eq!(m.guest_load(0x100_0000, 4), RamAccess::Done(0), "ROM reads");
        assert_eq!(m.guest_store(0x100_0000, 4, 1), RamAccess::Fault, "ROM refuses stores");
        assert_eq!(m.guest_load(0x10_0000 + 2 * P as u64 - 2, 4), RamAccess::Fault, "runs past the map");
        assert_eq!(m.guest_load(0x10_0000, 3), RamAccess::Fault, "no 3-byte access");
        assert_eq!(m.guest_load(u64::MAX, 8), RamAccess::Mmio);
    }
}
