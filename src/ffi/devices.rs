//! Timer-device commands (VM_RTC_READ, VM_RTC_WRITE, VM_RTC_SETTIME,
//! VM_RTC_GETTIME, VM_GET_HPET_CAPABILITIES) and their libvmmapi
//! functions.

use std::ffi::{c_int, c_void};

use super::abi::*;
use super::call::ctx_ioctl;
use super::errno::fail;
use super::handle::vmctx;
use super::ioctl::{copy_in, copy_out};
use super::panic::ffi_boundary;
use crate::error::{Error, Result};
use crate::vm::Vm;

/// The timer-device commands (no vCPU lock).
///
/// # Safety
/// `arg` points to `cmd`'s struct.
pub(crate) unsafe fn vm_cmd(vm: &Vm, cmd: u64, arg: *mut c_void) -> Result<()> {
    // SAFETY (copy_in/copy_out): `arg` points to `cmd`'s struct.
    unsafe {
        match cmd {
            VM_RTC_WRITE => {
                let a: vm_rtc_data = copy_in(arg);
                vm.rtc_nvram_write(a.offset, a.value)
            }
            VM_RTC_READ => {
                let mut a: vm_rtc_data = copy_in(arg);
                a.value = vm.rtc_nvram_read(a.offset)?;
                copy_out(arg, a);
                Ok(())
            }
            VM_RTC_SETTIME => {
                let a: vm_rtc_time = copy_in(arg);
                vm.rtc_set_time(a.secs)
            }
            VM_RTC_GETTIME => {
                copy_out(arg, vm_rtc_time { secs: vm.rtc_get_time()? });
                Ok(())
            }
            VM_GET_HPET_CAPABILITIES => {
                copy_out(arg, vm_hpet_cap { capabilities: vm.hpet_capabilities() });
                Ok(())
            }
            _ => Err(Error::Inval),
        }
    }
}

/// Writes one byte of RTC NVRAM (CMOS offsets 14-127 except the century
/// byte 0x32; anything else is EINVAL). bhyve stores the memory size here.
#[no_mangle]
pub extern "C" fn vm_rtc_write(ctx: *mut vmctx, offset: c_int, value: u8) -> c_int {
    ffi_boundary!({ ctx_ioctl(ctx, VM_RTC_WRITE, &mut vm_rtc_data { offset, value }) })
}

/// Reads any of the RTC's 128 CMOS bytes (0-127, else EINVAL) into
/// `*retval`; the date/time bytes show the current time. Register C is
/// not cleared by this read (a guest read clears it).
#[no_mangle]
pub unsafe extern "C" fn vm_rtc_read(ctx: *mut vmctx, offset: c_int, retval: *mut u8) -> c_int {
    ffi_boundary!({
        if retval.is_null() {
            return fail(libc::EFAULT);
        }
        let mut a = vm_rtc_data { offset, value: 0 };
        let rc = ctx_ioctl(ctx, VM_RTC_READ, &mut a);
        if rc == 0 {
            // SAFETY: non-NULL out-pointer.
            unsafe { retval.write(a.value) };
        }
        rc
    })
}

/// Sets the RTC's time, in seconds since the epoch (bhyve passes local
/// time as if it were UTC). EBUSY while the guest has updates halted (SET
/// bit); EINVAL before 1970 (except -1, which stops the clock) or after
/// 9999.
#[no_mangle]
pub extern "C" fn vm_rtc_settime(ctx: *mut vmctx, secs: time_t) -> c_int {
    ffi_boundary!({ ctx_ioctl(ctx, VM_RTC_SETTIME, &mut vm_rtc_time { secs }) })
}

/// The RTC's time, in seconds since the epoch, into `*secs`: -1 while the
/// guest has updates halted or the date/time bytes are invalid.
#[no_mangle]
pub unsafe extern "C" fn vm_rtc_gettime(ctx: *mut vmctx, secs: *mut time_t) -> c_int {
    ffi_boundary!({
        if secs.is_null() {
            return fail(libc::EFAULT);
        }
        let mut a = vm_rtc_time { secs: 0 };
        let rc = ctx_ioctl(ctx, VM_RTC_GETTIME, &mut a);
        if rc == 0 {
            // SAFETY: non-NULL out-pointer.
            unsafe { secs.write(a.secs) };
        }
        rc
    })
}

/// The low 32 bits of the HPET's capabilities register into
/// `*capabilities` (bhyve puts them in its ACPI HPET table): vendor 8086,
/// 8 timers, revision 1, a 32-bit counter, no LegacyReplacement. As in
/// libvmmapi, a NULL `capabilities` only skips the copy, and a failed
/// call stores 0.
#[no_mangle]
pub unsafe extern "C" fn vm_get_hpet_capabilities(ctx: *mut vmctx, capabilities: *mut u32) -> c_int {
    ffi_boundary!({
        let mut a = vm_hpet_cap { capabilities: 0 };
        let rc = ctx_ioctl(ctx, VM_GET_HPET_CAPABILITIES, &mut a);
        if !capabilities.is_null() {
            // As libvmmapi, written whatever the result (0 after a failure).
            // SAFETY: non-NULL out-pointer.
            unsafe { capabilities.write(if rc == 0 { a.capabilities } else { 0 }) };
        }
        rc
    })
}
