//! Guest memory commands (VM_ALLOC_MEMSEG, VM_GET_MEMSEG, VM_MMAP_MEMSEG,
//! VM_MUNMAP_MEMSEG, VM_MMAP_GETNEXT) and the libvmmapi memory functions.

use std::ffi::{c_char, c_int, c_void};

use super::abi::*;
use super::call::{ctx_ioctl};
use super::errno::{fail, to_rc};
use super::handle::{self, vmctx};
use super::ioctl::{copy_in, copy_out};
use super::panic::ffi_boundary;
use crate::error::{Error, Result};
use crate::vm::{LockAll, Vm};

/// The name in a `vm_memseg`: `None` for system memory (empty name);
/// ENAMETOOLONG when it has no NUL within the field.
fn memseg_name(name: &[c_char]) -> Result<Option<Vec<u8>>> {
    // c_char is i8 on x86-64 and u8 on aarch64 Linux: take the byte.
    let bytes: Vec<u8> = name.iter().map(|c| c.to_ne_bytes()[0]).collect();
    let len = bytes.iter().position(|b| *b == 0).ok_or(Error::NameTooLong)?;
    Ok((len > 0).then(|| bytes[..len].to_vec()))
}

/// Commands of the "lock all vCPUs + memory exclusive" class.
///
/// # Safety
/// `arg` points to `cmd`'s struct.
pub(crate) unsafe fn locked_cmd(vm: &Vm, all: &LockAll<'_>, cmd: u64, arg: *mut c_void) -> Result<()> {
    // SAFETY (copy_in): `arg` points to `cmd`'s struct.
    unsafe {
        match cmd {
            VM_ALLOC_MEMSEG => {
                let a: vm_memseg = copy_in(arg);
                let name = memseg_name(&a.name)?;
                vm.mem_write(all)?.alloc_memseg(a.segid, a.len, name.as_deref())
            }
            VM_MMAP_MEMSEG => {
                let a: vm_memmap = copy_in(arg);
                let segoff = segment_offset(a.segoff)?;
                vm.mem_write(all)?.mmap_memseg(a.gpa, a.segid, segoff, a.len, a.prot as u32, a.flags as u32)
            }
            VM_MUNMAP_MEMSEG => {
                let a: vm_munmap = copy_in(arg);
                vm.mem_write(all)?.munmap_memseg(a.gpa, a.len)
            }
            _ => Err(Error::Inval),
        }
    }
}

/// Commands of the "memory shared" class.
///
/// # Safety
/// `arg` points to `cmd`'s struct.
pub(crate) unsafe fn shared_cmd(vm: &Vm, cmd: u64, arg: *mut c_void) -> Result<()> {
    // SAFETY (copy_in/copy_out): `arg` points to `cmd`'s struct.
    unsafe {
        match cmd {
            VM_GET_MEMSEG => {
                let mut a: vm_memseg = copy_in(arg);
                let info = vm.mem().get_memseg(a.segid)?;
                a.len = info.len;
                // As FreeBSD `get_memseg`: the name is left alone for an
                // unallocated segment.
                if info.len != 0 {
                    a.name = [0; VM_MAX_SUFFIXLEN + 1];
                    for (d, s) in a.name.iter_mut().zip(info.name.iter().take(VM_MAX_SUFFIXLEN)) {
                        *d = *s as c_char;
                    }
                }
                copy_out(arg, a);
                Ok(())
            }
            VM_MMAP_GETNEXT => {
                let mut a: vm_memmap = copy_in(arg);
                let m = vm.mem().mmap_getnext(a.gpa)?;
                a.gpa = m.gpa;
                a.segid = m.segid;
                // Offsets are below a segment's length, itself an isize.
                a.segoff = m.segoff as vm_ooffset_t;
                a.len = m.len;
                a.prot = m.prot as c_int;
                a.flags = m.flags as c_int;
                copy_out(arg, a);
                Ok(())
            }
            _ => Err(Error::Inval),
        }
    }
}

/// Runs `f` on guest memory with every vCPU frozen (the lock class of the
/// memory-changing ioctls).
pub(super) fn with_mem_exclusive<R>(ctx: *mut vmctx, f: impl FnOnce(&mut crate::mem::GuestMemory) -> Result<R>) -> Result<R> {
    let vm = handle::ctx_vm(ctx)?;
    let wait = super::reentry::wait_for(&vm, super::reentry::Waits::All)?;
    let all = vm.lock_all()?;
    drop(wait);
    let mut mem = vm.mem_write(&all)?;
    f(&mut mem)
}

