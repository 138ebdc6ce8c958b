//! libvmmapi's bookkeeping functions: a VM's name, APIC ids, capability
//! names, and the capability-mode helpers (`vm_limit_rights`,
//! `vm_get_ioctls`).

use std::ffi::{c_char, c_int, c_ulong, CStr};

use super::abi::*;
use super::errno::{fail, fail_with, or_errno, set_errno};
use super::handle::{self, vmctx};
use super::panic::ffi_boundary;

/// The VM's name, or NULL with errno EFAULT or EBADF for a bad handle or
/// a destroyed VM. The string lives until this handle is closed, as
/// libvmmapi's (it is the handle's).
#[no_mangle]
pub extern "C" fn vm_get_name(ctx: *mut vmctx) -> *const c_char {
    ffi_boundary!(std::ptr::null(), {
        // The handle table entry keeps the name until the handle closes.
        or_errno(handle::live_ctx_name(ctx).map(|n| n.as_ptr()), std::ptr::null())
    })
}

/// The vCPU with local APIC id `apicid`: the same number (a vCPU's APIC
/// id is its index, as in FreeBSD, whose function neither looks at `ctx`
/// nor checks the number; nor does this one).
#[no_mangle]
pub extern "C" fn vm_apicid2vcpu(_ctx: *mut vmctx, apicid: c_int) -> c_int {
    ffi_boundary!({ apicid })
}

/// FreeBSD 14 libvmmapi's capability names (`capstrmap`), by `enum
/// vm_cap_type`: every capability has one.
const CAP_NAMES: [&CStr; vm_cap_type::VM_CAP_MAX as usize] = [
    c"hlt_exit",
    c"mtrap_exit",
    c"pause_exit",
    c"unrestricted_guest",
    c"enable_invpcid",
    c"bpt_exit",
    c"rdpid",
    c"rdtscp",
    c"ipi_exit",
    c"mask_hwintr",
    c"rflags_tf",
];

/// The capability named `capname` ("hlt_exit", "mtrap_exit",
/// "pause_exit", "unrestricted_guest", "enable_invpcid", "bpt_exit",
/// "rdpid", "rdtscp", "ipi_exit", "mask_hwintr", "rflags_tf"), or -1
/// (with errno EFAULT for NULL).
#[no_mangle]
pub unsafe extern "C" fn vm_capability_name2type(capname: *const c_char) -> c_int {
    ffi_boundary!({
        if capname.is_null() {
            return fail(libc::EFAULT);
        }
        // SAFETY: the caller passes a C string.
        let name = unsafe { CStr::from_ptr(capname) };
        CAP_NAMES.iter().position(|n| *n == name).map_or(-1, |i| i as c_int)
    })
}

