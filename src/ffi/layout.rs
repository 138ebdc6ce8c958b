//! libvmmapi's guest-memory layout and its helpers: `vm_setup_memory`,
//! `vm_map_gpa` and its inverse, the low-memory limit and sizes, memory
//! flags, device memory (`vm_create_devmem`), and `vm_parse_memsize`. The
//! layout state is the VM's (libvmmapi keeps it per `vmctx`).

use std::ffi::{c_char, c_int, c_void, CStr};

use super::abi::{vm_mmap_style_arg, vm_paddr_t};
use super::errno::{fail, fail_with, or_errno, set_errno, errno_of, to_rc};
use super::handle::{self, vmctx};
use super::memory::with_mem_exclusive;
use super::panic::{ffi_boundary, ffi_boundary_errno_only};
use crate::error::Error;
use crate::mem::VM_HIGHMEM_BASE;

/// Sets up `len` bytes of guest RAM the way libvmmapi does for
/// VM_MMAP_ALL: below the low-memory limit (3 GiB) at 0, the rest at
/// 4 GiB. Calling it again with the same size is success. Returns 0, or
/// -1 with errno: EINVAL for another `style` (as FreeBSD's libvmmapi,
/// which supports only VM_MMAP_ALL) or a size the address space cannot
/// hold, EBADF, EFAULT, or VM_ALLOC_MEMSEG's and VM_MMAP_MEMSEG's errors
/// (EINVAL for a size that is not a whole number of pages, or another
/// size than an earlier call's; ENOMEM when the host refuses memory or,
/// with VM_MEM_F_WIRED, to lock it). A failed call leaves the VM as it
/// was (short of the host's map-count limit, where a wired high-memory
/// map may stay): the recorded sizes (vm_get_lowmem_size(), vm_rev_map_gpa()) as
/// they were, and the system-memory segment and high-memory map it made
/// taken back, so that a retry with another size or other memflags
/// works. libvmmapi records the sizes first and leaves the segment and
/// map.
#[no_mangle]
pub extern "C" fn vm_setup_memory(ctx: *mut vmctx, len: usize, style: vm_mmap_style_arg) -> c_int {
    ffi_boundary!({ to_rc(with_mem_exclusive(ctx, |m| m.setup_memory(len, style))) })
}

/// A host pointer to `len` bytes of guest RAM at `gaddr` set up by
/// vm_setup_memory(), or NULL: with errno EFAULT or EBADF for a bad
/// handle or a destroyed VM; without touching errno, as libvmmapi's,
/// when `[gaddr, gaddr + len)` is not all in that RAM (before
/// vm_setup_memory(), past its end, or across the gap below 4 GiB), so
/// set errno to 0 first to tell the cases apart. Valid across VM_REINIT
/// (system memory stays). vm_destroy() gives the memory back to the host
/// at once, but the address stays mapped (reading zeros until written; a
/// write takes host memory again, until the process exits) for the rest
/// of the process, as FreeBSD's mapping does, so a thread still using it
/// does not fault.
#[no_mangle]
pub extern "C" fn vm_map_gpa(ctx: *mut vmctx, gaddr: vm_paddr_t, len: usize) -> *mut c_void {
    ffi_boundary!(std::ptr::null_mut(), {
        let p = handle::live_ctx_vm(ctx).map(|vm| vm.mem().map_gpa(gaddr, len));
        or_errno(p, None).map_or(std::ptr::null_mut(), |p| p.as_ptr() as *mut c_void)
    })
}

/// Bytes of guest RAM below 4 GiB (after vm_setup_memory()); 0 with errno
/// EFAULT or EBADF for a bad handle or a destroyed VM.
#[no_mangle]
pub extern "C" fn vm_get_lowmem_size(ctx: *mut vmctx) -> usize {
    ffi_boundary_errno_only!(0, { or_errno(handle::live_ctx_vm(ctx).map(|vm| vm.mem().lowmem_size()), 0) })
}

