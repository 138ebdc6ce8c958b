//! Unit tests of the vioapic against a recording bus (semantics.md
//! sections 1 and 5).

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::error::Error;

const LEVEL: u32 = 0x8000;
const MASKED: u32 = 0x1_0000;
const POLARITY: u32 = 0x2000;
const LOGICAL: u32 = 0x800;
const LOWPRI: u32 = 0x100;
const NMI: u32 = 0x400;
const REM_IRR: u32 = 0x4000;
const DELIVS: u32 = 0x1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    level: bool,
    dest: u8,
    phys: bool,
    delmode: u32,
    vector: u8,
}

type Hook = Box<dyn FnMut(&RecBus)>;

/// A bus with `ncpus` active vCPUs whose logical (flat) id is bit `i`.
#[derive(Default)]
struct RecBus {
    ncpus: usize,
    sent: RefCell<Vec<Sent>>,
    blocks: RefCell<Vec<usize>>,
    unblocks: RefCell<Vec<usize>>,
    staged: RefCell<Vec<(usize, u8, bool)>>,
    /// Runs inside `block_run`: the write path's in-flux window.
    hook: RefCell<Option<Hook>>,
    /// Plays the 2019 protocol; `rendezvous` counts its rendezvous.
    legacy: bool,
    rendezvous: RefCell<usize>,
    /// The waits for RUNNING targets reported (`before_block_runs`).
    reported: RefCell<Vec<CpuSet>>,
}

impl RecBus {
    fn new(ncpus: usize) -> Self {
        RecBus { ncpus, ..Default::default() }
    }
    fn sent(&self) -> Vec<Sent> {
        self.sent.borrow().clone()
    }
    fn staged(&self) -> Vec<(usize, u8, bool)> {
        std::mem::take(&mut *self.staged.borrow_mut())
    }
    fn take_blocks(&self) -> Vec<usize> {
        std::mem::take(&mut *self.blocks.borrow_mut())
    }
}

impl IoapicBus for RecBus {
    fn deliver(&self, level: bool, dest: u8, phys: bool, delmode: u32, vector: u8) {
        self.sent.borrow_mut().push(Sent { level, dest, phys, delmode, vector });
    }
    fn tmr_targets(&self, dest: u8, phys: bool, delmode: u32) -> CpuSet {
        let mut s = CpuSet::new();
        if delmode != 0 && delmode != LOWPRI {
            return s;
        }
        for i in 0..self.ncpus {
            let hit =
                dest == 0xFF || if phys { usize::from(dest) == i } else { dest & (1 << i) != 0 };
            if hit {
                s.insert(i);
                if delmode == LOWPRI && dest != 0xFF && !phys {
                    break;
                }
            }
        }
        s
    }
    fn before_block_runs(&self, targets: CpuSet) -> Result<PeerWait> {
        self.reported.borrow_mut().push(targets);
        Ok(PeerWait::none())
    }
    fn block_run(&self, id: usize) {
        self.blocks.borrow_mut().push(id);
        let hook = self.hook.borrow_mut().take();
        if let Some(mut f) = hook {
            f(self);
            *self.hook.borrow_mut() = Some(f);
        }
    }
    fn unblock_run(&self, id: usize) {
        self.unblocks.borrow_mut().push(id);
    }
    fn stage_tmr(&self, id: usize, vector: u8, level: bool) {
        self.staged.borrow_mut().push((id, vector, level));
    }
    fn legacy_protocol(&self) -> bool {
        self.legacy
    }
    fn rendezvous_stage_tmr(&self, _writer: Option<usize>, _ops: Vec<(usize, Option<u8>, Option<u8>)>) {
        *self.rendezvous.borrow_mut() += 1;
    }
}

fn sel(v: &Vioapic, b: &RecBus, reg: u32) {
    v.mmio_write(None, IOREGSEL, 4, reg, b).unwrap();
}

/// Writes the low half of `pin`'s entry as vCPU `writer`.
fn lo(v: &Vioapic, b: &RecBus, writer: Option<usize>, pin: usize, val: u32) {
    sel(v, b, REG_REDTBL + 2 * pin as u32);
    v.mmio_write(writer, IOWIN, 4, val, b).unwrap();
}

fn hi(v: &Vioapic, b: &RecBus, writer: Option<usize>, pin: usize, dest: u8) {
    sel(v, b, REG_REDTBL + 2 * pin as u32 + 1);
    v.mmio_write(writer, IOWIN, 4, u32::from(dest) << 24, b).unwrap();
}

fn read(v: &Vioapic, b: &RecBus, reg: u32) -> u32 {
    sel(v, b, reg);
    v.mmio_read(IOWIN, 4)
}

fn rte_lo(v: &Vioapic, b: &RecBus, pin: usize) -> u32 {
    read(v, b, REG_REDTBL + 2 * pin as u32)
}

fn fixed(vector: u8, dest: u8, level: bool) -> Sent {
    Sent { level, dest, phys: true, delmode: 0, vector }
}

