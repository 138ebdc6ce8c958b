//! Core errors to errno, and the 0 / -1 return convention.

use std::cell::Cell;

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

thread_local! {
    /// Whether this library set errno since `errno_only` began (a const
    /// initialised `Cell`: no destructor, so usable at thread exit).
    static REPORTED: Cell<bool> = const { Cell::new(false) };
}

pub fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
    REPORTED.with(|r| r.set(true));
}

/// Runs `f`, the body of a function whose only error channel is errno (it
/// returns nothing, or a value that may also be a valid answer, such as a
/// size of 0): unless `f` reports an error, the caller's errno is left as
/// it was, though a lock's futex wait on the way may have set it.
pub fn errno_only<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: __errno_location returns this thread's errno slot.
    let saved = unsafe { *libc::__errno_location() };
    REPORTED.with(|r| r.set(false));
    let v = f();
    if !REPORTED.with(Cell::get) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = saved };
    }
    v
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn errno() -> i32 {
        // SAFETY: this thread's errno slot.
        unsafe { *libc::__errno_location() }
    }

    fn clobber(e: i32) {
        // SAFETY: as above; what a futex wait inside a lock does.
        unsafe { *libc::__errno_location() = e };
    }

    /// Success leaves the caller's errno, whatever happened on the way (a
    /// futex wait's EAGAIN); an error reported by the library is kept.
    #[test]
    fn errno_only_keeps_the_callers_errno_unless_it_reports_an_error() {
        clobber(1234);
        errno_only(|| clobber(libc::EAGAIN));
        assert_eq!(errno(), 1234);
        errno_only(|| {
            set_errno(libc::EBADF);
            clobber(libc::EAGAIN);
        });
        assert_eq!(errno(), libc::EAGAIN, "the last write stands once the library reported");
        errno_only(|| fail(libc::EFAULT));
        assert_eq!(errno(), libc::EFAULT);
    }
}
