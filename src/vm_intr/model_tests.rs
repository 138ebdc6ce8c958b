//! Differential test of the IOAPIC and local APICs against a small
//! reference model written from FreeBSD 14 `vioapic.c`, `vlapic.c` and
//! `vmm_lapic.c`, with the choices `semantics.md` makes where it differs
//! (each marked SPEC below): an entry switched to edge loses remote IRR;
//! only a level entry is re-sent after an RTE write; every level send
//! coalesces under remote IRR; pin counts saturate (E2BIG / ERANGE);
//! 32 pins; the local APIC records the trigger mode at acceptance and an
//! EOI follows the mode its instance was accepted with; an RTE write
//! stages TMR changes that a vCPU applies on entry to vectors neither
//! pending nor in service.
//!
//! Single-threaded and seeded: a device thread (asserts, pulses, MSIs,
//! ioctls) and vCPU threads (MMIO to the IOAPIC window and the APIC page,
//! guest entries) are played one call at a time, and after every call the
//! whole observable state is compared: every RTE (remote IRR and delivery
//! status included), pin counts, IOREGSEL/IOWIN readback, and per vCPU
//! IRR, ISR, TMR, TPR, PPR, a pending ExtINT and the vector the guest
//! would be interrupted with next. A divergence is shrunk to a minimal
//! sequence and reported with its seed (`VMM_RS_MODEL_SEED` replays one).

use super::tests::{lapic_read, lapic_write};
use super::*;
use crate::vioapic::PINS;
use crate::vlapic::regs::*;
use crate::vlapic::Injection;

const MASK: u64 = 0x1_0000;
const LEVEL: u64 = 0x8000;
const RIRR: u64 = 0x4000;
const DELIVS: u64 = 0x1000;
const LOG: u64 = 0x800;
const RO: u64 = RIRR | DELIVS;

/// splitmix64: deterministic, inline.
struct Prng(u64);
impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// IOREGSEL write by vCPU `.0` (`None`: a non-vCPU thread).
    Sel(Option<usize>, u32),
    /// IOWIN write of the selected register.
    Win(Option<usize>, u32),
    /// A write the window ignores: another offset (0x40 is the EOI
    /// register of version 0x20 IOAPICs, which FreeBSD's 0x11 lacks) or size.
    Odd(u64, u8, u32),
    Assert(i32),
    Deassert(i32),
    Pulse(i32),
    /// A guest entry of vCPU `.0`: staged TMR applied, then one injection.
    Enter(usize),
    /// The guest writes the EOI register.
    Eoi(usize),
    Tpr(usize, u32),
    Svr(usize, u32),
    Ldr(usize, u32),
    Dfr(usize, u32),
    Msi(u64, u64),
    LapicIrq(i32, i32),
}

#[derive(Clone)]
struct Apic {
    irr: [bool; 256],
    isr: [bool; 256],
    /// Mode each in-service instance was accepted with (SPEC).
    isr_level: [bool; 256],
    tmr: [bool; 256],
    /// TMR changes staged by RTE writes (SPEC).
    staged: [Option<bool>; 256],
    tpr: u32,
    svr: u32,
    ldr: u32,
    dfr: u32,
    extint: bool,
}

struct Model {
    /// vCPUs, and how many of them (the first ones) are active.
    n: usize,
    act: usize,
    reg: [u64; PINS],
    cnt: [u32; PINS],
    ioregsel: u32,
    id: u32,
    cpu: Vec<Apic>,
    /// Coverage: level sends, coalesced sends, IOAPIC EOIs, injections,
    /// staged TMR bits applied, staged bits held back by IRR/ISR.
    cov: [u64; 6],
}

fn prio(v: u32) -> u32 {
    v & 0xF0
}
fn highest(b: &[bool; 256]) -> Option<usize> {
    (0..256).rev().find(|&v| b[v])
}
fn words(b: &[bool; 256]) -> [u32; 8] {
    let mut w = [0u32; 8];
    for v in 0..256 {
        if b[v] {
            w[v / 32] |= 1 << (v % 32);
        }
    }
    w
}
/// Level-triggered in a mode that sets TMR (`vlapic_set_tmr_level`).
fn tmr_level(r: u64) -> bool {
    r & LEVEL != 0 && matches!(r & 0x700, 0 | 0x100)
}

