//! The memory part of libvmmapi (FreeBSD 14, VMMAPI_VERSION 0200): the
//! standard guest layout `vm_setup_memory` makes (lowmem at 0, highmem at
//! 4 GiB, one system-memory segment behind both), its idempotent
//! `vm_alloc_memseg` / `vm_mmap_memseg`, devmem creation and the host
//! address translations `vm_map_gpa` / `vm_rev_map_gpa`.

use core::ptr::NonNull;

use crate::error::{Error, Result};

use super::{
    GuestMemory, PROT_ALL, VM_HIGHMEM_BASE, VM_MAX_SUFFIXLEN, VM_MEMMAP_F_WIRED, VM_MEM_F_INCORE, VM_MEM_F_WIRED,
    VM_MMAP_ALL, VM_SYSMEM,
};

impl GuestMemory {
    /// `vm_get_lowmem_limit`.
    pub fn lowmem_limit(&self) -> u32 {
        self.lowmem_limit
    }

    /// `vm_set_lowmem_limit`: used by the next [`GuestMemory::setup_memory`].
    pub fn set_lowmem_limit(&mut self, limit: u32) {
        self.lowmem_limit = limit;
    }

    /// `vm_get_memflags`.
    pub fn memflags(&self) -> i32 {
        self.memflags
    }

    /// `vm_set_memflags` (`VM_MEM_F_*`).
    pub fn set_memflags(&mut self, flags: i32) {
        self.memflags = flags;
    }

    /// `vm_get_lowmem_size`: bytes of guest RAM at guest-physical 0.
    pub fn lowmem_size(&self) -> usize {
        self.lowmem
    }

    /// `vm_get_highmem_size`: bytes of guest RAM at [`VM_HIGHMEM_BASE`].
    pub fn highmem_size(&self) -> usize {
        self.highmem
    }

    /// `vm_get_guestmem_from_ctx`'s base address: host address of
    /// guest-physical 0 in the standard layout, once
    /// [`GuestMemory::setup_memory`] has succeeded.
    pub fn guestmem_base(&self) -> Option<NonNull<u8>> {
        if !self.setup_done {
            return None;
        }
        self.segs[VM_SYSMEM as usize]
            .as_ref()
            .map(|s| s.host.addr())
    }

    /// libvmmapi's (static) `vm_alloc_memseg`, in its order: the segment
    /// is read first (`Inval` for a bad id); an existing one is success
    /// if it has the same length and name (both unnamed, or equal names:
    /// `cmpseg` on `VM_MEMSEG_NAME`, so an empty name given is a name
    /// that matches none) and `Inval` otherwise; only for a free one is
    /// the name's length checked (`NameTooLong` above
    /// [`VM_MAX_SUFFIXLEN`] bytes), then [`GuestMemory::alloc_memseg`].
    pub fn vmmapi_alloc_memseg(
        &mut self,
        segid: i32,
        len: usize,
        name: Option<&[u8]>,
    ) -> Result<()> {
        let cur = self.get_memseg(segid)?;
        if cur.len != 0 {
            let same_name = match name {
                None => cur.name.is_empty(),
                Some(n) => !cur.name.is_empty() && cur.name == n,
            };
            return if cur.len == len && same_name {
                Ok(())
            } else {
                Err(Error::Inval)
            };
        }
        if name.is_some_and(|n| n.len() > VM_MAX_SUFFIXLEN) {
            return Err(Error::NameTooLong);
        }
        self.alloc_memseg(segid, len, name)
    }

