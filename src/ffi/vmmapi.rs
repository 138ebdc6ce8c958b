//! libvmmapi (FreeBSD 14, VMMAPI_VERSION 0200): the function-call face of
//! the ioctls. Each function fills the command's argument struct and goes
//! through the same dispatcher as `vmm_ioctl`, so it takes the same locks
//! and returns the same errors (0, or -1 with errno).

use std::ffi::{c_int, c_uint};

use super::abi::*;
use super::call::{ctx_ioctl, vcpu_ioctl};
use super::errno::{errno_of, fail};
use super::handle::{self, vcpu, vmctx};
use super::ioctl::ioctl;
use super::errno::{fail_as_value, fail_with, to_rc};
use super::panic::{ffi_boundary, ffi_boundary_errno_only};
use crate::error::Error;
use crate::regs::FREEBSD_GDT64;

/// libvmmapi's API version, which code built for several FreeBSD releases
/// (grub2-bhyve) tests at compile time: FreeBSD 14's 0200 (octal, as
/// FreeBSD writes it; 128), the `struct vcpu *` calls.
pub const VMMAPI_VERSION: c_int = 0o200;

/// Writes through an out-pointer after a successful call; EFAULT for NULL.
macro_rules! out {
    ($p:expr, $v:expr) => {{
        if $p.is_null() {
            return fail(libc::EFAULT);
        }
        // SAFETY: non-NULL out-pointer from the caller.
        unsafe { $p.write($v) };
    }};
}

/// Runs vCPU `vcpu` until an exit userland must handle; the exit is
/// written to `vmrun->vm_exit`. The local APIC, IOAPIC and HPET MMIO and
/// the 8259 (0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1), PIT (0x40-0x43, 0x61),
/// RTC (0x70, 0x71) and PM timer (0x408) ports
/// are emulated inside, as FreeBSD's kernel does; so is HLT (with
/// VM_CAP_HALT_EXIT on, the default, the call sleeps until the HLT ends):
/// VM_EXITCODE_HLT is never returned. For VM_EXITCODE_IPI (the guest sent INIT
/// or STARTUP with VM_CAP_IPI_EXIT set) the target vCPUs are written to
/// `vmrun->cpuset` (its first `cpusetsize` bytes, zero beyond 128, as
/// FreeBSD). Returns 0, or -1 with errno: EFAULT (NULL `vmrun` or exit
/// pointer, or a NULL cpuset of non-zero size for an IPI exit, which is
/// written all the same; or a simulated guest's store to a read-only map
/// such as the boot ROM, as FreeBSD's unresolvable nested page fault, and
/// again when retried), EINVAL (the vCPU is not active or has
/// acknowledged a suspend; or, as FreeBSD's `lapic_mmio_*`, the guest
/// wrote its local APIC page with other than 4 bytes at a 16-byte
/// boundary, or read it away from one (the low two address bits ignored):
/// the access is dropped and the next call runs on), EPERM (as FreeBSD's
/// `vlapic_icrlo_write_handler`, the guest stored an SMI or remote-read
/// IPI in its local APIC's ICR: the ICR holds it, nothing is sent, and the
/// next call runs on after the store), EIO (as FreeBSD, the guest made a
/// port access an emulated device refuses, such as a 2-byte read of port
/// 0x71; the next call runs on), EBADF (bad handle, destroyed VM),
/// EDEADLK (called from a simulated guest's callback of the same VM; or,
/// from another VM's callback, where the vCPU's wait for the VM's other
/// vCPUs would close a cycle of callbacks waiting for each other: on a
/// suspended VM, the vCPU withdraws its acknowledgement and a later
/// vm_run acknowledges again; for the guest's I/O APIC write, the write
/// is not made and the guest makes it again at the next vm_run).
///
/// As on FreeBSD, a vCPU is not owned by a thread: a vm_run, or any
/// per-vCPU call such as vm_get_register, from another thread while this
/// one runs the vCPU is no error: it kicks this call out with
/// VM_EXITCODE_REQIDLE and proceeds once the vCPU is out of the guest.
#[no_mangle]
pub unsafe extern "C" fn vm_run(vcpu: *mut vcpu, vmrun: *mut vm_run) -> c_int {
    ffi_boundary!({
        if vmrun.is_null() {
            return fail(libc::EFAULT);
        }
        // No `&mut` to `*vmrun`: one would stay protected (noalias) for
        // the whole run, during which the guest's C callbacks run on this
        // thread and may read the caller's struct. Raw accesses only.
        handle::with_vcpu(vcpu, |vm, id| {
            // SAFETY: non-NULL; the caller's struct for the call; `ioctl`
            // copies it in before the guest runs.
            unsafe {
                std::ptr::addr_of_mut!((*vmrun).cpuid).write_unaligned(id as c_int);
                ioctl(vm, VM_RUN, vmrun.cast())
            }
        })
        .unwrap_or_else(fail_with)
    })
}

