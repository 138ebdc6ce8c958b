//! The Rust-side benchmarks of issue 6 (criterion), and the one table
//! `make bench` prints: these figures, the C program's (`irq_bench.c`,
//! its TSV in `target/bench/c.tsv`: the C face and Linux KVM), ratios and
//! targets. The table also goes to `target/bench/table.md`.
//!
//! Every figure is the median over the stretches criterion timed (ns per
//! operation) or, for latencies, percentiles of individually timed
//! samples.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::Criterion;
use vmm_rs::exit::ExitKind;
use vmm_rs::guest::{GuestAction, GuestProgram};
use vmm_rs::vcpu::VcpuState;
use vmm_rs::vm::Vm;

const IOAPIC: u64 = 0xFEC0_0000;
const LAPIC_SVR: u64 = 0xFEE0_00F0;
const LAPIC_EOI: u64 = 0xFEE0_00B0;
const LEVEL: u64 = 1 << 15;
const MASK: u64 = 1 << 16;

/// Nanoseconds since the first call (a clock shared by threads).
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A guest that computes forever, counting its steps.
struct Busy(Arc<AtomicU64>);

impl GuestProgram for Busy {
    fn next(&mut self, _rip: u64) -> GuestAction {
        self.0.fetch_add(1, Relaxed);
        GuestAction::Compute
    }
    fn interrupt(&mut self, _vector: u8) {}
    fn read_result(&mut self, _value: u64) {}
}

/// A guest that does `out 0x80` on every step.
struct PortOut;

impl GuestProgram for PortOut {
    fn next(&mut self, _rip: u64) -> GuestAction {
        GuestAction::PortOut { port: 0x80, size: 1, value: 0 }
    }
    fn interrupt(&mut self, _vector: u8) {}
    fn read_result(&mut self, _value: u64) {}
}

/// A guest that halts; an interrupt records when it arrived and is EOIed.
struct Halter {
    started: bool,
    eoi_due: bool,
    received: Arc<AtomicU64>,
    at_ns: Arc<AtomicU64>,
}

impl GuestProgram for Halter {
    fn next(&mut self, _rip: u64) -> GuestAction {
        if !self.started {
            self.started = true;
            return GuestAction::EnableInterrupts;
        }
        if std::mem::take(&mut self.eoi_due) {
            return GuestAction::MmioWrite { gpa: LAPIC_EOI, size: 4, value: 0 };
        }
        GuestAction::Hlt
    }
    fn interrupt(&mut self, _vector: u8) {
        self.at_ns.store(now_ns(), SeqCst);
        self.received.fetch_add(1, SeqCst);
        self.eoi_due = true;
    }
    fn read_result(&mut self, _value: u64) {}
}

/// A VM with `n` active vCPUs, software-enabled local APICs, and the
/// given guests (None: the idle loop).
fn vm_with(name: &str, guests: Vec<Option<Box<dyn GuestProgram>>>) -> Arc<Vm> {
    let vm = Arc::new(Vm::with_sim_backend(name, guests.len()).unwrap());
    for (id, g) in guests.into_iter().enumerate() {
        let lock = vm.lock_one(id).unwrap();
        vm.activate_cpu(id).unwrap();
        vm.mmio_write(id, LAPIC_SVR, 4, 0x1ff).unwrap();
        vm.set_guest(&lock, g).unwrap();
    }
    vm
}

/// One IOREGSEL + IOWIN write of an RTE half, as vCPU `writer`'s guest
/// would do it (the caller holds that vCPU).
fn rte_half(vm: &Vm, writer: usize, pin: usize, high: bool, value: u64) {
    vm.mmio_write(writer, IOAPIC, 4, 0x10 + 2 * pin as u64 + u64::from(high)).unwrap();
    vm.mmio_write(writer, IOAPIC + 0x10, 4, value).unwrap();
}