    /// libvmmapi `vm_mmap_memseg`: map with flags `VM_MEMMAP_F_WIRED` if
    /// memflags has [`VM_MEM_F_WIRED`]. If a map already starts at `gpa` it
    /// is success when its segid, segoff, prot and flags equal the request
    /// (the length is not compared) and `Exist` otherwise; else
    /// [`GuestMemory::mmap_memseg`].
    pub fn vmmapi_mmap_memseg(
        &mut self,
        gpa: u64,
        segid: i32,
        segoff: u64,
        len: usize,
        prot: u32,
    ) -> Result<()> {
        let flags = if self.memflags & VM_MEM_F_WIRED != 0 {
            VM_MEMMAP_F_WIRED
        } else {
            0
        };
        if let Ok(m) = self.mmap_getnext(gpa) {
            if m.gpa == gpa {
                return if m.segid == segid
                    && m.segoff == segoff
                    && m.prot == prot
                    && m.flags == flags
                {
                    Ok(())
                } else {
                    Err(Error::Exist)
                };
            }
        }
        self.mmap_memseg(gpa, segid, segoff, len, prot, flags)
    }

    /// libvmmapi `vm_create_devmem`: allocate (or find, see
    /// [`GuestMemory::vmmapi_alloc_memseg`]) device-memory segment `segid`
    /// named `name` and return its host address. An empty name is `Inval`.
    pub fn create_devmem(&mut self, segid: i32, name: &[u8], len: usize) -> Result<NonNull<u8>> {
        if name.is_empty() {
            return Err(Error::Inval);
        }
        self.vmmapi_alloc_memseg(segid, len, Some(name))?;
        self.exclude_from_core_unless_incore(segid);
        self.segment_host_addr(segid)
    }

    /// libvmmapi `vm_setup_memory(ctx, memsize, style)`. Only
    /// [`VM_MMAP_ALL`] is supported (FreeBSD asserts it; other styles are
    /// `Inval` here). Up to the low-memory limit (3 GiB by default) the RAM
    /// is "lowmem" at guest-physical 0; the rest is "highmem" at
    /// [`VM_HIGHMEM_BASE`]. One system-memory segment ([`VM_SYSMEM`]) backs
    /// both with segment offset = guest-physical address, so it is
    /// `memsize` long without highmem and `4 GiB + highmem` long with it.
    /// The highmem map is made first, then the lowmem map, both
    /// [`PROT_ALL`], through the idempotent libvmmapi calls, so calling it
    /// again with the same size succeeds. `memsize` is not rounded: 0 or a
    /// size that leaves the segment unaligned is `Inval`.
    ///
    /// Unlike libvmmapi, which records them first, the lowmem/highmem
    /// sizes are recorded only once both maps exist: a failed call after a
    /// successful one leaves the earlier memory in use and described
    /// ([`GuestMemory::map_gpa`], the size getters and `rev_map_gpa`
    /// agree). And unlike libvmmapi, a failed call takes back the segment
    /// and the highmem map it made (libvmmapi leaves them, so that a
    /// retry with another size or other memflags fails).
    pub fn setup_memory(&mut self, memsize: usize, style: i32) -> Result<()> {
        if style != VM_MMAP_ALL {
            return Err(Error::Inval);
        }
        let limit = self.lowmem_limit as usize;
        let (lowmem, highmem, objsize) = if memsize > limit {
            // A size whose high part cannot sit above 4 GiB is refused
            // (libvmmapi's sum wraps).
            let objsize = (VM_HIGHMEM_BASE as usize).checked_add(memsize - limit).ok_or(Error::Inval)?;
            (limit, memsize - limit, objsize)
        } else {
            (memsize, 0, memsize)
        };
        let seg_made = self.get_memseg(VM_SYSMEM)?.len == 0;
        self.vmmapi_alloc_memseg(VM_SYSMEM, objsize, None)?;
        let high_made = highmem > 0 && self.map_slot_at(VM_HIGHMEM_BASE).is_none();
        let mut map_both = || -> Result<()> {
            if highmem > 0 {
                self.vmmapi_mmap_memseg(VM_HIGHMEM_BASE, VM_SYSMEM, VM_HIGHMEM_BASE, highmem, PROT_ALL)?;
            }
            if lowmem > 0 {
                self.vmmapi_mmap_memseg(0, VM_SYSMEM, 0, lowmem, PROT_ALL)?;
            }
            Ok(())
        };
        if let Err(e) = map_both() {
            self.undo_setup(seg_made, high_made);
            return Err(e);
        }
        // Recorded only now (libvmmapi records them first): after a failed
        // call, vm_map_gpa, vm_rev_map_gpa and the size getters still
        // describe the memory that is there.
        self.lowmem = lowmem;
        self.highmem = highmem;
        self.exclude_from_core_unless_incore(VM_SYSMEM);
        self.setup_done = true;
        Ok(())
    }

