//! FreeBSD 14 constants from `vmm.h`, `vmm_dev.h`, `vmmapi.h` and
//! `sys/_cpuset.h` that C callers of the header need.

/// Longest prefix ("vmm/", "vmm.io/", ...) of a VM device path (`vmm.h`).
pub const VM_MAX_PREFIXLEN: usize = 10;
/// Longest suffix (memory segment name) of a VM device path (`vmm.h`).
/// `struct vm_memseg` holds a name of `VM_MAX_SUFFIXLEN + 1` bytes.
pub const VM_MAX_SUFFIXLEN: usize = 15;
/// The least VM_MAX_NAMELEN of any host (`vmm.h`): a name this long is
/// accepted everywhere. Not a minimum name length (any non-empty name is).
pub const VM_MIN_NAMELEN: usize = 6;
/// Longest VM name: SPECNAMELEN (255 since FreeBSD 13) minus
/// VM_MAX_PREFIXLEN, VM_MAX_SUFFIXLEN and a separator (`vmm.h`).
pub const VM_MAX_NAMELEN: usize = 229;

/// The default number of vCPUs (maxcpus) of a vmm_rs VM, the classic
/// `VM_MAXCPU` value. FreeBSD 14 keeps the limit in the `hw.vmm.maxcpu`
/// tunable; here vmm_rs_set_maxcpus() or VMM_RS_MAXCPU set it (1 to 256),
/// so size per-vCPU arrays with VM_GET_TOPOLOGY's `maxcpus`
/// (vm_get_topology()), not with this.
pub const VM_MAXCPU: usize = 16;

/// Number of CPUs a userland `cpuset_t` can hold on FreeBSD 14
/// (`sys/_cpuset.h`; `CPU_SETSIZE` defaults to it). Not named
/// `CPU_SETSIZE` here because glibc's `<sched.h>` defines that name.
pub const CPU_MAXSIZE: usize = 1024;

/// `struct vm_cpuset.which`: the set of activated vCPUs (`vmm_dev.h`).
pub const VM_ACTIVE_CPUS: i32 = 0;
/// `struct vm_cpuset.which`: the set of suspended vCPUs (`vmm_dev.h`).
pub const VM_SUSPENDED_CPUS: i32 = 1;
/// `struct vm_cpuset.which`: the set of vCPUs stopped for debugging
/// (`vmm_dev.h`).
pub const VM_DEBUG_CPUS: i32 = 2;

/// `struct vm_memmap.flags`: wire the mapping (`vmm_dev.h`).
pub const VM_MEMMAP_F_WIRED: i32 = 0x01;
/// `struct vm_memmap.flags`: map the range in the IOMMU (`vmm_dev.h`).
pub const VM_MEMMAP_F_IOMMU: i32 = 0x02;

/// `vm_set_memflags()` flag: include guest memory in core dumps (`vmmapi.h`).
pub const VM_MEM_F_INCORE: i32 = 0x01;
/// `vm_set_memflags()` flag: guest memory is wired (`vmmapi.h`).
pub const VM_MEM_F_WIRED: i32 = 0x02;

/// Memory segment id of guest system memory (`vmmapi.h`).
pub const VM_SYSMEM: i32 = 0;
/// Memory segment id of the boot ROM (`vmmapi.h`).
pub const VM_BOOTROM: i32 = 1;
/// Memory segment id of the framebuffer (`vmmapi.h`).
pub const VM_FRAMEBUFFER: i32 = 2;
/// Memory segment id of PCI option ROMs (`vmmapi.h`).
pub const VM_PCIROM: i32 = 3;

/// Guest memory below this address is "lowmem"; `vm_setup_memory()` puts
/// the rest at VM_HIGHMEM_BASE (libvmmapi `vmmapi.c`: 3 GiB, 0xc0000000).
pub const VM_LOWMEM_LIMIT: u64 = 0xC0000000;
/// Guest physical address where "highmem" starts (libvmmapi: 4 GiB, 0x100000000).
pub const VM_HIGHMEM_BASE: u64 = 0x100000000;

/// Number of `uint64_t` counters in `struct vm_stats.statbuf` (`vmm_dev.h`).
pub const MAX_VM_STATS: usize = 64;

/// Maximum length of an x86 instruction, the size of `struct vie.inst`
/// (`vmm.h`).
pub const VIE_INST_SIZE: usize = 15;

/// `struct vm_intinfo` / exit interrupt info: error code is delivered (0x800).
pub const VM_INTINFO_DEL_ERRCODE: u64 = 0x800;
/// `struct vm_intinfo`: reserved bits (0x7ffff000).
pub const VM_INTINFO_RSVD: u64 = 0x7ffff000;
/// `struct vm_intinfo`: the event is valid (0x80000000).
pub const VM_INTINFO_VALID: u64 = 0x80000000;
/// `struct vm_intinfo`: mask of the event type field (0x700).
pub const VM_INTINFO_TYPE: u64 = 0x700;
/// `struct vm_intinfo` type: external (hardware) interrupt (0x000).
pub const VM_INTINFO_HWINTR: u64 = 0x000;
/// `struct vm_intinfo` type: NMI (0x200).
pub const VM_INTINFO_NMI: u64 = 0x200;
/// `struct vm_intinfo` type: hardware exception (0x300).
pub const VM_INTINFO_HWEXCEPTION: u64 = 0x300;
/// `struct vm_intinfo` type: software interrupt (0x400).
pub const VM_INTINFO_SWINTR: u64 = 0x400;
