//! The guest's CPUID, as FreeBSD 14's `x86_emulate_cpuid` answers it: the
//! host processor's leaves, with what a guest must not see hidden (VMX,
//! SVM, SMX, power and thermal control, performance counters, MONITOR),
//! what the VMM provides added (the hypervisor bit and leaf 0x40000000
//! "bhyve bhyve ", x2APIC per the vCPU's x2APIC state, RDTSCP, RDPID and
//! INVPCID per its capabilities, machine check and MTRRs), and the vCPU's
//! APIC id and the VM's topology (VM_SET_TOPOLOGY) in the identification
//! and topology leaves. Leaves past the host's highest are clamped to it.
//!
//! Differences, all because of what this VMM emulates: it has no XSETBV
//! (its guests have no XCR0), so XSAVE, OSXSAVE and the features whose
//! state XSAVE manages (AVX and its successors, FMA, F16C, VAES,
//! VPCLMULQDQ) are hidden and leaf 0xD is all zero, as on a host without
//! them; its TSC is the clock of `tsc`, so the TSC is reported invariant
//! and leaf 0x16 gives that clock's 2000 MHz (FreeBSD passes the host's
//! leaf, which matches its guests' TSC, the host's).
//!
//! The host's leaves come from a [`CpuidSource`]: the processor on x86-64
//! hosts. A source without leaves (any other host) is taken as a
//! processor with leaves up to 7 and 0x80000007 and no features, so a
//! guest still sees what the VMM adds.

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

/// Where the host's CPUID leaves come from.
pub trait CpuidSource: Send + Sync {
    /// EAX, EBX, ECX, EDX of leaf `leaf`, subleaf `subleaf`.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
}

/// The processor this library runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostCpu;

impl CpuidSource for HostCpu {
    #[cfg(target_arch = "x86_64")]
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let r = std::arch::x86_64::__cpuid_count(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn cpuid(&self, _leaf: u32, _subleaf: u32) -> [u32; 4] {
        [0; 4]
    }
}

/// What of the vCPU and its VM the answers depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestCpu {
    /// The vCPU's id, which is its APIC id.
    pub vcpu_id: u32,
    /// VM_GET_TOPOLOGY's cores per socket and threads per core.
    pub cores: u16,
    pub threads: u16,
    /// The vCPU's x2APIC state is not X2APIC_DISABLED.
    pub x2apic: bool,
    /// VM_CAP_RDTSCP, VM_CAP_RDPID and VM_CAP_ENABLE_INVPCID.
    pub rdtscp: bool,
    pub rdpid: bool,
    pub invpcid: bool,
}

/// Leaf numbers.
const VM_HIGH: u32 = 0x4000_0000;
const EXT_BASE: u32 = 0x8000_0000;
/// The hypervisor vendor signature in leaf 0x40000000 (EBX, ECX, EDX).
const BHYVE_ID: &[u8; 12] = b"bhyve bhyve ";

/// Leaf 1 ECX.
mod l1c {
    pub const MON: u32 = 1 << 3;
    pub const VMX: u32 = 1 << 5;
    pub const SMX: u32 = 1 << 6;
    pub const EST: u32 = 1 << 7;
    pub const TM2: u32 = 1 << 8;
    pub const PDCM: u32 = 1 << 15;
    pub const X2APIC: u32 = 1 << 21;
    pub const TSCDLT: u32 = 1 << 24;
    pub const XSAVE: u32 = 1 << 26;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const HV: u32 = 1 << 31;
}
/// Leaf 1 EDX.
mod l1d {
    pub const MCE: u32 = 1 << 7;
    pub const MTRR: u32 = 1 << 12;
    pub const MCA: u32 = 1 << 14;
    pub const DS: u32 = 1 << 21;
    pub const ACPI: u32 = 1 << 22;
    pub const HTT: u32 = 1 << 28;
    pub const TM: u32 = 1 << 29;
}
/// Leaf 1 EBX: the initial APIC id (31:24), logical processors (23:16).
const L1B_APIC_ID_SHIFT: u32 = 24;
const L1B_APIC_ID: u32 = 0xff << L1B_APIC_ID_SHIFT;
const L1B_LOGICAL: u32 = 0xff << 16;
/// Leaf 6 EAX: the APIC timer runs in every C-state (ARAT).
const L6A_ARAT: u32 = 1 << 2;
/// Leaf 1 ECX: FMA, AVX, F16C (state XSAVE manages).
const L1C_AVX: u32 = (1 << 12) | (1 << 28) | (1 << 29);
/// Leaf 7.0 EBX: the features FreeBSD passes through (FSGSBASE, BMI1,
/// HLE, AVX2, SMEP, BMI2, ERMS, RTM, AVX512F/DQ, RDSEED, SMAP,
/// AVX512PF/ER/CD, SHA, AVX512BW/VL).
const L7B_SAFE: u32 = (1 << 0)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 11)
    | (1 << 16)
    | (1 << 17)
    | (1 << 18)
    | (1 << 20)
    | (1 << 26)
    | (1 << 27)
    | (1 << 28)
    | (1 << 29)
    | (1 << 30)
    | (1 << 31);
