//! The virtual 8254 PIT (FreeBSD 14 `vatpit.c`): three 16-bit counters at
//! 1.193182 MHz behind ports 0x40-0x43, channel 2's output on port 0x61,
//! and channel 0's interrupt: ISA IRQ 0, pulsed on the 8259 and on IOAPIC
//! pin 2 (where bhyve's ACPI tables route it).
//!
//! As FreeBSD: only modes 0, 2, 3 and 4 in binary, accessed LSB then MSB
//! (16-bit) or latched; every mode counts down from the initial count and
//! wraps (mode 3 does not count by two); channel 0 interrupts once per
//! count written, and again every period only in mode 2; port 0x61 shows
//! only channel 2's output, which is set only in mode 0 after the count
//! ran out (the gate bit is not emulated); a channel read before it was
//! ever loaded starts at the 100 Hz count. One difference: a count of 0
//! (65536 on hardware, 65535 in FreeBSD) re-arms channel 0 from the write
//! as FreeBSD's current code does; FreeBSD 14 leaves any pending callout
//! as it was (and arms nothing if none was).
//!
//! # Lock order
//!
//! One mutex, `Vatpit::state`, a leaf: IRQ 0 is pulsed by the caller after
//! it is released (an edge, so the order of pulses does not matter).
//!
//! # Time
//!
//! Channel 0's callout is a deadline polled on guest entry and bounding
//! HLT sleeps, like the RTC's and HPET's. Every function takes the current
//! time, so tests drive it.

#[cfg(all(test, not(loom)))]
mod tests;

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::callout::PublishedCallout;
use crate::sync::Mutex;

/// Input clock, Hz.
pub const PIT_FREQ: u64 = 1_193_182;
/// Counter ports (channels 0-2) and the mode/command port.
pub const IO_TIMER_CNTR0: u16 = 0x40;
pub const IO_TIMER_MODE: u16 = 0x43;
/// NMI status and control: bit 5 is channel 2's output.
pub const NMISC_PORT: u16 = 0x61;
/// The IOAPIC pin ISA IRQ 0 is routed to (bhyve's MADT override).
pub const PIT_IOAPIC_PIN: i32 = 2;

const SEL_MASK: u8 = 0xc0;
const SEL_READBACK: u8 = 0xc0;
const RW_MASK: u8 = 0x30;
const RW_LATCH: u8 = 0x00;
const RW_16BIT: u8 = 0x30;
/// Mode bits with the BCD bit (a BCD mode is refused).
const MODE_MASK: u8 = 0x0f;
pub const MODE_INTTC: u8 = 0x00;
pub const MODE_RATEGEN: u8 = 0x04;
pub const MODE_SQWAVE: u8 = 0x06;
pub const MODE_SWSTROBE: u8 = 0x08;
/// Read-back: latch count / status (active low), which channels.
const RB_LCTR: u8 = 0x20;
const RB_LSTATUS: u8 = 0x10;
/// Status byte: output and null count.
pub const STS_OUT: u8 = 0x80;
pub const STS_NULLCNT: u8 = 0x40;
/// Port 0x61: channel 2's output.
pub const NMISC_TMR2_OUT: u8 = 0x20;
/// The count a channel read before being loaded starts with (100 Hz).
const DEFAULT_COUNT: u16 = ((PIT_FREQ + 50) / 100) as u16;

#[derive(Debug, Clone, Copy)]
struct Channel {
    mode: u8,
    /// The count loaded (0: never loaded).
    initial: u16,
    /// When it was loaded.
    loaded: Instant,
    /// Count bytes written so far (LSB first).
    cr: [u8; 2],
    crbyte: u8,
    /// Latched count: `ol[1]` (LSB) is read first; `olbyte` bytes remain.
    ol: [u8; 2],
    olbyte: u8,
    /// The next free-running read returns the MSB.
    frbyte: u8,
    /// A latched status byte is pending.
    slatched: bool,
    status: u8,
    /// Channel 0's callout: its target (kept when it fires, the base of the
    /// next period)...
    callout_at: Instant,
    /// ...and whether it is armed.
    armed: bool,
}

#[derive(Debug)]
struct PitState {
    channels: [Channel; 3],
}

