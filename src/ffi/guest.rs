//! vmm_rs extension: installing a simulated guest on a vCPU, either as C
//! callbacks or as a script of actions.

use std::ffi::{c_int, c_void};

use super::errno::{errno_of, fail, to_rc};
use super::handle::{self, vcpu};
use super::panic::ffi_boundary;
use crate::error::{Error, Result};
use crate::exit::TaskSwitchReason;
use super::reentry::{in_callback, vm_identity, wait_for, Waits};
use crate::guest::{GuestAction, GuestProgram, RefusedInstruction, ScriptedGuest};

/// What a simulated guest does next (`struct vmm_rs_action.kind`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vmm_rs_action_kind {
    /// A step touching nothing outside the guest.
    VMM_RS_ACT_COMPUTE = 0,
    /// Load of `size` bytes at `gpa` (a `mov` into RAX); the value goes to
    /// `read_result`. Where a memory map covers `gpa` (RAM, the boot ROM,
    /// a devmem segment) the guest reads the memory in place, with no exit,
    /// as through the nested page tables; a map's protection that refuses
    /// it fails VM_RUN with EFAULT (FreeBSD's unresolvable nested page
    /// fault), the instruction left at RIP to fault again when retried.
    /// Elsewhere it is MMIO: the local APIC, I/O APIC and HPET are
    /// emulated inside VM_RUN (unless a memory map covers them), other
    /// addresses return VM_EXITCODE_INST_EMUL.
    VMM_RS_ACT_MMIO_READ = 1,
    /// Store of `value` (`size` bytes) at `gpa` (a `mov` from RAX):
    /// RAM in place, likewise (a store to a read-only map, such as the boot
    /// ROM, fails VM_RUN with EFAULT), else MMIO.
    VMM_RS_ACT_MMIO_WRITE = 2,
    /// `in` of `size` bytes from `port`: VM_RUN returns VM_EXITCODE_INOUT;
    /// the guest reads RAX as set with VM_SET_REGISTER before the next
    /// VM_RUN.
    VMM_RS_ACT_PORT_IN = 3,
    /// `out` of `value` (`size` bytes) to `port` (VM_EXITCODE_INOUT).
    VMM_RS_ACT_PORT_OUT = 4,
    /// HLT with the current interrupt flag: handled inside VM_RUN, which
    /// sleeps until the HLT ends (with VM_CAP_HALT_EXIT off the guest
    /// stays halted until an NMI or an interrupt it accepts).
    VMM_RS_ACT_HLT = 5,
    /// PAUSE: VM_EXITCODE_PAUSE with VM_CAP_PAUSE_EXIT on; off (the
    /// default), it runs in the guest.
    VMM_RS_ACT_PAUSE = 6,
    /// STI. As on hardware, an STI that sets the interrupt flag lets its
    /// next action run before any interrupt is taken, so STI then HLT
    /// waits for an interrupt even if one is already pending.
    VMM_RS_ACT_STI = 7,
    /// CLI.
    VMM_RS_ACT_CLI = 8,
    /// Scripts only: EOI at the local APIC an interrupt the script took,
    /// first halting with interrupts enabled until one arrives if it owes
    /// none. Every interrupt a script takes from its local APIC or the
    /// 8259 (not exceptions, NMIs or software interrupts), whatever action
    /// it arrives at, is owed one EOI, so `WAIT_INTR_EOI, OUT` in a loop
    /// EOIs an interrupt taken during the OUT at the next wait, without
    /// halting. A script that never waits EOIs nothing.
    VMM_RS_ACT_WAIT_INTR_EOI = 9,
    /// INT3. With VM_CAP_BPT_EXIT on, VM_RUN returns VM_EXITCODE_BPT at
    /// its RIP (`inst_length` 0, `u.bpt.inst_length` 1, as FreeBSD; a
    /// script's INT3 is done once taken, a callback guest decides by the
    /// RIP it is given); off, the guest takes #BP (vector 3) itself, or,
    /// where its protected-mode IDT has a task gate for vector 3, exits
    /// with a task switch at the INT3 (TSR_IDT_GATE, `ext` 0, length one).
    VMM_RS_ACT_INT3 = 10,
    /// RDMSR of `msr`. The local APIC's (IA32_APIC_BASE, the x2APIC
    /// range; one in xAPIC mode is #GP, vector 13) and those FreeBSD's
    /// VMX backend keeps or emulates (EFER, the segment bases, SYSCALL
    /// and SYSENTER, PAT, the MTRRs, machine check, MISC_ENABLE, platform
    /// and turbo information, the TSC and TSC_AUX) are handled inside
    /// VM_RUN; others return VM_EXITCODE_RDMSR (`u.msr.code`), and the
    /// guest reads EDX:EAX as set in RDX and RAX with VM_SET_REGISTER
    /// before the next VM_RUN (what bhyve's `vmexit_rdmsr` does).
    VMM_RS_ACT_RDMSR = 11,
    /// WRMSR of `value` to `msr`, with EDX:EAX loaded with `value` first:
    /// the MSRs RDMSR handles inside VM_RUN are written there (with the
    /// processor's checks: #GP for a reserved bit or a non-canonical
    /// address; platform and turbo information and MISC_ENABLE changes go
    /// to userland, as in FreeBSD), others return VM_EXITCODE_WRMSR
    /// (`u.msr.code`, `u.msr.wval`).
    VMM_RS_ACT_WRMSR = 12,
    /// INS: `size`-byte items (1, 2 or 4) from `port` to memory at ES:RDI,
    /// with RDI loaded with `gpa` (the offset in ES; the guest-physical
    /// address where ES's base is 0 and paging is off) and, if `value` is
    /// not 0, a REP prefix with RCX = `value`. VM_RUN returns
    /// VM_EXITCODE_INOUT_STR (as FreeBSD returns every string I/O):
    /// userland moves the items and updates RDI and RCX, and calls
    /// vm_restart_instruction() while items remain (bhyve's
    /// `emulate_inout` does at most 16 per exit), which runs the
    /// instruction again at the next VM_RUN.
    VMM_RS_ACT_INS = 13,
    /// OUTS: as INS, from memory at DS:RSI (RSI loaded with `gpa`) to
    /// `port`.
    VMM_RS_ACT_OUTS = 14,
    /// CPUID with EAX = `value` bits 31:0 (the leaf) and ECX = `value`
    /// bits 63:32 (the subleaf): answered inside VM_RUN as FreeBSD's
    /// `x86_emulate_cpuid` does (the host's leaves with bhyve's edits,
    /// this vCPU's APIC id, the VM's topology, x2APIC per
    /// vm_set_x2apic_state, INVPCID per VM_CAP_ENABLE_INVPCID, RDTSCP
    /// and RDPID always (as their capabilities); XSAVE and AVX hidden, leaf 0x16 the TSC's 2000
    /// MHz). EAX, EBX, ECX, EDX land in RAX, RBX, RCX, RDX and go to
    /// `cpuid_result`.
    VMM_RS_ACT_CPUID = 15,
    /// RDTSC: the guest's TSC in EDX:EAX, also given to `read_result`.
    /// It runs in the guest (no exit): the TSC counts at
    /// `VMM_RS_TSC_HZ` on a clock every VM shares, plus the vCPU's offset,
    /// which a WRMSR of the TSC (MSR 0x10) sets so that it reads the
    /// value written. VM_REINIT clears the offset.
    VMM_RS_ACT_RDTSC = 16,
    /// RDTSCP: as RDTSC, and IA32_TSC_AUX (MSR 0xC0000103, written with
    /// WRMSR) in ECX. (VM_CAP_RDTSCP and VM_CAP_RDPID are always on, as
    /// on FreeBSD's VMX backend on a host that has the instructions.)
    VMM_RS_ACT_RDTSCP = 17,
    /// RDPID: IA32_TSC_AUX in RAX, also given to `read_result`.
    VMM_RS_ACT_RDPID = 18,
    /// A task switch by the guest: a far CALL or JMP to the TSS selector
    /// `value` (0..=0xFFFF), or an IRET with NT set, `size` being the
    /// `enum task_switch_reason` (TSR_CALL, TSR_IRET or TSR_JMP). VM_RUN
    /// returns VM_EXITCODE_TASK_SWITCH at the instruction, of length one,
    /// with the paging state, for userland to carry out (bhyve's
    /// `vmexit_task_switch` loads the new task's registers, RIP
    /// included). An interrupt or exception the library delivers through
    /// a present task gate of the guest's IDT (protected mode, the IDT
    /// read from guest memory) exits the same way with TSR_IDT_GATE,
    /// `ext` set for hardware events, the error code if the exception has
    /// one, RIP where the event struck, length zero (for a software event:
    /// an INT3, or a #BP, #OF or INT n injected by userland, its
    /// instruction's length: one for the INT3, else
    /// VM_REG_GUEST_ENTRY_INST_LENGTH), and the event left in the exit
    /// intinfo (bhyve clears it with vm_set_intinfo()).
    VMM_RS_ACT_TASK_SWITCH = 19,
    /// MONITOR: the guest takes #UD (vector 6, to `interrupt`) at it,
    /// inside VM_RUN, as FreeBSD's kernel answers VM_EXITCODE_MONITOR
    /// (CPUID does not offer MONITOR/MWAIT). The instruction completes
    /// nothing; RIP stays at it.
    VMM_RS_ACT_MONITOR = 20,
    /// MWAIT: #UD, as MONITOR.
    VMM_RS_ACT_MWAIT = 21,
    /// A VMX instruction (VMCALL, VMXON, VMREAD, ...): #UD, as MONITOR
    /// (FreeBSD's VM_EXITCODE_VMINSN; CPUID does not offer VMX).
    VMM_RS_ACT_VMX_INSN = 22,
}