/// Leaf 7.0 EBX: AVX2 and AVX-512 of those (state XSAVE manages).
const L7B_AVX: u32 = (1 << 5) | (1 << 16) | (1 << 17) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31);
const L7B_INVPCID: u32 = 1 << 10;
/// Leaf 7.0 ECX: RDPID by capability. (FreeBSD also passes VAES and
/// VPCLMULQDQ; both are AVX, so hidden here.)
const L7C_RDPID: u32 = 1 << 22;
/// Leaf 7.0 EDX: MD_CLEAR passes through.
const L7D_SAFE: u32 = 1 << 10;
/// Leaf 0xB ECX level types.
const TOPO_SMT: u32 = 1;
const TOPO_CORE: u32 = 2;
/// Leaf 0x80000001 ECX: SVM, OSVW, IBS, NodeID, the core and northbridge
/// performance counters, the L2I counters, MWAITX.
const E1C_HIDDEN: u32 = (1 << 2) | (1 << 9) | (1 << 10) | (1 << 19) | (1 << 23) | (1 << 24) | (1 << 28) | (1 << 29);
/// Leaf 0x80000001 EDX: RDTSCP.
const E1D_RDTSCP: u32 = 1 << 27;
/// Leaf 0x80000007 EDX: invariant TSC.
const E7D_TSC_INVARIANT: u32 = 1 << 8;
/// Leaf 0x80000008 EBX (AMD): CLZERO, IRPERF, XSAVEERPTR pass through.
const E8B_SAFE_AMD: u32 = 0b111;
/// Leaf 0x80000008 ECX (AMD): ApicIdCoreIdSize.
const E8C_CORE_ID_SIZE_SHIFT: u32 = 12;
/// The cache-line size leaf 0x8000001D reports (FreeBSD CACHE_LINE_SIZE).
const CACHE_LINE: u32 = 64;
/// The guest TSC's rate in MHz (leaf 0x16).
const TSC_MHZ: u32 = (crate::tsc::TSC_HZ / 1_000_000) as u32;
/// The highest leaves of a source without leaves (see the module doc):
/// up to the leaves where the VMM adds features (RDPID and INVPCID in 7,
/// the invariant TSC in 0x80000007).
const BARE_HIGH: u32 = 7;
const BARE_EXTHIGH: u32 = 0x8000_0007;

/// The host processor as the emulation needs it (FreeBSD `cpu_high`,
/// `cpu_exthigh`, `cpu_vendor_id`, `cpu_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HostModel {
    high: u32,
    /// 0 if there are no extended leaves.
    exthigh: u32,
    intel: bool,
    /// AMD or Hygon: FreeBSD's SVM backend.
    svm: bool,
    family: u32,
}

