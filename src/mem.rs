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
//! The only `unsafe` code of the module is in the private `host` submodule
//! (mmap, munmap and the view of a mapping as a byte slice).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

use self::host::HostMapping;

mod access;
pub use access::RamAccess;

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
/// (`ptr..ptr+len` is a live read-write mapping owned by the value, with
/// `GUARD` inaccessible bytes on either side, also owned) cannot be
/// broken from outside.
mod host {
    use core::num::NonZeroUsize;
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};

    use nix::sys::mman::{madvise, mlock, mmap_anonymous, munlock, munmap, MapFlags, MmapAdvise, ProtFlags};

    use crate::error::{Error, Result};

    /// Inaccessible bytes before and after each guest-memory mapping
    /// (libvmmapi's `VM_MMAP_GUARD_SIZE`).
    pub(crate) const GUARD: usize = 4 << 20;

    #[derive(Debug)]
    pub(super) struct HostMapping {
        ptr: NonNull<u8>,
        len: usize,
        /// The pages went back to the host (VM destroy): the range stays
        /// mapped for the rest of the process.
        released: std::sync::atomic::AtomicBool,
    }

    // SAFETY: a HostMapping is plain memory owned by the value, tied to no
    // thread; the only shared access it offers is through atomics
    // (`bytes`), so it may move to and be shared between threads.
    unsafe impl Send for HostMapping {}
    // SAFETY: see `Send` above.
    unsafe impl Sync for HostMapping {}

    impl HostMapping {
        /// A zero-filled private read-write mapping of `len` bytes,
        /// committed lazily (MAP_NORESERVE on Linux), between two
        /// inaccessible guard regions of [`GUARD`] bytes (libvmmapi's
        /// `VM_MMAP_GUARD_SIZE`): a device model running off either end of
        /// guest memory faults instead of writing into a neighbouring
        /// mapping. `NoMem` if the host refuses, `Inval` for 0.
        pub(super) fn new(len: usize) -> Result<Self> {
            if len == 0 {
                return Err(Error::Inval);
            }
            let total = len.checked_add(2 * GUARD).filter(|t| *t <= isize::MAX as usize).ok_or(Error::NoMem)?;
            let nz = NonZeroUsize::new(total).ok_or(Error::Inval)?;
            #[cfg(any(target_os = "linux", target_os = "android"))]
            let flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE;
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            let flags = MapFlags::MAP_PRIVATE;
            // SAFETY: with no address hint the kernel picks a fresh range,
            // so no existing mapping (and no Rust object) is replaced; the
            // new mapping is owned by the returned value alone.
            let base = unsafe { mmap_anonymous(None, nz, ProtFlags::PROT_NONE, flags) }.map_err(|_| Error::NoMem)?;
            // Inside the reservation just made: GUARD < total - len.
            let ptr = base.cast::<u8>().map_addr(|a| a.saturating_add(GUARD));
            // The middle is mapped afresh read-write over the reservation
            // rather than mprotect()ed: the same three areas, but valgrind's
            // memcheck takes seconds per GiB to mprotect and none to map.
            // SAFETY: MAP_FIXED replaces `ptr..ptr+len`, which lies inside
            // the reservation above, which nothing else refers to yet.
            let rw = match (NonZeroUsize::new(ptr.as_ptr() as usize), NonZeroUsize::new(len)) {
                (Some(at), Some(len)) => unsafe {
                    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
                    mmap_anonymous(Some(at), len, prot, flags | MapFlags::MAP_FIXED).map(drop)
                },
                _ => Err(nix::Error::EINVAL),
            };
            if rw.is_err() {
                // SAFETY: the reservation made above, not yet handed out.
                let _ = unsafe { munmap(base, total) };
                return Err(Error::NoMem);
            }
            Ok(HostMapping { ptr, len, released: std::sync::atomic::AtomicBool::new(false) })
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

        /// Puts the mapping in the process's core dumps or leaves it out
        /// (FreeBSD libvmmapi maps guest memory MAP_NOCORE unless asked
        /// to keep it). Advice only: where the host has no such advice
        /// (macOS), nothing.
        pub(super) fn set_in_core_dumps(&self, included: bool) {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            let advice = if included { MmapAdvise::MADV_DODUMP } else { MmapAdvise::MADV_DONTDUMP };
            #[cfg(any(target_os = "freebsd", target_os = "dragonfly"))]
            let advice = if included { MmapAdvise::MADV_CORE } else { MmapAdvise::MADV_NOCORE };
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "dragonfly"))]
            {
                // SAFETY: `ptr..ptr+len` is this value's own mapping; the
                // advice changes only whether a core dump includes it.
                let r = unsafe { madvise(self.ptr.cast(), self.len, advice) };
                debug_assert!(r.is_ok(), "madvise({advice:?}) of guest memory failed: {r:?}");
            }
            #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "dragonfly")))]
            let _ = included;
        }

        /// Wires bytes `[off, off + len)` (page-aligned, inside the
        /// mapping): their pages are made resident and locked (mlock).
        /// `NoMem` when the host refuses (RLIMIT_MEMLOCK without
        /// CAP_IPC_LOCK, or no memory), as FreeBSD's `vm_map_wire`
        /// resource shortage; nothing stays locked then.
        pub(super) fn wire(&self, off: usize, len: usize) -> Result<()> {
            let Some(start) = self.range(off, len)? else {
                return Ok(());
            };
            // SAFETY: `start..start+len` is inside this value's own mapping
            // (`range`); locking changes residency only.
            unsafe { mlock(start.cast(), len) }.map_err(|_| Error::NoMem)
        }

        /// Bytes of the mapping resident in host RAM now (mincore(2), a
        /// bounded number of host pages per call so that its vector
        /// stays small); a host page past the end counts only the bytes
        /// of the mapping in it.
        pub(super) fn resident_bytes(&self) -> usize {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
            const CHUNK_PAGES: usize = 1 << 16;
            let mut vec = vec![0u8; CHUNK_PAGES.min(self.len.div_ceil(page))];
            let mut resident = 0;
            let mut off = 0;
            while off < self.len {
                let len = (self.len - off).min(CHUNK_PAGES * page);
                let pages = len.div_ceil(page);
                // SAFETY: `ptr + off` is host-page-aligned (the mapping
                // starts on a host page and `off` advances by whole
                // chunks of host pages) and `off..off+len` lies inside
                // this value's own mapping; `vec` has room for one byte
                // per page of it. mincore only reports residency.
                let r = unsafe { libc::mincore(self.ptr.as_ptr().add(off).cast(), len, vec.as_mut_ptr().cast()) };
                // A failed call (EAGAIN: the kernel short of memory)
                // leaves this chunk uncounted: a statistic, read again
                // later, rather than a panic.
                if r == 0 {
                    for (i, v) in vec[..pages].iter().enumerate() {
                        if v & 1 != 0 {
                            resident += page.min(len - i * page);
                        }
                    }
                }
                off += len;
            }
            resident
        }

        /// The address of bytes `[off, off + len)`, `None` for an empty
        /// range; `Inval` past the mapping.
        fn range(&self, off: usize, len: usize) -> Result<Option<NonNull<u8>>> {
            off.checked_add(len).filter(|e| *e <= self.len).ok_or(Error::Inval)?;
            if len == 0 {
                return Ok(None);
            }
            self.addr_at(off).ok_or(Error::Inval).map(Some)
        }

        /// Unwires bytes `[off, off + len)` (munlock; Linux locks do not
        /// nest, so one call undoes any number of `wire`s of a page).
        /// `NoMem` if the host refuses: unlocking part of a locked memory
        /// area splits it, and the host caps the number of areas.
        pub(super) fn unwire(&self, off: usize, len: usize) -> Result<()> {
            let Some(start) = self.range(off, len)? else {
                return Ok(());
            };
            // SAFETY: as in `wire`.
            unsafe { munlock(start.cast(), len) }.map_err(|_| Error::NoMem)
        }

        /// Returns the pages to the host (MADV_DONTNEED on this private
        /// anonymous mapping): the range stays mapped and reads as zeros.
        /// Unwires the whole mapping first (locked pages cannot be
        /// dropped).
        pub(super) fn release_pages(&self) {
            self.released.store(true, std::sync::atomic::Ordering::Relaxed);
            // The whole mapping: every area in it is unlocked whole, with
            // no split to refuse.
            let r = self.unwire(0, self.len);
            debug_assert!(r.is_ok(), "munlock of guest memory failed: {r:?}");
            // SAFETY: `ptr..ptr+len` is this value's own mapping; dropping
            // private anonymous pages only makes them read as zeros, which
            // every user of `bytes` (atomics) already allows for.
            let r = unsafe { madvise(self.ptr.cast(), self.len, MmapAdvise::MADV_DONTNEED) };
            debug_assert!(r.is_ok(), "madvise of guest memory failed: {r:?}");
        }

        /// The naturally aligned 2 bytes at `off` as one atomic (a guest's
        /// aligned 16-bit access), or `None` if unaligned or outside.
        pub(super) fn atomic_u16_at(&self, off: usize) -> Option<&AtomicU16> {
            if !off.is_multiple_of(2) || off.checked_add(2)? > self.len {
                return None;
            }
            // SAFETY: as in `atomic_u32_at`, with 2-byte alignment.
            Some(unsafe { AtomicU16::from_ptr(self.ptr.as_ptr().add(off).cast()) })
        }

        /// The naturally aligned 4 bytes at `off` as one atomic (a guest
        /// page-table entry, a guest's aligned 32-bit access); `None` if
        /// out of range or misaligned.
        pub(super) fn atomic_u32_at(&self, off: usize) -> Option<&AtomicU32> {
            if !off.is_multiple_of(4) || off.checked_add(4)? > self.len {
                return None;
            }
            // SAFETY: in the live read-write mapping (checked above), 4-byte
            // aligned (the mapping is page-aligned), valid for any bit
            // pattern, and the borrow cannot outlive `self`. Other accesses
            // to these bytes are atomics too, of this or another width
            // (`bytes` for the host's copies, the guest's own accesses in
            // `access`): Rust's memory model leaves a race between atomics
            // of different sizes on the same bytes undefined. Such races
            // are what guests and device models do (a guest stores a ring
            // index while a device thread copies the ring byte by byte;
            // another thread writes the page-table entry this walk
            // updates); x86 gives them the meaning both sides rely on,
            // each atomic access whole.
            Some(unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast()) })
        }

        /// As [`HostMapping::atomic_u32_at`], 8 bytes.
        pub(super) fn atomic_u64_at(&self, off: usize) -> Option<&AtomicU64> {
            if !off.is_multiple_of(8) || off.checked_add(8)? > self.len {
                return None;
            }
            // SAFETY: as in `atomic_u32_at`, with 8-byte alignment.
            Some(unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(off).cast()) })
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
        /// Unmaps the range, unless its pages were released (VM destroy):
        /// then threads may still hold addresses in it (a device model's
        /// `vm_map_gpa` pointer), and as FreeBSD's mapping of guest memory
        /// outlives the VM until the process unmaps it, which bhyve never
        /// does, the range stays mapped, reading zeros and costing no
        /// memory until written, for the rest of the process.
        fn drop(&mut self) {
            if *self.released.get_mut() {
                return;
            }
            // SAFETY: the guards and `ptr`/`len` are exactly the
            // reservation made in `new`, unmapped only here, and no borrow
            // from `bytes` outlives `self`.
            let base = self.ptr.as_ptr().wrapping_sub(GUARD);
            let Some(base) = NonNull::new(base.cast()) else {
                return;
            };
            let r = unsafe { munmap(base, self.len + 2 * GUARD) };
            debug_assert!(r.is_ok(), "munmap of guest memory failed: {r:?}");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MIB: usize = 1 << 20;
    const GIB: usize = 1 << 30;
    const P: usize = PAGE_SIZE;
    const P64: u64 = PAGE_SIZE as u64;

    /// Memory with segment 0 (sysmem) and 1 (devmem "dev"), 16 pages each.
    fn two_segs() -> GuestMemory {
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 16 * P, None).unwrap();
        m.alloc_memseg(1, 16 * P, Some(b"dev")).unwrap();
        m
    }

    fn map(gpa: u64, segid: i32, segoff: u64, len: usize, prot: u32, flags: u32) -> MemMap {
        MemMap {
            gpa,
            segid,
            segoff,
            len,
            prot,
            flags,
        }
    }

    /// Whether some mapping of this process covers `addr` (/proc/self/maps).
    #[cfg(target_os = "linux")]
    fn is_mapped(addr: usize) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().any(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let a = usize::from_str_radix(a, 16).unwrap();
            let b = usize::from_str_radix(b, 16).unwrap();
            a <= addr && addr < b
        })
    }

    /// Reads this process's memory at `addr` through /proc/self/mem (safe,
    /// and fails with an error if the address is not mapped).
    #[cfg(target_os = "linux")]
    fn peek(addr: usize, len: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open("/proc/self/mem")?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, addr as u64)?;
        Ok(buf)
    }

    /// Writes this process's memory at `addr` through /proc/self/mem.
    #[cfg(target_os = "linux")]
    fn poke(addr: usize, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open("/proc/self/mem").unwrap();
        f.write_all_at(bytes, addr as u64).unwrap();
    }

    /// Marks memory that is about to be released: `assert_released` then
    /// tells our mapping from one another thread's mmap put at the same
    /// address meanwhile (which reads zeros, or its own data).
    #[cfg(target_os = "linux")]
    const MARKER: &[u8; 8] = b"vmm_rs\x01\x02";

    /// Whether the read-write mapping of a segment, exactly
    /// `[start, start + len)`, is in /proc/self/maps. Its guards (another
    /// protection) keep the kernel from merging it with a neighbour, and
    /// each test gives its segment a size of its own, so no other mapping
    /// has this exact range.
    #[cfg(target_os = "linux")]
    fn segment_mapped(start: usize, len: usize) -> bool {
        let range = format!("{:x}-{:x} rw", start, start + len);
        std::fs::read_to_string("/proc/self/maps").unwrap().lines().any(|l| l.starts_with(&range))
    }

    /// Whether the host pages `[start, start + len)` are locked: `Some`
    /// of the answer when every mapping the range overlaps in
    /// /proc/self/smaps agrees (VmFlags `lo`, which mlock sets on exactly
    /// the locked range), `None` when part is locked and part is not.
    #[cfg(target_os = "linux")]
    fn host_locked(start: usize, len: usize) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut seen = Vec::new();
        let mut overlapping = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = first.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                    overlapping = a < start + len && start < b;
                    continue;
                }
            }
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                if overlapping {
                    seen.push(flags.split_whitespace().any(|f| f == "lo"));
                }
            }
        }
        assert!(!seen.is_empty(), "{start:#x}+{len:#x} is not mapped");
        let first = seen[0];
        seen.iter().all(|l| *l == first).then_some(first)
    }

    /// Lets this process lock `need` bytes: raises RLIMIT_MEMLOCK's soft
    /// limit to its hard one. False (after saying why) where even that is
    /// too little for a thread without CAP_IPC_LOCK: the
    /// wired tests cannot run there.
    #[cfg(target_os = "linux")]
    pub(crate) fn can_wire(need: u64) -> bool {
        // CAP_IPC_LOCK in this thread's effective set (root usually has
        // it; a container's root may not) lifts RLIMIT_MEMLOCK.
        fn has_ipc_lock() -> bool {
            const CAP_IPC_LOCK: u32 = 14;
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
            let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim);
            eff.and_then(|h| u64::from_str_radix(h, 16).ok()).is_some_and(|c| c >> CAP_IPC_LOCK & 1 == 1)
        }
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (_, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
        setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard).unwrap();
        let ok = hard >= need || has_ipc_lock();
        if !ok {
            eprintln!("skipped: RLIMIT_MEMLOCK hard limit {hard} is below the {need} bytes this test wires");
        }
        ok
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn wired_maps_lock_their_host_pages_until_the_last_one_goes() {
        if !can_wire(16 << 20) {
            return;
        }
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 24 * P, None).unwrap();
        let host = m.segment_host_addr(0).unwrap().as_ptr() as usize;
        let pages = |first: usize, n: usize| host_locked(host + first * P, n * P);
        // Pages 2..8 mapped twice, wired (at two guest addresses);
        // pages 12..16 mapped, not wired.
        m.mmap_memseg(0, 0, 2 * P64, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
        m.mmap_memseg(1 << 20, 0, 4 * P64, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
        m.mmap_memseg(2 << 20, 0, 12 * P64, 4 * P, PROT_ALL, 0).unwrap();
        assert_eq!((pages(0, 2), pages(2, 8), pages(10, 14)), (Some(false), Some(true), Some(false)));
        // Unmapping the first keeps what the second still wires.
        m.munmap_memseg(0, 6 * P).unwrap();
        assert_eq!((pages(0, 4), pages(4, 6), pages(10, 14)), (Some(false), Some(true), Some(false)));
        m.munmap_memseg(1 << 20, 6 * P).unwrap();
        m.munmap_memseg(2 << 20, 4 * P).unwrap();
        assert_eq!(pages(0, 24), Some(false));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reinit_unwires_device_memory_and_destroy_releases_wired_pages() {
        if !can_wire(16 << 20) {
            return;
        }
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 26 * P, None).unwrap();
        m.alloc_memseg(1, 6 * P, Some(b"fb")).unwrap();
        m.mmap_memseg(0, 0, 0, 26 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
        m.mmap_memseg(1 << 30, 1, 0, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
        let sys = m.segment_host_addr(0).unwrap().as_ptr() as usize;
        let dev = m.segment_host_addr(1).unwrap().as_ptr() as usize;
        assert_eq!((host_locked(sys, 26 * P), host_locked(dev, 6 * P)), (Some(true), Some(true)));
        m.reinit();
        assert_eq!((host_locked(sys, 26 * P), host_locked(dev, 6 * P)), (Some(true), Some(false)));
        m.write_gpa(5, b"x").unwrap();
        // Locked pages cannot be dropped: release unwires them first.
        m.release_host_memory();
        assert_eq!(host_locked(sys, 26 * P), Some(false));
        let mut b = [1u8];
        m.read_gpa(5, &mut b).unwrap();
        assert_eq!(b, [0]);
    }

    /// "Resident memory": the segments' pages in host RAM, each segment
    /// counted once however many maps alias it, device memory too.
    #[test]
    fn resident_bytes_count_touched_pages_of_every_segment_once() {
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 40 * P, None).unwrap();
        m.alloc_memseg(1, 8 * P, Some(b"rom")).unwrap();
        assert_eq!(m.resident_bytes(), 0, "nothing touched yet");
        // Segment 0 mapped twice (aliases), segment 1 once.
        m.mmap_memseg(0, 0, 0, 40 * P, PROT_ALL, 0).unwrap();
        m.mmap_memseg(1 << 20, 0, 0, 40 * P, PROT_ALL, 0).unwrap();
        m.mmap_memseg(1 << 30, 1, 0, 8 * P, PROT_ALL, 0).unwrap();
        for page in 0..10u64 {
            m.write_gpa(page * P64, &[1]).unwrap();
            m.write_gpa((1 << 20) + page * P64, &[2]).unwrap(); // the same pages
        }
        m.write_gpa(1 << 30, &[3]).unwrap();
        let r = m.resident_bytes();
        assert!(r >= 11 * P64, "{r}");
        assert!(r <= 48 * P64, "{r}: at most the segments' sizes");
        // Written through the host mapping, unmapped: still the guest's.
        m.munmap_memseg(1 << 30, 8 * P).unwrap();
        assert!(m.resident_bytes() >= 11 * P64);
        m.release_host_memory();
        assert_eq!(m.resident_bytes(), 0, "given back to the host");
    }

    /// "Wired memory": what the wired maps cover, each byte once.
    #[cfg(target_os = "linux")]
    #[test]
    fn wired_bytes_count_each_wired_byte_once() {
        if !can_wire(16 << 20) {
            return;
        }
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 28 * P, None).unwrap();
        m.alloc_memseg(1, 4 * P, Some(b"fb")).unwrap();
        assert_eq!(m.wired_bytes(), 0);
        // Pages 2..8 and 4..10 of segment 0 (8 pages wired), 12..16 not.
        m.mmap_memseg(0, 0, 2 * P64, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
        m.mmap_memseg(1 << 20, 0, 4 * P64, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
        m.mmap_memseg(2 << 20, 0, 12 * P64, 4 * P, PROT_ALL, 0).unwrap();
        assert_eq!(m.wired_bytes(), 8 * P64);
        m.mmap_memseg(1 << 30, 1, 0, 4 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
        assert_eq!(m.wired_bytes(), 12 * P64);
        assert!(m.resident_bytes() >= 12 * P64, "wired pages are resident");
        m.munmap_memseg(0, 6 * P).unwrap();
        assert_eq!(m.wired_bytes(), 10 * P64);
        m.reinit(); // device memory's maps go
        assert_eq!(m.wired_bytes(), 6 * P64);
    }

    /// The segment mapping `[start, start + len)` that held `MARKER` at
    /// `probe` is gone: its exact range is no longer mapped, and `probe`
    /// is unmapped or mapped afresh by someone else (zeros or their data).
    #[cfg(target_os = "linux")]
    fn assert_released(start: usize, len: usize, probe: usize, what: &str) {
        assert!(!segment_mapped(start, len), "{what}");
        if let Ok(now) = peek(probe, MARKER.len()) {
            assert_ne!(now, MARKER, "{what}");
        }
    }

    #[test]
    fn constants_match_freebsd() {
        assert_eq!(VM_MAX_MEMSEGS, 4);
        assert_eq!(VM_MAX_MEMMAPS, 8);
        assert_eq!(VM_MAX_SUFFIXLEN, 15);
        assert_eq!((VM_MEMMAP_F_WIRED, VM_MEMMAP_F_IOMMU), (1, 2));
        assert_eq!((VM_MEM_F_INCORE, VM_MEM_F_WIRED), (1, 2));
        assert_eq!(
            (VM_SYSMEM, VM_BOOTROM, VM_FRAMEBUFFER, VM_PCIROM),
            (0, 1, 2, 3)
        );
        assert_eq!((VM_MMAP_NONE, VM_MMAP_ALL, VM_MMAP_SPARSE), (0, 1, 2));
        assert_eq!(VM_LOWMEM_LIMIT, 0xc000_0000);
        assert_eq!(VM_HIGHMEM_BASE, 0x1_0000_0000);
        assert_eq!(VM_MAXUSER_ADDRESS_LA48, 0x8000_0000_0000);
        assert_eq!((PROT_READ, PROT_WRITE, PROT_EXEC, PROT_ALL), (1, 2, 4, 7));
    }

    // ---------------------------------------------------------------
    // alloc_memseg / get_memseg
    // ---------------------------------------------------------------

    #[test]
    fn alloc_sysmem_and_devmem() {
        let m = two_segs();
        assert_eq!(
            m.get_memseg(0).unwrap(),
            MemSegInfo {
                len: 16 * P,
                sysmem: true,
                name: vec![]
            }
        );
        assert_eq!(
            m.get_memseg(1).unwrap(),
            MemSegInfo {
                len: 16 * P,
                sysmem: false,
                name: b"dev".to_vec()
            }
        );
    }

    #[test]
    fn alloc_every_id_and_empty_name_is_sysmem() {
        let mut m = GuestMemory::new();
        for id in 0..VM_MAX_MEMSEGS as i32 {
            m.alloc_memseg(id, P * (id as usize + 1), Some(b""))
                .unwrap();
            let info = m.get_memseg(id).unwrap();
            assert_eq!(info.len, P * (id as usize + 1));
            assert!(info.sysmem);
            assert!(info.name.is_empty());
        }
    }

    #[test]
    fn alloc_bad_id() {
        let mut m = GuestMemory::new();
        for id in [-1, VM_MAX_MEMSEGS as i32, i32::MIN, i32::MAX] {
            assert_eq!(m.alloc_memseg(id, P, None), Err(Error::Inval));
        }
    }

    #[test]
    fn alloc_bad_len() {
        let mut m = GuestMemory::new();
        for len in [0, 1, P - 1, P + 1, 2 * P + 512] {
            assert_eq!(m.alloc_memseg(0, len, None), Err(Error::Inval), "len {len}");
        }
        assert_eq!(m.get_memseg(0).unwrap().len, 0);
    }

    #[test]
    fn alloc_existing_same_is_eexist_else_einval() {
        let mut m = two_segs();
        assert_eq!(m.alloc_memseg(0, 16 * P, None), Err(Error::Exist));
        assert_eq!(m.alloc_memseg(0, 8 * P, None), Err(Error::Inval));
        assert_eq!(m.alloc_memseg(0, 16 * P, Some(b"x")), Err(Error::Inval));
        // Devmem: vm_alloc_memseg compares length and kind only, not names.
        assert_eq!(m.alloc_memseg(1, 16 * P, Some(b"dev")), Err(Error::Exist));
        assert_eq!(m.alloc_memseg(1, 16 * P, Some(b"other")), Err(Error::Exist));
        assert_eq!(m.alloc_memseg(1, 16 * P, None), Err(Error::Inval));
        assert_eq!(m.alloc_memseg(1, 32 * P, Some(b"dev")), Err(Error::Inval));
        // Bad length is reported before "exists".
        assert_eq!(m.alloc_memseg(0, 0, None), Err(Error::Inval));
        assert_eq!(m.get_memseg(1).unwrap().name, b"dev");
    }

    #[test]
    fn alloc_name_length() {
        let mut m = GuestMemory::new();
        let long = [b'a'; VM_MAX_SUFFIXLEN + 1];
        assert_eq!(m.alloc_memseg(1, P, Some(&long)), Err(Error::Inval));
        assert_eq!(m.alloc_memseg(1, P, Some(b"a\0b")), Err(Error::Inval));
        assert_eq!(m.get_memseg(1).unwrap().len, 0);
        let max = [b'a'; VM_MAX_SUFFIXLEN];
        m.alloc_memseg(1, P, Some(&max)).unwrap();
        assert_eq!(m.get_memseg(1).unwrap().name, max);
    }

    #[test]
    fn alloc_devfs_name_rules() {
        let mut m = GuestMemory::new();
        for bad in [
            &b"a b"[..],
            b"a\tb",
            b"a\nb",
            b"a\rb",
            b"\x0b",
            b"\x0c",
            b"q\"",
            b"a/",
            b"a//",
            b"/",
            b"a/.",
            b"a/..",
            b"a/./b",
            b"a/../b",
        ] {
            assert_eq!(
                m.alloc_memseg(1, P, Some(bad)),
                Err(Error::Inval),
                "{bad:?}"
            );
            assert_eq!(m.get_memseg(1).unwrap().len, 0);
        }
        // The first component is glued to "<vm>.", so these are fine.
        for (id, good) in [(1, &b"."[..]), (2, b".."), (3, b"..x/y")] {
            m.alloc_memseg(id, P, Some(good)).unwrap();
        }
        // ...but "./x" lies below ".".
        assert_eq!(m.alloc_memseg(0, P, Some(b"./x")), Err(Error::Exist));
        GuestMemory::new().alloc_memseg(0, P, Some(b"./x")).unwrap();
    }

    #[test]
    fn alloc_devmem_name_collisions() {
        let mut m = GuestMemory::new();
        m.alloc_memseg(1, P, Some(b"fb")).unwrap();
        for clash in [&b"fb"[..], b"fb/x", b"fb//x"] {
            assert_eq!(
                m.alloc_memseg(2, P, Some(clash)),
                Err(Error::Exist),
                "{clash:?}"
            );
            assert_eq!(m.get_memseg(2).unwrap().len, 0, "segment freed again");
        }
        m.alloc_memseg(2, P, Some(b"fb2")).unwrap();
        m.alloc_memseg(3, P, Some(b"d//e")).unwrap();
        let mut m2 = GuestMemory::new();
        m2.alloc_memseg(1, P, Some(b"d/e/f")).unwrap();
        assert_eq!(m2.alloc_memseg(2, P, Some(b"d/e")), Err(Error::Exist));
        assert_eq!(m2.alloc_memseg(2, P, Some(b"d")), Err(Error::Exist));
        // The other way round, with slash runs collapsed.
        assert_eq!(m.alloc_memseg(0, P, Some(b"d/e/g")), Err(Error::Exist));
        assert_eq!(m.alloc_memseg(0, P, Some(b"d/e")), Err(Error::Exist));
        // Sysmem segments have no name and never clash.
        m.alloc_memseg(0, P, None).unwrap();
    }

    #[test]
    fn alloc_huge_is_enomem() {
        let mut m = GuestMemory::new();
        let huge = usize::MAX & !(P - 1);
        assert_eq!(m.alloc_memseg(0, huge, None), Err(Error::NoMem));
        assert_eq!(m.alloc_memseg(0, 1 << 62, None), Err(Error::NoMem));
        assert_eq!(m.get_memseg(0).unwrap().len, 0);
    }

    #[test]
    fn get_memseg_unallocated_and_bad_id() {
        let m = GuestMemory::new();
        for id in 0..VM_MAX_MEMSEGS as i32 {
            assert_eq!(m.get_memseg(id).unwrap(), MemSegInfo::default());
        }
        assert_eq!(m.get_memseg(-1), Err(Error::Inval));
        assert_eq!(m.get_memseg(VM_MAX_MEMSEGS as i32), Err(Error::Inval));
    }

    // ---------------------------------------------------------------
    // mmap_memseg
    // ---------------------------------------------------------------

    #[test]
    fn mmap_success_is_reported_by_getnext() {
        let mut m = two_segs();
        m.mmap_memseg(
            0x10_0000,
            0,
            4 * P64,
            8 * P,
            PROT_READ | PROT_WRITE,
            VM_MEMMAP_F_WIRED,
        )
        .unwrap();
        assert_eq!(
            m.mmap_getnext(0).unwrap(),
            map(
                0x10_0000,
                0,
                4 * P64,
                8 * P,
                PROT_READ | PROT_WRITE,
                VM_MEMMAP_F_WIRED
            )
        );
        assert!(m.mem_allocated(0x10_0000));
        assert!(m.mem_allocated(0x10_0000 + 8 * P64 - 1));
        assert!(!m.mem_allocated(0x10_0000 + 8 * P64));
        assert!(!m.mem_allocated(0x10_0000 - 1));
    }

    #[test]
    fn mmap_prot_rules() {
        let mut m = two_segs();
        for bad in [0, 8, PROT_ALL | 8, 0x100, u32::MAX] {
            assert_eq!(
                m.mmap_memseg(0, 0, 0, P, bad, 0),
                Err(Error::Inval),
                "prot {bad:#x}"
            );
        }
        // Every nonzero subset of PROT_ALL is accepted, read or not.
        for (i, prot) in (1..=PROT_ALL).enumerate() {
            let gpa = i as u64 * P64;
            m.mmap_memseg(gpa, 0, gpa, P, prot, 0).unwrap();
            assert_eq!(m.mmap_getnext(gpa).unwrap().prot, prot);
        }
    }

    #[test]
    fn mmap_flag_rules() {
        let mut m = two_segs();
        for bad in [
            VM_MEMMAP_F_IOMMU,
            VM_MEMMAP_F_WIRED | VM_MEMMAP_F_IOMMU,
            4,
            u32::MAX,
        ] {
            assert_eq!(
                m.mmap_memseg(0, 0, 0, P, PROT_ALL, bad),
                Err(Error::Inval),
                "flags {bad:#x}"
            );
        }
        m.mmap_memseg(0, 0, 0, P, PROT_ALL, 0).unwrap();
        m.mmap_memseg(P64, 0, 0, P, PROT_ALL, VM_MEMMAP_F_WIRED)
            .unwrap();
        assert_eq!(m.mmap_getnext(0).unwrap().flags, 0);
        assert_eq!(m.mmap_getnext(1).unwrap().flags, VM_MEMMAP_F_WIRED);
    }

    #[test]
    fn mmap_segment_must_exist() {
        let mut m = two_segs();
        for segid in [-1, 2, 3, 4, i32::MAX] {
            assert_eq!(
                m.mmap_memseg(0, segid, 0, P, PROT_ALL, 0),
                Err(Error::Inval),
                "segid {segid}"
            );
        }
        m.mmap_memseg(0, 1, 0, P, PROT_ALL, 0).unwrap();
    }

    #[test]
    fn mmap_range_in_segment() {
        let mut m = two_segs();
        let seglen = 16 * P64;
        for (segoff, len) in [
            (0, 0),
            (0, 17 * P),
            (P64, 16 * P),
            (seglen, P),
            (seglen, 0),
            (32 * P64, P),
            (u64::MAX - (P64 - 1), P), // segoff + len wraps
            (1 << 63, P),              // negative vm_ooffset_t
            (0, usize::MAX - (P - 1)), // len huge
        ] {
            assert_eq!(
                m.mmap_memseg(0, 0, segoff, len, PROT_ALL, 0),
                Err(Error::Inval),
                "{segoff:#x}+{len:#x}"
            );
        }
        m.mmap_memseg(0, 0, 0, 16 * P, PROT_ALL, 0).unwrap();
        m.mmap_memseg(1 << 30, 0, 15 * P64, P, PROT_ALL, 0).unwrap();
    }

    #[test]
    fn mmap_alignment() {
        let mut m = two_segs();
        for (gpa, segoff, len) in [
            (1u64, 0u64, P),
            (P64 / 2, 0, P),
            (0, 1, P),
            (0, 8, P),
            (0, 0, P + 1),
            (0, 0, P - 1),
            (0, 0, 1),
            (0x1000_0800, 0, P),
        ] {
            assert_eq!(
                m.mmap_memseg(gpa, 0, segoff, len, PROT_ALL, 0),
                Err(Error::Inval),
                "{gpa:#x} {segoff:#x} {len:#x}"
            );
        }
        assert_eq!(m.mmap_getnext(0), Err(Error::NoEnt));
    }

    #[test]
    fn mmap_slots_run_out() {
        let mut m = two_segs();
        for i in 0..VM_MAX_MEMMAPS as u64 {
            m.mmap_memseg(i * 0x10_0000, 0, 0, P, PROT_ALL, 0).unwrap();
        }
        assert_eq!(
            m.mmap_memseg(0x1000_0000, 0, 0, P, PROT_ALL, 0),
            Err(Error::NoSpc)
        );
        // ENOSPC is reported before the overlap (EFAULT) check...
        assert_eq!(m.mmap_memseg(0, 0, 0, P, PROT_ALL, 0), Err(Error::NoSpc));
        // ...but after the argument checks.
        assert_eq!(
            m.mmap_memseg(0x1000_0001, 0, 0, P, PROT_ALL, 0),
            Err(Error::Inval)
        );
        assert_eq!(
            m.mmap_memseg(0x1000_0000, 3, 0, P, PROT_ALL, 0),
            Err(Error::Inval)
        );
        // Freeing a slot makes room again.
        m.munmap_memseg(0x30_0000, P).unwrap();
        m.mmap_memseg(0x1000_0000, 0, 0, P, PROT_ALL, 0).unwrap();
        assert_eq!(m.memmaps().len(), VM_MAX_MEMMAPS);
    }

    #[test]
    fn mmap_overlap_every_geometry_is_efault() {
        // Existing map: [16 pages, 24 pages).
        let base = 16 * P64;
        let cases: [(u64, usize, &str); 9] = [
            (base, 8 * P, "identical"),
            (base - 2 * P64, 4 * P, "overlaps start"),
            (base + 6 * P64, 4 * P, "overlaps end"),
            (base - P64, 10 * P, "contains"),
            (base + 2 * P64, 2 * P, "inside"),
            (base, 2 * P, "same start, shorter"),
            (base + 6 * P64, 2 * P, "same end, shorter"),
            (base + 7 * P64, P, "last page"),
            (base - 15 * P64, 16 * P, "first page only"),
        ];
        for (gpa, len, what) in cases {
            let mut m = two_segs();
            m.mmap_memseg(base, 0, 0, 8 * P, PROT_ALL, 0).unwrap();
            assert_eq!(
                m.mmap_memseg(gpa, 1, 0, len, PROT_ALL, 0),
                Err(Error::Fault),
                "{what}"
            );
            assert_eq!(m.memmaps().len(), 1, "{what}");
        }
        // Adjacent on both sides is fine.
        let mut m = two_segs();
        m.mmap_memseg(base, 0, 0, 8 * P, PROT_ALL, 0).unwrap();
        m.mmap_memseg(base - 4 * P64, 1, 0, 4 * P, PROT_ALL, 0)
            .unwrap();
        m.mmap_memseg(base + 8 * P64, 1, 0, 4 * P, PROT_ALL, 0)
            .unwrap();
        assert_eq!(m.memmaps().len(), 3);
    }

    #[test]
    fn mmap_guest_address_space_limit() {
        let mut m = two_segs();
        let top = VM_MAXUSER_ADDRESS_LA48;
        assert_eq!(m.mmap_memseg(top, 0, 0, P, PROT_ALL, 0), Err(Error::Fault));
        assert_eq!(
            m.mmap_memseg(top - P64, 0, 0, 2 * P, PROT_ALL, 0),
            Err(Error::Fault)
        );
        // gpa + len wraps around 2^64.
        assert_eq!(
            m.mmap_memseg(u64::MAX - (P64 - 1), 0, 0, 2 * P, PROT_ALL, 0),
            Err(Error::Fault)
        );
        assert_eq!(
            m.mmap_memseg(u64::MAX - (P64 - 1), 0, 0, P, PROT_ALL, 0),
            Err(Error::Fault)
        );
        m.mmap_memseg(top - 2 * P64, 0, 0, 2 * P, PROT_ALL, 0)
            .unwrap();
        assert_eq!(m.sysmem_maxaddr(), top);
    }

    // ---------------------------------------------------------------
    // munmap_memseg
    // ---------------------------------------------------------------

    #[test]
    fn munmap_exact_match_only() {
        let mut m = two_segs();
        m.mmap_memseg(0x10_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
        for (gpa, len) in [
            (0x10_0000, 2 * P),
            (0x10_0000, 8 * P),
            (0x10_0000 + P64, 3 * P),
            (0x10_0000 + P64, P),
            (0x0f_f000, 4 * P),
            (0x20_0000, 4 * P),
            (0x10_0000, 0),
        ] {
            assert_eq!(
                m.munmap_memseg(gpa, len),
                Err(Error::Inval),
                "{gpa:#x}+{len:#x}"
            );
        }
        assert_eq!(m.memmaps().len(), 1);
        m.munmap_memseg(0x10_0000, 4 * P).unwrap();
        assert_eq!(m.mmap_getnext(0), Err(Error::NoEnt));
        assert!(!m.mem_allocated(0x10_0000));
        assert_eq!(m.munmap_memseg(0x10_0000, 4 * P), Err(Error::Inval));
        // The segment and its length survive the unmap.
        assert_eq!(m.get_memseg(0).unwrap().len, 16 * P);
    }

    #[test]
    fn munmap_zero_zero_matches_a_free_slot() {
        let mut m = two_segs();
        assert_eq!(m.munmap_memseg(0, 0), Ok(()));
        for i in 0..VM_MAX_MEMMAPS as u64 {
            m.mmap_memseg(i * P64, 0, 0, P, PROT_ALL, 0).unwrap();
        }
        assert_eq!(m.munmap_memseg(0, 0), Err(Error::Inval));
        assert_eq!(m.memmaps().len(), VM_MAX_MEMMAPS);
    }

    #[test]
    fn munmap_refuses_iommu_maps() {
        let mut m = two_segs();
        m.mmap_memseg(0, 0, 0, 4 * P, PROT_ALL, VM_MEMMAP_F_WIRED)
            .unwrap();
        m.mmap_memseg(1 << 20, 0, 0, 4 * P, PROT_ALL, 0).unwrap(); // not wired
        m.mmap_memseg(2 << 20, 1, 0, 4 * P, PROT_ALL, VM_MEMMAP_F_WIRED)
            .unwrap(); // devmem
        m.iommu_map();
        assert_eq!(
            m.mmap_getnext(0).unwrap().flags,
            VM_MEMMAP_F_WIRED | VM_MEMMAP_F_IOMMU
        );
        assert_eq!(m.mmap_getnext(1 << 20).unwrap().flags, 0);
        assert_eq!(m.mmap_getnext(2 << 20).unwrap().flags, VM_MEMMAP_F_WIRED);
        assert_eq!(m.munmap_memseg(0, 4 * P), Err(Error::Inval));
        m.munmap_memseg(1 << 20, 4 * P).unwrap();
        m.munmap_memseg(2 << 20, 4 * P).unwrap();
        m.iommu_unmap();
        assert_eq!(m.mmap_getnext(0).unwrap().flags, VM_MEMMAP_F_WIRED);
        m.munmap_memseg(0, 4 * P).unwrap();
    }

    // ---------------------------------------------------------------
    // mmap_getnext
    // ---------------------------------------------------------------

    #[test]
    fn getnext_walks_in_gpa_order() {
        let mut m = two_segs();
        let gpas = [
            0x50_0000u64,
            0x1000,
            0x8000_0000,
            0x30_0000,
            0x1_0000_0000,
            0,
        ];
        for (i, &gpa) in gpas.iter().enumerate() {
            m.mmap_memseg(gpa, (i % 2) as i32, i as u64 * P64, P, PROT_ALL, 0)
                .unwrap();
        }
        let mut seen = vec![];
        let mut gpa = 0;
        while let Ok(mm) = m.mmap_getnext(gpa) {
            seen.push(mm.gpa);
            gpa = mm.gpa + mm.len as u64;
        }
        let mut sorted = gpas.to_vec();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert_eq!(
            m.memmaps().iter().map(|x| x.gpa).collect::<Vec<_>>(),
            sorted
        );
        // Per-map fields come back with the right map.
        let mm = m.mmap_getnext(0x30_0000).unwrap();
        assert_eq!((mm.segid, mm.segoff), (1, 3 * P64));
    }

    #[test]
    fn getnext_comparison_is_start_ge_gpa() {
        let mut m = two_segs();
        m.mmap_memseg(0x10_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
        m.mmap_memseg(0x20_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
        assert_eq!(m.mmap_getnext(0x10_0000).unwrap().gpa, 0x10_0000);
        // A gpa inside the first map skips it: only the start is compared.
        assert_eq!(m.mmap_getnext(0x10_0001).unwrap().gpa, 0x20_0000);
        assert_eq!(m.mmap_getnext(0x20_0000).unwrap().gpa, 0x20_0000);
        assert_eq!(m.mmap_getnext(0x20_0001), Err(Error::NoEnt));
        assert_eq!(m.mmap_getnext(u64::MAX), Err(Error::NoEnt));
        assert_eq!(GuestMemory::new().mmap_getnext(0), Err(Error::NoEnt));
    }

    // ---------------------------------------------------------------
    // Guest access
    // ---------------------------------------------------------------

    #[test]
    fn read_write_round_trip_and_zero_fill() {
        let mut m = two_segs();
        m.mmap_memseg(0x10_0000, 0, 0, 16 * P, PROT_READ | PROT_WRITE, 0)
            .unwrap();
        let mut buf = [0xffu8; 64];
        m.read_gpa(0x10_0000 + 100, &mut buf).unwrap();
        assert_eq!(buf, [0u8; 64], "fresh memory reads as zero");
        let data: Vec<u8> = (0..=255u8).cycle().take(3 * P + 7).collect();
        m.write_gpa(0x10_0000 + 5, &data).unwrap();
        let mut back = vec![0u8; data.len()];
        m.read_gpa(0x10_0000 + 5, &mut back).unwrap();
        assert_eq!(back, data);
        // Last byte of the map is reachable.
        m.write_gpa(0x10_0000 + 16 * P64 - 1, &[0xab]).unwrap();
        let mut one = [0u8];
        m.read_gpa(0x10_0000 + 16 * P64 - 1, &mut one).unwrap();
        assert_eq!(one, [0xab]);
    }

    #[test]
    fn two_maps_of_one_segment_alias() {
        let mut m = two_segs();
        // Segment 0 pages 4..8 at 1 MiB and pages 6..10 at 2 MiB: page 6 is
        // gpa 1 MiB + 2 pages and gpa 2 MiB.
        m.mmap_memseg(1 << 20, 0, 4 * P64, 4 * P, PROT_ALL, 0)
            .unwrap();
        m.mmap_memseg(2 << 20, 0, 6 * P64, 4 * P, PROT_ALL, 0)
            .unwrap();
        m.write_gpa((1 << 20) + 2 * P64 + 10, b"alias").unwrap();
        let mut buf = [0u8; 5];
        m.read_gpa((2 << 20) + 10, &mut buf).unwrap();
        assert_eq!(&buf, b"alias");
        m.write_gpa((2 << 20) + P64, b"back").unwrap();
        let mut buf = [0u8; 4];
        m.read_gpa((1 << 20) + 3 * P64, &mut buf).unwrap();
        assert_eq!(&buf, b"back");
        assert_eq!(
            m.host_addr((1 << 20) + 2 * P64, 1, PROT_READ).unwrap(),
            m.host_addr(2 << 20, 1, PROT_READ).unwrap()
        );
        // Different segments do not alias.
        m.mmap_memseg(3 << 20, 1, 4 * P64, 4 * P, PROT_ALL, 0)
            .unwrap();
        let mut buf = [1u8; 5];
        m.read_gpa((3 << 20) + 2 * P64 + 10, &mut buf).unwrap();
        assert_eq!(buf, [0; 5]);
    }

    #[test]
    fn data_survives_munmap_and_remap() {
        let mut m = two_segs();
        m.mmap_memseg(0, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
        m.write_gpa(P64, b"keep").unwrap();
        m.munmap_memseg(0, 4 * P).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(m.read_gpa(P64, &mut buf), Err(Error::Fault));
        m.mmap_memseg(0x40_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
        m.read_gpa(0x40_0000 + P64, &mut buf).unwrap();
        assert_eq!(&buf, b"keep");
    }

    #[test]
    fn access_faults() {
        let mut m = two_segs();
        m.mmap_memseg(0x10_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
        // Adjacent map of the same segment, contiguous in the segment too.
        m.mmap_memseg(0x10_0000 + 4 * P64, 0, 4 * P64, 4 * P, PROT_ALL, 0)
            .unwrap();
        m.mmap_memseg(0x20_0000, 0, 0, P, PROT_READ, 0).unwrap();
        m.mmap_memseg(0x30_0000, 0, 0, P, PROT_WRITE, 0).unwrap();
        m.mmap_memseg(0x40_0000, 0, 0, P, PROT_EXEC, 0).unwrap();
        let mut b4 = [0u8; 4];
        // Unmapped.
        assert_eq!(m.read_gpa(0, &mut b4), Err(Error::Fault));
        assert_eq!(m.write_gpa(0x10_0000 - 4, &b4), Err(Error::Fault));
        // Starts before a map.
        assert_eq!(m.read_gpa(0x10_0000 - 2, &mut b4), Err(Error::Fault));
        // Runs past the end of a map into nothing.
        assert_eq!(m.read_gpa(0x20_0000 + P64 - 2, &mut b4), Err(Error::Fault));
        // Crosses from one map into the adjacent one.
        assert_eq!(m.write_gpa(0x10_0000 + 4 * P64 - 2, &b4), Err(Error::Fault));
        assert_eq!(
            m.host_addr(0x10_0000 + 4 * P64 - 2, 4, PROT_READ),
            Err(Error::Fault)
        );
        // Each map alone is fine right up to the boundary.
        m.write_gpa(0x10_0000 + 4 * P64 - 4, &b4).unwrap();
        m.write_gpa(0x10_0000 + 4 * P64, &b4).unwrap();
        // Protection.
        m.read_gpa(0x20_0000, &mut b4).unwrap();
        assert_eq!(m.write_gpa(0x20_0000, &b4), Err(Error::Fault));
        m.write_gpa(0x30_0000, &b4).unwrap();
        assert_eq!(m.read_gpa(0x30_0000, &mut b4), Err(Error::Fault));
        assert_eq!(m.read_gpa(0x40_0000, &mut b4), Err(Error::Fault));
        assert_eq!(m.write_gpa(0x40_0000, &b4), Err(Error::Fault));
        m.host_addr(0x40_0000, 4, PROT_EXEC).unwrap();
        assert_eq!(
            m.host_addr(0x20_0000, 4, PROT_READ | PROT_WRITE),
            Err(Error::Fault)
        );
        assert_eq!(m.host_addr(0x20_0000, 4, 8), Err(Error::Inval));
        // Wrap-around.
        assert_eq!(m.read_gpa(u64::MAX - 1, &mut b4), Err(Error::Fault));
        assert_eq!(m.host_addr(0x10_0000, usize::MAX, 0), Err(Error::Fault));
        // Zero length: fine inside a map, a fault outside.
        m.read_gpa(0x10_0000, &mut []).unwrap();
        assert_eq!(m.write_gpa(0, &[]), Err(Error::Fault));
        assert_eq!(m.host_addr(0x10_0000 + 8 * P64, 0, 0), Err(Error::Fault));
    }

    #[test]
    fn host_addr_points_at_segment_memory() {
        let mut m = two_segs();
        m.mmap_memseg(0x10_0000, 1, 2 * P64, 4 * P, PROT_ALL, 0)
            .unwrap();
        let seg = m.segment_host_addr(1).unwrap().as_ptr() as usize;
        let at = m.host_addr(0x10_0000 + 123, 8, PROT_READ).unwrap().as_ptr() as usize;
        assert_eq!(at, seg + 2 * P + 123);
        assert_ne!(seg, m.segment_host_addr(0).unwrap().as_ptr() as usize);
        assert_eq!(m.segment_host_addr(2), Err(Error::Inval));
        assert_eq!(m.segment_host_addr(-1), Err(Error::Inval));
        #[cfg(target_os = "linux")]
        {
            m.write_gpa(0x10_0000 + 123, b"via host").unwrap();
            assert_eq!(peek(at, 8).unwrap(), b"via host");
            assert!(is_mapped(seg) && is_mapped(seg + 16 * P - 1));
        }
        // The address outlives the map (the segment still exists).
        m.munmap_memseg(0x10_0000, 4 * P).unwrap();
        assert_eq!(m.host_addr(0x10_0000, 1, 0), Err(Error::Fault));
        #[cfg(target_os = "linux")]
        assert_eq!(peek(at, 8).unwrap(), b"via host");
    }

    #[test]
    fn concurrent_readers_and_writers() {
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, P, None).unwrap();
        m.mmap_memseg(0, 0, 0, P, PROT_ALL, 0).unwrap();
        let m = std::sync::Arc::new(m);
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    for _ in 0..1000 {
                        m.write_gpa(u64::from(t) * 64, &[t; 64]).unwrap();
                        m.read_gpa(0, &mut buf).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut buf = [0u8; 256];
        m.read_gpa(0, &mut buf).unwrap();
        for t in 0..4 {
            assert!(buf[t * 64..(t + 1) * 64].iter().all(|&b| b == t as u8));
        }
    }

    // ---------------------------------------------------------------
    // reinit, clear, drop
    // ---------------------------------------------------------------

    #[test]
    fn reinit_keeps_sysmem_maps_and_all_segments() {
        let mut m = two_segs();
        m.mmap_memseg(0, 0, 0, 8 * P, PROT_ALL, 0).unwrap();
        m.mmap_memseg(1 << 20, 0, 8 * P64, 8 * P, PROT_ALL, 0)
            .unwrap();
        m.mmap_memseg(2 << 20, 1, 0, 4 * P, PROT_ALL, 0).unwrap();
        m.write_gpa(16, b"sys").unwrap();
        m.write_gpa((2 << 20) + 16, b"dev").unwrap();
        m.reinit();
        let maps = m.memmaps();
        assert_eq!(
            maps.iter().map(|x| x.gpa).collect::<Vec<_>>(),
            vec![0, 1 << 20]
        );
        assert_eq!(m.get_memseg(0).unwrap().len, 16 * P);
        assert_eq!(m.get_memseg(1).unwrap().name, b"dev");
        let mut buf = [0u8; 3];
        m.read_gpa(16, &mut buf).unwrap();
        assert_eq!(&buf, b"sys");
        // The devmem contents are still there once remapped.
        m.mmap_memseg(3 << 20, 1, 0, 4 * P, PROT_ALL, 0).unwrap();
        m.read_gpa((3 << 20) + 16, &mut buf).unwrap();
        assert_eq!(&buf, b"dev");
        // Segments survive: re-allocating is EEXIST.
        assert_eq!(m.alloc_memseg(1, 16 * P, Some(b"dev")), Err(Error::Exist));
    }

    /// A 64 GiB segment (never committed): after release, a page a quarter
    /// of the way in cannot have been reused by anyone else's mapping, since
    /// Linux places new mappings at the top of a free gap.
    #[cfg(target_os = "linux")]
    const BIG: usize = 64 * GIB;

    /// The kernel's VmFlags for the mapping holding `addr` (smaps).
    #[cfg(target_os = "linux")]
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for l in smaps.lines() {
            if let Some((range, _)) = l.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                        inside = a <= addr && addr < b;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(f) = l.strip_prefix("VmFlags:") {
                    return f.to_owned();
                }
            }
        }
        panic!("{addr:#x} not in smaps");
    }

    /// The permissions /proc/self/maps gives the mapping holding `addr`.
    #[cfg(target_os = "linux")]
    fn perms(addr: usize) -> String {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for l in maps.lines() {
            let mut f = l.split_whitespace();
            let (a, b) = f.next().unwrap().split_once('-').unwrap();
            if (usize::from_str_radix(a, 16).unwrap()..usize::from_str_radix(b, 16).unwrap()).contains(&addr) {
                return f.next().unwrap().to_owned();
            }
        }
        panic!("{addr:#x} not mapped");
    }

    /// Each segment sits between inaccessible guard regions (libvmmapi's
    /// 4 MiB), so a device model running off guest memory faults.
    #[cfg(target_os = "linux")]
    #[test]
    fn segments_have_guard_regions_on_both_sides() {
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 16 * P, None).unwrap();
        m.alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
        for (seg, len) in [(0, 16 * P), (1, 4 * P)] {
            let start = m.segment_host_addr(seg).unwrap().as_ptr() as usize;
            assert_eq!(&perms(start)[..2], "rw", "segment {seg}");
            assert_eq!(&perms(start + len - 1)[..2], "rw");
            for guard in [start - 1, start - host::GUARD, start + len, start + len + host::GUARD - 1] {
                assert_eq!(&perms(guard)[..3], "---", "segment {seg}: {guard:#x} is a guard");
            }
        }
    }

    /// Without VM_MEM_F_INCORE guest memory stays out of core dumps
    /// (libvmmapi's MAP_NOCORE), system and device memory alike.
    #[cfg(target_os = "linux")]
    #[test]
    fn guest_memory_is_left_out_of_core_dumps_unless_incore() {
        let dontdump = |p: NonNull<u8>| vm_flags(p.as_ptr() as usize).split_whitespace().any(|f| f == "dd");
        let mut m = GuestMemory::new();
        m.setup_memory(16 * P, VM_MMAP_ALL).unwrap();
        let rom = m.create_devmem(VM_BOOTROM, b"rom", 4 * P).unwrap();
        assert!(dontdump(m.guestmem_base().unwrap()) && dontdump(rom));
        // A repeat call decides again, as libvmmapi's new mmap does.
        m.set_memflags(VM_MEM_F_INCORE);
        m.setup_memory(16 * P, VM_MMAP_ALL).unwrap();
        assert!(!dontdump(m.guestmem_base().unwrap()));
        let mut m = GuestMemory::new();
        m.set_memflags(VM_MEM_F_INCORE);
        m.setup_memory(16 * P, VM_MMAP_ALL).unwrap();
        let rom = m.create_devmem(VM_BOOTROM, b"rom", 4 * P).unwrap();
        assert!(!dontdump(m.guestmem_base().unwrap()) && !dontdump(rom));
    }

    /// A setup whose lowmem map fails (a device map in the way) takes
    /// back the segment and the highmem map it made, so that a retry with
    /// another size works (libvmmapi leaves them, and the retry fails).
    #[test]
    fn failed_setup_memory_takes_back_what_it_made() {
        let mut m = GuestMemory::new();
        m.set_lowmem_limit((16 * MIB) as u32);
        m.create_devmem(1, b"rom", MIB).unwrap();
        m.mmap_memseg(8 * MIB as u64, 1, 0, MIB, PROT_READ, 0).unwrap();
        assert_eq!(m.setup_memory(20 * MIB, VM_MMAP_ALL), Err(Error::Fault));
        assert_eq!(m.get_memseg(VM_SYSMEM).unwrap().len, 0);
        assert_eq!(m.memmaps().iter().map(|m| m.segid).collect::<Vec<_>>(), [1]);
        assert_eq!((m.lowmem_size(), m.highmem_size()), (0, 0));
        m.munmap_memseg(8 * MIB as u64, MIB).unwrap();
        m.setup_memory(8 * MIB, VM_MMAP_ALL).unwrap();
        assert_eq!(m.get_memseg(VM_SYSMEM).unwrap().len, 8 * MIB);
    }

    /// A segment or highmem map that was there before the failed call
    /// stays: the call takes back only what it made.
    #[test]
    fn failed_setup_memory_keeps_what_was_there() {
        let mut m = GuestMemory::new();
        m.set_lowmem_limit((16 * MIB) as u32);
        let objsize = VM_HIGHMEM_BASE as usize + 4 * MIB;
        m.alloc_memseg(VM_SYSMEM, objsize, None).unwrap();
        m.mmap_memseg(VM_HIGHMEM_BASE, VM_SYSMEM, VM_HIGHMEM_BASE, 4 * MIB, PROT_ALL, 0).unwrap();
        m.create_devmem(1, b"rom", MIB).unwrap();
        m.mmap_memseg(8 * MIB as u64, 1, 0, MIB, PROT_READ, 0).unwrap();
        assert_eq!(m.setup_memory(20 * MIB, VM_MMAP_ALL), Err(Error::Fault));
        assert_eq!(m.get_memseg(VM_SYSMEM).unwrap().len, objsize);
        assert_eq!(m.mmap_getnext(VM_HIGHMEM_BASE).unwrap().len, 4 * MIB);
        m.munmap_memseg(8 * MIB as u64, MIB).unwrap();
        m.setup_memory(20 * MIB, VM_MMAP_ALL).unwrap();
    }

    #[test]
    fn uncovered_pieces() {
        let r = |kept: &[(u64, u64)]| uncovered(10, 20, kept.iter().copied());
        assert_eq!(r(&[]), [(10, 20)]);
        assert_eq!(r(&[(0, 10), (20, 30)]), [(10, 20)]);
        assert_eq!(r(&[(12, 14)]), [(10, 12), (14, 20)]);
        assert_eq!(r(&[(15, 18), (11, 16), (5, 10)]), [(10, 11), (18, 20)]);
        assert_eq!(r(&[(0, 30)]), []);
        assert_eq!(r(&[(10, 20)]), []);
        assert_eq!(r(&[(10, 12), (12, 20)]), []);
        assert_eq!(r(&[(19, 25), (8, 11)]), [(11, 19)]);
        assert_eq!(r(&[(14, 14)]), [(10, 20)]);
    }

    /// A size whose high part cannot sit above 4 GiB changes nothing (the
    /// layout queries then still describe the memory there is).
    #[test]
    fn setup_memory_too_large_for_the_address_space_changes_nothing() {
        let mut m = GuestMemory::new();
        m.setup_memory(16 * P, VM_MMAP_ALL).unwrap();
        assert_eq!(m.setup_memory(usize::MAX, VM_MMAP_ALL), Err(Error::Inval));
        assert_eq!((m.lowmem_size(), m.highmem_size()), (16 * P, 0));
        assert!(m.map_gpa(VM_HIGHMEM_BASE, 1).is_none() && m.map_gpa(0, 1).is_some());
        assert_eq!(m.rev_map_gpa(usize::MAX), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn clear_releases_host_memory() {
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, BIG, None).unwrap();
        m.alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
        m.mmap_memseg(0, 0, 0, BIG, PROT_ALL, 0).unwrap();
        m.set_lowmem_limit(1 << 30);
        let start = m.segment_host_addr(0).unwrap().as_ptr() as usize;
        let probe = start + BIG / 4;
        m.write_gpa((BIG / 4) as u64, MARKER).unwrap();
        assert!(segment_mapped(start, BIG));
        assert_eq!(peek(probe, 8).unwrap(), MARKER);
        m.clear();
        assert_released(start, BIG, probe, "segment memory still mapped after clear()");
        assert_eq!(m.get_memseg(0).unwrap().len, 0);
        assert_eq!(m.get_memseg(1).unwrap().len, 0);
        assert_eq!(m.mmap_getnext(0), Err(Error::NoEnt));
        assert_eq!(m.lowmem_limit(), VM_LOWMEM_LIMIT as u32);
        // Everything can be allocated again, the devmem name included.
        m.alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
        m.alloc_memseg(0, 4 * P, None).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn drop_releases_host_memory() {
        let mut m = GuestMemory::new();
        let len = BIG + 2 * P; // a size of its own (see segment_mapped)
        m.alloc_memseg(2, len, Some(b"big")).unwrap();
        let start = m.segment_host_addr(2).unwrap().as_ptr() as usize;
        let probe = start + BIG / 4;
        poke(probe, MARKER);
        assert!(segment_mapped(start, len));
        drop(m);
        assert_released(start, len, probe, "segment memory still mapped after drop");
    }

    /// A destroyed VM gives its guest memory back at once but keeps the
    /// addresses mapped (a device thread may still be writing through
    /// one), also after the `Vm` is dropped: for the rest of the process,
    /// as FreeBSD's mapping.
    #[cfg(target_os = "linux")]
    #[test]
    fn destroyed_vm_guest_memory_stays_mapped_for_the_process() {
        let vm = crate::vm::Vm::with_idle_backend("t", 1).unwrap();
        {
            let all = vm.lock_all().unwrap();
            vm.mem_write(&all).unwrap().setup_memory(BIG + 4 * P, VM_MMAP_ALL).unwrap();
        }
        vm.mem().write_gpa((BIG / 4) as u64, b"k").unwrap();
        let probe = vm.mem().map_gpa((BIG / 4) as u64, 1).unwrap().as_ptr() as usize;
        let start = vm.mem().segment_host_addr(VM_SYSMEM).unwrap().as_ptr() as usize;
        let len = vm.mem().get_memseg(VM_SYSMEM).unwrap().len;
        vm.destroy();
        assert_eq!(peek(probe, 1).unwrap(), b"\0", "still mapped, its page given back");
        assert!(segment_mapped(start, len), "mapped after the destroy");
        poke(probe, MARKER);
        drop(vm);
        assert!(segment_mapped(start, len), "and after the drop");
        assert_eq!(peek(probe, MARKER.len()).unwrap(), MARKER, "a late write stays readable");
    }

    /// VM_REINIT keeps guest RAM where it was, contents included.
    #[test]
    fn reinit_keeps_the_libvmmapi_layout() {
        let vm = crate::vm::Vm::with_idle_backend("t", 1).unwrap();
        let all = vm.lock_all().unwrap();
        vm.mem_write(&all).unwrap().setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
        vm.mem_write(&all).unwrap().write_gpa(0x100, b"boot").unwrap();
        let p = vm.mem().map_gpa(0x100, 4).unwrap();
        vm.reinit(&all).unwrap();
        assert_eq!(vm.mem().map_gpa(0x100, 4), Some(p));
        let mut buf = [0u8; 4];
        vm.mem().read_gpa(0x100, &mut buf).unwrap();
        assert_eq!(&buf, b"boot");
        assert_eq!(vm.mem().lowmem_size(), 16 * MIB);
    }

    /// A failed repeat vm_setup_memory leaves the earlier memory in use;
    /// the recorded sizes change first, as in libvmmapi, but host
    /// addresses are still only handed out inside the segment.
    #[test]
    fn failed_repeat_setup_keeps_the_earlier_memory() {
        let mut m = GuestMemory::new();
        m.setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
        let p = m.map_gpa(0x1000, 4).unwrap();
        assert_eq!(m.setup_memory(32 * MIB, VM_MMAP_ALL), Err(Error::Inval));
        // The layout stays what is there (libvmmapi records the new sizes
        // first): the size getters and vm_rev_map_gpa agree with map_gpa.
        assert_eq!((m.lowmem_size(), m.highmem_size()), (16 * MIB, 0));
        assert_eq!(m.map_gpa(0x1000, 4), Some(p));
        assert!(m.map_gpa(16 * MIB as u64, 4).is_none(), "beyond the segment");
        let base = p.as_ptr() as usize - 0x1000;
        assert_eq!(m.rev_map_gpa(base + 20 * MIB), None);
        m.setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
        assert_eq!(m.map_gpa(0x1000, 4), Some(p));
    }

    // ---------------------------------------------------------------
    // libvmmapi
    // ---------------------------------------------------------------

    #[test]
    fn setup_memory_below_limit() {
        let mut m = GuestMemory::new();
        assert!(m.map_gpa(0, 1).is_none());
        assert!(m.guestmem_base().is_none());
        m.setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
        assert_eq!((m.lowmem_size(), m.highmem_size()), (16 * MIB, 0));
        assert_eq!(
            m.get_memseg(VM_SYSMEM).unwrap(),
            MemSegInfo {
                len: 16 * MIB,
                sysmem: true,
                name: vec![]
            }
        );
        assert_eq!(
            m.memmaps(),
            vec![map(0, VM_SYSMEM, 0, 16 * MIB, PROT_ALL, 0)]
        );
        assert_eq!(m.sysmem_maxaddr(), 16 * MIB as u64);
        let base = m.guestmem_base().unwrap();
        assert_eq!(base, m.segment_host_addr(VM_SYSMEM).unwrap());
        // vm_map_gpa bounds.
        assert_eq!(m.map_gpa(0, 16 * MIB), Some(base));
        let last = m.map_gpa(16 * MIB as u64 - 1, 1).unwrap();
        assert_eq!(
            last.as_ptr() as usize,
            base.as_ptr() as usize + 16 * MIB - 1
        );
        assert!(m.map_gpa(16 * MIB as u64, 0).is_none());
        assert!(m.map_gpa(16 * MIB as u64 - 1, 2).is_none());
        assert!(m.map_gpa(0, 16 * MIB + 1).is_none());
        assert!(m.map_gpa(VM_HIGHMEM_BASE, 1).is_none());
        assert!(m.map_gpa(u64::MAX, 2).is_none());
        assert_eq!(
            m.map_gpa(0x1234, 0).unwrap().as_ptr() as usize,
            base.as_ptr() as usize + 0x1234
        );
        // vm_map_gpa agrees with the guest view.
        m.write_gpa(0x2000, b"guest").unwrap();
        assert_eq!(m.map_gpa(0x2000, 5), m.host_addr(0x2000, 5, PROT_ALL).ok());
        #[cfg(target_os = "linux")]
        assert_eq!(
            peek(m.map_gpa(0x2000, 5).unwrap().as_ptr() as usize, 5).unwrap(),
            b"guest"
        );
        // vm_rev_map_gpa, with its one-past-the-end quirk.
        let b = base.as_ptr() as usize;
        assert_eq!(m.rev_map_gpa(b + 0x2000), Some(0x2000));
        assert_eq!(m.rev_map_gpa(b + 16 * MIB), Some(16 * MIB as u64));
        assert_eq!(m.rev_map_gpa(b + 16 * MIB + 1), None);
        assert_eq!(m.rev_map_gpa(b - 1), None);
    }

    #[test]
    fn setup_memory_exactly_at_limit() {
        let mut m = GuestMemory::new();
        m.setup_memory(3 * GIB, VM_MMAP_ALL).unwrap();
        assert_eq!((m.lowmem_size(), m.highmem_size()), (3 * GIB, 0));
        assert_eq!(m.get_memseg(0).unwrap().len, 3 * GIB);
        assert_eq!(m.memmaps(), vec![map(0, 0, 0, 3 * GIB, PROT_ALL, 0)]);
    }

    #[test]
    fn setup_memory_above_limit() {
        let mut m = GuestMemory::new();
        let memsize = 3 * GIB + 2 * MIB;
        m.setup_memory(memsize, VM_MMAP_ALL).unwrap();
        assert_eq!((m.lowmem_size(), m.highmem_size()), (3 * GIB, 2 * MIB));
        // The segment spans the hole: 4 GiB + highmem, offsets = gpa.
        assert_eq!(m.get_memseg(0).unwrap().len, 4 * GIB + 2 * MIB);
        assert_eq!(
            m.memmaps(),
            vec![
                map(0, 0, 0, 3 * GIB, PROT_ALL, 0),
                map(VM_HIGHMEM_BASE, 0, VM_HIGHMEM_BASE, 2 * MIB, PROT_ALL, 0),
            ]
        );
        assert_eq!(m.sysmem_maxaddr(), VM_HIGHMEM_BASE + 2 * MIB as u64);
        let base = m.guestmem_base().unwrap().as_ptr() as usize;
        let hi = m.map_gpa(VM_HIGHMEM_BASE, 2 * MIB).unwrap();
        assert_eq!(hi.as_ptr() as usize, base + 4 * GIB);
        assert!(m.map_gpa(VM_HIGHMEM_BASE, 2 * MIB + 1).is_none());
        assert!(m.map_gpa(VM_HIGHMEM_BASE + 2 * MIB as u64, 1).is_none());
        // The hole between 3 GiB and 4 GiB is neither mapped nor reachable.
        assert!(m.map_gpa(3 << 30, 1).is_none());
        assert!(m.map_gpa((3 << 30) - 1, 2).is_none());
        assert!(m.map_gpa(VM_HIGHMEM_BASE - 1, 1).is_none());
        assert!(!m.mem_allocated(3 << 30));
        assert_eq!(m.read_gpa(3 << 30, &mut [0u8; 1]), Err(Error::Fault));
        m.write_gpa(VM_HIGHMEM_BASE + 8, b"high").unwrap();
        assert_eq!(
            m.host_addr(VM_HIGHMEM_BASE + 8, 4, PROT_READ).ok(),
            m.map_gpa(VM_HIGHMEM_BASE + 8, 4)
        );
        assert_eq!(m.rev_map_gpa(base + 4 * GIB + 8), Some(VM_HIGHMEM_BASE + 8));
        assert_eq!(m.rev_map_gpa(base + 4 * GIB + 2 * MIB), None);
        assert_eq!(m.rev_map_gpa(base + (3 * GIB + 5)), None, "hole");
        assert_eq!(
            m.rev_map_gpa(base + 3 * GIB),
            Some(3 << 30),
            "one past lowmem (quirk)"
        );
    }

    #[test]
    fn setup_memory_large() {
        // 16 GiB of guest RAM: a 17 GiB segment, committed only when touched.
        let mut m = GuestMemory::new();
        m.setup_memory(16 * GIB, VM_MMAP_ALL).unwrap();
        assert_eq!((m.lowmem_size(), m.highmem_size()), (3 * GIB, 13 * GIB));
        assert_eq!(m.get_memseg(0).unwrap().len, 17 * GIB);
        let top = VM_HIGHMEM_BASE + 13 * GIB as u64;
        m.write_gpa(top - 4, b"last").unwrap();
        let mut buf = [0u8; 4];
        m.read_gpa(top - 4, &mut buf).unwrap();
        assert_eq!(&buf, b"last");
        assert!(m.map_gpa(top - 4, 4).is_some());
        assert!(m.map_gpa(top - 4, 5).is_none());
    }

    #[test]
    fn setup_memory_rejects() {
        let mut m = GuestMemory::new();
        for style in [VM_MMAP_NONE, VM_MMAP_SPARSE, 3, -1] {
            assert_eq!(m.setup_memory(16 * MIB, style), Err(Error::Inval));
        }
        assert_eq!(m.setup_memory(0, VM_MMAP_ALL), Err(Error::Inval));
        assert_eq!(m.setup_memory(16 * MIB + 1, VM_MMAP_ALL), Err(Error::Inval));
        assert_eq!(m.setup_memory(3 * GIB + 1, VM_MMAP_ALL), Err(Error::Inval));
        assert_eq!(m.setup_memory(usize::MAX, VM_MMAP_ALL), Err(Error::Inval));
        assert_eq!(m.get_memseg(0).unwrap().len, 0);
        assert!(m.memmaps().is_empty());
        assert!(m.map_gpa(0, 1).is_none());
        // Nothing is recorded by a failed call (libvmmapi records sizes).
        assert_eq!((m.lowmem_size(), m.highmem_size()), (0, 0));
    }

    #[test]
    fn setup_memory_is_idempotent_for_the_same_size() {
        let mut m = GuestMemory::new();
        m.setup_memory(64 * MIB, VM_MMAP_ALL).unwrap();
        m.write_gpa(0, b"boot").unwrap();
        // bhyveload then bhyve: the second call finds segment and map.
        m.setup_memory(64 * MIB, VM_MMAP_ALL).unwrap();
        assert_eq!(m.memmaps().len(), 1);
        let mut buf = [0u8; 4];
        m.read_gpa(0, &mut buf).unwrap();
        assert_eq!(&buf, b"boot");
        // A different size does not fit the existing segment.
        assert_eq!(m.setup_memory(32 * MIB, VM_MMAP_ALL), Err(Error::Inval));
    }

    #[test]
    fn setup_memory_existing_map_must_match() {
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 16 * MIB, None).unwrap();
        m.mmap_memseg(0, 0, 0, 16 * MIB, PROT_READ | PROT_WRITE, 0)
            .unwrap();
        assert_eq!(m.setup_memory(16 * MIB, VM_MMAP_ALL), Err(Error::Exist));
        // A matching map of another length is accepted (length not compared).
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 16 * MIB, None).unwrap();
        m.mmap_memseg(0, 0, 0, 8 * MIB, PROT_ALL, 0).unwrap();
        m.setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
        assert_eq!(m.memmaps(), vec![map(0, 0, 0, 8 * MIB, PROT_ALL, 0)]);
        // Segment 0 taken by devmem: not the sysmem segment it wants.
        let mut m = GuestMemory::new();
        m.alloc_memseg(0, 16 * MIB, Some(b"x")).unwrap();
        assert_eq!(m.setup_memory(16 * MIB, VM_MMAP_ALL), Err(Error::Inval));
    }

    #[test]
    fn setup_memory_lowmem_limit_and_wired() {
        #[cfg(target_os = "linux")]
        if !can_wire(16 << 20) {
            return;
        }
        let mut m = GuestMemory::new();
        assert_eq!(m.lowmem_limit(), 3 << 30);
        // Small sizes: wired maps lock their host memory.
        m.set_lowmem_limit(2 << 20);
        m.set_memflags(VM_MEM_F_WIRED | VM_MEM_F_INCORE);
        assert_eq!(m.memflags(), VM_MEM_F_WIRED | VM_MEM_F_INCORE);
        m.setup_memory(2 * MIB + 4 * MIB, VM_MMAP_ALL).unwrap();
        assert_eq!((m.lowmem_size(), m.highmem_size()), (2 * MIB, 4 * MIB));
        assert_eq!(m.get_memseg(0).unwrap().len, 4 * GIB + 4 * MIB);
        assert_eq!(
            m.memmaps(),
            vec![
                map(0, 0, 0, 2 * MIB, PROT_ALL, VM_MEMMAP_F_WIRED),
                map(
                    VM_HIGHMEM_BASE,
                    0,
                    VM_HIGHMEM_BASE,
                    4 * MIB,
                    PROT_ALL,
                    VM_MEMMAP_F_WIRED
                ),
            ]
        );
        assert!(m.map_gpa(2 * MIB as u64, 1).is_none());
        // With the wired flag off, the existing (wired) maps no longer match.
        m.set_memflags(0);
        assert_eq!(
            m.setup_memory(2 * MIB + 4 * MIB, VM_MMAP_ALL),
            Err(Error::Exist)
        );
    }

    #[test]
    fn vmmapi_alloc_memseg_is_idempotent() {
        let mut m = GuestMemory::new();
        m.vmmapi_alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
        m.vmmapi_alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
        assert_eq!(
            m.vmmapi_alloc_memseg(1, 8 * P, Some(b"rom")),
            Err(Error::Inval)
        );
        assert_eq!(
            m.vmmapi_alloc_memseg(1, 4 * P, Some(b"other")),
            Err(Error::Inval)
        );
        assert_eq!(m.vmmapi_alloc_memseg(1, 4 * P, None), Err(Error::Inval));
        m.vmmapi_alloc_memseg(0, 4 * P, None).unwrap();
        // An empty name is a name: it matches no segment.
        assert_eq!(m.vmmapi_alloc_memseg(0, 4 * P, Some(b"")), Err(Error::Inval));
        // The segment comes before the name's length: a bad id and an
        // existing segment are `Inval`, a free one `NameTooLong`.
        let long = [b'x'; VM_MAX_SUFFIXLEN + 1];
        assert_eq!(m.vmmapi_alloc_memseg(4, 4 * P, Some(&long)), Err(Error::Inval));
        assert_eq!(m.vmmapi_alloc_memseg(1, 4 * P, Some(&long)), Err(Error::Inval));
        assert_eq!(m.vmmapi_alloc_memseg(2, 4 * P, Some(&long)), Err(Error::NameTooLong));
        assert_eq!(
            m.vmmapi_alloc_memseg(0, 4 * P, Some(b"rom")),
            Err(Error::Inval)
        );
        assert_eq!(m.vmmapi_alloc_memseg(4, 4 * P, None), Err(Error::Inval));
        assert_eq!(m.vmmapi_alloc_memseg(2, 0, None), Err(Error::Inval));
    }

    #[test]
    fn vmmapi_mmap_memseg_checks_existing_map() {
        let mut m = two_segs();
        m.vmmapi_mmap_memseg(0, 0, 0, 4 * P, PROT_ALL).unwrap();
        m.vmmapi_mmap_memseg(0, 0, 0, 4 * P, PROT_ALL).unwrap();
        m.vmmapi_mmap_memseg(0, 0, 0, 2 * P, PROT_ALL).unwrap();
        assert_eq!(
            m.vmmapi_mmap_memseg(0, 1, 0, 4 * P, PROT_ALL),
            Err(Error::Exist)
        );
        assert_eq!(
            m.vmmapi_mmap_memseg(0, 0, P64, 4 * P, PROT_ALL),
            Err(Error::Exist)
        );
        assert_eq!(
            m.vmmapi_mmap_memseg(0, 0, 0, 4 * P, PROT_READ),
            Err(Error::Exist)
        );
        // A map at a higher address is not "the same map": kernel rules.
        assert_eq!(
            m.vmmapi_mmap_memseg(2 * P64, 0, 0, 4 * P, PROT_ALL),
            Err(Error::Fault)
        );
        m.vmmapi_mmap_memseg(4 * P64, 1, 0, 4 * P, PROT_ALL)
            .unwrap();
        assert_eq!(m.memmaps().len(), 2);
    }

    #[test]
    fn create_devmem() {
        let mut m = GuestMemory::new();
        assert_eq!(m.create_devmem(VM_BOOTROM, b"", 4 * P), Err(Error::Inval));
        let p = m.create_devmem(VM_BOOTROM, b"bootrom", 4 * P).unwrap();
        assert_eq!(p, m.segment_host_addr(VM_BOOTROM).unwrap());
        assert_eq!(m.create_devmem(VM_BOOTROM, b"bootrom", 4 * P), Ok(p));
        assert_eq!(
            m.create_devmem(VM_BOOTROM, b"bootrom", 8 * P),
            Err(Error::Inval)
        );
        assert_eq!(
            m.create_devmem(VM_FRAMEBUFFER, b"bootrom", 4 * P),
            Err(Error::Exist)
        );
        let info = m.get_memseg(VM_BOOTROM).unwrap();
        assert!(!info.sysmem);
        assert_eq!(info.name, b"bootrom");
    }

    #[test]
    fn sysmem_maxaddr_ignores_devmem() {
        let mut m = two_segs();
        assert_eq!(m.sysmem_maxaddr(), 0);
        m.mmap_memseg(0x10_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
        m.mmap_memseg(0xf000_0000, 1, 0, 4 * P, PROT_ALL, 0)
            .unwrap();
        assert_eq!(m.sysmem_maxaddr(), 0x10_0000 + 4 * P64);
    }
}