/// Sets register `reg` (enum vm_reg_name) of a vCPU. EINVAL for a number
/// outside the enum (no VMCS or VMCB field is reachable).
/// VM_REG_GUEST_INTR_SHADOW takes 0 only, which ends the guest's interrupt
/// shadow; any other value is EINVAL (as FreeBSD on Intel: a vCPU cannot be
/// forced into an interrupt shadow). VM_REG_GUEST_TPR cannot be set
/// (EINVAL, as FreeBSD's backends). A segment selector keeps 16 bits,
/// VM_REG_GUEST_ENTRY_INST_LENGTH 32 (VMX's VMCS field widths).
#[no_mangle]
pub extern "C" fn vm_set_register(vcpu: *mut vcpu, reg: c_int, val: u64) -> c_int {
    ffi_boundary!({
        let mut a = vm_register { cpuid: 0, regnum: reg, regval: val };
        vcpu_ioctl(vcpu, VM_SET_REGISTER, &mut a, |a, id| a.cpuid = id)
    })
}

/// Reads register `reg` of a vCPU into `*retval` (0 after a failure, as
/// libvmmapi). EINVAL for a number outside the enum.
/// VM_REG_GUEST_INTR_SHADOW reads 1 while the guest is in an interrupt
/// shadow (an exit taken by the instruction right after an STI that
/// enabled interrupts, until the guest resumes past it), else 0.
/// VM_REG_GUEST_TPR reads the local APIC's task priority as CR8 (TPR bits
/// 7:4).
#[no_mangle]
pub unsafe extern "C" fn vm_get_register(vcpu: *mut vcpu, reg: c_int, retval: *mut u64) -> c_int {
    ffi_boundary!({
        if retval.is_null() {
            return fail(libc::EFAULT);
        }
        let mut a = vm_register { cpuid: 0, regnum: reg, regval: 0 };
        let rc = vcpu_ioctl(vcpu, VM_GET_REGISTER, &mut a, |a, id| a.cpuid = id);
        // As libvmmapi: `*retval` is written whatever the result (the
        // zeroed value after a failure).
        out!(retval, if rc == 0 { a.regval } else { 0 });
        rc
    })
}

/// Sets `count` registers: `regnums[i]` to `regvals[i]`, up to the first
/// bad number (EINVAL, as a count above VM_REG_LAST); EFAULT for a NULL
/// array.
#[no_mangle]
pub unsafe extern "C" fn vm_set_register_set(
    vcpu: *mut vcpu,
    count: c_uint,
    regnums: *const c_int,
    regvals: *mut u64,
) -> c_int {
    ffi_boundary!({
        let mut a = vm_register_set { cpuid: 0, count, regnums, regvals };
        vcpu_ioctl(vcpu, VM_SET_REGISTER_SET, &mut a, |a, id| a.cpuid = id)
    })
}

/// Reads `count` registers: `regvals[i]` = register `regnums[i]`, written
/// only if every number is good (else EINVAL, as a count above
/// VM_REG_LAST); EFAULT for a NULL array.
#[no_mangle]
pub unsafe extern "C" fn vm_get_register_set(
    vcpu: *mut vcpu,
    count: c_uint,
    regnums: *const c_int,
    regvals: *mut u64,
) -> c_int {
    ffi_boundary!({
        let mut a = vm_register_set { cpuid: 0, count, regnums, regvals };
        vcpu_ioctl(vcpu, VM_GET_REGISTER_SET, &mut a, |a, id| a.cpuid = id)
    })
}

