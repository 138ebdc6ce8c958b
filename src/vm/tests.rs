use super::*;
use crate::test_util::with_watchdog;
use std::sync::Arc;
use std::thread;

#[test]
fn lock_one_and_lock_all() {
    let vm = Vm::with_idle_backend("t", 4).unwrap();
    {
        let l = vm.lock_one(2).unwrap();
        assert_eq!(l.vcpu().state(), VcpuState::Frozen);
    }
    assert_eq!(vm.vcpu(2).unwrap().state(), VcpuState::Idle);
    {
        let _all = vm.lock_all().unwrap();
        assert!(vm.vcpus().iter().all(|v| v.state() == VcpuState::Frozen));
    }
    assert!(vm.vcpus().iter().all(|v| v.state() == VcpuState::Idle));
    assert_eq!(vm.vcpu_id(4), Err(Error::Inval));
    assert_eq!(vm.vcpu_id(-1), Err(Error::Inval));
}

/// FreeBSD 14's "Resident memory" and "Wired memory" (`vm_get_rescnt`,
/// `vm_get_wiredcnt`): in bytes, measured when read, for vCPU 0 only.
#[test]
fn memory_statistics_are_measured_when_read_for_vcpu_0() {
    use crate::mem::{PAGE_SIZE, VM_MMAP_ALL};
    use crate::stats::Stat;
    const MIB: usize = 1 << 20;
    let read = read_memory_statistics;
    let vm = Vm::with_idle_backend("t", 2).unwrap();
    assert_eq!(read(&vm, 0), (0, 0), "no guest memory yet");
    {
        let all = vm.lock_all().unwrap();
        vm.mem_write(&all).unwrap().setup_memory(8 * MIB, VM_MMAP_ALL).unwrap();
    }
    let (before, wired) = read(&vm, 0);
    assert_eq!(wired, 0);
    for page in 0..32 {
        vm.mem().write_gpa((2 * page * PAGE_SIZE) as u64, b"x").unwrap();
    }
    let (after, _) = read(&vm, 0);
    assert!(after >= before + 32 * PAGE_SIZE as u64, "{before} -> {after}");
    assert!(after <= 8 * MIB as u64, "{after}: at most the segment");
    assert_eq!(read(&vm, 1), (0, 0), "vCPU 1 reads 0");
    // Read alone, as a window of VM_STATS: measured all the same.
    assert_eq!(vm.vcpu_stats(0, Stat::MemWired as i32, 1).unwrap(), vec![0]);
    let window = vm.vcpu_stats(0, Stat::MemResident as i32, 1).unwrap();
    assert!(window[0] >= 32 * PAGE_SIZE as u64, "{window:?}");
}

/// vCPU `id`'s ("Resident memory", "Wired memory").
fn read_memory_statistics(vm: &Vm, id: usize) -> (u64, u64) {
    use crate::stats::Stat;
    let s = vm.vcpu_stats(id, 0, 64).unwrap();
    (s[Stat::MemResident as usize], s[Stat::MemWired as usize])
}

/// "Wired memory" is the wired map's size, and those pages are
/// resident. (Its own test: `make tsan` skips it, as TSan makes mlock
/// a no-op.)
#[cfg(target_os = "linux")]
#[test]
fn wired_memory_statistic_is_the_wired_maps_size() {
    const MIB: usize = 1 << 20;
    if !crate::mem::tests::can_wire(16 << 20) {
        return;
    }
    let vm = Vm::with_idle_backend("t", 2).unwrap();
    {
        let all = vm.lock_all().unwrap();
        let mut m = vm.mem_write(&all).unwrap();
        m.set_memflags(crate::mem::VM_MEM_F_WIRED);
        m.setup_memory(4 * MIB, crate::mem::VM_MMAP_ALL).unwrap();
    }
    let (resident, wired) = read_memory_statistics(&vm, 0);
    assert_eq!(wired, 4 * MIB as u64, "the wired map's size");
    assert!(resident >= wired, "wired pages are resident: {resident}");
    assert_eq!(read_memory_statistics(&vm, 1), (0, 0));
}