impl Model {
    fn new(n: usize, act: usize) -> Model {
        let a = Apic {
            irr: [false; 256],
            isr: [false; 256],
            isr_level: [false; 256],
            tmr: [false; 256],
            staged: [None; 256],
            tpr: 0,
            svr: 0x1FF,
            ldr: 0,
            dfr: 0xFFFF_FFFF,
            extint: false,
        };
        Model {
            n,
            act,
            reg: [0x0001_0000_0001_0000; PINS],
            cnt: [0; PINS],
            ioregsel: 0,
            id: 0,
            cpu: vec![a; n],
            cov: [0; 6],
        }
    }

    /// `vlapic_calcdest` (xAPIC destination format).
    fn calcdest(&self, dest: u32, phys: bool, lowprio: bool) -> Vec<usize> {
        if dest == 0xFF {
            return (0..self.act).collect();
        }
        if phys {
            return if (dest as usize) < self.act { vec![dest as usize] } else { vec![] };
        }
        let mut out = vec![];
        for c in 0..self.act {
            let a = &self.cpu[c];
            let (ldest, mda) = match a.dfr & 0xF000_0000 {
                0xF000_0000 => (a.ldr >> 24, dest),
                0 if a.ldr >> 28 == (dest >> 4) & 0xF => ((a.ldr >> 24) & 0xF, dest & 0xF),
                _ => continue,
            };
            if ldest & mda != 0 {
                out.push(c);
                if lowprio {
                    break;
                }
            }
        }
        out
    }

    /// `vlapic_deliver_intr`.
    fn deliver(&mut self, level: bool, dest: u32, phys: bool, delmode: u64, vec: u32) {
        if matches!(delmode, 0 | 0x100 | 0x700) {
            for c in self.calcdest(dest, phys, delmode == 0x100) {
                if delmode == 0x700 {
                    self.cpu[c].extint = true;
                } else {
                    self.set_intr(c, vec, level);
                }
            }
        }
    }

    /// `lapic_set_intr` + `vlapic_set_intr_ready`.
    fn set_intr(&mut self, c: usize, vec: u32, level: bool) {
        let (a, v) = (&mut self.cpu[c], vec as usize);
        if vec >= 16 && a.svr & 0x100 != 0 {
            // SPEC: TMR follows the message; an edge one joins a vector
            // pending as level.
            if level || !(a.tmr[v] && a.irr[v]) {
                a.tmr[v] = level;
            }
            a.irr[v] = true;
        }
    }

    /// `vioapic_send_intr`, SPEC: a level entry coalesces under remote IRR.
    fn send(&mut self, pin: usize) {
        let r = self.reg[pin];
        if r & MASK != 0 || (r & LEVEL != 0 && r & RIRR != 0) {
            self.cov[1] += u64::from(r & MASK == 0);
            return;
        }
        if r & LEVEL != 0 {
            self.reg[pin] |= RIRR;
            self.cov[0] += 1;
        }
        self.deliver(r & LEVEL != 0, (r >> 56) as u32, r & LOG == 0, r & 0x700, (r & 0xFF) as u32);
    }

    /// FreeBSD's TMR value for vector `v` on vCPU `c` (`vioapic_update_tmr`).
    fn config_tmr(&self, c: usize, v: u64) -> bool {
        self.reg.iter().any(|&r| {
            tmr_level(r)
                && r & 0xFF == v
                && self.calcdest((r >> 56) as u32, r & LOG == 0, r & 0x700 == 0x100).contains(&c)
        })
    }

    fn read_reg(&self) -> u32 {
        match self.ioregsel & 0xFF {
            0 | 2 => self.id,
            1 => ((PINS as u32 - 1) << 16) | 0x11,
            r @ 0x10.. if ((r - 0x10) as usize) < 2 * PINS => {
                (self.reg[(r as usize - 0x10) / 2] >> (32 * ((r - 0x10) % 2))) as u32
            }
            _ => 0,
        }
    }

