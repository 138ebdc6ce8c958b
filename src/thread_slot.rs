//! Thread slots for single-writer counters.
//!
//! A thread that asks gets a number in `0..SLOTS` that no other live thread
//! holds, and keeps it until it exits; then the slot returns to the pool.
//! A counter split into one cell per slot is written by one thread only,
//! so an increment is a plain load and store instead of an atomic
//! read-modify-write (which costs as much as the rest of an interrupt
//! send), and the sum of the cells stays exact: FreeBSD's `counter(9)`
//! does the same per CPU. A thread that finds every slot taken, or asks
//! after giving its slot back at exit, gets `None` and counts with a
//! read-modify-write. The slot is given back by a [`ThreadExitKey`]
//! value, so also when it was taken while the thread was exiting.
//!
//! [`ThreadExitKey`]: crate::thread_exit::ThreadExitKey
//!
//! Under loom every thread gets `None`: the counters then use only the
//! atomics loom models.

use crate::sync::atomic::{AtomicU64, Ordering};

/// Slots in the pool: the device threads of a VMM process, with room to
/// spare. Cells of later threads' counters fall back to atomics.
pub const SLOTS: usize = 64;

/// This thread's slot, if it has one (assigned at its first call).
#[cfg(not(loom))]
#[inline(always)]
pub fn current() -> Option<usize> {
    let slot = imp::SLOT.with(|s| s.get());
    if slot < SLOTS {
        Some(slot)
    } else if slot == imp::UNASSIGNED {
        imp::claim()
    } else {
        None
    }
}

#[cfg(loom)]
#[inline(always)]
pub fn current() -> Option<usize> {
    None
}

/// A counter bumped on hot paths by many threads: one cell per slot,
/// written only by the slot's holder, so [`add`](Self::add) is a plain
/// load and store; threads without a slot share one atomic cell. The sum
/// is exact once the adding threads are synchronised with the reader.
#[derive(Debug)]
pub struct SplitCounter {
    /// One per slot (none under loom, where no thread has a slot).
    cells: Box<[SlotCell]>,
    /// Threads without a slot.
    shared: AtomicU64,
}

/// A slot's cell, alone on its cache line so that threads do not write
/// each other's lines.
#[derive(Debug, Default)]
#[repr(align(64))]
struct SlotCell(AtomicU64);

impl Default for SplitCounter {
    fn default() -> Self {
        let slots = if cfg!(loom) { 0 } else { SLOTS };
        SplitCounter { cells: (0..slots).map(|_| SlotCell::default()).collect(), shared: AtomicU64::new(0) }
    }
}

impl SplitCounter {
    /// Adds `n`.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        match current() {
            Some(slot) => {
                // Only this thread writes this cell while it holds the slot.
                let cell = &self.cells[slot].0;
                cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
            }
            None => {
                self.shared.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The sum of everything added (wrapping).
    pub fn sum(&self) -> u64 {
        self.cells.iter().fold(self.shared.load(Ordering::Relaxed), |sum, c| sum.wrapping_add(c.0.load(Ordering::Relaxed)))
    }
}

#[cfg(not(loom))]
mod imp {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::SLOTS;
    use crate::thread_exit::ThreadExitKey;

    pub(super) const UNASSIGNED: usize = usize::MAX;
    /// No slot: the pool was empty, or the thread gave its slot back at
    /// exit (later adds, by other exit-time code, use the shared cell).
    const NO_SLOT: usize = usize::MAX - 1;

    /// Bit `i` set: slot `i` is held. Taking a slot acquires and giving it
    /// back releases, so a slot's next holder sees every store its last
    /// holder made to the slot's cells: one writer at a time.
    static TAKEN: AtomicU64 = AtomicU64::new(0);

    const _: () = assert!(SLOTS == u64::BITS as usize);

    thread_local! {
        // No destructor, so reading it is one thread-pointer offset and it
        // stays readable while the thread exits.
        pub(super) static SLOT: Cell<usize> = const { Cell::new(UNASSIGNED) };
    }

    /// The thread's slot, given back when the thread exits.
    struct Held(usize);

    impl Drop for Held {
        fn drop(&mut self) {
            SLOT.with(|s| s.set(NO_SLOT));
            TAKEN.fetch_and(!(1 << self.0), Ordering::Release);
        }
    }

    static HELD: ThreadExitKey<Held> = ThreadExitKey::new();

