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

/// An EPERM from a guest's local APIC store is the APIC refusing an SMI
/// or remote-read IPI it stored in its xAPIC ICR (FreeBSD's
/// `vlapic_icrlo_write_handler`); any other EPERM is a bug. Called with
/// the vCPU held, right after the failed VM_RUN.
pub fn assert_icr_holds_unhandled_ipi(vcpu: &crate::vcpu::Vcpu) {
    use crate::vlapic::regs::{off, DELMODE_MASK, DELMODE_RR, DELMODE_SMI};
    let icr = vcpu.vlapic.mmio_read(off::ICR_LO, std::time::Instant::now());
    assert!(matches!(icr & DELMODE_MASK, DELMODE_SMI | DELMODE_RR), "EPERM, but the ICR holds {icr:#x}");
}

/// An idle VM with `memsize` bytes of guest RAM in the standard layout,
/// every map made (`vm_setup_memory` with VM_MMAP_ALL), as libvmmapi's
/// callers have it.
pub fn vm_with_standard_memory(name: &str, memsize: usize) -> crate::vm::Vm {
    let vm = crate::vm::Vm::with_idle_backend(name, 1).unwrap();
    let all = vm.lock_all().unwrap();
    vm.mem_write(&all).unwrap().setup_memory(memsize, crate::mem::VM_MMAP_ALL).unwrap();
    drop(all);
    vm
}

/// Writes the low half of RTE `pin` as vCPU `writer` (IOREGSEL, then
/// IOWIN), as a guest's two MMIO stores.
pub fn write_rte_low(vm: &crate::vm::Vm, writer: usize, pin: u32, low: u32) {
    use crate::vioapic::IOAPIC_BASE;
    vm.mmio_write(writer, IOAPIC_BASE, 4, u64::from(0x10 + 2 * pin)).unwrap();
    vm.mmio_write(writer, IOAPIC_BASE + 0x10, 4, u64::from(low)).unwrap();
}

/// xorshift64*: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `VMM_RS_FUZZ_SEED` if set, else `default` (made odd:
    /// xorshift never leaves 0), so a failing fuzz run replays exactly.
    pub fn from_env(default: u64) -> Rng {
        let seed = std::env::var("VMM_RS_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    /// An i32 near the valid range [lo, hi), or anything.
    pub fn around(&mut self, lo: i32, hi: i32) -> i32 {
        match self.below(8) {
            0 => self.next() as i32,
            1 => lo - 1 - self.below(3) as i32,
            2 => hi + self.below(3) as i32,
            _ => lo + self.below((hi - lo) as u64) as i32,
        }
    }
}