#[test]
fn cpusets_suspend_and_topology() {
    let vm = Vm::with_idle_backend("t", 4).unwrap();
    vm.activate_cpu(0).unwrap();
    assert_eq!(vm.activate_cpu(0), Err(Error::Busy));
    assert_eq!(vm.suspend_cpu(Some(1)), Err(Error::Inval));
    vm.suspend_cpu(Some(0)).unwrap();
    assert!(vm.cpuset(CpuSetKind::Debug).contains(0));
    assert_eq!(vm.resume_cpu(Some(1)), Err(Error::Inval));
    vm.resume_cpu(None).unwrap();
    assert!(vm.cpuset(CpuSetKind::Debug).is_empty());
    // All at once (vcpuid -1): the debug set becomes the active set.
    vm.activate_cpu(2).unwrap();
    vm.suspend_cpu(None).unwrap();
    assert_eq!(vm.cpuset(CpuSetKind::Debug).iter().collect::<Vec<_>>(), [0, 2]);
    vm.resume_cpu(None).unwrap();
    assert_eq!(vm.suspend(0), Err(Error::Inval));
    assert_eq!(vm.suspend(9), Err(Error::Inval));
    vm.suspend(2).unwrap();
    assert_eq!(vm.suspend(1), Err(Error::Already));
    assert_eq!(vm.suspended_how(), Some(SuspendHow::Poweroff));
    assert_eq!(vm.set_topology(2, 2, 2), Err(Error::Inval));
    vm.set_topology(2, 2, 1).unwrap();
    // Products that wrap in 32 bits (2^32 and 4 + 2^32) are refused.
    assert_eq!(vm.set_topology(2048, 2048, 1024), Err(Error::Inval));
    assert_eq!(vm.set_topology(2, 33025, 65026), Err(Error::Inval));
    assert_eq!(vm.topology().cores, 2);
}

/// FreeBSD `vmx_getreg`: VM_REG_GUEST_TPR reads the local APIC's task
/// priority as CR8 (`vlapic_get_cr8`: TPR bits 7:4); `vmx_setreg` has
/// no VMCS field for it (`vmcs_setreg`: EINVAL). Not a register of its
/// own that reads back what was set.
#[test]
fn tpr_register_reads_the_local_apics_cr8_and_cannot_be_set() {
    let vm = Vm::with_idle_backend("t", 1).unwrap();
    let lock = vm.lock_one(0).unwrap();
    let tpr = crate::regs::reg::TPR as i32;
    vm.vcpu(0).unwrap().vlapic.mmio_write(0x80, 0x5a, std::time::Instant::now());
    assert_eq!(vm.get_register(&lock, tpr), Ok(5));
    assert_eq!(vm.set_register(&lock, tpr, 3), Err(Error::Inval));
    assert_eq!(vm.get_register(&lock, tpr), Ok(5));
}

#[test]
fn reinit_needs_every_active_vcpu_suspended() {
    let vm = Vm::with_idle_backend("t", 2).unwrap();
    {
        let all = vm.lock_all().unwrap();
        assert!(vm.reinit(&all).is_ok(), "no active vCPU: succeeds");
    }
    vm.activate_cpu(0).unwrap();
    {
        let all = vm.lock_all().unwrap();
        assert_eq!(vm.reinit(&all), Err(Error::Busy));
    }
    vm.cpus().suspended.insert(0);
    vm.suspend(1).unwrap();
    vm.suspend_cpu(Some(0)).unwrap();
    vm.cpus().halted.insert(0);
    vm.cpus().startup.insert(1);
    {
        let all = vm.lock_all().unwrap();
        vm.reinit(&all).unwrap();
    }
    assert!(vm.active_cpus().is_empty());
    assert_eq!(vm.suspended_how(), None);
    // Every cpuset starts empty again, as FreeBSD's vm_init.
    let c = vm.cpus();
    assert!(c.active.is_empty() && c.suspended.is_empty() && c.debug.is_empty(), "{:?}", *c);
    assert!(c.halted.is_empty() && c.startup.is_empty(), "{:?}", *c);
}

/// A VM takes 1 to CPUSET_BITS vCPUs; the largest fills the cpuset.
#[test]
fn maxcpus_ranges_from_1_to_the_cpuset_size() {
    assert_eq!(Vm::with_idle_backend("t", 0).unwrap_err(), Error::Inval);
    assert_eq!(Vm::with_idle_backend("t", CPUSET_BITS + 1).unwrap_err(), Error::Inval);
    let vm = Vm::with_idle_backend("t", CPUSET_BITS).unwrap();
    vm.activate_cpu(CPUSET_BITS - 1).unwrap();
    assert!(vm.is_active(CPUSET_BITS - 1));
}

/// A memory change whose lock-all was taken before the VM was destroyed
/// finds it destroyed under the memory lock: no segment is made after
/// `destroy` gave the memory back (it would be unmapped under the
/// caller's pointer once the last handle closed).
#[test]
fn memory_changes_after_destroy_fail_even_under_an_earlier_lock_all() {
    let vm = Vm::with_idle_backend("t", 1).unwrap();
    let all = vm.lock_all().unwrap();
    vm.destroy();
    assert!(matches!(vm.mem_write(&all), Err(Error::Destroyed)));
}

