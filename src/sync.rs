//! Lock facade: parking_lot normally, loom under `cfg(loom)`.
//!
//! Core modules take every lock, condition variable and atomic from here so
//! that the loom model checker can explore their interleavings. The API is
//! the small common subset of both: `lock()` returns a guard (no poisoning),
//! and `Condvar::wait` takes and returns the guard by value.

#[cfg(not(loom))]
mod imp {
    pub use parking_lot::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};
    pub use std::sync::atomic;
    pub use std::sync::Arc;
    pub use std::thread;

    /// An `Arc` from a std one (identity here; see the loom version).
    pub fn arc_from_std<T: ?Sized>(arc: Arc<T>) -> Arc<T> {
        arc
    }

    /// Runs a wait that may sleep, then gives the thread's errno back.
    /// parking_lot's futex waits leave errno at ETIMEDOUT (a timed wait
    /// that timed out, such as a HLT ended by the guest's timer), EAGAIN
    /// (the word changed before the sleep) or EINTR (a signal handler ran;
    /// parking_lot retries), although nothing failed; a C caller should
    /// find errno as it was after a call that succeeded, as after
    /// FreeBSD's ioctl. Only the sleeping paths pay for this: the locks try
    /// their uncontended fast path first.
    fn keeping_errno<R>(wait: impl FnOnce() -> R) -> R {
        let saved = nix::errno::Errno::last_raw();
        let r = wait();
        nix::errno::Errno::set_raw(saved);
        r
    }

    /// A mutex (parking_lot).
    #[derive(Debug, Default)]
    pub struct Mutex<T>(parking_lot::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Mutex(parking_lot::Mutex::new(value))
        }
        pub fn lock(&self) -> MutexGuard<'_, T> {
            match self.0.try_lock() {
                Some(g) => g,
                None => keeping_errno(|| self.0.lock()),
            }
        }
    }

    /// A reader-writer lock (parking_lot).
    #[derive(Debug, Default)]
    pub struct RwLock<T>(parking_lot::RwLock<T>);

    impl<T> RwLock<T> {
        pub fn new(value: T) -> Self {
            RwLock(parking_lot::RwLock::new(value))
        }
        pub fn read(&self) -> RwLockReadGuard<'_, T> {
            match self.0.try_read() {
                Some(g) => g,
                None => keeping_errno(|| self.0.read()),
            }
        }
        pub fn write(&self) -> RwLockWriteGuard<'_, T> {
            match self.0.try_write() {
                Some(g) => g,
                None => keeping_errno(|| self.0.write()),
            }
        }
        /// Takes the lock for writing if it is free now (tests).
        #[cfg(test)]
        pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
            self.0.try_write()
        }
    }

    /// A condition variable (parking_lot).
    #[derive(Debug, Default)]
    pub struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub fn new() -> Self {
            Condvar(parking_lot::Condvar::new())
        }
        pub fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            keeping_errno(|| self.0.wait(&mut guard));
            guard
        }
        /// Waits until notified or `deadline` passes.
        pub fn wait_until<'a, T>(
            &self,
            mut guard: MutexGuard<'a, T>,
            deadline: std::time::Instant,
        ) -> MutexGuard<'a, T> {
            let _ = keeping_errno(|| self.0.wait_until(&mut guard, deadline));
            guard
        }
        pub fn notify_all(&self) {
            self.0.notify_all();
        }
        pub fn notify_one(&self) {
            self.0.notify_one();
        }
    }
}

#[cfg(loom)]
mod imp {
    pub use loom::sync::atomic;
    pub use loom::sync::Arc;
    pub use loom::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};
    pub use loom::thread;

    /// loom's `Arc` cannot be coerced to an unsized type (`Arc<dyn Fn>`):
    /// build a std `Arc`, coerce it, then convert.
    pub fn arc_from_std<T: ?Sized>(arc: std::sync::Arc<T>) -> Arc<T> {
        Arc::from_std(arc)
    }

    /// A mutex (loom model).
    #[derive(Debug)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Mutex::new(T::default())
        }
    }

    /// A reader-writer lock (loom model).
    #[derive(Debug)]
    pub struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub fn new(value: T) -> Self {
            RwLock(loom::sync::RwLock::new(value))
        }
        pub fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap()
        }
        pub fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap()
        }
    }

    impl<T: Default> Default for RwLock<T> {
        fn default() -> Self {
            RwLock::new(T::default())
        }
    }

    /// A condition variable (loom model).
    #[derive(Debug, Default)]
    pub struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }
        pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(guard).unwrap()
        }
        /// loom has no time: a timed wait is an untimed one, so models must
        /// not rely on timeouts for progress.
        pub fn wait_until<'a, T>(
            &self,
            guard: MutexGuard<'a, T>,
            _deadline: std::time::Instant,
        ) -> MutexGuard<'a, T> {
            self.0.wait(guard).unwrap()
        }
        pub fn notify_all(&self) {
            self.0.notify_all();
        }
        pub fn notify_one(&self) {
            self.0.notify_one();
        }
    }
}

pub use imp::*;
