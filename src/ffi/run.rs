//! VM_RUN: runs the core's loop and lays the exit out as `struct vm_exit`.

use std::ffi::{c_int, c_void};

use super::abi::*;
use super::cpuset::copy_out_cpuset_any_size;
use super::errno::{errno_of, fail};
use super::handle;
use super::inout_str::inout_str;
use super::commands::c_guest_paging;
use super::inst_emul::inst_emul;
use super::ioctl::copy_in;
use super::panic::ffi_boundary;
use crate::error::{Error, Result};
use crate::exit::{ExitKind, TaskSwitchReason, VmExit};
use crate::vcpu::VcpuState;
use crate::vm::{VcpuLock, Vm};

/// VM_RUN with the vCPU locked: the exit pointer is checked before the
/// guest runs, so an exit is never lost to a bad pointer.
///
/// # Safety
/// `arg` points to a `struct vm_run`.
pub(crate) unsafe fn vm_run_ioctl(vm: &Vm, lock: &VcpuLock<'_>, arg: *mut c_void) -> Result<()> {
    // SAFETY: per the caller's contract.
    let a: vm_run = unsafe { copy_in(arg) };
    if a.vm_exit.is_null() {
        return Err(Error::Fault);
    }
    let exit = vm.run(lock)?;
    let mut out = to_vm_exit(&exit);
    // Exits that carry register state: read from the vCPU, which this
    // call still holds.
    match exit.kind {
        ExitKind::Mmio(a) if !vm.raw_mmio_exits() => {
            // FreeBSD's form: the access as a decoded instruction.
            out.u.inst_emul = inst_emul(&a, exit.inst_length, &lock.vcpu().regs.lock());
            out.exitcode = vm_exitcode::VM_EXITCODE_INST_EMUL as c_int;
        }
        ExitKind::InoutStr { port, bytes, is_in, rep } => {
            out.u.inout_str = inout_str(port, bytes, is_in, rep, &lock.vcpu().regs.lock());
        }
        ExitKind::TaskSwitch(ts) => {
            out.u.task_switch = vm_task_switch {
                tsssel: ts.tsssel,
                ext: c_int::from(ts.ext),
                errcode: ts.errcode.unwrap_or(0),
                errcode_valid: c_int::from(ts.errcode.is_some()),
                reason: ts.reason as c_int,
                paging: c_guest_paging(&lock.vcpu().regs.lock().paging()),
            };
        }
        _ => {}
    }
    // SAFETY: non-NULL; the caller provides a `struct vm_exit` to fill.
    unsafe { a.vm_exit.write_unaligned(out) };
    if let ExitKind::Ipi { cpus, .. } = exit.kind {
        // The IPI's targets go to `vmrun->cpuset`, as FreeBSD copies
        // them out (the exit itself is written already, so a bad buffer
        // loses nothing).
        // SAFETY: the caller's `cpuset` is NULL or `cpusetsize` bytes.
        unsafe { copy_out_cpuset_any_size(&cpus, a.cpuset, a.cpusetsize) }?;
    }
    Ok(())
}

// `struct vm_task_switch.reason` is the core's reason as a number.
const _: () = assert!(
    TaskSwitchReason::Call as i32 == task_switch_reason::TSR_CALL as i32
        && TaskSwitchReason::Iret as i32 == task_switch_reason::TSR_IRET as i32
        && TaskSwitchReason::Jmp as i32 == task_switch_reason::TSR_JMP as i32
        && TaskSwitchReason::IdtGate as i32 == task_switch_reason::TSR_IDT_GATE as i32
);

/// The C layout of an exit.
fn to_vm_exit(e: &VmExit) -> vm_exit {
    let mut out = vm_exit::default();
    out.rip = e.rip;
    out.inst_length = e.inst_length as c_int;
    out.exitcode = match e.kind {
        ExitKind::Inout { port, bytes, is_in, eax } => {
            out.u.inout = vm_inout::new(bytes, is_in, port, eax);
            vm_exitcode::VM_EXITCODE_INOUT
        }
        ExitKind::Mmio(a) => {
            out.u.mmio = vm_exit_mmio {
                bytes: a.size,
                read: u8::from(!a.write),
                _pad: [0; 3],
                gpa: a.gpa,
                data: if a.write { a.value } else { 0 },
            };
            return finish(out, VM_EXITCODE_MMIO);
        }
        // `u.inout_str` needs the registers: `vm_run_ioctl` fills it.
        ExitKind::InoutStr { .. } => vm_exitcode::VM_EXITCODE_INOUT_STR,
        ExitKind::Rdmsr { msr } => {
            out.u.msr = vm_exit_msr { code: msr, wval: 0 };
            vm_exitcode::VM_EXITCODE_RDMSR
        }
        ExitKind::Wrmsr { msr, value } => {
            out.u.msr = vm_exit_msr { code: msr, wval: value };
            vm_exitcode::VM_EXITCODE_WRMSR
        }
        ExitKind::Pause => vm_exitcode::VM_EXITCODE_PAUSE,
        ExitKind::Mtrap => vm_exitcode::VM_EXITCODE_MTRAP,
        ExitKind::Breakpoint => {
            out.u.bpt = vm_exit_bpt { inst_length: 1 };
            vm_exitcode::VM_EXITCODE_BPT
        }
        ExitKind::DebugTrap => {
            out.u.dbg = vm_exit_dbg { trace_trap: 1, ..vm_exit_dbg::default() };
            vm_exitcode::VM_EXITCODE_DB
        }
        ExitKind::Bogus => vm_exitcode::VM_EXITCODE_BOGUS,
        ExitKind::ReqIdle => vm_exitcode::VM_EXITCODE_REQIDLE,
        ExitKind::Suspended(how) => {
            out.u.suspended.how = how as c_int;
            vm_exitcode::VM_EXITCODE_SUSPENDED
        }
        ExitKind::Debug => vm_exitcode::VM_EXITCODE_DEBUG,
        ExitKind::SpinupAp { vcpu, rip } => {
            out.u.spinup_ap = vm_exit_spinup_ap { vcpu: vcpu as c_int, rip };
            vm_exitcode::VM_EXITCODE_SPINUP_AP
        }
        ExitKind::Ipi { mode, vector, .. } => {
            out.u.ipi = vm_exit_ipi { mode, vector };
            vm_exitcode::VM_EXITCODE_IPI
        }
        // `u.task_switch` needs the paging state: `vm_run_ioctl` fills it.
        ExitKind::TaskSwitch(_) => vm_exitcode::VM_EXITCODE_TASK_SWITCH,
    } as c_int;
    out
}

