//! FreeBSD 14 `vmm_dev.h` ioctl command numbers, as plain literals.
//!
//! FreeBSD builds them with `_IO`/`_IOR`/`_IOW`/`_IOWR('v', IOCNUM_x,
//! type)`, i.e. `dir | ((sizeof(type) & 0x1fff) << 16) | ('v' << 8) | num`
//! with IOC_VOID 0x20000000, IOC_OUT 0x40000000, IOC_IN 0x80000000 and
//! IOC_INOUT 0xc0000000. The header must coexist with `<sys/ioctl.h>` and
//! `<linux/kvm.h>`, so it defines no `_IOC`-style macros: the values are
//! written out here and checked against the formula and the struct sizes
//! by the unit test below (and again in C by `c_tests/abi_test.c`).
//! cbindgen writes integer constants in decimal, so each doc comment also
//! gives the value in hex.
//!
//! Directions are FreeBSD's, except `VM_RUN`: `_IOWR` here, as the spec
//! (semantics.md section 4) has it, where FreeBSD 14's `vmm_dev.h` made it
//! `_IOW` (0x80207601) when `struct vm_run` became pointers only; 13.x's
//! `_IOWR` had the whole `vm_exit` inside. Note that `VM_GET_CPUS` is `_IOW`
//! (the kernel writes through `vm_cpuset.cpus`, not into the argument) and
//! `VM_RESTART_INSTRUCTION` is `_IOW` with an `int`.
//!
//! Not included: the COMPAT_FREEBSD12/13 variants (`VM_ALLOC_MEMSEG_FBSD12`,
//! `VM_GET_MEMSEG_FBSD12`, 13.x `VM_RUN`) and `VM_SNAPSHOT_REQ` (its
//! argument, `struct vm_snapshot_meta`, is not part of this ABI).

