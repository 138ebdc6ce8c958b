//! Statistics commands (VM_STATS, VM_STAT_DESC) and their libvmmapi
//! functions, whose results live in per-thread buffers as libvmmapi's do.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void};

use super::abi::*;
use super::call::{ctx_ioctl, vcpu_ioctl};
use super::errno::set_errno;
use super::handle::{vcpu, vmctx};
use super::ioctl::{copy_in, copy_out};
use super::panic::ffi_boundary;
use crate::error::{Error, Result};
use crate::thread_exit::ThreadExitKey;
use crate::vm::Vm;

/// The statistics commands (no vCPU lock, as FreeBSD; vCPU 0's memory
/// statistics take the guest-memory lock shared, briefly: see
/// `Vm::vcpu_stats`).
///
/// # Safety
/// `arg` points to `cmd`'s struct.
pub(crate) unsafe fn vm_cmd(vm: &Vm, cmd: u64, arg: *mut c_void) -> Result<()> {
    // SAFETY (copy_in/copy_out): `arg` points to `cmd`'s struct.
    unsafe {
        match cmd {
            VM_STATS => {
                let mut a: vm_stats = copy_in(arg);
                let id = vm.vcpu_id(a.cpuid)?;
                let stats = vm.vcpu_stats(id, a.index, MAX_VM_STATS)?;
                a.num_entries = stats.len() as c_int;
                a.statbuf[..stats.len()].copy_from_slice(&stats);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                a.tv = timeval { tv_sec: now.as_secs() as time_t, tv_usec: now.subsec_micros().into() };
                copy_out(arg, a);
                Ok(())
            }
            VM_STAT_DESC => {
                let mut a: vm_stat_desc = copy_in(arg);
                let desc = crate::stats::description(a.index).ok_or(Error::Inval)?;
                a.desc = [0; 128];
                for (d, s) in a.desc.iter_mut().zip(desc.bytes().take(127)) {
                    *d = s as c_char;
                }
                copy_out(arg, a);
                Ok(())
            }
            _ => Err(Error::Inval),
        }
    }
}

/// This thread's result buffers (libvmmapi: thread-local `stats_buf`, a
/// static `statdesc`).
struct Buffers {
    stats: Vec<u64>,
    desc: [c_char; 128],
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers { stats: Vec::new(), desc: [0; 128] }
    }
}

static BUFFERS: ThreadExitKey<RefCell<Buffers>> = ThreadExitKey::new();

/// Every statistic of the vCPU, fetched 64 at a time: a pointer to this
/// thread's buffer of them (the same buffer each call, refilled, as
/// libvmmapi's; valid until the thread's exit: it is freed among the
/// thread's key destructors, so one of those must not read it), with
/// their number in `*ret_entries` and the time read in `*ret_tv` (either
/// may be NULL). NULL with errno on failure (EFAULT, EBADF for a bad
/// handle or destroyed VM, ENOMEM if the thread can have no buffer).
#[no_mangle]
pub unsafe extern "C" fn vm_get_stats(vcpu: *mut vcpu, ret_tv: *mut timeval, ret_entries: *mut c_int) -> *mut u64 {
    ffi_boundary!(std::ptr::null_mut(), {
        // The first batch before the buffer: a failed call leaves the
        // last result in it, as libvmmapi's.
        let mut a = vm_stats::default();
        if vcpu_ioctl(vcpu, VM_STATS, &mut a, |a, id| a.cpuid = id) != 0 {
            return std::ptr::null_mut();
        }
        let Some((ptr, count, tv)) = BUFFERS.with_or_init(RefCell::default, |b| {
            // Refilled in place, as libvmmapi's `stats_buf` (realloc'd
            // only to grow): the pointer an earlier call returned stays
            // valid and now reads these counts.
            let mut b = b.borrow_mut();
            b.stats.clear();
            loop {
                let n = a.num_entries.clamp(0, MAX_VM_STATS as c_int) as usize;
                b.stats.extend_from_slice(&a.statbuf[..n]);
                let filled = (b.stats.as_mut_ptr(), b.stats.len() as c_int, a.tv);
                if n != MAX_VM_STATS {
                    return filled;
                }
                a = vm_stats { index: b.stats.len() as c_int, ..vm_stats::default() };
                if vcpu_ioctl(vcpu, VM_STATS, &mut a, |a, id| a.cpuid = id) != 0 {
                    // A later batch that fails ends the list, as libvmmapi.
                    return filled;
                }
            }
        }) else {
            // No per-thread buffer (no POSIX key or memory left).
            set_errno(libc::ENOMEM);
            return std::ptr::null_mut();
        };
        // SAFETY: NULL-checked out-pointers.
        unsafe {
            if !ret_tv.is_null() {
                ret_tv.write(tv);
            }
            if !ret_entries.is_null() {
                ret_entries.write(count);
            }
        }
        ptr
    })
}

/// The description of statistic `index` (a pointer to this thread's
/// buffer, the same each call, refilled; valid until the thread's exit,
/// as vm_get_stats()'s), or NULL with errno EINVAL for an
/// index with none (EFAULT/EBADF for a bad handle).
#[no_mangle]
pub extern "C" fn vm_get_stat_desc(ctx: *mut vmctx, index: c_int) -> *const c_char {
    ffi_boundary!(std::ptr::null(), {
        let mut a = vm_stat_desc { index, desc: [0; 128] };
        if ctx_ioctl(ctx, VM_STAT_DESC, &mut a) != 0 {
            return std::ptr::null();
        }
        BUFFERS
            .with_or_init(RefCell::default, |b| {
                let mut b = b.borrow_mut();
                b.desc = a.desc;
                b.desc.as_ptr()
            })
            .unwrap_or_else(|| {
                set_errno(libc::ENOMEM);
                std::ptr::null()
            })
    })
}
