//! Calls made from inside a simulated guest's C callbacks. A callback runs
//! on the thread in VM_RUN, while its vCPU runs and its guest's state is
//! locked. A call from it that needs a vCPU of the same VM to stand still
//! (the lock-one and lock-all ioctls, a guest change, the guest's
//! counters) would wait for this very thread, or for another vCPU's thread
//! that may be waiting for this one: it fails with EDEADLK instead of
//! hanging. Calls that need no vCPU (interrupts, statistics, suspend,
//! destroy) and calls on other VMs go ahead.
//!
//! A call on another VM may still close a cycle: a callback of VM A
//! waiting for a vCPU of B while a callback of B waits for a vCPU of A
//! (directly, or through more VMs). Such waits are registered, only on
//! that slow path, in a process-wide wait-for registry ([`wait_for`]): a
//! thread inside a callback chain holds the vCPUs of its chain's frames
//! RUNNING (and, once it has it, the vCPU of a `vm_run` it makes), and
//! waits for one vCPU (lock-one calls, `vmm_rs_guest_stats`, installing
//! a guest, `vm_run` until it has its vCPU) or for all of the VM's
//! (lock-all and memory-changing calls, which count as holding every
//! vCPU of that VM from the start, as they freeze them one by one).
//! The core reports the thread's waits for other vCPUs of the VM whose
//! vCPU it holds (through `peer_wait`; the `vm_run` or kernemu call stays
//! registered as holding that vCPU while it runs):
//! - a `vm_run`'s vCPU that joins a suspend waits for every other vCPU
//!   of its VM ([`Waits::Suspend`]; its own vCPU gives way to calls that
//!   want it meanwhile, so it does not count as held). If that closes a
//!   cycle, VM_RUN fails with EDEADLK after the vCPU withdraws.
//! - an RTE write, by the guest of a `vm_run` or by a kernemu call, waits
//!   for its other target vCPUs while they are RUNNING (`block_run`,
//!   [`Waits::Running`]; narrowed as it is done with each). If that
//!   closes a cycle, the write is refused
//!   before it changes anything: the kernemu call fails with EDEADLK, or
//!   VM_RUN does, with the guest's instruction restarted.
//!
//! Entry E waits for entry D when E waits for a vCPU D holds. Every
//! thread of a cycle registers under the registry mutex before it
//! blocks, so the last one finds the cycle: its call fails with EDEADLK
//! and the others go on. A one-way wait closes no cycle and is never
//! refused; threads outside callbacks hold no RUNNING vCPU a callback can
//! wait on and do not register, and the callback path itself only pushes
//! a stack frame.
//!
//! Not caught: cycles through a thread that is not in a callback and
//! waits while holding a vCPU (a lock-all caller that froze some vCPUs
//! and waits for the next; a `vm_run` thread whose RTE write waits in
//! `block_run`), through a thread waiting for an I/O APIC's write lock
//! (behind such a writer, or one in a callback), through a vCPU that
//! waits for others of its VM in a rendezvous (the 2019 protocol only),
//! cycles through two lock-alls of one VM, and cycles through a guest's
//! wake-up (a `vm_run` from a callback whose guest halts until a waiting
//! callback would send it an interrupt). Over-approximated: a
//! lock-all counts as holding vCPUs it has not frozen yet, a
//! `vmm_rs_guest_stats` stays registered a moment after it took the
//! guest mutex, a suspend wait stays registered after a lock call asked
//! its vCPU to give way, until the vCPU wakes and withdraws, and an RTE
//! write's wait counts a callback's vCPU as RUNNING also in the
//! `read_result` and `cpuid_result` callbacks the run loop makes with
//! the vCPU FROZEN (which `block_run` does not wait for), so
//! two VMs used in both directions at once may see
//! EDEADLK where the calls would have ended. Calls between VMs should
//! still go one way; the check turns the hang into an error.
//!
//! Thread cancellation is disabled while a callback runs: a pending
//! `pthread_cancel` acted on at a cancellation point inside it (printf,
//! usleep) would unwind through the library's frames, which hold locks,
//! and abort the process (see `cancel`). It takes effect at the thread's
//! next cancellation point after VM_RUN returns.