#[test]
fn reset_values_and_identification_registers() {
    let (v, b) = (Vioapic::new(), RecBus::new(2));
    assert_eq!(v.pincount(), 32);
    assert_eq!(read(&v, &b, REG_VER), 0x001F_0011);
    assert_eq!(read(&v, &b, REG_ID), 0);
    for pin in 0..PINS {
        assert_eq!(v.rte(pin), 0x0001_0000_0001_0000, "pin {pin}");
        assert_eq!(read(&v, &b, REG_REDTBL + 2 * pin as u32), 0x1_0000);
        assert_eq!(read(&v, &b, REG_REDTBL + 2 * pin as u32 + 1), 0x1_0000);
    }
    // ID keeps bits 31:24 only; ARB reads the ID; VER and ARB are read-only.
    sel(&v, &b, REG_ID);
    v.mmio_write(Some(0), IOWIN, 4, 0xABCD_EF12, &b).unwrap();
    assert_eq!(read(&v, &b, REG_ID), 0xAB00_0000);
    assert_eq!(read(&v, &b, REG_ARB), 0xAB00_0000);
    for r in [REG_VER, REG_ARB] {
        sel(&v, &b, r);
        v.mmio_write(Some(0), IOWIN, 4, 0x1234_5678, &b).unwrap();
    }
    assert_eq!(read(&v, &b, REG_VER), 0x001F_0011);
    assert_eq!(read(&v, &b, REG_ID), 0xAB00_0000);
}

#[test]
fn window_accepts_only_4_byte_ioregsel_and_iowin() {
    let (v, b) = (Vioapic::new(), RecBus::new(1));
    // The register index is IOREGSEL & 0xff; IOREGSEL reads back whole.
    sel(&v, &b, 0x0000_0101);
    assert_eq!(v.mmio_read(IOREGSEL, 4), 0x101);
    assert_eq!(v.mmio_read(IOWIN, 4), 0x001F_0011);
    for size in [1, 2, 8] {
        assert_eq!(v.mmio_read(IOREGSEL, size), 0);
        assert_eq!(v.mmio_read(IOWIN, size), 0);
        v.mmio_write(None, IOREGSEL, size, 0x10, &b).unwrap();
    }
    assert_eq!(v.mmio_read(IOREGSEL, 4), 0x101, "narrow writes ignored");
    sel(&v, &b, REG_REDTBL);
    for size in [1, 2, 8] {
        v.mmio_write(None, IOWIN, size, 0x30, &b).unwrap();
    }
    for offset in [0x04, 0x20, 0x40, 0xFFC] {
        assert_eq!(v.mmio_read(offset, 4), 0);
        v.mmio_write(None, offset, 4, 0x30, &b).unwrap();
    }
    assert_eq!(v.rte(0), rte::RESET);
    assert_eq!(v.stats().rte_writes, 0);
    // Past the table: reads 0, writes ignored.
    assert_eq!(read(&v, &b, REG_REDTBL + 64), 0);
    v.mmio_write(None, IOWIN, 4, 0x30, &b).unwrap();
    assert_eq!(v.stats().rte_writes, 0);
}

#[test]
fn read_only_bits_survive_writes() {
    let (v, b) = (Vioapic::new(), RecBus::new(1));
    lo(&v, &b, None, 3, LEVEL | 0x40);
    v.assert_irq(3, &b).unwrap();
    assert_eq!(rte_lo(&v, &b, 3) & REM_IRR, REM_IRR);
    // Writing 0 to remote IRR and 1 to delivery status changes neither.
    lo(&v, &b, None, 3, LEVEL | DELIVS | 0x40);
    assert_eq!(rte_lo(&v, &b, 3), LEVEL | REM_IRR | 0x40);
    // Nor can a write set remote IRR.
    lo(&v, &b, None, 4, LEVEL | REM_IRR | DELIVS | 0x41);
    assert_eq!(rte_lo(&v, &b, 4), LEVEL | 0x41);
    // The high half is plain data (destination and reserved bits).
    hi(&v, &b, None, 4, 0x5A);
    assert_eq!(v.rte(4) >> 32, 0x5A00_0000);
}

#[test]
fn edge_pin_sends_on_zero_to_one_only() {
    let (v, b) = (Vioapic::new(), RecBus::new(2));
    lo(&v, &b, None, 2, 0x30);
    hi(&v, &b, None, 2, 1);
    v.assert_irq(2, &b).unwrap();
    v.assert_irq(2, &b).unwrap();
    assert_eq!(v.assert_count(2), 2);
    v.deassert_irq(2, &b).unwrap();
    v.deassert_irq(2, &b).unwrap();
    assert_eq!(b.sent(), vec![fixed(0x30, 1, false)]);
    v.pulse_irq(2, &b).unwrap();
    assert_eq!(b.sent().len(), 2);
    assert_eq!(v.assert_count(2), 0);
    assert_eq!(v.stats().interrupts, 2);
    // Edge entries never set remote IRR.
    assert_eq!(rte_lo(&v, &b, 2) & REM_IRR, 0);
}

