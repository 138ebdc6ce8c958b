//! A virtual machine: its vCPUs, cpusets, suspend state, topology,
//! rendezvous and the vCPU locking protocol of FreeBSD `vmm_dev.c`
//! (lock one vCPU, lock all vCPUs).
//!
//! # Lock order (whole crate)
//!
//! 0. The registry of VM names (`registry`) and the C face's handle table
//!    (`ffi::handle`): held only to look up or insert (the registry also
//!    while a new VM is built and its timer thread started), never across
//!    a call into an existing VM.
//! 1. `Vm::lock_all_serial` (lock-all callers, one at a time), then the
//!    vCPUs frozen by lock-all in ascending id order (a freeze is a wait
//!    for IDLE, not a mutex, and services pending rendezvous).
//!    `Vm::callout_gate` comes next: the callout thread holds it shared
//!    while it fires timers (taking the locks below), VM_REINIT holds it
//!    exclusively while it resets the devices.
//! 2. `Vm::mem` (guest memory; exclusive with every vCPU frozen, or
//!    briefly by `destroy`). The simulated backend takes it shared, under
//!    its guest-program mutex (below), for the guest's own RAM accesses
//!    and the processor's IDT reads (with no register or vlapic lock held):
//!    out of rank order, which is safe because no thread holding `mem`,
//!    shared or exclusive, waits for a vCPU or a guest-program mutex. (A
//!    RUNNING vCPU may wait behind `destroy`'s short exclusive hold, never
//!    behind a lock-all holder's, which needs it frozen first.)
//!    `Vhpet::state` (the HPET) and `Vatpic::state` (the 8259 pair): each
//!    held while its device raises and lowers interrupts (vioapic pins,
//!    MSIs, LINT0), so they rank before everything below; each is taken
//!    with no other lock held but rank 1 (VM_REINIT, exclusive on the
//!    callout gate; the timer thread, shared on it) or a guest-program
//!    mutex (a C callback's `vm_isa_*`), never one under the other.
//! 3. `Vioapic::write_lock` (the RTE write lock: exclusive, serialises RTE
//!    writes and their TMR staging), then `Vioapic::table` (the vioapic
//!    table mutex: redirection table with remote IRR, IOREGSEL, stats;
//!    writes of the per-pin entry copies). Assert counts, edge sends and
//!    the entry copies' in-flux marks are atomics: assert, deassert and
//!    pulse take no vioapic lock except to send a level entry, which (like
//!    EOI) takes only the table mutex. See `vioapic`.
//! 4. The rendezvous mutex (no other lock is taken while it is held, and
//!    callbacks run without it).
//! 5. A vCPU mutex (`Vcpu::inner`), then its vlapic mutex
//!    (`Vlapic::state`), then its registers. At most one vlapic mutex is
//!    held at a time, and no vCPU is notified while one is held. (An
//!    interrupt merging into an already pending vector reads an atomic
//!    copy of IRR and TMR instead: see `vlapic`.)
//! 6. `Vm::cpus` (cpusets, topology): a leaf, taken under any of the
//!    above and never held while taking another lock. So are the callout
//!    thread's wake-up mutex and join-handle mutex (`CalloutWaker`).
//!    The C face's wait-for registry of guest callbacks (`ffi::reentry`)
//!    is a leaf too: taken with no core lock held, or under the vioapic
//!    write lock and table mutex (an RTE write reporting its
//!    `block_run`s, `peer_wait`), and its holder never waits.
//!    `Vm::destroy` waits for the callout thread to exit, holding no lock
//!    that thread takes. That thread never takes the lock-all serialiser
//!    or the vioapic write lock (the locks held while waiting for a
//!    vCPU), nor a guest-program mutex, so it never waits for a vCPU, and
//!    the destroying thread may be one in a C guest callback (see
//!    `CalloutWaker::stop_and_join`).
//! 7. The vRTC and vPIT mutexes (`Vrtc::state`, `Vatpit::state`): leaves,
//!    taken with no other lock held but rank 1 (VM_REINIT, and the timer
//!    thread's shared callout gate) or a guest-program mutex (a C
//!    callback's `vm_rtc_*`); the IRQ 8 and
//!    IRQ 0 they raise are delivered (8259, then vioapic) after they are
//!    released.
//!
//! No thread waits on another vCPU while holding a lock of ranks 2-6, with
//! one exception: the vioapic write lock is held across `Vcpu::block_run`,
//! which waits only while the target is RUNNING, and a RUNNING vCPU leaves
//! RUNNING (once kicked) without taking the write lock or any lock a
//! waiter holds.
//!
//! A simulated vCPU's guest-program mutex (`sim`) is taken with no core
//! lock held but lock-all's serialiser (VM_REINIT's `Backend::reinit`,
//! with every vCPU frozen): by the thread that runs or holds that vCPU,
//! and briefly by `Vm::guest_stats`, which waits at most for one guest
//! step or callback. Two acquisitions run against the order
//! under it, safely: the guest's own RAM accesses take `Vm::mem` shared,
//! and C guest callbacks run under it and may assert pins and send MSIs
//! (ranks 2-7 of devices and other vCPUs). Their calls that would wait for
//! a vCPU or guest program of their own VM fail with EDEADLK
//! (`ffi::reentry`). A callback that waits for another VM's vCPU or guest
//! program (a per-vCPU call, `vm_run`, a lock-all call,
//! `vmm_rs_guest_stats`) waits for that VM's callbacks, so callbacks of
//! VMs that wait for each other would deadlock, as mutexes taken in
//! opposite orders. Such waits from callbacks are registered in
//! `ffi::reentry`'s wait-for registry (its own mutex, a leaf of rank 6,
//! on that slow path only): the wait that would close a cycle among
//! callback threads fails with EDEADLK. The suspend wait and an RTE
//! write's `block_run`s of a vCPU run (or locked) from a callback are
//! reported there too (`peer_wait`). A cycle through a thread outside any
//! callback that waits for a vCPU while holding one (a lock-all caller
//! partway through, a plain `vm_run` whose RTE write waits in
//! `block_run`), through a thread waiting for the vioapic write lock, or
//! through a vCPU that waits for others in a rendezvous is not seen: such
//! calls between VMs should still follow one order.