/// Sets the descriptor (base, limit, access) of segment register `reg`
/// (a segment, LDTR, TR, GDTR or IDTR; EINVAL for another register).
/// GDTR and IDTR keep base and limit only: their access rights read 0.
#[no_mangle]
pub extern "C" fn vm_set_desc(vcpu: *mut vcpu, reg: c_int, base: u64, limit: u32, access: u32) -> c_int {
    ffi_boundary!({
        let mut a = vm_seg_desc { cpuid: 0, regnum: reg, desc: seg_desc { base, limit, access } };
        vcpu_ioctl(vcpu, VM_SET_SEGMENT_DESCRIPTOR, &mut a, |a, id| a.cpuid = id)
    })
}

/// Reads the descriptor of segment register `reg` (EINVAL as
/// vm_set_desc()).
#[no_mangle]
pub unsafe extern "C" fn vm_get_desc(
    vcpu: *mut vcpu,
    reg: c_int,
    base: *mut u64,
    limit: *mut u32,
    access: *mut u32,
) -> c_int {
    ffi_boundary!({
        if base.is_null() || limit.is_null() || access.is_null() {
            return fail(libc::EFAULT);
        }
        let mut a = vm_seg_desc { cpuid: 0, regnum: reg, desc: seg_desc { base: 0, limit: 0, access: 0 } };
        let rc = vcpu_ioctl(vcpu, VM_GET_SEGMENT_DESCRIPTOR, &mut a, |a, id| a.cpuid = id);
        if rc == 0 {
            out!(base, a.desc.base);
            out!(limit, a.desc.limit);
            out!(access, a.desc.access);
        }
        rc
    })
}

/// Reads the descriptor of segment register `reg` into `*seg_desc`
/// (EINVAL as vm_set_desc()).
#[no_mangle]
pub unsafe extern "C" fn vm_get_seg_desc(vcpu: *mut vcpu, reg: c_int, seg_desc: *mut seg_desc) -> c_int {
    ffi_boundary!({
        if seg_desc.is_null() {
            return fail(libc::EFAULT);
        }
        let mut a = vm_seg_desc { cpuid: 0, regnum: reg, desc: seg_desc { base: 0, limit: 0, access: 0 } };
        let rc = vcpu_ioctl(vcpu, VM_GET_SEGMENT_DESCRIPTOR, &mut a, |a, id| a.cpuid = id);
        if rc == 0 {
            out!(seg_desc, a.desc);
        }
        rc
    })
}

/// Reads capability `cap` (enum vm_cap_type) into `*retval` (0 after a
/// failure, as libvmmapi). A new vCPU
/// has VM_CAP_HALT_EXIT on (HLT exits and sleeps in the library),
/// VM_CAP_RDPID and VM_CAP_RDTSCP on (always, as on FreeBSD's VMX
/// backend on a host with the instructions) and every other capability
/// off. EINVAL for a capability outside 0-10.
#[no_mangle]
pub unsafe extern "C" fn vm_get_capability(vcpu: *mut vcpu, cap: vm_cap_type_arg, retval: *mut c_int) -> c_int {
    ffi_boundary!({
        if retval.is_null() {
            return fail(libc::EFAULT);
        }
        let mut a = vm_capability { cpuid: 0, captype: cap, capval: 0, allcpus: 0 };
        let rc = vcpu_ioctl(vcpu, VM_GET_CAPABILITY, &mut a, |a, id| a.cpuid = id);
        // As libvmmapi: written whatever the result (0 after a failure).
        out!(retval, if rc == 0 { a.capval } else { 0 });
        rc
    })
}

/// Sets capability `cap` to `val`. EINVAL for a capability outside 0-10,
/// ENOENT for VM_CAP_RDPID and VM_CAP_RDTSCP (fixed on, as FreeBSD's VMX
/// backend).
#[no_mangle]
pub extern "C" fn vm_set_capability(vcpu: *mut vcpu, cap: vm_cap_type_arg, val: c_int) -> c_int {
    ffi_boundary!({
        let mut a = vm_capability { cpuid: 0, captype: cap, capval: val, allcpus: 0 };
        vcpu_ioctl(vcpu, VM_SET_CAPABILITY, &mut a, |a, id| a.cpuid = id)
    })
}