/// The name of capability `type` (a static string), or NULL for a `type`
/// outside 0..VM_CAP_MAX.
#[no_mangle]
pub extern "C" fn vm_capability_type2name(r#type: c_int) -> *const c_char {
    ffi_boundary!(std::ptr::null(), {
        usize::try_from(r#type).ok().and_then(|i| CAP_NAMES.get(i)).map_or(std::ptr::null(), |n| n.as_ptr())
    })
}

/// The commands libvmmapi lets a VM's device file take, in its order
/// (without VM_SNAPSHOT_REQ, which this ABI lacks, and without its second
/// VM_MMAP_MEMSEG). VM_GET_GPA_PMAP and VM_RESTORE_TIME are ENOTTY here;
/// the PCI pass-through commands find no device (ENOENT).
const IOCTL_CMDS: [u64; 60] = [
    VM_RUN, VM_SUSPEND, VM_REINIT, VM_ALLOC_MEMSEG, VM_GET_MEMSEG, VM_MMAP_MEMSEG, VM_MMAP_GETNEXT,
    VM_MUNMAP_MEMSEG, VM_SET_REGISTER, VM_GET_REGISTER, VM_SET_SEGMENT_DESCRIPTOR, VM_GET_SEGMENT_DESCRIPTOR,
    VM_SET_REGISTER_SET, VM_GET_REGISTER_SET, VM_SET_KERNEMU_DEV, VM_GET_KERNEMU_DEV, VM_INJECT_EXCEPTION,
    VM_LAPIC_IRQ, VM_LAPIC_LOCAL_IRQ, VM_LAPIC_MSI, VM_IOAPIC_ASSERT_IRQ, VM_IOAPIC_DEASSERT_IRQ,
    VM_IOAPIC_PULSE_IRQ, VM_IOAPIC_PINCOUNT, VM_ISA_ASSERT_IRQ, VM_ISA_DEASSERT_IRQ, VM_ISA_PULSE_IRQ,
    VM_ISA_SET_IRQ_TRIGGER, VM_SET_CAPABILITY, VM_GET_CAPABILITY, VM_BIND_PPTDEV, VM_UNBIND_PPTDEV,
    VM_MAP_PPTDEV_MMIO, VM_PPTDEV_MSI, VM_PPTDEV_MSIX, VM_UNMAP_PPTDEV_MMIO, VM_PPTDEV_DISABLE_MSIX,
    VM_INJECT_NMI, VM_STATS, VM_STAT_DESC, VM_SET_X2APIC_STATE, VM_GET_X2APIC_STATE,
    VM_GET_HPET_CAPABILITIES, VM_GET_GPA_PMAP, VM_GLA2GPA, VM_GLA2GPA_NOFAULT, VM_ACTIVATE_CPU, VM_GET_CPUS,
    VM_SUSPEND_CPU, VM_RESUME_CPU, VM_SET_INTINFO, VM_GET_INTINFO, VM_RTC_WRITE, VM_RTC_READ,
    VM_RTC_SETTIME, VM_RTC_GETTIME, VM_RESTART_INSTRUCTION, VM_SET_TOPOLOGY, VM_GET_TOPOLOGY,
    VM_RESTORE_TIME,
];

/// Limits what the handle may do to the commands vm_get_ioctls() lists
/// (FreeBSD: Capsicum rights on the VM's device file). A handle takes no
/// other commands, and there is no file whose rights could widen, so
/// there is nothing to take away: 0, or -1 with errno EFAULT or EBADF for
/// a bad handle or a destroyed VM.
#[no_mangle]
pub extern "C" fn vm_limit_rights(ctx: *mut vmctx) -> c_int {
    ffi_boundary!({
        match handle::live_ctx_vm(ctx) {
            Ok(_) => 0,
            Err(e) => fail_with(e),
        }
    })
}

/// The ioctl commands libvmmapi allows on a VM (its legacy interface):
/// with `len` non-NULL, stores their number there and returns NULL; with
/// `len` NULL, returns a malloc()ed array of them (the caller frees it),
/// or NULL with errno ENOMEM.
#[no_mangle]
pub unsafe extern "C" fn vm_get_ioctls(len: *mut usize) -> *const c_ulong {
    ffi_boundary!(std::ptr::null(), {
        if !len.is_null() {
            // SAFETY: non-NULL out-pointer.
            unsafe { len.write(IOCTL_CMDS.len()) };
            return std::ptr::null();
        }
        let size = std::mem::size_of_val(&IOCTL_CMDS);
        // SAFETY: a plain allocation the caller owns and frees with free().
        let p = unsafe { libc::malloc(size) }.cast::<c_ulong>();
        if p.is_null() {
            set_errno(libc::ENOMEM);
            return std::ptr::null();
        }
        for (i, c) in IOCTL_CMDS.iter().enumerate() {
            // SAFETY: `p` holds IOCTL_CMDS.len() elements.
            unsafe { p.add(i).write(*c as c_ulong) };
        }
        p
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_list_is_libvmmapis_without_repeats() {
        let mut v = IOCTL_CMDS.to_vec();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), IOCTL_CMDS.len());
        for c in IOCTL_CMDS {
            assert_eq!((c >> 8) & 0xff, u64::from(b'v'), "{c:#x}");
        }
    }
}