use crate::backend::{Backend, IdleBackend};
use crate::callout_thread::CalloutWaker;
use crate::cpuset::{CpuSet, CPUSET_BITS};
use crate::error::{Error, Result};
use crate::exit::SuspendHow;
use crate::mem::GuestMemory;
use crate::rendezvous::{Post, Rendezvous, RendezvousFn};
use crate::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use crate::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use crate::vcpu::{Vcpu, VcpuState};
use crate::vioapic::Vioapic;
use crate::vatpic::Vatpic;
use crate::vatpit::Vatpit;
use crate::vhpet::Vhpet;
use crate::vpmtmr::Vpmtmr;
use crate::vrtc::Vrtc;

/// FreeBSD's default number of vCPUs per VM (`VM_MAXCPU`).
pub const DEFAULT_MAXCPUS: usize = 16;

/// Which cpuset `VM_GET_CPUS` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSetKind {
    Active,
    Suspended,
    Debug,
}

/// The CPU topology reported to the guest (`VM_GET_TOPOLOGY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    pub sockets: u16,
    pub cores: u16,
    pub threads: u16,
    pub maxcpus: u16,
}

/// VM-wide vCPU bookkeeping, protected by `Vm::cpus`.
#[derive(Debug, Default)]
pub struct CpuSets {
    pub active: CpuSet,
    /// vCPUs that have acknowledged a VM-wide suspend in their run loop.
    pub suspended: CpuSet,
    /// vCPUs held out of the guest by VM_SUSPEND_CPU.
    pub debug: CpuSet,
    /// vCPUs halted with interrupts disabled (all of them = VM_SUSPEND_HALT).
    pub halted: CpuSet,
    /// vCPUs an INIT IPI left waiting for a STARTUP IPI (FreeBSD
    /// `startup_cpus`, `vm_await_start` / `vm_start_cpus`).
    pub startup: CpuSet,
    pub topology: Option<Topology>,
}