/// Reads (exit intinfo, pending exception intinfo).
#[no_mangle]
pub unsafe extern "C" fn vm_get_intinfo(vcpu: *mut vcpu, info1: *mut u64, info2: *mut u64) -> c_int {
    ffi_boundary!({
        if info1.is_null() || info2.is_null() {
            return fail(libc::EFAULT);
        }
        let mut a = vm_intinfo { vcpuid: 0, info1: 0, info2: 0 };
        let rc = vcpu_ioctl(vcpu, VM_GET_INTINFO, &mut a, |a, id| a.vcpuid = id);
        if rc == 0 {
            out!(info1, a.info1);
            out!(info2, a.info2);
        }
        rc
    })
}

/// Sets the exit intinfo (the event being delivered when the guest exited).
/// EINVAL for a VALID word with reserved bits set, of type NMI with a
/// vector other than 2, or of type hardware exception with a vector of
/// 32 or more (FreeBSD's `vm_exit_intinfo` checks).
#[no_mangle]
pub extern "C" fn vm_set_intinfo(vcpu: *mut vcpu, info1: u64) -> c_int {
    ffi_boundary!({
        let mut a = vm_intinfo { vcpuid: 0, info1, info2: 0 };
        vcpu_ioctl(vcpu, VM_SET_INTINFO, &mut a, |a, id| a.vcpuid = id)
    })
}

/// Queues exception `vector` for the guest, injected at its next entry
/// (the error code only in protected mode). Returns 0, or -1 with errno EINVAL for a vector
/// outside 0-31 or #DF (8), EBUSY if an exception is already pending.
#[no_mangle]
pub extern "C" fn vm_inject_exception(
    vcpu: *mut vcpu,
    vector: c_int,
    errcode_valid: c_int,
    errcode: u32,
    restart_instruction: c_int,
) -> c_int {
    ffi_boundary!({
        let mut a = vm_exception {
            cpuid: 0,
            vector,
            error_code: errcode,
            error_code_valid: errcode_valid,
            restart_instruction,
        };
        vcpu_ioctl(vcpu, VM_INJECT_EXCEPTION, &mut a, |a, id| a.cpuid = id)
    })
}

/// libvmmapi's `vm_inject_fault`: queues exception `vector` to be raised
/// at the instruction that exited (it is restarted), as bhyve's exit
/// handlers do for a refused access. libvmmapi asserts that this works;
/// here a failure (the errors of vm_inject_exception()) only sets errno.
/// The header's vm_inject_ud/gp/ac/ss wrap it, as in FreeBSD's vmm.h.
#[no_mangle]
pub extern "C" fn vm_inject_fault(vcpu: *mut vcpu, vector: c_int, errcode_valid: c_int, errcode: c_int) {
    ffi_boundary_errno_only!((), {
        vm_inject_exception(vcpu, vector, errcode_valid, errcode as u32, 1);
    })
}

/// The shared body of `vm_gla2gpa` and `vm_gla2gpa_nofault`.
///
/// # Safety
/// The contract the header states for pointers.
unsafe fn gla2gpa(
    vcpu: *mut vcpu,
    cmd: u64,
    paging: *mut vm_guest_paging,
    gla: u64,
    prot: c_int,
    gpa: *mut u64,
    fault: *mut c_int,
) -> c_int {
    if paging.is_null() || gpa.is_null() || fault.is_null() {
        return fail(libc::EFAULT);
    }
    // SAFETY: non-NULL in-pointer.
    let paging = unsafe { paging.read() };
    let mut a = vm_gla2gpa { vcpuid: 0, prot, gla, paging, fault: 0, gpa: 0 };
    let rc = vcpu_ioctl(vcpu, cmd, &mut a, |a, id| a.vcpuid = id);
    if rc == 0 {
        out!(fault, a.fault);
        out!(gpa, a.gpa);
    }
    rc
}

/// Translates guest-linear `gla` with the guest's page tables as `paging`
/// describes them, for an access of `prot` (PROT_READ, PROT_WRITE,
/// PROT_EXEC). Returns 0 with `*fault` 0 and `*gpa` set, or with `*fault`
/// 1 when the guest faults: the fault (#PF with CR2, or #GP for a
/// non-canonical address) is then queued for the vCPU. -1 with errno
/// EFAULT when a page-table page is not read-write guest memory (or for a
/// NULL pointer), EBADF for a bad handle.
#[no_mangle]
pub unsafe extern "C" fn vm_gla2gpa(
    vcpu: *mut vcpu,
    paging: *mut vm_guest_paging,
    gla: u64,
    prot: c_int,
    gpa: *mut u64,
    fault: *mut c_int,
) -> c_int {
    // SAFETY: forwarded.
    ffi_boundary!({ unsafe { gla2gpa(vcpu, VM_GLA2GPA, paging, gla, prot, gpa, fault) } })
}