/// A rendezvous aimed at a vCPU frozen by lock-all is run on its behalf
/// by the lock-all, so the initiator (itself a vCPU that lock-all wants)
/// finishes: the OS-7622 shape, without a vioapic.
#[test]
fn lock_all_services_pending_rendezvous() {
    with_watchdog(20, || {
        let vm = Arc::new(Vm::with_idle_backend("t", 2).unwrap());
        vm.set_legacy_protocol(false);
        vm.activate_cpu(0).unwrap();
        vm.activate_cpu(1).unwrap();
        // vCPU 1 is busy (its run loop holds it FROZEN).
        vm.vcpu(1).unwrap().set_state(VcpuState::Frozen, true).unwrap();
        let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
        // Lock-all freezes vCPU 0, then waits for vCPU 1.
        let vm2 = vm.clone();
        let locker = thread::spawn(move || {
            let _all = vm2.lock_all().unwrap();
        });
        while vm.vcpu(0).unwrap().state() != VcpuState::Frozen {
            thread::yield_now();
        }
        let ran2 = ran.clone();
        vm.smp_rendezvous(
            Some(1),
            CpuSet::first_n(2),
            Arc::new(move |_vm: &Vm, id| ran2.lock().unwrap().push(id)),
        )
        .unwrap();
        let mut ids = ran.lock().unwrap().clone();
        ids.sort();
        assert_eq!(ids, vec![0, 1]);
        // vCPU 1 goes back to IDLE; lock-all completes.
        vm.vcpu(1).unwrap().set_state(VcpuState::Idle, false).unwrap();
        locker.join().unwrap();
    });
}

/// A rendezvous aimed at a whole cpuset, ids past maxcpus included,
/// notifies only the VM's vCPUs (FreeBSD loops up to maxcpus) and is
/// done once the active ones have run it.
#[test]
fn a_rendezvous_over_ids_past_maxcpus_runs_on_the_active_vcpus() {
    with_watchdog(10, || {
        let vm = Vm::with_idle_backend("t", 2).unwrap();
        vm.activate_cpu(1).unwrap();
        let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ran2 = ran.clone();
        let dest = CpuSet::first_n(CPUSET_BITS);
        vm.smp_rendezvous(Some(1), dest, Arc::new(move |_vm: &Vm, id| ran2.lock().unwrap().push(id))).unwrap();
        assert_eq!(*ran.lock().unwrap(), [1]);
    });
}

/// Holds vCPU 0 of a new 1-vCPU VM while another thread's lock_one
/// waits for it (it has asked for IDLE: reqidle is set); returns the
/// VM, the held lock's release, and the waiter (which releases the
/// vCPU at once if it gets it).
fn lock_one_waiting_behind_another(name: &str) -> (Arc<Vm>, impl FnOnce(), thread::JoinHandle<Result<()>>) {
    let vm = Arc::new(Vm::with_idle_backend(name, 1).unwrap());
    let vm_held = vm.clone();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        let held = vm_held.lock_one(0).unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
        drop(held);
    });
    locked_rx.recv().unwrap();
    let waiter = {
        let vm = vm.clone();
        thread::spawn(move || vm.lock_one(0).map(drop))
    };
    while !vm.vcpu(0).unwrap().lock().reqidle {
        thread::yield_now();
    }
    let release = move || {
        release_tx.send(()).unwrap();
        holder.join().unwrap();
    };
    (vm, release, waiter)
}

/// The reqidle a waiting lock_one sets is cleared when it gets the
/// vCPU (entering IDLE), so it does not end a later VM_RUN or HLT.
#[test]
fn reqidle_does_not_outlive_the_ioctl_that_asked_for_it() {
    with_watchdog(10, || {
        let (vm, release, waiter) = lock_one_waiting_behind_another("reqidle");
        release();
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert!(!vm.vcpu(0).unwrap().lock().reqidle);
    })
}

/// A lock_one waiting for a vCPU when the VM is destroyed fails with
/// Destroyed once it gets the vCPU, and leaves it IDLE (as lock-all
/// does, see `vm_intr::run_tests`).
#[test]
fn a_lock_one_overtaken_by_destroy_fails_and_leaves_the_vcpu_idle() {
    with_watchdog(10, || {
        let (vm, release, waiter) = lock_one_waiting_behind_another("overtaken");
        vm.destroy();
        release();
        assert_eq!(waiter.join().unwrap(), Err(Error::Destroyed));
        assert_eq!(vm.vcpu(0).unwrap().state(), VcpuState::Idle);
    })
}
