//! The ioctl argument structs of FreeBSD 14 `vmm_dev.h` (amd64, LP64),
//! plus `cpuset_t`. Fields that are `enum ...` in FreeBSD are `int` here.
//!
//! `vm_readwrite_kernemu_device` has bit-fields: it is declared for C in
//! `cbindgen.toml` (`after_includes`) and excluded from generation.

#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_long, c_uint};

use super::consts::{CPU_MAXSIZE, MAX_VM_STATS, VM_MAX_SUFFIXLEN};
use super::exit::{seg_desc, vm_exit, vm_guest_paging};

/// A guest-physical address (FreeBSD `vm_paddr_t`).
pub type vm_paddr_t = u64;
/// An offset into a memory segment (FreeBSD `vm_ooffset_t`, signed).
pub type vm_ooffset_t = i64;

/// Bits in one `cpuset_t` word.
const NCPUBITS: usize = 8 * core::mem::size_of::<c_long>();

// cbindgen only understands literal or plain-constant array lengths, so
// the lengths below are literals; these checks tie them to the constants.
const _: () = assert!(16 * NCPUBITS == CPU_MAXSIZE);
const _: () = assert!(16 == VM_MAX_SUFFIXLEN + 1);

/// FreeBSD's `struct _cpuset`: a bitmap of CPU_MAXSIZE (1024) CPUs in
/// `long` words, CPU `n` at bit `n % 64` of word `n / 64`. Use it as
/// `cpuset_t`. Declared for C by hand in `cbindgen.toml`, which takes the
/// system's on FreeBSD.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct _cpuset {
    pub __bits: [c_long; 16],
}

/// FreeBSD's `cpuset_t` (`sys/_cpuset.h`; 128 bytes on FreeBSD 14 amd64).
pub type cpuset_t = _cpuset;

impl _cpuset {
    /// Whether CPU `n` is in the set; false when `n` is out of range.
    pub fn is_set(&self, n: usize) -> bool {
        match self.__bits.get(n / NCPUBITS) {
            Some(w) => (*w as u64) >> (n % NCPUBITS) & 1 != 0,
            None => false,
        }
    }

    /// Adds CPU `n`; ignored when `n` is out of range.
    pub fn set(&mut self, n: usize) {
        if let Some(w) = self.__bits.get_mut(n / NCPUBITS) {
            *w = (*w as u64 | 1 << (n % NCPUBITS)) as c_long;
        }
    }

    /// Removes CPU `n`; ignored when `n` is out of range.
    pub fn clear(&mut self, n: usize) {
        if let Some(w) = self.__bits.get_mut(n / NCPUBITS) {
            *w = (*w as u64 & !(1 << (n % NCPUBITS))) as c_long;
        }
    }
}

/// `VM_RUN` argument (`struct vm_run`, FreeBSD 14 form, 32 bytes): run
/// vCPU `cpuid` until an exit, described in `*vm_exit`. Only for
/// VM_EXITCODE_IPI, as FreeBSD's VM_RUN, are the target vCPUs written to
/// `cpuset`: all `cpusetsize` bytes, zeros beyond the set's 128; other
/// exits leave `cpuset` alone.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct vm_run {
    pub cpuid: c_int,
    pub cpuset: *mut cpuset_t,
    pub cpusetsize: usize,
    pub vm_exit: *mut vm_exit,
}

/// `VM_SET_REGISTER` / `VM_GET_REGISTER` argument (`struct vm_register`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_register {
    pub cpuid: c_int,
    /// `enum vm_reg_name`.
    pub regnum: c_int,
    pub regval: u64,
}

/// `VM_SET_SEGMENT_DESCRIPTOR` / `VM_GET_SEGMENT_DESCRIPTOR` argument
/// (`struct vm_seg_desc`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_seg_desc {
    pub cpuid: c_int,
    /// `enum vm_reg_name`.
    pub regnum: c_int,
    pub desc: seg_desc,
}