fn empty_memseg(segid: c_int) -> vm_memseg {
    vm_memseg { segid, len: 0, name: [0; VM_MAX_SUFFIXLEN + 1] }
}

/// Allocates memory segment `segid` of `len` bytes: system memory when
/// `name` is NULL or "" (as FreeBSD's VM_ALLOC_MEMSEG, which takes an
/// empty name for none), else a device-memory segment with that name. As in
/// libvmmapi, the segment is read first: a bad id is EINVAL, and an
/// existing segment is success if it has the same size and name (both
/// unnamed, or equal names; "" is a name that matches none) and EINVAL
/// otherwise; only then is the name checked. Returns 0, or -1 with errno:
/// EINVAL (bad id, length or name, or a different segment there),
/// ENAMETOOLONG (name of more than VM_MAX_SUFFIXLEN bytes), EEXIST (name
/// taken by another segment), ENOMEM (the host cannot reserve the
/// memory).
#[no_mangle]
pub unsafe extern "C" fn vm_alloc_memseg(ctx: *mut vmctx, segid: c_int, len: usize, name: *const c_char) -> c_int {
    ffi_boundary!({
        // SAFETY: the caller passes a C string or NULL.
        let name = (!name.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes());
        to_rc(with_mem_exclusive(ctx, |m| m.vmmapi_alloc_memseg(segid, len, name)))
    })
}

/// Reads segment `segid`'s length (0 if unallocated; EINVAL for a segment
/// id outside 0-3) and, when `name` is
/// not NULL, its name: ENAMETOOLONG if `namesiz` is too small, with the
/// name truncated into the buffer (as libvmmapi's `strlcpy`).
#[no_mangle]
pub unsafe extern "C" fn vm_get_memseg(
    ctx: *mut vmctx,
    segid: c_int,
    lenp: *mut usize,
    name: *mut c_char,
    namesiz: usize,
) -> c_int {
    ffi_boundary!({
        if lenp.is_null() {
            return fail(libc::EFAULT);
        }
        let mut seg = empty_memseg(segid);
        let rc = ctx_ioctl(ctx, VM_GET_MEMSEG, &mut seg);
        if rc != 0 {
            return rc;
        }
        // SAFETY: non-NULL out-pointer.
        unsafe { lenp.write(seg.len) };
        if !name.is_null() {
            let n = seg.name.iter().position(|c| *c == 0).unwrap_or(seg.name.len());
            if namesiz > 0 {
                let copied = n.min(namesiz - 1);
                // SAFETY: `name` holds `namesiz` > copied bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(seg.name.as_ptr(), name, copied);
                    name.add(copied).write(0);
                }
            }
            if n >= namesiz {
                return fail(libc::ENAMETOOLONG);
            }
        }
        0
    })
}

/// Maps `len` bytes of segment `segid` from offset `segoff` at guest
/// physical address `gpa`, wired if vm_set_memflags() asked for
/// VM_MEM_F_WIRED (its host pages locked; ENOMEM and no map if the host
/// refuses). As in libvmmapi, an identical existing map (segment,
/// offset, protection and flags) is success; another map at `gpa` is
/// EEXIST (a negative offset too: libvmmapi compares before the kernel
/// checks it). Also, as FreeBSD: EINVAL for a bad protection, segment,
/// length or alignment or a negative offset, EFAULT for a range that
/// overlaps a map starting elsewhere, ENOSPC when the VM's map table is
/// full.
#[no_mangle]
pub extern "C" fn vm_mmap_memseg(
    ctx: *mut vmctx,
    gpa: vm_paddr_t,
    segid: c_int,
    segoff: vm_ooffset_t,
    len: usize,
    prot: c_int,
) -> c_int {
    ffi_boundary!({
        // A negative offset, as a u64 of 2^63 or more, matches no map's
        // and lies past every segment: EINVAL from the kernel's checks,
        // after libvmmapi's comparison with a map at `gpa`.
        to_rc(with_mem_exclusive(ctx, |m| m.vmmapi_mmap_memseg(gpa, segid, segoff as u64, len, prot as u32)))
    })
}

/// A segment offset from C: negative is EINVAL, as FreeBSD's
/// `vm_mmap_memseg` checks.
fn segment_offset(segoff: vm_ooffset_t) -> Result<u64> {
    u64::try_from(segoff).map_err(|_| Error::Inval)
}