/// Bytes of guest RAM above 4 GiB (after vm_setup_memory()); 0 with errno
/// EFAULT or EBADF for a bad handle or a destroyed VM.
#[no_mangle]
pub extern "C" fn vm_get_highmem_size(ctx: *mut vmctx) -> usize {
    ffi_boundary_errno_only!(0, { or_errno(handle::live_ctx_vm(ctx).map(|vm| vm.mem().highmem_size()), 0) })
}

/// Where guest RAM above the low-memory limit starts: VM_HIGHMEM_BASE,
/// 4 GiB (FreeBSD 15's libvmmapi added this call; bhyve's boot-ROM code
/// asks it). 0 with errno EFAULT or EBADF for a bad handle or a
/// destroyed VM.
#[no_mangle]
pub extern "C" fn vm_get_highmem_base(ctx: *mut vmctx) -> vm_paddr_t {
    ffi_boundary_errno_only!(0, { or_errno(handle::live_ctx_vm(ctx).map(|_| VM_HIGHMEM_BASE), 0) })
}

/// The low-memory limit vm_setup_memory() uses (default 3 GiB); 0 with
/// errno EFAULT or EBADF for a bad handle or a destroyed VM.
#[no_mangle]
pub extern "C" fn vm_get_lowmem_limit(ctx: *mut vmctx) -> u32 {
    ffi_boundary_errno_only!(0, { or_errno(handle::live_ctx_vm(ctx).map(|vm| vm.mem().lowmem_limit()), 0) })
}

/// Sets the low-memory limit for a later vm_setup_memory(); errno EFAULT
/// or EBADF for a bad handle or a destroyed VM.
#[no_mangle]
pub extern "C" fn vm_set_lowmem_limit(ctx: *mut vmctx, limit: u32) {
    ffi_boundary_errno_only!((), {
        let r = with_mem_exclusive(ctx, |m| {
            m.set_lowmem_limit(limit);
            Ok(())
        });
        or_errno(r, ());
    })
}

/// Parses bhyve's memory-size argument `opt` into `*memsize` (bytes): a
/// plain number below 1 MiB counts megabytes, any other plain number
/// bytes; a number with a unit k, m, g, t, p or e (binary, either case,
/// optionally followed by "b") or "b" is expand_number()'s. Returns 0, or
/// -1 with errno EINVAL (no number, a minus sign, an unknown unit,
/// trailing text), ERANGE (more than 64 bits), EFAULT (NULL pointer). As
/// the C library's strtoul, leading blanks, a plus sign and 0x (hex) or 0
/// (octal) prefixes are accepted.
#[no_mangle]
pub unsafe extern "C" fn vm_parse_memsize(opt: *const c_char, memsize: *mut usize) -> c_int {
    ffi_boundary!({
        if opt.is_null() || memsize.is_null() {
            return fail(libc::EFAULT);
        }
        // SAFETY: the caller passes a C string.
        let s = unsafe { CStr::from_ptr(opt) }.to_bytes();
        match crate::memsize::parse_memsize(s).and_then(|v| usize::try_from(v).map_err(|_| Error::Range)) {
            Ok(v) => {
                // SAFETY: non-NULL out-pointer.
                unsafe { memsize.write(v) };
                0
            }
            Err(e) => fail_with(e),
        }
    })
}

/// Sets the memory flags for later calls. VM_MEM_F_INCORE: memory that
/// vm_setup_memory() or vm_create_devmem() sets up goes in core dumps
/// (without it, it is left out). VM_MEM_F_WIRED: maps made by
/// vm_mmap_memseg() and vm_setup_memory() carry VM_MEMMAP_F_WIRED and
/// lock their host pages (mlock(2)); those calls fail with ENOMEM, making
/// no map, when the host will not lock them (RLIMIT_MEMLOCK without
/// CAP_IPC_LOCK), as FreeBSD's failed `vm_map_wire`. The
/// flags are the VM's (libvmmapi keeps them per handle). Like
/// vm_set_lowmem_limit() it waits until no vCPU is running. errno EFAULT
/// or EBADF for a bad handle or a destroyed VM.
#[no_mangle]
pub extern "C" fn vm_set_memflags(ctx: *mut vmctx, flags: c_int) {
    ffi_boundary_errno_only!((), {
        let r = with_mem_exclusive(ctx, |m| {
            m.set_memflags(flags);
            Ok(())
        });
        or_errno(r, ());
    })
}