/// `VM_SET_REGISTER_SET` / `VM_GET_REGISTER_SET` argument
/// (`struct vm_register_set`): `count` registers named by `regnums`
/// (`enum vm_reg_name`), values in `regvals`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct vm_register_set {
    pub cpuid: c_int,
    pub count: c_uint,
    pub regnums: *const c_int,
    pub regvals: *mut u64,
}

/// `VM_SET_CAPABILITY` / `VM_GET_CAPABILITY` argument
/// (`struct vm_capability`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_capability {
    pub cpuid: c_int,
    /// `enum vm_cap_type`.
    pub captype: c_int,
    pub capval: c_int,
    pub allcpus: c_int,
}

/// `VM_IOAPIC_ASSERT_IRQ` / `_DEASSERT_IRQ` / `_PULSE_IRQ` argument
/// (`struct vm_ioapic_irq`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_ioapic_irq {
    pub irq: c_int,
}

/// `VM_ISA_ASSERT_IRQ` / `_DEASSERT_IRQ` / `_PULSE_IRQ` argument
/// (`struct vm_isa_irq`); `ioapic_irq` -1 means no IOAPIC pin.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_isa_irq {
    pub atpic_irq: c_int,
    pub ioapic_irq: c_int,
}

/// `VM_ISA_SET_IRQ_TRIGGER` argument (`struct vm_isa_irq_trigger`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_isa_irq_trigger {
    pub atpic_irq: c_int,
    /// `enum vm_intr_trigger`.
    pub trigger: c_int,
}

/// `VM_LAPIC_IRQ` / `VM_LAPIC_LOCAL_IRQ` argument (`struct vm_lapic_irq`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_lapic_irq {
    pub cpuid: c_int,
    pub vector: c_int,
}

/// `VM_LAPIC_MSI` argument (`struct vm_lapic_msi`): MSI data and address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_lapic_msi {
    pub msg: u64,
    pub addr: u64,
}

/// `VM_ACTIVATE_CPU` / `VM_SUSPEND_CPU` / `VM_RESUME_CPU` argument
/// (`struct vm_activate_cpu`); for suspend/resume, -1 means all vCPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_activate_cpu {
    pub vcpuid: c_int,
}

/// `VM_SUSPEND` argument (`struct vm_suspend`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_suspend {
    /// `enum vm_suspend_how`.
    pub how: c_int,
}

/// `VM_GET_CPUS` argument (`struct vm_cpuset`): copies the set selected by
/// `which` (VM_ACTIVE_CPUS, VM_SUSPENDED_CPUS, VM_DEBUG_CPUS) to `cpus`,
/// `cpusetsize` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct vm_cpuset {
    pub which: c_int,
    pub cpusetsize: c_int,
    pub cpus: *mut cpuset_t,
}

/// `VM_ALLOC_MEMSEG` / `VM_GET_MEMSEG` argument (`struct vm_memseg`): a
/// memory segment; an empty `name` means system memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_memseg {
    pub segid: c_int,
    pub len: usize,
    /// `VM_MAX_SUFFIXLEN + 1` bytes, NUL-terminated.
    pub name: [c_char; 16],
}

/// `VM_MMAP_MEMSEG` / `VM_MMAP_GETNEXT` argument (`struct vm_memmap`):
/// maps `len` bytes of segment `segid` from `segoff` at guest physical
/// address `gpa`, with `prot` (PROT_*) and `flags` (VM_MEMMAP_F_*).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_memmap {
    pub gpa: vm_paddr_t,
    pub segid: c_int,
    pub segoff: vm_ooffset_t,
    pub len: usize,
    pub prot: c_int,
    pub flags: c_int,
}

/// `VM_MUNMAP_MEMSEG` argument (`struct vm_munmap`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_munmap {
    pub gpa: vm_paddr_t,
    pub len: usize,
}

/// `VM_SET_INTINFO` / `VM_GET_INTINFO` argument (`struct vm_intinfo`):
/// pending event information (VM_INTINFO_* format).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_intinfo {
    pub vcpuid: c_int,
    pub info1: u64,
    pub info2: u64,
}