fn program_rte(vm: &Vm, pin: usize, low: u64, dest: u64) {
    let lock = vm.lock_one(0).unwrap();
    rte_half(vm, lock.id(), pin, true, dest << 24);
    rte_half(vm, lock.id(), pin, false, low);
}

/// Binds the calling thread to `cpu`, or (None) lets it run anywhere.
/// The RTE-write figures put the writer on CPU 0 and the busy vCPUs on
/// CPU 1, so that what the guests lose is the protocol's doing, not the
/// writer's share of a CPU.
fn pin_to(cpu: Option<usize>) {
    // Online CPUs, not `available_parallelism` (which shrinks with our own
    // affinity mask).
    // SAFETY: sysconf has no preconditions.
    let n = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1).max(1);
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays in bounds.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        match cpu {
            Some(c) if n >= 2 => libc::CPU_SET(c % n, &mut set),
            _ => (0..n).for_each(|c| libc::CPU_SET(c, &mut set)),
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Threads looping VM_RUN on vCPUs whose guests never exit on their own.
struct Runners {
    vm: Arc<Vm>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Runners {
    fn start(vm: &Arc<Vm>, ids: &[usize], cpu: Option<usize>) -> Runners {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = ids
            .iter()
            .map(|&id| {
                let (vm, stop) = (vm.clone(), stop.clone());
                thread::spawn(move || {
                    pin_to(cpu);
                    loop {
                        let lock = vm.lock_one(id).unwrap();
                        if stop.load(SeqCst) {
                            return;
                        }
                        let _ = vm.run(&lock);
                    }
                })
            })
            .collect();
        let r = Runners { vm: vm.clone(), stop, threads };
        for &id in ids {
            r.wait_running(id);
        }
        r
    }

    fn wait_running(&self, id: usize) {
        let v = self.vm.vcpu(id).unwrap();
        while v.state() != VcpuState::Running {
            thread::yield_now();
        }
    }

    fn stop(self) {
        self.stop.store(true, SeqCst);
        // A lock-all sends every runner out of its guest (reqidle).
        drop(self.vm.lock_all().unwrap());
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Results by key (ns, or a count), for the table.
#[derive(Default)]
struct Results(BTreeMap<String, f64>);

impl Results {
    fn put(&mut self, key: &str, v: f64) {
        self.0.insert(key.to_string(), v);
    }
    fn get(&self, key: &str) -> Option<f64> {
        self.0.get(key).copied()
    }
}

/// Criterion's samples per benchmark.
const SAMPLES: usize = 20;

/// Runs `op` under criterion as `group/name`; returns the median ns per
/// op over the stretches criterion timed (the median, as the C program
/// takes of its batches: a stretch the host preempted does not move it),
/// and calls `window` with each stretch's (elapsed, iterations).
///
/// Only the last SAMPLES stretches are criterion's samples: before them it
/// warms up with 1, 2, 4, ... iterations, where the clock reads dominate a
/// short stretch; counting those moved the median up by about 1 ns a pair.
fn bench(c: &mut Criterion, group: &str, name: &str, mut op: impl FnMut(), mut window: impl FnMut(Duration, u64)) -> f64 {
    let mut per_op = Vec::new();
    let mut g = c.benchmark_group(group);
    // The group's size wins over a --sample-size given to criterion, so
    // that the last SAMPLES stretches are its samples.
    g.sample_size(SAMPLES);
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                op();
            }
            let e = t.elapsed();
            per_op.push(e.as_nanos() as f64 / iters.max(1) as f64);
            window(e, iters);
            e
        })
    });
    g.finish();
    let mut per_op = per_op.split_off(per_op.len().saturating_sub(SAMPLES));
    per_op.sort_by(f64::total_cmp);
    per_op.get(per_op.len() / 2).copied().unwrap_or(0.0)
}

fn percentiles(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64;
    (at(0.50), at(0.99))
}

