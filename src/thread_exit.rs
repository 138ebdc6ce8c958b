//! Per-thread values dropped when their thread exits, even when they are
//! first made while the thread is exiting.
//!
//! `thread_local!` values with a destructor do not do that: under glibc a
//! thread runs its Rust (and C++) thread-local destructors first and its
//! POSIX thread-specific-key destructors after them, and a thread-local
//! destructor registered during that second phase never runs. A C device
//! model whose cleanup (a pthread key destructor) is the thread's first
//! call into the library would then leak what the call set up: a counter
//! slot held forever, or a cached `Arc<Vm>` keeping a destroyed VM and its
//! guest memory alive. A POSIX key, which this module wraps, is re-run by
//! glibc for values set during the key-destructor phase (up to
//! PTHREAD_DESTRUCTOR_ITERATIONS rounds), so such a value is dropped too.
//!
//! Values are reached only off the hot paths (a slot claim, a handle-cache
//! miss): `pthread_getspecific` is a function call.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::OnceLock;

/// A POSIX thread-specific key owning one boxed `T` per thread.
pub struct ThreadExitKey<T: 'static> {
    /// Created at first use; None if the process has no key left.
    key: OnceLock<Option<libc::pthread_key_t>>,
    _values: PhantomData<fn() -> T>,
}

impl<T: 'static> Default for ThreadExitKey<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: 'static> ThreadExitKey<T> {
    pub const fn new() -> Self {
        ThreadExitKey { key: OnceLock::new(), _values: PhantomData }
    }

    fn key(&self) -> Option<libc::pthread_key_t> {
        // Made at first use (a static cannot run pthread_key_create).
        *self.key.get_or_init(|| {
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: `key` is writable; `drop_value::<T>` matches the
            // destructor signature and frees what `with_or_init` stores.
            (unsafe { libc::pthread_key_create(&mut key, Some(drop_value::<T>)) } == 0).then_some(key)
        })
    }

    /// Runs `f` on this thread's value, if it has one.
    pub fn with_existing<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let key = self.key()?;
        // SAFETY: the key's values are null or a `Box<T>` this thread set;
        // the box is freed only by the key's destructor, which runs after
        // this thread's code (it cannot run inside this call).
        let value = unsafe { libc::pthread_getspecific(key) }.cast::<T>();
        // SAFETY: see above.
        (!value.is_null()).then(|| f(unsafe { &*value }))
    }

    /// Runs `f` on this thread's value, made by `init` if there is none;
    /// None (without running `init`'s value through `f`) if the key or the
    /// value cannot be set up.
    pub fn with_or_init<R>(&self, init: impl FnOnce() -> T, f: impl FnOnce(&T) -> R) -> Option<R> {
        let key = self.key()?;
        // SAFETY: as in `with_existing`.
        let mut value = unsafe { libc::pthread_getspecific(key) }.cast::<T>();
        if value.is_null() {
            let boxed = Box::into_raw(Box::new(init()));
            // SAFETY: a valid key; the key's destructor frees the box.
            if unsafe { libc::pthread_setspecific(key, boxed.cast::<c_void>()) } != 0 {
                // SAFETY: not stored anywhere: still ours.
                drop(unsafe { Box::from_raw(boxed) });
                return None;
            }
            value = boxed;
        }
        // SAFETY: as in `with_existing`.
        Some(f(unsafe { &*value }))
    }
}

/// The key's destructor: drops the thread's value. A panic must not
/// unwind into libc; the value is then simply gone.
unsafe extern "C" fn drop_value<T>(value: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: a non-null value of this key is a `Box<T>` set by
        // `with_or_init`; libc hands it over once, having cleared it.
        drop(unsafe { Box::from_raw(value.cast::<T>()) });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DROPPED: AtomicUsize = AtomicUsize::new(0);

    struct Counted(Cell<u32>);

    impl Drop for Counted {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }

    static KEY: ThreadExitKey<Counted> = ThreadExitKey::new();

    #[test]
    fn each_thread_has_its_own_value_dropped_at_exit() {
        let before = DROPPED.load(Ordering::SeqCst);
        let seen: Vec<u32> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    assert_eq!(KEY.with_existing(|c| c.0.get()), None, "none yet");
                    KEY.with_or_init(|| Counted(Cell::new(i)), |c| c.0.set(c.0.get() + 10));
                    KEY.with_or_init(|| unreachable!("made already"), |c| c.0.get()).unwrap()
                })
                .join()
                .unwrap()
            })
            .collect();
        assert_eq!(seen, [10, 11, 12, 13]);
        assert_eq!(DROPPED.load(Ordering::SeqCst) - before, 4, "one drop per thread at exit");
    }
}