fn finish(mut out: vm_exit, code: c_int) -> vm_exit {
    out.exitcode = code;
    out
}

/// State of a vCPU (FreeBSD's kernel-only `enum vcpu_state`, numbered as
/// there), as `vmm_rs_vcpu_state()` returns it. Not named `vcpu_state`:
/// FreeBSD's userland headers do not declare that tag, and bhyve's gdb.c
/// declares its own `struct vcpu_state`, which the same tag as an enum
/// would refuse to compile.
#[repr(C)]
#[allow(non_camel_case_types)]
pub enum vmm_rs_vcpu_run_state {
    VCPU_IDLE = 0,
    VCPU_FROZEN = 1,
    VCPU_RUNNING = 2,
    VCPU_SLEEPING = 3,
}

/// vmm_rs extension: the current state of a vCPU (enum
/// vmm_rs_vcpu_run_state: VCPU_IDLE ... VCPU_SLEEPING), or -1
/// with errno EFAULT (NULL) or EBADF (a bad handle, or the VM was
/// destroyed). Meant for tests and debugging: it lets a
/// test wait for "the vCPU is inside VM_RUN, sleeping" without sleeping.
#[no_mangle]
pub extern "C" fn vmm_rs_vcpu_state(vcpu: *mut handle::vcpu) -> c_int {
    ffi_boundary!({
        let state = handle::vcpu_vm(vcpu).and_then(|(vm, id)| {
            vm.check_alive()?;
            Ok(vm.vcpu(id)?.state())
        });
        match state {
            Ok(s) => (match s {
                VcpuState::Idle => vmm_rs_vcpu_run_state::VCPU_IDLE,
                VcpuState::Frozen => vmm_rs_vcpu_run_state::VCPU_FROZEN,
                VcpuState::Running => vmm_rs_vcpu_run_state::VCPU_RUNNING,
                VcpuState::Sleeping => vmm_rs_vcpu_run_state::VCPU_SLEEPING,
            }) as c_int,
            Err(e) => fail(errno_of(e)),
        }
    })
}

/// vmm_rs extension: how VM_RUN reports a guest MMIO access outside the
/// devices emulated inside (local APIC, IOAPIC, HPET). `exitcode`
/// VM_EXITCODE_INST_EMUL (the default, FreeBSD's): `u.inst_emul` with the
/// guest-physical address, the paging state and CS, and `vie` already
/// decoded (`decoded` 1, no instruction bytes) as the `mov` between RAX
/// (AL, AX, EAX) and memory that makes the access, as bhyve's
/// `vmexit_inst_emul` passes it to its instruction emulator: a store's
/// value is in RAX, and a load's value goes to RAX with VM_SET_REGISTER
/// before the next VM_RUN. VM_EXITCODE_MMIO (illumos-style): `u.mmio`
/// with size, direction, address and a store's data. For the whole VM,
/// kept across VM_REINIT. Returns 0, or -1 with errno EINVAL for another
/// code, EFAULT or EBADF for a bad handle or a destroyed VM.
#[no_mangle]
pub extern "C" fn vmm_rs_set_mmio_exitcode(ctx: *mut handle::vmctx, exitcode: c_int) -> c_int {
    ffi_boundary!({
        let vm = match handle::live_ctx_vm(ctx) {
            Ok(vm) => vm,
            Err(e) => return fail(errno_of(e)),
        };
        let raw = match exitcode {
            c if c == vm_exitcode::VM_EXITCODE_INST_EMUL as c_int => false,
            c if c == VM_EXITCODE_MMIO => true,
            _ => return fail(libc::EINVAL),
        };
        vm.set_raw_mmio_exits(raw);
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Bogus exit (the vCPU came out for nothing userland must handle,
    /// as FreeBSD's VM_EXITCODE_BOGUS) reaches C with that code and its
    /// RIP. No backend a C VM can use makes one, so no C test sees it.
    #[test]
    fn a_bogus_exit_reaches_c_as_vm_exitcode_bogus() {
        let out = to_vm_exit(&VmExit { kind: ExitKind::Bogus, rip: 0x1234, inst_length: 0 });
        assert_eq!((out.exitcode, out.rip, out.inst_length), (vm_exitcode::VM_EXITCODE_BOGUS as i32, 0x1234, 0));
    }
}