/// `VM_INJECT_EXCEPTION` argument (`struct vm_exception`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_exception {
    pub cpuid: c_int,
    pub vector: c_int,
    pub error_code: u32,
    pub error_code_valid: c_int,
    pub restart_instruction: c_int,
}

/// `VM_INJECT_NMI` argument (`struct vm_nmi`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_nmi {
    pub cpuid: c_int,
}

/// `VM_SET_X2APIC_STATE` / `VM_GET_X2APIC_STATE` argument
/// (`struct vm_x2apic`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_x2apic {
    pub cpuid: c_int,
    /// `enum x2apic_state`.
    pub state: c_int,
}

/// `VM_SET_KERNEMU_DEV` / `VM_GET_KERNEMU_DEV` argument
/// (`struct vm_readwrite_kernemu_device`, 24 bytes): access an in-kernel
/// device at `gpa`. In C the second word holds the bit-fields
/// `access_width:3` (log2 of the access size) and `_unused:29`; here it is
/// the raw `bits` word with accessors. Declared for C in `cbindgen.toml`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_readwrite_kernemu_device {
    pub vcpuid: c_int,
    pub bits: c_uint,
    pub gpa: u64,
    pub value: u64,
}

impl vm_readwrite_kernemu_device {
    const ACCESS_WIDTH_MASK: c_uint = 0x7;

    /// log2 of the access size in bytes (`access_width:3`).
    pub fn access_width(&self) -> u32 {
        self.bits & Self::ACCESS_WIDTH_MASK
    }

    /// Sets `access_width` (only the low 3 bits are kept).
    pub fn set_access_width(&mut self, w: u32) {
        self.bits = (self.bits & !Self::ACCESS_WIDTH_MASK) | (w & Self::ACCESS_WIDTH_MASK);
    }
}

/// `VM_SET_TOPOLOGY` / `VM_GET_TOPOLOGY` argument
/// (`struct vm_cpu_topology`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_cpu_topology {
    pub sockets: u16,
    pub cores: u16,
    pub threads: u16,
    pub maxcpus: u16,
}

/// `time_t` of FreeBSD amd64 (64-bit). Emitted as the system `time_t`.
pub type time_t = i64;

/// `struct timeval` of FreeBSD amd64 (same layout as Linux x86-64).
/// Emitted as the system `struct timeval` from `<sys/time.h>`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct timeval {
    pub tv_sec: time_t,
    pub tv_usec: c_long,
}

/// `VM_STATS` argument (`struct vm_stats`, FreeBSD 14 form with `index`):
/// up to MAX_VM_STATS counters of vCPU `cpuid`, starting at counter
/// `index`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct vm_stats {
    /// In.
    pub cpuid: c_int,
    /// In.
    pub index: c_int,
    /// Out.
    pub num_entries: c_int,
    pub tv: timeval,
    pub statbuf: [u64; MAX_VM_STATS],
}

impl Default for vm_stats {
    fn default() -> Self {
        vm_stats {
            cpuid: 0,
            index: 0,
            num_entries: 0,
            tv: timeval::default(),
            statbuf: [0; MAX_VM_STATS],
        }
    }
}

/// `VM_STAT_DESC` argument (`struct vm_stat_desc`): description of
/// counter `index`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct vm_stat_desc {
    /// In.
    pub index: c_int,
    /// Out.
    pub desc: [c_char; 128],
}

impl Default for vm_stat_desc {
    fn default() -> Self {
        vm_stat_desc {
            index: 0,
            desc: [0; 128],
        }
    }
}

/// `VM_GLA2GPA` / `VM_GLA2GPA_NOFAULT` argument (`struct vm_gla2gpa`):
/// translates guest linear address `gla` for an access with `prot`
/// (PROT_READ, PROT_WRITE or PROT_EXEC).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_gla2gpa {
    /// In.
    pub vcpuid: c_int,
    /// In.
    pub prot: c_int,
    /// In.
    pub gla: u64,
    /// In.
    pub paging: vm_guest_paging,
    /// Out.
    pub fault: c_int,
    /// Out.
    pub gpa: u64,
}

