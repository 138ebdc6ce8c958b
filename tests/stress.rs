//! Stress of the RTE write path against everything that can race it
//! (issue 5, item 3). vCPU threads loop `vm.run` like bhyve's vm_loop; their
//! guests rewrite redirection entries through the IOAPIC window (level and
//! edge, vector, destination, delivery mode, mask) and take and EOI
//! interrupts; device threads assert/deassert level pins, pulse edge pins
//! and send MSIs; control threads take every vCPU (lock-all), one vCPU
//! (lock-one), and suspend/resume vCPUs.
//!
//! The workload is built so the expected counts are exact: every device
//! waits until its previous interrupt was handled before raising the next,
//! device pins never change vector or trigger mode (a guest must not change
//! those under an in-service level interrupt), and only "churn" pins that
//! nobody asserts switch trigger mode and vector. At the end: no stall (a
//! watchdog, and parking_lot's deadlock detector with the
//! `deadlock-detection` feature), every assertion delivered, acknowledged
//! and EOIed exactly once, assert counts back to zero, and each vCPU's TMR
//! equal to what the final redirection table implies.
//!
//! Run time: `VMM_RS_STRESS_SECS` (default 60). `make check` runs it
//! (release build, `deadlock-detection` feature); `make stress
//! VMM_RS_STRESS_SECS=600` runs it longer.
//!
//! What it found, and what was fixed (so a regression shows up here):
//! - A lost edge interrupt: the run loop let the guest see a vector before
//!   moving it from IRR to ISR, so a device that re-raised the same vector
//!   as soon as the guest reacted merged into the still-set IRR bit. Now
//!   the vector is accepted first (`Vlapic::take_injection`).
//! - Lock-all starvation: a VM_RUN loop that releases its vCPU and locks
//!   it again at once always beat the woken lock-all; waiters for an IDLE
//!   vCPU now take it in FIFO order (tickets in `vcpu.rs`).
//! - A test bug: the vCPU threads spun on VM_RUN while their vCPU was in
//!   the debug set; they now park until VM_RESUME_CPU, as bhyve does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use vmm_rs::vm::CpuSetKind;
use vmm_rs::exit::ExitKind;
use vmm_rs::guest::{GuestAction, GuestProgram};
use vmm_rs::vm::Vm;

const NVCPU: usize = 3;
const IOAPIC: u64 = 0xFEC0_0000;
const LAPIC_EOI: u64 = 0xFEE0_00B0;
const LAPIC_SVR: u64 = 0xFEE0_00F0;
const LEVEL: u64 = 1 << 15;
const MASK: u64 = 1 << 16;
const LOWPRI: u64 = 1 << 8;

/// Level pins owned by devices: pin `LEVEL_PINS[i]` uses vector 0x40 + i.
const LEVEL_PINS: [usize; 3] = [3, 4, 5];
/// Edge pins pulsed by devices: vector 0x70 + i.
const EDGE_PINS: [usize; 2] = [8, 9];
/// Pins nobody asserts: their rewrites switch trigger mode and vector.
const CHURN_PINS: [usize; 4] = [20, 21, 22, 23];
/// The port a guest writes to acknowledge level device i (the device model
/// deasserts the pin, as a status read would).
const ACK_PORT: u16 = 0x100;

fn level_vec(i: usize) -> u8 {
    0x40 + i as u8
}
fn edge_vec(i: usize) -> u8 {
    0x70 + i as u8
}
fn msi_vec(cpu: usize) -> u8 {
    0x90 + cpu as u8
}

/// Counters shared by guests, devices and the checks.
#[derive(Default)]
struct Shared {
    /// Interrupts received by guests, per vector.
    received: Vec<AtomicU64>,
    /// EOIs written by guests.
    eois: AtomicU64,
    /// Device acknowledgements (level devices), per level device.
    acks: Vec<AtomicU64>,
    /// Assertions / pulses / MSIs raised, per vector.
    raised: Vec<AtomicU64>,
    /// Guests stop rewriting RTEs.
    stop_rewrites: AtomicBool,
    /// Rewrites done (both halves).
    rewrites: AtomicU64,
    /// VM_RUN exits per vCPU: [port I/O, ReqIdle, Debug, other].
    exits: Vec<[AtomicU64; 4]>,
    /// Signalled after every VM_RESUME_CPU: a vCPU thread that got a debug
    /// exit waits here until its vCPU leaves the debug set, as bhyve's
    /// `vmexit_debug` parks the vCPU thread (spinning on VM_RUN instead
    /// would starve everything else on a 2-core machine).
    resumed: (std::sync::Mutex<()>, std::sync::Condvar),
    /// The guests' own lock around an IOREGSEL+IOWIN pair (a guest OS
    /// serialises its IOAPIC accesses the same way).
    ioapic_lock: AtomicBool,
}