/// Removes the map of exactly (`gpa`, `len`): EINVAL unless one matches
/// (as FreeBSD, (0, 0) matches a free map slot and succeeds). ENOMEM, and
/// the map stays, when unlocking a wired map's pages needs the host to
/// split a locked area (another wired map of the segment overlaps or
/// adjoins it) and the host refuses (its map-count limit,
/// `vm.max_map_count`).
#[no_mangle]
pub extern "C" fn vm_munmap_memseg(ctx: *mut vmctx, gpa: vm_paddr_t, len: usize) -> c_int {
    ffi_boundary!({
        let mut a = vm_munmap { gpa, len };
        ctx_ioctl(ctx, VM_MUNMAP_MEMSEG, &mut a)
    })
}

/// The first map at or above `*gpa`: fills every out-pointer; ENOENT when
/// there is none.
#[no_mangle]
pub unsafe extern "C" fn vm_mmap_getnext(
    ctx: *mut vmctx,
    gpa: *mut vm_paddr_t,
    segid: *mut c_int,
    segoff: *mut vm_ooffset_t,
    len: *mut usize,
    prot: *mut c_int,
    flags: *mut c_int,
) -> c_int {
    ffi_boundary!({
        if gpa.is_null() || segid.is_null() || segoff.is_null() || len.is_null() || prot.is_null() || flags.is_null() {
            return fail(libc::EFAULT);
        }
        // SAFETY: non-NULL in/out pointer.
        let mut a = vm_memmap { gpa: unsafe { gpa.read() }, segid: 0, segoff: 0, len: 0, prot: 0, flags: 0 };
        let rc = ctx_ioctl(ctx, VM_MMAP_GETNEXT, &mut a);
        if rc == 0 {
            // SAFETY: non-NULL out-pointers checked above.
            unsafe {
                gpa.write(a.gpa);
                segid.write(a.segid);
                segoff.write(a.segoff);
                len.write(a.len);
                prot.write(a.prot);
                flags.write(a.flags);
            }
        }
        rc
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// Creates VM `name` and opens it (vm_destroy() closes it).
    fn new_vm(name: &std::ffi::CStr) -> *mut vmctx {
        // SAFETY: a C string.
        let ctx = unsafe {
            assert_eq!(crate::ffi::lifecycle::vm_create(name.as_ptr()), 0);
            crate::ffi::lifecycle::vm_open(name.as_ptr())
        };
        assert!(!ctx.is_null());
        ctx
    }

    /// libvmmapi `vm_alloc_memseg` (static in FreeBSD 14, behind
    /// `vm_setup_memory` and `vm_create_devmem`): it reads the segment
    /// (VM_GET_MEMSEG: EINVAL for a bad id) and compares an existing one
    /// (`cmpseg`: EINVAL unless same length and both unnamed or equal
    /// names; a non-NULL "" is a name) before it copies the name in
    /// (ENAMETOOLONG only then).
    #[test]
    fn alloc_memseg_checks_the_segment_before_the_name_length() {
        const P: usize = 4096;
        // SAFETY: C strings; the handle is closed at the end.
        unsafe {
            let ctx = new_vm(c"audit6-alloc-order");
            let long = c"sixteen-bytes-xx";
            // Bad id: VM_GET_MEMSEG's EINVAL.
            assert_eq!(vm_alloc_memseg(ctx, 7, P, long.as_ptr()), -1);
            assert_eq!(errno(), libc::EINVAL, "bad segid");
            // Existing segments: cmpseg fails, EINVAL.
            assert_eq!(vm_alloc_memseg(ctx, 0, P, std::ptr::null()), 0);
            assert_eq!(vm_alloc_memseg(ctx, 0, P, long.as_ptr()), -1);
            assert_eq!(errno(), libc::EINVAL, "existing sysmem, long name");
            assert_eq!(vm_alloc_memseg(ctx, 0, P, c"".as_ptr()), -1);
            assert_eq!(errno(), libc::EINVAL, "existing sysmem, empty (non-NULL) name");
            assert_eq!(vm_alloc_memseg(ctx, 1, P, c"dev".as_ptr()), 0);
            assert_eq!(vm_alloc_memseg(ctx, 1, P, long.as_ptr()), -1);
            assert_eq!(errno(), libc::EINVAL, "existing devmem, long name");
            // A free id: the name is copied in, ENAMETOOLONG.
            assert_eq!(vm_alloc_memseg(ctx, 2, P, long.as_ptr()), -1);
            assert_eq!(errno(), libc::ENAMETOOLONG);
            // vm_create_devmem goes through it: the same order.
            let p = crate::ffi::layout::vm_create_devmem(ctx, 1, long.as_ptr(), P);
            assert_eq!((p, errno()), (libc::MAP_FAILED, libc::EINVAL), "vm_create_devmem, existing");
            let p = crate::ffi::layout::vm_create_devmem(ctx, 9, long.as_ptr(), P);
            assert_eq!((p, errno()), (libc::MAP_FAILED, libc::EINVAL), "vm_create_devmem, bad id");
            let p = crate::ffi::layout::vm_create_devmem(ctx, 3, long.as_ptr(), P);
            assert_eq!((p, errno()), (libc::MAP_FAILED, libc::ENAMETOOLONG), "vm_create_devmem, free id");
            crate::ffi::lifecycle::vm_destroy(ctx);
        }
    }

    /// libvmmapi's `vm_mmap_getnext` writes its out-pointers only when
    /// it finds a map: ENOENT leaves the caller's values as they were.
    #[test]
    fn mmap_getnext_leaves_the_out_pointers_alone_when_no_map_follows() {
        // SAFETY: a C string and valid out-pointers; the handle is closed at the end.
        unsafe {
            let ctx = new_vm(c"mut5b-getnext-enoent");
            let (mut gpa, mut segid, mut segoff, mut len, mut prot, mut flags) = (0x1000, 7, 9, 11, 13, 15);
            assert_eq!(vm_mmap_getnext(ctx, &mut gpa, &mut segid, &mut segoff, &mut len, &mut prot, &mut flags), -1);
            assert_eq!(errno(), libc::ENOENT);
            assert_eq!((gpa, segid, segoff, len, prot, flags), (0x1000, 7, 9, 11, 13, 15));
            crate::ffi::lifecycle::vm_destroy(ctx);
        }
    }

    /// libvmmapi's `vm_get_memseg` copies the name with `strlcpy`: a
    /// one-byte buffer gets just the NUL (and ENAMETOOLONG), a zero-byte
    /// one nothing. VM_MUNMAP_MEMSEG removes only a map of exactly
    /// (`gpa`, `len`): a length one byte longer matches none (EINVAL) and
    /// the map stays.
    #[test]
    fn get_memseg_copies_names_as_strlcpy_and_munmap_needs_the_exact_length() {
        const P: usize = 4096;
        // SAFETY: C strings and valid out-pointers; the handle is closed at the end.
        unsafe {
            let ctx = new_vm(c"memseg-name-and-unmap-edges");
            assert_eq!(vm_alloc_memseg(ctx, 1, P, c"dev".as_ptr()), 0);
            let (mut buf, mut len) = ([b'X' as c_char; 4], 0);
            assert_eq!(vm_get_memseg(ctx, 1, &mut len, buf.as_mut_ptr(), 1), -1);
            assert_eq!((errno(), len, buf[0], buf[1]), (libc::ENAMETOOLONG, P, 0, b'X' as c_char));
            let mut buf = [b'X' as c_char; 4];
            assert_eq!(vm_get_memseg(ctx, 1, &mut len, buf.as_mut_ptr(), 0), -1);
            assert_eq!((errno(), buf[0]), (libc::ENAMETOOLONG, b'X' as c_char), "no room: untouched");

            assert_eq!(vm_alloc_memseg(ctx, 0, P, std::ptr::null()), 0);
            assert_eq!(vm_mmap_memseg(ctx, 0x10_0000, 0, 0, P, libc::PROT_READ | libc::PROT_WRITE), 0);
            assert_eq!(vm_munmap_memseg(ctx, 0x10_0000, P + 1), -1);
            assert_eq!(errno(), libc::EINVAL);
            let (mut gpa, mut segid, mut segoff, mut prot, mut flags) = (0, 0, 0, 0, 0);
            assert_eq!(vm_mmap_getnext(ctx, &mut gpa, &mut segid, &mut segoff, &mut len, &mut prot, &mut flags), 0);
            assert_eq!((gpa, len), (0x10_0000, P), "the map stays");
            assert_eq!(vm_munmap_memseg(ctx, 0x10_0000, P), 0);
            crate::ffi::lifecycle::vm_destroy(ctx);
        }
    }
}
