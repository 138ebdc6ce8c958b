//! The panic boundary: no panic unwinds into C.

/// Runs an `extern "C"` body; a panic becomes `-1` with errno EIO (or the
/// given value for functions that return something else).
macro_rules! ffi_boundary {
    ($body:block) => {
        $crate::ffi::panic::catch(-1, || $body)
    };
    ($on_panic:expr, $body:block) => {
        $crate::ffi::panic::catch($on_panic, || $body)
    };
}
pub(crate) use ffi_boundary;

/// `ffi_boundary!` for a function whose only error channel is errno: on
/// success the caller's errno is left alone (`errno::errno_only`).
macro_rules! ffi_boundary_errno_only {
    ($on_panic:expr, $body:block) => {
        $crate::ffi::panic::catch($on_panic, || $crate::ffi::errno::errno_only(|| $body))
    };
}
pub(crate) use ffi_boundary_errno_only;

/// Runs `f`, mapping a panic to `on_panic` with errno EIO. Inlined:
/// catching costs nothing until something panics.
#[inline(always)]
pub fn catch<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            super::errno::set_errno(libc::EIO);
            on_panic
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// A panic inside the boundary becomes the fallback value with errno
    /// EIO, and does not unwind out.
    #[test]
    fn a_panic_becomes_the_fallback_with_errno_eio() {
        let r = std::panic::catch_unwind(|| {
            nix::errno::Errno::set_raw(0);
            let v: i32 = ffi_boundary!({
                if std::hint::black_box(true) {
                    panic!("boom");
                }
                0
            });
            (v, nix::errno::Errno::last_raw())
        });
        let p: *mut u8 = std::panic::catch_unwind(|| {
            super::catch(std::ptr::null_mut(), || -> *mut u8 { panic!("boom") })
        })
        .unwrap_or(std::ptr::dangling_mut());
        assert_eq!(r.ok(), Some((-1, libc::EIO)), "the panic was caught");
        assert!(p.is_null(), "the given fallback");
    }
}