impl Shared {
    fn new() -> Self {
        Shared {
            received: (0..256).map(|_| AtomicU64::new(0)).collect(),
            acks: (0..LEVEL_PINS.len()).map(|_| AtomicU64::new(0)).collect(),
            raised: (0..256).map(|_| AtomicU64::new(0)).collect(),
            exits: (0..NVCPU).map(|_| Default::default()).collect(),
            ..Default::default()
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A redirection entry a guest may write: device pins keep vector and
/// trigger mode; churn pins get anything.
fn random_rte(rng: &mut Rng, pin: usize) -> u64 {
    let dest = rng.below(NVCPU as u64) << 56;
    let lowpri = if rng.below(2) == 0 { LOWPRI } else { 0 };
    if let Some(i) = LEVEL_PINS.iter().position(|p| *p == pin) {
        // Masked now and then; the writer unmasks it on its next write.
        let mask = if rng.below(4) == 0 { MASK } else { 0 };
        dest | mask | LEVEL | lowpri | u64::from(level_vec(i))
    } else if let Some(i) = EDGE_PINS.iter().position(|p| *p == pin) {
        // Never masked: a masked edge pin drops pulses by the rules.
        dest | lowpri | u64::from(edge_vec(i))
    } else {
        let level = if rng.below(2) == 0 { LEVEL } else { 0 };
        let mask = if rng.below(3) == 0 { MASK } else { 0 };
        dest | mask | level | lowpri | (0xA0 + rng.below(8))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Start,
    Idle,
    /// The EOI after acknowledging a level device.
    Eoi,
    /// IOREGSEL written; then the IOWIN write of `value`.
    Window(u64),
    /// IOWIN written; release the guest lock next.
    Release,
}

/// A vCPU's guest: handles interrupts (acknowledge the device, EOI), and
/// otherwise rewrites random redirection entries or computes.
struct StressGuest {
    shared: Arc<Shared>,
    rng: Rng,
    pending: VecDeque<u8>,
    phase: Phase,
    /// The next RTE write: (register, value) pairs, high half first.
    plan: VecDeque<(u64, u64)>,
}

impl GuestProgram for StressGuest {
    fn next(&mut self, _rip: u64) -> GuestAction {
        match self.phase {
            Phase::Start => {
                self.phase = Phase::Idle;
                return GuestAction::EnableInterrupts;
            }
            Phase::Eoi => {
                self.phase = Phase::Idle;
                self.shared.eois.fetch_add(1, SeqCst);
                return GuestAction::MmioWrite { gpa: LAPIC_EOI, size: 4, value: 0 };
            }
            Phase::Window(value) => {
                self.phase = if self.plan.is_empty() { Phase::Release } else { Phase::Idle };
                self.shared.rewrites.fetch_add(1, SeqCst);
                return GuestAction::MmioWrite { gpa: IOAPIC + 0x10, size: 4, value };
            }
            Phase::Release => {
                self.shared.ioapic_lock.store(false, SeqCst);
                self.phase = Phase::Idle;
            }
            Phase::Idle => {}
        }
        if let Some((reg, value)) = self.plan.pop_front() {
            // The rest of a two-half write: the guest still holds its lock.
            self.phase = Phase::Window(value);
            return GuestAction::MmioWrite { gpa: IOAPIC, size: 4, value: reg };
        }
        if let Some(vec) = self.pending.pop_front() {
            if let Some(i) = (0..LEVEL_PINS.len()).find(|i| level_vec(*i) == vec) {
                self.phase = Phase::Eoi;
                return GuestAction::PortOut { port: ACK_PORT + i as u16, size: 1, value: 0 };
            }
            self.shared.eois.fetch_add(1, SeqCst);
            return GuestAction::MmioWrite { gpa: LAPIC_EOI, size: 4, value: 0 };
        }
        if !self.shared.stop_rewrites.load(SeqCst) && self.rng.below(4) == 0 {
            if self
                .shared
                .ioapic_lock
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_err()
            {
                return GuestAction::Compute;
            }
            let pins: Vec<usize> = LEVEL_PINS.iter().chain(&EDGE_PINS).chain(&CHURN_PINS).copied().collect();
            let pin = pins[self.rng.below(pins.len() as u64) as usize];
            let rte = random_rte(&mut self.rng, pin);
            let reg = 0x10 + 2 * pin as u64;
            self.plan.push_back((reg + 1, rte >> 32));
            self.plan.push_back((reg, rte & 0xffff_ffff));
            if rte & MASK != 0 && LEVEL_PINS.contains(&pin) {
                // Unmask again in the same critical section.
                self.plan.push_back((reg, rte & 0xffff_ffff & !MASK));
            }
            let (reg, value) = self.plan.pop_front().unwrap();
            self.phase = Phase::Window(value);
            return GuestAction::MmioWrite { gpa: IOAPIC, size: 4, value: reg };
        }
        if self.rng.below(16) == 0 {
            GuestAction::Hlt
        } else {
            GuestAction::Compute
        }
    }

    fn interrupt(&mut self, vector: u8) {
        self.shared.received[usize::from(vector)].fetch_add(1, SeqCst);
        self.pending.push_back(vector);
    }

    fn read_result(&mut self, _value: u64) {}
}

/// Waits until `cond` holds, failing the test after `secs` (a stall) with
/// a dump of the interrupt state.
fn wait_for(vm: &Vm, shared: &Shared, what: &str, secs: u64, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("stalled: {what}\n{}", dump(vm, shared));
        }
        thread::yield_now();
    }
}

fn dump(vm: &Vm, shared: &Shared) -> String {
    let mut out = String::new();
    for id in 0..NVCPU {
        let v = vm.vcpu(id).unwrap();
        let sched = format!("{:?}", *v.lock());
        let e: Vec<u64> = shared.exits[id].iter().map(|c| c.load(SeqCst)).collect();
        out += &format!(
            "vCPU {id}: {sched} exits [inout, reqidle, debug, other] {e:?} irr {:x?} isr {:x?} tmr {:x?} guest {:?}\n",
            vm.irr_snapshot(id).unwrap(),
            vm.isr_snapshot(id).unwrap(),
            vm.tmr_snapshot(id).unwrap(),
            vm.guest_stats(id),
        );
    }
    for pin in LEVEL_PINS.iter().chain(&EDGE_PINS) {
        out += &format!(
            "pin {pin}: rte {:#018x} count {}\n",
            vm.vioapic().rte(*pin),
            vm.vioapic().assert_count(*pin)
        );
    }
    out
}

fn run_stress(secs: u64) -> String {
    let vm = Arc::new(Vm::with_sim_backend("stress", NVCPU).unwrap());
    let shared = Arc::new(Shared::new());
    for id in 0..NVCPU {
        let lock = vm.lock_one(id).unwrap();
        vm.activate_cpu(id).unwrap();
        // Software-enable the local APIC before any device raises anything
        // (a disabled APIC drops fixed interrupts, by the rules).
        vm.mmio_write(id, LAPIC_SVR, 4, 0x1ff).unwrap();
        let guest = StressGuest {
            shared: shared.clone(),
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1)),
            pending: VecDeque::new(),
            phase: Phase::Start,
            plan: VecDeque::new(),
        };
        vm.set_guest(&lock, Some(Box::new(guest))).unwrap();
    }
    // Initial table: devices unmasked, aimed at vCPU i % NVCPU.
    for (i, pin) in LEVEL_PINS.iter().enumerate() {
        write_rte(&vm, *pin, ((i % NVCPU) as u64) << 56 | LEVEL | u64::from(level_vec(i)));
    }
    for (i, pin) in EDGE_PINS.iter().enumerate() {
        write_rte(&vm, *pin, ((i % NVCPU) as u64) << 56 | u64::from(edge_vec(i)));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut vcpu_threads = Vec::new();
    for id in 0..NVCPU {
        let (vm, shared) = (vm.clone(), shared.clone());
        vcpu_threads.push(thread::spawn(move || {
            let mut exits = 0u64;
            loop {
                let lock = vm.lock_one(id).unwrap();
                let exit = vm.run(&lock).unwrap();
                drop(lock);
                exits += 1;
                let kind = match exit.kind {
                    ExitKind::Inout { .. } => 0,
                    ExitKind::ReqIdle => 1,
                    ExitKind::Debug => 2,
                    _ => 3,
                };
                shared.exits[id][kind].fetch_add(1, SeqCst);
                match exit.kind {
                    ExitKind::Inout { port, .. } if port >= ACK_PORT => {
                        let i = usize::from(port - ACK_PORT);
                        vm.ioapic_deassert_irq(LEVEL_PINS[i] as i32).unwrap();
                        shared.acks[i].fetch_add(1, SeqCst);
                    }
                    ExitKind::Suspended(_) => return exits,
                    ExitKind::Debug => {
                        let mut g = shared.resumed.0.lock().unwrap();
                        while vm.cpuset(CpuSetKind::Debug).contains(id) {
                            let (g2, timeout) =
                                shared.resumed.1.wait_timeout(g, Duration::from_secs(15)).unwrap();
                            assert!(!timeout.timed_out(), "vCPU {id}: never resumed");
                            g = g2;
                        }
                    }
                    _ => {}
                }
            }
        }));
    }

    // Devices: raise, wait until handled, repeat.
    let mut devices = Vec::new();
    for (i, &pin) in LEVEL_PINS.iter().enumerate() {
        let (vm, shared, stop) = (vm.clone(), shared.clone(), stop.clone());
        devices.push(thread::spawn(move || {
            while !stop.load(SeqCst) {
                let acked = shared.acks[i].load(SeqCst);
                vm.ioapic_assert_irq(pin as i32).unwrap();
                shared.raised[usize::from(level_vec(i))].fetch_add(1, SeqCst);
                wait_for(&vm, &shared, "level device ack", 15, || shared.acks[i].load(SeqCst) > acked);
            }
        }));
    }
    for (i, &pin) in EDGE_PINS.iter().enumerate() {
        let (vm, shared, stop) = (vm.clone(), shared.clone(), stop.clone());
        devices.push(thread::spawn(move || {
            let v = usize::from(edge_vec(i));
            while !stop.load(SeqCst) {
                let got = shared.received[v].load(SeqCst);
                vm.ioapic_pulse_irq(pin as i32).unwrap();
                shared.raised[v].fetch_add(1, SeqCst);
                wait_for(&vm, &shared, "edge pulse receipt", 15, || shared.received[v].load(SeqCst) > got);
            }
        }));
    }
    {
        let (vm, shared, stop) = (vm.clone(), shared.clone(), stop.clone());
        devices.push(thread::spawn(move || {
            let mut cpu = 0;
            while !stop.load(SeqCst) {
                let v = usize::from(msi_vec(cpu));
                let got = shared.received[v].load(SeqCst);
                vm.lapic_msi(0xFEE0_0000 | (cpu as u64) << 12, v as u64).unwrap();
                shared.raised[v].fetch_add(1, SeqCst);
                wait_for(&vm, &shared, "MSI receipt", 15, || shared.received[v].load(SeqCst) > got);
                cpu = (cpu + 1) % NVCPU;
            }
        }));
    }

    // Control: lock-all, lock-one, suspend/resume a vCPU.
    let control_ops = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let mut controls = Vec::new();
    for kind in 0..3 {
        let (vm, stop, ops, shared) = (vm.clone(), stop.clone(), control_ops.clone(), shared.clone());
        controls.push(thread::spawn(move || {
            let mut rng = Rng(0xDEAD_BEEF + kind as u64);
            while !stop.load(SeqCst) {
                let id = rng.below(NVCPU as u64) as usize;
                match kind {
                    0 => drop(vm.lock_all().unwrap()),
                    1 => drop(vm.lock_one(id).unwrap()),
                    _ => {
                        vm.suspend_cpu(Some(id)).unwrap();
                        vm.resume_cpu(Some(id)).unwrap();
                        let _g = shared.resumed.0.lock().unwrap();
                        shared.resumed.1.notify_all();
                    }
                }
                ops[kind].fetch_add(1, SeqCst);
                thread::yield_now();
            }
        }));
    }

    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        thread::yield_now();
        thread::park_timeout(Duration::from_millis(50));
    }
    // Stop the load; let every raised interrupt be handled and EOIed.
    stop.store(true, SeqCst);
    for t in devices.into_iter().chain(controls) {
        wait_for(&vm, &shared, "load threads to stop", 15, || t.is_finished());
        t.join().unwrap();
    }
    shared.stop_rewrites.store(true, SeqCst);
    let raised_total = || (0..256).map(|v| shared.raised[v].load(SeqCst)).sum::<u64>();
    let received_total = || (0..256).map(|v| shared.received[v].load(SeqCst)).sum::<u64>();
    wait_for(&vm, &shared, "drain: every interrupt received", 15, || received_total() >= raised_total());
    wait_for(&vm, &shared, "drain: every interrupt EOIed", 15, || shared.eois.load(SeqCst) >= received_total());
    wait_for(&vm, &shared, "drain: guests left their IOAPIC critical sections", 15, || {
        !shared.ioapic_lock.load(SeqCst)
    });
    // Suspend: every vCPU's last entry to RUNNING applies its staged TMR.
    vm.suspend(2).unwrap();
    let exits: u64 = vcpu_threads.into_iter().map(|t| t.join().unwrap()).sum();