use std::cell::Cell;
use std::ptr;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::cpuset::CpuSet;
use crate::peer_wait::{PeerWaitObserver, PeerWaits};
use crate::sync::Mutex;
use crate::vm::Vm;

/// One callback under way on this thread: its VM and vCPU, and the
/// callback it runs inside (a callback of VM A may run VM B, whose
/// callback must then not wait for A's vCPUs either). It lives on the
/// stack of [`in_callback`].
struct Frame {
    vm: usize,
    vcpu: usize,
    outer: *const Frame,
}

thread_local! {
    /// The innermost callback under way on this thread, or null. A plain
    /// pointer cell needs no destructor, so a call made while the
    /// thread's locals are being destroyed (a pthread key destructor)
    /// still finds it.
    static INNERMOST: Cell<*const Frame> = const { Cell::new(ptr::null()) };
    /// This thread's registered wait ([`WaitEntry`] token), 0 if none.
    /// Used only on the slow path of [`wait_for`].
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// The identity [`in_callback`] and [`refuse_from_callback`] compare.
pub(crate) fn vm_identity(vm: &Vm) -> usize {
    vm as *const Vm as usize
}

/// Runs C callback `f` of vCPU `vcpu` of the VM `vm` (a [`vm_identity`])
/// marked as such, with thread cancellation disabled (see
/// [`super::cancel`]).
pub(crate) fn in_callback<R>(vm: usize, vcpu: usize, f: impl FnOnce() -> R) -> R {
    /// Puts the outer frame back, also if `f` unwinds.
    struct Restore(*const Frame);
    impl Drop for Restore {
        fn drop(&mut self) {
            INNERMOST.set(self.0);
        }
    }
    super::cancel::without_cancellation(|| {
        let frame = Frame { vm, vcpu, outer: INNERMOST.get() };
        let _restore = Restore(frame.outer);
        INNERMOST.set(&frame);
        f()
    })
}

/// Whether `f` is true for a frame of this thread's callback chain
/// (innermost first; it stops at the first).
fn any_frame(mut f: impl FnMut(&Frame) -> bool) -> bool {
    let mut at = INNERMOST.get();
    while !at.is_null() {
        // SAFETY: every frame in the chain is on this thread's stack, in
        // an `in_callback` call still running: it is taken off before
        // that call returns.
        let frame = unsafe { &*at };
        if f(frame) {
            return true;
        }
        at = frame.outer;
    }
    false
}

/// EDEADLK if this thread is inside a guest callback of `vm`, at any
/// depth.
fn refuse_from_callback(vm: &Vm) -> Result<()> {
    let vm = vm_identity(vm);
    if any_frame(|f| f.vm == vm) {
        return Err(Error::Deadlock);
    }
    Ok(())
}

/// What a call on another VM waits for, for [`wait_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waits {
    /// vCPU `id` (lock-one calls, installing a guest, the guest's
    /// counters).
    One(usize),
    /// Every vCPU (lock-all and memory-changing calls). The call counts
    /// as holding them all from the start, as it freezes them one by one.
    All,
    /// Every other vCPU, to join a suspend: a claimed `vm_run` whose vCPU
    /// is in the suspend wait ([`PEER_WAITS`]). Meanwhile its own vCPU
    /// gives way to calls that want it (reqidle), so it is not held.
    Suspend,
    /// These vCPUs, each while it is RUNNING: a claimed `vm_run` or
    /// kernemu call whose RTE write blocks them ([`PEER_WAITS`]).
    Running(CpuSet),
}

/// A (VM identity, vCPU id) pair.
type VcpuRef = (usize, usize);

