//! The handlers behind `vmm_ioctl`, one per VM_* command, run under the
//! command's lock class.

use std::ffi::{c_int, c_void};

use super::abi::*;
use super::ioctl::{arg_vcpu, copy_in, copy_out, LockClass};
use super::reentry::{wait_for, Waits};
use crate::error::{Error, Result};
use crate::regs::SegDesc;
use crate::vm::{CpuSetKind, Vm};

/// Takes `class`'s locks and runs `cmd`.
///
/// # Safety
/// `arg` is NULL only for VM_REINIT, else points to `cmd`'s struct.
pub(crate) unsafe fn run(vm: &Vm, cmd: u64, class: LockClass, arg: *mut c_void) -> Result<()> {
    match class {
        LockClass::One => {
            // SAFETY: every lock-one struct starts with an int vCPU id.
            let id = unsafe { arg_vcpu(vm, arg) }?;
            let wait = wait_for(vm, Waits::One(id))?;
            let lock = vm.lock_one(id)?;
            // The wait is over. VM_RUN holds its vCPU RUNNING while its
            // guest's callbacks run, which may wait in turn, and its RTE
            // writes wait for other vCPUs, as a kernemu RTE write does:
            // they stay registered, holding the vCPU, until it is
            // released.
            let running = if cmd == VM_RUN || cmd == VM_SET_KERNEMU_DEV {
                wait.claimed();
                Some(wait)
            } else {
                drop(wait);
                None
            };
            // SAFETY: forwarded.
            let r = unsafe { vcpu_cmd(vm, &lock, cmd, arg) };
            drop(running);
            r
        }
        LockClass::All | LockClass::AllMemExclusive => {
            let wait = wait_for(vm, Waits::All)?;
            let all = vm.lock_all()?;
            drop(wait);
            // SAFETY: forwarded.
            unsafe { all_cmd(vm, &all, cmd, arg) }
        }
        LockClass::MemShared => {
            vm.check_alive()?;
            // SAFETY: forwarded.
            unsafe { mem_cmd(vm, cmd, arg) }
        }
        LockClass::None => {
            vm.check_alive()?;
            // SAFETY: forwarded.
            unsafe { vm_cmd(vm, cmd, arg) }
        }
    }
}

