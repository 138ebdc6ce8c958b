//! Guest memory of one VM: memory segments, the guest-physical memory map
//! and host access to both, as FreeBSD 14 `vmm.c` (`vm_alloc_memseg`,
//! `vm_get_memseg`, `vm_mmap_memseg`, `vm_munmap_memseg`, `vm_mmap_getnext`,
//! `vm_cleanup`), `vmm_dev.c` (devmem names) and the memory part of
//! libvmmapi (`vm_setup_memory`, `vm_map_gpa`, ...) define them.
//!
//! A *segment* is a zero-filled, lazily committed block of host memory
//! (FreeBSD: a swap-backed VM object). A *map* places a page-aligned window
//! of a segment at a guest-physical address; two maps of one segment alias.
//! Segments are never freed one by one: only [`GuestMemory::clear`] (VM
//! destroy) and dropping the `GuestMemory` release them, so a host address
//! handed out for a segment stays valid until then, whatever happens to the
//! maps.
//!
//! Locking: none here. The VM keeps its `GuestMemory` in a reader-writer
//! lock: ALLOC_MEMSEG, MMAP_MEMSEG, MUNMAP_MEMSEG and REINIT take it
//! exclusively (with all vCPUs frozen), GET_MEMSEG, MMAP_GETNEXT and guest
//! accesses take it shared. Guest accesses through `&self` are atomic byte
//! copies, so concurrent readers and writers of the same bytes are sound.
//!
//! The only `unsafe` code of the module is in the private `host` submodule
//! (mmap, munmap and the view of a mapping as a byte slice).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

use self::host::HostMapping;

/// Guest page size (FreeBSD/amd64 `PAGE_SIZE`). Segment lengths and map
/// addresses, offsets and lengths must be multiples of it.
pub const PAGE_SIZE: usize = 4096;
const PAGE_MASK: u64 = PAGE_SIZE as u64 - 1;

/// Number of memory segments per VM (segment ids `0..VM_MAX_MEMSEGS`).
pub const VM_MAX_MEMSEGS: usize = 4;
/// Number of guest memory maps per VM.
pub const VM_MAX_MEMMAPS: usize = 8;
/// Longest devmem segment name, without the terminating NUL (the name field
/// of `struct vm_memseg` is 16 bytes).
pub const VM_MAX_SUFFIXLEN: usize = 15;

/// Map flag: the map is wired (recorded only; host memory is not locked).
pub const VM_MEMMAP_F_WIRED: u32 = 0x01;
/// Map flag: the map is mapped in the IOMMU. Set by [`GuestMemory::iommu_map`]
/// only; `mmap_memseg` refuses it.
pub const VM_MEMMAP_F_IOMMU: u32 = 0x02;

/// libvmmapi `vm_set_memflags` flag: include guest memory in core dumps
/// (accepted, no effect here).
pub const VM_MEM_F_INCORE: i32 = 0x01;
/// libvmmapi `vm_set_memflags` flag: the maps `vm_setup_memory` creates get
/// `VM_MEMMAP_F_WIRED`.
pub const VM_MEM_F_WIRED: i32 = 0x02;

/// Segment id of system memory (libvmmapi `VM_SYSMEM`).
pub const VM_SYSMEM: i32 = 0;
/// Conventional devmem segment id of the boot ROM.
pub const VM_BOOTROM: i32 = 1;
/// Conventional devmem segment id of the frame buffer.
pub const VM_FRAMEBUFFER: i32 = 2;
/// Conventional devmem segment id of PCI option ROMs.
pub const VM_PCIROM: i32 = 3;

/// `enum vm_mmap_style`: no host mapping (refused by `vm_setup_memory`).
pub const VM_MMAP_NONE: i32 = 0;
/// `enum vm_mmap_style`: guest memory fully mapped in the host.
pub const VM_MMAP_ALL: i32 = 1;
/// `enum vm_mmap_style`: mappings on demand (refused by `vm_setup_memory`).
pub const VM_MMAP_SPARSE: i32 = 2;