/// 1. IOAPIC assert + deassert pairs through the core API.
fn irq_pairs(c: &mut Criterion, r: &mut Results) {
    let vm = vm_with("bench-irq", vec![None, None]);
    program_rte(&vm, 6, 0x40, 0); // unmasked edge, vector 0x40 -> vCPU 0
    for (name, pin) in [("masked", 5), ("edge", 6)] {
        let ns = bench(
            c,
            "irq_pair_rust",
            name,
            || {
                vm.ioapic_assert_irq(pin).unwrap();
                vm.ioapic_deassert_irq(pin).unwrap();
            },
            |_, _| {},
        );
        r.put(&format!("rust_{name}_1t"), ns);
    }
}

/// 2. RTE writes by vCPU 2 while vCPUs 0 and 1 run busy guests, under
/// the current protocol and the 2019 one.
fn rte_writes(c: &mut Criterion, r: &mut Results) {
    for legacy in [false, true] {
        let proto = if legacy { "legacy" } else { "fix" };
        let steps: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let vm = vm_with(
            &format!("bench-rte-{proto}"),
            vec![Some(Box::new(Busy(steps[0].clone()))), Some(Box::new(Busy(steps[1].clone()))), None],
        );
        // Programmed first: a 2019 rendezvous would wait for vCPUs that
        // have no thread yet.
        program_rte(&vm, 10, 0x50, 0);
        program_rte(&vm, 11, 0x60, 0);
        vm.set_legacy_protocol(legacy);
        let runners = Runners::start(&vm, &[0, 1], Some(1));
        pin_to(Some(0));
        let total_steps = || steps.iter().map(|s| s.load(Relaxed)).sum::<u64>();
        let entries = || (0..2).map(|id| vm.guest_stats(id).unwrap().entries).sum::<u64>();
        let writer = vm.lock_one(2).unwrap();

        // Guest steps per ns with the writer's thread busy but not writing.
        let (s0, e0, t0) = (total_steps(), entries(), Instant::now());
        while t0.elapsed() < Duration::from_millis(500) {
            black_box(vm.vioapic().rte(10));
        }
        let rate = (total_steps() - s0) as f64 / t0.elapsed().as_nanos() as f64;
        // Guest entries per step when nothing kicks the guests (one per
        // STEPS_PER_ENTRY steps, plus the odd timer check).
        let entries_per_step = (entries() - e0) as f64 / (total_steps() - s0).max(1) as f64;

        for kind in ["mask", "edge", "level"] {
            let mut n = 0u64;
            let (mut time, mut lost, mut writes) = (0f64, 0f64, 0u64);
            let mut s_before = total_steps();
            let (e_first, s_first) = (entries(), s_before);
            let ns = bench(
                c,
                "rte_write",
                &format!("{kind}_{proto}"),
                || {
                    n += 1;
                    match kind {
                        // (a) the Windows pattern: mask/unmask only.
                        "mask" => rte_half(&vm, 2, 10, false, 0x50 | if n % 2 == 0 { MASK } else { 0 }),
                        // (b) edge vector and destination changes.
                        "edge" if n % 2 == 0 => rte_half(&vm, 2, 10, false, 0x50 + (n / 2) % 2),
                        "edge" => rte_half(&vm, 2, 10, true, ((n / 2) % 2) << 24),
                        // (c) level <-> edge: TMR work on vCPU 0.
                        _ => rte_half(&vm, 2, 11, false, 0x60 | if n % 2 == 0 { LEVEL } else { 0 }),
                    }
                },
                |e, iters| {
                    let s = total_steps();
                    time += e.as_nanos() as f64;
                    lost += rate * e.as_nanos() as f64 - (s - s_before) as f64;
                    writes += iters;
                    s_before = s;
                },
            );
            // Entries beyond the unkicked rate: exits the writes forced.
            let forced = (entries() - e_first) as f64 - entries_per_step * (total_steps() - s_first) as f64;
            r.put(&format!("rte_{kind}_{proto}_exits"), forced / writes.max(1) as f64);
            r.put(&format!("rte_{kind}_{proto}"), ns);
            r.put(&format!("rte_{kind}_{proto}_lost"), lost / writes.max(1) as f64);
            // Busy guests' speed while the writes ran, against no writes.
            r.put(&format!("rte_{kind}_{proto}_speed"), 100.0 * (rate * time - lost) / (rate * time));
            // Back to a known entry for the next kind.
            rte_half(&vm, 2, 10, false, 0x50);
            rte_half(&vm, 2, 10, true, 0);
        }
        drop(writer);
        runners.stop();
        pin_to(None);
    }
}

