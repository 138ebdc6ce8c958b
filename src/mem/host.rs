//! Owner of one anonymous host mapping. This submodule holds all of the
//! module's `unsafe` code; its fields are private to it so the invariant
//! (`ptr..ptr+len` is a live read-write mapping owned by the value, with
//! `GUARD` inaccessible bytes on either side, also owned) cannot be
//! broken from outside.

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