/// Default libvmmapi low-memory limit: guest RAM below it is mapped at
/// guest-physical 0, the rest at [`VM_HIGHMEM_BASE`].
pub const VM_LOWMEM_LIMIT: u64 = 3 << 30;
/// Guest-physical base of high memory.
pub const VM_HIGHMEM_BASE: u64 = 4 << 30;
/// End of the guest-physical address space (FreeBSD creates the guest
/// vmspace as `[0, VM_MAXUSER_ADDRESS_LA48)`); a map must end at or below it.
pub const VM_MAXUSER_ADDRESS_LA48: u64 = 1 << 47;

/// Protection bits (`PROT_*` = FreeBSD `VM_PROT_*`).
pub const PROT_READ: u32 = libc::PROT_READ as u32;
/// See [`PROT_READ`].
pub const PROT_WRITE: u32 = libc::PROT_WRITE as u32;
/// See [`PROT_READ`].
pub const PROT_EXEC: u32 = libc::PROT_EXEC as u32;
/// `VM_PROT_ALL`.
pub const PROT_ALL: u32 = PROT_READ | PROT_WRITE | PROT_EXEC;

/// One guest memory map, as `VM_MMAP_GETNEXT` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemMap {
    /// Guest-physical start.
    pub gpa: u64,
    /// Segment mapped.
    pub segid: i32,
    /// Offset of the map in the segment.
    pub segoff: u64,
    /// Length in bytes.
    pub len: usize,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `VM_MEMMAP_F_*` bits.
    pub flags: u32,
}

impl MemMap {
    /// One past the last guest-physical byte (no overflow: checked when the
    /// map is created).
    fn end(&self) -> u64 {
        self.gpa + self.len as u64
    }

    fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa < self.end()
    }
}

/// What `VM_GET_MEMSEG` reports about a segment id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemSegInfo {
    /// Length in bytes; 0 when the segment is not allocated.
    pub len: usize,
    /// System memory (unnamed) rather than device memory.
    pub sysmem: bool,
    /// Device-memory name, without NUL; empty for system memory and for an
    /// unallocated id.
    pub name: Vec<u8>,
}

#[derive(Debug)]
struct MemSeg {
    len: usize,
    sysmem: bool,
    /// Devmem name as given (empty for sysmem).
    name: Vec<u8>,
    host: HostMapping,
}

/// The guest memory of one VM, plus the libvmmapi context state that
/// describes the standard layout (`lowmem`, `highmem`, ...).
#[derive(Debug)]
pub struct GuestMemory {
    segs: [Option<MemSeg>; VM_MAX_MEMSEGS],
    /// Map slots, as FreeBSD's `mem_maps[]` (a free slot is `None`).
    maps: [Option<MemMap>; VM_MAX_MEMMAPS],
    // libvmmapi `struct vmctx` memory state.
    lowmem_limit: u32,
    memflags: i32,
    lowmem: usize,
    highmem: usize,
    /// `vm_setup_memory` completed: `baseaddr` is segment 0's host memory.
    setup_done: bool,
}

impl Default for GuestMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestMemory {
    /// No segments, no maps, libvmmapi defaults (low-memory limit 3 GiB,
    /// memflags 0).
    pub fn new() -> Self {
        GuestMemory {
            segs: Default::default(),
            maps: [None; VM_MAX_MEMMAPS],
            lowmem_limit: VM_LOWMEM_LIMIT as u32,
            memflags: 0,
            lowmem: 0,
            highmem: 0,
            setup_done: false,
        }
    }

    // ----------------------------------------------------------------
    // vmm.c / vmm_dev.c: the ioctl-level operations.
    // ----------------------------------------------------------------

