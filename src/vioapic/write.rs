//! Guest writes through the MMIO window, and the redirection-table write
//! path of `semantics.md` section 1:
//!
//! 1. Take the write lock, then the table mutex. Work out the new RTE half
//!    (read-only bits kept; remote IRR cleared if now edge) and the TMR
//!    changes of step 2; if step 4 will wait for other vCPUs, report that
//!    wait (`IoapicBus::before_block_runs`), which may refuse the write
//!    (EDEADLK, nothing changed). Update the RTE half.
//! 2. If the entry was or is level-triggered fixed/lowest-priority and its
//!    vector, destination or trigger/delivery/destination mode changed,
//!    work out per vCPU which TMR bits to clear (old vector, unless another
//!    level pin aimed at that vCPU still uses it) and set (new vector).
//!    Publish the new entry to the lock-free senders, marked in flux if
//!    there are TMR changes (sends wait until step 5); if not, go to 5.
//! 3. Drop the table mutex (keep the write lock).
//! 4. Per target other than the writer: block_run, stage, unblock_run. The
//!    writer stages its own change directly. Retake the table mutex.
//! 5. The pin leaves flux. A level entry is sent if its pin is asserted
//!    now (whatever was held back: the line is what counts); an edge entry
//!    if a send was held back meanwhile. At most once.

use super::rte::{Rte, INTMASK, INTPOL};
use super::line::HeldBack;
use super::{rte_index, IoapicBus, Table, Vioapic, IOREGSEL, IOWIN, REG_ARB, REG_ID, REG_VER};
use crate::cpuset::CpuSet;
use crate::error::Result;
use crate::peer_wait::{PeerWait, PeerWaits};

/// TMR changes for one vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TmrOp {
    vcpu: usize,
    clear: Option<u8>,
    set: Option<u8>,
}

impl Vioapic {
    /// MMIO write at `offset` in the window, on behalf of vCPU `writer`
    /// (`None` for a thread that is not a vCPU). Anything but a 4-byte
    /// access to IOREGSEL or IOWIN is ignored. Fails only if
    /// `IoapicBus::before_block_runs` refuses an RTE write, which then
    /// changes nothing.
    pub fn mmio_write(
        &self,
        writer: Option<usize>,
        offset: u64,
        size: u8,
        data: u32,
        bus: &dyn IoapicBus,
    ) -> Result<()> {
        if size != 4 {
            return Ok(());
        }
        match offset {
            IOREGSEL => self.table.lock().ioregsel = data,
            IOWIN => self.iowin_write(writer, data, bus)?,
            _ => {}
        }
        Ok(())
    }

    fn iowin_write(&self, writer: Option<usize>, data: u32, bus: &dyn IoapicBus) -> Result<()> {
        // Step 1.
        let _serial = self.write_lock.lock();
        let mut t = self.table.lock();
        let regnum = t.ioregsel & 0xFF;
        match regnum {
            REG_ID => {
                t.id = data & 0xFF00_0000;
                return Ok(());
            }
            // Read-only.
            REG_VER | REG_ARB => return Ok(()),
            _ => {}
        }
        let Some((pin, high)) = rte_index(regnum) else {
            return Ok(());
        };
        let old = t.rte(pin);
        let new = old.written(data, high);

        // Step 2 (it reads only the other pins' entries). The 2019
        // protocol rendezvoused for every change but mask and polarity,
        // edge entries included (what FreeBSD PR #1838 measured Windows
        // guests paying for).
        let ops = t.tmr_ops(pin, old, new, bus);
        let legacy = bus.legacy_protocol();
        let needs_work = if legacy { (old.0 ^ new.0) & !(INTMASK | INTPOL) != 0 } else { !ops.is_empty() };
        // Step 4's waits, reported before anything changes.
        let others = blocked_targets(&ops, writer);
        let waiting = if legacy || others.is_empty() { PeerWait::none() } else { bus.before_block_runs(others)? };
        t.stats.rte_writes += 1;
        t.pins[pin].reg = new.0;
        // The entry copy (in flux if steps 3-4 follow), then the mask copy:
        // ordered with concurrent asserts (see the module doc).
        let line = &self.lines[pin];
        line.publish(new.0, new.masked(), needs_work);
        let mut held = HeldBack::default();
        if needs_work {
            t.stats.tmr_updates += 1;
            // Step 3.
            drop(t);
            // Step 4 (or, under the 2019 protocol, a rendezvous).
            let (blocks, stagings) = if legacy {
                let n = ops.iter().map(|o| o.clear.is_some() as u64 + o.set.is_some() as u64).sum();
                bus.rendezvous_stage_tmr(writer, ops.iter().map(|o| (o.vcpu, o.clear, o.set)).collect());
                (0, n)
            } else {
                stage(&ops, writer, bus, &waiting)
            };
            drop(waiting);
            t = self.table.lock();
            held = line.leave_flux(t.pins[pin].reg);
            t.stats.tmr_block_runs += blocks;
            t.stats.tmr_stagings += stagings;
        }

        // Step 5. A level entry is sent while its line is asserted now (a
        // send held back for it may belong to an assertion already
        // delivered and handled), or for a pulse held back (a pulse is the
        // line's high, sampled when it came); an edge held back is sent
        // once.
        let due = if new.level() { line.count() > 0 || held.pulse } else { held.any };
        if due {
            self.send(&mut t, pin, bus);
        }
        Ok(())
    }
}