/// A bus whose delivery runs `0`: what another thread does while a pulse
/// is between its halves.
struct OnDeliver<F: Fn()>(F);

impl<F: Fn()> IoapicBus for OnDeliver<F> {
    fn deliver(&self, _: bool, _: u8, _: bool, _: u32, _: u8) {
        (self.0)();
    }
    fn tmr_targets(&self, _: u8, _: bool, _: u32) -> CpuSet {
        CpuSet::new()
    }
    fn block_run(&self, _: usize) {}
    fn unblock_run(&self, _: usize) {}
    fn stage_tmr(&self, _: usize, _: u8, _: bool) {}
}

/// A pulse takes no part of the count: a reset (VM_REINIT) while it
/// sends leaves nothing to restore, and a deassert made meanwhile finds
/// the line low (the deasserter's ERANGE), as with FreeBSD's one-lock
/// pulse, which no other call sees high.
#[test]
fn a_pulse_leaves_the_count_alone() {
    let (v, b) = (Vioapic::new(), RecBus::new(1));
    lo(&v, &b, None, 2, 0x30);
    v.pulse_irq(2, &OnDeliver(|| v.reset())).unwrap();
    assert_eq!((v.assert_count(2), v.stats().saturate_low), (0, 0));
    lo(&v, &b, None, 2, 0x30);
    v.pulse_irq(2, &OnDeliver(|| assert_eq!(v.deassert_irq(2, &b), Err(Error::Range)))).unwrap();
    assert_eq!((v.assert_count(2), v.stats().saturate_low), (0, 1));
    assert_eq!(v.pulse_irq(40, &b), Err(Error::Inval));
}

/// FreeBSD pulses under one lock, so every pulse of a low line is an
/// edge. Pulses overlapping on two threads all send (with the pulse as an
/// assert and a deassert, one's raised line hid the other's edge).
#[test]
fn overlapping_pulses_on_one_edge_pin_all_send() {
    crate::test_util::with_watchdog(60, || {
        let (v, b) = (Vioapic::new(), RecBus::new(1));
        lo(&v, &b, None, 3, 0x33);
        let count = NullBus(std::sync::atomic::AtomicU64::new(0));
        const EACH: u64 = 200_000;
        let go = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    go.wait();
                    for _ in 0..EACH {
                        v.pulse_irq(3, &count).unwrap();
                    }
                });
            }
        });
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 2 * EACH);
        assert_eq!(v.assert_count(3), 0);
    });
}

/// Counts deliveries.
struct NullBus(std::sync::atomic::AtomicU64);

impl IoapicBus for NullBus {
    fn deliver(&self, _: bool, _: u8, _: bool, _: u32, _: u8) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn tmr_targets(&self, _: u8, _: bool, _: u32) -> CpuSet {
        CpuSet::new()
    }
    fn block_run(&self, _: usize) {}
    fn unblock_run(&self, _: usize) {}
    fn stage_tmr(&self, _: usize, _: u8, _: bool) {}
}

#[test]
fn level_interrupts_coalesce_and_reinject_after_eoi() {
    let (v, b) = (Vioapic::new(), RecBus::new(1));
    lo(&v, &b, None, 9, LEVEL | 0x50);
    v.assert_irq(9, &b).unwrap();
    assert_eq!(b.sent(), vec![fixed(0x50, 0, true)]);
    v.deassert_irq(9, &b).unwrap();
    v.assert_irq(9, &b).unwrap();
    assert_eq!(b.sent().len(), 1, "coalesced while remote IRR is set");
    v.process_eoi(0x50, &b);
    assert_eq!(b.sent().len(), 2, "still asserted at EOI: re-sent");
    assert_eq!(rte_lo(&v, &b, 9) & REM_IRR, REM_IRR);
    v.deassert_irq(9, &b).unwrap();
    v.process_eoi(0x50, &b);
    assert_eq!(b.sent().len(), 2, "deasserted at EOI: not re-sent");
    assert_eq!(rte_lo(&v, &b, 9) & REM_IRR, 0);
    // An EOI for another vector touches nothing.
    v.assert_irq(9, &b).unwrap();
    v.process_eoi(0x51, &b);
    assert_eq!(rte_lo(&v, &b, 9) & REM_IRR, REM_IRR);
}