    /// `VM_ALLOC_MEMSEG`: allocate segment `segid` of `len` bytes. `name`
    /// `None` or empty makes a system-memory segment; otherwise a device
    /// memory segment with that name (at most [`VM_MAX_SUFFIXLEN`] bytes).
    ///
    /// Errors, in FreeBSD's order: name longer than 15 bytes or holding a
    /// NUL: `Inval` (FreeBSD: ENAMETOOLONG, which the C face must detect
    /// itself); segid out of range, `len` 0 or not page-aligned: `Inval`;
    /// segment already allocated: `Exist` if it has the same length and
    /// kind (sysmem/devmem), else `Inval`; devmem name that devfs would
    /// refuse (whitespace, `"`, trailing `/`, a `.` or `..` component):
    /// `Inval`; devmem name equal to, or a directory prefix of, another
    /// segment's name: `Exist`; host memory unavailable: `NoMem`.
    pub fn alloc_memseg(&mut self, segid: i32, len: usize, name: Option<&[u8]>) -> Result<()> {
        let name = name.filter(|n| !n.is_empty());
        if let Some(n) = name {
            if n.len() > VM_MAX_SUFFIXLEN || n.contains(&0) {
                return Err(Error::Inval);
            }
        }
        let sysmem = name.is_none();
        let idx = seg_index(segid)?;
        if len == 0 || (len as u64) & PAGE_MASK != 0 {
            return Err(Error::Inval);
        }
        if let Some(seg) = &self.segs[idx] {
            return Err(if seg.len == len && seg.sysmem == sysmem {
                Error::Exist
            } else {
                Error::Inval
            });
        }
        if let Some(n) = name {
            // FreeBSD creates /dev/vmm.io/<vm>.<name> after allocating and
            // frees the segment if that fails; checking first is the same
            // as far as the caller can tell.
            self.check_devmem_name(n)?;
        }
        let host = HostMapping::new(len)?;
        self.segs[idx] = Some(MemSeg {
            len,
            sysmem,
            name: name.map(<[u8]>::to_vec).unwrap_or_default(),
            host,
        });
        Ok(())
    }

    /// `VM_GET_MEMSEG`: length, kind and name of segment `segid`. An
    /// unallocated id reports length 0 (not an error); an id out of range
    /// is `Inval`.
    pub fn get_memseg(&self, segid: i32) -> Result<MemSegInfo> {
        let idx = seg_index(segid)?;
        Ok(match &self.segs[idx] {
            Some(seg) => MemSegInfo {
                len: seg.len,
                sysmem: seg.sysmem,
                name: seg.name.clone(),
            },
            None => MemSegInfo::default(),
        })
    }

    /// `VM_MMAP_MEMSEG`: map `[segoff, segoff + len)` of segment `segid` at
    /// guest-physical `[gpa, gpa + len)`.
    ///
    /// Errors, in FreeBSD's order: `prot` 0 or with bits outside
    /// [`PROT_ALL`]: `Inval`; `flags` other than [`VM_MEMMAP_F_WIRED`]:
    /// `Inval`; segid out of range or segment not allocated: `Inval`; `len`
    /// 0, `segoff + len` overflowing or beyond the segment: `Inval`; `gpa`,
    /// `segoff` or `len` not page-aligned: `Inval`; all
    /// [`VM_MAX_MEMMAPS`] slots used: `NoSpc`; range overlapping another
    /// map, wrapping, or ending above [`VM_MAXUSER_ADDRESS_LA48`]: `Fault`
    /// (FreeBSD's `vm_map_find` failure).
    pub fn mmap_memseg(
        &mut self,
        gpa: u64,
        segid: i32,
        segoff: u64,
        len: usize,
        prot: u32,
        flags: u32,
    ) -> Result<()> {
        if prot == 0 || prot & !PROT_ALL != 0 {
            return Err(Error::Inval);
        }
        if flags & !VM_MEMMAP_F_WIRED != 0 {
            return Err(Error::Inval);
        }
        let idx = seg_index(segid)?;
        let seg = self.segs[idx].as_ref().ok_or(Error::Inval)?;
        let last = segoff.checked_add(len as u64).ok_or(Error::Inval)?;
        if len == 0 || last > seg.len as u64 {
            return Err(Error::Inval);
        }
        if (gpa | segoff | last) & PAGE_MASK != 0 {
            return Err(Error::Inval);
        }
        let slot = self
            .maps
            .iter()
            .position(Option::is_none)
            .ok_or(Error::NoSpc)?;
        let end = gpa.checked_add(len as u64).ok_or(Error::Fault)?;
        if end > VM_MAXUSER_ADDRESS_LA48 {
            return Err(Error::Fault);
        }
        if self.maps().any(|m| gpa < m.end() && m.gpa < end) {
            return Err(Error::Fault);
        }
        self.maps[slot] = Some(MemMap {
            gpa,
            segid,
            segoff,
            len,
            prot,
            flags,
        });
        Ok(())
    }