/// `_IOWR('v', 1, struct vm_run)` = 0xc0207601.
pub const VM_RUN: u64 = 0xc0207601;
/// `_IOW('v', 2, struct vm_capability)` = 0x80107602.
pub const VM_SET_CAPABILITY: u64 = 0x80107602;
/// `_IOWR('v', 3, struct vm_capability)` = 0xc0107603.
pub const VM_GET_CAPABILITY: u64 = 0xc0107603;
/// `_IOW('v', 4, struct vm_suspend)` = 0x80047604.
pub const VM_SUSPEND: u64 = 0x80047604;
/// `_IO('v', 5)` = 0x20007605.
pub const VM_REINIT: u64 = 0x20007605;
/// `_IOWR('v', 12, struct vm_gpa_pte)` = 0xc030760c. ENOTTY here: guest
/// memory has no nested page tables to report.
pub const VM_GET_GPA_PMAP: u64 = 0xc030760c;
/// `_IOWR('v', 13, struct vm_gla2gpa)` = 0xc038760d.
pub const VM_GLA2GPA: u64 = 0xc038760d;
/// `_IOW('v', 14, struct vm_memseg)` = 0x8020760e.
pub const VM_ALLOC_MEMSEG: u64 = 0x8020760e;
/// `_IOWR('v', 15, struct vm_memseg)` = 0xc020760f.
pub const VM_GET_MEMSEG: u64 = 0xc020760f;
/// `_IOW('v', 16, struct vm_memmap)` = 0x80287610.
pub const VM_MMAP_MEMSEG: u64 = 0x80287610;
/// `_IOWR('v', 17, struct vm_memmap)` = 0xc0287611.
pub const VM_MMAP_GETNEXT: u64 = 0xc0287611;
/// `_IOWR('v', 18, struct vm_gla2gpa)` = 0xc0387612.
pub const VM_GLA2GPA_NOFAULT: u64 = 0xc0387612;
/// `_IOW('v', 19, struct vm_munmap)` = 0x80107613.
pub const VM_MUNMAP_MEMSEG: u64 = 0x80107613;
/// `_IOW('v', 20, struct vm_register)` = 0x80107614.
pub const VM_SET_REGISTER: u64 = 0x80107614;
/// `_IOWR('v', 21, struct vm_register)` = 0xc0107615.
pub const VM_GET_REGISTER: u64 = 0xc0107615;
/// `_IOW('v', 22, struct vm_seg_desc)` = 0x80187616.
pub const VM_SET_SEGMENT_DESCRIPTOR: u64 = 0x80187616;
/// `_IOWR('v', 23, struct vm_seg_desc)` = 0xc0187617.
pub const VM_GET_SEGMENT_DESCRIPTOR: u64 = 0xc0187617;
/// `_IOW('v', 24, struct vm_register_set)` = 0x80187618.
pub const VM_SET_REGISTER_SET: u64 = 0x80187618;
/// `_IOWR('v', 25, struct vm_register_set)` = 0xc0187619.
pub const VM_GET_REGISTER_SET: u64 = 0xc0187619;
/// `_IOWR('v', 26, struct vm_readwrite_kernemu_device)` = 0xc018761a.
pub const VM_GET_KERNEMU_DEV: u64 = 0xc018761a;
/// `_IOW('v', 27, struct vm_readwrite_kernemu_device)` = 0x8018761b.
pub const VM_SET_KERNEMU_DEV: u64 = 0x8018761b;
/// `_IOWR('v', 28, struct vm_intinfo)` = 0xc018761c.
pub const VM_GET_INTINFO: u64 = 0xc018761c;
/// `_IOW('v', 29, struct vm_intinfo)` = 0x8018761d.
pub const VM_SET_INTINFO: u64 = 0x8018761d;
/// `_IOW('v', 30, struct vm_exception)` = 0x8014761e.
pub const VM_INJECT_EXCEPTION: u64 = 0x8014761e;
/// `_IOW('v', 31, struct vm_lapic_irq)` = 0x8008761f.
pub const VM_LAPIC_IRQ: u64 = 0x8008761f;
/// `_IOW('v', 32, struct vm_nmi)` = 0x80047620.
pub const VM_INJECT_NMI: u64 = 0x80047620;
/// `_IOW('v', 33, struct vm_ioapic_irq)` = 0x80047621.
pub const VM_IOAPIC_ASSERT_IRQ: u64 = 0x80047621;
/// `_IOW('v', 34, struct vm_ioapic_irq)` = 0x80047622.
pub const VM_IOAPIC_DEASSERT_IRQ: u64 = 0x80047622;
/// `_IOW('v', 35, struct vm_ioapic_irq)` = 0x80047623.
pub const VM_IOAPIC_PULSE_IRQ: u64 = 0x80047623;
/// `_IOW('v', 36, struct vm_lapic_msi)` = 0x80107624.
pub const VM_LAPIC_MSI: u64 = 0x80107624;
/// `_IOW('v', 37, struct vm_lapic_irq)` = 0x80087625.
pub const VM_LAPIC_LOCAL_IRQ: u64 = 0x80087625;
/// `_IOR('v', 38, int)` = 0x40047626.
pub const VM_IOAPIC_PINCOUNT: u64 = 0x40047626;
/// `_IOW('v', 39, int)` = 0x80047627.
pub const VM_RESTART_INSTRUCTION: u64 = 0x80047627;
/// `_IOW('v', 40, struct vm_pptdev)` = 0x800c7628.
pub const VM_BIND_PPTDEV: u64 = 0x800c7628;
/// `_IOW('v', 41, struct vm_pptdev)` = 0x800c7629.
pub const VM_UNBIND_PPTDEV: u64 = 0x800c7629;
/// `_IOW('v', 42, struct vm_pptdev_mmio)` = 0x8028762a.
pub const VM_MAP_PPTDEV_MMIO: u64 = 0x8028762a;
/// `_IOW('v', 43, struct vm_pptdev_msi)` = 0x8028762b.
pub const VM_PPTDEV_MSI: u64 = 0x8028762b;
/// `_IOW('v', 44, struct vm_pptdev_msix)` = 0x8030762c.
pub const VM_PPTDEV_MSIX: u64 = 0x8030762c;
/// `_IOW('v', 45, struct vm_pptdev)` = 0x800c762d.
pub const VM_PPTDEV_DISABLE_MSIX: u64 = 0x800c762d;
/// `_IOW('v', 46, struct vm_pptdev_mmio)` = 0x8028762e.
pub const VM_UNMAP_PPTDEV_MMIO: u64 = 0x8028762e;
/// `_IOWR('v', 50, struct vm_stats)` = 0xc2207632.
pub const VM_STATS: u64 = 0xc2207632;
/// `_IOWR('v', 51, struct vm_stat_desc)` = 0xc0847633.
pub const VM_STAT_DESC: u64 = 0xc0847633;
/// `_IOW('v', 60, struct vm_x2apic)` = 0x8008763c.
pub const VM_SET_X2APIC_STATE: u64 = 0x8008763c;
/// `_IOWR('v', 61, struct vm_x2apic)` = 0xc008763d.
pub const VM_GET_X2APIC_STATE: u64 = 0xc008763d;
/// `_IOR('v', 62, struct vm_hpet_cap)` = 0x4004763e.
pub const VM_GET_HPET_CAPABILITIES: u64 = 0x4004763e;
/// `_IOW('v', 63, struct vm_cpu_topology)` = 0x8008763f.
pub const VM_SET_TOPOLOGY: u64 = 0x8008763f;
/// `_IOR('v', 64, struct vm_cpu_topology)` = 0x40087640.
pub const VM_GET_TOPOLOGY: u64 = 0x40087640;
/// `_IOW('v', 80, struct vm_isa_irq)` = 0x80087650.
pub const VM_ISA_ASSERT_IRQ: u64 = 0x80087650;
/// `_IOW('v', 81, struct vm_isa_irq)` = 0x80087651.
pub const VM_ISA_DEASSERT_IRQ: u64 = 0x80087651;
/// `_IOW('v', 82, struct vm_isa_irq)` = 0x80087652.
pub const VM_ISA_PULSE_IRQ: u64 = 0x80087652;
/// `_IOW('v', 83, struct vm_isa_irq_trigger)` = 0x80087653.
pub const VM_ISA_SET_IRQ_TRIGGER: u64 = 0x80087653;
/// `_IOW('v', 90, struct vm_activate_cpu)` = 0x8004765a.
pub const VM_ACTIVATE_CPU: u64 = 0x8004765a;
/// `_IOW('v', 91, struct vm_cpuset)` = 0x8010765b.
pub const VM_GET_CPUS: u64 = 0x8010765b;
/// `_IOW('v', 92, struct vm_activate_cpu)` = 0x8004765c.
pub const VM_SUSPEND_CPU: u64 = 0x8004765c;
/// `_IOW('v', 93, struct vm_activate_cpu)` = 0x8004765d.
pub const VM_RESUME_CPU: u64 = 0x8004765d;
/// `_IOWR('v', 100, struct vm_rtc_data)` = 0xc0087664.
pub const VM_RTC_READ: u64 = 0xc0087664;
/// `_IOW('v', 101, struct vm_rtc_data)` = 0x80087665.
pub const VM_RTC_WRITE: u64 = 0x80087665;
/// `_IOW('v', 102, struct vm_rtc_time)` = 0x80087666.
pub const VM_RTC_SETTIME: u64 = 0x80087666;
/// `_IOR('v', 103, struct vm_rtc_time)` = 0x40087667.
pub const VM_RTC_GETTIME: u64 = 0x40087667;
/// `_IOWR('v', 115, int)` = 0xc0047673. ENOTTY here: there is no
/// snapshot to restore.
pub const VM_RESTORE_TIME: u64 = 0xc0047673;