#[test]
fn masked_pins_send_nothing_and_rte_write_resends_asserted_level() {
    let (v, b) = (Vioapic::new(), RecBus::new(1));
    lo(&v, &b, None, 1, MASKED | LEVEL | 0x60);
    lo(&v, &b, None, 2, MASKED | 0x61);
    v.assert_irq(1, &b).unwrap();
    v.assert_irq(2, &b).unwrap();
    assert!(b.sent().is_empty());
    assert_eq!(rte_lo(&v, &b, 1) & REM_IRR, 0, "masked send sets no remote IRR");
    lo(&v, &b, None, 1, LEVEL | 0x60);
    assert_eq!(b.sent(), vec![fixed(0x60, 0, true)], "asserted level pin re-sent");
    lo(&v, &b, None, 2, 0x61);
    assert_eq!(b.sent().len(), 1, "edge pins are not re-sent on write");
    // A rewrite with remote IRR set does not send again.
    lo(&v, &b, None, 1, LEVEL | POLARITY | 0x60);
    assert_eq!(b.sent().len(), 1);
}

#[test]
fn edge_switch_clears_remote_irr_and_masking_keeps_it() {
    let (v, b) = (Vioapic::new(), RecBus::new(1));
    lo(&v, &b, None, 4, LEVEL | 0x70);
    v.assert_irq(4, &b).unwrap();
    lo(&v, &b, None, 4, MASKED | LEVEL | 0x70);
    assert_eq!(rte_lo(&v, &b, 4) & REM_IRR, REM_IRR, "masking keeps remote IRR");
    lo(&v, &b, None, 4, MASKED | 0x70);
    assert_eq!(rte_lo(&v, &b, 4) & REM_IRR, 0, "edge clears it");
    // Back to level and unmasked while asserted: sent again.
    lo(&v, &b, None, 4, LEVEL | 0x70);
    assert_eq!(b.sent().len(), 2);
}

#[test]
fn eoi_clears_every_matching_pin_before_resending() {
    let (v, b) = (Vioapic::new(), RecBus::new(2));
    for pin in [5, 6] {
        lo(&v, &b, None, pin, LEVEL | 0x80);
        v.assert_irq(pin as i32, &b).unwrap();
    }
    lo(&v, &b, None, 7, LEVEL | 0x81);
    v.assert_irq(7, &b).unwrap();
    assert_eq!(b.sent().len(), 3);
    v.take_trace();
    v.process_eoi(0x80, &b);
    assert_eq!(v.take_trace(), vec![("clear", 5), ("clear", 6), ("send", 5), ("send", 6)]);
    assert_eq!(rte_lo(&v, &b, 7) & REM_IRR, REM_IRR, "other vector untouched");
}

#[test]
fn assert_counts_saturate_with_errors_and_counters() {
    let (v, b) = (Vioapic::new(), RecBus::new(1));
    assert_eq!(v.deassert_irq(0, &b), Err(Error::Range));
    assert_eq!(v.assert_count(0), 0);
    assert_eq!(v.stats().saturate_low, 1);
    v.set_assert_count(0, MAX_ASSERTS);
    assert_eq!(v.assert_irq(0, &b), Err(Error::TooBig));
    assert_eq!(v.pulse_irq(0, &b), Ok(()), "a pulse of a held line: no edge, no count");
    assert_eq!(v.assert_count(0), MAX_ASSERTS);
    assert_eq!(MAX_ASSERTS, i32::MAX as u32, "INT_MAX, as FreeBSD's int count");
    assert_eq!(v.stats().saturate_high, 1);
    v.deassert_irq(0, &b).unwrap();
    assert_eq!(v.assert_count(0), MAX_ASSERTS - 1);
    for pin in [-1, 32, i32::MAX] {
        assert_eq!(v.assert_irq(pin, &b), Err(Error::Inval));
        assert_eq!(v.deassert_irq(pin, &b), Err(Error::Inval));
        assert_eq!(v.pulse_irq(pin, &b), Err(Error::Inval));
    }
}

#[test]
fn delivery_carries_the_entry_fields() {
    let (v, b) = (Vioapic::new(), RecBus::new(4));
    lo(&v, &b, None, 1, LOGICAL | LOWPRI | 0x90);
    hi(&v, &b, None, 1, 0x0C);
    v.pulse_irq(1, &b).unwrap();
    lo(&v, &b, None, 2, NMI | 0x02);
    v.pulse_irq(2, &b).unwrap();
    assert_eq!(
        b.sent(),
        vec![
            Sent { level: false, dest: 0x0C, phys: false, delmode: LOWPRI, vector: 0x90 },
            Sent { level: false, dest: 0, phys: true, delmode: NMI, vector: 0x02 },
        ]
    );
}