    /// `VM_MUNMAP_MEMSEG`: remove the map that starts at `gpa` and is `len`
    /// bytes long; anything else (partial range, no such map, a map in the
    /// IOMMU) is `Inval`. The segment and its contents stay.
    ///
    /// FreeBSD quirk kept: a free map slot reads as `gpa` 0, `len` 0, so
    /// `munmap_memseg(0, 0)` succeeds (and does nothing) while a slot is
    /// free.
    pub fn munmap_memseg(&mut self, gpa: u64, len: usize) -> Result<()> {
        for slot in &mut self.maps {
            match slot {
                Some(m) if m.gpa == gpa && m.len == len && m.flags & VM_MEMMAP_F_IOMMU == 0 => {
                    *slot = None;
                    return Ok(());
                }
                None if gpa == 0 && len == 0 => return Ok(()),
                _ => {}
            }
        }
        Err(Error::Inval)
    }

    /// `VM_MMAP_GETNEXT`: the map with the lowest start address `>= gpa`
    /// (a map that merely contains `gpa` is skipped); `NoEnt` if none.
    pub fn mmap_getnext(&self, gpa: u64) -> Result<MemMap> {
        self.maps()
            .filter(|m| m.gpa >= gpa)
            .min_by_key(|m| m.gpa)
            .copied()
            .ok_or(Error::NoEnt)
    }

    /// The maps, in guest-physical order.
    pub fn memmaps(&self) -> Vec<MemMap> {
        let mut v: Vec<MemMap> = self.maps().copied().collect();
        v.sort_by_key(|m| m.gpa);
        v
    }

    /// The memory part of `VM_REINIT` (`vm_cleanup(vm, false)`): maps of
    /// device-memory segments are removed (the guest may relocate them);
    /// system-memory maps, every segment and all contents stay, as does the
    /// libvmmapi layout state.
    pub fn reinit(&mut self) {
        for slot in &mut self.maps {
            if let Some(m) = slot {
                if !self.segs[m.segid as usize]
                    .as_ref()
                    .is_some_and(|s| s.sysmem)
                {
                    *slot = None;
                }
            }
        }
    }

    /// VM destroy (`vm_cleanup(vm, true)`): remove every map, free every
    /// segment (its host memory is unmapped now) and reset the libvmmapi
    /// state to [`GuestMemory::new`]'s. Host addresses handed out before
    /// are dangling afterwards.
    pub fn clear(&mut self) {
        *self = GuestMemory::new();
    }

    /// What `vm_assign_pptdev` does to the map table when the first
    /// passthrough device is bound (`vm_iommu_map`): every wired
    /// system-memory map gets [`VM_MEMMAP_F_IOMMU`] (and can no longer be
    /// unmapped).
    pub fn iommu_map(&mut self) {
        for m in self.maps.iter_mut().flatten() {
            let sysmem = self.segs[m.segid as usize]
                .as_ref()
                .is_some_and(|s| s.sysmem);
            if sysmem && m.flags & VM_MEMMAP_F_WIRED != 0 {
                m.flags |= VM_MEMMAP_F_IOMMU;
            }
        }
    }