/// 3. Lock-all latency with 0, 1 and 2 vCPUs running busy guests.
fn lock_all_latency(r: &mut Results) {
    for busy in 0..=2usize {
        let steps = Arc::new(AtomicU64::new(0));
        let guests: Vec<Option<Box<dyn GuestProgram>>> = (0..2)
            .map(|i| (i < busy).then(|| Box::new(Busy(steps.clone())) as Box<dyn GuestProgram>))
            .collect();
        let vm = vm_with(&format!("bench-lockall-{busy}"), guests);
        let ids: Vec<usize> = (0..busy).collect();
        let runners = Runners::start(&vm, &ids, None);
        let mut samples = Vec::with_capacity(3000);
        for _ in 0..3000 {
            for &id in &ids {
                runners.wait_running(id);
            }
            let t = Instant::now();
            let all = vm.lock_all().unwrap();
            samples.push(t.elapsed().as_nanos() as u64);
            drop(all);
        }
        runners.stop();
        let (p50, p99) = percentiles(samples);
        r.put(&format!("lockall_{busy}_p50"), p50);
        r.put(&format!("lockall_{busy}_p99"), p99);
    }
}

/// 4. VM_RUN returning a port I/O exit and resuming.
fn exit_round_trip(c: &mut Criterion, r: &mut Results) {
    let vm = vm_with("bench-exit", vec![Some(Box::new(PortOut))]);
    let ns = bench(
        c,
        "exit",
        "vm_run_inout",
        || {
            let lock = vm.lock_one(0).unwrap();
            let e = vm.run(&lock).unwrap();
            debug_assert!(matches!(e.kind, ExitKind::Inout { .. }));
            black_box(e);
        },
        |_, _| {},
    );
    r.put("rust_vm_run_inout_exit", ns);
}

/// 5. Device thread asserts a pin -> the halted guest on vCPU 0's thread
/// receives the vector.
fn wake_up_latency(r: &mut Results) {
    let (received, at_ns) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let guest = Halter { started: false, eoi_due: false, received: received.clone(), at_ns: at_ns.clone() };
    let vm = vm_with("bench-wake", vec![Some(Box::new(guest)), None]);
    program_rte(&vm, 7, 0x40, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let runner = {
        let (vm, stop) = (vm.clone(), stop.clone());
        thread::spawn(move || loop {
            let lock = vm.lock_one(0).unwrap();
            if stop.load(SeqCst) {
                return;
            }
            let _ = vm.run(&lock);
        })
    };
    let v0 = vm.vcpu(0).unwrap();
    let mut samples = Vec::with_capacity(3000);
    for i in 0..3000u64 {
        while v0.state() != VcpuState::Sleeping {
            thread::yield_now();
        }
        let t0 = now_ns();
        vm.ioapic_pulse_irq(7).unwrap();
        while received.load(SeqCst) <= i {
            std::hint::spin_loop();
        }
        samples.push(at_ns.load(SeqCst) - t0);
    }
    stop.store(true, SeqCst);
    drop(vm.lock_all().unwrap());
    runner.join().unwrap();
    let (p50, p99) = percentiles(samples);
    r.put("wake_p50", p50);
    r.put("wake_p99", p99);
}

/// The C program's figures (`key<TAB>ns<TAB>description` lines).
fn read_c_results(r: &mut Results) -> Option<String> {
    let path = std::env::var("VMM_RS_BENCH_C").unwrap_or_else(|_| "../target/bench/c.tsv".into());
    let text = std::fs::read_to_string(&path).ok()?;
    for line in text.lines() {
        let mut f = line.split('\t');
        if let (Some(k), Some(v)) = (f.next(), f.next()) {
            if let Ok(v) = v.parse() {
                r.put(&format!("c_{k}"), v);
            }
        }
    }
    Some(path)
}

fn fmt_ns(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10_000.0 => format!("{:.1} us", v / 1000.0),
        Some(v) => format!("{v:.1} ns"),
        None => "n/a".into(),
    }
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    Some(num? / den?)
}

