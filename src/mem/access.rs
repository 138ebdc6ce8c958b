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

/// Where a guest access lands in host memory.
enum Place<'a> {
    /// A naturally aligned access of 2, 4 or 8 bytes at this offset of
    /// this segment: one atomic.
    Aligned(&'a MemSeg, usize),
    /// Any other: its bytes, up to the page boundary and past it.
    Bytes(&'a [AtomicU8], &'a [AtomicU8]),
}

impl GuestMemory {
    /// A guest load of `size` bytes (1, 2, 4 or 8; others are `Fault`)
    /// at `gpa`, little-endian.
    pub fn guest_load(&self, gpa: u64, size: u8) -> RamAccess<u64> {
        let value = match self.place(gpa, size, PROT_READ) {
            RamAccess::Done(Place::Aligned(seg, off)) => {
                let h = &seg.host;
                match size {
                    2 => h.atomic_u16_at(off).map(|a| u64::from(a.load(Ordering::SeqCst))),
                    4 => h.atomic_u32_at(off).map(|a| u64::from(a.load(Ordering::SeqCst))),
                    _ => h.atomic_u64_at(off).map(|a| a.load(Ordering::SeqCst)),
                }
            }
            RamAccess::Done(Place::Bytes(a, b)) => {
                let mut v = [0u8; 8];
                for (d, s) in v.iter_mut().zip(a.iter().chain(b)) {
                    *d = s.load(Ordering::SeqCst);
                }
                Some(u64::from_le_bytes(v))
            }
            RamAccess::Mmio => return RamAccess::Mmio,
            RamAccess::Fault => return RamAccess::Fault,
        };
        value.map_or(RamAccess::Fault, RamAccess::Done)
    }

    /// A guest store of the low `size` bytes of `value` at `gpa`.
    pub fn guest_store(&self, gpa: u64, size: u8, value: u64) -> RamAccess<()> {
        let done = match self.place(gpa, size, PROT_WRITE) {
            RamAccess::Done(Place::Aligned(seg, off)) => {
                let h = &seg.host;
                match size {
                    2 => h.atomic_u16_at(off).map(|a| a.store(value as u16, Ordering::SeqCst)),
                    4 => h.atomic_u32_at(off).map(|a| a.store(value as u32, Ordering::SeqCst)),
                    _ => h.atomic_u64_at(off).map(|a| a.store(value, Ordering::SeqCst)),
                }
            }
            RamAccess::Done(Place::Bytes(a, b)) => {
                for (d, s) in a.iter().chain(b).zip(value.to_le_bytes()) {
                    d.store(s, Ordering::SeqCst);
                }
                Some(())
            }
            RamAccess::Mmio => return RamAccess::Mmio,
            RamAccess::Fault => return RamAccess::Fault,
        };
        done.map_or(RamAccess::Fault, RamAccess::Done)
    }

    /// Where an access of `size` bytes at `gpa` with `prot` lands. An
    /// access that crosses a page is resolved page by page, as the nested
    /// page tables translate it: RAM if both pages are, MMIO if either is
    /// unmapped (whatever the size: the emulated devices judge sizes),
    /// `Fault` if either map refuses it or the size is not 1, 2, 4 or 8.
    fn place(&self, gpa: u64, size: u8, prot: u32) -> RamAccess<Place<'_>> {
        let Some(end) = gpa.checked_add(u64::from(size.max(1))) else {
            return RamAccess::Mmio;
        };
        let boundary = (gpa | PAGE_MASK).wrapping_add(1);
        let split = if boundary == 0 { end } else { boundary.min(end) };
        if !self.mem_allocated(gpa) || (split < end && !self.mem_allocated(split)) {
            return RamAccess::Mmio;
        }
        if !matches!(size, 1 | 2 | 4 | 8) {
            return RamAccess::Fault;
        }
        if split == end && size > 1 && gpa.is_multiple_of(u64::from(size)) {
            // Offsets keep the alignment of guest addresses (maps are
            // page-aligned), so this is one atomic.
            return match self.resolve(gpa, usize::from(size), prot) {
                Ok((seg, off)) => RamAccess::Done(Place::Aligned(seg, off)),
                Err(_) => RamAccess::Fault,
            };
        }
        let bytes = |g: u64, n: u64| self.guest_bytes(g, n as usize, prot);
        let second = if split < end { bytes(split, end - split) } else { Ok(&[][..]) };
        match (bytes(gpa, split - gpa), second) {
            (Ok(a), Ok(b)) => RamAccess::Done(Place::Bytes(a, b)),
            _ => RamAccess::Fault,
        }
    }
}

#[cfg(all(test, not(loom)))]
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

    /// A naturally aligned store of 2, 4 or 8 bytes is one atomic: a load
    /// on another thread sees the old value or the new one, never half of
    /// each (a device model reading a ring index the guest writes).
    #[test]
    fn aligned_accesses_are_never_torn() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        crate::test_util::with_watchdog(60, || {
            let m = memory();
            for size in [2u8, 4, 8] {
                let gpa = 0x10_0000 + 0x40 * u64::from(size);
                let ones = if size == 8 { u64::MAX } else { (1 << (8 * size)) - 1 };
                let stop = AtomicBool::new(false);
                let seen = std::thread::scope(|s| {
                    s.spawn(|| {
                        let mut v = 0;
                        while !stop.load(SeqCst) {
                            v ^= ones;
                            assert_eq!(m.guest_store(gpa, size, v), RamAccess::Done(()));
                        }
                    });
                    // Until the loads have seen the value change 20000
                    // times, with the stores running all along; the
                    // writer is stopped before any verdict.
                    let (mut changes, mut last) = (0, 0);
                    let seen = loop {
                        match m.guest_load(gpa, size) {
                            RamAccess::Done(v) if v == 0 || v == ones => {
                                changes += u32::from(v != last);
                                last = v;
                                if changes == 20_000 {
                                    break None;
                                }
                            }
                            other => break Some(other),
                        }
                    };
                    stop.store(true, SeqCst);
                    seen
                });
                assert_eq!(seen, None, "{size}-byte load torn");
            }
        });
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
        assert_eq!(m.guest_store(0x10_0000 + 2 * P as u64 - 1, 1, 7), RamAccess::Done(()), "the last byte");
        assert_eq!(m.guest_load(0x10_0000 + 2 * P as u64 - 1, 1), RamAccess::Done(7));
        // The last aligned 2, 4 and 8 bytes of the map, which end its
        // segment too: one atomic each, right up to the segment's end.
        for size in [2u8, 4, 8] {
            let gpa = 0x10_0000 + 2 * P as u64 - u64::from(size);
            assert_eq!(m.guest_store(gpa, size, 0x5a), RamAccess::Done(()), "last {size} bytes");
            assert_eq!(m.guest_load(gpa, size), RamAccess::Done(0x5a), "last {size} bytes");
        }
        assert_eq!(m.guest_store(0xfee0_0000, 0, 0), RamAccess::Mmio);
        assert_eq!(m.guest_load(u64::MAX, 8), RamAccess::Mmio);
    }
}