#[test]
fn mask_polarity_and_edge_only_writes_do_no_cross_vcpu_work() {
    let (v, b) = (Vioapic::new(), RecBus::new(4));
    hi(&v, &b, Some(0), 3, 1);
    lo(&v, &b, Some(0), 3, LEVEL | 0x40);
    assert_eq!(b.take_blocks(), vec![1], "edge -> level costs one block_run");
    b.staged();
    let before = v.stats();
    lo(&v, &b, Some(0), 3, MASKED | LEVEL | 0x40);
    lo(&v, &b, Some(0), 3, MASKED | POLARITY | LEVEL | 0x40);
    lo(&v, &b, Some(0), 3, LEVEL | 0x40);
    // Edge-only entries: vector, destination, mode changes are free.
    lo(&v, &b, Some(0), 8, 0x41);
    hi(&v, &b, Some(0), 8, 0xFF);
    lo(&v, &b, Some(0), 8, LOGICAL | LOWPRI | 0x42);
    // Level entries in NMI mode never set TMR bits.
    lo(&v, &b, Some(0), 9, LEVEL | NMI | 0x02);
    let after = v.stats();
    assert!(b.take_blocks().is_empty());
    assert!(b.staged().is_empty());
    assert_eq!(after.tmr_updates, before.tmr_updates);
    assert_eq!(after.tmr_block_runs, before.tmr_block_runs);
    assert_eq!(after.tmr_stagings, before.tmr_stagings);
    assert_eq!(after.rte_writes, before.rte_writes + 7);
}

/// The 2019 protocol rendezvoused for any change but mask and polarity,
/// edge-only entries included (FreeBSD's `changed & ~(IOART_INTMASK |
/// IOART_INTPOL)`); the legacy build must pay the same, or the benchmarks
/// against it would flatter the fix.
#[test]
fn the_legacy_protocol_rendezvous_on_every_change_but_mask_and_polarity() {
    let (v, b) = (Vioapic::new(), RecBus { legacy: true, ..RecBus::new(2) });
    lo(&v, &b, Some(1), 7, 0x40);
    assert_eq!(*b.rendezvous.borrow(), 1, "unmask plus vector 0x40: vector changed");
    lo(&v, &b, Some(1), 7, 0x40 | MASKED);
    lo(&v, &b, Some(1), 7, 0x40 | MASKED | POLARITY);
    assert_eq!(*b.rendezvous.borrow(), 1, "mask and polarity only");
    lo(&v, &b, Some(1), 7, 0x41 | MASKED | POLARITY);
    hi(&v, &b, Some(1), 7, 1);
    hi(&v, &b, Some(1), 7, 1);
    assert_eq!(*b.rendezvous.borrow(), 3, "edge vector and destination changes; same value no");
    assert!(b.take_blocks().is_empty() && b.staged().is_empty(), "no staging in the 2019 protocol");
}

#[test]
fn level_writes_stage_tmr_blocking_other_vcpus_only() {
    let (v, b) = (Vioapic::new(), RecBus::new(3));
    hi(&v, &b, Some(0), 3, 1);
    lo(&v, &b, Some(0), 3, MASKED | LEVEL | 0x40);
    assert_eq!(b.take_blocks(), vec![1]);
    assert_eq!(*b.unblocks.borrow(), vec![1]);
    assert_eq!(b.staged(), vec![(1, 0x40, true)]);
    // New vector: clear the old, set the new.
    lo(&v, &b, Some(0), 3, MASKED | LEVEL | 0x41);
    assert_eq!(b.staged(), vec![(1, 0x40, false), (1, 0x41, true)]);
    assert_eq!(b.take_blocks(), vec![1]);
    // New destination: the old target clears, the new one sets.
    hi(&v, &b, Some(0), 3, 2);
    assert_eq!(b.take_blocks(), vec![1, 2]);
    assert_eq!(b.staged(), vec![(1, 0x41, false), (2, 0x41, true)]);
    // Aimed at the writer itself: staged directly, no block_run.
    hi(&v, &b, Some(0), 3, 0);
    assert_eq!(b.take_blocks(), vec![2]);
    assert_eq!(b.staged(), vec![(0, 0x41, true), (2, 0x41, false)]);
    // Level -> edge clears.
    lo(&v, &b, Some(0), 3, MASKED | 0x41);
    assert_eq!(b.staged(), vec![(0, 0x41, false)]);
    assert!(b.take_blocks().is_empty());
    // A writer that is not a vCPU blocks every target; broadcast reaches all.
    hi(&v, &b, None, 4, 0xFF);
    lo(&v, &b, None, 4, MASKED | LEVEL | 0x44);
    assert_eq!(b.take_blocks(), vec![0, 1, 2]);
    let s = v.stats();
    assert_eq!((s.tmr_block_runs, s.tmr_stagings), (8, 11));
}

#[test]
fn a_vector_still_used_by_another_level_pin_keeps_its_tmr_bit() {
    let (v, b) = (Vioapic::new(), RecBus::new(3));
    for (pin, dest) in [(1, 1), (2, 1), (3, 2)] {
        hi(&v, &b, None, pin, dest);
        lo(&v, &b, None, pin, MASKED | LEVEL | 0x40);
    }
    b.staged();
    lo(&v, &b, None, 1, MASKED | LEVEL | 0x41);
    assert_eq!(b.staged(), vec![(1, 0x41, true)], "pin 2 still uses 0x40 on vCPU 1");
    lo(&v, &b, None, 2, MASKED | LEVEL | 0x42);
    assert_eq!(b.staged(), vec![(1, 0x40, false), (1, 0x42, true)], "now nobody does");
    // Pin 3 (vector 0x40 on vCPU 2) does not protect vCPU 1's bit; it
    // keeps vCPU 2's when its own entry moves away from vCPU 2.
    hi(&v, &b, None, 4, 2);
    lo(&v, &b, None, 4, MASKED | LEVEL | 0x40);
    b.staged();
    hi(&v, &b, None, 4, 1);
    assert_eq!(b.staged(), vec![(1, 0x40, true)]);
}