    // Exact counts: nothing lost, nothing duplicated.
    for v in 0..256 {
        let (r, g) = (shared.raised[v].load(SeqCst), shared.received[v].load(SeqCst));
        assert_eq!(g, r, "vector {v:#x}: raised {r}, received {g}");
    }
    for (i, pin) in LEVEL_PINS.iter().enumerate() {
        assert_eq!(shared.acks[i].load(SeqCst), shared.raised[usize::from(level_vec(i))].load(SeqCst));
        assert_eq!(vm.vioapic().rte(*pin) & (1 << 14), 0, "pin {pin}: remote IRR stuck");
    }
    assert_eq!(shared.eois.load(SeqCst), received_total(), "one EOI per interrupt");
    for pin in 0..32 {
        assert_eq!(vm.vioapic().assert_count(pin), 0, "pin {pin}: assert count");
    }
    // TMR = what the final table implies (level fixed/lowest-priority
    // entries, masked or not, set their vector at their destination).
    let mut expected = [[0u32; 8]; NVCPU];
    for pin in 0..32 {
        let rte = vm.vioapic().rte(pin);
        let delmode = (rte >> 8) & 7;
        if rte & LEVEL != 0 && delmode <= 1 {
            let dest = (rte >> 56) as usize;
            if dest < NVCPU {
                let vec = (rte & 0xff) as usize;
                expected[dest][vec / 32] |= 1 << (vec % 32);
            }
        }
    }
    for (id, exp) in expected.iter().enumerate() {
        assert_eq!(vm.irr_snapshot(id).unwrap(), [0; 8], "vCPU {id}: IRR drained");
        assert_eq!(vm.isr_snapshot(id).unwrap(), [0; 8], "vCPU {id}: ISR drained");
        assert_eq!(&vm.tmr_snapshot(id).unwrap(), exp, "vCPU {id}: TMR vs final table");
    }

