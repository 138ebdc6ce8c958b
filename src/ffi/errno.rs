//! Core errors to errno, and the 0 / -1 return convention.

use crate::error::{Error, Result};

/// The errno for a core error.
pub fn errno_of(e: Error) -> i32 {
    match e {
        Error::Inval => libc::EINVAL,
        Error::Busy => libc::EBUSY,
        Error::NoEnt => libc::ENOENT,
        Error::Exist => libc::EEXIST,
        Error::Already => libc::EALREADY,
        Error::Fault => libc::EFAULT,
        Error::TooBig => libc::E2BIG,
        Error::Range => libc::ERANGE,
        Error::NoMem => libc::ENOMEM,
        Error::NoSpc => libc::ENOSPC,
        Error::Destroyed => libc::EBADF,
        Error::NameTooLong => libc::ENAMETOOLONG,
        Error::NoDev => libc::ENODEV,
        Error::Intr => libc::EINTR,
        Error::Io => libc::EIO,
        Error::Deadlock => libc::EDEADLK,
    }
}

pub fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// Maps a result to the ioctl convention: 0, or -1 with errno.
#[inline(always)]
pub fn to_rc(r: Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => fail_with(e),
    }
}

/// Sets errno for `e` and returns -1. Out of line: errors are off the
/// hot paths this is inlined into.
#[cold]
#[inline(never)]
pub fn fail_with(e: Error) -> i32 {
    fail(errno_of(e))
}

/// For functions with no error return (a size, a pointer): the value, or
/// `fallback` with errno set for the error.
pub fn or_errno<T>(r: Result<T>, fallback: T) -> T {
    r.unwrap_or_else(|e| {
        set_errno(errno_of(e));
        fallback
    })
}

/// Sets errno and returns -1.
pub fn fail(errno: i32) -> i32 {
    set_errno(errno);
    -1
}

/// Sets errno and returns it: libvmmapi's calls that return an errno
/// value themselves (`vm_copy_setup`'s EFAULT) rather than -1.
pub fn fail_as_value(errno: i32) -> i32 {
    set_errno(errno);
    errno
}