#[test]
fn pin_events_during_a_rewrite_are_sent_once_at_step_5() {
    let (v, b) = (Rc::new(Vioapic::new()), RecBus::new(2));
    // Level: an assert in the window is held back, then sent once.
    hi(&v, &b, None, 5, 1);
    lo(&v, &b, None, 5, 0x50);
    let v2 = v.clone();
    *b.hook.borrow_mut() = Some(Box::new(move |bus: &RecBus| {
        v2.assert_irq(5, bus).unwrap();
        assert!(bus.sent().is_empty(), "no send while the entry is in flux");
    }));
    lo(&v, &b, Some(0), 5, LEVEL | 0x51);
    assert_eq!(b.sent(), vec![fixed(0x51, 1, true)]);
    assert_eq!(v.stats().deferred_sends, 1);
    b.hook.borrow_mut().take();

    // Edge: a pulse in the window (level -> edge rewrite) is remembered.
    let v3 = v.clone();
    *b.hook.borrow_mut() = Some(Box::new(move |bus: &RecBus| {
        v3.deassert_irq(5, bus).unwrap();
        v3.pulse_irq(5, bus).unwrap();
    }));
    lo(&v, &b, Some(0), 5, 0x52);
    assert_eq!(b.sent()[1..], [fixed(0x52, 1, false)]);
    b.hook.borrow_mut().take();

    // EOI in the window: remote IRR cleared, the re-send waits for step 5.
    lo(&v, &b, None, 6, LEVEL | 0x60);
    v.assert_irq(6, &b).unwrap();
    assert_eq!(b.sent().len(), 3);
    let v4 = v.clone();
    *b.hook.borrow_mut() = Some(Box::new(move |bus: &RecBus| {
        v4.process_eoi(0x60, bus);
        assert_eq!(bus.sent().len(), 3);
    }));
    hi(&v, &b, None, 6, 1);
    assert_eq!(b.sent()[3..], [fixed(0x60, 1, true)], "exactly once");
    assert_eq!(v.stats().deferred_sends, 3);
}

/// A level send held back during a rewrite whose line is deasserted by the
/// end of the write is not made: the assertion it stood for was delivered
/// and handled meanwhile (EOI re-send deferred, then the device's line
/// dropped), and sending it again would duplicate it.
#[test]
fn a_held_back_level_send_for_a_dropped_line_is_not_made() {
    let (v, b) = (Rc::new(Vioapic::new()), RecBus::new(2));
    lo(&v, &b, None, 6, LEVEL | 0x60);
    v.assert_irq(6, &b).unwrap();
    assert_eq!(b.sent().len(), 1);
    let v2 = v.clone();
    *b.hook.borrow_mut() = Some(Box::new(move |bus: &RecBus| {
        // In the window (once; the hook runs per blocked vCPU): an EOI
        // clears remote IRR and holds the re-send back (the line is still
        // high); then the device deasserts.
        if v2.assert_count(6) == 1 {
            v2.process_eoi(0x60, bus);
            v2.deassert_irq(6, bus).unwrap();
        }
    }));
    hi(&v, &b, None, 6, 1);
    assert_eq!(b.sent().len(), 1, "no second delivery of the one assertion");
    assert_eq!(rte_lo(&v, &b, 6) & REM_IRR, 0);
}

#[test]
fn reset_restores_power_on_state() {
    let (v, b) = (Vioapic::new(), RecBus::new(1));
    sel(&v, &b, REG_ID);
    v.mmio_write(None, IOWIN, 4, 0x0F00_0000, &b).unwrap();
    lo(&v, &b, None, 1, LEVEL | 0x40);
    v.assert_irq(1, &b).unwrap();
    v.reset();
    assert_eq!(v.rte(1), rte::RESET);
    assert_eq!(v.assert_count(1), 0);
    assert_eq!(v.stats(), IoapicStats::default());
    assert_eq!(v.mmio_read(IOREGSEL, 4), 0);
    assert_eq!(v.mmio_read(IOWIN, 4), 0, "ID back to 0");
}