/// VMM_RS_ACT_MMIO_READ by the name of what it does: a load, from RAM in
/// place where memory is mapped, else MMIO.
pub const VMM_RS_ACT_LOAD: c_int = 1;
/// VMM_RS_ACT_MMIO_WRITE by the name of what it does: a store.
pub const VMM_RS_ACT_STORE: c_int = 2;
const _: () = assert!(VMM_RS_ACT_LOAD == vmm_rs_action_kind::VMM_RS_ACT_MMIO_READ as c_int);
const _: () = assert!(VMM_RS_ACT_STORE == vmm_rs_action_kind::VMM_RS_ACT_MMIO_WRITE as c_int);

/// The rate of the guest TSC (RDTSC, RDTSCP, MSR 0x10), in Hz.
pub const VMM_RS_TSC_HZ: u64 = 2_000_000_000;
const _: () = assert!(VMM_RS_TSC_HZ == crate::tsc::TSC_HZ);

/// One guest action.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct vmm_rs_action {
    /// `enum vmm_rs_action_kind`.
    pub kind: c_int,
    /// Access size in bytes: 1, 2, 4 or 8 for MMIO, 1, 2 or 4 for ports
    /// (and for INS/OUTS items).
    pub size: u8,
    pub port: u16,
    pub gpa: u64,
    /// Value written by MMIO_WRITE, PORT_OUT and WRMSR; the REP count of
    /// INS and OUTS (0: no REP prefix).
    pub value: u64,
    /// The MSR (ECX) of RDMSR and WRMSR.
    pub msr: u32,
}

