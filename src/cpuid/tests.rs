use std::collections::HashMap;

use super::*;

/// A host with these leaves (others read as zero).
struct FakeHost(HashMap<(u32, u32), [u32; 4]>);

impl CpuidSource for FakeHost {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.0.get(&(leaf, subleaf)).copied().unwrap_or([0; 4])
    }
}

fn vendor_regs(v: &[u8; 12], high: u32) -> [u32; 4] {
    let w = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    [high, w(0), w(8), w(4)]
}

/// A processor of `vendor` (family 0x17 on AMD, 6 on Intel) with every
/// feature bit set in leaves 1, 7 and 0x80000001.
fn fake(vendor: &[u8; 12]) -> Cpuid<FakeHost> {
    let family_id = if vendor == b"GenuineIntel" { 0x0005_0654 } else { 0x0080_0f12 };
    let mut m = HashMap::new();
    m.insert((0, 0), vendor_regs(vendor, 0x16));
    m.insert((1, 0), [family_id, 0x5a5a_5a5a, u32::MAX, u32::MAX]);
    m.insert((4, 0), [0xfc00_4121, 0x01c0_003f, 0x3f, 0]);
    m.insert((4, 3), [0xfc0f_c163, 0x03c0_003f, 0x3fff, 6]);
    m.insert((7, 0), [2, u32::MAX, u32::MAX, u32::MAX]);
    m.insert((7, 1), [u32::MAX; 4]);
    m.insert((7, 2), [u32::MAX; 4]);
    m.insert((0xd, 0), [7, 0x340, 0x340, 0]);
    m.insert((0x15, 0), [2, 100, 0, 0]);
    m.insert((0x14, 0), [0x14, 1, 2, 3]);
    m.insert((0x16, 0), [2100, 3900, 100, 0]);
    m.insert((0x8000_0000, 0), [0x8000_0008, 0, 0, 0]);
    m.insert((0x8000_0001, 0), [0, 0, u32::MAX, u32::MAX]);
    m.insert((0x8000_0007, 0), [1, 2, 3, 0x100]);
    m.insert((0x8000_0008, 0), [0x3030, u32::MAX, 0x1234, 0]);
    Cpuid::new(FakeHost(m))
}

fn guest(vcpu_id: u32) -> GuestCpu {
    GuestCpu { vcpu_id, cores: 1, threads: 1, x2apic: false, rdtscp: false, rdpid: false, invpcid: false }
}

const INTEL: &[u8; 12] = b"GenuineIntel";
const AMD: &[u8; 12] = b"AuthenticAMD";

#[test]
fn the_host_model_is_probed_from_leaves_0_1_and_0x80000000() {
    assert_eq!(
        fake(INTEL).host,
        HostModel { high: 0x16, exthigh: 0x8000_0008, intel: true, svm: false, family: 6 }
    );
    assert_eq!(
        fake(AMD).host,
        HostModel { high: 0x16, exthigh: 0x8000_0008, intel: false, svm: true, family: 0x17 }
    );
    let none = Cpuid::new(FakeHost(HashMap::new()));
    assert_eq!(none.host, HostModel { high: 7, exthigh: 0x8000_0007, intel: false, svm: false, family: 0 });
}

/// A host without leaves (not x86) still gives the guest what the VMM
/// adds, and a leaf 0 and 0x80000000 that say which leaves there are.
#[test]
fn a_source_without_leaves_is_a_bare_processor() {
    let none = Cpuid::new(FakeHost(HashMap::new()));
    let g = guest(3);
    assert_eq!(none.emulate(&g, 0, 0), [7, 0, 0, 0]);
    assert_eq!(none.emulate(&g, 0x8000_0000, 0), [0x8000_0007, 0, 0, 0]);
    let [_, b, c, d] = none.emulate(&g, 1, 0);
    assert_eq!((b >> 24, c, d), (3, l1c::HV, l1d::MCA | l1d::MCE | l1d::MTRR | l1d::HTT));
    assert_eq!(none.emulate(&g, 6, 0), [L6A_ARAT, 0, 0, 0]);
    assert_eq!(none.emulate(&g, 8, 0), [0; 4], "clamped to leaf 7, no features");
    assert_eq!(none.emulate(&g, 0x8000_0008, 0), [0, 0, 0, E7D_TSC_INVARIANT], "clamped to 0x80000007");
    let g = GuestCpu { rdtscp: true, rdpid: true, invpcid: true, ..g };
    assert_eq!(none.emulate(&g, 0x8000_0001, 0), [0, 0, 0, E1D_RDTSCP]);
    assert_eq!(none.emulate(&g, 7, 0), [0, L7B_INVPCID, L7C_RDPID, 0], "what the capabilities add");
    assert_eq!(none.emulate(&g, VM_HIGH, 0)[0], VM_HIGH);
}