/// A virtual machine.
pub struct Vm {
    name: String,
    maxcpus: usize,
    vcpus: Vec<Vcpu>,
    /// Lock-all serialiser. Protects: nothing but the right to freeze every
    /// vCPU. Rank 1 (taken first, held across the freezing waits).
    lock_all_serial: Mutex<()>,
    /// Cpuset mutex. Protects: active/suspended/debug sets and topology.
    /// Rank 6: a leaf, never held while taking another lock.
    cpus: Mutex<CpuSets>,
    /// A copy of `CpuSets::active`, written under the cpuset mutex and read
    /// without it: interrupt delivery resolves destinations against the
    /// active set on every interrupt, and a lock there costs more than the
    /// rest of a delivery.
    active_bits: [AtomicU64; CPUSET_BITS / 64],
    /// VM_SUSPEND state: 0, or the `SuspendHow` value.
    suspend: AtomicI32,
    destroyed: AtomicBool,
    /// The 2019 TMR-rendezvous protocol instead of the sx-lock one.
    legacy: AtomicBool,
    /// Userland MMIO exits report the bare access instead of a decoded
    /// instruction (see [`Vm::raw_mmio_exits`]).
    raw_mmio_exits: AtomicBool,
    rendezvous: Rendezvous,
    /// Guest memory lock. Protects: memory segments and maps. Rank 2:
    /// exclusive only with every vCPU frozen ([`Vm::mem_write`] needs a
    /// `LockAll`), so a RUNNING vCPU never waits for it, or briefly by
    /// `destroy`, which gives the memory back under it after marking the
    /// VM destroyed (and `mem_write` checks that mark under it).
    mem: RwLock<GuestMemory>,
    /// The I/O APIC (its own locks rank 3, see the module doc).
    vioapic: Vioapic,
    /// The 8259 pair (its mutex ranks with 2, see the module doc).
    vatpic: Vatpic,
    /// The RTC and CMOS (its mutex ranks 7, see the module doc).
    vrtc: Vrtc,
    /// The ACPI PM timer (an atomic: no lock).
    vpmtmr: Vpmtmr,
    /// The HPET (its mutex ranks with 2, see the module doc).
    vhpet: Vhpet,
    /// The 8254 PIT (its mutex ranks 7).
    vatpit: Vatpit,
    /// Wakes the callout thread, if one was started (its mutex is a
    /// leaf, like rank 6).
    callout_waker: std::sync::Arc<CalloutWaker>,
    /// The callout gate. Protects: the devices' state against VM_REINIT
    /// while the callout thread delivers their timers (held shared there,
    /// exclusively by VM_REINIT). Rank 1b: after the lock-all serialiser
    /// and the vCPUs it freezes, before everything else.
    callout_gate: RwLock<()>,
    backend: Box<dyn Backend>,
}

impl Drop for Vm {
    /// A VM dropped without VM_DESTROY (a handle-less `Vm`) stops its
    /// callout thread too, and waits for it.
    fn drop(&mut self) {
        self.callout_waker.stop_and_join();
    }
}

impl core::fmt::Debug for Vm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vm")
            .field("name", &self.name)
            .field("maxcpus", &self.maxcpus)
            .finish_non_exhaustive()
    }
}

/// Holds one vCPU FROZEN (an ioctl of the "lock one vCPU" class); returns
/// it to IDLE when dropped.
pub struct VcpuLock<'a> {
    vm: &'a Vm,
    id: usize,
}

impl VcpuLock<'_> {
    pub fn id(&self) -> usize {
        self.id
    }
    pub fn vcpu(&self) -> &Vcpu {
        &self.vm.vcpus[self.id]
    }
}

impl Drop for VcpuLock<'_> {
    fn drop(&mut self) {
        // FROZEN -> IDLE always succeeds for the owner.
        let r = self.vm.vcpus[self.id].set_state(VcpuState::Idle, false);
        debug_assert!(r.is_ok(), "vCPU {} released in state {:?}", self.id, self.vm.vcpus[self.id].state());
    }
}

/// Holds every vCPU FROZEN (the "lock all vCPUs" class).
pub struct LockAll<'a> {
    vm: &'a Vm,
    _serial: MutexGuard<'a, ()>,
}

impl Drop for LockAll<'_> {
    fn drop(&mut self) {
        for v in &self.vm.vcpus {
            let r = v.set_state(VcpuState::Idle, false);
            debug_assert!(r.is_ok(), "lock-all released vCPU {} in state {:?}", v.id(), v.state());
        }
    }
}

impl Vm {
    /// A VM with `maxcpus` vCPUs (1..=CPUSET_BITS) and the given backend.
    pub fn new(name: &str, maxcpus: usize, backend: Box<dyn Backend>) -> Result<Vm> {
        if maxcpus == 0 || maxcpus > CPUSET_BITS {
            return Err(Error::Inval);
        }
        // The guest TSC's clock runs from before any VM's first guest entry.
        crate::tsc::start();
        Ok(Vm {
            name: name.to_owned(),
            maxcpus,
            vcpus: (0..maxcpus).map(Vcpu::new).collect(),
            lock_all_serial: Mutex::new(()),
            cpus: Mutex::new(CpuSets::default()),
            active_bits: Default::default(),
            suspend: AtomicI32::new(0),
            destroyed: AtomicBool::new(false),
            legacy: AtomicBool::new(cfg!(feature = "legacy-rendezvous")),
            raw_mmio_exits: AtomicBool::new(false),
            vatpic: Vatpic::new(),
            rendezvous: Rendezvous::default(),
            mem: RwLock::new(GuestMemory::new()),
            vioapic: Vioapic::new(),
            vrtc: Vrtc::new(std::time::Instant::now()),
            vpmtmr: Vpmtmr::new(std::time::Instant::now()),
            vhpet: Vhpet::new(std::time::Instant::now()),
            vatpit: Vatpit::new(std::time::Instant::now()),
            callout_waker: Default::default(),
            callout_gate: RwLock::new(()),
            backend,
        })
    }