/// Callbacks of a guest driven by C code. They run on the vCPU's thread
/// while it is RUNNING and should return quickly: the library checks for
/// kicks (reqidle, suspend, runblock) between actions. Fill it with a
/// designated initialiser, leaving the callbacks you do not use NULL:
/// new optional callbacks are added at the end (`cpuid_result` was), so
/// code built against an older header must be rebuilt.
///
/// A callback may raise interrupts (vm_ioapic_*, vm_isa_*, vm_lapic_*,
/// vm_inject_nmi), read statistics, suspend or destroy the VM, and use
/// other VMs. A call that needs a vCPU of its own VM to stand still (the
/// register, capability and other per-vCPU calls, vm_run, memory
/// changes, vm_reinit, installing a guest, vmm_rs_guest_stats) fails
/// with EDEADLK: it would wait for the callback's own thread. Such a call
/// on another VM waits for that VM's callbacks on the vCPUs it needs (a
/// per-vCPU call, vm_run or vmm_rs_guest_stats: that vCPU; a call that
/// locks all vCPUs: all of them). When callbacks would wait for each
/// other in a cycle (A's callback waits for B's vCPU while B's callback
/// waits for A's, or through more VMs), the call that closes the cycle
/// fails with EDEADLK instead of hanging, and the others go on; waits in
/// one direction are never refused. Waits of a vCPU run or locked from a
/// callback for the other vCPUs of its VM take part too: a vm_run on a
/// suspended VM waits for them to suspend (it fails with EDEADLK if that
/// would close a cycle), and an I/O APIC write that makes an entry
/// level-triggered, by its guest or by vm_readwrite_kernemu_device,
/// waits for each target to be out of its callback (the write is refused
/// before it changes anything: the kernemu call fails with EDEADLK, or
/// vm_run does, and the guest makes the write again at the next
/// vm_run). The check sees only threads inside callbacks and their
/// calls: a cycle through a thread outside one (a lock-all caller that
/// froze part of a VM, a vm_run whose guest's I/O APIC write waits for
/// a target), through a thread waiting behind such an I/O APIC write (a
/// write to the same I/O APIC, from a callback too) or through a vCPU
/// waiting for others of its VM in a rendezvous (the 2019 protocol)
/// still hangs, and a lock-all counts as
/// holding all of its VM's vCPUs from its start, a vm_run in a suspend
/// wait as waiting until it has given way to a call that wants its vCPU,
/// and a vCPU in its read_result or cpuid_result callback as RUNNING for
/// an I/O APIC write (so such calls may see EDEADLK where they would have
/// ended).
/// A vm_run from a
/// callback whose guest halts keeps that callback, and so its vCPU,
/// busy until the guest wakes: calls that want that vCPU wait as long,
/// and a cycle through the wake-up (an interrupt a waiting callback
/// would send) is not seen either. Make such calls in one direction
/// between VMs where you can.
///
/// A callback must return. Thread cancellation is held off while it runs
/// (a pending pthread_cancel acts at the thread's next cancellation point
/// after vm_run returns); leaving it by pthread_exit, longjmp or a C++
/// exception would unwind through the library's locked frames, and aborts
/// the process.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy)]
pub struct vmm_rs_guest_ops {
    /// Fills `*action` with the guest's next action; `rip` counts the
    /// actions done so far. A non-zero return ends the guest: it halts
    /// with interrupts disabled from then on.
    pub next: Option<unsafe extern "C" fn(cookie: *mut c_void, vcpuid: c_int, rip: u64, action: *mut vmm_rs_action) -> c_int>,
    /// The library injected `vector` (may be NULL). An NMI arrives as
    /// vector 2, also with interrupts disabled.
    pub interrupt: Option<unsafe extern "C" fn(cookie: *mut c_void, vcpuid: c_int, vector: c_int)>,
    /// The value of the last MMIO read, port `in`, RDMSR, RDTSC, RDTSCP
    /// or RDPID (may be NULL).
    pub read_result: Option<unsafe extern "C" fn(cookie: *mut c_void, vcpuid: c_int, value: u64)>,
    /// EAX, EBX, ECX and EDX (`regs[0..4]`) of the last CPUID (may be
    /// NULL).
    pub cpuid_result: Option<unsafe extern "C" fn(cookie: *mut c_void, vcpuid: c_int, regs: *const u32)>,
}

