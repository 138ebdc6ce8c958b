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
//! exclusively (with all vCPUs frozen), GET_MEMSEG, MMAP_GETNEXT, vCPU 0's
//! VM_STATS (the memory statistics) and guest accesses take it shared. Guest accesses through `&self` are atomic byte
//! copies, so concurrent readers and writers of the same bytes are sound.
//!
//! Files: this one holds the segments, the maps and guest access;
//! `vmmapi` the libvmmapi layer on top (`vm_setup_memory`, `vm_map_gpa`,
//! ...), `devmem_name` devfs's rules for devmem names, `access` the
//! guest's own loads and stores. The only `unsafe` code of the module is
//! in the private `host` submodule (mmap, munmap and the view of a mapping
//! as a byte slice).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

use self::host::HostMapping;

mod access;
mod devmem_name;
mod host;
mod vmmapi;
pub use access::RamAccess;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod vmmapi_tests;

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

/// Map flag: the map is wired: its host pages are resident and locked
/// (mlock) while some wired map covers them.
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
    /// (FreeBSD's `vm_map_find` failure); a wired map whose host pages the
    /// host will not lock: `NoMem` (`vm_map_wire`'s resource shortage),
    /// with no map made.
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
        if flags & VM_MEMMAP_F_WIRED != 0 {
            // FreeBSD wires the new map (`vm_map_wire`) and removes it
            // again if that fails: a failed wire leaves no map, and no
            // pages locked on its account (mlock may lock part of the
            // range before it fails).
            if let Err(e) = seg.host.wire(segoff as usize, len) {
                // Unlocking what mlock locked before failing needs no
                // split when it failed on the limit or on a split; when it
                // failed faulting pages in, the locked part may have
                // merged with a neighbouring wired map's area, and at the
                // host's area limit those pages then stay locked, with no
                // map, until the segment is released.
                let _ = self.unwire_keeping_others(segid, segoff, len, None);
                return Err(e);
            }
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
    ///
    /// Unwiring a wired map can need the host to split its memory area
    /// (when another wired map of the segment overlaps or adjoins it: the
    /// host merges adjacent locked areas); where the host refuses (its
    /// map-count limit), this is `NoMem` and the map stays, wired.
    pub fn munmap_memseg(&mut self, gpa: u64, len: usize) -> Result<()> {
        for i in 0..self.maps.len() {
            match self.maps[i] {
                Some(m) if m.gpa == gpa && m.len == len && m.flags & VM_MEMMAP_F_IOMMU == 0 => {
                    return self.remove_map(i);
                }
                None if gpa == 0 && len == 0 => return Ok(()),
                _ => {}
            }
        }
        Err(Error::Inval)
    }

    /// Frees map slot `i`, unwiring what only it kept wired; `NoMem`, and
    /// the map stays, if the host refuses the unwiring.
    fn remove_map(&mut self, i: usize) -> Result<()> {
        let Some(gone) = self.maps[i] else {
            return Ok(());
        };
        if gone.flags & VM_MEMMAP_F_WIRED != 0 {
            self.unwire_keeping_others(gone.segid, gone.segoff, gone.len, Some(i))?;
        }
        self.maps[i] = None;
        Ok(())
    }

    /// Unwires `[segoff, segoff + len)` of segment `segid` except what a
    /// wired map in the table (other than slot `except`) still covers.
    /// Only the uncovered pieces are unlocked: locking a piece again
    /// after unlocking it would need the host to split its memory area,
    /// which it may refuse. Unlocking part of a locked area needs such a
    /// split too; if the host refuses one, the pieces already unlocked
    /// are locked again (they are whole areas by then, so that needs no
    /// split) and the result is `NoMem`.
    fn unwire_keeping_others(&self, segid: i32, segoff: u64, len: usize, except: Option<usize>) -> Result<()> {
        let Some(seg) = self.segs.get(segid as usize).and_then(Option::as_ref) else {
            return Ok(());
        };
        let pieces = uncovered(segoff, segoff + len as u64, self.wired_ranges(segid, except));
        for (n, &(a, b)) in pieces.iter().enumerate() {
            if let Err(e) = seg.host.unwire(a as usize, (b - a) as usize) {
                for &(a, b) in &pieces[..n] {
                    let _ = seg.host.wire(a as usize, (b - a) as usize);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// The segment-offset ranges of segment `segid` that wired maps cover
    /// (map slot `except` left out), overlapping as the maps do.
    fn wired_ranges(&self, segid: i32, except: Option<usize>) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.maps.iter().enumerate().filter_map(move |(i, m)| match m {
            Some(m) if Some(i) != except && m.segid == segid && m.flags & VM_MEMMAP_F_WIRED != 0 => {
                Some((m.segoff, m.segoff + m.len as u64))
            }
            _ => None,
        })
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

    /// Bytes of guest memory resident in host RAM now (the "Resident
    /// memory" statistic): every segment's, system and device memory,
    /// each counted once however many maps (if any) place it in the
    /// guest, as mincore(2) reports its host mapping.
    ///
    /// FreeBSD counts `vmspace_resident_count` of the guest's vmspace:
    /// the pages its nested page tables map, so a page mapped at two
    /// guest addresses counts twice there, and a page only the host
    /// touched (through its own mapping) not until the guest faults it
    /// in. This VMM has no guest page tables to count; the pages of the
    /// segments that back the guest are the nearest honest measure of
    /// what the guest holds in host RAM. Pages read but never written
    /// count too where the host maps them to its shared zero page
    /// (Linux), as FreeBSD's guest fault gives them a page of their own.
    pub fn resident_bytes(&self) -> u64 {
        self.segs.iter().flatten().map(|s| s.host.resident_bytes() as u64).sum()
    }

    /// Bytes of guest memory the library keeps wired (the "Wired memory"
    /// statistic): what the wired maps cover, each segment byte counted
    /// once however many wired maps cover it (the pages they mlock).
    /// FreeBSD counts the guest pmap's wired entries
    /// (`pmap_wired_count`), which would count a page wired at two guest
    /// addresses twice. Pages left locked with no wired map (an unlock
    /// the host refused, see `reinit`) are not counted.
    pub fn wired_bytes(&self) -> u64 {
        self.segs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as i32, s.as_ref()?.len as u64)))
            .map(|(segid, len)| {
                let not_wired: u64 = uncovered(0, len, self.wired_ranges(segid, None)).iter().map(|(a, b)| b - a).sum();
                len - not_wired
            })
            .sum()
    }

    /// The memory part of `VM_REINIT` (`vm_cleanup(vm, false)`): maps of
    /// device-memory segments are removed (the guest may relocate them);
    /// system-memory maps, every segment and all contents stay, as does the
    /// libvmmapi layout state.
    pub fn reinit(&mut self) {
        for i in 0..self.maps.len() {
            if let Some(m) = self.maps[i] {
                if !self.segs[m.segid as usize]
                    .as_ref()
                    .is_some_and(|s| s.sysmem)
                    && self.remove_map(i).is_err()
                {
                    // The host refused to split a locked area: the map
                    // goes anyway (a reset cannot fail), and its pages
                    // stay locked until the segment is released.
                    self.maps[i] = None;
                }
            }
        }
    }

    /// VM destroy: gives every segment's pages back to the host now
    /// (their contents read as zeros afterwards) while their addresses
    /// stay mapped, so a thread still writing through a host address does
    /// not fault, even after the last handle is closed: the address range
    /// stays reserved for the rest of the process (`HostMapping`'s drop).
    pub fn release_host_memory(&mut self) {
        for seg in self.segs.iter().flatten() {
            seg.host.release_pages();
        }
    }

    /// `vm_cleanup(vm, true)`'s part: remove every map, free every
    /// segment (its host memory is unmapped now) and reset the libvmmapi
    /// state to [`GuestMemory::new`]'s. Host addresses handed out before
    /// are dangling afterwards, so the VM does not call it on destroy: it
    /// gives the memory back with `release_host_memory`, keeping the
    /// addresses mapped, and dropping the `GuestMemory` then leaves them
    /// mapped.
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

    /// A guest page-table entry of `width` bytes (4 or 8, naturally
    /// aligned) at `gpa`, read in one access. As FreeBSD holds page-table
    /// pages read-write, the map must allow both, else `Fault`.
    pub fn read_pte(&self, gpa: u64, width: u8) -> Result<u64> {
        let (seg, off) = self.pte_slot(gpa, width)?;
        Ok(match width {
            4 => u64::from(seg.host.atomic_u32_at(off).ok_or(Error::Fault)?.load(Ordering::SeqCst)),
            _ => seg.host.atomic_u64_at(off).ok_or(Error::Fault)?.load(Ordering::SeqCst),
        })
    }

    /// Sets a page-table entry from `old` to `new` if it still holds `old`
    /// (`atomic_cmpset`, for the accessed and dirty bits): whether it did.
    pub fn cmpxchg_pte(&self, gpa: u64, width: u8, old: u64, new: u64) -> Result<bool> {
        let (seg, off) = self.pte_slot(gpa, width)?;
        Ok(match width {
            4 => {
                let a = seg.host.atomic_u32_at(off).ok_or(Error::Fault)?;
                a.compare_exchange(old as u32, new as u32, Ordering::SeqCst, Ordering::SeqCst).is_ok()
            }
            _ => {
                let a = seg.host.atomic_u64_at(off).ok_or(Error::Fault)?;
                a.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst).is_ok()
            }
        })
    }

    fn pte_slot(&self, gpa: u64, width: u8) -> Result<(&MemSeg, usize)> {
        if !matches!(width, 4 | 8) || !gpa.is_multiple_of(u64::from(width)) {
            return Err(Error::Inval);
        }
        self.resolve(gpa, usize::from(width), PROT_READ | PROT_WRITE)
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
}

/// The parts of `[start, end)` that no range of `kept` covers, in order.
fn uncovered(start: u64, end: u64, kept: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut kept: Vec<(u64, u64)> = kept.filter(|&(a, b)| a < end && start < b && a < b).collect();
    kept.sort_unstable();
    let mut pieces = Vec::new();
    let mut at = start;
    for (a, b) in kept {
        if a > at {
            pieces.push((at, a));
        }
        at = at.max(b);
    }
    if at < end {
        pieces.push((at, end));
    }
    pieces
}

fn seg_index(segid: i32) -> Result<usize> {
    usize::try_from(segid)
        .ok()
        .filter(|&i| i < VM_MAX_MEMSEGS)
        .ok_or(Error::Inval)
}