    /// `vioapic_write`.
    fn win_write(&mut self, data: u32) {
        let r = self.ioregsel & 0xFF;
        if r == 0 {
            self.id = data & 0xFF00_0000;
        }
        if !(0x10..0x10 + 2 * PINS as u32).contains(&r) {
            return;
        }
        let pin = (r as usize - 0x10) / 2;
        let sh = 32 * ((r - 0x10) % 2);
        let old = self.reg[pin];
        let mut new = (old & (!(0xFFFF_FFFFu64 << sh) | RO)) | ((u64::from(data) << sh) & !RO);
        if new & LEVEL == 0 {
            new &= !RIRR; // SPEC
        }
        self.reg[pin] = new;
        // SPEC (semantics.md section 1, step 2): stage instead of FreeBSD's
        // rendezvous, on the old targets (clear the old vector unless a
        // level pin still aims it there) and the new ones (set the new
        // vector), both sets as addressed now.
        let fields = 0xFF00_0000_0000_0000 | LEVEL | LOG | 0x7FF; // semantics.md, not FreeBSD's
        if (tmr_level(old) || tmr_level(new)) && (old ^ new) & fields != 0 {
            let targets = |m: &Model, r: u64| {
                if tmr_level(r) {
                    m.calcdest((r >> 56) as u32, r & LOG == 0, r & 0x700 == 0x100)
                } else {
                    vec![]
                }
            };
            for c in targets(self, old) {
                if !self.config_tmr(c, old & 0xFF) {
                    self.cpu[c].staged[(old & 0xFF) as usize] = Some(false);
                }
            }
            for c in targets(self, new) {
                self.cpu[c].staged[(new & 0xFF) as usize] = Some(true);
            }
        }
        // SPEC: level only (FreeBSD sends an edge entry too).
        if new & LEVEL != 0 && new & RIRR == 0 && self.cnt[pin] > 0 {
            self.send(pin);
        }
    }

    /// `vioapic_process_eoi`.
    fn ioapic_eoi(&mut self, v: usize) {
        self.cov[2] += 1;
        let hit: Vec<usize> =
            (0..PINS).filter(|&p| self.reg[p] & RIRR != 0 && self.reg[p] & 0xFF == v as u64).collect();
        for &p in &hit {
            self.reg[p] &= !RIRR;
        }
        for p in hit {
            if self.cnt[p] > 0 {
                self.send(p);
            }
        }
    }

    fn ppr(&self, c: usize) -> u32 {
        let a = &self.cpu[c];
        let isrv = highest(&a.isr).unwrap_or(0) as u32;
        if prio(a.tpr) >= prio(isrv) {
            a.tpr
        } else {
            isrv & 0xF0
        }
    }

    /// `vlapic_pending_intr`.
    fn pending(&self, c: usize) -> Option<u8> {
        let v = highest(&self.cpu[c].irr)?;
        (prio(v as u32) > prio(self.ppr(c))).then_some(v as u8)
    }

    fn pin(p: i32) -> Result<usize> {
        usize::try_from(p).ok().filter(|&p| p < PINS).ok_or(Error::Inval)
    }

    /// Applies `op`; returns the model's answer to compare.
    fn apply(&mut self, op: Op) -> String {
        match op {
            Op::Sel(_, v) => self.ioregsel = v,
            Op::Win(_, v) => self.win_write(v),
            Op::Odd(..) => {}
            Op::Assert(p) | Op::Deassert(p) | Op::Pulse(p) => {
                let r = Self::pin(p).and_then(|p| {
                    match op {
                        Op::Assert(_) => self.cnt[p] += 1,
                        Op::Deassert(_) if self.cnt[p] == 0 => return Err(Error::Range), // SPEC
                        Op::Deassert(_) => self.cnt[p] -= 1,
                        _ => {}
                    }
                    // The 0 -> 1 transition; a pulse is one if the line is low.
                    if matches!(op, Op::Assert(_)) && self.cnt[p] == 1 || matches!(op, Op::Pulse(_)) && self.cnt[p] == 0
                    {
                        self.send(p);
                    }
                    Ok(())
                });
                return format!("{r:?}");
            }
            Op::Enter(c) => {
                let a = &mut self.cpu[c];
                for v in 0..256 {
                    if let Some(l) = a.staged[v] {
                        if !a.irr[v] && !a.isr[v] {
                            a.tmr[v] = l;
                            a.staged[v] = None;
                            self.cov[4] += 1;
                        } else {
                            self.cov[5] += 1;
                        }
                    }
                }
                if std::mem::take(&mut a.extint) {
                    return format!("{:?}", Some(Injection::ExtInt));
                }
                let v = self.pending(c);
                if let Some(v) = v {
                    self.cov[3] += 1;
                    let a = &mut self.cpu[c];
                    a.irr[v as usize] = false;
                    a.isr[v as usize] = true;
                    a.isr_level[v as usize] = a.tmr[v as usize];
                }
                return format!("{:?}", v.map(Injection::Vector));
            }
            Op::Eoi(c) => {
                let a = &mut self.cpu[c];
                if let Some(v) = highest(&a.isr) {
                    a.isr[v] = false;
                    if a.isr_level[v] {
                        self.ioapic_eoi(v);
                    }
                }
            }
            Op::Tpr(c, v) => self.cpu[c].tpr = v & 0xFF,
            Op::Svr(c, v) => self.cpu[c].svr = v,
            Op::Ldr(c, v) => self.cpu[c].ldr = v & 0xFF00_0000,
            Op::Dfr(c, v) => self.cpu[c].dfr = (v & 0xF000_0000) | 0x0FFF_FFFF,
            Op::Msi(addr, msg) => {
                if addr & 0xFFF0_0000 != 0xFEE0_0000 {
                    return format!("{:?}", Err::<(), _>(Error::Inval));
                }
                let phys = addr & 0xC != 0xC;
                self.deliver(false, ((addr >> 12) & 0xFF) as u32, phys, msg & 0x700, (msg & 0xFF) as u32);
            }
            Op::LapicIrq(c, v) => {
                if c < 0 || c as usize >= self.n || !(16..=255).contains(&v) {
                    return format!("{:?}", Err::<(), _>(Error::Inval));
                }
                self.set_intr(c as usize, v as u32, false); // any vCPU, active or not
            }
        }
        "Ok(())".into()
    }
}