/// Counters of a vCPU's simulated guest (`vmm_rs_guest_stats`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, Default)]
pub struct vmm_rs_guest_stats {
    /// Actions executed.
    pub steps: u64,
    /// Interrupts injected into the guest (NMIs included, as vector 2).
    pub interrupts: u64,
    /// The last injected vector, or -1.
    pub last_vector: c_int,
    /// The last value read by MMIO_READ or PORT_IN.
    pub last_read: u64,
}

fn action_from_c(a: &vmm_rs_action) -> Result<GuestAction> {
    use vmm_rs_action_kind::*;
    let mmio_size = |s: u8| if matches!(s, 1 | 2 | 4 | 8) { Ok(s) } else { Err(Error::Inval) };
    let port_size = |s: u8| if matches!(s, 1 | 2 | 4) { Ok(s) } else { Err(Error::Inval) };
    Ok(match a.kind {
        k if k == VMM_RS_ACT_COMPUTE as c_int => GuestAction::Compute,
        k if k == VMM_RS_ACT_MMIO_READ as c_int => GuestAction::MmioRead { gpa: a.gpa, size: mmio_size(a.size)? },
        k if k == VMM_RS_ACT_MMIO_WRITE as c_int => {
            GuestAction::MmioWrite { gpa: a.gpa, size: mmio_size(a.size)?, value: a.value }
        }
        k if k == VMM_RS_ACT_PORT_IN as c_int => GuestAction::PortIn { port: a.port, size: port_size(a.size)? },
        k if k == VMM_RS_ACT_PORT_OUT as c_int => {
            GuestAction::PortOut { port: a.port, size: port_size(a.size)?, value: a.value as u32 }
        }
        k if k == VMM_RS_ACT_HLT as c_int => GuestAction::Hlt,
        k if k == VMM_RS_ACT_PAUSE as c_int => GuestAction::Pause,
        k if k == VMM_RS_ACT_STI as c_int => GuestAction::EnableInterrupts,
        k if k == VMM_RS_ACT_CLI as c_int => GuestAction::DisableInterrupts,
        k if k == VMM_RS_ACT_WAIT_INTR_EOI as c_int => GuestAction::WaitInterruptEoi,
        k if k == VMM_RS_ACT_INT3 as c_int => GuestAction::Breakpoint,
        k if k == VMM_RS_ACT_INS as c_int || k == VMM_RS_ACT_OUTS as c_int => GuestAction::StringIo {
            port: a.port,
            size: port_size(a.size)?,
            is_in: k == VMM_RS_ACT_INS as c_int,
            index: a.gpa,
            count: (a.value != 0).then_some(a.value),
        },
        k if k == VMM_RS_ACT_RDMSR as c_int => GuestAction::Rdmsr { msr: a.msr },
        k if k == VMM_RS_ACT_WRMSR as c_int => GuestAction::Wrmsr { msr: a.msr, value: a.value },
        k if k == VMM_RS_ACT_CPUID as c_int => GuestAction::Cpuid { leaf: a.value as u32, subleaf: (a.value >> 32) as u32 },
        k if k == VMM_RS_ACT_RDTSC as c_int => GuestAction::Rdtsc,
        k if k == VMM_RS_ACT_RDTSCP as c_int => GuestAction::Rdtscp,
        k if k == VMM_RS_ACT_RDPID as c_int => GuestAction::Rdpid,
        k if k == VMM_RS_ACT_TASK_SWITCH as c_int => GuestAction::TaskSwitch {
            tsssel: u16::try_from(a.value).map_err(|_| Error::Inval)?,
            // The processor's own reason (an IDT gate) is no instruction.
            reason: TaskSwitchReason::from_raw(a.size.into())
                .filter(|r| *r != TaskSwitchReason::IdtGate)
                .ok_or(Error::Inval)?,
        },
        k if k == VMM_RS_ACT_MONITOR as c_int => GuestAction::Refused(RefusedInstruction::Monitor),
        k if k == VMM_RS_ACT_MWAIT as c_int => GuestAction::Refused(RefusedInstruction::Mwait),
        k if k == VMM_RS_ACT_VMX_INSN as c_int => GuestAction::Refused(RefusedInstruction::Vmx),
        _ => return Err(Error::Inval),
    })
}