#[test]
fn log2_ceil_is_freebsds_log2() {
    // FreeBSD: fls(x << (1 - powerof2(x))) - 1, powerof2(0) true.
    let freebsd = |x: u32| {
        let pow2 = (x.wrapping_sub(1) & x) == 0;
        // C's unsigned shift drops the top bit.
        let y = if pow2 { x } else { x.wrapping_shl(1) };
        let fls = 32 - y.leading_zeros() as i32;
        fls - 1
    };
    for x in (0..=4096).chain(0x7fff_fff0..=0x8000_0010).chain(u32::MAX - 16..=u32::MAX).chain([0xfffe_0001]) {
        assert_eq!(log2_ceil(x), freebsd(x), "{x:#x}");
    }
    assert_eq!(log2_ceil(0xfffe_0001), 31, "65535 x 65535, a topology VM_SET_TOPOLOGY takes");
}

#[test]
fn leaves_past_the_highest_read_as_the_highest_and_the_vmm_leaf_is_bhyves() {
    let c = fake(INTEL);
    let g = guest(0);
    let bhyve = [VM_HIGH, u32::from_le_bytes(*b"bhyv"), u32::from_le_bytes(*b"e bh"), u32::from_le_bytes(*b"yve ")];
    assert_eq!(c.emulate(&g, VM_HIGH, 0), bhyve);
    assert_eq!(c.emulate(&g, 0x4000_0010, 0), bhyve, "clamped to 0x40000000");
    assert_eq!(c.emulate(&g, 0x14, 0), [0x14, 1, 2, 3], "passed through");
    let tsc = [2000, 2000, 100, 0];
    assert_eq!(c.emulate(&g, 0x16, 0), tsc, "the TSC's frequency");
    assert_eq!(c.emulate(&g, 0x17, 0), tsc, "clamped to the host's highest");
    assert_eq!(c.emulate(&g, 0x8000_00ff, 0)[0], 0x3030, "clamped to the highest extended leaf");
    assert_eq!(c.emulate(&g, 0, 0), vendor_regs(INTEL, 0x16));
    // Without extended leaves, 0x8000xxxx falls into the VMM range.
    let mut m = HashMap::new();
    m.insert((0, 0), vendor_regs(INTEL, 1));
    assert_eq!(Cpuid::new(FakeHost(m)).emulate(&g, 0x8000_0001, 0), bhyve);
}

#[test]
fn leaf_1_carries_the_apic_id_topology_and_the_vmms_feature_edits() {
    let c = fake(INTEL);
    let mut g = guest(5);
    g.cores = 2;
    g.threads = 2;
    let [a, b, ecx, edx] = c.emulate(&g, 1, 0);
    assert_eq!(a, 0x0005_0654, "signature passed through");
    assert_eq!(b, (5 << 24) | (4 << 16) | 0x5a5a, "APIC id 5, 4 logical processors, the rest the host's");
    for (bit, what) in [
        (l1c::MON, "MONITOR"),
        (l1c::VMX, "VMX"),
        (l1c::SMX, "SMX"),
        (l1c::EST, "SpeedStep"),
        (l1c::TM2, "TM2"),
        (l1c::PDCM, "PDCM"),
        (l1c::TSCDLT, "TSC deadline"),
        (l1c::XSAVE, "XSAVE"),
        (l1c::OSXSAVE, "OSXSAVE"),
        (L1C_AVX, "AVX, FMA, F16C"),
        (l1c::X2APIC, "x2APIC while X2APIC_DISABLED"),
    ] {
        assert_eq!(ecx & bit, 0, "{what} hidden");
    }
    assert_ne!(ecx & l1c::HV, 0, "hypervisor bit");
    assert_eq!(ecx | 0x0c00_0000 | 0x0120_81e8 | L1C_AVX, u32::MAX, "nothing else hidden");
    assert_eq!(edx & (l1d::ACPI | l1d::TM | l1d::DS), 0);
    g.x2apic = true;
    assert_ne!(c.emulate(&g, 1, 0)[2] & l1c::X2APIC, 0, "x2APIC with X2APIC_ENABLED");
    // 256 logical processors: the 8-bit count wraps to 0 and stays out
    // of the APIC id's byte (FreeBSD `logical_cpus & 0xff`).
    let mut wide = guest(4);
    wide.cores = 16;
    wide.threads = 16;
    assert_eq!(c.emulate(&wide, 1, 0)[1], (4 << 24) | 0x5a5a, "APIC id 4, count 256 & 0xff");
    // Machine check, MTRR and HTT are set even if the host lacks them.
    let mut bare = HashMap::new();
    bare.insert((0, 0), vendor_regs(INTEL, 1));
    let [_, _, c1, d1] = Cpuid::new(FakeHost(bare)).emulate(&guest(0), 1, 0);
    assert_eq!(d1, l1d::MCA | l1d::MCE | l1d::MTRR | l1d::HTT);
    assert_eq!(c1, l1c::HV);
}

