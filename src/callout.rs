//! A device's published callout: when its next timer event is due,
//! written under the device's mutex and read without it on every guest
//! entry, before every HLT sleep and by the callout thread. FreeBSD's
//! devices arm kernel callouts; here the run loop and the callout thread
//! ([`crate::callout_thread`]) poll this instead (see
//! `Vm::poll_device_timers`).
//!
//! Publishing also notes a deadline that moved earlier: vCPUs asleep with
//! a bound computed from the old one, and the callout thread, must be
//! woken to look again (`Vm::wake_sleepers_if_sooner`). Polls only move a deadline later or
//! clear it, so only guest or host writes set the note.

use std::time::{Duration, Instant};

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// No deadline.
const NONE: u64 = u64::MAX;

#[derive(Debug)]
pub struct PublishedCallout {
    epoch: Instant,
    /// The deadline in nanoseconds since `epoch`, or [`NONE`].
    ns: AtomicU64,
    /// Set when a publish moved the deadline earlier; taken by
    /// [`PublishedCallout::take_sooner`].
    sooner: AtomicBool,
}

impl PublishedCallout {
    /// Nothing armed; deadlines are counted from `epoch` (no earlier).
    pub fn new(epoch: Instant) -> Self {
        PublishedCallout { epoch, ns: AtomicU64::new(NONE), sooner: AtomicBool::new(false) }
    }

    /// Publishes the device's next deadline (call with its mutex held).
    pub fn publish(&self, deadline: Option<Instant>) {
        let ns = deadline.map_or(NONE, |d| {
            u64::try_from(d.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(NONE - 1)
        });
        if ns < self.ns.swap(ns, Ordering::AcqRel) {
            self.sooner.store(true, Ordering::Release);
        }
    }

    /// The published deadline, if any (lock-free).
    pub fn get(&self) -> Option<Instant> {
        let ns = self.ns.load(Ordering::Acquire);
        (ns != NONE).then(|| self.epoch + Duration::from_nanos(ns))
    }

    /// Whether the published deadline has passed at `now` (one atomic load).
    pub fn due(&self, now: Instant) -> bool {
        self.get().is_some_and(|d| d <= now)
    }

    /// Whether a publish moved the deadline earlier since the last call
    /// (cleared).
    pub fn take_sooner(&self) -> bool {
        self.sooner.swap(false, Ordering::AcqRel)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn publishes_and_notes_only_a_sooner_deadline() {
        let t0 = Instant::now();
        let c = PublishedCallout::new(t0);
        assert_eq!((c.get(), c.take_sooner()), (None, false));
        let d = t0 + Duration::from_millis(5);
        c.publish(Some(d));
        assert_eq!(c.get(), Some(d));
        assert!(c.take_sooner(), "from nothing");
        assert!(!c.take_sooner(), "taken");
        c.publish(Some(d + Duration::from_millis(1)));
        assert!(!c.take_sooner(), "later");
        c.publish(None);
        assert!(!c.take_sooner(), "cleared");
        c.publish(Some(d + Duration::from_secs(9)));
        assert!(c.take_sooner(), "armed again after being cleared");
        assert!(!c.due(d) && c.due(d + Duration::from_secs(9)));
    }

    /// A deadline too far away to count in nanoseconds from the epoch
    /// (about 584 years) stays armed at the furthest deadline that can be
    /// counted; it does not read as "no deadline".
    #[test]
    fn a_deadline_beyond_the_nanosecond_range_stays_armed() {
        let t0 = Instant::now();
        let c = PublishedCallout::new(t0);
        let far = t0 + Duration::from_secs(600 * 365 * 86_400);
        c.publish(Some(far));
        let got = c.get().expect("armed");
        assert!(got > t0 + Duration::from_secs(580 * 365 * 86_400) && got <= far, "{:?}", got - t0);
        assert!(c.take_sooner(), "from nothing");
        assert!(!c.due(t0 + Duration::from_secs(86_400)));
    }
}