/// A guest whose actions come from C callbacks.
struct CallbackGuest {
    ops: vmm_rs_guest_ops,
    cookie: *mut c_void,
    vcpuid: c_int,
    /// Its VM's [`vm_identity`], for the callbacks' [`in_callback`] mark.
    vm: usize,
    ended: bool,
}

// SAFETY: the C caller promises (vmm_rs_guest_set_ops) that the callbacks
// and cookie may be used from the thread that runs the vCPU.
unsafe impl Send for CallbackGuest {}

impl GuestProgram for CallbackGuest {
    fn next(&mut self, rip: u64) -> GuestAction {
        let Some(next) = self.ops.next.filter(|_| !self.ended) else {
            return GuestAction::Hlt;
        };
        // An ended guest disables interrupts once, then halts for good.
        let mut a = vmm_rs_action { kind: 0, size: 0, port: 0, gpa: 0, value: 0, msr: 0 };
        // SAFETY: a C callback with the contract documented on the ops.
        let rc = in_callback(self.vm, self.vcpuid as usize, || unsafe { next(self.cookie, self.vcpuid, rip, &mut a) });
        if rc != 0 {
            self.ended = true;
            return GuestAction::DisableInterrupts;
        }
        // A malformed action is a guest bug: it parks the guest rather than
        // crashing the host.
        action_from_c(&a).unwrap_or_else(|_| {
            self.ended = true;
            GuestAction::DisableInterrupts
        })
    }

    fn interrupt(&mut self, vector: u8) {
        if let Some(f) = self.ops.interrupt {
            // SAFETY: a C callback with the documented contract.
            in_callback(self.vm, self.vcpuid as usize, || unsafe { f(self.cookie, self.vcpuid, c_int::from(vector)) });
        }
    }

    fn read_result(&mut self, value: u64) {
        if let Some(f) = self.ops.read_result {
            // SAFETY: a C callback with the documented contract.
            in_callback(self.vm, self.vcpuid as usize, || unsafe { f(self.cookie, self.vcpuid, value) });
        }
    }

    /// VM_REINIT: a guest that ended (`next` returned non-zero) is asked
    /// again, from `rip` 0.
    fn restart(&mut self) {
        self.ended = false;
    }