#[test]
fn topology_leaf_0xb_on_intel_reports_threads_then_cores() {
    let c = fake(INTEL);
    let mut g = guest(3);
    g.cores = 4;
    g.threads = 2;
    assert_eq!(c.emulate(&g, 0xb, 0), [1, 2, (TOPO_SMT << 8), 3]);
    assert_eq!(c.emulate(&g, 0xb, 1), [3, 8, (TOPO_CORE << 8) | 1, 3]);
    assert_eq!(c.emulate(&g, 0xb, 2), [0, 0, 2, 0], "the end of the list (level type 0)");
    g.cores = 3;
    assert_eq!(c.emulate(&g, 0xb, 1)[0], 3, "6 logical processors need 3 bits");
    assert_eq!(fake(AMD).emulate(&g, 0xb, 0), [0; 4], "not on AMD");
}

#[test]
fn cache_leaf_4_describes_the_vms_sharing() {
    let c = fake(INTEL);
    let mut g = guest(0);
    g.cores = 4;
    g.threads = 2;
    // L1: shared by the threads of a core.
    let [a, b, cx, d] = c.emulate(&g, 4, 0);
    assert_eq!(a, 0x121 | (3 << 26) | (1 << 14));
    assert_eq!((b, cx, d), (0x01c0_003f, 0x3f, 0));
    // L3: shared by the package.
    assert_eq!(c.emulate(&g, 4, 3)[0], 0x163 | (3 << 26) | (7 << 14));
    assert_eq!(c.emulate(&g, 4, 4), [0; 4], "no more caches");
    // The host's own sharing fields are replaced and EAX bits 13:10
    // (reserved) cleared: FreeBSD keeps EAX bits 9:0 only.
    let mut host = HashMap::new();
    host.insert((0, 0), vendor_regs(INTEL, 4));
    host.insert((4, 0), [!0x3ff | 0x121, 0, 0, 0]);
    assert_eq!(Cpuid::new(FakeHost(host)).emulate(&g, 4, 0)[0], 0x121 | (3 << 26) | (1 << 14));
}

#[test]
fn leaf_7_passes_only_the_safe_features_and_the_enabled_capabilities() {
    let c = fake(INTEL);
    let mut g = guest(0);
    // FSGSBASE, BMI1, HLE, SMEP, BMI2, ERMS, RTM, RDSEED, SMAP, SHA: the
    // AVX ones of FreeBSD's list are hidden with XSAVE.
    let safe_b = 0b0010_0000_0001_0100_0000_1011_1001_1001;
    assert_eq!(L7B_SAFE & !L7B_AVX, safe_b);
    assert_eq!(c.emulate(&g, 7, 0), [0, safe_b, 0, L7D_SAFE]);
    assert_eq!(c.emulate(&g, 7, 1), [0; 4], "only subleaf 0");
    g.rdpid = true;
    g.invpcid = true;
    assert_eq!(c.emulate(&g, 7, 0), [0, safe_b | L7B_INVPCID, L7C_RDPID, L7D_SAFE]);
    // The host's other subleaves (every bit set here) stay hidden, the
    // capabilities' bits too (FreeBSD fills subleaf 0 only).
    for sub in [1, 2] {
        assert_eq!(c.emulate(&g, 7, sub), [0; 4], "subleaf {sub}");
    }
}

#[test]
fn power_performance_xsave_and_crystal_leaves_are_fixed() {
    let c = fake(INTEL);
    let g = guest(0);
    assert_eq!(c.emulate(&g, 6, 0), [L6A_ARAT, 0, 0, 0]);
    for leaf in [0xa, 0xd, 0xf, 0x10, 0x15] {
        assert_eq!(c.emulate(&g, leaf, 0), [0; 4], "leaf {leaf:#x}");
    }
    assert_eq!(c.emulate(&g, 0x8000_0007, 0), [0, 0, 0, E7D_TSC_INVARIANT]);
}

