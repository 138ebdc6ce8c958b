//! libvmmapi: creating, opening, closing and destroying VMs, and vCPU
//! handles.

use std::ffi::{c_char, c_int};

use super::abi::VM_REINIT;
use super::cstr::str_arg;
use super::{commands, ioctl};
use super::errno::{fail, set_errno, to_rc, errno_of};
use super::handle::{self, vcpu, vmctx};
use super::panic::{ffi_boundary, ffi_boundary_errno_only};
use crate::error::{Error, Result};
use crate::registry;

/// Creates a VM named `name`. Returns 0, or -1 with errno: EEXIST if the
/// name is taken, EINVAL for an empty name, one longer than
/// VM_MAX_NAMELEN, one with a '/' or one that is not UTF-8, EFAULT for
/// NULL, ENOMEM when the host refuses the VM's timer thread or memory
/// (the process's memory map is full: see vm_destroy()).
#[no_mangle]
pub unsafe extern "C" fn vm_create(name: *const c_char) -> c_int {
    ffi_boundary!({
        // SAFETY: the caller passes a C string or NULL.
        let r = unsafe { str_arg(name) }.and_then(registry::create);
        to_rc(r.map(drop))
    })
}

/// Opens the VM named `name`. Returns a handle, or NULL with errno ENOENT
/// (no such VM) or EFAULT (NULL name). Close it with vm_close().
#[no_mangle]
pub unsafe extern "C" fn vm_open(name: *const c_char) -> *mut vmctx {
    // As FreeBSD 15's libvmmapi: vm_openf() without flags.
    // SAFETY: forwarded from the caller.
    ffi_boundary!(std::ptr::null_mut(), { unsafe { vm_openf(name, 0) } })
}

/// vm_openf() flag: create the VM if no VM has the name.
pub const VMMAPI_OPEN_CREATE: c_int = 0x01;
/// vm_openf() flag: reset a VM that existed before the call, as
/// vm_reinit() (a VM the call creates is new already).
pub const VMMAPI_OPEN_REINIT: c_int = 0x02;

/// Opens the VM named `name`, as FreeBSD 15's libvmmapi (whose bhyve
/// starts with `vm_openf(name, romboot ? VMMAPI_OPEN_REINIT : 0)` and,
/// on ENOENT, `vm_openf(name, VMMAPI_OPEN_CREATE)`). `flags`:
/// VMMAPI_OPEN_CREATE creates the VM if there is none (in one step: of
/// threads racing to create one name, all open the same VM);
/// VMMAPI_OPEN_REINIT resets a VM that already existed, as vm_reinit().
/// Returns a handle to close with vm_close() (or vm_destroy()), or NULL
/// with errno: ENOENT (no such VM and no VMMAPI_OPEN_CREATE), EFAULT
/// (NULL name), EINVAL (flags other than these two; or, with
/// VMMAPI_OPEN_CREATE, a name vm_create() refuses), ENOMEM as
/// vm_create(), or vm_reinit()'s error (EBUSY: a vCPU is active that has
/// not seen its VM_SUSPEND); the VM is then left as it was.
#[no_mangle]
pub unsafe extern "C" fn vm_openf(name: *const c_char, flags: c_int) -> *mut vmctx {
    ffi_boundary!(std::ptr::null_mut(), {
        // SAFETY: forwarded from the caller.
        match unsafe { openf(name, flags) } {
            Ok(ctx) => ctx,
            Err(e) => {
                set_errno(errno_of(e));
                std::ptr::null_mut()
            }
        }
    })
}

/// vm_openf() without the errno.
///
/// # Safety
/// `name` is a C string or NULL.
unsafe fn openf(name: *const c_char, flags: c_int) -> Result<*mut vmctx> {
    // SAFETY: forwarded.
    let name = unsafe { str_arg(name) };
    if name == Err(Error::Fault) {
        return Err(Error::Fault);
    }
    if flags & !(VMMAPI_OPEN_CREATE | VMMAPI_OPEN_REINIT) != 0 {
        return Err(Error::Inval);
    }
    let (vm, created) = if flags & VMMAPI_OPEN_CREATE != 0 {
        registry::open_or_create(name?)?
    } else {
        // A name vm_create() refuses names no VM: ENOENT, as FreeBSD.
        let name = name.map_err(|e| if e == Error::Inval { Error::NoEnt } else { e });
        (registry::open(name?)?, false)
    };
    if !created && flags & VMMAPI_OPEN_REINIT != 0 {
        let class = ioctl::lock_class(VM_REINIT).ok_or(Error::Inval)?;
        // SAFETY: VM_REINIT takes no argument.
        unsafe { commands::run(&vm, VM_REINIT, class, std::ptr::null_mut()) }?;
    }
    Ok(handle::new_ctx(vm))
}

