//! libvmmapi's copies to and from guest-linear memory (`vm_copy_setup`,
//! `vm_copyin`, `vm_copyout`, `vm_copy_teardown`), which bhyve's
//! instruction emulation uses for string I/O and task switches: the range
//! is translated page by page through the guest's page tables into host
//! iovecs over guest RAM.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU8, Ordering};

use libc::iovec;

use super::abi::vm_guest_paging;
use super::commands::guest_paging;
use super::errno::{fail, fail_as_value, fail_with, set_errno};
use super::handle::{self, vcpu};
use super::panic::{ffi_boundary, ffi_boundary_errno_only};
use crate::guest_copy::CopyEnd;

/// Translates guest-linear `[gla, gla + len)` for an access of `prot` into
/// at most `iovcnt` iovecs over guest RAM (one per page; the rest are
/// zeroed). Returns 0 with `*fault` 0 (also for `len` 0); 0 with `*fault`
/// 1 when the guest faults (the fault is queued for the vCPU, as by
/// vm_gla2gpa()); or, as libvmmapi, -1 with errno when the page walk
/// fails, and EFAULT (also in errno) when a page is not guest RAM set up
/// by vm_setup_memory(), or the iovecs run out (libvmmapi asserts): in
/// these three the iovecs of the pages before are filled, the rest
/// zeroed, and `*fault` is 0 (left as it was if the first page's walk
/// failed). -1 with
/// errno EFAULT for a NULL pointer, EINVAL for a negative `iovcnt`, EBADF
/// for a bad handle. The vCPU is held (as a VM_GLA2GPA caller holds it)
/// for the whole range.
#[no_mangle]
pub unsafe extern "C" fn vm_copy_setup(
    vcpu: *mut vcpu,
    paging: *mut vm_guest_paging,
    gla: u64,
    len: usize,
    prot: c_int,
    iov: *mut iovec,
    iovcnt: c_int,
    fault: *mut c_int,
) -> c_int {
    ffi_boundary!({
        let Ok(n_iov) = usize::try_from(iovcnt) else {
            return fail(libc::EINVAL);
        };
        if paging.is_null() || fault.is_null() || (iov.is_null() && n_iov > 0) {
            return fail(libc::EFAULT);
        }
        // SAFETY: non-NULL in-pointer.
        let paging = guest_paging(unsafe { &paging.read() });
        let r = handle::with_locked_vcpu(vcpu, |vm, l| {
            vm.copy_setup(l, &paging, gla, len as u64, prot as u32, n_iov)
        });
        let pages = match r {
            Ok(p) => p,
            Err(e) => return fail_with(e),
        };
        // As libvmmapi, the iovecs are filled (the rest zeroed) whatever
        // ends the range, a failed page walk included.
        let filled = pages.pages.iter().map(|(p, n)| (p.as_ptr().cast::<c_void>(), *n));
        let empty = std::iter::repeat((std::ptr::null_mut(), 0));
        for (i, (base, len)) in filled.chain(empty).take(n_iov).enumerate() {
            // SAFETY: `i < iovcnt`, the caller's array length.
            unsafe { iov.add(i).write(iovec { iov_base: base, iov_len: len }) };
        }
        // libvmmapi's `*fault` is the last completed page walk's: left
        // alone when the first one failed.
        if !(pages.pages.is_empty() && matches!(pages.end, CopyEnd::Failed(_))) {
            // SAFETY: non-NULL out-pointer.
            unsafe { fault.write(c_int::from(pages.end == CopyEnd::GuestFault)) };
        }
        match pages.end {
            CopyEnd::Done | CopyEnd::GuestFault => 0,
            CopyEnd::NotRam | CopyEnd::OutOfPieces => fail_as_value(libc::EFAULT),
            CopyEnd::Failed(e) => fail_with(e),
        }
    })
}

/// Copies `len` bytes from the guest memory `guest_iov` describes (from
/// vm_copy_setup()) to `host_dst`. Stops, with errno EFAULT, at an iovec
/// that is empty or has a NULL base (libvmmapi asserts); errno EFAULT for
/// a NULL pointer. Like memcpy, it orders nothing: a device that reads an
/// index the guest published and then what it indexes needs an acquire
/// fence between the two copies on a weakly ordered host (aarch64).
#[no_mangle]
pub unsafe extern "C" fn vm_copyin(guest_iov: *mut iovec, host_dst: *mut c_void, len: usize) {
    ffi_boundary_errno_only!((), {
        if len > 0 && (guest_iov.is_null() || host_dst.is_null()) {
            set_errno(libc::EFAULT);
            return;
        }
        let dst = host_dst.cast::<u8>();
        // SAFETY: the caller's iovecs cover `len` bytes of live memory and
        // `host_dst` holds `len` bytes; guest memory is read with atomic
        // bytes, as every access to it from Rust (a vCPU's page walk may
        // set accessed bits in it meanwhile).
        unsafe {
            copy_iov(guest_iov, len, |g, off, n| {
                for k in 0..n {
                    dst.add(off + k).write(AtomicU8::from_ptr(g.add(k)).load(Ordering::Relaxed));
                }
            })
        }
    })
}