#[test]
fn extended_features_hide_svm_and_follow_the_rdtscp_capability() {
    for vendor in [INTEL, AMD] {
        let c = fake(vendor);
        let mut g = guest(0);
        let [_, _, ecx, edx] = c.emulate(&g, 0x8000_0001, 0);
        assert_eq!(ecx, !E1C_HIDDEN);
        assert_eq!(edx, !E1D_RDTSCP, "RDTSCP off without the capability");
        g.rdtscp = true;
        assert_eq!(c.emulate(&g, 0x8000_0001, 0)[3], u32::MAX);
    }
}

#[test]
fn amd_topology_leaves_follow_the_vm() {
    let c = fake(AMD);
    let mut g = guest(6);
    g.cores = 8;
    g.threads = 2;
    let [a, b, cx, _] = c.emulate(&g, 0x8000_0008, 0);
    assert_eq!(a, 0x3030);
    assert_eq!(b, E8B_SAFE_AMD);
    assert_eq!(cx, (4 << E8C_CORE_ID_SIZE_SHIFT) | 15, "16 logical processors");
    g.cores = 2;
    assert_eq!(c.emulate(&g, 0x8000_0008, 0)[2], 3, "narrow: no ApicIdCoreIdSize");
    assert_eq!(fake(INTEL).emulate(&g, 0x8000_0008, 0), [0x3030, u32::MAX, 0x1234, 0], "Intel: the host's");
    // 0x8000001D and 0x8000001E are past this fake's highest extended
    // leaf; give it more.
    let mut big = fake(AMD);
    big.host.exthigh = 0x8000_001e;
    assert_eq!(big.emulate(&g, 0x8000_001d, 0), [(1 << 14) | (1 << 8) | (1 << 5) | 1, 63, 0, 0]);
    assert_eq!(big.emulate(&g, 0x8000_001d, 2), [(3 << 14) | (1 << 8) | (3 << 5) | 3, 63, 0, 0]);
    assert_eq!(big.emulate(&g, 0x8000_001d, 3), [(0xfff << 14) | (1 << 8), 0, 0, 0]);
    assert_eq!(big.emulate(&g, 0x8000_001e, 0), [6, (1 << 8) | 3, 0, 0]);
    big.host.family = 0x16;
    assert_eq!(big.emulate(&g, 0x8000_001e, 0), [6, (1 << 8) | 3, 0, 0], "from family 16h on");
    big.host.family = 0x15;
    assert_eq!(big.emulate(&g, 0x8000_001e, 0), [0; 4], "family 15h: the host's (zero here)");
}

/// FreeBSD 14 `x86_emulate_cpuid` takes 0x8000_0008's logical count
/// (`MIN(0xFF, threads * cores - 1)`) and 0x8000_001E's threads
/// (`MIN(0xFF, threads - 1)`) in signed int: with a zero topology (which
/// VM_SET_TOPOLOGY accepts, the product being 0) the -1 wins the MIN, so
/// ECX is all ones and EBX holds 0xFFFF threads (shift 16), not 0xFF.
#[test]
fn amd_topology_leaves_keep_freebsds_signed_min_for_a_zero_topology() {
    let mut big = fake(AMD);
    big.host.exthigh = 0x8000_001e;
    let mut g = guest(0x1_0006);
    g.cores = 0;
    g.threads = 2;
    assert_eq!(big.emulate(&g, 0x8000_0008, 0)[2], u32::MAX, "cores 0: -1 as unsigned");
    g.cores = 1;
    g.threads = 0;
    assert_eq!(big.emulate(&g, 0x8000_0008, 0)[2], u32::MAX, "threads 0");
    assert_eq!(big.emulate(&g, 0x8000_001e, 0), [0x1_0006, (0xffff << 8) | 1, 0, 0], "threads 0: 0xFFFF, shift 16");
    // 0x8000001D computes in unsigned: 0xFFF there, as ours.
    assert_eq!(big.emulate(&g, 0x8000_001d, 0)[0] >> 14, 0xfff);
}

#[test]
fn the_real_host_answers_with_the_vmms_edits() {
    let g = guest(7);
    let c = host();
    assert_eq!(c.emulate(&g, VM_HIGH, 0)[0], VM_HIGH);
    let [_, b, ecx, _] = c.emulate(&g, 1, 0);
    assert_eq!(b >> 24, 7);
    assert_ne!(ecx & l1c::HV, 0);
    assert_eq!(ecx & (l1c::VMX | l1c::XSAVE), 0);
}

