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
        Error::Perm => libc::EPERM,
    }
}

thread_local! {
    /// The last errno this library reported since the innermost
    /// `errno_only` began (a const initialised `Cell`: no destructor, so
    /// usable at thread exit).
    static REPORTED: Cell<Option<i32>> = const { Cell::new(None) };
}

// nix finds this thread's errno slot on every host (`__errno_location`
// on Linux, `__error` on FreeBSD and macOS).
fn read_errno() -> i32 {
    nix::errno::Errno::last_raw()
}

fn write_errno(e: i32) {
    nix::errno::Errno::set_raw(e);
}

pub fn set_errno(e: i32) {
    write_errno(e);
    REPORTED.with(|r| r.set(Some(e)));
}

/// Runs `f`, the body of a function whose only error channel is errno (it
/// returns nothing, or a value that may also be a valid answer, such as a
/// size of 0). On the way out errno is what `f` last reported, or else the
/// caller's, whatever a lock's futex wait wrote meanwhile. Nests: an
/// error reported inside stays reported for the enclosing call.
pub fn errno_only<T>(f: impl FnOnce() -> T) -> T {
    let saved = read_errno();
    let outer = REPORTED.with(|r| r.replace(None));
    let v = f();
    let reported = REPORTED.with(|r| r.replace(None));
    write_errno(reported.unwrap_or(saved));
    REPORTED.with(|r| r.set(reported.or(outer)));
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
        read_errno()
    }

    /// What a futex wait inside a lock does.
    fn clobber(e: i32) {
        write_errno(e);
    }

    /// Each core error is reported as FreeBSD's errno for it. The C tests
    /// see most of these; not E2BIG (a pin asserted 2^31 times), ENODEV
    /// (only a Rust-API VM without a simulated guest) or EINTR (a
    /// rendezvous a racing destroy ends).
    #[test]
    fn each_core_error_is_its_freebsd_errno() {
        let expected = [
            (Error::Inval, libc::EINVAL),
            (Error::Busy, libc::EBUSY),
            (Error::NoEnt, libc::ENOENT),
            (Error::Exist, libc::EEXIST),
            (Error::Already, libc::EALREADY),
            (Error::Fault, libc::EFAULT),
            (Error::TooBig, libc::E2BIG),
            (Error::Range, libc::ERANGE),
            (Error::NoMem, libc::ENOMEM),
            (Error::NoSpc, libc::ENOSPC),
            (Error::Destroyed, libc::EBADF),
            (Error::NameTooLong, libc::ENAMETOOLONG),
            (Error::NoDev, libc::ENODEV),
            (Error::Intr, libc::EINTR),
            (Error::Io, libc::EIO),
            (Error::Deadlock, libc::EDEADLK),
            (Error::Perm, libc::EPERM),
        ];
        for (e, errno) in expected {
            assert_eq!(errno_of(e), errno, "{e:?}");
        }
    }

    /// Success leaves the caller's errno, whatever happened on the way (a
    /// futex wait's EAGAIN); an error reported by the library is what
    /// errno holds at the end, also if a futex wait wrote after it, and
    /// also through a nested call.
    #[test]
    fn errno_only_keeps_the_callers_errno_unless_it_reports_an_error() {
        clobber(1234);
        errno_only(|| clobber(libc::EAGAIN));
        assert_eq!(errno(), 1234);
        errno_only(|| {
            set_errno(libc::EBADF);
            clobber(libc::EAGAIN);
        });
        assert_eq!(errno(), libc::EBADF);
        errno_only(|| fail(libc::EFAULT));
        assert_eq!(errno(), libc::EFAULT);
        clobber(1234);
        errno_only(|| {
            set_errno(libc::EINVAL);
            errno_only(|| clobber(libc::EAGAIN));
        });
        assert_eq!(errno(), libc::EINVAL, "an inner success keeps the outer error");
        errno_only(|| errno_only(|| set_errno(libc::ENOENT)));
        assert_eq!(errno(), libc::ENOENT, "an inner error is the outer call's");
        clobber(1234);
        errno_only(|| errno_only(|| clobber(libc::EAGAIN)));
        assert_eq!(errno(), 1234);
    }
}