#[test]
fn sends_from_many_threads_are_all_counted_and_reset_starts_from_zero() {
    const THREADS: usize = 4;
    const PULSES: usize = 2_000;
    let (v, b) = (Vioapic::new(), RecBus::new(2));
    for t in 0..THREADS {
        lo(&v, &b, None, t, 0x40 + t as u32);
    }
    // One thread per pin (and bus), each counting into its own cell of
    // the counter.
    let delivered: usize = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let v = &v;
                s.spawn(move || {
                    let b = RecBus::new(2);
                    (0..PULSES).for_each(|_| v.pulse_irq(t as i32, &b).unwrap());
                    b.sent().len()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(delivered, THREADS * PULSES);
    assert_eq!(v.stats().interrupts, (THREADS * PULSES) as u64);
    v.reset();
    assert_eq!(v.stats().interrupts, 0, "VM_REINIT zeroes the statistics");
    lo(&v, &b, None, 0, 0x40);
    v.pulse_irq(0, &b).unwrap();
    assert_eq!(v.stats().interrupts, 1);
}

/// A level assert that counted, then reached the table mutex only after
/// its line was deasserted, sends nothing: the line is sampled under the
/// mutex (a send then would be spurious, and a duplicate if a step-5 or
/// EOI send had handled the assertion).
#[test]
fn a_level_assert_that_reaches_the_table_after_its_deassert_sends_nothing() {
    crate::test_util::with_watchdog(10, || {
        let vm = std::sync::Arc::new(crate::vm::Vm::with_idle_backend("late-level", 1).unwrap());
        vm.activate_cpu(0).unwrap();
        vm.vcpu(0).unwrap().vlapic.mmio_write(0xF0, 0x1FF, std::time::Instant::now());
        vm.ioapic_mmio_write_nonvcpu(IOAPIC_BASE, 4, REG_REDTBL + 10).unwrap();
        vm.ioapic_mmio_write_nonvcpu(IOAPIC_BASE + IOWIN, 4, LEVEL | 0x40).unwrap();
        // Holding the table mutex keeps the assert's send waiting.
        let table = vm.vioapic().table.lock();
        let asserter = {
            let vm = vm.clone();
            std::thread::spawn(move || vm.ioapic_assert_irq(5).unwrap())
        };
        while vm.vioapic().assert_count(5) == 0 {
            std::thread::yield_now();
        }
        vm.ioapic_deassert_irq(5).unwrap();
        drop(table);
        asserter.join().unwrap();
        assert!(vm.vcpu(0).unwrap().vlapic.irr().is_empty(), "no send for a line already lowered");
        assert_eq!(vm.vioapic().rte(5) & rte::REM_IRR, 0);
    });
}

/// What a level assert's send finds at the table mutex, having counted
/// the line up on a level entry: rewritten to edge meanwhile (and the line
/// lowered again), the assertion was an edge and is sent as one; still
/// level with the line lowered, nothing; a pulse of a level entry, sent
/// (the pulse is the line's high). Each is a three-thread race through
/// the public calls (asserter, writer, deasserter), played here as the
/// state the send finds.
#[test]
fn a_raised_level_send_samples_the_entry_and_line_under_the_mutex() {
    let (v, b) = (Vioapic::new(), RecBus::new(2));
    hi(&v, &b, None, 6, 1);
    lo(&v, &b, None, 6, 0x60);
    v.send_raised_level::<_, false>(6, &b);
    assert_eq!(b.sent(), vec![fixed(0x60, 1, false)], "an edge made while the send waited was lost");
    lo(&v, &b, None, 6, LEVEL | 0x61);
    v.send_raised_level::<_, false>(6, &b);
    assert_eq!(b.sent().len(), 1, "a level send for a lowered line");
    v.send_raised_level::<_, true>(6, &b);
    assert_eq!(b.sent()[1..], [fixed(0x61, 1, true)], "a level pulse was lost");
}

/// A lowest-priority level entry stages its TMR bit like a fixed one
/// (FreeBSD's REDIR_IS_LVLTRIG covers both).
#[test]
fn a_lowest_priority_level_entry_stages_its_tmr() {
    let v = Vioapic::new();
    let b = RecBus::new(2);
    hi(&v, &b, None, 3, 0);
    lo(&v, &b, None, 3, LEVEL | LOWPRI | 0x45);
    assert_eq!(b.staged(), vec![(0, 0x45, true)]);
}
/// A pulse of a level entry while the pin is in flux (level ->
/// level, vector change). FreeBSD 14: vioapic_write drops the lock for the
/// TMR rendezvous with the new entry already in rtbl; a pulse in that
/// window takes the lock, acnt 0 -> 1, vioapic_send_intr sends the new
/// level entry (sets remote IRR). Here the send is held back, marked as a
/// pulse's, and step 5 makes it though the count is 0.
#[test]
fn a_level_pulse_during_a_rewrite_is_sent() {
    let (v, b) = (Rc::new(Vioapic::new()), RecBus::new(2));
    hi(&v, &b, None, 7, 1);
    lo(&v, &b, None, 7, LEVEL | 0x70);
    let v2 = v.clone();
    *b.hook.borrow_mut() = Some(Box::new(move |bus: &RecBus| {
        v2.pulse_irq(7, bus).unwrap();
    }));
    lo(&v, &b, Some(0), 7, LEVEL | 0x71);
    b.hook.borrow_mut().take();
    assert_eq!(v.stats().deferred_sends, 1);
    assert_eq!(b.sent(), vec![fixed(0x71, 1, true)], "the pulse was lost");
}

/// The same, edge -> level rewrite (the pulse reads the new level
/// entry in flux).
#[test]
fn a_pulse_during_an_edge_to_level_rewrite_is_sent() {
    let (v, b) = (Rc::new(Vioapic::new()), RecBus::new(2));
    hi(&v, &b, None, 7, 1);
    lo(&v, &b, None, 7, 0x70);
    let v2 = v.clone();
    *b.hook.borrow_mut() = Some(Box::new(move |bus: &RecBus| {
        v2.pulse_irq(7, bus).unwrap();
    }));
    lo(&v, &b, Some(0), 7, LEVEL | 0x71);
    b.hook.borrow_mut().take();
    assert_eq!(b.sent(), vec![fixed(0x71, 1, true)], "the pulse was lost");
}

/// VM_REINIT zeroes every statistic, the count of sends held back during
/// rewrites (kept per pin, beside the table) included.
#[test]
fn reset_zeroes_the_held_back_send_count() {
    let (v, b) = (Rc::new(Vioapic::new()), RecBus::new(2));
    hi(&v, &b, None, 5, 1);
    lo(&v, &b, None, 5, LEVEL | 0x50);
    let v2 = v.clone();
    *b.hook.borrow_mut() = Some(Box::new(move |bus: &RecBus| {
        v2.pulse_irq(5, bus).unwrap();
    }));
    lo(&v, &b, Some(0), 5, LEVEL | 0x51);
    b.hook.borrow_mut().take();
    assert_eq!(v.stats().deferred_sends, 1);
    v.reset();
    assert_eq!(v.stats(), IoapicStats::default());
}

/// The 2019 protocol counts its TMR changes as the blocking one does:
/// each clear and each set (a vector change on one target is two).
#[test]
fn the_legacy_protocol_counts_each_tmr_clear_and_set() {
    let (v, b) = (Vioapic::new(), RecBus { legacy: true, ..RecBus::new(2) });
    hi(&v, &b, Some(0), 3, 1);
    lo(&v, &b, Some(0), 3, MASKED | LEVEL | 0x40);
    assert_eq!(v.stats().tmr_stagings, 1, "set 0x40");
    lo(&v, &b, Some(0), 3, MASKED | LEVEL | 0x41);
    assert_eq!(v.stats().tmr_stagings, 3, "clear 0x40, set 0x41");
    lo(&v, &b, Some(0), 3, MASKED | 0x41);
    assert_eq!(v.stats().tmr_stagings, 4, "clear 0x41");
    assert_eq!(*b.rendezvous.borrow(), 4, "the destination write too");
}

/// Only the write path's step 4 waits for other vCPUs to leave RUNNING,
/// so only it reports that wait (`before_block_runs`, which the C face's
/// cycle check may refuse with EDEADLK): the 2019 protocol rendezvouses
/// instead, and reporting a wait it never makes could refuse its write
/// for nothing.
#[test]
fn only_the_blocking_protocol_reports_a_wait_for_running_targets() {
    for legacy in [false, true] {
        let (v, b) = (Vioapic::new(), RecBus { legacy, ..RecBus::new(3) });
        hi(&v, &b, Some(0), 3, 0xFF);
        lo(&v, &b, Some(0), 3, MASKED | LEVEL | 0x40);
        let mut others = CpuSet::new();
        others.insert(1);
        others.insert(2);
        let expected = if legacy { vec![] } else { vec![others] };
        assert_eq!(*b.reported.borrow(), expected, "legacy: {legacy}");
    }
}

/// A level assert that counted and read its level entry, then reached
/// the table mutex only after the entry was rewritten to edge and its
/// line deasserted, is sent: the rise was an edge under the entry it
/// meets there, and an edge is not sampled (the rewrite is made here
/// under the held mutex, as a guest's write that came first would).
#[test]
fn a_level_assert_that_reaches_the_table_after_a_rewrite_to_edge_is_sent() {
    crate::test_util::with_watchdog(10, || {
        let v = Vioapic::new();
        let count = NullBus(std::sync::atomic::AtomicU64::new(0));
        v.mmio_write(None, IOREGSEL, 4, REG_REDTBL + 10, &count).unwrap();
        v.mmio_write(None, IOWIN, 4, LEVEL | 0x40, &count).unwrap();
        std::thread::scope(|s| {
            // Holding the table mutex keeps the assert's level send waiting.
            let mut t = v.table.lock();
            let asserter = s.spawn(|| v.assert_irq(5, &count).unwrap());
            while v.assert_count(5) == 0 {
                std::thread::yield_now();
            }
            t.pins[5].reg = t.rte(5).written(0x40, false).0;
            v.deassert_irq(5, &count).unwrap();
            drop(t);
            asserter.join().unwrap();
        });
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1, "the edge was lost");
        assert_eq!(v.stats().interrupts, 1);
    });
}