    let s = vm.ioapic_stats();
    format!(
        "{secs} s: {} RTE half-writes by guests ({} by the vioapic count), {} needing TMR work, \
         {} block_runs, {} TMR stagings, {} deferred sends; {} interrupts raised and received \
         ({} level, {} ioapic sends), {} EOIs; {} lock-alls, {} lock-ones, {} suspend/resume \
         cycles; {} VM_RUN exits",
        shared.rewrites.load(SeqCst),
        s.rte_writes,
        s.tmr_updates,
        s.tmr_block_runs,
        s.tmr_stagings,
        s.deferred_sends,
        raised_total(),
        (0..LEVEL_PINS.len()).map(|i| shared.acks[i].load(SeqCst)).sum::<u64>(),
        s.interrupts,
        shared.eois.load(SeqCst),
        control_ops[0].load(SeqCst),
        control_ops[1].load(SeqCst),
        control_ops[2].load(SeqCst),
        exits,
    )
}

/// Writes a whole RTE as a non-vCPU thread (initial setup only).
fn write_rte(vm: &Vm, pin: usize, rte: u64) {
    let lock = vm.lock_one(0).unwrap();
    let reg = 0x10 + 2 * pin as u64;
    for (r, v) in [(reg + 1, rte >> 32), (reg, rte & 0xffff_ffff)] {
        vm.mmio_write(lock.id(), IOAPIC, 4, r).unwrap();
        vm.mmio_write(lock.id(), IOAPIC + 0x10, 4, v).unwrap();
    }
}

#[test]
#[ignore = "a minute long: `make check` and `make stress` run it (release, deadlock detection)"]
fn stress_rte_writes_against_interrupts_and_vcpu_locking() {
    let secs = std::env::var("VMM_RS_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    #[cfg(feature = "deadlock-detection")]
    let detector_stop = {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        thread::spawn(move || {
            while !s.load(SeqCst) {
                thread::park_timeout(Duration::from_millis(200));
                let cycles = parking_lot::deadlock::check_deadlock();
                if !cycles.is_empty() {
                    eprintln!("parking_lot found {} deadlock cycle(s):", cycles.len());
                    for t in cycles.iter().flatten() {
                        eprintln!("thread {:?}\n{:?}", t.thread_id(), t.backtrace());
                    }
                    std::process::abort();
                }
            }
        });
        stop
    };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(run_stress(secs));
    });
    match rx.recv_timeout(Duration::from_secs(secs + 180)) {
        Ok(report) => println!("stress: {report}"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("watchdog: the stress run stalled"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the stress run failed (see above)"),
    }
    #[cfg(feature = "deadlock-detection")]
    detector_stop.store(true, SeqCst);
}