    /// Takes back what a failed `setup_memory` made: the highmem map if
    /// it made it, the system-memory segment if it made it (dropping the
    /// segment unmaps its host memory, which unlocks it whole).
    fn undo_setup(&mut self, seg_made: bool, high_made: bool) {
        if let Some(i) = self.map_slot_at(VM_HIGHMEM_BASE).filter(|_| high_made) {
            if seg_made {
                self.maps[i] = None;
            } else {
                // Unwiring may be refused (the host's area limit): then
                // the map stays, as a failed VM_MUNMAP_MEMSEG leaves it.
                let _ = self.remove_map(i);
            }
        }
        if seg_made {
            debug_assert!(self.maps().all(|m| m.segid != VM_SYSMEM), "a map of a segment being freed");
            self.segs[VM_SYSMEM as usize] = None;
        }
    }

    /// The slot of the map that starts at `gpa`, if any.
    fn map_slot_at(&self, gpa: u64) -> Option<usize> {
        self.maps.iter().position(|m| m.is_some_and(|m| m.gpa == gpa))
    }

    /// Segment `segid`'s memory goes in core dumps with
    /// [`VM_MEM_F_INCORE`] in memflags and stays out of them without it
    /// (libvmmapi's MAP_NOCORE), whatever an earlier call decided.
    fn exclude_from_core_unless_incore(&self, segid: i32) {
        if let Some(s) = usize::try_from(segid).ok().and_then(|i| self.segs.get(i)?.as_ref()) {
            s.host.set_in_core_dumps(self.memflags & VM_MEM_F_INCORE != 0);
        }
    }

    /// libvmmapi `vm_map_gpa`: host address of `[gpa, gpa + len)` if it lies
    /// entirely in lowmem or highmem of the layout
    /// [`GuestMemory::setup_memory`] made (the maps themselves are not
    /// consulted); `None` otherwise, in particular in the hole between
    /// lowmem and 4 GiB and before `setup_memory` succeeded.
    pub fn map_gpa(&self, gpa: u64, len: usize) -> Option<NonNull<u8>> {
        if !self.setup_done {
            return None;
        }
        let len64 = len as u64;
        let end = gpa.checked_add(len64)?;
        let low = self.lowmem as u64;
        let high = self.highmem as u64;
        let inside = (low > 0 && gpa < low && len64 <= low && end <= low)
            || (high > 0
                && gpa >= VM_HIGHMEM_BASE
                && gpa < VM_HIGHMEM_BASE + high
                && len64 <= high
                && end <= VM_HIGHMEM_BASE + high);
        if !inside {
            return None;
        }
        let seg = self.segs[VM_SYSMEM as usize].as_ref()?;
        if end > seg.len as u64 {
            return None;
        }
        seg.host.addr_at(usize::try_from(gpa).ok()?)
    }

    /// libvmmapi `vm_rev_map_gpa`: guest-physical address of host address
    /// `addr` in the standard layout, `None` (FreeBSD: -1) if outside it.
    /// FreeBSD quirk kept: the address one past the end of lowmem maps to
    /// `lowmem` (the test is `<=`).
    pub fn rev_map_gpa(&self, addr: usize) -> Option<u64> {
        let base = self.guestmem_base()?.as_ptr() as usize;
        let off = addr.wrapping_sub(base) as u64;
        let low = self.lowmem as u64;
        let high = self.highmem as u64;
        if low > 0 && off <= low {
            return Some(off);
        }
        if high > 0 && off >= VM_HIGHMEM_BASE && off < VM_HIGHMEM_BASE + high {
            return Some(off);
        }
        None
    }
}
