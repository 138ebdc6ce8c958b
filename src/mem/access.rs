//! A guest's own loads and stores, as the processor makes them through the
//! nested page tables: RAM is read and written in place, with no exit;
//! an address no map covers is MMIO (the VMM's to emulate); a map that
//! refuses the access (a store to the read-only boot ROM, or an access
//! running past the map) is the fault FreeBSD's `vm_handle_paging` cannot
//! resolve (VM_RUN fails with EFAULT).
//!
//! A naturally aligned access of 2, 4 or 8 bytes is one atomic of that
//! width, as on x86, so a device model on another thread never sees half
//! of a ring index the guest wrote. Other accesses go byte by byte, page
//! by page: one that crosses into another map works, one that crosses
//! into unmapped space is MMIO.
//! (Rust leaves races between atomics of different widths on the same
//! bytes undefined; x86 gives them the meaning guests and device models
//! rely on, as for the page-table walk.)

use core::sync::atomic::Ordering;

use core::sync::atomic::AtomicU8;

use super::{GuestMemory, MemSeg, PAGE_MASK, PROT_READ, PROT_WRITE};

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

impl<T> RamAccess<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> RamAccess<U> {
        match self {
            RamAccess::Done(v) => RamAccess::Done(f(v)),
            RamAccess::Mmio => RamAccess::Mmio,
            RamAccess::Fault => RamAccess::Fault,
        }
    }
}

impl GuestMemory {
    /// A guest load of `size` bytes (1, 2, 4 or 8; others are `Fault`)
    /// at `gpa`, little-endian.
    pub fn guest_load(&self, gpa: u64, size: u8) -> RamAccess<u64> {
        self.guest_access(
            gpa,
            size,
            PROT_READ,
            |seg, off| {
                let h = &seg.host;
                Some(match size {
                    2 => u64::from(h.atomic_u16_at(off)?.load(Ordering::SeqCst)),
                    4 => u64::from(h.atomic_u32_at(off)?.load(Ordering::SeqCst)),
                    _ => h.atomic_u64_at(off)?.load(Ordering::SeqCst),
                })
            },
            |byte, _| byte.load(Ordering::SeqCst),
        )
    }

    /// A guest store of the low `size` bytes of `value` at `gpa`.
    pub fn guest_store(&self, gpa: u64, size: u8, value: u64) -> RamAccess<()> {
        let v = value.to_le_bytes();
        self.guest_access(
            gpa,
            size,
            PROT_WRITE,
            |seg, off| {
                let h = &seg.host;
                match size {
                    2 => h.atomic_u16_at(off)?.store(value as u16, Ordering::SeqCst),
                    4 => h.atomic_u32_at(off)?.store(value as u32, Ordering::SeqCst),
                    _ => h.atomic_u64_at(off)?.store(value, Ordering::SeqCst),
                }
                Some(value)
            },
            |byte, i| {
                byte.store(v[i], Ordering::SeqCst);
                v[i]
            },
        )
        .map(|_| ())
    }

