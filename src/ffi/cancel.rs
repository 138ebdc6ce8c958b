//! Thread cancellation kept out of the library's frames. A pending
//! `pthread_cancel` acted on at a cancellation point inside a call (a C
//! guest callback's printf, the join of a VM's timer thread in
//! `vm_destroy`) would unwind through Rust frames that hold locks, or into
//! the panic boundary, and abort the process. Where a call may reach one,
//! cancellation is disabled; it takes effect at the thread's next
//! cancellation point after the call returns.

use std::ffi::c_int;
use std::ptr;

/// Runs `f` with this thread's cancellation disabled, and puts the
/// caller's state back afterwards, also if `f` unwinds.
pub(crate) fn without_cancellation<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(c_int);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: sets this thread's state; not a cancellation point.
            unsafe { pthread_setcancelstate(self.0, ptr::null_mut()) };
        }
    }
    let mut old = PTHREAD_CANCEL_ENABLE;
    // SAFETY: as above; the old state is written to a local.
    unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
    let _restore = Restore(old);
    f()
}

// POSIX, but not in the libc crate for Linux or FreeBSD. Their values
// differ by host: glibc, musl and FreeBSD number the states ENABLE 0,
// DISABLE 1; Apple's the other way round (the libc crate has those).
#[cfg(not(target_vendor = "apple"))]
const PTHREAD_CANCEL_ENABLE: c_int = 0;
#[cfg(not(target_vendor = "apple"))]
const PTHREAD_CANCEL_DISABLE: c_int = 1;
#[cfg(target_vendor = "apple")]
use libc::{PTHREAD_CANCEL_DISABLE, PTHREAD_CANCEL_ENABLE};
extern "C" {
    fn pthread_setcancelstate(state: c_int, oldstate: *mut c_int) -> c_int;
}