/// Plays `op` on the VM as the thread that would make that call.
fn play(vm: &Vm, op: Op) -> String {
    let win = |w: Option<usize>, off: u64, v: u32| match w {
        Some(c) => assert_eq!(vm.mmio_write(c, IOAPIC_BASE + off, 4, u64::from(v)), Ok(Some(()))),
        None => assert_eq!(vm.ioapic_mmio_write_nonvcpu(IOAPIC_BASE + off, 4, v), Ok(())),
    };
    let lapic = |c: usize| &vm.vcpus()[c].vlapic;
    match op {
        Op::Sel(w, v) => win(w, 0, v),
        Op::Win(w, v) => win(w, 0x10, v),
        Op::Odd(off, size, v) => {
            assert_eq!(vm.mmio_write(0, IOAPIC_BASE + off, size, u64::from(v)), Ok(Some(())))
        }
        Op::Assert(p) => return format!("{:?}", vm.ioapic_assert_irq(p)),
        Op::Deassert(p) => return format!("{:?}", vm.ioapic_deassert_irq(p)),
        Op::Pulse(p) => return format!("{:?}", vm.ioapic_pulse_irq(p)),
        Op::Enter(c) => {
            lapic(c).apply_staged_tmr();
            return format!("{:?}", lapic(c).take_injection());
        }
        Op::Eoi(c) => lapic_write(vm, c, off::EOI, 0),
        Op::Tpr(c, v) => lapic_write(vm, c, off::TPR, v),
        Op::Svr(c, v) => lapic_write(vm, c, off::SVR, v),
        Op::Ldr(c, v) => lapic_write(vm, c, off::LDR, v),
        Op::Dfr(c, v) => lapic_write(vm, c, off::DFR, v),
        Op::Msi(a, m) => return format!("{:?}", vm.lapic_msi(a, m)),
        Op::LapicIrq(c, v) => return format!("{:?}", vm.lapic_irq(c, v)),
    }
    "Ok(())".into()
}