/// A registered wait of a thread inside a callback chain.
struct Registered {
    token: u64,
    /// False while a later wait of the same thread (from a callback run
    /// inside this call: `vm_run` of another VM) stands for it.
    active: bool,
    /// The vCPUs the thread holds RUNNING while it waits: its callback
    /// chain's and a claimed `vm_run`'s (with an outer entry's, which
    /// this one stands for).
    holds: Vec<VcpuRef>,
    /// The VM it waits for, and what of it: None once a `vm_run` has its
    /// vCPU ([`WaitEntry::claimed`]), `Waits::Suspend` while that vCPU is
    /// in the suspend wait. A lock-all (`Waits::All`) counts as holding
    /// every vCPU of its VM, as it freezes them one by one.
    vm: usize,
    waits: Option<Waits>,
}

impl Registered {
    /// Whether this wait needs a vCPU `other` holds. A lock-all does not
    /// wait on another lock-all's frozen vCPUs: the lock-all serialiser
    /// orders the two (so a cycle through two lock-alls of one VM is not
    /// seen), and counting them would refuse two lock-alls of one VM made
    /// from two callbacks, which wait only one for the other.
    fn waits_on(&self, other: &Registered) -> bool {
        // The only vCPU of its own VM an entry holds is its claimed one.
        let yields = |vm: usize| other.waits == Some(Waits::Suspend) && vm == other.vm;
        let held = |w: Option<usize>| {
            other.holds.iter().any(|&(vm, id)| vm == self.vm && w.is_none_or(|w| w == id) && !yields(vm))
        };
        let freezes_all = other.waits == Some(Waits::All) && other.vm == self.vm;
        match self.waits {
            None => false,
            Some(Waits::One(id)) => held(Some(id)) || freezes_all,
            Some(Waits::All) => held(None),
            Some(Waits::Suspend) => held(None) || freezes_all,
            // `block_run` does not wait for a vCPU out of RUNNING: one a
            // lock-all froze, or one in the suspend wait (`yields`).
            Some(Waits::Running(set)) => {
                other.holds.iter().any(|&(vm, id)| vm == self.vm && set.contains(id) && !yields(vm))
            }
        }
    }
}

#[derive(Default)]
struct Registry {
    next_token: u64,
    entries: Vec<Registered>,
}

impl Registry {
    fn position(&self, token: u64) -> Option<usize> {
        self.entries.iter().position(|e| e.token == token)
    }

    /// Whether the active waits lead from entry `start` back to it.
    fn cycle_through(&self, start: usize) -> bool {
        let mut seen = vec![false; self.entries.len()];
        let mut todo = vec![start];
        while let Some(d) = todo.pop() {
            for (i, e) in self.entries.iter().enumerate() {
                if i == d || !e.active || !self.entries[d].waits_on(e) {
                    continue;
                }
                if i == start {
                    return true;
                }
                if !seen[i] {
                    seen[i] = true;
                    todo.push(i);
                }
            }
        }
        false
    }

    /// Takes entry `token` off and makes the thread's `outer` one count
    /// again.
    fn remove(&mut self, token: u64, outer: u64) {
        if let Some(i) = self.position(token) {
            self.entries.swap_remove(i);
        }
        if let Some(i) = self.position(outer) {
            self.entries[i].active = true;
        }
    }
}

/// The wait-for registry. A leaf: taken with no core lock held (under the
/// calling callback's guest-program mutex, before or after the wait it
/// guards), or under the vioapic write lock and table mutex (an RTE
/// write's report, [`PEER_WAITS`]); no lock is taken under it and its
/// holder never waits.
static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();

fn registry() -> &'static Mutex<Registry> {
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

/// A registered wait (see [`wait_for`]); dropping it unregisters.
#[must_use]
pub(crate) struct WaitEntry {
    /// 0: nothing registered (the thread is in no callback).
    token: u64,
    /// The thread's wait this one stands for, or 0.
    outer: u64,
}

impl Drop for WaitEntry {
    fn drop(&mut self) {
        if self.token != 0 {
            registry().lock().remove(self.token, self.outer);
            CURRENT.set(self.outer);
        }
    }
}