/// Closes a handle from vm_open(). The VM lives on. Anything else (NULL,
/// a closed handle, a vcpu handle) is left alone.
#[no_mangle]
pub extern "C" fn vm_close(ctx: *mut vmctx) {
    ffi_boundary_errno_only!((), {
        let _ = handle::close_ctx(ctx);
    })
}

/// Destroys the VM behind `ctx` and closes `ctx`. Its name is free again.
/// Other threads inside calls on the VM finish or fail with EBADF; other
/// handles to it stay valid to close and fail with EBADF otherwise. Its
/// guest memory goes back to the host, but the addresses stay mapped
/// (reading zeros until written; what is written after takes host memory
/// again, until the process exits) for the rest of the process, as
/// FreeBSD's mapping: a device thread still using them does not fault,
/// and each destroyed VM keeps some entries of the process's memory map
/// (over many VMs, about two for vm_setup_memory() alone and five with a
/// boot ROM too, as neighbouring guard areas merge). The call that
/// destroys the VM returns once the VM's timer thread has been joined
/// (FreeBSD drains the VM's callouts): that thread fires no timer after
/// it (a vCPU thread still inside vm_run may deliver one on its way
/// out), and is gone but for the moment the kernel takes to remove it (a
/// create at once under a tight RLIMIT_NPROC can, rarely, still find it
/// counted). A second vm_destroy racing the first returns at once, as
/// FreeBSD's. It is not a cancellation point, and may be called from a
/// guest callback of the same VM. As libvmmapi's (which returns
/// nothing), a NULL or stale (closed) `ctx` does nothing and sets no
/// errno; another open handle of a VM already destroyed is only closed
/// (a VM created since under the same name is not touched). vCPU
/// handles are not closed by it: close them with vm_vcpu_close().
#[no_mangle]
pub extern "C" fn vm_destroy(ctx: *mut vmctx) {
    ffi_boundary_errno_only!((), {
        if let Ok(vm) = handle::ctx_vm(ctx) {
            // The join of the timer thread is a cancellation point.
            super::cancel::without_cancellation(|| {
                let _ = registry::destroy(&vm);
                let _ = handle::close_ctx(ctx);
            });
        }
    })
}

/// Returns a handle for vCPU `vcpuid` of the VM, or NULL with errno EINVAL
/// (id out of range), EBADF (bad ctx, or the VM was destroyed) or EFAULT
/// (NULL ctx).
#[no_mangle]
pub extern "C" fn vm_vcpu_open(ctx: *mut vmctx, vcpuid: c_int) -> *mut vcpu {
    ffi_boundary!(std::ptr::null_mut(), {
        match handle::live_ctx_vm(ctx).and_then(|vm| vm.vcpu_id(vcpuid).map(|id| (vm, id))) {
            Ok((vm, id)) => handle::new_vcpu(vm, id),
            Err(e) => {
                set_errno(errno_of(e));
                std::ptr::null_mut()
            }
        }
    })
}

/// Closes a handle from vm_vcpu_open(). Anything else (NULL, a closed
/// handle, a ctx handle) is left alone.
#[no_mangle]
pub extern "C" fn vm_vcpu_close(vcpu: *mut vcpu) {
    ffi_boundary_errno_only!((), {
        let _ = handle::close_vcpu(vcpu);
    })
}

/// The vCPU id of a vCPU handle, or -1 with errno EFAULT (NULL) or EBADF
/// (not an open vcpu handle). Like libvmmapi's, it reads the handle only:
/// it still answers after the VM was destroyed, until the handle is
/// closed.
#[no_mangle]
pub extern "C" fn vcpu_id(vcpu: *mut vcpu) -> c_int {
    ffi_boundary!({
        match handle::vcpu_vm(vcpu) {
            Ok((_, id)) => id as c_int,
            Err(e) => fail(errno_of(e)),
        }
    })
}

/// vmm_rs extension: the number of vCPUs (maxcpus) VMs created from now on
/// get, 1..=256 (FreeBSD's hw.vmm.maxcpu; default 16, or the environment
/// variable VMM_RS_MAXCPU). Returns 0, or -1 with errno EINVAL.
#[no_mangle]
pub extern "C" fn vmm_rs_set_maxcpus(maxcpus: c_int) -> c_int {
    ffi_boundary!({
        let n = usize::try_from(maxcpus).unwrap_or(0);
        to_rc(registry::set_default_maxcpus(n))
    })
}