impl Table {
    /// Step 2: the TMR changes an RTE rewrite from `old` to `new` needs.
    /// Empty for mask/polarity-only writes and for edge-only entries.
    fn tmr_ops(&self, pin: usize, old: Rte, new: Rte, bus: &dyn IoapicBus) -> Vec<TmrOp> {
        let relevant = old.affects_tmr() || new.affects_tmr();
        if !relevant || (old.0 ^ new.0) & super::rte::TMR_FIELDS == 0 {
            return Vec::new();
        }
        let targets = |e: Rte| {
            if e.affects_tmr() {
                bus.tmr_targets(e.dest(), e.phys(), e.delmode())
            } else {
                CpuSet::new()
            }
        };
        let (old_t, new_t) = (targets(old), targets(new));
        // vCPUs that must keep the old vector level-triggered: another
        // level pin (or the new entry) with that vector is aimed at them.
        let mut keep = CpuSet::new();
        if old.affects_tmr() {
            for other in (0..self.pins.len()).filter(|p| *p != pin) {
                let e = self.rte(other);
                if e.affects_tmr() && e.vector() == old.vector() {
                    keep = keep.union(&targets(e));
                }
            }
            if new.vector() == old.vector() {
                keep = keep.union(&new_t);
            }
        }
        old_t
            .union(&new_t)
            .iter()
            .map(|vcpu| TmrOp {
                vcpu,
                clear: (old_t.contains(vcpu) && !keep.contains(vcpu)).then_some(old.vector()),
                set: new_t.contains(vcpu).then_some(new.vector()),
            })
            .filter(|op| op.clear.is_some() || op.set.is_some())
            .collect()
    }
}

/// The vCPUs step 4 keeps out of RUNNING: every target but the writer.
fn blocked_targets(ops: &[TmrOp], writer: Option<usize>) -> CpuSet {
    let mut set = CpuSet::new();
    for op in ops.iter().filter(|op| writer != Some(op.vcpu)) {
        set.insert(op.vcpu);
    }
    set
}

/// Step 4: stage each vCPU's changes while it is kept out of RUNNING; the
/// writer's own vCPU is neither blocked nor waited for. Returns the number
/// of block_run calls and of staged changes.
fn stage(ops: &[TmrOp], writer: Option<usize>, bus: &dyn IoapicBus, waiting: &PeerWait) -> (u64, u64) {
    let (mut blocks, mut stagings) = (0, 0);
    // The targets still to wait for, as reported (`before_block_runs`).
    let mut left = blocked_targets(ops, writer);
    for op in ops {
        let other = writer != Some(op.vcpu);
        if other {
            bus.block_run(op.vcpu);
            blocks += 1;
        }
        if let Some(v) = op.clear {
            bus.stage_tmr(op.vcpu, v, false);
            stagings += 1;
        }
        if let Some(v) = op.set {
            bus.stage_tmr(op.vcpu, v, true);
            stagings += 1;
        }
        if other {
            bus.unblock_run(op.vcpu);
            left.remove(op.vcpu);
            waiting.narrow(PeerWaits::Running(left));
        }
    }
    (blocks, stagings)
}