impl HostModel {
    fn probe(src: &dyn CpuidSource) -> Self {
        let [high, b, c, d] = src.cpuid(0, 0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&b.to_le_bytes());
        vendor[4..8].copy_from_slice(&d.to_le_bytes());
        vendor[8..].copy_from_slice(&c.to_le_bytes());
        let ext = src.cpuid(EXT_BASE, 0)[0];
        let id = src.cpuid(1, 0)[0];
        if high == 0 && ext == 0 {
            return HostModel { high: BARE_HIGH, exthigh: BARE_EXTHIGH, intel: false, svm: false, family: 0 };
        }
        HostModel {
            high,
            exthigh: if ext >= EXT_BASE { ext } else { 0 },
            intel: &vendor == b"GenuineIntel",
            svm: &vendor == b"AuthenticAMD" || &vendor == b"HygonGenuine",
            family: ((id >> 8) & 0xf) + ((id >> 20) & 0xff),
        }
    }
}

/// Answers guest CPUIDs from a host source.
pub struct Cpuid<S: CpuidSource> {
    src: S,
    host: HostModel,
}

/// The emulation on this host's processor (probed once).
pub fn host() -> &'static Cpuid<HostCpu> {
    static HOST: OnceLock<Cpuid<HostCpu>> = OnceLock::new();
    HOST.get_or_init(|| Cpuid::new(HostCpu))
}

/// FreeBSD's `log2`, bit for bit: of the next power of two at or above
/// `x`, computed as fls(x << 1) - 1 for a non-power of two, so -1 for 0
/// and, where the shift drops the top bit (x > 2^31), whatever remains.
fn log2_ceil(x: u32) -> i32 {
    let y = if x & x.wrapping_sub(1) == 0 { x } else { x << 1 };
    31 - y.leading_zeros() as i32
}

impl<S: CpuidSource> Cpuid<S> {
    pub fn new(src: S) -> Self {
        let host = HostModel::probe(&src);
        Cpuid { src, host }
    }