/// FreeBSD takes `cpu_exthigh` from leaf 0x80000000 when it is at least
/// 0x80000000: a host whose only extended leaf is 0x80000000 still has
/// the extended range, so a guest's 0x80000001 reads as 0x80000000 (the
/// highest), not as the VMM leaf.
#[test]
fn a_host_with_only_leaf_0x80000000_keeps_its_extended_range() {
    let mut m = HashMap::new();
    m.insert((0, 0), vendor_regs(INTEL, 1));
    m.insert((0x8000_0000, 0), [0x8000_0000, 0, 0, 0]);
    let c = Cpuid::new(FakeHost(m));
    assert_eq!(c.host.exthigh, 0x8000_0000);
    assert_eq!(c.emulate(&guest(0), 0x8000_0001, 0), [0x8000_0000, 0, 0, 0]);
}

/// FreeBSD's `vmm_is_svm` covers Hygon as well as AMD: a Hygon host gets
/// the SVM backend's leaves (0x80000008's masked EBX and topology ECX).
#[test]
fn a_hygon_host_is_an_svm_host() {
    let c = fake(b"HygonGenuine");
    assert!(c.host.svm && !c.host.intel);
    let mut g = guest(0);
    g.cores = 8;
    g.threads = 2;
    let [_, b, cx, _] = c.emulate(&g, 0x8000_0008, 0);
    assert_eq!((b, cx), (E8B_SAFE_AMD, (4 << E8C_CORE_ID_SIZE_SHIFT) | 15));
}

/// The family adds the whole 8-bit extended family field (EAX 27:20) to
/// the base family 0xF, as FreeBSD's CPUID_TO_FAMILY: a family past 0x1E
/// is not cut back below 0x16 (which would hide leaf 0x8000001E's edits).
/// FreeBSD's amd64 macro adds the extended field to any base family (its
/// i386 one only to 0xF); real processors report it 0 below 0xF.
#[test]
fn the_family_takes_the_whole_extended_family_field() {
    let mut m = HashMap::new();
    m.insert((0, 0), vendor_regs(AMD, 1));
    m.insert((1, 0), [0x0100_0f00, 0, 0, 0]);
    assert_eq!(Cpuid::new(FakeHost(m.clone())).host.family, 0x1f);
    // amd64's macro adds it whatever the base family.
    m.insert((1, 0), [0x0100_0e00, 0, 0, 0]);
    assert_eq!(Cpuid::new(FakeHost(m)).host.family, 0x1e);
}

/// Leaf 0xB's fields are FreeBSD's masks: EAX 4:0 (the width of a zero
/// thread count, FreeBSD's log2(0) = -1, is 31), EBX 15:0 (65536 logical
/// processors, which VM_SET_TOPOLOGY takes with zero sockets, read as 0)
/// and the subleaf's low byte in ECX.
#[test]
fn topology_leaf_0xb_keeps_freebsds_field_masks() {
    let c = fake(INTEL);
    let mut g = guest(1);
    g.cores = 256;
    g.threads = 256;
    assert_eq!(c.emulate(&g, 0xb, 1), [16, 0, (TOPO_CORE << 8) | 1, 1], "65536 & 0xffff");
    assert_eq!(c.emulate(&g, 0xb, 0x102), [0, 0, 2, 0], "subleaf 0x102: level 0, ECX's low byte 2");
    g.threads = 0;
    assert_eq!(c.emulate(&g, 0xb, 0), [31, 0, TOPO_SMT << 8, 1], "log2(0) & 0x1f");
}

/// AMD's counts are capped at 0xFF as FreeBSD's MIN(0xFF, ...): 512
/// logical processors give 0x80000008 ECX 0xFF (with 9 ApicIdCoreIdSize
/// bits), 300 threads a core give 0x8000001E EBX's threads 0xFF and the
/// APIC id shifted by log2(256).
#[test]
fn amd_topology_counts_are_capped_at_0xff() {
    let mut big = fake(AMD);
    big.host.exthigh = 0x8000_001e;
    let mut g = guest(0x305);
    g.cores = 16;
    g.threads = 32;
    assert_eq!(big.emulate(&g, 0x8000_0008, 0)[2], (9 << E8C_CORE_ID_SIZE_SHIFT) | 0xff);
    g.cores = 1;
    g.threads = 300;
    assert_eq!(big.emulate(&g, 0x8000_001e, 0), [0x305, (0xff << 8) | 3, 0, 0]);
}