/// As `vm_gla2gpa`, but a guest fault is only reported in `*fault`, not
/// queued, and no accessed or dirty bit is set.
#[no_mangle]
pub unsafe extern "C" fn vm_gla2gpa_nofault(
    vcpu: *mut vcpu,
    paging: *mut vm_guest_paging,
    gla: u64,
    prot: c_int,
    gpa: *mut u64,
    fault: *mut c_int,
) -> c_int {
    // SAFETY: forwarded.
    ffi_boundary!({ unsafe { gla2gpa(vcpu, VM_GLA2GPA_NOFAULT, paging, gla, prot, gpa, fault) } })
}

/// Puts the vCPU's registers in the power-on state (libvmmapi's
/// `vcpu_reset`, Intel SDM table 9-1): real mode at F000:FFF0, CR0.NE
/// alone, RDX 0xF00, the other general registers, CR2-CR4 and EFER zero,
/// 64 KiB segments, DR6/DR7 at their reset values, no interrupt shadow.
/// bhyve calls it before starting an AP. Done in one step with the vCPU
/// locked (libvmmapi makes some 40 register calls). Returns 0, or -1 with
/// errno EFAULT or EBADF (bad handle, destroyed VM).
#[no_mangle]
pub extern "C" fn vcpu_reset(vcpu: *mut vcpu) -> c_int {
    ffi_boundary!({
        to_rc(handle::with_locked_vcpu(vcpu, |vm, l| {
            l.vcpu().regs.lock().power_on_reset();
            // libvmmapi's vcpu_reset clears the interrupt shadow too.
            vm.set_register(l, crate::regs::reg::INTR_SHADOW as c_int, 0)
        }))
    })
}

/// Sets the vCPU up as FreeBSD's loader enters a 64-bit kernel (bhyveload):
/// long mode with paging (CR0 PE|PG|NE, CR4.PAE, EFER LME|LMA), page
/// tables at `cr3`, at `rip` with stack `rsp`, GDTR at `gdtbase` (limit
/// 23; fill it with vm_setup_freebsd_gdt()), code selector 0x8, data 0x10,
/// TR and LDTR null. Returns 0, or -1 with errno EFAULT or EBADF.
#[no_mangle]
pub extern "C" fn vm_setup_freebsd_registers(vcpu: *mut vcpu, rip: u64, cr3: u64, gdtbase: u64, rsp: u64) -> c_int {
    ffi_boundary!({
        to_rc(handle::with_locked_vcpu(vcpu, |_, l| {
            l.vcpu().regs.lock().freebsd_long_mode(rip, cr3, gdtbase, rsp);
            Ok(())
        }))
    })
}

/// Sets the vCPU up in flat 32-bit protected mode without paging at `eip`
/// with stack `esp` (unrestricted guest on), writing a GDT (null, 4 GiB
/// code 0x8 and data 0x10, TSS 0x18 one page above it) into guest RAM at
/// `gdtbase`. Returns 0; EFAULT (also in errno) if the GDT's page is not
/// guest RAM from vm_setup_memory() mapped in the guest (nothing is
/// changed then; libvmmapi has set CR0, CR4 and EFER by that point, and
/// writes a GDT the guest no longer maps); -1 with errno EFAULT or EBADF
/// for a bad handle.
#[no_mangle]
pub extern "C" fn vm_setup_freebsd_registers_i386(vcpu: *mut vcpu, eip: u32, gdtbase: u32, esp: u32) -> c_int {
    ffi_boundary!({
        // Handle and vCPU errors are -1 with errno; the GDT page's is the
        // value EFAULT, as libvmmapi returns it.
        let r = handle::with_locked_vcpu(vcpu, |vm, l| Ok(vm.setup_freebsd_i386(l, eip, gdtbase, esp)));
        match r {
            Ok(Ok(())) => 0,
            Ok(Err(Error::Fault)) => fail_as_value(libc::EFAULT),
            Ok(Err(e)) | Err(e) => fail_with(e),
        }
    })
}