    /// A VM with the simulated backend (every vCPU starts as an idle loop).
    pub fn with_sim_backend(name: &str, maxcpus: usize) -> Result<Vm> {
        Vm::new(name, maxcpus, Box::new(crate::sim::SimBackend::new(maxcpus)))
    }

    /// Installs (or removes) vCPU `lock.id()`'s guest program.
    pub fn set_guest(
        &self,
        lock: &VcpuLock<'_>,
        program: Option<Box<dyn crate::guest::GuestProgram>>,
    ) -> Result<()> {
        self.backend.set_guest(lock.id(), program)
    }

    /// VM_STATS (`vmm_stat_copy`): vCPU `id`'s statistics from `index`
    /// on, at most `max`. EINVAL for a negative index, ENOENT past the end
    /// (at the end: none). The memory statistics are measured now, for
    /// vCPU 0 only, as FreeBSD's `vm_get_rescnt` / `vm_get_wiredcnt`;
    /// other vCPUs read 0.
    pub fn vcpu_stats(&self, id: usize, index: i32, max: usize) -> Result<Vec<u64>> {
        use crate::stats::{MemCounts, Stat};
        let v = self.vcpu(id)?;
        // Measured only when the copy includes them (mincore of a large
        // guest is not free); what is copied is the same either way.
        let wanted = |s: Stat| usize::try_from(index).is_ok_and(|i| (i..i.saturating_add(max)).contains(&(s as usize)));
        let mem = if id == 0 && (wanted(Stat::MemResident) || wanted(Stat::MemWired)) {
            // `mem` shared (rank 2), with no other lock held (VM_STATS
            // takes no vCPU lock, as FreeBSD), and released before the
            // vlapic mutex (rank 5) below. It waits at most for an
            // exclusive holder (a lock-all caller with every vCPU frozen,
            // or `destroy`), and no holder of `mem` waits for a vCPU or a
            // guest-program mutex (see the lock order above), so this is
            // safe from any thread, a C guest callback's too, as
            // VM_GET_MEMSEG is. mincore and the map table wait for nothing.
            let m = self.mem();
            MemCounts { resident: m.resident_bytes(), wired: m.wired_bytes() }
        } else {
            MemCounts::default()
        };
        match v.stats.copy_from(index, max, &v.vlapic.counts(), &mem) {
            None => Err(Error::Inval),
            Some(Err(())) => Err(Error::NoEnt),
            Some(Ok(stats)) => Ok(stats),
        }
    }

    /// VM_GLA2GPA / VM_GLA2GPA_NOFAULT for the vCPU held by `lock`: the
    /// guest-physical address of `gla`, or `None` when the guest faults;
    /// then, unless `nofault`, the fault is queued for the vCPU as FreeBSD
    /// does (#PF with CR2 = `gla`, or #GP(0)), restarting the instruction.
    /// EFAULT when a page-table page is not read-write guest memory.
    pub fn gla2gpa(
        &self,
        lock: &VcpuLock<'_>,
        paging: &crate::gla2gpa::GuestPaging,
        gla: u64,
        prot: u32,
        nofault: bool,
    ) -> Result<Option<u64>> {
        use crate::gla2gpa::GuestFault;
        let walked = crate::gla2gpa::gla2gpa(&self.mem(), paging, gla, prot, nofault)?;
        let fault = match walked {
            Ok(gpa) => return Ok(Some(gpa)),
            Err(f) => f,
        };
        if !nofault {
            let vcpu = lock.vcpu();
            // An exception already queued stays and this one is dropped
            // (FreeBSD asserts it cannot happen), CR2 left as it was:
            // FreeBSD writes CR2 before its queueing fails, which leaves
            // the guest a CR2 for a #PF it never takes.
            match fault {
                GuestFault::PageFault(code) => {
                    if self.inject_exception(vcpu, crate::regs::IDT_PF, Some(code), true).is_ok() {
                        vcpu.regs.lock().set(crate::regs::reg::CR2 as i32, gla)?;
                    }
                }
                GuestFault::GeneralProtection => {
                    let _ = self.inject_exception(vcpu, crate::regs::IDT_GP, Some(0), true);
                }
            }
        }
        Ok(None)
    }