    /// The common part of a load or store; the value (the bytes moved,
    /// little-endian). `aligned` does a naturally aligned access of 2, 4
    /// or 8 bytes at a segment offset; `byte` does byte `i` of any other.
    /// An access that crosses a page is resolved page by page, as the
    /// nested page tables translate it: RAM if both pages are, MMIO if
    /// either is unmapped, `Fault` if either map refuses.
    fn guest_access(
        &self,
        gpa: u64,
        size: u8,
        prot: u32,
        aligned: impl FnOnce(&MemSeg, usize) -> Option<u64>,
        mut byte: impl FnMut(&AtomicU8, usize) -> u8,
    ) -> RamAccess<u64> {
        // Where no map is, the access is MMIO whatever its size (the
        // emulated devices judge sizes).
        let Some(end) = gpa.checked_add(u64::from(size.max(1))) else {
            return RamAccess::Mmio;
        };
        // At most two pieces: up to the page boundary, and after it.
        let boundary = (gpa | PAGE_MASK).wrapping_add(1);
        let split = if boundary == 0 { end } else { boundary.min(end) };
        let pieces = [(gpa, split - gpa), (split, end - split)];
        let pieces = &pieces[..if split == end { 1 } else { 2 }];
        if pieces.iter().any(|&(g, _)| !self.mem_allocated(g)) {
            return RamAccess::Mmio;
        }
        if !matches!(size, 1 | 2 | 4 | 8) {
            return RamAccess::Fault;
        }
        let mut resolved = [None, None];
        for (slot, &(g, n)) in resolved.iter_mut().zip(pieces) {
            match self.resolve(g, n as usize, prot) {
                Ok(r) => *slot = Some(r),
                Err(_) => return RamAccess::Fault,
            }
        }
        if let [Some((seg, off)), None] = resolved {
            if size > 1 && off % usize::from(size) == 0 {
                return aligned(seg, off).map_or(RamAccess::Fault, RamAccess::Done);
            }
        }
        let mut v = [0u8; 8];
        let mut i = 0;
        for ((seg, off), &(_, n)) in resolved.iter().flatten().zip(pieces) {
            let Some(bytes) = seg.host.bytes().get(*off..*off + n as usize) else {
                return RamAccess::Fault;
            };
            for b in bytes {
                v[i] = byte(b, i);
                i += 1;
            }
        }
        RamAccess::Done(u64::from_le_bytes(v))
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

    /// An access crossing a page is translated page by page: into an
    /// adjacent map it works (even of another segment), into unmapped
    /// space it is MMIO, into a map that refuses it faults.
    #[test]
    fn accesses_across_pages_are_resolved_page_by_page() {
        let mut m = memory();
        // Another segment right after the RAM, and a read-only one after that.
        m.alloc_memseg(2, P, None).unwrap();
        m.mmap_memseg(0x10_2000, 2, 0, P, PROT_READ | PROT_WRITE, 0).unwrap();
        m.alloc_memseg(3, P, None).unwrap();
        m.mmap_memseg(0x10_3000, 3, 0, P, PROT_READ, 0).unwrap();
        let value = 0x0807_0605_0403_0201u64;
        assert_eq!(m.guest_store(0x10_1ffe, 8, value), RamAccess::Done(()), "RAM into the next map");
        assert_eq!(m.guest_load(0x10_1ffe, 8), RamAccess::Done(value));
        let mut b = [0u8; 6];
        m.read_gpa(0x10_2000, &mut b).unwrap();
        assert_eq!(b, [3, 4, 5, 6, 7, 8], "the second segment has the upper bytes");
        assert_eq!(m.guest_store(0x10_2ffe, 4, 0), RamAccess::Fault, "into the read-only map");
        assert_eq!(m.guest_load(0x10_2ffe, 4), RamAccess::Done(0x0000_0000), "which reads");
        assert_eq!(m.guest_load(0x10_3ffc, 8), RamAccess::Mmio, "into unmapped space");
        assert_eq!(m.guest_load(0xffff_ffff_ffff_fff8, 8), RamAccess::Mmio, "the top page");
        assert_eq!(m.guest_load(0xffff_ffff_ffff_fffc, 8), RamAccess::Mmio, "past the top");
    }

    #[test]
    fn mmio_rom_and_the_end_of_a_map_are_told_apart() {
        let m = memory();
        assert_eq!(m.guest_load(0xfee0_0000, 4), RamAccess::Mmio, "no map: MMIO");
        assert_eq!(m.guest_store(0x10_0000 + 2 * P as u64, 4, 0), RamAccess::Mmio, "just past the RAM");
        assert_eq!(m.guest_load(0x100_0000, 4), RamAccess::Done(0), "ROM reads");
        assert_eq!(m.guest_store(0x100_0000, 4, 1), RamAccess::Fault, "ROM refuses stores");
        assert_eq!(m.guest_load(0x10_0000 + 2 * P as u64 - 2, 4), RamAccess::Mmio, "runs past the map into nothing");
        assert_eq!(m.guest_load(0x10_0000, 3), RamAccess::Fault, "no 3-byte access to RAM");
        assert_eq!(m.guest_load(0xfee0_0000, 3), RamAccess::Mmio, "the devices judge sizes");
        assert_eq!(m.guest_store(0xfee0_0000, 0, 0), RamAccess::Mmio);
        assert_eq!(m.guest_load(u64::MAX, 8), RamAccess::Mmio);
    }
}