impl WaitEntry {
    /// A `vm_run`'s (or kernemu call's) wait for its vCPU ([`Waits::One`])
    /// is over: the thread now holds the vCPU (RUNNING while its guest's
    /// callbacks may wait in turn), and waits for nothing else of that VM
    /// until the entry is
    /// dropped, but for the waits the core reports ([`PEER_WAITS`]). (A
    /// vCPU waiting for others in a rendezvous is not seen.)
    pub(crate) fn claimed(&self) {
        if self.token == 0 {
            return;
        }
        crate::peer_wait::set_observer(&PEER_WAITS);
        let mut reg = registry().lock();
        if let Some(i) = reg.position(self.token) {
            let e = &mut reg.entries[i];
            if let Some(Waits::One(id)) = e.waits {
                let vm = e.vm;
                e.holds.push((vm, id));
                e.waits = None;
            }
        }
    }
}

/// The waits of claimed `vm_run`s and kernemu calls for other vCPUs of
/// their VM ([`Waits::Suspend`], [`Waits::Running`]), as the core reports
/// them (`peer_wait`): the thread's current entry waits for them
/// meanwhile, and the report is refused with EDEADLK if that closes a
/// cycle.
struct PeerWaitsSeen;

static PEER_WAITS: PeerWaitsSeen = PeerWaitsSeen;

impl PeerWaitObserver for PeerWaitsSeen {
    fn begin(&self, vm: &Vm, waits: PeerWaits) -> Result<bool> {
        let token = CURRENT.get();
        if token == 0 {
            return Ok(false);
        }
        let mut reg = registry().lock();
        let Some(i) = reg.position(token) else {
            return Ok(false);
        };
        let e = &mut reg.entries[i];
        if e.vm != vm_identity(vm) || e.waits.is_some() {
            return Ok(false);
        }
        e.waits = Some(match waits {
            PeerWaits::Suspend => Waits::Suspend,
            PeerWaits::Running(set) => Waits::Running(set),
        });
        if reg.cycle_through(i) {
            reg.entries[i].waits = None;
            return Err(Error::Deadlock);
        }
        Ok(true)
    }

    fn narrow(&self, waits: PeerWaits) {
        let mut reg = registry().lock();
        if let Some(i) = reg.position(CURRENT.get()) {
            let e = &mut reg.entries[i];
            if let (Some(Waits::Running(_)), PeerWaits::Running(set)) = (e.waits, waits) {
                e.waits = Some(Waits::Running(set));
            }
        }
    }

    fn end(&self) {
        let mut reg = registry().lock();
        if let Some(i) = reg.position(CURRENT.get()) {
            let e = &mut reg.entries[i];
            if matches!(e.waits, Some(Waits::Suspend | Waits::Running(_))) {
                e.waits = None;
            }
        }
    }
}

/// Before a call on `vm` that may wait for its vCPUs (`waits`): EDEADLK
/// if this thread is inside a callback of `vm` ([`refuse_from_callback`]),
/// or if the wait would close a cycle of waits between callbacks of
/// different VMs; otherwise the wait stays registered until the returned
/// entry is dropped, which the caller does once it no longer waits (and
/// before it releases what it locked). Outside callbacks this only reads
/// the thread's callback mark.
pub(crate) fn wait_for(vm: &Vm, waits: Waits) -> Result<WaitEntry> {
    if INNERMOST.get().is_null() {
        return Ok(WaitEntry { token: 0, outer: 0 });
    }
    refuse_from_callback(vm)?;
    let target = vm_identity(vm);
    let mut holds = Vec::new();
    any_frame(|f| {
        holds.push((f.vm, f.vcpu));
        false
    });
    let outer = CURRENT.get();
    let mut reg = registry().lock();
    if let Some(i) = reg.position(outer) {
        let e = &mut reg.entries[i];
        e.active = false;
        let outer_holds = e.holds.clone();
        holds.extend(outer_holds);
    }
    let token = reg.next_token.wrapping_add(1).max(1);
    reg.next_token = token;
    reg.entries.push(Registered { token, active: true, holds, vm: target, waits: Some(waits) });
    let me = reg.entries.len() - 1;
    if reg.cycle_through(me) {
        reg.remove(token, outer);
        return Err(Error::Deadlock);
    }
    drop(reg);
    CURRENT.set(token);
    Ok(WaitEntry { token, outer })
}

#[cfg(test)]
mod tests;