    /// Inverse of [`GuestMemory::iommu_map`] (`vm_iommu_unmap`, when the last
    /// passthrough device is unbound).
    pub fn iommu_unmap(&mut self) {
        for m in self.maps.iter_mut().flatten() {
            let sysmem = self.segs[m.segid as usize]
                .as_ref()
                .is_some_and(|s| s.sysmem);
            if sysmem {
                m.flags &= !VM_MEMMAP_F_IOMMU;
            }
        }
    }

    /// `vmm_sysmem_maxaddr`: one past the highest guest-physical byte of
    /// system memory (0 if none is mapped).
    pub fn sysmem_maxaddr(&self) -> u64 {
        self.maps()
            .filter(|m| {
                self.segs[m.segid as usize]
                    .as_ref()
                    .is_some_and(|s| s.sysmem)
            })
            .map(MemMap::end)
            .max()
            .unwrap_or(0)
    }

    /// `vm_mem_allocated`: whether some map covers `gpa`.
    pub fn mem_allocated(&self, gpa: u64) -> bool {
        self.maps().any(|m| m.contains(gpa))
    }

    // ----------------------------------------------------------------
    // Host access.
    // ----------------------------------------------------------------

    /// Host address of guest-physical `[gpa, gpa + len)`, which must lie in
    /// one map whose protection includes `prot` (else `Fault`; `prot` bits
    /// outside [`PROT_ALL`] are `Inval`). With `len` 0, `gpa` must still be
    /// inside a map. The host memory is read-write whatever the map's
    /// protection, and stays valid until [`GuestMemory::clear`] or drop,
    /// even if the map is removed meanwhile.
    pub fn host_addr(&self, gpa: u64, len: usize, prot: u32) -> Result<NonNull<u8>> {
        if prot & !PROT_ALL != 0 {
            return Err(Error::Inval);
        }
        let (seg, off) = self.resolve(gpa, len, prot)?;
        seg.host.addr_at(off).ok_or(Error::Fault)
    }

    /// Host address of the start of segment `segid` (how a devmem segment
    /// is reached: libvmmapi `vm_create_devmem`). Valid until
    /// [`GuestMemory::clear`] or drop. `Inval` if the id is out of range or
    /// not allocated.
    pub fn segment_host_addr(&self, segid: i32) -> Result<NonNull<u8>> {
        let idx = seg_index(segid)?;
        let seg = self.segs[idx].as_ref().ok_or(Error::Inval)?;
        Ok(seg.host.addr())
    }