    /// Takes a free slot for this thread.
    #[cold]
    #[inline(never)]
    pub(super) fn claim() -> Option<usize> {
        let slot = take()?;
        // Held from here: given back at thread exit, or (dropped unstored)
        // now if the key cannot hold it.
        let held = Held(slot);
        HELD.with_or_init(move || held, |_| ())?;
        SLOT.with(|s| s.set(slot));
        Some(slot)
    }

    /// A free slot, marked taken; None (and no slot for this thread from
    /// now on) if there is none.
    fn take() -> Option<usize> {
        let mut taken = TAKEN.load(Ordering::Relaxed);
        loop {
            if taken == u64::MAX {
                SLOT.with(|s| s.set(NO_SLOT));
                return None;
            }
            let slot = (!taken).trailing_zeros() as usize;
            match TAKEN.compare_exchange_weak(taken, taken | 1 << slot, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(slot),
                Err(now) => taken = now,
            }
        }
    }

    /// Slots held now (tests).
    #[cfg(test)]
    pub(super) fn taken() -> u64 {
        TAKEN.load(Ordering::SeqCst)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier, Condvar, Mutex};

    /// Held by the tests that need free slots, and by the one that takes
    /// them all.
    static POOL: Mutex<()> = Mutex::new(());

    fn pool() -> std::sync::MutexGuard<'static, ()> {
        POOL.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn live_threads_hold_distinct_slots() {
        let _pool = pool();
        const THREADS: usize = 8;
        let barrier = Barrier::new(THREADS);
        let slots: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        let slot = current().expect("a slot");
                        assert_eq!(current(), Some(slot), "kept");
                        // All hold their slots at once here.
                        barrier.wait();
                        slot
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut distinct = slots.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), THREADS, "slots {slots:?}");
    }

    #[test]
    fn a_split_counter_sums_every_threads_adds() {
        const THREADS: u64 = 4;
        const ADDS: u64 = 10_000;
        let c = SplitCounter::default();
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| (0..ADDS).for_each(|_| c.add(1)));
            }
        });
        c.add(5);
        assert_eq!(c.sum(), THREADS * ADDS + 5);
    }

    /// Adds 1 to `EXIT_COUNTER` when dropped at thread exit, counting in
    /// `UNHELD_SLOT_ADDS` an add made through a slot the pool no longer
    /// marks as held (given back, not yet retaken).
    struct AddAtExit;

    impl Drop for AddAtExit {
        fn drop(&mut self) {
            if let Some(slot) = current() {
                if imp::taken() & 1 << slot == 0 {
                    UNHELD_SLOT_ADDS.fetch_add(1, Ordering::Relaxed);
                }
            }
            EXIT_COUNTER.get().unwrap().add(1);
        }
    }

    static UNHELD_SLOT_ADDS: AtomicU64 = AtomicU64::new(0);

    static EXIT_COUNTER: std::sync::OnceLock<SplitCounter> = std::sync::OnceLock::new();

    thread_local! {
        // Dropped with the Rust thread-locals, before any POSIX key value.
        static ADD_AT_EXIT_EARLY: AddAtExit = const { AddAtExit };
    }

    /// Dropped in the POSIX key phase after the slot's holder (this key is
    /// made after the slot pool's; glibc runs keys in the order made).
    static ADD_AT_EXIT_LATE: crate::thread_exit::ThreadExitKey<AddAtExit> =
        crate::thread_exit::ThreadExitKey::new();

    fn add_at_exit_late() {
        ADD_AT_EXIT_LATE.with_or_init(|| AddAtExit, |_| ());
    }

    #[test]
    fn adds_made_while_a_thread_exits_are_counted() {
        let _pool = pool();
        // Adds made as a thread exits: with its slot still held (a Rust
        // thread-local's destructor), after the slot was given back, and
        // as the first add of a thread already exiting (a later POSIX key's
        // destructor, as a C library's cleanup would). None may go through
        // a slot the thread gave back (another thread may hold it: two
        // writers, lost adds) or be lost. Each thread adds 1 while running
        // and 1 at exit, and as it exits, adders take the slots it frees.
        let c = EXIT_COUNTER.get_or_init(SplitCounter::default);
        assert!(current().is_some(), "the slot pool's key is made first");
        const ROUNDS: u64 = 100;
        const ADDERS: usize = 2;
        const ADDS: u64 = 5_000;
        for _ in 0..ROUNDS {
            let exiting = Arc::new(Barrier::new(3 + ADDERS));
            let mut threads = Vec::new();
            let mut spawn = |f: fn(&SplitCounter, &Barrier)| {
                let exiting = exiting.clone();
                threads.push(std::thread::spawn(move || f(c, &exiting)));
            };
            // Slot still held at the exit-time add.
            spawn(|c, exiting| {
                ADD_AT_EXIT_EARLY.with(|_| ());
                c.add(1);
                exiting.wait();
            });
            // Slot given back before the exit-time add.
            spawn(|c, exiting| {
                c.add(1);
                add_at_exit_late();
                exiting.wait();
            });
            // No slot until the exit-time add asks for one.
            spawn(|c, exiting| {
                add_at_exit_late();
                c.shared.fetch_add(1, Ordering::Relaxed);
                exiting.wait();
            });
            for _ in 0..ADDERS {
                spawn(|c, exiting| {
                    exiting.wait();
                    (0..ADDS).for_each(|_| c.add(1));
                });
            }
            // A join (unlike the end of a thread scope) also waits for the
            // thread's exit-time drops.
            threads.into_iter().for_each(|t| t.join().unwrap());
        }
        assert_eq!(UNHELD_SLOT_ADDS.load(Ordering::Relaxed), 0, "adds through a given-back slot");
        // The slots taken at exit were given back too: 100 kept would have
        // emptied the pool (other tests' threads hold a few meanwhile).
        assert_ne!(imp::taken(), u64::MAX, "slots taken while exiting were kept");
        assert_eq!(c.sum(), ROUNDS * (3 * 2 + ADDERS as u64 * ADDS));
    }

    #[test]
    fn exited_threads_give_their_slots_back() {
        let _pool = pool();
        // Far more threads than slots, one after another: each finds one
        // only if those before gave theirs back (other tests' threads hold
        // a few meanwhile).
        for i in 0..4 * SLOTS {
            let slot = std::thread::spawn(current).join().unwrap();
            assert!(slot.is_some(), "thread {i} found no slot (taken: {:#x})", imp::taken());
        }
    }

    /// More live threads than slots: those that find the pool full get
    /// None (not a slot past the last), and keep None once slots are
    /// given back, counting through the shared cell from then on.
    #[test]
    fn a_thread_that_finds_the_pool_full_has_no_slot_for_good() {
        let _pool = pool();
        crate::test_util::with_watchdog(60, || {
            const THREADS: usize = SLOTS + 8;
            let asked = Arc::new(Barrier::new(THREADS + 1));
            let freed = Arc::new((Mutex::new(false), Condvar::new()));
            let (tx, rx) = std::sync::mpsc::channel();
            let threads: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (asked, freed, tx) = (asked.clone(), freed.clone(), tx.clone());
                    std::thread::spawn(move || {
                        let first = std::panic::catch_unwind(current).ok();
                        tx.send((i, first)).unwrap();
                        asked.wait();
                        if first != Some(None) {
                            return None;
                        }
                        // Without a slot: ask again once the holders are gone.
                        let (lock, cv) = &*freed;
                        drop(cv.wait_while(lock.lock().unwrap(), |f| !*f).unwrap());
                        Some(current())
                    })
                })
                .collect();
            let mut first: Vec<_> = (0..THREADS).map(|_| rx.recv().unwrap()).collect();
            first.sort_unstable();
            asked.wait();
            assert!(first.iter().all(|(_, f)| f.is_some()), "current() panicked: {first:?}");
            let mut held: Vec<usize> = first.iter().filter_map(|(_, f)| f.flatten()).collect();
            assert!(held.iter().all(|s| *s < SLOTS), "slots {held:?}");
            held.sort_unstable();
            held.dedup();
            let slotless: Vec<usize> = first.iter().filter(|(_, f)| *f == Some(None)).map(|(i, _)| *i).collect();
            assert_eq!(held.len() + slotless.len(), THREADS, "distinct slots");
            assert!(slotless.len() >= THREADS - SLOTS, "{} without a slot", slotless.len());
            let mut threads: Vec<_> = threads.into_iter().map(Some).collect();
            // The holders exit (a join waits for their exit-time drops),
            // giving their slots back.
            for (i, t) in threads.iter_mut().enumerate() {
                if !slotless.contains(&i) {
                    assert_eq!(t.take().unwrap().join().unwrap(), None);
                }
            }
            *freed.0.lock().unwrap() = true;
            freed.1.notify_all();
            for t in threads.into_iter().flatten() {
                assert_eq!(t.join().unwrap(), Some(None), "a slot after the pool was full");
            }
        });
    }
}