/// Fills `gdtr[0..3]` with the long-mode GDT vm_setup_freebsd_registers()
/// expects: null, 64-bit code, data. errno EFAULT for NULL.
#[no_mangle]
pub unsafe extern "C" fn vm_setup_freebsd_gdt(gdtr: *mut u64) {
    ffi_boundary_errno_only!((), {
        if gdtr.is_null() {
            super::errno::set_errno(libc::EFAULT);
            return;
        }
        for (i, d) in FREEBSD_GDT64.iter().enumerate() {
            // SAFETY: the caller's array holds three entries.
            unsafe { gdtr.add(i).write(*d) };
        }
    })
}

/// Makes the guest re-execute the instruction that caused the last exit.
#[no_mangle]
pub extern "C" fn vm_restart_instruction(vcpu: *mut vcpu) -> c_int {
    ffi_boundary!({
        let mut id: c_int = 0;
        vcpu_ioctl(vcpu, VM_RESTART_INSTRUCTION, &mut id, |a, id| *a = id)
    })
}

/// Adds the vCPU to the active set (EBUSY if it already is).
#[no_mangle]
pub extern "C" fn vm_activate_cpu(vcpu: *mut vcpu) -> c_int {
    ffi_boundary!({
        let mut a = vm_activate_cpu { vcpuid: 0 };
        vcpu_ioctl(vcpu, VM_ACTIVATE_CPU, &mut a, |a, id| a.vcpuid = id)
    })
}

fn get_cpus(ctx: *mut vmctx, which: c_int, cpus: *mut cpuset_t) -> c_int {
    let mut a = vm_cpuset {
        which,
        cpusetsize: std::mem::size_of::<cpuset_t>() as c_int,
        cpus,
    };
    ctx_ioctl(ctx, VM_GET_CPUS, &mut a)
}

/// The set of active vCPUs.
#[no_mangle]
pub extern "C" fn vm_active_cpus(ctx: *mut vmctx, cpus: *mut cpuset_t) -> c_int {
    ffi_boundary!({ get_cpus(ctx, VM_ACTIVE_CPUS, cpus) })
}

/// The set of vCPUs that have acknowledged a VM-wide suspend. A vCPU
/// waiting in vm_run() for the others leaves it again when a call takes
/// that vCPU (its vm_run() returns VM_EXITCODE_REQIDLE).
#[no_mangle]
pub extern "C" fn vm_suspended_cpus(ctx: *mut vmctx, cpus: *mut cpuset_t) -> c_int {
    ffi_boundary!({ get_cpus(ctx, VM_SUSPENDED_CPUS, cpus) })
}

/// The set of vCPUs held out of the guest for debugging.
#[no_mangle]
pub extern "C" fn vm_debug_cpus(ctx: *mut vmctx, cpus: *mut cpuset_t) -> c_int {
    ffi_boundary!({ get_cpus(ctx, VM_DEBUG_CPUS, cpus) })
}

/// Puts one vCPU in the debug set: its VM_RUN returns VM_EXITCODE_DEBUG.
/// EINVAL if the vCPU is not active.
#[no_mangle]
pub extern "C" fn vm_suspend_cpu(vcpu: *mut vcpu) -> c_int {
    ffi_boundary!({
        let mut a = vm_activate_cpu { vcpuid: 0 };
        vcpu_ioctl(vcpu, VM_SUSPEND_CPU, &mut a, |a, id| a.vcpuid = id)
    })
}

/// Takes one vCPU out of the debug set. EINVAL if it is not in it.
#[no_mangle]
pub extern "C" fn vm_resume_cpu(vcpu: *mut vcpu) -> c_int {
    ffi_boundary!({
        let mut a = vm_activate_cpu { vcpuid: 0 };
        vcpu_ioctl(vcpu, VM_RESUME_CPU, &mut a, |a, id| a.vcpuid = id)
    })
}

/// Puts every active vCPU in the debug set.
#[no_mangle]
pub extern "C" fn vm_suspend_all_cpus(ctx: *mut vmctx) -> c_int {
    ffi_boundary!({
        let mut a = vm_activate_cpu { vcpuid: -1 };
        ctx_ioctl(ctx, VM_SUSPEND_CPU, &mut a)
    })
}