    /// CPUID with EAX = `leaf`, ECX = `subleaf` on `guest`: EAX, EBX,
    /// ECX, EDX.
    pub fn emulate(&self, guest: &GuestCpu, leaf: u32, subleaf: u32) -> [u32; 4] {
        let h = &self.host;
        // A leaf past the highest of its range reads as the highest.
        let func = if h.exthigh != 0 && leaf >= EXT_BASE {
            leaf.min(h.exthigh)
        } else if leaf >= VM_HIGH {
            leaf.min(VM_HIGH)
        } else {
            leaf.min(h.high)
        };
        let host = || self.src.cpuid(func, subleaf);
        let threads = u32::from(guest.threads);
        let cores = u32::from(guest.cores);
        let id = guest.vcpu_id;
        match func {
            0x0 | 0x2 | 0x3 | 0x8000_0000 | 0x8000_0002..=0x8000_0004 | 0x8000_0006 => self.host_leaf(func, subleaf),
            0x1 => self.leaf1(guest, host()),
            0x4 => {
                let mut r = host();
                if r != [0; 4] {
                    // L1 and L2 per core, L3 and above per package.
                    r[0] &= 0x3ff;
                    r[0] |= cores.wrapping_sub(1) << 26;
                    let level = (r[0] >> 5) & 0x7;
                    let sharing = if level >= 3 { threads * cores } else { threads };
                    r[0] |= sharing.wrapping_sub(1) << 14;
                }
                r
            }
            0x6 => [L6A_ARAT, 0, 0, 0],
            0x7 if subleaf != 0 => [0; 4],
            0x7 => {
                let [_, b, _, d] = host();
                let mut b = b & L7B_SAFE & !L7B_AVX;
                let c = if guest.rdpid { L7C_RDPID } else { 0 };
                if guest.invpcid {
                    b |= L7B_INVPCID;
                }
                [0, b, c, d & L7D_SAFE]
            }
            // No performance monitoring, no XSAVE (see the module doc),
            // no resource director, no TSC/crystal ratio (a guest would
            // derive the APIC timer's frequency from it).
            0xa | 0xd | 0xf | 0x10 | 0x15 => [0; 4],
            0xb if h.intel => {
                let (sharing, level) = match subleaf {
                    0 => (threads, TOPO_SMT),
                    1 => (threads * cores, TOPO_CORE),
                    _ => (0, 0),
                };
                let (width, x2apic_id) = if level == 0 { (0, 0) } else { (log2_ceil(sharing) as u32, id) };
                [width & 0x1f, sharing & 0xffff, (level << 8) | (subleaf & 0xff), x2apic_id]
            }
            0xb => [0; 4],
            // The TSC's frequency as base and maximum, the 100 MHz bus.
            0x16 => [TSC_MHZ, TSC_MHZ, 100, 0],
            VM_HIGH => {
                let w = |i: usize| u32::from_le_bytes([BHYVE_ID[i], BHYVE_ID[i + 1], BHYVE_ID[i + 2], BHYVE_ID[i + 3]]);
                [VM_HIGH, w(0), w(4), w(8)]
            }
            0x8000_0001 => {
                let [a, b, c, d] = host();
                let d = if guest.rdtscp { d | E1D_RDTSCP } else { d & !E1D_RDTSCP };
                [a, b, c & !E1C_HIDDEN, d]
            }
            0x8000_0007 => [0, 0, 0, E7D_TSC_INVARIANT],
            0x8000_0008 => {
                let mut r = host();
                if h.svm {
                    r[1] &= E8B_SAFE_AMD;
                    let n = threads * cores;
                    let width = log2_ceil(n).clamp(0, 0xf) as u32;
                    let width = if width < 4 { 0 } else { width };
                    // FreeBSD's MIN is on ints: a zero topology's -1 wins.
                    let logical = if n == 0 { u32::MAX } else { (n - 1).min(0xff) };
                    r[2] = (width << E8C_CORE_ID_SIZE_SHIFT) | logical;
                }
                r
            }
            0x8000_001d if h.svm => {
                // L1 data and L2 per core, L3 per package.
                let (sharing, level, kind) = match subleaf {
                    0 => (threads, 1, 1),
                    1 => (threads, 2, 3),
                    2 => (threads * cores, 3, 3),
                    _ => (0, 0, 0),
                };
                let sharing = sharing.wrapping_sub(1).min(0xfff);
                let line = if kind > 0 { CACHE_LINE - 1 } else { 0 };
                [(sharing << 14) | (1 << 8) | (level << 5) | kind, line, 0, 0]
            }
            0x8000_001e if h.svm && h.family >= 0x16 => {
                // As FreeBSD's int MIN stored in a uint16_t: 0 threads
                // give 0xFFFF.
                let t = if threads == 0 { 0xffff } else { (threads - 1).min(0xff) };
                let shift = log2_ceil(t + 1).max(0) as u32;
                [id, (t << 8) | (id >> shift), 0, 0]
            }
            _ => host(),
        }
    }

    /// Leaves 0 and 0x80000000 (the highest leaf in EAX) as the model has
    /// them, the rest of a passed-through leaf from the source.
    fn host_leaf(&self, func: u32, subleaf: u32) -> [u32; 4] {
        let mut r = self.src.cpuid(func, subleaf);
        match func {
            0 => r[0] = self.host.high,
            EXT_BASE => r[0] = self.host.exthigh,
            _ => {}
        }
        r
    }

    /// Leaf 1: the host's, with the vCPU's APIC id and the VM's logical
    /// processor count in EBX and the feature bits edited.
    fn leaf1(&self, guest: &GuestCpu, [a, b, c, d]: [u32; 4]) -> [u32; 4] {
        let logical = u32::from(guest.threads) * u32::from(guest.cores);
        let b = (b & !(L1B_APIC_ID | L1B_LOGICAL)) | (guest.vcpu_id << L1B_APIC_ID_SHIFT) | ((logical & 0xff) << 16);
        let mut c = c & !(l1c::VMX | l1c::EST | l1c::TM2 | l1c::SMX | l1c::MON | l1c::PDCM | l1c::TSCDLT);
        c &= !(l1c::XSAVE | l1c::OSXSAVE | L1C_AVX);
        c |= l1c::HV;
        if guest.x2apic {
            c |= l1c::X2APIC;
        } else {
            c &= !l1c::X2APIC;
        }
        let d = (d & !(l1d::ACPI | l1d::TM | l1d::DS)) | l1d::MCA | l1d::MCE | l1d::MTRR | l1d::HTT;
        [a, b, c, d]
    }
}