fn verdict(x: Option<f64>, target: f64) -> &'static str {
    match x {
        Some(x) if x >= target => "met",
        Some(_) => "MISSED",
        None => "n/a",
    }
}

fn table(r: &Results, c_source: Option<&str>) -> String {
    let mut t = String::new();
    let row = |t: &mut String, a: &str, b: String, cmp: String| {
        let _ = writeln!(t, "| {a} | {b} | {cmp} |");
    };
    let _ = writeln!(t, "| Figure | Value | Compared |");
    let _ = writeln!(t, "|---|---|---|");
    let kvm = |k: &str| r.get(&format!("c_kvm_{k}"));
    // 1. IRQ path.
    for (label, key, kvm_key) in [
        ("IRQ pair, masked pin, Rust core, 1 thread", "rust_masked_1t", "masked_1t"),
        ("IRQ pair, edge pin -> vCPU, Rust core, 1 thread", "rust_edge_1t", "edge_1t"),
        ("IRQ pair, masked pin, vm_ioapic_assert_irq, 1 thread", "c_vmmapi_masked_1t", "masked_1t"),
        ("IRQ pair, edge pin -> vCPU, vm_ioapic_assert_irq, 1 thread", "c_vmmapi_edge_1t", "edge_1t"),
        ("IRQ pair, masked pin, vmm_ioctl, 1 thread", "c_ioctl_masked_1t", "masked_1t"),
        ("IRQ pair, edge pin -> vCPU, vmm_ioctl, 1 thread", "c_ioctl_edge_1t", "edge_1t"),
        ("IRQ pair, masked pins, vm_ioapic_assert_irq, 2 threads (per thread)", "c_vmmapi_masked_2t", "masked_2t"),
        ("IRQ pair, edge pins, vm_ioapic_assert_irq, 2 threads (per thread)", "c_vmmapi_edge_2t", "masked_2t"),
    ] {
        if r.get(key).is_none() && !key.starts_with("c_") {
            continue; // part not run
        }
        let x = ratio(kvm(kvm_key), r.get(key));
        let cmp = match x {
            Some(x) => format!("KVM_IRQ_LINE pair is {x:.1}x slower (target >= 20x: {})", verdict(Some(x), 20.0)),
            None => "KVM column skipped".into(),
        };
        row(&mut t, label, fmt_ns(r.get(key)), cmp);
    }
    for (label, k) in [
        ("KVM_IRQ_LINE pair, masked GSI, 1 thread", "masked_1t"),
        ("KVM_IRQ_LINE pair, edge GSI -> vCPU, 1 thread", "edge_1t"),
        ("KVM_IRQ_LINE pair, masked GSIs, 2 threads (per thread)", "masked_2t"),
    ] {
        row(&mut t, label, fmt_ns(kvm(k)), "Linux in-kernel IOAPIC (/dev/kvm)".into());
    }
    row(
        &mut t,
        "getppid() x 2 (floor of any kernel pair)",
        fmt_ns(r.get("c_getppid_pair")),
        format!("{} per call", fmt_ns(r.get("c_getppid"))),
    );
    row(
        &mut t,
        "One atomic fetch-and-add (floor of any lock-free pair)",
        fmt_ns(r.get("c_rmw_xadd")),
        format!("load + compare-and-swap: {}", fmt_ns(r.get("c_rmw_cas"))),
    );
    // 2. RTE writes.
    for (label, kind, target) in [
        ("RTE write (a) mask/unmask only", "mask", 50.0),
        ("RTE write (b) edge vector/destination", "edge", 50.0),
        ("RTE write (c) level <-> edge (TMR staging)", "level", 1.0),
    ] {
        let fix = r.get(&format!("rte_{kind}_fix"));
        let leg = r.get(&format!("rte_{kind}_legacy"));
        if fix.is_none() && leg.is_none() {
            continue; // part not run
        }
        let x = ratio(leg, fix);
        let lost = |proto: &str| {
            let l = r.get(&format!("rte_{kind}_{proto}_lost")).unwrap_or(f64::NAN);
            let speed = r.get(&format!("rte_{kind}_{proto}_speed")).unwrap_or(f64::NAN);
            let exits = r.get(&format!("rte_{kind}_{proto}_exits")).unwrap_or(f64::NAN);
            format!(
                "{:.2} guest exits forced per write, {:.0} guest steps lost per write, guests at {speed:.0}% speed",
                exits.max(0.0),
                l.max(0.0)
            )
        };
        row(
            &mut t,
            &format!("{label}, 2 vCPUs busy"),
            format!("{} ({})", fmt_ns(fix), lost("fix")),
            format!(
                "2019 protocol: {} ({}); {:.1}x (target >= {target}x: {})",
                fmt_ns(leg),
                lost("legacy"),
                x.unwrap_or(f64::NAN),
                verdict(x, target)
            ),
        );
    }
    // 3. Lock-all.
    for busy in (0..=2).filter(|b| r.get(&format!("lockall_{b}_p50")).is_some()) {
        row(
            &mut t,
            &format!("Lock-all latency, {busy} of 2 vCPUs running busy guests"),
            format!("p50 {}", fmt_ns(r.get(&format!("lockall_{busy}_p50")))),
            format!("p99 {}", fmt_ns(r.get(&format!("lockall_{busy}_p99")))),
        );
    }
    // 4. Exit round trip.
    if r.get("rust_vm_run_inout_exit").is_some() {
        row(&mut t, "Exit round trip: VM_RUN -> port I/O exit -> resume, Rust core", fmt_ns(r.get("rust_vm_run_inout_exit")), "ns per exit".into());
    }
    row(&mut t, "Exit round trip through vm_run() (C face)", fmt_ns(r.get("c_c_vm_run_inout_exit")), "ns per exit".into());
    // 5. Wake-up.
    if r.get("wake_p50").is_some() {
        row(
            &mut t,
            "Wake-up: pin asserted -> halted guest on another thread has the vector",
            format!("p50 {}", fmt_ns(r.get("wake_p50"))),
            format!("p99 {}", fmt_ns(r.get("wake_p99"))),
        );
    }
    if c_source.is_none() {
        let _ = writeln!(t, "\n(C figures missing: run `make bench` to build and run benches/irq_bench.c first.)");
    }
    t
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut r = Results::default();
    // VMM_RS_BENCH_PARTS=irq,rte,exit,lockall,wake selects parts (all by
    // default), for profiling one of them; the table leaves out the rows
    // of parts not run.
    let parts = std::env::var("VMM_RS_BENCH_PARTS").unwrap_or_default();
    let on = |p: &str| parts.is_empty() || parts.split(',').any(|x| x == p);
    if on("irq") {
        irq_pairs(&mut c, &mut r);
    }
    if on("rte") {
        rte_writes(&mut c, &mut r);
    }
    if on("exit") {
        exit_round_trip(&mut c, &mut r);
    }
    if on("lockall") {
        lock_all_latency(&mut r);
    }
    if on("wake") {
        wake_up_latency(&mut r);
    }
    c.final_summary();

    let c_source = read_c_results(&mut r);
    let t = table(&r, c_source.as_deref());
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    println!("\nvmm_rs benchmarks ({cpus} CPUs)\n\n{t}");
    let _ = std::fs::create_dir_all("../target/bench");
    let _ = std::fs::write("../target/bench/table.md", t);
}