    /// VM_GET_REGISTER for the vCPU held by `lock` (see
    /// `VcpuRegs::get`). VM_REG_GUEST_INTR_SHADOW reads the backend's
    /// interrupt shadow: 1 while the guest is in one (after an exit taken
    /// by the instruction that follows an STI), as FreeBSD reads the
    /// VMCS's guest interruptibility state (`vmx_get_intr_shadow`).
    /// VM_REG_GUEST_TPR reads the local APIC's TPR as CR8 (bits 7:4).
    pub fn get_register(&self, lock: &VcpuLock<'_>, regnum: i32) -> Result<u64> {
        let vcpu = lock.vcpu();
        if regnum == crate::regs::reg::INTR_SHADOW as i32 {
            return Ok(u64::from(self.backend.intr_shadow(vcpu).is_some()));
        }
        if regnum == crate::regs::reg::TPR as i32 {
            // FreeBSD `vmx_getreg`: `vlapic_get_cr8`.
            return Ok(vcpu.vlapic.cr8());
        }
        vcpu.regs.lock().get(regnum)
    }

    /// VM_SET_REGISTER for the vCPU held by `lock` (see `VcpuRegs::set`).
    /// VM_REG_GUEST_TPR, which reads the local APIC's CR8, is EINVAL.
    /// VM_REG_GUEST_INTR_SHADOW: 0 ends the guest's interrupt shadow; any
    /// other value is EINVAL, as on Intel (`vmx_modify_intr_shadow`: a
    /// vCPU cannot be forced into an interrupt shadow).
    pub fn set_register(&self, lock: &VcpuLock<'_>, regnum: i32, val: u64) -> Result<()> {
        let vcpu = lock.vcpu();
        if regnum == crate::regs::reg::TPR as i32 {
            // FreeBSD `vmx_setreg`: no VMCS field (the guest sets its TPR
            // through its local APIC).
            return Err(Error::Inval);
        }
        vcpu.regs.lock().set(regnum, val)?;
        if regnum == crate::regs::reg::INTR_SHADOW as i32 {
            self.backend.clear_intr_shadow(vcpu);
        }
        Ok(())
    }

    /// VM_INJECT_EXCEPTION (`vm_inject_exception`) for `vcpu`, which the
    /// caller holds: queues the exception (see `VcpuRegs::inject_exception`)
    /// and ends the guest's interrupt shadow, as FreeBSD does (blocking by
    /// STI or MOV SS ends when the guest incurs an exception).
    pub fn inject_exception(
        &self,
        vcpu: &Vcpu,
        vector: i32,
        errcode: Option<u32>,
        restart_instruction: bool,
    ) -> Result<()> {
        vcpu.regs.lock().inject_exception(vector, errcode, restart_instruction)?;
        self.backend.clear_intr_shadow(vcpu);
        Ok(())
    }

    /// Counters of vCPU `id`'s simulated guest.
    pub fn guest_stats(&self, id: usize) -> Result<crate::backend::GuestStats> {
        self.check_alive()?;
        self.vcpu(id)?;
        self.backend.guest_stats(id)
    }

    /// A VM with the idle backend.
    pub fn with_idle_backend(name: &str, maxcpus: usize) -> Result<Vm> {
        Vm::new(name, maxcpus, Box::new(IdleBackend))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn maxcpus(&self) -> usize {
        self.maxcpus
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    pub fn vioapic(&self) -> &Vioapic {
        &self.vioapic
    }

    pub fn vrtc(&self) -> &Vrtc {
        &self.vrtc
    }

    pub fn vpmtmr(&self) -> &Vpmtmr {
        &self.vpmtmr
    }

    pub fn vhpet(&self) -> &Vhpet {
        &self.vhpet
    }

    pub fn vatpic(&self) -> &Vatpic {
        &self.vatpic
    }

    pub fn vatpit(&self) -> &Vatpit {
        &self.vatpit
    }

    /// vCPU `id`; EINVAL when out of range.
    pub fn vcpu(&self, id: usize) -> Result<&Vcpu> {
        self.vcpus.get(id).ok_or(Error::Inval)
    }

    /// vCPU id from a C `int`; EINVAL when negative or out of range.
    pub fn vcpu_id(&self, id: i32) -> Result<usize> {
        usize::try_from(id)
            .ok()
            .filter(|i| *i < self.maxcpus)
            .ok_or(Error::Inval)
    }

    pub fn vcpus(&self) -> &[Vcpu] {
        &self.vcpus
    }

    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::SeqCst)
    }

