//! PCI pass-through (FreeBSD's `ppt` driver) and the host page tables of
//! guest memory: the commands and libvmmapi functions exist, so bhyve and
//! bhyvectl build and link unchanged, and answer as FreeBSD does on a host
//! with no device attached to `ppt`: there is nothing to pass through, so
//! every device is ENOENT (`ppt_find`). The commands take their lock
//! classes first (semantics.md section 3), so a running vCPU sees the
//! lock-all of a BIND or a MAP as on FreeBSD. There are no host page
//! tables behind guest memory here (it is host memory mapped by the
//! library), so VM_GET_GPA_PMAP stays ENOTTY, as an unknown command.

use std::ffi::c_int;

use super::abi::*;
use super::call::ctx_ioctl;
use super::handle::vmctx;
use super::panic::ffi_boundary;
use crate::error::{Error, Result};

/// The answer of every pass-through command (VM_BIND_PPTDEV,
/// VM_UNBIND_PPTDEV, VM_MAP_PPTDEV_MMIO, VM_UNMAP_PPTDEV_MMIO, VM_PPTDEV_MSI,
/// VM_PPTDEV_MSIX, VM_PPTDEV_DISABLE_MSIX), once its lock class is taken:
/// no such device.
pub(crate) fn no_device() -> Result<()> {
    Err(Error::NoEnt)
}

/// Assigns host PCI device bus/slot/func to the VM (VM_BIND_PPTDEV).
/// Returns -1 with errno ENOENT: no device is attached to `ppt` here.
#[no_mangle]
pub extern "C" fn vm_assign_pptdev(ctx: *mut vmctx, bus: c_int, slot: c_int, func: c_int) -> c_int {
    ffi_boundary!({ ctx_ioctl(ctx, VM_BIND_PPTDEV, &mut vm_pptdev { bus, slot, func }) })
}

/// Gives an assigned device back (VM_UNBIND_PPTDEV): ENOENT, none is.
#[no_mangle]
pub extern "C" fn vm_unassign_pptdev(ctx: *mut vmctx, bus: c_int, slot: c_int, func: c_int) -> c_int {
    ffi_boundary!({ ctx_ioctl(ctx, VM_UNBIND_PPTDEV, &mut vm_pptdev { bus, slot, func }) })
}

/// Maps an assigned device's BAR at `gpa` (VM_MAP_PPTDEV_MMIO): ENOENT.
#[no_mangle]
pub extern "C" fn vm_map_pptdev_mmio(
    ctx: *mut vmctx,
    bus: c_int,
    slot: c_int,
    func: c_int,
    gpa: vm_paddr_t,
    len: usize,
    hpa: vm_paddr_t,
) -> c_int {
    ffi_boundary!({
        let mut a = vm_pptdev_mmio { bus, slot, func, gpa, hpa, len };
        ctx_ioctl(ctx, VM_MAP_PPTDEV_MMIO, &mut a)
    })
}

/// Removes a BAR map (VM_UNMAP_PPTDEV_MMIO): ENOENT.
#[no_mangle]
pub extern "C" fn vm_unmap_pptdev_mmio(
    ctx: *mut vmctx,
    bus: c_int,
    slot: c_int,
    func: c_int,
    gpa: vm_paddr_t,
    len: usize,
) -> c_int {
    ffi_boundary!({
        let mut a = vm_pptdev_mmio { bus, slot, func, gpa, hpa: 0, len };
        ctx_ioctl(ctx, VM_UNMAP_PPTDEV_MMIO, &mut a)
    })
}

/// Routes an assigned device's MSIs (VM_PPTDEV_MSI): ENOENT.
#[no_mangle]
pub extern "C" fn vm_setup_pptdev_msi(
    ctx: *mut vmctx,
    bus: c_int,
    slot: c_int,
    func: c_int,
    addr: u64,
    msg: u64,
    numvec: c_int,
) -> c_int {
    ffi_boundary!({
        let mut a = vm_pptdev_msi { vcpu: 0, bus, slot, func, numvec, msg, addr };
        ctx_ioctl(ctx, VM_PPTDEV_MSI, &mut a)
    })
}

/// Routes one MSI-X vector of an assigned device (VM_PPTDEV_MSIX): ENOENT.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn vm_setup_pptdev_msix(
    ctx: *mut vmctx,
    bus: c_int,
    slot: c_int,
    func: c_int,
    idx: c_int,
    addr: u64,
    msg: u64,
    vector_control: u32,
) -> c_int {
    ffi_boundary!({
        let mut a = vm_pptdev_msix { vcpu: 0, bus, slot, func, idx, msg, vector_control, addr };
        ctx_ioctl(ctx, VM_PPTDEV_MSIX, &mut a)
    })
}

/// Turns an assigned device's MSI-X off (VM_PPTDEV_DISABLE_MSIX): ENOENT.
#[no_mangle]
pub extern "C" fn vm_disable_pptdev_msix(ctx: *mut vmctx, bus: c_int, slot: c_int, func: c_int) -> c_int {
    ffi_boundary!({ ctx_ioctl(ctx, VM_PPTDEV_DISABLE_MSIX, &mut vm_pptdev { bus, slot, func }) })
}

/// The host page-table entries that map guest-physical `gpa`
/// (VM_GET_GPA_PMAP; bhyve prints them after an EPT misconfiguration
/// exit, which never happens here). Guest memory is plain host memory
/// with no nested page tables, so there are none to report: -1 with
/// errno ENOTTY, as `vmm_ioctl` answers the command (EFAULT for a NULL
/// handle, EBADF for a closed one or one of the other kind; a handle of a
/// destroyed VM gets ENOTTY too, as from `vmm_ioctl`, which checks the
/// command first); `pte` and `num` are not written.
#[no_mangle]
pub unsafe extern "C" fn vm_get_gpa_pmap(ctx: *mut vmctx, gpa: u64, pte: *mut u64, num: *mut c_int) -> c_int {
    ffi_boundary!({
        let _ = (pte, num);
        ctx_ioctl(ctx, VM_GET_GPA_PMAP, &mut vm_gpa_pte { gpa, pte: [0; 4], ptenum: 0 })
    })
}
