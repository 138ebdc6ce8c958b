//! Helpers shared by the unit tests.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs `f` on a thread and fails the test if it does not finish in
/// `secs` (a deadlock must fail loudly, not hang the suite).
pub fn with_watchdog<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        // A panic inside `f` drops the sender: report the panic itself.
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("sender dropped without a value"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("watchdog: deadlock or hang"),
    }
}