/// Empties the debug set.
#[no_mangle]
pub extern "C" fn vm_resume_all_cpus(ctx: *mut vmctx) -> c_int {
    ffi_boundary!({
        let mut a = vm_activate_cpu { vcpuid: -1 };
        ctx_ioctl(ctx, VM_RESUME_CPU, &mut a)
    })
}

/// Suspends the VM (enum vm_suspend_how): EINVAL for NONE or an unknown
/// value, EALREADY if it is already suspended. It does not wait: each
/// active vCPU's vm_run() returns VM_EXITCODE_SUSPENDED (`u.suspended.how`)
/// only once every active vCPU has reached the suspend inside vm_run(),
/// as on FreeBSD. So every activated vCPU needs a thread in vm_run()
/// until then: one activated but never run (or whose thread has stopped
/// calling vm_run()) keeps the others waiting inside vm_run() (a
/// per-vCPU call such as vm_get_register() on a waiting vCPU takes it
/// out with VM_EXITCODE_REQIDLE). After VM_EXITCODE_SUSPENDED, vm_run()
/// on that vCPU fails with EINVAL until vm_reinit().
#[no_mangle]
pub extern "C" fn vm_suspend(ctx: *mut vmctx, how: vm_suspend_how_arg) -> c_int {
    ffi_boundary!({
        let mut a = vm_suspend { how };
        ctx_ioctl(ctx, VM_SUSPEND, &mut a)
    })
}

/// Resets a suspended VM as FreeBSD's VM_REINIT: registers, local APICs,
/// the other devices and the vCPU states as when created, every vCPU
/// inactive again (vm_activate_cpu() before its next vm_run()); system
/// memory and its contents are kept, device-memory maps removed. A
/// simulated guest starts over: a script from its first action, a
/// callback guest with `rip` 0.
///
/// Like every call that locks all vCPUs, it first takes every vCPU out of
/// vm_run() (FreeBSD's `vcpu_lock_all`). A vCPU waiting there for the
/// others to acknowledge the suspend withdraws its acknowledgement and
/// returns VM_EXITCODE_REQIDLE (it acknowledges again at its next
/// vm_run()); then vm_reinit() is EBUSY unless every active vCPU has
/// acknowledged the suspend (seen SUSPENDED).
#[no_mangle]
pub extern "C" fn vm_reinit(ctx: *mut vmctx) -> c_int {
    ffi_boundary!({
        match handle::ctx_vm(ctx) {
            // SAFETY: VM_REINIT takes no argument.
            Ok(vm) => unsafe { ioctl(&vm, VM_REINIT, std::ptr::null_mut()) },
            Err(e) => fail(errno_of(e)),
        }
    })
}

/// Sets the CPU topology; `maxcpus` is ignored, as on FreeBSD. EINVAL when
/// sockets x cores x threads exceeds the VM's vCPU count.
#[no_mangle]
pub extern "C" fn vm_set_topology(ctx: *mut vmctx, sockets: u16, cores: u16, threads: u16, maxcpus: u16) -> c_int {
    ffi_boundary!({
        let mut a = vm_cpu_topology { sockets, cores, threads, maxcpus };
        ctx_ioctl(ctx, VM_SET_TOPOLOGY, &mut a)
    })
}

/// Reads the CPU topology.
#[no_mangle]
pub unsafe extern "C" fn vm_get_topology(
    ctx: *mut vmctx,
    sockets: *mut u16,
    cores: *mut u16,
    threads: *mut u16,
    maxcpus: *mut u16,
) -> c_int {
    ffi_boundary!({
        if sockets.is_null() || cores.is_null() || threads.is_null() || maxcpus.is_null() {
            return fail(libc::EFAULT);
        }
        let mut a = vm_cpu_topology { sockets: 0, cores: 0, threads: 0, maxcpus: 0 };
        let rc = ctx_ioctl(ctx, VM_GET_TOPOLOGY, &mut a);
        if rc == 0 {
            out!(sockets, a.sockets);
            out!(cores, a.cores);
            out!(threads, a.threads);
            out!(maxcpus, a.maxcpus);
        }
        rc
    })
}