    fn cpuid_result(&mut self, regs: [u32; 4]) {
        if let Some(f) = self.ops.cpuid_result {
            // SAFETY: a C callback with the documented contract; `regs`
            // outlives the call.
            in_callback(self.vm, self.vcpuid as usize, || unsafe { f(self.cookie, self.vcpuid, regs.as_ptr()) });
        }
    }
}

/// Installs `program` on the vCPU behind `vcpu`, holding the vCPU (lock-one
/// class) so it is not running while its guest changes.
fn install(vcpu: *mut vcpu, program: Option<Box<dyn GuestProgram>>) -> Result<()> {
    handle::with_locked_vcpu(vcpu, |vm, l| vm.set_guest(l, program))
}

/// Drives the vCPU's guest with C callbacks (`ops` is copied; `cookie` is
/// passed to every callback). The callbacks run on whichever thread calls
/// VM_RUN for this vCPU. Returns 0, or -1 with errno: EFAULT for NULL
/// `ops` or `ops->next`, EBADF for a bad handle.
#[no_mangle]
pub unsafe extern "C" fn vmm_rs_guest_set_ops(vcpu: *mut vcpu, ops: *const vmm_rs_guest_ops, cookie: *mut c_void) -> c_int {
    ffi_boundary!({
        // SAFETY: NULL or a readable ops struct from the caller.
        let Some(ops) = (unsafe { ops.as_ref() }).copied() else {
            return fail(libc::EFAULT);
        };
        if ops.next.is_none() {
            return fail(libc::EFAULT);
        }
        let r = handle::vcpu_vm(vcpu).and_then(|(vm, id)| {
            let g = CallbackGuest { ops, cookie, vcpuid: id as c_int, vm: vm_identity(&vm), ended: false };
            install(vcpu, Some(Box::new(g)))
        });
        to_rc(r)
    })
}

/// Gives the vCPU a scripted guest: `count` actions run in order, then
/// again from index `loop_at` (or, with `loop_at` = -1, the guest halts
/// with interrupts disabled at the end). The actions are copied. Returns
/// 0, or -1 with errno EINVAL for a malformed action or `loop_at` out of
/// range, EFAULT for NULL `actions` with a non-zero count.
#[no_mangle]
pub unsafe extern "C" fn vmm_rs_guest_set_script(
    vcpu: *mut vcpu,
    actions: *const vmm_rs_action,
    count: usize,
    loop_at: c_int,
) -> c_int {
    ffi_boundary!({
        if count > 0 && actions.is_null() {
            return fail(libc::EFAULT);
        }
        let loop_at = match loop_at {
            -1 => None,
            l if l >= 0 && (l as usize) < count => Some(l as usize),
            _ => return fail(libc::EINVAL),
        };
        let slice = if count == 0 {
            &[][..]
        } else {
            // SAFETY: non-NULL, `count` readable elements per the contract.
            unsafe { std::slice::from_raw_parts(actions, count) }
        };
        let script: Result<Vec<_>> = slice.iter().map(action_from_c).collect();
        let r = script.and_then(|s| install(vcpu, Some(Box::new(ScriptedGuest::new(s, loop_at)))));
        to_rc(r)
    })
}

/// Removes the vCPU's guest: it becomes an idle loop (sti; hlt) again.
#[no_mangle]
pub extern "C" fn vmm_rs_guest_clear(vcpu: *mut vcpu) -> c_int {
    ffi_boundary!({ to_rc(install(vcpu, None)) })
}

/// Reads the counters of the vCPU's simulated guest.
#[no_mangle]
pub unsafe extern "C" fn vmm_rs_guest_stats(vcpu: *mut vcpu, stats: *mut vmm_rs_guest_stats) -> c_int {
    ffi_boundary!({
        if stats.is_null() {
            return fail(libc::EFAULT);
        }
        let counters = handle::vcpu_vm(vcpu).and_then(|(vm, id)| {
            // The guest's state is locked while its callback runs.
            let _wait = wait_for(&vm, Waits::One(id))?;
            vm.guest_stats(id)
        });
        match counters {
            Ok(s) => {
                let out = vmm_rs_guest_stats {
                    steps: s.steps,
                    interrupts: s.interrupts,
                    last_vector: s.last_vector.map_or(-1, c_int::from),
                    last_read: s.last_read,
                };
                // SAFETY: non-NULL out-pointer from the caller.
                unsafe { stats.write(out) };
                0
            }
            Err(e) => fail(errno_of(e)),
        }
    })
}