#[cfg(test)]
mod tests {
    use super::super::args::*;
    use super::*;
    use core::ffi::c_int;
    use core::mem::size_of;

    const IOC_VOID: u64 = 0x2000_0000;
    const IOC_OUT: u64 = 0x4000_0000;
    const IOC_IN: u64 = 0x8000_0000;
    const IOC_INOUT: u64 = 0xc000_0000;

    /// FreeBSD `_IOC(dir, 'v', num, len)`.
    const fn ioc(dir: u64, num: u64, len: usize) -> u64 {
        dir | ((len as u64 & 0x1fff) << 16) | ((b'v' as u64) << 8) | num
    }

    #[test]
    fn ioctl_numbers_match_formula() {
        let table: &[(&str, u64, u64, u64, usize)] = &[
            ("VM_RUN", VM_RUN, IOC_INOUT, 1, size_of::<vm_run>()),
            ("VM_SET_CAPABILITY", VM_SET_CAPABILITY, IOC_IN, 2, size_of::<vm_capability>()),
            ("VM_GET_CAPABILITY", VM_GET_CAPABILITY, IOC_INOUT, 3, size_of::<vm_capability>()),
            ("VM_SUSPEND", VM_SUSPEND, IOC_IN, 4, size_of::<vm_suspend>()),
            ("VM_REINIT", VM_REINIT, IOC_VOID, 5, 0),
            ("VM_GET_GPA_PMAP", VM_GET_GPA_PMAP, IOC_INOUT, 12, size_of::<vm_gpa_pte>()),
            ("VM_GLA2GPA", VM_GLA2GPA, IOC_INOUT, 13, size_of::<vm_gla2gpa>()),
            ("VM_ALLOC_MEMSEG", VM_ALLOC_MEMSEG, IOC_IN, 14, size_of::<vm_memseg>()),
            ("VM_GET_MEMSEG", VM_GET_MEMSEG, IOC_INOUT, 15, size_of::<vm_memseg>()),
            ("VM_MMAP_MEMSEG", VM_MMAP_MEMSEG, IOC_IN, 16, size_of::<vm_memmap>()),
            ("VM_MMAP_GETNEXT", VM_MMAP_GETNEXT, IOC_INOUT, 17, size_of::<vm_memmap>()),
            ("VM_GLA2GPA_NOFAULT", VM_GLA2GPA_NOFAULT, IOC_INOUT, 18, size_of::<vm_gla2gpa>()),
            ("VM_MUNMAP_MEMSEG", VM_MUNMAP_MEMSEG, IOC_IN, 19, size_of::<vm_munmap>()),
            ("VM_SET_REGISTER", VM_SET_REGISTER, IOC_IN, 20, size_of::<vm_register>()),
            ("VM_GET_REGISTER", VM_GET_REGISTER, IOC_INOUT, 21, size_of::<vm_register>()),
            ("VM_SET_SEGMENT_DESCRIPTOR", VM_SET_SEGMENT_DESCRIPTOR, IOC_IN, 22, size_of::<vm_seg_desc>()),
            ("VM_GET_SEGMENT_DESCRIPTOR", VM_GET_SEGMENT_DESCRIPTOR, IOC_INOUT, 23, size_of::<vm_seg_desc>()),
            ("VM_SET_REGISTER_SET", VM_SET_REGISTER_SET, IOC_IN, 24, size_of::<vm_register_set>()),
            ("VM_GET_REGISTER_SET", VM_GET_REGISTER_SET, IOC_INOUT, 25, size_of::<vm_register_set>()),
            ("VM_GET_KERNEMU_DEV", VM_GET_KERNEMU_DEV, IOC_INOUT, 26, size_of::<vm_readwrite_kernemu_device>()),
            ("VM_SET_KERNEMU_DEV", VM_SET_KERNEMU_DEV, IOC_IN, 27, size_of::<vm_readwrite_kernemu_device>()),
            ("VM_GET_INTINFO", VM_GET_INTINFO, IOC_INOUT, 28, size_of::<vm_intinfo>()),
            ("VM_SET_INTINFO", VM_SET_INTINFO, IOC_IN, 29, size_of::<vm_intinfo>()),
            ("VM_INJECT_EXCEPTION", VM_INJECT_EXCEPTION, IOC_IN, 30, size_of::<vm_exception>()),
            ("VM_LAPIC_IRQ", VM_LAPIC_IRQ, IOC_IN, 31, size_of::<vm_lapic_irq>()),
            ("VM_INJECT_NMI", VM_INJECT_NMI, IOC_IN, 32, size_of::<vm_nmi>()),
            ("VM_IOAPIC_ASSERT_IRQ", VM_IOAPIC_ASSERT_IRQ, IOC_IN, 33, size_of::<vm_ioapic_irq>()),
            ("VM_IOAPIC_DEASSERT_IRQ", VM_IOAPIC_DEASSERT_IRQ, IOC_IN, 34, size_of::<vm_ioapic_irq>()),
            ("VM_IOAPIC_PULSE_IRQ", VM_IOAPIC_PULSE_IRQ, IOC_IN, 35, size_of::<vm_ioapic_irq>()),
            ("VM_LAPIC_MSI", VM_LAPIC_MSI, IOC_IN, 36, size_of::<vm_lapic_msi>()),
            ("VM_LAPIC_LOCAL_IRQ", VM_LAPIC_LOCAL_IRQ, IOC_IN, 37, size_of::<vm_lapic_irq>()),
            ("VM_IOAPIC_PINCOUNT", VM_IOAPIC_PINCOUNT, IOC_OUT, 38, size_of::<c_int>()),
            ("VM_RESTART_INSTRUCTION", VM_RESTART_INSTRUCTION, IOC_IN, 39, size_of::<c_int>()),
            ("VM_BIND_PPTDEV", VM_BIND_PPTDEV, IOC_IN, 40, size_of::<vm_pptdev>()),
            ("VM_UNBIND_PPTDEV", VM_UNBIND_PPTDEV, IOC_IN, 41, size_of::<vm_pptdev>()),
            ("VM_MAP_PPTDEV_MMIO", VM_MAP_PPTDEV_MMIO, IOC_IN, 42, size_of::<vm_pptdev_mmio>()),
            ("VM_PPTDEV_MSI", VM_PPTDEV_MSI, IOC_IN, 43, size_of::<vm_pptdev_msi>()),
            ("VM_PPTDEV_MSIX", VM_PPTDEV_MSIX, IOC_IN, 44, size_of::<vm_pptdev_msix>()),
            ("VM_PPTDEV_DISABLE_MSIX", VM_PPTDEV_DISABLE_MSIX, IOC_IN, 45, size_of::<vm_pptdev>()),
            ("VM_UNMAP_PPTDEV_MMIO", VM_UNMAP_PPTDEV_MMIO, IOC_IN, 46, size_of::<vm_pptdev_mmio>()),
            ("VM_STATS", VM_STATS, IOC_INOUT, 50, size_of::<vm_stats>()),
            ("VM_STAT_DESC", VM_STAT_DESC, IOC_INOUT, 51, size_of::<vm_stat_desc>()),
            ("VM_SET_X2APIC_STATE", VM_SET_X2APIC_STATE, IOC_IN, 60, size_of::<vm_x2apic>()),
            ("VM_GET_X2APIC_STATE", VM_GET_X2APIC_STATE, IOC_INOUT, 61, size_of::<vm_x2apic>()),
            ("VM_GET_HPET_CAPABILITIES", VM_GET_HPET_CAPABILITIES, IOC_OUT, 62, size_of::<vm_hpet_cap>()),
            ("VM_SET_TOPOLOGY", VM_SET_TOPOLOGY, IOC_IN, 63, size_of::<vm_cpu_topology>()),
            ("VM_GET_TOPOLOGY", VM_GET_TOPOLOGY, IOC_OUT, 64, size_of::<vm_cpu_topology>()),
            ("VM_ISA_ASSERT_IRQ", VM_ISA_ASSERT_IRQ, IOC_IN, 80, size_of::<vm_isa_irq>()),
            ("VM_ISA_DEASSERT_IRQ", VM_ISA_DEASSERT_IRQ, IOC_IN, 81, size_of::<vm_isa_irq>()),
            ("VM_ISA_PULSE_IRQ", VM_ISA_PULSE_IRQ, IOC_IN, 82, size_of::<vm_isa_irq>()),
            ("VM_ISA_SET_IRQ_TRIGGER", VM_ISA_SET_IRQ_TRIGGER, IOC_IN, 83, size_of::<vm_isa_irq_trigger>()),
            ("VM_ACTIVATE_CPU", VM_ACTIVATE_CPU, IOC_IN, 90, size_of::<vm_activate_cpu>()),
            ("VM_GET_CPUS", VM_GET_CPUS, IOC_IN, 91, size_of::<vm_cpuset>()),
            ("VM_SUSPEND_CPU", VM_SUSPEND_CPU, IOC_IN, 92, size_of::<vm_activate_cpu>()),
            ("VM_RESUME_CPU", VM_RESUME_CPU, IOC_IN, 93, size_of::<vm_activate_cpu>()),
            ("VM_RTC_READ", VM_RTC_READ, IOC_INOUT, 100, size_of::<vm_rtc_data>()),
            ("VM_RTC_WRITE", VM_RTC_WRITE, IOC_IN, 101, size_of::<vm_rtc_data>()),
            ("VM_RTC_SETTIME", VM_RTC_SETTIME, IOC_IN, 102, size_of::<vm_rtc_time>()),
            ("VM_RTC_GETTIME", VM_RTC_GETTIME, IOC_OUT, 103, size_of::<vm_rtc_time>()),
            ("VM_RESTORE_TIME", VM_RESTORE_TIME, IOC_INOUT, 115, size_of::<c_int>()),
        ];
        for &(name, value, dir, num, len) in table {
            assert_eq!(value, ioc(dir, num, len), "{name}");
        }
        // No two commands share a number.
        for (i, a) in table.iter().enumerate() {
            for b in &table[i + 1..] {
                assert_ne!(a.1, b.1, "{} / {}", a.0, b.0);
            }
        }
        assert_eq!(table.len(), 60);
    }
}
