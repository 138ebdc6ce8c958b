//! Checked conversion of C string arguments.

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