/// Commands of the "lock one vCPU" class.
unsafe fn vcpu_cmd(vm: &Vm, lock: &crate::vm::VcpuLock<'_>, cmd: u64, arg: *mut c_void) -> Result<()> {
    let vcpu = lock.vcpu();
    // SAFETY (every copy_in/copy_out below): `arg` points to `cmd`'s struct.
    unsafe {
        match cmd {
            VM_RUN => super::run::vm_run_ioctl(vm, lock, arg),
            VM_SET_REGISTER => {
                let a: vm_register = copy_in(arg);
                vm.set_register(lock, a.regnum, a.regval)
            }
            VM_GET_REGISTER => {
                let mut a: vm_register = copy_in(arg);
                a.regval = vm.get_register(lock, a.regnum)?;
                copy_out(arg, a);
                Ok(())
            }
            VM_SET_SEGMENT_DESCRIPTOR => {
                let a: vm_seg_desc = copy_in(arg);
                let d = SegDesc { base: a.desc.base, limit: a.desc.limit, access: a.desc.access };
                vcpu.regs.lock().set_seg(a.regnum, d)
            }
            VM_GET_SEGMENT_DESCRIPTOR => {
                let mut a: vm_seg_desc = copy_in(arg);
                let d = vcpu.regs.lock().get_seg(a.regnum)?;
                a.desc = seg_desc { base: d.base, limit: d.limit, access: d.access };
                copy_out(arg, a);
                Ok(())
            }
            VM_SET_REGISTER_SET | VM_GET_REGISTER_SET => {
                let a: vm_register_set = copy_in(arg);
                register_set(vm, lock, &a, cmd == VM_SET_REGISTER_SET)
            }
            VM_SET_CAPABILITY => {
                let a: vm_capability = copy_in(arg);
                vcpu.regs.lock().set_cap(a.captype, a.capval)
            }
            VM_GET_CAPABILITY => {
                let mut a: vm_capability = copy_in(arg);
                a.capval = vcpu.regs.lock().get_cap(a.captype)?;
                copy_out(arg, a);
                Ok(())
            }
            VM_ACTIVATE_CPU => vm.activate_cpu(lock.id()),
            VM_SET_INTINFO => {
                let a: vm_intinfo = copy_in(arg);
                vcpu.regs.lock().set_exitintinfo(a.info1)
            }
            VM_GET_INTINFO => {
                let mut a: vm_intinfo = copy_in(arg);
                (a.info1, a.info2) = vcpu.regs.lock().intinfo();
                copy_out(arg, a);
                Ok(())
            }
            VM_GLA2GPA | VM_GLA2GPA_NOFAULT => {
                let mut a: vm_gla2gpa = copy_in(arg);
                let paging = guest_paging(&a.paging);
                // FreeBSD looks only at the write and execute bits of prot.
                let gpa = vm.gla2gpa(lock, &paging, a.gla, a.prot as u32, cmd == VM_GLA2GPA_NOFAULT)?;
                a.fault = c_int::from(gpa.is_none());
                if let Some(gpa) = gpa {
                    a.gpa = gpa;
                }
                copy_out(arg, a);
                Ok(())
            }
            VM_INJECT_EXCEPTION => {
                let a: vm_exception = copy_in(arg);
                let code = (a.error_code_valid != 0).then_some(a.error_code);
                vm.inject_exception(vcpu, a.vector, code, a.restart_instruction != 0)
            }
            VM_RESTART_INSTRUCTION => {
                vcpu.regs.lock().restart_instruction();
                Ok(())
            }
            _ => super::apic::vcpu_cmd(vm, lock, cmd, arg),
        }
    }
}

/// VM_SET/GET_REGISTER_SET: `count` registers through two user arrays.
///
/// # Safety
/// `a.regnums` and `a.regvals` point to `a.count` elements each.
/// As FreeBSD: the count is checked first; a set reads both arrays, then
/// stops at the first bad register (those before it are set); a get reads
/// the register numbers, then writes the caller's array only when every
/// register was read (so a bad number is EINVAL even with no value array).
unsafe fn register_set(vm: &Vm, lock: &crate::vm::VcpuLock<'_>, a: &vm_register_set, set: bool) -> Result<()> {
    if a.count as usize > crate::regs::reg::LAST {
        return Err(Error::Inval);
    }
    if a.count == 0 {
        return Ok(());
    }
    if a.regnums.is_null() || (set && a.regvals.is_null()) {
        return Err(Error::Fault);
    }
    let n = a.count as usize;
    // SAFETY: the caller's arrays hold `count` elements.
    let regnums = unsafe { std::slice::from_raw_parts(a.regnums, n) };
    if set {
        for (i, regnum) in regnums.iter().enumerate() {
            // SAFETY: i < count: a readable element of the caller's array.
            vm.set_register(lock, *regnum, unsafe { a.regvals.add(i).read_unaligned() })?;
        }
    } else {
        let vals = regnums.iter().map(|regnum| vm.get_register(lock, *regnum)).collect::<Result<Vec<u64>>>()?;
        if a.regvals.is_null() {
            return Err(Error::Fault);
        }
        for (i, v) in vals.into_iter().enumerate() {
            // SAFETY: i < count: a writable element of the caller's array.
            unsafe { a.regvals.add(i).write_unaligned(v) };
        }
    }
    Ok(())
}

