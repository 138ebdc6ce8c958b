//! Differential checks of libvmmapi-level functions against FreeBSD 14's
//! `lib/libvmmapi/vmmapi.c`: what the functions leave in their
//! out-parameters when they fail (the order of vm_alloc_memseg's errors
//! is tested beside it, in `ffi::memory`).

use std::ffi::c_int;

use super::abi::*;
use super::apic::vm_get_x2apic_state;
use super::devices::vm_get_hpet_capabilities;
use super::lifecycle::{vm_close, vm_destroy, vm_open, vm_openf, vm_vcpu_close, vm_vcpu_open, VMMAPI_OPEN_CREATE};
use super::vmmapi::{vm_get_capability, vm_get_register};

fn errno() -> c_int {
    nix::errno::Errno::last_raw()
}

/// FreeBSD 14 vmmapi.c `vm_get_register` and `vm_get_capability` store
/// the value field of their bzeroed struct (which a failed ioctl does not
/// copy out) whatever the ioctl returned: a failed call leaves 0 there.
#[test]
fn register_and_capability_getters_store_zero_on_failure() {
    // SAFETY: C strings; handles used while the VM lives.
    unsafe {
        let ctx = vm_openf(c"parity_getters".as_ptr(), VMMAPI_OPEN_CREATE);
        assert!(!ctx.is_null());
        let vcpu = vm_vcpu_open(ctx, 0);
        let mut reg: u64 = 0xdead_beef;
        assert_eq!(vm_get_register(vcpu, 9999, &mut reg), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(reg, 0, "the zeroed regval");
        let mut cap: c_int = 77;
        assert_eq!(vm_get_capability(vcpu, 99, &mut cap), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(cap, 0, "the zeroed capval");
        vm_vcpu_close(vcpu);
        vm_destroy(ctx);
    }
}

/// FreeBSD 14 vmmapi.c `vm_get_x2apic_state` stores `x2apic.state` into
/// `*state` unconditionally, and `vm_get_hpet_capabilities` stores
/// `cap.capabilities` whenever the pointer is not NULL: after a failed
/// ioctl (here, the VM was destroyed through another handle; FreeBSD's
/// ioctl on the stale descriptor fails) both read 0.
#[test]
fn x2apic_and_hpet_getters_failure_store_zero_as_libvmmapi() {
    // SAFETY: as above.
    unsafe {
        let name = c"parity_x2apic_hpet";
        let ctx = vm_openf(name.as_ptr(), VMMAPI_OPEN_CREATE);
        assert!(!ctx.is_null());
        let ctx2 = vm_open(name.as_ptr());
        assert!(!ctx2.is_null());
        let vcpu = vm_vcpu_open(ctx2, 0);
        assert!(!vcpu.is_null());
        vm_destroy(ctx);
        let mut st = x2apic_state::X2APIC_ENABLED;
        assert_eq!(vm_get_x2apic_state(vcpu, &mut st), -1);
        assert_eq!(st as c_int, x2apic_state::X2APIC_DISABLED as c_int, "zeroed state written");
        let mut cap: u32 = 0xdead;
        assert_eq!(vm_get_hpet_capabilities(ctx2, &mut cap), -1);
        assert_eq!(cap, 0, "zeroed capabilities written");
        vm_vcpu_close(vcpu);
        vm_close(ctx2);
    }
}
