//! Checked conversions of C strings and out-pointers.

use std::ffi::{c_char, CStr};

use crate::error::{Error, Result};

/// Borrows a NUL-terminated C string as UTF-8: EFAULT for NULL, EINVAL for
/// a string that is not UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub unsafe fn str_arg<'a>(p: *const c_char) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::Fault);
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| Error::Inval)
}

/// Borrows `*p` mutably: EFAULT for NULL.
///
/// # Safety
/// `p` is NULL or valid for reads and writes of a `T` for `'a`, with no
/// other live reference to it.
pub unsafe fn arg_mut<'a, T>(p: *mut T) -> Result<&'a mut T> {
    // SAFETY: per the caller's contract.
    unsafe { p.as_mut() }.ok_or(Error::Fault)
}

/// Borrows `*p`: EFAULT for NULL.
///
/// # Safety
/// `p` is NULL or valid for reads of a `T` for `'a`.
pub unsafe fn arg_ref<'a, T>(p: *const T) -> Result<&'a T> {
    // SAFETY: per the caller's contract.
    unsafe { p.as_ref() }.ok_or(Error::Fault)
}

/// Writes `v` through an optional out-pointer (NULL is skipped, as
/// libvmmapi does for optional outputs).
///
/// # Safety
/// `p` is NULL or valid for writes of a `T`.
pub unsafe fn put<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe { p.write(v) };
    }
}