    /// Guest read of `buf.len()` bytes at `gpa`: the range must lie in one
    /// map with `PROT_READ`, else `Fault`.
    pub fn read_gpa(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        let src = self.guest_bytes(gpa, buf.len(), PROT_READ)?;
        for (d, s) in buf.iter_mut().zip(src) {
            *d = s.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// Guest write of `data` at `gpa`: the range must lie in one map with
    /// `PROT_WRITE`, else `Fault`. Visible through every map of the same
    /// segment bytes.
    pub fn write_gpa(&self, gpa: u64, data: &[u8]) -> Result<()> {
        let dst = self.guest_bytes(gpa, data.len(), PROT_WRITE)?;
        for (d, s) in dst.iter().zip(data) {
            d.store(*s, Ordering::Relaxed);
        }
        Ok(())
    }

    // ----------------------------------------------------------------
    // libvmmapi (FreeBSD 14, VMMAPI_VERSION 0200).
    // ----------------------------------------------------------------

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

    /// libvmmapi's (static) `vm_alloc_memseg`: like
    /// [`GuestMemory::alloc_memseg`], but an existing segment with the same
    /// length and name (both unnamed, or equal names) is success, and any
    /// other existing segment is `Inval`.
    pub fn vmmapi_alloc_memseg(
        &mut self,
        segid: i32,
        len: usize,
        name: Option<&[u8]>,
    ) -> Result<()> {
        let cur = self.get_memseg(segid)?;
        if cur.len != 0 {
            let want = name.filter(|n| !n.is_empty()).unwrap_or_default();
            return if cur.len == len && cur.name == want {
                Ok(())
            } else {
                Err(Error::Inval)
            };
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
    /// As in libvmmapi, the lowmem/highmem sizes are recorded before the
    /// segment is allocated, even if a later step fails.
    pub fn setup_memory(&mut self, memsize: usize, style: i32) -> Result<()> {
        if style != VM_MMAP_ALL {
            return Err(Error::Inval);
        }
        let limit = self.lowmem_limit as usize;
        let objsize = if memsize > limit {
            self.lowmem = limit;
            self.highmem = memsize - limit;
            (VM_HIGHMEM_BASE as usize)
                .checked_add(self.highmem)
                .ok_or(Error::Inval)?
        } else {
            self.lowmem = memsize;
            self.highmem = 0;
            memsize
        };
        self.setup_done = false;
        self.vmmapi_alloc_memseg(VM_SYSMEM, objsize, None)?;
        if self.highmem > 0 {
            self.vmmapi_mmap_memseg(
                VM_HIGHMEM_BASE,
                VM_SYSMEM,
                VM_HIGHMEM_BASE,
                self.highmem,
                PROT_ALL,
            )?;
        }
        if self.lowmem > 0 {
            self.vmmapi_mmap_memseg(0, VM_SYSMEM, 0, self.lowmem, PROT_ALL)?;
        }
        self.setup_done = true;
        Ok(())
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

    // ----------------------------------------------------------------
    // Internals.
    // ----------------------------------------------------------------

    fn maps(&self) -> impl Iterator<Item = &MemMap> {
        self.maps.iter().flatten()
    }

    /// The segment and segment offset backing `[gpa, gpa + len)`, which
    /// must lie in one map allowing `prot`.
    fn resolve(&self, gpa: u64, len: usize, prot: u32) -> Result<(&MemSeg, usize)> {
        let end = gpa.checked_add(len as u64).ok_or(Error::Fault)?;
        let m = self.maps().find(|m| m.contains(gpa)).ok_or(Error::Fault)?;
        if end > m.end() || prot & !m.prot != 0 {
            return Err(Error::Fault);
        }
        let seg = self.segs[m.segid as usize].as_ref().ok_or(Error::Fault)?;
        let off = usize::try_from(m.segoff + (gpa - m.gpa)).map_err(|_| Error::Fault)?;
        Ok((seg, off))
    }

    fn guest_bytes(&self, gpa: u64, len: usize, prot: u32) -> Result<&[AtomicU8]> {
        let (seg, off) = self.resolve(gpa, len, prot)?;
        let end = off.checked_add(len).ok_or(Error::Fault)?;
        seg.host.bytes().get(off..end).ok_or(Error::Fault)
    }

    /// The checks devfs (`prep_devname`, `devfs_dev_exists`) makes on
    /// `/dev/vmm.io/<vm>.<name>` that depend on `name`: `Inval` for
    /// whitespace, `"`, a trailing slash or a `.`/`..` component after the
    /// first; `Exist` if the name (with runs of slashes collapsed) equals
    /// another devmem segment's name or is a directory prefix of it, or the
    /// reverse.
    fn check_devmem_name(&self, name: &[u8]) -> Result<()> {
        if name
            .iter()
            .any(|&c| c == b' ' || (b'\t'..=b'\r').contains(&c) || c == b'"')
        {
            return Err(Error::Inval);
        }
        let norm = collapse_slashes(name);
        if norm.last() == Some(&b'/') {
            return Err(Error::Inval);
        }
        if norm
            .split(|&c| c == b'/')
            .skip(1)
            .any(|comp| comp == b"." || comp == b"..")
        {
            return Err(Error::Inval);
        }
        for seg in self.segs.iter().flatten().filter(|s| !s.sysmem) {
            let other = collapse_slashes(&seg.name);
            if path_contains(&norm, &other) || path_contains(&other, &norm) {
                return Err(Error::Exist);
            }
        }
        Ok(())
    }
}

fn seg_index(segid: i32) -> Result<usize> {
    usize::try_from(segid)
        .ok()
        .filter(|&i| i < VM_MAX_MEMSEGS)
        .ok_or(Error::Inval)
}

fn collapse_slashes(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &c in name {
        if !(c == b'/' && out.last() == Some(&b'/')) {
            out.push(c);
        }
    }
    out
}

/// devfs `devfs_pathpath`: `p1` is `p2` or lies below directory `p2`.
fn path_contains(p1: &[u8], p2: &[u8]) -> bool {
    p1 == p2 || (p1.len() > p2.len() && p1.starts_with(p2) && p1[p2.len()] == b'/')
}

/// Owner of one anonymous host mapping. This submodule holds all of the
/// module's `unsafe` code; its fields are private to it so the invariant
/// (`ptr..ptr+len` is a live read-write mapping owned by the value) cannot
/// be broken from outside.
mod host {
    use core::num::NonZeroUsize;
    use core::ptr::NonNull;
    use core::sync::atomic::AtomicU8;

    use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

    use crate::error::{Error, Result};

    #[derive(Debug)]
    pub(super) struct HostMapping {
        ptr: NonNull<u8>,
        len: usize,
    }

    // SAFETY: a HostMapping is plain memory owned by the value, tied to no
    // thread; the only shared access it offers is through atomics
    // (`bytes`), so it may move to and be shared between threads.
    unsafe impl Send for HostMapping {}
    // SAFETY: see `Send` above.
    unsafe impl Sync for HostMapping {}

    impl HostMapping {
        /// A zero-filled private read-write mapping of `len` bytes,
        /// committed lazily (MAP_NORESERVE on Linux). `NoMem` if the host
        /// refuses, `Inval` for 0.
        pub(super) fn new(len: usize) -> Result<Self> {
            let nz = NonZeroUsize::new(len).ok_or(Error::Inval)?;
            if len > isize::MAX as usize {
                return Err(Error::NoMem);
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            let flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE;
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            let flags = MapFlags::MAP_PRIVATE;
            // SAFETY: with no address hint the kernel picks a fresh range,
            // so no existing mapping (and no Rust object) is replaced; the
            // new mapping is owned by the returned value alone.
            let ptr = unsafe {
                mmap_anonymous(
                    None,
                    nz,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    flags,
                )
            }
            .map_err(|_| Error::NoMem)?;
            Ok(HostMapping {
                ptr: ptr.cast(),
                len,
            })
        }

        /// Start of the mapping.
        pub(super) fn addr(&self) -> NonNull<u8> {
            self.ptr
        }

        /// Address of byte `off`; `off == len` (one past the end) is allowed.
        pub(super) fn addr_at(&self, off: usize) -> Option<NonNull<u8>> {
            if off > self.len {
                return None;
            }
            // Address arithmetic only, no dereference: stays in (or one past)
            // the mapping, which does not wrap, so the result is non-null.
            NonNull::new(self.ptr.as_ptr().wrapping_add(off))
        }

        /// The mapping as bytes that may be read and written concurrently.
        pub(super) fn bytes(&self) -> &[AtomicU8] {
            // SAFETY: `ptr..ptr+len` is a live read-write mapping until
            // `drop`, and the returned borrow cannot outlive `self`; AtomicU8
            // has the size and alignment of u8 and every byte value is valid;
            // all Rust accesses go through atomics, so they do not race with
            // each other; `len <= isize::MAX` was checked in `new`.
            unsafe { core::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU8>(), self.len) }
        }
    }

    impl Drop for HostMapping {
        fn drop(&mut self) {
            // SAFETY: `ptr`/`len` are exactly the mapping made in `new`,
            // unmapped only here, and no borrow from `bytes` outlives
            // `self`.
            let r = unsafe { munmap(self.ptr.cast(), self.len) };
            debug_assert!(r.is_ok(), "munmap of guest memory failed: {r:?}");
        }
    }
}