/// The first difference in observable state, if any.
fn compare(vm: &Vm, m: &Model) -> Option<String> {
    for p in 0..PINS {
        let (got, want) = (vm.vioapic().rte(p), m.reg[p]);
        if got != want {
            return Some(format!("RTE {p}: {got:#018x}, model {want:#018x}"));
        }
        if vm.vioapic().assert_count(p) != m.cnt[p] {
            return Some(format!("pin {p} count {} model {}", vm.vioapic().assert_count(p), m.cnt[p]));
        }
    }
    let sel = vm.mmio_read(0, IOAPIC_BASE, 4).unwrap().unwrap() as u32;
    let w = vm.mmio_read(0, IOAPIC_BASE + 0x10, 4).unwrap().unwrap() as u32;
    if (sel, w) != (m.ioregsel, m.read_reg()) {
        return Some(format!("IOREGSEL/IOWIN {sel:#x}/{w:#x}, model {:#x}/{:#x}", m.ioregsel, m.read_reg()));
    }
    if vm.ioapic_pincount() != PINS as i32 {
        return Some("pincount".into());
    }
    for c in 0..m.n {
        let a = &m.cpu[c];
        let l = &vm.vcpus()[c].vlapic;
        let got = (
            vm.irr_snapshot(c).unwrap(),
            vm.isr_snapshot(c).unwrap(),
            vm.tmr_snapshot(c).unwrap(),
            lapic_read(vm, c, off::TPR),
            lapic_read(vm, c, off::PPR),
            l.extint_pending(),
            l.pending_intr(),
        );
        let want = (words(&a.irr), words(&a.isr), words(&a.tmr), a.tpr, m.ppr(c), a.extint, m.pending(c));
        if got != want {
            return Some(format!(
                "vCPU {c} (irr, isr, tmr, tpr, ppr, extint, next):\n  got   {got:x?}\n  model {want:x?}"
            ));
        }
    }
    None
}

/// Runs `ops` on a fresh VM with `n` vCPUs; the step and description of
/// the first divergence.
fn run_cov(n: usize, act: usize, ops: &[Op], cov: &mut [u64; 6]) -> Option<(usize, String)> {
    let vm = Vm::with_idle_backend("model", n).unwrap();
    let mut m = Model::new(n, act);
    for c in 0..n {
        if c < act {
            vm.activate_cpu(c).unwrap();
        }
        // Software-enabled, flat logical id: vCPU c is bit c.
        lapic_write(&vm, c, off::SVR, 0x1FF);
        lapic_write(&vm, c, off::LDR, 1 << (24 + c));
        m.cpu[c].ldr = 1 << (24 + c);
    }
    for (i, &op) in ops.iter().enumerate() {
        let (got, want) = (play(&vm, op), m.apply(op));
        if got != want {
            return Some((i, format!("{op:?} returned {got}, model {want}")));
        }
        if let Some(d) = compare(&vm, &m) {
            return Some((i, format!("after {op:?}: {d}")));
        }
    }
    cov.iter_mut().zip(m.cov).for_each(|(c, m)| *c += m);
    None
}

const VECS: [u32; 7] = [0x21, 0x22, 0x31, 0x41, 0x42, 0x5F, 0xE0];