/// Copies `len` bytes from `host_src` to the guest memory `guest_iov`
/// describes. As vm_copyin().
#[no_mangle]
pub unsafe extern "C" fn vm_copyout(host_src: *const c_void, guest_iov: *mut iovec, len: usize) {
    ffi_boundary_errno_only!((), {
        if len > 0 && (guest_iov.is_null() || host_src.is_null()) {
            set_errno(libc::EFAULT);
            return;
        }
        let src = host_src.cast::<u8>();
        // SAFETY: as vm_copyin, the other way.
        unsafe {
            copy_iov(guest_iov, len, |g, off, n| {
                for k in 0..n {
                    AtomicU8::from_ptr(g.add(k)).store(src.add(off + k).read(), Ordering::Relaxed);
                }
            })
        }
    })
}

/// Nothing to release: the iovecs point into guest RAM that stays mapped
/// (libvmmapi's is empty too).
#[no_mangle]
pub extern "C" fn vm_copy_teardown(iov: *mut iovec, iovcnt: c_int) {
    ffi_boundary_errno_only!((), {
        let _ = (iov, iovcnt);
    })
}

/// Walks the iovecs at `iov` over `len` bytes: `each(guest bytes, offset
/// in the copy, n)`. Stops with errno EFAULT at an empty iovec or one with
/// a NULL base.
///
/// # Safety
/// `iov` points to iovecs over live memory covering `len` bytes, or
/// ending in an empty one; `each` may access `n` bytes at its pointer.
unsafe fn copy_iov(mut iov: *const iovec, len: usize, mut each: impl FnMut(*mut u8, usize, usize)) {
    let mut off = 0;
    while off < len {
        // SAFETY: within the caller's iovecs (the loop stops at an empty one).
        let i = unsafe { iov.read() };
        if i.iov_len == 0 || i.iov_base.is_null() {
            set_errno(libc::EFAULT);
            return;
        }
        let n = i.iov_len.min(len - off);
        each(i.iov_base.cast(), off, n);
        off += n;
        // SAFETY: the next iovec of the caller's array.
        iov = unsafe { iov.add(1) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ffi::layout::{vm_map_gpa, vm_setup_memory};
    use crate::ffi::lifecycle::{vm_destroy, vm_openf, vm_vcpu_open, VMMAPI_OPEN_CREATE};
    use crate::gla2gpa::{CPU_MODE_64BIT, CPU_MODE_PROTECTED, PAGING_MODE_64, PAGING_MODE_FLAT};
    use crate::mem::VM_MMAP_ALL;

    /// Creates VM `name` with `ram` bytes of guest RAM (vm_setup_memory)
    /// and opens vCPU 0 (vm_destroy() closes both).
    fn vm_with_ram(name: &std::ffi::CStr, ram: usize) -> (*mut handle::vmctx, *mut vcpu) {
        // SAFETY: a C string.
        let ctx = unsafe { vm_openf(name.as_ptr(), VMMAPI_OPEN_CREATE) };
        assert!(!ctx.is_null());
        assert_eq!(vm_setup_memory(ctx, ram, VM_MMAP_ALL), 0);
        let vcpu = vm_vcpu_open(ctx, 0);
        assert!(!vcpu.is_null());
        (ctx, vcpu)
    }

    /// libvmmapi's `vm_copy_setup` (FreeBSD 14) zeroes all `iovcnt`
    /// iovecs first and fills one per page as it goes, so when the page
    /// walk of a later page fails (VM_GLA2GPA's EFAULT: page tables
    /// outside guest RAM) it returns -1 with the pages before it in the
    /// iovecs and the rest zero.
    #[test]
    fn a_failed_page_walk_leaves_the_pages_before_it_and_zeroes_the_rest() {
        // SAFETY: the handles are used while the VM lives.
        unsafe {
            let (ctx, vcpu) = vm_with_ram(c"copy_setup_walk_error", 4 << 20);
            let put = |gpa: u64, v: u64| vm_map_gpa(ctx, gpa, 8).cast::<u64>().write_unaligned(v);
            // PML4 at 0x1000: slot 0 -> PDPT 0x2000, slot 1 -> a PDPT at
            // 2 GiB (not guest RAM). PDPT[511] -> PD 0x3000, PD[511] a
            // 2 MiB page at 0.
            put(0x1000, 0x2000 | 3);
            put(0x1008, 0x8000_0000 | 3);
            put(0x2000 + 511 * 8, 0x3000 | 3);
            put(0x3000 + 511 * 8, 0x83);
            let mut paging =
                vm_guest_paging { cr3: 0x1000, cpl: 0, cpu_mode: CPU_MODE_64BIT, paging_mode: PAGING_MODE_64 };
            let junk = iovec { iov_base: 8 as *mut c_void, iov_len: 99 };
            let mut iov = [junk; 3];
            let mut fault = 7;
            // The last page of PML4 slot 0, then the first of slot 1.
            let gla = 0x7f_ffff_f000u64;
            let rc = vm_copy_setup(vcpu, &mut paging, gla, 0x2000, 1, iov.as_mut_ptr(), 3, &mut fault);
            assert_eq!(rc, -1);
            assert_eq!(nix::errno::Errno::last_raw(), libc::EFAULT);
            assert_eq!(iov[0].iov_base, vm_map_gpa(ctx, 0x1f_f000, 1), "the first page");
            assert_eq!(iov[0].iov_len, 0x1000);
            for i in &iov[1..] {
                assert_eq!((i.iov_base, i.iov_len), (std::ptr::null_mut(), 0), "zeroed");
            }
            assert_eq!(fault, 0, "the first page's walk completed");
            // The first page's walk fails: `*fault` is left alone, as
            // libvmmapi's vm_gla2gpa writes it only after a walk.
            let mut fault = 7;
            let mut iov = [junk; 3];
            let rc = vm_copy_setup(vcpu, &mut paging, 0x80_0000_0000, 0x10, 1, iov.as_mut_ptr(), 3, &mut fault);
            assert_eq!(rc, -1);
            assert_eq!(fault, 7);
            assert!(iov.iter().all(|i| i.iov_base.is_null() && i.iov_len == 0), "all zeroed");
            vm_destroy(ctx);
        }
    }

    /// As libvmmapi: an empty range needs no iovecs (NULL with a count of
    /// 0 is fine, `*fault` 0), and copies of 0 bytes touch nothing, not
    /// even errno; a copy shorter than its iovecs takes what it needs from
    /// the last one and stops there.
    #[test]
    fn empty_ranges_need_no_iovecs_and_short_copies_stop_inside_the_last() {
        // SAFETY: the handles are used while the VM lives.
        unsafe {
            let (ctx, vcpu) = vm_with_ram(c"copy_setup_short_copies", 1 << 20);
            let mut paging = vm_guest_paging { cr3: 0, cpl: 0, cpu_mode: CPU_MODE_PROTECTED, paging_mode: PAGING_MODE_FLAT };
            let mut fault = 7;
            let rc = vm_copy_setup(vcpu, &mut paging, 0x3000, 0, 1, std::ptr::null_mut(), 0, &mut fault);
            assert_eq!((rc, fault), (0, 0), "an empty range");
            set_errno(0);
            vm_copyin(std::ptr::null_mut(), std::ptr::null_mut(), 0);
            vm_copyout(std::ptr::null(), std::ptr::null_mut(), 0);
            assert_eq!(nix::errno::Errno::last_raw(), 0, "copies of nothing");
            let guest = vm_map_gpa(ctx, 0x3000, 0x20).cast::<u8>();
            for k in 0..0x20 {
                guest.add(k).write(k as u8 + 1);
            }
            let mut iov = [iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2];
            let rc = vm_copy_setup(vcpu, &mut paging, 0x3000, 0x20, 3, iov.as_mut_ptr(), 2, &mut fault);
            assert_eq!((rc, fault, iov[0].iov_len, iov[1].iov_len), (0, 0, 0x20, 0));
            let mut dst = [0u8; 0x10];
            vm_copyin(iov.as_mut_ptr(), dst.as_mut_ptr().cast(), 0x10);
            assert_eq!(nix::errno::Errno::last_raw(), 0, "copyin within the first iovec");
            assert_eq!(dst, std::array::from_fn(|k| k as u8 + 1));
            let src = [0xeeu8; 0x10];
            vm_copyout(src.as_ptr().cast(), iov.as_mut_ptr(), 0x10);
            assert_eq!(nix::errno::Errno::last_raw(), 0, "copyout within the first iovec");
            assert_eq!((guest.add(0xf).read(), guest.add(0x10).read()), (0xee, 0x11), "the copy's last byte and the one after");
            vm_destroy(ctx);
        }
    }
}