    /// `Error::Destroyed` once the VM is destroyed.
    pub fn check_alive(&self) -> Result<()> {
        if self.is_destroyed() {
            Err(Error::Destroyed)
        } else {
            Ok(())
        }
    }

    // --- vCPU locking (vmm_dev.c) -------------------------------------

    /// Lock one vCPU: wait until it is IDLE, then hold it FROZEN.
    pub fn lock_one(&self, id: usize) -> Result<VcpuLock<'_>> {
        self.check_alive()?;
        self.vcpu(id)?.set_state(VcpuState::Frozen, true)?;
        let lock = VcpuLock { vm: self, id };
        self.check_alive()?;
        Ok(lock)
    }

    /// Lock all vCPUs, in ascending order. While waiting for a vCPU, runs a
    /// pending rendezvous on behalf of the vCPUs already frozen, so a
    /// rendezvous initiator waiting for them cannot deadlock with us.
    pub fn lock_all(&self) -> Result<LockAll<'_>> {
        self.check_alive()?;
        let serial = self.lock_all_serial.lock();
        let mut frozen = CpuSet::new();
        for v in &self.vcpus {
            let ticket = v.take_ticket();
            let mut g = v.lock();
            while !v.try_freeze_locked(&mut g, &ticket) {
                if self.services_rendezvous_in_lock_all() && self.rendezvous.pending() {
                    drop(g);
                    self.rendezvous.run_on_behalf(self, &frozen, &self.active_cpus());
                    g = v.lock();
                    continue;
                }
                // Checked under the vCPU mutex: a state change or a newly
                // posted rendezvous (which wakes this vCPU's waiters) after
                // this point wakes us. The legacy lock-all is blind to
                // rendezvous and just sleeps, as in 2019 (skipping the
                // wait there would spin).
                let to_service = self.services_rendezvous_in_lock_all() && self.rendezvous.pending();
                if !to_service {
                    g = v.wait(g);
                }
            }
            drop(g);
            frozen.insert(v.id());
        }
        let all = LockAll { vm: self, _serial: serial };
        self.check_alive()?;
        Ok(all)
    }

    /// Whether lock-all runs pending rendezvous callbacks for the vCPUs it
    /// froze (FreeBSD since D52968). Off under the legacy protocol.
    fn services_rendezvous_in_lock_all(&self) -> bool {
        !self.legacy_protocol()
    }

    /// Whether this VM runs the 2019 protocol that OS-7622 deadlocks: RTE
    /// writes update TMRs with `vm_smp_rendezvous` over every active vCPU,
    /// and lock-all does not service a pending rendezvous. Defaults to the
    /// `legacy-rendezvous` cargo feature; exists only so tests can show
    /// the deadlock the current protocol removes.
    pub fn legacy_protocol(&self) -> bool {
        self.legacy.load(Ordering::Relaxed)
    }

    /// Selects the protocol (see [`Vm::legacy_protocol`]); set it before
    /// any vCPU runs.
    pub fn set_legacy_protocol(&self, on: bool) {
        self.legacy.store(on, Ordering::Relaxed);
    }

    /// How VM_RUN shows an MMIO access that goes to userland: false (the
    /// default) as FreeBSD does, an instruction-emulation exit carrying a
    /// decoded `mov` for bhyve's instruction emulator; true as the bare
    /// access (size, direction, address, data), illumos-style. Kept across
    /// VM_REINIT: it is how the caller reads exits, not VM state.
    pub fn raw_mmio_exits(&self) -> bool {
        self.raw_mmio_exits.load(Ordering::Relaxed)
    }

    /// Selects the MMIO exit form (see [`Vm::raw_mmio_exits`]).
    pub fn set_raw_mmio_exits(&self, raw: bool) {
        self.raw_mmio_exits.store(raw, Ordering::Relaxed);
    }

    /// Wakes the callout thread (see [`crate::callout_thread`]).
    pub(crate) fn callout_waker(&self) -> &std::sync::Arc<CalloutWaker> {
        &self.callout_waker
    }

    /// The callout gate, shared (see `Vm::callout_gate`). Taken only by
    /// the callout thread, which loom builds leave out.
    #[cfg(not(loom))]
    pub(crate) fn callout_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.callout_gate.read()
    }

    /// Whether a VM_REINIT could take the callout gate now (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn callout_gate_free(&self) -> bool {
        self.callout_gate.try_write().is_some()
    }

    // --- cpusets -------------------------------------------------------

    pub fn cpus(&self) -> MutexGuard<'_, CpuSets> {
        self.cpus.lock()
    }

    pub fn active_cpus(&self) -> CpuSet {
        CpuSet::from_words(std::array::from_fn(|i| self.active_bits[i].load(Ordering::Acquire)))
    }

    /// Whether vCPU `id` is active (lock-free, as [`Vm::active_cpus`]).
    pub fn is_active(&self, id: usize) -> bool {
        self.active_bits.get(id / 64).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (id % 64)) != 0)
    }

    /// Copies the active set for [`Vm::active_cpus`] (call under the cpuset
    /// mutex after changing it).
    fn publish_active(&self, c: &CpuSets) {
        for (w, bits) in self.active_bits.iter().zip(c.active.words()) {
            w.store(*bits, Ordering::Release);
        }
    }

    pub fn cpuset(&self, which: CpuSetKind) -> CpuSet {
        let c = self.cpus.lock();
        match which {
            CpuSetKind::Active => c.active,
            CpuSetKind::Suspended => c.suspended,
            CpuSetKind::Debug => c.debug,
        }
    }

    /// VM_ACTIVATE_CPU (the caller holds the vCPU): EBUSY if already active.
    pub fn activate_cpu(&self, id: usize) -> Result<()> {
        let mut c = self.cpus.lock();
        if c.active.contains(id) {
            return Err(Error::Busy);
        }
        c.active.insert(id);
        self.publish_active(&c);
        Ok(())
    }

    /// VM_SUSPEND_CPU: put one active vCPU (or every active one) in the
    /// debug set and kick it out of the guest.
    pub fn suspend_cpu(&self, id: Option<usize>) -> Result<()> {
        let targets = {
            let mut c = self.cpus.lock();
            match id {
                None => c.debug = c.active,
                Some(i) => {
                    if !c.active.contains(i) {
                        return Err(Error::Inval);
                    }
                    c.debug.insert(i);
                }
            }
            c.debug
        };
        for i in targets.iter() {
            self.vcpus[i].notify();
        }
        Ok(())
    }

    /// VM_RESUME_CPU: take one vCPU (or all) out of the debug set.
    pub fn resume_cpu(&self, id: Option<usize>) -> Result<()> {
        let mut c = self.cpus.lock();
        match id {
            None => c.debug.clear(),
            Some(i) => {
                if !c.debug.contains(i) {
                    return Err(Error::Inval);
                }
                c.debug.remove(i);
            }
        }
        Ok(())
    }

    // --- suspend -------------------------------------------------------

    /// VM_SUSPEND: EINVAL for NONE/unknown, EALREADY the second time.
    pub fn suspend(&self, how: i32) -> Result<()> {
        let how = SuspendHow::from_raw(how).ok_or(Error::Inval)?;
        self.suspend
            .compare_exchange(0, how as i32, Ordering::SeqCst, Ordering::SeqCst)
            .map_err(|_| Error::Already)?;
        // The active set under its mutex, not the lock-free copy: a vCPU
        // activated after this read then reads the suspend when it runs
        // (the mutex orders the two), where with the copy (a release
        // store) both reads could miss.
        let active = self.cpus.lock().active;
        for i in active.iter() {
            self.vcpus[i].notify();
        }
        Ok(())
    }

    /// The pending VM-wide suspend, if any.
    pub fn suspended_how(&self) -> Option<SuspendHow> {
        SuspendHow::from_raw(self.suspend.load(Ordering::SeqCst))
    }

    // --- topology ------------------------------------------------------

    pub fn topology(&self) -> Topology {
        self.cpus.lock().topology.unwrap_or(Topology {
            sockets: 1,
            cores: 1,
            threads: 1,
            maxcpus: self.maxcpus as u16,
        })
    }

    /// VM_SET_TOPOLOGY: EINVAL if sockets*cores*threads exceeds maxcpus
    /// (the maxcpus argument is ignored, as in FreeBSD).
    pub fn set_topology(&self, sockets: u16, cores: u16, threads: u16) -> Result<()> {
        // Up to 2^48: no overflow in 64 bits.
        let n = u64::from(sockets) * u64::from(cores) * u64::from(threads);
        if n > self.maxcpus as u64 {
            return Err(Error::Inval);
        }
        self.cpus.lock().topology = Some(Topology {
            sockets,
            cores,
            threads,
            maxcpus: self.maxcpus as u16,
        });
        Ok(())
    }

    // --- guest memory --------------------------------------------------

    /// Guest memory, shared (the "memsegs shared" class).
    pub fn mem(&self) -> RwLockReadGuard<'_, GuestMemory> {
        self.mem.read()
    }

    /// Guest memory, exclusive: only with every vCPU frozen. `Destroyed`
    /// once the VM is, checked under the lock: `destroy` gives the memory
    /// back under it, so no segment is made after that (it would be
    /// unmapped with the last handle under a pointer the caller got).
    pub fn mem_write<'a>(&'a self, _all: &LockAll<'a>) -> Result<RwLockWriteGuard<'a, GuestMemory>> {
        let mem = self.mem.write();
        self.check_alive()?;
        Ok(mem)
    }

    // --- rendezvous ----------------------------------------------------

    /// `vm_smp_rendezvous`: run `func` on every vCPU of `dest` (limited to
    /// the active ones) and wait until all have. `vcpuid` is the calling
    /// vCPU, if the caller is one (it runs its own callback).
    pub fn smp_rendezvous(
        &self,
        vcpuid: Option<usize>,
        dest: CpuSet,
        func: RendezvousFn,
    ) -> Result<()> {
        loop {
            self.check_alive()?;
            match self.rendezvous.try_post(dest, func.clone()) {
                Post::Posted => break,
                Post::Busy => self.handle_rendezvous(vcpuid)?,
            }
        }
        for i in dest.iter().filter(|i| *i < self.maxcpus) {
            self.vcpus[i].notify();
        }
        // A lock-all waiting for some vCPU must look at the rendezvous.
        for v in &self.vcpus {
            v.wake_waiters();
        }
        self.handle_rendezvous(vcpuid)
    }

    /// `vm_handle_rendezvous`: do this vCPU's part and wait for the rest.
    pub fn handle_rendezvous(&self, vcpuid: Option<usize>) -> Result<()> {
        self.rendezvous
            .handle(self, vcpuid, || self.active_cpus(), || self.is_destroyed())
    }

    pub fn rendezvous_pending(&self) -> bool {
        self.rendezvous.pending()
    }

    // --- reinit / destroy ----------------------------------------------

    /// VM_REINIT, with every vCPU frozen by `all`: EBUSY unless every
    /// active vCPU has acknowledged a suspend; then back to a new VM's
    /// state: cpusets, suspend, registers, rendezvous, vioapic and local
    /// APICs, vCPU statistics; the RTC's interrupts stop (`vrtc_reset`: its time and NVRAM
    /// stay); the PM timer counts from 0 again; the HPET and PIT are new. Guest memory as FreeBSD's `vm_cleanup(vm, false)`: every
    /// segment and the system-memory maps stay, contents and host
    /// addresses included (a reset guest reboots into the same RAM);
    /// device-memory maps are removed.
    pub fn reinit(&self, all: &LockAll<'_>) -> Result<()> {
        let mut c = self.cpus.lock();
        if c.active != c.suspended {
            return Err(Error::Busy);
        }
        c.active.clear();
        self.publish_active(&c);
        c.suspended.clear();
        c.debug.clear();
        c.halted.clear();
        c.startup.clear();
        drop(c);
        self.suspend.store(0, Ordering::SeqCst);
        self.rendezvous.reset();
        for v in &self.vcpus {
            *v.regs.lock() = Default::default();
            v.stats.reset();
        }
        self.backend.reinit();
        self.mem_write(all)?.reinit();
        // No callout delivery in flight while the devices are reset.
        let _gate = self.callout_gate.write();
        // The timer devices first: nothing of theirs may reach the
        // interrupt controllers after those are reset.
        let now = std::time::Instant::now();
        self.vhpet.reset(now);
        self.vatpit.reset(now);
        self.vrtc.reset(now);
        self.vpmtmr.reset(now);
        self.reset_interrupt_controllers();
        Ok(())
    }

    /// Tears the VM down: marks it destroyed and wakes every thread waiting
    /// inside it, so they return (with `Error::Destroyed` or `Error::Intr`),
    /// then waits for the callout thread to exit. Call it with no lock held
    /// but guest-program mutexes (from a C guest callback).
    ///
    /// Guest memory is given back to the host here, but its addresses stay
    /// mapped (reading zeros) for the rest of the process, even after the
    /// `Vm` is dropped with the last handle to it: as a FreeBSD process's
    /// mapping of guest memory outlives the VM, a device thread still
    /// writing through a host address from `vm_map_gpa` when another thread
    /// destroys the VM must not fault. Every memory call fails from now on
    /// anyway.
    pub fn destroy(&self) {
        self.destroyed.store(true, Ordering::SeqCst);
        self.callout_waker.stop();
        for v in &self.vcpus {
            v.notify();
            v.wake_waiters();
        }
        self.rendezvous.wake_all();
        self.mem.write().release_host_memory();
        self.callout_waker.stop_and_join();
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