/// The memory flags (0 by default); -1 with errno EFAULT or EBADF for a
/// bad handle or a destroyed VM.
#[no_mangle]
pub extern "C" fn vm_get_memflags(ctx: *mut vmctx) -> c_int {
    ffi_boundary!({ or_errno(handle::live_ctx_vm(ctx).map(|vm| vm.mem().memflags()), -1) })
}

/// Creates device-memory segment `segid` named `name` of `len` bytes (or
/// finds one of that name and size) and returns its host address, or
/// MAP_FAILED with errno: EINVAL (empty name, bad id or length, another
/// segment there), EFAULT (NULL name; FreeBSD: EINVAL), ENAMETOOLONG (name of more than
/// VM_MAX_SUFFIXLEN bytes), EEXIST (name taken), ENOMEM, EFAULT or EBADF
/// (bad handle, destroyed VM). FreeBSD maps the segment's device file
/// (/dev/vmm.io/VM.NAME); here the address is the segment's own memory,
/// shared with the guest once the segment is mapped. It stays valid as
/// long as the segment (VM_REINIT keeps segments, removing device-memory
/// maps); after vm_destroy() it stays mapped, reading zeros until
/// written, for the rest of the process, as vm_map_gpa()'s.
#[no_mangle]
pub unsafe extern "C" fn vm_create_devmem(ctx: *mut vmctx, segid: c_int, name: *const c_char, len: usize) -> *mut c_void {
    let failed = libc::MAP_FAILED;
    ffi_boundary!(failed, {
        if name.is_null() {
            set_errno(libc::EFAULT);
            return failed;
        }
        // SAFETY: the caller passes a C string.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        match with_mem_exclusive(ctx, |m| m.create_devmem(segid, name, len)) {
            Ok(p) => p.as_ptr().cast(),
            Err(e) => {
                set_errno(errno_of(e));
                failed
            }
        }
    })
}

/// The guest-physical address of host address `addr` in the memory
/// vm_setup_memory() set up, or (vm_paddr_t)-1 when it is outside it
/// (also with errno EFAULT or EBADF for a bad handle or a destroyed VM).
/// As libvmmapi, the address just past the end of low memory maps to the
/// low-memory size.
#[no_mangle]
pub extern "C" fn vm_rev_map_gpa(ctx: *mut vmctx, addr: *mut c_void) -> vm_paddr_t {
    ffi_boundary_errno_only!(u64::MAX, {
        let r = handle::live_ctx_vm(ctx).map(|vm| vm.mem().rev_map_gpa(addr as usize));
        or_errno(r, None).unwrap_or(u64::MAX)
    })
}

/// The host address of guest-physical 0 and the low and high memory sizes
/// vm_setup_memory() set up (NULL and 0 before it). Returns 0, or -1 with
/// errno EFAULT (a NULL pointer, bad handle) or EBADF.
#[no_mangle]
pub unsafe extern "C" fn vm_get_guestmem_from_ctx(
    ctx: *mut vmctx,
    guest_baseaddr: *mut *mut c_char,
    lowmem_size: *mut usize,
    highmem_size: *mut usize,
) -> c_int {
    ffi_boundary!({
        if guest_baseaddr.is_null() || lowmem_size.is_null() || highmem_size.is_null() {
            return fail(libc::EFAULT);
        }
        let vm = match handle::live_ctx_vm(ctx) {
            Ok(vm) => vm,
            Err(e) => return fail_with(e),
        };
        let m = vm.mem();
        let base = m.guestmem_base().map_or(std::ptr::null_mut(), |p| p.as_ptr().cast());
        // SAFETY: non-NULL out-pointers checked above.
        unsafe {
            guest_baseaddr.write(base);
            lowmem_size.write(m.lowmem_size());
            highmem_size.write(m.highmem_size());
        }
        0
    })
}