/// The PIT of one VM.
#[derive(Debug)]
pub struct Vatpit {
    /// vPIT mutex. Protects: the three channels. Rank: a leaf.
    state: Mutex<PitState>,
    /// Channel 0's callout, published under the mutex.
    callout: PublishedCallout,
}

/// Input-clock ticks in `d`.
fn ticks(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(PIT_FREQ) / 1_000_000_000) as u64
}

/// The time `n` ticks take.
fn tick_duration(n: u64) -> Duration {
    Duration::from_nanos((u128::from(n) * 1_000_000_000 / u128::from(PIT_FREQ)) as u64)
}

impl Channel {
    fn new(now: Instant) -> Self {
        Channel {
            mode: MODE_INTTC,
            initial: 0,
            loaded: now,
            cr: [0; 2],
            crbyte: 0,
            ol: [0; 2],
            olbyte: 0,
            frbyte: 0,
            slatched: false,
            status: 0,
            callout_at: now,
            armed: false,
        }
    }

    fn elapsed_ticks(&self, now: Instant) -> u64 {
        ticks(now.saturating_duration_since(self.loaded))
    }

    /// `pit_update_counter`: the count now (1..=initial, counting down and
    /// wrapping), latched if `latch` and no latch is pending.
    fn update_counter(&mut self, latch: bool, now: Instant) -> u16 {
        if latch && self.olbyte != 0 {
            return 0;
        }
        if self.initial == 0 {
            // Read before ever being loaded: count as at 100 Hz from now.
            self.initial = DEFAULT_COUNT;
            self.loaded = now;
            self.status &= !STS_NULLCNT;
        }
        let initial = u64::from(self.initial);
        let lval = (initial - self.elapsed_ticks(now) % initial) as u16;
        if latch {
            self.olbyte = 2;
            self.ol = [(lval >> 8) as u8, lval as u8];
        }
        lval
    }

    /// `vatpit_get_out`: the output, modelled for mode 0 only (high once
    /// the count ran out).
    fn out(&self, now: Instant) -> bool {
        self.mode == MODE_INTTC && self.elapsed_ticks(now) >= u64::from(self.initial)
    }
}

impl PitState {
    /// `pit_timer_start_cntr0`: arm channel 0 one count after its last
    /// target, or after now if that is already past (no catching up).
    fn start_cntr0(&mut self, now: Instant) {
        let c = &mut self.channels[0];
        if c.initial == 0 {
            return;
        }
        let period = tick_duration(u64::from(c.initial));
        c.callout_at += period;
        if c.callout_at < now {
            c.callout_at = now + period;
        }
        c.armed = true;
    }

    /// A write to the mode port (`vatpit_update_mode`).
    fn write_mode(&mut self, val: u8, now: Instant) -> Result<()> {
        let sel = val & SEL_MASK;
        if sel == SEL_READBACK {
            for n in (0..3).filter(|n| val & (2 << n) != 0) {
                let c = &mut self.channels[n];
                if val & RB_LCTR == 0 && c.olbyte == 0 {
                    c.update_counter(true, now);
                }
                if val & RB_LSTATUS == 0 && !c.slatched {
                    c.slatched = true;
                    if c.out(now) {
                        c.status |= STS_OUT;
                    } else {
                        c.status &= !STS_OUT;
                    }
                }
            }
            return Ok(());
        }
        let rw = val & RW_MASK;
        let mode = val & MODE_MASK;
        if rw != RW_LATCH && rw != RW_16BIT {
            return Err(Error::Io);
        }
        if rw != RW_LATCH && !matches!(mode, MODE_INTTC | MODE_RATEGEN | MODE_SQWAVE | MODE_SWSTROBE) {
            return Err(Error::Io);
        }
        let c = &mut self.channels[usize::from(sel >> 6)];
        if rw == RW_LATCH {
            c.update_counter(true, now);
        } else {
            c.mode = mode;
            c.olbyte = 0;
            c.status |= STS_NULLCNT;
        }
        Ok(())
    }

    fn read_counter(&mut self, n: usize, now: Instant) -> u8 {
        let c = &mut self.channels[n];
        if c.slatched {
            c.slatched = false;
            let s = c.status;
            c.status = 0;
            return s;
        }
        if c.olbyte == 0 {
            let count = c.update_counter(false, now);
            let byte = if c.frbyte == 0 { count as u8 } else { (count >> 8) as u8 };
            c.frbyte ^= 1;
            return byte;
        }
        c.olbyte -= 1;
        c.ol[usize::from(c.olbyte)]
    }