/// One random call, or two (an RTE write is IOREGSEL then IOWIN).
fn gen_op(r: &mut Prng, n: usize, act: usize) -> Vec<Op> {
    let cpu = r.below(act as u64) as usize;
    let writer = if r.below(4) == 0 { None } else { Some(cpu) };
    let pin = match r.below(16) {
        0 => r.pick(&[-1, 31, 32, 40]),
        _ => r.below(4) as i32,
    };
    let vec = match r.below(40) {
        0 => r.below(256) as u32,
        1 => 0x0A, // illegal: never accepted
        _ => r.pick(&VECS),
    };
    let dest = match r.below(16) {
        0 | 1 => 0xFF,
        2 => r.below(256) as u32,
        3 => n as u32,                     // no such APIC ID
        4..=9 => r.below(n as u64) as u32, // physical ids
        _ => 1 << r.below(n as u64 + 1),   // flat logical bits
    };
    vec![match r.below(100) {
        0..=19 => {
            let low = vec
                | r.pick(&[0, 0, 0, 0x100, 0x100, 0x400, 0x700, 0x200]) as u32
                | (r.below(2) as u32 * 0x800)
                | (r.below(4) as u32 / 3 * 0x1000) // RO bits written too
                | (r.below(2) as u32 * 0x2000)
                | (r.below(4) as u32 / 3 * 0x4000)
                | (r.below(2) as u32 * 0x8000)
                | (r.below(5) as u32 / 4 * 0x1_0000);
            let high = r.below(4) == 0;
            let p = if pin < 0 || pin >= PINS as i32 { 0 } else { pin as u32 };
            // Upper IOREGSEL bits are ignored by the index.
            let hi_bits = if r.below(10) == 0 { (r.next() as u32) & 0xFFFF_FF00 } else { 0 };
            let val = if high { dest << 24 | (r.next() as u32 & 0x00FF_FFFF) } else { low };
            return vec![Op::Sel(writer, hi_bits | (0x10 + 2 * p + high as u32)), Op::Win(writer, val)];
        }
        20..=23 => Op::Sel(writer, r.pick(&[0, 1, 2, 3, 0x0F, 0x50, 0x51, 0x100]) | (r.below(2) as u32 * 0x10)),
        24..=26 => Op::Win(writer, r.next() as u32),
        27 => match r.below(2) {
            0 => Op::Odd(r.pick(&[0x40, 0x20, 0x14, 0x04]), 4, r.next() as u32),
            _ => Op::Odd(r.pick(&[0x0, 0x10]), r.pick(&[1, 2, 8]), r.next() as u32),
        },
        28..=36 => Op::Assert(pin),
        37..=49 => Op::Deassert(pin),
        50..=56 => Op::Pulse(pin),
        57..=70 => Op::Enter(cpu),
        71..=82 => Op::Eoi(cpu),
        83..=85 => Op::Tpr(cpu, r.pick(&[0, 0, 0, 0x20, 0x30, 0x4F, 0x50, 0xFF]) | (r.below(4) as u32 / 3 * 0x100)),
        86 => Op::Svr(cpu, r.pick(&[0x1FF, 0x1FF, 0xFF])),
        87 => Op::Ldr(cpu, (1 << (24 + r.below(n as u64 + 1))) | r.pick(&[0, 0x33, 0x00FF_FFFF])),
        88 => Op::Dfr(cpu, r.pick(&[0xFFFF_FFFF, 0x0FFF_FFFF, 0x5000_0000, 0xF000_0000])),
        89..=95 => {
            let rh_dm = r.pick(&[0, 0x4, 0x8, 0xC]);
            let addr = if r.below(30) == 0 { 0xFED0_0000 } else { 0xFEE0_0000 | u64::from(dest) << 12 | rh_dm };
            let msg = u64::from(vec) | r.pick(&[0, 0, 0x100, 0x400, 0x700]) | r.pick(&[0, 0x8000, 0xC000]);
            Op::Msi(addr, msg)
        }
        _ => {
            Op::LapicIrq(r.pick(&[cpu as i32, cpu as i32, n as i32 - 1, n as i32, -1]), r.pick(&[vec as i32, 15, 256]))
        }
    }]
}

/// Drops ops one at a time (then pairs) while the run still diverges.
fn shrink(n: usize, act: usize, mut ops: Vec<Op>) -> Vec<Op> {
    loop {
        let before = ops.len();
        for k in [2usize, 1] {
            let mut i = 0;
            while i + k <= ops.len() {
                let mut t = ops.clone();
                t.drain(i..i + k);
                if run_cov(n, act, &t, &mut [0; 6]).is_some() {
                    ops = t;
                } else {
                    i += 1;
                }
            }
        }
        if ops.len() == before {
            return ops;
        }
    }
}

#[test]
fn ioapic_lapic_match_reference_model() {
    let base: u64 = std::env::var("VMM_RS_MODEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_1A91C);
    let seqs: u64 = std::env::var("VMM_RS_MODEL_SEQS").ok().and_then(|s| s.parse().ok()).unwrap_or(900);
    let (mut steps, mut cov) = (0usize, [0u64; 6]);
    for s in 0..seqs {
        let mut r = Prng(base.wrapping_add(s));
        let n = 2 + r.below(3) as usize;
        // Sometimes the last vCPU is not active (FreeBSD addresses active ones).
        let act = n - (r.below(3) == 0) as usize;
        let len = 10 + r.below(190) as usize;
        let mut ops = Vec::with_capacity(len + 1);
        while ops.len() < len {
            ops.extend(gen_op(&mut r, n, act));
        }
        steps += ops.len();
        if let Some((i, d)) = run_cov(n, act, &ops[..], &mut cov) {
            let min = shrink(n, act, ops[..=i].to_vec());
            let (_, d2) = run_cov(n, act, &min, &mut [0; 6]).unwrap();
            panic!(
                "seed {} ({n} vCPUs, {act} active): divergence at step {i}: {d}\nminimal ({} ops): {min:x?}\n=> {d2}",
                base.wrapping_add(s),
                min.len()
            );
        }
    }
    eprintln!("model test: {seqs} sequences, {steps} steps; level sends, coalesced, IOAPIC EOIs, injections, staged applied, held: {cov:?}");
}