/// `VM_GET_GPA_PMAP` argument (`struct vm_gpa_pte`): host page-table
/// entries for `gpa`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_gpa_pte {
    /// In.
    pub gpa: u64,
    /// Out.
    pub pte: [u64; 4],
    pub ptenum: c_int,
}

/// `VM_GET_HPET_CAPABILITIES` argument (`struct vm_hpet_cap`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_hpet_cap {
    /// Low 32 bits of the HPET capabilities register.
    pub capabilities: u32,
}

/// `VM_RTC_SETTIME` / `VM_RTC_GETTIME` argument (`struct vm_rtc_time`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_rtc_time {
    pub secs: time_t,
}

/// `VM_RTC_READ` / `VM_RTC_WRITE` argument (`struct vm_rtc_data`): one
/// byte of RTC CMOS at `offset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_rtc_data {
    pub offset: c_int,
    pub value: u8,
}

/// `VM_BIND_PPTDEV` / `VM_UNBIND_PPTDEV` / `VM_PPTDEV_DISABLE_MSIX`
/// argument (`struct vm_pptdev`): a PCI pass-through device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_pptdev {
    pub bus: c_int,
    pub slot: c_int,
    pub func: c_int,
}

/// `VM_MAP_PPTDEV_MMIO` / `VM_UNMAP_PPTDEV_MMIO` argument
/// (`struct vm_pptdev_mmio`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_pptdev_mmio {
    pub bus: c_int,
    pub slot: c_int,
    pub func: c_int,
    pub gpa: vm_paddr_t,
    pub hpa: vm_paddr_t,
    pub len: usize,
}

/// `VM_PPTDEV_MSI` argument (`struct vm_pptdev_msi`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_pptdev_msi {
    /// Unused.
    pub vcpu: c_int,
    pub bus: c_int,
    pub slot: c_int,
    pub func: c_int,
    /// 0 means disabled.
    pub numvec: c_int,
    pub msg: u64,
    pub addr: u64,
}

/// `VM_PPTDEV_MSIX` argument (`struct vm_pptdev_msix`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vm_pptdev_msix {
    /// Unused.
    pub vcpu: c_int,
    pub bus: c_int,
    pub slot: c_int,
    pub func: c_int,
    pub idx: c_int,
    pub msg: u64,
    pub vector_control: u32,
    pub addr: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuset_bits() {
        let mut s = cpuset_t::default();
        assert_eq!(core::mem::size_of::<cpuset_t>(), 128);
        s.set(0);
        s.set(63);
        s.set(64);
        s.set(1023);
        s.set(1024); // out of range: ignored
        assert_eq!(s.__bits[0] as u64, 0x8000_0000_0000_0001);
        assert_eq!(s.__bits[1], 1);
        assert_eq!(s.__bits[15] as u64, 1 << 63);
        assert!(s.is_set(63) && s.is_set(1023) && !s.is_set(1) && !s.is_set(1024));
        s.clear(63);
        assert!(!s.is_set(63));
        assert_eq!(s.__bits[0], 1);
    }

    /// `is_set` reads back each CPU `set` added, and only it: CPU 0 and
    /// the first and last bit of a word included.
    #[test]
    fn cpuset_is_set_reads_back_each_cpu_alone() {
        for n in [0, 1, 63, 64, 127, 1023] {
            let mut s = cpuset_t::default();
            s.set(n);
            assert!(s.is_set(n), "cpu {n}");
            assert_eq!((0..1024).filter(|i| s.is_set(*i)).count(), 1, "cpu {n}");
        }
    }

    #[test]
    fn kernemu_access_width() {
        let mut k = vm_readwrite_kernemu_device::default();
        k.set_access_width(2);
        assert_eq!(k.bits, 2);
        assert_eq!(k.access_width(), 2);
        k.bits |= 0xffff_fff8;
        k.set_access_width(0xf);
        assert_eq!(k.access_width(), 7);
        assert_eq!(k.bits, 0xffff_ffff);
    }
}