    fn write_counter(&mut self, n: usize, val: u8, now: Instant) {
        let c = &mut self.channels[n];
        c.cr[usize::from(c.crbyte)] = val;
        c.crbyte += 1;
        if c.crbyte < 2 {
            return;
        }
        c.status &= !STS_NULLCNT;
        c.frbyte = 0;
        c.crbyte = 0;
        c.initial = u16::from_le_bytes(c.cr);
        if c.initial == 0 {
            c.initial = 0xffff;
        }
        c.loaded = now;
        if n == 0 {
            c.callout_at = now;
            self.start_cntr0(now);
        }
    }

    /// Channel 0's callout (`vatpit_callout_handler`): true when IRQ 0 is
    /// to be pulsed. Mode 2 re-arms; the others fire once per count.
    fn fire_due(&mut self, now: Instant) -> bool {
        let c = &mut self.channels[0];
        if !c.armed || c.callout_at > now {
            return false;
        }
        c.armed = false;
        if c.mode == MODE_RATEGEN {
            self.start_cntr0(now);
        }
        true
    }
}

impl Vatpit {
    /// `vatpit_init`: every channel mode 0, never loaded, nothing armed.
    pub fn new(now: Instant) -> Self {
        Vatpit {
            state: Mutex::new(PitState { channels: [Channel::new(now); 3] }),
            callout: PublishedCallout::new(now),
        }
    }

    /// Runs `f` on the state, then publishes channel 0's callout.
    fn with<T>(&self, f: impl FnOnce(&mut PitState) -> T) -> T {
        let mut st = self.state.lock();
        let v = f(&mut st);
        let c = &st.channels[0];
        self.callout.publish(c.armed.then_some(c.callout_at));
        v
    }

    /// The published callout: channel 0's, and whether it moved earlier.
    pub fn callout(&self) -> &PublishedCallout {
        &self.callout
    }

    /// Whether the PIT emulates `port`.
    pub fn is_pit_port(port: u16) -> bool {
        (IO_TIMER_CNTR0..=IO_TIMER_MODE).contains(&port) || port == NMISC_PORT
    }

    /// A guest `in` from one of the PIT's ports. Io (VM_RUN fails with
    /// EIO, as FreeBSD) for a wide access to 0x40-0x43 or a read of the
    /// mode port.
    pub fn port_in(&self, port: u16, bytes: u8, now: Instant) -> Result<u8> {
        if port == NMISC_PORT {
            let out = self.with(|st| st.channels[2].out(now));
            return Ok(if out { NMISC_TMR2_OUT } else { 0 });
        }
        if bytes != 1 || port == IO_TIMER_MODE || !Self::is_pit_port(port) {
            return Err(Error::Io);
        }
        Ok(self.with(|st| st.read_counter(usize::from(port - IO_TIMER_CNTR0), now)))
    }

    /// A guest `out` to one of the PIT's ports (port 0x61 writes are
    /// ignored). Io for a wide access to 0x40-0x43, an LSB- or MSB-only
    /// access mode, or a mode other than 0, 2, 3 and 4 in binary.
    pub fn port_out(&self, port: u16, bytes: u8, val: u8, now: Instant) -> Result<()> {
        if port == NMISC_PORT {
            return Ok(());
        }
        if bytes != 1 || !Self::is_pit_port(port) {
            return Err(Error::Io);
        }
        self.with(|st| {
            if port == IO_TIMER_MODE {
                st.write_mode(val, now)
            } else {
                st.write_counter(usize::from(port - IO_TIMER_CNTR0), val, now);
                Ok(())
            }
        })
    }

    /// Fires channel 0's callout if due: true when IRQ 0 must be pulsed
    /// (one atomic load when nothing is due).
    #[must_use = "IRQ 0 must be pulsed when this is true"]
    pub fn poll(&self, now: Instant) -> bool {
        if !self.callout.due(now) {
            return false;
        }
        self.with(|st| st.fire_due(now))
    }

    /// VM_REINIT: a new PIT (FreeBSD frees and re-creates it).
    pub fn reset(&self, now: Instant) {
        self.with(|st| *st = PitState { channels: [Channel::new(now); 3] });
    }
}