/// Commands of the lock-all classes.
unsafe fn all_cmd(vm: &Vm, all: &crate::vm::LockAll<'_>, cmd: u64, arg: *mut c_void) -> Result<()> {
    match cmd {
        VM_REINIT => vm.reinit(all),
        // These two change the memory map on FreeBSD (the IOMMU's): they
        // hold guest memory exclusively, as VM_ALLOC_MEMSEG does.
        VM_BIND_PPTDEV | VM_UNBIND_PPTDEV => {
            let _mem = vm.mem_write(all)?;
            super::passthrough::no_device()
        }
        VM_MAP_PPTDEV_MMIO | VM_UNMAP_PPTDEV_MMIO => super::passthrough::no_device(),
        // SAFETY: forwarded.
        _ => unsafe { super::memory::locked_cmd(vm, all, cmd, arg) },
    }
}

/// Commands of the "memory shared" class.
unsafe fn mem_cmd(vm: &Vm, cmd: u64, arg: *mut c_void) -> Result<()> {
    // SAFETY: forwarded.
    unsafe { super::memory::shared_cmd(vm, cmd, arg) }
}

/// Commands that take no vCPU lock.
unsafe fn vm_cmd(vm: &Vm, cmd: u64, arg: *mut c_void) -> Result<()> {
    // SAFETY (every copy_in/copy_out below): `arg` points to `cmd`'s struct.
    unsafe {
        match cmd {
            VM_SUSPEND => {
                let a: vm_suspend = copy_in(arg);
                vm.suspend(a.how as c_int)
            }
            VM_GET_CPUS => {
                let a: vm_cpuset = copy_in(arg);
                // FreeBSD checks the size before `which`.
                if !(1..=128).contains(&a.cpusetsize) {
                    return Err(Error::Range);
                }
                let which = match a.which {
                    VM_ACTIVE_CPUS => CpuSetKind::Active,
                    VM_SUSPENDED_CPUS => CpuSetKind::Suspended,
                    VM_DEBUG_CPUS => CpuSetKind::Debug,
                    _ => return Err(Error::Inval),
                };
                super::cpuset::copy_out_cpuset(&vm.cpuset(which), a.cpus, a.cpusetsize)
            }
            VM_SUSPEND_CPU | VM_RESUME_CPU => {
                let a: vm_activate_cpu = copy_in(arg);
                let id = if a.vcpuid == -1 { None } else { Some(vm.vcpu_id(a.vcpuid)?) };
                if cmd == VM_SUSPEND_CPU {
                    vm.suspend_cpu(id)
                } else {
                    vm.resume_cpu(id)
                }
            }
            VM_SET_TOPOLOGY => {
                let a: vm_cpu_topology = copy_in(arg);
                vm.set_topology(a.sockets, a.cores, a.threads)
            }
            VM_GET_TOPOLOGY => {
                let t = vm.topology();
                copy_out(
                    arg,
                    vm_cpu_topology {
                        sockets: t.sockets,
                        cores: t.cores,
                        threads: t.threads,
                        maxcpus: t.maxcpus,
                    },
                );
                Ok(())
            }
            VM_RTC_READ | VM_RTC_WRITE | VM_RTC_SETTIME | VM_RTC_GETTIME | VM_GET_HPET_CAPABILITIES => {
                super::devices::vm_cmd(vm, cmd, arg)
            }
            VM_STATS | VM_STAT_DESC => super::stats::vm_cmd(vm, cmd, arg),
            VM_PPTDEV_MSI | VM_PPTDEV_MSIX | VM_PPTDEV_DISABLE_MSIX => super::passthrough::no_device(),
            _ => super::apic::vm_cmd(vm, cmd, arg),
        }
    }
}

/// The core's view of a `struct vm_guest_paging`.
pub(crate) fn guest_paging(p: &vm_guest_paging) -> crate::gla2gpa::GuestPaging {
    crate::gla2gpa::GuestPaging { cr3: p.cr3, cpl: p.cpl, cpu_mode: p.cpu_mode, paging_mode: p.paging_mode }
}

/// The C layout of the core's paging state (what an exit reports).
pub(crate) fn c_guest_paging(p: &crate::gla2gpa::GuestPaging) -> vm_guest_paging {
    vm_guest_paging { cr3: p.cr3, cpl: p.cpl, cpu_mode: p.cpu_mode, paging_mode: p.paging_mode }
}
